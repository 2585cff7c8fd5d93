"""Augmentation kernels (ops.elastic_bank, ops.augment) against their NumPy reference,
a worked example, thread-count determinism, argument errors, and the Augment object."""

from __future__ import annotations



import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import digitcore
from digitcore import ops
from digitcore import ops_ref as ref
from digitcore.augment import AUGMENTS, Augment, get_augment, parse_augment
from kernel_config import PATHS, config

# Tolerances. The reference does the kernel's float32 arithmetic in the same order, so on
# x86-64 the two agree bit for bit; a compiler that contracts a*b+c into an FMA (aarch64)
# moves a source coordinate by ~1e-6 px, which moves a resampled value by at most
# |gradient| * 1e-6 (uint8: < 255 * 1e-6) and may flip a uint8 rounding at .5.
F32_ATOL = 1e-4      # float images in [0, 1]
U8_MAX_DIFF = 1      # one step of rounding
U8_MAX_FRACTION = 0.005


def assert_images_close(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype == np.uint8:
        d = np.abs(actual.astype(np.int64) - expected.astype(np.int64))
        assert d.max(initial=0) <= U8_MAX_DIFF, d.max()
        assert (d > 0).mean() <= U8_MAX_FRACTION if d.size else True
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=F32_ATOL)


def digits(n, h=28, w=28, seed=0, dtype=np.uint8):
    """Blob-and-bar images with soft edges, like anti-aliased strokes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.zeros((n, h, w))
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        r = rng.uniform(0.15, 0.3) * min(h, w)
        ring = np.abs(np.hypot(yy - cy, xx - cx) - r)
        x[i] = np.clip(1.6 - ring, 0, 1)
    x = x * rng.uniform(0.7, 1.0, (n, 1, 1))
    if dtype == np.uint8:
        return np.round(x * 255).astype(np.uint8)
    return x.astype(np.float32)


FULL = dict(rotate=15.0, shear=15.0, scale=0.2, translate=2.5, alpha=34.0, thickness=0.4)
PARTS = [dict(rotate=20.0), dict(shear=15.0), dict(scale=0.2), dict(translate=3.0),
         dict(alpha=36.0), dict(thickness=0.5), FULL, dict(FULL, faint=0.1)]


# ---- the bank of smoothed fields ---------------------------------------------------------

@pytest.mark.parametrize("size,sigma", [(1, 0.5), (2, 1.0), (8, 4.0), (32, 6.0), (64, 4.0)])
def test_elastic_bank_matches_reference(size, sigma):
    got = ops.elastic_bank(size, sigma, seed=7, stream=3)
    exp = ref.elastic_bank(size, sigma, seed=7, stream=3)
    assert got.shape == (2, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-9)


def test_elastic_bank_is_scipy_gaussian_filter_of_the_uniforms():
    nd = pytest.importorskip("scipy.ndimage")
    size, sigma = 64, 4.0
    u = ref._sym(ref.hash64(11, 2, np.arange(2 * size * size, dtype=np.uint64)))
    u = u.reshape(2, size, size)
    got = ops.elastic_bank(size, sigma, seed=11, stream=2)
    for c in range(2):
        np.testing.assert_allclose(got[c], nd.gaussian_filter(u[c], sigma, mode="wrap"),
                                   rtol=0, atol=1e-6)
    # uniform [-1, 1) has std 1/sqrt(3); a 2-D Gaussian of std sigma divides it by about
    # 2 sqrt(pi) sigma
    assert abs(got.std() / (3 ** -0.5 / (2 * np.sqrt(np.pi) * sigma)) - 1) < 0.25


def test_elastic_bank_seed_and_stream_change_it():
    a = ops.elastic_bank(16, 2.0, seed=1, stream=0)
    assert not np.array_equal(a, ops.elastic_bank(16, 2.0, seed=2, stream=0))
    assert not np.array_equal(a, ops.elastic_bank(16, 2.0, seed=1, stream=1))
    np.testing.assert_array_equal(a, ops.elastic_bank(16, 2.0, seed=1, stream=0))


# ---- augment against the reference ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("params", PARTS, ids=lambda p: ",".join(p))
def test_augment_matches_reference(dtype, params, num_threads):
    x = digits(37, dtype=dtype)
    bank = ops.elastic_bank(64, 4.0, seed=5)
    idx = np.array([3, 0, 36, 3, 17, 9, 1], dtype=np.int64)
    for th in (1, 2):
        with num_threads(th):
            got = ops.augment(x, idx, bank=bank, seed=9, stream=4, **params)
        assert_images_close(got, ref.augment(x, idx, bank=bank, seed=9, stream=4, **params))
    # it did something (every part changes these images)
    assert not np.array_equal(got, x[idx])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 9), h=st.sampled_from([1, 2, 3, 7, 13, 28, 31]),
       w=st.sampled_from([1, 2, 5, 11, 28, 33]), bank_size=st.sampled_from([1, 4, 16, 128]),
       u8=st.booleans(), seed=st.integers(0, 2**64 - 1), stream=st.integers(0, 2**64 - 1))
def test_augment_awkward_shapes_match_reference(n, h, w, bank_size, u8, seed, stream):
    x = digits(n, h, w, seed=seed % 1000, dtype=np.uint8 if u8 else np.float32)
    bank = ops.elastic_bank(bank_size, 1.5, seed=seed)
    got = ops.augment(x, bank=bank, seed=seed, stream=stream, **FULL)
    assert got.shape == (n, h, w)
    assert_images_close(got, ref.augment(x, bank=bank, seed=seed, stream=stream, **FULL))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_no_deformation_is_the_identity(dtype):
    x = digits(5, 11, 17, dtype=dtype)
    np.testing.assert_array_equal(ops.augment(x, seed=3), x)
    # an elastic part with alpha 0 or a zero bank moves nothing either
    zero = np.zeros((2, 8, 8), np.float32)
    np.testing.assert_array_equal(ops.augment(x, alpha=30.0, bank=zero, seed=3), x)


def test_worked_example_translation_of_one_pixel():
    """One bright pixel, translation only: it moves by the drawn (tx, ty) and its 255
    splits bilinearly over the four pixels around its new place."""
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 4] = 1.0
    seed, stream = 21, 8
    h = [ref.hash64(seed, stream, k) for k in range(8)]
    tx = 2.0 * float(ref._sym(np.uint64(h[4])))
    ty = 2.0 * float(ref._sym(np.uint64(h[5])))
    got = ops.augment(x, translate=2.0, seed=seed, stream=stream)[0]
    exp = np.zeros((9, 9))
    x0, y0 = 4 + int(np.floor(tx)), 4 + int(np.floor(ty))
    fx, fy = tx - np.floor(tx), ty - np.floor(ty)
    exp[y0, x0] = (1 - fx) * (1 - fy)
    exp[y0, x0 + 1] = fx * (1 - fy)
    exp[y0 + 1, x0] = (1 - fx) * fy
    exp[y0 + 1, x0 + 1] = fx * fy
    np.testing.assert_allclose(got, exp, atol=1e-5)


def test_rotation_by_a_right_angle_turns_the_image():
    """rotate=90 draws angles in [-90, 90]: at the draw's own angle the output is the
    image rotated about its centre, so a draw near +-90 (found from the hash) turns a
    bar on its side."""
    x = np.zeros((1, 15, 15), np.uint8)
    x[0, 2:13, 7] = 255  # a vertical bar
    streams = np.arange(4000, dtype=np.uint64)
    angles = 90.0 * ref._sym(np.array([ref.hash64(0, int(s), 0) for s in streams],
                                      dtype=np.uint64))
    stream = int(np.argmax(np.abs(angles)))
    assert abs(angles[stream]) > 89.8
    got = ops.augment(x, rotate=90.0, seed=0, stream=stream)[0]
    assert got[7, 2:13].min() >= 250 and got[:, 7].sum() < 3 * 255  # now horizontal


def test_thickness_changes_ink_both_ways_and_stays_in_range():
    x = digits(64)
    thick = ops.augment(x, thickness=0.6, seed=1).astype(np.int64)
    ink = x.astype(np.int64).sum((1, 2))
    d = thick.sum((1, 2)) - ink
    assert (d > 0).sum() > 10 and (d < 0).sum() > 10
    xf = digits(8, dtype=np.float32)
    out = ops.augment(xf, thickness=0.9, seed=2)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_faint_zeroes_the_faint_rim_and_nothing_else():
    """faint cuts the values below faint * range (after the stroke curve) to 0 and leaves
    every other pixel as it was: fewer non-zero pixels, and none left below the cut."""
    bank = ops.elastic_bank(64, 4.0, seed=2)
    for dtype, cut in ((np.uint8, 0.1 * 255), (np.float32, np.float32(0.1))):
        x = digits(64, dtype=dtype)
        plain = ops.augment(x, bank=bank, seed=4, **FULL)
        np.testing.assert_array_equal(ops.augment(x, bank=bank, seed=4, faint=0.0, **FULL),
                                      plain)
        cut_ = ops.augment(x, bank=bank, seed=4, faint=0.1, **FULL)
        kept = cut_ != 0
        np.testing.assert_array_equal(cut_[kept], plain[kept])
        if dtype == np.uint8:
            # values below 25.5 round to at most 25; from 25.5 up, to 26 or more
            assert cut_[kept].min() >= 26 and plain[~kept].max() <= 25
        else:
            assert cut_[kept].min() >= cut and plain[~kept].max() < cut
        trimmed = (plain != 0).sum() - kept.sum()
        assert trimmed > 0.05 * (plain != 0).sum()


# ---- determinism -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_same_bits_for_any_thread_count(dtype, num_threads):
    x = digits(50, dtype=dtype)
    bank = ops.elastic_bank(128, 4.0, seed=3)
    outs = []
    for th in (1, 2, 3, 4):
        with num_threads(th):
            outs.append(ops.augment(x, bank=bank, seed=12, stream=99, **FULL))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    # image r depends on (seed, stream, r) only: a prefix of the batch is the same
    np.testing.assert_array_equal(
        ops.augment(x[:7], bank=bank, seed=12, stream=99, **FULL), outs[0][:7])
    assert not np.array_equal(ops.augment(x, bank=bank, seed=12, stream=100, **FULL),
                              outs[0])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("hw", [(28, 28), (1, 1), (3, 7), (13, 9), (31, 33), (8, 16), (5, 17),
                                (6, 32), (20, 15), (4, 20)])
@pytest.mark.parametrize("bank_size", [32, 128, 4])
def test_vector_and_generic_paths_give_the_same_bits(dtype, hw, bank_size):
    """The AVX2 resampling (8 pixels a vector) and the uint8 images' AVX-512 pixel loop (16)
    repeat the portable loop's float32 operations in order: equal bit for bit, also on
    rows that end in a partial vector (of 8 or of 16: widths 20 and 33), on blank images
    and on images whose ink touches the border (no pixel skipped wrongly), with elastic
    windows read contiguously (bank 128), often wrapping around the bank (32) and narrower
    than a vector (4); uint8 results go through the vector stores."""
    h, w = hw
    x = digits(24, h, w, seed=h * 100 + w, dtype=dtype)
    x[0] = 0                                  # blank: every pixel skips the taps
    x[1] = 0
    x[1, 0, 0] = x[1, -1, -1] = 200 if dtype == np.uint8 else 0.8   # two corner dots
    x[2] = 255 if dtype == np.uint8 else 1.0  # full: no pixel skips
    if dtype == np.float32 and h * w > 1:
        x[3, h // 2, w // 2] = np.nan         # NaN counts as ink
        x[4] = -0.0
    bank = ops.elastic_bank(bank_size, 3.0, seed=1)
    for params in PARTS + [dict(translate=40.0), dict(scale=0.9, rotate=180.0)]:
        outs = {}
        for path in PATHS:
            with config(path, 2):
                outs[path] = ops.augment(x, bank=bank, seed=7, stream=3, **params)
        for path in PATHS:
            np.testing.assert_array_equal(outs[path].view(np.uint8),
                                          outs["generic"].view(np.uint8),
                                          err_msg=f"{path} {params}")
        if dtype == np.uint8:
            assert_images_close(outs["generic"], ref.augment(x, bank=bank, seed=7, stream=3,
                                                             **params))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hw", [(28, 28), (1, 1), (3, 7), (2, 3), (13, 9), (5, 17)])
def test_each_image_is_written_within_its_own_bytes(path, hw):
    """Each image's pixels, and nothing past them: the uint8 vector path stores a row's
    last partial vector whole, spilling into the image's next rows (written after it),
    but never past the image's last byte, which may be another thread's image or the end
    of out. A sentinel after each image, written one image at a time, must survive."""
    h, w = hw
    x = digits(6, h, w, seed=3)
    x[:, -1, -1] = 90                           # ink up to the last pixel
    bank = ops.elastic_bank(32, 3.0, seed=2)
    with config(path, 1):
        for i in range(len(x)):
            buf = np.full(h * w + 32, 77, np.uint8)
            out = buf[:h * w].reshape(1, h, w)
            ops.augment(x, np.array([i]), bank=bank, seed=5, out=out, **FULL)
            assert (buf[h * w:] == 77).all(), f"image {i} wrote past its end"
            np.testing.assert_array_equal(out, ops.augment(x[i:i + 1], bank=bank, seed=5,
                                                           **FULL))


def test_out_argument_and_gil_release():
    import threading

    x = digits(200)
    bank = ops.elastic_bank(32, 3.0)
    expected = ops.augment(x, bank=bank, seed=4, **FULL)
    results = [np.empty_like(x) for _ in range(4)]
    ts = [threading.Thread(target=ops.augment, args=(x,),
                           kwargs=dict(bank=bank, seed=4, out=r, **FULL)) for r in results]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


# ---- argument errors -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(x=np.zeros((2, 4, 4), np.float64)), TypeError, "x must have dtype uint8 or float32"),
    (dict(x=np.zeros((2, 16), np.uint8)), ValueError, "x must be 3-D"),
    (dict(x=np.zeros((2, 0, 4), np.uint8)), ValueError, "at least 1 x 1"),
    (dict(x=np.zeros((1, 16385, 1), np.uint8)), ValueError,
     r"at most 16384 pixels a side, got 16385 x 1"),
    (dict(x=np.zeros((1, 2, 16385), np.float32)), ValueError,
     r"at most 16384 pixels a side, got 2 x 16385"),
    (dict(alpha=10.0), ValueError, "needs bank"),
    (dict(alpha=10.0, bank=np.zeros((2, 6, 6), np.float32)), ValueError, "power of two"),
    (dict(alpha=10.0, bank=np.zeros((2, 8, 4), np.float32)), ValueError, r"shape \(2, S, S\)"),
    (dict(rotate=-1.0), ValueError, "rotate must be in"),
    (dict(scale=1.0), ValueError, "scale must be in"),
    (dict(thickness=float("nan")), ValueError, "thickness must be finite"),
    (dict(faint=1.0), ValueError, r"faint must be in \[0, 1\)"),
    (dict(faint=-0.01), ValueError, "faint must be in"),
    (dict(idx=np.array([0, 2])), ValueError, "idx has values outside"),
    (dict(out=np.zeros((2, 4, 4), np.float32)), TypeError, "out must have dtype uint8"),
    (dict(seed=-1), ValueError, "seed must be in"),
])
def test_augment_errors_name_the_argument(kwargs, exc, match):
    args = dict(x=np.zeros((2, 4, 4), np.uint8))
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(exc, match=match):
        ops.augment(x, **args)


def test_the_largest_side_is_taken_and_one_more_is_refused_in_training_too():
    """Up to 16384 pixels a side (coordinates exact in float32, scratch offsets in int32);
    an image one pixel taller is a clear error, from ops.augment and from training."""
    x = np.zeros((1, 16384, 1), np.uint8)
    x[0, 8000, 0] = 200
    got = ops.augment(x, translate=0.0)
    np.testing.assert_array_equal(got, x)  # nothing drawn: the identity map
    tall = np.zeros((4, 16385, 1), np.uint8)
    net = digitcore.Network([16385, 2, 2], seed=0)
    tr = digitcore.Trainer(net, epochs=1, batch_size=2, verbose=0, augment="affine")
    with pytest.raises(ValueError, match="at most 16384 pixels a side, got 16385 x 1"):
        tr.fit(tall, np.array([0, 1, 0, 1]))


def test_non_finite_pixels_go_through_kernel_and_reference_alike():
    """The reference kept a NaN the kernel's stroke curve maps to 0 (np.clip keeps NaN)."""
    x = np.zeros((2, 5, 5), np.float32)
    x[0, 2, 2] = np.inf
    x[1, 2, 2] = np.nan
    for kw in (dict(), dict(thickness=0.3, seed=1), dict(rotate=30.0, seed=2)):
        got, want = ops.augment(x, **kw), ref.augment(x, **kw)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=kw)
    stroked = ops.augment(x, thickness=0.3, seed=1)
    assert np.isfinite(stroked).all() and not np.isfinite(ops.augment(x)).all()


def test_augment_out_must_not_overlap_x():
    x = digits(3)
    with pytest.raises(ValueError, match="out must not"):
        ops.augment(x, out=x)


def test_elastic_bank_errors():
    with pytest.raises(ValueError, match="size must be a power of two"):
        ops.elastic_bank(12)
    with pytest.raises(ValueError, match="sigma must be in"):
        ops.elastic_bank(16, 0.0)


# ---- the Augment object --------------------------------------------------------------------

def test_named_augments_and_specs():
    assert get_augment(None) is None and get_augment("none") is None
    assert get_augment("elastic") is AUGMENTS["elastic"]
    a = get_augment({"rotate": 5.0, "alpha": 30.0})
    assert a == Augment(rotate=5.0, alpha=30.0) and a.elastic
    with pytest.raises(ValueError, match="unknown augmentation 'elastik'"):
        get_augment("elastik")
    with pytest.raises(ValueError, match="bad augmentation parameters"):
        get_augment({"rotation": 5})
    with pytest.raises(ValueError, match=r"Augment.scale must be in \[0, 1\)"):
        Augment(scale=1.5)
    with pytest.raises(ValueError, match="bank_size"):
        Augment(bank_size=100)
    with pytest.raises(ValueError, match=r"Augment.faint must be in \[0, 1\)"):
        Augment(faint=1.0)
    with pytest.raises(TypeError, match="augment must be"):
        get_augment(3)
    # accepted in double but not in the float32 the kernel takes: fit failed later,
    # saying "scale must be in [0, 1), got 0.99999999"
    for kw in (dict(scale=0.99999999), dict(thickness=0.99999999), dict(faint=0.99999999),
               dict(alpha=1.0, sigma=1e-46), dict(translate=10 ** 400)):
        name = next(k for k in kw if k != "alpha")
        with pytest.raises(ValueError, match=rf"Augment.{name} must be in .*also as a float32"):
            Augment(**kw)
    assert Augment(scale=0.9999999).scale == 0.9999999  # (float32 0.99999988)


def test_parse_augment_takes_names_and_field_pairs():
    assert parse_augment("full") is AUGMENTS["full"] and parse_augment(" none ") is None
    assert parse_augment("rotate=10, alpha=34,faint=0.06,bank_size=64") == Augment(
        rotate=10.0, alpha=34.0, faint=0.06, bank_size=64)
    with pytest.raises(ValueError, match="expected key=number pairs, got 'alpha=x'"):
        parse_augment("rotate=10,alpha=x")
    with pytest.raises(ValueError, match="bad augmentation parameters"):
        parse_augment("twist=3")
    with pytest.raises(ValueError, match="Augment.faint must be in"):
        parse_augment("faint=1.5")
    with pytest.raises(ValueError, match="unknown augmentation 'fulll'"):
        parse_augment("fulll")


def test_augment_apply_keeps_shape_and_is_seeded():
    x = digits(6)
    aug = AUGMENTS["full"]
    flat = aug.apply(x.reshape(6, -1), seed=3)
    assert flat.shape == (6, 784) and flat.dtype == np.uint8
    np.testing.assert_array_equal(flat.reshape(6, 28, 28), aug.apply(x, seed=3))
    assert not np.array_equal(aug.apply(x, seed=3), aug.apply(x, seed=4))
    with pytest.raises(ValueError, match="not a square"):
        aug.apply(np.zeros((2, 10), np.uint8))
    # NaN pixels came back out, deformed, without a word
    bad = x.astype(np.float32) / 255
    bad[1, 14, 14] = np.nan
    with pytest.raises(ValueError, match="images contain NaN or infinite values"):
        aug.apply(bad)
    assert isinstance(digitcore.Augment(), Augment)


def test_augment_apply_refuses_what_training_refuses():
    """Integers other than uint8 and floats in 0-255 came back as floats clamped to 1 by
    the stroke curve (training refuses both); plot_augmented drew them as blobs."""
    x = digits(3)
    aug = Augment(thickness=0.3)
    with pytest.raises(TypeError, match="images have dtype int64: pass uint8 pixels"):
        aug.apply(x.astype(np.int64))
    with pytest.raises(ValueError, match=r"values of images lie in \[0, 2\d\d\].*by 1/255"):
        aug.apply(x.astype(np.float32))
    as_float = aug.apply(x.astype(np.float32) / 255, seed=1)
    assert as_float.dtype == np.float32 and as_float.max() <= 1.0
    # the same deformation of the same picture, in either dtype
    np.testing.assert_allclose(as_float * 255, aug.apply(x, seed=1), atol=0.51)

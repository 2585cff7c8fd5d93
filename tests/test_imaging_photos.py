"""preprocess_image on photo- and scan-like pictures, and on pictures with no digit.

The pictures come from photo_digits.py (seeded; see its docstring). The model is a small
network trained here on the bundled mnist-mini; the digits are mnist-mini's test split.
benchmarks/bench_real_images.py measures the same on more pictures and bigger models.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitcore.errors import NoDigitError
from digitcore.imaging import not_digit_scores, preprocess_image
from photo_digits import (CORRUPTIONS, STROKE_SHAPES, non_digit_strokes, non_digits, photo_digit,
                          photo_set, stroke_shape, tight_crop)


def _mini():
    from digitcore.datasets import load_mnist_mini

    return load_mnist_mini()


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("digitcore._ops", reason="compiled digitcore._ops not built")
    from digitcore.network import Network
    from digitcore.trainer import Trainer

    (x, y), _ = _mini()
    net = Network([784, 256, 10], seed=0)
    Trainer(net, optimizer="adam", lr=2e-3, epochs=8, seed=0, verbose=0).fit(x, y)
    return net


def _zero(h=200, w=160, thickness=12):
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (0.35 * h), (xx - w / 2) / (0.28 * w))
    ring = np.clip(thickness / 2 + 0.5 - np.abs(r - 1) * 0.3 * min(h, w), 0, 1)
    return ring  # ink in [0, 1]


def _u8(x):
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _corr(a, b):
    """Correlation of two 28x28 results, blurred over 3x3 first: the same shape moved
    by a pixel (a speck touching a stroke, a rounding of the centre of mass) stays close."""
    def blur(x):
        p = np.pad(x.astype(float), 1)
        return sum(p[i:i + 28, j:j + 28] for i in range(3) for j in range(3))

    return np.corrcoef(blur(a).ravel(), blur(b).ravel())[0, 1]


def test_photo_like_digits_read_as_well_as_clean_ones(model):
    _, (xt, yt) = _mini()
    n = 300
    x, y = xt[:n], yt[:n]
    clean_ok = model.predict(x.reshape(n, -1)) == y
    pics, labels, applied = photo_set(x, y, seed=1)
    assert sum(len(a) for a in applied) > 3 * n  # most pictures carry several corruptions
    pred = []
    for p in pics:
        try:
            pred.append(model.predict_image(p)[0])
        except NoDigitError:
            pred.append(-1)
    ok = np.asarray(pred) == labels
    # of the digits the model reads when clean, the photos of nearly all are read too
    kept = ok[clean_ok].mean()
    assert kept >= 0.95, (kept, ok.mean(), clean_ok.mean())
    assert ok.mean() >= clean_ok.mean() - 0.04, (ok.mean(), clean_ok.mean())
    # digits are rarely refused: steps 1-8 refuse 3 of these, the shape check (step 9, set
    # to refuse 0.2% of held-out digits) 3 more, all odd ones (a 2 like an L, a loopy 2, a 4)
    assert (np.asarray(pred) == -1).sum() <= n // 40


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_each_corruption_alone_keeps_the_digit(corruption):
    """Each corruption on its own leaves the 28x28 result close to the clean picture's."""
    _, (xt, _) = _mini()
    corr = []
    for i, d in enumerate(xt[:20]):
        clean, _ = photo_digit(d, np.random.default_rng(i), corruptions=set())
        dirty, _ = photo_digit(d, np.random.default_rng(i), corruptions={corruption})
        corr.append(_corr(preprocess_image(clean), preprocess_image(dirty)))
    assert np.median(corr) > 0.85 and min(corr) > 0.5, (corruption, sorted(corr)[:3])


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_each_corruption_with_a_shadow_and_a_thin_pen(corruption):
    """The same with a shadow across the sheet and a thin pen: the ink is then a sliver of
    the picture and the paper's level spreads, so which side is ink must come from the
    ink's local contrast (the picture's extremes put a thin 0 on the wrong side), and a
    thin stroke broken into pieces must be kept whole."""
    _, (xt, _) = _mini()
    corr = []
    for i, d in enumerate(xt[:20]):
        clean, _ = photo_digit(d, np.random.default_rng(i), corruptions=set())
        dirty, _ = photo_digit(d, np.random.default_rng(i),
                               corruptions={corruption, "shadow", "thin"})
        corr.append(_corr(preprocess_image(clean), preprocess_image(dirty)))
    assert np.median(corr) > 0.9 and min(corr) > 0.7, (corruption, sorted(corr)[:3])


def test_frame_drawn_where_the_paper_is_sampled():
    """A frame a twelfth of the size in from the edges lay exactly on the ring of pixels
    that used to decide which side is ink: the paper was taken for ink and the digit
    read inverted."""
    ink = _zero(h=240, w=240, thickness=6)
    paper = 0.2 + 0.7 * (1 - ink)
    framed = paper.copy()
    m = 240 // 12
    framed[m, m:-m] = framed[-m - 1, m:-m] = 0.2
    framed[m:-m, m] = framed[m:-m, -m - 1] = 0.2
    assert _corr(preprocess_image(_u8(framed)), preprocess_image(_u8(paper))) > 0.7


def test_four_grey_border_pixels_change_nothing():
    """The draw page's report: four grey pixels in the corners of a clean PNG used to
    shrink a clean 0 into a corner of the 28x28 field."""
    paper = _u8(1 - _zero())
    clean = preprocess_image(paper)
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        paper[y, x] = 128
    np.testing.assert_array_equal(preprocess_image(paper), clean)


def test_four_grey_border_pixels_keep_the_answer(model):
    paper = _u8(1 - _zero())
    d0, p0 = model.predict_image(paper)
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        paper[y, x] = 128
    d1, p1 = model.predict_image(paper)
    assert d0 == d1 == 0 and p1[0] == pytest.approx(p0[0], abs=1e-6)


def test_specks_are_dropped():
    paper = 1 - _zero()
    clean = preprocess_image(_u8(paper))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:paper.shape[0], 0:paper.shape[1]]
    for _ in range(10):
        cy, cx = rng.uniform(0, paper.shape[0]), rng.uniform(0, paper.shape[1])
        paper[np.hypot(yy - cy, xx - cx) < 2.5] = 0.1
    assert _corr(preprocess_image(_u8(paper)), clean) > 0.85


def test_ruled_lines_and_frame_are_removed_where_no_stroke_crosses():
    ink = _zero()
    clean = preprocess_image(_u8(1 - ink))
    paper = 1 - ink
    paper[15::30, :] = np.minimum(paper[15::30, :], 0.55)  # ruled lines through the 0
    paper[:, 5:8] = 0.1  # a dark scan edge
    paper[3:5, :] = 0.2  # and a frame line
    out = preprocess_image(_u8(paper))
    assert _corr(out, clean) > 0.85
    assert out[:, :3].sum() == out[:, -3:].sum() == 0  # the edges did not stretch the box


def test_uneven_lighting_and_shadow():
    ink = _zero()
    clean = preprocess_image(_u8(1 - ink))
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w]
    light = (1 - 0.55 * xx / w) * (1 - 0.4 / (1 + np.exp(-(yy - 0.6 * h) / 6)))
    photo = (0.9 - 0.8 * ink) * light
    assert _corr(preprocess_image(photo), clean) > 0.85


@pytest.mark.parametrize("width", [2, 30])
def test_stroke_width_brought_into_mnist_range(width):
    out = preprocess_image(_u8(1 - _zero(h=400, w=320, thickness=width)))
    mask = out >= 128
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    stroke = 2 * mask.sum() / (mask & ~inner).sum()
    assert 1.7 <= stroke <= 5.5, stroke
    assert out[12:17, 12:17].max() < 128  # a thick 0 keeps its hole


REFUSED = non_digits(seed=0)
@pytest.mark.parametrize("name, image", REFUSED, ids=[n for n, _ in REFUSED])
def test_pictures_without_a_digit_are_refused(name, image):
    with pytest.raises(NoDigitError) as info:
        preprocess_image(image)
    assert info.value.reason in ("blank", "too_small", "not_a_digit")
    if name in ("one dot", "a click on the draw page"):
        assert info.value.reason == "too_small"
        assert "draw a bigger digit" in str(info.value)
    if name == "a filled disc":  # wider than the paper's window: it used to read as a 4
        assert info.value.reason == "not_a_digit"


@pytest.mark.parametrize("seed", range(1, 9))
def test_scattered_specks_and_noise_are_refused(seed):
    """Specks of random size on textured paper, two of them touching, and salt-and-pepper
    noise (which joins into a web of hundreds of marks): nothing to read, whatever the
    draw (seed 0 is in test_pictures_without_a_digit_are_refused)."""
    for name, image in non_digits(seed):
        if name in ("specks on paper", "salt and pepper noise"):
            with pytest.raises(NoDigitError) as info:
                preprocess_image(image)
            assert info.value.reason in ("too_small", "not_a_digit"), (name, info.value)


def test_a_digit_beside_specks_is_read():
    """The scatter rule leaves a digit with specks around it alone: each speck is a few
    percent of the digit's ink."""
    img = 1 - _zero(h=400, w=320, thickness=8)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:400, 0:320]
    for _ in range(15):
        cy, cx = rng.uniform(0, 400), rng.uniform(0, 320)
        img[np.hypot(yy - cy, xx - cx) < rng.uniform(1, 4)] = 0.0
    out = preprocess_image(_u8(img))
    assert out.max() == 255
    assert out[12:17, 12:17].max() < 128  # still a 0 with its hole, centred


def _page(digits, gap=250, size=260):
    """Dark MNIST test digits of mnist-mini, ``size`` pixels tall, ``gap`` apart on paper."""
    from PIL import Image

    (_, _), (x, _) = _mini()
    page = np.full((400, 100 + gap * len(digits)), 235, np.uint8)
    for k, i in enumerate(digits):
        big = np.asarray(Image.fromarray(x[i]).resize((size, size), Image.BILINEAR))
        page[70:70 + size, 60 + gap * k:60 + size + gap * k][big > 110] = 20
    return page


@pytest.mark.parametrize("pair", [(1, 0), (3, 18), (4, 7), (2, 11)])  # 27, 03, 49, 16
def test_two_digits_apart_are_refused_not_read_as_one(pair):
    # one of them was read, at ~100%, as if the picture held it alone; a "1" beside a "6"
    # has a third of its ink
    pytest.importorskip("PIL")
    with pytest.raises(NoDigitError, match="two digits, .* crop the picture to one digit") \
            as info:
        preprocess_image(_page(pair))
    assert info.value.reason == "not_a_digit"
    for i in pair:  # each alone is read, a speck far from it too
        alone = _page((i,))
        assert preprocess_image(alone).max() == 255
        alone[350:356, 300:306] = 20
        assert preprocess_image(alone).max() == 255
    # without the non-digit checks (--any-strokes: letters, a model of other strokes) the
    # pair is left alone, as the docstring says
    assert preprocess_image(_page(pair), reject_non_digits=False).max() == 255


def test_a_digit_broken_into_pieces_one_above_the_other_is_not_two_digits():
    # picture 261 of bench_real_images' reported set (mnist-mini's test digits, seed 0): a
    # thin, blurred 5 whose bar and bowl come apart, the bowl beyond the digit's reach. It
    # is not beside the bar, so it is not a second digit (without that rule it was refused)
    (_, _), (xt, yt) = _mini()
    pics, labels, _ = photo_set(xt[:262], yt[:262], seed=0)
    assert labels[261] == 5
    assert preprocess_image(pics[261]).max() == 255


def test_small_drawing_on_a_big_canvas_is_too_small():
    """A short scribble with the draw page's brush: a stroke barely longer than wide."""
    canvas = np.zeros((112, 112))
    yy, xx = np.mgrid[0:112, 0:112]
    for t in np.linspace(0, 1, 20):  # an 8-pixel drag with a 8-pixel brush
        canvas[np.hypot(yy - 50, xx - (50 + 8 * t)) < 4] = 1
    with pytest.raises(NoDigitError, match="draw a bigger digit"):
        preprocess_image(_u8(1 - canvas))


def test_mnist_digits_are_rarely_refused():
    """Steps 1-8 refuse none of mnist-mini's 1,000 test digits; the shape check (step 9)
    is set to refuse 0.2% of held-out training digits (0.10% of them clean), and refuses
    3 here (two open zeros, a bent 5; the 2-class check before it refused 1)."""
    _, (xt, _) = _mini()
    refused = 0
    for d in xt:
        preprocess_image(d, reject_non_digits=False)  # raises if one were refused
        try:
            preprocess_image(d)
        except NoDigitError as exc:
            assert exc.reason == "not_a_digit" and "do not look like a digit" in str(exc)
            refused += 1
    assert refused <= 3, refused


# the shapes issue 19's review found read as digits with high probability
NAMED = ("plus", "minus", "x", "triangle")


@pytest.mark.parametrize("shape", NAMED)
def test_stroke_drawings_that_are_not_digits_are_refused(shape):
    """Drawings of seeds the shape check was not trained on, half of them photo-like:
    nearly all are refused, with the reason and a message saying what to do."""
    refused = 0
    pictures = non_digit_strokes(seed=100, per_shape=20, shapes=[shape])
    for _, picture in pictures:
        try:
            preprocess_image(picture)
        except NoDigitError as exc:
            assert exc.reason == "not_a_digit", exc
            assert "do not look like a digit" in str(exc) and "write one digit" in str(exc)
            refused += 1
    assert refused >= 18, (shape, refused)


def test_reject_non_digits_false_skips_only_the_shape_check():
    picture = non_digit_strokes(seed=100, per_shape=1, shapes=["plus"], clean=1.0)[0][1]
    with pytest.raises(NoDigitError, match="do not look like a digit"):
        preprocess_image(picture)
    out = preprocess_image(picture, reject_non_digits=False)
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() == 255
    # the other refusals stay: a filled disc is still not a digit
    disc = dict(non_digits(seed=0))["a filled disc"]
    with pytest.raises(NoDigitError):
        preprocess_image(disc, reject_non_digits=False)


def test_not_digit_scores_separate_digits_from_shapes():
    _, (xt, _) = _mini()
    digits = not_digit_scores(xt[:200])
    rng = np.random.default_rng(7)
    shapes = not_digit_scores(np.stack([stroke_shape(s, rng) for s in STROKE_SHAPES]))
    assert digits.shape == (200,) and shapes.shape == (len(STROKE_SHAPES),)
    assert ((digits >= 0) & (digits <= 1)).all() and ((shapes >= 0) & (shapes <= 1)).all()
    assert np.median(digits) < 0.05 and np.median(shapes) > 0.95, (digits, shapes)
    # one image alone scores as it does in a batch
    assert not_digit_scores(xt[3]) == pytest.approx(digits[3:4], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("bad", [np.zeros((28, 28), np.float32), np.zeros((2, 28, 27), np.uint8),
                                 np.zeros(784, np.uint8), np.zeros((1, 1, 28, 28), np.uint8)],
                         ids=["float", "27 wide", "flat", "4-d"])
def test_not_digit_scores_refuses_other_input(bad):
    with pytest.raises(ValueError, match="uint8 of shape"):
        not_digit_scores(bad)


def test_a_model_file_that_is_not_a_shape_check_is_refused(tmp_path):
    pytest.importorskip("digitcore._ops", reason="compiled digitcore._ops not built")
    from digitcore.errors import ModelFormatError
    from digitcore.network import Network

    path = tmp_path / "ten.safetensors"
    Network([784, 16, 10], seed=0).save(path, metadata={"threshold": 0.5})
    with pytest.raises(ModelFormatError, match="ten.safetensors: not a shape check"):
        not_digit_scores(np.zeros((28, 28), np.uint8), path)
    path = tmp_path / "no-threshold.safetensors"
    Network([784, 16, 2], seed=0).save(path, metadata={})
    with pytest.raises(ModelFormatError, match="not a shape check"):
        not_digit_scores(np.zeros((28, 28), np.uint8), path)


def test_shape_check_folds_the_files_standardization(tmp_path):
    """A check saved with input_mean/input_std scores as its Network predicts."""
    pytest.importorskip("digitcore._ops", reason="compiled digitcore._ops not built")
    from digitcore.network import Network

    net = Network([784, 16, 2], seed=3, input_mean=0.13, input_std=0.31)
    path = tmp_path / "std.safetensors"
    net.save(path, metadata={"threshold": 0.5})
    _, (xt, _) = _mini()
    got = not_digit_scores(xt[:50], path)
    want = net.predict_proba(xt[:50].reshape(50, -1))[:, 1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_three_class_check_scores_its_classes(tmp_path):
    """A 3-class check (digit, not a digit, the paper read as ink): the refusal's score
    weighs class 1 against class 0 only; the paper's is class 2's probability. A 2-class
    check has no paper's score."""
    pytest.importorskip("digitcore._ops", reason="compiled digitcore._ops not built")
    from digitcore import imaging
    from digitcore.network import Network

    _, (xt, _) = _mini()
    net = Network([784, 16, 3], seed=4, input_mean=0.13, input_std=0.31)
    path = tmp_path / "three.safetensors"
    net.save(path, metadata={"threshold": 0.5})
    p = net.predict_proba(xt[:50].reshape(50, -1)).astype(np.float64)
    not_digit, paper = imaging._check_scores(xt[:50], path)
    np.testing.assert_allclose(not_digit, p[:, 1] / (p[:, 0] + p[:, 1]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(paper, p[:, 2], rtol=1e-4, atol=1e-6)
    two = tmp_path / "two.safetensors"
    Network([784, 16, 2], seed=4).save(two, metadata={"threshold": 0.5})
    assert imaging._check_scores(xt[:3], two)[1] is None


def test_a_missing_shape_check_says_how_to_get_it_back(monkeypatch):
    from digitcore import imaging

    monkeypatch.setattr(imaging, "SHAPE_CHECK_FILE", "no-such-check.safetensors")
    _, (xt, _) = _mini()
    with pytest.raises(FileNotFoundError, match="no-such-check.safetensors: preprocess_image's "
                       "shape check is missing.*reinstall.*reject_non_digits=False"):
        preprocess_image(xt[0])
    assert preprocess_image(xt[0], reject_non_digits=False).shape == (28, 28)


def test_predict_image_can_skip_the_shape_check(model):
    picture = non_digit_strokes(seed=100, per_shape=1, shapes=["x"], clean=1.0)[0][1]
    with pytest.raises(NoDigitError, match="do not look like a digit"):
        model.predict_image(picture)
    digit, proba = model.predict_image(picture, reject_non_digits=False)
    want = model.predict_proba(preprocess_image(picture, reject_non_digits=False)
                               .reshape(1, -1))[0]
    assert digit == int(np.argmax(want)) and np.array_equal(proba, want)


def test_a_damaged_shape_check_says_how_to_get_it_back(monkeypatch, tmp_path):
    from digitcore import imaging
    from digitcore.errors import ModelFormatError

    bad = tmp_path / "shape-check.safetensors"
    bad.write_bytes(b"\x10" + b"\0" * 7 + b"{not json")
    monkeypatch.setattr(imaging, "SHAPE_CHECK_FILE", str(bad))  # an absolute path wins
    _, (xt, _) = _mini()
    with pytest.raises(ModelFormatError, match="shape-check.safetensors.*reinstall digitcore"):
        imaging.shape_check_ready()
    with pytest.raises(ModelFormatError, match="reinstall digitcore"):
        preprocess_image(xt[0])


def test_thick_pen_digits_are_read_not_refused_as_blobs(monkeypatch):
    """Digits photographed with a thick pen come out shorter than MNIST's digits against
    their stroke width. Big in the picture, they are digits down to BLOB_EXTENT stroke
    widths (a filled disc, about 2, is still refused: see
    test_pictures_without_a_digit_are_refused). These four were refused as solid blobs
    at the old limit, 2.6, and the bundled model reads each right."""
    from digitcore import imaging
    from digitcore.pretrained import load_pretrained

    (x, y), _ = _mini()
    model = load_pretrained()
    pictures = [(photo_digit(x[i], np.random.default_rng([7, i]), {"thick"})[0], int(y[i]))
                for i in (286, 1193, 1199, 1209)]
    for picture, label in pictures:
        digit, proba = model.predict_image(picture)
        assert digit == label and proba[digit] > 0.9, (label, digit, proba)
    monkeypatch.setattr(imaging, "BLOB_EXTENT", 2.6)
    for picture, _ in pictures:
        with pytest.raises(NoDigitError, match="a solid blob"):
            preprocess_image(picture)


@pytest.mark.parametrize("margin, least", [(0.0, 27), (0.05, 33), (0.1, 35)])
def test_broad_marker_digits_cropped_close_are_read(margin, least):
    """A digit written with a broad marker and cropped to a margin of its height around
    it: its strokes fill every window the paper's local level is taken over, so that
    level alone took the paper for ink; the whole picture's median or its rim (with the
    strokes reaching into it), near the paper's end, says otherwise, and the picture is
    read both ways. With no margin the ink is most of the picture, and the paper's level
    and noise come from the pixels below Otsu's threshold. The bundled model read 12, 28
    and 37 of these 40 with the median alone, 30, 36 and 37 with the rim and the paper's
    pixels."""
    from digitcore.pretrained import load_pretrained

    _, (xt, yt) = _mini()
    model = load_pretrained()
    right = 0
    for i in range(40):
        picture = tight_crop(xt[i], np.random.default_rng([5, i]), margin=margin)
        assert (picture < 128).mean() > 0.2  # the ink covers a good part of it
        try:
            right += model.predict_image(picture)[0] == yt[i]
        except NoDigitError:
            pass
    assert right >= least, right


@pytest.mark.parametrize("wall", [0.03, 0.1])
def test_chalk_on_a_board_with_a_light_wall_around_it(wall):
    """A photo of a board with a strip of light wall on every side: the rim is light, as
    a bold digit's paper is when cropped close, but the board's edge runs along each side
    and no stroke reaches into the rim: the chalk is read as ink, as without the wall."""
    from photo_digits import photo_digit

    _, (xt, _) = _mini()
    for i in range(12):
        rng = np.random.default_rng([78, i])
        img, _ = photo_digit(xt[i], rng, {"inverted", "thick"})
        light = int(rng.uniform(190, 245))
        pic = np.pad(img, max(1, int(wall * min(img.shape))), constant_values=light)
        assert _corr(preprocess_image(pic), preprocess_image(img)) > 0.9, i
    # a chalk stroke reaching the board's edge (the board's edge then runs along less than
    # the side's length in pieces: the dark's total share of the side decides)
    for i in (0, 17, 25):
        rng = np.random.default_rng([91, i])
        board = 255 - tight_crop(xt[i], rng, 0.2)
        board = board[:np.nonzero((board > 128).any(axis=1))[0].max() + 1]
        pic = np.pad(board, int(0.07 * min(board.shape)), constant_values=200)
        assert _corr(preprocess_image(pic), preprocess_image(board)) > 0.9, i
    # MNIST digits with their outer 2 pixels white (read as before the rim was looked at:
    # 0.89-1.0 alike)
    for i in range(40):
        p = xt[i].copy()
        p[:2] = p[-2:] = p[:, :2] = p[:, -2:] = 255
        assert _corr(preprocess_image(p), preprocess_image(xt[i])) > 0.85, i
    # a white frame around a white-on-black MNIST digit, 1 pixel or (4x) 8
    assert _corr(preprocess_image(np.pad(xt[20], 1, constant_values=255)),
                 preprocess_image(xt[20])) > 0.9
    big = np.kron(xt[20], np.ones((4, 4), np.uint8))
    assert _corr(preprocess_image(np.pad(big, 8, constant_values=255)),
                 preprocess_image(big)) > 0.9


def test_a_thick_zero_covering_most_of_the_picture_is_not_blank():
    """A bold 0 cropped at its edges covers 60% of the picture: the median and the MAD of
    all its pixels measure the ink, so the blank test saw no ink standing out of that
    'paper', and the paper read as ink was refused as a blob; measured on the pixels
    below Otsu's threshold, the paper is the paper (and the bright rim says so)."""
    ring = _zero(120, 96, thickness=22)
    rows, cols = np.nonzero(ring > 0.5)
    ring = ring[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert (ring > 0.5).mean() > 0.55
    img = 0.88 - 0.8 * ring + np.random.default_rng(2).normal(0, 0.015, ring.shape)
    out = preprocess_image(_u8(img))
    assert _corr(out, preprocess_image(_u8(1 - ring))) > 0.9
    # the ring's hole is paper: dark in the result, ringed by ink
    assert out[14, 14] < 64 and out[14, 4:24].max() > 192


def test_the_bar_of_a_bold_seven_cropped_close_is_kept():
    """One thick band across the picture, away from its edges, reaching just past the
    rest of the digit: a 7's top, not a ruled line."""
    h, w, t = 150, 120, 22
    ink = np.zeros((h, w))
    ink[8:8 + t, 6:w - 6] = 1  # the top bar, 6 pixels from each side
    for r in range(8 + t, h - 8):  # the stem, from the bar's right end down to the left
        c = int(w - 6 - t - (r - 8 - t) * (w - 40 - t) / (h - 16 - t))
        ink[r, c:c + t] = 1
    out = preprocess_image(_u8(0.92 - 0.85 * ink))
    rows = np.nonzero((out >= 128).any(axis=1))[0]
    top = out[rows[0]:rows[0] + 3] >= 128
    assert top.any(axis=0).sum() >= 12  # the bar spans the box, not just the stem's width



@pytest.mark.parametrize("ink, paper", [
    ((1.0, 0.95, 0.0), (0.97, 0.97, 0.95)),   # yellow on white: 11% of the range in luma
    ((0.1, 0.1, 0.12), (0.98, 0.86, 0.15)),   # black on yellow paper: no blue in either
    ((0.15, 0.25, 0.8), (0.95, 0.95, 0.93)),  # blue ink: luma, as before
])
def test_coloured_ink_on_coloured_paper(ink, paper):
    """Yellow ink on white paper is read in the blue channel, where it stands out; the
    luma (what Pillow's convert("L") gives) left it under the paper's noise ("blank")."""
    cover = _zero()[:, :, None]
    rng = np.random.default_rng(0)
    rgb = np.array(paper) * (1 - cover) + np.array(ink) * cover
    rgb = rgb + rng.normal(0, 0.02, rgb.shape)
    assert _corr(preprocess_image(_u8(rgb)), preprocess_image(_u8(1 - cover[:, :, 0]))) > 0.85


@pytest.mark.parametrize("margin", [10, 40, 90])
def test_a_printed_box_around_the_digit_is_dropped(margin):
    """A form's field: a box drawn apart from the digit, narrower than the picture (so
    not a ruled line). It was the largest mark, taken for the digit with the 0 inside."""
    ink = np.pad(_zero(), 120)
    rows, cols = np.nonzero(ink > 0.5)
    r0, r1 = rows.min() - margin, rows.max() + margin
    c0, c1 = cols.min() - margin, cols.max() + margin
    boxed = ink.copy()
    for sl in ((slice(r0, r0 + 3), slice(c0, c1)), (slice(r1 - 3, r1), slice(c0, c1)),
               (slice(r0, r1), slice(c0, c0 + 3)), (slice(r0, r1), slice(c1 - 3, c1))):
        boxed[sl] = 1
    assert _corr(preprocess_image(_u8(1 - boxed)), preprocess_image(_u8(1 - ink))) > 0.95


def test_boxy_digits_are_not_taken_for_a_box():
    """A rectangle with nothing inside is a boxy 0, and one with only a bar inside a
    seven-segment 8: neither loses its outline."""
    h, w = 160, 100
    zero = np.zeros((h + 80, w + 80))
    zero[40:40 + h, 40:40 + w] = 1
    zero[48:32 + h, 48:32 + w] = 0
    eight = zero.copy()
    eight[36 + h // 2:44 + h // 2, 40:40 + w] = 1
    for ink in (zero, eight):
        out = preprocess_image(_u8(1 - ink), reject_non_digits=False)
        rows = np.nonzero((out >= 128).any(axis=1))[0]
        assert rows[-1] - rows[0] >= 18  # the whole outline, 20 pixels tall


@pytest.mark.parametrize("desk, paper_share", [(0.3, 0.4), (0.15, 0.4), (0.3, 0.25)])
def test_a_note_on_a_dark_desk(desk, paper_share):
    """Most of the photo is a dark desk, so the whole picture's median lies at the dark
    end, as it does for light ink on a board: the note's dark 0 is still read as ink."""
    h, w = 300, 400
    ph, pw = int(h * paper_share ** 0.5), int(w * paper_share ** 0.5)
    img = np.full((h, w), desk)
    img[(h - ph) // 2:(h + ph) // 2, (w - pw) // 2:(w + pw) // 2] = 0.9
    ring = _zero(120, 96, thickness=8)
    img[90:210, 152:248] = img[90:210, 152:248] * (1 - ring) + 0.1 * ring
    img += np.random.default_rng(0).normal(0, 0.01, img.shape)
    assert _corr(preprocess_image(_u8(img)), preprocess_image(_u8(1 - ring))) > 0.85


def test_a_dark_shadow_over_most_of_the_sheet():
    ring = _zero(120, 96, thickness=8)
    img = np.full((300, 300), 0.9)
    img[:, :210] = 0.2
    img[90:210, 102:198] = img[90:210, 102:198] * (1 - ring) + 0.05 * ring
    img += np.random.default_rng(1).normal(0, 0.01, img.shape)
    assert _corr(preprocess_image(_u8(img)), preprocess_image(_u8(1 - ring))) > 0.85


def test_a_picture_read_both_ways_needs_no_shape_check_without_reject(monkeypatch, tmp_path):
    """mnist-mini's test digit 13 cropped close stands both ways (paper as ink too): the
    shape check picks the reading; reject_non_digits=False asks for no shape check, and
    without its file the paper's local level's reading is kept."""
    from digitcore import imaging

    _, (xt, _) = _mini()
    picture = tight_crop(xt[13], np.random.default_rng([5, 13]), margin=0.1)
    x = imaging._shrink(picture / 255.0, imaging.WORK_SIDE)
    dark, other = imaging._dark_ink(x)
    assert other is not None
    both = [imaging._read_digit(x, "", side, True) for side in (dark, other)]
    # (each reading's scores, as the check gave them, are the scores of that image)
    for out, score, paper in both:
        assert score == pytest.approx(float(imaging.not_digit_scores(out)[0]), abs=1e-6)
        assert paper == pytest.approx(float(imaging._check_scores(out)[1][0]), abs=1e-6)
    # the reading kept is the one the check takes less for the paper read as ink: here
    # the digit's (dark ink), which the check takes for paper far less than the other
    best, worse = sorted(both, key=lambda b: b[2])
    assert best[2] < 0.5 < worse[2]
    assert np.array_equal(preprocess_image(picture), best[0])
    assert np.array_equal(best[0], both[[dark, other].index(True)][0])
    assert np.array_equal(preprocess_image(picture, reject_non_digits=False), best[0])
    # a 2-class check (no paper's class) picks by its refusal score, asked or not
    from digitcore.network import Network

    two = tmp_path / "two.safetensors"
    Network([784, 16, 2], seed=0).save(two, metadata={"threshold": 0.99})
    monkeypatch.setattr(imaging, "SHAPE_CHECK_FILE", str(two))
    scored = [imaging._read_digit(x, "", side, False)[0] for side in (dark, other)]
    pick = scored[int(np.argmin(imaging.not_digit_scores(np.stack(scored))))]
    assert np.array_equal(preprocess_image(picture, reject_non_digits=False), pick)
    monkeypatch.setattr(imaging, "SHAPE_CHECK_FILE", "no-such-check.safetensors")
    out, score, paper = imaging._read_digit(x, "", dark, False)
    assert score is None and paper is None
    assert np.array_equal(preprocess_image(picture, reject_non_digits=False), out)


def test_a_note_on_a_dark_desk_and_a_slate_on_a_light_wall():
    """A light note covering a third of a photo of a dark desk (and chalk on a slate on a
    light wall): the desk holds the picture's median and the local level calls the note
    the ink, one filled shape with the digit its hole, read as a confident 0. The
    would-be ink covering much of the picture inside its rim reads it both ways now."""
    from digitcore.imaging import resize

    _, (xt, _) = _mini()
    right = {"note": 0, "slate": 0}
    for i in range(20):
        d = resize(xt[i] / 255.0, (140, 140))
        note = np.full((300, 300), 64, np.uint8)
        note[60:240, 60:240] = 230
        note[80:220, 80:220] = (230 * (1 - 0.8 * d)).astype(np.uint8)
        slate = np.full((300, 300), 230, np.uint8)
        slate[60:240, 60:240] = 40
        slate[80:220, 80:220] = np.maximum(40, 200 * d).astype(np.uint8)
        for name, pic in (("note", note), ("slate", slate)):
            try:
                got = preprocess_image(pic)
            except NoDigitError:
                continue
            right[name] += _corr(got, preprocess_image(pic[60:240, 60:240])) > 0.9
    # (before: 1 and 0 of the 20)
    assert right["note"] >= 17 and right["slate"] >= 17, right


def test_a_picture_on_a_transparent_canvas():
    """An opaque scan padded with transparent margins: the margins became black (the
    opposite of the opaque pixels' mean, the paper's), and the sheet was read as ink. They
    take the level of the opaque part's edge now: the paper's, or a light outline's."""
    from digitcore.imaging import resize

    _, (xt, _) = _mini()
    for i in range(10):
        sheet = (255 - 235 * resize(xt[i] / 255.0, (200, 200))).astype(np.uint8)
        rgba = np.zeros((400, 400, 4), np.uint8)
        rgba[100:300, 100:300, :3] = sheet[:, :, None]
        rgba[100:300, 100:300, 3] = 255
        assert _corr(preprocess_image(rgba), preprocess_image(sheet)) > 0.9, i
        # a black digit with a white outline, the rest transparent
        ink = resize(xt[i] / 255.0, (100, 100)) > 0.4
        ring = ink.copy()
        for _ in range(3):
            p = np.pad(ring, 1)
            ring |= p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        sticker = np.zeros((120, 120, 4), np.uint8)
        sticker[10:110, 10:110, :3] = np.where(ink, 0, 255)[:, :, None]
        sticker[10:110, 10:110, 3] = np.where(ring, 255, 0)
        plain = np.full((120, 120), 255, np.uint8)
        plain[10:110, 10:110][ink] = 0
        assert _corr(preprocess_image(sticker), preprocess_image(plain)) > 0.9, i
        # strokes alone on a transparent canvas: as before, on the opposite of their level,
        # also in two tones (black and grey: mostly edge, of both levels)
        drawing = np.zeros((120, 120, 4), np.uint8)
        drawing[10:110, 10:110, 3] = (255 * resize(xt[i] / 255.0, (100, 100))).astype(np.uint8)
        assert _corr(preprocess_image(drawing), preprocess_image(xt[i])) > 0.9, i
        drawing[:, 60:, :3] = 140
        a = drawing[:, :, 3] / 255.0
        on_white = (drawing[:, :, 0] / 255.0) * a + (1.0 - a)
        assert _corr(preprocess_image(drawing), preprocess_image(on_white)) > 0.99, i

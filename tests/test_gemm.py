"""dc_sgemm (blocked, packed, threaded) against a float64 NumPy oracle and dc_sgemm_ref.

Every transpose variant, both kernel paths (generic always; avx2 when the CPU has it),
1 and 2 threads, over awkward shapes: 0, 1, primes, and just below / at / above the
register tile (MR=6, NR=16 avx2 / 8 generic) and cache blocks (MC=144 avx2 / 72 generic,
KC=256). Argument validation belongs to the bindings' tests, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import digitcore._config as config
from digitcore import _ops
from kernel_config import PATHS, select

try:
    from digitcore.ops import gemm, gemm_ref
except ImportError:  # ops.py not written yet: the bindings themselves
    gemm, gemm_ref = _ops.gemm, _ops.gemm_ref

U = 2.0**-24  # float32 unit roundoff

# Error allowed, as a multiple of the classic dot-product bound
#   |fl(C) - C| <= (k + 2) * u * (|alpha| |op(A)| |op(B)| + |beta| |C0|)
# One table, one reason per entry.
TOLERANCE = {
    "vs_float64": (
        1.0,
        "recursive float32 summation of k products, then alpha and beta roundings: "
        "(k+2)u is the textbook worst case; blocked FMA sums are well inside it",
    ),
    "fast_vs_ref": (
        2.0,
        "both sides carry their own rounding error (the reference accumulates in "
        "double, the fast path in float32 FMA order), so twice the bound",
    ),
}

THREADS = [1, 2]
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]

# (m, k, n): edges of MR/NR/MC/KC, primes, zeros, and shapes big enough to be threaded
# (m*n*k >= 4e5) splitting M (tall) or N (m < 2*MR, wide).
SHAPES = [
    (0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0), (1, 1, 1), (1, 13, 1), (2, 3, 5),
    (5, 7, 15), (6, 8, 16), (7, 9, 17), (13, 31, 10), (71, 29, 8), (72, 30, 9),
    (73, 255, 23), (143, 256, 31), (144, 257, 33), (145, 97, 47), (37, 513, 3),
    (150, 70, 97), (7, 300, 257), (5, 200, 600), (300, 41, 60),
]


@pytest.fixture(params=PATHS)
def path(request):
    select(request.param)
    yield request.param
    select(PATHS[-1])


@pytest.fixture(params=THREADS)
def threads(request):
    config.set_num_threads(request.param)
    yield request.param
    config.set_num_threads(0)


def operands(rng, m, k, n, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def oracle(a, b, ta, tb, alpha, beta, c0):
    """float64 result and the elementwise error bound scale."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    a64 = a64.T if ta else a64
    b64 = b64.T if tb else b64
    ref = alpha * (a64 @ b64)
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        ref = ref + beta * c0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c0.astype(np.float64))
    return ref, scale


def assert_close(got, ref, scale, k, which):
    factor, _reason = TOLERANCE[which]
    tol = factor * (k + 2) * U * scale + 1e-30
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= tol)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise AssertionError(
            f"{which}: {int(bad.sum())} of {bad.size} elements out of tolerance; first at "
            f"{tuple(i)}: got {got[tuple(i)]!r}, want {ref[tuple(i)]!r}, tol {tol[tuple(i)]:.3g}")


def run_case(rng, m, k, n, ta, tb, alpha, beta):
    a, b = operands(rng, m, k, n, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    got = gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out)
    assert got is out
    ref, scale = oracle(a, b, ta, tb, alpha, beta, c0)
    assert_close(got, ref, scale, k, "vs_float64")
    out_ref = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    gemm_ref(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out_ref)
    assert_close(out_ref, ref, scale, k, "vs_float64")
    assert_close(got, out_ref.astype(np.float64), scale, k, "fast_vs_ref")


@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_shapes(path, threads, ta, tb):
    rng = np.random.default_rng(1234)
    for i, (m, k, n) in enumerate(SHAPES):
        alpha, beta = [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)][i % 3]
        run_case(rng, m, k, n, ta, tb, alpha, beta)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(0, 160), k=st.integers(0, 300), n=st.integers(0, 160),
    ta=st.booleans(), tb=st.booleans(),
    alpha=st.sampled_from([1.0, -1.0, 0.5, 3.0]),
    beta=st.sampled_from([0.0, 1.0, -2.0]),
    path=st.sampled_from(PATHS), threads=st.sampled_from(THREADS),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis(m, k, n, ta, tb, alpha, beta, path, threads, seed):
    select(path)
    config.set_num_threads(threads)
    try:
        run_case(np.random.default_rng(seed), m, k, n, ta, tb, alpha, beta)
    finally:
        select(PATHS[-1])
        config.set_num_threads(0)


@pytest.mark.parametrize("m,k,n", [(128, 784, 128), (32, 784, 128), (128, 128, 10)])
@pytest.mark.parametrize("ta,tb", VARIANTS[:3], ids=["AB", "AtB", "ABt"])
def test_training_shapes(path, threads, m, k, n, ta, tb):
    run_case(np.random.default_rng(7), m, k, n, ta, tb, 1.0, 0.0)


# Narrow N (n <= 16) has its own kernels on the avx2 path (dot products along k when A is
# not transposed, C^T = op(B)^T op(A)^T when it is): every n across the switch to the
# blocked path, m off the 4/16-row tiles, k off the 8-lane vectors.
NARROW_MK = [(1, 1), (3, 7), (17, 9), (33, 130), (128, 128)]


@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_narrow_n(path, threads, ta, tb):
    rng = np.random.default_rng(11)
    for n in range(1, 18):
        for i, (m, k) in enumerate(NARROW_MK):
            alpha, beta = [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)][(i + n) % 3]
            run_case(rng, m, k, n, ta, tb, alpha, beta)


# A 1-row product runs the dot-product kernel 8 columns at a time (one image through a
# layer); each element must keep the bits it gets in the 4-row tile of a taller product.
@pytest.mark.parametrize("n", [8, 10, 16])
@pytest.mark.parametrize("k", [7, 64, 300])
@pytest.mark.parametrize("ta,tb", [VARIANTS[0], VARIANTS[2]], ids=["AB", "ABt"])
def test_narrow_one_row_matches_tile_rows(path, k, n, ta, tb):
    rng = np.random.default_rng(k + n)
    a, b = operands(rng, 9, k, n, ta, tb)
    c0 = rng.standard_normal((9, n)).astype(np.float32)
    assert_row_slices_match(a, b, ta, tb, c0, (0, 3, 8), 1)


# threaded narrow shapes (m*n*k >= 4e5): M slices of 16 rows, m not a multiple of 16
@pytest.mark.parametrize("m,k,n", [(1000, 100, 10), (203, 300, 7), (333, 129, 16)])
@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_narrow_threads_bitwise(path, m, k, n, ta, tb):
    rng = np.random.default_rng(13)
    a, b = operands(rng, m, k, n, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    results = {}
    for nt in THREADS:
        config.set_num_threads(nt)
        try:
            out = c0.copy()
            gemm(a, b, trans_a=ta, trans_b=tb, alpha=-0.5, beta=0.25, out=out)
        finally:
            config.set_num_threads(0)
        ref, scale = oracle(a, b, ta, tb, -0.5, 0.25, c0)
        assert_close(out, ref, scale, k, "vs_float64")
        results[nt] = out
    assert np.array_equal(results[1], results[2])


def test_out_overlap_rejected():
    # the binding's O(1) address-range check (exact for C-contiguous arrays)
    buf = np.zeros((20, 10), np.float32)
    a, b = buf[:10], np.ones((10, 10), np.float32)
    for out in (buf[5:15], buf[:10], buf[9:19]):
        with pytest.raises(ValueError, match="overlap"):
            gemm(a, b, out=out)
    gemm(a, b, out=buf[10:20])  # adjacent, not overlapping
    with pytest.raises(ValueError, match="overlap"):
        gemm(b, a, out=b)
    with pytest.raises(TypeError, match="float32"):
        gemm(a.astype(">f4"), b)
    with pytest.raises(ValueError, match="shape"):
        gemm(a, b, out=np.empty((10, 9), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm(a, b, out=np.empty((10, 20), np.float32)[:, :10])
    ro = np.empty((10, 10), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        gemm(a, b, out=ro)


@pytest.mark.parametrize("m,k,n", [(150, 70, 97), (5, 200, 600), (128, 784, 128)])
def test_bitwise_deterministic(path, m, k, n):
    rng = np.random.default_rng(3)
    a, b = operands(rng, m, k, n, False, True)
    results = {}
    for nt in THREADS:
        config.set_num_threads(nt)
        first = gemm(a, b, trans_b=True)
        for _ in range(3):
            assert np.array_equal(gemm(a, b, trans_b=True), first), f"threads={nt}"
        results[nt] = first
    config.set_num_threads(0)
    # K blocking depends only on k and each element has one owner thread, so the
    # thread count does not change a single bit either (documented in gemm.c)
    assert np.array_equal(results[1], results[2])


def assert_row_slices_match(a, b, ta, tb, c0, starts, rows):
    """Rows [r0, r0 + rows) of op(A) op(B) (alpha, beta on c0), for each r0 in starts,
    computed as a product of only those rows, equal the same rows of the whole product
    bit for bit."""
    for alpha, beta in [(1.0, 0.0), (-0.5, 0.25)]:
        full = c0.copy()
        gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=full)
        for r0 in starts:
            sub_a = np.ascontiguousarray(a[:, r0:r0 + rows] if ta else a[r0:r0 + rows])
            part = c0[r0:r0 + rows].copy()
            gemm(sub_a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=part)
            assert np.array_equal(part, full[r0:r0 + rows]), (r0, alpha, beta)


# The AVX2 path runs tiles of <= 4 rows (an M edge, e.g. M = 32 = 5 * 6 + 2) in a 2- or
# 4-row kernel. A row's bits must not depend on which kernel its tile ran: rows of a
# full 6-row tile, computed again as a product of only those rows, must match exactly.
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_edge_tile_rows_match_full_tile(path, rows, ta, tb):
    rng = np.random.default_rng(17 + rows)
    m, k, n = 32, 300, 40
    a, b = operands(rng, m, k, n, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    assert_row_slices_match(a, b, ta, tb, c0, (0, 6, 30 - rows + 2 if rows <= 2 else 6),
                            rows)


# An M block that would end in a panel of 1 or 2 rows ends in two panels run by the 4-row
# kernel instead (AVX2 split_rows: 6 + 2 rows as 4 + 4, 6 + 1 as 4 + 3). The first m rows
# of a product whose rows all sit in full 6-row tiles must come out bit for bit the same
# when they are the whole product: in one block (m <= 144), in several, and on 2 threads.
@pytest.mark.parametrize("m", [7, 8, 13, 14, 32, 128, 290, 296])
@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_split_tail_rows_match_full_tiles(path, threads, m, ta, tb):
    rng = np.random.default_rng(m)
    big_m, k, n = 300, 270, 40
    a, b = operands(rng, big_m, k, n, ta, tb)
    c0 = rng.standard_normal((big_m, n)).astype(np.float32)
    assert_row_slices_match(a, b, ta, tb, c0, (0,), m)


# With a tall A (several M blocks) and a small B, all K blocks of B are packed at once and
# the M blocks run outermost (gemm.c: b_whole); a product of one M block runs its K blocks
# outermost. Each element must get the same bits either way: row slices that fit in one
# block, computed alone, equal the same rows of the whole tall product.
@pytest.mark.parametrize("ta,tb", VARIANTS, ids=["AB", "AtB", "ABt", "AtBt"])
def test_tall_a_loop_order_keeps_bits(path, threads, ta, tb):
    rng = np.random.default_rng(23)
    m, k, n = 500, 600, 40
    a, b = operands(rng, m, k, n, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    assert_row_slices_match(a, b, ta, tb, c0, (0, 144, 437), 63)


# The x86 tiles read an A with contiguous rows in place instead of packing it when n spans
# at most 4 B micro-panels (gemm.c: direct_a; 64 columns on the AVX2 tile, 128 on
# AVX-512), and pack it for wider products. A column's bits must not depend on which:
# column slices of a wide (packed) product, computed as products of only those columns,
# equal the same columns of the whole product bit for bit, for tall, blocked and edge M.
@pytest.mark.parametrize("m,k", [(7, 300), (145, 1030), (600, 256)])
@pytest.mark.parametrize("tb", [False, True], ids=["AB", "ABt"])
def test_in_place_a_matches_packed_a(path, threads, m, k, tb):
    rng = np.random.default_rng(m + k)
    n = 512
    a, b = operands(rng, m, k, n, False, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for alpha, beta in [(1.0, 0.0), (-0.5, 0.25)]:
        full = c0.copy()
        gemm(a, b, trans_b=tb, alpha=alpha, beta=beta, out=full)
        for j0, cols in [(0, 64), (64, 128), (200, 40), (0, 96), (32, 256)]:
            sub_b = np.ascontiguousarray(b[j0:j0 + cols] if tb else b[:, j0:j0 + cols])
            part = np.ascontiguousarray(c0[:, j0:j0 + cols])
            gemm(a, sub_b, trans_b=tb, alpha=alpha, beta=beta, out=part)
            assert np.array_equal(part, full[:, j0:j0 + cols]), (j0, cols, alpha, beta)


def test_beta_zero_ignores_nan_in_out(path, threads):
    rng = np.random.default_rng(5)
    for (m, k, n) in [(7, 9, 17), (150, 70, 97)]:
        a, b = operands(rng, m, k, n, False, False)
        out = np.full((m, n), np.nan, np.float32)
        gemm(a, b, beta=0.0, out=out)
        assert np.isfinite(out).all()
        out[:] = np.inf
        gemm(a, b, alpha=0.0, beta=0.0, out=out)  # alpha = 0: C = beta*C = 0
        assert not out.any()


def test_alpha_zero_reads_neither_operand(path):
    # BLAS's rule, in the kernels and both references alike: a NaN in a or b does not reach C
    from digitcore import ops_ref
    a = np.array([[np.nan, 1.0], [2.0, np.inf]], np.float32)
    b = np.ones((2, 3), np.float32)
    c0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    for f in (gemm, gemm_ref, ops_ref.gemm):
        for beta in (0.0, 1.0, -0.5):
            out = c0.copy()
            got = f(a, b, alpha=0.0, beta=beta, out=out)
            np.testing.assert_array_equal(got, np.float32(beta) * c0, err_msg=f.__name__)
        # a nonzero alpha still carries the NaN
        with np.errstate(invalid="ignore"):
            assert np.isnan(f(a, b, alpha=1e-30)).any()
        # and the shapes are checked whatever alpha is
        with pytest.raises(ValueError, match="inner dimensions"):
            f(a, np.ones((3, 3), np.float32), alpha=0.0)


def test_transpose_flags_take_bools_and_0_or_1():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    want = a.T @ a
    for flag in (True, 1, np.True_, np.array(True), np.int64(1)):
        np.testing.assert_array_equal(gemm(a, a, trans_a=flag), want)


def test_k_zero_scales_c(path):
    c0 = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    out = c0.copy()
    gemm(a, b, beta=0.5, out=out)
    np.testing.assert_array_equal(out, 0.5 * c0)
    out[:] = np.nan
    gemm(a, b, beta=0.0, out=out)
    np.testing.assert_array_equal(out, np.zeros_like(c0))


def test_worked_example():
    # hand-computed: [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]
    a = np.array([[1, 2], [3, 4]], np.float32)
    b = np.array([[5, 6], [7, 8]], np.float32)
    for p in PATHS:
        select(p)
        np.testing.assert_array_equal(gemm(a, b), [[19, 22], [43, 50]])
        np.testing.assert_array_equal(gemm(a, b, trans_a=True), [[26, 30], [38, 44]])
        np.testing.assert_array_equal(gemm(a, b, trans_b=True), [[17, 23], [39, 53]])
    select(PATHS[-1])


def test_kernel_selection_roundtrip():
    assert _ops.gemm_tile() in PATHS
    config.select_kernel("generic")
    assert config.kernel_path() == "generic"
    assert _ops.gemm_tile() == "generic"  # the AVX-512 tile belongs to the AVX2 path
    select(PATHS[-1])
    assert _ops.gemm_tile() == PATHS[-1]


@pytest.mark.skipif(not _ops.cpu_has_avx512(), reason="needs a CPU with AVX-512")
@pytest.mark.parametrize("threads", THREADS)
def test_avx512_tile_gives_the_avx2_tiles_bits(threads):
    # Both tiles give every element the same FMA chain over the same K blocks, so training
    # gives the same bits on CPUs with and without AVX-512. Shapes cover full and edge
    # tiles of both (6x16 and 6x32), one and several K blocks, and thread splits of M and N.
    rng = np.random.default_rng(7)
    config.set_num_threads(threads)
    try:
        # (products under DC_GEMM_AVX512_MIN_WORK multiply-adds run the 256-bit tile on both
        # settings; these are above it, with edge tiles of 2, 4 and 5 rows and every width)
        big = [(13, 1100, 47), (61, 67, 95), (2, 3000, 40), (4, 1500, 33), (11, 400, 63),
               (128, 784, 128), (128, 784, 800), (32, 784, 128), (128, 800, 784),
               (1000, 600, 700)]
        for i, (m, k, n) in enumerate(SHAPES + big):
            for ta, tb in VARIANTS:
                # beta 0.3: beta * C rounds, so a fused and an unfused epilogue differ
                alpha, beta = [(1.0, 0.0), (-0.5, 1.0), (0.7, 0.3)][i % 3]
                a, b = operands(rng, m, k, n, ta, tb)
                c0 = rng.standard_normal((m, n)).astype(np.float32)
                out = {}
                for p in ("avx2", "avx512"):
                    select(p)
                    out[p] = c0.copy()
                    gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out[p])
                np.testing.assert_array_equal(out["avx512"].view(np.uint32),
                                              out["avx2"].view(np.uint32),
                                              err_msg=f"{(m, k, n, ta, tb)}")
    finally:
        select(PATHS[-1])
        config.set_num_threads(0)

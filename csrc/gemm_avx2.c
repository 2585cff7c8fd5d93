/*
 * gemm_avx2.c -- AVX2+FMA micro-kernel (6x16), packing and the narrow-N kernels for
 * dc_sgemm.
 *
 * Compiled with -mavx2 -mfma (MSVC: /arch:AVX2), like every *_avx2.c (and, with
 * -mavx512f, every *_avx512.c) and no other file: gemm.c reaches these functions only
 * through the kernel table, and only when dc_cpu_has_avx2(). One file (~650 lines, a third of
 * it the register kernels' unrolled macros) because it is the GEMM's one AVX2 translation unit:
 * its sections share the tile constants, the store helpers and the build guard, and the per-ISA
 * table in gemm.c names each of them.
 *
 * Tile choice: 6 rows x 16 columns = 12 ymm accumulators; per k step 2 loads of B,
 * 6 broadcasts of A and 12 FMAs, so the two FMA pipes (not the load ports) bound it.
 */
#include <immintrin.h>
#include <string.h>

#include "gemm_internal.h"
#include "gemm_x86.h"

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "gemm_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#define MR 6
#define NR 16

#if defined(_MSC_VER)
#define DC_ALIGN64 __declspec(align(64))
#define DC_ALIGN64_POST
#else
#define DC_ALIGN64
#define DC_ALIGN64_POST __attribute__((aligned(64)))
#endif

/* ---- micro-kernel ------------------------------------------------------------------------ */

/* The kernel body. Row r of the A micro-panel at step p is a[r*rs_a + p*cs_a]: packed
 * panels (signalled by rs_a == 0) are inlined with the constants (1, MR); unpacked A
 * (op(A) read in place when packing would not pay, see gemm.c) passes its strides. */
DC_INLINE void dc_kernel_6x16(const int rows, int64_t k, const float *restrict a, int64_t rs_a,
                              int64_t cs_a, const float *restrict b, float *restrict c,
                              int64_t ldc, float alpha, float beta, int mr, int nr)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    __m256 b0, b1, av;

    /* the tile of C is written once at the end: pull its lines in meanwhile */
    if (beta != 0.0f) {
        for (int r = 0; r < mr; r++) {
            _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    /* rows past mr (edge tile) re-read the last valid row: in bounds, results dropped */
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * rs_a, *a2 = a + (mr > 2 ? 2 : 0) * rs_a;
    const float *a3 = a + (mr > 3 ? 3 : 0) * rs_a, *a4 = a + (mr > 4 ? 4 : 0) * rs_a;
    const float *a5 = a + (mr > 5 ? 5 : 0) * rs_a;

/* clang-format off */
#define DC_ROW(r, o)                                                  \
    if (rows > r) {                                                   \
        av = _mm256_broadcast_ss(a##r + (o) * cs_a);                  \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                   \
        c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);                   \
    }
#define DC_STEP(o)                                                    \
    b0 = _mm256_load_ps(b + NR * (o));                                \
    b1 = _mm256_load_ps(b + NR * (o) + 8);                            \
    DC_ROW(0, o) DC_ROW(1, o) DC_ROW(2, o) DC_ROW(3, o) DC_ROW(4, o) DC_ROW(5, o)
    /* clang-format on */

    int64_t p = k;
    for (; p >= 4; p -= 4) {
        if (rs_a == 1) { /* packed or contiguous rows: stream ahead */
            _mm_prefetch((const char *)(a0 + 16 * cs_a), _MM_HINT_T0);
            _mm_prefetch((const char *)(a0 + 16 * cs_a + 16), _MM_HINT_T0);
        }
        /* clang-format off */
        DC_STEP(0)
        DC_STEP(1)
        DC_STEP(2)
        DC_STEP(3)
        /* clang-format on */
        a0 += 4 * cs_a;
        a1 += 4 * cs_a;
        a2 += 4 * cs_a;
        a3 += 4 * cs_a;
        a4 += 4 * cs_a;
        a5 += 4 * cs_a;
        b += 4 * NR;
    }
    for (; p > 0; p--) {
        /* clang-format off */
        DC_STEP(0)
        /* clang-format on */
        a0 += cs_a;
        a1 += cs_a;
        a2 += cs_a;
        a3 += cs_a;
        a4 += cs_a;
        a5 += cs_a;
        b += NR;
    }
#undef DC_STEP
#undef DC_ROW

    const __m256 va = _mm256_set1_ps(alpha);
    if (rows == MR && mr == MR && nr == NR) {
        if (beta == 0.0f) {
/* clang-format off */
#define DC_PUT0(r)                                                        \
    _mm256_storeu_ps(c + (r) * ldc, _mm256_mul_ps(va, c##r##0));          \
    _mm256_storeu_ps(c + (r) * ldc + 8, _mm256_mul_ps(va, c##r##1));
            DC_PUT0(0) DC_PUT0(1) DC_PUT0(2) DC_PUT0(3) DC_PUT0(4) DC_PUT0(5)
/* clang-format on */
#undef DC_PUT0
        } else {
            const __m256 vb = _mm256_set1_ps(beta);
/* clang-format off */
#define DC_PUT1(r)                                                                   \
    _mm256_storeu_ps(c + (r) * ldc,                                                  \
                     _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + (r) * ldc),             \
                                     _mm256_mul_ps(va, c##r##0)));                   \
    _mm256_storeu_ps(c + (r) * ldc + 8,                                              \
                     _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + (r) * ldc + 8),         \
                                     _mm256_mul_ps(va, c##r##1)));
            DC_PUT1(0) DC_PUT1(1) DC_PUT1(2) DC_PUT1(3) DC_PUT1(4) DC_PUT1(5)
/* clang-format on */
#undef DC_PUT1
        }
        return;
    }

    /* edge tile: same arithmetic as above on a copy of the valid part of C, so an element
     * gets the same bits whether it lands in a full or an edge tile (thread slices move
     * tile boundaries; results must not depend on the thread count) */
    DC_ALIGN64 float t[MR * NR] DC_ALIGN64_POST;
    if (beta != 0.0f) {
        memset(t, 0, sizeof t);
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
                t[r * NR + j] = c[r * ldc + j];
    }
    if (beta == 0.0f) {
/* clang-format off */
#define DC_SPILL0(r)                                                    \
    if (rows > r) {                                                     \
        _mm256_store_ps(t + (r) * NR, _mm256_mul_ps(va, c##r##0));      \
        _mm256_store_ps(t + (r) * NR + 8, _mm256_mul_ps(va, c##r##1));  \
    }
        DC_SPILL0(0) DC_SPILL0(1) DC_SPILL0(2) DC_SPILL0(3) DC_SPILL0(4) DC_SPILL0(5)
/* clang-format on */
#undef DC_SPILL0
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
/* clang-format off */
#define DC_SPILL1(r)                                                                      \
    if (rows > r) {                                                                       \
        _mm256_store_ps(t + (r) * NR,                                                     \
                        _mm256_fmadd_ps(vb, _mm256_load_ps(t + (r) * NR),                 \
                                        _mm256_mul_ps(va, c##r##0)));                     \
        _mm256_store_ps(t + (r) * NR + 8,                                                 \
                        _mm256_fmadd_ps(vb, _mm256_load_ps(t + (r) * NR + 8),             \
                                        _mm256_mul_ps(va, c##r##1)));                     \
    }
        DC_SPILL1(0) DC_SPILL1(1) DC_SPILL1(2) DC_SPILL1(3) DC_SPILL1(4) DC_SPILL1(5)
/* clang-format on */
#undef DC_SPILL1
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++)
            c[r * ldc + j] = t[r * NR + j];
}

void dc_sgemm_ukernel_avx2_6x16(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                const float *b, float *c, int64_t ldc, float alpha, float beta,
                                int mr, int nr)
{
    if (rs_a == 0) /* packed */
        dc_kernel_6x16(6, k, a, 1, MR, b, c, ldc, alpha, beta, mr, nr);
    else
        dc_kernel_6x16(6, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
}

/* Each element's arithmetic is the same as in the 6-row kernel, so its bits do not
 * depend on which kernel its tile ran. */
void dc_sgemm_ukernel_avx2_edge4(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                 const float *b, float *c, int64_t ldc, float alpha, float beta,
                                 int mr, int nr)
{
    if (rs_a == 0) { /* packed */
        if (mr <= 2)
            dc_kernel_6x16(2, k, a, 1, MR, b, c, ldc, alpha, beta, mr, nr);
        else
            dc_kernel_6x16(4, k, a, 1, MR, b, c, ldc, alpha, beta, mr, nr);
    } else {
        if (mr <= 2)
            dc_kernel_6x16(2, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
        else
            dc_kernel_6x16(4, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
    }
}

/* ---- packing ----------------------------------------------------------------------------- */

/* Store lanes 0..5 of v at dst (exactly 6 floats: panels are packed concurrently by
 * different threads, so no over-writing store may touch a neighbour's panel). */
static inline void dc_store6(float *dst, __m256 v)
{
    _mm_storeu_ps(dst, _mm256_castps256_ps128(v));
    _mm_storel_pi((__m64 *)(dst + 4), _mm256_extractf128_ps(v, 1));
}

/* Rows r[0..5] (8 columns each) stored column by column as 48 contiguous floats:
 * dst[8*6 floats] = r[0][0] .. r[5][0], r[0][1] .. r[5][1], ... Each 128-bit lane holds 4
 * columns: a 4x4 transpose of rows 0-3, rows 4-5 interleaved, and the pieces put in
 * order; 6 full stores instead of 16 partial ones (an 8x8 transpose, then 6 of 8 lanes
 * per column). */
static inline void dc_store_6x8(float *dst, const __m256 r[MR])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 u01 = _mm256_unpacklo_ps(r[4], r[5]); /* r4c0 r5c0 r4c1 r5c1 */
    const __m256 u23 = _mm256_unpackhi_ps(r[4], r[5]); /* r4c2 r5c2 r4c3 r5c3 */
    const __m256 c0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)); /* r0-3 c0 */
    const __m256 c1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)); /* r0-3 c1 */
    const __m256 c2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)); /* r0-3 c2 */
    const __m256 c3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)); /* r0-3 c3 */
    const __m256 x1 =
        _mm256_shuffle_ps(u01, c1, _MM_SHUFFLE(1, 0, 1, 0)); /* r4c0 r5c0 r0c1 r1c1 */
    const __m256 x2 =
        _mm256_shuffle_ps(c1, u01, _MM_SHUFFLE(3, 2, 3, 2)); /* r2c1 r3c1 r4c1 r5c1 */
    const __m256 x4 =
        _mm256_shuffle_ps(u23, c3, _MM_SHUFFLE(1, 0, 1, 0)); /* r4c2 r5c2 r0c3 r1c3 */
    const __m256 x5 =
        _mm256_shuffle_ps(c3, u23, _MM_SHUFFLE(3, 2, 3, 2)); /* r2c3 r3c3 r4c3 r5c3 */
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(c0, x1, 0x20));
    _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(x2, c2, 0x20));
    _mm256_storeu_ps(dst + 16, _mm256_permute2f128_ps(x4, x5, 0x20));
    _mm256_storeu_ps(dst + 24, _mm256_permute2f128_ps(c0, x1, 0x31));
    _mm256_storeu_ps(dst + 32, _mm256_permute2f128_ps(x2, c2, 0x31));
    _mm256_storeu_ps(dst + 40, _mm256_permute2f128_ps(x4, x5, 0x31));
}

/* One A micro-panel from op(A) = A (rows contiguous): rows 0..mr-1 of src (the others
 * packed as zeros), 8 columns at a time. more: the next panels' rows exist, fetch them
 * meanwhile (the 6 row streams are short, kc floats, and a tall A, e.g. 10000 x 784,
 * otherwise waits on memory here). */
DC_INLINE void dc_pack_a_rows(float *pa, const float *src, int64_t lda, const int mr,
                              int64_t kc, int more)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        if (more && (p & 15) == 0)
            for (int q = 0; q < MR; q++)
                _mm_prefetch((const char *)(src + (q + 2 * MR) * lda + p), _MM_HINT_T0);
        __m256 r[MR];
        for (int q = 0; q < MR; q++)
            r[q] = q < mr ? _mm256_loadu_ps(src + q * lda + p) : _mm256_setzero_ps();
        dc_store_6x8(pa + p * MR, r);
    }
    for (; p < kc; p++)
        for (int q = 0; q < MR; q++)
            pa[p * MR + q] = q < mr ? src[q * lda + p] : 0.0f;
}

void dc_sgemm_pack_a_avx2_6(float *pa, int64_t ps, const float *a, int64_t lda, int trans_a,
                            int64_t i0, int64_t mlen, int64_t p0, int64_t kc)
{
    if (trans_a && mlen >= MR) {
        /* op(A)[i][p] = A[p][i]: walk A row by row (one sequential stream) and scatter 6
         * floats into each full panel, as pack_b does for B; panel by panel, each pass
         * strode through all kc rows again (AtB (128,784,128): ~0.90x OpenBLAS). The
         * edge panel below. */
        const int64_t full = mlen / MR;
        for (int64_t p = 0; p < kc; p++) {
            const float *src = a + (p0 + p) * lda + i0;
            float *dst = pa + p * MR;
            int64_t q = 0;
            for (; q + 1 < full; q++) /* an 8-float load stays inside the row's panels */
                dc_store6(dst + q * ps, _mm256_loadu_ps(src + q * MR));
            for (; q < full; q++) {
                _mm_storeu_ps(dst + q * ps, _mm_loadu_ps(src + q * MR));
                dst[q * ps + 4] = src[q * MR + 4];
                dst[q * ps + 5] = src[q * MR + 5];
            }
        }
        if (full * MR == mlen)
            return;
        pa += full * ps;
        i0 += full * MR;
        mlen -= full * MR;
    }
    for (int64_t ip = 0; ip < mlen; ip += MR, pa += ps) {
        const int mr = mlen - ip < MR ? (int)(mlen - ip) : MR;
        if (trans_a) { /* an edge panel (full ones were packed above): rows past mr = 0 */
            const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr),
                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const float *src = a + p0 * lda + i0 + ip;
            for (int64_t p = 0; p < kc; p++, src += lda)
                dc_store6(pa + p * MR, _mm256_maskload_ps(src, rows));
            continue;
        }
        if (mr == MR)
            dc_pack_a_rows(pa, a + (i0 + ip) * lda + p0, lda, MR, kc, ip + 3 * MR <= mlen);
        else
            dc_pack_a_rows(pa, a + (i0 + ip) * lda + p0, lda, mr, kc, 0);
    }
}

void dc_sgemm_pack_b_avx2_16(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                             int64_t p0, int64_t kc, int64_t j0, int64_t nlen)
{
    dc_pack_b_x86(NR, pb, ps, b, ldb, trans_b, p0, kc, j0, nlen);
}

/* ---- narrow N (n <= DC_GEMM_NARROW_MAX_N): every vector lane does useful work ------------ */

/* With n = 10 the 6x16 tile leaves 6 of 16 lanes idle. Two layouts instead, no K
 * blocking (op(B) is at most 16 x k) and no packing of A:
 *   op(A) rows contiguous (A not transposed): dot products along k, 4 rows x nj <= 3
 *     columns of 8-lane partial sums, reduced with one fixed hadd tree per element;
 *     op(B)^T rows must be contiguous (rs_b == 1: B transposed, or packed by gemm.c).
 *   op(A) columns contiguous (A transposed): C^T = op(B)^T op(A)^T, 16 rows of C along
 *     the two ymm vectors x nj <= 6 columns broadcast from op(B).
 * Every C element's arithmetic depends only on its own row and column (edge tiles
 * re-read a valid row or mask lanes), so row slices per thread change no bits. */

DC_INLINE void dc_narrow_dot_tile(const int NJ, int64_t k, const float *a, int64_t lda, int mr,
                                  const float *bt, int64_t ldbt, float *c, int64_t ldc,
                                  float alpha, float beta, __m256i tail)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda;
    const float *a2 = a + (mr > 2 ? 2 : 0) * lda, *a3 = a + (mr > 3 ? 3 : 0) * lda;
    const float *b0 = bt, *b1 = bt + (NJ > 1 ? 1 : 0) * ldbt,
                *b2 = bt + (NJ > 2 ? 2 : 0) * ldbt;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    __m256 v0, v1 = c00, v2 = c00, av;
/* clang-format off */
#define DC_DROW(r)                                                     \
    c##r##0 = _mm256_fmadd_ps(av, v0, c##r##0);                        \
    if (NJ > 1) c##r##1 = _mm256_fmadd_ps(av, v1, c##r##1);            \
    if (NJ > 2) c##r##2 = _mm256_fmadd_ps(av, v2, c##r##2);
    /* clang-format on */
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        v0 = _mm256_loadu_ps(b0 + p);
        if (NJ > 1)
            v1 = _mm256_loadu_ps(b1 + p);
        if (NJ > 2)
            v2 = _mm256_loadu_ps(b2 + p);
        av = _mm256_loadu_ps(a0 + p);
        DC_DROW(0)
        av = _mm256_loadu_ps(a1 + p);
        DC_DROW(1)
        av = _mm256_loadu_ps(a2 + p);
        DC_DROW(2)
        av = _mm256_loadu_ps(a3 + p);
        DC_DROW(3)
    }
    if (p < k) { /* lanes past k load 0 and add 0 */
        v0 = _mm256_maskload_ps(b0 + p, tail);
        if (NJ > 1)
            v1 = _mm256_maskload_ps(b1 + p, tail);
        if (NJ > 2)
            v2 = _mm256_maskload_ps(b2 + p, tail);
        av = _mm256_maskload_ps(a0 + p, tail);
        DC_DROW(0)
        av = _mm256_maskload_ps(a1 + p, tail);
        DC_DROW(1)
        av = _mm256_maskload_ps(a2 + p, tail);
        DC_DROW(2)
        av = _mm256_maskload_ps(a3 + p, tail);
        DC_DROW(3)
    }
#undef DC_DROW
    const __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
    /* s = [row 0, row 1, row 2, row 3] sums of column j */
/* clang-format off */
#define DC_DCOL(j)                                                                     \
    {                                                                                  \
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(c0##j, c1##j),                  \
                                        _mm256_hadd_ps(c2##j, c3##j));                 \
        __m128 s = _mm_mul_ps(va, _mm_add_ps(_mm256_castps256_ps128(h),                \
                                             _mm256_extractf128_ps(h, 1)));            \
        DC_ALIGN64 float t[4] DC_ALIGN64_POST;                                         \
        if (beta != 0.0f) {                                                            \
            for (int r = 0; r < 4; r++) t[r] = r < mr ? c[r * ldc + (j)] : 0.0f;       \
            s = _mm_fmadd_ps(vb, _mm_load_ps(t), s);                                   \
        }                                                                              \
        _mm_store_ps(t, s);                                                            \
        for (int r = 0; r < mr; r++) c[r * ldc + (j)] = t[r];                          \
    }
    DC_DCOL(0)
    /* clang-format on */
    if (NJ > 1)
        DC_DCOL(1)
    if (NJ > 2)
        DC_DCOL(2)
#undef DC_DCOL
}

/* One row of op(A) against 8 columns (op(B)^T rows), the same arithmetic per element as
 * dc_narrow_dot_tile (8-lane partial sums along k, then ((0+1)+(2+3)) + ((4+5)+(6+7))),
 * so a row gives the same bits in either tile. A 1-row product (one image through the
 * first layer) would otherwise run the 4-row tile on a re-read row, 3 columns at a time:
 * 4x the multiply-adds and 8 loads per 3 FMAs instead of 9 per 8. */
static void dc_dot_row_8(int64_t k, const float *a, const float *bt, int64_t ldbt, float *c,
                         float alpha, float beta, __m256i tail)
{
    const float *b0 = bt, *b1 = bt + ldbt, *b2 = bt + 2 * ldbt, *b3 = bt + 3 * ldbt;
    const float *b4 = bt + 4 * ldbt, *b5 = bt + 5 * ldbt, *b6 = bt + 6 * ldbt;
    const float *b7 = bt + 7 * ldbt;
    __m256 d0 = _mm256_setzero_ps(), d1 = d0, d2 = d0, d3 = d0, d4 = d0, d5 = d0, d6 = d0,
           d7 = d0, av;
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        av = _mm256_loadu_ps(a + p);
        /* Eight +0 inputs would add 0 * b to each lane: +-0 for a finite b, which leaves
         * a lane that started at +0 as it is (no lane is ever -0), so they are skipped
         * with their 8 loads of b. One image's zero pixels are most of the first layer's
         * weight, which is read from L2 at every call. (An infinite or NaN weight there
         * would have made the sum NaN: the sparse path skips those zeros too.) */
        if (_mm256_testz_si256(_mm256_castps_si256(av), _mm256_castps_si256(av)))
            continue;
        d0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + p), d0);
        d1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + p), d1);
        d2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + p), d2);
        d3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + p), d3);
        d4 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b4 + p), d4);
        d5 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b5 + p), d5);
        d6 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b6 + p), d6);
        d7 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b7 + p), d7);
    }
    if (p < k) { /* lanes past k load 0 and add 0 */
        av = _mm256_maskload_ps(a + p, tail);
        d0 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b0 + p, tail), d0);
        d1 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b1 + p, tail), d1);
        d2 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b2 + p, tail), d2);
        d3 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b3 + p, tail), d3);
        d4 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b4 + p, tail), d4);
        d5 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b5 + p, tail), d5);
        d6 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b6 + p, tail), d6);
        d7 = _mm256_fmadd_ps(av, _mm256_maskload_ps(b7 + p, tail), d7);
    }
    /* q0 = [(01)+(23) of columns 0..3 | (45)+(67) of columns 0..3], q1 for columns 4..7 */
    const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(d0, d1), _mm256_hadd_ps(d2, d3));
    const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(d4, d5), _mm256_hadd_ps(d6, d7));
    __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20),
                             _mm256_permute2f128_ps(q0, q1, 0x31));
    s = _mm256_mul_ps(_mm256_set1_ps(alpha), s);
    if (beta != 0.0f)
        s = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), s);
    _mm256_storeu_ps(c, s);
}

DC_INLINE void dc_narrow_t_tile(const int NJ, int64_t k, const float *a, int64_t lda, int mr,
                                const float *b, int64_t rs_b, int64_t cs_b, float *c,
                                int64_t ldc, float alpha, float beta)
{
    /* named accumulators: an acc[][] array made GCC store every one back each step */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256 x0, x1, bv;
/* clang-format off */
#define DC_TCOL(j)                                                     \
    if (NJ > (j)) {                                                    \
        bv = _mm256_broadcast_ss(bp + (j) * cs_b);                     \
        c##j##0 = _mm256_fmadd_ps(x0, bv, c##j##0);                    \
        c##j##1 = _mm256_fmadd_ps(x1, bv, c##j##1);                    \
    }
#define DC_TSTEP                                                       \
    const float *bp = b + p * rs_b;                                    \
    DC_TCOL(0) DC_TCOL(1) DC_TCOL(2) DC_TCOL(3) DC_TCOL(4) DC_TCOL(5)
    /* clang-format on */
    if (mr == 16) {
        for (int64_t p = 0; p < k; p++) {
            x0 = _mm256_loadu_ps(a + p * lda);
            x1 = _mm256_loadu_ps(a + p * lda + 8);
            DC_TSTEP
        }
    } else { /* lanes past mr load 0 (never read A there) */
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr), lane);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr - 8), lane);
        for (int64_t p = 0; p < k; p++) {
            x0 = _mm256_maskload_ps(a + p * lda, m0);
            x1 = _mm256_maskload_ps(a + p * lda + 8, m1);
            DC_TSTEP
        }
    }
#undef DC_TSTEP
#undef DC_TCOL
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    DC_ALIGN64 float t[16] DC_ALIGN64_POST;
/* clang-format off */
#define DC_TPUT(j)                                                                 \
    if (NJ > (j)) {                                                                \
        __m256 y0 = _mm256_mul_ps(va, c##j##0), y1 = _mm256_mul_ps(va, c##j##1);   \
        if (beta != 0.0f) {                                                        \
            for (int r = 0; r < 16; r++) t[r] = r < mr ? c[r * ldc + (j)] : 0.0f;  \
            y0 = _mm256_fmadd_ps(vb, _mm256_load_ps(t), y0);                       \
            y1 = _mm256_fmadd_ps(vb, _mm256_load_ps(t + 8), y1);                   \
        }                                                                          \
        _mm256_store_ps(t, y0);                                                    \
        _mm256_store_ps(t + 8, y1);                                                \
        for (int r = 0; r < mr; r++) c[r * ldc + (j)] = t[r];                      \
    }
    DC_TPUT(0) DC_TPUT(1) DC_TPUT(2) DC_TPUT(3) DC_TPUT(4) DC_TPUT(5)
/* clang-format on */
#undef DC_TPUT
}

void dc_sgemm_narrow_avx2(int trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t rs_b,
                          int64_t cs_b, float beta, float *c, int64_t ldc)
{
    if (!trans_a) { /* needs rs_b == 1 */
        const int64_t r8 = k % 8;
        const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r8),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int64_t i = 0; i < m; i += 4) {
            const int mr = (int)(m - i < 4 ? m - i : 4);
            const float *ai = a + i * lda;
            float *ci = c + i * ldc;
            int64_t j = 0;
            if (mr == 1)
                for (; j + 8 <= n; j += 8)
                    dc_dot_row_8(k, ai, b + j * cs_b, cs_b, ci + j, alpha, beta, tail);
            while (j < n) {
                const int64_t rem = n - j;
                const int nj = rem == 4 ? 2 : (rem >= 3 ? 3 : (int)rem);
                const float *bj = b + j * cs_b;
                if (nj == 3)
                    dc_narrow_dot_tile(3, k, ai, lda, mr, bj, cs_b, ci + j, ldc, alpha, beta,
                                       tail);
                else if (nj == 2)
                    dc_narrow_dot_tile(2, k, ai, lda, mr, bj, cs_b, ci + j, ldc, alpha, beta,
                                       tail);
                else
                    dc_narrow_dot_tile(1, k, ai, lda, mr, bj, cs_b, ci + j, ldc, alpha, beta,
                                       tail);
                j += nj;
            }
        }
        return;
    }
    const int64_t chunks = (n + 5) / 6;
    for (int64_t i = 0; i < m; i += 16) {
        const int mr = (int)(m - i < 16 ? m - i : 16);
        int64_t j = 0;
        for (int64_t q = 0; q < chunks; q++) {
            /* balanced column chunks: n = 10 -> 5 + 5 */
            const int64_t j1 = n * (q + 1) / chunks;
            const int nj = (int)(j1 - j);
            const float *ai = a + i, *bj = b + j * cs_b;
            float *cij = c + i * ldc + j;
            /* clang-format off */
            switch (nj) {
            case 6: dc_narrow_t_tile(6, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            case 5: dc_narrow_t_tile(5, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            case 4: dc_narrow_t_tile(4, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            case 3: dc_narrow_t_tile(3, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            case 2: dc_narrow_t_tile(2, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            default: dc_narrow_t_tile(1, k, ai, lda, mr, bj, rs_b, cs_b, cij, ldc, alpha, beta); break;
            }
            /* clang-format on */
            j = j1;
        }
    }
}

/*
 * gemm_avx512.c -- AVX-512F micro-kernel (6x32) and B packing for dc_sgemm.
 *
 * Compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512) and nothing else is: gemm.c
 * reaches these functions only through its kernel table, on the AVX2 path, when
 * dc_avx512_active() (the CPU has AVX-512 F, CD, DQ, BW and VL and the OS saves its state).
 *
 * The tile is the AVX2 kernel's (gemm_avx2.c) with twice its width: 6 rows x 32 columns
 * = 12 zmm accumulators; per k step 2 loads of B, 6 broadcasts of A and 12 FMAs, each
 * twice the work of a ymm one. The A panels are gemm_avx2.c's (MR = 6, packed by
 * dc_sgemm_pack_a_avx2_6), and every C element gets the AVX2 kernel's arithmetic in its
 * order: one FMA chain from zero over its K block, then alpha * acc, or
 * beta * C + alpha * acc in one FMA. With the same K blocking (the table's kc) a result is
 * the same bits whichever of the two kernels computed it, so training gives the same
 * bits on a CPU with or without AVX-512 (tests/test_gemm.py, tests/test_training_bits.py).
 */
#include <immintrin.h>

#include "gemm_internal.h"
#include "gemm_x86.h"

#if !defined(__AVX512F__) || !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "gemm_avx512.c must be compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512)"
#endif

#define MR 6
#define NR 32

/* ---- micro-kernel ------------------------------------------------------------------------ */

/* The lanes of the columns [j0, j0 + 16) that are below nr. */
DC_INLINE __mmask16 dc_cols16(int nr, int j0)
{
    const int n = nr - j0;
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* The kernel body: rows r of the A micro-panel at step p is a[r*rs_a + p*cs_a], as in
 * gemm_avx2.c's dc_kernel_6x16 (rs_a == 0 there: packed, inlined as (1, MR) here). */
DC_INLINE void dc_kernel_6x32(const int rows, int64_t k, const float *restrict a, int64_t rs_a,
                              int64_t cs_a, const float *restrict b, float *restrict c,
                              int64_t ldc, float alpha, float beta, int mr, int nr)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 b0, b1, av;

    if (beta != 0.0f) {
        for (int r = 0; r < mr; r++) {
            _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * rs_a, *a2 = a + (mr > 2 ? 2 : 0) * rs_a;
    const float *a3 = a + (mr > 3 ? 3 : 0) * rs_a, *a4 = a + (mr > 4 ? 4 : 0) * rs_a;
    const float *a5 = a + (mr > 5 ? 5 : 0) * rs_a;

/* clang-format off */
#define DC_ROW(r, o)                                                  \
    if (rows > r) {                                                   \
        av = _mm512_set1_ps(a##r[(o) * cs_a]);                        \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                   \
        c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                   \
    }
#define DC_STEP(o)                                                    \
    b0 = _mm512_load_ps(b + NR * (o));                                \
    b1 = _mm512_load_ps(b + NR * (o) + 16);                           \
    DC_ROW(0, o) DC_ROW(1, o) DC_ROW(2, o) DC_ROW(3, o) DC_ROW(4, o) DC_ROW(5, o)
    /* clang-format on */

    int64_t p = k;
    for (; p >= 4; p -= 4) {
        if (rs_a == 1) {
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

    /* Full and edge tiles alike: each valid element is alpha * acc, or
     * beta * C + alpha * acc in one FMA; an edge tile masks the columns past nr (masked
     * loads and stores never touch them) and skips the rows past mr. */
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = dc_cols16(nr, 0), m1 = dc_cols16(nr, 16);
/* clang-format off */
#define DC_PUT(r)                                                                          \
    if (rows > r && mr > r) {                                                              \
        float *cr = c + (r) * ldc;                                                         \
        __m512 v0 = _mm512_mul_ps(va, c##r##0), v1 = _mm512_mul_ps(va, c##r##1);           \
        if (beta != 0.0f) {                                                                \
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);                   \
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);              \
        }                                                                                  \
        _mm512_mask_storeu_ps(cr, m0, v0);                                                 \
        _mm512_mask_storeu_ps(cr + 16, m1, v1);                                            \
    }
    DC_PUT(0) DC_PUT(1) DC_PUT(2) DC_PUT(3) DC_PUT(4) DC_PUT(5)
/* clang-format on */
#undef DC_PUT
}

void dc_sgemm_ukernel_avx512_6x32(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                  const float *b, float *c, int64_t ldc, float alpha,
                                  float beta, int mr, int nr)
{
    if (rs_a == 0) /* packed */
        dc_kernel_6x32(6, k, a, 1, MR, b, c, ldc, alpha, beta, mr, nr);
    else
        dc_kernel_6x32(6, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
}

/* Tiles of <= 4 rows with 2 or 4 rows of accumulators; each element's arithmetic is the
 * 6-row kernel's. */
void dc_sgemm_ukernel_avx512_edge4(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                   const float *b, float *c, int64_t ldc, float alpha,
                                   float beta, int mr, int nr)
{
    if (rs_a == 0) {
        rs_a = 1;
        cs_a = MR;
    }
    if (mr <= 2)
        dc_kernel_6x32(2, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
    else
        dc_kernel_6x32(4, k, a, rs_a, cs_a, b, c, ldc, alpha, beta, mr, nr);
}

/* ---- packing B --------------------------------------------------------------------------- */

void dc_sgemm_pack_b_avx512_32(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                               int64_t p0, int64_t kc, int64_t j0, int64_t nlen)
{
    dc_pack_b_x86(NR, pb, ps, b, ldb, trans_b, p0, kc, j0, nlen);
}

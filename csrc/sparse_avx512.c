/*
 * sparse_avx512.c -- AVX-512F row kernel of dc_spmm (sparse row times dense matrix), the
 * AVX2 path's on CPUs with AVX-512F (dc_avx512_active).
 *
 * Compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512) and nothing else is. The
 * contract and the arithmetic are dc_spmm_row_avx2's (sparse_avx2.c) with 16 columns per
 * vector: up to 64 output columns in 4 zmm accumulators, each entry of the sparse row one
 * broadcast and one FMA per 16 columns; every output element is the same FMA chain over
 * the entries in order, then the same epilogue, so the two kernels give the same bits.
 * Likewise the sweep of dc_spmm_t_sel (full-batch descent's weight gradient).
 */
#include <immintrin.h>

#include "sparse_internal.h"

#if !defined(__AVX512F__) || !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "sparse_avx512.c must be compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512)"
#endif

/* alpha * acc + beta * old + bias, then the activation, on the lanes of m (sparse_avx2.c's
 * finish, operation for operation) */
DC_INLINE void finish(float *out, __m512 acc, const float *bias, __mmask16 m, float alpha,
                      float beta, int act, float act_alpha)
{
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(alpha), acc);
    if (beta != 0.0f)
        r = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, out)),
                          r);
    if (bias != NULL)
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, bias));
    if (act == DC_ACT_RELU) {
        /* maxps returns its second operand for NaN, 0: the NaN lanes are put back
         * (dc_relu_neg) */
        const __mmask16 nan = _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
        r = _mm512_mask_mov_ps(_mm512_max_ps(r, _mm512_setzero_ps()), nan, r);
    } else if (act == DC_ACT_LEAKY_RELU) {
        const __mmask16 pos = _mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_GT_OQ);
        r = _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(act_alpha), r), r);
    }
    _mm512_mask_storeu_ps(out, m, r);
}

/* clang-format off */
#define DC_FMA_IF(k, acc)                                                                  \
    if (nv > k)                                                                            \
    acc = _mm512_fmadd_ps(x, _mm512_loadu_ps(dr + 16 * k), acc)
#define DC_FINISH_IF(k, acc)                                                               \
    if (nv > k)                                                                            \
    finish(out + 16 * k, acc, bias ? bias + 16 * k : NULL, 0xFFFF, alpha, beta, act, act_alpha)
/* clang-format on */

/* NV full vectors (16 * NV columns) and (tail) the last w % 16 columns through masked
 * loads, in one pass over the entries. */
DC_INLINE void row_nv(int nv, int tail, float *out, const int32_t *idx, const float *val,
                      const int64_t *ptr, int64_t pstride, int64_t parts, const float *d,
                      int64_t ldd, int64_t w, float alpha, float beta, const float *bias,
                      int act, float act_alpha)
{
    const int64_t jt = 16 * (int64_t)nv;
    const __mmask16 mask = (__mmask16)((1u << (unsigned)(w - jt)) - 1u);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, at = a0;
    for (int64_t p = 0; p < parts; ++p) {
        const int64_t e1 = ptr[p * pstride + 1];
        for (int64_t e = ptr[p * pstride]; e < e1; ++e) {
            const float *dr = d + (int64_t)idx[e] * ldd;
            const __m512 x = _mm512_set1_ps(val[e]);
            DC_FMA_IF(0, a0);
            DC_FMA_IF(1, a1);
            DC_FMA_IF(2, a2);
            DC_FMA_IF(3, a3);
            if (tail)
                at = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(mask, dr + jt), at);
        }
    }
    DC_FINISH_IF(0, a0);
    DC_FINISH_IF(1, a1);
    DC_FINISH_IF(2, a2);
    DC_FINISH_IF(3, a3);
    if (tail)
        finish(out + jt, at, bias ? bias + jt : NULL, mask, alpha, beta, act, act_alpha);
}

#define DC_ROW_CASE(nv)                                                                        \
    case nv:                                                                                   \
        if (w % 16)                                                                            \
            row_nv(nv, 1, out, idx, val, ptr, pstride, parts, d, ldd, w, alpha, beta, bias,    \
                   act, act_alpha);                                                            \
        else                                                                                   \
            row_nv(nv, 0, out, idx, val, ptr, pstride, parts, d, ldd, w, alpha, beta, bias,    \
                   act, act_alpha);                                                            \
        break

void dc_spmm_row_avx512(float *out, const int32_t *idx, const float *val, const int64_t *ptr,
                        int64_t pstride, int64_t parts, const float *d, int64_t ldd, int64_t w,
                        float alpha, float beta, const float *bias, int act, float act_alpha)
{
    switch (w / 16) { /* one pass over the entries for any width up to 64 */
        DC_ROW_CASE(4);
        DC_ROW_CASE(3);
        DC_ROW_CASE(2);
        DC_ROW_CASE(1);
        DC_ROW_CASE(0);
    default:
        break;
    }
}

/* ---- the sweep of dc_spmm_t_sel, 16 columns per vector ---------------------------------- */

/* dc_spmm_sweep_avx2's contract and bits, for lda a multiple of 16: NV full vectors of D's
 * row and (tail) a zero-filled partial one in registers, each entry one FMA per vector
 * into its column's accumulator row, read and written whole (columns [w, lda) of acc are
 * scratch). Every accumulator takes the same FMAs in the same order as with 8 columns. */
/* clang-format off */
#define DC_SWEEP_IF(k, g)                                                                      \
    if (nv > k)                                                                                \
    _mm512_storeu_ps(a + 16 * k, _mm512_fmadd_ps(x, g, _mm512_loadu_ps(a + 16 * k)))
#define DC_LOAD_IF(k, g)                                                                       \
    if (nv > k)                                                                                \
    g = _mm512_loadu_ps(dr + 16 * k)
/* clang-format on */

DC_INLINE void sweep_nv(int nv, float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                        const float *val, const int64_t *ptr, const int64_t *sel, int64_t rows,
                        const float *d, int64_t ldd, int64_t w)
{
    const int64_t jt = 16 * (int64_t)nv;
    const int tail = w > jt;
    const __mmask16 mask = (__mmask16)((1u << (unsigned)(w - jt)) - 1u);
    for (int64_t r = 0; r < rows; ++r) {
        const float *dr = d + r * ldd;
        __m512 g0 = _mm512_setzero_ps(), g1 = g0, g2 = g0, g3 = g0, gt = g0;
        DC_LOAD_IF(0, g0);
        DC_LOAD_IF(1, g1);
        DC_LOAD_IF(2, g2);
        DC_LOAD_IF(3, g3);
        if (tail)
            gt = _mm512_maskz_loadu_ps(mask, dr + jt);
        dc_sweep_prefetch(idx, val, ptr, sel, r, rows);
        const int64_t e1 = ptr[sel[r] + 1];
        for (int64_t e = ptr[sel[r]]; e < e1; ++e) {
            float *a = acc + ((int64_t)idx[e] - k0) * lda;
            const __m512 x = _mm512_set1_ps(val[e]);
            DC_SWEEP_IF(0, g0);
            DC_SWEEP_IF(1, g1);
            DC_SWEEP_IF(2, g2);
            DC_SWEEP_IF(3, g3);
            if (tail)
                _mm512_storeu_ps(a + jt, _mm512_fmadd_ps(x, gt, _mm512_loadu_ps(a + jt)));
        }
    }
}

void dc_spmm_sweep_avx512(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                          const float *val, const int64_t *ptr, const int64_t *sel,
                          int64_t rows, const float *d, int64_t ldd, int64_t w)
{
    /* clang-format off */
    switch (w / 16) {
    case 4: sweep_nv(4, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 3: sweep_nv(3, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 2: sweep_nv(2, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 1: sweep_nv(1, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    default: sweep_nv(0, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    }
    /* clang-format on */
}

/*
 * sparse_avx2.c -- AVX2+FMA row kernel of dc_spmm (sparse row times dense matrix).
 *
 * Compiled with -mavx2 -mfma (MSVC: /arch:AVX2) and nothing else is: sparse.c calls it
 * only when the AVX2 path is selected.
 *
 * Up to 64 output columns are held in 8 ymm accumulators; each entry of the sparse row
 * costs one broadcast and one FMA (with its load of D) per 8 columns, so a row of nnz
 * entries is nnz * w / 16 cycles at two FMAs a cycle, against K * w / 16 dense.
 */
#include <immintrin.h>

#include "sparse_internal.h"

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "sparse_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(_MSC_VER)
#include <intrin.h>
#define DC_INLINE static __forceinline
DC_INLINE int dc_ctz32(uint32_t m)
{
    unsigned long i;
    _BitScanForward(&i, m);
    return (int)i;
}
#define dc_popcount32(m) ((int)__popcnt(m))
#else
#define DC_INLINE static inline __attribute__((always_inline))
#define dc_ctz32(m) __builtin_ctz(m)
#define dc_popcount32(m) __builtin_popcount(m)
#endif

/* alpha * acc + beta * old + bias, then the activation; `mask` selects the columns of a
 * partial vector (all ones for a full one). */
DC_INLINE void finish(float *out, __m256 acc, const float *bias, __m256i mask, int partial,
                      float alpha, float beta, int act, float act_alpha)
{
    __m256 r = _mm256_mul_ps(_mm256_set1_ps(alpha), acc);
    if (beta != 0.0f) {
        const __m256 old = partial ? _mm256_maskload_ps(out, mask) : _mm256_loadu_ps(out);
        r = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(beta), old), r);
    }
    if (bias != NULL)
        r = _mm256_add_ps(r, partial ? _mm256_maskload_ps(bias, mask) : _mm256_loadu_ps(bias));
    if (act == DC_ACT_RELU) {
        /* maxps returns its second operand for NaN: 0, as the dense epilogue's x > 0 ? x : 0 */
        r = _mm256_max_ps(r, _mm256_setzero_ps());
    } else if (act == DC_ACT_LEAKY_RELU) {
        const __m256 pos = _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_GT_OQ);
        r = _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(act_alpha), r), r, pos);
    }
    if (partial)
        _mm256_maskstore_ps(out, mask, r);
    else
        _mm256_storeu_ps(out, r);
}

/* NV full vectors (8 * NV columns). NV is a constant after inlining; the accumulators
 * are named variables (an array of them gets spilled to the stack every iteration). */
#define DC_FMA_IF(k, acc)                                                                  \
    if (nv > k)                                                                            \
    acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(dr + 8 * k), acc)
#define DC_FINISH_IF(k, acc)                                                               \
    if (nv > k)                                                                            \
    finish(out + 8 * k, acc, bias ? bias + 8 * k : NULL, all, 0, alpha, beta, act, act_alpha)

DC_INLINE void row_nv(int nv, float *out, const int32_t *idx, const float *val, int64_t nnz,
                      const float *d, int64_t ldd, float alpha, float beta, const float *bias,
                      int act, float act_alpha)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0;
    for (int64_t e = 0; e < nnz; ++e) {
        const float *dr = d + (int64_t)idx[e] * ldd;
        const __m256 x = _mm256_broadcast_ss(val + e);
        DC_FMA_IF(0, a0);
        DC_FMA_IF(1, a1);
        DC_FMA_IF(2, a2);
        DC_FMA_IF(3, a3);
        DC_FMA_IF(4, a4);
        DC_FMA_IF(5, a5);
        DC_FMA_IF(6, a6);
        DC_FMA_IF(7, a7);
    }
    const __m256i all = _mm256_set1_epi32(-1);
    DC_FINISH_IF(0, a0);
    DC_FINISH_IF(1, a1);
    DC_FINISH_IF(2, a2);
    DC_FINISH_IF(3, a3);
    DC_FINISH_IF(4, a4);
    DC_FINISH_IF(5, a5);
    DC_FINISH_IF(6, a6);
    DC_FINISH_IF(7, a7);
}

void dc_spmm_row_avx2(float *out, const int32_t *idx, const float *val, int64_t nnz,
                      const float *d, int64_t ldd, int64_t w, float alpha, float beta,
                      const float *bias, int act, float act_alpha)
{
    int64_t j = 0;
    /* the common widths get one pass over the entries */
    switch (w / 8) {
    case 8: row_nv(8, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 7: row_nv(7, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 6: row_nv(6, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 5: row_nv(5, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 4: row_nv(4, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 3: row_nv(3, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 2: row_nv(2, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    case 1: row_nv(1, out, idx, val, nnz, d, ldd, alpha, beta, bias, act, act_alpha); break;
    default: break;
    }
    j = (w / 8) * 8;
    if (j < w) {
        /* the last w % 8 columns: masked loads never touch memory past them */
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(w - j)), lane);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t e = 0; e < nnz; ++e) {
            const float *dr = d + (int64_t)idx[e] * ldd + j;
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(val + e), _mm256_maskload_ps(dr, mask),
                                  acc);
        }
        finish(out + j, acc, bias ? bias + j : NULL, mask, 1, alpha, beta, act, act_alpha);
    }
}

void dc_csr_fill_u8_avx2(int32_t *idx, float *val, const uint8_t *src, int64_t F, float scale)
{
    int64_t p = 0, j = 0;
    const __m256i zero = _mm256_setzero_si256();
    for (; j + 32 <= F; j += 32) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(src + j));
        uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero));
        while (m != 0) {
            const int t = dc_ctz32(m);
            idx[p] = (int32_t)(j + t);
            val[p] = (float)src[j + t] * scale;
            ++p;
            m &= m - 1;
        }
    }
    for (; j < F; ++j)
        if (src[j] != 0) {
            idx[p] = (int32_t)j;
            val[p] = (float)src[j] * scale;
            ++p;
        }
}


int64_t dc_csr_count_u8_avx2(const uint8_t *src, int64_t F)
{
    int64_t c = 0, j = 0;
    const __m256i zero = _mm256_setzero_si256();
    for (; j + 32 <= F; j += 32) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(src + j));
        const uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero));
        c += dc_popcount32(m);
    }
    for (; j < F; ++j)
        c += src[j] != 0;
    return c;
}

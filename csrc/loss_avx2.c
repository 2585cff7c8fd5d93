/*
 * loss_avx2.c -- the softmax's exponential (exp_internal.h) 4 lanes at a time, compiled
 * with -mavx2 -mfma (MSVC: /arch:AVX2); loss.c calls it on the AVX2 path only. Every lane
 * does dc_exp_le0's double operations in its order, multiplies and adds kept apart (no
 * FMA: the intrinsics below are separate operations, and GCC does not contract them in its
 * ISO C modes; clang is told not to), so the two give identical bits.
 */
#include "exp_internal.h"

#include <immintrin.h>

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "loss_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

DC_INLINE __m256d exp4(__m256d d)
{
    const __m256d round = _mm256_set1_pd(DC_EXP_ROUND);
    const __m256d t = _mm256_add_pd(_mm256_mul_pd(d, _mm256_set1_pd(DC_EXP_LOG2E)), round);
    const __m256d n = _mm256_sub_pd(t, round);
    const __m256d r =
        _mm256_sub_pd(_mm256_sub_pd(d, _mm256_mul_pd(n, _mm256_set1_pd(DC_EXP_LN2_HI))),
                      _mm256_mul_pd(n, _mm256_set1_pd(DC_EXP_LN2_LO)));
    static const double c[DC_EXP_TERMS] = DC_EXP_TAYLOR;
    __m256d q = _mm256_set1_pd(c[0]);
    for (int k = 1; k < DC_EXP_TERMS; ++k)
        q = _mm256_add_pd(_mm256_mul_pd(q, r), _mm256_set1_pd(c[k]));
    const __m256d e = _mm256_add_pd(_mm256_set1_pd(1.0),
                                    _mm256_add_pd(r, _mm256_mul_pd(_mm256_mul_pd(r, r), q)));
    const __m256i bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
    const __m256d y = _mm256_mul_pd(e, _mm256_castsi256_pd(bits));
    /* d < DC_EXP_MIN (and -inf): 0; NaN lanes are NaN already (not less, so kept) */
    const __m256d under = _mm256_cmp_pd(d, _mm256_set1_pd(DC_EXP_MIN), _CMP_LT_OQ);
    return _mm256_andnot_pd(under, y);
}

void dc_exp_le0_avx2(double *y, const double *d, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(y + i, exp4(_mm256_loadu_pd(d + i)));
    if (i < n) { /* the last 1-3 through a zero-padded vector */
        double tmp[4] = {0.0, 0.0, 0.0, 0.0};
        memcpy(tmp, d + i, (size_t)(n - i) * sizeof(double));
        _mm256_storeu_pd(tmp, exp4(_mm256_loadu_pd(tmp)));
        memcpy(y + i, tmp, (size_t)(n - i) * sizeof(double));
    }
}

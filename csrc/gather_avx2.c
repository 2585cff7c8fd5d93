/*
 * gather_avx2.c -- one row of nn.c's gather (x * scale + shift into float32) 16 elements
 * at a time, compiled with -mavx2 -mfma (MSVC: /arch:AVX2); nn.c calls it on the AVX2
 * path only and finishes the row's last few elements itself.
 *
 * On dense input (Fashion-MNIST, standardized floats) the first layer takes the GEMM
 * path, and converting each batch's uint8 rows was ~8% of an epoch of 784-128-10: the
 * baseline build's loop widens bytes 4 at a time through SSE2 unpacks. Every element gets
 * the portable loop's bits: one multiply, then one add, each rounded (no FMA: the
 * intrinsics below are separate operations, and GCC does not contract them in its ISO C
 * modes; clang is told not to).
 */
#include "gather_internal.h"

#include <immintrin.h>

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "gather_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

int64_t dc_gather_row_u8_avx2(float *dst, const uint8_t *src, int64_t n, float scale,
                              float shift)
{
    const __m256 s = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + j));
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
        _mm256_storeu_ps(dst + j, _mm256_add_ps(_mm256_mul_ps(lo, s), b));
        _mm256_storeu_ps(dst + j + 8, _mm256_add_ps(_mm256_mul_ps(hi, s), b));
    }
    for (; j + 8 <= n; j += 8) {
        const __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(src + j));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        _mm256_storeu_ps(dst + j, _mm256_add_ps(_mm256_mul_ps(f, s), b));
    }
    return j;
}

int64_t dc_gather_row_f32_avx2(float *dst, const float *src, int64_t n, float scale,
                               float shift)
{
    const __m256 s = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(src + j), s), b));
    return j;
}

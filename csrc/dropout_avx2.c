/*
 * dropout_avx2.c -- dropout's forward and backward (random_internal.h) 8 floats at a time,
 * compiled with -mavx2 -mfma (MSVC: /arch:AVX2); nn.c calls them on the AVX2 path only.
 *
 * The scalar forward spent ~18 cycles per element: two dependent 64-bit multiplies of the
 * hash, a float compare, and a branch on a random bit that mispredicted p of the time; on
 * 784-800-10 with dropout it was ~18% of an epoch (and its backward, a byte-masked select
 * the compiler left scalar, ~9%). Here the hash runs 4 lanes wide (AVX2 has no 64-bit
 * multiply: each is three 32 x 32 -> 64 products), the keep test is an integer compare
 * against dropout_threshold(p), and the select is a mask. Every element gets the bits of
 * nn.c's loop (tests/test_ops.py compares the two paths).
 */
#include "random_internal.h"

#include <immintrin.h>

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "dropout_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

/* z * c mod 2^64 per 64-bit lane: lo(z) lo(c) + ((hi(z) lo(c) + lo(z) hi(c)) << 32) */
static inline __m256i mul64(__m256i z, __m256i c_lo, __m256i c_hi)
{
    const __m256i ll = _mm256_mul_epu32(z, c_lo);
    const __m256i hl = _mm256_mul_epu32(_mm256_srli_epi64(z, 32), c_lo);
    const __m256i lh = _mm256_mul_epu32(z, c_hi);
    return _mm256_add_epi64(ll, _mm256_slli_epi64(_mm256_add_epi64(hl, lh), 32));
}

/* mix64 of each lane, shifted right by 40: the 24 bits u24 reads */
static inline __m256i mix64_top24(__m256i z)
{
    const __m256i c1_lo = _mm256_set1_epi64x(0x1CE4E5B9),
                  c1_hi = _mm256_set1_epi64x(0xBF58476D);
    const __m256i c2_lo = _mm256_set1_epi64x(0x133111EB),
                  c2_hi = _mm256_set1_epi64x(0x94D049BB);
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), c1_lo, c1_hi);
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), c2_lo, c2_hi);
    return _mm256_srli_epi64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 31)), 40);
}

/* Drop masks (all ones = dropped) of the 8 elements whose counters are at[0..8): the
 * even elements' hashes are in one vector and the odd ones' in another, so one blend of
 * their 64-bit compare results puts the 8 masks in element order as 32-bit lanes. */
static inline __m256i drop8(__m256i even, __m256i odd, __m256i thr)
{
    const __m256i de = _mm256_cmpgt_epi64(thr, mix64_top24(even));
    const __m256i dd = _mm256_cmpgt_epi64(thr, mix64_top24(odd));
    return _mm256_blend_epi32(de, dd, 0xAA);
}

int64_t dc_dropout_forward_avx2(float *out, uint8_t *mask, const float *inp, int64_t lo,
                                int64_t hi, uint64_t key, uint64_t threshold, float scale)
{
    const __m256i thr = _mm256_set1_epi64x((long long)threshold);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i one8 = _mm256_set1_epi8(1);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    /* counters of elements i + {0, 2, 4, 6} and i + {1, 3, 5, 7}: key + (i + 1 + k) * GOLDEN */
    const uint64_t g = GOLDEN;
    __m256i even = _mm256_setr_epi64x(
        (long long)(key + (uint64_t)(lo + 1) * g), (long long)(key + (uint64_t)(lo + 3) * g),
        (long long)(key + (uint64_t)(lo + 5) * g), (long long)(key + (uint64_t)(lo + 7) * g));
    __m256i odd = _mm256_add_epi64(even, _mm256_set1_epi64x((long long)g));
    const __m256i step = _mm256_set1_epi64x((long long)(8 * g));
    int64_t i = lo;
    for (; i + 32 <= hi; i += 32) {
        __m256i d[4];
        for (int k = 0; k < 4; ++k) {
            d[k] = drop8(even, odd, thr);
            even = _mm256_add_epi64(even, step);
            odd = _mm256_add_epi64(odd, step);
            const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(inp + i + 8 * k), vs);
            _mm256_storeu_ps(out + i + 8 * k, _mm256_andnot_ps(_mm256_castsi256_ps(d[k]), x));
        }
        /* 32 masks of -1 / 0 -> bytes in element order; keep = drop + 1 */
        const __m256i b =
            _mm256_packs_epi16(_mm256_packs_epi32(d[0], d[1]), _mm256_packs_epi32(d[2], d[3]));
        _mm256_storeu_si256((__m256i *)(mask + i),
                            _mm256_add_epi8(_mm256_permutevar8x32_epi32(b, order), one8));
    }
    for (; i + 8 <= hi; i += 8) {
        const __m256i d = drop8(even, odd, thr);
        even = _mm256_add_epi64(even, step);
        odd = _mm256_add_epi64(odd, step);
        const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(inp + i), vs);
        _mm256_storeu_ps(out + i, _mm256_andnot_ps(_mm256_castsi256_ps(d), x));
        const __m128i w =
            _mm_packs_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
        _mm_storel_epi64((__m128i *)(mask + i),
                         _mm_add_epi8(_mm_packs_epi16(w, w), _mm_set1_epi8(1)));
    }
    return i;
}

int64_t dc_dropout_backward_avx2(float *dinp, const float *dout, const uint8_t *mask,
                                 int64_t lo, int64_t hi, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i zero = _mm256_setzero_si256();
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mask + i)));
        const __m256 drop = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, zero));
        const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dout + i), vs);
        _mm256_storeu_ps(dinp + i, _mm256_andnot_ps(drop, g));
    }
    return i;
}

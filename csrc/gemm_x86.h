/*
 * gemm_x86.h -- register helpers shared by the x86 GEMM translation units
 * (gemm_avx2.c, gemm_avx512.c), both compiled with at least -mavx2 -mfma.
 */
#ifndef DC_GEMM_X86_H
#define DC_GEMM_X86_H

#include <immintrin.h>

#include "common.h"

/* In-register 8x8 transpose: r[i] = row i in, r[j] = column j out. */
DC_INLINE void dc_transpose8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* dc_sgemm_pack_b_fn for micro-panels `w` floats wide (w a multiple of 8, a constant after
 * inlining: 16 for the AVX2 tile, 32 for the AVX-512 one): pack op(B)[p0 : p0+kc,
 * j0 : j0+nlen] into ceil(nlen/w) panels, panel q at pb + q*ps, columns past nlen zero.
 * Panels start on 64-byte lines, so the 8-float stores are aligned. */
DC_INLINE void dc_pack_b_x86(const int w, float *pb, int64_t ps, const float *b, int64_t ldb,
                             int trans_b, int64_t p0, int64_t kc, int64_t j0, int64_t nlen)
{
    if (!trans_b && nlen >= w) {
        /* op(B)[p][j] = B[p][j]: walk B row by row (one sequential stream the prefetcher
         * follows) and scatter w floats into each full panel; the edge panel below */
        const int64_t full = nlen / w;
        for (int64_t p = 0; p < kc; p++) {
            const float *src = b + (p0 + p) * ldb + j0;
            float *dst = pb + p * w;
            for (int64_t q = 0; q < full; q++)
                for (int v = 0; v < w; v += 8)
                    _mm256_store_ps(dst + q * ps + v, _mm256_loadu_ps(src + q * w + v));
        }
        if (full * w == nlen)
            return;
        pb += full * ps;
        j0 += full * w;
        nlen -= full * w;
    }
    for (int64_t jp = 0; jp < nlen; jp += w, pb += ps) {
        const int64_t nr = nlen - jp < w ? nlen - jp : w;
        if (nr < w) { /* edge panel: zero-filled columns */
            for (int64_t p = 0; p < kc; p++) {
                float *dst = pb + p * w;
                int64_t j = 0;
                for (; j < nr; j++)
                    dst[j] = trans_b ? b[(j0 + jp + j) * ldb + p0 + p]
                                     : b[(p0 + p) * ldb + j0 + jp + j];
                for (; j < w; j++)
                    dst[j] = 0.0f;
            }
            continue;
        }
        if (!trans_b) { /* op(B)[p][j] = B[p][j]: w contiguous floats per p */
            const float *src = b + p0 * ldb + j0 + jp;
            for (int64_t p = 0; p < kc; p++, src += ldb)
                for (int v = 0; v < w; v += 8)
                    _mm256_store_ps(pb + p * w + v, _mm256_loadu_ps(src + v));
        } else { /* op(B)[p][j] = B[j][p]: w rows x 8 columns at a time, as w/8 8x8 blocks */
            const float *src = b + (j0 + jp) * ldb + p0;
            int64_t p = 0;
            for (; p + 8 <= kc; p += 8) {
                for (int g = 0; g < w / 8; g++) {
                    __m256 r[8];
                    for (int q = 0; q < 8; q++)
                        r[q] = _mm256_loadu_ps(src + (8 * g + q) * ldb + p);
                    dc_transpose8(r);
                    for (int q = 0; q < 8; q++)
                        _mm256_store_ps(pb + (p + q) * w + 8 * g, r[q]);
                }
            }
            for (; p < kc; p++)
                for (int q = 0; q < w; q++)
                    pb[p * w + q] = src[q * ldb + p];
        }
    }
}

#endif /* DC_GEMM_X86_H */

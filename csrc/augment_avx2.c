/*
 * augment_avx2.c -- the bilinear pass of dc_augment_u8/_f32 (augment.c's warp) for 8
 * output pixels at a time: source coordinates, elastic window and taps by gathers.
 *
 * Compiled with -mavx2 -mfma (MSVC: /arch:AVX2) and nothing else is: augment.c calls it
 * only when the AVX2 path is selected. It must give augment.c's warp bit for bit, so every
 * lane does that function's float32 operations in its order, multiplies and adds kept
 * apart (no FMA: the intrinsics below are separate operations, and GCC does not contract
 * them in its ISO C modes; clang is told not to). A row's last partial vector computes
 * all 8 lanes (clamped coordinates always address the pad) and stores the valid ones.
 */
#include <immintrin.h>

#include "augment_internal.h"

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "augment_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* x >= 0 ? (x <= hi ? x : hi) : 0, with NaN -> 0 (the ordered compares are false) */
DC_INLINE __m256 clamp_coord(__m256 x, __m256 hi)
{
    const __m256 le = _mm256_cmp_ps(x, hi, _CMP_LE_OQ);
    const __m256 ge0 = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    return _mm256_and_ps(_mm256_blendv_ps(hi, x, le), ge0);
}

/* The two horizontal taps of 8 lanes, left = row[off], right = row[off + 1]: each lane's
 * pair is one 8-byte gather element (two gathers of 4 elements load what four gathers of
 * 8 floats did, for half the gather work), then split into left and right floats. */
DC_INLINE void taps(__m256 *left, __m256 *right, const float *row, __m256i off)
{
    const double *base = (const double *)(const void *)row;
    const __m256 lo =
        _mm256_castpd_ps(_mm256_i32gather_pd(base, _mm256_castsi256_si128(off), 4));
    const __m256 hi =
        _mm256_castpd_ps(_mm256_i32gather_pd(base, _mm256_extracti128_si256(off, 1), 4));
    /* per 128-bit half: lanes (0, 1, 4, 5 | 2, 3, 6, 7); the 64-bit permute restores
     * lane order */
    *left = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))),
        _MM_SHUFFLE(3, 1, 2, 0)));
    *right = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))),
        _MM_SHUFFLE(3, 1, 2, 0)));
}

void dc_aug_store_u8_avx2(uint8_t *dst, const float *res, int64_t n)
{
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    const __m256 half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 r = _mm256_loadu_ps(res + i);
        /* r > 0 ? (r < 255 ? r : 255) : 0, NaN -> 0; then + 0.5 truncated */
        const __m256 lt = _mm256_cmp_ps(r, top, _CMP_LT_OQ);
        const __m256 gt0 = _mm256_cmp_ps(r, zero, _CMP_GT_OQ);
        const __m256 v = _mm256_and_ps(_mm256_blendv_ps(top, r, lt), gt0);
        const __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(v, half));
        const __m128i w16 =
            _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(void *)(dst + i), _mm_packus_epi16(w16, w16));
    }
    for (; i < n; ++i) {
        const float v = res[i] > 0.0f ? (res[i] < 255.0f ? res[i] : 255.0f) : 0.0f;
        dst[i] = (uint8_t)(v + 0.5f);
    }
}

void dc_aug_warp_avx2(float *out, const aug_src *s, const aug_draw *d)
{
    const int64_t H = s->H, W = s->W, P = W + 3;
    const int64_t mask = s->bank_size - 1, S = s->bank_size;
    const int stroke = d->gain != 1.0f || d->bias != 0.0f;
    const __m256 xmax = _mm256_set1_ps((float)(W + 1)), ymax = _mm256_set1_ps((float)(H + 1));
    const __m256 m00 = _mm256_set1_ps(d->m00), m10 = _mm256_set1_ps(d->m10);
    const __m256 ax = _mm256_set1_ps(d->ax), ay = _mm256_set1_ps(d->ay);
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 gain = _mm256_set1_ps(d->gain), brange = _mm256_set1_ps(d->bias * s->range);
    const __m256 range = _mm256_set1_ps(s->range);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i x_lo = _mm256_set1_epi32(s->x_lo), x_hi = _mm256_set1_epi32(s->x_hi);
    const __m256i y_lo = _mm256_set1_epi32(s->y_lo), y_hi = _mm256_set1_epi32(s->y_hi);
    const __m256i vP = _mm256_set1_epi32((int32_t)P), vmask = _mm256_set1_epi32((int32_t)mask);
    const __m256i vox = _mm256_set1_epi32((int32_t)(d->ox & mask));
    const float *pad = s->pad;
    for (int64_t y = 0; y < H; ++y) {
        const float fy = (float)y;
        const __m256 rx = _mm256_set1_ps(d->m01 * fy + d->bx);
        const __m256 ry = _mm256_set1_ps(d->m11 * fy + d->by);
        const float *ex = d->fx ? d->fx + ((y + d->oy) & mask) * S : NULL;
        const float *ey = d->fy ? d->fy + ((y + d->oy) & mask) * S : NULL;
        for (int64_t x = 0; x < W; x += 8) {
            const __m256i xi = _mm256_add_epi32(_mm256_set1_epi32((int32_t)x), lane);
            const __m256 fx = _mm256_cvtepi32_ps(xi);
            __m256 sx = _mm256_add_ps(_mm256_mul_ps(m00, fx), rx);
            __m256 sy = _mm256_add_ps(_mm256_mul_ps(m10, fx), ry);
            if (ex != NULL) {
                /* the window's 8 entries, contiguous unless they wrap around the bank */
                const int64_t k0 = (x + d->ox) & mask;
                __m256 gx, gy;
                if (k0 + 8 <= S) {
                    gx = _mm256_loadu_ps(ex + k0);
                    gy = _mm256_loadu_ps(ey + k0);
                } else {
                    const __m256i k = _mm256_and_si256(_mm256_add_epi32(xi, vox), vmask);
                    gx = _mm256_i32gather_ps(ex, k, 4);
                    gy = _mm256_i32gather_ps(ey, k, 4);
                }
                sx = _mm256_add_ps(sx, _mm256_mul_ps(ax, gx));
                sy = _mm256_add_ps(sy, _mm256_mul_ps(ay, gy));
            }
            sx = clamp_coord(_mm256_add_ps(sx, one), xmax);
            sy = clamp_coord(_mm256_add_ps(sy, one), ymax);
            const __m256i ix = _mm256_cvttps_epi32(sx), iy = _mm256_cvttps_epi32(sy);
            /* lanes whose four taps miss the non-zero box are 0 (see aug_src) */
            const __m256i miss = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpgt_epi32(x_lo, ix), _mm256_cmpgt_epi32(ix, x_hi)),
                _mm256_or_si256(_mm256_cmpgt_epi32(y_lo, iy), _mm256_cmpgt_epi32(iy, y_hi)));
            __m256 v = zero;
            if (_mm256_movemask_epi8(miss) != -1) {
                const __m256 wx = _mm256_sub_ps(sx, _mm256_cvtepi32_ps(ix));
                const __m256 wy = _mm256_sub_ps(sy, _mm256_cvtepi32_ps(iy));
                const __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(iy, vP), ix);
                __m256 p00, p01, p10, p11;
                taps(&p00, &p01, pad, off);
                taps(&p10, &p11, pad + P, off);
                const __m256 top =
                    _mm256_add_ps(p00, _mm256_mul_ps(wx, _mm256_sub_ps(p01, p00)));
                const __m256 bot =
                    _mm256_add_ps(p10, _mm256_mul_ps(wx, _mm256_sub_ps(p11, p10)));
                v = _mm256_add_ps(top, _mm256_mul_ps(wy, _mm256_sub_ps(bot, top)));
                if (stroke) {
                    v = _mm256_add_ps(_mm256_mul_ps(v, gain), brange);
                    /* v > 0 ? (v < range ? v : range) : 0, NaN -> 0 */
                    const __m256 lt = _mm256_cmp_ps(v, range, _CMP_LT_OQ);
                    const __m256 gt0 = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
                    v = _mm256_and_ps(_mm256_blendv_ps(range, v, lt), gt0);
                }
                v = _mm256_andnot_ps(_mm256_castsi256_ps(miss), v);
            }
            if (x + 8 <= W) {
                _mm256_storeu_ps(out + y * W + x, v);
            } else {
                const __m256i keep =
                    _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(W - x)), lane);
                _mm256_maskstore_ps(out + y * W + x, keep, v);
            }
        }
    }
}

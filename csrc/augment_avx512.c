/*
 * augment_avx512.c -- the pixel loop of dc_aug_u8_avx2 (augment_avx2.c) on 16 output pixels
 * at a time, for CPUs with AVX-512 (dc_avx512_active). The image is loaded, its box found
 * and its quad table built by augment_avx2.c as before; this file only replaces the loop
 * over the output pixels, which is most of an image's time, with one doing half as many
 * vector operations.
 *
 * Compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512) and nothing else is. Every
 * lane does u8_coords' and u8_pixels' float32 operations in their order, multiplies and
 * adds kept apart (no FMA, as in augment_avx2.c), so the result is that function's, and
 * augment.c's portable warp's, bit for bit. Only the masks differ in form: compares give
 * mask registers, and the lanes outside the box are zeroed by masked operations instead
 * of ANDs.
 */
#include <immintrin.h>

#include "augment_internal.h"

/* Rows the pixel loop takes at a time when a row is two vectors (see
 * dc_aug_u8_rows_avx512): 3 timed the same, 4 slower (its 16 coordinate vectors and 8 tap
 * vectors no longer fit the 32 registers). */
#define ROWS_AT_ONCE 2

#if !defined(__AVX512F__) || !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "augment_avx512.c must be compiled with -mavx512f -mavx2 -mfma (MSVC: /arch:AVX512)"
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* the loop's per-image constants */
typedef struct {
    __m512 ax, ay, one, gain, brange, range, half, cut;
    __m512 bx_lo, bx_hi, by_lo, by_hi;
    __m512i lane, vP, vmask, vox, byte;
    int64_t mask, S, ox;
    int stroke, cutting;
    const uint32_t *quad;
} u8_consts16;

/* A row's terms of the inverse map: m01 * y + bx and m11 * y + by, and its rows of the
 * bank's two fields (NULL: no elastic part) */
typedef struct {
    __m512 rx, ry;
    const float *ex, *ey;
} row16;

DC_INLINE row16 row_terms16(const u8_consts16 *c, const aug_draw *d, int64_t y)
{
    const float fy = (float)y;
    const int64_t k = ((y + d->oy) & c->mask) * c->S;
    return (row16){
        .rx = _mm512_set1_ps(d->m01 * fy + d->bx),
        .ry = _mm512_set1_ps(d->m11 * fy + d->by),
        .ex = d->fx ? d->fx + k : NULL,
        .ey = d->fy ? d->fy + k : NULL,
    };
}

/* u8_coords for 16 lanes: the padded source coordinates from column x of a row, and the
 * lanes whose taps are used (inside the box, ordered compares: NaN is not) */
DC_INLINE __mmask16 coords16(__m512 *sxo, __m512 *syo, const u8_consts16 *c, const float *xt,
                             const row16 *rt, int64_t x)
{
    const float *ex = rt->ex, *ey = rt->ey;
    __m512 sx = _mm512_add_ps(_mm512_loadu_ps(xt), rt->rx);
    __m512 sy = _mm512_add_ps(_mm512_loadu_ps(xt + 16), rt->ry);
    if (ex != NULL) {
        const int64_t k0 = (x + c->ox) & c->mask;
        __m512 gx, gy;
        if (k0 + 16 <= c->S) {
            gx = _mm512_loadu_ps(ex + k0);
            gy = _mm512_loadu_ps(ey + k0);
        } else {
            const __m512i xi = _mm512_add_epi32(_mm512_set1_epi32((int32_t)x), c->lane);
            const __m512i k = _mm512_and_si512(_mm512_add_epi32(xi, c->vox), c->vmask);
            gx = _mm512_i32gather_ps(k, ex, 4);
            gy = _mm512_i32gather_ps(k, ey, 4);
        }
        sx = _mm512_add_ps(sx, _mm512_mul_ps(c->ax, gx));
        sy = _mm512_add_ps(sy, _mm512_mul_ps(c->ay, gy));
    }
    sx = _mm512_add_ps(sx, c->one);
    sy = _mm512_add_ps(sy, c->one);
    *sxo = sx;
    *syo = sy;
    return (__mmask16)(_mm512_cmp_ps_mask(sx, c->bx_lo, _CMP_GE_OQ) &
                       _mm512_cmp_ps_mask(sx, c->bx_hi, _CMP_LT_OQ) &
                       _mm512_cmp_ps_mask(sy, c->by_lo, _CMP_GE_OQ) &
                       _mm512_cmp_ps_mask(sy, c->by_hi, _CMP_LT_OQ));
}

/* u8_pixels for 16 lanes, in two stages so that several vectors' gathers can be issued
 * before any of their arithmetic: the taps' quad words (0 on the lanes outside hit) ... */
DC_INLINE __m512i taps16(const u8_consts16 *c, __m512 sx, __m512 sy, __mmask16 hit)
{
    const __m512i ix = _mm512_cvttps_epi32(sx), iy = _mm512_cvttps_epi32(sy);
    const __m512i off = _mm512_add_epi32(_mm512_mullo_epi32(iy, c->vP), ix);
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), hit, off, c->quad, 4);
}

/* ... then the pixels' values, rounded, as 16 int32 in [0, 255] (0 on the lanes outside
 * hit) */
DC_INLINE __m512i value16(const u8_consts16 *c, __m512 sx, __m512 sy, __mmask16 hit, __m512i q)
{
    const __m512 wx = _mm512_sub_ps(sx, _mm512_cvtepi32_ps(_mm512_cvttps_epi32(sx)));
    const __m512 wy = _mm512_sub_ps(sy, _mm512_cvtepi32_ps(_mm512_cvttps_epi32(sy)));
    const __m512 p00 = _mm512_cvtepi32_ps(_mm512_and_si512(q, c->byte));
    const __m512 p01 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(q, 8), c->byte));
    const __m512 p10 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(q, 16), c->byte));
    const __m512 p11 = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 24));
    const __m512 top = _mm512_add_ps(p00, _mm512_mul_ps(wx, _mm512_sub_ps(p01, p00)));
    const __m512 bot = _mm512_add_ps(p10, _mm512_mul_ps(wx, _mm512_sub_ps(p11, p10)));
    __m512 v = _mm512_add_ps(top, _mm512_mul_ps(wy, _mm512_sub_ps(bot, top)));
    if (c->stroke) {
        v = _mm512_add_ps(_mm512_mul_ps(v, c->gain), c->brange);
        /* v > 0 ? (v < range ? v : range) : 0, NaN -> 0 */
        const __mmask16 lt = _mm512_cmp_ps_mask(v, c->range, _CMP_LT_OQ);
        const __mmask16 gt0 = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
        v = _mm512_maskz_mov_ps(gt0, _mm512_mask_blend_ps(lt, c->range, v));
    }
    if (c->cutting) /* v < cut -> 0 */
        hit = (__mmask16)(hit & ~_mm512_cmp_ps_mask(v, c->cut, _CMP_LT_OQ));
    /* rounded as u8_pixels rounds (see there: the values stay in [0, 255]) */
    return _mm512_cvttps_epi32(_mm512_maskz_add_ps(hit, v, c->half));
}

/* u8_pixels for 16 lanes (both stages) */
DC_INLINE __m512i pixels16(const u8_consts16 *c, __m512 sx, __m512 sy, __mmask16 hit)
{
    return value16(c, sx, sy, hit, taps16(c, sx, sy, hit));
}

void dc_aug_u8_rows_avx512(uint8_t *out, const aug_src *s, const aug_draw *d,
                           const uint32_t *quad, float *xterm)
{
    const int64_t H = s->H, W = s->W, P = W + 3;
    const int64_t mask = s->bank_size - 1, S = s->bank_size;
    const u8_consts16 c = {
        .ax = _mm512_set1_ps(d->ax),
        .ay = _mm512_set1_ps(d->ay),
        .one = _mm512_set1_ps(1.0f),
        .gain = _mm512_set1_ps(d->gain),
        .brange = _mm512_set1_ps(d->bias * s->range),
        .range = _mm512_set1_ps(s->range),
        .half = _mm512_set1_ps(0.5f),
        .cut = _mm512_set1_ps(d->cut),
        .bx_lo = _mm512_set1_ps((float)s->x_lo),
        .bx_hi = _mm512_set1_ps((float)s->x_hi + 1.0f),
        .by_lo = _mm512_set1_ps((float)s->y_lo),
        .by_hi = _mm512_set1_ps((float)s->y_hi + 1.0f),
        .lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        .vP = _mm512_set1_epi32((int32_t)P),
        .vmask = _mm512_set1_epi32((int32_t)mask),
        .vox = _mm512_set1_epi32((int32_t)(d->ox & mask)),
        .byte = _mm512_set1_epi32(0xFF),
        .mask = mask,
        .S = S,
        .ox = d->ox,
        .stroke = d->gain != 1.0f || d->bias != 0.0f,
        .cutting = d->cut > 0.0f,
        .quad = quad,
    };
    /* m00 * x and m10 * x of every vector of a row (32 floats a vector) */
    const __m512 m00 = _mm512_set1_ps(d->m00), m10 = _mm512_set1_ps(d->m10);
    const int64_t nv = (W + 15) / 16;
    for (int64_t k = 0; k < nv; ++k) {
        const __m512 fx =
            _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32((int32_t)(16 * k)), c.lane));
        _mm512_storeu_ps(xterm + 32 * k, _mm512_mul_ps(m00, fx));
        _mm512_storeu_ps(xterm + 32 * k + 16, _mm512_mul_ps(m10, fx));
    }
    /* a row's last vector writes its W % 16 valid lanes only (a full mask otherwise) */
    const __mmask16 last = (__mmask16)(W % 16 ? (1u << (W % 16)) - 1u : 0xFFFFu);
    int64_t y = 0;
    if (nv == 2) {
        /* (17 to 32 columns: MNIST's 28) ROWS_AT_ONCE rows at a time, all their vectors'
         * gathers issued before any of their arithmetic: one vector at a time, the loop
         * waited on each gather's latency (1.13-1.15 -> 0.93-0.98 us an image on one
         * core, see the perf-log). A vector with no hit lane gathers nothing and gives
         * zeros. */
        for (; y + ROWS_AT_ONCE <= H; y += ROWS_AT_ONCE) {
            __m512 sx[2 * ROWS_AT_ONCE], sy[2 * ROWS_AT_ONCE];
            __mmask16 h[2 * ROWS_AT_ONCE];
            for (int r = 0; r < ROWS_AT_ONCE; ++r) {
                const row16 rt = row_terms16(&c, d, y + r);
                h[2 * r] = coords16(&sx[2 * r], &sy[2 * r], &c, xterm, &rt, 0);
                h[2 * r + 1] =
                    coords16(&sx[2 * r + 1], &sy[2 * r + 1], &c, xterm + 32, &rt, 16);
            }
            __m512i q[2 * ROWS_AT_ONCE];
            unsigned any = 0;
            for (int v = 0; v < 2 * ROWS_AT_ONCE; ++v)
                any |= h[v];
            if (any != 0) {
                __m512i t[2 * ROWS_AT_ONCE];
                for (int v = 0; v < 2 * ROWS_AT_ONCE; ++v)
                    t[v] = taps16(&c, sx[v], sy[v], h[v]);
                for (int v = 0; v < 2 * ROWS_AT_ONCE; ++v)
                    q[v] = value16(&c, sx[v], sy[v], h[v], t[v]);
            } else {
                for (int v = 0; v < 2 * ROWS_AT_ONCE; ++v)
                    q[v] = _mm512_setzero_si512();
            }
            for (int v = 0; v < 2 * ROWS_AT_ONCE; ++v)
                _mm512_mask_cvtepi32_storeu_epi8(out + (y + v / 2) * W + 16 * (v % 2),
                                                 v % 2 ? last : 0xFFFF, q[v]);
        }
    }
    for (; y < H; ++y) {
        const row16 rt = row_terms16(&c, d, y);
        uint8_t *orow = out + y * W;
        for (int64_t k = 0; k < nv; ++k) {
            const int64_t x = 16 * k;
            __m512 sx, sy;
            const __mmask16 hit = coords16(&sx, &sy, &c, xterm + 32 * k, &rt, x);
            const __m512i q8 = hit ? pixels16(&c, sx, sy, hit) : _mm512_setzero_si512();
            _mm512_mask_cvtepi32_storeu_epi8(orow + x, k + 1 < nv ? 0xFFFF : last, q8);
        }
    }
}

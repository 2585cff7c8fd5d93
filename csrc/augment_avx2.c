/*
 * augment_avx2.c -- the bilinear pass of dc_augment_u8/_f32 (augment.c's warp) for 8
 * output pixels at a time: source coordinates, elastic window and taps by gathers. Float
 * images go through dc_aug_warp_avx2 (augment.c's load_source, then two 8-byte tap pairs
 * gathered per row of taps); uint8 images through dc_aug_u8_avx2, the whole image in one
 * function (loaded as bytes, a lane's four taps one gathered word, rounded and stored
 * in place), which takes about a quarter fewer instructions per image; it also tests the
 * digit's box on the unclamped float coordinates and gathers only the lanes inside it
 * (u8_coords says why that gives the same bits), and takes each row's x terms from a table,
 * about a fifth less time again.
 *
 * Compiled with -mavx2 -mfma (MSVC: /arch:AVX2) and nothing else is: augment.c calls it
 * only when the AVX2 path is selected. It must give augment.c's warp bit for bit, so every
 * lane does that function's float32 operations in its order, multiplies and adds kept
 * apart (no FMA: the intrinsics below are separate operations, and GCC does not contract
 * them in its ISO C modes; clang is told not to). A row's last partial vector computes
 * all 8 lanes (in dc_aug_warp_avx2 clamped coordinates always address the pad) and stores
 * the valid ones (dc_aug_u8_avx2 stores all 8 when they stay inside the image).
 */
#include <immintrin.h>
#include <string.h>

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
    const int cutting = d->cut > 0.0f;
    const __m256 cut = _mm256_set1_ps(d->cut);
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
                if (cutting) /* v < cut -> 0 (NaN stays) */
                    v = _mm256_andnot_ps(_mm256_cmp_ps(v, cut, _CMP_LT_OQ), v);
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

/* pad8's interior = img, colany = the columns' OR; s's box as load_source finds it. */
static void load_u8(aug_src *s, uint8_t *pad8, uint8_t *colany, const uint8_t *img)
{
    const int64_t H = s->H, W = s->W, P = W + 3;
    int64_t y_first = -1, y_last = -1;
    if (W < 16)
        memset(colany, 0, (size_t)W);
    for (int64_t y = 0; y < H; ++y) {
        const uint8_t *src = img + y * W;
        uint8_t *dst = pad8 + (y + 1) * P + 1;
        uint8_t any = 0;
        if (W >= 16) {
            /* 16 bytes at a time, the last 16 overlapping (copying a byte twice changes
             * nothing); the columns' OR is taken below */
            __m128i acc = _mm_setzero_si128();
            for (int64_t x = 0;; x += 16) {
                if (x + 16 > W)
                    x = W - 16;
                const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + x));
                _mm_storeu_si128((__m128i *)(void *)(dst + x), v);
                acc = _mm_or_si128(acc, v);
                if (x + 16 == W)
                    break;
            }
            any = !_mm_testz_si128(acc, acc);
        } else {
            for (int64_t x = 0; x < W; ++x) {
                dst[x] = src[x];
                colany[x] |= src[x];
                any |= src[x];
            }
        }
        if (any) {
            if (y_first < 0)
                y_first = y;
            y_last = y;
        }
    }
    if (W >= 16) {
        /* each 16-column piece's OR over the rows, in a register, stored once (OR-ing into
         * colany row by row re-read bytes the overlapping last piece had just stored: a
         * store-forwarding stall, ~15% of a 28 x 28 image's time) */
        for (int64_t x = 0;; x += 16) {
            if (x + 16 > W)
                x = W - 16;
            __m128i acc = _mm_setzero_si128();
            for (int64_t y = 0; y < H; ++y)
                acc = _mm_or_si128(
                    acc, _mm_loadu_si128(
                             (const __m128i *)(const void *)(pad8 + (y + 1) * P + 1 + x)));
            _mm_storeu_si128((__m128i *)(void *)(colany + x), acc);
            if (x + 16 == W)
                break;
        }
    }
    if (y_first < 0) {
        s->x_lo = s->y_lo = INT32_MAX;
        s->x_hi = s->y_hi = -1;
        return;
    }
    int64_t x_first = 0, x_last = W - 1;
    while (!colany[x_first])
        ++x_first;
    while (!colany[x_last])
        --x_last;
    s->x_lo = (int32_t)x_first;
    s->x_hi = (int32_t)(x_last + 1);
    s->y_lo = (int32_t)y_first;
    s->y_hi = (int32_t)(y_last + 1);
}

/* quad[i] for i in [i0, i1) (rounded up to 16): the bytes pad8[i], pad8[i + 1],
 * pad8[i + P], pad8[i + P + 1], low to high */
static void build_quads(uint32_t *quad, const uint8_t *pad8, int64_t P, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(pad8 + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(pad8 + i + 1));
        const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(pad8 + i + P));
        const __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(pad8 + i + P + 1));
        const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
        const __m128i ce0 = _mm_unpacklo_epi8(c, e), ce1 = _mm_unpackhi_epi8(c, e);
        __m128i *q = (__m128i *)(void *)(quad + i);
        _mm_storeu_si128(q, _mm_unpacklo_epi16(ab0, ce0));
        _mm_storeu_si128(q + 1, _mm_unpackhi_epi16(ab0, ce0));
        _mm_storeu_si128(q + 2, _mm_unpacklo_epi16(ab1, ce1));
        _mm_storeu_si128(q + 3, _mm_unpackhi_epi16(ab1, ce1));
    }
}

/* dc_aug_u8_avx2's per-image constants */
typedef struct {
    __m256 ax, ay, one, gain, brange, range, zero, half, cut;
    __m256 bx_lo, bx_hi, by_lo, by_hi;
    __m256i lane, vP, vmask, vox, byte;
    int64_t mask, S, ox;
    int stroke, cutting;
    const float *quad;
} u8_consts;

/* The padded source coordinates of the 8 pixels from column x of a row (xt: m00 * x and
 * m10 * x, then r: the row's terms), and which of them use their taps. A lane uses its
 * taps when its coordinates lie in [x_lo, x_hi + 1) x [y_lo, y_hi + 1) (ordered compares:
 * NaN does not): there clamp_coord changes nothing, and truncation gives
 * dc_aug_warp_avx2's ix in [x_lo, x_hi], iy in [y_lo, y_hi]. Every other lane is 0 in
 * both: there the clamped taps miss the box, or (a coordinate below 0, or NaN, clamped to 0
 * with x_lo or y_lo 0) put all their weight on zero padding. So no clamp is needed, and the
 * other lanes' taps are not gathered at all. */
DC_INLINE __m256 u8_coords(__m256 *sxo, __m256 *syo, const u8_consts *c, const float *xt,
                           __m256 rx, __m256 ry, const float *ex, const float *ey, int64_t x)
{
    __m256 sx = _mm256_add_ps(_mm256_loadu_ps(xt), rx);
    __m256 sy = _mm256_add_ps(_mm256_loadu_ps(xt + 8), ry);
    if (ex != NULL) {
        const int64_t k0 = (x + c->ox) & c->mask;
        __m256 gx, gy;
        if (k0 + 8 <= c->S) {
            gx = _mm256_loadu_ps(ex + k0);
            gy = _mm256_loadu_ps(ey + k0);
        } else {
            const __m256i xi = _mm256_add_epi32(_mm256_set1_epi32((int32_t)x), c->lane);
            const __m256i k = _mm256_and_si256(_mm256_add_epi32(xi, c->vox), c->vmask);
            gx = _mm256_i32gather_ps(ex, k, 4);
            gy = _mm256_i32gather_ps(ey, k, 4);
        }
        sx = _mm256_add_ps(sx, _mm256_mul_ps(c->ax, gx));
        sy = _mm256_add_ps(sy, _mm256_mul_ps(c->ay, gy));
    }
    sx = _mm256_add_ps(sx, c->one);
    sy = _mm256_add_ps(sy, c->one);
    *sxo = sx;
    *syo = sy;
    return _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(sx, c->bx_lo, _CMP_GE_OQ),
                                       _mm256_cmp_ps(sx, c->bx_hi, _CMP_LT_OQ)),
                         _mm256_and_ps(_mm256_cmp_ps(sy, c->by_lo, _CMP_GE_OQ),
                                       _mm256_cmp_ps(sy, c->by_hi, _CMP_LT_OQ)));
}

/* The 8 pixels' bytes (in the low 8 bytes) from their coordinates and hit lanes. */
DC_INLINE __m128i u8_pixels(const u8_consts *c, __m256 sx, __m256 sy, __m256 hit)
{
    if (_mm256_movemask_ps(hit) == 0)
        return _mm_setzero_si128();
    /* (the other lanes' values are discarded: their coordinates may be far out, even NaN,
     * and are only ever masked) */
    const __m256i ix = _mm256_cvttps_epi32(sx), iy = _mm256_cvttps_epi32(sy);
    const __m256 wx = _mm256_sub_ps(sx, _mm256_cvtepi32_ps(ix));
    const __m256 wy = _mm256_sub_ps(sy, _mm256_cvtepi32_ps(iy));
    const __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(iy, c->vP), ix);
    const __m256i q =
        _mm256_castps_si256(_mm256_mask_i32gather_ps(c->zero, c->quad, off, hit, 4));
    const __m256 p00 = _mm256_cvtepi32_ps(_mm256_and_si256(q, c->byte));
    const __m256 p01 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q, 8), c->byte));
    const __m256 p10 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q, 16), c->byte));
    const __m256 p11 = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 24));
    const __m256 top = _mm256_add_ps(p00, _mm256_mul_ps(wx, _mm256_sub_ps(p01, p00)));
    const __m256 bot = _mm256_add_ps(p10, _mm256_mul_ps(wx, _mm256_sub_ps(p11, p10)));
    __m256 v = _mm256_add_ps(top, _mm256_mul_ps(wy, _mm256_sub_ps(bot, top)));
    if (c->stroke) {
        v = _mm256_add_ps(_mm256_mul_ps(v, c->gain), c->brange);
        const __m256 lt = _mm256_cmp_ps(v, c->range, _CMP_LT_OQ);
        const __m256 gt0 = _mm256_cmp_ps(v, c->zero, _CMP_GT_OQ);
        v = _mm256_and_ps(_mm256_blendv_ps(c->range, v, lt), gt0);
    }
    if (c->cutting)
        v = _mm256_andnot_ps(_mm256_cmp_ps(v, c->cut, _CMP_LT_OQ), v);
    /* rounded as augment.c's store_u8 rounds, without its clamp: with taps in [0, 255] and
     * weights in [0, 1), a + w (b - a) stays in [0, 255] in float32 too (every rounding is
     * monotone and 255 is a float), and the stroke curve clamps to it */
    v = _mm256_and_ps(hit, v);
    const __m256i q8 = _mm256_cvttps_epi32(_mm256_add_ps(v, c->half));
    const __m128i w16 =
        _mm_packus_epi32(_mm256_castsi256_si128(q8), _mm256_extracti128_si256(q8, 1));
    return _mm_packus_epi16(w16, w16);
}

void dc_aug_u8_avx2(uint8_t *out, const uint8_t *img, const aug_draw *d, int64_t H, int64_t W,
                    int64_t bank_size, uint8_t *pad8, uint32_t *quad, uint8_t *colany,
                    float *xterm, int wide)
{
    const int64_t P = W + 3;
    aug_src s = {.H = H, .W = W, .range = 255.0f, .bank_size = bank_size};
    load_u8(&s, pad8, colany, img);
    if (s.x_lo > s.x_hi) { /* blank: every pixel is 0 */
        memset(out, 0, (size_t)(H * W));
        return;
    }
    /* the lanes whose taps are used have iy in [y_lo, y_hi]; the others are not read */
    build_quads(quad, pad8, P, (int64_t)s.y_lo * P, ((int64_t)s.y_hi + 1) * P);
#if DC_GEMM_BUILD_AVX512
    if (wide) {
        dc_aug_u8_rows_avx512(out, &s, d, quad, xterm);
        return;
    }
#else
    (void)wide;
#endif
    const int64_t mask = bank_size - 1, S = bank_size;
    u8_consts c = {
        .ax = _mm256_set1_ps(d->ax),
        .ay = _mm256_set1_ps(d->ay),
        .one = _mm256_set1_ps(1.0f),
        .gain = _mm256_set1_ps(d->gain),
        .brange = _mm256_set1_ps(d->bias * s.range),
        .range = _mm256_set1_ps(s.range),
        .zero = _mm256_setzero_ps(),
        .half = _mm256_set1_ps(0.5f),
        .cut = _mm256_set1_ps(d->cut),
        .bx_lo = _mm256_set1_ps((float)s.x_lo),
        .bx_hi = _mm256_set1_ps((float)s.x_hi + 1.0f),
        .by_lo = _mm256_set1_ps((float)s.y_lo),
        .by_hi = _mm256_set1_ps((float)s.y_hi + 1.0f),
        .lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        .vP = _mm256_set1_epi32((int32_t)P),
        .vmask = _mm256_set1_epi32((int32_t)mask),
        .vox = _mm256_set1_epi32((int32_t)(d->ox & mask)),
        .byte = _mm256_set1_epi32(0xFF),
        .mask = mask,
        .S = S,
        .ox = d->ox,
        .stroke = d->gain != 1.0f || d->bias != 0.0f,
        .cutting = d->cut > 0.0f,
        .quad = (const float *)(const void *)quad,
    };
    /* m00 * x and m10 * x of every vector of a row: the same products on every row */
    const __m256 m00 = _mm256_set1_ps(d->m00), m10 = _mm256_set1_ps(d->m10);
    const int64_t nv = (W + 7) / 8;
    for (int64_t k = 0; k < nv; ++k) {
        const __m256 fx =
            _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32((int32_t)(8 * k)), c.lane));
        _mm256_storeu_ps(xterm + 16 * k, _mm256_mul_ps(m00, fx));
        _mm256_storeu_ps(xterm + 16 * k + 8, _mm256_mul_ps(m10, fx));
    }
    for (int64_t y = 0; y < H; ++y) {
        const float fy = (float)y;
        const __m256 rx = _mm256_set1_ps(d->m01 * fy + d->bx);
        const __m256 ry = _mm256_set1_ps(d->m11 * fy + d->by);
        const float *ex = d->fx ? d->fx + ((y + d->oy) & mask) * S : NULL;
        const float *ey = d->fy ? d->fy + ((y + d->oy) & mask) * S : NULL;
        uint8_t *orow = out + y * W;
        int64_t x = 0;
        /* two vectors at a time: the second's coordinates and gather overlap the first's
         * arithmetic */
        for (; x + 16 <= W; x += 16) {
            __m256 sx0, sy0, sx1, sy1;
            const __m256 h0 = u8_coords(&sx0, &sy0, &c, xterm + 2 * x, rx, ry, ex, ey, x);
            const __m256 h1 =
                u8_coords(&sx1, &sy1, &c, xterm + 2 * x + 16, rx, ry, ex, ey, x + 8);
            const __m128i b0 = u8_pixels(&c, sx0, sy0, h0);
            const __m128i b1 = u8_pixels(&c, sx1, sy1, h1);
            _mm_storeu_si128((__m128i *)(void *)(orow + x), _mm_unpacklo_epi64(b0, b1));
        }
        for (; x < W; x += 8) {
            __m256 sx, sy;
            const __m256 h = u8_coords(&sx, &sy, &c, xterm + 2 * x, rx, ry, ex, ey, x);
            const __m128i b8 = u8_pixels(&c, sx, sy, h);
            if (x + 8 <= W || y * W + x + 8 <= H * W) {
                /* a row's last partial vector may spill into the image's next rows, which
                 * are written after it */
                _mm_storel_epi64((__m128i *)(void *)(orow + x), b8);
            } else {
                uint8_t tail[16];
                _mm_storeu_si128((__m128i *)(void *)tail, b8);
                memcpy(orow + x, tail, (size_t)(W - x));
            }
        }
    }
}

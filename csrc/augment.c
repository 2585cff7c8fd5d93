/*
 * augment.c -- random deformations of training images (Simard et al. 2003, Ciresan et al.
 * 2010): affine (rotation, horizontal shear, per-axis scale, translation), elastic
 * distortion and stroke thickness, composed into one inverse map, so each image takes one
 * bilinear pass.
 *
 * Randomness is counter-based: sample r of a call draws its parameters from
 * dc_hash64(seed, stream, r * DC_AUG_DRAWS + k), so an image's deformation depends only on
 * (seed, stream, r) and never on the thread count. Training passes the update step as the
 * stream and the row within the batch as r.
 *
 * Elastic fields: smoothing two uniform [-1, 1] fields with a Gaussian for every image
 * would cost ~2 * 784 * 2 * (8 sigma + 1) multiply-adds (~80 K at sigma 4: ~20 us), more
 * than a training step spends on the image. Instead a bank of two periodic S x S fields is
 * smoothed once (dc_elastic_bank, separable 1-D Gaussians, ~2 ms for S = 128; Trainer
 * redraws it every epoch), and each image reads an H x W window of it at a random offset,
 * with the two components randomly negated and swapped. Each component of the bank is a
 * stationary, isotropic random field, independent of the other; those operations leave
 * that distribution unchanged, so every window is a draw of Simard's field (neighbouring
 * windows are correlated, which matters little for a bank redrawn every epoch).
 */
#include "augment_internal.h"
#include "random_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many output pixels a call stays on one thread (one 28 x 28 image costs
 * ~2-4 us; a parallel region's fork/join ~5-10 us). */
#define AUG_PARALLEL_MIN ((int64_t)8 * 784)
/* Images are shared out AUG_CHUNK at a time. Each asks for the source image the same
 * thread will likely take next (AUG_CHUNK x threads ahead) to be brought into L1: images
 * drawn at random from a data set far larger than the caches (a shuffled epoch of MNIST,
 * 47 MB) spent ~17% of the kernel's time waiting for their first bytes. Training also
 * prefetches the next batch's rows into L2, but the step in between evicts them: asked
 * into L2 8 ahead, the wait stayed ~20% of the kernel's time in training's profile; into
 * L1, it went (MNIST in a shuffled order: 1.23 -> 1.06 us an image on one thread, 0.62-0.65
 * -> 0.57-0.59 us on two). */
#define AUG_CHUNK        4

/* uniform in [-1, 1) from dc_hash64's 24 top bits (u24, random_internal.h) */
static inline float sym(uint64_t h)
{
    return 2.0f * u24(h) - 1.0f;
}

#define DEG2RAD 0.017453292519943295

int dc_elastic_bank(float *bank, int64_t size, float sigma, uint64_t seed, uint64_t stream)
{
    if (size < 1 || (size & (size - 1)) != 0 || !(sigma > 0.0f) || !(sigma <= 64.0f))
        return DC_ERR_ARG;
    const int64_t n = size * size, mask = size - 1;
    const int64_t radius = (int64_t)(4.0 * (double)sigma + 0.5);
    double *kern = malloc((size_t)(2 * radius + 1) * sizeof(double));
    double *tmp = malloc((size_t)n * sizeof(double));
    if (!kern || !tmp) {
        free(kern);
        free(tmp);
        return DC_ERR_NOMEM;
    }
    double ksum = 0.0;
    for (int64_t k = -radius; k <= radius; ++k) {
        kern[k + radius] = exp(-0.5 * (double)(k * k) / ((double)sigma * (double)sigma));
        ksum += kern[k + radius];
    }
    for (int64_t k = 0; k <= 2 * radius; ++k)
        kern[k] /= ksum;
    /* (x + k) & mask is x + k modulo size also for negative x + k: offset by whole
     * periods first so the operand stays non-negative. */
    const int64_t off = (radius / size + 1) * size;
    const uint64_t key = stream_key(seed, stream); /* value i = dc_hash64(seed, stream, i) */
    for (int64_t comp = 0; comp < 2; ++comp) {
        float *f = bank + comp * n;
        for (int64_t i = 0; i < n; ++i)
            f[i] = sym(hash_at(key, (uint64_t)(comp * n + i)));
        /* along x (rows), then along y (columns), periodic, summed in double */
        for (int64_t y = 0; y < size; ++y)
            for (int64_t x = 0; x < size; ++x) {
                double s = 0.0;
                for (int64_t k = -radius; k <= radius; ++k)
                    s += kern[k + radius] * (double)f[y * size + ((x + k + off) & mask)];
                tmp[y * size + x] = s;
            }
        for (int64_t y = 0; y < size; ++y)
            for (int64_t x = 0; x < size; ++x) {
                double s = 0.0;
                for (int64_t k = -radius; k <= radius; ++k)
                    s += kern[k + radius] * tmp[((y + k + off) & mask) * size + x];
                f[y * size + x] = (float)s;
            }
    }
    free(kern);
    free(tmp);
    return DC_OK;
}

static void draw(aug_draw *d, const dc_augment *a, uint64_t seed, uint64_t stream, int64_t r,
                 float range)
{
    uint64_t h[DC_AUG_DRAWS];
    const uint64_t key = stream_key(seed, stream); /* h[k] = dc_hash64(seed, stream, ...) */
    for (int k = 0; k < DC_AUG_DRAWS; ++k)
        h[k] = hash_at(key, (uint64_t)r * DC_AUG_DRAWS + (uint64_t)k);
    /* forward map A = R(theta) . Shear(phi) . diag(sx, sy), then + t; its inverse
     * diag(1/sx, 1/sy) . Shear(-phi) . R(-theta), in double, then rounded once */
    const double th = (double)a->rotate * DEG2RAD * (double)sym(h[0]);
    const double sh = tan((double)a->shear * DEG2RAD * (double)sym(h[1]));
    const double sx = 1.0 + (double)a->scale * (double)sym(h[2]);
    const double sy = 1.0 + (double)a->scale * (double)sym(h[3]);
    const double tx = (double)a->translate * (double)sym(h[4]);
    const double ty = (double)a->translate * (double)sym(h[5]);
    const double c = cos(th), s = sin(th);
    /* R(-theta) = [[c, s], [-s, c]]; Shear(-phi) = [[1, -sh], [0, 1]] */
    const double n00 = c + sh * s, n01 = s - sh * c, n10 = -s, n11 = c;
    const double m00 = n00 / sx, m01 = n01 / sx, m10 = n10 / sy, m11 = n11 / sy;
    const double cx = 0.5 * (double)(a->width - 1), cy = 0.5 * (double)(a->height - 1);
    d->m00 = (float)m00;
    d->m01 = (float)m01;
    d->m10 = (float)m10;
    d->m11 = (float)m11;
    d->bx = (float)(cx - m00 * (cx + tx) - m01 * (cy + ty));
    d->by = (float)(cy - m10 * (cx + tx) - m11 * (cy + ty));
    d->ax = d->ay = 0.0f;
    d->fx = d->fy = NULL;
    d->ox = d->oy = 0;
    if (a->alpha != 0.0f && a->bank != NULL) {
        const int64_t S = a->bank_size;
        const uint64_t e = h[6];
        d->ox = (int64_t)(e & 0xFFFF) & (S - 1);
        d->oy = (int64_t)((e >> 16) & 0xFFFF) & (S - 1);
        d->ax = (e >> 32) & 1 ? -a->alpha : a->alpha;
        d->ay = (e >> 33) & 1 ? -a->alpha : a->alpha;
        const int swap = (int)((e >> 34) & 1);
        d->fx = a->bank + (swap ? S * S : 0);
        d->fy = a->bank + (swap ? 0 : S * S);
    }
    d->gain = 1.0f;
    d->bias = 0.0f;
    if (a->thickness != 0.0f) {
        /* u > 0 thickens: v / (1 - u) saturates the stroke's anti-aliased rim; u < 0
         * thins: (v + u) / (1 + u) cuts it. On MNIST's soft edges (~2 px ramps) that
         * moves the edge by up to about a pixel, like a grey dilation or erosion. */
        const float u = a->thickness * sym(h[7]);
        if (u >= 0.0f) {
            d->gain = 1.0f / (1.0f - u);
        } else {
            d->gain = 1.0f / (1.0f + u);
            d->bias = u / (1.0f + u);
        }
    }
    d->cut = a->faint * range;
}

/* Sample one image (see aug_src), the portable path: each pixel as dc_aug_warp_avx2 does
 * it in its lanes, operation for operation. */
static void warp(float *out, const aug_src *s, const aug_draw *d)
{
    const int64_t H = s->H, W = s->W, P = W + 3;
    const int64_t mask = s->bank_size - 1, S = s->bank_size;
    const float xmax = (float)(W + 1), ymax = (float)(H + 1);
    const int stroke = d->gain != 1.0f || d->bias != 0.0f;
    const float brange = d->bias * s->range, range = s->range;
    for (int64_t y = 0; y < H; ++y) {
        const float fy = (float)y;
        const float rx = d->m01 * fy + d->bx, ry = d->m11 * fy + d->by;
        const float *ex = d->fx ? d->fx + ((y + d->oy) & mask) * S : NULL;
        const float *ey = d->fy ? d->fy + ((y + d->oy) & mask) * S : NULL;
        for (int64_t x = 0; x < W; ++x) {
            const float fx = (float)x;
            float sx = d->m00 * fx + rx, sy = d->m10 * fx + ry;
            if (ex != NULL) {
                const int64_t k = (x + d->ox) & mask;
                sx += d->ax * ex[k];
                sy += d->ay * ey[k];
            }
            /* in padded coordinates (+1), clamped into the padding: a tap outside the
             * image reads a zero, and a clamped coordinate puts all its weight on one
             * zero tap (NaN maps to 0 too). Non-negative, so truncation is floor. */
            sx += 1.0f;
            sy += 1.0f;
            sx = sx >= 0.0f ? (sx <= xmax ? sx : xmax) : 0.0f;
            sy = sy >= 0.0f ? (sy <= ymax ? sy : ymax) : 0.0f;
            const int32_t ix = (int32_t)sx, iy = (int32_t)sy;
            if (ix < s->x_lo || ix > s->x_hi || iy < s->y_lo || iy > s->y_hi) {
                out[y * W + x] = 0.0f; /* four zero taps */
                continue;
            }
            const float wx = sx - (float)ix, wy = sy - (float)iy;
            const float *p = s->pad + (int64_t)iy * P + ix;
            const float top = p[0] + wx * (p[1] - p[0]);
            const float bot = p[P] + wx * (p[P + 1] - p[P]);
            float v = top + wy * (bot - top);
            if (stroke) {
                v = v * d->gain + brange;
                v = v > 0.0f ? (v < range ? v : range) : 0.0f;
            }
            if (d->cut > 0.0f && v < d->cut)
                v = 0.0f;
            out[y * W + x] = v;
        }
    }
}

/* Copy image row `row` of in8/in32 into the interior of pad (whose border stays zero) and
 * find the box of its non-zero pixels (aug_src). colany is W bytes of scratch. */
static void load_source(aug_src *s, float *pad, uint8_t *colany, const uint8_t *in8,
                        const float *in32, int64_t row)
{
    const int64_t H = s->H, W = s->W, P = W + 3;
    int64_t y_first = -1, y_last = -1;
    for (int64_t x = 0; x < W; ++x)
        colany[x] = 0;
    for (int64_t y = 0; y < H; ++y) {
        float *dst = pad + (y + 1) * P + 1;
        uint8_t any = 0;
        if (in8 != NULL) {
            const uint8_t *src = in8 + (row * H + y) * W;
            for (int64_t x = 0; x < W; ++x) {
                dst[x] = (float)src[x];
                colany[x] |= src[x];
                any |= src[x];
            }
        } else {
            const float *src = in32 + (row * H + y) * W;
            for (int64_t x = 0; x < W; ++x) {
                const uint8_t nz = src[x] != 0.0f; /* NaN too */
                dst[x] = src[x];
                colany[x] |= nz;
                any |= nz;
            }
        }
        if (any) {
            if (y_first < 0)
                y_first = y;
            y_last = y;
        }
    }
    if (y_first < 0) { /* all zero: every pixel skips */
        s->x_lo = s->y_lo = INT32_MAX;
        s->x_hi = s->y_hi = -1;
        return;
    }
    int64_t x_first = 0, x_last = W - 1;
    while (!colany[x_first])
        ++x_first;
    while (!colany[x_last])
        --x_last;
    /* non-zero in padded columns [x_first + 1, x_last + 1]: the taps ix, ix + 1 miss it
     * when ix + 1 < x_first + 1 or ix > x_last + 1 */
    s->x_lo = (int32_t)x_first;
    s->x_hi = (int32_t)(x_last + 1);
    s->y_lo = (int32_t)y_first;
    s->y_hi = (int32_t)(y_last + 1);
}

/* dst (n) = res clamped to [0, 255] (NaN to 0) and rounded half up */
static void store_u8(uint8_t *dst, const float *res, int64_t n)
{
    for (int64_t i = 0; i < n; ++i) {
        const float v = res[i] > 0.0f ? (res[i] < 255.0f ? res[i] : 255.0f) : 0.0f;
        dst[i] = (uint8_t)(v + 0.5f);
    }
}

/* Both dtypes: exactly one of in8/in32 (and of out8/out32) is set. uint8 values are
 * resampled in [0, 255] and rounded half up; floats are resampled as they are (the
 * stroke curve takes them to be in [0, 1]). */
static int augment(uint8_t *out8, float *out32, const uint8_t *in8, const float *in32,
                   const int64_t *idx, int64_t B, const dc_augment *a, uint64_t seed,
                   uint64_t stream)
{
    if (B < 0 || a->height < 1 || a->width < 1 || a->height > DC_AUG_MAX_SIDE ||
        a->width > DC_AUG_MAX_SIDE || !(a->faint >= 0.0f && a->faint < 1.0f))
        return DC_ERR_ARG;
    if (a->alpha != 0.0f && a->bank != NULL &&
        (a->bank_size < 1 || (a->bank_size & (a->bank_size - 1)) != 0))
        return DC_ERR_ARG;
    if (B == 0)
        return DC_OK;
    const int64_t H = a->height, W = a->width, F = H * W, P = W + 3;
    /* per thread: the padded source, the result, the column flags (in floats' room) */
    const int64_t pad_n = (H + 3) * P;
    int64_t per = pad_n + F + (W + 3) / 4 + 16;
    const float range = in8 != NULL ? 255.0f : 1.0f;
    void (*warp_fn)(float *, const aug_src *, const aug_draw *) = warp;
    /* uint8 on AVX2: dc_aug_u8_avx2's scratch instead (quad words, xterm floats, then pad8
     * and colany bytes; see augment_internal.h) */
    int fast_u8 = 0, wide = 0;
    const int64_t quad_n = (H + 2) * P + 16, pad8_n = (H + 4) * P + 32;
    const int64_t xterm_n = 32 * ((W + 15) / 16); /* >= the 16 * ceil(W / 8) of 8 lanes */
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        warp_fn = dc_aug_warp_avx2; /* float images */
        fast_u8 = in8 != NULL;
#if DC_GEMM_BUILD_AVX512
        wide = dc_avx512_active();
#endif
    }
#endif
    if (fast_u8)
        per = quad_n + xterm_n + (pad8_n + W + 3) / 4 + 16;
    int nt = B * F >= AUG_PARALLEL_MIN ? dc_get_num_threads() : 1;
    if (nt > B)
        nt = (int)B;
    /* zeroed once: the pads' borders are never written, so they stay zero. Images are
     * shared out in small dynamic chunks: a thread the machine deschedules holds up a few
     * images, not half the batch (an image's bits depend on r alone). */
    float *scratch = calloc((size_t)(nt * per), sizeof(float));
    if (scratch == NULL)
        return DC_ERR_NOMEM;
    const int64_t ahead_n = (int64_t)AUG_CHUNK * nt;
    dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, AUG_CHUNK) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < B; ++r) {
#ifdef _OPENMP
        float *pad = scratch + (int64_t)omp_get_thread_num() * per;
#else
        float *pad = scratch;
#endif
        if (r + ahead_n < B) {
            const int64_t ahead = idx != NULL ? idx[r + ahead_n] : r + ahead_n;
            if (in8 != NULL)
                dc_prefetch_bytes_to(in8 + ahead * F, F, 1);
            else
                dc_prefetch_bytes_to(in32 + ahead * F, F * (int64_t)sizeof(float), 1);
        }
        aug_draw d;
        draw(&d, a, seed, stream, r, range);
        const int64_t row = idx != NULL ? idx[r] : r;
#if DC_GEMM_BUILD_AVX2
        if (fast_u8) {
            uint32_t *quad = (uint32_t *)(void *)pad;
            float *xterm = (float *)(void *)(quad + quad_n);
            uint8_t *pad8 = (uint8_t *)(xterm + xterm_n);
            dc_aug_u8_avx2(out8 + r * F, in8 + row * F, &d, H, W, a->bank_size, pad8, quad,
                           pad8 + pad8_n, xterm, wide);
            continue;
        }
#endif
        float *res = pad + pad_n;
        uint8_t *colany = (uint8_t *)(res + F);
        aug_src src = {.pad = pad, .H = H, .W = W, .range = range, .bank_size = a->bank_size};
        load_source(&src, pad, colany, in8, in32, row);
        warp_fn(res, &src, &d);
        if (out8 != NULL) {
            store_u8(out8 + r * F, res, F);
        } else {
            float *dst = out32 + r * F;
            for (int64_t i = 0; i < F; ++i)
                dst[i] = res[i];
        }
    }
    free(scratch);
    return DC_OK;
}

int dc_augment_u8(uint8_t *out, const uint8_t *inp, const int64_t *idx, int64_t B,
                  const dc_augment *a, uint64_t seed, uint64_t stream)
{
    return augment(out, NULL, inp, NULL, idx, B, a, seed, stream);
}

int dc_augment_f32(float *out, const float *inp, const int64_t *idx, int64_t B,
                   const dc_augment *a, uint64_t seed, uint64_t stream)
{
    return augment(NULL, out, NULL, inp, idx, B, a, seed, stream);
}

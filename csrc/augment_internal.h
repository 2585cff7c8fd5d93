/*
 * augment_internal.h -- private contract between augment.c (draws, driver, portable
 * resampling) and augment_avx2.c (the AVX2 resampling of one image, 8 pixels at a time).
 */
#ifndef DC_AUGMENT_INTERNAL_H
#define DC_AUGMENT_INTERNAL_H

#include <stdint.h>

#include "common.h"
#include "digitcore.h"
#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

/* One image's inverse map and intensity curve, drawn from its counter. */
typedef struct {
    float m00, m01, m10, m11; /* inverse linear part */
    float bx, by;             /* source = M . (p - c - t) + c  =  M . p + (bx, by) */
    float ax, ay;             /* elastic: source += (ax * fx[p], ay * fy[p]) */
    const float *fx, *fy;     /* the bank's components, possibly swapped */
    int64_t ox, oy;           /* window offset in the bank */
    float gain, bias;         /* stroke: v -> clamp(v * gain + bias * range, 0, range) */
    float cut;                /* then v < cut -> 0 (faint * range; 0: off) */
} aug_draw;

/* The source image of one warp: pad is (H + 3) x (W + 3) floats, the image at rows and
 * columns 1..H, 1..W, zero elsewhere. Its non-zero pixels (NaN counts as non-zero) lie
 * in padded columns [x_lo + 1, x_hi] and rows [y_lo + 1, y_hi]: an output pixel whose
 * bilinear taps (columns ix, ix + 1, rows iy, iy + 1) have ix < x_lo, ix > x_hi,
 * iy < y_lo or iy > y_hi reads four zeros, and is 0 exactly (also after the stroke
 * curve, whose bias is never positive, and the cut), so it is written as 0 without reading
 * them.
 * An all-zero image has x_lo > x_hi. */
typedef struct {
    const float *pad;
    int64_t H, W;
    int32_t x_lo, x_hi, y_lo, y_hi;
    float range; /* 255 (uint8) or 1 (float) */
    int64_t bank_size;
} aug_src;

/* out (H, W) = the image of s resampled through d. Both paths do the same float32
 * operations in the same order (no FMA), so their results are identical bit for bit
 * (tests/test_augment.py compares them). */
#if DC_GEMM_BUILD_AVX2
void dc_aug_warp_avx2(float *out, const aug_src *s, const aug_draw *d);
/* The whole uint8 image at once: out (H, W) = img (H, W) resampled through d and rounded,
 * the bits of augment.c's load_source + warp + store_u8. Instead of a float copy of the image
 * it reads a table of its 2 x 2 neighbourhoods (quad[iy * P + ix]: the four padded pixels (iy,
 * ix), (iy, ix + 1), (iy + 1, ix), (iy + 1, ix + 1) as the bytes of one word, P = W + 3), so a
 * lane's four taps are one 4-byte gather element: one gather of 8 words per 8 pixels
 * instead of four of 4 pairs, and the uint8 taps convert to the same floats. pad8 is
 * (H + 4) * P bytes whose border is zero (only the image's pixels are written), quad
 * (H + 2) * P words, colany W bytes and xterm 32 * ceil(W / 16) floats of scratch. wide: run
 * the pixel loop on AVX-512 (dc_aug_u8_rows_avx512; only when dc_avx512_active()). */
void dc_aug_u8_avx2(uint8_t *out, const uint8_t *img, const aug_draw *d, int64_t H, int64_t W,
                    int64_t bank_size, uint8_t *pad8, uint32_t *quad, uint8_t *colany,
                    float *xterm, int wide);
#endif
/* dc_aug_u8_avx2's loop over the output pixels, 16 at a time (augment_avx512.c; wide != 0
 * there), with the same bits: s gives the image's shape, box and bank (s->pad unused),
 * quad the table dc_aug_u8_avx2 built, xterm 32 * ceil(W / 16) floats of scratch. */
#if DC_GEMM_BUILD_AVX512
void dc_aug_u8_rows_avx512(uint8_t *out, const aug_src *s, const aug_draw *d,
                           const uint32_t *quad, float *xterm);
#endif

#endif /* DC_AUGMENT_INTERNAL_H */

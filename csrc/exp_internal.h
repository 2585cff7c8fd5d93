/*
 * exp_internal.h -- the exponential of the softmax (loss.c): exp(d) for d <= 0, in double,
 * the same bits on every kernel path. loss_avx2.c computes it 4 lanes at a time with the
 * same operations, and loss.c 2 at a time with SSE2 on the portable path of x86-64
 * (exps_sse2); elsewhere loss.c calls this function.
 *
 * libm's exp, one call per logit, was ~7% of a full-batch step of 784-10-10 (60,000 rows
 * of 10 classes) on each thread. The method is the usual one: d = n ln2 + r with n an
 * integer and |r| <= ln2 / 2, exp(d) = 2^n exp(r), exp(r) from its Taylor series to r^13
 * (the first term left out, r^14 / 14!, is below 2^-57 of the result). Multiplies and adds
 * are never contracted into FMAs (GCC does not contract in its ISO C modes, MSVC not under
 * /fp:precise; clang is told not to), so both builds give identical bits
 * (tests/test_ops.py compares them). Within one unit in the last place of exp: against
 * glibc's over 2 million uniform d in [-708, 0] (or [-20, 0], or [-1, 0]) it differed by
 * one unit in ~10% of cases, never by more. Rounded to float, that difference almost never
 * shows: on 300,000 rows of 10 random logits at each of 4 scales (1 to 300), with and
 * without label smoothing, every probability and gradient and the double loss had the
 * bits they had with glibc's exp, and so had tests/test_training_bits.py's runs.
 *
 * Only d >= -708 is computed: below it exp(d) < 2^-1021, and the result is 0. A softmax row
 * holds its maximum's exp(0) = 1, so such a term cannot change the row's sum, and its
 * probability and gradient round to float 0 either way. -inf gives 0 and NaN gives NaN.
 */
#ifndef DC_EXP_INTERNAL_H
#define DC_EXP_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

#define DC_EXP_MIN    (-708.0)
#define DC_EXP_LOG2E  1.4426950408889634
/* rounds a double below 2^51 in magnitude to an integer when added and subtracted, and
 * leaves that integer (plus 2^51) in the low bits of the sum */
#define DC_EXP_ROUND  6755399441055744.0 /* 1.5 * 2^52 */
/* ln 2 = LN2_HI + LN2_LO, LN2_HI of 32 significant bits: n * LN2_HI is exact for |n| <
 * 2^21, and so is d - n * LN2_HI (the two lie within a factor of 2 of each other) */
#define DC_EXP_LN2_HI 0.6931471803691238     /* 0x1.62e42feep-1 */
#define DC_EXP_LN2_LO 1.9082149292705877e-10 /* 0x1.a39ef35793c76p-33 */
/* 1 / k! for k = 13 down to 2, in the order Horner's scheme takes them; every copy of the
 * method (here, loss_avx2.c, loss.c's exps_sse2) initialises its table from this list */
#define DC_EXP_TERMS  12
#define DC_EXP_TAYLOR                                                                          \
    {                                                                                          \
        1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08,                   \
            2.755731922398589e-07, 2.7557319223985893e-06, 2.48015873015873e-05,               \
            0.0001984126984126984, 0.001388888888888889, 0.008333333333333333,                 \
            0.041666666666666664, 0.16666666666666666, 0.5                                     \
    }

/* exp(d) for d <= 0 (d > 0 is not supported); see above */
static inline double dc_exp_le0(double d)
{
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const double t = d * DC_EXP_LOG2E + DC_EXP_ROUND;
    const double n = t - DC_EXP_ROUND;
    const double r = (d - n * DC_EXP_LN2_HI) - n * DC_EXP_LN2_LO;
    static const double c[DC_EXP_TERMS] = DC_EXP_TAYLOR;
    double q = c[0];
    for (int k = 1; k < DC_EXP_TERMS; ++k)
        q = q * r + c[k];
    const double e = 1.0 + (r + (r * r) * q);
    /* 2^n from the rounding sum's low bits: n + 1023 in the exponent field */
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    /* NaN is not less: it gives the NaN computed */
    return d < DC_EXP_MIN ? 0.0 : e * scale;
}

#if DC_GEMM_BUILD_AVX2
/* y[i] = dc_exp_le0(d[i]) for i < n, 4 lanes at a time (loss_avx2.c); y may equal d */
void dc_exp_le0_avx2(double *y, const double *d, int64_t n);
#endif

#endif /* DC_EXP_INTERNAL_H */

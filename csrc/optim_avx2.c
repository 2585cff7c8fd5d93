/*
 * optim_avx2.c -- Adam's step (optim_internal.h's adam_range_impl) compiled with
 * -mavx2 -mfma (MSVC: /arch:AVX2), so its loop runs 8 floats wide; nn.c calls it on the
 * AVX2 path only. Same operations per element as nn.c's build: same bits.
 */
#include "optim_internal.h"

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "optim_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

void dc_adam_range_avx2(float *param, float *m, float *v, const float *grad, int64_t lo,
                        int64_t hi, float b1, float b2, float eps, float l2, float l1,
                        float decay, float step_size, float sqrt_bc2)
{
    DC_ADAM_RANGE_BODY
}

/*
 * gather_internal.h -- nn.c's input conversion (dc_gather_u8/_f32: rows to float32 as
 * x * scale + shift) and its AVX2 build (gather_avx2.c).
 */
#ifndef DC_GATHER_INTERNAL_H
#define DC_GATHER_INTERNAL_H

#include <stdint.h>

#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

#if DC_GEMM_BUILD_AVX2
/* dst[j] = (float)src[j] * scale + shift (multiply, then add, each rounded: nn.c's bits)
 * for j from 0 in whole vectors of 8; they return where they stopped (at most 7 short of
 * n) and the caller does the rest. Callers check the kernel path. */
int64_t dc_gather_row_u8_avx2(float *dst, const uint8_t *src, int64_t n, float scale,
                              float shift);
int64_t dc_gather_row_f32_avx2(float *dst, const float *src, int64_t n, float scale,
                               float shift);
#endif

#endif /* DC_GATHER_INTERNAL_H */

/*
 * gemm_generic.c -- the portable GEMM micro-kernel (6x8, GNU vector extensions: SSE2 on
 * x86-64, NEON on arm; plain loops elsewhere) and its packers, the "generic" row of the
 * per-ISA table in gemm.c. Always built, whatever the CPU; DIGITCORE_KERNEL=generic
 * forces it.
 */
#include <string.h>

#include "gemm_internal.h"

/* Write an MR x NR tile of results t (row stride NR) into C: C = alpha*t + beta*C. */
static void dc_store_tile(float *c, int64_t ldc, const float *t, int ld_t, float alpha,
                          float beta, int mr, int nr)
{
    for (int r = 0; r < mr; r++) {
        float *cr = c + (int64_t)r * ldc;
        const float *tr = t + r * ld_t;
        if (beta == 0.0f) {
            for (int j = 0; j < nr; j++)
                cr[j] = alpha * tr[j];
        } else {
            for (int j = 0; j < nr; j++)
                cr[j] = alpha * tr[j] + beta * cr[j];
        }
    }
}

#if defined(__GNUC__) || defined(__clang__)
typedef float dc_v4sf __attribute__((vector_size(16)));

/* clang-format off */
#define DC_GEN_ACC_DECL                                                                \
    dc_v4sf c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};         \
    dc_v4sf c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
#define DC_GEN_FINISH                                                                  \
    float t[DC_GEN_MR * DC_GEN_NR];                                                    \
    DC_GEN_PUT(0) DC_GEN_PUT(1) DC_GEN_PUT(2) DC_GEN_PUT(3) DC_GEN_PUT(4) DC_GEN_PUT(5) \
    dc_store_tile(c, ldc, t, DC_GEN_NR, alpha, beta, mr, nr);
#define DC_GEN_PUT(r)                                   \
    memcpy(t + r * DC_GEN_NR, &c##r##0, sizeof c00);    \
    memcpy(t + r * DC_GEN_NR + 4, &c##r##1, sizeof c00);
/* clang-format on */

void dc_sgemm_ukernel_generic(int64_t k, const float *restrict a, int64_t rs_a, int64_t cs_a,
                              const float *restrict b, float *restrict c, int64_t ldc,
                              float alpha, float beta, int mr, int nr)
{
    /* 12 accumulators + 2 B vectors + 1 A vector = 15 of 16 xmm registers */
    DC_GEN_ACC_DECL
    dc_v4sf b0, b1, av;
    if (rs_a == 0) {
        /* packed A is pre-broadcast (a_dup = 4): a load per row instead of a load plus a
         * shuffle; SSE2 has no broadcast load and the shuffle port was the bottleneck */
        for (int64_t p = 0; p < k; p++) {
            memcpy(&b0, b, sizeof b0);
            memcpy(&b1, b + 4, sizeof b1);
/* clang-format off */
#define DC_GEN_ROW(r)                                   \
    memcpy(&av, a + 4 * r, sizeof av);                  \
    c##r##0 += av * b0;                                 \
    c##r##1 += av * b1;
            DC_GEN_ROW(0) DC_GEN_ROW(1) DC_GEN_ROW(2) DC_GEN_ROW(3) DC_GEN_ROW(4) DC_GEN_ROW(5)
#undef DC_GEN_ROW
            a += 4 * DC_GEN_MR;
            b += DC_GEN_NR;
            /* clang-format on */
        }
    } else {
        /* op(A) in place; rows past mr re-read the last valid row (results dropped) */
        const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * rs_a;
        const float *a2 = a + (mr > 2 ? 2 : 0) * rs_a, *a3 = a + (mr > 3 ? 3 : 0) * rs_a;
        const float *a4 = a + (mr > 4 ? 4 : 0) * rs_a, *a5 = a + (mr > 5 ? 5 : 0) * rs_a;
        for (int64_t p = 0; p < k; p++) {
            memcpy(&b0, b, sizeof b0);
            memcpy(&b1, b + 4, sizeof b1);
/* clang-format off */
#define DC_GEN_ROW(r)                                   \
    av = (dc_v4sf){*a##r, *a##r, *a##r, *a##r};         \
    c##r##0 += av * b0;                                 \
    c##r##1 += av * b1;                                 \
    a##r += cs_a;
            DC_GEN_ROW(0) DC_GEN_ROW(1) DC_GEN_ROW(2) DC_GEN_ROW(3) DC_GEN_ROW(4) DC_GEN_ROW(5)
#undef DC_GEN_ROW
            b += DC_GEN_NR;
            /* clang-format on */
        }
    }
    DC_GEN_FINISH
}
#else
void dc_sgemm_ukernel_generic(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                              const float *b, float *c, int64_t ldc, float alpha, float beta,
                              int mr, int nr)
{
    float t[DC_GEN_MR * DC_GEN_NR] = {0};
    const int packed = rs_a == 0;
    for (int64_t p = 0; p < k; p++) {
        for (int r = 0; r < mr; r++) {
            const float av = packed ? a[p * DC_GEN_MR + r] : a[r * rs_a + p * cs_a];
            for (int j = 0; j < DC_GEN_NR; j++)
                t[r * DC_GEN_NR + j] += av * b[j];
        }
        b += DC_GEN_NR;
    }
    dc_store_tile(c, ldc, t, DC_GEN_NR, alpha, beta, mr, nr);
}
#endif

void dc_sgemm_pack_a_generic(float *pa, int64_t ps, const float *a, int64_t lda, int trans_a,
                             int64_t i0, int64_t mlen, int64_t p0, int64_t kc)
{
    for (int64_t ip = 0; ip < mlen; ip += DC_GEN_MR) {
        const int mr = (int)dc_min64(DC_GEN_MR, mlen - ip);
        for (int64_t p = 0; p < kc; p++) {
            float *dst = pa + p * DC_GEN_MR * DC_GEN_A_DUP;
            for (int r = 0; r < DC_GEN_MR; r++) {
                float v = 0.0f;
                if (r < mr)
                    v = trans_a ? a[(p0 + p) * lda + i0 + ip + r]
                                : a[(i0 + ip + r) * lda + p0 + p];
                for (int d = 0; d < DC_GEN_A_DUP; d++)
                    dst[r * DC_GEN_A_DUP + d] = v;
            }
        }
        pa += ps;
    }
}

void dc_sgemm_pack_b_generic(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                             int64_t p0, int64_t kc, int64_t j0, int64_t nlen)
{
    for (int64_t jp = 0; jp < nlen; jp += DC_GEN_NR) {
        const int nr = (int)dc_min64(DC_GEN_NR, nlen - jp);
        for (int64_t p = 0; p < kc; p++) {
            float *dst = pb + p * DC_GEN_NR;
            int j = 0;
            if (trans_b) {
                const float *src = b + (j0 + jp) * ldb + p0 + p;
                for (; j < nr; j++)
                    dst[j] = src[(int64_t)j * ldb];
            } else {
                const float *src = b + (p0 + p) * ldb + j0 + jp;
                for (; j < nr; j++)
                    dst[j] = src[j];
            }
            for (; j < DC_GEN_NR; j++)
                dst[j] = 0.0f;
        }
        pb += ps;
    }
}

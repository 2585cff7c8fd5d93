/*
 * sparse.c -- the first layer on sparse input: CSR gathers, CSR transpose, and dc_spmm
 * (sparse rows times a dense matrix) with the dense layer's bias/activation epilogue.
 *
 * Plain C11; the AVX2 row kernel lives in sparse_avx2.c and is chosen by the same
 * kernel-path switch as the GEMM. Work is split over output columns or over rows, never
 * over a sum, so each output's bits do not depend on the thread count.
 */
#include "digitcore.h"
#include "sparse_internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many multiply-adds (nnz * N) a second thread costs more than it gains. */
#define SPMM_PARALLEL_MIN ((int64_t)1 << 17)

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ==== building CSR ========================================================================= */

static inline uint64_t load_u64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Non-zeros of one uint8 row (a loop the compiler vectorizes). */
static int64_t count_u8(const uint8_t *src, int64_t F)
{
    int64_t c = 0;
    for (int64_t j = 0; j < F; ++j)
        c += src[j] != 0;
    return c;
}

/* The entries of one uint8 row; whole 8-byte words of background are skipped at once. */
static void fill_u8(int32_t *idx, float *val, const uint8_t *src, int64_t F, float scale)
{
    int64_t p = 0, j = 0;
    for (; j + 8 <= F; j += 8) {
        if (load_u64(src + j) == 0)
            continue;
        for (int64_t t = j; t < j + 8; ++t)
            if (src[t] != 0) {
                idx[p] = (int32_t)t;
                val[p] = (float)src[t] * scale;
                ++p;
            }
    }
    for (; j < F; ++j)
        if (src[j] != 0) {
            idx[p] = (int32_t)j;
            val[p] = (float)src[j] * scale;
            ++p;
        }
}

/* A float entry is kept when its scaled value is not zero (NaN and inf are kept, so
 * they reach the loss and are reported as in the dense path). */
static int64_t count_f32(const float *src, int64_t F, float scale)
{
    int64_t c = 0;
    for (int64_t j = 0; j < F; ++j)
        c += (src[j] * scale) != 0.0f;
    return c;
}

static void fill_f32(int32_t *idx, float *val, const float *src, int64_t F, float scale)
{
    int64_t p = 0;
    for (int64_t j = 0; j < F; ++j) {
        const float v = src[j] * scale;
        if (v != 0.0f) {
            idx[p] = (int32_t)j;
            val[p] = v;
            ++p;
        }
    }
}

/* Two passes over the rows (count, then fill), both split over threads by rows; the
 * prefix sum between them is serial (B additions). */
static int csr_gather(dc_csr *out, int64_t capacity, const uint8_t *in8, const float *in32,
                      const int64_t *ridx, int64_t B, int64_t F, float scale)
{
    if (out == NULL || B < 0 || F < 0 || F > INT32_MAX || capacity < 0)
        return DC_ERR_ARG;
    out->rows = B;
    out->cols = F;
    out->nnz = 0;
    out->ptr[0] = 0;
    if (B == 0)
        return DC_OK;
    const int nt = dc_get_num_threads();
    const int par = nt > 1 && B >= 2 * nt && B * F >= ((int64_t)1 << 13);
    (void)par;
    void (*fill)(int32_t *, float *, const uint8_t *, int64_t, float) = fill_u8;
    int64_t (*count)(const uint8_t *, int64_t) = count_u8;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        fill = dc_csr_fill_u8_avx2;
        count = dc_csr_count_u8_avx2;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
#endif
    for (int64_t r = 0; r < B; ++r) {
        const int64_t src = ridx != NULL ? ridx[r] : r;
        out->ptr[r + 1] = in8 != NULL ? count(in8 + src * F, F)
                                      : count_f32(in32 + src * F, F, scale);
    }
    for (int64_t r = 0; r < B; ++r)
        out->ptr[r + 1] += out->ptr[r];
    out->nnz = out->ptr[B];
    if (out->nnz > capacity)
        return DC_ERR_CAPACITY;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
#endif
    for (int64_t r = 0; r < B; ++r) {
        const int64_t src = ridx != NULL ? ridx[r] : r, p = out->ptr[r];
        if (in8 != NULL)
            fill(out->idx + p, out->val + p, in8 + src * F, F, scale);
        else
            fill_f32(out->idx + p, out->val + p, in32 + src * F, F, scale);
    }
    return DC_OK;
}

int dc_csr_gather_u8(dc_csr *out, int64_t capacity, const uint8_t *inp, const int64_t *idx,
                     int64_t B, int64_t F, float scale)
{
    return csr_gather(out, capacity, inp, NULL, idx, B, F, scale);
}

int dc_csr_gather_f32(dc_csr *out, int64_t capacity, const float *inp, const int64_t *idx,
                      int64_t B, int64_t F, float scale)
{
    return csr_gather(out, capacity, NULL, inp, idx, B, F, scale);
}

/* First entry of row r at or after column c (a row's columns increase). */
static int64_t row_lower_bound(const dc_csr *x, int64_t r, int64_t c)
{
    int64_t lo = x->ptr[r], hi = x->ptr[r + 1];
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (x->idx[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Counting sort by column, stable (each column lists its rows in increasing order: the
 * order the weight gradient sums the batch in). Columns are split over threads, so each
 * writes its own contiguous part of the output; a thread finds its columns in each row
 * by binary search. (Scattering dout rows straight into the weight gradient instead, with
 * no transpose, measured 1.2x slower on one thread and 4x on two.) */
int dc_csr_transpose(dc_csr *out, const dc_csr *x)
{
    if (out == NULL || x == NULL || x->rows < 0 || x->cols < 0 || x->rows > INT32_MAX)
        return DC_ERR_ARG;
    const int64_t K = x->cols, R = x->rows, nnz = x->ptr[R];
    int64_t *ptr = out->ptr;
    out->rows = K;
    out->cols = R;
    out->nnz = nnz;
    int nt = dc_get_num_threads();
    if (nnz < ((int64_t)1 << 11) || K < nt)
        nt = 1;
    memset(ptr, 0, (size_t)(K + 1) * sizeof(int64_t));
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
#ifdef _OPENMP
        const int t = nt > 1 ? omp_get_thread_num() : 0;
#else
        const int t = 0;
#endif
        const int64_t c0 = K * t / nt, c1 = K * (t + 1) / nt;
        /* counts into ptr[c + 1] */
        for (int64_t r = 0; r < R; ++r)
            for (int64_t e = row_lower_bound(x, r, c0); e < x->ptr[r + 1] && x->idx[e] < c1; ++e)
                ptr[x->idx[e] + 1] += 1;
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        for (int64_t c = 0; c < K; ++c)
            ptr[c + 1] += ptr[c];
        /* (implicit barrier after single) ptr[c] is column c's start: the write cursor,
         * shifted back below */
        for (int64_t r = 0; r < R; ++r)
            for (int64_t e = row_lower_bound(x, r, c0); e < x->ptr[r + 1] && x->idx[e] < c1;
                 ++e) {
                const int64_t p = ptr[x->idx[e]]++;
                out->idx[p] = (int32_t)r;
                out->val[p] = x->val[e];
            }
    }
    for (int64_t c = K; c > 0; --c)
        ptr[c] = ptr[c - 1];
    ptr[0] = 0;
    return DC_OK;
}

/* ==== sparse times dense ==================================================================== */

static void spmm_row_generic(float *out, const int32_t *idx, const float *val, int64_t nnz,
                             const float *d, int64_t ldd, int64_t w, float alpha, float beta,
                             const float *bias, int act, float act_alpha)
{
    float acc[DC_SPMM_BLOCK];
    for (int64_t j = 0; j < w; ++j)
        acc[j] = 0.0f;
    for (int64_t e = 0; e < nnz; ++e) {
        const float x = val[e], *dr = d + (int64_t)idx[e] * ldd;
        for (int64_t j = 0; j < w; ++j)
            acc[j] += x * dr[j];
    }
    for (int64_t j = 0; j < w; ++j) {
        float r = alpha * acc[j];
        if (beta != 0.0f)
            r = beta * out[j] + r;
        if (bias != NULL)
            r += bias[j];
        if (act == DC_ACT_RELU)
            r = r > 0.0f ? r : 0.0f;
        else if (act == DC_ACT_LEAKY_RELU)
            r = r > 0.0f ? r : act_alpha * r;
        out[j] = r;
    }
}

/* Rows [r0, r1) of column blocks [b0, b1): blocks outer, so one block's slab of D
 * (K x 64 floats) stays in this core's L2 while every row uses it. */
static void spmm_tile(dc_spmm_row_fn row, float *out, const dc_csr *s, const float *d,
                      int64_t ldd, int64_t N, int64_t r0, int64_t r1, int64_t b0, int64_t b1,
                      float alpha, float beta, const float *bias, int act, float act_alpha)
{
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t j0 = b * DC_SPMM_BLOCK, w = min_i64(DC_SPMM_BLOCK, N - j0);
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t e0 = s->ptr[r], n = s->ptr[r + 1] - e0;
            if (n == 0 && beta == 1.0f && bias == NULL && act == DC_ACT_IDENTITY)
                continue; /* alpha * 0 + out == out */
            row(out + r * N + j0, s->idx + e0, s->val + e0, n, d + j0, ldd, w, alpha, beta,
                bias ? bias + j0 : NULL, act, act_alpha);
        }
    }
}

/* First row of part t of nt, so that parts hold about equal numbers of entries. */
static int64_t balanced_row(const dc_csr *s, int64_t t, int64_t nt)
{
    const int64_t R = s->rows, nnz = s->ptr[R];
    if (t >= nt)
        return R;
    if (nnz == 0)
        return R * t / nt;
    const int64_t target = nnz * t / nt;
    int64_t lo = 0, hi = R; /* first r with ptr[r] >= target */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (s->ptr[mid] < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int dc_spmm(float *out, const dc_csr *s, const float *d, int64_t ldd, int64_t N, float alpha,
            float beta, const float *bias, int act, float act_alpha)
{
    if (s == NULL || s->rows < 0 || s->cols < 0 || N < 0 || ldd < N)
        return DC_ERR_ARG;
    if (act < DC_ACT_IDENTITY || act > DC_ACT_TANH)
        return DC_ERR_ARG;
    const int64_t R = s->rows;
    if (R == 0 || N == 0)
        return DC_OK;
    const int fused = act == DC_ACT_IDENTITY || act == DC_ACT_RELU || act == DC_ACT_LEAKY_RELU;
    const int row_act = fused ? act : DC_ACT_IDENTITY;
    dc_spmm_row_fn row = spmm_row_generic;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2)
        row = dc_spmm_row_avx2;
#endif
    const int64_t nb = (N + DC_SPMM_BLOCK - 1) / DC_SPMM_BLOCK;
    int nt = dc_get_num_threads();
    if (s->ptr[R] * N < SPMM_PARALLEL_MIN)
        nt = 1;
    /* Column blocks split evenly: each thread keeps its own slab of D. Otherwise rows,
     * balanced by entries. */
    const int by_blocks = nb >= nt && nb % nt == 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int t = 0; t < nt; ++t) {
        if (by_blocks)
            spmm_tile(row, out, s, d, ldd, N, 0, R, nb * t / nt, nb * (t + 1) / nt, alpha,
                      beta, bias, row_act, act_alpha);
        else
            spmm_tile(row, out, s, d, ldd, N, balanced_row(s, t, nt),
                      balanced_row(s, t + 1, nt), 0, nb, alpha, beta, bias, row_act,
                      act_alpha);
    }
    if (!fused)
        return dc_activation_forward(out, out, R * N, act, act_alpha);
    return DC_OK;
}

/*
 * sparse.c -- the first layer on sparse input: CSR gathers (with the transpose), and dc_spmm
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

/* ==== building CSR and its transpose ======================================================= */

static inline uint64_t load_u64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* One row of F values, uint8 (s8) or float (s32, the other pointer NULL): the number of
 * non-zeros, adding 1 to colcnt[j] (if not NULL) for each non-zero column j. A uint8
 * entry is kept when the byte is not 0; a float one when its scaled value is not 0 (NaN
 * and inf are kept, so they reach the loss and are reported as in the dense path). */
static int64_t count_row(const uint8_t *s8, const float *s32, int64_t F, float scale,
                         int32_t *colcnt)
{
    int64_t c = 0;
    for (int64_t j = 0; j < F; ++j) {
        const int nz = s8 != NULL ? s8[j] != 0 : (s32[j] * scale) != 0.0f;
        c += nz;
        if (colcnt != NULL)
            colcnt[j] += nz;
    }
    return c;
}

/* The row's n entries (n from count_row), in column order; uint8 words of background
 * are skipped 8 bytes at a time. */
static void fill_row(int32_t *idx, float *val, int64_t n, const uint8_t *s8, const float *s32,
                     int64_t F, float scale)
{
    int64_t p = 0;
    (void)n;
    for (int64_t j = 0; j < F; ++j) {
        if (s8 != NULL && (j & 7) == 0 && j + 8 <= F && load_u64(s8 + j) == 0) {
            j += 7;
            continue;
        }
        const float v = s8 != NULL ? (float)s8[j] * scale : s32[j] * scale;
        if (s8 != NULL ? s8[j] != 0 : v != 0.0f) {
            idx[p] = (int32_t)j;
            val[p] = v;
            ++p;
        }
    }
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

/* First column of part t of nt of the transpose, so that parts hold about equal numbers
 * of entries (ptr: column starts). */
static int64_t balanced_col(const int64_t *ptr, int64_t K, int64_t t, int64_t nt)
{
    if (t >= nt)
        return K;
    const int64_t target = ptr[K] * t / nt;
    int64_t lo = 0, hi = K; /* first c with ptr[c] >= target */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (ptr[mid] < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* One parallel region. Each thread counts a range of rows (and, for the transpose, keeps
 * its own count of each column); one thread turns the counts into row and column
 * starts; each thread fills its rows; then, for the transpose, each thread takes a
 * range of columns (balanced by entries) and copies their entries out of every row, in
 * row order. Splitting the transpose by columns rather than rows keeps two threads from
 * writing into the same cache lines (a column's entries are contiguous). Every output
 * position is written by one thread, the same for any thread count's ordering. */
static int csr_gather(dc_csr *out, dc_csr *out_t, int64_t capacity, const uint8_t *in8,
                      const float *in32, const int64_t *ridx, int64_t B, int64_t F,
                      float scale)
{
    if (out == NULL || B < 0 || F < 0 || F > INT32_MAX || capacity < 0 ||
        (out_t != NULL && B > INT32_MAX))
        return DC_ERR_ARG;
    out->rows = B;
    out->cols = F;
    out->nnz = 0;
    out->ptr[0] = 0;
    if (out_t != NULL) {
        out_t->rows = F;
        out_t->cols = B;
        out_t->nnz = 0;
        memset(out_t->ptr, 0, (size_t)(F + 1) * sizeof(int64_t));
    }
    if (B == 0)
        return DC_OK;
    int nt = dc_get_num_threads();
    if (B < 2 * (int64_t)nt || B * F < ((int64_t)1 << 13))
        nt = 1;
    int64_t (*count)(const uint8_t *, const float *, int64_t, float, int32_t *) = count_row;
    void (*fill)(int32_t *, float *, int64_t, const uint8_t *, const float *, int64_t,
                 float) = fill_row;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        count = dc_csr_count_avx2;
        fill = dc_csr_fill_avx2;
    }
#endif
    int32_t *cnt = NULL; /* nt x F: thread t's count of each column */
    int64_t *cur = NULL; /* F: write cursor in each column of out_t */
    if (out_t != NULL) {
        cnt = malloc((size_t)(nt * F) * sizeof(int32_t));
        cur = malloc((size_t)F * sizeof(int64_t));
        if (cnt == NULL || cur == NULL) {
            free(cnt);
            free(cur);
            return DC_ERR_NOMEM;
        }
    }
    int status = DC_OK;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
#ifdef _OPENMP
        const int t = nt > 1 ? omp_get_thread_num() : 0;
#else
        const int t = 0;
#endif
        const int64_t r0 = B * t / nt, r1 = B * (t + 1) / nt;
        int32_t *ct = cnt != NULL ? cnt + t * F : NULL;
        if (ct != NULL)
            memset(ct, 0, (size_t)F * sizeof(int32_t));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t src = ridx != NULL ? ridx[r] : r;
            out->ptr[r + 1] = count(in8 ? in8 + src * F : NULL, in32 ? in32 + src * F : NULL,
                                    F, scale, ct);
        }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        {
            for (int64_t r = 0; r < B; ++r)
                out->ptr[r + 1] += out->ptr[r];
            if (out->ptr[B] > capacity) {
                status = DC_ERR_CAPACITY;
            } else if (out_t != NULL) {
                int64_t p = 0;
                for (int64_t c = 0; c < F; ++c) {
                    out_t->ptr[c] = cur[c] = p;
                    for (int u = 0; u < nt; ++u)
                        p += cnt[u * F + c];
                }
                out_t->ptr[F] = p;
            }
        } /* (implicit barrier) */
        if (status == DC_OK) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t src = ridx != NULL ? ridx[r] : r, e0 = out->ptr[r];
                fill(out->idx + e0, out->val + e0, out->ptr[r + 1] - e0,
                     in8 ? in8 + src * F : NULL, in32 ? in32 + src * F : NULL, F, scale);
            }
        }
        if (status == DC_OK && out_t != NULL) {
#ifdef _OPENMP
#pragma omp barrier
#endif
            const int64_t c0 = balanced_col(out_t->ptr, F, t, nt);
            const int64_t c1 = balanced_col(out_t->ptr, F, t + 1, nt);
            const int64_t *rp = out->ptr;
            const int32_t *ri = out->idx;
            const float *rv = out->val;
            int32_t *ti = out_t->idx;
            float *tv = out_t->val;
            for (int64_t r = 0; r < B && c0 < c1; ++r) {
                const int64_t end = rp[r + 1];
                for (int64_t e = nt > 1 ? row_lower_bound(out, r, c0) : rp[r];
                     e < end && ri[e] < c1; ++e) {
                    const int64_t q = cur[ri[e]]++;
                    ti[q] = (int32_t)r;
                    tv[q] = rv[e];
                }
            }
        }
    }
    free(cnt);
    free(cur);
    out->nnz = out->ptr[B];
    if (out_t != NULL && status == DC_OK)
        out_t->nnz = out->nnz;
    return status;
}

int dc_csr_gather_u8(dc_csr *out, dc_csr *out_t, int64_t capacity, const uint8_t *inp,
                     const int64_t *idx, int64_t B, int64_t F, float scale)
{
    return csr_gather(out, out_t, capacity, inp, NULL, idx, B, F, scale);
}

int dc_csr_gather_f32(dc_csr *out, dc_csr *out_t, int64_t capacity, const float *inp,
                      const int64_t *idx, int64_t B, int64_t F, float scale)
{
    return csr_gather(out, out_t, capacity, NULL, inp, idx, B, F, scale);
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

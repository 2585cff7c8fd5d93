/*
 * sparse.c -- the first layer on sparse input: CSR gathers (with the transpose), and dc_spmm
 * (sparse rows times a dense matrix) with the dense layer's bias/activation epilogue.
 *
 * Plain C11; the AVX2 kernels live in sparse_avx2.c, their AVX-512F twins in
 * sparse_avx512.c, chosen by the same kernel-path switch as the GEMM (and
 * dc_avx512_active). Work is split over output columns or over rows, never
 * over a sum, so each output's bits do not depend on the thread count.
 */
#include "common.h"
#include "digitcore.h"
#include "sparse_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- building CSR and its transpose ------------------------------------------------------ */

static inline uint64_t load_u64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* One row of F values, uint8 (s8) or float (s32, the other pointer NULL): the number of
 * non-zeros, adding 1 to colcnt[j] (if not NULL) for each non-zero column j. A uint8
 * entry is kept when the byte is not 0; a float one when its scaled value is not 0, or,
 * with a background bg (float only; NULL: zeros), not bg[j] (NaN and inf are kept, so
 * they reach the loss and are reported as in the dense path). */
static int64_t count_row(const uint8_t *s8, const float *s32, int64_t F, float scale,
                         const float *bg, int32_t *colcnt)
{
    int64_t c = 0;
    for (int64_t j = 0; j < F; ++j) {
        const int nz = s8 != NULL ? s8[j] != 0 : (s32[j] * scale) != (bg ? bg[j] : 0.0f);
        c += nz;
        if (colcnt != NULL)
            colcnt[j] += nz;
    }
    return c;
}

/* The row's entries (n of them, from count_row), in column order, numbered from j0 (the
 * column of s8[0] / s32[0]), each its value less bg[j] when bg is not NULL; uint8 words
 * of background are skipped 8 bytes at a time. Returns how many the row has now: more
 * than n when another thread wrote to it since it was counted, and then only n are
 * written (the caller reports DC_ERR_CHANGED for any count other than n). */
static int64_t fill_row(int32_t *idx, float *val, int64_t n, const uint8_t *s8,
                        const float *s32, int64_t F, int64_t j0, float scale, const float *bg)
{
    int64_t p = 0;
    for (int64_t j = 0; j < F; ++j) {
        if (s8 != NULL && (j & 7) == 0 && j + 8 <= F && load_u64(s8 + j) == 0) {
            j += 7;
            continue;
        }
        const float v = s8 != NULL ? (float)s8[j] * scale : s32[j] * scale;
        if (s8 != NULL ? s8[j] != 0 : v != (bg ? bg[j] : 0.0f)) {
            if (p < n) {
                idx[p] = (int32_t)(j0 + j);
                val[p] = bg ? v - bg[j] : v;
            }
            ++p;
        }
    }
    return p;
}

typedef int64_t (*count_fn)(const uint8_t *, const float *, int64_t, float, const float *,
                            int32_t *);
typedef int64_t (*fill_fn)(int32_t *, float *, int64_t, const uint8_t *, const float *, int64_t,
                           int64_t, float, const float *);

/* The row kernels of the selected path. */
static void row_kernels(count_fn *count, fill_fn *fill)
{
    *count = count_row;
    *fill = fill_row;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        *count = dc_csr_count_avx2;
        *fill = dc_csr_fill_avx2;
    }
#endif
}

int64_t dc_csr_count_rows(const uint8_t *in8, const float *in32, int64_t B, int64_t F,
                          float scale)
{
    count_fn count;
    fill_fn fill;
    row_kernels(&count, &fill);
    int64_t n = 0;
    for (int64_t r = 0; r < B; ++r)
        n += count(in8 ? in8 + r * F : NULL, in32 ? in32 + r * F : NULL, F, scale, NULL, NULL);
    return n;
}

void dc_csr_fill_rows(dc_csr *out, const uint8_t *in8, const float *in32, int64_t B, int64_t F,
                      float scale)
{
    count_fn count;
    fill_fn fill;
    row_kernels(&count, &fill);
    out->parts = 1;
    out->rows = B;
    out->cols = F;
    out->ptr[0] = 0;
    int64_t p = 0;
    for (int64_t r = 0; r < B; ++r) {
        p += fill(out->idx + p, out->val + p, B * F - p, in8 ? in8 + r * F : NULL,
                  in32 ? in32 + r * F : NULL, F, 0, scale, NULL);
        out->ptr[r + 1] = p;
    }
    out->nnz = p;
}

/* Without the transpose: the batch's rows split among threads, one part. Each thread
 * counts its rows, one thread makes the row starts, each thread fills its rows. */
static int gather_rows(dc_csr *out, int64_t capacity, const uint8_t *in8, const float *in32,
                       const int64_t *ridx, int64_t B, int64_t F, float scale, const float *bg,
                       int nt)
{
    count_fn count;
    fill_fn fill;
    row_kernels(&count, &fill);
    (void)nt; /* (without OpenMP) */
    out->parts = 1;
    int status = DC_OK, changed = 0;
    dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const int t = dc_team_thread(), got = dc_team_size();
        const int64_t r0 = B * t / got, r1 = B * (t + 1) / got;
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t src = ridx != NULL ? ridx[r] : r;
            out->ptr[r + 1] = count(in8 ? in8 + src * F : NULL, in32 ? in32 + src * F : NULL, F,
                                    scale, bg, NULL);
        }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        {
            for (int64_t r = 0; r < B; ++r)
                out->ptr[r + 1] += out->ptr[r];
            if (out->ptr[B] > capacity)
                status = DC_ERR_CAPACITY;
        } /* (implicit barrier) */
        /* a row written to since it was counted (see fill_row) */
        int bad = 0;
        if (status == DC_OK)
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t src = ridx != NULL ? ridx[r] : r, e0 = out->ptr[r];
                const int64_t m = out->ptr[r + 1] - e0;
                bad |= fill(out->idx + e0, out->val + e0, m, in8 ? in8 + src * F : NULL,
                            in32 ? in32 + src * F : NULL, F, 0, scale, bg) != m;
            }
        if (bad) {
#ifdef _OPENMP
#pragma omp critical(dc_gather_changed) /* (MSVC's OpenMP 2.0 has no atomic write) */
#endif
            changed = 1;
        }
    }
    out->nnz = out->ptr[B];
    return status == DC_OK && changed ? DC_ERR_CHANGED : status;
}

/* While gather_cols counts a row's entries, the row this many ahead is asked into cache
 * (the part of it the thread reads): a batch's rows lie scattered over a data set far
 * larger than the caches, and the whole next batch that dc_mlp_train asks for while this
 * one trains is partly pushed out again by the training's own data. On MNIST at batch 128
 * on two threads the counting's share of the profile halved; an epoch of 784-128-10 ran
 * 1-4% faster in each of four alternating comparisons. */
#define GATHER_AHEAD 6

static void prefetch_part(const uint8_t *in8, const float *in32, int64_t row, int64_t F,
                          int64_t c0, int64_t c1)
{
    if (in8 != NULL)
        dc_prefetch_bytes(in8 + row * F + c0, c1 - c0);
    else
        dc_prefetch_bytes(in32 + row * F + c0, (c1 - c0) * (int64_t)sizeof(float));
}

/* With the transpose: out in out->parts parts, part (group) p holding every row's
 * entries in the columns [col_edges[p], col_edges[p + 1]), and the CSC in one part. Each
 * thread takes a run of groups: it counts their columns of every row (per row into the
 * part's row starts, per column into colcnt); after one barrier it places each group's
 * entries after those of the groups before it, makes the row and column starts, and
 * fills the group's columns of every row, copying each entry at once into the group's
 * columns of the CSC (an out_t without idx and val gets only its column starts). So each
 * thread writes only its own stretch of out and out_t (cache lines are shared only at
 * the edges), and the result does not depend on the thread count. */
static int gather_cols(dc_csr *out, dc_csr *out_t, int64_t capacity, dc_csr_room_fn room,
                       void *room_ctx, const uint8_t *in8, const float *in32,
                       const int64_t *ridx, int64_t B, int64_t F, float scale, const float *bg,
                       int nt)
{
    count_fn count;
    fill_fn fill;
    row_kernels(&count, &fill);
    const int64_t P = out->parts;
    const int64_t whole[2] = {0, F};
    const int64_t *edge = out->col_edges != NULL ? out->col_edges : whole;
    int32_t *colcnt = calloc((size_t)F, sizeof(int32_t));
    int64_t *cur = malloc((size_t)F * sizeof(int64_t));  /* write cursor of each column */
    int64_t *total = calloc((size_t)P, sizeof(int64_t)); /* entries of each group */
    if (colcnt == NULL || cur == NULL || total == NULL) {
        free(colcnt);
        free(cur);
        free(total);
        return DC_ERR_NOMEM;
    }
    int64_t nnz = 0, cap = capacity;
    int room_st = DC_OK, changed = 0;
    (void)nt; /* (without OpenMP) */
    dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const int t = dc_team_thread();
        int64_t p0, p1;
        dc_csr_thread_groups(t, dc_team_size(), P, &p0, &p1);
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t c0 = edge[p], c1 = edge[p + 1];
            int64_t *rp = out->ptr + p * (B + 1); /* part p's row starts */
            int64_t n = 0;
            for (int64_t r = 0; r < B; ++r) {
                const int64_t src = ridx != NULL ? ridx[r] : r;
                if (r + GATHER_AHEAD < B)
                    prefetch_part(in8, in32,
                                  ridx != NULL ? ridx[r + GATHER_AHEAD] : r + GATHER_AHEAD, F,
                                  c0, c1);
                rp[r + 1] =
                    count(in8 ? in8 + src * F + c0 : NULL, in32 ? in32 + src * F + c0 : NULL,
                          c1 - c0, scale, bg ? bg + c0 : NULL, colcnt + c0);
                n += rp[r + 1];
            }
            total[p] = n;
        }
#ifdef _OPENMP
#pragma omp barrier
#endif
        int64_t before = 0, all = 0;
        for (int64_t p = 0; p < P; ++p) {
            before += p < p0 ? total[p] : 0;
            all += total[p];
        }
        if (t == 0)
            nnz = all;
        if (all > capacity && room != NULL) { /* (alike on every thread) */
#ifdef _OPENMP
#pragma omp single
#endif
            {
                room_st = room(room_ctx, out, all);
                if (room_st == DC_OK)
                    cap = all;
            } /* (implicit barrier) */
        }
        for (int64_t p = p0; p < p1 && all <= cap; ++p) {
            const int64_t c0 = edge[p], c1 = edge[p + 1];
            int64_t *rp = out->ptr + p * (B + 1);
            rp[0] = before;
            for (int64_t r = 0; r < B; ++r)
                rp[r + 1] += rp[r];
            before = rp[B];
            int64_t q = rp[0];
            for (int64_t c = c0; c < c1; ++c) {
                out_t->ptr[c] = cur[c] = q;
                q += colcnt[c];
            }
            if (p == P - 1)
                out_t->ptr[F] = q;
            int32_t *ti = out_t->idx;
            float *tv = out_t->val;
            /* The rows are read a second time: a row another thread wrote to since the
             * count fills only its counted room, and the CSC takes no entry past the
             * group's stretch [rp[0], rp[B]); a column whose entries differ from its
             * count shows at the end (DC_ERR_CHANGED; nothing is written out of bounds). */
            const int64_t gend = rp[B];
            int bad = 0;
            for (int64_t r = 0; r < B; ++r) {
                const int64_t src = ridx != NULL ? ridx[r] : r, e0 = rp[r];
                const int64_t m = rp[r + 1] - e0;
                const int32_t *ri = out->idx + e0;
                const float *rv = out->val + e0;
                const int64_t got = fill(
                    out->idx + e0, out->val + e0, m, in8 ? in8 + src * F + c0 : NULL,
                    in32 ? in32 + src * F + c0 : NULL, c1 - c0, c0, scale, bg ? bg + c0 : NULL);
                bad |= got != m;
                /* (fewer than counted: the entries past them were not written). Without
                 * the CSC's entries (out_t's column starts only: the kept form, whose
                 * column counts come from the count) the columns are still checked. */
                const int64_t written = got < m ? got : m;
                for (int64_t e = 0; e < written; ++e) {
                    const int64_t k = cur[ri[e]]++;
                    if (ti != NULL && k < gend) {
                        ti[k] = (int32_t)r;
                        tv[k] = rv[e];
                    }
                }
            }
            /* each column filled to its count, or it changed (written past its count, into
             * the columns after it, or short of it) */
            for (int64_t c = c0; c + 1 < c1 && !bad; ++c)
                bad = cur[c] != out_t->ptr[c + 1];
            bad |= c1 > c0 && cur[c1 - 1] != gend;
            if (bad) {
#ifdef _OPENMP
#pragma omp critical(dc_gather_changed)
#endif
                changed = 1;
            }
        }
    }
    free(colcnt);
    free(cur);
    free(total);
    out->nnz = nnz;
    if (room_st != DC_OK)
        return room_st;
    if (nnz > cap)
        return DC_ERR_CAPACITY;
    out_t->nnz = nnz;
    return changed ? DC_ERR_CHANGED : DC_OK;
}

/* out->parts and out->col_edges describe 1..4096 parts of columns [0, F). */
static int edges_ok(const dc_csr *out, int64_t F)
{
    const int64_t P = out->parts, *e = out->col_edges;
    if (P < 1 || P > 4096 || (e == NULL && P > 1))
        return 0;
    if (e == NULL)
        return 1;
    for (int64_t p = 0; p < P; ++p)
        if (e[p] > e[p + 1])
            return 0;
    return e[0] == 0 && e[P] == F;
}

static int csr_gather(dc_csr *out, dc_csr *out_t, int64_t capacity, dc_csr_room_fn room,
                      void *room_ctx, const uint8_t *in8, const float *in32,
                      const int64_t *ridx, int64_t B, int64_t F, float scale, const float *bg)
{
    if (out == NULL || B < 0 || F < 0 || F > INT32_MAX || capacity < 0 ||
        (out_t != NULL &&
         (B > INT32_MAX || !edges_ok(out, F) || (out_t->idx == NULL) != (out_t->val == NULL))))
        return DC_ERR_ARG;
    int nt = dc_get_num_threads();
    out->rows = B;
    out->cols = F;
    out->nnz = 0;
    if (out_t == NULL) {
        out->ptr[0] = 0;
        if (B == 0)
            return DC_OK;
        if (B < 2 * (int64_t)nt || B * F < ((int64_t)1 << 13))
            nt = 1;
        return gather_rows(out, capacity, in8, in32, ridx, B, F, scale, bg, nt);
    }
    out_t->rows = F;
    out_t->cols = B;
    out_t->nnz = 0;
    out_t->parts = 1;
    if (B == 0 || F == 0) {
        memset(out->ptr, 0, (size_t)(out->parts * (B + 1)) * sizeof(int64_t));
        memset(out_t->ptr, 0, (size_t)(F + 1) * sizeof(int64_t));
        return DC_OK;
    }
    nt = dc_csr_group_threads(B, F, out->parts, nt);
    return gather_cols(out, out_t, capacity, room, room_ctx, in8, in32, ridx, B, F, scale, bg,
                       nt);
}

int dc_csr_gather_u8(dc_csr *out, dc_csr *out_t, int64_t capacity, const uint8_t *inp,
                     const int64_t *idx, int64_t B, int64_t F, float scale)
{
    return csr_gather(out, out_t, capacity, NULL, NULL, inp, NULL, idx, B, F, scale, NULL);
}

int dc_csr_gather_f32(dc_csr *out, dc_csr *out_t, int64_t capacity, const float *inp,
                      const int64_t *idx, int64_t B, int64_t F, float scale)
{
    return csr_gather(out, out_t, capacity, NULL, NULL, NULL, inp, idx, B, F, scale, NULL);
}

int dc_csr_gather_f32_bg(dc_csr *out, dc_csr *out_t, int64_t capacity, const float *inp,
                         const int64_t *idx, int64_t B, int64_t F, float scale, const float *bg)
{
    return csr_gather(out, out_t, capacity, NULL, NULL, NULL, inp, idx, B, F, scale, bg);
}

int dc_csr_gather_room(dc_csr *out, dc_csr *out_t, dc_csr_room_fn room, void *room_ctx,
                       const uint8_t *in8, const float *in32, int64_t B, int64_t F, float scale)
{
    if (room == NULL || out_t == NULL || (in8 == NULL) == (in32 == NULL))
        return DC_ERR_ARG;
    return csr_gather(out, out_t, 0, room, room_ctx, in8, in32, NULL, B, F, scale, NULL);
}

/* ---- sparse times dense ------------------------------------------------------------------ */

/* acc[j] += x * dr[j]: the portable row kernel's multiply-add, shared with its sweep */
DC_INLINE void axpy_generic(float *acc, float x, const float *dr, int64_t w)
{
    for (int64_t j = 0; j < w; ++j)
        acc[j] += x * dr[j];
}

/* The portable row kernel's epilogue, shared with the sweep's */
DC_INLINE void finish_generic(float *out, const float *acc, int64_t w, float alpha, float beta,
                              const float *bias, int act, float act_alpha)
{
    for (int64_t j = 0; j < w; ++j) {
        float r = alpha * acc[j];
        if (beta != 0.0f)
            r = beta * out[j] + r;
        if (bias != NULL)
            r += bias[j];
        if (act == DC_ACT_RELU)
            r = r > 0.0f ? r : dc_relu_neg(r);
        else if (act == DC_ACT_LEAKY_RELU)
            r = r > 0.0f ? r : act_alpha * r;
        out[j] = r;
    }
}

static void spmm_row_generic(float *out, const int32_t *idx, const float *val,
                             const int64_t *ptr, int64_t pstride, int64_t parts, const float *d,
                             int64_t ldd, int64_t w, float alpha, float beta, const float *bias,
                             int act, float act_alpha)
{
    float acc[DC_SPMM_BLOCK];
    for (int64_t j = 0; j < w; ++j)
        acc[j] = 0.0f;
    for (int64_t p = 0; p < parts; ++p)
        for (int64_t e = ptr[p * pstride]; e < ptr[p * pstride + 1]; ++e)
            axpy_generic(acc, val[e], d + (int64_t)idx[e] * ldd, w);
    finish_generic(out, acc, w, alpha, beta, bias, act, act_alpha);
}

static void spmm_sweep_generic(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                               const float *val, const int64_t *ptr, const int64_t *sel,
                               int64_t rows, const float *d, int64_t ldd, int64_t w)
{
    for (int64_t r = 0; r < rows; ++r) {
        const float *dr = d + r * ldd;
        const int64_t s = sel[r];
        for (int64_t e = ptr[s]; e < ptr[s + 1]; ++e)
            axpy_generic(acc + ((int64_t)idx[e] - k0) * lda, val[e], dr, w);
    }
}

static void spmm_finish_generic(float *out, int64_t ldo, const float *acc, int64_t lda,
                                const int32_t *count, int64_t n, int64_t w, float alpha,
                                float beta)
{
    for (int64_t c = 0; c < n; ++c)
        if (count == NULL || count[c] != 0)
            finish_generic(out + c * ldo, acc + c * lda, w, alpha, beta, NULL, DC_ACT_IDENTITY,
                           0.0f);
}

/* Entries of rows [0, r), over all parts. */
static int64_t entries_before(const dc_csr *s, int64_t r)
{
    int64_t n = 0;
    for (int64_t p = 0; p < s->parts; ++p)
        n += s->ptr[p * (s->rows + 1) + r] - s->ptr[p * (s->rows + 1)];
    return n;
}

static int64_t row_entries(const dc_csr *s, int64_t r)
{
    return entries_before(s, r + 1) - entries_before(s, r);
}

/* Rows [r0, r1) of column blocks [b0, b1): blocks outer, so one block's slab of D
 * (K x 64 floats) stays in this core's L2 while every row uses it. */
static void spmm_tile(dc_spmm_row_fn row, float *out, int64_t ldo, const dc_csr *s,
                      const float *d, int64_t ldd, int64_t N, int64_t r0, int64_t r1,
                      int64_t b0, int64_t b1, float alpha, float beta, const float *bias,
                      int act, float act_alpha, int chains)
{
    const int64_t stride = s->rows + 1;
    const int skip_empty = beta == 1.0f && bias == NULL && act == DC_ACT_IDENTITY;
    (void)chains; /* (without the AVX2 path) */
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t j0 = b * DC_SPMM_BLOCK, w = dc_min64(DC_SPMM_BLOCK, N - j0);
        for (int64_t r = r0; r < r1; ++r) {
            if (skip_empty && row_entries(s, r) == 0)
                continue; /* alpha * 0 + out == out */
#if DC_GEMM_BUILD_AVX2
            if (chains && row != spmm_row_generic && w <= 16 && s->parts == 1) {
                dc_spmm_row2_avx2(out + r * ldo + j0, s->idx, s->val, s->ptr[r], s->ptr[r + 1],
                                  d + j0, ldd, w, alpha, beta, bias ? bias + j0 : NULL, act,
                                  act_alpha);
                continue;
            }
#endif
            row(out + r * ldo + j0, s->idx, s->val, s->ptr + r, stride, s->parts, d + j0, ldd,
                w, alpha, beta, bias ? bias + j0 : NULL, act, act_alpha);
        }
    }
}

/* First row of thread t's share of nt, so that shares hold about equal numbers of
 * entries. */
static int64_t balanced_row(const dc_csr *s, int64_t t, int64_t nt)
{
    const int64_t R = s->rows, nnz = entries_before(s, R);
    if (t >= nt)
        return R;
    if (nnz == 0)
        return R * t / nt;
    const int64_t target = nnz * t / nt;
    int64_t lo = 0, hi = R; /* first r with entries_before(r) >= target */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (entries_before(s, mid) < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int dc_spmm(float *out, const dc_csr *s, const float *d, int64_t ldd, int64_t N, float alpha,
            float beta, const float *bias, int act, float act_alpha)
{
    return dc_spmm_ld(out, N, s, d, ldd, N, alpha, beta, bias, act, act_alpha);
}

static int spmm_ld(float *out, int64_t ldo, const dc_csr *s, const float *d, int64_t ldd,
                   int64_t N, float alpha, float beta, const float *bias, int act,
                   float act_alpha, int chains)
{
    if (s == NULL || s->rows < 0 || s->cols < 0 || s->parts < 1 || N < 0 || ldd < N || ldo < N)
        return DC_ERR_ARG;
    if (act < DC_ACT_IDENTITY || act > DC_ACT_TANH)
        return DC_ERR_ARG;
    const int64_t R = s->rows;
    if (R == 0 || N == 0)
        return DC_OK;
    const int fused = dc_spmm_fuses(act);
    if (!fused && ldo != N)
        return DC_ERR_ARG; /* (no caller needs it) */
    const int row_act = fused ? act : DC_ACT_IDENTITY;
    dc_spmm_row_fn row = spmm_row_generic;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2)
        row = dc_spmm_row_avx2;
#endif
#if DC_GEMM_BUILD_AVX512
    /* 16-column vectors where every row of D starts a 64-byte line (layer 0's blocks of 64
     * columns, the gradient of a layer of 16k outputs): an unaligned 64-byte load straddles
     * two lines almost always, and rows of 30 floats (784-30-10 at batch 10) ran 4% slower
     * than with the 8-column kernel. Same bits either way. */
    if (row == dc_spmm_row_avx2 && dc_avx512_active() && ldd % 16 == 0 &&
        ((uintptr_t)(const void *)d & 63) == 0)
        row = dc_spmm_row_avx512;
#endif
    const int64_t nb = (N + DC_SPMM_BLOCK - 1) / DC_SPMM_BLOCK;
    int nt = dc_get_num_threads();
    if (entries_before(s, R) * N < DC_SPMM_PARALLEL_MIN)
        nt = 1;
    /* Column blocks split evenly: each thread keeps its own slab of D. Otherwise rows,
     * balanced by entries. */
    const int by_blocks = nb >= nt && nb % nt == 0;
    if (nt == 1) { /* no region at all: even an if(0) one costs ~0.5 us */
        spmm_tile(row, out, ldo, s, d, ldd, N, 0, R, 0, nb, alpha, beta, bias, row_act,
                  act_alpha, chains);
    } else {
        dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
        for (int t = 0; t < nt; ++t) {
            if (by_blocks)
                spmm_tile(row, out, ldo, s, d, ldd, N, 0, R, nb * t / nt, nb * (t + 1) / nt,
                          alpha, beta, bias, row_act, act_alpha, chains);
            else
                spmm_tile(row, out, ldo, s, d, ldd, N, balanced_row(s, t, nt),
                          balanced_row(s, t + 1, nt), 0, nb, alpha, beta, bias, row_act,
                          act_alpha, chains);
        }
    }
    if (!fused)
        return dc_activation_forward(out, out, R * N, act, act_alpha);
    return DC_OK;
}

int dc_spmm_ld(float *out, int64_t ldo, const dc_csr *s, const float *d, int64_t ldd, int64_t N,
               float alpha, float beta, const float *bias, int act, float act_alpha)
{
    return spmm_ld(out, ldo, s, d, ldd, N, alpha, beta, bias, act, act_alpha, 0);
}

int dc_spmm_ld_chains(float *out, int64_t ldo, const dc_csr *s, const float *d, int64_t ldd,
                      int64_t N, float alpha, float beta, const float *bias, int act,
                      float act_alpha)
{
    return spmm_ld(out, ldo, s, d, ldd, N, alpha, beta, bias, act, act_alpha, 1);
}

/* ---- rows picked from a kept matrix (full-batch training, csrc/mlp_keep.c) -------------- */

int dc_spmm_t_sel(float *out, int64_t ldo, const dc_csr *s, int64_t k0, int64_t k1,
                  const int32_t *count, const int64_t *sel, int64_t rows, const float *d,
                  int64_t ldd, int64_t N, float alpha, float beta, float *acc)
{
    if (s == NULL || s->parts != 1 || k0 < 0 || k1 < k0 || rows < 0 || N < 0 ||
        N > DC_SPMM_BLOCK || ldd < N || ldo < N || count == NULL || acc == NULL)
        return DC_ERR_ARG;
    if (k1 == k0 || N == 0)
        return DC_OK;
    dc_spmm_sweep_fn sweep = spmm_sweep_generic;
    dc_spmm_finish_fn finish = spmm_finish_generic;
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        sweep = dc_spmm_sweep_avx2;
        finish = dc_spmm_finish_avx2;
    }
#endif
    const int64_t lda = dc_spmm_acc_width(N);
#if DC_GEMM_BUILD_AVX512
    /* 16-column vectors where acc's rows are whole ones and start 64-byte lines (layer 0's
     * blocks of 64 columns; 10 columns in rows of 16): half the loads and stores of acc,
     * which bound the sweep. Same bits. */
    if (sweep == dc_spmm_sweep_avx2 && dc_avx512_active() && lda % 16 == 0 &&
        ((uintptr_t)(void *)acc & 63) == 0)
        sweep = dc_spmm_sweep_avx512;
#endif
    memset(acc, 0, (size_t)((k1 - k0) * lda) * sizeof(float));
    sweep(acc, lda, k0, s->idx, s->val, s->ptr, sel, rows, d, ldd, N);
    /* dc_spmm's rule: with beta == 1 (no bias, identity) an empty row keeps its value */
    finish(out, ldo, acc, lda, beta == 1.0f ? count : NULL, k1 - k0, N, alpha, beta);
    return DC_OK;
}

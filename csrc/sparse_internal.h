/*
 * sparse_internal.h -- private contract between sparse.c (driver, portable code),
 * sparse_avx2.c (the AVX2+FMA kernels) and sparse_avx512.c (their AVX-512F twins).
 */
#ifndef DC_SPARSE_INTERNAL_H
#define DC_SPARSE_INTERNAL_H

#include <stdint.h>

#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

/* Output columns one row-kernel call covers: 8 ymm accumulators. */
#define DC_SPMM_BLOCK        64
/* Below this many multiply-adds (nnz * N) a second thread costs more than it gains. */
#define DC_SPMM_PARALLEL_MIN ((int64_t)1 << 17)

/* One row of one column block: for j in [0, w), w <= DC_SPMM_BLOCK,
 *   out[j] = act(alpha * sum_e val[e] * d[idx[e] * ldd + j] + beta * out[j] + bias[j])
 * over the row's entries e in [ptr[p * pstride], ptr[p * pstride + 1]) for each part p
 * in 0..parts-1 (see dc_csr), the sum taken in that order; beta == 0 ignores out's old value;
 * bias may be NULL; act is DC_ACT_IDENTITY, DC_ACT_RELU or DC_ACT_LEAKY_RELU (slope act_alpha).
 * Measured on Zen 4, one entry of a 64-column block costs ~7 cycles when D is in L1 and
 * ~11 from L2: load-bound, as every multiply-add needs its own element of D. Blocking K
 * to keep D in L1 cost more in bookkeeping than it saved (tried). */
typedef void (*dc_spmm_row_fn)(float *out, const int32_t *idx, const float *val,
                               const int64_t *ptr, int64_t pstride, int64_t parts,
                               const float *d, int64_t ldd, int64_t w, float alpha, float beta,
                               const float *bias, int act, float act_alpha);

/* Whether the row kernel applies act itself (else dc_spmm applies it after the product). */
static inline int dc_spmm_fuses(int act)
{
    return act == DC_ACT_IDENTITY || act == DC_ACT_RELU || act == DC_ACT_LEAKY_RELU;
}

/* How a CSR gather with the transpose shares out a batch of B rows of F columns cut into
 * `parts` column groups: on how many of nt threads it runs (whole groups each; one for
 * small batches) ... */
static inline int dc_csr_group_threads(int64_t B, int64_t F, int64_t parts, int nt)
{
    if (nt > parts)
        nt = (int)parts;
    return B * F < ((int64_t)1 << 13) ? 1 : nt;
}

/* ... and the run of groups [*p0, *p1) thread t of nt takes. */
static inline void dc_csr_thread_groups(int t, int nt, int64_t parts, int64_t *p0, int64_t *p1)
{
    *p0 = parts * t / nt;
    *p1 = parts * (t + 1) / nt;
}

/* The entries a CSR gather (dc_csr_gather_u8 / _f32) would keep of B rows of F values,
 * uint8 in8 or float in32 (scaled by scale), the other NULL; on this thread. */
int64_t dc_csr_count_rows(const uint8_t *in8, const float *in32, int64_t B, int64_t F,
                          float scale);
/* The CSR gather of B rows without counting them first (one part, no transpose): out's
 * idx/val must have room for B * F entries. On this thread. */
void dc_csr_fill_rows(dc_csr *out, const uint8_t *in8, const float *in32, int64_t B, int64_t F,
                      float scale);

/* dc_spmm (digitcore.h) on a block of columns of a wider matrix: out's rows are ldo >= N
 * floats apart. With ldo > N, act must be one the row kernel applies itself (identity,
 * ReLU, leaky ReLU), else DC_ERR_ARG. */
int dc_spmm_ld(float *out, int64_t ldo, const dc_csr *s, const float *d, int64_t ldd, int64_t N,
               float alpha, float beta, const float *bias, int act, float act_alpha);

/* dc_spmm_ld on a one-part CSR with, on the AVX2 path and for N <= 16, each row's entries
 * summed in two chains (even and odd entries, added at the end; dc_spmm_row2_avx2): a
 * narrow row's single chain of dependent FMAs is its bound. Other bits than dc_spmm_ld's
 * there (the portable path's are the same); full-batch descent's forward takes it
 * (mlp_layer0.c), mini-batches keep dc_spmm_ld's bits. With N <= 16 and ldd >= 16 each of
 * D's rows is read to 16 floats (whole vectors; lanes past N are never stored). */
int dc_spmm_ld_chains(float *out, int64_t ldo, const dc_csr *s, const float *d, int64_t ldd,
                      int64_t N, float alpha, float beta, const float *bias, int act,
                      float act_alpha);

/* The transposed product without the transpose. With S = rows sel[0..rows) of s (one
 * part, its entries in columns [k0, k1)) and D (rows, N), N <= DC_SPMM_BLOCK:
 *   out (k1 - k0, N) = alpha * S^T . D + beta * out      (ldo >= N; beta == 0 overwrites)
 * equal bit for bit to dc_spmm_ld on the CSC of S (as the transposing gather builds it:
 * each of its rows lists S's rows in increasing order): S's rows are swept in order, each
 * entry adding val * D's row into an accumulator row of its column with the row kernel's
 * arithmetic, so every sum takes its terms in the same order, and the row kernel's
 * epilogue follows. count[c] (c in [0, k1 - k0)) is the number of S's entries in column
 * k0 + c: with beta == 1, outputs of empty columns are left untouched, as dc_spmm leaves
 * empty rows. acc: scratch of (k1 - k0) * dc_spmm_acc_width(N) floats. On this thread. */
int dc_spmm_t_sel(float *out, int64_t ldo, const dc_csr *s, int64_t k0, int64_t k1,
                  const int32_t *count, const int64_t *sel, int64_t rows, const float *d,
                  int64_t ldd, int64_t N, float alpha, float beta, float *acc);
/* N rounded up to whole vectors of 8 floats: one accumulator row of dc_spmm_t_sel. */
static inline int64_t dc_spmm_acc_width(int64_t N)
{
    return (N + 7) & ~(int64_t)7;
}

/* The sweep of dc_spmm_t_sel: for r = 0..rows-1, for each entry e of row sel[r]
 * ([ptr[sel[r]], ptr[sel[r] + 1])),
 *   acc[(idx[e] - k0) * lda + j] += val[e] * d[r * ldd + j]      for j in [0, w)
 * with the row kernel's multiply-add (lda = dc_spmm_acc_width(w); columns [w, lda) of acc
 * are scratch). Then its epilogue: for c in [0, n) with count == NULL or count[c] != 0,
 *   out[c * ldo + j] = alpha * acc[c * lda + j] + beta * out[c * ldo + j]  (beta 0: not read)
 */
/* The sweeps' look-ahead at row r of rows: the kept rows they visit lie scattered over
 * the kept matrix, so the row starts of row r + 2 * DC_SWEEP_AHEAD and the entries of row
 * r + DC_SWEEP_AHEAD are asked into L1. */
#define DC_SWEEP_AHEAD 6
DC_INLINE void dc_sweep_prefetch(const int32_t *idx, const float *val, const int64_t *ptr,
                                 const int64_t *sel, int64_t r, int64_t rows)
{
    if (r + 2 * DC_SWEEP_AHEAD < rows)
        DC_PREFETCH_L1(ptr + sel[r + 2 * DC_SWEEP_AHEAD]);
    if (r + DC_SWEEP_AHEAD < rows) {
        const int64_t *p = ptr + sel[r + DC_SWEEP_AHEAD];
        for (int64_t e = p[0]; e < p[1]; e += 16) {
            DC_PREFETCH_L1(idx + e);
            DC_PREFETCH_L1(val + e);
        }
    }
}
typedef void (*dc_spmm_sweep_fn)(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                                 const float *val, const int64_t *ptr, const int64_t *sel,
                                 int64_t rows, const float *d, int64_t ldd, int64_t w);
typedef void (*dc_spmm_finish_fn)(float *out, int64_t ldo, const float *acc, int64_t lda,
                                  const int32_t *count, int64_t n, int64_t w, float alpha,
                                  float beta);

#if DC_GEMM_BUILD_AVX2
void dc_spmm_sweep_avx2(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                        const float *val, const int64_t *ptr, const int64_t *sel, int64_t rows,
                        const float *d, int64_t ldd, int64_t w);
/* Row entries [e0, e1) times a block of w <= 16 columns, out[0..w) as dc_spmm_row_avx2
 * computes it but with the even and the odd entries summed apart and then added (other
 * bits, two chains of FMAs per vector: see dc_spmm_ld_chains). With ldd >= 16 each of D's
 * rows is read to 16 floats. */
void dc_spmm_row2_avx2(float *out, const int32_t *idx, const float *val, int64_t e0, int64_t e1,
                       const float *d, int64_t ldd, int64_t w, float alpha, float beta,
                       const float *bias, int act, float act_alpha);
void dc_spmm_finish_avx2(float *out, int64_t ldo, const float *acc, int64_t lda,
                         const int32_t *count, int64_t n, int64_t w, float alpha, float beta);
void dc_spmm_row_avx2(float *out, const int32_t *idx, const float *val, const int64_t *ptr,
                      int64_t pstride, int64_t parts, const float *d, int64_t ldd, int64_t w,
                      float alpha, float beta, const float *bias, int act, float act_alpha);
/* One row of F values, u8 (s8) or float (s32; the other pointer is NULL), as in
 * csr_gather: the number of its non-zeros (u8: byte != 0; float: x * scale != bg[j], bg
 * NULL meaning 0, NaN kept), with colcnt[j] += 1 for each non-zero column j when colcnt
 * is not NULL. */
int64_t dc_csr_count_avx2(const uint8_t *s8, const float *s32, int64_t F, float scale,
                          const float *bg, int32_t *colcnt);
/* Its non-zero entries: idx[p] = j0 + column, val[p] = value * scale (less bg[j] when bg
 * is not NULL), in column order; returns how many the row has. Writes idx/val[0..n)
 * only: n is the row's count, or any room at least that (entries past the row's then
 * hold junk); a row with more entries than n (written to by another thread since it was
 * counted) fills its n and returns its count (csr_gather: DC_ERR_CHANGED). */
int64_t dc_csr_fill_avx2(int32_t *idx, float *val, int64_t n, const uint8_t *s8,
                         const float *s32, int64_t F, int64_t j0, float scale, const float *bg);
#endif

#if DC_GEMM_BUILD_AVX512
/* dc_spmm_row_avx2's contract and bits, 16 columns per vector (sparse_avx512.c) */
void dc_spmm_row_avx512(float *out, const int32_t *idx, const float *val, const int64_t *ptr,
                        int64_t pstride, int64_t parts, const float *d, int64_t ldd, int64_t w,
                        float alpha, float beta, const float *bias, int act, float act_alpha);
/* dc_spmm_sweep_avx2's contract and bits, 16 columns per vector, for lda % 16 == 0 */
void dc_spmm_sweep_avx512(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                          const float *val, const int64_t *ptr, const int64_t *sel,
                          int64_t rows, const float *d, int64_t ldd, int64_t w);
#endif

/* dc_csr_gather_f32 off a background: keeps the entries whose scaled value x * scale is
 * not bg[j] (bg: F floats, NaN kept), each as x * scale - bg[j]. So the batch is
 * 1 . bg^T + S with S the result (mlp_layer0.c, the first layer off a background). */
int dc_csr_gather_f32_bg(dc_csr *out, dc_csr *out_t, int64_t capacity, const float *inp,
                         const int64_t *idx, int64_t B, int64_t F, float scale,
                         const float *bg);

/* Makes room in s's idx and val for nnz entries (DC_OK), or refuses (any other status). */
typedef int (*dc_csr_room_fn)(void *ctx, dc_csr *s, int64_t nnz);
/* The transposing gather (out_t not NULL) of every row of in8 or in32 (the other NULL)
 * into entries sized exactly, counted once: room(room_ctx, out, nnz) makes room for them
 * between the count and the fill (not called when there are none). For full-batch
 * descent's kept form (mlp_keep.c). Returns room's refusal, with out->nnz set. */
int dc_csr_gather_room(dc_csr *out, dc_csr *out_t, dc_csr_room_fn room, void *room_ctx,
                       const uint8_t *in8, const float *in32, int64_t B, int64_t F,
                       float scale);

#endif /* DC_SPARSE_INTERNAL_H */

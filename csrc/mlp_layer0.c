/*
 * mlp_layer0.c -- layer 0 of a network, whatever its input: dense rows (the GEMM), or a
 * sparse batch (dc_spmm skips the zero pixels).
 *
 * For a training call on which the sparse path is allowed, layer 0's weight (and the
 * optimizer's state for it) is held transposed, (I, O): then the forward product is the
 * sparse batch times weight^T and the weight gradient is batch^T (a CSC view) times dout,
 * both products of a sparse matrix's rows with a dense matrix. Batches too dense for the
 * sparse buffer (more than a quarter non-zero) take the GEMM on the same layout.
 *
 * The (I, O) copy is cut by output columns into blocks of DC_SPMM_BLOCK (the last one may
 * be narrower), and block b, columns [c0, c0 + w), is stored as its own (I, w) matrix at
 * offset I * c0 (to_blocks). Blocks side by side in the rows of one (I, O) matrix ran ~35%
 * slower on two threads than each alone (the cores' prefetchers pulling in each other's
 * lines). Layer 0's gradient in `grads` has the same layout.
 *
 * The input columns are cut into DC_SPARSE_GROUPS groups at net->sparse_split (Trainer
 * puts it where the data's non-zeros are halved): the gather builds the batch's CSR in
 * one part per group, and the sparse products run per (group, block) pair. With two
 * threads, thread t gathers group t and runs its pairs, writing only its own stretch of
 * the CSR, the CSC and each block's weight rows; only the groups' forward partial sums
 * and layer 0's output gradient cross between the cores (~10% of a two-thread epoch
 * against splitting by blocks alone). The groups are fixed, so the sums' order, and the
 * bits, do not depend on the thread count. The steps per block (the forward's sum, bias
 * and activation; the backward of layer 1 on these columns) go to the thread that owns
 * the block in every phase (mlp_phases.c).
 *
 * Float input may be sparse off a background c instead of off zero (net->sparse_offset:
 * standardized inputs, each column mostly its zero pixel's value): a batch is then
 * 1 . c^T + S, gathered as S (the entries x != c_j, as x - c_j), and the products add the
 * background's share, b + W . c in the forward (background_bias) and c . db^T in the
 * weight gradient (background_grad), both in a fixed order per block or pair.
 */
#include "chunks.h"
#include "mlp_internal.h"

#include <stdlib.h>

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#define MLP_SSE_TRANSPOSE 1
#else
#define MLP_SSE_TRANSPOSE 0
#endif

/* ---- the input, dense or sparse -------------------------------------------------------- */

int mlp_sparse_allowed(const dc_mlp *net, float shift, int64_t rows)
{
    return net->sparse_input != DC_SPARSE_NEVER && shift == 0.0f &&
           net->sizes[0] <= INT32_MAX && rows <= INT32_MAX;
}

int64_t mlp_sparse_capacity(const dc_mlp *net, int64_t rows)
{
    const int64_t n = rows * net->sizes[0];
    return net->sparse_input == DC_SPARSE_ALWAYS ? n : n / 4 + 1;
}

int mlp_load_rows(float *dst, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                  int64_t rows, int64_t features, float scale, float shift)
{
    if (x_u8 != NULL)
        return dc_gather_u8(dst, x_u8, idx, rows, features, scale, shift);
    return dc_gather_f32(dst, x_f32, idx, rows, features, scale, shift);
}

int mlp_gather_csr(dc_csr *x, dc_csr *xt, int64_t capacity, const uint8_t *x_u8,
                   const float *x_f32, const int64_t *idx, int64_t rows, int64_t features,
                   float scale)
{
    if (x_u8 != NULL)
        return dc_csr_gather_u8(x, xt, capacity, x_u8, idx, rows, features, scale);
    return dc_csr_gather_f32(x, xt, capacity, x_f32, idx, rows, features, scale);
}

int csr_alloc(dc_csr *s, int64_t ptr_n, int64_t cap)
{
    s->ptr = malloc((size_t)ptr_n * sizeof(int64_t));
    s->idx = malloc((size_t)cap * sizeof(int32_t));
    s->val = malloc((size_t)cap * sizeof(float));
    return s->ptr && s->idx && s->val ? DC_OK : DC_ERR_NOMEM;
}

void csr_free(dc_csr *s)
{
    free(s->ptr);
    free(s->idx);
    free(s->val);
}

/* dst (cols, rows) with row stride ldd = src (rows, cols) with row stride lds, transposed,
 * in tiles that stay in L1; on x86 (SSE2 is baseline) by 4 x 4 register transposes. A
 * copy: no arithmetic, the same bits on every path. */
static void transpose_ld(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                         int64_t cols)
{
    const int64_t T = 32;
    for (int64_t i0 = 0; i0 < rows; i0 += T)
        for (int64_t j0 = 0; j0 < cols; j0 += T) {
            const int64_t i1 = i0 + T < rows ? i0 + T : rows;
            const int64_t j1 = j0 + T < cols ? j0 + T : cols;
            int64_t i = i0;
#if MLP_SSE_TRANSPOSE
            for (; i + 4 <= i1; i += 4) {
                int64_t j = j0;
                for (; j + 4 <= j1; j += 4) {
                    __m128 r0 = _mm_loadu_ps(src + i * lds + j);
                    __m128 r1 = _mm_loadu_ps(src + (i + 1) * lds + j);
                    __m128 r2 = _mm_loadu_ps(src + (i + 2) * lds + j);
                    __m128 r3 = _mm_loadu_ps(src + (i + 3) * lds + j);
                    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                    _mm_storeu_ps(dst + j * ldd + i, r0);
                    _mm_storeu_ps(dst + (j + 1) * ldd + i, r1);
                    _mm_storeu_ps(dst + (j + 2) * ldd + i, r2);
                    _mm_storeu_ps(dst + (j + 3) * ldd + i, r3);
                }
                for (; j < j1; ++j)
                    for (int64_t k = i; k < i + 4; ++k)
                        dst[j * ldd + k] = src[k * lds + j];
            }
#endif
            for (; i < i1; ++i)
                for (int64_t j = j0; j < j1; ++j)
                    dst[j * ldd + i] = src[i * lds + j];
        }
}

/* Strips of this many source rows are transposed in parallel. Training transposes layer
 * 0's weight and Adam's two state arrays in and out at every call (a few per second), and
 * single-threaded scalar transposes of 784 x 800 took ~6% of an augmented epoch. */
#define TRANSPOSE_STRIP ((int64_t)64)

void mlp_transpose(float *dst, const float *src, int64_t rows, int64_t cols)
{
    const int64_t ns = rows * cols >= CHUNK_CHEAP ? n_chunks(rows, TRANSPOSE_STRIP) : 1;
    DC_FOR_CHUNKS(c, ns, {
        const int64_t i0 = c * (ns > 1 ? TRANSPOSE_STRIP : rows);
        const int64_t n = dc_min64(rows - i0, ns > 1 ? TRANSPOSE_STRIP : rows);
        transpose_ld(dst + i0, rows, src + i0 * cols, cols, n, cols);
    });
}

/* ---- the weight by column blocks --------------------------------------------------------- */

/* Width of the column block starting at c0 of o columns. */
static int64_t block_width(int64_t o, int64_t c0)
{
    return o - c0 < DC_SPMM_BLOCK ? o - c0 : DC_SPMM_BLOCK;
}

static int64_t n_blocks(const layer0 *l0)
{
    return dc_cdiv64(l0->net->sizes[1], DC_SPMM_BLOCK);
}

/* (O, I) w into (I, O) by column blocks: block b's (I, cw) matrix at blocked + I * c0 is
 * the transpose of rows [c0, c0 + cw) of w. The blocks in parallel. */
static void to_blocks(float *blocked, const float *w, int64_t o, int64_t in)
{
    const int64_t nb = dc_cdiv64(o, DC_SPMM_BLOCK);
    DC_FOR_CHUNKS(b, nb, {
        const int64_t c0 = b * DC_SPMM_BLOCK, cw = block_width(o, c0);
        transpose_ld(blocked + in * c0, cw, w + c0 * in, in, cw, in);
    });
}

/* The way back: blocked (I, O) into (O, I) w. */
static void from_blocks(float *w, const float *blocked, int64_t o, int64_t in)
{
    const int64_t nb = dc_cdiv64(o, DC_SPMM_BLOCK);
    DC_FOR_CHUNKS(b, nb, {
        const int64_t c0 = b * DC_SPMM_BLOCK, cw = block_width(o, c0);
        transpose_ld(w + c0 * in, in, blocked + in * c0, cw, in, cw);
    });
}

/* ---- one call's layer 0 ------------------------------------------------------------------ */

/* A layer 0 of at most this many outputs keeps a copy of its weight with rows of this many
 * floats for full batches (head_pair). */
#define PAD_W ((int64_t)16)

static int open_blocked(layer0 *l0, const dc_mlp *net, const dc_optim *opt, int64_t bs)
{
    const int64_t in = net->sizes[0], o = net->sizes[1];
    const size_t wbytes = (size_t)(in * o) * sizeof(float);
    l0->capacity = mlp_sparse_capacity(net, bs);
    l0->wt = dc_alloc_aligned(wbytes);
    l0->grad_avg_t = opt->grad_avg ? dc_alloc_aligned(wbytes) : NULL;
    l0->sq_avg_t = opt->sq_avg ? dc_alloc_aligned(wbytes) : NULL;
    l0->padw = o <= PAD_W && l0->n_x <= bs
                   ? dc_alloc_aligned((size_t)(in * PAD_W) * sizeof(float))
                   : NULL;
    if (!l0->wt || (opt->grad_avg && !l0->grad_avg_t) || (opt->sq_avg && !l0->sq_avg_t) ||
        (o <= PAD_W && l0->n_x <= bs && !l0->padw))
        return DC_ERR_NOMEM;
    /* the batch in one part per group of input columns (see dc_csr_gather_u8) */
    l0->partial_floats = line_floats(bs * o);
    l0->partial =
        dc_alloc_aligned((size_t)((DC_SPARSE_GROUPS - 1) * l0->partial_floats) * sizeof(float));
    if (!l0->partial)
        return DC_ERR_NOMEM;
    l0->edges[0] = 0;
    l0->edges[1] = net->sparse_split > 0 ? net->sparse_split : (in / 2) & ~(int64_t)31;
    l0->edges[2] = in;
    l0->x.parts = DC_SPARSE_GROUPS;
    l0->x.col_edges = l0->edges;
    l0->xt.parts = 1;
    l0->xt.col_edges = NULL;
    /* layer 0's weight is the first segment of params and of each state array */
    to_blocks(l0->wt, net->params, o, in);
    if (l0->grad_avg_t)
        to_blocks(l0->grad_avg_t, opt->grad_avg, o, in);
    if (l0->sq_avg_t)
        to_blocks(l0->sq_avg_t, opt->sq_avg, o, in);
    l0->blocked = 1;
    return DC_OK;
}

int layer0_open(layer0 *l0, const dc_mlp *net, const dc_optim *opt, int64_t bs, float shift,
                int64_t n_x, dc_mlp_keep *keep)
{
    *l0 = (layer0){.net = net, .bs = bs, .n_x = n_x, .keep = keep};
    /* plain SGD: layer 0's weight gradient goes straight into the weight, as the GEMM's
     * alpha = -lr, beta = 1 (no gradient buffer written, read and swept again) */
    l0->fused_sgd = opt->kind == DC_OPT_SGD && opt->momentum == 0.0f && opt->l2 == 0.0f &&
                    opt->l1 == 0.0f && opt->clip_norm <= 0.0f;
    if (!mlp_sparse_allowed(net, shift, bs))
        return DC_OK;
    return open_blocked(l0, net, opt, bs);
}

void layer0_close(layer0 *l0, const dc_optim *opt)
{
    if (l0->blocked) {
        const int64_t in = l0->net->sizes[0], o = l0->net->sizes[1];
        from_blocks(l0->net->params, l0->wt, o, in);
        if (l0->grad_avg_t)
            from_blocks(opt->grad_avg, l0->grad_avg_t, o, in);
        if (l0->sq_avg_t)
            from_blocks(opt->sq_avg, l0->sq_avg_t, o, in);
    }
    dc_free_aligned(l0->wt);
    dc_free_aligned(l0->grad_avg_t);
    dc_free_aligned(l0->sq_avg_t);
    dc_free_aligned(l0->partial);
    dc_free_aligned(l0->padw);
    csr_free(&l0->x);
    csr_free(&l0->xt);
    if (l0->keep == NULL)
        dc_free_aligned(l0->dense);
    *l0 = (layer0){0};
}

int layer0_load(layer0 *l0, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                int64_t rows, float scale, float shift)
{
    const int64_t f = l0->net->sizes[0];
    l0->is_sparse = 0;
    l0->kept = NULL;
    l0->sel = NULL;
    l0->in_order = 0;
    l0->bg = NULL;
    const float *bg = x_f32 != NULL ? l0->net->sparse_offset : NULL;
    int use = MLP_KEEP_EMPTY;
    if (l0->blocked && l0->keep != NULL && bg == NULL && idx != NULL && rows == l0->n_x) {
        /* every row of x: from the kept form if idx is a permutation */
        dc_mlp_keep *k = l0->keep;
        int st = mlp_keep_lookup(k, &use, l0->net, l0->edges, x_u8, x_f32, idx, rows, scale);
        if (st == DC_OK && use == MLP_KEEP_SPARSE) {
            const int64_t o = l0->net->sizes[1];
            /* in x's own order (Trainer's full batches), group 0's product goes straight
             * into the layer's output, as a gathered batch's does */
            int64_t r = 0;
            while (r < rows && idx[r] == r)
                ++r;
            l0->in_order = r == rows;
            l0->acc = mlp_keep_scratch(k, MLP_KEEP_ACC, f * dc_spmm_acc_width(o));
            l0->out0 = l0->in_order ? NULL : mlp_keep_scratch(k, MLP_KEEP_OUT0, rows * o);
            if (l0->acc == NULL || (l0->out0 == NULL && !l0->in_order))
                return DC_ERR_NOMEM;
            l0->kept = &k->csr;
            l0->kept_count = k->count;
            l0->sel = idx;
            l0->is_sparse = 1;
            return DC_OK;
        }
        if (st != DC_OK)
            return st;
    }
    if (l0->blocked && use != MLP_KEEP_DENSE) {
        /* the density limit of this batch's own rows: a short batch must not take the
         * sparse path only because it shares a call with full ones (its path, so its
         * bits, would depend on how the batches are cut into calls) */
        const int64_t cap = dc_min64(l0->capacity, mlp_sparse_capacity(l0->net, rows));
        if (l0->x.ptr == NULL &&
            (csr_alloc(&l0->x, DC_SPARSE_GROUPS * (l0->bs + 1), l0->capacity) != DC_OK ||
             csr_alloc(&l0->xt, f + 1, l0->capacity) != DC_OK))
            return DC_ERR_NOMEM;
        const int st =
            bg != NULL
                ? dc_csr_gather_f32_bg(&l0->x, &l0->xt, cap, x_f32, idx, rows, f, scale, bg)
                : mlp_gather_csr(&l0->x, &l0->xt, cap, x_u8, x_f32, idx, rows, f, scale);
        if (st == DC_OK) {
            l0->is_sparse = 1;
            l0->bg = bg;
            return DC_OK;
        }
        if (st != DC_ERR_CAPACITY)
            return st;
    }
    if (l0->dense == NULL) {
        /* a full batch (there is a keep) reuses the last call's rows: freshly allocated,
         * each step's 188 MB of MNIST-sized rows were fresh pages */
        l0->dense = l0->keep != NULL ? mlp_keep_scratch(l0->keep, MLP_KEEP_ROWS, l0->bs * f)
                                     : dc_alloc_aligned((size_t)(l0->bs * f) * sizeof(float));
        if (l0->dense == NULL)
            return DC_ERR_NOMEM;
    }
    return mlp_load_rows(l0->dense, x_u8, x_f32, idx, rows, f, scale, shift);
}

mlp_segment layer0_weight(const layer0 *l0, float *grads, const dc_optim *opt)
{
    if (l0->blocked)
        return (mlp_segment){.p = l0->fused_sgd ? NULL : l0->wt,
                             .g = grads,
                             .grad_avg = l0->grad_avg_t,
                             .sq_avg = l0->sq_avg_t};
    return (mlp_segment){.p = l0->fused_sgd ? NULL : l0->net->params,
                         .g = grads,
                         .grad_avg = opt->grad_avg,
                         .sq_avg = opt->sq_avg};
}

/* Where layer 0's weight gradient goes (in the blocked (I, O) layout, or the dense path's
 * (O, I)), as dst = alpha * grad + beta * dst: with the fused plain-SGD step straight into
 * the weight (-lr, 1), else into grads (1, 0). */
static float *grad_dst(const layer0 *l0, float *grads, float lr, float *alpha, float *beta)
{
    *alpha = l0->fused_sgd ? -lr : 1.0f;
    *beta = l0->fused_sgd ? 1.0f : 0.0f;
    return l0->fused_sgd ? (l0->blocked ? l0->wt : l0->net->params) : grads;
}

/* ---- the sparse batch's units of work (run by mlp_run_phases) ---------------------------- */

/* The sparse batch's entries (a permutation of the kept rows has all of theirs). */
static int64_t batch_nnz(const layer0 *l0)
{
    return l0->kept != NULL ? l0->kept->nnz : l0->x.nnz;
}

typedef struct {
    const layer0 *l0;
    int64_t rows;
    int act;                 /* forward: layer 0's activation */
    float *out;              /* forward: layer 0's output (rows, o0) */
    const layer0_grad *grad; /* backward */
    int sliced;              /* one column block: its per-row steps cut into row slices */
} block_job;

/* With a single column block (at most 64 outputs: the tutorial's 784-10-10) the per-block
 * steps would leave every thread but one idle; they are then cut into DC_SPARSE_GROUPS
 * fixed slices, unit (g, 0) taking slice g: of the rows for the steps that go row by row,
 * of the outputs for the sums over all rows (the gradients of the weights and biases,
 * each output summing its own terms in its own order). So the bits are the same. Slice g
 * of n items: [n * g / G, n * (g + 1) / G). */
static int64_t slice_row(int64_t rows, int64_t g)
{
    return rows * g / DC_SPARSE_GROUPS;
}

/* Group g's share of a CSR batch (its part) or of a CSC one (its rows), as a matrix of
 * its own. */
static dc_csr group_view(const dc_csr *s, const int64_t *edges, int64_t g, int transposed)
{
    dc_csr v = *s;
    v.parts = 1;
    v.col_edges = NULL;
    if (transposed) {
        const int64_t r0 = edges[g];
        v.rows = edges[g + 1] - r0;
        v.ptr = s->ptr + r0;
    } else {
        v.ptr = s->ptr + g * (s->rows + 1);
    }
    v.nnz = v.ptr[v.rows] - v.ptr[0];
    return v;
}

/* Forward, first phase: group g's share of block b of layer 0's output (the batch's
 * part g times rows of the block's (I, w) weight), into out for group 0 and into group
 * g's partial-sum buffer otherwise. */
static int head_pair(const void *job, int64_t g, int64_t b)
{
    const block_job *a = job;
    const layer0 *l0 = a->l0;
    const int64_t in0 = l0->net->sizes[0], o0 = l0->net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    /* (from the kept rows: in x's row order, into out0 for group 0 unless the batch is
     * in that order too) */
    const int from_keep = l0->kept != NULL;
    float *dst = g > 0                        ? l0->partial + (g - 1) * l0->partial_floats
                 : from_keep && !l0->in_order ? l0->out0
                                              : a->out;
    const dc_csr v = group_view(from_keep ? l0->kept : &l0->x, l0->edges, g, 0);
    if (a->rows == l0->n_x) {
        /* A full batch (every row of x, kept or gathered): a narrow row's entries in two
         * chains (dc_spmm_ld_chains). A narrow weight's rows w floats apart are read
         * through masks, one in three across two cache lines: its group-g rows are copied
         * into rows of 16 floats and read whole (the same bits). */
        const float *wb = l0->wt + in0 * c0;
        int64_t ld = w;
        if (l0->padw != NULL) {
            for (int64_t k = l0->edges[g]; k < l0->edges[g + 1]; ++k)
                for (int64_t j = 0; j < PAD_W; ++j)
                    l0->padw[k * PAD_W + j] = j < w ? wb[k * w + j] : 0.0f;
            wb = l0->padw;
            ld = PAD_W;
        }
        return dc_spmm_ld_chains(dst + c0, o0, &v, wb, ld, w, 1.0f, 0.0f, NULL, DC_ACT_IDENTITY,
                                 0.0f);
    }
    return dc_spmm_ld(dst + c0, o0, &v, l0->wt + in0 * c0, w, w, 1.0f, 0.0f, NULL,
                      DC_ACT_IDENTITY, 0.0f);
}

/* Off a background c (l0->bg), a batch is X = 1 . c^T + S and its product is
 * X . W^T + b = S . W^T + (b + W . c): block b's columns [c0, c0 + w) of b + W . c into
 * dst, from the block's (I, w) weight, the inputs in order (fixed, so the same bits on any
 * thread; a sliced block works it out in each slice, alike). O(I * w) per block and
 * batch, against the products' O(rows * nnz per row * w). */
static void background_bias(float *dst, const layer0 *l0, const float *bias, int64_t c0,
                            int64_t w)
{
    const int64_t in0 = l0->net->sizes[0];
    const float *wt = l0->wt + in0 * c0;
    float acc[DC_SPMM_BLOCK];
    for (int64_t k = 0; k < w; ++k)
        acc[k] = 0.0f;
    for (int64_t i = 0; i < in0; ++i) {
        const float ci = l0->bg[i];
        if (ci == 0.0f)
            continue;
        for (int64_t k = 0; k < w; ++k)
            acc[k] += ci * wt[i * w + k];
    }
    for (int64_t k = 0; k < w; ++k)
        dst[k] = bias[k] + acc[k];
}

/* Rows [r0, r1) of block b's columns of layer 0's output: the groups' sum, in group
 * order (group 0's product is in the output, or in out0 for kept rows in another order;
 * with `partials`, the other groups' are in their partial-sum buffers; without, the
 * products summed themselves), plus bias, through the activation (ReLU and leaky ReLU
 * inline: a kernel call per row of 64 columns costs more than the loop). */
static int head_rows(const block_job *a, int64_t b, int64_t r0, int64_t r1, int partials)
{
    const layer0 *l0 = a->l0;
    const int64_t in0 = l0->net->sizes[0], o0 = l0->net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const float *bias = l0->net->params + o0 * in0 + c0;
    const float slope = l0->net->act_alpha;
    float bias_bg[DC_SPMM_BLOCK];
    if (l0->bg != NULL) {
        background_bias(bias_bg, l0, bias, c0, w);
        bias = bias_bg;
    }
    /* the kept rows in another order than the batch's: group 0's product is in out0 */
    const int scattered = l0->kept != NULL && !l0->in_order;
    const int64_t groups = partials ? DC_SPARSE_GROUPS : 1;
    for (int64_t r = r0; r < r1; ++r) {
        float *y = a->out + r * o0 + c0;
        /* the products' row of batch row r: r, or from the kept rows idx[r] */
        const int64_t s = scattered ? l0->sel[r] : r;
        if (scattered && r + 8 < a->rows) {
            const int64_t s8 = l0->sel[r + 8] * o0 + c0;
            DC_PREFETCH_L2(l0->out0 + s8);
            for (int64_t q = 1; q < groups; ++q)
                DC_PREFETCH_L2(l0->partial + (q - 1) * l0->partial_floats + s8);
        }
        if (scattered)
            for (int64_t k = 0; k < w; ++k)
                y[k] = l0->out0[s * o0 + c0 + k];
        for (int64_t q = 1; q < groups; ++q) {
            const float *p = l0->partial + (q - 1) * l0->partial_floats + s * o0 + c0;
            for (int64_t k = 0; k < w; ++k)
                y[k] += p[k];
        }
        for (int64_t k = 0; k < w; ++k)
            y[k] += bias[k];
        if (a->act == DC_ACT_RELU) {
            for (int64_t k = 0; k < w; ++k)
                y[k] = y[k] > 0.0f ? y[k] : dc_relu_neg(y[k]);
        } else if (a->act == DC_ACT_LEAKY_RELU) {
            for (int64_t k = 0; k < w; ++k)
                y[k] = y[k] > 0.0f ? y[k] : slope * y[k];
        } else if (a->act != DC_ACT_IDENTITY) {
            const int st = dc_activation_forward(y, y, w, a->act, slope);
            if (st != DC_OK)
                return st;
        }
    }
    return DC_OK;
}

/* Forward, second phase: block b's columns of layer 0's output, rows slice g (or all). */
static int head_block(const void *job, int64_t g, int64_t b)
{
    const block_job *a = job;
    const int64_t r0 = g < 0 ? 0 : slice_row(a->rows, g);
    const int64_t r1 = g < 0 ? a->rows : slice_row(a->rows, g + 1);
    return head_rows(a, b, r0, r1, 1);
}

/* Rows a whole block's forward (head_whole) or tail (tail_rows, g < 0) takes at a time:
 * what one step writes is still in cache for the next (a full batch's 60,000 rows x 64
 * columns are 15 MB). */
#define BLOCK_ROWS 256

/* Forward of a full batch in its own row order, one phase of whole blocks: block b of
 * layer 0's output, BLOCK_ROWS rows at a time, each group's product added by the product
 * itself to the groups' before it (out = old + acc: the sum head_block takes from the
 * partial-sum buffers, so the same bits), then bias and activation (head_rows). No
 * partial sums written and read back, and no second phase. */
static int head_whole(const void *job, int64_t g, int64_t b)
{
    (void)g;
    const block_job *a = job;
    const layer0 *l0 = a->l0;
    const int64_t in0 = l0->net->sizes[0], o0 = l0->net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const dc_csr *src = l0->kept != NULL ? l0->kept : &l0->x;
    int st = DC_OK;
    for (int64_t r0 = 0; r0 < a->rows && st == DC_OK; r0 += BLOCK_ROWS) {
        const int64_t r1 = dc_min64(a->rows, r0 + BLOCK_ROWS);
        for (int64_t q = 0; q < DC_SPARSE_GROUPS && st == DC_OK; ++q) {
            dc_csr v = group_view(src, l0->edges, q, 0);
            v.ptr += r0;
            v.rows = r1 - r0;
            v.nnz = v.ptr[v.rows] - v.ptr[0];
            st = dc_spmm_ld_chains(a->out + r0 * o0 + c0, o0, &v, l0->wt + in0 * c0, w, w, 1.0f,
                                   q > 0 ? 1.0f : 0.0f, NULL, DC_ACT_IDENTITY, 0.0f);
        }
        if (st == DC_OK)
            st = head_rows(a, b, r0, r1, 0);
    }
    return st;
}

/* Layer 0's bias gradient, block b's columns [c0 + j0, c0 + j1) (j1 < 0: to the block's
 * end): the column sums of its output gradient, each column's sum its own (so any cut of
 * the columns gives the same bits). */
static int bias_block(const block_job *a, int64_t b, int64_t j0, int64_t j1)
{
    const layer0_grad *gr = a->grad;
    const dc_mlp *net = a->l0->net;
    const int64_t in0 = net->sizes[0], o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK + j0;
    const int64_t w = (j1 < 0 ? block_width(o0, b * DC_SPMM_BLOCK) : j1) - j0;
    const float *g0 = net->n_layers > 1 ? gr->dmid : gr->dout;
    return dc_bias_backward(gr->grads + o0 * in0 + c0, g0 + c0, a->rows, w, o0, 0);
}

/* Block b's tail on all rows (tail_block, g < 0, two or more layers), BLOCK_ROWS rows at a
 * time: layer 1's input gradient, the dropout and activation backward, and layer 0's bias
 * gradient summed as dc_bias_backward sums (in double, row after row: the same bits). */
static int tail_rows(const block_job *a, int64_t b)
{
    const layer0_grad *gr = a->grad;
    const dc_mlp *net = a->l0->net;
    const int64_t rows = a->rows, in0 = net->sizes[0], o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const int64_t o1 = net->sizes[2], off1 = mlp_weight_offset(net, 1);
    const float *a1 = gr->out0 + c0, *w1 = net->params + off1 + c0;
    const uint8_t *m1 = gr->mask1 != NULL ? gr->mask1 + c0 : NULL;
    float *gb = gr->dmid + c0;
    double acc[DC_SPMM_BLOCK];
    for (int64_t k = 0; k < w; ++k)
        acc[k] = 0.0;
    int st = DC_OK;
    for (int64_t q0 = 0; q0 < rows && st == DC_OK; q0 += BLOCK_ROWS) {
        const int64_t q1 = dc_min64(rows, q0 + BLOCK_ROWS);
        st = dc_sgemm(0, 0, q1 - q0, w, o1, 1.0f, gr->dout + q0 * o1, o1, w1, o0, 0.0f,
                      gb + q0 * o0, o0);
        for (int64_t r = q0; r < q1 && st == DC_OK; ++r) {
            float *y = gb + r * o0;
            const float *out = a1 + r * o0;
            if (m1 != NULL)
                st = dc_dropout_backward(y, y, m1 + r * o0, w, net->dropout);
            if (st == DC_OK)
                st = dc_activation_backward(y, y, out, w, net->act, net->act_alpha);
            for (int64_t k = 0; k < w; ++k)
                acc[k] += (double)y[k];
        }
    }
    float *db = gr->grads + o0 * in0 + c0;
    for (int64_t k = 0; k < w; ++k)
        db[k] = (float)acc[k];
    return st;
}

/* How many columns of layer 1's weight gradient, from c0 on, the block at c0 (w wide, of
 * o0) computes when the blocks share them out: its own, and also the next block's when
 * that one is the last and at most DC_GEMM_NARROW_MAX_N wide, which then computes none.
 * A product that narrow takes the narrow kernel, which sums all rows in one pass where a
 * wider one (and the whole product of one thread) sums them kc at a time: merged, every
 * thread count gives the same bits (784-200-10 at batch 1000 did not). */
static int64_t dw1_columns(int64_t o0, int64_t c0, int64_t w)
{
    if (c0 > 0 && w <= DC_GEMM_NARROW_MAX_N)
        return 0;
    const int64_t rest = o0 - (c0 + w);
    return rest > 0 && rest <= DC_GEMM_NARROW_MAX_N ? w + rest : w;
}

/* Backward, first phase (unsliced), before a thread's blocks u0 .. u1 - 1: layer 1's
 * weight gradient d^T . h1 on all of their columns in one product. Per block, each product
 * packed the same transposed d^T for itself (784-1024-1024-10 at batch 256 on 2 threads:
 * 16 times a step, 5% of an epoch); now each thread packs it once, and one thread (all
 * blocks) runs the one whole product. Every element sums its rows kc at a time in one
 * product or another, so the same bits for any thread count (see dw1_columns). */
static int tail_span(const void *job, int64_t u0, int64_t u1)
{
    const block_job *a = job;
    const layer0_grad *gr = a->grad;
    const dc_mlp *net = a->l0->net;
    if (a->sliced || net->n_layers == 1)
        return DC_OK;
    const int64_t o0 = net->sizes[1], o1 = net->sizes[2], off1 = mlp_weight_offset(net, 1);
    const int64_t c_lo = u0 * DC_SPMM_BLOCK;
    int64_t n = 0;
    for (int64_t b = u0; b < u1; ++b)
        n += dw1_columns(o0, b * DC_SPMM_BLOCK, block_width(o0, b * DC_SPMM_BLOCK));
    if (n == 0)
        return DC_OK;
    return dc_sgemm(1, 0, o1, n, a->rows, 1.0f, gr->dout, o1, gr->inp1 + c_lo, o0, 0.0f,
                    gr->grads + off1 + c_lo, o0);
}

/* Backward, first phase, block b's columns of layer 0's outputs: layer 1's input and
 * weight gradients there, the dropout and activation backward (two or more layers), and
 * layer 0's bias gradient. The thread that takes block b ran its forward sum, so these
 * columns of the activation are in its cache. Sliced (g >= 0, one block): rows slice g of
 * the input gradient and the dropout and activation backward, and slice g of the columns
 * of layer 1's weight gradient and of its bias gradient (sums over all rows, whose
 * elements each take their own terms in their own order, whichever of the GEMM's columns
 * are asked for); layer 0's bias gradient waits for every slice (dw_pair). */
static int tail_block(const void *job, int64_t g, int64_t b)
{
    const block_job *a = job;
    const layer0_grad *gr = a->grad;
    const dc_mlp *net = a->l0->net;
    const int64_t rows = a->rows, o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    if (net->n_layers == 1)
        return g < 0 ? bias_block(a, b, 0, -1) : DC_OK;
    const int64_t o1 = net->sizes[2], off1 = mlp_weight_offset(net, 1);
    const float *d = gr->dout, *h1 = gr->inp1 + c0;
    float *dw1 = gr->grads + off1 + c0;
    int st = DC_OK;
    if (g < 0) /* layer 1's weight gradient was taken by tail_span */
        return tail_rows(a, b);
    /* sliced: the one block (w == o0), rows slice g */
    const int64_t r0 = slice_row(rows, g), r1 = slice_row(rows, g + 1);
    float *gb = gr->dmid;
    st = dc_sgemm(0, 0, r1 - r0, w, o1, 1.0f, d + r0 * o1, o1, net->params + off1, o0, 0.0f,
                  gb + r0 * o0, o0);
    /* by columns: the narrow GEMM's transposed tile takes all of its rows at once and its
     * columns in chunks (cut by rows, each half cost the whole) */
    const int64_t j0 = slice_row(w, g), j1 = slice_row(w, g + 1);
    if (st == DC_OK && j1 > j0)
        st = dc_sgemm(1, 0, o1, j1 - j0, rows, 1.0f, d, o1, h1 + j0, o0, 0.0f, dw1 + j0, o0);
    /* layer 1's bias gradient, these columns (before the phases when not sliced) */
    const int64_t q0 = slice_row(o1, g), q1 = slice_row(o1, g + 1);
    if (st == DC_OK && q1 > q0)
        st = dc_bias_backward(gr->grads + off1 + o1 * o0 + q0, d + q0, rows, q1 - q0, o1, 0);
    /* the rows are contiguous: one call each (elementwise, same bits) */
    const int64_t n = (r1 - r0) * o0, e0 = r0 * o0;
    if (st == DC_OK && gr->mask1 != NULL)
        st = dc_dropout_backward(gb + e0, gb + e0, gr->mask1 + e0, n, net->dropout);
    if (st == DC_OK)
        st = dc_activation_backward(gb + e0, gb + e0, gr->out0 + e0, n, net->act,
                                    net->act_alpha);
    return st;
}

/* Off a background c, the weight gradient dout^T . X is dout^T . S + db c^T, db the bias
 * gradient (dout's column sums): rows [i0, i1) of a block's (I, w) gradient (or of the
 * weight, the fused SGD step) get alpha * c_i * db after the product. db is summed here,
 * as bias_block sums it (the same kernel), so no unit waits for another. */
static int background_grad(float *dst, const layer0 *l0, const float *g0, int64_t rows,
                           int64_t ld, int64_t i0, int64_t i1, int64_t w, float alpha)
{
    float db[DC_SPMM_BLOCK];
    const int st = dc_bias_backward(db, g0, rows, w, ld, 0);
    if (st != DC_OK)
        return st;
    for (int64_t i = i0; i < i1; ++i) {
        const float ci = l0->bg[i];
        if (ci == 0.0f)
            continue;
        float *row = dst + i * w;
        for (int64_t k = 0; k < w; ++k)
            row[k] += alpha * (ci * db[k]);
    }
    return DC_OK;
}

/* Backward, second phase: group g's rows of block b's weight gradient (or the fused SGD
 * step on them), the product of the batch's CSC rows of group g with these columns of
 * layer 0's output gradient. */
static int dw_pair(const void *job, int64_t g, int64_t b)
{
    const block_job *a = job;
    const layer0 *l0 = a->l0;
    const layer0_grad *gr = a->grad;
    const int64_t in0 = l0->net->sizes[0], o0 = l0->net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const int64_t r0 = l0->edges[g];
    const float *g0 = l0->net->n_layers > 1 ? gr->dmid : gr->dout;
    float alpha, beta;
    float *dst = grad_dst(l0, gr->grads, gr->lr, &alpha, &beta);
    if (a->sliced) { /* slice g of its columns (after every slice of the tail) */
        const int64_t w0 = slice_row(w, g), w1 = slice_row(w, g + 1);
        const int st = w1 > w0 ? bias_block(a, b, w0, w1) : DC_OK;
        if (st != DC_OK)
            return st;
    }
    if (l0->kept != NULL) { /* the kept rows swept in batch order: the CSC's sums */
        const dc_csr v = group_view(l0->kept, l0->edges, g, 0);
        const int64_t r1 = l0->edges[g + 1];
        return dc_spmm_t_sel(dst + in0 * c0 + r0 * w, w, &v, r0, r1, l0->kept_count + r0,
                             l0->sel, a->rows, g0 + c0, o0, w, alpha, beta,
                             l0->acc + in0 * c0 + r0 * dc_spmm_acc_width(w));
    }
    const dc_csr v = group_view(&l0->xt, l0->edges, g, 1);
    int st = dc_spmm_ld(dst + in0 * c0 + r0 * w, w, &v, g0 + c0, o0, w, alpha, beta, NULL,
                        DC_ACT_IDENTITY, 0.0f);
    if (st == DC_OK && l0->bg != NULL)
        st = background_grad(dst + in0 * c0, l0, g0 + c0, a->rows, o0, r0, l0->edges[g + 1], w,
                             alpha);
    return st;
}

/* ---- forward and backward ---------------------------------------------------------------- */

int layer0_forward(layer0 *l0, float *out, int64_t rows, int act)
{
    const dc_mlp *net = l0->net;
    const int64_t in = net->sizes[0], o = net->sizes[1];
    const float *w = net->params, *bias = net->params + o * in;
    if (l0->is_sparse) {
        const int64_t nb = n_blocks(l0), work = batch_nnz(l0) * o;
        const int sliced = nb < DC_SPARSE_GROUPS;
        const block_job job = {
            .l0 = l0, .rows = rows, .act = act, .out = out, .sliced = sliced};
        /* (by whole blocks only where they keep every thread busy: with more threads
         * than blocks, the pairs share the work out further) */
        if (rows == l0->n_x && !sliced && (l0->kept == NULL || l0->in_order) &&
            mlp_phase_threads(nb, work) <= nb)
            return mlp_run_phases(&job, nb, work, (mlp_phase){head_whole, 0, NULL},
                                  (mlp_phase){NULL, 0, NULL});
        return mlp_run_phases(&job, nb, work, (mlp_phase){head_pair, 1, NULL},
                              (mlp_phase){head_block, sliced, NULL});
    }
    if (!l0->blocked)
        return dc_dense_forward(out, l0->dense, w, bias, rows, in, o, act, net->act_alpha);
    int status = DC_OK;
    for (int64_t c0 = 0; c0 < o && status == DC_OK; c0 += DC_SPMM_BLOCK) {
        const int64_t cw = block_width(o, c0);
        status = dc_sgemm(0, 0, rows, cw, in, 1.0f, l0->dense, in, l0->wt + in * c0, cw, 0.0f,
                          out + c0, o);
    }
    if (status == DC_OK)
        status = dc_bias_act(out, bias, rows, o, act, net->act_alpha);
    return status;
}

int64_t layer0_backward_top(const layer0 *l0)
{
    return l0->is_sparse && l0->net->n_layers > 1 ? 2 : 1;
}

int layer0_backward(layer0 *l0, const layer0_grad *g)
{
    const dc_mlp *net = l0->net;
    const int64_t in = net->sizes[0], o = net->sizes[1], rows = g->rows;
    if (l0->is_sparse) {
        const int64_t nb = n_blocks(l0), work = batch_nnz(l0) * o;
        const int sliced = nb < DC_SPARSE_GROUPS;
        block_job job = {.l0 = l0, .rows = rows, .grad = g, .sliced = sliced};
        if (net->n_layers > 1 && !sliced) {
            /* layer 1's bias gradient (the column sums of its dout); its weight gradient
             * in tail_span, the rest per block (sliced: all in tail_block) */
            const int64_t o1 = net->sizes[2], off1 = mlp_weight_offset(net, 1);
            const int st = dc_bias_backward(g->grads + off1 + o1 * o, g->dout, rows, o1, o1, 0);
            if (st != DC_OK)
                return st;
        }
        return mlp_run_phases(&job, nb, work, (mlp_phase){tail_block, sliced, tail_span},
                              (mlp_phase){dw_pair, 1, NULL});
    }
    float alpha, beta;
    float *dst = grad_dst(l0, g->grads, g->lr, &alpha, &beta);
    if (!l0->blocked) {
        /* dW (O, I) = dout^T . input into grads, or with the fused step W -= lr * that; the
         * bias's gradient into grads */
        const int st =
            dc_sgemm(1, 0, o, in, rows, alpha, g->dout, o, l0->dense, in, beta, dst, in);
        return st == DC_OK ? dc_bias_backward(g->grads + o * in, g->dout, rows, o, o, 0) : st;
    }
    int status = DC_OK;
    for (int64_t c0 = 0; c0 < o && status == DC_OK; c0 += DC_SPMM_BLOCK) {
        const int64_t cw = block_width(o, c0);
        status = dc_sgemm(1, 0, in, cw, rows, alpha, l0->dense, in, g->dout + c0, o, beta,
                          dst + in * c0, cw);
    }
    if (status == DC_OK)
        status = dc_bias_backward(g->grads + o * in, g->dout, rows, o, o, 0);
    return status;
}

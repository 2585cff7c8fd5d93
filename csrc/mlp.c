/*
 * mlp.c -- a whole fully connected network in C: training over many mini-batches and
 * inference, so Python is not re-entered between layers or batches.
 *
 * Built only from the public kernels (dense, activation, dropout, softmax+xent,
 * optimizer updates): this file owns the order of operations and the scratch memory,
 * nothing numerical of its own.
 */
#include "digitcore.h"
#include "sparse_internal.h" /* DC_SPMM_BLOCK, DC_SPMM_PARALLEL_MIN, dc_spmm_ld, DC_PREFETCH_L2,
                                * dc_alloc_aligned */

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows of inference done at once: large enough to keep the GEMM efficient, small enough
 * that scratch stays in the low megabytes whatever n is. */
#define DC_MLP_CHUNK 1024

int64_t dc_mlp_n_params(int64_t n_layers, const int64_t *sizes)
{
    int64_t total = 0;
    for (int64_t l = 0; l < n_layers; ++l)
        total += sizes[l + 1] * sizes[l] + sizes[l + 1];
    return total;
}

/* Offset of layer l's weight in the flat parameter array; its bias follows it. */
static int64_t weight_offset(const dc_mlp *net, int64_t l)
{
    return dc_mlp_n_params(l, net->sizes);
}

static int64_t max_width(const dc_mlp *net)
{
    int64_t w = 0;
    for (int64_t l = 0; l <= net->n_layers; ++l)
        if (net->sizes[l] > w)
            w = net->sizes[l];
    return w;
}

/* n floats rounded up to whole cache lines: the next buffer carved after them starts on
 * a line of its own. */
static int64_t line_floats(int64_t n)
{
    const int64_t per = DC_ALIGN / (int64_t)sizeof(float);
    return (n + per - 1) / per * per;
}

/* Ask for rows idx[0..rows) of x (row_bytes each) to be brought into cache. Training
 * gathers random rows of a dataset far larger than the caches; prefetching the next
 * batch while this one computes hides that latency (~8% of an MNIST epoch). */
static void prefetch_rows(const void *x, const int64_t *idx, int64_t rows, int64_t row_bytes)
{
    const char *base = (const char *)x;
    for (int64_t r = 0; r < rows; ++r) {
        const char *row = base + idx[r] * row_bytes;
        for (int64_t off = 0; off < row_bytes; off += 64)
            DC_PREFETCH_L2(row + off);
    }
}

static void transpose(float *dst, const float *src, int64_t rows, int64_t cols);

static int load_rows(float *dst, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                     int64_t rows, int64_t features, float scale, float shift)
{
    if (x_u8 != NULL)
        return dc_gather_u8(dst, x_u8, idx, rows, features, scale, shift);
    return dc_gather_f32(dst, x_f32, idx, rows, features, scale, shift);
}

/* The sparse twin of load_rows: rows idx (NULL: the first `rows`) of x as CSR, and as
 * CSC in xt if xt is not NULL (see dc_csr_gather_u8). */
static int gather_csr(dc_csr *x, dc_csr *xt, int64_t capacity, const uint8_t *x_u8,
                      const float *x_f32, const int64_t *idx, int64_t rows, int64_t features,
                      float scale)
{
    if (x_u8 != NULL)
        return dc_csr_gather_u8(x, xt, capacity, x_u8, idx, rows, features, scale);
    return dc_csr_gather_f32(x, xt, capacity, x_f32, idx, rows, features, scale);
}

/* Whether batches of up to `rows` rows may take the first layer on sparse input: a zero
 * pixel must stay zero after conversion (no shift), and indices must fit int32. */
static int sparse_allowed(const dc_mlp *net, float shift, int64_t rows)
{
    return net->sparse_input != DC_SPARSE_NEVER && shift == 0.0f &&
           net->sizes[0] <= INT32_MAX && rows <= INT32_MAX;
}

/* Entries a CSR buffer for `rows` rows holds: a quarter of the inputs (a denser batch
 * takes the dense path, and the buffer stays smaller than the dense one), or all of them
 * when the sparse path is forced. */
static int64_t sparse_capacity(const dc_mlp *net, int64_t rows)
{
    const int64_t n = rows * net->sizes[0];
    return net->sparse_input == DC_SPARSE_ALWAYS ? n : n / 4 + 1;
}

/* Forward `rows` rows of layer l0's input `inp` through layers l0.. with no dropout;
 * the logits end up in whichever of buf_a/buf_b the returned pointer names (inp itself
 * when l0 is past the last layer). */
static int forward_plain(float **logits, const dc_mlp *net, int64_t l0, const float *inp,
                         float *buf_a, float *buf_b, int64_t rows)
{
    const float *h = inp;
    float *out = inp == buf_a ? buf_b : buf_a;
    int status = DC_OK;
    for (int64_t l = l0; l < net->n_layers; ++l) {
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const float *w = net->params + weight_offset(net, l);
        const int act = (l + 1 < net->n_layers) ? net->act : DC_ACT_IDENTITY;
        status = dc_dense_forward(out, h, w, w + o * in, rows, in, o, act, net->act_alpha);
        if (status != DC_OK)
            return status;
        h = out;
        out = (out == buf_a) ? buf_b : buf_a;
    }
    *logits = (float *)h;
    return DC_OK;
}

/* Below this many rows an inference call takes the dense path: the sparse one first
 * transposes layer 0's weight (I x O floats), which only pays over enough rows. */
#define DC_SPARSE_INFER_MIN_ROWS 256

/* Scratch for chunked inference: one chunk of converted input and two ping-pong buffers;
 * on the sparse path also layer 0's weight transposed and a CSR chunk. */
typedef struct {
    float *inp, *buf_a, *buf_b;
    float *wt;       /* (I, O), or NULL: dense path */
    dc_csr x;
    int64_t capacity, chunk;
} fwd_scratch;

/* A CSR matrix's arrays: ptr_n row starts and cap entries; the status. */
static int csr_alloc(dc_csr *s, int64_t ptr_n, int64_t cap)
{
    s->ptr = malloc((size_t)ptr_n * sizeof(int64_t));
    s->idx = malloc((size_t)cap * sizeof(int32_t));
    s->val = malloc((size_t)cap * sizeof(float));
    return s->ptr && s->idx && s->val ? DC_OK : DC_ERR_NOMEM;
}

static void csr_free(dc_csr *s)
{
    free(s->ptr);
    free(s->idx);
    free(s->val);
}

static void fwd_scratch_free(fwd_scratch *s)
{
    free(s->inp);
    dc_free_aligned(s->buf_a);
    dc_free_aligned(s->buf_b);
    dc_free_aligned(s->wt);
    csr_free(&s->x);
}

static int fwd_scratch_alloc(fwd_scratch *s, const dc_mlp *net, int64_t n, int64_t chunk,
                             float shift)
{
    const int64_t width = max_width(net), f = net->sizes[0], o = net->sizes[1];
    memset(s, 0, sizeof *s);
    s->chunk = chunk;
    s->buf_a = dc_alloc_aligned((size_t)(chunk * width) * sizeof(float));
    s->buf_b = dc_alloc_aligned((size_t)(chunk * width) * sizeof(float));
    if (!s->buf_a || !s->buf_b)
        return DC_ERR_NOMEM;
    /* The first layer on sparse input, as in training (see sparse_l0 below): a chunk
     * more than a quarter non-zero falls back to the dense path. */
    if (sparse_allowed(net, shift, chunk) &&
        (net->sparse_input == DC_SPARSE_ALWAYS || n >= DC_SPARSE_INFER_MIN_ROWS)) {
        s->capacity = sparse_capacity(net, chunk);
        s->wt = dc_alloc_aligned((size_t)(f * o) * sizeof(float));
        s->x.parts = 1;
        s->x.col_edges = NULL;
        if (!s->wt || csr_alloc(&s->x, chunk + 1, s->capacity) != DC_OK)
            return DC_ERR_NOMEM;
        transpose(s->wt, net->params, o, f);
    }
    return DC_OK; /* the dense input chunk s->inp is allocated when first needed */
}

/* Logits of rows [r0, r0 + rows) of x, no dropout; *logits points into the scratch. */
static int forward_rows(float **logits, const dc_mlp *net, fwd_scratch *s,
                        const uint8_t *x_u8, const float *x_f32, int64_t r0, int64_t rows,
                        float scale, float shift)
{
    const int64_t f = net->sizes[0];
    const uint8_t *r8 = x_u8 ? x_u8 + r0 * f : NULL;
    const float *r32 = x_f32 ? x_f32 + r0 * f : NULL;
    if (s->wt != NULL) {
        int status = gather_csr(&s->x, NULL, s->capacity, r8, r32, NULL, rows, f, scale);
        if (status == DC_OK) {
            const int64_t o = net->sizes[1];
            const int act = net->n_layers > 1 ? net->act : DC_ACT_IDENTITY;
            status = dc_spmm(s->buf_a, &s->x, s->wt, o, o, 1.0f, 0.0f, net->params + o * f,
                             act, net->act_alpha);
            if (status == DC_OK)
                status = forward_plain(logits, net, 1, s->buf_a, s->buf_a, s->buf_b, rows);
            return status;
        }
        if (status != DC_ERR_CAPACITY)
            return status;
    }
    if (s->inp == NULL &&
        (s->inp = malloc((size_t)(s->chunk * f) * sizeof(float))) == NULL)
        return DC_ERR_NOMEM;
    int status = load_rows(s->inp, r8, r32, NULL, rows, f, scale, shift);
    if (status == DC_OK)
        status = forward_plain(logits, net, 0, s->inp, s->buf_a, s->buf_b, rows);
    return status;
}

int dc_mlp_forward(float *out, const dc_mlp *net, const uint8_t *x_u8, const float *x_f32,
                   int64_t n, float scale, float shift, int softmax)
{
    const int64_t c = net->sizes[net->n_layers];
    const int64_t chunk = n < DC_MLP_CHUNK ? n : DC_MLP_CHUNK;
    fwd_scratch s;
    if (n == 0)
        return DC_OK;
    int status = fwd_scratch_alloc(&s, net, n, chunk, shift);
    for (int64_t r0 = 0; status == DC_OK && r0 < n; r0 += chunk) {
        const int64_t rows = (n - r0) < chunk ? (n - r0) : chunk;
        float *logits = NULL;
        status = forward_rows(&logits, net, &s, x_u8, x_f32, r0, rows, scale, shift);
        if (status != DC_OK)
            break;
        if (softmax)
            status = dc_softmax_forward(out + r0 * c, logits, rows, c);
        else
            memcpy(out + r0 * c, logits, (size_t)(rows * c) * sizeof(float));
    }
    fwd_scratch_free(&s);
    return status;
}

int dc_mlp_evaluate(double *loss, int64_t *n_correct, const dc_mlp *net, const uint8_t *x_u8,
                    const float *x_f32, const int64_t *labels, int64_t n, float scale,
                    float shift)
{
    const int64_t c = net->sizes[net->n_layers];
    const int64_t chunk = n < DC_MLP_CHUNK ? n : DC_MLP_CHUNK;
    double loss_sum = 0.0;
    int64_t correct = 0;
    fwd_scratch s;
    *loss = 0.0;
    if (n_correct)
        *n_correct = 0;
    if (n == 0)
        return DC_OK;
    int status = fwd_scratch_alloc(&s, net, n, chunk, shift);
    for (int64_t r0 = 0; status == DC_OK && r0 < n; r0 += chunk) {
        const int64_t rows = (n - r0) < chunk ? (n - r0) : chunk;
        float *logits = NULL;
        double batch_loss = 0.0;
        int64_t batch_correct = 0;
        status = forward_rows(&logits, net, &s, x_u8, x_f32, r0, rows, scale, shift);
        if (status == DC_OK)
            status = dc_softmax_xent(NULL, NULL, &batch_loss, &batch_correct, logits,
                                     labels + r0, rows, c, 0.0f);
        loss_sum += batch_loss * (double)rows;
        correct += batch_correct;
    }
    fwd_scratch_free(&s);
    if (status == DC_OK) {
        *loss = loss_sum / (double)n;
        if (n_correct)
            *n_correct = correct;
    }
    return status;
}

/* Apply the optimizer to one contiguous parameter segment: p, g, s1, s2 point at the
 * segment (s1/s2 may be NULL when the optimizer has no such state). `decay` is 0 for
 * biases: L2 and weight decay act on weights only, as in scikit-learn and most recipes. */
static int update_segment(const dc_optim *opt, float *p, const float *g, float *s1, float *s2,
                          int64_t n, float lr, int decay)
{
    const float l2 = decay ? opt->l2 : 0.0f;
    switch (opt->kind) {
    case DC_OPT_SGD:
        return dc_sgd_update(p, opt->momentum != 0.0f ? s1 : NULL, g, n, lr, opt->momentum,
                             opt->nesterov, l2);
    case DC_OPT_RMSPROP:
        return dc_rmsprop_update(p, s1, g, n, lr, opt->beta2, opt->eps, l2);
    case DC_OPT_ADAM:
        return dc_adam_update(p, s1, s2, g, n, lr, opt->beta1, opt->beta2, opt->eps, l2,
                              decay ? opt->weight_decay : 0.0f, opt->step);
    default:
        return DC_ERR_ARG;
    }
}

/* dst (cols, rows) = src (rows, cols)^T, in tiles that stay in L1. */
static void transpose(float *dst, const float *src, int64_t rows, int64_t cols)
{
    const int64_t T = 32;
    for (int64_t i0 = 0; i0 < rows; i0 += T)
        for (int64_t j0 = 0; j0 < cols; j0 += T) {
            const int64_t i1 = i0 + T < rows ? i0 + T : rows;
            const int64_t j1 = j0 + T < cols ? j0 + T : cols;
            for (int64_t i = i0; i < i1; ++i)
                for (int64_t j = j0; j < j1; ++j)
                    dst[j * rows + i] = src[i * cols + j];
        }
}

/* Width of the column block starting at c0 of o columns (see sparse_l0). */
static int64_t block_width(int64_t o, int64_t c0)
{
    return o - c0 < DC_SPMM_BLOCK ? o - c0 : DC_SPMM_BLOCK;
}

/* (O, I) w into (I, O) by column blocks (see sparse_l0): block b's (I, cw) matrix at
 * blocked + I * c0 is the transpose of rows [c0, c0 + cw) of w. */
static void to_blocks(float *blocked, const float *w, int64_t o, int64_t in)
{
    for (int64_t c0 = 0; c0 < o; c0 += DC_SPMM_BLOCK)
        transpose(blocked + in * c0, w + c0 * in, block_width(o, c0), in);
}

/* The way back: blocked (I, O) into (O, I) w. */
static void from_blocks(float *w, const float *blocked, int64_t o, int64_t in)
{
    for (int64_t c0 = 0; c0 < o; c0 += DC_SPMM_BLOCK)
        transpose(w + c0 * in, blocked + in * c0, in, block_width(o, c0));
}

/* The first layer on sparse input. For the whole call its weight (and the optimizer's
 * state for it) is held transposed, (I, O): then the forward product is sparse batch
 * times weight^T and the weight gradient is batch^T (a CSC view) times dout, both
 * products of a sparse matrix's rows with a dense matrix (dc_spmm) that skip the zero
 * pixels. Batches too dense for the buffer (more than a quarter non-zero) use the GEMM
 * on the same layout.
 *
 * The (I, O) copy is cut by output columns into blocks of DC_SPMM_BLOCK (the last one
 * may be narrower), and block b, columns [c0, c0 + w), is stored as its own (I, w)
 * matrix at offset I * c0 (see to_blocks). With the blocks side by side in each row of
 * one (I, O) matrix, even on separate cache lines, two threads updating their halves of
 * the rows ran ~35% slower than each alone (probably the cores' prefetchers pulling in
 * each other's lines). Layer 0's gradient in `grads` has the same layout.
 *
 * The input columns (pixels) are cut into two groups at net->sparse_split (fixed for the
 * call; Trainer puts it where the data's non-zeros are halved, so two threads get equal
 * work): the gather builds the batch's CSR in one part per group, and the sparse products
 * run per (group, block) pair. The forward sums each block's groups in group order after
 * all pairs are done; the weight gradient's rows of a group come from the group's rows of
 * the CSC alone. With two threads, thread t gathers group t and runs its pairs, reading
 * and writing only its own stretch of the CSR, the CSC and each block's weight rows; only
 * the groups' forward partial sums and layer 0's output gradient (rows x O each) cross
 * between the cores, where splitting by blocks alone had both threads read all of the
 * batch's CSR and CSC, freshly written by the other core, in every product (784-128-10,
 * batch 128, 2 threads: ~10% less time per epoch). The groups are fixed, so the sums'
 * order, and the bits, do not depend on the thread count. The steps per block (the
 * forward's sum, bias and activation; the upper layer's backward, the activation backward,
 * the bias gradient) go to the same thread in every phase. */
#define DC_SPARSE_GROUPS 2

typedef struct {
    int on;
    int fused_sgd;   /* plain SGD: the weight gradient is applied as it is computed */
    float *wt;       /* (I, O) weight of layer 0, by column blocks */
    float *s1t, *s2t;/* optimizer state for it, same layout (or NULL) */
    dc_csr x, xt;    /* the batch and its transpose */
    int64_t capacity;   /* entries x has room for */
    int64_t edges[DC_SPARSE_GROUPS + 1]; /* the input column groups (x.col_edges) */
    float *partial;     /* forward partial sums of groups 1.. (see run_phases) */
    int64_t partial_floats; /* floats of each */
    int is_sparse;   /* this batch went through x (else through the dense buffer) */
} sparse_l0;

static void sparse_l0_free(sparse_l0 *sp)
{
    dc_free_aligned(sp->wt);
    dc_free_aligned(sp->s1t);
    dc_free_aligned(sp->s2t);
    dc_free_aligned(sp->partial);
    csr_free(&sp->x);
    csr_free(&sp->xt);
}

static int sparse_l0_alloc(sparse_l0 *sp, const dc_mlp *net, const dc_optim *opt, int64_t bs)
{
    const int64_t in = net->sizes[0], o = net->sizes[1];
    const size_t wbytes = (size_t)(in * o) * sizeof(float);
    const int64_t cap = sparse_capacity(net, bs);
    sp->capacity = cap;
    sp->wt = dc_alloc_aligned(wbytes);
    sp->s1t = opt->state1 ? dc_alloc_aligned(wbytes) : NULL;
    sp->s2t = opt->state2 ? dc_alloc_aligned(wbytes) : NULL;
    if (!sp->wt || (opt->state1 && !sp->s1t) || (opt->state2 && !sp->s2t))
        return DC_ERR_NOMEM;
    /* the batch in one part per group of input columns (see dc_csr_gather_u8) */
    const int64_t parts = DC_SPARSE_GROUPS;
    dc_csr *x = &sp->x, *xt = &sp->xt;
    sp->partial_floats = line_floats(bs * o);
    if (parts > 1 &&
        !(sp->partial = dc_alloc_aligned((size_t)((parts - 1) * sp->partial_floats) *
                                         sizeof(float))))
        return DC_ERR_NOMEM;
    sp->edges[0] = 0;
    sp->edges[1] = net->sparse_split > 0 ? net->sparse_split : (in / 2) & ~(int64_t)31;
    sp->edges[2] = in;
    x->parts = parts;
    x->col_edges = sp->edges;
    xt->parts = 1;
    xt->col_edges = NULL;
    if (csr_alloc(x, parts * (bs + 1), cap) != DC_OK || csr_alloc(xt, in + 1, cap) != DC_OK)
        return DC_ERR_NOMEM;
    /* layer 0's weight is the first segment of params and of each state array */
    to_blocks(sp->wt, net->params, o, in);
    if (sp->s1t)
        to_blocks(sp->s1t, opt->state1, o, in);
    if (sp->s2t)
        to_blocks(sp->s2t, opt->state2, o, in);
    return DC_OK;
}

/* Put the blocked (I, O) copies back in place as (O, I). */
static void sparse_l0_store(const sparse_l0 *sp, const dc_mlp *net, const dc_optim *opt)
{
    const int64_t in = net->sizes[0], o = net->sizes[1];
    from_blocks(net->params, sp->wt, o, in);
    if (sp->s1t)
        from_blocks(opt->state1, sp->s1t, o, in);
    if (sp->s2t)
        from_blocks(opt->state2, sp->s2t, o, in);
}

/* What train_batch needs of dc_mlp_train's arguments and scratch. */
typedef struct {
    dc_train_stats *stats;
    const dc_mlp *net;
    dc_optim *opt;
    float *grads;
    const uint8_t *x_u8;
    const float *x_f32;
    const int64_t *labels;
    const float *lrs;
    float scale, shift;
    uint64_t seed;
    int use_dropout;
    int64_t bs;
    sparse_l0 *sp;
    float **x0p; /* the dense input buffer, allocated when a batch first needs it */
    int64_t *lab;
    const float **h_in;
    float **act;
    uint8_t **mask;
    float *logits, *delta_a, *delta_b;
} train_ctx;

/* Where layer 0's weight gradient goes, in the (I, O) layout, as dst = alpha * grad +
 * beta * dst: with the fused plain-SGD step straight into the weight (-lr, 1), else into
 * grads (1, 0). */
static float *l0_grad_dst(const sparse_l0 *sp, float *grads, float lr, float *alpha,
                          float *beta)
{
    *alpha = sp->fused_sgd ? -lr : 1.0f;
    *beta = sp->fused_sgd ? 1.0f : 0.0f;
    return sp->fused_sgd ? sp->wt : grads;
}

/* Work on a sparse batch in units: a column block b of layer 0's outputs, or a pair
 * (group g of layer 0's input columns, block b) for g's share of the block's sparse
 * product (see sparse_l0). */
typedef struct {
    const train_ctx *t;
    int64_t j, rows;
    int act;        /* forward: layer 0's activation */
    float *out;     /* forward: layer 0's output (rows, o0) */
    const float *d; /* backward: the output gradient of the layer above layer 0 */
    float *g;       /* backward: receives layer 0's output gradient (rows, o0) (two or
                     * more layers; a one-layer network's is d) */
} block_job;

typedef int (*unit_fn)(const block_job *, int64_t g, int64_t b);

/* A phase of work: fn on every block (pairs = 0, g = -1) or every (group, block) pair,
 * group by group (pairs = 1). */
typedef struct {
    unit_fn fn;
    int pairs;
} phase;

/* Thread t's share of nt of a phase's units: a fixed run, so with two threads and two
 * groups thread t takes group t's pairs, and block b goes to the same thread in every
 * phase and batch. */
static int phase_share(const block_job *job, const phase *ph, int t, int nt)
{
    const int64_t nb = (job->t->net->sizes[1] + DC_SPMM_BLOCK - 1) / DC_SPMM_BLOCK;
    const int64_t n = ph->pairs ? DC_SPARSE_GROUPS * nb : nb;
    int st = DC_OK;
    for (int64_t u = n * t / nt; u < n * (t + 1) / nt && st == DC_OK; ++u)
        st = ph->pairs ? ph->fn(job, u / nb, u % nb) : ph->fn(job, -1, u);
    return st;
}

/* Phase a, then phase b, in one parallel region when the batch's sparse products are
 * worth sharing (as in dc_spmm), on this thread otherwise. Units are fixed, so results do
 * not depend on the number of threads. */
static int run_phases(const block_job *job, phase a, phase b)
{
    const int64_t o0 = job->t->net->sizes[1];
    const int64_t nb = (o0 + DC_SPMM_BLOCK - 1) / DC_SPMM_BLOCK;
    int nt = dc_get_num_threads();
    if (nt > DC_SPARSE_GROUPS * nb)
        nt = (int)(DC_SPARSE_GROUPS * nb);
    if (job->t->sp->x.nnz * o0 < DC_SPMM_PARALLEL_MIN)
        nt = 1; /* too little work to share */
    if (nt <= 1) {
        const int st = phase_share(job, &a, 0, 1);
        return st == DC_OK ? phase_share(job, &b, 0, 1) : st;
    }
    int status = DC_OK;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    { /* (a kernel called in here runs on its thread) */
        const int t = dc_team_thread(), got = dc_team_size();
        int st = phase_share(job, &a, t, got);
        if (st != DC_OK) {
#ifdef _OPENMP
#pragma omp critical(dc_run_phases)
#endif
            status = st;
        }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp flush
#endif
        if (status == DC_OK) {
            st = phase_share(job, &b, t, got);
            if (st != DC_OK) {
#ifdef _OPENMP
#pragma omp critical(dc_run_phases)
#endif
                status = st;
            }
        }
    }
    return status;
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
static int head_pair(const block_job *a, int64_t g, int64_t b)
{
    const dc_mlp *net = a->t->net;
    const sparse_l0 *sp = a->t->sp;
    const int64_t in0 = net->sizes[0], o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    float *dst = g == 0 ? a->out : sp->partial + (g - 1) * sp->partial_floats;
    const dc_csr v = group_view(&sp->x, sp->edges, g, 0);
    return dc_spmm_ld(dst + c0, o0, &v, sp->wt + in0 * c0, w, w, 1.0f, 0.0f, NULL,
                      DC_ACT_IDENTITY, 0.0f);
}

/* Forward, second phase: block b's columns of layer 0's output as the groups' sum, in
 * group order, plus bias, through the activation. */
static int head_block(const block_job *a, int64_t g, int64_t b)
{
    const dc_mlp *net = a->t->net;
    const sparse_l0 *sp = a->t->sp;
    const int64_t in0 = net->sizes[0], o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const float *bias = net->params + o0 * in0 + c0;
    const float slope = net->act_alpha;
    (void)g;
    for (int64_t r = 0; r < a->rows; ++r) {
        float *y = a->out + r * o0 + c0;
        for (int64_t q = 1; q < DC_SPARSE_GROUPS; ++q) {
            const float *p = sp->partial + (q - 1) * sp->partial_floats + r * o0 + c0;
            for (int64_t k = 0; k < w; ++k)
                y[k] += p[k];
        }
        for (int64_t k = 0; k < w; ++k)
            y[k] += bias[k];
        if (a->act == DC_ACT_RELU) {
            for (int64_t k = 0; k < w; ++k)
                y[k] = y[k] > 0.0f ? y[k] : 0.0f;
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

/* Backward, layer 0, second phase: group g's rows of block b's weight gradient (or the
 * fused SGD step on them), the product of the batch's CSC rows of group g with these
 * columns of layer 0's output gradient. */
static int l0_dw_pair(const block_job *a, int64_t g, int64_t b)
{
    const sparse_l0 *sp = a->t->sp;
    const int64_t in0 = a->t->net->sizes[0], o0 = a->t->net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    const int64_t r0 = sp->edges[g];
    const float *g0 = a->t->net->n_layers > 1 ? a->g : a->d;
    float alpha, beta;
    float *dst = l0_grad_dst(sp, a->t->grads, a->t->lrs[a->j], &alpha, &beta);
    const dc_csr v = group_view(&sp->xt, sp->edges, g, 1);
    return dc_spmm_ld(dst + in0 * c0 + r0 * w, w, &v, g0 + c0, o0, w, alpha, beta, NULL,
                      DC_ACT_IDENTITY, 0.0f);
}

/* Backward, first phase, block b's columns of layer 0's outputs: layer 1's input and
 * weight gradients there, the activation/dropout backward (two or more layers), and
 * layer 0's bias gradient. The thread that takes block b ran its forward sum, so these
 * columns of the activation are in its cache. */
static int tail_block(const block_job *a, int64_t g, int64_t b)
{
    const dc_mlp *net = a->t->net;
    const int64_t rows = a->rows, in0 = net->sizes[0], o0 = net->sizes[1];
    const int64_t c0 = b * DC_SPMM_BLOCK, w = block_width(o0, c0);
    int st = DC_OK;
    const float *g0 = a->d;
    (void)g;
    if (net->n_layers > 1) {
        const int64_t o1 = net->sizes[2], off1 = weight_offset(net, 1);
        const float *d = a->d, *h1 = a->t->h_in[1] + c0, *a1 = a->t->act[1] + c0;
        const uint8_t *m1 = a->t->mask[1] != NULL ? a->t->mask[1] + c0 : NULL;
        float *gb = a->g + c0, *dw1 = a->t->grads + off1 + c0;
        /* layer 1: input gradient d . W1 and weight gradient d^T . h1, these columns */
        st = dc_sgemm(0, 0, rows, w, o1, 1.0f, d, o1, net->params + off1 + c0, o0, 0.0f, gb,
                      o0);
        if (st == DC_OK)
            st = dc_sgemm(1, 0, o1, w, rows, 1.0f, d, o1, h1, o0, 0.0f, dw1, o0);
        for (int64_t r = 0; r < rows && st == DC_OK; ++r) {
            if (m1 != NULL)
                st = dc_dropout_backward(gb + r * o0, gb + r * o0, m1 + r * o0, w,
                                         net->dropout);
            if (st == DC_OK)
                st = dc_activation_backward(gb + r * o0, gb + r * o0, a1 + r * o0, w,
                                            net->act, net->act_alpha);
        }
        g0 = a->g;
    }
    if (st == DC_OK)
        st = dc_bias_backward(a->t->grads + o0 * in0 + c0, g0 + c0, rows, w, o0, 0);
    return st;
}

/* One training step on batch j (rows `rows` of x at idx), whose sparse form, if any, is
 * already in sp->x/xt (sp->is_sparse). */
static int train_batch(const train_ctx *t, int64_t j, const int64_t *idx, int64_t rows)
{
    dc_train_stats *stats = t->stats;
    const dc_mlp *net = t->net;
    dc_optim *opt = t->opt;
    float *grads = t->grads;
    const uint8_t *x_u8 = t->x_u8;
    const float *x_f32 = t->x_f32;
    const int64_t *labels = t->labels;
    const float *lrs = t->lrs;
    const float scale = t->scale, shift = t->shift;
    const uint64_t seed = t->seed;
    const int use_dropout = t->use_dropout;
    const int64_t bs = t->bs;
    sparse_l0 *sp = t->sp;
    float **x0p = t->x0p;
    int64_t *lab = t->lab;
    const float **h_in = t->h_in;
    float **act = t->act, *logits = t->logits, *delta_a = t->delta_a, *delta_b = t->delta_b;
    uint8_t **mask = t->mask;
    const int64_t L = net->n_layers, f = net->sizes[0], c = net->sizes[L];
    const int64_t n_params = dc_mlp_n_params(L, net->sizes);
    double loss = 0.0;
    int64_t correct = 0;
    int status = DC_OK;

    for (int64_t r = 0; r < rows; ++r)
        lab[r] = labels[idx[r]];
    if (!sp->is_sparse) {
        if (*x0p == NULL && (*x0p = malloc((size_t)(bs * f) * sizeof(float))) == NULL)
            return DC_ERR_NOMEM;
        status = load_rows(*x0p, x_u8, x_f32, idx, rows, f, scale, shift);
        if (status != DC_OK)
            return status;
    }
    h_in[0] = *x0p;
    const float *x0 = *x0p;
    /* forward */
    for (int64_t l = 0; l < L; ++l) {
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const float *w = net->params + weight_offset(net, l);
        const int last = (l + 1 == L);
        const int a = last ? DC_ACT_IDENTITY : net->act;
        float *out = last ? logits : act[l + 1];
        if (l == 0 && sp->is_sparse) {
            const block_job job = {t, j, rows, a, out, NULL, NULL};
            status = run_phases(&job, (phase){head_pair, 1}, (phase){head_block, 0});
        } else if (l == 0 && sp->on) {
            for (int64_t c0 = 0; c0 < o && status == DC_OK; c0 += DC_SPMM_BLOCK) {
                const int64_t cw = block_width(o, c0);
                status = dc_sgemm(0, 0, rows, cw, in, 1.0f, x0, in, sp->wt + in * c0, cw,
                                  0.0f, out + c0, o);
            }
            if (status == DC_OK)
                status = dc_bias_act(out, w + o * in, rows, o, a, net->act_alpha);
        } else {
            status = dc_dense_forward(out, h_in[l], w, w + o * in, rows, in, o, a,
                                      net->act_alpha);
        }
        if (status != DC_OK)
            return status;
        if (!last && use_dropout) {
            /* stream = (update step, layer): masks never depend on threads */
            const uint64_t stream = (uint64_t)(opt->step + 1) * 64u + (uint64_t)l;
            status = dc_dropout_forward((float *)h_in[l + 1], mask[l + 1], out, rows * o,
                                        net->dropout, seed, stream);
            if (status != DC_OK)
                return status;
        }
    }
    status = dc_softmax_xent(NULL, delta_a, &loss, &correct, logits, lab, rows, c, 0.0f);
    if (status != DC_OK)
        return status;
    if (!isfinite(loss)) {
        stats->failed_batch = j;
        return DC_ERR_NONFINITE;
    }
    /* Loss is the mean over the batch; the gradient (p - y) / rows is what the
     * kernel returns, so a short last batch is weighted like PyTorch does. */
    stats->loss_sum += loss * (double)rows;
    stats->n_correct += correct;
    stats->n_seen += rows;

    /* backward. With the fused plain-SGD step, layer 0's weight is updated here (it
     * is the last use of it in this batch); its bias and every other layer below. */
    float *d = delta_a, *d_next = delta_b;
    for (int64_t l = L - 1; l >= 0; --l) {
        if (l == 1 && sp->is_sparse) {
            /* layer 1's bias gradient (the column sums of d), then per block */
            const int64_t o1 = net->sizes[2], o0 = net->sizes[1];
            const block_job job = {t, j, rows, DC_ACT_IDENTITY, NULL, d, d_next};
            status = dc_bias_backward(grads + weight_offset(net, 1) + o1 * o0, d, rows, o1,
                                      o1, 0);
            if (status == DC_OK)
                status = run_phases(&job, (phase){tail_block, 0}, (phase){l0_dw_pair, 1});
            if (status != DC_OK)
                return status;
            break;
        }
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const int64_t off = weight_offset(net, l);
        const float *w = net->params + off;
        float *dinp = l > 0 ? d_next : NULL;
        if (l == 0 && sp->on) {
            if (sp->is_sparse) { /* (a one-layer network: else the tail above did it) */
                const block_job job = {t, j, rows, DC_ACT_IDENTITY, NULL, d, NULL};
                status = run_phases(&job, (phase){tail_block, 0}, (phase){l0_dw_pair, 1});
            } else {
                float alpha, beta;
                float *dst = l0_grad_dst(sp, grads, lrs[j], &alpha, &beta);
                for (int64_t c0 = 0; c0 < o && status == DC_OK; c0 += DC_SPMM_BLOCK) {
                    const int64_t cw = block_width(o, c0);
                    status = dc_sgemm(1, 0, in, cw, rows, alpha, x0, in, d + c0, o, beta,
                                      dst + in * c0, cw);
                }
                if (status == DC_OK)
                    status = dc_bias_backward(grads + off + o * in, d, rows, o, o, 0);
            }
        } else {
            status = dc_dense_backward(dinp, grads + off, grads + off + o * in, d, h_in[l],
                                       w, rows, in, o, 0);
        }
        if (status != DC_OK)
            return status;
        if (l > 0) {
            if (use_dropout) {
                status = dc_dropout_backward(dinp, dinp, mask[l], rows * in, net->dropout);
                if (status != DC_OK)
                    return status;
            }
            status = dc_activation_backward(dinp, dinp, act[l], rows * in, net->act,
                                            net->act_alpha);
            if (status != DC_OK)
                return status;
            float *tmp = d;
            d = d_next;
            d_next = tmp;
        }
    }

    /* clip by global norm (the layout of layer 0's gradient does not matter to a
     * norm), then update */
    if (opt->clip_norm > 0.0f) {
        double ss = 0.0;
        dc_sum_squares(&ss, grads, n_params);
        if (!isfinite(ss)) {
            stats->failed_batch = j;
            return DC_ERR_NONFINITE;
        }
        const double norm = sqrt(ss);
        if (norm > (double)opt->clip_norm)
            dc_scale(grads, n_params, (float)((double)opt->clip_norm / (norm + 1e-12)));
    }
    opt->step += 1;
    for (int64_t l = 0; l < L; ++l) {
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const int64_t off = weight_offset(net, l);
        float *s1 = opt->state1 ? opt->state1 + off : NULL;
        float *s2 = opt->state2 ? opt->state2 + off : NULL;
        if (l == 0 && sp->on) {
            if (!sp->fused_sgd)
                status = update_segment(opt, sp->wt, grads, sp->s1t, sp->s2t, o * in, lrs[j],
                                        1);
        } else {
            status = update_segment(opt, net->params + off, grads + off, s1, s2, o * in,
                                    lrs[j], 1);
        }
        if (status == DC_OK)
            status = update_segment(opt, net->params + off + o * in, grads + off + o * in,
                                    s1 ? s1 + o * in : NULL, s2 ? s2 + o * in : NULL, o,
                                    lrs[j], 0);
        if (status != DC_OK)
            return status;
    }
    return DC_OK;
}

int dc_mlp_train(dc_train_stats *stats, const dc_mlp *net, dc_optim *opt, float *grads,
                 const uint8_t *x_u8, const float *x_f32, const int64_t *labels,
                 const int64_t *order, int64_t n_order, int64_t batch_size, const float *lrs,
                 float scale, float shift, uint64_t seed)
{
    const int64_t L = net->n_layers, f = net->sizes[0], c = net->sizes[L];
    const int64_t bs = batch_size < n_order ? batch_size : n_order;
    const int64_t width = max_width(net);
    const int use_dropout = net->dropout > 0.0f && L > 1;
    int status = DC_OK;
    sparse_l0 sp;
    memset(&sp, 0, sizeof sp);

    stats->loss_sum = 0.0;
    stats->n_correct = 0;
    stats->n_seen = 0;
    stats->failed_batch = -1;
    if (net->sparse_split < 0 || net->sparse_split > f)
        return DC_ERR_ARG;
    if (n_order == 0 || bs <= 0)
        return DC_OK;

    /* Scratch: per hidden layer its activation (and, with dropout, the dropped-out copy
     * and mask), the logits, two gradient ping-pong buffers, each starting on a cache
     * line (see dc_alloc_aligned); the converted dense input x0 is allocated only when
     * a batch needs it (always, without the sparse path). */
    int64_t hidden_floats = 0, hidden_bytes = 0;
    for (int64_t l = 1; l < L; ++l) {
        hidden_floats += line_floats(bs * net->sizes[l]);
        hidden_bytes += bs * net->sizes[l];
    }
    const size_t n_floats = (size_t)(hidden_floats * (use_dropout ? 2 : 1) +
                                     line_floats(bs * c) + 2 * line_floats(bs * width));
    float *scratch = dc_alloc_aligned(n_floats * sizeof(float));
    float *x0 = NULL;
    uint8_t *masks = use_dropout ? malloc((size_t)hidden_bytes) : NULL;
    int64_t *lab = malloc((size_t)bs * sizeof(int64_t));
    const float **h_in = malloc((size_t)L * sizeof(float *)); /* input of layer l */
    float **act = malloc((size_t)L * sizeof(float *));        /* activation of layer l (l>=1) */
    uint8_t **mask = malloc((size_t)L * sizeof(uint8_t *));
    if (!scratch || (use_dropout && !masks) || !lab || !h_in || !act || !mask) {
        status = DC_ERR_NOMEM;
        goto done;
    }
    sp.on = sparse_allowed(net, shift, bs);
    if (sp.on) {
        sp.fused_sgd = opt->kind == DC_OPT_SGD && opt->momentum == 0.0f && opt->l2 == 0.0f &&
                       opt->clip_norm <= 0.0f;
        status = sparse_l0_alloc(&sp, net, opt, bs);
        if (status != DC_OK) {
            sp.on = 0; /* nothing was transposed into a buffer that is missing */
            goto done;
        }
    }
    float *cursor = scratch;
    uint8_t *mcursor = masks;
    act[0] = NULL;
    mask[0] = NULL;
    for (int64_t l = 1; l < L; ++l) {
        act[l] = cursor;
        cursor += line_floats(bs * net->sizes[l]);
        if (use_dropout) {
            h_in[l] = cursor;
            cursor += line_floats(bs * net->sizes[l]);
            mask[l] = mcursor;
            mcursor += bs * net->sizes[l];
        } else {
            h_in[l] = act[l];
            mask[l] = NULL;
        }
    }
    float *logits = cursor;
    float *delta_a = logits + line_floats(bs * c), *delta_b = delta_a + line_floats(bs * width);

    const int64_t n_batches = (n_order + bs - 1) / bs;
    const train_ctx tc = {stats, net,  opt,   grads,      x_u8,   x_f32,   labels,
                          lrs,   scale, shift, seed,       use_dropout, bs, &sp,
                          &x0,   lab,   h_in,  act,        mask,   logits,  delta_a,
                          delta_b};
    for (int64_t j = 0; j < n_batches; ++j) {
        const int64_t r0 = j * bs;
        const int64_t rows = (n_order - r0) < bs ? (n_order - r0) : bs;
        const int64_t next_rows = (n_order - r0 - rows) < bs ? (n_order - r0 - rows) : bs;
        const int64_t *idx = order + r0;

        sp.is_sparse = 0;
        if (sp.on) {
            status = gather_csr(&sp.x, &sp.xt, sp.capacity, x_u8, x_f32, idx, rows, f, scale);
            if (status == DC_OK)
                sp.is_sparse = 1;
            else if (status != DC_ERR_CAPACITY)
                goto done;
        }
        if (next_rows > 0)
            prefetch_rows(x_u8 ? (const void *)x_u8 : (const void *)x_f32, idx + rows,
                          next_rows, f * (x_u8 ? 1 : (int64_t)sizeof(float)));
        status = train_batch(&tc, j, idx, rows);
        if (status != DC_OK)
            goto done;
    }

done:
    if (sp.on)
        sparse_l0_store(&sp, net, opt);
    sparse_l0_free(&sp);
    dc_free_aligned(scratch);
    free(x0);
    free(masks);
    free(lab);
    free((void *)h_in);
    free(act);
    free(mask);
    return status;
}

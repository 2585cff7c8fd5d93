/*
 * mlp_infer.c -- inference and evaluation of a whole network (dc_mlp_forward,
 * dc_mlp_evaluate): inference in blocks of rows, each taken whole by a free thread,
 * evaluation in chunks of rows, so that scratch stays in the low megabytes whatever the
 * number of rows, and Python is not re-entered between layers.
 */
#include "mlp_internal.h"

#include <stdlib.h>
#include <string.h>

/* Rows of inference done at once: large enough to keep the GEMM efficient, small enough
 * that scratch stays in the low megabytes whatever n is. */
#define DC_MLP_CHUNK             1024
/* Below this many rows an inference call takes the dense path: the sparse one first
 * transposes layer 0's weight (I x O floats), which only pays over enough rows. */
#define DC_SPARSE_INFER_MIN_ROWS 256
/* Calls of at most this many rows run each layer as dot products (dc_sgemm_dot), nothing
 * packed: for one image through 784-128-10, packing layer 0's weight for the blocked
 * GEMM took two thirds of predict_proba (perf). Decided on the call's rows, so the bits
 * do not depend on the thread count. */
#define DC_DOT_INFER_MAX_ROWS    16
/* Rows of one unit of work of dc_mlp_forward (forward_blocks); divides DC_MLP_CHUNK, so a
 * block lies in one chunk. */
#define DC_INFER_BLOCK           128

int64_t dc_mlp_n_params(int64_t n_layers, const int64_t *sizes)
{
    int64_t total = 0;
    for (int64_t l = 0; l < n_layers; ++l)
        total += sizes[l + 1] * sizes[l] + sizes[l + 1];
    return total;
}

/* Forward `rows` rows of layer l0's input `inp` through layers l0.. with no dropout;
 * the logits end up in whichever of buf_a/buf_b the returned pointer names (inp itself
 * when l0 is past the last layer). */
static int forward_layers(float **logits, const dc_mlp *net, int64_t l0, const float *inp,
                          float *buf_a, float *buf_b, int64_t rows, int dot)
{
    const float *h = inp;
    float *out = inp == buf_a ? buf_b : buf_a;
    for (int64_t l = l0; l < net->n_layers; ++l) {
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const float *w = net->params + mlp_weight_offset(net, l);
        const int act = (l + 1 < net->n_layers) ? net->act : DC_ACT_IDENTITY;
        int status;
        if (dot) {
            status = dc_sgemm_dot(rows, o, in, h, in, w, in, out, o);
            if (status == DC_OK)
                status = dc_bias_act(out, w + o * in, rows, o, act, net->act_alpha);
        } else {
            status = dc_dense_forward(out, h, w, w + o * in, rows, in, o, act, net->act_alpha);
        }
        if (status != DC_OK)
            return status;
        h = out;
        out = (out == buf_a) ? buf_b : buf_a;
    }
    *logits = (float *)h;
    return DC_OK;
}

/* Scratch for chunked inference: one chunk of converted input and two ping-pong buffers;
 * on the sparse path also layer 0's weight transposed and a CSR chunk. */
typedef struct {
    float *inp, *buf_a, *buf_b;
    float *wt; /* (I, O), or NULL: dense path */
    dc_csr x;
    int64_t capacity, chunk;
    int dot; /* layers as dot products (few rows) */
} chunk_scratch;

static void scratch_free(chunk_scratch *s)
{
    dc_free_aligned(s->inp);
    dc_free_aligned(s->buf_a);
    dc_free_aligned(s->buf_b);
    dc_free_aligned(s->wt);
    csr_free(&s->x);
}

static int scratch_alloc(chunk_scratch *s, const dc_mlp *net, int64_t n, int64_t chunk,
                         float shift)
{
    const int64_t width = mlp_max_width(net), f = net->sizes[0], o = net->sizes[1];
    *s = (chunk_scratch){.chunk = chunk, .dot = n <= DC_DOT_INFER_MAX_ROWS};
    s->buf_a = dc_alloc_aligned((size_t)(chunk * width) * sizeof(float));
    s->buf_b = dc_alloc_aligned((size_t)(chunk * width) * sizeof(float));
    if (!s->buf_a || !s->buf_b)
        return DC_ERR_NOMEM;
    /* The first layer on sparse input, as in training (mlp_layer0.c): a chunk more than
     * a quarter non-zero falls back to the dense path. */
    if (mlp_sparse_allowed(net, shift, chunk) &&
        (net->sparse_input == DC_SPARSE_ALWAYS || n >= DC_SPARSE_INFER_MIN_ROWS)) {
        s->capacity = mlp_sparse_capacity(net, chunk);
        s->wt = dc_alloc_aligned((size_t)(f * o) * sizeof(float));
        s->x.parts = 1;
        s->x.col_edges = NULL;
        if (!s->wt || csr_alloc(&s->x, chunk + 1, s->capacity) != DC_OK)
            return DC_ERR_NOMEM;
        mlp_transpose(s->wt, net->params, o, f);
    }
    return DC_OK; /* the dense input chunk s->inp is allocated when first needed */
}

/* Logits of rows [r0, r0 + rows) of x, no dropout; *logits points into the scratch. */
static int forward_rows(float **logits, const dc_mlp *net, chunk_scratch *s,
                        const uint8_t *x_u8, const float *x_f32, int64_t r0, int64_t rows,
                        float scale, float shift)
{
    const int64_t f = net->sizes[0];
    const uint8_t *r8 = x_u8 ? x_u8 + r0 * f : NULL;
    const float *r32 = x_f32 ? x_f32 + r0 * f : NULL;
    if (s->wt != NULL) {
        int status = mlp_gather_csr(&s->x, NULL, s->capacity, r8, r32, NULL, rows, f, scale);
        if (status == DC_OK) {
            const int64_t o = net->sizes[1];
            const int act = net->n_layers > 1 ? net->act : DC_ACT_IDENTITY;
            status = dc_spmm(s->buf_a, &s->x, s->wt, o, o, 1.0f, 0.0f, net->params + o * f, act,
                             net->act_alpha);
            if (status == DC_OK)
                status =
                    forward_layers(logits, net, 1, s->buf_a, s->buf_a, s->buf_b, rows, s->dot);
            return status;
        }
        if (status != DC_ERR_CAPACITY)
            return status;
    }
    if (s->inp == NULL &&
        (s->inp = dc_alloc_aligned((size_t)(s->chunk * f) * sizeof(float))) == NULL)
        return DC_ERR_NOMEM;
    int status = mlp_load_rows(s->inp, r8, r32, NULL, rows, f, scale, shift);
    if (status == DC_OK)
        status = forward_layers(logits, net, 0, s->inp, s->buf_a, s->buf_b, rows, s->dot);
    return status;
}

/* The dense multiply-adds of n rows through net (the sparse first layer does fewer). */
static double infer_work(const dc_mlp *net, int64_t n)
{
    double per_row = 0.0;
    for (int64_t l = 0; l < net->n_layers; ++l)
        per_row += (double)net->sizes[l] * (double)net->sizes[l + 1];
    return per_row * (double)n;
}

/* What is done with each chunk's logits. */
typedef int (*chunk_fn)(void *ctx, const float *logits, int64_t r0, int64_t rows, int64_t c);

/* The logits of x's n rows, chunk by chunk in order, handed to fn. */
static int forward_chunks(const dc_mlp *net, const uint8_t *x_u8, const float *x_f32, int64_t n,
                          float scale, float shift, chunk_fn fn, void *ctx)
{
    const int64_t c = net->sizes[net->n_layers];
    const int64_t chunk = dc_min64(n, DC_MLP_CHUNK);
    chunk_scratch s;
    if (n == 0)
        return DC_OK;
    int status = scratch_alloc(&s, net, n, chunk, shift);
    const int icv = team_infer_begin(infer_work(net, n));
    for (int64_t r0 = 0; status == DC_OK && r0 < n; r0 += chunk) {
        const int64_t rows = dc_min64(n - r0, chunk);
        float *logits = NULL;
        status = forward_rows(&logits, net, &s, x_u8, x_f32, r0, rows, scale, shift);
        if (status == DC_OK)
            status = fn(ctx, logits, r0, rows, c);
    }
    team_infer_end(icv);
    scratch_free(&s);
    return status;
}

/* The softmax of rows of logits into out, or DC_ERR_NONFINITE (out unwritten) when a
 * logit is infinite or NaN: the output layer overflowed float32 (weights or input scaling
 * far too large for this input), and probabilities made from it would be NaN or a
 * silent guess. (dc_softmax_forward itself, like NumPy, propagates them.) */
static int softmax_finite(float *out, const float *logits, int64_t rows, int64_t c)
{
    float any = 0.0f;
    for (int64_t i = 0; i < rows * c; ++i)
        any += logits[i] * 0.0f; /* NaN for an infinite or NaN logit, else 0 */
    if (any != 0.0f)
        return DC_ERR_NONFINITE;
    return dc_softmax_forward(out, logits, rows, c);
}

typedef struct {
    float *out;
    int softmax;
} forward_out;

static int store_chunk(void *ctx, const float *logits, int64_t r0, int64_t rows, int64_t c)
{
    const forward_out *f = ctx;
    if (f->softmax)
        return softmax_finite(f->out + r0 * c, logits, rows, c);
    memcpy(f->out + r0 * c, logits, (size_t)(rows * c) * sizeof(float));
    return DC_OK;
}

/* One thread's scratch in forward_blocks: two ping-pong buffers, a CSR block (sparse
 * path), and a block of converted dense input (allocated when first needed). */
typedef struct {
    float *buf_a, *buf_b, *inp;
    dc_csr x;
    int status; /* this thread's first error (each thread writes only its own) */
} block_scratch;

/* dc_mlp_forward of more than DC_DOT_INFER_MAX_ROWS rows: fixed blocks of DC_INFER_BLOCK
 * rows, each taken whole (gather, every layer, softmax) by whichever thread of one
 * parallel region is free. Every row's arithmetic is the chunked path's: the sparse or
 * dense first layer is still chosen per DC_MLP_CHUNK rows by the chunk's non-zero count
 * (counted first, block by block), and every kernel's bits for a row do not depend on
 * the rows beside it. */
static int forward_blocks(float *out, const dc_mlp *net, const uint8_t *x_u8,
                          const float *x_f32, int64_t n, float scale, float shift, int softmax)
{
    const int64_t f = net->sizes[0], o = net->sizes[1], c = net->sizes[net->n_layers];
    const int64_t width = mlp_max_width(net), B = DC_INFER_BLOCK;
    const int64_t chunk = dc_min64(n, DC_MLP_CHUNK), nb = dc_cdiv64(n, B);
    /* blocks per chunk (a chunk of n < DC_MLP_CHUNK rows holds every block) */
    const int64_t per = n <= DC_MLP_CHUNK ? nb : DC_MLP_CHUNK / B;
    const int sparse = mlp_sparse_allowed(net, shift, chunk) &&
                       (net->sparse_input == DC_SPARSE_ALWAYS || n >= DC_SPARSE_INFER_MIN_ROWS);
    const int64_t capacity = sparse ? mlp_sparse_capacity(net, chunk) : 0;
    const int icv = team_infer_begin(infer_work(net, n));
    int nt = dc_get_num_threads();
    if (nt > nb)
        nt = (int)nb;
    float *wt = sparse ? dc_alloc_aligned((size_t)(f * o) * sizeof(float)) : NULL;
    int64_t *nnz = sparse ? malloc((size_t)nb * sizeof(int64_t)) : NULL;
    block_scratch *ts = calloc((size_t)nt, sizeof(block_scratch));
    int status = /* (only read inside the parallel region) */
        ts != NULL && (!sparse || (wt != NULL && nnz != NULL)) ? DC_OK : DC_ERR_NOMEM;
    for (int t = 0; status == DC_OK && t < nt; ++t) {
        block_scratch *b = &ts[t];
        b->buf_a = dc_alloc_aligned((size_t)(B * width) * sizeof(float));
        b->buf_b = dc_alloc_aligned((size_t)(B * width) * sizeof(float));
        b->x.parts = 1;
        if (!b->buf_a || !b->buf_b || (sparse && csr_alloc(&b->x, B + 1, B * f) != DC_OK))
            status = DC_ERR_NOMEM;
    }
    if (status == DC_OK) {
        dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
            block_scratch *b = &ts[dc_team_thread()];
            if (sparse) {
#ifdef _OPENMP
#pragma omp single nowait
#endif
                mlp_transpose(wt, net->params, o, f);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
                for (int64_t k = 0; k < nb; ++k) {
                    const int64_t r0 = k * B, rows = dc_min64(n - r0, B);
                    nnz[k] = dc_csr_count_rows(x_u8 ? x_u8 + r0 * f : NULL,
                                               x_f32 ? x_f32 + r0 * f : NULL, rows, f, scale);
                } /* (implicit barrier: the counts and wt are complete) */
            }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t k = 0; k < nb; ++k) {
                if (b->status != DC_OK)
                    continue;
                const int64_t r0 = k * B, rows = dc_min64(n - r0, B);
                const uint8_t *r8 = x_u8 ? x_u8 + r0 * f : NULL;
                const float *r32 = x_f32 ? x_f32 + r0 * f : NULL;
                int use_sparse = sparse, st;
                if (sparse) { /* the chunked path's rule: the whole chunk's entries */
                    const int64_t k0 = k / per * per, k1 = dc_min64(nb, k0 + per);
                    int64_t total = 0;
                    for (int64_t q = k0; q < k1; ++q)
                        total += nnz[q];
                    use_sparse = total <= capacity;
                }
                float *logits = NULL;
                if (use_sparse) {
                    const int act = net->n_layers > 1 ? net->act : DC_ACT_IDENTITY;
                    dc_csr_fill_rows(&b->x, r8, r32, rows, f, scale); /* (counted already) */
                    st = dc_spmm(b->buf_a, &b->x, wt, o, o, 1.0f, 0.0f, net->params + o * f,
                                 act, net->act_alpha);
                    if (st == DC_OK)
                        st = forward_layers(&logits, net, 1, b->buf_a, b->buf_a, b->buf_b, rows,
                                            0);
                } else {
                    if (b->inp == NULL)
                        b->inp = dc_alloc_aligned((size_t)(B * f) * sizeof(float));
                    st = b->inp == NULL
                             ? DC_ERR_NOMEM
                             : mlp_load_rows(b->inp, r8, r32, NULL, rows, f, scale, shift);
                    if (st == DC_OK)
                        st = forward_layers(&logits, net, 0, b->inp, b->buf_a, b->buf_b, rows,
                                            0);
                }
                if (st == DC_OK && softmax)
                    st = softmax_finite(out + r0 * c, logits, rows, c);
                else if (st == DC_OK)
                    memcpy(out + r0 * c, logits, (size_t)(rows * c) * sizeof(float));
                if (st != DC_OK)
                    b->status = st;
            }
        }
        for (int t = 0; t < nt; ++t)
            if (status == DC_OK)
                status = ts[t].status;
    }
    team_infer_end(icv);
    for (int t = 0; ts != NULL && t < nt; ++t) {
        dc_free_aligned(ts[t].buf_a);
        dc_free_aligned(ts[t].buf_b);
        dc_free_aligned(ts[t].inp);
        if (sparse)
            csr_free(&ts[t].x);
    }
    free(ts);
    free(nnz);
    dc_free_aligned(wt);
    return status;
}

int dc_mlp_forward(float *out, const dc_mlp *net, const uint8_t *x_u8, const float *x_f32,
                   int64_t n, float scale, float shift, int softmax)
{
    if (n > DC_DOT_INFER_MAX_ROWS)
        return forward_blocks(out, net, x_u8, x_f32, n, scale, shift, softmax);
    forward_out f = {.out = out, .softmax = softmax};
    return forward_chunks(net, x_u8, x_f32, n, scale, shift, store_chunk, &f);
}

typedef struct {
    const int64_t *labels;
    double loss_sum;
    int64_t correct;
} evaluation;

static int score_chunk(void *ctx, const float *logits, int64_t r0, int64_t rows, int64_t c)
{
    evaluation *e = ctx;
    double loss = 0.0;
    int64_t correct = 0;
    const int status =
        dc_softmax_xent(NULL, NULL, &loss, &correct, logits, e->labels + r0, rows, c, 0.0f);
    e->loss_sum += loss * (double)rows;
    e->correct += correct;
    return status;
}

int dc_mlp_evaluate(double *loss, int64_t *n_correct, const dc_mlp *net, const uint8_t *x_u8,
                    const float *x_f32, const int64_t *labels, int64_t n, float scale,
                    float shift)
{
    if (loss == NULL || (labels == NULL && n > 0))
        return DC_ERR_ARG; /* (the loss needs a label per row) */
    evaluation e = {.labels = labels};
    const int status = forward_chunks(net, x_u8, x_f32, n, scale, shift, score_chunk, &e);
    *loss = status == DC_OK && n > 0 ? e.loss_sum / (double)n : 0.0;
    if (n_correct)
        *n_correct = status == DC_OK ? e.correct : 0;
    return status;
}

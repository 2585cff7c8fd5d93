/*
 * mlp_grad.c -- the loss and gradient of a whole network over a set of rows, in one call.
 *
 * For what the fused training loop (mlp_train.c) does not take: full-batch solvers (L-BFGS asks
 * for the loss and gradient over the whole training set at each evaluation), sigmoid
 * outputs with binary cross-entropy (multilabel targets), and inputs that are already
 * sparse (scipy.sparse CSR). It is built from the public layer kernels only: the dense
 * layers' forward/backward as the training step runs them (mlp_layer_forward/_backward,
 * mlp_internal.h), dc_spmm for a first layer on CSR input, and the fused output losses. Rows go
 * through in chunks of GRAD_CHUNK rows, so memory stays bounded (activations of one chunk) and
 * the gradient is a sum of per-chunk GEMMs added in chunk order: its bits do not depend on the
 * thread count.
 */
#include "mlp_internal.h"

#include <stdlib.h>
#include <string.h>

/* Rows per chunk: big enough that each chunk's GEMMs run near full speed (M = 1024), small
 * enough that a chunk's activations of a 784-1024-10 network (~7 MB) stay modest. */
#define GRAD_CHUNK ((int64_t)1024)

static inline int64_t row_of(const int64_t *sel, int64_t i)
{
    return sel ? sel[i] : i;
}

/* Scratch for one chunk. */
typedef struct {
    float *
        *acts; /* acts[l], l = 1..L: layer l-1's output (b, sizes[l]); acts[0]: dense input */
    float *delta_a; /* (b, max size) */
    float *delta_b;
    int64_t *labels; /* (b) */
    float *targets;  /* (b, C) */
    float *w0_t;     /* layer 0 weight transposed (I, O): dc_spmm's dense operand */
    float *gw0_t;    /* layer 0 weight gradient transposed (I, O), summed over chunks */
    dc_csr c, c_t;   /* the chunk as CSR and its transpose (CSC) */
    int64_t c_cap;   /* entries c / c_t can hold */
} chunk_scratch;

static void scratch_free(chunk_scratch *s, int64_t n_layers)
{
    if (s->acts != NULL)
        for (int64_t l = 0; l <= n_layers; ++l)
            free(s->acts[l]);
    free(s->acts);
    free(s->delta_a);
    free(s->delta_b);
    free(s->labels);
    free(s->targets);
    free(s->w0_t);
    free(s->gw0_t);
    free(s->c.ptr);
    free(s->c.idx);
    free(s->c.val);
    free(s->c_t.ptr);
    free(s->c_t.idx);
    free(s->c_t.val);
    memset(s, 0, sizeof *s);
}

static int scratch_alloc(chunk_scratch *s, const dc_mlp *net, const dc_rows *x, int with_grad)
{
    const int64_t L = net->n_layers, *sz = net->sizes, b = GRAD_CHUNK;
    const int sparse = x->ptr != NULL;
    int64_t widest = 0;
    for (int64_t l = 0; l <= L; ++l)
        widest = sz[l] > widest ? sz[l] : widest;
    memset(s, 0, sizeof *s);
    s->acts = (float **)calloc((size_t)(L + 1), sizeof(float *));
    if (s->acts == NULL)
        return DC_ERR_NOMEM;
    for (int64_t l = sparse ? 1 : 0; l <= L; ++l)
        if ((s->acts[l] = (float *)malloc((size_t)(b * sz[l]) * sizeof(float))) == NULL)
            return DC_ERR_NOMEM;
    s->labels = (int64_t *)malloc((size_t)b * sizeof(int64_t));
    s->targets = (float *)malloc((size_t)(b * sz[L]) * sizeof(float));
    s->delta_a = (float *)malloc((size_t)(b * widest) * sizeof(float));
    s->delta_b = (float *)malloc((size_t)(b * widest) * sizeof(float));
    if (s->labels == NULL || s->targets == NULL || s->delta_a == NULL || s->delta_b == NULL)
        return DC_ERR_NOMEM;
    if (sparse) {
        const int64_t in = sz[0], out = sz[1];
        s->w0_t = (float *)malloc((size_t)(in * out) * sizeof(float));
        s->c.ptr = (int64_t *)malloc((size_t)(b + 1) * sizeof(int64_t));
        s->c_t.ptr = (int64_t *)malloc((size_t)(in + 1) * sizeof(int64_t));
        if (s->w0_t == NULL || s->c.ptr == NULL || s->c_t.ptr == NULL)
            return DC_ERR_NOMEM;
        /* zeroed: every chunk adds into it (beta 1), so no stale value can survive */
        if (with_grad &&
            (s->gw0_t = (float *)calloc((size_t)(in * out), sizeof(float))) == NULL)
            return DC_ERR_NOMEM;
        /* weight (O,I) -> (I,O) */
        const float *w = net->params;
        for (int64_t o = 0; o < out; ++o)
            for (int64_t i = 0; i < in; ++i)
                s->w0_t[i * out + o] = w[o * in + i];
    }
    return DC_OK;
}

/* Rows sel[r0..r0+b) of CSR x into s->c (values times scale) and its transpose s->c_t. */
static int gather_csr_chunk(chunk_scratch *s, const dc_rows *x, const int64_t *sel, int64_t r0,
                            int64_t b)
{
    int64_t nnz = 0;
    for (int64_t i = 0; i < b; ++i) {
        const int64_t r = row_of(sel, r0 + i);
        nnz += x->ptr[r + 1] - x->ptr[r];
    }
    if (nnz > s->c_cap) {
        const int64_t cap = nnz + nnz / 4 + 64;
        int32_t *i1 = (int32_t *)realloc(s->c.idx, (size_t)cap * sizeof(int32_t));
        if (i1 != NULL)
            s->c.idx = i1;
        float *v1 = (float *)realloc(s->c.val, (size_t)cap * sizeof(float));
        if (v1 != NULL)
            s->c.val = v1;
        int32_t *i2 = (int32_t *)realloc(s->c_t.idx, (size_t)cap * sizeof(int32_t));
        if (i2 != NULL)
            s->c_t.idx = i2;
        float *v2 = (float *)realloc(s->c_t.val, (size_t)cap * sizeof(float));
        if (v2 != NULL)
            s->c_t.val = v2;
        if (i1 == NULL || v1 == NULL || i2 == NULL || v2 == NULL)
            return DC_ERR_NOMEM;
        s->c_cap = cap;
    }
    const int64_t F = x->cols;
    int64_t *tp = s->c_t.ptr;
    memset(tp, 0, (size_t)(F + 1) * sizeof(int64_t));
    int64_t p = 0;
    s->c.ptr[0] = 0;
    for (int64_t i = 0; i < b; ++i) {
        const int64_t r = row_of(sel, r0 + i);
        for (int64_t k = x->ptr[r]; k < x->ptr[r + 1]; ++k, ++p) {
            s->c.idx[p] = x->idx[k];
            s->c.val[p] = x->val[k] * x->scale;
            tp[x->idx[k] + 1]++;
        }
        s->c.ptr[i + 1] = p;
    }
    for (int64_t j = 0; j < F; ++j)
        tp[j + 1] += tp[j];
    /* counting sort by column; rows of the chunk come in increasing order within a column */
    for (int64_t i = 0; i < b; ++i)
        for (int64_t k = s->c.ptr[i]; k < s->c.ptr[i + 1]; ++k) {
            const int64_t q = tp[s->c.idx[k]]++;
            s->c_t.idx[q] = (int32_t)i;
            s->c_t.val[q] = s->c.val[k];
        }
    for (int64_t j = F; j > 0; --j)
        tp[j] = tp[j - 1];
    tp[0] = 0;
    s->c = (dc_csr){.rows = b,
                    .cols = F,
                    .nnz = nnz,
                    .ptr = s->c.ptr,
                    .idx = s->c.idx,
                    .val = s->c.val,
                    .parts = 1,
                    .col_edges = NULL};
    s->c_t = (dc_csr){.rows = F,
                      .cols = b,
                      .nnz = nnz,
                      .ptr = tp,
                      .idx = s->c_t.idx,
                      .val = s->c_t.val,
                      .parts = 1,
                      .col_edges = NULL};
    return DC_OK;
}

/* Forward pass of rows sel[r0..r0+b): s->acts[L] receives the logits. */
static int chunk_forward(chunk_scratch *s, const dc_mlp *net, const dc_rows *x,
                         const int64_t *sel, int64_t r0, int64_t b)
{
    const int64_t L = net->n_layers, *sz = net->sizes;
    int status;
    if (x->ptr != NULL) {
        if ((status = gather_csr_chunk(s, x, sel, r0, b)) != DC_OK)
            return status;
    } else if (x->u8 != NULL) {
        status = sel ? dc_gather_u8(s->acts[0], x->u8, sel + r0, b, x->cols, x->scale, x->shift)
                     : dc_gather_u8(s->acts[0], x->u8 + r0 * x->cols, NULL, b, x->cols,
                                    x->scale, x->shift);
        if (status != DC_OK)
            return status;
    } else {
        status =
            sel ? dc_gather_f32(s->acts[0], x->f32, sel + r0, b, x->cols, x->scale, x->shift)
                : dc_gather_f32(s->acts[0], x->f32 + r0 * x->cols, NULL, b, x->cols, x->scale,
                                x->shift);
        if (status != DC_OK)
            return status;
    }
    for (int64_t l = 0; l < L; ++l) {
        if (l == 0 && x->ptr != NULL) {
            const int64_t out = sz[1];
            const int act = L > 1 ? net->act : DC_ACT_IDENTITY;
            status = dc_spmm(s->acts[1], &s->c, s->w0_t, out, out, 1.0f, 0.0f,
                             net->params + out * sz[0], act, net->act_alpha);
        } else {
            status = mlp_layer_forward(net, l, s->acts[l + 1], s->acts[l], b);
        }
        if (status != DC_OK)
            return status;
    }
    return DC_OK;
}

static int check_args(const dc_mlp *net, const dc_rows *x, int64_t n)
{
    if (net == NULL || x == NULL || n < 0 || net->n_layers < 1 || x->cols != net->sizes[0])
        return DC_ERR_ARG;
    const int kinds = (x->u8 != NULL) + (x->f32 != NULL) + (x->ptr != NULL);
    if (kinds != 1 ||
        (x->ptr != NULL && (x->idx == NULL || x->val == NULL || x->shift != 0.0f)))
        return DC_ERR_ARG;
    return DC_OK;
}

// x holds rows (x->rows, sizes[0]); sel is (n) or NULL; labels is (x->rows) or targets is
// (x->rows, C); grads is (n_params) or NULL
int dc_mlp_loss_grad(double *loss, int64_t *n_correct, float *grads, const dc_mlp *net,
                     int loss_kind, const dc_rows *x, const int64_t *sel, int64_t n,
                     const int64_t *labels, const float *targets)
{
    if (loss == NULL || check_args(net, x, n) != DC_OK)
        return DC_ERR_ARG;
    if (loss_kind == DC_LOSS_SOFTMAX_XENT
            ? labels == NULL
            : (loss_kind != DC_LOSS_SIGMOID_BCE || targets == NULL))
        return DC_ERR_ARG;
    const int64_t L = net->n_layers, *sz = net->sizes, C = sz[L];
    const int sparse = x->ptr != NULL;
    *loss = 0.0;
    if (n_correct != NULL)
        *n_correct = 0;
    if (grads != NULL)
        memset(grads, 0, (size_t)dc_mlp_n_params(L, sz) * sizeof(float));
    if (n == 0)
        return DC_OK;
    chunk_scratch s;
    int status = scratch_alloc(&s, net, x, grads != NULL);
    double total = 0.0;
    int64_t correct = 0;
    for (int64_t r0 = 0; r0 < n && status == DC_OK; r0 += GRAD_CHUNK) {
        const int64_t b = dc_min64(GRAD_CHUNK, n - r0);
        const int acc = r0 > 0;
        if ((status = chunk_forward(&s, net, x, sel, r0, b)) != DC_OK)
            break;
        double part = 0.0;
        int64_t k = 0;
        float *dout = s.delta_a;
        if (loss_kind == DC_LOSS_SOFTMAX_XENT) {
            for (int64_t i = 0; i < b; ++i)
                s.labels[i] = labels[row_of(sel, r0 + i)];
            status = dc_softmax_xent(NULL, grads ? dout : NULL, &part, &k, s.acts[L], s.labels,
                                     b, C, 0.0f);
        } else {
            for (int64_t i = 0; i < b; ++i)
                memcpy(s.targets + i * C, targets + row_of(sel, r0 + i) * C,
                       (size_t)C * sizeof(float));
            status = dc_sigmoid_bce(NULL, grads ? dout : NULL, &part, &k, s.acts[L], s.targets,
                                    b, C);
        }
        if (status != DC_OK)
            break;
        total += part * (double)b;
        correct += k;
        if (grads == NULL)
            continue;
        /* the loss kernels give d(mean over the chunk); the whole set's mean weighs it b/n */
        if ((status = dc_scale(dout, b * C, (float)((double)b / (double)n))) != DC_OK)
            break;
        for (int64_t l = L - 1; l >= 0 && status == DC_OK; --l) {
            float *dinp = dout == s.delta_a ? s.delta_b : s.delta_a;
            if (l == 0 && sparse) {
                /* dW^T (I,O) += X^T (I,b) . dout (b,O); the chunk's transpose is CSR */
                const int64_t out = sz[1];
                status = dc_spmm(s.gw0_t, &s.c_t, dout, out, out, 1.0f, 1.0f, NULL,
                                 DC_ACT_IDENTITY, 0.0f);
                if (status == DC_OK)
                    status = dc_bias_backward(grads + out * sz[0], dout, b, out, out, acc);
                break;
            }
            status = mlp_layer_backward(net, l, l > 0 ? dinp : NULL, grads, dout, s.acts[l],
                                        s.acts[l], NULL, b, acc);
            dout = dinp;
        }
    }
    if (status == DC_OK && grads != NULL && sparse) {
        const int64_t in = sz[0], out = sz[1];
        for (int64_t o = 0; o < out; ++o)
            for (int64_t i = 0; i < in; ++i)
                grads[o * in + i] = s.gw0_t[i * out + o];
    }
    scratch_free(&s, L);
    if (status != DC_OK)
        return status;
    *loss = total / (double)n;
    if (n_correct != NULL)
        *n_correct = correct;
    return DC_OK;
}

// x holds rows (x->rows, sizes[0]); sel is (n) or NULL; out is (n, sizes[n_layers])
int dc_mlp_logits_rows(float *out, const dc_mlp *net, const dc_rows *x, const int64_t *sel,
                       int64_t n)
{
    if (out == NULL || check_args(net, x, n) != DC_OK)
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    const int64_t L = net->n_layers, C = net->sizes[L];
    chunk_scratch s;
    int status = scratch_alloc(&s, net, x, 0);
    for (int64_t r0 = 0; r0 < n && status == DC_OK; r0 += GRAD_CHUNK) {
        const int64_t b = dc_min64(GRAD_CHUNK, n - r0);
        status = chunk_forward(&s, net, x, sel, r0, b);
        if (status == DC_OK)
            memcpy(out + r0 * C, s.acts[L], (size_t)(b * C) * sizeof(float));
    }
    scratch_free(&s, L);
    return status;
}

/*
 * mlp_train.c -- training a whole network over many mini-batches in one call
 * (dc_mlp_train), so Python is not re-entered between layers or batches.
 *
 * Each batch: load (its labels; layer 0's input, sparse or dense), forward (layer by
 * layer, dropout after each hidden layer, softmax + cross-entropy), backward (from the top
 * down; layer 0 behind one call, mlp_layer0.c), update (clip by global norm, then the
 * optimizer on each parameter segment).
 */
#include "mlp_internal.h"

#include <math.h>
#include <stdlib.h>

/* One dc_mlp_train call's network, optimizer and scratch. Index l of act, inp and mask
 * is the input side of layer l (1 <= l < n_layers); layer 0's input is in l0. */
typedef struct {
    const dc_mlp *net;
    dc_optim *opt;
    float *grads;  /* the flat gradient, params' layout (layer 0's weight: l0's) */
    uint64_t seed; /* of the dropout masks */
    int use_dropout;
    layer0 l0;
    int64_t *labels; /* (bs) this batch's labels */
    float **act;     /* act[l]: layer l-1's output after its activation (bs, sizes[l]) */
    float **inp;     /* inp[l]: layer l's input, act[l] after dropout (act[l] without) */
    uint8_t **mask;  /* mask[l]: inp[l]'s dropout mask, or NULL */
    float *logits;   /* (bs, C) */
    float *dlogits;  /* (bs, max width): the gradient flowing down, ping-pong with dnext */
    float *dnext;    /* (bs, max width) */
    float *scratch;  /* owns act, inp (with dropout), logits, dlogits, dnext */
    uint8_t *masks;  /* owns mask[l] */
    int kept;        /* scratch and masks are the keep's (state_free leaves them) */
} train_state;

/* ---- the step ---------------------------------------------------------------------------- */

static int forward(train_state *t, int64_t rows, double *loss, int64_t *correct)
{
    const dc_mlp *net = t->net;
    const int64_t L = net->n_layers;
    for (int64_t l = 0; l < L; ++l) {
        const int64_t o = net->sizes[l + 1];
        const int last = l + 1 == L;
        float *out = last ? t->logits : t->act[l + 1];
        int status = l == 0
                         ? layer0_forward(&t->l0, out, rows, last ? DC_ACT_IDENTITY : net->act)
                         : mlp_layer_forward(net, l, out, t->inp[l], rows);
        if (status == DC_OK && !last && t->use_dropout) {
            /* stream = (update step, layer): masks never depend on threads. 64 layers a
             * step; a deeper network numbers its own (step, layer) pairs, in streams with
             * the top bit set (with 64 a step, its layer l + 64 at step s would draw
             * layer l's mask of step s + 1) */
            const uint64_t step1 = (uint64_t)(t->opt->step + 1);
            const uint64_t stream =
                L <= 64 ? step1 * 64u + (uint64_t)l
                        : (UINT64_C(1) << 63) | (step1 * (uint64_t)L + (uint64_t)l);
            status = dc_dropout_forward(t->inp[l + 1], t->mask[l + 1], out, rows * o,
                                        net->dropout, t->seed, stream);
        }
        if (status != DC_OK)
            return status;
    }
    /* The loss is the batch's mean; the gradient the kernel returns is (p - y) / rows, so
     * a short last batch is weighted as PyTorch weights it. */
    return dc_softmax_xent(NULL, t->dlogits, loss, correct, t->logits, t->labels, rows,
                           net->sizes[L], 0.0f);
}

/* From the logits' gradient down; lr is for layer 0's fused plain-SGD step. */
static int backward(train_state *t, int64_t rows, float lr)
{
    const dc_mlp *net = t->net;
    const int64_t L = net->n_layers;
    float *d = t->dlogits, *dnext = t->dnext;
    for (int64_t l = L - 1; l >= layer0_backward_top(&t->l0); --l) {
        /* mask[l] is NULL without dropout */
        const int status = mlp_layer_backward(net, l, dnext, t->grads, d, t->inp[l], t->act[l],
                                              t->mask[l], rows, 0);
        if (status != DC_OK)
            return status;
        float *tmp = d;
        d = dnext;
        dnext = tmp;
    }
    const layer0_grad g = {
        .dout = d,
        .dmid = dnext,
        .inp1 = L > 1 ? t->inp[1] : NULL,
        .out0 = L > 1 ? t->act[1] : NULL,
        .mask1 = L > 1 ? t->mask[1] : NULL,
        .grads = t->grads,
        .rows = rows,
        .lr = lr,
    };
    return layer0_backward(&t->l0, &g);
}

/* One optimizer step on a segment of n values. `decay` is 0 for biases: L2, L1 and weight
 * decay act on weights only, as in scikit-learn and most recipes. */
static int optimizer_step(const dc_optim *opt, mlp_segment s, int64_t n, float lr, int decay)
{
    const float l2 = decay ? opt->l2 : 0.0f, l1 = decay ? opt->l1 : 0.0f;
    switch (opt->kind) {
    case DC_OPT_SGD:
        return dc_sgd_update(s.p, opt->momentum != 0.0f ? s.grad_avg : NULL, s.g, n, lr,
                             opt->momentum, opt->nesterov, l2, l1);
    case DC_OPT_RMSPROP:
        return dc_rmsprop_update(s.p, s.sq_avg, s.g, n, lr, opt->rho, opt->eps, l2, l1);
    case DC_OPT_ADAM:
        return dc_adam_update(s.p, s.grad_avg, s.sq_avg, s.g, n, lr, opt->beta1, opt->beta2,
                              opt->eps, l2, l1, decay ? opt->weight_decay : 0.0f, opt->step);
    default:
        return DC_ERR_ARG;
    }
}

/* The segment of params starting at offset off. */
static mlp_segment segment_at(const train_state *t, int64_t off)
{
    return (mlp_segment){
        .p = t->net->params + off,
        .g = t->grads + off,
        .grad_avg = t->opt->grad_avg ? t->opt->grad_avg + off : NULL,
        .sq_avg = t->opt->sq_avg ? t->opt->sq_avg + off : NULL,
    };
}

/* Clip the gradient by its global norm (layer 0's layout does not matter to a norm),
 * then one optimizer step on every weight and bias. */
static int update(train_state *t, float lr)
{
    const dc_mlp *net = t->net;
    dc_optim *opt = t->opt;
    if (opt->clip_norm > 0.0f) {
        const int64_t n = dc_mlp_n_params(net->n_layers, net->sizes);
        double ss = 0.0;
        const int st = dc_sum_squares(&ss, t->grads, n); /* (DC_ERR_NOMEM: no clip at all) */
        if (st != DC_OK)
            return st;
        if (!isfinite(ss))
            return DC_ERR_NONFINITE;
        const double norm = sqrt(ss);
        if (norm > (double)opt->clip_norm)
            dc_scale(t->grads, n, (float)((double)opt->clip_norm / (norm + 1e-12)));
    }
    opt->step += 1;
    for (int64_t l = 0; l < net->n_layers; ++l) {
        const int64_t in = net->sizes[l], o = net->sizes[l + 1];
        const int64_t off = mlp_weight_offset(net, l);
        const mlp_segment w =
            l == 0 ? layer0_weight(&t->l0, t->grads, opt) : segment_at(t, off);
        int status = w.p != NULL ? optimizer_step(opt, w, o * in, lr, 1) : DC_OK;
        if (status == DC_OK)
            status = optimizer_step(opt, segment_at(t, off + o * in), o, lr, 0);
        if (status != DC_OK)
            return status;
    }
    return DC_OK;
}

/* Batch rows idx (its input already loaded) through forward, backward and update.
 * DC_ERR_NONFINITE: the loss or the gradient's norm is not finite; nothing updated. */
static int train_batch(train_state *t, dc_train_stats *stats, int64_t rows, float lr)
{
    double loss = 0.0;
    int64_t correct = 0;
    int status = forward(t, rows, &loss, &correct);
    if (status != DC_OK)
        return status;
    if (!isfinite(loss))
        return DC_ERR_NONFINITE;
    stats->loss_sum += loss * (double)rows;
    stats->n_correct += correct;
    stats->n_seen += rows;
    status = backward(t, rows, lr);
    return status == DC_OK ? update(t, lr) : status;
}

/* ---- scratch ----------------------------------------------------------------------------- */

static void state_free(train_state *t)
{
    layer0_close(&t->l0, t->opt);
    if (!t->kept) {
        dc_free_aligned(t->scratch);
        free(t->masks);
    }
    free(t->labels);
    free(t->act);
    free(t->inp);
    free(t->mask);
}

/* Per hidden layer its activation (and, with dropout, the dropped-out copy and mask), the
 * logits and two gradient buffers, each starting on a cache line (see dc_alloc_aligned).
 * With a keep (full-batch descent, one call per step) they are the keep's buffers, reused
 * from call to call: allocated anew, 60,000 rows of 784-128-10 touched ~94 MB of fresh
 * pages per step, and the page faults took ~13% of it. Every element is written before it
 * is read within a batch, so what an earlier call left never reaches a result. */
static int state_alloc(train_state *t, const dc_mlp *net, dc_optim *opt, float *grads,
                       int64_t bs, uint64_t seed, float shift, int64_t n_x, dc_mlp_keep *keep)
{
    const int64_t L = net->n_layers, c = net->sizes[L], width = mlp_max_width(net);
    const int use_dropout = net->dropout > 0.0f && L > 1;
    int64_t hidden_floats = 0, hidden_bytes = 0;
    for (int64_t l = 1; l < L; ++l) {
        hidden_floats += line_floats(bs * net->sizes[l]);
        hidden_bytes += bs * net->sizes[l];
    }
    const size_t n_floats = (size_t)(hidden_floats * (use_dropout ? 2 : 1) +
                                     line_floats(bs * c) + 2 * line_floats(bs * width));
    *t = (train_state){
        .net = net,
        .opt = opt,
        .grads = grads,
        .seed = seed,
        .use_dropout = use_dropout,
        .labels = malloc((size_t)bs * sizeof(int64_t)),
        .act = malloc((size_t)L * sizeof(float *)),
        .inp = malloc((size_t)L * sizeof(float *)),
        .mask = malloc((size_t)L * sizeof(uint8_t *)),
        .kept = keep != NULL,
    };
    if (keep != NULL) {
        t->scratch = mlp_keep_scratch(keep, MLP_KEEP_STATE, (int64_t)n_floats);
        t->masks = use_dropout ? (uint8_t *)mlp_keep_scratch(keep, MLP_KEEP_MASKS,
                                                             (hidden_bytes + 3) / 4)
                               : NULL;
    } else {
        t->scratch = dc_alloc_aligned(n_floats * sizeof(float));
        t->masks = use_dropout ? malloc((size_t)hidden_bytes) : NULL;
    }
    if (!t->labels || !t->act || !t->inp || !t->mask || !t->scratch ||
        (use_dropout && !t->masks))
        return DC_ERR_NOMEM;
    float *cursor = t->scratch;
    uint8_t *mcursor = t->masks;
    t->act[0] = t->inp[0] = NULL; /* layer 0's input is l0's */
    t->mask[0] = NULL;
    for (int64_t l = 1; l < L; ++l) {
        t->act[l] = cursor;
        cursor += line_floats(bs * net->sizes[l]);
        if (use_dropout) {
            t->inp[l] = cursor;
            cursor += line_floats(bs * net->sizes[l]);
            t->mask[l] = mcursor;
            mcursor += bs * net->sizes[l];
        } else {
            t->inp[l] = t->act[l];
            t->mask[l] = NULL;
        }
    }
    t->logits = cursor;
    t->dlogits = t->logits + line_floats(bs * c);
    t->dnext = t->dlogits + line_floats(bs * width);
    return layer0_open(&t->l0, net, opt, bs, shift, n_x, keep);
}

/* Ask for rows idx[0..rows) of x (elem bytes a value, edges[parts] values a row) to be
 * brought into cache. Training gathers random rows of a data set far larger than the
 * caches; prefetching the next batch while this one computes hides that latency (~8% of
 * an MNIST epoch on one thread). With the batch's columns cut into groups (parts > 1),
 * each thread asks for the columns it will gather itself, as csr_gather shares the
 * groups out, into its own core's cache. One thread asking for whole rows took ~10% of a
 * two-thread step of 784-128-10 at batch 128 while the other waited, and its partner then
 * counted its columns ~3x slower (they were in the other core's cache); shared out, the
 * epoch ran ~6% faster. */
static void prefetch_rows(const void *x, const int64_t *idx, int64_t rows, int64_t elem,
                          const int64_t *edges, int64_t parts)
{
    const char *base = (const char *)x;
    const int64_t F = edges[parts];
    const int nt = dc_csr_group_threads(rows, F, parts, dc_get_num_threads());
    dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int64_t p0, p1;
        dc_csr_thread_groups(dc_team_thread(), dc_team_size(), parts, &p0, &p1);
        const int64_t c0 = edges[p0], c1 = edges[p1];
        for (int64_t r = 0; r < rows; ++r)
            dc_prefetch_bytes(base + (idx[r] * F + c0) * elem, (c1 - c0) * elem);
    }
}

int dc_mlp_train(dc_train_stats *stats, const dc_mlp *net, dc_optim *opt, float *grads,
                 const uint8_t *x_u8, const float *x_f32, const int64_t *labels,
                 const int64_t *order, int64_t n_order, int64_t batch_size, const float *lrs,
                 float scale, float shift, uint64_t seed, const dc_augment *aug, int64_t n_x,
                 dc_mlp_keep *keep)
{
    const int64_t f = net->sizes[0];
    const int64_t bs = dc_min64(batch_size, n_order);
    const void *x = x_u8 ? (const void *)x_u8 : (const void *)x_f32;
    const int64_t elem = x_u8 ? 1 : (int64_t)sizeof(float), row_bytes = f * elem;
    *stats = (dc_train_stats){.loss_sum = stats->loss_sum, .failed_batch = -1};
    if (net->sparse_split < 0 || net->sparse_split > f)
        return DC_ERR_ARG;
    if (n_order == 0 || bs <= 0)
        return DC_OK;

    if (aug != NULL && aug->height * aug->width != f)
        return DC_ERR_ARG;

    train_state t;
    /* (augmented batches are loaded from their deformed images, never from keep) */
    int status = state_alloc(&t, net, opt, grads, bs, seed, shift, n_x, aug ? NULL : keep);
    /* the batch's deformed images, loaded from here instead of x */
    const uint64_t aug_seed = dc_hash64(seed, DC_AUG_SEED_STREAM, 0);
    void *deformed = NULL;
    if (status == DC_OK && aug != NULL && (deformed = malloc((size_t)(bs * row_bytes))) == NULL)
        status = DC_ERR_NOMEM;
    const int64_t n_batches = dc_cdiv64(n_order, bs);
    team_choice team;
    team_open(&team);
    for (int64_t j = 0; j < n_batches && status == DC_OK; ++j) {
        const int64_t r0 = j * bs;
        const int64_t rows = dc_min64(n_order - r0, bs);
        const int64_t next_rows = dc_min64(n_order - r0 - rows, bs);
        const int64_t *idx = order + r0;
        for (int64_t r = 0; r < rows; ++r)
            t.labels[r] = labels[idx[r]];
        team_begin(&team); /* the whole batch (its loading is threaded too) */
        if (aug == NULL) {
            status = layer0_load(&t.l0, x_u8, x_f32, idx, rows, scale, shift);
        } else {
            const uint64_t stream = (uint64_t)opt->step + 1;
            uint8_t *d8 = x_u8 ? (uint8_t *)deformed : NULL;
            float *d32 = x_u8 ? NULL : (float *)deformed;
            status = x_u8 ? dc_augment_u8(d8, x_u8, idx, rows, aug, aug_seed, stream)
                          : dc_augment_f32(d32, x_f32, idx, rows, aug, aug_seed, stream);
            if (status == DC_OK)
                status = layer0_load(&t.l0, d8, d32, NULL, rows, scale, shift);
        }
        if (status == DC_OK && next_rows > 0) {
            /* (the augmentation kernel reads whole images, on any thread) */
            const int64_t whole[2] = {0, f};
            const int grouped = t.l0.blocked && aug == NULL;
            prefetch_rows(x, idx + rows, next_rows, elem, grouped ? t.l0.edges : whole,
                          grouped ? DC_SPARSE_GROUPS : 1);
        }
        if (status == DC_OK)
            status = train_batch(&t, stats, rows, lrs[j]);
        team_end(&team, rows);
        if (status == DC_ERR_NONFINITE)
            stats->failed_batch = j;
    }
    team_close(&team);
    free(deformed);
    state_free(&t);
    return status;
}

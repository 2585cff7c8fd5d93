/*
 * mlp_internal.h -- private contract between the files that run a whole network
 * (dc_mlp, digitcore.h):
 *
 *   mlp_infer.c   inference in blocks of rows over the threads; evaluation in chunks
 *   mlp_train.c   the training step: load, forward, backward, update, batch after batch
 *   mlp_layer0.c  layer 0, whatever its input: dense rows, or a sparse batch with the weight
 *                 held transposed by column blocks for the call
 *   mlp_phases.c  the OpenMP scheduler that runs layer 0's sparse work in fixed units
 *   team.c        whether the next training batch runs on the whole team or on one thread
 *   mlp_grad.c    loss and gradient over a set of rows (full-batch solvers, BCE, CSR input)
 *   mlp_keep.c    the data set's sparse form kept between calls (full-batch training)
 *
 * These files own the order of operations and the scratch memory; the arithmetic is the
 * public kernels' (nn.c, loss.c, gemm.c, sparse.c), except for layer 0's sum of its two input
 * groups' partial products (mlp_layer0.c, head_block).
 */
#ifndef DC_MLP_INTERNAL_H
#define DC_MLP_INTERNAL_H

#include <stdint.h>

#include "common.h"
#include "digitcore.h"
#include "sparse_internal.h" /* DC_SPMM_BLOCK */

/* ---- layout of the parameters and scratch ------------------------------------------------ */

/* Offset of layer l's weight in the flat parameter array; its bias follows it. */
static inline int64_t mlp_weight_offset(const dc_mlp *net, int64_t l)
{
    return dc_mlp_n_params(l, net->sizes);
}

/* The widest layer output (the input's width is not counted: its rows have buffers of
 * their own). Training's two gradient buffers are (batch, this): counting the 784
 * inputs made them 2 x 188 MB for a full MNIST batch of 784-10-10, mapped afresh at
 * every step (too large for malloc to keep), where 2 x 2.4 MB are used. */
static inline int64_t mlp_max_width(const dc_mlp *net)
{
    int64_t w = 0;
    for (int64_t l = 1; l <= net->n_layers; ++l)
        if (net->sizes[l] > w)
            w = net->sizes[l];
    return w;
}

/* n floats rounded up to whole cache lines: the next buffer carved after them starts on
 * a line of its own. */
static inline int64_t line_floats(int64_t n)
{
    const int64_t per = DC_ALIGN / (int64_t)sizeof(float);
    return (n + per - 1) / per * per;
}

/* ---- one dense layer (the training step, mlp_grad.c) ----------------------------------------
 */

/* Layer l forward: out (rows, sizes[l+1]) = act(inp (rows, sizes[l]) . W_l^T + b_l), with
 * the hidden activation, none on the last layer (its logits). */
static inline int mlp_layer_forward(const dc_mlp *net, int64_t l, float *out, const float *inp,
                                    int64_t rows)
{
    const int64_t in = net->sizes[l], o = net->sizes[l + 1];
    const float *w = net->params + mlp_weight_offset(net, l);
    const int act = l + 1 == net->n_layers ? DC_ACT_IDENTITY : net->act;
    return dc_dense_forward(out, inp, w, w + o * in, rows, in, o, act, net->act_alpha);
}

/* Layer l backward from dout (rows, sizes[l+1]): its weight and bias gradients into grads
 * (params' layout; added to what is there when accumulate), and, unless dinp is NULL, the
 * gradient before the previous layer's activation, dinp (rows, sizes[l]) =
 * f'(out) * dropout'(dout . W_l), from that layer's output `out` (after its activation,
 * before dropout) and the dropout mask of inp (NULL: none). */
static inline int mlp_layer_backward(const dc_mlp *net, int64_t l, float *dinp, float *grads,
                                     const float *dout, const float *inp, const float *out,
                                     const uint8_t *mask, int64_t rows, int accumulate)
{
    const int64_t in = net->sizes[l], o = net->sizes[l + 1];
    const int64_t off = mlp_weight_offset(net, l);
    int status = dc_dense_backward(dinp, grads + off, grads + off + o * in, dout, inp,
                                   net->params + off, rows, in, o, accumulate);
    if (status == DC_OK && dinp != NULL && mask != NULL)
        status = dc_dropout_backward(dinp, dinp, mask, rows * in, net->dropout);
    if (status == DC_OK && dinp != NULL)
        status = dc_activation_backward(dinp, dinp, out, rows * in, net->act, net->act_alpha);
    return status;
}

/* ---- the input, dense or sparse (mlp_layer0.c) ------------------------------------------- */

/* Whether batches of up to `rows` rows may take the first layer on sparse input: a zero
 * pixel must stay zero after conversion (no shift), and indices must fit int32. */
int mlp_sparse_allowed(const dc_mlp *net, float shift, int64_t rows);
/* Entries a CSR buffer for `rows` rows holds: a quarter of the inputs (a denser batch
 * takes the dense path, and the buffer stays smaller than the dense one), or all of them
 * when the sparse path is forced. */
int64_t mlp_sparse_capacity(const dc_mlp *net, int64_t rows);
/* Rows idx (NULL: the first `rows`) of x (x_u8 or x_f32, the other NULL) converted as
 * x * scale + shift, dense (mlp_load_rows) or as CSR, and as CSC in xt if xt is not
 * NULL (mlp_gather_csr, see dc_csr_gather_u8; shift is 0 there). */
int mlp_load_rows(float *dst, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                  int64_t rows, int64_t features, float scale, float shift);
int mlp_gather_csr(dc_csr *x, dc_csr *xt, int64_t capacity, const uint8_t *x_u8,
                   const float *x_f32, const int64_t *idx, int64_t rows, int64_t features,
                   float scale);
/* A CSR matrix's arrays: ptr_n row starts and cap entries; free(NULL)s are fine. */
int csr_alloc(dc_csr *s, int64_t ptr_n, int64_t cap);
void csr_free(dc_csr *s);
/* dst (cols, rows) = src (rows, cols)^T */
void mlp_transpose(float *dst, const float *src, int64_t rows, int64_t cols);

/* ---- layer 0 in training (mlp_layer0.c) -------------------------------------------------- */

/* Layer 0's input columns (pixels) are cut into this many groups for the sparse
 * products, one per thread on two cores (see mlp_layer0.c). */
#define DC_SPARSE_GROUPS 2

/* Layer 0 for one dc_mlp_train call. When the sparse path is allowed (`blocked`), its
 * weight and optimizer state are held transposed by column blocks for the whole call,
 * and each batch is gathered sparse when it fits the buffer, dense otherwise; else layer
 * 0 is a plain dense layer on the dense rows. */
typedef struct {
    const dc_mlp *net;
    int blocked;   /* weight held as (I, O) column blocks for the call */
    int fused_sgd; /* plain SGD: the weight gradient is applied as it is computed */
    float *wt;     /* (I, O) weight of layer 0, by column blocks */
    float *grad_avg_t, *sq_avg_t; /* the optimizer's state for it, same layout (or NULL) */
    dc_csr x, xt;                 /* the batch and its transpose */
    int64_t capacity;             /* entries x has room for */
    int64_t edges[DC_SPARSE_GROUPS + 1]; /* the input column groups (x.col_edges) */
    float *partial;                      /* forward partial sums of groups 1.. */
    int64_t partial_floats;              /* floats of each */
    float *dense;       /* (bs, I) dense batch, allocated when a batch first needs it
                         * (in keep's slot MLP_KEEP_ROWS when there is a keep) */
    int64_t bs;         /* rows a batch may have */
    int is_sparse;      /* this batch is sparse: in x/xt, or rows sel of kept (else in dense) */
    const float *bg;    /* (I) the sparse batch is its entries off this background
                         * (net->sparse_offset, float input), or NULL: off zeros */
    dc_mlp_keep *keep;  /* the data set's sparse form across calls, or NULL */
    int64_t n_x;        /* x's rows */
    const dc_csr *kept; /* this batch is rows sel of kept (is_sparse), or NULL */
    const int64_t *sel;
    const int32_t *kept_count; /* (I) kept's entries per column: the batch's too */
    float *acc;                /* the sweep's accumulators (dc_spmm_t_sel), in keep */
    int in_order;              /* the batch is kept's rows in their own order (sel[r] == r) */
    float *out0; /* (n_x, O) the forward's group-0 product in x's row order, in keep (the
                  * other groups' go to partial in the same order), unless in_order: then
                  * it goes straight into the layer's output (NULL) */
    float *padw; /* (I, 16) the weight with rows of 16 floats, when O <= 16 (full batches) */
} layer0;

/* What layer 0's backward needs from the training step. On a sparse batch of a network
 * of two or more layers it also takes layer 1's backward (layer0_backward_top), column
 * block by column block, so that each thread's blocks of layer 0's output stay in its
 * cache from the forward to the weight gradient. */
typedef struct {
    const float *dout;    /* the output gradient of the top layer it takes (rows, sizes[top]) */
    float *dmid;          /* scratch (rows, sizes[1]): layer 0's output gradient when it
                           * takes layer 1 too */
    const float *inp1;    /* layer 1's input (layer 0's output after dropout) */
    const float *out0;    /* layer 0's output (its activation, before dropout) */
    const uint8_t *mask1; /* dropout mask of inp1, or NULL */
    float *grads;         /* the flat gradient (layer 0's weight part in wt's layout) */
    int64_t rows;
    float lr; /* the fused SGD step's */
} layer0_grad;

/* Allocate for batches of up to bs rows, and hold the weight (and opt's state) as column
 * blocks when the sparse path is allowed. On failure nothing is held (layer0_close is
 * still to be called). */
int layer0_open(layer0 *l0, const dc_mlp *net, const dc_optim *opt, int64_t bs, float shift,
                int64_t n_x, dc_mlp_keep *keep);
/* The batch: rows idx of x, sparse when allowed and it fits, dense otherwise. */
int layer0_load(layer0 *l0, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                int64_t rows, float scale, float shift);
/* out (rows, sizes[1]) = act(batch . W^T + b) */
int layer0_forward(layer0 *l0, float *out, int64_t rows, int act);
/* The lowest layer the training step's backward loop takes itself: 2 when layer0_backward
 * also takes layer 1, else 1. */
int64_t layer0_backward_top(const layer0 *l0);
int layer0_backward(layer0 *l0, const layer0_grad *g);
/* A stretch of parameters as the optimizer sees it: the parameters, their gradient and
 * the optimizer's state (dc_optim's grad_avg, sq_avg; NULL where it has none), all in the
 * same layout. */
typedef struct {
    float *p, *g, *grad_avg, *sq_avg;
} mlp_segment;
/* Layer 0's weight segment; p is NULL when the fused SGD step has already applied it. */
mlp_segment layer0_weight(const layer0 *l0, float *grads, const dc_optim *opt);
/* Put the weight (and state) back as (O, I) and free everything. */
void layer0_close(layer0 *l0, const dc_optim *opt);

/* ---- the data set's sparse form kept between calls (mlp_keep.c) ----------------------- */

/* Full-batch descent loads the same n rows every step, in a new order each epoch. The
 * kept form is x's rows in CSR, cut into layer 0's column groups like a batch's (parts
 * at `edges`), in x's row order. For a batch that is a permutation of x's rows, the
 * forward's products run over the kept rows in x's order (streaming through memory), and
 * batch row r takes row idx[r] of them when the groups are summed; the weight gradient
 * sweeps the kept rows in batch order (dc_spmm_t_sel). The sums are a gathered batch's,
 * in the same order, without gathering it or building its transpose. */
enum {
    MLP_KEEP_ACC,
    MLP_KEEP_OUT0,
    MLP_KEEP_STATE,
    MLP_KEEP_MASKS,
    MLP_KEEP_ROWS,
    MLP_KEEP_SLOTS
};
struct dc_mlp_keep {
    const void *x; /* what the kept form is of: the key (see dc_mlp_keep_clear) */
    int64_t n, f;
    float scale;
    int64_t split; /* edges[1] */
    int mode;      /* net->sparse_input */
    int state;     /* MLP_KEEP_EMPTY, _SPARSE or _DENSE */
    dc_csr csr;    /* x's rows, parts at edges */
    int64_t edges[DC_SPARSE_GROUPS + 1];
    int32_t *count;                 /* (f) entries of each column */
    uint8_t *seen;                  /* (n) scratch of the permutation check */
    float *scratch[MLP_KEEP_SLOTS]; /* the full batch's buffers, kept too (no page faults) */
    int64_t scratch_floats[MLP_KEEP_SLOTS];
};
enum { MLP_KEEP_EMPTY = 0, MLP_KEEP_SPARSE = 1, MLP_KEEP_DENSE = 2 };

/* How a batch of rows idx[0..n) of x (n = x's rows), x * scale, goes into layer 0 with
 * net's column groups at edges: *use = MLP_KEEP_SPARSE (rows idx of k->csr, built first
 * if k holds nothing for this x), MLP_KEEP_DENSE (x is too dense for the sparse buffer:
 * the dense path, as the gather would find) or MLP_KEEP_EMPTY (idx is not a permutation
 * of x's rows: gather it as usual). Errors: DC_ERR_NOMEM. */
int mlp_keep_lookup(dc_mlp_keep *k, int *use, const dc_mlp *net, const int64_t *edges,
                    const uint8_t *x_u8, const float *x_f32, const int64_t *idx, int64_t n,
                    float scale);
/* k's scratch buffer `slot` (MLP_KEEP_ACC: the sweep's accumulators; MLP_KEEP_OUT0: the
 * forward's group-0 product in x's row order; MLP_KEEP_STATE and MLP_KEEP_MASKS: a
 * training call's activations, logits and gradients, and its dropout masks, see
 * mlp_train.c's state_alloc; MLP_KEEP_ROWS: the dense rows of a batch that takes the
 * dense path, see layer0_load), at least `floats` of them, aligned; NULL when out of
 * memory. Its contents are whatever the last call left. */
float *mlp_keep_scratch(dc_mlp_keep *k, int slot, int64_t floats);

/* ---- the phase scheduler (mlp_phases.c) -------------------------------------------------- */

/* A unit of layer 0's sparse work: column block b of its outputs (g = -1), or the pair
 * (input group g, block b). */
typedef int (*mlp_unit_fn)(const void *job, int64_t g, int64_t b);
/* A phase: fn on every block (pairs = 0) or on every (group, block) pair (pairs = 1);
 * span, unless NULL, first on each thread's run of units [u0, u1) (mlp_phases.c's
 * phase_share: a fixed run; the whole phase on one thread). */
typedef struct {
    mlp_unit_fn fn;
    int pairs;
    int (*span)(const void *job, int64_t u0, int64_t u1);
} mlp_phase;
/* Phase a over its units, then phase b (unless its fn is NULL), for n_blocks column
 * blocks; in one parallel region when `work` (multiply-adds) is worth sharing, on this
 * thread otherwise. */
int mlp_run_phases(const void *job, int64_t n_blocks, int64_t work, mlp_phase a, mlp_phase b);
/* The threads mlp_run_phases would run those phases on now. */
int mlp_phase_threads(int64_t n_blocks, int64_t work);

/* ---- team.c: the team's size batch by batch --------------------------------------------- */

/* One dc_mlp_train call's view of the choice; the choice itself is the process's. */
typedef struct {
    int full;               /* dc_get_num_threads() when the call began */
    int policy;             /* DC_TEAM_*; FIXED when full is 1 */
    int single;             /* the batch being run is on one thread */
    int icv;                /* the OpenMP thread setting to restore after a one-thread batch */
    int in_probe;           /* windows of the two ways alternate (team.c, window_done) */
    int probing;            /* the current window runs the other way */
    int pairs;              /* windows of the other way in this probe */
    int slow;               /* windows in a row slower than base by TEAM_TRIGGER */
    int64_t batch, rows, n; /* batches of this call; rows and batches of this window */
    double t0, secs;        /* the batch's start; this window's seconds so far */
    double cur_secs, oth_secs; /* this probe's windows of the way in use, of the other */
    int64_t cur_rows, oth_rows;
    double ref;  /* seconds per row of the last window of the way in use */
    double base; /* seconds per row the way in use was confirmed at (0: none yet) */
} team_choice;

void team_open(team_choice *c);
/* around each batch: team_begin sets this thread's count, team_end restores it and times */
void team_begin(team_choice *c);
void team_end(team_choice *c, int64_t rows);
/* after the call's last batch: decides a probe the call ended in */
void team_close(team_choice *c);
/* around an inference call of `work` multiply-adds (mlp_infer.c, infer_work): one thread
 * while training's finding is fresh, or when the call is small (team.c); team_infer_begin
 * returns what team_infer_end restores (0: nothing changed) */
int team_infer_begin(double work);
void team_infer_end(int icv);

#endif /* DC_MLP_INTERNAL_H */

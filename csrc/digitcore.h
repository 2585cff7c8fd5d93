/*
 * digitcore.h -- the one public header of digitcore's C kernels.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - float32 compute, int64_t sizes, row-major C-contiguous arrays unless a leading
 *    dimension is passed;
 *  - outputs first, then const inputs, then dimensions and scalars;
 *  - every function returns a status (DC_OK == 0); C never prints, exits or touches
 *    Python, and frees its scratch memory on every path;
 *  - the caller (Cython) has validated shapes, dtypes and aliasing: kernels trust it,
 *    except for data-dependent errors (a label out of range) which they report.
 *
 * Overwrite-or-accumulate rule: outputs are overwritten unless the function takes an
 * `accumulate` flag (or a GEMM beta) and it is non-zero, in which case results are
 * added to what the output holds.
 */
#ifndef DIGITCORE_H
#define DIGITCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------------ */
enum {
    DC_OK = 0,
    DC_ERR_NOMEM = 1,       /* an allocation failed */
    DC_ERR_ARG = 2,         /* an argument is invalid (caller bug: Cython should catch it) */
    DC_ERR_LABEL = 3,       /* a class label is outside [0, n_classes) */
    DC_ERR_UNSUPPORTED = 4, /* asked for a kernel path this CPU/build does not have */
    DC_ERR_NONFINITE = 5,   /* a loss or value became NaN or infinite */
    DC_ERR_CAPACITY = 6,    /* a result does not fit the buffer the caller gave */
    DC_ERR_CHANGED = 7      /* the input changed while a kernel read it twice (another
                             * thread wrote to it): nothing was written out of bounds */
};

/* ---- kernel path, threads ---------------------------------------------------------------- */
enum { DC_KERNEL_GENERIC = 0, DC_KERNEL_AVX2 = 1 };

int dc_cpu_has_avx2(void);      /* AVX2 && FMA && OS saves YMM state; detected once */
int dc_kernel_path(void);       /* the path in use */
int dc_select_kernel(int path); /* DC_ERR_UNSUPPORTED if the CPU lacks it */
/* On CPUs with AVX-512 (F, CD, DQ, BW and VL, and an OS that saves its state) the AVX2
 * path runs kernels 512 bits wide: the GEMM's 6x32 tile, the sparse products' row kernel
 * and full-batch sweep, and the uint8 augmentation's pixel loop, each with the bits of its
 * 256-bit twin. dc_use_avx512(0) keeps the 256-bit ones, (1) asks for the wide ones
 * (DC_ERR_UNSUPPORTED without the CPU or the build's support); dc_avx512_active() says
 * whether the AVX2 path runs them now. */
int dc_cpu_has_avx512(void);
int dc_use_avx512(int on);
int dc_avx512_active(void);
/* The most threads a kernel runs on. libgomp does not survive teams far past it: it
 * overflows its stack starting a team of ~100,000 (SIGSEGV) and exits the process when it
 * cannot create one of ~40,000; dc_get_num_threads never answers more, whatever
 * dc_set_num_threads or OMP_NUM_THREADS asked for. */
#define DC_MAX_THREADS 1024
void dc_set_num_threads(int n); /* n <= 0: default (omp_get_max_threads()) */
int dc_get_num_threads(void);   /* effective count, 1..DC_MAX_THREADS; 1 without OpenMP */
/* Whether a kernel has run a parallel region of more than one thread in this process,
 * built with GCC's OpenMP runtime, which cannot start a team in a child forked after that
 * (0 with other runtimes) */
int dc_team_started(void);
int dc_have_openmp(void);
/* How dc_mlp_train sizes its team batch by batch (team.c). ADAPTIVE (the default) runs a
 * batch on one thread instead of the team while that is measured faster (the team waits
 * for a thread that shares its core), and dc_mlp_forward/evaluate follow that finding for
 * 0.1 s and run a call of under 8M multiply-adds on one thread; FIXED always uses
 * dc_get_num_threads(); ALTERNATE switches every batch and every inference call (tests:
 * the bits must not change). DC_ERR_ARG for another value. */
enum { DC_TEAM_FIXED = 0, DC_TEAM_ADAPTIVE = 1, DC_TEAM_ALTERNATE = 2 };
int dc_set_team_policy(int policy);
int dc_get_team_policy(void);
/* out: training batches and inference calls run on one thread, training batches run on
 * the team, and probes, since the process began (counted without locks: diagnostics, not
 * exact under concurrent calls) */
void dc_team_counts(int64_t out[3]);
/* Tests of the adaptive choice: `calls` training calls of `batches` batches of `rows` rows,
 * `pause` seconds apart, on a simulated clock, from a fresh state. A batch run on one
 * thread takes secs_per_row[2 b] seconds a row, on the team secs_per_row[2 b + 1]
 * (b = call * batches + batch); single[b] says which way it ran. The policy and counts are
 * restored after. Not for use while the process trains. DC_ERR_ARG for bad sizes. */
int dc_team_simulate(uint8_t *single, const double *secs_per_row, int64_t calls,
                     int64_t batches, int64_t rows, double pause);

/* ---- GEMM -------------------------------------------------------------------------------- */
/* C (m,n) = alpha * op(A) * op(B) + beta * C
 * op(A) is (m,k): A is (m,k) with lda >= k, or if trans_a, A is (k,m) with lda >= m.
 * op(B) is (k,n): B is (k,n) with ldb >= n, or if trans_b, B is (n,k) with ldb >= k.
 * beta == 0: C is overwritten (old contents ignored, even NaN). */
int dc_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc);
/* Same contract, naive loops: the oracle and the fallback. */
int dc_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

/* ---- activations ------------------------------------------------------------------------- */
enum {
    DC_ACT_IDENTITY = 0,
    DC_ACT_RELU = 1,
    DC_ACT_LEAKY_RELU = 2, /* slope `alpha` for x < 0 */
    DC_ACT_SIGMOID = 3,
    DC_ACT_TANH = 4
};

/* out (n) = f(inp (n)); out may equal inp (in place). */
int dc_activation_forward(float *out, const float *inp, int64_t n, int act, float alpha);
/* dinp (n) = dout (n) * f'(x), computed from the forward OUTPUT out = f(x) (every
 * supported f has a derivative expressible in its output). dinp may equal dout. */
int dc_activation_backward(float *dinp, const float *dout, const float *out, int64_t n, int act,
                           float alpha);

/* ---- dense layer ------------------------------------------------------------------------- */
/* out (B,O) = act(inp (B,I) . weight (O,I)^T + bias (O)); bias may be NULL.
 * (I = n_in, O = n_out; the parameters are not named I because <complex.h> defines I.) */
int dc_dense_forward(float *out, const float *inp, const float *weight, const float *bias,
                     int64_t B, int64_t n_in, int64_t n_out, int act, float alpha);
/* Given dout (B,O), the gradient w.r.t. the pre-activation:
 *   dinp (B,I)    = dout . weight          (overwritten; NULL to skip)
 *   dweight (O,I) = dout^T . inp           (accumulated into if `accumulate`)
 *   dbias (O)     = sum over B of dout     (accumulated into if `accumulate`; NULL to skip) */
int dc_dense_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                      const float *inp, const float *weight, int64_t B, int64_t n_in,
                      int64_t n_out, int accumulate);
/* dbias (O) (+)= sum over the B rows of dout, rows ld >= O floats apart (a block of
 * columns of a wider gradient), added in double row after row: dc_dense_backward's bias
 * gradient, same bits. */
int dc_bias_backward(float *dbias, const float *dout, int64_t B, int64_t n_out, int64_t ld,
                     int accumulate);

/* ---- softmax and loss -------------------------------------------------------------------- */
/* probs (B,C) = softmax(logits (B,C)) row-wise, max-subtracted. probs may equal logits. */
int dc_softmax_forward(float *probs, const float *logits, int64_t B, int64_t C);
/* y (n) = exp(d) for d (n) <= 0 as the softmaxes take it, the same bits on every kernel
 * path: within one unit in the last place, 0 below -708, NaN for NaN (d > 0 is not
 * supported). y may equal d. DC_ERR_ARG if n < 0. */
int dc_softmax_exp(double *y, const double *d, int64_t n);
/* Fused softmax + cross-entropy with integer labels (B), optional label smoothing s:
 * target = (1-s) * onehot + s / C.
 *   probs (B,C)   softmax (may be NULL; may equal logits)
 *   dlogits (B,C) = (probs - target) / B (may be NULL; may equal logits)
 *   loss          mean cross-entropy over the batch (double)
 *   n_correct     rows whose argmax equals the label (may be NULL)
 * DC_ERR_LABEL if any label is outside [0, C). */
int dc_softmax_xent(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                    const float *logits, const int64_t *labels, int64_t B, int64_t C,
                    float label_smoothing);

/* Fused sigmoid + binary cross-entropy against targets (B,C) in [0, 1] (multilabel
 * outputs, each column its own two-class problem):
 *   probs (B,C)   sigmoid(logits) (may be NULL; may equal logits)
 *   dlogits (B,C) = (probs - targets) / B (may be NULL; may equal logits)
 *   loss          mean over the B rows of the sum over the C columns of
 *                 -(t log p + (1-t) log(1-p)), from the logits (softplus form, double)
 *   n_correct     rows whose every column is on the target's side of 0.5 (may be NULL) */
int dc_sigmoid_bce(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                   const float *logits, const float *targets, int64_t B, int64_t C);

/* ---- input conversion -------------------------------------------------------------------- */
/* out (B,F) = rows idx[0..B) of inp (N,F) as float32, times scale plus shift.
 * idx may be NULL (rows 0..B). Indices are trusted (validated by the caller). */
int dc_gather_u8(float *out, const uint8_t *inp, const int64_t *idx, int64_t B, int64_t F,
                 float scale, float shift);
int dc_gather_f32(float *out, const float *inp, const int64_t *idx, int64_t B, int64_t F,
                  float scale, float shift);

/* ---- sparse input (sparse.c) ------------------------------------------------------------
 * Digit images are mostly background: about 81% of MNIST's pixels are 0. The first layer
 * can skip them: its forward product and its weight gradient cost ~nnz*O instead of
 * B*I*O. A batch is held in compressed sparse row (CSR) form. */
typedef struct {
    int64_t rows, cols;       /* the dense shape */
    int64_t nnz;              /* entries used */
    int64_t *ptr;             /* parts * (rows + 1): see parts */
    int32_t *idx;             /* column of each entry, increasing within a row */
    float *val;               /* value of each entry (never 0 when built by the gathers) */
    int64_t parts;            /* >= 1. Row r's entries are, in order, the ranges
                               * [ptr[p * (rows+1) + r], ptr[p * (rows+1) + r + 1]) for
                               * p = 0..parts-1 (plain CSR: parts = 1, [ptr[r], ptr[r+1])). */
    const int64_t *col_edges; /* parts + 1 increasing columns from 0 to cols, part p
                               * holding columns [col_edges[p], col_edges[p+1]): the
                               * transposing gather's input (NULL for one part) */
} dc_csr;

/* out = rows idx[0..B) (idx may be NULL: rows 0..B) of inp (N,F), times scale, keeping
 * the non-zero entries (uint8: byte != 0; float: value * scale != 0, NaN kept), in CSR
 * form; idx/val must hold `capacity` entries. Without out_t, plain CSR (out->parts set to
 * 1; ptr holds B+1 entries). With out_t, the same pass also builds the batch transposed
 * into out_t (compressed sparse column form, out_t->rows = F, one part: ptr holds F+1
 * entries, idx/val `capacity`; each of its rows lists the batch rows in increasing
 * order), and out is cut by columns into parts as set by the caller in out->parts and
 * out->col_edges (1..4096 parts; ptr holds parts * (B+1) entries; a part may be empty;
 * bad edges are DC_ERR_ARG). Threads take whole parts and write only their own stretch
 * of memory; the entries, and so the result of dc_spmm, do not depend on the number of
 * parts or threads. DC_ERR_CAPACITY (out->nnz then holds the count needed) if there are
 * more than `capacity` non-zeros: the caller then takes the dense path. out_t's idx and
 * val may both be NULL: then only its ptr (the column starts) is made. */
int dc_csr_gather_u8(dc_csr *out, dc_csr *out_t, int64_t capacity, const uint8_t *inp,
                     const int64_t *idx, int64_t B, int64_t F, float scale);
int dc_csr_gather_f32(dc_csr *out, dc_csr *out_t, int64_t capacity, const float *inp,
                      const int64_t *idx, int64_t B, int64_t F, float scale);
/* out (R,N) = act(alpha * (S . D) + beta * out + bias) with S (R,K) sparse and D (K,N)
 * dense (leading dimension ldd >= N); bias (N) may be NULL; beta 0 overwrites. Rows of
 * S without entries leave out's row at act(beta * out + bias) (with beta == 1, bias
 * NULL and act identity: untouched, exactly). The first layer's forward is
 * S = input batch, D = weight^T; its weight gradient is S = input^T, D = dout, and with
 * alpha = -lr, beta = 1, out = weight^T that is a fused plain-SGD step. Each output's
 * bits depend only on its own row of S and column of D: identical for any thread count. */
int dc_spmm(float *out, const dc_csr *s, const float *d, int64_t ldd, int64_t N, float alpha,
            float beta, const float *bias, int act, float act_alpha);
/* out (B,O) = act(out + bias) in place, row by row (the dense layer's epilogue). */
int dc_bias_act(float *out, const float *bias, int64_t B, int64_t O, int act, float alpha);

/* ---- optimizers (one fused loop each, in place on param and state) ----------------------- */
/* L2 penalty `l2` adds l2 * param to the gradient, L1 penalty `l1` adds its subgradient
 * l1 * sign(param) (0 where param == 0); decoupled weight decay `wd` (AdamW) subtracts
 * lr * wd * param. Momentum 0 = plain SGD (velocity may then be NULL). */
int dc_sgd_update(float *param, float *velocity, const float *grad, int64_t n, float lr,
                  float momentum, int nesterov, float l2, float l1);
int dc_rmsprop_update(float *param, float *sq_avg, const float *grad, int64_t n, float lr,
                      float rho, float eps, float l2, float l1);
/* step counts from 1 (bias correction uses beta^step). */
int dc_adam_update(float *param, float *m, float *v, const float *grad, int64_t n, float lr,
                   float beta1, float beta2, float eps, float l2, float l1, float wd,
                   int64_t step);
/* out = sum of squares of x (n), accumulated in double. */
int dc_sum_squares(double *out, const float *x, int64_t n);
/* x (n) *= s */
int dc_scale(float *x, int64_t n, float s);

/* ---- randomness, dropout ----------------------------------------------------------------- */
/* Counter-based: value i depends only on (seed, stream, i), never on threads. */
uint64_t dc_hash64(uint64_t seed, uint64_t stream, uint64_t i);
/* out (n) = inp * keep / (1 - p), keep[i] = (uniform(seed, stream, i) >= p); mask (n)
 * receives keep (0/1). out may equal inp. p in [0, 1). */
int dc_dropout_forward(float *out, uint8_t *mask, const float *inp, int64_t n, float p,
                       uint64_t seed, uint64_t stream);
/* dinp (n) = dout * mask / (1 - p). dinp may equal dout. */
int dc_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, int64_t n,
                        float p);

/* ---- augmentation (augment.c) ----------------------------------------------------------
 * Random deformations of training images, composed into one inverse map per image and
 * resampled bilinearly once (zero outside the image). Each parameter is drawn uniformly
 * from [-max, max] per image; 0 switches that part off. */
typedef struct {
    float rotate;      /* degrees */
    float shear;       /* degrees of horizontal shear */
    float scale;       /* relative, each axis on its own: factors in [1 - scale, 1 + scale] */
    float translate;   /* pixels, each axis on its own */
    float alpha;       /* elastic: pixels of displacement per unit of field (0: off) */
    float thickness;   /* stroke, in [0, 1): intensity curve v / (1 - u) (thicker, u > 0)
                        * or (v + u) / (1 + u) (thinner), clamped to the value range */
    float faint;       /* in [0, 1): resampled values below faint * range (255 or 1), after
                        * the stroke curve, become 0 (the faint rim bilinear resampling
                        * spreads around strokes); 0: off */
    const float *bank; /* (2, bank_size, bank_size) smoothed fields (dc_elastic_bank), or
                        * NULL: no elastic part */
    int64_t bank_size; /* a power of two */
    int64_t height, width; /* of each image; rows have height * width values; each in
                            * [1, DC_AUG_MAX_SIDE] */
} dc_augment;

/* The largest image side the augmentation takes (DC_ERR_ARG above it): its coordinates are
 * exact in float and its scratch offsets fit int32. */
#define DC_AUG_MAX_SIDE 16384

/* Draws per image: image r of a call uses dc_hash64(seed, stream, r * DC_AUG_DRAWS + k). */
#define DC_AUG_DRAWS 8

/* bank (2, size, size) = two fields, uniform [-1, 1) values dc_hash64(seed, stream, i)
 * (i = component * size^2 + y * size + x) smoothed by a periodic Gaussian of std sigma
 * (normalized, radius (int)(4 sigma + 0.5)), rows then columns, summed in double. size a
 * power of two; sigma in (0, 64]. */
int dc_elastic_bank(float *bank, int64_t size, float sigma, uint64_t seed, uint64_t stream);
/* out (B,H,W) = images idx[0..B) (idx may be NULL: 0..B) of inp (N,H,W), each deformed
 * by its own draw. uint8: resampled in [0, 255], rounded half up. Identical for any
 * thread count. */
int dc_augment_u8(uint8_t *out, const uint8_t *inp, const int64_t *idx, int64_t B,
                  const dc_augment *aug, uint64_t seed, uint64_t stream);
int dc_augment_f32(float *out, const float *inp, const int64_t *idx, int64_t B,
                   const dc_augment *aug, uint64_t seed, uint64_t stream);

/* ---- whole network (mlp_*.c) ------------------------------------------------------------- */
/* A fully connected network of n_layers Dense layers; sizes has n_layers+1 entries.
 * Parameters live in one flat float32 array: for layer l, weight (sizes[l+1], sizes[l])
 * then bias (sizes[l+1]), layer after layer (dc_mlp_param_offsets gives the offsets).
 * Hidden layers use `act`; the output layer is linear (softmax is in the loss). */
typedef struct {
    int64_t n_layers;
    const int64_t *sizes;
    float *params; /* flat parameters */
    int act;
    float act_alpha;      /* leaky ReLU slope */
    float dropout;        /* drop probability on hidden activations while training */
    int sparse_input;     /* first layer on sparse input: DC_SPARSE_AUTO/NEVER/ALWAYS */
    int64_t sparse_split; /* training on sparse input: the first input column of the
                           * second of the two column groups layer 0's products work in
                           * (csrc/mlp_layer0.c), 1..sizes[0]; 0: sizes[0] / 2
                           * rounded down to a multiple of 32. Best where it halves
                           * the inputs' non-zeros (Trainer picks that). */
    /* Training on float input: NULL (a background of zeros), or sizes[0] finite floats c,
     * the background the sparse first layer skips: each input row is c + s and only s's
     * non-zero entries are gathered (csrc/mlp_layer0.c). Inference does not use it. */
    const float *sparse_offset;
} dc_mlp;

/* DC_SPARSE_AUTO: training batches, and inference chunks of calls of at least 256 rows,
 * with at most a quarter of their inputs non-zero (after scaling, with shift 0) go
 * through the sparse first-layer kernels, others the dense ones. NEVER: always dense.
 * ALWAYS: sparse whenever shift is 0, whatever the density or size (tests). The two
 * paths round differently; each is deterministic. */
enum { DC_SPARSE_AUTO = 0, DC_SPARSE_NEVER = 1, DC_SPARSE_ALWAYS = 2 };

enum { DC_OPT_SGD = 0, DC_OPT_RMSPROP = 1, DC_OPT_ADAM = 2 };

typedef struct {
    int kind;
    float momentum;     /* SGD: the velocity's decay (0: plain SGD) */
    int nesterov;       /* SGD */
    float rho;          /* RMSprop: decay of the squared gradients' running average */
    float beta1;        /* Adam: decay of the first moment (grad_avg) */
    float beta2;        /* Adam: decay of the second moment (sq_avg) */
    float eps;          /* RMSprop and Adam: added to the denominator */
    float l2;           /* L2 penalty on weights (not biases) */
    float l1;           /* L1 penalty on weights (not biases): l1 * sign(w) */
    float weight_decay; /* decoupled (AdamW) on weights (not biases) */
    float clip_norm;    /* clip the global gradient norm to this if > 0 */
    int64_t step;       /* updates done so far (in/out) */
    /* The optimizer's state, each flat in params' layout, NULL where the kind has none: */
    float *grad_avg; /* running average of the gradient: SGD momentum's velocity, Adam's m */
    float *sq_avg;   /* running average of the squared gradient: RMSprop's, Adam's v */
} dc_optim;

typedef struct {
    /* In and out: each batch's mean loss times its size is added to the value the caller
     * left here, batch after batch, so a sum carried from call to call is the same float64
     * sum however the batches are cut into calls. The other fields are outputs only. */
    double loss_sum;
    int64_t n_correct;
    int64_t n_seen;
    int64_t failed_batch; /* index of the batch where a non-finite loss appeared, or -1 */
} dc_train_stats;

int64_t dc_mlp_n_params(int64_t n_layers, const int64_t *sizes);

/* Train on batches: batch j uses rows order[j*bs .. min((j+1)*bs, n_order)) of x.
 * x is uint8 (x_u8) or float32 (x_f32) of shape (n_rows, sizes[0]); rows are converted
 * as x * scale + shift. labels (n_rows) int64. lrs (n_batches) per-batch learning rate.
 * dropout masks use (seed, opt->step) so a run is reproducible. grads is scratch of
 * n_params floats (unspecified on return: on the sparse first-layer path layer 0's part
 * is transposed; with plain SGD, no momentum, penalty or clipping, layer 0's weight
 * gradient goes straight into the weight and its part is not written). net->sparse_input
 * picks that path. Stops with
 * DC_ERR_NONFINITE at the first non-finite loss or gradient norm (stats->failed_batch
 * tells which); parameters are not updated by that batch.
 * aug: NULL, or the deformation each image of a batch gets before it is loaded (x's
 * rows are (aug->height, aug->width) images): row r of the batch of update step s
 * (opt->step + 1 before it) is dc_augment_u8/_f32's image r with seed
 * dc_hash64(seed, DC_AUG_SEED_STREAM, 0) and stream s, so it depends only on the seed,
 * the step and r, never on the threads or on how the batches are cut into calls. */
#define DC_AUG_SEED_STREAM UINT64_C(0x6175676D656E74)
/* n_x: x's rows (order's indices are below it). keep: NULL, or where layer 0's input is
 * kept between calls (dc_mlp_keep below): a batch of all n_x rows, each once in any
 * order (full-batch descent), then takes its sparse form from there, built from x on
 * first use, instead of gathering it anew; the bits are the same either way. */
typedef struct dc_mlp_keep dc_mlp_keep;
int dc_mlp_train(dc_train_stats *stats, const dc_mlp *net, dc_optim *opt, float *grads,
                 const uint8_t *x_u8, const float *x_f32, const int64_t *labels,
                 const int64_t *order, int64_t n_order, int64_t batch_size, const float *lrs,
                 float scale, float shift, uint64_t seed, const dc_augment *aug, int64_t n_x,
                 dc_mlp_keep *keep);
/* A keep is tied to one x (its address, rows, features, scale), one column split and one
 * sparse_input mode, and rebuilt when a call differs in any of them; not to x's contents:
 * after changing them in place, dc_mlp_keep_clear. One call at a time may use a keep.
 * dc_mlp_keep_new returns NULL when out of memory; dc_mlp_keep_free(NULL) is fine. */
dc_mlp_keep *dc_mlp_keep_new(void);
void dc_mlp_keep_clear(dc_mlp_keep *keep);
void dc_mlp_keep_free(dc_mlp_keep *keep);
/* Entries of the sparse form it holds, or -1 when it holds none. */
int64_t dc_mlp_keep_nnz(const dc_mlp_keep *keep);

/* Inference: out (n, sizes[n_layers]) = logits, or softmax probabilities if `softmax`. */
int dc_mlp_forward(float *out, const dc_mlp *net, const uint8_t *x_u8, const float *x_f32,
                   int64_t n, float scale, float shift, int softmax);

/* Mean loss and correct count over rows of x (no dropout): labels holds n labels (NULL
 * only when n is 0; else DC_ERR_ARG); n_correct may be NULL. */
int dc_mlp_evaluate(double *loss, int64_t *n_correct, const dc_mlp *net, const uint8_t *x_u8,
                    const float *x_f32, const int64_t *labels, int64_t n, float scale,
                    float shift);

/* ---- loss and gradient over a set of rows (mlp_grad.c) ------------------------------------
 * For full-batch solvers (L-BFGS), sigmoid outputs and CSR input: what dc_mlp_train's
 * fused loop does not take. */
/* The rows of a network's input, converted as x * scale + shift: dense uint8 (u8) or
 * float32 (f32), (rows, cols) row-major; or CSR: ptr (rows + 1, starting at 0), idx
 * (columns, increasing within a row) and val (ptr[rows] entries each), shift 0. Exactly
 * one of u8, f32, ptr is set. */
typedef struct {
    const uint8_t *u8;
    const float *f32;
    const int64_t *ptr;
    const int32_t *idx;
    const float *val;
    int64_t rows, cols;
    float scale, shift;
} dc_rows;

enum { DC_LOSS_SOFTMAX_XENT = 0, DC_LOSS_SIGMOID_BCE = 1 };

/* Over rows sel[0..n) of x (sel NULL: rows 0..n), no dropout:
 *   loss     mean output loss: softmax + cross-entropy against labels (x->rows) int64 for
 *            DC_LOSS_SOFTMAX_XENT, sigmoid + binary cross-entropy summed over the outputs
 *            against targets (x->rows, C) float32 for DC_LOSS_SIGMOID_BCE (the other NULL)
 *   grads    (n_params, net->params' layout) = d loss / d params, overwritten (NULL: skip)
 *   n_correct rows predicted right (may be NULL)
 * Rows go in fixed chunks: the same bits for any thread count. DC_ERR_LABEL for a label
 * outside [0, C). */
int dc_mlp_loss_grad(double *loss, int64_t *n_correct, float *grads, const dc_mlp *net,
                     int loss_kind, const dc_rows *x, const int64_t *sel, int64_t n,
                     const int64_t *labels, const float *targets);
/* out (n, sizes[n_layers]) = the output layer's values (logits) for rows sel[0..n) of x. */
int dc_mlp_logits_rows(float *out, const dc_mlp *net, const dc_rows *x, const int64_t *sel,
                       int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* DIGITCORE_H */

/*
 * loss.c -- the output layer's kernels: softmax, and the fused losses with their
 * gradients (softmax + cross-entropy on class labels, sigmoid + binary cross-entropy on
 * 0/1 targets).
 *
 * Both losses run over the batch in chunks of whole rows (chunks.h) through one driver,
 * loss_over_chunks: each chunk's loss is summed in row order, and the chunks' sums are
 * added in chunk order, so the loss rounds the same on any number of threads.
 */
#include "chunks.h"
#include "common.h"
#include "digitcore.h"
#include "exp_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif

/* Exponentials are taken in double of (double)x - max, which is exact for float32 inputs:
 * in float32 the rounding of x - max alone costs |x - max| * eps/2 relative error in exp
 * (several ulps for logits ~10 apart). With it, each probability and gradient is a single
 * rounding of a double-accurate value, and the loss is double-accurate. The softmaxes
 * take rows of up to ROW_BUF classes a block at a time (ROW_BUF / C rows): the block's
 * x - max go into a buffer on the stack, and exps turns them all into their exponentials
 * at once (exp_internal.h; 4 at a time on the AVX2 path), once per element. */
#define ROW_BUF 256

static float row_max(const float *x, int64_t C)
{
    float m = x[0];
    for (int64_t j = 1; j < C; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

#if defined(__SSE2__) || defined(_M_X64)
/* dc_exp_le0 on 2 lanes with SSE2, which every x86-64 CPU has: the portable path's loop
 * of dc_exp_le0 one at a time took the softmax ~12% longer than libm's exp (GCC does not
 * vectorize it: under -ftrapping-math it will not compute the lanes it then discards).
 * The same operations in the same order (SSE2 has no FMA), so the same bits. */
static int64_t exps_sse2(double *e, int64_t n)
{
    const __m128d round = _mm_set1_pd(DC_EXP_ROUND);
    static const double c[DC_EXP_TERMS] = DC_EXP_TAYLOR;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const __m128d d = _mm_loadu_pd(e + i);
        const __m128d t = _mm_add_pd(_mm_mul_pd(d, _mm_set1_pd(DC_EXP_LOG2E)), round);
        const __m128d k = _mm_sub_pd(t, round);
        const __m128d r = _mm_sub_pd(_mm_sub_pd(d, _mm_mul_pd(k, _mm_set1_pd(DC_EXP_LN2_HI))),
                                     _mm_mul_pd(k, _mm_set1_pd(DC_EXP_LN2_LO)));
        __m128d q = _mm_set1_pd(c[0]);
        for (int j = 1; j < DC_EXP_TERMS; ++j)
            q = _mm_add_pd(_mm_mul_pd(q, r), _mm_set1_pd(c[j]));
        const __m128d ex =
            _mm_add_pd(_mm_set1_pd(1.0), _mm_add_pd(r, _mm_mul_pd(_mm_mul_pd(r, r), q)));
        const __m128i bits =
            _mm_slli_epi64(_mm_add_epi64(_mm_castpd_si128(t), _mm_set1_epi64x(1023)), 52);
        const __m128d y = _mm_mul_pd(ex, _mm_castsi128_pd(bits));
        const __m128d under = _mm_cmplt_pd(d, _mm_set1_pd(DC_EXP_MIN)); /* NaN: not less */
        _mm_storeu_pd(e + i, _mm_andnot_pd(under, y));
    }
    return i;
}
#endif

/* e[i] = exp(e[i]) for i < n, every e[i] <= 0 (or NaN) */
static void exps(double *e, int64_t n)
{
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2) {
        dc_exp_le0_avx2(e, e, n);
        return;
    }
#endif
    int64_t i = 0;
#if defined(__SSE2__) || defined(_M_X64)
    i = exps_sse2(e, n);
#endif
    for (; i < n; i++)
        e[i] = dc_exp_le0(e[i]);
}

/* Rows [b0, b1) of logits (C classes each, (b1 - b0) * C <= ROW_BUF): e = exp(x - the
 * row's max), row after row */
static void block_exps(double *e, const float *logits, int64_t b0, int64_t b1, int64_t C)
{
    for (int64_t r = b0; r < b1; r++) {
        const float *x = logits + r * C;
        const double m = (double)row_max(x, C);
        double *er = e + (r - b0) * C;
        for (int64_t j = 0; j < C; j++)
            er[j] = (double)x[j] - m;
    }
    exps(e, (b1 - b0) * C);
}

int dc_softmax_exp(double *y, const double *d, int64_t n)
{
    if (n < 0)
        return DC_ERR_ARG;
    if (n > 0 && y != d)
        memcpy(y, d, (size_t)n * sizeof(double));
    exps(y, n);
    return DC_OK;
}

// logits is (B,C), probs is (B,C); probs may equal logits
int dc_softmax_forward(float *probs, const float *logits, int64_t B, int64_t C)
{
    if (B < 0 || C < 0)
        return DC_ERR_ARG;
    if (B == 0 || C == 0)
        return DC_OK;
    int64_t rpc = rows_per_chunk(C, 8), nc = n_chunks(B, rpc);
    const int64_t blk = C <= ROW_BUF ? ROW_BUF / C : 1;
    DC_FOR_CHUNKS(c, nc, {
        double ebuf[ROW_BUF];
        const int64_t r1 = dc_min64(B, (c + 1) * rpc);
        for (int64_t b0 = c * rpc; b0 < r1; b0 += blk) {
            const int64_t b1 = dc_min64(r1, b0 + blk);
            if (C <= ROW_BUF)
                block_exps(ebuf, logits, b0, b1, C);
            for (int64_t r = b0; r < b1; r++) {
                const float *x = logits + r * C;
                float *p = probs + r * C;
                const double *e = C <= ROW_BUF ? ebuf + (r - b0) * C : NULL;
                /* (block_exps took the max of the rows it did) */
                const double m = e != NULL ? 0.0 : (double)row_max(x, C);
                double s = 0.0;
                for (int64_t j = 0; j < C; j++)
                    s += e != NULL ? e[j] : dc_exp_le0((double)x[j] - m);
                const double inv = 1.0 / s;
                /* row r is read before it is written: in place is fine */
                for (int64_t j = 0; j < C; j++)
                    p[j] = (float)((e != NULL ? e[j] : dc_exp_le0((double)x[j] - m)) * inv);
            }
        }
    });
    return DC_OK;
}

/* ---- the fused losses ---------------------------------------------------------------------
 */

/* One loss call's arrays and sizes: logits (B,C); labels (B) for cross-entropy, targets
 * (B,C) for BCE; probs, dlogits (B,C) or NULL. */
typedef struct {
    float *probs, *dlogits;
    const float *logits;
    const int64_t *labels;
    const float *targets;
    int64_t B, C;
    float label_smoothing;
    int *label_changed; /* set when a label read by xent_rows is out of range */
} loss_args;

/* Rows [r0, r1) of a fused loss: returns the sum of their losses (in row order), writes
 * their probs and dlogits when asked, and adds the rows classified correctly to *correct. */
typedef double (*loss_rows_fn)(const loss_args *a, int64_t *correct, int64_t r0, int64_t r1);

/* *loss = the mean over a->B rows of rows_fn's losses, *n_correct (may be NULL) the count
 * of rows classified correctly, with the rows cut into chunks whose partial sums are added
 * in chunk order (the same rounding for any number of threads, and for one chunk the
 * same as a single call). */
static int loss_over_chunks(double *loss, int64_t *n_correct, loss_rows_fn rows_fn,
                            const loss_args *a)
{
    const int64_t B = a->B;
    *loss = 0.0;
    if (n_correct != NULL)
        *n_correct = 0;
    if (B == 0)
        return DC_OK;
    int64_t rpc = rows_per_chunk(a->C, 8), nc = n_chunks(B, rpc);
    int64_t correct = 0;
    double total = 0.0;
    if (nc == 1) {
        total = rows_fn(a, &correct, 0, B);
    } else {
        double *part = (double *)malloc((size_t)nc * sizeof(double));
        if (part == NULL)
            return DC_ERR_NOMEM;
#ifdef _OPENMP
        int nt = dc_get_num_threads();
        dc_team_mark(nt);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(+ : correct)
#endif
        for (int64_t c = 0; c < nc; c++) {
            int64_t k = 0;
            part[c] = rows_fn(a, &k, c * rpc, dc_min64(B, (c + 1) * rpc));
            correct += k;
        }
        for (int64_t c = 0; c < nc; c++)
            total += part[c];
        free(part);
    }
    *loss = total / (double)B;
    if (n_correct != NULL)
        *n_correct = correct;
    return DC_OK;
}

/* The fused losses write a gradient below float32's smallest normal number as 0
 * (dc_flush_subnormal). A confidently classified image has probabilities under 1e-38 for
 * its other classes; as subnormal floats, their gradients would cost an x86 core a
 * microcode assist in every product of the backward pass they enter (30 epochs of
 * 784-800-10 with Adam, no dropout: epochs 0.47 -> 0.56 s by the end, with the optimizer
 * already flushing its own). They move no weight: a gradient made of them is below 2^-126
 * (SGD moves a weight by lr times it; Adam's state of it is flushed, optim_internal.h).
 * The loss is unchanged (computed in double), and so are the probabilities that `probs`
 * returns. */

/* Rows [r0, r1) of the fused softmax + cross-entropy; returns the sum of row losses (in
 * row order) and adds the correct count to *correct. */
static double xent_rows(const loss_args *a, int64_t *correct, int64_t r0, int64_t r1)
{
    float *probs = a->probs, *dlogits = a->dlogits;
    const float *logits = a->logits;
    const int64_t *labels = a->labels;
    const int64_t B = a->B, C = a->C;
    const float label_smoothing = a->label_smoothing;
    double ebuf[ROW_BUF];
    double loss = 0.0;
    int64_t ok = 0;
    const double s = (double)label_smoothing;
    const double off = s / (double)C;  /* target of every other class */
    const double on = (1.0 - s) + off; /* target of the labelled class */
    const double invB = 1.0 / (double)B;
    const int64_t blk = C <= ROW_BUF ? ROW_BUF / C : 1;
    for (int64_t b0 = r0; b0 < r1; b0 += blk) {
        const int64_t b1 = dc_min64(r1, b0 + blk);
        if (C <= ROW_BUF)
            block_exps(ebuf, logits, b0, b1, C);
        for (int64_t r = b0; r < b1; r++) {
            const float *x = logits + r * C;
            /* dc_softmax_xent checked every label, but the caller's array is read again
             * here: one another thread changed since reads nothing out of bounds (class
             * 0 instead), and the call fails with DC_ERR_LABEL */
            const int64_t label = labels[r];
            const int valid = label >= 0 && label < C;
            const int64_t y = valid ? label : 0;
            if (!valid) {
#ifdef _OPENMP
#pragma omp critical(dc_label_changed)
#endif
                *a->label_changed = 1;
            }
            const double *e = C <= ROW_BUF ? ebuf + (r - b0) * C : NULL;
            /* every read of the row happens before its writes: probs/dlogits may alias
             * logits (block_exps read the block's rows before any is written) */
            float mf = x[0];
            int64_t arg = 0;
            int64_t nan_at = x[0] != x[0] ? 0 : -1;
            for (int64_t j = 1; j < C; j++) {
                if (x[j] > mf) { /* first maximum wins, as numpy.argmax */
                    mf = x[j];
                    arg = j;
                }
                if (nan_at < 0 && x[j] != x[j])
                    nan_at = j;
            }
            if (nan_at >= 0) /* a NaN counts as largest, as numpy.argmax (and predict) */
                arg = nan_at;
            const double m = (double)mf;
            double se = 0.0, sx = 0.0;
            for (int64_t j = 0; j < C; j++) {
                const double d = (double)x[j] - m;
                se += e != NULL ? e[j] : dc_exp_le0(d);
                sx += d;
            }
            const double lse = log(se); /* log-sum-exp of (x - m) */
            const double logp_y = ((double)x[y] - m) - lse;
            const double sum_logp = sx - (double)C * lse;
            /* a term whose target is 0 adds nothing: a -inf logit (a masked class) makes its
             * log-probability -inf, and 0 * -inf is NaN */
            loss += (s < 1.0 ? -(1.0 - s) * logp_y : 0.0) - (off > 0.0 ? off * sum_logp : 0.0);
            ok += valid && arg == y;
            if (probs == NULL && dlogits == NULL)
                continue;
            const double inv = 1.0 / se;
            for (int64_t j = 0; j < C; j++) {
                const double p = (e != NULL ? e[j] : dc_exp_le0((double)x[j] - m)) * inv;
                if (probs != NULL)
                    probs[r * C + j] = (float)p;
                if (dlogits != NULL)
                    dlogits[r * C + j] =
                        dc_flush_subnormal((float)((p - (j == y ? on : off)) * invB));
            }
        }
    }
    *correct += ok;
    return loss;
}

// logits is (B,C), labels is (B); probs, dlogits are (B,C) or NULL
int dc_softmax_xent(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                    const float *logits, const int64_t *labels, int64_t B, int64_t C,
                    float label_smoothing)
{
    if (B < 0 || C < 0 || loss == NULL || !(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return DC_ERR_ARG;
    /* every label is checked before anything is written */
    for (int64_t r = 0; r < B; r++)
        if (labels[r] < 0 || labels[r] >= C)
            return DC_ERR_LABEL;
    int changed = 0;
    const loss_args a = {.probs = probs,
                         .dlogits = dlogits,
                         .logits = logits,
                         .labels = labels,
                         .B = B,
                         .C = C,
                         .label_smoothing = label_smoothing,
                         .label_changed = &changed};
    const int status = loss_over_chunks(loss, n_correct, xent_rows, &a);
    return status == DC_OK && changed ? DC_ERR_LABEL : status;
}

/* Rows [r0, r1) of the fused sigmoid + binary cross-entropy; returns the sum of row
 * losses (in row order) and adds the correct count to *correct. */
static double bce_rows(const loss_args *a, int64_t *correct, int64_t r0, int64_t r1)
{
    float *probs = a->probs, *dlogits = a->dlogits;
    const float *logits = a->logits, *targets = a->targets;
    const int64_t B = a->B, C = a->C;
    double loss = 0.0;
    int64_t ok = 0;
    const double invB = 1.0 / (double)B;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = logits + r * C;
        const float *t = targets + r * C;
        int all = 1;
        for (int64_t j = 0; j < C; j++) {
            const double z = (double)x[j], tj = (double)t[j];
            /* -(t log p + (1-t) log(1-p)) = softplus(z) - t z, with
             * softplus(z) = max(z, 0) + log1p(exp(-|z|)): no overflow for any z */
            const double ez = exp(-fabs(z));
            loss += (z > 0.0 ? z : 0.0) + log1p(ez) - tj * z;
            all &= (z > 0.0) == (tj > 0.5);
            if (probs == NULL && dlogits == NULL)
                continue;
            const double p = z >= 0.0 ? 1.0 / (1.0 + ez) : ez / (1.0 + ez);
            if (probs != NULL)
                probs[r * C + j] = (float)p;
            if (dlogits != NULL)
                dlogits[r * C + j] = dc_flush_subnormal((float)((p - tj) * invB));
        }
        ok += all;
    }
    *correct += ok;
    return loss;
}

// logits, targets are (B,C); probs, dlogits are (B,C) or NULL
int dc_sigmoid_bce(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                   const float *logits, const float *targets, int64_t B, int64_t C)
{
    if (B < 0 || C < 0 || loss == NULL)
        return DC_ERR_ARG;
    const loss_args a = {.probs = probs,
                         .dlogits = dlogits,
                         .logits = logits,
                         .targets = targets,
                         .B = B,
                         .C = C};
    return loss_over_chunks(loss, n_correct, bce_rows, &a);
}

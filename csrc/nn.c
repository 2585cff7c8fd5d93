/*
 * nn.c -- layer kernels of digitcore: activations, dense layer (over dc_sgemm), input
 * gather/conversion, optimizers, norms, counter-based RNG and dropout (the losses are in
 * loss.c).
 *
 * Plain C11, no intrinsics: the inner loops are written so the compiler vectorizes them.
 * Threading: work is cut into fixed chunks (chunks.h). Every element's value is computed
 * by the same code whatever the chunk or thread, and the only floating-point reductions
 * (dbias, sum_squares) add fixed partials in a fixed order, so results do not depend on
 * the thread count.
 */
#include "chunks.h"
#include "common.h"
#include "digitcore.h"
#include "gather_internal.h"
#include "optim_internal.h"
#include "random_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- activations ------------------------------------------------------------------------- */

static void act_forward_range(float *out, const float *inp, int64_t lo, int64_t hi, int act,
                              float alpha)
{
    int64_t i;
    switch (act) {
    case DC_ACT_RELU:
        for (i = lo; i < hi; i++) {
            float x = inp[i];
            out[i] = x > 0.0f ? x : dc_relu_neg(x);
        }
        break;
    case DC_ACT_LEAKY_RELU:
        for (i = lo; i < hi; i++) {
            const float x = inp[i], ax = alpha * x;
            out[i] = x > 0.0f ? x : ax;
        }
        break;
    case DC_ACT_SIGMOID:
        for (i = lo; i < hi; i++)
            out[i] = 1.0f / (1.0f + expf(-inp[i]));
        break;
    case DC_ACT_TANH:
        /* tanh x = expm1(2x) / (expm1(2x) + 2): <= 3 roundings after expm1f (<1 ulp) and
         * about 3x faster than glibc's tanhf; |x| > 9 is +-1 in float32 (and avoids
         * inf / inf). */
        for (i = lo; i < hi; i++) {
            float x = inp[i];
            float e = expm1f(2.0f * x);
            float t = e / (e + 2.0f);
            out[i] = x > 9.0f ? 1.0f : (x < -9.0f ? -1.0f : t);
        }
        break;
    default: /* identity */
        if (out != inp)
            memmove(out + lo, inp + lo, (size_t)(hi - lo) * sizeof(float));
        break;
    }
}

static int act_valid(int act)
{
    return act == DC_ACT_IDENTITY || act == DC_ACT_RELU || act == DC_ACT_LEAKY_RELU ||
           act == DC_ACT_SIGMOID || act == DC_ACT_TANH;
}

static int64_t act_chunk(int act)
{
    return (act == DC_ACT_SIGMOID || act == DC_ACT_TANH) ? CHUNK_TRANS : CHUNK_CHEAP;
}

// inp is (n), out is (n); out may equal inp
int dc_activation_forward(float *out, const float *inp, int64_t n, int act, float alpha)
{
    if (n < 0 || !act_valid(act))
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    int64_t chunk = act_chunk(act), nc = n_chunks(n, chunk);
    DC_FOR_CHUNKS(c, nc, {
        act_forward_range(out, inp, c * chunk, dc_min64(n, (c + 1) * chunk), act, alpha);
    });
    return DC_OK;
}

static void act_backward_range(float *dinp, const float *dout, const float *out, int64_t lo,
                               int64_t hi, int act, float alpha)
{
    int64_t i;
    switch (act) {
    case DC_ACT_RELU:
        /* f'(0) = 0, as PyTorch's threshold_backward */
        /* dout is loaded unconditionally so the select vectorizes (a conditional load
         * is control flow to the vectorizer; this loop was scalar) */
        for (i = lo; i < hi; i++) {
            const float g = dout[i];
            dinp[i] = out[i] > 0.0f ? g : 0.0f;
        }
        break;
    case DC_ACT_LEAKY_RELU:
        /* out > 0 iff x > 0 for a slope alpha >= 0 */
        for (i = lo; i < hi; i++) {
            const float g = dout[i], ag = alpha * g;
            dinp[i] = out[i] > 0.0f ? g : ag;
        }
        break;
    case DC_ACT_SIGMOID:
        for (i = lo; i < hi; i++) {
            float y = out[i];
            dinp[i] = dout[i] * (y * (1.0f - y));
        }
        break;
    case DC_ACT_TANH:
        for (i = lo; i < hi; i++) {
            float y = out[i];
            dinp[i] = dout[i] * (1.0f - y * y);
        }
        break;
    default:
        if (dinp != dout)
            memmove(dinp + lo, dout + lo, (size_t)(hi - lo) * sizeof(float));
        break;
    }
}

// dout, out (forward output) are (n), dinp is (n); dinp may equal dout
int dc_activation_backward(float *dinp, const float *dout, const float *out, int64_t n, int act,
                           float alpha)
{
    if (n < 0 || !act_valid(act))
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    int64_t chunk = CHUNK_CHEAP, nc = n_chunks(n, chunk);
    DC_FOR_CHUNKS(c, nc, {
        act_backward_range(dinp, dout, out, c * chunk, dc_min64(n, (c + 1) * chunk), act,
                           alpha);
    });
    return DC_OK;
}

/* ---- dense layer ------------------------------------------------------------------------- */

// inp is (B,I), weight is (O,I), bias is (O) or NULL, out is (B,O)
int dc_dense_forward(float *out, const float *inp, const float *weight, const float *bias,
                     int64_t B, int64_t n_in, int64_t n_out, int act, float alpha)
{
    if (B < 0 || n_in < 0 || n_out < 0 || !act_valid(act))
        return DC_ERR_ARG;
    if (B == 0 || n_out == 0)
        return DC_OK;
    if (n_in == 0) {
        memset(out, 0, (size_t)(B * n_out) * sizeof(float));
    } else {
        int st =
            dc_sgemm(0, 1, B, n_out, n_in, 1.0f, inp, n_in, weight, n_in, 0.0f, out, n_out);
        if (st != DC_OK)
            return st;
    }
    return dc_bias_act(out, bias, B, n_out, act, alpha);
}

int dc_bias_act(float *out, const float *bias, int64_t B, int64_t n_out, int act, float alpha)
{
    if (B < 0 || n_out < 0 || !act_valid(act))
        return DC_ERR_ARG;
    if ((bias == NULL && act == DC_ACT_IDENTITY) || B == 0 || n_out == 0)
        return DC_OK;
    /* bias then activation on one row at a time while it is still in L1 */
    int64_t cost = (act == DC_ACT_SIGMOID || act == DC_ACT_TANH) ? 8 : 1;
    int64_t rpc = rows_per_chunk(n_out, cost), nc = n_chunks(B, rpc);
    DC_FOR_CHUNKS(c, nc, {
        int64_t r1 = dc_min64(B, (c + 1) * rpc);
        for (int64_t r = c * rpc; r < r1; r++) {
            float *row = out + r * n_out;
            if (bias != NULL)
                for (int64_t j = 0; j < n_out; j++)
                    row[j] += bias[j];
            if (act != DC_ACT_IDENTITY)
                act_forward_range(row, row, 0, n_out, act, alpha);
        }
    });
    return DC_OK;
}

// dout is (B,O), inp is (B,I), weight is (O,I); dinp is (B,I), dweight is (O,I), dbias (O)
int dc_dense_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                      const float *inp, const float *weight, int64_t B, int64_t n_in,
                      int64_t n_out, int accumulate)
{
    if (B < 0 || n_in < 0 || n_out < 0)
        return DC_ERR_ARG;
    int st;
    /* dinp = dout . weight: (B,O)x(O,I) */
    if (dinp != NULL && B > 0 && n_in > 0) {
        if (n_out == 0) {
            memset(dinp, 0, (size_t)(B * n_in) * sizeof(float));
        } else {
            st = dc_sgemm(0, 0, B, n_in, n_out, 1.0f, dout, n_out, weight, n_in, 0.0f, dinp,
                          n_in);
            if (st != DC_OK)
                return st;
        }
    }
    /* dweight (+)= dout^T . inp: (O,B)x(B,I) */
    if (dweight != NULL && n_out > 0 && n_in > 0) {
        if (B == 0) {
            if (!accumulate)
                memset(dweight, 0, (size_t)(n_out * n_in) * sizeof(float));
        } else {
            const float beta = accumulate ? 1.0f : 0.0f;
            st = dc_sgemm(1, 0, n_out, n_in, B, 1.0f, dout, n_out, inp, n_in, beta, dweight,
                          n_in);
            if (st != DC_OK)
                return st;
        }
    }
    if (dbias != NULL)
        return dc_bias_backward(dbias, dout, B, n_out, n_out, accumulate);
    return DC_OK;
}

/* Column sums accumulated in double row after row (a fixed order), so a batch of
 * thousands keeps float32 accuracy. */
int dc_bias_backward(float *dbias, const float *dout, int64_t B, int64_t n_out, int64_t ld,
                     int accumulate)
{
    if (B < 0 || n_out < 0 || ld < n_out)
        return DC_ERR_ARG;
    if (n_out == 0)
        return DC_OK;
    double buf[64];
    double *acc = n_out <= 64 ? buf : (double *)malloc((size_t)n_out * sizeof(double));
    if (acc == NULL)
        return DC_ERR_NOMEM;
    for (int64_t j = 0; j < n_out; j++)
        acc[j] = 0.0;
    for (int64_t r = 0; r < B; r++) {
        const float *row = dout + r * ld;
        for (int64_t j = 0; j < n_out; j++)
            acc[j] += (double)row[j];
    }
    if (accumulate)
        for (int64_t j = 0; j < n_out; j++)
            dbias[j] = (float)((double)dbias[j] + acc[j]);
    else
        for (int64_t j = 0; j < n_out; j++)
            dbias[j] = (float)acc[j];
    if (acc != buf)
        free(acc);
    return DC_OK;
}

/* ---- input conversion -------------------------------------------------------------------- */

/* One row of gather: dst (n) = src * scale + shift, on the AVX2 path all but the last few
 * elements 8 wide (gather_avx2.c, same bits), the rest here. */
static void convert_row(float *dst, const uint8_t *src8, const float *src32, int64_t n,
                        float scale, float shift, int avx2)
{
    int64_t j = 0;
    (void)avx2;
    if (src8 != NULL) {
#if DC_GEMM_BUILD_AVX2
        if (avx2)
            j = dc_gather_row_u8_avx2(dst, src8, n, scale, shift);
#endif
        for (; j < n; j++)
            dst[j] = (float)src8[j] * scale + shift;
    } else {
#if DC_GEMM_BUILD_AVX2
        if (avx2)
            j = dc_gather_row_f32_avx2(dst, src32, n, scale, shift);
#endif
        for (; j < n; j++)
            dst[j] = src32[j] * scale + shift;
    }
}

/* Rows idx (NULL: 0..B-1) of x_u8 or x_f32 (the other NULL), (N,F), into out (B,F) as
 * x * scale + shift: one body for both dtypes, the dtype chosen per row. */
static int gather(float *out, const uint8_t *x_u8, const float *x_f32, const int64_t *idx,
                  int64_t B, int64_t F, float scale, float shift)
{
    if (B < 0 || F < 0)
        return DC_ERR_ARG;
    if (B == 0 || F == 0)
        return DC_OK;
    /* chunks of equal rows (a batch of 128 MNIST rows: 64 + 64, not 80 + 48, which left
     * one of two threads waiting); a row's bits never depend on its chunk */
    const int64_t nc = n_chunks(B, rows_per_chunk(F, 1) * 4), rpc = dc_cdiv64(B, nc);
    const int avx2 = dc_kernel_path() == DC_KERNEL_AVX2;
    DC_FOR_CHUNKS(c, nc, {
        int64_t r1 = dc_min64(B, (c + 1) * rpc);
        for (int64_t r = c * rpc; r < r1; r++) {
            const int64_t row = (idx != NULL ? idx[r] : r) * F;
            convert_row(out + r * F, x_u8 != NULL ? x_u8 + row : NULL,
                        x_u8 != NULL ? NULL : x_f32 + row, F, scale, shift, avx2);
        }
    });
    return DC_OK;
}

// inp is (N,F) uint8, idx is (B) or NULL, out is (B,F)
int dc_gather_u8(float *out, const uint8_t *inp, const int64_t *idx, int64_t B, int64_t F,
                 float scale, float shift)
{
    return gather(out, inp, NULL, idx, B, F, scale, shift);
}

// inp is (N,F) float32, idx is (B) or NULL, out is (B,F)
int dc_gather_f32(float *out, const float *inp, const int64_t *idx, int64_t B, int64_t F,
                  float scale, float shift)
{
    return gather(out, NULL, inp, idx, B, F, scale, shift);
}

/* ---- optimizers -------------------------------------------------------------------------- */

/* PyTorch SGD (dampening 0): g = grad + l2*p (+ l1*sign(p)); buf = momentum*buf + g (buf
 * starts at 0, which equals PyTorch's buf = g on the first step; flushed by
 * dc_flush_subnormal, optim_internal.h); g = nesterov ? g + momentum*buf : buf; p -= lr*g. */
DC_INLINE void sgd_range_impl(float *param, float *vel, const float *grad, int64_t lo,
                              int64_t hi, float lr, float mom, int nesterov, float l2, float l1,
                              int use_l1)
{
    int64_t i;
    if (mom == 0.0f) {
        for (i = lo; i < hi; i++) {
            float g = grad[i] + l2 * param[i];
            if (use_l1)
                g += l1_term(l1, param[i]);
            param[i] -= lr * g;
        }
    } else if (nesterov) {
        for (i = lo; i < hi; i++) {
            float g = grad[i] + l2 * param[i];
            if (use_l1)
                g += l1_term(l1, param[i]);
            float b = dc_flush_subnormal(mom * vel[i] + g);
            vel[i] = b;
            param[i] -= lr * (g + mom * b);
        }
    } else {
        for (i = lo; i < hi; i++) {
            float g = grad[i] + l2 * param[i];
            if (use_l1)
                g += l1_term(l1, param[i]);
            float b = dc_flush_subnormal(mom * vel[i] + g);
            vel[i] = b;
            param[i] -= lr * b;
        }
    }
}

static void sgd_range(float *param, float *vel, const float *grad, int64_t lo, int64_t hi,
                      float lr, float mom, int nesterov, float l2, float l1)
{
    const unsigned csr = optim_fp_enter();
    if (l1 == 0.0f)
        sgd_range_impl(param, vel, grad, lo, hi, lr, mom, nesterov, l2, 0.0f, 0);
    else
        sgd_range_impl(param, vel, grad, lo, hi, lr, mom, nesterov, l2, l1, 1);
    optim_fp_leave(csr);
}

// param, velocity, grad are (n); velocity may be NULL when momentum == 0
int dc_sgd_update(float *param, float *velocity, const float *grad, int64_t n, float lr,
                  float momentum, int nesterov, float l2, float l1)
{
    if (n < 0 || (momentum != 0.0f && velocity == NULL))
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    int64_t nc = n_chunks(n, CHUNK_CHEAP);
    DC_FOR_CHUNKS(c, nc, {
        sgd_range(param, velocity, grad, c * CHUNK_CHEAP, dc_min64(n, (c + 1) * CHUNK_CHEAP),
                  lr, momentum, nesterov, l2, l1);
    });
    return DC_OK;
}

/* PyTorch RMSprop (centered=False, momentum=0): g = grad + l2*p (+ l1*sign(p));
 * sq = rho*sq + (1-rho)*g^2 (flushed by dc_flush_subnormal); p -= lr * g / (sqrt(sq) + eps). */
DC_INLINE void rmsprop_range_impl(float *param, float *sq, const float *grad, int64_t lo,
                                  int64_t hi, float lr, float rho, float eps, float l2,
                                  float l1, int use_l1)
{
    const float one_m_rho = 1.0f - rho;
    for (int64_t i = lo; i < hi; i++) {
        float g = grad[i] + l2 * param[i];
        if (use_l1)
            g += l1_term(l1, param[i]);
        float s = dc_flush_subnormal(rho * sq[i] + one_m_rho * (g * g));
        sq[i] = s;
        param[i] -= lr * g / (sqrtf(s) + eps);
    }
}

static void rmsprop_range(float *param, float *sq, const float *grad, int64_t lo, int64_t hi,
                          float lr, float rho, float eps, float l2, float l1)
{
    const unsigned csr = optim_fp_enter();
    if (l1 == 0.0f)
        rmsprop_range_impl(param, sq, grad, lo, hi, lr, rho, eps, l2, 0.0f, 0);
    else
        rmsprop_range_impl(param, sq, grad, lo, hi, lr, rho, eps, l2, l1, 1);
    optim_fp_leave(csr);
}

// param, sq_avg, grad are (n)
int dc_rmsprop_update(float *param, float *sq_avg, const float *grad, int64_t n, float lr,
                      float rho, float eps, float l2, float l1)
{
    if (n < 0)
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    int64_t nc = n_chunks(n, CHUNK_TRANS * 4);
    DC_FOR_CHUNKS(c, nc, {
        rmsprop_range(param, sq_avg, grad, c * CHUNK_TRANS * 4,
                      dc_min64(n, (c + 1) * CHUNK_TRANS * 4), lr, rho, eps, l2, l1);
    });
    return DC_OK;
}

/* Adam's step over elements [lo, hi) (optim_internal.h): 8 wide on the AVX2 path. */
static void adam_range(float *param, float *m, float *v, const float *grad, int64_t lo,
                       int64_t hi, float b1, float b2, float eps, float l2, float l1,
                       float decay, float step_size, float sqrt_bc2)
{
    const unsigned csr = optim_fp_enter();
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2)
        dc_adam_range_avx2(param, m, v, grad, lo, hi, b1, b2, eps, l2, l1, decay, step_size,
                           sqrt_bc2);
    else
#endif
    {
        DC_ADAM_RANGE_BODY
    }
    optim_fp_leave(csr);
}

// param, m, v, grad are (n); step >= 1
int dc_adam_update(float *param, float *m, float *v, const float *grad, int64_t n, float lr,
                   float beta1, float beta2, float eps, float l2, float l1, float wd,
                   int64_t step)
{
    if (n < 0 || step < 1)
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const float step_size = (float)((double)lr / bc1);
    const float sqrt_bc2 = (float)sqrt(bc2);
    const float decay = 1.0f - lr * wd;
    const int64_t chunk = CHUNK_TRANS * 4;
    int64_t nc = n_chunks(n, chunk);
    DC_FOR_CHUNKS(c, nc, {
        adam_range(param, m, v, grad, c * chunk, dc_min64(n, (c + 1) * chunk), beta1, beta2,
                   eps, l2, l1, decay, step_size, sqrt_bc2);
    });
    return DC_OK;
}

/* Sum of squares of one chunk, in double, with 8 independent accumulators (fixed lanes,
 * so the order is the same on every run and the loop can still be vectorized). */
static double sumsq_chunk(const float *x, int64_t lo, int64_t hi)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (int k = 0; k < 8; k++) {
            double t = (double)x[i + k];
            acc[k] += t * t;
        }
    for (int k = 0; i < hi; i++, k++) {
        double t = (double)x[i];
        acc[k] += t * t;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// x is (n)
int dc_sum_squares(double *out, const float *x, int64_t n)
{
    if (n < 0 || out == NULL)
        return DC_ERR_ARG;
    *out = 0.0;
    if (n == 0)
        return DC_OK;
    int64_t nc = n_chunks(n, SUMSQ_CHUNK);
    double total = 0.0;
    if (nc <= 4) {
        for (int64_t c = 0; c < nc; c++)
            total += sumsq_chunk(x, c * SUMSQ_CHUNK, dc_min64(n, (c + 1) * SUMSQ_CHUNK));
    } else {
        double *part = (double *)malloc((size_t)nc * sizeof(double));
        if (part == NULL)
            return DC_ERR_NOMEM;
        DC_FOR_CHUNKS(c, nc, {
            part[c] = sumsq_chunk(x, c * SUMSQ_CHUNK, dc_min64(n, (c + 1) * SUMSQ_CHUNK));
        });
        for (int64_t c = 0; c < nc; c++)
            total += part[c];
        free(part);
    }
    *out = total;
    return DC_OK;
}

// x is (n), scaled in place
int dc_scale(float *x, int64_t n, float s)
{
    if (n < 0)
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    int64_t nc = n_chunks(n, CHUNK_CHEAP);
    DC_FOR_CHUNKS(c, nc, {
        int64_t hi = dc_min64(n, (c + 1) * CHUNK_CHEAP);
        for (int64_t i = c * CHUNK_CHEAP; i < hi; i++)
            x[i] *= s;
    });
    return DC_OK;
}

/* ---- randomness, dropout ----------------------------------------------------------------- */

uint64_t dc_hash64(uint64_t seed, uint64_t stream, uint64_t i)
{
    return hash_at(stream_key(seed, stream), i);
}

/* Elements [lo, hi) of dropout: on the AVX2 path all but the last few 8 wide
 * (dropout_avx2.c, same bits), the rest here. */
static void dropout_forward_range(float *out, uint8_t *mask, const float *inp, int64_t lo,
                                  int64_t hi, uint64_t key, uint64_t threshold, float scale)
{
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2)
        lo = dc_dropout_forward_avx2(out, mask, inp, lo, hi, key, threshold, scale);
#endif
    for (int64_t i = lo; i < hi; i++) {
        /* u24(hash) >= p, as an integer compare (random_internal.h) */
        const int keep = (hash_at(key, (uint64_t)i) >> 40) >= threshold;
        mask[i] = (uint8_t)keep;
        out[i] = keep ? inp[i] * scale : 0.0f;
    }
}

static void dropout_backward_range(float *dinp, const float *dout, const uint8_t *mask,
                                   int64_t lo, int64_t hi, float scale)
{
#if DC_GEMM_BUILD_AVX2
    if (dc_kernel_path() == DC_KERNEL_AVX2)
        lo = dc_dropout_backward_avx2(dinp, dout, mask, lo, hi, scale);
#endif
    for (int64_t i = lo; i < hi; i++)
        dinp[i] = mask[i] ? dout[i] * scale : 0.0f;
}

// inp, out, mask are (n); out may equal inp
int dc_dropout_forward(float *out, uint8_t *mask, const float *inp, int64_t n, float p,
                       uint64_t seed, uint64_t stream)
{
    if (n < 0 || !(p >= 0.0f && p < 1.0f))
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    const uint64_t key = stream_key(seed, stream), threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    int64_t nc = n_chunks(n, CHUNK_TRANS * 2);
    DC_FOR_CHUNKS(c, nc, {
        dropout_forward_range(out, mask, inp, c * CHUNK_TRANS * 2,
                              dc_min64(n, (c + 1) * CHUNK_TRANS * 2), key, threshold, scale);
    });
    return DC_OK;
}

// dout, mask, dinp are (n); dinp may equal dout
int dc_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, int64_t n, float p)
{
    if (n < 0 || !(p >= 0.0f && p < 1.0f))
        return DC_ERR_ARG;
    if (n == 0)
        return DC_OK;
    const float scale = 1.0f / (1.0f - p);
    int64_t nc = n_chunks(n, CHUNK_CHEAP);
    DC_FOR_CHUNKS(c, nc, {
        dropout_backward_range(dinp, dout, mask, c * CHUNK_CHEAP,
                               dc_min64(n, (c + 1) * CHUNK_CHEAP), scale);
    });
    return DC_OK;
}

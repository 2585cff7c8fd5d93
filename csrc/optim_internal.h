/*
 * optim_internal.h -- Adam's per-element step, shared by nn.c (portable build) and
 * optim_avx2.c (the same loop compiled with AVX2, which the compiler vectorizes 8 wide).
 *
 * Adam's step is divider-bound (a square root and two divisions per weight; the SSE2 loop
 * spent ~40% of its time waiting on divps, and Adam was ~15% of an epoch of 784-800-10),
 * and 8-wide divisions double that throughput. Both builds do the same float32
 * operations per element in the same order: IEEE division and square root are exact,
 * and multiplies and adds are never contracted into FMAs (GCC does not contract in its
 * ISO C modes; clang is told not to), so the two give identical bits
 * (tests/test_ops.py::test_adam_avx2_and_generic_paths_give_the_same_bits).
 */
#ifndef DC_OPTIM_INTERNAL_H
#define DC_OPTIM_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "common.h"
#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

/* The L1 penalty's subgradient l1 * sign(p), 0 at p == 0 (and for NaN). Only called when
 * l1 != 0: with l1 == 0 the loops add nothing, so runs without it keep their bits (adding
 * +0.0 would turn a -0.0 gradient into +0.0). */
static inline float l1_term(float l1, float p)
{
    return p > 0.0f ? l1 : (p < 0.0f ? -l1 : 0.0f);
}

/* An optimizer state (Adam's m and v, RMSprop's square average, SGD's momentum buffer)
 * smaller in magnitude than float32's smallest normal number is stored as 0
 * (dc_flush_subnormal), as a CPU in flush-to-zero mode would store it. A weight that
 * stops getting gradient (a pixel no image of the batch lights) has its state decay
 * geometrically (Adam's m by beta1 a step) into the subnormal range, and stays there (a
 * few units of the last place times 0.9 round back to themselves), where every multiply
 * and divide on it costs x86 CPUs a microcode assist: over 40 epochs of the committee
 * preset's network, epochs grew 1.7x longer and Adam's share of them 15% -> 34%. The
 * weights do not change: such a state moves a weight by less than half its last place
 * (Adam: lr / (1 - b1^t) * |m| / eps, under 1e-28 with |m| < 2^-126, lr <= 1 and eps
 * 1e-8; SGD: lr * |buf|), unless the weight is itself that small.
 *
 * The optimizers' loops also run with the x86 core's flush-to-zero and denormals-are-zero
 * modes on (the caller's MXCSR saved and put back around each range): the same cost comes
 * from subnormal intermediates that the flush cannot reach, such as g * g and (1 - b2) *
 * g^2 for a gradient under ~1e-18, which a weight gets when only confidently classified
 * images reach it. 30 epochs of 784-800-10 with Adam, no dropout: the last ones took
 * 0.83 s without the modes, 0.48 s with them, as long as the first. The modes change a
 * state or a weight only where a subnormal number would have been added to or multiplied
 * into it, which moves no weight by half its last place (as above). Other CPUs take
 * subnormals at full speed and keep IEEE arithmetic. */
#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define DC_FTZ_DAZ 0x8040u /* MXCSR's FTZ (bit 15) and DAZ (bit 6) */
static inline unsigned optim_fp_enter(void)
{
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | DC_FTZ_DAZ);
    return csr;
}
static inline void optim_fp_leave(unsigned csr)
{
    _mm_setcsr(csr);
}
#else
static inline unsigned optim_fp_enter(void)
{
    return 0;
}
static inline void optim_fp_leave(unsigned csr)
{
    (void)csr;
}
#endif

/* PyTorch Adam / AdamW (amsgrad=False): with l2 (Adam's weight_decay) g = grad + l2*p, and
 * with l1 g += l1*sign(p); with wd (AdamW's decoupled decay) p *= 1 - lr*wd (using p before
 * this step, like PyTorch, and after l2 and l1 read it when they are given);
 * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2 (each flushed by dc_flush_subnormal);
 * p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps). */
DC_INLINE void adam_range_impl(float *param, float *m, float *v, const float *grad, int64_t lo,
                               int64_t hi, float b1, float b2, float eps, float l2, float l1,
                               int use_l1, float decay, float step_size, float sqrt_bc2)
{
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    for (int64_t i = lo; i < hi; i++) {
        float p = param[i];
        float g = grad[i] + l2 * p;
        if (use_l1)
            g += l1_term(l1, p);
        p *= decay;
        float mi = dc_flush_subnormal(b1 * m[i] + omb1 * g);
        float vi = dc_flush_subnormal(b2 * v[i] + omb2 * (g * g));
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
    }
}

/* Elements [lo, hi) of one Adam step (l1 == 0: without the L1 term). */
#define DC_ADAM_RANGE_BODY                                                                     \
    if (l1 == 0.0f)                                                                            \
        adam_range_impl(param, m, v, grad, lo, hi, b1, b2, eps, l2, 0.0f, 0, decay, step_size, \
                        sqrt_bc2);                                                             \
    else                                                                                       \
        adam_range_impl(param, m, v, grad, lo, hi, b1, b2, eps, l2, l1, 1, decay, step_size,   \
                        sqrt_bc2);

#if DC_GEMM_BUILD_AVX2
/* nn.c's adam_range compiled for AVX2 (optim_avx2.c): callers check the kernel path. */
void dc_adam_range_avx2(float *param, float *m, float *v, const float *grad, int64_t lo,
                        int64_t hi, float b1, float b2, float eps, float l2, float l1,
                        float decay, float step_size, float sqrt_bc2);
#endif

#endif /* DC_OPTIM_INTERNAL_H */

/*
 * common.h -- the small helpers every C file may use (never part of the public API,
 * digitcore.h): integer min and ceiling division, forced inlining, a prefetch hint, the
 * flush of a subnormal float, cache-line-aligned memory and the OpenMP team queries (the
 * last two live in cpu.c).
 */
#ifndef DC_COMMON_H
#define DC_COMMON_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_MSC_VER)
#define DC_INLINE static __forceinline
#else
#define DC_INLINE static inline __attribute__((always_inline))
#endif

static inline int64_t dc_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ceil(a / b) for a >= 0, b > 0 */
static inline int64_t dc_cdiv64(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Ask for the cache line at p to be brought into L2, or into L1 as well (a hint: no
 * fault, no effect on results). L2: the GEMM driver (tall A) and training's batch gather;
 * L1: the full-batch sweeps' next rows. */
#if defined(__GNUC__) || defined(__clang__)
#define DC_PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
#define DC_PREFETCH_L1(p) __builtin_prefetch((p), 0, 3)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define DC_PREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define DC_PREFETCH_L1(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define DC_PREFETCH_L2(p) ((void)(p))
#define DC_PREFETCH_L1(p) ((void)(p))
#endif

/* x, or 0 when x is subnormal (smaller in magnitude than float32's smallest normal
 * number): training keeps subnormals out of its optimizer states (optim_internal.h) and
 * loss gradients (loss.c), since every operation on one costs an x86 core a microcode
 * assist. */
static inline float dc_flush_subnormal(float x)
{
    return fabsf(x) < FLT_MIN ? 0.0f : x;
}

/* ReLU of a value x that is not > 0: 0, but NaN stays NaN (as PyTorch's relu): a NaN
 * or infinite weight must surface as a non-finite output, which predict and training
 * refuse, not as a unit that is silently off. */
static inline float dc_relu_neg(float x)
{
    return x != x ? x : 0.0f;
}

/* Every cache line of the `bytes` bytes at p into L1 (l1 != 0) or L2 (nothing when
 * bytes <= 0). */
static inline void dc_prefetch_bytes_to(const void *p, int64_t bytes, int l1)
{
    const char *c = (const char *)p;
    if (bytes <= 0)
        return;
    for (int64_t o = 0; o < bytes; o += 64) {
        if (l1)
            DC_PREFETCH_L1(c + o);
        else
            DC_PREFETCH_L2(c + o);
    }
    /* the last line, when p is not at a line's start */
    if (l1)
        DC_PREFETCH_L1(c + bytes - 1);
    else
        DC_PREFETCH_L2(c + bytes - 1);
}

/* Every cache line of the `bytes` bytes at p into L2 (nothing when bytes <= 0). */
static inline void dc_prefetch_bytes(const void *p, int64_t bytes)
{
    dc_prefetch_bytes_to(p, bytes, 0);
}

/* Cache-line-aligned memory. Buffers that threads split by column blocks of
 * DC_SPMM_BLOCK floats are allocated this way, so a block's first and last lines are
 * its own: with malloc's 16-byte alignment, every row of a (., 128) float matrix shares
 * a line between its two halves, and two threads writing them bounce it between cores.
 * dc_aligned_size gives the size asked for; dc_free_aligned(NULL) does nothing. */
#define DC_ALIGN 64
void *dc_alloc_aligned(size_t bytes);
size_t dc_aligned_size(const void *p);
void dc_free_aligned(void *p);

/* Inside a parallel region: this thread's number in its team and the team's size, which
 * may be smaller than asked for (split work by what it is). 0 and 1 without OpenMP or
 * outside a region. */
int dc_team_thread(void);
int dc_team_size(void);
/* Before a parallel region of nt threads: records that OpenMP's team has (nt > 1) started
 * (dc_team_started: a forked child cannot start it again under GCC's runtime). */
void dc_team_mark(int nt);

#ifdef __cplusplus
}
#endif
#endif /* DC_COMMON_H */

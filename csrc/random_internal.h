/*
 * random_internal.h -- the counter-based hash behind every random draw (dropout masks,
 * elastic fields, deformation parameters), shared by nn.c, augment.c and dropout_avx2.c,
 * and the contract between nn.c's dropout and its AVX2 build.
 *
 * Draw i of stream (seed, stream) is splitmix64's finalizer of key + (i + 1) * GOLDEN, with
 * key = stream_key(seed, stream): a pure function of (seed, stream, i), so any thread can
 * draw any element and the results never depend on the thread count.
 */
#ifndef DC_RANDOM_INTERNAL_H
#define DC_RANDOM_INTERNAL_H

#include <stdint.h>

#include "common.h"
#include "gemm_internal.h" /* DC_GEMM_BUILD_AVX2 */

/* splitmix64's finalizer (Stafford's mix13): a bijection of 64-bit words with full
 * avalanche. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

/* (seed, stream) -> a key; value i is then splitmix64 element i from that key. Mixing the
 * seed before adding the stream keeps nearby (seed, stream) pairs far apart. */
static inline uint64_t stream_key(uint64_t seed, uint64_t stream)
{
    return mix64(mix64(seed ^ UINT64_C(0x6A09E667F3BCC909)) + stream * GOLDEN);
}

static inline uint64_t hash_at(uint64_t key, uint64_t i)
{
    return mix64(key + (i + 1) * GOLDEN);
}

/* uniform in [0, 1) with 24 random bits: exactly representable as a float */
static inline float u24(uint64_t h)
{
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

/* Dropout keeps element i when u24(hash_at(key, i)) >= p. u24 is (h >> 40) * 2^-24 exactly
 * and p * 2^24 is exact too, so that is (h >> 40) >= ceil(p * 2^24): an integer compare,
 * which the vector build can do without converting to float. p in [0, 1). */
static inline uint64_t dropout_threshold(float p)
{
    const float t = p * 16777216.0f; /* exact: p < 1 is a float, scaled by a power of 2 */
    const uint64_t u = (uint64_t)t;  /* t < 2^24 */
    return (float)u < t ? u + 1 : u;
}

#if DC_GEMM_BUILD_AVX2
/* Dropout's forward and backward over whole groups of 8 elements from lo on, 8 wide
 * (dropout_avx2.c), with the bits of nn.c's portable loops; they return where they
 * stopped (at most 7 short of hi), and nn.c's loop does the rest. Callers check the
 * kernel path. */
int64_t dc_dropout_forward_avx2(float *out, uint8_t *mask, const float *inp, int64_t lo,
                                int64_t hi, uint64_t key, uint64_t threshold, float scale);
int64_t dc_dropout_backward_avx2(float *dinp, const float *dout, const uint8_t *mask,
                                 int64_t lo, int64_t hi, float scale);
#endif

#endif /* DC_RANDOM_INTERNAL_H */

/*
 * chunks.h -- how the layer kernels (nn.c, loss.c) cut their work: elementwise work into
 * fixed-size chunks, row-wise work into chunks of whole rows, run in parallel only when
 * there is more than one chunk (small work is never threaded). The chunks are fixed by
 * the sizes alone, never by the thread count, so a reduction that adds the chunks'
 * partials in chunk order rounds the same on any number of threads.
 */
#ifndef DC_CHUNKS_H
#define DC_CHUNKS_H

#include <stdint.h>

#include "common.h"
#include "digitcore.h" /* dc_get_num_threads */

/* Elements per parallel chunk. Cheap ops (a multiply, a select) are memory-bound: below
 * ~64 K elements the fork/join costs more than a second core gains. Transcendental ops
 * (exp, tanh) do ~20x the work per element, so they split earlier. */
#define CHUNK_CHEAP     ((int64_t)65536)
#define CHUNK_TRANS     ((int64_t)8192)
/* sum_squares partials: fixed so the sum's rounding never depends on the thread count. */
#define SUMSQ_CHUNK     ((int64_t)16384)
/* Rows per chunk in row-wise kernels (softmax, dense epilogue) are chosen so that a chunk
 * holds roughly this many elements. */
#define ROW_CHUNK_ELEMS ((int64_t)16384)

/* for (int64_t c = 0; c < nc; c++) { body } over the threads when there are two chunks
 * or more and more than one thread to run them, else on this thread without entering
 * a parallel region at all: even an if(0) region costs ~0.5 us, which a kernel called
 * row by row from inside another parallel region (dc_mlp_train) would pay per call. */
#if defined(_OPENMP) && defined(_MSC_VER)
#define DC_OMP_FOR_PRAGMA __pragma(omp parallel for schedule(static) num_threads(nt_))
#elif defined(_OPENMP)
#define DC_OMP_FOR_PRAGMA _Pragma("omp parallel for schedule(static) num_threads(nt_)")
#endif
#ifdef _OPENMP
#define DC_FOR_CHUNKS(c, nc, ...)                                                              \
    do {                                                                                       \
        const int nt_ = (nc) > 1 ? dc_get_num_threads() : 1;                                   \
        if (nt_ > 1) {                                                                         \
            DC_OMP_FOR_PRAGMA                                                                  \
            for (int64_t c = 0; c < (nc); c++) {                                               \
                __VA_ARGS__                                                                    \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t c = 0; c < (nc); c++) {                                               \
                __VA_ARGS__                                                                    \
            }                                                                                  \
        }                                                                                      \
    } while (0)
#else
#define DC_FOR_CHUNKS(c, nc, ...)                                                              \
    do {                                                                                       \
        for (int64_t c = 0; c < (nc); c++) {                                                   \
            __VA_ARGS__                                                                        \
        }                                                                                      \
    } while (0)
#endif

static inline int64_t n_chunks(int64_t n, int64_t chunk)
{
    return (n + chunk - 1) / chunk;
}

static inline int64_t rows_per_chunk(int64_t cols, int64_t per_elem_cost)
{
    int64_t target = ROW_CHUNK_ELEMS / (per_elem_cost > 0 ? per_elem_cost : 1);
    int64_t r = cols > 0 ? target / cols : target;
    return r > 0 ? r : 1;
}

#endif /* DC_CHUNKS_H */

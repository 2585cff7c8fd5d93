/*
 * gemm_internal.h -- private contract between the GEMM driver (gemm.c), the
 * micro-kernels (gemm_generic.c, gemm_avx2.c) and CPU detection (cpu.c).
 *
 * BLIS-style decomposition (see docs/ARCHITECTURE.md):
 *
 *   for jc in N step NC:                       packed B block (KC x NC) in L3/L2
 *     for pc in K step KC:
 *       pack B[pc:pc+KC, jc:jc+NC] into NR-wide micro-panels
 *       for ic in M step MC:                   packed A block (MC x KC) in L2
 *         pack A[ic:ic+MC, pc:pc+KC] into MR-tall micro-panels
 *         for jr in NC step NR:                B micro-panel (KC x NR) stays in L1
 *           for ir in MC step MR:
 *             micro-kernel: C[MR x NR] = alpha * Apanel * Bpanel + beta * C
 *
 * Packed layouts (both zero-padded to full MR / NR at the edges):
 *   A micro-panel: for p in [0,kc): MR consecutive floats op(A)[i0..i0+MR)[p], each
 *                  repeated a_dup times (the SSE2 kernel loads pre-broadcast vectors)
 *   B micro-panel: for p in [0,kc): NR consecutive floats op(B)[p][j0..j0+NR)
 */
#ifndef DC_GEMM_INTERNAL_H
#define DC_GEMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "digitcore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One MR x NR tile: C[0:mr, 0:nr] = alpha * (A panel * B panel) + beta * C, with
 * beta == 0 meaning "overwrite". b is a packed micro-panel of depth k (k >= 1). rs_a == 0
 * means a is a packed A micro-panel; otherwise row r of A at step p is
 * a[r*rs_a + p*cs_a], op(A) read in place (rows r >= mr are never read). mr <= MR and
 * nr <= NR give the valid part of the tile (edges). */
typedef void (*dc_sgemm_ukernel_fn)(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                    const float *b, float *c, int64_t ldc, float alpha,
                                    float beta, int mr, int nr);

/* Pack op(A)[i0 : i0+mlen, p0 : p0+kc] into ceil(mlen/MR) micro-panels at pa, panel q
 * at pa + q*ps (each MR*kc*a_dup floats, rows past mlen zero-filled). */
typedef void (*dc_sgemm_pack_a_fn)(float *pa, int64_t ps, const float *a, int64_t lda,
                                   int trans_a, int64_t i0, int64_t mlen, int64_t p0,
                                   int64_t kc);
/* Pack op(B)[p0 : p0+kc, j0 : j0+nlen] into ceil(nlen/NR) micro-panels at pb, panel q
 * at pb + q*ps (each NR*kc floats, columns past nlen zero-filled). */
typedef void (*dc_sgemm_pack_b_fn)(float *pb, int64_t ps, const float *b, int64_t ldb,
                                   int trans_b, int64_t p0, int64_t kc, int64_t j0,
                                   int64_t nlen);

/* Floats from one packed micro-panel of `floats` floats to the next: whole 64-byte lines,
 * an odd number of them. The packers write all panels of a block at once (one pass
 * along each source row); panels 2^j lines apart would all map to a few L1 sets, so
 * e.g. A panels of 6 x 256 floats (6 KB apart) thrashed two sets: AtB (128,512,256)
 * ran at 158 GFLOP/s on two threads against 190 at K = 504 or 528. An odd line count
 * spreads consecutive panels over all 64 sets. */
static inline int64_t dc_gemm_panel_stride(int64_t floats)
{
    return (((floats + 15) / 16) | 1) * 16;
}

/* Whole GEMM for narrow N (n <= DC_GEMM_NARROW_MAX_N), on all m rows, no K blocking.
 * trans_a == 0: op(A)[i][p] = a[i*lda + p] and rs_b must be 1 (op(B)^T rows contiguous);
 * trans_a != 0: op(A)[i][p] = a[p*lda + i]. op(B)[p][j] = b[p*rs_b + j*cs_b]. Each C
 * element's bits depend only on its own row of op(A) and column of op(B), so callers may
 * split M at any row. */
typedef void (*dc_sgemm_narrow_fn)(int trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                                   const float *a, int64_t lda, const float *b, int64_t rs_b,
                                   int64_t cs_b, float beta, float *c, int64_t ldc);
#define DC_GEMM_NARROW_MAX_N 16

/* C (m,n) = A (m,k) . Bt^T, with Bt (n,k) rows contiguous (a layer's weight): each element
 * one dot product along k, the narrow kernel's arithmetic (so its bits depend only on its
 * own row and column), one thread, nothing packed. For a few rows, e.g. one image through
 * the first layer, where packing Bt (100,000 floats for 784 x 128) costs several times
 * the product. Paths without a narrow kernel run dc_sgemm. */
int dc_sgemm_dot(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *bt,
                 int64_t ldbt, float *c, int64_t ldc);

/* The per-ISA table: block sizes are data, the three functions are the ISA's code. */
typedef struct {
    const char *name;
    int mr, nr;         /* register tile */
    int a_dup;          /* copies of each A value in a packed panel (pre-broadcast) */
    int64_t mc, kc, nc; /* cache blocks; mc % mr == 0, nc % nr == 0 */
    dc_sgemm_ukernel_fn ukernel;
    dc_sgemm_ukernel_fn ukernel_edge; /* for tiles of <= edge_rows rows (NULL: ukernel) */
    int edge_rows;
    /* 0, or: an M block whose last panel would hold rem rows with rem + MR - split_rows
     * <= edge_rows ends in two panels of split_rows and rem + MR - split_rows rows
     * instead (AVX2: 6 + 2 rows run as 4 + 4, since the 2-row kernel has too few
     * accumulators to keep both FMA pipes busy) */
    int split_rows;
    dc_sgemm_pack_a_fn pack_a;
    dc_sgemm_pack_b_fn pack_b;
    dc_sgemm_narrow_fn narrow; /* NULL: narrow N goes through the blocked loops */
    /* an op(A) with contiguous rows (A not transposed) is read in place, not packed, when
     * n spans at most this many B micro-panels (0: never; see gemm.c, direct_a) */
    int direct_a_panels;
} dc_sgemm_kernel_info;

/* Returns the table for a path (DC_KERNEL_GENERIC / DC_KERNEL_AVX2), or NULL if this
 * build lacks it. Defined in gemm.c. */
const dc_sgemm_kernel_info *dc_sgemm_kernel_info_for(int path);

/* The portable kernel and packers (gemm_generic.c): a 6x8 tile; with GNU vector
 * extensions each packed A value is stored 4 times (pre-broadcast for SSE2). */
#define DC_GEN_MR 6
#define DC_GEN_NR 8
#if defined(__GNUC__) || defined(__clang__)
#define DC_GEN_A_DUP 4
#else
#define DC_GEN_A_DUP 1
#endif
void dc_sgemm_ukernel_generic(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                              const float *b, float *c, int64_t ldc, float alpha, float beta,
                              int mr, int nr);
void dc_sgemm_pack_a_generic(float *pa, int64_t ps, const float *a, int64_t lda, int trans_a,
                             int64_t i0, int64_t mlen, int64_t p0, int64_t kc);
void dc_sgemm_pack_b_generic(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                             int64_t p0, int64_t kc, int64_t j0, int64_t nlen);

/* True when gemm_avx2.c is part of this build (x86 builds define
 * DIGITCORE_HAVE_AVX2_TU for every file). */
#if defined(DIGITCORE_HAVE_AVX2_TU) && (defined(__x86_64__) || defined(_M_X64))
#define DC_GEMM_BUILD_AVX2 1
/* AVX2+FMA code: callers must have checked dc_cpu_has_avx2(). MR = 6, NR = 16. */
void dc_sgemm_ukernel_avx2_6x16(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                const float *b, float *c, int64_t ldc, float alpha, float beta,
                                int mr, int nr);
/* The same contract and arithmetic for edge tiles of mr <= 4 rows, with 2 or 4 rows of
 * accumulators instead of 6: 1/3 or 2/3 of the multiply-adds. */
void dc_sgemm_ukernel_avx2_edge4(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                 const float *b, float *c, int64_t ldc, float alpha, float beta,
                                 int mr, int nr);
void dc_sgemm_pack_a_avx2_6(float *pa, int64_t ps, const float *a, int64_t lda, int trans_a,
                            int64_t i0, int64_t mlen, int64_t p0, int64_t kc);
void dc_sgemm_pack_b_avx2_16(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                             int64_t p0, int64_t kc, int64_t j0, int64_t nlen);
void dc_sgemm_narrow_avx2(int trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t rs_b,
                          int64_t cs_b, float beta, float *c, int64_t ldc);
#else
#define DC_GEMM_BUILD_AVX2 0
#endif

/* True when gemm_avx512.c is part of this build (x86 builds whose compiler takes
 * -mavx512f define DIGITCORE_HAVE_AVX512_TU for every file). Its kernel is the AVX2
 * path's GEMM tile on CPUs with AVX-512 (dc_avx512_active); A is packed by
 * dc_sgemm_pack_a_avx2_6. MR = 6, NR = 32. */
#if DC_GEMM_BUILD_AVX2 && defined(DIGITCORE_HAVE_AVX512_TU)
#define DC_GEMM_BUILD_AVX512 1
void dc_sgemm_ukernel_avx512_6x32(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                  const float *b, float *c, int64_t ldc, float alpha,
                                  float beta, int mr, int nr);
void dc_sgemm_ukernel_avx512_edge4(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                                   const float *b, float *c, int64_t ldc, float alpha,
                                   float beta, int mr, int nr);
void dc_sgemm_pack_b_avx512_32(float *pb, int64_t ps, const float *b, int64_t ldb, int trans_b,
                               int64_t p0, int64_t kc, int64_t j0, int64_t nlen);
#else
#define DC_GEMM_BUILD_AVX512 0
#endif

#ifdef __cplusplus
}
#endif
#endif /* DC_GEMM_INTERNAL_H */

/*
 * gemm.c -- single-precision GEMM: driver (blocking, packing, threading, dispatch) and the
 * naive reference dc_sgemm_ref.
 *
 *   C (m,n) = alpha * op(A) (m,k) * op(B) (k,n) + beta * C, row-major.
 *
 * The micro-kernels and packers live in gemm_generic.c (portable, always built),
 * gemm_avx2.c (AVX2+FMA) and gemm_avx512.c (AVX-512F); this file is compiled without
 * -mavx2 and only calls into them through the table below, the AVX2 ones only when
 * dc_kernel_path() says so (which requires dc_cpu_has_avx2()), the AVX-512 ones only when
 * dc_avx512_active() does.
 *
 * Threads (OpenMP): each thread runs the blocked loops on its own slice of M (whole MR
 * panels) or of N (whole NR panels) with private pack buffers, whichever a small
 * compute + packing cost model prefers. Every C element is computed by one thread with
 * a K blocking that depends only on k, and edge tiles round like full tiles, so results
 * are bitwise identical for any thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "gemm_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Spare floats after each pack buffer (a guard; strides are then rounded to 64 bytes). */
#define DC_GEMM_SLACK           64
/* Below this many multiply-adds (m*n*k) a second thread costs more than it saves: an
 * OpenMP fork/join is ~5-10 us on the 2-core Zen 4 dev box, about what 4e5 multiply-adds
 * take on one core. (128,128,10) stays on one thread, (32,784,128) uses two. */
#define DC_GEMM_MT_MIN_WORK     400000.0
/* Largest B, in packed floats, that dc_gemm_run packs whole for a tall A (see b_whole):
 * 512 KB, half of a Zen 4 / recent Intel L2, so that B, the A block and the C block
 * share it. (10000,784,128) packs 784 x 128 = 400 KB. */
#define DC_GEMM_B_WHOLE_MAX     (128 * 1024)
/* Below this many multiply-adds a product stays on the 256-bit tile where the 512-bit one
 * is available: a core that runs 512-bit FMAs drops its clock for a while, and a stream
 * of tiny products (784-30-10 at batch 10: 10 x 10 x 30) kept it there for the whole
 * epoch, ~5% slower than with the 256-bit tile; big products gain far more than that. */
#define DC_GEMM_AVX512_MIN_WORK 131072.0
#ifndef DC_GEMM_DIRECT_A_MAX_N
#define DC_GEMM_DIRECT_A_MAX_N 16
#endif

/* ---- aligned scratch (dc_alloc_aligned: cpu.c) ------------------------------------------- */

/* One pack-scratch block is kept between calls. Allocating and freeing ~100 KB-2 MB per
 * call made glibc mmap/trim it every time: page faults were ~4% of a 128x784x128 GEMM
 * (and serialise threads on the mm lock). The slot is taken and given back with an
 * atomic exchange, so concurrent calls each get their own block; at most one block
 * (the last one returned) stays allocated. */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static void *volatile g_scratch_slot;
static void *dc_scratch_swap(void *p)
{
    return _InterlockedExchangePointer((void *volatile *)&g_scratch_slot, p);
}
#elif !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic(void *) g_scratch_slot;
static void *dc_scratch_swap(void *p)
{
    return atomic_exchange(&g_scratch_slot, p);
}
#else
static void *dc_scratch_swap(void *p)
{
    return p;
} /* no atomics: no cache */
#endif

static float *dc_scratch_get(size_t bytes)
{
    void *p = dc_scratch_swap(NULL);
    if (p && dc_aligned_size(p) >= bytes)
        return (float *)p;
    dc_free_aligned(p);
    return (float *)dc_alloc_aligned(bytes);
}

static void dc_scratch_put(float *p)
{
    /* frees the block the slot held before; without atomics the slot hands p back */
    dc_free_aligned(dc_scratch_swap(p));
}

/* ---- the per-ISA table (block sizes are data; measured, see benchmarks/bench_gemm.py) ---- */

static const dc_sgemm_kernel_info dc_kernel_table[] = {
    /* generic: 6x8 SSE2-width tile; A block 72 x 256 x 4 copies x 4 B = 288 KB (L2),
     * B micro-panel 256 x 8 x 4 B = 8 KB (L1) */
    {"generic", DC_GEN_MR, DC_GEN_NR, DC_GEN_A_DUP, 72, 256, 4080, dc_sgemm_ukernel_generic,
     NULL, 0, 0, dc_sgemm_pack_a_generic, dc_sgemm_pack_b_generic, NULL, 0},
#if DC_GEMM_BUILD_AVX2
    /* avx2: 6x16 tile = 12 ymm accumulators; A block 144 x 256 x 4 B = 144 KB (L2),
     * B micro-panel 256 x 16 x 4 B = 16 KB (half of L1d). Edge tiles of <= 4 rows (M = 32
     * leaves one of 2) run a 2- or 4-row kernel; a last panel of 1 or 2 rows is merged
     * with the one before into two panels for the 4-row kernel (split_rows 4). */
    {"avx2", 6, 16, 1, 144, 256, 4080, dc_sgemm_ukernel_avx2_6x16, dc_sgemm_ukernel_avx2_edge4,
     4, 4, dc_sgemm_pack_a_avx2_6, dc_sgemm_pack_b_avx2_16, dc_sgemm_narrow_avx2, 4},
#endif
#if DC_GEMM_BUILD_AVX512
    /* avx512 (the AVX2 path's tile when the CPU has AVX-512): 6x32 = 12 zmm accumulators,
     * the AVX2 A panels and blocks; kc must stay the AVX2 entry's, so that both tiles give
     * every element the same bits. B micro-panel 256 x 32 x 4 B = 32 KB. */
    {"avx512", 6, 32, 1, 144, 256, 4064, dc_sgemm_ukernel_avx512_6x32,
     dc_sgemm_ukernel_avx512_edge4, 4, 4, dc_sgemm_pack_a_avx2_6, dc_sgemm_pack_b_avx512_32,
     dc_sgemm_narrow_avx2, 4},
#endif
};

const dc_sgemm_kernel_info *dc_sgemm_kernel_info_for(int path)
{
    if (path == DC_KERNEL_GENERIC)
        return &dc_kernel_table[0];
#if DC_GEMM_BUILD_AVX512
    if (path == DC_KERNEL_AVX2 && dc_avx512_active())
        return &dc_kernel_table[2];
#endif
#if DC_GEMM_BUILD_AVX2
    if (path == DC_KERNEL_AVX2)
        return &dc_kernel_table[1];
#endif
    return NULL;
}

/* ---- driver ------------------------------------------------------------------------------ */

typedef struct {
    const dc_sgemm_kernel_info *ki;
    int trans_a, trans_b;
    int direct_a; /* read op(A) in place instead of packing it (too little reuse) */
    int64_t m, n, k, kc, nc, mc_max;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
    float *pa, *pb; /* this thread's pack buffers: mc_max x kc (x a_dup), nc x kc */
    int b_whole;    /* pb holds all of K (dc_gemm_run): K blocks b_block floats apart */
    int64_t b_block;
} dc_gemm_job;

/* The op(A) block that dc_gemm_run packs next: rows of `bytes` bytes, `ld` bytes apart. */
typedef struct {
    const char *p;
    int64_t ld, rows, bytes;
} dc_gemm_next_a;

static dc_gemm_next_a dc_gemm_a_block(const dc_gemm_job *J, int64_t ic, int64_t mlen,
                                      int64_t pc, int64_t kc)
{
    dc_gemm_next_a nx;
    nx.ld = J->lda * (int64_t)sizeof(float);
    nx.p = (const char *)(J->trans_a ? J->a + pc * J->lda + ic : J->a + ic * J->lda + pc);
    nx.rows = J->trans_a ? kc : mlen;
    nx.bytes = (J->trans_a ? mlen : kc) * (int64_t)sizeof(float);
    return nx;
}

/* One M block (rows ic .. ic+mcur-1) times one packed K x N block of B (pb, panels ps_b
 * apart): pack the A block, then every B micro-panel against every A micro-panel. Along
 * the way, the next A block (nx, if any) is asked into L2, a few lines per micro-kernel
 * call. dc_gemm_run asks this for a tall A only (b_whole): that A comes from memory in
 * row pieces of kc floats, too short for the hardware prefetchers, and packing it waited
 * on memory ((10000,784,128): pack A 16% of the time, 4% with this). For an A that stays
 * in cache the prefetches cost ~2%. */
static void dc_gemm_block(const dc_gemm_job *J, int64_t ic, int64_t mcur, int64_t pc,
                          int64_t kc, int64_t jc, int64_t nc, const float *pb, int64_t ps_b,
                          const dc_gemm_next_a *nx)
{
    const dc_sgemm_kernel_info *ki = J->ki;
    const int64_t MR = ki->mr, NR = ki->nr;
    const float beta = pc == 0 ? J->beta : 1.0f;
    const int64_t ps_a = dc_gemm_panel_stride(MR * kc * ki->a_dup);
    const int64_t pmc = dc_cdiv64(mcur, MR), pn = dc_cdiv64(nc, NR);
    /* panels 0 .. pmc-1 start at row ip*MR, except with a split tail (see split_rows):
     * the last one starts split_rows rows after the one before */
    const int64_t rem = mcur % MR, srows = ki->split_rows;
    const int split = srows > 0 && pmc >= 2 && rem > 0 && rem + MR - srows <= ki->edge_rows;
    const int64_t last0 = split ? (pmc - 2) * MR + srows : (pmc - 1) * MR;
    if (!J->direct_a) {
        const int64_t head = split ? (pmc - 2) * MR : mcur;
        if (head > 0)
            ki->pack_a(J->pa, ps_a, J->a, J->lda, J->trans_a, ic, head, pc, kc);
        if (split) {
            ki->pack_a(J->pa + (pmc - 2) * ps_a, ps_a, J->a, J->lda, J->trans_a, ic + head,
                       srows, pc, kc);
            ki->pack_a(J->pa + (pmc - 1) * ps_a, ps_a, J->a, J->lda, J->trans_a, ic + last0,
                       mcur - last0, pc, kc);
        }
    }
    /* prefetch cursor: line `pl` of row `pr` of nx, `per` lines per kernel call */
    const int64_t lines = nx ? nx->bytes / 64 + 2 : 0; /* + 2: unaligned start and end */
    const int64_t per = nx ? dc_cdiv64(nx->rows * lines, pn * pmc) : 0;
    int64_t pr = 0, pl = 0;
    for (int64_t jp = 0; jp < pn; jp++) {
        const int nr = (int)dc_min64(NR, nc - jp * NR);
        const float *bpan = pb + jp * ps_b;
        float *cblk = J->c + ic * J->ldc + jc + jp * NR;
        for (int64_t ip = 0; ip < pmc; ip++) {
            const int64_t r0 = ip == pmc - 1 ? last0 : ip * MR;
            const int mr = (int)(split && ip == pmc - 2 ? srows : dc_min64(MR, mcur - r0));
            const int64_t i = ic + r0;
            const float *ap = J->pa + ip * ps_a;
            int64_t rs_a = 0, cs_a = 0; /* rs_a == 0: packed micro-panel */
            if (J->direct_a) {
                ap = J->trans_a ? J->a + pc * J->lda + i : J->a + i * J->lda + pc;
                rs_a = J->trans_a ? 1 : J->lda;
                cs_a = J->trans_a ? J->lda : 1;
            }
            for (int64_t t = 0; t < per && pr < nx->rows; t++) {
                DC_PREFETCH_L2(nx->p + pr * nx->ld + dc_min64(pl * 64, nx->bytes - 1));
                if (++pl == lines) {
                    pl = 0;
                    pr++;
                }
            }
            const dc_sgemm_ukernel_fn uk = mr <= ki->edge_rows ? ki->ukernel_edge : ki->ukernel;
            uk(kc, ap, rs_a, cs_a, bpan, cblk + r0 * J->ldc, J->ldc, J->alpha, beta, mr, nr);
        }
    }
}

/* The five blocking loops around the micro-kernel, on one thread. Every element of C
 * sums its K blocks in the same order (pc ascending) whichever loop is outermost. */
static void dc_gemm_run(const dc_gemm_job *J)
{
    const dc_sgemm_kernel_info *ki = J->ki;
    const int64_t MR = ki->mr, NR = ki->nr;
    const int64_t m = J->m, n = J->n, k = J->k;
    /* balanced M blocks of at most mc_max rows, a multiple of MR */
    const int64_t mc = dc_cdiv64(dc_cdiv64(m, dc_cdiv64(m, J->mc_max)), MR) * MR;

    for (int64_t jc = 0; jc < n; jc += J->nc) {
        const int64_t nc = dc_min64(J->nc, n - jc);
        if (J->b_whole) {
            /* all K blocks of B packed once (K block i at pb + i * b_block), then M blocks
             * outermost: a tall A streams through once, and each C block stays in cache
             * over its K blocks instead of making one trip to memory per K block */
            const int64_t ps_b = dc_gemm_panel_stride(NR * J->kc);
            for (int64_t pc = 0; pc < k; pc += J->kc)
                ki->pack_b(J->pb + (pc / J->kc) * J->b_block, ps_b, J->b, J->ldb, J->trans_b,
                           pc, dc_min64(J->kc, k - pc), jc, nc);
            for (int64_t ic = 0; ic < m; ic += mc)
                for (int64_t pc = 0; pc < k; pc += J->kc) {
                    const int64_t nic = pc + J->kc < k ? ic : ic + mc;
                    const int64_t npc = pc + J->kc < k ? pc + J->kc : 0;
                    const dc_gemm_next_a nx = dc_gemm_a_block(J, nic, dc_min64(mc, m - nic),
                                                              npc, dc_min64(J->kc, k - npc));
                    dc_gemm_block(J, ic, dc_min64(mc, m - ic), pc, dc_min64(J->kc, k - pc), jc,
                                  nc, J->pb + (pc / J->kc) * J->b_block, ps_b,
                                  nic < m && !J->direct_a ? &nx : NULL);
                }
        } else {
            for (int64_t pc = 0; pc < k; pc += J->kc) {
                const int64_t kc = dc_min64(J->kc, k - pc);
                const int64_t ps_b = dc_gemm_panel_stride(NR * kc);
                ki->pack_b(J->pb, ps_b, J->b, J->ldb, J->trans_b, pc, kc, jc, nc);
                for (int64_t ic = 0; ic < m; ic += mc)
                    dc_gemm_block(J, ic, dc_min64(mc, m - ic), pc, kc, jc, nc, J->pb, ps_b,
                                  NULL);
            }
        }
    }
}

/* C = beta * C, with beta == 0 meaning "overwrite with zeros" (even NaN). */
static void dc_scale_c(float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    if (beta == 1.0f)
        return;
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) {
            memset(ci, 0, (size_t)n * sizeof(float));
        } else {
            for (int64_t j = 0; j < n; j++)
                ci[j] *= beta;
        }
    }
}

static int dc_gemm_check(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         int trans_a, const float *b, int64_t ldb, int trans_b, const float *c,
                         int64_t ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return DC_ERR_ARG;
    if (m > 0 && n > 0 && (!c || ldc < n))
        return DC_ERR_ARG;
    if (m > 0 && n > 0 && k > 0) {
        if (!a || !b)
            return DC_ERR_ARG;
        if (lda < (trans_a ? m : k) || ldb < (trans_b ? k : n))
            return DC_ERR_ARG;
    }
    return DC_OK;
}

/* Narrow N through the ISA's narrow kernel (see dc_sgemm_narrow_fn): threads take
 * slices of M in multiples of 16 rows, and no element's bits depend on the slicing.
 * A not transposed with B not transposed needs op(B)^T rows contiguous: B (k x n) is
 * copied transposed into scratch (n*k floats, at most 16 k). */
static int dc_sgemm_narrow(const dc_sgemm_kernel_info *ki, int trans_a, int trans_b, int64_t m,
                           int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                           const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    float *bt = NULL;
    int64_t rs_b = trans_b ? 1 : ldb, cs_b = trans_b ? ldb : 1;
    if (!trans_a && !trans_b) {
        bt = dc_scratch_get((size_t)(n * k + DC_GEMM_SLACK) * sizeof(float));
        if (!bt)
            return DC_ERR_NOMEM;
        for (int64_t p = 0; p < k; p++) {
            const float *src = b + p * ldb;
            for (int64_t j = 0; j < n; j++)
                bt[j * k + p] = src[j];
        }
        b = bt;
        rs_b = 1;
        cs_b = k;
    }
    int nt = dc_get_num_threads();
    const int64_t blocks = dc_cdiv64(m, 16);
    if ((double)m * (double)n * (double)k < DC_GEMM_MT_MIN_WORK)
        nt = 1;
    if (nt > blocks)
        nt = (int)blocks;
    if (nt <= 1) {
        ki->narrow(trans_a != 0, m, n, k, alpha, a, lda, b, rs_b, cs_b, beta, c, ldc);
    } else {
        dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num(), got = omp_get_num_threads();
            const int64_t lo = (blocks * tid / got) * 16;
            const int64_t hi = dc_min64(m, (blocks * (tid + 1) / got) * 16);
            if (hi > lo)
                ki->narrow(trans_a != 0, hi - lo, n, k, alpha, trans_a ? a + lo : a + lo * lda,
                           lda, b, rs_b, cs_b, beta, c + lo * ldc, ldc);
        }
#else
        ki->narrow(trans_a != 0, m, n, k, alpha, a, lda, b, rs_b, cs_b, beta, c, ldc);
#endif
    }
    if (bt)
        dc_scratch_put(bt);
    return DC_OK;
}

int dc_sgemm_dot(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *bt,
                 int64_t ldbt, float *c, int64_t ldc)
{
    const dc_sgemm_kernel_info *ki = dc_sgemm_kernel_info_for(dc_kernel_path());
    if (!ki || !ki->narrow || k == 0 || m <= 0 || n <= 0)
        return dc_sgemm(0, 1, m, n, k, 1.0f, a, lda, bt, ldbt, 0.0f, c, ldc);
    int st = dc_gemm_check(m, n, k, a, lda, 0, bt, ldbt, 1, c, ldc);
    if (st != DC_OK)
        return st;
    ki->narrow(0, m, n, k, 1.0f, a, lda, bt, 1, ldbt, 0.0f, c, ldc);
    return DC_OK;
}

int dc_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc)
{
    int st = dc_gemm_check(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc);
    if (st != DC_OK)
        return st;
    if (m == 0 || n == 0)
        return DC_OK;
    if (k == 0 || alpha == 0.0f) {
        dc_scale_c(c, ldc, m, n, beta);
        return DC_OK;
    }
    const dc_sgemm_kernel_info *ki = dc_sgemm_kernel_info_for(dc_kernel_path());
    if (!ki)
        ki = dc_sgemm_kernel_info_for(DC_KERNEL_GENERIC);
#if DC_GEMM_BUILD_AVX512
    /* small products keep the 256-bit tile (same bits): see DC_GEMM_AVX512_MIN_WORK */
    if (ki == &dc_kernel_table[2] &&
        (double)m * (double)n * (double)k < DC_GEMM_AVX512_MIN_WORK)
        ki = &dc_kernel_table[1];
#endif
    /* n <= 16 (the 10-class layer): a full-width NR = 16 tile would idle 6 of 16 lanes */
    if (ki->narrow && n <= DC_GEMM_NARROW_MAX_N)
        return dc_sgemm_narrow(ki, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                               ldc);

    dc_gemm_job J;
    J.ki = ki;
    J.trans_a = trans_a != 0;
    J.trans_b = trans_b != 0;
    J.m = m;
    J.n = n;
    J.k = k;
    J.alpha = alpha;
    J.beta = beta;
    J.a = a;
    J.b = b;
    J.c = c;
    J.lda = lda;
    J.ldb = ldb;
    J.ldc = ldc;
    /* balanced K blocks: k = 784 -> 3 x 262 rather than 256+256+256+16 */
    J.kc = dc_cdiv64(k, dc_cdiv64(k, ki->kc));
    J.nc = dc_min64(ki->nc, dc_cdiv64(n, ki->nr) * ki->nr);
    J.mc_max = dc_min64(ki->mc, dc_cdiv64(m, ki->mr) * ki->mr);

    /* Packing A costs about one pass over the A block; it pays when the block is reused
     * over many B micro-panels. With n <= DC_GEMM_DIRECT_A_MAX_N (e.g. the 10-class
     * output layer; only paths without a narrow kernel get here) the kernel reads op(A)
     * in place. So do the x86 tiles for an A with contiguous rows when n spans at most
     * ki->direct_a_panels B micro-panels (128 columns on the AVX-512 tile, 64 on AVX2):
     * their kernels broadcast each A element from memory anyway, and the MR row streams
     * are ones the prefetchers follow. One core of an AVX-512 Xeon, packed -> in place:
     * (256,1024,64) 153 -> 205 GFLOP/s, (256,1024,128) 187 -> 205, (10000,784,128) 172
     * -> 198; on its AVX2 tile (256,1024,64) 105 -> 119 and (256,1024,128) 116 -> 120,
     * but (256,1024,1024) 118 -> 113, so wider products still pack. A transposed A
     * (columns contiguous) still packs: in place, (1024,256,64) ran 10% slower. Packed
     * or in place, the kernel takes the same values in the same order (same bits).
     * Decided on the whole n so that every thread count computes every element the
     * same way. */
    J.direct_a = n <= DC_GEMM_DIRECT_A_MAX_N ||
                 (!trans_a && dc_cdiv64(n, ki->nr) <= ki->direct_a_panels);

    const int64_t pm = dc_cdiv64(m, ki->mr), pn = dc_cdiv64(n, ki->nr);
    int nt = dc_get_num_threads();
    if ((double)m * (double)n * (double)k < DC_GEMM_MT_MIN_WORK)
        nt = 1;
    int split_n = 0;
    if (nt > 1) {
        /* Each thread runs an independent sub-GEMM on a slice of M or N with its own pack
         * buffers: no barriers, no packed data crossing cores. On a shared 2-core machine
         * this beat cooperative packing (one thread descheduled at a barrier stalls the
         * other). Cost in cycles: tiles * MR*NR*k / 16 MAC per cycle, plus ~0.5 cycle per
         * packed element (the slice of one operand, all of the other). */
        const double tile = (double)ki->mr * (double)ki->nr * (double)k / 16.0;
        const double pk = 0.5 * (double)k, a_pk = J.direct_a ? 0.0 : pk;
        const double cost_m = (double)(dc_cdiv64(pm, nt) * pn) * tile +
                              (double)(dc_cdiv64(pm, nt) * ki->mr) * a_pk + (double)n * pk;
        const double cost_n = (double)(pm * dc_cdiv64(pn, nt)) * tile + (double)m * a_pk +
                              (double)(dc_cdiv64(pn, nt) * ki->nr) * pk;
        split_n = cost_n < cost_m;
        const int64_t lim = split_n ? pn : pm;
        if (nt > lim)
            nt = (int)lim;
    }

    const int64_t n_abuf = J.direct_a ? 0 : nt;
    /* one scratch block: nt B buffers (nc/NR panels), then nt A buffers (mc/MR panels);
     * panel strides (dc_gemm_panel_stride) and buffer strides are multiples of 16
     * floats, so every panel stays 64-byte aligned */
    const int64_t pa_stride =
        dc_cdiv64(J.mc_max, ki->mr) * dc_gemm_panel_stride(ki->mr * J.kc * ki->a_dup) +
        DC_GEMM_SLACK;
    /* B for all of K at once when A is tall (several M blocks) and that B is small */
    const int64_t nkb = dc_cdiv64(k, J.kc);
    J.b_block = dc_cdiv64(J.nc, ki->nr) * dc_gemm_panel_stride(ki->nr * J.kc);
    J.b_whole = m > J.mc_max && nkb > 1 && n <= J.nc && nkb * J.b_block <= DC_GEMM_B_WHOLE_MAX;
    const int64_t pb_stride = (J.b_whole ? nkb : 1) * J.b_block + DC_GEMM_SLACK;
    float *scratch =
        dc_scratch_get((size_t)(nt * pb_stride + n_abuf * pa_stride) * sizeof(float));
    if (!scratch)
        return DC_ERR_NOMEM;
    J.pb = scratch;
    J.pa = scratch + nt * pb_stride;

    if (nt == 1) {
        dc_gemm_run(&J);
    } else {
        dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num(), got = omp_get_num_threads();
            /* this thread's slice: whole MR rows / NR columns */
            const int64_t np = split_n ? pn : pm, step = split_n ? ki->nr : ki->mr;
            const int64_t lo = (np * tid / got) * step;
            const int64_t hi = dc_min64(split_n ? n : m, (np * (tid + 1) / got) * step);
            if (hi > lo) {
                dc_gemm_job T = J;
                T.pa = J.pa + (J.direct_a ? 0 : (int64_t)tid * pa_stride);
                T.pb = J.pb + (int64_t)tid * pb_stride;
                if (split_n) {
                    T.n = hi - lo;
                    T.b = J.trans_b ? J.b + lo * J.ldb : J.b + lo;
                    T.c = J.c + lo;
                } else {
                    T.m = hi - lo;
                    T.a = J.trans_a ? J.a + lo : J.a + lo * J.lda;
                    T.c = J.c + lo * J.ldc;
                    T.mc_max = dc_min64(J.mc_max, dc_cdiv64(T.m, ki->mr) * ki->mr);
                }
                dc_gemm_run(&T);
            }
        }
#else
        dc_gemm_run(&J);
#endif
    }

    dc_scratch_put(scratch);
    return DC_OK;
}

/* ---- naive reference: the oracle and the fallback (double accumulation) ------------------ */

int dc_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc)
{
    int st = dc_gemm_check(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc);
    if (st != DC_OK)
        return st;
    /* alpha 0 reads neither A nor B (BLAS's rule, as dc_sgemm): C = beta * C */
    const int64_t kk = alpha == 0.0f ? 0 : k;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < kk; p++) {
                const float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                const float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += (double)av * (double)bv;
            }
            double v = (double)alpha * s;
            if (beta != 0.0f)
                v += (double)beta * (double)c[i * ldc + j];
            c[i * ldc + j] = (float)v;
        }
    }
    return DC_OK;
}

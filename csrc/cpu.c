/*
 * cpu.c -- CPU feature detection (once, cached), kernel-path selection, the
 * thread-count setting and the cache-line-aligned allocator shared by every kernel.
 *
 * This file is compiled WITHOUT -mavx2: it only asks the CPU (cpuid + xgetbv); it
 * never executes AVX instructions itself.
 */
#include "gemm_internal.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <immintrin.h> /* _xgetbv */
#include <intrin.h>    /* __cpuid, __cpuidex */
#else
#include <cpuid.h>
#endif
#endif

#if defined(__APPLE__) && (defined(__x86_64__) || defined(_M_X64))
#include <stdio.h> /* sscanf */
#include <sys/sysctl.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
static void dc_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
#if defined(_MSC_VER)
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    r[0] = (unsigned)v[0];
    r[1] = (unsigned)v[1];
    r[2] = (unsigned)v[2];
    r[3] = (unsigned)v[3];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

static uint64_t dc_xgetbv0(void)
{
#if defined(_MSC_VER)
    return (uint64_t)_xgetbv(0);
#else
    uint32_t lo, hi;
    /* raw opcode of xgetbv, so no -mxsave is needed */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#endif
}

static int dc_detect_avx2(void)
{
    unsigned r[4];
    dc_cpuid(0, 0, r);
    if (r[0] < 7)
        return 0;
    dc_cpuid(1, 0, r);
    const unsigned ecx1 = r[2];
    const int fma = (ecx1 >> 12) & 1, osxsave = (ecx1 >> 27) & 1, avx = (ecx1 >> 28) & 1;
    if (!(fma && osxsave && avx))
        return 0;
    /* the OS must save XMM (bit 1) and YMM (bit 2) state on context switches */
    if ((dc_xgetbv0() & 0x6) != 0x6)
        return 0;
    dc_cpuid(7, 0, r);
    return (int)((r[1] >> 5) & 1); /* EBX bit 5: AVX2 */
}

#if defined(__APPLE__)
/* macOS gives a thread the AVX-512 register state at its first AVX-512 instruction, so
 * XCR0 shows no opmask or ZMM state before that: the kernel's own answer
 * (hw.optional.avx512f) says whether the CPU has it and the OS will save it. Darwin
 * kernels 19.6 to 21.2 (macOS 10.15.6 to 12.1) could corrupt the opmask registers on
 * return from a signal handler, so those are not trusted with it (the AVX2 path runs). */
static int dc_macos_avx512(void)
{
    int on = 0, major = 0, minor = 0;
    size_t n = sizeof(on);
    if (sysctlbyname("hw.optional.avx512f", &on, &n, NULL, 0) != 0 || !on)
        return 0;
    char release[64] = {0};
    n = sizeof(release) - 1;
    if (sysctlbyname("kern.osrelease", release, &n, NULL, 0) != 0 ||
        sscanf(release, "%d.%d", &major, &minor) != 2)
        return 0;
    return major > 21 || (major == 21 && minor >= 3);
}
#endif

static int dc_detect_avx512(void)
{
    if (!dc_detect_avx2())
        return 0;
#if defined(__APPLE__)
    if (!dc_macos_avx512())
        return 0;
#else
    /* the OS must also save the opmask (bit 5) and the upper ZMM halves and registers
     * (bits 6, 7) */
    if ((dc_xgetbv0() & 0xE6) != 0xE6)
        return 0;
#endif
    unsigned r[4];
    dc_cpuid(7, 0, r);
    /* EBX bits 16 F, 17 DQ, 28 CD, 30 BW, 31 VL: the kernels use F alone, but MSVC's
     * /arch:AVX512 lets the compiler use all five in the *_avx512.c files. Every AVX-512
     * CPU but the Xeon Phi (F and CD only) has them. */
    const unsigned want = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    return (r[1] & want) == want;
}
#else
static int dc_detect_avx2(void)
{
    return 0;
}

static int dc_detect_avx512(void)
{
    return 0;
}
#endif

/* -1 = not detected yet. Detection is idempotent, so a first-call race between threads
 * only repeats the same work and stores the same value. */
static volatile int g_has_avx2 = -1;
static volatile int g_kernel_path = -1; /* -1 = default (best available) */
static volatile int g_num_threads = 0;  /* <= 0 = default */

int dc_cpu_has_avx2(void)
{
    int v = g_has_avx2;
    if (v < 0) {
        v = (DC_GEMM_BUILD_AVX2 && dc_detect_avx2()) ? 1 : 0;
        g_has_avx2 = v;
    }
    return v;
}

static volatile int g_has_avx512 = -1;
static volatile int g_use_avx512 = 1; /* on where the CPU has it, unless asked not to */

int dc_cpu_has_avx512(void)
{
    int v = g_has_avx512;
    if (v < 0) {
        v = (DC_GEMM_BUILD_AVX512 && dc_detect_avx512()) ? 1 : 0;
        g_has_avx512 = v;
    }
    return v;
}

int dc_use_avx512(int on)
{
    if (on && !dc_cpu_has_avx512())
        return DC_ERR_UNSUPPORTED;
    g_use_avx512 = on != 0;
    return DC_OK;
}

int dc_avx512_active(void)
{
    return g_use_avx512 && dc_kernel_path() == DC_KERNEL_AVX2 && dc_cpu_has_avx512();
}

int dc_kernel_path(void)
{
    int p = g_kernel_path;
    if (p < 0)
        p = dc_cpu_has_avx2() ? DC_KERNEL_AVX2 : DC_KERNEL_GENERIC;
    return p;
}

int dc_select_kernel(int path)
{
    if (path == DC_KERNEL_GENERIC) {
        g_kernel_path = path;
        return DC_OK;
    }
    if (path == DC_KERNEL_AVX2) {
        if (!dc_cpu_has_avx2())
            return DC_ERR_UNSUPPORTED;
        g_kernel_path = path;
        return DC_OK;
    }
    return DC_ERR_ARG;
}

/* The thread count has one source of truth per OS thread: OpenMP's nthreads ICV, which
 * threadpoolctl also sets. dc_set_num_threads writes it (and remembers the request, so
 * other Python threads, whose ICV is OpenMP's default, use at most that many); a
 * threadpoolctl limit entered later therefore lowers the count, and is undone on exit. */
#ifdef _OPENMP
static int g_default_threads = 0; /* omp_get_max_threads() before we first changed it */
#endif

void dc_set_num_threads(int n)
{
#ifdef _OPENMP
    if (g_default_threads == 0)
        g_default_threads = omp_get_max_threads();
    omp_set_num_threads(n > 0 ? n : g_default_threads);
#endif
    g_num_threads = n > 0 ? n : 0;
}

/* whether a kernel started a parallel region of more than one thread (dc_team_mark) */
static volatile int g_team_started = 0;

void dc_team_mark(int nt)
{
    if (nt > 1 && !g_team_started)
        g_team_started = 1;
}

int dc_team_started(void)
{
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__)
    return g_team_started;
#else
    return 0; /* LLVM's and MSVC's runtimes: a forked child starts its own team (or no fork) */
#endif
}

int dc_get_num_threads(void)
{
#ifdef _OPENMP
    /* inside a parallel region (dc_mlp_train's overlap, or a caller's own threads) a
     * kernel runs on the thread that called it */
    if (omp_in_parallel())
        return 1;
    int n = omp_get_max_threads();
    if (g_num_threads > 0 && g_num_threads < n)
        n = g_num_threads;
    return n > DC_MAX_THREADS ? DC_MAX_THREADS : n > 0 ? n : 1;
#else
    return 1;
#endif
}

int dc_team_thread(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int dc_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

int dc_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The header before the block keeps malloc's pointer ([-1]) and the usable size ([-2]). */
void *dc_alloc_aligned(size_t bytes)
{
    if (bytes > SIZE_MAX - DC_ALIGN - 2 * sizeof(void *))
        return NULL;
    void *raw = malloc(bytes + DC_ALIGN + 2 * sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t p =
        ((uintptr_t)raw + 2 * sizeof(void *) + DC_ALIGN - 1) & ~(uintptr_t)(DC_ALIGN - 1);
    ((void **)p)[-1] = raw;
    ((size_t *)p)[-2] = bytes;
    return (void *)p;
}

size_t dc_aligned_size(const void *p)
{
    return ((const size_t *)p)[-2];
}

void dc_free_aligned(void *p)
{
    if (p)
        free(((void **)p)[-1]);
}

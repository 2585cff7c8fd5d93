/*
 * gemm_check.c -- a C-only harness for dc_sgemm (never compiled into the package): every
 * variant (both kernel paths, 1 and 2 threads, transposes, awkward sizes, padded leading
 * dimensions, beta 0 over NaN) against dc_sgemm_ref; with an argument, then GFLOP/s of
 * the training shapes. Built and run by `bash csrc/tests/run_gemm_check [time]` (.ci/run
 * runs the check).
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digitcore.h"

static uint64_t rng = 88172645463325252ULL;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int check(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta)
{
    /* padded leading dimensions half the time, exact (contiguous) the other half */
    const int64_t pad = (m + n + k) % 2;
    int64_t lda = (ta ? m : k) + 3 * pad, ldb = (tb ? k : n) + pad, ldc = n + 2 * pad;
    int64_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(arows * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    float *r = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    for (int64_t i = 0; i < arows * lda; i++)
        a[i] = frand();
    for (int64_t i = 0; i < brows * ldb; i++)
        b[i] = frand();
    for (int64_t i = 0; i < m * ldc; i++)
        c[i] = r[i] = beta == 0.0f ? NAN : frand();
    int s1 = dc_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    int s2 = dc_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, r, ldc);
    int bad = s1 || s2;
    double maxerr = 0;
    for (int64_t i = 0; i < m && !bad; i++)
        for (int64_t j = 0; j < n; j++) {
            double e = fabs((double)c[i * ldc + j] - (double)r[i * ldc + j]);
            double tol = 1e-5 * (double)(k + 1) * (fabs((double)alpha) + 1) + 1e-6;
            if (!(e <= tol)) {
                bad = 1;
                maxerr = e;
                break;
            }
        }
    if (bad)
        printf("FAIL path=%d avx512=%d nt=%d ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g "
               "err=%g "
               "st=%d,%d\n",
               dc_kernel_path(), dc_avx512_active(), dc_get_num_threads(), ta, tb, (long long)m,
               (long long)n, (long long)k, alpha, beta, maxerr, s1, s2);
    free(a);
    free(b);
    free(c);
    free(r);
    return bad;
}

static void bench(int ta, int tb, int64_t m, int64_t n, int64_t k)
{
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    float *a = malloc(sizeof(float) * (size_t)(m * k));
    float *b = malloc(sizeof(float) * (size_t)(k * n));
    float *c = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++)
        a[i] = frand();
    for (int64_t i = 0; i < k * n; i++)
        b[i] = frand();
    double flop = 2.0 * (double)m * (double)n * (double)k;
    int reps = (int)(3e8 / flop) + 1;
    double best[5];
    for (int t = 0; t < 5; t++) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            dc_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
        best[t] = (now() - t0) / reps;
    }
    double med; /* median of 5 */
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (best[j] < best[i]) {
                double x = best[i];
                best[i] = best[j];
                best[j] = x;
            }
    med = best[2];
    printf("  %s%s m=%5lld k=%5lld n=%5lld  %6.1f GFLOP/s\n", ta ? "At" : "A ",
           tb ? "Bt" : "B ", (long long)m, (long long)k, (long long)n, flop / med / 1e9);
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv)
{
    (void)argv;
    int fails = 0;
    const int64_t dims[] = {1, 2, 5, 6, 7, 15, 16, 17, 31, 73, 145, 257, 300};
    const int nd = (int)(sizeof dims / sizeof dims[0]);
    /* generic, the AVX2 path with its 6x16 tile, and with the AVX-512 6x32 tile */
    for (int cfg = 0; cfg < 3; cfg++) {
        const int path = cfg == 0 ? DC_KERNEL_GENERIC : DC_KERNEL_AVX2;
        if (dc_select_kernel(path) != DC_OK || dc_use_avx512(cfg == 2) != DC_OK) {
            printf("configuration %d unsupported\n", cfg);
            continue;
        }
        for (int nt = 1; nt <= 2; nt++) {
            dc_set_num_threads(nt);
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int x = 0; x < 60; x++) {
                        int64_t m = dims[(unsigned)(frand() * 1e6f + 1e6f) % nd];
                        int64_t n = dims[(unsigned)(frand() * 1e6f + 1e6f) % nd];
                        int64_t k = dims[(unsigned)(frand() * 1e6f + 1e6f) % nd];
                        fails +=
                            check(ta, tb, m, n, k, x % 3 ? 1.0f : -0.5f, x % 2 ? 0.0f : 0.75f);
                    }
            fails += check(0, 0, 600, 300, 700, 1.0f, 1.0f);
            fails += check(1, 1, 300, 600, 700, 1.0f, 0.0f);
        }
    }
    printf("correctness: %d failures\n", fails);
    if (argc > 1) {
        static const int64_t S[][3] = {{128, 784, 128},   {128, 784, 512}, {128, 512, 256},
                                       {128, 128, 10},    {32, 784, 128},  {10000, 784, 128},
                                       {1024, 1024, 1024}};
        for (int path = 1; path >= 0; path--) {
            if (dc_select_kernel(path) != DC_OK)
                continue;
            for (int nt = 1; nt <= 2; nt++) {
                dc_set_num_threads(nt);
                printf("path=%d threads=%d\n", path, nt);
                for (int s = 0; s < 7; s++)
                    bench(0, 0, S[s][0], S[s][2], S[s][1]);
                if (path == 1) {
                    bench(1, 0, 784, 128, 128); /* dW = X^T dY */
                    bench(0, 1, 128, 128, 784); /* Y = X W^T */
                    bench(0, 1, 128, 10, 128);
                }
            }
        }
    }
    return fails != 0;
}

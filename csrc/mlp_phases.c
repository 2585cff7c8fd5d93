/*
 * mlp_phases.c -- the scheduler of layer 0's sparse work (mlp_layer0.c): two phases of
 * fixed units in one OpenMP parallel region, with a barrier between them (or one phase:
 * a full batch's forward by whole blocks).
 *
 * Units are fixed (column blocks of layer 0's outputs, or (input group, block) pairs) and
 * each unit's arithmetic does not depend on which thread runs it, so the results do not
 * depend on the number of threads. A phase's span function, if any, runs first on each
 * thread's whole run of units (mlp_layer0.c's tail_span: one product for all of them),
 * and must keep that promise too.
 */
#include "mlp_internal.h"

/* Thread t's share of nt of a phase's units: a fixed run, so with two threads and two
 * groups thread t takes group t's pairs, and block b goes to the same thread in every
 * phase and batch (its columns stay in that core's cache). */
static int phase_share(const void *job, const mlp_phase *ph, int64_t n_blocks, int t, int nt)
{
    const int64_t n = ph->pairs ? DC_SPARSE_GROUPS * n_blocks : n_blocks;
    const int64_t u0 = n * t / nt, u1 = n * (t + 1) / nt;
    int st = ph->span != NULL && u1 > u0 ? ph->span(job, u0, u1) : DC_OK;
    for (int64_t u = u0; u < u1 && st == DC_OK; ++u)
        st = ph->pairs ? ph->fn(job, u / n_blocks, u % n_blocks) : ph->fn(job, -1, u);
    return st;
}

int mlp_phase_threads(int64_t n_blocks, int64_t work)
{
    int nt = dc_get_num_threads();
    if (nt > DC_SPARSE_GROUPS * n_blocks)
        nt = (int)(DC_SPARSE_GROUPS * n_blocks);
    if (work < DC_SPMM_PARALLEL_MIN)
        nt = 1; /* too little work to share (as in dc_spmm) */
    return nt;
}

int mlp_run_phases(const void *job, int64_t n_blocks, int64_t work, mlp_phase a, mlp_phase b)
{
    const int nt = mlp_phase_threads(n_blocks, work);
    if (nt <= 1) {
        const int st = phase_share(job, &a, n_blocks, 0, 1);
        return st == DC_OK && b.fn != NULL ? phase_share(job, &b, n_blocks, 0, 1) : st;
    }
    /* phase a's errors, read by every thread after the barrier, and phase b's: each
     * written under the critical section, never while it is being read */
    int status = DC_OK, status_b = DC_OK;
    dc_team_mark(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    { /* (a kernel called in here runs on its thread) */
        const int t = dc_team_thread(), got = dc_team_size();
        int st = phase_share(job, &a, n_blocks, t, got);
        if (st != DC_OK) {
#ifdef _OPENMP
#pragma omp critical(dc_run_phases)
#endif
            status = st;
        }
        if (b.fn != NULL) {
#ifdef _OPENMP
#pragma omp barrier
#pragma omp flush
#endif
            if (status == DC_OK) {
                st = phase_share(job, &b, n_blocks, t, got);
                if (st != DC_OK) {
#ifdef _OPENMP
#pragma omp critical(dc_run_phases)
#endif
                    status_b = st;
                }
            }
        }
    }
    return status != DC_OK ? status : status_b;
}

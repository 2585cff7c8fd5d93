/*
 * team.c -- how many threads dc_mlp_train's next batch runs on: the whole team, or one
 * thread when the team keeps waiting for a member that shares its core with another
 * process (a busy machine, or a BLAS thread pool spinning in this process).
 *
 * Every kernel's bits are the same on any number of threads, so the choice can change
 * from batch to batch; it only moves time. The choice is measured, not guessed: batches
 * are timed in windows of at least TEAM_WINDOW_S seconds; now and then windows run the
 * other way in turn with the way in use (a probe) and the faster way per row is kept. Probes
 * are rare while the way in use keeps its speed (the gap between them doubles up to a maximum),
 * and come at once when two windows in a row run TEAM_TRIGGER times slower than the way's
 * confirmed speed (another process started). The first window of a process is followed by a
 * probe, so a machine busy from the start is found within a few milliseconds.
 *
 * Inference (mlp_infer.c) follows training's finding while it is fresh, and runs a small
 * call on one thread (team_infer_begin).
 *
 * The state is shared by the process's calls (a trainer calls dc_mlp_train per chunk of
 * batches), in volatile ints as g_num_threads is: two trainings on two Python threads at
 * once may overwrite each other's choice, which changes speed, never results.
 */
#include "mlp_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* A window is at least this long (and at least TEAM_WINDOW_MIN batches): a time slice of
 * a contended core is a few milliseconds, so shorter windows see either a stall or none
 * and their rates scatter (2 ms windows chose one thread beside a busy loop on a machine
 * loaded ~9 on 2 cores where the team was ~2x faster). At most TEAM_WINDOW_MAX batches,
 * so a probe ends. */
#define TEAM_WINDOW_S       0.005
#define TEAM_WINDOW_MIN     2
#define TEAM_WINDOW_MAX     64
/* A probe runs the other way's windows alternating with the way in use's, up to
 * TEAM_PROBE_PAIRS of each, so that the load of other processes, which drifts, weighs on
 * both alike; it switches when the other way is at least TEAM_SWITCH faster per row over
 * the pairs (batches' non-zero counts vary, and one window of a contended core may see a
 * stall or none), and stops early when a window of the other way is TEAM_REJECT slower
 * than the way in use (on a quiet machine, the first one-thread window already is). */
#define TEAM_PROBE_PAIRS    3
#define TEAM_SWITCH         0.9
#define TEAM_REJECT         1.2
/* ... and switches at once when a window of the other way is this much faster (per row)
 * than the way in use's windows in the probe so far (not the window that called the probe,
 * which may have been a stall: that one would switch a quiet machine's team): the team beside a
 * thread that spins on a core of its own (OpenBLAS's pool for ~0.1 s after a NumPy matmul) ran
 * ~10x slower than one thread, and a training call of 47 batches (an epoch on 6,000 images)
 * ended before the probe's pairs did, so every call ran the team again. A probe still under way
 * when its call ends is decided on the pairs it has (team_close). */
#define TEAM_DECISIVE       0.5
/* Two windows this much slower than the confirmed rate call a probe at once. */
#define TEAM_TRIGGER        1.3
/* A call that starts this long after the process's last timed batch probes at its first
 * window, as a fresh process does: the load the choice was made under may have gone (a
 * burst of another process that made one thread faster) or come, while nothing was timed
 * (a benchmark waiting for its next round, an application between two fits). Otherwise
 * one thread would keep its gap of up to TEAM_GAP_MAX_SINGLE windows, a whole epoch of
 * 784-128-10, on a machine that is quiet again. */
#define TEAM_STALE_S        0.5
/* Windows between probes: from MIN after a switch, growing to MAX while confirmed. The
 * full team's probes are what a quiet machine pays (a one-thread window of 784-128-10 at
 * batch 128 does ~1.6x less work than the team's), so they back off faster (x4) and
 * further; one thread's probes of the team come back sooner, to catch the machine
 * becoming quiet again. */
#define TEAM_GAP_MIN        8
#define TEAM_GAP_MAX_FULL   1024
#define TEAM_GAP_MAX_SINGLE 64

static volatile int g_policy = DC_TEAM_ADAPTIVE;
static volatile int g_single = 0; /* the way in use: 1 = one thread */
static volatile int g_gap = TEAM_GAP_MIN;
static volatile int g_left = 0;       /* windows before the next probe */
static volatile double g_when = -1.0; /* when a timed training batch last ended */
static volatile int g_flip = 0;       /* DC_TEAM_ALTERNATE's inference calls */
/* batches on one thread, on the team, probes: plain increments (diagnostics) */
static volatile int64_t g_count[3];
/* dc_team_simulate's clock (< 0: the real one) */
static double g_fake_now = -1.0;

int dc_set_team_policy(int policy)
{
    if (policy != DC_TEAM_FIXED && policy != DC_TEAM_ADAPTIVE && policy != DC_TEAM_ALTERNATE)
        return DC_ERR_ARG;
    g_policy = policy;
    g_single = 0;
    g_gap = TEAM_GAP_MIN;
    g_left = 0;
    g_when = -1.0;
    g_flip = 0;
    return DC_OK;
}

int dc_get_team_policy(void)
{
    return g_policy;
}

void dc_team_counts(int64_t out[3])
{
    for (int i = 0; i < 3; ++i)
        out[i] = g_count[i];
}

static double now_s(void)
{
    if (g_fake_now >= 0.0)
        return g_fake_now;
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0.0;
#endif
}

static void open_as(team_choice *c, int full)
{
    *c = (team_choice){.full = full, .policy = g_policy};
    if (c->full <= 1)
        c->policy = DC_TEAM_FIXED;
    if (c->policy == DC_TEAM_ADAPTIVE && g_when >= 0.0 && now_s() - g_when > TEAM_STALE_S) {
        g_left = 0;
        g_gap = TEAM_GAP_MIN;
    }
}

void team_open(team_choice *c)
{
    open_as(c, dc_get_num_threads());
}

void team_begin(team_choice *c)
{
    c->single = 0;
    if (c->policy == DC_TEAM_ALTERNATE)
        c->single = (int)(c->batch & 1);
    else if (c->policy == DC_TEAM_ADAPTIVE)
        c->single = g_single ^ c->probing;
#ifdef _OPENMP
    if (c->single) {
        c->icv = omp_get_max_threads();
        omp_set_num_threads(1); /* this OS thread's setting only */
    }
#endif
    c->t0 = c->policy == DC_TEAM_ADAPTIVE ? now_s() : 0.0;
}

/* Seconds per row of the way in use during the probe (before its first window of the way
 * in use: the last window before the probe). */
static double probe_cur_rate(const team_choice *c)
{
    return c->cur_rows > 0 ? c->cur_secs / (double)c->cur_rows : c->ref;
}

/* The probe ended: switch, or keep the way in use and wait longer for the next one. */
static void probe_done(team_choice *c, int to_other)
{
    c->in_probe = c->probing = 0;
    c->slow = 0;
    g_count[2] += 1;
    if (to_other) {
        g_single = !g_single;
        g_gap = TEAM_GAP_MIN;
        c->base = c->oth_secs / (double)c->oth_rows;
    } else {
        const int max = g_single ? TEAM_GAP_MAX_SINGLE : TEAM_GAP_MAX_FULL;
        const int grown = g_gap * (g_single ? 2 : 4);
        g_gap = grown < max ? grown : max;
        c->base = probe_cur_rate(c);
    }
    g_left = g_gap;
}

/* A window of `rows` rows took `secs`: decide what the next one runs. */
static void window_done(team_choice *c, double secs, int64_t rows)
{
    const double rate = secs / (double)rows;
    if (c->in_probe && c->probing) {
        c->oth_secs += secs;
        c->oth_rows += rows;
        c->pairs += 1;
        if (rate > TEAM_REJECT * probe_cur_rate(c))
            probe_done(c, 0); /* clearly slower (a quiet machine's one thread): stop here */
        else if (c->cur_rows > 0 && rate < TEAM_DECISIVE * probe_cur_rate(c))
            probe_done(c, 1); /* far faster (a thread spinning beside the team): switch */
        else
            c->probing = 0;
        return;
    }
    if (c->in_probe) { /* the way in use, right after a window of the other */
        c->cur_secs += secs;
        c->cur_rows += rows;
        if (c->pairs >= TEAM_PROBE_PAIRS)
            probe_done(c, c->oth_secs / (double)c->oth_rows <
                              TEAM_SWITCH * (c->cur_secs / (double)c->cur_rows));
        else
            c->probing = 1;
        return;
    }
    c->ref = rate;
    if (c->base <= 0.0)
        c->base = rate;
    c->slow = rate > TEAM_TRIGGER * c->base ? c->slow + 1 : 0;
    if (c->slow >= 2)
        g_left = 0;
    if (g_left > 0) {
        g_left -= 1;
        return;
    }
    /* a probe: the other way and this way in turn, from the next window on (this one is
     * not part of it: a window that called a probe by being slow would weigh it) */
    c->in_probe = c->probing = 1;
    c->pairs = 0;
    c->cur_secs = c->oth_secs = 0.0;
    c->cur_rows = c->oth_rows = 0;
}

void team_end(team_choice *c, int64_t rows)
{
#ifdef _OPENMP
    if (c->single)
        omp_set_num_threads(c->icv);
#endif
    g_count[c->single ? 0 : 1] += 1;
    c->batch += 1;
    if (c->policy != DC_TEAM_ADAPTIVE || c->batch == 1)
        return; /* a call's first batch is cold (its scratch, its rows): not timed */
    const double t = now_s();
    g_when = t;
    c->secs += t - c->t0;
    c->rows += rows;
    c->n += 1;
    /* a window of the other way ends as soon as it is clearly slower (window_done then
     * stops the probe): what a quiet machine pays for a probe is a couple of batches */
    const int reject = c->in_probe && c->probing && c->n >= TEAM_WINDOW_MIN &&
                       c->secs > TEAM_REJECT * probe_cur_rate(c) * (double)c->rows;
    if (c->n >= TEAM_WINDOW_MAX || reject ||
        (c->n >= TEAM_WINDOW_MIN && c->secs >= TEAM_WINDOW_S)) {
        window_done(c, c->secs, c->rows);
        c->secs = 0.0;
        c->rows = 0;
        c->n = 0;
    }
}

void team_close(team_choice *c)
{
    /* a probe with at least one pair (a window of the other way, then one of the way in
     * use) is decided on them; without, it starts again in the next call */
    if (c->policy == DC_TEAM_ADAPTIVE && c->in_probe && c->oth_rows > 0 && c->cur_rows > 0)
        probe_done(c, c->oth_secs / (double)c->oth_rows <
                          TEAM_SWITCH * (c->cur_secs / (double)c->cur_rows));
}

int dc_team_simulate(uint8_t *single, const double *secs_per_row, int64_t calls,
                     int64_t batches, int64_t rows, double pause)
{
    if (calls < 0 || batches < 0 || rows <= 0 || !(pause >= 0.0))
        return DC_ERR_ARG;
    const int policy = g_policy;
    int64_t counts[3];
    dc_team_counts(counts);
    dc_set_team_policy(DC_TEAM_ADAPTIVE);
    g_fake_now = 1.0;
    for (int64_t k = 0; k < calls; ++k) {
        team_choice c;
        open_as(&c, 2);
        for (int64_t j = 0; j < batches; ++j) {
            const int64_t b = k * batches + j;
            team_begin(&c);
            single[b] = (uint8_t)c.single;
            const double s = secs_per_row[2 * b + (c.single ? 0 : 1)];
            g_fake_now += s > 0.0 ? s * (double)rows : 0.0;
            team_end(&c, rows);
        }
        team_close(&c);
        g_fake_now += pause;
    }
    g_fake_now = -1.0;
    dc_set_team_policy(policy);
    for (int i = 0; i < 3; ++i)
        g_count[i] = counts[i];
    return DC_OK;
}

/* Inference is too short to time (2,000 images take ~2 ms), so it follows training's
 * finding while it is fresh: one thread if training, within the last TEAM_FRESH_S, found
 * one thread faster (a loop alternating training, prediction and other work in one
 * process); else the team, unchanged. */
#define TEAM_FRESH_S        0.1
/* A call of fewer multiply-adds than this runs on one thread (~0.1-0.3 ms of work): the
 * team's threads have often gone to sleep since their last work (a training loop on small
 * data runs its kernels on one thread), and waking them took ~0.1 ms on the 2-core dev
 * VM. Trainer's check after each chunk of the 8x8 digits' 64-128-64-10 (256 rows, 4.4M)
 * took 190 us on two threads after 10 ms idle, 137 us on one, and made a 2-thread epoch
 * ~8% slower than a 1-thread one. */
#define TEAM_INFER_MIN_WORK 8e6

int team_infer_begin(double work)
{
    int single = 0;
    const int policy = g_policy;
    if (policy == DC_TEAM_ALTERNATE)
        single = (g_flip ^= 1);
    else if (policy == DC_TEAM_ADAPTIVE)
        single = work < TEAM_INFER_MIN_WORK || (g_single && now_s() - g_when < TEAM_FRESH_S);
    if (!single || dc_get_num_threads() <= 1)
        return 0;
    g_count[0] += 1;
#ifdef _OPENMP
    const int icv = omp_get_max_threads();
    omp_set_num_threads(1);
    return icv;
#else
    return 0;
#endif
}

void team_infer_end(int icv)
{
#ifdef _OPENMP
    if (icv > 0)
        omp_set_num_threads(icv);
#else
    (void)icv;
#endif
}

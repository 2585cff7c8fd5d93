/*
 * mlp_keep.c -- the data set's sparse form kept between dc_mlp_train calls, for batches
 * that hold every row of x (full-batch descent; see mlp_internal.h).
 *
 * A full batch of MNIST gathered anew each step read 47 MB of pixels, wrote its CSR and
 * its transpose (2 x 71 MB) into freshly allocated buffers (page faults on every call),
 * and took most of the step; the products themselves are ~9M multiply-adds per output
 * column each way. The kept form is built once, by the same gather (so the entries and
 * their values are the gathered batch's), in x's row order; the batch's order only
 * decides which kept row each batch row reads and the order of the gradient's sums.
 */
#include "mlp_internal.h"

#include <stdlib.h>
#include <string.h>

dc_mlp_keep *dc_mlp_keep_new(void)
{
    return calloc(1, sizeof(dc_mlp_keep));
}

/* The kept form and its buffers go; a training call's state buffers (MLP_KEEP_STATE,
 * MLP_KEEP_MASKS, MLP_KEEP_ROWS) stay until dc_mlp_keep_free: the call that took them may
 * be the one that clears the kept form (mlp_keep_lookup, when x changed). */
static int call_slot(int i)
{
    return i == MLP_KEEP_STATE || i == MLP_KEEP_MASKS || i == MLP_KEEP_ROWS;
}

static void keep_clear(dc_mlp_keep *k, int all)
{
    csr_free(&k->csr);
    free(k->count);
    free(k->seen);
    dc_mlp_keep left = {0};
    for (int i = 0; i < MLP_KEEP_SLOTS; ++i) {
        if (all || !call_slot(i)) {
            dc_free_aligned(k->scratch[i]);
        } else {
            left.scratch[i] = k->scratch[i];
            left.scratch_floats[i] = k->scratch_floats[i];
        }
    }
    *k = left;
}

void dc_mlp_keep_clear(dc_mlp_keep *k)
{
    if (k != NULL)
        keep_clear(k, 0);
}

void dc_mlp_keep_free(dc_mlp_keep *k)
{
    if (k == NULL)
        return;
    keep_clear(k, 1);
    free(k);
}

int64_t dc_mlp_keep_nnz(const dc_mlp_keep *k)
{
    return k != NULL && k->state == MLP_KEEP_SPARSE ? k->csr.nnz : -1;
}

float *mlp_keep_scratch(dc_mlp_keep *k, int slot, int64_t floats)
{
    if (k->scratch_floats[slot] < floats) {
        dc_free_aligned(k->scratch[slot]);
        k->scratch[slot] = dc_alloc_aligned((size_t)floats * sizeof(float));
        k->scratch_floats[slot] = k->scratch[slot] != NULL ? floats : 0;
    }
    return k->scratch[slot];
}

/* Whether idx[0..n) holds every row of x (n rows) once. */
static int is_permutation(uint8_t *seen, const int64_t *idx, int64_t n)
{
    memset(seen, 0, (size_t)n);
    for (int64_t r = 0; r < n; ++r) {
        const int64_t i = idx[r];
        if (i < 0 || i >= n || seen[i])
            return 0;
        seen[i] = 1;
    }
    return 1;
}

/* Room for n entries in s's idx and val (at least one, so no pointer is NULL). */
static int entries_alloc(dc_csr *s, int64_t n)
{
    const size_t room = (size_t)(n > 0 ? n : 1);
    free(s->idx);
    free(s->val);
    s->idx = malloc(room * sizeof(int32_t));
    s->val = malloc(room * sizeof(float));
    return s->idx && s->val ? DC_OK : DC_ERR_NOMEM;
}

/* dc_csr_gather_room's room for the kept entries: none past limit (*ctx) */
static int keep_room(void *ctx, dc_csr *s, int64_t nnz)
{
    return nnz > *(const int64_t *)ctx ? DC_ERR_CAPACITY : entries_alloc(s, nnz);
}

/* x's rows in sparse form (x * scale, groups at edges), or MLP_KEEP_DENSE when they hold
 * more entries than a batch of n rows may (mlp_sparse_capacity). One gather counts the
 * entries, sizes the buffers exactly and fills them; of the transpose it can build
 * alongside, only the column starts are made (for the column counts): its entries would
 * be as large as the kept form and are never read. */
static int build(dc_mlp_keep *k, const dc_mlp *net, const uint8_t *x_u8, const float *x_f32,
                 int64_t n, float scale)
{
    const int64_t f = net->sizes[0];
    int64_t limit = mlp_sparse_capacity(net, n);
    dc_csr xt = {0};
    k->csr.parts = DC_SPARSE_GROUPS;
    k->csr.col_edges = k->edges;
    k->count = malloc((size_t)f * sizeof(int32_t));
    k->seen = malloc((size_t)n);
    xt.ptr = malloc((size_t)(f + 1) * sizeof(int64_t));
    k->csr.ptr = malloc((size_t)(DC_SPARSE_GROUPS * (n + 1)) * sizeof(int64_t));
    int st = k->count && k->seen && xt.ptr && k->csr.ptr ? DC_OK : DC_ERR_NOMEM;
    if (st == DC_OK)
        st = entries_alloc(&k->csr, 0);
    if (st == DC_OK)
        st = dc_csr_gather_room(&k->csr, &xt, keep_room, &limit, x_u8, x_f32, n, f, scale);
    if (st == DC_ERR_CAPACITY) {
        k->state = MLP_KEEP_DENSE;
        st = DC_OK;
    } else if (st == DC_OK) {
        for (int64_t c = 0; c < f; ++c)
            k->count[c] = (int32_t)(xt.ptr[c + 1] - xt.ptr[c]);
        k->state = MLP_KEEP_SPARSE;
    }
    csr_free(&xt);
    return st;
}

int mlp_keep_lookup(dc_mlp_keep *k, int *use, const dc_mlp *net, const int64_t *edges,
                    const uint8_t *x_u8, const float *x_f32, const int64_t *idx, int64_t n,
                    float scale)
{
    const void *x = x_u8 != NULL ? (const void *)x_u8 : (const void *)x_f32;
    *use = MLP_KEEP_EMPTY;
    if (k->state == MLP_KEEP_EMPTY || k->x != x || k->n != n || k->f != net->sizes[0] ||
        k->scale != scale || k->split != edges[1] || k->mode != net->sparse_input) {
        dc_mlp_keep_clear(k);
        k->x = x;
        k->n = n;
        k->f = net->sizes[0];
        k->scale = scale;
        k->split = edges[1];
        k->mode = net->sparse_input;
        memcpy(k->edges, edges, sizeof k->edges);
        const int st = build(k, net, x_u8, x_f32, n, scale);
        if (st != DC_OK) {
            dc_mlp_keep_clear(k);
            return st;
        }
    }
    if (!is_permutation(k->seen, idx, n))
        return DC_OK;
    *use = k->state;
    return DC_OK;
}

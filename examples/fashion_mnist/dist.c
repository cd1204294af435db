/*
 * dist.c - --dist and --dist-shards: the ranks (tapegrad_dist, <tapegrad/dist.h>), what only rank 0
 * writes, the check that every rank runs the same thing, and a step over micro-shards.
 *
 * A step with S micro-shards: the batch (--batch samples of the epoch's order, the global batch
 * whatever the number of ranks) is cut into S shards by ag_dist_shard_rows; rank r computes shards
 * ag_dist_rank_shards(S, P, r), each alone (forward, mean loss over its rows, ag_dist_backward, which
 * rounds its gradient weighted by rows / batch into the fixed-point accumulator as backward makes it); the reduction sums every
 * rank's exactly, and every rank takes the same optimizer step. Without --dist (one process) the
 * same code is the reference that mpirun -np P reproduces bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fm.h"

/* Before anything else is read: MPI_Init with --dist; rank > 0 prints nothing on stdout. */
void dist_start(run *r, int *argc, char ***argv) {
    cfg *c = &r->c;
    r->rank = 0, r->nranks = 1;
    if (!c->dist && c->dist_shards == 0) return; /* a resumed checkpoint's may start it later (dist_agree) */
    char err[256];
    ag_dist_config dc = {.use_mpi = c->dist, .timeout_s = c->dist_timeout};
    if (ag_dist_init(&r->dist, argc, argv, &dc, err, sizeof err) != AG_OK) fail(EXIT_USAGE, "%s", err);
    fm_dist = r->dist;
    r->rank = ag_dist_rank(r->dist);
    r->nranks = ag_dist_size(r->dist);
    if (r->rank > 0 && !freopen("/dev/null", "w", stdout)) fail(EXIT_RUN, "rank %d: cannot silence stdout", r->rank);
}

/* Rank 0 alone writes the model, checkpoint, metrics and plot (before check_outputs: the other
 * ranks then check and write nothing). */
void dist_outputs(run *r) {
    if (r->rank == 0) return;
    cfg *c = &r->c;
    c->model[0] = c->checkpoint[0] = c->metrics[0] = c->plot[0] = '\0';
}

/* FNV-1a, 64 bits */
static void fnv(uint64_t *h, const char *s) {
    for (; *s; s++) *h = (*h ^ (unsigned char)*s) * 0x100000001b3ULL;
    *h = (*h ^ 0xff) * 0x100000001b3ULL; /* separator: "ab","c" differs from "a","bc" */
}

/* After the network is built (and resumed): every rank must run the same network, recipe and data
 * sizes, or the sums would mix different models; then rank 0's weights and optimizer state go to
 * every rank (the same start by construction, made certain). */
void dist_agree(run *r) {
    const cfg *c = &r->c;
    if (!r->dist && c->dist_shards > 0) dist_start(r, NULL, NULL); /* cfg.dist-shards of a --resume */
    if (!r->dist) return;
    if (c->dist && c->dist_shards == 0) r->c.dist_shards = 12; /* divisible by 1, 2, 3, 4 and 6 ranks */
    ag_dist_rank_shards((size_t)r->c.dist_shards, r->nranks, r->rank, &r->shard_first, &r->shard_count);
    uint64_t h = 0xcbf29ce484222325ULL;
    char v[1100];
    for (size_t i = 0; i < N_OPTS; i++) {
        if (!OPTS[i].saved) continue;
        opt_str(&r->c, &OPTS[i], v, sizeof v);
        fnv(&h, OPTS[i].name);
        fnv(&h, v);
    }
    snprintf(v, sizeof v, "%s %zu %zu %zu %s %s %zu %llu %d", AG_REAL_NAME, ag_params_numel(r->n.ps), r->train.n,
             r->test.n, r->in_mean_s, r->in_std_s, r->start_epoch, r->ck_steps, r->c.no_flush_denormal);
    fnv(&h, v);
    if (ag_dist_check_same(r->dist, h, "network, settings or data sizes") != AG_OK ||
        ag_dist_broadcast_params(r->dist, r->n.ps, r->opt) != AG_OK)
        fail(EXIT_USAGE, "--dist: %s", ag_dist_errmsg(r->dist));
    if (c->dist)
        printf("distributed: %d rank%s, %ld micro-shards per batch of %ld (ranks hold %zu to %zu of them)\n",
               r->nranks, r->nranks > 1 ? "s" : "", r->c.dist_shards, r->c.batch,
               (size_t)r->c.dist_shards / (size_t)r->nranks,
               ((size_t)r->c.dist_shards + (size_t)r->nranks - 1) / (size_t)r->nranks);
    else
        printf("micro-shards: %ld per batch of %ld, summed in fixed point (the reference of a --dist run)\n",
               r->c.dist_shards, r->c.batch);
}

/* One step on the batch order[s * bs ...] of k samples over this rank's shards. *loss gets the
 * batch's mean loss (the same on every rank); AG_ERR_NUMERIC, on every rank alike, when a loss or
 * gradient is not finite (no update). A failed reduction (a rank died) ends the run. */
ag_status dist_step(run *r, size_t s, size_t k, double *loss) {
    net *n = &r->n;
    ag_dist *d = r->dist;
    size_t S = (size_t)r->c.dist_shards;
    if (ag_dist_grad_begin(d, n->ps) != AG_OK) fail(EXIT_RUN, "%s", ag_dist_errmsg(d));
    for (size_t i = r->shard_first; i < r->shard_first + r->shard_count; i++) {
        size_t off, m;
        ag_dist_shard_rows(k, S, i, &off, &m);
        if (!m) continue;
        ag_tape_reset(n->t);
        ag_dataset_batch(&r->train, r->order + s * r->bs + off, m, r->x, r->y, n->mse ? r->oh : NULL);
        ag_tensor *X = ag_tensor_wrap(n->t, 2, (size_t[]){m, 784}, r->x);
        ag_tensor *hh = ag_mlp_forward(n->t, n->mlp, X, NULL, NULL);
        ag_tensor *J;
        if (n->mse)
            J = ag_cost_squared_error_l2(n->t, hh, ag_tensor_wrap(n->t, 2, (size_t[]){m, 10}, r->oh), r->lambda_cost,
                                         r->weights, n->mlp->n_layers);
        else
            J = ag_cost_cross_entropy_l2(n->t, hh, r->y, r->lambda_cost, r->weights, n->mlp->n_layers);
        if (!J) fail(EXIT_RUN, "step %zu: %s", s, ag_tape_errmsg(n->t));
        /* backward rounds each gradient piece into the fixed-point sum as it comes; on the last shard
         * the buckets' all-reduces start while backward goes on. A non-finite loss is counted, and
         * the reduction then fails on every rank. */
        int last = i + 1 == r->shard_first + r->shard_count;
        if (ag_dist_backward(d, n->ps, n->t, J, (double)m / (double)k, last) != AG_OK)
            fail(EXIT_RUN, "step %zu: %s", s, ag_dist_errmsg(d));
    }
    int64_t flags = stop_signal ? 1 : 0;
    ag_status st = ag_dist_grad_reduce(d, n->ps, loss, &flags);
    if (st == AG_ERR_NUMERIC) {
        *loss = NAN;
        return st;
    }
    if (st != AG_OK) fail(EXIT_RUN, "%s", ag_dist_errmsg(d));
    r->dist_stop = flags > 0;
    st = ag_optim_step(r->opt);
    if (st != AG_OK && st != AG_ERR_NUMERIC) fail(EXIT_RUN, "training step: %s", ag_optim_errmsg(r->opt));
    return st;
}

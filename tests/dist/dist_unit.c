/*
 * dist_unit.c - tapegrad_dist's calls on any number of ranks (tests/dist/dist_unit.sh runs it alone
 * and under mpirun -np 1..4):
 *   shard cuts and rank assignments partition the batch; a step's gradient summed over 12 shards is
 *   bit for bit what one process summing every shard gets, for wide-ranging values; out-of-range
 *   and NaN values fail the reduction on every rank; the flags slot sums; a rank with another hash
 *   is refused by name; rank 0's parameters and optimizer state reach every rank; bad configs refused;
 *   ag_dist_backward (the sink, buckets reduced while backward goes on, 2 threads) gives the integers
 *   of ag_backward + ag_dist_grad_add, on every rank count, for a net of two buckets with an L2 term.
 *     dist_unit [--solo]     (--solo: without MPI_Init)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/dist.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

static int failures, rank;
#define CHECK(c, ...)                                                                                                \
    do {                                                                                                             \
        if (!(c)) {                                                                                                  \
            fprintf(stderr, "dist_unit rank %d line %d: ", rank, __LINE__);                                        \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
            failures++;                                                                                              \
        }                                                                                                            \
    } while (0)

/* shard i's "gradient" element j: magnitudes from 1e-9 to 1e2, both signs, exact in float */
static ag_real value(size_t i, size_t j) {
    unsigned long long h = (i * 1000003ULL + j) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    double m = (double)(h % 1000003) / 1000003.0, e = (double)((h >> 20) % 12) - 9;
    return (ag_real)((h >> 40) & 1 ? -m : m) * (ag_real)pow(10, e);
}

static void fill(ag_params *ps, size_t shard) {
    ag_real *g = ag_params_grads(ps);
    for (size_t j = 0; j < ag_params_numel(ps); j++) g[j] = value(shard, j);
}

static ag_params *store(void) {
    ag_params *ps;
    ag_tensor *t;
    if (ag_params_new(&ps) != AG_OK || ag_params_add(ps, "W", 2, (size_t[]){7, 9}, AG_DECAY, &t) != AG_OK ||
        ag_params_add(ps, "b", 1, (size_t[]){33}, 0, &t) != AG_OK)
        exit(2);
    return ps;
}

int main(int argc, char **argv) {
    int solo = argc > 1 && !strcmp(argv[1], "--solo");
    char err[256];
    ag_dist *d, *one;
    if (ag_dist_init(&d, &argc, &argv, &(ag_dist_config){.use_mpi = !solo, .timeout_s = 30}, err, sizeof err) != AG_OK) {
        fprintf(stderr, "dist_unit: %s\n", err);
        return 2;
    }
    rank = ag_dist_rank(d);
    int P = ag_dist_size(d);
    CHECK(ag_dist_init(&one, NULL, NULL, &(ag_dist_config){.frac_bits = 99}, err, sizeof err) == AG_ERR_ARG &&
              strstr(err, "frac_bits"),
          "frac_bits 99 accepted (%s)", err);
    CHECK(ag_dist_init(&one, NULL, NULL, NULL, err, sizeof err) == AG_OK, "one-process dist: %s", err);

    /* shard cuts: contiguous, covering; the ranks' shards partition 0..S-1 */
    for (size_t k = 1; k < 70; k += 7)
        for (size_t S = 1; S < 30; S += 4) {
            size_t next = 0;
            for (size_t i = 0; i < S; i++) {
                size_t off, n;
                ag_dist_shard_rows(k, S, i, &off, &n);
                CHECK(off == next, "k %zu S %zu shard %zu starts at %zu, not %zu", k, S, i, off, next);
                next = off + n;
            }
            CHECK(next == k, "k %zu S %zu: shards cover %zu rows", k, S, next);
            for (int p = 1; p <= 5; p++) {
                size_t at = 0;
                for (int r = 0; r < p; r++) {
                    size_t f, c;
                    ag_dist_rank_shards(S, p, r, &f, &c);
                    CHECK(f == at, "S %zu P %d rank %d starts at %zu", S, p, r, f);
                    at = f + c;
                }
                CHECK(at == S, "S %zu P %d: ranks hold %zu shards", S, p, at);
            }
        }

    /* the sum over 12 shards (weights 1/12, the loss too) against one process doing them all */
    const size_t S = 12;
    ag_params *ps = store(), *ref = store();
    size_t first, count, n = ag_params_numel(ps);
    ag_dist_rank_shards(S, P, rank, &first, &count);
    CHECK(ag_dist_grad_begin(d, ps) == AG_OK, "begin");
    for (size_t i = first; i < first + count; i++) {
        fill(ps, i);
        CHECK(ag_dist_grad_add(d, ps, 1.0 / 12, 0.25 * (double)i) == AG_OK, "add");
    }
    for (size_t j = 0; j < n; j++) CHECK(ag_params_grads(ps)[j] == 0, "add left grads[%zu] non-zero", j);
    int64_t flags = rank + 1;
    double loss = 0, loss_ref = 0;
    CHECK(ag_dist_grad_reduce(d, ps, &loss, &flags) == AG_OK, "reduce: %s", ag_dist_errmsg(d));
    CHECK(flags == (int64_t)P * (P + 1) / 2, "flags summed to %lld", (long long)flags);
    ag_dist_grad_begin(one, ref);
    for (size_t i = 0; i < S; i++) {
        fill(ref, i);
        ag_dist_grad_add(one, ref, 1.0 / 12, 0.25 * (double)i);
    }
    CHECK(ag_dist_grad_reduce(one, ref, &loss_ref, NULL) == AG_OK, "one-process reduce");
    CHECK(memcmp(ag_params_grads(ps), ag_params_grads(ref), n * sizeof(ag_real)) == 0,
          "np %d: the gradient differs from one process's", P);
    CHECK(loss == loss_ref && fabs(loss - 0.25 * 5.5) < 1e-9, "loss %.17g, one process %.17g", loss, loss_ref);
    /* and close to the plain sum (fixed point keeps 2^-40 per shard) */
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double s = 0;
        for (size_t i = 0; i < S; i++) s += (double)value(i, j) / 12;
        double e = fabs((double)ag_params_grads(ps)[j] - s) / (fabs(s) + 1e-30);
        if (fabs(s) > 1e-6 && e > worst) worst = e;
    }
    CHECK(worst < 1e-6, "relative error %g against the double sum", worst);

    /* one rank's value out of range (or NaN): AG_ERR_NUMERIC everywhere, grads zeroed */
    for (int bad = 0; bad < 2; bad++) {
        ag_dist_grad_begin(d, ps);
        fill(ps, 0);
        if (rank == P - 1) ag_params_grads(ps)[3] = bad ? (ag_real)NAN : (ag_real)5000;
        ag_dist_grad_add(d, ps, 1, 0);
        ag_status st = ag_dist_grad_reduce(d, ps, NULL, NULL);
        CHECK(st == AG_ERR_NUMERIC && strstr(ag_dist_errmsg(d), "fixed-point range"), "bad value %d: %d %s", bad,
              (int)st, ag_dist_errmsg(d));
        CHECK(ag_params_grads(ps)[0] == 0, "grads not zeroed after a failed reduction");
    }
    CHECK(ag_dist_grad_add(d, ps, 2, 0) == AG_ERR_ARG, "weight 2 accepted");

    /* the hashes: equal passes; another on the last rank is refused on every rank, naming it */
    CHECK(ag_dist_check_same(d, 42, "settings") == AG_OK, "equal hashes refused: %s", ag_dist_errmsg(d));
    if (P > 1) {
        ag_status st = ag_dist_check_same(d, rank == P - 1 ? 43 : 42, "settings");
        char want[64];
        snprintf(want, sizeof want, "settings of rank %d differ from rank 0's", P - 1);
        CHECK(st == AG_ERR_STATE && strstr(ag_dist_errmsg(d), want), "mismatch: %d %s", (int)st, ag_dist_errmsg(d));
    }

    /* rank 0's values, momentum and step count everywhere */
    ag_optim *opt;
    CHECK(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.1}, err, sizeof err) == AG_OK,
          "optim: %s", err);
    ag_real *v, *w = ag_params_values(ps);
    const char *name;
    size_t m;
    ag_optim_state(opt, 0, &name, &v, &m);
    for (size_t j = 0; j < n; j++) w[j] = rank == 0 ? (ag_real)j : -1, v[j] = rank == 0 ? (ag_real)(2 * j) : -1;
    ag_optim_set_steps(opt, rank == 0 ? 77 : 1);
    CHECK(ag_dist_broadcast_params(d, ps, opt) == AG_OK, "broadcast: %s", ag_dist_errmsg(d));
    int same = 1;
    for (size_t j = 0; j < n; j++) same &= w[j] == (ag_real)j && v[j] == (ag_real)(2 * j);
    CHECK(same && ag_optim_steps(opt) == 77, "rank 0's parameters and state did not arrive");

    /* a real backward: 784-512-256-10 (two 1 MiB buckets), L2 in the cost, 48 rows in 4 shards, 2 threads:
     * ag_dist_backward over MPI (overlap) == ag_backward + ag_dist_grad_add in one process */
    ag_set_threads(2);
    ag_params *q = NULL;
    ag_mlp *mlp;
    ag_tape *t;
    ag_params_new(&q);
    ag_tape_new(&t, NULL);
    CHECK(ag_mlp_new(&mlp, q, &(ag_mlp_config){.spec = "784-512-256-10", .hidden = AG_ACT_RELU, .init = AG_INIT_HE_NORMAL, .seed = 4},
                     err, sizeof err) == AG_OK, "mlp: %s", err);
    size_t k = 48, nq = ag_params_numel(q);
    ag_real *x = malloc(k * 784 * sizeof *x), *g_mpi = malloc(2 * nq * sizeof *g_mpi), *g_one = g_mpi + nq;
    int32_t y[48];
    for (size_t i = 0; i < k * 784; i++) x[i] = (ag_real)((double)((i * 2654435761u) % 1000) / 500 - 1);
    for (size_t i = 0; i < k; i++) y[i] = (int32_t)(i % 10);
    double l_mpi = 0, l_one = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: the sink over MPI, 1: ag_backward + grad_add alone */
        ag_dist *dd = pass ? one : d;
        size_t f, c;
        ag_dist_rank_shards(4, pass ? 1 : P, pass ? 0 : rank, &f, &c);
        ag_dist_grad_begin(dd, q);
        for (size_t i = f; i < f + c; i++) {
            size_t off, rows;
            ag_dist_shard_rows(k, 4, i, &off, &rows);
            ag_tape_reset(t);
            ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){rows, 784}, x + off * 784);
            ag_tensor *J = ag_cost_cross_entropy_l2(t, ag_mlp_forward(t, mlp, X, NULL, NULL), y + off, (ag_real)1e-3,
                                                    mlp->weights, mlp->n_layers);
            if (pass) {
                CHECK(ag_backward(t, J) == AG_OK, "backward");
                CHECK(ag_dist_grad_add(dd, q, (double)rows / (double)k, (double)J->value[0]) == AG_OK, "grad_add");
            } else
                CHECK(ag_dist_backward(dd, q, t, J, (double)rows / (double)k, i + 1 == f + c) == AG_OK,
                      "ag_dist_backward: %s", ag_dist_errmsg(dd));
        }
        CHECK(ag_dist_grad_reduce(dd, q, pass ? &l_one : &l_mpi, NULL) == AG_OK, "reduce: %s", ag_dist_errmsg(dd));
        memcpy(pass ? g_one : g_mpi, ag_params_grads(q), nq * sizeof *g_mpi);
        ag_params_zero_grad(q); /* the reduction left the sum there */
    }
    CHECK(memcmp(g_mpi, g_one, nq * sizeof *g_mpi) == 0 && l_mpi == l_one,
          "np %d: ag_dist_backward's gradient differs from ag_backward + ag_dist_grad_add's", P);
    double norm = 0;
    for (size_t i = 0; i < nq; i++) norm += (double)g_one[i] * g_one[i];
    CHECK(norm > 1e-6 && l_one > 0.1, "the gradient (norm^2 %g) or loss (%g) is empty", norm, l_one);
    free(x), free(g_mpi);
    ag_mlp_free(mlp);
    ag_tape_free(t);
    ag_params_free(q);

    ag_optim_free(opt);
    ag_params_free(ps);
    ag_params_free(ref);
    ag_dist_finalize(one);
    ag_dist_finalize(d);
    if (!failures && rank == 0) printf("dist_unit np=%d%s: ok\n", P, solo ? " (no MPI)" : "");
    return failures ? 1 : 0;
}

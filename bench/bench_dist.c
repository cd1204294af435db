/*
 * bench_dist - a data-parallel step over tapegrad_dist (-DAG_MPI=ON): where the time goes, per rank.
 *
 *     mpirun -np 2 build/bench/bench_dist [--batch 128] [--shards S] [--steps 60] [--threads 1]
 *                                         [--no-overlap 0|1] [--bucket-kb 1024]
 *
 * The bench `modern` net (784-512-256-10 ReLU, cross-entropy, momentum 0.9, lr 0.05), random
 * standardised inputs (the time does not depend on the values), --batch samples per rank (the
 * global batch is P times that), S micro-shards per global batch (default P: one per rank). Per
 * step it times the shards' forward + backward with the fixed-point accumulation (ag_dist_backward:
 * with overlap the buckets' all-reduces start during the last shard's backward), the wait for the
 * slowest rank (--no-overlap 1 only: a barrier, so that the next figure is communication only), the
 * all-reduce's remaining wait ("allreduce"), turning the sum back into gradients, and the optimizer step.
 * Medians and ranges over --steps steps after 5 warm-up steps, rank 0's clock (the reduction
 * synchronises the ranks). Then rank 0 alone times the ordinary one-process step at the same
 * per-rank batch (ag_optim_backward_step: no shards, no fixed point), and the method's step with
 * nothing to send (one shard through a one-process tapegrad_dist): the np run's step minus the
 * latter is the communication added.
 * Last line: dist_bench np=P batch=B shards=S step_ms=... allreduce_ms=... comm_fraction=...
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/dist.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median, then min, 10th percentile and max of n values, in ms; *low gets the 10th percentile (a busy
 * shared host stretches the median; the low percentiles are what the steps cost undisturbed) */
static void stat(const char *name, double *v, int n, double *median, double *low) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    *median = v[n / 2] * 1e3;
    *low = v[n / 10] * 1e3;
    printf("  %-22s median %8.3f ms  [min %.3f, p10 %.3f, max %.3f]\n", name, *median, v[0] * 1e3, *low,
           v[n - 1] * 1e3);
}

static void build(ag_params **ps, ag_mlp **m, ag_tape **t, ag_optim **opt) {
    char err[256];
    if (ag_params_new(ps) != AG_OK || ag_tape_new(t, NULL) != AG_OK ||
        ag_mlp_new(m, *ps,
                   &(ag_mlp_config){.spec = "784-512-256-10", .hidden = AG_ACT_RELU, .output = AG_ACT_IDENTITY,
                                    .init = AG_INIT_HE_NORMAL, .seed = 1},
                   err, sizeof err) != AG_OK ||
        ag_optim_new(opt, *ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.05, .momentum = 0.9, .zero_grad = 1},
                     err, sizeof err) != AG_OK) {
        fprintf(stderr, "bench_dist: %s\n", err);
        exit(1);
    }
}

static ag_tensor *loss_of(ag_tape *t, ag_mlp *m, ag_real *x, int32_t *y, size_t k) {
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){k, 784}, x);
    return ag_cost_cross_entropy_l2(t, ag_mlp_forward(t, m, X, NULL, NULL), y, 0, NULL, 0);
}

int main(int argc, char **argv) {
    long batch = 128, steps = 60, threads = 1, shards = 0, no_overlap = 0, bucket_kb = 0;
    char err[256];
    ag_dist *d;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--no-overlap")) no_overlap = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--bucket-kb")) bucket_kb = atol(argv[i + 1]);
    }
    ag_dist_config dc = {.use_mpi = 1, .timeout_s = 60, .no_overlap = (int)no_overlap,
                         .bucket_bytes = (size_t)bucket_kb * 1024};
    if (ag_dist_init(&d, &argc, &argv, &dc, err, sizeof err) != AG_OK) {
        fprintf(stderr, "bench_dist: %s\n", err);
        return 1;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--steps")) steps = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--shards")) shards = v;
    }
    int rank = ag_dist_rank(d), P = ag_dist_size(d);
    if (rank) (void)!freopen("/dev/null", "w", stdout);
    if (batch < 1 || steps < 3 || shards < 0) return fprintf(stderr, "bench_dist: bad arguments\n"), 2;
    size_t S = shards ? (size_t)shards : (size_t)P, k = (size_t)batch * (size_t)P, first, count;
    ag_dist_rank_shards(S, P, rank, &first, &count);
    ag_set_threads((int)threads);

    ag_params *ps;
    ag_mlp *m;
    ag_tape *t;
    ag_optim *opt;
    build(&ps, &m, &t, &opt);
    ag_dist_broadcast_params(d, ps, opt);
    /* the global batch's inputs: N(0,1)-ish from an LCG, labels 0..9 */
    ag_real *x = malloc(k * 784 * sizeof *x);
    int32_t *y = malloc(k * sizeof *y);
    if (!x || !y) return 1;
    unsigned long long s = 12345;
    for (size_t i = 0; i < k * 784; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (ag_real)((double)(s >> 11) / 9007199254740992.0 * 3.4 - 1.7);
    }
    for (size_t i = 0; i < k; i++) y[i] = (int32_t)(i * 7 % 10);

    int warm = 5, n = (int)steps;
    double *v_step = malloc((size_t)n * sizeof(double) * 6), *v_comp = v_step + n, *v_red = v_comp + n,
           *v_comm = v_red + n, *v_upd = v_comm + n, *v_bar = v_upd + n;
    for (int it = 0; it < warm + n; it++) {
        double t0 = now(), c0 = ag_dist_comm_seconds(d);
        ag_dist_grad_begin(d, ps);
        for (size_t i = first; i < first + count; i++) {
            size_t off, rows;
            ag_dist_shard_rows(k, S, i, &off, &rows);
            if (!rows) continue;
            ag_tape_reset(t);
            ag_tensor *J = loss_of(t, m, x + off * 784, y + off, rows);
            if (!J || ag_dist_backward(d, ps, t, J, (double)rows / (double)k, i + 1 == first + count) != AG_OK)
                return fprintf(stderr, "bench_dist: %s\n", ag_dist_errmsg(d)), 1;
        }
        double t1 = now();
        /* the barrier takes the ranks' compute imbalance (and a busy host's) out of the all-reduce's time;
         * not with overlap, where the reductions are already under way */
        if (no_overlap) MPI_Barrier(MPI_COMM_WORLD);
        double tb = now();
        c0 = ag_dist_comm_seconds(d);
        if (ag_dist_grad_reduce(d, ps, NULL, NULL) != AG_OK) {
            fprintf(stderr, "bench_dist: %s\n", ag_dist_errmsg(d));
            ag_dist_abort(d, 1);
        }
        double t2 = now();
        ag_optim_step(opt);
        double t3 = now();
        if (it >= warm) {
            int j = it - warm;
            v_step[j] = t3 - t0, v_comp[j] = t1 - t0, v_red[j] = t2 - tb, v_comm[j] = ag_dist_comm_seconds(d) - c0;
            v_upd[j] = t3 - t2, v_bar[j] = tb - t1;
        }
    }
    double med_step, med_comp, med_red, med_comm, med_upd, med_bar, med_one = 0, lo_step, lo_comm, lo_one = 0, lo, med_meth = 0, lo_meth = 0;
    printf("bench_dist: np %d, %ld samples per rank (global batch %zu), %zu micro-shards, %ld thread%s, %s\n", P,
           batch, k, S, threads, threads == 1 ? "" : "s", ag_kernel_name());
    printf("  parameters: %zu (%.2f MB as int64 in the all-reduce)\n", ag_params_numel(ps),
           (double)ag_params_numel(ps) * 8 / 1e6);
    stat("step", v_step, n, &med_step, &lo_step);
    stat("compute (shards)", v_comp, n, &med_comp, &lo);
    stat("wait for slowest rank", v_bar, n, &med_bar, &lo);
    stat("reduce (all)", v_red, n, &med_red, &lo);
    stat("  all-reduce wait", v_comm, n, &med_comm, &lo_comm);
    stat("optimizer step", v_upd, n, &med_upd, &lo);

    /* rank 0 alone: the ordinary fused step on the per-rank batch, for the method's own cost */
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        ag_params *ps1;
        ag_mlp *m1;
        ag_tape *t1;
        ag_optim *o1;
        build(&ps1, &m1, &t1, &o1);
        ag_optim_zero_grad(o1);
        for (int it = 0; it < warm + n; it++) {
            double t0 = now();
            ag_tape_reset(t1);
            ag_optim_backward_step(o1, t1, loss_of(t1, m1, x, y, (size_t)batch));
            if (it >= warm) v_step[it - warm] = now() - t0;
        }
        stat("one process, fused", v_step, n, &med_one, &lo_one);
        /* the same method with nothing to send: one shard of --batch rows through a one-process
         * tapegrad_dist, its (local) reduction and the step: a step of the np run minus this one is
         * what communication adds */
        ag_dist *solo;
        ag_dist_init(&solo, NULL, NULL, NULL, NULL, 0);
        for (int it = 0; it < warm + n; it++) {
            double t0 = now();
            ag_dist_grad_begin(solo, ps1);
            ag_tape_reset(t1);
            ag_dist_backward(solo, ps1, t1, loss_of(t1, m1, x, y, (size_t)batch), 1, 1);
            ag_dist_grad_reduce(solo, ps1, NULL, NULL);
            ag_optim_step(o1);
            if (it >= warm) v_step[it - warm] = now() - t0;
        }
        stat("one process, method", v_step, n, &med_meth, &lo_meth);
        ag_dist_finalize(solo);
        ag_optim_free(o1), ag_mlp_free(m1), ag_tape_free(t1), ag_params_free(ps1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    printf("communication added: median %.3f ms (%.1f%% of the step), p10 %.3f ms (%.1f%%)\n", med_step - med_meth,
           100 * (med_step - med_meth) / med_step, lo_step - lo_meth, 100 * (lo_step - lo_meth) / lo_step);
    printf("dist_bench np=%d batch=%ld shards=%zu overlap=%d step_ms=%.3f allreduce_ms=%.3f comm_fraction=%.3f "
           "one_process_step_ms=%.3f p10: step_ms=%.3f allreduce_ms=%.3f comm_fraction=%.3f one_process_step_ms=%.3f\n",
           P, batch, S, !no_overlap, med_step, med_comm, med_comm / med_step, med_one, lo_step, lo_comm, lo_comm / lo_step,
           lo_one);
    ag_optim_free(opt), ag_mlp_free(m), ag_tape_free(t), ag_params_free(ps);
    free(x), free(y), free(v_step);
    ag_dist_finalize(d);
    return 0;
}

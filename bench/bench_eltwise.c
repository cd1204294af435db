/*
 * bench_eltwise.c - element-wise and row-wise ops, forward and backward, in ns per element:
 * add with a broadcast row, mul, relu, sigmoid, tanh, softmax, cross-entropy (softmax + loss,
 * fused) on 128 x 1024 and 512 x 784 tensors. For the A/B of the AG__CLONES builds (AVX-512 /
 * AVX2 / SSE2 picked at load time) against a -DAG_NO_CLONES build (bench/README.md).
 *
 *   bench_eltwise [--repeats R] [--iters N] [--op NAME] [--flush-denormal]
 * One line per case: bench_eltwise op=<op> shape=<R>x<C> fwd=<median ns/elem> bwd=<median ns/elem>
 *   fwd_min= fwd_max= bwd_min= bwd_max=   (the median and spread of R repeats of N iterations)
 * The inputs are wrapped (no copy); backward is ag_backward_seed with a fixed seed, so it
 * includes the zeroing of the input gradient buffers, as in training. The ops are built by their
 * records (tests/ops/op_records.c); bench_ops gives every record's line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/ag.h>
#include "bench_util.h"
#include "op_records.h"

/* The ops timed here, as (record, layout) of tests/ops/op_records.c: the builders and shapes are the records'. */
static const struct {
    const char *name, *record, *layout;
} OPS[] = {{"add_bcast", "add", "RxC,C"}, {"mul", "mul", "RxC,RxC"},       {"relu", "relu", "RxC"},
           {"sigmoid", "sigmoid", "RxC"}, {"tanh", "tanh", "RxC"},         {"softmax", "softmax", "RxC"},
           {"cross_entropy", "cross_entropy", "RxC"}};
enum { N_OPS = sizeof OPS / sizeof OPS[0] };

static const op_case *layout_of(const op_record *r, const char *label) {
    for (size_t i = 0; r && i < r->n_layouts; i++)
        if (!strcmp(r->layouts[i].label, label)) return &r->layouts[i];
    return NULL;
}

typedef struct bufs {
    ag_real *in[OP_MAX_IN], *seed;
    int32_t *labels;
} bufs;

/* One forward (recording) and one backward of op; adds their times to *fwd, *bwd. */
static int run_once(ag_tape *t, int op, size_t R, size_t C, const bufs *d, double *fwd, double *bwd) {
    const op_record *r = op_record_find(OPS[op].record);
    const op_case *c = layout_of(r, OPS[op].layout);
    ag_tape_reset(t);
    ag_tensor *in[OP_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        op_shape s = op_shape_at(c->in[i], R, C, C);
        in[i] = ag_tensor_wrap(t, s.ndim, s.d, d->in[i]);
        ag_requires_grad(in[i]);
    }
    const op_call call = {c->param, r->labels ? d->labels : NULL, c->n_in};
    double t0 = now_ns();
    ag_tensor *y = r->build(t, in, &call);
    double t1 = now_ns();
    if (!y || ag_backward_seed(t, y, d->seed) != AG_OK) {
        fprintf(stderr, "bench_eltwise: %s: %s\n", OPS[op].name, ag_tape_errmsg(t));
        return -1;
    }
    double t2 = now_ns();
    *fwd += t1 - t0;
    *bwd += t2 - t1;
    return 0;
}

int main(int argc, char **argv) {
    int repeats = 15, iters = 20, flush = 0, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--flush-denormal")) flush = 1;
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int o = 0; o < N_OPS; o++)
                if (!strcmp(name, OPS[o].name)) only = o;
            if (only < 0) {
                fprintf(stderr, "bench_eltwise: unknown op %s\n", name);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_eltwise [--repeats R] [--iters N] [--op NAME] [--flush-denormal]\n");
            return 2;
        }
    }
    if (repeats < 1 || repeats > 1000 || iters < 1 || iters > 100000) {
        fprintf(stderr, "bench_eltwise: repeats must be 1..1000 and iters 1..100000\n");
        return 2;
    }
    flush_denormals(flush);
#ifdef AG_NO_CLONES
    printf("bench_eltwise: built with AG_NO_CLONES (baseline ISA only)\n");
#endif
    const size_t shapes[][2] = {{128, 1024}, {512, 784}};
    const size_t maxn = 512 * 1024;
    for (int o = 0; o < N_OPS; o++)
        if (!layout_of(op_record_find(OPS[o].record), OPS[o].layout)) {
            fprintf(stderr, "bench_eltwise: no record %s with layout %s\n", OPS[o].record, OPS[o].layout);
            return 1;
        }
    bufs d;
    int ok = 1;
    for (int i = 0; i < OP_MAX_IN; i++) ok &= (d.in[i] = malloc(maxn * sizeof(ag_real))) != NULL;
    d.seed = malloc(maxn * sizeof(ag_real));
    d.labels = malloc(512 * sizeof(int32_t));
    double *fs = malloc((size_t)repeats * sizeof *fs), *bs = malloc((size_t)repeats * sizeof *bs);
    ag_tape *t;
    if (!ok || !d.seed || !d.labels || !fs || !bs || ag_tape_new(&t, NULL) != AG_OK) {
        fprintf(stderr, "bench_eltwise: out of memory\n");
        return 1;
    }
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    for (int i = 0; i < OP_MAX_IN; i++) ag_rng_fill_normal(&rng, d.in[i], maxn, 0, 2);
    ag_rng_fill_normal(&rng, d.seed, maxn, 0, 1);
    double checksum = 0;
    for (int op = 0; op < N_OPS; op++) {
        if (only >= 0 && op != only) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const size_t R = shapes[s][0], C = shapes[s][1], n = R * C;
            for (size_t k = 0; k < R; k++) d.labels[k] = (int32_t)ag_rng_below(&rng, C);
            double f = 0, b = 0;
            for (int w = 0; w < 3; w++) /* warm-up: the arena grows to fit, caches fill */
                if (run_once(t, op, R, C, &d, &f, &b)) return 1;
            for (int r = 0; r < repeats; r++) {
                f = b = 0;
                for (int it = 0; it < iters; it++)
                    if (run_once(t, op, R, C, &d, &f, &b)) return 1;
                fs[r] = f / ((double)iters * (double)n);
                bs[r] = b / ((double)iters * (double)n);
            }
            checksum += (double)d.in[0][0];
            qsort(fs, (size_t)repeats, sizeof *fs, cmp_double);
            qsort(bs, (size_t)repeats, sizeof *bs, cmp_double);
            printf("bench_eltwise op=%s shape=%zux%zu fwd=%.3f bwd=%.3f fwd_min=%.3f fwd_max=%.3f "
                   "bwd_min=%.3f bwd_max=%.3f\n",
                   OPS[op].name, R, C, fs[repeats / 2], bs[repeats / 2], fs[0], fs[repeats - 1], bs[0],
                   bs[repeats - 1]);
            fflush(stdout);
        }
    }
    if (checksum != checksum) printf("(nan checksum)\n");
    ag_tape_free(t);
    for (int i = 0; i < OP_MAX_IN; i++) free(d.in[i]);
    free(d.seed);
    free(d.labels);
    free(fs);
    free(bs);
    return 0;
}

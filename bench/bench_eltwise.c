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
 * includes the zeroing of the input gradient buffers, as in training.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/ag.h>
#include "bench_util.h"

enum { OP_ADD_BCAST, OP_MUL, OP_RELU, OP_SIGMOID, OP_TANH, OP_SOFTMAX, OP_CE, N_OPS };
static const char *const OP_NAMES[N_OPS] = {"add_bcast", "mul", "relu", "sigmoid", "tanh", "softmax",
                                            "cross_entropy"};

typedef struct bufs {
    ag_real *a, *b, *row, *seed;
    int32_t *labels;
} bufs;

/* One forward (recording) and one backward of op; adds their times to *fwd, *bwd. */
static int run_once(ag_tape *t, int op, size_t R, size_t C, const bufs *d, double *fwd, double *bwd) {
    ag_tape_reset(t);
    const size_t shape[2] = {R, C};
    ag_tensor *a = ag_tensor_wrap(t, 2, shape, d->a), *b = NULL;
    ag_requires_grad(a);
    if (op == OP_ADD_BCAST) b = ag_tensor_wrap(t, 1, &C, d->row);
    if (op == OP_MUL) b = ag_tensor_wrap(t, 2, shape, d->b);
    if (b) ag_requires_grad(b);
    double t0 = now_ns();
    ag_tensor *y = NULL;
    switch (op) {
    case OP_ADD_BCAST: y = ag_add(t, a, b); break;
    case OP_MUL: y = ag_mul(t, a, b); break;
    case OP_RELU: y = ag_relu(t, a); break;
    case OP_SIGMOID: y = ag_sigmoid(t, a); break;
    case OP_TANH: y = ag_tanh(t, a); break;
    case OP_SOFTMAX: y = ag_softmax(t, a); break;
    default: y = ag_cross_entropy(t, a, d->labels); break;
    }
    double t1 = now_ns();
    if (!y || ag_backward_seed(t, y, d->seed) != AG_OK) {
        fprintf(stderr, "bench_eltwise: %s: %s\n", OP_NAMES[op], ag_tape_errmsg(t));
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
                if (!strcmp(name, OP_NAMES[o])) only = o;
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
    bufs d;
    d.a = malloc(maxn * sizeof(ag_real));
    d.b = malloc(maxn * sizeof(ag_real));
    d.row = malloc(1024 * sizeof(ag_real));
    d.seed = malloc(maxn * sizeof(ag_real));
    d.labels = malloc(512 * sizeof(int32_t));
    double *fs = malloc((size_t)repeats * sizeof *fs), *bs = malloc((size_t)repeats * sizeof *bs);
    ag_tape *t;
    if (!d.a || !d.b || !d.row || !d.seed || !d.labels || !fs || !bs || ag_tape_new(&t, NULL) != AG_OK) {
        fprintf(stderr, "bench_eltwise: out of memory\n");
        return 1;
    }
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    ag_rng_fill_normal(&rng, d.a, maxn, 0, 2);
    ag_rng_fill_normal(&rng, d.b, maxn, 0, 2);
    ag_rng_fill_normal(&rng, d.row, 1024, 0, 1);
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
            checksum += (double)d.a[0];
            qsort(fs, (size_t)repeats, sizeof *fs, cmp_double);
            qsort(bs, (size_t)repeats, sizeof *bs, cmp_double);
            printf("bench_eltwise op=%s shape=%zux%zu fwd=%.3f bwd=%.3f fwd_min=%.3f fwd_max=%.3f "
                   "bwd_min=%.3f bwd_max=%.3f\n",
                   OP_NAMES[op], R, C, fs[repeats / 2], bs[repeats / 2], fs[0], fs[repeats - 1], bs[0],
                   bs[repeats - 1]);
            fflush(stdout);
        }
    }
    if (checksum != checksum) printf("(nan checksum)\n");
    ag_tape_free(t);
    free(d.a);
    free(d.b);
    free(d.row);
    free(d.seed);
    free(d.labels);
    free(fs);
    free(bs);
    return 0;
}

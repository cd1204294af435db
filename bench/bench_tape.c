/*
 * bench_tape.c - autograd overhead: a chain of 100,000 links x = tanh(x * a + b) on 1-element
 * tensors, recorded and differentiated. Reports ns per recorded op (forward + backward) and the
 * tape bytes per node, with and without the data buffers. PyTorch's twin: bench/torch_tape.py.
 *
 *   bench_tape [--links N] [--repeats R] [--flush-denormal]
 * stdout, one line: bench_tape ops=<n> ns_per_op=<median> min=<x> max=<x> bytes_per_node=<x> node_bytes=<x>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/ag.h>
#include "bench_util.h"

int main(int argc, char **argv) {
    size_t links = 100000;
    int repeats = 9, flush = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--links") && i + 1 < argc) links = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--flush-denormal")) flush = 1;
        else {
            fprintf(stderr, "usage: bench_tape [--links N] [--repeats R] [--flush-denormal]\n");
            return 2;
        }
    }
    if (links == 0 || repeats < 1 || repeats > 1000) {
        fprintf(stderr, "bench_tape: links must be >= 1 and repeats 1..1000\n");
        return 2;
    }
    flush_denormals(flush);
    ag_params *ps;
    ag_tensor *a, *b;
    ag_tape *t;
    if (ag_params_new(&ps) || ag_params_add(ps, "a", 0, NULL, 0, &a) || ag_params_add(ps, "b", 0, NULL, 0, &b) ||
        ag_tape_new(&t, NULL)) {
        fprintf(stderr, "bench_tape: out of memory\n");
        return 1;
    }
    a->value[0] = (ag_real)0.9; /* the constants of bench/torch_tape.py */
    b->value[0] = (ag_real)0.05;

    double *ns = calloc((size_t)repeats, sizeof *ns);
    if (!ns) {
        fprintf(stderr, "bench_tape: out of memory\n");
        return 1;
    }
    size_t nodes = 0, used = 0;
    double checksum = 0;
    for (int r = -1; r < repeats; r++) { /* r == -1 warms up: the arena grows to fit */
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        double t0 = now_ns();
        ag_tensor *x = ag_scalar(t, (ag_real)0.3);
        ag_requires_grad(x);
        ag_tensor *x0 = x;
        for (size_t i = 0; i < links; i++) x = ag_tanh(t, ag_add(t, ag_mul(t, x, a), b));
        if (ag_backward(t, x) != AG_OK) {
            fprintf(stderr, "bench_tape: %s\n", ag_tape_errmsg(t));
            return 1;
        }
        double t1 = now_ns();
        if (r >= 0) ns[r] = t1 - t0;
        nodes = ag_tape_node_count(t);
        used = ag_tape_mem_used(t);
        checksum = (double)x0->grad[0] + (double)a->grad[0];
    }
    qsort(ns, (size_t)repeats, sizeof *ns, cmp_double);
    size_t ops = 3 * links; /* mul, add, tanh per link */
    /* every tensor here holds one element: value and grad are one element each */
    double data_bytes = 2.0 * sizeof(ag_real);
    /* diagnostics on stderr as `# ` lines, as bench_train and the torch twins: stdout holds one line */
    fprintf(stderr, "# %zu links, %zu recorded nodes, arena %zu bytes in use, checksum %.6g, %s build\n", links,
            nodes, used, checksum, AG_REAL_NAME);
    printf("bench_tape ops=%zu ns_per_op=%.1f min=%.1f max=%.1f bytes_per_node=%.0f node_bytes=%.0f\n", ops,
           ns[repeats / 2] / (double)ops, ns[0] / (double)ops, ns[repeats - 1] / (double)ops,
           (double)used / (double)nodes, (double)used / (double)nodes - data_bytes);
    free(ns);
    ag_tape_free(t);
    ag_params_free(ps);
    return 0;
}

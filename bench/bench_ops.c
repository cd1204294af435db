/*
 * bench_ops.c - one speed line per op record (tests/ops/op_records.c): the record's first layout at its
 * speed shape (256 x 1024 unless the record says otherwise; K is the inner size of the products),
 * forward (recording) plus backward (ag_backward_seed, input gradients zeroed as in training) on
 * wrapped inputs, 1 thread unless --threads says otherwise. Information, not a timed test.
 *
 *   bench_ops [--repeats R] [--iters N] [--op NAME] [--all-layouts] [--flush-denormal] [--threads N]
 * One line per op (and layout):
 *   bench_ops op=<name> layout=<label> shape=<R>x<C>[xK] total_ms=<median> min= max= fwd_ns_elem= bwd_ns_elem=
 * total_ms is the median of R repeats of the mean of N forward+backward iterations, min/max its spread;
 * the ns/element figures divide the forward and backward medians by the elements of all inputs.
 *
 *   bench_ops --list-shapes [--op NAME]
 * What a peer needs to build the same inputs (bench/torch_ops.py): one line per record, its first layout,
 *   op=<name> layout="<label>" shape=<R>x<C>[xK] in=<d0>x<d1>...,... domain=<lo>:<hi>,... labels=<rows>x<classes>|none
 * in: the inputs' shapes after the placeholders are replaced ("scalar" for a 0-D input); domain: each input
 * drawn uniform in [lo, hi]; labels: one int label per row, in [0, classes).
 *
 *   bench_ops --serve [--flush-denormal] [--threads N]
 * For bench/ops_vs_torch, which alternates repeats with the torch side: reads commands on stdin,
 *   run <name> <seconds>
 * and answers each with one line `op=<name> iters=<n> us=<mean us per forward+backward>`. The first run
 * of an op prepares it (the same inputs as above), warms up (3 runs and 50 ms) and picks the iteration
 * count that fills <seconds> from the time of further runs (2 and 20 ms); later runs of that op reuse it. An unknown op or a failure answers `error <message>`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag.h>
#include "bench_util.h"
#include "op_records.h"

typedef struct bench_case {
    const op_record *r;
    const op_case *c;
    op_shape in[OP_MAX_IN];
    ag_real *data[OP_MAX_IN], *seed;
    int32_t *labels;
    size_t elems, R, C, K;
} bench_case;

static int prepare(bench_case *b, const op_record *r, const op_case *c, ag_rng *rng) {
    memset(b, 0, sizeof *b);
    b->r = r;
    b->c = c;
    b->R = r->speed_r ? r->speed_r : 256;
    b->C = r->speed_c ? r->speed_c : 1024;
    b->K = r->speed_k ? r->speed_k : b->C;
    for (int i = 0; i < c->n_in; i++) {
        b->in[i] = op_shape_at(c->in[i], b->R, b->C, b->K);
        size_t n = 1;
        for (int d = 0; d < b->in[i].ndim; d++) n *= b->in[i].d[d];
        b->data[i] = malloc(n * sizeof(ag_real));
        if (!b->data[i]) return -1;
        op_domain dom = op_domain_of(r, c, i);
        ag_rng_fill_uniform(rng, b->data[i], n, dom.lo, dom.hi);
        b->elems += n;
    }
    if (r->labels) {
        size_t rows, classes;
        op_label_dims(&b->in[0], &rows, &classes);
        b->labels = malloc(rows * sizeof *b->labels);
        if (!b->labels) return -1;
        for (size_t k = 0; k < rows; k++) b->labels[k] = (int32_t)ag_rng_below(rng, classes);
    }
    return 0;
}

static void release(bench_case *b) {
    for (int i = 0; i < OP_MAX_IN; i++) free(b->data[i]);
    free(b->seed);
    free(b->labels);
}

/* One forward and one backward; adds their times to *fwd, *bwd. */
static int run_once(ag_tape *t, bench_case *b, ag_rng *rng, double *fwd, double *bwd) {
    ag_tape_reset(t);
    ag_tensor *in[OP_MAX_IN] = {0};
    for (int i = 0; i < b->c->n_in; i++) {
        in[i] = ag_tensor_wrap(t, b->in[i].ndim, b->in[i].d, b->data[i]);
        ag_requires_grad(in[i]);
    }
    const op_call call = {b->c->param, b->labels, b->c->n_in};
    double t0 = now_ns();
    ag_tensor *y = b->r->build(t, in, &call);
    double t1 = now_ns();
    if (y && !b->seed) { /* the output size is known once built */
        b->seed = malloc(y->size * sizeof(ag_real));
        if (!b->seed) return -1;
        ag_rng_fill_normal(rng, b->seed, y->size, 0, 1);
        t1 = now_ns();
    }
    if (!y || ag_backward_seed(t, y, b->seed) != AG_OK) {
        fprintf(stderr, "bench_ops: %s: %s\n", b->r->name, ag_tape_errmsg(t));
        return -1;
    }
    double t2 = now_ns();
    *fwd += t1 - t0;
    *bwd += t2 - t1;
    return 0;
}

static void fmt_speed_shape(const bench_case *b, char *shape, size_t n);

static int bench_one(ag_tape *t, bench_case *b, ag_rng *rng, int repeats, int iters, double *tot, double *fs,
                     double *bs) {
    double f = 0, w = 0;
    for (int i = 0; i < 3; i++) /* warm-up: the arena grows to fit, caches fill */
        if (run_once(t, b, rng, &f, &w)) return -1;
    for (int r = 0; r < repeats; r++) {
        f = w = 0;
        for (int it = 0; it < iters; it++)
            if (run_once(t, b, rng, &f, &w)) return -1;
        tot[r] = (f + w) / iters * 1e-6;
        fs[r] = f / ((double)iters * (double)b->elems);
        bs[r] = w / ((double)iters * (double)b->elems);
    }
    const double med_f = median(fs, repeats), med_b = median(bs, repeats);
    qsort(tot, (size_t)repeats, sizeof *tot, cmp_double);
    char shape[64];
    fmt_speed_shape(b, shape, sizeof shape);
    printf("bench_ops op=%s layout=\"%s\" shape=%s total_ms=%.4f min=%.4f max=%.4f fwd_ns_elem=%.3f bwd_ns_elem=%.3f\n",
           b->r->name, b->c->label, shape, repeats % 2 ? tot[repeats / 2] : 0.5 * (tot[repeats / 2 - 1] + tot[repeats / 2]),
           tot[0], tot[repeats - 1], med_f, med_b);
    fflush(stdout);
    return 0;
}

static void fmt_speed_shape(const bench_case *b, char *shape, size_t n) {
    if (b->r->speed_k || b->K != b->C) snprintf(shape, n, "%zux%zux%zu", b->R, b->C, b->K);
    else snprintf(shape, n, "%zux%zu", b->R, b->C);
}

/* --list-shapes: one line per record (see the top of the file). */
static int list_shapes(const char *only) {
    for (size_t ri = 0; ri < op_record_count(); ri++) {
        const op_record *r = op_record_at(ri);
        if (only && strcmp(only, r->name) != 0) continue;
        if (r->n_layouts == 0) continue;
        const op_case *c = &r->layouts[0];
        bench_case b;
        memset(&b, 0, sizeof b);
        b.r = r;
        b.c = c;
        b.R = r->speed_r ? r->speed_r : 256;
        b.C = r->speed_c ? r->speed_c : 1024;
        b.K = r->speed_k ? r->speed_k : b.C;
        char shape[64];
        fmt_speed_shape(&b, shape, sizeof shape);
        printf("op=%s layout=\"%s\" shape=%s in=", r->name, c->label, shape);
        for (int i = 0; i < c->n_in; i++) {
            op_shape s = op_shape_at(c->in[i], b.R, b.C, b.K);
            if (i) putchar(',');
            if (s.ndim == 0) fputs("scalar", stdout);
            for (int d = 0; d < s.ndim; d++) printf(d ? "x%zu" : "%zu", s.d[d]);
        }
        fputs(" domain=", stdout);
        for (int i = 0; i < c->n_in; i++) {
            op_domain dom = op_domain_of(r, c, i);
            printf("%s%.17g:%.17g", i ? "," : "", dom.lo, dom.hi);
        }
        if (r->labels) {
            op_shape s0 = op_shape_at(c->in[0], b.R, b.C, b.K);
            size_t rows, classes;
            op_label_dims(&s0, &rows, &classes);
            printf(" labels=%zux%zu\n", rows, classes);
        } else {
            fputs(" labels=none\n", stdout);
        }
    }
    return fflush(stdout) ? 1 : 0;
}

/* --serve: `run <name> <seconds>` on stdin, one answer line each (see the top of the file). */
static int serve(ag_tape *t) {
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    char line[512], name[256];
    bench_case b;
    int have = 0, iters = 0;
    memset(&b, 0, sizeof b);
    while (fgets(line, sizeof line, stdin)) {
        double secs = 0;
        if (sscanf(line, "run %255s %lf", name, &secs) != 2 || !(secs > 0) || secs > 60) {
            if (strspn(line, " \t\r\n") == strlen(line)) continue;
            printf("error bad command (want: run <name> <seconds>)\n");
            fflush(stdout);
            continue;
        }
        const op_record *r = op_record_find(name);
        if (!r || r->n_layouts == 0) {
            printf("error no op record named %s\n", name);
            fflush(stdout);
            continue;
        }
        double f = 0, w = 0;
        if (!have || b.r != r) {
            if (have) release(&b);
            have = 0;
            if (prepare(&b, r, &r->layouts[0], &rng)) {
                release(&b);
                printf("error %s: out of memory\n", name);
                fflush(stdout);
                continue;
            }
            have = 1;
            /* warm-up: 3 runs and at least 50 ms (the arena grows to fit, caches fill), then the count */
            double t0 = now_ns(), el = 0;
            int n = 0, bad = 0;
            while (n < 3 || el < 50e6) {
                if (run_once(t, &b, &rng, &f, &w)) { bad = 1; break; }
                n++;
                el = now_ns() - t0;
            }
            if (bad) {
                release(&b);
                have = 0;
                printf("error %s: %s\n", name, ag_tape_errmsg(t));
                fflush(stdout);
                continue;
            }
            /* the count from warm iterations only: at least 2 and 20 ms more */
            t0 = now_ns();
            el = 0;
            n = 0;
            while (!bad && (n < 2 || el < 20e6)) {
                bad = run_once(t, &b, &rng, &f, &w);
                n++;
                el = now_ns() - t0;
            }
            if (bad) {
                release(&b);
                have = 0;
                printf("error %s: %s\n", name, ag_tape_errmsg(t));
                fflush(stdout);
                continue;
            }
            double per = el / n;
            iters = (int)(secs * 1e9 / per);
            if (iters < 1) iters = 1;
            if (iters > 1000000) iters = 1000000;
        }
        double t0 = now_ns();
        int bad = 0;
        for (int it = 0; it < iters && !bad; it++) bad = run_once(t, &b, &rng, &f, &w);
        double el = now_ns() - t0;
        if (bad) printf("error %s: %s\n", name, ag_tape_errmsg(t));
        else printf("op=%s iters=%d us=%.4f\n", name, iters, el * 1e-3 / iters);
        fflush(stdout);
    }
    if (have) release(&b);
    return 0;
}

int main(int argc, char **argv) {
    int repeats = 7, iters = 10, flush = 0, all_layouts = 0, threads = 1, list = 0, serving = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--flush-denormal")) flush = 1;
        else if (!strcmp(argv[i], "--all-layouts")) all_layouts = 1;
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--list-shapes")) list = 1;
        else if (!strcmp(argv[i], "--serve")) serving = 1;
        else {
            fprintf(stderr, "usage: bench_ops [--repeats R] [--iters N] [--op NAME] [--all-layouts] [--flush-denormal] "
                            "[--threads N]\n       bench_ops --list-shapes [--op NAME]\n"
                            "       bench_ops --serve [--flush-denormal] [--threads N]\n");
            return 2;
        }
    }
    if (repeats < 1 || repeats > 1000 || iters < 1 || iters > 100000) {
        fprintf(stderr, "bench_ops: repeats must be 1..1000 and iters 1..100000\n");
        return 2;
    }
    if (only && !op_record_find(only)) {
        fprintf(stderr, "bench_ops: no op record named %s\n", only);
        return 2;
    }
    if (list) return list_shapes(only);
    if (threads < 1 || ag_set_threads(threads) != AG_OK) {
        fprintf(stderr, "bench_ops: --threads must be >= 1\n");
        return 2;
    }
    flush_denormals(flush);
    fprintf(stderr, "# bench_ops: %d thread(s), kernel %s, denormals %s, %s, %s build\n", ag_get_threads(),
            ag_kernel_name(), denormals_flushed() ? "flushed" : "kept", BENCH_COMPILER,
            sizeof(ag_real) == sizeof(double) ? "double" : "float");
    if (serving) {
        ag_tape *st;
        if (ag_tape_new(&st, NULL) != AG_OK) {
            fprintf(stderr, "bench_ops: out of memory\n");
            return 1;
        }
        int src = serve(st);
        ag_tape_free(st);
        return src;
    }
    double *tot = malloc((size_t)repeats * sizeof *tot), *fs = malloc((size_t)repeats * sizeof *fs),
           *bs = malloc((size_t)repeats * sizeof *bs);
    ag_tape *t;
    if (!tot || !fs || !bs || ag_tape_new(&t, NULL) != AG_OK) {
        fprintf(stderr, "bench_ops: out of memory\n");
        return 1;
    }
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    int rc = 0;
    for (size_t ri = 0; ri < op_record_count() && rc == 0; ri++) {
        const op_record *r = op_record_at(ri);
        if (only && strcmp(only, r->name) != 0) continue;
        for (size_t li = 0; li < (all_layouts ? r->n_layouts : 1) && rc == 0; li++) {
            bench_case b;
            rc = prepare(&b, r, &r->layouts[li], &rng) || bench_one(t, &b, &rng, repeats, iters, tot, fs, bs);
            release(&b);
        }
    }
    ag_tape_free(t);
    free(tot);
    free(fs);
    free(bs);
    return rc ? 1 : 0;
}

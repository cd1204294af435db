/* bench_gemm.c - ag_gemm against OpenBLAS cblas_?gemm in the same process.
 * Both are timed alternately on the same operands; per shape the median of >= 5 repeats (each repeat long
 * enough to be timed reliably), both GFLOP/s, the ratio ag/OpenBLAS and the spread ((max-min)/median).
 * Also a probe of the core's FMA peak and the fraction of it ag_gemm reaches at 1024^3: the probe also runs
 * between the 1024 repeats, and the fraction compares the two medians, so both see the same machine load.
 * Usage: bench_gemm [--quick] [--threads N] [--cpu] [--only S1,S2,...] [--tiles] [--scaling]   (see bench/run_gemm)
 *   --cpu: time with process CPU time (on a shared VM, 1 thread: leaves out time the core was taken away)
 *   --only: just the shapes whose label contains one of the comma-separated substrings
 *   --scaling: instead, ag_gemm alone with N (default 2) threads against 1, no OpenBLAS calls in between
 *   --tiles: instead, optimizer in backward: dW = dZ^T X handed tile by tile to an SGD update (ag_gemm_tiles)
 *            against ag_gemm into a gradient buffer plus a separate update pass (see bench_tiles)
 * Last line: gemm_vs_openblas min_mlp=<ratio> geomean=<ratio> peak_fraction_1024=<fraction> */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/ag.h>
#include "bench_util.h"


#ifdef AG_DOUBLE
#define BLAS_GEMM cblas_dgemm
#define BLAS_NAME "cblas_dgemm"
#else
#define BLAS_GEMM cblas_sgemm
#define BLAS_NAME "cblas_sgemm"
#endif

static int use_cpu_clock;   /* --cpu: process CPU time instead of wall time (1 thread: ignores preemption) */

static double now(void)
{
    struct timespec t;
    clock_gettime(use_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- FMA peak probe: independent FMA chains on the widest vectors the CPU has ---- */
#define PROBE_CHAINS 20   /* > latency x ports, so throughput bound */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx512f"), noinline)) static double probe512(long iters)
{
#ifdef AG_DOUBLE
    __m512d acc[PROBE_CHAINS], x = _mm512_set1_pd(0.999999), y = _mm512_set1_pd(1e-7);
    for (int i = 0; i < PROBE_CHAINS; i++) acc[i] = _mm512_set1_pd((double)i);
    for (long it = 0; it < iters; it++)
        _Pragma("GCC unroll 32") for (int i = 0; i < PROBE_CHAINS; i++) acc[i] = _mm512_fmadd_pd(acc[i], x, y);
    double s = 0;
    for (int i = 0; i < PROBE_CHAINS; i++) s += _mm512_reduce_add_pd(acc[i]);
#else
    __m512 acc[PROBE_CHAINS], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < PROBE_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        _Pragma("GCC unroll 32") for (int i = 0; i < PROBE_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    double s = 0;
    for (int i = 0; i < PROBE_CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
#endif
    return s;
}
#define PROBE_AVX2_CHAINS 12   /* 16 ymm registers */
__attribute__((target("avx2,fma"), noinline)) static double probe256(long iters)
{
#ifdef AG_DOUBLE
    __m256d acc[PROBE_AVX2_CHAINS], x = _mm256_set1_pd(0.999999), y = _mm256_set1_pd(1e-7);
    for (int i = 0; i < PROBE_AVX2_CHAINS; i++) acc[i] = _mm256_set1_pd((double)i);
    for (long it = 0; it < iters; it++)
        _Pragma("GCC unroll 32") for (int i = 0; i < PROBE_AVX2_CHAINS; i++) acc[i] = _mm256_fmadd_pd(acc[i], x, y);
    double s = 0, t[4];
    for (int i = 0; i < PROBE_AVX2_CHAINS; i++) {
        _mm256_storeu_pd(t, acc[i]);
        s += t[0] + t[1] + t[2] + t[3];
    }
#else
    __m256 acc[PROBE_AVX2_CHAINS], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < PROBE_AVX2_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        _Pragma("GCC unroll 32") for (int i = 0; i < PROBE_AVX2_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    double s = 0;
    float t[8];
    for (int i = 0; i < PROBE_AVX2_CHAINS; i++) {
        _mm256_storeu_ps(t, acc[i]);
        for (int j = 0; j < 8; j++) s += t[j];
    }
#endif
    return s;
}
#endif

static int probe_kind(void)   /* 2: zmm probe, 1: ymm probe, 0: none for the path in use */
{
#if defined(__x86_64__) || defined(__i386__)
    const char *kn = ag_kernel_name();
    if (strcmp(kn, "avx512") == 0) return 2;
    if (strcmp(kn, "avx2") == 0) return 1;
#endif
    return 0;
}

volatile double probe_sink;   /* keeps the probe's result alive */

/* GFLOP/s of one probe run of `iters` iterations. */
static double probe_once(long iters)
{
#if defined(__x86_64__) || defined(__i386__)
    int kind = probe_kind();
    if (!kind) return 0;
    double lanes = (double)(sizeof(double) / sizeof(ag_real)) * 4 * kind;   /* 4 doubles per 256 bits */
    double chains = kind == 2 ? PROBE_CHAINS : PROBE_AVX2_CHAINS;
    double t = now();
    probe_sink += kind == 2 ? probe512(iters) : probe256(iters);
    t = now() - t;
    return 2.0 * lanes * chains * (double)iters / t * 1e-9;
#else
    (void)iters;
    return 0;
#endif
}

/* The core's FMA peak: best of several runs (0 if there is no SIMD probe for the path). */
static double fma_peak(const char **what)
{
    int kind = probe_kind();
    *what = kind == 2 ? "avx512 zmm FMA" : kind == 1 ? "avx2 ymm FMA" : "none";
    double best = 0;
    for (int r = 0; kind && r < 7; r++) {
        double gf = probe_once(20000000);
        if (gf > best) best = gf;
    }
    return best;
}

/* ---- shapes ---- */
typedef struct {
    const char *group;   /* "square", "mlp", "out" */
    const char *label;
    size_t m, n, k;
    int ta, tb, batch;
} shape;

typedef struct {
    double ag, blas, ratio, spread_ag, spread_blas, ag1;
    double probe;   /* median FMA peak probed between the repeats (if asked) */
} result;

static void fill(ag_real *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (ag_real)((double)(seed >> 8) / 16777216.0 - 0.5);
    }
}

static void run_ag(const shape *s, const ag_real *a, const ag_real *b, ag_real *c)
{
    ag_status st = ag_gemm(s->ta, s->tb, s->m, s->n, s->k, 1, a, s->ta ? s->m : s->k, b, s->tb ? s->k : s->n, 0, c,
                           s->n);
    if (st != AG_OK) {
        fprintf(stderr, "ag_gemm failed: %s\n", ag_status_str(st));
        exit(1);
    }
}

static void run_blas(const shape *s, const ag_real *a, const ag_real *b, ag_real *c)
{
    BLAS_GEMM(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (int)s->m,
              (int)s->n, (int)s->k, 1, a, (int)(s->ta ? s->m : s->k), b, (int)(s->tb ? s->k : s->n), 0, c,
              (int)s->n);
}

/* Seconds per call, timing `reps` calls in a row. */
static double time_calls(int which, const shape *s, const ag_real *a, const ag_real *b, ag_real *c, int reps)
{
    double t = now();
    for (int r = 0; r < reps; r++) {
        if (which) run_blas(s, a, b, c);
        else run_ag(s, a, b, c);
    }
    return (now() - t) / reps;
}

#define MAX_REPEATS 15

static result bench_shape(const shape *s, int repeats, int threads, double min_sample, int with_probe)
{
    size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
    ag_real *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
    ag_real *c1 = malloc(nc * sizeof *c1), *c2 = malloc(nc * sizeof *c2);
    if (!a || !b || !c1 || !c2) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(a, na, 1);
    fill(b, nb, 2);
    double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;

    /* warm up (packing buffers, pool, caches) and check the two agree */
    run_ag(s, a, b, c1);
    run_blas(s, a, b, c2);
    double maxd = 0, maxv = 1e-30;
    for (size_t i = 0; i < nc; i++) {
        double d = fabs((double)c1[i] - (double)c2[i]);
        if (d > maxd) maxd = d;
        if (fabs((double)c2[i]) > maxv) maxv = fabs((double)c2[i]);
    }
    if (maxd > 1e-3 * maxv) fprintf(stderr, "warning: %s differs from OpenBLAS by %g\n", s->label, maxd);

    /* calls per sample so that a sample lasts >= min_sample seconds */
    double t1 = time_calls(0, s, a, b, c1, 1);
    int reps = (int)(min_sample / (t1 > 1e-7 ? t1 : 1e-7)) + 1;
    if (reps > 100000) reps = 100000;

    double tag[MAX_REPEATS], tbl[MAX_REPEATS], tag1[MAX_REPEATS], tpr[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        if (with_probe) tpr[r] = probe_once(2000000);   /* same moment, same load as the product */
        tag[r] = time_calls(0, s, a, b, c1, reps);
        tbl[r] = time_calls(1, s, a, b, c2, reps);
        if (threads > 1) {   /* the same product on one thread, to show what the second thread buys */
            ag_set_threads(1);
            tag1[r] = time_calls(0, s, a, b, c1, reps);
            ag_set_threads(threads);
        }
    }
    result res = {0};
    double lo_a = tag[0], hi_a = tag[0], lo_b = tbl[0], hi_b = tbl[0];
    for (int r = 1; r < repeats; r++) {
        lo_a = fmin(lo_a, tag[r]);
        hi_a = fmax(hi_a, tag[r]);
        lo_b = fmin(lo_b, tbl[r]);
        hi_b = fmax(hi_b, tbl[r]);
    }
    double ma = median(tag, repeats), mb = median(tbl, repeats);
    res.ag = flops / ma * 1e-9;
    res.blas = flops / mb * 1e-9;
    res.ratio = res.ag / res.blas;
    res.spread_ag = (hi_a - lo_a) / ma;
    res.spread_blas = (hi_b - lo_b) / mb;
    if (threads > 1) res.ag1 = flops / median(tag1, repeats) * 1e-9;
    if (with_probe) res.probe = median(tpr, repeats);
    free(a);
    free(b);
    free(c1);
    free(c2);
    return res;
}

/* ---- --tiles: optimizer in backward ----
 * SGD with weight decay on W (m x n) from the gradient dW = dZ^T X (dZ: K x m, X: K x n): either
 *   fused:    ag_gemm_tiles hands every finished tile of dW to sgd_rows (on the thread that computed it), or
 *   two-pass: ag_gemm(beta = 0) stores dW in a gradient buffer, then one sgd_rows pass over all of it.
 * Both call the same update function; the fused one also runs it on every worker thread. */
typedef struct {
    ag_real *w;
    size_t ldw;
    ag_real lr, wd;
} sgd_ctx;

static void sgd_rows(const sgd_ctx *S, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *g,
                     size_t ldg)
{
    for (size_t r = 0; r < rows; r++) {
        ag_real *w = S->w + (i0 + r) * S->ldw + j0;
        const ag_real *gr = g + r * ldg;
        for (size_t c = 0; c < cols; c++) w[c] -= S->lr * (gr[c] + S->wd * w[c]);
    }
}

static void sgd_tile(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p, size_t ldp)
{
    sgd_rows(ctx, i0, j0, rows, cols, p, ldp);
}

static double time_dw(int mode, size_t m, size_t n, size_t k, const ag_real *dz, const ag_real *x, ag_real *g,
                      sgd_ctx *S, int reps)
{
    double t = now();
    for (int r = 0; r < reps; r++) {
        ag_status st = AG_OK;
        if (mode == 0) {
            st = ag_gemm_tiles(1, 0, m, n, k, 1, dz, m, x, n, g, n, sgd_tile, S);
        } else {
            st = ag_gemm(1, 0, m, n, k, 1, dz, m, x, n, 0, g, n);
            if (mode == 1) sgd_rows(S, 0, 0, m, n, g, n);
        }
        if (st != AG_OK) {
            fprintf(stderr, "gemm failed: %s\n", ag_status_str(st));
            exit(1);
        }
    }
    return (now() - t) / reps;
}

/* ---- --scaling: what the thread pool buys, ag_gemm alone ----
 * The 2-thread rows of the main table interleave OpenBLAS, whose idle workers busy-wait for ~70 ms after each
 * call and then hold the second vCPU (unless OPENBLAS_THREAD_TIMEOUT is small, as run_gemm sets it); here only
 * ag_gemm runs: N threads against 1, alternating, each block after
 * a warm-up call and long enough (0.2 s) that a sleeping worker's wake-up is amortised. */
static int bench_scaling(int quick, int threads)
{
    static const size_t sq[] = {256, 512, 1024}, bs[] = {32, 128, 512};
    const int repeats = quick ? 3 : 5;
    const double block = quick ? 0.1 : 0.2;
    printf("bench_gemm --scaling: ag_gemm with %d threads against 1, %s kernel, %s; median of %d alternating "
           "blocks of %.1f s\n", threads, ag_kernel_name(), sizeof(ag_real) == 4 ? "float" : "double", repeats, block);
    printf("%-30s %10s %10s %8s\n", "shape (m x n x k)", "1 thr GF/s", "N thr GF/s", "speedup");
    for (int i = 0; i < 12; i++) {
        shape s = {0};
        char label[64];
        if (i < 3) {
            s.m = s.n = s.k = sq[i];
            snprintf(label, sizeof label, "square %zu", sq[i]);
        } else {   /* X W^T, dY W, dY^T X of the 784-256 layer at B = 32, 128, 512 */
            size_t B = bs[(i - 3) / 3];
            int which = (i - 3) % 3;
            if (which == 0) s.m = B, s.n = 256, s.k = 784, s.tb = 1;
            else if (which == 1) s.m = B, s.n = 784, s.k = 256;
            else s.m = 256, s.n = 784, s.k = B, s.ta = 1;
            snprintf(label, sizeof label, "B=%zu %s %zux%zux%zu", B,
                     which == 0 ? "X W^T" : which == 1 ? "dY W" : "dY^T X", s.m, s.n, s.k);
        }
        ag_real *a = malloc(s.m * s.k * sizeof *a), *b = malloc(s.k * s.n * sizeof *b), *c = malloc(s.m * s.n * sizeof *c);
        if (!a || !b || !c) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        fill(a, s.m * s.k, 1);
        fill(b, s.k * s.n, 2);
        double flops = 2.0 * (double)s.m * (double)s.n * (double)s.k, t[2][MAX_REPEATS];
        for (int r = 0; r < repeats; r++)
            for (int v = 0; v < 2; v++) {
                ag_set_threads(v ? threads : 1);
                run_ag(&s, a, b, c);   /* wake the workers */
                int calls = 0;
                double t0 = now(), el;
                do {
                    run_ag(&s, a, b, c);
                    calls++;
                } while ((el = now() - t0) < block);
                t[v][r] = el / calls;
            }
        double m1 = median(t[0], repeats), mn = median(t[1], repeats);
        printf("%-30s %10.1f %10.1f %7.2fx\n", label, flops / m1 * 1e-9, flops / mn * 1e-9, m1 / mn);
        fflush(stdout);
        free(a);
        free(b);
        free(c);
    }
    ag_set_threads(threads);
    return 0;
}

static int bench_tiles(int quick, int threads)
{
    static const size_t ms[] = {256, 512}, ks[] = {1, 32, 128, 512};
    int repeats = quick ? 5 : 11;
    double min_sample = quick ? 0.01 : 0.03;
    printf("bench_gemm --tiles: dW = dZ^T X (m x n x K) + SGD update of W, %s kernel, %s, %d thread%s\n",
           ag_kernel_name(), sizeof(ag_real) == 4 ? "float" : "double", threads, threads > 1 ? "s" : "");
    printf("%-18s %11s %11s %11s %9s %9s\n", "dW m x n x K", "gemm us", "2-pass us", "fused us", "fused/2p",
           "spread");
    for (size_t im = 0; im < 2; im++)
        for (size_t ik = 0; ik < 4; ik++) {
            size_t m = ms[im], n = 784, k = ks[ik];
            if (quick && k == 512) continue;
            ag_real *dz = malloc(k * m * sizeof *dz), *x = malloc(k * n * sizeof *x);
            ag_real *g = malloc(m * n * sizeof *g), *w = malloc(m * n * sizeof *w);
            if (!dz || !x || !g || !w) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            fill(dz, k * m, 3);
            fill(x, k * n, 4);
            fill(w, m * n, 5);
            sgd_ctx S = {w, n, (ag_real)1e-3, (ag_real)1e-4};
            for (int mode = 0; mode < 3; mode++) time_dw(mode, m, n, k, dz, x, g, &S, 2);   /* warm up */
            double t1 = time_dw(1, m, n, k, dz, x, g, &S, 1);
            int reps = (int)(min_sample / (t1 > 1e-7 ? t1 : 1e-7)) + 1;
            double tf[MAX_REPEATS], t2[MAX_REPEATS], tg[MAX_REPEATS];
            for (int r = 0; r < repeats; r++) {   /* interleaved: all three see the same machine load */
                tf[r] = time_dw(0, m, n, k, dz, x, g, &S, reps);
                t2[r] = time_dw(1, m, n, k, dz, x, g, &S, reps);
                tg[r] = time_dw(2, m, n, k, dz, x, g, &S, reps);
            }
            double lo = tf[0], hi = tf[0];
            for (int r = 1; r < repeats; r++) lo = fmin(lo, tf[r]), hi = fmax(hi, tf[r]);
            double mf = median(tf, repeats), m2 = median(t2, repeats), mg = median(tg, repeats);
            char label[48];
            snprintf(label, sizeof label, "%zux%zux%zu", m, n, k);
            printf("%-18s %11.1f %11.1f %11.1f %9.3f %8.1f%%\n", label, 1e6 * mg, 1e6 * m2, 1e6 * mf, mf / m2,
                   100 * (hi - lo) / mf);
            fflush(stdout);
            free(dz);
            free(x);
            free(g);
            free(w);
        }
    printf("gemm: ag_gemm alone; 2-pass: ag_gemm into a gradient buffer, then the update over it; fused: "
           "ag_gemm_tiles with the update per tile. Medians of %d interleaved repeats; spread of fused.\n",
           repeats);
    return 0;
}

int main(int argc, char **argv)
{
    int quick = 0, threads = 1, tiles = 0, scaling = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--cpu") == 0) use_cpu_clock = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tiles") == 0) tiles = 1;
        else if (strcmp(argv[i], "--scaling") == 0) scaling = 1;
        else {
            fprintf(stderr, "usage: %s [--quick] [--threads N] [--cpu] [--only S1,S2,...] [--tiles] [--scaling]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    ag_set_threads(threads);
    if (tiles) return bench_tiles(quick, threads);
    if (scaling) return bench_scaling(quick, threads > 1 ? threads : 2);
    openblas_set_num_threads(threads);

    printf("bench_gemm: ag_gemm (%s kernel, %s, %s) vs OpenBLAS %s, %d thread%s%s%s\n", ag_kernel_name(),
           sizeof(ag_real) == 4 ? "float" : "double", BENCH_COMPILER, BLAS_NAME, threads, threads > 1 ? "s" : "",
           quick ? ", quick" : "", use_cpu_clock ? ", CPU time" : "");
    printf("OpenBLAS core: %s | config: %s\n", openblas_get_corename(), openblas_get_config());
    const char *probe_what;
    double peak = fma_peak(&probe_what);
    if (peak > 0) printf("FMA peak probe (%s, 1 thread): %.1f GFLOP/s\n", probe_what, peak);

    shape shapes[64];
    int ns = 0;
    static const size_t squares[] = {64, 128, 256, 512, 1024, 2048};
    static char labels[64][48];
    for (int i = 0; i < 6; i++) {
        if (quick && squares[i] > 1024) continue;
        size_t d = squares[i];
        snprintf(labels[ns], sizeof labels[ns], "square %zu", d);
        shapes[ns] = (shape){"square", labels[ns], d, d, d, 0, 0, 0};
        ns++;
    }
    static const int batches[] = {1, 32, 128, 512};
    for (int i = 0; i < 4; i++) {
        size_t B = (size_t)batches[i];
        snprintf(labels[ns], sizeof labels[ns], "B=%zu X W^T  %zux256x784", B, B);
        shapes[ns] = (shape){"mlp", labels[ns], B, 256, 784, 0, 1, (int)B};
        ns++;
        snprintf(labels[ns], sizeof labels[ns], "B=%zu dY W   %zux784x256", B, B);
        shapes[ns] = (shape){"mlp", labels[ns], B, 784, 256, 0, 0, (int)B};
        ns++;
        snprintf(labels[ns], sizeof labels[ns], "B=%zu dY^T X 256x784x%zu", B, B);
        shapes[ns] = (shape){"mlp", labels[ns], 256, 784, B, 1, 0, (int)B};
        ns++;
    }
    for (int i = 0; i < 4; i++) {   /* the 10-wide output layer: 256 -> 10 */
        size_t B = (size_t)batches[i];
        snprintf(labels[ns], sizeof labels[ns], "B=%zu out X W^T  %zux10x256", B, B);
        shapes[ns] = (shape){"out", labels[ns], B, 10, 256, 0, 1, (int)B};
        ns++;
        snprintf(labels[ns], sizeof labels[ns], "B=%zu out dY W   %zux256x10", B, B);
        shapes[ns] = (shape){"out", labels[ns], B, 256, 10, 0, 0, (int)B};
        ns++;
        snprintf(labels[ns], sizeof labels[ns], "B=%zu out dY^T X 10x256x%zu", B, B);
        shapes[ns] = (shape){"out", labels[ns], 10, 256, B, 1, 0, (int)B};
        ns++;
    }

    int repeats = quick ? 5 : 9;
    double min_sample = quick ? 0.01 : 0.03;
    printf("%-30s %10s %10s %7s %8s %8s%s\n", "shape (m x n x k)", "ag GF/s", "blas GF/s", "ratio", "spr ag",
           "spr blas", threads > 1 ? "   ag 1-thr  speedup" : "");
    double min_mlp = NAN, log_sum = 0, frac1024 = 0, probe1024 = 0, gf1024 = 0;
    if (only) {   /* keep the shapes whose label contains one of the substrings */
        int kept = 0;
        for (int i = 0; i < ns; i++) {
            int keep = 0;
            for (const char *o = only; *o && !keep;) {
                const char *e = strchr(o, ',');
                size_t len = e ? (size_t)(e - o) : strlen(o);
                for (const char *l = shapes[i].label; *l && !keep; l++) keep = len && strncmp(l, o, len) == 0;
                o += len + (e != NULL);
            }
            if (keep) shapes[kept++] = shapes[i];
        }
        ns = kept;
    }
    for (int i = 0; i < ns; i++) {
        int is1024 = strcmp(shapes[i].group, "square") == 0 && shapes[i].m == 1024;
        result r = bench_shape(&shapes[i], repeats, threads, min_sample, is1024 && peak > 0);
        printf("%-30s %10.1f %10.1f %7.3f %7.1f%% %7.1f%%", shapes[i].label, r.ag, r.blas, r.ratio,
               100 * r.spread_ag, 100 * r.spread_blas);
        if (threads > 1) printf(" %10.1f %7.2fx", r.ag1, r.ag / r.ag1);
        printf("\n");
        fflush(stdout);
        if (strcmp(shapes[i].group, "mlp") == 0 && shapes[i].batch >= 32 && !(r.ratio >= min_mlp)) min_mlp = r.ratio;
        log_sum += log(r.ratio);
        if (is1024 && peak > 0) {
            frac1024 = r.ag / r.probe;
            probe1024 = r.probe;
            gf1024 = r.ag;
        }
    }
    if (peak > 0) {
        printf("fraction of FMA peak at 1024: %.3f = %.1f / %.1f GFLOP/s (medians of ag_gemm and of the %s probe "
               "run between its repeats; %.3f of the best probe %.1f)%s\n", frac1024, gf1024, probe1024, probe_what,
               gf1024 / peak, peak, threads > 1 ? " [probe on 1 thread]" : "");
    }
    printf("min_mlp: lowest ratio over the X W^T, dY W, dY^T X products with B >= 32; geomean over all %d shapes\n",
           ns);
    printf("gemm_vs_openblas min_mlp=%.3f geomean=%.3f peak_fraction_1024=%.3f\n", min_mlp, exp(log_sum / ns),
           frac1024);
    return 0;
}

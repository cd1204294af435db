/* test_gemm.c - ag_gemm against a naive double-precision reference: every kernel path the CPU runs, all
 * transposes, odd sizes that fit no tile, padded leading dimensions, alpha/beta (beta = 0 over NaN),
 * thread counts 1..4, bit-identical results across thread counts, errors and allocation behaviour. */
#include <float.h>
#include <pthread.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define EPS DBL_EPSILON
#else
#define EPS FLT_EPSILON
#endif

static const char *const paths[] = {"portable", "avx2", "avx512"};
#define N_PATHS 3

static uint64_t rng_state = 88172645463325252ull;
static double urand(void)   /* xorshift64: deterministic, in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

/* One product with its operands; C carries a sentinel in the padding columns ldc - n. */
typedef struct {
    int ta, tb;
    size_t m, n, k, lda, ldb, ldc;
    ag_real alpha, beta;
    ag_real *a, *b, *c0;   /* c0: C before the call */
    double *ref, *mag;     /* reference C and sum of |terms|, computed on first check */
} prob;

static void prob_init(prob *p, int ta, int tb, size_t m, size_t n, size_t k, size_t pad, ag_real alpha,
                      ag_real beta)
{
    *p = (prob){.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta};
    p->lda = (ta ? m : k) + pad;
    p->ldb = (tb ? k : n) + pad;
    p->ldc = n + pad;
    size_t na = (ta ? k : m) * p->lda, nb = (tb ? n : k) * p->ldb, nc = m * p->ldc;
    p->a = malloc((na ? na : 1) * sizeof(ag_real));
    p->b = malloc((nb ? nb : 1) * sizeof(ag_real));
    p->c0 = malloc((nc ? nc : 1) * sizeof(ag_real));
    ck_assert(p->a && p->b && p->c0);
    for (size_t i = 0; i < na; i++) p->a[i] = (ag_real)urand();
    for (size_t i = 0; i < nb; i++) p->b[i] = (ag_real)urand();
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < p->ldc; j++)
            p->c0[i * p->ldc + j] = j >= n ? (ag_real)12345 : beta == 0 ? (ag_real)NAN : (ag_real)urand();
}

static void prob_free(prob *p)
{
    free(p->a);
    free(p->b);
    free(p->c0);
    free(p->ref);
    free(p->mag);
}

/* Runs ag_gemm on a copy of C0 into c (m * ldc). */
static ag_status prob_run(const prob *p, ag_real *c)
{
    memcpy(c, p->c0, p->m * p->ldc * sizeof(ag_real));
    return ag_gemm(p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, c, p->ldc);
}

static void prob_reference(prob *p)
{
    size_t nc = p->m * p->n;
    p->ref = malloc((nc ? nc : 1) * sizeof(double));
    p->mag = malloc((nc ? nc : 1) * sizeof(double));
    ck_assert(p->ref && p->mag);
    for (size_t i = 0; i < p->m; i++) {
        for (size_t j = 0; j < p->n; j++) {
            double s = 0, sabs = 0;
            for (size_t q = 0; q < p->k; q++) {
                double x = p->ta ? p->a[q * p->lda + i] : p->a[i * p->lda + q];
                double y = p->tb ? p->b[j * p->ldb + q] : p->b[q * p->ldb + j];
                s += x * y;
                sabs += fabs(x * y);
            }
            double ref = (double)p->alpha * s, mag = fabs((double)p->alpha) * sabs;
            if (p->beta != 0) {
                ref += (double)p->beta * p->c0[i * p->ldc + j];
                mag += fabs((double)p->beta * p->c0[i * p->ldc + j]);
            }
            p->ref[i * p->n + j] = ref;
            p->mag[i * p->n + j] = mag;
        }
    }
}

/* Checks c against the reference within a bound proportional to k * eps * sum |terms|; padding intact. */
static void prob_check(prob *p, const ag_real *c, const char *what)
{
    if (!p->ref) prob_reference(p);
    size_t bad = 0;
    double worst = 0;
    for (size_t i = 0; i < p->m; i++) {
        for (size_t j = 0; j < p->n; j++) {
            double ref = p->ref[i * p->n + j], got = c[i * p->ldc + j], err = fabs(got - ref);
            double tol = 4.0 * ((double)p->k + 4.0) * EPS * p->mag[i * p->n + j] + 1e-30;
            if (!(err <= tol)) {   /* also catches NaN */
                if (bad < 5)
                    fprintf(stderr, "%s: m=%zu n=%zu k=%zu ta=%d tb=%d C[%zu][%zu] = %.9g, want %.9g\n", what,
                            p->m, p->n, p->k, p->ta, p->tb, i, j, got, ref);
                bad++;
            }
            if (err > worst && err == err) worst = err;
        }
        for (size_t j = p->n; j < p->ldc; j++)
            if (c[i * p->ldc + j] != (ag_real)12345) bad++;
    }
    ck_assert_msg(bad == 0, "%s: %zu wrong elements (max |diff| %g), m=%zu n=%zu k=%zu ta=%d tb=%d", what, bad,
                  worst, p->m, p->n, p->k, p->ta, p->tb);
}

static void check_one(int ta, int tb, size_t m, size_t n, size_t k, size_t pad, ag_real alpha, ag_real beta,
                      const char *what)
{
    prob p;
    prob_init(&p, ta, tb, m, n, k, pad, alpha, beta);
    size_t nc = m * p.ldc;
    ag_real *c = malloc((nc ? nc : 1) * sizeof(ag_real));
    ck_assert(c);
    ck_assert_int_eq(prob_run(&p, c), AG_OK);
    prob_check(&p, c, what);
    free(c);
    prob_free(&p);
}

/* Odd sizes: none is a multiple of any tile (4, 6, 8, 12, 16, 32) except the few that sit on an edge. */
static const size_t sizes[] = {1, 2, 3, 5, 7, 11, 12, 13, 17, 31, 32, 33, 47, 61, 64, 65, 67};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

/* Every transpose and size, small k sweep, per available kernel path, one thread. */
START_TEST(test_paths_small)
{
    int quick = ag_test_quick();
    ck_assert_int_eq(ag_set_threads(1), AG_OK);
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        ck_assert_str_eq(ag_kernel_name(), paths[path]);
        for (int t = 0; t < 4; t++) {
            int ta = t & 1, tb = t >> 1;
            for (size_t i = 0; i < N_SIZES; i++) {
                for (size_t j = 0; j < N_SIZES; j += quick ? 5 : 2) {
                    size_t m = sizes[i], n = sizes[(i + j) % N_SIZES], k = sizes[(3 * i + j + 1) % N_SIZES];
                    ag_real beta = (i + j) % 3 == 0 ? 0 : (ag_real)0.75;
                    check_one(ta, tb, m, n, k, (i + j) % 4, (ag_real)1.25, beta, paths[path]);
                }
            }
        }
    }
    ag__kernel_force(NULL);
}
END_TEST

/* Sizes that cross the cache blocks (KC, MC, NC) with several alpha/beta pairs. The last two are column splits
 * with enough rows for the packed path in every transpose (on avx512 and avx2 op(A) = A is read in place,
 * ukr_as, and the avx512 m edge 150 = 12 x 12 + 6 packed), n edges of one and two vectors (308 = 9 x 32 + 20, also cut at 256),
 * and k in one or two blocks. */
START_TEST(test_paths_blocked)
{
    static const struct { size_t m, n, k; } shp[] = {
        {200, 67, 401}, {13, 700, 130}, {197, 45, 800}, {70, 1100, 9}, {150, 308, 1100}, {150, 300, 700},
    };
    static const ag_real ab[][2] = {{1, 0}, {-0.5, 0}, {1.5, -0.75}, {1, 1}};
    int quick = ag_test_quick();
    ck_assert_int_eq(ag_set_threads(1), AG_OK);
    for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s += quick ? 2 : 1) {
        for (int t = 0; t < 4; t++) {
            prob p;
            prob_init(&p, t & 1, t >> 1, shp[s].m, shp[s].n, shp[s].k, 3, ab[(s + t) % 4][0], ab[(s + t) % 4][1]);
            ag_real *c = malloc(p.m * p.ldc * sizeof(ag_real));
            ck_assert(c);
            for (int path = 0; path < N_PATHS; path++) {
                if (ag__kernel_force(paths[path]) != 0) continue;
                ck_assert_int_eq(prob_run(&p, c), AG_OK);
                prob_check(&p, c, paths[path]);
            }
            free(c);
            prob_free(&p);
        }
    }
    ag__kernel_force(NULL);
}
END_TEST

/* Few rows of A around the thresholds of the small-m paths (B read in place up to 4 MR rows; A B^T through
 * transposed C^T tiles up to 4 NR rows), k across the KC block, padded strides, 1 and 3 threads. */
START_TEST(test_small_m)
{
    static const size_t ms[] = {23, 35, 36, 37, 47, 48, 49, 60, 97, 127, 128, 129};
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i += quick ? 3 : 1) {
            for (int t = 0; t < 4; t++) {
                size_t m = ms[i], n = i % 2 ? 2 * m + 37 : 300 + m, k = i % 3 == 1 ? 1030 : i % 3 ? 530 : 301;
                prob p;
                prob_init(&p, t & 1, t >> 1, m, n, k, (i + (size_t)t) % 3, (ag_real)0.75,
                          i % 2 ? (ag_real)0 : (ag_real)-1.5);
                size_t nc = p.m * p.ldc;
                ag_real *c1 = malloc(nc * sizeof(ag_real)), *c3 = malloc(nc * sizeof(ag_real));
                ck_assert(c1 && c3);
                ag_set_threads(1);
                ck_assert_int_eq(prob_run(&p, c1), AG_OK);
                prob_check(&p, c1, paths[path]);
                ag_set_threads(3);
                ck_assert_int_eq(prob_run(&p, c3), AG_OK);
                ck_assert_msg(memcmp(c1, c3, nc * sizeof(ag_real)) == 0, "%s: 3 threads differ (m=%zu n=%zu k=%zu)",
                              paths[path], m, n, k);
                free(c1);
                free(c3);
                prob_free(&p);
            }
        }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* Thread counts 1..4 on products big enough to split, both along n (wide) and along m (tall). */
START_TEST(test_threads_correct)
{
    /* the last two take the unpacked (direct) kernels: few rows, and a narrow B^T */
    static const struct { size_t m, n, k; } shp[] = {
        {97, 301, 190}, {433, 61, 190}, {130, 517, 67}, {5, 4500, 190}, {1700, 10, 270},
    };
    int quick = ag_test_quick();
    for (size_t s = 0; s < (quick ? 2 : 5); s++) {
        ck_assert(2.0 * shp[s].m * shp[s].n * shp[s].k >= AG__GEMM_PAR_FLOPS);   /* really splits */
        for (int t = 0; t < 4; t++) {
            prob p;   /* one reference, checked for every path and thread count */
            prob_init(&p, t & 1, t >> 1, shp[s].m, shp[s].n, shp[s].k, 1, (ag_real)0.5,
                      t == 1 ? (ag_real)0 : (ag_real)2);
            ag_real *c = malloc(p.m * p.ldc * sizeof(ag_real));
            ck_assert(c);
            for (int path = 0; path < N_PATHS; path++) {
                if (ag__kernel_force(paths[path]) != 0) continue;
                for (int nt = 1; nt <= 4; nt++) {
                    ck_assert_int_eq(ag_set_threads(nt), AG_OK);
                    ck_assert_int_eq(prob_run(&p, c), AG_OK);
                    prob_check(&p, c, paths[path]);
                }
            }
            free(c);
            prob_free(&p);
        }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* The k-reduction order per element never depends on the thread count: 1, 2 and 3 threads agree bit for bit. */
START_TEST(test_threads_bit_identical)
{
    static const struct { size_t m, n, k; } shp[] = {   /* quick mode: the first alone */
        {40, 500, 420}, {96, 700, 900}, {650, 80, 500}, {257, 259, 1300}, {7, 3000, 400}, {2500, 13, 300},
        {1000, 700, 12},
    };
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (size_t s = 0; s < (quick ? 1 : 7); s++) {
            for (int t = 0; t < 4; t += quick ? 3 : 1) {
                ck_assert(2.0 * shp[s].m * shp[s].n * shp[s].k >= 2 * AG__GEMM_PAR_FLOPS);   /* really splits */
                prob p;
                prob_init(&p, t & 1, t >> 1, shp[s].m, shp[s].n, shp[s].k, 2, (ag_real)1, (ag_real)0.5);
                size_t nc = p.m * p.ldc;
                ag_real *c1 = malloc(nc * sizeof(ag_real)), *cn = malloc(nc * sizeof(ag_real));
                ck_assert(c1 && cn);
                ag_set_threads(1);
                ck_assert_int_eq(prob_run(&p, c1), AG_OK);
                if (s == 0 && t == 0) prob_check(&p, c1, paths[path]);
                for (int nt = 2; nt <= 3; nt++) {
                    ag_set_threads(nt);
                    ck_assert_int_eq(prob_run(&p, cn), AG_OK);
                    ck_assert_msg(memcmp(c1, cn, nc * sizeof(ag_real)) == 0,
                                  "%s: %d threads differ from 1 (m=%zu n=%zu k=%zu ta=%d tb=%d)", paths[path], nt,
                                  p.m, p.n, p.k, p.ta, p.tb);
                }
                free(c1);
                free(cn);
                prob_free(&p);
            }
        }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* k == 0 and alpha == 0 give C = beta C without reading A and B; beta == 0 clears NaN. */
START_TEST(test_degenerate)
{
    ag_real c[6], nan = (ag_real)NAN;
    for (int i = 0; i < 6; i++) c[i] = (ag_real)(i + 1);
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 0, 1, NULL, 0, NULL, 0, 2, c, 3), AG_OK);
    for (int i = 0; i < 6; i++) ck_assert(c[i] == (ag_real)(2 * (i + 1)));
    for (int i = 0; i < 6; i++) c[i] = nan;
    ck_assert_int_eq(ag_gemm(1, 1, 2, 3, 0, 1, NULL, 0, NULL, 0, 0, c, 3), AG_OK);
    for (int i = 0; i < 6; i++) ck_assert(c[i] == 0);
    ag_real a[4] = {nan, nan, nan, nan}, b[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 6; i++) c[i] = 1;
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 0, a, 2, b, 3, 3, c, 3), AG_OK);
    for (int i = 0; i < 6; i++) ck_assert(c[i] == 3);
    /* empty outputs touch nothing, even with NULL pointers */
    ck_assert_int_eq(ag_gemm(0, 0, 0, 3, 5, 1, NULL, 5, NULL, 3, 0, NULL, 3), AG_OK);
    ck_assert_int_eq(ag_gemm(0, 0, 3, 0, 5, 1, NULL, 5, NULL, 0, 0, NULL, 0), AG_OK);
}
END_TEST

START_TEST(test_errors)
{
    ag_real a[12] = {0}, b[12] = {0}, c[12] = {0};
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, NULL, 2, b, 3, 0, c, 3), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, a, 2, NULL, 3, 0, c, 3), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, a, 2, b, 3, 0, NULL, 3), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, a, 1, b, 3, 0, c, 3), AG_ERR_ARG);   /* lda < k */
    ck_assert_int_eq(ag_gemm(1, 0, 2, 3, 2, 1, a, 1, b, 3, 0, c, 3), AG_ERR_ARG);   /* lda < m */
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, a, 2, b, 2, 0, c, 3), AG_ERR_ARG);   /* ldb < n */
    ck_assert_int_eq(ag_gemm(0, 1, 2, 3, 2, 1, a, 2, b, 1, 0, c, 3), AG_ERR_ARG);   /* ldb < k */
    ck_assert_int_eq(ag_gemm(0, 0, 2, 3, 2, 1, a, 2, b, 3, 0, c, 2), AG_ERR_ARG);   /* ldc < n */
    ck_assert_int_eq(ag_set_threads(-1), AG_ERR_ARG);
    ck_assert_int_eq(ag_set_threads(3), AG_OK);
    ck_assert_int_eq(ag_get_threads(), 3);
    ck_assert_int_eq(ag_set_threads(0), AG_OK);
    ck_assert_int_ge(ag_get_threads(), 1);
    /* an unknown or unrunnable path falls back to one that works */
    ck_assert_int_eq(ag__kernel_force("sse9"), -1);
    ck_assert_ptr_nonnull(ag_kernel_name());
    ck_assert_int_eq(ag__kernel_force("portable"), 0);
    ck_assert_str_eq(ag_kernel_name(), "portable");
    ag__kernel_force(NULL);
}
END_TEST

/* Packing buffers come from the hooks once; a failed allocation returns NOMEM and leaves C unchanged;
 * the steady state allocates nothing, on one thread or several. */
START_TEST(test_alloc)
{
    prob p;
    prob_init(&p, 0, 1, 90, 300, 200, 0, 1, (ag_real)0.5);
    size_t nc = p.m * p.ldc;
    ag_real *c = malloc(nc * sizeof(ag_real));
    ck_assert(c);
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_threads(nt);
        ag__threads_shutdown();   /* drop the buffers so the next call must allocate */
        ag_test_alloc_install();
        ag_test_alloc_fail_at(1);
        ck_assert_int_eq(prob_run(&p, c), AG_ERR_NOMEM);
        ck_assert(ag_test_alloc_failed());
        ck_assert(memcmp(c, p.c0, nc * sizeof(ag_real)) == 0);
        ag_test_alloc_fail_at(0);
        ck_assert_int_eq(prob_run(&p, c), AG_OK);
        prob_check(&p, c, "after NOMEM");
        size_t before = ag_test_alloc_count();
        for (int r = 0; r < 3; r++) ck_assert_int_eq(prob_run(&p, c), AG_OK);
        ck_assert_uint_eq(ag_test_alloc_count(), before);
        ag__threads_shutdown();
        ck_assert_uint_eq(ag_test_alloc_live(), 0);
        ag_test_alloc_uninstall();
    }
    ag_set_threads(0);
    free(c);
    prob_free(&p);
}
END_TEST

/* ag__parallel_for runs every task once, on valid thread slots, also when nested. */
static void count_task(void *ctx, size_t task, int thread)
{
    int *hits = ctx;
    ck_assert_int_ge(thread, 0);
    ck_assert_int_lt(thread, AG__MAX_THREADS);
    __atomic_fetch_add(&hits[task], 1, __ATOMIC_RELAXED);
}
static void nested_task(void *ctx, size_t task, int thread)
{
    int *hits = ctx;
    (void)thread;
    ag__parallel_for(4, count_task, hits + 100 + 4 * task);
}
START_TEST(test_parallel_for)
{
    static int hits[200];
    for (int nt = 1; nt <= 4; nt++) {
        memset(hits, 0, sizeof hits);
        ag_set_threads(nt);
        ag__parallel_for(100, count_task, hits);
        for (int i = 0; i < 100; i++) ck_assert_int_eq(hits[i], 1);
        ag__parallel_for(20, nested_task, hits);
        for (int i = 100; i < 180; i++) ck_assert_int_eq(hits[i], 1);
    }
    ag__threads_shutdown();
    ag_set_threads(0);
}
END_TEST

/* User threads may run products at the same time: each gets what it would alone, bit for bit, whether
 * its products stay on the calling thread or use the pool (which the threads then take in turn). Each
 * thread runs the shapes in its own order, so different paths and sizes overlap. */
#define UT_PROBS 5
#define UT_THREADS 3
typedef struct {
    prob *probs;
    ag_real *const *want;
    int first, reps;
    int mismatches, failures;
} ut_job;

static void *ut_run(void *arg)
{
    ut_job *j = arg;
    for (int r = 0; r < j->reps; r++)
        for (int i = 0; i < UT_PROBS; i++) {
            const prob *p = &j->probs[(j->first + i) % UT_PROBS];
            size_t nc = p->m * p->ldc;
            ag_real *c = malloc(nc * sizeof(ag_real));
            if (!c || prob_run(p, c) != AG_OK) j->failures++;
            else if (memcmp(c, j->want[(j->first + i) % UT_PROBS], nc * sizeof(ag_real)) != 0) j->mismatches++;
            free(c);
        }
    ag__threads_shutdown();   /* frees this thread's own scratch (thread exit would too) */
    return NULL;
}

START_TEST(test_user_threads)
{
    prob probs[UT_PROBS];
    prob_init(&probs[0], 0, 1, 90, 300, 200, 0, 1, (ag_real)0.5); /* packed */
    prob_init(&probs[1], 0, 1, 32, 256, 784, 0, 1, 0);            /* small batch X W^T */
    prob_init(&probs[2], 0, 0, 32, 784, 256, 0, 1, 0);            /* small batch dY W, B in place */
    prob_init(&probs[3], 1, 0, 256, 300, 128, 3, 1, 1);           /* dY^T X, parallel at 2 threads */
    prob_init(&probs[4], 0, 0, 17, 19, 23, 0, 1, 0);              /* direct */
    ag_real *want[UT_PROBS];
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_threads(nt);
        for (int i = 0; i < UT_PROBS; i++) {
            want[i] = malloc(probs[i].m * probs[i].ldc * sizeof(ag_real));
            ck_assert_ptr_nonnull(want[i]);
            ck_assert_int_eq(prob_run(&probs[i], want[i]), AG_OK);
            prob_check(&probs[i], want[i], "reference run for the user threads");
        }
        ut_job jobs[UT_THREADS];
        pthread_t tid[UT_THREADS];
        for (int t = 0; t < UT_THREADS; t++) {
            jobs[t] = (ut_job){.probs = probs, .want = want, .first = t, .reps = ag_test_quick() ? 2 : 20};
            ck_assert_int_eq(pthread_create(&tid[t], NULL, ut_run, &jobs[t]), 0);
        }
        for (int t = 0; t < UT_THREADS; t++) {
            ck_assert_int_eq(pthread_join(tid[t], NULL), 0);
            ck_assert_msg(jobs[t].failures == 0 && jobs[t].mismatches == 0,
                          "%d threads: user thread %d: %d failed products, %d differ from a lone run", nt, t,
                          jobs[t].failures, jobs[t].mismatches);
        }
        for (int i = 0; i < UT_PROBS; i++) free(want[i]);
    }
    for (int i = 0; i < UT_PROBS; i++) prob_free(&probs[i]);
    ag__threads_shutdown();
    ag_set_threads(0);
}
END_TEST

/* A child forked after the workers started has none of them: its products must still complete. */
START_TEST(test_fork)
{
    /* skipped in quick mode: under valgrind the child's own leak report would count the buffers it
     * inherited (and the parent's thread stacks) */
    if (ag_test_quick()) return;
    prob p;
    prob_init(&p, 0, 0, 120, 300, 150, 0, 1, 0);
    size_t nc = p.m * p.ldc;
    ag_real *c1 = malloc(nc * sizeof(ag_real)), *c2 = malloc(nc * sizeof(ag_real));
    ck_assert(c1 && c2);
    ag_set_threads(2);
    ck_assert_int_eq(prob_run(&p, c1), AG_OK);   /* starts the pool */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(20);   /* a deadlocked pool kills the child instead of hanging the suite */
        int ok = prob_run(&p, c2) == AG_OK && memcmp(c1, c2, nc * sizeof(ag_real)) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d", status);
    ck_assert_int_eq(prob_run(&p, c2), AG_OK);
    ck_assert(memcmp(c1, c2, nc * sizeof(ag_real)) == 0);
    ag_set_threads(0);
    free(c1);
    free(c2);
    prob_free(&p);
}
END_TEST

static Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_paths_small);
    tcase_add_test(tc, test_paths_blocked);
    tcase_add_test(tc, test_small_m);
    tcase_add_test(tc, test_threads_correct);
    tcase_add_test(tc, test_threads_bit_identical);
    tcase_add_test(tc, test_degenerate);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_alloc);
    tcase_add_test(tc, test_parallel_for);
    tcase_add_test(tc, test_user_threads);
    tcase_add_test(tc, test_fork);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(gemm_suite)

/* test_gemm_tiles.c - ag_gemm_tiles (the product handed to a callback tile by tile, for optimizer-in-backward):
 * on every kernel path the CPU runs and every GEMM path (direct, B in place, transposed small-m, packed, several
 * k blocks), all transposes, odd and tile-crossing sizes, alpha != 1 and 1..4 threads, the tiles cover the
 * product exactly once and hold exactly what ag_gemm(beta = 0) stores; `work` stays untouched when k fits one
 * k block; degenerate products deliver zeros; errors and a failed allocation deliver nothing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

static const char *const paths[] = {"portable", "avx2", "avx512"};
#define N_PATHS 3

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static ag_real urand(void)   /* xorshift64, in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (ag_real)((double)(rng_state >> 11) / 4503599627370496.0 - 1.0);
}

/* What the callback saw: the tiles copied into out (m x n), per-element delivery counts, bad tile bounds. */
typedef struct {
    size_t m, n;
    ag_real *out;
    int *count;
    size_t calls, bad;   /* updated atomically: tiles arrive from several threads */
    const ag_real *work; /* if set, p must not point into work[0 .. work_len) */
    size_t work_len, in_work;
} collect;

static void collect_fn(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p, size_t ldp)
{
    collect *C = ctx;
    __atomic_fetch_add(&C->calls, 1, __ATOMIC_RELAXED);
    if (rows == 0 || cols == 0 || i0 >= C->m || j0 >= C->n || rows > C->m - i0 || cols > C->n - j0 ||
        (rows > 1 && ldp < cols) || !p) {
        __atomic_fetch_add(&C->bad, 1, __ATOMIC_RELAXED);
        return;
    }
    if (C->work && p >= C->work && p < C->work + C->work_len) __atomic_fetch_add(&C->in_work, 1, __ATOMIC_RELAXED);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            size_t e = (i0 + r) * C->n + j0 + c;
            __atomic_fetch_add(&C->count[e], 1, __ATOMIC_RELAXED);
            C->out[e] = p[r * ldp + c];
        }
}

typedef struct {
    int ta, tb;
    size_t m, n, k, lda, ldb, ldw;
    ag_real alpha;
    ag_real *a, *b;
} prob;

static void prob_init(prob *p, int ta, int tb, size_t m, size_t n, size_t k, size_t pad, ag_real alpha)
{
    *p = (prob){.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = alpha};
    p->lda = (ta ? m : k) + pad;
    p->ldb = (tb ? k : n) + pad;
    p->ldw = n + (pad + 1) % 3;
    size_t na = (ta ? k : m) * p->lda, nb = (tb ? n : k) * p->ldb;
    p->a = malloc((na ? na : 1) * sizeof(ag_real));
    p->b = malloc((nb ? nb : 1) * sizeof(ag_real));
    ck_assert(p->a && p->b);
    for (size_t i = 0; i < na; i++) p->a[i] = urand();
    for (size_t i = 0; i < nb; i++) p->b[i] = urand();
}

static void prob_free(prob *p)
{
    free(p->a);
    free(p->b);
}

/* ag_gemm(beta = 0) of p into ref (m x n, tight). */
static void prob_ref(const prob *p, ag_real *ref)
{
    ck_assert_int_eq(ag_gemm(p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, 0, ref, p->n),
                     AG_OK);
}

/* ag_gemm_tiles of p against ref; work filled with a sentinel, and if `untouched` it must keep it. */
static void check_tiles(const prob *p, const ag_real *ref, int untouched, const char *what)
{
    size_t mn = p->m * p->n, wl = p->m * p->ldw;
    collect C = {.m = p->m, .n = p->n};
    C.out = malloc((mn ? mn : 1) * sizeof(ag_real));
    C.count = calloc(mn ? mn : 1, sizeof(int));
    ag_real *work = malloc((wl ? wl : 1) * sizeof(ag_real));
    ck_assert(C.out && C.count && work);
    for (size_t i = 0; i < mn; i++) C.out[i] = (ag_real)NAN;
    for (size_t i = 0; i < wl; i++) work[i] = (ag_real)-777;
    if (untouched) C.work = work, C.work_len = wl;
    ck_assert_int_eq(ag_gemm_tiles(p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, work,
                                    p->ldw, collect_fn, &C),
                     AG_OK);
    ck_assert_msg(C.bad == 0, "%s: %zu tiles out of bounds (m=%zu n=%zu k=%zu ta=%d tb=%d)", what, C.bad, p->m,
                  p->n, p->k, p->ta, p->tb);
    size_t miss = 0, dup = 0;
    for (size_t i = 0; i < mn; i++) {
        miss += C.count[i] == 0;
        dup += C.count[i] > 1;
    }
    ck_assert_msg(miss == 0 && dup == 0, "%s: %zu elements never delivered, %zu more than once (m=%zu n=%zu k=%zu "
                  "ta=%d tb=%d threads=%d)", what, miss, dup, p->m, p->n, p->k, p->ta, p->tb, ag_get_threads());
    if (memcmp(C.out, ref, mn * sizeof(ag_real)) != 0) {
        size_t e = 0;
        while (memcmp(&C.out[e], &ref[e], sizeof(ag_real)) == 0) e++;
        ck_abort_msg("%s: differs from ag_gemm at [%zu][%zu]: %.9g vs %.9g (m=%zu n=%zu k=%zu ta=%d tb=%d "
                     "threads=%d kernel=%s)", what, e / p->n, e % p->n, (double)C.out[e], (double)ref[e], p->m,
                     p->n, p->k, p->ta, p->tb, ag_get_threads(), ag_kernel_name());
    }
    if (untouched) {
        size_t changed = 0;
        for (size_t i = 0; i < wl; i++) changed += work[i] != (ag_real)-777;
        ck_assert_msg(changed == 0 && C.in_work == 0, "%s: work touched (%zu elements, %zu tiles from work), "
                      "m=%zu n=%zu k=%zu ta=%d tb=%d kernel=%s", what, changed, C.in_work, p->m, p->n, p->k, p->ta,
                      p->tb, ag_kernel_name());
    }
    free(C.out);
    free(C.count);
    free(work);
}

/* ag_gemm reference on this kernel path, then ag_gemm_tiles on every thread count in [t0, t1]. */
static void check_prob(prob *p, int t0, int t1, int untouched, const char *what)
{
    size_t mn = p->m * p->n;
    ag_real *ref = malloc((mn ? mn : 1) * sizeof(ag_real));
    ck_assert(ref);
    ag_set_threads(1);
    prob_ref(p, ref);
    for (int nt = t0; nt <= t1; nt++) {
        ag_set_threads(nt);
        check_tiles(p, ref, untouched, what);
    }
    free(ref);
}

static const size_t sizes[] = {1, 2, 3, 5, 7, 11, 12, 13, 17, 31, 32, 33, 47, 61, 64, 65, 67};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

/* Odd sizes 1..67 (mostly the direct path on avx512, packed or B-in-place elsewhere), all transposes. */
START_TEST(test_tiles_small)
{
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (int t = 0; t < 4; t++)
            for (size_t i = 0; i < N_SIZES; i++)
                for (size_t j = 0; j < N_SIZES; j += quick ? 5 : 2) {
                    prob p;
                    prob_init(&p, t & 1, t >> 1, sizes[i], sizes[(i + j) % N_SIZES], sizes[(3 * i + j + 1) % N_SIZES],
                              (i + j) % 4, (i + j) % 2 ? (ag_real)1 : (ag_real)-1.25);
                    check_prob(&p, 1, 1, 0, paths[path]);
                    prob_free(&p);
                }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* Shapes that pick each GEMM path (on avx512: direct for m <= 12, k <= 16, tiny or narrow B^T; B in place for
 * m <= 48; C^T tiles for A B^T up to 128 rows; packed otherwise), k across several k blocks, the dense-layer dW
 * shapes, all transposes, 1..4 threads (all of them split: >= 8 Mflop). */
START_TEST(test_tiles_paths)
{
    static const struct { size_t m, n, k; } shp[] = {
        {5, 1500, 700},    /* direct (few rows), k > kc */
        {400, 1200, 9},    /* direct (short k) */
        {900, 13, 400},    /* direct B^T (narrow) for A B^T */
        {40, 700, 301},    /* B in place / C^T tiles */
        {37, 400, 1100},   /* B in place / C^T tiles, several k blocks */
        {100, 533, 190},   /* C^T tiles (A B^T), else packed */
        {120, 300, 1300},  /* several k blocks */
        {197, 301, 190},   /* packed, column strips */
        {433, 61, 401},    /* packed, row strips */
        {256, 784, 32},    /* dW, batch 32 */
        {10, 784, 512},    /* dW, output layer */
        {128, 784, 1100},  /* dW, batch > kc on avx512 */
    };
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s += quick ? 4 : 1) {
            ck_assert(2.0 * shp[s].m * shp[s].n * shp[s].k >= AG__GEMM_PAR_FLOPS);
            for (int t = 0; t < 4; t++) {
                prob p;
                prob_init(&p, t & 1, t >> 1, shp[s].m, shp[s].n, shp[s].k, (s + (size_t)t) % 3,
                          t == 1 ? (ag_real)1 : (ag_real)0.625);
                check_prob(&p, 1, quick ? 2 : 4, 0, paths[path]);
                prob_free(&p);
            }
        }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* Sizes just around the tile (12 x 32, 6 x 16, 4 x 8) and strip edges, on 1 and 3 threads. */
START_TEST(test_tiles_edges)
{
    static const size_t ms[] = {11, 12, 13, 23, 24, 25, 47, 48, 49, 127, 128, 129, 191, 193};
    static const size_t ns[] = {31, 33, 63, 65, 255, 257, 511, 513};
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i += quick ? 4 : 1)
            for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j += quick ? 3 : 1) {
                int t = (int)((i + j) % 4);
                prob p;
                prob_init(&p, t & 1, t >> 1, ms[i], ns[j], 17 + 29 * ((i + j) % 5), j % 2, (ag_real)1.5);
                check_prob(&p, 1, 1, 0, paths[path]);
                if (2.0 * p.m * p.n * p.k >= AG__GEMM_PAR_FLOPS) check_prob(&p, 3, 3, 0, paths[path]);
                prob_free(&p);
            }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* k within one k block (<= 256 for every kernel and precision): no path writes to work, tiles never point
 * into it. */
START_TEST(test_tiles_work_untouched)
{
    static const struct { size_t m, n, k; } shp[] = {
        {40, 700, 200}, {200, 300, 256}, {256, 784, 32}, {512, 784, 128}, {64, 500, 100}, {7, 300, 40},
        {130, 90, 1}, {33, 65, 17},
    };
    int quick = ag_test_quick();
    for (int path = 0; path < N_PATHS; path++) {
        if (ag__kernel_force(paths[path]) != 0) continue;
        for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s += quick ? 3 : 1)
            for (int t = 0; t < 4; t++) {
                prob p;
                prob_init(&p, t & 1, t >> 1, shp[s].m, shp[s].n, shp[s].k, 1, (ag_real)1);
                check_prob(&p, 1, 2, 1, paths[path]);
                prob_free(&p);
            }
    }
    ag_set_threads(0);
    ag__kernel_force(NULL);
}
END_TEST

/* k == 0 and alpha == 0 deliver zeros (not NaN * 0), once per element; empty products deliver nothing. */
START_TEST(test_tiles_degenerate)
{
    ag_real nan = (ag_real)NAN;
    ag_real a[600], b[600];
    for (int i = 0; i < 600; i++) a[i] = b[i] = nan;
    static const struct { size_t m, n, k; ag_real alpha; } cs[] = {{2, 3, 0, 1}, {20, 300, 0, 1}, {17, 30, 2, 0}};
    for (size_t s = 0; s < 3; s++) {
        size_t m = cs[s].m, n = cs[s].n, mn = m * n;
        collect C = {.m = m, .n = n};
        C.out = malloc(mn * sizeof(ag_real));
        C.count = calloc(mn, sizeof(int));
        ag_real *work = malloc(mn * sizeof(ag_real));
        ck_assert(C.out && C.count && work);
        for (size_t i = 0; i < mn; i++) C.out[i] = nan;
        ck_assert_int_eq(ag_gemm_tiles(0, 0, m, n, cs[s].k, cs[s].alpha, cs[s].k ? a : NULL, cs[s].k,
                                        cs[s].k ? b : NULL, n, work, n, collect_fn, &C),
                         AG_OK);
        free(work);
        ck_assert_uint_eq(C.bad, 0);
        for (size_t i = 0; i < mn; i++) {
            ck_assert_int_eq(C.count[i], 1);
            ck_assert(C.out[i] == 0 && !signbit(C.out[i]));
        }
        free(C.out);
        free(C.count);
    }
    collect C = {.m = 1, .n = 1};
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 0, 3, 5, 1, NULL, 5, NULL, 3, NULL, 3, collect_fn, &C), AG_OK);
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 3, 0, 5, 1, NULL, 5, NULL, 0, NULL, 0, NULL, NULL), AG_OK);
    ck_assert_uint_eq(C.calls, 0);
}
END_TEST

START_TEST(test_tiles_errors)
{
    ag_real a[12] = {0}, b[12] = {0}, w[12] = {0};
    collect C = {.m = 2, .n = 3};
    ag_gemm_tile_fn f = collect_fn;
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, NULL, 2, b, 3, w, 3, f, &C), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 2, NULL, 3, w, 3, f, &C), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 2, b, 3, NULL, 3, f, &C), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 2, b, 3, w, 3, NULL, &C), AG_ERR_ARG);
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 1, b, 3, w, 3, f, &C), AG_ERR_ARG);   /* lda < k */
    ck_assert_int_eq(ag_gemm_tiles(1, 0, 2, 3, 2, 1, a, 1, b, 3, w, 3, f, &C), AG_ERR_ARG);   /* lda < m */
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 2, b, 2, w, 3, f, &C), AG_ERR_ARG);   /* ldb < n */
    ck_assert_int_eq(ag_gemm_tiles(0, 1, 2, 3, 2, 1, a, 2, b, 1, w, 3, f, &C), AG_ERR_ARG);   /* ldb < k */
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 2, 1, a, 2, b, 3, w, 2, f, &C), AG_ERR_ARG);   /* ldw < n */
    ck_assert_int_eq(ag_gemm_tiles(0, 0, 2, 3, 0, 1, a, 2, b, 3, w, 2, f, &C), AG_ERR_ARG);   /* also k == 0 */
    ck_assert_int_eq(ag_gemm_tiles(0, 0, SIZE_MAX / 2, 3, 2, 1, a, 2, b, 3, w, 3, f, &C), AG_ERR_ARG);
    ck_assert_uint_eq(C.calls, 0);
}
END_TEST

/* On a cold pool every allocation the product needs fails in turn: AG_ERR_NOMEM, and not a single tile was
 * delivered; then it succeeds and matches ag_gemm. */
START_TEST(test_tiles_oom)
{
    static const struct { int ta, tb; size_t m, n, k; } shp[] = {
        {1, 0, 256, 784, 32}, {0, 1, 40, 500, 300}, {1, 0, 40, 700, 301}, {0, 0, 433, 61, 700},
    };
    for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++) {
        prob p;
        prob_init(&p, shp[s].ta, shp[s].tb, shp[s].m, shp[s].n, shp[s].k, 0, (ag_real)1);
        size_t mn = p.m * p.n;
        ag_real *ref = malloc(mn * sizeof(ag_real)), *work = malloc(p.m * p.ldw * sizeof(ag_real));
        collect C = {.m = p.m, .n = p.n};
        C.out = malloc(mn * sizeof(ag_real));
        C.count = calloc(mn, sizeof(int));
        ck_assert(ref && work && C.out && C.count);
        for (int nt = 1; nt <= 2; nt++) {
            ag_set_threads(nt);
            prob_ref(&p, ref);
            int failures = 0;
            for (size_t at = 1;; at++) {
                ag__threads_shutdown();   /* cold: every scratch buffer must be allocated again */
                ag_test_alloc_install();
                ag_test_alloc_fail_at(at);
                memset(C.count, 0, mn * sizeof(int));
                C.calls = 0;
                ag_status st = ag_gemm_tiles(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, work, p.ldw,
                                              collect_fn, &C);
                int failed = ag_test_alloc_failed();
                ag_test_alloc_fail_at(0);
                ag__threads_shutdown();
                ck_assert_uint_eq(ag_test_alloc_live(), 0);
                ag_test_alloc_uninstall();
                if (st == AG_ERR_NOMEM) {
                    ck_assert(failed);
                    ck_assert_uint_eq(C.calls, 0);
                    failures++;
                    ck_assert_int_lt(failures, 50);
                    continue;
                }
                ck_assert_int_eq(st, AG_OK);
                ck_assert(!failed);
                for (size_t i = 0; i < mn; i++) ck_assert_int_eq(C.count[i], 1);
                ck_assert(memcmp(C.out, ref, mn * sizeof(ag_real)) == 0);
                break;
            }
            ck_assert_int_ge(failures, 1);   /* the product did need memory */
        }
        free(ref);
        free(work);
        free(C.out);
        free(C.count);
        prob_free(&p);
    }
    ag_set_threads(0);
}
END_TEST

static Suite *gemm_tiles_suite(void)
{
    Suite *s = suite_create("gemm_tiles");
    TCase *tc = tcase_create("gemm_tiles");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_tiles_small);
    tcase_add_test(tc, test_tiles_paths);
    tcase_add_test(tc, test_tiles_edges);
    tcase_add_test(tc, test_tiles_work_untouched);
    tcase_add_test(tc, test_tiles_degenerate);
    tcase_add_test(tc, test_tiles_errors);
    tcase_add_test(tc, test_tiles_oom);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(gemm_tiles_suite)

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double ag_test_max_abs_diff(const char *label, const ag_real *a, const double *b, size_t n, double tol) {
    double worst = 0;
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN wins */
        if (!(d <= tol) && shown < 5) {
            fprintf(stderr, "%s[%zu]: got %.17g want %.17g (diff %.3g)\n", label, i, (double)a[i], b[i], d);
            shown++;
        }
    }
    return worst;
}

/* ---- counting allocator; blocks carry their size in a header so live counts stay exact */

static size_t g_calls, g_live, g_fail_at;
static int g_failed;

static int should_fail(void) {
    g_calls++;
    if (g_fail_at && g_calls == g_fail_at) {
        g_failed = 1;
        return 1;
    }
    return 0;
}

static void *count_malloc(size_t size, void *user) {
    (void)user;
    if (should_fail()) return NULL;
    void *p = malloc(size);
    if (p) g_live++;
    return p;
}

static void *count_realloc(void *ptr, size_t size, void *user) {
    (void)user;
    if (should_fail()) return NULL;
    void *p = realloc(ptr, size);
    if (p && !ptr) g_live++;
    return p;
}

static void count_free(void *ptr, void *user) {
    (void)user;
    if (ptr) g_live--;
    free(ptr);
}

void ag_test_alloc_install(void) {
    g_calls = 0;
    g_live = 0;
    g_fail_at = 0;
    g_failed = 0;
    ag_allocator a = {count_malloc, count_realloc, count_free, NULL};
    ag_set_allocator(&a);
}

void ag_test_alloc_uninstall(void) { ag_set_allocator(NULL); }
size_t ag_test_alloc_count(void) { return g_calls; }
size_t ag_test_alloc_live(void) { return g_live; }

void ag_test_alloc_fail_at(size_t n) {
    g_fail_at = n ? g_calls + n : 0;
    g_failed = 0;
}

int ag_test_alloc_failed(void) { return g_failed; }

int ag_test_quick(void) {
    const char *q = getenv("AG_TEST_QUICK");
    if (q && *q && strcmp(q, "0") != 0) return 1;
    const char *ld = getenv("LD_PRELOAD");
    return ld && (strstr(ld, "valgrind") || strstr(ld, "vgpreload"));
}

int ag_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#if !defined(_XOPEN_SOURCE) || _XOPEN_SOURCE < 700
#undef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* nftw (XSI in glibc's headers) */
#endif

#include "testutil.h"

#include <errno.h>
#include <ftw.h>
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

/* ---- scratch directory; removed by a file walk, not `rm -rf`: no shell, no quoting of the path */

static char g_scratch[4096]; /* empty: none made yet, or removed */

const char *ag_test_scratch_dir(void) {
    if (!g_scratch[0]) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp) tmp = "/tmp";
        char d[sizeof g_scratch]; /* g_scratch stays empty if mkdtemp fails */
        int n = snprintf(d, sizeof d, "%s/tapegrad-test-XXXXXX", tmp);
        ck_assert_msg(n > 0 && (size_t)n < sizeof d, "TMPDIR too long: %s", tmp);
        ck_assert_msg(mkdtemp(d) != NULL, "cannot make a directory %s: %s", d, strerror(errno));
        memcpy(g_scratch, d, sizeof d);
    }
    return g_scratch;
}

void ag_test_scratch_path(char *buf, size_t size, const char *name) {
    const char *d = ag_test_scratch_dir();
    int n = snprintf(buf, size, "%s/%s", d, name);
    ck_assert_msg(n > 0 && (size_t)n < size, "%s/%s does not fit in %zu bytes", d, name, size);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0) fprintf(stderr, "cannot remove %s: %s\n", path, strerror(errno));
    return 0; /* remove what can be removed */
}

void ag_test_scratch_remove(void) {
    if (!g_scratch[0]) return;
    /* depth first, so a directory is empty when its turn comes; physical, so a link is removed
     * and not what it points to */
    if (nftw(g_scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "cannot remove %s: %s\n", g_scratch, strerror(errno));
    g_scratch[0] = '\0';
}

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

/* ---------------------------------------------------------------- loss = sum_i r_i y_i */

static ag_status wsum_shape(ag_node *n) {
    return n->in[0]->size == n->in[1]->size ? ag_node_set_shape(n, 0, NULL)
                                            : ag_node_fail(n, AG_ERR_SHAPE, "sizes differ");
}
static ag_status wsum_forward(ag_node *n) {
    double s = 0;
    for (size_t i = 0; i < n->in[0]->size; i++) s += (double)n->in[0]->value[i] * n->in[1]->value[i];
    n->out.value[0] = (ag_real)s;
    return AG_OK;
}
static ag_status wsum_backward(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->in[0]->size; i++) n->in[0]->grad[i] += n->in[1]->value[i] * n->out.grad[0];
    return AG_OK;
}
static const ag_op wsum_op = {"t_wsum", 2, 0, wsum_shape, wsum_forward, wsum_backward};

ag_tensor *ag_test_wsum(ag_tape *t, ag_tensor *y, ag_tensor *r) { return ag_call(t, &wsum_op, (ag_tensor *[]){y, r}, 2, NULL); }

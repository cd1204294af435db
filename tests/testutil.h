/*
 * testutil.h - shared by the Check suites: a main() per suite, tolerances, comparison helpers
 * that print the worst pairs on failure (llm.c's check_tensor), an allocation counter, and a
 * scratch directory for suites that write files.
 */
#ifndef AG_TESTUTIL_H
#define AG_TESTUTIL_H

#include <check.h>
#include <stddef.h>

#include <tapegrad/ag.h>

/* Tolerances by scalar type: the double build is held to near machine precision. */
#ifdef AG_DOUBLE
#define AG_TEST_GRAD_TOL 1e-6   /* gradcheck relative error */
#define AG_TEST_EXACT_TOL 1e-12 /* tape vs hand-derived reference */
#define AG_TEST_ULP 2.220446049250313e-16 /* unit roundoff of ag_real, for closed-form checks */
#else
#define AG_TEST_GRAD_TOL 5e-3   /* worst case seen 1.1e-3; 2e-2 let a 1% gradient error pass */
#define AG_TEST_EXACT_TOL 1e-5
#define AG_TEST_ULP 1.1920928955078125e-7
#endif

/* Largest |a[i] - b[i]|; prints the first few mismatches beyond tol with label. */
double ag_test_max_abs_diff(const char *label, const ag_real *a, const double *b, size_t n, double tol);
/* The larger of a running maximum and d, NaN winning (fmax drops a NaN, so a NaN gradient would pass
 * a check; and gcc 12 for aarch64 crashes vectorising fmax reductions). */
static inline double ag_test_worse(double worst, double d) { return d <= worst ? worst : d; }

/* Allocation counting through ag_set_allocator: wraps libc, optionally fails the n-th call. */
void ag_test_alloc_install(void);   /* start counting (and stop failing) */
void ag_test_alloc_uninstall(void); /* back to libc */
size_t ag_test_alloc_count(void);   /* malloc + realloc calls since install */
size_t ag_test_alloc_live(void);    /* blocks allocated and not yet freed */
void ag_test_alloc_fail_at(size_t n); /* the n-th call from now fails (1-based); 0 = never */
int ag_test_alloc_failed(void);     /* did a forced failure happen since fail_at? */

/* A scratch directory, tapegrad-test-XXXXXX under $TMPDIR or /tmp, made on first use in this
 * process and again after ag_test_scratch_remove. Under Check's fork mode it belongs to the
 * process that made it: from a checked fixture or a test, the child; from an unchecked fixture,
 * the parent, and every child shares it. Failures to make it or to fit a path fail the test. */
const char *ag_test_scratch_dir(void);
void ag_test_scratch_path(char *buf, size_t size, const char *name); /* scratch dir + "/" + name */
void ag_test_scratch_remove(void); /* it and all in it (links are not followed); no-op if none */

/* True when running under valgrind or with AG_TEST_QUICK set: suites shrink their sweeps. */
int ag_test_quick(void);

/* sum_i r_i y_i as a user op ("t_wsum"): a scalar loss with the gradient r on y (none on r); the
 * gradient checks reduce any result to a scalar with fixed random weights r. */
ag_tensor *ag_test_wsum(ag_tape *t, ag_tensor *y, ag_tensor *r);

/* Run one suite: exit status for ctest. */
int ag_test_run(Suite *s);
#define AG_TEST_MAIN(suite_fn) \
    int main(void) { return ag_test_run(suite_fn()); }

#endif

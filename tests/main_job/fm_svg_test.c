/*
 * fm_svg_test.c - the main job's SVG curve writer (examples/fashion_mnist/svg.c): axis ticks for
 * ordinary, flat, huge and nearly-equal values. Built with svg.c by tests/fashion_mnist.cmake.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "svg.h"
#include "testutil.h"

/* The file at path, NUL-terminated (malloc'ed); *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

static size_t count(const char *s, const char *needle)
{
    size_t k = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) k++;
    return k;
}

/* Writes the curves and returns the number of grid lines (both panels). */
static size_t grid_lines(const double *tr, const double *te, const double *acc, size_t n, size_t *bytes)
{
    char path[64];
    snprintf(path, sizeof path, "fm_svg_test_%ld.svg", (long)getpid());
    ck_assert_int_eq(svg_write_curves(path, "t <&> t", n, tr, te, acc), 0);
    char *s = slurp(path, bytes);
    remove(path);
    ck_assert_ptr_nonnull(strstr(s, "t &lt;&amp;&gt; t"));   /* the title is escaped */
    size_t k = count(s, "stroke=\"#e0e0e0\"");
    free(s);
    return k;
}

START_TEST(ordinary_curves_get_a_few_ticks)
{
    /* loss 0.25..2.25: range 2 / 5 ticks = 0.4, rounded to a step of 0.5, lines at 0, 0.5, .., 2.5 (6);
     * accuracy 0.5..1: step 0.1, lines at 0.5, 0.6, .., 1 (6) */
    double tr[3] = {2.25, 1.0, 0.25}, te[3] = {2.0, 1.25, 0.5}, acc[3] = {0.5, 0.75, 1.0};
    size_t bytes;
    ck_assert_uint_eq(grid_lines(tr, te, acc, 3, &bytes), 6 + 6);
}
END_TEST

START_TEST(flat_and_missing_values_are_drawn)
{
    double flat[2] = {1.0, 1.0}, nan2[2] = {NAN, INFINITY};
    size_t bytes;
    size_t k = grid_lines(flat, flat, nan2, 2, &bytes);
    ck_assert_uint_ge(k, 2);
    ck_assert_uint_le(k, 30);
}
END_TEST

/* Values one ulp apart at 1e7 (or equal at 2^52 + 1, where +-0.5 changes nothing) once made a tick
 * step below half an ulp: the tick loop never ended and filled the disk. */
START_TEST(nearly_equal_large_values_finish)
{
    /* a regression is then killed (SIGXFSZ) at 1 MB instead of filling the disk until the timeout */
    struct rlimit cap = {1 << 20, 1 << 20};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &cap), 0);
    const double cases[][2] = {
        {1e7, 0x1.312d000000001p+23},                 /* 1e7 and the next double */
        {4503599627370497.0, 4503599627370497.0},     /* 2^52 + 1 */
        {-1e300, 1e300},                              /* a range that overflows */
        {1e308, 1e308},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double tr[1] = {cases[c][0]}, te[1] = {cases[c][1]}, acc[1] = {0.5};
        size_t bytes;
        size_t k = grid_lines(tr, te, acc, 1, &bytes);
        ck_assert_msg(k <= 30 && bytes < 20000, "case %zu: %zu grid lines, %zu bytes", c, k, bytes);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fm_svg");
    TCase *tc = tcase_create("svg");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, ordinary_curves_get_a_few_ticks);
    tcase_add_test(tc, flat_and_missing_values_are_drawn);
    tcase_add_test(tc, nearly_equal_large_values_finish);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(suite)

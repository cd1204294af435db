/*
 * test_tape_edges.c - input checks of the tape and the parameter store that the other suites do
 * not reach: a tensor that belongs to no tape and is no parameter, UTF-8 names at the edges of
 * each encoded length (overlong forms are refused, the shortest ones accepted), and gradcheck's
 * numeric derivative against the step actually taken.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* An ag_tensor made by hand (tape NULL, no AG_PARAM) is neither recorded nor a parameter: an op
 * must refuse it rather than read it as a constant. */
START_TEST(tapeless_non_parameter_is_refused) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real buf[4] = {1, 2, 3, 4};
    ag_tensor fake;
    memset(&fake, 0, sizeof fake);
    fake.value = buf;
    fake.size = 4;
    fake.ndim = 1;
    fake.shape[0] = 4;
    for (int i = 1; i < AG_MAX_DIMS; i++) fake.shape[i] = 1;
    ag_tensor *a = ag_tensor_new(t, 1, (size_t[]){4});
    ck_assert_ptr_null(ag_add(t, a, &fake));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_ARG);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "input 1 is neither a tape tensor nor a parameter"), "%s",
                  ag_tape_errmsg(t));
    ag_tape_free(t);
}
END_TEST

/* UTF-8 (RFC 3629): a code point must use its shortest form. Overlong 3- and 4-byte sequences
 * are refused like the overlong 2-byte ones; the smallest code point of each length and
 * U+10FFFF are accepted. */
START_TEST(utf8_names_at_the_length_edges) {
    static const struct {
        const char *name;
        int ok;
    } cases[] = {
        {"a\xe0\x80\xaf", 0},      /* '/' in 3 bytes */
        {"\xe0\x9f\xbf", 0},       /* U+07FF in 3 bytes */
        {"\xe0\xa0\x80", 1},       /* U+0800, the first 3-byte code point */
        {"\xf0\x80\x80\xaf", 0},   /* '/' in 4 bytes */
        {"\xf0\x8f\xbf\xbf", 0},   /* U+FFFF in 4 bytes */
        {"\xf0\x90\x80\x80", 1},   /* U+10000, the first 4-byte code point */
        {"\xf4\x8f\xbf\xbf", 1},   /* U+10FFFF, the last */
        {"\xdf\xbf", 1},           /* U+07FF, the last 2-byte code point */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_params *ps;
        ag_tensor *x;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ag_status st = ag_params_add(ps, cases[i].name, 1, (size_t[]){1}, 0, &x);
        ck_assert_msg((st == AG_OK) == cases[i].ok, "case %zu: status %d (%s)", i, (int)st, ag_params_errmsg(ps));
        if (!cases[i].ok) ck_assert_ptr_nonnull(strstr(ag_params_errmsg(ps), "not valid UTF-8"));
        ag_params_free(ps);
    }
}
END_TEST

/* ---------------------------------------------------------------- gradcheck */

static ag_tensor *sum_loss(ag_tape *t, void *ctx) { return ag_sum(t, (ag_tensor *)ctx); }
static ag_tensor *cube_loss(ag_tape *t, void *ctx) {
    ag_tensor *w = ctx;
    return ag_sum(t, ag_mul(t, w, ag_mul(t, w, w)));
}

/* numeric = (f(w+) - f(w-)) / (w+ - w-) with the perturbed values as stored: for f = w the
 * quotient is exactly 1 whatever the rounding of w +- eps. At w = 1000.3 (float spacing 6.1e-5)
 * the step really taken differs from 2 eps = 0.02 by up to 3e-3 relative, and in double by about
 * 1e-12: dividing by 2 eps would show that as an error. */
START_TEST(gradcheck_divides_by_the_step_taken) {
    static const double values[] = {1000.3, -517.77, 3.3};
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
        ag_params *ps;
        ag_tensor *w;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){1}, 0, &w), AG_OK);
        w->value[0] = (ag_real)values[k];
        w->grad[0] = 7; /* left over: gradcheck zeroes the gradients of wrt before its backward */
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_gradcheck_result res;
        ck_assert_int_eq(ag_gradcheck(t, sum_loss, w, &w, 1, 1e-2, &res), AG_OK);
        ck_assert_uint_eq(res.n_checked, 1);
        ck_assert_msg(res.max_rel_err < 1e-15 && res.max_abs_err < 1e-15, "w = %g: rel %g abs %g (%.17g vs %.17g)",
                      values[k], res.max_rel_err, res.max_abs_err, res.analytic, res.numeric);
        ck_assert_double_eq(w->grad[0], 1); /* the analytic gradient is left in ->grad */
        ck_assert(w->value[0] == (ag_real)values[k]); /* restored exactly */
        ag_tape_free(t);
        ag_params_free(ps);
    }
}
END_TEST

/* rel = |analytic - numeric| / max(|analytic|, |numeric|, 1): below 1 it is the absolute error.
 * f = sum w^3 at w = {0, 2}: analytic {0, 12}; numeric ((w+e)^3 - (w-e)^3) / 2e = 3 w^2 + e^2,
 * so the error is e^2 = 1e-4 at both (rel 1e-4 at w = 0, not 1; 1e-4/12 at w = 2), and the worst
 * element is w = 0. */
START_TEST(gradcheck_error_measure) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, 0, &w), AG_OK);
    w->value[0] = 0;
    w->value[1] = 2;
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ck_assert_int_eq(ag_gradcheck(t, cube_loss, w, &w, 1, 1e-2, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 2);
    ck_assert_uint_eq(res.worst_tensor, 0);
    ck_assert_uint_eq(res.worst_index, 0);
    ck_assert_double_eq_tol(res.analytic, 0, 1e-12);
    /* float: e = 1e-2 is rounded when stored, and f in float carries ~1e-7 * 8 / 0.02 of noise */
    const double tol = sizeof(ag_real) == 4 ? 2e-5 : 1e-10;
    ck_assert_double_eq_tol(res.numeric, 1e-4, tol);
    ck_assert_double_eq_tol(res.max_rel_err, 1e-4, tol);
    ck_assert_double_eq_tol(res.max_abs_err, 1e-4, tol);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

static Suite *tape_edges_suite(void) {
    Suite *s = suite_create("tape_edges");
    TCase *tc = tcase_create("tape_edges");
    tcase_add_test(tc, tapeless_non_parameter_is_refused);
    tcase_add_test(tc, utf8_names_at_the_length_edges);
    tcase_add_test(tc, gradcheck_divides_by_the_step_taken);
    tcase_add_test(tc, gradcheck_error_measure);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(tape_edges_suite)

/*
 * test_tape_edges.c - input checks of the tape and the parameter store that the other suites do
 * not reach: a tensor that belongs to no tape and is no parameter, UTF-8 names at the edges of
 * each encoded length (overlong forms are refused, the shortest ones accepted), gradcheck's
 * numeric derivative against the step actually taken, views of parameters whose store moved, and
 * op functions that record an error yet return AG_OK.
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

/* A view of a parameter (reshape, or a user op whose shape() points its value into an input)
 * shares the store's memory. When the store moves its buffers afterwards (adding a parameter grows
 * them), the view's pointer would dangle: ops and backward must refuse it, and a reset tape records
 * again with the right values. A user's view op, for the engine's generic aliasing rule. */
static ag_status first_row_shape(ag_node *n) {
    ag_status st = ag_node_set_shape(n, 1, (size_t[]){n->in[0]->shape[1]});
    n->out.value = n->in[0]->value; /* a view: row 0 */
    return st;
}
static ag_status first_row_forward(ag_node *n) {
    (void)n;
    return AG_OK;
}
static ag_status first_row_backward(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t j = 0; j < n->out.size; j++) n->in[0]->grad[j] += n->out.grad[j];
    return AG_OK;
}
static const ag_op first_row_op = {"first_row", 1, 0, first_row_shape, first_row_forward, first_row_backward};

START_TEST(views_of_moved_parameters_are_refused) {
    /* op after the move; backward after it; view of a view; user op; W removed by truncate */
    for (int how = 0; how < 5; how++) {
        ag_params *ps;
        ag_tape *t;
        ag_tensor *W, *V;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){2, 3}, 0, &W), AG_OK);
        for (int i = 0; i < 6; i++) W->value[i] = (ag_real)(i + 1);
        ag_tensor *view = how == 3 ? ag_call(t, &first_row_op, &W, 1, NULL) : ag_reshape(t, W, 1, (size_t[]){6});
        if (how == 2) view = ag_reshape(t, view, 2, (size_t[]){3, 2});
        ck_assert_ptr_nonnull(view);
        ag_tensor *J = how == 1 ? ag_sum(t, ag_mul(t, view, view)) : NULL;
        const char *maker = how == 3 ? "first_row" : "reshape";
        char want[160];
        if (how == 4) { /* W itself is gone: the check must not read it */
            ck_assert_int_eq(ag_params_truncate(ps, 0), AG_OK);
            ck_assert_ptr_null(ag_neg(t, view));
            snprintf(want, sizeof want, "neg: a view of a parameter (the result of %s) was recorded before its "
                                        "store moved its buffers", maker);
            ck_assert_msg(strstr(ag_tape_errmsg(t), want), "%s", ag_tape_errmsg(t));
            ag_tape_free(t);
            ag_params_free(ps);
            continue;
        }
        const ag_real *old_values = ag_params_values(ps);
        ck_assert_int_eq(ag_params_add(ps, "V", 2, (size_t[]){64, 64}, 0, &V), AG_OK);
        ck_assert_ptr_ne(ag_params_values(ps), old_values); /* the buffers did move */
        snprintf(want, sizeof want, "%s: a view of a parameter (the result of %s) was recorded before its store "
                                    "moved its buffers", how == 1 ? "backward" : "mul", maker);
        if (how == 1) ck_assert_int_eq(ag_backward(t, J), AG_ERR_STATE);
        else ck_assert_ptr_null(ag_mul(t, view, view));
        ck_assert_int_eq(ag_tape_status(t), AG_ERR_STATE);
        ck_assert_msg(strstr(ag_tape_errmsg(t), want), "%s", ag_tape_errmsg(t));
        /* recorded again after a reset: the view reads W where it is now, and W's gradient is 2 W */
        ag_tape_reset(t);
        view = how == 3 ? ag_call(t, &first_row_op, &W, 1, NULL) : ag_reshape(t, W, 1, (size_t[]){6});
        J = ag_sum(t, ag_mul(t, view, view));
        ck_assert_ptr_nonnull(J);
        size_t n = how == 3 ? 3 : 6;
        double sum_sq = 0;
        for (size_t i = 0; i < n; i++) sum_sq += (i + 1.0) * (i + 1.0);
        ck_assert_double_eq_tol((double)J->value[0], sum_sq, 1e-9);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        for (size_t i = 0; i < 6; i++)
            ck_assert_double_eq_tol((double)W->grad[i], i < n ? 2.0 * (double)(i + 1) : 0.0, 1e-9);
        ag_tape_free(t);
        ag_params_free(ps);
    }
}
END_TEST

/* A view of a tape tensor is no parameter view, and a parameter used directly (not as a view) reads
 * the store where it is when the op runs: neither is refused after the store moves. */
START_TEST(moved_store_leaves_other_results_alone) {
    ag_params *ps;
    ag_tape *t;
    ag_tensor *W, *V;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 1, (size_t[]){4}, 0, &W), AG_OK);
    for (int i = 0; i < 4; i++) W->value[i] = (ag_real)(i + 1);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){4}, (ag_real[]){1, 1, 1, 1});
    ag_tensor *xv = ag_reshape(t, x, 2, (size_t[]){2, 2});
    ag_tensor *p = ag_mul(t, W, x); /* W used directly */
    ck_assert_int_eq(ag_params_add(ps, "V", 2, (size_t[]){64, 64}, 0, &V), AG_OK);
    ag_tensor *J = ag_add(t, ag_sum(t, ag_mul(t, xv, xv)), ag_sum(t, p));
    ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
    ck_assert_double_eq_tol((double)J->value[0], 4.0 + 10.0, 1e-9);
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol((double)W->grad[i], 1.0, 1e-9);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* An op function that records an error with ag_node_fail has failed, even if it then returns AG_OK:
 * the tape must not hold a result (or finish a backward) while its status says otherwise. */
static ag_status same_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status fail_forward(ag_node *n) {
    ag_node_fail(n, AG_ERR_NUMERIC, "forward found %d bad values", 3);
    return AG_OK;
}
static ag_status copy_forward(ag_node *n) {
    memcpy(n->out.value, n->in[0]->value, n->out.size * sizeof(ag_real));
    return AG_OK;
}
static ag_status fail_backward(ag_node *n) {
    ag_node_fail(n, AG_ERR_NUMERIC, "backward found a bad value");
    return AG_OK;
}
static const ag_op fail_fwd_op = {"fails_forward", 1, 0, same_shape, fail_forward, NULL};
static const ag_op fail_bwd_op = {"fails_backward", 1, 0, same_shape, copy_forward, fail_backward};

START_TEST(node_fail_fails_the_op_whatever_it_returns) {
    ag_params *ps;
    ag_tape *t;
    ag_tensor *W;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 1, (size_t[]){3}, 0, &W), AG_OK);
    ck_assert_ptr_null(ag_call(t, &fail_fwd_op, &W, 1, NULL));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NUMERIC);
    ck_assert_str_eq(ag_tape_errmsg(t), "fails_forward: forward found 3 bad values");
    ag_tape_reset(t);
    ag_tensor *J = ag_sum(t, ag_call(t, &fail_bwd_op, &W, 1, NULL));
    ck_assert_ptr_nonnull(J);
    ck_assert_int_eq(ag_backward(t, J), AG_ERR_NUMERIC);
    ck_assert_str_eq(ag_tape_errmsg(t), "fails_backward: backward found a bad value");
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* identity whose backward puts NaN into element 1 of the gradient: the analytic side is NaN there
 * while the numeric one is 1, so that element is the worst one, with an infinite error */
static ag_status nan_at_1_backward(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) n->in[0]->grad[i] += i == 1 ? (ag_real)NAN : n->out.grad[i];
    return AG_OK;
}
static const ag_op nan_at_1_op = {"nan_at_1", 1, 0, same_shape, copy_forward, nan_at_1_backward};
static ag_tensor *nan_grad_loss(ag_tape *t, void *ctx) {
    return ag_sum(t, ag_call(t, &nan_at_1_op, (ag_tensor *[]){ctx}, 1, NULL));
}

START_TEST(gradcheck_reports_a_nan_gradient) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 0, &w), AG_OK);
    for (int i = 0; i < 3; i++) w->value[i] = (ag_real)(i + 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ck_assert_int_eq(ag_gradcheck(t, nan_grad_loss, w, &w, 1, 1e-2, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 3);
    ck_assert(isinf(res.max_rel_err) && res.max_rel_err > 0);
    ck_assert(isinf(res.max_abs_err) && res.max_abs_err > 0);
    ck_assert_uint_eq(res.worst_index, 1);
    ck_assert(isnan(res.analytic));
    ck_assert_double_eq_tol(res.numeric, 1, 1e-4);
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
    tcase_add_test(tc, gradcheck_reports_a_nan_gradient);
    tcase_add_test(tc, gradcheck_error_measure);
    tcase_add_test(tc, views_of_moved_parameters_are_refused);
    tcase_add_test(tc, moved_store_leaves_other_results_alone);
    tcase_add_test(tc, node_fail_fails_the_op_whatever_it_returns);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(tape_edges_suite)

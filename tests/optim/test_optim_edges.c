/*
 * test_optim_edges.c - optimizer and schedule cases the two-step examples in test_optim.c do not
 * reach: a store whose last tensor fills its alignment (no zero padding at the end of the flat
 * buffers), an eps large enough to tell where Adam adds it, schedule boundaries. Expected values
 * are worked out by hand in the comments (optim.h's formulas), not produced by the code.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/optim.h>
#include "testutil.h"

#ifdef AG_DOUBLE
#define TOL 1e-12
#else
#define TOL 1e-6
#endif

/* elements per AG_ALIGN bytes: a tensor of exactly this size leaves no padding behind it */
#define FULL ((size_t)(AG_ALIGN / sizeof(ag_real)))

static ag_optim *make_opt(ag_params *ps, ag_optim_config cfg) {
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ck_assert_msg(ag_optim_new(&opt, ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    return opt;
}

/* w = {1, -2} (AG_DECAY), then v with FULL elements, all 0: v's last element is the last element
 * of the flat buffers. */
static ag_params *store_ending_full(ag_tensor **w, ag_tensor **v) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, AG_DECAY, w), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "v", 1, (size_t[]){FULL}, 0, v), AG_OK);
    (*w)->value[0] = 1;
    (*w)->value[1] = -2;
    ck_assert_ptr_eq((*v)->value + FULL, ag_params_values(ps) + ag_params_numel(ps));
    return ps;
}

/* The global norm covers every element, the very last one included: with padding behind every
 * tensor, a loop one short would go unnoticed anywhere else. */
START_TEST(clip_norm_counts_the_last_element) {
    ag_tensor *w, *v;
    ag_params *ps = store_ending_full(&w, &v);
    w->grad[0] = 3;
    w->grad[1] = 4;
    v->grad[FULL - 1] = 12; /* norm sqrt(9 + 16 + 144) = 13 */
    ck_assert_double_eq_tol(ag_grad_norm(ps), 13, 1e-6);
    ck_assert_double_eq_tol(ag_clip_grad_norm(ps, 6.5), 13, 1e-6); /* scale 1/2 */
    ck_assert_double_eq_tol(w->grad[0], 1.5, 1e-6);
    ck_assert_double_eq_tol(v->grad[FULL - 1], 6, 1e-6);
    ag_params_zero_grad(ps);

    /* the only nonzero gradient is the last element: norm 5 > 1, so the step is 1 * 5 / 5 */
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 1, .clip_norm = 1});
    v->grad[FULL - 1] = 5;
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(ag_optim_grad_norm(opt), 5, 1e-6);
    ck_assert_double_eq_tol(v->value[FULL - 1], -1, 1e-6);
    ck_assert_double_eq(w->value[0], 1);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* A NaN in the last element of the flat buffers is refused like any other (no clipping: the
 * finiteness scan alone guards the weights), and nothing moves. */
START_TEST(nonfinite_last_element_is_refused) {
    for (int k = 0; k < 3; k++) {
        ag_tensor *w, *v;
        ag_params *ps = store_ending_full(&w, &v);
        ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = (ag_optim_kind)(k == 0 ? AG_OPT_SGD
                                                                               : k == 1 ? AG_OPT_MOMENTUM
                                                                                        : AG_OPT_ADAM),
                                                       .lr = 0.1});
        w->grad[0] = 1;
        v->grad[FULL - 1] = k == 1 ? (ag_real)INFINITY : (ag_real)NAN;
        ck_assert_int_eq(ag_optim_step(opt), AG_ERR_NUMERIC);
        ck_assert_double_eq(w->value[0], 1);
        ck_assert_uint_eq(ag_optim_steps(opt), 0);
        ag_optim_free(opt);
        ag_params_free(ps);
    }
}
END_TEST

/* w -= alpha mhat / (sqrt(vhat) + eps): eps outside the root. With eps = 0.5, step 1 on
 * g = {0.5, 1.0}: mhat = g, sqrt(vhat) = |g| = {0.5, 1}, so
 * w = {1 - 0.1 * 0.5 / 1.0, -2 - 0.1 * 1 / 1.5} = {0.95, -2.0666666666667}
 * (eps inside, sqrt(vhat + eps), would give 1 - 0.05 / sqrt(0.75) = 0.94226). Step 2 on
 * g = {0.25, -0.5}: m = {0.07, 0.04}, v = {0.00031225, 0.001249} (test_optim's adam_two_steps);
 * mhat = {0.36842105263158, 0.21052631578947}, sqrt(vhat) = {0.39522538070167, 0.79045076140333};
 * w0 = 0.95 - 0.1 * 0.36842105263158 / 0.89522538070167 = 0.90884600006059
 * w1 = -2.0666666666667 - 0.1 * 0.21052631578947 / 1.29045076140333 = -2.08298083548939 */
START_TEST(adam_eps_is_added_outside_the_root) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, 0, &w), AG_OK);
    w->value[0] = 1;
    w->value[1] = -2;
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.1, .eps = 0.5});
    w->grad[0] = 0.5f;
    w->grad[1] = 1;
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(w->value[0], 0.95, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.0666666666667, 1e-6);
    w->grad[0] = 0.25f;
    w->grad[1] = -0.5f;
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(w->value[0], 0.90884600006059, 1e-6);
    ck_assert_double_eq_tol(w->value[1], -2.08298083548939, 1e-6);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* An op that passes its input through and fails in backward: a sweep that breaks partway. */
static ag_status pass_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status pass_forward(ag_node *n) {
    memcpy(n->out.value, n->in[0]->value, n->out.size * sizeof(ag_real));
    return AG_OK;
}
static ag_status fail_backward(ag_node *n) { return ag_node_fail(n, AG_ERR_ARG, "planted failure"); }
static const ag_op FAIL_OP = {"fail_in_backward", 1, 0, pass_shape, pass_forward, fail_backward};

static ag_params *pair_store(ag_tensor **a, ag_tensor **b, ag_tensor **c) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "a", 1, (size_t[]){2}, 0, a), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){2}, 0, b), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "c", 1, (size_t[]){2}, 0, c), AG_OK);
    const ag_real a0[2] = {1, 2}, b0[2] = {3, -1}, c0[2] = {4, 5};
    memcpy((*a)->value, a0, sizeof a0);
    memcpy((*b)->value, b0, sizeof b0);
    memcpy((*c)->value, c0, sizeof c0);
    return ps;
}

/* Fused step (ag_optim_backward_step), SGD alpha 0.5, loss sum(a .* b): da = b, db = a.
 * c is not in the loss but holds {1, 1} from an earlier ag_backward of sum(c): like the two-pass
 * step it moves by -alpha {1, 1} = {3.5, 4.5}, and its ->grad is left zeroed (optim.h), so a second
 * step does not move it again.
 * step 1: a = {1 - 1.5, 2 + 0.5} = {-0.5, 2.5};  b = {3 - 0.5, -1 - 1} = {2.5, -2}
 * step 2: a = {-0.5 - 1.25, 2.5 + 1} = {-1.75, 3.5};  b = {2.5 + 0.25, -2 - 1.25} = {2.75, -3.25} */
START_TEST(fused_step_moves_and_clears_an_undelivered_gradient) {
    ag_tensor *a, *b, *c;
    ag_params *ps = pair_store(&a, &b, &c);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5});
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, c)), AG_OK); /* leaves c->grad = {1, 1} */
    const double want_a[2][2] = {{-0.5, 2.5}, {-1.75, 3.5}}, want_b[2][2] = {{2.5, -2}, {2.75, -3.25}};
    for (int step = 0; step < 2; step++) {
        ag_tape_reset(t);
        ag_tensor *loss = ag_sum(t, ag_mul(t, a, b));
        ck_assert_int_eq(ag_optim_backward_step(opt, t, loss), AG_OK);
        for (int i = 0; i < 2; i++) {
            ck_assert_double_eq_tol(a->value[i], want_a[step][i], TOL);
            ck_assert_double_eq_tol(b->value[i], want_b[step][i], TOL);
            ck_assert_double_eq_tol(c->value[i], 3.5 + i, TOL);
        }
        const ag_real *g = ag_params_grads(ps);
        for (size_t i = 0; i < ag_params_numel(ps); i++)
            ck_assert_msg(g[i] == 0, "step %d: grad[%zu] = %g", step, i, (double)g[i]);
    }
    ck_assert_uint_eq(ag_optim_steps(opt), 2);
    ag_tape_free(t);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* A fused sweep that fails after delivering b: b is already updated with step 1's constants, so
 * the step counts (else the next step would run with t = 1 again: Adam's bias correction, the
 * schedule); a, behind the failing op, is untouched. loss = sum(b .* pass(a)): db = a = {1, 2},
 * b = {3 - 0.5, -1 - 1} = {2.5, -2}. */
START_TEST(fused_step_failing_midway_counts_the_step) {
    ag_tensor *a, *b, *c;
    ag_params *ps = pair_store(&a, &b, &c);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5});
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *loss = ag_sum(t, ag_mul(t, b, ag_call(t, &FAIL_OP, (ag_tensor *[]){a}, 1, NULL)));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ag_optim_backward_step(opt, t, loss), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ag_optim_errmsg(opt), "planted failure"));
    ck_assert_double_eq_tol(b->value[0], 2.5, TOL);
    ck_assert_double_eq_tol(b->value[1], -2, TOL);
    ck_assert_double_eq(a->value[0], 1);
    ck_assert_double_eq(a->value[1], 2);
    ck_assert_uint_eq(ag_optim_steps(opt), 1);
    ag_tape_free(t);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

static Suite *optim_edges_suite(void) {
    Suite *s = suite_create("optim_edges");
    TCase *tc = tcase_create("optim_edges");
    tcase_add_test(tc, clip_norm_counts_the_last_element);
    tcase_add_test(tc, nonfinite_last_element_is_refused);
    tcase_add_test(tc, adam_eps_is_added_outside_the_root);
    tcase_add_test(tc, fused_step_moves_and_clears_an_undelivered_gradient);
    tcase_add_test(tc, fused_step_failing_midway_counts_the_step);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(optim_edges_suite)

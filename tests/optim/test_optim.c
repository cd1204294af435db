/*
 * test_optim.c - optimizers against two-step examples worked out by hand (numbers in the
 * comments, not produced by the code under test), decay on weights only, decoupled decay equal
 * to L2 in the cost for SGD, clipping, schedules, zero_grad, state round trip for resuming, and
 * a steady-state step that allocates nothing.
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

/* A store with w (2 elements, AG_DECAY) = {1, -2} and, optionally, b (2 elements) = {3, 4}. */
static ag_params *make_store(ag_tensor **w, ag_tensor **b) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, AG_DECAY, w), AG_OK);
    if (b) ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){2}, 0, b), AG_OK);
    (*w)->value[0] = 1;
    (*w)->value[1] = -2;
    if (b) {
        (*b)->value[0] = 3;
        (*b)->value[1] = 4;
    }
    return ps;
}

static void set_grad(ag_tensor *x, double g0, double g1) {
    x->grad[0] = (ag_real)g0;
    x->grad[1] = (ag_real)g1;
}

static ag_optim *make_opt(ag_params *ps, ag_optim_config cfg) {
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ck_assert_msg(ag_optim_new(&opt, ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    return opt;
}

/* Two steps with g1 = {0.5, 1.0} then g2 = {0.25, -0.5}, from w0 = {1, -2}. */
static void two_steps(ag_optim *opt, ag_tensor *w) {
    set_grad(w, 0.5, 1.0);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    set_grad(w, 0.25, -0.5);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
}

START_TEST(sgd_two_steps) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1});
    two_steps(opt, w);
    /* w1 = {1 - 0.05, -2 - 0.1} = {0.95, -2.1};  w2 = {0.95 - 0.025, -2.1 + 0.05} = {0.925, -2.05} */
    ck_assert_double_eq_tol(w->value[0], 0.925, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.05, TOL);
    ck_assert_uint_eq(ag_optim_steps(opt), 2);
    ck_assert_uint_eq(ag_optim_state_count(opt), 0);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(momentum_two_steps) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.1, .momentum = 0.9});
    two_steps(opt, w);
    /* step 1: v = g1 = {0.5, 1.0};  w = {1 - 0.05, -2 - 0.1} = {0.95, -2.1}
     * step 2: v = 0.9 {0.5, 1.0} + {0.25, -0.5} = {0.70, 0.40};
     *         w = {0.95 - 0.070, -2.1 - 0.040} = {0.88, -2.14} */
    ck_assert_double_eq_tol(w->value[0], 0.88, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.14, TOL);
    const char *name;
    ag_real *v;
    size_t n;
    ck_assert_int_eq(ag_optim_state(opt, 0, &name, &v, &n), AG_OK);
    ck_assert_str_eq(name, "velocity");
    ck_assert_uint_eq(n, ag_params_numel(ps));
    ck_assert_double_eq_tol(v[0], 0.70, TOL);
    ck_assert_double_eq_tol(v[1], 0.40, TOL);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* Zero fields take the documented defaults (optim.h): momentum 0.9, and Adam's eps 1e-8, seen in
 * the updates. Momentum: the same two steps as momentum_two_steps. Adam, one step from w = 0 with
 * g = 1e-8 and lr 1: m_hat = g, v_hat = g^2, so w = -g / (|g| + eps) = -0.5 with eps = 1e-8. */
START_TEST(zero_fields_take_the_defaults) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.1});
    ck_assert_double_eq(ag_optim_get_config(opt)->momentum, 0.9);
    two_steps(opt, w);
    ck_assert_double_eq_tol(w->value[0], 0.88, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.14, TOL);
    ag_optim_free(opt);
    opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 1});
    const ag_optim_config *c = ag_optim_get_config(opt);
    ck_assert_double_eq(c->beta1, 0.9);
    ck_assert_double_eq(c->beta2, 0.999);
    ck_assert_double_eq(c->eps, 1e-8);
    w->value[0] = w->value[1] = 0;
    set_grad(w, 1e-8, -1e-8);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(w->value[0], -0.5, 1e-5);
    ck_assert_double_eq_tol(w->value[1], 0.5, 1e-5);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(nesterov_two_steps) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_NESTEROV, .lr = 0.1, .momentum = 0.9});
    two_steps(opt, w);
    /* step 1: v = {0.5, 1.0};  g + mu v = {0.5 + 0.45, 1.0 + 0.9} = {0.95, 1.9};
     *         w = {1 - 0.095, -2 - 0.19} = {0.905, -2.19}
     * step 2: v = {0.70, 0.40};  g + mu v = {0.25 + 0.63, -0.5 + 0.36} = {0.88, -0.14};
     *         w = {0.905 - 0.088, -2.19 + 0.014} = {0.817, -2.176} */
    ck_assert_double_eq_tol(w->value[0], 0.817, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.176, TOL);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(adam_two_steps) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.1, .beta1 = 0.9,
                                                   .beta2 = 0.999, .eps = 1e-8});
    set_grad(w, 0.5, 1.0);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    /* step 1: m = 0.1 g = {0.05, 0.1};  v = 0.001 g^2 = {0.00025, 0.001}
     *         mhat = m / 0.1 = {0.5, 1};  vhat = v / 0.001 = {0.25, 1};  sqrt = {0.5, 1}
     *         w = {1 - 0.1 * 0.5/(0.5 + 1e-8), -2 - 0.1 * 1/(1 + 1e-8)} = {0.900000002, -2.099999999} */
    ck_assert_double_eq_tol(w->value[0], 0.900000002, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.099999999, TOL);
    set_grad(w, 0.25, -0.5);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    /* step 2: m = 0.9 {0.05, 0.1} + 0.1 {0.25, -0.5} = {0.07, 0.04}
     *         v = 0.999 {0.00025, 0.001} + 0.001 {0.0625, 0.25} = {0.00031225, 0.001249}
     *         1 - 0.9^2 = 0.19;  1 - 0.999^2 = 0.001999
     *         mhat = {0.07/0.19, 0.04/0.19} = {0.36842105263158, 0.21052631578947}
     *         vhat = {0.00031225/0.001999, 0.001249/0.001999} = {0.15620310155078, 0.62481240620311}
     *         sqrt(vhat) = {0.39522538070167, 0.79045076140333}
     *         w0 = 0.900000002 - 0.1 * 0.36842105263158/0.39522538070167 = 0.80678204047746
     *         w1 = -2.099999999 - 0.1 * 0.21052631578947/0.79045076140333 = -2.12663370262910 */
    ck_assert_double_eq_tol(w->value[0], 0.80678204047746, TOL);
    ck_assert_double_eq_tol(w->value[1], -2.12663370262910, TOL);
    ck_assert_uint_eq(ag_optim_state_count(opt), 2);
    const char *name;
    ag_real *m, *v;
    ag_optim_state(opt, 0, &name, &m, NULL);
    ck_assert_str_eq(name, "adam.m");
    ag_optim_state(opt, 1, &name, &v, NULL);
    ck_assert_str_eq(name, "adam.v");
    ck_assert_double_eq_tol(m[0], 0.07, TOL);
    ck_assert_double_eq_tol(v[1], 0.001249, TOL);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(adamw_decays_weights_not_biases) {
    ag_tensor *w, *b;
    ag_params *ps = make_store(&w, &b);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAMW, .lr = 0.1, .weight_decay = 0.5});
    set_grad(w, 0.5, 1.0);
    set_grad(b, 0.5, 1.0);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    /* AdamW: w -= lr wd w = {1 - 0.05, -2 + 0.1} = {0.95, -1.9}, then the Adam step of about
     * -0.1 sign(g) (mhat / sqrt(vhat) = 1 at step 1): w = {0.85, -2.0}. b: no decay: {2.9, 3.9} */
    ck_assert_double_eq_tol(w->value[0], 0.85, 1e-6);
    ck_assert_double_eq_tol(w->value[1], -2.0, 1e-6);
    ck_assert_double_eq_tol(b->value[0], 2.9, 1e-6);
    ck_assert_double_eq_tol(b->value[1], 3.9, 1e-6);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* SGD with decay in the optimizer equals SGD on a gradient that already holds lambda W (what
 * the tape leaves when ag_l2(lambda, weights) is in the cost); the bias is decayed by neither. */
START_TEST(decoupled_decay_equals_l2_in_cost_for_sgd) {
    const double lambda = 0.3, lr = 0.2;
    for (int decoupled = 0; decoupled <= 1; decoupled++) {
        ag_tensor *w1, *b1, *w2, *b2;
        ag_params *p1 = make_store(&w1, &b1), *p2 = make_store(&w2, &b2);
        ag_optim *o1 = make_opt(p1, (ag_optim_config){.kind = AG_OPT_SGD, .lr = lr});
        ag_optim *o2 = make_opt(p2, (ag_optim_config){.kind = AG_OPT_SGD, .lr = lr, .weight_decay = lambda,
                                                      .decoupled = decoupled});
        for (int step = 0; step < 3; step++) {
            double g0 = 0.5 - 0.1 * step, g1 = -0.25 * step;
            /* cost with L2: dJ/dW = g + lambda W (the tape accumulates lambda W first: l2 is the
             * last op of the cost, so its backward runs first), dJ/db = g */
            w1->grad[0] = (ag_real)lambda * w1->value[0];
            w1->grad[1] = (ag_real)lambda * w1->value[1];
            w1->grad[0] += (ag_real)g0;
            w1->grad[1] += (ag_real)g1;
            set_grad(b1, g0, g1);
            set_grad(w2, g0, g1);
            set_grad(b2, g0, g1);
            ck_assert_int_eq(ag_optim_step(o1), AG_OK);
            ck_assert_int_eq(ag_optim_step(o2), AG_OK);
            for (int i = 0; i < 2; i++) {
                ck_assert_double_eq_tol(w1->value[i], w2->value[i], TOL);
                ck_assert_double_eq(b1->value[i], b2->value[i]);
            }
        }
        /* by hand, step 1: W := W - alpha [g + lambda W] = 1 - 0.2 (0.5 + 0.3) = 0.84;
         * b := b - alpha g = 3 - 0.2 * 0.5 = 2.9 (never decayed) -- check a fresh pair */
        ag_optim_free(o1);
        ag_optim_free(o2);
        ag_params_free(p1);
        ag_params_free(p2);
    }
    ag_tensor *w, *b;
    ag_params *ps = make_store(&w, &b);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = lr, .weight_decay = lambda});
    set_grad(w, 0.5, 0);
    set_grad(b, 0.5, 0);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(w->value[0], 0.84, TOL);
    ck_assert_double_eq_tol(w->value[1], -2 - 0.2 * (0.3 * -2), TOL); /* -1.88 */
    ck_assert_double_eq_tol(b->value[0], 2.9, TOL);
    ck_assert_double_eq_tol(b->value[1], 4.0, TOL); /* a decayed bias would be 4 - 0.2*1.2 = 3.76 */
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* The same on the tape: J = squared error + ag_l2(lambda, {W}) with plain SGD, against no L2 term
 * and weight_decay = lambda in the optimizer. z = x W^T + b on a fixed batch (K = 3). */
static void tape_sgd_run(int l2_in_cost, ag_real *out_w, ag_real *out_b) {
    const double lambda = 0.25, lr = 0.3;
    ag_params *ps;
    ag_tensor *W, *b;
    ag_params_new(&ps);
    ag_params_add(ps, "W", 2, (size_t[]){2, 3}, AG_DECAY, &W);
    ag_params_add(ps, "b", 1, (size_t[]){2}, 0, &b);
    const ag_real w0[6] = {0.5f, -1, 0.25f, 2, 0, -0.75f}, b0[2] = {1, -2};
    memcpy(W->value, w0, sizeof w0);
    memcpy(b->value, b0, sizeof b0);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = lr,
                                                   .weight_decay = l2_in_cost ? 0 : lambda});
    ag_real x[9] = {1, 2, 3, -1, 0.5f, 0, 0, -2, 1}, y[6] = {1, 0, 0, 1, 0.5f, 0.5f};
    ag_tape *t;
    ag_tape_new(&t, NULL);
    for (int step = 0; step < 3; step++) {
        ag_tape_reset(t);
        ag_tensor *z = ag_linear(t, ag_tensor_wrap(t, 2, (size_t[]){3, 3}, x), W, b);
        ag_tensor *J = ag_squared_error(t, z, ag_tensor_wrap(t, 2, (size_t[]){3, 2}, y));
        if (l2_in_cost) J = ag_add(t, J, ag_l2(t, (ag_real)lambda, &W, 1));
        ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
        ag_optim_zero_grad(opt);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    }
    memcpy(out_w, W->value, 6 * sizeof *out_w);
    memcpy(out_b, b->value, 2 * sizeof *out_b);
    ag_tape_free(t);
    ag_optim_free(opt);
    ag_params_free(ps);
}

START_TEST(decoupled_decay_equals_l2_on_tape_for_sgd) {
    ag_real w1[6], b1[2], w2[6], b2[2];
    tape_sgd_run(1, w1, b1);
    tape_sgd_run(0, w2, b2);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(w1[i], w2[i], TOL);
    for (int i = 0; i < 2; i++) ck_assert_double_eq_tol(b1[i], b2[i], TOL);
}
END_TEST

START_TEST(clip_by_global_norm) {
    ag_tensor *w, *b;
    ag_params *ps = make_store(&w, &b);
    set_grad(w, 3, 4);
    set_grad(b, 0, 12); /* global norm sqrt(9 + 16 + 144) = 13 */
    ck_assert_double_eq_tol(ag_grad_norm(ps), 13, 1e-6);
    ck_assert_double_eq_tol(ag_clip_grad_norm(ps, 20), 13, 1e-6); /* below: unchanged */
    ck_assert_double_eq(w->grad[0], 3);
    ck_assert_double_eq_tol(ag_clip_grad_norm(ps, 6.5), 13, 1e-6); /* scale 0.5 */
    ck_assert_double_eq_tol(w->grad[0], 1.5, 1e-6);
    ck_assert_double_eq_tol(w->grad[1], 2, 1e-6);
    ck_assert_double_eq_tol(b->grad[1], 6, 1e-6);
    ck_assert_double_eq_tol(ag_grad_norm(ps), 6.5, 1e-5);

    /* inside the optimizer: the step uses the clipped gradient and reports the pre-clip norm */
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 1, .clip_norm = 1});
    set_grad(w, 3, 4);
    set_grad(b, 0, 0);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ck_assert_double_eq_tol(ag_optim_grad_norm(opt), 5, 1e-6);
    ck_assert_double_eq_tol(w->value[0], 1 - 0.6, 1e-6); /* g = {3, 4} / 5 */
    ck_assert_double_eq_tol(w->value[1], -2 - 0.8, 1e-6);
    /* a non-finite gradient is refused and leaves the parameters alone */
    w->grad[0] = (ag_real)NAN;
    ck_assert_int_eq(ag_optim_step(opt), AG_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(ag_optim_errmsg(opt), "gradient norm"));
    ck_assert_double_eq_tol(w->value[1], -2.8, 1e-6);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(schedules_at_chosen_steps) {
    ag_schedule st = {.kind = AG_SCHED_STEP, .step_size = 10, .gamma = 0.5};
    ck_assert_double_eq(ag_schedule_lr(&st, 1, 0), 1);
    ck_assert_double_eq(ag_schedule_lr(&st, 1, 9), 1);
    ck_assert_double_eq(ag_schedule_lr(&st, 1, 10), 0.5);  /* 0.5^1 */
    ck_assert_double_eq(ag_schedule_lr(&st, 1, 25), 0.25); /* 0.5^2 */
    ag_schedule co = {.kind = AG_SCHED_COSINE, .total_steps = 100, .min_lr = 0};
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 0), 1, 1e-15);
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 25), 0.85355339059327, 1e-12); /* (1 + cos(pi/4))/2 */
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 50), 0.5, 1e-15);
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 100), 0, 1e-15);
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 500), 0, 1e-15); /* stays at min_lr */
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 150), 0, 1e-15); /* past T the cosine would climb again */
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 200), 0, 1e-15);
    co.min_lr = 0.1; /* 0.1 + 0.9 * 0.5 = 0.55 halfway */
    ck_assert_double_eq_tol(ag_schedule_lr(&co, 1, 50), 0.55, 1e-15);
    ck_assert_double_eq(ag_schedule_lr(&co, 1, 101), 0.1);
    /* total_steps not beyond warmup_steps: no cosine part, lr once warmed up (documented) */
    ag_schedule no_cos = {.kind = AG_SCHED_COSINE, .total_steps = 10, .warmup_steps = 10, .min_lr = 0.1};
    ck_assert_double_eq_tol(ag_schedule_lr(&no_cos, 1, 4), 0.5, 1e-15); /* warm-up: 5/10 */
    ck_assert_double_eq(ag_schedule_lr(&no_cos, 1, 10), 1);
    ck_assert_double_eq(ag_schedule_lr(&no_cos, 1, 1000), 1);
    ag_schedule wu = {.kind = AG_SCHED_COSINE, .total_steps = 110, .warmup_steps = 10};
    ck_assert_double_eq_tol(ag_schedule_lr(&wu, 2, 0), 0.2, 1e-15);  /* 2 * 1/10 */
    ck_assert_double_eq_tol(ag_schedule_lr(&wu, 2, 9), 2, 1e-15);    /* 2 * 10/10 */
    ck_assert_double_eq_tol(ag_schedule_lr(&wu, 2, 10), 2, 1e-15);   /* cosine starts */
    ck_assert_double_eq_tol(ag_schedule_lr(&wu, 2, 60), 1, 1e-15);   /* halfway of 100 */
    ag_schedule cst = {0};
    ck_assert_double_eq(ag_schedule_lr(&cst, 0.3, 12345), 0.3);

    /* the optimizer follows its schedule by its step counter */
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 1, .schedule = st});
    for (int i = 0; i < 10; i++) {
        ck_assert_double_eq(ag_optim_lr(opt), 1);
        set_grad(w, 0, 0);
        ag_optim_step(opt);
    }
    ck_assert_double_eq(ag_optim_lr(opt), 0.5);
    set_grad(w, 1, 0);
    ag_optim_step(opt); /* w0 = 1 - 0.5 */
    ck_assert_double_eq_tol(w->value[0], 0.5, TOL);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

START_TEST(zero_grad_clears_everything) {
    ag_tensor *w, *b;
    ag_params *ps = make_store(&w, &b);
    ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_SGD, .lr = 1});
    set_grad(w, 1, 2);
    set_grad(b, 3, 4);
    ag_optim_zero_grad(opt);
    const ag_real *g = ag_params_grads(ps);
    for (size_t i = 0; i < ag_params_numel(ps); i++) ck_assert_double_eq(g[i], 0);
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* Weight decay through momentum, Nesterov and Adam, coupled (lambda w added to g before the
 * statistics) and decoupled (w -= alpha lambda w, outside them), on w = {1, -2} (AG_DECAY) and
 * b = {3, 4} (never decayed), g1 = {0.5, 1.0} then g2 = {0.25, -0.5} on both, alpha 0.1,
 * mu 0.9, lambda 0.5. By hand (optim.h, UPDATES):
 * momentum, coupled:   g = {1.0, 0.0}; v = {1.0, 0}; w = {0.9, -2.0}
 *                      g = {0.25 + 0.45, -0.5 - 1.0} = {0.7, -1.5}; v = {1.6, -1.5}; w = {0.74, -1.85}
 * momentum, decoupled: w = {0.95, -1.9}; v = {0.5, 1.0}; w = {0.90, -2.0}
 *                      w = {0.855, -1.9}; v = {0.7, 0.4}; w = {0.785, -1.94}
 * Nesterov, coupled:   v = {1.0, 0}; w -= 0.1 {1.9, 0} = {0.81, -2.0}
 *                      g = {0.655, -1.5}; v = {1.555, -1.5}; g + mu v = {2.0545, -2.85}; w = {0.60455, -1.715}
 * Nesterov, decoupled: w = {0.95, -1.9}; v = {0.5, 1.0}; w -= 0.1 {0.95, 1.9} = {0.855, -2.09}
 *                      w = {0.81225, -1.9855}; v = {0.7, 0.4}; w -= 0.1 {0.88, -0.14} = {0.72425, -1.9715}
 * Adam, coupled:       g = {1.0, 0.0}: mhat = {1, 0}, vhat = {1, 0}; w = {1 - 0.1/(1 + 1e-8), -2} = {0.900000001, -2}
 *                      g = {0.7000000005, -1.5}; m = {0.16000000005, -0.15}; v = {0.0014890000007, 0.00225};
 *                      mhat = m/0.19, vhat = v/0.001999: w = {0.900000001 - 0.1 (0.842105263)/(0.863059...),
 *                      -2 + 0.1 (0.789473684)/(1.060925...)} = {0.802427952073, -1.925586318345}
 * Adam, decoupled (AdamW): w = {0.95, -1.9} - 0.1 {0.5/(0.5+1e-8), 1/(1+1e-8)} = {0.850000002, -1.999999999};
 *                      w = {0.8075000019, -1.899999999} - 0.1 {0.36842105263158/0.39522538070167,
 *                      0.21052631578947/0.79045076140333} (adam_two_steps' step 2) = {0.714282040377, -1.926633702679}
 * b, no decay: momentum {2.88, 3.86}; Nesterov {2.817, 3.824}; Adam {2.806782040477, 3.873366297371}. */
START_TEST(weight_decay_modes_two_steps) {
    static const struct {
        ag_optim_kind kind;
        int decoupled;
        double w[2], b[2];
    } cases[] = {
        {AG_OPT_MOMENTUM, 0, {0.74, -1.85}, {2.88, 3.86}},
        {AG_OPT_MOMENTUM, 1, {0.785, -1.94}, {2.88, 3.86}},
        {AG_OPT_NESTEROV, 0, {0.60455, -1.715}, {2.817, 3.824}},
        {AG_OPT_NESTEROV, 1, {0.72425, -1.9715}, {2.817, 3.824}},
        {AG_OPT_ADAM, 0, {0.802427952073, -1.925586318345}, {2.806782040477, 3.873366297371}},
        {AG_OPT_ADAM, 1, {0.714282040377, -1.926633702679}, {2.806782040477, 3.873366297371}},
        {AG_OPT_ADAMW, 0, {0.714282040377, -1.926633702679}, {2.806782040477, 3.873366297371}}, /* always decoupled */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_tensor *w, *b;
        ag_params *ps = make_store(&w, &b);
        ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = cases[c].kind, .lr = 0.1, .momentum = 0.9,
                                                       .weight_decay = 0.5, .decoupled = cases[c].decoupled});
        set_grad(w, 0.5, 1.0);
        set_grad(b, 0.5, 1.0);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
        set_grad(w, 0.25, -0.5);
        set_grad(b, 0.25, -0.5);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
        for (int i = 0; i < 2; i++) {
            /* 1e-11: the hand values carry 12 digits */
            const double tol = TOL > 1e-11 ? TOL : 1e-11;
            ck_assert_msg(fabs((double)w->value[i] - cases[c].w[i]) <= tol, "case %zu: w[%d] = %.15g, want %.15g", c, i,
                          (double)w->value[i], cases[c].w[i]);
            ck_assert_msg(fabs((double)b->value[i] - cases[c].b[i]) <= tol, "case %zu: b[%d] = %.15g, want %.15g", c, i,
                          (double)b->value[i], cases[c].b[i]);
        }
        ag_optim_free(opt);
        ag_params_free(ps);
    }
}
END_TEST

/* pseudo-gradient that depends on the parameters and the step, computed here */
static void fake_grads(ag_params *ps, int step) {
    for (size_t k = 0; k < ag_params_count(ps); k++) {
        ag_tensor *x = ag_params_at(ps, k);
        for (size_t i = 0; i < x->size; i++)
            x->grad[i] = (ag_real)(sin((double)x->value[i] * 3 + step) * 0.5 + 0.01 * (double)i);
    }
}

static ag_params *make_big_store(void) {
    ag_params *ps;
    ag_tensor *w, *b;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 2, (size_t[]){7, 5}, AG_DECAY, &w), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){7}, 0, &b), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 3);
    ag_rng_fill_normal(&r, w->value, w->size, 0, 1);
    ag_rng_fill_normal(&r, b->value, b->size, 0, 1);
    return ps;
}

/* Save the state after 3 steps, restore it into a fresh optimizer and store, continue: the
 * result is bit-identical to 7 uninterrupted steps. */
/* .zero_grad = 1 (the step clears each gradient as it goes) gives bit-identical parameters and
 * state to step + ag_optim_zero_grad, for every kind, decay mode and clipping, with tensor
 * sizes that are not multiples of a vector width; a refused step leaves the gradients alone. */
static ag_params *odd_store(ag_tensor *t[3]) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w1", 2, (size_t[]){7, 5}, AG_DECAY, &t[0]), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b1", 1, (size_t[]){5}, 0, &t[1]), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w2", 2, (size_t[]){5, 13}, AG_DECAY, &t[2]), AG_OK);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < t[k]->size; i++) t[k]->value[i] = (ag_real)(0.1 * sin(1.0 + 3 * k + (double)i));
    return ps;
}

START_TEST(fused_zero_grad_is_bit_identical) {
    const ag_optim_kind kinds[] = {AG_OPT_SGD, AG_OPT_MOMENTUM, AG_OPT_NESTEROV, AG_OPT_ADAM, AG_OPT_ADAMW};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++)
        for (int decay = 0; decay < 3; decay++)      /* none, coupled, decoupled */
            for (int clip = 0; clip < 2; clip++) {
                ag_tensor *ta[3], *tb[3];
                ag_params *pa = odd_store(ta), *pb = odd_store(tb);
                ag_optim_config cfg = {.kind = kinds[ki], .lr = 0.05, .weight_decay = decay ? 0.01 : 0,
                                       .decoupled = decay == 2, .clip_norm = clip ? 0.5 : 0};
                ag_optim *oa = make_opt(pa, cfg);
                cfg.zero_grad = 1;
                ag_optim *ob = make_opt(pb, cfg);
                size_t n = ag_params_numel(pa);
                for (int step = 0; step < 4; step++) {
                    for (size_t i = 0; i < n; i++) ck_assert(ag_params_grads(pb)[i] == 0); /* cleared */
                    for (int k = 0; k < 3; k++)
                        for (size_t i = 0; i < ta[k]->size; i++)
                            ta[k]->grad[i] = tb[k]->grad[i] = (ag_real)cos(0.7 * step + 5 * k + 1.3 * (double)i);
                    ck_assert_int_eq(ag_optim_step(oa), AG_OK);
                    ag_optim_zero_grad(oa);
                    ck_assert_int_eq(ag_optim_step(ob), AG_OK);
                }
                ck_assert(memcmp(ag_params_values(pa), ag_params_values(pb), n * sizeof(ag_real)) == 0);
                for (size_t s = 0; s < ag_optim_state_count(oa); s++) {
                    ag_real *sa, *sb;
                    ck_assert_int_eq(ag_optim_state(oa, s, NULL, &sa, NULL), AG_OK);
                    ck_assert_int_eq(ag_optim_state(ob, s, NULL, &sb, NULL), AG_OK);
                    ck_assert(memcmp(sa, sb, n * sizeof(ag_real)) == 0);
                }
                /* a refused step neither updates nor clears */
                tb[0]->grad[3] = (ag_real)NAN;
                tb[2]->grad[1] = 2;
                ck_assert_int_eq(ag_optim_step(ob), AG_ERR_NUMERIC);
                ck_assert(isnan(tb[0]->grad[3]) && tb[2]->grad[1] == 2);
                ck_assert(memcmp(ag_params_values(pa), ag_params_values(pb), n * sizeof(ag_real)) == 0);
                ag_optim_free(oa);
                ag_optim_free(ob);
                ag_params_free(pa);
                ag_params_free(pb);
            }
}
END_TEST

START_TEST(state_round_trip_resumes_bit_identically) {
    const ag_optim_kind kinds[] = {AG_OPT_SGD, AG_OPT_MOMENTUM, AG_OPT_NESTEROV, AG_OPT_ADAM, AG_OPT_ADAMW};
    for (size_t kk = 0; kk < sizeof kinds / sizeof kinds[0]; kk++) {
        ag_optim_config cfg = {.kind = kinds[kk], .lr = 0.05, .weight_decay = 0.01, .clip_norm = 2,
                               .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 10, .warmup_steps = 2}};
        ag_params *pa = make_big_store(), *pb = make_big_store();
        ag_optim *oa = make_opt(pa, cfg), *ob = make_opt(pb, cfg);
        for (int s = 0; s < 7; s++) {
            fake_grads(pa, s);
            ck_assert_int_eq(ag_optim_step(oa), AG_OK);
        }
        for (int s = 0; s < 3; s++) {
            fake_grads(pb, s);
            ck_assert_int_eq(ag_optim_step(ob), AG_OK);
        }
        /* "checkpoint": copy parameters, state buffers and the step counter into fresh objects */
        ag_params *pc = make_big_store();
        ag_optim *oc = make_opt(pc, cfg);
        memcpy(ag_params_values(pc), ag_params_values(pb), ag_params_numel(pb) * sizeof(ag_real));
        ck_assert_uint_eq(ag_optim_state_count(oc), ag_optim_state_count(ob));
        for (size_t i = 0; i < ag_optim_state_count(ob); i++) {
            ag_real *src, *dst;
            size_t n, m;
            ck_assert_int_eq(ag_optim_state(ob, i, NULL, &src, &n), AG_OK);
            ck_assert_int_eq(ag_optim_state(oc, i, NULL, &dst, &m), AG_OK);
            ck_assert_uint_eq(n, m);
            memcpy(dst, src, n * sizeof(ag_real));
        }
        ag_optim_set_steps(oc, ag_optim_steps(ob));
        for (int s = 3; s < 7; s++) {
            fake_grads(pc, s);
            ck_assert_int_eq(ag_optim_step(oc), AG_OK);
        }
        ck_assert_int_eq(memcmp(ag_params_values(pa), ag_params_values(pc), ag_params_numel(pa) * sizeof(ag_real)),
                         0);
        ck_assert_uint_eq(ag_optim_steps(oc), 7);
        ck_assert_int_eq(ag_optim_state(oc, 5, NULL, NULL, NULL), AG_ERR_ARG);
        ag_optim_free(oa);
        ag_optim_free(ob);
        ag_optim_free(oc);
        ag_params_free(pa);
        ag_params_free(pb);
        ag_params_free(pc);
    }
}
END_TEST

START_TEST(steady_state_step_allocates_nothing) {
    ag_test_alloc_install();
    const ag_optim_kind kinds[] = {AG_OPT_SGD, AG_OPT_MOMENTUM, AG_OPT_NESTEROV, AG_OPT_ADAM, AG_OPT_ADAMW};
    for (size_t kk = 0; kk < sizeof kinds / sizeof kinds[0]; kk++) {
        ag_params *ps = make_big_store();
        ag_optim *opt = make_opt(ps, (ag_optim_config){.kind = kinds[kk], .lr = 0.01, .weight_decay = 0.1,
                                                       .clip_norm = 1,
                                                       .schedule = {.kind = AG_SCHED_STEP, .step_size = 2,
                                                                    .gamma = 0.5}});
        size_t before = ag_test_alloc_count();
        for (int s = 0; s < 5; s++) {
            ag_optim_zero_grad(opt);
            fake_grads(ps, s);
            ck_assert_int_eq(ag_optim_step(opt), AG_OK);
        }
        ck_assert_uint_eq(ag_test_alloc_count(), before);
        ag_optim_free(opt);
        ag_params_free(ps);
    }
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

START_TEST(errors_have_messages) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0}, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_ptr_null(opt);
    ck_assert_str_eq(err, "optim: lr must be finite and > 0 (got 0)");
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 1, .momentum = 1.5},
                                  err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_str_eq(err, "optim: momentum must be in (0, 1) (got 1.5)");
    ck_assert_int_eq(ag_optim_new(&opt, NULL, &(ag_optim_config){.lr = 1}, err, sizeof err), AG_ERR_ARG);
    ck_assert_str_eq(err, "optim: params store is NULL");
    /* the store grew after the optimizer was made */
    opt = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 1});
    ag_tensor *extra;
    ck_assert_int_eq(ag_params_add(ps, "extra", 1, (size_t[]){100}, 0, &extra), AG_OK);
    ck_assert_int_eq(ag_optim_step(opt), AG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ag_optim_errmsg(opt), "optimizer was made for"));
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

/* Only what the kind and the schedule use is validated: Adam ignores momentum, SGD the betas and
 * eps, a constant schedule gamma and min_lr; a non-finite gamma or min_lr is refused where used. */
START_TEST(config_validation_checks_used_fields) {
    ag_tensor *w;
    ag_params *ps = make_store(&w, NULL);
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    const ag_optim_config ok[] = {
        {.kind = AG_OPT_ADAM, .lr = 0.1, .momentum = 5},
        {.kind = AG_OPT_ADAMW, .lr = 0.1, .momentum = -1},
        {.kind = AG_OPT_SGD, .lr = 0.1, .momentum = 2, .beta1 = 2, .beta2 = -1, .eps = -1},
        {.kind = AG_OPT_MOMENTUM, .lr = 0.1, .beta1 = 1, .eps = NAN},
        {.kind = AG_OPT_NESTEROV, .lr = 0.1, .beta2 = 7},
        {.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_CONSTANT, .gamma = NAN, .min_lr = INFINITY}},
        {.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 5, .gamma = 0.5, .min_lr = NAN}},
        {.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 9, .gamma = INFINITY}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_msg(ag_optim_new(&opt, ps, &ok[i], err, sizeof err) == AG_OK, "config %zu: %s", i, err);
        ag_optim_free(opt);
    }
    /* Adam with momentum 5 steps exactly like Adam with the default momentum */
    ag_tensor *w2;
    ag_params *ps2 = make_store(&w2, NULL);
    ag_optim *o1 = make_opt(ps, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.1, .momentum = 5});
    ag_optim *o2 = make_opt(ps2, (ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.1});
    two_steps(o1, w);
    two_steps(o2, w2);
    for (int i = 0; i < 2; i++) ck_assert(w->value[i] == w2->value[i]);
    ag_optim_free(o1);
    ag_optim_free(o2);
    ag_params_free(ps2);

    const struct {
        ag_optim_config cfg;
        const char *msg;
    } bad[] = {
        {{.kind = AG_OPT_ADAM, .lr = 0.1, .eps = INFINITY}, "optim: eps must be > 0 and finite (got inf)"},
        {{.kind = AG_OPT_MOMENTUM, .lr = 0.1, .momentum = 5}, "optim: momentum must be in (0, 1) (got 5)"},
        {{.kind = AG_OPT_ADAM, .lr = 0.1, .beta2 = 1}, "optim: beta2 must be in (0, 1) (got 1)"},
        {{.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 5, .gamma = INFINITY}},
         "optim: step schedule needs a finite gamma > 0 (got inf)"},
        {{.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 5, .gamma = NAN}},
         "optim: step schedule needs a finite gamma > 0 (got nan)"},
        {{.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 0, .gamma = 0.5}},
         "optim: step schedule needs step_size >= 1 (got 0)"},
        {{.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 9, .min_lr = INFINITY}},
         "optim: cosine schedule needs a finite min_lr >= 0 (got inf)"},
        {{.kind = AG_OPT_ADAM, .lr = 0.1, .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 9, .min_lr = NAN}},
         "optim: cosine schedule needs a finite min_lr >= 0 (got nan)"},
        {{.kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 9, .min_lr = -0.01}},
         "optim: cosine schedule needs a finite min_lr >= 0 (got -0.01)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opt = (ag_optim *)ps; /* must come back NULL */
        ck_assert_msg(ag_optim_new(&opt, ps, &bad[i].cfg, err, sizeof err) == AG_ERR_ARG, "config %zu accepted", i);
        ck_assert_ptr_null(opt);
        ck_assert_str_eq(err, bad[i].msg);
    }
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- gradcheck under a sink */

#ifdef AG_DOUBLE
#define GC_EPS 1e-6
#else
#define GC_EPS 1e-2
#endif

typedef struct gc_model {
    ag_tensor *W, *b;
    ag_real x[3 * 4];
    int fail; /* the loss function returns NULL */
} gc_model;

/* J = mean(tanh(x W^T + b)^2): W's gradient is one GEMM, which a sink would take tile by tile */
static ag_tensor *gc_loss(ag_tape *t, void *ctx) {
    gc_model *m = ctx;
    if (m->fail) {
        ag_scalar(t, 1); /* recorded, no gradient: backward refuses it */
        return m->fail == 1 ? NULL : ag_scalar(t, 2);
    }
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){3, 4}, m->x);
    ag_tensor *h = ag_tanh(t, ag_linear(t, X, m->W, m->b));
    return ag_mean(t, ag_square(t, h));
}

static int gc_sink_calls;
static void gc_count(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                     size_t ldg, unsigned flags) {
    (void)ctx, (void)x, (void)off, (void)rows, (void)cols, (void)ld, (void)g, (void)ldg, (void)flags;
    gc_sink_calls++;
}

/* 1 if t still hands gradients to gc_count: a plain backward of the model calls it */
static int sink_still_set(ag_tape *t, gc_model *m) {
    int fail = m->fail;
    m->fail = 0;
    ag_tape_reset(t);
    gc_sink_calls = 0;
    ck_assert_int_eq(ag_backward(t, gc_loss(t, m)), AG_OK);
    m->fail = fail;
    return gc_sink_calls > 0;
}

/* A gradient sink set on the tape takes the gradients out of ->grad; ag_gradcheck must compare
 * against the real gradient (it used to compare with zeros and report an error of 1 with AG_OK)
 * and leave the caller's sink set, on success and on failure. */
START_TEST(gradcheck_with_a_sink_set) {
    ag_params *ps;
    gc_model m = {0};
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){2, 4}, AG_DECAY, &m.W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){2}, 0, &m.b), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 5);
    ag_rng_fill_normal(&r, m.W->value, m.W->size, 0, 0.5);
    ag_rng_fill_normal(&r, m.b->value, m.b->size, 0, 0.5);
    ag_rng_fill_normal(&r, m.x, 12, 0, 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result plain, sunk;
    ck_assert_int_eq(ag_gradcheck(t, gc_loss, &m, (ag_tensor *[]){m.W, m.b}, 2, GC_EPS, &plain), AG_OK);
    ag_real want[8];
    memcpy(want, m.W->grad, sizeof want);

    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = gc_count}), AG_OK);
    gc_sink_calls = 0;
    ck_assert_int_eq(ag_gradcheck(t, gc_loss, &m, (ag_tensor *[]){m.W, m.b}, 2, GC_EPS, &sunk), AG_OK);
    ck_assert_int_eq(gc_sink_calls, 0);
    ck_assert_uint_eq(sunk.n_checked, 10);
    ck_assert_msg(sunk.max_rel_err < AG_TEST_GRAD_TOL, "max_rel_err %g (analytic %g, numeric %g)", sunk.max_rel_err,
                  sunk.analytic, sunk.numeric);
    ck_assert(sunk.max_rel_err == plain.max_rel_err);
    ck_assert(memcmp(want, m.W->grad, sizeof want) == 0); /* the analytic gradient, left in ->grad */
    ck_assert(sink_still_set(t, &m));

    /* failures: the loss function returns NULL; backward refuses a loss needing no gradient */
    for (int fail = 1; fail <= 2; fail++) {
        m.fail = fail;
        ck_assert_int_eq(ag_gradcheck(t, gc_loss, &m, (ag_tensor *[]){m.W}, 1, GC_EPS, &sunk),
                         fail == 1 ? AG_ERR_ARG : AG_ERR_STATE);
        ck_assert_msg(sink_still_set(t, &m), "fail %d", fail);
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ag_optim_grad_norm follows the step just taken: a fused step without clipping reports 0 (also
 * after a failed two-pass step left NaN), and NaN when it skipped a non-finite piece. */
START_TEST(grad_norm_after_fused_steps) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, 0, &w), AG_OK);
    ag_optim *o;
    ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1}, NULL, 0), AG_OK);
    w->grad[0] = (ag_real)NAN;
    ck_assert_int_eq(ag_optim_step(o), AG_ERR_NUMERIC);
    ck_assert(isnan(ag_optim_grad_norm(o)));
    ag_params_zero_grad(ps);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real x[2] = {1, 2};
    ag_tensor *J = ag_sum(t, ag_mul(t, w, ag_tensor_wrap(t, 1, (size_t[]){2}, x)));
    ck_assert_int_eq(ag_optim_backward_step(o, t, J), AG_OK);
    ck_assert(ag_optim_grad_norm(o) == 0);
    ag_tape_reset(t);
    x[1] = (ag_real)INFINITY;
    J = ag_sum(t, ag_mul(t, w, ag_tensor_wrap(t, 1, (size_t[]){2}, x)));
    ck_assert_int_eq(ag_optim_backward_step(o, t, J), AG_ERR_NUMERIC);
    ck_assert(isnan(ag_optim_grad_norm(o)));
    ag_tape_free(t);
    ag_optim_free(o);
    ag_params_free(ps);
}
END_TEST

/* The global norm of finite gradients is finite even when their squares overflow (the double
 * build's range; in float the squares fit a double): ||(g, g)|| = sqrt(2) g. */
START_TEST(grad_norm_of_huge_finite_gradients) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 0, &w), AG_OK);
#ifdef AG_DOUBLE
    const double g = 1e200;
#else
    const double g = 1e38;
#endif
    w->grad[0] = (ag_real)g, w->grad[1] = (ag_real)-g, w->grad[2] = 0;
    ck_assert_double_eq_tol(ag_grad_norm(ps) / (sqrt(2.0) * g), 1.0, 1e-6);
    /* clipping takes it down to the bound instead of refusing the step */
    ck_assert_double_eq_tol(ag_clip_grad_norm(ps, 1.0) / (sqrt(2.0) * g), 1.0, 1e-6);
    ck_assert_double_eq_tol((double)w->grad[0], 1 / sqrt(2.0), 1e-6);
    w->grad[2] = (ag_real)INFINITY;
    ck_assert(isinf(ag_grad_norm(ps)));
    ag_params_free(ps);
}
END_TEST

/* zero_grad in the config zeroes the gradients in the update's pass, as ag_params_zero_grad does,
 * flags included: the next sweep with a sink streams a weight's gradient from the GEMM in tiles
 * (many pieces) instead of delivering it whole from ->grad (one piece), as a dirty one must be. */
static int w_pieces;
static void count_w(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                    size_t ldg, unsigned flags) {
    (void)ctx, (void)off, (void)rows, (void)cols, (void)ld, (void)g, (void)ldg, (void)flags;
    if (!strcmp(x->name, "W")) w_pieces++;
}
START_TEST(zero_grad_config_clears_like_zero_grad) {
    ag_params *ps;
    ag_tensor *W;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){256, 256}, AG_DECAY, &W), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 1);
    ag_rng_fill_normal(&r, W->value, W->size, 0, 0.1);
    static ag_real x[64 * 256];
    ag_rng_fill_normal(&r, x, 64 * 256, 0, 1);
    ag_optim *o;
    ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1, .zero_grad = 1}, NULL, 0),
                     AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){64, 256}, x);
    ck_assert_int_eq(ag_backward(t, ag_mean(t, ag_square(t, ag_linear(t, X, W, NULL)))), AG_OK);
    ck_assert_int_eq(ag_optim_step(o), AG_OK);
    ag_tape_reset(t);
    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = count_w}), AG_OK);
    w_pieces = 0;
    X = ag_tensor_wrap(t, 2, (size_t[]){64, 256}, x);
    ck_assert_int_eq(ag_backward(t, ag_mean(t, ag_square(t, ag_linear(t, X, W, NULL)))), AG_OK);
    ck_assert_msg(w_pieces > 1, "W delivered in %d piece(s): its gradient was taken as dirty", w_pieces);
    ag_tape_free(t);
    ag_optim_free(o);
    ag_params_free(ps);
}
END_TEST

static Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, sgd_two_steps);
    tcase_add_test(tc, momentum_two_steps);
    tcase_add_test(tc, zero_fields_take_the_defaults);
    tcase_add_test(tc, nesterov_two_steps);
    tcase_add_test(tc, adam_two_steps);
    tcase_add_test(tc, adamw_decays_weights_not_biases);
    tcase_add_test(tc, weight_decay_modes_two_steps);
    tcase_add_test(tc, decoupled_decay_equals_l2_in_cost_for_sgd);
    tcase_add_test(tc, decoupled_decay_equals_l2_on_tape_for_sgd);
    tcase_add_test(tc, clip_by_global_norm);
    tcase_add_test(tc, schedules_at_chosen_steps);
    tcase_add_test(tc, zero_grad_clears_everything);
    tcase_add_test(tc, fused_zero_grad_is_bit_identical);
    tcase_add_test(tc, state_round_trip_resumes_bit_identically);
    tcase_add_test(tc, steady_state_step_allocates_nothing);
    tcase_add_test(tc, errors_have_messages);
    tcase_add_test(tc, config_validation_checks_used_fields);
    tcase_add_test(tc, gradcheck_with_a_sink_set);
    tcase_add_test(tc, grad_norm_after_fused_steps);
    tcase_add_test(tc, grad_norm_of_huge_finite_gradients);
    tcase_add_test(tc, zero_grad_config_clears_like_zero_grad);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(optim_suite)

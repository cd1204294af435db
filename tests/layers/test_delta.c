/*
 * test_delta.c - the central promise: the tape reproduces the hand-derived backpropagation of
 * backprop-derivation.md exactly. For random MLPs (sigmoid or tanh, squared error, L2) the
 * gradient the tape leaves on every pre-activation z^(l) equals delta^(l)/K for every example,
 * the parameter gradients equal (1/K) DeltaW + lambda W and (1/K) Deltab, and one SGD step
 * gives the reference's update. The reference (layers/backprop_ref.c) is itself checked by
 * central differences. Tolerance: AG_TEST_EXACT_TOL (1e-12 double, 1e-5 float).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/backprop_ref.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "testutil.h"

/* One random network held twice: on the tape (MLP in a params store) and in the reference. */
typedef struct {
    int n_l;                         /* layers, input included */
    size_t s[8];                     /* s[0..n_l): s_1 .. s_{n_l} */
    size_t K;
    double lambda;
    ag_act act;
    ag_params *ps;
    ag_mlp *m;
    ag_ref_mlp *ref;
    ag_real *x, *y;                  /* K x s_1, K x s_{n_l} */
    double *xd, *yd;
    char desc[160];
} net_case;

static void case_make(net_case *c, ag_rng *r, int n_l, size_t max_width, size_t K, double lambda, ag_act act) {
    memset(c, 0, sizeof *c);
    c->n_l = n_l;
    c->K = K;
    c->lambda = lambda;
    c->act = act;
    char spec[128];
    int len = 0;
    for (int l = 0; l < n_l; l++) {
        c->s[l] = 1 + (size_t)ag_rng_below(r, max_width);
        len += snprintf(spec + len, sizeof spec - (size_t)len, l ? "-%zu" : "%zu", c->s[l]);
    }
    snprintf(c->desc, sizeof c->desc, "%s %s K=%zu lambda=%g", spec, act == AG_ACT_TANH ? "tanh" : "sigmoid", K,
             lambda);
    ck_assert_int_eq(ag_params_new(&c->ps), AG_OK);
    char err[AG_ERRMSG_SIZE];
    ag_mlp_config cfg = {.spec = spec, .hidden = act, .output = act, .init = AG_INIT_GLOROT_NORMAL,
                         .seed = ag_rng_next(r)};
    ck_assert_msg(ag_mlp_new(&c->m, c->ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_int_eq(ag_ref_new(&c->ref, n_l, c->s, act == AG_ACT_TANH ? AG_REF_TANH : AG_REF_SIGMOID, K), AG_OK);
    /* nonzero biases, so that a bias wrongly regularised would show */
    for (size_t i = 0; i < c->m->n_layers; i++) {
        ag_dense *d = &c->m->layers[i];
        ag_rng_fill_normal(r, d->b->value, d->b->size, 0, 0.5);
    }
    /* the reference gets the very same numbers (ag_real -> double is exact) */
    for (int l = 1; l < n_l; l++) {
        ag_dense *d = &c->m->layers[l - 1];
        for (size_t i = 0; i < d->W->size; i++) c->ref->W[l][i] = (double)d->W->value[i];
        for (size_t i = 0; i < d->b->size; i++) c->ref->b[l][i] = (double)d->b->value[i];
    }
    size_t nx = K * c->s[0], ny = K * c->s[n_l - 1];
    c->x = malloc(nx * sizeof *c->x);
    c->y = malloc(ny * sizeof *c->y);
    c->xd = malloc(nx * sizeof *c->xd);
    c->yd = malloc(ny * sizeof *c->yd);
    ag_rng_fill_uniform(r, c->x, nx, -1, 1);
    ag_rng_fill_uniform(r, c->y, ny, act == AG_ACT_TANH ? -0.9 : 0.05, 0.95);
    for (size_t i = 0; i < nx; i++) c->xd[i] = (double)c->x[i];
    for (size_t i = 0; i < ny; i++) c->yd[i] = (double)c->y[i];
}

static void case_free(net_case *c) {
    ag_mlp_free(c->m);
    ag_params_free(c->ps);
    ag_ref_free(c->ref);
    free(c->x);
    free(c->y);
    free(c->xd);
    free(c->yd);
}

/* Record the forward pass and the cost on t and run backward; z[i] = z^(i+2). Returns J. */
static ag_tensor *case_tape(net_case *c, ag_tape *t, ag_tensor **z, int l2_on_tape) {
    ag_tape_reset(t);
    ag_params_zero_grad(c->ps);
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){c->K, c->s[0]}, c->x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){c->K, c->s[c->n_l - 1]}, c->y);
    ag_tensor *h = ag_mlp_forward(t, c->m, X, z, NULL);
    ag_tensor *J = ag_mlp_cost_squared_error(t, c->m, h, Y, l2_on_tape ? (ag_real)c->lambda : 0);
    ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
    ck_assert_msg(ag_backward(t, J) == AG_OK, "%s", ag_tape_errmsg(t));
    return J;
}

/* Compare the tape with the reference layer by layer; returns the worst difference. */
static double case_compare(net_case *c, ag_tensor **z, ag_tensor *J, double tol) {
    double worst = 0, *buf = malloc(64 * 64 * sizeof *buf);
    char label[400];
    ag_ref_mlp *r = c->ref;
    /* z^(l)->grad == delta^(l) / K, every example (row) of every layer l = 2..n_l */
    for (int l = 2; l <= c->n_l; l++) {
        ag_tensor *zl = z[l - 2];
        ck_assert_ptr_nonnull(zl->grad);
        size_t n = c->K * c->s[l - 1];
        double *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++) want[i] = r->delta[l][i] / (double)c->K;
        snprintf(label, sizeof label, "[%s] z^(%d)->grad vs delta^(%d)/K", c->desc, l, l);
        double d = ag_test_max_abs_diff(label, zl->grad, want, n, tol);
        ck_assert_msg(d <= tol, "%s: max |diff| %.3g > %.3g", label, d, tol);
        if (d > worst) worst = d;
        free(want);
    }
    /* W^(l)->grad == (1/K) DeltaW^(l) + lambda W^(l);  b^(l)->grad == (1/K) Deltab^(l) */
    for (int l = 1; l < c->n_l; l++) {
        ag_dense *dl = &c->m->layers[l - 1];
        double *db = malloc(dl->b->size * sizeof *db);
        ag_ref_gradient(r, l, c->K, c->lambda, buf, db);
        snprintf(label, sizeof label, "[%s] W^(%d)->grad", c->desc, l);
        double d = ag_test_max_abs_diff(label, dl->W->grad, buf, dl->W->size, tol);
        ck_assert_msg(d <= tol, "%s: max |diff| %.3g > %.3g", label, d, tol);
        if (d > worst) worst = d;
        snprintf(label, sizeof label, "[%s] b^(%d)->grad", c->desc, l);
        d = ag_test_max_abs_diff(label, dl->b->grad, db, dl->b->size, tol);
        ck_assert_msg(d <= tol, "%s: max |diff| %.3g > %.3g", label, d, tol);
        if (d > worst) worst = d;
        free(db);
    }
    ck_assert_msg(fabs((double)J->value[0] - r->J) <= tol * (1 + fabs(r->J)), "[%s] J tape %.17g ref %.17g", c->desc,
                  (double)J->value[0], r->J);
    free(buf);
    return worst;
}

START_TEST(tape_reproduces_delta_recursion) {
    ag_rng r;
    ag_rng_seed(&r, 20240603);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    int trials = ag_test_quick() ? 16 : 64;
    double worst = 0;
    for (int trial = 0; trial < trials; trial++) {
        net_case c;
        int depth = 2 + trial % 4;                    /* dense layers 2..5, n_l = 3..6 */
        ag_act act = (trial / 4) % 2 ? AG_ACT_TANH : AG_ACT_SIGMOID;
        double lambda = (trial / 8) % 2 ? 0.01 + 0.3 * ag_rng_uniform(&r) : 0.0;
        size_t K = trial < 4 ? (size_t)1 << (trial * 5 / 3) /* 1, 2, 8, 32 first */ : 1 + (size_t)ag_rng_below(&r, 32);
        if (K > 32) K = 32;
        case_make(&c, &r, depth + 1, trial % 3 == 0 ? 64 : 12, K, lambda, act);
        ag_tensor *z[8];
        ag_tensor *J = case_tape(&c, t, z, 1);
        ck_assert_int_eq(ag_ref_backprop(c.ref, c.xd, c.yd, c.K, c.lambda), AG_OK);
        double d = case_compare(&c, z, J, AG_TEST_EXACT_TOL);
        if (d > worst) worst = d;
        case_free(&c);
    }
    fprintf(stderr, "delta: %d random MLPs, max |tape - reference| = %.3g (tol %.0e, %s)\n", trials, worst,
            AG_TEST_EXACT_TOL, AG_REAL_NAME);
    ag_tape_free(t);
}
END_TEST

/* Edge shapes: width-1 layers everywhere, K = 1 (online) and a wide full batch. */
START_TEST(edge_widths_and_batches) {
    ag_rng r;
    ag_rng_seed(&r, 7);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const size_t Ks[] = {1, 32};
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 2; k++)
            for (int a = 0; a < 2; a++) {
                net_case c;
                case_make(&c, &r, 6, w ? 64 : 1, Ks[k], 0.05 * k, a ? AG_ACT_TANH : AG_ACT_SIGMOID);
                ag_tensor *z[8];
                ag_tensor *J = case_tape(&c, t, z, 1);
                ag_ref_backprop(c.ref, c.xd, c.yd, c.K, c.lambda);
                case_compare(&c, z, J, AG_TEST_EXACT_TOL);
                case_free(&c);
            }
    ag_tape_free(t);
}
END_TEST

/* One SGD step from the tape's gradients == W := W - alpha[(1/K) DeltaW + lambda W],
 * b := b - alpha (1/K) Deltab; with lambda on the tape or as the optimizer's weight decay. */
START_TEST(one_sgd_step_matches_reference_update) {
    ag_rng r;
    ag_rng_seed(&r, 99);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const double alpha = 0.7;
    for (int trial = 0; trial < 8; trial++) {
        int l2_on_tape = trial % 2;
        net_case c;
        case_make(&c, &r, 3 + trial % 3, 16, 1 + (size_t)ag_rng_below(&r, 32), 0.1 * (1 + trial % 3),
                  trial % 4 < 2 ? AG_ACT_SIGMOID : AG_ACT_TANH);
        ag_optim *opt;
        char err[AG_ERRMSG_SIZE];
        ag_optim_config cfg = {.kind = AG_OPT_SGD, .lr = alpha, .weight_decay = l2_on_tape ? 0 : c.lambda};
        ck_assert_msg(ag_optim_new(&opt, c.ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
        ag_tensor *z[8];
        case_tape(&c, t, z, l2_on_tape);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
        ag_ref_backprop(c.ref, c.xd, c.yd, c.K, c.lambda);
        ag_ref_update(c.ref, c.K, alpha, c.lambda);
        for (int l = 1; l < c.n_l; l++) {
            ag_dense *d = &c.m->layers[l - 1];
            char label[400];
            snprintf(label, sizeof label, "[%s%s] W^(%d) after step", c.desc, l2_on_tape ? "" : " decoupled", l);
            double dw = ag_test_max_abs_diff(label, d->W->value, c.ref->W[l], d->W->size, AG_TEST_EXACT_TOL);
            ck_assert_msg(dw <= AG_TEST_EXACT_TOL, "%s: max |diff| %.3g", label, dw);
            snprintf(label, sizeof label, "[%s] b^(%d) after step", c.desc, l);
            double db = ag_test_max_abs_diff(label, d->b->value, c.ref->b[l], d->b->size, AG_TEST_EXACT_TOL);
            ck_assert_msg(db <= AG_TEST_EXACT_TOL, "%s: max |diff| %.3g", label, db);
        }
        ag_optim_free(opt);
        case_free(&c);
    }
    ag_tape_free(t);
}
END_TEST

/* With lambda > 0 and nonzero biases, the bias gradients are exactly those of lambda = 0, and the
 * weight gradients differ by exactly lambda W. A cost that put the biases in the L2 term would
 * move b->grad by lambda b (about 0.5 * 0.5 here) and fail. */
START_TEST(biases_are_never_regularised) {
    ag_rng r;
    ag_rng_seed(&r, 5);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    net_case c;
    case_make(&c, &r, 4, 10, 6, 0.5, AG_ACT_SIGMOID);
    size_t numel = ag_params_numel(c.ps);
    ag_real *g0 = malloc(numel * sizeof *g0);
    ag_tensor *z[8];
    case_tape(&c, t, z, 0);
    memcpy(g0, ag_params_grads(c.ps), numel * sizeof *g0);
    case_tape(&c, t, z, 1);
    const ag_real *g1 = ag_params_grads(c.ps);
    for (size_t l = 0; l < c.m->n_layers; l++) {
        ag_dense *d = &c.m->layers[l];
        size_t wo = (size_t)(d->W->grad - g1), bo = (size_t)(d->b->grad - g1);
        double bmax = 0;
        for (size_t i = 0; i < d->b->size; i++) {
            ck_assert_msg(g1[bo + i] == g0[bo + i], "b^(%zu)[%zu] grad moved by %.3g with lambda > 0: regularised",
                          l + 1, i, (double)(g1[bo + i] - g0[bo + i]));
            if (fabs((double)d->b->value[i]) > bmax) bmax = fabs((double)d->b->value[i]);
        }
        ck_assert_double_gt(bmax, 0.1); /* the biases are far from zero, so the check has teeth */
        for (size_t i = 0; i < d->W->size; i++)
            ck_assert_double_eq_tol(g1[wo + i] - g0[wo + i], 0.5 * d->W->value[i], 4 * AG_TEST_EXACT_TOL);
    }
    /* the reference agrees, and the L2 term over the store's AG_DECAY tensors is the MLP's */
    ag_ref_backprop(c.ref, c.xd, c.yd, c.K, c.lambda);
    case_compare(&c, z, case_tape(&c, t, z, 1), AG_TEST_EXACT_TOL);
    ag_tape_reset(t);
    ag_tensor *l2a = ag_l2_decay(t, (ag_real)0.5, c.ps);
    ag_tensor *l2b = ag_l2(t, (ag_real)0.5, c.m->weights, c.m->n_layers);
    ck_assert_ptr_nonnull(l2a);
    ck_assert_double_eq(l2a->value[0], l2b->value[0]);
    free(g0);
    case_free(&c);
    ag_tape_free(t);
}
END_TEST

/* The fused path: with neither z nor a asked for, ag_mlp_forward records one linear_act node per
 * layer (no z on the tape). Its parameter gradients must still be (1/K) DeltaW + lambda W and
 * (1/K) Deltab of the reference, and J the reference's J. */
START_TEST(fused_layers_match_reference) {
    ag_rng r;
    ag_rng_seed(&r, 424242);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int trial = 0; trial < 12; trial++) {
        net_case c;
        const size_t K = 1 + (size_t)ag_rng_below(&r, 32);
        case_make(&c, &r, 3 + trial % 3, trial % 2 ? 40 : 9, K, (trial / 2) % 2 ? 0.2 : 0,
                  (trial / 4) % 2 ? AG_ACT_TANH : AG_ACT_SIGMOID);
        ag_tape_reset(t);
        ag_params_zero_grad(c.ps);
        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){c.K, c.s[0]}, c.x);
        ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){c.K, c.s[c.n_l - 1]}, c.y);
        size_t n0 = ag_tape_node_count(t);
        ag_tensor *h = ag_mlp_forward(t, c.m, X, NULL, NULL);
        ck_assert_ptr_nonnull(h);
        ck_assert_uint_eq(ag_tape_node_count(t), n0 + c.m->n_layers); /* one fused node per layer */
        ag_tensor *J = ag_mlp_cost_squared_error(t, c.m, h, Y, (ag_real)c.lambda);
        ck_assert_msg(J && ag_backward(t, J) == AG_OK, "%s", ag_tape_errmsg(t));
        ck_assert_int_eq(ag_ref_backprop(c.ref, c.xd, c.yd, c.K, c.lambda), AG_OK);
        for (int l = 1; l < c.n_l; l++) {
            ag_dense *d = &c.m->layers[l - 1];
            double *dW = malloc(d->W->size * sizeof *dW), *db = malloc(d->b->size * sizeof *db);
            ck_assert(dW && db);
            ag_ref_gradient(c.ref, l, c.K, c.lambda, dW, db);
            char label[400];
            snprintf(label, sizeof label, "[%s fused] W^(%d)->grad", c.desc, l);
            double diff = ag_test_max_abs_diff(label, d->W->grad, dW, d->W->size, AG_TEST_EXACT_TOL);
            ck_assert_msg(diff <= AG_TEST_EXACT_TOL, "%s: max |diff| %.3g", label, diff);
            snprintf(label, sizeof label, "[%s fused] b^(%d)->grad", c.desc, l);
            diff = ag_test_max_abs_diff(label, d->b->grad, db, d->b->size, AG_TEST_EXACT_TOL);
            ck_assert_msg(diff <= AG_TEST_EXACT_TOL, "%s: max |diff| %.3g", label, diff);
            free(dW);
            free(db);
        }
        ck_assert_msg(fabs((double)J->value[0] - c.ref->J) <= AG_TEST_EXACT_TOL * (1 + fabs(c.ref->J)),
                      "[%s fused] J tape %.17g ref %.17g", c.desc, (double)J->value[0], c.ref->J);
        case_free(&c);
    }
    ag_tape_free(t);
}
END_TEST

/* The reference's gradients (1/K) DeltaW + lambda W and (1/K) Deltab against central
 * differences of its own J, all in double. */
START_TEST(reference_passes_central_differences) {
    for (int a = 0; a < 2; a++) {
        ag_rng r;
        ag_rng_seed(&r, 11 + (uint64_t)a);
        const size_t s[] = {3, 5, 4, 2}, K = 4;
        const double lambda = 0.2, eps = 1e-6;
        ag_ref_mlp *ref;
        ck_assert_int_eq(ag_ref_new(&ref, 4, s, a ? AG_REF_TANH : AG_REF_SIGMOID, K), AG_OK);
        for (int l = 1; l < 4; l++) {
            for (size_t i = 0; i < s[l] * s[l - 1]; i++) ref->W[l][i] = ag_rng_normal(&r);
            for (size_t i = 0; i < s[l]; i++) ref->b[l][i] = ag_rng_normal(&r) * 0.5;
        }
        double x[4 * 3], y[4 * 2];
        for (size_t i = 0; i < K * 3; i++) x[i] = 2 * ag_rng_uniform(&r) - 1;
        for (size_t i = 0; i < K * 2; i++) y[i] = ag_rng_uniform(&r) * 0.8 + 0.1;
        ck_assert_int_eq(ag_ref_backprop(ref, x, y, K, lambda), AG_OK);
        double worst = 0;
        for (int l = 1; l < 4; l++) {
            double dW[20], db[5];
            ag_ref_gradient(ref, l, K, lambda, dW, db);
            for (int which = 0; which < 2; which++) {
                double *p = which ? ref->b[l] : ref->W[l], *g = which ? db : dW;
                size_t n = which ? s[l] : s[l] * s[l - 1];
                for (size_t i = 0; i < n; i++) {
                    double keep = p[i];
                    p[i] = keep + eps;
                    double jp = ag_ref_forward(ref, x, y, K, lambda);
                    p[i] = keep - eps;
                    double jm = ag_ref_forward(ref, x, y, K, lambda);
                    p[i] = keep;
                    double num = (jp - jm) / (2 * eps);
                    double rel = fabs(num - g[i]) / fmax(fabs(num) + fabs(g[i]), 1e-8);
                    ck_assert_msg(rel < 1e-6 || fabs(num - g[i]) < 1e-9,
                                  "%s %s^(%d)[%zu]: analytic %.12g numeric %.12g", a ? "tanh" : "sigmoid",
                                  which ? "b" : "W", l, i, g[i], num);
                    if (rel > worst) worst = rel;
                }
            }
        }
        ag_ref_free(ref);
    }
}
END_TEST

START_TEST(reference_rejects_bad_arguments) {
    ag_ref_mlp *r;
    ck_assert_int_eq(ag_ref_new(&r, 1, (size_t[]){3}, AG_REF_SIGMOID, 1), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 2, (size_t[]){3, 0}, AG_REF_SIGMOID, 1), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 2, (size_t[]){3, 2}, AG_REF_SIGMOID, 0), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 2, (size_t[]){3, 2}, AG_REF_TANH, 2), AG_OK);
    double x[6] = {0}, y[2] = {0};
    ck_assert_int_eq(ag_ref_backprop(r, x, y, 3, 0), AG_ERR_ARG); /* K above capacity */
    ck_assert_int_eq(ag_ref_gradient(r, 2, 1, 0, NULL, NULL), AG_ERR_ARG); /* no layer 2 in a 2-layer net */
    ck_assert(isnan(ag_ref_forward(r, x, y, 0, 0)));
    ag_ref_free(r);
}
END_TEST

static Suite *delta_suite(void) {
    Suite *s = suite_create("delta");
    TCase *tc = tcase_create("delta");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tape_reproduces_delta_recursion);
    tcase_add_test(tc, edge_widths_and_batches);
    tcase_add_test(tc, one_sgd_step_matches_reference_update);
    tcase_add_test(tc, biases_are_never_regularised);
    tcase_add_test(tc, fused_layers_match_reference);
    tcase_add_test(tc, reference_passes_central_differences);
    tcase_add_test(tc, reference_rejects_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(delta_suite)

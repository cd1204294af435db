/*
 * test_grad_plumbing.c - issue 22 item 10, gradient plumbing:
 *   - ag_detach: a view (no copy) whose result requires no gradient; gradients through the other
 *     paths are exactly the hand-derived ones with the detached factor held constant;
 *   - an op without backward: fine off the gradient path (an argmax for the accuracy, or on data),
 *     an error naming the op, its shape and its node when a gradient reaches it;
 *   - ag_gradcheck_leaves: leaves with parameters, an unused leaf, a buffer wrapped twice, a wrong
 *     backward caught, values restored;
 *   - ag_tape_shrink: a big no-grad pass grows the arena, shrink gives it back, and a training step
 *     then allocates only on its first run (nothing at all when shrink keeps its size).
 * Expectations are derived by hand in the comments, not computed by the code under test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})

/* ---------------------------------------------------------------- ops of the tests */

/* argmax_rows: y_k = argmax_c x[k, c] (as a real), K x C -> K; no backward (not differentiable) */
static ag_status argmax_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    return ag_node_set_shape(n, 1, (size_t[]){x->shape[0]});
}
static ag_status argmax_forward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const size_t K = x->shape[0], C = x->shape[1];
    for (size_t k = 0; k < K; k++) {
        size_t best = 0;
        for (size_t c = 1; c < C; c++)
            if (x->value[k * C + c] > x->value[k * C + best]) best = c;
        n->out.value[k] = (ag_real)best;
    }
    return AG_OK;
}
static const ag_op argmax_op = {"argmax_rows", 1, 0, argmax_shape, argmax_forward, NULL};

/* bad_square: y = x^2 with a wrong backward (dx += x dy instead of 2 x dy), for gradcheck to catch */
static ag_status same_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status square_forward(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) n->out.value[i] = n->in[0]->value[i] * n->in[0]->value[i];
    return AG_OK;
}
static ag_status bad_square_backward(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->out.size; i++) n->in[0]->grad[i] += n->in[0]->value[i] * n->out.grad[i];
    return AG_OK;
}
static const ag_op bad_square_op = {"bad_square", 1, 0, same_shape, square_forward, bad_square_backward};

static void assert_close(const char *what, double got, double want) {
    ck_assert_msg(fabs(got - want) <= AG_TEST_EXACT_TOL * (1 + fabs(want)), "%s: %.17g, want %.17g", what, got, want);
}

/* ---------------------------------------------------------------- detach */

/* J = sum(detach(x) .* x): the detached factor is a constant c = x, so dJ/dx = c = x (not 2x). The
 * result shares x's memory and requires no gradient; none reaches it. */
START_TEST(detach_is_a_view_that_stops_the_gradient) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    enum { N = 1000 };
    ag_real *xv = malloc(N * sizeof *xv);
    ck_assert_ptr_nonnull(xv);
    for (int i = 0; i < N; i++) xv[i] = (ag_real)(0.01 * (i % 37) - 0.2);
    ag_tensor *x = ag_tensor_from(t, 2, SH(40, 25), xv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    const size_t used = ag_tape_mem_used(t), nodes = ag_tape_node_count(t);
    ag_tensor *d = ag_detach(t, x);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(d->value, x->value); /* a view */
    ck_assert_uint_lt(ag_tape_mem_used(t) - used, 512); /* a node, not 4000+ bytes of copy */
    ck_assert_uint_eq(ag_tape_node_count(t), nodes + 1);
    ck_assert_int_eq(d->ndim, 2);
    ck_assert_uint_eq(d->shape[0], 40);
    ck_assert_uint_eq(d->shape[1], 25);
    ck_assert_uint_eq(d->size, N);
    ck_assert_uint_eq(d->flags & AG_REQUIRES_GRAD, 0);

    ag_tensor *J = ag_sum(t, ag_mul(t, d, x));
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    ck_assert_ptr_null(d->grad);
    for (int i = 0; i < N; i++) ck_assert_msg(x->grad[i] == xv[i], "dx[%d] = %g, want %g", i, (double)x->grad[i], (double)xv[i]);
    free(xv);
    ag_tape_free(t);
}
END_TEST

/* Ops on a detached tensor alone record nothing for backward: exp(detach(W)) needs no gradient, so a
 * loss made of it depends on nothing that requires one. The result is no leaf (not markable); in
 * no-grad mode detach is the same view. */
START_TEST(ops_on_a_detached_tensor_alone_need_no_gradient) {
    ag_params *ps;
    ag_tensor *W;
    ag_tape *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(2, 2), 0, &W), AG_OK);
    for (int i = 0; i < 4; i++) W->value[i] = (ag_real)(0.5 * i - 1);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *d = ag_detach(t, W);
    ck_assert_ptr_eq(d->value, W->value);
    ag_tensor *y = ag_exp(t, d);
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(y->flags & AG_REQUIRES_GRAD, 0);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, y)), AG_ERR_STATE);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "backward: loss does not depend on anything that requires a gradient"), "%s",
                  ag_tape_errmsg(t));
    for (int i = 0; i < 4; i++) ck_assert(W->grad[i] == 0);
    ck_assert_int_eq(ag_requires_grad(d), AG_ERR_ARG);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "requires_grad: only leaves can be marked (this is a detach result)"), "%s",
                  ag_tape_errmsg(t));

    ag_tape_reset(t);
    ag_tape_set_grad_enabled(t, 0);
    d = ag_detach(t, W);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(d->value, W->value);
    ck_assert_uint_eq(d->flags & AG_REQUIRES_GRAD, 0);
    ag_tape_set_grad_enabled(t, 1);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A recurrence truncated by detach, scalars: h1 = tanh(w h0), h2 = tanh(w detach(h1)), J = h2.
 * With h1 held constant dJ/dw = (1 - h2^2) h1; the untruncated gradient would add
 * (1 - h2^2) w (1 - h1^2) h0. */
START_TEST(detach_truncates_a_recurrence) {
    ag_params *ps;
    ag_tensor *w;
    ag_tape *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, SH(1), 0, &w), AG_OK);
    w->value[0] = (ag_real)0.9;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const double h0 = 0.7, wv = (double)(ag_real)0.9;
    ag_tensor *H0 = ag_scalar(t, (ag_real)h0);
    ag_tensor *h1 = ag_tanh(t, ag_mul(t, w, H0));
    ag_tensor *h2 = ag_tanh(t, ag_mul(t, w, ag_detach(t, h1)));
    ck_assert_int_eq(ag_backward(t, ag_sum(t, h2)), AG_OK);
    const double a1 = tanh(wv * (double)(ag_real)h0), a2 = tanh(wv * (double)(ag_real)a1);
    assert_close("h2", (double)h2->value[0], a2);
    assert_close("dJ/dw", (double)w->grad[0], (1 - a2 * a2) * a1);
    ck_assert_ptr_null(h1->grad); /* no gradient went back past the detach */
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A detach of a parameter is a view of the store: refused once the store moves its buffers. */
START_TEST(detach_of_a_moved_parameter_is_refused) {
    ag_params *ps;
    ag_tensor *W, *V;
    ag_tape *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(2, 3), 0, &W), AG_OK);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *d = ag_detach(t, W);
    ck_assert_ptr_nonnull(d);
    const ag_real *old = ag_params_values(ps);
    ck_assert_int_eq(ag_params_add(ps, "V", 2, SH(64, 64), 0, &V), AG_OK);
    ck_assert_ptr_ne(ag_params_values(ps), old);
    ck_assert_ptr_null(ag_neg(t, d));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_STATE);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "neg: a view of a parameter (the result of detach) was recorded before its "
                                            "store moved its buffers"),
                  "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- ops without backward */

/* z = X W^T (2 x 3 rows of logits, W 3 x 2). */
static const ag_real XV[4] = {1, -0.5, 0.25, 2};
static void make_w(ag_params **ps, ag_tensor **W) {
    ck_assert_int_eq(ag_params_new(ps), AG_OK);
    ck_assert_int_eq(ag_params_add(*ps, "W", 2, SH(3, 2), 0, W), AG_OK);
    const ag_real w[6] = {0.5, -1, 1.5, 0.25, -0.75, 1};
    memcpy((*W)->value, w, sizeof w);
}

/* argmax of logits that require a gradient, kept out of the loss (the accuracy): backward runs, and
 * W's gradient is that of the loss alone. J = sum(z^2): dJ/dW = 2 z^T X. */
START_TEST(no_backward_off_the_gradient_path_is_fine) {
    ag_params *ps;
    ag_tensor *W;
    ag_tape *t;
    make_w(&ps, &W);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *X = ag_tensor_from(t, 2, SH(2, 2), XV);
    ag_tensor *z = ag_matmul_ex(t, X, W, 0, 1);
    ag_tensor *J = ag_sum(t, ag_square(t, z));
    ag_tensor *pred = ag_call(t, &argmax_op, &z, 1, NULL); /* recorded after the loss, as usual */
    ck_assert_ptr_nonnull(pred);
    ck_assert_uint_ne(pred->flags & AG_REQUIRES_GRAD, 0); /* not cut off silently */
    /* z = [[1*.5 - .5*-1, 1*1.5 - .5*.25, 1*-.75 - .5*1], [.25*.5 + 2*-1, .25*1.5 + 2*.25, .25*-.75 + 2*1]]
     *   = [[1, 1.375, -1.25], [-1.875, 0.875, 1.8125]]: argmax 1 and 2 */
    ck_assert(pred->value[0] == 1 && pred->value[1] == 2);
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    const double zv[2][3] = {{1, 1.375, -1.25}, {-1.875, 0.875, 1.8125}};
    for (int j = 0; j < 3; j++)
        for (int c = 0; c < 2; c++) {
            double g = 0;
            for (int k = 0; k < 2; k++) g += 2 * zv[k][j] * (double)XV[k * 2 + c];
            assert_close("dW", (double)W->grad[j * 2 + c], g);
        }
    ck_assert_ptr_null(pred->grad);

    /* on data (needs no gradient) inside the loss: J = sum(argmax(X2) .* v), dJ/dv = argmax(X2) */
    ag_tape_reset(t);
    ag_params *ps2;
    ag_tensor *v;
    ck_assert_int_eq(ag_params_new(&ps2), AG_OK);
    ck_assert_int_eq(ag_params_add(ps2, "v", 1, SH(2), 0, &v), AG_OK);
    ag_tensor *X2 = ag_tensor_from(t, 2, SH(2, 3), (ag_real[]){0, 5, 1, 7, 2, 3});
    ag_tensor *a = ag_call(t, &argmax_op, &X2, 1, NULL);
    ck_assert_uint_eq(a->flags & AG_REQUIRES_GRAD, 0);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, ag_mul(t, a, v))), AG_OK);
    ck_assert(v->grad[0] == 1 && v->grad[1] == 0);
    ag_params_free(ps2);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* J = sum(z) + sum(argmax(z)): before, W silently got the gradient of sum(z) alone. Now backward
 * fails naming the op; detaching its input makes that gradient the intended one:
 * dJ/dW[j, c] = sum_k X[k, c] = (1.25, 1.5) for every j. */
START_TEST(no_backward_on_the_gradient_path_fails) {
    ag_params *ps;
    ag_tensor *W;
    ag_tape *t;
    make_w(&ps, &W);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int detach = 0; detach < 2; detach++) {
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        ag_tensor *X = ag_tensor_from(t, 2, SH(2, 2), XV);                   /* #0 */
        ag_tensor *z = ag_matmul_ex(t, X, W, 0, 1);                          /* #1 */
        ag_tensor *in = detach ? ag_detach(t, z) : z;                        /* (#2) */
        ag_tensor *pred = ag_call(t, &argmax_op, &in, 1, NULL);             /* #2 or #3 */
        ag_tensor *J = ag_add(t, ag_sum(t, z), ag_sum(t, pred));
        ck_assert_ptr_nonnull(J);
        ag_status st = ag_backward(t, J);
        if (!detach) {
            ck_assert_int_eq(st, AG_ERR_STATE);
            ck_assert_int_eq(ag_tape_status(t), AG_ERR_STATE);
            ck_assert_str_eq(ag_tape_errmsg(t), "argmax_rows: has no backward, but a gradient reaches its 2 result "
                                                "(node #2); detach its input (ag_detach) or give the op a backward");
            continue;
        }
        ck_assert_int_eq(st, AG_OK);
        for (int j = 0; j < 3; j++) {
            ck_assert(W->grad[j * 2] == (ag_real)1.25);
            ck_assert(W->grad[j * 2 + 1] == (ag_real)1.5);
        }
    }
    /* seeded at the op's own result */
    ag_tape_reset(t);
    ag_tensor *X = ag_tensor_from(t, 2, SH(2, 2), XV);
    ag_tensor *z = ag_matmul_ex(t, X, W, 0, 1);
    ag_tensor *pred = ag_call(t, &argmax_op, &z, 1, NULL);
    ck_assert_int_eq(ag_backward_seed(t, pred, (ag_real[]){1, 1}), AG_ERR_STATE);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "argmax_rows: has no backward, but a gradient reaches its 2 result (node #2)"),
                  "%s", ag_tape_errmsg(t));
    /* no-grad mode: nothing is recorded for backward, so nothing fails */
    ag_tape_reset(t);
    ag_tape_set_grad_enabled(t, 0);
    z = ag_matmul_ex(t, ag_tensor_from(t, 2, SH(2, 2), XV), W, 0, 1);
    pred = ag_call(t, &argmax_op, &z, 1, NULL);
    ck_assert_ptr_nonnull(pred);
    ck_assert_uint_eq(pred->flags & AG_REQUIRES_GRAD, 0);
    ag_tape_set_grad_enabled(t, 1);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- gradcheck of leaves */

typedef struct lctx {
    ag_tensor *W, *b;
    ag_real x[6];      /* the leaf: 2 x 3 */
    ag_real u[3];      /* a leaf the loss marks but does not use */
    int mode;
} lctx;

/* mode 0: J = sum((x W^T + b)^2) (+ u marked, unused); 1: J = sum(x1 .* x2), x wrapped twice;
 * 2: J = sum(bad_square(x)) + sum(W^2) */
static ag_tensor *leaf_loss(ag_tape *t, void *vctx) {
    lctx *c = vctx;
    ag_tensor *x = ag_tensor_wrap(t, 2, SH(2, 3), c->x);
    ag_requires_grad(x);
    if (c->mode == 1) {
        ag_tensor *x2 = ag_tensor_wrap(t, 1, SH(6), c->x);
        ag_requires_grad(x2);
        return ag_sum(t, ag_mul(t, ag_reshape(t, x, 1, SH(6)), x2));
    }
    if (c->mode == 2)
        return ag_add(t, ag_sum(t, ag_call(t, &bad_square_op, &x, 1, NULL)), ag_sum(t, ag_square(t, c->W)));
    ag_tensor *u = ag_tensor_wrap(t, 1, SH(3), c->u);
    ag_requires_grad(u);
    return ag_sum(t, ag_square(t, ag_linear(t, x, c->W, c->b)));
}

START_TEST(gradcheck_leaves_with_parameters) {
    ag_params *ps;
    ag_tape *t;
    lctx c = {.x = {0.5, -1, 0.25, 2, -0.75, 1}, .u = {1, 2, 3}};
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(4, 3), 0, &c.W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, SH(4), 0, &c.b), AG_OK);
    for (int i = 0; i < 12; i++) c.W->value[i] = (ag_real)(0.1 * i - 0.5);
    for (int i = 0; i < 4; i++) c.b->value[i] = (ag_real)(0.05 * i);
    ag_real W0[12], x0[6], u0[3];
    memcpy(W0, c.W->value, sizeof W0);
    memcpy(x0, c.x, sizeof x0);
    memcpy(u0, c.u, sizeof u0);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const double eps = sizeof(ag_real) == 8 ? 1e-6 : 1e-2;

    /* the leaf x, the unused leaf u and both parameters: dJ/dx[k, i] = sum_j 2 z[k, j] W[j, i],
     * z = x W^T + b; dJ/du = 0 */
    ag_real gx[6], gu[3] = {7, 7, 7};
    ag_gradcheck_result res;
    ag_gradcheck_leaf leaves[2] = {{c.x, 6, gx}, {c.u, 3, gu}};
    ck_assert_int_eq(ag_gradcheck_leaves(t, leaf_loss, &c, (ag_tensor *[]){c.W, c.b}, 2, leaves, 2, eps, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 12 + 4 + 6 + 3);
    ck_assert_msg(res.max_rel_err <= AG_TEST_GRAD_TOL, "max_rel_err %g at tensor %zu [%zu]", res.max_rel_err,
                  res.worst_tensor, res.worst_index);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++) {
            double g = 0;
            for (int j = 0; j < 4; j++) {
                double z = (double)c.b->value[j];
                for (int m = 0; m < 3; m++) z += (double)x0[k * 3 + m] * (double)W0[j * 3 + m];
                g += 2 * z * (double)W0[j * 3 + i];
            }
            assert_close("dx", (double)gx[k * 3 + i], g);
        }
    ck_assert(gu[0] == 0 && gu[1] == 0 && gu[2] == 0);
    ck_assert_int_eq(memcmp(c.x, x0, sizeof x0), 0); /* restored exactly */
    ck_assert_int_eq(memcmp(c.u, u0, sizeof u0), 0);
    ck_assert_int_eq(memcmp(c.W->value, W0, sizeof W0), 0);
    ck_assert_uint_eq(ag_tape_node_count(t), 0); /* reset after the check */

    /* leaves only, the same buffer wrapped twice: J = sum x^2, dJ/dx = 2x (both wraps add up) */
    c.mode = 1;
    ck_assert_int_eq(ag_gradcheck_leaves(t, leaf_loss, &c, NULL, 0, leaves, 1, eps, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 6);
    ck_assert_msg(res.max_rel_err <= AG_TEST_GRAD_TOL, "max_rel_err %g", res.max_rel_err);
    for (int i = 0; i < 6; i++) ck_assert(gx[i] == 2 * x0[i]);

    /* a wrong backward on the leaf is caught and blamed on it (tensor n_params + 0 = 1): analytic x
     * against numeric 2x, so |error| = |x| (largest at x = 2) and relative |x| / max(2|x|, 1) = 1/2
     * for |x| >= 1/2; W's part is right */
    c.mode = 2;
    ck_assert_int_eq(ag_gradcheck_leaves(t, leaf_loss, &c, &c.W, 1, leaves, 1, eps, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 12 + 6);
    ck_assert_uint_eq(res.worst_tensor, 1);
    ck_assert_double_eq_tol(res.max_rel_err, 0.5, 1e-3);
    ck_assert_double_eq_tol(res.max_abs_err, 2, 2e-3);
    ck_assert_double_eq_tol(res.numeric, 2 * res.analytic, 2e-3);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- giving back arena memory */

enum { B = 1024, IN = 8, D = 64 }; /* B x D reals: 256 KiB in float; small products (valgrind) */

typedef struct net {
    ag_params *ps;
    ag_tensor *W;
    ag_real *x, *y; /* B x IN, B x D */
} net;

/* One training step, about 1.5 MiB of arena (three B x D results and their gradients):
 * J = squared_error(tanh(sigmoid(X W^T)), Y). */
static double train_step(ag_tape *t, net *n) {
    ag_tape_reset(t);
    ag_tensor *X = ag_tensor_wrap(t, 2, SH(B, IN), n->x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, SH(B, D), n->y);
    ag_tensor *h = ag_tanh(t, ag_sigmoid(t, ag_linear(t, X, n->W, NULL)));
    ag_tensor *J = ag_squared_error(t, h, Y);
    ag_params_zero_grad(n->ps);
    ck_assert_msg(ag_backward(t, J) == AG_OK, "%s", ag_tape_errmsg(t));
    return (double)J->value[0];
}

/* An evaluation of `images` batches in no-grad mode on one tape step: the arena grows with it. */
static void big_eval(ag_tape *t, net *n, int images) {
    ag_tape_reset(t);
    int was = ag_tape_set_grad_enabled(t, 0);
    for (int i = 0; i < images; i++)
        ck_assert_ptr_nonnull(ag_sigmoid(t, ag_linear(t, ag_tensor_wrap(t, 2, SH(B, IN), n->x), n->W, NULL)));
    ag_tape_set_grad_enabled(t, was);
}

static size_t step_allocs(ag_tape *t, net *n, double want_loss) {
    size_t before = ag_test_alloc_count();
    double loss = train_step(t, n);
    ck_assert_msg(loss == want_loss, "loss %.17g, want %.17g", loss, want_loss);
    return ag_test_alloc_count() - before;
}

START_TEST(shrink_gives_back_what_a_big_pass_took) {
    net n;
    ag_tape *t;
    ag_test_alloc_install(); /* from the start: every chunk the tape frees was counted */
    ck_assert_int_eq(ag_params_new(&n.ps), AG_OK);
    ck_assert_int_eq(ag_params_add(n.ps, "W", 2, SH(D, IN), 0, &n.W), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 22);
    ag_rng_fill_normal(&rng, n.W->value, n.W->size, 0, 0.5);
    n.x = malloc((size_t)B * (IN + D) * sizeof(ag_real));
    ck_assert_ptr_nonnull(n.x);
    n.y = n.x + B * IN;
    ag_rng_fill_uniform(&rng, n.x, (size_t)B * (IN + D), 0, 1);
    const size_t initial = (size_t)1 << 20; /* ag_tape_new's default */
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), initial);

    const double loss = train_step(t, &n); /* warm-up: the arena and the GEMM's packing buffers */
    train_step(t, &n);
    const size_t train_cap = ag_tape_mem_capacity(t);
    ck_assert_uint_gt(train_cap, initial); /* the step outgrows the first chunk */

    const int images = ag_test_quick() ? 24 : 64; /* two results of 256 KiB each (float) */
    big_eval(t, &n, images);
    const size_t big_cap = ag_tape_mem_capacity(t);
    ck_assert_uint_ge(big_cap, (size_t)images * B * D * sizeof(ag_real));

    /* not before a reset: nothing is freed */
    ck_assert_int_eq(ag_tape_shrink(t, 0), AG_ERR_STATE);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), big_cap);
    ag_tape_clear_error(t);

    /* shrink(0): back to the first chunk; the next step regrows on its first run only */
    ag_tape_reset(t);
    const size_t live = ag_test_alloc_live();
    ck_assert_int_eq(ag_tape_shrink(t, 0), AG_OK);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), initial);
    ck_assert_uint_lt(ag_test_alloc_live(), live); /* the chunks went back to the allocator */
    ck_assert_uint_gt(step_allocs(t, &n, loss), 0);
    ck_assert_uint_eq(step_allocs(t, &n, loss), 0);
    ck_assert_uint_eq(step_allocs(t, &n, loss), 0);

    /* shrink(what the step uses): the step allocates nothing at all */
    const size_t step_cap = ag_tape_mem_capacity(t);
    big_eval(t, &n, images);
    ck_assert_uint_gt(ag_tape_mem_capacity(t), step_cap);
    ag_tape_reset(t);
    ck_assert_int_eq(ag_tape_shrink(t, step_cap), AG_OK);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), step_cap);
    ck_assert_uint_eq(step_allocs(t, &n, loss), 0);

    /* keep_bytes larger than the arena: nothing to free; shrink of an empty fresh tape: fine */
    ag_tape_reset(t);
    ck_assert_int_eq(ag_tape_shrink(t, (size_t)-1), AG_OK);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), step_cap);
    ag_tape_free(t);
    ag_test_alloc_uninstall();
    free(n.x);
    ag_params_free(n.ps);
}
END_TEST

/* A caller's buffer is never freed: shrink keeps it, whatever keep_bytes says. */
START_TEST(shrink_keeps_a_callers_buffer) {
    static _Alignas(64) char mem[1 << 16];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = sizeof mem, .mem_buffer = mem}), AG_OK);
    const size_t cap = ag_tape_mem_capacity(t);
    ck_assert_ptr_nonnull(ag_exp(t, ag_tensor_new(t, 1, SH(100))));
    ag_tape_reset(t);
    ck_assert_int_eq(ag_tape_shrink(t, 0), AG_OK);
    ck_assert_uint_eq(ag_tape_mem_capacity(t), cap);
    ag_tensor *y = ag_exp(t, ag_tensor_new(t, 1, SH(100)));
    ck_assert_ptr_nonnull(y);
    ck_assert((char *)y->value >= mem && (char *)y->value < mem + sizeof mem);
    ag_tape_free(t);
    ck_assert_int_eq(ag_tape_shrink(NULL, 0), AG_ERR_ARG);
}
END_TEST

static Suite *grad_plumbing_suite(void) {
    Suite *s = suite_create("grad_plumbing");
    TCase *tc = tcase_create("grad_plumbing");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, detach_is_a_view_that_stops_the_gradient);
    tcase_add_test(tc, ops_on_a_detached_tensor_alone_need_no_gradient);
    tcase_add_test(tc, detach_truncates_a_recurrence);
    tcase_add_test(tc, detach_of_a_moved_parameter_is_refused);
    tcase_add_test(tc, no_backward_off_the_gradient_path_is_fine);
    tcase_add_test(tc, no_backward_on_the_gradient_path_fails);
    tcase_add_test(tc, gradcheck_leaves_with_parameters);
    tcase_add_test(tc, shrink_gives_back_what_a_big_pass_took);
    tcase_add_test(tc, shrink_keeps_a_callers_buffer);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(grad_plumbing_suite)

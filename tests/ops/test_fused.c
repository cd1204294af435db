/*
 * test_fused.c - the fused dense-layer op linear_act (a = f(x W^T + b) as one node, ag_linear_act in ag.h):
 * gradient checks for every activation with and without a bias and with x requiring a gradient,
 * bit-identical values and gradients against the unfused ag_linear + activation pair, the dense
 * layer's choice between the two, errors, and accumulation into existing gradients.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/dense.h>
#include "internal.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define GC_EPS 1e-6
#else
#define GC_EPS 1e-2
#endif

static const int ACTS[] = {AG_ACT_IDENTITY, AG_ACT_SIGMOID, AG_ACT_TANH, AG_ACT_RELU};
static const char *const ACT_NAMES[] = {"identity", "sigmoid", "tanh", "relu"};

/* ---------------------------------------------------------------- gradient checks
 * loss = sum_ij r_ij a_ij with fixed random weights r, a = linear_act(x, W, b). */

typedef struct gc {
    ag_tensor *x, *W, *b; /* parameters (x too, so dx is checked); b may be NULL */
    int act;
    const ag_real *r;
} gc;

static ag_tensor *wsum(ag_tape *t, ag_tensor *y, const ag_real *r) {
    ag_tensor *rt = ag_tensor_wrap(t, y->ndim, y->shape, (ag_real *)r);
    return ag_sum(t, ag_mul(t, y, rt));
}

static ag_tensor *gc_loss(ag_tape *t, void *vctx) {
    gc *c = vctx;
    ag_tensor *a = ag_linear_act(t, c->x, c->W, c->b, c->act);
    return a ? wsum(t, a, c->r) : NULL;
}

static void fill(ag_rng *rng, ag_real *v, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) v[i] = (ag_real)(lo + (hi - lo) * ag_rng_uniform(rng));
}

static void check_one(int act, int with_bias, size_t K, size_t in, size_t out, uint64_t seed) {
    ag_rng rng;
    ag_rng_seed(&rng, seed);
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *x, *W, *b = NULL;
    ck_assert_int_eq(ag_params_add(ps, "x", 2, (size_t[]){K, in}, 0, &x), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){out, in}, AG_DECAY, &W), AG_OK);
    if (with_bias) ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){out}, 0, &b), AG_OK);
    /* relu: redraw until every pre-activation is at least 0.15 away from the kink, so that the
     * central differences (steps of GC_EPS, moving z by at most ~GC_EPS) never straddle it */
    for (int tries = 0;; tries++) {
        ck_assert_int_lt(tries, 1000);
        fill(&rng, x->value, x->size, -1, 1);
        fill(&rng, W->value, W->size, -1, 1);
        if (b) fill(&rng, b->value, b->size, -0.5, 0.5);
        if (act != AG_ACT_RELU) break;
        ag_tape *t0;
        ck_assert_int_eq(ag_tape_new(&t0, NULL), AG_OK);
        ag_tensor *z = ag_linear(t0, x, W, b);
        ck_assert_ptr_nonnull(z);
        double minabs = 1e9;
        for (size_t i = 0; i < z->size; i++) { /* not fmin: gcc 12 for aarch64 crashes vectorising it */
            double v = fabs((double)z->value[i]);
            if (v < minabs) minabs = v;
        }
        ag_tape_free(t0);
        if (minabs >= 0.15) break;
    }
    ag_real r[512];
    ck_assert_uint_le(K * out, 512);
    fill(&rng, r, K * out, -1, 1);
    gc c = {x, W, b, act, r};
    ag_tensor *wrt[3] = {x, W, b};
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ag_status st = ag_gradcheck(t, gc_loss, &c, wrt, with_bias ? 3 : 2, GC_EPS, &res);
    if (st != AG_OK) fprintf(stderr, "%s\n", ag_tape_errmsg(t));
    ck_assert_int_eq(st, AG_OK);
    fprintf(stderr, "gradcheck linear_act %-8s %s K=%zu %zux%zu %s rel %.3g\n", ACT_NAMES[act],
            with_bias ? "bias   " : "no bias", K, out, in, AG_REAL_NAME, res.max_rel_err);
    ck_assert_msg(res.max_rel_err <= AG_TEST_GRAD_TOL, "linear_act %s: relative error %g", ACT_NAMES[act],
                  res.max_rel_err);
    /* backward adds: the check left the gradient g of x, W, b in ->grad; one more backward without
     * zeroing must leave 2 g in each (x's comes from the dx GEMM, which must run with beta = 1) */
    const size_t numel = ag_params_numel(ps);
    ag_real g1[512];
    ck_assert_uint_le(numel, 512);
    memcpy(g1, ag_params_grads(ps), numel * sizeof(ag_real));
    ag_tape_reset(t);
    ag_tensor *loss = gc_loss(t, &c);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    for (int k = 0; k < (with_bias ? 3 : 2); k++) {
        const ag_real *g2 = wrt[k]->grad, *g = g1 + (wrt[k]->grad - ag_params_grads(ps));
        double gmax = 0;
        for (size_t i = 0; i < wrt[k]->size; i++) gmax = ag_test_worse(gmax, fabs((double)g[i]));
        ck_assert_msg(gmax > 0, "linear_act %s: input %d has no gradient", ACT_NAMES[act], k);
        for (size_t i = 0; i < wrt[k]->size; i++)
            ck_assert_msg(fabs((double)g2[i] - 2.0 * g[i]) <= 1e-4 * gmax,
                          "linear_act %s: input %d [%zu] is %g after two passes, want 2 x %g (backward must add)",
                          ACT_NAMES[act], k, i, (double)g2[i], (double)g[i]);
    }
    ag_tape_free(t);
    ag_params_free(ps);
}

START_TEST(gradcheck_every_activation) {
    for (int a = 0; a < 4; a++)
        for (int bias = 0; bias <= 1; bias++) {
            check_one(ACTS[a], bias, 5, 7, 3, 100 + 10 * (uint64_t)a + (uint64_t)bias);
            check_one(ACTS[a], bias, 1, 4, 6, 200 + 10 * (uint64_t)a + (uint64_t)bias); /* one row */
        }
}
END_TEST

/* ---------------------------------------------------------------- fused == unfused, bit for bit */

static ag_tensor *unfused(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b, int act) {
    ag_tensor *z = ag_linear(t, x, W, b);
    switch (act) {
    case AG_ACT_SIGMOID: return ag_sigmoid(t, z);
    case AG_ACT_TANH: return ag_tanh(t, z);
    case AG_ACT_RELU: return ag_relu(t, z);
    default: return z;
    }
}

START_TEST(matches_unfused_exactly) {
    enum { K = 33, IN = 70, OUT = 19 };
    for (int a = 0; a < 4; a++) {
        ag_rng rng;
        ag_rng_seed(&rng, 7 + (uint64_t)a);
        ag_params *ps;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ag_tensor *W, *b;
        ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){OUT, IN}, AG_DECAY, &W), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){OUT}, 0, &b), AG_OK);
        fill(&rng, W->value, W->size, -0.3, 0.3);
        fill(&rng, b->value, b->size, -0.3, 0.3);
        static ag_real xv[K * IN], r[K * OUT];
        fill(&rng, xv, K * IN, -1, 1);
        fill(&rng, r, K * OUT, -1, 1);
        static ag_real val[2][K * OUT], gW[2][OUT * IN], gb[2][OUT], gx[2][K * IN];
        for (int fused = 0; fused <= 1; fused++) {
            ag_tape *t;
            ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
            ag_params_zero_grad(ps);
            ag_tensor *x = ag_tensor_wrap(t, 2, (size_t[]){K, IN}, xv);
            ck_assert_int_eq(ag_requires_grad(x), AG_OK);
            ag_tensor *y = fused ? ag_linear_act(t, x, W, b, ACTS[a]) : unfused(t, x, W, b, ACTS[a]);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(ag_backward(t, wsum(t, y, r)), AG_OK);
            memcpy(val[fused], y->value, sizeof val[0]);
            memcpy(gW[fused], W->grad, sizeof gW[0]);
            memcpy(gb[fused], b->grad, sizeof gb[0]);
            memcpy(gx[fused], x->grad, sizeof gx[0]);
            ag_tape_free(t);
        }
        ck_assert_msg(memcmp(val[0], val[1], sizeof val[0]) == 0, "%s: values differ", ACT_NAMES[a]);
        ck_assert_msg(memcmp(gW[0], gW[1], sizeof gW[0]) == 0, "%s: dW differs", ACT_NAMES[a]);
        ck_assert_msg(memcmp(gb[0], gb[1], sizeof gb[0]) == 0, "%s: db differs", ACT_NAMES[a]);
        ck_assert_msg(memcmp(gx[0], gx[1], sizeof gx[0]) == 0, "%s: dx differs", ACT_NAMES[a]);
        ag_params_free(ps);
    }
}
END_TEST

/* backward accumulates: two backward passes (two tapes) without zeroing give twice the gradient */
START_TEST(backward_accumulates) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W, *b;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){3, 4}, AG_DECAY, &W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){3}, 0, &b), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 3);
    fill(&rng, W->value, W->size, -1, 1);
    fill(&rng, b->value, b->size, -1, 1);
    ag_real xv[8], once[15];
    fill(&rng, xv, 8, -1, 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int pass = 0; pass < 2; pass++) {
        ag_tape_reset(t);
        ag_tensor *a = ag_linear_act(t, ag_tensor_wrap(t, 2, (size_t[]){2, 4}, xv), W, b, AG_ACT_SIGMOID);
        ck_assert_int_eq(ag_backward(t, ag_sum(t, a)), AG_OK);
        if (pass == 0) {
            memcpy(once, W->grad, 12 * sizeof(ag_real));
            memcpy(once + 12, b->grad, 3 * sizeof(ag_real));
        }
    }
    for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(W->grad[i], 2 * once[i], 1e-6);
    for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(b->grad[i], 2 * once[12 + i], 1e-6);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- the dense layer's choice */

START_TEST(dense_fuses_unless_z_is_asked_for) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_dense d;
    ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 5, 4, AG_ACT_RELU), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 11);
    ck_assert_int_eq(ag_dense_init_weights(&d, AG_INIT_HE_NORMAL, &rng), AG_OK);
    ag_real xv[15];
    fill(&rng, xv, 15, -1, 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_wrap(t, 2, (size_t[]){3, 5}, xv);
    size_t n0 = ag_tape_node_count(t);
    ag_tensor *a1 = ag_dense_forward(t, &d, x, NULL); /* fused: one node */
    ck_assert_ptr_nonnull(a1);
    ck_assert_uint_eq(ag_tape_node_count(t), n0 + 1);
    ag_tensor *z;
    ag_tensor *a2 = ag_dense_forward(t, &d, x, &z); /* z wanted: linear + relu */
    ck_assert_ptr_nonnull(a2);
    ck_assert_ptr_nonnull(z);
    ck_assert_uint_eq(ag_tape_node_count(t), n0 + 3);
    ck_assert_int_eq(memcmp(a1->value, a2->value, 12 * sizeof(ag_real)), 0);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(errors) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W, *b;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){3, 4}, AG_DECAY, &W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){3}, 0, &b), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_new(t, 2, (size_t[]){2, 5});
    ck_assert_ptr_null(ag_linear_act(t, x, W, b, AG_ACT_RELU));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "linear_act: x is 2x5 but W is 3x4 (expects x to be K x 4)");
    ag_tape_reset(t);
    x = ag_tensor_new(t, 2, (size_t[]){2, 4});
    ck_assert_ptr_null(ag_linear_act(t, x, W, b, 9));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_ARG);
    ck_assert_str_eq(ag_tape_errmsg(t), "linear_act: unknown activation 9");
    ag_tape_reset(t);
    x = ag_tensor_new(t, 2, (size_t[]){2, 4});
    ck_assert_ptr_null(ag_linear_act(t, NULL, W, b, AG_ACT_RELU));
    ck_assert_str_eq(ag_tape_errmsg(t), "linear_act: input 0 is NULL");
    /* the failure propagates: a NULL bias while the tape holds an error is a failed result */
    ck_assert_ptr_null(ag_linear_act(t, x, W, NULL, AG_ACT_RELU));
    ck_assert_str_eq(ag_tape_errmsg(t), "linear_act: input 0 is NULL");
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A NaN input stays NaN through every activation, as op and fused (relu once mapped it to 0, which
 * hid a blown-up layer from everything after it); -0 through relu gives +0, as max(x, 0) did. */
START_TEST(activations_keep_nan) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (size_t a = 0; a < sizeof ACTS / sizeof ACTS[0]; a++) {
        ag_tensor *v = ag_tensor_from(t, 1, (size_t[]){4}, (ag_real[]){(ag_real)NAN, -0.0f, -1, 2});
        ag_tensor *y = ACTS[a] == AG_ACT_SIGMOID ? ag_sigmoid(t, v)
                       : ACTS[a] == AG_ACT_TANH  ? ag_tanh(t, v)
                       : ACTS[a] == AG_ACT_RELU  ? ag_relu(t, v)
                                                  : v;
        ck_assert_msg(isnan(y->value[0]), "%s(NaN) = %g", ACT_NAMES[a], (double)y->value[0]);
        if (ACTS[a] == AG_ACT_RELU) {
            ck_assert(y->value[1] == 0 && !signbit(y->value[1]));
            ck_assert_double_eq(y->value[2], 0);
            ck_assert_double_eq(y->value[3], 2);
        }
        /* fused: row 0 of x holds a NaN, so all of row 0 of x W^T + b is NaN; row 1 is finite */
        ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){(ag_real)NAN, 1, 0.5f, -1});
        ag_tensor *W = ag_tensor_from(t, 2, (size_t[]){3, 2}, (ag_real[]){1, 2, -3, 1, 0.5f, -0.5f});
        ag_tensor *b = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){0.25f, 0, -4});
        ag_tensor *f = ag_linear_act(t, x, W, b, ACTS[a]);
        ck_assert_ptr_nonnull(f);
        for (int j = 0; j < 3; j++) {
            ck_assert_msg(isnan(f->value[j]), "fused %s: row 0 col %d is %g", ACT_NAMES[a], j, (double)f->value[j]);
            ck_assert(isfinite(f->value[3 + j]));
        }
    }
    ag_tape_free(t);
}
END_TEST

/* the SIMD sigmoid gives every element exactly the scalar's bits, whatever its lane or offset */
START_TEST(sigmoid_array_is_the_scalar) {
    enum { N = 4099 };
    static ag_real x[N + 1], o[N + 1];
    ag_rng rng;
    ag_rng_seed(&rng, 5);
    for (int i = 0; i < N; i++) x[i] = (ag_real)(200 * ag_rng_uniform(&rng) - 100);
    const ag_real special[] = {0, -0.0f, 1e-30f, -1e-30f, -87.3f, 87.3f, -87.30001f, 87.30001f, -88, 88, -1000,
                               1000, (ag_real)INFINITY, (ag_real)-INFINITY, (ag_real)NAN, (ag_real)-NAN, 2, -2};
    memcpy(x, special, sizeof special);
    for (int off = 0; off <= 1; off++) {
        ag__sigmoid_array(x + off, o, N - (size_t)off);
        for (int i = 0; i < N - off; i++) {
            ag_real ref = ag__sigmoid1(x[i + off]);
            ck_assert_msg(memcmp(&ref, &o[i], sizeof ref) == 0 || (isnan(ref) && isnan(o[i])),
                          "sigmoid(%.9g): array %.9g, scalar %.9g", (double)x[i + off], (double)o[i], (double)ref);
        }
    }
    memcpy(o, x, sizeof x);
    ag__sigmoid_array(o, o, N); /* in place */
    for (int i = 0; i < N; i++) {
        ag_real ref = ag__sigmoid1(x[i]);
        ck_assert(memcmp(&ref, &o[i], sizeof ref) == 0 || (isnan(ref) && isnan(o[i])));
    }
    ck_assert(isnan(o[14]));
    ck_assert_double_eq(o[12], 1);
    ck_assert_double_eq(o[13], 0);
}
END_TEST

static Suite *fused_suite(void) {
    Suite *s = suite_create("fused");
    TCase *tc = tcase_create("linear_act");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gradcheck_every_activation);
    tcase_add_test(tc, matches_unfused_exactly);
    tcase_add_test(tc, backward_accumulates);
    tcase_add_test(tc, activations_keep_nan);
    tcase_add_test(tc, dense_fuses_unless_z_is_asked_for);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, sigmoid_array_is_the_scalar);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(fused_suite)

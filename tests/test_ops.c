/*
 * test_ops.c - every built-in op of ag.h: a central-difference gradient check (ag_gradcheck) on
 * seeded random shapes, broadcasting shapes included, and value checks against references
 * computed here in double (never by the code under test).
 *
 * Non-scalar results are reduced to a scalar by a test-local op, loss = sum_i r_i y_i with fixed
 * random r, so every output element is weighted differently and no built-in op is needed to
 * check another one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define GC_EPS 1e-6
#else
#define GC_EPS 1e-2
#endif

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

/* ---------------------------------------------------------------- the gradcheck driver */

enum { ANY, POS, AWAY }; /* value domains: [-1,1]; [0.5,2]; |x| in [0.3,1.5], either sign */

typedef ag_tensor *(*build_fn)(ag_tape *t, ag_tensor *const *p, const void *arg);

typedef struct gc_ctx {
    build_fn build;
    const void *arg;
    ag_tensor *const *p;
    ag_real r[1024]; /* loss weights */
} gc_ctx;

static ag_tensor *gc_loss(ag_tape *t, void *vctx) {
    gc_ctx *c = vctx;
    ag_tensor *y = c->build(t, c->p, c->arg);
    if (!y) return NULL;
    ck_assert_uint_le(y->size, 1024);
    ag_tensor *r = ag_tensor_wrap(t, y->ndim, y->shape, c->r);
    return ag_call(t, &wsum_op, (ag_tensor *[]){y, r}, 2, NULL);
}

typedef struct gc_input {
    int ndim;
    size_t shape[4];
    int domain;
} gc_input;

static double g_worst; /* worst relative error of this process (printed per case) */

/* Builds n parameters with the given shapes and values, checks build's gradient w.r.t. all. */
static void gradcheck_case(const char *label, build_fn build, const void *arg, int n, const gc_input *in,
                           uint64_t seed) {
    ag_rng rng;
    ag_rng_seed(&rng, seed);
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *p[8];
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_int_eq(ag_params_add(ps, name, in[i].ndim, in[i].shape, 0, &p[i]), AG_OK);
    }
    for (int i = 0; i < n; i++) {
        ag_real *v = p[i]->value; /* re-read: adding moves the flat buffer */
        for (size_t j = 0; j < p[i]->size; j++) {
            double u = ag_rng_uniform(&rng);
            double s = ag_rng_uniform(&rng) < 0.5 ? -1 : 1;
            v[j] = (ag_real)(in[i].domain == ANY ? 2 * u - 1 : in[i].domain == POS ? 0.5 + 1.5 * u : s * (0.3 + 1.2 * u));
        }
    }
    gc_ctx ctx = {build, arg, p, {0}};
    for (int i = 0; i < 1024; i++) ctx.r[i] = (ag_real)(2 * ag_rng_uniform(&rng) - 1);

    /* keep a copy to prove the checker restores every value exactly */
    size_t numel = ag_params_numel(ps);
    ag_real before[4096];
    ck_assert_uint_le(numel, 4096);
    memcpy(before, ag_params_values(ps), numel * sizeof(ag_real));

    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ag_status st = ag_gradcheck(t, gc_loss, &ctx, p, (size_t)n, GC_EPS, &res);
    if (st != AG_OK) fprintf(stderr, "%s: %s\n", label, ag_tape_errmsg(t));
    ck_assert_int_eq(st, AG_OK);
    ck_assert_int_eq(memcmp(before, ag_params_values(ps), numel * sizeof(ag_real)), 0);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += p[i]->size;
    ck_assert_uint_eq(res.n_checked, total);
    fprintf(stderr, "gradcheck %-34s %s rel %.3g (abs %.3g, p%zu[%zu]: %.6g vs %.6g)\n", label, AG_REAL_NAME,
            res.max_rel_err, res.max_abs_err, res.worst_tensor, res.worst_index, res.analytic, res.numeric);
    if (res.max_rel_err > g_worst) g_worst = res.max_rel_err;
    ck_assert_msg(res.max_rel_err <= AG_TEST_GRAD_TOL, "%s: relative error %g > %g", label, res.max_rel_err,
                  AG_TEST_GRAD_TOL);
    ag_tape_free(t);
    ag_params_free(ps);
}

static size_t rdim(ag_rng *r) { return 1 + (size_t)ag_rng_below(r, 5); } /* 1..5 */

/* ---------------------------------------------------------------- element-wise, broadcasting */

typedef ag_tensor *(*binary_fn)(ag_tape *, ag_tensor *, ag_tensor *);
typedef ag_tensor *(*unary_fn)(ag_tape *, ag_tensor *);

static ag_tensor *build_binary(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return (*(const binary_fn *)arg)(t, p[0], p[1]);
}
static ag_tensor *build_unary(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return (*(const unary_fn *)arg)(t, p[0]);
}

static const struct {
    const char *name;
    binary_fn fn;
} binaries[] = {{"add", ag_add}, {"sub", ag_sub}, {"mul", ag_mul}, {"div", ag_div}};

static const struct {
    int na, nb;
    size_t a[4], b[4];
} bshapes[] = {
    {2, 2, {3, 4}, {3, 4}},       {2, 1, {3, 4}, {4}},    {3, 2, {2, 3, 4}, {3, 1}}, {1, 1, {5}, {1}},
    {0, 2, {0}, {3, 4}},          {2, 0, {3, 4}, {0}},    {2, 2, {4, 1}, {1, 5}},    {1, 3, {4}, {2, 3, 4}},
    {3, 2, {2, 1, 4}, {3, 1}},    {4, 1, {2, 1, 3, 2}, {2}}, {2, 2, {1, 4}, {4, 1}}, {4, 4, {2, 3, 1, 2}, {1, 3, 4, 1}},
};

START_TEST(gc_binary_broadcast) {
    for (size_t o = 0; o < sizeof binaries / sizeof binaries[0]; o++)
        for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++) {
            gc_input in[2] = {{bshapes[s].na, {0}, ANY}, {bshapes[s].nb, {0}, o == 3 ? AWAY : ANY}};
            memcpy(in[0].shape, bshapes[s].a, sizeof in[0].shape);
            memcpy(in[1].shape, bshapes[s].b, sizeof in[1].shape);
            char label[64], sa[32], sb[32];
            ag_tensor ta = {0}, tb = {0};
            ta.ndim = in[0].ndim;
            tb.ndim = in[1].ndim;
            memcpy(ta.shape, in[0].shape, sizeof ta.shape);
            memcpy(tb.shape, in[1].shape, sizeof tb.shape);
            snprintf(label, sizeof label, "%s %s,%s", binaries[o].name, ag_shape_str(&ta, sa, sizeof sa),
                     ag_shape_str(&tb, sb, sizeof sb));
            gradcheck_case(label, build_binary, &binaries[o].fn, 2, in, 100 + 16 * o + s);
        }
}
END_TEST

static ag_tensor *build_scale(ag_tape *t, ag_tensor *const *p, const void *arg) {
    (void)arg;
    return ag_scale(t, p[0], (ag_real)-1.7);
}
static ag_tensor *build_add_scalar(ag_tape *t, ag_tensor *const *p, const void *arg) {
    (void)arg;
    return ag_add_scalar(t, p[0], (ag_real)0.3);
}
static ag_tensor *build_pow(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_pow(t, p[0], (ag_real) * (const double *)arg);
}

START_TEST(gc_unary) {
    static const struct {
        const char *name;
        unary_fn fn;
        int domain;
    } ops[] = {{"neg", ag_neg, ANY},         {"exp", ag_exp, ANY},   {"log", ag_log, POS},
               {"square", ag_square, ANY},   {"sqrt", ag_sqrt, POS}, {"sigmoid", ag_sigmoid, ANY},
               {"tanh", ag_tanh, ANY},       {"relu", ag_relu, AWAY}};
    ag_rng r;
    ag_rng_seed(&r, 7);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int rank = 0; rank <= 3; rank++) {
            gc_input in = {rank, {rdim(&r), rdim(&r), rdim(&r), 1}, ops[o].domain};
            char label[64];
            snprintf(label, sizeof label, "%s rank %d", ops[o].name, rank);
            gradcheck_case(label, build_unary, &ops[o].fn, 1, &in, 200 + 8 * o + (uint64_t)rank);
        }
    for (int rank = 0; rank <= 2; rank++) {
        gc_input in = {rank, {rdim(&r), rdim(&r), 1, 1}, ANY};
        gradcheck_case("scale", build_scale, NULL, 1, &in, 300 + (uint64_t)rank);
        gradcheck_case("add_scalar", build_add_scalar, NULL, 1, &in, 310 + (uint64_t)rank);
    }
    /* pow: integer exponents on any sign, fractional and negative ones on positives */
    static const double pw[] = {2, 3, 2.5, -1.5, 0.5};
    for (size_t k = 0; k < sizeof pw / sizeof pw[0]; k++) {
        gc_input in = {2, {rdim(&r), rdim(&r), 1, 1}, pw[k] == (int)pw[k] && pw[k] > 0 ? ANY : POS};
        char label[64];
        snprintf(label, sizeof label, "pow %g", pw[k]);
        gradcheck_case(label, build_pow, &pw[k], 1, &in, 320 + k);
    }
}
END_TEST

/* ---------------------------------------------------------------- matmul, linear */

static ag_tensor *build_matmul_ex(ag_tape *t, ag_tensor *const *p, const void *arg) {
    const int *tr = arg;
    return ag_matmul_ex(t, p[0], p[1], tr[0], tr[1]);
}
static ag_tensor *build_matmul(ag_tape *t, ag_tensor *const *p, const void *arg) {
    (void)arg;
    return ag_matmul(t, p[0], p[1]);
}
static ag_tensor *build_linear(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_linear(t, p[0], p[1], *(const int *)arg ? p[2] : NULL);
}

START_TEST(gc_matmul_linear) {
    ag_rng r;
    ag_rng_seed(&r, 11);
    for (int rep = 0; rep < 2; rep++) {
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                size_t m = rdim(&r) + 1, k = rdim(&r) + 1, n = rdim(&r) + 1;
                gc_input in[2] = {{2, {ta ? k : m, ta ? m : k}, ANY}, {2, {tb ? n : k, tb ? k : n}, ANY}};
                int tr[2] = {ta, tb};
                char label[64];
                snprintf(label, sizeof label, "matmul_ex %d%d %zux%zux%zu", ta, tb, m, k, n);
                gradcheck_case(label, build_matmul_ex, tr, 2, in, 400 + 4 * (uint64_t)ta + 2 * (uint64_t)tb + 8 * (uint64_t)rep);
            }
        size_t m = rdim(&r), k = rdim(&r), n = rdim(&r);
        gc_input in[2] = {{2, {m, k}, ANY}, {2, {k, n}, ANY}};
        gradcheck_case("matmul", build_matmul, NULL, 2, in, 420 + (uint64_t)rep);
        size_t K = rdim(&r), nin = rdim(&r) + 1, nout = rdim(&r) + 1;
        gc_input lin[3] = {{2, {K, nin}, ANY}, {2, {nout, nin}, ANY}, {1, {nout}, ANY}};
        int with = 1, without = 0;
        gradcheck_case("linear with bias", build_linear, &with, 3, lin, 430 + (uint64_t)rep);
        gradcheck_case("linear without bias", build_linear, &without, 2, lin, 440 + (uint64_t)rep);
        gc_input lin1[3] = {{1, {nin}, ANY}, {2, {nout, nin}, ANY}, {1, {nout}, ANY}};
        gradcheck_case("linear 1-D x", build_linear, &with, 3, lin1, 450 + (uint64_t)rep);
    }
}
END_TEST

/* ---------------------------------------------------------------- reductions, softmax, shapes */

static ag_tensor *build_sum_axis(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_sum_axis(t, p[0], *(const int *)arg);
}
static ag_tensor *build_mean_axis(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_mean_axis(t, p[0], *(const int *)arg);
}
static ag_tensor *build_reshape(ag_tape *t, ag_tensor *const *p, const void *arg) {
    const gc_input *to = arg;
    return ag_reshape(t, p[0], to->ndim, to->shape);
}
/* reshape is a view: make the gradient pass through another op as well */
static ag_tensor *build_reshape_tanh(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_tanh(t, build_reshape(t, p, arg));
}

START_TEST(gc_reduce_softmax_shape) {
    ag_rng r;
    ag_rng_seed(&r, 13);
    for (int rank = 0; rank <= 4; rank++) {
        gc_input in = {rank, {rdim(&r), rdim(&r), rdim(&r), rdim(&r)}, ANY};
        char label[64];
        snprintf(label, sizeof label, "sum rank %d", rank);
        gradcheck_case(label, build_unary, &(unary_fn){ag_sum}, 1, &in, 500 + (uint64_t)rank);
        snprintf(label, sizeof label, "mean rank %d", rank);
        gradcheck_case(label, build_unary, &(unary_fn){ag_mean}, 1, &in, 510 + (uint64_t)rank);
        snprintf(label, sizeof label, "softmax rank %d", rank);
        gradcheck_case(label, build_unary, &(unary_fn){ag_softmax}, 1, &in, 520 + (uint64_t)rank);
        snprintf(label, sizeof label, "log_softmax rank %d", rank);
        gradcheck_case(label, build_unary, &(unary_fn){ag_log_softmax}, 1, &in, 530 + (uint64_t)rank);
        for (int axis = -rank; axis < rank; axis++) {
            snprintf(label, sizeof label, "sum_axis rank %d axis %d", rank, axis);
            gradcheck_case(label, build_sum_axis, &axis, 1, &in, 540 + (uint64_t)(rank * 10 + axis));
            snprintf(label, sizeof label, "mean_axis rank %d axis %d", rank, axis);
            gradcheck_case(label, build_mean_axis, &axis, 1, &in, 600 + (uint64_t)(rank * 10 + axis));
        }
    }
    /* softmax with a wide spread of logits */
    gc_input wide = {2, {3, 7}, ANY};
    gradcheck_case("softmax 3x7", build_unary, &(unary_fn){ag_softmax}, 1, &wide, 560);
    gradcheck_case("log_softmax 3x7", build_unary, &(unary_fn){ag_log_softmax}, 1, &wide, 561);

    gc_input from = {3, {2, 3, 4}, ANY};
    gc_input to1 = {2, {4, 6}, ANY}, to2 = {1, {24}, ANY}, to3 = {4, {1, 2, 12, 1}, ANY};
    gradcheck_case("reshape 2x3x4 -> 4x6", build_reshape_tanh, &to1, 1, &from, 570);
    gradcheck_case("reshape 2x3x4 -> 24", build_reshape, &to2, 1, &from, 571);
    gradcheck_case("reshape 2x3x4 -> 1x2x12x1", build_reshape_tanh, &to3, 1, &from, 572);
    gc_input one = {1, {1}, ANY}, scalar = {0, {0}, ANY};
    gradcheck_case("reshape 1 -> scalar", build_reshape_tanh, &scalar, 1, &one, 573);
    for (int rep = 0; rep < 3; rep++) {
        gc_input m = {2, {rdim(&r), rdim(&r), 1, 1}, ANY};
        gradcheck_case("transpose", build_unary, &(unary_fn){ag_transpose}, 1, &m, 580 + (uint64_t)rep);
    }
}
END_TEST

/* ---------------------------------------------------------------- losses */

static ag_tensor *build_se(ag_tape *t, ag_tensor *const *p, const void *arg) {
    (void)arg;
    return ag_squared_error(t, p[0], p[1]);
}
static ag_tensor *build_l2(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_l2(t, (ag_real)0.7, p, (size_t)*(const int *)arg);
}
typedef struct ce_arg {
    int32_t labels[8];
} ce_arg;
static ag_tensor *build_ce(ag_tape *t, ag_tensor *const *p, const void *arg) {
    return ag_cross_entropy(t, p[0], ((const ce_arg *)arg)->labels);
}
/* a 2-layer net: J = squared_error(sigmoid(linear(tanh(linear(X, W1, b1)), W2, b2)), Y) + l2(W1, W2) */
static ag_tensor *build_mlp(ag_tape *t, ag_tensor *const *p, const void *arg) {
    (void)arg;
    static ag_real x[4 * 3] = {0.1f, -0.4f, 0.9f, 0.3f, 0.8f, -0.2f, -0.7f, 0.5f, 0.6f, 0.05f, -0.9f, 0.2f};
    static ag_real y[4 * 2] = {0, 1, 1, 0, 0.5f, 0.2f, 0.9f, 0.1f};
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){4, 3}, x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){4, 2}, y);
    ag_tensor *a2 = ag_tanh(t, ag_linear(t, X, p[0], p[1]));
    ag_tensor *h = ag_sigmoid(t, ag_linear(t, a2, p[2], p[3]));
    return ag_add(t, ag_squared_error(t, h, Y), ag_l2(t, (ag_real)0.01, (ag_tensor *[]){p[0], p[2]}, 2));
}

START_TEST(gc_losses) {
    ag_rng r;
    ag_rng_seed(&r, 17);
    for (int rank = 0; rank <= 3; rank++) {
        gc_input in[2] = {{rank, {rdim(&r), rdim(&r), rdim(&r), 1}, ANY}, {rank, {0}, ANY}};
        memcpy(in[1].shape, in[0].shape, sizeof in[0].shape);
        char label[64];
        snprintf(label, sizeof label, "squared_error rank %d (h and y)", rank);
        gradcheck_case(label, build_se, NULL, 2, in, 700 + (uint64_t)rank);
    }
    for (int n = 1; n <= 3; n++) {
        gc_input in[3] = {{2, {3, 4}, ANY}, {1, {5}, ANY}, {3, {2, 2, 3}, ANY}};
        char label[64];
        snprintf(label, sizeof label, "l2 of %d tensors", n);
        gradcheck_case(label, build_l2, &n, n, in, 710 + (uint64_t)n);
    }
    for (int rep = 0; rep < 4; rep++) {
        size_t K = rdim(&r), C = rdim(&r) + 1;
        ce_arg a;
        for (size_t k = 0; k < K; k++) a.labels[k] = (int32_t)ag_rng_below(&r, C);
        gc_input in = {2, {K, C}, ANY};
        char label[64];
        snprintf(label, sizeof label, "cross_entropy %zux%zu", K, C);
        gradcheck_case(label, build_ce, &a, 1, &in, 720 + (uint64_t)rep);
    }
    ce_arg a1 = {{2}};
    gc_input in1 = {1, {5}, ANY};
    gradcheck_case("cross_entropy 1-D", build_ce, &a1, 1, &in1, 730);
    gc_input mlp[4] = {{2, {5, 3}, ANY}, {1, {5}, ANY}, {2, {2, 5}, ANY}, {1, {2}, ANY}};
    gradcheck_case("mlp linear/tanh/sigmoid/se/l2", build_mlp, NULL, 4, mlp, 740);
}
END_TEST

/* ---------------------------------------------------------------- value references */

static ag_tape *new_tape(void) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    return t;
}

START_TEST(softmax_values) {
    ag_tape *t = new_tape();
    ag_real x[2 * 4] = {1, 2, 3, 4, -50, 0, 50, 49.5f};
    ag_tensor *X = ag_tensor_from(t, 2, (size_t[]){2, 4}, x);
    ag_tensor *p = ag_softmax(t, X), *l = ag_log_softmax(t, X);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(l);
    for (int r = 0; r < 2; r++) {
        double s = 0, den = 0, ref[4];
        for (int j = 0; j < 4; j++) den += exp((double)x[r * 4 + j]);
        for (int j = 0; j < 4; j++) ref[j] = exp((double)x[r * 4 + j]) / den;
        for (int j = 0; j < 4; j++) s += p->value[r * 4 + j];
        ck_assert_double_eq_tol(s, 1, AG_TEST_EXACT_TOL * 4);
        ck_assert_double_le(ag_test_max_abs_diff("softmax", p->value + r * 4, ref, 4, AG_TEST_EXACT_TOL), AG_TEST_EXACT_TOL);
        double lref[4];
        for (int j = 0; j < 4; j++) lref[j] = (double)x[r * 4 + j] - log(den);
        ck_assert_double_le(ag_test_max_abs_diff("log_softmax", l->value + r * 4, lref, 4, 1e-4), 1e-4);
    }
    /* huge logits: no overflow */
    ag_tensor *big = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){1e4f, 0, -1e4f});
    ag_tensor *pb = ag_softmax(t, big), *lb = ag_log_softmax(t, big);
    ck_assert_double_eq_tol(pb->value[0], 1, 1e-12);
    ck_assert_double_eq(pb->value[1], 0);
    ck_assert(isfinite(lb->value[0]) && isfinite(lb->value[2]));
    ck_assert_double_eq_tol(lb->value[2], -2e4, 1e-2);
    ag_tape_free(t);
}
END_TEST

START_TEST(cross_entropy_large_logits) {
    ag_tape *t = new_tape();
    ag_params *ps;
    ag_tensor *z;
    ag_params_new(&ps);
    ag_params_add(ps, "z", 2, (size_t[]){2, 3}, 0, &z);
    const ag_real v[6] = {1e4f, 0, -1e4f, 1e4f, 1e4f, -1e4f};
    memcpy(z->value, v, sizeof v);
    int32_t labels[2] = {1, 0};
    ag_tensor *J = ag_cross_entropy(t, z, labels);
    ck_assert_ptr_nonnull(J);
    /* row 0: -log softmax = 1e4 - 0; row 1: log 2 (two equal maxima); mean over 2 rows */
    double ref = (1e4 + log(2.0)) / 2;
    ck_assert(isfinite(J->value[0]));
    ck_assert_double_eq_tol(J->value[0], ref, 1e-3);
    labels[0] = 2; /* the op copied the labels: changing ours after the call changes nothing */
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    double dref[6] = {0.5, -0.5, 0, 0.25 - 0.5, 0.25, 0};
    for (int i = 0; i < 6; i++) ck_assert(isfinite(z->grad[i]));
    ck_assert_double_le(ag_test_max_abs_diff("dlogits", z->grad, dref, 6, 1e-6), 1e-6);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(sigmoid_tanh_relu_extremes) {
    ag_tape *t = new_tape();
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){6}, (ag_real[]){-100, 100, -1000, 0, 2, -2});
    ag_requires_grad(x);
    ag_tensor *s = ag_sigmoid(t, x);
    for (int i = 0; i < 6; i++) ck_assert(isfinite(s->value[i]));
    ck_assert_double_eq(s->value[1], 1);
    ck_assert_double_ge(s->value[0], 0);
    ck_assert_double_le(s->value[0], 1e-40);
    ck_assert_double_eq(s->value[2], 0);
    ck_assert_double_eq(s->value[3], 0.5);
    ck_assert_double_eq_tol(s->value[4], 1 / (1 + exp(-2.0)), AG_TEST_EXACT_TOL);
    ck_assert_double_eq_tol(s->value[5], 1 / (1 + exp(2.0)), AG_TEST_EXACT_TOL);
    ag_tensor *r = ag_relu(t, x), *th = ag_tanh(t, x);
    ck_assert_double_eq(r->value[3], 0);
    ck_assert_double_eq(th->value[1], 1);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, ag_add(t, ag_add(t, s, r), th))), AG_OK);
    for (int i = 0; i < 6; i++) ck_assert(isfinite(x->grad[i]));
    /* x = 0: sigmoid' = 1/4, relu'(0) = 0, tanh' = 1 */
    ck_assert_double_eq_tol(x->grad[3], 1.25, AG_TEST_EXACT_TOL);
    ck_assert_double_eq_tol(x->grad[1], 1, AG_TEST_EXACT_TOL); /* relu' = 1, the others ~0 */
    ag_tape_free(t);
}
END_TEST

/* tanh against libm's double tanh over a sweep (the float build uses its own tanh) */
START_TEST(tanh_accuracy) {
    ag_tape *t = new_tape();
    enum { N = 4001 };
    static ag_real x[N];
    for (int i = 0; i < N; i++) x[i] = (ag_real)(-10 + 20.0 * i / (N - 1) + 1e-4);
    ag_tensor *y = ag_tanh(t, ag_tensor_wrap(t, 1, (size_t[]){N}, x));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double ref = tanh((double)x[i]), err = fabs(y->value[i] - ref) / fabs(ref);
        if (err > worst) worst = err;
    }
    fprintf(stderr, "tanh: worst relative error %.3g\n", worst);
    ck_assert_double_le(worst, 4e-7);
    ag_tensor *e = ag_tanh(t, ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){0, 1e-30f, -1e-30f}));
    ck_assert_double_eq(e->value[0], 0);
    ck_assert_double_eq(e->value[1], (ag_real)1e-30f);
    ck_assert_double_eq(e->value[2], (ag_real)-1e-30f);
    ag_tape_free(t);
}
END_TEST

START_TEST(log_pow_domain_like_libm) {
    ag_tape *t = new_tape();
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){0, -1, 4});
    ag_tensor *l = ag_log(t, x), *p = ag_pow(t, x, (ag_real)0.5), *q = ag_sqrt(t, x);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(ag_tape_status(t), AG_OK);
    ck_assert(isinf(l->value[0]) && l->value[0] < 0);
    ck_assert(isnan(l->value[1]));
    ck_assert(isnan(p->value[1]));
    ck_assert(isnan(q->value[1]));
    ck_assert_double_eq_tol(p->value[2], 2, AG_TEST_EXACT_TOL);
    ck_assert_double_eq_tol(l->value[2], log(4.0), AG_TEST_EXACT_TOL);
    ag_tape_free(t);
}
END_TEST

static double naive_at(const ag_real *m, size_t ld, int trans, size_t i, size_t j) {
    return trans ? m[j * ld + i] : m[i * ld + j];
}

START_TEST(matmul_against_naive) {
    ag_rng r;
    ag_rng_seed(&r, 23);
    ag_tape *t = new_tape();
    static const size_t sizes[][3] = {{1, 1, 1}, {3, 5, 2}, {37, 53, 29}, {70, 3, 129}};
    for (size_t s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                ag_tape_reset(t);
                size_t m = sizes[s][0], k = sizes[s][1], n = sizes[s][2];
                ag_tensor *A = ag_tensor_new(t, 2, (size_t[]){ta ? k : m, ta ? m : k});
                ag_tensor *B = ag_tensor_new(t, 2, (size_t[]){tb ? n : k, tb ? k : n});
                ag_rng_fill_uniform(&r, A->value, A->size, -1, 1);
                ag_rng_fill_uniform(&r, B->value, B->size, -1, 1);
                ag_tensor *C = ag_matmul_ex(t, A, B, ta, tb);
                ck_assert_ptr_nonnull(C);
                ck_assert_uint_eq(C->shape[0], m);
                ck_assert_uint_eq(C->shape[1], n);
                static double ref[70 * 129];
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++) {
                        double acc = 0;
                        for (size_t p = 0; p < k; p++)
                            acc += naive_at(A->value, A->shape[1], ta, i, p) * naive_at(B->value, B->shape[1], tb, p, j);
                        ref[i * n + j] = acc;
                    }
                double tol = AG_TEST_EXACT_TOL * (double)k * 4;
                ck_assert_double_le(ag_test_max_abs_diff("matmul", C->value, ref, m * n, tol), tol);
            }
    /* linear: z = x W^T + b */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 3}, (ag_real[]){1, 2, 3, 4, 5, 6});
    ag_tensor *W = ag_tensor_from(t, 2, (size_t[]){2, 3}, (ag_real[]){1, 0, -1, 0.5f, 0.5f, 0.5f});
    ag_tensor *b = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){10, 20});
    ag_tensor *z = ag_linear(t, x, W, b), *z0 = ag_linear(t, x, W, NULL);
    double zref[4] = {1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5 + 20};
    double z0ref[4] = {-2, 3, -2, 7.5};
    ck_assert_double_le(ag_test_max_abs_diff("linear", z->value, zref, 4, 1e-6), 1e-6);
    ck_assert_double_le(ag_test_max_abs_diff("linear nobias", z0->value, z0ref, 4, 1e-6), 1e-6);
    ag_tape_free(t);
}
END_TEST

START_TEST(broadcast_and_reduce_values) {
    ag_tape *t = new_tape();
    /* [2,3,1] * [4] + [3,1] ... checked element by element against index arithmetic */
    ag_real a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {1, 10, 100, 1000}, c[3] = {0.5f, 0.25f, 0.125f};
    ag_tensor *A = ag_tensor_from(t, 3, (size_t[]){2, 3, 1}, a);
    ag_tensor *B = ag_tensor_from(t, 1, (size_t[]){4}, b);
    ag_tensor *Cc = ag_tensor_from(t, 2, (size_t[]){3, 1}, c);
    ag_tensor *y = ag_sub(t, ag_mul(t, A, B), Cc);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_uint_eq(y->shape[0], 2);
    ck_assert_uint_eq(y->shape[1], 3);
    ck_assert_uint_eq(y->shape[2], 4);
    double ref[24];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) ref[(i * 3 + j) * 4 + k] = (double)a[i * 3 + j] * b[k] - c[j];
    ck_assert_double_le(ag_test_max_abs_diff("broadcast", y->value, ref, 24, 1e-3), 1e-3);
    /* sum_axis / mean_axis with a negative axis */
    ag_tensor *s1 = ag_sum_axis(t, y, -2), *m0 = ag_mean_axis(t, y, 0);
    ck_assert_int_eq(s1->ndim, 2);
    ck_assert_uint_eq(s1->shape[0], 2);
    ck_assert_uint_eq(s1->shape[1], 4);
    double r1[8], r0[12];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            r1[i * 4 + k] = 0;
            for (int j = 0; j < 3; j++) r1[i * 4 + k] += ref[(i * 3 + j) * 4 + k];
        }
    for (int j = 0; j < 12; j++) r0[j] = (ref[j] + ref[12 + j]) / 2;
    ck_assert_double_le(ag_test_max_abs_diff("sum_axis", s1->value, r1, 8, 1e-2), 1e-2);
    ck_assert_double_le(ag_test_max_abs_diff("mean_axis", m0->value, r0, 12, 1e-3), 1e-3);
    double tot = 0;
    for (int i = 0; i < 24; i++) tot += ref[i];
    ck_assert_double_eq_tol(ag_sum(t, y)->value[0], tot, 1e-1);
    ck_assert_double_eq_tol(ag_mean(t, y)->value[0], tot / 24, 1e-2);
    /* reshape is a view; transpose copies */
    ag_tensor *v = ag_reshape(t, y, 2, (size_t[]){6, 4});
    ck_assert_ptr_eq(v->value, y->value);
    ag_tensor *tr = ag_transpose(t, v);
    ck_assert_uint_eq(tr->shape[0], 4);
    ck_assert_double_eq(tr->value[1 * 6 + 5], v->value[5 * 4 + 1]);
    ag_tape_free(t);
}
END_TEST

START_TEST(losses_values) {
    ag_tape *t = new_tape();
    ag_tensor *h = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){1, 2, 3, 4});
    ag_tensor *y = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){0, 2, 1, 1});
    ag_requires_grad(h);
    ag_tensor *J = ag_squared_error(t, h, y);
    /* (1/2) * 1/2 * (1 + 0 + 4 + 9) */
    ck_assert_double_eq_tol(J->value[0], 3.5, AG_TEST_EXACT_TOL);
    ag_tensor *W1 = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    ag_tensor *W2 = ag_tensor_from(t, 2, (size_t[]){1, 1}, (ag_real[]){3});
    ag_requires_grad(W1);
    ag_tensor *L = ag_l2(t, (ag_real)0.5, (ag_tensor *[]){W1, W2}, 2);
    ck_assert_double_eq_tol(L->value[0], 0.25 * 14, AG_TEST_EXACT_TOL);
    ck_assert_int_eq(ag_backward(t, ag_add(t, J, L)), AG_OK);
    double dh[4] = {0.5, 0, 1, 1.5}, dW1[2] = {0.5, 1};
    ck_assert_double_le(ag_test_max_abs_diff("dh", h->grad, dh, 4, 1e-6), 1e-6);
    ck_assert_double_le(ag_test_max_abs_diff("dW1", W1->grad, dW1, 2, 1e-6), 1e-6);
    ck_assert_ptr_null(y->grad); /* data: no gradient */
    ck_assert_ptr_null(W2->grad);
    /* a 1-D h is one example: K = 1 */
    ag_tape_reset(t);
    ag_tensor *h1 = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 3});
    ag_tensor *y1 = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){0, 0});
    ck_assert_double_eq_tol(ag_squared_error(t, h1, y1)->value[0], 5, AG_TEST_EXACT_TOL);
    ag_tape_free(t);
}
END_TEST

/* Whole-tensor sums run 32 interleaved lanes plus a tail (ops_reduce.c): every length around the
 * lane count, against closed forms on integer data (exact in any order) and a long double sum of
 * random data. */
START_TEST(lane_sums_all_lengths) {
    const size_t lens[] = {1, 2, 31, 32, 33, 63, 64, 65, 95, 96, 97, 1000, 4099};
    ag_tape *t = new_tape();
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        ag_real *v = malloc(n * sizeof *v);
        ck_assert_ptr_nonnull(v);
        double sum = 0, sq = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = (ag_real)((int)(i % 17) - 8);
            sum += v[i];
            sq += (double)v[i] * v[i];
        }
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){n}, v);
        ck_assert_double_eq(ag_sum(t, x)->value[0], sum);
        ck_assert_double_eq(ag_l2(t, 2, (ag_tensor *[]){x}, 1)->value[0], sq); /* 2/2 sum x^2 */
        ag_rng r;
        ag_rng_seed(&r, 7 + n);
        ag_rng_fill_normal(&r, v, n, 0.5, 1);
        long double ref = 0;
        for (size_t i = 0; i < n; i++) ref += v[i];
        ag_tape_reset(t);
        ag_tensor *m = ag_mean(t, ag_tensor_from(t, 1, (size_t[]){n}, v));
        ck_assert_double_eq_tol(m->value[0], (double)(ref / n), 1e-6 * (1 + fabs((double)(ref / n))));
        free(v);
    }
    ag_tape_free(t);
}
END_TEST

/* y = x*x + x: x reaches the sum through three uses; dy/dx = 2x + 1 */
START_TEST(used_twice_with_builtins) {
    ag_tape *t = new_tape();
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){1, -2, 3, 0.5f});
    ag_requires_grad(x);
    ag_tensor *y = ag_add(t, ag_mul(t, x, x), x);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, y)), AG_OK);
    double ref[4] = {3, -3, 7, 2};
    ck_assert_double_le(ag_test_max_abs_diff("dx", x->grad, ref, 4, 1e-6), 1e-6);
    /* the same through a broadcast path: x [2,2] times its own row view [2] */
    ag_tape_reset(t);
    ag_tensor *u = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){2, 3});
    ag_requires_grad(u);
    ag_tensor *m = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){1, 1, 1, 1});
    /* loss = sum(u * (m * u)) = sum_rows sum_j u_j^2 = 2 sum u_j^2; d/du = 4 u */
    ck_assert_int_eq(ag_backward(t, ag_sum(t, ag_mul(t, u, ag_mul(t, m, u)))), AG_OK);
    ck_assert_double_eq_tol(u->grad[0], 8, 1e-6);
    ck_assert_double_eq_tol(u->grad[1], 12, 1e-6);
    ag_tape_free(t);
}
END_TEST

/* 100k-op chains of tanh(x*a+b) on 1-element tensors: the per-op cost stays small. Reported,
 * and loosely bounded only in optimised, uninstrumented runs. */
#include <time.h>
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

START_TEST(tiny_op_overhead) {
    ag_params *ps;
    ag_tensor *a, *b;
    ag_params_new(&ps);
    ag_params_add(ps, "a", 0, NULL, 0, &a);
    ag_params_add(ps, "b", 0, NULL, 0, &b);
    a->value[0] = (ag_real)0.9;
    b->value[0] = (ag_real)0.1;
    ag_tape *t = new_tape();
    const int links = ag_test_quick() ? 1000 : 33334; /* 3 ops per link: ~100k ops */
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        double t0 = now();
        ag_tensor *x = ag_scalar(t, (ag_real)0.5);
        for (int i = 0; i < links; i++) x = ag_tanh(t, ag_add(t, ag_mul(t, x, a), b));
        ck_assert_int_eq(ag_backward(t, x), AG_OK);
        double ns = (now() - t0) * 1e9 / (3.0 * links);
        if (ns < best) best = ns;
    }
    fprintf(stderr, "tiny ops: %.1f ns per op, forward + backward\n", best);
    ck_assert(isfinite(a->grad[0]));
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

static Suite *ops_suite(void) {
    Suite *s = suite_create("ops");
    TCase *gc = tcase_create("gradcheck");
    tcase_set_timeout(gc, 300);
    tcase_add_test(gc, gc_binary_broadcast);
    tcase_add_test(gc, gc_unary);
    tcase_add_test(gc, gc_matmul_linear);
    tcase_add_test(gc, gc_reduce_softmax_shape);
    tcase_add_test(gc, gc_losses);
    suite_add_tcase(s, gc);
    TCase *v = tcase_create("values");
    tcase_set_timeout(v, 120);
    tcase_add_test(v, softmax_values);
    tcase_add_test(v, cross_entropy_large_logits);
    tcase_add_test(v, sigmoid_tanh_relu_extremes);
    tcase_add_test(v, tanh_accuracy);
    tcase_add_test(v, log_pow_domain_like_libm);
    tcase_add_test(v, matmul_against_naive);
    tcase_add_test(v, broadcast_and_reduce_values);
    tcase_add_test(v, losses_values);
    tcase_add_test(v, lane_sums_all_lengths);
    tcase_add_test(v, used_twice_with_builtins);
    tcase_add_test(v, tiny_op_overhead);
    suite_add_tcase(s, v);
    return s;
}

AG_TEST_MAIN(ops_suite)

/*
 * test_ops.c - the built-in ops of ag.h beyond what their records check (tests/ops/op_records.c
 * generates each op's gradient check, bad inputs and twin in test_op_records.c): value checks
 * against references computed here in double (never by the code under test), extremes, closed
 * forms on every code path, accumulation, and a composite network's gradient check.
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
    return ag_test_wsum(t, y, r);
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

    /* backward accumulates (+=): the checker left the analytic gradient g in ->grad; one more
     * backward without zeroing must leave 2 g (an op that assigns leaves g) */
    ag_real g1[4096];
    memcpy(g1, ag_params_grads(ps), numel * sizeof(ag_real));
    double gmax = 0;
    for (size_t i = 0; i < numel; i++) gmax = ag_test_worse(gmax, fabs((double)g1[i]));
    if (gmax == 0) { /* softmax of one element is constant: nothing to add (gradcheck saw the zeros) */
        ag_tape_free(t);
        ag_params_free(ps);
        return;
    }
    ag_tape_reset(t);
    ag_tensor *loss = gc_loss(t, &ctx);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    const ag_real *g2 = ag_params_grads(ps);
    for (size_t i = 0; i < numel; i++)
        ck_assert_msg(fabs((double)g2[i] - 2.0 * g1[i]) <= 1e-4 * (fabs((double)g1[i]) + gmax),
                      "%s: gradient [%zu] is %g after two backward passes, want 2 x %g (backward must add)", label,
                      i, (double)g2[i], (double)g1[i]);
    ag_tape_free(t);
    ag_params_free(ps);
}

typedef ag_tensor *(*binary_fn)(ag_tape *, ag_tensor *, ag_tensor *);

static const struct {
    const char *name;
    binary_fn fn;
} binaries[] = {{"add", ag_add}, {"sub", ag_sub}, {"mul", ag_mul}, {"div", ag_div}};

/* broadcasting shape pairs for the closed forms below (the records' BINARY_CASES, for values) */
static const struct {
    int na, nb;
    size_t a[4], b[4];
} bshapes[] = {
    {2, 2, {3, 4}, {3, 4}},       {2, 1, {3, 4}, {4}},    {3, 2, {2, 3, 4}, {3, 1}}, {1, 1, {5}, {1}},
    {0, 2, {0}, {3, 4}},          {2, 0, {3, 4}, {0}},    {2, 2, {4, 1}, {1, 5}},    {1, 3, {4}, {2, 3, 4}},
    {3, 2, {2, 1, 4}, {3, 1}},    {4, 1, {2, 1, 3, 2}, {2}}, {2, 2, {1, 4}, {4, 1}}, {4, 4, {2, 3, 1, 2}, {1, 3, 4, 1}},
};

/* The per-op gradient checks (every op, its broadcasting shapes, ranks, axes, transposes and
 * parameters) are generated from the op records: tests/ops/op_records.c, tests/ops/test_op_records.c.
 * What stays here is a composite the records do not cover, with the same driver. */

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

START_TEST(gc_mlp_composite) {
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

/* The row maximum that keeps softmax, log_softmax and cross-entropy finite must be found wherever
 * it sits: 1e4 at each position k of rows of several widths (scalar tails and SIMD bodies), the
 * rest 0 with one -1e4. Hand values: softmax is the one-hot of k; log_softmax is 0 at k, -1e4 at
 * the zeros, -2e4 at -1e4; cross-entropy is 0 for label k and 1e4 - x[y] for another label y, with
 * dJ/dz = softmax - onehot(y) (one row, K = 1). */
START_TEST(huge_logit_at_every_position) {
    static const size_t widths[] = {2, 3, 5, 16, 17, 33};
    ag_tape *t = new_tape();
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        const size_t C = widths[w];
        for (size_t k = 0; k < C; k++) {
            ag_real x[33];
            double p_ref[33], l_ref[33];
            const size_t low = (k + 1) % C; /* the -1e4 entry, when C > 2 */
            for (size_t j = 0; j < C; j++) {
                const int is_low = j == low && C > 2;
                x[j] = j == k ? (ag_real)1e4 : is_low ? (ag_real)-1e4 : 0;
                p_ref[j] = j == k;
                l_ref[j] = j == k ? 0 : is_low ? -2e4 : -1e4;
            }
            ag_tape_reset(t);
            ag_tensor *X = ag_tensor_from(t, 1, (size_t[]){C}, x);
            ag_tensor *p = ag_softmax(t, X), *l = ag_log_softmax(t, X);
            ck_assert_ptr_nonnull(p);
            ck_assert_ptr_nonnull(l);
            char label[64];
            snprintf(label, sizeof label, "softmax C=%zu k=%zu", C, k);
            ck_assert_double_le(ag_test_max_abs_diff(label, p->value, p_ref, C, 1e-12), 1e-12);
            snprintf(label, sizeof label, "log_softmax C=%zu k=%zu", C, k);
            ck_assert_double_le(ag_test_max_abs_diff(label, l->value, l_ref, C, 1e-2), 1e-2);
            for (int right = 0; right <= 1; right++) {
                const int32_t y = (int32_t)(right ? k : low);
                ag_tape_reset(t);
                ag_tensor *Z = ag_tensor_from(t, 2, (size_t[]){1, C}, x);
                ag_requires_grad(Z);
                ag_tensor *J = ag_cross_entropy(t, Z, &y);
                ck_assert_ptr_nonnull(J);
                const double J_ref = right ? 0 : 1e4 - x[low];
                ck_assert_double_eq_tol(J->value[0], J_ref, 1e-2);
                ck_assert_int_eq(ag_backward(t, J), AG_OK);
                double g_ref[33];
                for (size_t j = 0; j < C; j++) g_ref[j] = p_ref[j] - (j == (size_t)y);
                snprintf(label, sizeof label, "dJ/dz C=%zu k=%zu y=%d", C, k, (int)y);
                ck_assert_double_le(ag_test_max_abs_diff(label, Z->grad, g_ref, C, 1e-12), 1e-12);
            }
        }
    }
    ag_tape_free(t);
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

/* Whole-tensor sums run 32 interleaved lanes plus a tail (ops/reduce.c): every length around the
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

/* ---------------------------------------------------------------- closed forms on every code path
 * Values against the formula in double, and input gradients (from a random output seed) against the
 * hand-derived derivative, to a few ulps: much tighter than a central difference in float, and a
 * forward that is off by a constant (which no gradient check can see) fails here. */

#define ULP AG_TEST_ULP

/* sizes of a shape right-aligned into 4 dimensions */
static void pad_dims(int nd, const size_t *shape, size_t d[4]) {
    for (int k = 0; k < 4; k++) d[k] = k < 4 - nd ? 1 : shape[k - (4 - nd)];
}

/* flat index of output element idx in an operand of padded sizes d: a size-1 dimension is repeated */
static size_t bc_index(const size_t d[4], const size_t idx[4]) {
    size_t i = 0;
    for (int k = 0; k < 4; k++) i = i * d[k] + (d[k] == 1 ? 0 : idx[k]);
    return i;
}

/* add, sub, mul, div on every shape pair of bshapes: equal shapes, a scalar or a row on either side,
 * general broadcasting (each a separate path of BINARY_FORWARD / BINARY_BACKWARD). With seed g:
 *   add: da = g, db = g;  sub: da = g, db = -g;  mul: da = g y, db = g x;  div: da = g/y, db = -g x/y^2
 * each summed over the dimensions the operand was repeated along. */
START_TEST(binary_closed_forms_every_path) {
    ag_rng r;
    ag_rng_seed(&r, 31);
    ag_tape *t = new_tape();
    for (size_t o = 0; o < 4; o++)
        for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++) {
            ag_tape_reset(t);
            ag_tensor *A = ag_tensor_new(t, bshapes[s].na, bshapes[s].a);
            ag_tensor *B = ag_tensor_new(t, bshapes[s].nb, bshapes[s].b);
            ck_assert(A && B);
            for (size_t i = 0; i < A->size; i++) A->value[i] = (ag_real)(4 * ag_rng_uniform(&r) - 2);
            for (size_t i = 0; i < B->size; i++) /* |y| >= 0.3 for div */
                B->value[i] = (ag_real)((ag_rng_uniform(&r) < 0.5 ? -1 : 1) * (0.3 + 1.7 * ag_rng_uniform(&r)));
            ck_assert_int_eq(ag_requires_grad(A), AG_OK);
            ck_assert_int_eq(ag_requires_grad(B), AG_OK);
            ag_tensor *Y = binaries[o].fn(t, A, B);
            ck_assert_ptr_nonnull(Y);
            size_t da[4], db[4], dy[4], N = 1;
            pad_dims(A->ndim, A->shape, da);
            pad_dims(B->ndim, B->shape, db);
            for (int k = 0; k < 4; k++) {
                dy[k] = da[k] > db[k] ? da[k] : db[k];
                N *= dy[k];
            }
            const int nd = A->ndim > B->ndim ? A->ndim : B->ndim;
            ck_assert_int_eq(Y->ndim, nd);
            for (int k = 0; k < nd; k++) ck_assert_uint_eq(Y->shape[k], dy[4 - nd + k]);
            ck_assert_uint_eq(Y->size, N);
            ck_assert_uint_le(N, 64);
            ag_real g[64];
            for (size_t i = 0; i < N; i++) g[i] = (ag_real)(2 * ag_rng_uniform(&r) - 1);
            double ga[64] = {0}, gb[64] = {0}, ma[64] = {0}, mb[64] = {0};
            size_t idx[4], i = 0;
            for (idx[0] = 0; idx[0] < dy[0]; idx[0]++)
                for (idx[1] = 0; idx[1] < dy[1]; idx[1]++)
                    for (idx[2] = 0; idx[2] < dy[2]; idx[2]++)
                        for (idx[3] = 0; idx[3] < dy[3]; idx[3]++, i++) {
                            const size_t ia = bc_index(da, idx), ib = bc_index(db, idx);
                            const double x = A->value[ia], y = B->value[ib], gi = g[i];
                            double want, tx, ty;
                            switch (o) {
                            case 0: want = x + y, tx = gi, ty = gi; break;
                            case 1: want = x - y, tx = gi, ty = -gi; break;
                            case 2: want = x * y, tx = gi * y, ty = gi * x; break;
                            default: want = x / y, tx = gi / y, ty = -gi * x / (y * y); break;
                            }
                            ck_assert_msg(fabs((double)Y->value[i] - want) <= ULP * fabs(want),
                                          "%s case %zu: y[%zu] = %.9g, want %.9g", binaries[o].name, s, i,
                                          (double)Y->value[i], want);
                            ga[ia] += tx, ma[ia] += fabs(tx);
                            gb[ib] += ty, mb[ib] += fabs(ty);
                        }
            ck_assert_int_eq(ag_backward_seed(t, Y, g), AG_OK);
            for (size_t j = 0; j < A->size; j++)
                ck_assert_msg(fabs((double)A->grad[j] - ga[j]) <= 32 * ULP * ma[j],
                              "%s case %zu: da[%zu] = %.9g, want %.9g", binaries[o].name, s, j, (double)A->grad[j], ga[j]);
            for (size_t j = 0; j < B->size; j++)
                ck_assert_msg(fabs((double)B->grad[j] - gb[j]) <= 32 * ULP * mb[j],
                              "%s case %zu: db[%zu] = %.9g, want %.9g", binaries[o].name, s, j, (double)B->grad[j], gb[j]);
        }
    ag_tape_free(t);
}
END_TEST

/* The unary maps over a sweep of their domain: f(x) against libm in double, and f'(x) against the
 * derivative written out here, with x feeding two nodes of the op (seeds g1, g2), so the second
 * backward must add to what the first left: dx = f'(x) (g1 + g2). */
enum { U_NEG, U_SCALE, U_ADDC, U_EXP, U_LOG, U_SQUARE, U_POW, U_SQRT, U_SIGMOID, U_TANH, U_RELU };

static const struct {
    const char *name;
    int op;
    double c, lo, hi;
} unary_sweeps[] = {
    {"neg", U_NEG, 0, -3, 3},          {"scale", U_SCALE, -1.7, -3, 3}, {"add_scalar", U_ADDC, 0.3, -3, 3},
    {"exp", U_EXP, 0, -20, 20},        {"log", U_LOG, 0, 1e-3, 100},    {"square", U_SQUARE, 0, -3, 3},
    {"pow 2", U_POW, 2, -3, 3},        {"pow 3", U_POW, 3, -3, 3},      {"pow 2.5", U_POW, 2.5, 0.05, 4},
    {"pow -1.5", U_POW, -1.5, 0.05, 4}, {"pow 0.5", U_POW, 0.5, 0.05, 4}, {"pow 0", U_POW, 0, -3, 3},
    {"sqrt", U_SQRT, 0, 1e-3, 100},    {"sigmoid", U_SIGMOID, 0, -87, 87}, {"tanh", U_TANH, 0, -10, 10},
    {"relu", U_RELU, 0, -3, 3},
};

static ag_tensor *apply_unary(ag_tape *t, int op, ag_real c, ag_tensor *x) {
    switch (op) {
    case U_NEG: return ag_neg(t, x);
    case U_SCALE: return ag_scale(t, x, c);
    case U_ADDC: return ag_add_scalar(t, x, c);
    case U_EXP: return ag_exp(t, x);
    case U_LOG: return ag_log(t, x);
    case U_SQUARE: return ag_square(t, x);
    case U_POW: return ag_pow(t, x, c);
    case U_SQRT: return ag_sqrt(t, x);
    case U_SIGMOID: return ag_sigmoid(t, x);
    case U_TANH: return ag_tanh(t, x);
    default: return ag_relu(t, x);
    }
}

/* f(x) and f'(x) in double; c as the op stores it (rounded to ag_real) */
static void unary_ref(int op, double c, double x, double *f, double *df) {
    switch (op) {
    case U_NEG: *f = -x, *df = -1; break;
    case U_SCALE: *f = c * x, *df = c; break;
    case U_ADDC: *f = x + c, *df = 1; break;
    case U_EXP: *f = exp(x), *df = exp(x); break;
    case U_LOG: *f = log(x), *df = 1 / x; break;
    case U_SQUARE: *f = x * x, *df = 2 * x; break;
    case U_POW: *f = pow(x, c), *df = c == 0 ? 0 : c * pow(x, c - 1); break;
    case U_SQRT: *f = sqrt(x), *df = 0.5 / sqrt(x); break;
    case U_SIGMOID: { /* f' = f (1 - f) = e^-|x| / (1 + e^-|x|)^2, without cancellation */
        double e = exp(-fabs(x));
        *f = x >= 0 ? 1 / (1 + e) : e / (1 + e), *df = e / ((1 + e) * (1 + e));
        break;
    }
    case U_TANH: *f = tanh(x), *df = 1 / (cosh(x) * cosh(x)); break; /* 1 - tanh^2 */
    default: *f = x > 0 ? x : 0, *df = x > 0 ? 1 : 0; break;        /* relu'(0) = 0 */
    }
}

START_TEST(unary_closed_forms_and_accumulation) {
    enum { N = 257 }; /* odd, so a symmetric sweep holds 0 exactly */
    ag_rng r;
    ag_rng_seed(&r, 37);
    ag_tape *t = new_tape();
    for (size_t u = 0; u < sizeof unary_sweeps / sizeof unary_sweeps[0]; u++) {
        const int op = unary_sweeps[u].op;
        const ag_real c = (ag_real)unary_sweeps[u].c;
        const double lo = unary_sweeps[u].lo, hi = unary_sweeps[u].hi;
        static ag_real xv[N], g1[N], g2[N];
        for (int i = 0; i < N; i++) {
            xv[i] = (ag_real)(lo + (hi - lo) * i / (N - 1));
            g1[i] = (ag_real)(2 * ag_rng_uniform(&r) - 1);
            g2[i] = (ag_real)(2 * ag_rng_uniform(&r) - 1);
        }
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){N}, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *y1 = apply_unary(t, op, c, x), *y2 = apply_unary(t, op, c, x);
        ck_assert(y1 && y2);
        ag_tensor *w1 = ag_tensor_wrap(t, 1, (size_t[]){N}, g1), *w2 = ag_tensor_wrap(t, 1, (size_t[]){N}, g2);
        ag_tensor *loss = ag_add(t, ag_test_wsum(t, y1, w1),
                                 ag_test_wsum(t, y2, w2));
        ck_assert_ptr_nonnull(loss);
        ck_assert_int_eq(ag_backward(t, loss), AG_OK);
        int saw_zero = 0;
        for (int i = 0; i < N; i++) {
            double f, df;
            unary_ref(op, (double)c, (double)xv[i], &f, &df);
            saw_zero |= xv[i] == 0;
            ck_assert_msg(fabs((double)y1->value[i] - f) <= 4 * ULP * fabs(f), "%s(%.9g) = %.9g, want %.9g",
                          unary_sweeps[u].name, (double)xv[i], (double)y1->value[i], f);
            const double ga = fabs((double)g1[i]) + fabs((double)g2[i]), want = df * ((double)g1[i] + g2[i]);
            /* the absolute part: f' formed from a rounded output (sigmoid 1 - f, tanh 1 - f^2 near 1) */
            const double tol = 16 * ULP * fabs(df) * ga + 8 * ULP * ga;
            ck_assert_msg(fabs((double)x->grad[i] - want) <= tol, "%s'(%.9g): dx = %.9g, want %.9g", unary_sweeps[u].name,
                          (double)xv[i], (double)x->grad[i], want);
        }
        if (lo < 0 && hi > 0) ck_assert_msg(saw_zero, "%s: the sweep missed 0", unary_sweeps[u].name);
    }
    ag_tape_free(t);
}
END_TEST

/* Reductions over every axis of a 4-D tensor, reshape, transpose, softmax and log-softmax rows:
 * values against loops here, gradients from a random seed against the closed forms
 *   sum/mean:      dx = g c                  (c = 1, 1/N; along an axis 1/len)
 *   reshape:       dx = dy, element by element
 *   transpose:     dx[i][j] = dy[j][i]
 *   softmax:       dx_j = p_j (g_j - sum_i p_i g_i)
 *   log_softmax:   dx_j = g_j - p_j sum_i g_i */
START_TEST(reduce_shape_softmax_closed_forms) {
    ag_rng r;
    ag_rng_seed(&r, 41);
    ag_tape *t = new_tape();
    const size_t sh[4] = {2, 3, 4, 5};
    enum { N = 120 };
    ag_real xv[N], gv[N];
    for (int i = 0; i < N; i++) {
        xv[i] = (ag_real)(4 * ag_rng_uniform(&r) - 2);
        gv[i] = (ag_real)(2 * ag_rng_uniform(&r) - 1);
    }
    double xsum = 0, xabs = 0;
    for (int i = 0; i < N; i++) xsum += xv[i], xabs += fabs((double)xv[i]);
    for (int mean = 0; mean <= 1; mean++) { /* whole tensor */
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from(t, 4, sh, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *s = mean ? ag_mean(t, x) : ag_sum(t, x);
        const double c = mean ? 1.0 / N : 1.0;
        ck_assert_double_le(fabs((double)s->value[0] - c * xsum), 4 * ULP * c * xabs);
        ck_assert_int_eq(ag_backward_seed(t, s, (ag_real[]){(ag_real)0.75}), AG_OK);
        for (int i = 0; i < N; i++) ck_assert_double_le(fabs((double)x->grad[i] - 0.75 * c), 2 * ULP);
    }
    for (int axis = -4; axis < 4; axis++)
        for (int mean = 0; mean <= 1; mean++) {
            const int ax = axis < 0 ? axis + 4 : axis;
            size_t outer = 1, inner = 1;
            for (int k = 0; k < ax; k++) outer *= sh[k];
            for (int k = ax + 1; k < 4; k++) inner *= sh[k];
            const size_t len = sh[ax];
            ag_tape_reset(t);
            ag_tensor *x = ag_tensor_from(t, 4, sh, xv);
            ck_assert_int_eq(ag_requires_grad(x), AG_OK);
            ag_tensor *y = mean ? ag_mean_axis(t, x, axis) : ag_sum_axis(t, x, axis);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(y->ndim, 3);
            for (int k = 0, m = 0; k < 4; k++)
                if (k != ax) ck_assert_uint_eq(y->shape[m++], sh[k]);
            const double c = mean ? 1.0 / (double)len : 1.0;
            for (size_t o = 0; o < outer; o++)
                for (size_t i = 0; i < inner; i++) {
                    double want = 0, mag = 0;
                    for (size_t j = 0; j < len; j++) {
                        want += c * xv[(o * len + j) * inner + i];
                        mag += c * fabs((double)xv[(o * len + j) * inner + i]);
                    }
                    ck_assert_msg(fabs((double)y->value[o * inner + i] - want) <= 4 * ULP * mag,
                                  "%s_axis %d: y[%zu] = %.9g, want %.9g", mean ? "mean" : "sum", axis, o * inner + i,
                                  (double)y->value[o * inner + i], want);
                }
            ck_assert_int_eq(ag_backward_seed(t, y, gv), AG_OK);
            for (size_t o = 0; o < outer; o++)
                for (size_t j = 0; j < len; j++)
                    for (size_t i = 0; i < inner; i++) {
                        const double want = c * gv[o * inner + i];
                        ck_assert_msg(fabs((double)x->grad[(o * len + j) * inner + i] - want) <= 2 * ULP * fabs(want),
                                      "%s_axis %d: dx[%zu] = %.9g, want %.9g", mean ? "mean" : "sum", axis,
                                      (o * len + j) * inner + i, (double)x->grad[(o * len + j) * inner + i], want);
                    }
        }
    /* reshape: the same values in a new shape; the gradient comes back unchanged */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 4, sh, xv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *v = ag_reshape(t, x, 2, (size_t[]){6, 20});
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->ndim, 2);
    ck_assert_uint_eq(v->shape[0], 6);
    ck_assert_uint_eq(v->shape[1], 20);
    for (int i = 0; i < N; i++) ck_assert(v->value[i] == xv[i]);
    ck_assert_int_eq(ag_backward_seed(t, v, gv), AG_OK);
    for (int i = 0; i < N; i++) ck_assert(x->grad[i] == gv[i]);
    /* transpose of 8 x 15 */
    ag_tape_reset(t);
    x = ag_tensor_from(t, 2, (size_t[]){8, 15}, xv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *tr = ag_transpose(t, x);
    ck_assert_ptr_nonnull(tr);
    ck_assert_uint_eq(tr->shape[0], 15);
    ck_assert_uint_eq(tr->shape[1], 8);
    for (size_t i = 0; i < 8; i++)
        for (size_t j = 0; j < 15; j++) ck_assert(tr->value[j * 8 + i] == xv[i * 15 + j]);
    ck_assert_int_eq(ag_backward_seed(t, tr, gv), AG_OK);
    for (size_t i = 0; i < 8; i++)
        for (size_t j = 0; j < 15; j++) ck_assert(x->grad[i * 15 + j] == gv[j * 8 + i]);
    /* softmax and log-softmax over rows of 5 (24 rows of a 4 x 6 x 5 tensor) */
    for (int lg = 0; lg <= 1; lg++) {
        ag_tape_reset(t);
        x = ag_tensor_from(t, 3, (size_t[]){4, 6, 5}, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *y = lg ? ag_log_softmax(t, x) : ag_softmax(t, x);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(ag_backward_seed(t, y, gv), AG_OK);
        for (int row = 0; row < 24; row++) {
            const ag_real *xr = xv + row * 5, *gr = gv + row * 5;
            double den = 0, p[5], pg = 0, gs = 0, gabs = 0;
            for (int j = 0; j < 5; j++) den += exp((double)xr[j]);
            for (int j = 0; j < 5; j++)
                p[j] = exp((double)xr[j]) / den, pg += p[j] * gr[j], gs += gr[j], gabs += fabs((double)gr[j]);
            for (int j = 0; j < 5; j++) {
                const double f = lg ? (double)xr[j] - log(den) : p[j];
                const double df = lg ? gr[j] - p[j] * gs : p[j] * (gr[j] - pg);
                const int k = row * 5 + j;
                ck_assert_msg(fabs((double)y->value[k] - f) <= 8 * ULP * (fabs(f) + (lg ? fabs((double)xr[j]) : 0)),
                              "%s: y[%d] = %.9g, want %.9g", lg ? "log_softmax" : "softmax", k, (double)y->value[k], f);
                ck_assert_msg(fabs((double)x->grad[k] - df) <= 16 * ULP * (fabs((double)gr[j]) + gabs),
                              "%s: dx[%d] = %.9g, want %.9g", lg ? "log_softmax" : "softmax", k, (double)x->grad[k], df);
            }
        }
    }
    ag_tape_free(t);
}
END_TEST

/* Cross-entropy on random logits: J = (1/K) sum_k (log sum_j e^x_kj - x_k[label_k]) and
 * dlogits = (softmax - onehot(label)) / K, in double here. */
START_TEST(cross_entropy_closed_form) {
    ag_rng r;
    ag_rng_seed(&r, 43);
    ag_tape *t = new_tape();
    const size_t shapes[][2] = {{6, 7}, {1, 5}, {0, 4}}; /* K x C; K = 0: a 1-D row (one example) */
    for (size_t s = 0; s < 3; s++) {
        const size_t K = shapes[s][0] ? shapes[s][0] : 1, C = shapes[s][1];
        ag_real xv[64];
        int32_t labels[8];
        for (size_t i = 0; i < K * C; i++) xv[i] = (ag_real)(10 * ag_rng_uniform(&r) - 5);
        for (size_t k = 0; k < K; k++) labels[k] = (int32_t)ag_rng_below(&r, C);
        ag_tape_reset(t);
        ag_tensor *x = shapes[s][0] ? ag_tensor_from(t, 2, (size_t[]){K, C}, xv) : ag_tensor_from(t, 1, &C, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *J = ag_cross_entropy(t, x, labels);
        ck_assert_ptr_nonnull(J);
        double want = 0, dref[64];
        for (size_t k = 0; k < K; k++) {
            double den = 0;
            for (size_t j = 0; j < C; j++) den += exp((double)xv[k * C + j]);
            want += (log(den) - (double)xv[k * C + (size_t)labels[k]]) / (double)K;
            for (size_t j = 0; j < C; j++)
                dref[k * C + j] = (exp((double)xv[k * C + j]) / den - (j == (size_t)labels[k])) / (double)K;
        }
        ck_assert_msg(fabs((double)J->value[0] - want) <= 16 * ULP * (1 + fabs(want)), "J = %.9g, want %.9g",
                      (double)J->value[0], want);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        ck_assert_double_le(ag_test_max_abs_diff("dlogits", x->grad, dref, K * C, 8 * ULP), 8 * ULP);
    }
    ag_tape_free(t);
}
END_TEST

/* Squared error on every rank: K is shape[0] from 2 dimensions up (the rest of a row's dimensions
 * are outputs), 1 for a vector or a scalar. J = (1/K) sum 1/2 (h - y)^2, dh = (h - y)/K,
 * dy = -(h - y)/K. A K taken as the number of last-axis rows would scale J and both gradients
 * alike, which a central difference cannot tell from the right one. */
START_TEST(squared_error_rows_every_rank) {
    static const struct {
        int ndim;
        size_t shape[4], K;
    } cases[] = {{0, {0}, 1}, {1, {5}, 1}, {2, {3, 4}, 3}, {3, {2, 3, 4}, 2}, {4, {3, 2, 1, 2}, 3}};
    ag_rng r;
    ag_rng_seed(&r, 47);
    ag_tape *t = new_tape();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_tape_reset(t);
        ag_tensor *h = ag_tensor_new(t, cases[c].ndim, cases[c].shape);
        ag_tensor *y = ag_tensor_new(t, cases[c].ndim, cases[c].shape);
        ck_assert(h && y);
        ag_rng_fill_uniform(&r, h->value, h->size, -1, 1);
        ag_rng_fill_uniform(&r, y->value, y->size, -1, 1);
        ck_assert_int_eq(ag_requires_grad(h), AG_OK);
        ck_assert_int_eq(ag_requires_grad(y), AG_OK);
        ag_tensor *J = ag_squared_error(t, h, y);
        ck_assert_ptr_nonnull(J);
        const double K = (double)cases[c].K;
        double want = 0;
        for (size_t i = 0; i < h->size; i++) {
            const double d = (double)h->value[i] - y->value[i];
            want += 0.5 * d * d / K;
        }
        ck_assert_msg(fabs((double)J->value[0] - want) <= 4 * ULP * want, "rank %d: J = %.9g, want %.9g", cases[c].ndim,
                      (double)J->value[0], want);
        ck_assert_int_eq(ag_backward_seed(t, J, (ag_real[]){(ag_real)1.5}), AG_OK);
        for (size_t i = 0; i < h->size; i++) {
            const double d = 1.5 * ((double)h->value[i] - y->value[i]) / K;
            const double tol = 4 * ULP * fabs(d);
            ck_assert_msg(fabs((double)h->grad[i] - d) <= tol && fabs((double)y->grad[i] + d) <= tol,
                          "rank %d [%zu]: dh %.9g dy %.9g, want +-%.9g", cases[c].ndim, i, (double)h->grad[i],
                          (double)y->grad[i], d);
        }
    }
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- ag_gradcheck itself
 * cube: y = x^3 with a backward dx += k(i) 3 x^2 dy, k = 1 except at element `bad`, where it is
 * the factor under test. The checker must pass k = 1 and name the element for a sign error, a
 * missing factor, a wrong factor of 2 and a zero gradient. */
typedef struct cube_params {
    ag_real k;
    size_t bad;
} cube_params;
static ag_status cube_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status cube_forward(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) {
        const ag_real x = n->in[0]->value[i];
        n->out.value[i] = x * x * x;
    }
    return AG_OK;
}
static ag_status cube_backward(ag_node *n) {
    const cube_params *p = n->params;
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->out.size; i++) {
            const ag_real x = n->in[0]->value[i];
            n->in[0]->grad[i] += (i == p->bad ? p->k : 1) * 3 * x * x * n->out.grad[i];
        }
    return AG_OK;
}
static const ag_op cube_op = {"t_cube", 1, sizeof(cube_params), cube_shape, cube_forward, cube_backward};

typedef struct cube_ctx {
    ag_tensor *x;
    cube_params p;
    ag_real r[6];
} cube_ctx;
static ag_tensor *cube_loss(ag_tape *t, void *vctx) {
    cube_ctx *c = vctx;
    ag_tensor *y = ag_call(t, &cube_op, (ag_tensor *[]){c->x}, 1, &c->p);
    return ag_test_wsum(t, y, ag_tensor_wrap(t, 1, (size_t[]){6}, c->r));
}

START_TEST(gradcheck_flags_wrong_gradients) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    cube_ctx c = {.r = {0.5f, -1, 0.75f, 1, -0.25f, 0.8f}};
    ck_assert_int_eq(ag_params_add(ps, "x", 1, (size_t[]){6}, 0, &c.x), AG_OK);
    const ag_real xv[6] = {0.9f, -1.2f, 1.1f, 0.7f, -0.6f, 1.3f};
    memcpy(c.x->value, xv, sizeof xv);
    ag_tape *t = new_tape();
    /* k and the error it must report at element 3 (dJ/dx_3 = 3 x^2 r = 1.47): |k - 1| 1.47, or
     * relative to max(|analytic|, |numeric|) when that exceeds 1 */
    const double ks[] = {1, -1, 0, 2, 1.0 / 3};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        c.p = (cube_params){(ag_real)ks[i], 3};
        ag_gradcheck_result res;
        ck_assert_int_eq(ag_gradcheck(t, cube_loss, &c, &c.x, 1, GC_EPS, &res), AG_OK);
        ck_assert_uint_eq(res.n_checked, 6);
        ck_assert(memcmp(c.x->value, xv, sizeof xv) == 0);
        if (ks[i] == 1) {
            ck_assert_double_le(res.max_rel_err, AG_TEST_GRAD_TOL);
            continue;
        }
        const double exact = 3 * (double)xv[3] * xv[3] * c.r[3], ana = ks[i] * exact;
        const double want = fabs(ana - exact) / fmax(fmax(fabs(ana), exact), 1);
        ck_assert_msg(res.max_rel_err > 10 * AG_TEST_GRAD_TOL, "k = %g: error %g not flagged", ks[i], res.max_rel_err);
        ck_assert_double_eq_tol(res.max_rel_err, want, 0.02 * want);
        ck_assert_uint_eq(res.worst_tensor, 0);
        ck_assert_uint_eq(res.worst_index, 3);
        ck_assert_double_eq_tol(res.analytic, ana, 1e-5 * exact);
        ck_assert_double_le(fabs(res.numeric - exact), 0.01 * exact); /* + r eps^2 of the central difference */
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- l2: a weight listed more than once
 * J = l2(0.5, {W, W, V}) + l2(0.25, {W}) + sum(W .* R): dW = 2 (0.5 W) + 0.25 W + R = 1.25 W + R,
 * dV = 0.5 V. The first lambda W of a parameter is deferred to the end of the sweep, the others are
 * added at once (tape.c); with the numeric check on nothing is deferred. Both must give the sum. */
START_TEST(l2_repeated_weight_sums_every_term) {
    ag_params *ps;
    ag_tensor *W, *V;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){2, 3}, AG_DECAY, &W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "V", 1, (size_t[]){4}, AG_DECAY, &V), AG_OK);
    const ag_real wv[6] = {1, -2, 0.5f, 3, -1, 2}, vv[4] = {2, -1, 0.25f, 4};
    ag_real rv[6] = {0.5f, 0.25f, -1, 2, 0, -0.75f};
    memcpy(W->value, wv, sizeof wv);
    memcpy(V->value, vv, sizeof vv);
    double sw = 0, sv = 0, swr = 0;
    for (int i = 0; i < 6; i++) sw += (double)wv[i] * wv[i], swr += (double)wv[i] * rv[i];
    for (int i = 0; i < 4; i++) sv += (double)vv[i] * vv[i];
    ag_tape *t = new_tape();
    for (int check = 0; check <= 1; check++)
        for (int l2_first = 0; l2_first <= 1; l2_first++) {
            ag_tape_reset(t);
            ag_tape_set_check_numerics(t, check);
            ag_params_zero_grad(ps);
            ag_tensor *R = ag_tensor_wrap(t, 2, (size_t[]){2, 3}, rv);
            ag_tensor *L1 = NULL, *use = NULL;
            if (!l2_first) use = ag_test_wsum(t, W, R);
            L1 = ag_l2(t, (ag_real)0.5, (ag_tensor *[]){W, W, V}, 3);
            ag_tensor *L2 = ag_l2(t, (ag_real)0.25, (ag_tensor *[]){W}, 1);
            if (l2_first) use = ag_test_wsum(t, W, R);
            ag_tensor *J = ag_add(t, ag_add(t, L1, L2), use);
            ck_assert_ptr_nonnull(J);
            /* 0.25 (2 |W|^2 + |V|^2) + 0.125 |W|^2 + sum W R */
            const double jw = 0.25 * (2 * sw + sv) + 0.125 * sw + swr;
            ck_assert_double_le(fabs((double)J->value[0] - jw), 8 * ULP * (1 + fabs(jw)));
            ck_assert_int_eq(ag_backward(t, J), AG_OK);
            for (int i = 0; i < 6; i++)
                ck_assert_msg(fabs((double)W->grad[i] - (1.25 * wv[i] + rv[i])) <= 8 * ULP * (1 + fabs((double)wv[i])),
                              "check %d, l2 first %d: dW[%d] = %g, want %g", check, l2_first, i, (double)W->grad[i],
                              1.25 * wv[i] + rv[i]);
            for (int i = 0; i < 4; i++)
                ck_assert_double_le(fabs((double)V->grad[i] - 0.5 * vv[i]), 4 * ULP * fabs((double)vv[i]));
        }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A 100,000-op chain x <- tanh(a x + b) (a deep tape; ops on 0-D tensors) against the recursion written
 * out in double: forward x_{i+1} = tanh(a x_i + b), then backward d_i = g (1 - x_{i+1}^2),
 * dL/da += d_i x_i, dL/db += d_i, g <- d_i a, from g = 1 at L = x_N. Recorded twice on one tape
 * reset in between, so the second pass also shows that reset rewinds the arena cleanly. */
START_TEST(long_chain_matches_hand_recursion) {
    ag_params *ps;
    ag_tensor *a, *b;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "a", 0, NULL, 0, &a), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 0, NULL, 0, &b), AG_OK);
    a->value[0] = (ag_real)0.9;
    b->value[0] = (ag_real)0.1;
    const int links = ag_test_quick() ? 1000 : 33334; /* 3 ops per link */
    double x = 0.5, *xs = malloc(((size_t)links + 1) * sizeof *xs);
    ck_assert_ptr_nonnull(xs);
    const double av = (double)a->value[0], bv = (double)b->value[0];
    xs[0] = x;
    for (int i = 0; i < links; i++) xs[i + 1] = tanh(av * xs[i] + bv);
    double g = 1, da = 0, db = 0;
    for (int i = links - 1; i >= 0; i--) {
        double d = g * (1 - xs[i + 1] * xs[i + 1]);
        da += d * xs[i];
        db += d;
        g = d * av;
    }
    ag_tape *t = new_tape();
    for (int rep = 0; rep < 2; rep++) {
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        ag_tensor *y = ag_scalar(t, (ag_real)0.5);
        for (int i = 0; i < links; i++) y = ag_tanh(t, ag_add(t, ag_mul(t, y, a), b));
        ck_assert_int_eq(ag_backward(t, y), AG_OK);
        ck_assert_double_eq_tol(y->value[0], xs[links], 10 * AG_TEST_EXACT_TOL);
        ck_assert_double_eq_tol(a->grad[0], da, 10 * AG_TEST_EXACT_TOL * fabs(da));
        ck_assert_double_eq_tol(b->grad[0], db, 10 * AG_TEST_EXACT_TOL * fabs(db));
    }
    free(xs);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

static Suite *ops_suite(void) {
    Suite *s = suite_create("ops");
    TCase *gc = tcase_create("gradcheck");
    tcase_set_timeout(gc, 300);
    tcase_add_test(gc, gc_mlp_composite);
    suite_add_tcase(s, gc);
    TCase *v = tcase_create("values");
    tcase_set_timeout(v, 120);
    tcase_add_test(v, softmax_values);
    tcase_add_test(v, cross_entropy_large_logits);
    tcase_add_test(v, huge_logit_at_every_position);
    tcase_add_test(v, sigmoid_tanh_relu_extremes);
    tcase_add_test(v, tanh_accuracy);
    tcase_add_test(v, log_pow_domain_like_libm);
    tcase_add_test(v, matmul_against_naive);
    tcase_add_test(v, broadcast_and_reduce_values);
    tcase_add_test(v, losses_values);
    tcase_add_test(v, lane_sums_all_lengths);
    tcase_add_test(v, used_twice_with_builtins);
    tcase_add_test(v, binary_closed_forms_every_path);
    tcase_add_test(v, unary_closed_forms_and_accumulation);
    tcase_add_test(v, reduce_shape_softmax_closed_forms);
    tcase_add_test(v, cross_entropy_closed_form);
    tcase_add_test(v, squared_error_rows_every_rank);
    tcase_add_test(v, gradcheck_flags_wrong_gradients);
    tcase_add_test(v, l2_repeated_weight_sums_every_term);
    tcase_add_test(v, long_chain_matches_hand_recursion);
    suite_add_tcase(s, v);
    return s;
}

AG_TEST_MAIN(ops_suite)

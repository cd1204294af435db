/*
 * test_functions.c - the element-wise functions of ops/functions.c at the extremes: |x| = 1e4 and
 * 1e30 (and a few small arguments where the naive formula loses precision), value and gradient
 * against references derived by hand (the limits, below), in both builds: finite where the true
 * value is finite, never NaN. The records (records/functions.c) check them at ordinary points.
 */
#include <math.h>
#include <stdio.h>

#include "testutil.h"

typedef ag_tensor *(*fn1)(ag_tape *t, ag_tensor *x);
static ag_tensor *leaky_001(ag_tape *t, ag_tensor *x) { return ag_leaky_relu(t, x, (ag_real)0.01); }
static ag_tensor *elu_1(ag_tape *t, ag_tensor *x) { return ag_elu(t, x, 1); }

#ifdef AG_DOUBLE
#define REL 1e-12
#define TINY 1e-300
#else
#define REL 2e-6
#define TINY 1e-37 /* below FLT_MIN: a reference that underflows in float compares as 0 */
#endif

/* value y and gradient dy of f at x */
typedef struct row {
    const char *name;
    fn1 f;
    double x, y, dy;
} row;

/* Hand-derived: for x -> +inf, softplus = x + e^-x, sigmoid = 1 - e^-x; e^-1e4 underflows to 0
 * in double as in float. log1p(1e4) = ln 10001, log1p(1e30) = 30 ln 10 (+1e-30), log1p(1e-10) =
 * 1e-10 - 5e-21; expm1(1e-10) = 1e-10 + 5e-21. gelu: x Phi(x) -> x, f' -> 1 (and 0, -0 at
 * -inf: x Phi(x) ~ -phi(x) e^...). 1/x and x^-1/2 at 1e4: 1e-4 and 0.01, f' = -1/x^2 = -1e-8 and
 * -x^-1.5/2 = -5e-7; at 1e30 the gradients are 1e-60 and 5e-46, which underflow in float. */
static const row ROWS[] = {
    {"softplus", ag_softplus, 1e4, 1e4, 1},          {"softplus", ag_softplus, -1e4, 0, 0},
    {"softplus", ag_softplus, 1e30, 1e30, 1},        {"softplus", ag_softplus, -1e30, 0, 0},
    {"softplus", ag_softplus, 0, 0.69314718055994531, 0.5},
    {"log_sigmoid", ag_log_sigmoid, 1e4, 0, 0},      {"log_sigmoid", ag_log_sigmoid, -1e4, -1e4, 1},
    {"log_sigmoid", ag_log_sigmoid, 1e30, 0, 0},     {"log_sigmoid", ag_log_sigmoid, -1e30, -1e30, 1},
    {"log_sigmoid", ag_log_sigmoid, 0, -0.69314718055994531, 0.5},
    {"log1p", ag_log1p, 1e4, 9.2104403669765169, 1.0 / 10001},
    {"log1p", ag_log1p, 1e30, 69.077552789821371, 1e-30},
    {"log1p", ag_log1p, 1e-10, 1e-10 - 5e-21, 1 / (1 + 1e-10)},
    {"log1p", ag_log1p, -0.5, -0.69314718055994531, 2},
    {"expm1", ag_expm1, -1e4, -1, 0},                {"expm1", ag_expm1, -1e30, -1, 0},
    {"expm1", ag_expm1, 1e-10, 1e-10 + 5e-21, 1 + 1e-10},
    {"expm1", ag_expm1, 1e4, INFINITY, INFINITY},    {"expm1", ag_expm1, 1e30, INFINITY, INFINITY},
    {"expm1", ag_expm1, -20, -0.99999999793884642, 2.0611536224385579e-9}, /* e^-20: not 1 + out */
    {"gelu", ag_gelu, 1e4, 1e4, 1},                  {"gelu", ag_gelu, -1e4, 0, 0},
    {"gelu", ag_gelu, 1e30, 1e30, 1},                {"gelu", ag_gelu, -1e30, 0, 0},
    {"gelu_erf", ag_gelu_erf, 1e4, 1e4, 1},          {"gelu_erf", ag_gelu_erf, -1e4, 0, 0},
    {"gelu_erf", ag_gelu_erf, 1e30, 1e30, 1},        {"gelu_erf", ag_gelu_erf, -1e30, 0, 0},
    {"silu", ag_silu, 1e4, 1e4, 1},                  {"silu", ag_silu, -1e4, 0, 0},
    {"silu", ag_silu, 1e30, 1e30, 1},                {"silu", ag_silu, -1e30, 0, 0},
    {"leaky_relu", leaky_001, 1e30, 1e30, 1},        {"leaky_relu", leaky_001, -1e30, -1e28, 0.01},
    {"leaky_relu", leaky_001, -1e4, -100, 0.01},
    {"elu", elu_1, -1e4, -1, 0},                     {"elu", elu_1, -1e30, -1, 0},
    {"elu", elu_1, 1e30, 1e30, 1},                   {"elu", elu_1, -20, -0.99999999793884642, 2.0611536224385579e-9},
    {"sin", ag_sin, 1e4, -0.30561438888825215, -0.95215536825901481},
    {"cos", ag_cos, 1e4, -0.95215536825901481, 0.30561438888825215},
    {"reciprocal", ag_reciprocal, 1e4, 1e-4, -1e-8}, {"reciprocal", ag_reciprocal, -1e4, -1e-4, -1e-8},
    {"reciprocal", ag_reciprocal, 1e30, 1e-30, -1e-60},
    {"rsqrt", ag_rsqrt, 1e4, 0.01, -5e-7},           {"rsqrt", ag_rsqrt, 1e30, 1e-15, -5e-46},
};

static int close_to(double got, double want) {
    if (isinf(want)) return got == want;
    return fabs(got - want) <= REL * fabs(want) + TINY;
}

START_TEST(extremes) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (size_t k = 0; k < sizeof ROWS / sizeof ROWS[0]; k++) {
        const row *r = &ROWS[k];
        ag_tape_reset(t);
        ag_tensor *x = ag_scalar(t, (ag_real)r->x);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *y = r->f(t, x);
        ck_assert_msg(y != NULL, "%s(%g): %s", r->name, r->x, ag_tape_errmsg(t));
        ck_assert_int_eq(ag_backward(t, y), AG_OK);
        const double got = (double)y->value[0], dgot = (double)x->grad[0];
        ck_assert_msg(!isnan(got) && !isnan(dgot), "%s(%g) = %g, f' %g: NaN", r->name, r->x, got, dgot);
        ck_assert_msg(close_to(got, r->y), "%s(%g) = %.17g, want %.17g", r->name, r->x, got, r->y);
        ck_assert_msg(close_to(dgot, r->dy), "%s'(%g) = %.17g, want %.17g", r->name, r->x, dgot, r->dy);
    }
    printf("functions: %zu extreme values and gradients as derived (%s)\n", sizeof ROWS / sizeof ROWS[0],
           AG_REAL_NAME);
    ag_tape_free(t);
}
END_TEST

/* sin and cos past the fast range (|x| > 8192 in float, inf, NaN) take libm's value: compared
 * with libm in double on the same (rounded) argument. */
START_TEST(trig_large_arguments) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const double xs[] = {1e30, -1e30, 8192.5, -9000.25, 1e6, 3.0, -7000.125};
    for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
        for (int c = 0; c < 2; c++) {
            ag_tape_reset(t);
            ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){(ag_real)xs[k], (ag_real)0.5, (ag_real)xs[k]});
            ck_assert_int_eq(ag_requires_grad(x), AG_OK);
            ag_tensor *y = c ? ag_cos(t, x) : ag_sin(t, x);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(ag_backward(t, ag_sum(t, y)), AG_OK);
            const double xr = (double)(ag_real)xs[k];
            const double want = c ? cos(xr) : sin(xr), dwant = c ? -sin(xr) : cos(xr);
            /* float: the fast path's absolute error grows with |x| (Cody-Waite reduction) */
            const double tol = sizeof(ag_real) == 8 ? 1e-12 : 1e-6;
            ck_assert_msg(fabs((double)y->value[0] - want) <= tol, "%s(%g) = %.9g, libm %.9g", c ? "cos" : "sin",
                          xr, (double)y->value[0], want);
            ck_assert_msg(fabs((double)x->grad[0] - dwant) <= tol, "%s'(%g) = %.9g, libm %.9g", c ? "cos" : "sin",
                          xr, (double)x->grad[0], dwant);
            ck_assert(y->value[0] == y->value[2]); /* the same in any lane */
        }
    }
    ag_tape_reset(t); /* inf and NaN: NaN, as libm */
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){(ag_real)INFINITY, (ag_real)NAN});
    ag_tensor *y = ag_sin(t, x);
    ck_assert(y && isnan((double)y->value[0]) && isnan((double)y->value[1]));
    ag_tape_free(t);
}
END_TEST

/* Domain edges as libm: log1p(-1) = -inf, log1p(-2) NaN, rsqrt(0) = inf, rsqrt(-1) NaN,
 * reciprocal(0) = inf; and NaN stays NaN through every function. */
START_TEST(domain_edges) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){-1, -2, 0});
    ag_tensor *l = ag_log1p(t, x), *r = ag_rsqrt(t, x), *q = ag_reciprocal(t, x);
    ck_assert(l && r && q);
    ck_assert(isinf((double)l->value[0]) && l->value[0] < 0 && isnan((double)l->value[1]));
    ck_assert(isnan((double)r->value[0]) && isnan((double)r->value[1]) && isinf((double)r->value[2]));
    ck_assert(isinf((double)q->value[2]));
    fn1 all[] = {ag_softplus, ag_log_sigmoid, ag_log1p, ag_expm1, ag_gelu, ag_gelu_erf, ag_silu, leaky_001, elu_1,
                 ag_sin, ag_cos, ag_reciprocal, ag_rsqrt};
    ag_tensor *nan = ag_scalar(t, (ag_real)NAN);
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        ag_tensor *y = all[k](t, nan);
        ck_assert(y && isnan((double)y->value[0]));
    }
    ag_tape_free(t);
}
END_TEST

static Suite *functions_suite(void) {
    Suite *s = suite_create("functions");
    TCase *tc = tcase_create("extremes");
    tcase_add_test(tc, extremes);
    tcase_add_test(tc, trig_large_arguments);
    tcase_add_test(tc, domain_edges);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(functions_suite)

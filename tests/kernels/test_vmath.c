/*
 * test_vmath.c - the float build's vector exp and log (ag__fn_exp, ag__fn_log in
 * kernels/special.h), its tanh (ag__fn_tanh = ag__tanh1), and the exp, log, sqrt and tanh ops: libm's specials exactly (0, -0,
 * +-inf, NaN, subnormal inputs and results, overflow), within 1 ulp of glibc's expf/logf (tanh 3) over a
 * strided sweep of every float bit pattern in range, and the ops' vector loops (every clone, every
 * tail length) give the scalar functions' bits. The double build keeps libm: only the ops' checks.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/special.h"
#include "testutil.h"

#ifndef AG_DOUBLE
static float fbits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* |a - b| in units of b's last place (b finite, nonzero or zero: ulp of the subnormal range) */
static double ulps(float a, float b) {
    if (a == b || (isnan(a) && isnan(b))) return 0;
    if (isnan(a) || isnan(b) || isinf(a) || isinf(b)) return INFINITY;
    int e;
    frexpf(b, &e);
    const double u = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)a - (double)b) / u;
}
/* same value, or both NaN */
static int same(float a, float b) { return a == b ? signbit(a) == signbit(b) : isnan(a) && isnan(b); }

START_TEST(test_exp_edges) {
    const float xs[] = {0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN, -NAN, 88.7f, 88.72283f,
                        88.722839f, 88.7229f, 89.0f, 100.0f, 3e38f, FLT_MAX, -87.3f, -87.34f, -88.0f,
                        -100.0f, -103.2f, -103.97f, -103.972f, -103.98f, -104.0f, -110.0f, -FLT_MAX,
                        1e-45f, -1e-45f, 1e-40f, -1e-40f, 1e-30f, FLT_MIN, 0.5f, -0.5f, 0.34657359f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        const float x = xs[i], a = ag__fn_exp(x), b = expf(x);
        if (isnan(b) || isinf(b) || b == 0 || x == 0) ck_assert_msg(same(a, b), "exp(%a) = %a, libm %a", x, a, b);
        else ck_assert_msg(ulps(a, b) <= 1, "exp(%a) = %a, libm %a", x, a, b);
    }
}
END_TEST

START_TEST(test_log_edges) {
    const float xs[] = {0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f, 2e-45f, 1e-40f,
                        FLT_MIN, 1.17549421e-38f, FLT_MAX, 0.70710677f, 0.70710683f, 1.41421354f,
                        1.00000012f, 0.99999994f, 2.0f, 0.5f, 2.7182817f, -1e-45f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        const float x = xs[i], a = ag__fn_log(x), b = logf(x);
        if (isnan(b) || isinf(b) || b == 0) ck_assert_msg(same(a, b) || (isnan(a) && isnan(b)), "log(%a) = %a, libm %a", x, a, b);
        else ck_assert_msg(ulps(a, b) <= 1, "log(%a) = %a, libm %a", x, a, b);
    }
}
END_TEST

/* every STRIDE-th bit pattern (the full sweep, stride 1, measured the bounds in special.h) */
#define STRIDE 61u
START_TEST(test_sweeps) {
    double we = 0, wl = 0, wt = 0;
    size_t differ = 0;
    for (uint32_t u = 0; u < 0xff800000u; u += STRIDE) {
        const float x = fbits(u);
        if (isnan(x)) continue;
        if (x >= -104.0f && x <= 89.0f) we = ag_test_worse(we, ulps(ag__fn_exp(x), expf(x)));
        if (u < 0x7f800000u) wl = ag_test_worse(wl, ulps(ag__fn_log(x), logf(x)));
        wt = ag_test_worse(wt, ulps(ag__fn_tanh(x), tanhf(x)));
        differ += !same(ag__fn_tanh(x), ag__tanh1(x)); /* counted: a ck_assert per point is slow */
    }
    printf("test_vmath: exp within %.3f ulp, log within %.3f ulp, tanh within %.3f ulp of libm (stride %u)\n",
           we, wl, wt, STRIDE);
    ck_assert(we <= 1);
    ck_assert(wl <= 1);
    ck_assert(wt <= 3);
    ck_assert_uint_eq(differ, 0);
}
END_TEST
#endif

/* the ops' loops (clones, tails 0..40) against the scalar functions, bit for bit */
START_TEST(test_ops_bits) {
    enum { N = 41 };
    ag_real v[N];
    const double src[] = {0, -0.0, 1, -1, INFINITY, -INFINITY, NAN, 88.73, -103.5, -120, 1e-40, 2.5, 1e-3};
    for (size_t len = 1; len <= N; len++) {
        for (size_t i = 0; i < len; i++)
            v[i] = (ag_real)(i < sizeof src / sizeof src[0] ? src[i] : 0.37 * (double)i - 7);
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_tensor *x = ag_tensor_from(t, 1, &len, v);
        ag_tensor *e = ag_exp(t, x), *l = ag_log(t, x), *s = ag_sqrt(t, x), *th = ag_tanh(t, x);
        ck_assert_ptr_nonnull(th);
        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_nonnull(l);
        ck_assert_ptr_nonnull(s);
        for (size_t i = 0; i < len; i++) {
#ifdef AG_DOUBLE
            const ag_real be = exp(v[i]), bl = log(v[i]), bs = sqrt(v[i]), bt = tanh(v[i]);
#else
            const ag_real be = ag__fn_exp(v[i]), bl = ag__fn_log(v[i]), bs = sqrtf(v[i]), bt = ag__tanh1(v[i]);
#endif
            ck_assert(memcmp(&e->value[i], &be, sizeof be) == 0 || (isnan(e->value[i]) && isnan(be)));
            ck_assert(memcmp(&l->value[i], &bl, sizeof bl) == 0 || (isnan(l->value[i]) && isnan(bl)));
            ck_assert(memcmp(&s->value[i], &bs, sizeof bs) == 0 || (isnan(s->value[i]) && isnan(bs)));
            ck_assert(memcmp(&th->value[i], &bt, sizeof bt) == 0 || (isnan(th->value[i]) && isnan(bt)));
        }
        ag_tape_free(t);
    }
}
END_TEST

static Suite *vmath_suite(void) {
    Suite *s = suite_create("vmath");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
#ifndef AG_DOUBLE
    tcase_add_test(tc, test_exp_edges);
    tcase_add_test(tc, test_log_edges);
    tcase_add_test(tc, test_sweeps);
#endif
    tcase_add_test(tc, test_ops_bits);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(vmath_suite)

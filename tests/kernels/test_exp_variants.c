/*
 * test_exp_variants.c - the e^x of the sigmoid kernels (ag__exp_nonpos, one definition expanded
 * per instruction set: AG__EXP_NONPOS_DEFINE in kernels/eltwise.h) gives the scalar's bits in
 * every SIMD variant this CPU runs (SSE2, AVX2, AVX-512F, through the ag__exp_variant test hook),
 * on its domain x <= 0 and NaN: zeros, the -87.3 clamp and its neighbours, -inf, NaNs with
 * payloads, denormal inputs, the rounding points of n = round(x log2 e), a dense sweep, random
 * values and random negative bit patterns; every length 0..40 (the vector tails). The scalar is
 * also held to libm's exp (within 2 ulp, exact at 0, 0 below the clamp).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define NEXT nextafter
#else
#define NEXT nextafterf
#endif

static const char *const WIDE[] = {"sse2", "avx2", "avx512"};

static ag_real neg_from_bits(uint64_t b) { /* any bit pattern with the sign bit set */
    ag_real v;
#ifdef AG_DOUBLE
    b |= 1ull << 63;
    memcpy(&v, &b, sizeof v);
#else
    uint32_t u = (uint32_t)b | 0x80000000u;
    memcpy(&v, &u, sizeof v);
#endif
    return v;
}

/* The inputs: specials first, then sweeps and random values; returns the count (<= cap). */
static size_t inputs(ag_real *v, size_t cap) {
    size_t k = 0;
    const double edges[] = {0.0, -0.0, -1e-45, -1.4e-45, -1e-40, -1.17549435e-38, -1e-30, -1e-8,
                            -0.5, -0.34657359, -1.0, -2.0, -10.0, -40.0, -87.0, -87.29, -87.3, -87.31,
                            -88.0, -88.72, -89.0, -100.0, -103.97, -104.0, -1e10, -3e38,
                            -(double)FLT_MAX, -HUGE_VAL};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        const ag_real e = (ag_real)edges[i];
        v[k++] = e;
        ag_real up = e, down = e;
        for (int s = 0; s < 4; s++) { /* a few ulp either side (kept <= 0) */
            up = NEXT(up, (ag_real)0);
            down = NEXT(down, (ag_real)-HUGE_VAL);
            v[k++] = up;
            v[k++] = down;
        }
    }
    /* (j + 1/2) ln2: where n = round(x log2 e) changes, and either side of it */
    for (int j = 0; j < 127; j++) {
        const ag_real h = (ag_real)(-(j + 0.5) * 0.69314718055994531);
        v[k++] = h;
        v[k++] = NEXT(h, (ag_real)0);
        v[k++] = NEXT(h, (ag_real)-HUGE_VAL);
    }
    v[k++] = (ag_real)NAN;
    v[k++] = -(ag_real)NAN;
#ifdef AG_DOUBLE
    uint64_t nans[] = {0x7ff0000000000001ull, 0xfff8000000012345ull};
#else
    uint32_t nans[] = {0x7f800001u, 0xffc12345u}; /* signalling; quiet with a payload */
#endif
    for (size_t i = 0; i < 2; i++) memcpy(&v[k++], &nans[i], sizeof nans[i]);
    for (ag_real x = (ag_real)-87.5; x <= 0 && k < cap / 2; x += (ag_real)0.0137) v[k++] = x;
    ag_rng r;
    ag_rng_seed(&r, 11);
    while (k < cap) {
        const uint64_t b = ag_rng_next(&r);
        v[k++] = b & 1 ? (ag_real)(-90 * ag_rng_uniform(&r)) : neg_from_bits(b >> 1);
    }
    return k;
}

enum { N = 20000 };

/* Every variant this CPU runs gives the scalar's bytes, whole and at every short length. */
START_TEST(test_variants_match_scalar) {
    ag_real *x = malloc(N * sizeof *x), *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    ck_assert(x && want && got);
    const size_t n = inputs(x, N);
    ck_assert_int_eq(ag__exp_variant("scalar", x, want, n), 0);
    int ran = 0;
    for (size_t v = 0; v < sizeof WIDE / sizeof WIDE[0]; v++) {
        memset(got, 0x5a, n * sizeof *got);
        if (ag__exp_variant(WIDE[v], x, got, n) != 0) continue;
        ran++;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], sizeof got[i]) != 0)
                ck_abort_msg("%s: exp(%.9g) = %.9g, scalar %.9g (element %zu)", WIDE[v], (double)x[i],
                             (double)got[i], (double)want[i], i);
        /* lengths 0..40 from a few offsets: the vector loops' tails and masked lanes */
        for (size_t off = 0; off < 64; off += 21)
            for (size_t len = 0; len <= 40; len++) {
                ag_real out[41];
                out[len] = (ag_real)42; /* no write past the end */
                ck_assert_int_eq(ag__exp_variant(WIDE[v], x + off, out, len), 0);
                ck_assert(memcmp(out, want + off, len * sizeof *out) == 0);
                ck_assert(out[len] == (ag_real)42);
            }
    }
    printf("test_exp_variants: %d SIMD variant(s) matched the scalar on %zu inputs\n", ran, n);
    free(x);
    free(want);
    free(got);
}
END_TEST

/* The scalar against libm: within 2 ulp on [-87.3, 0], exact 1 at +-0, 0 below the clamp and at
 * -inf, NaN for NaN. */
START_TEST(test_scalar_vs_libm) {
    ag_real *x = malloc(N * sizeof *x), *e = malloc(N * sizeof *e);
    ck_assert(x && e);
    const size_t n = inputs(x, N);
    ck_assert_int_eq(ag__exp_variant("scalar", x, e, n), 0);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double xi = (double)x[i], ref = exp(xi);
        if (xi != xi) {
            ck_assert_msg(e[i] != e[i], "exp(NaN) = %g", (double)e[i]);
        } else if (xi == 0) {
            ck_assert(e[i] == 1);
        } else if (x[i] < (ag_real)-87.3) {
#ifndef AG_DOUBLE
            ck_assert_msg(e[i] == 0, "exp(%.9g) = %g below the clamp", xi, (double)e[i]);
#endif
        } else {
            const double rel = fabs((double)e[i] - ref) / ref;
            worst = ag_test_worse(worst, rel);
            ck_assert_msg(rel <= 2 * AG_TEST_ULP, "exp(%.9g) = %.9g, libm %.9g", xi, (double)e[i], ref);
        }
    }
    printf("test_exp_variants: scalar within %.2f ulp of libm\n", worst / AG_TEST_ULP);
    free(x);
    free(e);
}
END_TEST

START_TEST(test_unknown_variants) {
    ag_real x = -1, o = 0;
    ck_assert_int_eq(ag__exp_variant("avx1024", &x, &o, 1), -1);
    ck_assert_int_eq(ag__exp_variant(NULL, &x, &o, 1), -1);
#ifdef AG_DOUBLE
    for (size_t v = 0; v < sizeof WIDE / sizeof WIDE[0]; v++)
        ck_assert_int_eq(ag__exp_variant(WIDE[v], &x, &o, 1), -1);
#endif
}
END_TEST

static Suite *exp_variants_suite(void) {
    Suite *s = suite_create("exp_variants");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_variants_match_scalar);
    tcase_add_test(tc, test_scalar_vs_libm);
    tcase_add_test(tc, test_unknown_variants);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(exp_variants_suite)

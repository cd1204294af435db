/*
 * test_index.c - the indexing, mask and comparison ops (autograd/ops/index.c, compare.c) at
 * hand-computed values, beyond what their records check (tests/ops/records/index.c, compare.c):
 * repeated indices in gather_rows and index_select add up, argmax/argmin take the first of ties
 * and the first NaN, max_axis's gradient goes to the first maximum, masked_fill with -inf then
 * softmax gives exact zeros (and zero gradients), ties of maximum split the gradient, clamp's
 * boundary, sign's zero gradient, where with mask values other than 0/1, and no saved state in
 * no-grad mode.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static ag_tape *T;

static void setup(void) { ck_assert_int_eq(ag_tape_new(&T, NULL), AG_OK); }
static void teardown(void) { ag_tape_free(T); }

/* A tape leaf requiring a gradient, holding v. */
static ag_tensor *leaf(int ndim, const size_t *shape, const ag_real *v) {
    ag_tensor *x = ag_tensor_from(T, ndim, shape, v);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    return x;
}

static void expect(const char *what, const ag_real *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg((double)got[i] == want[i] || (isnan(want[i]) && isnan((double)got[i])),
                      "%s[%zu] is %.9g, want %.9g", what, i, (double)got[i], want[i]);
}

START_TEST(test_gather_rows_repeats) {
    /* table 4 x 2; rows 2, 0, 2, 2: row 2 gathered three times gets three gradients */
    const ag_real tv[] = {0, 1, 10, 11, 20, 21, 30, 31};
    ag_tensor *E = leaf(2, (size_t[]){4, 2}, tv);
    int32_t idx[] = {2, 0, 2, 2};
    ag_tensor *y = ag_gather_rows(T, E, idx, 4);
    ck_assert_ptr_nonnull(y);
    idx[0] = 3; /* the op kept its own copy: backward must not see this */
    expect("y", y->value, (double[]){20, 21, 0, 1, 20, 21, 20, 21}, 8);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 2, 3, 4, 5, 6, 7, 8}), AG_OK);
    expect("dE", E->grad, (double[]){3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8, 0, 0}, 8);
}
END_TEST

START_TEST(test_index_select_take_along) {
    /* x 2 x 3, columns 2, 2, 0 */
    const ag_real xv[] = {1, 2, 3, 4, 5, 6};
    ag_tensor *x = leaf(2, (size_t[]){2, 3}, xv);
    ag_tensor *y = ag_index_select(T, x, -1, (const int32_t[]){2, 2, 0}, 3);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 3);
    expect("index_select", y->value, (double[]){3, 3, 1, 6, 6, 4}, 6);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 1, 1, 1, 1, 1}), AG_OK);
    expect("dx", x->grad, (double[]){1, 0, 2, 1, 0, 2}, 6);

    /* take_along axis 0, k 2: y[j, i] = x[idx[j, i], i] */
    ag_tape_reset(T);
    x = leaf(2, (size_t[]){2, 3}, xv);
    y = ag_take_along(T, x, 0, (const int32_t[]){1, 0, 1, 1, 1, 0}, 2);
    ck_assert_ptr_nonnull(y);
    expect("take_along", y->value, (double[]){4, 2, 6, 4, 5, 3}, 6);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 2, 3, 4, 5, 6}), AG_OK);
    expect("dx", x->grad, (double[]){0, 2, 6, 1 + 4, 5, 3}, 6);

    /* one_hot: no gradient, a constant */
    ag_tape_reset(T);
    ag_tensor *h = ag_one_hot(T, (const int32_t[]){1, 0, 1}, 3, 2);
    ck_assert_ptr_nonnull(h);
    ck_assert(!(h->flags & AG_REQUIRES_GRAD));
    expect("one_hot", h->value, (double[]){0, 1, 1, 0, 0, 1}, 6);
}
END_TEST

START_TEST(test_argmax_first) {
    /* 2 x 4 with ties and a NaN; along axis 1 and axis 0 */
    ag_tensor *x = ag_tensor_from(T, 2, (size_t[]){2, 4}, (const ag_real[]){3, 7, 7, 1, 2, (ag_real)NAN, 9, (ag_real)NAN});
    int32_t a[4];
    ck_assert_int_eq(ag_argmax(x, 1, a), AG_OK);
    ck_assert_int_eq(a[0], 1); /* first of the two 7s */
    ck_assert_int_eq(a[1], 1); /* the first NaN */
    ck_assert_int_eq(ag_argmin(x, -1, a), AG_OK);
    ck_assert_int_eq(a[0], 3);
    ck_assert_int_eq(a[1], 1);
    ck_assert_int_eq(ag_argmax(x, 0, a), AG_OK);
    ck_assert_int_eq(a[0], 0);
    ck_assert_int_eq(a[1], 1);
    ck_assert_int_eq(a[2], 1);
    ck_assert_int_eq(a[3], 1);
    /* long rows (the lane path): ties at 5 and 33 */
    ag_real v[40];
    for (int i = 0; i < 40; i++) v[i] = (ag_real)(i % 7);
    v[5] = v[33] = 50;
    ag_tensor *r = ag_tensor_from(T, 1, (size_t[]){40}, v);
    ck_assert_int_eq(ag_argmax(r, 0, a), AG_OK);
    ck_assert_int_eq(a[0], 5);
    ck_assert_int_eq(ag_argmin(r, 0, a), AG_OK);
    ck_assert_int_eq(a[0], 0);
    /* errors */
    ck_assert_int_eq(ag_argmax(x, 2, a), AG_ERR_SHAPE);
    ck_assert_int_eq(ag_argmax(x, -3, a), AG_ERR_SHAPE);
    ck_assert_int_eq(ag_argmax(NULL, 0, a), AG_ERR_ARG);
    ck_assert_int_eq(ag_argmin(x, 0, NULL), AG_ERR_ARG);
}
END_TEST

START_TEST(test_max_axis_first) {
    /* rows [1 5 5] and [4 4 0]: the gradient goes to the first maximum only */
    ag_tensor *x = leaf(2, (size_t[]){2, 3}, (const ag_real[]){1, 5, 5, 4, 4, 0});
    ag_tensor *y = ag_max_axis(T, x, 1);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 1);
    expect("max", y->value, (double[]){5, 4}, 2);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){2, 3}), AG_OK);
    expect("dx", x->grad, (double[]){0, 2, 0, 3, 0, 0}, 6);
    ag_tape_reset(T);
    x = leaf(2, (size_t[]){2, 3}, (const ag_real[]){1, 5, 5, 4, 4, 0});
    y = ag_min_axis(T, x, 0);
    expect("min", y->value, (double[]){1, 4, 0}, 3);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 2, 3}), AG_OK);
    expect("dx", x->grad, (double[]){1, 0, 0, 0, 2, 3}, 6);
}
END_TEST

START_TEST(test_causal_softmax_zeros) {
    /* scores 1 x 2 x 3 x 3 with a 3 x 3 causal mask (1 above the diagonal): exact zeros */
    ag_real s[18], m[9];
    for (int i = 0; i < 18; i++) s[i] = (ag_real)(0.3 * i - 2);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) m[i * 3 + j] = j > i ? 1 : 0;
    ag_tensor *x = leaf(4, (size_t[]){1, 2, 3, 3}, s);
    ag_tensor *M = ag_tensor_from(T, 2, (size_t[]){3, 3}, m);
    ag_tensor *p = ag_softmax(T, ag_masked_fill(T, x, M, (ag_real)-INFINITY));
    ck_assert_ptr_nonnull(p);
    ag_real seed[18];
    for (int i = 0; i < 18; i++) seed[i] = (ag_real)(1 + i);
    ck_assert_int_eq(ag_backward_seed(T, p, seed), AG_OK);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 3; i++) {
            double row = 0;
            for (int j = 0; j < 3; j++) {
                const size_t k = (size_t)(h * 9 + i * 3 + j);
                if (j > i) {
                    ck_assert_msg(p->value[k] == 0, "p[%zu] = %g, want exactly 0", k, (double)p->value[k]);
                    ck_assert_msg(x->grad[k] == 0, "dx[%zu] = %g, want exactly 0", k, (double)x->grad[k]);
                }
                ck_assert(isfinite((double)x->grad[k]));
                row += (double)p->value[k];
            }
            ck_assert(fabs(row - 1) < 1e-6);
        }
    ck_assert(p->value[0] == 1); /* the first row sees only itself */
}
END_TEST

START_TEST(test_where_fill_values) {
    /* any nonzero is true (0.5, -2, NaN); -0 is false */
    ag_tensor *m = ag_tensor_from(T, 1, (size_t[]){4}, (const ag_real[]){(ag_real)0.5, (ag_real)-0.0, -2, (ag_real)NAN});
    ag_tensor *a = leaf(1, (size_t[]){4}, (const ag_real[]){1, 2, 3, 4});
    ag_tensor *b = leaf(0, NULL, (const ag_real[]){9});
    ag_tensor *y = ag_where(T, m, a, b);
    ck_assert_ptr_nonnull(y);
    expect("where", y->value, (double[]){1, 9, 3, 4}, 4);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 2, 3, 4}), AG_OK);
    expect("da", a->grad, (double[]){1, 0, 3, 4}, 4);
    expect("db", b->grad, (double[]){2}, 1); /* b broadcast: its gradients sum */
    ck_assert_ptr_null(m->grad);
}
END_TEST

START_TEST(test_maximum_ties_clamp_sign) {
    ag_tensor *a = leaf(1, (size_t[]){3}, (const ag_real[]){1, 2, 3});
    ag_tensor *b = leaf(1, (size_t[]){3}, (const ag_real[]){2, 2, (ag_real)NAN});
    ag_tensor *y = ag_maximum(T, a, b);
    expect("maximum", y->value, (double[]){2, 2, NAN}, 3);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){4, 4, 4}), AG_OK);
    expect("da", a->grad, (double[]){0, 2, 0}, 3); /* the tie splits 4 into 2 + 2 */
    expect("db", b->grad, (double[]){4, 2, 0}, 3);

    /* maximum(x, x): both halves of every tie into one buffer, dx = dy */
    ag_tape_reset(T);
    a = leaf(1, (size_t[]){3}, (const ag_real[]){1, -2, 3});
    ck_assert_int_eq(ag_backward_seed(T, ag_maximum(T, a, a), (ag_real[]){4, 5, 6}), AG_OK);
    expect("d(max(x, x))", a->grad, (double[]){4, 5, 6}, 3);

    ag_tape_reset(T);
    ag_tensor *x = leaf(1, (size_t[]){5}, (const ag_real[]){-2, -1, 0, 1, 2});
    y = ag_clamp(T, x, -1, 1);
    expect("clamp", y->value, (double[]){-1, -1, 0, 1, 1}, 5);
    ck_assert_int_eq(ag_backward_seed(T, y, (ag_real[]){1, 1, 1, 1, 1}), AG_OK);
    expect("dx", x->grad, (double[]){0, 1, 1, 1, 0}, 5); /* the boundary is inside */

    ag_tape_reset(T);
    x = leaf(1, (size_t[]){4}, (const ag_real[]){-3, 0, 2, (ag_real)NAN});
    y = ag_sign(T, x);
    expect("sign", y->value, (double[]){-1, 0, 1, 0}, 4);
    ag_tensor *z = ag_abs(T, x);
    expect("abs", z->value, (double[]){3, 0, 2, NAN}, 4);
    ck_assert_int_eq(ag_backward_seed(T, ag_add(T, y, z), (ag_real[]){1, 1, 1, 1}), AG_OK);
    expect("dx", x->grad, (double[]){-1, 0, 1, 0}, 4); /* sign adds 0; abs'(0) = 0 */
}
END_TEST

START_TEST(test_no_grad_saves_nothing) {
    /* with no gradient needed the ops keep no indices: only the result's bytes are used */
    ag_tensor *E = ag_tensor_new(T, 2, (size_t[]){100, 16});
    int32_t idx[64];
    for (int i = 0; i < 64; i++) idx[i] = i;
    size_t before = ag_tape_mem_used(T);
    ck_assert_ptr_nonnull(ag_gather_rows(T, E, idx, 64));
    const size_t plain = ag_tape_mem_used(T) - before;
    ag_tensor *P = leaf(2, (size_t[]){100, 16}, E->value);
    before = ag_tape_mem_used(T);
    ck_assert_ptr_nonnull(ag_gather_rows(T, P, idx, 64));
    ck_assert_uint_ge(ag_tape_mem_used(T) - before, plain + 64 * sizeof(int32_t));
}
END_TEST

static Suite *index_suite(void) {
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("index");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_gather_rows_repeats);
    tcase_add_test(tc, test_index_select_take_along);
    tcase_add_test(tc, test_argmax_first);
    tcase_add_test(tc, test_max_axis_first);
    tcase_add_test(tc, test_causal_softmax_zeros);
    tcase_add_test(tc, test_where_fill_values);
    tcase_add_test(tc, test_maximum_ties_clamp_sign);
    tcase_add_test(tc, test_no_grad_saves_nothing);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(index_suite)

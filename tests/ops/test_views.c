/*
 * test_views.c - the views and joins of shape.c and join.c beyond their records (records/views.c):
 * the zero-copy ops share the parent's memory (the value pointer lies inside the parent's) and still
 * pass gradients back to it, on a parameter and on a tape leaf; the copies do not alias; and values
 * and gradients on small examples worked out by hand (or by index formulas written here).
 */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static int inside(const ag_tensor *view, const ag_tensor *parent) {
    return view->value >= parent->value && view->value + view->size <= parent->value + parent->size;
}

static void expect(const char *what, const ag_real *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg((double)got[i] == want[i], "%s[%zu] is %g, want %g", what, i, (double)got[i], want[i]);
}

/* ---------------------------------------------------------------- views share memory */

START_TEST(t_views_share_param) {
    ag_params *ps;
    ag_tensor *w;
    ag_tape *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 2, (size_t[]){4, 3}, 0, &w), AG_OK);
    for (int i = 0; i < 12; i++) w->value[i] = (ag_real)i;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);

    ag_tensor *s = ag_slice(t, w, 0, 1, 2, 1); /* rows 1..2: one block */
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_eq(s->value, w->value + 3);
    ck_assert(inside(s, w));
    ag_tensor *u = ag_unsqueeze(t, s, 0);  /* 1x2x3 */
    ag_tensor *f = ag_flatten(t, u, 1, 2); /* 1x6 */
    ag_tensor *q = ag_squeeze(t, f, 0);    /* 6 */
    ck_assert(u && f && q);
    ck_assert_ptr_eq(u->value, s->value);
    ck_assert_ptr_eq(f->value, s->value);
    ck_assert_ptr_eq(q->value, s->value);
    ck_assert_int_eq(q->ndim, 1);
    ck_assert_uint_eq(q->shape[0], 6);
    expect("q", q->value, (const double[]){3, 4, 5, 6, 7, 8}, 6);

    /* a slice off the leading axis is a copy */
    ag_tensor *c = ag_slice(t, w, 1, 1, 1, 1);
    ck_assert_ptr_nonnull(c);
    ck_assert(!inside(c, w));
    expect("column 1", c->value, (const double[]){1, 4, 7, 10}, 4);

    ag_real seed[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(ag_backward_seed(t, q, seed), AG_OK);
    expect("dw", w->grad, (const double[]){0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0}, 12);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(t_views_share_leaf) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real v[24];
    for (int i = 0; i < 24; i++) v[i] = (ag_real)i;
    ag_tensor *x = ag_tensor_from(t, 3, (size_t[]){2, 3, 4}, v);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *f = ag_flatten(t, x, 0, 1);     /* 6x4 */
    ag_tensor *s = ag_slice(t, f, 0, 5, 1, 7); /* row 5, len 1: one block whatever the step */
    ag_tensor *p =
        ag_permute(t, ag_unsqueeze(t, x, 1), (const int[]){1, 0, 2, 3}); /* moves a size-1 axis: a view */
    ck_assert(f && s && p);
    ck_assert_ptr_eq(f->value, x->value);
    ck_assert_ptr_eq(s->value, x->value + 20);
    ck_assert_ptr_eq(p->value, x->value);
    ag_tensor *b = ag_broadcast_to(t, x, 4, (size_t[]){1, 2, 3, 4}); /* only a 1 added: a view */
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_eq(b->value, x->value);
    /* gradients through all of them land in x */
    ag_tensor *parts[3] = {ag_flatten(t, s, 0, 1), ag_flatten(t, p, 0, 3), ag_flatten(t, b, 0, 3)};
    ag_tensor *y = ag_concat(t, parts, 3, 0); /* 4 + 24 + 24 */
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(y->size, 52);
    ag_real seed[52];
    for (int i = 0; i < 52; i++) seed[i] = 1;
    ck_assert_int_eq(ag_backward_seed(t, y, seed), AG_OK);
    double want[24];
    for (int i = 0; i < 24; i++) want[i] = i >= 20 ? 3 : 2;
    expect("dx", x->grad, want, 24);
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- values by hand */

/* x[i][j][k] = 100 i + 10 j + k, exact in float */
static ag_tensor *digits3(ag_tape *t, size_t a, size_t b, size_t c) {
    ag_tensor *x = ag_tensor_new(t, 3, (size_t[]){a, b, c});
    for (size_t i = 0; i < a; i++)
        for (size_t j = 0; j < b; j++)
            for (size_t k = 0; k < c; k++) x->value[(i * b + j) * c + k] = (ag_real)(100 * i + 10 * j + k);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    return x;
}

START_TEST(t_permute_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = digits3(t, 2, 3, 4);
    ag_tensor *y = ag_permute(t, x, (const int[]){2, 0, -2}); /* y[k][i][j] = x[i][j][k] */
    ck_assert_ptr_nonnull(y);
    ck_assert(y->ndim == 3 && y->shape[0] == 4 && y->shape[1] == 2 && y->shape[2] == 3);
    for (size_t k = 0; k < 4; k++)
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < 3; j++)
                ck_assert_msg(y->value[(k * 2 + i) * 3 + j] == (ag_real)(100 * i + 10 * j + k),
                              "y[%zu][%zu][%zu]", k, i, j);
    ck_assert(y->value[0] == 0 && y->value[1] == 10 && y->value[3] == 100 && y->value[6] == 1 &&
              y->value[23] == 123);
    /* transpose_axes(0, 2): z[k][j][i] = x[i][j][k] */
    ag_tensor *z = ag_transpose_axes(t, x, 0, -1);
    ck_assert_ptr_nonnull(z);
    expect("z first row", z->value, (const double[]){0, 100, 10, 110, 20, 120, 1, 101}, 8);
    /* gradient: dy = y's own index, sent back: dx[i][j][k] = dy[k][i][j] */
    ag_real seed[24];
    for (int i = 0; i < 24; i++) seed[i] = (ag_real)i;
    ck_assert_int_eq(ag_backward_seed(t, y, seed), AG_OK);
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 4; k++)
                ck_assert(x->grad[(i * 3 + j) * 4 + k] == (ag_real)((k * 2 + i) * 3 + j));
    ag_tape_free(t);
}
END_TEST

/* the head split of attention, 4-D, and a 4-D transposition of the innermost axis, past a tile */
START_TEST(t_permute_4d) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const size_t A = 2, B = 3, C = 19, D = 17;
    ag_tensor *x = ag_tensor_new(t, 4, (size_t[]){A, B, C, D});
    for (size_t i = 0; i < x->size; i++) x->value[i] = (ag_real)i;
    ag_tensor *y = ag_permute(t, x, (const int[]){0, 2, 1, 3}),
              *z = ag_permute(t, x, (const int[]){3, 1, 0, 2});
    ck_assert(y && z);
    for (size_t a = 0; a < A; a++)
        for (size_t b = 0; b < B; b++)
            for (size_t c = 0; c < C; c++)
                for (size_t d = 0; d < D; d++) {
                    const ag_real v = (ag_real)(((a * B + b) * C + c) * D + d);
                    ck_assert(y->value[((a * C + c) * B + b) * D + d] == v);
                    ck_assert(z->value[((d * B + b) * A + a) * C + c] == v);
                }
    ag_tape_free(t);
}
END_TEST

START_TEST(t_broadcast_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *r = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){1, 2, 3});
    ag_tensor *c = ag_tensor_from(t, 2, (size_t[]){3, 1}, (ag_real[]){1, 2, 3});
    ck_assert_int_eq(ag_requires_grad(r), AG_OK);
    ck_assert_int_eq(ag_requires_grad(c), AG_OK);
    ag_tensor *yr = ag_broadcast_to(t, r, 2, (size_t[]){2, 3}),
              *yc = ag_broadcast_to(t, c, 2, (size_t[]){3, 2});
    ck_assert(yr && yc);
    expect("rows", yr->value, (const double[]){1, 2, 3, 1, 2, 3}, 6);
    expect("columns", yc->value, (const double[]){1, 1, 2, 2, 3, 3}, 6);
    ag_tensor *y = ag_concat(t, (ag_tensor *[]){ag_flatten(t, yr, 0, 1), ag_flatten(t, yc, 0, 1)}, 2, 0);
    ck_assert_int_eq(ag_backward_seed(t, y, (const ag_real[]){1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}), AG_OK);
    expect("dr", r->grad, (const double[]){5, 7, 9}, 3);  /* column sums */
    expect("dc", c->grad, (const double[]){3, 7, 11}, 3); /* row sums */
    ag_tape_free(t);
}
END_TEST

START_TEST(t_slice_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real v[12];
    for (int i = 0; i < 12; i++) v[i] = (ag_real)i;
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){3, 4}, v);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *a = ag_slice(t, x, 1, 1, 2, 1), *b = ag_slice(t, x, -1, 0, 2, 3),
              *c = ag_slice(t, x, 0, 0, 2, 2);
    ck_assert(a && b && c);
    expect("x[:, 1:3]", a->value, (const double[]){1, 2, 5, 6, 9, 10}, 6);
    expect("x[:, 0:4:3]", b->value, (const double[]){0, 3, 4, 7, 8, 11}, 6);
    expect("x[0:3:2]", c->value, (const double[]){0, 1, 2, 3, 8, 9, 10, 11}, 8);
    ag_tensor *y = ag_concat(t, (ag_tensor *[]){ag_flatten(t, a, 0, 1), ag_flatten(t, b, 0, 1)}, 2, 0);
    ck_assert_int_eq(ag_backward_seed(t, y, (const ag_real[]){1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60}),
                     AG_OK);
    expect("dx", x->grad, (const double[]){10, 1, 2, 20, 30, 3, 4, 40, 50, 5, 6, 60}, 12);
    ag_tape_free(t);
}
END_TEST

START_TEST(t_concat_stack_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *p = ag_tensor_from(t, 2, (size_t[]){2, 1}, (ag_real[]){1, 2});
    ag_tensor *q = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){3, 4, 5, 6});
    ck_assert_int_eq(ag_requires_grad(p), AG_OK);
    ck_assert_int_eq(ag_requires_grad(q), AG_OK);
    ag_tensor *y = ag_concat(t, (ag_tensor *[]){p, q}, 2, -1);
    ck_assert_ptr_nonnull(y);
    ck_assert(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3);
    expect("concat axis 1", y->value, (const double[]){1, 3, 4, 2, 5, 6}, 6);
    ck_assert_int_eq(ag_backward_seed(t, y, (const ag_real[]){10, 20, 30, 40, 50, 60}), AG_OK);
    expect("dp", p->grad, (const double[]){10, 40}, 2);
    expect("dq", q->grad, (const double[]){20, 30, 50, 60}, 4);

    ag_tape_reset(t);
    ag_tensor *a = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    ag_tensor *b = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){3, 4});
    ag_tensor *s0 = ag_stack(t, (ag_tensor *[]){a, b}, 2, 0), *s1 = ag_stack(t, (ag_tensor *[]){a, b}, 2, -1);
    ck_assert(s0 && s1);
    ck_assert(s0->ndim == 2 && s0->shape[0] == 2 && s1->shape[0] == 2);
    expect("stack axis 0", s0->value, (const double[]){1, 2, 3, 4}, 4);
    expect("stack axis 1", s1->value, (const double[]){1, 3, 2, 4}, 4);
    ag_tape_free(t);
}
END_TEST

START_TEST(t_split_chunk_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){7}, (ag_real[]){0, 1, 2, 3, 4, 5, 6});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *o[3];
    ck_assert_int_eq(ag_split(t, x, 0, (const size_t[]){1, 2, 4}, 3, o), AG_OK);
    ck_assert(o[0]->size == 1 && o[1]->size == 2 && o[2]->size == 4);
    ck_assert_ptr_eq(o[1]->value, x->value + 1); /* a 1-D piece is one block: a view */
    expect("piece 2", o[2]->value, (const double[]){3, 4, 5, 6}, 4);
    ag_tensor *c[3];
    ck_assert_int_eq(ag_chunk(t, x, -1, 3, c), AG_OK); /* 7 = 3 + 2 + 2 */
    ck_assert(c[0]->size == 3 && c[1]->size == 2 && c[2]->size == 2);
    expect("chunk 1", c[1]->value, (const double[]){3, 4}, 2);
    /* a refused split records nothing and leaves out[] NULL */
    const size_t nodes = ag_tape_node_count(t);
    ag_tensor *bad[2] = {x, x};
    ck_assert_int_eq(ag_split(t, x, 0, (const size_t[]){3, 3}, 2, bad), AG_ERR_SHAPE);
    ck_assert(bad[0] == NULL && bad[1] == NULL);
    ck_assert_uint_eq(ag_tape_node_count(t), nodes);
    ag_tape_clear_error(t);
    ag_tensor *y = ag_concat(t, (ag_tensor *[]){c[2], o[0], c[0]}, 3, 0); /* {5,6} {0} {0,1,2} */
    expect("joined", y->value, (const double[]){5, 6, 0, 0, 1, 2}, 6);
    ck_assert_int_eq(ag_backward_seed(t, y, (const ag_real[]){1, 2, 3, 4, 5, 6}), AG_OK);
    expect("dx", x->grad, (const double[]){7, 5, 6, 0, 0, 1, 2}, 7);
    ag_tape_free(t);
}
END_TEST

START_TEST(t_pad_values) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){1, 2}, (ag_real[]){1, 2});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *y = ag_pad(t, x, (const size_t[]){1, 0}, (const size_t[]){0, 1}, 9);
    ck_assert_ptr_nonnull(y);
    ck_assert(y->shape[0] == 2 && y->shape[1] == 3);
    expect("pad", y->value, (const double[]){9, 9, 9, 1, 2, 9}, 6);
    ck_assert_int_eq(ag_backward_seed(t, y, (const ag_real[]){1, 2, 3, 4, 5, 6}), AG_OK);
    expect("dx", x->grad, (const double[]){4, 5}, 2);
    ag_tape_free(t);
}
END_TEST

static Suite *views_suite(void) {
    Suite *s = suite_create("views");
    TCase *tc = tcase_create("views");
    tcase_add_test(tc, t_views_share_param);
    tcase_add_test(tc, t_views_share_leaf);
    tcase_add_test(tc, t_permute_values);
    tcase_add_test(tc, t_permute_4d);
    tcase_add_test(tc, t_broadcast_values);
    tcase_add_test(tc, t_slice_values);
    tcase_add_test(tc, t_concat_stack_values);
    tcase_add_test(tc, t_split_chunk_values);
    tcase_add_test(tc, t_pad_values);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(views_suite)

/*
 * test_tape.c - the engine itself: arena, recording, reverse sweep, errors of the tape API.
 * Ops are defined here through the public descriptor, so this suite depends on no built-in op.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* y = a * b element-wise (same shapes), defined as a user would */
static ag_status mul_shape(ag_node *n) {
    char sa[64], sb[64];
    if (n->in[0]->size != n->in[1]->size)
        return ag_node_fail(n, AG_ERR_SHAPE, "a is %s but b is %s", ag_shape_str(n->in[0], sa, sizeof sa),
                            ag_shape_str(n->in[1], sb, sizeof sb));
    return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape);
}
static ag_status mul_forward(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) n->out.value[i] = n->in[0]->value[i] * n->in[1]->value[i];
    return AG_OK;
}
static ag_status mul_backward(ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    for (size_t i = 0; i < n->out.size; i++) {
        if (a->grad) a->grad[i] += b->value[i] * n->out.grad[i];
        if (b->grad) b->grad[i] += a->value[i] * n->out.grad[i];
    }
    return AG_OK;
}
static const ag_op t_mul = {"t_mul", 2, 0, mul_shape, mul_forward, mul_backward};

/* s = sum(x) */
static ag_status sum_shape(ag_node *n) { return ag_node_set_shape(n, 0, NULL); }
static ag_status sum_forward(ag_node *n) {
    ag_real s = 0;
    for (size_t i = 0; i < n->in[0]->size; i++) s += n->in[0]->value[i];
    n->out.value[0] = s;
    return AG_OK;
}
static ag_status sum_backward(ag_node *n) {
    for (size_t i = 0; i < n->in[0]->size; i++) n->in[0]->grad[i] += n->out.grad[0];
    return AG_OK;
}
static const ag_op t_sum = {"t_sum", 1, 0, sum_shape, sum_forward, sum_backward};

#define MUL(t, a, b) ag_call(t, &t_mul, (ag_tensor *[]){a, b}, 2, NULL)
#define SUM(t, x) ag_call(t, &t_sum, (ag_tensor *[]){x}, 1, NULL)

START_TEST(used_twice_sums_gradients) {
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 0, &w), AG_OK);
    for (int i = 0; i < 3; i++) w->value[i] = (ag_real)(i + 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *sq = MUL(t, w, w);     /* w used twice by one node */
    ag_tensor *q = MUL(t, sq, w);     /* and again: d/dw sum(w^3) = 3 w^2 */
    ag_tensor *loss = SUM(t, q);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(w->grad[i], 3.0 * (i + 1) * (i + 1), 1e-5);
    /* the intermediate sq keeps its gradient: dL/dsq = w */
    ck_assert_ptr_nonnull(sq->grad);
    for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(sq->grad[i], i + 1, 1e-6);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(constants_get_no_gradient) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    ag_tensor *c = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){5, 7});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *loss = SUM(t, MUL(t, x, c));
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    ck_assert_double_eq_tol(x->grad[0], 5, 1e-6);
    ck_assert_double_eq_tol(x->grad[1], 7, 1e-6);
    ck_assert_ptr_null(c->grad);
    ag_tape_free(t);
}
END_TEST

START_TEST(backward_twice_and_after_reset_are_errors) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    ag_requires_grad(x);
    ag_tensor *loss = SUM(t, MUL(t, x, x));
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    ck_assert_int_eq(ag_backward(t, loss), AG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "backward: already ran"));
    ag_tape_reset(t);
    ck_assert_int_eq(ag_backward(t, loss), AG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "before the last ag_tape_reset"));
    /* a stale tensor as an op input is refused too */
    ck_assert_ptr_null(MUL(t, x, x));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_STATE);
    ag_tape_free(t);
}
END_TEST

START_TEST(non_scalar_needs_seed) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 3}, (ag_real[]){1, 2, 3, 4, 5, 6});
    ag_requires_grad(x);
    ag_tensor *y = MUL(t, x, x);
    ck_assert_int_eq(ag_backward(t, y), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "backward: loss is 2x3, not a scalar; give a seed with ag_backward_seed");
    ag_real seed[6] = {1, 0, 0, 0, 0, 2};
    ck_assert_int_eq(ag_backward_seed(t, y, seed), AG_OK);
    ck_assert_double_eq_tol(x->grad[0], 2, 1e-6);
    ck_assert_double_eq_tol(x->grad[5], 2 * 2 * 6, 1e-6);
    ck_assert_double_eq(x->grad[3], 0);
    ag_tape_free(t);
}
END_TEST

START_TEST(shape_error_names_op_and_shapes_and_propagates) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *a = ag_tensor_new(t, 2, (size_t[]){32, 784});
    ag_tensor *b = ag_tensor_new(t, 2, (size_t[]){256, 10});
    size_t used = ag_tape_mem_used(t);
    ag_tensor *bad = MUL(t, a, b);
    ck_assert_ptr_null(bad);
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: a is 32x784 but b is 256x10");
    ck_assert_uint_eq(ag_tape_mem_used(t), used); /* the failed node was rolled back */
    /* chained calls propagate the first failure without overwriting its message */
    ag_tensor *loss = SUM(t, MUL(t, bad, a));
    ck_assert_ptr_null(loss);
    ck_assert_int_eq(ag_backward(t, loss), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: a is 32x784 but b is 256x10");
    /* a result is missing, so even a valid loss is refused until the error is cleared */
    ag_requires_grad(a);
    ag_tensor *valid = SUM(t, MUL(t, a, a));
    ck_assert_ptr_nonnull(valid);
    ck_assert_int_eq(ag_backward(t, valid), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: a is 32x784 but b is 256x10");
    /* the tape stays usable */
    ag_tape_clear_error(t);
    ck_assert_int_eq(ag_backward(t, valid), AG_OK);
    ck_assert_ptr_nonnull(MUL(t, a, a));
    ag_tape_free(t);
}
END_TEST

START_TEST(null_and_foreign_inputs) {
    ag_tape *t, *u;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&u, NULL), AG_OK);
    ag_tensor *a = ag_tensor_new(t, 1, (size_t[]){4});
    ag_tensor *b = ag_tensor_new(u, 1, (size_t[]){4});
    ck_assert_ptr_null(MUL(t, a, NULL));
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: input 1 is NULL");
    ag_tape_clear_error(t);
    ck_assert_ptr_null(MUL(t, a, b));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_ARG);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: input 1 belongs to another tape");
    ck_assert_int_eq(ag_backward(t, NULL), AG_ERR_ARG);
    ag_tape_clear_error(t);
    ck_assert_int_eq(ag_backward(t, NULL), AG_ERR_ARG);
    ck_assert_str_eq(ag_tape_errmsg(t), "backward: loss is NULL");
    ck_assert_int_eq(ag_apply(t, NULL, NULL, 0, NULL, &a), AG_ERR_ARG);
    ck_assert_int_eq(ag_apply(NULL, &t_mul, NULL, 0, NULL, &a), AG_ERR_ARG);
    ck_assert_int_eq(ag_apply(t, &t_mul, (ag_tensor *[]){b}, 1, NULL, &a), AG_ERR_ARG);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: got 1 inputs, expects 2");
    ck_assert_ptr_null(ag_tensor_new(t, 2, (size_t[]){3, 0}));
    ck_assert_str_eq(ag_tape_errmsg(t), "tensor_new: output shape 3x0 has a zero dimension");
    ck_assert_ptr_null(ag_tensor_new(t, 2, (size_t[]){SIZE_MAX / 2, 4}));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_SHAPE);
    ck_assert_ptr_null(ag_tensor_new(t, 5, (size_t[]){1, 1, 1, 1, 1}));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_ARG);
    ag_tape_free(t);
    ag_tape_free(u);
}
END_TEST

START_TEST(full_arena_is_reported) {
    static _Alignas(64) char buf[16384];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){sizeof buf, buf, 0}), AG_OK);
    ag_tensor *x = ag_tensor_new(t, 1, (size_t[]){1000});
    ck_assert_ptr_nonnull(x);
    ag_tensor *y = NULL;
    for (int i = 0; i < 10 && (y = MUL(t, x, x)); i++) {
    }
    ck_assert_ptr_null(y);
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "t_mul: tape arena is full"));
    ag_tape_reset(t);
    ck_assert_ptr_nonnull(ag_tensor_new(t, 1, (size_t[]){1000}));
    ag_tape_free(t);
}
END_TEST

START_TEST(steady_state_allocates_nothing) {
    ag_test_alloc_install();
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){5000}, 0, &w), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){4096, NULL, 0}), AG_OK); /* too small: grows */
    size_t after_first = 0;
    for (int step = 0; step < 4; step++) {
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        ag_tensor *h = w;
        for (int k = 0; k < 8; k++) h = MUL(t, h, w);
        ck_assert_int_eq(ag_backward(t, SUM(t, h)), AG_OK);
        if (step == 1) after_first = ag_test_alloc_count(); /* reset after step 0 merged the chunks */
    }
    ck_assert_uint_eq(ag_test_alloc_count(), after_first);
    ag_tape_free(t);
    ag_params_free(ps);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

START_TEST(no_grad_mode_records_nothing_for_backward) {
    ag_params *ps;
    ag_tensor *w;
    ag_params_new(&ps);
    ag_params_add(ps, "w", 1, (size_t[]){2}, 0, &w);
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ck_assert_int_eq(ag_tape_set_grad_enabled(t, 0), 1);
    ag_tensor *y = MUL(t, w, w);
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(y->flags & AG_REQUIRES_GRAD, 0);
    ck_assert_int_eq(ag_backward(t, SUM(t, y)), AG_ERR_STATE);
    ag_tape_set_grad_enabled(t, 1);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(params_store_is_flat_and_aligned) {
    ag_params *ps;
    ag_tensor *a, *b;
    ag_params_new(&ps);
    ck_assert_int_eq(ag_params_add(ps, "a", 2, (size_t[]){3, 5}, AG_DECAY, &a), AG_OK);
    a->value[0] = 42;
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){7}, 0, &b), AG_OK);
    ck_assert_double_eq(a->value[0], 42); /* survived the move of the flat buffer */
    ck_assert_uint_eq((uintptr_t)a->value % AG_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)b->value % AG_ALIGN, 0);
    ck_assert_ptr_eq(ag_params_values(ps), a->value);
    ck_assert_ptr_eq(ag_params_find(ps, "b"), b);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){7}, 0, &b), AG_ERR_ARG);
    ck_assert_str_eq(ag_params_errmsg(ps), "params_add: name b is already used");
    ck_assert_int_eq(ag_params_add(ps, "c", 2, (size_t[]){0, 7}, 0, &b), AG_ERR_SHAPE);
    ck_assert_ptr_null(b);
    ag_params_free(ps);
}
END_TEST

START_TEST(rng_is_reproducible) {
    ag_rng r;
    ag_rng_seed(&r, 42);
    uint64_t first = ag_rng_next(&r);
    ag_rng_seed(&r, 42);
    ck_assert_uint_eq(ag_rng_next(&r), first);
    /* normals: mean ~0, variance ~1 */
    double s = 0, s2 = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double z = ag_rng_normal(&r);
        s += z;
        s2 += z * z;
    }
    ck_assert_double_lt(fabs(s / n), 0.02);
    ck_assert_double_lt(fabs(s2 / n - 1), 0.02);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(ag_rng_below(&r, 7), 7);
}
END_TEST

START_TEST(numeric_check_names_op_and_step) {
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_tape_reset(t);
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){1, (ag_real)INFINITY, 2});
    ck_assert_ptr_nonnull(MUL(t, x, x)); /* off by default */
    ck_assert_int_eq(ag_tape_set_check_numerics(t, 1), 0);
    ck_assert_ptr_null(MUL(t, x, x));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NUMERIC);
    ck_assert_str_eq(ag_tape_errmsg(t), "t_mul: forward produced Inf at element 1 of 3 (node #2, step 2)");
    ag_tape_free(t);
}
END_TEST

/* Marking a leaf after an op used it would drop that op's part of the gradient (x^2 + 5x gave
 * 5 instead of 2x + 5): refused. Marking before use, or twice, is fine. */
START_TEST(requires_grad_after_use_is_refused) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){1, 2, 3});
    ag_tensor *sq = ag_sum(t, ag_square(t, x));
    ck_assert_ptr_nonnull(sq);
    ck_assert_int_eq(ag_requires_grad(x), AG_ERR_STATE);
    ck_assert_str_eq(ag_tape_errmsg(t), "requires_grad: the leaf is already an input of square (node #1); "
                                        "mark it before any op uses it");
    ck_assert(!(x->flags & AG_REQUIRES_GRAD));
    ag_tape_reset(t);
    x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){1, 2, 3});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *L = ag_add(t, ag_sum(t, ag_square(t, x)), ag_sum(t, ag_scale(t, x, 5)));
    ck_assert_int_eq(ag_requires_grad(x), AG_OK); /* already marked: nothing to lose */
    ck_assert_int_eq(ag_backward(t, L), AG_OK);
    for (int i = 0; i < 3; i++) ck_assert(x->grad[i] == 2 * x->value[i] + 5);
    ag_tape_free(t);
}
END_TEST

/* d/dx x^0 = 0 everywhere, x = 0 included (c x^(c-1) there is 0 * inf). */
START_TEST(pow_zero_has_zero_gradient) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){3}, (ag_real[]){0, 1, -2});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *y = ag_pow(t, x, 0);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, y)), AG_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert(y->value[i] == 1);
        ck_assert(x->grad[i] == 0);
    }
    ag_tape_free(t);
}
END_TEST

static Suite *tape_suite(void) {
    Suite *s = suite_create("tape");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, used_twice_sums_gradients);
    tcase_add_test(tc, constants_get_no_gradient);
    tcase_add_test(tc, backward_twice_and_after_reset_are_errors);
    tcase_add_test(tc, non_scalar_needs_seed);
    tcase_add_test(tc, shape_error_names_op_and_shapes_and_propagates);
    tcase_add_test(tc, null_and_foreign_inputs);
    tcase_add_test(tc, full_arena_is_reported);
    tcase_add_test(tc, steady_state_allocates_nothing);
    tcase_add_test(tc, no_grad_mode_records_nothing_for_backward);
    tcase_add_test(tc, params_store_is_flat_and_aligned);
    tcase_add_test(tc, rng_is_reproducible);
    tcase_add_test(tc, numeric_check_names_op_and_step);
    tcase_add_test(tc, requires_grad_after_use_is_refused);
    tcase_add_test(tc, pow_zero_has_zero_gradient);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(tape_suite)

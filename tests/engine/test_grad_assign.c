/*
 * test_grad_assign.c - "first write assigns" (issue 22, speed): ag_node_grad_out hands an op a
 * fresh gradient buffer to assign (=) instead of a zeroed one to add into, and a full-size view
 * hands its gradient buffer to its input. Gradients must stay exactly those of zero-then-add:
 * a tensor used twice (the second write adds), a user op's plain += after a built-in assigned,
 * a view whose input also gets gradient by another path, parameters through views (with and
 * without a gradient sink), ag_backward_seed, and an MLP step whose parameter gradients are
 * bit-identical to the ones the engine gave before the change (constants recorded then).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})

/* plus: y = x (a copy) with a plain `+=` backward, no declaration: the documented default */
static ag_status copy_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status copy_forward(ag_node *n) {
    memcpy(n->out.value, n->in[0]->value, n->out.size * sizeof(ag_real));
    return AG_OK;
}
static ag_status copy_backward(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->out.size; i++) n->in[0]->grad[i] += n->out.grad[i];
    return AG_OK;
}
static const ag_op plain_copy_op = {"plain_copy", 1, 0, copy_shape, copy_forward, copy_backward};

/* twice: y = 2 x through the fast path (declared, assigns when told) */
static ag_status twice_shape(ag_node *n) {
    ag_node_grad_out_declare(n);
    return copy_shape(n);
}
static ag_status twice_forward(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) n->out.value[i] = 2 * n->in[0]->value[i];
    return AG_OK;
}
static int twice_assigned; /* what the last backward was told */
static ag_status twice_backward(ag_node *n) {
    int assign;
    ag_real *dx = ag_node_grad_out(n, 0, &assign);
    twice_assigned = assign;
    if (!dx) return AG_OK;
    for (size_t i = 0; i < n->out.size; i++)
        if (assign)
            dx[i] = 2 * n->out.grad[i];
        else
            dx[i] += 2 * n->out.grad[i];
    return AG_OK;
}
static const ag_op twice_op = {"twice", 1, 0, twice_shape, twice_forward, twice_backward};

static ag_tensor *leaf(ag_tape *t, size_t n, const ag_real *v) {
    ag_tensor *x = ag_tensor_from(t, 1, SH(n), v);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    return x;
}

/* ---------------------------------------------------------------- used twice */

START_TEST(a_tensor_used_twice_adds_the_second_write) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const ag_real xv[5] = {1, -2, 3, 0.5, -0.25}, s[5] = {1, 2, 3, 4, 5};
    ag_tensor *x = leaf(t, 5, xv);
    /* y = neg(x) + scale(x, 3) + x * x: dx = s (-1 + 3 + 2 x) */
    ag_tensor *y = ag_add(t, ag_add(t, ag_neg(t, x), ag_scale(t, x, 3)), ag_mul(t, x, x));
    ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
    for (int i = 0; i < 5; i++) ck_assert(x->grad[i] == s[i] * (2 + 2 * xv[i]));
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- user ops mixed in */

START_TEST(a_plain_user_op_adds_after_a_builtin_assigned) {
    const ag_real xv[4] = {1, 2, 3, 4}, s[4] = {0.5, -1, 2, 8};
    for (int order = 0; order < 2; order++) {
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_tensor *x = leaf(t, 4, xv), *u, *v;
        if (order) { /* the user op's backward runs first (engine-zeroed buffer), neg's then adds */
            v = ag_neg(t, x);
            u = ag_call(t, &plain_copy_op, (ag_tensor *[]){x}, 1, NULL);
        } else { /* neg's runs first and assigns, the user op's then adds */
            u = ag_call(t, &plain_copy_op, (ag_tensor *[]){x}, 1, NULL);
            v = ag_neg(t, x);
        }
        ag_tensor *y = ag_add(t, ag_scale(t, u, 3), v); /* dx = 3 s - s = 2 s */
        ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
        for (int i = 0; i < 4; i++) ck_assert(x->grad[i] == 2 * s[i]);
        ag_tape_free(t);
    }
}
END_TEST

START_TEST(a_user_op_on_the_fast_path_is_told_when_to_assign) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const ag_real xv[3] = {1, 2, 3}, s[3] = {1, 10, 100};
    ag_tensor *x = leaf(t, 3, xv);
    ag_tensor *a = ag_call(t, &twice_op, (ag_tensor *[]){x}, 1, NULL);
    ag_tensor *y = ag_add(t, ag_call(t, &twice_op, (ag_tensor *[]){a}, 1, NULL), ag_neg(t, x));
    ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
    /* the outer twice got a fresh a-gradient; the inner one found x written by neg: adds */
    ck_assert_int_eq(twice_assigned, 0);
    for (int i = 0; i < 3; i++) ck_assert(a->grad[i] == 2 * s[i] && x->grad[i] == 3 * s[i]);
    /* outside backward: never fresh */
    int assign = 7;
    ck_assert_ptr_eq(ag_node_grad_out((ag_node *)a, 0, &assign), x->grad);
    ck_assert_int_eq(assign, 0);
    ck_assert_ptr_null(ag_node_grad_out((ag_node *)a, 1, &assign));
    ck_assert_ptr_null(ag_node_grad_out(NULL, 0, &assign));
    ag_tape_free(t);
}
END_TEST

/* An input a declaring op leaves untouched is zeroed by the engine: still "reached". */
static ag_status skip_backward(ag_node *n) {
    (void)n;
    return AG_OK;
}
static const ag_op skip_op = {"skip", 1, 0, twice_shape, twice_forward, skip_backward};

START_TEST(an_input_a_declaring_op_skips_reads_zero) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const ag_real xv[20] = {1, 2, 3}, s[20] = {1, 1, 1};
    ag_tensor *x = leaf(t, 20, xv);
    ag_tensor *h = ag_scale(t, x, 2);
    ag_tensor *y = ag_call(t, &skip_op, (ag_tensor *[]){h}, 1, NULL);
    ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
    ck_assert_ptr_nonnull(h->grad);
    ck_assert_ptr_nonnull(x->grad);
    for (int i = 0; i < 20; i++) ck_assert(h->grad[i] == 0 && x->grad[i] == 0 && !signbit(x->grad[i]));
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- views */

START_TEST(a_view_whose_input_has_another_path) {
    const ag_real xv[6] = {1, 2, 3, 4, 5, 6}, s[6] = {1, -2, 3, -4, 5, -6};
    for (int order = 0; order < 2; order++) {
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_tensor *x = ag_tensor_from(t, 2, SH(2, 3), xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *p, *r;
        if (order) { /* the view's backward runs first: x takes its buffer, scale then adds */
            p = ag_scale(t, x, 3);
            r = ag_reshape(t, x, 1, SH(6));
        } else { /* scale's runs first: the view adds */
            r = ag_reshape(t, x, 1, SH(6));
            p = ag_scale(t, x, 3);
        }
        ag_tensor *y = ag_add(t, ag_flatten(t, p, 0, 1), ag_scale(t, r, 2)); /* dx = 5 s */
        ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
        for (int i = 0; i < 6; i++) ck_assert(x->grad[i] == 5 * s[i]);
        if (order) { /* documented: the view's ->grad shares its input's buffer (its whole gradient) */
            ck_assert_ptr_eq(r->grad, x->grad);
        } else {
            ck_assert_ptr_ne(r->grad, x->grad);
            for (int i = 0; i < 6; i++) ck_assert(r->grad[i] == 2 * s[i]);
        }
        ag_tape_free(t);
    }
}
END_TEST

START_TEST(a_parameter_through_a_view_accumulates_across_sweeps) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(2, 3), 0, &W), AG_OK);
    for (int i = 0; i < 6; i++) W->value[i] = (ag_real)(i + 1);
    const ag_real s[6] = {1, 2, 3, 4, 5, 6};
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int sweep = 1; sweep <= 2; sweep++) {
        ag_tape_reset(t);
        ag_tensor *r = ag_unsqueeze(t, ag_reshape(t, W, 1, SH(6)), 0);
        ag_tensor *y = ag_scale(t, ag_squeeze(t, r, 0), 2);
        ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
        for (int i = 0; i < 6; i++) ck_assert(W->grad[i] == 2 * sweep * s[i]);
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- gradient sink */

static ag_real sunk[64];
static int sunk_calls;
static void record(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                   size_t ldg, unsigned flags) {
    (void)ctx, (void)x, (void)flags;
    sunk_calls++;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) sunk[off + r * ld + c] = g[r * ldg + c];
}

START_TEST(the_sink_gets_a_parameter_through_a_view) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(3, 4), 0, &W), AG_OK);
    ag_real c[12], s[3] = {1, -1, 0.5};
    for (int i = 0; i < 12; i++) W->value[i] = (ag_real)(i - 5), c[i] = (ag_real)(i + 1) / 4;
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = record}), AG_OK);
    /* y_r = sum_j (W_rj c_rj): flatten W, multiply, back to 3 x 4, matmul by ones */
    ag_tensor *cw = ag_mul(t, ag_flatten(t, W, 0, 1), ag_tensor_from(t, 1, SH(12), c));
    ag_tensor *ones = ag_tensor_from(t, 2, SH(4, 1), (ag_real[]){1, 1, 1, 1});
    ag_tensor *y = ag_reshape(t, ag_matmul(t, ag_reshape(t, cw, 2, SH(3, 4)), ones), 1, SH(3));
    memset(sunk, 0, sizeof sunk);
    sunk_calls = 0;
    ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
    ck_assert_int_gt(sunk_calls, 0);
    for (int i = 0; i < 12; i++) {
        ck_assert(sunk[i] == s[i / 4] * c[i]);
        ck_assert(W->grad[i] == 0); /* delivered: zeros left */
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- seed */

START_TEST(backward_seed_copies_the_seed_once) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const ag_real xv[6] = {1, 2, 3, 4, 5, 6}, s[6] = {(ag_real)-0.0, 1, -2, (ag_real)0.0, 3.5, -1e-3};
    ag_tensor *x = leaf(t, 6, xv);
    ag_tensor *y = ag_add_scalar(t, x, 1);
    ck_assert_int_eq(ag_backward_seed(t, y, s), AG_OK);
    for (int i = 0; i < 6; i++) { /* 0 + s, as when the buffer was zeroed and the seed added: -0 gives +0 */
        ck_assert(y->grad[i] == s[i] && !signbit(y->grad[i]) == !signbit((ag_real)0 + s[i]));
        ck_assert(x->grad[i] == s[i] && !signbit(x->grad[i]) == !signbit((ag_real)0 + s[i]));
    }
    ck_assert(!signbit(x->grad[0]));
    ag_tape_free(t);
    /* tiny (inline grad slot) and scalar seeds */
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *a = leaf(t, 2, xv);
    ag_tensor *z = ag_mul(t, a, a);
    ck_assert_int_eq(ag_backward_seed(t, z, (ag_real[]){3, -0.0}), AG_OK);
    ck_assert(a->grad[0] == 6 && a->grad[1] == 0 && !signbit(a->grad[1]));
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- MLP bits */

/* zero_tap: y = 0 (a scalar); backward adds 0 into a zeroed buffer (no declaration) */
static ag_status zero_tap_shape(ag_node *n) { return ag_node_set_shape(n, 0, NULL); }
static ag_status zero_tap_forward(ag_node *n) {
    n->out.value[0] = 0;
    return AG_OK;
}
static ag_status zero_tap_backward(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->in[0]->size; i++) n->in[0]->grad[i] += 0;
    return AG_OK;
}
static const ag_op zero_tap_op = {"zero_tap", 1, 0, zero_tap_shape, zero_tap_forward, zero_tap_backward};

/* A small MLP step touching the converted ops: linear, relu, sigmoid, tanh, add/sub/mul (same
 * shape and broadcast), neg, scale, add_scalar, reshape/flatten/unsqueeze/squeeze, slice,
 * concat, pad, permute, matmul, squared_error. Writes every parameter gradient into g.
 * old_path: each intermediate also feeds a zero_tap, recorded last so that its backward runs
 * first: every buffer is then zeroed by the engine and added into, the engine's path before
 * "first write assigns" (checked against that engine's gradients, float and double, when made). */
static size_t mlp_grads(ag_real *g, size_t cap, int old_path) {
    ag_params *ps;
    if (ag_params_new(&ps) != AG_OK) return 0;
    ag_tensor *W1, *b1, *W2, *b2, *M;
    ag_params_add(ps, "W1", 2, (size_t[]){6, 4}, 0, &W1);
    ag_params_add(ps, "b1", 1, (size_t[]){6}, 0, &b1);
    ag_params_add(ps, "W2", 2, (size_t[]){3, 6}, 0, &W2);
    ag_params_add(ps, "b2", 1, (size_t[]){3}, 0, &b2);
    ag_params_add(ps, "M", 2, (size_t[]){3, 3}, 0, &M);
    ag_tensor *P[] = {W1, b1, W2, b2, M};
    unsigned s = 12345u;
    for (int p = 0; p < 5; p++)
        for (size_t i = 0; i < P[p]->size; i++) {
            s = s * 1103515245u + 12345u;
            P[p]->value[i] = (ag_real)((double)(s >> 8) / (double)(1u << 24) - 0.5);
        }
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_real xv[5 * 4], yv[5 * 3];
    for (size_t i = 0; i < 20; i++) { s = s * 1103515245u + 12345u; xv[i] = (ag_real)((double)(s >> 8) / (double)(1u << 24) * 2 - 1); }
    for (size_t i = 0; i < 15; i++) { s = s * 1103515245u + 12345u; yv[i] = (ag_real)((double)(s >> 8) / (double)(1u << 24)); }
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){5, 4}, xv);
    ag_tensor *y = ag_tensor_from(t, 2, (size_t[]){5, 3}, yv);
    ag_tensor *h = ag_relu(t, ag_linear(t, x, W1, b1));                 /* 5 x 6 */
    ag_tensor *hs = ag_sigmoid(t, ag_scale(t, h, (ag_real)1.5));
    ag_tensor *ht = ag_tanh(t, ag_add_scalar(t, ag_neg(t, h), (ag_real)0.25));
    ag_tensor *h2 = ag_add(t, ag_mul(t, hs, ht), ag_sub(t, h, ag_reshape(t, ag_flatten(t, hs, 0, 1), 2, (size_t[]){5, 6})));
    ag_tensor *z = ag_linear(t, h2, W2, NULL);                         /* 5 x 3 */
    ag_tensor *zb = ag_add(t, z, ag_squeeze(t, ag_unsqueeze(t, b2, 0), 0)); /* broadcast row */
    ag_tensor *zm = ag_matmul(t, zb, M);
    ag_tensor *top = ag_slice(t, zm, 0, 0, 2, 1), *bot = ag_slice(t, zm, 0, 2, 3, 1);
    ag_tensor *zc = ag_concat(t, (ag_tensor *[]){bot, top}, 2, 0);
    ag_tensor *zp = ag_pad(t, ag_permute(t, zc, (int[]){1, 0}), (size_t[]){1, 0}, (size_t[]){0, 1}, (ag_real)0.5);
    ag_tensor *zq = ag_slice(t, ag_permute(t, zp, (int[]){1, 0}), 0, 0, 5, 1); /* 5 x 4 */
    ag_tensor *out = ag_slice(t, zq, 1, 1, 3, 1);
    ag_tensor *loss = ag_squared_error(t, ag_add(t, out, ag_mul(t, zb, zb)), y);
    if (old_path) {
        ag_tensor *all[] = {h, hs, ht, h2, z, zb, zm, top, bot, zc, zp, zq, out};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            loss = ag_add(t, loss, ag_call(t, &zero_tap_op, (ag_tensor *[]){all[i]}, 1, NULL));
    }
    size_t n = 0;
    if (loss && ag_backward(t, loss) == AG_OK)
        for (int p = 0; p < 5; p++)
            for (size_t i = 0; i < P[p]->size && n < cap; i++) g[n++] = P[p]->grad[i];
    ag_tape_free(t);
    ag_params_free(ps);
    return n;
}


START_TEST(an_mlp_step_has_the_same_bits_as_before) {
    ag_real g[64], before[64];
    ck_assert_uint_eq(mlp_grads(g, 64, 0), 60);
    ck_assert_uint_eq(mlp_grads(before, 64, 1), 60);
    int nonzero = 0;
    for (int i = 0; i < 60; i++) {
        ck_assert_msg(memcmp(&g[i], &before[i], sizeof g[i]) == 0, "gradient %d: %a, before %a", i,
                      (double)g[i], (double)before[i]);
        nonzero += g[i] != 0;
    }
    ck_assert_int_gt(nonzero, 50);
}
END_TEST

static Suite *grad_assign_suite(void) {
    Suite *s = suite_create("grad_assign");
    TCase *tc = tcase_create("grad_assign");
    tcase_add_test(tc, a_tensor_used_twice_adds_the_second_write);
    tcase_add_test(tc, a_plain_user_op_adds_after_a_builtin_assigned);
    tcase_add_test(tc, a_user_op_on_the_fast_path_is_told_when_to_assign);
    tcase_add_test(tc, an_input_a_declaring_op_skips_reads_zero);
    tcase_add_test(tc, a_view_whose_input_has_another_path);
    tcase_add_test(tc, a_parameter_through_a_view_accumulates_across_sweeps);
    tcase_add_test(tc, the_sink_gets_a_parameter_through_a_view);
    tcase_add_test(tc, backward_seed_copies_the_seed_once);
    tcase_add_test(tc, an_mlp_step_has_the_same_bits_as_before);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(grad_assign_suite)

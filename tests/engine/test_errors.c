/*
 * test_errors.c - the errors of issue 2 item 8 with the real built-in ops: each returns its status
 * and a message naming the op and the shapes, failures propagate through chains, and the tape
 * stays usable afterwards. Also the argument errors of ag_gradcheck.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include <tapegrad/mlp.h>
#include "testutil.h"

static ag_tape *new_tape(void) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    return t;
}

#define CHECK_ERR(t, st, msg)                                  \
    do {                                                       \
        ck_assert_int_eq(ag_tape_status(t), (st));             \
        ck_assert_str_eq(ag_tape_errmsg(t), (msg));            \
        ag_tape_clear_error(t);                                \
    } while (0)

START_TEST(shape_messages) {
    ag_tape *t = new_tape();
    ag_tensor *a = ag_tensor_new(t, 2, (size_t[]){32, 784});
    ag_tensor *b = ag_tensor_new(t, 2, (size_t[]){256, 10});
    size_t used = ag_tape_mem_used(t), nodes = ag_tape_node_count(t);
    ck_assert_ptr_null(ag_matmul(t, a, b));
    CHECK_ERR(t, AG_ERR_SHAPE, "matmul: a is 32x784 but b is 256x10");
    ck_assert_uint_eq(ag_tape_mem_used(t), used); /* the failed node left nothing behind */
    ck_assert_uint_eq(ag_tape_node_count(t), nodes);
    ck_assert_ptr_null(ag_matmul_ex(t, a, b, 1, 0));
    CHECK_ERR(t, AG_ERR_SHAPE, "matmul: a is 32x784 (transposed) but b is 256x10");
    ck_assert_ptr_nonnull(ag_matmul_ex(t, b, b, 1, 0)); /* 10x256 by 256x10 fits */

    ag_tensor *x34 = ag_tensor_new(t, 2, (size_t[]){3, 4});
    ag_tensor *x5 = ag_tensor_new(t, 1, (size_t[]){5});
    ag_tensor *x23 = ag_tensor_new(t, 2, (size_t[]){2, 3});
    ag_tensor *x3 = ag_tensor_new(t, 3, (size_t[]){2, 3, 4});
    ck_assert_ptr_null(ag_add(t, x34, x5));
    CHECK_ERR(t, AG_ERR_SHAPE, "add: shapes 3x4 and 5 do not broadcast");
    ck_assert_ptr_null(ag_sub(t, x5, x34));
    CHECK_ERR(t, AG_ERR_SHAPE, "sub: shapes 5 and 3x4 do not broadcast");
    ck_assert_ptr_null(ag_mul(t, x3, x23));
    CHECK_ERR(t, AG_ERR_SHAPE, "mul: shapes 2x3x4 and 2x3 do not broadcast");
    ck_assert_ptr_null(ag_div(t, x23, x34));
    CHECK_ERR(t, AG_ERR_SHAPE, "div: shapes 2x3 and 3x4 do not broadcast");

    ck_assert_ptr_null(ag_reshape(t, x23, 2, (size_t[]){4, 2}));
    CHECK_ERR(t, AG_ERR_SHAPE, "reshape: 2x3 has 6 elements but 4x2 has 8");
    ck_assert_ptr_null(ag_reshape(t, x23, 2, NULL));
    CHECK_ERR(t, AG_ERR_ARG, "reshape: shape is NULL with rank 2");
    ck_assert_ptr_null(ag_reshape(t, x23, 5, (size_t[]){1, 1, 1, 2, 3}));
    CHECK_ERR(t, AG_ERR_ARG, "reshape: rank 5 is outside 0..4");
    ck_assert_ptr_null(ag_sum_axis(t, x23, 3));
    CHECK_ERR(t, AG_ERR_SHAPE, "sum_axis: axis 3 is out of range for 2x3");
    ck_assert_ptr_null(ag_mean_axis(t, x23, -3));
    CHECK_ERR(t, AG_ERR_SHAPE, "mean_axis: axis -3 is out of range for 2x3");
    ck_assert_ptr_null(ag_sum_axis(t, ag_scalar(t, 1), 0));
    CHECK_ERR(t, AG_ERR_SHAPE, "sum_axis: axis 0 is out of range for scalar");
    ck_assert_ptr_null(ag_transpose(t, x3));
    CHECK_ERR(t, AG_ERR_SHAPE, "transpose: x is 2x3x4, must be 2-D");
    ck_assert_ptr_null(ag_matmul(t, x3, x34));
    CHECK_ERR(t, AG_ERR_SHAPE, "matmul: a is 2x3x4 and b is 3x4, both must be 2-D");

    ag_tensor *X = ag_tensor_new(t, 2, (size_t[]){8, 3});
    ag_tensor *W = ag_tensor_new(t, 2, (size_t[]){4, 5});
    ag_tensor *W43 = ag_tensor_new(t, 2, (size_t[]){4, 3});
    ck_assert_ptr_null(ag_linear(t, X, W, NULL));
    CHECK_ERR(t, AG_ERR_SHAPE, "linear: x is 8x3 but W is 4x5 (expects x to be K x 5)");
    ck_assert_ptr_null(ag_linear(t, X, W43, x5));
    CHECK_ERR(t, AG_ERR_SHAPE, "linear: b is 5 but W is 4x3 (expects b to be 4)");

    ck_assert_ptr_null(ag_squared_error(t, x34, x5));
    CHECK_ERR(t, AG_ERR_SHAPE, "squared_error: h is 3x4 but y is 5 (shapes must be equal)");

    ag_tensor *logits = ag_tensor_new(t, 2, (size_t[]){5, 10});
    int32_t labels[5] = {0, 9, 3, 12, 1};
    ck_assert_ptr_null(ag_cross_entropy(t, logits, labels));
    CHECK_ERR(t, AG_ERR_ARG, "cross_entropy: label 12 of row 3 is outside 0..9");
    labels[3] = -1;
    ck_assert_ptr_null(ag_cross_entropy(t, logits, labels));
    CHECK_ERR(t, AG_ERR_ARG, "cross_entropy: label -1 of row 3 is outside 0..9");
    ck_assert_ptr_null(ag_cross_entropy(t, x3, labels));
    CHECK_ERR(t, AG_ERR_SHAPE, "cross_entropy: logits are 2x3x4, must be K x classes or 1-D");
    ag_tape_free(t);
}
END_TEST

/* Every op given NULL input(s) on a clean tape: NULL, AG_ERR_ARG, a message naming the op. */
static ag_tensor *x_of(ag_tape *t) { return ag_tensor_new(t, 2, (size_t[]){2, 2}); }

START_TEST(null_inputs_name_the_op) {
    ag_tape *t = new_tape();
    ag_tensor *x = x_of(t);
    int32_t lab[2] = {0, 1};
    struct {
        const char *msg;
        ag_tensor *r;
    } cases[64];
    int n = 0;
#define CASE(call, m) \
    do {                                    \
        ag_tape_clear_error(t);             \
        cases[n].r = (call);                \
        cases[n].msg = (m);                 \
        ck_assert_ptr_null(cases[n].r);     \
        ck_assert_int_eq(ag_tape_status(t), AG_ERR_ARG); \
        ck_assert_str_eq(ag_tape_errmsg(t), cases[n].msg); \
        n++;                                \
    } while (0)
    CASE(ag_add(t, NULL, x), "add: input 0 is NULL");
    CASE(ag_add(t, x, NULL), "add: input 1 is NULL");
    CASE(ag_sub(t, NULL, NULL), "sub: input 0 is NULL");
    CASE(ag_mul(t, x, NULL), "mul: input 1 is NULL");
    CASE(ag_div(t, NULL, x), "div: input 0 is NULL");
    CASE(ag_neg(t, NULL), "neg: input 0 is NULL");
    CASE(ag_scale(t, NULL, 2), "scale: input 0 is NULL");
    CASE(ag_add_scalar(t, NULL, 2), "add_scalar: input 0 is NULL");
    CASE(ag_exp(t, NULL), "exp: input 0 is NULL");
    CASE(ag_log(t, NULL), "log: input 0 is NULL");
    CASE(ag_square(t, NULL), "square: input 0 is NULL");
    CASE(ag_pow(t, NULL, 3), "pow: input 0 is NULL");
    CASE(ag_sqrt(t, NULL), "sqrt: input 0 is NULL");
    CASE(ag_sigmoid(t, NULL), "sigmoid: input 0 is NULL");
    CASE(ag_tanh(t, NULL), "tanh: input 0 is NULL");
    CASE(ag_relu(t, NULL), "relu: input 0 is NULL");
    CASE(ag_matmul(t, NULL, x), "matmul: input 0 is NULL");
    CASE(ag_matmul_ex(t, x, NULL, 1, 1), "matmul: input 1 is NULL");
    CASE(ag_linear(t, NULL, x, NULL), "linear: input 0 is NULL");
    CASE(ag_linear(t, x, NULL, x), "linear: input 1 is NULL");
    CASE(ag_sum(t, NULL), "sum: input 0 is NULL");
    CASE(ag_mean(t, NULL), "mean: input 0 is NULL");
    CASE(ag_sum_axis(t, NULL, 0), "sum_axis: input 0 is NULL");
    CASE(ag_mean_axis(t, NULL, -1), "mean_axis: input 0 is NULL");
    CASE(ag_softmax(t, NULL), "softmax: input 0 is NULL");
    CASE(ag_log_softmax(t, NULL), "log_softmax: input 0 is NULL");
    CASE(ag_reshape(t, NULL, 1, (size_t[]){4}), "reshape: input 0 is NULL");
    CASE(ag_transpose(t, NULL), "transpose: input 0 is NULL");
    CASE(ag_squared_error(t, x, NULL), "squared_error: input 1 is NULL");
    CASE(ag_l2(t, 1, NULL, 2), "l2: weights is NULL");
    CASE(ag_l2(t, 1, (ag_tensor *[]){x}, 0), "l2: n is 0, expects 1..64 tensors");
    CASE(ag_l2(t, 1, (ag_tensor *[]){x}, AG_MAX_IN + 1), "l2: n is 65, expects 1..64 tensors");
    CASE(ag_l2(t, 1, (ag_tensor *[]){x, NULL}, 2), "l2: input 1 is NULL");
    CASE(ag_cross_entropy(t, NULL, lab), "cross_entropy: input 0 is NULL");
    CASE(ag_cross_entropy(t, x, NULL), "cross_entropy: labels is NULL");
#undef CASE
    ck_assert_int_ge(n, 30);
    /* a NULL tape is refused without a crash */
    ck_assert_ptr_null(ag_add(NULL, x, x));
    ck_assert_ptr_null(ag_l2(NULL, 1, (ag_tensor *[]){x}, 1));
    ck_assert_ptr_null(ag_cross_entropy(NULL, x, lab));
    ag_tape_free(t);
}
END_TEST

/* A failure propagates through a chain untouched; the tape is usable after clearing. */
START_TEST(propagation_through_a_chain) {
    ag_tape *t = new_tape();
    ag_tensor *a = ag_tensor_new(t, 2, (size_t[]){32, 784});
    ag_tensor *b = ag_tensor_new(t, 2, (size_t[]){256, 10});
    ag_tensor *W = ag_tensor_new(t, 2, (size_t[]){10, 10});
    int32_t labels[32] = {0};
    ag_tensor *h = ag_matmul(t, a, b);
    h = ag_sigmoid(t, ag_linear(t, h, W, NULL)); /* NULL bias while the tape holds an error */
    h = ag_add(t, ag_scale(t, h, 2), h);
    ag_tensor *J = ag_add(t, ag_cross_entropy(t, h, labels), ag_l2(t, 1, (ag_tensor *[]){W, h}, 2));
    J = ag_add(t, J, ag_reshape(t, ag_mean_axis(t, ag_softmax(t, h), -1), 0, NULL));
    ck_assert_ptr_null(J);
    ck_assert_int_eq(ag_backward(t, J), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "matmul: a is 32x784 but b is 256x10");
    /* NULL weights / labels while an error is held keep the first message too */
    ck_assert_ptr_null(ag_l2(t, 1, NULL, 1));
    ck_assert_ptr_null(ag_cross_entropy(t, W, NULL));
    ck_assert_str_eq(ag_tape_errmsg(t), "matmul: a is 32x784 but b is 256x10");

    ag_tape_clear_error(t);
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){1, 2, 3, 4});
    ag_requires_grad(x);
    ag_tensor *loss = ag_sum(t, ag_linear(t, x, x, NULL));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
    ck_assert(isfinite(x->grad[0]));
    ag_tape_free(t);
}
END_TEST

START_TEST(foreign_stale_nonscalar_twice) {
    ag_tape *t = new_tape(), *u = new_tape();
    ag_tensor *a = ag_tensor_from(t, 2, (size_t[]){2, 3}, (ag_real[]){1, 2, 3, 4, 5, 6});
    ag_tensor *b = ag_tensor_new(u, 2, (size_t[]){2, 3});
    ck_assert_ptr_null(ag_add(t, a, b));
    CHECK_ERR(t, AG_ERR_ARG, "add: input 1 belongs to another tape");
    ck_assert_ptr_null(ag_matmul_ex(t, b, a, 1, 0));
    CHECK_ERR(t, AG_ERR_ARG, "matmul: input 0 belongs to another tape");
    ck_assert_ptr_null(ag_l2(t, 1, (ag_tensor *[]){a, b}, 2));
    CHECK_ERR(t, AG_ERR_ARG, "l2: input 1 belongs to another tape");

    ag_requires_grad(a);
    ag_tensor *y = ag_sigmoid(t, a);
    ck_assert_int_eq(ag_backward(t, y), AG_ERR_SHAPE);
    CHECK_ERR(t, AG_ERR_SHAPE, "backward: loss is 2x3, not a scalar; give a seed with ag_backward_seed");

    ag_tensor *J = ag_mean(t, ag_square(t, y));
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    ck_assert_int_eq(ag_backward(t, J), AG_ERR_STATE);
    ck_assert_str_eq(ag_tape_errmsg(t),
                     "backward: already ran since the last ag_tape_reset (reset and record the step again)");
    ag_tape_reset(t);
    ck_assert_ptr_null(ag_exp(t, y));
    CHECK_ERR(t, AG_ERR_STATE, "exp: input 0 was recorded before the last ag_tape_reset");
    ag_tape_free(t);
    ag_tape_free(u);
}
END_TEST

START_TEST(full_arena_with_builtins) {
    static _Alignas(64) char buf[32768];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){sizeof buf, buf, 0}), AG_OK);
    ag_tensor *A = ag_tensor_new(t, 2, (size_t[]){20, 20});
    ck_assert_ptr_nonnull(A);
    ag_tensor *y = A;
    int k = 0;
    while (y && k < 100) {
        y = ag_matmul(t, y, A);
        k++;
    }
    ck_assert_ptr_null(y);
    ck_assert_int_lt(k, 100);
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "matmul: tape arena is full"));
    /* cross_entropy's saved state can be what does not fit */
    ag_tape_reset(t);
    ag_tensor *z = ag_tensor_new(t, 2, (size_t[]){4, 400});
    ag_requires_grad(z);
    int32_t labels[4] = {1, 2, 3, 4};
    ag_tensor *J = NULL;
    for (int i = 0; i < 10 && (J = ag_cross_entropy(t, z, labels)); i++) {
    }
    ck_assert_ptr_null(J);
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "cross_entropy: tape arena is full"));
    /* usable after a reset */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    ag_requires_grad(x);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, ag_square(t, x))), AG_OK);
    ck_assert_double_eq_tol(x->grad[1], 4, 1e-6);
    ag_tape_free(t);
}
END_TEST

/* ---- gradcheck errors */

typedef struct gctx {
    ag_tensor *w;
    int mode;
} gctx;

static ag_tensor *gc_fn(ag_tape *t, void *vctx) {
    gctx *c = vctx;
    switch (c->mode) {
    case 0: return ag_sum(t, ag_square(t, c->w));
    case 1: return ag_square(t, c->w); /* not a scalar */
    case 2: return ag_matmul(t, c->w, c->w); /* 2x3 by 2x3: shape error */
    default: return NULL;                    /* NULL without an error */
    }
}

START_TEST(gradcheck_errors) {
    ag_params *ps;
    ag_tensor *w;
    ag_params_new(&ps);
    ag_params_add(ps, "w", 2, (size_t[]){2, 3}, 0, &w);
    for (int i = 0; i < 6; i++) w->value[i] = (ag_real)(0.25 * i - 0.5);
    ag_tape *t = new_tape();
    gctx c = {w, 0};
    ag_gradcheck_result res;
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &w, 1, 1e-3, &res), AG_OK);
    ck_assert_uint_eq(res.n_checked, 6);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(w->grad[i], 2 * (0.25 * i - 0.5), 1e-6);

    c.mode = 1;
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &w, 1, 1e-3, &res), AG_ERR_SHAPE);
    CHECK_ERR(t, AG_ERR_SHAPE, "gradcheck: loss is 2x3, not a scalar");
    c.mode = 2;
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &w, 1, 1e-3, &res), AG_ERR_SHAPE);
    CHECK_ERR(t, AG_ERR_SHAPE, "matmul: a is 2x3 but b is 2x3");
    c.mode = 3;
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &w, 1, 1e-3, &res), AG_ERR_ARG);
    CHECK_ERR(t, AG_ERR_ARG, "gradcheck: the loss function returned NULL without recording an error");
    c.mode = 0;
    ck_assert_int_eq(ag_gradcheck(t, NULL, &c, &w, 1, 1e-3, &res), AG_ERR_ARG);
    CHECK_ERR(t, AG_ERR_ARG, "gradcheck: f is NULL");
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &w, 1, 0, &res), AG_ERR_ARG);
    CHECK_ERR(t, AG_ERR_ARG, "gradcheck: eps 0 must be positive and finite");
    ag_tensor *leaf = ag_tensor_new(t, 1, (size_t[]){2});
    ck_assert_int_eq(ag_gradcheck(t, gc_fn, &c, &leaf, 1, 1e-3, &res), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "gradcheck: wrt[0] is not a parameter"));
    ag_tape_clear_error(t);
    ck_assert_int_eq(ag_gradcheck(NULL, gc_fn, &c, &w, 1, 1e-3, &res), AG_ERR_ARG);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A builder that returns NULL leaves a result missing, whether the op itself failed or the builder
 * refused its arguments before recording anything: a backward on another loss must refuse (with the
 * builder's status and message) until the error is cleared. */
static ag_tensor *refuse_builder(ag_tape *t, ag_params *ps, ag_dense *d, ag_mlp *m, int which) {
    ag_tensor *x5 = ag_tensor_new(t, 2, (size_t[]){2, 5});
    ag_tensor *W = ag_params_at(ps, 0);
    switch (which) {
    case 0: return ag_l2(t, 1, NULL, 1);
    case 1: return ag_l2(t, 1, &W, 0);
    case 2: return ag_dense_forward(t, d, x5, NULL);
    case 3: return ag_dense_forward(t, NULL, x5, NULL);
    case 4: return ag_mlp_forward(t, m, x5, NULL, NULL);
    case 5: return ag_l2_decay(t, 1, NULL);
    case 6: return ag_activate(t, (ag_act)99, x5);
    case 7: return ag_mlp_cost_cross_entropy(t, NULL, x5, (int32_t[]){0, 0}, 0);
    default: return ag_cost_squared_error_l2(t, x5, x5, 1, NULL, 2);
    }
}

START_TEST(refused_builders_block_backward) {
    static const char *const msgs[] = {
        "l2: weights is NULL",
        "l2: n is 0, expects 1..64 tensors",
        "dense fc1: x is 2x5, expected K x 3",
        "dense: layer is NULL or not initialised",
        "mlp: x is 2x5 but the model expects K x 3 inputs",
        "l2_decay: params store is NULL",
        "activate: unknown activation 99",
        "mlp: model is NULL",
        "cost: weights is NULL but n is 2",
    };
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_dense d;
    ck_assert_int_eq(ag_dense_init(&d, ps, "fc1", 3, 2, AG_ACT_RELU), AG_OK);
    ag_mlp *m;
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "3-2", .prefix = "net"}, NULL, 0), AG_OK);
    ag_tape *t = new_tape();
    for (int which = 0; which < (int)(sizeof msgs / sizeof msgs[0]); which++) {
        ag_tape_reset(t);
        ag_tensor *good = ag_sum(t, ag_square(t, d.W));
        ck_assert_ptr_nonnull(good);
        ck_assert_ptr_null(refuse_builder(t, ps, &d, m, which));
        ag_status st = ag_tape_status(t);
        ck_assert_int_ne(st, AG_OK);
        ck_assert_str_eq(ag_tape_errmsg(t), msgs[which]);
        ck_assert_int_eq(ag_backward(t, good), st); /* refuses, message kept */
        ck_assert_str_eq(ag_tape_errmsg(t), msgs[which]);
        ag_tape_clear_error(t);
        ck_assert_int_eq(ag_backward(t, good), AG_OK);
    }
    /* ag_linear with b = NULL while the tape holds an error that no op caused: the NULL may be a
     * failed bias, so the result is missing too */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_new(t, 2, (size_t[]){2, 3});
    ag_tensor *good = ag_sum(t, ag_square(t, d.W));
    ck_assert_int_eq(ag_requires_grad(good), AG_ERR_ARG);
    ck_assert_ptr_null(ag_linear(t, x, d.W, NULL));
    ck_assert_int_eq(ag_backward(t, good), AG_ERR_ARG);
    ag_tape_free(t);
    ag_mlp_free(m);
    ag_params_free(ps);
}
END_TEST

/* With check_numerics on and a gradient sink set, no parameter gradient reaches the sink unchecked:
 * an Inf in a weight's gradient fails the backward naming the op and its node, and the sink sees only
 * finite values. */
typedef struct {
    int calls, nonfinite;
} sink_count;

static void count_consume(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                          const ag_real *g, size_t ldg, unsigned flags) {
    sink_count *c = ctx;
    (void)x, (void)off, (void)ld, (void)flags;
    c->calls++;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < cols; k++) c->nonfinite += !isfinite(g[r * ldg + k]);
}

START_TEST(numeric_check_covers_sink) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W, *b;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){4, 3}, AG_DECAY, &W), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){4}, 0, &b), AG_OK);
    /* rows of W are (1/2, 1/2, w): x = (s, -s, 0) gives z = b exactly (s/2 - s/2), while the weight's
     * gradient c dz^T x holds c s, which overflows for s = 1e10 and c = 1e30 (1e300 in double) */
    for (size_t i = 0; i < 4; i++) {
        W->value[3 * i] = W->value[3 * i + 1] = (ag_real)0.5;
        W->value[3 * i + 2] = (ag_real)(0.1 * (double)(i + 1));
    }
    ag_real c_big = sizeof(ag_real) == 4 ? (ag_real)1e30 : (ag_real)1e300;
    ag_tape *t = new_tape();
    sink_count c = {0, 0};
    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = count_consume, .ctx = &c}), AG_OK);
    ag_tape_set_check_numerics(t, 1);
    for (int bad = 0; bad < 2; bad++) {
        ag_tape_reset(t);
        c = (sink_count){0, 0};
        ag_real s = bad ? (ag_real)1e10 : 1;
        ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 3}, (ag_real[]){s, -s, 0, s, -s, 0});
        ag_tensor *z = ag_linear(t, x, W, b);
        ag_tensor *J = ag_sum(t, ag_scale(t, z, c_big));
        ck_assert_ptr_nonnull(J);
        ag_status st = ag_backward(t, J);
        ck_assert_int_eq(c.nonfinite, 0);
        if (!bad) {
            ck_assert_int_eq(st, AG_OK);
            ck_assert_int_eq(c.calls, 2);
        } else {
            ck_assert_int_eq(st, AG_ERR_NUMERIC);
            ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "linear: backward put, in the gradient of input 1,"));
            ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "(node #1, step"));
            ag_tape_clear_error(t);
        }
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ag_apply refuses descriptors it cannot record (never a crash), and runs a zero-input op without an
 * input array. */
static ag_status const_shape(ag_node *n) { return ag_node_set_shape(n, 1, (size_t[]){2}); }
static ag_status const_forward(ag_node *n) {
    n->out.value[0] = 3;
    n->out.value[1] = 4;
    return AG_OK;
}

START_TEST(apply_checks_descriptors) {
    ag_tape *t = new_tape();
    ag_tensor *x = ag_tensor_new(t, 1, (size_t[]){2}), *out = NULL;
    const ag_op neg_in = {"neg_in", -2, 0, const_shape, const_forward, NULL};
    ck_assert_int_eq(ag_apply(t, &neg_in, &x, 1, NULL, &out), AG_ERR_ARG);
    ck_assert_ptr_null(out);
    CHECK_ERR(t, AG_ERR_ARG, "neg_in: descriptor's n_in is -2, expects 0..64 or AG_VARIADIC");
    const ag_op many_in = {"many_in", AG_MAX_IN + 1, 0, const_shape, const_forward, NULL};
    ck_assert_int_eq(ag_apply(t, &many_in, &x, 1, NULL, &out), AG_ERR_ARG);
    CHECK_ERR(t, AG_ERR_ARG, "many_in: descriptor's n_in is 65, expects 0..64 or AG_VARIADIC");
    char params[16] = {0};
    const ag_op huge = {"huge", 1, SIZE_MAX - 8, const_shape, const_forward, NULL};
    ck_assert_int_eq(ag_apply(t, &huge, &x, 1, params, &out), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "huge: descriptor's params_size is"));
    ag_tape_clear_error(t);
    const ag_op konst = {"konst", 0, 0, const_shape, const_forward, NULL};
    ck_assert_int_eq(ag_apply(t, &konst, NULL, 0, NULL, &out), AG_OK);
    ck_assert_ptr_nonnull(out);
    ck_assert(out->value[0] == 3 && out->value[1] == 4);
    ck_assert_int_eq(ag_tape_status(t), AG_OK);
    ag_tape_free(t);
}
END_TEST

static Suite *errors_suite(void) {
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, shape_messages);
    tcase_add_test(tc, null_inputs_name_the_op);
    tcase_add_test(tc, propagation_through_a_chain);
    tcase_add_test(tc, foreign_stale_nonscalar_twice);
    tcase_add_test(tc, full_arena_with_builtins);
    tcase_add_test(tc, gradcheck_errors);
    tcase_add_test(tc, refused_builders_block_backward);
    tcase_add_test(tc, numeric_check_covers_sink);
    tcase_add_test(tc, apply_checks_descriptors);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(errors_suite)

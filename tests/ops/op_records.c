/*
 * op_records.c - the records of every built-in op of ag.h and of the fused linear + activation
 * (ag_linear_act). See op_records.h for what a record holds and who reads it.
 *
 * Domains: [-1, 1] unless a record says otherwise; log, sqrt and fractional pow draw from
 * [0.5, 2]; div's denominator, relu and the twins that divide or take |x| draw |x| in [0.3, 1.5].
 * Tolerances: the double build holds every gradcheck to a relative error of 1e-6 (the project's
 * standard); the float build to OP_TOL_FLOAT = 5e-3 (central differences with eps 1e-2 in float:
 * the worst seen is ~1.1e-3, and 2e-2 let a 1% gradient error pass), unless a record says more.
 */
#include "records/records.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define OP_TOL_FLOAT 5e-3

const op_domain DOM_ANY = ANY, DOM_POS = POS;

/* ---------------------------------------------------------------- shared shape lists */

/* Broadcasting pairs: equal, row, a 3-D against a column, scalar either side, outer [4,1] x [1,5],
 * rank 1 vs 3, 4-D against a 1-D, and both sides repeated in different places. */
const op_case BINARY_CASES[] = {
    {"3x4,3x4", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, NULL, NULL},
    {"3x4,4", 2, {SHP(2, 3, 4), SHP(1, 4)}, NULL, NULL},
    {"2x3x4,3x1", 2, {SHP(3, 2, 3, 4), SHP(2, 3, 1)}, NULL, NULL},
    {"5,1", 2, {SHP(1, 5), SHP(1, 1)}, NULL, NULL},
    {"scalar,3x4", 2, {S0, SHP(2, 3, 4)}, NULL, NULL},
    {"3x4,scalar", 2, {SHP(2, 3, 4), S0}, NULL, NULL},
    {"4x1,1x5", 2, {SHP(2, 4, 1), SHP(2, 1, 5)}, NULL, NULL},
    {"4,2x3x4", 2, {SHP(1, 4), SHP(3, 2, 3, 4)}, NULL, NULL},
    {"2x1x4,3x1", 2, {SHP(3, 2, 1, 4), SHP(2, 3, 1)}, NULL, NULL},
    {"2x1x3x2,2", 2, {SHP(4, 2, 1, 3, 2), SHP(1, 2)}, NULL, NULL},
    {"1x4,4x1", 2, {SHP(2, 1, 4), SHP(2, 4, 1)}, NULL, NULL},
    {"2x3x1x2,1x3x4x1", 2, {SHP(4, 2, 3, 1, 2), SHP(4, 1, 3, 4, 1)}, NULL, NULL},
};
/* The clones-vs-baseline layouts of the old --hash list: every fast path of bcast. */
const op_case BINARY_LAYOUTS[] = {
    {"RxC,RxC", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL},
    {"RxC,C", 2, {SHP(2, OP_R, OP_C), SHP(1, OP_C)}, NULL, NULL},
    {"C,RxC", 2, {SHP(1, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL},
    {"RxC,scalar", 2, {SHP(2, OP_R, OP_C), S0}, NULL, NULL},
    {"scalar,RxC", 2, {S0, SHP(2, OP_R, OP_C)}, NULL, NULL},
    {"Rx1,1xC", 2, {SHP(2, OP_R, 1), SHP(2, 1, OP_C)}, NULL, NULL},
    {"RxC,Rx1", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, 1)}, NULL, NULL},
};
/* Ranks 0..4 for element-wise maps, reductions and softmax. */
const op_case RANK_CASES[] = {
    {"scalar", 1, {S0}, NULL, NULL},
    {"5", 1, {SHP(1, 5)}, NULL, NULL},
    {"3x4", 1, {SHP(2, 3, 4)}, NULL, NULL},
    {"2x3x4", 1, {SHP(3, 2, 3, 4)}, NULL, NULL},
    {"2x3x1x2", 1, {SHP(4, 2, 3, 1, 2)}, NULL, NULL},
};
const op_case RC_LAYOUT[] = {{"RxC", 1, {SHP(2, OP_R, OP_C)}, NULL, NULL}};

/* ---------------------------------------------------------------- element-wise */

#define BINARY(fn)                                                                     \
    static ag_tensor *b_##fn(ag_tape *t, ag_tensor *const *in, const void *c) {        \
        (void)c;                                                                       \
        return ag_##fn(t, in[0], in[1]);                                               \
    }
#define UNARY(fn)                                                                      \
    static ag_tensor *b_##fn(ag_tape *t, ag_tensor *const *in, const void *c) {        \
        (void)c;                                                                       \
        return ag_##fn(t, in[0]);                                                      \
    }
BINARY(add) BINARY(sub) BINARY(mul) BINARY(div)
UNARY(neg) UNARY(exp) UNARY(log) UNARY(square) UNARY(sqrt) UNARY(sigmoid) UNARY(tanh) UNARY(relu)
UNARY(sum) UNARY(mean) UNARY(softmax) UNARY(log_softmax) UNARY(transpose)

/* twins: each the same function through other ops */
static ag_tensor *tw_add(ag_tape *t, ag_tensor *const *in, const void *c) { /* a - (-b) */
    (void)c;
    return ag_sub(t, in[0], ag_neg(t, in[1]));
}
static ag_tensor *tw_sub(ag_tape *t, ag_tensor *const *in, const void *c) { /* a + (-b) */
    (void)c;
    return ag_add(t, in[0], ag_neg(t, in[1]));
}
static ag_tensor *tw_mul(ag_tape *t, ag_tensor *const *in, const void *c) { /* ((a+b)^2 - (a-b)^2) / 4 */
    (void)c;
    return ag_scale(t, ag_sub(t, ag_square(t, ag_add(t, in[0], in[1])), ag_square(t, ag_sub(t, in[0], in[1]))),
                    (ag_real)0.25);
}
static ag_tensor *tw_div(ag_tape *t, ag_tensor *const *in, const void *c) { /* a b^-1 */
    (void)c;
    return ag_mul(t, in[0], ag_pow(t, in[1], -1));
}
static ag_tensor *tw_neg(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_scale(t, in[0], -1);
}
static ag_tensor *tw_exp(ag_tape *t, ag_tensor *const *in, const void *c) { /* s(x) / s(-x) = e^x */
    (void)c;
    return ag_div(t, ag_sigmoid(t, in[0]), ag_sigmoid(t, ag_neg(t, in[0])));
}
static ag_tensor *tw_square(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_mul(t, in[0], in[0]);
}
static ag_tensor *tw_sqrt(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_pow(t, in[0], (ag_real)0.5);
}
static ag_tensor *tw_sigmoid(ag_tape *t, ag_tensor *const *in, const void *c) { /* (1 + e^-x)^-1 */
    (void)c;
    return ag_pow(t, ag_add_scalar(t, ag_exp(t, ag_neg(t, in[0])), 1), -1);
}
static ag_tensor *tw_tanh(ag_tape *t, ag_tensor *const *in, const void *c) { /* 2 s(2x) - 1 */
    (void)c;
    return ag_add_scalar(t, ag_scale(t, ag_sigmoid(t, ag_scale(t, in[0], 2)), 2), -1);
}
static ag_tensor *tw_relu(ag_tape *t, ag_tensor *const *in, const void *c) { /* (x + |x|) / 2 */
    (void)c;
    return ag_scale(t, ag_add(t, in[0], ag_sqrt(t, ag_square(t, in[0]))), (ag_real)0.5);
}

static ag_tensor *b_scale(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_scale(t, in[0], P(c, ag_real)); }
static ag_tensor *tw_scale(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_mul(t, in[0], ag_scalar(t, P(c, ag_real)));
}
static ag_tensor *b_add_scalar(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_add_scalar(t, in[0], P(c, ag_real));
}
static ag_tensor *tw_add_scalar(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_add(t, in[0], ag_scalar(t, P(c, ag_real)));
}
static ag_tensor *b_pow(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_pow(t, in[0], P(c, ag_real)); }
/* integer p: repeated products (any sign); else e^(p log x) */
static ag_tensor *tw_pow(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ag_real p = P(c, ag_real);
    if (p == 2) return ag_mul(t, in[0], in[0]);
    if (p == 3) return ag_mul(t, ag_mul(t, in[0], in[0]), in[0]);
    return ag_exp(t, ag_scale(t, ag_log(t, in[0]), p));
}

static const ag_real C_SCALE = (ag_real)-1.7, C_SHIFT = (ag_real)0.3;
static const ag_real C_SCALE_H = (ag_real)1.7, C_SHIFT_H = (ag_real)-0.3;
static const op_case SCALE_CASES[] = {
    {"scalar", 1, {S0}, &C_SCALE, NULL}, {"4", 1, {SHP(1, 4)}, &C_SCALE, NULL}, {"3x5", 1, {SHP(2, 3, 5)}, &C_SCALE, NULL}};
static const op_case SCALE_LAYOUT[] = {{"RxC", 1, {SHP(2, OP_R, OP_C)}, &C_SCALE_H, NULL}};
static const op_case SHIFT_CASES[] = {
    {"scalar", 1, {S0}, &C_SHIFT, NULL}, {"4", 1, {SHP(1, 4)}, &C_SHIFT, NULL}, {"3x5", 1, {SHP(2, 3, 5)}, &C_SHIFT, NULL}};
static const op_case SHIFT_LAYOUT[] = {{"RxC", 1, {SHP(2, OP_R, OP_C)}, &C_SHIFT_H, NULL}};

/* pow: integer exponents on any sign, fractional and negative ones on positives */
static const ag_real PW[] = {2, 3, 2.5, -1.5, 0.5};
static const op_case POW_CASES[] = {
    {"p=2", 1, {SHP(2, 3, 4)}, &PW[0], &DOM_ANY},   {"p=3", 1, {SHP(2, 4, 2)}, &PW[1], &DOM_ANY},
    {"p=2.5", 1, {SHP(2, 2, 5)}, &PW[2], &DOM_POS}, {"p=-1.5", 1, {SHP(2, 3, 3)}, &PW[3], &DOM_POS},
    {"p=0.5", 1, {SHP(2, 5, 1)}, &PW[4], &DOM_POS},
};
static const op_case POW_LAYOUTS[] = {
    {"RxC p=2.5", 1, {SHP(2, OP_R, OP_C)}, &PW[2], &DOM_POS},
    {"RxC p=3", 1, {SHP(2, OP_R, OP_C)}, &PW[1], &DOM_ANY},
};

/* ---------------------------------------------------------------- products */

typedef struct trans {
    int a, b;
} trans;
static const trans TR[4] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};

static ag_tensor *b_matmul(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_matmul(t, in[0], in[1]);
}
static ag_tensor *tw_matmul(ag_tape *t, ag_tensor *const *in, const void *c) { /* a (b^T)^T through linear */
    (void)c;
    return ag_linear(t, in[0], ag_transpose(t, in[1]), NULL);
}
static ag_tensor *b_matmul_ex(ag_tape *t, ag_tensor *const *in, const void *c) {
    const trans tr = P(c, trans);
    return ag_matmul_ex(t, in[0], in[1], tr.a, tr.b);
}
static ag_tensor *tw_matmul_ex(ag_tape *t, ag_tensor *const *in, const void *c) { /* the transposes materialised */
    const trans tr = P(c, trans);
    return ag_matmul(t, tr.a ? ag_transpose(t, in[0]) : in[0], tr.b ? ag_transpose(t, in[1]) : in[1]);
}
static const op_case MATMUL_CASES[] = {
    {"3x4 4x5", 2, {SHP(2, 3, 4), SHP(2, 4, 5)}, NULL, NULL},
    {"1x3 3x1", 2, {SHP(2, 1, 3), SHP(2, 3, 1)}, NULL, NULL},
    {"4x1 1x2", 2, {SHP(2, 4, 1), SHP(2, 1, 2)}, NULL, NULL},
};
static const op_case MATMUL_LAYOUT[] = {{"RxK KxC", 2, {SHP(2, OP_R, OP_K), SHP(2, OP_K, OP_C)}, NULL, NULL}};
/* op(a) is m x k, op(b) k x n; both sizes of every transpose, twice */
static const op_case MATMUL_EX_CASES[] = {
    {"nn 3x4x5", 2, {SHP(2, 3, 4), SHP(2, 4, 5)}, &TR[0], NULL},
    {"nt 3x4x5", 2, {SHP(2, 3, 4), SHP(2, 5, 4)}, &TR[1], NULL},
    {"tn 3x4x5", 2, {SHP(2, 4, 3), SHP(2, 4, 5)}, &TR[2], NULL},
    {"tt 3x4x5", 2, {SHP(2, 4, 3), SHP(2, 5, 4)}, &TR[3], NULL},
    {"nn 6x2x3", 2, {SHP(2, 6, 2), SHP(2, 2, 3)}, &TR[0], NULL},
    {"nt 6x2x3", 2, {SHP(2, 6, 2), SHP(2, 3, 2)}, &TR[1], NULL},
    {"tn 6x2x3", 2, {SHP(2, 2, 6), SHP(2, 2, 3)}, &TR[2], NULL},
    {"tt 6x2x3", 2, {SHP(2, 2, 6), SHP(2, 3, 2)}, &TR[3], NULL},
};
static const op_case MATMUL_EX_LAYOUTS[] = {
    {"nt RxK CxK", 2, {SHP(2, OP_R, OP_K), SHP(2, OP_C, OP_K)}, &TR[1], NULL},
    {"tn KxR KxC", 2, {SHP(2, OP_K, OP_R), SHP(2, OP_K, OP_C)}, &TR[2], NULL},
    {"tt KxR CxK", 2, {SHP(2, OP_K, OP_R), SHP(2, OP_C, OP_K)}, &TR[3], NULL},
};

static ag_tensor *b_linear(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_linear(t, in[0], in[1], CALL(c)->n_in > 2 ? in[2] : NULL);
}
/* x W^T (+ b) from matmul_ex and add; a 1-D x is one row */
static ag_tensor *linear_twin(ag_tape *t, ag_tensor *const *in, int n_in) {
    ag_tensor *x = in[0];
    if (x->ndim == 1) x = ag_reshape(t, x, 2, (size_t[]){1, x->shape[0]});
    ag_tensor *z = ag_matmul_ex(t, x, in[1], 0, 1);
    if (n_in > 2) z = ag_add(t, z, in[2]);
    if (z && in[0]->ndim == 1) z = ag_reshape(t, z, 1, (size_t[]){z->shape[1]});
    return z;
}
static ag_tensor *tw_linear(ag_tape *t, ag_tensor *const *in, const void *c) {
    return linear_twin(t, in, CALL(c)->n_in);
}
static const op_case LINEAR_CASES[] = {
    {"x 3x4, W 5x4, b 5", 3, {SHP(2, 3, 4), SHP(2, 5, 4), SHP(1, 5)}, NULL, NULL},
    {"x 3x4, W 5x4, no b", 2, {SHP(2, 3, 4), SHP(2, 5, 4)}, NULL, NULL},
    {"x 4, W 3x4, b 3", 3, {SHP(1, 4), SHP(2, 3, 4), SHP(1, 3)}, NULL, NULL},
    {"x 1x2, W 1x2, b 1", 3, {SHP(2, 1, 2), SHP(2, 1, 2), SHP(1, 1)}, NULL, NULL},
};
static const op_case LINEAR_LAYOUTS[] = {
    {"x RxK, W CxK, b C", 3, {SHP(2, OP_R, OP_K), SHP(2, OP_C, OP_K), SHP(1, OP_C)}, NULL, NULL},
    {"x RxK, W CxK", 2, {SHP(2, OP_R, OP_K), SHP(2, OP_C, OP_K)}, NULL, NULL},
};

/* the fused dense layer f(x W^T + b) (ag_linear_act) */
static const int ACT[4] = {AG_ACT_IDENTITY, AG_ACT_SIGMOID, AG_ACT_TANH, AG_ACT_RELU};
static ag_tensor *b_linear_act(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_linear_act(t, in[0], in[1], CALL(c)->n_in > 2 ? in[2] : NULL, P(c, int));
}
static ag_tensor *tw_linear_act(ag_tape *t, ag_tensor *const *in, const void *c) { /* linear, then f */
    ag_tensor *z = linear_twin(t, in, CALL(c)->n_in);
    switch (P(c, int)) {
    case AG_ACT_SIGMOID: return ag_sigmoid(t, z);
    case AG_ACT_TANH: return ag_tanh(t, z);
    case AG_ACT_RELU: return ag_relu(t, z);
    default: return z;
    }
}
/* relu's kink is at z = 0 of the pre-activation: its smallest |z| */
static double linear_act_kink(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    if (P(c, int) != AG_ACT_RELU) return INFINITY;
    int was = ag_tape_set_grad_enabled(t, 0);
    ag_tensor *z = ag_linear(t, in[0], in[1], c->n_in > 2 ? in[2] : NULL);
    ag_tape_set_grad_enabled(t, was);
    double d = INFINITY;
    for (size_t i = 0; z && i < z->size; i++) d = fmin(d, fabs((double)z->value[i]));
    return d;
}
#define LA(act, label) \
    {label " b", 3, {SHP(2, 3, 5), SHP(2, 4, 5), SHP(1, 4)}, &ACT[act], NULL}, \
    {label, 2, {SHP(2, 3, 5), SHP(2, 4, 5)}, &ACT[act], NULL}
static const op_case LINEAR_ACT_CASES[] = {LA(0, "identity"), LA(1, "sigmoid"), LA(2, "tanh"), LA(3, "relu"),
                                           {"relu 1-D x", 3, {SHP(1, 5), SHP(2, 4, 5), SHP(1, 4)}, &ACT[3], NULL}};
#define LAL(act, label) \
    {label " b", 3, {SHP(2, OP_R, OP_K), SHP(2, OP_C, OP_K), SHP(1, OP_C)}, &ACT[act], NULL}, \
    {label, 2, {SHP(2, OP_R, OP_K), SHP(2, OP_C, OP_K)}, &ACT[act], NULL}
static const op_case LINEAR_ACT_LAYOUTS[] = {LAL(3, "relu"), LAL(0, "identity"), LAL(1, "sigmoid"), LAL(2, "tanh")};

/* ---------------------------------------------------------------- reductions, softmax */

static ag_tensor *tw_sum(ag_tape *t, ag_tensor *const *in, const void *c) { /* N mean */
    (void)c;
    return ag_scale(t, ag_mean(t, in[0]), (ag_real)in[0]->size);
}
static ag_tensor *tw_mean(ag_tape *t, ag_tensor *const *in, const void *c) { /* sum / N */
    (void)c;
    return ag_scale(t, ag_sum(t, in[0]), (ag_real)(1.0 / (double)in[0]->size));
}
static size_t axis_len(const ag_tensor *x, int axis) { return x->shape[axis < 0 ? axis + x->ndim : axis]; }
static ag_tensor *b_sum_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_sum_axis(t, in[0], P(c, int)); }
static ag_tensor *b_mean_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_mean_axis(t, in[0], P(c, int)); }
static ag_tensor *tw_sum_axis(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_scale(t, ag_mean_axis(t, in[0], P(c, int)), (ag_real)axis_len(in[0], P(c, int)));
}
static ag_tensor *tw_mean_axis(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_scale(t, ag_sum_axis(t, in[0], P(c, int)), (ag_real)(1.0 / (double)axis_len(in[0], P(c, int))));
}
static ag_tensor *tw_softmax(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_exp(t, ag_log_softmax(t, in[0]));
}
static ag_tensor *tw_log_softmax(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_log(t, ag_softmax(t, in[0]));
}
static const op_case SOFTMAX_CASES[] = {
    {"scalar", 1, {S0}, NULL, NULL},          {"5", 1, {SHP(1, 5)}, NULL, NULL},
    {"3x4", 1, {SHP(2, 3, 4)}, NULL, NULL},   {"2x3x4", 1, {SHP(3, 2, 3, 4)}, NULL, NULL},
    {"2x3x1x2", 1, {SHP(4, 2, 3, 1, 2)}, NULL, NULL}, {"3x7", 1, {SHP(2, 3, 7)}, NULL, NULL},
};

/* every axis of ranks 1..4, negative ones included */
static const int AX[] = {-4, -3, -2, -1, 0, 1, 2, 3};
#define AXP(a) (&AX[(a) + 4])
static const op_case AXIS_CASES[] = {
    {"5 axis 0", 1, {SHP(1, 5)}, AXP(0), NULL},          {"5 axis -1", 1, {SHP(1, 5)}, AXP(-1), NULL},
    {"3x4 axis 0", 1, {SHP(2, 3, 4)}, AXP(0), NULL},     {"3x4 axis 1", 1, {SHP(2, 3, 4)}, AXP(1), NULL},
    {"3x4 axis -1", 1, {SHP(2, 3, 4)}, AXP(-1), NULL},   {"3x4 axis -2", 1, {SHP(2, 3, 4)}, AXP(-2), NULL},
    {"2x3x4 axis 0", 1, {SHP(3, 2, 3, 4)}, AXP(0), NULL}, {"2x3x4 axis 1", 1, {SHP(3, 2, 3, 4)}, AXP(1), NULL},
    {"2x3x4 axis 2", 1, {SHP(3, 2, 3, 4)}, AXP(2), NULL}, {"2x3x4 axis -3", 1, {SHP(3, 2, 3, 4)}, AXP(-3), NULL},
    {"2x3x1x2 axis 0", 1, {SHP(4, 2, 3, 1, 2)}, AXP(0), NULL},
    {"2x3x1x2 axis 1", 1, {SHP(4, 2, 3, 1, 2)}, AXP(1), NULL},
    {"2x3x1x2 axis 2", 1, {SHP(4, 2, 3, 1, 2)}, AXP(2), NULL},
    {"2x3x1x2 axis 3", 1, {SHP(4, 2, 3, 1, 2)}, AXP(3), NULL},
    {"2x3x1x2 axis -4", 1, {SHP(4, 2, 3, 1, 2)}, AXP(-4), NULL},
    {"2x3x1x2 axis -2", 1, {SHP(4, 2, 3, 1, 2)}, AXP(-2), NULL},
};
static const op_case SUM_AXIS_LAYOUTS[] = {{"RxC axis 0", 1, {SHP(2, OP_R, OP_C)}, AXP(0), NULL},
                                           {"RxC axis 1", 1, {SHP(2, OP_R, OP_C)}, AXP(1), NULL}};
static const op_case MEAN_AXIS_LAYOUTS[] = {{"RxC axis 0", 1, {SHP(2, OP_R, OP_C)}, AXP(0), NULL},
                                            {"RxC axis -1", 1, {SHP(2, OP_R, OP_C)}, AXP(-1), NULL}};

/* ---------------------------------------------------------------- shape ops */

typedef struct reshape_to {
    int ndim;
    const size_t *shape;
    int flatten;   /* to one dimension of x's size (layouts, where the size is not literal) */
    int then_tanh; /* a view: make the gradient pass through another op as well */
} reshape_to;
static ag_tensor *b_reshape(ag_tape *t, ag_tensor *const *in, const void *c) {
    const reshape_to *r = CALL(c)->param;
    ag_tensor *y = r->flatten ? ag_reshape(t, in[0], 1, in[0] ? &in[0]->size : (size_t[]){1})
                              : ag_reshape(t, in[0], r->ndim, r->shape);
    return r->then_tanh ? ag_tanh(t, y) : y;
}
static const reshape_to RS_46 = {2, (size_t[]){4, 6}, 0, 1}, RS_24 = {1, (size_t[]){24}, 0, 0},
                        RS_1x2x12x1 = {4, (size_t[]){1, 2, 12, 1}, 0, 1}, RS_SCALAR = {0, (size_t[]){1}, 0, 1},
                        RS_FLAT = {0, NULL, 1, 0};
static const op_case RESHAPE_CASES[] = {
    {"2x3x4 to 4x6", 1, {SHP(3, 2, 3, 4)}, &RS_46, NULL},
    {"2x3x4 to 24", 1, {SHP(3, 2, 3, 4)}, &RS_24, NULL},
    {"2x3x4 to 1x2x12x1", 1, {SHP(3, 2, 3, 4)}, &RS_1x2x12x1, NULL},
    {"1 to scalar", 1, {SHP(1, 1)}, &RS_SCALAR, NULL},
};
static const op_case RESHAPE_LAYOUT[] = {{"RxC to R*C", 1, {SHP(2, OP_R, OP_C)}, &RS_FLAT, NULL}};

/* x^T = matmul_ex(x, I, 1, 0) */
static ag_tensor *tw_transpose(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    const size_t m = in[0]->shape[0];
    ag_tensor *eye = ag_tensor_new(t, 2, (size_t[]){m, m});
    for (size_t i = 0; eye && i < m; i++) eye->value[i * m + i] = 1;
    return ag_matmul_ex(t, in[0], eye, 1, 0);
}
static const op_case TRANSPOSE_CASES[] = {
    {"3x4", 1, {SHP(2, 3, 4)}, NULL, NULL}, {"1x5", 1, {SHP(2, 1, 5)}, NULL, NULL}, {"4x1", 1, {SHP(2, 4, 1)}, NULL, NULL}};

/* ---------------------------------------------------------------- losses */

static ag_tensor *b_squared_error(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_squared_error(t, in[0], in[1]);
}
static ag_tensor *tw_squared_error(ag_tape *t, ag_tensor *const *in, const void *c) { /* sum (h - y)^2 / 2K */
    (void)c;
    return ag_scale(t, ag_sum(t, ag_square(t, ag_sub(t, in[0], in[1]))), (ag_real)(0.5 / (double)ag_tensor_rows(in[0])));
}
static const op_case SE_CASES[] = {
    {"scalar", 2, {S0, S0}, NULL, NULL},
    {"5", 2, {SHP(1, 5), SHP(1, 5)}, NULL, NULL},
    {"3x4", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, NULL, NULL},
    {"2x3x2", 2, {SHP(3, 2, 3, 2), SHP(3, 2, 3, 2)}, NULL, NULL},
};
static const op_case SE_LAYOUT[] = {{"RxC", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL}};

typedef struct l2_args {
    ag_real lambda;
    int fixed_n; /* pass n below instead of the number of inputs (the bad calls) */
    size_t n;
} l2_args;
static const l2_args L2 = {(ag_real)0.7, 0, 0}, L2_H = {(ag_real)0.01, 0, 0};
static ag_tensor *b_l2(ag_tape *t, ag_tensor *const *in, const void *c) {
    const l2_args *a = CALL(c)->param;
    return ag_l2(t, a->lambda, in, a->fixed_n ? a->n : (size_t)CALL(c)->n_in);
}
static ag_tensor *tw_l2(ag_tape *t, ag_tensor *const *in, const void *c) { /* lambda/2 sum_i sum w_i^2 */
    ag_tensor *s = NULL;
    for (int i = 0; i < CALL(c)->n_in; i++) {
        ag_tensor *si = ag_sum(t, ag_square(t, in[i]));
        s = s ? ag_add(t, s, si) : si;
    }
    return ag_scale(t, s, (ag_real)(0.5 * (double)((const l2_args *)CALL(c)->param)->lambda));
}
static const op_case L2_CASES[] = {
    {"3x4", 1, {SHP(2, 3, 4)}, &L2, NULL},
    {"3x4, 5", 2, {SHP(2, 3, 4), SHP(1, 5)}, &L2, NULL},
    {"3x4, 5, 2x2x3", 3, {SHP(2, 3, 4), SHP(1, 5), SHP(3, 2, 2, 3)}, &L2, NULL},
};
static const op_case L2_LAYOUT[] = {{"RxC, C", 2, {SHP(2, OP_R, OP_C), SHP(1, OP_C)}, &L2_H, NULL}};

static ag_tensor *b_cross_entropy(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_cross_entropy(t, in[0], CALL(c)->labels);
}
/* -(1/K) sum log_softmax(x) .* onehot(labels) */
static ag_tensor *tw_cross_entropy(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ag_tensor *x = in[0];
    const size_t classes = x->ndim == 0 ? 1 : x->shape[x->ndim - 1], K = x->size / classes;
    ag_tensor *Y = ag_tensor_new(t, x->ndim, x->shape);
    for (size_t k = 0; Y && k < K; k++) Y->value[k * classes + (size_t)CALL(c)->labels[k]] = 1;
    return ag_scale(t, ag_sum(t, ag_mul(t, ag_log_softmax(t, in[0]), Y)), (ag_real)(-1.0 / (double)K));
}
static const op_case CE_CASES[] = {
    {"3x4", 1, {SHP(2, 3, 4)}, NULL, NULL}, {"5x2", 1, {SHP(2, 5, 2)}, NULL, NULL},
    {"1x6", 1, {SHP(2, 1, 6)}, NULL, NULL}, {"4x3", 1, {SHP(2, 4, 3)}, NULL, NULL},
    {"5 (1-D)", 1, {SHP(1, 5)}, NULL, NULL},
};

/* ---------------------------------------------------------------- erroneous calls
 * NULL inputs, tensors of another tape, stale tensors and a NULL tape are generated for every
 * record (test_op_records.c); these rows are the op's own shape and parameter errors. */

#define BAD2(what, a, b, st, m) {what, 2, {a, b}, NULL, NULL, 0, st, m}
static const op_bad ADD_BAD[] = {BAD2("3x4 + 5", SHP(2, 3, 4), SHP(1, 5), AG_ERR_SHAPE, "shapes 3x4 and 5 do not broadcast")};
static const op_bad SUB_BAD[] = {BAD2("2x3 - 3x4", SHP(2, 2, 3), SHP(2, 3, 4), AG_ERR_SHAPE, "2x3 and 3x4")};
static const op_bad MUL_BAD[] = {BAD2("4-D .* 3x4", SHP(4, 2, 1, 3, 2), SHP(2, 3, 4), AG_ERR_SHAPE, "2x1x3x2 and 3x4")};
static const op_bad DIV_BAD[] = {BAD2("3 ./ 3x4", SHP(1, 3), SHP(2, 3, 4), AG_ERR_SHAPE, "3 and 3x4")};
static const op_bad MATMUL_BAD[] = {
    BAD2("inner sizes differ", SHP(2, 2, 3), SHP(2, 2, 3), AG_ERR_SHAPE, "a is 2x3 but b is 2x3"),
    BAD2("1-D a", SHP(1, 3), SHP(2, 3, 4), AG_ERR_SHAPE, "a is 3 and b is 3x4"),
    BAD2("4-D b", SHP(2, 3, 4), SHP(4, 2, 1, 3, 2), AG_ERR_SHAPE, "2x1x3x2"),
    BAD2("scalars", S0, S0, AG_ERR_SHAPE, "scalar"),
};
static const op_bad MATMUL_EX_BAD[] = {
    {"a^T b, inner differ", 2, {SHP(2, 2, 3), SHP(2, 3, 4)}, &TR[2], NULL, 0, AG_ERR_SHAPE, "2x3 (transposed) but b is 3x4"},
    {"a b, inner differ", 2, {SHP(2, 2, 3), SHP(2, 2, 3)}, &TR[0], NULL, 0, AG_ERR_SHAPE, "2x3"},
    {"a^T b^T, inner differ", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &TR[3], NULL, 0, AG_ERR_SHAPE, "3x4 (transposed)"},
};
#define W43 SHP(2, 4, 3)
static const op_bad LINEAR_BAD[] = {
    {"x columns differ", 3, {SHP(2, 3, 4), W43, SHP(1, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "x is 3x4 but W is 4x3"},
    {"b size differs", 3, {SHP(2, 2, 3), W43, SHP(1, 3)}, NULL, NULL, 0, AG_ERR_SHAPE, "b is 3 but W is 4x3"},
    {"b 2-D", 3, {SHP(2, 2, 3), W43, SHP(2, 3, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "b is 3x4"},
    {"W 1-D", 2, {SHP(2, 2, 3), SHP(1, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "W is 4, must be 2-D"},
    {"x 4-D", 3, {SHP(4, 2, 1, 3, 2), W43, SHP(1, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "2x1x3x2"},
};
static const op_bad LINEAR_ACT_BAD[] = {
    {"x columns differ", 3, {SHP(2, 3, 4), W43, SHP(1, 4)}, &ACT[3], NULL, 0, AG_ERR_SHAPE, "x is 3x4 but W is 4x3"},
    {"b size differs", 3, {SHP(2, 2, 3), W43, SHP(1, 3)}, &ACT[2], NULL, 0, AG_ERR_SHAPE, "b is 3 but W is 4x3"},
};
static const int AX_BIG = INT_MAX, AX_MIN = INT_MIN;
static const op_bad SUM_AXIS_BAD[] = {
    {"axis 2 of 2-D", 1, {SHP(2, 2, 3)}, AXP(2), NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x3"},
    {"axis -3 of 2-D", 1, {SHP(2, 2, 3)}, AXP(-3), NULL, 0, AG_ERR_SHAPE, "axis -3"},
    {"axis INT_MIN", 1, {SHP(2, 2, 3)}, &AX_MIN, NULL, 0, AG_ERR_SHAPE, "out of range"},
    {"axis INT_MAX", 1, {SHP(4, 2, 1, 3, 2)}, &AX_BIG, NULL, 0, AG_ERR_SHAPE, "2x1x3x2"},
};
static const op_bad MEAN_AXIS_BAD[] = {
    {"axis of a scalar", 1, {S0}, AXP(0), NULL, 0, AG_ERR_SHAPE, "scalar"},
    {"axis 2 of 2-D", 1, {SHP(2, 2, 3)}, AXP(2), NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x3"},
};
#define HALF (((size_t)1 << (sizeof(size_t) * 4)) + 1) /* HALF * HALF overflows size_t */
static const reshape_to RB_COUNT = {2, (size_t[]){4, 2}, 0, 0}, RB_ZERO = {2, (size_t[]){6, 0}, 0, 0},
                        RB_M1 = {1, (size_t[]){(size_t)-1}, 0, 0}, RB_OVF = {2, (size_t[]){HALF, HALF}, 0, 0},
                        RB_RANK5 = {5, (size_t[]){1, 1, 1, 2, 3}, 0, 0}, RB_RANKNEG = {-1, (size_t[]){6}, 0, 0},
                        RB_SHNULL = {1, NULL, 0, 0};
#define RBAD(what, p, st, m) {what, 1, {SHP(2, 2, 3)}, &p, NULL, 0, st, m}
static const op_bad RESHAPE_BAD[] = {
    RBAD("other count", RB_COUNT, AG_ERR_SHAPE, "2x3 has 6 elements but 4x2 has 8"),
    RBAD("zero dimension", RB_ZERO, AG_ERR_SHAPE, "6x0 has a zero dimension"),
    RBAD("(size_t)-1", RB_M1, AG_ERR_SHAPE, "overflows"),
    RBAD("count overflows", RB_OVF, AG_ERR_SHAPE, "overflows size_t"),
    RBAD("rank 5", RB_RANK5, AG_ERR_ARG, "rank 5"),
    RBAD("rank -1", RB_RANKNEG, AG_ERR_ARG, "rank -1"),
    RBAD("shape NULL", RB_SHNULL, AG_ERR_ARG, "shape is NULL"),
};
static const op_bad TRANSPOSE_BAD[] = {
    {"1-D", 1, {SHP(1, 3)}, NULL, NULL, 0, AG_ERR_SHAPE, "x is 3, must be 2-D"},
    {"4-D", 1, {SHP(4, 2, 1, 3, 2)}, NULL, NULL, 0, AG_ERR_SHAPE, "2x1x3x2"},
    {"scalar", 1, {S0}, NULL, NULL, 0, AG_ERR_SHAPE, "scalar"},
};
static const op_bad SE_BAD[] = {
    BAD2("shapes differ", SHP(2, 2, 3), SHP(2, 3, 4), AG_ERR_SHAPE, "h is 2x3 but y is 3x4"),
    BAD2("y broadcast", SHP(2, 2, 3), SHP(1, 3), AG_ERR_SHAPE, "y is 3"),
};
static const l2_args L2_N0 = {(ag_real)0.1, 1, 0}, L2_N65 = {(ag_real)0.1, 1, 65}, L2_NMAX = {(ag_real)0.1, 1, (size_t)-1};
static const op_bad L2_BAD[] = {
    {"weights NULL", 1, {SHP(2, 4, 3)}, &L2, NULL, OP_NULL_ARRAY, AG_ERR_ARG, "weights is NULL"},
    {"second weight NULL", 2, {SHP(2, 4, 3), SHP(2, 4, 3)}, &L2, NULL, OP_NULL_IN(1), AG_ERR_ARG, "input 1 is NULL"},
    {"n 0", 1, {SHP(2, 4, 3)}, &L2_N0, NULL, 0, AG_ERR_ARG, "n is 0"},
    {"n 65", 1, {SHP(2, 4, 3)}, &L2_N65, NULL, 0, AG_ERR_ARG, "n is 65"},
    {"n SIZE_MAX", 1, {SHP(2, 4, 3)}, &L2_NMAX, NULL, 0, AG_ERR_ARG, "expects 1..64"},
};
static const op_bad CE_BAD[] = {
    {"labels NULL", 1, {SHP(2, 2, 3)}, NULL, NULL, OP_NULL_LABELS, AG_ERR_ARG, "labels is NULL"},
    {"label too big", 1, {SHP(2, 2, 3)}, NULL, (const int32_t[]){0, 3}, 0, AG_ERR_ARG, "label 3 of row 1 is outside 0..2"},
    {"label negative", 1, {SHP(2, 2, 3)}, NULL, (const int32_t[]){-1, 0}, 0, AG_ERR_ARG, "label -1 of row 0"},
    {"label INT32_MIN", 1, {SHP(1, 3)}, NULL, (const int32_t[]){INT32_MIN}, 0, AG_ERR_ARG, "label -2147483648"},
    {"4-D logits", 1, {SHP(4, 2, 1, 3, 2)}, NULL, (const int32_t[]){0, 0}, 0, AG_ERR_SHAPE, "logits are 2x1x3x2"},
    {"scalar logits", 1, {S0}, NULL, (const int32_t[]){0}, 0, AG_ERR_SHAPE, "scalar"},
};

/* ---------------------------------------------------------------- the table */

#define ELT(nm, tw, cs, dom, ...)                                                                       \
    {.name = #nm, .build = b_##nm, .composed = tw, .cases = CASES(cs), .layouts = CASES(RC_LAYOUT), \
     .domain = {dom}, .clones = 1, __VA_ARGS__}
#define BIN(nm, dom_b, ...)                                                                            \
    {.name = #nm, .build = b_##nm, .composed = tw_##nm, .cases = CASES(BINARY_CASES),                  \
     .layouts = CASES(BINARY_LAYOUTS), .domain = {ANY, dom_b}, .clones = 1, __VA_ARGS__}

const op_record op_records_first_wave[] = {
    BIN(add, ANY, .bad = CASES(ADD_BAD)),
    BIN(sub, ANY, .bad = CASES(SUB_BAD)),
    BIN(mul, ANY, .bad = CASES(MUL_BAD)),
    BIN(div, AWAY, AVOID_ZERO, .bad = CASES(DIV_BAD)),
    ELT(neg, tw_neg, RANK_CASES, ANY),
    {.name = "scale", .build = b_scale, .composed = tw_scale, .cases = CASES(SCALE_CASES),
     .layouts = CASES(SCALE_LAYOUT), .domain = {ANY}, .clones = 1},
    {.name = "add_scalar", .build = b_add_scalar, .composed = tw_add_scalar, .cases = CASES(SHIFT_CASES),
     .layouts = CASES(SHIFT_LAYOUT), .domain = {ANY}, .clones = 1},
    ELT(exp, tw_exp, RANK_CASES, ANY),
    ELT(log, NULL, RANK_CASES, POS),
    ELT(square, tw_square, RANK_CASES, ANY),
    {.name = "pow", .build = b_pow, .composed = tw_pow, .cases = CASES(POW_CASES), .layouts = CASES(POW_LAYOUTS),
     .domain = {ANY}, .clones = 1},
    ELT(sqrt, tw_sqrt, RANK_CASES, POS),
    ELT(sigmoid, tw_sigmoid, RANK_CASES, ANY),
    ELT(tanh, tw_tanh, RANK_CASES, ANY),
    ELT(relu, tw_relu, RANK_CASES, AWAY, AVOID_ZERO),
    {.name = "matmul", .build = b_matmul, .composed = tw_matmul, .cases = CASES(MATMUL_CASES),
     .layouts = CASES(MATMUL_LAYOUT), .domain = {ANY, ANY}, .bad = CASES(MATMUL_BAD), .speed_r = 256,
     .speed_c = 256, .speed_k = 256},
    {.name = "matmul_ex", .msg_name = "matmul", .build = b_matmul_ex, .composed = tw_matmul_ex,
     .cases = CASES(MATMUL_EX_CASES), .layouts = CASES(MATMUL_EX_LAYOUTS), .domain = {ANY, ANY},
     .bad = CASES(MATMUL_EX_BAD), .speed_r = 256, .speed_c = 256, .speed_k = 256},
    {.name = "linear", .build = b_linear, .composed = tw_linear, .cases = CASES(LINEAR_CASES),
     .layouts = CASES(LINEAR_LAYOUTS), .domain = {ANY, ANY, ANY}, .optional_in = 1u << 2,
     .bad = CASES(LINEAR_BAD), .speed_r = 256, .speed_c = 256, .speed_k = 784},
    {.name = "linear_act", .build = b_linear_act, .composed = tw_linear_act, .cases = CASES(LINEAR_ACT_CASES),
     .layouts = CASES(LINEAR_ACT_LAYOUTS), .domain = {ANY, ANY, ANY}, .avoid_dist = 0.05,
     .kink_dist = linear_act_kink, .optional_in = 1u << 2, .bad = CASES(LINEAR_ACT_BAD), .clones = 1,
     .speed_r = 256, .speed_c = 256, .speed_k = 784},
    ELT(sum, tw_sum, RANK_CASES, ANY),
    ELT(mean, tw_mean, RANK_CASES, ANY),
    {.name = "sum_axis", .build = b_sum_axis, .composed = tw_sum_axis, .cases = CASES(AXIS_CASES),
     .layouts = CASES(SUM_AXIS_LAYOUTS), .domain = {ANY}, .bad = CASES(SUM_AXIS_BAD), .clones = 1},
    {.name = "mean_axis", .build = b_mean_axis, .composed = tw_mean_axis, .cases = CASES(AXIS_CASES),
     .layouts = CASES(MEAN_AXIS_LAYOUTS), .domain = {ANY}, .bad = CASES(MEAN_AXIS_BAD), .clones = 1},
    ELT(softmax, tw_softmax, SOFTMAX_CASES, ANY),
    ELT(log_softmax, tw_log_softmax, SOFTMAX_CASES, ANY),
    {.name = "reshape", .build = b_reshape, .cases = CASES(RESHAPE_CASES), .layouts = CASES(RESHAPE_LAYOUT),
     .domain = {ANY}, .bad = CASES(RESHAPE_BAD), .clones = 1},
    ELT(transpose, tw_transpose, TRANSPOSE_CASES, ANY, .bad = CASES(TRANSPOSE_BAD)),
    {.name = "squared_error", .build = b_squared_error, .composed = tw_squared_error, .cases = CASES(SE_CASES),
     .layouts = CASES(SE_LAYOUT), .domain = {ANY, ANY}, .bad = CASES(SE_BAD), .clones = 1},
    {.name = "l2", .build = b_l2, .composed = tw_l2, .cases = CASES(L2_CASES), .layouts = CASES(L2_LAYOUT),
     .domain = {ANY, ANY, ANY}, .bad = CASES(L2_BAD), .clones = 1},
    {.name = "cross_entropy", .build = b_cross_entropy, .composed = tw_cross_entropy, .cases = CASES(CE_CASES),
     .layouts = CASES(RC_LAYOUT), .domain = {ANY}, .labels = 1, .bad = CASES(CE_BAD), .clones = 1},
};
const size_t op_records_first_wave_n = LEN(op_records_first_wave);

/* ---------------------------------------------------------------- the registry
 * A family of ops keeps its records in tests/ops/records/<family>.c, defining
 * op_records_<family>[] and op_records_<family>_n; adding a family is its line here. The first
 * wave's records are the table above. Order is the order of ctest entries and bench lines. */
#define OP_FAMILIES(X) \
    X(first_wave) \
    X(functions) \
    X(losses) \
    X(bmm) \
    X(norm) \
    X(views) \
    X(index) \
    X(compare)

#define OP_FAMILY_DECL(f) extern const op_record op_records_##f[]; extern const size_t op_records_##f##_n;
OP_FAMILIES(OP_FAMILY_DECL)
#define OP_FAMILY_ROW(f) {op_records_##f, &op_records_##f##_n},
static const struct {
    const op_record *records;
    const size_t *n;
} families[] = {OP_FAMILIES(OP_FAMILY_ROW)};

size_t op_record_count(void) {
    size_t n = 0;
    for (size_t f = 0; f < LEN(families); f++) n += *families[f].n;
    return n;
}

const op_record *op_record_at(size_t i) {
    for (size_t f = 0; f < LEN(families); f++) {
        if (i < *families[f].n) return &families[f].records[i];
        i -= *families[f].n;
    }
    return NULL;
}

/* ---------------------------------------------------------------- helpers */

const op_record *op_record_find(const char *name) {
    for (size_t i = 0, n = op_record_count(); name && i < n; i++)
        if (strcmp(op_record_at(i)->name, name) == 0) return op_record_at(i);
    return NULL;
}

op_shape op_shape_at(op_shape s, size_t R, size_t C, size_t K) {
    for (int i = 0; i < s.ndim && i < AG_MAX_DIMS; i++)
        s.d[i] = s.d[i] == OP_R ? R : s.d[i] == OP_C ? C : s.d[i] == OP_K ? K : s.d[i];
    return s;
}

op_domain op_domain_of(const op_record *r, const op_case *c, int i) {
    op_domain d = c && c->domain ? c->domain[i] : r->domain[i];
    if (d.lo == 0 && d.hi == 0) d = DOM_ANY;
    return d;
}

void op_label_dims(const op_shape *s, size_t *rows, size_t *classes) { /* rows: every axis but the last */
    *classes = s->ndim == 0 ? 1 : s->d[s->ndim - 1];
    *rows = 1;
    for (int i = 0; i + 1 < s->ndim; i++) *rows *= s->d[i];
}

int op_int_dims(const op_record *r, const op_shape *in, const void *param, size_t *count, size_t *range) {
    *count = *range = 0;
    if (r->index_count) *count = r->index_count(in, param, range);
    else if (r->labels) op_label_dims(&in[0], count, range);
    else return 0;
    return 1;
}

double op_tol_float(const op_record *r) { return r->tol_float > 0 ? r->tol_float : OP_TOL_FLOAT; }

/*
 * records/bmm.c - the batched product ag_bmm, and add with a per-channel bias (the broadcast
 * backward that reduces a gradient over repeated axes, at the shapes of a convolutional bias).
 * See op_records.h for what a record holds.
 */
#include "records.h"

/* ---------------------------------------------------------------- bmm */

typedef struct bmm_tr {
    int a, b;
} bmm_tr;
static const bmm_tr TR[4] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};

static ag_tensor *b_bmm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const bmm_tr tr = P(c, bmm_tr);
    return ag_bmm(t, in[0], in[1], tr.a, tr.b);
}

/* A constant of shape [d..]: ones, or (identity) the r x r identity seen as 1 x r x 1 x r. */
static ag_tensor *constant(ag_tape *t, int nd, const size_t *shape, int identity) {
    ag_tensor *x = ag_tensor_new(t, nd, shape);
    if (!x) return NULL;
    const size_t r = shape[nd - 1];
    for (size_t i = 0; i < x->size; i++) x->value[i] = !identity || i / r == i % r;
    return x;
}

/* X (nb x r x c) transposed matrix by matrix: Y[b, j, i] = sum_l X[b, l, j] I[l, i] (exact: one
 * product by 1, the rest by 0). */
static ag_tensor *batch_t(ag_tape *t, ag_tensor *x) {
    if (!x) return NULL;
    const size_t nb = x->shape[0], r = x->shape[1], c = x->shape[2];
    ag_tensor *I = constant(t, 4, (size_t[]){1, r, 1, r}, 1);
    ag_tensor *p = ag_mul(t, ag_reshape(t, x, 4, (size_t[]){nb, r, c, 1}), I); /* nb x l x c x i */
    return ag_sum_axis(t, p, 1);
}

/* x repeated along the batch axes of C (o, right-aligned in 2 axes, nd its rank), then seen as
 * nb x rows x cols: a product by ones (exact), and a reshape. */
static ag_tensor *expand(ag_tape *t, ag_tensor *x, const size_t o[2], int nd) {
    const size_t r = x->shape[x->ndim - 2], c = x->shape[x->ndim - 1];
    size_t sh[4];
    for (int i = 0; i < nd - 2; i++) sh[i] = o[2 - (nd - 2) + i];
    sh[nd - 2] = sh[nd - 1] = 1;
    if (nd > 2) x = ag_mul(t, x, constant(t, nd, sh, 0));
    return ag_reshape(t, x, 3, (size_t[]){o[0] * o[1], r, c});
}

/* The same product from mul and sum_axis: both operands repeated to C's batch, the transposes made
 * by batch_t, then C[b, i, j] = sum_k A[b, i, k, 1] B[b, 1, k, j]. */
static ag_tensor *tw_bmm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const bmm_tr tr = P(c, bmm_tr);
    ag_tensor *a = in[0], *b = in[1];
    const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    size_t o[2] = {1, 1};
    for (int k = 0; k < 2; k++) {
        const int ia = a->ndim - 4 + k, ib = b->ndim - 4 + k; /* batch axis k of 2, right-aligned */
        const size_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        o[k] = da > db ? da : db;
    }
    ag_tensor *A = expand(t, a, o, nd), *B = expand(t, b, o, nd);
    if (tr.a) A = batch_t(t, A);
    if (tr.b) B = batch_t(t, B);
    if (!A || !B) return NULL;
    const size_t nb = A->shape[0], m = A->shape[1], k = A->shape[2], n = B->shape[2];
    ag_tensor *p = ag_mul(t, ag_reshape(t, A, 4, (size_t[]){nb, m, k, 1}), ag_reshape(t, B, 4, (size_t[]){nb, 1, k, n}));
    ag_tensor *C = ag_sum_axis(t, p, 2); /* nb x m x n */
    size_t sh[4];
    for (int i = 0; i < nd - 2; i++) sh[i] = o[2 - (nd - 2) + i];
    sh[nd - 2] = m;
    sh[nd - 1] = n;
    return ag_reshape(t, C, nd, sh);
}

/* every transpose in 3-D; 4-D; batch axes repeated on either side or both; a 2-D operand on either
 * side (the folded path when it is B); a batch of 1 */
static const op_case BMM_CASES[] = {
    {"nn 2x3x4 2x4x5", 2, {SHP(3, 2, 3, 4), SHP(3, 2, 4, 5)}, &TR[0], NULL},
    {"nt 2x3x4 2x5x4", 2, {SHP(3, 2, 3, 4), SHP(3, 2, 5, 4)}, &TR[1], NULL},
    {"tn 2x4x3 2x4x5", 2, {SHP(3, 2, 4, 3), SHP(3, 2, 4, 5)}, &TR[2], NULL},
    {"tt 2x4x3 2x5x4", 2, {SHP(3, 2, 4, 3), SHP(3, 2, 5, 4)}, &TR[3], NULL},
    {"nn 2x3x2x4 2x3x4x3", 2, {SHP(4, 2, 3, 2, 4), SHP(4, 2, 3, 4, 3)}, &TR[0], NULL},
    {"nt 1x3x2x4 2x1x3x4", 2, {SHP(4, 1, 3, 2, 4), SHP(4, 2, 1, 3, 4)}, &TR[1], NULL},
    {"tn 2x1x4x3 3x4x2", 2, {SHP(4, 2, 1, 4, 3), SHP(3, 3, 4, 2)}, &TR[2], NULL},
    {"nn 3x2x4 1x4x2", 2, {SHP(3, 3, 2, 4), SHP(3, 1, 4, 2)}, &TR[0], NULL},
    {"nn 2x3x4 4x5", 2, {SHP(3, 2, 3, 4), SHP(2, 4, 5)}, &TR[0], NULL},
    {"nt 2x2x3x4 5x4", 2, {SHP(4, 2, 2, 3, 4), SHP(2, 5, 4)}, &TR[1], NULL},
    {"nn 3x4 2x4x5", 2, {SHP(2, 3, 4), SHP(3, 2, 4, 5)}, &TR[0], NULL},
    {"tt 4x3 2x2x5x4", 2, {SHP(2, 4, 3), SHP(4, 2, 2, 5, 4)}, &TR[3], NULL},
    {"tn 1x4x3 1x4x2 (batch 1)", 2, {SHP(3, 1, 4, 3), SHP(3, 1, 4, 2)}, &TR[2], NULL},
    {"nn 3x4 4x2 (2-D)", 2, {SHP(2, 3, 4), SHP(2, 4, 2)}, &TR[0], NULL},
};
/* speed (R = 32, C = 64, K = 16): 32 x 4 products of C x C x C (128 of 64^3); the attention scores
 * Q K^T of 32 x 4 heads of K x K (16^3); a batch against one matrix (the folded path). The batch is
 * R x 4, not a literal 128 or 32 x 4, so the gradient check at R = 3 stays small (valgrind). */
static const op_case BMM_LAYOUTS[] = {
    {"Rx4xCxC Rx4xCxC", 2, {SHP(4, OP_R, 4, OP_C, OP_C), SHP(4, OP_R, 4, OP_C, OP_C)}, &TR[0], NULL},
    {"nt Rx4xKxK Rx4xKxK", 2, {SHP(4, OP_R, 4, OP_K, OP_K), SHP(4, OP_R, 4, OP_K, OP_K)}, &TR[1], NULL},
    {"Rx4xCxK KxC", 2, {SHP(4, OP_R, 4, OP_C, OP_K), SHP(2, OP_K, OP_C)}, &TR[0], NULL},
};
#define BAD2T(what, a, b, tr, m) {what, 2, {a, b}, &TR[tr], NULL, 0, AG_ERR_SHAPE, m}
static const op_bad BMM_BAD[] = {
    BAD2T("inner sizes differ", SHP(3, 2, 3, 4), SHP(3, 2, 5, 2), 0, "a is 2x3x4 but b is 2x5x2: inner sizes 4 and 5"),
    BAD2T("a^T inner differ", SHP(3, 2, 4, 3), SHP(3, 2, 3, 2), 2, "a is 2x4x3 (transposed) but b is 2x3x2"),
    BAD2T("batch does not broadcast", SHP(3, 2, 3, 4), SHP(3, 3, 4, 2), 0, "batch axes of a 2x3x4 and b 3x4x2 do not broadcast"),
    BAD2T("4-D batch does not broadcast", SHP(4, 2, 3, 3, 4), SHP(4, 3, 3, 4, 2), 0, "2x3x3x4 and b 3x3x4x2"),
    BAD2T("1-D a", SHP(1, 4), SHP(3, 2, 4, 2), 0, "a is 4 and b is 2x4x2, both must have 2 to 4 dims"),
    BAD2T("scalar b", SHP(2, 3, 4), S0, 0, "b is scalar"),
};

/* ---------------------------------------------------------------- add with a channel bias */

static ag_tensor *b_add(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_add(t, in[0], in[1]);
}
static ag_tensor *tw_add(ag_tape *t, ag_tensor *const *in, const void *c) { /* a - (-b) */
    (void)c;
    return ag_sub(t, in[0], ag_neg(t, in[1]));
}
static const op_case BIAS_CASES[] = {
    {"2x3x4x5,3x1x1", 2, {SHP(4, 2, 3, 4, 5), SHP(3, 3, 1, 1)}, NULL, NULL},
    {"2x3x4x5,1x3x1x1", 2, {SHP(4, 2, 3, 4, 5), SHP(4, 1, 3, 1, 1)}, NULL, NULL},
    {"3x1x1,2x3x2x2", 2, {SHP(3, 3, 1, 1), SHP(4, 2, 3, 2, 2)}, NULL, NULL},
    {"2x3x4x5,1x1x5", 2, {SHP(4, 2, 3, 4, 5), SHP(3, 1, 1, 5)}, NULL, NULL},
    {"2x3x4x5,2x1x4x1", 2, {SHP(4, 2, 3, 4, 5), SHP(4, 2, 1, 4, 1)}, NULL, NULL},
};
/* N x C x H x W = K x K x R x R (the hash test's sizes then stay small): the speed shape is
 * 32x32x28x28 */
static const op_case BIAS_LAYOUTS[] = {
    {"KxKxRxR,Kx1x1", 2, {SHP(4, OP_K, OP_K, OP_R, OP_R), SHP(3, OP_K, 1, 1)}, NULL, NULL},
    {"KxKxRxR,1xKx1x1", 2, {SHP(4, OP_K, OP_K, OP_R, OP_R), SHP(4, 1, OP_K, 1, 1)}, NULL, NULL},
    {"KxKxRxR,KxKxRxR", 2, {SHP(4, OP_K, OP_K, OP_R, OP_R), SHP(4, OP_K, OP_K, OP_R, OP_R)}, NULL, NULL},
};

const op_record op_records_bmm[] = {
    {.name = "bmm", .build = b_bmm, .composed = tw_bmm, .cases = CASES(BMM_CASES), .layouts = CASES(BMM_LAYOUTS),
     .domain = {ANY, ANY}, .bad = CASES(BMM_BAD), .speed_r = 32, .speed_c = 64, .speed_k = 16},
    {.name = "add_bias", .msg_name = "add", .build = b_add, .composed = tw_add, .cases = CASES(BIAS_CASES),
     .layouts = CASES(BIAS_LAYOUTS), .domain = {ANY, ANY}, .clones = 1, .speed_r = 28, .speed_c = 28,
     .speed_k = 32},
};
const size_t op_records_bmm_n = LEN(op_records_bmm);

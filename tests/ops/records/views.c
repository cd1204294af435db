/*
 * views.c - the records of the shape, view, slicing and joining ops (autograd/ops/shape.c and
 * autograd/ops/join.c): squeeze, unsqueeze, flatten, permute, transpose_axes, broadcast_to, slice,
 * split, chunk, concat, stack, pad. See op_records.h for what a record holds.
 *
 * Twins: the views against reshape; permute and transpose_axes against each other; slice through
 * a 0/1 selection matrix (matmul); split and chunk against slices; concat against padded inputs
 * added up; stack against unsqueeze + concat; pad against concat with constant blocks; broadcast_to
 * against add of zeros. split and chunk return several tensors: their builders join the pieces
 * back in reverse order (concat), so every piece's gradient is checked.
 * Layouts whose sizes a parameter must follow (slice, split, chunk) take the parameter as a
 * fraction of the axis (`parts`), as OP_R/OP_C resolve only in shapes.
 */
#include "records.h"

#include <limits.h>
#include <stdint.h>

/* ---------------------------------------------------------------- helpers */

static int norm_axis(int a, int nd) { return a < 0 ? a + nd : a; }

/* x with the given axis moved last: the permutation, and its inverse applied to a result */
static void axis_last_perm(int nd, int axis, int *perm, int *inv) {
    for (int i = 0, j = 0; i < nd; i++)
        if (i != axis) perm[j++] = i;
    perm[nd - 1] = axis;
    for (int j = 0; j < nd; j++) inv[perm[j]] = j;
}

/* a leaf of the shape filled with v (no gradient) */
static ag_tensor *constant(ag_tape *t, int nd, const size_t *shape, ag_real v) {
    ag_tensor *c = ag_tensor_new(t, nd, shape);
    for (size_t i = 0; c && i < c->size; i++) c->value[i] = v;
    return c;
}

/* ---------------------------------------------------------------- squeeze, unsqueeze, flatten */

static const int AX[9] = {-4, -3, -2, -1, 0, 1, 2, 3, 4};
#define AXP(a) (&AX[(a) + 4])

static ag_tensor *b_squeeze(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_squeeze(t, in[0], P(c, int));
}
static ag_tensor *tw_squeeze(ag_tape *t, ag_tensor *const *in, const void *c) { /* reshape without the axis */
    const ag_tensor *x = in[0];
    const int a = norm_axis(P(c, int), x->ndim);
    size_t d[AG_MAX_DIMS];
    for (int i = 0, j = 0; i < x->ndim; i++)
        if (i != a) d[j++] = x->shape[i];
    return ag_reshape(t, in[0], x->ndim - 1, d);
}
static const op_case SQUEEZE_CASES[] = {
    {"3x1x4 axis 1", 1, {SHP(3, 3, 1, 4)}, AXP(1), NULL},
    {"1x5 axis 0", 1, {SHP(2, 1, 5)}, AXP(0), NULL},
    {"2x3x4x1 axis -1", 1, {SHP(4, 2, 3, 4, 1)}, AXP(-1), NULL},
    {"2x1x3x1 axis -3", 1, {SHP(4, 2, 1, 3, 1)}, AXP(-3), NULL},
    {"1 axis 0 (to a scalar)", 1, {SHP(1, 1)}, AXP(0), NULL},
};
static const op_case SQUEEZE_LAYOUT[] = {{"Rx1xC axis 1", 1, {SHP(3, OP_R, 1, OP_C)}, AXP(1), NULL}};
static const op_bad SQUEEZE_BAD[] = {
    {"axis of size 3", 1, {SHP(2, 2, 3)}, AXP(1), NULL, 0, AG_ERR_SHAPE, "axis 1 of 2x3 has size 3, not 1"},
    {"axis 2 of 2-D", 1, {SHP(2, 2, 1)}, AXP(2), NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x1"},
    {"axis -3 of 2-D", 1, {SHP(2, 1, 1)}, AXP(-3), NULL, 0, AG_ERR_SHAPE, "axis -3 is out of range for 1x1"},
    {"scalar", 1, {S0}, AXP(0), NULL, 0, AG_ERR_SHAPE, "axis 0 is out of range for scalar"},
};

static ag_tensor *b_unsqueeze(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_unsqueeze(t, in[0], P(c, int));
}
static ag_tensor *tw_unsqueeze(ag_tape *t, ag_tensor *const *in, const void *c) { /* reshape with a 1 */
    const ag_tensor *x = in[0];
    const int a = norm_axis(P(c, int), x->ndim + 1);
    size_t d[AG_MAX_DIMS];
    for (int i = 0, j = 0; i <= x->ndim; i++) d[i] = i == a ? 1 : x->shape[j++];
    return ag_reshape(t, in[0], x->ndim + 1, d);
}
static const op_case UNSQUEEZE_CASES[] = {
    {"3x4 axis 0", 1, {SHP(2, 3, 4)}, AXP(0), NULL},
    {"3x4 axis 1", 1, {SHP(2, 3, 4)}, AXP(1), NULL},
    {"3x4 axis -1", 1, {SHP(2, 3, 4)}, AXP(-1), NULL},
    {"scalar axis 0", 1, {S0}, AXP(0), NULL},
    {"2x3x4 axis 3", 1, {SHP(3, 2, 3, 4)}, AXP(3), NULL},
    {"2x3x4 axis -4", 1, {SHP(3, 2, 3, 4)}, AXP(-4), NULL},
};
static const op_case UNSQUEEZE_LAYOUT[] = {{"RxC axis 1", 1, {SHP(2, OP_R, OP_C)}, AXP(1), NULL}};
static const op_bad UNSQUEEZE_BAD[] = {
    {"4-D", 1, {SHP(4, 2, 1, 3, 2)}, AXP(0), NULL, 0, AG_ERR_SHAPE, "x is 2x1x3x2, already 4 dimensions"},
    {"axis 3 of 2-D", 1, {SHP(2, 3, 4)}, AXP(3), NULL, 0, AG_ERR_SHAPE, "axis 3 is out of range for 3x4"},
    {"axis -4 of 2-D", 1, {SHP(2, 3, 4)}, AXP(-4), NULL, 0, AG_ERR_SHAPE, "axis -4 is out of range for 3x4"},
    {"axis INT_MIN", 1, {SHP(2, 3, 4)}, (const int[]){INT_MIN}, NULL, 0, AG_ERR_SHAPE,
     "out of range for 3x4"},
};

typedef struct axis_pair {
    int a, b;
} axis_pair;
static ag_tensor *b_flatten(ag_tape *t, ag_tensor *const *in, const void *c) {
    const axis_pair p = P(c, axis_pair);
    return ag_flatten(t, in[0], p.a, p.b);
}
static ag_tensor *tw_flatten(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ag_tensor *x = in[0];
    const int nd = x->ndim ? x->ndim : 1;
    const int a = norm_axis(P(c, axis_pair).a, nd), b = norm_axis(P(c, axis_pair).b, nd);
    size_t d[AG_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < a; i++) d[j++] = x->shape[i];
    d[j] = 1;
    for (int i = a; i <= b; i++) d[j] *= x->shape[i];
    j++;
    for (int i = b + 1; i < x->ndim; i++) d[j++] = x->shape[i];
    return ag_reshape(t, in[0], j, d);
}
static const axis_pair FL[] = {{0, -1}, {1, 2}, {-3, -1}, {1, 1}, {0, 0}, {-2, 1}, {2, 1}, {0, 3}, {1, -1}};
static const op_case FLATTEN_CASES[] = {
    {"2x3x4 0..-1", 1, {SHP(3, 2, 3, 4)}, &FL[0], NULL},
    {"2x3x4x5 1..2", 1, {SHP(4, 2, 3, 4, 5)}, &FL[1], NULL},
    {"2x3x4x5 -3..-1", 1, {SHP(4, 2, 3, 4, 5)}, &FL[2], NULL},
    {"3x4 1..1", 1, {SHP(2, 3, 4)}, &FL[3], NULL},
    {"scalar 0..0", 1, {S0}, &FL[4], NULL},
    {"5 0..0", 1, {SHP(1, 5)}, &FL[4], NULL},
    {"3x1x4 -2..1", 1, {SHP(3, 3, 1, 4)}, &FL[5], NULL},
};
static const op_case FLATTEN_LAYOUT[] = {{"RxCxK 1..-1", 1, {SHP(3, OP_R, OP_C, OP_K)}, &FL[8], NULL}};
static const op_bad FLATTEN_BAD[] = {
    {"start after end", 1, {SHP(3, 2, 3, 4)}, &FL[6], NULL, 0, AG_ERR_SHAPE,
     "start axis 2 comes after end axis 1 in 2x3x4"},
    {"end axis 3 of 3-D", 1, {SHP(3, 2, 3, 4)}, &FL[7], NULL, 0, AG_ERR_SHAPE,
     "axis 3 is out of range for 2x3x4"},
};

/* ---------------------------------------------------------------- permute, transpose_axes */

typedef struct perm_arg {
    int p[AG_MAX_DIMS];
    int null;
} perm_arg;
static ag_tensor *b_permute(ag_tape *t, ag_tensor *const *in, const void *c) {
    const perm_arg *a = CALL(c)->param;
    return ag_permute(t, in[0], a->null ? NULL : a->p);
}
/* the permutation as swaps (selection sort), each a transpose_axes */
static ag_tensor *tw_permute(ag_tape *t, ag_tensor *const *in, const void *c) {
    const perm_arg *a = CALL(c)->param;
    const int nd = in[0]->ndim;
    int cur[AG_MAX_DIMS]; /* source axis now at each position */
    for (int i = 0; i < nd; i++) cur[i] = i;
    ag_tensor *y = in[0];
    for (int j = 0; j < nd; j++) {
        const int want = norm_axis(a->p[j], nd);
        int i = j;
        while (cur[i] != want) i++;
        if (i == j) continue;
        y = ag_transpose_axes(t, y, i, j);
        const int s = cur[i];
        cur[i] = cur[j];
        cur[j] = s;
    }
    return y == in[0] ? ag_reshape(t, y, y->ndim, y->shape) : y;
}
static const perm_arg PM[] = {
    {{1, 0}, 0},       {{2, 0, 1}, 0},    {{0, 2, 1, 3}, 0}, {{3, 1, 0, 2}, 0}, {{-1, 0, -2}, 0},
    {{1, 0, 3, 2}, 0}, {{0}, 0},          {{0, 0, 1}, 0},    {{0, 3}, 0},       {{0}, 1},
    {{1, 2, 3, 0}, 0}, {{-4, 1, 2}, 0},
};
static const op_case PERMUTE_CASES[] = {
    {"2x3 (1,0)", 1, {SHP(2, 2, 3)}, &PM[0], NULL},
    {"2x3x4 (2,0,1)", 1, {SHP(3, 2, 3, 4)}, &PM[1], NULL},
    {"2x3x4x5 (0,2,1,3)", 1, {SHP(4, 2, 3, 4, 5)}, &PM[2], NULL},
    {"2x3x4x5 (3,1,0,2)", 1, {SHP(4, 2, 3, 4, 5)}, &PM[3], NULL},
    {"3x1x4 (-1,0,-2)", 1, {SHP(3, 3, 1, 4)}, &PM[4], NULL},
    {"2x1x3x1 (1,0,3,2) a view", 1, {SHP(4, 2, 1, 3, 1)}, &PM[5], NULL},
    {"5 (0)", 1, {SHP(1, 5)}, &PM[6], NULL},
    {"17x19 (1,0) tiles", 1, {SHP(2, 17, 19)}, &PM[0], NULL},
    {"3x2x18x17 (1,2,3,0)", 1, {SHP(4, 3, 2, 18, 17)}, &PM[10], NULL},
    {"scalar, perm NULL", 1, {S0}, &PM[9], NULL},
};
/* attention's head split: B x T x H x D -> B x H x T x D (bench: 32 x 64 x 8 x 16) */
static const op_case PERMUTE_LAYOUTS[] = {
    {"RxCxKx16 (0,2,1,3)", 1, {SHP(4, OP_R, OP_C, OP_K, 16)}, &PM[2], NULL},
    {"RxC (1,0)", 1, {SHP(2, OP_R, OP_C)}, &PM[0], NULL},
};
static const op_bad PERMUTE_BAD[] = {
    {"repeated axis", 1, {SHP(3, 2, 3, 4)}, &PM[7], NULL, 0, AG_ERR_SHAPE,
     "perm (0, 0, 1) is not a permutation of the 3 axes of 2x3x4"},
    {"axis 3 of 2-D", 1, {SHP(2, 2, 3)}, &PM[8], NULL, 0, AG_ERR_SHAPE,
     "perm (0, 3) is not a permutation of the 2 axes of 2x3"},
    {"axis -4 of 3-D", 1, {SHP(3, 2, 3, 4)}, &PM[11], NULL, 0, AG_ERR_SHAPE, "perm (-4, 1, 2)"},
    {"perm NULL", 1, {SHP(2, 2, 3)}, &PM[9], NULL, 0, AG_ERR_ARG, "perm is NULL for 2x3"},
};

static ag_tensor *b_transpose_axes(ag_tape *t, ag_tensor *const *in, const void *c) {
    const axis_pair p = P(c, axis_pair);
    return ag_transpose_axes(t, in[0], p.a, p.b);
}
static ag_tensor *tw_transpose_axes(ag_tape *t, ag_tensor *const *in, const void *c) {
    const int nd = in[0]->ndim, a = norm_axis(P(c, axis_pair).a, nd), b = norm_axis(P(c, axis_pair).b, nd);
    if (nd == 2 && a != b) return ag_transpose(t, in[0]);
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < nd; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return ag_permute(t, in[0], perm);
}
static const axis_pair TA[] = {{0, 1}, {0, 2}, {1, 2}, {-1, -3}, {1, 1}, {-1, 0}, {3, 0}, {0, -4}};
static const op_case TRANSPOSE_AXES_CASES[] = {
    {"3x4 (0,1)", 1, {SHP(2, 3, 4)}, &TA[0], NULL},
    {"2x3x4 (0,2)", 1, {SHP(3, 2, 3, 4)}, &TA[1], NULL},
    {"2x3x4x5 (1,2)", 1, {SHP(4, 2, 3, 4, 5)}, &TA[2], NULL},
    {"2x3x4 (-1,-3)", 1, {SHP(3, 2, 3, 4)}, &TA[3], NULL},
    {"2x3x4 (1,1)", 1, {SHP(3, 2, 3, 4)}, &TA[4], NULL},
    {"2x3x4x5 (-1,0)", 1, {SHP(4, 2, 3, 4, 5)}, &TA[5], NULL},
};
static const op_case TRANSPOSE_AXES_LAYOUTS[] = {
    {"RxCxKx16 (1,2)", 1, {SHP(4, OP_R, OP_C, OP_K, 16)}, &TA[2], NULL},
};
static const op_bad TRANSPOSE_AXES_BAD[] = {
    {"axis 3 of 3-D", 1, {SHP(3, 2, 3, 4)}, &TA[6], NULL, 0, AG_ERR_SHAPE,
     "axis 3 is out of range for 2x3x4"},
    {"axis -4 of 3-D", 1, {SHP(3, 2, 3, 4)}, &TA[7], NULL, 0, AG_ERR_SHAPE,
     "axis -4 is out of range for 2x3x4"},
    {"scalar", 1, {S0}, &TA[0], NULL, 0, AG_ERR_SHAPE, "scalar"},
};

/* ---------------------------------------------------------------- broadcast_to */

/* the target: literal sizes, or OP_R/OP_C/OP_K taken from x's size at the same (right-aligned) place */
typedef struct bto_arg {
    int ndim;
    size_t shape[AG_MAX_DIMS];
    int null;
} bto_arg;
static void bto_target(const ag_tensor *x, const bto_arg *a, size_t *d) {
    for (int i = 0; i < a->ndim && i < AG_MAX_DIMS; i++) { /* the rank-5 bad call: the op reads none */
        const int j = i - (a->ndim - x->ndim);
        d[i] = a->shape[i] >= OP_K && j >= 0 ? x->shape[j] : a->shape[i];
    }
}
static ag_tensor *b_broadcast_to(ag_tape *t, ag_tensor *const *in, const void *c) {
    const bto_arg *a = CALL(c)->param;
    size_t d[AG_MAX_DIMS] = {1, 1, 1, 1};
    if (in && in[0]) bto_target(in[0], a, d);
    return ag_broadcast_to(t, in ? in[0] : NULL, a->ndim, a->null ? NULL : d);
}
static ag_tensor *tw_broadcast_to(ag_tape *t, ag_tensor *const *in, const void *c) { /* x + zeros */
    const bto_arg *a = CALL(c)->param;
    size_t d[AG_MAX_DIMS];
    bto_target(in[0], a, d);
    return ag_add(t, in[0], constant(t, a->ndim, d, 0));
}
static const bto_arg BT[] = {
    {2, {3, 4}, 0},       {2, {3, 4}, 0},    {3, {2, 3, 4}, 0}, {2, {2, 3}, 0},       {4, {2, 4, 3, 5}, 0},
    {3, {1, 1, 3}, 0},    {1, {5}, 0},       {3, {2, 2, 3}, 0}, {3, {OP_R, 8, OP_C}, 0}, {2, {3, 5}, 0},
    {1, {3}, 0},          {5, {1, 1, 1, 1}, 0}, {2, {3, 4}, 1}, {2, {4, 1}, 0},
};
static const op_case BROADCAST_TO_CASES[] = {
    {"4 to 3x4", 1, {SHP(1, 4)}, &BT[0], NULL},
    {"3x1 to 3x4", 1, {SHP(2, 3, 1)}, &BT[1], NULL},
    {"1x4 to 2x3x4", 1, {SHP(2, 1, 4)}, &BT[2], NULL},
    {"scalar to 2x3", 1, {S0}, &BT[3], NULL},
    {"2x1x3x1 to 2x4x3x5", 1, {SHP(4, 2, 1, 3, 1)}, &BT[4], NULL},
    {"3 to 1x1x3 (a view)", 1, {SHP(1, 3)}, &BT[5], NULL},
    {"1 to 5", 1, {SHP(1, 1)}, &BT[6], NULL},
    {"2x1x3 to 2x2x3", 1, {SHP(3, 2, 1, 3)}, &BT[7], NULL},
    {"3x4 to 3x4", 1, {SHP(2, 3, 4)}, &BT[0], NULL},
};
/* a per-row feature repeated over heads: R x 1 x C -> R x 8 x C */
static const op_case BROADCAST_TO_LAYOUT[] = {{"Rx1xC to Rx8xC", 1, {SHP(3, OP_R, 1, OP_C)}, &BT[8], NULL}};
static const op_bad BROADCAST_TO_BAD[] = {
    {"3x4 to 3x5", 1, {SHP(2, 3, 4)}, &BT[9], NULL, 0, AG_ERR_SHAPE, "3x4 does not broadcast to 3x5"},
    {"rank down", 1, {SHP(2, 1, 3)}, &BT[10], NULL, 0, AG_ERR_SHAPE, "1x3 does not broadcast to 3"},
    {"4x2 to 4x1", 1, {SHP(2, 4, 2)}, &BT[13], NULL, 0, AG_ERR_SHAPE, "4x2 does not broadcast to 4x1"},
    {"rank 5", 1, {SHP(1, 3)}, &BT[11], NULL, 0, AG_ERR_ARG, "rank 5 is outside 0..4"},
    {"shape NULL", 1, {SHP(1, 3)}, &BT[12], NULL, 0, AG_ERR_ARG, "shape is NULL"},
};

/* ---------------------------------------------------------------- slice */

typedef struct slice_arg {
    int axis;
    size_t start, len, step;
    int parts; /* > 0: start = len = N / parts (a layout's middle piece), step 1 */
} slice_arg;
static void slice_resolve(const ag_tensor *x, const slice_arg *a, size_t *start, size_t *len, size_t *step) {
    *start = a->start, *len = a->len, *step = a->step;
    if (a->parts > 0 && x) {
        const size_t N = x->shape[norm_axis(a->axis, x->ndim)];
        *start = *len = N / (size_t)a->parts, *step = 1;
    }
}
static ag_tensor *b_slice(ag_tape *t, ag_tensor *const *in, const void *c) {
    const slice_arg *a = CALL(c)->param;
    size_t start, len, step;
    slice_resolve(in[0], a, &start, &len, &step);
    return ag_slice(t, in[0], a->axis, start, len, step);
}
/* y = moveaxis(x, axis, -1) S^T with S[l, start + l step] = 1, and the axis moved back */
static ag_tensor *tw_slice(ag_tape *t, ag_tensor *const *in, const void *c) {
    const slice_arg *a = CALL(c)->param;
    const ag_tensor *x = in[0];
    const int nd = x->ndim, axis = norm_axis(a->axis, nd);
    size_t start, len, step;
    slice_resolve(x, a, &start, &len, &step);
    const size_t N = x->shape[axis], M = x->size / N;
    int perm[AG_MAX_DIMS], inv[AG_MAX_DIMS];
    axis_last_perm(nd, axis, perm, inv);
    ag_tensor *xl = ag_permute(t, in[0], perm), *S = constant(t, 2, (size_t[]){len, N}, 0);
    for (size_t l = 0; S && l < len; l++) S->value[l * N + start + l * step] = 1;
    ag_tensor *y = ag_matmul_ex(t, ag_reshape(t, xl, 2, (size_t[]){M, N}), S, 0, 1);
    size_t d[AG_MAX_DIMS];
    for (int j = 0; j < nd; j++) d[j] = xl->shape[j];
    d[nd - 1] = len;
    return ag_permute(t, ag_reshape(t, y, nd, d), inv);
}
static const slice_arg SL[] = {
    {1, 1, 2, 1, 0},  {0, 0, 3, 2, 0}, {-2, 1, 2, 1, 0}, {3, 1, 2, 2, 0}, {0, 1, 2, 1, 0},  {1, 2, 3, 1, 0},
    {0, 1, 1, 5, 0},  {-1, 3, 1, 1, 0}, {-1, 0, 0, 0, 3}, {2, 0, 1, 1, 0}, {1, 3, 1, 1, 0}, {1, 1, 3, 1, 0},
    {1, 0, 2, 0, 0},  {1, 0, 0, 1, 0}, {1, 0, 2, 3, 0},  {-3, 0, 1, 1, 0}, {0, 0, 2, 1, 0},
};
static const op_case SLICE_CASES[] = {
    {"3x4 axis 1 [1:3]", 1, {SHP(2, 3, 4)}, &SL[0], NULL},
    {"5 axis 0 [0:5:2]", 1, {SHP(1, 5)}, &SL[1], NULL},
    {"2x3x4 axis -2 [1:3]", 1, {SHP(3, 2, 3, 4)}, &SL[2], NULL},
    {"2x3x4x5 axis 3 [1:5:2]", 1, {SHP(4, 2, 3, 4, 5)}, &SL[3], NULL},
    {"4x3 axis 0 [1:3] (a view)", 1, {SHP(2, 4, 3)}, &SL[4], NULL},
    {"1x6x2 axis 1 [2:5] (a view)", 1, {SHP(3, 1, 6, 2)}, &SL[5], NULL},
    {"2x3 axis 0 [1] step 5 (a view)", 1, {SHP(2, 2, 3)}, &SL[6], NULL},
    {"3x4 axis -1 [3]", 1, {SHP(2, 3, 4)}, &SL[7], NULL},
    {"3x2x2x4 axis 0 [0:2] (a view)", 1, {SHP(4, 3, 2, 2, 4)}, &SL[16], NULL},
};
/* the key's third of a fused q|k|v projection: R x 3C, columns C..2C (bench: 256 x 3072) */
static const op_case SLICE_LAYOUTS[] = {
    {"RxC axis -1, middle third", 1, {SHP(2, OP_R, OP_C)}, &SL[8], NULL},
    {"RxC axis 0, middle third (a view)", 1, {SHP(2, OP_R, OP_C)}, &(const slice_arg){0, 0, 0, 0, 3}, NULL},
};
static const op_bad SLICE_BAD[] = {
    {"axis 2 of 2-D", 1, {SHP(2, 2, 3)}, &SL[9], NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x3"},
    {"axis -3 of 2-D", 1, {SHP(2, 2, 3)}, &SL[15], NULL, 0, AG_ERR_SHAPE, "axis -3 is out of range for 2x3"},
    {"start past the axis", 1, {SHP(2, 2, 3)}, &SL[10], NULL, 0, AG_ERR_SHAPE,
     "start 3 is out of range for axis 1 of 2x3"},
    {"len past the axis", 1, {SHP(2, 2, 3)}, &SL[11], NULL, 0, AG_ERR_SHAPE,
     "start 1, len 3, step 1 runs past axis 1 of 2x3"},
    {"steps past the axis", 1, {SHP(2, 2, 3)}, &SL[14], NULL, 0, AG_ERR_SHAPE,
     "start 0, len 2, step 3 runs past axis 1 of 2x3"},
    {"len SIZE_MAX", 1, {SHP(2, 2, 3)}, &(const slice_arg){1, 0, SIZE_MAX, 1, 0}, NULL, 0, AG_ERR_SHAPE,
     "runs past axis 1 of 2x3"},
    {"step 0", 1, {SHP(2, 2, 3)}, &SL[12], NULL, 0, AG_ERR_ARG, "step is 0, must be >= 1 (x is 2x3)"},
    {"len 0", 1, {SHP(2, 2, 3)}, &SL[13], NULL, 0, AG_ERR_SHAPE, "len is 0 for axis 1 of 2x3"},
};

/* ---------------------------------------------------------------- split, chunk */

/* the pieces joined back in reverse order along the axis */
static ag_tensor *join_reversed(ag_tape *t, ag_tensor **pieces, size_t n, int axis) {
    ag_tensor *rev[OP_MAX_IN * 2];
    for (size_t i = 0; i < n; i++) rev[i] = pieces[n - 1 - i];
    return ag_concat(t, rev, n, axis);
}

typedef struct split_arg {
    int axis;
    size_t n, sizes[4];
    int parts;    /* > 0: n = parts pieces of N / parts (a layout) */
    int null_sizes, null_out;
} split_arg;
static ag_tensor *b_split(ag_tape *t, ag_tensor *const *in, const void *c) {
    const split_arg *a = CALL(c)->param;
    size_t sizes[4], n = a->n;
    for (size_t i = 0; i < 4; i++) sizes[i] = a->sizes[i];
    if (a->parts > 0 && in[0]) {
        n = (size_t)a->parts;
        for (size_t i = 0; i < n; i++) sizes[i] = in[0]->shape[norm_axis(a->axis, in[0]->ndim)] / n;
    }
    ag_tensor *out[4];
    if (ag_split(t, in[0], a->axis, a->null_sizes ? NULL : sizes, n, a->null_out ? NULL : out) != AG_OK)
        return NULL;
    return join_reversed(t, out, n, a->axis);
}
static ag_tensor *tw_split(ag_tape *t, ag_tensor *const *in, const void *c) { /* slices */
    const split_arg *a = CALL(c)->param;
    const size_t N = in[0]->shape[norm_axis(a->axis, in[0]->ndim)];
    const size_t n = a->parts > 0 ? (size_t)a->parts : a->n;
    ag_tensor *out[4];
    for (size_t i = 0, start = 0; i < n; i++) {
        const size_t len = a->parts > 0 ? N / n : a->sizes[i];
        out[i] = ag_slice(t, in[0], a->axis, start, len, 1);
        start += len;
    }
    return join_reversed(t, out, n, a->axis);
}
static const split_arg SP[] = {
    {0, 3, {1, 2, 3}, 0, 0, 0}, {-1, 2, {2, 3}, 0, 0, 0}, {0, 2, {1, 3}, 0, 0, 0}, {2, 3, {1, 1, 2}, 0, 0, 0},
    {1, 1, {4}, 0, 0, 0}, {-1, 0, {0}, 4, 0, 0}, {1, 3, {2, 2, 3}, 0, 0, 0}, {1, 3, {2, 0, 4}, 0, 0, 0},
    {1, 0, {0}, 0, 0, 0}, {1, 2, {3, 3}, 0, 1, 0}, {1, 2, {3, 3}, 0, 0, 1}, {2, 2, {3, 3}, 0, 0, 0},
    {1, 2, {5, 2}, 0, 0, 0},       {1, 2, {2, SIZE_MAX}, 0, 0, 0},
};
static const op_case SPLIT_CASES[] = {
    {"6 [1,2,3]", 1, {SHP(1, 6)}, &SP[0], NULL},
    {"2x5 axis -1 [2,3]", 1, {SHP(2, 2, 5)}, &SP[1], NULL},
    {"4x3 axis 0 [1,3] (views)", 1, {SHP(2, 4, 3)}, &SP[2], NULL},
    {"2x3x4x2 axis 2 [1,1,2]", 1, {SHP(4, 2, 3, 4, 2)}, &SP[3], NULL},
    {"3x4 axis 1 [4]", 1, {SHP(2, 3, 4)}, &SP[4], NULL},
};
static const op_case SPLIT_LAYOUT[] = {{"RxC axis -1, 4 equal", 1, {SHP(2, OP_R, OP_C)}, &SP[5], NULL}};
static const op_bad SPLIT_BAD[] = {
    {"sizes add to 7", 1, {SHP(2, 2, 6)}, &SP[6], NULL, 0, AG_ERR_SHAPE,
     "split: sizes 0..2 add up past axis 1 of 2x6"},
    {"second size past", 1, {SHP(2, 2, 6)}, &SP[12], NULL, 0, AG_ERR_SHAPE,
     "sizes 0..1 add up past axis 1 of 2x6"},
    {"sizes add to 4", 1, {SHP(2, 2, 6)}, &SP[4], NULL, 0, AG_ERR_SHAPE,
     "sizes add up to 4 but axis 1 of 2x6"},
    {"a size 0", 1, {SHP(2, 2, 6)}, &SP[7], NULL, 0, AG_ERR_SHAPE,
     "size 1 is 0 (pieces are not empty; x is 2x6)"},
    {"a size SIZE_MAX", 1, {SHP(2, 2, 6)}, &SP[13], NULL, 0, AG_ERR_SHAPE,
     "sizes 0..1 add up past axis 1 of 2x6"},
    {"n 0", 1, {SHP(2, 2, 6)}, &SP[8], NULL, 0, AG_ERR_ARG, "n is 0"},
    {"sizes NULL", 1, {SHP(2, 2, 6)}, &SP[9], NULL, 0, AG_ERR_ARG, "sizes is NULL"},
    {"out NULL", 1, {SHP(2, 2, 6)}, &SP[10], NULL, 0, AG_ERR_ARG, "out is NULL"},
    {"axis 2 of 2-D", 1, {SHP(2, 2, 6)}, &SP[11], NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x6"},
};

typedef struct chunk_arg {
    int axis;
    size_t n;
    int null_out;
} chunk_arg;
static ag_tensor *b_chunk(ag_tape *t, ag_tensor *const *in, const void *c) {
    const chunk_arg *a = CALL(c)->param;
    ag_tensor *out[8];
    if (ag_chunk(t, in[0], a->axis, a->n, a->null_out ? NULL : out) != AG_OK) return NULL;
    return join_reversed(t, out, a->n, a->axis);
}
/* slices of N/n, the first N%n one longer */
static ag_tensor *tw_chunk(ag_tape *t, ag_tensor *const *in, const void *c) {
    const chunk_arg *a = CALL(c)->param;
    const size_t N = in[0]->shape[norm_axis(a->axis, in[0]->ndim)];
    ag_tensor *out[8];
    for (size_t i = 0, start = 0; i < a->n; i++) {
        const size_t len = N / a->n + (i < N % a->n ? 1 : 0);
        out[i] = ag_slice(t, in[0], a->axis, start, len, 1);
        start += len;
    }
    return join_reversed(t, out, a->n, a->axis);
}
static const chunk_arg CH[] = {{0, 3, 0}, {0, 3, 0}, {-1, 2, 0}, {0, 4, 0}, {-2, 4, 0}, {1, 4, 0},
                               {1, 0, 0}, {1, 7, 0}, {2, 2, 0}, {1, 2, 1}, {0, 1, 0}};
static const op_case CHUNK_CASES[] = {
    {"6 n=3", 1, {SHP(1, 6)}, &CH[0], NULL},
    {"7 n=3 (3,2,2)", 1, {SHP(1, 7)}, &CH[1], NULL},
    {"2x5 axis -1 n=2", 1, {SHP(2, 2, 5)}, &CH[2], NULL},
    {"4x3x2 axis 0 n=4 (views)", 1, {SHP(3, 4, 3, 2)}, &CH[3], NULL},
    {"2x3x5x2 axis -2 n=4", 1, {SHP(4, 2, 3, 5, 2)}, &CH[4], NULL},
    {"3x4 n=1", 1, {SHP(2, 3, 4)}, &CH[10], NULL},
};
static const op_case CHUNK_LAYOUT[] = {{"RxC axis 1 n=4", 1, {SHP(2, OP_R, OP_C)}, &CH[5], NULL}};
static const op_bad CHUNK_BAD[] = {
    {"n 0", 1, {SHP(2, 2, 6)}, &CH[6], NULL, 0, AG_ERR_ARG, "n is 0"},
    {"n past the axis", 1, {SHP(2, 2, 6)}, &CH[7], NULL, 0, AG_ERR_SHAPE, "n is 7 but axis 1 of 2x6 has 6"},
    {"axis 2 of 2-D", 1, {SHP(2, 2, 6)}, &CH[8], NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x6"},
    {"out NULL", 1, {SHP(2, 2, 6)}, &CH[9], NULL, 0, AG_ERR_ARG, "out is NULL"},
};

/* ---------------------------------------------------------------- concat, stack */

typedef struct join_arg {
    int axis;
    int fixed_n; /* pass n below instead of the number of inputs (the bad calls) */
    size_t n;
} join_arg;
static size_t join_n(const void *c) {
    const join_arg *a = CALL(c)->param;
    return a->fixed_n ? a->n : (size_t)CALL(c)->n_in;
}
static ag_tensor *b_concat(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_concat(t, in, join_n(c), P(c, join_arg).axis);
}
/* sum_k pad(x_k, before = the lengths of x_0..x_k-1, after = the rest) along the axis */
static ag_tensor *tw_concat(ag_tape *t, ag_tensor *const *in, const void *c) {
    const int nk = CALL(c)->n_in, nd = in[0]->ndim, axis = norm_axis(P(c, join_arg).axis, nd);
    size_t total = 0, at = 0;
    for (int k = 0; k < nk; k++) total += in[k]->shape[axis];
    ag_tensor *y = NULL;
    for (int k = 0; k < nk; k++) {
        size_t before[AG_MAX_DIMS] = {0}, after[AG_MAX_DIMS] = {0};
        before[axis] = at;
        after[axis] = total - at - in[k]->shape[axis];
        at += in[k]->shape[axis];
        ag_tensor *pk = ag_pad(t, in[k], before, after, 0);
        y = y ? ag_add(t, y, pk) : pk;
    }
    return y;
}
static const join_arg JN[] = {{1, 0, 0}, {0, 0, 0}, {-1, 0, 0}, {2, 0, 0}, {-2, 0, 0},
                              {0, 1, 0}, {0, 1, 65}, {2, 0, 0}, {3, 0, 0}, {-3, 0, 0}};
static const op_case CONCAT_CASES[] = {
    {"3x4,3x2 axis 1", 2, {SHP(2, 3, 4), SHP(2, 3, 2)}, &JN[0], NULL},
    {"2x3,4x3 axis 0", 2, {SHP(2, 2, 3), SHP(2, 4, 3)}, &JN[1], NULL},
    {"2x3x4,2x3x1,2x3x2 axis -1", 3, {SHP(3, 2, 3, 4), SHP(3, 2, 3, 1), SHP(3, 2, 3, 2)}, &JN[2], NULL},
    {"4 x 2x3xNx2 axis 2", 4,
     {SHP(4, 2, 3, 1, 2), SHP(4, 2, 3, 2, 2), SHP(4, 2, 3, 1, 2), SHP(4, 2, 3, 3, 2)}, &JN[3], NULL},
    {"5,3", 2, {SHP(1, 5), SHP(1, 3)}, &JN[1], NULL},
    {"3x4 alone", 1, {SHP(2, 3, 4)}, &JN[1], NULL},
    {"2x2x3,2x1x3 axis -2", 2, {SHP(3, 2, 2, 3), SHP(3, 2, 1, 3)}, &JN[4], NULL},
};
/* 4 heads' outputs joined: 4 x (R x C) along axis 1 (bench: 32 x 256 each) */
static const op_case CONCAT_LAYOUT[] = {
    {"4 x RxC axis 1", 4,
     {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, &JN[0], NULL},
};
static const op_bad CONCAT_BAD[] = {
    {"sizes differ off the axis", 2, {SHP(2, 3, 4), SHP(2, 3, 5)}, &JN[1], NULL, 0, AG_ERR_SHAPE,
     "input 1 is 3x5 but input 0 is 3x4 (they must agree off axis 0)"},
    {"third input differs", 3, {SHP(2, 3, 4), SHP(2, 3, 2), SHP(2, 2, 4)}, &JN[2], NULL, 0, AG_ERR_SHAPE,
     "input 2 is 2x4 but input 0 is 3x4 (they must agree off axis -1)"},
    {"ranks differ", 2, {SHP(2, 3, 4), SHP(1, 4)}, &JN[1], NULL, 0, AG_ERR_SHAPE,
     "input 1 is 4 but input 0 is 3x4"},
    {"axis 2 of 2-D", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[3], NULL, 0, AG_ERR_SHAPE,
     "axis 2 is out of range for 3x4"},
    {"scalars", 2, {S0, S0}, &JN[1], NULL, 0, AG_ERR_SHAPE, "axis 0 is out of range for scalar"},
    {"n 0", 1, {SHP(2, 3, 4)}, &JN[5], NULL, 0, AG_ERR_ARG, "n is 0, expects 1..64 tensors"},
    {"n 65", 1, {SHP(2, 3, 4)}, &JN[6], NULL, 0, AG_ERR_ARG, "n is 65"},
    {"xs NULL", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[1], NULL, OP_NULL_ARRAY, AG_ERR_ARG, "xs is NULL"},
};

static ag_tensor *b_stack(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_stack(t, in, join_n(c), P(c, join_arg).axis);
}
static ag_tensor *tw_stack(ag_tape *t, ag_tensor *const *in, const void *c) { /* unsqueeze each, concat */
    const int nk = CALL(c)->n_in, axis = P(c, join_arg).axis;
    ag_tensor *u[OP_MAX_IN];
    for (int k = 0; k < nk; k++) u[k] = ag_unsqueeze(t, in[k], axis);
    return ag_concat(t, u, (size_t)nk, axis);
}
static const op_case STACK_CASES[] = {
    {"2 x 3x4 axis 0", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[1], NULL},
    {"3 x 3x4 axis -1", 3, {SHP(2, 3, 4), SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[2], NULL},
    {"2 x 5 axis 1", 2, {SHP(1, 5), SHP(1, 5)}, &JN[0], NULL},
    {"4 x 2x3x2 axis 2", 4,
     {SHP(3, 2, 3, 2), SHP(3, 2, 3, 2), SHP(3, 2, 3, 2), SHP(3, 2, 3, 2)}, &JN[3], NULL},
    {"2 x scalar axis 0", 2, {S0, S0}, &JN[1], NULL},
    {"1 x 3 axis -2", 1, {SHP(1, 3)}, &JN[4], NULL},
    {"2 x 2x3x2 axis 3", 2, {SHP(3, 2, 3, 2), SHP(3, 2, 3, 2)}, &JN[8], NULL},
};
static const op_case STACK_LAYOUT[] = {
    {"4 x RxC axis 1", 4,
     {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, &JN[0], NULL},
};
static const op_bad STACK_BAD[] = {
    {"shapes differ", 2, {SHP(2, 3, 4), SHP(2, 3, 5)}, &JN[1], NULL, 0, AG_ERR_SHAPE,
     "input 1 is 3x5 but input 0 is 3x4 (shapes must be equal)"},
    {"ranks differ", 2, {SHP(2, 3, 4), SHP(3, 1, 3, 4)}, &JN[1], NULL, 0, AG_ERR_SHAPE,
     "input 1 is 1x3x4 but input 0 is 3x4"},
    {"4-D inputs", 2, {SHP(4, 2, 1, 3, 2), SHP(4, 2, 1, 3, 2)}, &JN[1], NULL, 0, AG_ERR_SHAPE,
     "inputs are 2x1x3x2, already 4 dimensions"},
    {"axis 3 of 2-D", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[8], NULL, 0, AG_ERR_SHAPE,
     "axis 3 is out of range for 3x4"},
    {"axis -4 of 2-D", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &(const join_arg){-4, 0, 0}, NULL, 0, AG_ERR_SHAPE,
     "axis -4 is out of range for 3x4"},
    {"n 0", 1, {SHP(2, 3, 4)}, &JN[5], NULL, 0, AG_ERR_ARG, "n is 0, expects 1..64 tensors"},
    {"xs NULL", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &JN[1], NULL, OP_NULL_ARRAY, AG_ERR_ARG, "xs is NULL"},
};

/* ---------------------------------------------------------------- pad */

typedef struct pad_arg {
    size_t before[AG_MAX_DIMS], after[AG_MAX_DIMS];
    ag_real value;
    int null;
} pad_arg;
static ag_tensor *b_pad(ag_tape *t, ag_tensor *const *in, const void *c) {
    const pad_arg *a = CALL(c)->param;
    return ag_pad(t, in[0], a->before, a->null ? NULL : a->after, a->value);
}
/* along every padded axis: concat(value block, x, value block) */
static ag_tensor *tw_pad(ag_tape *t, ag_tensor *const *in, const void *c) {
    const pad_arg *a = CALL(c)->param;
    ag_tensor *y = in[0];
    for (int i = 0; y && i < in[0]->ndim; i++) {
        ag_tensor *parts[3];
        size_t n = 0, d[AG_MAX_DIMS];
        for (int j = 0; j < y->ndim; j++) d[j] = y->shape[j];
        if (a->before[i]) d[i] = a->before[i], parts[n++] = constant(t, y->ndim, d, a->value);
        parts[n++] = y;
        if (a->after[i]) d[i] = a->after[i], parts[n++] = constant(t, y->ndim, d, a->value);
        if (n > 1) y = ag_concat(t, parts, n, i);
    }
    return y == in[0] ? ag_reshape(t, y, y->ndim, y->shape) : y;
}
static const pad_arg PD[] = {
    {{1}, {2}, (ag_real)0.5, 0},
    {{1, 2}, {0, 1}, 0, 0},
    {{0, 1, 2}, {1, 1, 0}, -1, 0},
    {{1, 0, 1, 0}, {0, 2, 0, 1}, 2, 0},
    {{0}, {0}, 0, 0},
    {{0, 0, 1, 1}, {0, 0, 1, 1}, 0, 0},
    {{0, 0}, {0, 0}, 0, 1},
    {{0, SIZE_MAX}, {0, 1}, 0, 0},
    {{0, 0, 0}, {0, 0, 3}, 0, 0},
};
static const op_case PAD_CASES[] = {
    {"5 (1,2)", 1, {SHP(1, 5)}, &PD[0], NULL},
    {"3x4 (1,0),(2,1)", 1, {SHP(2, 3, 4)}, &PD[1], NULL},
    {"2x3x4 (0,1),(1,1),(2,0)", 1, {SHP(3, 2, 3, 4)}, &PD[2], NULL},
    {"2x2x3x2 (1,0),(0,2),(1,0),(0,1)", 1, {SHP(4, 2, 2, 3, 2)}, &PD[3], NULL},
    {"scalar", 1, {S0}, &PD[4], NULL},
    {"3x4 no padding", 1, {SHP(2, 3, 4)}, &PD[4], NULL},
    {"1x2x3 last axis only", 1, {SHP(3, 1, 2, 3)}, &PD[8], NULL},
};
/* an image batch padded by 1 around H and W (bench: 32 x 16 x 32 x 32) */
static const op_case PAD_LAYOUT[] = {
    {"RxCxKxK (1,1) on H, W", 1, {SHP(4, OP_R, OP_C, OP_K, OP_K)}, &PD[5], NULL}};
static const op_bad PAD_BAD[] = {
    {"after NULL", 1, {SHP(2, 2, 3)}, &PD[6], NULL, 0, AG_ERR_ARG, "before or after is NULL (x is 2x3)"},
    {"size overflows", 1, {SHP(2, 2, 3)}, &PD[7], NULL, 0, AG_ERR_SHAPE, "padding axis 1 of 2x3 by"},
};

/* ---------------------------------------------------------------- the table */

const op_record op_records_views[] = {
    {.name = "squeeze", .build = b_squeeze, .composed = tw_squeeze, .cases = CASES(SQUEEZE_CASES),
     .layouts = CASES(SQUEEZE_LAYOUT), .domain = {ANY}, .bad = CASES(SQUEEZE_BAD), .clones = 1},
    {.name = "unsqueeze", .build = b_unsqueeze, .composed = tw_unsqueeze, .cases = CASES(UNSQUEEZE_CASES),
     .layouts = CASES(UNSQUEEZE_LAYOUT), .domain = {ANY}, .bad = CASES(UNSQUEEZE_BAD), .clones = 1},
    {.name = "flatten", .build = b_flatten, .composed = tw_flatten, .cases = CASES(FLATTEN_CASES),
     .layouts = CASES(FLATTEN_LAYOUT), .domain = {ANY}, .bad = CASES(FLATTEN_BAD), .clones = 1,
     .speed_r = 32, .speed_c = 64, .speed_k = 128},
    {.name = "permute", .build = b_permute, .composed = tw_permute, .cases = CASES(PERMUTE_CASES),
     .layouts = CASES(PERMUTE_LAYOUTS), .domain = {ANY}, .bad = CASES(PERMUTE_BAD), .clones = 1,
     .speed_r = 32, .speed_c = 64, .speed_k = 8},
    {.name = "transpose_axes", .build = b_transpose_axes, .composed = tw_transpose_axes,
     .cases = CASES(TRANSPOSE_AXES_CASES), .layouts = CASES(TRANSPOSE_AXES_LAYOUTS), .domain = {ANY},
     .bad = CASES(TRANSPOSE_AXES_BAD), .clones = 1, .speed_r = 32, .speed_c = 64, .speed_k = 8},
    {.name = "broadcast_to", .build = b_broadcast_to, .composed = tw_broadcast_to,
     .cases = CASES(BROADCAST_TO_CASES), .layouts = CASES(BROADCAST_TO_LAYOUT), .domain = {ANY},
     .bad = CASES(BROADCAST_TO_BAD), .clones = 1, .speed_r = 256, .speed_c = 256},
    {.name = "slice", .build = b_slice, .composed = tw_slice, .cases = CASES(SLICE_CASES),
     .layouts = CASES(SLICE_LAYOUTS), .domain = {ANY}, .bad = CASES(SLICE_BAD), .clones = 1,
     .speed_r = 256, .speed_c = 3072},
    {.name = "split", .build = b_split, .composed = tw_split, .cases = CASES(SPLIT_CASES),
     .layouts = CASES(SPLIT_LAYOUT), .domain = {ANY}, .bad = CASES(SPLIT_BAD), .clones = 1},
    {.name = "chunk", .build = b_chunk, .composed = tw_chunk, .cases = CASES(CHUNK_CASES),
     .layouts = CASES(CHUNK_LAYOUT), .domain = {ANY}, .bad = CASES(CHUNK_BAD), .clones = 1},
    {.name = "concat", .build = b_concat, .composed = tw_concat, .cases = CASES(CONCAT_CASES),
     .layouts = CASES(CONCAT_LAYOUT), .domain = {ANY, ANY, ANY, ANY}, .bad = CASES(CONCAT_BAD), .clones = 1,
     .speed_r = 32, .speed_c = 256},
    {.name = "stack", .build = b_stack, .composed = tw_stack, .cases = CASES(STACK_CASES),
     .layouts = CASES(STACK_LAYOUT), .domain = {ANY, ANY, ANY, ANY}, .bad = CASES(STACK_BAD), .clones = 1,
     .speed_r = 32, .speed_c = 256},
    {.name = "pad", .build = b_pad, .composed = tw_pad, .cases = CASES(PAD_CASES),
     .layouts = CASES(PAD_LAYOUT), .domain = {ANY}, .bad = CASES(PAD_BAD), .clones = 1, .speed_r = 32,
     .speed_c = 16, .speed_k = 32},
};
const size_t op_records_views_n = LEN(op_records_views);

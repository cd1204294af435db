/*
 * records/index.c - the records of the indexing ops (autograd/ops/index.c): gather_rows,
 * index_select, take_along, one_hot. Their int32 indices come from the record's index_count
 * (op_records.h): the harnesses draw that many in range, with repeats, as op_call.labels.
 *
 * Twins, all from products or masks of other ops: gather_rows = one_hot(idx) matmul table;
 * index_select and take_along = sum over the axis of x .* M, M the 0/1 selection tensor (a
 * constant leaf); one_hot = gather_rows of the identity.
 */
#include "records.h"

#include <limits.h>

typedef struct ix_param {
    int axis;     /* index_select, take_along */
    size_t n;     /* gather_rows, index_select, one_hot: entries; take_along: k */
    size_t classes; /* one_hot */
} ix_param;

static int norm_axis(int axis, int ndim) { return axis < 0 ? axis + ndim : axis; }

/* outer, len, inner of a shape around an axis */
static void split(const op_shape *s, int axis, size_t *outer, size_t *len, size_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= s->d[i];
    for (int i = axis + 1; i < s->ndim; i++) *inner *= s->d[i];
    *len = s->d[axis];
}
static op_shape shape_of(const ag_tensor *x) {
    op_shape s = {x->ndim, {0}};
    for (int i = 0; i < x->ndim; i++) s.d[i] = x->shape[i];
    return s;
}

/* ---------------------------------------------------------------- gather_rows */

static size_t gather_count(const op_shape *in, const void *param, size_t *range) {
    *range = in[0].d[0];
    return ((const ix_param *)param)->n;
}
static ag_tensor *b_gather_rows(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_gather_rows(t, in[0], CALL(c)->labels, P(c, ix_param).n);
}
/* one_hot(idx) (n x V) times the table seen as V x D, reshaped back */
static ag_tensor *tw_gather_rows(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ag_tensor *x = in[0];
    const size_t n = P(c, ix_param).n, V = x->shape[0], D = x->size / V;
    ag_tensor *y = ag_matmul(t, ag_one_hot(t, CALL(c)->labels, n, V), ag_reshape(t, in[0], 2, (size_t[]){V, D}));
    size_t shape[AG_MAX_DIMS] = {n};
    for (int i = 1; i < x->ndim; i++) shape[i] = x->shape[i];
    return ag_reshape(t, y, x->ndim, shape);
}
static const ix_param N7 = {0, 7, 0}, N6 = {0, 6, 0}, N4 = {0, 4, 0}, N3 = {0, 3, 0}, N2048 = {0, 2048, 0},
                      N0 = {0, 0, 0}, N2 = {0, 2, 0};
static const op_case GATHER_CASES[] = {
    {"5x3, 7 rows", 1, {SHP(2, 5, 3)}, &N7, NULL},
    {"4 (1-D), 6", 1, {SHP(1, 4)}, &N6, NULL},
    {"3x2x2, 4", 1, {SHP(3, 3, 2, 2)}, &N4, NULL},
    {"2x1x3x2, 3", 1, {SHP(4, 2, 1, 3, 2)}, &N3, NULL},
    {"1x4 (V 1), 3", 1, {SHP(2, 1, 4)}, &N3, NULL},
};
/* the speed shape: 32 x 64 = 2048 tokens from a 10000 x 128 table (speed_r, speed_c) */
static const op_case GATHER_LAYOUTS[] = {{"VxD, 2048 rows", 1, {SHP(2, OP_R, OP_C)}, &N2048, NULL}};
static const op_bad GATHER_BAD[] = {
    {"index V", 1, {SHP(2, 5, 3)}, &N2, (const int32_t[]){0, 5}, 0, AG_ERR_ARG, "index 5 at position 1 is outside 0..4"},
    {"index -1", 1, {SHP(2, 5, 3)}, &N2, (const int32_t[]){-1, 0}, 0, AG_ERR_ARG, "index -1 at position 0"},
    {"index INT32_MIN", 1, {SHP(1, 4)}, &N2, (const int32_t[]){1, INT32_MIN}, 0, AG_ERR_ARG, "index -2147483648"},
    {"idx NULL", 1, {SHP(2, 5, 3)}, &N2, NULL, OP_NULL_LABELS, AG_ERR_ARG, "idx is NULL"},
    {"n 0", 1, {SHP(2, 5, 3)}, &N0, NULL, 0, AG_ERR_ARG, "n is 0"},
    {"scalar table", 1, {S0}, &N2, NULL, 0, AG_ERR_SHAPE, "table is a scalar"},
};

/* ---------------------------------------------------------------- index_select, take_along */

static size_t select_count(const op_shape *in, const void *param, size_t *range) {
    const ix_param *p = param;
    *range = in[0].d[norm_axis(p->axis, in[0].ndim)];
    return p->n;
}
static size_t along_count(const op_shape *in, const void *param, size_t *range) {
    const ix_param *p = param;
    size_t outer, len, inner;
    split(&in[0], norm_axis(p->axis, in[0].ndim), &outer, &len, &inner);
    *range = len;
    return outer * p->n * inner;
}
static ag_tensor *b_index_select(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_index_select(t, in[0], P(c, ix_param).axis, CALL(c)->labels, P(c, ix_param).n);
}
static ag_tensor *b_take_along(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_take_along(t, in[0], P(c, ix_param).axis, CALL(c)->labels, P(c, ix_param).n);
}

/* y[o, j, i] = sum_l x[o, l, i] M[o, j, l, i] with M 0/1 picking l = the index of (o, j, i):
 * x reshaped to outer x 1 x len x inner times M (outer x k x len x inner, or 1 x k x len x 1 when
 * the indices do not depend on o and i), summed over axis 2, reshaped to the result. */
static ag_tensor *select_twin(ag_tape *t, ag_tensor *x, int axis, const int32_t *idx, size_t k, int along) {
    const op_shape s = shape_of(x);
    size_t outer, len, inner;
    split(&s, norm_axis(axis, x->ndim), &outer, &len, &inner);
    const size_t mo = along ? outer : 1, mi = along ? inner : 1;
    ag_tensor *M = ag_tensor_new(t, 4, (size_t[]){mo, k, len, mi});
    if (!M) return NULL;
    for (size_t o = 0; o < mo; o++)
        for (size_t j = 0; j < k; j++)
            for (size_t i = 0; i < mi; i++) {
                const size_t l = (size_t)idx[along ? (o * k + j) * inner + i : j];
                M->value[((o * k + j) * len + l) * mi + i] = 1;
            }
    ag_tensor *y = ag_sum_axis(t, ag_mul(t, ag_reshape(t, x, 4, (size_t[]){outer, 1, len, inner}), M), 2);
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = i == norm_axis(axis, x->ndim) ? k : x->shape[i];
    return ag_reshape(t, y, x->ndim, shape);
}
static ag_tensor *tw_index_select(ag_tape *t, ag_tensor *const *in, const void *c) {
    return select_twin(t, in[0], P(c, ix_param).axis, CALL(c)->labels, P(c, ix_param).n, 0);
}
static ag_tensor *tw_take_along(ag_tape *t, ag_tensor *const *in, const void *c) {
    return select_twin(t, in[0], P(c, ix_param).axis, CALL(c)->labels, P(c, ix_param).n, 1);
}

static const ix_param A0N7 = {0, 7, 0}, A1N6 = {1, 6, 0}, AM2N5 = {-2, 5, 0}, A1N4 = {1, 4, 0}, AM1N3 = {-1, 3, 0},
                      A2N1 = {2, 1, 0}, AM1N512 = {-1, 512, 0}, A0N128 = {0, 128, 0}, A2N2 = {2, 2, 0},
                      AM3N2 = {-3, 2, 0}, A1N0 = {1, 0, 0}, A1N2 = {1, 2, 0};
static const op_case SELECT_CASES[] = {
    {"5 axis 0, 7", 1, {SHP(1, 5)}, &A0N7, NULL},
    {"3x4 axis 1, 6", 1, {SHP(2, 3, 4)}, &A1N6, NULL},
    {"3x4 axis -2, 5", 1, {SHP(2, 3, 4)}, &AM2N5, NULL},
    {"2x3x4 axis 1, 4", 1, {SHP(3, 2, 3, 4)}, &A1N4, NULL},
    {"2x3x1x2 axis -1, 3", 1, {SHP(4, 2, 3, 1, 2)}, &AM1N3, NULL},
    {"2x3x4 axis 2, 1", 1, {SHP(3, 2, 3, 4)}, &A2N1, NULL},
};
static const op_case SELECT_LAYOUTS[] = {
    {"RxC axis -1, 512", 1, {SHP(2, OP_R, OP_C)}, &AM1N512, NULL},
    {"RxC axis 0, 128", 1, {SHP(2, OP_R, OP_C)}, &A0N128, NULL},
};
static const op_bad SELECT_BAD[] = {
    {"axis 2 of 2-D", 1, {SHP(2, 3, 4)}, &A2N2, NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 3x4"},
    {"axis -3 of 2-D", 1, {SHP(2, 3, 4)}, &AM3N2, NULL, 0, AG_ERR_SHAPE, "axis -3 is out of range for 3x4"},
    {"index len", 1, {SHP(2, 3, 4)}, &A1N2, (const int32_t[]){3, 4}, 0, AG_ERR_ARG, "index 4 at position 1 is outside 0..3"},
    {"index -2", 1, {SHP(2, 3, 4)}, &A1N2, (const int32_t[]){-2, 0}, 0, AG_ERR_ARG, "index -2 at position 0"},
    {"idx NULL", 1, {SHP(2, 3, 4)}, &A1N2, NULL, OP_NULL_LABELS, AG_ERR_ARG, "idx is NULL"},
    {"n 0", 1, {SHP(2, 3, 4)}, &A1N0, NULL, 0, AG_ERR_ARG, "n is 0"},
    {"scalar x", 1, {S0}, &N2, NULL, 0, AG_ERR_SHAPE, "axis 0 is out of range for scalar"},
};

static const ix_param K3 = {0, 3, 0}, A1K2 = {1, 2, 0}, A0K5 = {0, 5, 0}, AM2K4 = {-2, 4, 0}, A1K3 = {1, 3, 0},
                      AM1K16 = {-1, 16, 0}, A0K64 = {0, 64, 0}, A1K0 = {1, 0, 0};
static const op_case ALONG_CASES[] = {
    {"5 axis 0, k 3", 1, {SHP(1, 5)}, &K3, NULL},
    {"3x4 axis 1, k 2", 1, {SHP(2, 3, 4)}, &A1K2, NULL},
    {"3x4 axis 0, k 5", 1, {SHP(2, 3, 4)}, &A0K5, NULL},
    {"2x3x4 axis -2, k 4", 1, {SHP(3, 2, 3, 4)}, &AM2K4, NULL},
    {"2x3x1x2 axis 1, k 2", 1, {SHP(4, 2, 3, 1, 2)}, &A1K2, NULL},
    {"3x1 axis 1, k 3", 1, {SHP(2, 3, 1)}, &A1K3, NULL},
};
static const op_case ALONG_LAYOUTS[] = {
    {"RxC axis -1, k 16", 1, {SHP(2, OP_R, OP_C)}, &AM1K16, NULL},
    {"RxC axis 0, k 64", 1, {SHP(2, OP_R, OP_C)}, &A0K64, NULL},
};
static const op_bad ALONG_BAD[] = {
    {"axis 2 of 2-D", 1, {SHP(2, 3, 4)}, &A2N2, NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 3x4"},
    {"axis -3 of 2-D", 1, {SHP(2, 3, 4)}, &AM3N2, NULL, 0, AG_ERR_SHAPE, "axis -3"},
    {"index len", 1, {SHP(2, 2, 3)}, &A1N2, (const int32_t[]){0, 1, 2, 3}, 0, AG_ERR_ARG,
     "index 3 at position 3 is outside 0..2"},
    {"index -1", 1, {SHP(2, 2, 3)}, &A1N2, (const int32_t[]){0, 1, -1, 0}, 0, AG_ERR_ARG, "index -1 at position 2"},
    {"idx NULL", 1, {SHP(2, 3, 4)}, &A1N2, NULL, OP_NULL_LABELS, AG_ERR_ARG, "idx is NULL"},
    {"k 0", 1, {SHP(2, 3, 4)}, &A1K0, NULL, 0, AG_ERR_ARG, "k is 0"},
};

/* ---------------------------------------------------------------- one_hot (no tensor inputs) */

static size_t one_hot_count(const op_shape *in, const void *param, size_t *range) {
    (void)in;
    *range = ((const ix_param *)param)->classes;
    return ((const ix_param *)param)->n;
}
static ag_tensor *b_one_hot(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)in;
    return ag_one_hot(t, CALL(c)->labels, P(c, ix_param).n, P(c, ix_param).classes);
}
static ag_tensor *tw_one_hot(ag_tape *t, ag_tensor *const *in, const void *c) { /* rows of the identity */
    (void)in;
    const size_t C = P(c, ix_param).classes;
    ag_tensor *I = ag_tensor_new(t, 2, (size_t[]){C, C});
    for (size_t k = 0; I && k < C; k++) I->value[k * C + k] = 1;
    return ag_gather_rows(t, I, CALL(c)->labels, P(c, ix_param).n);
}
static const ix_param OH5x3 = {0, 5, 3}, OH1x1 = {0, 1, 1}, OH4x10 = {0, 4, 10}, OH_SPEED = {0, 2048, 1000},
                      OH_N0 = {0, 0, 3}, OH_C0 = {0, 2, 0}, OH2x3 = {0, 2, 3};
static const op_case ONE_HOT_CASES[] = {
    {"5 of 3", 0, {S0}, &OH5x3, NULL},
    {"1 of 1", 0, {S0}, &OH1x1, NULL},
    {"4 of 10", 0, {S0}, &OH4x10, NULL},
};
static const op_case ONE_HOT_LAYOUTS[] = {{"2048 of 1000", 0, {S0}, &OH_SPEED, NULL}};
static const op_bad ONE_HOT_BAD[] = {
    {"index classes", 0, {S0}, &OH2x3, (const int32_t[]){2, 3}, 0, AG_ERR_ARG, "index 3 at position 1 is outside 0..2"},
    {"index -1", 0, {S0}, &OH2x3, (const int32_t[]){-1, 0}, 0, AG_ERR_ARG, "index -1 at position 0"},
    {"idx NULL", 0, {S0}, &OH2x3, NULL, OP_NULL_LABELS, AG_ERR_ARG, "idx is NULL"},
    {"n 0", 0, {S0}, &OH_N0, NULL, 0, AG_ERR_ARG, "n is 0"},
    {"classes 0", 0, {S0}, &OH_C0, NULL, 0, AG_ERR_ARG, "classes is 0"},
};

/* ---------------------------------------------------------------- the table */

const op_record op_records_index[] = {
    {.name = "gather_rows", .build = b_gather_rows, .composed = tw_gather_rows, .cases = CASES(GATHER_CASES),
     .layouts = CASES(GATHER_LAYOUTS), .domain = {ANY}, .index_count = gather_count, .bad = CASES(GATHER_BAD),
     .clones = 1, .speed_r = 10000, .speed_c = 128},
    {.name = "index_select", .build = b_index_select, .composed = tw_index_select, .cases = CASES(SELECT_CASES),
     .layouts = CASES(SELECT_LAYOUTS), .domain = {ANY}, .index_count = select_count, .bad = CASES(SELECT_BAD),
     .clones = 1},
    {.name = "take_along", .build = b_take_along, .composed = tw_take_along, .cases = CASES(ALONG_CASES),
     .layouts = CASES(ALONG_LAYOUTS), .domain = {ANY}, .index_count = along_count, .bad = CASES(ALONG_BAD),
     .clones = 1},
    {.name = "one_hot", .build = b_one_hot, .composed = tw_one_hot, .cases = CASES(ONE_HOT_CASES),
     .layouts = CASES(ONE_HOT_LAYOUTS), .index_count = one_hot_count, .bad = CASES(ONE_HOT_BAD)},
};
const size_t op_records_index_n = LEN(op_records_index);

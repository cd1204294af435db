/*
 * records/compare.c - the records of the masks and comparisons (autograd/ops/compare.c): where,
 * masked_fill, maximum, minimum, clamp, max_axis, min_axis, abs, sign.
 *
 * Masks are inputs flagged in mask_in (drawn 0 or 1 by the checks); the twins detach them (a
 * constant copy), as the ops give them no gradient. Kinks are kept away from: abs and sign at 0,
 * clamp at its bounds (avoid), maximum/minimum at ties and max_axis/min_axis at near-ties
 * (kink_dist), each at least 0.05 away (the float check steps by 1e-2).
 */
#include "records.h"

#include <math.h>

/* A constant copy of a mask input (no gradient through it). */
static ag_tensor *detach(ag_tape *t, const ag_tensor *m) { return ag_tensor_from(t, m->ndim, m->shape, m->value); }

/* ---------------------------------------------------------------- where, masked_fill */

static ag_tensor *b_where(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_where(t, in[0], in[1], in[2]);
}
static ag_tensor *tw_where(ag_tape *t, ag_tensor *const *in, const void *c) { /* m a + (1 - m) b */
    (void)c;
    ag_tensor *m = detach(t, in[0]);
    return ag_add(t, ag_mul(t, m, in[1]), ag_mul(t, ag_add_scalar(t, ag_neg(t, m), 1), in[2]));
}
static const op_case WHERE_CASES[] = {
    {"3x4 all", 3, {SHP(2, 3, 4), SHP(2, 3, 4), SHP(2, 3, 4)}, NULL, NULL},
    {"mask 4, a 3x4, b scalar", 3, {SHP(1, 4), SHP(2, 3, 4), S0}, NULL, NULL},
    {"mask 3x1, a 1x4, b 3x4", 3, {SHP(2, 3, 1), SHP(2, 1, 4), SHP(2, 3, 4)}, NULL, NULL},
    {"mask 2x1x3x2, a 3x1, b 2", 3, {SHP(4, 2, 1, 3, 2), SHP(2, 3, 1), SHP(1, 2)}, NULL, NULL},
    {"5 all", 3, {SHP(1, 5), SHP(1, 5), SHP(1, 5)}, NULL, NULL},
    {"scalar mask, 2x3x4, 3x4", 3, {S0, SHP(3, 2, 3, 4), SHP(2, 3, 4)}, NULL, NULL},
};
static const op_case WHERE_LAYOUTS[] = {
    {"RxC all", 3, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL},
    {"C, RxC, scalar", 3, {SHP(1, OP_C), SHP(2, OP_R, OP_C), S0}, NULL, NULL},
    {"Rx1, 1xC, RxC", 3, {SHP(2, OP_R, 1), SHP(2, 1, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL},
};
static const op_bad WHERE_BAD[] = {
    {"do not broadcast", 3, {SHP(2, 2, 3), SHP(2, 3, 4), SHP(1, 4)}, NULL, NULL, 0, AG_ERR_SHAPE,
     "mask 2x3, a 3x4 and b 4 do not broadcast"},
    {"b 5 against 3x4", 3, {SHP(2, 3, 4), SHP(2, 3, 4), SHP(1, 5)}, NULL, NULL, 0, AG_ERR_SHAPE, "and b 5 do not"},
};

static const ag_real FILL = (ag_real)-2.5, FILL_H = (ag_real)-3;
static ag_tensor *b_masked_fill(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_masked_fill(t, in[0], in[1], P(c, ag_real));
}
static ag_tensor *tw_masked_fill(ag_tape *t, ag_tensor *const *in, const void *c) { /* x (1 - m) + v m */
    ag_tensor *m = detach(t, in[1]);
    return ag_add(t, ag_mul(t, in[0], ag_add_scalar(t, ag_neg(t, m), 1)), ag_scale(t, m, P(c, ag_real)));
}
static const op_case FILL_CASES[] = {
    {"3x4, 3x4", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &FILL, NULL},
    {"2x3x4x4, causal 4x4", 2, {SHP(4, 2, 3, 4, 4), SHP(2, 4, 4)}, &FILL, NULL},
    {"2x3x4, 3x1", 2, {SHP(3, 2, 3, 4), SHP(2, 3, 1)}, &FILL, NULL},
    {"5, scalar", 2, {SHP(1, 5), S0}, &FILL, NULL},
    {"scalar, scalar", 2, {S0, S0}, &FILL, NULL},
    {"2x1x3x2, 2", 2, {SHP(4, 2, 1, 3, 2), SHP(1, 2)}, &FILL, NULL},
};
/* the speed shape: a 64 x 64 causal mask on 32 x 4 x 64 x 64 attention scores (K x 4 x R x C) */
static const op_case FILL_LAYOUTS[] = {
    {"Kx4xRxC, RxC", 2, {SHP(4, OP_K, 4, OP_R, OP_C), SHP(2, OP_R, OP_C)}, &FILL_H, NULL},
    {"RxC, RxC", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, &FILL_H, NULL},
};
static const op_bad FILL_BAD[] = {
    {"mask 3x5 on 2x3x4", 2, {SHP(3, 2, 3, 4), SHP(2, 3, 5)}, NULL, NULL, 0, AG_ERR_SHAPE,
     "mask 3x5 does not broadcast to x 2x3x4"},
    {"mask larger than x", 2, {SHP(2, 3, 4), SHP(3, 2, 3, 4)}, NULL, NULL, 0, AG_ERR_SHAPE,
     "mask 2x3x4 does not broadcast to x 3x4"},
    {"x would broadcast", 2, {SHP(2, 3, 1), SHP(2, 3, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "to x 3x1"},
};

/* ---------------------------------------------------------------- maximum, minimum */

static ag_tensor *b_maximum(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_maximum(t, in[0], in[1]);
}
static ag_tensor *b_minimum(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_minimum(t, in[0], in[1]);
}
static ag_tensor *abs_of(ag_tape *t, ag_tensor *x) { return ag_sqrt(t, ag_square(t, x)); }
static ag_tensor *tw_maximum(ag_tape *t, ag_tensor *const *in, const void *c) { /* (a + b + |a - b|) / 2 */
    (void)c;
    return ag_scale(t, ag_add(t, ag_add(t, in[0], in[1]), abs_of(t, ag_sub(t, in[0], in[1]))), (ag_real)0.5);
}
static ag_tensor *tw_minimum(ag_tape *t, ag_tensor *const *in, const void *c) { /* (a + b - |a - b|) / 2 */
    (void)c;
    return ag_scale(t, ag_sub(t, ag_add(t, in[0], in[1]), abs_of(t, ag_sub(t, in[0], in[1]))), (ag_real)0.5);
}
/* ties: the smallest |a - b| over the broadcast pairs */
static double tie_dist(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    (void)c;
    int was = ag_tape_set_grad_enabled(t, 0);
    ag_tensor *d = ag_sub(t, in[0], in[1]);
    ag_tape_set_grad_enabled(t, was);
    double m = INFINITY;
    for (size_t i = 0; d && i < d->size; i++) m = fmin(m, fabs((double)d->value[i]));
    return m;
}
static const op_bad MAXIMUM_BAD[] = {
    {"3x4 and 5", 2, {SHP(2, 3, 4), SHP(1, 5)}, NULL, NULL, 0, AG_ERR_SHAPE, "shapes 3x4 and 5 do not broadcast"},
};
static const op_bad MINIMUM_BAD[] = {
    {"2x3 and 3x4", 2, {SHP(2, 2, 3), SHP(2, 3, 4)}, NULL, NULL, 0, AG_ERR_SHAPE, "shapes 2x3 and 3x4 do not broadcast"},
};

/* ---------------------------------------------------------------- clamp, abs, sign */

typedef struct bounds {
    ag_real lo, hi;
} bounds;
static const bounds CL = {(ag_real)-0.5, (ag_real)0.6}, CL_LO = {(ag_real)-INFINITY, (ag_real)0.3},
                    CL_HI = {(ag_real)-0.5, (ag_real)INFINITY}, CL_BAD = {1, -1}, CL_NAN = {(ag_real)NAN, 1};
static ag_tensor *b_clamp(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_clamp(t, in[0], P(c, bounds).lo, P(c, bounds).hi);
}
static ag_tensor *tw_clamp(ag_tape *t, ag_tensor *const *in, const void *c) { /* minimum(maximum(x, lo), hi) */
    return ag_minimum(t, ag_maximum(t, in[0], ag_scalar(t, P(c, bounds).lo)), ag_scalar(t, P(c, bounds).hi));
}
static const op_case CLAMP_CASES[] = {
    {"scalar", 1, {S0}, &CL, NULL},
    {"5", 1, {SHP(1, 5)}, &CL, NULL},
    {"3x4", 1, {SHP(2, 3, 4)}, &CL, NULL},
    {"2x3x4 hi only", 1, {SHP(3, 2, 3, 4)}, &CL_LO, NULL},
    {"2x3x1x2 lo only", 1, {SHP(4, 2, 3, 1, 2)}, &CL_HI, NULL},
};
static const op_case CLAMP_LAYOUTS[] = {{"RxC", 1, {SHP(2, OP_R, OP_C)}, &CL, NULL}};
static const op_bad CLAMP_BAD[] = {
    {"lo > hi", 1, {SHP(2, 3, 4)}, &CL_BAD, NULL, 0, AG_ERR_ARG, "lo 1 is not <= hi -1"},
    {"lo NaN", 1, {SHP(2, 3, 4)}, &CL_NAN, NULL, 0, AG_ERR_ARG, "lo nan is not <= hi 1"},
};

static ag_tensor *b_abs(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_abs(t, in[0]);
}
static ag_tensor *tw_abs(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return abs_of(t, in[0]);
}
static ag_tensor *b_sign(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_sign(t, in[0]);
}
static ag_tensor *tw_sign(ag_tape *t, ag_tensor *const *in, const void *c) { /* x / |x|: derivative 0 too */
    (void)c;
    return ag_div(t, in[0], abs_of(t, in[0]));
}

/* ---------------------------------------------------------------- max_axis, min_axis */

static ag_tensor *b_max_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_max_axis(t, in[0], P(c, int)); }
static ag_tensor *b_min_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_min_axis(t, in[0], P(c, int)); }
/* maximum (minimum) of the slices x[.., j, ..] picked by index_select, the axis dropped by reshape */
static ag_tensor *best_twin(ag_tape *t, ag_tensor *x, int axis, int max) {
    const int a = axis < 0 ? axis + x->ndim : axis;
    ag_tensor *y = NULL;
    for (size_t j = 0; j < x->shape[a]; j++) {
        const int32_t jj = (int32_t)j;
        ag_tensor *s = ag_index_select(t, x, a, &jj, 1);
        y = !y ? s : max ? ag_maximum(t, y, s) : ag_minimum(t, y, s);
    }
    size_t shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != a) shape[nd++] = x->shape[i];
    return ag_reshape(t, y, nd, shape);
}
static ag_tensor *tw_max_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return best_twin(t, in[0], P(c, int), 1); }
static ag_tensor *tw_min_axis(ag_tape *t, ag_tensor *const *in, const void *c) { return best_twin(t, in[0], P(c, int), 0); }
/* near-ties: the smallest gap between the best and the second best along the axis (sgn 1: max) */
static double best_gap(ag_tensor *const *in, const op_call *c, double sgn) {
    const ag_tensor *x = in[0];
    const int a = P(c, int) < 0 ? P(c, int) + x->ndim : P(c, int);
    size_t outer = 1, inner = 1, len = x->shape[a];
    for (int i = 0; i < a; i++) outer *= x->shape[i];
    for (int i = a + 1; i < x->ndim; i++) inner *= x->shape[i];
    double gap = INFINITY;
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            double b1 = -INFINITY, b2 = -INFINITY; /* the two largest of sgn x */
            for (size_t j = 0; j < len; j++) {
                const double v = sgn * (double)x->value[(o * len + j) * inner + i];
                if (v > b1) {
                    b2 = b1;
                    b1 = v;
                } else if (v > b2) {
                    b2 = v;
                }
            }
            gap = fmin(gap, b1 - b2);
        }
    return gap; /* INFINITY for len 1 */
}
static double max_gap(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    (void)t;
    return best_gap(in, c, 1);
}
static double min_gap(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    (void)t;
    return best_gap(in, c, -1);
}
static const int AX[] = {0, 1, -1, -2, 2, 3, -4};
static const op_case BEST_CASES[] = {
    {"5 axis 0", 1, {SHP(1, 5)}, &AX[0], NULL},
    {"3x4 axis 1", 1, {SHP(2, 3, 4)}, &AX[1], NULL},
    {"3x4 axis -2", 1, {SHP(2, 3, 4)}, &AX[3], NULL},
    {"2x3x4 axis 1", 1, {SHP(3, 2, 3, 4)}, &AX[1], NULL},
    {"2x3x4 axis -1", 1, {SHP(3, 2, 3, 4)}, &AX[2], NULL},
    {"2x3x1x2 axis 2 (len 1)", 1, {SHP(4, 2, 3, 1, 2)}, &AX[4], NULL},
    {"2x3x1x2 axis -4", 1, {SHP(4, 2, 3, 1, 2)}, &AX[6], NULL},
    {"1x20 axis 1 (lanes)", 1, {SHP(2, 1, 20)}, &AX[1], NULL},
};
static const op_case BEST_LAYOUTS[] = {
    {"RxC axis -1", 1, {SHP(2, OP_R, OP_C)}, &AX[2], NULL},
    {"RxC axis 0", 1, {SHP(2, OP_R, OP_C)}, &AX[0], NULL},
};
static const op_bad BEST_BAD[] = {
    {"axis 2 of 2-D", 1, {SHP(2, 2, 3)}, &AX[4], NULL, 0, AG_ERR_SHAPE, "axis 2 is out of range for 2x3"},
    {"axis -4 of 3-D", 1, {SHP(3, 2, 3, 4)}, &AX[6], NULL, 0, AG_ERR_SHAPE, "axis -4 is out of range for 2x3x4"},
    {"scalar", 1, {S0}, &AX[0], NULL, 0, AG_ERR_SHAPE, "axis 0 is out of range for scalar"},
};

/* ---------------------------------------------------------------- the table */

#define BINARY_REC(nm)                                                                                  \
    .build = b_##nm, .composed = tw_##nm, .cases = CASES(BINARY_CASES), .layouts = CASES(BINARY_LAYOUTS), \
    .domain = {ANY, ANY}, .avoid_dist = 0.05, .kink_dist = tie_dist, .clones = 1, .speed_r = 32, .speed_c = 2048

const op_record op_records_compare[] = {
    {.name = "where", .build = b_where, .composed = tw_where, .cases = CASES(WHERE_CASES),
     .layouts = CASES(WHERE_LAYOUTS), .domain = {ANY, ANY, ANY}, .mask_in = 1u << 0, .bad = CASES(WHERE_BAD),
     .clones = 1, .speed_r = 32, .speed_c = 2048},
    {.name = "masked_fill", .build = b_masked_fill, .composed = tw_masked_fill, .cases = CASES(FILL_CASES),
     .layouts = CASES(FILL_LAYOUTS), .domain = {ANY, ANY}, .mask_in = 1u << 1, .bad = CASES(FILL_BAD),
     .clones = 1, .speed_r = 64, .speed_c = 64, .speed_k = 32},
    {.name = "maximum", BINARY_REC(maximum), .bad = CASES(MAXIMUM_BAD)},
    {.name = "minimum", BINARY_REC(minimum), .bad = CASES(MINIMUM_BAD)},
    {.name = "clamp", .build = b_clamp, .composed = tw_clamp, .cases = CASES(CLAMP_CASES),
     .layouts = CASES(CLAMP_LAYOUTS), .domain = {ANY}, .avoid = {-0.5, 0.6, 0.3}, .n_avoid = 3, .avoid_dist = 0.05,
     .bad = CASES(CLAMP_BAD), .clones = 1},
    {.name = "max_axis", .build = b_max_axis, .composed = tw_max_axis, .cases = CASES(BEST_CASES),
     .layouts = CASES(BEST_LAYOUTS), .domain = {ANY}, .avoid_dist = 0.05, .kink_dist = max_gap,
     .bad = CASES(BEST_BAD), .clones = 1},
    {.name = "min_axis", .build = b_min_axis, .composed = tw_min_axis, .cases = CASES(BEST_CASES),
     .layouts = CASES(BEST_LAYOUTS), .domain = {ANY}, .avoid_dist = 0.05, .kink_dist = min_gap,
     .bad = CASES(BEST_BAD), .clones = 1},
    {.name = "abs", .build = b_abs, .composed = tw_abs, .cases = CASES(RANK_CASES), .layouts = CASES(RC_LAYOUT),
     .domain = {AWAY}, .avoid = {0}, .n_avoid = 1, .avoid_dist = 0.1, .clones = 1},
    {.name = "sign", .build = b_sign, .composed = tw_sign, .cases = CASES(RANK_CASES), .layouts = CASES(RC_LAYOUT),
     .domain = {AWAY}, .avoid = {0}, .n_avoid = 1, .avoid_dist = 0.1, .clones = 1},
};
const size_t op_records_compare_n = LEN(op_records_compare);

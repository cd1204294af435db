/*
 * join.c - slicing and joining: slice (a view when it is one contiguous block of x, else a copy),
 * split and chunk (slices of one input), concat and stack (n inputs, one copy), and constant pad.
 *
 * Every op here moves contiguous runs: x seen as outer x len x inner around the axis
 * (ag__axis_split), a run is a whole inner block or several adjacent ones. Backward adds the
 * same runs back (dx += dy), skipping inputs without a gradient.
 *
 * Read next: shape.c (the views and permutes), reduce.c.
 */
#include "../internal.h"

/* dst[i] = src[i] and dst[i] += src[i] for contiguous runs; AG__CLONES callers inline them */
static inline void run_copy(ag_real *restrict dst, const ag_real *restrict src, size_t n) {
    memcpy(dst, src, n * sizeof *dst);
}
static inline void run_add(ag_real *restrict dst, const ag_real *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}
/* dst[i] = 0 + src[i]: the first write into a fresh gradient, with the bits of zero-then-add */
static inline void run_set(ag_real *restrict dst, const ag_real *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (ag_real)0 + src[i];
}
/* the first write (assign) or a later one */
static inline void run_put(ag_real *restrict dst, const ag_real *restrict src, size_t n, int assign) {
    if (assign)
        run_set(dst, src, n);
    else
        run_add(dst, src, n);
}

/* ---------------------------------------------------------------- slice, split, chunk
 * y = x[.., start : start + len*step : step, ..] along axis;  dx[.., start + l*step, ..] += dy[.., l, ..].
 * A view (y's value inside x's, no copy) when the slice is one block: step 1 (or len 1) and every
 * axis before it of size 1. */

typedef struct slice_params {
    int axis;
    size_t start, len, step;
    int view; /* set by shape() */
} slice_params;

static ag_status slice_shape(ag_node *n) {
    slice_params *p = n->params;
    ag_node_grad_out_declare(n); /* its backward takes gradients from ag_node_grad_out */
    const ag_tensor *x = n->in[0];
    const int axis = p->axis;
    ag_status st = ag__axis(n, &p->axis, x->ndim, x);
    if (st != AG_OK) return st;
    char s[64];
    const size_t N = x->shape[p->axis];
    if (p->step == 0)
        return ag_node_fail(n, AG_ERR_ARG, "step is 0, must be >= 1 (x is %s)", ag_shape_str(x, s, sizeof s));
    if (p->len == 0)
        return ag_node_fail(n, AG_ERR_SHAPE, "len is 0 for axis %d of %s (slices are not empty)", axis,
                            ag_shape_str(x, s, sizeof s));
    if (p->start >= N)
        return ag_node_fail(n, AG_ERR_SHAPE, "start %zu is out of range for axis %d of %s", p->start, axis,
                            ag_shape_str(x, s, sizeof s));
    if (p->len - 1 > (N - 1 - p->start) / p->step) /* the last index, start + (len-1) step, is past N - 1 */
        return ag_node_fail(n, AG_ERR_SHAPE, "start %zu, len %zu, step %zu runs past axis %d of %s", p->start,
                            p->len, p->step, axis, ag_shape_str(x, s, sizeof s));
    size_t d[AG_MAX_DIMS], outer, len, inner;
    for (int i = 0; i < x->ndim; i++) d[i] = x->shape[i];
    d[p->axis] = p->len;
    st = ag_node_set_shape(n, x->ndim, d);
    ag__axis_split(x, p->axis, &outer, &len, &inner);
    p->view = st == AG_OK && outer == 1 && (p->step == 1 || p->len == 1);
    if (p->view) n->out.value = x->value + p->start * inner; /* one block of x */
    return st;
}

AG__CLONES static ag_status slice_forward(ag_node *n) {
    const slice_params *p = n->params;
    const ag_tensor *x = n->in[0];
    if (p->view) return AG_OK;
    size_t outer, N, inner;
    ag__axis_split(x, p->axis, &outer, &N, &inner);
    const ag_real *restrict src = x->value + p->start * inner;
    ag_real *restrict y = n->out.value;
    const size_t len = p->len, step = p->step;
    for (size_t o = 0; o < outer; o++, src += N * inner) {
        if (step == 1) {
            run_copy(y, src, len * inner);
            y += len * inner;
        } else {
            for (size_t l = 0; l < len; l++, y += inner) run_copy(y, src + l * step * inner, inner);
        }
    }
    return AG_OK;
}

AG__CLONES static ag_status slice_backward(ag_node *n) {
    const slice_params *p = n->params;
    const ag_tensor *x = n->in[0];
    int assign;
    if (!ag_node_grad_out(n, 0, &assign)) return AG_OK;
    const ag_real *restrict dy = n->out.grad;
    if (p->view) { /* one block: a fresh gradient is zeroed around it only */
        const size_t at = p->start * (x->size / x->shape[p->axis]);
        if (assign) {
            memset(x->grad, 0, at * sizeof(ag_real));
            memset(x->grad + at + n->out.size, 0, (x->size - at - n->out.size) * sizeof(ag_real));
        }
        run_put(x->grad + at, dy, n->out.size, assign);
        return AG_OK;
    }
    if (assign) memset(x->grad, 0, x->size * sizeof(ag_real));
    size_t outer, N, inner;
    ag__axis_split(x, p->axis, &outer, &N, &inner);
    ag_real *restrict dx = x->grad + p->start * inner;
    const size_t len = p->len, step = p->step;
    for (size_t o = 0; o < outer; o++, dx += N * inner) {
        if (step == 1) {
            run_add(dx, dy, len * inner);
            dy += len * inner;
        } else {
            for (size_t l = 0; l < len; l++, dy += inner) run_add(dx + l * step * inner, dy, inner);
        }
    }
    return AG_OK;
}

static const ag_op slice_op = {"slice", 1, sizeof(slice_params), slice_shape, slice_forward, slice_backward};
/* the pieces of split and chunk: slices that name their builder in messages and dumps */
static const ag_op split_op = {"split", 1, sizeof(slice_params), slice_shape, slice_forward, slice_backward};
static const ag_op chunk_op = {"chunk", 1, sizeof(slice_params), slice_shape, slice_forward, slice_backward};

ag_tensor *ag_slice(ag_tape *t, ag_tensor *x, int axis, size_t start, size_t len, size_t step) {
    const slice_params p = {axis, start, len, step, 0};
    return AG__CALL(t, &slice_op, &p, x);
}

/* What ag_call checks of an input, for split and chunk, which must refuse before recording any
 * piece: x NULL, of another tape or stale. Then the axis, normalised into *axis. */
static ag_status pieces_check(ag_tape *t, const char *name, ag_tensor *x, int *axis) {
    if (!x) {
        if (t->status != AG_OK) {
            ag__op_missing(t); /* keep the first error */
            return t->status;
        }
        return ag__op_fail(t, AG_ERR_ARG, "%s: input 0 is NULL", name);
    }
    if (x->tape == t && x->gen != t->gen)
        return ag__op_fail(t, AG_ERR_STATE, "%s: input 0 was recorded before the last ag_tape_reset", name);
    if (x->tape && x->tape != t)
        return ag__op_fail(t, AG_ERR_ARG, "%s: input 0 belongs to another tape", name);
    if (!x->tape && !(x->flags & AG_PARAM))
        return ag__op_fail(t, AG_ERR_ARG, "%s: input 0 is neither a tape tensor nor a parameter", name);
    const int a = *axis < 0 ? *axis + x->ndim : *axis;
    if (a < 0 || a >= x->ndim) {
        char s[64];
        return ag__op_fail(t, AG_ERR_SHAPE, "%s: axis %d is out of range for %s", name, *axis,
                           ag_shape_str(x, s, sizeof s));
    }
    *axis = a;
    return AG_OK;
}

/* The n pieces of the given sizes (already checked: each >= 1, summing to the axis). */
static ag_status pieces(ag_tape *t, const ag_op *op, ag_tensor *x, int axis, const size_t *sizes, size_t n,
                        ag_tensor **out) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t len = sizes ? sizes[i] : 0;
        const slice_params p = {axis, start, len, 1, 0};
        out[i] = AG__CALL(t, op, &p, x);
        if (!out[i]) {
            for (size_t j = 0; j < n; j++) out[j] = NULL;
            return t->status;
        }
        start += len;
    }
    return AG_OK;
}

ag_status ag_split(ag_tape *t, ag_tensor *x, int axis, const size_t *sizes, size_t n, ag_tensor **out) {
    if (!t) return AG_ERR_ARG;
    if (out)
        for (size_t i = 0; i < n; i++) out[i] = NULL;
    if (!out) return ag__op_fail(t, AG_ERR_ARG, "split: out is NULL");
    if (!sizes) return ag__op_fail(t, AG_ERR_ARG, "split: sizes is NULL");
    if (n == 0) return ag__op_fail(t, AG_ERR_ARG, "split: n is 0, expects at least 1 piece");
    ag_status st = pieces_check(t, "split", x, &axis);
    if (st != AG_OK) return st;
    size_t sum = 0;
    char s[64];
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] == 0)
            return ag__op_fail(t, AG_ERR_SHAPE, "split: size %zu is 0 (pieces are not empty; x is %s)", i,
                               ag_shape_str(x, s, sizeof s));
        if (sizes[i] > x->shape[axis] - sum)
            return ag__op_fail(t, AG_ERR_SHAPE, "split: sizes 0..%zu add up past axis %d of %s (size %zu)", i,
                               axis, ag_shape_str(x, s, sizeof s), x->shape[axis]);
        sum += sizes[i];
    }
    if (sum != x->shape[axis])
        return ag__op_fail(t, AG_ERR_SHAPE, "split: sizes add up to %zu but axis %d of %s has %zu", sum, axis,
                           ag_shape_str(x, s, sizeof s), x->shape[axis]);
    return pieces(t, &split_op, x, axis, sizes, n, out);
}

ag_status ag_chunk(ag_tape *t, ag_tensor *x, int axis, size_t n, ag_tensor **out) {
    if (!t) return AG_ERR_ARG;
    if (out)
        for (size_t i = 0; i < n; i++) out[i] = NULL;
    if (!out) return ag__op_fail(t, AG_ERR_ARG, "chunk: out is NULL");
    if (n == 0) return ag__op_fail(t, AG_ERR_ARG, "chunk: n is 0, expects at least 1 chunk");
    ag_status st = pieces_check(t, "chunk", x, &axis);
    if (st != AG_OK) return st;
    const size_t N = x->shape[axis];
    if (n > N) {
        char s[64];
        return ag__op_fail(t, AG_ERR_SHAPE,
                           "chunk: n is %zu but axis %d of %s has %zu (chunks are not empty)", n, axis,
                           ag_shape_str(x, s, sizeof s), N);
    }
    /* NumPy's array_split: the first N % n chunks are one longer; the sizes go through out[] */
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t len = N / n + (i < N % n);
        const slice_params p = {axis, start, len, 1, 0};
        out[i] = AG__CALL(t, &chunk_op, &p, x);
        if (!out[i]) {
            for (size_t j = 0; j < n; j++) out[j] = NULL;
            return t->status;
        }
        start += len;
    }
    return AG_OK;
}

/* ---------------------------------------------------------------- concat, stack
 * concat: y = [x_0 | x_1 | ..] along axis (shapes equal elsewhere); stack: the x_k (all of one
 * shape) along a new axis. Both are, per outer index o (the axes before the axis), the inputs'
 * runs one after the other: run_k = x_k.size / outer elements of x_k from o * run_k. dx_k += the
 * same runs of dy. */

typedef struct join_params {
    int axis;
    int stack;
} join_params;

static ag_status join_shape(ag_node *n) {
    join_params *p = n->params;
    ag_node_grad_out_declare(n); /* its backward takes gradients from ag_node_grad_out */
    const ag_tensor *x0 = n->in[0];
    char s0[64], sk[64];
    const int nd = x0->ndim + p->stack;
    if (p->stack && x0->ndim == AG_MAX_DIMS)
        return ag_node_fail(n, AG_ERR_SHAPE, "inputs are %s, already %d dimensions (at most %d)",
                            ag_shape_str(x0, s0, sizeof s0), x0->ndim, AG_MAX_DIMS);
    const int axis = p->axis;
    ag_status st = ag__axis(n, &p->axis, nd, x0);
    if (st != AG_OK) return st;
    size_t d[AG_MAX_DIMS], along = 0;
    for (int k = 0; k < n->n_in; k++) {
        const ag_tensor *x = n->in[k];
        int same = x->ndim == x0->ndim;
        for (int i = 0; same && i < x->ndim; i++)
            same = x->shape[i] == x0->shape[i] || (!p->stack && i == p->axis);
        if (!same) {
            if (p->stack)
                return ag_node_fail(n, AG_ERR_SHAPE,
                                    "input %d is %s but input 0 is %s (shapes must be equal)", k,
                                    ag_shape_str(x, sk, sizeof sk), ag_shape_str(x0, s0, sizeof s0));
            return ag_node_fail(n, AG_ERR_SHAPE,
                                "input %d is %s but input 0 is %s (they must agree off axis %d)", k,
                                ag_shape_str(x, sk, sizeof sk), ag_shape_str(x0, s0, sizeof s0), axis);
        }
        along += p->stack ? 1 : x->shape[p->axis];
    }
    for (int i = 0, j = 0; i < nd; i++, j++) {
        if (i == p->axis) j -= p->stack; /* stack: the new axis takes no input axis */
        d[i] = i == p->axis ? along : x0->shape[j];
    }
    return ag_node_set_shape(n, nd, d);
}

static size_t join_outer(const ag_node *n) {
    size_t outer = 1;
    for (int i = 0; i < ((const join_params *)n->params)->axis; i++) outer *= n->out.shape[i];
    return outer;
}

AG__CLONES static ag_status join_forward(ag_node *n) {
    const size_t outer = join_outer(n);
    const int m = n->n_in;
    ag_real *restrict y = n->out.value;
    for (size_t o = 0; o < outer; o++)
        for (int k = 0; k < m; k++) {
            const size_t run = n->in[k]->size / outer;
            run_copy(y, n->in[k]->value + o * run, run);
            y += run;
        }
    return AG_OK;
}

AG__CLONES static ag_status join_backward(ag_node *n) {
    const size_t outer = join_outer(n);
    const int m = n->n_in;
    const ag_real *restrict dy = n->out.grad;
    /* Every element of each input is written once, and for o fixed the inputs come in order: an
     * input given twice is assigned at its first place and added at the later ones. */
    int assign[AG_MAX_IN];
    ag_real *dx[AG_MAX_IN];
    for (int k = 0; k < m; k++) dx[k] = ag_node_grad_out(n, k, &assign[k]);
    for (size_t o = 0; o < outer; o++)
        for (int k = 0; k < m; k++) {
            const size_t run = n->in[k]->size / outer;
            if (dx[k]) run_put(dx[k] + o * run, dy, run, assign[k]);
            dy += run;
        }
    return AG_OK;
}

static const ag_op concat_op = {"concat", AG_VARIADIC, sizeof(join_params), join_shape, join_forward,
                                join_backward};
static const ag_op stack_op = {"stack", AG_VARIADIC, sizeof(join_params), join_shape, join_forward,
                               join_backward};

static ag_tensor *join(ag_tape *t, const ag_op *op, ag_tensor *const *xs, size_t n, int axis, int stack) {
    if (!t) return NULL;
    if (!xs || n == 0 || n > AG_MAX_IN) {
        if (ag_tape_status(t) != AG_OK) return ag__op_missing(t); /* keep the first error */
        if (!xs) ag__op_fail(t, AG_ERR_ARG, "%s: xs is NULL", op->name);
        else ag__op_fail(t, AG_ERR_ARG, "%s: n is %zu, expects 1..%d tensors", op->name, n, AG_MAX_IN);
        return NULL;
    }
    return ag_call(t, op, xs, (int)n, &(join_params){axis, stack});
}

ag_tensor *ag_concat(ag_tape *t, ag_tensor *const *xs, size_t n, int axis) {
    return join(t, &concat_op, xs, n, axis, 0);
}
ag_tensor *ag_stack(ag_tape *t, ag_tensor *const *xs, size_t n, int axis) {
    return join(t, &stack_op, xs, n, axis, 1);
}

/* ---------------------------------------------------------------- pad
 * y = value everywhere, x at offset `before` (y's sizes are x's + before + after);
 * dx += the same block of dy. Rows of x's last axis are copied whole. */

typedef struct pad_params {
    size_t before[AG_MAX_DIMS], after[AG_MAX_DIMS];
    ag_real value;
    int null_arg; /* before or after NULL with ndim > 0 */
} pad_params;

static ag_status pad_shape(ag_node *n) {
    const pad_params *p = n->params;
    ag_node_grad_out_declare(n); /* pad_backward writes every element of dx once */
    const ag_tensor *x = n->in[0];
    char s[64];
    if (p->null_arg)
        return ag_node_fail(n, AG_ERR_ARG, "before or after is NULL (x is %s)", ag_shape_str(x, s, sizeof s));
    size_t d[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        d[i] = x->shape[i] + p->before[i];
        if (d[i] < x->shape[i] || d[i] + p->after[i] < d[i])
            return ag_node_fail(n, AG_ERR_SHAPE, "padding axis %d of %s by %zu and %zu overflows size_t", i,
                                ag_shape_str(x, s, sizeof s), p->before[i], p->after[i]);
        d[i] += p->after[i];
    }
    return ag_node_set_shape(n, x->ndim, d);
}

/* x's rows (its last axis) and where each lands in y: the 4-D index of x right-aligned */
typedef struct pad_plan {
    size_t xd[4], ys[4], off, row;
} pad_plan;

static void pad_plan_make(const ag_node *n, pad_plan *pl) {
    const pad_params *p = n->params;
    const ag_tensor *x = n->in[0];
    const int sh = 4 - x->ndim;
    size_t stride = 1;
    pl->off = 0;
    for (int i = 3; i >= 0; i--) {
        const int a = i - sh;
        pl->xd[i] = a >= 0 ? x->shape[a] : 1;
        pl->ys[i] = stride;
        if (a >= 0) {
            pl->off += p->before[a] * stride;
            stride *= n->out.shape[a];
        }
    }
    pl->row = pl->xd[3];
}

/* One pass over y, row by row (y's last axis): a row outside x's block is all value; a row
 * through it is value, x's row, value. */
AG__CLONES static ag_status pad_forward(ag_node *n) {
    const pad_params *p = n->params;
    const ag_tensor *x = n->in[0];
    const ag_real v = p->value;
    size_t yd[4], xd[4], b[4];
    for (int i = 0; i < 4; i++) {
        const int a = i - (4 - x->ndim);
        yd[i] = a >= 0 ? n->out.shape[a] : 1;
        xd[i] = a >= 0 ? x->shape[a] : 1;
        b[i] = a >= 0 ? p->before[a] : 0;
    }
    ag_real *restrict y = n->out.value;
    const ag_real *restrict xv = x->value;
    const size_t L = yd[3], X = xd[3], B = b[3];
    for (size_t i0 = 0; i0 < yd[0]; i0++) {
        const int in0 = i0 >= b[0] && i0 - b[0] < xd[0];
        for (size_t i1 = 0; i1 < yd[1]; i1++) {
            const int in1 = in0 && i1 >= b[1] && i1 - b[1] < xd[1];
            for (size_t i2 = 0; i2 < yd[2]; i2++, y += L) {
                if (!(in1 && i2 >= b[2] && i2 - b[2] < xd[2])) {
                    for (size_t j = 0; j < L; j++) y[j] = v;
                    continue;
                }
                const ag_real *restrict xr =
                    xv + (((i0 - b[0]) * xd[1] + (i1 - b[1])) * xd[2] + (i2 - b[2])) * X;
                for (size_t j = 0; j < B; j++) y[j] = v;
                run_copy(y + B, xr, X);
                for (size_t j = B + X; j < L; j++) y[j] = v;
            }
        }
    }
    return AG_OK;
}

AG__CLONES static ag_status pad_backward(ag_node *n) {
    int assign;
    ag_real *restrict dx = ag_node_grad_out(n, 0, &assign);
    if (!dx) return AG_OK;
    pad_plan pl;
    pad_plan_make(n, &pl);
    const ag_real *restrict dy = n->out.grad;
    for (size_t i0 = 0; i0 < pl.xd[0]; i0++)
        for (size_t i1 = 0; i1 < pl.xd[1]; i1++)
            for (size_t i2 = 0; i2 < pl.xd[2]; i2++, dx += pl.row)
                run_put(dx, dy + pl.off + i0 * pl.ys[0] + i1 * pl.ys[1] + i2 * pl.ys[2], pl.row, assign);
    return AG_OK;
}

static const ag_op pad_op = {"pad", 1, sizeof(pad_params), pad_shape, pad_forward, pad_backward};

ag_tensor *ag_pad(ag_tape *t, ag_tensor *x, const size_t *before, const size_t *after, ag_real value) {
    pad_params p = {{0}, {0}, value, 0};
    const int nd = x && x->ndim >= 0 && x->ndim <= AG_MAX_DIMS ? x->ndim : 0;
    p.null_arg = nd > 0 && (!before || !after);
    for (int i = 0; !p.null_arg && i < nd; i++) p.before[i] = before[i], p.after[i] = after[i];
    return AG__CALL(t, &pad_op, &p, x);
}

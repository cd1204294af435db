/*
 * shape.c - shape ops: the views reshape, squeeze, unsqueeze and flatten (the result shares the
 * input's values), permute, transpose_axes and the 2-D transpose (one blocked copy kernel; permute
 * is a view when the order of the elements is unchanged), and broadcast_to (a copy; a view when it only adds size-1 axes).
 * Slicing and joining are in join.c.
 *
 * Read next: reduce.c.
 */
#include "../internal.h"

/* ---------------------------------------------------------------- reshape (a view)
 * The output shares the input's value buffer (shape() points out.value at it, so the engine
 * allocates nothing); it has its own gradient, added back element by element: dx_i += dy_i. */

typedef struct reshape_params {
    int ndim;
    int null_shape; /* the caller passed shape == NULL with ndim > 0 */
    size_t shape[AG_MAX_DIMS];
} reshape_params;

static ag_status reshape_shape(ag_node *n) {
    const reshape_params *p = n->params;
    ag_node_grad_out_declare(n); /* its backward: ag_node_grad_out, or the view's buffer handed over */
    const ag_tensor *x = n->in[0];
    if (p->ndim < 0 || p->ndim > AG_MAX_DIMS)
        return ag_node_fail(n, AG_ERR_ARG, "rank %d is outside 0..%d", p->ndim, AG_MAX_DIMS);
    if (p->null_shape) return ag_node_fail(n, AG_ERR_ARG, "shape is NULL with rank %d", p->ndim);
    ag_tensor want = {0};
    want.ndim = p->ndim;
    for (int i = 0; i < p->ndim; i++) want.shape[i] = p->shape[i];
    size_t numel;
    int rc = ag__shape_numel(p->ndim, p->shape, &numel);
    if (rc != 0 || numel != x->size) {
        char sx[64], sw[64];
        if (rc == -2)
            return ag_node_fail(n, AG_ERR_SHAPE, "%s has a zero dimension", ag_shape_str(&want, sw, sizeof sw));
        if (rc != 0)
            return ag_node_fail(n, AG_ERR_SHAPE, "%s overflows size_t", ag_shape_str(&want, sw, sizeof sw));
        return ag_node_fail(n, AG_ERR_SHAPE, "%s has %zu elements but %s has %zu",
                            ag_shape_str(x, sx, sizeof sx), x->size, ag_shape_str(&want, sw, sizeof sw), numel);
    }
    ag_status st = ag_node_set_shape(n, p->ndim, p->shape);
    if (st == AG_OK) n->out.value = x->value; /* view: no copy */
    return st;
}

static ag_status reshape_forward(ag_node *n) {
    (void)n; /* the view already holds the values */
    return AG_OK;
}

/* A view's gradient is its input's, renamed: handed over when no other path reached the input yet
 * (no pass at all), else added. */
AG__CLONES static ag_status reshape_backward(ag_node *n) {
    if (ag__node_grad_steal(n, 0)) return AG_OK;
    int assign;
    ag_real *restrict dx = ag_node_grad_out(n, 0, &assign);
    if (!dx) return AG_OK;
    const ag_real *restrict dy = n->out.grad;
    if (assign) /* not stolen (a size mismatch cannot happen here; kept for safety) */
        for (size_t i = 0, N = n->out.size; i < N; i++) dx[i] = (ag_real)0 + dy[i];
    else
        for (size_t i = 0, N = n->out.size; i < N; i++) dx[i] += dy[i];
    return AG_OK;
}

static const ag_op reshape_op = {"reshape", 1, sizeof(reshape_params), reshape_shape, reshape_forward,
                                 reshape_backward};

ag_tensor *ag_reshape(ag_tape *t, ag_tensor *x, int ndim, const size_t *shape) {
    reshape_params p = {ndim, ndim > 0 && !shape, {1, 1, 1, 1}};
    if (shape && ndim > 0 && ndim <= AG_MAX_DIMS)
        for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    return AG__CALL(t, &reshape_op, &p, x);
}

/* ---------------------------------------------------------------- views: squeeze, unsqueeze, flatten
 * Each only renames the shape: out.value = x->value, and dx_i += dy_i (reshape_backward). */

typedef struct view_params {
    int a, b; /* squeeze/unsqueeze: a; flatten: a..b */
} view_params;

static ag_status view_forward(ag_node *n) {
    (void)n;
    return AG_OK;
}

/* The output as a view of x: the shape is set, the value aliases x's. */
static ag_status view_of(ag_node *n, int ndim, const size_t *shape) {
    ag_node_grad_out_declare(n); /* reshape_backward */
    ag_status st = ag_node_set_shape(n, ndim, shape);
    if (st == AG_OK) n->out.value = n->in[0]->value;
    return st;
}

static ag_status squeeze_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    int a = ((const view_params *)n->params)->a;
    ag_status st = ag__axis(n, &a, x->ndim, x);
    if (st != AG_OK) return st;
    if (x->shape[a] != 1) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "axis %d of %s has size %zu, not 1",
                            ((const view_params *)n->params)->a, ag_shape_str(x, s, sizeof s), x->shape[a]);
    }
    size_t d[AG_MAX_DIMS];
    for (int i = 0, j = 0; i < x->ndim; i++)
        if (i != a) d[j++] = x->shape[i];
    return view_of(n, x->ndim - 1, d);
}

static ag_status unsqueeze_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    char s[64];
    if (x->ndim == AG_MAX_DIMS)
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s, already %d dimensions (at most %d)",
                            ag_shape_str(x, s, sizeof s), x->ndim, AG_MAX_DIMS);
    int a = ((const view_params *)n->params)->a;
    ag_status st = ag__axis(n, &a, x->ndim + 1, x);
    if (st != AG_OK) return st;
    size_t d[AG_MAX_DIMS];
    for (int i = 0, j = 0; i <= x->ndim; i++) d[i] = i == a ? 1 : x->shape[j++];
    return view_of(n, x->ndim + 1, d);
}

/* A scalar flattens like a 1-D tensor of one element (as in NumPy and PyTorch). */
static ag_status flatten_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const view_params *p = n->params;
    int a = p->a, b = p->b, nd = x->ndim ? x->ndim : 1;
    ag_status st = ag__axis(n, &a, nd, x);
    if (st == AG_OK) st = ag__axis(n, &b, nd, x);
    if (st != AG_OK) return st;
    if (a > b) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "start axis %d comes after end axis %d in %s", p->a, p->b,
                            ag_shape_str(x, s, sizeof s));
    }
    size_t d[AG_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < a; i++) d[j++] = x->shape[i];
    d[j] = 1;
    for (int i = a; i <= b; i++) d[j] *= x->shape[i];
    j++;
    for (int i = b + 1; i < x->ndim; i++) d[j++] = x->shape[i];
    return view_of(n, j, d);
}

static const ag_op squeeze_op = {"squeeze", 1, sizeof(view_params), squeeze_shape, view_forward,
                                 reshape_backward};
static const ag_op unsqueeze_op = {"unsqueeze", 1, sizeof(view_params), unsqueeze_shape, view_forward,
                                   reshape_backward};
static const ag_op flatten_op = {"flatten", 1, sizeof(view_params), flatten_shape, view_forward,
                                 reshape_backward};

ag_tensor *ag_squeeze(ag_tape *t, ag_tensor *x, int axis) {
    const view_params p = {axis, 0};
    return AG__CALL(t, &squeeze_op, &p, x);
}
ag_tensor *ag_unsqueeze(ag_tape *t, ag_tensor *x, int axis) {
    const view_params p = {axis, 0};
    return AG__CALL(t, &unsqueeze_op, &p, x);
}
ag_tensor *ag_flatten(ag_tape *t, ag_tensor *x, int start_axis, int end_axis) {
    const view_params p = {start_axis, end_axis};
    return AG__CALL(t, &flatten_op, &p, x);
}

/* ---------------------------------------------------------------- permute, transpose_axes
 * y[i_perm[0], .., i_perm[k-1]] = x[i_0, .., i_k-1], i.e. y.shape[j] = x.shape[perm[j]];
 * dx += dy permuted back (the inverse permutation). A view when the axes of size > 1 keep their
 * order. The copy first drops size-1 axes and merges input axes that stay adjacent, leaving at
 * most 4 groups; then either the innermost group stays innermost (contiguous runs: the head split
 * 0,2,1,3 of attention copies runs of the head size) or a blocked 2-D transposition moves the
 * input's innermost group against the output's. */

typedef struct permute_params {
    int kind; /* 0: permute (perm), 1: transpose_axes (a, b) */
    int null_perm;
    int perm[AG_MAX_DIMS]; /* normalised by shape() */
    int a, b;
} permute_params;

/* The copy plan: k groups in output order, each with its size and its stride in the source. */
typedef struct perm_plan {
    int k;
    size_t d[AG_MAX_DIMS], s[AG_MAX_DIMS];
} perm_plan;

/* src has shape sh (nd dims); dst = src permuted by perm (dst axis j is src axis perm[j]). */
static void perm_plan_make(const size_t *sh, int nd, const int *perm, perm_plan *p) {
    int keep[AG_MAX_DIMS], nk = 0; /* source axes of size > 1, in output order */
    for (int j = 0; j < nd; j++)
        if (sh[perm[j]] > 1) keep[nk++] = perm[j];
    /* groups: runs of consecutive source axes (skipping size-1 ones) in output order */
    int lo[AG_MAX_DIMS], hi[AG_MAX_DIMS];
    p->k = 0;
    for (int j = 0; j < nk; j++) {
        int adj = 0;
        if (p->k > 0) {
            adj = 1;
            for (int a = hi[p->k - 1] + 1; a < keep[j]; a++) adj &= sh[a] == 1;
            adj &= keep[j] > hi[p->k - 1];
        }
        if (adj) hi[p->k - 1] = keep[j];
        else lo[p->k] = hi[p->k] = keep[j], p->k++;
    }
    /* group sizes, and source strides: the product of the sizes of the source axes after it */
    for (int g = 0; g < p->k; g++) {
        size_t d = 1, s = 1;
        for (int a = lo[g]; a <= hi[g]; a++) d *= sh[a];
        for (int a = hi[g] + 1; a < nd; a++) s *= sh[a];
        p->d[g] = d;
        p->s[g] = s;
    }
}

enum { PERM_TILE = 16 };

/* dst (contiguous in plan order) OP src, OP `=` or `+=`: two copies of one loop nest. Runs when the
 * innermost group keeps stride 1; else group q (source stride 1) against the innermost output group
 * (source stride sr) in PERM_TILE x PERM_TILE tiles, dst[c * os_q + j] = src[j * sr + c], the other
 * groups (at most 2) as outer loops. */
#define PERMUTE_KERNEL(fname, OP)                                                                         \
    AG__CLONES static void fname(const perm_plan *p, const ag_real *restrict src, ag_real *restrict dst,  \
                                 size_t total) {                                                          \
        const int k = p->k;                                                                               \
        if (k <= 1) {                                                                                     \
            for (size_t i = 0; i < total; i++) dst[i] OP src[i];                                          \
            return;                                                                                       \
        }                                                                                                 \
        size_t d[4] = {1, 1, 1, 1}, s[4] = {0, 0, 0, 0};                                                  \
        if (p->s[k - 1] == 1) { /* contiguous runs of d[3] */                                             \
            for (int g = 0; g < k; g++) d[4 - k + g] = p->d[g], s[4 - k + g] = p->s[g];                   \
            const size_t L = d[3];                                                                        \
            for (size_t i0 = 0; i0 < d[0]; i0++)                                                          \
                for (size_t i1 = 0; i1 < d[1]; i1++)                                                      \
                    for (size_t i2 = 0; i2 < d[2]; i2++) {                                                \
                        const ag_real *restrict x = src + i0 * s[0] + i1 * s[1] + i2 * s[2];              \
                        for (size_t i = 0; i < L; i++) dst[i] OP x[i];                                    \
                        dst += L;                                                                         \
                    }                                                                                     \
            return;                                                                                       \
        }                                                                                                 \
        int q = 0;                                                                                        \
        while (p->s[q] != 1) q++;                                                                         \
        size_t os[AG_MAX_DIMS], o = 1;                                                                    \
        for (int g = k - 1; g >= 0; g--) os[g] = o, o *= p->d[g];                                         \
        size_t od[2] = {1, 1}, oss[2] = {0, 0}, ods[2] = {0, 0};                                          \
        for (int g = 0, m = 0; g < k - 1; g++)                                                            \
            if (g != q) od[m] = p->d[g], oss[m] = p->s[g], ods[m] = os[g], m++;                           \
        const size_t R = p->d[k - 1], sr = p->s[k - 1], Cq = p->d[q], osq = os[q];                        \
        for (size_t i0 = 0; i0 < od[0]; i0++)                                                             \
            for (size_t i1 = 0; i1 < od[1]; i1++) {                                                       \
                const ag_real *restrict x = src + i0 * oss[0] + i1 * oss[1];                              \
                ag_real *restrict y = dst + i0 * ods[0] + i1 * ods[1];                                    \
                for (size_t c0 = 0; c0 < Cq; c0 += PERM_TILE)                                             \
                    for (size_t j0 = 0; j0 < R; j0 += PERM_TILE) {                                        \
                        const size_t c1 = c0 + PERM_TILE < Cq ? c0 + PERM_TILE : Cq;                      \
                        const size_t j1 = j0 + PERM_TILE < R ? j0 + PERM_TILE : R;                        \
                        for (size_t c = c0; c < c1; c++)                                                  \
                            for (size_t j = j0; j < j1; j++) y[c * osq + j] OP x[j * sr + c];             \
                    }                                                                                     \
            }                                                                                             \
    }
PERMUTE_KERNEL(permute_set, =)
PERMUTE_KERNEL(permute_add, +=)

/* ---------------------------------------------------------------- transpose (2-D, a copy)
 * y[j, i] = x[i, j];  dx[i, j] += dy[j, i]: permute's blocked kernel with perm (1, 0). */

static ag_status transpose_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (x->ndim != 2) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s, must be 2-D", ag_shape_str(x, s, sizeof s));
    }
    return ag_node_set_shape(n, 2, (size_t[]){x->shape[1], x->shape[0]});
}

static const int swap2[2] = {1, 0};

static ag_status transpose_forward(ag_node *n) {
    perm_plan pl;
    perm_plan_make(n->in[0]->shape, 2, swap2, &pl);
    permute_set(&pl, n->in[0]->value, n->out.value, n->out.size);
    return AG_OK;
}

static ag_status transpose_backward(ag_node *n) {
    if (!n->in[0]->grad) return AG_OK;
    perm_plan pl;
    perm_plan_make(n->out.shape, 2, swap2, &pl);
    permute_add(&pl, n->out.grad, n->in[0]->grad, n->in[0]->size);
    return AG_OK;
}

static const ag_op transpose_op = {"transpose", 1, 0, transpose_shape, transpose_forward,
                                   transpose_backward};
ag_tensor *ag_transpose(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &transpose_op, NULL, x); }

/* "(0, 2, 1)" */
static const char *perm_str(const int *perm, int nd, char *buf, size_t size) {
    size_t at = 0;
    buf[at++] = '(';
    buf[at] = '\0';
    for (int i = 0; i < nd && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ", %d" : "%d", perm[i]);
    if (at < size - 1) buf[at++] = ')', buf[at] = '\0';
    return buf;
}

static ag_status permute_shape(ag_node *n) {
    permute_params *p = n->params;
    ag_node_grad_out_declare(n); /* its backward: ag_node_grad_out, or the view's buffer handed over */
    const ag_tensor *x = n->in[0];
    const int nd = x->ndim;
    char sx[64], sp[64];
    if (p->kind == 1) { /* transpose_axes: the swap of a and b */
        ag_status st = ag__axis(n, &p->a, nd, x);
        if (st == AG_OK) st = ag__axis(n, &p->b, nd, x);
        if (st != AG_OK) return st;
        for (int i = 0; i < nd; i++) p->perm[i] = i;
        p->perm[p->a] = p->b;
        p->perm[p->b] = p->a;
    } else {
        if (p->null_perm)
            return ag_node_fail(n, AG_ERR_ARG, "perm is NULL for %s", ag_shape_str(x, sx, sizeof sx));
        unsigned seen = 0;
        for (int i = 0; i < nd; i++) {
            const int a = p->perm[i] < 0 ? p->perm[i] + nd : p->perm[i];
            if (a < 0 || a >= nd || (seen & (1u << a)))
                return ag_node_fail(n, AG_ERR_SHAPE, "perm %s is not a permutation of the %d axes of %s",
                                    perm_str(p->perm, nd, sp, sizeof sp), nd, ag_shape_str(x, sx, sizeof sx));
            seen |= 1u << a;
        }
        for (int i = 0; i < nd; i++) p->perm[i] = p->perm[i] < 0 ? p->perm[i] + nd : p->perm[i];
    }
    size_t d[AG_MAX_DIMS];
    int last = -1, view = 1;
    for (int j = 0; j < nd; j++) {
        d[j] = x->shape[p->perm[j]];
        if (d[j] > 1) view &= p->perm[j] > last, last = p->perm[j];
    }
    ag_status st = ag_node_set_shape(n, nd, d);
    if (st == AG_OK && view) n->out.value = x->value; /* the same order of elements */
    return st;
}

static ag_status permute_forward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (n->out.value == x->value) return AG_OK; /* a view */
    const permute_params *p = n->params;
    perm_plan pl;
    perm_plan_make(x->shape, x->ndim, p->perm, &pl);
    permute_set(&pl, x->value, n->out.value, n->out.size);
    return AG_OK;
}

static ag_status permute_backward(ag_node *n) {
    ag_tensor *x = n->in[0];
    if (n->out.value == x->value) return reshape_backward(n);
    int assign;
    if (!ag_node_grad_out(n, 0, &assign)) return AG_OK;
    if (assign) memset(x->grad, 0, x->size * sizeof(ag_real)); /* permute_add adds */
    const permute_params *p = n->params;
    int inv[AG_MAX_DIMS];
    for (int j = 0; j < x->ndim; j++) inv[p->perm[j]] = j;
    perm_plan pl;
    perm_plan_make(n->out.shape, x->ndim, inv, &pl);
    permute_add(&pl, n->out.grad, x->grad, x->size);
    return AG_OK;
}

static const ag_op permute_op = {"permute", 1, sizeof(permute_params), permute_shape, permute_forward,
                                 permute_backward};
static const ag_op transpose_axes_op = {"transpose_axes", 1, sizeof(permute_params), permute_shape,
                                        permute_forward, permute_backward};

ag_tensor *ag_permute(ag_tape *t, ag_tensor *x, const int *perm) {
    permute_params p = {0, perm == NULL && x && x->ndim > 0, {0, 1, 2, 3}, 0, 0}; /* a scalar has no axes */
    if (perm && x && x->ndim >= 0 && x->ndim <= AG_MAX_DIMS)
        for (int i = 0; i < x->ndim; i++) p.perm[i] = perm[i];
    return AG__CALL(t, &permute_op, &p, x);
}

ag_tensor *ag_transpose_axes(ag_tape *t, ag_tensor *x, int a, int b) {
    const permute_params p = {1, 0, {0, 1, 2, 3}, a, b};
    return AG__CALL(t, &transpose_axes_op, &p, x);
}

/* ---------------------------------------------------------------- broadcast_to
 * y = x repeated along the axes where x has size 1 (NumPy rules, x right-aligned against shape);
 * dx += dy summed over those axes. Axes of the same kind (repeated or kept) merge into at most 4
 * alternating groups: the innermost is a contiguous copy / add of a run, or a fill / sum. A view
 * when only size-1 axes are added (the element count is x's). */

typedef struct bcast_to_params {
    int ndim;
    int null_shape;
    size_t shape[AG_MAX_DIMS];
} bcast_to_params;

typedef struct bc_plan {
    int k;
    size_t d[AG_MAX_DIMS], s[AG_MAX_DIMS]; /* s: x stride, 0 on a repeated group */
} bc_plan;

static void bc_plan_make(const ag_tensor *x, const ag_tensor *y, bc_plan *p) {
    size_t dx[4], dy[4];
    for (int i = 0; i < 4; i++) {
        dx[i] = i < 4 - x->ndim ? 1 : x->shape[i - (4 - x->ndim)];
        dy[i] = i < 4 - y->ndim ? 1 : y->shape[i - (4 - y->ndim)];
    }
    int kind[4];
    p->k = 0;
    for (int i = 0; i < 4; i++) {
        if (dy[i] == 1) continue;
        const int rep = dx[i] == 1;
        if (p->k > 0 && kind[p->k - 1] == rep) p->d[p->k - 1] *= dy[i];
        else kind[p->k] = rep, p->d[p->k++] = dy[i];
    }
    size_t s = 1;
    for (int g = p->k - 1; g >= 0; g--) {
        p->s[g] = kind[g] ? 0 : s;
        if (!kind[g]) s *= p->d[g];
    }
}

/* The groups right-aligned into 4 (leading groups of size 1); the innermost is a run or a fill. */
static void bc_pad4(const bc_plan *p, size_t d[4], size_t s[4]) {
    for (int i = 0; i < 4; i++) {
        const int g = i - (4 - p->k);
        d[i] = g >= 0 ? p->d[g] : 1;
        s[i] = g >= 0 ? p->s[g] : 0;
    }
}

AG__CLONES static void bc_fwd(const bc_plan *p, const ag_real *restrict x, ag_real *restrict y) {
    size_t d[4], s[4];
    bc_pad4(p, d, s);
    const size_t L = d[3];
    for (size_t i0 = 0; i0 < d[0]; i0++)
        for (size_t i1 = 0; i1 < d[1]; i1++)
            for (size_t i2 = 0; i2 < d[2]; i2++, y += L) {
                const ag_real *restrict xr = x + i0 * s[0] + i1 * s[1] + i2 * s[2];
                if (s[3])
                    for (size_t j = 0; j < L; j++) y[j] = xr[j];
                else
                    for (size_t j = 0; j < L; j++) y[j] = xr[0];
            }
}

AG__CLONES static void bc_bwd(const bc_plan *p, ag_real *restrict dx, const ag_real *restrict dy) {
    size_t d[4], s[4];
    bc_pad4(p, d, s);
    const size_t L = d[3];
    for (size_t i0 = 0; i0 < d[0]; i0++)
        for (size_t i1 = 0; i1 < d[1]; i1++)
            for (size_t i2 = 0; i2 < d[2]; i2++, dy += L) {
                ag_real *restrict g = dx + i0 * s[0] + i1 * s[1] + i2 * s[2];
                if (s[3])
                    for (size_t j = 0; j < L; j++) g[j] += dy[j];
                else g[0] += (ag_real)ag__sum(dy, L);
            }
}

static ag_status bcast_to_shape(ag_node *n) {
    const bcast_to_params *p = n->params;
    ag_node_grad_out_declare(n); /* its backward: ag_node_grad_out, or the view's buffer handed over */
    const ag_tensor *x = n->in[0];
    if (p->ndim < 0 || p->ndim > AG_MAX_DIMS)
        return ag_node_fail(n, AG_ERR_ARG, "rank %d is outside 0..%d", p->ndim, AG_MAX_DIMS);
    if (p->null_shape) return ag_node_fail(n, AG_ERR_ARG, "shape is NULL with rank %d", p->ndim);
    ag_tensor want = {0};
    want.ndim = p->ndim;
    for (int i = 0; i < p->ndim; i++) want.shape[i] = p->shape[i];
    int ok = x->ndim <= p->ndim;
    for (int i = 0; ok && i < x->ndim; i++) {
        const size_t a = x->shape[x->ndim - 1 - i], b = p->shape[p->ndim - 1 - i];
        ok = a == b || a == 1;
    }
    char sx[64], sw[64];
    if (!ok)
        return ag_node_fail(n, AG_ERR_SHAPE, "%s does not broadcast to %s", ag_shape_str(x, sx, sizeof sx),
                            ag_shape_str(&want, sw, sizeof sw));
    ag_status st = ag_node_set_shape(n, p->ndim, p->shape);
    if (st == AG_OK && n->out.size == x->size) n->out.value = x->value; /* only size-1 axes added */
    return st;
}

static ag_status bcast_to_forward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (n->out.value == x->value) return AG_OK;
    bc_plan p;
    bc_plan_make(x, &n->out, &p);
    bc_fwd(&p, x->value, n->out.value);
    return AG_OK;
}

static ag_status bcast_to_backward(ag_node *n) {
    ag_tensor *x = n->in[0];
    if (n->out.value == x->value) return reshape_backward(n);
    int assign;
    if (!ag_node_grad_out(n, 0, &assign)) return AG_OK;
    if (assign) memset(x->grad, 0, x->size * sizeof(ag_real)); /* bc_bwd adds */
    bc_plan p;
    bc_plan_make(x, &n->out, &p);
    bc_bwd(&p, x->grad, n->out.grad);
    return AG_OK;
}

static const ag_op bcast_to_op = {"broadcast_to", 1, sizeof(bcast_to_params), bcast_to_shape,
                                  bcast_to_forward, bcast_to_backward};

ag_tensor *ag_broadcast_to(ag_tape *t, ag_tensor *x, int ndim, const size_t *shape) {
    bcast_to_params p = {ndim, ndim > 0 && !shape, {1, 1, 1, 1}};
    if (shape && ndim > 0 && ndim <= AG_MAX_DIMS)
        for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    return AG__CALL(t, &bcast_to_op, &p, x);
}

/*
 * shape.c - shape ops: reshape (a view of the input's values) and 2-D transpose (a copy).
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

AG__CLONES static ag_status reshape_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ag_real *restrict dy = n->out.grad;
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

/* ---------------------------------------------------------------- transpose (2-D, a copy)
 * y[j, i] = x[i, j];  dx[i, j] += dy[j, i] */

static ag_status transpose_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (x->ndim != 2) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s, must be 2-D", ag_shape_str(x, s, sizeof s));
    }
    return ag_node_set_shape(n, 2, (size_t[]){x->shape[1], x->shape[0]});
}

static ag_status transpose_forward(ag_node *n) {
    const size_t R = n->in[0]->shape[0], C = n->in[0]->shape[1];
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    for (size_t i = 0; i < R; i++)
        for (size_t j = 0; j < C; j++) y[j * R + i] = x[i * C + j];
    return AG_OK;
}

static ag_status transpose_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const size_t R = n->in[0]->shape[0], C = n->in[0]->shape[1];
    const ag_real *restrict dy = n->out.grad;
    for (size_t i = 0; i < R; i++)
        for (size_t j = 0; j < C; j++) dx[i * C + j] += dy[j * R + i];
    return AG_OK;
}

static const ag_op transpose_op = {"transpose", 1, 0, transpose_shape, transpose_forward,
                                   transpose_backward};
ag_tensor *ag_transpose(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &transpose_op, NULL, x); }

/*
 * ops/index.c - indexing by int32 side inputs: gather_rows (embedding lookup), index_select,
 * take_along and one_hot.
 *
 * The indices are the caller's `const int32_t *` array, as ag_cross_entropy's labels: shape()
 * checks every one before anything is allocated, and forward copies them into the node's arena
 * (ag_node_alloc) only when backward will run, so the caller may reuse the array at once.
 * Backward is a scatter-add in index order, one thread: repeated indices add up exactly, and the
 * result is the same on every run and thread count.
 *
 * Read next: ops/compare.c.
 */
#include "../internal.h"

typedef struct index_params {
    const int32_t *idx; /* the caller's array: read in shape() and forward only */
    size_t n;           /* gather_rows, index_select, one_hot: entries; take_along: k */
    size_t classes;     /* one_hot */
    int axis;           /* index_select, take_along; shape() normalises it */
} index_params;

/* AG_ERR_ARG naming the first of count indices outside 0..len-1. Valid iff (uint32_t)v < len
 * (negatives wrap past INT32_MAX), one compare per entry and no early exit in the common case. */
static ag_status check_idx(ag_node *n, const int32_t *restrict idx, size_t count, size_t len) {
    const uint64_t lim = len < ((uint64_t)1 << 31) ? (uint64_t)len : (uint64_t)1 << 31;
    unsigned bad = 0;
    for (size_t k = 0; k < count; k++) bad |= (uint64_t)(uint32_t)idx[k] >= lim;
    if (!bad) return AG_OK;
    for (size_t k = 0;; k++)
        if ((uint64_t)(uint32_t)idx[k] >= lim)
            return ag_node_fail(n, AG_ERR_ARG, "index %ld at position %zu is outside 0..%zu", (long)idx[k], k,
                                len - 1);
}

/* The indices for backward: a copy in the arena when it will run (count entries). */
static ag_status keep_idx(ag_node *n, size_t count) {
    if (!ag_node_needs_grad(n)) return AG_OK;
    int32_t *keep = ag_node_alloc(n, count * sizeof *keep);
    if (!keep) return AG_ERR_NOMEM; /* ag_node_alloc recorded the message */
    memcpy(keep, ((const index_params *)n->params)->idx, count * sizeof *keep);
    n->saved = keep;
    return AG_OK;
}

static ag_status need_idx(ag_node *n, const index_params *p, const char *count_name) {
    if (!p->idx) return ag_node_fail(n, AG_ERR_ARG, "idx is NULL");
    if (p->n == 0) return ag_node_fail(n, AG_ERR_ARG, "%s is 0", count_name);
    return AG_OK;
}

/* x seen as outer x len x inner around axis, gathered to outer x n x inner:
 *   y[o, k, :] = x[o, idx[k], :];   dx[o, idx[k], :] += dy[o, k, :]
 * gather_rows is the case axis 0 (outer 1), a row of D = inner elements per index. */
static void select_fwd(const ag_real *restrict x, ag_real *restrict y, const int32_t *restrict idx, size_t n,
                       size_t outer, size_t len, size_t inner) {
    if (inner == 1) {
        for (size_t o = 0; o < outer; o++, x += len, y += n)
            for (size_t k = 0; k < n; k++) y[k] = x[idx[k]];
        return;
    }
    for (size_t o = 0; o < outer; o++, x += len * inner)
        for (size_t k = 0; k < n; k++, y += inner) memcpy(y, x + (size_t)idx[k] * inner, inner * sizeof *y);
}

AG__CLONES static void select_bwd(ag_real *restrict dx, const ag_real *restrict dy, const int32_t *restrict idx,
                                  size_t n, size_t outer, size_t len, size_t inner) {
    if (inner == 1) {
        for (size_t o = 0; o < outer; o++, dx += len, dy += n)
            for (size_t k = 0; k < n; k++) dx[idx[k]] += dy[k];
        return;
    }
    for (size_t o = 0; o < outer; o++, dx += len * inner)
        for (size_t k = 0; k < n; k++, dy += inner) {
            ag_real *restrict d = dx + (size_t)idx[k] * inner;
            for (size_t i = 0; i < inner; i++) d[i] += dy[i];
        }
}

/* ---------------------------------------------------------------- gather_rows
 * table V x d1.. (rank 1..4) -> n x d1..: y[k] = table[idx[k]];  dtable[idx[k]] += dy[k] */

static ag_status gather_rows_shape(ag_node *n) {
    const index_params *p = n->params;
    const ag_tensor *x = n->in[0];
    if (x->ndim < 1) return ag_node_fail(n, AG_ERR_SHAPE, "table is a scalar, must have rows (V x ...)");
    ag_status st = need_idx(n, p, "n");
    if (st != AG_OK) return st;
    size_t shape[AG_MAX_DIMS];
    shape[0] = p->n;
    for (int i = 1; i < x->ndim; i++) shape[i] = x->shape[i];
    st = ag_node_set_shape(n, x->ndim, shape);
    return st != AG_OK ? st : check_idx(n, p->idx, p->n, x->shape[0]);
}

static ag_status gather_rows_forward(ag_node *n) {
    const index_params *p = n->params;
    const ag_tensor *x = n->in[0];
    select_fwd(x->value, n->out.value, p->idx, p->n, 1, x->shape[0], x->size / x->shape[0]);
    return keep_idx(n, p->n);
}

static ag_status gather_rows_backward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (!x->grad) return AG_OK;
    select_bwd(x->grad, n->out.grad, n->saved, n->out.shape[0], 1, x->shape[0], x->size / x->shape[0]);
    return AG_OK;
}

static const ag_op gather_rows_op = {"gather_rows", 1, sizeof(index_params), gather_rows_shape,
                                     gather_rows_forward, gather_rows_backward};
ag_tensor *ag_gather_rows(ag_tape *t, ag_tensor *table, const int32_t *idx, size_t n) {
    const index_params p = {idx, n, 0, 0};
    return AG__CALL(t, &gather_rows_op, &p, table);
}

/* ---------------------------------------------------------------- index_select
 * y = x with axis a replaced by the n picked entries: y[.., k, ..] = x[.., idx[k], ..] */

static ag_status index_select_shape(ag_node *n) {
    index_params *p = n->params;
    const ag_tensor *x = n->in[0];
    ag_status st = ag__axis(n, &p->axis, x->ndim, x);
    if (st == AG_OK) st = need_idx(n, p, "n");
    if (st != AG_OK) return st;
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = i == p->axis ? p->n : x->shape[i];
    st = ag_node_set_shape(n, x->ndim, shape);
    return st != AG_OK ? st : check_idx(n, p->idx, p->n, x->shape[p->axis]);
}

static ag_status index_select_forward(ag_node *n) {
    const index_params *p = n->params;
    size_t outer, len, inner;
    ag__axis_split(n->in[0], p->axis, &outer, &len, &inner);
    select_fwd(n->in[0]->value, n->out.value, p->idx, p->n, outer, len, inner);
    return keep_idx(n, p->n);
}

static ag_status index_select_backward(ag_node *n) {
    const index_params *p = n->params;
    if (!n->in[0]->grad) return AG_OK;
    size_t outer, len, inner;
    ag__axis_split(n->in[0], p->axis, &outer, &len, &inner);
    select_bwd(n->in[0]->grad, n->out.grad, n->saved, p->n, outer, len, inner);
    return AG_OK;
}

static const ag_op index_select_op = {"index_select", 1, sizeof(index_params), index_select_shape,
                                      index_select_forward, index_select_backward};
ag_tensor *ag_index_select(ag_tape *t, ag_tensor *x, int axis, const int32_t *idx, size_t n) {
    const index_params p = {idx, n, 0, axis};
    return AG__CALL(t, &index_select_op, &p, x);
}

/* ---------------------------------------------------------------- take_along
 * x outer x len x inner, idx and y outer x k x inner (torch.take_along_dim / gather):
 *   y[o, j, i] = x[o, idx[o, j, i], i];   dx[o, idx[o, j, i], i] += dy[o, j, i] */

static ag_status take_along_shape(ag_node *n) {
    index_params *p = n->params;
    const ag_tensor *x = n->in[0];
    ag_status st = ag__axis(n, &p->axis, x->ndim, x);
    if (st == AG_OK) st = need_idx(n, p, "k");
    if (st != AG_OK) return st;
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = i == p->axis ? p->n : x->shape[i];
    st = ag_node_set_shape(n, x->ndim, shape);
    return st != AG_OK ? st : check_idx(n, p->idx, n->out.size, x->shape[p->axis]);
}

static ag_status take_along_forward(ag_node *n) {
    const index_params *p = n->params;
    size_t outer, len, inner;
    ag__axis_split(n->in[0], p->axis, &outer, &len, &inner);
    const size_t k = p->n;
    const int32_t *restrict idx = p->idx;
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    for (size_t o = 0; o < outer; o++, x += len * inner)
        for (size_t j = 0; j < k; j++, y += inner, idx += inner)
            for (size_t i = 0; i < inner; i++) y[i] = x[(size_t)idx[i] * inner + i];
    return keep_idx(n, n->out.size);
}

AG__CLONES static ag_status take_along_backward(ag_node *n) {
    const index_params *p = n->params;
    if (!n->in[0]->grad) return AG_OK;
    size_t outer, len, inner;
    ag__axis_split(n->in[0], p->axis, &outer, &len, &inner);
    const size_t k = p->n;
    const int32_t *restrict idx = n->saved;
    ag_real *restrict dx = n->in[0]->grad;
    const ag_real *restrict dy = n->out.grad;
    for (size_t o = 0; o < outer; o++, dx += len * inner)
        for (size_t j = 0; j < k; j++, dy += inner, idx += inner)
            for (size_t i = 0; i < inner; i++) dx[(size_t)idx[i] * inner + i] += dy[i];
    return AG_OK;
}

static const ag_op take_along_op = {"take_along", 1, sizeof(index_params), take_along_shape,
                                    take_along_forward, take_along_backward};
ag_tensor *ag_take_along(ag_tape *t, ag_tensor *x, int axis, const int32_t *idx, size_t k) {
    const index_params p = {idx, k, 0, axis};
    return AG__CALL(t, &take_along_op, &p, x);
}

/* ---------------------------------------------------------------- one_hot
 * y[k, c] = (c == idx[k]): an op of no inputs, without backward (its result needs no gradient). */

static ag_status one_hot_shape(ag_node *n) {
    const index_params *p = n->params;
    ag_status st = need_idx(n, p, "n");
    if (st == AG_OK && p->classes == 0) st = ag_node_fail(n, AG_ERR_ARG, "classes is 0");
    if (st == AG_OK) st = ag_node_set_shape(n, 2, (size_t[]){p->n, p->classes});
    return st != AG_OK ? st : check_idx(n, p->idx, p->n, p->classes);
}

static ag_status one_hot_forward(ag_node *n) {
    const index_params *p = n->params;
    memset(n->out.value, 0, n->out.size * sizeof(ag_real));
    for (size_t k = 0; k < p->n; k++) n->out.value[k * p->classes + (size_t)p->idx[k]] = 1;
    return AG_OK;
}

static const ag_op one_hot_op = {"one_hot", 0, sizeof(index_params), one_hot_shape, one_hot_forward, NULL};
ag_tensor *ag_one_hot(ag_tape *t, const int32_t *idx, size_t n, size_t classes) {
    const index_params p = {idx, n, classes, 0};
    return ag_call(t, &one_hot_op, NULL, 0, &p);
}

/*
 * grad.c - gradient plumbing: detach (stop-gradient).
 *
 * detach(x) is x's values as a view, like reshape's: shape() points out.value at x->value, so the
 * engine allocates and copies nothing. The engine never marks its result as requiring a gradient
 * (tape.c, apply_impl), so nothing downstream of it alone is recorded for backward, and no
 * gradient reaches x through it: d detach(x) / dx = 0 by definition. Hence no backward function.
 */
#include "../internal.h"

static ag_status detach_shape(ag_node *n) {
    ag__node_shape_like(n, n->in[0]);
    n->out.value = n->in[0]->value; /* a view: no copy */
    return AG_OK;
}

static ag_status detach_forward(ag_node *n) {
    (void)n; /* the view already holds the values */
    return AG_OK;
}

const ag_op ag__detach_op = {"detach", 1, 0, detach_shape, detach_forward, NULL};

ag_tensor *ag_detach(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &ag__detach_op, NULL, x); }

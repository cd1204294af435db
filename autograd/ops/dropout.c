/*
 * ops/dropout.c - inverted dropout: y = x m / (1 - p), m_i in {0, 1} kept with probability 1 - p;
 * dx += dy m / (1 - p). Identity (a view of x, dx += dy) in evaluation mode and for p = 0.
 *
 * The mask comes from the counter-based generator (rng.c): element i is dropped when the top 53
 * bits of ag_rng_counter(seed, k, stream, i), as a fraction of 2^53, are below p (keys as
 * ag_tape_set_seed says). Each element's bits depend only on its key and index, so the mask does
 * not depend on threads, on the order ops are recorded, or on anything else drawn that step.
 * Forward keeps the mask as one byte per element for backward: recomputing it there costs the
 * hash again (see bench notes in the commit), a byte is read at stream speed.
 *
 * Read next: ops/norm.c.
 */
#include "../internal.h"

typedef struct dropout_params {
    ag_real p;
    uint64_t stream;
    int active; /* set by shape(): training and p > 0 (else the identity view) */
} dropout_params;

static ag_status dropout_shape(ag_node *n) {
    dropout_params *p = n->params;
    const ag_tensor *x = n->in[0];
    if (!(p->p >= 0 && p->p < 1)) return ag_node_fail(n, AG_ERR_ARG, "p %g is outside [0, 1)", (double)p->p);
    p->active = n->out.tape->training && p->p > 0;
    ag_status st = ag__node_shape_like(n, x);
    if (!p->active) n->out.value = x->value; /* identity: a view, no copy */
    return st;
}

AG__CLONES static void dropout_mask(ag_real *restrict y, uint8_t *restrict m, const ag_real *restrict x, size_t N,
                                    uint64_t key, uint64_t thr, ag_real scale) {
    for (size_t i = 0; i < N; i++) {
        const uint64_t h = ag__mix64(key + (uint64_t)(i + 1) * AG__GOLDEN);
        const uint8_t keep = (h >> 11) >= thr;
        m[i] = keep;
        y[i] = keep ? x[i] * scale : 0;
    }
}

AG__CLONES static void dropout_nomask(ag_real *restrict y, const ag_real *restrict x, size_t N, uint64_t key,
                                      uint64_t thr, ag_real scale) {
    for (size_t i = 0; i < N; i++) {
        const uint64_t h = ag__mix64(key + (uint64_t)(i + 1) * AG__GOLDEN);
        y[i] = (h >> 11) >= thr ? x[i] * scale : 0;
    }
}

static ag_real dropout_scale(const dropout_params *p) { return (ag_real)(1.0 / (1.0 - (double)p->p)); }

static ag_status dropout_forward(ag_node *n) {
    const dropout_params *p = n->params;
    if (!p->active) return AG_OK; /* the view holds the values */
    const ag_tape *t = n->out.tape;
    const uint64_t key = ag__rng_key(t->seed, t->step - t->seed_step, p->stream);
    const uint64_t thr = (uint64_t)ceil(ldexp((double)p->p, 53)); /* u = (h >> 11) 2^-53 >= p */
    const size_t N = n->out.size;
    if (!ag_node_needs_grad(n)) {
        dropout_nomask(n->out.value, n->in[0]->value, N, key, thr, dropout_scale(p));
        return AG_OK;
    }
    uint8_t *m = ag_node_alloc(n, N);
    if (!m) return AG_ERR_NOMEM;
    dropout_mask(n->out.value, m, n->in[0]->value, N, key, thr, dropout_scale(p));
    n->saved = m;
    return AG_OK;
}

AG__CLONES static ag_status dropout_backward(ag_node *n) {
    const dropout_params *p = n->params;
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ag_real *restrict dy = n->out.grad;
    const size_t N = n->out.size;
    if (!p->active) {
        for (size_t i = 0; i < N; i++) dx[i] += dy[i];
        return AG_OK;
    }
    const uint8_t *restrict m = n->saved;
    const ag_real scale = dropout_scale(p);
    for (size_t i = 0; i < N; i++) dx[i] += m[i] ? dy[i] * scale : 0;
    return AG_OK;
}

static const ag_op dropout_op = {"dropout", 1, sizeof(dropout_params), dropout_shape, dropout_forward,
                                 dropout_backward};

ag_tensor *ag_dropout(ag_tape *t, ag_tensor *x, ag_real p, uint64_t stream) {
    const dropout_params dp = {p, stream, 0};
    return AG__CALL(t, &dropout_op, &dp, x);
}

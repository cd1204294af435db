/*
 * cost.c - the costs of dense.h: the derivation's J = squared error + lambda/2 sum W^2
 * (backprop-derivation.md, "Cost"), softmax cross-entropy + the same L2 term, and the L2 term over
 * every AG_DECAY tensor of a store.
 */
#include <tapegrad/dense.h>

#include <tapegrad/ag_ext.h>

/* lambda/2 sum W^2 over n weights, in chunks of AG_MAX_IN inputs; NULL if n == 0 */
static ag_tensor *l2_chunks(ag_tape *t, ag_real lambda, ag_tensor *const *w, size_t n) {
    ag_tensor *sum = NULL;
    for (size_t i = 0; i < n; i += AG_MAX_IN) {
        size_t m = n - i < AG_MAX_IN ? n - i : AG_MAX_IN;
        ag_tensor *term = ag_l2(t, lambda, w + i, m); /* lambda/2 sum_l sum_ij (W^(l)_ij)^2 */
        sum = sum ? ag_add(t, sum, term) : term;
        if (!sum) return NULL;
    }
    return sum;
}

static ag_tensor *add_l2(ag_tape *t, ag_tensor *data, ag_real lambda, ag_tensor *const *weights, size_t n) {
    if (!data || lambda == 0 || n == 0) return data;
    if (!weights) {
        ag_ext_op_fail(t, AG_ERR_ARG, "cost: weights is NULL but n is %zu", n);
        return NULL;
    }
    return ag_add(t, data, l2_chunks(t, lambda, weights, n));
}

ag_tensor *ag_cost_squared_error_l2(ag_tape *t, ag_tensor *h, ag_tensor *y, ag_real lambda,
                                    ag_tensor *const *weights, size_t n) {
    /* J(W,b) = [1/K sum_k 1/2 ||h_k - y_k||^2] + lambda/2 sum W^2 */
    return add_l2(t, ag_squared_error(t, h, y), lambda, weights, n);
}

ag_tensor *ag_cost_cross_entropy_l2(ag_tape *t, ag_tensor *logits, const int32_t *labels, ag_real lambda,
                                    ag_tensor *const *weights, size_t n) {
    /* J = 1/K sum_k -log softmax(logits_k)[label_k] + lambda/2 sum W^2 */
    return add_l2(t, ag_cross_entropy(t, logits, labels), lambda, weights, n);
}

ag_tensor *ag_l2_decay(ag_tape *t, ag_real lambda, const ag_params *ps) {
    if (!t) return NULL;
    if (!ps) {
        ag_ext_op_fail(t, AG_ERR_ARG, "l2_decay: params store is NULL");
        return NULL;
    }
    ag_tensor *chunk[AG_MAX_IN], *sum = NULL;
    size_t m = 0, count = ag_params_count(ps), seen = 0;
    for (size_t i = 0; i < count; i++) {
        ag_tensor *x = ag_params_at(ps, i);
        if (!(x->flags & AG_DECAY)) continue; /* biases are never regularised */
        chunk[m++] = x;
        seen++;
        if (m == AG_MAX_IN) {
            ag_tensor *term = ag_l2(t, lambda, chunk, m);
            sum = sum ? ag_add(t, sum, term) : term;
            if (!sum) return NULL;
            m = 0;
        }
    }
    if (m) {
        ag_tensor *term = ag_l2(t, lambda, chunk, m);
        sum = sum ? ag_add(t, sum, term) : term;
    }
    if (!seen) {
        ag_ext_op_fail(t, AG_ERR_ARG, "l2_decay: the store has no AG_DECAY tensor");
        return NULL;
    }
    return sum;
}

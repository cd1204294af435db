/*
 * ops/loss.c - the scalar losses: squared error, the L2 weight penalty, softmax cross-entropy.
 *
 * Conventions (backprop-derivation.md, "Cost"): K is the number of rows (examples), shape[0] of a
 * tensor with 2 or more dimensions and 1 for a 1-D tensor or a scalar (one example). The cost
 *
 *     J(W,b) = [ 1/K sum_k 1/2 ||h_k - y_k||^2 ] + lambda/2 sum_l sum_i sum_j (W^(l)_ji)^2
 *
 * is ag_add(ag_squared_error(h, y), ag_l2(lambda, weights)): the 1/2 cancels the 2 of the
 * derivative, the mean is over rows only (no division by the number of outputs), and lambda/2
 * applies to the weights the caller lists (never the biases).
 *
 * Read next: gradcheck.c.
 */
#include "../internal.h"

static size_t loss_rows(const ag_tensor *x) { return x->ndim >= 2 ? x->shape[0] : 1; }

static ag_status scalar_shape(ag_node *n) { return ag_node_set_shape(n, 0, NULL); }

/* ---------------------------------------------------------------- squared error
 * J = (1/K) sum_k 1/2 ||h_k - y_k||^2;  dh += dJ (h - y) / K,  dy -= dJ (h - y) / K.
 * With a sigmoid output this gives the derivation's delta^(n_l) = -(y - a^(n_l)) .* f'(z^(n_l))
 * (over K, the batch mean). y usually is data; if it requires a gradient it gets one too. */

static ag_status squared_error_shape(ag_node *n) {
    const ag_tensor *h = n->in[0], *y = n->in[1];
    int same = h->ndim == y->ndim;
    for (int i = 0; same && i < h->ndim; i++) same = h->shape[i] == y->shape[i];
    if (!same) {
        char sh[64], sy[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "h is %s but y is %s (shapes must be equal)",
                            ag_shape_str(h, sh, sizeof sh), ag_shape_str(y, sy, sizeof sy));
    }
    return ag_node_set_shape(n, 0, NULL);
}

static ag_status squared_error_forward(ag_node *n) {
    const ag_real *restrict h = n->in[0]->value, *restrict y = n->in[1]->value;
    double s = 0;
    for (size_t i = 0, N = n->in[0]->size; i < N; i++) {
        double d = (double)h[i] - (double)y[i];
        s += d * d;
    }
    n->out.value[0] = (ag_real)(0.5 * s / (double)loss_rows(n->in[0]));
    return AG_OK;
}

AG__CLONES static ag_status squared_error_backward(ag_node *n) {
    const ag_real *restrict h = n->in[0]->value, *restrict y = n->in[1]->value;
    const ag_real c = (ag_real)(n->out.grad[0] / (double)loss_rows(n->in[0]));
    const size_t N = n->in[0]->size;
    if (n->in[0]->grad) {
        ag_real *restrict dh = n->in[0]->grad;
        for (size_t i = 0; i < N; i++) dh[i] += c * (h[i] - y[i]);
    }
    if (n->in[1]->grad) {
        ag_real *restrict dy = n->in[1]->grad;
        for (size_t i = 0; i < N; i++) dy[i] -= c * (h[i] - y[i]);
    }
    return AG_OK;
}

static const ag_op squared_error_op = {"squared_error", 2, 0, squared_error_shape, squared_error_forward,
                                       squared_error_backward};

ag_tensor *ag_squared_error(ag_tape *t, ag_tensor *h, ag_tensor *y) {
    return AG__CALL(t, &squared_error_op, NULL, h, y);
}

/* ---------------------------------------------------------------- L2 penalty
 * J = lambda/2 sum over the n inputs of sum_ji (W_ji)^2 (the derivation's weight-decay term);
 * dW += dJ lambda W, the "+ lambda W^(l)" of the update rule. Variadic: 1..AG_MAX_IN inputs. */

static ag_status l2_forward(ag_node *n) {
    const ag_real lambda = *(const ag_real *)n->params;
    double *s = ag_node_alloc(n, sizeof *s); /* kept: it bounds every |W_ji| for backward */
    if (!s) return AG_ERR_NOMEM;
    *s = 0;
    for (int k = 0; k < n->n_in; k++) *s += ag__sum_sq(n->in[k]->value, n->in[k]->size);
    n->saved = s;
    n->out.value[0] = (ag_real)(0.5 * (double)lambda * *s);
    return AG_OK;
}

static ag_status l2_backward(ag_node *n) {
    const ag_real c = *(const ag_real *)n->params * n->out.grad[0];
    /* |c W_ji| <= |c| sqrt(sum W^2), all finite when the sum is: a sink that folds c W into its
     * own pass over W may skip the NaN/Inf scan of it */
    const double s = *(const double *)n->saved, bound = isfinite(s) ? fabs((double)c) * sqrt(s) : INFINITY;
    /* deferred for parameters, so the weight's GEMM can still hand its gradient straight to a sink */
    for (int k = 0; k < n->n_in; k++) ag__grad_add_scaled_value(n, k, c, bound);
    return AG_OK;
}

static const ag_op l2_op = {"l2", AG_VARIADIC, sizeof(ag_real), scalar_shape, l2_forward, l2_backward};

ag_tensor *ag_l2(ag_tape *t, ag_real lambda, ag_tensor *const *weights, size_t n) {
    if (!t) return NULL;
    if (!weights || n == 0 || n > AG_MAX_IN) {
        if (ag_tape_status(t) != AG_OK) return ag__op_missing(t); /* keep the first error */
        if (!weights) ag__op_fail(t, AG_ERR_ARG, "l2: weights is NULL");
        else ag__op_fail(t, AG_ERR_ARG, "l2: n is %zu, expects 1..%d tensors", n, AG_MAX_IN);
        return NULL;
    }
    return ag_call(t, &l2_op, weights, (int)n, &lambda);
}

/* ---------------------------------------------------------------- softmax cross-entropy
 * Logits K x C (or one row of C). With p_k = softmax(logits_k) and m_k the row max:
 *   J = (1/K) sum_k -log p_k[label_k] = (1/K) sum_k (m_k + log sum_j e^(x_kj - m_k) - x_k[label_k])
 *   dlogits_k += dJ (p_k - onehot(label_k)) / K
 * Fused: the max is subtracted, so logits of 1e4 give a finite loss and gradient. When backward
 * will run, forward keeps p and a copy of the labels in the node's arena state. */

typedef struct ce_params {
    const int32_t *labels;
} ce_params;

typedef struct ce_saved {
    ag_real *p;      /* K x C probabilities */
    int32_t *labels; /* K, copied */
} ce_saved;

static ag_status ce_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const int32_t *labels = ((const ce_params *)n->params)->labels;
    if (!labels) {
        ag_status st = ag_tape_status(n->out.tape);
        return st != AG_OK ? st : ag_node_fail(n, AG_ERR_ARG, "labels is NULL");
    }
    if (x->ndim < 1 || x->ndim > 2) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "logits are %s, must be K x classes or 1-D",
                            ag_shape_str(x, s, sizeof s));
    }
    const size_t K = loss_rows(x), C = x->shape[x->ndim - 1];
    for (size_t k = 0; k < K; k++)
        if (labels[k] < 0 || (size_t)labels[k] >= C)
            return ag_node_fail(n, AG_ERR_ARG, "label %ld of row %zu is outside 0..%zu", (long)labels[k], k,
                                C - 1);
    return ag_node_set_shape(n, 0, NULL);
}

/* Not AG__CLONES: a libm exp per element and in-order sums; the clones were measured ~10% slower
 * (bench_eltwise cross_entropy 512 x 784 forward: 3.68-3.95 ns/element against 3.32). */
static ag_status ce_forward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const int32_t *labels = ((const ce_params *)n->params)->labels;
    const size_t K = loss_rows(x), C = x->shape[x->ndim - 1];
    ce_saved *sv = NULL;
    if (ag_node_needs_grad(n)) {
        sv = ag_node_alloc(n, sizeof *sv);
        if (!sv) return AG_ERR_NOMEM;
        sv->p = ag_node_alloc(n, K * C * sizeof(ag_real));
        sv->labels = ag_node_alloc(n, K * sizeof(int32_t));
        if (!sv->p || !sv->labels) return AG_ERR_NOMEM;
        memcpy(sv->labels, labels, K * sizeof(int32_t));
        n->saved = sv;
    }
    double J = 0;
    for (size_t k = 0; k < K; k++) {
        const ag_real *restrict xk = x->value + k * C;
        ag_real m = xk[0];
        for (size_t j = 1; j < C; j++) m = xk[j] > m ? xk[j] : m;
        double s = 0;
        if (sv) {
            ag_real *restrict p = sv->p + k * C;
            for (size_t j = 0; j < C; j++) {
                p[j] = ag__exp(xk[j] - m);
                s += p[j];
            }
            const ag_real inv = (ag_real)(1.0 / s);
            for (size_t j = 0; j < C; j++) p[j] *= inv;
        } else {
            for (size_t j = 0; j < C; j++) s += ag__exp(xk[j] - m);
        }
        J += (double)m + log(s) - (double)xk[labels[k]];
    }
    n->out.value[0] = (ag_real)(J / (double)K);
    return AG_OK;
}

AG__CLONES static ag_status ce_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ce_saved *sv = n->saved;
    const size_t K = loss_rows(n->in[0]), C = n->in[0]->shape[n->in[0]->ndim - 1];
    const ag_real c = (ag_real)(n->out.grad[0] / (double)K);
    const ag_real *restrict p = sv->p;
    for (size_t i = 0, N = K * C; i < N; i++) dx[i] += c * p[i];
    for (size_t k = 0; k < K; k++) dx[k * C + (size_t)sv->labels[k]] -= c;
    return AG_OK;
}

static const ag_op cross_entropy_op = {"cross_entropy", 1, sizeof(ce_params), ce_shape, ce_forward,
                                       ce_backward};

ag_tensor *ag_cross_entropy(ag_tape *t, ag_tensor *logits, const int32_t *labels) {
    return AG__CALL(t, &cross_entropy_op, &(ce_params){labels}, logits);
}

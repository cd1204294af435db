/*
 * ops/loss.c - the scalar losses: squared error, the L2 weight penalty, softmax cross-entropy;
 * and (issue 22, at the end) bce_with_logits, cross_entropy_ex, l1, huber.
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
#include "../kernels/special.h"

static size_t loss_rows(const ag_tensor *x) { return x->ndim >= 2 ? x->shape[0] : 1; }

static ag_status scalar_shape(ag_node *n) { return ag_node_set_shape(n, 0, NULL); }

/* ---------------------------------------------------------------- squared error
 * J = (1/K) sum_k 1/2 ||h_k - y_k||^2;  dh += dJ (h - y) / K,  dy -= dJ (h - y) / K.
 * With a sigmoid output this gives the derivation's delta^(n_l) = -(y - a^(n_l)) .* f'(z^(n_l))
 * (over K, the batch mean). y usually is data; if it requires a gradient it gets one too. */

static ag_status squared_error_shape(ag_node *n) {
    const ag_tensor *h = n->in[0], *y = n->in[1];
    ag_node_grad_out_declare(n);
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
    int assign;
    { /* a block each: h and y may be one tensor, dh and dy one buffer */
        ag_real *restrict dh = ag_node_grad_out(n, 0, &assign);
        if (dh && assign) /* 0 + term: the former zero-then-add's bits */
            for (size_t i = 0; i < N; i++) dh[i] = (ag_real)0 + c * (h[i] - y[i]);
        else if (dh)
            for (size_t i = 0; i < N; i++) dh[i] += c * (h[i] - y[i]);
    }
    {
        ag_real *restrict dy = ag_node_grad_out(n, 1, &assign);
        if (dy && assign)
            for (size_t i = 0; i < N; i++) dy[i] = (ag_real)0 - c * (h[i] - y[i]);
        else if (dy)
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

/* ---------------------------------------------------------------- losses of issue 22
 * bce_with_logits, cross_entropy_ex, l1, huber: torch's reduction='mean' definitions (ag.h). The
 * sums run in 32 interleaved double lanes combined pairwise (as ag__sum), so the loops vectorise
 * and the bits depend on neither the machine nor the thread count. */

enum { LANES = 32 };

static double combine_lanes(double *l) {
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

/* double NAME(const ag_real *a, const ag_real *b, size_t n, ag_real c): sum_i TERM(a[i], b[i], c) */
#define LANE_SUM(NAME, TERM)                                                                       \
    AG__CLONES static double NAME(const ag_real *restrict a, const ag_real *restrict b, size_t n, ag_real c) { \
        double l[LANES] = {0};                                                                     \
        size_t i = 0;                                                                              \
        (void)b, (void)c;                                                                          \
        for (; i + LANES <= n; i += LANES)                                                         \
            for (int j = 0; j < LANES; j++) l[j] += (double)TERM(a[i + j], b[i + j], c);           \
        for (int j = 0; i < n; i++, j++) l[j] += (double)TERM(a[i], b[i], c);                      \
        return combine_lanes(l);                                                                   \
    }

/* Equal shapes of inputs 0 and 1, named na and nb in the message; the output a scalar. */
static ag_status pair_shape(ag_node *n, const char *na, const char *nb) {
    const ag_tensor *a = n->in[0], *b = n->in[1];
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) {
        char sa[64], sb[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "%s %s %s but %s %s %s (shapes must be equal)", na,
                            strcmp(na, "logits") == 0 ? "are" : "is", ag_shape_str(a, sa, sizeof sa), nb,
                            strcmp(nb, "targets") == 0 ? "are" : "is", ag_shape_str(b, sb, sizeof sb));
    }
    return ag_node_set_shape(n, 0, NULL);
}

/* ---- bce_with_logits: J = (1/N) sum softplus(x) - x y, softplus(x) = max(x, 0) + log1p(e^-|x|);
 * dx += dJ (sigmoid(x) - y)/N, dy -= dJ x/N. */
static inline ag_real bce1(ag_real x, ag_real y, ag_real c) {
    (void)c;
    return ag__fn_pick(x > 0, x, 0) - x * y + ag__fn_log1p_unit(ag__fn_exp_nonpos(-ag__fabs(x)));
}
LANE_SUM(bce_sum, bce1)

static ag_status bce_shape(ag_node *n) { return pair_shape(n, "logits", "targets"); }

static ag_status bce_forward(ag_node *n) {
    const size_t N = n->in[0]->size;
    n->out.value[0] = (ag_real)(bce_sum(n->in[0]->value, n->in[1]->value, N, 0) / (double)N);
    return AG_OK;
}

AG__CLONES static ag_status bce_backward(ag_node *n) {
    const ag_real *restrict x = n->in[0]->value, *restrict y = n->in[1]->value;
    const size_t N = n->in[0]->size;
    const ag_real c = (ag_real)(n->out.grad[0] / (double)N);
    if (n->in[0]->grad) {
        ag_real *restrict dx = n->in[0]->grad;
        for (size_t i = 0; i < N; i++) {
            const ag_real e = ag__fn_exp_nonpos(-ag__fabs(x[i])), s1 = 1 / (1 + e);
            dx[i] += c * (ag__fn_pick(x[i] >= 0, s1, e * s1) - y[i]); /* sigmoid, stable */
        }
    }
    if (n->in[1]->grad) {
        ag_real *restrict dy = n->in[1]->grad;
        for (size_t i = 0; i < N; i++) dy[i] -= c * x[i];
    }
    return AG_OK;
}

static const ag_op bce_op = {"bce_with_logits", 2, 0, bce_shape, bce_forward, bce_backward};
ag_tensor *ag_bce_with_logits(ag_tape *t, ag_tensor *logits, ag_tensor *targets) {
    return AG__CALL(t, &bce_op, NULL, logits, targets);
}

/* ---- l1: J = (1/N) sum |h - y|;  dh += dJ sign(h - y)/N (0 at h = y), dy -= the same */
#define L1_TERM(h, y, c) ag__fabs((h) - (y))
LANE_SUM(l1_sum, L1_TERM)
static ag_status l1_shape(ag_node *n) { return pair_shape(n, "h", "y"); }
static ag_status l1_forward(ag_node *n) {
    const size_t N = n->in[0]->size;
    n->out.value[0] = (ag_real)(l1_sum(n->in[0]->value, n->in[1]->value, N, 0) / (double)N);
    return AG_OK;
}
static inline ag_real sign1(ag_real d) { return ag__fn_pick(d > 0, 1, ag__fn_pick(d < 0, -1, 0)); }
AG__CLONES static ag_status l1_backward(ag_node *n) {
    const ag_real *restrict h = n->in[0]->value, *restrict y = n->in[1]->value;
    const size_t N = n->in[0]->size;
    const ag_real c = (ag_real)(n->out.grad[0] / (double)N);
    if (n->in[0]->grad) {
        ag_real *restrict dh = n->in[0]->grad;
        for (size_t i = 0; i < N; i++) dh[i] += c * sign1(h[i] - y[i]);
    }
    if (n->in[1]->grad) {
        ag_real *restrict dy = n->in[1]->grad;
        for (size_t i = 0; i < N; i++) dy[i] -= c * sign1(h[i] - y[i]);
    }
    return AG_OK;
}
static const ag_op l1_op = {"l1_loss", 2, 0, l1_shape, l1_forward, l1_backward};
ag_tensor *ag_l1_loss(ag_tape *t, ag_tensor *h, ag_tensor *y) { return AG__CALL(t, &l1_op, NULL, h, y); }

/* ---- huber: J = (1/N) sum_i (|d| < delta ? d^2/2 : delta (|d| - delta/2)), d = h - y;
 * dh += dJ clamp(d, -delta, delta)/N, dy -= the same */
static inline ag_real huber1(ag_real h, ag_real y, ag_real delta) {
    const ag_real d = h - y, ad = ag__fabs(d);
    return ag__fn_pick(ad < delta, (ag_real)0.5 * d * d, delta * (ad - (ag_real)0.5 * delta));
}
LANE_SUM(huber_sum, huber1)
static ag_status huber_shape(ag_node *n) {
    const ag_real delta = *(const ag_real *)n->params;
    if (!(delta > 0) || !isfinite((double)delta))
        return ag_node_fail(n, AG_ERR_ARG, "delta is %g, must be finite and > 0", (double)delta);
    return pair_shape(n, "h", "y");
}
static ag_status huber_forward(ag_node *n) {
    const size_t N = n->in[0]->size;
    const ag_real delta = *(const ag_real *)n->params;
    n->out.value[0] = (ag_real)(huber_sum(n->in[0]->value, n->in[1]->value, N, delta) / (double)N);
    return AG_OK;
}
static inline ag_real clamp1(ag_real d, ag_real delta) {
    return ag__fn_pick(d > delta, delta, ag__fn_pick(d < -delta, -delta, d));
}
AG__CLONES static ag_status huber_backward(ag_node *n) {
    const ag_real *restrict h = n->in[0]->value, *restrict y = n->in[1]->value;
    const size_t N = n->in[0]->size;
    const ag_real delta = *(const ag_real *)n->params, c = (ag_real)(n->out.grad[0] / (double)N);
    if (n->in[0]->grad) {
        ag_real *restrict dh = n->in[0]->grad;
        for (size_t i = 0; i < N; i++) dh[i] += c * clamp1(h[i] - y[i], delta);
    }
    if (n->in[1]->grad) {
        ag_real *restrict dy = n->in[1]->grad;
        for (size_t i = 0; i < N; i++) dy[i] -= c * clamp1(h[i] - y[i], delta);
    }
    return AG_OK;
}
static const ag_op huber_op = {"huber_loss", 2, sizeof(ag_real), huber_shape, huber_forward, huber_backward};
ag_tensor *ag_huber_loss(ag_tape *t, ag_tensor *h, ag_tensor *y, ag_real delta) {
    return AG__CALL(t, &huber_op, &delta, h, y);
}

/* ---- cross_entropy_ex: logits R x V (any rank >= 1, classes last), a label per row; rows whose
 * label is the ignore index are skipped, M rows remain. With lse_k = m_k + log sum_j e^(x_kj - m_k)
 * (m_k the row max), q_k = (1 - eps) onehot + eps/V:
 *   J = (1/M) sum_k [lse_k - (1 - eps) x_k[label_k] - (eps/V) sum_j x_kj]
 *   dx_kj += dJ (e^(x_kj - lse_k) - q_kj)/M
 * Forward keeps lse_k (not the probabilities: backward recomputes e^(x - lse), an argument <= 0,
 * cheaper than streaming R x V saved values) and a copy of the labels. */

typedef struct cex_params {
    const int32_t *labels;
    ag_ce_opts opts;
    int ignore; /* opts given: rows labelled opts.ignore_index are skipped */
} cex_params;

typedef struct cex_saved {
    ag_real *lse;    /* R, the row's log-sum-exp; unused for ignored rows */
    int32_t *labels; /* R, copied */
    size_t M;        /* rows not ignored */
} cex_saved;

static ag_status cex_shape(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const cex_params *p = n->params;
    if (!p->labels) {
        ag_status st = ag_tape_status(n->out.tape);
        return st != AG_OK ? st : ag_node_fail(n, AG_ERR_ARG, "labels is NULL");
    }
    if (x->ndim < 1) return ag_node_fail(n, AG_ERR_SHAPE, "logits are a scalar, must have the classes on a last axis");
    const double eps = (double)p->opts.label_smoothing;
    if (!(eps >= 0 && eps < 1))
        return ag_node_fail(n, AG_ERR_ARG, "label_smoothing is %g, must be in [0, 1)", eps);
    const size_t V = x->shape[x->ndim - 1], R = x->size / V;
    for (size_t k = 0; k < R; k++) {
        const int32_t l = p->labels[k];
        if ((l < 0 || (size_t)l >= V) && !(p->ignore && l == p->opts.ignore_index))
            return ag_node_fail(n, AG_ERR_ARG, "label %ld of row %zu is outside 0..%zu", (long)l, k, V - 1);
    }
    return ag_node_set_shape(n, 0, NULL);
}

/* max over a row as an integer max of order-preserving keys (sign-magnitude to two's complement:
 * the bits, with the magnitude flipped for negatives), which vectorises; a float max does not
 * without -ffinite-math-only. A NaN of either sign makes the row's loss NaN all the same. */
#ifdef AG_DOUBLE
typedef int64_t real_key;
#define KEY_MAG INT64_MAX
#else
typedef int32_t real_key;
#define KEY_MAG INT32_MAX
#endif
static inline real_key key_flip(real_key b) { return b ^ ((b >> (8 * sizeof b - 1)) & KEY_MAG); }
AG__CLONES static ag_real ce_row_max(const ag_real *restrict x, size_t V) {
    real_key m, k;
    memcpy(&m, &x[0], sizeof m);
    m = key_flip(m);
    for (size_t i = 1; i < V; i++) {
        memcpy(&k, &x[i], sizeof k);
        k = key_flip(k);
        m = k > m ? k : m;
    }
    m = key_flip(m); /* its own inverse */
    ag_real r;
    memcpy(&r, &m, sizeof r);
    return r;
}
#define EXP_SHIFT_TERM(x, unused, m) ag__fn_exp_nonpos((x) - (m))
LANE_SUM(row_sum_exp, EXP_SHIFT_TERM) /* sum_j e^(x_j - m), b unused */
#define PLAIN_TERM(x, unused, c) (x)
LANE_SUM(row_sum, PLAIN_TERM)

static ag_status cex_forward(ag_node *n) {
    const ag_tensor *x = n->in[0];
    const cex_params *p = n->params;
    const size_t V = x->shape[x->ndim - 1], R = x->size / V;
    const double eps = (double)p->opts.label_smoothing;
    cex_saved *sv = NULL;
    if (ag_node_needs_grad(n)) {
        sv = ag_node_alloc(n, sizeof *sv);
        if (!sv) return AG_ERR_NOMEM;
        sv->lse = ag_node_alloc(n, R * sizeof(ag_real));
        sv->labels = ag_node_alloc(n, R * sizeof(int32_t));
        if (!sv->lse || !sv->labels) return AG_ERR_NOMEM;
        memcpy(sv->labels, p->labels, R * sizeof(int32_t));
        n->saved = sv;
    }
    double J = 0;
    size_t M = 0;
    for (size_t k = 0; k < R; k++) {
        const int32_t l = p->labels[k];
        if (p->ignore && l == p->opts.ignore_index) continue;
        const ag_real *xk = x->value + k * V;
        const ag_real m = ce_row_max(xk, V);
        const double lse = (double)m + log(row_sum_exp(xk, xk, V, m));
        double Jk = lse - (1 - eps) * (double)xk[l];
        if (eps > 0) Jk -= eps / (double)V * row_sum(xk, xk, V, 0);
        J += Jk;
        M++;
        if (sv) sv->lse[k] = (ag_real)lse;
    }
    if (sv) sv->M = M;
    n->out.value[0] = (ag_real)(M ? J / (double)M : 0); /* all ignored: 0 (torch: 0/0) */
    return AG_OK;
}

AG__CLONES static ag_status cex_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const cex_saved *sv = n->saved;
    const cex_params *p = n->params;
    const size_t V = n->in[0]->shape[n->in[0]->ndim - 1], R = n->in[0]->size / V;
    if (sv->M == 0) return AG_OK;
    const double eps = (double)p->opts.label_smoothing, cd = (double)n->out.grad[0] / (double)sv->M;
    const ag_real c = (ag_real)cd, ce = (ag_real)(cd * eps / (double)V), cy = (ag_real)(cd * (1 - eps));
    for (size_t k = 0; k < R; k++) {
        const int32_t l = sv->labels[k];
        if (p->ignore && l == p->opts.ignore_index) continue;
        const ag_real *restrict xk = n->in[0]->value + k * V;
        ag_real *restrict dk = dx + k * V;
        const ag_real lse = sv->lse[k];
        for (size_t j = 0; j < V; j++) dk[j] += c * ag__fn_exp_nonpos(xk[j] - lse) - ce;
        dk[l] -= cy;
    }
    return AG_OK;
}

static const ag_op cross_entropy_ex_op = {"cross_entropy_ex", 1, sizeof(cex_params), cex_shape, cex_forward,
                                          cex_backward};

ag_tensor *ag_cross_entropy_ex(ag_tape *t, ag_tensor *logits, const int32_t *labels, const ag_ce_opts *opts) {
    cex_params p = {labels, {0, 0}, opts != NULL};
    if (opts) p.opts = *opts;
    return AG__CALL(t, &cross_entropy_ex_op, &p, logits);
}

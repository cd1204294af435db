/*
 * ops/norm.c - normalisation: layer norm and RMS norm over the trailing axes of each row, batch
 * norm over the channel axis 1. Backward is closed-form from the mean and rstd forward saved per
 * group, never re-derived through other nodes.
 *
 * Per group of M values (a row; one channel of the batch): mu = (1/M) sum x, var = (1/M) sum
 * (x - mu)^2 (biased, as torch), rstd = 1/sqrt(var + eps), xh = (x - mu) rstd, y = gamma xh + beta.
 * With gh = gamma dy, the vector-Jacobian product is (three terms: the direct path, through mu,
 * through var; llm.c's layernorm_backward):
 *   dx += rstd (gh - mean(gh) - xh mean(gh xh)),   dgamma += sum dy xh,   dbeta += sum dy
 * RMS norm has no mu (xh = x rstd, var = mean x^2), so no mean(gh) term.
 * Sums accumulate in double in a fixed order (LANES interleaved partial sums added pairwise; the
 * per-column sums of dgamma and dbeta row after row), so results do not depend on threads, and
 * the AG__CLONES bodies give the baseline's bits.
 *
 * Read next: ops/dropout.c.
 */
#include "../internal.h"

#define LANES 16

static inline double lanes_total(double *l) {
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

/* sum x and sum (x - mu)^2 of x[0..n) in double: mu (0 when !center) and rstd */
static inline void group_stats(const ag_real *restrict x, size_t n, int center, double eps, double *mu_out,
                               double *rstd_out) {
    double l[LANES] = {0}, mu = 0;
    size_t i;
    if (center) {
        for (i = 0; i + LANES <= n; i += LANES)
            for (int k = 0; k < LANES; k++) l[k] += (double)x[i + k];
        for (int k = 0; i < n; i++, k++) l[k] += (double)x[i];
        mu = lanes_total(l) / (double)n;
        for (int k = 0; k < LANES; k++) l[k] = 0;
    }
    for (i = 0; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            const double d = (double)x[i + k] - mu;
            l[k] += d * d;
        }
    for (int k = 0; i < n; i++, k++) {
        const double d = (double)x[i] - mu;
        l[k] += d * d;
    }
    *mu_out = mu;
    *rstd_out = 1.0 / sqrt(lanes_total(l) / (double)n + eps);
}

static int eps_ok(ag_real eps) { return eps > 0 && eps <= AG__REAL_MAX; }

/* ---------------------------------------------------------------- layer norm, RMS norm
 * Rows are x's trailing n_axes axes (D values); inputs x, then gamma and beta when given. */

typedef struct row_norm_params {
    int n_axes;
    ag_real eps;
    int has_gamma, has_beta;
    int center; /* 1 layer norm, 0 RMS norm */
} row_norm_params;

static ag_status row_norm_shape(ag_node *n) {
    const row_norm_params *p = n->params;
    const ag_tensor *x = n->in[0];
    char sx[64], sa[64];
    if (p->n_axes < 1 || p->n_axes > x->ndim)
        return ag_node_fail(n, AG_ERR_SHAPE, "n_axes %d is out of range for %s (1..%d)", p->n_axes,
                            ag_shape_str(x, sx, sizeof sx), x->ndim);
    if (!eps_ok(p->eps)) return ag_node_fail(n, AG_ERR_ARG, "eps %g must be positive and finite", (double)p->eps);
    const int lead = x->ndim - p->n_axes;
    for (int i = 1; i <= p->has_gamma + p->has_beta; i++) {
        const ag_tensor *a = n->in[i];
        int same = a->ndim == p->n_axes;
        for (int d = 0; same && d < p->n_axes; d++) same = a->shape[d] == x->shape[lead + d];
        if (!same) {
            ag_tensor row = {0};
            row.ndim = p->n_axes;
            for (int d = 0; d < p->n_axes; d++) row.shape[d] = x->shape[lead + d];
            char sr[64];
            return ag_node_fail(n, AG_ERR_SHAPE, "%s is %s but x is %s, normalised over %s",
                                i == 1 && p->has_gamma ? "gamma" : "beta", ag_shape_str(a, sa, sizeof sa),
                                ag_shape_str(x, sx, sizeof sx), ag_shape_str(&row, sr, sizeof sr));
        }
    }
    return ag__node_shape_like(n, x);
}

static const ag_real *opt_value(const ag_node *n, int has, int i) { return has ? n->in[i]->value : NULL; }
static ag_real *opt_grad(const ag_node *n, int has, int i) { return has ? n->in[i]->grad : NULL; }

/* D: the product of the trailing n_axes sizes */
static size_t norm_group(const ag_node *n) {
    const row_norm_params *p = n->params;
    const ag_tensor *x = n->in[0];
    size_t D = 1;
    for (int d = x->ndim - p->n_axes; d < x->ndim; d++) D *= x->shape[d];
    return D;
}

AG__CLONES static ag_status row_norm_forward(ag_node *n) {
    const row_norm_params *p = n->params;
    const size_t D = norm_group(n), R = n->out.size / D;
    const ag_real *restrict g = opt_value(n, p->has_gamma, 1), *restrict b = opt_value(n, p->has_beta, 1 + p->has_gamma);
    ag_real *stats = NULL; /* mu, rstd per row, for backward */
    if (ag_node_needs_grad(n) && !(stats = ag_node_alloc(n, 2 * R * sizeof(ag_real)))) return AG_ERR_NOMEM;
    for (size_t r = 0; r < R; r++) {
        const ag_real *restrict x = n->in[0]->value + r * D;
        ag_real *restrict y = n->out.value + r * D;
        double mu, rs;
        group_stats(x, D, p->center, (double)p->eps, &mu, &rs);
        const ag_real m = (ag_real)mu, s = (ag_real)rs;
        if (stats) {
            stats[2 * r] = m;
            stats[2 * r + 1] = s;
        }
        if (g && b)
            for (size_t j = 0; j < D; j++) y[j] = (x[j] - m) * s * g[j] + b[j];
        else if (g)
            for (size_t j = 0; j < D; j++) y[j] = (x[j] - m) * s * g[j];
        else if (b)
            for (size_t j = 0; j < D; j++) y[j] = (x[j] - m) * s + b[j];
        else
            for (size_t j = 0; j < D; j++) y[j] = (x[j] - m) * s;
    }
    n->saved = stats;
    return AG_OK;
}

/* One row of backward, pass 1: s1 = sum gh, s2 = sum gh xh (lanes), dg += dy xh, db += dy (columns). */
#define ROW_PASS1(j, k)                                                  \
    do {                                                                 \
        const ag_real xh = (x[j] - m) * s, gh = g ? dy[j] * g[j] : dy[j]; \
        l1[k] += (double)gh;                                             \
        l2[k] += (double)gh * (double)xh;                                \
        dg[j] += (double)dy[j] * (double)xh;                             \
        db[j] += (double)dy[j];                                          \
    } while (0)

AG__CLONES static ag_status row_norm_backward(ag_node *n) {
    const row_norm_params *p = n->params;
    const size_t D = norm_group(n), R = n->out.size / D;
    const ag_real *restrict g = opt_value(n, p->has_gamma, 1), *stats = n->saved;
    ag_real *restrict dgamma = opt_grad(n, p->has_gamma, 1), *restrict dbeta = opt_grad(n, p->has_beta, 1 + p->has_gamma);
    double *restrict dg = NULL, *restrict db = NULL;
    if (dgamma || dbeta) {
        if (!(dg = ag_node_alloc(n, 2 * D * sizeof(double)))) return AG_ERR_NOMEM;
        db = dg + D;
        memset(dg, 0, 2 * D * sizeof(double));
    }
    ag_real *restrict dxs = n->in[0]->grad;
    for (size_t r = 0; r < R; r++) {
        const ag_real *restrict x = n->in[0]->value + r * D, *restrict dy = n->out.grad + r * D;
        const ag_real m = stats[2 * r], s = stats[2 * r + 1];
        double l1[LANES] = {0}, l2[LANES] = {0};
        if (dg) {
            size_t j = 0;
            for (; j + LANES <= D; j += LANES)
                for (int k = 0; k < LANES; k++) ROW_PASS1(j + k, k);
            for (int k = 0; j < D; j++, k++) ROW_PASS1(j, k);
        } else { /* the two sums only */
            size_t j = 0;
            for (; j + LANES <= D; j += LANES)
                for (int k = 0; k < LANES; k++) {
                    const ag_real xh = (x[j + k] - m) * s, gh = g ? dy[j + k] * g[j + k] : dy[j + k];
                    l1[k] += (double)gh;
                    l2[k] += (double)gh * (double)xh;
                }
            for (int k = 0; j < D; j++, k++) {
                const ag_real xh = (x[j] - m) * s, gh = g ? dy[j] * g[j] : dy[j];
                l1[k] += (double)gh;
                l2[k] += (double)gh * (double)xh;
            }
        }
        if (!dxs) continue;
        const ag_real m1 = p->center ? (ag_real)(lanes_total(l1) / (double)D) : 0;
        const ag_real m2 = (ag_real)(lanes_total(l2) / (double)D);
        ag_real *restrict dx = dxs + r * D;
        if (g)
            for (size_t j = 0; j < D; j++) dx[j] += s * (dy[j] * g[j] - m1 - (x[j] - m) * s * m2);
        else
            for (size_t j = 0; j < D; j++) dx[j] += s * (dy[j] - m1 - (x[j] - m) * s * m2);
    }
    if (dgamma)
        for (size_t j = 0; j < D; j++) dgamma[j] += (ag_real)dg[j];
    if (dbeta)
        for (size_t j = 0; j < D; j++) dbeta[j] += (ag_real)db[j];
    return AG_OK;
}

static const ag_op layer_norm_op = {"layer_norm", AG_VARIADIC, sizeof(row_norm_params), row_norm_shape,
                                    row_norm_forward, row_norm_backward};
static const ag_op rms_norm_op = {"rms_norm", AG_VARIADIC, sizeof(row_norm_params), row_norm_shape,
                                  row_norm_forward, row_norm_backward};

/* The inputs present, in order (x, gamma?, beta?); a NULL optional while the tape holds an error
 * may be a failed result: propagate it rather than silently dropping the affine part (as linear). */
static ag_tensor *row_norm(ag_tape *t, const ag_op *op, ag_tensor *x, int n_axes, ag_tensor *gamma,
                           ag_tensor *beta, ag_real eps, int center) {
    if (t && (!gamma || (center && !beta)) && ag_tape_status(t) != AG_OK) return ag__op_missing(t);
    ag_tensor *in[3] = {x};
    int k = 1;
    if (gamma) in[k++] = gamma;
    if (beta) in[k++] = beta;
    const row_norm_params p = {n_axes, eps, gamma != NULL, beta != NULL, center};
    return ag_call(t, op, in, k, &p);
}

ag_tensor *ag_layer_norm(ag_tape *t, ag_tensor *x, int n_axes, ag_tensor *gamma, ag_tensor *beta, ag_real eps) {
    return row_norm(t, &layer_norm_op, x, n_axes, gamma, beta, eps, 1);
}

ag_tensor *ag_rms_norm(ag_tape *t, ag_tensor *x, int n_axes, ag_tensor *gamma, ag_real eps) {
    return row_norm(t, &rms_norm_op, x, n_axes, gamma, NULL, eps, 0);
}

/* ---------------------------------------------------------------- batch norm
 * x is N x C x L (L = 1 for 2-D; the product of the trailing sizes for 3-D and 4-D): channel c has
 * the M = N L values of the runs x[(i C + c) L, +L). Inputs x, then gamma, beta, running_mean,
 * running_var when given. Forward writes y = x a_c + b_c with a_c = rstd_c gamma_c and b_c = beta_c
 * - mu_c a_c (saved with mu and rstd: backward's xh = (x - mu) rstd and dx terms). */

typedef struct batch_norm_params {
    ag_real momentum, eps;
    int has_gamma, has_beta, has_running;
    int batch_stats; /* set by shape(): the batch's statistics (training, or no running ones) */
    int update;      /* set by shape(): training with running statistics, updated by forward */
} batch_norm_params;

static void bn_dims(const ag_tensor *x, size_t *N, size_t *C, size_t *L) {
    *N = x->shape[0];
    *C = x->shape[1];
    *L = x->size / (*N * *C);
}

static ag_status batch_norm_shape(ag_node *n) {
    batch_norm_params *p = n->params;
    const ag_tensor *x = n->in[0];
    char sx[64], sa[64];
    if (x->ndim < 2)
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s, must be N x C, N x C x L or N x C x H x W",
                            ag_shape_str(x, sx, sizeof sx));
    if (!(p->momentum >= 0 && p->momentum <= 1))
        return ag_node_fail(n, AG_ERR_ARG, "momentum %g is outside [0, 1]", (double)p->momentum);
    if (!eps_ok(p->eps)) return ag_node_fail(n, AG_ERR_ARG, "eps %g must be positive and finite", (double)p->eps);
    static const char *const names[4] = {"gamma", "beta", "running_mean", "running_var"};
    const int has[4] = {p->has_gamma, p->has_beta, p->has_running, p->has_running};
    for (int k = 0, i = 1; k < 4; k++) {
        if (!has[k]) continue;
        const ag_tensor *a = n->in[i++];
        if (a->ndim != 1 || a->shape[0] != x->shape[1])
            return ag_node_fail(n, AG_ERR_SHAPE, "%s is %s but x is %s with %zu channels", names[k],
                                ag_shape_str(a, sa, sizeof sa), ag_shape_str(x, sx, sizeof sx), x->shape[1]);
    }
    const int training = n->out.tape->training;
    p->batch_stats = training || !p->has_running;
    p->update = training && p->has_running;
    if (training && x->size / x->shape[1] < 2)
        return ag_node_fail(n, AG_ERR_SHAPE, "training needs more than one value per channel (x is %s)",
                            ag_shape_str(x, sx, sizeof sx));
    return ag__node_shape_like(n, x);
}

/* Per channel mean and biased variance in one pass over x (read once more for the output): with each channel's first value as the shift s, sums of d = x - s and d^2 in double
 * give mu = s + mean d and var = mean d^2 - (mean d)^2, which loses nothing that matters while
 * |s - mu| is within a few thousand standard deviations (a double has 16 digits; ag_real's are
 * 7 or 16). */
static inline void channel_stats(const ag_real *restrict x, size_t N, size_t C, size_t L, double *restrict mu,
                                 double *restrict var, double *restrict lanes) {
    const double M = (double)(N * L);
    if (L == 1) { /* rows of C: vectorised over the channels */
        double *restrict s2 = var;
        for (size_t c = 0; c < C; c++) mu[c] = s2[c] = 0;
        for (size_t i = 0; i < N; i++) {
            const ag_real *restrict xr = x + i * C;
            for (size_t c = 0; c < C; c++) {
                const double d = (double)xr[c] - (double)x[c];
                mu[c] += d;
                s2[c] += d * d;
            }
        }
        for (size_t c = 0; c < C; c++) {
            const double md = mu[c] / M, v = s2[c] / M - md * md;
            mu[c] = (double)x[c] + md;
            var[c] = v > 0 ? v : 0;
        }
        return;
    }
    /* runs in memory order, each into its channel's lanes (lanes[2c], lanes[2c + 1]): every lane
     * sees the same additions in the same order as channel by channel, but x streams once in order
     * (channel by channel, 32 runs 64 KiB apart fell into the same L2 sets: 3x slower) */
    for (size_t k = 0; k < 2 * C * LANES; k++) lanes[k] = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++) {
            const ag_real *restrict xr = x + (i * C + c) * L;
            double *restrict l1 = lanes + 2 * c * LANES, *restrict l2 = l1 + LANES;
            const double sh = (double)x[c * L];
            size_t j = 0;
            for (; j + LANES <= L; j += LANES)
                for (int k = 0; k < LANES; k++) {
                    const double d = (double)xr[j + k] - sh;
                    l1[k] += d;
                    l2[k] += d * d;
                }
            for (int k = 0; j < L; j++, k++) {
                const double d = (double)xr[j] - sh;
                l1[k] += d;
                l2[k] += d * d;
            }
        }
    for (size_t c = 0; c < C; c++) {
        double *l1 = lanes + 2 * c * LANES, *l2 = l1 + LANES;
        const double sh = (double)x[c * L], md = lanes_total(l1) / M, v = lanes_total(l2) / M - md * md;
        mu[c] = sh + md;
        var[c] = v > 0 ? v : 0;
    }
}

AG__CLONES static ag_status batch_norm_forward(ag_node *n) {
    const batch_norm_params *p = n->params;
    const ag_tensor *x = n->in[0];
    size_t N, C, L;
    bn_dims(x, &N, &C, &L);
    const double M = (double)(N * L);
    const int ir = 1 + p->has_gamma + p->has_beta; /* index of running_mean */
    const ag_real *restrict g = opt_value(n, p->has_gamma, 1), *restrict b = opt_value(n, p->has_beta, 1 + p->has_gamma);
    ag_real *st = ag_node_alloc(n, 4 * C * sizeof(ag_real)); /* mu, rstd, a, b per channel */
    double *mu = ag_node_alloc(n, (2 + (L > 1 ? 2 * LANES : 0)) * C * sizeof(double)), *var = mu ? mu + C : NULL;
    if (!st || !mu) return AG_ERR_NOMEM;
    if (p->batch_stats) {
        channel_stats(x->value, N, C, L, mu, var, mu + 2 * C);
    } else {
        for (size_t c = 0; c < C; c++) {
            mu[c] = (double)n->in[ir]->value[c];
            var[c] = (double)n->in[ir + 1]->value[c];
        }
    }
    for (size_t c = 0; c < C; c++) {
        const ag_real rs = (ag_real)(1.0 / sqrt(var[c] + (double)p->eps)), a = g ? rs * g[c] : rs;
        st[c] = (ag_real)mu[c];
        st[C + c] = rs;
        st[2 * C + c] = a;
        st[3 * C + c] = (b ? b[c] : 0) - st[c] * a;
    }
    if (p->update) { /* torch's update: the unbiased variance for running_var */
        ag_real *restrict rm = n->in[ir]->value, *restrict rv = n->in[ir + 1]->value;
        const double mom = (double)p->momentum, unbias = M / (M - 1);
        for (size_t c = 0; c < C; c++) {
            rm[c] = (ag_real)((1 - mom) * (double)rm[c] + mom * mu[c]);
            rv[c] = (ag_real)((1 - mom) * (double)rv[c] + mom * var[c] * unbias);
        }
    }
    const ag_real *restrict A = st + 2 * C, *restrict B = st + 3 * C;
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++) {
            const ag_real *restrict xr = x->value + (i * C + c) * L;
            ag_real *restrict y = n->out.value + (i * C + c) * L;
            if (L == 1) {
                y[0] = xr[0] * A[c] + B[c];
                continue;
            }
            const ag_real a = A[c], bb = B[c];
            for (size_t j = 0; j < L; j++) y[j] = xr[j] * a + bb;
        }
    n->saved = st;
    return AG_OK;
}

AG__CLONES static ag_status batch_norm_backward(ag_node *n) {
    const batch_norm_params *p = n->params;
    const ag_tensor *x = n->in[0];
    size_t N, C, L;
    bn_dims(x, &N, &C, &L);
    const double M = (double)(N * L);
    const int ir = 1 + p->has_gamma + p->has_beta;
    const ag_real *restrict st = n->saved, *restrict mu = st, *restrict rs = st + C, *restrict A = st + 2 * C;
    const ag_real *restrict dy = n->out.grad;
    ag_real *restrict dgamma = opt_grad(n, p->has_gamma, 1), *restrict dbeta = opt_grad(n, p->has_beta, 1 + p->has_gamma);
    /* the running statistics shape y only in evaluation: then they get a gradient if they want one */
    const int ev = p->has_running && !p->batch_stats;
    ag_real *restrict drm = opt_grad(n, ev, ir), *restrict drv = opt_grad(n, ev, ir + 1);
    ag_real *restrict dx = n->in[0]->grad;
    const int need_sums = (dx && p->batch_stats) || dgamma || dbeta || drm || drv;
    /* per channel: sdy = sum dy, sdx = sum dy xh (double); then the dx coefficients in k0, k2 */
    double *sdy = NULL, *sdx = NULL;
    if (need_sums) {
        if (!(sdy = ag_node_alloc(n, 2 * C * sizeof(double)))) return AG_ERR_NOMEM;
        sdx = sdy + C;
        for (size_t c = 0; c < C; c++) sdy[c] = sdx[c] = 0;
        if (L == 1) {
            for (size_t i = 0; i < N; i++) {
                const ag_real *restrict xr = x->value + i * C, *restrict dyr = dy + i * C;
                for (size_t c = 0; c < C; c++) {
                    sdy[c] += (double)dyr[c];
                    sdx[c] += (double)dyr[c] * (double)((xr[c] - mu[c]) * rs[c]);
                }
            }
        } else { /* runs in memory order into per-channel lanes, as channel_stats */
            double *lanes = ag_node_alloc(n, 2 * C * LANES * sizeof(double));
            if (!lanes) return AG_ERR_NOMEM;
            for (size_t k = 0; k < 2 * C * LANES; k++) lanes[k] = 0;
            for (size_t i = 0; i < N; i++)
                for (size_t c = 0; c < C; c++) {
                    const ag_real *restrict xr = x->value + (i * C + c) * L, *restrict dyr = dy + (i * C + c) * L;
                    double *restrict l1 = lanes + 2 * c * LANES, *restrict l2 = l1 + LANES;
                    const ag_real m = mu[c], s = rs[c];
                    size_t j = 0;
                    for (; j + LANES <= L; j += LANES)
                        for (int k = 0; k < LANES; k++) {
                            l1[k] += (double)dyr[j + k];
                            l2[k] += (double)dyr[j + k] * (double)((xr[j + k] - m) * s);
                        }
                    for (int k = 0; j < L; j++, k++) {
                        l1[k] += (double)dyr[j];
                        l2[k] += (double)dyr[j] * (double)((xr[j] - m) * s);
                    }
                }
            for (size_t c = 0; c < C; c++) {
                sdy[c] = lanes_total(lanes + 2 * c * LANES);
                sdx[c] = lanes_total(lanes + 2 * c * LANES + LANES);
            }
        }
    }
    for (size_t c = 0; c < C; c++) {
        if (dgamma) dgamma[c] += (ag_real)sdx[c];
        if (dbeta) dbeta[c] += (ag_real)sdy[c];
        if (drm) drm[c] += (ag_real)(-(double)A[c] * sdy[c]);                   /* dy/dmu = -a */
        if (drv) drv[c] += (ag_real)(-0.5 * (double)A[c] * (double)rs[c] * sdx[c]); /* dy/dvar = -a xh rstd / 2 */
    }
    if (!dx) return AG_OK;
    if (!p->batch_stats) { /* the running statistics are constants: dx = a dy */
        for (size_t i = 0; i < N; i++)
            for (size_t c = 0; c < C; c++) {
                const ag_real a = A[c];
                ag_real *restrict dxr = dx + (i * C + c) * L;
                const ag_real *restrict dyr = dy + (i * C + c) * L;
                for (size_t j = 0; j < L; j++) dxr[j] += a * dyr[j];
            }
        return AG_OK;
    }
    /* dx = a (dy - sdy/M - xh sdx/M) = a dy + k0 - (x - mu) k2 */
    ag_real *k = ag_node_alloc(n, 2 * C * sizeof(ag_real));
    if (!k) return AG_ERR_NOMEM;
    ag_real *restrict k0 = k, *restrict k2 = k + C;
    for (size_t c = 0; c < C; c++) {
        k0[c] = (ag_real)(-(double)A[c] * sdy[c] / M);
        k2[c] = (ag_real)((double)A[c] * (double)rs[c] * sdx[c] / M);
    }
    for (size_t i = 0; i < N; i++) {
        if (L == 1) {
            const ag_real *restrict xr = x->value + i * C, *restrict dyr = dy + i * C;
            ag_real *restrict dxr = dx + i * C;
            for (size_t c = 0; c < C; c++) dxr[c] += A[c] * dyr[c] + k0[c] - (xr[c] - mu[c]) * k2[c];
            continue;
        }
        for (size_t c = 0; c < C; c++) {
            const ag_real *restrict xr = x->value + (i * C + c) * L, *restrict dyr = dy + (i * C + c) * L;
            ag_real *restrict dxr = dx + (i * C + c) * L;
            const ag_real a = A[c], b0 = k0[c], b2 = k2[c], m = mu[c];
            for (size_t j = 0; j < L; j++) dxr[j] += a * dyr[j] + b0 - (xr[j] - m) * b2;
        }
    }
    return AG_OK;
}

static const ag_op batch_norm_op = {"batch_norm", AG_VARIADIC, sizeof(batch_norm_params), batch_norm_shape,
                                    batch_norm_forward, batch_norm_backward};

ag_tensor *ag_batch_norm(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta, ag_tensor *running_mean,
                         ag_tensor *running_var, ag_real momentum, ag_real eps) {
    if (!t) return NULL;
    if ((!gamma || !beta || !running_mean || !running_var) && ag_tape_status(t) != AG_OK) return ag__op_missing(t);
    if (!running_mean != !running_var) {
        ag__op_fail(t, AG_ERR_ARG, "batch_norm: running_%s is NULL but running_%s is not (give both or neither)",
                    running_mean ? "var" : "mean", running_mean ? "mean" : "var");
        return NULL;
    }
    ag_tensor *in[5] = {x};
    int k = 1;
    if (gamma) in[k++] = gamma;
    if (beta) in[k++] = beta;
    if (running_mean) {
        in[k++] = running_mean;
        in[k++] = running_var;
    }
    const batch_norm_params p = {momentum, eps, gamma != NULL, beta != NULL, running_mean != NULL, 0, 0};
    return ag_call(t, &batch_norm_op, in, k, &p);
}

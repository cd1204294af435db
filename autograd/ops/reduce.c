/*
 * reduce.c - reductions (sum, mean, along one axis or over everything), softmax and
 * log-softmax over the last axis (the shape ops are in shape.c).
 *
 * Sums accumulate in double so that float tensors with many elements keep their precision. Whole-
 * tensor sums (ag__sum, ag__sum_sq) run AG__SUM_LANES interleaved partial sums combined pairwise in
 * a fixed order: the same bits on every call and thread count, without one dependency chain of
 * double adds (4 cycles per element); axis sums: see axis_reduce. The element-wise passes are AG__CLONES
 * (internal.h): AVX-512/AVX2/SSE2 builds picked at load time, the same bits from each; softmax
 * and log-softmax too, on the vector exp (see row_exp).
 *
 * Read next: ops/loss.c.
 */
#include "../internal.h"
#include "../kernels/special.h"

/* ---------------------------------------------------------------- sum and mean over everything
 * s = c sum_i x_i with c = 1 (sum) or 1/N (mean);  dx_i += c ds */

static ag_status scalar_shape(ag_node *n) { return ag_node_set_shape(n, 0, NULL); }

static double sum_all(const ag_tensor *x) { return ag__sum(x->value, x->size); }

AG__CLONES static void add_all(ag_tensor *x, ag_real c) {
    ag_real *restrict dx = x->grad;
    for (size_t i = 0, N = x->size; i < N; i++) dx[i] += c;
}

static ag_status sum_forward(ag_node *n) {
    n->out.value[0] = (ag_real)sum_all(n->in[0]);
    return AG_OK;
}
static ag_status sum_backward(ag_node *n) {
    if (n->in[0]->grad) add_all(n->in[0], n->out.grad[0]);
    return AG_OK;
}
static const ag_op sum_op = {"sum", 1, 0, scalar_shape, sum_forward, sum_backward};
ag_tensor *ag_sum(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &sum_op, NULL, x); }

static ag_status mean_forward(ag_node *n) {
    n->out.value[0] = (ag_real)(sum_all(n->in[0]) / (double)n->in[0]->size);
    return AG_OK;
}
static ag_status mean_backward(ag_node *n) {
    if (n->in[0]->grad) add_all(n->in[0], (ag_real)(n->out.grad[0] / (double)n->in[0]->size));
    return AG_OK;
}
static const ag_op mean_op = {"mean", 1, 0, scalar_shape, mean_forward, mean_backward};
ag_tensor *ag_mean(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &mean_op, NULL, x); }

/* ---------------------------------------------------------------- sum and mean along one axis
 * x viewed as outer x len x inner (len = shape[axis]); the axis is removed:
 *   y[o, i] = c sum_j x[o, j, i];   dx[o, j, i] += c dy[o, i],   c = 1 or 1/len */

typedef struct axis_params {
    int axis; /* as given; shape() normalises a negative axis in place */
} axis_params;

static ag_status axis_shape(ag_node *n) {
    axis_params *p = n->params;
    const ag_tensor *x = n->in[0];
    ag_status st = ag__axis(n, &p->axis, x->ndim, x);
    if (st != AG_OK) return st;
    int axis = p->axis;
    size_t shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) shape[nd++] = x->shape[i];
    return ag_node_set_shape(n, nd, shape);
}

/* outer, len, inner of x around the (normalised) axis */
static void axis_split(const ag_node *n, size_t *outer, size_t *len, size_t *inner) {
    ag__axis_split(n->in[0], ((const axis_params *)n->params)->axis, outer, len, inner);
}

/* Inner > 1: whole contiguous rows x[o, j, :] are added into a row of double accumulators, j in
 * order, AXIS_BLOCK columns at a time (on the stack): each column gets the same additions in the
 * same order as a walk down it, so the same bits, but the adds are vector lanes in every clone.
 * Inner == 1 (the last axis): ag__sum's interleaved lanes for long rows (a fixed order, so the
 * same bits on every call; the double sum of a float row of len < 2^29 is exact to < 2^-24
 * relative before the final rounding), in order for short ones. */
#define AXIS_BLOCK 256
#define AXIS_SERIAL_MAX 64
AG__CLONES static ag_status axis_reduce(ag_node *n, double c) {
    size_t outer, len, inner;
    axis_split(n, &outer, &len, &inner);
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    if (inner == 1) {
        for (size_t o = 0; o < outer; o++) {
            const ag_real *restrict xr = x + o * len;
            double s = 0;
            if (len < AXIS_SERIAL_MAX)
                for (size_t j = 0; j < len; j++) s += xr[j];
            else
                s = ag__sum(xr, len);
            y[o] = (ag_real)(s * c);
        }
        return AG_OK;
    }
    double acc[AXIS_BLOCK];
    for (size_t o = 0; o < outer; o++)
        for (size_t i0 = 0; i0 < inner; i0 += AXIS_BLOCK) {
            const size_t w = inner - i0 < AXIS_BLOCK ? inner - i0 : AXIS_BLOCK;
            for (size_t i = 0; i < w; i++) acc[i] = 0;
            for (size_t j = 0; j < len; j++) {
                const ag_real *restrict xr = x + (o * len + j) * inner + i0;
                for (size_t i = 0; i < w; i++) acc[i] += xr[i];
            }
            ag_real *restrict yr = y + o * inner + i0;
            for (size_t i = 0; i < w; i++) yr[i] = (ag_real)(acc[i] * c);
        }
    return AG_OK;
}

AG__CLONES static ag_status axis_spread(ag_node *n, ag_real c) {
    if (!n->in[0]->grad) return AG_OK;
    size_t outer, len, inner;
    axis_split(n, &outer, &len, &inner);
    ag_real *restrict dx = n->in[0]->grad;
    const ag_real *restrict dy = n->out.grad;
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < len; j++) {
            ag_real *restrict dxr = dx + (o * len + j) * inner;
            const ag_real *restrict dyr = dy + o * inner;
            for (size_t i = 0; i < inner; i++) dxr[i] += c * dyr[i];
        }
    return AG_OK;
}

static ag_status sum_axis_forward(ag_node *n) { return axis_reduce(n, 1.0); }
static ag_status sum_axis_backward(ag_node *n) { return axis_spread(n, 1); }
static const ag_op sum_axis_op = {"sum_axis", 1, sizeof(axis_params), axis_shape, sum_axis_forward,
                                  sum_axis_backward};
ag_tensor *ag_sum_axis(ag_tape *t, ag_tensor *x, int axis) {
    return AG__CALL(t, &sum_axis_op, &(axis_params){axis}, x);
}

static size_t axis_len(const ag_node *n) { return n->in[0]->shape[((const axis_params *)n->params)->axis]; }
static ag_status mean_axis_forward(ag_node *n) { return axis_reduce(n, 1.0 / (double)axis_len(n)); }
static ag_status mean_axis_backward(ag_node *n) { return axis_spread(n, (ag_real)(1.0 / (double)axis_len(n))); }
static const ag_op mean_axis_op = {"mean_axis", 1, sizeof(axis_params), axis_shape, mean_axis_forward,
                                   mean_axis_backward};
ag_tensor *ag_mean_axis(ag_tape *t, ag_tensor *x, int axis) {
    return AG__CALL(t, &mean_axis_op, &(axis_params){axis}, x);
}

/* ---------------------------------------------------------------- softmax, log-softmax
 * Row-wise over the last axis (a scalar is one row of one). With m = max_j x_j (subtracted so
 * that exp never overflows and the largest term is exactly 1):
 *   softmax:      p_j = e^(x_j - m) / sum_i e^(x_i - m);   dx_j += p_j (dp_j - sum_i p_i dp_i)
 *   log_softmax:  l_j = x_j - m - log sum_i e^(x_i - m);    dx_j += dl_j - e^(l_j) sum_i dl_i */

static size_t last_dim(const ag_tensor *x) { return x->ndim ? x->shape[x->ndim - 1] : 1; }

/* Float build: the exp passes are vector loops in every clone (ag__fn_exp_nonpos, the Cephes expf
 * of kernels/eltwise.h, ~1 ulp, 0 below -87.3 where p < 1e-38 relative to the row's largest), the
 * row max an integer max of order-preserving keys, and the row sums and dots 32 interleaved double
 * lanes combined pairwise (ag__sum's order): fixed orders, so the same bits on every machine and
 * thread count. Double build: the same loops over libm's exp. */
#ifdef AG_DOUBLE
typedef int64_t real_key;
#define KEY_MAG INT64_MAX
#else
typedef int32_t real_key;
#define KEY_MAG INT32_MAX
#endif
/* sign-magnitude bits to two's complement: integer order is float order (a NaN makes the row NaN
 * all the same, through its exp) */
static inline real_key key_flip(real_key b) { return b ^ ((b >> (8 * sizeof b - 1)) & KEY_MAG); }
AG__CLONES static ag_real softmax_row_max(const ag_real *restrict x, size_t C) {
    real_key m, k;
    memcpy(&m, &x[0], sizeof m);
    m = key_flip(m);
    for (size_t i = 1; i < C; i++) {
        memcpy(&k, &x[i], sizeof k);
        k = key_flip(k);
        m = k > m ? k : m;
    }
    m = key_flip(m);
    ag_real r;
    memcpy(&r, &m, sizeof r);
    return r;
}

/* p[j] = e^(x_j - m) for j < C; returns their sum (double lanes) */
AG__CLONES static double row_exp(const ag_real *restrict x, ag_real m, ag_real *restrict p, size_t C) {
    for (size_t j = 0; j < C; j++) p[j] = ag__fn_exp_nonpos(x[j] - m);
    return ag__sum(p, C);
}

enum { LANES = 32 };
/* sum_j a_j b_j in double lanes, combined as ag__sum */
AG__CLONES static double row_dot(const ag_real *restrict a, const ag_real *restrict b, size_t n) {
    double l[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) l[j] += (double)a[i + j] * (double)b[i + j];
    for (int j = 0; i < n; i++, j++) l[j] += (double)a[i] * (double)b[i];
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

AG__CLONES static ag_status softmax_forward(ag_node *n) {
    const size_t C = last_dim(n->in[0]), rows = n->out.size / C;
    for (size_t r = 0; r < rows; r++) {
        const ag_real *restrict x = n->in[0]->value + r * C;
        ag_real *restrict p = n->out.value + r * C;
        const double s = row_exp(x, softmax_row_max(x, C), p, C);
        const ag_real inv = (ag_real)(1.0 / s);
        for (size_t j = 0; j < C; j++) p[j] *= inv;
    }
    return AG_OK;
}

AG__CLONES static ag_status softmax_backward(ag_node *n) {
    if (!n->in[0]->grad) return AG_OK;
    const size_t C = last_dim(n->in[0]), rows = n->out.size / C;
    for (size_t r = 0; r < rows; r++) {
        const ag_real *restrict p = n->out.value + r * C, *restrict dp = n->out.grad + r * C;
        ag_real *restrict dx = n->in[0]->grad + r * C;
        const ag_real dot = (ag_real)row_dot(p, dp, C);
        for (size_t j = 0; j < C; j++) dx[j] += p[j] * (dp[j] - dot);
    }
    return AG_OK;
}

static ag_status same_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }

static const ag_op softmax_op = {"softmax", 1, 0, same_shape, softmax_forward, softmax_backward};
ag_tensor *ag_softmax(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &softmax_op, NULL, x); }

/* the row's e^(x_j - m) go through l (the output) before l_j = x_j - lse overwrites them */
AG__CLONES static ag_status log_softmax_forward(ag_node *n) {
    const size_t C = last_dim(n->in[0]), rows = n->out.size / C;
    for (size_t r = 0; r < rows; r++) {
        const ag_real *restrict x = n->in[0]->value + r * C;
        ag_real *restrict l = n->out.value + r * C;
        const ag_real m = softmax_row_max(x, C);
        const ag_real lse = m + (ag_real)log(row_exp(x, m, l, C));
        for (size_t j = 0; j < C; j++) l[j] = x[j] - lse;
    }
    return AG_OK;
}

/* e^(l_j): ag__fn_exp (any argument, within 1 ulp of libm; kernels/special.h) */
AG__CLONES static ag_status log_softmax_backward(ag_node *n) {
    if (!n->in[0]->grad) return AG_OK;
    const size_t C = last_dim(n->in[0]), rows = n->out.size / C;
    for (size_t r = 0; r < rows; r++) {
        const ag_real *restrict l = n->out.value + r * C, *restrict dl = n->out.grad + r * C;
        ag_real *restrict dx = n->in[0]->grad + r * C;
        const ag_real s = (ag_real)ag__sum(dl, C);
        for (size_t j = 0; j < C; j++) dx[j] += dl[j] - ag__fn_exp(l[j]) * s;
    }
    return AG_OK;
}

static const ag_op log_softmax_op = {"log_softmax", 1, 0, same_shape, log_softmax_forward,
                                     log_softmax_backward};
ag_tensor *ag_log_softmax(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &log_softmax_op, NULL, x); }


/*
 * ops/matmul.c - 2-D products: matmul, matmul_ex (either operand transposed) and linear.
 *
 * Every product is one ag_gemm call with transpose flags; no transpose is ever materialised. The
 * three products of backprop (backprop-derivation.md, "Vectorised form", rows are examples):
 *
 *     forward   Z  = X W^T        z^(l+1) = W^(l) a^(l) + b^(l), one example per row
 *     backward  dX = dZ W         delta^(l) = (W^(l))^T delta^(l+1)   (before .* f'(z^(l)))
 *               dW = dZ^T X       grad_W^(l) J = delta^(l+1) (a^(l))^T, summed over the rows
 *
 * All backward products run with beta = 1, so they accumulate into the gradients, except a
 * parameter's gradient under a gradient sink, which goes to the sink (see "gradients into a sink").
 *
 * Read next: ops/reduce.c.
 */
#include "../internal.h"
#include "../kernels/kernels.h"

/* Record a failure of ag_gemm (out of scratch memory) on the node. */
static ag_status gemm_check(ag_node *n, ag_status st) {
    if (st == AG_OK) return AG_OK;
    return ag_node_fail(n, st, "gemm failed: %s", ag_status_str(st));
}

/* ---------------------------------------------------------------- gradients into a sink
 * Under a gradient sink (ag_tape_set_grad_sink) the product that completes a parameter's gradient
 * goes tile by tile from the GEMM to the sink (an optimizer's update) instead of into ->grad:
 * the gradient never streams through memory. Ops claim such inputs with ag__sink_claim and run
 * that product last, after every product that reads the parameter's value. */
typedef struct sink_tile_ctx {
    const ag_grad_sink *sink;
    ag_tensor *x;
    size_t ld;
    unsigned flags;
    ag_real decay; /* sink_tile_decay, sink_tile_fold: the deferred term's c (ag__grad_add_scaled_value) */
} sink_tile_ctx;

static void sink_tile(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p, size_t ldp) {
    const sink_tile_ctx *c = ctx;
    c->sink->consume(c->sink->ctx, c->x, i0 * c->ld + j0, rows, cols, c->ld, p, ldp, c->flags);
}

/* The tile and the deferred term's c, for a sink that adds c * x itself (consume_decay). */
static void sink_tile_fold(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p,
                           size_t ldp) {
    const sink_tile_ctx *c = ctx;
    c->sink->consume_decay(c->sink->ctx, c->x, i0 * c->ld + j0, rows, cols, c->ld, p, ldp, c->flags, c->decay);
}

/* The magnitude bits of an ag_real as a signed integer: those of non-negative values order like the
 * values, and NaN/Inf have the largest (>= MAG_INF), so an integer max finds both (max_abs). */
#ifdef AG_DOUBLE
typedef int64_t mag_bits;
#define MAG_MASK INT64_MAX
#define MAG_INF ((mag_bits)0x7ff0000000000000)
#else
typedef int32_t mag_bits;
#define MAG_MASK INT32_MAX
#define MAG_INF ((mag_bits)0x7f800000)
#endif

/* The tile plus c * x over it (the L2 term's lambda W, added last as without a sink), in pieces of
 * at most SINK_BUF elements on the stack: the tile may be the GEMM's read-only zeros. The same pass
 * takes the largest magnitude, as max_abs below does, so a finite piece reaches the sink marked
 * AG_SINK_FINITE and the sink skips its own scan. */
#define SINK_BUF 2048
AG__CLONES static void sink_tile_decay(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p,
                                       size_t ldp) {
    const sink_tile_ctx *c = ctx;
    ag_real buf[SINK_BUF];
    const size_t cc = cols < SINK_BUF ? cols : SINK_BUF, rr = SINK_BUF / cc;
    for (size_t r0 = 0; r0 < rows; r0 += rr)
        for (size_t j = 0; j < cols; j += cc) {
            const size_t nr = rows - r0 < rr ? rows - r0 : rr, nc = cols - j < cc ? cols - j : cc;
            const size_t off = (i0 + r0) * c->ld + j0 + j;
            mag_bits m = 0;
            for (size_t r = 0; r < nr; r++) {
                const ag_real *restrict pr = p + (r0 + r) * ldp + j, *restrict w = c->x->value + off + r * c->ld;
                ag_real *restrict b = buf + r * nc;
                for (size_t q = 0; q < nc; q++) {
                    ag_real v = pr[q] + c->decay * w[q];
                    mag_bits vb;
                    memcpy(&vb, &v, sizeof vb);
                    vb &= MAG_MASK;
                    m = vb > m ? vb : m;
                    b[q] = v;
                }
            }
            c->sink->consume(c->sink->ctx, c->x, off, nr, nc, c->ld, buf, nc, m < MAG_INF ? AG_SINK_FINITE : 0u);
        }
}

/* Largest |v| over a rows x cols matrix (row stride ld), or +inf if some element is NaN/Inf: one
 * integer max over the magnitude bits, which vectorises (a float max that must see NaN does not). */
AG__CLONES static double max_abs(const ag_real *v, size_t rows, size_t cols, size_t ld) {
    mag_bits m = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            mag_bits b;
            memcpy(&b, v + r * ld + c, sizeof b);
            b &= MAG_MASK;
            m = b > m ? b : m;
        }
    if (m >= MAG_INF) return INFINITY;
    ag_real out;
    memcpy(&out, &m, sizeof out);
    return (double)out;
}

ag_status ag__sink_gemm(ag_node *n, ag_tensor *x, int ta, int tb, size_t m, size_t nn, size_t k,
                        const ag_real *a, size_t lda, const ag_real *b, size_t ldb) {
    /* partial sums of a product with several k blocks need m x nn scratch; arena memory that the
     * common case (k within one block) never touches, so it costs no traffic */
    ag_real *work = ag_node_alloc(n, m * nn * sizeof(ag_real));
    if (!work) return AG_ERR_NOMEM;
    /* every |P_ij| <= k max|A| max|B|: with that bound well inside the range (rounding adds at
     * most a factor (1 + eps)^k), the product is finite and the sink may skip its NaN/Inf scan;
     * the bound costs O((m + nn) k) against the product's O(m nn k) */
    double bound = (double)k * max_abs(a, ta ? k : m, ta ? m : k, lda) * max_abs(b, tb ? nn : k, tb ? k : nn, ldb);
    sink_tile_ctx c = {&n->out.tape->sink, x, nn, bound < 0.25 * AG__REAL_MAX ? AG_SINK_FINITE : 0u, 0};
    double decay_bound;
    ag_gemm_tile_fn to_sink = sink_tile;
    if (ag__take_deferred(n->out.tape, x, &c.decay, &decay_bound)) {
        /* a deferred term comes last. A sink that reads x anyway adds it in that pass (one read of
         * W per step, not two: main job batch 32 +15%); finite when both bounds leave room. Else
         * sink_tile_decay adds it and checks each piece itself. */
        if (c.sink->consume_decay && c.decay != 0) { /* a zero c still owes 0 * W (NaN for an Inf W) */
            to_sink = sink_tile_fold;
            if (!(decay_bound < 0.25 * AG__REAL_MAX)) c.flags = 0;
        } else {
            to_sink = sink_tile_decay;
        }
    }
    return ag_gemm_tiles(ta, tb, m, nn, k, 1, a, lda, b, ldb, work, nn, to_sink, &c);
}

/* ---------------------------------------------------------------- matmul
 * C = op(A) op(B), A and B 2-D, op(X) = X^T when the flag is set. op(A) is m x k, op(B) k x n.
 * Backward, with dop(A) = dC op(B)^T and dop(B) = op(A)^T dC:
 *   dA += dC op(B)^T          (A not transposed; m x k)
 *   dA += op(B) dC^T          (A transposed: dA = dop(A)^T; k x m)
 *   dB += op(A)^T dC          (B not transposed; k x n)
 *   dB += dC^T op(A)          (B transposed: dB = dop(B)^T; n x k)
 * where op(B)^T of a stored B is "B with the flag flipped", and so on. */

typedef struct matmul_params {
    int trans_a, trans_b;
} matmul_params;

static ag_status matmul_shape(ag_node *n) {
    const matmul_params *p = n->params;
    const ag_tensor *a = n->in[0], *b = n->in[1];
    char sa[64], sb[64];
    if (a->ndim != 2 || b->ndim != 2)
        return ag_node_fail(n, AG_ERR_SHAPE, "a is %s and b is %s, both must be 2-D",
                            ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    size_t m = p->trans_a ? a->shape[1] : a->shape[0], ka = p->trans_a ? a->shape[0] : a->shape[1];
    size_t kb = p->trans_b ? b->shape[1] : b->shape[0], nn = p->trans_b ? b->shape[0] : b->shape[1];
    if (ka != kb)
        return ag_node_fail(n, AG_ERR_SHAPE, "a is %s%s but b is %s%s", ag_shape_str(a, sa, sizeof sa),
                            p->trans_a ? " (transposed)" : "", ag_shape_str(b, sb, sizeof sb),
                            p->trans_b ? " (transposed)" : "");
    return ag_node_set_shape(n, 2, (size_t[]){m, nn});
}

static ag_status matmul_forward(ag_node *n) {
    const matmul_params *p = n->params;
    const ag_tensor *a = n->in[0], *b = n->in[1];
    size_t m = n->out.shape[0], nn = n->out.shape[1], k = p->trans_a ? a->shape[0] : a->shape[1];
    return gemm_check(n, ag_gemm(p->trans_a, p->trans_b, m, nn, k, 1, a->value, a->shape[1], b->value,
                                 b->shape[1], 0, n->out.value, nn));
}

static ag_status matmul_backward(ag_node *n) {
    const matmul_params *p = n->params;
    const int ta = p->trans_a, tb = p->trans_b;
    ag_tensor *a = n->in[0], *b = n->in[1];
    const size_t m = n->out.shape[0], nn = n->out.shape[1], k = ta ? a->shape[0] : a->shape[1];
    const size_t lda = a->shape[1], ldb = b->shape[1];
    const ag_real *dC = n->out.grad; /* m x nn */
    /* each product reads the other operand's value, so at most one goes to a sink, and last */
    const int sink_b = b->grad && ag__sink_claim(n, 1);
    const int sink_a = a->grad && !sink_b && ag__sink_claim(n, 0);
    ag_status st = AG_OK;
    if (a->grad && !sink_a) {
        if (!ta) /* dA (m x k) += dC op(B)^T */
            st = ag_gemm(0, !tb, m, k, nn, 1, dC, nn, b->value, ldb, 1, a->grad, lda);
        else /* dA (k x m) += op(B) dC^T */
            st = ag_gemm(tb, 1, k, m, nn, 1, b->value, ldb, dC, nn, 1, a->grad, lda);
        if (st != AG_OK) return gemm_check(n, st);
    }
    if (b->grad && !sink_b) {
        if (!tb) /* dB (k x nn) += op(A)^T dC */
            st = ag_gemm(!ta, 0, k, nn, m, 1, a->value, lda, dC, nn, 1, b->grad, ldb);
        else /* dB (nn x k) += dC^T op(A) */
            st = ag_gemm(1, ta, nn, k, m, 1, dC, nn, a->value, lda, 1, b->grad, ldb);
        if (st != AG_OK) return gemm_check(n, st);
    }
    if (sink_a)
        st = !ta ? ag__sink_gemm(n, a, 0, !tb, m, k, nn, dC, nn, b->value, ldb)
                 : ag__sink_gemm(n, a, tb, 1, k, m, nn, b->value, ldb, dC, nn);
    if (sink_b)
        st = !tb ? ag__sink_gemm(n, b, !ta, 0, k, nn, m, a->value, lda, dC, nn)
                 : ag__sink_gemm(n, b, 1, ta, nn, k, m, dC, nn, a->value, lda);
    return gemm_check(n, st);
}

static const ag_op matmul_op = {"matmul", 2, sizeof(matmul_params), matmul_shape, matmul_forward,
                                matmul_backward};

ag_tensor *ag_matmul(ag_tape *t, ag_tensor *a, ag_tensor *b) {
    const matmul_params p = {0, 0};
    return AG__CALL(t, &matmul_op, &p, a, b);
}

ag_tensor *ag_matmul_ex(ag_tape *t, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b) {
    const matmul_params p = {trans_a != 0, trans_b != 0};
    return AG__CALL(t, &matmul_op, &p, a, b);
}

/* ---------------------------------------------------------------- linear
 * z = x W^T + b: x is K x in (or a 1-D row of in), W is out x in, b is out. Row k of z is
 * z^(l+1) = W^(l) a^(l) + b^(l) for example k. Backward (K rows at once):
 *   dx += dz W          delta^(l) = (W^(l))^T delta^(l+1), one row per example
 *   dW += dz^T x        grad_W^(l) J = delta^(l+1) (a^(l))^T, summed over the K examples
 *   db += sum_k dz_k    grad_b^(l) J = delta^(l+1), summed over the K examples
 * The op has 3 inputs with a bias and 2 without (two descriptors, one shared body). */

static ag_status linear_shape(ag_node *n) {
    const ag_tensor *x = n->in[0], *W = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    char sx[64], sw[64], sb[64];
    if (W->ndim != 2)
        return ag_node_fail(n, AG_ERR_SHAPE, "W is %s, must be 2-D (out x in)", ag_shape_str(W, sw, sizeof sw));
    if ((x->ndim != 1 && x->ndim != 2) || x->shape[x->ndim - 1] != W->shape[1])
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s but W is %s (expects x to be K x %zu)",
                            ag_shape_str(x, sx, sizeof sx), ag_shape_str(W, sw, sizeof sw), W->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != W->shape[0]))
        return ag_node_fail(n, AG_ERR_SHAPE, "b is %s but W is %s (expects b to be %zu)",
                            ag_shape_str(b, sb, sizeof sb), ag_shape_str(W, sw, sizeof sw), W->shape[0]);
    if (x->ndim == 1) return ag_node_set_shape(n, 1, (size_t[]){W->shape[0]});
    return ag_node_set_shape(n, 2, (size_t[]){x->shape[0], W->shape[0]});
}

static ag_status linear_forward(ag_node *n) {
    const ag_tensor *x = n->in[0], *W = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const size_t in = W->shape[1], out = W->shape[0], K = x->size / in;
    ag_real *restrict z = n->out.value; /* K x out */
    if (b) /* bias broadcast into every row, then z += x W^T */
        for (size_t k = 0; k < K; k++) memcpy(z + k * out, b->value, out * sizeof(ag_real));
    return gemm_check(n, ag_gemm(0, 1, K, out, in, 1, x->value, in, W->value, in, b ? 1 : 0, z, out));
}

static ag_status linear_backward(ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const size_t in = W->shape[1], out = W->shape[0], K = x->size / in;
    const ag_real *dz = n->out.grad; /* K x out */
    ag_status st = AG_OK;
    if (x->grad) { /* dx (K x in) += dz W */
        st = ag_gemm(0, 0, K, in, out, 1, dz, out, W->value, in, 1, x->grad, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    if (W->grad) { /* dW (out x in) += dz^T x, or straight to the sink after dx has used W */
        st = ag__sink_claim(n, 1) ? ag__sink_gemm(n, W, 1, 0, out, in, K, dz, out, x->value, in)
                                  : ag_gemm(1, 0, out, in, K, 1, dz, out, x->value, in, 1, W->grad, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    if (b && b->grad) { /* db (out) += column sums of dz */
        ag_real *restrict db = b->grad;
        for (size_t k = 0; k < K; k++) {
            const ag_real *restrict row = dz + k * out;
            for (size_t j = 0; j < out; j++) db[j] += row[j];
        }
    }
    return AG_OK;
}

static const ag_op linear_op = {"linear", 3, 0, linear_shape, linear_forward, linear_backward};
static const ag_op linear_nobias_op = {"linear", 2, 0, linear_shape, linear_forward, linear_backward};

ag_tensor *ag_linear(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b) {
    if (b) return AG__CALL(t, &linear_op, NULL, x, W, b);
    /* No bias. While the tape holds an error a NULL b may be a failed result: propagate it
     * rather than silently dropping the bias. */
    if (t && ag_tape_status(t) != AG_OK) return ag__op_missing(t);
    return AG__CALL(t, &linear_nobias_op, NULL, x, W);
}

/* ---------------------------------------------------------------- linear_act (fused dense layer)
 * a = f(z), z = x W^T + b, as one node: a dense layer's two ops (ag_linear, then the activation)
 * without the pre-activation buffer, its gradient buffer and a separate element-wise pass.
 * Forward: bias rows, z += x W^T (ag_gemm), then f applied in place while the tile is in cache.
 * Backward: f' comes from a itself (sigmoid a(1-a), tanh 1-a^2, relu [a > 0], identity 1), so
 *   dz  = da .* f'          one pass, into arena scratch (written, never zeroed), with
 *   db += sum_k dz_k        the bias gradient summed in the same pass
 *   dx += dz W,  dW += dz^T x   as linear.
 * Used by ag_dense_forward when the caller does not ask for z (layers/dense.c). Same shapes and
 * messages as linear (linear_shape); the act is the op's parameter. */

typedef struct linear_act_params {
    int act; /* AG__ACT_* */
} linear_act_params;

AG__CLONES static ag_status linear_act_forward(ag_node *n) {
    ag_status st = linear_forward(n);
    if (st != AG_OK) return st;
    ag_real *restrict a = n->out.value;
    const size_t N = n->out.size;
    switch (((const linear_act_params *)n->params)->act) {
    case AG__ACT_SIGMOID:
        ag__sigmoid_array(a, a, N);
        break;
    case AG__ACT_TANH:
        for (size_t i = 0; i < N; i++) a[i] = ag__tanh1(a[i]);
        break;
    case AG__ACT_RELU:
        for (size_t i = 0; i < N; i++) {
            const ag_real v = a[i];
            a[i] = !(v <= 0) ? v : 0; /* NaN stays NaN, as in ag_relu */
        }
        break;
    default: break; /* identity */
    }
    return AG_OK;
}

AG__CLONES static ag_status linear_act_backward(ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const size_t in = W->shape[1], out = W->shape[0], K = x->size / in;
    const ag_real *restrict a = n->out.value, *restrict da = n->out.grad;
    ag_real *restrict dz = ag_node_alloc(n, n->out.size * sizeof(ag_real)); /* K x out */
    if (!dz) return AG_ERR_NOMEM;
    const int act = ((const linear_act_params *)n->params)->act;
    for (size_t k = 0; k < K; k++) {
        const ag_real *restrict ak = a + k * out, *restrict gk = da + k * out;
        ag_real *restrict dk = dz + k * out;
        switch (act) {
        case AG__ACT_SIGMOID:
            for (size_t j = 0; j < out; j++) dk[j] = gk[j] * ak[j] * (1 - ak[j]);
            break;
        case AG__ACT_TANH:
            for (size_t j = 0; j < out; j++) dk[j] = gk[j] * (1 - ak[j] * ak[j]);
            break;
        case AG__ACT_RELU: /* both loads unconditional: a select, which vectorises (a branch would not) */
            for (size_t j = 0; j < out; j++) {
                const ag_real aj = ak[j], gj = gk[j];
                dk[j] = aj > 0 ? gj : 0;
            }
            break;
        default:
            for (size_t j = 0; j < out; j++) dk[j] = gk[j];
            break;
        }
        if (b && b->grad) {
            ag_real *restrict db = b->grad;
            for (size_t j = 0; j < out; j++) db[j] += dk[j];
        }
    }
    ag_status st = AG_OK;
    if (x->grad) { /* dx (K x in) += dz W */
        st = ag_gemm(0, 0, K, in, out, 1, dz, out, W->value, in, 1, x->grad, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    if (W->grad) /* dW (out x in) += dz^T x, or straight to the sink after dx has used W */
        st = ag__sink_claim(n, 1) ? ag__sink_gemm(n, W, 1, 0, out, in, K, dz, out, x->value, in)
                                  : ag_gemm(1, 0, out, in, K, 1, dz, out, x->value, in, 1, W->grad, in);
    return gemm_check(n, st);
}

static const ag_op linear_act_op = {"linear_act", 3, sizeof(linear_act_params), linear_shape,
                                    linear_act_forward, linear_act_backward};
static const ag_op linear_act_nobias_op = {"linear_act", 2, sizeof(linear_act_params), linear_shape,
                                           linear_act_forward, linear_act_backward};

ag_tensor *ag__linear_act(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b, int act) {
    if (act < AG__ACT_IDENTITY || act > AG__ACT_RELU) {
        if (t && ag_tape_status(t) == AG_OK) ag__op_fail(t, AG_ERR_ARG, "linear_act: unknown activation %d", act);
        return ag__op_missing(t);
    }
    const linear_act_params p = {act};
    if (b) return AG__CALL(t, &linear_act_op, &p, x, W, b);
    if (t && ag_tape_status(t) != AG_OK) return ag__op_missing(t); /* as ag_linear: a NULL b may be a failed result */
    return AG__CALL(t, &linear_act_nobias_op, &p, x, W);
}

/*
 * ops/elementwise.c - element-wise built-ins: add, sub, mul, div with NumPy broadcasting, and the
 * unary maps (neg, scale, add_scalar, exp, log, square, pow, sqrt); the activations sigmoid, tanh
 * and relu are in ops/activation.c.
 *
 * Each op is one `static const ag_op` whose shape, forward and backward sit next to it. Forward
 * writes n->out.value; backward adds J^T dout into every input whose grad is non-NULL (inputs that
 * need no gradient have grad == NULL and are skipped).
 *
 * Loops are plain counted loops over restrict-qualified locals so that compilers vectorise them;
 * nothing here allocates, so a 1-element op costs little more than the engine's bookkeeping.
 * The forwards and backwards are AG__CLONES (internal.h): built for AVX-512, AVX2 and the SSE2
 * baseline, picked at load time, with the same bits from each (no FMA, no reassociation); not
 * the forwards made of libm calls (UNARY_PLAIN_FWD: the double build's exp, log, sqrt; pow).
 *
 * Read next: ops/activation.c, ops/matmul.c (the three products of backprop), ops/reduce.c, ops/loss.c.
 */
#include "../internal.h"

#include "../kernels/special.h"

#include <assert.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- broadcasting
 *
 * NumPy rules: shapes are right-aligned, and in every position the two sizes are equal or one of
 * them is 1 (that operand is repeated). The output has the larger rank. Forward and backward pick
 * a fast path when they can (same element count, a scalar operand, a [.., n] op [n] row operand)
 * and otherwise walk the 4-D index space with stride 0 along broadcast dimensions, adjacent axes
 * merged into runs as long as possible (bcast_plan_make). In backward the same strides reduce the
 * gradient over the dimensions an operand was repeated along: a run it is repeated along is summed
 * in a fixed blocked order (RUN_SUM), so that reduction streams at the speed of a same-shape op.
 */

/* Sizes of x right-aligned into 4 dimensions (leading 1s). */
static void pad4(const ag_tensor *x, size_t d[4]) {
    int off = 4 - x->ndim;
    for (int i = 0; i < 4; i++) d[i] = i < off ? 1 : x->shape[i - off];
}

static ag_status bcast_shape(ag_node *n) {
    const ag_tensor *a = n->in[0], *b = n->in[1];
    ag_node_grad_out_declare(n); /* BINARY_BACKWARD takes its gradients from ag_node_grad_out */
    if (a->ndim == b->ndim && a->size == b->size) { /* the common case: equal shapes */
        int eq = 1;
        for (int i = 0; i < a->ndim; i++) eq &= a->shape[i] == b->shape[i];
        if (eq) return ag__node_shape_like(n, a);
    }
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    size_t da[4], db[4], out[AG_MAX_DIMS];
    pad4(a, da);
    pad4(b, db);
    for (int i = 4 - nd; i < 4; i++) {
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1) {
            char sa[64], sb[64];
            return ag_node_fail(n, AG_ERR_SHAPE, "shapes %s and %s do not broadcast",
                                ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
        }
        out[i - (4 - nd)] = da[i] > db[i] ? da[i] : db[i];
    }
    return ag_node_set_shape(n, nd, out);
}

/* Length of x's data if x, right-aligned, is a trailing block of out (leading dims 1, the rest
 * equal): then element i of out uses x[i % len]. 0 otherwise. */
static size_t row_len(const ag_tensor *x, const ag_tensor *out) {
    size_t dx[4], dout[4];
    pad4(x, dx);
    pad4(out, dout);
    int i = 0;
    while (i < 4 && dx[i] == 1) i++; /* leading 1s: repeated (or out is 1 there too) */
    for (; i < 4; i++)
        if (dx[i] != dout[i]) return 0;
    return x->size;
}

/* Index plan of the general path: out dimensions and per-operand strides (0 where repeated). */
typedef struct bcast_plan {
    size_t n[4], sa[4], sb[4];
} bcast_plan;

static void plan_strides(const size_t d[4], const size_t out[4], size_t s[4]) {
    size_t stride = 1;
    for (int i = 3; i >= 0; i--) {
        s[i] = (d[i] == 1 && out[i] != 1) ? 0 : stride;
        stride *= d[i];
    }
}

/* Axis i (outer) joins the group of axes at k (inner, n_k long, stride s_k of its innermost axis) for
 * an operand that repeats along both, or steps through both as one run. */
static int joins(size_t s_i, size_t s_k, size_t n_k) { return s_k == 0 ? s_i == 0 : s_i == s_k * n_k; }

/* The plan with size-1 output axes dropped and adjacent axes merged where both operands allow
 * (N x C x H x W + C x 1 x 1 is N x C x HW: b repeated along N and along HW), right-aligned. The
 * walk visits the elements in the same order; the inner run is as long as it can be, and each
 * operand's stride along it is 0 (repeated) or 1. */
static void bcast_plan_make(const ag_node *n, bcast_plan *p) {
    size_t dout[4], da[4], db[4], sa[4], sb[4];
    pad4(&n->out, dout);
    pad4(n->in[0], da);
    pad4(n->in[1], db);
    plan_strides(da, dout, sa);
    plan_strides(db, dout, sb);
    int k = 4;
    for (int i = 0; i < 4; i++) p->n[i] = 1, p->sa[i] = p->sb[i] = 0;
    for (int i = 3; i >= 0; i--) {
        if (dout[i] == 1) continue;
        if (k < 4 && joins(sa[i], p->sa[k], p->n[k]) && joins(sb[i], p->sb[k], p->n[k])) {
            p->n[k] *= dout[i];
            continue;
        }
        k--;
        p->n[k] = dout[i];
        p->sa[k] = sa[i];
        p->sb[k] = sb[i];
    }
    assert(p->sa[3] <= 1 && p->sb[3] <= 1);
}

/* Runs the body for every inner run of the plan: i, ia, ib index its first element, L = n[3] long,
 * and each operand steps by its stride (0 or 1) along it. */
#define BCAST_RUNS(p, ...)                                                                   \
    do {                                                                                     \
        size_t i = 0;                                                                        \
        for (size_t i0 = 0; i0 < (p).n[0]; i0++)                                             \
            for (size_t i1 = 0; i1 < (p).n[1]; i1++)                                         \
                for (size_t i2 = 0; i2 < (p).n[2]; i2++, i += (p).n[3]) {                    \
                    const size_t ia = i0 * (p).sa[0] + i1 * (p).sa[1] + i2 * (p).sa[2];      \
                    const size_t ib = i0 * (p).sb[0] + i1 * (p).sb[1] + i2 * (p).sb[2];      \
                    __VA_ARGS__;                                                             \
                }                                                                            \
    } while (0)

/* dst += the sum of TERM over j < L (SET defines the term's inputs for j), in a fixed order that
 * depends on L only: in order for short runs, else RED_W interleaved partial sums (acc[l] takes
 * j = l mod RED_W; vector lanes in every clone, the same IEEE operations) folded in halves. The
 * reduction of a gradient over an axis an operand was repeated along, at memory speed. */
#define RED_W 32
#define RUN_SUM(dst, ASG, L, SET, TERM)                                                           \
    do {                                                                                     \
        ag_real s_ = 0;                                                                      \
        if ((L) < 2 * RED_W) {                                                               \
            for (size_t j = 0; j < (L); j++) { SET; s_ += (TERM); }                          \
        } else {                                                                             \
            ag_real acc_[RED_W] = {0};                                                       \
            size_t j0 = 0;                                                                   \
            for (; j0 + RED_W <= (L); j0 += RED_W)                                           \
                for (size_t l = 0; l < RED_W; l++) { const size_t j = j0 + l; SET; acc_[l] += (TERM); } \
            for (size_t l = 0; j0 + l < (L); l++) { const size_t j = j0 + l; SET; acc_[l] += (TERM); } \
            for (size_t w = RED_W / 2; w > 0; w /= 2)                                        \
                for (size_t l = 0; l < w; l++) acc_[l] += acc_[l + w];                       \
            s_ = acc_[0];                                                                    \
        }                                                                                    \
        (dst) ASG s_;                                                                        \
    } while (0)

/* Forward of a binary op: o = EXPR(x, y) with x from a and y from b. */
#define BINARY_FORWARD(fname, EXPR)                                                          \
    AG__CLONES static ag_status fname(ag_node *n) {                                          \
        const ag_tensor *A = n->in[0], *B = n->in[1];                                        \
        const ag_real *restrict a = A->value, *restrict b = B->value;                        \
        ag_real *restrict o = n->out.value;                                                  \
        const size_t N = n->out.size;                                                        \
        size_t m;                                                                            \
        if (A->size == N && B->size == N) {                                                  \
            for (size_t i = 0; i < N; i++) { const ag_real x = a[i], y = b[i]; o[i] = (EXPR); } \
        } else if (A->size == N && B->size == 1) {                                           \
            const ag_real y = b[0];                                                          \
            for (size_t i = 0; i < N; i++) { const ag_real x = a[i]; o[i] = (EXPR); }        \
        } else if (B->size == N && A->size == 1) {                                           \
            const ag_real x = a[0];                                                          \
            for (size_t i = 0; i < N; i++) { const ag_real y = b[i]; o[i] = (EXPR); }        \
        } else if (A->size == N && (m = row_len(B, &n->out)) != 0) {                         \
            for (size_t r = 0; r < N; r += m)                                                \
                for (size_t j = 0; j < m; j++) { const ag_real x = a[r + j], y = b[j]; o[r + j] = (EXPR); } \
        } else if (B->size == N && (m = row_len(A, &n->out)) != 0) {                         \
            for (size_t r = 0; r < N; r += m)                                                \
                for (size_t j = 0; j < m; j++) { const ag_real x = a[j], y = b[r + j]; o[r + j] = (EXPR); } \
        } else { /* runs with constant strides (0 or 1), so the loops vectorise */           \
            bcast_plan p;                                                                    \
            bcast_plan_make(n, &p);                                                          \
            const size_t L = p.n[3];                                                         \
            if (p.sa[3] && p.sb[3])                                                          \
                BCAST_RUNS(p, for (size_t j = 0; j < L; j++) {                               \
                    const ag_real x = a[ia + j], y = b[ib + j]; o[i + j] = (EXPR); });       \
            else if (p.sa[3])                                                                \
                BCAST_RUNS(p, const ag_real y = b[ib]; for (size_t j = 0; j < L; j++) {      \
                    const ag_real x = a[ia + j]; o[i + j] = (EXPR); });                      \
            else if (p.sb[3])                                                                \
                BCAST_RUNS(p, const ag_real x = a[ia]; for (size_t j = 0; j < L; j++) {      \
                    const ag_real y = b[ib + j]; o[i + j] = (EXPR); });                      \
            else                                                                             \
                BCAST_RUNS(p, const ag_real x = a[ia], y = b[ib]; for (size_t j = 0; j < L; j++) { \
                    o[i + j] = (EXPR); });                                                   \
        }                                                                                    \
        return AG_OK;                                                                        \
    }

/* The general backward into d (A's gradient when d indexes like a, B's like b): for each inner run,
 * element by element where d steps with the output (the order of the element walk: each element of
 * d gets its terms in that order), or RUN_SUM where d is repeated along the run. TERM in x, y, the
 * output o and its gradient g. */
#define BCAST_GRAD(p, d, ASG, to_a, a, b, sa3, sb3, TERM)                                    \
    do {                                                                                     \
        const size_t L = (p).n[3];                                                           \
        const size_t sd3 = to_a ? (sa3) : (sb3);                                             \
        if (sd3 && (sa3) && (sb3))                                                           \
            BCAST_RUNS(p, ag_real *restrict dr = (d) + (to_a ? ia : ib);                     \
                       for (size_t j = 0; j < L; j++) {                                      \
                           const ag_real x = (a)[ia + j], y = (b)[ib + j], out = o[i + j], g = dout[i + j]; \
                           (void)x, (void)y, (void)out;                                      \
                           dr[j] ASG (TERM);                                                  \
                       });                                                                   \
        else if (sd3 && (sa3))                                                               \
            BCAST_RUNS(p, ag_real *restrict dr = (d) + (to_a ? ia : ib); const ag_real y = (b)[ib]; \
                       for (size_t j = 0; j < L; j++) {                                      \
                           const ag_real x = (a)[ia + j], out = o[i + j], g = dout[i + j];   \
                           (void)x, (void)y, (void)out;                                      \
                           dr[j] ASG (TERM);                                                  \
                       });                                                                   \
        else if (sd3)                                                                        \
            BCAST_RUNS(p, ag_real *restrict dr = (d) + (to_a ? ia : ib); const ag_real x = (a)[ia]; \
                       for (size_t j = 0; j < L; j++) {                                      \
                           const ag_real y = (b)[ib + j], out = o[i + j], g = dout[i + j];   \
                           (void)x, (void)y, (void)out;                                      \
                           dr[j] ASG (TERM);                                                  \
                       });                                                                   \
        else if (to_a && (sb3)) /* da[ia] over a run of b */                                 \
            BCAST_RUNS(p, const ag_real x = (a)[ia]; (void)x;                                \
                       RUN_SUM((d)[ia], ASG, L, const ag_real y = (b)[ib + j]; const ag_real out = o[i + j]; \
                               const ag_real g = dout[i + j]; (void)y; (void)out,            \
                               TERM));                                                       \
        else if (!to_a && (sa3)) /* db[ib] over a run of a */                                \
            BCAST_RUNS(p, const ag_real y = (b)[ib]; (void)y;                                \
                       RUN_SUM((d)[ib], ASG, L, const ag_real x = (a)[ia + j]; const ag_real out = o[i + j]; \
                               const ag_real g = dout[i + j]; (void)x; (void)out,            \
                               TERM));                                                       \
        else /* both repeated along the run: only the output varies */                       \
            BCAST_RUNS(p, const ag_real x = (a)[ia], y = (b)[ib]; (void)x, (void)y;          \
                       RUN_SUM((d)[to_a ? ia : ib], ASG, L, const ag_real out = o[i + j];         \
                               const ag_real g = dout[i + j]; (void)out,                     \
                               TERM));                                                       \
    } while (0)

/* Backward of a binary op: da += DA, db += DB, both written in x, y, the output o and the output
 * gradient g. One written pointer per loop, so da and db may be the same buffer (x op x: the
 * first is fresh, the second then adds). A fresh gradient (ag_node_grad_out) is assigned 0 + term,
 * the bits of the former zero-then-add (-0 gives +0), wherever each element is written once: same
 * shape, or the full-size operand of a broadcast; a reduced operand is zeroed and summed into. */
#define GRAD_SAME(d, assign, DX)                                                             \
    do {                                                                                     \
        if (assign)                                                                          \
            for (size_t i = 0; i < N; i++) {                                                 \
                const ag_real x = a[i], y = b[i], out = o[i], g = dout[i];                   \
                (void)x, (void)y, (void)out;                                                 \
                (d)[i] = (ag_real)0 + (DX);                                                  \
            }                                                                                \
        else                                                                                 \
            for (size_t i = 0; i < N; i++) {                                                 \
                const ag_real x = a[i], y = b[i], out = o[i], g = dout[i];                   \
                (void)x, (void)y, (void)out;                                                 \
                (d)[i] += (DX);                                                              \
            }                                                                                \
    } while (0)
#define GRAD_BCAST(p, d, assign, to_a, X, DX)                                                \
    do {                                                                                     \
        if ((assign) && (X)->size == N) {                                                    \
            BCAST_GRAD(p, d, = (ag_real)0 +, to_a, a, b, (p).sa[3], (p).sb[3], DX);          \
        } else {                                                                             \
            if (assign) memset((d), 0, (X)->size * sizeof(ag_real));                        \
            BCAST_GRAD(p, d, +=, to_a, a, b, (p).sa[3], (p).sb[3], DX);                      \
        }                                                                                    \
    } while (0)
#define BINARY_BACKWARD(fname, DA, DB)                                                       \
    AG__CLONES static ag_status fname(ag_node *n) {                                          \
        ag_tensor *A = n->in[0], *B = n->in[1];                                              \
        const ag_real *restrict a = A->value, *restrict b = B->value;                        \
        const ag_real *restrict o = n->out.value, *restrict dout = n->out.grad;              \
        const size_t N = n->out.size;                                                        \
        int as_a, as_b;                                                                      \
        if (A->size == N && B->size == N) {                                                  \
            { /* a block each: da and db may be one buffer */                                 \
                ag_real *restrict da = ag_node_grad_out(n, 0, &as_a);                        \
                if (da) GRAD_SAME(da, as_a, DA);                                             \
            }                                                                                \
            { /* a block each: da and db may be one buffer */                                 \
                ag_real *restrict db = ag_node_grad_out(n, 1, &as_b);                        \
                if (db) GRAD_SAME(db, as_b, DB);                                             \
            }                                                                                \
            return AG_OK;                                                                    \
        }                                                                                    \
        bcast_plan p;                                                                        \
        bcast_plan_make(n, &p);                                                              \
        {                                                                                    \
            ag_real *restrict da = ag_node_grad_out(n, 0, &as_a);                            \
            if (da) GRAD_BCAST(p, da, as_a, 1, A, DA);                                       \
        }                                                                                    \
        {                                                                                    \
            ag_real *restrict db = ag_node_grad_out(n, 1, &as_b);                            \
            if (db) GRAD_BCAST(p, db, as_b, 0, B, DB);                                       \
        }                                                                                    \
        return AG_OK;                                                                        \
    }

/* ---- add: o = x + y;  dx += g, dy += g */
BINARY_FORWARD(add_forward, x + y)
BINARY_BACKWARD(add_backward, g, g)
static const ag_op add_op = {"add", 2, 0, bcast_shape, add_forward, add_backward};
ag_tensor *ag_add(ag_tape *t, ag_tensor *a, ag_tensor *b) { return AG__CALL(t, &add_op, NULL, a, b); }

/* ---- sub: o = x - y;  dx += g, dy -= g */
BINARY_FORWARD(sub_forward, x - y)
BINARY_BACKWARD(sub_backward, g, -g)
static const ag_op sub_op = {"sub", 2, 0, bcast_shape, sub_forward, sub_backward};
ag_tensor *ag_sub(ag_tape *t, ag_tensor *a, ag_tensor *b) { return AG__CALL(t, &sub_op, NULL, a, b); }

/* ---- mul: o = x y;  dx += g y, dy += g x */
BINARY_FORWARD(mul_forward, x * y)
BINARY_BACKWARD(mul_backward, g * y, g * x)
static const ag_op mul_op = {"mul", 2, 0, bcast_shape, mul_forward, mul_backward};
ag_tensor *ag_mul(ag_tape *t, ag_tensor *a, ag_tensor *b) { return AG__CALL(t, &mul_op, NULL, a, b); }

/* ---- div: o = x / y;  dx += g / y, dy -= g x / y^2 = g o / y (IEEE: y = 0 gives inf/NaN) */
BINARY_FORWARD(div_forward, x / y)
BINARY_BACKWARD(div_backward, g / y, -(g * out) / y)
static const ag_op div_op = {"div", 2, 0, bcast_shape, div_forward, div_backward};
ag_tensor *ag_div(ag_tape *t, ag_tensor *a, ag_tensor *b) { return AG__CALL(t, &div_op, NULL, a, b); }

/* ---------------------------------------------------------------- unary maps
 *
 * UNARY(op, FWD, BWD): o = FWD(x); dx += BWD(x, o, g). c is the op's constant (scale, add_scalar,
 * pow), 0 for the others. The output has the input's shape. */

static ag_status same_shape(ag_node *n) {
    ag_node_grad_out_declare(n); /* every UNARY backward takes its gradient from ag_node_grad_out */
    return ag__node_shape_like(n, n->in[0]);
}

#define UNARY_ATTR(name, FWD_ATTR, BWD_ATTR, FWD, BWD)                                       \
    FWD_ATTR static ag_status name##_forward(ag_node *n) {                                   \
        const ag_real *restrict xs = n->in[0]->value;                                        \
        ag_real *restrict o = n->out.value;                                                  \
        const ag_real c = n->params ? *(const ag_real *)n->params : 0;                       \
        (void)c;                                                                             \
        for (size_t i = 0, N = n->out.size; i < N; i++) {                                    \
            const ag_real x = xs[i];                                                         \
            o[i] = (FWD);                                                                    \
        }                                                                                    \
        return AG_OK;                                                                        \
    }                                                                                        \
    BWD_ATTR static ag_status name##_backward(ag_node *n) {                                  \
        int assign;                                                                          \
        ag_real *restrict dx = ag_node_grad_out(n, 0, &assign);                              \
        if (!dx) return AG_OK;                                                               \
        const ag_real *restrict xs = n->in[0]->value, *restrict o = n->out.value;            \
        const ag_real *restrict dout = n->out.grad;                                          \
        const ag_real c = n->params ? *(const ag_real *)n->params : 0;                       \
        (void)c;                                                                             \
        if (assign) /* 0 + term: the former zero-then-add's bits */                          \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                \
                const ag_real x = xs[i], out = o[i], g = dout[i];                            \
                (void)x, (void)out;                                                          \
                dx[i] = (ag_real)0 + (BWD);                                                  \
            }                                                                                \
        else                                                                                 \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                \
                const ag_real x = xs[i], out = o[i], g = dout[i];                            \
                (void)x, (void)out;                                                          \
                dx[i] += (BWD);                                                              \
            }                                                                                \
        return AG_OK;                                                                        \
    }
#define UNARY(name, FWD, BWD) UNARY_ATTR(name, AG__CLONES, AG__CLONES, FWD, BWD)
/* The forward without clones: a libm call per element (exp, log, pow, sqrt), so every clone
 * runs the same scalar calls, and measured (bench_eltwise) the AVX-512 clones of such row loops
 * (softmax) were ~10% slower. */
#define PLAIN
#define UNARY_PLAIN_FWD(name, FWD, BWD) UNARY_ATTR(name, PLAIN, AG__CLONES, FWD, BWD)

/* ---- neg: -x */
UNARY(neg, -x, -g)
static const ag_op neg_op = {"neg", 1, 0, same_shape, neg_forward, neg_backward};
ag_tensor *ag_neg(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &neg_op, NULL, x); }

/* ---- scale: c x;  dx += c g */
UNARY(scale, c * x, c * g)
static const ag_op scale_op = {"scale", 1, sizeof(ag_real), same_shape, scale_forward, scale_backward};
ag_tensor *ag_scale(ag_tape *t, ag_tensor *x, ag_real c) { return AG__CALL(t, &scale_op, &c, x); }

/* ---- add_scalar: x + c;  dx += g */
UNARY(add_scalar, x + c, g)
static const ag_op add_scalar_op = {"add_scalar", 1, sizeof(ag_real), same_shape, add_scalar_forward,
                                    add_scalar_backward};
ag_tensor *ag_add_scalar(ag_tape *t, ag_tensor *x, ag_real c) { return AG__CALL(t, &add_scalar_op, &c, x); }

/* The float build's exp, log and sqrt forwards are vector loops in every clone: ag__fn_exp and
 * ag__fn_log (kernels/special.h, <= 1 ulp from libm, libm's specials), and sqrtf, correctly
 * rounded, which vectorises because this file is built with -fno-math-errno (CMakeLists.txt).
 * The double build keeps libm per element (the 1e-6 gradient checks). */
#ifdef AG_DOUBLE
#define UNARY_VFWD UNARY_PLAIN_FWD
#define ag__vexp ag__exp
#define ag__vlog ag__log
#else
#define UNARY_VFWD UNARY
#define ag__vexp ag__fn_exp
#define ag__vlog ag__fn_log
#endif

/* ---- exp: e^x;  dx += g e^x = g o */
UNARY_VFWD(exp, ag__vexp(x), g * out)
static const ag_op exp_op = {"exp", 1, 0, same_shape, exp_forward, exp_backward};
ag_tensor *ag_exp(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &exp_op, NULL, x); }

/* ---- log: ln x;  dx += g / x. As libm: log 0 = -inf, log of a negative is NaN (no error). */
UNARY_VFWD(log, ag__vlog(x), g / x)
static const ag_op log_op = {"log", 1, 0, same_shape, log_forward, log_backward};
ag_tensor *ag_log(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &log_op, NULL, x); }

/* ---- square: x^2;  dx += 2 x g */
UNARY(square, x * x, 2 * x * g)
static const ag_op square_op = {"square", 1, 0, same_shape, square_forward, square_backward};
ag_tensor *ag_square(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &square_op, NULL, x); }

/* ---- pow: x^c;  dx += c x^(c-1) g, and 0 for c = 0 (x^0 = 1 is constant; c x^(c-1) would be
 * 0 * inf = NaN at x = 0). As libm: a negative x with a non-integer c gives NaN, and 0^(c-1) with
 * 0 < c < 1 gives inf in backward (no error). */
UNARY_ATTR(pow, PLAIN, PLAIN, ag__pow(x, c), c == 0 ? 0 : c * ag__pow(x, c - 1) * g) /* libm both ways */
static const ag_op pow_op = {"pow", 1, sizeof(ag_real), same_shape, pow_forward, pow_backward};
ag_tensor *ag_pow(ag_tape *t, ag_tensor *x, ag_real p) { return AG__CALL(t, &pow_op, &p, x); }

/* ---- sqrt: x^(1/2);  dx += g / (2 o). sqrt of a negative is NaN, as libm. */
UNARY_VFWD(sqrt, ag__sqrt(x), g / (2 * out))
static const ag_op sqrt_op = {"sqrt", 1, 0, same_shape, sqrt_forward, sqrt_backward};
ag_tensor *ag_sqrt(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &sqrt_op, NULL, x); }

/* sigmoid, tanh and relu: ops/activation.c, from the activation table. */

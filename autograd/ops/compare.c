/*
 * ops/compare.c - masks and comparisons: where, masked_fill, maximum, minimum, clamp, max_axis,
 * min_axis, abs, sign, and the argmax/argmin helpers.
 *
 * Masks are ordinary tensors (nonzero = true) without gradient. The binary and ternary ops
 * broadcast as ops/elementwise.c does (NumPy rules, right-aligned); here the plan also merges
 * adjacent dimensions that every operand walks alike, so a T x T mask on B x H x T x T scores is
 * one run of T*T per (b, h) and equal shapes are one flat loop. Every loop is selects of loaded
 * values (no branches), AG__CLONES: AVX-512/AVX2/SSE2 picked at load time, the same bits.
 *
 * Read next: ops/index.c.
 */
#include "../internal.h"

/* ---------------------------------------------------------------- broadcasting of k operands */

enum { MAX_OPS = 3 };

/* out dimensions n and, per operand, strides (0 where it is repeated), coalesced (see below) */
typedef struct bplan {
    size_t n[4], s[MAX_OPS][4];
} bplan;

static void pad4(const ag_tensor *x, size_t d[4]) {
    const int off = 4 - x->ndim;
    for (int i = 0; i < 4; i++) d[i] = i < off ? 1 : x->shape[i - off];
}

/* The broadcast shape of the k inputs; AG_ERR_SHAPE naming them (names[i], "" for the plain form). */
static ag_status bcast_shape_k(ag_node *n, int k, const char *const *names) {
    size_t d[MAX_OPS][4], out[4];
    int nd = 0;
    for (int j = 0; j < k; j++) {
        pad4(n->in[j], d[j]);
        nd = n->in[j]->ndim > nd ? n->in[j]->ndim : nd;
    }
    for (int i = 0; i < 4; i++) {
        size_t m = 1;
        for (int j = 0; j < k; j++) m = d[j][i] > m ? d[j][i] : m;
        for (int j = 0; j < k; j++)
            if (d[j][i] != m && d[j][i] != 1) {
                char s[MAX_OPS][64];
                for (int q = 0; q < k; q++) ag_shape_str(n->in[q], s[q], sizeof s[q]);
                if (k == 2) return ag_node_fail(n, AG_ERR_SHAPE, "shapes %s and %s do not broadcast", s[0], s[1]);
                return ag_node_fail(n, AG_ERR_SHAPE, "%s %s, %s %s and %s %s do not broadcast", names[0], s[0],
                                    names[1], s[1], names[2], s[2]);
            }
        out[i] = m;
    }
    return ag_node_set_shape(n, nd, out + (4 - nd));
}

/* Strides of each operand against the output, then merging: dimension i folds into i+1 when every
 * operand has s[i] == s[i+1] * n[i+1] (contiguous across both, or repeated along both). After it
 * the innermost stride of every operand is 0 or 1. */
static void bplan_make(const ag_node *n, int k, bplan *p) {
    size_t n4[4], s4[MAX_OPS][4];
    pad4(&n->out, n4);
    for (int j = 0; j < k; j++) {
        size_t d[4], stride = 1;
        pad4(n->in[j], d);
        for (int i = 3; i >= 0; i--) {
            s4[j][i] = (d[i] == 1 && n4[i] != 1) ? 0 : stride;
            stride *= d[i];
        }
    }
    int m = 3; /* p is filled from the innermost dimension outwards */
    for (int i = 0; i < 4; i++) p->n[i] = 1;
    for (int j = 0; j < MAX_OPS; j++)
        for (int i = 0; i < 4; i++) p->s[j][i] = 0;
    p->n[3] = n4[3];
    for (int j = 0; j < k; j++) p->s[j][3] = s4[j][3];
    for (int i = 2; i >= 0; i--) {
        if (n4[i] == 1) continue; /* walks nothing */
        int merge = p->n[m] != 1;
        for (int j = 0; j < k && merge; j++) merge = s4[j][i] == p->s[j][m] * p->n[m];
        if (merge) {
            p->n[m] *= n4[i];
            continue;
        }
        if (p->n[m] != 1) m--; /* else the run so far is one element: replace it */
        p->n[m] = n4[i];
        for (int j = 0; j < k; j++) p->s[j][m] = s4[j][i];
    }
}

/* BFOR(p, k, BODY): BODY(I, J0, J1, J2) for every output element I with its operand indices, the
 * inner run specialised when every operand walks it with stride 1 (vectorised), else general. */
#define BFOR(p, k, BODY)                                                                              \
    do {                                                                                              \
        const size_t n3_ = (p).n[3];                                                                  \
        int unit_ = 1;                                                                                \
        for (int j_ = 0; j_ < (k); j_++) unit_ &= (p).s[j_][3] == 1;                                  \
        size_t i_ = 0;                                                                                \
        for (size_t i0 = 0; i0 < (p).n[0]; i0++)                                                      \
            for (size_t i1 = 0; i1 < (p).n[1]; i1++)                                                  \
                for (size_t i2 = 0; i2 < (p).n[2]; i2++, i_ += n3_) {                                 \
                    const size_t b0_ = i0 * (p).s[0][0] + i1 * (p).s[0][1] + i2 * (p).s[0][2];        \
                    const size_t b1_ = i0 * (p).s[1][0] + i1 * (p).s[1][1] + i2 * (p).s[1][2];        \
                    const size_t b2_ = i0 * (p).s[2][0] + i1 * (p).s[2][1] + i2 * (p).s[2][2];        \
                    (void)b0_, (void)b1_, (void)b2_;                                                  \
                    if (unit_) {                                                                      \
                        for (size_t i3 = 0; i3 < n3_; i3++) BODY(i_ + i3, b0_ + i3, b1_ + i3, b2_ + i3); \
                    } else {                                                                          \
                        const size_t t0_ = (p).s[0][3], t1_ = (p).s[1][3], t2_ = (p).s[2][3];         \
                        (void)t0_, (void)t1_, (void)t2_;                                              \
                        for (size_t i3 = 0; i3 < n3_; i3++)                                           \
                            BODY(i_ + i3, b0_ + i3 * t0_, b1_ + i3 * t1_, b2_ + i3 * t2_);            \
                    }                                                                                 \
                }                                                                                     \
    } while (0)

/* ---------------------------------------------------------------- where
 * y = m ? a : b;  da += m ? dy : 0,  db += m ? 0 : dy;  the mask gets nothing */

static ag_status where_shape(ag_node *n) {
    static const char *const names[] = {"mask", "a", "b"};
    return bcast_shape_k(n, 3, names);
}

AG__CLONES static ag_status where_forward(ag_node *n) {
    const ag_real *restrict m = n->in[0]->value, *restrict a = n->in[1]->value, *restrict b = n->in[2]->value;
    ag_real *restrict y = n->out.value;
    const size_t N = n->out.size;
    if (n->in[0]->size == N && n->in[1]->size == N && n->in[2]->size == N) {
        for (size_t i = 0; i < N; i++) y[i] = m[i] != 0 ? a[i] : b[i];
        return AG_OK;
    }
    bplan p;
    bplan_make(n, 3, &p);
#define WHERE_F(I, JM, JA, JB) y[I] = m[JM] != 0 ? a[JA] : b[JB]
    BFOR(p, 3, WHERE_F);
    return AG_OK;
}

/* One written pointer per block: a and b may be one tensor (where(m, x, x)), so da and db may be
 * the same buffer. */
AG__CLONES static ag_status where_backward(ag_node *n) {
    const ag_real *restrict m = n->in[0]->value, *restrict g = n->out.grad;
    const size_t N = n->out.size;
    const int flat = n->in[0]->size == N && n->in[1]->size == N && n->in[2]->size == N;
    bplan p;
    if (!flat) bplan_make(n, 3, &p);
    if (n->in[1]->grad) {
        ag_real *restrict da = n->in[1]->grad;
#define WHERE_DA(I, JM, JA, JB) da[JA] += m[JM] != 0 ? g[I] : 0
        if (flat)
            for (size_t i = 0; i < N; i++) da[i] += m[i] != 0 ? g[i] : 0;
        else
            BFOR(p, 3, WHERE_DA);
    }
    if (n->in[2]->grad) {
        ag_real *restrict db = n->in[2]->grad;
#define WHERE_DB(I, JM, JA, JB) db[JB] += m[JM] != 0 ? 0 : g[I]
        if (flat)
            for (size_t i = 0; i < N; i++) db[i] += m[i] != 0 ? 0 : g[i];
        else
            BFOR(p, 3, WHERE_DB);
    }
    return AG_OK;
}

static const ag_op where_op = {"where", 3, 0, where_shape, where_forward, where_backward};
ag_tensor *ag_where(ag_tape *t, ag_tensor *mask, ag_tensor *a, ag_tensor *b) {
    return AG__CALL(t, &where_op, NULL, mask, a, b);
}

/* ---------------------------------------------------------------- masked_fill
 * y = m ? v : x (m broadcast to x's shape);  dx += m ? 0 : dy */

static ag_status masked_fill_shape(ag_node *n) {
    const ag_tensor *x = n->in[0], *m = n->in[1];
    size_t dx[4], dm[4];
    pad4(x, dx);
    pad4(m, dm);
    int ok = m->ndim <= x->ndim;
    for (int i = 0; i < 4; i++) ok &= dm[i] == dx[i] || dm[i] == 1;
    if (!ok) {
        char sx[64], sm[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "mask %s does not broadcast to x %s", ag_shape_str(m, sm, sizeof sm),
                            ag_shape_str(x, sx, sizeof sx));
    }
    return ag__node_shape_like(n, x);
}

AG__CLONES static ag_status masked_fill_forward(ag_node *n) {
    const ag_real v = *(const ag_real *)n->params;
    const ag_real *restrict x = n->in[0]->value, *restrict m = n->in[1]->value;
    ag_real *restrict y = n->out.value;
    bplan p;
    bplan_make(n, 2, &p);
#define FILL_F(I, JX, JM, J2) y[I] = m[JM] != 0 ? v : x[JX]
    BFOR(p, 2, FILL_F);
    return AG_OK;
}

AG__CLONES static ag_status masked_fill_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ag_real *restrict m = n->in[1]->value, *restrict g = n->out.grad;
    bplan p;
    bplan_make(n, 2, &p);
#define FILL_DX(I, JX, JM, J2) dx[JX] += m[JM] != 0 ? 0 : g[I]
    BFOR(p, 2, FILL_DX);
    return AG_OK;
}

static const ag_op masked_fill_op = {"masked_fill", 2, sizeof(ag_real), masked_fill_shape, masked_fill_forward,
                                     masked_fill_backward};
ag_tensor *ag_masked_fill(ag_tape *t, ag_tensor *x, ag_tensor *mask, ag_real value) {
    return AG__CALL(t, &masked_fill_op, &value, x, mask);
}

/* ---------------------------------------------------------------- maximum, minimum
 * y = max(a, b) (NaN if either is);  da += dy [a > b] + dy/2 [a == b], db likewise: ties split
 * equally (the subgradient torch takes), so maximum(a, b) = (a + b + |a - b|) / 2 to the gradient. */

static ag_status bin_shape(ag_node *n) { return bcast_shape_k(n, 2, NULL); }

#define MINMAX(name, GT)                                                                              \
    AG__CLONES static ag_status name##_forward(ag_node *n) {                                          \
        const ag_real *restrict a = n->in[0]->value, *restrict b = n->in[1]->value;                   \
        ag_real *restrict y = n->out.value;                                                           \
        const size_t N = n->out.size;                                                                 \
        if (n->in[0]->size == N && n->in[1]->size == N) {                                             \
            for (size_t i = 0; i < N; i++) {                                                          \
                const ag_real x = a[i], z = b[i];                                                     \
                y[i] = (GT(x, z) || x != x) ? x : z; /* a NaN a wins; a NaN b fails GT */              \
            }                                                                                         \
            return AG_OK;                                                                             \
        }                                                                                             \
        bplan p;                                                                                      \
        bplan_make(n, 2, &p);                                                                         \
        BFOR(p, 2, name##_F);                                                                         \
        return AG_OK;                                                                                 \
    }                                                                                                 \
    /* one written pointer per block: maximum(x, x) adds both halves into one buffer */              \
    AG__CLONES static ag_status name##_backward(ag_node *n) {                                         \
        const ag_real *restrict a = n->in[0]->value, *restrict b = n->in[1]->value;                   \
        const ag_real *restrict g = n->out.grad;                                                      \
        const size_t N = n->out.size;                                                                 \
        const int flat = n->in[0]->size == N && n->in[1]->size == N;                                  \
        bplan p;                                                                                      \
        if (!flat) bplan_make(n, 2, &p);                                                              \
        if (n->in[0]->grad) {                                                                         \
            ag_real *restrict da = n->in[0]->grad;                                                    \
            if (flat)                                                                                 \
                for (size_t i = 0; i < N; i++) {                                                      \
                    const ag_real x = a[i], z = b[i], h = g[i] * (ag_real)0.5;                        \
                    da[i] += GT(x, z) ? g[i] : x == z ? h : 0;                                        \
                }                                                                                     \
            else                                                                                      \
                BFOR(p, 2, name##_DA);                                                                \
        }                                                                                             \
        if (n->in[1]->grad) {                                                                         \
            ag_real *restrict db = n->in[1]->grad;                                                    \
            if (flat)                                                                                 \
                for (size_t i = 0; i < N; i++) {                                                      \
                    const ag_real x = a[i], z = b[i], h = g[i] * (ag_real)0.5;                        \
                    db[i] += GT(z, x) ? g[i] : x == z ? h : 0;                                        \
                }                                                                                     \
            else                                                                                      \
                BFOR(p, 2, name##_DB);                                                                \
        }                                                                                             \
        return AG_OK;                                                                                 \
    }                                                                                                 \
    static const ag_op name##_op = {#name, 2, 0, bin_shape, name##_forward, name##_backward};        \
    ag_tensor *ag_##name(ag_tape *t, ag_tensor *a, ag_tensor *b) { return AG__CALL(t, &name##_op, NULL, a, b); }

#define GT_MAX(x, z) ((x) > (z))
#define GT_MIN(x, z) ((x) < (z))
#define MM_F(GT, I, JA, JB) y[I] = (GT(a[JA], b[JB]) || a[JA] != a[JA]) ? a[JA] : b[JB]
#define MM_DA(GT, I, JA, JB) da[JA] += GT(a[JA], b[JB]) ? g[I] : a[JA] == b[JB] ? g[I] * (ag_real)0.5 : 0
#define MM_DB(GT, I, JA, JB) db[JB] += GT(b[JB], a[JA]) ? g[I] : a[JA] == b[JB] ? g[I] * (ag_real)0.5 : 0
#define maximum_F(I, JA, JB, J2) MM_F(GT_MAX, I, JA, JB)
#define maximum_DA(I, JA, JB, J2) MM_DA(GT_MAX, I, JA, JB)
#define maximum_DB(I, JA, JB, J2) MM_DB(GT_MAX, I, JA, JB)
#define minimum_F(I, JA, JB, J2) MM_F(GT_MIN, I, JA, JB)
#define minimum_DA(I, JA, JB, J2) MM_DA(GT_MIN, I, JA, JB)
#define minimum_DB(I, JA, JB, J2) MM_DB(GT_MIN, I, JA, JB)
MINMAX(maximum, GT_MAX)
MINMAX(minimum, GT_MIN)

/* ---------------------------------------------------------------- unary: clamp, abs, sign */

static ag_status same_shape(ag_node *n) { return ag__node_shape_like(n, n->in[0]); }

typedef struct clamp_params {
    ag_real lo, hi;
} clamp_params;

/* y = min(max(x, lo), hi) (NaN stays NaN);  dx += dy [lo <= x <= hi] */
static ag_status clamp_shape(ag_node *n) {
    const clamp_params *p = n->params;
    if (!(p->lo <= p->hi))
        return ag_node_fail(n, AG_ERR_ARG, "lo %g is not <= hi %g", (double)p->lo, (double)p->hi);
    return ag__node_shape_like(n, n->in[0]);
}

AG__CLONES static ag_status clamp_forward(ag_node *n) {
    const clamp_params p = *(const clamp_params *)n->params;
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    for (size_t i = 0, N = n->out.size; i < N; i++) {
        const ag_real v = x[i], u = v < p.lo ? p.lo : v;
        y[i] = u > p.hi ? p.hi : u;
    }
    return AG_OK;
}

AG__CLONES static ag_status clamp_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const clamp_params p = *(const clamp_params *)n->params;
    const ag_real *restrict x = n->in[0]->value, *restrict g = n->out.grad;
    for (size_t i = 0, N = n->out.size; i < N; i++) dx[i] += (x[i] >= p.lo && x[i] <= p.hi) ? g[i] : 0;
    return AG_OK;
}

static const ag_op clamp_op = {"clamp", 1, sizeof(clamp_params), clamp_shape, clamp_forward, clamp_backward};
ag_tensor *ag_clamp(ag_tape *t, ag_tensor *x, ag_real lo, ag_real hi) {
    const clamp_params p = {lo, hi};
    return AG__CALL(t, &clamp_op, &p, x);
}

/* sign(x) in {-1, 0, 1}, 0 for NaN (as torch.sign). Two compares subtracted, not nested selects:
 * gcc makes those a vcmpnltss, which valgrind 3.19 gets wrong for NaN. */
#define SIGN1(v) ((ag_real)((v) > 0) - (ag_real)((v) < 0))

/* y = |x|;  dx += sign(x) dy (0 at x = 0) */
AG__CLONES static ag_status abs_forward(ag_node *n) {
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    for (size_t i = 0, N = n->out.size; i < N; i++) y[i] = x[i] < 0 ? -x[i] : x[i] + 0; /* +0: |-0| = +0 */
    return AG_OK;
}

AG__CLONES static ag_status abs_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ag_real *restrict x = n->in[0]->value, *restrict g = n->out.grad;
    for (size_t i = 0, N = n->out.size; i < N; i++) dx[i] += SIGN1(x[i]) * g[i];
    return AG_OK;
}

static const ag_op abs_op = {"abs", 1, 0, same_shape, abs_forward, abs_backward};
ag_tensor *ag_abs(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &abs_op, NULL, x); }

AG__CLONES static ag_status sign_forward(ag_node *n) {
    const ag_real *restrict x = n->in[0]->value;
    ag_real *restrict y = n->out.value;
    for (size_t i = 0, N = n->out.size; i < N; i++) y[i] = SIGN1(x[i]);
    return AG_OK;
}

/* d sign / dx = 0 (almost everywhere): nothing to add. A backward all the same (not NULL), so
 * the result stays differentiable and a loss through it reaches its inputs with gradient 0. */
static ag_status sign_backward(ag_node *n) {
    (void)n;
    return AG_OK;
}

static const ag_op sign_op = {"sign", 1, 0, same_shape, sign_forward, sign_backward};
ag_tensor *ag_sign(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &sign_op, NULL, x); }

/* ---------------------------------------------------------------- max_axis, min_axis, argmax
 * x seen as outer x len x inner; y[o, i] = x[o, j*, i] with j* the first maximal j (a NaN is
 * maximal: the first NaN); dx[o, j*, i] += dy[o, i]. Forward keeps j* when backward will run. */

typedef struct axis_params {
    int axis; /* shape() normalises it */
} axis_params;

/* BETTER(v, m): v replaces the running best m: strictly greater (less), or the first NaN */
#define BETTER_MAX(v, m) (((v) > (m)) | (((v) != (v)) & ((m) == (m)))) /* bitwise: no branches */
#define BETTER_MIN(v, m) (((v) < (m)) | (((v) != (v)) & ((m) == (m))))

/* cnt columns of a len x inner block (row stride inner): m[i] = the best over j, arg[i] = j*
 * (arg may be NULL: not tracked). Vectorised across the columns. */
#define COL_BEST(name, BETTER)                                                                        \
    AG__CLONES static void name(const ag_real *restrict x, size_t len, size_t inner, size_t cnt,     \
                                ag_real *restrict m, int32_t *restrict arg) {                        \
        memcpy(m, x, cnt * sizeof *m);                                                                \
        if (arg) {                                                                                    \
            for (size_t i = 0; i < cnt; i++) arg[i] = 0;                                              \
            for (size_t j = 1; j < len; j++) {                                                        \
                const ag_real *restrict r = x + j * inner;                                            \
                const int32_t jj = (int32_t)j;                                                        \
                for (size_t i = 0; i < cnt; i++) {                                                    \
                    const int better = BETTER(r[i], m[i]);                                            \
                    m[i] = better ? r[i] : m[i];                                                      \
                    arg[i] = better ? jj : arg[i];                                                    \
                }                                                                                     \
            }                                                                                         \
        } else {                                                                                      \
            for (size_t j = 1; j < len; j++) {                                                        \
                const ag_real *restrict r = x + j * inner;                                            \
                for (size_t i = 0; i < cnt; i++) m[i] = BETTER(r[i], m[i]) ? r[i] : m[i];             \
            }                                                                                         \
        }                                                                                             \
    }
COL_BEST(best_col_max, BETTER_MAX)
COL_BEST(col_min, BETTER_MIN)

/* The best of a contiguous run, vectorised: the run seen as rows of LANES columns (col_best's
 * loop, whose runtime count the compiler vectorises; a fixed 16 it unrolls into branches), the
 * lanes and the tail merged, then the first index holding it. Returns j* of x[0..len). */
enum { LANES = 32 };
#define ROW_BEST(name, col, BETTER)                                                                   \
    AG__CLONES static size_t name(const ag_real *restrict x, size_t len) {                            \
        ag_real m[LANES], best = x[0];                                                                \
        const size_t rows = len / LANES;                                                              \
        size_t j = 1;                                                                                 \
        if (rows > 0) {                                                                               \
            col(x, rows, LANES, LANES, m, NULL);                                                      \
            for (int l = 0; l < LANES; l++) best = BETTER(m[l], best) ? m[l] : best;                  \
            j = rows * LANES;                                                                         \
        }                                                                                             \
        for (; j < len; j++) best = BETTER(x[j], best) ? x[j] : best;                                 \
        if (best != best) {                                                                           \
            for (j = 0; x[j] == x[j]; j++) continue;                                                  \
            return j;                                                                                 \
        }                                                                                             \
        for (j = 0; j + LANES <= len; j += LANES) { /* a block at a time, then within it */           \
            int hit = 0;                                                                              \
            for (int l = 0; l < LANES; l++) hit |= x[j + l] == best;                                  \
            if (hit) break;                                                                           \
        }                                                                                             \
        for (; x[j] != best; j++) continue;                                                           \
        return j;                                                                                     \
    }
ROW_BEST(best_row_max, best_col_max, BETTER_MAX)
ROW_BEST(row_min, col_min, BETTER_MIN)

typedef size_t (*row_fn)(const ag_real *, size_t);
typedef void (*col_fn)(const ag_real *, size_t, size_t, size_t, ag_real *, int32_t *);

/* y (outer x inner) and arg (or NULL) of x around the axis. */
static void best_axis(const ag_real *x, size_t outer, size_t len, size_t inner, ag_real *y, int32_t *arg,
                      row_fn row, col_fn col) {
    if (inner == 1) {
        for (size_t o = 0; o < outer; o++, x += len) {
            const size_t j = row(x, len);
            y[o] = x[j];
            if (arg) arg[o] = (int32_t)j;
        }
        return;
    }
    for (size_t o = 0; o < outer; o++, x += len * inner)
        col(x, len, inner, inner, y + o * inner, arg ? arg + o * inner : NULL);
}

static ag_status best_axis_shape(ag_node *n) {
    axis_params *p = n->params;
    const ag_tensor *x = n->in[0];
    ag_status st = ag__axis(n, &p->axis, x->ndim, x);
    if (st != AG_OK) return st;
    if (x->shape[p->axis] > INT32_MAX) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "axis %d of %s is longer than INT32_MAX", p->axis,
                            ag_shape_str(x, s, sizeof s));
    }
    size_t shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != p->axis) shape[nd++] = x->shape[i];
    return ag_node_set_shape(n, nd, shape);
}

static ag_status best_axis_forward(ag_node *n, row_fn row, col_fn col) {
    size_t outer, len, inner;
    ag__axis_split(n->in[0], ((const axis_params *)n->params)->axis, &outer, &len, &inner);
    int32_t *arg = NULL;
    if (ag_node_needs_grad(n)) {
        arg = ag_node_alloc(n, n->out.size * sizeof *arg);
        if (!arg) return AG_ERR_NOMEM;
        n->saved = arg;
    }
    best_axis(n->in[0]->value, outer, len, inner, n->out.value, arg, row, col);
    return AG_OK;
}

static ag_status best_axis_backward(ag_node *n) {
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    size_t outer, len, inner;
    ag__axis_split(n->in[0], ((const axis_params *)n->params)->axis, &outer, &len, &inner);
    const int32_t *restrict arg = n->saved;
    const ag_real *restrict dy = n->out.grad;
    for (size_t o = 0; o < outer; o++, dx += len * inner, dy += inner, arg += inner)
        for (size_t i = 0; i < inner; i++) dx[(size_t)arg[i] * inner + i] += dy[i];
    return AG_OK;
}

static ag_status max_axis_forward(ag_node *n) { return best_axis_forward(n, best_row_max, best_col_max); }
static ag_status min_axis_forward(ag_node *n) { return best_axis_forward(n, row_min, col_min); }
static const ag_op max_axis_op = {"max_axis", 1, sizeof(axis_params), best_axis_shape, max_axis_forward,
                                  best_axis_backward};
static const ag_op min_axis_op = {"min_axis", 1, sizeof(axis_params), best_axis_shape, min_axis_forward,
                                  best_axis_backward};
ag_tensor *ag_max_axis(ag_tape *t, ag_tensor *x, int axis) {
    return AG__CALL(t, &max_axis_op, &(axis_params){axis}, x);
}
ag_tensor *ag_min_axis(ag_tape *t, ag_tensor *x, int axis) {
    return AG__CALL(t, &min_axis_op, &(axis_params){axis}, x);
}

/* argmax/argmin: best_axis with the running bests in a stack block of columns at a time. */
static ag_status arg_best(const ag_tensor *x, int axis, int32_t *out, row_fn row, col_fn col) {
    if (!x || !out) return AG_ERR_ARG;
    const int a = axis < 0 ? axis + x->ndim : axis;
    if (a < 0 || a >= x->ndim || x->shape[a] > INT32_MAX) return AG_ERR_SHAPE;
    size_t outer, len, inner;
    ag__axis_split(x, a, &outer, &len, &inner);
    if (inner == 1) {
        for (size_t o = 0; o < outer; o++) out[o] = (int32_t)row(x->value + o * len, len);
        return AG_OK;
    }
    enum { BLOCK = 256 };
    ag_real m[BLOCK];
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i += BLOCK) {
            const size_t cnt = inner - i < BLOCK ? inner - i : BLOCK;
            col(x->value + o * len * inner + i, len, inner, cnt, m, out + o * inner + i);
        }
    return AG_OK;
}

ag_status ag_argmax(const ag_tensor *x, int axis, int32_t *out) { return arg_best(x, axis, out, best_row_max, best_col_max); }
ag_status ag_argmin(const ag_tensor *x, int axis, int32_t *out) { return arg_best(x, axis, out, row_min, col_min); }

/*
 * ops/matmul.c - products: matmul, matmul_ex (either operand transposed), bmm (batched, broadcast
 * batch axes) and linear.
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

#include <stdatomic.h>

/* Record a failure of ag_gemm (out of scratch memory) on the node. */
static ag_status gemm_check(ag_node *n, ag_status st) {
    if (st == AG_OK) return AG_OK;
    return ag_node_fail(n, st, "gemm failed: %s", ag_status_str(st));
}

/* Under a gradient sink the product that completes a parameter's gradient goes tile by tile
 * from the GEMM to the sink (ag__sink_claim, ag__sink_gemm: sink.c), run last, after every
 * product that reads the parameter's value. */

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
    ag_node_grad_out_declare(n); /* matmul_backward: ag_node_grad_out */
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
    /* A fresh gradient is stored (beta 0), else added to (beta 1). Each product reads the other
     * operand's value, so at most one goes to a sink (a parameter's: never fresh), and last. */
    int fresh_a, fresh_b;
    ag_real *da = ag_node_grad_out(n, 0, &fresh_a);
    const int sink_b = b->grad && ag__sink_claim(n, 1);
    const int sink_a = da && !sink_b && ag__sink_claim(n, 0);
    ag_status st = AG_OK;
    if (da && !sink_a) {
        if (!ta) /* dA (m x k) += dC op(B)^T */
            st = ag_gemm(0, !tb, m, k, nn, 1, dC, nn, b->value, ldb, !fresh_a, da, lda);
        else /* dA (k x m) += op(B) dC^T */
            st = ag_gemm(tb, 1, k, m, nn, 1, b->value, ldb, dC, nn, !fresh_a, da, lda);
        if (st != AG_OK) return gemm_check(n, st);
    }
    ag_real *db = sink_b ? NULL : ag_node_grad_out(n, 1, &fresh_b); /* after dA: a and b may be one */
    if (db) {
        if (!tb) /* dB (k x nn) += op(A)^T dC */
            st = ag_gemm(!ta, 0, k, nn, m, 1, a->value, lda, dC, nn, !fresh_b, db, ldb);
        else /* dB (nn x k) += dC^T op(A) */
            st = ag_gemm(1, ta, nn, k, m, 1, dC, nn, a->value, lda, !fresh_b, db, ldb);
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

/* ---------------------------------------------------------------- bmm
 * Batched products: C[i] = op(A[i]) op(B[i]) for every batch index i. A and B have 2 to 4 dims; the
 * last two are the matrices, the leading ones batch axes broadcast NumPy-style (right-aligned, sizes
 * equal or 1; a 2-D operand is one matrix for every i). Backward is matmul's per product, summed
 * over the batch indices an operand was repeated along:
 *   dA[j] += sum over i using A[j] of dC[i] op(B[i])^T   (or op(B[i]) dC[i]^T when A is transposed)
 *   dB[j] += sum over i using B[j] of op(A[i])^T dC[i]   (or dC[i]^T op(A[i]) when B is transposed)
 * Every product is one ag_gemm on one matrix, so each has the bits of that 2-D product whoever
 * runs it. Small products run whole, one per task, over the batch on the thread pool: the tasks
 * write disjoint outputs (C[i], or all the terms of one dA[j] in a fixed order), so results do not
 * depend on the thread count. When B is one matrix for all and A is not transposed, the batch is
 * folded into A's rows: one ag_gemm of (batch m) x k, and dB a single product over those rows. */

typedef struct bmm_geom {
    size_t m, n, k;        /* op(A) m x k, op(B) k x n */
    size_t lda, ldb;       /* row lengths of the stored matrices */
    size_t am, bm, cm;     /* elements of one matrix of A, B, C */
    size_t ob[2], ab[2], bb[2]; /* batch sizes (2 axes, right-aligned, leading 1s) of C, A, B */
    size_t nc, na, nb;     /* matrices in C, A, B */
} bmm_geom;

/* Batch sizes of x (its leading ndim - 2 axes) right-aligned into 2. */
static void bmm_batch(const ag_tensor *x, size_t d[2]) {
    const int nb = x->ndim - 2;
    d[0] = nb >= 2 ? x->shape[nb - 2] : 1;
    d[1] = nb >= 1 ? x->shape[nb - 1] : 1;
}

static bmm_geom bmm_geom_of(const ag_node *n) {
    const matmul_params *p = n->params;
    const ag_tensor *a = n->in[0], *b = n->in[1];
    bmm_geom g;
    const size_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    const size_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    g.m = p->trans_a ? ac : ar;
    g.k = p->trans_a ? ar : ac;
    g.n = p->trans_b ? br : bc;
    g.lda = ac;
    g.ldb = bc;
    g.am = ar * ac;
    g.bm = br * bc;
    g.cm = g.m * g.n;
    bmm_batch(a, g.ab);
    bmm_batch(b, g.bb);
    for (int i = 0; i < 2; i++) g.ob[i] = g.ab[i] > g.bb[i] ? g.ab[i] : g.bb[i];
    g.nc = g.ob[0] * g.ob[1];
    g.na = g.ab[0] * g.ab[1];
    g.nb = g.bb[0] * g.bb[1];
    return g;
}

/* Matrix index in an operand of batch sizes d for the batch index (i0, i1) of C. */
static size_t bmm_at(const size_t d[2], size_t i0, size_t i1) {
    return (d[0] == 1 ? 0 : i0) * d[1] + (d[1] == 1 ? 0 : i1);
}

/* The batch is folded into A's rows: B one matrix, A not transposed and not repeated. */
static int bmm_folds(const bmm_geom *g, const matmul_params *p) { return g->nb == 1 && !p->trans_a && g->na == g->nc; }

static ag_status bmm_shape(ag_node *n) {
    const matmul_params *p = n->params;
    const ag_tensor *a = n->in[0], *b = n->in[1];
    char sa[64], sb[64];
    if (a->ndim < 2 || b->ndim < 2)
        return ag_node_fail(n, AG_ERR_SHAPE, "a is %s and b is %s, both must have 2 to 4 dims",
                            ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    const bmm_geom g = bmm_geom_of(n);
    const size_t kb = p->trans_b ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    if (g.k != kb)
        return ag_node_fail(n, AG_ERR_SHAPE, "a is %s%s but b is %s%s: inner sizes %zu and %zu differ",
                            ag_shape_str(a, sa, sizeof sa), p->trans_a ? " (transposed)" : "",
                            ag_shape_str(b, sb, sizeof sb), p->trans_b ? " (transposed)" : "", g.k, kb);
    for (int i = 0; i < 2; i++)
        if (g.ab[i] != g.bb[i] && g.ab[i] != 1 && g.bb[i] != 1)
            return ag_node_fail(n, AG_ERR_SHAPE, "batch axes of a %s and b %s do not broadcast",
                                ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    size_t out[AG_MAX_DIMS];
    if (nd == 4) out[0] = g.ob[0];
    if (nd >= 3) out[nd - 3] = g.ob[1];
    out[nd - 2] = g.m;
    out[nd - 1] = g.n;
    return ag_node_set_shape(n, nd, out);
}

/* Products of up to this many flops (2mnk) run one per task over the batch: ag_gemm would keep them
 * on one thread anyway (AG__GEMM_PAR_FLOPS). Larger ones run one after another, each threaded. */
#define BMM_BATCH_PAR_FLOPS AG__GEMM_PAR_FLOPS
/* A batch below this many flops in all stays on the calling thread (waking a worker costs ~10-30 us). */
#define BMM_PAR_MIN_FLOPS 1e6

/* What the three kinds of batch task compute: C[i], dA[j] or dB[j] for j (or i) in the task's range. */
enum { BMM_FWD, BMM_DA, BMM_DB };
typedef struct bmm_job {
    const bmm_geom *g;
    int ta, tb, what;
    const ag_real *a, *b, *dc;
    ag_real *c, *da, *db;
    size_t count, per_task; /* destination matrices, and how many each task takes */
    atomic_int status;      /* the first failure (AG_OK if none) */
} bmm_job;

/* C[i] = op(A) op(B) for the batch index i of C. */
static ag_status bmm_fwd_one(const bmm_job *J, size_t i) {
    const bmm_geom *g = J->g;
    const size_t i0 = i / g->ob[1], i1 = i % g->ob[1];
    const ag_real *A = J->a + bmm_at(g->ab, i0, i1) * g->am, *B = J->b + bmm_at(g->bb, i0, i1) * g->bm;
    return ag_gemm(J->ta, J->tb, g->m, g->n, g->k, 1, A, g->lda, B, g->ldb, 0, J->c + i * g->cm, g->n);
}

/* dA (or dB) of matrix j of the operand whose batch sizes are d: every C index using it, in order. */
static ag_status bmm_bwd_one(const bmm_job *J, size_t j) {
    const bmm_geom *g = J->g;
    const int to_a = J->what == BMM_DA;
    const size_t *d = to_a ? g->ab : g->bb;
    const size_t j0 = j / d[1], j1 = j % d[1];
    const int ta = J->ta, tb = J->tb;
    const size_t m = g->m, nn = g->n, k = g->k, lda = g->lda, ldb = g->ldb;
    for (size_t i0 = d[0] == 1 ? 0 : j0; i0 < (d[0] == 1 ? g->ob[0] : j0 + 1); i0++)
        for (size_t i1 = d[1] == 1 ? 0 : j1; i1 < (d[1] == 1 ? g->ob[1] : j1 + 1); i1++) {
            const ag_real *dC = J->dc + (i0 * g->ob[1] + i1) * g->cm;
            ag_status st;
            if (to_a) {
                const ag_real *B = J->b + bmm_at(g->bb, i0, i1) * g->bm;
                ag_real *dA = J->da + j * g->am;
                st = !ta ? ag_gemm(0, !tb, m, k, nn, 1, dC, nn, B, ldb, 1, dA, lda)  /* dC op(B)^T */
                         : ag_gemm(tb, 1, k, m, nn, 1, B, ldb, dC, nn, 1, dA, lda); /* op(B) dC^T */
            } else {
                const ag_real *A = J->a + bmm_at(g->ab, i0, i1) * g->am;
                ag_real *dB = J->db + j * g->bm;
                st = !tb ? ag_gemm(!ta, 0, k, nn, m, 1, A, lda, dC, nn, 1, dB, ldb)  /* op(A)^T dC */
                         : ag_gemm(1, ta, nn, k, m, 1, dC, nn, A, lda, 1, dB, ldb); /* dC^T op(A) */
            }
            if (st != AG_OK) return st;
        }
    return AG_OK;
}

static void bmm_task(void *ctx, size_t task, int thread) {
    (void)thread;
    bmm_job *J = ctx;
    const size_t lo = task * J->per_task, hi = lo + J->per_task < J->count ? lo + J->per_task : J->count;
    for (size_t j = lo; j < hi; j++) {
        ag_status st = J->what == BMM_FWD ? bmm_fwd_one(J, j) : bmm_bwd_one(J, j);
        if (st != AG_OK) {
            int ok = AG_OK;
            atomic_compare_exchange_strong(&J->status, &ok, (int)st);
            return;
        }
    }
}

/* Runs J over its `count` destination matrices, each made of `terms` products in all. */
static ag_status bmm_run(bmm_job *J, size_t terms) {
    const bmm_geom *g = J->g;
    const double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k;
    size_t tasks = 1;
    const int threads = ag_get_threads();
    if (threads > 1 && J->count > 1 && flops < BMM_BATCH_PAR_FLOPS && flops * (double)terms >= BMM_PAR_MIN_FLOPS)
        tasks = J->count < (size_t)threads * 4 ? J->count : (size_t)threads * 4;
    J->per_task = (J->count + tasks - 1) / tasks;
    tasks = (J->count + J->per_task - 1) / J->per_task;
    atomic_init(&J->status, AG_OK);
    if (tasks == 1) bmm_task(J, 0, 0);
    else ag__parallel_for(tasks, bmm_task, J);
    return (ag_status)atomic_load(&J->status);
}

static ag_status bmm_forward(ag_node *n) {
    const matmul_params *p = n->params;
    const bmm_geom g = bmm_geom_of(n);
    const ag_tensor *a = n->in[0], *b = n->in[1];
    if (bmm_folds(&g, p)) /* (batch m) x k times op(B) */
        return gemm_check(n, ag_gemm(0, p->trans_b, g.nc * g.m, g.n, g.k, 1, a->value, g.lda, b->value, g.ldb, 0,
                                     n->out.value, g.n));
    bmm_job J = {.g = &g, .ta = p->trans_a, .tb = p->trans_b, .what = BMM_FWD, .a = a->value, .b = b->value,
                 .c = n->out.value, .count = g.nc};
    return gemm_check(n, bmm_run(&J, g.nc));
}

static ag_status bmm_backward(ag_node *n) {
    const matmul_params *p = n->params;
    const int ta = p->trans_a, tb = p->trans_b;
    const bmm_geom g = bmm_geom_of(n);
    ag_tensor *a = n->in[0], *b = n->in[1];
    const ag_real *dC = n->out.grad;
    ag_status st = AG_OK;
    if (bmm_folds(&g, p)) { /* matmul's backward with m = batch m */
        const size_t m = g.nc * g.m, nn = g.n, k = g.k, lda = g.lda, ldb = g.ldb;
        if (a->grad) st = ag_gemm(0, !tb, m, k, nn, 1, dC, nn, b->value, ldb, 1, a->grad, lda);
        if (st == AG_OK && b->grad)
            st = !tb ? ag_gemm(1, 0, k, nn, m, 1, a->value, lda, dC, nn, 1, b->grad, ldb)
                     : ag_gemm(1, 0, nn, k, m, 1, dC, nn, a->value, lda, 1, b->grad, ldb);
        return gemm_check(n, st);
    }
    bmm_job J = {.g = &g, .ta = ta, .tb = tb, .a = a->value, .b = b->value, .dc = dC, .da = a->grad,
                 .db = b->grad};
    if (a->grad) {
        J.what = BMM_DA;
        J.count = g.na;
        st = bmm_run(&J, g.nc);
    }
    if (st == AG_OK && b->grad) {
        J.what = BMM_DB;
        J.count = g.nb;
        st = bmm_run(&J, g.nc);
    }
    return gemm_check(n, st);
}

static const ag_op bmm_op = {"bmm", 2, sizeof(matmul_params), bmm_shape, bmm_forward, bmm_backward};

ag_tensor *ag_bmm(ag_tape *t, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b) {
    const matmul_params p = {trans_a != 0, trans_b != 0};
    return AG__CALL(t, &bmm_op, &p, a, b);
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
    ag_node_grad_out_declare(n); /* linear_backward, linear_act_backward: ag_node_grad_out */
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
    int fresh;
    ag_real *dx = ag_node_grad_out(n, 0, &fresh);
    if (dx) { /* dx (K x in) += dz W; a fresh one stored (beta 0) */
        st = ag_gemm(0, 0, K, in, out, 1, dz, out, W->value, in, !fresh, dx, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    ag_real *dW = ag_node_grad_out(n, 1, &fresh);
    if (dW) { /* dW (out x in) += dz^T x, or straight to the sink after dx has used W */
        st = ag__sink_claim(n, 1) ? ag__sink_gemm(n, W, 1, 0, out, in, K, dz, out, x->value, in)
                                  : ag_gemm(1, 0, out, in, K, 1, dz, out, x->value, in, !fresh, dW, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    ag_real *db = b ? ag_node_grad_out(n, 2, &fresh) : NULL; /* no restrict: b may be x */
    if (db) { /* db (out) += column sums of dz */
        if (fresh) memset(db, 0, out * sizeof(ag_real));
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
 * Backward: f' comes from a itself (the activation table, ops/activation.c), so
 *   dz  = da .* f'          one pass, into arena scratch (written, never zeroed), with
 *   db += sum_k dz_k        the bias gradient summed in the same pass
 *   dx += dz W,  dW += dz^T x   as linear.
 * Used by ag_dense_forward when the caller does not ask for z (layers/dense.c). Same shapes and
 * messages as linear (linear_shape); the act is the op's parameter. */

typedef struct linear_act_params {
    int act; /* ag_act: the row of ag__acts */
} linear_act_params;

static ag_status linear_act_forward(ag_node *n) {
    ag_status st = linear_forward(n);
    if (st != AG_OK) return st;
    const ag_act act = ((const linear_act_params *)n->params)->act;
    if (act != AG_ACT_IDENTITY) ag__acts[act].f(n->out.value, n->out.value, n->out.size); /* in place */
    return AG_OK;
}

AG__CLONES static ag_status linear_act_backward(ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const size_t in = W->shape[1], out = W->shape[0], K = x->size / in;
    const ag_real *restrict a = n->out.value, *restrict da = n->out.grad;
    ag_real *restrict dz = ag_node_alloc(n, n->out.size * sizeof(ag_real)); /* K x out */
    if (!dz) return AG_ERR_NOMEM;
    void (*const df)(const ag_real *, const ag_real *, ag_real *, size_t) =
        ag__acts[((const linear_act_params *)n->params)->act].df_set;
    int fresh;
    ag_real *db = b ? ag_node_grad_out(n, 2, &fresh) : NULL; /* no restrict: b may be x */
    if (db && fresh) memset(db, 0, out * sizeof(ag_real));
    for (size_t k = 0; k < K; k++) { /* a row at a time, db summed while it is in cache */
        ag_real *restrict dk = dz + k * out;
        df(a + k * out, da + k * out, dk, out);
        if (db)
            for (size_t j = 0; j < out; j++) db[j] += dk[j];
    }
    ag_status st = AG_OK;
    ag_real *dx = ag_node_grad_out(n, 0, &fresh);
    if (dx) { /* dx (K x in) += dz W; a fresh one stored (beta 0) */
        st = ag_gemm(0, 0, K, in, out, 1, dz, out, W->value, in, !fresh, dx, in);
        if (st != AG_OK) return gemm_check(n, st);
    }
    ag_real *dW = ag_node_grad_out(n, 1, &fresh);
    if (dW) /* dW (out x in) += dz^T x, or straight to the sink after dx has used W */
        st = ag__sink_claim(n, 1) ? ag__sink_gemm(n, W, 1, 0, out, in, K, dz, out, x->value, in)
                                  : ag_gemm(1, 0, out, in, K, 1, dz, out, x->value, in, !fresh, dW, in);
    return gemm_check(n, st);
}

static const ag_op linear_act_op = {"linear_act", 3, sizeof(linear_act_params), linear_shape,
                                    linear_act_forward, linear_act_backward};
static const ag_op linear_act_nobias_op = {"linear_act", 2, sizeof(linear_act_params), linear_shape,
                                           linear_act_forward, linear_act_backward};

ag_tensor *ag_linear_act(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b, ag_act act) {
    if ((int)act < 0 || act >= AG_ACT_COUNT) {
        if (t && ag_tape_status(t) == AG_OK) ag__op_fail(t, AG_ERR_ARG, "linear_act: unknown activation %d", (int)act);
        return ag__op_missing(t);
    }
    const linear_act_params p = {act};
    if (b) return AG__CALL(t, &linear_act_op, &p, x, W, b);
    if (t && ag_tape_status(t) != AG_OK) return ag__op_missing(t); /* as ag_linear: a NULL b may be a failed result */
    return AG__CALL(t, &linear_act_nobias_op, &p, x, W);
}

/*
 * sink.c - gradient sinks ("update in backward") and the deferred c * value terms, in one place.
 *
 * With a sink set (ag_tape_set_grad_sink), ag_backward hands each parameter's gradient to the sink
 * as soon as the last op contributing to it has run: ag__sink_begin counts each parameter's uses,
 * ag__sink_after_node counts them down and delivers a complete gradient, ag__sink_end settles
 * what is left. An op whose product completes a parameter's gradient claims it (ag__sink_claim)
 * and sends that product from the GEMM to the sink tile by tile (ag__sink_gemm): the gradient then
 * never streams through memory. The L2 term's lambda W (ag__grad_add_scaled_value) is deferred
 * until the rest of the gradient is in, so that with and without a sink the sum is
 * (other contributions) + c * value, the same bits, and the GEMM can add it on the way out.
 */
#include "internal.h"

#include <assert.h>
#include <math.h>

/* ---------------------------------------------------------------- setting the sink */

ag_status ag_tape_set_grad_sink(ag_tape *t, const ag_grad_sink *sink) {
    if (!t) return AG_ERR_ARG;
    if (sink && !sink->consume) return ag__fail(t, AG_ERR_ARG, "set_grad_sink: sink has no consume function");
    t->has_sink = sink != NULL;
    if (sink) t->sink = *sink;
    return AG_OK;
}

const ag_grad_sink *ag_tape_grad_sink(const ag_tape *t) { return t && t->has_sink ? &t->sink : NULL; }

void ag_ext_grad_zeroed(ag_tensor *param) {
    if (param && (param->flags & AG_PARAM)) ag__param(param)->sink_flags &= ~AG__GRAD_DIRTY;
}

/* ---------------------------------------------------------------- deferred c * value terms */

typedef struct ag__defer {
    struct ag__defer *next;
    ag_tensor *x; /* NULL once taken */
    ag_real c;
    double bound; /* >= max |c * x->value|, or INFINITY */
} ag__defer;

AG__CLONES static void add_scaled(ag_real *restrict y, ag_real c, const ag_real *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += c * x[i];
}

void ag__grad_add_scaled_value(ag_node *n, int i, ag_real c, double bound) {
    ag_tensor *x = n->in[i];
    ag_tape *t = n->out.tape;
    if (!x->grad) return;
    const int param = (x->flags & (AG_PARAM | AG_REQUIRES_GRAD)) == (AG_PARAM | AG_REQUIRES_GRAD);
    /* with check_numerics each node's contribution is checked where it is made: no deferral */
    if (param && !(ag__param(x)->sink_flags & AG__GRAD_DEFERRED) && !t->check_numerics) {
        ag__defer *d = ag__arena_alloc(t, sizeof *d);
        if (d) { /* arena full: add it now instead, the same sum */
            *d = (ag__defer){t->defer, x, c, bound};
            t->defer = d;
            ag__param(x)->sink_flags |= AG__GRAD_DEFERRED | AG__SINK_CLAIMED; /* CLAIMED: ->grad not written */
            return;
        }
    }
    add_scaled(x->grad, c, x->value, x->size);
    if (x->flags & AG_PARAM) ag__param(x)->sink_flags &= ~AG__SINK_CLAIMED; /* written: mark it dirty */
}

int ag__take_deferred(ag_tape *t, ag_tensor *x, ag_real *c, double *bound) {
    if (!(x->flags & AG_PARAM) || !(ag__param(x)->sink_flags & AG__GRAD_DEFERRED)) return 0;
    for (ag__defer *d = t->defer; d; d = d->next)
        if (d->x == x) {
            *c = d->c;
            *bound = d->bound;
            d->x = NULL;
            ag__param(x)->sink_flags &= ~AG__GRAD_DEFERRED;
            return 1;
        }
    assert(0 && "deferred flag without an entry");
    return 0;
}

/* Add x's deferred term into ->grad (its gradient is complete). */
static void apply_deferred(ag_tape *t, ag_tensor *x) {
    ag_real c;
    double bound;
    if (ag__take_deferred(t, x, &c, &bound)) {
        add_scaled(x->grad, c, x->value, x->size);
        ag__param(x)->sink_flags |= AG__GRAD_DIRTY;
    }
}

/* ---------------------------------------------------------------- the sweep's hooks */

/* pending = how many recorded ops (that can run backward) take each parameter, so that the sweep
 * knows when a parameter's gradient is complete. Two walks: clear (and ask the sink whether it
 * takes the parameter), then count. */
static void count_param_uses(const ag_tape *t, ag_tensor *loss) {
    for (int pass = 0; pass < 2; pass++)
        for (ag_node *n = ag__node_of(loss); n; n = n->prev) {
            if (!n->op || !(n->out.flags & AG_REQUIRES_GRAD)) continue;
            for (int i = 0; i < n->n_in; i++) {
                ag_tensor *x = n->in[i];
                if ((x->flags & (AG_PARAM | AG_REQUIRES_GRAD)) != (AG_PARAM | AG_REQUIRES_GRAD)) continue;
                ag__param_tensor *p = ag__param(x);
                if (pass) {
                    p->pending++;
                } else {
                    p->pending = 0;
                    if (t->sink.accepts && !t->sink.accepts(t->sink.ctx, x)) p->sink_flags |= AG__SINK_REFUSED;
                    else p->sink_flags &= ~AG__SINK_REFUSED;
                }
            }
        }
}

void ag__sink_begin(ag_tape *t, ag_tensor *loss) {
    t->defer = NULL;
    if (t->has_sink) count_param_uses(t, loss);
}

/* Hand x's whole accumulated gradient to the sink, then leave ->grad zeroed. */
static void deliver_param(ag_tape *t, ag__param_tensor *p) {
    ag_tensor *x = &p->t;
    t->sink.consume(t->sink.ctx, x, 0, 1, x->size, x->size, x->grad, x->size, 0);
    memset(x->grad, 0, x->size * sizeof(ag_real));
    p->sink_flags &= ~AG__GRAD_DIRTY;
}

/* Parameter bookkeeping after a node's backward, also for nodes no gradient reached (they add
 * nothing). */
void ag__sink_param_done(ag_tape *t, ag__param_tensor *p, int reached, ag_status st) {
    if (p->sink_flags & AG__SINK_CLAIMED) p->sink_flags &= ~AG__SINK_CLAIMED; /* delivered, or deferred */
    else if (reached) p->sink_flags |= AG__GRAD_DIRTY;
    if (t->has_sink && !(p->sink_flags & AG__SINK_REFUSED) && --p->pending == 0 && st == AG_OK) {
        apply_deferred(t, &p->t); /* its last contributor has run: the gradient is complete */
        if (p->sink_flags & AG__GRAD_DIRTY) deliver_param(t, p);
    }
}

/* End of a backward: add the terms still owed (all of them without a sink), or on failure just
 * drop them (the gradients are incomplete anyway) so that no flag outlives the pass. */
void ag__sink_end(ag_tape *t, int ok) {
    for (ag__defer *d = t->defer; d; d = d->next)
        if (d->x) {
            ag__param_tensor *p = ag__param(d->x);
            if (ok) {
                add_scaled(d->x->grad, d->c, d->x->value, d->x->size);
                p->sink_flags |= AG__GRAD_DIRTY;
            }
            p->sink_flags &= ~AG__GRAD_DEFERRED;
            d->x = NULL;
        }
    t->defer = NULL;
}

int ag__sink_claim(ag_node *n, int i) {
    const ag_tape *t = n->out.tape;
    ag_tensor *x = n->in[i];
    /* check_numerics checks each contribution in ->grad as it is made, so nothing bypasses ->grad */
    if (!t->has_sink || t->check_numerics || (x->flags & (AG_PARAM | AG_REQUIRES_GRAD)) != (AG_PARAM | AG_REQUIRES_GRAD))
        return 0;
    ag__param_tensor *p = ag__param(x);
    if ((p->sink_flags & (AG__GRAD_DIRTY | AG__SINK_CLAIMED | AG__SINK_REFUSED)) || p->pending != 1) return 0;
    p->sink_flags |= AG__SINK_CLAIMED;
    return 1;
}

/* ---------------------------------------------------------------- products into the sink
 * The product that completes a parameter's gradient goes tile by tile from the GEMM to the sink
 * (an optimizer's update) instead of into ->grad. Ops run it last, after every product that reads
 * the parameter's value. */

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

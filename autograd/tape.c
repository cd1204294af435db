/*
 * tape.c - the arena, node recording (ag_apply) and ag_backward, a single reverse loop.
 *
 * Nodes are bump-allocated in creation order, which is a topological order of the graph: an op's
 * inputs always exist before it. So backward needs no sort; it walks the `prev` links from the
 * loss back to the first node, calling each op's backward once its output gradient is complete.
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise */
#endif
#include "internal.h"

#include <tapegrad/ag_ext.h>

#include <stdarg.h>
#include <stdio.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define AG_DEFAULT_MEM ((size_t)1 << 20)

/* Recording fills the arena upwards and backward walks it downwards; a long chain of small nodes
 * outgrows the caches, so both prefetch a few nodes ahead (a hint: any address is harmless). */
#ifndef AG__PREFETCH_AHEAD
#define AG__PREFETCH_AHEAD 1024
#endif
#if defined(__GNUC__) || defined(__clang__)
#define AG__PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define AG__PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
#else
#define AG__PREFETCH_W(p) ((void)0)
#define AG__PREFETCH_R(p) ((void)0)
#endif

const int AG__REAL_ANCHOR = 1; /* see ag.h: links only with programs built for the same ag_real */

/* ---------------------------------------------------------------- errors */

/* The message "<prefix>: <message>" (no prefix when NULL) on the tape; every failure counts. */
static ag_status vfail(ag_tape *t, ag_status st, const char *prefix, const char *fmt, va_list ap) {
    int n = prefix ? snprintf(t->errmsg, sizeof t->errmsg, "%s: ", prefix) : 0;
    if (n < 0 || (size_t)n >= sizeof t->errmsg) n = 0; /* a prefix that does not fit is dropped */
    ag__verrf(t->errmsg + n, sizeof t->errmsg - (size_t)n, st, fmt, ap);
    t->status = st;
    t->n_fails++;
    return st;
}

ag_status ag__fail(ag_tape *t, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(t, st, NULL, fmt, ap);
    va_end(ap);
    return st;
}

/* A builder's failure: a result is missing, so backward refuses until the error is cleared. */
static ag_status vop_fail(ag_tape *t, ag_status st, const char *fmt, va_list ap) {
    if (!t) return st;
    vfail(t, st, NULL, fmt, ap);
    t->op_failed = 1;
    return st;
}

ag_status ag__op_fail(ag_tape *t, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vop_fail(t, st, fmt, ap);
    va_end(ap);
    return st;
}

ag_status ag_ext_op_fail(ag_tape *t, ag_status st, const char *fmt, ...) { /* the same, for ag_ext.h */
    va_list ap;
    va_start(ap, fmt);
    vop_fail(t, st, fmt, ap);
    va_end(ap);
    return st;
}

ag_tensor *ag_ext_op_missing(ag_tape *t) { return ag__op_missing(t); }

ag_status ag_node_fail(ag_node *n, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(n->out.tape, st, n->op ? n->op->name : "tensor", fmt, ap);
    va_end(ap);
    return st;
}

ag_status ag_tape_status(const ag_tape *t) { return t ? t->status : AG_ERR_ARG; }
const char *ag_tape_errmsg(const ag_tape *t) { return t ? t->errmsg : "tape is NULL"; }

void ag_tape_clear_error(ag_tape *t) {
    if (!t) return;
    t->status = AG_OK;
    t->op_failed = 0;
    t->errmsg[0] = '\0';
}

/* ---------------------------------------------------------------- arena */

static ag__chunk *chunk_new(size_t size) {
    /* one block: descriptor, then data aligned to AG_ALIGN */
    size_t head = (sizeof(ag__chunk) + AG_ALIGN - 1) & ~(size_t)(AG_ALIGN - 1);
    if (size > SIZE_MAX - head - AG_ALIGN) return NULL;
    char *raw = ag__aligned_alloc(head + size);
    if (!raw) return NULL;
    ag__chunk *c = (ag__chunk *)(void *)raw;
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(AG__NO_HUGEPAGE)
    /* A big arena (a long chain of small nodes, a large batch) is walked end to end twice per
     * step: on 2 MiB pages its TLB misses vanish. Only advice: ignored where THP is off. */
    if (size >= ((size_t)32 << 20)) { /* training arenas stay on small pages: no RSS rounding */
        uintptr_t lo = ((uintptr_t)raw + ((uintptr_t)2 << 20) - 1) & ~(((uintptr_t)2 << 20) - 1);
        uintptr_t hi = ((uintptr_t)raw + head + size) & ~(((uintptr_t)2 << 20) - 1);
        if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    }
#endif
    c->next = NULL;
    c->base = raw + head;
    c->size = size;
    c->used = 0;
    c->owned = 1;
    return c;
}

static void chunks_free(ag__chunk *c) {
    while (c) {
        ag__chunk *next = c->next;
        if (c->owned) ag__aligned_free(c);
        c = next;
    }
}

static size_t capacity(const ag_tape *t) {
    size_t total = 0;
    for (const ag__chunk *c = t->first; c; c = c->next) total += c->size;
    return total;
}

/* Blocks of AG_ALIGN bytes or more start on an AG_ALIGN boundary (SIMD rows); smaller ones on 16
 * bytes, so a node of 1-element tensors does not pay three cache lines of padding. */
static size_t align_for(size_t bytes) { return bytes >= AG_ALIGN ? AG_ALIGN : 16; }

/* The slow path of arena_take: move on to a later chunk, or grow the arena by a new one. */
static void *arena_take_slow(ag_tape *t, size_t bytes, size_t align, size_t skew) {
    for (ag__chunk *c = t->cur; c; c = c->next) {
        size_t start = ((c->used + skew + align - 1) & ~(align - 1)) - skew;
        if (start <= c->size && c->size - start >= bytes) {
            c->used = start + bytes;
            t->cur = c;
            return c->base + start;
        }
        if (c->next) c->next->used = 0; /* a later chunk starts empty when we move to it */
    }
    if (!t->growable) return NULL;
    size_t have = capacity(t), need = bytes + align; /* room for the skewed start */
    size_t want = have > need ? have : need; /* double the arena, or fit the request */
    if (t->mem_limit && (have >= t->mem_limit || want > t->mem_limit - have)) {
        if (t->mem_limit - have < need) return NULL;
        want = t->mem_limit - have;
    }
    ag__chunk *c = chunk_new(want);
    if (!c) return NULL;
    ag__chunk *tail = t->cur;
    while (tail->next) tail = tail->next;
    tail->next = c;
    size_t start = ((skew + align - 1) & ~(align - 1)) - skew; /* base is AG_ALIGN-aligned */
    c->used = start + bytes;
    t->cur = c;
    return c->base + start;
}

/* bytes (a multiple of 8) from the arena at an address p with (p + skew) a multiple of align (a
 * power of two, at most AG_ALIGN; skew < align and a multiple of 8). The common case, room in the
 * current chunk, is a few instructions. */
static inline void *arena_take(ag_tape *t, size_t bytes, size_t align, size_t skew) {
    ag__chunk *c = t->cur;
    size_t start = ((c->used + skew + align - 1) & ~(align - 1)) - skew;
    if (start <= c->size && c->size - start >= bytes) {
        c->used = start + bytes;
        return c->base + start;
    }
    return arena_take_slow(t, bytes, align, skew);
}

void *ag__arena_alloc(ag_tape *t, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > SIZE_MAX / 2) return NULL;
    size_t align = align_for(bytes);
    bytes = (bytes + 15) & ~(size_t)15;
    return arena_take(t, bytes, align, 0);
}

ag_status ag_tape_new(ag_tape **out, const ag_tape_params *params) {
    if (!out) return AG_ERR_ARG;
    *out = NULL;
    ag_tape_params p = params ? *params : (ag_tape_params){0, NULL, 0};
    ag_tape *t = ag__calloc(1, sizeof *t);
    if (!t) return AG_ERR_NOMEM;
    if (p.mem_buffer) {
        uintptr_t raw = (uintptr_t)p.mem_buffer;
        uintptr_t base = (raw + AG_ALIGN - 1) & ~(uintptr_t)(AG_ALIGN - 1);
        if (p.mem_size < (size_t)(base - raw) + AG_ALIGN) {
            ag__free(t);
            return AG_ERR_ARG;
        }
        t->user_chunk = (ag__chunk){NULL, (char *)base, p.mem_size - (size_t)(base - raw), 0, 0};
        t->first = &t->user_chunk;
        t->growable = 0;
    } else {
        size_t size = p.mem_size ? p.mem_size : AG_DEFAULT_MEM;
        if (p.mem_limit && size > p.mem_limit) size = p.mem_limit;
        t->first = chunk_new(size);
        if (!t->first) {
            ag__free(t);
            return AG_ERR_NOMEM;
        }
        t->growable = 1;
        t->mem_limit = p.mem_limit;
    }
    t->cur = t->first;
    t->grad_enabled = 1;
    t->training = 1;
    t->gen = 1;
    *out = t;
    return AG_OK;
}

void ag_tape_free(ag_tape *t) {
    if (!t) return;
    chunks_free(t->first);
    ag__free(t);
}

void ag_tape_reset(ag_tape *t) {
    if (!t) return;
    /* Keep every chunk: the next step replays the same allocations into the same chunks, so it
     * allocates nothing, and a stale tensor pointer still points into memory the tape owns
     * (never freed before ag_tape_free), where the generation check can catch it. */
    for (ag__chunk *c = t->first; c; c = c->next) c->used = 0;
    t->cur = t->first;
    t->last = NULL;
    t->n_nodes = 0;
    t->gen++;
    t->step++;
    if (t->gen == 0) t->gen = 1; /* 0 marks parameters */
    t->backward_done = 0;
    t->param_views = NULL;
    t->op_failed = 0;
    t->status = AG_OK;
    t->errmsg[0] = '\0';
}

/* Keep the first chunk and as many of the next as fit in keep_bytes together, free the rest.
 * Chunks are used in list order, so the kept prefix is exactly what a step of up to that size
 * fills; an owned chunk is never the caller's mem_buffer (that one is always first, and alone). */
ag_status ag_tape_shrink(ag_tape *t, size_t keep_bytes) {
    if (!t) return AG_ERR_ARG;
    if (t->n_nodes || ag_tape_mem_used(t))
        return ag__fail(t, AG_ERR_STATE,
                        "tape_shrink: %zu nodes (%zu arena bytes) recorded since the last ag_tape_reset; "
                        "reset the tape first", t->n_nodes, ag_tape_mem_used(t));
    size_t kept = t->first->size;
    ag__chunk *tail = t->first;
    while (tail->next && tail->next->size <= keep_bytes && kept <= keep_bytes - tail->next->size) {
        tail = tail->next;
        kept += tail->size;
    }
    chunks_free(tail->next);
    tail->next = NULL;
    t->cur = t->first;
    return AG_OK;
}

int ag_tape_set_check_numerics(ag_tape *t, int enabled) {
    if (!t) return 0;
    int prev = t->check_numerics;
    t->check_numerics = enabled != 0;
    return prev;
}

uint64_t ag_tape_step(const ag_tape *t) { return t ? t->step : 0; }

/* First non-finite element of x, or x->size. x - x is 0 for finite x and NaN otherwise. */
static size_t first_nonfinite(const ag_real *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] - x[i] != 0) return i;
    return n;
}

/* The node's creation index, as ag_tape_dump prints it (#index): nodes before it on the tape; a node
 * being recorded (not linked yet) gets the next index. Walks the list, so only for error messages. */
static size_t node_creation_index(const ag_tape *t, const ag_node *n) {
    size_t before = 0;
    const ag_node *m = t->last;
    while (m && m != n) m = m->prev;
    if (!m) return t->n_nodes;
    for (m = n->prev; m; m = m->prev) before++;
    return before;
}

static ag_status numeric_fail(ag_node *n, const char *what, const ag_real *x, size_t size) {
    size_t i = first_nonfinite(x, size);
    if (i == size) return AG_OK;
    const ag_tape *t = n->out.tape;
    return ag_node_fail(n, AG_ERR_NUMERIC, "%s %s at element %zu of %zu (node #%zu, step %llu)", what,
                        x[i] != x[i] ? "NaN" : "Inf", i, size, node_creation_index(t, n),
                        (unsigned long long)t->step);
}

int ag_tape_set_grad_enabled(ag_tape *t, int enabled) {
    if (!t) return 0;
    int prev = t->grad_enabled;
    t->grad_enabled = enabled != 0;
    return prev;
}

int ag_tape_set_training(ag_tape *t, int training) {
    if (!t) return 0;
    int prev = t->training;
    t->training = training != 0;
    return prev;
}

void ag_tape_set_seed(ag_tape *t, uint64_t seed) {
    if (!t) return;
    t->seed = seed;
    t->seed_step = t->step; /* the key's step restarts at 0: a replayed step draws the same masks */
}

size_t ag_tape_node_count(const ag_tape *t) { return t ? t->n_nodes : 0; }
size_t ag_tape_mem_capacity(const ag_tape *t) { return t ? capacity(t) : 0; }

size_t ag_tape_mem_used(const ag_tape *t) {
    if (!t) return 0;
    size_t used = 0;
    for (const ag__chunk *c = t->first; c; c = c->next) {
        used += c->used;
        if (c == t->cur) break;
    }
    return used;
}

/* ---------------------------------------------------------------- recording */

void *ag_node_alloc(ag_node *n, size_t bytes) {
    ag_tape *t = n->out.tape;
    void *p = ag__arena_alloc(t, bytes);
    if (!p)
        ag_node_fail(n, AG_ERR_NOMEM, "tape arena is full (%zu bytes in use, asked for %zu more)",
                     ag_tape_mem_used(t), bytes);
    return p;
}

int ag_node_needs_grad(const ag_node *n) { return (n->out.flags & AG_REQUIRES_GRAD) != 0; }

ag_status ag_node_set_shape(ag_node *n, int ndim, const size_t *shape) {
    if (ndim < 0 || ndim > AG_MAX_DIMS || (ndim > 0 && !shape))
        return ag_node_fail(n, AG_ERR_SHAPE, "output rank %d is outside 0..%d", ndim, AG_MAX_DIMS);
    size_t numel;
    int rc = ag__shape_numel(ndim, shape, &numel);
    if (rc != 0) {
        ag_tensor tmp = {0};
        tmp.ndim = ndim;
        for (int i = 0; i < ndim; i++) tmp.shape[i] = shape[i];
        char s[96];
        return ag_node_fail(n, AG_ERR_SHAPE, "output shape %s %s", ag_shape_str(&tmp, s, sizeof s),
                            rc == -2 ? "has a zero dimension" : "overflows size_t");
    }
    n->out.ndim = ndim;
    for (int i = 0; i < AG_MAX_DIMS; i++) n->out.shape[i] = i < ndim ? shape[i] : 1;
    n->out.size = numel;
    return AG_OK;
}

typedef struct {
    ag__chunk *cur;
    size_t used;
} arena_mark;

static arena_mark mark_arena(const ag_tape *t) { return (arena_mark){t->cur, t->cur->used}; }

static void rewind_arena(ag_tape *t, arena_mark m) {
    for (ag__chunk *c = m.cur->next; c; c = c->next) c->used = 0;
    t->cur = m.cur;
    t->cur->used = m.used;
}

/* A fresh node with room for n_in input pointers and params.
 *
 * Layout. A node's header (ag_node, its input pointers, its params) is 8-aligned and placed so
 * that it ends on a 16-byte boundary: a tiny result (AG__TINY_BYTES of data or less) then gets
 * its value slot, and its grad slot, right behind it (ag__node_value), in the same cache lines,
 * with no padding. A long chain of scalar ops is bound by memory traffic, not arithmetic: this
 * keeps a 2-input node of 1-element tensors at 184 bytes (value and grad included) instead of
 * 208 spread over three places. Nodes with params start 16-aligned (params may need it). */
static ag_node *node_new(ag_tape *t, const ag_op *op, int n_in, size_t params_size) {
    size_t bytes = sizeof(ag_node) + (size_t)n_in * sizeof(ag_tensor *);
    size_t params_off = (bytes + 15) & ~(size_t)15;
    ag_node *n;
    if (params_size) {
        bytes = (params_off + params_size + 15) & ~(size_t)15;
        n = arena_take(t, bytes, 16, 0);
    } else {
        bytes = (bytes + 7) & ~(size_t)7;
        n = arena_take(t, bytes, 16, bytes & 15);
    }
    if (!n) return NULL;
    AG__PREFETCH_W((char *)n + AG__PREFETCH_AHEAD); /* the arena is filled upwards */
    /* Field by field, not memset: for 136 bytes compilers pick `rep stos`, whose start-up cost
     * and the failed store forwarding into the flags that follow were a third of recording. */
    ag_tensor *o = &n->out;
    o->value = NULL;
    o->grad = NULL;
    o->size = 0;
    for (int i = 0; i < AG_MAX_DIMS; i++) o->shape[i] = 1;
    o->ndim = 0;
    o->flags = 0;
    o->tape = t;
    o->gen = t->gen;
    o->name = NULL;
    n->op = op;
    n->prev = NULL;
    n->in = (ag_tensor **)(void *)(n + 1);
    n->n_in = n_in;
    n->engine_flags = 0;
    n->params = params_size ? (char *)n + params_off : NULL;
    n->saved = NULL;
    return n;
}

/* The value buffer of a fresh node whose shape is set (size elements). A tiny one comes with a
 * 16-byte grad slot reserved behind it when a gradient may reach it (AG__NODE_GRAD_INLINE; backward
 * zeroes and uses it instead of allocating). NULL if the arena is full (no message set). */
static ag_real *node_value(ag_tape *t, ag_tensor *x, int may_need_grad) {
    size_t bytes = x->size * sizeof(ag_real);
    if (bytes <= AG__TINY_BYTES) {
        ag_real *v = arena_take(t, may_need_grad ? 2 * AG__TINY_BYTES : AG__TINY_BYTES, 16, 0);
        if (v && may_need_grad) ag__node_of(x)->engine_flags |= AG__NODE_GRAD_INLINE;
        return v;
    }
    return ag__arena_alloc(t, bytes);
}

/* The view record of x (AG__NODE_PARAM_VIEW set), or NULL. */
static const ag__param_view *param_view_of(const ag_tape *t, const ag_tensor *x) {
    for (const ag__param_view *v = t->param_views; v; v = v->next)
        if (&v->node->out == x) return v;
    return NULL;
}

static int view_stale(const ag__param_view *v) { return ag__params_moves(v->store) != v->moves; }

static ag_status view_moved(ag_tape *t, const char *who, const ag__param_view *v) {
    return ag__fail(t, AG_ERR_STATE,
                    "%s: a view of a parameter (the result of %s) was recorded before its store moved "
                    "its buffers (ag_params_add or ag_params_truncate); reset the tape and record again",
                    who, v->node->op->name);
}

/* After shape() pointed n's value into an input's memory: if that memory is a parameter's, remember
 * where the parameter was (see AG__NODE_PARAM_VIEW). */
static ag_status note_param_view(ag_tape *t, ag_node *n) {
    const ag_params *store = NULL;
    uint64_t moves = 0;
    for (int i = 0; i < n->n_in && !store; i++) {
        ag_tensor *x = n->in[i];
        uintptr_t at = (uintptr_t)n->out.value, lo = (uintptr_t)x->value; /* may be unrelated objects */
        if (at < lo || at >= lo + x->size * sizeof(ag_real)) continue;
        if (x->flags & AG_PARAM) {
            store = ag__param_store(x);
            moves = ag__params_moves(store);
        } else if (ag__node_of(x)->engine_flags & AG__NODE_PARAM_VIEW) { /* a view of a view: as old as the first */
            const ag__param_view *of = param_view_of(t, x);
            store = of->store;
            moves = of->moves;
        } else {
            return AG_OK;
        }
    }
    if (!store) return AG_OK;
    ag__param_view *v = ag__arena_alloc(t, sizeof *v);
    if (!v) return ag_node_fail(n, AG_ERR_NOMEM, "tape arena is full (%zu bytes in use)", ag_tape_mem_used(t));
    *v = (ag__param_view){n, store, moves, t->param_views};
    t->param_views = v;
    n->engine_flags |= AG__NODE_PARAM_VIEW;
    return AG_OK;
}

static void node_link(ag_tape *t, ag_node *n) {
    n->prev = t->last;
    t->last = n;
    t->n_nodes++;
}

/* Validate input i of an op; a NULL input while the tape already holds an error propagates it. */
static ag_status check_input(ag_tape *t, const char *name, ag_tensor *x, int i) {
    if (!x) {
        if (t->status != AG_OK) return t->status;
        return ag__fail(t, AG_ERR_ARG, "%s: input %d is NULL", name, i);
    }
    if (x->tape == t) {
        if (x->gen == t->gen) {
            if (!(ag__node_of(x)->engine_flags & AG__NODE_PARAM_VIEW)) return AG_OK;
            const ag__param_view *v = param_view_of(t, x);
            return view_stale(v) ? view_moved(t, name, v) : AG_OK;
        }
        return ag__fail(t, AG_ERR_STATE, "%s: input %d was recorded before the last ag_tape_reset",
                        name, i);
    }
    if (!x->tape && (x->flags & AG_PARAM)) return AG_OK;
    if (x->tape) return ag__fail(t, AG_ERR_ARG, "%s: input %d belongs to another tape", name, i);
    return ag__fail(t, AG_ERR_ARG, "%s: input %d is neither a tape tensor nor a parameter", name, i);
}

static ag_status apply_impl(ag_tape *t, const ag_op *op, ag_tensor *const *in, int n_in,
                            const void *params, ag_tensor **out) {
    if (out) *out = NULL;
    if (!t) return AG_ERR_ARG;
    if (!op || !op->name || !op->shape || !op->forward)
        return ag__fail(t, AG_ERR_ARG, "apply: op descriptor is NULL or lacks name/shape/forward");
    if (!out) return ag__fail(t, AG_ERR_ARG, "%s: out is NULL", op->name);
    if (op->n_in != AG_VARIADIC && (op->n_in < 0 || op->n_in > AG_MAX_IN))
        return ag__fail(t, AG_ERR_ARG, "%s: descriptor's n_in is %d, expects 0..%d or AG_VARIADIC", op->name,
                        op->n_in, AG_MAX_IN);
    if (op->params_size > AG__MAX_OP_PARAMS)
        return ag__fail(t, AG_ERR_ARG, "%s: descriptor's params_size is %zu bytes, at most %zu", op->name,
                        op->params_size, (size_t)AG__MAX_OP_PARAMS);
    if (op->n_in == AG_VARIADIC ? (n_in < 1 || n_in > AG_MAX_IN) : n_in != op->n_in)
        return ag__fail(t, AG_ERR_ARG, "%s: got %d inputs, expects %d", op->name, n_in, op->n_in);
    if (!in && n_in > 0) return ag__fail(t, AG_ERR_ARG, "%s: input array is NULL", op->name);
    if (op->params_size && !params) return ag__fail(t, AG_ERR_ARG, "%s: params are NULL", op->name);
    int needs_grad = 0;
    for (int i = 0; i < n_in; i++) {
        ag_status st = check_input(t, op->name, in[i], i);
        if (st != AG_OK) return st;
        needs_grad |= (in[i]->flags & AG_REQUIRES_GRAD) != 0;
    }

    arena_mark m = mark_arena(t);
    ag_node *n = node_new(t, op, n_in, op->params_size);
    if (!n)
        return ag__fail(t, AG_ERR_NOMEM, "%s: tape arena is full (%zu bytes in use)", op->name,
                        ag_tape_mem_used(t));
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    if (op->params_size) memcpy(n->params, params, op->params_size);
    /* An op without backward is marked too: a gradient that reaches it must fail in backward,
     * not vanish here. Only detach stops gradients, by definition. */
    if (needs_grad && t->grad_enabled && op != &ag__detach_op) n->out.flags |= AG_REQUIRES_GRAD;

    unsigned long fails_before = t->n_fails;
    ag_status st = op->shape(n);
    if (st == AG_OK && n->out.size == 0) st = ag_node_set_shape(n, 0, NULL); /* shape() set none: scalar */
    ag__param_view *views_before = t->param_views;
    if (st == AG_OK && n->out.value) st = note_param_view(t, n);
    if (st == AG_OK && !n->out.value) {
        n->out.value = node_value(t, &n->out, (n->out.flags & AG_REQUIRES_GRAD) != 0);
        if (!n->out.value) {
            ag_node_fail(n, AG_ERR_NOMEM, "tape arena is full (%zu bytes in use, asked for %zu more)",
                         ag_tape_mem_used(t), n->out.size * sizeof(ag_real));
            st = AG_ERR_NOMEM;
        }
    }
    if (st == AG_OK) st = op->forward(n);
    if (st == AG_OK && t->n_fails != fails_before) st = t->status; /* ag_node_fail, then AG_OK returned */
    if (st == AG_OK && t->check_numerics) st = numeric_fail(n, "forward produced", n->out.value, n->out.size);
    if (st != AG_OK) {
        if (t->status == AG_OK) ag_node_fail(n, st, "failed with status %d", (int)st);
        t->param_views = views_before;
        rewind_arena(t, m);
        return st;
    }
    node_link(t, n);
    *out = &n->out;
    return AG_OK;
}

/* A failed op leaves a result missing: backward then refuses until the error is cleared. */
ag_status ag_apply(ag_tape *t, const ag_op *op, ag_tensor *const *in, int n_in, const void *params,
                   ag_tensor **out) {
    ag_status st = apply_impl(t, op, in, n_in, params, out);
    if (st != AG_OK && t) t->op_failed = 1;
    return st;
}

ag_tensor *ag_call(ag_tape *t, const ag_op *op, ag_tensor *const *in, int n_in, const void *params) {
    ag_tensor *out;
    return ag_apply(t, op, in, n_in, params, &out) == AG_OK ? out : NULL;
}

/* ---------------------------------------------------------------- leaves */

static ag_tensor *leaf_impl(ag_tape *t, const char *what, int ndim, const size_t *shape,
                            const ag_real *copy, ag_real *borrow) {
    if (!t) return NULL;
    if (ndim < 0 || ndim > AG_MAX_DIMS) {
        ag__fail(t, AG_ERR_ARG, "%s: rank %d is outside 0..%d", what, ndim, AG_MAX_DIMS);
        return NULL;
    }
    if (ndim > 0 && !shape) {
        ag__fail(t, AG_ERR_ARG, "%s: shape is NULL", what);
        return NULL;
    }
    arena_mark m = mark_arena(t);
    ag_node *n = node_new(t, NULL, 0, 0);
    if (!n) {
        ag__fail(t, AG_ERR_NOMEM, "%s: tape arena is full (%zu bytes in use)", what,
                 ag_tape_mem_used(t));
        return NULL;
    }
    ag_status st = ag_node_set_shape(n, ndim, shape);
    if (st != AG_OK) {
        /* ag_node_set_shape names the op; leaves have none, so restate with the function name */
        char msg[AG_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "%s", t->errmsg + (strncmp(t->errmsg, "tensor: ", 8) ? 0 : 8));
        ag__fail(t, st, "%s: %s", what, msg);
        rewind_arena(t, m);
        return NULL;
    }
    if (borrow) {
        n->out.value = borrow;
        n->out.flags |= AG_BORROWED;
    } else {
        n->out.value = node_value(t, &n->out, 1); /* ag_requires_grad may come later */
        if (!n->out.value) {
            ag__fail(t, AG_ERR_NOMEM, "%s: tape arena is full (%zu bytes in use)", what,
                     ag_tape_mem_used(t));
            rewind_arena(t, m);
            return NULL;
        }
        if (copy)
            memcpy(n->out.value, copy, n->out.size * sizeof(ag_real));
        else
            memset(n->out.value, 0, n->out.size * sizeof(ag_real));
    }
    node_link(t, n);
    return &n->out;
}

static ag_tensor *leaf_new(ag_tape *t, const char *what, int ndim, const size_t *shape,
                           const ag_real *copy, ag_real *borrow) {
    ag_tensor *x = leaf_impl(t, what, ndim, shape, copy, borrow);
    if (!x && t) t->op_failed = 1;
    return x;
}

ag_tensor *ag_tensor_new(ag_tape *t, int ndim, const size_t *shape) {
    return leaf_new(t, "tensor_new", ndim, shape, NULL, NULL);
}

ag_tensor *ag_tensor_from(ag_tape *t, int ndim, const size_t *shape, const ag_real *data) {
    if (t && !data) {
        ag__fail(t, AG_ERR_ARG, "tensor_from: data is NULL");
        t->op_failed = 1;
        return NULL;
    }
    return leaf_new(t, "tensor_from", ndim, shape, data, NULL);
}

ag_tensor *ag_tensor_wrap(ag_tape *t, int ndim, const size_t *shape, ag_real *data) {
    if (t && !data) {
        ag__fail(t, AG_ERR_ARG, "tensor_wrap: data is NULL");
        t->op_failed = 1;
        return NULL;
    }
    return leaf_new(t, "tensor_wrap", ndim, shape, NULL, data);
}

ag_tensor *ag_scalar(ag_tape *t, ag_real v) { return leaf_new(t, "tensor_from", 0, NULL, &v, NULL); }

ag_status ag_requires_grad(ag_tensor *x) {
    if (!x) return AG_ERR_ARG;
    if (x->flags & AG_PARAM) return AG_OK;
    ag_tape *t = x->tape;
    if (ag__node_of(x)->op)
        return ag__fail(t, AG_ERR_ARG, "requires_grad: only leaves can be marked (this is a %s result)",
                        ag__node_of(x)->op->name);
    if (x->gen != t->gen)
        return ag__fail(t, AG_ERR_STATE, "requires_grad: tensor was recorded before the last ag_tape_reset");
    if (x->flags & AG_REQUIRES_GRAD) return AG_OK;
    /* ops recorded before the mark would give it no gradient, and backward would drop their part:
     * refuse rather than return a partial gradient (the walk covers only nodes after the leaf) */
    for (const ag_node *n = t->last; n && n != ag__node_of(x); n = n->prev)
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == x)
                return ag__fail(t, AG_ERR_STATE,
                                "requires_grad: the leaf is already an input of %s (node #%zu); mark it "
                                "before any op uses it", n->op ? n->op->name : "leaf", node_creation_index(t, n));
    x->flags |= AG_REQUIRES_GRAD;
    return AG_OK;
}

/* ---------------------------------------------------------------- backward */

/* x's gradient buffer, allocated if it has none yet (x then is a tape tensor: a parameter's
 * always exists) and zeroed then unless zero is 0 (the caller writes every element). */
static ag_status grad_buffer(ag_tape *t, ag_tensor *x, int zero) {
    if (x->grad) return AG_OK;
    if (ag__node_of(x)->engine_flags & AG__NODE_GRAD_INLINE) { /* the slot behind a tiny value: no call, no memset */
        ag_real *g = (ag_real *)(void *)((char *)x->value + AG__TINY_BYTES);
        if (zero)
            for (size_t i = 0; i < x->size; i++) g[i] = 0;
        x->grad = g;
        return AG_OK;
    }
    x->grad = ag__arena_alloc(t, x->size * sizeof(ag_real));
    if (!x->grad)
        return ag__fail(t, AG_ERR_NOMEM, "backward: tape arena is full (%zu bytes in use)",
                        ag_tape_mem_used(t));
    if (zero) memset(x->grad, 0, x->size * sizeof(ag_real));
    return AG_OK;
}

void ag_node_grad_out_declare(ag_node *n) {
    if (n) n->engine_flags |= AG__NODE_GRAD_OUT;
}

/* Fresh = no buffer yet: only a tape tensor (a parameter's buffer always exists), and only in a
 * backward of a declaring node, since every other node's inputs got zeroed buffers beforehand. */
ag_real *ag_node_grad_out(ag_node *n, int i, int *assign) {
    *assign = 0;
    if (!n || i < 0 || i >= n->n_in) return NULL;
    ag_tensor *x = n->in[i];
    if (!(x->flags & AG_REQUIRES_GRAD)) return NULL;
    if (x->grad) return x->grad;
    if (!(n->engine_flags & AG__NODE_GRAD_OUT) || !n->out.tape->backward_done) return NULL;
    if (grad_buffer(n->out.tape, x, 0) != AG_OK) return NULL;
    *assign = 1;
    return x->grad;
}

int ag__node_grad_steal(ag_node *n, int i) {
    ag_tensor *x = n->in[i];
    if (x->grad || !(x->flags & AG_REQUIRES_GRAD) || (x->flags & AG_PARAM) || x->size != n->out.size ||
        !(n->engine_flags & AG__NODE_GRAD_OUT))
        return 0;
    x->grad = n->out.grad; /* the node's own backward already ran: nothing writes it any more */
    return 1;
}

static ag_status backward_impl(ag_tape *t, ag_tensor *loss, const ag_real *seed, const char *who) {
    if (!t) return AG_ERR_ARG;
    if (!loss) {
        if (t->status != AG_OK) return t->status;
        return ag__fail(t, AG_ERR_ARG, "%s: loss is NULL", who);
    }
    if (loss->flags & AG_PARAM)
        return ag__fail(t, AG_ERR_ARG, "%s: loss is a parameter, not a result recorded on the tape", who);
    if (loss->tape != t) return ag__fail(t, AG_ERR_ARG, "%s: loss belongs to another tape", who);
    if (loss->gen != t->gen || t->n_nodes == 0)
        return ag__fail(t, AG_ERR_STATE, "%s: loss was recorded before the last ag_tape_reset", who);
    if (t->op_failed && t->status != AG_OK) return t->status; /* a result is missing: its message stands */
    if (t->backward_done)
        return ag__fail(t, AG_ERR_STATE,
                        "%s: already ran since the last ag_tape_reset (reset and record the step again)",
                        who);
    char s[96];
    if (!seed && loss->size != 1)
        return ag__fail(t, AG_ERR_SHAPE, "%s: loss is %s, not a scalar; give a seed with ag_backward_seed",
                        who, ag_shape_str(loss, s, sizeof s));
    if (!(loss->flags & AG_REQUIRES_GRAD))
        return ag__fail(t, AG_ERR_STATE,
                        "%s: loss does not depend on anything that requires a gradient "
                        "(parameters, or leaves marked with ag_requires_grad; no-grad mode records none)",
                        who);
    for (const ag__param_view *v = t->param_views; v; v = v->next)
        if (view_stale(v)) return view_moved(t, who, v);
    ag_status st = grad_buffer(t, loss, 0);
    if (st != AG_OK) return st;
    /* one pass; 0 + s keeps the bits of the former zero-then-add (-0 becomes +0) */
    if (seed)
        for (size_t i = 0; i < loss->size; i++) loss->grad[i] = (ag_real)0 + seed[i];
    else
        for (size_t i = 0; i < loss->size; i++) loss->grad[i] = 1;
    t->backward_done = 1;
    ag__sink_begin(t, loss);

    /* Reverse creation order is reverse topological order: when we reach a node, every node that
     * consumed its output has already added its contribution to out.grad. */
    for (ag_node *n = ag__node_of(loss); n; n = n->prev) {
        AG__PREFETCH_R((const char *)n - AG__PREFETCH_AHEAD); /* and walked downwards here */
        if (!n->op || !(n->out.flags & AG_REQUIRES_GRAD)) continue;
        const int reached = n->out.grad != NULL;
        if (reached && !n->op->backward) {
            char sh[64];
            st = ag_node_fail(n, AG_ERR_STATE,
                              "has no backward, but a gradient reaches its %s result (node #%zu); detach its "
                              "input (ag_detach) or give the op a backward",
                              ag_shape_str(&n->out, sh, sizeof sh), node_creation_index(t, n));
        } else if (reached) {
            const int grad_out = (n->engine_flags & AG__NODE_GRAD_OUT) != 0;
            for (int i = 0; !grad_out && i < n->n_in; i++) {
                ag_tensor *x = n->in[i];
                if (x->flags & AG_REQUIRES_GRAD) {
                    st = grad_buffer(t, x, 1);
                    if (st != AG_OK) {
                        ag__sink_end(t, 0);
                        return st;
                    }
                }
            }
            unsigned long fails_before = t->n_fails;
            st = n->op->backward(n);
            if (st == AG_OK && t->n_fails != fails_before) st = t->status; /* failed, yet AG_OK returned */
            /* inputs the op left untouched: zeroed, as every other op's, so they count as reached */
            for (int i = 0; grad_out && st == AG_OK && i < n->n_in; i++)
                if (n->in[i]->flags & AG_REQUIRES_GRAD) st = grad_buffer(t, n->in[i], 1);
            for (int i = 0; st == AG_OK && t->check_numerics && i < n->n_in; i++) {
                char what[64];
                snprintf(what, sizeof what, "backward put, in the gradient of input %d,", i);
                if (n->in[i]->grad && !ag__grad_bypassed(n->in[i]))
                    st = numeric_fail(n, what, n->in[i]->grad, n->in[i]->size);
            }
        }
        ag__sink_after_node(t, n, reached, st); /* parameters whose gradient is complete go to a sink */
        if (st != AG_OK) {
            ag__sink_end(t, 0);
            if (t->status == AG_OK) ag_node_fail(n, st, "backward failed with status %d", (int)st);
            return st;
        }
    }
    ag__sink_end(t, 1);
    return AG_OK;
}

ag_status ag_backward(ag_tape *t, ag_tensor *loss) { return backward_impl(t, loss, NULL, "backward"); }

ag_status ag_backward_seed(ag_tape *t, ag_tensor *out, const ag_real *seed) {
    if (t && !seed) return ag__fail(t, AG_ERR_ARG, "backward_seed: seed is NULL");
    return backward_impl(t, out, seed, "backward_seed");
}

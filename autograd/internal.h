/*
 * internal.h - shared by the library's own sources; not installed.
 * The tape's layout, the allocator hooks and small helpers for ops.
 */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "base.h"
#include "kernels/eltwise.h"

#include <float.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Arena chunk: a block the tape bump-allocates from. */
typedef struct ag__chunk {
    struct ag__chunk *next;
    char *base;   /* AG_ALIGN-aligned start */
    size_t size;  /* usable bytes from base */
    size_t used;
    int owned;    /* allocated by the tape (else the caller's mem_buffer) */
} ag__chunk;

struct ag_tape {
    ag__chunk *first, *cur;
    ag__chunk user_chunk;   /* descriptor for a caller-owned buffer */
    size_t mem_limit;       /* 0: unlimited */
    int growable;
    ag_node *last;          /* most recent node: backward starts its walk from a given loss */
    size_t n_nodes;
    uint32_t gen;           /* bumped by reset */
    int grad_enabled;
    int check_numerics;
    uint64_t step;          /* resets since creation */
    int training;           /* ag_tape_set_training: 1 (default) training, 0 evaluation */
    uint64_t seed, seed_step; /* ag_tape_set_seed: the random ops' key, and step when it was set */
    int backward_done;
    int has_sink;           /* sink below is set (ag_tape_set_grad_sink) */
    ag_grad_sink sink;
    struct ag__defer *defer; /* this backward's deferred c * value terms (ag__grad_add_scaled_value) */
    ag_status status;
    int op_failed;          /* an op or leaf returned no result since the last reset/clear */
    struct ag__param_view *param_views; /* views of parameter memory recorded since the last reset */
    unsigned long n_fails;  /* errors recorded so far: an op that recorded one failed, whatever it returned */
    char errmsg[AG_ERRMSG_SIZE];
};

/* The engine's private state lives outside the public ag_tensor: a tape tensor's in its node
 * (ag_node.engine_flags, AG__NODE_*), a parameter's in its ag__param_tensor (sink state below). */

/* Tape tensors of at most this many bytes of data ("tiny") keep value and grad right behind their
 * node (tape.c, node_new). AG__NODE_GRAD_INLINE: a zeroable grad slot of AG__TINY_BYTES follows
 * the value; backward takes it instead of allocating. */
#define AG__TINY_BYTES 16
#define AG__NODE_GRAD_INLINE (1u << 0)
/* A tape result whose value lies in a parameter's memory (a view such as a reshape of a weight).
 * The store may move its buffers afterwards (ag_params_add, ag_params_truncate), so the tape keeps
 * where the parameter was when the view was recorded; ops and backward refuse a view it moved
 * under. Records live in the arena, listed from ag_tape.param_views. */
#define AG__NODE_PARAM_VIEW (1u << 1)
/* The node's backward takes its input gradients from ag_node_grad_out (ag_node_grad_out_declare):
 * backward allocates none of them beforehand, and zeroes the ones it left untouched afterwards. */
#define AG__NODE_GRAD_OUT (1u << 2)
/* Inside a view's backward (a full-size alias, dx_i += dy_i): if input i is a tape tensor that no
 * gradient has reached yet, it takes the node's output gradient buffer as its own; returns 1 then
 * (nothing left to do), else 0. Requires ag_node_grad_out_declare on the node. */
int ag__node_grad_steal(ag_node *n, int i);
typedef struct ag__param_view {
    const ag_node *node;     /* the view */
    const ag_params *store;  /* whose memory it lies in */
    uint64_t moves;          /* ag__params_moves(store) when it was recorded */
    struct ag__param_view *next;
} ag__param_view;

#ifdef AG_DOUBLE
#define AG__REAL_MAX DBL_MAX
#else
#define AG__REAL_MAX FLT_MAX
#endif

/* A parameter's gradient-sink state (sink.c), in ag__param_tensor.sink_flags. DIRTY: ->grad may
 * hold nonzero values (a backward wrote it since ag_params_zero_grad or a delivery zeroed it);
 * conservative: a stale DIRTY only costs a fused delivery. CLAIMED: during one node's backward,
 * the op delivered this input's gradient to the sink itself (ag__sink_claim), or deferred its
 * term. DEFERRED: the gradient still owes a deferred c * value term (ag__grad_add_scaled_value).
 * REFUSED: the sink's accepts() refused it for the current sweep: its gradient stays in ->grad,
 * as without a sink; set or cleared for every parameter a sweep with a sink visits. */
#define AG__GRAD_DIRTY (1u << 0)
#define AG__SINK_CLAIMED (1u << 1)
#define AG__GRAD_DEFERRED (1u << 2)
#define AG__SINK_REFUSED (1u << 3)
/* A parameter's ag_tensor is the first member of this (params.c), so its store can be found. */
typedef struct ag__param_tensor {
    ag_tensor t;
    ag_params *store;
    uint32_t pending;    /* during a sweep with a sink: backward ops still to add to its gradient */
    unsigned sink_flags; /* AG__GRAD_DIRTY | AG__SINK_CLAIMED | AG__GRAD_DEFERRED | AG__SINK_REFUSED */
} ag__param_tensor;
/* x must be a parameter (AG_PARAM). */
static inline ag__param_tensor *ag__param(ag_tensor *x) { return (ag__param_tensor *)(void *)x; }
static inline ag_params *ag__param_store(const ag_tensor *param) {
    return ((const ag__param_tensor *)(const void *)param)->store;
}
/* Bumped whenever the store's buffers move or tensors are removed: views into it are then stale. */
uint64_t ag__params_moves(const ag_params *ps);

/* Arena allocation, AG_ALIGN-aligned. NULL if full (no message set). */
void *ag__arena_alloc(ag_tape *t, size_t bytes);

/* Record an error on the tape and return st. */
ag_status ag__fail(ag_tape *t, ag_status st, const char *fmt, ...) AG__PRINTF(3, 4);

/* The same for an op builder that returns NULL (ag_l2, dense layers, ...): it also marks a result
 * missing, so backward refuses until ag_tape_clear_error, as after a failed ag_apply. t may be NULL. */
ag_status ag__op_fail(ag_tape *t, ag_status st, const char *fmt, ...) AG__PRINTF(3, 4);

/* An op builder returning NULL because the tape already holds an error (keeping that message):
 * the result is missing all the same, so backward must refuse. */
static inline ag_tensor *ag__op_missing(ag_tape *t) {
    if (t) t->op_failed = 1;
    return NULL;
}

/* Largest op->params_size ag_apply accepts: op parameters are a small struct copied into the node. */
#define AG__MAX_OP_PARAMS ((size_t)1 << 20)

/* Node of a tape tensor (out is the first member of ag_node). */
static inline ag_node *ag__node_of(ag_tensor *x) { return (ag_node *)(void *)x; }

/* The output of n takes x's shape (already validated): what ag_node_set_shape would do, minus
 * the checks. For built-in ops whose result has an input's shape. */
static inline ag_status ag__node_shape_like(ag_node *n, const ag_tensor *x) {
    n->out.ndim = x->ndim;
    for (int i = 0; i < AG_MAX_DIMS; i++) n->out.shape[i] = x->shape[i];
    n->out.size = x->size;
    return AG_OK;
}

/* Axis arguments of the built-in ops: *axis (as the user gave it, negative counting from the end)
 * normalised to 0..ndim-1 for an input of ndim dimensions; AG_ERR_SHAPE "<op>: axis 5 is out of
 * range for 2x3" naming x otherwise. Ops that insert an axis (stack, unsqueeze) pass ndim + 1. */
static inline ag_status ag__axis(ag_node *n, int *axis, int ndim, const ag_tensor *x) {
    int a = *axis < 0 ? *axis + ndim : *axis;
    if (a < 0 || a >= ndim) {
        char s[64];
        return ag_node_fail(n, AG_ERR_SHAPE, "axis %d is out of range for %s", *axis, ag_shape_str(x, s, sizeof s));
    }
    *axis = a;
    return AG_OK;
}
/* x seen as outer x len x inner around a (normalised) axis: the products of the sizes before and
 * after it. Most axis ops are a loop over outer, a run of len, and a contiguous inner block. */
static inline void ag__axis_split(const ag_tensor *x, int axis, size_t *outer, size_t *len, size_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
    *len = x->shape[axis];
}

/* ag_detach's descriptor (ops/grad.c): the one op whose result never requires a gradient. */
extern const ag_op ag__detach_op;

/* The counter-based generator (rng.c): ag_rng_counter(seed, step, stream, i) is
 * ag__mix64(ag__rng_key(seed, step, stream) + (i + 1) * AG__GOLDEN); ops hoist the key out of loops. */
#define AG__GOLDEN 0x9e3779b97f4a7c15ull
static inline uint64_t ag__mix64(uint64_t z) { /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
uint64_t ag__rng_key(uint64_t seed, uint64_t step, uint64_t stream);

/* Convenience for built-ins: ag_call with inputs given inline. */
#define AG__CALL(t, op, params, ...) \
    ag_call((t), (op), (ag_tensor *[]){__VA_ARGS__}, \
            (int)(sizeof((ag_tensor *[]){__VA_ARGS__}) / sizeof(ag_tensor *)), (params))

/* ---------------------------------------------------------------- gradient sinks (sink.c)
 * Everything of "update in backward" (ag_tape_set_grad_sink) and of the deferred c * value terms
 * lives in sink.c; ag_backward calls the three hooks, the ops the rest. */

/* For built-in ops, inside backward: 1 if input i is a parameter whose gradient this node
 * completes (no other op left to add to it) while the tape has a sink and ->grad holds nothing to
 * add. The op must then deliver the whole gradient of that input to the sink (ag__sink_gemm),
 * after every other product that reads the input's value, and not write ->grad. */
int ag__sink_claim(ag_node *n, int i);
/* Deliver P = op(A) op(B) (alpha 1, m x nn) as the gradient of parameter x, whose rows are nn
 * long, to the tape's sink tile by tile, straight from the GEMM. Statuses as ag_gemm. */
ag_status ag__sink_gemm(ag_node *n, ag_tensor *x, int ta, int tb, size_t m, size_t nn, size_t k,
                        const ag_real *a, size_t lda, const ag_real *b, size_t ldb);

/* Inside backward: input i's gradient += c * input i's value (the L2 term's lambda W). For a
 * parameter the term is deferred and added after every other contribution: when its gradient is
 * complete, or by the GEMM that completes it, tile by tile on its way to a sink (so a weight with
 * an L2 term in the cost still takes the fused update, and ->grad is never streamed twice). Both
 * with and without a sink the sum is (other contributions) + c * value, so the two agree bit for
 * bit. The op must write nothing else into that input's ->grad.
 * bound >= max |c * value| as proven by the caller (the L2 term's forward sum of squares bounds
 * every element), or INFINITY: a sink with consume_decay then gets the term with AG_SINK_FINITE and
 * skips its own scan. The proof assumes the value does not change between forward and backward. */
void ag__grad_add_scaled_value(ag_node *n, int i, ag_real c, double bound);
/* For the op that completes x's gradient under a sink: 1, *c and *bound (see above) if x owes a
 * deferred term, which the caller now adds itself; else 0. */
int ag__take_deferred(ag_tape *t, ag_tensor *x, ag_real *c, double *bound);

/* Hooks of ag_backward. begin: before the sweep (counts each parameter's uses when a sink is
 * set). after_node: after node n's backward (or none, when no gradient reached it; st its
 * status): the parameters among its inputs whose gradient is complete go to the sink. end: after
 * the sweep, ok = 0 on failure: adds the deferred terms still owed, or drops them. */
void ag__sink_begin(ag_tape *t, ag_tensor *loss);
void ag__sink_param_done(ag_tape *t, ag__param_tensor *p, int reached, ag_status st);
static inline void ag__sink_after_node(ag_tape *t, ag_node *n, int reached, ag_status st) {
    for (int i = 0; i < n->n_in; i++) {
        ag_tensor *x = n->in[i];
        if ((x->flags & (AG_PARAM | AG_REQUIRES_GRAD)) == (AG_PARAM | AG_REQUIRES_GRAD))
            ag__sink_param_done(t, ag__param(x), reached, st);
    }
}
void ag__sink_end(ag_tape *t, int ok);
/* 1 if x's gradient for the node just run did not go through ->grad (check_numerics skips it). */
static inline int ag__grad_bypassed(const ag_tensor *x) {
    return (x->flags & AG_PARAM) && (((const ag__param_tensor *)(const void *)x)->sink_flags & AG__SINK_CLAIMED);
}

/* ---------------------------------------------------------------- activations (ops/activation.c)
 * One row per ag_act: adding an activation is an ag_act value in ag.h and a row in activation.c.
 * f over an array, and f' written from the output a = f(z), applied to an incoming gradient da.
 * The array forms are vectorised loops: callers go through the table once per array (or row),
 * never per element. */
typedef struct ag__act_row {
    const char *name;
    ag_op op; /* its element-wise op (ag_sigmoid, ...); never recorded for the identity */
    void (*f)(const ag_real *z, ag_real *a, size_t n);                              /* a = f(z); a == z allowed */
    void (*df_set)(const ag_real *a, const ag_real *da, ag_real *dz, size_t n); /* dz = da .* f'(a) */
} ag__act_row;
extern const ag__act_row ag__acts[AG_ACT_COUNT];

#endif /* AG_INTERNAL_H */

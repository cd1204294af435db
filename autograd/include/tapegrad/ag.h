/*
 * ag.h - tapegrad: a tape-based reverse-mode automatic differentiation engine in C11.
 *
 * OVERVIEW
 *
 * Every op records a node on a tape, in execution order. The tape is an arena: nodes, their
 * values, gradients and saved state are bump-allocated, and ag_tape_reset() rewinds it once per
 * training step, so a steady-state step makes no heap allocation. Creation order is already a
 * topological order, so ag_backward() is one reverse loop that accumulates (+=) gradients.
 *
 * Parameters live outside the tape, in an ag_params store: one flat value buffer and one flat
 * gradient buffer carved into per-tensor views, so optimizers, zeroing and saving are single
 * loops. Temporaries (tape tensors) live until the next ag_tape_reset().
 *
 * Every op, built-in or user-written, is defined by one ag_op descriptor (name, shape check,
 * forward, backward) and identified by the descriptor's address. See "Writing an op" below.
 *
 * ERRORS. Fallible calls return an ag_status; op builders (ag_add, ag_matmul, ...) return the
 * result tensor or NULL. The tape keeps the status and a message naming the op and the shapes
 * ("matmul: a is 32x784 but b is 256x10"). An op given a NULL input while the tape holds an error
 * returns NULL without touching the message, so a chain of calls can be checked once at the end.
 * Each object keeps its own message: ag_tape_errmsg for ops and backward, ag_params_errmsg for the
 * store, ag_optim_errmsg for an optimizer; calls that have no object to keep it (ag_mlp_new,
 * ag_optim_new, the file I/O of ag_io.h) write it into a caller's buffer (AG_ERRMSG_SIZE,
 * AG_IO_ERRMSG_SIZE). Nothing in the library aborts or exits on bad input.
 *
 * OWNERSHIP. What ag_X_new creates, ag_X_free releases (every free accepts NULL). Tensors from ops
 * and leaf constructors belong to their tape until the next ag_tape_reset; parameters belong to
 * their store until ag_params_free. Pointers returned by getters are borrowed from the object
 * they came from. A getter given a NULL object returns 0, NULL or AG_ERR_ARG (the *_errmsg getters:
 * a constant message such as "tape is NULL"), unless its comment says the argument must not be NULL.
 *
 * THREADS. Objects are not locked: a tape, store, model or optimizer is used by one thread at a
 * time. Distinct objects may be used from different threads at once (a model per thread, say):
 * each calling thread has its own GEMM packing buffers, and a product that uses the library's
 * worker threads has the pool to itself while it runs (others wait for it). ag_set_threads is
 * process-wide; ag_set_allocator comes before any other call.
 *
 * WORKED EXAMPLE: one SGD step of a 2-layer net on a batch x (K x 3) with targets y (K x 1).
 *
 *     ag_params *ps; ag_tape *t;
 *     ag_params_new(&ps);
 *     ag_tensor *W1, *b1, *W2, *b2;                      // W is out x in, as W^(l) is s_{l+1} x s_l
 *     ag_params_add(ps, "W1", 2, (size_t[]){4, 3}, AG_DECAY, &W1);
 *     ag_params_add(ps, "b1", 1, (size_t[]){4}, 0, &b1);
 *     ag_params_add(ps, "W2", 2, (size_t[]){1, 4}, AG_DECAY, &W2);
 *     ag_params_add(ps, "b2", 1, (size_t[]){1}, 0, &b2);
 *     ... initialise W1, W2 (ag_rng_fill_normal) ...
 *     ag_tape_new(&t, NULL);
 *     for (int step = 0; step < 1000; step++) {
 *         ag_tape_reset(t);
 *         ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, 3}, x);
 *         ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){K, 1}, y);
 *         ag_tensor *a2 = ag_sigmoid(t, ag_linear(t, X, W1, b1));   // a^(2) = f(W^(1) a^(1) + b^(1))
 *         ag_tensor *h  = ag_sigmoid(t, ag_linear(t, a2, W2, b2));
 *         ag_tensor *J  = ag_add(t, ag_squared_error(t, h, Y),
 *                                ag_l2(t, lambda, (ag_tensor *[]){W1, W2}, 2));
 *         ag_params_zero_grad(ps);
 *         if (ag_backward(t, J) != AG_OK) { fprintf(stderr, "%s\n", ag_tape_errmsg(t)); break; }
 *         ... W -= alpha * W->grad for every parameter (see optim/include/tapegrad/optim.h) ...
 *         // the L2 term on the tape gives the same step as SGD's weight_decay = lambda on
 *         // AG_DECAY tensors: W := W - alpha [(1/K) DeltaW + lambda W] (backprop-derivation.md)
 *     }
 *     ag_tape_free(t); ag_params_free(ps);
 *
 * Read next: examples/xor.c, autograd/ops/elementwise.c, layers/include/tapegrad/dense.h.
 */
#ifndef AG_H
#define AG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- scalars, limits, status */

#ifdef AG_DOUBLE
typedef double ag_real; /* built with -DAG_DOUBLE (CMake AG_DOUBLE=ON) */
#define AG_REAL_NAME "double"
#define AG__REAL_ANCHOR ag_library_real_is_double
#else
typedef float ag_real;
#define AG_REAL_NAME "float"
#define AG__REAL_ANCHOR ag_library_real_is_float
#endif
/* A program compiled with the other ag_real than the library was built with would pass floats
 * where doubles are read: instead it fails to link, with "undefined reference to
 * ag_library_real_is_double" (or _float). Define AG_DOUBLE exactly when the library has it
 * (pkg-config's Cflags and the CMake target carry it). */
extern const int AG__REAL_ANCHOR;
#if defined(__GNUC__) || defined(__clang__)
__attribute__((used, unused)) static const int *const ag__real_anchor = &AG__REAL_ANCHOR;
#endif

#define AG_MAX_DIMS 4     /* tensors have 0..4 dimensions; 0 is a scalar of one element */
#define AG_MAX_IN 64      /* most inputs one node can have (variadic ops such as ag_l2) */
#define AG_VARIADIC (-1)  /* ag_op.n_in for an op taking 1..AG_MAX_IN inputs */
#define AG_ALIGN 64       /* alignment of buffers of >= 64 bytes (one AVX-512 register); smaller: 16 */
#define AG_ERRMSG_SIZE 256

typedef enum ag_status {
    AG_OK = 0,
    AG_ERR_ARG = -1,     /* NULL or out-of-range argument, tensor from another tape */
    AG_ERR_SHAPE = -2,   /* shapes do not fit the op */
    AG_ERR_NOMEM = -3,   /* allocation failed or the tape arena is full */
    AG_ERR_STATE = -4,   /* call in the wrong order: backward twice, stale tensor after reset */
    AG_ERR_IO = -5,      /* file missing, unreadable or unwritable */
    AG_ERR_FORMAT = -6,  /* file truncated, corrupt or of another layout */
    AG_ERR_NUMERIC = -7  /* NaN or Inf produced while the numeric check is on */
} ag_status;

/* AG_PRINTF(f, a) after a declaration: argument f is a printf format whose arguments start at a
 * (so the compiler checks the calls); the library's one spelling of the attribute. */
#if defined(__GNUC__) || defined(__clang__)
#define AG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AG_PRINTF(f, a)
#endif

/* A constant string for a status, e.g. "shape mismatch". Never NULL. */
const char *ag_status_str(ag_status s);

/* ---------------------------------------------------------------- memory hooks */

/* Allocator hooks: every heap block of the library goes through them. */
typedef struct ag_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} ag_allocator;
/* Replace the allocator used by everything in the library (*a is copied). All three functions
 * together (else AG_ERR_ARG and nothing changes), or NULL to restore libc; never fails otherwise.
 * Set it before creating any object, or only swap between allocators that can free each other's
 * blocks (e.g. a counting wrapper of libc). Not thread-safe with respect to concurrent library
 * calls. */
ag_status ag_set_allocator(const ag_allocator *a);

/* ---------------------------------------------------------------- tensors */

enum {
    AG_REQUIRES_GRAD = 1u << 0, /* gradients flow into this tensor */
    AG_PARAM = 1u << 1,         /* lives in an ag_params store, not on a tape */
    AG_DECAY = 1u << 2,         /* a weight: L2 / weight decay applies (never set it on biases) */
    AG_BORROWED = 1u << 3,      /* value points at caller memory (ag_tensor_wrap) */
    AG_STATE = 1u << 4          /* a parameter that is state, not a weight (batch norm's running statistics):
                                 * saved and loaded with the model, but no gradient (no AG_REQUIRES_GRAD, grad
                                 * NULL; its slice of the flat gradient buffer stays zero), never decayed, left
                                 * unchanged by the optimizers, refused by ag_gradcheck */
};

typedef struct ag_tape ag_tape;
typedef struct ag_node ag_node;
typedef struct ag_op ag_op;

/* A dense, row-major, contiguous tensor. Read the fields freely; change them only through the
 * API (ops write value/grad of their own node through the descriptor). */
typedef struct ag_tensor {
    ag_real *value;             /* size elements */
    ag_real *grad;              /* size elements, or NULL while no gradient has reached it */
    size_t size;                /* product of shape[0..ndim) (1 for a scalar) */
    size_t shape[AG_MAX_DIMS];  /* unused trailing entries are 1 */
    int ndim;                   /* 0..AG_MAX_DIMS */
    unsigned flags;             /* AG_REQUIRES_GRAD | AG_PARAM | AG_DECAY | AG_BORROWED | AG_STATE */
    ag_tape *tape;              /* owning tape; NULL for parameters */
    uint32_t gen;               /* tape generation when recorded (detects use after reset) */
    const char *name;           /* parameter name, or NULL */
} ag_tensor;

/* Examples in a batch: shape[0] for ndim >= 2, else 1 (a vector is one example); 0 for NULL. */
size_t ag_tensor_rows(const ag_tensor *x);

/* Write "32x784" ("scalar"; "NULL" for a NULL x) into buf, truncated to bufsize; returns buf, or a
 * static "" when buf is NULL or bufsize is 0. Never fails. */
const char *ag_shape_str(const ag_tensor *x, char *buf, size_t bufsize);

/* ---------------------------------------------------------------- the tape */

typedef struct ag_tape_params {
    size_t mem_size;   /* initial arena bytes; 0 picks 1 MiB */
    void *mem_buffer;  /* optional caller-owned buffer of mem_size bytes; the arena then never grows */
    size_t mem_limit;  /* a growing arena stops at this many bytes; 0 = no limit */
} ag_tape_params;

/* Create a tape; release it with ag_tape_free. params may be NULL for defaults (a growing arena).
 * AG_ERR_ARG: out is NULL, or mem_buffer holds less than one AG_ALIGN block once aligned;
 * AG_ERR_NOMEM. *out is NULL on failure. */
ag_status ag_tape_new(ag_tape **out, const ag_tape_params *params);
void ag_tape_free(ag_tape *t); /* the arena and every tensor on it; never a caller's mem_buffer */

/* Forget every node: tensors recorded so far become invalid (using one is reported as
 * AG_ERR_STATE when detectable; its memory stays owned by the tape until ag_tape_free, or until
 * ag_tape_shrink frees it). Clears the error and the backward-done state. Keeps all arena memory,
 * so after the first step a step that records the same ops allocates nothing. */
void ag_tape_reset(ag_tape *t);
/* Give back arena memory after an unusually large pass (a long no-grad evaluation, say): frees the
 * arena's later chunks, keeping the first one and as many of the following as fit in keep_bytes
 * together (0 keeps only the first, the size ag_tape_new made), so ag_tape_mem_capacity drops to
 * at most max(keep_bytes, the first chunk). Never frees a caller's mem_buffer (such a tape has
 * nothing else to free: AG_OK). The next step regrows the arena as needed, allocating again on
 * its first run only; pass the bytes a training step uses (ag_tape_mem_capacity after one) to
 * keep even that. Call it right after ag_tape_reset: tensors recorded before that reset which
 * lay in a freed chunk are gone, and passing one to any call is then undefined (not detected as
 * stale). Allocates nothing. AG_ERR_ARG: NULL t; AG_ERR_STATE (recorded on t, nothing freed):
 * anything was recorded since the last reset. */
ag_status ag_tape_shrink(ag_tape *t, size_t keep_bytes);

/* The last error and its message ("" if none; owned by t, valid until the next error or reset).
 * ag_tape_clear_error forgets it (AG_OK, ""), so recording and backward go on. */
ag_status ag_tape_status(const ag_tape *t);
const char *ag_tape_errmsg(const ag_tape *t);
void ag_tape_clear_error(ag_tape *t);

/* No-grad mode: while disabled, ops compute values but record nothing for backward
 * (outputs do not require grad). Returns the previous setting. */
int ag_tape_set_grad_enabled(ag_tape *t, int enabled);
/* Training (1, the default) or evaluation (0) mode, read by the ops that behave differently:
 * ag_dropout (identity in evaluation) and ag_batch_norm (batch statistics and running-statistics
 * updates in training, the running statistics in evaluation). Returns the previous setting. */
int ag_tape_set_training(ag_tape *t, int training);
/* The key of the tape's random ops (ag_dropout): from this call on they draw element i of stream s
 * as ag_rng_counter(seed, k, s, i), where k counts the ag_tape_reset calls since this call (0 right
 * after it). A new tape has seed 0, counted from its creation (k = ag_tape_step). So the masks
 * depend only on (seed, k, stream), never on threads or recording order, and calling
 * ag_tape_set_seed with the same seed after each reset replays the same masks (a gradient check
 * evaluates one function many times; tests/ops/records/norm.c does this). */
void ag_tape_set_seed(ag_tape *t, uint64_t seed);

/* Numerical fault check (off by default; costs one pass over every result): the first op whose
 * output, or whose backward's input gradient, holds NaN or Inf fails with AG_ERR_NUMERIC and a
 * message naming the op, the element, the node and the step. Returns the previous setting. */
int ag_tape_set_check_numerics(ag_tape *t, int enabled);
/* Steps recorded: the number of ag_tape_reset calls since ag_tape_new. */
uint64_t ag_tape_step(const ag_tape *t);

size_t ag_tape_node_count(const ag_tape *t);   /* nodes since the last reset */
size_t ag_tape_mem_used(const ag_tape *t);     /* arena bytes in use */
size_t ag_tape_mem_capacity(const ag_tape *t); /* arena bytes held */

/* Print one line per node to f, oldest first: creation index, op (or "leaf"), shape, whether it
 * requires / holds a gradient, and its inputs (tape nodes as #index, parameters by name). For
 * debugging; the format may change. NULL t or f prints nothing. See also ag_tape_write_dot. */
void ag_tape_dump(const ag_tape *t, FILE *f);

/* Leaves on the tape (data inputs, constants), owned by t until the next reset. shape has ndim
 * entries, each >= 1. ag_tensor_new: zero-filled. ag_tensor_from: copies data. ag_tensor_wrap:
 * borrows data, which must stay valid and unchanged until the next reset (no copy: use it for
 * batches). ag_scalar: a 0-D tensor holding v. NULL on error, recorded on t: AG_ERR_ARG (ndim
 * outside 0..AG_MAX_DIMS, NULL shape or data), AG_ERR_SHAPE (a zero or overflowing dimension),
 * AG_ERR_NOMEM (arena full). */
ag_tensor *ag_tensor_new(ag_tape *t, int ndim, const size_t *shape);
ag_tensor *ag_tensor_from(ag_tape *t, int ndim, const size_t *shape, const ag_real *data);
ag_tensor *ag_tensor_wrap(ag_tape *t, int ndim, const size_t *shape, ag_real *data);
ag_tensor *ag_scalar(ag_tape *t, ag_real v);

/* Mark a tape leaf as needing a gradient (e.g. to differentiate w.r.t. an input), before any op
 * uses it; a parameter already has one (AG_OK). AG_ERR_ARG: NULL or an op's result; AG_ERR_STATE:
 * recorded before the last reset, or already an input of an op (whose part of the gradient would
 * be missing). */
ag_status ag_requires_grad(ag_tensor *x);
/* Stop-gradient: x's values as a view (no copy; the result shares x's memory, as a reshape does),
 * through which no gradient flows back to x: d detach(x)/dx = 0. The result never requires a
 * gradient, so ops on it alone record nothing for backward, in training as in no-grad mode. Use it
 * for targets computed from the model, for a hidden state carried over a truncation, or before an
 * op that has no backward. Of a parameter it is a view of the store's buffers, refused once the
 * store moves them (as reshape's). Only the errors every op has. */
ag_tensor *ag_detach(ag_tape *t, ag_tensor *x);

/* Reverse-mode sweep from a scalar loss: seeds dloss = 1, walks the tape backwards from loss
 * and accumulates into every tensor that requires a gradient. Parameter gradients accumulate
 * across calls until zeroed (ag_params_zero_grad); every tape tensor that a gradient reached
 * keeps it readable in ->grad until the next reset (e.g. the pre-activations z^(l)). A full-size
 * view (reshape, squeeze, unsqueeze, flatten; the same-size forms of permute and broadcast_to) of a
 * tape tensor that no other path had reached yet hands its gradient buffer to its input: the two
 * ->grad then share one buffer, which holds the input's whole gradient (the view's plus any that
 * later reaches the input by another path), read in either shape.
 * Once per reset: a second call is AG_ERR_STATE. After an op failed (a result is missing),
 * backward returns that op's status and leaves its message, until ag_tape_clear_error. Other
 * errors, recorded on t: AG_ERR_ARG (NULL loss, a parameter, another tape's tensor), AG_ERR_STATE
 * (loss from before the last reset, or it depends on nothing that requires a gradient, or a
 * gradient reaches the result of an op whose descriptor has no backward (a user op, say): "my_argmax: has no backward,
 * but a gradient reaches its 32 result (node #7); detach its input (ag_detach) or give the op a
 * backward"; the sweep stops there, and parameters may hold part of its gradient),
 * AG_ERR_SHAPE (loss holds more than one element), AG_ERR_NOMEM (arena full), AG_ERR_NUMERIC (numeric check on),
 * or the status an op's backward returned. */
ag_status ag_backward(ag_tape *t, ag_tensor *loss);
/* The same for a non-scalar output, seeded with seed (out->size elements, not checked; copied).
 * A NULL seed is AG_ERR_ARG. */
ag_status ag_backward_seed(ag_tape *t, ag_tensor *out, const ag_real *seed);

/* Gradient sink ("update in backward"). With a sink set, ag_backward hands each parameter's
 * gradient to sink->consume as soon as the last op contributing to it has run, instead of leaving
 * it in ->grad: an optimizer updates the weight while the gradient is hot, and the built-in
 * products (matmul, linear, dense layers) deliver a weight gradient tile by tile straight from the
 * GEMM, so it never streams through memory (an ag_l2 term on the same weight rides along). optim.h's
 * ag_optim_backward_step is the usual user.
 * consume gets elements x->value[off + r*ld + c] (r < rows, c < cols; ld is the row stride inside
 * x) whose complete gradient for this sweep (plus whatever ->grad held from earlier sweeps) is
 * g[r*ldg + c]; flags has AG_SINK_FINITE when the engine proved every such value finite (a
 * consumer that guards against NaN/Inf may then skip its scan). Every element of every parameter a gradient reached is delivered exactly once;
 * parameters no gradient reached are not delivered (unless ->grad holds gradient from earlier
 * sweeps, which is then delivered as it is). Pieces may arrive concurrently from the
 * library's worker threads (always disjoint elements), so consume must be thread-safe for
 * disjoint elements and must not call back into the tape (it may run products with ag_gemm). After the sweep the delivered
 * parameters' ->grad hold zeros. Initialise it by field name, which stays valid (and quiet under
 * -Wextra) as fields are added: ag_grad_sink s = {.consume = my_consume, .ctx = &my_state}; */
typedef struct ag_grad_sink {
    void (*consume)(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                    const ag_real *g, size_t ldg, unsigned flags);
    void *ctx;
    /* Optional (NULL takes every parameter): asked at the start of each sweep for each parameter
     * the loss depends on; a parameter it refuses (returns 0) is never delivered, and its gradient
     * accumulates in ->grad as without a sink (e.g. an optimizer refusing another store's). */
    int (*accepts)(void *ctx, const ag_tensor *x);
    /* Optional: a piece whose gradient is g[r*ldg + c] + decay * x->value[off + r*ld + c], the
     * c * W of an ag_l2 term on x (decay = lambda times dJ), for a sink that reads x->value anyway
     * and can fold the term into that pass (optim.h's does). AG_SINK_FINITE in flags then covers
     * the whole sum: the L2 term's forward proved every W finite and the bound assumes the values
     * did not change between forward and backward. NULL: the engine adds the term into a copy of
     * the piece and calls consume. */
    void (*consume_decay)(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                          const ag_real *g, size_t ldg, unsigned flags, ag_real decay);
} ag_grad_sink;
enum { AG_SINK_FINITE = 1u << 0 };
/* Set the sink of t's next sweeps (copied), or clear it with NULL. AG_ERR_ARG for a NULL t or a
 * sink without consume. Kept across ag_tape_reset. */
ag_status ag_tape_set_grad_sink(ag_tape *t, const ag_grad_sink *sink);
/* The sink set on t (borrowed until the next ag_tape_set_grad_sink), or NULL if none or t is NULL:
 * a caller that sets its own for a while (an optimizer's fused step) puts this one back after. */
const ag_grad_sink *ag_tape_grad_sink(const ag_tape *t);

/* ---------------------------------------------------------------- parameters */

typedef struct ag_params ag_params;

/* Create an empty store; release it with ag_params_free, which frees every tensor in it.
 * AG_ERR_ARG if out is NULL; AG_ERR_NOMEM (then *out is NULL). */
ag_status ag_params_new(ag_params **out);
void ag_params_free(ag_params *ps);

/* Add a zero-initialised parameter (value and grad); *out is owned by the store. flags: 0, AG_DECAY
 * for weights, or AG_STATE for non-gradient state such as running statistics (nothing else, nor
 * both, is accepted). The name keys saved files, so it is what a model
 * file can hold: 1..128 bytes of valid UTF-8, not "__metadata__" (reserved there), and unique.
 * Adding may move the flat buffers: re-read ->value and ->grad pointers (the ag_tensor itself stays
 * put). A view of a parameter already on a tape (ag_reshape) then points at the old buffers: ops
 * and ag_backward refuse it (AG_ERR_STATE) until the tape is reset. On failure the store is
 * unchanged, *out is NULL and ag_params_errmsg says why: AG_ERR_ARG (NULL argument; empty, long,
 * not UTF-8, reserved or used name; rank, flags), AG_ERR_SHAPE (a zero or overflowing dimension),
 * AG_ERR_NOMEM. */
ag_status ag_params_add(ag_params *ps, const char *name, int ndim, const size_t *shape,
                        unsigned flags, ag_tensor **out);
/* Roll the store back to its first count tensors: the ones added after them are freed (with
 * their names; pointers to them dangle) and numel returns to what it was when tensor count was
 * added. The rest keep their ag_tensor objects, names, values and gradients, but the flat buffers
 * may move (re-read pointers; views on a tape are refused, as after ag_params_add). Never fails
 * for a valid count: the buffers shrink when a smaller copy can be allocated and stay as they are
 * otherwise. Builders use it to undo a partial
 * construction (ag_dense_init, ag_mlp_new). Reset every tape that recorded a removed tensor before
 * its next backward, and make a new optimizer: an old one refuses a changed numel (AG_ERR_STATE)
 * but cannot tell a store re-grown to the same size. AG_ERR_ARG, nothing changed, if ps is NULL or
 * count > ag_params_count(ps); ag_params_status is left as it was. */
ag_status ag_params_truncate(ag_params *ps, size_t count);
size_t ag_params_count(const ag_params *ps);                      /* tensors, in the order added */
ag_tensor *ag_params_at(const ag_params *ps, size_t i);           /* NULL if i >= count */
ag_tensor *ag_params_find(const ag_params *ps, const char *name); /* NULL if absent */

/* The flat buffers (borrowed; adding a tensor moves them). Each tensor starts on an AG_ALIGN
 * boundary; the padding between tensors holds zeros, so element-wise loops over the whole buffer
 * are safe. */
size_t ag_params_numel(const ag_params *ps); /* elements in each buffer, padding included */
ag_real *ag_params_values(ag_params *ps);
ag_real *ag_params_grads(ag_params *ps);
void ag_params_zero_grad(ag_params *ps);
/* The last failure of ag_params_add (later successes do not clear it), AG_OK if none; its message,
 * "" if none, owned by the store. */
ag_status ag_params_status(const ag_params *ps);
const char *ag_params_errmsg(const ag_params *ps);

/* ---------------------------------------------------------------- built-in ops
 * Each returns the result, owned by t until the next reset, or NULL on error with the status and
 * message on t (ag_tape_status, ag_tape_errmsg); a NULL t gives NULL and records nothing. Every op
 * can fail with AG_ERR_ARG (a NULL input, a tensor of another tape), AG_ERR_STATE (an input from
 * before the last reset), AG_ERR_NOMEM (arena full) and AG_ERR_NUMERIC (numeric check on); the
 * errors of its own are listed below. Formulas name the forward; backward is its exact
 * vector-Jacobian product. */

/* Element-wise with NumPy broadcasting over trailing dimensions: shapes are right-aligned and each
 * pair of sizes is equal or one of them is 1 ([3,4]+[4], [4,1]-[1,5], scalar*matrix); otherwise
 * AG_ERR_SHAPE "add: shapes 3x4 and 5 do not broadcast". Gradients are summed over the dimensions
 * an operand was repeated along. Domain errors follow IEEE/libm and are not reported: x/0 is inf
 * or NaN, log 0 = -inf, log, sqrt and non-integer pow of a negative are NaN. */
ag_tensor *ag_add(ag_tape *t, ag_tensor *a, ag_tensor *b); /* a + b */
ag_tensor *ag_sub(ag_tape *t, ag_tensor *a, ag_tensor *b); /* a - b */
ag_tensor *ag_mul(ag_tape *t, ag_tensor *a, ag_tensor *b); /* a .* b */
ag_tensor *ag_div(ag_tape *t, ag_tensor *a, ag_tensor *b); /* a ./ b */
ag_tensor *ag_neg(ag_tape *t, ag_tensor *x);                  /* -x */
ag_tensor *ag_scale(ag_tape *t, ag_tensor *x, ag_real c);     /* c x */
ag_tensor *ag_add_scalar(ag_tape *t, ag_tensor *x, ag_real c);/* x + c */
ag_tensor *ag_exp(ag_tape *t, ag_tensor *x);
ag_tensor *ag_log(ag_tape *t, ag_tensor *x);
ag_tensor *ag_square(ag_tape *t, ag_tensor *x);               /* x^2 */
ag_tensor *ag_pow(ag_tape *t, ag_tensor *x, ag_real p);       /* x^p */
ag_tensor *ag_sqrt(ag_tape *t, ag_tensor *x);
ag_tensor *ag_sigmoid(ag_tape *t, ag_tensor *x); /* 1/(1+e^-x);  f' = f(1-f) */
ag_tensor *ag_tanh(ag_tape *t, ag_tensor *x);    /* f' = 1 - f^2 */
ag_tensor *ag_relu(ag_tape *t, ag_tensor *x);    /* max(x,0), NaN stays NaN; f'(0) = 0 */

/* Element-wise functions, any rank (the result has x's shape), ops/functions.c. The same values
 * and gradients as torch's functions of those names; stable at any |x|: nothing overflows inside
 * (softplus(1e4) = 1e4, log_sigmoid(-1e4) = -1e4, gelu(1e30) = 1e30, each with its exact
 * gradient). Domain errors follow IEEE/libm, unreported (log1p(-2) and rsqrt(-1) are NaN,
 * reciprocal(0) is inf). leaky_relu and elu: AG_ERR_ARG if slope or alpha is not finite. */
ag_tensor *ag_softplus(ag_tape *t, ag_tensor *x);    /* log(1 + e^x);  f' = sigmoid(x) */
ag_tensor *ag_log_sigmoid(ag_tape *t, ag_tensor *x); /* log sigmoid(x) = -softplus(-x);  f' = 1 - sigmoid(x) */
ag_tensor *ag_log1p(ag_tape *t, ag_tensor *x);       /* log(1 + x), precise for small x;  f' = 1/(1 + x) */
ag_tensor *ag_expm1(ag_tape *t, ag_tensor *x);       /* e^x - 1, precise for small x;  f' = e^x */
/* gelu: torch's approximate='tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * gelu_erf: torch's default (exact) gelu: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2));  f' = Phi + x phi. */
ag_tensor *ag_gelu(ag_tape *t, ag_tensor *x);
ag_tensor *ag_gelu_erf(ag_tape *t, ag_tensor *x);
ag_tensor *ag_silu(ag_tape *t, ag_tensor *x);        /* x sigmoid(x) (swish);  f' = s (1 + x (1 - s)) */
ag_tensor *ag_leaky_relu(ag_tape *t, ag_tensor *x, ag_real slope); /* x > 0 ? x : slope x;  f'(0) = slope */
ag_tensor *ag_elu(ag_tape *t, ag_tensor *x, ag_real alpha); /* x > 0 ? x : alpha (e^x - 1);  f'(0) = alpha */
ag_tensor *ag_sin(ag_tape *t, ag_tensor *x);
ag_tensor *ag_cos(ag_tape *t, ag_tensor *x);
ag_tensor *ag_reciprocal(ag_tape *t, ag_tensor *x);  /* 1/x;  f' = -1/x^2 */
ag_tensor *ag_rsqrt(ag_tape *t, ag_tensor *x);       /* 1/sqrt(x);  f' = -x^(-3/2)/2 */

/* Activations, for ag_activate, ag_linear_act and the dense layer (tapegrad/dense.h). Each but the
 * identity is an element-wise op above, its f' written from its output a = f(z). */
typedef enum ag_act {
    AG_ACT_IDENTITY = 0, /* a = z */
    AG_ACT_SIGMOID,      /* a = 1/(1+e^-z), f' = f(1-f) (ag_sigmoid) */
    AG_ACT_TANH,         /* a = tanh z, f' = 1 - f^2 (ag_tanh) */
    AG_ACT_RELU,         /* a = max(z, 0), f'(0) = 0 (ag_relu) */
    AG_ACT_COUNT         /* how many there are; not an activation */
} ag_act;

/* "identity", "sigmoid", "tanh", "relu"; "?" for an unknown value. A static string; never fails. */
const char *ag_act_name(ag_act act);
/* Parse one of the names above (also "linear" and "none" for identity). AG_ERR_ARG if unknown or
 * NULL (*out untouched). */
ag_status ag_act_parse(const char *name, ag_act *out);
/* Record the activation op on z (identity returns z itself, recording nothing); the result is
 * owned by t. NULL on error: the op's, or AG_ERR_ARG for an unknown act. */
ag_tensor *ag_activate(ag_tape *t, ag_act act, ag_tensor *z);

/* 2-D products. ag_matmul_ex computes op(a) op(b), op = transpose when the flag is set, without
 * materialising the transpose. The three products of backprop are X W^T, dY W and dY^T X.
 * AG_ERR_SHAPE unless both are 2-D and inner sizes agree: "matmul: a is 32x784 but b is 256x10". */
ag_tensor *ag_matmul(ag_tape *t, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_matmul_ex(ag_tape *t, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b);
/* Batched product: C[..] = op(a[..]) op(b[..]) over the leading (batch) axes, op = transpose of the
 * last two axes when the flag is set (never materialised). a and b have 2 to 4 dims; their batch
 * axes broadcast NumPy-style (B x H x T x D with D x E, or 1 x H x .. with B x 1 x ..); C is
 * batch x m x n, of the larger rank. dA and dB are summed over the batch axes they were repeated
 * along. Bits do not depend on the thread count. AG_ERR_SHAPE for a 1-D (or scalar) operand,
 * inner sizes that differ ("bmm: a is 2x3x4 but b is 5x2: inner sizes 4 and 5 differ") or batch
 * axes that do not broadcast. */
ag_tensor *ag_bmm(ag_tape *t, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b);
/* Dense layer pre-activation: z = x W^T + b, x is K x in (or 1-D: one row), W is out x in, b is
 * out (or NULL: no bias). Row k is z^(l+1) = W^(l) a^(l) + b^(l) for example k
 * (backprop-derivation.md, "Forward pass"). AG_ERR_SHAPE if the shapes do not fit. While the tape
 * holds an error a NULL b is taken for a failed result and the call returns NULL (the bias is
 * never silently dropped). */
ag_tensor *ag_linear(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b);
/* Fused dense layer: a = f(x W^T + b) as one node, f = act (an ag_act below; b may be NULL, as
 * in ag_linear). The pre-activation z is never stored: backward takes f' from a (sigmoid a(1-a),
 * tanh 1-a^2, relu [a > 0], identity 1), so da .* f' = dz, then dx += dz W, dW += dz^T x and
 * db += sum_k dz_k as ag_linear. The same values and gradients as ag_activate(ag_linear(..)).
 * Shapes and errors as ag_linear ("linear_act: ..."), and AG_ERR_ARG for an unknown act. */
ag_tensor *ag_linear_act(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b, ag_act act);

/* Normalisation over each row, the trailing n_axes axes of x (1..ndim; D values): mu = mean x,
 * var = mean (x - mu)^2 (biased, as torch), rstd = 1/sqrt(var + eps), xh = (x - mu) rstd;
 *   layer norm:  y = xh .* gamma + beta
 *   RMS norm:    y = x / sqrt(mean x^2 + eps) .* gamma   (xh = x rstd, no mu)
 * gamma and beta have the row's shape (x's trailing n_axes sizes) or are NULL (no scale, no
 * shift; while the tape holds an error a NULL one is taken for a failed result, as ag_linear's b).
 * Backward, closed-form from the per-row mu and rstd forward saved, with gh = dy .* gamma:
 *   dx += rstd (gh - mean gh - xh mean(gh .* xh)) (RMS: no mean gh), dgamma += sum over rows of
 *   dy .* xh, dbeta += sum over rows of dy; sums in double. AG_ERR_SHAPE: n_axes out of range
 * ("layer_norm: n_axes 3 is out of range for 4x5 (1..2)"), gamma or beta of another shape
 * ("layer_norm: gamma is 4 but x is 3x5, normalised over 5"); AG_ERR_ARG: eps not positive and
 * finite. */
ag_tensor *ag_layer_norm(ag_tape *t, ag_tensor *x, int n_axes, ag_tensor *gamma, ag_tensor *beta, ag_real eps);
ag_tensor *ag_rms_norm(ag_tape *t, ag_tensor *x, int n_axes, ag_tensor *gamma, ag_real eps);
/* Batch normalisation over the channel axis 1 of x, N x C, N x C x L or N x C x H x W: each
 * channel c's M values (N, N L or N H W of them) are normalised with one mean and variance:
 *   y = (x - mu_c) / sqrt(var_c + eps) .* gamma_c + beta_c      (gamma, beta: C values, or NULL)
 * Training mode (ag_tape_set_training, the default): mu, var are the batch's (var biased), and
 * forward updates running_mean and running_var in place as torch does, r = (1 - momentum) r +
 * momentum s, with the unbiased var M/(M-1) for running_var; backward (closed form, saved mu and
 * rstd): dx += gamma rstd (dy - mean dy - xh mean(dy .* xh)), dgamma += sum dy .* xh,
 * dbeta += sum dy. Evaluation mode: mu, var are running_mean, running_var (not updated), so y is an
 * affine map of x and dx += gamma rstd dy; running statistics that require a gradient (not
 * AG_STATE) get theirs. running_mean and running_var (C values each) are given both or neither:
 * usually AG_STATE parameters of the model's store, so they are saved and loaded with it; without
 * them both modes use the batch's statistics (torch's track_running_stats=False), nothing updated.
 * Errors: AG_ERR_SHAPE for x of fewer than 2 dimensions, gamma, beta or a running statistic not of
 * shape C ("batch_norm: running_var is 4 but x is 8x3 with 3 channels"), training with one value
 * per channel (M = 1: no variance); AG_ERR_ARG for only one running statistic, momentum outside
 * [0, 1], eps not positive and finite. While the tape holds an error a NULL gamma, beta or running
 * statistic is taken for a failed result (as ag_linear's b), and the call returns NULL. */
ag_tensor *ag_batch_norm(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta, ag_tensor *running_mean,
                         ag_tensor *running_var, ag_real momentum, ag_real eps);
/* Inverted dropout: in training mode y = x .* m / (1 - p), m_i = 0 (dropped) when
 * (ag_rng_counter(seed, k, stream, i) >> 11) 2^-53 < p, else 1 (seed, k: ag_tape_set_seed), so each
 * element is dropped with probability p; dx += dy .* m / (1 - p) (the mask is kept, one byte per
 * element). Give each dropout of a step its own stream: equal streams draw equal masks. In
 * evaluation mode or with p = 0: the identity, a view of x with no randomness. AG_ERR_ARG: p outside
 * [0, 1) ("dropout: p 1 is outside [0, 1)"). */
ag_tensor *ag_dropout(ag_tape *t, ag_tensor *x, ag_real p, uint64_t stream);

/* Reductions. axis may be negative (counts from the end); the axis is removed (a 1-D input gives a
 * scalar); AG_ERR_SHAPE if it is out of range. Sums accumulate in double. */
ag_tensor *ag_sum(ag_tape *t, ag_tensor *x);                   /* scalar */
ag_tensor *ag_mean(ag_tape *t, ag_tensor *x);                  /* scalar */
ag_tensor *ag_sum_axis(ag_tape *t, ag_tensor *x, int axis);
ag_tensor *ag_mean_axis(ag_tape *t, ag_tensor *x, int axis);

/* Over the last axis (a scalar is one row of one), numerically stable (max subtracted). */
ag_tensor *ag_softmax(ag_tape *t, ag_tensor *x);
ag_tensor *ag_log_softmax(ag_tape *t, ag_tensor *x);

/* Indexing by int32 indices (a `const int32_t *` array as ag_cross_entropy's labels: read while the
 * op is recorded, copied into the tape when backward needs it, so the caller may reuse it at once).
 * Backward scatter-adds in index order on one thread: repeated indices add up, exactly and
 * deterministically. Errors: AG_ERR_ARG for a NULL idx, a count of 0 or an index outside the axis
 * ("gather_rows: index 10000 at position 3 is outside 0..9999"); AG_ERR_SHAPE for a bad axis.
 * gather_rows: embedding lookup, table V x d.. (rank 1..4) -> n x d..: y[k] = table[idx[k]],
 *   dtable[idx[k]] += dy[k] (only the gathered rows are touched).
 * index_select: the n entries idx[0..n) along axis (negative counts from the end; repeats allowed):
 *   x's shape with shape[axis] = n; y[.., k, ..] = x[.., idx[k], ..].
 * take_along: torch.take_along_dim / gather: idx holds one index per output element, whose shape is
 *   x's with shape[axis] = k; y[o, j, i] = x[o, idx[o, j, i], i] (x seen as outer x len x inner).
 * one_hot: an n x classes tensor of 0/1, y[k, idx[k]] = 1; no gradient (an op of no inputs). */
ag_tensor *ag_gather_rows(ag_tape *t, ag_tensor *table, const int32_t *idx, size_t n);
ag_tensor *ag_index_select(ag_tape *t, ag_tensor *x, int axis, const int32_t *idx, size_t n);
ag_tensor *ag_take_along(ag_tape *t, ag_tensor *x, int axis, const int32_t *idx, size_t k);
ag_tensor *ag_one_hot(ag_tape *t, const int32_t *idx, size_t n, size_t classes);

/* Masks and comparisons. Masks are ordinary tensors, nonzero = true, and get no gradient; the
 * binary and ternary ops broadcast as ag_add does (AG_ERR_SHAPE "where: mask 2x3, a 3x4 and b 4 do
 * not broadcast").
 * where: mask ? a : b element-wise; da += mask ? dy : 0, db += mask ? 0 : dy.
 * masked_fill: mask ? value : x, mask broadcast to x's shape (a T x T causal mask on B x H x T x T
 *   scores); value may be -INFINITY; dx += mask ? 0 : dy (filled entries get gradient 0).
 * maximum, minimum: element-wise max(a, b), min(a, b); a NaN on either side gives NaN. Ties split
 *   the gradient equally (a == b: da += dy/2, db += dy/2, as torch); a NaN gets none.
 * clamp: min(max(x, lo), hi); lo <= hi else AG_ERR_ARG (either may be infinite: one-sided);
 *   dx += dy for lo <= x <= hi (the boundary counts as inside, as torch.clamp), 0 outside and for NaN.
 * max_axis, min_axis: over one axis, removed as by ag_sum_axis; the gradient goes to the first
 *   maximal (minimal) element; a NaN counts as maximal (minimal): the first NaN is picked.
 * abs: |x|, dx += sign(x) dy (0 at x = 0).  sign: -1, 0 or 1 (NaN gives 0); its derivative is 0
 *   almost everywhere, so its backward adds nothing (the input's gradient stays as it was). */
ag_tensor *ag_where(ag_tape *t, ag_tensor *mask, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_masked_fill(ag_tape *t, ag_tensor *x, ag_tensor *mask, ag_real value);
ag_tensor *ag_maximum(ag_tape *t, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_minimum(ag_tape *t, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_clamp(ag_tape *t, ag_tensor *x, ag_real lo, ag_real hi);
ag_tensor *ag_max_axis(ag_tape *t, ag_tensor *x, int axis);
ag_tensor *ag_min_axis(ag_tape *t, ag_tensor *x, int axis);
ag_tensor *ag_abs(ag_tape *t, ag_tensor *x);
ag_tensor *ag_sign(ag_tape *t, ag_tensor *x);
/* Not ops: the index of the first maximal (minimal) element along axis for every position of the
 * other axes, written to out (x->size / shape[axis] entries, in the order of ag_max_axis's
 * result); a NaN counts as maximal (minimal), as torch.argmax. AG_ERR_ARG for a NULL x or out,
 * AG_ERR_SHAPE for an axis out of range or one longer than INT32_MAX (nothing is recorded). */
ag_status ag_argmax(const ag_tensor *x, int axis, int32_t *out);
ag_status ag_argmin(const ag_tensor *x, int axis, int32_t *out);

/* Shape ops. reshape keeps the element count and is a view (the result shares x's values, has its
 * own gradient; of a parameter, it is refused once the store moves its buffers): AG_ERR_ARG for
 * ndim outside 0..AG_MAX_DIMS or a NULL shape, AG_ERR_SHAPE for another count. transpose copies; AG_ERR_SHAPE unless x is 2-D. */
ag_tensor *ag_reshape(ag_tape *t, ag_tensor *x, int ndim, const size_t *shape);
ag_tensor *ag_transpose(ag_tape *t, ag_tensor *x);
/* Views (the result shares x's values, as reshape): squeeze removes axis (its size must be 1, else
 * AG_ERR_SHAPE); unsqueeze inserts a size-1 axis at axis in -(ndim+1)..ndim (AG_ERR_SHAPE if x
 * already has AG_MAX_DIMS); flatten merges the axes start..end into one (a scalar is 1-D of 1).
 * Axis arguments count from the end when negative; out of range is AG_ERR_SHAPE naming x.
 * permute: y.shape[j] = x.shape[perm[j]], perm has x->ndim entries (negatives allowed), a copy
 *   unless the axes of size > 1 keep their order (then a view); not a permutation: AG_ERR_SHAPE,
 *   perm NULL: AG_ERR_ARG (a scalar needs none). transpose_axes swaps axes a and b (permute's copy).
 * broadcast_to: x repeated to shape (NumPy rules as ag_add: right-aligned, sizes equal or x's 1;
 *   else AG_ERR_SHAPE); dx sums over the repeated axes. A view when it only adds size-1 axes.
 * slice: y = x[start : start + len*step : step] along axis; step 0 is AG_ERR_ARG, len 0 or indices
 *   past the axis AG_ERR_SHAPE. A view when the slice is one block of x (step 1 or len 1, every axis before
 *   axis of size 1: the leading axis), else a copy.
 * split: n pieces (slices) of the given sizes, which must add up to the axis; chunk: n pieces of
 *   N/n, the first N%n one longer (NumPy array_split; n <= N). Both fill out[0..n-1] and return
 *   the status (out all NULL on error; nothing is recorded on a bad argument).
 * concat: the n inputs (1..AG_MAX_IN) one after the other along axis, shapes equal off it; stack:
 *   n inputs of one shape along a new axis in -(ndim+1)..ndim. Mismatched shapes are AG_ERR_SHAPE
 *   naming the input and both shapes; xs NULL or n out of range AG_ERR_ARG.
 * pad: value around x, before[i] and after[i] elements on axis i (x->ndim entries each; NULL is
 *   AG_ERR_ARG); dx is the gradient's interior block. */
ag_tensor *ag_squeeze(ag_tape *t, ag_tensor *x, int axis);
ag_tensor *ag_unsqueeze(ag_tape *t, ag_tensor *x, int axis);
ag_tensor *ag_flatten(ag_tape *t, ag_tensor *x, int start_axis, int end_axis);
ag_tensor *ag_permute(ag_tape *t, ag_tensor *x, const int *perm);
ag_tensor *ag_transpose_axes(ag_tape *t, ag_tensor *x, int a, int b);
ag_tensor *ag_broadcast_to(ag_tape *t, ag_tensor *x, int ndim, const size_t *shape);
ag_tensor *ag_slice(ag_tape *t, ag_tensor *x, int axis, size_t start, size_t len, size_t step);
ag_status ag_split(ag_tape *t, ag_tensor *x, int axis, const size_t *sizes, size_t n, ag_tensor **out);
ag_status ag_chunk(ag_tape *t, ag_tensor *x, int axis, size_t n, ag_tensor **out);
ag_tensor *ag_concat(ag_tape *t, ag_tensor *const *xs, size_t n, int axis);
ag_tensor *ag_stack(ag_tape *t, ag_tensor *const *xs, size_t n, int axis);
ag_tensor *ag_pad(ag_tape *t, ag_tensor *x, const size_t *before, const size_t *after, ag_real value);

/* Losses (scalars). K is the number of rows: shape[0] with 2 or more dimensions, 1 for a 1-D
 * tensor or a scalar (one example).
 * squared error: (1/K) sum_k 1/2 ||h_k - y_k||^2 -- the derivation's J without L2, no division
 *   by the number of outputs. h and y have equal shapes (else AG_ERR_SHAPE). y is normally data
 *   (no gradient); if y requires a gradient it receives -(h - y)/K, the exact one.
 * l2: lambda/2 * sum over the n given tensors (1..AG_MAX_IN) of sum W^2 (pass weights only, never
 *   biases). weights == NULL or n out of range is AG_ERR_ARG. Its gradient lambda W is added to a
 *   parameter's after every other contribution (under a gradient sink, by the weight's GEMM as the
 *   tiles go out), so a weight with an L2 term still takes the fused update, with the same bits.
 * cross-entropy: (1/K) sum_k -log softmax(logits_k)[labels[k]], fused and stable (logits of 1e4
 *   give a finite loss and gradient); logits are K x classes or 1-D (else AG_ERR_SHAPE); labels
 *   (NULL: AG_ERR_ARG) has K entries in [0, classes) (else AG_ERR_ARG "cross_entropy: label 12 of
 *   row 3 is outside 0..9") and is copied when backward needs it. */
ag_tensor *ag_squared_error(ag_tape *t, ag_tensor *h, ag_tensor *y);
ag_tensor *ag_l2(ag_tape *t, ag_real lambda, ag_tensor *const *weights, size_t n);
ag_tensor *ag_cross_entropy(ag_tape *t, ag_tensor *logits, const int32_t *labels);

/* Options of ag_cross_entropy_ex: torch's ignore_index and label_smoothing. */
typedef struct ag_ce_opts {
    int32_t ignore_index;    /* rows with this label are skipped (any value; torch's default: -100) */
    ag_real label_smoothing; /* eps in [0, 1) */
} ag_ce_opts;
/* More losses (scalars), each torch's reduction='mean' definition exactly, stable at any |x|.
 * bce_with_logits: mean over all N elements of softplus(x) - x y = max(x,0) - x y + log1p(e^-|x|)
 *   (torch's binary_cross_entropy_with_logits, no weights); logits of +-1e4 give a finite loss and
 *   the gradient (sigmoid(x) - y)/N. targets: the shape of logits (else AG_ERR_SHAPE), usually
 *   data in [0, 1] (any real is accepted, as torch); it gets the gradient -x/N only if it
 *   requires one.
 * cross_entropy_ex: softmax cross-entropy over logits of any rank >= 1 with the classes V on the
 *   last axis (K x T x V: K T rows); labels has one entry per row. With opts (NULL: no ignored
 *   label, no smoothing; then it equals ag_cross_entropy of the logits seen as rows x V), as
 *   torch's cross_entropy(ignore_index, label_smoothing) on those rows:
 *     J = (1/M) sum over rows k with labels[k] != ignore_index of -sum_j q_kj log softmax(x_k)_j,
 *     q_k = (1 - eps) onehot(labels[k]) + eps/V, M the number of such rows;
 *   dx_k += dJ (softmax(x_k) - q_k)/M on those rows, 0 on ignored ones. All rows ignored: J = 0
 *   and a zero gradient (torch gives NaN). AG_ERR_ARG: labels NULL, eps outside [0, 1), a label
 *   outside 0..V-1 that is not the ignore index ("cross_entropy_ex: label 12 of row 3 is outside
 *   0..9"); AG_ERR_SHAPE: scalar logits. labels is copied when backward needs it.
 * l1: mean |h - y|; f' = sign(h - y)/N, 0 at h = y (torch's l1_loss).
 * huber: mean of 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta), d = h - y (torch's
 *   huber_loss); f' = clamp(d, -delta, delta)/N. delta must be finite and > 0 (else AG_ERR_ARG).
 * l1 and huber: h and y of equal shapes (else AG_ERR_SHAPE); y gets the opposite gradient if it
 * requires one. N is the element count (not the rows, unlike squared_error). */
ag_tensor *ag_bce_with_logits(ag_tape *t, ag_tensor *logits, ag_tensor *targets);
ag_tensor *ag_cross_entropy_ex(ag_tape *t, ag_tensor *logits, const int32_t *labels, const ag_ce_opts *opts);
ag_tensor *ag_l1_loss(ag_tape *t, ag_tensor *h, ag_tensor *y);
ag_tensor *ag_huber_loss(ag_tape *t, ag_tensor *h, ag_tensor *y, ag_real delta);

/* ---------------------------------------------------------------- writing an op
 *
 * A user op is a static descriptor in the user's own file, applied like a built-in:
 *
 *     static ag_status cube_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
 *     static ag_status cube_forward(ag_node *n) { ...n->out.value[i] = x^3... return AG_OK; }
 *     static ag_status cube_backward(ag_node *n) {      // accumulate, never assign
 *         if (n->in[0]->grad) for (i...) n->in[0]->grad[i] += 3 x^2 * n->out.grad[i];
 *         return AG_OK;
 *     }
 *     static const ag_op cube_op = {"cube", 1, 0, cube_shape, cube_forward, cube_backward};
 *     ag_tensor *y = ag_call(t, &cube_op, (ag_tensor *[]){x}, 1, NULL);
 *
 * The engine checks inputs (NULL, other tape, stale), calls shape(), allocates out.value (unless
 * shape() pointed it at an input's value, as a view op does), then forward(). In backward it
 * calls backward() only for nodes a gradient reached; before that, every input that requires a
 * gradient has a grad buffer (zeroed on first use: a parameter's keeps what earlier ag_backward
 * calls accumulated until it is zeroed); inputs that need none have grad == NULL and must be
 * skipped. Hence backward() always adds into in[i]->grad, never assigns. (Optional fast path: an
 * op that declares ag_node_grad_out_declare gets its input gradients from ag_node_grad_out, which
 * says when to assign instead, sparing the engine's zeroing pass; see below.)
 * An op with backward == NULL is not differentiable. Its result still requires a gradient when an
 * input does (so it is not silently cut off), and ag_backward fails (AG_ERR_STATE, naming the op)
 * if a gradient reaches it; used on data, or with its result kept out of the loss (an argmax for
 * the accuracy), it is fine. ag_detach its input to use it on the gradient path on purpose. An op
 * whose gradient is zero by design (a sign) has a backward that adds nothing. */

struct ag_op {
    const char *name;   /* shown in errors and dumps */
    int n_in;           /* exact number of inputs, or AG_VARIADIC */
    size_t params_size; /* bytes of op parameters copied into the node (n->params) */
    ag_status (*shape)(ag_node *n);    /* validate inputs, set the output shape */
    ag_status (*forward)(ag_node *n);  /* out = f(in); may save state with ag_node_alloc */
    ag_status (*backward)(ag_node *n); /* in[i]->grad += J_i^T out.grad; NULL: not differentiable
                                          (ag_backward fails if a gradient reaches it) */
};

struct ag_node {
    ag_tensor out;       /* the node's result; first member */
    const ag_op *op;     /* NULL for a leaf */
    ag_node *prev;       /* previous node on the tape */
    ag_tensor **in;      /* n_in inputs */
    int n_in;
    unsigned engine_flags; /* the engine's own bookkeeping (its value's grad slot, views): ops leave it alone */
    void *params;        /* copy of the params given to ag_call (op->params_size bytes) */
    void *saved;         /* whatever forward kept for backward */
};

/* Apply an op. ag_apply returns the status and the result through out; ag_call returns the
 * result or NULL. params points to op->params_size bytes (copied), or NULL if that is 0. The
 * result is owned by t until the next reset; on failure the node is discarded and *out is NULL.
 * in may be NULL when n_in is 0 (an op of no inputs, e.g. a constant). Errors: AG_ERR_ARG (NULL t,
 * op or out, a descriptor lacking name/shape/forward or with n_in outside 0..AG_MAX_IN and not
 * AG_VARIADIC or params_size over 1 MiB, a wrong number of inputs, NULL in or params), the input errors of the built-in ops, AG_ERR_NOMEM,
 * AG_ERR_NUMERIC, and whatever shape() or forward() returned. */
ag_status ag_apply(ag_tape *t, const ag_op *op, ag_tensor *const *in, int n_in,
                   const void *params, ag_tensor **out);
ag_tensor *ag_call(ag_tape *t, const ag_op *op, ag_tensor *const *in, int n_in,
                   const void *params);

/* For op authors, inside shape(), forward() and backward(). ag_node_set_shape: ndim 0..AG_MAX_DIMS,
 * every entry >= 1, else AG_ERR_SHAPE with a message on the tape. ag_node_alloc: NULL when the
 * arena is full, with AG_ERR_NOMEM recorded (return it). */
ag_status ag_node_set_shape(ag_node *n, int ndim, const size_t *shape);
void *ag_node_alloc(ag_node *n, size_t bytes); /* arena memory (aligned as AG_ALIGN says) until reset */
int ag_node_needs_grad(const ag_node *n);      /* will backward run for this node? */
/* Optional fast path for a backward that writes input gradients (see "Writing an op" above and
 * docs/extending.md). ag_node_grad_out_declare, called from shape() or forward(): this node's
 * backward obtains every input gradient it writes through ag_node_grad_out. The engine then does
 * not allocate or zero the inputs' fresh gradient buffers before calling it; in[i]->grad may be
 * NULL until ag_node_grad_out(n, i, ...) is called, and buffers still untouched after backward are
 * zeroed by the engine (so "reached" keeps its meaning). Without the declaration, nothing changes.
 * ag_node_grad_out, inside backward: input i's gradient buffer (in[i]->size elements), or NULL when
 * input i needs no gradient (or i is out of range, or the arena is full: AG_ERR_NOMEM recorded,
 * and the engine fails the sweep). *assign (may not be NULL) is 1 when the buffer is fresh, i.e.
 * uninitialised memory that this call hands over: the op must then write every element once with
 * `=` (all of them, zeros included); 0 when it holds an accumulated gradient (a parameter's, or a
 * tape tensor that another op or an earlier call already wrote): the op must add (`+=`). An input
 * that appears twice (x * x) is fresh only at the first call. Outside backward: *assign is 0. */
void ag_node_grad_out_declare(ag_node *n);
ag_real *ag_node_grad_out(ag_node *n, int i, int *assign);
/* Record an error "<op name>: <message>" (printf format, cut at AG_ERRMSG_SIZE) on the node's
 * tape and return st. The op (or backward) has failed then, even if its function returns AG_OK. */
ag_status ag_node_fail(ag_node *n, ag_status st, const char *fmt, ...) AG_PRINTF(3, 4);

/* ---------------------------------------------------------------- inspecting */

/* Summary of n values, accumulated in double. NaN and +-Inf are counted apart; min, max, mean,
 * std (population) and the L2 norm are over the finite values only (all 0 when there are none). */
typedef struct ag_stats {
    size_t n, n_nan, n_inf;
    double min, max, mean, std, norm;
} ag_stats;
ag_stats ag_stats_of(const ag_real *x, size_t n); /* x may be NULL only when n is 0 */

/* Print x readably to f: a header line (label, else the parameter name; shape; dtype; flags), the
 * values NumPy-style with the middle of any dimension longer than 6 elided ("..."), and a line of
 * ag_stats; then the same for x->grad when it has one. label may be NULL. A NULL x prints
 * "(null tensor)"; a NULL f prints nothing. Writes only to f, allocates nothing. */
void ag_tensor_print(FILE *f, const char *label, const ag_tensor *x);

/* Options of ag_tape_write_dot, OR-ed together (0 for the plain graph). */
enum {
    AG_DOT_NORMS = 1u << 0 /* add the L2 norms of each value and gradient (|v|, |g|) to the labels */
};

/* Write the nodes recorded since the last reset as one Graphviz DOT digraph ("digraph tape {...}"),
 * in creation order: a box per op node (op name, shape), an ellipse per leaf and per parameter
 * the tape used (name or "leaf", shape), an edge from every input to the node that consumed it.
 * Nodes that hold a gradient are drawn filled, and so are parameters (whose gradient buffer always
 * exists); the rest have no fill. Render with
 * `dot -Tsvg tape.dot -o tape.svg`. Returns AG_ERR_ARG for a NULL t or f, AG_ERR_NOMEM if the
 * temporary index of nodes cannot be allocated, AG_ERR_IO if writing to f fails; the tape's own
 * error state is neither read nor changed (a tape holding an error can be drawn). */
ag_status ag_tape_write_dot(const ag_tape *t, FILE *f, unsigned flags);

/* ---------------------------------------------------------------- gradient checking */

/* Builds a scalar loss on t from the parameters, and for ag_gradcheck_leaves from leaves that it
 * wraps (the checker resets t before each call). */
typedef ag_tensor *(*ag_loss_fn)(ag_tape *t, void *ctx);

typedef struct ag_gradcheck_result {
    double max_rel_err;  /* worst |analytic - numeric| / max(|analytic|, |numeric|, 1): relative for
                            gradients >= 1, absolute below (where f's rounding noise dominates);
                            +inf if either side is NaN */
    double max_abs_err;  /* worst |analytic - numeric| */
    size_t worst_tensor; /* index into wrt (ag_gradcheck_leaves: params, then n_params + j for leaves[j]) */
    size_t worst_index;  /* element within it */
    double analytic, numeric; /* at the worst element */
    size_t n_checked;    /* elements compared */
} ag_gradcheck_result;

/* Central differences (f(w+eps) - f(w-eps)) / (w+eps - (w-eps)), the step as stored in ag_real,
 * for every element of every tensor in wrt (parameters), compared with the tape's gradient.
 * Gradients of wrt are zeroed first and left holding the analytic gradient (other parameters'
 * gradients accumulate one backward). Parameter values end exactly as they were. Returns AG_OK
 * whatever the error size (compare res->max_rel_err: ~1e-6 in double with eps ~1e-6, ~1e-2 in
 * float with eps ~1e-2); f returning NULL gives the tape's status, a non-scalar loss
 * AG_ERR_SHAPE, bad arguments AG_ERR_ARG (NULL, n_wrt 0, eps not finite and > 0, a wrt that is
 * not a parameter or is AG_STATE, eps too small to move some w in ag_real), and backward's status. t is reset
 * before each evaluation and after a successful check. A gradient sink set on t is set aside for
 * the check's backward (the gradients must land in ->grad) and is set again afterwards. Tape
 * tensors do not survive those resets: check with respect to a leaf with ag_gradcheck_leaves. */
ag_status ag_gradcheck(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor *const *wrt, size_t n_wrt,
                       double eps, ag_gradcheck_result *res);

/* A tape leaf to check against: a buffer of the caller's that f wraps on every call with
 * ag_tensor_wrap (any shape of size elements) and marks with ag_requires_grad. */
typedef struct ag_gradcheck_leaf {
    ag_real *value; /* size elements; perturbed in place by the checker, restored exactly */
    size_t size;
    ag_real *grad;  /* NULL, or size elements that receive the analytic gradient */
} ag_gradcheck_leaf;

/* ag_gradcheck with respect to parameters (n_params, may be 0; params may then be NULL) and tape
 * leaves (n_leaves, may be 0 likewise), at least one in all. E.g. f(x, W) = sum(x .* W) with x a
 * buffer of the caller's:
 *
 *     static ag_tensor *f(ag_tape *t, void *ctx) {
 *         struct my *c = ctx;
 *         ag_tensor *x = ag_tensor_wrap(t, 1, (size_t[]){3}, c->x);   // every call, the same buffer
 *         ag_requires_grad(x);
 *         return ag_sum(t, ag_mul(t, x, c->W));
 *     }
 *     ag_gradcheck_leaves(t, f, &c, &c.W, 1, &(ag_gradcheck_leaf){c.x, 3, NULL}, 1, eps, &res);
 *
 * After the analytic backward a leaf's gradient is read from the leaf nodes wrapping its buffer
 * (found by address; several add up); a marked leaf that the loss does not use has gradient 0.
 * Parameters as ag_gradcheck. Errors as ag_gradcheck (AG_ERR_ARG for a NULL params or leaves with
 * a nonzero count, nothing to check), and for leaves: AG_ERR_ARG for a NULL value or size 0, the
 * same buffer twice, a buffer no leaf of f's wraps ("gradcheck: leaves[1] is not on the tape
 * ...") or none marks; AG_ERR_SHAPE when f wraps it with another size; AG_ERR_NOMEM (scratch for
 * the leaves' gradients). */
ag_status ag_gradcheck_leaves(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor *const *params, size_t n_params,
                              const ag_gradcheck_leaf *leaves, size_t n_leaves, double eps,
                              ag_gradcheck_result *res);

/* ---------------------------------------------------------------- random numbers */

/* xoshiro256** seeded by splitmix64: the same seed gives the same stream on every machine
 * (normals use only IEEE-exact arithmetic and the library's own log, not libm). The state is the
 * caller's struct: nothing allocates or fails. r must not be NULL, except that ag_rng_seed, the
 * fills and the shuffle do nothing with a NULL r (or x, idx). */
typedef struct ag_rng { uint64_t s[4]; } ag_rng;
void ag_rng_seed(ag_rng *r, uint64_t seed);      /* any seed, 0 included */
uint64_t ag_rng_next(ag_rng *r);                 /* 64 random bits */
double ag_rng_uniform(ag_rng *r);                /* [0, 1) */
uint64_t ag_rng_below(ag_rng *r, uint64_t n);    /* [0, n), unbiased; 0 for n = 0 (an empty range) */
double ag_rng_normal(ag_rng *r);                 /* N(0, 1) */
/* x[0..n) uniform between lo and hi, or normal N(mean, std^2), each rounded to ag_real. */
void ag_rng_fill_uniform(ag_rng *r, ag_real *x, size_t n, double lo, double hi);
void ag_rng_fill_normal(ag_rng *r, ag_real *x, size_t n, double mean, double std);
void ag_rng_shuffle(ag_rng *r, uint32_t *idx, size_t n); /* Fisher-Yates */
/* Counter-based: 64 random bits for element index of a stream, a pure function of the four keys
 * (no state, any order, any thread): key = m(m(m(seed + G) ^ step) + stream), result
 * m(key + (index + 1) G), with m splitmix64's finaliser (a bijection of 64 bits) and G =
 * 0x9e3779b97f4a7c15; so a key's elements are splitmix64's output sequence from that key. */
uint64_t ag_rng_counter(uint64_t seed, uint64_t step, uint64_t stream, uint64_t index);

/* ---------------------------------------------------------------- kernels and threads */

/* C[m x n] = alpha op(A) op(B) + beta C, row-major. op(A) is m x k: A is m x k (lda >= k), or
 * k x m (lda >= m) when trans_a. op(B) is k x n: B is k x n (ldb >= n), or n x k (ldb >= k)
 * when trans_b. beta == 0 does not read C. Results do not depend on the thread count, and
 * several user threads may call it at once (see THREADS above). A product may start another
 * from a gradient sink's consume (one level; a product started from inside that one is
 * AG_ERR_STATE). m or n of 0 is a no-op.
 * AG_ERR_ARG for a NULL matrix or a leading dimension too small; AG_ERR_NOMEM if packing scratch
 * cannot be allocated. */
ag_status ag_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, ag_real alpha,
                  const ag_real *a, size_t lda, const ag_real *b, size_t ldb, ag_real beta,
                  ag_real *c, size_t ldc);
/* GEMM with the result handed over tile by tile, for fused epilogues (an optimizer update per
 * tile, as the gradient sink does). */
/* Receives rows [i0, i0+rows) x columns [j0, j0+cols) of the product P = alpha op(A) op(B), final, at p
 * (row stride ldp; p[r * ldp + c] is P[i0 + r][j0 + c]). Called from whichever pool thread computed the tile;
 * tiles are disjoint and cover P exactly once, several may be in flight at once on different threads. p is only
 * valid during the call (often a per-thread buffer that the next tile overwrites). fn must not run a GEMM itself
 * (ag_gemm, ag_gemm_tiles, anything using the library's packing scratch): it would reuse the packing buffers of its thread
 * while the product still reads them. */
typedef void (*ag_gemm_tile_fn)(void *ctx, size_t i0, size_t j0, size_t rows, size_t cols, const ag_real *p, size_t ldp);

/* P = alpha op(A) op(B) (m x n, shapes and transposes as ag_gemm), handed to fn tile by tile instead of stored.
 * work (m x n, row stride ldw >= n) is scratch the product may use for partial sums; its contents afterwards are
 * unspecified, and the fast paths do not touch it at all. Every value fn sees is bit-identical to what
 * ag_gemm(.., beta = 0, ..) stores, for any thread count. Same argument checks and statuses as ag_gemm
 * (AG_ERR_ARG, AG_ERR_NOMEM before any tile is delivered). k == 0 or alpha == 0 delivers zeros.
 * Tiles: one micro-tile (MR x NR) on the packed, b_inplace and t_small paths, blocks of up to 12 x 256 on the
 * direct path. When k fits one k block (kernel kc: 1024 floats / 512 doubles on avx512, 256 otherwise) a packed or
 * b_inplace micro-tile is computed into an L1 buffer and work is not touched; with several k blocks it is
 * accumulated in work and handed over right after its last block. work is also unused on the direct path.
 * fn == NULL, work == NULL or ldw < n: AG_ERR_ARG (unless m or n is 0: AG_OK, nothing delivered). */
ag_status ag_gemm_tiles(int trans_a, int trans_b, size_t m, size_t n, size_t k, ag_real alpha,
                         const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                         ag_real *work, size_t ldw, ag_gemm_tile_fn fn, void *ctx);

/* Threads for the products: n >= 1 (at most 64 are used), or 0 for the number of online cores;
 * n < 0 is AG_ERR_ARG. ag_get_threads: the count in use, 0 resolved to the online cores. */
ag_status ag_set_threads(int n);
int ag_get_threads(void);
const char *ag_kernel_name(void); /* "avx512", "avx2" or "portable" (AG_KERNEL=portable|avx2|avx512 forces
                                   * one; a path the CPU cannot run falls back to the best it can) */

#ifdef __cplusplus
}
#endif
#endif /* AG_H */

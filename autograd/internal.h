/*
 * internal.h - shared by the library's own sources; not installed.
 * The tape's layout, the allocator hooks and small helpers for ops.
 */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "ag.h"

#include <float.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Allocator hooks (see ag_set_allocator). Every heap block of the library goes through these. */
void *ag__malloc(size_t size);
void *ag__calloc(size_t n, size_t size); /* overflow-checked, zeroed */
void *ag__realloc(void *ptr, size_t size);
void ag__free(void *ptr);
/* AG_ALIGN-aligned block from the hooks; free with ag__aligned_free. */
void *ag__aligned_alloc(size_t size);
void ag__aligned_free(void *ptr);

/* a * b into *out, 0 on overflow. */
static inline int ag__mul_ok(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}

/* Element count of a shape with overflow and zero checks: 0 on success, else -1 (overflow)
 * or -2 (a zero dimension). Counts are bounded so that size * sizeof(ag_real) fits size_t. */
int ag__shape_numel(int ndim, const size_t *shape, size_t *numel);

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

/* Tape tensors of at most this many bytes of data ("tiny") keep value and grad right behind their
 * node (tape.c, node_new). AG__GRAD_INLINE in flags: a zeroable grad slot of AG__TINY_BYTES
 * follows the value; backward takes it instead of allocating. Internal: never set on parameters. */
#define AG__TINY_BYTES 16
#define AG__GRAD_INLINE (1u << 30)

/* Parameter flags kept by backward for gradient sinks (ag_tape_set_grad_sink). DIRTY: ->grad may
 * hold nonzero values (a backward wrote it since ag_params_zero_grad or a delivery zeroed it);
 * conservative: a stale DIRTY only costs a fused delivery. CLAIMED: during one node's backward, the
 * op delivered this input's gradient to the sink itself (ag__sink_claim). */
#define AG__GRAD_DIRTY (1u << 29)
#ifdef AG_DOUBLE
#define AG__REAL_MAX DBL_MAX
#else
#define AG__REAL_MAX FLT_MAX
#endif
#define AG__SINK_CLAIMED (1u << 28)
/* The parameter's gradient still owes a deferred c * value term (ag__grad_add_scaled_value). */
#define AG__GRAD_DEFERRED (1u << 27)
/* The sink's accepts() refused this parameter for the current sweep: its gradient stays in ->grad,
 * as without a sink. Set or cleared for every parameter a sweep with a sink visits. */
#define AG__SINK_REFUSED (1u << 26)
/* A tape result whose value lies in a parameter's memory (a view such as a reshape of a weight).
 * The store may move its buffers afterwards (ag_params_add, ag_params_truncate), so the tape keeps
 * where the parameter was when the view was recorded; ops and backward refuse a view it moved
 * under. Records live in the arena, listed from ag_tape.param_views. */
#define AG__PARAM_VIEW (1u << 25)
typedef struct ag__param_view {
    const ag_node *node;     /* the view */
    const ag_params *store;  /* whose memory it lies in */
    uint64_t moves;          /* ag__params_moves(store) when it was recorded */
    struct ag__param_view *next;
} ag__param_view;
/* A parameter's ag_tensor is the first member of this (params.c), so its store can be found. */
typedef struct ag__param_tensor {
    ag_tensor t;
    ag_params *store;
} ag__param_tensor;
static inline ag_params *ag__param_store(const ag_tensor *param) {
    return ((const ag__param_tensor *)(const void *)param)->store;
}
/* Record a failure on the store (ag_params_status/errmsg), as ag_params_add does: for builders
 * such as ag_dense_init that fail before adding. Returns st. */
ag_status ag__params_fail(ag_params *ps, ag_status st, const char *msg);
/* Bumped whenever the store's buffers move or tensors are removed: views into it are then stale. */
uint64_t ag__params_moves(const ag_params *ps);

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

/* Arena allocation, AG_ALIGN-aligned. NULL if full (no message set). */
void *ag__arena_alloc(ag_tape *t, size_t bytes);

/* Write "<what>: <name>: <formatted>" into a caller's error buffer (err may be NULL); returns st.
 * The loaders and model files report through such buffers. */
ag_status ag__vbuf_fail(char *err, size_t errsize, ag_status st, const char *what, const char *name,
                        const char *fmt, va_list ap);

/* Offset of the first byte of s[0..n) that is not part of strict UTF-8 (no overlongs, no
 * surrogates, <= U+10FFFF), n if none: parameter names and the model files' strings (params.c). */
size_t ag__utf8_bad_at(const unsigned char *s, size_t n);

/* Record an error on the tape and return st. */
ag_status ag__fail(ag_tape *t, ag_status st, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The same for an op builder that returns NULL (ag_l2, dense layers, ...): it also marks a result
 * missing, so backward refuses until ag_tape_clear_error, as after a failed ag_apply. t may be NULL. */
ag_status ag__op_fail(ag_tape *t, ag_status st, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

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

/* Convenience for built-ins: ag_call with inputs given inline. */
#define AG__CALL(t, op, params, ...) \
    ag_call((t), (op), (ag_tensor *[]){__VA_ARGS__}, \
            (int)(sizeof((ag_tensor *[]){__VA_ARGS__}) / sizeof(ag_tensor *)), (params))

/* AG__CLONES before a function: GCC/clang compile it three times, for AVX-512F, AVX2 and the
 * baseline, and the loader picks one for the machine (ifunc, resolved once). For the element-wise
 * streams (ops_*.c, optim.c): wider vectors, the same results, because the build has no FMA
 * (-ffp-contract=off), no reassociation (no -ffast-math, so sums stay in order) and every clone
 * does exactly the baseline's IEEE operations per element. Not under sanitizers (their runtimes
 * are not ready when the resolvers run at load time) nor with -DAG_NO_CLONES (the A/B builds and
 * the clones-vs-baseline test, tests/noclones.cmake). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define AG__NO_CLONES_SAN 1
#endif
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(AG__NO_CLONES_SAN) && \
    !defined(AG_NO_CLONES)
#define AG__CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AG__CLONES
#endif

/* sum_i x_i and sum_i x_i^2 over n elements in double (ops_reduce.c): interleaved partial sums
 * combined in a fixed order, so vectorised yet the same bits on every call. */
double ag__sum(const ag_real *x, size_t n);
double ag__sum_sq(const ag_real *x, size_t n);

/* Test hook for the hand-written SIMD variants of ag__sigmoid_array (ops_elementwise.c): runs the
 * variant named "scalar", "sse2", "avx2" or "avx512" on x[0, n) into o and returns 0, or returns
 * -1 if this build or CPU has no such variant. The variant ag__sigmoid_array dispatches to (once,
 * from the CPU; the baseline with -DAG_NO_CLONES) is in *ag__sigmoid_variant_name(). */
int ag__sigmoid_variant(const char *name, const ag_real *x, ag_real *o, size_t n);
const char *ag__sigmoid_variant_name(void);

/* Thread pool teardown (threads.c); called by nothing in steady state. */
void ag__threads_shutdown(void);

/* ---- for the built-in ops (ops_*.c, gradcheck.c): libm on ag_real, so the float build calls
 * expf/tanhf/... (no double round trips) and the double build exp/tanh/... */
#include <math.h>
#ifdef AG_DOUBLE
#define ag__exp exp
#define ag__log log
#define ag__tanh tanh
#define ag__sqrt sqrt
#define ag__pow pow
#define ag__fabs fabs
#else
#define ag__exp expf
#define ag__log logf
#define ag__tanh tanhf
#define ag__sqrt sqrtf
#define ag__pow powf
#define ag__fabs fabsf
#endif


/* ---- scalar activations shared by the element-wise ops and the fused linear_act (ops_*.c) */

/* sigmoid: f(x) = 1/(1+e^-x);  f'(x) = f(x)(1 - f(x)) (backprop-derivation.md, "Notation").
 * Stable for any |x|: with e = e^-|x| in (0, 1], f = 1/(1+e) for x >= 0 and e/(1+e) for x < 0,
 * so exp never overflows and f(-100) is a tiny positive number, not 0/0. */
#ifdef AG_DOUBLE
#define ag__exp_nonpos ag__exp
#else
/* e^x for x <= 0 (or NaN), branch-free so that the sigmoid loop vectorises (libm's expf is a call
 * per element and was most of a sigmoid layer's time). Cephes' expf: x = n ln2 + r with
 * n = round(x log2 e) (rounded by the 1.5 * 2^23 trick, exact for |n| < 2^22), r in
 * [-ln2/2, ln2/2] from a two-part ln2, a degree-7 polynomial for e^r, 2^n from the exponent bits.
 * About 1 ulp; IEEE operations only, so every machine and vector width gives the same bits.
 * Below -87.3 (where 2^n would leave the normal range) the result is 0, and NaN stays NaN. */
static inline float ag__exp_nonpos(float x) {
    const float xc = x < -87.3f ? -87.3f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const float t = xc * 1.44269504088896341f + magic;
    const float n = t - magic;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * (r * r) + r + 1.0f;
    uint32_t ti, mi; /* unsigned: a NaN's bits wrap harmlessly (the NaN survives in y) */
    memcpy(&ti, &t, sizeof ti);
    memcpy(&mi, &magic, sizeof mi);
    const uint32_t bits = (ti - mi + 127u) << 23; /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float v = y * scale; /* computed unconditionally: a select of values, which GCC if-converts
                                  (with -ftrapping-math it will not speculate an FP op in a branch) */
    return x < -87.3f ? 0.0f : v;
}
#endif
static inline ag_real ag__sigmoid1(ag_real x) {
    const ag_real e = ag__exp_nonpos(-ag__fabs(x));
    const ag_real s = 1 / (1 + e), es = e * s; /* both always computed, then selected: vectorises */
    return x >= 0 ? s : es;
}

/* o[i] = ag__sigmoid1(x[i]) for i < n, bit for bit, SIMD where available (ops_elementwise.c);
 * o == x is allowed (in place). */
void ag__sigmoid_array(const ag_real *x, ag_real *o, size_t n);

/* tanh: f'(x) = 1 - f(x)^2 (backprop-derivation.md, "Notation").
 * In float, glibc's tanhf goes through expm1f and costs ~3x an expf, which dominates chains of tiny
 * ops. So: |x| < 0.3, the odd Taylor series to x^11 (next term < 2e-9 relative); otherwise
 * (1 - e)/(1 + e) with e = e^(-2|x|) <= 0.55, where the subtraction loses at most ~1 bit. Within a
 * few ulp of tanhf (a test holds it to 4e-7 relative); exact +-1 for large |x|, NaN stays NaN.
 * The double build uses libm's tanh. */
#ifdef AG_DOUBLE
#define ag__tanh1 tanh
#else
static inline float ag__tanh1(float x) {
    const float ax = fabsf(x);
    if (ax < 0.3f) {
        const float x2 = x * x;
        return x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 +
                                                                                    x2 * (-1382.0f / 155925)))));
    }
    const float e = expf(-2 * ax);
    return copysignf((1 - e) / (1 + e), x);
}
#endif

/* Activations a fused op can apply (the values of layers/dense.h's ag_act). */
enum { AG__ACT_IDENTITY = 0, AG__ACT_SIGMOID = 1, AG__ACT_TANH = 2, AG__ACT_RELU = 3 };

/* Fused dense layer: a = f(x W^T + b) as one node (ops_matmul.c, "linear_act"). Shapes as
 * ag_linear (b may be NULL: no bias); act is one of AG__ACT_*. The pre-activation is never
 * stored: backward takes f' from a, for a sigmoid a(1-a), for tanh 1-a^2, for relu [a > 0]. */
ag_tensor *ag__linear_act(ag_tape *t, ag_tensor *x, ag_tensor *W, ag_tensor *b, int act);

/* ---- gunzip.c: gzip files (RFC 1952) of DEFLATE data (RFC 1951), decoded in process ----
 * Streaming both ways: input is pulled through `read`, output goes to one contiguous buffer that
 * the caller grows in `more` (and may refuse to grow: a header check before the big allocation). */

/* Up to cap bytes of input into buf: the count, 0 at the end of the input, -1 on a read error. */
typedef ptrdiff_t (*ag__gz_read_fn)(void *ctx, unsigned char *buf, size_t cap);
/* Called when all *cap bytes of *buf hold output (first with *buf NULL and *cap 0): enlarge it,
 * keeping its bytes (*buf may move), and return 0; or return nonzero to stop decoding. */
typedef int (*ag__gz_more_fn)(void *ctx, unsigned char **buf, size_t *cap);

typedef enum ag__gz_result {
    AG__GZ_OK = 0,     /* every member decoded, CRC-32 and length checked; nothing but zero bytes after */
    AG__GZ_STOPPED,    /* `more` returned nonzero */
    AG__GZ_READ_ERROR, /* `read` returned -1 */
    AG__GZ_NOMEM,      /* the decoder's own state (about 80 KiB) could not be allocated */
    AG__GZ_NOT_GZIP,   /* the input does not start with gzip's magic bytes 1f 8b */
    AG__GZ_CORRUPT,    /* bad header, bad DEFLATE data, truncated input, CRC-32 or length mismatch */
    AG__GZ_TRAILING,   /* bytes after the last member that are neither a member nor zero padding */
} ag__gz_result;

/* Decode every member of a gzip file, in order, into *buf (capacity *cap, grown only through
 * `more`); *len receives the bytes decoded, also when decoding stops early. `why` (may be NULL)
 * gets a one-line reason for NOT_GZIP, CORRUPT and TRAILING, e.g. "invalid distance too far back".
 * The buffer stays the caller's to free, whatever the result. */
ag__gz_result ag__gunzip(ag__gz_read_fn read, void *read_ctx, ag__gz_more_fn more, void *more_ctx,
                         unsigned char **buf, size_t *cap, size_t *len, char *why, size_t whysize);

#endif /* AG_INTERNAL_H */

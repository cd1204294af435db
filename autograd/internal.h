/*
 * internal.h - shared by the library's own sources; not installed.
 * The tape's layout, the allocator hooks and small helpers for ops.
 */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "ag.h"

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
    ag_status status;
    int op_failed;          /* an op or leaf returned no result since the last reset/clear */
    char errmsg[AG_ERRMSG_SIZE];
};

/* Tape tensors of at most this many bytes of data ("tiny") keep value and grad right behind their
 * node (tape.c, node_new). AG__GRAD_INLINE in flags: a zeroable grad slot of AG__TINY_BYTES
 * follows the value; backward takes it instead of allocating. Internal: never set on parameters. */
#define AG__TINY_BYTES 16
#define AG__GRAD_INLINE (1u << 30)

/* Arena allocation, AG_ALIGN-aligned. NULL if full (no message set). */
void *ag__arena_alloc(ag_tape *t, size_t bytes);

/* Record an error on the tape and return st. */
ag_status ag__fail(ag_tape *t, ag_status st, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

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

#endif /* AG_INTERNAL_H */

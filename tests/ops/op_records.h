/*
 * op_records.h - one record per built-in op, from which every per-op check is generated
 * (tests/ops/test_op_records.c: gradient check, bad input, composed twin), the clones-vs-baseline hash
 * (tests/ops/test_eltwise_simd.c --hash) and the speed lines (bench/bench_ops.c).
 *
 * Adding an op = its entry in autograd/ops/<file>.c, its line in ag.h, and ONE record in
 * tests/ops/records/<family>.c (docs/extending.md, "Adding a built-in op"). A record names the op, builds it from
 * inputs and parameters, lists the shapes to check it at, the domain its inputs are drawn from, the
 * erroneous calls it must refuse (with the status and the message), and optionally a twin made of
 * other ops that must agree with it. Plain C on the public API: no
 * Check here, so the benchmarks share it.
 */
#ifndef AG_OP_RECORDS_H
#define AG_OP_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include <tapegrad/ag.h>

enum { OP_MAX_IN = 6 }; /* batch_norm: x, gamma, beta and the two running statistics */

/* Placeholders in a layout's shapes, replaced by op_shape_at: rows, columns, inner size. */
#define OP_R ((size_t)-1)
#define OP_C ((size_t)-2)
#define OP_K ((size_t)-3)

typedef struct op_shape {
    int ndim;
    size_t d[AG_MAX_DIMS];
} op_shape;

/* What a builder gets besides the tape and the inputs (its ctx argument). */
typedef struct op_call {
    const void *param;      /* the case's parameters (axis, c, p, transposes, ...), read by build */
    const int32_t *labels;  /* the int32 side input: labels, or the indices of index_count (else NULL) */
    int n_in;               /* inputs in `in`: variadic ops take any count */
} op_call;

/* Builds the op on t; ctx is a const op_call *. NULL on error (recorded on t). */
typedef ag_tensor *(*op_build_fn)(ag_tape *t, ag_tensor *const *in, const void *ctx);

typedef struct op_domain {
    double lo, hi; /* inputs uniform in [lo, hi]; {0, 0}: [-1, 1] */
} op_domain;

/* One way of calling the op: the shapes (literal, or in OP_R/OP_C/OP_K for a layout) and params. */
typedef struct op_case {
    const char *label;
    int n_in;
    op_shape in[OP_MAX_IN];
    const void *param;
    const op_domain *domain; /* n_in entries overriding the record's (pow's fractional p), or NULL */
} op_case;

/* null_in of an erroneous call: which argument is passed as NULL. */
enum { OP_NULL_NONE = 0, OP_NULL_ARRAY = 100, OP_NULL_LABELS = 101 };
#define OP_NULL_IN(i) (1 + (i))

/* An erroneous call: the inputs (fresh zero tensors of these shapes), what is NULL, and the
 * status and message it must give. The message must start with "<msg_name>:" and contain msg
 * (which names the shapes or the values at fault). */
typedef struct op_bad {
    const char *what;
    int n_in;
    op_shape in[OP_MAX_IN];
    const void *param;      /* NULL: the first case's */
    const int32_t *labels;  /* NULL: valid labels for the shapes (records with labels) */
    int null_in;            /* OP_NULL_* */
    ag_status want;
    const char *msg;
} op_bad;

typedef struct op_record {
    const char *name;       /* TCase, ctest entry op_records/<name>, bench line */
    const char *msg_name;   /* the op as its messages name it; NULL: name */
    op_build_fn build;
    op_build_fn composed;   /* a twin from other ops that must agree (forward and gradients), or NULL */
    const op_case *cases;   /* gradient-check cases, literal shapes */
    size_t n_cases;
    const op_case *layouts; /* the same op in OP_R x OP_C terms: hash and speed; the first is the speed shape */
    size_t n_layouts;
    op_domain domain[OP_MAX_IN];
    double avoid[4];        /* kinks: inputs are drawn at least avoid_dist away from these points */
    int n_avoid;
    double avoid_dist;
    /* Kinks inside the op (relu of a pre-activation): the smallest distance of the point in to one
     * of them; a draw closer than avoid_dist is redrawn. NULL: none. */
    double (*kink_dist)(ag_tape *t, ag_tensor *const *in, const op_call *c);
    int labels;             /* 1: an int32 label per row of input 0 (rows: the product of every dimension
                             * but the last; 1 for 1-D), in [0, its last dimension) */
    /* Ops taking int32 indices (gather_rows, take_along, ...): how many the call with these input
     * shapes and param reads, and their range [0, *range). The harnesses draw them uniformly (so
     * with repeats) and pass them as op_call.labels; an erroneous call's op_bad.labels, when set,
     * replaces them. NULL: none. See op_int_dims. */
    size_t (*index_count)(const op_shape *in, const void *param, size_t *range);
    unsigned optional_in;   /* bit i: input i may be NULL (linear's bias) */
    unsigned mask_in;       /* bit i: input i is a mask (nonzero = true, no gradient): the checks draw 0 or 1 */
    double tol_float;       /* gradcheck relative error in float; 0: the default (op_records.c) */
    const op_bad *bad;
    size_t n_bad;
    int clones;             /* AG__CLONES bodies: hash-compared between the clones and baseline builds */
    size_t speed_r, speed_c, speed_k; /* the first layout's size for bench_ops (0: 256 x 1024, K = C) */
} op_record;

/* Every record, family by family (op_records.c lists the families): i < op_record_count(), else NULL. */
size_t op_record_count(void);
const op_record *op_record_at(size_t i);

/* The record of that name, or NULL. */
const op_record *op_record_find(const char *name);
/* s with OP_R, OP_C, OP_K replaced by R, C, K. */
op_shape op_shape_at(op_shape s, size_t R, size_t C, size_t K);
/* The domain of input i in case c of r. */
op_domain op_domain_of(const op_record *r, const op_case *c, int i);
/* The rows (every dimension but the last) and classes (the last) of a labelled op whose input 0
 * has shape s: that many labels in [0, classes). */
void op_label_dims(const op_shape *s, size_t *rows, size_t *classes);
/* The int32 side input of r (labels or index_count) at these input shapes and param: 1 and its
 * count and range [0, *range), or 0 when r takes none. */
int op_int_dims(const op_record *r, const op_shape *in, const void *param, size_t *count, size_t *range);
/* Default float gradcheck tolerance (documented in op_records.c). */
double op_tol_float(const op_record *r);

#endif

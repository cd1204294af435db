/*
 * records.h - what the files of op records share: the shorthands for shapes, cases and domains,
 * and the shape lists that many ops are checked at (defined in op_records.c). Included by
 * op_records.c and by every tests/ops/records/<family>.c; see op_records.h for the record itself.
 */
#ifndef AG_RECORDS_H
#define AG_RECORDS_H

#include "../op_records.h"

#define SHP(n, ...) {n, {__VA_ARGS__}}
#define S0 {0, {0}}
#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CASES(a) a, LEN(a)
#define CALL(ctx) ((const op_call *)(ctx))
#define P(ctx, T) (*(const T *)CALL(ctx)->param)

/* domain initializers (a const object is not a constant expression in C), and the same as objects */
#define ANY {-1, 1}
#define POS {0.5, 2}
#define AWAY {-1.5, 1.5}
extern const op_domain DOM_ANY, DOM_POS;
#define AVOID_ZERO .avoid = {0}, .n_avoid = 1, .avoid_dist = 0.3

/* Shared shape lists (op_records.c). BINARY_CASES: broadcasting pairs; BINARY_LAYOUTS: their
 * R x C layouts; RANK_CASES: ranks 0..4 of one input; RC_LAYOUT: one R x C input. */
extern const op_case BINARY_CASES[12], BINARY_LAYOUTS[7], RANK_CASES[5], RC_LAYOUT[1];

#endif

/*
 * test_bmm.c - the batched product ag_bmm (its gradient checks, bad input and twin are generated
 * from its record, tests/ops/records/bmm.c): values and gradients computed by hand; every matrix
 * against ag_matmul_ex on separately made 2-D leaves, with the gradients of a repeated operand
 * summed over its uses; and the same bits with 1 and 2 threads, on the batch-parallel small
 * products, the folded path and products large enough to be threaded inside ag_gemm.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---------------------------------------------------------------- by hand */

static const ag_real A[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* A0 = [1 2; 3 4], A1 = [5 6; 7 8] */
static const ag_real B[8] = {1, 1, 0, 1, 2, 0, 1, 1}; /* B0 = [1 1; 0 1], B1 = [2 0; 1 1] */
static const ag_real ONES[8] = {1, 1, 1, 1, 1, 1, 1, 1};

static void expect(const char *what, const ag_real *got, const ag_real *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s[%zu] is %g, expected %g", what, i, (double)got[i], (double)want[i]);
}

START_TEST(t_by_hand) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    const size_t s3[3] = {2, 2, 2}, s2[2] = {2, 2};
    /* batch against batch: C_i = A_i B_i; seed 1: dA_i = 1 B_i^T (row sums of B_i), dB_i = A_i^T 1 */
    ag_tensor *a = ag_tensor_from(t, 3, s3, A), *b = ag_tensor_from(t, 3, s3, B);
    ag_requires_grad(a);
    ag_requires_grad(b);
    ag_tensor *c = ag_bmm(t, a, b, 0, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->ndim, 3);
    expect("C", c->value, (const ag_real[]){1, 3, 3, 7, 16, 6, 22, 8}, 8);
    ck_assert_int_eq(ag_backward_seed(t, c, ONES), AG_OK);
    expect("dA", a->grad, (const ag_real[]){2, 1, 2, 1, 2, 2, 2, 2}, 8);
    expect("dB", b->grad, (const ag_real[]){4, 4, 6, 6, 12, 12, 14, 14}, 8);

    /* one B for the batch (the folded path): dB sums both products */
    ag_tape_reset(t);
    a = ag_tensor_from(t, 3, s3, A);
    b = ag_tensor_from(t, 2, s2, B);
    ag_requires_grad(a);
    ag_requires_grad(b);
    c = ag_bmm(t, a, b, 0, 0);
    ck_assert_ptr_nonnull(c);
    expect("C", c->value, (const ag_real[]){1, 3, 3, 7, 5, 11, 7, 15}, 8);
    ck_assert_int_eq(ag_backward_seed(t, c, ONES), AG_OK);
    expect("dA", a->grad, (const ag_real[]){2, 1, 2, 1, 2, 1, 2, 1}, 8);
    expect("dB", b->grad, (const ag_real[]){16, 16, 20, 20}, 4);

    /* one A for the batch (1 x 2 x 2 against 2 x 2 x 2), B transposed: C_i = A0 B_i^T; dA sums both */
    ag_tape_reset(t);
    a = ag_tensor_from(t, 3, (size_t[]){1, 2, 2}, A);
    b = ag_tensor_from(t, 3, s3, B);
    ag_requires_grad(a);
    ag_requires_grad(b);
    c = ag_bmm(t, a, b, 0, 1);
    ck_assert_ptr_nonnull(c);
    /* A0 B0^T = [1 2; 3 4][1 0; 1 1] = [3 2; 7 4], A0 B1^T = [1 2; 3 4][2 1; 0 1] = [2 3; 6 7] */
    expect("C", c->value, (const ag_real[]){3, 2, 7, 4, 2, 3, 6, 7}, 8);
    ck_assert_int_eq(ag_backward_seed(t, c, ONES), AG_OK);
    /* dA = 1 B0 + 1 B1 (column sums of each, in every row): [1 2] + [3 1] */
    expect("dA", a->grad, (const ag_real[]){4, 3, 4, 3}, 4);
    /* dB_i = 1^T A0 (B transposed: dB = dC^T A): column sums of A0, [4 6], in every row */
    expect("dB", b->grad, (const ag_real[]){4, 6, 4, 6, 4, 6, 4, 6}, 8);

    /* 4-D: 2 x 1 x 2 x 2 against 1 x 2 x 2 x 2 gives 2 x 2 x 2 x 2, C[i][j] = A_i B_j */
    ag_tape_reset(t);
    a = ag_tensor_from(t, 4, (size_t[]){2, 1, 2, 2}, A);
    b = ag_tensor_from(t, 4, (size_t[]){1, 2, 2, 2}, B);
    c = ag_bmm(t, a, b, 0, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->ndim, 4);
    ck_assert_uint_eq(c->shape[0], 2);
    ck_assert_uint_eq(c->shape[1], 2);
    expect("C", c->value, (const ag_real[]){1, 3, 3, 7, 4, 2, 10, 4, 5, 11, 7, 15, 16, 6, 22, 8}, 16);
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- against matmul_ex */

typedef struct bcase {
    int na, nb;
    size_t sa[4], sb[4];
    int ta, tb;
} bcase;

static size_t count(int nd, const size_t *s) {
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}
/* batch axis k (of 2, right-aligned) of an operand */
static size_t bax(int nd, const size_t *s, int k) { return nd - 4 + k >= 0 ? s[nd - 4 + k] : 1; }

/* Each C matrix of ag_bmm against ag_matmul_ex of its two matrices made as leaves of their own;
 * a matrix used by several products gets the sum of their gradients. */
static void against_matmul(const bcase *bc) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 7);
    const size_t Na = count(bc->na, bc->sa), Nb = count(bc->nb, bc->sb);
    ag_real *va = malloc(Na * sizeof *va), *vb = malloc(Nb * sizeof *vb);
    ck_assert(va && vb);
    ag_rng_fill_uniform(&rng, va, Na, -1, 1);
    ag_rng_fill_uniform(&rng, vb, Nb, -1, 1);
    ag_tensor *a = ag_tensor_from(t, bc->na, bc->sa, va), *b = ag_tensor_from(t, bc->nb, bc->sb, vb);
    ag_requires_grad(a);
    ag_requires_grad(b);
    ag_tensor *c = ag_bmm(t, a, b, bc->ta, bc->tb);
    ck_assert_msg(c != NULL, "%s", ag_tape_errmsg(t));
    ag_real *seed = malloc(c->size * sizeof *seed);
    ck_assert_ptr_nonnull(seed);
    ag_rng_fill_uniform(&rng, seed, c->size, -1, 1);
    ck_assert_int_eq(ag_backward_seed(t, c, seed), AG_OK);

    const size_t ar = bc->sa[bc->na - 2], ac = bc->sa[bc->na - 1], br = bc->sb[bc->nb - 2], bcl = bc->sb[bc->nb - 1];
    const size_t mat_c = c->shape[c->ndim - 2] * c->shape[c->ndim - 1];
    size_t o[2], da[2], db[2];
    for (int k = 0; k < 2; k++) {
        da[k] = bax(bc->na, bc->sa, k);
        db[k] = bax(bc->nb, bc->sb, k);
        o[k] = da[k] > db[k] ? da[k] : db[k];
    }
    double *ga = calloc(Na, sizeof *ga), *gb = calloc(Nb, sizeof *gb);
    ck_assert(ga && gb);
    ag_tape *u;
    ck_assert_int_eq(ag_tape_new(&u, NULL), AG_OK);
    for (size_t i0 = 0; i0 < o[0]; i0++)
        for (size_t i1 = 0; i1 < o[1]; i1++) {
            const size_t ja = (da[0] == 1 ? 0 : i0) * da[1] + (da[1] == 1 ? 0 : i1);
            const size_t jb = (db[0] == 1 ? 0 : i0) * db[1] + (db[1] == 1 ? 0 : i1);
            const size_t ic = i0 * o[1] + i1;
            ag_tape_reset(u);
            ag_tensor *x = ag_tensor_from(u, 2, (size_t[]){ar, ac}, va + ja * ar * ac);
            ag_tensor *y = ag_tensor_from(u, 2, (size_t[]){br, bcl}, vb + jb * br * bcl);
            ag_requires_grad(x);
            ag_requires_grad(y);
            ag_tensor *z = ag_matmul_ex(u, x, y, bc->ta, bc->tb);
            ck_assert_ptr_nonnull(z);
            ck_assert_uint_eq(z->size, mat_c);
            /* the same ag_gemm call on the same matrix: the same bits */
            ck_assert_msg(memcmp(z->value, c->value + ic * mat_c, mat_c * sizeof(ag_real)) == 0,
                          "C[%zu] differs from matmul_ex", ic);
            ck_assert_int_eq(ag_backward_seed(u, z, seed + ic * mat_c), AG_OK);
            for (size_t e = 0; e < ar * ac; e++) ga[ja * ar * ac + e] += (double)x->grad[e];
            for (size_t e = 0; e < br * bcl; e++) gb[jb * br * bcl + e] += (double)y->grad[e];
        }
    ag_test_max_abs_diff("dA", a->grad, ga, Na, AG_TEST_EXACT_TOL * 10);
    ag_test_max_abs_diff("dB", b->grad, gb, Nb, AG_TEST_EXACT_TOL * 10);
    ag_tape_free(u);
    ag_tape_free(t);
    free(va), free(vb), free(seed), free(ga), free(gb);
}

/* every transpose; 3-D and 4-D; batch repeated on either side, or on both (cross); a 2-D operand
 * on the left (repeated, general path) */
static const bcase CASES[] = {
    {3, 3, {3, 5, 7}, {3, 7, 4}, 0, 0},
    {3, 3, {3, 5, 7}, {3, 4, 7}, 0, 1},
    {3, 3, {3, 7, 5}, {3, 7, 4}, 1, 0},
    {3, 3, {3, 7, 5}, {3, 4, 7}, 1, 1},
    {4, 4, {2, 1, 6, 9}, {1, 3, 9, 5}, 0, 0},
    {4, 4, {1, 3, 9, 6}, {2, 3, 5, 9}, 1, 1},
    {2, 4, {6, 9}, {2, 3, 9, 5}, 0, 0},
    {2, 3, {9, 6}, {4, 5, 9}, 1, 1},
    {4, 3, {2, 4, 16, 16}, {1, 16, 16}, 0, 1},
    {3, 3, {40, 16, 16}, {40, 16, 16}, 0, 1},
};

START_TEST(t_against_matmul) { against_matmul(&CASES[_i]); }
END_TEST

/* ---------------------------------------------------------------- threads */

typedef struct run {
    ag_real *c, *ga, *gb;
    size_t nc, na, nb;
} run;

static run run_at(int threads, const bcase *bc) {
    ck_assert_int_eq(ag_set_threads(threads), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 11);
    run r;
    r.na = count(bc->na, bc->sa);
    r.nb = count(bc->nb, bc->sb);
    ag_tensor *a = ag_tensor_new(t, bc->na, bc->sa), *b = ag_tensor_new(t, bc->nb, bc->sb);
    ck_assert(a && b);
    ag_rng_fill_uniform(&rng, a->value, r.na, -1, 1);
    ag_rng_fill_uniform(&rng, b->value, r.nb, -1, 1);
    ag_requires_grad(a);
    ag_requires_grad(b);
    ag_tensor *c = ag_bmm(t, a, b, bc->ta, bc->tb);
    ck_assert_ptr_nonnull(c);
    r.nc = c->size;
    ag_real *seed = malloc(r.nc * sizeof *seed);
    ck_assert_ptr_nonnull(seed);
    ag_rng_fill_uniform(&rng, seed, r.nc, -1, 1);
    ck_assert_int_eq(ag_backward_seed(t, c, seed), AG_OK);
    r.c = malloc(r.nc * sizeof *r.c);
    r.ga = malloc(r.na * sizeof *r.ga);
    r.gb = malloc(r.nb * sizeof *r.gb);
    ck_assert(r.c && r.ga && r.gb);
    memcpy(r.c, c->value, r.nc * sizeof *r.c);
    memcpy(r.ga, a->grad, r.na * sizeof *r.ga);
    memcpy(r.gb, b->grad, r.nb * sizeof *r.gb);
    free(seed);
    ag_tape_free(t);
    return r;
}

/* small products over the batch (attention scores; 64^3; repeated operands on either side), the
 * folded path, and 256^3 products threaded inside ag_gemm */
static const bcase THREAD_CASES[] = {
    {4, 4, {32, 4, 16, 16}, {32, 4, 16, 16}, 0, 1},
    {3, 3, {64, 64, 64}, {64, 64, 64}, 0, 0},
    {4, 4, {8, 1, 16, 24}, {1, 4, 24, 16}, 1, 1},
    {2, 3, {24, 16}, {96, 16, 24}, 0, 0},
    {4, 2, {16, 8, 16, 24}, {24, 32}, 0, 0},
    {3, 3, {2, 256, 256}, {2, 256, 256}, 1, 0},
};

START_TEST(t_threads) {
    const bcase *bc = &THREAD_CASES[_i];
    const int was = ag_get_threads();
    run r1 = run_at(1, bc), r2 = run_at(2, bc);
    ag_set_threads(was);
    ck_assert_msg(memcmp(r1.c, r2.c, r1.nc * sizeof *r1.c) == 0, "case %d: C differs with 2 threads", _i);
    ck_assert_msg(memcmp(r1.ga, r2.ga, r1.na * sizeof *r1.ga) == 0, "case %d: dA differs with 2 threads", _i);
    ck_assert_msg(memcmp(r1.gb, r2.gb, r1.nb * sizeof *r1.gb) == 0, "case %d: dB differs with 2 threads", _i);
    free(r1.c), free(r1.ga), free(r1.gb), free(r2.c), free(r2.ga), free(r2.gb);
}
END_TEST

static Suite *bmm_suite(void) {
    Suite *s = suite_create("bmm");
    TCase *tc = tcase_create("bmm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_by_hand);
    tcase_add_loop_test(tc, t_against_matmul, 0, (int)(sizeof CASES / sizeof CASES[0]));
    tcase_add_loop_test(tc, t_threads, 0, (int)(sizeof THREAD_CASES / sizeof THREAD_CASES[0]));
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(bmm_suite)

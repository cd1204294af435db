/*
 * test_gru_builtins.c - issue 22's "a GRU step can be written from built-ins alone": a GRU cell
 * unrolled over a short sequence from ag_linear, ag_chunk, ag_slice, ag_squeeze, ag_stack and the
 * element-wise ops, no user op. Its outputs and parameter gradients must equal PyTorch's GRUCell
 * (torch.nn.GRUCell, its documented formulas) on a hand-set case, and a central-difference
 * gradcheck must pass over the parameters and the data leaves.
 *
 * PyTorch's GRU cell:  r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz),
 *                      n = tanh(W_in x + b_in + r .* (W_hn h + b_hn)),  h' = (1 - z) .* n + z .* h
 * with W_ih = [W_ir; W_iz; W_in] (3H x I) and W_hh = [W_hr; W_hz; W_hn] (3H x H).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/ag.h>
#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})

enum { K = 2, I = 3, H = 2, T = 3 };

/* The case: w[i] = ((i * a) mod b - floor(b / 2)) / 10, filled row-major. Expected values from
 * /usr/bin/python3 (torch 1.13, float64): the cell above with these weights, h_t for t = 0..2 stacked
 * on axis 1, L = sum(Y .* C), L.backward(). */
static double fill_at(size_t i, unsigned a, unsigned b) { return (double)((long)((i * a) % b) - (long)(b / 2)) / 10.0; }
static void fill(ag_real *x, size_t n, unsigned a, unsigned b) {
    for (size_t i = 0; i < n; i++) x[i] = (ag_real)fill_at(i, a, b);
}

static const double Y_TORCH[K * T * H] = {
    -0.099837271344990652, -0.16580390209847826, 0.084865299864477439, -0.13091767193326867,
    0.19371987043893305,   -0.12095090222300205, 0.26315915896048481,  -0.19191518436999361,
    0.28379089491282145,   -0.15925953091450235, 0.19356461419376866,  -0.34039639688690848};
static const double L_TORCH = 0.016179782772522605;
static const double DWIH_TORCH[3 * H * I] = {
    0.0034461842112684295, -0.0030622136561471369, 0.00039770064629660414, 0.0032024152669789252,
    -0.0021026959436494749, 0.00086502169376933657, -0.04437323520608763,  0.0031514136458425024,
    0.0066520310185002197,  0.0091564856022971208,  0.0088270784836828008,  -0.0075034683823709432,
    0.10544606217413671,    -0.088435188654419489,  0.0093998624288517008,  -0.07898710966998454,
    0.089748387139824026,   -0.032122595597107888};
static const double DWHH_TORCH[3 * H * H] = {
    0.00035343266019143981, 9.9168522026018939e-08, -7.9995186230452306e-05, 0.00010665668249289228,
    -0.013785916921137592,  0.0056271673064613552,  0.0075740438616518331,   -0.0081250755934031624,
    0.0071614391969647712,  0.0010416133720326758,  0.0094370972235035197,   0.0051092847854722501};
static const double DBIH_TORCH[3 * H] = {-0.00011712156553706334, -0.0046895797731826283, -0.02905341264981021,
                                         0.041215127149274763,    0.013795821885510998,   0.088158796383085464};
static const double DBHH_TORCH[3 * H] = {-0.00011712156553706334, -0.0046895797731826283, -0.02905341264981021,
                                         0.041215127149274763,    -0.012598283964525874,  0.038438542610302363};

typedef struct gru {
    ag_params *ps;
    ag_tensor *Wih, *Whh, *bih, *bhh;
    ag_real x[K * T * I], h0[K * H], c[K * T * H]; /* data: sequence, initial state, loss weights */
    ag_tensor *Y;                                  /* the last forward's stacked outputs */
} gru;

/* One step: h' = (1 - z) n + z h, written as n + z (h - n). */
static ag_tensor *gru_cell(ag_tape *t, const gru *g, ag_tensor *x, ag_tensor *h) {
    ag_tensor *gi[3], *gh[3];
    if (ag_chunk(t, ag_linear(t, x, g->Wih, g->bih), 1, 3, gi) != AG_OK) return NULL;
    if (ag_chunk(t, ag_linear(t, h, g->Whh, g->bhh), 1, 3, gh) != AG_OK) return NULL;
    ag_tensor *r = ag_sigmoid(t, ag_add(t, gi[0], gh[0]));
    ag_tensor *z = ag_sigmoid(t, ag_add(t, gi[1], gh[1]));
    ag_tensor *n = ag_tanh(t, ag_add(t, gi[2], ag_mul(t, r, gh[2])));
    return ag_add(t, n, ag_mul(t, z, ag_sub(t, h, n)));
}

/* L = sum(stack_t(h_t) .* C) over the sequence x (K x T x I) from h0. */
static ag_tensor *gru_loss(ag_tape *t, void *ctx) {
    gru *g = ctx;
    ag_tensor *X = ag_tensor_wrap(t, 3, SH(K, T, I), g->x);
    ag_tensor *h = ag_tensor_wrap(t, 2, SH(K, H), g->h0);
    ag_tensor *hs[T];
    for (size_t s = 0; s < T; s++) hs[s] = h = gru_cell(t, g, ag_squeeze(t, ag_slice(t, X, 1, s, 1, 1), 1), h);
    g->Y = ag_stack(t, hs, T, 1);
    return ag_sum(t, ag_mul(t, g->Y, ag_tensor_wrap(t, 3, SH(K, T, H), g->c)));
}

/* the same loss with the data as leaves that require a gradient (for ag_gradcheck_leaves) */
static ag_tensor *gru_loss_leaves(ag_tape *t, void *ctx) {
    gru *g = ctx;
    ag_tensor *X = ag_tensor_wrap(t, 3, SH(K, T, I), g->x);
    ag_tensor *h = ag_tensor_wrap(t, 2, SH(K, H), g->h0);
    if (ag_requires_grad(X) != AG_OK || ag_requires_grad(h) != AG_OK) return NULL;
    ag_tensor *hs[T];
    for (size_t s = 0; s < T; s++) hs[s] = h = gru_cell(t, g, ag_squeeze(t, ag_slice(t, X, 1, s, 1, 1), 1), h);
    return ag_sum(t, ag_mul(t, ag_stack(t, hs, T, 1), ag_tensor_wrap(t, 3, SH(K, T, H), g->c)));
}

static void gru_make(gru *g) {
    memset(g, 0, sizeof *g);
    ck_assert_int_eq(ag_params_new(&g->ps), AG_OK);
    ck_assert_int_eq(ag_params_add(g->ps, "W_ih", 2, SH(3 * H, I), AG_DECAY, &g->Wih), AG_OK);
    ck_assert_int_eq(ag_params_add(g->ps, "W_hh", 2, SH(3 * H, H), AG_DECAY, &g->Whh), AG_OK);
    ck_assert_int_eq(ag_params_add(g->ps, "b_ih", 1, SH(3 * H), 0, &g->bih), AG_OK);
    ck_assert_int_eq(ag_params_add(g->ps, "b_hh", 1, SH(3 * H), 0, &g->bhh), AG_OK);
    fill(g->Wih->value, 3 * H * I, 7, 11);
    fill(g->Whh->value, 3 * H * H, 5, 9);
    fill(g->bih->value, 3 * H, 3, 7);
    fill(g->bhh->value, 3 * H, 2, 5);
    fill(g->x, K * T * I, 4, 13);
    fill(g->h0, K * H, 3, 8);
    fill(g->c, K * T * H, 5, 7);
}

#ifdef AG_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-6
#endif

static void expect_near(const char *what, const ag_real *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= TOL * (1 + fabs(want[i])), "%s[%zu]: %.17g, torch %.17g",
                      what, i, (double)got[i], want[i]);
}

START_TEST(gru_matches_torch) {
    gru g;
    gru_make(&g);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *L = gru_loss(t, &g);
    ck_assert_msg(L != NULL, "%s", ag_tape_errmsg(t));
    ck_assert_int_eq(g.Y->ndim, 3);
    ck_assert_uint_eq(g.Y->shape[0], K);
    ck_assert_uint_eq(g.Y->shape[1], T);
    ck_assert_uint_eq(g.Y->shape[2], H);
    expect_near("Y", g.Y->value, Y_TORCH, K * T * H);
    expect_near("L", L->value, &L_TORCH, 1);
    ag_params_zero_grad(g.ps);
    ck_assert_int_eq(ag_backward(t, L), AG_OK);
    expect_near("dW_ih", g.Wih->grad, DWIH_TORCH, 3 * H * I);
    expect_near("dW_hh", g.Whh->grad, DWHH_TORCH, 3 * H * H);
    expect_near("db_ih", g.bih->grad, DBIH_TORCH, 3 * H);
    expect_near("db_hh", g.bhh->grad, DBHH_TORCH, 3 * H);
    ag_tape_free(t);
    ag_params_free(g.ps);
}
END_TEST

/* central differences over every parameter, and over the sequence and initial state as leaves */
START_TEST(gru_gradcheck) {
    gru g;
    gru_make(&g);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *wrt[] = {g.Wih, g.Whh, g.bih, g.bhh};
    ag_gradcheck_result res;
#ifdef AG_DOUBLE
    const double eps = 1e-6, tol = 1e-6;
#else
    const double eps = 1e-2, tol = 5e-3;
#endif
    ck_assert_int_eq(ag_gradcheck(t, gru_loss, &g, wrt, 4, eps, &res), AG_OK);
    ck_assert_msg(res.max_rel_err <= tol, "parameters: rel err %g at tensor %zu [%zu]: %g vs %g", res.max_rel_err,
                  res.worst_tensor, res.worst_index, res.analytic, res.numeric);
    ck_assert_uint_eq(res.n_checked, 3 * H * (I + H + 2));
    const ag_gradcheck_leaf leaves[] = {{g.x, K * T * I, NULL}, {g.h0, K * H, NULL}};
    ck_assert_int_eq(ag_gradcheck_leaves(t, gru_loss_leaves, &g, wrt, 4, leaves, 2, eps, &res), AG_OK);
    ck_assert_msg(res.max_rel_err <= tol, "leaves: rel err %g at tensor %zu [%zu]: %g vs %g", res.max_rel_err,
                  res.worst_tensor, res.worst_index, res.analytic, res.numeric);
    ag_tape_free(t);
    ag_params_free(g.ps);
}
END_TEST

static Suite *gru_suite(void) {
    Suite *s = suite_create("gru_builtins");
    TCase *tc = tcase_create("gru");
    tcase_add_test(tc, gru_matches_torch);
    tcase_add_test(tc, gru_gradcheck);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(gru_suite)

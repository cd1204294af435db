/*
 * test_sink.c - gradient sinks ("update in backward"): ag_tape_set_grad_sink and
 * ag_optim_backward_step.
 *
 * The reference is the two-pass step the library already checks against hand-derived numbers
 * (test_optim, test_delta): zero the gradients, ag_backward, ag_optim_step. The fused step must
 * give the same parameters and optimizer state bit for bit, for every optimizer, decay mode,
 * batch size (which picks the GEMM path: direct, packed, several k blocks) and thread count, on
 * a graph that has every case of the bookkeeping: weights whose gradient goes tile by tile from
 * linear, linear_act and both operands of matmul; an L2 term on the tape, recorded last (its
 * lambda W deferred into the tiles of the weights' GEMMs) or first (the GEMMs run before it), over
 * a weight listed twice and one that only the L2 term uses; a weight used twice; a parameter no
 * gradient reaches; one not on the tape.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/dense.h>
#include "internal.h" /* AG__GRAD_DEFERRED, ag__param */
#include <tapegrad/optim.h>
#include "testutil.h"

typedef struct net {
    ag_params *ps;
    ag_tensor *W1, *b1, *Wm, *Wa, *Ws, *U, *V, *D;
    ag_dense l2;
    size_t in, hidden, K;
    ag_real *x;
} net;

static void net_init(net *n, size_t in, size_t hidden, size_t K, uint64_t seed) {
    memset(n, 0, sizeof *n);
    n->in = in, n->hidden = hidden, n->K = K;
    ck_assert_int_eq(ag_params_new(&n->ps), AG_OK);
    ag_params *ps = n->ps;
    ck_assert_int_eq(ag_params_add(ps, "W1", 2, (size_t[]){hidden, in}, AG_DECAY, &n->W1), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b1", 1, (size_t[]){hidden}, 0, &n->b1), AG_OK);
    ck_assert_int_eq(ag_dense_init(&n->l2, ps, "l2", hidden, 40, AG_ACT_SIGMOID), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "Wm", 2, (size_t[]){40, 13}, AG_DECAY, &n->Wm), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "Wa", 2, (size_t[]){3, 13}, AG_DECAY, &n->Wa), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "Ws", 2, (size_t[]){13, 5}, AG_DECAY, &n->Ws), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "U", 1, (size_t[]){7}, AG_DECAY, &n->U), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "V", 1, (size_t[]){9}, AG_DECAY, &n->V), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "D", 2, (size_t[]){3, 4}, AG_DECAY, &n->D), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, seed);
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *p = ag_params_at(ps, i);
        ag_rng_fill_normal(&r, p->value, p->size, 0, 1 / sqrt((double)p->size / p->shape[0]));
    }
    n->x = malloc(K * in * sizeof *n->x);
    ck_assert_ptr_nonnull(n->x);
}

static void net_free(net *n) {
    ag_params_free(n->ps);
    free(n->x);
}

/* The batch of step s (the same for both nets). */
static void net_batch(net *n, int s) {
    ag_rng r;
    ag_rng_seed(&r, 1000 + (uint64_t)s);
    ag_rng_fill_normal(&r, n->x, n->K * n->in, 0, 1);
}

static ag_tensor *sq_mean(ag_tape *t, ag_tensor *v) { return ag_mean(t, ag_square(t, v)); }

/* J = mean(m2^2) + mean(s1^2) + mean(s2^2) [+ an L2 term], see the file comment. l2_in_loss > 0:
 * lambda/2 (|W1|^2 + |W2|^2 + |D|^2) recorded last; < 0: -l2_in_loss/2 (2 |W1|^2 + |Ws|^2 + |D|^2)
 * recorded first. */
static ag_tensor *net_loss_try(ag_tape *t, net *n, double l2_in_loss) {
    ag_tensor *L = l2_in_loss < 0 ? ag_l2(t, (ag_real)-l2_in_loss, (ag_tensor *[]){n->W1, n->W1, n->Ws, n->D}, 4)
                                  : NULL;
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){n->K, n->in}, n->x);
    ag_tensor *a1 = ag_relu(t, ag_linear(t, X, n->W1, n->b1));  /* linear */
    ag_tensor *a2 = ag_dense_forward(t, &n->l2, a1, NULL);     /* linear_act */
    ag_tensor *m = ag_matmul(t, a2, n->Wm);                    /* weight as b */
    ag_tensor *m2 = ag_matmul_ex(t, n->Wa, m, 0, 1);           /* weight as a: 3 x K */
    ag_tensor *s1 = ag_matmul(t, m, n->Ws), *s2 = ag_matmul(t, ag_relu(t, m), n->Ws); /* used twice */
    ag_mul(t, n->U, n->U);                                     /* recorded, no gradient reaches it */
    ag_tensor *J = ag_add(t, ag_add(t, sq_mean(t, m2), sq_mean(t, s1)), sq_mean(t, s2));
    if (l2_in_loss > 0) J = ag_add(t, J, ag_l2(t, (ag_real)l2_in_loss, (ag_tensor *[]){n->W1, n->l2.W, n->D}, 3));
    if (L) J = ag_add(t, J, L);
    return J;
}

static ag_tensor *net_loss(ag_tape *t, net *n, double l2_in_loss) {
    ag_tensor *J = net_loss_try(t, n, l2_in_loss);
    ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
    return J;
}

static int same_bits(const ag_real *a, const ag_real *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
            fprintf(stderr, "%s differs at %zu: %.17g vs %.17g\n", what, i, (double)a[i], (double)b[i]);
            return 0;
        }
    return 1;
}

/* Every state buffer of the two optimizers holds the same bits, and they counted the same steps. */
static void same_optim_state(ag_optim *oa, ag_optim *ob, const char *what) {
    for (size_t i = 0; i < ag_optim_state_count(oa); i++) {
        const char *na, *nb;
        ag_real *sa, *sb;
        size_t ca, cb;
        ck_assert_int_eq(ag_optim_state(oa, i, &na, &sa, &ca), AG_OK);
        ck_assert_int_eq(ag_optim_state(ob, i, &nb, &sb, &cb), AG_OK);
        ck_assert_msg(same_bits(sa, sb, ca, na), "%s: state %s", what, na);
    }
    ck_assert_uint_eq(ag_optim_steps(oa), ag_optim_steps(ob));
}

static int all_zero(const ag_real *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != 0) return 0;
    return 1;
}

/* Three steps of the reference and of the fused step from the same start; compare everything. */
static void compare_steps(ag_optim_config cfg, size_t in, size_t hidden, size_t K, double l2_in_loss,
                          int threads) {
    ag_set_threads(threads);
    net A, B;
    net_init(&A, in, hidden, K, 7);
    net_init(&B, in, hidden, K, 7);
    ag_optim *oa, *ob;
    char err[AG_ERRMSG_SIZE];
    ck_assert_msg(ag_optim_new(&oa, A.ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_msg(ag_optim_new(&ob, B.ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int s = 0; s < 3; s++) {
        net_batch(&A, s);
        net_batch(&B, s);
        ag_tape_reset(t);
        ag_optim_zero_grad(oa);
        ck_assert_int_eq(ag_backward(t, net_loss(t, &A, l2_in_loss)), AG_OK);
        ck_assert_msg(ag_optim_step(oa) == AG_OK, "%s", ag_optim_errmsg(oa));
        ag_tape_reset(t);
        ck_assert_msg(ag_optim_backward_step(ob, t, net_loss(t, &B, l2_in_loss)) == AG_OK, "%s",
                      ag_optim_errmsg(ob));
        char what[160];
        snprintf(what, sizeof what, "kind %d wd %g dec %d clip %g K %zu l2 %g threads %d step %d: values",
                 (int)cfg.kind, cfg.weight_decay, cfg.decoupled, cfg.clip_norm, K, l2_in_loss, threads, s);
        ck_assert_msg(same_bits(ag_params_values(A.ps), ag_params_values(B.ps), ag_params_numel(A.ps), what),
                      "%s", what);
        same_optim_state(oa, ob, what);
        ck_assert_msg(all_zero(ag_params_grads(B.ps), ag_params_numel(B.ps)), "%s: gradients left nonzero", what);
    }
    ag_tape_free(t);
    ag_optim_free(oa);
    ag_optim_free(ob);
    net_free(&A);
    net_free(&B);
    ag_set_threads(1);
}

static const ag_optim_kind KINDS[] = {AG_OPT_SGD, AG_OPT_MOMENTUM, AG_OPT_NESTEROV, AG_OPT_ADAM, AG_OPT_ADAMW};

/* Every optimizer and decay mode; batch sizes that take the direct (1, 5), packed (33) and
 * several-k-block (700) products; the L2 term on the tape (recorded last or first) or not. */
START_TEST(fused_step_equals_two_pass_step) {
    const size_t Ks[] = {1, 5, 33, 700};
    const size_t nK = ag_test_quick() ? 2 : 4;
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++)
        for (int decay = 0; decay < 3; decay++)
            for (size_t b = 0; b < nK; b++) {
                ag_optim_config cfg = {.kind = KINDS[k], .lr = 0.05, .weight_decay = decay ? 1e-2 : 0,
                                       .decoupled = decay == 2};
                compare_steps(cfg, 37, 45, Ks[b], b % 2 ? (k % 2 ? -1e-3 : 1e-3) : 0, 1);
            }
}
END_TEST

/* Products large enough to be split over threads: tiles arrive from several workers at once. */
START_TEST(fused_step_any_thread_count) {
    for (int th = 1; th <= 3; th++) {
        compare_steps((ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.01, .weight_decay = 1e-3}, 300, 256, 64,
                      0, th);
        compare_steps((ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.001}, 300, 256, 1, 0, th);
        compare_steps((ag_optim_config){.kind = AG_OPT_NESTEROV, .lr = 0.01}, 300, 256, 48, 1e-3, th);
    }
}
END_TEST

/* Clipping needs the global norm first: the fused call falls back to the two-pass step. */
START_TEST(fused_step_with_clipping) {
    compare_steps((ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1, .clip_norm = 0.5}, 37, 45, 33, 0, 1);
    compare_steps((ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01, .clip_norm = 1e-3}, 37, 45, 5, 1e-3, 1);
}
END_TEST

/* ---------------------------------------------------------------- a parameter of another store */

/* Own store: W1 (4 x 6, decayed), b1, u (only elementwise: its gradient comes from ->grad). Other
 * store ("frozen" head): W2 (3 x 4, from the GEMM when a sink claims it), b2 (from ->grad). */
typedef struct two_stores {
    ag_params *own, *other;
    ag_tensor *W1, *b1, *u, *W2, *b2;
    ag_real x[5 * 6];
} two_stores;

static void two_stores_init(two_stores *m) {
    memset(m, 0, sizeof *m);
    ck_assert_int_eq(ag_params_new(&m->own), AG_OK);
    ck_assert_int_eq(ag_params_new(&m->other), AG_OK);
    ck_assert_int_eq(ag_params_add(m->own, "W1", 2, (size_t[]){4, 6}, AG_DECAY, &m->W1), AG_OK);
    ck_assert_int_eq(ag_params_add(m->own, "b1", 1, (size_t[]){4}, 0, &m->b1), AG_OK);
    ck_assert_int_eq(ag_params_add(m->own, "u", 1, (size_t[]){4}, AG_DECAY, &m->u), AG_OK);
    ck_assert_int_eq(ag_params_add(m->other, "W2", 2, (size_t[]){3, 4}, AG_DECAY, &m->W2), AG_OK);
    ck_assert_int_eq(ag_params_add(m->other, "b2", 1, (size_t[]){3}, 0, &m->b2), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 11);
    ag_params *stores[2] = {m->own, m->other};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ag_params_count(stores[k]); i++) {
            ag_tensor *p = ag_params_at(stores[k], i);
            ag_rng_fill_normal(&r, p->value, p->size, 0, 0.7);
        }
    ag_rng_fill_normal(&r, m->x, 5 * 6, 0, 1);
}

static void two_stores_free(two_stores *m) {
    ag_params_free(m->own);
    ag_params_free(m->other);
}

/* J = mean((relu(x W1^T + b1) * u) W2^T + b2)^2 */
static ag_tensor *two_stores_loss(ag_tape *t, two_stores *m) {
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){5, 6}, m->x);
    ag_tensor *h = ag_mul(t, ag_relu(t, ag_linear(t, X, m->W1, m->b1)), m->u);
    ag_tensor *J = sq_mean(t, ag_linear(t, h, m->W2, m->b2));
    ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
    return J;
}

static int sink_calls; /* a caller's sink that must stay out of the way while the optimizer runs */
static void count_calls(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                        size_t ldg, unsigned flags) {
    (void)ctx, (void)x, (void)off, (void)rows, (void)cols, (void)ld, (void)g, (void)ldg, (void)flags;
    sink_calls++;
}

/* Three steps of the reference (zero the store's gradients, ag_backward, ag_optim_step; the other
 * store's gradients are never zeroed, so they accumulate) and of ag_optim_backward_step, on a tape
 * that also uses the other store's W2 and b2. The fused call must update only its own store, and
 * exactly as the reference; the other store must end as the reference leaves it: values as they
 * started, gradients accumulated. With user_sink, a caller's sink is set on the tape throughout: it
 * is never called and is still set afterwards. */
static void compare_with_other_store(ag_optim_config cfg, int user_sink) {
    two_stores A, B;
    two_stores_init(&A);
    two_stores_init(&B);
    const size_t n_other = ag_params_numel(A.other);
    ag_real *start = malloc(n_other * sizeof *start);
    ck_assert_ptr_nonnull(start);
    memcpy(start, ag_params_values(A.other), n_other * sizeof *start);
    ag_optim *oa, *ob;
    char err[AG_ERRMSG_SIZE];
    ck_assert_msg(ag_optim_new(&oa, A.own, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_msg(ag_optim_new(&ob, B.own, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ag_tape *ta, *tb;
    ck_assert_int_eq(ag_tape_new(&ta, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&tb, NULL), AG_OK);
    sink_calls = 0;
    if (user_sink) ck_assert_int_eq(ag_tape_set_grad_sink(tb, &(ag_grad_sink){.consume = count_calls}), AG_OK);
    for (int s = 0; s < 3; s++) {
        char what[128];
        snprintf(what, sizeof what, "kind %d wd %g clip %g sink %d step %d", (int)cfg.kind, cfg.weight_decay,
                 cfg.clip_norm, user_sink, s);
        ag_tape_reset(ta);
        ag_optim_zero_grad(oa);
        ck_assert_int_eq(ag_backward(ta, two_stores_loss(ta, &A)), AG_OK);
        ck_assert_msg(ag_optim_step(oa) == AG_OK, "%s: %s", what, ag_optim_errmsg(oa));
        ag_tape_reset(tb);
        ck_assert_msg(ag_optim_backward_step(ob, tb, two_stores_loss(tb, &B)) == AG_OK, "%s: %s", what,
                      ag_optim_errmsg(ob));
        ck_assert_msg(same_bits(ag_params_values(A.own), ag_params_values(B.own), ag_params_numel(A.own), what),
                      "%s: own values", what);
        same_optim_state(oa, ob, what);
        ck_assert_msg(all_zero(ag_params_grads(B.own), ag_params_numel(B.own)), "%s: own gradients left", what);
        /* the other store: untouched values, the gradients the reference accumulated */
        ck_assert_msg(same_bits(start, ag_params_values(B.other), n_other, what), "%s: other store's values", what);
        ck_assert_msg(same_bits(ag_params_grads(A.other), ag_params_grads(B.other), n_other, what),
                      "%s: other store's gradients", what);
        ck_assert_msg(!all_zero(ag_params_grads(B.other), n_other), "%s: no gradient reached W2, b2", what);
    }
    ck_assert_int_eq(sink_calls, 0);
    ck_assert_int_eq(ag_tape_grad_sink(tb) != NULL, user_sink);
    if (user_sink) { /* still the caller's: a plain backward feeds it */
        ck_assert_ptr_eq((void *)ag_tape_grad_sink(tb)->consume, (void *)count_calls);
        ag_tape_reset(tb);
        ck_assert_int_eq(ag_backward(tb, two_stores_loss(tb, &B)), AG_OK);
        ck_assert_int_gt(sink_calls, 0);
    }
    ag_tape_free(ta);
    ag_tape_free(tb);
    ag_optim_free(oa);
    ag_optim_free(ob);
    free(start);
    two_stores_free(&A);
    two_stores_free(&B);
}

/* A tape that also uses another store's parameters (a second, frozen model): the fused call
 * never writes outside its own store (it used to update W2 and b2 through the wrong base, and
 * with Adam to index its moments past their end) and leaves what the two-pass step leaves. */
START_TEST(fused_step_with_another_stores_parameter) {
    const ag_optim_kind kinds[] = {AG_OPT_SGD, AG_OPT_MOMENTUM, AG_OPT_ADAM};
    for (size_t k = 0; k < 3; k++)
        for (int decay = 0; decay < 2; decay++)
            for (int user_sink = 0; user_sink < 2; user_sink++)
                compare_with_other_store((ag_optim_config){.kind = kinds[k], .lr = 0.05,
                                                           .weight_decay = decay ? 1e-2 : 0},
                                         user_sink);
}
END_TEST

/* The clipping path runs ag_backward itself: a caller's sink on the tape must not take the
 * gradients from it (they used to reach the sink and the step saw zeros). */
START_TEST(clipping_sets_a_callers_sink_aside) {
    compare_with_other_store((ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1, .clip_norm = 0.05}, 1);
    compare_with_other_store((ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01, .clip_norm = 1e-3}, 1);
    ag_optim_config cfg = {.kind = AG_OPT_MOMENTUM, .lr = 0.05, .clip_norm = 0.5};
    /* own store only, with the sink set on the fused tape */
    net A, B;
    net_init(&A, 7, 9, 5, 3);
    net_init(&B, 7, 9, 5, 3);
    net_batch(&A, 0);
    net_batch(&B, 0);
    ag_optim *oa, *ob;
    ck_assert_int_eq(ag_optim_new(&oa, A.ps, &cfg, NULL, 0), AG_OK);
    ck_assert_int_eq(ag_optim_new(&ob, B.ps, &cfg, NULL, 0), AG_OK);
    ag_tape *ta, *tb;
    ck_assert_int_eq(ag_tape_new(&ta, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&tb, NULL), AG_OK);
    sink_calls = 0;
    ck_assert_int_eq(ag_tape_set_grad_sink(tb, &(ag_grad_sink){.consume = count_calls}), AG_OK);
    ag_optim_zero_grad(oa);
    ck_assert_int_eq(ag_backward(ta, net_loss(ta, &A, 0)), AG_OK);
    ck_assert_int_eq(ag_optim_step(oa), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(ob, tb, net_loss(tb, &B, 0)), AG_OK);
    ck_assert(same_bits(ag_params_values(A.ps), ag_params_values(B.ps), ag_params_numel(A.ps), "values"));
    ck_assert_int_eq(sink_calls, 0);
    ck_assert(ag_tape_grad_sink(tb) && ag_tape_grad_sink(tb)->consume == count_calls);
    ag_tape_free(ta);
    ag_tape_free(tb);
    ag_optim_free(oa);
    ag_optim_free(ob);
    net_free(&A);
    net_free(&B);
}
END_TEST

/* ---------------------------------------------------------------- a user's own sink */

typedef struct recorder {
    pthread_mutex_t mu;
    const ag_params *ps;
    ag_real *got;        /* gradient delivered, flat like the store */
    unsigned char *hits; /* deliveries per element */
    int bad;             /* a piece outside its tensor */
    int from_store[16];  /* per parameter index: a piece came from its ->grad (not a GEMM tile) */
    const ag_tensor *refuse[2]; /* accepts() says no to these */
    int asked;                  /* accepts() calls */
    ag_real lambda;             /* record_decay: the decay it must be handed */
    int folded[16];             /* per parameter index: pieces that came through consume_decay */
} recorder;

static int refuse_some(void *ctx, const ag_tensor *x) {
    recorder *r = ctx;
    r->asked++;
    return x != r->refuse[0] && x != r->refuse[1];
}

static void record(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                   size_t ldg, unsigned flags) {
    recorder *r = ctx;
    if (flags & ~(unsigned)AG_SINK_FINITE) r->bad = 1;
    for (size_t i = 0; (flags & AG_SINK_FINITE) && i < rows; i++) /* the promise holds */
        for (size_t j = 0; j < cols; j++)
            if (!isfinite(g[i * ldg + j])) r->bad = 1;
    pthread_mutex_lock(&r->mu);
    size_t base = (size_t)(x->value - ag_params_values((ag_params *)r->ps));
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            size_t e = off + i * ld + j;
            if (e >= x->size || j >= ld) {
                r->bad = 1;
                continue;
            }
            r->got[base + e] = g[i * ldg + j];
            r->hits[base + e]++;
        }
    for (size_t i = 0; i < ag_params_count(r->ps) && i < 16; i++)
        if (ag_params_at(r->ps, i) == x && g >= x->grad && g < x->grad + x->size) r->from_store[i] = 1;
    pthread_mutex_unlock(&r->mu);
}

/* consume_decay: the piece is g + decay * W. Form it as the engine would (g + c * value, the
 * order of the two-pass sum) and record it like any other piece. The weights here are finite and
 * the products bounded, so every such piece must come marked AG_SINK_FINITE. */
static void record_decay(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                         size_t ldg, unsigned flags, ag_real decay) {
    recorder *r = ctx;
    if (decay != r->lambda || !(flags & AG_SINK_FINITE)) r->bad = 1;
    ag_real *sum = malloc(rows * cols * sizeof *sum);
    ck_assert_ptr_nonnull(sum);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) sum[i * cols + j] = g[i * ldg + j] + decay * x->value[off + i * ld + j];
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < ag_params_count(r->ps) && i < 16; i++)
        if (ag_params_at(r->ps, i) == x) r->folded[i] = 1;
    pthread_mutex_unlock(&r->mu);
    record(ctx, x, off, rows, cols, ld, sum, cols, flags);
    free(sum);
}

/* The sink sees exactly ag_backward's gradients, each element once; unreached parameters never.
 * refuse: accepts() turns down a weight whose GEMM would deliver it (Wm) and W1 (with an L2 term on
 * it): neither is delivered, and ->grad holds for them what ag_backward leaves without a sink.
 * fold: the sink has consume_decay, so the weights whose tiles carry the L2 term's lambda W (W1
 * and l2.W, term recorded last) come through it, with lambda, and nothing else does. */
static void sink_matches_backward_fold(size_t K, int threads, double l2, int refuse, int fold) {
    ag_set_threads(threads);
    net A;
    net_init(&A, 300, 256, K, 3);
    net_batch(&A, 0);
    size_t N = ag_params_numel(A.ps);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_params_zero_grad(A.ps);
    ck_assert_int_eq(ag_backward(t, net_loss(t, &A, l2)), AG_OK);
    ag_real *want = malloc(N * sizeof *want);
    ck_assert_ptr_nonnull(want);
    memcpy(want, ag_params_grads(A.ps), N * sizeof *want);
    ag_params_zero_grad(A.ps);

    recorder r = {.ps = A.ps};
    pthread_mutex_init(&r.mu, NULL);
    r.got = calloc(N, sizeof *r.got);
    r.hits = calloc(N, 1);
    ck_assert(r.got && r.hits);
    ag_tape_reset(t);
    if (refuse) {
        r.refuse[0] = A.Wm;
        r.refuse[1] = A.W1;
    }
    r.lambda = (ag_real)l2;
    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = record,
                                                              .ctx = &r,
                                                              .accepts = refuse ? refuse_some : NULL,
                                                              .consume_decay = fold ? record_decay : NULL}),
                     AG_OK);
    ck_assert_int_eq(ag_backward(t, net_loss(t, &A, l2)), AG_OK);
    ck_assert_int_eq(ag_tape_set_grad_sink(t, NULL), AG_OK);
    ck_assert_int_eq(r.bad, 0);
    if (refuse) ck_assert_int_gt(r.asked, 0);
    for (size_t i = 0; i < ag_params_count(A.ps); i++) {
        ag_tensor *x = ag_params_at(A.ps, i);
        size_t base = (size_t)(x->value - ag_params_values(A.ps));
        if (refuse && (x == A.Wm || x == A.W1)) { /* kept in ->grad, exactly as without a sink */
            for (size_t e = 0; e < x->size; e++) ck_assert_int_eq(r.hits[base + e], 0);
            ck_assert_msg(same_bits(want + base, x->grad, x->size, x->name), "refused %s", x->name);
            memset(x->grad, 0, x->size * sizeof(ag_real));
            continue;
        }
        int reached = x != A.U && x != A.V && (x != A.D || l2 != 0);
        for (size_t e = 0; e < x->size; e++)
            ck_assert_msg(r.hits[base + e] == reached, "K %zu threads %d: %s[%zu] delivered %d times", K, threads,
                          x->name, e, r.hits[base + e]);
        if (reached) ck_assert_msg(same_bits(want + base, r.got + base, x->size, x->name), "%s", x->name);
        /* weights whose gradient one product completes come straight from the GEMM, with an L2
         * term recorded last too (its lambda W rides on the tiles); the rest from ->grad: biases,
         * the weight used twice, D (only in the L2 term), and W1 when the L2 term is recorded first
         * and lists it twice (its second lambda W is written before the GEMM runs) */
        int fused = x == A.Wm || x == A.Wa || x == A.l2.W || (x == A.W1 && l2 >= 0);
        if (reached) ck_assert_msg(r.from_store[i] == !fused, "%s: from ->grad %d", x->name, r.from_store[i]);
        int via_decay = fold && l2 > 0 && (x == A.W1 || x == A.l2.W);
        ck_assert_msg(r.folded[i] == via_decay, "%s: through consume_decay %d", x->name, r.folded[i]);
    }
    ck_assert(all_zero(ag_params_grads(A.ps), N));
    pthread_mutex_destroy(&r.mu);
    free(r.got);
    free(r.hits);
    free(want);
    ag_tape_free(t);
    net_free(&A);
    ag_set_threads(1);
}

static void sink_matches_backward_ex(size_t K, int threads, double l2, int refuse) {
    sink_matches_backward_fold(K, threads, l2, refuse, 0);
}

static void sink_matches_backward(size_t K, int threads, double l2) {
    sink_matches_backward_ex(K, threads, l2, 0);
}

/* A sink that adds the L2 term itself sees the same gradients as one that does not. */
START_TEST(user_sink_folds_the_l2_term) {
    sink_matches_backward_fold(1, 1, 1e-3, 0, 1);
    sink_matches_backward_fold(64, 1, 1e-3, 0, 1);
    sink_matches_backward_fold(64, 3, 1e-3, 0, 1);
    sink_matches_backward_fold(5, 1, -1e-3, 0, 1); /* recorded first: nothing to fold */
    sink_matches_backward_fold(64, 2, 0, 0, 1);
    sink_matches_backward_fold(64, 1, 1e-3, 1, 1); /* W1 refused: only l2.W folds */
    if (!ag_test_quick()) sink_matches_backward_fold(700, 2, 1e-3, 0, 1);
}
END_TEST

START_TEST(user_sink_sees_each_gradient_once) {
    sink_matches_backward(1, 1, 0);
    sink_matches_backward(1, 1, 1e-3);
    sink_matches_backward(64, 1, 0);
    sink_matches_backward(64, 3, 1e-3);
    sink_matches_backward(5, 1, -1e-3);
    sink_matches_backward(64, 2, -1e-3);
    sink_matches_backward(64, 3, 0);
    if (!ag_test_quick()) sink_matches_backward(1100, 2, 0);   /* several k blocks on every kernel */
    if (!ag_test_quick()) sink_matches_backward(1100, 1, 1e-3);
}
END_TEST

/* Under a sink, a weight used transposed in ag_matmul_ex (either operand, either flag) has its
 * gradient handed out by the GEMM tile by tile (ag__sink_gemm with the flags of matmul_backward).
 * Each element once, from a tile, equal to the product written out here: with dC = R,
 *   W as a:  dop(W) = R op(X)^T;   W as b:  dop(W) = op(X)^T R;   dW = dop(W), transposed back if
 *   the flag is set, plus lambda W when an L2 term on W is recorded last (it rides on the tiles).
 * The inner size 1100 spans more than one k block (1024 floats, 512 doubles on avx512). */
START_TEST(transposed_weight_operands_under_a_sink) {
    enum { M = 13, KK = 21, NN = 1100 };
    ag_rng rng;
    ag_rng_seed(&rng, 77);
    static ag_real xv[KK * NN], rv[M * NN];
    ag_rng_fill_uniform(&rng, xv, KK * NN, -1, 1);
    ag_rng_fill_uniform(&rng, rv, M * NN, -1, 1);
    for (int threads = 1; threads <= 2; threads++)
        for (int w_is_b = 0; w_is_b <= 1; w_is_b++)
            for (int tw = 0; tw <= 1; tw++)
                for (int tx = 0; tx <= 1; tx++)
                    for (int l2 = 0; l2 <= 1; l2++) {
                        ag_set_threads(threads);
                        /* op(W) is M x KK (W as a) or KK x M (W as b); op(X) the matching KK x NN or NN x KK */
                        const size_t wr = w_is_b ? KK : M, wc = w_is_b ? M : KK; /* op(W) */
                        const size_t xr = w_is_b ? NN : KK, xc = w_is_b ? KK : NN; /* op(X) */
                        ag_params *ps;
                        ag_tensor *W;
                        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
                        const size_t wshape[2] = {tw ? wc : wr, tw ? wr : wc};
                        ck_assert_int_eq(ag_params_add(ps, "W", 2, wshape, AG_DECAY, &W), AG_OK);
                        ag_rng_fill_uniform(&rng, W->value, W->size, -1, 1);
                        const double lambda = l2 ? 0.375 : 0;
                        /* element (i, j) of op(W) / op(X), stored as they are */
#define OPW(i, j) (double)W->value[tw ? (j) * wr + (i) : (i) * wc + (j)]
#define OPX(i, j) (double)xv[tx ? (j) * xr + (i) : (i) * xc + (j)]
                        double *want = calloc(W->size, sizeof *want), *mag = calloc(W->size, sizeof *mag);
                        ck_assert(want && mag);
                        for (size_t i = 0; i < wr; i++)
                            for (size_t j = 0; j < wc; j++) {
                                double s = 0, a = 0;
                                for (size_t q = 0; q < NN; q++) {
                                    /* W as a: C (M x NN) = op(W) op(X), dop(W)_ij = sum_q R_iq op(X)_jq;
                                     * W as b: C (NN x M) = op(X) op(W), dop(W)_ij = sum_q op(X)_qi R_qj */
                                    const double term = w_is_b ? OPX(q, i) * rv[q * M + j] : rv[i * NN + q] * OPX(j, q);
                                    s += term;
                                    a += fabs(term);
                                }
                                const size_t e = tw ? j * wr + i : i * wc + j;
                                want[e] = s + lambda * OPW(i, j);
                                mag[e] = a + fabs(lambda * OPW(i, j));
                            }
#undef OPW
#undef OPX
                        ag_tape *t;
                        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
                        recorder r = {.ps = ps};
                        pthread_mutex_init(&r.mu, NULL);
                        r.got = calloc(ag_params_numel(ps), sizeof *r.got);
                        r.hits = calloc(ag_params_numel(ps), 1);
                        ck_assert(r.got && r.hits);
                        const ag_grad_sink sink = {.consume = record, .ctx = &r};
                        ck_assert_int_eq(ag_tape_set_grad_sink(t, &sink), AG_OK);
                        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){tx ? xc : xr, tx ? xr : xc}, xv);
                        ag_tensor *C = w_is_b ? ag_matmul_ex(t, X, W, tx, tw) : ag_matmul_ex(t, W, X, tw, tx);
                        ck_assert_ptr_nonnull(C);
                        ck_assert_uint_eq(C->size, (size_t)M * NN);
                        ag_tensor *J = ag_sum(t, ag_mul(t, C, ag_tensor_wrap(t, 2, C->shape, rv)));
                        if (l2) J = ag_add(t, J, ag_l2(t, (ag_real)lambda, &W, 1));
                        ck_assert_int_eq(ag_backward(t, J), AG_OK);
                        ck_assert_int_eq(r.bad, 0);
                        ck_assert_msg(!r.from_store[0], "W came from ->grad, not from the GEMM's tiles");
                        char label[96];
                        snprintf(label, sizeof label, "W as %c, trans W %d, trans X %d, l2 %d, threads %d",
                                 w_is_b ? 'b' : 'a', tw, tx, l2, threads);
                        for (size_t e = 0; e < W->size; e++) {
                            ck_assert_msg(r.hits[e] == 1, "%s: W[%zu] delivered %d times", label, e, r.hits[e]);
                            ck_assert_msg(fabs((double)r.got[e] - want[e]) <= 4 * AG_TEST_EXACT_TOL * mag[e],
                                          "%s: dW[%zu] = %.9g, want %.9g", label, e, (double)r.got[e], want[e]);
                        }
                        ck_assert(all_zero(ag_params_grads(ps), ag_params_numel(ps)));
                        pthread_mutex_destroy(&r.mu);
                        free(r.got);
                        free(r.hits);
                        free(want);
                        free(mag);
                        ag_tape_free(t);
                        ag_params_free(ps);
                    }
    ag_set_threads(1);
}
END_TEST

/* ag_grad_sink.accepts: refused parameters stay out of the sweep's deliveries (GEMM tiles and
 * ->grad alike, L2 term included) and keep ag_backward's gradient in ->grad. */
START_TEST(sink_accepts_refuses_parameters) {
    sink_matches_backward_ex(1, 1, 0, 1);
    sink_matches_backward_ex(64, 1, 1e-3, 1);
    sink_matches_backward_ex(64, 3, -1e-3, 1);
    sink_matches_backward_ex(5, 2, 1e-3, 1);
}
END_TEST

/* A consume that runs products of its own (ag_gemm) while the weight's GEMM is still handing out
 * tiles: the inner product must not reuse the scratch the outer one reads (it did: wrong gradients,
 * or a use-after-free when the inner one grew the buffer). */
typedef struct {
    pthread_mutex_t mu;
    ag_real *got;
    const ag_real *w0;
    size_t side; /* the inner product is side^3 */
    ag_real *a, *c;
    int gemm_failed;
} nesting;

static void consume_and_multiply(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                                 const ag_real *g, size_t ldg, unsigned flags) {
    nesting *q = ctx;
    (void)flags;
    pthread_mutex_lock(&q->mu);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++) q->got[(size_t)(x->value - q->w0) + off + r * ld + j] = g[r * ldg + j];
    size_t n = q->side;
    if (ag_gemm(0, 1, n, n, n, 1, q->a, n, q->a, n, 0, q->c, n) != AG_OK) q->gemm_failed = 1;
    pthread_mutex_unlock(&q->mu);
}

START_TEST(consume_may_run_products) {
    const size_t K = 96, IN = 300, OUT = 256;
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *W;
    ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){OUT, IN}, AG_DECAY, &W), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 3);
    ag_rng_fill_normal(&r, W->value, W->size, 0, 0.1);
    ag_real *x = malloc(K * IN * sizeof *x), *want = malloc(W->size * sizeof *want);
    ck_assert(x && want);
    ag_rng_fill_normal(&r, x, K * IN, 0, 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int threads = 1; threads <= 2; threads++) {
        ag_set_threads(threads);
        for (size_t side = 40; side <= (ag_test_quick() ? 40u : 400u); side *= 10) { /* fits; grows the scratch */
            ag_tape_reset(t);
            ag_params_zero_grad(ps);
            ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, IN}, x);
            ag_tensor *z = ag_linear(t, X, W, NULL);
            ck_assert_int_eq(ag_backward(t, ag_mul(t, ag_sum(t, ag_square(t, z)), ag_scalar(t, (ag_real)0.5))),
                             AG_OK);
            memcpy(want, W->grad, W->size * sizeof *want);
            ag_params_zero_grad(ps);

            nesting q = {.w0 = W->value, .side = side};
            pthread_mutex_init(&q.mu, NULL);
            q.got = calloc(W->size, sizeof *q.got);
            q.a = malloc(side * side * sizeof *q.a);
            q.c = malloc(side * side * sizeof *q.c);
            ck_assert(q.got && q.a && q.c);
            ag_rng_fill_normal(&r, q.a, side * side, 0, 1);
            ag_tape_reset(t);
            ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = consume_and_multiply, .ctx = &q}),
                             AG_OK);
            X = ag_tensor_wrap(t, 2, (size_t[]){K, IN}, x);
            z = ag_linear(t, X, W, NULL);
            ck_assert_int_eq(ag_backward(t, ag_mul(t, ag_sum(t, ag_square(t, z)), ag_scalar(t, (ag_real)0.5))),
                             AG_OK);
            ck_assert_int_eq(ag_tape_set_grad_sink(t, NULL), AG_OK);
            ck_assert_int_eq(q.gemm_failed, 0);
            ck_assert_msg(same_bits(want, q.got, W->size, "W"), "threads %d, inner %zu^3", threads, side);
            pthread_mutex_destroy(&q.mu);
            free(q.got);
            free(q.a);
            free(q.c);
        }
    }
    ag_set_threads(1);
    ag_tape_free(t);
    ag_params_free(ps);
    free(x);
    free(want);
}
END_TEST

START_TEST(sink_bad_arguments) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_set_grad_sink(NULL, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = NULL}), AG_ERR_ARG);
    ck_assert_str_eq(ag_tape_errmsg(t), "set_grad_sink: sink has no consume function");
    ag_tape_clear_error(t);
    ck_assert_int_eq(ag_tape_set_grad_sink(t, NULL), AG_OK);
    ag_tape_free(t);

    net A;
    net_init(&A, 4, 5, 2, 1);
    net_batch(&A, 0);
    ag_optim *o;
    ck_assert_int_eq(ag_optim_new(&o, A.ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1}, NULL, 0), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(NULL, NULL, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_optim_backward_step(o, NULL, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    /* a missing loss is the tape's error; nothing is updated and the step does not count */
    ck_assert_int_eq(ag_optim_backward_step(o, t, NULL), AG_ERR_ARG);
    ck_assert_uint_eq(ag_optim_steps(o), 0);
    ck_assert_ptr_nonnull(strstr(ag_optim_errmsg(o), "backward: loss is NULL"));
    /* the store grew after the optimizer was made */
    ag_tensor *extra;
    ck_assert_int_eq(ag_params_add(A.ps, "extra", 1, (size_t[]){3}, 0, &extra), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(o, t, net_loss(t, &A, 0)), AG_ERR_STATE);
    ag_tape_free(t);
    ag_optim_free(o);
    net_free(&A);
}
END_TEST

/* A NaN/Inf gradient skips the pieces that hold it; everything else takes its update. */
START_TEST(nonfinite_gradient_skips_only_its_piece) {
    ag_params *ps;
    ag_tensor *w, *r;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 0, &w), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "r", 1, (size_t[]){2}, 0, &r), AG_OK);
    w->value[0] = 1, w->value[1] = 2, w->value[2] = 3;
    r->value[0] = 0, r->value[1] = 4; /* d sqrt(r)/dr = 1/(2 sqrt r) is inf at r = 0 */
    ag_optim *o;
    ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5}, NULL, 0), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *J = ag_add(t, ag_sum(t, ag_square(t, w)), ag_sum(t, ag_sqrt(t, r)));
    ck_assert_int_eq(ag_optim_backward_step(o, t, J), AG_ERR_NUMERIC);
    ck_assert_str_eq(ag_optim_errmsg(o),
                     "optim: NaN or Inf in the gradient of r: 1 piece(s) of it left unchanged, everything else updated");
    /* w -= 0.5 * 2w = 0 */
    ck_assert(w->value[0] == 0 && w->value[1] == 0 && w->value[2] == 0);
    ck_assert(r->value[0] == 0 && r->value[1] == 4);
    ck_assert_uint_eq(ag_optim_steps(o), 1);
    ck_assert(all_zero(ag_params_grads(ps), ag_params_numel(ps)));
    ag_tape_free(t);
    ag_optim_free(o);
    ag_params_free(ps);
}
END_TEST

/* A parameter whose every piece is skipped for NaN/Inf keeps its value and its optimizer state:
 * with momentum or Adam it must not take the update of a parameter no gradient reached (velocity
 * and decay). Both ways a gradient arrives: a bias whole, a weight tile by tile from the GEMM. */
START_TEST(nonfinite_parameter_keeps_value_and_state) {
    const ag_optim_kind kinds[] = {AG_OPT_MOMENTUM, AG_OPT_ADAM};
    for (int k = 0; k < 2; k++) {
        ag_params *ps;
        ag_tensor *W, *b;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){2, 3}, AG_DECAY, &W), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "b", 1, (size_t[]){2}, 0, &b), AG_OK);
        for (int i = 0; i < 6; i++) W->value[i] = (ag_real)(0.1 * (i + 1));
        b->value[0] = (ag_real)0.5, b->value[1] = (ag_real)-0.5;
        ag_optim *o;
        ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = kinds[k], .lr = 0.1, .weight_decay = 0.01},
                                      NULL, 0),
                         AG_OK);
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_real x[3] = {1, 2, 3};
        for (int step = 0; step < 2; step++) { /* step 0 builds up velocity / moments; step 1 is NaN */
            if (step == 1) x[0] = x[1] = x[2] = (ag_real)NAN;
            ag_real W_before[6], b_before[2];
            memcpy(W_before, W->value, sizeof W_before);
            memcpy(b_before, b->value, sizeof b_before);
            ag_tape_reset(t);
            ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){1, 3}, x);
            ag_tensor *J = ag_sum(t, ag_linear(t, X, W, b));
            ag_status st = ag_optim_backward_step(o, t, J);
            if (step == 0) {
                ck_assert_int_eq(st, AG_OK);
                continue;
            }
            /* dJ/db = 1 is finite, dJ/dW = x is not: b moves, W stays, state and all */
            ck_assert_int_eq(st, AG_ERR_NUMERIC);
            ck_assert_msg(strstr(ag_optim_errmsg(o), "NaN or Inf in the gradient of W"), "%s", ag_optim_errmsg(o));
            ck_assert_msg(memcmp(W_before, W->value, sizeof W_before) == 0, "%s: W moved",
                          k ? "adam" : "momentum");
            ck_assert(b->value[0] != b_before[0] && b->value[1] != b_before[1]);
        }
        ag_tape_free(t);
        ag_optim_free(o);
        ag_params_free(ps);
    }
}
END_TEST

/* An L2 term on a weight holding Inf or NaN, with a product gradient that is finite (J is linear
 * in Z = X W^T): the fused step folds lambda W into the update, and the L2 forward's sum of squares
 * is what proves W finite. Here it cannot, so the update checks g + lambda W itself and skips the
 * weight, as the two-pass step refuses the whole step. */
START_TEST(l2_fold_keeps_nonfinite_weights_out) {
    const double bad[] = {INFINITY, -INFINITY, NAN};
    for (size_t b = 0; b < 3; b++) {
        ag_params *ps;
        ag_tensor *W, *c;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "W", 2, (size_t[]){3, 4}, AG_DECAY, &W), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "c", 1, (size_t[]){2}, 0, &c), AG_OK);
        for (size_t i = 0; i < 12; i++) W->value[i] = (ag_real)(0.1 * (double)i - 0.5);
        W->value[5] = (ag_real)bad[b];
        c->value[0] = 1, c->value[1] = 2;
        ag_real x[5 * 4];
        for (size_t i = 0; i < 20; i++) x[i] = (ag_real)(0.05 * (double)i);
        ag_optim *o;
        ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.5, .momentum = 0.9},
                                      NULL, 0),
                         AG_OK);
        ag_tape *t;
        ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){5, 4}, x);
        ag_tensor *data = ag_sum(t, ag_matmul_ex(t, X, W, 0, 1)); /* recorded before the L2 term */
        ag_tensor *J = ag_add(t, ag_add(t, data, ag_l2(t, 0.01f, &W, 1)), ag_sum(t, ag_square(t, c)));
        ck_assert_ptr_nonnull(J);
        ck_assert_int_eq(ag_optim_backward_step(o, t, J), AG_ERR_NUMERIC);
        ck_assert_str_eq(ag_optim_errmsg(o), "optim: NaN or Inf in the gradient of W: 1 piece(s) of it left "
                                             "unchanged, everything else updated");
        for (size_t i = 0; i < 12; i++)
            if (i != 5) ck_assert(W->value[i] == (ag_real)(0.1 * (double)i - 0.5));
        ck_assert(c->value[0] == 0 && c->value[1] == 0); /* c -= 0.5 * 2c */
        ag_real *v;
        ck_assert_int_eq(ag_optim_state(o, 0, NULL, &v, NULL), AG_OK);
        for (size_t i = 0; i < 12; i++) ck_assert(v[i] == 0); /* W's momentum untouched */
        ag_tape_free(t);
        ag_optim_free(o);
        ag_params_free(ps);
    }
}
END_TEST

/* The numeric check and a sink together: claimed gradients are not scanned, results unchanged. */
START_TEST(sink_with_numeric_check) {
    net A, B;
    net_init(&A, 37, 45, 33, 5);
    net_init(&B, 37, 45, 33, 5);
    ag_optim *oa, *ob;
    ag_optim_config cfg = {.kind = AG_OPT_NESTEROV, .lr = 0.05};
    ck_assert_int_eq(ag_optim_new(&oa, A.ps, &cfg, NULL, 0), AG_OK);
    ck_assert_int_eq(ag_optim_new(&ob, B.ps, &cfg, NULL, 0), AG_OK);
    ag_tape *ta, *tb;
    ck_assert_int_eq(ag_tape_new(&ta, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&tb, NULL), AG_OK);
    ag_tape_set_check_numerics(tb, 1);
    net_batch(&A, 0);
    net_batch(&B, 0);
    ck_assert_int_eq(ag_optim_backward_step(oa, ta, net_loss(ta, &A, 0)), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(ob, tb, net_loss(tb, &B, 0)), AG_OK);
    ck_assert(same_bits(ag_params_values(A.ps), ag_params_values(B.ps), ag_params_numel(A.ps), "values"));
    /* with an L2 term: checked, it is added where it is recorded instead of deferred */
    ag_tape_reset(ta);
    ag_tape_reset(tb);
    ck_assert_int_eq(ag_optim_backward_step(oa, ta, net_loss(ta, &A, 1e-3)), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(ob, tb, net_loss(tb, &B, 1e-3)), AG_OK);
    ck_assert(same_bits(ag_params_values(A.ps), ag_params_values(B.ps), ag_params_numel(A.ps), "values, L2"));
    ag_tape_free(ta);
    ag_tape_free(tb);
    ag_optim_free(oa);
    ag_optim_free(ob);
    net_free(&A);
    net_free(&B);
}
END_TEST

/* A backward that runs out of arena after the L2 term deferred its lambda W (at every point, by
 * growing a caller-owned buffer 64 bytes at a time) leaves no deferred term behind: the next
 * backward gives the reference gradients, and the fused step still takes the tiles. */
START_TEST(failed_backward_drops_deferred_terms) {
    net A;
    net_init(&A, 37, 45, 5, 9);
    net_batch(&A, 0);
    size_t N = ag_params_numel(A.ps);
    static unsigned char mem[1 << 20];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = sizeof mem, .mem_buffer = mem}), AG_OK);
    ag_params_zero_grad(A.ps);
    ck_assert_int_eq(ag_backward(t, net_loss(t, &A, 1e-3)), AG_OK);
    ag_real *want = malloc(N * sizeof *want);
    ck_assert_ptr_nonnull(want);
    memcpy(want, ag_params_grads(A.ps), N * sizeof *want);
    ag_tape_reset(t);
    net_loss(t, &A, 1e-3);
    const size_t forward = ag_tape_mem_used(t);
    ag_tape_free(t);
    int failures = 0;
    for (size_t slack = 0; slack <= 4096; slack += 64) {
        ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = forward + slack, .mem_buffer = mem}), AG_OK);
        ag_params_zero_grad(A.ps);
        ag_tensor *J = net_loss_try(t, &A, 1e-3);
        if (!J) { /* the forward did not fit (the arena's accounting may differ by a block) */
            ag_tape_free(t);
            continue;
        }
        ag_status st = ag_backward(t, J);
        ck_assert(st == AG_OK || st == AG_ERR_NOMEM);
        failures += st != AG_OK;
        for (size_t i = 0; i < ag_params_count(A.ps); i++)
            ck_assert_msg(!(ag__param(ag_params_at(A.ps, i))->sink_flags & AG__GRAD_DEFERRED), "slack %zu: %s still owes a term",
                          slack, ag_params_at(A.ps, i)->name);
        if (st == AG_OK) ck_assert(same_bits(want, ag_params_grads(A.ps), N, "grads after an ample arena"));
        ag_tape_free(t);
    }
    ck_assert_int_gt(failures, 0);
    /* afterwards, on a roomy tape: the two-pass gradients and a sink that sees them */
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_params_zero_grad(A.ps);
    ck_assert_int_eq(ag_backward(t, net_loss(t, &A, 1e-3)), AG_OK);
    ck_assert(same_bits(want, ag_params_grads(A.ps), N, "grads after the failures"));
    ag_tape_free(t);
    free(want);
    net_free(&A);
    sink_matches_backward(5, 1, 1e-3);
}
END_TEST

/* After the first step a fused step allocates nothing. */
START_TEST(fused_steady_state_allocates_nothing) {
    net A;
    net_init(&A, 37, 45, 33, 9);
    ag_optim *o;
    ck_assert_int_eq(ag_optim_new(&o, A.ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 1e-3}, NULL, 0), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int s = 0; s < 5; s++) {
        if (s == 2) ag_test_alloc_install();
        ag_tape_reset(t);
        net_batch(&A, s);
        ck_assert_int_eq(ag_optim_backward_step(o, t, net_loss(t, &A, 1e-3)), AG_OK);
    }
    size_t n = ag_test_alloc_count();
    ag_test_alloc_uninstall();
    ck_assert_uint_eq(n, 0);
    ag_tape_free(t);
    ag_optim_free(o);
    net_free(&A);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("sink");
    TCase *tc = tcase_create("sink");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, fused_step_equals_two_pass_step);
    tcase_add_test(tc, fused_step_any_thread_count);
    tcase_add_test(tc, fused_step_with_clipping);
    tcase_add_test(tc, fused_step_with_another_stores_parameter);
    tcase_add_test(tc, clipping_sets_a_callers_sink_aside);
    tcase_add_test(tc, user_sink_sees_each_gradient_once);
    tcase_add_test(tc, user_sink_folds_the_l2_term);
    tcase_add_test(tc, l2_fold_keeps_nonfinite_weights_out);
    tcase_add_test(tc, sink_bad_arguments);
    tcase_add_test(tc, sink_accepts_refuses_parameters);
    tcase_add_test(tc, transposed_weight_operands_under_a_sink);
    tcase_add_test(tc, consume_may_run_products);
    tcase_add_test(tc, nonfinite_gradient_skips_only_its_piece);
    tcase_add_test(tc, nonfinite_parameter_keeps_value_and_state);
    tcase_add_test(tc, sink_with_numeric_check);
    tcase_add_test(tc, fused_steady_state_allocates_nothing);
    tcase_add_test(tc, failed_backward_drops_deferred_terms);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(suite)

/*
 * test_norm.c - what the op records (tests/ops/records/norm.c) cannot express about the
 * normalisation ops and dropout:
 *   - layer_norm, rms_norm and batch_norm against values computed by PyTorch (float64) on fixed
 *     inputs: forward, input gradients, and batch norm's running-statistics update (unbiased
 *     running_var, momentum 0.1) and evaluation mode;
 *   - AG_STATE parameters: no gradient, every optimizer (two-pass and fused) leaves them unchanged,
 *     and a model trained a few steps with batch norm and dropout, saved and loaded (ag_model_save,
 *     ag_checkpoint_save) evaluates to the same bits;
 *   - dropout's mask: the fraction dropped within binomial bounds, the same mask for the same
 *     (seed, step, stream), independent masks for other streams and steps, the identity in
 *     evaluation mode and for p = 0, gradient m / (1 - p), and no dependence on the thread count.
 * The references were printed by torch 1.13 (F.layer_norm, F.batch_norm, the RMS formula).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/optim.h>

#include "testutil.h"

#ifdef AG_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-5
#endif

/* ---------------------------------------------------------------- against torch */

static const ag_real X[12] = {0.5, -1.0, 2.0, 0.25, 1.5, 0.0, -0.75, 3.0, -2.0, 1.0, 0.5, -0.5};
static const ag_real G[4] = {1.5, -0.5, 2.0, 1.0}, B[4] = {0.1, 0.2, -0.3, 0.4};
static const ag_real DY[12] = {1.0, -2.0, 0.5, 0.25, 0.0, 1.0, -1.0, 2.0, 0.5, 0.5, -0.5, 1.0};

typedef struct fixture {
    ag_tape *t;
    ag_tensor *x, *g, *b;
} fixture;

static fixture fixture_new(void) {
    fixture f;
    ck_assert_int_eq(ag_tape_new(&f.t, NULL), AG_OK);
    f.x = ag_tensor_from(f.t, 2, (size_t[]){3, 4}, X);
    f.g = ag_tensor_from(f.t, 1, (size_t[]){4}, G);
    f.b = ag_tensor_from(f.t, 1, (size_t[]){4}, B);
    ck_assert_int_eq(ag_requires_grad(f.x), AG_OK);
    ck_assert_int_eq(ag_requires_grad(f.g), AG_OK);
    ck_assert_int_eq(ag_requires_grad(f.b), AG_OK);
    return f;
}

static void expect(const char *label, const ag_real *got, const double *want, size_t n) {
    ck_assert_ptr_nonnull(got);
    double d = ag_test_max_abs_diff(label, got, want, n, TOL);
    ck_assert_msg(d <= TOL, "%s: max difference %g from torch", label, d);
}

START_TEST(test_layer_norm_torch) {
    static const double y[12] = {0.18793117048865043, 0.8741389737463201, 2.6310390162883484, 0.22413765902269911,
                                 0.68584868720011838, 0.52547149288895456, -2.643394748800473, 1.8320745687114002,
                                 -2.1912791188121887, -0.34554264733623535, 1.0093023536069647, 0.18178294106550588};
    static const double dx[12] = {0.52537113664010038,  0.10958616503722463,  0.0032236230307043368,
                                  -0.63818092470802912, -0.28832548013784554, 0.36481926942478088,
                                  -0.17653233683111824, 0.10003854754418284,  -0.21821123985725821,
                                  0.21821290245075417,  -0.65465367069372637, 0.65465200810023039};
    static const double dg[4] = {-0.70513892594496252, 2.5911555565436069, 1.5771315400705825, 2.6019664932439812};
    static const double db[4] = {1.5, -0.5, -1, 3.25};
    fixture f = fixture_new();
    ag_tensor *out = ag_layer_norm(f.t, f.x, 1, f.g, f.b, (ag_real)1e-5);
    ck_assert_msg(out != NULL, "%s", ag_tape_errmsg(f.t));
    ck_assert_int_eq(ag_backward_seed(f.t, out, DY), AG_OK);
    expect("layer_norm y", out->value, y, 12);
    expect("layer_norm dx", f.x->grad, dx, 12);
    expect("layer_norm dgamma", f.g->grad, dg, 4);
    expect("layer_norm dbeta", f.b->grad, db, 4);
    ag_tape_free(f.t);
}
END_TEST

START_TEST(test_rms_norm_torch) {
    static const double y[12] = {0.65078892343169215, 0.43385928228779475, 3.470874258302358, 0.21692964114389737,
                                 1.3093051246049214,  -0.0,                -0.87287008306994762, 1.7457401661398952,
                                 -2.5583992930140838, -0.42639988216901398, 0.85279976433802795, -0.42639988216901398};
    static const double dx[12] = {1.1535563827150432,   1.1637614928722717,  0.27563270798222506,
                                  0.14291890906972682,  -0.55420135068534004, -0.29095669435664923,
                                  -0.88672610208392688, 0.055424076055916816, -0.21319373894950921,
                                  0.21319684001700809,  -0.63960137378727044, 0.63960137378727044};
    static const double dg[4] = {-0.41894048205023321, 2.161837011320193, 1.0909536650260565, 3.119312860396751};
    fixture f = fixture_new();
    ag_tensor *out = ag_rms_norm(f.t, f.x, 1, f.g, (ag_real)1e-5);
    ck_assert_msg(out != NULL, "%s", ag_tape_errmsg(f.t));
    ck_assert_int_eq(ag_backward_seed(f.t, out, DY), AG_OK);
    expect("rms_norm y", out->value, y, 12);
    expect("rms_norm dx", f.x->grad, dx, 12);
    expect("rms_norm dgamma", f.g->grad, dg, 4);
    ag_tape_free(f.t);
}
END_TEST

/* x 3 x 4 as N x C: training (batch statistics, running ones updated), then evaluation with the
 * updated running statistics */
START_TEST(test_batch_norm_torch) {
    static const double y[12] = {0.60952348954298741, 0.81236784295419517, 2.2202377064963184,  -0.043078041921179089,
                                 1.6285704686289624,  0.20000000000000001, -2.6719884296435934, 1.7846188810036847,
                                 -1.9380939581719496, -0.4123678429541951, -0.44824927685272464, -0.54154083908250561};
    static const double dx[12] = {0.54871742322813866,  0.3572260567814432,   0.097757732092194821,
                                  -0.38531554469553797, -0.39194168848753363, -0.71442915011322772,
                                  0.11728581947001609,  0.082569783560571652, -0.15677573474060499,
                                  0.3572030933317844,   -0.21504355156221089, 0.30274576113496637};
    static const double dg[4] = {-0.33968232636199158, 3.0618392147709756, 1.8531159606590577, 1.7169274124445693};
    static const double db[4] = {1.5, -0.5, -1, 3.25};
    static const double rm1[4] = {0.45000000000000001, -0.45000000000000001, 0.058333333333333341, 0.9916666666666667};
    static const double rv1[4] = {1.2250000000000001, 1.9000000000000001, 0.63958333333333339, 1.6895833333333334};
    static const double ye[12] = {0.16776281613553523, 0.39950544376661834, 4.555709611216515,  -0.17058147448523811,
                                  1.5230191388462408,  0.036768273281857757, -2.3214756750558023, 1.9450577005723864,
                                  -3.2203779906412291, -0.32596889720290279, 0.80451763688616007, -0.74757397677368109};
    static const double dxe[12] = {1.3552563227107057, 0.72547434096952113, 1.250397324776785,  0.19233083409614768,
                                   0,                  -0.36273717048476056, -2.50079464955357, 1.5386466727691814,
                                   0.67762816135535286, -0.18136858524238028, -1.250397324776785, 0.76932333638459072};
    ag_params *ps;
    ag_tensor *rm, *rv;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "rm", 1, (size_t[]){4}, AG_STATE, &rm), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "rv", 1, (size_t[]){4}, AG_STATE, &rv), AG_OK);
    const ag_real rm0[4] = {0.5, -0.5, 0.0, 1.0}, rv0[4] = {1.0, 2.0, 0.5, 1.5};
    memcpy(rm->value, rm0, sizeof rm0);
    memcpy(rv->value, rv0, sizeof rv0);

    fixture f = fixture_new();
    ag_tensor *out = ag_batch_norm(f.t, f.x, f.g, f.b, rm, rv, (ag_real)0.1, (ag_real)1e-5);
    ck_assert_msg(out != NULL, "%s", ag_tape_errmsg(f.t));
    expect("batch_norm running_mean", rm->value, rm1, 4); /* updated by forward */
    expect("batch_norm running_var", rv->value, rv1, 4);
    ck_assert_int_eq(ag_backward_seed(f.t, out, DY), AG_OK);
    expect("batch_norm y", out->value, y, 12);
    expect("batch_norm dx", f.x->grad, dx, 12);
    expect("batch_norm dgamma", f.g->grad, dg, 4);
    expect("batch_norm dbeta", f.b->grad, db, 4);
    ck_assert(rm->grad == NULL && rv->grad == NULL); /* state: no gradient */
    ag_tape_free(f.t);

    f = fixture_new();
    ck_assert_int_eq(ag_tape_set_training(f.t, 0), 1);
    out = ag_batch_norm(f.t, f.x, f.g, f.b, rm, rv, (ag_real)0.1, (ag_real)1e-5);
    ck_assert_msg(out != NULL, "%s", ag_tape_errmsg(f.t));
    ck_assert_int_eq(ag_backward_seed(f.t, out, DY), AG_OK);
    expect("batch_norm eval y", out->value, ye, 12);
    expect("batch_norm eval dx", f.x->grad, dxe, 12);
    expect("batch_norm eval leaves running_mean", rm->value, rm1, 4);
    expect("batch_norm eval leaves running_var", rv->value, rv1, 4);
    ag_tape_free(f.t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- AG_STATE */

static ag_tensor *sum_of(ag_tape *t, void *x) { return ag_sum(t, x); }

START_TEST(test_state_flag) {
    ag_params *ps;
    ag_tensor *s, *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "s", 1, (size_t[]){3}, AG_STATE, &s), AG_OK);
    ck_assert_uint_eq(s->flags, AG_PARAM | AG_STATE);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, AG_STATE | AG_DECAY, &w), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ag_params_errmsg(ps), "only AG_DECAY or AG_STATE"));
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 1u << 7, &w), AG_ERR_ARG);
    /* a state tensor in an op: no gradient reaches it, the loss still has one through w */
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){3}, 0, &w), AG_OK);
    for (int i = 0; i < 3; i++) s->value[i] = w->value[i] = (ag_real)(i + 1);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, ag_mul(t, s, w))), AG_OK);
    ck_assert_ptr_null(s->grad);
    for (int i = 0; i < 3; i++) ck_assert(w->grad[i] == (ag_real)(i + 1));
    ck_assert(ag_params_grads(ps)[0] == 0); /* s's slice of the flat buffer */
    ag_tape_reset(t); /* a loss of state alone has nothing to differentiate */
    ck_assert_int_eq(ag_backward(t, ag_sum(t, s)), AG_ERR_STATE);
    ag_gradcheck_result res; /* nor can it be gradient-checked */
    ck_assert_int_eq(ag_gradcheck(t, sum_of, s, &s, 1, 1e-3, &res), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ag_tape_errmsg(t), "wrt[0] is state (AG_STATE)"));
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* A small model: z = x W^T + b, batch norm (gamma, beta, running statistics as AG_STATE), relu,
 * dropout, then a linear read-out; squared error against y. */
typedef struct net {
    ag_params *ps;
    ag_tensor *W, *b, *g, *be, *rm, *rv, *V;
} net;

static void net_new(net *n, uint64_t seed) {
    ck_assert_int_eq(ag_params_new(&n->ps), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "W", 2, (size_t[]){6, 3}, AG_DECAY, &n->W), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "b", 1, (size_t[]){6}, 0, &n->b), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "bn.gamma", 1, (size_t[]){6}, 0, &n->g), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "bn.beta", 1, (size_t[]){6}, 0, &n->be), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "bn.running_mean", 1, (size_t[]){6}, AG_STATE, &n->rm), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "bn.running_var", 1, (size_t[]){6}, AG_STATE, &n->rv), AG_OK);
    ck_assert_int_eq(ag_params_add(n->ps, "V", 2, (size_t[]){2, 6}, AG_DECAY, &n->V), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, seed);
    ag_rng_fill_normal(&r, n->W->value, n->W->size, 0, 0.5);
    ag_rng_fill_normal(&r, n->V->value, n->V->size, 0, 0.5);
    for (int i = 0; i < 6; i++) n->g->value[i] = n->rv->value[i] = 1;
}

static ag_real BX[8 * 3], BY[8 * 2];
static void batch_fill(void) {
    ag_rng r;
    ag_rng_seed(&r, 7);
    ag_rng_fill_normal(&r, BX, 24, 0.5, 1);
    ag_rng_fill_normal(&r, BY, 16, 0, 1);
}

static ag_tensor *net_loss(ag_tape *t, net *n, ag_tensor **out) {
    ag_tensor *x = ag_tensor_wrap(t, 2, (size_t[]){8, 3}, BX), *y = ag_tensor_wrap(t, 2, (size_t[]){8, 2}, BY);
    ag_tensor *h = ag_batch_norm(t, ag_linear(t, x, n->W, n->b), n->g, n->be, n->rm, n->rv, (ag_real)0.1, (ag_real)1e-5);
    h = ag_linear(t, ag_dropout(t, ag_relu(t, h), (ag_real)0.25, 1), n->V, NULL);
    if (out) *out = h;
    return ag_squared_error(t, h, y);
}

static ag_real state_before[12];
static void snap_state(const net *n) {
    memcpy(state_before, n->rm->value, 6 * sizeof(ag_real));
    memcpy(state_before + 6, n->rv->value, 6 * sizeof(ag_real));
}
static void expect_state_kept(const net *n, const char *what) {
    ck_assert_msg(memcmp(state_before, n->rm->value, 6 * sizeof(ag_real)) == 0 &&
                      memcmp(state_before + 6, n->rv->value, 6 * sizeof(ag_real)) == 0,
                  "%s changed the running statistics", what);
    ck_assert(n->rm->grad == NULL && n->rv->grad == NULL);
    const ag_real *g = ag_params_grads(n->ps) + (n->rm->value - ag_params_values(n->ps));
    for (int i = 0; i < 6; i++) ck_assert(g[i] == 0); /* its slice of the flat buffer */
}

/* Every optimizer, with weight decay (coupled and decoupled), two-pass and fused: the running
 * statistics change only in forward. */
START_TEST(test_optimizers_leave_state) {
    static const struct {
        ag_optim_kind kind;
        double wd;
        int decoupled;
    } cfgs[] = {{AG_OPT_SGD, 0, 0},   {AG_OPT_SGD, 0.1, 0},  {AG_OPT_MOMENTUM, 0.1, 1}, {AG_OPT_NESTEROV, 0, 0},
                {AG_OPT_ADAM, 0, 0}, {AG_OPT_ADAM, 0.1, 0}, {AG_OPT_ADAMW, 0.1, 1}};
    batch_fill();
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++)
        for (int fused = 0; fused < 2; fused++) {
            net n;
            net_new(&n, 3);
            ag_optim *opt;
            ag_optim_config c = {.kind = cfgs[k].kind, .lr = 0.05, .weight_decay = cfgs[k].wd,
                                 .decoupled = cfgs[k].decoupled, .clip_norm = fused ? 0 : 1.0};
            ck_assert_int_eq(ag_optim_new(&opt, n.ps, &c, NULL, 0), AG_OK);
            ag_tape *t;
            ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
            for (int step = 0; step < 4; step++) {
                ag_tape_reset(t);
                ag_tensor *loss = net_loss(t, &n, NULL);
                ck_assert_msg(loss != NULL, "%s", ag_tape_errmsg(t));
                snap_state(&n);
                if (fused) {
                    ck_assert_int_eq(ag_optim_backward_step(opt, t, loss), AG_OK);
                } else {
                    ck_assert_int_eq(ag_backward(t, loss), AG_OK);
                    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
                    ag_optim_zero_grad(opt);
                }
                expect_state_kept(&n, fused ? "a fused step" : "a step");
            }
            ck_assert(n.rm->value[0] != 0); /* forward did update them */
            ag_tape_free(t);
            ag_optim_free(opt);
            ag_params_free(n.ps);
        }
}
END_TEST

/* Output of the model in evaluation mode on the batch. */
static void eval_net(net *n, ag_real *out) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tape_set_training(t, 0);
    ag_tensor *h;
    ck_assert_ptr_nonnull(net_loss(t, n, &h));
    memcpy(out, h->value, 16 * sizeof(ag_real));
    ag_tape_free(t);
}

/* Train a few steps, save (model file and checkpoint), load into a fresh model: the same outputs
 * in evaluation mode, and one more training step gives the same parameters on both. */
START_TEST(test_model_roundtrip) {
    batch_fill();
    net a, b2, c;
    net_new(&a, 11);
    ag_optim *opt;
    ck_assert_int_eq(ag_optim_new(&opt, a.ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01}, NULL, 0), AG_OK);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tape_set_seed(t, 99);
    for (int step = 0; step < 5; step++) {
        ag_tape_reset(t);
        ck_assert_int_eq(ag_optim_backward_step(opt, t, net_loss(t, &a, NULL)), AG_OK);
    }
    char path[512], ckpath[512], err[AG_IO_ERRMSG_SIZE];
    ag_test_scratch_path(path, sizeof path, "bn.safetensors");
    ag_test_scratch_path(ckpath, sizeof ckpath, "bn.ckpt");
    ck_assert_msg(ag_model_save(path, a.ps, NULL, 0, NULL, 0, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_msg(ag_checkpoint_save(ckpath, &(ag_checkpoint){.params = a.ps, .optim = opt}, err, sizeof err) == AG_OK,
                  "%s", err);

    net_new(&b2, 12); /* other weights, fresh statistics: all replaced by the load */
    ck_assert_msg(ag_model_load(path, b2.ps, NULL, 0, err, sizeof err) == AG_OK, "%s", err);
    ag_real ya[16], yb[16];
    eval_net(&a, ya);
    eval_net(&b2, yb);
    ck_assert_int_eq(memcmp(ya, yb, sizeof ya), 0);
    ck_assert_int_eq(memcmp(a.rv->value, b2.rv->value, 6 * sizeof(ag_real)), 0);
    ck_assert(a.rv->value[0] != 1 && (b2.rv->flags & AG_STATE)); /* trained, and still state */

    net_new(&c, 13); /* the checkpoint: parameters, statistics and optimizer state */
    ag_optim *opt_c;
    ck_assert_int_eq(ag_optim_new(&opt_c, c.ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01}, NULL, 0), AG_OK);
    ck_assert_msg(ag_checkpoint_load(ckpath, &(ag_checkpoint){.params = c.ps, .optim = opt_c}, err, sizeof err) == AG_OK,
                  "%s", err);
    ag_tape *tc;
    ck_assert_int_eq(ag_tape_new(&tc, NULL), AG_OK);
    ag_tape_reset(t);
    ag_tape_set_seed(t, 5); /* the same dropout mask on both tapes */
    ag_tape_set_seed(tc, 5);
    ck_assert_int_eq(ag_optim_backward_step(opt, t, net_loss(t, &a, NULL)), AG_OK);
    ck_assert_int_eq(ag_optim_backward_step(opt_c, tc, net_loss(tc, &c, NULL)), AG_OK);
    ck_assert_int_eq(ag_params_numel(a.ps), ag_params_numel(c.ps));
    ck_assert_int_eq(memcmp(ag_params_values(a.ps), ag_params_values(c.ps), ag_params_numel(a.ps) * sizeof(ag_real)), 0);
    ag_tape_free(tc);
    ag_optim_free(opt_c);
    ag_tape_free(t);
    ag_optim_free(opt);
    ag_params_free(a.ps);
    ag_params_free(b2.ps);
    ag_params_free(c.ps);
    ag_test_scratch_remove();
}
END_TEST

/* ---------------------------------------------------------------- dropout */

enum { DN = 100000 };
static ag_real DXV[DN];

/* dropout of ones (p, stream) on t; the kept count; the mask into keep (if not NULL) */
static size_t drop_ones(ag_tape *t, ag_real p, uint64_t stream, unsigned char *keep) {
    ag_tensor *x = ag_tensor_wrap(t, 1, (size_t[]){DN}, DXV);
    ag_tensor *y = ag_dropout(t, x, p, stream);
    ck_assert_msg(y != NULL, "%s", ag_tape_errmsg(t));
    size_t kept = 0, odd = 0; /* one check at the end: Check's asserts are slow per element */
    const ag_real s = (ag_real)(1.0 / (1.0 - (double)p));
    for (size_t i = 0; i < DN; i++) {
        odd += !(y->value[i] == 0 || y->value[i] == s);
        kept += y->value[i] != 0;
        if (keep) keep[i] = y->value[i] != 0;
    }
    ck_assert_msg(odd == 0, "%zu outputs neither 0 nor 1/(1 - p)", odd);
    return kept;
}

/* |count - n q| within 5 binomial standard deviations */
static void expect_binomial(const char *what, size_t count, size_t n, double q) {
    const double sd = sqrt((double)n * q * (1 - q));
    ck_assert_msg(fabs((double)count - (double)n * q) <= 5 * sd, "%s: %zu of %zu, expected %.0f +- %.0f", what, count,
                  n, (double)n * q, 5 * sd);
}

static unsigned char K1[DN], K2[DN];

START_TEST(test_dropout_mask) {
    for (size_t i = 0; i < DN; i++) DXV[i] = 1;
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    static const ag_real ps[] = {(ag_real)0.1, (ag_real)0.5, (ag_real)0.9};
    for (int k = 0; k < 3; k++) {
        ag_tape_reset(t);
        expect_binomial("kept", drop_ones(t, ps[k], 1, NULL), DN, 1 - (double)ps[k]);
    }
    /* same seed, step and stream: the same mask, from a later step after set_seed too */
    ag_tape_reset(t);
    ag_tape_set_seed(t, 42);
    drop_ones(t, (ag_real)0.5, 3, K1);
    for (int r = 0; r < 3; r++) ag_tape_reset(t);
    ag_tape_set_seed(t, 42);
    drop_ones(t, (ag_real)0.5, 3, K2);
    ck_assert_int_eq(memcmp(K1, K2, DN), 0);
    /* the documented key: element i dropped iff (ag_rng_counter(42, 0, 3, i) >> 11) 2^-53 < p */
    size_t differ = 0;
    for (size_t i = 0; i < DN; i++) differ += K1[i] != ((double)(ag_rng_counter(42, 0, 3, i) >> 11) * 0x1.0p-53 >= 0.5);
    ck_assert_uint_eq(differ, 0);
    /* another stream, another step, another seed: independent masks (both kept ~ 1/4) */
    size_t both = 0;
    drop_ones(t, (ag_real)0.5, 4, K2);
    for (size_t i = 0; i < DN; i++) both += K1[i] && K2[i];
    expect_binomial("kept by streams 3 and 4", both, DN, 0.25);
    ag_tape_reset(t); /* step 1 of seed 42 */
    drop_ones(t, (ag_real)0.5, 3, K2);
    both = 0;
    for (size_t i = 0; i < DN; i++) both += K1[i] && K2[i];
    expect_binomial("kept at steps 0 and 1", both, DN, 0.25);
    ag_tape_reset(t);
    ag_tape_set_seed(t, 43);
    drop_ones(t, (ag_real)0.5, 3, K2);
    both = 0;
    for (size_t i = 0; i < DN; i++) both += K1[i] && K2[i];
    expect_binomial("kept by seeds 42 and 43", both, DN, 0.25);
    /* recording order does not matter: a stream's mask is the same after other ops and draws */
    ag_tape_reset(t);
    ag_tape_set_seed(t, 42);
    drop_ones(t, (ag_real)0.3, 9, NULL);
    ag_sum(t, ag_scalar(t, 1));
    drop_ones(t, (ag_real)0.5, 3, K2);
    ck_assert_int_eq(memcmp(K1, K2, DN), 0);
    /* nor on the thread count */
    const int threads = ag_get_threads();
    ck_assert_int_eq(ag_set_threads(3), AG_OK);
    ag_tape_reset(t);
    ag_tape_set_seed(t, 42);
    drop_ones(t, (ag_real)0.5, 3, K2);
    ck_assert_int_eq(memcmp(K1, K2, DN), 0);
    ck_assert_int_eq(ag_set_threads(threads), AG_OK);
    ag_tape_free(t);
}
END_TEST

START_TEST(test_dropout_grad_and_identity) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real xv[64], dy[64];
    for (int i = 0; i < 64; i++) {
        xv[i] = (ag_real)(i % 7 - 3) + (ag_real)0.5;
        dy[i] = (ag_real)(i % 5 + 1);
    }
    const ag_real p = (ag_real)0.3, s = (ag_real)(1.0 / (1.0 - (double)p));
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){8, 8}, xv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *y = ag_dropout(t, x, p, 5);
    ck_assert_int_eq(ag_backward_seed(t, y, dy), AG_OK);
    size_t dropped = 0;
    for (int i = 0; i < 64; i++) {
        const int kept = y->value[i] != 0;
        dropped += !kept;
        ck_assert(y->value[i] == (kept ? xv[i] * s : 0));
        ck_assert(x->grad[i] == (kept ? dy[i] * s : 0)); /* dx = dy m / (1 - p) */
    }
    ck_assert(dropped > 0 && dropped < 64);
    /* evaluation mode and p = 0: the identity, a view of x, gradient dy */
    for (int mode = 0; mode < 2; mode++) {
        ag_tape_reset(t);
        ck_assert_int_eq(ag_tape_set_training(t, mode == 1), mode == 0 ? 1 : 0);
        x = ag_tensor_from(t, 2, (size_t[]){8, 8}, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        y = ag_dropout(t, x, mode == 0 ? (ag_real)0.5 : 0, 5);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_eq(y->value, x->value);
        ck_assert_int_eq(ag_backward_seed(t, y, dy), AG_OK);
        for (int i = 0; i < 64; i++) ck_assert(x->grad[i] == dy[i]);
    }
    ag_tape_free(t);
}
END_TEST

START_TEST(test_rng_counter) {
    /* a pure function; its key is splitmix64's sequence: consecutive indices differ, bits balanced */
    ck_assert(ag_rng_counter(1, 2, 3, 4) == ag_rng_counter(1, 2, 3, 4));
    const uint64_t v = ag_rng_counter(1, 2, 3, 4);
    ck_assert(v != ag_rng_counter(0, 2, 3, 4) && v != ag_rng_counter(1, 3, 3, 4) && v != ag_rng_counter(1, 2, 4, 4) &&
              v != ag_rng_counter(1, 2, 3, 5) && v != ag_rng_counter(2, 1, 3, 4));
    size_t ones = 0;
    for (uint64_t i = 0; i < 4096; i++) {
        uint64_t h = ag_rng_counter(0, 0, 0, i);
        while (h) {
            ones += h & 1;
            h >>= 1;
        }
    }
    expect_binomial("one bits", ones, 4096 * 64, 0.5);
}
END_TEST

static Suite *norm_suite(void) {
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("torch");
    tcase_add_test(tc, test_layer_norm_torch);
    tcase_add_test(tc, test_rms_norm_torch);
    tcase_add_test(tc, test_batch_norm_torch);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_state_flag);
    tcase_add_test(tc, test_optimizers_leave_state);
    tcase_add_test(tc, test_model_roundtrip);
    suite_add_tcase(s, tc);
    tc = tcase_create("dropout");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dropout_mask);
    tcase_add_test(tc, test_dropout_grad_and_identity);
    tcase_add_test(tc, test_rng_counter);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(norm_suite)

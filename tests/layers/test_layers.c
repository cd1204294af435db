/*
 * test_layers.c - dense layers and MLPs: initialisers (statistics, seeded reproducibility),
 * spec parsing and its messages, forward values and errors, the cross-entropy cost's gradient,
 * and XOR trained to 100% within a fixed seeded budget with bit-identical weights per seed.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/kernels.h" /* ag__threads_shutdown: GEMM packing scratch is kept between calls */
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "testutil.h"

/* ---------------------------------------------------------------- initialisers */

static void stats(const ag_real *x, size_t n, double *mean, double *std, double *maxabs) {
    double s = 0, s2 = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)x[i];
        s2 += (double)x[i] * (double)x[i];
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
    *maxabs = m;
}

START_TEST(initialiser_statistics) {
    const size_t in = 300, out = 200; /* 60000 weights: std within ~1% */
    const struct { ag_init init; double std; } cases[] = {
        {AG_INIT_SMALL_GAUSS, 0.01},
        {AG_INIT_GLOROT_NORMAL, 0.0632455532}, /* sqrt(2/500) */
        {AG_INIT_GLOROT_UNIFORM, 0.0632455532},
        {AG_INIT_HE_NORMAL, 0.0816496581}, /* sqrt(2/300) */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ag_params *ps;
        ag_params_new(&ps);
        ag_dense d;
        ck_assert_int_eq(ag_dense_init(&d, ps, "fc", in, out, AG_ACT_RELU), AG_OK);
        ck_assert_uint_eq(d.W->shape[0], out); /* W^(l) is s_{l+1} x s_l */
        ck_assert_uint_eq(d.W->shape[1], in);
        ck_assert(d.W->flags & AG_DECAY);
        ck_assert(!(d.b->flags & AG_DECAY));
        ck_assert_str_eq(d.W->name, "fc.W");
        ck_assert_str_eq(d.b->name, "fc.b");
        d.b->value[3] = 7; /* init resets biases to zero */
        ag_rng r;
        ag_rng_seed(&r, 123);
        ck_assert_int_eq(ag_dense_init_weights(&d, cases[c].init, &r), AG_OK);
        ck_assert_double_eq_tol(ag_init_std(cases[c].init, in, out), cases[c].std, 1e-9);
        double mean, std, maxabs;
        stats(d.W->value, d.W->size, &mean, &std, &maxabs);
        ck_assert_msg(fabs(mean) < 0.02 * cases[c].std * 3, "init %d: mean %g", (int)cases[c].init, mean);
        ck_assert_msg(fabs(std / cases[c].std - 1) < 0.02, "init %d: std %g, want %g", (int)cases[c].init, std,
                      cases[c].std);
        if (cases[c].init == AG_INIT_GLOROT_UNIFORM) /* U(-r, r), r = sqrt(6/(in+out)) = 0.1095445 */
            ck_assert_double_le(maxabs, 0.10954451150103323);
        else
            ck_assert_double_gt(maxabs, 3 * cases[c].std); /* a normal has tails; a uniform has not */
        for (size_t i = 0; i < d.b->size; i++) ck_assert_double_eq(d.b->value[i], 0);
        ag_params_free(ps);
    }
}
END_TEST

static ag_params *mlp_store(const char *spec, uint64_t seed, ag_init init, ag_mlp **m) {
    ag_params *ps;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_mlp_config cfg = {.spec = spec, .hidden = AG_ACT_TANH, .output = AG_ACT_IDENTITY, .init = init, .seed = seed};
    ck_assert_msg(ag_mlp_new(m, ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    return ps;
}

START_TEST(same_seed_same_weights) {
    const ag_init inits[] = {AG_INIT_SMALL_GAUSS, AG_INIT_GLOROT_NORMAL, AG_INIT_GLOROT_UNIFORM, AG_INIT_HE_NORMAL};
    for (size_t i = 0; i < 4; i++) {
        ag_mlp *m1, *m2, *m3;
        ag_params *p1 = mlp_store("13-17-5", 42, inits[i], &m1), *p2 = mlp_store("13-17-5", 42, inits[i], &m2),
                  *p3 = mlp_store("13-17-5", 43, inits[i], &m3);
        size_t n = ag_params_numel(p1);
        ck_assert_uint_eq(n, ag_params_numel(p2));
        ck_assert_int_eq(memcmp(ag_params_values(p1), ag_params_values(p2), n * sizeof(ag_real)), 0);
        ck_assert_int_ne(memcmp(ag_params_values(p1), ag_params_values(p3), n * sizeof(ag_real)), 0);
        /* every layer drew its own weights */
        ck_assert(m1->layers[0].W->value[0] != m1->layers[1].W->value[0]);
        ck_assert_str_eq(m1->layers[1].W->name, "fc2.W");
        ag_mlp_free(m1);
        ag_mlp_free(m2);
        ag_mlp_free(m3);
        ag_params_free(p1);
        ag_params_free(p2);
        ag_params_free(p3);
    }
    /* the weights of a seed are pinned: the same on every machine and build (first two of fc1.W,
     * Glorot normal 2-3-1, seed 7: std sqrt(2/5) times the library's normals) */
    ag_mlp *m;
    ag_params *ps = mlp_store("2-3-1", 7, AG_INIT_GLOROT_NORMAL, &m);
    ag_rng r;
    ag_rng_seed(&r, 7);
    double n0 = ag_rng_normal(&r), n1 = ag_rng_normal(&r);
    ck_assert(m->layers[0].W->value[0] == (ag_real)(0.0 + sqrt(0.4) * n0));
    ck_assert(m->layers[0].W->value[1] == (ag_real)(0.0 + sqrt(0.4) * n1));
    ag_mlp_free(m);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- spec parsing */

static void expect_spec_error(const char *spec, const char *msg, int via_mlp) {
    size_t sizes[8], n = 99;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_mlp_parse_spec(spec, sizes, 8, &n, err, sizeof err), AG_ERR_ARG);
    ck_assert_str_eq(err, msg);
    ck_assert_uint_eq(n, 0);
    if (!via_mlp) return;
    /* ag_mlp_new reports the same and leaves nothing behind */
    ag_params *ps;
    ag_params_new(&ps);
    ag_mlp *m = (ag_mlp *)&n;
    char err2[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = spec}, err2, sizeof err2), AG_ERR_ARG);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(err2, msg);
    ck_assert_uint_eq(ag_params_count(ps), 0);
    ag_params_free(ps);
}

START_TEST(spec_parsing) {
    size_t sizes[8], n;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_mlp_parse_spec("784-256-10", sizes, 8, &n, err, sizeof err), AG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(sizes[0], 784);
    ck_assert_uint_eq(sizes[1], 256);
    ck_assert_uint_eq(sizes[2], 10);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(ag_mlp_parse_spec("1-1", sizes, 8, &n, NULL, 0), AG_OK);
    ck_assert_uint_eq(n, 2);

    expect_spec_error("784--10", "mlp: spec \"784--10\" has an empty layer size at position 4", 1);
    expect_spec_error("-784-10", "mlp: spec \"-784-10\" has an empty layer size at position 0", 1);
    expect_spec_error("784-10-", "mlp: spec \"784-10-\" has an empty layer size at position 7", 1);
    expect_spec_error("784-2x6-10", "mlp: spec \"784-2x6-10\" has 'x' at position 5, expected a digit or '-'", 1);
    expect_spec_error("784 - 10", "mlp: spec \"784 - 10\" has ' ' at position 3, expected a digit or '-'", 1);
    expect_spec_error("784-0-10", "mlp: spec \"784-0-10\" has a zero layer size at position 4", 1);
    expect_spec_error("784", "mlp: spec \"784\" needs at least two sizes (input and output), e.g. \"784-10\"", 1);
    expect_spec_error("", "mlp: spec \"\" is empty", 1);
    expect_spec_error(NULL, "mlp: spec is NULL", 1);
    expect_spec_error("99999999999999999999999-2",
                      "mlp: spec \"99999999999999999999999-2\" has a layer size above 1073741824 at position 0", 1);
    expect_spec_error("1-2-3-4-5-6-7-8-9", "mlp: spec \"1-2-3-4-5-6-7-8-9\" has more than 8 layer sizes", 0);
}
END_TEST

START_TEST(mlp_config_errors) {
    ag_params *ps;
    ag_params_new(&ps);
    ag_mlp *m;
    char err[AG_ERRMSG_SIZE];
    ag_act acts[2] = {AG_ACT_RELU, AG_ACT_SIGMOID};
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "4-3-2-1", .acts = acts, .n_acts = 2}, err,
                                sizeof err),
                     AG_ERR_ARG);
    ck_assert_str_eq(err, "mlp: 2 activations given for the 3 layers of \"4-3-2-1\"");
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "4-3", .output = (ag_act)17}, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_str_eq(err, "mlp: layer 1 has unknown activation 17");
    /* a name clash in the store is reported with the store's message */
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "4-3"}, err, sizeof err), AG_OK);
    ag_mlp *m2;
    ck_assert_int_eq(ag_mlp_new(&m2, ps, &(ag_mlp_config){.spec = "3-2"}, err, sizeof err), AG_ERR_ARG);
    ck_assert_str_eq(err, "mlp: layer 1 (3 -> 2): params_add: name fc1.W is already used");
    ck_assert_int_eq(ag_mlp_new(&m2, ps, &(ag_mlp_config){.spec = "3-2", .prefix = "dec"}, err, sizeof err), AG_OK);
    ck_assert_ptr_nonnull(ag_params_find(ps, "dec1.b"));
    /* per-layer activations */
    ag_mlp *m3;
    ck_assert_int_eq(ag_mlp_new(&m3, ps, &(ag_mlp_config){.spec = "2-3-2", .acts = acts, .n_acts = 2, .prefix = "x"},
                                err, sizeof err),
                     AG_OK);
    ck_assert_int_eq(m3->layers[0].act, AG_ACT_RELU);
    ck_assert_int_eq(m3->layers[1].act, AG_ACT_SIGMOID);
    ag_mlp_free(m);
    ag_mlp_free(m2);
    ag_mlp_free(m3);
    ag_params_free(ps);
}
END_TEST

START_TEST(activation_names) {
    ag_act a;
    const ag_act all[] = {AG_ACT_IDENTITY, AG_ACT_SIGMOID, AG_ACT_TANH, AG_ACT_RELU};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ag_act_parse(ag_act_name(all[i]), &a), AG_OK);
        ck_assert_int_eq(a, all[i]);
    }
    ck_assert_int_eq(ag_act_parse("linear", &a), AG_OK);
    ck_assert_int_eq(a, AG_ACT_IDENTITY);
    ck_assert_int_eq(ag_act_parse("softplus", &a), AG_ERR_ARG);
    ck_assert_str_eq(ag_act_name((ag_act)9), "?");
}
END_TEST

/* ---------------------------------------------------------------- forward */

/* A 3 -> 2 relu layer with W = [[1, -1, 2], [0.5, 0, -3]], b = [0.25, -1], in a new store *ps. */
static void hand_dense(ag_params **ps, ag_dense *d) {
    ck_assert_int_eq(ag_params_new(ps), AG_OK);
    ck_assert_int_eq(ag_dense_init(d, *ps, "l", 3, 2, AG_ACT_RELU), AG_OK);
    const ag_real W[6] = {1, -1, 2, 0.5f, 0, -3}, b[2] = {0.25f, -1};
    memcpy(d->W->value, W, sizeof W);
    memcpy(d->b->value, b, sizeof b);
}

START_TEST(dense_forward_values_and_errors) {
    ag_params *ps;
    ag_dense d;
    hand_dense(&ps, &d);
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_real x[6] = {1, 2, 3, -1, 0, 1}; /* K = 2 */
    ag_tensor *z, *a = ag_dense_forward(t, &d, ag_tensor_wrap(t, 2, (size_t[]){2, 3}, x), &z);
    ck_assert_ptr_nonnull(a);
    /* z row 0 = {1 - 2 + 6 + 0.25, 0.5 - 9 - 1} = {5.25, -9.5};  row 1 = {-1 + 2 + 0.25, -0.5 - 3 - 1} = {1.25, -4.5} */
    const double zw[4] = {5.25, -9.5, 1.25, -4.5}, aw[4] = {5.25, 0, 1.25, 0};
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq_tol(z->value[i], zw[i], 1e-6);
        ck_assert_double_eq_tol(a->value[i], aw[i], 1e-6);
    }
    /* identity records nothing after z */
    d.act = AG_ACT_IDENTITY;
    ag_tensor *z2, *a2 = ag_dense_forward(t, &d, ag_tensor_wrap(t, 2, (size_t[]){2, 3}, x), &z2);
    ck_assert_ptr_eq(a2, z2);
    /* a wrong input width is named */
    ck_assert_ptr_null(ag_dense_forward(t, &d, ag_tensor_new(t, 2, (size_t[]){2, 4}), &z));
    ck_assert_ptr_null(z);
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), "dense l: x is 2x4, expected K x 3");
    ag_tape_clear_error(t);
    ck_assert_ptr_null(ag_dense_forward(t, &d, NULL, NULL));
    ck_assert_str_eq(ag_tape_errmsg(t), "dense l: x is NULL");
    /* the store's message on a clash */
    ag_dense d2;
    ck_assert_int_eq(ag_dense_init(&d2, ps, "l", 3, 2, AG_ACT_RELU), AG_ERR_ARG);
    ck_assert_str_eq(ag_params_errmsg(ps), "params_add: name l.W is already used");
    ck_assert_int_eq(ag_dense_init(&d2, ps, "z", 0, 2, AG_ACT_RELU), AG_ERR_SHAPE);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

START_TEST(mlp_forward_returns_every_layer) {
    ag_mlp *m;
    ag_params *ps = mlp_store("3-4-5-2", 1, AG_INIT_GLOROT_UNIFORM, &m);
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_real x[3 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ag_tensor *z[3], *a[3];
    ag_tensor *h = ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){3, 3}, x), z, a);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_eq(h, a[2]);
    ck_assert_ptr_eq(a[2], z[2]); /* identity output */
    ck_assert_uint_eq(z[0]->shape[1], 4);
    ck_assert_uint_eq(z[1]->shape[1], 5);
    for (size_t i = 0; i < z[0]->size; i++) ck_assert_double_eq_tol(a[0]->value[i], tanh(z[0]->value[i]), 1e-6);
    ck_assert_ptr_null(ag_mlp_forward(t, m, ag_tensor_new(t, 2, (size_t[]){3, 2}), NULL, NULL));
    ck_assert_str_eq(ag_tape_errmsg(t), "mlp: x is 3x2 but the model expects K x 3 inputs");
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* Which activation each layer gets: hidden for every layer but the last, output for the last, or
 * acts[i] for layer i; and a = f(z) layer by layer in the forward. */
START_TEST(mlp_assigns_activations_per_layer) {
    ag_params *ps;
    ag_params_new(&ps);
    ag_mlp *m;
    char err[256];
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "2-3-4-5-1", .hidden = AG_ACT_RELU,
                                                         .output = AG_ACT_SIGMOID, .seed = 3}, err, sizeof err),
                     AG_OK);
    ck_assert_uint_eq(m->n_layers, 4);
    for (size_t i = 0; i < 3; i++) ck_assert_int_eq(m->layers[i].act, AG_ACT_RELU);
    ck_assert_int_eq(m->layers[3].act, AG_ACT_SIGMOID);
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_real x[2 * 2] = {0.5f, -1, 2, 0.25f};
    ag_tensor *z[4], *a[4];
    ck_assert_ptr_nonnull(ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){2, 2}, x), z, a));
    for (size_t l = 0; l < 4; l++)
        for (size_t i = 0; i < z[l]->size; i++) {
            double v = z[l]->value[i], want = l < 3 ? (v > 0 ? v : 0) : 1 / (1 + exp(-v));
            ck_assert_double_eq_tol(a[l]->value[i], want, 1e-6);
        }
    ag_mlp_free(m);
    const ag_act acts[3] = {AG_ACT_SIGMOID, AG_ACT_IDENTITY, AG_ACT_TANH};
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "2-3-4-1", .hidden = AG_ACT_RELU, .acts = acts,
                                                         .n_acts = 3, .prefix = "q"}, err, sizeof err),
                     AG_OK);
    for (size_t i = 0; i < 3; i++) ck_assert_int_eq(m->layers[i].act, acts[i]);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

#define ULP AG_TEST_ULP

/* The fused path (no z asked for: one linear_act node) and ag_activate, against f of the z worked out
 * by hand in dense_forward_values_and_errors: z = {5.25, -9.5, 1.25, -4.5}. */
START_TEST(dense_fused_forward_and_activate_values) {
    ag_params *ps;
    ag_dense d;
    hand_dense(&ps, &d);
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_real x[6] = {1, 2, 3, -1, 0, 1};
    const double z[4] = {5.25, -9.5, 1.25, -4.5};
    const ag_act acts[] = {AG_ACT_IDENTITY, AG_ACT_SIGMOID, AG_ACT_TANH, AG_ACT_RELU};
    for (int k = 0; k < 4; k++) {
        double want[4];
        for (int i = 0; i < 4; i++)
            want[i] = acts[k] == AG_ACT_SIGMOID ? 1 / (1 + exp(-z[i]))
                      : acts[k] == AG_ACT_TANH  ? tanh(z[i])
                      : acts[k] == AG_ACT_RELU  ? (z[i] > 0 ? z[i] : 0)
                                                : z[i];
        ag_tape_reset(t);
        d.act = acts[k];
        size_t n0 = ag_tape_node_count(t);
        ag_tensor *a = ag_dense_forward(t, &d, ag_tensor_wrap(t, 2, (size_t[]){2, 3}, x), NULL);
        ck_assert_ptr_nonnull(a);
        ck_assert_uint_eq(ag_tape_node_count(t), n0 + 2); /* the leaf and one node (linear_act or linear) */
        ag_tensor *zt = ag_tensor_from(t, 2, (size_t[]){2, 2}, (ag_real[]){5.25f, -9.5f, 1.25f, -4.5f});
        ag_tensor *a2 = ag_activate(t, acts[k], zt);
        ck_assert_ptr_nonnull(a2);
        if (acts[k] == AG_ACT_IDENTITY) ck_assert_ptr_eq(a2, zt);
        for (int i = 0; i < 4; i++) {
            ck_assert_msg(fabs((double)a->value[i] - want[i]) <= 4 * ULP * fabs(want[i]), "%s: a[%d] = %.9g, want %.9g",
                          ag_act_name(acts[k]), i, (double)a->value[i], want[i]);
            ck_assert_msg(fabs((double)a2->value[i] - want[i]) <= 4 * ULP * fabs(want[i]), "activate %s: [%d] = %.9g, want %.9g",
                          ag_act_name(acts[k]), i, (double)a2->value[i], want[i]);
        }
    }
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* More weights than one ag_l2 node takes (AG_MAX_IN = 64): ag_l2_decay and the costs split them into
 * several nodes. n_w weights (AG_DECAY) with a bias (never decayed) after every fifth; the L2 term
 * must be lambda/2 sum over exactly the listed weights and its gradient lambda W on each, 0 elsewhere.
 * 64 and 128 fill the chunks exactly, 65 and 130 leave one of 1 and 2. */
static ag_params *many_weights(size_t n_w, ag_tensor **w, ag_tensor **bias, size_t *n_b) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 17 + n_w);
    *n_b = 0;
    for (size_t i = 0; i < n_w; i++) {
        char name[32];
        snprintf(name, sizeof name, "w%zu", i);
        ck_assert_int_eq(ag_params_add(ps, name, 1, (size_t[]){1 + i % 3}, AG_DECAY, &w[i]), AG_OK);
        if (i % 5 == 4) {
            snprintf(name, sizeof name, "b%zu", i);
            ck_assert_int_eq(ag_params_add(ps, name, 1, (size_t[]){2}, 0, &bias[(*n_b)++]), AG_OK);
        }
    }
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *p = ag_params_at(ps, i);
        ag_rng_fill_normal(&r, p->value, p->size, 0, 1);
    }
    return ps;
}

static double sum_sq(ag_tensor *const *w, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < w[i]->size; j++) s += (double)w[i]->value[j] * w[i]->value[j];
    return s;
}

/* every listed weight holds lambda W + extra, every other parameter 0 */
static void check_l2_grads(ag_params *ps, ag_tensor *const *w, size_t n_listed, double lambda, const char *what) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *p = ag_params_at(ps, i);
        size_t k = 0;
        while (k < n_listed && w[k] != p) k++;
        for (size_t j = 0; j < p->size; j++) {
            const double want = k < n_listed ? lambda * p->value[j] : 0;
            ck_assert_msg(fabs((double)p->grad[j] - want) <= 4 * ULP * fabs(want),
                          "%s: %s[%zu] gradient %.9g, want %.9g", what, p->name, j, (double)p->grad[j], want);
        }
    }
}

START_TEST(l2_terms_beyond_one_node) {
    const size_t counts[] = {64, 65, 128, 130};
    const double lambda = 0.3;
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (size_t c = 0; c < 4; c++) {
        const size_t n_w = counts[c];
        ag_tensor *w[130], *bias[26];
        size_t n_b;
        ag_params *ps = many_weights(n_w, w, bias, &n_b);
        ck_assert_uint_gt(n_b, 0);
        char what[64];
        /* ag_l2_decay: every AG_DECAY tensor of the store */
        ag_tape_reset(t);
        ag_params_zero_grad(ps);
        ag_tensor *L = ag_l2_decay(t, (ag_real)lambda, ps);
        ck_assert_ptr_nonnull(L);
        const double all = 0.5 * lambda * sum_sq(w, n_w);
        ck_assert_msg(fabs((double)L->value[0] - all) <= 8 * ULP * all, "l2_decay %zu: %.9g, want %.9g", n_w,
                      (double)L->value[0], all);
        ck_assert_int_eq(ag_backward(t, L), AG_OK);
        snprintf(what, sizeof what, "l2_decay of %zu", n_w);
        check_l2_grads(ps, w, n_w, lambda, what);
        /* the costs: squared error of a row h = (1, 2) against y = (0, 0) is 5/2, plus the L2 term of
         * the first n - 1 weights (the last one must stay out) */
        for (int ce = 0; ce <= 1; ce++) {
            const size_t n = n_w - 1;
            ag_tape_reset(t);
            ag_params_zero_grad(ps);
            ag_tensor *h = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
            ag_tensor *y = ag_tensor_new(t, 1, (size_t[]){2}); /* zeros */
            ag_tensor *J = ce ? ag_cost_cross_entropy_l2(t, h, (int32_t[]){1}, (ag_real)lambda, w, n)
                              : ag_cost_squared_error_l2(t, h, y, (ag_real)lambda, w, n);
            ck_assert_ptr_nonnull(J);
            /* cross-entropy of logits (1, 2), label 1: log(e + e^2) - 2 = log(1 + e^-1) */
            const double data = ce ? log(1 + exp(-1.0)) : 2.5, want = data + 0.5 * lambda * sum_sq(w, n);
            ck_assert_msg(fabs((double)J->value[0] - want) <= 8 * ULP * want, "%s of %zu: %.9g, want %.9g",
                          ce ? "cross_entropy_l2" : "squared_error_l2", n, (double)J->value[0], want);
            ck_assert_int_eq(ag_backward(t, J), AG_OK);
            snprintf(what, sizeof what, "%s of %zu", ce ? "cross_entropy_l2" : "squared_error_l2", n);
            check_l2_grads(ps, w, n, lambda, what);
        }
        ag_params_free(ps);
    }
    /* lambda = 0 records no L2 term: only the data node */
    ag_tensor *w[65], *bias[13];
    size_t n_b;
    ag_params *ps = many_weights(65, w, bias, &n_b);
    ag_tape_reset(t);
    ag_tensor *h = ag_tensor_from(t, 1, (size_t[]){2}, (ag_real[]){1, 2});
    size_t n0 = ag_tape_node_count(t);
    ag_tensor *J = ag_cost_cross_entropy_l2(t, h, (int32_t[]){0}, 0, w, 65);
    ck_assert_ptr_nonnull(J);
    ck_assert_uint_eq(ag_tape_node_count(t), n0 + 1);
    ck_assert_double_le(fabs((double)J->value[0] - log(1 + exp(1.0))), 8 * ULP * 2);
    ag_params_free(ps);
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- costs */

typedef struct {
    ag_mlp *m;
    ag_real *x;
    int32_t *labels;
    size_t K;
    ag_real lambda;
} xent_ctx;

static ag_tensor *xent_loss(ag_tape *t, void *p) {
    xent_ctx *c = p;
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){c->K, c->m->sizes[0]}, c->x);
    return ag_mlp_cost_cross_entropy(t, c->m, ag_mlp_forward(t, c->m, X, NULL, NULL), c->labels, c->lambda);
}

START_TEST(cross_entropy_cost_gradcheck) {
    ag_mlp *m;
    ag_params *ps = mlp_store("4-6-3", 9, AG_INIT_GLOROT_NORMAL, &m);
    ag_rng r;
    ag_rng_seed(&r, 2);
    ag_rng_fill_normal(&r, m->layers[0].b->value, 6, 0, 0.3); /* nonzero biases */
    ag_real x[5 * 4];
    int32_t labels[5] = {0, 2, 1, 1, 0};
    ag_rng_fill_uniform(&r, x, 20, -1, 1);
    xent_ctx c = {m, x, labels, 5, (ag_real)0.1};
    ag_tape *t;
    ag_tape_new(&t, NULL);
    ag_gradcheck_result res;
    ag_tensor *wrt[4] = {m->layers[0].W, m->layers[0].b, m->layers[1].W, m->layers[1].b};
    ck_assert_msg(ag_gradcheck(t, xent_loss, &c, wrt, 4, sizeof(ag_real) == 8 ? 1e-6 : 1e-2, &res) == AG_OK, "%s",
                  ag_tape_errmsg(t));
    ck_assert_msg(res.max_rel_err < AG_TEST_GRAD_TOL, "rel err %g at tensor %zu [%zu]: %g vs %g", res.max_rel_err,
                  res.worst_tensor, res.worst_index, res.analytic, res.numeric);
    /* L2 on the weights only: the cost with lambda minus the cost without is lambda/2 sum W^2 */
    ag_tape_reset(t);
    double j1 = (double)xent_loss(t, &c)->value[0];
    c.lambda = 0;
    ag_tape_reset(t);
    double j0 = (double)xent_loss(t, &c)->value[0], sw = 0;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < m->layers[l].W->size; i++)
            sw += (double)m->layers[l].W->value[i] * (double)m->layers[l].W->value[i];
    ck_assert_double_eq_tol(j1 - j0, 0.05 * sw, 1e-5);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- XOR end to end */

#define XOR_STEPS 3000 /* the fixed budget of examples/xor.c */

/* Train the 2-4-1 sigmoid MLP of examples/xor.c; returns the number of correct predictions and
 * leaves the trained parameters in ps. */
static int train_xor(uint64_t seed, ag_params **out_ps) {
    ag_real x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, y[4] = {0, 1, 1, 0};
    ag_params *ps;
    ag_tape *t;
    ag_mlp *m;
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ag_params_new(&ps);
    ag_tape_new(&t, NULL);
    ag_mlp_config cfg = {.spec = "2-4-1", .hidden = AG_ACT_SIGMOID, .output = AG_ACT_SIGMOID,
                         .init = AG_INIT_GLOROT_NORMAL, .seed = seed};
    ck_assert_msg(ag_mlp_new(&m, ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_msg(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 2.0}, err, sizeof err) == AG_OK,
                  "%s", err);
    ag_tensor *h = NULL;
    double first = 0, last = 0;
    for (int step = 0; step <= XOR_STEPS; step++) {
        ag_tape_reset(t);
        h = ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){4, 2}, x), NULL, NULL);
        ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, ag_tensor_wrap(t, 2, (size_t[]){4, 1}, y), (ag_real)1e-5);
        ck_assert_ptr_nonnull(J);
        if (step == 0) first = (double)J->value[0];
        last = (double)J->value[0];
        if (step == XOR_STEPS) break;
        ag_optim_zero_grad(opt);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    }
    ck_assert_double_lt(last, first / 10);
    int correct = 0;
    for (int k = 0; k < 4; k++) correct += (h->value[k] > 0.5f) == (y[k] > 0.5f);
    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_tape_free(t);
    *out_ps = ps;
    return correct;
}

START_TEST(xor_trains_and_is_reproducible) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        ag_params *a, *b;
        ck_assert_int_eq(train_xor(seed, &a), 4);
        ck_assert_int_eq(train_xor(seed, &b), 4);
        ck_assert_int_eq(memcmp(ag_params_values(a), ag_params_values(b), ag_params_numel(a) * sizeof(ag_real)), 0);
        ag_params_free(a);
        ag_params_free(b);
    }
}
END_TEST

/* Models on different user threads train as they would alone, bit for bit: two sizes, so that one
 * thread's products are packed and parallel while the other's are small, with the fused step. */
typedef struct {
    const char *spec;
    size_t batch, in;
    int steps;
    ag_real params[64]; /* the first values of the trained store */
    int ok;
} mt_job;

static void *mt_train(void *arg) {
    mt_job *j = arg;
    j->ok = 0;
    ag_params *ps = NULL;
    ag_tape *t = NULL;
    ag_mlp *m = NULL;
    ag_optim *opt = NULL;
    char err[AG_ERRMSG_SIZE];
    ag_real *x = malloc(j->batch * j->in * sizeof(ag_real)), *y = malloc(j->batch * sizeof(ag_real));
    ag_mlp_config cfg = {.spec = j->spec, .hidden = AG_ACT_TANH, .init = AG_INIT_GLOROT_NORMAL, .seed = 7};
    if (!x || !y || ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK ||
        ag_mlp_new(&m, ps, &cfg, err, sizeof err) != AG_OK ||
        ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.01, .momentum = 0.9}, err,
                     sizeof err) != AG_OK)
        goto done;
    ag_rng r;
    ag_rng_seed(&r, 11);
    ag_rng_fill_uniform(&r, x, j->batch * j->in, -1, 1);
    for (size_t k = 0; k < j->batch; k++) y[k] = x[k * j->in];
    for (int s = 0; s < j->steps; s++) {
        ag_tape_reset(t);
        ag_tensor *h = ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){j->batch, j->in}, x), NULL, NULL);
        ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, ag_tensor_wrap(t, 2, (size_t[]){j->batch, 1}, y), 0);
        if (ag_optim_backward_step(opt, t, J) != AG_OK) goto done;
    }
    memcpy(j->params, ag_params_values(ps), sizeof j->params);
    j->ok = 1;
done:
    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
    free(x);
    free(y);
    return NULL;
}

START_TEST(models_on_user_threads) {
    const int steps = ag_test_quick() ? 3 : 20;
    for (int nt = 1; nt <= 2; nt++) {
        ag_set_threads(nt);
        mt_job alone[2] = {{.spec = "256-256-64-1", .batch = 128, .in = 256, .steps = steps},
                           {.spec = "16-8-1", .batch = 4, .in = 16, .steps = steps}};
        for (int i = 0; i < 2; i++) {
            mt_train(&alone[i]);
            ck_assert(alone[i].ok);
        }
        for (int trial = 0; trial < (ag_test_quick() ? 1 : 4); trial++) {
            mt_job jobs[4];
            pthread_t tid[4];
            for (int i = 0; i < 4; i++) {
                jobs[i] = alone[i % 2];
                memset(jobs[i].params, 0, sizeof jobs[i].params);
                ck_assert_int_eq(pthread_create(&tid[i], NULL, mt_train, &jobs[i]), 0);
            }
            for (int i = 0; i < 4; i++) {
                ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
                ck_assert_msg(jobs[i].ok, "%d threads: user thread %d failed", nt, i);
                ck_assert_msg(memcmp(jobs[i].params, alone[i % 2].params, sizeof jobs[i].params) == 0,
                              "%d threads: user thread %d (%s) trained other weights than alone", nt, i,
                              jobs[i].spec);
            }
        }
    }
    ag_set_threads(0);
}
END_TEST

/* A whole training step (reset, MLP forward, cost, backward, Adam step) allocates nothing once
 * the tape arena has grown to its size. */
START_TEST(training_step_allocates_nothing) {
    ag__threads_shutdown(); /* blocks from earlier tests (CK_FORK=no) must not be freed while counting */
    ag_test_alloc_install();
    ag_params *ps;
    ag_mlp *m;
    ag_tape *t;
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ag_params_new(&ps);
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){4096, NULL, 0}), AG_OK); /* small: must grow */
    ag_mlp_config cfg = {.spec = "8-16-16-4", .hidden = AG_ACT_RELU, .output = AG_ACT_SIGMOID,
                         .init = AG_INIT_HE_NORMAL, .seed = 3};
    ck_assert_msg(ag_mlp_new(&m, ps, &cfg, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_ADAMW, .lr = 1e-3, .weight_decay = 0.01,
                                                               .clip_norm = 5},
                                  err, sizeof err),
                     AG_OK);
    ag_real x[10 * 8], y[10 * 4];
    ag_rng r;
    ag_rng_seed(&r, 1);
    ag_rng_fill_uniform(&r, x, 80, -1, 1);
    ag_rng_fill_uniform(&r, y, 40, 0, 1);
    size_t after_warmup = 0;
    for (int step = 0; step < 6; step++) {
        ag_tape_reset(t);
        ag_tensor *h = ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){10, 8}, x), NULL, NULL);
        ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, ag_tensor_wrap(t, 2, (size_t[]){10, 4}, y), (ag_real)1e-4);
        ck_assert_ptr_nonnull(J);
        ag_optim_zero_grad(opt);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        ck_assert_int_eq(ag_optim_step(opt), AG_OK);
        if (step == 1) after_warmup = ag_test_alloc_count();
    }
    ck_assert_uint_eq(ag_test_alloc_count(), after_warmup);
    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
    ag__threads_shutdown(); /* the GEMM's per-thread packing buffers (portable path) are kept until now */
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

/* Every bias element is reset, not just the first bytes of the array (a memset given the element
 * count instead of the byte count clears only a quarter of a float bias). */
START_TEST(init_zeroes_every_bias) {
    const ag_init inits[] = {AG_INIT_SMALL_GAUSS, AG_INIT_GLOROT_NORMAL, AG_INIT_GLOROT_UNIFORM, AG_INIT_HE_NORMAL};
    for (size_t c = 0; c < 4; c++) {
        ag_params *ps;
        ag_params_new(&ps);
        ag_dense d;
        ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 5, 10, AG_ACT_TANH), AG_OK);
        for (size_t i = 0; i < d.b->size; i++) d.b->value[i] = (ag_real)(i + 1);
        ag_rng r;
        ag_rng_seed(&r, 5);
        ck_assert_int_eq(ag_dense_init_weights(&d, inits[c], &r), AG_OK);
        for (size_t i = 0; i < d.b->size; i++)
            ck_assert_msg(d.b->value[i] == 0, "init %d: b[%zu] = %g", (int)inits[c], i, (double)d.b->value[i]);
        ag_params_free(ps);
    }
}
END_TEST

/* Layer sizes up to 2^30 inclusive parse; 2^30 + 1 is refused. ':' (the byte after '9') is no digit. */
START_TEST(spec_size_limit_and_digits) {
    size_t sizes[4], n;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_mlp_parse_spec("1073741824-1", sizes, 4, &n, err, sizeof err), AG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(sizes[0], (size_t)1 << 30);
    ck_assert_uint_eq(sizes[1], 1);
    expect_spec_error("1073741825-1", "mlp: spec \"1073741825-1\" has a layer size above 1073741824 at position 0", 0);
    expect_spec_error("784:10", "mlp: spec \"784:10\" has ':' at position 3, expected a digit or '-'", 1);
    expect_spec_error("784-1/", "mlp: spec \"784-1/\" has '/' at position 5, expected a digit or '-'", 1);
}
END_TEST

/* An initialiser one past the last is refused up front with its own message, nothing added. */
START_TEST(mlp_unknown_initialiser) {
    ag_params *ps;
    ag_params_new(&ps);
    ag_mlp *m;
    char err[AG_ERRMSG_SIZE], want[64];
    int bad = (int)AG_INIT_HE_NORMAL + 1;
    snprintf(want, sizeof want, "mlp: unknown initialiser %d", bad);
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "3-2", .init = (ag_init)bad}, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(ag_params_count(ps), 0);
    ag_params_free(ps);
}
END_TEST

static Suite *layers_suite(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, initialiser_statistics);
    tcase_add_test(tc, same_seed_same_weights);
    tcase_add_test(tc, spec_parsing);
    tcase_add_test(tc, mlp_config_errors);
    tcase_add_test(tc, activation_names);
    tcase_add_test(tc, dense_forward_values_and_errors);
    tcase_add_test(tc, mlp_forward_returns_every_layer);
    tcase_add_test(tc, dense_fused_forward_and_activate_values);
    tcase_add_test(tc, l2_terms_beyond_one_node);
    tcase_add_test(tc, cross_entropy_cost_gradcheck);
    tcase_add_test(tc, xor_trains_and_is_reproducible);
    tcase_add_test(tc, models_on_user_threads);
    tcase_add_test(tc, training_step_allocates_nothing);
    tcase_add_test(tc, init_zeroes_every_bias);
    tcase_add_test(tc, spec_size_limit_and_digits);
    tcase_add_test(tc, mlp_unknown_initialiser);
    tcase_add_test(tc, mlp_assigns_activations_per_layer);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(layers_suite)

/*
 * test_custom_op.c - the ops of examples/custom_op.c (softplus, conv1d, maxpool1d), defined outside
 * the library: central-difference gradient checks w.r.t. every differentiable input over many
 * shapes (and with the other input as plain data, whose grad is NULL), forward values against naive
 * loops written here, max-pool ties and NaN, shape and argument errors with their exact messages,
 * gradient accumulation, the saved state, allocation-free steps, and the example's training.
 *
 * The example is included with its main() left out, so these are the very ops it trains with.
 */
#define CUSTOM_OP_NO_MAIN
#include "../../examples/custom_op.c"

#include "testutil.h"

#ifdef AG_DOUBLE
#define GC_EPS 1e-6
#else
#define GC_EPS 1e-2
#endif

/* ---------------------------------------------------------------- gradcheck driver
 * loss = sum(r .* op(inputs)) with fixed random r, so every output element is weighted
 * differently. Inputs in the wrt mask are parameters; the others enter as tape data (no grad). */

enum { ANY, DISTINCT }; /* values: uniform [-1, 1]; or all different, at least 0.1 apart */

typedef ag_tensor *(*build_fn)(ag_tape *t, ag_tensor *const *in, const void *arg);

typedef struct gc_ctx {
    build_fn build;
    const void *arg;
    int n;
    unsigned wrt_mask;
    ag_tensor *p[2];
    ag_real r[4096];
} gc_ctx;

static ag_tensor *gc_loss(ag_tape *t, void *vctx) {
    gc_ctx *c = vctx;
    ag_tensor *in[2];
    for (int i = 0; i < c->n; i++)
        in[i] = (c->wrt_mask >> i & 1) ? c->p[i] : ag_tensor_wrap(t, c->p[i]->ndim, c->p[i]->shape, c->p[i]->value);
    ag_tensor *y = c->build(t, in, c->arg);
    if (!y) return NULL;
    ck_assert_uint_le(y->size, 4096);
    return ag_sum(t, ag_mul(t, y, ag_tensor_wrap(t, y->ndim, y->shape, c->r)));
}

typedef struct gc_input {
    int ndim;
    size_t shape[4];
    int domain;
} gc_input;

static double g_worst; /* worst relative error of the running test */

static void fill(ag_rng *rng, ag_real *v, size_t n, int domain) {
    if (domain == ANY) {
        ag_rng_fill_uniform(rng, v, n, -1, 1);
        return;
    }
    /* a shuffled ladder: no ties, and a step of eps can never reorder two values */
    uint32_t perm[1024];
    ck_assert_uint_le(n, 1024);
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    ag_rng_shuffle(rng, perm, n);
    for (size_t i = 0; i < n; i++) v[i] = (ag_real)(0.1 * ((double)perm[i] - (double)n / 2));
}

static void gradcheck_case(const char *label, build_fn build, const void *arg, int n, const gc_input *in,
                           unsigned wrt_mask, uint64_t seed) {
    ag_rng rng;
    ag_rng_seed(&rng, seed);
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    gc_ctx *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    *c = (gc_ctx){build, arg, n, wrt_mask, {NULL, NULL}, {0}};
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_int_eq(ag_params_add(ps, name, in[i].ndim, in[i].shape, 0, &c->p[i]), AG_OK);
    }
    for (int i = 0; i < n; i++) fill(&rng, c->p[i]->value, c->p[i]->size, in[i].domain); /* after all adds */
    ag_rng_fill_uniform(&rng, c->r, 4096, -1, 1);

    ag_tensor *wrt[2];
    size_t n_wrt = 0, total = 0;
    for (int i = 0; i < n; i++)
        if (wrt_mask >> i & 1) {
            wrt[n_wrt++] = c->p[i];
            total += c->p[i]->size;
        }
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ag_status st = ag_gradcheck(t, gc_loss, c, wrt, n_wrt, GC_EPS, &res);
    if (st != AG_OK) fprintf(stderr, "%s: %s\n", label, ag_tape_errmsg(t));
    ck_assert_int_eq(st, AG_OK);
    ck_assert_uint_eq(res.n_checked, total);
    fprintf(stderr, "gradcheck %-44s %s rel %.3g (abs %.3g)\n", label, AG_REAL_NAME, res.max_rel_err, res.max_abs_err);
    if (res.max_rel_err > g_worst) g_worst = res.max_rel_err;
    ck_assert_msg(res.max_rel_err <= AG_TEST_GRAD_TOL, "%s: relative error %g > %g (wrt %zu[%zu]: %g vs %g)", label,
                  res.max_rel_err, AG_TEST_GRAD_TOL, res.worst_tensor, res.worst_index, res.analytic, res.numeric);
    ag_tape_free(t);
    ag_params_free(ps);
    free(c);
}

/* ---------------------------------------------------------------- builders */

typedef struct conv_case {
    size_t K, C, L, O, R, stride, pad;
} conv_case;

typedef struct pool_case {
    int ndim;
    size_t shape[4];
    size_t window, stride;
} pool_case;

static ag_tensor *build_softplus(ag_tape *t, ag_tensor *const *in, const void *arg) {
    (void)arg;
    return softplus(t, in[0]);
}
static ag_tensor *build_conv(ag_tape *t, ag_tensor *const *in, const void *arg) {
    const conv_case *c = arg;
    return conv1d(t, in[0], in[1], c->stride, c->pad);
}
static ag_tensor *build_pool(ag_tape *t, ag_tensor *const *in, const void *arg) {
    const pool_case *c = arg;
    return maxpool1d(t, in[0], c->window, c->stride);
}

/* stride > 1, padding, odd and even lengths, 1 and several channels, window == padded length,
 * window longer than the signal (padding makes room), stride longer than the window */
static const conv_case conv_cases[] = {
    {1, 1, 5, 1, 1, 1, 0},  {2, 1, 7, 3, 3, 1, 1}, {2, 3, 9, 2, 4, 2, 1},  {3, 2, 11, 4, 5, 3, 2},
    {1, 4, 6, 1, 6, 1, 0},  {2, 2, 8, 3, 3, 2, 2}, {1, 1, 4, 2, 5, 1, 2},  {2, 2, 13, 2, 2, 3, 0},
    {1, 3, 10, 5, 3, 1, 0}, {4, 1, 3, 2, 3, 2, 1},
};

static const pool_case pool_cases[] = {
    {3, {2, 3, 9}, 3, 2},  {3, {1, 1, 5}, 5, 1}, {3, {2, 2, 10}, 2, 2}, {2, {3, 7}, 4, 3},
    {1, {8}, 1, 1},        {3, {2, 1, 12}, 5, 1}, {3, {1, 4, 11}, 3, 5}, {4, {2, 1, 2, 6}, 2, 1},
};

START_TEST(gc_softplus) {
    g_worst = 0;
    static const gc_input in[] = {{0, {1}, ANY}, {1, {7}, ANY}, {2, {3, 5}, ANY}, {3, {2, 3, 4}, ANY}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "softplus rank %d", in[i].ndim);
        gradcheck_case(label, build_softplus, NULL, 1, &in[i], 1, 10 + i);
    }
    fprintf(stderr, "worst gradcheck softplus (%s): %.3g, tolerance %g\n", AG_REAL_NAME, g_worst, AG_TEST_GRAD_TOL);
}
END_TEST

START_TEST(gc_conv1d) {
    g_worst = 0;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const conv_case *c = &conv_cases[i];
        gc_input in[2] = {{3, {c->K, c->C, c->L}, ANY}, {3, {c->O, c->C, c->R}, ANY}};
        for (unsigned mask = 1; mask <= 3; mask++) { /* x and w; x only; w only (the other is data) */
            char label[96];
            snprintf(label, sizeof label, "conv1d x %zux%zux%zu w %zux%zux%zu s%zu p%zu wrt %s", c->K, c->C, c->L,
                     c->O, c->C, c->R, c->stride, c->pad, mask == 3 ? "x,w" : mask == 1 ? "x" : "w");
            gradcheck_case(label, build_conv, c, 2, in, mask, 100 + 4 * i + mask);
        }
    }
    fprintf(stderr, "worst gradcheck conv1d (%s): %.3g, tolerance %g\n", AG_REAL_NAME, g_worst, AG_TEST_GRAD_TOL);
}
END_TEST

START_TEST(gc_maxpool1d) {
    g_worst = 0;
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const pool_case *c = &pool_cases[i];
        gc_input in = {c->ndim, {c->shape[0], c->shape[1], c->shape[2], c->shape[3]}, DISTINCT};
        ag_tensor tmp = {.ndim = c->ndim, .shape = {c->shape[0], c->shape[1], c->shape[2], c->shape[3]}};
        char label[96], s[32];
        snprintf(label, sizeof label, "maxpool1d x %s win %zu s%zu", ag_shape_str(&tmp, s, sizeof s), c->window,
                 c->stride);
        gradcheck_case(label, build_pool, c, 1, &in, 1, 200 + i);
    }
    fprintf(stderr, "worst gradcheck maxpool1d (%s): %.3g, tolerance %g\n", AG_REAL_NAME, g_worst, AG_TEST_GRAD_TOL);
}
END_TEST

#ifdef AG_DOUBLE
/* The example's whole model, every parameter at once (K = 3 signals). Double only: a float-sized
 * step (1e-2) on a conv weight moves many pooled values and crosses some max-pool kinks. */
typedef struct model_ctx {
    pattern_net *m;
    ag_real *x;
    int32_t *label;
} model_ctx;

static ag_tensor *model_loss(ag_tape *t, void *vctx) {
    model_ctx *c = vctx;
    return ag_cross_entropy(t, pattern_logits(t, c->m, c->x, 3), c->label);
}

START_TEST(gc_pattern_model) {
    ag_params *ps;
    ag_tape *t;
    pattern_net m = {0};
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "conv.w", 3, (size_t[]){CH, 1, CONV_R}, AG_DECAY, &m.w), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "conv.b", 2, (size_t[]){CH, 1}, 0, &m.b), AG_OK);
    ck_assert_int_eq(ag_dense_init(&m.fc, ps, "fc", CH * POOL_OUT, N_CLASSES, AG_ACT_IDENTITY), AG_OK);
    ag_rng rng;
    ag_rng_seed(&rng, 5);
    ag_real x[3 * SIG_LEN];
    int32_t label[3];
    make_signals(&rng, x, label, 3);
    ag_rng_fill_normal(&rng, m.w->value, m.w->size, 0, 0.6);
    ag_rng_fill_normal(&rng, m.b->value, m.b->size, 0, 0.1);
    ag_dense_init_weights(&m.fc, AG_INIT_GLOROT_NORMAL, &rng);
    model_ctx ctx = {&m, x, label};
    ag_tensor *wrt[4] = {m.w, m.b, m.fc.W, m.fc.b};
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_gradcheck_result res;
    ck_assert_int_eq(ag_gradcheck(t, model_loss, &ctx, wrt, 4, GC_EPS, &res), AG_OK);
    fprintf(stderr, "gradcheck %-44s %s rel %.3g over %zu elements\n", "conv1d-softplus-maxpool1d-dense-CE",
            AG_REAL_NAME, res.max_rel_err, res.n_checked);
    ck_assert_double_le(res.max_rel_err, AG_TEST_GRAD_TOL);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST
#endif

/* ---------------------------------------------------------------- forward against naive loops */

/* y[k,o,j] = sum_{c,r} w[o,c,r] x[k,c,j*s+r-p], straight from the definition, in double */
static void conv_naive(const conv_case *c, const ag_real *x, const ag_real *w, double *y, size_t Lo) {
    for (size_t k = 0; k < c->K; k++)
        for (size_t o = 0; o < c->O; o++)
            for (size_t j = 0; j < Lo; j++) {
                double s = 0;
                for (size_t ci = 0; ci < c->C; ci++)
                    for (size_t r = 0; r < c->R; r++) {
                        long pos = (long)(j * c->stride + r) - (long)c->pad;
                        if (pos >= 0 && pos < (long)c->L)
                            s += (double)w[(o * c->C + ci) * c->R + r] * x[(k * c->C + ci) * c->L + (size_t)pos];
                    }
                y[(k * c->O + o) * Lo + j] = s;
            }
}

START_TEST(conv1d_against_naive) {
    ag_rng rng;
    ag_rng_seed(&rng, 31);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const conv_case *c = &conv_cases[i];
        const size_t Lo = (c->L + 2 * c->pad - c->R) / c->stride + 1, ny = c->K * c->O * Lo;
        ag_real x[512], w[512];
        double ref[512];
        ag_rng_fill_uniform(&rng, x, c->K * c->C * c->L, -1, 1);
        ag_rng_fill_uniform(&rng, w, c->O * c->C * c->R, -1, 1);
        conv_naive(c, x, w, ref, Lo);
        for (int grad = 0; grad <= 1; grad++) { /* both forward paths: all columns kept, or one block */
            ag_tape_reset(t);
            ag_tape_set_grad_enabled(t, grad);
            ag_tensor *X = ag_tensor_from(t, 3, (size_t[]){c->K, c->C, c->L}, x);
            ag_tensor *W = ag_tensor_from(t, 3, (size_t[]){c->O, c->C, c->R}, w);
            if (grad) ag_requires_grad(W);
            ag_tensor *y = conv1d(t, X, W, c->stride, c->pad);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(ag_node_needs_grad((ag_node *)y), grad); /* out is ag_node's first member */
            ck_assert_uint_eq(y->shape[0], c->K);
            ck_assert_uint_eq(y->shape[1], c->O);
            ck_assert_uint_eq(y->shape[2], Lo);
            ck_assert_double_le(ag_test_max_abs_diff("conv1d", y->value, ref, ny, AG_TEST_EXACT_TOL),
                                AG_TEST_EXACT_TOL);
        }
    }
    ag_tape_set_grad_enabled(t, 1);
    ag_tape_free(t);
}
END_TEST

START_TEST(maxpool1d_against_naive) {
    ag_rng rng;
    ag_rng_seed(&rng, 32);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const pool_case *c = &pool_cases[i];
        const size_t L = c->shape[c->ndim - 1], Lo = (L - c->window) / c->stride + 1;
        size_t n = 1;
        for (int d = 0; d < c->ndim; d++) n *= c->shape[d];
        ag_real x[512];
        double ref[512];
        ag_rng_fill_uniform(&rng, x, n, -1, 1);
        for (size_t k = 0; k < n / L; k++)
            for (size_t j = 0; j < Lo; j++) {
                double m = -INFINITY;
                for (size_t q = 0; q < c->window; q++) m = ag_test_worse(m, x[k * L + j * c->stride + q]);
                ref[k * Lo + j] = m;
            }
        for (int grad = 0; grad <= 1; grad++) {
            ag_tape_reset(t);
            ag_tape_set_grad_enabled(t, grad);
            ag_tensor *X = ag_tensor_from(t, c->ndim, c->shape, x);
            ag_requires_grad(X);
            ag_tensor *y = maxpool1d(t, X, c->window, c->stride);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(y->ndim, c->ndim);
            ck_assert_uint_eq(y->shape[c->ndim - 1], Lo);
            ck_assert_uint_eq(y->size, n / L * Lo);
            /* the argmax is saved only when backward will run */
            ck_assert_int_eq(((ag_node *)y)->saved != NULL, grad);
            ck_assert_double_eq(ag_test_max_abs_diff("maxpool1d", y->value, ref, y->size, 0), 0);
        }
    }
    ag_tape_set_grad_enabled(t, 1);
    ag_tape_free(t);
}
END_TEST

START_TEST(softplus_against_naive) {
    ag_real x[41];
    double ref[41];
    for (int i = 0; i < 41; i++) {
        x[i] = (ag_real)(-10 + 0.5 * i);
        ref[i] = log(1 + exp((double)x[i])); /* fine in double for |x| <= 10 */
    }
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *y = softplus(t, ag_tensor_from(t, 1, (size_t[]){41}, x));
    ck_assert_ptr_nonnull(y);
    ck_assert_double_le(ag_test_max_abs_diff("softplus", y->value, ref, 41, AG_TEST_EXACT_TOL), AG_TEST_EXACT_TOL);
    /* large |x|: no overflow, y = x above and e^x below */
    ag_real big[2] = {(ag_real)100, (ag_real)-100};
    y = softplus(t, ag_tensor_from(t, 1, (size_t[]){2}, big));
    ck_assert_double_eq((double)y->value[0], 100);
    ck_assert(y->value[1] >= 0 && (double)y->value[1] < 1e-40);
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- max-pool ties and NaN */

/* dx of maxpool1d(x) for the output gradient dy, by ag_backward_seed */
static void pool_grad(const ag_real *x, size_t L, size_t window, size_t stride, const ag_real *dy, ag_real *y_out,
                      ag_real *dx_out) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_tensor *X = ag_tensor_from(t, 3, (size_t[]){1, 1, L}, x);
    ck_assert_int_eq(ag_requires_grad(X), AG_OK);
    ag_tensor *y = maxpool1d(t, X, window, stride);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ag_backward_seed(t, y, dy), AG_OK);
    memcpy(y_out, y->value, y->size * sizeof(ag_real));
    memcpy(dx_out, X->grad, L * sizeof(ag_real));
    ag_tape_free(t);
}

START_TEST(maxpool1d_ties_and_nan) {
    ag_real y[8], dx[8];
    /* windows {2,5,5} {5,1,5} {5,3,3}: the first of tied maxima (index 1, 2, 4) takes the gradient */
    const ag_real x1[7] = {2, 5, 5, 1, 5, 3, 3}, dy1[3] = {1, 10, 100};
    pool_grad(x1, 7, 3, 2, dy1, y, dx);
    const ag_real want1[7] = {0, 1, 10, 0, 100, 0, 0};
    for (int i = 0; i < 3; i++) ck_assert_double_eq((double)y[i], 5);
    for (int i = 0; i < 7; i++) ck_assert_double_eq((double)dx[i], (double)want1[i]);
    /* overlapping windows choosing one element: its gradient is the sum */
    const ag_real x2[4] = {1, 9, 2, 3}, dy2[2] = {2, 3};
    pool_grad(x2, 4, 3, 1, dy2, y, dx);
    const ag_real want2[4] = {0, 5, 0, 0};
    for (int i = 0; i < 4; i++) ck_assert_double_eq((double)dx[i], (double)want2[i]);
    /* a constant window: all tied, the first gets it */
    const ag_real x3[4] = {4, 4, 4, 4}, dy3[1] = {7};
    pool_grad(x3, 4, 4, 1, dy3, y, dx);
    const ag_real want3[4] = {7, 0, 0, 0};
    for (int i = 0; i < 4; i++) ck_assert_double_eq((double)dx[i], (double)want3[i]);
    /* a NaN wins its window (propagates); windows without one are unaffected */
    const ag_real x4[5] = {1, (ag_real)NAN, 3, 0, 2}, dy4[2] = {1, 1};
    pool_grad(x4, 5, 3, 2, dy4, y, dx);
    ck_assert(isnan((double)y[0]));
    ck_assert_double_eq((double)y[1], 3);
    const ag_real want4[5] = {0, 1, 1, 0, 0};
    for (int i = 0; i < 5; i++) ck_assert_double_eq((double)dx[i], (double)want4[i]);
}
END_TEST

/* ---------------------------------------------------------------- errors */

static void expect_error(ag_tape *t, ag_tensor *y, ag_status st, const char *msg) {
    ck_assert_ptr_null(y);
    ck_assert_int_eq(ag_tape_status(t), st);
    ck_assert_str_eq(ag_tape_errmsg(t), msg);
    ag_tape_reset(t); /* clears the error */
}

START_TEST(shape_errors) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
#define T3(a, b, c) ag_tensor_new(t, 3, (size_t[]){a, b, c})
    expect_error(t, conv1d(t, T3(8, 3, 20), T3(4, 2, 5), 1, 0), AG_ERR_SHAPE,
                 "conv1d: x is 8x3x20 but w is 4x2x5 (in-channels differ)");
    expect_error(t, conv1d(t, ag_tensor_new(t, 2, (size_t[]){8, 20}), T3(4, 1, 5), 1, 0), AG_ERR_SHAPE,
                 "conv1d: x is 8x20 and w is 4x1x5, both must be 3-D (K x C_in x L, C_out x C_in x R)");
    expect_error(t, conv1d(t, T3(8, 3, 20), ag_tensor_new(t, 2, (size_t[]){4, 3}), 1, 0), AG_ERR_SHAPE,
                 "conv1d: x is 8x3x20 and w is 4x3, both must be 3-D (K x C_in x L, C_out x C_in x R)");
    expect_error(t, conv1d(t, T3(2, 3, 3), T3(4, 3, 6), 1, 1), AG_ERR_SHAPE,
                 "conv1d: x is 2x3x3 but w is 4x3x6 (window 6 is longer than the padded length 5)");
    expect_error(t, conv1d(t, T3(8, 3, 20), T3(4, 3, 5), 0, 0), AG_ERR_ARG, "conv1d: stride is 0, must be >= 1");
    expect_error(t, conv1d(t, T3(8, 3, 20), T3(4, 3, 5), 1, 5), AG_ERR_ARG,
                 "conv1d: padding 5 must be smaller than the window 5 (w is 4x3x5)");
    expect_error(t, maxpool1d(t, T3(2, 3, 4), 5, 1), AG_ERR_SHAPE,
                 "maxpool1d: x is 2x3x4, its last axis is shorter than the window 5");
    expect_error(t, maxpool1d(t, ag_scalar(t, 1), 1, 1), AG_ERR_SHAPE,
                 "maxpool1d: x is scalar, its last axis is shorter than the window 1");
    expect_error(t, maxpool1d(t, T3(2, 3, 4), 0, 1), AG_ERR_ARG, "maxpool1d: window 0 and stride 1 must both be >= 1");
    expect_error(t, maxpool1d(t, T3(2, 3, 4), 2, 0), AG_ERR_ARG, "maxpool1d: window 2 and stride 0 must both be >= 1");
    expect_error(t, conv1d(t, T3(1, 1, 4), NULL, 1, 0), AG_ERR_ARG, "conv1d: input 1 is NULL");

    /* propagation: a failed op's NULL flows through the next ops and backward, the first message stands */
    const char *first = "conv1d: x is 8x3x20 but w is 4x2x5 (in-channels differ)";
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 3, (size_t[]){4, 2, 5}, 0, &w), AG_OK);
    size_t nodes = ag_tape_node_count(t);
    ag_tensor *x = T3(8, 3, 20);
    ag_tensor *y = maxpool1d(t, softplus(t, conv1d(t, x, w, 1, 0)), 2, 2);
    ck_assert_ptr_null(y);
    ck_assert_uint_eq(ag_tape_node_count(t), nodes + 1); /* only the leaf x: failed ops record nothing */
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), first);
    ck_assert_int_eq(ag_backward(t, ag_sum(t, y)), AG_ERR_SHAPE);
    ck_assert_str_eq(ag_tape_errmsg(t), first);
#undef T3
    ag_params_free(ps);
    ag_tape_free(t);
}
END_TEST

/* Saved state lives in the arena: when it does not fit, the op fails cleanly with AG_ERR_NOMEM
 * (ag_node_alloc's message), and in no-grad mode, which keeps one column block, the same op fits. */
START_TEST(arena_full) {
    static _Alignas(64) unsigned char buf[64 * 1024];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = sizeof buf, .mem_buffer = buf}), AG_OK);
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 3, (size_t[]){1, 1, 3}, 0, &w), AG_OK);
    /* x and y take 24 KB each; all 8 examples' columns (3 taps each) would take 72 KB */
    const size_t L = 3072 / sizeof(ag_real), cols = 8 * 3 * L * sizeof(ag_real);
    char want[64];
    snprintf(want, sizeof want, "asked for %zu more)", cols);
    for (int grad = 1; grad >= 0; grad--) {
        ag_tape_reset(t);
        ag_tape_set_grad_enabled(t, grad);
        ag_tensor *x = ag_tensor_new(t, 3, (size_t[]){8, 1, L});
        ck_assert_ptr_nonnull(x);
        ag_tensor *y = conv1d(t, x, w, 1, 1);
        if (grad) {
            ck_assert_ptr_null(y);
            ck_assert_int_eq(ag_tape_status(t), AG_ERR_NOMEM);
            ck_assert_msg(strncmp(ag_tape_errmsg(t), "conv1d: tape arena is full", 26) == 0 &&
                              strstr(ag_tape_errmsg(t), want), "%s", ag_tape_errmsg(t));
        } else {
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(ag_tape_status(t), AG_OK);
        }
    }
    ag_tape_set_grad_enabled(t, 1);
    ag_params_free(ps);
    ag_tape_free(t);
}
END_TEST

/* ---------------------------------------------------------------- accumulation
 * With r = r1 + r2, the gradient of sum(r .* op(x)) must equal:
 *   two nodes of the op on the same inputs, weighted by r1 and r2 (each backward adds into dx);
 *   one node whose output is used twice (the engine adds both into dy);
 *   and, for parameters, two backward passes without zeroing give twice the gradient. */

enum { ONE_NODE, TWO_NODES, USED_TWICE };

static ag_tensor *acc_loss(ag_tape *t, int mode, build_fn build, const void *arg, ag_tensor *const *in,
                           const ag_real *r1, const ag_real *r2, const ag_real *r12) {
    ag_tensor *y = build(t, in, arg);
    ck_assert_ptr_nonnull(y);
#define WSUM(y, r) ag_sum(t, ag_mul(t, (y), ag_tensor_wrap(t, (y)->ndim, (y)->shape, (ag_real *)(r))))
    if (mode == ONE_NODE) return WSUM(y, r12);
    ag_tensor *y2 = mode == TWO_NODES ? build(t, in, arg) : y;
    return ag_add(t, WSUM(y, r1), WSUM(y2, r2));
#undef WSUM
}

static void accumulation_case(const char *label, build_fn build, const void *arg, int n, const gc_input *in) {
    ag_rng rng;
    ag_rng_seed(&rng, 77);
    ag_params *ps;
    ag_tensor *p[2];
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_int_eq(ag_params_add(ps, name, in[i].ndim, in[i].shape, 0, &p[i]), AG_OK);
    }
    for (int i = 0; i < n; i++) fill(&rng, p[i]->value, p[i]->size, in[i].domain);
    static ag_real r1[512], r2[512], r12[512];
    ag_rng_fill_uniform(&rng, r1, 512, -1, 1);
    ag_rng_fill_uniform(&rng, r2, 512, -1, 1);
    for (int i = 0; i < 512; i++) r12[i] = r1[i] + r2[i];
    const size_t numel = ag_params_numel(ps);
    static ag_real want[2048];
    ck_assert_uint_le(numel, 2048);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    for (int mode = ONE_NODE; mode <= USED_TWICE; mode++) {
        ag_params_zero_grad(ps);
        for (int pass = 0; pass < 2; pass++) { /* no zeroing between the passes */
            ag_tape_reset(t);
            ck_assert_int_eq(ag_backward(t, acc_loss(t, mode, build, arg, p, r1, r2, r12)), AG_OK);
        }
        const ag_real *g = ag_params_grads(ps);
        if (mode == ONE_NODE) {
            for (size_t i = 0; i < numel; i++) want[i] = g[i];
            continue;
        }
        double worst = 0;
        for (size_t i = 0; i < numel; i++)
            worst = ag_test_worse(worst, fabs((double)g[i] - (double)want[i]) / fmax(1, fabs((double)want[i])));
        ck_assert_msg(worst <= 10 * AG_TEST_EXACT_TOL, "%s %s: gradients differ by %g", label,
                      mode == TWO_NODES ? "two nodes" : "output used twice", worst);
    }
    /* the two passes doubled the one-pass gradient */
    ag_params_zero_grad(ps);
    ag_tape_reset(t);
    ck_assert_int_eq(ag_backward(t, acc_loss(t, ONE_NODE, build, arg, p, r1, r2, r12)), AG_OK);
    const ag_real *g = ag_params_grads(ps);
    for (size_t i = 0; i < numel; i++)
        ck_assert_double_le(fabs((double)want[i] - 2 * (double)g[i]), 10 * AG_TEST_EXACT_TOL * fmax(1, fabs((double)want[i])));
    ag_tape_free(t);
    ag_params_free(ps);
}

START_TEST(backward_accumulates) {
    const gc_input sp = {2, {3, 7}, ANY};
    accumulation_case("softplus", build_softplus, NULL, 1, &sp);
    const conv_case cc = {2, 3, 9, 2, 4, 2, 1};
    const gc_input cin[2] = {{3, {2, 3, 9}, ANY}, {3, {2, 3, 4}, ANY}};
    accumulation_case("conv1d", build_conv, &cc, 2, cin);
    const pool_case pc = {3, {2, 2, 11}, 4, 1}; /* overlapping windows */
    const gc_input pin = {3, {2, 2, 11}, DISTINCT};
    accumulation_case("maxpool1d", build_pool, &pc, 1, &pin);
}
END_TEST

/* ---------------------------------------------------------------- the arena: steps allocate nothing */

START_TEST(steady_state_allocates_nothing) {
    ag_params *ps;
    ag_tape *t;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 3, (size_t[]){4, 2, 3}, 0, &w), AG_OK);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real x[8 * 2 * 30];
    ag_rng rng;
    ag_rng_seed(&rng, 3);
    ag_rng_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1, 1);
    ag_rng_fill_uniform(&rng, w->value, w->size, -1, 1);
    size_t allocs = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2) ag_test_alloc_install();
        ag_tape_reset(t);
        ag_tensor *X = ag_tensor_wrap(t, 3, (size_t[]){8, 2, 30}, x);
        ag_tensor *J = ag_sum(t, maxpool1d(t, softplus(t, conv1d(t, X, w, 2, 1)), 3, 2));
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        if (step == 2) {
            allocs = ag_test_alloc_count();
            ag_test_alloc_uninstall();
        }
    }
    ck_assert_uint_eq(allocs, 0);
    ag_tape_free(t);
    ag_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- training through the ops */

START_TEST(training_converges) {
    pattern_run run = {.epochs = 10, .seed = 11, .log = NULL};
    ck_assert_int_eq(train_patterns(&run), AG_OK);
    fprintf(stderr, "training: loss %.4f -> %.4f over %d epochs, test accuracy %.1f%%\n", run.first_loss,
            run.last_loss, run.epochs, 100 * run.test_acc);
    ck_assert_double_lt(run.last_loss, run.first_loss / 4);
    ck_assert_double_gt(run.test_acc, 0.85); /* chance is 1/3 */
}
END_TEST

static Suite *custom_op_suite(void) {
    Suite *s = suite_create("custom_op");
    TCase *gc = tcase_create("gradcheck");
    tcase_set_timeout(gc, 300);
    tcase_add_test(gc, gc_softplus);
    tcase_add_test(gc, gc_conv1d);
    tcase_add_test(gc, gc_maxpool1d);
#ifdef AG_DOUBLE
    tcase_add_test(gc, gc_pattern_model);
#endif
    suite_add_tcase(s, gc);
    TCase *v = tcase_create("values");
    tcase_add_test(v, conv1d_against_naive);
    tcase_add_test(v, maxpool1d_against_naive);
    tcase_add_test(v, softplus_against_naive);
    tcase_add_test(v, maxpool1d_ties_and_nan);
    tcase_add_test(v, shape_errors);
    tcase_add_test(v, arena_full);
    tcase_add_test(v, backward_accumulates);
    tcase_add_test(v, steady_state_allocates_nothing);
    suite_add_tcase(s, v);
    TCase *tr = tcase_create("training");
    tcase_set_timeout(tr, 300);
    tcase_add_test(tr, training_converges);
    suite_add_tcase(s, tr);
    return s;
}

AG_TEST_MAIN(custom_op_suite)

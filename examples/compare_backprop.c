/*
 * compare_backprop.c - the tape against the hand-derived backpropagation, layer by layer.
 *
 * Builds a random MLP (sigmoid or tanh, squared error + L2), runs it on one batch both on the
 * tape (layers/include/tapegrad/mlp.h) and with the literal delta recursion (layers/include/tapegrad/backprop_ref.h), and prints,
 * for every layer, the largest absolute difference of
 *     delta   the tape's z^(l)->grad * K   vs  the reference's delta^(l), every example
 *     dW      the tape's W^(l)->grad       vs  (1/K) DeltaW^(l) + lambda W^(l)
 *     db      the tape's b^(l)->grad       vs  (1/K) Deltab^(l)
 * The last line is  max_abs_diff delta=<x> dW=<x> db=<x>.
 *
 *     build/examples/compare_backprop [spec [K [lambda [tanh|sigmoid [seed]]]]]
 *     build/examples/compare_backprop 20-32-16-8-3 16 0.01 tanh 7
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/backprop_ref.h>
#include <tapegrad/mlp.h>

static double max_abs_diff(const ag_real *a, const double *b, size_t n, double scale) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] * scale - b[i]);
        if (!(d <= worst)) worst = d; /* NaN wins */
    }
    return worst;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "compare_backprop: %s: %s\n", what, msg);
    exit(1);
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "16-32-24-12-4";
    size_t K = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 8;
    double lambda = argc > 3 ? strtod(argv[3], NULL) : 0.01;
    ag_act act = AG_ACT_SIGMOID;
    if (argc > 4 && ag_act_parse(argv[4], &act) != AG_OK) die("activation", "use sigmoid or tanh");
    if (act != AG_ACT_SIGMOID && act != AG_ACT_TANH) die("activation", "the reference knows sigmoid and tanh");
    uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    if (K == 0) die("K", "must be >= 1");

    /* the network on the tape */
    ag_params *ps;
    ag_mlp *m;
    ag_tape *t;
    char err[AG_ERRMSG_SIZE];
    if (ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK) die("setup", "out of memory");
    ag_mlp_config cfg = {.spec = spec, .hidden = act, .output = act, .init = AG_INIT_GLOROT_NORMAL, .seed = seed};
    if (ag_mlp_new(&m, ps, &cfg, err, sizeof err) != AG_OK) die("model", err);
    const size_t L = m->n_layers, n_l = L + 1, s_in = m->sizes[0], s_out = m->sizes[L];
    ag_rng rng;
    ag_rng_seed(&rng, seed ^ 0x5eedULL);
    for (size_t i = 0; i < L; i++) /* nonzero biases */
        ag_rng_fill_normal(&rng, m->layers[i].b->value, m->layers[i].b->size, 0, 0.1);

    /* one batch: x uniform in [-1, 1], y in (0, 1) */
    ag_real *x = malloc(K * s_in * sizeof *x), *y = malloc(K * s_out * sizeof *y);
    double *xd = malloc(K * s_in * sizeof *xd), *yd = malloc(K * s_out * sizeof *yd);
    if (!x || !y || !xd || !yd) die("batch", "out of memory");
    ag_rng_fill_uniform(&rng, x, K * s_in, -1, 1);
    ag_rng_fill_uniform(&rng, y, K * s_out, 0.05, 0.95);
    for (size_t i = 0; i < K * s_in; i++) xd[i] = (double)x[i];
    for (size_t i = 0; i < K * s_out; i++) yd[i] = (double)y[i];

    /* the tape: J = squared error + lambda/2 sum W^2, then backward */
    ag_tensor **z = malloc(L * sizeof *z);
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, s_in}, x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){K, s_out}, y);
    ag_tensor *h = ag_mlp_forward(t, m, X, z, NULL);
    ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, Y, (ag_real)lambda);
    ag_params_zero_grad(ps);
    if (!J || ag_backward(t, J) != AG_OK) die("tape", ag_tape_errmsg(t));

    /* the reference on the same numbers */
    ag_ref_mlp *ref;
    if (ag_ref_new(&ref, (int)n_l, m->sizes, act == AG_ACT_TANH ? AG_REF_TANH : AG_REF_SIGMOID, K) != AG_OK)
        die("reference", "cannot allocate");
    for (size_t l = 1; l < n_l; l++) {
        const ag_dense *d = &m->layers[l - 1];
        for (size_t i = 0; i < d->W->size; i++) ref->W[l][i] = (double)d->W->value[i];
        for (size_t i = 0; i < d->b->size; i++) ref->b[l][i] = (double)d->b->value[i];
    }
    ag_ref_backprop(ref, xd, yd, K, lambda);

    printf("spec %s, %s, K=%zu, lambda=%g, seed %llu, ag_real %s\n", spec, ag_act_name(act), K, lambda,
           (unsigned long long)seed, AG_REAL_NAME);
    printf("J tape %.17g  reference %.17g\n", (double)J->value[0], ref->J);
    double wd = 0, ww = 0, wb = 0;
    for (size_t l = 1; l <= n_l; l++) {
        /* delta^(l) lives on z^(l), l >= 2; layer l's parameters W^(l), b^(l) exist for l < n_l */
        printf("layer %zu (%zu units):", l, m->sizes[l - 1]);
        if (l >= 2) {
            double d = max_abs_diff(z[l - 2]->grad, ref->delta[l], K * m->sizes[l - 1], (double)K);
            printf("  delta %.3g", d);
            if (!(d <= wd)) wd = d;
        } else {
            printf("  delta -  ");
        }
        if (l < n_l) {
            const ag_dense *d = &m->layers[l - 1];
            double *dW = malloc(d->W->size * sizeof *dW), *db = malloc(d->b->size * sizeof *db);
            ag_ref_gradient(ref, (int)l, K, lambda, dW, db);
            double ew = max_abs_diff(d->W->grad, dW, d->W->size, 1.0);
            double eb = max_abs_diff(d->b->grad, db, d->b->size, 1.0);
            printf("  dW^(%zu) %.3g  db^(%zu) %.3g", l, ew, l, eb);
            if (!(ew <= ww)) ww = ew;
            if (!(eb <= wb)) wb = eb;
            free(dW);
            free(db);
        }
        printf("\n");
    }
    printf("max_abs_diff delta=%.3g dW=%.3g db=%.3g\n", wd, ww, wb);

    ag_ref_free(ref);
    free(z);
    free(x);
    free(y);
    free(xd);
    free(yd);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
    return 0;
}

/*
 * custom_op.c - a user-defined op, written outside the library, used in training.
 *
 * The op is softplus, y = log(1 + e^x), dy/dx = sigmoid(x). It is one static ag_op descriptor
 * in this file, with its shape check, forward and backward adjacent; the engine treats it like a
 * built-in (it is identified by the descriptor's address, no registration). The example checks
 * its backward against central differences with ag_gradcheck, then uses it as the hidden
 * activation of a 1-16-1 network fitted to sin(x) with Adam and mini-batches (K = 32).
 *
 *     build/examples/custom_op
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dense.h"
#include "optim.h"

/* ---------------------------------------------------------------- the op */

static ag_status softplus_shape(ag_node *n) {
    return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); /* element-wise: same shape */
}

static ag_status softplus_forward(ag_node *n) {
    const ag_real *x = n->in[0]->value;
    ag_real *y = n->out.value;
    for (size_t i = 0; i < n->out.size; i++) {
        double v = (double)x[i]; /* stable: log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) */
        y[i] = (ag_real)((v > 0 ? v : 0) + log1p(exp(-fabs(v))));
    }
    return AG_OK;
}

static ag_status softplus_backward(ag_node *n) {
    ag_tensor *x = n->in[0];
    if (!x->grad) return AG_OK; /* the input needs no gradient */
    for (size_t i = 0; i < n->out.size; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x->value[i])); /* dy/dx = sigmoid(x) */
        x->grad[i] += (ag_real)(s * (double)n->out.grad[i]); /* accumulate, never assign */
    }
    return AG_OK;
}

static const ag_op softplus_op = {"softplus", 1, 0, softplus_shape, softplus_forward, softplus_backward};

static ag_tensor *softplus(ag_tape *t, ag_tensor *x) { return ag_call(t, &softplus_op, &x, 1, NULL); }

/* ---------------------------------------------------------------- the model: 1-16-1 */

typedef struct {
    ag_dense l1, l2;
    ag_real *x, *y; /* the current batch */
    size_t K;
} model;

/* J = squared error of l2(softplus(l1(x))) + 1e-4/2 sum W^2 */
static ag_tensor *loss_fn(ag_tape *t, void *ctx) {
    model *m = ctx;
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){m->K, 1}, m->x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){m->K, 1}, m->y);
    ag_tensor *a2 = softplus(t, ag_dense_forward(t, &m->l1, X, NULL)); /* identity layer, then our op */
    ag_tensor *h = ag_dense_forward(t, &m->l2, a2, NULL);
    ag_tensor *W[2] = {m->l1.W, m->l2.W};
    return ag_cost_squared_error_l2(t, h, Y, (ag_real)1e-4, W, 2);
}

int main(void) {
    enum { N = 256, BATCH = 32, EPOCHS = 300 };
    ag_params *ps;
    ag_tape *t;
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    if (ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK) return 1;
    model m = {0};
    if (ag_dense_init(&m.l1, ps, "l1", 1, 16, AG_ACT_IDENTITY) != AG_OK ||
        ag_dense_init(&m.l2, ps, "l2", 16, 1, AG_ACT_IDENTITY) != AG_OK) {
        fprintf(stderr, "%s\n", ag_params_errmsg(ps));
        return 1;
    }
    ag_rng rng;
    ag_rng_seed(&rng, 2024);
    ag_dense_init_weights(&m.l1, AG_INIT_HE_NORMAL, &rng);
    ag_rng_fill_uniform(&rng, m.l1.b->value, 16, -3, 3); /* spread the kinks over the data */
    ag_dense_init_weights(&m.l2, AG_INIT_GLOROT_NORMAL, &rng);

    /* the data: y = sin(x) on [-3, 3] */
    ag_real xs[N], ys[N], xb[BATCH], yb[BATCH];
    for (int i = 0; i < N; i++) {
        xs[i] = (ag_real)(-3.0 + 6.0 * i / (N - 1));
        ys[i] = (ag_real)sin((double)xs[i]);
    }

    /* 1. the op's backward against central differences, on a small batch */
    m.x = xs;
    m.y = ys;
    m.K = 8;
    ag_gradcheck_result gc;
    ag_tensor *wrt[4] = {m.l1.W, m.l1.b, m.l2.W, m.l2.b};
    if (ag_gradcheck(t, loss_fn, &m, wrt, 4, sizeof(ag_real) == 8 ? 1e-6 : 1e-2, &gc) != AG_OK) {
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
        return 1;
    }
    printf("gradcheck through softplus: %zu elements, max relative error %.2g\n", gc.n_checked, gc.max_rel_err);

    /* 2. training with mini-batches (K = BATCH) and Adam */
    if (ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01}, err,
                     sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    uint32_t idx[N];
    for (uint32_t i = 0; i < N; i++) idx[i] = i;
    m.x = xb;
    m.y = yb;
    m.K = BATCH;
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        ag_rng_shuffle(&rng, idx, N);
        double sum = 0;
        for (int s = 0; s + BATCH <= N; s += BATCH) {
            for (int k = 0; k < BATCH; k++) {
                xb[k] = xs[idx[s + k]];
                yb[k] = ys[idx[s + k]];
            }
            ag_tape_reset(t);
            ag_tensor *J = loss_fn(t, &m);
            ag_optim_zero_grad(opt);
            if (!J || ag_backward(t, J) != AG_OK || ag_optim_step(opt) != AG_OK) {
                fprintf(stderr, "%s%s\n", ag_tape_errmsg(t), ag_optim_errmsg(opt));
                return 1;
            }
            sum += (double)J->value[0];
        }
        if (epoch % 50 == 0 || epoch == EPOCHS - 1) printf("epoch %3d  loss %.6f\n", epoch, sum / (N / BATCH));
    }

    /* 3. predictions at a few points */
    m.K = 1;
    for (int i = 0; i <= 4; i++) {
        xb[0] = (ag_real)(-3.0 + 1.5 * i);
        yb[0] = 0;
        ag_tape_reset(t);
        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){1, 1}, xb);
        ag_tensor *h = ag_dense_forward(t, &m.l2, softplus(t, ag_dense_forward(t, &m.l1, X, NULL)), NULL);
        printf("x = %5.2f  sin(x) = %7.4f  model %7.4f\n", (double)xb[0], sin((double)xb[0]), (double)h->value[0]);
    }
    ag_optim_free(opt);
    ag_tape_free(t);
    ag_params_free(ps);
    return 0;
}

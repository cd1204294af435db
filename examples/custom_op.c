/*
 * custom_op.c - ops written outside the library, trained through the tape.
 *
 * Each op is one static ag_op descriptor in this file with its shape check, forward and backward
 * side by side. The engine treats them like built-ins: an op is identified by its descriptor's
 * address, nothing is registered and nothing in autograd/ changes.
 *
 *   softplus   y = log(1 + e^x), element-wise;  dy/dx = sigmoid(x)
 *   conv1d     y[k,o,j] = sum_{c,r} w[o,c,r] x[k,c, j*s + r - p]  (x is 0 outside 0..L-1)
 *              x is K x C_in x L, w is C_out x C_in x R, stride s and padding p are op parameters.
 *              Computed as im2col + ag_gemm; the column matrices are kept for backward's dW.
 *   maxpool1d  y[.., j] = max_{i < win} x[.., j*s + i] over the last axis. Saves the argmax for
 *              backward; among tied maxima the first (lowest index) takes the whole gradient, and
 *              a NaN in a window wins (propagates).
 *
 * The program trains conv1d -> +b -> softplus -> maxpool1d -> dense on a synthetic task where the
 * structure matters: which of three short patterns sits, at a random position, in a noisy signal.
 * tests/engine/test_custom_op.c includes this file with CUSTOM_OP_NO_MAIN defined and gradient-checks
 * every op; docs/extending.md walks through writing an op step by step.
 *
 *     build/examples/custom_op
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/dense.h>
#include <tapegrad/optim.h>

/* ---------------------------------------------------------------- softplus (element-wise) */

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

/* ---------------------------------------------------------------- conv1d (im2col + GEMM)
 * Per example k, with CR = C_in R and Lo = (L + 2p - R)/s + 1 output positions:
 *   cols_k[(c,r), j] = x[k, c, j*s + r - p]      (CR x Lo; 0 in the padding)
 *   Y_k = W cols_k                               (C_out x Lo; W viewed as C_out x CR)
 * Backward, the two products of a linear map plus the scatter that undoes im2col:
 *   dW += dY_k cols_k^T
 *   dcols = W^T dY_k,  dx[k, c, j*s + r - p] += dcols[(c,r), j]   (col2im: += since taps overlap) */

typedef struct conv1d_params {
    size_t stride, padding;
} conv1d_params;

static ag_status conv1d_shape(ag_node *n) {
    const conv1d_params *p = n->params;
    const ag_tensor *x = n->in[0], *w = n->in[1];
    char sx[64], sw[64];
    ag_shape_str(x, sx, sizeof sx);
    ag_shape_str(w, sw, sizeof sw);
    if (x->ndim != 3 || w->ndim != 3)
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s and w is %s, both must be 3-D (K x C_in x L, C_out x C_in x R)",
                            sx, sw);
    if (x->shape[1] != w->shape[1])
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s but w is %s (in-channels differ)", sx, sw);
    const size_t L = x->shape[2], R = w->shape[2], P = p->padding;
    if (p->stride == 0) return ag_node_fail(n, AG_ERR_ARG, "stride is 0, must be >= 1");
    if (P >= R) /* a wider pad only adds outputs that see zeros (and keeps L + 2P from overflowing) */
        return ag_node_fail(n, AG_ERR_ARG, "padding %zu must be smaller than the window %zu (w is %s)", P, R, sw);
    if (L + 2 * P < R)
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s but w is %s (window %zu is longer than the padded length %zu)",
                            sx, sw, R, L + 2 * P);
    return ag_node_set_shape(n, 3, (size_t[]){x->shape[0], w->shape[0], (L + 2 * P - R) / p->stride + 1});
}

/* Output positions whose tap r lands inside the signal: 0 <= j*s + r - p < L  <=>  lo <= j < hi. */
static void conv1d_span(size_t r, size_t s, size_t p, size_t L, size_t Lo, size_t *lo, size_t *hi) {
    size_t a = r >= p ? 0 : (p - r + s - 1) / s;       /* first j with j*s + r >= p */
    size_t b = L + p > r ? (L + p - r + s - 1) / s : 0; /* first j with j*s + r >= p + L */
    if (b > Lo) b = Lo;
    *lo = a < b ? a : b;
    *hi = b;
}

/* cols (C*R x Lo) of one example x (C x L). With s = 1 the middle loop is a contiguous copy. */
static void im2col(const ag_real *restrict x, ag_real *restrict cols, size_t C, size_t L, size_t R,
                   size_t Lo, size_t s, size_t p) {
    for (size_t c = 0; c < C; c++)
        for (size_t r = 0; r < R; r++) {
            const ag_real *restrict xc = x + c * L;
            ag_real *restrict row = cols + (c * R + r) * Lo;
            size_t lo, hi, j = 0;
            conv1d_span(r, s, p, L, Lo, &lo, &hi);
            for (; j < lo; j++) row[j] = 0;
            for (; j < hi; j++) row[j] = xc[j * s + r - p];
            for (; j < Lo; j++) row[j] = 0;
        }
}

/* dx (C x L) += col2im(dcols): every tap's gradient goes back to the input element it read. */
static void col2im_add(const ag_real *restrict dcols, ag_real *restrict dx, size_t C, size_t L, size_t R,
                       size_t Lo, size_t s, size_t p) {
    for (size_t c = 0; c < C; c++)
        for (size_t r = 0; r < R; r++) {
            ag_real *restrict dxc = dx + c * L;
            const ag_real *restrict row = dcols + (c * R + r) * Lo;
            size_t lo, hi;
            conv1d_span(r, s, p, L, Lo, &lo, &hi);
            for (size_t j = lo; j < hi; j++) dxc[j * s + r - p] += row[j];
        }
}

static ag_status conv1d_forward(ag_node *n) {
    const conv1d_params *p = n->params;
    const ag_tensor *x = n->in[0], *w = n->in[1];
    const size_t K = x->shape[0], C = x->shape[1], L = x->shape[2];
    const size_t O = w->shape[0], R = w->shape[2], Lo = n->out.shape[2], CR = C * R;
    /* backward's dW reads every example's columns: keep them all only if backward will run */
    const size_t keep = ag_node_needs_grad(n) ? K : 1;
    ag_real *cols = ag_node_alloc(n, keep * CR * Lo * sizeof(ag_real));
    if (!cols) return AG_ERR_NOMEM; /* ag_node_alloc has recorded the message */
    for (size_t k = 0; k < K; k++) {
        ag_real *ck = cols + (keep == K ? k : 0) * CR * Lo;
        im2col(x->value + k * C * L, ck, C, L, R, Lo, p->stride, p->padding);
        ag_status st = ag_gemm(0, 0, O, Lo, CR, 1, w->value, CR, ck, Lo, 0, n->out.value + k * O * Lo, Lo);
        if (st != AG_OK) return ag_node_fail(n, st, "gemm failed: %s", ag_status_str(st));
    }
    n->saved = cols;
    return AG_OK;
}

static ag_status conv1d_backward(ag_node *n) {
    const conv1d_params *p = n->params;
    ag_tensor *x = n->in[0], *w = n->in[1];
    const size_t K = x->shape[0], C = x->shape[1], L = x->shape[2];
    const size_t O = w->shape[0], R = w->shape[2], Lo = n->out.shape[2], CR = C * R;
    const ag_real *cols = n->saved, *dy = n->out.grad;
    ag_real *dcols = NULL; /* scratch, reused for every example */
    if (x->grad && !(dcols = ag_node_alloc(n, CR * Lo * sizeof(ag_real)))) return AG_ERR_NOMEM;
    for (size_t k = 0; k < K; k++) {
        const ag_real *dyk = dy + k * O * Lo;
        ag_status st = AG_OK;
        if (w->grad) /* dW (O x CR) += dY_k cols_k^T */
            st = ag_gemm(0, 1, O, CR, Lo, 1, dyk, Lo, cols + k * CR * Lo, Lo, 1, w->grad, CR);
        if (st == AG_OK && x->grad) { /* dcols = W^T dY_k, then back to x */
            st = ag_gemm(1, 0, CR, Lo, O, 1, w->value, CR, dyk, Lo, 0, dcols, Lo);
            if (st == AG_OK) col2im_add(dcols, x->grad + k * C * L, C, L, R, Lo, p->stride, p->padding);
        }
        if (st != AG_OK) return ag_node_fail(n, st, "gemm failed: %s", ag_status_str(st));
    }
    return AG_OK;
}

static const ag_op conv1d_op = {"conv1d", 2, sizeof(conv1d_params), conv1d_shape, conv1d_forward,
                                conv1d_backward};

static ag_tensor *conv1d(ag_tape *t, ag_tensor *x, ag_tensor *w, size_t stride, size_t padding) {
    const conv1d_params p = {stride, padding};
    return ag_call(t, &conv1d_op, (ag_tensor *[]){x, w}, 2, &p);
}

/* ---------------------------------------------------------------- maxpool1d (saves the argmax)
 * Over the last axis of x (any rank >= 1), windows of win elements every s: Lo = (L - win)/s + 1.
 * y = x[argmax], so dx[argmax] += dy: only the chosen element of each window gets gradient, and
 * one element chosen by several overlapping windows gets the sum. */

typedef struct maxpool1d_params {
    size_t window, stride;
} maxpool1d_params;

static ag_status maxpool1d_shape(ag_node *n) {
    const maxpool1d_params *p = n->params;
    const ag_tensor *x = n->in[0];
    char sx[64];
    if (p->window == 0 || p->stride == 0)
        return ag_node_fail(n, AG_ERR_ARG, "window %zu and stride %zu must both be >= 1", p->window, p->stride);
    if (x->ndim == 0 || x->shape[x->ndim - 1] < p->window)
        return ag_node_fail(n, AG_ERR_SHAPE, "x is %s, its last axis is shorter than the window %zu",
                            ag_shape_str(x, sx, sizeof sx), p->window);
    size_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = (x->shape[x->ndim - 1] - p->window) / p->stride + 1;
    return ag_node_set_shape(n, x->ndim, shape);
}

static ag_status maxpool1d_forward(ag_node *n) {
    const maxpool1d_params *p = n->params;
    const ag_tensor *x = n->in[0];
    const size_t L = x->shape[x->ndim - 1], Lo = n->out.shape[n->out.ndim - 1], rows = x->size / L;
    /* the argmax is backward's only input: save it only if backward will run (not in no-grad mode) */
    size_t *arg = NULL;
    if (ag_node_needs_grad(n) && !(arg = ag_node_alloc(n, n->out.size * sizeof *arg))) return AG_ERR_NOMEM;
    for (size_t i = 0; i < rows; i++) {
        const ag_real *xr = x->value + i * L;
        ag_real *yr = n->out.value + i * Lo;
        for (size_t j = 0; j < Lo; j++) {
            const size_t start = j * p->stride, end = start + p->window;
            size_t best = start;
            for (size_t q = start + 1; q < end; q++) /* strict >: the first of tied maxima wins */
                if (xr[q] > xr[best] || isnan(xr[q])) best = q;
            yr[j] = xr[best];
            if (arg) arg[i * Lo + j] = i * L + best;
        }
    }
    n->saved = arg;
    return AG_OK;
}

static ag_status maxpool1d_backward(ag_node *n) {
    ag_tensor *x = n->in[0];
    if (!x->grad) return AG_OK;
    const size_t *arg = n->saved;
    const ag_real *dy = n->out.grad;
    for (size_t i = 0; i < n->out.size; i++) x->grad[arg[i]] += dy[i]; /* overlapping windows: += */
    return AG_OK;
}

static const ag_op maxpool1d_op = {"maxpool1d", 1, sizeof(maxpool1d_params), maxpool1d_shape,
                                   maxpool1d_forward, maxpool1d_backward};

static ag_tensor *maxpool1d(ag_tape *t, ag_tensor *x, size_t window, size_t stride) {
    const maxpool1d_params p = {window, stride};
    return ag_call(t, &maxpool1d_op, &x, 1, &p);
}

/* ---------------------------------------------------------------- the task and the model
 * Signals of SIG_LEN samples: N(0, NOISE^2) noise plus one of three patterns of 4 samples at a
 * uniformly random position; the label is the pattern. A dense layer on the raw signal would have
 * to learn each pattern at each position; a convolution shares one detector across positions and
 * the max-pool keeps its strongest response wherever it fired. */

enum {
    SIG_LEN = 32, N_CLASSES = 3, PAT_LEN = 4,
    CH = 8, CONV_R = 5, CONV_PAD = 2,                           /* conv: 1 -> CH channels, length kept */
    POOL_WIN = 8, POOL_STRIDE = 4,                              /* overlapping windows */
    POOL_OUT = (SIG_LEN - POOL_WIN) / POOL_STRIDE + 1,          /* 7 */
    N_TRAIN = 768, N_TEST = 384, BATCH = 32
};
#define NOISE 0.35

static const ag_real patterns[N_CLASSES][PAT_LEN] = {{1, 1, 1, 1}, {1, -1, 1, -1}, {-1, -1, 1, 1}};

static void make_signals(ag_rng *rng, ag_real *x, int32_t *label, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ag_real *xi = x + i * SIG_LEN;
        ag_rng_fill_normal(rng, xi, SIG_LEN, 0, NOISE);
        const int32_t c = (int32_t)ag_rng_below(rng, N_CLASSES);
        const size_t at = (size_t)ag_rng_below(rng, SIG_LEN - PAT_LEN + 1);
        for (int q = 0; q < PAT_LEN; q++) xi[at + (size_t)q] += patterns[c][q];
        label[i] = c;
    }
}

typedef struct pattern_net {
    ag_tensor *w, *b; /* conv weights CH x 1 x CONV_R, bias CH x 1 (broadcast along the signal) */
    ag_dense fc;      /* CH * POOL_OUT -> N_CLASSES */
} pattern_net;

/* Logits (K x N_CLASSES) of K signals x (K x SIG_LEN). */
static ag_tensor *pattern_logits(ag_tape *t, const pattern_net *m, ag_real *x, size_t K) {
    ag_tensor *X = ag_tensor_wrap(t, 3, (size_t[]){K, 1, SIG_LEN}, x);
    ag_tensor *h = softplus(t, ag_add(t, conv1d(t, X, m->w, 1, CONV_PAD), m->b)); /* K x CH x SIG_LEN */
    ag_tensor *pooled = maxpool1d(t, h, POOL_WIN, POOL_STRIDE);                    /* K x CH x POOL_OUT */
    ag_tensor *flat = ag_reshape(t, pooled, 2, (size_t[]){K, CH * POOL_OUT});
    return ag_dense_forward(t, &m->fc, flat, NULL);
}

static size_t count_correct(const ag_tensor *logits, const int32_t *label) {
    size_t ok = 0, K = logits->shape[0];
    for (size_t k = 0; k < K; k++) {
        const ag_real *z = logits->value + k * N_CLASSES;
        int32_t best = 0;
        for (int32_t c = 1; c < N_CLASSES; c++)
            if (z[c] > z[best]) best = c;
        ok += best == label[k];
    }
    return ok;
}

typedef struct pattern_run {
    int epochs;       /* passes over the training set */
    uint64_t seed;    /* data, initial weights and batch order */
    FILE *log;        /* progress lines (epochs 1-3, every 5th, the last), or NULL */
    double first_loss, last_loss; /* mean training loss of the first and the last epoch */
    double test_acc;  /* on N_TEST held-out signals */
} pattern_run;

/* Train the model with Adam and mini-batches; fills the results of run. */
static ag_status train_patterns(pattern_run *run) {
    ag_params *ps = NULL;
    ag_tape *t = NULL;
    ag_optim *opt = NULL;
    pattern_net m = {0};
    char err[AG_ERRMSG_SIZE] = "";
    ag_real *x = malloc((N_TRAIN + N_TEST) * SIG_LEN * sizeof *x);
    int32_t *label = malloc((N_TRAIN + N_TEST) * sizeof *label);
    ag_status st = x && label ? AG_OK : AG_ERR_NOMEM;
    if (st == AG_OK) st = ag_params_new(&ps);
    if (st == AG_OK) st = ag_params_add(ps, "conv.w", 3, (size_t[]){CH, 1, CONV_R}, AG_DECAY, &m.w);
    if (st == AG_OK) st = ag_params_add(ps, "conv.b", 2, (size_t[]){CH, 1}, 0, &m.b);
    if (st == AG_OK) st = ag_dense_init(&m.fc, ps, "fc", CH * POOL_OUT, N_CLASSES, AG_ACT_IDENTITY);
    if (st != AG_OK) {
        fprintf(stderr, "%s\n", ps ? ag_params_errmsg(ps) : "out of memory");
        goto done;
    }
    ag_rng rng;
    ag_rng_seed(&rng, run->seed);
    make_signals(&rng, x, label, N_TRAIN + N_TEST);
    ag_rng_fill_normal(&rng, m.w->value, m.w->size, 0, sqrt(2.0 / CONV_R)); /* He: fan-in 1 x R */
    ag_dense_init_weights(&m.fc, AG_INIT_GLOROT_NORMAL, &rng);

    st = ag_tape_new(&t, NULL);
    if (st == AG_OK)
        st = ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01}, err, sizeof err);
    if (st != AG_OK) {
        fprintf(stderr, "%s\n", err[0] ? err : ag_status_str(st));
        goto done;
    }

    ag_real xb[BATCH * SIG_LEN];
    int32_t yb[BATCH];
    uint32_t idx[N_TRAIN];
    for (uint32_t i = 0; i < N_TRAIN; i++) idx[i] = i;
    for (int epoch = 0; epoch < run->epochs; epoch++) {
        ag_rng_shuffle(&rng, idx, N_TRAIN);
        double sum = 0;
        size_t correct = 0;
        for (size_t s = 0; s + BATCH <= N_TRAIN; s += BATCH) {
            for (size_t k = 0; k < BATCH; k++) {
                memcpy(xb + k * SIG_LEN, x + idx[s + k] * SIG_LEN, sizeof(ag_real) * SIG_LEN);
                yb[k] = label[idx[s + k]];
            }
            ag_tape_reset(t);
            ag_tensor *logits = pattern_logits(t, &m, xb, BATCH);
            ag_tensor *J = ag_cross_entropy(t, logits, yb); /* a NULL logits propagates */
            ag_optim_zero_grad(opt);
            if ((st = ag_backward(t, J)) != AG_OK || (st = ag_optim_step(opt)) != AG_OK) {
                fprintf(stderr, "%s%s\n", ag_tape_errmsg(t), ag_optim_errmsg(opt));
                goto done;
            }
            sum += (double)J->value[0];
            correct += count_correct(logits, yb);
        }
        const double loss = sum / (N_TRAIN / BATCH);
        if (epoch == 0) run->first_loss = loss;
        run->last_loss = loss;
        if (run->log && (epoch < 3 || (epoch + 1) % 5 == 0 || epoch + 1 == run->epochs))
            fprintf(run->log, "epoch %2d  loss %.4f  train accuracy %5.1f%%\n", epoch + 1, loss,
                    100.0 * (double)correct / (N_TRAIN / BATCH * BATCH));
    }

    /* held-out signals in no-grad mode: nothing is saved for backward (no argmax, one im2col block) */
    ag_tape_reset(t);
    ag_tape_set_grad_enabled(t, 0);
    ag_tensor *logits = pattern_logits(t, &m, x + N_TRAIN * SIG_LEN, N_TEST);
    ag_tape_set_grad_enabled(t, 1);
    if (!logits) {
        st = ag_tape_status(t);
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
        goto done;
    }
    run->test_acc = (double)count_correct(logits, label + N_TRAIN) / N_TEST;

done:
    ag_optim_free(opt);
    ag_tape_free(t);
    ag_params_free(ps);
    free(x);
    free(label);
    return st;
}

#ifndef CUSTOM_OP_NO_MAIN
int main(void) {
    pattern_run run = {.epochs = 20, .seed = 2024, .log = stdout};
    printf("task: which of %d patterns of %d samples sits at a random place in a noisy signal of %d "
           "(noise sd %.2f); %d training, %d test signals\n",
           N_CLASSES, PAT_LEN, SIG_LEN, NOISE, N_TRAIN, N_TEST);
    printf("model: conv1d 1->%d (R=%d, pad %d) + b -> softplus -> maxpool1d (window %d, stride %d) -> "
           "dense %d->%d; Adam, batch %d, %s\n",
           CH, CONV_R, CONV_PAD, POOL_WIN, POOL_STRIDE, CH * POOL_OUT, N_CLASSES, BATCH, AG_REAL_NAME);
    if (train_patterns(&run) != AG_OK) return 1;
    printf("test accuracy %.1f%% (chance %.1f%%)\n", 100 * run.test_acc, 100.0 / N_CLASSES);
    return 0;
}
#endif

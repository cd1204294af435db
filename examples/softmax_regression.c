/*
 * softmax_regression.c - a custom model composed from raw tape ops, no layer helpers:
 * multinomial logistic regression on three Gaussian blobs in the plane.
 *
 *     logits = X W^T + b                     ag_matmul_ex(X, W, 0, 1), ag_add (b broadcasts)
 *     logp   = log_softmax(logits)           ag_log_softmax, row by row
 *     J      = -(1/K) sum_k sum_c Y_kc logp_kc + lambda/2 sum W^2
 *                                            ag_mul, ag_sum, ag_scale, ag_l2_decay
 * with Y the one-hot labels. The built-in ag_cross_entropy computes the same data term fused;
 * the example prints both to show they agree. Trained with Adam, a cosine schedule with warm-up
 * and shuffled mini-batches (K = 20).
 *
 *     build/examples/softmax_regression
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/dense.h>
#include <tapegrad/optim.h>

enum { CLASSES = 3, DIM = 2, N = 300, BATCH = 20, EPOCHS = 40 };

int main(void) {
    /* the data: 100 points around each of three centres */
    static ag_real xs[N * DIM], onehot[N * CLASSES];
    static int32_t labels[N];
    const double centre[CLASSES][DIM] = {{-2, 0}, {2, 0}, {0, 2.5}};
    ag_rng rng;
    ag_rng_seed(&rng, 77);
    for (int i = 0; i < N; i++) {
        int c = i % CLASSES;
        labels[i] = c;
        for (int d = 0; d < DIM; d++) xs[i * DIM + d] = (ag_real)(centre[c][d] + 0.9 * ag_rng_normal(&rng));
        for (int k = 0; k < CLASSES; k++) onehot[i * CLASSES + k] = (ag_real)(k == c);
    }

    ag_params *ps;
    ag_tape *t;
    ag_tensor *W, *b;
    if (ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK) return 1;
    ag_params_add(ps, "W", 2, (size_t[]){CLASSES, DIM}, AG_DECAY, &W); /* classes x inputs */
    ag_params_add(ps, "b", 1, (size_t[]){CLASSES}, 0, &b);
    ag_rng_fill_normal(&rng, W->value, W->size, 0, 0.01); /* the derivation's small Gaussian */

    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    ag_optim_config cfg = {.kind = AG_OPT_ADAM, .lr = 0.05,
                           .schedule = {.kind = AG_SCHED_COSINE, .warmup_steps = 15,
                                        .total_steps = EPOCHS * (N / BATCH), .min_lr = 0.001}};
    if (ag_optim_new(&opt, ps, &cfg, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    uint32_t idx[N];
    for (uint32_t i = 0; i < N; i++) idx[i] = i;
    ag_real xb[BATCH * DIM], yb[BATCH * CLASSES];
    int32_t lb[BATCH];
    const ag_real lambda = (ag_real)1e-3;
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        ag_rng_shuffle(&rng, idx, N);
        double sum = 0, fused = 0;
        for (int s = 0; s < N; s += BATCH) {
            for (int k = 0; k < BATCH; k++) {
                memcpy(xb + k * DIM, xs + idx[s + k] * DIM, DIM * sizeof *xb);
                memcpy(yb + k * CLASSES, onehot + idx[s + k] * CLASSES, CLASSES * sizeof *yb);
                lb[k] = labels[idx[s + k]];
            }
            ag_tape_reset(t);
            ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){BATCH, DIM}, xb);
            ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){BATCH, CLASSES}, yb);
            ag_tensor *logits = ag_add(t, ag_matmul_ex(t, X, W, 0, 1), b);   /* X W^T + b */
            ag_tensor *logp = ag_log_softmax(t, logits);
            ag_tensor *nll = ag_scale(t, ag_sum(t, ag_mul(t, Y, logp)), (ag_real)(-1.0 / BATCH));
            ag_tensor *J = ag_add(t, nll, ag_l2_decay(t, lambda, ps));       /* weights only */
            ag_tensor *ce = ag_cross_entropy(t, logits, lb);                 /* the fused built-in */
            ag_optim_zero_grad(opt);
            if (!J || !ce || ag_backward(t, J) != AG_OK || ag_optim_step(opt) != AG_OK) {
                fprintf(stderr, "%s%s\n", ag_tape_errmsg(t), ag_optim_errmsg(opt));
                return 1;
            }
            sum += (double)nll->value[0];
            fused += (double)ce->value[0];
        }
        if (epoch % 10 == 0 || epoch == EPOCHS - 1)
            printf("epoch %2d  lr %.4f  loss %.5f  (fused cross-entropy %.5f)\n", epoch, ag_optim_lr(opt),
                   sum / (N / BATCH), fused / (N / BATCH));
    }

    /* accuracy over the whole set, in no-grad mode */
    ag_tape_reset(t);
    ag_tape_set_grad_enabled(t, 0);
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){N, DIM}, xs);
    ag_tensor *logits = ag_add(t, ag_matmul_ex(t, X, W, 0, 1), b);
    if (!logits) {
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
        return 1;
    }
    int correct = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (logits->value[i * CLASSES + c] > logits->value[i * CLASSES + best]) best = c;
        correct += best == labels[i];
    }
    printf("W = [[%.3f %.3f] [%.3f %.3f] [%.3f %.3f]]  b = [%.3f %.3f %.3f]\n", (double)W->value[0],
           (double)W->value[1], (double)W->value[2], (double)W->value[3], (double)W->value[4], (double)W->value[5],
           (double)b->value[0], (double)b->value[1], (double)b->value[2]);
    printf("accuracy %d/%d = %.1f%%\n", correct, N, 100.0 * correct / N);
    ag_optim_free(opt);
    ag_tape_free(t);
    ag_params_free(ps);
    return 0;
}

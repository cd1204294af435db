/*
 * xor.c - the smallest end-to-end training: a 2-4-1 sigmoid MLP learns XOR with the seed's cost
 * (squared error + L2 on the weights) and plain full-batch SGD, the derivation's update
 *     W := W - alpha [(1/K) DeltaW + lambda W],   b := b - alpha (1/K) Deltab.
 * Prints the loss as it trains and the final predictions. Deterministic: same seed, same weights.
 *
 *     build/examples/xor [seed]
 */
#include <stdio.h>
#include <stdlib.h>

#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

#define STEPS 3000    /* fixed budget of full-batch steps */
#define ALPHA 2.0     /* learning rate */
#define LAMBDA 1e-5   /* weight decay on W only */

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    ag_real x[4 * 2] = {0, 0, 0, 1, 1, 0, 1, 1}; /* K x 2, one example per row */
    ag_real y[4 * 1] = {0, 1, 1, 0};             /* K x 1 */
    const size_t K = 4;

    ag_params *ps;
    ag_tape *t;
    ag_mlp *m;
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    if (ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK) return 1;
    ag_mlp_config cfg = {.spec = "2-4-1", .hidden = AG_ACT_SIGMOID, .output = AG_ACT_SIGMOID,
                         .init = AG_INIT_GLOROT_NORMAL, .seed = seed};
    if (ag_mlp_new(&m, ps, &cfg, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = ALPHA}, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    ag_tensor *h = NULL;
    for (int step = 0; step <= STEPS; step++) {
        ag_tape_reset(t);
        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, 2}, x);
        ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){K, 1}, y);
        h = ag_mlp_forward(t, m, X, NULL, NULL);                    /* h = a^(3) */
        ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, Y, (ag_real)LAMBDA); /* + lambda/2 sum W^2 */
        if (!J) {
            fprintf(stderr, "%s\n", ag_tape_errmsg(t));
            return 1;
        }
        if (step == STEPS) break; /* last forward only, for the predictions */
        ag_optim_zero_grad(opt);
        if (ag_backward(t, J) != AG_OK || ag_optim_step(opt) != AG_OK) {
            fprintf(stderr, "%s%s\n", ag_tape_errmsg(t), ag_optim_errmsg(opt));
            return 1;
        }
        if (step % 500 == 0) printf("step %4d  loss %.6f\n", step, (double)J->value[0]);
    }
    int correct = 0;
    for (size_t k = 0; k < K; k++) {
        int pred = h->value[k] > 0.5f;
        correct += pred == (int)y[k];
        printf("%g xor %g = %.4f -> %d\n", (double)x[2 * k], (double)x[2 * k + 1], (double)h->value[k], pred);
    }
    printf("accuracy %d/%zu\n", correct, K);
    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
    return correct == (int)K ? 0 : 2;
}

/*
 * eval.c - test-set evaluation (after each epoch, and --eval of a saved model).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm.h"

/* Test-set evaluation in no-grad mode: accuracy, mean loss, per-class correct counts. */
double evaluate(net *n, const ag_dataset *ds, ag_real *x, int32_t *y, ag_real *onehot, uint32_t *idx,
                       size_t bs, double *loss_out, size_t *correct, size_t *total) {
    size_t right = 0;
    double loss = 0;
    for (int c = 0; c < 10; c++) correct[c] = total[c] = 0;
    int prev = ag_tape_set_grad_enabled(n->t, 0);
    for (size_t s = 0; s < ds->n; s += bs) {
        size_t k = ds->n - s < bs ? ds->n - s : bs;
        for (size_t i = 0; i < k; i++) idx[i] = (uint32_t)(s + i);
        ag_dataset_batch(ds, idx, k, x, y, onehot);
        ag_tape_reset(n->t);
        ag_tensor *X = ag_tensor_wrap(n->t, 2, (size_t[]){k, n->in}, x);
        ag_tensor *h = ag_mlp_forward(n->t, n->mlp, X, NULL, NULL);
        ag_tensor *J = n->mse ? ag_squared_error(n->t, h, ag_tensor_wrap(n->t, 2, (size_t[]){k, 10}, onehot))
                              : ag_cross_entropy(n->t, h, y);
        if (!J) fail(EXIT_RUN, "evaluation: %s", ag_tape_errmsg(n->t));
        loss += (double)J->value[0] * (double)k;
        for (size_t i = 0; i < k; i++) {
            const ag_real *r = h->value + i * 10;
            int best = 0;
            for (int c = 1; c < 10; c++)
                if (r[c] > r[best]) best = c;
            total[y[i]]++;
            if (best == y[i]) correct[y[i]]++, right++;
        }
    }
    ag_tape_set_grad_enabled(n->t, prev);
    *loss_out = loss / (double)ds->n;
    return (double)right / (double)ds->n;
}

/* ---------------------------------------------------------------- --eval */

int run_eval(const cfg *c) {
    char err[AG_IO_ERRMSG_SIZE];
    ag_model_file *mf;
    if (ag_model_open(c->eval, &mf, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    const char *kind = ag_model_meta(mf, "kind");
    char sv[64];
    if (kind && !strcmp(kind, "fashion_mnist checkpoint"))
        fail(EXIT_RUN, "%s is a training checkpoint, not a model: --eval takes the model file (--model, by default "
             "fashion_mnist.safetensors), or continue training with --resume %s",
             c->eval, c->eval);
    if (kind && strcmp(kind, "fashion_mnist model"))
        fail(EXIT_RUN, "%s: kind \"%s\" in the file: not a fashion_mnist model", c->eval, shown(kind, sv, sizeof sv));
    const char *arch = ag_model_meta(mf, "arch"), *act = ag_model_meta(mf, "activation"),
               *loss = ag_model_meta(mf, "loss");
    if (!arch || !act || !loss)
        fail(EXIT_RUN, "%s: the file lacks the arch/activation/loss metadata that fashion_mnist writes", c->eval);
    const char *known;
    if ((known = unknown_name("activation", act)))
        fail(EXIT_RUN, "%s: activation \"%s\" in the file is unknown (%s)", c->eval, shown(act, sv, sizeof sv), known);
    if ((known = unknown_name("loss", loss)))
        fail(EXIT_RUN, "%s: loss \"%s\" in the file is unknown (%s)", c->eval, shown(loss, sv, sizeof sv), known);
    const char *ep = ag_model_meta(mf, "epochs");
    unsigned long long epochs = 0;
    if (ep && meta_count(ep, 1000000000ULL, &epochs) != 0)
        fail(EXIT_RUN, "%s: epochs \"%s\" in the file is not a number of epochs", c->eval, shown(ep, sv, sizeof sv));
    check_arch(mf, c->eval, "arch", arch);
    net n;
    net_build(&n, arch, act, loss, "he", 1);
    if (ag_model_read(mf, n.ps, NULL, 0, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    check_finite(c->eval, n.ps, NULL, 0);
    if (ep) printf("model %s: %s %s, %s loss, trained %llu epochs", c->eval, arch, act, loss, epochs);
    else printf("model %s: %s %s, %s loss, trained ? epochs", c->eval, arch, act, loss);
    /* the accuracy saved with it, and on how many test images (files before test_images: unknown) */
    const char *sa = ag_model_meta(mf, "test_accuracy"), *ti = ag_model_meta(mf, "test_images");
    double sav;
    unsigned long long tin;
    if (sa && meta_number(sa, &sav) == 0 && sav <= 1) {
        if (ti && meta_count(ti, 1000000000ULL, &tin) == 0)
            printf(", saved test_accuracy %.4f on %llu images", sav, tin);
        else
            printf(", saved test_accuracy %.4f", sav);
    }
    double in_mean = 0, in_std = 0;
    read_input_stats(mf, c->eval, "model", &in_mean, &in_std);
    if (in_std > 0) printf("; inputs standardised, (pixel / 255 - %.4f) / %.4f", in_mean, in_std);
    printf("\n");
    ag_model_close(mf);
    ag_dataset test;
    load_split(&test, c->data, "t10k", c->test_limit);
    if (in_std > 0 && ag_dataset_standardize(&test, in_mean, in_std) != AG_OK)
        fail(EXIT_RUN, "%s: unusable input_mean/input_std", c->eval);
    size_t bs = 1000;
    ag_real *x = alloc_aligned(bs * 784 * sizeof *x), *oh = alloc_aligned(bs * 10 * sizeof *oh);
    int32_t *y = malloc(bs * sizeof *y);
    uint32_t *idx = malloc(bs * sizeof *idx);
    if (!x || !oh || !y || !idx) fail(EXIT_RUN, "out of memory");
    size_t correct[10], total[10];
    double loss_v, t0 = now();
    double acc = evaluate(&n, &test, x, y, oh, idx, bs, &loss_v, correct, total);
    double dt = now() - t0;
    print_classes(correct, total);
    printf("eval test_accuracy=%.4f test_loss=%.4f images=%zu seconds=%.2f\n", acc, loss_v, test.n, dt);
    free(x), free(oh), free(y), free(idx);
    ag_dataset_free(&test);
    net_free(&n);
    return finish(0);
}


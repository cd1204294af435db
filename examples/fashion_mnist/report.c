/*
 * report.c - what fashion_mnist prints and writes besides the model and checkpoint: the settings'
 * header, the progress bar and per-epoch lines, the metrics CSV, the SVG plot, the per-class table
 * and the final lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm.h"
#include "svg.h"

static const char *const CLASS_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* ---------------------------------------------------------------- before training */

/* What is used: a resumed run's settings are the checkpoint's (and the flags that replace them). */
void print_header(const run *r) {
    const cfg *c = &r->c;
    size_t numel = 0;
    for (size_t i = 0; i < ag_params_count(r->n.ps); i++) numel += ag_params_at(r->n.ps, i)->size;
    char head[1100], capped[96] = "";
    if (c->resume[0]) snprintf(head, sizeof head, "resumed from %s", c->resume);
    else snprintf(head, sizeof head, "preset %s", c->preset);
    if (c->threads > ag_get_threads())
        snprintf(capped, sizeof capped, "; --threads %ld is capped at %d", c->threads, ag_get_threads());
    printf("fashion_mnist: %s: %s %s, %s loss, %s lr %g %s, lambda %g (in the %s), batch %zu, %ld epochs, seed %llu, "
           "%d thread%s (%s kernels%s), " AG_REAL_NAME ", denormals %s\n",
           head, c->arch, c->act, c->loss, c->optim, c->lr, c->schedule, c->lambda, c->l2, r->bs, c->epochs, c->seed,
           ag_get_threads(), ag_get_threads() == 1 ? "" : "s", ag_kernel_name(), capped,
           r->flushed ? "flushed (FTZ/DAZ; --no-flush-denormal keeps them)" : "kept");
    printf("data: %zu training and %zu test images from %s; %zu parameters\n", r->train.n, r->test.n, c->data, numel);
    if (r->in_std > 0)
        printf("inputs: standardised, (pixel / 255 - %.4f) / %.4f (the training set's mean and std%s)\n", r->in_mean,
               r->in_std, c->resume[0] ? ", as saved in the checkpoint" : "");
    else
        printf("inputs: pixel / 255 (--normalize none)\n");
}

/* ---------------------------------------------------------------- each epoch */

/* The metrics CSV, through a temporary file renamed over the target (resolved by output_target
 * each time: a symbolic link is followed, anything but a regular file refused); the temporary file
 * is removed on every failure. */
void write_metrics(const char *path, const hist *h, size_t n) {
    char real[1100], tmp[1200];
    output_target("metrics", path, real, sizeof real);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", real, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) fail(EXIT_RUN, "%s: cannot write: %s", path, strerror(errno));
    errno = 0;
    fprintf(f, "epoch,train_loss,test_loss,test_accuracy,learning_rate,epoch_seconds,samples_per_second\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%zu,%.6f,%.6f,%.4f,%.6g,%.3f,%.0f\n", i + 1, h[i].train_loss, h[i].test_loss, h[i].test_acc,
                h[i].lr, h[i].seconds, h[i].sps);
    int e = ferror(f) ? (errno ? errno : EIO) : 0;
    if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
    if (!e && rename(tmp, real) != 0) e = errno;
    if (e) {
        unlink(tmp);
        fail(EXIT_RUN, "%s: cannot write: %s", path, strerror(e));
    }
}

void progress(int epoch, int epochs, size_t step, size_t steps, double loss, double sps, double eta) {
    int width = 24, fill = steps ? (int)((double)step / (double)steps * width) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d/%d [%s] %zu/%zu loss %.4f %6.0f samples/s ETA %3.0fs \x1b[K", epoch, epochs, bar,
            step, steps, loss, sps, eta);
    fflush(stderr);
}

void print_epoch(const run *r, size_t epoch) {
    const hist *h = &r->h[epoch];
    printf("epoch %zu/%ld  train_loss=%.4f  test_loss=%.4f  test_accuracy=%.4f  lr=%.4g  %.1fs  %.0f samples/s\n",
           epoch + 1, r->c.epochs, h->train_loss, h->test_loss, h->test_acc, h->lr, h->seconds, h->sps);
}

/* The SVG plot of the first epochs of the history. */
void write_plot(const run *r, size_t epochs) {
    const cfg *c = &r->c;
    double *a = malloc(3 * epochs * sizeof *a);
    if (!a) fail(EXIT_RUN, "out of memory");
    for (size_t i = 0; i < epochs; i++) {
        a[i] = r->h[i].train_loss;
        a[epochs + i] = r->h[i].test_loss;
        a[2 * epochs + i] = r->h[i].test_acc;
    }
    char title[400];
    snprintf(title, sizeof title, "Fashion-MNIST %s %s, %s loss, %s", c->arch, c->act, c->loss, c->optim);
    char real[1100];
    output_target("plot", c->plot, real, sizeof real); /* svg_write_curves removes its temporary file on failure */
    if (svg_write_curves(real, title, epochs, a, a + epochs, a + 2 * epochs) != 0)
        fail(EXIT_RUN, "%s: cannot write: %s", c->plot, strerror(errno));
    free(a);
}

/* ---------------------------------------------------------------- at the end */

void print_classes(const size_t *correct, const size_t *total) {
    printf("\nper-class test accuracy:\n  %-12s %9s %13s\n", "class", "accuracy", "correct/total");
    for (int c = 0; c < 10; c++)
        printf("  %-12s %8.2f%% %6zu/%-6zu\n", CLASS_NAMES[c], total[c] ? 100.0 * (double)correct[c] / (double)total[c] : 0.0,
               correct[c], total[c]);
}


/* After the model is written: the per-class table, the files, and the final line. */
void print_summary(const run *r) {
    const cfg *c = &r->c;
    print_classes(r->correct, r->total);
    printf("\nsteady-state heap allocations in training steps: %zu\n", r->steady_allocs);
    if (c->model[0]) printf("model: %s\n", c->model);
    if (c->checkpoint[0]) printf("checkpoint: %s\n", c->checkpoint);
    if (c->metrics[0]) printf("metrics: %s\n", c->metrics);
    if (c->plot[0]) printf("plot: %s\n", c->plot);
    printf("final test_accuracy=%.4f epochs=%zu train_seconds=%.2f samples_per_second=%.0f\n", r->acc, r->epochs_done,
           r->train_seconds, r->train_seconds > 0 ? r->samples_done / r->train_seconds : 0.0);
}

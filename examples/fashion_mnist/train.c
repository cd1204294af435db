/*
 * train.c - a training run: the data, the network and its optimizer, the epochs (each step on the
 * tape, then evaluation, checkpoint, metrics and plot), and the final model.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm.h"

/* Counting allocator: proves the steady-state step allocates nothing. */
static atomic_size_t n_allocs;
static void *c_malloc(size_t s, void *u) {
    (void)u;
    atomic_fetch_add(&n_allocs, 1);
    return malloc(s);
}
static void *c_realloc(void *p, size_t s, void *u) {
    (void)u;
    atomic_fetch_add(&n_allocs, 1);
    return realloc(p, s);
}
static void c_free(void *p, void *u) {
    (void)u;
    free(p);
}

void install_counting_allocator(void) {
    static ag_allocator al = {c_malloc, c_realloc, c_free, NULL};
    ag_set_allocator(&al);
}

/* ---------------------------------------------------------------- setup */

/* Both splits; input standardisation with the training set's statistics. A resumed run keeps its
 * checkpoint's, so that it goes on bit for bit (and --data or --limit cannot shift them). */
void load_data(run *r) {
    const cfg *c = &r->c;
    load_split(&r->train, c->data, "train", c->limit);
    load_split(&r->test, c->data, "t10k", c->test_limit);
    if (!strcmp(c->normalize, "standard")) {
        if (r->ck) read_input_stats(r->ck, c->resume, "checkpoint", &r->in_mean, &r->in_std);
        if (!(r->in_std > 0) && ag_dataset_pixel_stats(&r->train, &r->in_mean, &r->in_std) != AG_OK)
            fail(EXIT_RUN, "pixel statistics: no data");
        if (!(r->in_std > 0)) fail(EXIT_RUN, "--normalize standard: every training pixel has the same value (std 0)");
        if (ag_dataset_standardize(&r->train, r->in_mean, r->in_std) != AG_OK ||
            ag_dataset_standardize(&r->test, r->in_mean, r->in_std) != AG_OK)
            fail(EXIT_RUN, "--normalize standard: mean %g, std %g are unusable", r->in_mean, r->in_std);
    }
    snprintf(r->in_mean_s, sizeof r->in_mean_s, "%.17g", r->in_mean);
    snprintf(r->in_std_s, sizeof r->in_std_s, "%.17g", r->in_std);
}

/* The optimizer's settings from the run's. */
static ag_optim_config optim_config(const run *r) {
    const cfg *c = &r->c;
    /* zero_grad: the step clears each gradient as it consumes it (no separate zeroing pass) */
    ag_optim_config oc = {.lr = c->lr, .momentum = c->momentum, .clip_norm = c->clip, .zero_grad = 1};
    if (!strcmp(c->optim, "sgd")) oc.kind = AG_OPT_SGD;
    else if (!strcmp(c->optim, "momentum")) oc.kind = AG_OPT_MOMENTUM;
    else if (!strcmp(c->optim, "nesterov")) oc.kind = AG_OPT_NESTEROV;
    else if (!strcmp(c->optim, "adam")) oc.kind = AG_OPT_ADAM;
    else if (!strcmp(c->optim, "adamw")) oc.kind = AG_OPT_ADAMW;
    else fail(EXIT_RUN, "unknown optimizer \"%s\" (sgd, momentum, nesterov, adam, adamw)", c->optim);
    if (unknown_name("l2", c->l2)) fail(EXIT_RUN, "unknown --l2 \"%s\" (cost, optimizer)", c->l2);
    /* lambda in the optimizer: coupled decay (g + lambda W, what the cost's term adds; adamw: decoupled),
     * on the AG_DECAY weights only, as the cost's term */
    if (strcmp(c->l2, "cost")) oc.weight_decay = c->lambda;
    /* the schedule spans the steps done and the steps to come: on a resume with another --batch or
     * --limit the steps per epoch change, and steps * epochs could end before the checkpoint's step
     * count (lr 0 for the rest of the run) */
    uint64_t total_steps = (uint64_t)r->steps * (uint64_t)c->epochs;
    if (r->ck && r->start_epoch < (size_t)c->epochs)
        total_steps = r->ck_steps + (uint64_t)r->steps * (uint64_t)((size_t)c->epochs - r->start_epoch);
    if (!strcmp(c->schedule, "cosine"))
        oc.schedule = (ag_schedule){.kind = AG_SCHED_COSINE, .total_steps = total_steps};
    else if (!strcmp(c->schedule, "step")) /* x0.1 after a third and after two thirds of the steps */
        oc.schedule = (ag_schedule){
            .kind = AG_SCHED_STEP, .step_size = total_steps / 3 ? total_steps / 3 : 1, .gamma = 0.1};
    else if (strcmp(c->schedule, "constant"))
        fail(EXIT_RUN, "unknown schedule \"%s\" (constant, cosine, step)", c->schedule);
    return oc;
}

/* The network and its optimizer, with a resumed checkpoint's weights and state. */
void setup_training(run *r) {
    const cfg *c = &r->c;
    char err[AG_IO_ERRMSG_SIZE];
    net_build(&r->n, c->arch, c->act, c->loss, c->init, c->seed);
    r->bs = (size_t)c->batch;
    r->steps = (r->train.n + r->bs - 1) / r->bs;
    ag_optim_config oc = optim_config(r);
    if (ag_optim_new(&r->opt, r->n.ps, &oc, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    r->lambda_cost = !strcmp(c->l2, "cost") ? (ag_real)c->lambda : 0;
    r->n_state = ag_optim_state_count(r->opt);
    for (size_t i = 0; i < r->n_state && i < 8; i++) {
        const char *nm;
        ag_optim_state(r->opt, i, &nm, &r->state[i].data, &r->state[i].n);
        snprintf(r->state_names[i], sizeof r->state_names[i], "optim.%s", nm);
        r->state[i].name = r->state_names[i];
    }
    if (r->ck) resume_weights(r);
}

/* Buffers for one batch, reused by every step: the step allocates nothing. */
static void alloc_buffers(run *r) {
    size_t ebs = r->bs < r->train.n ? r->bs : r->train.n; /* a batch larger than the data is the whole data */
    if (ebs < 1000) ebs = 1000;                            /* evaluate() goes 1000 images at a time */
    r->x = alloc_aligned(ebs * 784 * sizeof *r->x);
    r->oh = alloc_aligned(ebs * 10 * sizeof *r->oh);
    r->y = malloc(ebs * sizeof *r->y);
    r->order = malloc(r->train.n * sizeof *r->order);
    r->eidx = malloc(ebs * sizeof *r->eidx);
    if (!r->x || !r->oh || !r->y || !r->order || !r->eidx) fail(EXIT_RUN, "out of memory");
    for (size_t i = 0; i < r->n.mlp->n_layers; i++) r->weights[i] = r->n.mlp->weights[i];
}

/* ---------------------------------------------------------------- the epochs */

/* The history grows with the epochs run, not with --epochs. */
static void grow_history(run *r, size_t epoch) {
    if (epoch < r->h_cap) return;
    size_t cap = r->h_cap * 2 > epoch + 1 ? r->h_cap * 2 : epoch + 1;
    hist *nh = realloc(r->h, cap * sizeof *r->h);
    if (!nh) fail(EXIT_RUN, "out of memory");
    memset(nh + r->h_cap, 0, (cap - r->h_cap) * sizeof *nh);
    r->h = nh, r->h_cap = cap;
}

/* One step on the batch of samples order[s * bs ...] (k of them): forward, backward and update.
 * *loss gets the batch's loss; AG_ERR_NUMERIC when it or the gradient is not finite (no update). */
static ag_status train_step(run *r, size_t s, size_t k, double *loss) {
    if (r->dist) return dist_step(r, s, k, loss);
    net *n = &r->n;
    ag_tape_reset(n->t);
    ag_dataset_batch(&r->train, r->order + s * r->bs, k, r->x, r->y, n->mse ? r->oh : NULL);
    ag_tensor *X = ag_tensor_wrap(n->t, 2, (size_t[]){k, 784}, r->x);
    ag_tensor *hh = ag_mlp_forward(n->t, n->mlp, X, NULL, NULL);
    ag_tensor *J;
    if (n->mse)
        J = ag_cost_squared_error_l2(n->t, hh, ag_tensor_wrap(n->t, 2, (size_t[]){k, 10}, r->oh), r->lambda_cost,
                                     r->weights, n->mlp->n_layers);
    else
        J = ag_cost_cross_entropy_l2(n->t, hh, r->y, r->lambda_cost, r->weights, n->mlp->n_layers);
    if (!J) fail(EXIT_RUN, "step %zu: %s", s, ag_tape_errmsg(n->t));
    /* backward and update in one sweep: each weight is updated from its gradient tile by
     * tile, as the GEMM produces it (bit-identical to ag_backward + ag_optim_step) */
    double lv = *loss = (double)J->value[0];
    ag_status st = isfinite(lv) ? ag_optim_backward_step(r->opt, n->t, J) : AG_ERR_NUMERIC;
    if (st != AG_OK && st != AG_ERR_NUMERIC) fail(EXIT_RUN, "training step: %s", ag_optim_errmsg(r->opt));
    return st;
}

/* A stop (blow-up or signal): "fashion_mnist: <what>" and, on the same line, where training can go
 * on from (last_checkpoint). */
FM_PRINTF(2, 3) static void report_stop(const run *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fashion_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    last_checkpoint(r);
}

/* The steps of one epoch; *loss_sum gets the sum of the samples' losses. Returns 0 when it stopped
 * early (r->blown or r->interrupted set, the message written). */
static int train_epoch(run *r, size_t epoch, double t0, double *loss_sum) {
    double last_draw = 0;
    for (size_t s = 0; s < r->steps; s++) {
        size_t a0 = atomic_load(&n_allocs);
        size_t k = r->train.n - s * r->bs < r->bs ? r->train.n - s * r->bs : r->bs;
        double lv;
        if (train_step(r, s, k, &lv) == AG_ERR_NUMERIC) {
            if (r->tty) fputc('\n', stderr);
            report_stop(r,
                        "numerical blow-up: the loss is %g at epoch %zu step %zu/%zu (learning rate %g"
                        "%s too high?); stopping.\nfashion_mnist: ",
                        lv, epoch + 1, s + 1, r->steps, ag_optim_lr(r->opt), r->c.lambda > 0 ? " or lambda" : "");
            r->blown = 1;
            return 0;
        }
        *loss_sum += lv * (double)k;
        /* --dist: every rank stops at the step where some rank saw the signal (summed in the reduction) */
        if (r->dist ? r->dist_stop : stop_signal) {
            int sig = stop_signal ? stop_signal : SIGTERM;
            if (r->tty) fputs("\r\x1b[K", stderr);
            report_stop(r, "interrupted (%s) at epoch %zu step %zu/%zu; ", signal_name(sig), epoch + 1, s + 1,
                        r->steps);
            r->interrupted = sig;
            return 0;
        }
        if (s > 0) r->steady_allocs += atomic_load(&n_allocs) - a0;
        if (r->tty) {
            double tn = now();
            if (tn - last_draw >= 0.1 || s + 1 == r->steps) {
                double el = tn - t0, done = (double)(s * r->bs + k);
                progress((int)epoch + 1, (int)r->c.epochs, s + 1, r->steps, *loss_sum / done, done / el,
                         el / done * ((double)r->train.n - done));
                last_draw = tn;
            }
        }
    }
    return 1;
}

/* Every parameter finite after an epoch. */
static int weights_finite(const ag_params *ps) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        const ag_tensor *p = ag_params_at(ps, i);
        for (size_t j = 0; j < p->size; j++)
            if (!isfinite((double)p->value[j])) return 0;
    }
    return 1;
}

/* After the steps of an epoch: its row of the history, the evaluation, the line, the checkpoint and
 * the metrics and plot files. Returns 0 when the weights blew up (r->blown set). */
static int end_epoch(run *r, size_t epoch, double dt, double loss_sum, double lr_epoch) {
    const cfg *c = &r->c;
    if (r->tty) fputs("\r\x1b[K", stderr);
    r->train_seconds += dt;
    r->samples_done += (double)r->train.n;
    hist *h = &r->h[epoch];
    h->train_loss = loss_sum / (double)r->train.n;
    h->seconds = dt;
    h->sps = (double)r->train.n / dt;
    h->lr = lr_epoch;
    r->acc = evaluate(&r->n, &r->test, r->x, r->y, r->oh, r->eidx, 1000, &h->test_loss, r->correct, r->total);
    h->test_acc = r->acc;
    if (!weights_finite(r->n.ps)) {
        report_stop(r, "numerical blow-up: non-finite weights after epoch %zu; stopping.\nfashion_mnist: ", epoch + 1);
        r->blown = 1;
        return 0;
    }
    print_epoch(r, epoch);
    save_checkpoint(r, epoch);
    r->epochs_done = epoch + 1;
    if (c->metrics[0]) write_metrics(c->metrics, r->h, epoch + 1);
    if (c->plot[0]) write_plot(r, epoch + 1);
    return 1;
}

/* The epochs from start_epoch to --epochs (or --stop-after, or --target-acc reached), stopping early
 * on a blow-up or a signal. */
void train(run *r) {
    const cfg *c = &r->c;
    alloc_buffers(r);
    r->tty = isatty(2);
    r->end_epoch = (size_t)c->epochs;
    if (c->stop_after > 0 && (size_t)c->stop_after < r->end_epoch) r->end_epoch = (size_t)c->stop_after;
    r->epochs_done = r->start_epoch;
    ag_optim_zero_grad(r->opt); /* from here on each successful step clears the gradients */
    for (size_t epoch = r->start_epoch; epoch < r->end_epoch; epoch++) {
        grow_history(r, epoch);
        if (stop_signal && !r->dist) { /* --dist: seen at the next step's reduction, on every rank alike */
            if (r->tty) fputs("\r\x1b[K", stderr);
            report_stop(r, "interrupted (%s) before epoch %zu; ", signal_name(stop_signal), epoch + 1);
            r->interrupted = stop_signal;
            return;
        }
        ag_dataset_shuffle(r->order, r->train.n, c->seed, epoch);
        double t0 = now(), loss_sum = 0, lr_epoch = ag_optim_lr(r->opt);
        if (!train_epoch(r, epoch, t0, &loss_sum)) return;
        if (!end_epoch(r, epoch, now() - t0, loss_sum, lr_epoch)) return;
        if (c->target_acc > 0 && r->acc >= c->target_acc) { /* evaluated after each epoch, as the torch twin */
            printf("target test accuracy %g reached at epoch %zu: stopping\n", c->target_acc, epoch + 1);
            return;
        }
    }
}

/* ---------------------------------------------------------------- the end */

/* The model: parameters and what is needed to rebuild it (deterministic content); then the summary. */
void finish_training(run *r) {
    const cfg *c = &r->c;
    char err[AG_IO_ERRMSG_SIZE], es[32], accs[32], tis[32];
    if (r->start_epoch >= r->end_epoch) {
        double tl;
        r->acc = evaluate(&r->n, &r->test, r->x, r->y, r->oh, r->eidx, 1000, &tl, r->correct, r->total);
    }
    snprintf(es, sizeof es, "%zu", r->epochs_done);
    snprintf(accs, sizeof accs, "%.4f", r->acc);
    snprintf(tis, sizeof tis, "%zu", r->test.n); /* what test_accuracy was measured on (--test-limit) */
    ag_kv mm[] = {{"kind", "fashion_mnist model"}, {"arch", c->arch}, {"activation", c->act}, {"loss", c->loss},
                  {"classes", "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"},
                  {"epochs", es}, {"test_accuracy", accs}, {"test_images", tis}, {"optim", c->optim},
                  {"dtype", AG_REAL_NAME}, {"input_mean", r->in_mean_s}, {"input_std", r->in_std_s}};
    /* a model without standardisation leaves the two out: what --eval and files from before it expect */
    size_t n_mm = sizeof mm / sizeof mm[0] - (r->in_std > 0 ? 0 : 2);
    if (c->model[0] && ag_model_save(c->model, r->n.ps, NULL, 0, mm, n_mm, err, sizeof err) != AG_OK)
        fail(EXIT_RUN, "%s", err);
    print_summary(r);
}

void run_free(run *r) {
    free(r->x), free(r->oh), free(r->y), free(r->order), free(r->eidx), free(r->h);
    ag_optim_free(r->opt);
    net_free(&r->n);
    ag_dataset_free(&r->train);
    ag_dataset_free(&r->test);
}

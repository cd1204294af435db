/*
 * bench_train.c - steady-state training throughput of the `seed` and `modern` nets on the real
 * Fashion-MNIST, the C twin of bench/torch_train.py (issue 6). Run both through bench/vs_torch.
 *
 *   seed    784-256-10, sigmoid hidden and output, J = mean_k 1/2 ||h_k - y_k||^2 + lambda/2 sum W^2
 *           (weights only), plain SGD lr 0.5, lambda 1e-4, W ~ N(0, 0.01^2), zero biases.
 *   modern  784-512-256-10, ReLU hidden, linear output, softmax cross-entropy, SGD momentum 0.9,
 *           lr 0.05, He-normal W, zero biases.
 *
 * A step, all inside the timed loop as in the torch twin: gather the batch's uint8 rows by index
 * (one fixed shuffle of the 60,000, reused every epoch, last partial batch dropped) and convert
 * them to ag_real (ag_dataset_batch; the seed net also gets its one-hot targets there), reset the
 * tape, wrap the batch, forward, loss, backward, optimizer step (which zeroes each gradient as it
 * consumes it, .zero_grad = 1, instead of a separate zeroing pass: torch's zero_grad's work).
 *
 * The seed net's L2 (--l2): "optimizer" (default) applies lambda W as SGD weight decay on the
 * weights (the same gradient as the cost term, for plain SGD the same update; torch_train.py's
 * default); "loss" records ag_l2 on the tape (torch_train.py --l2 loss). bench/vs_torch gives
 * both sides the same mode.
 *
 * After a warm-up (>= 20 steps and >= 0.5 s) every window runs the same number of steps, fixed
 * from the warm-up's rate to last about --window-seconds; the line gives the median, min and max
 * samples/s over the windows and the peak RSS (getrusage ru_maxrss).
 *
 *   bench_train [--net seed|modern] [--batch B] [--threads N] [--windows W] [--window-seconds S]
 *               [--warmup-seconds S] [--l2 optimizer|loss] [--flush-denormal] [--seed N]
 *               [--data-dir D]
 *   One line per run:
 *   bench_train net=<n> batch=<B> threads=<N> samples_per_second=<median> min=<x> max=<x>
 *               windows=<n> peak_rss_mb=<x>
 *   (plus "# " diagnostic lines on stderr: mode, denormal flushing, losses, per-window rates).
 *
 *   bench_train --time-to-acc [--target 0.88] [--batch 128] [--max-epochs 30] [--eval-every N]
 *   The `modern` net with the hyperparameters of bench/torch_time_to_acc.py (constant lr 0.05,
 *   momentum 0.9, no L2, batch 128, reshuffled every epoch), trained until the accuracy on the
 *   10k test set reaches the target; wall clock from process start (exec, /proc/self/stat) :
 *   bench_train_time_to_acc target=0.88 seconds=<x> epochs=<e> train_seconds=<x> peak_rss_mb=<x>
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "bench_util.h"

#define SKIP 77

/* Seconds since the kernel started this process: /proc/uptime minus starttime (field 22 of
 * /proc/self/stat, in clock ticks). 10 ms resolution; NAN if /proc is unavailable. */
static double since_exec(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return NAN;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return NAN;
    p += 2; /* field 3 */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p) return NAN;
    unsigned long long start = strtoull(p, NULL, 10);
    f = fopen("/proc/uptime", "r");
    if (!f) return NAN;
    double up = NAN;
    if (fscanf(f, "%lf", &up) != 1) up = NAN;
    fclose(f);
    return up - (double)start / (double)sysconf(_SC_CLK_TCK);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_train [--net seed|modern] [--batch B] [--threads N] [--windows W]\n"
            "                   [--window-seconds S] [--warmup-seconds S] [--l2 optimizer|loss]\n"
            "                   [--flush-denormal] [--seed N] [--data-dir D] [--step fused|two-pass]\n"
            "       bench_train --time-to-acc [--target 0.88] [--batch 128] [--max-epochs N]\n"
            "                   [--eval-every N] [--flush-denormal] [--threads N] [--seed N]\n");
}

typedef struct net {
    int seed_net; /* 1: seed, 0: modern */
    ag_params *ps;
    ag_mlp *mlp;
    ag_optim *opt;
    ag_tape *tape;
    int l2_loss;  /* seed: lambda as ag_l2 on the tape */
    double lambda;
    int two_pass; /* --step two-pass: ag_backward then ag_optim_step */
} net;

static int net_new(net *m, int seed_net, double lr, double momentum, double lambda, int l2_loss,
                   uint64_t seed) {
    char err[AG_ERRMSG_SIZE];
    memset(m, 0, sizeof *m);
    m->seed_net = seed_net;
    m->l2_loss = l2_loss;
    m->lambda = lambda;
    if (ag_params_new(&m->ps) != AG_OK) return fprintf(stderr, "bench_train: out of memory\n"), -1;
    ag_mlp_config mc;
    if (seed_net)
        mc = (ag_mlp_config){.spec = "784-256-10", .hidden = AG_ACT_SIGMOID, .output = AG_ACT_SIGMOID,
                             .init = AG_INIT_SMALL_GAUSS, .seed = seed};
    else
        mc = (ag_mlp_config){.spec = "784-512-256-10", .hidden = AG_ACT_RELU, .output = AG_ACT_IDENTITY,
                             .init = AG_INIT_HE_NORMAL, .seed = seed};
    if (ag_mlp_new(&m->mlp, m->ps, &mc, err, sizeof err) != AG_OK)
        return fprintf(stderr, "bench_train: %s\n", err), -1;
    ag_optim_config oc = {.kind = momentum > 0 ? AG_OPT_MOMENTUM : AG_OPT_SGD, .lr = lr, .momentum = momentum,
                          .zero_grad = 1}; /* the step clears the grads: no separate pass */
    if (seed_net && !l2_loss) oc.weight_decay = lambda; /* AG_DECAY tensors (weights) only */
    if (ag_optim_new(&m->opt, m->ps, &oc, err, sizeof err) != AG_OK)
        return fprintf(stderr, "bench_train: %s\n", err), -1;
    if (ag_tape_new(&m->tape, NULL) != AG_OK) return fprintf(stderr, "bench_train: out of memory\n"), -1;
    return 0;
}

static void net_free(net *m) {
    ag_tape_free(m->tape);
    ag_optim_free(m->opt);
    ag_mlp_free(m->mlp);
    ag_params_free(m->ps);
}

/* One training step on a converted batch; returns the loss (NAN on error, message printed). */
static double train_step(net *m, size_t K, ag_real *x, const int32_t *labels, ag_real *onehot) {
    ag_tape *t = m->tape;
    ag_tape_reset(t);
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, 784}, x);
    ag_tensor *h = ag_mlp_forward(t, m->mlp, X, NULL, NULL);
    ag_tensor *J;
    if (m->seed_net) {
        ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){K, 10}, onehot);
        J = ag_mlp_cost_squared_error(t, m->mlp, h, Y, m->l2_loss ? (ag_real)m->lambda : 0);
    } else {
        J = ag_cross_entropy(t, h, labels);
    }
    if (!m->two_pass) { /* the update inside the sweep (ag_optim_backward_step) */
        if (ag_optim_backward_step(m->opt, t, J) != AG_OK) {
            fprintf(stderr, "bench_train: %s\n", ag_optim_errmsg(m->opt));
            return NAN;
        }
        return (double)J->value[0];
    }
    if (ag_backward(t, J) != AG_OK) {
        fprintf(stderr, "bench_train: %s\n", ag_tape_errmsg(t));
        return NAN;
    }
    if (ag_optim_step(m->opt) != AG_OK) {
        fprintf(stderr, "bench_train: %s\n", ag_optim_errmsg(m->opt));
        return NAN;
    }
    return (double)J->value[0];
}

static int load(ag_dataset *ds, const char *dir, const char *split) {
    char ip[1100], lp[1100], err[AG_IO_ERRMSG_SIZE];
    const char *pre = strcmp(split, "train") == 0 ? "train" : "t10k";
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0) {
        printf("skipped: Fashion-MNIST file %s or %s not found (Debian: apt-get install "
               "dataset-fashion-mnist, or pass --data-dir)\n", ip, lp);
        return SKIP;
    }
    ag_idx_options o = {.classes = 10, .rows = 28, .cols = 28};
    if (ag_dataset_load(ds, ip, lp, &o, err, sizeof err) != AG_OK) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- time to accuracy */

static double test_accuracy(net *m, const ag_dataset *test, ag_real *x, int32_t *labels, uint32_t *idx,
                            size_t chunk) {
    ag_tape *t = m->tape;
    int prev = ag_tape_set_grad_enabled(t, 0);
    size_t correct = 0;
    for (size_t s = 0; s < test->n; s += chunk) {
        size_t K = test->n - s < chunk ? test->n - s : chunk;
        for (size_t i = 0; i < K; i++) idx[i] = (uint32_t)(s + i);
        ag_dataset_batch(test, idx, K, x, labels, NULL);
        ag_tape_reset(t);
        ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, 784}, x);
        ag_tensor *h = ag_mlp_forward(t, m->mlp, X, NULL, NULL);
        if (!h) {
            fprintf(stderr, "bench_train: %s\n", ag_tape_errmsg(t));
            break;
        }
        for (size_t k = 0; k < K; k++) {
            const ag_real *row = h->value + k * 10;
            int best = 0;
            for (int j = 1; j < 10; j++)
                if (row[j] > row[best]) best = j;
            correct += best == labels[k];
        }
    }
    ag_tape_set_grad_enabled(t, prev);
    return (double)correct / (double)test->n;
}

static int time_to_acc(const char *dir, size_t B, double target, long max_epochs, long eval_every,
                       uint64_t seed, double t_start) {
    ag_dataset train, test;
    int rc = load(&train, dir, "train");
    if (rc) return rc;
    rc = load(&test, dir, "test");
    if (rc) return rc;
    net m;
    if (net_new(&m, 0, 0.05, 0.9, 0, 0, seed)) return 1;
    const size_t chunk = 2000, cap = B > chunk ? B : chunk;
    ag_real *x = malloc(cap * 784 * sizeof *x);
    int32_t *labels = malloc(cap * sizeof *labels);
    uint32_t *order = malloc(train.n * sizeof *order), *idx = malloc(chunk * sizeof *idx);
    if (!x || !labels || !order || !idx) return fprintf(stderr, "bench_train: out of memory\n"), 1;
    double t_data = now_s();
    fprintf(stderr, "# time-to-acc: modern, batch %zu, lr 0.05 momentum 0.9 constant, no L2, target %.2f, "
                    "threads %d, denormals %s; data loaded %.2f s after start\n",
            B, target, ag_get_threads(), denormals_flushed() ? "flushed" : "kept", t_data - t_start);
    size_t nb = train.n / B, steps = 0;
    double train_s = 0, reached = -1, acc = 0;
    for (long e = 0; e < max_epochs && reached < 0; e++) {
        double t0 = now_s();
        ag_dataset_shuffle(order, train.n, seed, (uint64_t)e);
        for (size_t b = 0; b < nb; b++) {
            ag_dataset_batch(&train, order + b * B, B, x, labels, NULL);
            if (isnan(train_step(&m, B, x, labels, NULL))) return 1;
            steps++;
            if (eval_every > 0 && steps % (size_t)eval_every == 0 && b + 1 < nb) {
                acc = test_accuracy(&m, &test, x, labels, idx, chunk);
                if (acc >= target) {
                    reached = (double)e + (double)(b + 1) / (double)nb;
                    break;
                }
            }
        }
        if (reached < 0) {
            acc = test_accuracy(&m, &test, x, labels, idx, chunk);
            if (acc >= target) reached = (double)e + 1;
        }
        double t1 = now_s();
        train_s += t1 - t0;
        fprintf(stderr, "# epoch %ld: test accuracy %.4f, %.2f s, %.2f s since start\n", e + 1, acc, t1 - t0,
                t1 - t_start);
    }
    double t_end = now_s();
    if (reached < 0) {
        fprintf(stderr, "error: test accuracy %.4f < %.2f after %ld epochs\n", acc, target, max_epochs);
        return 1;
    }
    double exec_s = since_exec();
    fprintf(stderr, "# accuracy %.4f after %zu steps; %.2f s since exec() (/proc/self/stat)\n", acc, steps, exec_s);
    printf("bench_train_time_to_acc target=%g seconds=%.2f epochs=%.3g train_seconds=%.2f peak_rss_mb=%.1f\n",
           target, t_end - t_start, reached, train_s, peak_rss_mb());
    net_free(&m);
    free(x), free(labels), free(order), free(idx);
    ag_dataset_free(&train);
    ag_dataset_free(&test);
    return 0;
}

/* ---------------------------------------------------------------- throughput */

int main(int argc, char **argv) {
    double t_start = now_s();
    const char *net_name = "seed", *dir = "/usr/share/datasets/fashion-mnist", *l2 = "optimizer";
    const char *step_mode = "fused";
    long batch = -1, windows = 7, threads = 1, max_epochs = 30, eval_every = 0;
    double window_s = 1.0, warmup_s = 0.5, target = 0.88;
    unsigned long long seed = 1;
    int flush = 0, tta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--flush-denormal")) flush = 1;
        else if (!strcmp(a, "--time-to-acc")) tta = 1;
        else if (!v) return usage(), 2;
        else if (!strcmp(a, "--net")) net_name = v, i++;
        else if (!strcmp(a, "--batch")) batch = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "--threads")) threads = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "--windows")) windows = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "--window-seconds")) window_s = strtod(v, NULL), i++;
        else if (!strcmp(a, "--warmup-seconds")) warmup_s = strtod(v, NULL), i++;
        else if (!strcmp(a, "--l2")) l2 = v, i++;
        else if (!strcmp(a, "--step")) step_mode = v, i++;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--data-dir")) dir = v, i++;
        else if (!strcmp(a, "--target")) target = strtod(v, NULL), i++;
        else if (!strcmp(a, "--max-epochs")) max_epochs = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "--eval-every")) eval_every = strtol(v, NULL, 10), i++;
        else return usage(), 2;
    }
    int seed_net = !strcmp(net_name, "seed");
    if ((!seed_net && strcmp(net_name, "modern")) || (strcmp(l2, "optimizer") && strcmp(l2, "loss")) ||
        (strcmp(step_mode, "fused") && strcmp(step_mode, "two-pass")) ||
        windows < 1 || windows > 1000 || threads < 1 || !(window_s > 0) || !(warmup_s >= 0))
        return usage(), 2;
    if (batch < 0) batch = tta ? 128 : 32;
    if (batch < 1 || batch > 60000) return usage(), 2;
    flush_denormals(flush); /* before any thread exists: workers inherit the MXCSR */
    if (ag_set_threads((int)threads) != AG_OK) return fprintf(stderr, "bench_train: bad --threads\n"), 2;
    if (tta) return time_to_acc(dir, (size_t)batch, target, max_epochs, eval_every, seed, t_start);

    const size_t B = (size_t)batch;
    ag_dataset train;
    int rc = load(&train, dir, "train");
    if (rc) return rc;
    if (train.n < B) { /* the batches are cut from one shuffle of train.n indices */
        fprintf(stderr, "bench_train: --batch %zu is larger than the %zu training images\n", B, train.n);
        ag_dataset_free(&train);
        return 2;
    }
    net m;
    int l2_loss = !strcmp(l2, "loss");
    if (net_new(&m, seed_net, seed_net ? 0.5 : 0.05, seed_net ? 0 : 0.9, 1e-4, l2_loss, seed)) return 1;
    m.two_pass = !strcmp(step_mode, "two-pass");
    ag_real *x = malloc(B * 784 * sizeof *x), *onehot = malloc(B * 10 * sizeof *onehot);
    int32_t *labels = malloc(B * sizeof *labels);
    uint32_t *order = malloc(train.n * sizeof *order);
    double *rate = malloc((size_t)windows * sizeof *rate);
    if (!x || !onehot || !labels || !order || !rate) return fprintf(stderr, "bench_train: out of memory\n"), 1;
    ag_dataset_shuffle(order, train.n, seed, 0); /* one fixed shuffle, reused every epoch */
    const size_t nb = train.n / B;               /* the last partial batch is dropped */
    size_t cursor = 0;
    double loss = 0;
#define RUN(steps)                                                                               \
    do {                                                                                         \
        for (size_t s_ = 0; s_ < (steps); s_++) {                                                \
            ag_dataset_batch(&train, order + cursor * B, B, x, labels, seed_net ? onehot : NULL); \
            loss = train_step(&m, B, x, labels, onehot);                                         \
            if (isnan(loss)) return 1;                                                           \
            if (++cursor == nb) cursor = 0;                                                      \
        }                                                                                        \
    } while (0)

    fprintf(stderr, "# bench_train: net %s (%s), batch %zu, threads %d, kernel %s, %s, %s, denormals %s, l2 %s, "
            "step %s\n",
            net_name, seed_net ? "784-256-10 sigmoid, squared error, SGD lr 0.5" :
                                 "784-512-256-10 relu, cross-entropy, SGD momentum 0.9 lr 0.05",
            B, ag_get_threads(), ag_kernel_name(), AG_REAL_NAME, BENCH_COMPILER, denormals_flushed() ? "flushed (FTZ/DAZ)" : "kept",
            seed_net ? (l2_loss ? "as ag_l2 on the tape (lambda 1e-4)" : "as SGD weight decay on weights (lambda 1e-4)")
                     : "none",
            m.two_pass ? "two-pass (ag_backward, ag_optim_step)" : "fused (ag_optim_backward_step)");
    RUN(1);
    double first_loss = loss;
    double t0 = now_s(), t_half = -1, t1;
    size_t done = 1, half_steps = 0;
    while (done < 20 || now_s() - t0 < warmup_s) {
        RUN(1);
        done++;
        if (t_half < 0 && now_s() - t0 >= 0.5 * warmup_s && done >= 10) t_half = now_s(), half_steps = done;
    }
    t1 = now_s();
    double steps_per_s = (t_half >= 0 && done > half_steps) ? (double)(done - half_steps) / (t1 - t_half)
                                                            : (double)done / (t1 - t0);
    size_t per_window = (size_t)fmax(1.0, round(window_s * steps_per_s));
    fprintf(stderr, "# warm-up %zu steps in %.3f s; %zu steps per window\n", done, t1 - t0, per_window);
    for (long w = 0; w < windows; w++) {
        double ts = now_s();
        RUN(per_window);
        double te = now_s();
        rate[w] = (double)(per_window * B) / (te - ts);
        fprintf(stderr, "# window %ld: %.1f samples/s, loss %.4f\n", w, rate[w], loss);
    }
    fprintf(stderr, "# loss first step %.4f, last window %.4f; tape arena %zu bytes\n", first_loss, loss,
            ag_tape_mem_capacity(m.tape));
    double lo = rate[0], hi = rate[0];
    for (long w = 1; w < windows; w++) lo = fmin(lo, rate[w]), hi = fmax(hi, rate[w]);
    double med = median(rate, (int)windows);
    printf("bench_train net=%s batch=%zu threads=%d samples_per_second=%.1f min=%.1f max=%.1f windows=%ld "
           "peak_rss_mb=%.1f flush_denormal=%d l2=%s step=%s\n",
           net_name, B, ag_get_threads(), med, lo, hi, windows, peak_rss_mb(), denormals_flushed(),
           seed_net ? l2 : "none", step_mode);
    net_free(&m);
    free(x), free(onehot), free(labels), free(order), free(rate);
    ag_dataset_free(&train);
    return 0;
}

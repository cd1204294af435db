/*
 * fashion_mnist - train an MLP on Fashion-MNIST end to end: IDX loading, mini-batch training on
 * the tape, per-epoch evaluation, metrics CSV and SVG plot, atomic checkpoints with bit-identical
 * resume, model files in the safetensors layout, and evaluation of a saved model.
 *
 *     build/examples/fashion_mnist                    # the default preset (modern)
 *     build/examples/fashion_mnist --preset seed      # the seed's network and cost
 *     build/examples/fashion_mnist --eval fashion_mnist.safetensors
 *     build/examples/fashion_mnist --resume fashion_mnist.ckpt.safetensors
 *
 * Run with --help for every flag. The data set is Debian's dataset-fashion-mnist.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "ag_io.h"
#include "mlp.h"
#include "optim.h"
#include "svg.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define EXIT_NUMERIC 3

static const char *const CLASS_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* ---------------------------------------------------------------- options */

typedef struct cfg {
    char arch[256], act[32], loss[16], optim[16], schedule[16], init[32];
    double lr, momentum, lambda, clip, target_acc;
    long batch, epochs, threads, limit, test_limit, stop_after;
    unsigned long long seed;
    char data[1024], model[1024], metrics[1024], plot[1024], checkpoint[1024], eval[1024], resume[1024];
    char preset[16];
    int no_flush_denormal; /* --no-flush-denormal */
} cfg;

enum { T_STR, T_DBL, T_LONG, T_U64 };
typedef struct opt_def {
    const char *name;
    int type;
    size_t off, size;
    int saved; /* restored from a checkpoint by --resume */
    const char *help;
} opt_def;

#define S(f) offsetof(cfg, f), sizeof(((cfg *)0)->f)
static const opt_def OPTS[] = {
    {"preset", T_STR, S(preset), 0, "seed | modern (default): a named set of the settings below"},
    {"arch", T_STR, S(arch), 1, "layer sizes, e.g. 784-256-10"},
    {"act", T_STR, S(act), 1, "hidden activation: relu | sigmoid | tanh"},
    {"loss", T_STR, S(loss), 1, "xent (softmax cross-entropy) | mse (squared error, sigmoid outputs)"},
    {"init", T_STR, S(init), 1, "he | glorot | glorot-uniform | small"},
    {"optim", T_STR, S(optim), 1, "sgd | momentum | nesterov | adam | adamw"},
    {"lr", T_DBL, S(lr), 1, "learning rate"},
    {"momentum", T_DBL, S(momentum), 1, "momentum for momentum/nesterov"},
    {"lambda", T_DBL, S(lambda), 1, "L2 weight decay on the weights (never biases), in the cost"},
    {"weight-decay", T_DBL, S(lambda), 0, "same as --lambda"},
    {"schedule", T_STR, S(schedule), 1, "constant | cosine (to 0 over the run) | step (x0.1 at 1/3 and 2/3)"},
    {"clip", T_DBL, S(clip), 1, "clip the gradient to this global norm (0 = off)"},
    {"batch", T_LONG, S(batch), 1, "mini-batch size"},
    {"epochs", T_LONG, S(epochs), 1, "number of epochs (with --resume: the total to reach)"},
    {"stop-after", T_LONG, S(stop_after), 0, "stop after this many epochs in total (as if interrupted; resume later)"},
    {"target-acc", T_DBL, S(target_acc), 0, "stop after the first epoch whose test accuracy reaches this (0 = off)"},
    {"limit", T_LONG, S(limit), 1, "train on the first N training images only (0 = all)"},
    {"test-limit", T_LONG, S(test_limit), 0, "evaluate on the first N test images only (0 = all)"},
    {"seed", T_U64, S(seed), 1, "seed of the weights and of every epoch's shuffle"},
    {"threads", T_LONG, S(threads), 0, "worker threads (0 = all online cores)"},
    {"data", T_STR, S(data), 0, "directory of the IDX files (.gz or raw)"},
    {"model", T_STR, S(model), 0, "final model file (safetensors)"},
    {"checkpoint", T_STR, S(checkpoint), 0, "checkpoint written after each epoch"},
    {"metrics", T_STR, S(metrics), 0, "per-epoch metrics CSV"},
    {"plot", T_STR, S(plot), 0, "SVG plot of the loss and accuracy curves"},
    {"resume", T_STR, S(resume), 0, "continue training from a checkpoint"},
    {"eval", T_STR, S(eval), 0, "evaluate a saved model on the test set and exit"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void preset(cfg *c, const char *name) {
    if (strcmp(name, "seed") == 0) {
        /* the seed: 784-256-10 sigmoid, squared error + L2, plain SGD */
        snprintf(c->arch, sizeof c->arch, "784-256-10");
        snprintf(c->act, sizeof c->act, "sigmoid");
        snprintf(c->loss, sizeof c->loss, "mse");
        snprintf(c->init, sizeof c->init, "glorot");
        snprintf(c->optim, sizeof c->optim, "sgd");
        snprintf(c->schedule, sizeof c->schedule, "constant");
        c->lr = 1.0;
        c->momentum = 0;
        c->lambda = 1e-5;
        c->batch = 32;
        c->epochs = 15;
    } else {
        snprintf(c->arch, sizeof c->arch, "784-512-256-10");
        snprintf(c->act, sizeof c->act, "relu");
        snprintf(c->loss, sizeof c->loss, "xent");
        snprintf(c->init, sizeof c->init, "he");
        snprintf(c->optim, sizeof c->optim, "momentum");
        snprintf(c->schedule, sizeof c->schedule, "cosine");
        c->lr = 0.05;
        c->momentum = 0.9;
        c->lambda = 1e-4;
        c->batch = 128;
        c->epochs = 15;
    }
    snprintf(c->preset, sizeof c->preset, "%s", name);
}

static void usage(FILE *f) {
    fprintf(f, "usage: fashion_mnist [--flag value]...\n"
               "Train an MLP on Fashion-MNIST (Debian package dataset-fashion-mnist), or evaluate a saved one.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) fprintf(f, "  --%-13s %s\n", OPTS[i].name, OPTS[i].help);
    fprintf(f, "  --no-flush-denormal  keep denormals (by default FTZ/DAZ are set on x86: decaying momentum\n"
               "                  buffers otherwise fall into slow denormal arithmetic)\n"
               "  --help          this text\n\n"
               "presets:\n"
               "  modern (default)  784-512-256-10 relu, cross-entropy, SGD momentum 0.9, lr 0.05 cosine, L2 1e-4, batch 128, 15 epochs\n"
               "  seed              784-256-10 sigmoid, squared error + L2 1e-5, plain SGD lr 1.0, batch 32, 15 epochs\n"
               "Flags given after or before --preset override it. Output ends with the line\n"
               "  final test_accuracy=<x> epochs=<n> train_seconds=<s> samples_per_second=<n>\n");
}

static int set_opt(cfg *c, const opt_def *o, const char *v) {
    char *base = (char *)c + o->off, *end;
    errno = 0;
    switch (o->type) {
    case T_STR:
        if (strlen(v) >= o->size) return fprintf(stderr, "fashion_mnist: --%s: value too long\n", o->name), -1;
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case T_DBL: {
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < 0)
            return fprintf(stderr, "fashion_mnist: --%s: expected a non-negative number, got \"%s\"\n", o->name, v), -1;
        *(double *)(void *)base = d;
        return 0;
    }
    case T_LONG: {
        long l = strtol(v, &end, 10);
        if (!*v || *end || errno || l < 0 || l > 1000000000L)
            return fprintf(stderr, "fashion_mnist: --%s: expected a non-negative integer, got \"%s\"\n", o->name, v), -1;
        *(long *)(void *)base = l;
        return 0;
    }
    default: {
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-')
            return fprintf(stderr, "fashion_mnist: --%s: expected a non-negative integer, got \"%s\"\n", o->name, v), -1;
        *(unsigned long long *)(void *)base = u;
        return 0;
    }
    }
}

static void opt_str(const cfg *c, const opt_def *o, char *buf, size_t size) {
    const char *base = (const char *)c + o->off;
    switch (o->type) {
    case T_STR: snprintf(buf, size, "%s", base); break;
    case T_DBL: snprintf(buf, size, "%.17g", *(const double *)(const void *)base); break;
    case T_LONG: snprintf(buf, size, "%ld", *(const long *)(const void *)base); break;
    default: snprintf(buf, size, "%llu", *(const unsigned long long *)(const void *)base); break;
    }
}

static const opt_def *find_opt(const char *name) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(OPTS[i].name, name) == 0) return &OPTS[i];
    return NULL;
}

/* Apply argv (skipping --preset, handled first). given[i] marks options set on the command line. */
static int parse_args(cfg *c, int argc, char **argv, int pass, unsigned char *given) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--no-flush-denormal") == 0) { /* the one flag without a value */
            if (pass == 1) c->no_flush_denormal = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "fashion_mnist: unexpected argument \"%s\" (see --help)\n", a);
            return -1;
        }
        char name[64];
        const char *eq = strchr(a + 2, '='), *val;
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const opt_def *o = find_opt(name);
        if (!o) {
            fprintf(stderr, "fashion_mnist: unknown flag --%s (see --help)\n", name);
            return -1;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            fprintf(stderr, "fashion_mnist: --%s needs a value\n", name);
            return -1;
        }
        int is_preset = strcmp(name, "preset") == 0;
        if (pass == 0 && is_preset) {
            if (strcmp(val, "seed") && strcmp(val, "modern")) {
                fprintf(stderr, "fashion_mnist: --preset must be seed or modern, not \"%s\"\n", val);
                return -1;
            }
            preset(c, val);
        } else if (pass == 1 && !is_preset) {
            if (set_opt(c, o, val) != 0) return -1;
            given[o - OPTS] = 1;
            if (strcmp(name, "weight-decay") == 0) given[find_opt("lambda") - OPTS] = 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- small helpers */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fashion_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

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

static ag_status parse_init(const char *s, ag_init *out) {
    if (!strcmp(s, "he")) *out = AG_INIT_HE_NORMAL;
    else if (!strcmp(s, "glorot")) *out = AG_INIT_GLOROT_NORMAL;
    else if (!strcmp(s, "glorot-uniform")) *out = AG_INIT_GLOROT_UNIFORM;
    else if (!strcmp(s, "small")) *out = AG_INIT_SMALL_GAUSS;
    else return AG_ERR_ARG;
    return AG_OK;
}

/* The data set: <dir>/<name>.gz, or <dir>/<name> uncompressed. */
static void load_split(ag_dataset *ds, const char *dir, const char *prefix, long limit) {
    char ip[1200], lp[1200], err[AG_IO_ERRMSG_SIZE];
    const char *ext[2] = {".gz", ""};
    int found = 0;
    for (int k = 0; k < 2 && !found; k++) {
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte%s", dir, prefix, ext[k]);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte%s", dir, prefix, ext[k]);
        found = access(ip, F_OK) == 0;
    }
    if (!found) snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    if (!found) snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    ag_idx_options o = {.classes = 10, .rows = 28, .cols = 28, .limit = (size_t)limit};
    if (ag_dataset_load(ds, ip, lp, &o, err, sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_mnist: %s\n", err);
        if (!found && strcmp(dir, DEFAULT_DATA) == 0)
            fprintf(stderr, "fashion_mnist: the data set is not installed; install it with:\n"
                            "    sudo apt-get install dataset-fashion-mnist\n"
                            "or point --data at a directory holding the four IDX files.\n");
        exit(1);
    }
}

/* AG_ALIGN-aligned buffer (as the tape's own), zeroed; size rounded up as aligned_alloc requires */
static void *alloc_aligned(size_t bytes) {
    size_t n = (bytes + AG_ALIGN - 1) / AG_ALIGN * AG_ALIGN;
    void *p = aligned_alloc(AG_ALIGN, n ? n : AG_ALIGN);
    if (!p) die("out of memory for %zu bytes", bytes);
    memset(p, 0, n ? n : AG_ALIGN);
    return p;
}

/* ---------------------------------------------------------------- the model */

typedef struct net {
    ag_params *ps;
    ag_mlp *mlp;
    ag_tape *t;
    int mse;
    size_t in, out;
} net;

static void net_build(net *n, const char *arch, const char *act, const char *loss, const char *init,
                      uint64_t seed) {
    char err[512];
    ag_act hidden;
    ag_init in;
    if (ag_act_parse(act, &hidden) != AG_OK) die("unknown activation \"%s\" (relu, sigmoid, tanh)", act);
    if (parse_init(init, &in) != AG_OK) die("unknown initialiser \"%s\" (he, glorot, glorot-uniform, small)", init);
    if (strcmp(loss, "mse") && strcmp(loss, "xent")) die("unknown loss \"%s\" (mse, xent)", loss);
    n->mse = strcmp(loss, "mse") == 0;
    if (ag_params_new(&n->ps) != AG_OK || ag_tape_new(&n->t, NULL) != AG_OK) die("out of memory");
    ag_mlp_config mc = {.spec = arch, .hidden = hidden, .output = n->mse ? AG_ACT_SIGMOID : AG_ACT_IDENTITY,
                        .init = in, .seed = seed};
    if (ag_mlp_new(&n->mlp, n->ps, &mc, err, sizeof err) != AG_OK) die("%s", err);
    n->in = n->mlp->sizes[0];
    n->out = n->mlp->sizes[n->mlp->n_layers];
    if (n->in != 784) die("--arch %s: the input layer must have 784 units (28x28 images)", arch);
    if (n->out != 10) die("--arch %s: the output layer must have 10 units (classes)", arch);
}

static void net_free(net *n) {
    ag_mlp_free(n->mlp);
    ag_params_free(n->ps);
    ag_tape_free(n->t);
}

/* Test-set evaluation in no-grad mode: accuracy, mean loss, per-class correct counts. */
static double evaluate(net *n, const ag_dataset *ds, ag_real *x, int32_t *y, ag_real *onehot, uint32_t *idx,
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
        if (!J) die("evaluation: %s", ag_tape_errmsg(n->t));
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

static void print_classes(const size_t *correct, const size_t *total) {
    printf("\nper-class test accuracy:\n  %-12s %9s %13s\n", "class", "accuracy", "correct/total");
    for (int c = 0; c < 10; c++)
        printf("  %-12s %8.2f%% %6zu/%-6zu\n", CLASS_NAMES[c], total[c] ? 100.0 * (double)correct[c] / (double)total[c] : 0.0,
               correct[c], total[c]);
}

/* ---------------------------------------------------------------- --eval */

static int run_eval(const cfg *c) {
    char err[AG_IO_ERRMSG_SIZE];
    ag_model_file *mf;
    if (ag_model_open(c->eval, &mf, err, sizeof err) != AG_OK) die("%s", err);
    const char *arch = ag_model_meta(mf, "arch"), *act = ag_model_meta(mf, "activation"),
               *loss = ag_model_meta(mf, "loss");
    if (!arch || !act || !loss)
        die("%s: the file lacks the arch/activation/loss metadata that fashion_mnist writes", c->eval);
    net n;
    net_build(&n, arch, act, loss, "he", 1);
    if (ag_model_read(mf, n.ps, NULL, 0, err, sizeof err) != AG_OK) die("%s", err);
    const char *ep = ag_model_meta(mf, "epochs");
    printf("model %s: %s %s, %s loss, trained %s epochs\n", c->eval, arch, act, loss, ep ? ep : "?");
    ag_model_close(mf);
    ag_dataset test;
    load_split(&test, c->data, "t10k", c->test_limit);
    size_t bs = 1000;
    ag_real *x = alloc_aligned(bs * 784 * sizeof *x), *oh = alloc_aligned(bs * 10 * sizeof *oh);
    int32_t *y = malloc(bs * sizeof *y);
    uint32_t *idx = malloc(bs * sizeof *idx);
    if (!x || !oh || !y || !idx) die("out of memory");
    size_t correct[10], total[10];
    double loss_v, t0 = now();
    double acc = evaluate(&n, &test, x, y, oh, idx, bs, &loss_v, correct, total);
    double dt = now() - t0;
    print_classes(correct, total);
    printf("eval test_accuracy=%.4f test_loss=%.4f images=%zu seconds=%.2f\n", acc, loss_v, test.n, dt);
    free(x), free(oh), free(y), free(idx);
    ag_dataset_free(&test);
    net_free(&n);
    return 0;
}

/* ---------------------------------------------------------------- training */

typedef struct hist {
    double train_loss, test_loss, test_acc, seconds, sps, lr;
} hist;

/* history rows as text ("loss,loss,acc,sec,sps,lr;...") for the checkpoint */
static char *hist_encode(const hist *h, size_t n) {
    size_t cap = n * 160 + 1;
    char *s = malloc(cap);
    if (!s) die("out of memory");
    size_t k = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s%.17g,%.17g,%.17g,%.6g,%.6g,%.17g", i ? ";" : "", h[i].train_loss,
                              h[i].test_loss, h[i].test_acc, h[i].seconds, h[i].sps, h[i].lr);
    return s;
}
static size_t hist_decode(const char *s, hist *h, size_t max) {
    size_t n = 0;
    while (s && *s && n < max) {
        hist r;
        if (sscanf(s, "%lf,%lf,%lf,%lf,%lf,%lf", &r.train_loss, &r.test_loss, &r.test_acc, &r.seconds, &r.sps,
                   &r.lr) != 6)
            break;
        h[n++] = r;
        s = strchr(s, ';');
        if (s) s++;
    }
    return n;
}

static void write_metrics(const char *path, const hist *h, size_t n) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) die("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "epoch,train_loss,test_loss,test_accuracy,learning_rate,epoch_seconds,samples_per_second\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%zu,%.6f,%.6f,%.4f,%.6g,%.3f,%.0f\n", i + 1, h[i].train_loss, h[i].test_loss, h[i].test_acc,
                h[i].lr, h[i].seconds, h[i].sps);
    if (fclose(f) != 0 || rename(tmp, path) != 0) die("%s: cannot write: %s", path, strerror(errno));
}

static void progress(int epoch, int epochs, size_t step, size_t steps, double loss, double sps, double eta) {
    int width = 24, fill = steps ? (int)((double)step / (double)steps * width) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d/%d [%s] %zu/%zu loss %.4f %6.0f samples/s ETA %3.0fs \x1b[K", epoch, epochs, bar,
            step, steps, loss, sps, eta);
    fflush(stderr);
}

int main(int argc, char **argv) {
    cfg c;
    memset(&c, 0, sizeof c);
    preset(&c, "modern");
    c.threads = 0;
    snprintf(c.data, sizeof c.data, "%s", DEFAULT_DATA);
    snprintf(c.model, sizeof c.model, "fashion_mnist.safetensors");
    snprintf(c.checkpoint, sizeof c.checkpoint, "fashion_mnist.ckpt.safetensors");
    snprintf(c.metrics, sizeof c.metrics, "fashion_mnist_metrics.csv");
    snprintf(c.plot, sizeof c.plot, "fashion_mnist_metrics.svg");
    unsigned char given[N_OPTS] = {0};
    if (parse_args(&c, argc, argv, 0, given) != 0 || parse_args(&c, argc, argv, 1, given) != 0) return 2;

    /* FTZ/DAZ before the thread pool starts (workers inherit the MXCSR), as bench_train and the
     * torch twins do: momentum buffers decay into denormals, which cost x86 a microcode assist
     * per operation. Deterministic, so same-seed and resumed runs stay bit-identical. */
    int flushed = 0;
#if defined(__SSE__)
    if (!c.no_flush_denormal) {
        _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
        flushed = 1;
    }
#endif
    ag_allocator al = {c_malloc, c_realloc, c_free, NULL};
    ag_set_allocator(&al);
    if (ag_set_threads((int)c.threads) != AG_OK) die("--threads %ld is invalid", c.threads);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (c.eval[0]) return run_eval(&c);

    /* --resume: settings from the checkpoint, then the flags given explicitly */
    char err[AG_IO_ERRMSG_SIZE];
    ag_model_file *ck = NULL;
    if (c.resume[0]) {
        if (ag_model_open(c.resume, &ck, err, sizeof err) != AG_OK) die("%s", err);
        const char *kind = ag_model_meta(ck, "kind");
        if (!kind || strcmp(kind, "fashion_mnist checkpoint") != 0)
            die("%s: not a fashion_mnist checkpoint (no kind metadata)", c.resume);
        for (size_t i = 0; i < N_OPTS; i++) {
            char key[80];
            snprintf(key, sizeof key, "cfg.%s", OPTS[i].name);
            const char *v = ag_model_meta(ck, key);
            if (OPTS[i].saved && v && !given[i] && set_opt(&c, &OPTS[i], v) != 0)
                die("%s: bad %s in the checkpoint", c.resume, key);
        }
    }
    if (c.batch < 1) die("--batch must be at least 1");
    if (c.epochs < 1) die("--epochs must be at least 1");
    if (!(c.lr > 0)) die("--lr must be positive");

    ag_dataset train, test;
    load_split(&train, c.data, "train", c.limit);
    load_split(&test, c.data, "t10k", c.test_limit);

    net n;
    net_build(&n, c.arch, c.act, c.loss, c.init, c.seed);
    size_t bs = (size_t)c.batch, steps = (train.n + bs - 1) / bs;

    /* zero_grad: the step clears each gradient as it consumes it (no separate zeroing pass) */
    ag_optim_config oc = {.lr = c.lr, .momentum = c.momentum, .clip_norm = c.clip, .zero_grad = 1};
    if (!strcmp(c.optim, "sgd")) oc.kind = AG_OPT_SGD;
    else if (!strcmp(c.optim, "momentum")) oc.kind = AG_OPT_MOMENTUM;
    else if (!strcmp(c.optim, "nesterov")) oc.kind = AG_OPT_NESTEROV;
    else if (!strcmp(c.optim, "adam")) oc.kind = AG_OPT_ADAM;
    else if (!strcmp(c.optim, "adamw")) oc.kind = AG_OPT_ADAMW;
    else die("unknown optimizer \"%s\" (sgd, momentum, nesterov, adam, adamw)", c.optim);
    uint64_t total_steps = (uint64_t)steps * (uint64_t)c.epochs;
    if (!strcmp(c.schedule, "cosine")) oc.schedule = (ag_schedule){.kind = AG_SCHED_COSINE, .total_steps = total_steps};
    else if (!strcmp(c.schedule, "step")) /* x0.1 after a third and after two thirds of the steps */
        oc.schedule = (ag_schedule){.kind = AG_SCHED_STEP, .step_size = total_steps / 3 ? total_steps / 3 : 1, .gamma = 0.1};
    else if (strcmp(c.schedule, "constant")) die("unknown schedule \"%s\" (constant, cosine, step)", c.schedule);
    ag_optim *opt;
    if (ag_optim_new(&opt, n.ps, &oc, err, sizeof err) != AG_OK) die("%s", err);

    size_t n_state = ag_optim_state_count(opt);
    ag_named_buf state[8];
    char state_names[8][64];
    for (size_t i = 0; i < n_state && i < 8; i++) {
        const char *nm;
        ag_optim_state(opt, i, &nm, &state[i].data, &state[i].n);
        snprintf(state_names[i], sizeof state_names[i], "optim.%s", nm);
        state[i].name = state_names[i];
    }

    hist *h = calloc((size_t)c.epochs + 1, sizeof *h);
    if (!h) die("out of memory");
    size_t start_epoch = 0;
    double train_seconds = 0, samples_done = 0;
    if (ck) {
        if (ag_model_read(ck, n.ps, state, n_state, err, sizeof err) != AG_OK) die("%s", err);
        const char *e = ag_model_meta(ck, "epoch"), *st = ag_model_meta(ck, "optim_steps"),
                   *ts = ag_model_meta(ck, "train_seconds"), *sd = ag_model_meta(ck, "samples");
        if (!e || !st) die("%s: checkpoint lacks epoch/optim_steps metadata", c.resume);
        start_epoch = strtoul(e, NULL, 10);
        ag_optim_set_steps(opt, strtoull(st, NULL, 10));
        train_seconds = ts ? strtod(ts, NULL) : 0;
        samples_done = sd ? strtod(sd, NULL) : 0;
        hist_decode(ag_model_meta(ck, "history"), h, start_epoch < (size_t)c.epochs ? start_epoch : (size_t)c.epochs);
        ag_model_close(ck);
        ck = NULL;
        if (start_epoch >= (size_t)c.epochs)
            fprintf(stderr, "fashion_mnist: %s already holds %zu epochs (--epochs %ld): nothing to train\n", c.resume,
                    start_epoch, c.epochs);
        else
            printf("resuming from %s at epoch %zu/%ld\n", c.resume, start_epoch + 1, c.epochs);
    }

    size_t numel = 0;
    for (size_t i = 0; i < ag_params_count(n.ps); i++) numel += ag_params_at(n.ps, i)->size;
    printf("fashion_mnist: preset %s: %s %s, %s loss, %s lr %g %s, lambda %g, batch %zu, %ld epochs, seed %llu, "
           "%d threads (%s kernels), " AG_REAL_NAME ", denormals %s\n",
           c.preset, c.arch, c.act, c.loss, c.optim, c.lr, c.schedule,
           c.lambda, bs, c.epochs, c.seed, ag_get_threads(), ag_kernel_name(),
           flushed ? "flushed (FTZ/DAZ; --no-flush-denormal keeps them)" : "kept");
    printf("data: %zu training and %zu test images from %s; %zu parameters\n", train.n, test.n, c.data, numel);

    /* buffers for one batch, reused by every step: the step allocates nothing */
    size_t ebs = bs > 1000 ? bs : 1000;
    ag_real *x = alloc_aligned(ebs * 784 * sizeof *x), *oh = alloc_aligned(ebs * 10 * sizeof *oh);
    int32_t *y = malloc(ebs * sizeof *y);
    uint32_t *order = malloc(train.n * sizeof *order), *eidx = malloc(ebs * sizeof *eidx);
    if (!x || !oh || !y || !order || !eidx) die("out of memory");
    ag_tensor *weights[AG_MLP_MAX_LAYERS];
    for (size_t i = 0; i < n.mlp->n_layers; i++) weights[i] = n.mlp->weights[i];

    int tty = isatty(2);
    size_t steady_allocs = 0, correct[10], total[10];
    double acc = 0;
    size_t end_epoch = (size_t)c.epochs;
    if (c.stop_after > 0 && (size_t)c.stop_after < end_epoch) end_epoch = (size_t)c.stop_after;
    size_t epochs_done = start_epoch;
    int blown = 0; /* numerical blow-up: stop, keep the last good checkpoint, exit EXIT_NUMERIC */
    ag_optim_zero_grad(opt); /* from here on each successful step clears the gradients */
    for (size_t epoch = start_epoch; epoch < end_epoch; epoch++) {
        ag_dataset_shuffle(order, train.n, c.seed, epoch);
        double t0 = now(), last_draw = 0, loss_sum = 0;
        double lr_epoch = ag_optim_lr(opt);
        for (size_t s = 0; s < steps; s++) {
            size_t a0 = atomic_load(&n_allocs);
            size_t k = train.n - s * bs < bs ? train.n - s * bs : bs;
            ag_tape_reset(n.t);
            ag_dataset_batch(&train, order + s * bs, k, x, y, n.mse ? oh : NULL);
            ag_tensor *X = ag_tensor_wrap(n.t, 2, (size_t[]){k, 784}, x);
            ag_tensor *hh = ag_mlp_forward(n.t, n.mlp, X, NULL, NULL);
            ag_tensor *J;
            if (n.mse)
                J = ag_cost_squared_error_l2(n.t, hh, ag_tensor_wrap(n.t, 2, (size_t[]){k, 10}, oh), (ag_real)c.lambda,
                                             weights, n.mlp->n_layers);
            else
                J = ag_cost_cross_entropy_l2(n.t, hh, y, (ag_real)c.lambda, weights, n.mlp->n_layers);
            if (!J) die("step %zu: %s", s, ag_tape_errmsg(n.t));
            /* backward and update in one sweep: each weight is updated from its gradient tile by
             * tile, as the GEMM produces it (bit-identical to ag_backward + ag_optim_step) */
            double lv = (double)J->value[0];
            ag_status st = isfinite(lv) ? ag_optim_backward_step(opt, n.t, J) : AG_ERR_NUMERIC;
            if (st == AG_ERR_NUMERIC) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr,
                        "fashion_mnist: numerical blow-up: the loss is %g at epoch %zu step %zu/%zu (learning rate %g "
                        "too high?); stopping.\n",
                        lv, epoch + 1, s + 1, steps, ag_optim_lr(opt));
                if (epoch > 0 || start_epoch > 0)
                    fprintf(stderr, "fashion_mnist: the last good checkpoint is %s (epoch %zu)\n", c.checkpoint, epoch);
                else
                    fprintf(stderr, "fashion_mnist: no checkpoint was written (the first epoch did not finish)\n");
                blown = 1;
                break;
            }
            if (st != AG_OK) die("training step: %s", ag_optim_errmsg(opt));
            loss_sum += lv * (double)k;
            if (s > 0) steady_allocs += atomic_load(&n_allocs) - a0;
            if (tty) {
                double tn = now();
                if (tn - last_draw >= 0.1 || s + 1 == steps) {
                    double el = tn - t0, done = (double)(s * bs + k);
                    progress((int)epoch + 1, (int)c.epochs, s + 1, steps, loss_sum / done, done / el,
                             el / done * ((double)train.n - done));
                    last_draw = tn;
                }
            }
        }
        if (blown) break;
        double dt = now() - t0;
        if (tty) fputs("\r\x1b[K", stderr);
        train_seconds += dt;
        samples_done += (double)train.n;
        hist *r = &h[epoch];
        r->train_loss = loss_sum / (double)train.n;
        r->seconds = dt;
        r->sps = (double)train.n / dt;
        r->lr = lr_epoch;
        acc = evaluate(&n, &test, x, y, oh, eidx, 1000, &r->test_loss, correct, total);
        r->test_acc = acc;
        int finite = 1;
        for (size_t i = 0; i < ag_params_count(n.ps) && finite; i++) {
            ag_tensor *p = ag_params_at(n.ps, i);
            for (size_t j = 0; j < p->size && finite; j++) finite = isfinite((double)p->value[j]);
        }
        if (!finite) {
            fprintf(stderr, "fashion_mnist: numerical blow-up: non-finite weights after epoch %zu; stopping. ", epoch + 1);
            fprintf(stderr, "The last good checkpoint is %s\n", c.checkpoint);
            blown = 1;
            break;
        }
        printf("epoch %zu/%ld  train_loss=%.4f  test_loss=%.4f  test_accuracy=%.4f  lr=%.4g  %.1fs  %.0f samples/s\n",
               epoch + 1, c.epochs, r->train_loss, r->test_loss, acc, lr_epoch, dt, r->sps);

        /* checkpoint: params + optimizer state + counters + settings, atomically */
        ag_kv meta[64];
        char vals[N_OPTS][1100], keys[N_OPTS][80], es[32], ss[32], tss[32], sds[32];
        size_t nm = 0;
        meta[nm++] = (ag_kv){"kind", "fashion_mnist checkpoint"};
        meta[nm++] = (ag_kv){"arch", c.arch};
        meta[nm++] = (ag_kv){"activation", c.act};
        meta[nm++] = (ag_kv){"loss", c.loss};
        snprintf(es, sizeof es, "%zu", epoch + 1);
        snprintf(ss, sizeof ss, "%llu", (unsigned long long)ag_optim_steps(opt));
        snprintf(tss, sizeof tss, "%.3f", train_seconds);
        snprintf(sds, sizeof sds, "%.0f", samples_done);
        meta[nm++] = (ag_kv){"epoch", es};
        meta[nm++] = (ag_kv){"optim_steps", ss};
        meta[nm++] = (ag_kv){"train_seconds", tss};
        meta[nm++] = (ag_kv){"samples", sds};
        meta[nm++] = (ag_kv){"shuffle", "order of epoch e = ag_dataset_shuffle(seed, e)"};
        char *hs = hist_encode(h, epoch + 1);
        meta[nm++] = (ag_kv){"history", hs};
        for (size_t i = 0; i < N_OPTS; i++) {
            if (!OPTS[i].saved) continue;
            snprintf(keys[i], sizeof keys[i], "cfg.%s", OPTS[i].name);
            opt_str(&c, &OPTS[i], vals[i], sizeof vals[i]);
            meta[nm++] = (ag_kv){keys[i], vals[i]};
        }
        if (c.checkpoint[0] &&
            ag_model_save(c.checkpoint, n.ps, state, n_state, meta, nm, err, sizeof err) != AG_OK)
            die("checkpoint: %s", err);
        free(hs);
        epochs_done = epoch + 1;
        if (c.metrics[0]) write_metrics(c.metrics, h, epoch + 1);
        if (c.plot[0]) {
            double *a = malloc(3 * (epoch + 1) * sizeof *a);
            if (!a) die("out of memory");
            for (size_t i = 0; i <= epoch; i++) {
                a[i] = h[i].train_loss;
                a[epoch + 1 + i] = h[i].test_loss;
                a[2 * (epoch + 1) + i] = h[i].test_acc;
            }
            char title[400];
            snprintf(title, sizeof title, "Fashion-MNIST %s %s, %s loss, %s", c.arch, c.act, c.loss, c.optim);
            if (svg_write_curves(c.plot, title, epoch + 1, a, a + epoch + 1, a + 2 * (epoch + 1)) != 0)
                die("%s: cannot write: %s", c.plot, strerror(errno));
            free(a);
        }
        if (c.target_acc > 0 && acc >= c.target_acc) { /* evaluated after each epoch, as the torch twin */
            printf("target test accuracy %g reached at epoch %zu: stopping\n", c.target_acc, epoch + 1);
            break;
        }
    }
    if (blown) goto cleanup;
    if (start_epoch >= end_epoch) {
        double tl;
        acc = evaluate(&n, &test, x, y, oh, eidx, 1000, &tl, correct, total);
    }

    /* the model: parameters and what is needed to rebuild it (deterministic content) */
    char es[32], accs[32];
    snprintf(es, sizeof es, "%zu", epochs_done);
    snprintf(accs, sizeof accs, "%.4f", acc);
    ag_kv mm[] = {{"kind", "fashion_mnist model"}, {"arch", c.arch}, {"activation", c.act}, {"loss", c.loss},
                  {"classes", "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"},
                  {"epochs", es}, {"test_accuracy", accs}, {"optim", c.optim}, {"dtype", AG_REAL_NAME}};
    if (c.model[0] && ag_model_save(c.model, n.ps, NULL, 0, mm, sizeof mm / sizeof mm[0], err, sizeof err) != AG_OK)
        die("%s", err);
    print_classes(correct, total);
    printf("\nsteady-state heap allocations in training steps: %zu\n", steady_allocs);
    if (c.model[0]) printf("model: %s\n", c.model);
    if (c.checkpoint[0]) printf("checkpoint: %s\n", c.checkpoint);
    if (c.metrics[0]) printf("metrics: %s\n", c.metrics);
    if (c.plot[0]) printf("plot: %s\n", c.plot);
    printf("final test_accuracy=%.4f epochs=%zu train_seconds=%.2f samples_per_second=%.0f\n", acc, epochs_done,
           train_seconds, train_seconds > 0 ? samples_done / train_seconds : 0.0);
cleanup:
    free(x), free(oh), free(y), free(order), free(eidx), free(h);
    ag_optim_free(opt);
    net_free(&n);
    ag_dataset_free(&train);
    ag_dataset_free(&test);
    return blown ? EXIT_NUMERIC : 0;
}

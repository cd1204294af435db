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
#if !defined(_XOPEN_SOURCE) || _XOPEN_SOURCE < 700
#undef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* realpath (XSI in glibc's headers) */
#endif
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <tapegrad/ag_io.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "svg.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define EXIT_NUMERIC 3

static const char *const CLASS_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* ---------------------------------------------------------------- options */

typedef struct cfg {
    char arch[256], act[32], loss[16], optim[16], schedule[16], init[32], l2[16], normalize[16];
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
    {"momentum", T_DBL, S(momentum), 1, "momentum for momentum/nesterov, in (0, 1)"},
    {"lambda", T_DBL, S(lambda), 1, "L2 weight decay on the weights (never biases), where --l2 says"},
    {"weight-decay", T_DBL, S(lambda), 0, "same as --lambda"},
    {"l2", T_STR, S(l2), 1,
     "cost | optimizer: lambda as an L2 term in the cost (the derivation's J; the loss shown includes\n"
     "                  it) or as the optimizer's weight decay (the same updates for sgd, momentum, nesterov,\n"
     "                  adam unless --clip, which clips the cost's term with the gradient; adamw's decoupled\n"
     "                  decay), which skips the cost's sum of W^2 each step"},
    {"schedule", T_STR, S(schedule), 1, "constant | cosine (to 0 over the run) | step (x0.1 at 1/3 and 2/3)"},
    {"normalize", T_STR, S(normalize), 1,
     "none (pixels / 255) | standard (pixels / 255 minus the training set's mean, over its std; the two\n"
     "                  numbers are saved with the model and the checkpoint)"},
    {"clip", T_DBL, S(clip), 1, "clip the gradient to this global norm (0 = off)"},
    {"batch", T_LONG, S(batch), 1, "mini-batch size"},
    {"epochs", T_LONG, S(epochs), 1, "number of epochs (with --resume: the total to reach)"},
    {"stop-after", T_LONG, S(stop_after), 0,
     "end after this many epochs in total, with the model written; --resume continues to --epochs (0 = off)"},
    {"target-acc", T_DBL, S(target_acc), 0, "stop after the first epoch whose test accuracy reaches this (0 = off)"},
    {"limit", T_LONG, S(limit), 1, "train on the first N training images only (0 = all)"},
    {"test-limit", T_LONG, S(test_limit), 0, "evaluate on the first N test images only (0 = all)"},
    {"seed", T_U64, S(seed), 1, "seed of the weights and of every epoch's shuffle"},
    {"threads", T_LONG, S(threads), 0, "worker threads (0 = all online cores)"},
    {"data", T_STR, S(data), 0, "directory of the IDX files (.gz or raw)"},
    {"model", T_STR, S(model), 0, "final model file (safetensors); for this and the next three, \"\" = none"},
    {"checkpoint", T_STR, S(checkpoint), 0, "checkpoint written after each epoch (with --resume: the resumed file)"},
    {"metrics", T_STR, S(metrics), 0, "per-epoch metrics CSV"},
    {"plot", T_STR, S(plot), 0, "SVG plot of the loss and accuracy curves"},
    {"resume", T_STR, S(resume), 0, "continue training from a checkpoint, with its saved settings"},
    {"eval", T_STR, S(eval), 0,
     "evaluate a saved model on the test set and exit (with --data, --test-limit, --threads)"},
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
        snprintf(c->l2, sizeof c->l2, "cost");
        snprintf(c->normalize, sizeof c->normalize, "none"); /* the derivation's inputs in [0, 1] */
        c->batch = 32;
        c->epochs = 15;
    } else {
        snprintf(c->arch, sizeof c->arch, "784-512-256-10");
        snprintf(c->act, sizeof c->act, "relu");
        snprintf(c->loss, sizeof c->loss, "xent");
        snprintf(c->init, sizeof c->init, "he");
        snprintf(c->optim, sizeof c->optim, "momentum");
        snprintf(c->schedule, sizeof c->schedule, "cosine");
        /* lambda as the optimizer's weight decay, as PyTorch's SGD(weight_decay=): the same updates, bit
         * for bit, without the cost's sum of W^2 per step. Standardised inputs and a 4-epoch cosine reach
         * 88% at epoch 3 and end near 89%; --epochs 15 ends near 90% (bench/README.md, recipe sweep). */
        c->lr = 0.02;
        c->momentum = 0.9;
        c->lambda = 1e-4;
        snprintf(c->l2, sizeof c->l2, "optimizer");
        snprintf(c->normalize, sizeof c->normalize, "standard");
        c->batch = 32;
        c->epochs = 4;
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
               "  modern (default)  784-512-256-10 relu, cross-entropy, SGD momentum 0.9, lr 0.02 cosine, L2 1e-4 (in the\n"
               "                    optimizer), standardised inputs, batch 32, 4 epochs (about 89%%; --epochs 15: 90%%)\n"
               "  seed              784-256-10 sigmoid, squared error + L2 1e-5, plain SGD lr 1.0, inputs in [0, 1],\n"
               "                    batch 32, 15 epochs\n"
               "Flags given after or before --preset override it. Output ends with the line\n"
               "  final test_accuracy=<x> epochs=<n> train_seconds=<s> samples_per_second=<n>\n"
               "Exit status: 0 done, 1 an error while running (files, data), 2 a bad command line,\n"
               "3 a numerical blow-up (the last good checkpoint is kept), 128+n stopped by signal n.\n");
}

/* s for a message: at most 48 bytes, anything but printable ASCII shown as '?' (metadata read
 * from a file must not write control sequences to the terminal) */
static const char *shown(const char *s, char *buf, size_t size) {
    size_t k = 0;
    for (; s && *s && k + 4 < size && k < 48; s++) buf[k++] = (*s >= 32 && *s < 127) ? *s : '?';
    if (s && *s) buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
    buf[k] = '\0';
    return buf;
}

/* Parse v into the option. from: NULL for the command line (messages name --flag), else the
 * checkpoint the value was read from (messages name the file and its cfg.<flag> entry). */
static int set_opt(cfg *c, const opt_def *o, const char *v, const char *from) {
    char *base = (char *)c + o->off, *end, sv[64], what[1200];
    if (from) snprintf(what, sizeof what, "%s: cfg.%s in the checkpoint", from, o->name);
    else snprintf(what, sizeof what, "--%s", o->name);
    errno = 0;
    switch (o->type) {
    case T_STR:
        if (strlen(v) >= o->size) return fprintf(stderr, "fashion_mnist: %s: value too long\n", what), -1;
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case T_DBL: {
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < 0)
            return fprintf(stderr, "fashion_mnist: %s: expected a non-negative number, got \"%s\"\n", what,
                           shown(v, sv, sizeof sv)), -1;
        *(double *)(void *)base = d;
        return 0;
    }
    case T_LONG: {
        long l = strtol(v, &end, 10);
        if (!*v || *end || errno || l < 0 || l > 1000000000L)
            return fprintf(stderr, "fashion_mnist: %s: expected a non-negative integer, got \"%s\"\n", what,
                           shown(v, sv, sizeof sv)), -1;
        *(long *)(void *)base = l;
        return 0;
    }
    default: {
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ')
            return fprintf(stderr, "fashion_mnist: %s: expected a non-negative integer, got \"%s\"\n", what,
                           shown(v, sv, sizeof sv)), -1;
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

/* "--name" or "--name=..." for a flag the program knows: taken for a forgotten value before it
 * ("--epochs --model m.st"), not as the value. */
static int is_flag(const char *a) {
    if (strncmp(a, "--", 2) != 0) return 0;
    if (!strcmp(a, "--help") || !strcmp(a, "--no-flush-denormal")) return 1;
    char name[64];
    size_t nl = strcspn(a + 2, "=");
    if (nl >= sizeof name) return 0;
    memcpy(name, a + 2, nl);
    name[nl] = '\0';
    return find_opt(name) != NULL;
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
        else if (i + 1 < argc && !is_flag(argv[i + 1])) val = argv[++i];
        else if (i + 1 < argc) {
            fprintf(stderr, "fashion_mnist: --%s needs a value (the next argument is the flag %s)\n", name,
                    argv[i + 1]);
            return -1;
        } else {
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
            given[o - OPTS] = 1;
        } else if (pass == 1 && !is_preset) {
            if (set_opt(c, o, val, NULL) != 0) return -1;
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

static void report(const char *fmt, va_list ap) {
    fputs("fashion_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* What goes wrong while running (files, data): status 1. */
static _Noreturn void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
    exit(1);
}

/* A bad command line (a flag's value out of range, flags that conflict): status 2, as for a flag
 * that cannot be parsed. */
static _Noreturn void usage_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
    exit(2);
}

/* Standard output checked at exit: a full disk or a closed pipe must not end in status 0. */
static int finish(int rc) {
    int e = fflush(stdout) != 0 ? errno : 0;
    if (e || ferror(stdout)) {
        fprintf(stderr, "fashion_mnist: cannot write to standard output%s%s\n", e ? ": " : "", e ? strerror(e) : "");
        return rc ? rc : 1;
    }
    return rc;
}

/* SIGINT/SIGTERM during training: the handler only records the signal and restores the default
 * action (a second Ctrl-C ends the program at once); the training loop stops after the current
 * step. */
static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    stop_signal = sig;
}
static void catch_signals(void) {
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct sigaction sa, old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue; /* e.g. nohup, & */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}
static const char *signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

/* ---------------------------------------------------------------- output files */

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) || S_ISBLK(m) ? "a device"
         : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* An output replaced through a temporary file and rename may be a regular file or not exist yet.
 * A symbolic link to a regular file is followed: out (when not NULL) gets the file it points to,
 * which is replaced while the link stays. Anything else (a directory, a FIFO, a device, a dangling
 * link) is refused rather than replaced. */
static void output_target(const char *flag, const char *path, char *out, size_t size) {
    struct stat st;
    if (out) snprintf(out, size, "%s", path);
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return;
        die("--%s %s: %s", flag, path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
        if (stat(path, &st) != 0)
            die("--%s %s: a symbolic link to %s (%s); refusing to replace it", flag, path,
                errno == ENOENT ? "a missing file" : "a file that cannot be reached", strerror(errno));
        if (!S_ISREG(st.st_mode))
            die("--%s %s: a symbolic link to %s; refusing to replace it (give a regular file)", flag, path,
                file_kind(st.st_mode));
        if (out) {
            char *r = realpath(path, NULL);
            if (!r) die("--%s %s: %s", flag, path, strerror(errno));
            if (strlen(r) >= size) die("--%s %s: the file it links to has too long a path", flag, path);
            snprintf(out, size, "%s", r);
            free(r);
        }
        return;
    }
    if (!S_ISREG(st.st_mode))
        die("--%s %s: exists and is %s; refusing to replace it (give a regular file)", flag, path,
            file_kind(st.st_mode));
}

/* The directory an output goes to must take a new file (the temporary one renamed over it), checked
 * before training rather than found out when the first file is written. */
static void output_dir_writable(const char *flag, const char *path) {
    char dir[1100];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) die("--%s %s: cannot write in %s: %s", flag, path, dir, strerror(errno));
}

/* path made absolute with its directory's symbolic links resolved (the file itself may not exist) */
static void canonical(const char *path, char *out, size_t size) {
    char *r = realpath(path, NULL);
    if (!r) {
        const char *slash = strrchr(path, '/');
        char dir[1100];
        if (!slash) snprintf(dir, sizeof dir, ".");
        else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        char *rd = realpath(dir, NULL);
        if (rd) snprintf(out, size, "%s/%s", rd, slash ? slash + 1 : path);
        else snprintf(out, size, "%s", path);
        free(rd);
        return;
    }
    snprintf(out, size, "%s", r);
    free(r);
}

/* Two flags naming the same file (after symbolic links, or hard links to one file) */
static int same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ca[2300], cb[2300];
    canonical(a, ca, sizeof ca);
    canonical(b, cb, sizeof cb);
    return strcmp(ca, cb) == 0;
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

/* One file of the data set: <dir>/<name>.gz, or <dir>/<name> uncompressed (each file on its own:
 * the images may be compressed and the labels not). Missing: the .gz name, for the message. */
static int data_file(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s.gz", dir, name);
    if (access(out, F_OK) == 0) return 1;
    snprintf(out, size, "%s/%s", dir, name);
    if (access(out, F_OK) == 0) return 1;
    snprintf(out, size, "%s/%s.gz", dir, name);
    return 0;
}

static void load_split(ag_dataset *ds, const char *dir, const char *prefix, long limit) {
    char ip[1200], lp[1200], name[64], err[AG_IO_ERRMSG_SIZE];
    struct stat st;
    int rc = stat(dir, &st);
    if (rc != 0 || !S_ISDIR(st.st_mode)) { /* say so, rather than name a file in it */
        const char *why = !dir[0]            ? "empty"
                          : rc != 0          ? (errno == ENOENT ? "no such directory" : strerror(errno))
                                             : "not a directory";
        fprintf(stderr, "fashion_mnist: --data \"%s\": %s\n", dir, why);
        if (strcmp(dir, DEFAULT_DATA) == 0)
            fprintf(stderr, "fashion_mnist: the data set is not installed; install it with:\n"
                            "    sudo apt-get install dataset-fashion-mnist\n");
        exit(1);
    }
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    int found = data_file(ip, sizeof ip, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    found &= data_file(lp, sizeof lp, dir, name);
    ag_idx_options o = {.classes = 10, .rows = 28, .cols = 28, .limit = (size_t)limit};
    if (ag_dataset_load(ds, ip, lp, &o, err, sizeof err) != AG_OK) {
        if (stop_signal) { /* a signal can end a read from a slow or special file */
            fprintf(stderr, "fashion_mnist: interrupted (%s) while loading the data\n", signal_name(stop_signal));
            exit(128 + stop_signal);
        }
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

/* ---------------------------------------------------------------- model and checkpoint files */

/* The names the program knows for a metadata entry: NULL when value is one of them, else the list
 * for the message. */
static const char *unknown_name(const char *key, const char *value) {
    ag_act a;
    ag_init in;
    if (!strcmp(key, "act") || !strcmp(key, "activation"))
        return ag_act_parse(value, &a) == AG_OK ? NULL : "relu, sigmoid, tanh";
    if (!strcmp(key, "init")) return parse_init(value, &in) == AG_OK ? NULL : "he, glorot, glorot-uniform, small";
    if (!strcmp(key, "loss")) return !strcmp(value, "mse") || !strcmp(value, "xent") ? NULL : "mse, xent";
    if (!strcmp(key, "optim"))
        return !strcmp(value, "sgd") || !strcmp(value, "momentum") || !strcmp(value, "nesterov") ||
                       !strcmp(value, "adam") || !strcmp(value, "adamw")
                   ? NULL
                   : "sgd, momentum, nesterov, adam, adamw";
    if (!strcmp(key, "l2")) return !strcmp(value, "cost") || !strcmp(value, "optimizer") ? NULL : "cost, optimizer";
    if (!strcmp(key, "normalize")) return !strcmp(value, "none") || !strcmp(value, "standard") ? NULL : "none, standard";
    if (!strcmp(key, "schedule"))
        return !strcmp(value, "constant") || !strcmp(value, "cosine") || !strcmp(value, "step") ? NULL
                                                                                                : "constant, cosine, step";
    return NULL;
}

/* The arch of a file, checked against the file's own tensors before anything is built from it:
 * fc<i>.W must be sizes[i] x sizes[i-1] and fc<i>.b sizes[i]. An edited or damaged "arch" can thus
 * neither make the program allocate a model the file does not hold nor load into another one. */
static void check_arch(const ag_model_file *mf, const char *file, const char *key, const char *arch) {
    size_t sizes[AG_MLP_MAX_LAYERS], n;
    char err[512], sv[64];
    if (ag_mlp_parse_spec(arch, sizes, AG_MLP_MAX_LAYERS, &n, err, sizeof err) != AG_OK)
        die("%s: %s \"%s\" in the file is not a list of layer sizes (%s)", file, key, shown(arch, sv, sizeof sv), err);
    if (sizes[0] != 784 || sizes[n - 1] != 10)
        die("%s: %s %s in the file: the network must have 784 inputs and 10 outputs", file, key, arch);
    for (size_t i = 1; i < n; i++) {
        for (int b = 0; b < 2; b++) {
            char nm[48];
            snprintf(nm, sizeof nm, "fc%zu.%s", i, b ? "b" : "W");
            const ag_model_tensor *t = ag_model_find(mf, nm);
            if (!t) die("%s: %s %s in the file needs a tensor %s, which the file lacks", file, key, arch, nm);
            int ok = b ? t->ndim == 1 && t->shape[0] == sizes[i]
                       : t->ndim == 2 && t->shape[0] == sizes[i] && t->shape[1] == sizes[i - 1];
            if (!ok) {
                char shape[128] = "";
                for (int d = 0; d < t->ndim && d < 8; d++)
                    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%zu", d ? "x" : "", t->shape[d]);
                if (b) die("%s: %s %s in the file does not match its tensors: %s is [%s], the arch needs [%zu]", file,
                           key, arch, nm, shape, sizes[i]);
                die("%s: %s %s in the file does not match its tensors: %s is [%s], the arch needs [%zux%zu]", file, key,
                    arch, nm, shape, sizes[i], sizes[i - 1]);
            }
        }
    }
    char nm[48];
    snprintf(nm, sizeof nm, "fc%zu.W", n);
    if (ag_model_find(mf, nm)) die("%s: %s %s in the file has %zu layers but the file holds %s", file, key, arch, n - 1, nm);
}

/* Every parameter (and extra buffer) finite: a model holding NaN or Inf would evaluate to NaN. */
static void check_finite(const char *file, const ag_params *ps, const ag_named_buf *extra, size_t n_extra) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        const ag_tensor *p = ag_params_at(ps, i);
        for (size_t j = 0; j < p->size; j++)
            if (!isfinite((double)p->value[j]))
                die("%s: %s[%zu] is %g: the file holds non-finite weights and cannot be used", file,
                    p->name ? p->name : "?", j, (double)p->value[j]);
    }
    for (size_t i = 0; i < n_extra; i++)
        for (size_t j = 0; j < extra[i].n; j++)
            if (!isfinite((double)extra[i].data[j]))
                die("%s: %s[%zu] is %g: the file holds a non-finite optimizer state and cannot be used", file,
                    extra[i].name, j, (double)extra[i].data[j]);
}

/* A count in metadata: digits only, at most max. */
static int meta_count(const char *s, unsigned long long max, unsigned long long *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v > max) return -1;
    *out = v;
    return 0;
}
/* A non-negative finite number in metadata. */
static int meta_number(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v) || v < 0) return -1;
    *out = v;
    return 0;
}

/* The input standardisation saved in a model or checkpoint: both input_mean and input_std, or neither
 * (pixels / 255: *std stays 0). */
static void read_input_stats(const ag_model_file *mf, const char *file, const char *what, double *mean, double *std) {
    const char *m = ag_model_meta(mf, "input_mean"), *s = ag_model_meta(mf, "input_std");
    char sv[64];
    if (!m && !s) return;
    if (!m || !s) die("%s: the %s has %s but not %s", file, what, m ? "input_mean" : "input_std", m ? "input_std" : "input_mean");
    if (meta_number(m, mean) != 0 || *mean > 1)
        die("%s: input_mean \"%s\" in the %s is not a mean pixel value in [0, 1]", file, shown(m, sv, sizeof sv), what);
    if (meta_number(s, std) != 0 || !(*std > 0) || *std > 1)
        die("%s: input_std \"%s\" in the %s is not a standard deviation in (0, 1]", file, shown(s, sv, sizeof sv), what);
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
    const char *kind = ag_model_meta(mf, "kind");
    char sv[64];
    if (kind && !strcmp(kind, "fashion_mnist checkpoint"))
        die("%s is a training checkpoint, not a model: --eval takes the model file (--model, by default "
            "fashion_mnist.safetensors), or continue training with --resume %s",
            c->eval, c->eval);
    if (kind && strcmp(kind, "fashion_mnist model"))
        die("%s: kind \"%s\" in the file: not a fashion_mnist model", c->eval, shown(kind, sv, sizeof sv));
    const char *arch = ag_model_meta(mf, "arch"), *act = ag_model_meta(mf, "activation"),
               *loss = ag_model_meta(mf, "loss");
    if (!arch || !act || !loss)
        die("%s: the file lacks the arch/activation/loss metadata that fashion_mnist writes", c->eval);
    const char *known;
    if ((known = unknown_name("activation", act)))
        die("%s: activation \"%s\" in the file is unknown (%s)", c->eval, shown(act, sv, sizeof sv), known);
    if ((known = unknown_name("loss", loss)))
        die("%s: loss \"%s\" in the file is unknown (%s)", c->eval, shown(loss, sv, sizeof sv), known);
    const char *ep = ag_model_meta(mf, "epochs");
    unsigned long long epochs = 0;
    if (ep && meta_count(ep, 1000000000ULL, &epochs) != 0)
        die("%s: epochs \"%s\" in the file is not a number of epochs", c->eval, shown(ep, sv, sizeof sv));
    check_arch(mf, c->eval, "arch", arch);
    net n;
    net_build(&n, arch, act, loss, "he", 1);
    if (ag_model_read(mf, n.ps, NULL, 0, err, sizeof err) != AG_OK) die("%s", err);
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
    if (in_std > 0 && ag_dataset_standardize(&test, in_mean, in_std) != AG_OK) die("%s: unusable input_mean/input_std", c->eval);
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
    return finish(0);
}

/* ---------------------------------------------------------------- training */

typedef struct hist {
    double train_loss, test_loss, test_acc, seconds, sps, lr;
} hist;

/* history rows as text ("loss,loss,acc,sec,sps,lr;...") for the checkpoint; every field round-trips
 * (%.17g), so a resumed run writes the earlier epochs' CSV rows exactly as the first run did */
static char *hist_encode(const hist *h, size_t n) {
    size_t cap = n * 160 + 1;
    char *s = malloc(cap);
    if (!s) die("out of memory");
    size_t k = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s%.17g,%.17g,%.17g,%.17g,%.17g,%.17g", i ? ";" : "", h[i].train_loss,
                              h[i].test_loss, h[i].test_acc, h[i].seconds, h[i].sps, h[i].lr);
    return s;
}
/* The history goes into the checkpoint as metadata values of at most HIST_CHUNK bytes, cut at row
 * boundaries: "history", "history.1", "history.2", ... (one value is capped at 64 KiB, which a
 * single value would pass after about 400 epochs). Cuts s in place; returns the number of chunks
 * and their starts in *out (malloc'ed). */
#define HIST_CHUNK 60000
static size_t hist_chunks(char *s, char ***out) {
    size_t len = strlen(s), n = 0, cap = len / (HIST_CHUNK / 2) + 2;
    char **v = malloc(cap * sizeof *v);
    if (!v) die("out of memory");
    for (size_t start = 0; n == 0 || start < len;) {
        size_t end = len - start > HIST_CHUNK ? start + HIST_CHUNK : len;
        if (end < len) { /* back to the last ';' inside the chunk (a row is < 200 bytes) */
            while (end > start && s[end] != ';') end--;
            s[end] = '\0';
        }
        v[n++] = s + start;
        start = end + 1;
    }
    *out = v;
    return n;
}

/* The checkpoint's history text, its chunks joined again (malloc'ed), or NULL if it has none. */
static char *hist_join(const ag_model_file *ck) {
    const char *first = ag_model_meta(ck, "history");
    if (!first) return NULL;
    size_t len = strlen(first), n = 1;
    char key[32];
    for (;; n++) {
        snprintf(key, sizeof key, "history.%zu", n);
        const char *v = ag_model_meta(ck, key);
        if (!v) break;
        len += 1 + strlen(v);
    }
    char *s = malloc(len + 1), *p = s;
    if (!s) die("out of memory");
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "history.%zu", i);
        const char *v = i ? ag_model_meta(ck, key) : first;
        size_t k = strlen(v);
        if (i) *p++ = ';';
        memcpy(p, v, k);
        p += k;
    }
    *p = '\0';
    return s;
}

/* Exactly n rows of hist_encode's text into h (which holds n); -1 if s is anything else. */
static int hist_decode(const char *s, hist *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v[6];
        for (int k = 0; k < 6; k++) {
            char *end;
            if (*s == ' ' || *s == '\0') return -1;
            v[k] = strtod(s, &end);
            if (end == s || *end != (k < 5 ? ',' : i + 1 < n ? ';' : '\0')) return -1;
            s = *end ? end + 1 : end;
        }
        h[i] = (hist){v[0], v[1], v[2], v[3], v[4], v[5]};
    }
    return *s ? -1 : 0;
}

/* The metrics CSV, through a temporary file renamed over the target (resolved by output_target
 * each time: a symbolic link is followed, anything but a regular file refused); the temporary file
 * is removed on every failure. */
static void write_metrics(const char *path, const hist *h, size_t n) {
    char real[1100], tmp[1200];
    output_target("metrics", path, real, sizeof real);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", real, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) die("%s: cannot write: %s", path, strerror(errno));
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
        die("%s: cannot write: %s", path, strerror(e));
    }
}

/* Where training can go on from, after a stop (blow-up or signal); finishes the line begun. */
static void last_checkpoint(const cfg *c, size_t epochs_done, size_t start_epoch) {
    if (epochs_done > start_epoch && c->checkpoint[0])
        fprintf(stderr, "the last good checkpoint is %s (epoch %zu): continue with --resume %s\n", c->checkpoint,
                epochs_done, c->checkpoint);
    else if (start_epoch > 0)
        fprintf(stderr, "the last good checkpoint is %s (epoch %zu): continue with --resume %s\n", c->resume,
                start_epoch, c->resume);
    else if (!c->checkpoint[0])
        fprintf(stderr, "no checkpoint was written (--checkpoint is empty)\n");
    else
        fprintf(stderr, "no checkpoint was written (the first epoch did not finish)\n");
}

/* A setting out of range: named as the flag, or as the checkpoint's entry when it came from there. */
static void bad_setting(const cfg *c, const unsigned char *from_ck, const char *name, const char *rule) {
    const opt_def *o = find_opt(name);
    if (from_ck[o - OPTS]) {
        char v[64];
        opt_str(c, o, v, sizeof v);
        die("%s: cfg.%s %s in the checkpoint %s (no --%s was given; the checkpoint holds it)", c->resume, name, v, rule,
            name);
    }
    usage_die("--%s %s", name, rule);
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
    if (ag_set_threads((int)c.threads) != AG_OK) usage_die("--threads %ld is invalid", c.threads);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* an empty --eval or --resume (an unset shell variable, say) must not start a fresh training run */
    if (given[find_opt("eval") - OPTS] && !c.eval[0]) usage_die("--eval needs the model file to evaluate");
    if (given[find_opt("resume") - OPTS] && !c.resume[0]) usage_die("--resume needs the checkpoint file to continue");
    if (c.eval[0]) {
        static const char *const eval_flags[] = {"eval", "data", "test-limit", "threads"};
        for (size_t i = 0; i < N_OPTS; i++) {
            int used = 0;
            for (size_t j = 0; j < sizeof eval_flags / sizeof *eval_flags; j++)
                used |= !strcmp(OPTS[i].name, eval_flags[j]);
            if (given[i] && !used)
                usage_die("--%s has no effect with --eval, which only evaluates the saved model (--data, --test-limit "
                          "and --threads apply); drop it",
                          OPTS[i].name);
        }
        return run_eval(&c);
    }

    /* --resume: settings from the checkpoint, then the flags given explicitly. Every entry read is
     * checked (numbers parsed whole and in range, names from the known sets) before use. A flag that
     * would change the network or the optimizer is refused; one that changes the rest of the run
     * (learning rate, batch, ...) is applied and reported. */
    char err[AG_IO_ERRMSG_SIZE], sv[64];
    ag_model_file *ck = NULL;
    unsigned char from_ck[N_OPTS] = {0}; /* the value was read from the checkpoint (for messages) */
    if (c.resume[0]) {
        if (given[find_opt("preset") - OPTS])
            usage_die("--preset cannot be combined with --resume: a resumed run keeps the settings saved in %s "
                      "(flags such as --epochs or --lr change what may change)",
                      c.resume);
        if (ag_model_open(c.resume, &ck, err, sizeof err) != AG_OK) die("%s", err);
        const char *kind = ag_model_meta(ck, "kind");
        if (kind && !strcmp(kind, "fashion_mnist model"))
            die("%s is a model, not a checkpoint: --resume takes the checkpoint file (--checkpoint, by default "
                "fashion_mnist.ckpt.safetensors)",
                c.resume);
        if (!kind || strcmp(kind, "fashion_mnist checkpoint") != 0)
            die("%s: not a fashion_mnist checkpoint (no kind metadata)", c.resume);
        cfg saved = c;
        for (size_t i = 0; i < N_OPTS; i++) {
            const opt_def *o = &OPTS[i];
            if (!o->saved) continue;
            char key[80], mine[1100], theirs[1100];
            snprintf(key, sizeof key, "cfg.%s", o->name);
            const char *v = ag_model_meta(ck, key), *known;
            int model_setting = !strcmp(o->name, "arch") || !strcmp(o->name, "act") || !strcmp(o->name, "loss") ||
                                !strcmp(o->name, "init") || !strcmp(o->name, "optim") ||
                                !strcmp(o->name, "normalize"); /* the weights are fitted to the inputs' scaling */
            if (!v && !strcmp(o->name, "normalize")) v = "none"; /* checkpoints from before --normalize */
            if (!v) {
                if (model_setting) die("%s: the checkpoint lacks the %s metadata", c.resume, key);
                continue;
            }
            if (set_opt(&saved, o, v, c.resume) != 0) exit(1);
            if ((known = unknown_name(o->name, v)))
                die("%s: %s \"%s\" in the checkpoint is unknown (%s)", c.resume, key, shown(v, sv, sizeof sv), known);
            if (!given[i]) {
                memcpy((char *)&c + o->off, (char *)&saved + o->off, o->size);
                from_ck[i] = 1;
                continue;
            }
            opt_str(&c, o, mine, sizeof mine);
            opt_str(&saved, o, theirs, sizeof theirs);
            if (!strcmp(mine, theirs) || !strcmp(o->name, "epochs")) continue; /* --epochs: the total to reach */
            if (model_setting)
                usage_die("--%s %s conflicts with %s, saved with %s %s: a resumed run keeps the checkpoint's "
                          "network and optimizer (drop the flag, or train anew without --resume)",
                          o->name, mine, c.resume, key, shown(theirs, sv, sizeof sv));
            fprintf(stderr, "fashion_mnist: --%s %s replaces %s %s saved in %s\n", o->name, mine, key,
                    shown(theirs, sv, sizeof sv), c.resume);
        }
        /* the checkpoint goes on being written where it was read, unless --checkpoint says otherwise */
        if (!given[find_opt("checkpoint") - OPTS]) snprintf(c.checkpoint, sizeof c.checkpoint, "%s", c.resume);
    }
    if (c.batch < 1) bad_setting(&c, from_ck, "batch", "must be at least 1");
    if (c.epochs < 1) bad_setting(&c, from_ck, "epochs", "must be at least 1");
    if (!(c.lr > 0)) bad_setting(&c, from_ck, "lr", "must be positive");
    /* names from the command line (a checkpoint's were checked as they were read) */
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *known;
        if (given[i] && OPTS[i].type == T_STR && (known = unknown_name(OPTS[i].name, (char *)&c + OPTS[i].off)))
            usage_die("unknown --%s \"%s\" (%s)", OPTS[i].name, (char *)&c + OPTS[i].off, known);
    }
    /* the library takes 0 as "the default, 0.9": a 0 given here would silently mean 0.9 */
    if ((!strcmp(c.optim, "momentum") || !strcmp(c.optim, "nesterov")) && given[find_opt("momentum") - OPTS] &&
        !(c.momentum > 0 && c.momentum < 1))
        usage_die("--momentum %g: give a value in (0, 1) (for no momentum, --optim sgd)", c.momentum);
    if (c.target_acc > 1)
        usage_die("--target-acc %g: a test accuracy is at most 1 (give a value in (0, 1], 0 = off)", c.target_acc);

    /* the checkpoint's counters and history, and its arch against its tensors, before anything is
     * built or allocated from them */
    size_t start_epoch = 0, h_cap = 16;
    unsigned long long ck_steps = 0;
    double train_seconds = 0, samples_done = 0;
    hist *h = NULL;
    if (ck) {
        const char *e = ag_model_meta(ck, "epoch"), *st = ag_model_meta(ck, "optim_steps"),
                   *ts = ag_model_meta(ck, "train_seconds"), *sd = ag_model_meta(ck, "samples");
        uint64_t ev, position, steps;
        if (!e || !st) die("%s: checkpoint lacks epoch/optim_steps metadata", c.resume);
        if (ag_checkpoint_counters(ck, &ev, &position, &steps, err, sizeof err) != AG_OK) die("%s", err);
        if (ev > 1000000000ULL)
            die("%s: epoch \"%s\" in the checkpoint is not a number of epochs", c.resume, shown(e, sv, sizeof sv));
        if (position != 0) die("%s: the checkpoint was written within an epoch (position %llu)", c.resume,
                               (unsigned long long)position);
        ck_steps = steps;
        if (ts && meta_number(ts, &train_seconds) != 0)
            die("%s: train_seconds \"%s\" in the checkpoint is not a number of seconds", c.resume,
                shown(ts, sv, sizeof sv));
        if (sd && meta_number(sd, &samples_done) != 0)
            die("%s: samples \"%s\" in the checkpoint is not a number of samples", c.resume, shown(sd, sv, sizeof sv));
        start_epoch = (size_t)ev;
        h_cap += start_epoch;
        h = calloc(h_cap, sizeof *h);
        if (!h)
            die("%s: epoch %zu in the checkpoint: out of memory for the history of that many epochs", c.resume,
                start_epoch);
        char *hj = hist_join(ck);
        if (hj && hist_decode(hj, h, start_epoch) != 0)
            die("%s: history in the checkpoint is not the metrics of its %zu epochs", c.resume, start_epoch);
        free(hj);
        check_arch(ck, c.resume, "cfg.arch", c.arch);
    } else {
        h = calloc(h_cap, sizeof *h);
        if (!h) die("out of memory");
    }

    /* the outputs: each a file of its own, a regular one or none yet */
    {
        const char *flag[4] = {"model", "checkpoint", "metrics", "plot"};
        if (c.resume[0] && !given[find_opt("checkpoint") - OPTS]) flag[1] = "resume"; /* the checkpoint's path */
        const char *path[4] = {c.model, c.checkpoint, c.metrics, c.plot};
        for (int i = 0; i < 4; i++)
            if (path[i][0]) {
                output_target(flag[i], path[i], NULL, 0);
                output_dir_writable(flag[i], path[i]);
            }
        for (int i = 0; i < 4; i++)
            for (int j = i + 1; j < 4; j++)
                if (path[i][0] && path[j][0] && same_file(path[i], path[j]))
                    usage_die("--%s %s and --%s %s name the same file: give each output its own path", flag[i],
                              path[i], flag[j], path[j]);
        for (int i = 0; i < 4; i++)
            if (c.resume[0] && i != 1 && strcmp(flag[1], "resume") && path[i][0] && same_file(path[i], c.resume))
                usage_die("--%s %s is the checkpoint given to --resume: give the %s another path", flag[i], path[i],
                          flag[i]);
    }
    catch_signals();

    ag_dataset train, test;
    load_split(&train, c.data, "train", c.limit);
    load_split(&test, c.data, "t10k", c.test_limit);
    /* input standardisation with the training set's statistics; a resumed run keeps its checkpoint's, so
     * that it goes on bit for bit (and --data or --limit cannot shift them) */
    double in_mean = 0, in_std = 0;
    if (!strcmp(c.normalize, "standard")) {
        if (ck) read_input_stats(ck, c.resume, "checkpoint", &in_mean, &in_std);
        if (!(in_std > 0) && ag_dataset_pixel_stats(&train, &in_mean, &in_std) != AG_OK) die("pixel statistics: no data");
        if (!(in_std > 0)) die("--normalize standard: every training pixel has the same value (std 0)");
        if (ag_dataset_standardize(&train, in_mean, in_std) != AG_OK || ag_dataset_standardize(&test, in_mean, in_std) != AG_OK)
            die("--normalize standard: mean %g, std %g are unusable", in_mean, in_std);
    }
    char in_mean_s[32] = "", in_std_s[32] = ""; /* round-trip text for the files */
    snprintf(in_mean_s, sizeof in_mean_s, "%.17g", in_mean);
    snprintf(in_std_s, sizeof in_std_s, "%.17g", in_std);

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
    if (unknown_name("l2", c.l2)) die("unknown --l2 \"%s\" (cost, optimizer)", c.l2);
    /* lambda in the optimizer: coupled decay (g + lambda W, what the cost's term adds; adamw: decoupled),
     * on the AG_DECAY weights only, as the cost's term */
    const int l2_in_cost = !strcmp(c.l2, "cost");
    if (!l2_in_cost) oc.weight_decay = c.lambda;
    /* the schedule spans the steps done and the steps to come: on a resume with another --batch or
     * --limit the steps per epoch change, and steps * epochs could end before the checkpoint's step
     * count (lr 0 for the rest of the run) */
    uint64_t total_steps = (uint64_t)steps * (uint64_t)c.epochs;
    if (ck && start_epoch < (size_t)c.epochs)
        total_steps = ck_steps + (uint64_t)steps * (uint64_t)((size_t)c.epochs - start_epoch);
    if (!strcmp(c.schedule, "cosine")) oc.schedule = (ag_schedule){.kind = AG_SCHED_COSINE, .total_steps = total_steps};
    else if (!strcmp(c.schedule, "step")) /* x0.1 after a third and after two thirds of the steps */
        oc.schedule = (ag_schedule){.kind = AG_SCHED_STEP, .step_size = total_steps / 3 ? total_steps / 3 : 1, .gamma = 0.1};
    else if (strcmp(c.schedule, "constant")) die("unknown schedule \"%s\" (constant, cosine, step)", c.schedule);
    ag_optim *opt;
    if (ag_optim_new(&opt, n.ps, &oc, err, sizeof err) != AG_OK) die("%s", err);
    const ag_real lambda_cost = l2_in_cost ? (ag_real)c.lambda : 0; /* 0: ag_cost_*_l2 records no L2 term */

    size_t n_state = ag_optim_state_count(opt);
    ag_named_buf state[8];
    char state_names[8][64];
    for (size_t i = 0; i < n_state && i < 8; i++) {
        const char *nm;
        ag_optim_state(opt, i, &nm, &state[i].data, &state[i].n);
        snprintf(state_names[i], sizeof state_names[i], "optim.%s", nm);
        state[i].name = state_names[i];
    }

    if (ck) {
        /* parameters, optimizer buffers and step counter, all or nothing */
        if (ag_checkpoint_read(ck, &(ag_checkpoint){.params = n.ps, .optim = opt}, err, sizeof err) != AG_OK)
            die("%s", err);
        check_finite(c.resume, n.ps, state, n_state);
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
    /* what is used: a resumed run's settings are the checkpoint's (and the flags that replace them) */
    char head[1100], capped[96] = "";
    if (c.resume[0]) snprintf(head, sizeof head, "resumed from %s", c.resume);
    else snprintf(head, sizeof head, "preset %s", c.preset);
    if (c.threads > ag_get_threads())
        snprintf(capped, sizeof capped, "; --threads %ld is capped at %d", c.threads, ag_get_threads());
    printf("fashion_mnist: %s: %s %s, %s loss, %s lr %g %s, lambda %g (in the %s), batch %zu, %ld epochs, seed %llu, "
           "%d thread%s (%s kernels%s), " AG_REAL_NAME ", denormals %s\n",
           head, c.arch, c.act, c.loss, c.optim, c.lr, c.schedule,
           c.lambda, c.l2, bs, c.epochs, c.seed, ag_get_threads(), ag_get_threads() == 1 ? "" : "s", ag_kernel_name(),
           capped,
           flushed ? "flushed (FTZ/DAZ; --no-flush-denormal keeps them)" : "kept");
    printf("data: %zu training and %zu test images from %s; %zu parameters\n", train.n, test.n, c.data, numel);
    if (in_std > 0)
        printf("inputs: standardised, (pixel / 255 - %.4f) / %.4f (the training set's mean and std%s)\n", in_mean, in_std,
               c.resume[0] ? ", as saved in the checkpoint" : "");
    else
        printf("inputs: pixel / 255 (--normalize none)\n");

    /* buffers for one batch, reused by every step: the step allocates nothing */
    size_t ebs = bs < train.n ? bs : train.n; /* a batch larger than the data is the whole data */
    if (ebs < 1000) ebs = 1000;                /* evaluate() goes 1000 images at a time */
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
    int interrupted = 0; /* SIGINT/SIGTERM: stop after the current step, exit 128 + the signal */
    ag_optim_zero_grad(opt); /* from here on each successful step clears the gradients */
    for (size_t epoch = start_epoch; epoch < end_epoch; epoch++) {
        if (epoch >= h_cap) { /* the history grows with the epochs run, not with --epochs */
            size_t cap = h_cap * 2 > epoch + 1 ? h_cap * 2 : epoch + 1;
            hist *nh = realloc(h, cap * sizeof *h);
            if (!nh) die("out of memory");
            memset(nh + h_cap, 0, (cap - h_cap) * sizeof *nh);
            h = nh, h_cap = cap;
        }
        if (stop_signal) {
            if (tty) fputs("\r\x1b[K", stderr);
            fprintf(stderr, "fashion_mnist: interrupted (%s) before epoch %zu; ", signal_name(stop_signal), epoch + 1);
            last_checkpoint(&c, epochs_done, start_epoch);
            interrupted = stop_signal;
            break;
        }
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
                J = ag_cost_squared_error_l2(n.t, hh, ag_tensor_wrap(n.t, 2, (size_t[]){k, 10}, oh), lambda_cost,
                                             weights, n.mlp->n_layers);
            else
                J = ag_cost_cross_entropy_l2(n.t, hh, y, lambda_cost, weights, n.mlp->n_layers);
            if (!J) die("step %zu: %s", s, ag_tape_errmsg(n.t));
            /* backward and update in one sweep: each weight is updated from its gradient tile by
             * tile, as the GEMM produces it (bit-identical to ag_backward + ag_optim_step) */
            double lv = (double)J->value[0];
            ag_status st = isfinite(lv) ? ag_optim_backward_step(opt, n.t, J) : AG_ERR_NUMERIC;
            if (st == AG_ERR_NUMERIC) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr,
                        "fashion_mnist: numerical blow-up: the loss is %g at epoch %zu step %zu/%zu (learning rate %g"
                        "%s too high?); stopping.\n",
                        lv, epoch + 1, s + 1, steps, ag_optim_lr(opt), c.lambda > 0 ? " or lambda" : "");
                fputs("fashion_mnist: ", stderr);
                last_checkpoint(&c, epochs_done, start_epoch);
                blown = 1;
                break;
            }
            if (st != AG_OK) die("training step: %s", ag_optim_errmsg(opt));
            loss_sum += lv * (double)k;
            if (stop_signal) {
                if (tty) fputs("\r\x1b[K", stderr);
                fprintf(stderr, "fashion_mnist: interrupted (%s) at epoch %zu step %zu/%zu; ", signal_name(stop_signal),
                        epoch + 1, s + 1, steps);
                last_checkpoint(&c, epochs_done, start_epoch);
                interrupted = stop_signal;
                break;
            }
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
        if (blown || interrupted) break;
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
            fprintf(stderr, "fashion_mnist: numerical blow-up: non-finite weights after epoch %zu; stopping.\nfashion_mnist: ", epoch + 1);
            last_checkpoint(&c, epochs_done, start_epoch);
            blown = 1;
            break;
        }
        printf("epoch %zu/%ld  train_loss=%.4f  test_loss=%.4f  test_accuracy=%.4f  lr=%.4g  %.1fs  %.0f samples/s\n",
               epoch + 1, c.epochs, r->train_loss, r->test_loss, acc, lr_epoch, dt, r->sps);

        /* checkpoint: params + optimizer state + counters + settings, atomically */
        char *hs = hist_encode(h, epoch + 1), **hc;
        size_t n_hc = hist_chunks(hs, &hc);
        ag_kv *meta = malloc((N_OPTS + 16 + n_hc) * sizeof *meta);
        char (*hkeys)[32] = malloc(n_hc * sizeof *hkeys);
        if (!meta || !hkeys) die("out of memory");
        char vals[N_OPTS][1100], keys[N_OPTS][80], tss[32], sds[32];
        size_t nm = 0;
        meta[nm++] = (ag_kv){"kind", "fashion_mnist checkpoint"};
        meta[nm++] = (ag_kv){"arch", c.arch};
        meta[nm++] = (ag_kv){"activation", c.act};
        meta[nm++] = (ag_kv){"loss", c.loss};
        snprintf(tss, sizeof tss, "%.3f", train_seconds);
        snprintf(sds, sizeof sds, "%.0f", samples_done);
        meta[nm++] = (ag_kv){"train_seconds", tss};
        meta[nm++] = (ag_kv){"samples", sds};
        meta[nm++] = (ag_kv){"shuffle", "order of epoch e = ag_dataset_shuffle(seed, e)"};
        if (in_std > 0) {
            meta[nm++] = (ag_kv){"input_mean", in_mean_s};
            meta[nm++] = (ag_kv){"input_std", in_std_s};
        }
        for (size_t i = 0; i < n_hc; i++) {
            if (i) snprintf(hkeys[i], sizeof hkeys[i], "history.%zu", i);
            else snprintf(hkeys[i], sizeof hkeys[i], "history");
            meta[nm++] = (ag_kv){hkeys[i], hc[i]};
        }
        for (size_t i = 0; i < N_OPTS; i++) {
            if (!OPTS[i].saved) continue;
            snprintf(keys[i], sizeof keys[i], "cfg.%s", OPTS[i].name);
            opt_str(&c, &OPTS[i], vals[i], sizeof vals[i]);
            meta[nm++] = (ag_kv){keys[i], vals[i]};
        }
        /* the library writes "epoch" and "optim_steps" (and the optimizer's kind) itself; the data
         * order is not stored: it is ag_dataset_shuffle(seed, epoch) */
        ag_checkpoint ckw = {.params = n.ps, .optim = opt, .epoch = epoch + 1, .meta = meta, .n_meta = nm};
        if (c.checkpoint[0] && ag_checkpoint_save(c.checkpoint, &ckw, err, sizeof err) != AG_OK)
            die("checkpoint: %s", err);
        free(hs);
        free(hc);
        free(meta);
        free(hkeys);
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
            char real[1100];
            output_target("plot", c.plot, real, sizeof real); /* svg_write_curves removes its temporary file on failure */
            if (svg_write_curves(real, title, epoch + 1, a, a + epoch + 1, a + 2 * (epoch + 1)) != 0)
                die("%s: cannot write: %s", c.plot, strerror(errno));
            free(a);
        }
        if (c.target_acc > 0 && acc >= c.target_acc) { /* evaluated after each epoch, as the torch twin */
            printf("target test accuracy %g reached at epoch %zu: stopping\n", c.target_acc, epoch + 1);
            break;
        }
    }
    if (blown || interrupted) goto cleanup;
    if (start_epoch >= end_epoch) {
        double tl;
        acc = evaluate(&n, &test, x, y, oh, eidx, 1000, &tl, correct, total);
    }

    /* the model: parameters and what is needed to rebuild it (deterministic content) */
    char es[32], accs[32], tis[32];
    snprintf(es, sizeof es, "%zu", epochs_done);
    snprintf(accs, sizeof accs, "%.4f", acc);
    snprintf(tis, sizeof tis, "%zu", test.n); /* what test_accuracy was measured on (--test-limit) */
    ag_kv mm[] = {{"kind", "fashion_mnist model"}, {"arch", c.arch}, {"activation", c.act}, {"loss", c.loss},
                  {"classes", "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"},
                  {"epochs", es}, {"test_accuracy", accs}, {"test_images", tis}, {"optim", c.optim},
                  {"dtype", AG_REAL_NAME}, {"input_mean", in_mean_s}, {"input_std", in_std_s}};
    /* a model without standardisation leaves the two out: what --eval and files from before it expect */
    size_t n_mm = sizeof mm / sizeof mm[0] - (in_std > 0 ? 0 : 2);
    if (c.model[0] && ag_model_save(c.model, n.ps, NULL, 0, mm, n_mm, err, sizeof err) != AG_OK)
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
    return finish(interrupted ? 128 + interrupted : blown ? EXIT_NUMERIC : 0);
}

/*
 * cli.c - fashion_mnist's command line: the flags (OPTS), the two presets, --help, parsing, and the
 * checks of the settings before anything runs (a bad command line: status 2).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fm.h"

#define S(f) offsetof(cfg, f), sizeof(((cfg *)0)->f)
const opt_def OPTS[] = {
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
    {"dist-shards", T_LONG, S(dist_shards), 1,
     "cut each batch into this many micro-shards, each's gradient computed alone and summed exactly\n"
     "                  (fixed point): the same model for any number of --dist ranks; without --dist,\n"
     "                  the one-process reference (0 = off; --dist alone: 12)"},
    {"dist-timeout", T_DBL, S(dist_timeout), 0,
     "--dist: seconds to wait for the other ranks before stopping with an error (default 20)"},
};
_Static_assert(sizeof OPTS / sizeof OPTS[0] == N_OPTS, "N_OPTS in fm.h counts OPTS");

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

/* The defaults: the modern preset, all cores, the data set's Debian path, outputs in the current directory. */
void cfg_defaults(cfg *c) {
    memset(c, 0, sizeof *c);
    preset(c, "modern");
    c->threads = 0;
    snprintf(c->data, sizeof c->data, "%s", DEFAULT_DATA);
    snprintf(c->model, sizeof c->model, "fashion_mnist.safetensors");
    snprintf(c->checkpoint, sizeof c->checkpoint, "fashion_mnist.ckpt.safetensors");
    snprintf(c->metrics, sizeof c->metrics, "fashion_mnist_metrics.csv");
    snprintf(c->plot, sizeof c->plot, "fashion_mnist_metrics.svg");
}

static void usage(FILE *f) {
    fprintf(f, "usage: fashion_mnist [--flag value]...\n"
               "Train an MLP on Fashion-MNIST (Debian package dataset-fashion-mnist), or evaluate a saved one.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) fprintf(f, "  --%-13s %s\n", OPTS[i].name, OPTS[i].help);
    fprintf(f, "  --no-flush-denormal  keep denormals (by default FTZ/DAZ are set on x86: decaying momentum\n"
               "                  buffers otherwise fall into slow denormal arithmetic)\n"
               "  --dist          data-parallel training over MPI: mpirun -np N fashion_mnist --dist ...; --batch is\n"
               "                  the global batch, rank 0 prints and writes the files (a build with -DAG_MPI=ON)\n"
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

/* Parse v into the option. from: NULL for the command line (messages name --flag), else the
 * checkpoint the value was read from (messages name the file and its cfg.<flag> entry). */
int set_opt(cfg *c, const opt_def *o, const char *v, const char *from) {
    char *base = (char *)c + o->off, *end, sv[64], what[1200];
    if (from) snprintf(what, sizeof what, "%s: cfg.%s in the checkpoint", from, o->name);
    else snprintf(what, sizeof what, "--%s", o->name);
    errno = 0;
    switch (o->type) {
    case T_STR:
        if (strlen(v) >= o->size) return report("%s: value too long", what), -1;
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case T_DBL: {
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < 0)
            return report("%s: expected a non-negative number, got \"%s\"", what, shown(v, sv, sizeof sv)), -1;
        *(double *)(void *)base = d;
        return 0;
    }
    case T_LONG: {
        long l = strtol(v, &end, 10);
        if (!*v || *end || errno || l < 0 || l > 1000000000L)
            return report("%s: expected a non-negative integer, got \"%s\"", what, shown(v, sv, sizeof sv)), -1;
        *(long *)(void *)base = l;
        return 0;
    }
    default: {
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ')
            return report("%s: expected a non-negative integer, got \"%s\"", what, shown(v, sv, sizeof sv)), -1;
        *(unsigned long long *)(void *)base = u;
        return 0;
    }
    }
}

void opt_str(const cfg *c, const opt_def *o, char *buf, size_t size) {
    const char *base = (const char *)c + o->off;
    switch (o->type) {
    case T_STR: snprintf(buf, size, "%s", base); break;
    case T_DBL: snprintf(buf, size, "%.17g", *(const double *)(const void *)base); break;
    case T_LONG: snprintf(buf, size, "%ld", *(const long *)(const void *)base); break;
    default: snprintf(buf, size, "%llu", *(const unsigned long long *)(const void *)base); break;
    }
}

const opt_def *find_opt(const char *name) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(OPTS[i].name, name) == 0) return &OPTS[i];
    return NULL;
}

size_t opt_index(const char *name) { return (size_t)(find_opt(name) - OPTS); }

/* "--name" or "--name=..." for a flag the program knows: taken for a forgotten value before it
 * ("--epochs --model m.st"), not as the value. */
static int is_flag(const char *a) {
    if (strncmp(a, "--", 2) != 0) return 0;
    if (!strcmp(a, "--help") || !strcmp(a, "--no-flush-denormal") || !strcmp(a, "--dist")) return 1;
    char name[64];
    size_t nl = strcspn(a + 2, "=");
    if (nl >= sizeof name) return 0;
    memcpy(name, a + 2, nl);
    name[nl] = '\0';
    return find_opt(name) != NULL;
}

/* Apply argv (skipping --preset, handled first). given[i] marks options set on the command line. */
int parse_args(cfg *c, int argc, char **argv, int pass, unsigned char *given) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--no-flush-denormal") == 0) { /* the flags without a value */
            if (pass == 1) c->no_flush_denormal = 1;
            continue;
        }
        if (strcmp(a, "--dist") == 0) {
            if (pass == 1) c->dist = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            report("unexpected argument \"%s\" (see --help)", a);
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
            report("unknown flag --%s (see --help)", name);
            return -1;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc && !is_flag(argv[i + 1])) val = argv[++i];
        else if (i + 1 < argc) {
            report("--%s needs a value (the next argument is the flag %s)", name, argv[i + 1]);
            return -1;
        } else {
            report("--%s needs a value", name);
            return -1;
        }
        int is_preset = strcmp(name, "preset") == 0;
        if (pass == 0 && is_preset) {
            if (strcmp(val, "seed") && strcmp(val, "modern")) {
                report("--preset must be seed or modern, not \"%s\"", val);
                return -1;
            }
            preset(c, val);
            given[o - OPTS] = 1;
        } else if (pass == 1 && !is_preset) {
            if (set_opt(c, o, val, NULL) != 0) return -1;
            given[o - OPTS] = 1;
            if (strcmp(name, "weight-decay") == 0) given[opt_index("lambda")] = 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the settings' checks */

/* The names the program knows for a metadata entry: NULL when value is one of them, else the list
 * for the message. */
const char *unknown_name(const char *key, const char *value) {
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

/* A setting out of range: named as the flag, or as the checkpoint's entry when it came from there. */
static void bad_setting(const cfg *c, const unsigned char *from_ck, const char *name, const char *rule) {
    const opt_def *o = find_opt(name);
    if (from_ck[o - OPTS]) {
        char v[64];
        opt_str(c, o, v, sizeof v);
        fail(EXIT_RUN, "%s: cfg.%s %s in the checkpoint %s (no --%s was given; the checkpoint holds it)", c->resume,
             name, v, rule, name);
    }
    fail(EXIT_USAGE, "--%s %s", name, rule);
}


/* --eval and --resume before anything runs. An empty one (an unset shell variable, say) must not start
 * a fresh training run; --eval takes only the flags that evaluation uses. */
void check_mode(const cfg *c, const unsigned char *given) {
    if (given[opt_index("eval")] && !c->eval[0]) fail(EXIT_USAGE, "--eval needs the model file to evaluate");
    if (given[opt_index("resume")] && !c->resume[0]) fail(EXIT_USAGE, "--resume needs the checkpoint file to continue");
    if (!c->eval[0]) return;
    static const char *const eval_flags[] = {"eval", "data", "test-limit", "threads"};
    for (size_t i = 0; i < N_OPTS; i++) {
        int used = 0;
        for (size_t j = 0; j < sizeof eval_flags / sizeof *eval_flags; j++)
            used |= !strcmp(OPTS[i].name, eval_flags[j]);
        if (given[i] && !used)
            fail(EXIT_USAGE,
                 "--%s has no effect with --eval, which only evaluates the saved model (--data, --test-limit "
                 "and --threads apply); drop it",
                 OPTS[i].name);
    }
}

/* The settings in force (flags, preset, and a resumed checkpoint's), checked before anything is loaded. */
void check_settings(const cfg *c, const unsigned char *given, const unsigned char *from_ck) {
    if (c->batch < 1) bad_setting(c, from_ck, "batch", "must be at least 1");
    if (c->epochs < 1) bad_setting(c, from_ck, "epochs", "must be at least 1");
    if (!(c->lr > 0)) bad_setting(c, from_ck, "lr", "must be positive");
    /* names from the command line (a checkpoint's were checked as they were read) */
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *known;
        if (given[i] && OPTS[i].type == T_STR && (known = unknown_name(OPTS[i].name, (const char *)c + OPTS[i].off)))
            fail(EXIT_USAGE, "unknown --%s \"%s\" (%s)", OPTS[i].name, (const char *)c + OPTS[i].off, known);
    }
    /* the library takes 0 as "the default, 0.9": a 0 given here would silently mean 0.9 */
    if ((!strcmp(c->optim, "momentum") || !strcmp(c->optim, "nesterov")) && given[opt_index("momentum")] &&
        !(c->momentum > 0 && c->momentum < 1))
        fail(EXIT_USAGE, "--momentum %g: give a value in (0, 1) (for no momentum, --optim sgd)", c->momentum);
    if (c->dist && c->eval[0]) fail(EXIT_USAGE, "--dist trains; --eval evaluates in one process (drop --dist)");
    if (c->dist_shards > 4096) bad_setting(c, from_ck, "dist-shards", "must be at most 4096");
    if (given[opt_index("dist-timeout")] && !(c->dist_timeout > 0))
        fail(EXIT_USAGE, "--dist-timeout must be positive");
    if (c->target_acc > 1)
        fail(EXIT_USAGE, "--target-acc %g: a test accuracy is at most 1 (give a value in (0, 1], 0 = off)",
             c->target_acc);
}

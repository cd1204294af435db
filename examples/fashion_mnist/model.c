/*
 * model.c - the network (built from --arch/--act/--loss/--init), the data set's IDX files, and the
 * checks of a model or checkpoint file before anything is built from it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fm.h"

ag_status parse_init(const char *s, ag_init *out) {
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

void load_split(ag_dataset *ds, const char *dir, const char *prefix, long limit) {
    char ip[1200], lp[1200], name[64], err[AG_IO_ERRMSG_SIZE];
    struct stat st;
    int rc = stat(dir, &st);
    if (rc != 0 || !S_ISDIR(st.st_mode)) { /* say so, rather than name a file in it */
        const char *why = !dir[0]            ? "empty"
                          : rc != 0          ? (errno == ENOENT ? "no such directory" : strerror(errno))
                                             : "not a directory";
        report("--data \"%s\": %s", dir, why);
        if (strcmp(dir, DEFAULT_DATA) == 0)
            report("the data set is not installed; install it with:\n    sudo apt-get install dataset-fashion-mnist");
        exit(EXIT_RUN);
    }
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    int found = data_file(ip, sizeof ip, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    found &= data_file(lp, sizeof lp, dir, name);
    ag_idx_options o = {.classes = 10, .rows = 28, .cols = 28, .limit = (size_t)limit};
    if (ag_dataset_load(ds, ip, lp, &o, err, sizeof err) != AG_OK) {
        if (stop_signal) /* a signal can end a read from a slow or special file */
            fail(128 + stop_signal, "interrupted (%s) while loading the data", signal_name(stop_signal));
        report("%s", err);
        if (!found && strcmp(dir, DEFAULT_DATA) == 0)
            report("the data set is not installed; install it with:\n"
                   "    sudo apt-get install dataset-fashion-mnist\n"
                   "or point --data at a directory holding the four IDX files.");
        exit(EXIT_RUN);
    }
}

/* ---------------------------------------------------------------- the model */

void net_build(net *n, const char *arch, const char *act, const char *loss, const char *init,
                      uint64_t seed) {
    char err[512];
    ag_act hidden;
    ag_init in;
    if (ag_act_parse(act, &hidden) != AG_OK) fail(EXIT_RUN, "unknown activation \"%s\" (relu, sigmoid, tanh)", act);
    if (parse_init(init, &in) != AG_OK)
        fail(EXIT_RUN, "unknown initialiser \"%s\" (he, glorot, glorot-uniform, small)", init);
    if (strcmp(loss, "mse") && strcmp(loss, "xent")) fail(EXIT_RUN, "unknown loss \"%s\" (mse, xent)", loss);
    n->mse = strcmp(loss, "mse") == 0;
    if (ag_params_new(&n->ps) != AG_OK || ag_tape_new(&n->t, NULL) != AG_OK) fail(EXIT_RUN, "out of memory");
    ag_mlp_config mc = {.spec = arch, .hidden = hidden, .output = n->mse ? AG_ACT_SIGMOID : AG_ACT_IDENTITY,
                        .init = in, .seed = seed};
    if (ag_mlp_new(&n->mlp, n->ps, &mc, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    n->in = n->mlp->sizes[0];
    n->out = n->mlp->sizes[n->mlp->n_layers];
    if (n->in != 784) fail(EXIT_RUN, "--arch %s: the input layer must have 784 units (28x28 images)", arch);
    if (n->out != 10) fail(EXIT_RUN, "--arch %s: the output layer must have 10 units (classes)", arch);
}

void net_free(net *n) {
    ag_mlp_free(n->mlp);
    ag_params_free(n->ps);
    ag_tape_free(n->t);
}

/* ---------------------------------------------------------------- model and checkpoint files */

/* The arch of a file, checked against the file's own tensors before anything is built from it:
 * fc<i>.W must be sizes[i] x sizes[i-1] and fc<i>.b sizes[i]. An edited or damaged "arch" can thus
 * neither make the program allocate a model the file does not hold nor load into another one. */
void check_arch(const ag_model_file *mf, const char *file, const char *key, const char *arch) {
    size_t sizes[AG_MLP_MAX_LAYERS], n;
    char err[512], sv[64];
    if (ag_mlp_parse_spec(arch, sizes, AG_MLP_MAX_LAYERS, &n, err, sizeof err) != AG_OK)
        fail(EXIT_RUN, "%s: %s \"%s\" in the file is not a list of layer sizes (%s)", file, key,
             shown(arch, sv, sizeof sv), err);
    if (sizes[0] != 784 || sizes[n - 1] != 10)
        fail(EXIT_RUN, "%s: %s %s in the file: the network must have 784 inputs and 10 outputs", file, key, arch);
    for (size_t i = 1; i < n; i++) {
        for (int b = 0; b < 2; b++) {
            char nm[48];
            snprintf(nm, sizeof nm, "fc%zu.%s", i, b ? "b" : "W");
            const ag_model_tensor *t = ag_model_find(mf, nm);
            if (!t)
                fail(EXIT_RUN, "%s: %s %s in the file needs a tensor %s, which the file lacks", file, key, arch, nm);
            int ok = b ? t->ndim == 1 && t->shape[0] == sizes[i]
                       : t->ndim == 2 && t->shape[0] == sizes[i] && t->shape[1] == sizes[i - 1];
            if (!ok) {
                char shape[128] = "";
                for (int d = 0; d < t->ndim && d < 8; d++)
                    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%zu", d ? "x" : "", t->shape[d]);
                if (b)
                    fail(EXIT_RUN, "%s: %s %s in the file does not match its tensors: %s is [%s], the arch needs [%zu]",
                         file, key, arch, nm, shape, sizes[i]);
                fail(EXIT_RUN, "%s: %s %s in the file does not match its tensors: %s is [%s], the arch needs [%zux%zu]",
                     file, key, arch, nm, shape, sizes[i], sizes[i - 1]);
            }
        }
    }
    char nm[48];
    snprintf(nm, sizeof nm, "fc%zu.W", n);
    if (ag_model_find(mf, nm))
        fail(EXIT_RUN, "%s: %s %s in the file has %zu layers but the file holds %s", file, key, arch, n - 1, nm);
}

/* Every parameter (and extra buffer) finite: a model holding NaN or Inf would evaluate to NaN. */
void check_finite(const char *file, const ag_params *ps, const ag_named_buf *extra, size_t n_extra) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        const ag_tensor *p = ag_params_at(ps, i);
        for (size_t j = 0; j < p->size; j++)
            if (!isfinite((double)p->value[j]))
                fail(EXIT_RUN, "%s: %s[%zu] is %g: the file holds non-finite weights and cannot be used", file,
                     p->name ? p->name : "?", j, (double)p->value[j]);
    }
    for (size_t i = 0; i < n_extra; i++)
        for (size_t j = 0; j < extra[i].n; j++)
            if (!isfinite((double)extra[i].data[j]))
                fail(EXIT_RUN, "%s: %s[%zu] is %g: the file holds a non-finite optimizer state and cannot be used",
                     file, extra[i].name, j, (double)extra[i].data[j]);
}

/* The input standardisation saved in a model or checkpoint: both input_mean and input_std, or neither
 * (pixels / 255: *std stays 0). */
void read_input_stats(const ag_model_file *mf, const char *file, const char *what, double *mean, double *std) {
    const char *m = ag_model_meta(mf, "input_mean"), *s = ag_model_meta(mf, "input_std");
    char sv[64];
    if (!m && !s) return;
    if (!m || !s)
        fail(EXIT_RUN, "%s: the %s has %s but not %s", file, what, m ? "input_mean" : "input_std",
             m ? "input_std" : "input_mean");
    if (meta_number(m, mean) != 0 || *mean > 1)
        fail(EXIT_RUN, "%s: input_mean \"%s\" in the %s is not a mean pixel value in [0, 1]", file,
             shown(m, sv, sizeof sv), what);
    if (meta_number(s, std) != 0 || !(*std > 0) || *std > 1)
        fail(EXIT_RUN, "%s: input_std \"%s\" in the %s is not a standard deviation in (0, 1]", file,
             shown(s, sv, sizeof sv), what);
}


/*
 * resume.c - checkpoints: what is written after each epoch (through ag_checkpoint_save), and --resume,
 * which reads the settings, counters, history and tensors back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm.h"

/* history rows as text ("loss,loss,acc,sec,sps,lr;...") for the checkpoint; every field round-trips
 * (%.17g), so a resumed run writes the earlier epochs' CSV rows exactly as the first run did */
static char *hist_encode(const hist *h, size_t n) {
    size_t cap = n * 160 + 1;
    char *s = malloc(cap);
    if (!s) fail(EXIT_RUN, "out of memory");
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
    if (!v) fail(EXIT_RUN, "out of memory");
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
    if (!s) fail(EXIT_RUN, "out of memory");
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

/* Where training can go on from, after a stop (blow-up or signal); finishes the line begun. */
void last_checkpoint(const run *r) {
    const cfg *c = &r->c;
    size_t epochs_done = r->epochs_done, start_epoch = r->start_epoch;
    if (r->rank > 0) /* --dist: its outputs were cleared; rank 0 names the checkpoint */
        fprintf(stderr, "rank %d; rank 0 writes the checkpoints\n", r->rank);
    else if (epochs_done > start_epoch && c->checkpoint[0])
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


/* ---------------------------------------------------------------- --resume */

/* A checkpoint's cfg.<flag> entry into c: read, checked (parsed whole and in range, names from the
 * known sets), and used unless the flag was given. A flag that would change the network or the
 * optimizer is refused; one that changes the rest of the run (learning rate, batch, ...) is
 * applied and reported. */
static void resume_setting(run *r, size_t i, cfg *saved) {
    const opt_def *o = &OPTS[i];
    const char *resume = r->c.resume;
    char key[80], mine[1100], theirs[1100], sv[64];
    snprintf(key, sizeof key, "cfg.%s", o->name);
    const char *v = ag_model_meta(r->ck, key), *known;
    int model_setting = !strcmp(o->name, "arch") || !strcmp(o->name, "act") || !strcmp(o->name, "loss") ||
                        !strcmp(o->name, "init") || !strcmp(o->name, "optim") ||
                        !strcmp(o->name, "normalize"); /* the weights are fitted to the inputs' scaling */
    if (!v && !strcmp(o->name, "normalize")) v = "none"; /* checkpoints from before --normalize */
    if (!v) {
        if (model_setting) fail(EXIT_RUN, "%s: the checkpoint lacks the %s metadata", resume, key);
        return;
    }
    if (set_opt(saved, o, v, resume) != 0) exit(EXIT_RUN);
    if ((known = unknown_name(o->name, v)))
        fail(EXIT_RUN, "%s: %s \"%s\" in the checkpoint is unknown (%s)", resume, key, shown(v, sv, sizeof sv), known);
    if (!r->given[i]) {
        memcpy((char *)&r->c + o->off, (char *)saved + o->off, o->size);
        r->from_ck[i] = 1;
        return;
    }
    opt_str(&r->c, o, mine, sizeof mine);
    opt_str(saved, o, theirs, sizeof theirs);
    if (!strcmp(mine, theirs) || !strcmp(o->name, "epochs")) return; /* --epochs: the total to reach */
    if (model_setting)
        fail(EXIT_USAGE,
             "--%s %s conflicts with %s, saved with %s %s: a resumed run keeps the checkpoint's "
             "network and optimizer (drop the flag, or train anew without --resume)",
             o->name, mine, resume, key, shown(theirs, sv, sizeof sv));
    report("--%s %s replaces %s %s saved in %s", o->name, mine, key, shown(theirs, sv, sizeof sv), resume);
}

/* --resume: the checkpoint opened (r->ck), its settings into r->c, then the flags given explicitly. */
void resume_settings(run *r) {
    char err[AG_IO_ERRMSG_SIZE];
    cfg *c = &r->c;
    if (r->given[opt_index("preset")])
        fail(EXIT_USAGE,
             "--preset cannot be combined with --resume: a resumed run keeps the settings saved in %s "
             "(flags such as --epochs or --lr change what may change)",
             c->resume);
    if (ag_model_open(c->resume, &r->ck, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    const char *kind = ag_model_meta(r->ck, "kind");
    if (kind && !strcmp(kind, "fashion_mnist model"))
        fail(EXIT_RUN,
             "%s is a model, not a checkpoint: --resume takes the checkpoint file (--checkpoint, by default "
             "fashion_mnist.ckpt.safetensors)",
             c->resume);
    if (!kind || strcmp(kind, "fashion_mnist checkpoint") != 0)
        fail(EXIT_RUN, "%s: not a fashion_mnist checkpoint (no kind metadata)", c->resume);
    cfg saved = *c;
    for (size_t i = 0; i < N_OPTS; i++)
        if (OPTS[i].saved) resume_setting(r, i, &saved);
    /* the checkpoint goes on being written where it was read, unless --checkpoint says otherwise */
    if (!r->given[opt_index("checkpoint")]) snprintf(c->checkpoint, sizeof c->checkpoint, "%s", c->resume);
}

/* The checkpoint's counters and history, and its arch against its tensors, before anything is built
 * or allocated from them; without a checkpoint, an empty history. */
void resume_counters(run *r) {
    char err[AG_IO_ERRMSG_SIZE], sv[64];
    const char *resume = r->c.resume;
    r->h_cap = 16;
    if (!r->ck) {
        r->h = calloc(r->h_cap, sizeof *r->h);
        if (!r->h) fail(EXIT_RUN, "out of memory");
        return;
    }
    const ag_model_file *ck = r->ck;
    const char *e = ag_model_meta(ck, "epoch"), *st = ag_model_meta(ck, "optim_steps"),
               *ts = ag_model_meta(ck, "train_seconds"), *sd = ag_model_meta(ck, "samples");
    uint64_t ev, position, steps;
    if (!e || !st) fail(EXIT_RUN, "%s: checkpoint lacks epoch/optim_steps metadata", resume);
    if (ag_checkpoint_counters(ck, &ev, &position, &steps, err, sizeof err) != AG_OK) fail(EXIT_RUN, "%s", err);
    if (ev > 1000000000ULL)
        fail(EXIT_RUN, "%s: epoch \"%s\" in the checkpoint is not a number of epochs", resume, shown(e, sv, sizeof sv));
    if (position != 0)
        fail(EXIT_RUN, "%s: the checkpoint was written within an epoch (position %llu)", resume,
             (unsigned long long)position);
    r->ck_steps = steps;
    if (ts && meta_number(ts, &r->train_seconds) != 0)
        fail(EXIT_RUN, "%s: train_seconds \"%s\" in the checkpoint is not a number of seconds", resume,
             shown(ts, sv, sizeof sv));
    if (sd && meta_number(sd, &r->samples_done) != 0)
        fail(EXIT_RUN, "%s: samples \"%s\" in the checkpoint is not a number of samples", resume,
             shown(sd, sv, sizeof sv));
    r->start_epoch = (size_t)ev;
    r->h_cap += r->start_epoch;
    r->h = calloc(r->h_cap, sizeof *r->h);
    if (!r->h)
        fail(EXIT_RUN, "%s: epoch %zu in the checkpoint: out of memory for the history of that many epochs", resume,
             r->start_epoch);
    char *hj = hist_join(ck);
    if (hj && hist_decode(hj, r->h, r->start_epoch) != 0)
        fail(EXIT_RUN, "%s: history in the checkpoint is not the metrics of its %zu epochs", resume, r->start_epoch);
    free(hj);
    check_arch(ck, resume, "cfg.arch", r->c.arch);
}

/* Parameters, optimizer buffers and step counter from the checkpoint, all or nothing; then it is closed. */
void resume_weights(run *r) {
    char err[AG_IO_ERRMSG_SIZE];
    if (ag_checkpoint_read(r->ck, &(ag_checkpoint){.params = r->n.ps, .optim = r->opt}, err, sizeof err) != AG_OK)
        fail(EXIT_RUN, "%s", err);
    check_finite(r->c.resume, r->n.ps, r->state, r->n_state);
    ag_model_close(r->ck);
    r->ck = NULL;
    if (r->start_epoch >= (size_t)r->c.epochs)
        report("%s already holds %zu epochs (--epochs %ld): nothing to train", r->c.resume, r->start_epoch,
               r->c.epochs);
    else
        printf("resuming from %s at epoch %zu/%ld\n", r->c.resume, r->start_epoch + 1, r->c.epochs);
}

/* ---------------------------------------------------------------- the checkpoint written */

/* After epoch (0-based): params + optimizer state + counters + settings, atomically. */
void save_checkpoint(run *r, size_t epoch) {
    const cfg *c = &r->c;
    char err[AG_IO_ERRMSG_SIZE];
    char *hs = hist_encode(r->h, epoch + 1), **hc;
    size_t n_hc = hist_chunks(hs, &hc);
    ag_kv *meta = malloc((N_OPTS + 16 + n_hc) * sizeof *meta);
    char (*hkeys)[32] = malloc(n_hc * sizeof *hkeys);
    if (!meta || !hkeys) fail(EXIT_RUN, "out of memory");
    char vals[N_OPTS][1100], keys[N_OPTS][80], tss[32], sds[32];
    size_t nm = 0;
    meta[nm++] = (ag_kv){"kind", "fashion_mnist checkpoint"};
    meta[nm++] = (ag_kv){"arch", c->arch};
    meta[nm++] = (ag_kv){"activation", c->act};
    meta[nm++] = (ag_kv){"loss", c->loss};
    snprintf(tss, sizeof tss, "%.3f", r->train_seconds);
    snprintf(sds, sizeof sds, "%.0f", r->samples_done);
    meta[nm++] = (ag_kv){"train_seconds", tss};
    meta[nm++] = (ag_kv){"samples", sds};
    meta[nm++] = (ag_kv){"shuffle", "order of epoch e = ag_dataset_shuffle(seed, e)"};
    if (r->in_std > 0) {
        meta[nm++] = (ag_kv){"input_mean", r->in_mean_s};
        meta[nm++] = (ag_kv){"input_std", r->in_std_s};
    }
    for (size_t i = 0; i < n_hc; i++) {
        if (i) snprintf(hkeys[i], sizeof hkeys[i], "history.%zu", i);
        else snprintf(hkeys[i], sizeof hkeys[i], "history");
        meta[nm++] = (ag_kv){hkeys[i], hc[i]};
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        if (!OPTS[i].saved) continue;
        snprintf(keys[i], sizeof keys[i], "cfg.%s", OPTS[i].name);
        opt_str(c, &OPTS[i], vals[i], sizeof vals[i]);
        meta[nm++] = (ag_kv){keys[i], vals[i]};
    }
    /* the library writes "epoch" and "optim_steps" (and the optimizer's kind) itself; the data
     * order is not stored: it is ag_dataset_shuffle(seed, epoch) */
    ag_checkpoint ckw = {.params = r->n.ps, .optim = r->opt, .epoch = epoch + 1, .meta = meta, .n_meta = nm};
    if (c->checkpoint[0] && ag_checkpoint_save(c->checkpoint, &ckw, err, sizeof err) != AG_OK)
        fail(EXIT_RUN, "checkpoint: %s", err);
    free(hs);
    free(hc);
    free(meta);
    free(hkeys);
}

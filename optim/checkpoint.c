/*
 * checkpoint.c - a run's whole state in one model file (see checkpoint.h): the store, the
 * optimizer's buffers and step counter, an rng, the data order and the caller's counters.
 * The file itself (layout, atomic write, CRCs, all-or-nothing reading) is io/safetensors.c's.
 */
#include <tapegrad/checkpoint.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/ag_ext.h>
#include <tapegrad/ag_io.h>

#define MAX_STATE 8         /* optimizer buffers (ag_optim_state_count is at most 2) */
#define STATE_NAME_SIZE 64  /* "optim." and a state's static name */
#define ORDER_NAME "data.order"

static const char *const KIND_NAMES[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
/* the library's own keys: a caller's metadata may not use them */
static const char *const OWN_KEYS[] = {"optim", "optim_steps", "epoch", "position", "rng"};

static const char *kind_name(const ag_optim *opt) {
    unsigned k = (unsigned)ag_optim_get_config(opt)->kind;
    return k < sizeof KIND_NAMES / sizeof *KIND_NAMES ? KIND_NAMES[k] : "?";
}

/* The optimizer's buffers as named buffers "optim.<state>"; names in names[MAX_STATE]. */
static size_t state_bufs(ag_optim *opt, ag_named_buf *bufs, char (*names)[STATE_NAME_SIZE]) {
    size_t n = opt ? ag_optim_state_count(opt) : 0;
    if (n > MAX_STATE) n = MAX_STATE;
    for (size_t i = 0; i < n; i++) {
        const char *nm = "";
        ag_optim_state(opt, i, &nm, &bufs[i].data, &bufs[i].n);
        snprintf(names[i], STATE_NAME_SIZE, "optim.%s", nm);
        bufs[i].name = names[i];
    }
    return n;
}

/* 1 when order[0..n) holds each of 0..n-1 once; -1 when the check could not allocate. */
static int is_permutation(const uint32_t *order, size_t n) {
    if (n == 0) return 1;
    if (n - 1 > UINT32_MAX) return 0;
    unsigned char *seen = ag_ext_calloc(n, 1);
    if (!seen) return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        ok = order[i] < n && !seen[order[i]];
        if (ok) seen[order[i]] = 1;
    }
    ag_ext_free(seen);
    return ok;
}

/* ---------------------------------------------------------------- save */

ag_status ag_checkpoint_save(const char *path, const ag_checkpoint *ck, char *err, size_t errsize) {
    const char *W = "checkpoint";
    if (err && errsize) err[0] = '\0';
    if (!ck || !ck->params || (ck->n_meta && !ck->meta) || (ck->order_n && !ck->order))
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, W, path ? path : "", "NULL argument");
    for (size_t i = 0; i < ck->n_meta; i++)
        for (size_t k = 0; k < sizeof OWN_KEYS / sizeof *OWN_KEYS; k++)
            if (ck->meta[i].key && strcmp(ck->meta[i].key, OWN_KEYS[k]) == 0)
                return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, W, path ? path : "",
                              "metadata entry %zu: the key %s is the checkpoint's own", i, OWN_KEYS[k]);
    int perm = ck->order ? is_permutation(ck->order, ck->order_n) : 1;
    if (perm < 0) return ag_ext_buf_fail(err, errsize, AG_ERR_NOMEM, W, path ? path : "", "out of memory");
    if (!perm)
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, W, path ? path : "", "the data order is not a permutation of 0..%zu",
                      ck->order_n ? ck->order_n - 1 : 0);
    if (ck->n_meta > AG_MODEL_MAX_META) /* ag_model_save refuses the count; no wrap below */
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, W, path ? path : "", "%zu metadata entries", ck->n_meta);

    ag_named_buf state[MAX_STATE];
    char names[MAX_STATE][STATE_NAME_SIZE];
    size_t n_state = state_bufs(ck->optim, state, names);
    size_t n_own = sizeof OWN_KEYS / sizeof *OWN_KEYS;
    ag_kv *meta = ag_ext_calloc(ck->n_meta + n_own, sizeof *meta);
    if (!meta) return ag_ext_buf_fail(err, errsize, AG_ERR_NOMEM, W, path ? path : "", "out of memory");
    if (ck->n_meta) memcpy(meta, ck->meta, ck->n_meta * sizeof *meta);
    size_t nm = ck->n_meta;
    char steps[24], epoch[24], pos[24], rng[80];
    snprintf(epoch, sizeof epoch, "%" PRIu64, ck->epoch);
    snprintf(pos, sizeof pos, "%" PRIu64, ck->position);
    meta[nm++] = (ag_kv){"epoch", epoch};
    meta[nm++] = (ag_kv){"position", pos};
    if (ck->optim) {
        snprintf(steps, sizeof steps, "%" PRIu64, ag_optim_steps(ck->optim));
        meta[nm++] = (ag_kv){"optim", kind_name(ck->optim)};
        meta[nm++] = (ag_kv){"optim_steps", steps};
    }
    if (ck->rng) {
        snprintf(rng, sizeof rng, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, ck->rng->s[0],
                 ck->rng->s[1], ck->rng->s[2], ck->rng->s[3]);
        meta[nm++] = (ag_kv){"rng", rng};
    }
    ag_u32_buf order = {ORDER_NAME, ck->order, ck->order_n};
    ag_status st = ag_model_save_ex(path, ck->params, state, n_state, &order, ck->order ? 1 : 0, meta, nm, err,
                                      errsize);
    ag_ext_free(meta);
    return st;
}

/* ---------------------------------------------------------------- load */

/* A decimal counter of the file: *out untouched and 0 returned when absent. */
static ag_status read_counter(const ag_model_file *m, const char *key, uint64_t *out, int *present, char *err,
                              size_t errsize) {
    const char *v = ag_model_meta(m, key);
    if (present) *present = v != NULL;
    if (!v) return AG_OK;
    uint64_t x = 0;
    int ok = *v != '\0' && strlen(v) <= 20;
    for (const char *p = v; ok && *p; p++) {
        unsigned d = (unsigned)(*p - '0');
        ok = *p >= '0' && *p <= '9' && x <= (UINT64_MAX - d) / 10;
        x = x * 10 + d;
    }
    if (!ok)
        return ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", ag_model_name(m),
                      "%s \"%.32s\" in the checkpoint is not a number", key, v);
    *out = x;
    return AG_OK;
}

ag_status ag_checkpoint_counters(const ag_model_file *m, uint64_t *epoch, uint64_t *position, uint64_t *optim_steps,
                                 char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!m || !epoch || !position || !optim_steps)
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, "load", m ? ag_model_name(m) : "", "NULL argument");
    uint64_t e = 0, p = 0, s = 0;
    ag_status st = read_counter(m, "epoch", &e, NULL, err, errsize);
    if (st == AG_OK) st = read_counter(m, "position", &p, NULL, err, errsize);
    if (st == AG_OK) st = read_counter(m, "optim_steps", &s, NULL, err, errsize);
    if (st != AG_OK) return st;
    *epoch = e, *position = p, *optim_steps = s;
    return AG_OK;
}

/* "rng" as the four state words. */
static ag_status read_rng(const ag_model_file *m, ag_rng *out, char *err, size_t errsize) {
    const char *v = ag_model_meta(m, "rng");
    if (!v) return ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", ag_model_name(m), "the checkpoint holds no rng state");
    int ok = strlen(v) == 64;
    for (int w = 0; w < 4 && ok; w++) {
        uint64_t x = 0;
        for (int i = 0; i < 16 && ok; i++) {
            char c = v[w * 16 + i];
            int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            ok = h >= 0;
            x = x << 4 | (uint64_t)(h & 15);
        }
        out->s[w] = x;
    }
    if (!ok)
        return ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", ag_model_name(m),
                      "rng \"%.16s...\" in the checkpoint is not 64 hex digits", v);
    return AG_OK;
}

/* "data.order": U32, order_n entries, a permutation; decoded into out (order_n entries). */
static ag_status read_order(const ag_model_file *m, uint32_t *out, size_t n, char *err, size_t errsize) {
    const char *name = ag_model_name(m);
    const ag_model_tensor *t = ag_model_find(m, ORDER_NAME);
    if (!t) return ag_ext_buf_fail(err, errsize, AG_ERR_SHAPE, "load", name, "the checkpoint holds no data order (" ORDER_NAME ")");
    if (strcmp(t->dtype, "U32") != 0 || t->ndim != 1)
        return ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", name, ORDER_NAME " is not a 1-D U32 tensor");
    if (t->shape[0] != n)
        return ag_ext_buf_fail(err, errsize, AG_ERR_SHAPE, "load", name,
                      "the data order has %zu entries in the file but %zu here", t->shape[0], n);
    const unsigned char *d = ag_model_data(m) + t->begin;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 | (uint32_t)d[4 * i + 2] << 16 |
                 (uint32_t)d[4 * i + 3] << 24;
    int perm = is_permutation(out, n);
    if (perm < 0) return ag_ext_buf_fail(err, errsize, AG_ERR_NOMEM, "load", name, "out of memory");
    if (!perm) return ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", name, "the data order is not a permutation");
    return AG_OK;
}

/* The optimizer's kind and step counter, as the file has them (kind: files before it are not checked). */
static ag_status check_optim(const ag_model_file *m, const ag_optim *opt, uint64_t *steps, char *err,
                             size_t errsize) {
    const char *kind = ag_model_meta(m, "optim");
    if (kind && strcmp(kind, kind_name(opt)) != 0)
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, "load", ag_model_name(m),
                      "the checkpoint's optimizer is %.16s but this one is %s", kind, kind_name(opt));
    int present;
    ag_status st = read_counter(m, "optim_steps", steps, &present, err, errsize);
    if (st == AG_OK && !present)
        st = ag_ext_buf_fail(err, errsize, AG_ERR_FORMAT, "load", ag_model_name(m), "the checkpoint lacks optim_steps");
    return st;
}

ag_status ag_checkpoint_read(const ag_model_file *m, ag_checkpoint *ck, char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!m || !ck || !ck->params || (ck->order_n && !ck->order))
        return ag_ext_buf_fail(err, errsize, AG_ERR_ARG, "load", m ? ag_model_name(m) : "", "NULL argument");
    uint64_t epoch = 0, position = 0, steps = 0;
    ag_rng rng;
    ag_status st = read_counter(m, "epoch", &epoch, NULL, err, errsize);
    if (st == AG_OK) st = read_counter(m, "position", &position, NULL, err, errsize);
    if (st == AG_OK && ck->optim) st = check_optim(m, ck->optim, &steps, err, errsize);
    if (st == AG_OK && ck->rng) st = read_rng(m, &rng, err, errsize);
    uint32_t *order = NULL;
    if (st == AG_OK && ck->order) {
        order = ag_ext_malloc(ck->order_n ? ck->order_n * sizeof *order : 1);
        if (!order) st = ag_ext_buf_fail(err, errsize, AG_ERR_NOMEM, "load", ag_model_name(m), "out of memory");
        else st = read_order(m, order, ck->order_n, err, errsize);
    }
    if (st == AG_OK) { /* the tensors last: ag_model_read_ex writes them once all fit */
        ag_named_buf state[MAX_STATE];
        char names[MAX_STATE][STATE_NAME_SIZE];
        size_t n_state = state_bufs(ck->optim, state, names);
        const char *own[1] = {ORDER_NAME};
        st = ag_model_read_ex(m, ck->params, state, n_state, own, ck->order ? 1 : 0, err, errsize);
    }
    if (st == AG_OK) {
        if (ck->optim) ag_optim_set_steps(ck->optim, steps);
        if (ck->rng) *ck->rng = rng;
        if (ck->order && ck->order_n) memcpy(ck->order, order, ck->order_n * sizeof *order);
        ck->epoch = epoch;
        ck->position = position;
    }
    ag_ext_free(order);
    return st;
}

ag_status ag_checkpoint_load(const char *path, ag_checkpoint *ck, char *err, size_t errsize) {
    ag_model_file *m;
    ag_status st = ag_model_open(path, &m, err, errsize);
    if (st != AG_OK) return st;
    st = ag_checkpoint_read(m, ck, err, errsize);
    ag_model_close(m);
    return st;
}

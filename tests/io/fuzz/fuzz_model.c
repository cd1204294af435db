/*
 * fuzz_model.c - libFuzzer harness for the model-file loader (issue 7 item 3).
 *
 * Input: a whole model file (safetensors layout). The harness runs ag_model_parse, walks every
 * tensor and metadata entry it reports, then ag_model_read into a parameter store of a fixed small
 * architecture (3-4-2: fc1.W 4x3, fc1.b 4, fc2.W 2x4, fc2.b 2) with and without an extra buffer
 * "opt.m" of 5 elements. A failed read must leave the store untouched. Built with -fsanitize=fuzzer
 * by tests/fuzz.cmake; tests/io/test_fuzz_regress.c replays tests/io/fuzz/corpus/model through it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag_io.h>

#ifndef AG_FUZZ_ENTRY
#define AG_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size);

static ag_params *g_store;

static ag_params *model_store(void) {
    ag_params *ps = g_store;
    if (ps) return ps;
    ag_tensor *x;
    if (ag_params_new(&ps) != AG_OK || ag_params_add(ps, "fc1.W", 2, (size_t[]){4, 3}, AG_DECAY, &x) != AG_OK ||
        ag_params_add(ps, "fc1.b", 1, (size_t[]){4}, 0, &x) != AG_OK ||
        ag_params_add(ps, "fc2.W", 2, (size_t[]){2, 4}, AG_DECAY, &x) != AG_OK ||
        ag_params_add(ps, "fc2.b", 1, (size_t[]){2}, 0, &x) != AG_OK)
        abort();
    return g_store = ps;
}

/* Set every element to a marker; a failed read must leave it. */
static void mark(ag_params *ps, ag_real *extra, size_t n) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *x = ag_params_at(ps, i);
        for (size_t k = 0; k < x->size; k++) x->value[k] = (ag_real)-7.25;
    }
    for (size_t k = 0; k < n; k++) extra[k] = (ag_real)-7.25;
}
static void unchanged(ag_params *ps, const ag_real *extra, size_t n) {
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *x = ag_params_at(ps, i);
        for (size_t k = 0; k < x->size; k++)
            if (x->value[k] != (ag_real)-7.25) abort();
    }
    for (size_t k = 0; k < n; k++)
        if (extra[k] != (ag_real)-7.25) abort();
}

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size) {
    ag_model_file *m = NULL;
    char err[AG_IO_ERRMSG_SIZE];
    if (ag_model_parse(data, size, "fuzz", &m, err, sizeof err) != AG_OK) {
        if (m || !err[0]) abort();
        return 0;
    }
    /* everything listed is consistent */
    size_t nt = ag_model_tensor_count(m);
    for (size_t i = 0; i < nt; i++) {
        const ag_model_tensor *t = ag_model_tensor_at(m, i);
        if (!t || !t->name || !t->dtype || t->begin > t->end || t->end > size) abort();
        if (ag_model_find(m, t->name) != t) abort();
    }
    if (ag_model_tensor_at(m, nt)) abort();
    for (size_t i = 0; i < ag_model_meta_count(m); i++) {
        const char *k, *v;
        if (ag_model_meta_at(m, i, &k, &v) != AG_OK || !k || !v) abort();
        (void)strlen(k);
        (void)strlen(v);
    }
    (void)ag_model_meta(m, "arch");

    ag_params *ps = model_store();
    ag_real extra[5];
    ag_named_buf eb = {"opt.m", extra, 5};
    for (int with_extra = 0; with_extra < 2; with_extra++) {
        mark(ps, extra, 5);
        if (ag_model_read(m, ps, with_extra ? &eb : NULL, (size_t)with_extra, err, sizeof err) != AG_OK) {
            if (!err[0]) abort();
            unchanged(ps, extra, 5);
        }
    }
    ag_model_close(m);
    return 0;
}

/* For replays without libFuzzer (tests/io/test_fuzz_regress.c): free the store, so memcheck sees no leak. */
void fuzz_model_free(void);
void fuzz_model_free(void) {
    ag_params_free(g_store);
    g_store = NULL;
}

/*
 * crash_saver.c - helper of the crash-safety test (tests/main_job/kill_save.sh, issue 7 item 6).
 *
 *   crash_saver save PATH [ELEMENTS]   save generation g+1, g+2, ... to PATH forever (g read from
 *                                      PATH if it exists, else 0), each with every value a function
 *                                      of g, through ag_model_save (atomic); killed by the test
 *   crash_saver once PATH [ELEMENTS]   save the next generation once and exit
 *   crash_saver check PATH [ELEMENTS]  load PATH with ag_model_load (CRC, names, shapes) and check
 *                                      that every value belongs to one generation; print it
 * Exit status 0 on success; check fails (1) on an unreadable file or mixed generations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag_io.h>

static ag_params *store(size_t elems) {
    ag_params *ps;
    ag_tensor *x;
    if (ag_params_new(&ps) != AG_OK || ag_params_add(ps, "W", 2, (size_t[]){elems / 64 + 1, 64}, AG_DECAY, &x) != AG_OK ||
        ag_params_add(ps, "b", 1, (size_t[]){64}, 0, &x) != AG_OK) {
        fprintf(stderr, "crash_saver: cannot make the store\n");
        exit(2);
    }
    return ps;
}

/* value i of generation g: exact in float for g < 2^16 */
static ag_real val(uint64_t g, size_t i) { return (ag_real)((double)g + (double)(i % 251) / 256.0); }

static void fill(ag_params *ps, ag_real *extra, uint64_t g) {
    for (size_t t = 0; t < ag_params_count(ps); t++) {
        ag_tensor *x = ag_params_at(ps, t);
        for (size_t i = 0; i < x->size; i++) x->value[i] = val(g, i + t);
    }
    extra[0] = (ag_real)g;
}

/* 0 = no file; -1 = bad file; else the generation */
static long long check(const char *path, ag_params *ps, int verbose) {
    char err[AG_IO_ERRMSG_SIZE];
    ag_real extra[1];
    ag_named_buf eb = {"generation", extra, 1};
    ag_status st = ag_model_load(path, ps, &eb, 1, err, sizeof err);
    if (st == AG_ERR_IO && strstr(err, "no such file")) return 0;
    if (st != AG_OK) {
        if (verbose) fprintf(stderr, "crash_saver: %s\n", err);
        return -1;
    }
    uint64_t g = (uint64_t)extra[0];
    for (size_t t = 0; t < ag_params_count(ps); t++) {
        ag_tensor *x = ag_params_at(ps, t);
        for (size_t i = 0; i < x->size; i++)
            if (x->value[i] != val(g, i + t)) {
                if (verbose)
                    fprintf(stderr, "crash_saver: %s: %s[%zu] = %g is not of generation %llu\n", path, x->name, i,
                            (double)x->value[i], (unsigned long long)g);
                return -1;
            }
    }
    return (long long)g;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: crash_saver save|once|check PATH [ELEMENTS]\n");
        return 2;
    }
    size_t elems = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 65536;
    ag_params *ps = store(elems);
    const char *path = argv[2];
    long long g = check(path, ps, 1);
    if (!strcmp(argv[1], "check")) {
        if (g <= 0) return 1;
        printf("%lld\n", g);
        ag_params_free(ps);
        return 0;
    }
    if (g < 0) return 1; /* never overwrite a broken file: the test must see it */
    ag_real extra[1];
    ag_named_buf eb = {"generation", extra, 1};
    char err[AG_IO_ERRMSG_SIZE], gs[32];
    for (uint64_t gen = (uint64_t)g + 1;; gen++) {
        fill(ps, extra, gen);
        snprintf(gs, sizeof gs, "%llu", (unsigned long long)gen);
        ag_kv meta[1] = {{"generation", gs}};
        if (ag_model_save(path, ps, &eb, 1, meta, 1, err, sizeof err) != AG_OK) {
            fprintf(stderr, "crash_saver: %s\n", err);
            return 1;
        }
        if (!strcmp(argv[1], "once")) break;
    }
    ag_params_free(ps);
    return 0;
}

/*
 * fuzz_idx.c - libFuzzer harness for the IDX loader (issue 7 item 3).
 *
 * Input: a 2-byte little-endian split s, then a payload P (raw or gzipped IDX). The harness runs
 *   ag_idx_parse(P) without options and with Fashion-MNIST-like options, and
 *   ag_dataset_parse(images = P[0..s), labels = P[s..)) (s clamped to |P|), then converts a batch.
 * Whatever the bytes, the calls must return a status (never crash, leak or read out of bounds);
 * on success the result must be consistent with the input. Built with -fsanitize=fuzzer by
 * tests/fuzz.cmake (AG_FUZZ=ON, clang); tests/io/test_fuzz_regress.c compiles it without libFuzzer
 * (AG_FUZZ_ENTRY renames the entry point) and replays tests/io/fuzz/corpus/idx through it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag_io.h>

#ifndef AG_FUZZ_ENTRY
#define AG_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size);

volatile unsigned idx_touched; /* reading every byte lets ASan check the decoded buffer's size */

static void idx_check(const uint8_t *p, size_t n, const ag_idx_options *o) {
    ag_idx x;
    char err[AG_IO_ERRMSG_SIZE];
    if (ag_idx_parse(p, n, "fuzz", o, &x, err, sizeof err) != AG_OK) {
        if (x.data || x.count) abort(); /* failure must zero the result */
        if (!err[0]) abort();           /* and say why */
        return;
    }
    size_t hdr = x.magic == AG_IDX_IMAGES ? 16 : 8, bytes = x.count * x.rows * x.cols;
    if (x.count == 0) abort();
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) { /* gzip: every byte announced must be there */
        for (size_t i = 0; i < bytes; i++) idx_touched += x.data[i];
    } else { /* raw: header + data exactly, the sizes account for every byte */
        if (bytes + hdr != n) abort();
        if (memcmp(x.data, p + hdr, n - hdr) != 0) abort();
    }
    ag_idx_free(&x);
}

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    if (split > n) split = n;

    idx_check(p, n, NULL);
    idx_check(p, n, &(ag_idx_options){.classes = 10, .rows = 28, .cols = 28});
    idx_check(p, n, &(ag_idx_options){.classes = 3, .max_bytes = 64});

    ag_dataset ds;
    char err[AG_IO_ERRMSG_SIZE];
    ag_idx_options o = {.classes = 10, .limit = 7};
    if (ag_dataset_parse(&ds, p, split, p + split, n - split, &o, err, sizeof err) == AG_OK) {
        if (ds.n == 0 || ds.n > 7 || ds.classes != 10) abort();
        uint32_t idx[2] = {0, (uint32_t)(ds.n - 1)};
        size_t f = ds.rows * ds.cols;
        ag_real *x = malloc(2 * f * sizeof *x), *onehot = malloc(2 * 10 * sizeof *onehot);
        int32_t lab[2];
        if (!x || !onehot) abort();
        if (ag_dataset_batch(&ds, idx, 2, x, lab, onehot) != AG_OK) abort();
        for (size_t i = 0; i < 2 * f; i++)
            if (!(x[i] >= 0 && x[i] <= 1)) abort();
        if (lab[0] < 0 || lab[0] >= 10 || onehot[lab[0]] != 1) abort();
        /* standardised with the set's own statistics: finite, within (0 - mean) / std .. (1 - mean) / std */
        double mean, sd;
        if (ag_dataset_pixel_stats(&ds, &mean, &sd) != AG_OK) abort();
        if (!(mean >= 0 && mean <= 1 && sd >= 0 && sd <= 0.5 + 1e-12)) abort();
        if (sd > 0) {
            if (ag_dataset_standardize(&ds, mean, sd) != AG_OK) abort();
            if (ag_dataset_batch(&ds, idx, 2, x, NULL, NULL) != AG_OK) abort();
            const double lo = -mean / sd - 1e-3 * (1 + mean / sd), hi = (1 - mean) / sd + 1e-3 * (1 + (1 - mean) / sd);
            for (size_t i = 0; i < 2 * f; i++)
                if (!((double)x[i] >= lo && (double)x[i] <= hi)) abort();
        }
        free(x);
        free(onehot);
        ag_dataset_free(&ds);
    } else if (ds.n || ds.images || ds.labels) {
        abort();
    }
    return 0;
}

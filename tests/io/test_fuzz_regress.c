/*
 * test_fuzz_regress.c - replays the fuzz corpus (tests/io/fuzz/corpus/{idx,model}: the seeds and every
 * input a fuzzer ever crashed on) through the two harnesses, compiled here without libFuzzer, so
 * the normal suites (plain, ASan+UBSan, valgrind) check them on every run. Then a few thousand
 * deterministic mutations of each seed (bit flips, byte sets, truncations, splices) go through the
 * harnesses too: a cheap fuzzing pass that needs no clang.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define AG_FUZZ_ENTRY fuzz_idx_one
#include "fuzz/fuzz_idx.c"
#undef AG_FUZZ_ENTRY
#define AG_FUZZ_ENTRY fuzz_model_one
#include "fuzz/fuzz_model.c"
#undef AG_FUZZ_ENTRY

typedef int (*entry_fn)(const uint8_t *, size_t);

typedef struct blob {
    uint8_t *p;
    size_t n;
    char name[256];
} blob;

/* All files of tests/io/fuzz/corpus/<sub>, sorted by name. */
static size_t load_corpus(const char *sub, blob *out, size_t max) {
    const char *src = getenv("AG_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/io/fuzz/corpus/%s", src ? src : ".", sub);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s (AG_SOURCE_DIR)", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        out[n].p = malloc(len > 0 ? (size_t)len : 1);
        out[n].n = fread(out[n].p, 1, len > 0 ? (size_t)len : 0, f);
        fclose(f);
        snprintf(out[n].name, sizeof out[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort by name: a stable order */
        for (size_t j = i; j > 0 && strcmp(out[j - 1].name, out[j].name) > 0; j--) {
            blob t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

static void free_corpus(blob *b, size_t n) {
    for (size_t i = 0; i < n; i++) free(b[i].p);
}

static size_t replay(const char *sub, entry_fn fn, size_t mutations) {
    static blob b[512];
    size_t n = load_corpus(sub, b, 512);
    ck_assert_uint_ge(n, 5);
    for (size_t i = 0; i < n; i++) fn(b[i].p, b[i].n);
    /* deterministic mutations */
    ag_rng r;
    ag_rng_seed(&r, 12345);
    uint8_t *buf = malloc(1 << 16);
    for (size_t k = 0; k < mutations; k++) {
        const blob *s = &b[ag_rng_below(&r, n)];
        size_t len = s->n < (1 << 15) ? s->n : (1 << 15);
        memcpy(buf, s->p, len);
        int edits = 1 + (int)ag_rng_below(&r, 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = ag_rng_below(&r, len);
            switch (ag_rng_below(&r, 5)) {
            case 0: buf[at] ^= (uint8_t)(1u << ag_rng_below(&r, 8)); break;
            case 1: buf[at] = (uint8_t[]){0, 0xff, 0x7f, 0x80, '"', '{', '}', '[', ']', ',', ':', '\\', '0', '9', '-'}[ag_rng_below(&r, 15)]; break;
            case 2: len = at; break;                                        /* truncate */
            case 3: {                                                        /* splice another seed */
                const blob *o = &b[ag_rng_below(&r, n)];
                size_t from = o->n ? ag_rng_below(&r, o->n) : 0, cnt = o->n - from;
                if (at + cnt > (1 << 15)) cnt = (1 << 15) - at;
                memcpy(buf + at, o->p + from, cnt);
                len = at + cnt;
                break;
            }
            case 4: {                                                        /* duplicate a chunk */
                size_t cnt = ag_rng_below(&r, 16);
                if (len + cnt <= (1 << 15) && at + cnt <= len) {
                    memmove(buf + at + cnt, buf + at, len - at);
                    len += cnt;
                }
                break;
            }
            }
        }
        fn(buf, len);
    }
    free(buf);
    free_corpus(b, n);
    return n;
}

START_TEST(idx_corpus) {
    size_t muts = ag_test_quick() ? 300 : 5000;
    size_t n = replay("idx", fuzz_idx_one, muts);
    printf("fuzz_regress: idx: %zu corpus files and %zu mutations replayed\n", n, muts);
}
END_TEST

START_TEST(model_corpus) {
    size_t muts = ag_test_quick() ? 300 : 5000;
    size_t n = replay("model", fuzz_model_one, muts);
    fuzz_model_free();
    printf("fuzz_regress: model: %zu corpus files and %zu mutations replayed\n", n, muts);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("fuzz_regress");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, idx_corpus);
    tcase_add_test(tc, model_corpus);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(suite)

/*
 * make_corpus.c - writes the seed corpus of the fuzz harnesses (tests/io/fuzz/corpus/{idx,model}):
 * small valid files made with the library itself, and a few edge cases.
 *     build/.../tests/fuzz_make_corpus tests/io/fuzz/corpus
 * The files are committed; rerun only to regenerate them (float build: model files are F32).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>

static const char *g_root;

static void put(const char *sub, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", g_root, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static size_t be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
    return 4;
}

/* images file (count x rows x cols) at p; returns its length */
static size_t images(uint8_t *p, uint32_t count, uint32_t rows, uint32_t cols) {
    size_t k = be32(p, AG_IDX_IMAGES);
    k += be32(p + k, count);
    k += be32(p + k, rows);
    k += be32(p + k, cols);
    for (size_t i = 0; i < (size_t)count * rows * cols; i++) p[k++] = (uint8_t)(i * 37 + 11);
    return k;
}
static size_t labels(uint8_t *p, uint32_t count, int classes) {
    size_t k = be32(p, AG_IDX_LABELS);
    k += be32(p + k, count);
    for (uint32_t i = 0; i < count; i++) p[k++] = (uint8_t)(i % (uint32_t)classes);
    return k;
}
/* data as a gzip member with one stored block (what a compressor writes for incompressible bytes) */
static size_t gzip_stored(uint8_t *out, const uint8_t *data, size_t n) {
    static const uint8_t head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memcpy(out, head, sizeof head);
    size_t k = sizeof head;
    out[k++] = 1; /* BFINAL, stored */
    out[k++] = (uint8_t)n, out[k++] = (uint8_t)(n >> 8);
    out[k++] = (uint8_t)~n, out[k++] = (uint8_t)(~n >> 8);
    memcpy(out + k, data, n);
    k += n;
    uint32_t crc = ag_crc32(0, data, n);
    for (int i = 0; i < 4; i++) out[k++] = (uint8_t)(crc >> (8 * i));
    for (int i = 0; i < 4; i++) out[k++] = (uint8_t)(n >> (8 * i));
    return k;
}

/* fuzz_idx input: split (2 bytes LE) + images + labels */
static void idx_input(const char *name, const uint8_t *im, size_t ni, const uint8_t *lb, size_t nl) {
    static uint8_t buf[1 << 16];
    buf[0] = (uint8_t)ni, buf[1] = (uint8_t)(ni >> 8);
    memcpy(buf + 2, im, ni);
    memcpy(buf + 2 + ni, lb, nl);
    put("idx", name, buf, 2 + ni + nl);
}

static void model_from_store(const char *name, ag_params *ps, const ag_named_buf *extra, size_t n_extra,
                             const ag_kv *meta, size_t n_meta, size_t cut, int flip) {
    char tmp[] = "/tmp/ag_make_corpus_XXXXXX", path[64], err[AG_IO_ERRMSG_SIZE];
    if (!mkdtemp(tmp)) exit(1);
    snprintf(path, sizeof path, "%s/m.st", tmp);
    if (ag_model_save(path, ps, extra, n_extra, meta, n_meta, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    static uint8_t buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unlink(path);
    rmdir(tmp);
    if (cut) n -= cut;
    if (flip) buf[n - 1] ^= 1;
    put("model", name, buf, n);
}

static void raw_model(const char *name, const char *json) {
    static uint8_t buf[4096];
    size_t j = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)j >> (8 * i));
    memcpy(buf + 8, json, j);
    put("model", name, buf, 8 + j);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (containing idx/ and model/)\n", argv[0]);
        return 2;
    }
    g_root = argv[1];
    static uint8_t im[1 << 15], lb[4096];

    /* ---- IDX */
    size_t ni = images(im, 5, 2, 3), nl = labels(lb, 5, 10);
    idx_input("dataset_5x2x3", im, ni, lb, nl);
    idx_input("labels_only", lb, 0, lb, nl);
    idx_input("images_only", im, ni, im, 0);
    ni = images(im, 2, 28, 28);
    nl = labels(lb, 2, 10);
    idx_input("dataset_2x28x28", im, ni, lb, nl);
    ni = images(im, 1, 1, 1);
    nl = labels(lb, 1, 1);
    idx_input("dataset_1x1x1", im, ni, lb, nl);
    ni = images(im, 9, 3, 3);
    nl = labels(lb, 9, 12);                     /* labels 10, 11 out of range for 10 classes */
    idx_input("labels_out_of_range", im, ni, lb, nl);
    ni = images(im, 4, 2, 2);
    idx_input("truncated_pixels", im, ni - 1, lb, 0);
    im[ni] = 0;
    idx_input("trailing_byte", im, ni + 1, lb, 0);
    ni = images(im, 0, 2, 2);
    idx_input("zero_count", im, ni, lb, 0);
    ni = images(im, 1, 2, 2);
    be32(im + 4, 0xffffffffu);                  /* count 2^32-1 in a 20-byte file */
    idx_input("huge_count", im, ni, lb, 0);
    ni = images(im, 1, 1, 1);
    be32(im + 8, 4097);                         /* side above AG_IDX_MAX_SIDE */
    idx_input("side_too_large", im, ni, lb, 0);
    im[0] = 0x1f, im[1] = 0x8b;
    idx_input("gzip_magic", im, ni, lb, 0);
    static uint8_t gz[1 << 15];
    ni = images(im, 5, 2, 3);
    nl = labels(lb, 5, 10);
    size_t ng = gzip_stored(gz, im, ni);
    idx_input("gzip_stored_dataset", gz, ng, lb, nl);
    nl = labels(lb, 3, 2);
    lb[2] = 0x0d;                                /* float type */
    idx_input("float_type", lb, 0, lb, nl);

    /* ---- model files: the harness's 3-4-2 architecture, then others */
    ag_params *ps;
    ag_tensor *x;
    ag_params_new(&ps);
    ag_params_add(ps, "fc1.W", 2, (size_t[]){4, 3}, AG_DECAY, &x);
    ag_params_add(ps, "fc1.b", 1, (size_t[]){4}, 0, &x);
    ag_params_add(ps, "fc2.W", 2, (size_t[]){2, 4}, AG_DECAY, &x);
    ag_params_add(ps, "fc2.b", 1, (size_t[]){2}, 0, &x);
    ag_real *v = ag_params_values(ps);
    for (size_t i = 0; i < ag_params_numel(ps); i++) v[i] = (ag_real)(0.25 * (double)(i % 9) - 1);
    ag_real extra[5] = {1, 2, 3, 4, 5};
    ag_named_buf eb = {"opt.m", extra, 5};
    ag_kv meta[2] = {{"arch", "3-4-2"}, {"note", "seed corpus \"quoted\" \\ \xc3\xa9"}};
    model_from_store("valid_342", ps, NULL, 0, meta, 1, 0, 0);
    model_from_store("valid_342_extra_meta", ps, &eb, 1, meta, 2, 0, 0);
    model_from_store("truncated", ps, NULL, 0, meta, 1, 3, 0);
    model_from_store("crc_mismatch", ps, NULL, 0, meta, 1, 0, 1);
    ag_params_free(ps);
    ag_params_new(&ps);
    ag_params_add(ps, "fc1.W", 2, (size_t[]){3, 3}, AG_DECAY, &x); /* wrong shape for the harness */
    ag_params_add(ps, "s", 0, NULL, 0, &x);
    model_from_store("other_arch", ps, NULL, 0, NULL, 0, 0, 0);
    ag_params_free(ps);
    raw_model("empty_object", "{}");
    raw_model("metadata_only", "{\"__metadata__\":{\"arch\":\"3-4-2\",\"crc32\":\"0x00000000\"}}");
    raw_model("f64_tensor", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}        \x01\x02\x03\x04\x05\x06\x07\x08");
    raw_model("escapes", "{\"\\u00e9\\n\\\"\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,2]}}xx");
    raw_model("bad_json", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}");
    static const uint8_t short8[5] = {1, 0, 0, 0, 0};
    put("model", "shorter_than_length", short8, sizeof short8);
    return 0;
}

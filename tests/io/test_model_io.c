/*
 * test_model_io.c - model files in the safetensors layout: bit-exact round trip, metadata,
 * refusal of truncated, corrupt (every single-byte change), malformed and mismatched files with
 * the store left unchanged, atomic writes that leave no temporary files, out-of-memory paths.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/mlp.h>
#include "testutil.h"

#ifdef AG_DOUBLE
#define DT "F64"
#else
#define DT "F32"
#endif

static char path[512];
static char err[AG_IO_ERRMSG_SIZE];

static void setup(void) { ag_test_scratch_path(path, sizeof path, "model.safetensors"); }
static void teardown(void) { ag_test_scratch_remove(); }

/* W1 4x3 (decay), b1 4, W2 2x4, b2 2, s scalar; values from seed (0: zeros). */
static ag_params *make_store(uint64_t seed, size_t w1_rows) {
    ag_params *ps;
    ag_tensor *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W1", 2, (size_t[]){w1_rows, 3}, AG_DECAY, &t), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b1", 1, (size_t[]){w1_rows}, 0, &t), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "W2", 2, (size_t[]){2, w1_rows}, AG_DECAY, &t), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b2", 1, (size_t[]){2}, 0, &t), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "s", 0, NULL, 0, &t), AG_OK);
    if (seed) {
        ag_rng r;
        ag_rng_seed(&r, seed);
        for (size_t i = 0; i < ag_params_count(ps); i++) {
            ag_tensor *x = ag_params_at(ps, i);
            ag_rng_fill_normal(&r, x->value, x->size, 0, 1);
        }
        /* awkward values survive bit-exactly */
        ag_tensor *b1 = ag_params_find(ps, "b1");
        b1->value[0] = (ag_real)-0.0;
        b1->value[1] = (ag_real)INFINITY;
        b1->value[2] = (ag_real)1e-40; /* subnormal in float */
    }
    return ps;
}

/* Raw bytes of every parameter, in order, for exact comparison. */
static size_t snapshot(ag_params *ps, unsigned char *out) {
    size_t k = 0;
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        ag_tensor *x = ag_params_at(ps, i);
        memcpy(out + k, x->value, x->size * sizeof(ag_real));
        k += x->size * sizeof(ag_real);
    }
    return k;
}

static const ag_kv META[] = {{"arch", "3-4-2"}, {"activation", "relu"}, {"note", "quote \" backslash \\ tab \t é"}};

static unsigned char *read_all(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}
static void write_all(const char *p, const void *b, size_t n) {
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

START_TEST(crc32_vectors) {
    ck_assert_uint_eq(ag_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(ag_crc32(0, "", 0), 0);
    ck_assert_uint_eq(ag_crc32(ag_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}
END_TEST

START_TEST(round_trip_bit_exact) {
    ag_params *a = make_store(7, 4), *b = make_store(0, 4);
    ag_real m[10], v[10] = {0};
    for (int i = 0; i < 10; i++) m[i] = (ag_real)(i * 0.1 - 0.3);
    ag_named_buf ex[] = {{"opt.m", m, 10}, {"opt.empty", NULL, 0}};
    ck_assert_int_eq(ag_model_save(path, a, ex, 2, META, 3, err, sizeof err), AG_OK);
    ck_assert_str_eq(err, "");
    ag_named_buf in[] = {{"opt.m", v, 10}, {"opt.empty", NULL, 0}};
    ck_assert_int_eq(ag_model_load(path, b, in, 2, err, sizeof err), AG_OK);
    static unsigned char sa[4096], sb[4096];
    size_t na = snapshot(a, sa), nb = snapshot(b, sb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(sa, sb, na), 0);
    ck_assert_int_eq(memcmp(m, v, sizeof m), 0);

    /* the layout: 8-byte LE length, JSON object, data 8-aligned */
    size_t len;
    unsigned char *f = read_all(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f[i];
    ck_assert_uint_eq((8 + n) % 8, 0);
    ck_assert_int_eq(f[8], '{');
    size_t data = 0;
    for (size_t i = 0; i < ag_params_count(a); i++) data += ag_params_at(a, i)->size * sizeof(ag_real);
    ck_assert_uint_eq(len, 8 + n + data + 10 * sizeof(ag_real));
    free(f);

    /* metadata and tensor listing */
    ag_model_file *mf;
    ck_assert_int_eq(ag_model_open(path, &mf, err, sizeof err), AG_OK);
    ck_assert_str_eq(ag_model_meta(mf, "arch"), "3-4-2");
    ck_assert_str_eq(ag_model_meta(mf, "activation"), "relu");
    ck_assert_str_eq(ag_model_meta(mf, "note"), META[2].value);
    ck_assert_ptr_null(ag_model_meta(mf, "nope"));
    const char *crc = ag_model_meta(mf, "crc32");
    ck_assert_ptr_nonnull(crc);
    ck_assert_uint_eq(strlen(crc), 10);
    ck_assert_uint_eq(ag_model_meta_count(mf), 4);
    const char *k, *val;
    ck_assert_int_eq(ag_model_meta_at(mf, 0, &k, &val), AG_OK);
    ck_assert_int_eq(ag_model_meta_at(mf, 4, &k, &val), AG_ERR_ARG);
    ck_assert_uint_eq(ag_model_tensor_count(mf), 7);
    const ag_model_tensor *t = ag_model_find(mf, "W2");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->dtype, DT);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_uint_eq(t->shape[0], 2);
    ck_assert_uint_eq(t->shape[1], 4);
    t = ag_model_find(mf, "s");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_uint_eq(t->numel, 1);
    ag_model_close(mf);
    ag_params_free(a);
    ag_params_free(b);
}
END_TEST

/* Saves the reference model and returns its bytes. */
static unsigned char *reference_file(size_t *len) {
    ag_params *a = make_store(3, 4);
    ck_assert_int_eq(ag_model_save(path, a, NULL, 0, META, 2, err, sizeof err), AG_OK);
    ag_params_free(a);
    return read_all(path, len);
}

START_TEST(every_corruption_refused_or_harmless) {
    size_t len;
    unsigned char *f = reference_file(&len);
    ag_params *want = make_store(3, 4), *b = make_store(11, 4);
    static unsigned char s_want[4096], s_b0[4096], s_b[4096];
    size_t n = snapshot(want, s_want);
    snapshot(b, s_b0);
    size_t refused = 0;
    for (size_t pos = 0; pos < len; pos++)
        for (int bit = 0; bit < 8; bit += 3) {
            f[pos] ^= (unsigned char)(1u << bit);
            ag_model_file *mf;
            ag_status st = ag_model_parse(f, len, "x", &mf, err, sizeof err);
            if (st == AG_OK) {
                st = ag_model_read(mf, b, NULL, 0, err, sizeof err);
                ag_model_close(mf);
            }
            snapshot(b, s_b);
            if (st == AG_OK) { /* only harmless bytes (metadata text, whitespace) may pass */
                ck_assert_int_eq(memcmp(s_b, s_want, n), 0);
                memcpy(s_b0, s_want, n);
                ag_params_free(b);
                b = make_store(11, 4);
                snapshot(b, s_b0);
            } else {
                refused++;
                ck_assert_msg(st == AG_ERR_FORMAT || st == AG_ERR_SHAPE, "pos %zu: %d %s", pos, st, err);
                ck_assert_uint_gt(strlen(err), 10);
                ck_assert_msg(memcmp(s_b, s_b0, n) == 0, "store changed by a failed load at byte %zu", pos);
            }
            f[pos] ^= (unsigned char)(1u << bit);
        }
    ck_assert_uint_gt(refused, len); /* most changes are caught */
    /* a data byte specifically: CRC mismatch */
    f[len - 3] ^= 0x40;
    write_all(path, f, len);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "corrupt: CRC32 of the data is 0x"), "%s", err);
    free(f);
    ag_params_free(want);
    ag_params_free(b);
}
END_TEST

START_TEST(truncated_refused) {
    size_t len;
    unsigned char *f = reference_file(&len);
    ag_params *b = make_store(11, 4);
    static unsigned char s0[4096], s1[4096];
    size_t n = snapshot(b, s0);
    for (size_t cut = 0; cut < len; cut++) {
        ag_model_file *mf;
        ag_status st = ag_model_parse(f, cut, "x", &mf, err, sizeof err);
        ck_assert_int_eq(st, AG_ERR_FORMAT);
        ck_assert_ptr_null(mf);
    }
    write_all(path, f, len - 1);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "truncated: tensor") && strstr(err, path), "%s", err);
    write_all(path, f, 5);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "truncated: 5 bytes"), "%s", err);
    write_all(path, f, 40);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "truncated: header length is"), "%s", err);
    snapshot(b, s1);
    ck_assert_int_eq(memcmp(s0, s1, n), 0);
    free(f);
    ag_params_free(b);
}
END_TEST

/* A file from a header text and data bytes (as another tool would write it), named name. */
static ag_status parse_text_as(const char *name, const char *hdr, size_t data_len, ag_model_file **mf) {
    static unsigned char buf[8192];
    size_t n = strlen(hdr);
    ck_assert_uint_le(8 + n + data_len, sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    memset(buf + 8 + n, 0x3f, data_len);
    return ag_model_parse(buf, 8 + n + data_len, name, mf, err, sizeof err);
}
static ag_status parse_text(const char *hdr, size_t data_len, ag_model_file **mf) {
    return parse_text_as("hand.safetensors", hdr, data_len, mf);
}

START_TEST(json_refused) {
    static const struct {
        const char *hdr;
        size_t data;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "expected a string"},
        {"{\"a\" {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "expected ':'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field x"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "repeated field dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "fraction or exponent"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,8]}}", 8, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype Q7"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "but the header ended"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "data after the closing brace"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[8,16]}}", 16, "tensor a appears twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "value of k is not a string"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "metadata key k repeated"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ repeated"},
        {"{\"a\x01\":{}}", 0, "control character"},
        {"{\"a\xff\":{}}", 0, "invalid UTF-8"},
        {"{\"a\\ud800\":{}}", 0, "invalid escape"},
        {"{\"a\\udc00\":{}}", 0, "invalid escape"},              /* a lone low surrogate */
        {"{\"a\\ud800\\u0041\":{}}", 0, "invalid escape"},       /* a high one without its low one */
        {"{\"a\\u0000\":{}}", 0, "\\u0000"},
        {"{\"a\\", 0, "unterminated string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "do not hold 2 F32 (8 bytes)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "do not hold"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, "truncated: tensor a ends at byte 16"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[4,12]}}", 12, "overlapping"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "leaving a gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "4 bytes of data after the last tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "shape overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "more than 8"},
        {"{\"__metadata__\":{\"crc32\":\"0x1234\"}}", 0, "not 0x + 8 hex digits"},
        {"{\"__metadata__\":{\"crc32\":\"0x00000000\"},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
         1, "corrupt: CRC32"},
        {"[]", 0, "not a safetensors file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_model_file *mf = (ag_model_file *)1;
        ag_status st = parse_text(cases[i].hdr, cases[i].data, &mf);
        ck_assert_msg(st == AG_ERR_FORMAT && strstr(err, cases[i].want), "case %zu: status %d, \"%s\" lacks \"%s\"",
                      i, st, err, cases[i].want);
        ck_assert_ptr_null(mf);
    }
    /* a well-formed file from another tool (no crc32, other dtypes, escapes, spaces) opens */
    ag_model_file *mf;
    ck_assert_int_eq(parse_text(" { \"b\\u00e9\\n\" : { \"shape\" : [ ] , \"dtype\" : \"I64\" , \"data_offsets\" : "
                                "[ 2 , 10 ] } , \"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                                "\"__metadata__\":{\"format\":\"pt\"}}   ",
                                10, &mf),
                     AG_ERR_FORMAT); /* leading space: safetensors requires '{' first */
    ck_assert_int_eq(parse_text("{ \"b\\u00e9\\n\" : { \"shape\" : [ ] , \"dtype\" : \"I64\" , \"data_offsets\" : "
                                "[ 2 , 10 ] } , \"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                                "\"__metadata__\":{\"format\":\"pt\"}}   ",
                                10, &mf),
                     AG_OK);
    ck_assert_uint_eq(ag_model_tensor_count(mf), 2);
    ck_assert_ptr_nonnull(ag_model_find(mf, "b\xc3\xa9\n"));
    ck_assert_str_eq(ag_model_meta(mf, "format"), "pt");
    /* it does not fit a tapegrad store */
    ag_params *b = make_store(1, 4);
    ck_assert_int_eq(ag_model_read(mf, b, NULL, 0, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_msg(strstr(err, "tensor W1 of the model is missing from the file"), "%s", err);
    ag_model_close(mf);
    ag_params_free(b);
}
END_TEST

START_TEST(mismatch_refused_store_unchanged) {
    ag_params *a = make_store(5, 4);
    ck_assert_int_eq(ag_model_save(path, a, NULL, 0, NULL, 0, err, sizeof err), AG_OK);
    static unsigned char s0[4096], s1[4096];
    /* shape */
    ag_params *b = make_store(9, 5);
    size_t n = snapshot(b, s0);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_msg(strstr(err, "W1 is 4x3 in the file but 5x3 in the model"), "%s", err);
    snapshot(b, s1);
    ck_assert_int_eq(memcmp(s0, s1, n), 0);
    ag_params_free(b);
    /* a tensor missing from the file */
    b = make_store(9, 4);
    ag_tensor *t;
    ck_assert_int_eq(ag_params_add(b, "W3", 2, (size_t[]){2, 2}, AG_DECAY, &t), AG_OK);
    n = snapshot(b, s0);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_msg(strstr(err, "tensor W3 of the model is missing from the file"), "%s", err);
    snapshot(b, s1);
    ck_assert_int_eq(memcmp(s0, s1, n), 0);
    ag_params_free(b);
    /* a tensor of the file missing from the model */
    ck_assert_int_eq(ag_params_new(&b), AG_OK);
    ck_assert_int_eq(ag_params_add(b, "W1", 2, (size_t[]){4, 3}, AG_DECAY, &t), AG_OK);
    t->value[0] = 42;
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_msg(strstr(err, "in the file is not in the model"), "%s", err);
    ck_assert(t->value[0] == 42);
    /* an extra buffer of the wrong length */
    ag_real m[3] = {1, 2, 3};
    ag_params_free(b);
    b = make_store(9, 4);
    ck_assert_int_eq(ag_model_save(path, a, (ag_named_buf[]){{"m", m, 3}}, 1, NULL, 0, err, sizeof err), AG_OK);
    ag_real m2[4] = {0};
    ck_assert_int_eq(ag_model_load(path, b, (ag_named_buf[]){{"m", m2, 4}}, 1, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_msg(strstr(err, "m is 3 in the file but 4 in the model"), "%s", err);
    ck_assert_int_eq(ag_model_load(path, b, NULL, 0, err, sizeof err), AG_ERR_SHAPE); /* m not wanted */
    /* the other scalar type */
    const char *other = sizeof(ag_real) == 4 ? "F64" : "F32";
    char hdr[256];
    snprintf(hdr, sizeof hdr, "{\"s\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[0,%d]}}", other,
             sizeof(ag_real) == 4 ? 8 : 4);
    ag_model_file *mf;
    ck_assert_int_eq(parse_text(hdr, sizeof(ag_real) == 4 ? 8 : 4, &mf), AG_OK);
    ag_params *one;
    ck_assert_int_eq(ag_params_new(&one), AG_OK);
    ck_assert_int_eq(ag_params_add(one, "s", 0, NULL, 0, &t), AG_OK);
    ck_assert_int_eq(ag_model_read(mf, one, NULL, 0, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "s is ") && strstr(err, "in the file but this build stores " DT), "%s", err);
    ag_model_close(mf);
    ag_params_free(one);
    ag_params_free(a);
    ag_params_free(b);
}
END_TEST

static size_t count_entries(const char *d) {
    DIR *dp = opendir(d);
    ck_assert_ptr_nonnull(dp);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

START_TEST(atomic_write_leaves_no_temp_files) {
    ag_params *a = make_store(5, 4), *b = make_store(6, 4);
    ck_assert_int_eq(ag_model_save(path, a, NULL, 0, META, 1, err, sizeof err), AG_OK);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 1);
    /* overwrite: the new content replaces the old one in place */
    ck_assert_int_eq(ag_model_save(path, b, NULL, 0, META, 1, err, sizeof err), AG_OK);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 1);
    ag_params *c = make_store(0, 4);
    ck_assert_int_eq(ag_model_load(path, c, NULL, 0, err, sizeof err), AG_OK);
    static unsigned char sb[4096], sc[4096];
    size_t n = snapshot(b, sb);
    snapshot(c, sc);
    ck_assert_int_eq(memcmp(sb, sc, n), 0);
    /* a directory as the target is refused before any temporary file is made */
    char sub[600];
    ag_test_scratch_path(sub, sizeof sub, "adir");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(ag_model_save(sub, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_msg(strstr(err, "cannot replace it: it exists and is not a regular file"), "%s", err);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 2);
    ck_assert_uint_eq(count_entries(sub), 0);
    /* a missing directory */
    ag_test_scratch_path(sub, sizeof sub, "no/such/dir/m.safetensors");
    ck_assert_int_eq(ag_model_save(sub, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_msg(strstr(err, "cannot create a temporary file"), "%s", err);
    /* bad arguments write nothing */
    ck_assert_int_eq(ag_model_save(path, a, NULL, 0, (ag_kv[]){{"crc32", "x"}}, 1, err, sizeof err), AG_ERR_ARG);
    ck_assert_int_eq(ag_model_save(path, a, (ag_named_buf[]){{"W1", NULL, 0}}, 1, NULL, 0, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_msg(strstr(err, "W1 is used twice"), "%s", err);
    ck_assert_int_eq(ag_model_save(NULL, a, NULL, 0, NULL, 0, NULL, 0), AG_ERR_ARG);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 2);
    /* the model still holds b */
    ck_assert_int_eq(ag_model_load(path, c, NULL, 0, err, sizeof err), AG_OK);
    snapshot(c, sc);
    ck_assert_int_eq(memcmp(sb, sc, n), 0);
    /* loading a missing file */
    ag_test_scratch_path(sub, sizeof sub, "none.safetensors");
    ck_assert_int_eq(ag_model_load(sub, c, NULL, 0, err, sizeof err), AG_ERR_IO);
    char want[700];
    snprintf(want, sizeof want, "load: %s: no such file", sub);
    ck_assert_str_eq(err, want);
    ag_params_free(a);
    ag_params_free(b);
    ag_params_free(c);
}
END_TEST

/* A save replaces a regular file only: a FIFO (or device, directory) at the path is refused and
 * left as it is (the rename would have put a file in its place: as root, /dev/full became one);
 * a symbolic link is followed, so the file it points to is replaced and the link stays a link; a
 * link to nothing is refused. */
START_TEST(save_replaces_regular_files_only) {
    ag_params *a = make_store(5, 4), *c = make_store(0, 4);
    char p2[600], real[600];
    struct stat sb;
    ag_test_scratch_path(p2, sizeof p2, "fifo");
    ck_assert_int_eq(mkfifo(p2, 0600), 0);
    ck_assert_int_eq(ag_model_save(p2, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_msg(strstr(err, "cannot replace it: it exists and is not a regular file"), "%s", err);
    ck_assert_int_eq(lstat(p2, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode));
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 1);
    /* a link to a regular file: written through */
    ag_test_scratch_path(real, sizeof real, "real.safetensors");
    FILE *f = fopen(real, "w");
    ck_assert_ptr_nonnull(f);
    fputs("old", f);
    fclose(f);
    ag_test_scratch_path(p2, sizeof p2, "link.safetensors");
    ck_assert_int_eq(symlink("real.safetensors", p2), 0);
    ck_assert_msg(ag_model_save(p2, a, NULL, 0, META, 1, err, sizeof err) == AG_OK, "%s", err);
    ck_assert_int_eq(lstat(p2, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert_int_eq(ag_model_load(real, c, NULL, 0, err, sizeof err), AG_OK);
    static unsigned char sa[4096], sc[4096];
    size_t n = snapshot(a, sa);
    snapshot(c, sc);
    ck_assert_int_eq(memcmp(sa, sc, n), 0);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 3); /* fifo, real, link: no temporary file */
    /* a link to a FIFO, and a link to nothing */
    ag_test_scratch_path(p2, sizeof p2, "link2");
    ck_assert_int_eq(symlink("fifo", p2), 0);
    ck_assert_int_eq(ag_model_save(p2, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_msg(strstr(err, "symbolic link to something that is not a regular file"), "%s", err);
    ag_test_scratch_path(p2, sizeof p2, "link3");
    ck_assert_int_eq(symlink("nowhere/m.safetensors", p2), 0);
    ck_assert_int_eq(ag_model_save(p2, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_msg(strstr(err, "symbolic link to nothing"), "%s", err);
    ck_assert_int_eq(lstat(p2, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 5);
    ag_params_free(a);
    ag_params_free(c);
}
END_TEST

/* A save refused with AG_ERR_ARG and this exact message writes nothing: no target, no temporary. */
static void assert_save_refused(ag_status st, const char *want) {
    static char full[sizeof path + 2 * AG_IO_ERRMSG_SIZE];
    snprintf(full, sizeof full, "save: %s: %s", path, want);
    ck_assert_int_eq(st, AG_ERR_ARG);
    ck_assert_str_eq(err, full);
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 0);
}

/* np + n_extra was compared after adding: near SIZE_MAX it wrapped, the check passed and the
 * extra buffers were copied past the end of the tensor table (a heap overflow). */
START_TEST(save_tensor_count_cannot_wrap) {
    ag_params *a = make_store(5, 4);
    size_t np = ag_params_count(a);
    ck_assert_uint_eq(np, 5);
    ag_real d[1] = {0};
    ag_named_buf one[1] = {{"e", d, 1}}; /* the counts below lie about its length: nothing may read it */
    char want[300];
    const size_t refused[] = {SIZE_MAX, SIZE_MAX - np + 1 /* np + n_extra == 0 */, SIZE_MAX - np,
                              (size_t)AG_MODEL_MAX_TENSORS - np + 1, (size_t)AG_MODEL_MAX_TENSORS + 1};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        snprintf(want, sizeof want, "%zu parameters and %zu extra tensors, at most %d tensors", np, refused[k],
                 AG_MODEL_MAX_TENSORS);
        assert_save_refused(ag_model_save(path, a, one, refused[k], NULL, 0, err, sizeof err), want);
    }
    snprintf(want, sizeof want, "%zu parameters and %zu extra tensors, at most %d tensors", (size_t)0,
             (size_t)SIZE_MAX, AG_MODEL_MAX_TENSORS);
    assert_save_refused(ag_model_save(path, NULL, one, SIZE_MAX, NULL, 0, err, sizeof err), want);
    /* the largest count passes the limit: every buffer is read, and the first invalid name is
     * reported (a full save of 65536 tensors is quadratic in the name check: too slow here) */
    size_t n_max = (size_t)AG_MODEL_MAX_TENSORS - np;
    ag_named_buf *ex = calloc(n_max, sizeof *ex);
    ck_assert_ptr_nonnull(ex);
    ex[n_max - 1] = (ag_named_buf){"last", d, 1};
    snprintf(want, sizeof want, "tensor %zu has an invalid name: it is NULL", np);
    assert_save_refused(ag_model_save(path, a, ex, n_max, NULL, 0, err, sizeof err), want);
    free(ex);
    /* and a count within the limit still saves */
    ck_assert_int_eq(ag_model_save(path, a, one, 1, NULL, 0, err, sizeof err), AG_OK);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 1);
    ag_params_free(a);
}
END_TEST

/* n_meta + 1 wrapped to 0 for n_meta = SIZE_MAX: the check passed and the key loop read past the
 * caller's array. */
START_TEST(save_meta_count_cannot_wrap) {
    ag_params *a = make_store(5, 4);
    ag_kv meta[1] = {{"k", "v"}}; /* the counts below lie about its length: nothing may read it */
    char want[300];
    const size_t refused[] = {SIZE_MAX, SIZE_MAX - 1, AG_MODEL_MAX_META};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        snprintf(want, sizeof want, "%zu metadata entries, at most %d", refused[k],
                 AG_MODEL_MAX_META - 1);
        assert_save_refused(ag_model_save(path, a, NULL, 0, meta, refused[k], err, sizeof err), want);
    }
    /* the largest count saves, and the file (crc32 included) is at the reader's limit */
    size_t n_max = AG_MODEL_MAX_META - 1;
    static char keys[AG_MODEL_MAX_META][16];
    static ag_kv many[AG_MODEL_MAX_META];
    for (size_t i = 0; i < n_max; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        many[i] = (ag_kv){keys[i], "v"};
    }
    ck_assert_int_eq(ag_model_save(path, a, NULL, 0, many, n_max, err, sizeof err), AG_OK);
    ck_assert_str_eq(err, "");
    ag_model_file *mf;
    ck_assert_int_eq(ag_model_open(path, &mf, err, sizeof err), AG_OK);
    ck_assert_uint_eq(ag_model_meta_count(mf), AG_MODEL_MAX_META);
    ck_assert_str_eq(ag_model_meta(mf, "k1022"), "v");
    ag_model_close(mf);
    ag_params_free(a);
}
END_TEST

/* The data offsets add up every tensor's bytes: buffers whose sizes sum past SIZE_MAX are refused
 * before any data is read (the sizes lie: the data behind them is never touched). */
START_TEST(save_data_size_cannot_wrap) {
    ag_params *a = make_store(5, 4);
    ag_real d[1] = {0};
    size_t big = SIZE_MAX / 8; /* the largest one buffer may claim; three of them exceed SIZE_MAX bytes */
    ag_named_buf ex[3] = {{"x", d, big}, {"y", d, big}, {"z", d, big}};
    char want[300];
    snprintf(want, sizeof want, "tensors 0 to %d hold more than %zu bytes of data", sizeof(ag_real) == 8 ? 5 : 6,
             (size_t)SIZE_MAX);
    assert_save_refused(ag_model_save(path, a, ex, 3, NULL, 0, err, sizeof err), want);
    ag_params_free(a);
}
END_TEST

/* ag_model_read refuses an extra count no file can hold before reading the array. */
START_TEST(read_extra_count_refused) {
    ag_params *a = make_store(5, 4), *b = make_store(9, 4);
    ag_real m[3] = {1, 2, 3}, m2[3] = {7, 7, 7};
    ck_assert_int_eq(ag_model_save(path, a, (ag_named_buf[]){{"m", m, 3}}, 1, NULL, 0, err, sizeof err), AG_OK);
    static unsigned char s0[4096], s1[4096];
    size_t n = snapshot(b, s0);
    ag_named_buf in[1] = {{"m", m2, 3}}; /* the counts below lie about its length: nothing may read it */
    const size_t refused[] = {SIZE_MAX, (size_t)AG_MODEL_MAX_TENSORS + 1};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        char want[700];
        snprintf(want, sizeof want, "load: %s: %zu extra buffers, at most %d tensors", path, refused[k],
                 AG_MODEL_MAX_TENSORS);
        ck_assert_int_eq(ag_model_load(path, b, in, refused[k], err, sizeof err), AG_ERR_ARG);
        ck_assert_str_eq(err, want);
        snapshot(b, s1);
        ck_assert_int_eq(memcmp(s0, s1, n), 0);
        ck_assert(m2[0] == 7);
    }
    ck_assert_int_eq(ag_model_load(path, b, in, 1, err, sizeof err), AG_OK);
    ck_assert_int_eq(memcmp(m, m2, sizeof m), 0);
    ag_params_free(a);
    ag_params_free(b);
}
END_TEST

/* The temporary file's name added ~20 bytes to the target's: a legal 250-byte file name failed
 * with "File name too long". It now holds at most 64 bytes of the target's name. */
START_TEST(save_long_file_name) {
    ag_params *a = make_store(5, 4), *b = make_store(0, 4);
    static unsigned char sa[4096], sb[4096];
    size_t n = snapshot(a, sa);
    char p[1100];
    int k = snprintf(p, sizeof p, "%s/", ag_test_scratch_dir());
    const size_t lens[] = {250, 255};
    for (size_t i = 0; i < 2; i++) {
        memset(p + k, 'n', lens[i]);
        p[(size_t)k + lens[i]] = '\0';
        ck_assert_int_eq(ag_model_save(p, a, NULL, 0, META, 1, err, sizeof err), AG_OK);
        ck_assert_str_eq(err, "");
        ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), i + 1); /* no temporary file left */
        ck_assert_int_eq(ag_model_load(p, b, NULL, 0, err, sizeof err), AG_OK);
        snapshot(b, sb);
        ck_assert_int_eq(memcmp(sa, sb, n), 0);
    }
    /* 127 two-byte characters: the cut at 64 bytes falls inside one and backs off to its start */
    p[k] = 'x';
    for (int i = 0; i < 127; i++) memcpy(p + k + 1 + 2 * i, "\xc3\xa9", 2);
    p[k + 1 + 254] = '\0';
    ck_assert_int_eq(ag_model_save(p, a, NULL, 0, NULL, 0, err, sizeof err), AG_OK);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 3);
    ck_assert_int_eq(ag_model_load(p, b, NULL, 0, err, sizeof err), AG_OK);
    /* a name over NAME_MAX is refused by the file system, and nothing is left behind */
    memset(p + k, 'n', 300);
    p[k + 300] = '\0';
    ck_assert_int_eq(ag_model_save(p, a, NULL, 0, NULL, 0, err, sizeof err), AG_ERR_IO);
    ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), 3);
    ag_params_free(a);
    ag_params_free(b);
}
END_TEST

/* ag_params_add accepted names ag_model_save then refused ("tensor 0 has an invalid name", without
 * the reason): the store refuses them itself, saying why, and save says why too. */
START_TEST(names_a_file_cannot_hold) {
    ag_params *ps;
    ag_tensor *t = (ag_tensor *)1;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    static const struct {
        const char *name, *want;
    } bad[] = {
        {"__metadata__", "params_add: name __metadata__ is reserved (model files keep their metadata under it)"},
        {"\xff\xfe", "params_add: name is not valid UTF-8 (byte 0 is 0xff)"},
        {"ab\xc3", "params_add: name is not valid UTF-8 (byte 2 is 0xc3)"},         /* cut short */
        {"a\xc0\xaf", "params_add: name is not valid UTF-8 (byte 1 is 0xc0)"},      /* overlong '/' */
        {"a\xed\xa0\x80z", "params_add: name is not valid UTF-8 (byte 1 is 0xed)"}, /* a surrogate */
        {"\xf4\x90\x80\x80", "params_add: name is not valid UTF-8 (byte 0 is 0xf4)"}, /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(ag_params_add(ps, bad[i].name, 1, (size_t[]){2}, 0, &t), AG_ERR_ARG);
        ck_assert_ptr_null(t);
        ck_assert_int_eq(ag_params_status(ps), AG_ERR_ARG);
        ck_assert_str_eq(ag_params_errmsg(ps), bad[i].want);
        ck_assert_uint_eq(ag_params_count(ps), 0);
    }
    /* UTF-8 names, "__metadata__" as part of a name, control characters: fine, and they save */
    const char *good[] = {"b\xc3\xa9", "\xe2\x9c\x93.W", "\xf0\x9f\x98\x80", "__metadata__.W", "a\tb"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_int_eq(ag_params_add(ps, good[i], 1, (size_t[]){2}, 0, &t), AG_OK);
    ck_assert_int_eq(ag_model_save(path, ps, NULL, 0, NULL, 0, err, sizeof err), AG_OK);
    ck_assert_int_eq(ag_model_load(path, ps, NULL, 0, err, sizeof err), AG_OK);
    ck_assert_int_eq(unlink(path), 0);
    ag_params_free(ps);

    /* an MLP whose prefix makes such names fails through ag_params_add, with its reason */
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_mlp *m = (ag_mlp *)1;
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "4-3", .prefix = "\xff"}, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(err, "mlp: layer 1 (4 -> 3): params_add: name is not valid UTF-8 (byte 0 is 0xff)");
    ck_assert_uint_eq(ag_params_count(ps), 0);
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "4-3", .prefix = "__metadata__"}, err, sizeof err),
                     AG_OK); /* "__metadata__1.W": a valid name */
    ag_mlp_free(m);
    ag_params_free(ps);

    /* extra buffers are named by the caller: save refuses them with the reason */
    ag_real d[2] = {1, 2};
    char longname[AG_MODEL_MAX_NAME + 2];
    memset(longname, 'n', AG_MODEL_MAX_NAME + 1);
    longname[AG_MODEL_MAX_NAME + 1] = '\0';
    const struct {
        const char *name, *want;
    } ex[] = {
        {"__metadata__", "tensor 0 has an invalid name: __metadata__ is reserved (the metadata is stored under it)"},
        {"\xff\xfe", "tensor 0 has an invalid name: it is not valid UTF-8"},
        {NULL, "tensor 0 has an invalid name: it is NULL"},
        {"", "tensor 0 has an invalid name: it is empty"},
        {longname, "tensor 0 has an invalid name: it is longer than 1024 bytes"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        ag_named_buf b = {ex[i].name, d, 2};
        assert_save_refused(ag_model_save(path, NULL, &b, 1, NULL, 0, err, sizeof err), ex[i].want);
    }
    longname[AG_MODEL_MAX_NAME] = '\0'; /* the limit itself is fine */
    ck_assert_int_eq(ag_model_save(path, NULL, (ag_named_buf[]){{longname, d, 2}}, 1, NULL, 0, err, sizeof err),
                     AG_OK);
}
END_TEST

/* Every refused metadata entry said "invalid key or value (keys are non-empty UTF-8 other than
 * crc32)": each reason has its own message now. */
START_TEST(save_metadata_messages) {
    static char big[(64 << 10) + 2], longkey[AG_MODEL_MAX_NAME + 2];
    memset(big, 'v', (64 << 10) + 1);
    memset(longkey, 'k', AG_MODEL_MAX_NAME + 1);
    static const struct {
        const char *key, *value, *want;
    } cases[] = {
        {"note", big, "metadata entry 1: the value of note is longer than 65536 bytes"},
        {"note", NULL, "metadata entry 1: the value of note is NULL"},
        {"note", "\xff", "metadata entry 1: the value of note is not valid UTF-8"},
        {"note", "caf\xc3", "metadata entry 1: the value of note is not valid UTF-8"},
        {NULL, "v", "metadata entry 1: the key is NULL"},
        {"", "v", "metadata entry 1: the key is empty"},
        {longkey, "v", "metadata entry 1: the key is longer than 1024 bytes"},
        {"\xc3\x28", "v", "metadata entry 1: the key is not valid UTF-8"},
        {"crc32", "0x00000000", "metadata entry 1: the key crc32 is reserved (the CRC of the data is added under it)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_kv kv[2] = {{"arch", "3-4-2"}, {cases[i].key, cases[i].value}};
        assert_save_refused(ag_model_save(path, NULL, NULL, 0, kv, 2, err, sizeof err), cases[i].want);
    }
    /* the limits themselves save */
    big[64 << 10] = '\0';
    longkey[AG_MODEL_MAX_NAME] = '\0';
    ag_kv kv[2] = {{"note", big}, {longkey, "v"}};
    ck_assert_int_eq(ag_model_save(path, NULL, NULL, 0, kv, 2, err, sizeof err), AG_OK);
    ag_model_file *mf;
    ck_assert_int_eq(ag_model_open(path, &mf, err, sizeof err), AG_OK);
    ck_assert_str_eq(ag_model_meta(mf, "note"), big);
    ck_assert_str_eq(ag_model_meta(mf, longkey), "v");
    ag_model_close(mf);
}
END_TEST

/* parse_owned sorted the tensor table with qsort, and glibc's qsort mallocs a merge buffer (for
 * more than 128 tensors here) behind the allocator hooks' back. This qsort replaces libc's in this
 * program: the library must not call it. */
static size_t g_qsort_calls;
void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
    g_qsort_calls++;
    unsigned char *a = base, tmp[256]; /* insertion sort, for anyone else in the program */
    ck_assert_uint_le(size, sizeof tmp);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cmp(a + (j - 1) * size, a + j * size) > 0; j--) {
            memcpy(tmp, a + j * size, size);
            memcpy(a + j * size, a + (j - 1) * size, size);
            memcpy(a + (j - 1) * size, tmp, size);
        }
}

/* Parse a file of n one-byte U8 tensors "t<i>", tensor i holding data byte (i * 7919) % n (not in
 * file order). Tensor dup_name_of is named "t0" too; tensor same_begin_of holds tensor 0's byte
 * (SIZE_MAX: neither). */
static ag_status parse_many(size_t n, size_t dup_name_of, size_t same_begin_of, ag_model_file **mf) {
    size_t cap = 64 + n * 80;
    char *h = malloc(cap);
    ck_assert_ptr_nonnull(h);
    size_t k = (size_t)snprintf(h, cap, "{");
    for (size_t i = 0; i < n; i++) {
        size_t b = (i * 7919) % n; /* a permutation: 7919 is prime and does not divide n */
        size_t nm = i == dup_name_of ? 0 : i;
        if (i == same_begin_of) b = 0; /* tensor 0's byte */
        k += (size_t)snprintf(h + k, cap - k, "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                              i ? "," : "", nm, b, b + 1);
    }
    k += (size_t)snprintf(h + k, cap - k, "}");
    unsigned char *buf = malloc(8 + k + n);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)k >> (8 * i));
    memcpy(buf + 8, h, k);
    for (size_t i = 0; i < n; i++) buf[8 + k + i] = (unsigned char)i;
    ag_status st = ag_model_parse(buf, 8 + k + n, "many", mf, err, sizeof err);
    free(h);
    free(buf);
    return st;
}

START_TEST(parse_sorts_in_place) {
    ag_test_alloc_install();
    ag_model_file *mf;
    g_qsort_calls = 0;
    ck_assert_int_eq(parse_many(300, SIZE_MAX, SIZE_MAX, &mf), AG_OK);
    ck_assert_uint_eq(ag_model_tensor_count(mf), 300);
    for (size_t i = 0; i < 300; i++) {
        const ag_model_tensor *t = ag_model_tensor_at(mf, i); /* file order is kept */
        char nm[16];
        snprintf(nm, sizeof nm, "t%zu", i);
        ck_assert_str_eq(t->name, nm);
        ck_assert_uint_eq(t->begin, (i * 7919) % 300);
    }
    ag_model_close(mf);
    /* a repeated name and an overlap among many are found; of two tensors with the same data,
     * the later in the file is named */
    ck_assert_int_eq(parse_many(300, 250, SIZE_MAX, &mf), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "load: many: tensor t0 appears twice");
    ck_assert_int_eq(parse_many(300, SIZE_MAX, 123, &mf), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "load: many: tensor t123: data_offsets begin at 0, overlapping data before 1");
    ck_assert_int_eq(parse_many(1000, SIZE_MAX, SIZE_MAX, &mf), AG_OK);
    ag_model_close(mf);
    ck_assert_uint_eq(g_qsort_calls, 0);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

/* AG_IO_ERRMSG_SIZE (512) cut "tensor name <1024 bytes> is used twice" at 511 bytes although the
 * path was short: every message now fits whole when its path is at most 512 bytes. */
START_TEST(messages_hold_whole_names) {
    static char nm[AG_MODEL_MAX_NAME + 1], want[2 * AG_IO_ERRMSG_SIZE], mpath[513];
    memset(nm, 'n', AG_MODEL_MAX_NAME);
    ag_real d[2] = {0};
    /* save: a repeated name or key */
    snprintf(want, sizeof want, "tensor name %s is used twice", nm);
    assert_save_refused(ag_model_save(path, NULL, (ag_named_buf[]){{nm, d, 1}, {nm, d, 1}}, 2, NULL, 0, err,
                                      sizeof err),
                        want);
    snprintf(want, sizeof want, "metadata key %s is given twice", nm);
    assert_save_refused(ag_model_save(path, NULL, NULL, 0, (ag_kv[]){{nm, "1"}, {nm, "2"}}, 2, err, sizeof err), want);
    /* load: the longest messages, with a 512-byte path. A tensor of the longest name and shape
     * (a zero dimension lets the 7 others be 20 digits) meets a buffer of another dtype or length. */
    memset(mpath, 'p', 512);
    mpath[0] = '/';
    char shape[200], hdr[4096], s20[24];
    snprintf(s20, sizeof s20, "%zu", (size_t)SIZE_MAX);
    snprintf(shape, sizeof shape, "0x%s", s20);
    for (int i = 0; i < 6; i++) strcat(strcat(shape, "x"), s20);
    ag_named_buf big = {nm, d, SIZE_MAX}; /* the lengths differ: it is never read */
    ag_model_file *mf;
    const char *dtypes[] = {"F8_E4M3", DT};
    for (int i = 0; i < 2; i++) {
        snprintf(hdr, sizeof hdr,
                 "{\"%s\":{\"dtype\":\"%s\",\"shape\":[0,%s,%s,%s,%s,%s,%s,%s],\"data_offsets\":[0,0]}}", nm,
                 dtypes[i], s20, s20, s20, s20, s20, s20, s20);
        ck_assert_int_eq(parse_text_as(mpath, hdr, 0, &mf), AG_OK);
        ck_assert_int_eq(ag_model_read(mf, NULL, &big, 1, err, sizeof err), i ? AG_ERR_SHAPE : AG_ERR_FORMAT);
        if (i)
            snprintf(want, sizeof want, "load: %s: %s is %s in the file but %s in the model", mpath, nm, shape, s20);
        else
            snprintf(want, sizeof want, "load: %s: %s is F8_E4M3 in the file but this build stores " DT
                     " (" AG_REAL_NAME ")", mpath, nm);
        ck_assert_str_eq(err, want);
        ag_model_close(mf);
    }
    /* a header message naming the longest key */
    snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"%s\":\"1\",\"%s\":\"2\"}}", nm, nm);
    ck_assert_int_eq(parse_text_as(mpath, hdr, 0, &mf), AG_ERR_FORMAT);
    snprintf(want, sizeof want, "load: %s: malformed JSON header at byte %zu: metadata key %s repeated", mpath,
             strlen(hdr) - 2, nm);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(out_of_memory) {
    ag_test_alloc_install();
    ag_params *a = make_store(5, 4), *b = make_store(0, 4);
    ag_real m[3] = {1, 2, 3}, m2[3];
    int saved = 0, loaded = 0;
    size_t tries = 0;
    for (size_t n = 1; n < 200 && !saved; n++, tries++) {
        ag_test_alloc_fail_at(n);
        size_t live = ag_test_alloc_live();
        ag_status st = ag_model_save(path, a, (ag_named_buf[]){{"m", m, 3}}, 1, META, 3, err, sizeof err);
        ag_test_alloc_fail_at(0);
        if (st == AG_OK) saved = 1;
        else ck_assert_int_eq(st, AG_ERR_NOMEM);
        ck_assert_uint_eq(ag_test_alloc_live(), live);
        ck_assert_uint_eq(count_entries(ag_test_scratch_dir()), saved);
    }
    for (size_t n = 1; n < 200 && !loaded; n++, tries++) {
        ag_test_alloc_fail_at(n);
        size_t live = ag_test_alloc_live();
        ag_status st = ag_model_load(path, b, (ag_named_buf[]){{"m", m2, 3}}, 1, err, sizeof err);
        ag_test_alloc_fail_at(0);
        if (st == AG_OK) loaded = 1;
        else ck_assert_int_eq(st, AG_ERR_NOMEM);
        ck_assert_uint_eq(ag_test_alloc_live(), live);
    }
    ck_assert(saved && loaded);
    ck_assert_uint_gt(tries, 4);
    ag_params_free(a);
    ag_params_free(b);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

static Suite *model_io_suite(void) {
    Suite *s = suite_create("model_io");
    TCase *tc = tcase_create("model_io");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, crc32_vectors);
    tcase_add_test(tc, round_trip_bit_exact);
    tcase_add_test(tc, every_corruption_refused_or_harmless);
    tcase_add_test(tc, truncated_refused);
    tcase_add_test(tc, json_refused);
    tcase_add_test(tc, mismatch_refused_store_unchanged);
    tcase_add_test(tc, atomic_write_leaves_no_temp_files);
    tcase_add_test(tc, save_replaces_regular_files_only);
    tcase_add_test(tc, save_tensor_count_cannot_wrap);
    tcase_add_test(tc, save_meta_count_cannot_wrap);
    tcase_add_test(tc, save_data_size_cannot_wrap);
    tcase_add_test(tc, read_extra_count_refused);
    tcase_add_test(tc, save_long_file_name);
    tcase_add_test(tc, names_a_file_cannot_hold);
    tcase_add_test(tc, save_metadata_messages);
    tcase_add_test(tc, parse_sorts_in_place);
    tcase_add_test(tc, messages_hold_whole_names);
    tcase_add_test(tc, out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(model_io_suite)

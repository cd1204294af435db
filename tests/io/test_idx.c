/*
 * test_idx.c - the IDX reader on small files this suite writes itself (raw and gzipped): valid
 * files load; wrong magic, wrong dimensions, count mismatch, truncation, trailing data, labels
 * out of range, absurd headers and missing files are refused with their status and message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>
#include "testutil.h"

static void setup(void) { ag_test_scratch_dir(); }
static void teardown(void) { ag_test_scratch_remove(); }

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An image file of n images of r x c: pixel (i, k) = (i * 7 + k) & 255. Returns its length. */
static size_t make_images(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t r, uint32_t c) {
    put32(buf, magic);
    put32(buf + 4, n);
    put32(buf + 8, r);
    put32(buf + 12, c);
    size_t len = 16;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < (size_t)r * c; k++) buf[len++] = (unsigned char)((i * 7 + k) & 255);
    return len;
}
static size_t make_labels(unsigned char *buf, uint32_t n, int classes) {
    put32(buf, AG_IDX_LABELS);
    put32(buf + 4, n);
    for (size_t i = 0; i < n; i++) buf[8 + i] = (unsigned char)(i % (size_t)classes);
    return 8 + n;
}

static const char *write_file(const char *name, const void *data, size_t len, int gz) {
    static char path[2][512];
    static int which;
    char *p = path[which ^= 1];
    ag_test_scratch_path(p, 512 - strlen(".gz"), name); /* room for the suffix gzip adds */
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    if (gz) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "gzip -nf '%s'", p);
        ck_assert_int_eq(system(cmd), 0);
        strcat(p, ".gz");
    }
    return p;
}

static unsigned char img[16 + 64 * 9 + 64], lab[8 + 64 + 64];
static char err[AG_IO_ERRMSG_SIZE];

static void check_valid(int gz) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3), ll = make_labels(lab, 50, 10);
    const char *ip = write_file("imgs", img, il, gz);
    char ipath[512];
    strcpy(ipath, ip);
    const char *lp = write_file("labs", lab, ll, gz);
    ag_idx_options o = {.classes = 10, .rows = 3, .cols = 3};
    ag_dataset ds;
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, lp, &o, err, sizeof err), AG_OK);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(ds.n, 50);
    ck_assert_uint_eq(ds.rows, 3);
    ck_assert_uint_eq(ds.cols, 3);
    ck_assert_int_eq(ds.classes, 10);
    ck_assert_int_eq(memcmp(ds.images, img + 16, 50 * 9), 0);
    ck_assert_int_eq(memcmp(ds.labels, lab + 8, 50), 0);

    /* a batch by index list: bytes / 255 and labels, one-hot */
    uint32_t idx[3] = {4, 0, 49};
    ag_real x[27], oh[30];
    int32_t y[3];
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 3, x, y, oh), AG_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(y[i], (int)(idx[i] % 10));
        for (int k = 0; k < 9; k++)
            ck_assert(x[i * 9 + k] == (ag_real)(((idx[i] * 7 + (unsigned)k) & 255) / 255.0));
        for (int c = 0; c < 10; c++) ck_assert(oh[i * 10 + c] == (c == y[i] ? 1 : 0));
    }
    uint32_t bad = 50;
    ck_assert_int_eq(ag_dataset_batch(&ds, &bad, 1, x, y, NULL), AG_ERR_ARG);

    /* limit keeps the first examples */
    ag_dataset_free(&ds);
    o.limit = 20;
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, lp, &o, err, sizeof err), AG_OK);
    ck_assert_uint_eq(ds.n, 20);
    ag_dataset_free(&ds);
    ck_assert_ptr_null(ds.images);
}

START_TEST(valid_raw) { check_valid(0); }
END_TEST
START_TEST(valid_gz) { check_valid(1); }
END_TEST

/* Load one image file against a good label file; expect st and a message containing want. */
static void expect_images(const void *data, size_t len, int gz, ag_status st, const char *want) {
    size_t ll = make_labels(lab, 50, 10);
    char lpath[512];
    strcpy(lpath, write_file("labs", lab, ll, 0));
    const char *ip = write_file("imgs", data, len, gz);
    ag_idx_options o = {.classes = 10, .rows = 3, .cols = 3};
    ag_dataset ds;
    ag_status got = ag_dataset_load(&ds, ip, lpath, &o, err, sizeof err);
    if (got != st || !strstr(err, want))
        ck_abort_msg("gz=%d: status %d (%s) want %d, message \"%s\" should contain \"%s\"", gz, got,
                     ag_status_str(got), st, err, want);
    ck_assert_ptr_null(ds.images);
    ck_assert_uint_eq(ds.n, 0);
    /* the message names the file */
    ck_assert_ptr_nonnull(strstr(err, ip));
    /* the in-memory parser agrees on raw data */
    if (!gz) {
        got = ag_dataset_parse(&ds, data, len, lab, ll, &o, err, sizeof err);
        ck_assert_int_eq(got, st);
        ck_assert_ptr_nonnull(strstr(err, want));
    }
}

/* every byte value converts to (ag_real)(v / 255.0), the correctly rounded quotient */
START_TEST(batch_bytes_are_exact_quotients) {
    uint8_t pix[256], lb[1] = {3};
    for (int v = 0; v < 256; v++) pix[v] = (uint8_t)v;
    ag_dataset ds = {.n = 1, .rows = 16, .cols = 16, .classes = 10, .images = pix, .labels = lb};
    ag_real x[256];
    uint32_t idx = 0;
    ck_assert_int_eq(ag_dataset_batch(&ds, &idx, 1, x, NULL, NULL), AG_OK);
    for (int v = 0; v < 256; v++) ck_assert_msg(x[v] == (ag_real)(v / 255.0), "byte %d", v);
    ck_assert(x[0] == 0 && x[255] == 1);
}
END_TEST

START_TEST(refusals) {
    int gz = _i;
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    unsigned char bad[sizeof img];

    memcpy(bad, img, il);
    put32(bad, 0x00000804);
    expect_images(bad, il, gz, AG_ERR_FORMAT, "magic 0x00000804");
    memcpy(bad, img, il);
    put32(bad, 0x12345678);
    expect_images(bad, il, gz, AG_ERR_FORMAT, "not an IDX file");
    /* a label file given as images */
    size_t ll = make_labels(bad, 50, 10);
    expect_images(bad, ll, gz, AG_ERR_FORMAT, "label file");
    /* dimensions */
    il = make_images(bad, AG_IDX_IMAGES, 50, 9, 1);
    expect_images(bad, il, gz, AG_ERR_FORMAT, "images are 9x1 but 3x3 were expected");
    il = make_images(bad, AG_IDX_IMAGES, 1, 0, 3);
    expect_images(bad, il, gz, AG_ERR_FORMAT, "image size 0x3");
    /* count mismatch with the labels */
    il = make_images(bad, AG_IDX_IMAGES, 49, 3, 3);
    expect_images(bad, il, gz, AG_ERR_FORMAT, "has 49 images but");
    /* truncated data and header */
    il = make_images(bad, AG_IDX_IMAGES, 50, 3, 3);
    expect_images(bad, il - 10, gz, AG_ERR_FORMAT,
                  "truncated: header says 50 images of 3x3 but file has 440 bytes of pixels");
    expect_images(bad, 12, gz, AG_ERR_FORMAT, "truncated: the images header is 16 bytes but file has 12");
    expect_images(bad, 3, gz, AG_ERR_FORMAT, "truncated: 3 bytes");
    /* trailing garbage */
    il = make_images(bad, AG_IDX_IMAGES, 50, 3, 3);
    memset(bad + il, 0xAB, 5);
    expect_images(bad, il + 5, gz, AG_ERR_FORMAT, "5 bytes of trailing data");
    /* absurd header: 4 billion images of 4096x4096 in a tiny file, refused before any allocation */
    put32(bad + 4, 0xFFFFFFFFu);
    put32(bad + 8, 4096);
    put32(bad + 12, 4096);
    const char *ap = write_file("absurd", bad, 64, gz);
    ag_idx f;
    ck_assert_int_eq(ag_idx_read(ap, NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "header says 4294967295 images of 4096x4096, more than the cap"), "%s", err);
    ck_assert_ptr_null(f.data);
    ck_assert_int_eq(ag_idx_parse(bad, 64, "absurd", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "more than the cap"));
    /* a smaller cap given by the caller */
    il = make_images(bad, AG_IDX_IMAGES, 50, 3, 3);
    ag_idx_options small = {.max_bytes = 100};
    ck_assert_int_eq(ag_idx_parse(bad, il, "x", &small, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "more than the cap of 100 bytes"));
    put32(bad + 8, 5000);
    expect_images(bad, 64, gz, AG_ERR_FORMAT, "each side must be 1..4096");
}
END_TEST

START_TEST(labels_refused) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    char ipath[512];
    strcpy(ipath, write_file("imgs", img, il, 0));
    size_t ll = make_labels(lab, 50, 10);
    lab[8 + 17] = 12;
    const char *lp = write_file("labs", lab, ll, 1);
    ag_idx_options o = {.classes = 10};
    ag_dataset ds;
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, lp, &o, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "label 12 at index 17 is outside 0..9"));
    /* the class count is a parameter */
    o.classes = 13;
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, lp, &o, err, sizeof err), AG_OK);
    ck_assert_int_eq(ds.classes, 13);
    ag_dataset_free(&ds);
    /* image file given as labels */
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, ipath, &o, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "label file (magic 0x00000801) was expected"));
    /* truncated label file */
    make_labels(lab, 50, 10);
    lp = write_file("labs", lab, 40, 0);
    ck_assert_int_eq(ag_dataset_load(&ds, ipath, lp, &o, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "truncated: header says 50 labels but file has 32"));
}
END_TEST

START_TEST(missing_and_unreadable) {
    ag_dataset ds;
    char p[600];
    ag_test_scratch_path(p, sizeof p, "nope-idx3-ubyte.gz");
    ck_assert_int_eq(ag_dataset_load(&ds, p, p, NULL, err, sizeof err), AG_ERR_IO);
    char want[700];
    snprintf(want, sizeof want, "idx: %s: no such file", p);
    ck_assert_str_eq(err, want);
    const char *dir = ag_test_scratch_dir();
    ck_assert_int_eq(ag_dataset_load(&ds, dir, dir, NULL, err, sizeof err), AG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "is a directory"));
    /* NULL arguments, no crash; err may be NULL */
    ck_assert_int_eq(ag_dataset_load(NULL, p, p, NULL, NULL, 0), AG_ERR_ARG);
    ck_assert_int_eq(ag_dataset_load(&ds, NULL, p, NULL, err, sizeof err), AG_ERR_ARG);
    ag_idx f;
    ck_assert_int_eq(ag_idx_read(NULL, NULL, &f, err, sizeof err), AG_ERR_ARG);
    ck_assert_int_eq(ag_idx_parse(NULL, 5, NULL, NULL, &f, err, sizeof err), AG_ERR_ARG);
    /* a tiny error buffer truncates, never overflows */
    char small[8];
    ck_assert_int_eq(ag_idx_read(p, NULL, &f, small, sizeof small), AG_ERR_IO);
    ck_assert_uint_eq(strlen(small), 7);
}
END_TEST

START_TEST(corrupt_gzip) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    const char *gp = write_file("imgs", img, il, 1);
    /* cut the compressed stream in half */
    FILE *f = fopen(gp, "rb");
    unsigned char gzbuf[4096];
    size_t gl = fread(gzbuf, 1, sizeof gzbuf, f);
    fclose(f);
    char cut[600];
    ag_test_scratch_path(cut, sizeof cut, "cut.gz");
    f = fopen(cut, "wb");
    fwrite(gzbuf, 1, gl / 2, f);
    fclose(f);
    ag_idx x;
    ag_status st = ag_idx_read(cut, NULL, &x, err, sizeof err);
    ck_assert_int_eq(st, AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "truncated") || strstr(err, "corrupt"), "%s", err);
    /* a gzip header followed by garbage */
    memset(gzbuf + 10, 0x5A, 100);
    f = fopen(cut, "wb");
    fwrite(gzbuf, 1, 110, f);
    fclose(f);
    ck_assert_int_eq(ag_idx_read(cut, NULL, &x, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_ptr_null(x.data);
    /* in memory too: the garbage decodes to bytes that are no IDX header, and the message says so */
    ck_assert_int_eq(ag_idx_parse(gzbuf, 110, "g", NULL, &x, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_msg(strstr(err, "not an IDX file") && strstr(err, "(decompressed)"), "%s", err);
    ck_assert_ptr_null(x.data);
}
END_TEST

START_TEST(shuffle_depends_on_seed_and_epoch) {
    enum { N = 1000 };
    static uint32_t a[N], b[N], c[N];
    ag_dataset_shuffle(a, N, 42, 3);
    ag_dataset_shuffle(b, N, 42, 3);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ag_dataset_shuffle(c, N, 42, 4);
    ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
    ag_dataset_shuffle(c, N, 43, 3);
    ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
    /* a permutation */
    static unsigned char seen[N];
    for (int i = 0; i < N; i++) {
        ck_assert_uint_lt(a[i], N);
        ck_assert(!seen[a[i]]);
        seen[a[i]] = 1;
    }
}
END_TEST

START_TEST(out_of_memory) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3), ll = make_labels(lab, 50, 10);
    char ipath[512];
    strcpy(ipath, write_file("imgs", img, il, 1));
    const char *lp = write_file("labs", lab, ll, 0);
    ag_test_alloc_install();
    int ok = 0;
    for (size_t n = 1; n < 50 && !ok; n++) {
        ag_test_alloc_fail_at(n);
        ag_dataset ds;
        ag_status st = ag_dataset_load(&ds, ipath, lp, NULL, err, sizeof err);
        if (st == AG_OK) {
            ok = 1;
            ag_dataset_free(&ds);
        } else {
            ck_assert_int_eq(st, AG_ERR_NOMEM);
            ck_assert_ptr_nonnull(strstr(err, "out of memory"));
        }
        ck_assert_uint_eq(ag_test_alloc_live(), 0);
    }
    ag_test_alloc_uninstall();
    ck_assert(ok);
}
END_TEST

/* With only one side required (the other 0, any), a mismatch said "images are 2x2 but 3x0 were
 * expected": it names the side that was required. */
START_TEST(one_side_required) {
    size_t il = make_images(img, AG_IDX_IMAGES, 1, 2, 2);
    static const struct {
        size_t rows, cols;
        const char *want;
    } cases[] = {
        {3, 0, "idx: img: images are 2x2 but 3 rows were expected"},
        {0, 3, "idx: img: images are 2x2 but 3 columns were expected"},
        {1, 0, "idx: img: images are 2x2 but 1 row was expected"},
        {0, 1, "idx: img: images are 2x2 but 1 column was expected"},
        {3, 2, "idx: img: images are 2x2 but 3x2 were expected"},
        {2, 5, "idx: img: images are 2x2 but 2x5 were expected"},
    };
    ag_idx f;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_idx_options o = {.rows = cases[i].rows, .cols = cases[i].cols};
        ck_assert_int_eq(ag_idx_parse(img, il, "img", &o, &f, err, sizeof err), AG_ERR_FORMAT);
        ck_assert_str_eq(err, cases[i].want);
        ck_assert_ptr_null(f.data);
    }
    ag_idx_options o = {.rows = 2};
    ck_assert_int_eq(ag_idx_parse(img, il, "img", &o, &f, err, sizeof err), AG_OK);
    ag_idx_free(&f);
    o = (ag_idx_options){.cols = 2};
    ck_assert_int_eq(ag_idx_parse(img, il, "img", &o, &f, err, sizeof err), AG_OK);
    ag_idx_free(&f);
}
END_TEST

/* A damaged stream can decode to more bytes than the header announces before its CRC is checked
 * (the CRC comes last): the error is the damage, not "trailing data". Here the stream holds 2 extra
 * bytes after the labels and its CRC is wrong. */
START_TEST(gzip_crc_error_is_corruption) {
    size_t ll = make_labels(lab, 50, 10);
    lab[ll] = 1;
    lab[ll + 1] = 2;
    char gp[600];
    strcpy(gp, write_file("labs", lab, ll + 2, 1));
    FILE *fp = fopen(gp, "r+b");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, -8, SEEK_END), 0); /* the trailer: CRC-32, then the length */
    int c = fgetc(fp);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(fp, -8, SEEK_END), 0);
    fputc(c ^ 0xff, fp);
    fclose(fp);
    ag_idx f;
    ck_assert_int_eq(ag_idx_read(gp, NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    char want[700];
    snprintf(want, sizeof want, "idx: %s: corrupt gzip data: CRC-32 mismatch", gp);
    ck_assert_str_eq(err, want);
}
END_TEST

/* A gzip file that decodes to far more than its header announces: decoding stops 1 MiB past the
 * announced data (the buffer never grows beyond that), and the message says "at least"; the same
 * bytes held in memory give the same answer. */
START_TEST(gzip_megabytes_past_the_data) {
    size_t ll = make_labels(lab, 50, 10), n = ll + ((size_t)3 << 20);
    unsigned char *big = calloc(1, n);
    ck_assert_ptr_nonnull(big);
    memcpy(big, lab, ll);
    char gp[600];
    strcpy(gp, write_file("labs", big, n, 1));
    free(big);
    ag_idx f;
    ck_assert_int_eq(ag_idx_read(gp, NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    char want[700];
    snprintf(want, sizeof want, "idx: %s: at least 1048576 bytes of trailing data (decompressed) after the 50 labels", gp);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(f.data);
    FILE *fp = fopen(gp, "rb");
    ck_assert_ptr_nonnull(fp);
    static unsigned char gz[1 << 16];
    size_t gl = fread(gz, 1, sizeof gz, fp);
    fclose(fp);
    ck_assert_uint_lt(gl, sizeof gz); /* zeros compress ~1000:1 */
    ck_assert_int_eq(ag_idx_parse(gz, gl, "m", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: m: at least 1048576 bytes of trailing data (decompressed) after the 50 labels");
}
END_TEST

/* Read `path` through a FIFO written by a child process: a file that cannot seek and whose size is
 * unknown. The status of ag_idx_read; *f as it leaves it. */
static ag_status read_through_fifo(const char *path, size_t write_len, ag_idx *f) {
    char fifo[600];
    ag_test_scratch_path(fifo, sizeof fifo, "fifo");
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* the writer: the first write_len bytes of path */
        FILE *in = fopen(path, "rb"), *out = fopen(fifo, "wb");
        if (!in || !out) _exit(1);
        int c;
        for (size_t i = 0; i < write_len && (c = fgetc(in)) != EOF; i++) fputc(c, out);
        fclose(out);
        _exit(0);
    }
    ag_status st = ag_idx_read(fifo, NULL, f, err, sizeof err);
    int ws;
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    unlink(fifo);
    return st;
}

START_TEST(read_from_a_pipe) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    for (int gz = 0; gz < 2; gz++) {
        const char *p = write_file("imgs", img, il, gz);
        ag_idx f;
        ck_assert_msg(read_through_fifo(p, (size_t)-1, &f) == AG_OK, "gz=%d: %s", gz, err);
        ck_assert_uint_eq(f.count, 50);
        ck_assert_int_eq(memcmp(f.data, img + 16, 50 * 9), 0);
        ag_idx_free(&f);
    }
    /* raw and short: the size is not known in advance, the reader finds the end */
    const char *p = write_file("imgs", img, il, 0);
    ag_idx f;
    ck_assert_int_eq(read_through_fifo(p, il - 10, &f), AG_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "truncated: header says 50 images of 3x3 but file has 440 bytes of pixels"));
    ck_assert_ptr_null(f.data);
}
END_TEST

START_TEST(gzip_trailing_data_refused) {
    size_t il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    char gp[600];
    strcpy(gp, write_file("imgs", img, il, 1));
    ag_idx f;
    ck_assert_int_eq(ag_idx_read(gp, NULL, &f, err, sizeof err), AG_OK); /* as written */
    ag_idx_free(&f);
    /* bytes after the gzip stream are refused, as trailing bytes after raw data are (zero padding,
     * which gzip ignores, is accepted: tests/io/test_gunzip.c) */
    static const struct {
        const char *tail;
        size_t len;
    } tails[] = {{"garbage!", 8}, {"ab", 2}, {"a longer text after the stream\n", 31}};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        char tp[600], cmd[1300];
        ag_test_scratch_path(tp, sizeof tp, "t.gz");
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", gp, tp);
        ck_assert_int_eq(system(cmd), 0);
        FILE *fp = fopen(tp, "ab");
        ck_assert_ptr_nonnull(fp);
        ck_assert_uint_eq(fwrite(tails[i].tail, 1, tails[i].len, fp), tails[i].len);
        fclose(fp);
        f.data = (uint8_t *)1;
        ck_assert_int_eq(ag_idx_read(tp, NULL, &f, err, sizeof err), AG_ERR_FORMAT);
        char want[700];
        snprintf(want, sizeof want, "idx: %s: trailing data after the gzip stream", tp);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(f.data);
        /* and through ag_dataset_load */
        size_t ll = make_labels(lab, 50, 10);
        char lp[600];
        strcpy(lp, write_file("labs", lab, ll, 0));
        ag_dataset ds;
        ck_assert_int_eq(ag_dataset_load(&ds, tp, lp, NULL, err, sizeof err), AG_ERR_FORMAT);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(ds.images);
    }
}
END_TEST

/* n == 0 with NULL idx or x returned AG_OK although NULL ds, idx or x is AG_ERR_ARG. */
START_TEST(batch_null_arguments) {
    uint8_t pix[4] = {0, 1, 2, 255}, lb[1] = {1};
    ag_dataset ds = {.n = 1, .rows = 2, .cols = 2, .classes = 2, .images = pix, .labels = lb};
    uint32_t idx[1] = {0};
    ag_real x[4] = {9, 9, 9, 9}, oh[2] = {9, 9};
    int32_t y[1] = {9};
    for (size_t n = 0; n < 2; n++) {
        ck_assert_int_eq(ag_dataset_batch(&ds, NULL, n, x, y, oh), AG_ERR_ARG);
        ck_assert_int_eq(ag_dataset_batch(&ds, idx, n, NULL, y, oh), AG_ERR_ARG);
        ck_assert_int_eq(ag_dataset_batch(NULL, idx, n, x, y, oh), AG_ERR_ARG);
        ck_assert_int_eq(ag_dataset_batch(&ds, NULL, n, NULL, NULL, NULL), AG_ERR_ARG);
    }
    ck_assert(x[0] == 9 && y[0] == 9 && oh[0] == 9); /* nothing written */
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 0, x, NULL, NULL), AG_OK); /* an empty batch */
    ck_assert(x[0] == 9);
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 1, x, y, oh), AG_OK);
    ck_assert(x[3] == 1 && y[0] == 1 && oh[0] == 0 && oh[1] == 1);
}
END_TEST

/* Pixel statistics against hand values: bytes 0, 51, 102, 255 are 0, 0.2, 0.4, 1 after / 255, so the
 * mean is 1.6 / 4 = 0.4 and the variance (0 + 0.04 + 0.16 + 1) / 4 - 0.16 = 0.14. Standardised, the
 * batch holds (v - 0.4) / sqrt(0.14); byte 102 is exactly 0, as v / 255 and the mean round alike. */
START_TEST(standardize_with_hand_statistics) {
    uint8_t pix[8] = {0, 51, 102, 255, 255, 102, 51, 0}, lb[2] = {0, 1};
    ag_dataset ds = {.n = 2, .rows = 2, .cols = 2, .classes = 2, .images = pix, .labels = lb};
    double mean = -1, sd = -1;
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, &mean, &sd), AG_OK);
    ck_assert_double_eq_tol(mean, 0.4, 1e-15);
    ck_assert_double_eq_tol(sd, sqrt(0.14), 1e-15);
    ck_assert_int_eq(ag_dataset_standardize(&ds, mean, sd), AG_OK);
    uint32_t idx[2] = {1, 0};
    ag_real x[8];
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 2, x, NULL, NULL), AG_OK);
    const double want[8] = {1.6035674514745464, 0, -0.53452248382484879, -1.0690449676496976,
                            -1.0690449676496976, -0.53452248382484879, 0, 1.6035674514745464};
    for (int i = 0; i < 8; i++) ck_assert_double_eq_tol((double)x[i], want[i], 4e-7);
    ck_assert(x[1] == 0 && x[6] == 0);
    /* the statistics ignore the scaling in use */
    double m2, s2;
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, &m2, &s2), AG_OK);
    ck_assert(m2 == mean && s2 == sd);
    /* std 0 with mean 0 is the plain byte / 255 again, bit for bit */
    ck_assert_int_eq(ag_dataset_standardize(&ds, 0, 0), AG_OK);
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 2, x, NULL, NULL), AG_OK);
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 4; j++) ck_assert(x[r * 4 + j] == (ag_real)pix[idx[r] * 4 + j] / (ag_real)255);
}
END_TEST

/* A standardised training set has mean 0 and std 1 over all its pixels (rows of 37, so every vector
 * width leaves a tail); a constant set has std 0; the refusals leave the set as it was. */
START_TEST(standardize_properties_and_refusals) {
    enum { N = 40, F = 37 };
    static uint8_t pix[N * F];
    uint8_t lb[N] = {0};
    uint64_t r = 12345;
    for (size_t i = 0; i < sizeof pix; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        pix[i] = (uint8_t)(r >> 56) & 0x7f; /* skewed: 0..127 */
    }
    ag_dataset ds = {.n = N, .rows = 1, .cols = F, .classes = 1, .images = pix, .labels = lb};
    double mean, sd;
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, &mean, &sd), AG_OK);
    ck_assert_int_eq(ag_dataset_standardize(&ds, mean, sd), AG_OK);
    uint32_t idx[N];
    for (uint32_t i = 0; i < N; i++) idx[i] = i;
    static ag_real x[N * F];
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, N, x, NULL, NULL), AG_OK);
    double s = 0, q = 0;
    for (size_t i = 0; i < N * F; i++) s += (double)x[i], q += (double)x[i] * (double)x[i];
    ck_assert_double_eq_tol(s / (N * F), 0, 1e-6);
    ck_assert_double_eq_tol(q / (N * F), 1, 1e-5);

    /* refusals: NULL arguments, no pixels, bad numbers; ds keeps its scaling */
    ck_assert_int_eq(ag_dataset_pixel_stats(NULL, &mean, &sd), AG_ERR_ARG);
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, NULL, &sd), AG_ERR_ARG);
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, &mean, NULL), AG_ERR_ARG);
    ag_dataset empty = {.rows = 1, .cols = F};
    ck_assert_int_eq(ag_dataset_pixel_stats(&empty, &mean, &sd), AG_ERR_ARG);
    const double bad[][2] = {{NAN, 1}, {INFINITY, 1}, {0, -1}, {0, NAN}, {0, INFINITY}, {0.5, 0}, {0, -1e-300}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(ag_dataset_standardize(&ds, bad[i][0], bad[i][1]), AG_ERR_ARG);
        ck_assert(ds.mean == mean && ds.std == sd);
    }
    ck_assert_int_eq(ag_dataset_standardize(NULL, 0, 1), AG_ERR_ARG);

    /* every pixel the same: std 0, mean that value */
    memset(pix, 51, sizeof pix);
    ck_assert_int_eq(ag_dataset_pixel_stats(&ds, &mean, &sd), AG_OK);
    ck_assert_double_eq_tol(mean, 0.2, 1e-15);
    ck_assert(sd == 0);
}
END_TEST

/* The header's limits, each at and past its edge: a zero column count (a 3x0 image holds no pixels,
 * so its header needs no data and would otherwise load), a column count over 4096 (refused by its
 * size, not reported as truncation), a count of 0 for labels as for images, and max_bytes as an
 * inclusive cap (50 images of 3x3 are exactly 450 bytes). */
START_TEST(header_limits_at_their_edges) {
    unsigned char b[16 + 4096];
    ag_idx f;
    size_t il = make_images(b, AG_IDX_IMAGES, 1, 3, 0);
    ck_assert_int_eq(ag_idx_parse(b, il, "h", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: h: image size 3x0 in the header is invalid (each side must be 1..4096)");
    ck_assert_ptr_null(f.data);
    il = make_images(b, AG_IDX_IMAGES, 1, 1, 4096); /* the largest side is allowed */
    ck_assert_int_eq(ag_idx_parse(b, il, "h", NULL, &f, err, sizeof err), AG_OK);
    ck_assert_uint_eq(f.cols, 4096);
    ck_assert_uint_eq(f.rows, 1);
    ag_idx_free(&f);
    put32(b + 12, 4097);
    ck_assert_int_eq(ag_idx_parse(b, il, "h", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: h: image size 1x4097 in the header is invalid (each side must be 1..4096)");
    put32(b + 12, 5000);
    ck_assert_int_eq(ag_idx_parse(b, il, "h", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: h: image size 1x5000 in the header is invalid (each side must be 1..4096)");
    /* zero counts */
    make_labels(b, 0, 10);
    ck_assert_int_eq(ag_idx_parse(b, 8, "l", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: l: header says 0 labels");
    ck_assert_ptr_null(f.data);
    make_images(b, AG_IDX_IMAGES, 0, 2, 2);
    ck_assert_int_eq(ag_idx_parse(b, 16, "i", NULL, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: i: header says 0 images");
    /* max_bytes: exactly the data size passes, one byte less refuses */
    il = make_images(img, AG_IDX_IMAGES, 50, 3, 3);
    ag_idx_options cap = {.max_bytes = 450};
    ck_assert_int_eq(ag_idx_parse(img, il, "c", &cap, &f, err, sizeof err), AG_OK);
    ck_assert_uint_eq(f.count, 50);
    ag_idx_free(&f);
    cap.max_bytes = 449;
    ck_assert_int_eq(ag_idx_parse(img, il, "c", &cap, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: c: header says 50 images of 3x3, more than the cap of 449 bytes");
}
END_TEST

/* Non-square images: rows and columns are checked each against its own side (the suites' other
 * images are square, where mixing them up goes unseen). */
START_TEST(non_square_images) {
    size_t il = make_images(img, AG_IDX_IMAGES, 2, 2, 3);
    ag_idx f;
    ag_idx_options o = {.rows = 2, .cols = 3};
    ck_assert_int_eq(ag_idx_parse(img, il, "n", &o, &f, err, sizeof err), AG_OK);
    ck_assert_uint_eq(f.rows, 2);
    ck_assert_uint_eq(f.cols, 3);
    ck_assert_uint_eq(f.count, 2);
    ck_assert_int_eq(memcmp(f.data, img + 16, 12), 0);
    ag_idx_free(&f);
    o = (ag_idx_options){.rows = 3, .cols = 2};
    ck_assert_int_eq(ag_idx_parse(img, il, "n", &o, &f, err, sizeof err), AG_ERR_FORMAT);
    ck_assert_str_eq(err, "idx: n: images are 2x3 but 3x2 were expected");
}
END_TEST

/* Without options the class count is 1 + the largest label kept, wherever that label sits (here the
 * first one), and one-hot rows are that wide. Labels {6, 1, 2, 0}: 7 classes. */
START_TEST(classes_from_largest_label) {
    size_t il = make_images(img, AG_IDX_IMAGES, 4, 1, 2);
    unsigned char lb[8 + 4];
    put32(lb, AG_IDX_LABELS);
    put32(lb + 4, 4);
    lb[8] = 6;
    lb[9] = 1;
    lb[10] = 2;
    lb[11] = 0;
    ag_dataset ds;
    ck_assert_int_eq(ag_dataset_parse(&ds, img, il, lb, sizeof lb, NULL, err, sizeof err), AG_OK);
    ck_assert_int_eq(ds.classes, 7);
    uint32_t idx[2] = {0, 3};
    ag_real x[4], oh[14];
    for (int i = 0; i < 14; i++) oh[i] = 9;
    ck_assert_int_eq(ag_dataset_batch(&ds, idx, 2, x, NULL, oh), AG_OK);
    for (int c = 0; c < 7; c++) {
        ck_assert(oh[c] == (c == 6 ? 1 : 0));
        ck_assert(oh[7 + c] == (c == 0 ? 1 : 0));
    }
    ag_dataset_free(&ds);
    /* with a limit, from the labels kept: the first 3 of {6, 1, 2, 0} without the 6 */
    lb[8] = 0, lb[11] = 6;
    ag_idx_options o = {.limit = 3};
    ck_assert_int_eq(ag_dataset_parse(&ds, img, il, lb, sizeof lb, &o, err, sizeof err), AG_OK);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_int_eq(ds.classes, 3);
    ag_dataset_free(&ds);
}
END_TEST

/* Distinct (seed, epoch) pairs give distinct orders, including neighbours along the diagonal
 * (seed + epoch equal), and every position is shuffled: over 4000 epochs of a 4-element order each
 * value lands in each position about 1000 times (binomial sd ~27; the bounds are ~5.5 sd). */
START_TEST(shuffle_pairs_distinct_and_uniform) {
    enum { N = 64 };
    static uint32_t o[16][N];
    for (uint64_t s = 0; s < 4; s++)
        for (uint64_t e = 0; e < 4; e++) ag_dataset_shuffle(o[s * 4 + e], N, 40 + s, e);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < i; j++) ck_assert_msg(memcmp(o[i], o[j], sizeof o[i]) != 0, "pairs %d and %d", i, j);
    unsigned count[4][4] = {{0}};
    uint32_t q[4];
    for (uint64_t e = 0; e < 4000; e++) {
        ag_dataset_shuffle(q, 4, 7, e);
        for (int p = 0; p < 4; p++) count[p][q[p]]++;
    }
    for (int p = 0; p < 4; p++)
        for (int v = 0; v < 4; v++)
            ck_assert_msg(count[p][v] > 850 && count[p][v] < 1150, "value %d at position %d: %u of 4000", v, p,
                          count[p][v]);
}
END_TEST

/* A file over the reader's first 4 MiB buffer: the buffer grows (4 -> 8 MiB, then the exact
 * size) and every byte arrives, raw and through gzip. 330 images of 128x128 are 5406720 bytes. */
START_TEST(read_grows_past_first_buffer) {
    enum { N = 330, S = 128 };
    size_t len = 16 + (size_t)N * S * S;
    unsigned char *big = malloc(len);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq(make_images(big, AG_IDX_IMAGES, N, S, S), len);
    for (int gz = 0; gz < 2; gz++) {
        const char *p = write_file("big", big, len, gz);
        ag_idx f;
        ck_assert_msg(ag_idx_read(p, NULL, &f, err, sizeof err) == AG_OK, "gz=%d: %s", gz, err);
        ck_assert_uint_eq(f.count, N);
        ck_assert_int_eq(memcmp(f.data, big + 16, len - 16), 0);
        ag_idx_free(&f);
        /* one byte short is still truncation, past the first buffer too */
        p = write_file("big", big, len - 1, gz);
        ck_assert_int_eq(ag_idx_read(p, NULL, &f, err, sizeof err), AG_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(err, "truncated"));
        ck_assert_ptr_nonnull(strstr(err, "but file has 5406719 bytes of pixels"));
    }
    free(big);
}
END_TEST

static Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, valid_raw);
    tcase_add_test(tc, valid_gz);
    tcase_add_test(tc, batch_bytes_are_exact_quotients);
    tcase_add_loop_test(tc, refusals, 0, 2);
    tcase_add_test(tc, labels_refused);
    tcase_add_test(tc, missing_and_unreadable);
    tcase_add_test(tc, corrupt_gzip);
    tcase_add_test(tc, shuffle_depends_on_seed_and_epoch);
    tcase_add_test(tc, out_of_memory);
    tcase_add_test(tc, one_side_required);
    tcase_add_test(tc, gzip_trailing_data_refused);
    tcase_add_test(tc, gzip_megabytes_past_the_data);
    tcase_add_test(tc, read_from_a_pipe);
    tcase_add_test(tc, gzip_crc_error_is_corruption);
    tcase_add_test(tc, batch_null_arguments);
    tcase_add_test(tc, standardize_with_hand_statistics);
    tcase_add_test(tc, standardize_properties_and_refusals);
    tcase_add_test(tc, header_limits_at_their_edges);
    tcase_add_test(tc, non_square_images);
    tcase_add_test(tc, classes_from_largest_label);
    tcase_add_test(tc, shuffle_pairs_distinct_and_uniform);
    tcase_add_test(tc, read_grows_past_first_buffer);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(idx_suite)

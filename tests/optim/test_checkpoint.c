/*
 * test_checkpoint.c - ag_checkpoint_save / _load (optim/checkpoint.c) on a model not built with
 * ag_mlp, and the model files' header CRC (io/safetensors.c):
 *   - a custom two-layer net trained N steps, checkpointed at step k, resumed into new objects,
 *     trained to N: weights bit-identical (memcmp) to the uninterrupted run, for SGD, momentum
 *     and Adam, with the rng and the data order restored;
 *   - refusals, nothing changed: another model, another optimizer kind, a truncated file;
 *   - a byte of a metadata value flipped: refused (AG_ERR_FORMAT); a file without header CRC
 *     (the fashion_mnist checkpoint written at commit f799a42, tests/main_job/fixtures) still loads.
 */
#include <tapegrad/ag_io.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/optim.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { IN = 6, HID = 5, OUT = 3, NEX = 24, BATCH = 4, STEPS = 14, AT = 5 };

static ag_real g_x[NEX * IN];
static int32_t g_y[NEX];
static char err[AG_IO_ERRMSG_SIZE];

/* A run: the store, its optimizer, a tape, an rng for the shuffles and the current order. */
typedef struct run {
    ag_params *ps;
    ag_optim *opt;
    ag_tape *t;
    ag_tensor *W1, *b1, *W2, *b2;
    ag_rng rng;
    uint32_t order[NEX];
    uint64_t epoch, pos; /* the epoch and the batch in it */
} run;

static void data_init(void) {
    ag_rng r;
    ag_rng_seed(&r, 99);
    ag_rng_fill_normal(&r, g_x, NEX * IN, 0, 1);
    for (int i = 0; i < NEX; i++) g_y[i] = (int32_t)ag_rng_below(&r, OUT);
}

static void run_new(run *r, ag_optim_kind kind, size_t hid) {
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(ag_params_new(&r->ps), AG_OK);
    ck_assert_int_eq(ag_params_add(r->ps, "l1.W", 2, (size_t[]){hid, IN}, AG_DECAY, &r->W1), AG_OK);
    ck_assert_int_eq(ag_params_add(r->ps, "l1.b", 1, (size_t[]){hid}, 0, &r->b1), AG_OK);
    ck_assert_int_eq(ag_params_add(r->ps, "l2.W", 2, (size_t[]){OUT, hid}, AG_DECAY, &r->W2), AG_OK);
    ck_assert_int_eq(ag_params_add(r->ps, "l2.b", 1, (size_t[]){OUT}, 0, &r->b2), AG_OK);
    ag_rng init;
    ag_rng_seed(&init, 7);
    ag_rng_fill_normal(&init, r->W1->value, r->W1->size, 0, 0.5);
    ag_rng_fill_normal(&init, r->W2->value, r->W2->size, 0, 0.5);
    ag_optim_config oc = {.kind = kind, .lr = 0.05, .weight_decay = 1e-3};
    ck_assert_int_eq(ag_optim_new(&r->opt, r->ps, &oc, err, sizeof err), AG_OK);
    ck_assert_int_eq(ag_tape_new(&r->t, NULL), AG_OK);
    ag_rng_seed(&r->rng, 1234);
    for (uint32_t i = 0; i < NEX; i++) r->order[i] = i;
}

static void run_free(run *r) {
    ag_tape_free(r->t);
    ag_optim_free(r->opt);
    ag_params_free(r->ps);
}

/* One step on the next batch; a new epoch reshuffles the order with the run's rng. */
static void step(run *r) {
    if (r->pos == 0) ag_rng_shuffle(&r->rng, r->order, NEX);
    ag_real x[BATCH * IN];
    int32_t y[BATCH];
    for (int i = 0; i < BATCH; i++) {
        uint32_t e = r->order[r->pos * BATCH + (uint64_t)i];
        memcpy(x + i * IN, g_x + e * IN, sizeof(ag_real) * IN);
        y[i] = g_y[e];
    }
    ag_tape_reset(r->t);
    ag_optim_zero_grad(r->opt);
    ag_tensor *X = ag_tensor_wrap(r->t, 2, (size_t[]){BATCH, IN}, x);
    ag_tensor *h = ag_relu(r->t, ag_linear(r->t, X, r->W1, r->b1));
    ag_tensor *J = ag_cross_entropy(r->t, ag_linear(r->t, h, r->W2, r->b2), y);
    ck_assert_ptr_nonnull(J);
    ck_assert_int_eq(ag_backward(r->t, J), AG_OK);
    ck_assert_int_eq(ag_optim_step(r->opt), AG_OK);
    if (++r->pos == NEX / BATCH) r->pos = 0, r->epoch++;
}

static ag_checkpoint ck_of(run *r) {
    return (ag_checkpoint){.params = r->ps, .optim = r->opt, .rng = &r->rng, .order = r->order, .order_n = NEX,
                           .epoch = r->epoch, .position = r->pos};
}

static void path_of(char *buf, size_t size, const char *name) { ag_test_scratch_path(buf, size, name); }

static void resume_is_bit_identical(ag_optim_kind kind) {
    data_init();
    char path[512];
    path_of(path, sizeof path, "run.ckpt");
    run a, b, c;
    run_new(&a, kind, HID);
    for (int s = 0; s < STEPS; s++) step(&a);

    run_new(&b, kind, HID);
    for (int s = 0; s < AT; s++) step(&b);
    ag_checkpoint ck = ck_of(&b);
    ag_kv meta[] = {{"note", "custom two-layer net"}};
    ck.meta = meta, ck.n_meta = 1;
    ck_assert_int_eq(ag_checkpoint_save(path, &ck, err, sizeof err), AG_OK);
    ck_assert_str_eq(err, "");
    run_free(&b);

    run_new(&c, kind, HID); /* new objects, as a new process would build them */
    ag_rng_seed(&c.rng, 555);
    ag_checkpoint back = {.params = c.ps, .optim = c.opt, .rng = &c.rng, .order = c.order, .order_n = NEX};
    ck_assert_int_eq(ag_checkpoint_load(path, &back, err, sizeof err), AG_OK);
    ck_assert_uint_eq(back.epoch, AT / (NEX / BATCH));
    ck_assert_uint_eq(back.position, AT % (NEX / BATCH));
    ck_assert_uint_eq(ag_optim_steps(c.opt), AT);
    c.epoch = back.epoch, c.pos = back.position;
    for (int s = AT; s < STEPS; s++) step(&c);

    ck_assert_uint_eq(ag_params_numel(a.ps), ag_params_numel(c.ps));
    ck_assert_int_eq(memcmp(ag_params_values(a.ps), ag_params_values(c.ps), ag_params_numel(a.ps) * sizeof(ag_real)),
                     0);
    for (size_t i = 0; i < ag_optim_state_count(a.opt); i++) {
        ag_real *pa, *pc;
        size_t na, nc;
        ag_optim_state(a.opt, i, NULL, &pa, &na);
        ag_optim_state(c.opt, i, NULL, &pc, &nc);
        ck_assert_int_eq(memcmp(pa, pc, na * sizeof *pa), 0);
    }
    ck_assert_int_eq(memcmp(&a.rng, &c.rng, sizeof a.rng), 0);
    ck_assert_int_eq(memcmp(a.order, c.order, sizeof a.order), 0);

    /* the caller's metadata is in the file */
    ag_model_file *m;
    ck_assert_int_eq(ag_model_open(path, &m, err, sizeof err), AG_OK);
    ck_assert_str_eq(ag_model_meta(m, "note"), "custom two-layer net");
    uint64_t e, p, st;
    ck_assert_int_eq(ag_checkpoint_counters(m, &e, &p, &st, err, sizeof err), AG_OK);
    ck_assert_uint_eq(st, AT);
    ag_model_close(m);
    run_free(&a);
    run_free(&c);
}

START_TEST(resume_sgd) { resume_is_bit_identical(AG_OPT_SGD); }
END_TEST
START_TEST(resume_momentum) { resume_is_bit_identical(AG_OPT_MOMENTUM); }
END_TEST
START_TEST(resume_adam) { resume_is_bit_identical(AG_OPT_ADAM); }
END_TEST

/* A refused load leaves every object as it was. */
static void assert_refused(const char *path, run *r, ag_status want, const char *msg) {
    size_t n = ag_params_numel(r->ps);
    ag_real *before = malloc(n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    memcpy(before, ag_params_values(r->ps), n * sizeof *before);
    ag_rng rng = r->rng;
    uint32_t order[NEX];
    memcpy(order, r->order, sizeof order);
    uint64_t steps = ag_optim_steps(r->opt);
    ag_checkpoint back = ck_of(r);
    back.epoch = 77;
    ag_status st = ag_checkpoint_load(path, &back, err, sizeof err);
    ck_assert_msg(st == want, "status %d, want %d (%s)", (int)st, (int)want, err);
    ck_assert_msg(strstr(err, msg) != NULL, "message \"%s\" lacks \"%s\"", err, msg);
    ck_assert_int_eq(memcmp(before, ag_params_values(r->ps), n * sizeof *before), 0);
    ck_assert_int_eq(memcmp(&rng, &r->rng, sizeof rng), 0);
    ck_assert_int_eq(memcmp(order, r->order, sizeof order), 0);
    ck_assert_uint_eq(ag_optim_steps(r->opt), steps);
    ck_assert_uint_eq(back.epoch, 77);
    free(before);
}

START_TEST(wrong_model_optimizer_or_file_refused) {
    data_init();
    char path[512], cut[512];
    path_of(path, sizeof path, "good.ckpt");
    path_of(cut, sizeof cut, "cut.ckpt");
    run a;
    run_new(&a, AG_OPT_ADAM, HID);
    for (int s = 0; s < 3; s++) step(&a);
    ag_checkpoint ck = ck_of(&a);
    ck_assert_int_eq(ag_checkpoint_save(path, &ck, err, sizeof err), AG_OK);

    run other;
    run_new(&other, AG_OPT_ADAM, HID + 1); /* another model: shapes differ */
    assert_refused(path, &other, AG_ERR_SHAPE, "l1.W is 5x6 in the file but 6x6 in the model");
    run_free(&other);
    run_new(&other, AG_OPT_ADAMW, HID); /* the same buffers, another kind */
    assert_refused(path, &other, AG_ERR_ARG, "the checkpoint's optimizer is adam but this one is adamw");
    run_free(&other);
    run_new(&other, AG_OPT_MOMENTUM, HID);
    assert_refused(path, &other, AG_ERR_ARG, "optimizer is adam but this one is momentum");

    /* truncated */
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static unsigned char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(cut, "wb");
    fwrite(buf, 1, len - 5, f);
    fclose(f);
    run_free(&other);
    run_new(&other, AG_OPT_ADAM, HID);
    assert_refused(cut, &other, AG_ERR_FORMAT, "truncated");
    run_free(&other);

    /* a wrong order length, and arguments */
    run_new(&other, AG_OPT_ADAM, HID);
    ag_checkpoint small = ck_of(&other);
    small.order_n = NEX - 1;
    ck_assert_int_eq(ag_checkpoint_load(path, &small, err, sizeof err), AG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "data order has 24 entries in the file but 23 here"));
    other.order[0] = other.order[1];
    ag_checkpoint bad = ck_of(&other);
    ck_assert_int_eq(ag_checkpoint_save(path, &bad, err, sizeof err), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, "not a permutation"));
    ag_kv own[] = {{"epoch", "3"}};
    ck = ck_of(&a);
    ck.meta = own, ck.n_meta = 1;
    ck_assert_int_eq(ag_checkpoint_save(path, &ck, err, sizeof err), AG_ERR_ARG);
    ck_assert_int_eq(ag_checkpoint_save(path, NULL, err, sizeof err), AG_ERR_ARG);
    run_free(&other);
    run_free(&a);
}
END_TEST

static unsigned char *find(unsigned char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    ck_assert_uint_lt(n, cap);
    return n;
}

/* The header CRC: one byte of a metadata value flipped is refused, as a byte of the data is. */
START_TEST(header_crc_covers_metadata) {
    char path[512];
    path_of(path, sizeof path, "meta.st");
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){4}, 0, &w), AG_OK);
    ag_kv meta[] = {{"lr", "0.01"}, {"epochs", "15"}};
    ck_assert_int_eq(ag_model_save(path, ps, NULL, 0, meta, 2, err, sizeof err), AG_OK);
    static unsigned char buf[4096];
    size_t n = read_file(path, buf, sizeof buf);
    ag_model_file *m = NULL;
    ck_assert_int_eq(ag_model_parse(buf, n, "good", &m, err, sizeof err), AG_OK);
    ck_assert_uint_eq(ag_model_meta_count(m), 3); /* lr, epochs, crc32: the header CRC is not listed */
    ck_assert_ptr_null(ag_model_meta(m, "header_crc32"));
    ag_model_close(m);
    const char *targets[] = {"0.01", "15", "\"epochs\"", "[4]"};
    for (size_t k = 0; k < sizeof targets / sizeof *targets; k++) {
        unsigned char *p = find(buf, n, targets[k]);
        ck_assert_ptr_nonnull(p);
        unsigned char old = p[1];
        p[1] = p[1] == '1' ? '2' : '1'; /* "0.01" -> "0.11", "15" -> "12", ... */
        ck_assert_int_eq(ag_model_parse(buf, n, "flipped", &m, err, sizeof err), AG_ERR_FORMAT);
        ck_assert_msg(strstr(err, "CRC32 of the header") || strstr(err, "data_offsets"), "%s", err);
        ck_assert_ptr_null(m);
        p[1] = old;
    }
    ag_kv reserved[] = {{"header_crc32", "0x00000000"}};
    ck_assert_int_eq(ag_model_save(path, ps, NULL, 0, reserved, 1, err, sizeof err), AG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, "the key header_crc32 is reserved"));
    ag_params_free(ps);
}
END_TEST

/* The fashion_mnist checkpoint and model written at commit f799a42 (data CRC only, no "optim",
 * "position" or "rng") load: through ag_checkpoint_read into a 784-4-10 store with momentum. */
START_TEST(old_files_load) {
    const char *src = getenv("AG_SOURCE_DIR");
    ck_assert_ptr_nonnull(src);
    char ckp[1024], mp[1024];
    snprintf(ckp, sizeof ckp, "%s/tests/main_job/fixtures/fm_f799a42.ckpt.safetensors", src);
    snprintf(mp, sizeof mp, "%s/tests/main_job/fixtures/fm_f799a42.model.safetensors", src);
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    const size_t sizes[] = {784, 4, 10};
    for (int l = 1; l <= 2; l++) {
        char nw[16], nb[16];
        snprintf(nw, sizeof nw, "fc%d.W", l);
        snprintf(nb, sizeof nb, "fc%d.b", l);
        ag_tensor *w, *b;
        ck_assert_int_eq(ag_params_add(ps, nw, 2, (size_t[]){sizes[l], sizes[l - 1]}, AG_DECAY, &w), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, nb, 1, (size_t[]){sizes[l]}, 0, &b), AG_OK);
    }
    ag_optim *opt;
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.02}, err, sizeof err),
                     AG_OK);
    ag_checkpoint ck = {.params = ps, .optim = opt};
    ag_status st = ag_checkpoint_load(ckp, &ck, err, sizeof err);
#ifdef AG_DOUBLE
    ck_assert_int_eq(st, AG_ERR_FORMAT); /* the fixtures are F32: refused by name, nothing loaded */
    ck_assert_ptr_nonnull(strstr(err, "is F32 in the file but this build stores F64"));
#else
    ck_assert_msg(st == AG_OK, "%s", err);
    ck_assert_uint_eq(ck.epoch, 1);
    ck_assert_uint_eq(ck.position, 0);
    ck_assert_uint_eq(ag_optim_steps(opt), 3);
    ck_assert_int_eq(ag_model_load(mp, ps, NULL, 0, err, sizeof err), AG_OK);
#endif
    ag_optim_free(opt);
    ag_params_free(ps);
}
END_TEST

static Suite *checkpoint_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_test(tc, resume_sgd);
    tcase_add_test(tc, resume_momentum);
    tcase_add_test(tc, resume_adam);
    tcase_add_test(tc, wrong_model_optimizer_or_file_refused);
    tcase_add_test(tc, header_crc_covers_metadata);
    tcase_add_test(tc, old_files_load);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(checkpoint_suite)

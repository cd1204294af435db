/*
 * test_oom.c - issue 7 item 2: allocation failure in the sqlite manner.
 *
 * For each operation below, the n-th allocation through the library's hooks fails, for every
 * n = 1, 2, ... until the operation succeeds without meeting the failure. Every failure must come
 * back as AG_ERR_NOMEM (with a message where the API has one), nothing may leak (the counting
 * allocator's live blocks return to the baseline after cleanup), nothing may crash, and the
 * objects involved must still work afterwards (or be freed cleanly):
 *   a) a full training step of a small MLP from nothing: store, MLP, optimizer, tape, forward,
 *      backward, optimizer step;  a') a step on existing objects whose tape must grow;
 *   b) model save (the previous file stays intact, no temporary file is left);
 *   c) model load / open / parse + read (the store stays unchanged);
 *   d) IDX: ag_dataset_parse in memory, ag_dataset_load of raw and gzipped files;
 *   e) parameter store and optimizer creation (every kind);
 *   f) a training step that records every family of ops (indexing, views and joins, functions,
 *      batched products, norms, dropout, the new losses).
 * The GEMM runs on one thread; its per-thread packing buffers are kept between calls, so every
 * iteration ends with ag__threads_shutdown(), which frees them: their allocation is part of the
 * sweep and the leak baseline stays exact. The number of failure points tried is printed.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>
#include "internal.h"
#include "kernels/kernels.h"
#include <tapegrad/mlp.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/optim.h>
#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})


static void begin(void) {
    ag__threads_shutdown(); /* no block from a previous allocator survives in the pool */
    ck_assert_int_eq(ag_set_threads(1), AG_OK);
    ag_test_alloc_install();
}
static void end(const char *what, size_t points) {
    ag__threads_shutdown();
    size_t live = ag_test_alloc_live();
    ag_test_alloc_uninstall();
    ck_assert_msg(live == 0, "%s: %zu blocks live at the end", what, live);
    printf("oom: %-40s %4zu failure points\n", what, points);
}

/* Run op with the n-th allocation failing, n = 1, 2, ...; op returns its status and sets *done
 * when it completed without meeting the failure. check (may be NULL) verifies the state after a
 * failure. Returns the number of failure points. */
typedef struct sweep {
    const char *name;
    void *ctx;
    ag_status (*op)(void *ctx);       /* the operation under test */
    void (*after_fail)(void *ctx);    /* objects still work (or are freed) */
    void (*cleanup)(void *ctx);       /* free what op made */
    int ok_allowed;                   /* an injected failure may be absorbed (AG_OK), e.g. reset's merge */
} sweep;

static size_t run_sweep(const sweep *s) {
    size_t points = 0;
    for (size_t n = 1;; n++) {
        ck_assert_msg(n < 100000, "%s: no end to the sweep", s->name);
        size_t base = ag_test_alloc_live();
        ag_test_alloc_fail_at(n);
        ag_status st = s->op(s->ctx);
        int failed = ag_test_alloc_failed();
        ag_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_msg(st == AG_OK, "%s: status %d without a failure (n = %zu)", s->name, (int)st, n);
            if (s->cleanup) s->cleanup(s->ctx);
            ag__threads_shutdown();
            ck_assert_msg(ag_test_alloc_live() == base, "%s: %zu blocks leaked on success", s->name,
                          ag_test_alloc_live() - base);
            return points;
        }
        points++;
        ck_assert_msg(st == AG_ERR_NOMEM || (s->ok_allowed && st == AG_OK),
                      "%s: allocation %zu failed but the status is %d (%s)", s->name, n, (int)st,
                      ag_status_str(st));
        if (s->after_fail) s->after_fail(s->ctx);
        if (s->cleanup) s->cleanup(s->ctx);
        ag__threads_shutdown();
        ck_assert_msg(ag_test_alloc_live() == base, "%s: allocation %zu failed and %zu blocks leaked", s->name, n,
                      ag_test_alloc_live() - base);
    }
}

/* ---------------------------------------------------------------- a) a full training step */

enum { K = 8, IN = 5, OUT = 3 };
static ag_real g_x[K * IN], g_y[K * OUT];
static int32_t g_lab[K];

static void make_data(void) {
    ag_rng r;
    ag_rng_seed(&r, 7);
    ag_rng_fill_uniform(&r, g_x, K * IN, -1, 1);
    for (int k = 0; k < K; k++) {
        g_lab[k] = (int32_t)ag_rng_below(&r, OUT);
        for (int j = 0; j < OUT; j++) g_y[k * OUT + j] = (ag_real)(j == g_lab[k]);
    }
}

typedef struct train {
    ag_params *ps;
    ag_mlp *m;
    ag_optim *opt;
    ag_tape *t;
    char err[AG_ERRMSG_SIZE];
    int cross_entropy;
    ag_optim_kind kind;
    size_t tape_mem; /* 0: default arena */
} train;

/* One step on existing objects: forward, backward, update. */
static ag_status step(train *c) {
    ag_tape_reset(c->t);
    ag_tensor *X = ag_tensor_wrap(c->t, 2, SH(K, IN), g_x);
    ag_tensor *h = ag_mlp_forward(c->t, c->m, X, NULL, NULL);
    ag_tensor *J;
    if (c->cross_entropy) {
        J = ag_mlp_cost_cross_entropy(c->t, c->m, h, g_lab, (ag_real)1e-3);
    } else {
        ag_tensor *Y = ag_tensor_wrap(c->t, 2, SH(K, OUT), g_y);
        J = ag_mlp_cost_squared_error(c->t, c->m, h, Y, (ag_real)1e-3);
    }
    ag_optim_zero_grad(c->opt);
    ag_status st = ag_backward(c->t, J);
    if (st != AG_OK) {
        ck_assert_msg(ag_tape_errmsg(c->t)[0] != '\0', "a failed step left no message");
        return st;
    }
    return ag_optim_step(c->opt);
}

static ag_status full_step(void *ctx) {
    train *c = ctx;
    c->ps = NULL;
    c->m = NULL;
    c->opt = NULL;
    c->t = NULL;
    ag_status st = ag_params_new(&c->ps);
    if (st != AG_OK) return st;
    st = ag_mlp_new(&c->m, c->ps,
                    &(ag_mlp_config){.spec = "5-16-8-3", .hidden = AG_ACT_RELU,
                                     .output = c->cross_entropy ? AG_ACT_IDENTITY : AG_ACT_SIGMOID,
                                     .init = AG_INIT_HE_NORMAL, .seed = 3},
                    c->err, sizeof c->err);
    if (st != AG_OK) {
        ck_assert_msg(strstr(c->err, "out of memory") != NULL, "mlp_new: message \"%s\"", c->err);
        return st;
    }
    st = ag_optim_new(&c->opt, c->ps, &(ag_optim_config){.kind = c->kind, .lr = 0.01}, c->err, sizeof c->err);
    if (st != AG_OK) return st;
    st = ag_tape_new(&c->t, &(ag_tape_params){.mem_size = c->tape_mem});
    if (st != AG_OK) return st;
    return step(c);
}

static void train_free(void *ctx) {
    train *c = ctx;
    ag_tape_free(c->t);
    ag_optim_free(c->opt);
    ag_mlp_free(c->m);
    ag_params_free(c->ps);
    c->t = NULL;
    c->opt = NULL;
    c->m = NULL;
    c->ps = NULL;
}

/* whatever was made before the failure still works: finish the set-up and run two steps */
static void full_step_after_fail(void *ctx) {
    train *c = ctx;
    if (!c->ps) return; /* nothing was made */
    if (!c->m) {
        /* ag_mlp_new rolled the store back to empty (test_alloc_fail checks that in detail); the
         * store itself stays usable */
        ck_assert_uint_eq(ag_params_count(c->ps), 0);
        ag_tensor *x;
        ck_assert_int_eq(ag_params_add(c->ps, "after_failure", 1, SH(3), 0, &x), AG_OK);
        return;
    }
    if (!c->opt)
        ck_assert_int_eq(ag_optim_new(&c->opt, c->ps, &(ag_optim_config){.kind = c->kind, .lr = 0.01}, NULL, 0),
                         AG_OK);
    if (!c->t) ck_assert_int_eq(ag_tape_new(&c->t, &(ag_tape_params){.mem_size = c->tape_mem}), AG_OK);
    ck_assert_int_eq(step(c), AG_OK);
    ck_assert_int_eq(step(c), AG_OK);
}

START_TEST(oom_full_training_step) {
    make_data();
    begin();
    size_t points = 0;
    train c = {0};
    const struct { int ce; ag_optim_kind kind; size_t mem; } v[] = {
        {0, AG_OPT_SGD, 0}, {1, AG_OPT_ADAM, 0}, {1, AG_OPT_MOMENTUM, 4096}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        c.cross_entropy = v[i].ce;
        c.kind = v[i].kind;
        c.tape_mem = v[i].mem;
        sweep s = {"training step from nothing", &c, full_step, full_step_after_fail, train_free, 0};
        points += run_sweep(&s);
    }
    end("a) full training step (3 variants)", points);
}
END_TEST

/* a') existing objects; the step's tape must grow (small arena), and the merge at reset too */
START_TEST(oom_step_on_existing_objects) {
    make_data();
    begin();
    train c = {.cross_entropy = 1, .kind = AG_OPT_ADAMW, .tape_mem = 1024};
    ck_assert_int_eq(full_step(&c), AG_OK);
    size_t points = 0;
    for (size_t n = 1;; n++) {
        ag_tape_free(c.t);
        ck_assert_int_eq(ag_tape_new(&c.t, &(ag_tape_params){.mem_size = 1024}), AG_OK);
        ag__threads_shutdown();
        size_t base = ag_test_alloc_live();
        ag_real w0 = ag_params_values(c.ps)[0];
        uint64_t steps = ag_optim_steps(c.opt);
        ag_test_alloc_fail_at(n);
        ag_status st = step(&c);
        int failed = ag_test_alloc_failed();
        ag_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, AG_OK);
            break;
        }
        points++;
        ck_assert_msg(st == AG_ERR_NOMEM, "step: allocation %zu failed, status %d", n, (int)st);
        ck_assert_msg(strstr(ag_tape_errmsg(c.t), "arena is full") || strstr(ag_tape_errmsg(c.t), "out of memory"),
                      "message \"%s\"", ag_tape_errmsg(c.t));
        /* the weights and the optimizer did not move */
        ck_assert(ag_params_values(c.ps)[0] == w0);
        ck_assert_uint_eq(ag_optim_steps(c.opt), steps);
        /* the same objects train on: the tape resets and the step succeeds */
        ck_assert_int_eq(step(&c), AG_OK);
        ck_assert_int_eq(step(&c), AG_OK); /* after the merge at reset */
        ag__threads_shutdown();
        ck_assert_uint_ge(ag_test_alloc_live(), base); /* the tape may keep its grown arena */
    }
    train_free(&c);
    end("a') step on existing objects, tape grows", points);
}
END_TEST

/* ---------------------------------------------------------------- b), c) model files */

static char g_path[512];
static char g_err[AG_IO_ERRMSG_SIZE];

static void tmpdir_make(void) {
    ag_test_scratch_remove(); /* one left by a test that failed under CK_FORK=no: start empty */
    ag_test_scratch_path(g_path, sizeof g_path, "model.safetensors");
}
static size_t dir_entries(void) {
    DIR *d = opendir(ag_test_scratch_dir());
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static ag_params *store(uint64_t seed) {
    ag_params *ps;
    ag_tensor *x;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "fc1.W", 2, SH(16, 5), AG_DECAY, &x), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "fc1.b", 1, SH(16), 0, &x), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "fc2.W", 2, SH(3, 16), AG_DECAY, &x), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "fc2.b", 1, SH(3), 0, &x), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, seed);
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        x = ag_params_at(ps, i);
        ag_rng_fill_normal(&r, x->value, x->size, 0, 1);
    }
    return ps;
}

typedef struct io {
    ag_params *ps, *other;   /* the store saved / loaded, and one holding the file's values */
    ag_real extra_data[7];
    ag_model_file *m;
    int how;
} io;

static ag_status save_op(void *ctx) {
    io *c = ctx;
    ag_named_buf extra = {"opt.m", c->extra_data, 7};
    ag_kv meta[2] = {{"arch", "5-16-3"}, {"epoch", "3"}};
    ag_status st = ag_model_save(g_path, c->ps, &extra, 1, meta, 2, g_err, sizeof g_err);
    if (st != AG_OK) ck_assert_msg(strstr(g_err, "out of memory") != NULL, "save: \"%s\"", g_err);
    return st;
}
static void save_after_fail(void *ctx) {
    io *c = ctx;
    /* the previous file (the values of c->other) is intact, and no temporary file is left */
    ck_assert_uint_eq(dir_entries(), 1);
    ag_params *chk = store(99);
    ag_real extra[7];
    ck_assert_int_eq(ag_model_load(g_path, chk, &(ag_named_buf){"opt.m", extra, 7}, 1, g_err, sizeof g_err), AG_OK);
    ck_assert(memcmp(ag_params_values(chk), ag_params_values(c->other), ag_params_numel(chk) * sizeof(ag_real)) == 0);
    ag_params_free(chk);
}

START_TEST(oom_model_save) {
    tmpdir_make();
    begin();
    io c = {.ps = store(1), .other = store(2)};
    for (int i = 0; i < 7; i++) c.extra_data[i] = (ag_real)i;
    /* the previous generation on disk */
    ck_assert_int_eq(ag_model_save(g_path, c.other, &(ag_named_buf){"opt.m", c.extra_data, 7}, 1, NULL, 0, g_err,
                                   sizeof g_err), AG_OK);
    sweep s = {"model save", &c, save_op, save_after_fail, NULL, 0};
    size_t points = run_sweep(&s);
    /* and the new file is the new store */
    ag_params *chk = store(99);
    ck_assert_int_eq(ag_model_load(g_path, chk, &(ag_named_buf){"opt.m", (ag_real[7]){0}, 7}, 1, g_err, sizeof g_err),
                     AG_OK);
    ck_assert(memcmp(ag_params_values(chk), ag_params_values(c.ps), ag_params_numel(chk) * sizeof(ag_real)) == 0);
    ag_params_free(chk);
    ag_params_free(c.ps);
    ag_params_free(c.other);
    end("b) model save", points);
    ag_test_scratch_remove();
}
END_TEST

static ag_status load_op(void *ctx) {
    io *c = ctx;
    ag_real extra[7] = {0};
    ag_status st = AG_OK;
    switch (c->how) {
    case 0:
        st = ag_model_load(g_path, c->ps, &(ag_named_buf){"opt.m", extra, 7}, 1, g_err, sizeof g_err);
        break;
    case 1:
        st = ag_model_open(g_path, &c->m, g_err, sizeof g_err);
        if (st == AG_OK) st = ag_model_read(c->m, c->ps, &(ag_named_buf){"opt.m", extra, 7}, 1, g_err, sizeof g_err);
        break;
    case 2: {
        static uint8_t buf[8192];
        FILE *fp = fopen(g_path, "rb");
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        st = ag_model_parse(buf, n, "mem", &c->m, g_err, sizeof g_err);
        if (st == AG_OK) {
            ck_assert_ptr_nonnull(ag_model_meta(c->m, "arch"));
            st = ag_model_read(c->m, c->ps, &(ag_named_buf){"opt.m", extra, 7}, 1, g_err, sizeof g_err);
        }
        break;
    }
    }
    if (st != AG_OK) ck_assert_msg(strstr(g_err, "out of memory") != NULL, "load: \"%s\"", g_err);
    return st;
}
static void load_after_fail(void *ctx) {
    io *c = ctx;
    /* the store is unchanged (it still holds seed 1's values, not the file's) */
    ag_params *ref = store(1);
    ck_assert(memcmp(ag_params_values(ref), ag_params_values(c->ps), ag_params_numel(ref) * sizeof(ag_real)) == 0);
    ag_params_free(ref);
}
static void load_cleanup(void *ctx) {
    io *c = ctx;
    ag_model_close(c->m);
    c->m = NULL;
}

START_TEST(oom_model_load) {
    tmpdir_make();
    begin();
    io c = {.ps = store(1), .other = store(2)};
    ck_assert_int_eq(ag_model_save(g_path, c.other, &(ag_named_buf){"opt.m", c.extra_data, 7}, 1,
                                   (ag_kv[]){{"arch", "5-16-3"}}, 1, g_err, sizeof g_err), AG_OK);
    size_t points = 0;
    const char *names[3] = {"model load", "model open + read", "model parse + read"};
    for (int how = 0; how < 3; how++) {
        c.how = how;
        sweep s = {names[how], &c, load_op, load_after_fail, load_cleanup, 0};
        points += run_sweep(&s);
        /* it loaded: the file's values */
        ck_assert(memcmp(ag_params_values(c.ps), ag_params_values(c.other), ag_params_numel(c.ps) * sizeof(ag_real)) == 0);
        ag_params_free(c.ps);
        c.ps = store(1);
    }
    ag_params_free(c.ps);
    ag_params_free(c.other);
    end("c) model load, open, parse (+ read)", points);
    ag_test_scratch_remove();
}
END_TEST

/* ---------------------------------------------------------------- d) IDX */

static uint8_t g_im[16 + 40 * 4 * 3], g_lb[8 + 40];
static size_t g_im_len, g_lb_len;

static void make_idx(void) {
    const uint32_t h[4] = {AG_IDX_IMAGES, 40, 4, 3};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++) g_im[i * 4 + k] = (uint8_t)(h[i] >> (24 - 8 * k));
    for (size_t i = 0; i < 40 * 12; i++) g_im[16 + i] = (uint8_t)(i * 13);
    const uint32_t l[2] = {AG_IDX_LABELS, 40};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) g_lb[i * 4 + k] = (uint8_t)(l[i] >> (24 - 8 * k));
    for (size_t i = 0; i < 40; i++) g_lb[8 + i] = (uint8_t)(i % 10);
    g_im_len = sizeof g_im;
    g_lb_len = sizeof g_lb;
}

typedef struct idxc {
    ag_dataset ds;
    int how;
    char im_path[512], lb_path[512];
} idxc;

static ag_status idx_op(void *ctx) {
    idxc *c = ctx;
    ag_idx_options o = {.classes = 10, .rows = 4, .cols = 3};
    ag_status st;
    if (c->how == 0)
        st = ag_dataset_parse(&c->ds, g_im, g_im_len, g_lb, g_lb_len, &o, g_err, sizeof g_err);
    else
        st = ag_dataset_load(&c->ds, c->im_path, c->lb_path, &o, g_err, sizeof g_err);
    if (st != AG_OK) {
        ck_assert_msg(strstr(g_err, "out of memory") != NULL, "idx: \"%s\"", g_err);
        ck_assert(c->ds.n == 0 && c->ds.images == NULL && c->ds.labels == NULL);
    } else {
        ck_assert_uint_eq(c->ds.n, 40);
        ck_assert_int_eq(c->ds.labels[13], 3);
    }
    return st;
}
static void idx_cleanup(void *ctx) {
    idxc *c = ctx;
    ag_dataset_free(&c->ds);
}

START_TEST(oom_idx) {
    make_idx();
    tmpdir_make();
    idxc c = {0};
    ag_test_scratch_path(c.im_path, sizeof c.im_path, "images.idx");
    ag_test_scratch_path(c.lb_path, sizeof c.lb_path, "labels.idx.gz");
    FILE *fp = fopen(c.im_path, "wb");
    ck_assert_uint_eq(fwrite(g_im, 1, g_im_len, fp), g_im_len);
    fclose(fp);
    char raw[512], cmd[1100];
    ag_test_scratch_path(raw, sizeof raw, "labels.idx");
    fp = fopen(raw, "wb");
    ck_assert_uint_eq(fwrite(g_lb, 1, g_lb_len, fp), g_lb_len);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s'", raw, c.lb_path);
    ck_assert_int_eq(system(cmd), 0);
    begin();
    size_t points = 0;
    const char *names[2] = {"dataset parse", "dataset load (raw + gzip)"};
    for (int how = 0; how < 2; how++) {
        c.how = how;
        sweep s = {names[how], &c, idx_op, NULL, idx_cleanup, 0};
        points += run_sweep(&s);
    }
    end("d) IDX dataset parse and load", points);
    ag_test_scratch_remove();
}
END_TEST

/* ---------------------------------------------------------------- e) store and optimizer creation */

typedef struct mk {
    ag_params *ps;
    ag_optim *opt;
    ag_optim_kind kind;
} mk;

static ag_status make_op(void *ctx) {
    mk *c = ctx;
    c->ps = NULL;
    c->opt = NULL;
    ag_status st = ag_params_new(&c->ps);
    if (st != AG_OK) return st;
    ag_tensor *x;
    char name[16];
    for (int i = 0; i < 12; i++) { /* enough to grow the bookkeeping arrays */
        snprintf(name, sizeof name, "p%d", i);
        size_t before = ag_params_count(c->ps);
        st = ag_params_add(c->ps, name, 2, SH((size_t)i + 1, 3), i % 2 ? AG_DECAY : 0, &x);
        if (st != AG_OK) {
            ck_assert_int_eq(ag_params_status(c->ps), AG_ERR_NOMEM);
            ck_assert_ptr_nonnull(strstr(ag_params_errmsg(c->ps), "out of memory"));
            ck_assert_uint_eq(ag_params_count(c->ps), before);
            ck_assert_ptr_null(x);
            return st;
        }
    }
    char err[AG_ERRMSG_SIZE];
    st = ag_optim_new(&c->opt, c->ps, &(ag_optim_config){.kind = c->kind, .lr = 0.1, .weight_decay = 0.01}, err,
                      sizeof err);
    if (st != AG_OK) ck_assert_msg(strstr(err, "optim: out of memory") != NULL, "optim_new: \"%s\"", err);
    return st;
}
static void make_after_fail(void *ctx) {
    mk *c = ctx;
    if (!c->ps) return;
    /* the store keeps working: add one more and make an optimizer that steps */
    ag_tensor *x;
    ck_assert_int_eq(ag_params_add(c->ps, "late", 1, SH(4), 0, &x), AG_OK);
    ag_optim_free(c->opt);
    ck_assert_int_eq(ag_optim_new(&c->opt, c->ps, &(ag_optim_config){.kind = c->kind, .lr = 0.1}, NULL, 0), AG_OK);
    x->grad[0] = 1;
    ck_assert_int_eq(ag_optim_step(c->opt), AG_OK);
    ck_assert(x->value[0] != 0);
}
static void make_cleanup(void *ctx) {
    mk *c = ctx;
    ag_optim_free(c->opt);
    ag_params_free(c->ps);
    c->opt = NULL;
    c->ps = NULL;
}

START_TEST(oom_params_and_optimizers) {
    begin();
    size_t points = 0;
    mk c = {0};
    for (int k = AG_OPT_SGD; k <= AG_OPT_ADAMW; k++) {
        c.kind = (ag_optim_kind)k;
        sweep s = {"params + optimizer", &c, make_op, make_after_fail, make_cleanup, 0};
        points += run_sweep(&s);
    }
    end("e) params store + optimizer (5 kinds)", points);
}
END_TEST

/* the tape alone: creation, leaves, a growing arena, reset's merge */
static ag_status tape_op(void *ctx) {
    ag_tape **tp = ctx;
    *tp = NULL;
    ag_status st = ag_tape_new(tp, &(ag_tape_params){.mem_size = 256});
    if (st != AG_OK) return st;
    for (int i = 0; i < 20; i++)
        if (!ag_tensor_new(*tp, 1, SH(64))) return ag_tape_status(*tp);
    ag_tape_reset(*tp); /* merge may fail silently: keeps the chunks */
    for (int i = 0; i < 20; i++)
        if (!ag_tensor_new(*tp, 1, SH(64))) return ag_tape_status(*tp);
    return AG_OK;
}
static void tape_after(void *ctx) {
    ag_tape **tp = ctx;
    if (!*tp) return;
    ag_tape_reset(*tp);
    ck_assert_ptr_nonnull(ag_neg(*tp, ag_tensor_new(*tp, 1, SH(100))));
}
static void tape_cleanup(void *ctx) {
    ag_tape **tp = ctx;
    ag_tape_free(*tp);
    *tp = NULL;
}

START_TEST(oom_tape) {
    begin();
    ag_tape *t = NULL;
    sweep s = {"tape", &t, tape_op, tape_after, tape_cleanup, 1};
    size_t points = run_sweep(&s);
    end("tape arena growth", points);
}
END_TEST


/* ---------------------------------------------------------------- f) one step through every op family
 * A toy attention model whose training step records each family of issue 22 at least once: indexing
 * (gather_rows, where, masked_fill, maximum, clamp, max_axis, abs), views and joins (reshape, permute,
 * slice, chunk, concat, stack, pad, squeeze, unsqueeze, broadcast_to, detach), functions (gelu, silu,
 * softplus), batched products, norms (layer, RMS, batch with AG_STATE running statistics), dropout
 * and the new losses, then backward and an Adam step. The tape starts small, so it grows mid-step. */

enum { FB = 4, FT = 3, FD = 8, FV = 10 };
static const int32_t g_tok[FB * FT] = {1, 4, 9, 0, 4, 4, 7, 2, 3, 9, 9, 5};
static const int32_t g_next[FB * FT] = {4, 9, -100, 4, 4, 7, 2, 3, -100, 9, 5, 1};
static const ag_real g_causal[FT * FT] = {0, 1, 1, 0, 0, 1, 0, 0, 0}; /* 1: a later position, masked */

typedef struct famstep {
    ag_params *ps;
    ag_optim *opt;
    ag_tape *t;
    ag_tensor *E, *Wq, *g, *b, *gr, *rm, *rv, *Wo;
} famstep;

static ag_tensor *fam_loss(famstep *c) {
    ag_tape *t = c->t;
    ag_tensor *mask = ag_tensor_from(t, 2, SH(FT, FT), g_causal);
    ag_tensor *x = ag_reshape(t, ag_gather_rows(t, c->E, g_tok, FB * FT), 3, SH(FB, FT, FD));
    ag_tensor *h = ag_layer_norm(t, x, 1, c->g, c->b, (ag_real)1e-5);
    ag_tensor *q = ag_bmm(t, h, c->Wq, 0, 1);
    ag_tensor *s = ag_masked_fill(t, ag_bmm(t, q, h, 0, 1), mask, -INFINITY);
    ag_tensor *o = ag_bmm(t, ag_softmax(t, s), h, 0, 0);
    o = ag_dropout(t, ag_gelu(t, ag_rms_norm(t, o, 1, c->gr, (ag_real)1e-6)), (ag_real)0.1, 7);
    ag_tensor *p = ag_batch_norm(t, ag_permute(t, o, (const int[]){0, 2, 1}), NULL, NULL, c->rm, c->rv,
                                 (ag_real)0.1, (ag_real)1e-5); /* FB x FD x FT, channels FD */
    ag_tensor *pieces[FT];
    if (ag_chunk(t, p, 2, FT, pieces) != AG_OK) return NULL;
    ag_tensor *cols[FT];
    for (int i = 0; i < FT; i++) cols[i] = ag_squeeze(t, pieces[FT - 1 - i], 2);
    ag_tensor *rev = ag_stack(t, cols, FT, 2);                     /* the time axis reversed */
    ag_tensor *both = ag_concat(t, (ag_tensor *[]){p, rev}, 2, 1); /* FB x 2FD x FT */
    ag_tensor *padded = ag_pad(t, ag_slice(t, both, 1, 0, FD, 1), SH(0, 0, 1), SH(0, 0, 0), 0);
    ag_tensor *y = ag_slice(t, padded, 2, 1, FT, 1);                /* p again, through pad and slice */
    y = ag_reshape(t, ag_permute(t, ag_silu(t, y), (const int[]){0, 2, 1}), 2, SH(FB * FT, FD));
    ag_tensor *logits = ag_linear(t, y, c->Wo, NULL); /* FB*FT x FV */
    ag_tensor *ce = ag_cross_entropy_ex(t, ag_reshape(t, logits, 3, SH(FB, FT, FV)), g_next,
                                        &(ag_ce_opts){.ignore_index = -100, .label_smoothing = (ag_real)0.1});
    ag_tensor *top = ag_max_axis(t, logits, 1);                      /* FB*FT */
    ag_tensor *half = ag_broadcast_to(t, ag_unsqueeze(t, ag_scalar(t, (ag_real)0.5), 0), 1, SH(FB * FT));
    ag_tensor *target = ag_where(t, ag_maximum(t, top, ag_detach(t, top)), half, ag_softplus(t, half));
    ag_tensor *bce = ag_bce_with_logits(t, top, ag_detach(t, target));
    ag_tensor *hub = ag_huber_loss(t, ag_clamp(t, ag_abs(t, top), -2, 2), half, 1);
    return ag_add(t, ag_add(t, ce, bce), hub);
}

static ag_status fam_step(famstep *c) {
    ag_tape_reset(c->t);
    ag_tensor *J = fam_loss(c);
    if (!J) return ag_tape_status(c->t);
    ag_optim_zero_grad(c->opt);
    ag_status st = ag_backward(c->t, J);
    if (st != AG_OK) {
        ck_assert_msg(ag_tape_errmsg(c->t)[0] != '\0', "a failed step left no message");
        return st;
    }
    return ag_optim_step(c->opt);
}

static ag_status fam_full(void *ctx) {
    famstep *c = ctx;
    memset(c, 0, sizeof *c);
    ag_status st = ag_params_new(&c->ps);
    if (st != AG_OK) return st;
    const struct { const char *name; int nd; size_t d0, d1; unsigned flags; ag_tensor **out; } spec[] = {
        {"E", 2, FV, FD, AG_DECAY, &c->E},  {"Wq", 2, FD, FD, AG_DECAY, &c->Wq}, {"g", 1, FD, 1, 0, &c->g},
        {"b", 1, FD, 1, 0, &c->b},          {"gr", 1, FD, 1, 0, &c->gr},         {"rm", 1, FD, 1, AG_STATE, &c->rm},
        {"rv", 1, FD, 1, AG_STATE, &c->rv}, {"Wo", 2, FV, FD, AG_DECAY, &c->Wo}};
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        st = ag_params_add(c->ps, spec[i].name, spec[i].nd, SH(spec[i].d0, spec[i].d1), spec[i].flags, spec[i].out);
        if (st != AG_OK) return st;
    }
    ag_rng r;
    ag_rng_seed(&r, 11);
    ag_rng_fill_normal(&r, ag_params_values(c->ps), ag_params_numel(c->ps), 0, 0.3);
    for (size_t i = 0; i < FD; i++) {
        c->g->value[i] = c->gr->value[i] = c->rv->value[i] = 1;
        c->b->value[i] = c->rm->value[i] = 0;
    }
    st = ag_optim_new(&c->opt, c->ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.01}, NULL, 0);
    if (st != AG_OK) return st;
    st = ag_tape_new(&c->t, &(ag_tape_params){.mem_size = 4096});
    if (st != AG_OK) return st;
    ag_tape_set_seed(c->t, 5);
    return fam_step(c);
}

static void fam_free(void *ctx) {
    famstep *c = ctx;
    ag_tape_free(c->t);
    ag_optim_free(c->opt);
    ag_params_free(c->ps);
    memset(c, 0, sizeof *c);
}

/* what was made before the failure still works: finish the set-up and take two steps */
static void fam_after_fail(void *ctx) {
    famstep *c = ctx;
    if (!c->t || !c->opt) return; /* the failure hit the set-up: fam_free releases what there is */
    ck_assert_int_eq(fam_step(c), AG_OK);
    ck_assert_int_eq(fam_step(c), AG_OK);
}

START_TEST(oom_op_families_step) {
    begin();
    famstep c = {0};
    sweep s = {"op families step", &c, fam_full, fam_after_fail, fam_free, 0};
    size_t points = run_sweep(&s);
    ck_assert_uint_gt(points, 20);
    end("f) one step through every op family", points);
}
END_TEST

/* ---------------------------------------------------------------- checkpoint save and load */

typedef struct ckio {
    ag_params *ps;
    ag_optim *opt;
    ag_rng rng;
    uint32_t order[9];
} ckio;

static ag_checkpoint ckio_of(ckio *c) {
    return (ag_checkpoint){.params = c->ps, .optim = c->opt, .rng = &c->rng, .order = c->order, .order_n = 9,
                           .epoch = 2, .position = 5};
}
static ag_status ck_save_op(void *ctx) {
    ag_checkpoint ck = ckio_of(ctx);
    ag_status st = ag_checkpoint_save(g_path, &ck, g_err, sizeof g_err);
    if (st != AG_OK) ck_assert_msg(strstr(g_err, "out of memory") != NULL, "checkpoint save: \"%s\"", g_err);
    return st;
}
static ag_status ck_load_op(void *ctx) {
    ckio *c = ctx;
    ag_real w0 = ag_params_values(c->ps)[0];
    ag_checkpoint ck = ckio_of(c);
    ck.epoch = 0;
    ag_status st = ag_checkpoint_load(g_path, &ck, g_err, sizeof g_err);
    if (st != AG_OK) {
        ck_assert_msg(strstr(g_err, "out of memory") != NULL, "checkpoint load: \"%s\"", g_err);
        ck_assert(ag_params_values(c->ps)[0] == w0 && ck.epoch == 0); /* nothing changed */
    } else {
        ck_assert_uint_eq(ck.epoch, 2);
    }
    return st;
}

START_TEST(oom_checkpoint) {
    tmpdir_make();
    begin();
    ckio c = {.ps = store(3)};
    ck_assert_int_eq(ag_optim_new(&c.opt, c.ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 0.1}, NULL, 0), AG_OK);
    ag_rng_seed(&c.rng, 4);
    for (uint32_t i = 0; i < 9; i++) c.order[i] = 8 - i;
    sweep s = {"checkpoint save", &c, ck_save_op, NULL, NULL, 0};
    size_t points = run_sweep(&s);
    sweep l = {"checkpoint load", &c, ck_load_op, NULL, NULL, 0};
    points += run_sweep(&l);
    ag_optim_free(c.opt);
    ag_params_free(c.ps);
    end("checkpoint save and load", points);
    ag_test_scratch_remove();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("oom");
    TCase *tc = tcase_create("sweeps");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, oom_full_training_step);
    tcase_add_test(tc, oom_step_on_existing_objects);
    tcase_add_test(tc, oom_model_save);
    tcase_add_test(tc, oom_model_load);
    tcase_add_test(tc, oom_idx);
    tcase_add_test(tc, oom_checkpoint);
    tcase_add_test(tc, oom_params_and_optimizers);
    tcase_add_test(tc, oom_tape);
    tcase_add_test(tc, oom_op_families_step);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(suite)

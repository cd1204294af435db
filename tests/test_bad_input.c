/*
 * test_bad_input.c - issue 7 item 1: a table of erroneous inputs for every public function.
 *
 * Each row makes one bad call (wrong shapes, NULLs, zero sizes, (size_t)-1 sizes, shape products
 * that overflow size_t, tensors from another tape, stale tensors after a reset, calls in the wrong
 * order, bad op descriptors, bad configs, bad files) and checks:
 *   - the status it returns (never a crash, abort or leak: ASan and valgrind run this suite too);
 *   - the message (tape, params store, optimizer or err buffer) contains the given substrings,
 *     naming the op or function and the shapes or values involved;
 *   - afterwards the objects still work: a failed op left no node behind, a valid forward and
 *     backward on the same tape succeed, the parameter store is unchanged, the saved model still
 *     loads into it.
 * One Check test per subject (leaves_and_arena, null_tape, ..., kernels_threads_rng_allocator), each
 * printing its number of rows ("bad_input <subject>: N error cases"). The built-in ops' own rows
 * (shapes, axes, labels, NULL / other-tape / stale inputs, a NULL tape) are generated from their
 * records instead: tests/ops/op_records.c, test_op_records <op>:bad_input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/backprop_ref.h>
#include <tapegrad/dense.h>
#include "internal.h"
#include "kernels/kernels.h"
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})
#define TL(...) ((ag_tensor *[]){__VA_ARGS__})
#define BIG ((size_t)-1)
#define HALF (((size_t)1 << (sizeof(size_t) * 4)) + 1) /* HALF * HALF overflows size_t */

#ifdef AG_DOUBLE
#define DT "F64"
#else
#define DT "F32"
#endif

static char *find_bytes(void *hay, size_t n, const char *needle, size_t k) {
    char *h = hay;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(h + i, needle, k) == 0) return h + i;
    return NULL;
}

/* The suite's allocator: counts live blocks and refuses requests above 1 GiB, as a machine without
 * that much memory would (ASan aborts on absurd sizes instead of returning NULL). */
static size_t g_live;
static void *cap_malloc(size_t n, void *u) {
    (void)u;
    void *p = n > ((size_t)1 << 30) ? NULL : malloc(n);
    if (p) g_live++;
    return p;
}
static void *cap_realloc(void *q, size_t n, void *u) {
    (void)u;
    void *p = n > ((size_t)1 << 30) ? NULL : realloc(q, n);
    if (p && !q) g_live++;
    return p;
}
static void cap_free(void *p, void *u) {
    (void)u;
    if (p) g_live--;
    free(p);
}
static void cap_install(void) {
    ag__threads_shutdown(); /* no block of the GEMM pool from another allocator survives */
    g_live = 0;
    ck_assert_int_eq(ag_set_allocator(&(ag_allocator){cap_malloc, cap_realloc, cap_free, NULL}), AG_OK);
}
static size_t cap_uninstall(void) {
    ag__threads_shutdown();
    ag_set_allocator(NULL);
    return g_live;
}

/* ---------------------------------------------------------------- fixture */

typedef struct fx {
    ag_tape *t, *t2, *tl;  /* the tape under test, another tape, a tape with a 64 KiB limit */
    ag_params *ps;          /* W 4x3 (decay), b 4 */
    ag_tensor *W, *b;
    ag_tensor *x23, *x34, *x5, *x83, *x84, *s, *v3, *x4d, *other, *stale, *res;
    ag_optim *opt;
    ag_real snapshot[16];
    char err[AG_IO_ERRMSG_SIZE];
    const char *msg;       /* the message the row's call left */
    const char *dir;       /* the scratch directory */
    char model[512], idx_img[512], idx_lab[512], junk[512];
} fx;

static fx F;

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
    ck_assert_int_eq(fclose(fp), 0);
}

/* IDX header helpers */
static size_t idx_images(uint8_t *buf, uint32_t count, uint32_t rows, uint32_t cols) {
    uint32_t h[4] = {AG_IDX_IMAGES, count, rows, cols};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++) buf[i * 4 + k] = (uint8_t)(h[i] >> (24 - 8 * k));
    size_t n = (size_t)count * rows * cols;
    for (size_t i = 0; i < n; i++) buf[16 + i] = (uint8_t)(i * 7);
    return 16 + n;
}
static size_t idx_labels(uint8_t *buf, uint32_t count, uint8_t maxlab) {
    uint32_t h[2] = {AG_IDX_LABELS, count};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) buf[i * 4 + k] = (uint8_t)(h[i] >> (24 - 8 * k));
    for (uint32_t i = 0; i < count; i++) buf[8 + i] = (uint8_t)(i % (maxlab + 1u));
    return 8 + count;
}

static void fixture_once(void) {
    memset(&F, 0, sizeof F);
    ck_assert_int_eq(ag_tape_new(&F.t, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&F.t2, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&F.tl, &(ag_tape_params){.mem_size = 4096, .mem_limit = 65536}), AG_OK);
    ck_assert_int_eq(ag_params_new(&F.ps), AG_OK);
    ck_assert_int_eq(ag_params_add(F.ps, "W", 2, SH(4, 3), AG_DECAY, &F.W), AG_OK);
    ck_assert_int_eq(ag_params_add(F.ps, "b", 1, SH(4), 0, &F.b), AG_OK);
    for (size_t i = 0; i < 12; i++) F.W->value[i] = (ag_real)(0.1 * (double)i - 0.5);
    for (size_t i = 0; i < 4; i++) F.b->value[i] = (ag_real)(0.05 * (double)i);
    memcpy(F.snapshot, F.W->value, 12 * sizeof(ag_real));
    memcpy(F.snapshot + 12, F.b->value, 4 * sizeof(ag_real));
    ck_assert_int_eq(ag_optim_new(&F.opt, F.ps, &(ag_optim_config){.kind = AG_OPT_ADAM, .lr = 1e-3}, NULL, 0),
                     AG_OK);

    F.dir = ag_test_scratch_dir();
    ag_test_scratch_path(F.model, sizeof F.model, "model.safetensors");
    ag_test_scratch_path(F.idx_img, sizeof F.idx_img, "img.idx");
    ag_test_scratch_path(F.idx_lab, sizeof F.idx_lab, "lab.idx");
    ag_test_scratch_path(F.junk, sizeof F.junk, "junk.bin");
    ck_assert_int_eq(ag_model_save(F.model, F.ps, NULL, 0, (ag_kv[]){{"arch", "3-4"}}, 1, F.err, sizeof F.err),
                     AG_OK);
    uint8_t buf[256];
    write_file(F.idx_img, buf, idx_images(buf, 5, 2, 3));
    write_file(F.idx_lab, buf, idx_labels(buf, 5, 9));
    write_file(F.junk, "this is not a model file at all", 31);
}

static void fixture_free(void) {
    ag_optim_free(F.opt);
    ag_tape_free(F.t);
    ag_tape_free(F.t2);
    ag_tape_free(F.tl);
    ag_params_free(F.ps);
    ag_test_scratch_remove();
}

/* Fresh tensors for one row; `stale` was recorded before the last reset. */
static void fixture_row(void) {
    ag_tape_reset(F.t);
    /* recorded past everything a row allocates, so no new tensor reuses its memory (a stale pointer
     * that aliases a new tensor of the same address cannot be told apart: the check is by generation) */
    ck_assert_ptr_nonnull(ag_tensor_new(F.t, 1, SH(64 * 1024)));
    F.stale = ag_tensor_new(F.t, 2, SH(2, 3));
    ag_tape_reset(F.t);
    ag_tape_reset(F.t2);
    ag_tape_reset(F.tl);
    F.x23 = ag_tensor_new(F.t, 2, SH(2, 3));
    F.x34 = ag_tensor_new(F.t, 2, SH(3, 4));
    F.x5 = ag_tensor_new(F.t, 1, SH(5));
    F.x83 = ag_tensor_new(F.t, 2, SH(8, 3));
    F.x84 = ag_tensor_new(F.t, 2, SH(8, 4));
    F.v3 = ag_tensor_new(F.t, 1, SH(3));
    F.x4d = ag_tensor_new(F.t, 4, SH(2, 1, 3, 2));
    F.s = ag_scalar(F.t, 2);
    F.res = ag_exp(F.t, F.x23); /* an op result (not a leaf) */
    F.other = ag_tensor_new(F.t2, 2, SH(2, 3));
    ck_assert_ptr_nonnull(F.res);
    ck_assert_ptr_nonnull(F.other);
    ck_assert_int_eq(ag_tape_status(F.t), AG_OK);
    F.err[0] = '\0';
    F.msg = "";
}

/* The objects still work after the row. */
static void still_usable(const char *row, int same_step) {
    ag_tape *t = F.t;
    ag_tape_clear_error(t);
    if (!same_step) ag_tape_reset(t); /* e.g. after backward twice: the next step */
    ag_params_zero_grad(F.ps);
    ag_real xs[6] = {1, 2, 3, -1, 0.5, 0.25};
    ag_tensor *x = ag_tensor_from(t, 2, SH(2, 3), xs);
    ag_tensor *J = ag_sum(t, ag_square(t, ag_linear(t, x, F.W, F.b)));
    ck_assert_msg(J != NULL, "%s: a valid op fails afterwards: %s", row, ag_tape_errmsg(t));
    ck_assert_msg(ag_backward(t, J) == AG_OK, "%s: backward fails afterwards: %s", row, ag_tape_errmsg(t));
    double g = 0;
    for (size_t i = 0; i < 12; i++) g += fabs((double)F.W->grad[i]);
    ck_assert_msg(g > 0 && isfinite(g), "%s: no gradient afterwards", row);
    /* the store is unchanged: same tensors, same values */
    ck_assert_msg(ag_params_count(F.ps) == 2 && ag_params_numel(F.ps) >= 16, "%s: store changed", row);
    ck_assert_msg(memcmp(F.W->value, F.snapshot, 12 * sizeof(ag_real)) == 0 &&
                      memcmp(F.b->value, F.snapshot + 12, 4 * sizeof(ag_real)) == 0,
                  "%s: parameter values changed", row);
    /* the other tapes too */
    ag_tape_clear_error(F.t2);
    ck_assert_msg(ag_neg(F.t2, ag_tensor_new(F.t2, 1, SH(3))) != NULL, "%s: tape 2 broken", row);
    ag_tape_reset(F.tl); /* a full arena stays full until the next step */
    ck_assert_msg(ag_neg(F.tl, ag_tensor_new(F.tl, 1, SH(3))) != NULL, "%s: limited tape broken: %s", row,
                  ag_tape_errmsg(F.tl));
    ag_params_zero_grad(F.ps);
}

/* ---------------------------------------------------------------- helpers for rows with setup */

/* user op descriptors */
static ag_status same_shape(ag_node *n) { return ag_node_set_shape(n, n->in[0]->ndim, n->in[0]->shape); }
static ag_status fwd_copy(ag_node *n) {
    memcpy(n->out.value, n->in[0]->value, n->out.size * sizeof(ag_real));
    return AG_OK;
}
static ag_status bwd_ok(ag_node *n) {
    if (n->in[0]->grad)
        for (size_t i = 0; i < n->out.size; i++) n->in[0]->grad[i] += n->out.grad[i];
    return AG_OK;
}
static ag_status shape_rank5(ag_node *n) { return ag_node_set_shape(n, 5, SH(1, 1, 1, 1, 1)); }
static ag_status shape_rank_neg(ag_node *n) { return ag_node_set_shape(n, -1, NULL); }
static ag_status shape_null(ag_node *n) { return ag_node_set_shape(n, 2, NULL); }
static ag_status shape_zero(ag_node *n) { return ag_node_set_shape(n, 2, SH(3, 0)); }
static ag_status shape_overflow(ag_node *n) { return ag_node_set_shape(n, 2, SH(HALF, HALF)); }
static ag_status shape_minus1(ag_node *n) { return ag_node_set_shape(n, 1, SH(BIG)); }
static ag_status shape_huge(ag_node *n) { return ag_node_set_shape(n, 2, SH(1 << 20, 1 << 10)); }
static ag_status shape_fails(ag_node *n) { return ag_node_fail(n, AG_ERR_SHAPE, "custom shape check refused %zu", n->in[0]->size); }
static ag_status shape_silent_err(ag_node *n) { (void)n; return AG_ERR_SHAPE; }
static ag_status fwd_fails(ag_node *n) { (void)n; return AG_ERR_ARG; }
static ag_status fwd_nan(ag_node *n) {
    for (size_t i = 0; i < n->out.size; i++) n->out.value[i] = (ag_real)NAN;
    return AG_OK;
}
static ag_status fwd_alloc_huge(ag_node *n) { return ag_node_alloc(n, (size_t)1 << 40) ? AG_OK : AG_ERR_NOMEM; }
static ag_status bwd_fails(ag_node *n) { return ag_node_fail(n, AG_ERR_NUMERIC, "custom backward refused"); }
static ag_status bwd_silent(ag_node *n) { (void)n; return AG_ERR_STATE; }
static ag_status bwd_inf(ag_node *n) {
    if (n->in[0]->grad) n->in[0]->grad[0] = (ag_real)INFINITY;
    return AG_OK;
}

static const ag_op op_ok = {"userop", 1, 0, same_shape, fwd_copy, bwd_ok};
static const ag_op op_params = {"userparams", 1, sizeof(double), same_shape, fwd_copy, bwd_ok};
static const ag_op op_var = {"uservar", AG_VARIADIC, 0, same_shape, fwd_copy, bwd_ok};
static const ag_op op_noname = {NULL, 1, 0, same_shape, fwd_copy, bwd_ok};
static const ag_op op_noshape = {"noshape", 1, 0, NULL, fwd_copy, bwd_ok};
static const ag_op op_nofwd = {"nofwd", 1, 0, same_shape, NULL, bwd_ok};
static const ag_op op_rank5 = {"rank5", 1, 0, shape_rank5, fwd_copy, bwd_ok};
static const ag_op op_rankneg = {"rankneg", 1, 0, shape_rank_neg, fwd_copy, bwd_ok};
static const ag_op op_shnull = {"shnull", 1, 0, shape_null, fwd_copy, bwd_ok};
static const ag_op op_zero = {"zerodim", 1, 0, shape_zero, fwd_copy, bwd_ok};
static const ag_op op_ovf = {"ovf", 1, 0, shape_overflow, fwd_copy, bwd_ok};
static const ag_op op_m1 = {"minus1", 1, 0, shape_minus1, fwd_copy, bwd_ok};
static const ag_op op_huge = {"huge", 1, 0, shape_huge, fwd_copy, bwd_ok};
static const ag_op op_shfail = {"shfail", 1, 0, shape_fails, fwd_copy, bwd_ok};
static const ag_op op_shsilent = {"shsilent", 1, 0, shape_silent_err, fwd_copy, bwd_ok};
static const ag_op op_fwdfail = {"fwdfail", 1, 0, same_shape, fwd_fails, bwd_ok};
static const ag_op op_fwdnan = {"fwdnan", 1, 0, same_shape, fwd_nan, bwd_ok};
static const ag_op op_fwdhuge = {"fwdhuge", 1, 0, same_shape, fwd_alloc_huge, bwd_ok};
static const ag_op op_bwdfail = {"bwdfail", 1, 0, same_shape, fwd_copy, bwd_fails};
static const ag_op op_bwdsilent = {"bwdsilent", 1, 0, same_shape, fwd_copy, bwd_silent};
static const ag_op op_bwdinf = {"bwdinf", 1, 0, same_shape, fwd_copy, bwd_inf};
static const ag_op op_nobwd = {"nobwd", 1, 0, same_shape, fwd_copy, NULL};

/* backward through a user op whose backward fails */
static ag_status h_backward_through(const ag_op *op, int numerics) {
    ag_tape_set_check_numerics(F.t, numerics);
    ag_tensor *y = ag_call(F.t, op, TL(ag_linear(F.t, F.x23, F.W, F.b)), 1, NULL);
    ag_status st = y ? ag_backward(F.t, ag_sum(F.t, y)) : ag_tape_status(F.t);
    ag_tape_set_check_numerics(F.t, 0);
    F.msg = ag_tape_errmsg(F.t);
    return st;
}
static ag_status h_bwd_fail(fx *f) { (void)f; return h_backward_through(&op_bwdfail, 0); }
static ag_status h_bwd_silent(fx *f) { (void)f; return h_backward_through(&op_bwdsilent, 0); }
static ag_status h_bwd_inf(fx *f) { (void)f; return h_backward_through(&op_bwdinf, 1); }
static ag_status h_fwd_nan(fx *f) {
    ag_tape_set_check_numerics(f->t, 1);
    ag_tensor *y = ag_call(f->t, &op_fwdnan, TL(f->x23), 1, NULL);
    ag_tape_set_check_numerics(f->t, 0);
    f->msg = ag_tape_errmsg(f->t);
    return y ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_log_neg_numerics(fx *f) {
    ag_tape_set_check_numerics(f->t, 1);
    ag_tensor *y = ag_log(f->t, ag_scale(f->t, ag_exp(f->t, f->x23), -1));
    ag_tape_set_check_numerics(f->t, 0);
    f->msg = ag_tape_errmsg(f->t);
    return y ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_backward_twice(fx *f) {
    ag_tensor *J = ag_sum(f->t, ag_linear(f->t, f->x23, f->W, f->b));
    ck_assert_int_eq(ag_backward(f->t, J), AG_OK);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_backward_after_failed_op(fx *f) {
    ag_tensor *J = ag_sum(f->t, ag_linear(f->t, f->x23, f->W, f->b));
    ck_assert_ptr_null(ag_matmul(f->t, f->x23, f->x23));
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_backward_no_grad(fx *f) {
    ag_tensor *J = ag_sum(f->t, f->x23);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_backward_nograd_mode(fx *f) {
    ag_tape_set_grad_enabled(f->t, 0);
    ag_tensor *J = ag_sum(f->t, ag_linear(f->t, f->x23, f->W, f->b));
    ag_tape_set_grad_enabled(f->t, 1);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_backward_after_reset(fx *f) {
    ag_tensor *J = ag_sum(f->t, ag_linear(f->t, f->x23, f->W, f->b));
    ag_tape_reset(f->t);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_backward_empty_after_reset(fx *f) {
    ag_tensor *J = ag_sum(f->t, ag_linear(f->t, f->x23, f->W, f->b));
    ag_tape_reset(f->t);
    ag_tape_reset(f->t);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_arena_full_leaf(fx *f) {
    ag_tensor *x = ag_tensor_new(f->tl, 2, SH(1000, 1000));
    f->msg = ag_tape_errmsg(f->tl);
    return x ? AG_OK : ag_tape_status(f->tl);
}
static ag_status h_arena_full_op(fx *f) {
    ag_tensor *x = ag_tensor_new(f->tl, 2, SH(60, 100)); /* 24 KB */
    ag_tensor *y = ag_exp(f->tl, ag_exp(f->tl, ag_exp(f->tl, x)));
    f->msg = ag_tape_errmsg(f->tl);
    return y ? AG_OK : ag_tape_status(f->tl);
}
static ag_status h_arena_full_backward(fx *f) {
    /* forward fits (value buffers), backward needs a gradient buffer per node and runs out */
    ag_tape *t = f->tl;
    ag_tensor *x = ag_tensor_new(t, 2, SH(20, 400 / sizeof(ag_real))); /* 8 KB */
    ag_requires_grad(x);
    ag_tensor *y = x;
    for (int i = 0; i < 5 && y; i++) y = ag_neg(t, y);
    ck_assert_ptr_nonnull(y);
    ag_status st = ag_backward(t, ag_sum(t, y));
    f->msg = ag_tape_errmsg(t);
    return st;
}
static ag_status h_user_buffer_full(fx *f) {
    static char mem[2048];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = sizeof mem, .mem_buffer = mem}), AG_OK);
    ag_tensor *x = ag_tensor_new(t, 1, SH(1000));
    static char msg[AG_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "%s", ag_tape_errmsg(t));
    ag_status st = x ? AG_OK : ag_tape_status(t);
    ag_tape_reset(t);
    ck_assert_ptr_nonnull(ag_neg(t, ag_tensor_new(t, 1, SH(10)))); /* usable */
    ag_tape_free(t);
    f->msg = msg;
    return st;
}
static ag_status h_tape_new_tiny_buffer(fx *f) {
    char mem[32];
    ag_tape *t = (ag_tape *)1;
    ag_status st = ag_tape_new(&t, &(ag_tape_params){.mem_size = sizeof mem, .mem_buffer = mem});
    ck_assert_ptr_null(t);
    f->msg = "";
    return st;
}
static ag_status h_requires_grad_result(fx *f) {
    ag_status st = ag_requires_grad(f->res);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_requires_grad_stale(fx *f) {
    ag_status st = ag_requires_grad(f->stale);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_gradcheck(fx *f, ag_loss_fn fn, ag_tensor *const *wrt, size_t n, double eps, int with_res) {
    ag_gradcheck_result r;
    ag_status st = ag_gradcheck(f->t, fn, f, wrt, n, eps, with_res ? &r : NULL);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_tensor *loss_ok(ag_tape *t, void *ctx) {
    fx *f = ctx;
    return ag_sum(t, ag_square(t, ag_linear(t, ag_tensor_new(t, 2, SH(2, 3)), f->W, f->b)));
}
static ag_tensor *loss_null(ag_tape *t, void *ctx) { (void)t; (void)ctx; return NULL; }
static ag_tensor *loss_failed(ag_tape *t, void *ctx) {
    (void)ctx;
    return ag_matmul(t, ag_tensor_new(t, 2, SH(2, 3)), ag_tensor_new(t, 2, SH(2, 3)));
}
static ag_tensor *loss_vector(ag_tape *t, void *ctx) {
    fx *f = ctx;
    return ag_linear(t, ag_tensor_new(t, 2, SH(2, 3)), f->W, f->b);
}
static ag_status h_gc_f_null(fx *f) { return h_gradcheck(f, NULL, TL(f->W), 1, 1e-3, 1); }
static ag_status h_gc_wrt_null(fx *f) { return h_gradcheck(f, loss_ok, NULL, 1, 1e-3, 1); }
static ag_status h_gc_n0(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 0, 1e-3, 1); }
static ag_status h_gc_res_null(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, 1e-3, 0); }
static ag_status h_gc_eps0(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, 0, 1); }
static ag_status h_gc_eps_neg(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, -1e-3, 1); }
static ag_status h_gc_eps_nan(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, NAN, 1); }
static ag_status h_gc_eps_inf(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, INFINITY, 1); }
static ag_status h_gc_eps_tiny(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W), 1, 1e-300, 1); }
static ag_status h_gc_wrt_elem_null(fx *f) { return h_gradcheck(f, loss_ok, TL(f->W, NULL), 2, 1e-3, 1); }
static ag_status h_gc_wrt_tape(fx *f) { return h_gradcheck(f, loss_ok, TL(f->x23), 1, 1e-3, 1); }
static ag_status h_gc_loss_null(fx *f) { return h_gradcheck(f, loss_null, TL(f->W), 1, 1e-3, 1); }
static ag_status h_gc_loss_failed(fx *f) { return h_gradcheck(f, loss_failed, TL(f->W), 1, 1e-3, 1); }
static ag_status h_gc_loss_vector(fx *f) { return h_gradcheck(f, loss_vector, TL(f->W), 1, 1e-3, 1); }
static ag_status h_gc_no_tape(fx *f) {
    ag_gradcheck_result r;
    f->msg = "";
    return ag_gradcheck(NULL, loss_ok, f, TL(f->W), 1, 1e-3, &r);
}
/* ag_gradcheck_leaves: the loss functions wrap lbuf (2x3) as f's leaf, or get it wrong */
static ag_real lbuf[6] = {0.5, -1, 0.25, 2, -0.75, 1}, lbuf2[4];
static ag_tensor *loss_leaf(ag_tape *t, void *ctx) {
    fx *f = ctx;
    ag_tensor *x = ag_tensor_wrap(t, 2, SH(2, 3), lbuf);
    ag_requires_grad(x);
    return ag_sum(t, ag_square(t, ag_linear(t, x, f->W, f->b)));
}
static ag_tensor *loss_leaf_unmarked(ag_tape *t, void *ctx) {
    fx *f = ctx;
    return ag_sum(t, ag_square(t, ag_linear(t, ag_tensor_wrap(t, 2, SH(2, 3), lbuf), f->W, f->b)));
}
static ag_tensor *loss_leaf_copied(ag_tape *t, void *ctx) { /* a copy: perturbing lbuf would change nothing */
    fx *f = ctx;
    ag_tensor *x = ag_tensor_from(t, 2, SH(2, 3), lbuf);
    ag_requires_grad(x);
    return ag_sum(t, ag_square(t, ag_linear(t, x, f->W, f->b)));
}
static ag_status h_gcl(fx *f, ag_loss_fn fn, ag_tensor *const *params, size_t np, const ag_gradcheck_leaf *leaves,
                       size_t nl, double eps) {
    ag_gradcheck_result r;
    ag_status st = ag_gradcheck_leaves(f->t, fn, f, params, np, leaves, nl, eps, &r);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
#define LEAF(v, n) ((ag_gradcheck_leaf[]){{(v), (n), NULL}})
static ag_status h_gcl_params_null(fx *f) { return h_gcl(f, loss_leaf, NULL, 1, LEAF(lbuf, 6), 1, 1e-3); }
static ag_status h_gcl_leaves_null(fx *f) { return h_gcl(f, loss_leaf, TL(f->W), 1, NULL, 1, 1e-3); }
static ag_status h_gcl_nothing(fx *f) { return h_gcl(f, loss_leaf, NULL, 0, NULL, 0, 1e-3); }
static ag_status h_gcl_value_null(fx *f) { return h_gcl(f, loss_leaf, NULL, 0, LEAF(NULL, 6), 1, 1e-3); }
static ag_status h_gcl_size0(fx *f) { return h_gcl(f, loss_leaf, NULL, 0, LEAF(lbuf, 0), 1, 1e-3); }
static ag_status h_gcl_same(fx *f) {
    return h_gcl(f, loss_leaf, NULL, 0, (ag_gradcheck_leaf[]){{lbuf, 6, NULL}, {lbuf2, 4, NULL}, {lbuf, 6, NULL}}, 3,
                 1e-3);
}
static ag_status h_gcl_not_wrapped(fx *f) { return h_gcl(f, loss_leaf, TL(f->W), 1, LEAF(lbuf2, 4), 1, 1e-3); }
static ag_status h_gcl_copied(fx *f) { return h_gcl(f, loss_leaf_copied, NULL, 0, LEAF(lbuf, 6), 1, 1e-3); }
static ag_status h_gcl_unmarked(fx *f) { return h_gcl(f, loss_leaf_unmarked, TL(f->W), 1, LEAF(lbuf, 6), 1, 1e-3); }
static ag_status h_gcl_size(fx *f) { return h_gcl(f, loss_leaf, NULL, 0, LEAF(lbuf, 5), 1, 1e-3); }
static ag_status h_gcl_eps_tiny(fx *f) { return h_gcl(f, loss_leaf, NULL, 0, LEAF(lbuf, 6), 1, 1e-300); }
static ag_status h_gcl_nomem(fx *f) { /* scratch for 2^29 gradients: more than the suite's allocator gives */
    return h_gcl(f, loss_leaf, NULL, 0, LEAF(lbuf, (size_t)1 << 29), 1, 1e-3);
}
static ag_status h_gcl_no_tape(fx *f) {
    ag_gradcheck_result r;
    f->msg = "";
    return ag_gradcheck_leaves(NULL, loss_leaf, f, NULL, 0, LEAF(lbuf, 6), 1, 1e-3, &r);
}

/* params-store rows on a scratch store (so the fixture store never changes) */
static ag_params *scratch_ps;
static ag_status h_params(fx *f, const char *name, int ndim, const size_t *shape, unsigned flags, int null_out) {
    ag_tensor *x = (ag_tensor *)1;
    if (!scratch_ps) ck_assert_int_eq(ag_params_new(&scratch_ps), AG_OK);
    ag_tensor *dummy;
    if (!ag_params_find(scratch_ps, "taken"))
        ck_assert_int_eq(ag_params_add(scratch_ps, "taken", 1, SH(2), 0, &dummy), AG_OK);
    size_t count = ag_params_count(scratch_ps), numel = ag_params_numel(scratch_ps);
    ag_status st = ag_params_add(scratch_ps, name, ndim, shape, flags, null_out ? NULL : &x);
    f->msg = ag_params_errmsg(scratch_ps);
    if (st != AG_OK) {
        ck_assert_msg(null_out || x == NULL, "params_add left *out set on failure");
        ck_assert_uint_eq(ag_params_count(scratch_ps), count);
        ck_assert_uint_eq(ag_params_numel(scratch_ps), numel);
        /* still usable */
        char nm[32];
        snprintf(nm, sizeof nm, "ok%zu", count);
        ck_assert_int_eq(ag_params_add(scratch_ps, nm, 1, SH(3), 0, &dummy), AG_OK);
    }
    return st;
}
static char long_name[300];
static ag_status h_ps_null_name(fx *f) { return h_params(f, NULL, 1, SH(2), 0, 0); }
static ag_status h_ps_empty_name(fx *f) { return h_params(f, "", 1, SH(2), 0, 0); }
static ag_status h_ps_long_name(fx *f) {
    memset(long_name, 'n', 200);
    long_name[200] = '\0';
    return h_params(f, long_name, 1, SH(2), 0, 0);
}
static ag_status h_ps_null_out(fx *f) { return h_params(f, "p", 1, SH(2), 0, 1); }
static ag_status h_ps_rank5(fx *f) { return h_params(f, "p", 5, SH(1, 1, 1, 1, 1), 0, 0); }
static ag_status h_ps_rankneg(fx *f) { return h_params(f, "p", -1, SH(1), 0, 0); }
static ag_status h_ps_shape_null(fx *f) { return h_params(f, "p", 2, NULL, 0, 0); }
static ag_status h_ps_flags(fx *f) { return h_params(f, "p", 1, SH(2), AG_PARAM, 0); }
static ag_status h_ps_flags_rg(fx *f) { return h_params(f, "p", 1, SH(2), AG_REQUIRES_GRAD | AG_DECAY, 0); }
static ag_status h_ps_dup(fx *f) { return h_params(f, "taken", 1, SH(2), 0, 0); }
static ag_status h_ps_zero(fx *f) { return h_params(f, "p", 2, SH(3, 0), 0, 0); }
static ag_status h_ps_zero1(fx *f) { return h_params(f, "p", 1, SH(0), 0, 0); }
static ag_status h_ps_m1(fx *f) { return h_params(f, "p", 1, SH(BIG), 0, 0); }
static ag_status h_ps_m1x2(fx *f) { return h_params(f, "p", 2, SH(2, BIG), 0, 0); }
static ag_status h_ps_ovf(fx *f) { return h_params(f, "p", 2, SH(HALF, HALF), 0, 0); }
static ag_status h_ps_ovf4(fx *f) { return h_params(f, "p", 4, SH(1 << 16, 1 << 16, 1 << 16, 1 << 16), 0, 0); }
/* the largest count a shape may have, one short: rounded up to the alignment it passes the limit */
static ag_status h_ps_round_ovf(fx *f) { return h_params(f, "p", 1, SH(SIZE_MAX / 4 / sizeof(ag_real) - 1), 0, 0); }
static ag_status h_ps_too_big(fx *f) { return h_params(f, "p", 1, SH(BIG / 2 / sizeof(ag_real)), 0, 0); }
static ag_status h_ps_null_store(fx *f) {
    ag_tensor *x = (ag_tensor *)1;
    f->msg = ag_params_errmsg(NULL);
    ag_status st = ag_params_add(NULL, "p", 1, SH(2), 0, &x);
    ck_assert_ptr_null(x);
    return st;
}
static ag_status h_ps_new_null(fx *f) { f->msg = ""; return ag_params_new(NULL); }
static ag_status h_ps_accessors(fx *f) {
    /* NULL and out-of-range accessors answer without crashing */
    ck_assert_uint_eq(ag_params_count(NULL), 0);
    ck_assert_ptr_null(ag_params_at(NULL, 0));
    ck_assert_ptr_null(ag_params_at(f->ps, 2));
    ck_assert_ptr_null(ag_params_at(f->ps, BIG));
    ck_assert_ptr_null(ag_params_find(NULL, "W"));
    ck_assert_ptr_null(ag_params_find(f->ps, NULL));
    ck_assert_ptr_null(ag_params_find(f->ps, "nope"));
    ck_assert_uint_eq(ag_params_numel(NULL), 0);
    ck_assert_ptr_null(ag_params_values(NULL));
    ck_assert_ptr_null(ag_params_grads(NULL));
    ag_params_zero_grad(NULL);
    ag_params_free(NULL);
    f->msg = ag_params_errmsg(NULL);
    return ag_params_status(NULL);
}

/* optimizer rows */
static ag_status h_optim(fx *f, ag_optim_config c) {
    ag_optim *o = (ag_optim *)1;
    ag_status st = ag_optim_new(&o, f->ps, &c, f->err, sizeof f->err);
    if (st == AG_OK) ag_optim_free(o);
    else ck_assert_ptr_null(o);
    f->msg = f->err;
    return st;
}
#define OPTROW(name, ...) static ag_status h_opt_##name(fx *f) { return h_optim(f, (ag_optim_config){__VA_ARGS__}); }
OPTROW(lr0, .kind = AG_OPT_SGD, .lr = 0)
OPTROW(lrneg, .kind = AG_OPT_SGD, .lr = -0.1)
OPTROW(lrnan, .kind = AG_OPT_SGD, .lr = NAN)
OPTROW(lrinf, .kind = AG_OPT_SGD, .lr = INFINITY)
OPTROW(kind, .kind = (ag_optim_kind)42, .lr = 0.1)
OPTROW(kindneg, .kind = (ag_optim_kind)-1, .lr = 0.1)
OPTROW(wdneg, .kind = AG_OPT_SGD, .lr = 0.1, .weight_decay = -1)
OPTROW(wdnan, .kind = AG_OPT_SGD, .lr = 0.1, .weight_decay = NAN)
OPTROW(mom1, .kind = AG_OPT_MOMENTUM, .lr = 0.1, .momentum = 1)
OPTROW(momneg, .kind = AG_OPT_NESTEROV, .lr = 0.1, .momentum = -0.5)
OPTROW(beta1, .kind = AG_OPT_ADAM, .lr = 0.1, .beta1 = 1.5)
OPTROW(beta2, .kind = AG_OPT_ADAM, .lr = 0.1, .beta2 = 1)
OPTROW(epsneg, .kind = AG_OPT_ADAMW, .lr = 0.1, .eps = -1e-8)
OPTROW(clipneg, .kind = AG_OPT_SGD, .lr = 0.1, .clip_norm = -1)
OPTROW(clipnan, .kind = AG_OPT_SGD, .lr = 0.1, .clip_norm = NAN)
OPTROW(sched, .kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = (ag_sched_kind)9})
OPTROW(step0, .kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 0, .gamma = 0.5})
OPTROW(gamma0, .kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_STEP, .step_size = 10, .gamma = 0})
OPTROW(cos, .kind = AG_OPT_SGD, .lr = 0.1, .schedule = {.kind = AG_SCHED_COSINE, .total_steps = 5, .warmup_steps = 5})
static ag_status h_opt_null_cfg(fx *f) {
    ag_optim *o;
    f->msg = f->err;
    return ag_optim_new(&o, f->ps, NULL, f->err, sizeof f->err);
}
static ag_status h_opt_null_ps(fx *f) {
    ag_optim *o;
    f->msg = f->err;
    return ag_optim_new(&o, NULL, &(ag_optim_config){.lr = 1}, f->err, sizeof f->err);
}
static ag_status h_opt_null_out(fx *f) {
    f->msg = "";
    return ag_optim_new(NULL, f->ps, &(ag_optim_config){.lr = 1}, f->err, sizeof f->err);
}
static ag_status h_opt_store_grew(fx *f) {
    ag_params *ps;
    ag_optim *o;
    ag_tensor *x;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "a", 1, SH(3), 0, &x), AG_OK);
    ck_assert_int_eq(ag_optim_new(&o, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.1}, NULL, 0), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "b", 1, SH(100), 0, &x), AG_OK);
    ag_status st = ag_optim_step(o);
    snprintf(f->err, sizeof f->err, "%s", ag_optim_errmsg(o));
    ag_optim_free(o);
    ag_params_free(ps);
    f->msg = f->err;
    return st;
}
static ag_status h_opt_nan_grad(fx *f) {
    f->W->grad[3] = (ag_real)NAN;
    f->b->grad[0] = 1;
    uint64_t steps = ag_optim_steps(f->opt);
    ag_status st = ag_optim_step(f->opt);
    f->msg = ag_optim_errmsg(f->opt);
    /* weights, state and step count untouched */
    ck_assert(memcmp(f->W->value, f->snapshot, 12 * sizeof(ag_real)) == 0);
    ck_assert_uint_eq(ag_optim_steps(f->opt), steps);
    ag_real *m;
    size_t n;
    ck_assert_int_eq(ag_optim_state(f->opt, 0, NULL, &m, &n), AG_OK);
    for (size_t i = 0; i < n; i++) ck_assert(m[i] == 0);
    ag_params_zero_grad(f->ps);
    return st;
}
static ag_status h_opt_state_range(fx *f) {
    const char *name = "x";
    ag_real *p = (ag_real *)1;
    size_t n = 7;
    ag_status st = ag_optim_state(f->opt, 2, &name, &p, &n);
    f->msg = ag_optim_errmsg(f->opt);
    return st;
}
static ag_status h_opt_state_null(fx *f) {
    f->msg = "";
    return ag_optim_state(NULL, 0, NULL, NULL, NULL);
}
static ag_status h_opt_null_misc(fx *f) {
    ck_assert_int_eq(ag_optim_step(NULL), AG_ERR_ARG);
    ag_optim_zero_grad(NULL);
    ag_optim_free(NULL);
    ag_optim_set_steps(NULL, 3);
    ck_assert_uint_eq(ag_optim_steps(NULL), 0);
    ck_assert_uint_eq(ag_optim_state_count(NULL), 0);
    ck_assert_ptr_null(ag_optim_get_config(NULL));
    ck_assert(ag_schedule_lr(NULL, 0.5, 3) == 0.5);
    ck_assert(ag_schedule_lr(&(ag_schedule){.kind = AG_SCHED_STEP}, 0.5, 3) == 0.5);
    ck_assert(ag_schedule_lr(&(ag_schedule){.kind = AG_SCHED_COSINE, .total_steps = 1, .warmup_steps = 2}, 0.5, 3) == 0.5);
    f->msg = ag_optim_errmsg(NULL);
    return AG_ERR_ARG;
}

/* layers */
static ag_status h_dense_init(fx *f, ag_params *ps, const char *name, size_t in, size_t out, ag_act act) {
    ag_dense d;
    ag_params *own = NULL;
    if (!ps) {
        f->msg = "";
        return ag_dense_init(&d, NULL, name, in, out, act);
    }
    if (ps == (ag_params *)1) {
        ck_assert_int_eq(ag_params_new(&own), AG_OK);
        ps = own;
    }
    ag_status st = ag_dense_init(&d, ps, name, in, out, act);
    snprintf(f->err, sizeof f->err, "%s", ag_params_errmsg(ps));
    f->msg = f->err;
    if (own) ag_params_free(own);
    return st;
}
static ag_status h_dense_zero_in(fx *f) { return h_dense_init(f, (ag_params *)1, "fc", 0, 4, AG_ACT_RELU); }
static ag_status h_dense_zero_out(fx *f) { return h_dense_init(f, (ag_params *)1, "fc", 3, 0, AG_ACT_RELU); }
static ag_status h_dense_ovf(fx *f) { return h_dense_init(f, (ag_params *)1, "fc", HALF, HALF, AG_ACT_RELU); }
static ag_status h_dense_m1(fx *f) { return h_dense_init(f, (ag_params *)1, "fc", BIG, 2, AG_ACT_RELU); }
static ag_status h_dense_dup(fx *f) {
    ag_params *ps;
    ag_dense d;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 3, 4, AG_ACT_TANH), AG_OK);
    ag_status st = ag_dense_init(&d, ps, "fc", 3, 4, AG_ACT_TANH);
    snprintf(f->err, sizeof f->err, "%s", ag_params_errmsg(ps));
    ck_assert_uint_eq(ag_params_count(ps), 2);
    ag_params_free(ps);
    f->msg = f->err;
    return st;
}
static ag_status h_dense_act(fx *f) { return h_dense_init(f, (ag_params *)1, "fc", 3, 4, (ag_act)17); }
static ag_status h_dense_null_ps(fx *f) { return h_dense_init(f, NULL, "fc", 3, 4, AG_ACT_RELU); }
static ag_status h_dense_null_name(fx *f) { return h_dense_init(f, (ag_params *)1, NULL, 3, 4, AG_ACT_RELU); }
static ag_status h_dense_weights(fx *f) {
    ag_dense d = {f->W, f->b, 3, 4, AG_ACT_RELU};
    ag_rng r;
    ag_rng_seed(&r, 1);
    f->msg = "";
    ck_assert_int_eq(ag_dense_init_weights(NULL, AG_INIT_HE_NORMAL, &r), AG_ERR_ARG);
    ck_assert_int_eq(ag_dense_init_weights(&d, AG_INIT_HE_NORMAL, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_dense_init_weights(&(ag_dense){0}, AG_INIT_HE_NORMAL, &r), AG_ERR_ARG);
    ag_status st = ag_dense_init_weights(&d, (ag_init)99, &r);
    ck_assert(memcmp(f->W->value, f->snapshot, 12 * sizeof(ag_real)) == 0);
    return st;
}
static ag_status h_dense_fwd(fx *f, ag_tensor *x, int null_layer) {
    ag_dense d = {f->W, f->b, 3, 4, AG_ACT_RELU};
    ag_tensor *z = (ag_tensor *)1;
    ag_tensor *a = ag_dense_forward(f->t, null_layer ? NULL : &d, x, &z);
    f->msg = ag_tape_errmsg(f->t);
    return a ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_dense_fwd_shape(fx *f) { return h_dense_fwd(f, f->x34, 0); }
static ag_status h_dense_fwd_null(fx *f) { return h_dense_fwd(f, NULL, 0); }
static ag_status h_dense_fwd_layer(fx *f) { return h_dense_fwd(f, f->x23, 1); }
static ag_status h_dense_fwd_other(fx *f) { return h_dense_fwd(f, f->other, 0); }
static ag_status h_dense_fwd_stale(fx *f) { return h_dense_fwd(f, f->stale, 0); }
static ag_status h_dense_fwd_badact(fx *f) {
    ag_dense d = {f->W, f->b, 3, 4, (ag_act)9};
    ag_tensor *a = ag_dense_forward(f->t, &d, f->x23, NULL);
    f->msg = ag_tape_errmsg(f->t);
    return a ? AG_OK : ag_tape_status(f->t);
}

static ag_status h_spec(fx *f, const char *spec, size_t max) {
    size_t sizes[8], n = 99;
    ag_status st = ag_mlp_parse_spec(spec, sizes, max, &n, f->err, sizeof f->err);
    ck_assert_uint_eq(n, 0);
    f->msg = f->err;
    return st;
}
#define SPECROW(name, spec, max) static ag_status h_spec_##name(fx *f) { return h_spec(f, spec, max); }
SPECROW(null, NULL, 8)
SPECROW(empty, "", 8)
SPECROW(one, "784", 8)
SPECROW(dashdash, "784--10", 8)
SPECROW(lead, "-784-10", 8)
SPECROW(trail, "784-10-", 8)
SPECROW(zero, "784-0-10", 8)
SPECROW(alpha, "784-2x6-10", 8)
SPECROW(space, "784 - 10", 8)
SPECROW(neg, "784-+5-10", 8)
SPECROW(huge, "784-99999999999999999999999999-10", 8)
SPECROW(many, "1-2-3-4-5-6-7-8-9", 8)
SPECROW(max0, "1-2", 0)
SPECROW(ctrl, "1-\x01-2", 8)
static ag_status h_spec_nulls(fx *f) {
    size_t n;
    f->msg = f->err;
    return ag_mlp_parse_spec("1-2", NULL, 8, &n, f->err, sizeof f->err);
}
static ag_status h_mlp(fx *f, const ag_mlp_config *cfg, int use_fixture_ps) {
    ag_params *ps = f->ps;
    if (!use_fixture_ps) ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_mlp *m = (ag_mlp *)1;
    ag_status st = ag_mlp_new(&m, ps, cfg, f->err, sizeof f->err);
    ck_assert_ptr_null(m);
    if (!use_fixture_ps) ag_params_free(ps);
    f->msg = f->err;
    return st;
}
static ag_status h_mlp_cfg_null(fx *f) { return h_mlp(f, NULL, 0); }
static ag_status h_mlp_spec(fx *f) { return h_mlp(f, &(ag_mlp_config){.spec = "3--4"}, 0); }
static ag_status h_mlp_acts(fx *f) {
    return h_mlp(f, &(ag_mlp_config){.spec = "3-4-2", .acts = (ag_act[]){AG_ACT_RELU}, .n_acts = 1}, 0);
}
static ag_status h_mlp_act_bad(fx *f) { return h_mlp(f, &(ag_mlp_config){.spec = "3-4-2", .hidden = (ag_act)7}, 0); }
static ag_status h_mlp_init_bad(fx *f) { return h_mlp(f, &(ag_mlp_config){.spec = "3-4-2", .init = (ag_init)7}, 0); }
static ag_status h_mlp_dup(fx *f) {
    /* names W.W... do not clash; "W" prefix with layer numbers neither: use prefix that clashes */
    ag_params *ps;
    ag_tensor *x;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "fc2.b", 1, SH(2), 0, &x), AG_OK);
    ag_mlp *m = (ag_mlp *)1;
    ag_status st = ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "3-4-2"}, f->err, sizeof f->err);
    ck_assert_ptr_null(m);
    ag_params_free(ps);
    f->msg = f->err;
    return st;
}
static ag_status h_mlp_big(fx *f) { return h_mlp(f, &(ag_mlp_config){.spec = "100000000-100000000"}, 0); }
static ag_mlp *small_mlp(ag_params **ps) {
    ag_mlp *m;
    ck_assert_int_eq(ag_params_new(ps), AG_OK);
    ck_assert_int_eq(ag_mlp_new(&m, *ps, &(ag_mlp_config){.spec = "3-4-2", .hidden = AG_ACT_TANH}, NULL, 0), AG_OK);
    return m;
}
static ag_status h_mlp_fwd(fx *f, int which) {
    ag_params *ps;
    ag_mlp *m = small_mlp(&ps);
    ag_tensor *r = NULL;
    int32_t lab[8] = {0, 1, 0, 1, 0, 1, 0, 5};
    switch (which) {
    case 0: r = ag_mlp_forward(f->t, m, f->x34, NULL, NULL); break;
    case 1: r = ag_mlp_forward(f->t, NULL, f->x23, NULL, NULL); break;
    case 2: r = ag_mlp_forward(f->t, m, NULL, NULL, NULL); break;
    case 3: r = ag_mlp_cost_squared_error(f->t, m, ag_mlp_forward(f->t, m, f->x23, NULL, NULL), f->x23, 0.1); break;
    case 4: r = ag_mlp_cost_cross_entropy(f->t, m, ag_mlp_forward(f->t, m, f->x83, NULL, NULL), lab, 0.1); break;
    case 5: r = ag_mlp_cost_cross_entropy(f->t, m, ag_mlp_forward(f->t, m, f->x83, NULL, NULL), NULL, 0); break;
    case 6: r = ag_mlp_cost_squared_error(f->t, NULL, f->x23, f->x23, 0.1); break;
    case 7: r = ag_mlp_forward(f->t, m, f->other, NULL, NULL); break;
    }
    ag_mlp_free(m);
    ag_params_free(ps);
    f->msg = ag_tape_errmsg(f->t);
    return r ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_mlp_fwd0(fx *f) { return h_mlp_fwd(f, 0); }
static ag_status h_mlp_fwd1(fx *f) { return h_mlp_fwd(f, 1); }
static ag_status h_mlp_fwd2(fx *f) { return h_mlp_fwd(f, 2); }
static ag_status h_mlp_fwd3(fx *f) { return h_mlp_fwd(f, 3); }
static ag_status h_mlp_fwd4(fx *f) { return h_mlp_fwd(f, 4); }
static ag_status h_mlp_fwd5(fx *f) { return h_mlp_fwd(f, 5); }
static ag_status h_mlp_fwd6(fx *f) { return h_mlp_fwd(f, 6); }
static ag_status h_mlp_fwd7(fx *f) { return h_mlp_fwd(f, 7); }
static ag_status h_act_parse(fx *f) {
    ag_act a = AG_ACT_TANH;
    f->msg = "";
    ck_assert_int_eq(ag_act_parse(NULL, &a), AG_ERR_ARG);
    ck_assert_int_eq(ag_act_parse("relu", NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_act_parse("", &a), AG_ERR_ARG);
    ck_assert_int_eq(ag_act_parse("RELU ", &a), AG_ERR_ARG);
    ck_assert_str_eq(ag_act_name((ag_act)-3), "?");
    ag_status st = ag_act_parse("swish", &a);
    ck_assert_int_eq(a, AG_ACT_TANH);
    return st;
}
static ag_status h_activate_bad(fx *f) {
    ag_tensor *r = ag_activate(f->t, (ag_act)11, f->x23);
    f->msg = ag_tape_errmsg(f->t);
    return r ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_cost(fx *f, int which) {
    ag_tensor *r = NULL;
    int32_t lab[8] = {0};
    switch (which) {
    case 0: r = ag_cost_squared_error_l2(f->t, f->x23, f->x23, 0.1, NULL, 2); break;
    case 1: r = ag_cost_squared_error_l2(f->t, f->x23, f->x34, 0.1, TL(f->W), 1); break;
    case 2: r = ag_cost_cross_entropy_l2(f->t, f->x23, NULL, 0.1, TL(f->W), 1); break;
    case 3: r = ag_cost_cross_entropy_l2(f->t, f->x23, lab, 0.1, TL(NULL), 1); break;
    case 4: r = ag_l2_decay(f->t, 0.1, NULL); break;
    case 5: {
        ag_params *ps;
        ag_tensor *x;
        ck_assert_int_eq(ag_params_new(&ps), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "bias", 1, SH(2), 0, &x), AG_OK);
        r = ag_l2_decay(f->t, 0.1, ps);
        ag_params_free(ps);
        break;
    }
    case 6: r = ag_cost_squared_error_l2(f->t, f->x23, f->x23, 0.1, TL(f->other), 1); break;
    }
    f->msg = ag_tape_errmsg(f->t);
    return r ? AG_OK : ag_tape_status(f->t);
}
static ag_status h_cost0(fx *f) { return h_cost(f, 0); }
static ag_status h_cost1(fx *f) { return h_cost(f, 1); }
static ag_status h_cost2(fx *f) { return h_cost(f, 2); }
static ag_status h_cost3(fx *f) { return h_cost(f, 3); }
static ag_status h_cost4(fx *f) { return h_cost(f, 4); }
static ag_status h_cost5(fx *f) { return h_cost(f, 5); }
static ag_status h_cost6(fx *f) { return h_cost(f, 6); }
static ag_status h_ref_new(fx *f) {
    ag_ref_mlp *r = (ag_ref_mlp *)1;
    f->msg = "";
    ck_assert_int_eq(ag_ref_new(NULL, 2, SH(2, 1), AG_REF_SIGMOID, 4), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 1, SH(2), AG_REF_SIGMOID, 4), AG_ERR_ARG);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(ag_ref_new(&r, 2, NULL, AG_REF_SIGMOID, 4), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 2, SH(2, 0), AG_REF_SIGMOID, 4), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_new(&r, 2, SH(2, 1), (ag_ref_act)5, 4), AG_ERR_ARG);
    ag_ref_free(NULL);
    return ag_ref_new(&r, 2, SH(2, 1), AG_REF_TANH, 0);
}
static ag_status h_ref_calls(fx *f) {
    ag_ref_mlp *r;
    ck_assert_int_eq(ag_ref_new(&r, 3, SH(2, 3, 1), AG_REF_TANH, 4), AG_OK);
    double x[10] = {0}, y[5] = {0}, dW[6];
    ck_assert(isnan(ag_ref_forward(r, x, y, 0, 0)));
    ck_assert(isnan(ag_ref_forward(r, x, y, 5, 0)));
    ck_assert_int_eq(ag_ref_backprop(r, x, y, 5, 0), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_backprop(r, NULL, y, 2, 0), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_gradient(r, 0, 2, 0, dW, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_ref_gradient(r, 3, 2, 0, dW, NULL), AG_ERR_ARG);
    ag_status st = ag_ref_update(r, 0, 0.1, 0);
    ck_assert_int_eq(ag_ref_update(NULL, 2, 0.1, 0), AG_ERR_ARG);
    ag_ref_free(r);
    f->msg = "";
    return st;
}

/* model files */
static ag_status h_save(fx *f, const char *path, const ag_named_buf *extra, size_t n_extra, const ag_kv *meta,
                        size_t n_meta, int null_ps) {
    ag_status st = ag_model_save(path, null_ps ? NULL : f->ps, extra, n_extra, meta, n_meta, f->err, sizeof f->err);
    f->msg = f->err;
    return st;
}
static ag_real ebuf[4];
static ag_status h_save_nodir(fx *f) { return h_save(f, "/nonexistent_dir_ag/x/model.st", NULL, 0, NULL, 0, 0); }
static ag_status h_save_null_path(fx *f) { return h_save(f, NULL, NULL, 0, NULL, 0, 0); }
static ag_status h_save_empty_path(fx *f) { return h_save(f, "", NULL, 0, NULL, 0, 0); }
static ag_status h_save_dir(fx *f) { return h_save(f, f->dir, NULL, 0, NULL, 0, 0); }
static ag_status h_save_extra_null(fx *f) { return h_save(f, f->model, NULL, 2, NULL, 0, 0); }
static ag_status h_save_extra_nodata(fx *f) {
    return h_save(f, f->model, (ag_named_buf[]){{"opt.m", NULL, 4}}, 1, NULL, 0, 0);
}
static ag_status h_save_extra_noname(fx *f) { return h_save(f, f->model, (ag_named_buf[]){{NULL, ebuf, 4}}, 1, NULL, 0, 0); }
static ag_status h_save_extra_dup(fx *f) { return h_save(f, f->model, (ag_named_buf[]){{"W", ebuf, 4}}, 1, NULL, 0, 0); }
static ag_status h_save_extra_huge(fx *f) { return h_save(f, f->model, (ag_named_buf[]){{"big", ebuf, BIG}}, 1, NULL, 0, 0); }
static ag_status h_save_meta_crc(fx *f) { return h_save(f, f->model, NULL, 0, (ag_kv[]){{"crc32", "0"}}, 1, 0); }
static ag_status h_save_meta_dup(fx *f) {
    return h_save(f, f->model, NULL, 0, (ag_kv[]){{"arch", "1"}, {"arch", "2"}}, 2, 0);
}
static ag_status h_save_meta_null(fx *f) { return h_save(f, f->model, NULL, 0, (ag_kv[]){{NULL, "1"}}, 1, 0); }
static ag_status h_save_meta_nullv(fx *f) { return h_save(f, f->model, NULL, 0, (ag_kv[]){{"k", NULL}}, 1, 0); }
static ag_status h_save_meta_arr(fx *f) { return h_save(f, f->model, NULL, 0, NULL, 3, 0); }
static ag_status h_save_meta_many(fx *f) {
    static ag_kv kv[AG_MODEL_MAX_META + 1];
    static char keys[AG_MODEL_MAX_META + 1][8];
    for (int i = 0; i <= AG_MODEL_MAX_META; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        kv[i] = (ag_kv){keys[i], "v"};
    }
    return h_save(f, f->model, NULL, 0, kv, AG_MODEL_MAX_META + 1, 0);
}
static ag_status h_save_bad_name(fx *f) { return h_save(f, f->model, (ag_named_buf[]){{"", ebuf, 4}}, 1, NULL, 0, 0); }

static ag_status h_load(fx *f, const char *path, ag_params *ps, ag_named_buf *extra, size_t n_extra) {
    ag_status st = ag_model_load(path, ps, extra, n_extra, f->err, sizeof f->err);
    f->msg = f->err;
    return st;
}
static ag_status h_load_missing(fx *f) {
    char p[512];
    ag_test_scratch_path(p, sizeof p, "missing.st");
    return h_load(f, p, f->ps, NULL, 0);
}
static ag_status h_load_dir(fx *f) { return h_load(f, f->dir, f->ps, NULL, 0); }
static ag_status h_load_null_path(fx *f) { return h_load(f, NULL, f->ps, NULL, 0); }
static ag_status h_load_null_ps(fx *f) { return h_load(f, f->model, NULL, NULL, 0); }
static ag_status h_load_junk(fx *f) { return h_load(f, f->junk, f->ps, NULL, 0); }
static ag_status h_load_idx(fx *f) { return h_load(f, f->idx_img, f->ps, NULL, 0); }
static ag_status h_load_devnull(fx *f) { return h_load(f, "/dev/null", f->ps, NULL, 0); }
static ag_status h_load_extra_missing(fx *f) {
    return h_load(f, f->model, f->ps, (ag_named_buf[]){{"opt.m", ebuf, 4}}, 1);
}
static ag_status h_load_extra_null(fx *f) { return h_load(f, f->model, f->ps, NULL, 1); }
static ag_status h_load_store(fx *f, const char *spec) {
    /* a store that does not match the file: other shape, missing or extra tensors */
    ag_params *ps;
    ag_tensor *x;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    if (!strcmp(spec, "shape")) {
        ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(3, 4), AG_DECAY, &x), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "b", 1, SH(4), 0, &x), AG_OK);
    } else if (!strcmp(spec, "rank")) {
        ck_assert_int_eq(ag_params_add(ps, "W", 1, SH(12), AG_DECAY, &x), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "b", 1, SH(4), 0, &x), AG_OK);
    } else if (!strcmp(spec, "extra")) {
        ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(4, 3), AG_DECAY, &x), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "b", 1, SH(4), 0, &x), AG_OK);
        ck_assert_int_eq(ag_params_add(ps, "c", 1, SH(4), 0, &x), AG_OK);
    } else if (!strcmp(spec, "fewer")) {
        ck_assert_int_eq(ag_params_add(ps, "W", 2, SH(4, 3), AG_DECAY, &x), AG_OK);
    } else if (!strcmp(spec, "empty")) {
    }
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        x = ag_params_at(ps, i);
        for (size_t k = 0; k < x->size; k++) x->value[k] = (ag_real)7;
    }
    ag_status st = ag_model_load(f->model, ps, NULL, 0, f->err, sizeof f->err);
    for (size_t i = 0; i < ag_params_count(ps); i++) {
        x = ag_params_at(ps, i);
        for (size_t k = 0; k < x->size; k++) ck_assert(x->value[k] == 7); /* unchanged */
    }
    ag_params_free(ps);
    f->msg = f->err;
    return st;
}
static ag_status h_load_shape(fx *f) { return h_load_store(f, "shape"); }
static ag_status h_load_rank(fx *f) { return h_load_store(f, "rank"); }
static ag_status h_load_extra_param(fx *f) { return h_load_store(f, "extra"); }
static ag_status h_load_fewer(fx *f) { return h_load_store(f, "fewer"); }
static ag_status h_load_empty(fx *f) { return h_load_store(f, "empty"); }

/* a file image of the fixture model, edited */
static ag_status h_parse(fx *f, const void *buf, size_t len) {
    ag_model_file *m = (ag_model_file *)1;
    ag_status st = ag_model_parse(buf, len, "mem", &m, f->err, sizeof f->err);
    if (st == AG_OK) {
        st = ag_model_read(m, f->ps, NULL, 0, f->err, sizeof f->err);
        ag_model_close(m);
    } else {
        ck_assert_ptr_null(m);
    }
    f->msg = f->err;
    return st;
}
static size_t model_image(fx *f, uint8_t *buf, size_t cap) {
    FILE *fp = fopen(f->model, "rb");
    ck_assert_ptr_nonnull(fp);
    size_t n = fread(buf, 1, cap, fp);
    fclose(fp);
    ck_assert_uint_lt(n, cap);
    return n;
}
/* After an edit of the header: the header_crc32 a save would have written for it (the CRC of the
 * 8 length bytes and the JSON with its own 8 digits as '0'), so that the row reaches the check it
 * is about rather than the header's CRC. */
static void reseal_header(uint8_t *buf, uint64_t hl) {
    char *p = find_bytes(buf + 8, (size_t)hl, "\"header_crc32\":\"0x", 18);
    ck_assert_ptr_nonnull(p);
    memset(p + 18, '0', 8);
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)ag_crc32(0, buf, (size_t)(8 + hl)));
    memcpy(p + 18, hex, 8);
}
static ag_status h_parse_edit(fx *f, int how) {
    uint8_t buf[4096];
    size_t n = model_image(f, buf, sizeof buf);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)buf[i] << (8 * i);
    switch (how) {
    case 0: return h_parse(f, buf, 4);                                    /* shorter than 8 */
    case 1: return h_parse(f, buf, n - 1);                                /* last byte cut */
    case 2: buf[n - 1] ^= 0x40; return h_parse(f, buf, n);                /* data flipped: crc */
    case 3: buf[8] = '['; return h_parse(f, buf, n);                      /* not an object */
    case 4: for (int i = 0; i < 8; i++) buf[i] = 0xff; return h_parse(f, buf, n); /* huge length */
    case 5: buf[0] = 0; buf[1] = 0; buf[2] = 0; buf[3] = 0; return h_parse(f, buf, n); /* length 0 */
    case 6: return h_parse(f, buf, (size_t)(8 + hl));                     /* header only */
    case 7: {                                                             /* unknown dtype */
        char *p = find_bytes(buf + 8, (size_t)hl, DT, 3);
        ck_assert_ptr_nonnull(p);
        memcpy(p, "Q99", 3);
        return h_parse(f, buf, n);
    }
    case 8: {                                                             /* another dtype */
        char *p = find_bytes(buf + 8, (size_t)hl, DT, 3);
        memcpy(p, DT[1] == '3' ? "I32" : "I64", 3);
        reseal_header(buf, hl);
        return h_parse(f, buf, n);
    }
    case 9: {                                                             /* crc text damaged */
        char *p = find_bytes(buf + 8, (size_t)hl, "\"0x", 3);
        ck_assert_ptr_nonnull(p);
        p[3] = 'z';
        return h_parse(f, buf, n);
    }
    case 10: { memcpy(buf + n, "XXXXXXXX", 8); return h_parse(f, buf, n + 8); } /* trailing data */
    case 11: {                                                            /* shape entry changed */
        char *p = find_bytes(buf + 8, (size_t)hl, "[4,3]", 5);
        if (!p) p = find_bytes(buf + 8, (size_t)hl, "[4, 3]", 6);
        ck_assert_ptr_nonnull(p);
        p[1] = '5';
        return h_parse(f, buf, n);
    }
    }
    return AG_OK;
}
#define EDITROW(k) static ag_status h_edit##k(fx *f) { return h_parse_edit(f, k); }
EDITROW(0) EDITROW(1) EDITROW(2) EDITROW(3) EDITROW(4) EDITROW(5) EDITROW(6) EDITROW(7) EDITROW(8) EDITROW(9)
EDITROW(10) EDITROW(11)
static ag_status h_parse_null(fx *f) { return h_parse(f, NULL, 10); }
static ag_status h_parse_empty(fx *f) { return h_parse(f, "", 0); }
static ag_status h_parse_null_out(fx *f) {
    f->msg = f->err;
    return ag_model_parse("x", 1, "mem", NULL, f->err, sizeof f->err);
}
static ag_status h_parse_json(fx *f, const char *json) {
    uint8_t buf[1024];
    size_t jl = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(buf + 8, json, jl);
    return h_parse(f, buf, 8 + jl);
}
#define JSONROW(name, json) static ag_status h_json_##name(fx *f) { return h_parse_json(f, json); }
JSONROW(empty, "")
JSONROW(open, "{")
JSONROW(notobj, "[]")
JSONROW(badoff, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[2],\"data_offsets\":[0,999]}}")
JSONROW(revoff, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[1],\"data_offsets\":[4,0]}}")
JSONROW(ovfshape, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}")
JSONROW(bigint, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,0]}}")
JSONROW(negint, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[-1],\"data_offsets\":[0,0]}}")
JSONROW(frac, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[1.5],\"data_offsets\":[0,0]}}")
JSONROW(ninedims, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}")
JSONROW(nodtype, "{\"W\":{\"shape\":[1],\"data_offsets\":[0,4]}}")
JSONROW(dupkey, "{\"W\":{\"dtype\":\"" DT "\",\"shape\":[],\"data_offsets\":[0,0]},\"W\":{\"dtype\":\"" DT "\",\"shape\":[],\"data_offsets\":[0,0]}}")
JSONROW(ctrl, "{\"W\x01\":1}")
JSONROW(badutf8, "{\"W\xff\":1}")
JSONROW(esc0, "{\"W\\u0000\":1}")
JSONROW(metanum, "{\"__metadata__\":{\"a\":1}}")
JSONROW(trailing, "{} x")
JSONROW(deep, "{\"__metadata__\":{\"a\":{\"b\":{}}}}")
static ag_status h_meta_range(fx *f) {
    ag_model_file *m;
    ck_assert_int_eq(ag_model_open(f->model, &m, f->err, sizeof f->err), AG_OK);
    const char *k = "x", *v = "y";
    ag_status st = ag_model_meta_at(m, 99, &k, &v);
    ck_assert_ptr_null(ag_model_tensor_at(m, 99));
    ck_assert_ptr_null(ag_model_find(m, "nope"));
    ck_assert_ptr_null(ag_model_find(m, NULL));
    ck_assert_ptr_null(ag_model_meta(m, "nope"));
    ck_assert_ptr_null(ag_model_meta(m, NULL));
    ag_model_close(m);
    ck_assert_uint_eq(ag_model_tensor_count(NULL), 0);
    ck_assert_uint_eq(ag_model_meta_count(NULL), 0);
    ck_assert_ptr_null(ag_model_meta(NULL, "arch"));
    ck_assert_ptr_null(ag_model_tensor_at(NULL, 0));
    ck_assert_int_eq(ag_model_meta_at(NULL, 0, &k, &v), AG_ERR_ARG);
    ag_model_close(NULL);
    f->msg = "";
    return st;
}
static ag_status h_read_null(fx *f) {
    f->msg = f->err;
    return ag_model_read(NULL, f->ps, NULL, 0, f->err, sizeof f->err);
}
static ag_status h_open_missing(fx *f) {
    ag_model_file *m = (ag_model_file *)1;
    ag_status st = ag_model_open("/nonexistent_ag/file.st", &m, f->err, sizeof f->err);
    ck_assert_ptr_null(m);
    f->msg = f->err;
    return st;
}
static ag_status h_small_errbuf(fx *f) {
    /* a 1-byte and a 0-byte error buffer are not overrun */
    char e[4] = "abc";
    ck_assert_int_eq(ag_model_load(f->junk, f->ps, NULL, 0, e, 1), AG_ERR_FORMAT);
    ck_assert_int_eq(e[0], 0);
    ck_assert_int_eq(e[1], 'b');
    ck_assert_int_eq(ag_model_load(f->junk, f->ps, NULL, 0, e + 1, 0), AG_ERR_FORMAT);
    ck_assert_int_eq(e[1], 'b');
    ck_assert_int_eq(ag_idx_read(f->junk, NULL, &(ag_idx){0}, NULL, 100), AG_ERR_FORMAT);
    f->msg = "";
    return AG_ERR_FORMAT;
}

/* IDX */
static ag_status h_idx(fx *f, const uint8_t *buf, size_t len, const ag_idx_options *o) {
    ag_idx x;
    ag_status st = ag_idx_parse(buf, len, "mem.idx", o, &x, f->err, sizeof f->err);
    if (st == AG_OK) ag_idx_free(&x);
    else ck_assert(x.data == NULL && x.count == 0);
    f->msg = f->err;
    return st;
}
static ag_status h_idx_case(fx *f, int how) {
    uint8_t buf[512];
    size_t n = idx_images(buf, 5, 2, 3);
    switch (how) {
    case 0: return h_idx(f, buf, 3, NULL);                 /* shorter than the magic */
    case 1: return h_idx(f, buf, 12, NULL);                /* header cut */
    case 2: return h_idx(f, buf, n - 1, NULL);             /* pixels cut */
    case 3: buf[n] = 0; return h_idx(f, buf, n + 1, NULL); /* trailing byte */
    case 4: buf[2] = 0x0d; return h_idx(f, buf, n, NULL);  /* float type */
    case 5: buf[3] = 0x05; return h_idx(f, buf, n, NULL);  /* 5 dims */
    case 6: buf[0] = 1; return h_idx(f, buf, n, NULL);     /* bad magic */
    case 7: buf[4] = buf[5] = buf[6] = buf[7] = 0; return h_idx(f, buf, 16, NULL); /* 0 images */
    case 8: buf[8] = buf[9] = buf[10] = buf[11] = 0xff; return h_idx(f, buf, n, NULL); /* rows 2^32-1 */
    case 9: {                                               /* count * rows * cols overflows */
        for (int i = 4; i < 16; i++) buf[i] = 0xff;
        buf[8] = buf[9] = 0; buf[10] = 0x10; buf[11] = 0; /* rows 4096 */
        buf[12] = buf[13] = 0; buf[14] = 0x10; buf[15] = 0;
        return h_idx(f, buf, n, NULL);
    }
    case 10: return h_idx(f, buf, n, &(ag_idx_options){.rows = 28, .cols = 28});
    case 11: return h_idx(f, buf, n, &(ag_idx_options){.max_bytes = 10});
    case 12: {                                              /* labels out of range */
        n = idx_labels(buf, 12, 11);
        return h_idx(f, buf, n, &(ag_idx_options){.classes = 10});
    }
    case 13: n = idx_labels(buf, 12, 3); return h_idx(f, buf, n - 2, NULL);
    case 14: buf[0] = 0x1f; buf[1] = 0x8b; return h_idx(f, buf, n, NULL);
    case 15: return h_idx(f, NULL, 16, NULL);
    case 16: return h_idx(f, buf, 0, NULL);
    }
    return AG_OK;
}
#define IDXROW(k) static ag_status h_idx##k(fx *f) { return h_idx_case(f, k); }
IDXROW(0) IDXROW(1) IDXROW(2) IDXROW(3) IDXROW(4) IDXROW(5) IDXROW(6) IDXROW(7) IDXROW(8) IDXROW(9)
IDXROW(10) IDXROW(11) IDXROW(12) IDXROW(13) IDXROW(14) IDXROW(15) IDXROW(16)
static ag_status h_idx_null_out(fx *f) {
    uint8_t buf[64];
    size_t n = idx_labels(buf, 3, 2);
    f->msg = f->err;
    return ag_idx_parse(buf, n, "mem.idx", NULL, NULL, f->err, sizeof f->err);
}
static ag_status h_idx_read(fx *f, const char *path) {
    ag_idx x;
    ag_status st = ag_idx_read(path, NULL, &x, f->err, sizeof f->err);
    if (st == AG_OK) ag_idx_free(&x);
    f->msg = f->err;
    return st;
}
static ag_status h_idx_read_missing(fx *f) { return h_idx_read(f, "/nonexistent_ag/x.idx"); }
static ag_status h_idx_read_dir(fx *f) { return h_idx_read(f, f->dir); }
static ag_status h_idx_read_null(fx *f) { return h_idx_read(f, NULL); }
static ag_status h_idx_read_junk(fx *f) { return h_idx_read(f, f->junk); }
static ag_status h_idx_read_model(fx *f) { return h_idx_read(f, f->model); }
static ag_status h_idx_read_badgz(fx *f) {
    char p[512];
    ag_test_scratch_path(p, sizeof p, "bad.gz");
    write_file(p, "\x1f\x8b\x08\x00garbage-not-deflate", 23);
    return h_idx_read(f, p);
}
static ag_status h_ds_parse(fx *f, int how) {
    uint8_t im[512], lb[64];
    size_t ni = idx_images(im, 5, 2, 3), nl = idx_labels(lb, 5, 9);
    ag_dataset ds;
    ag_status st;
    switch (how) {
    case 0: nl = idx_labels(lb, 4, 9); /* fall through */
    default:
        st = ag_dataset_parse(&ds, im, ni, lb, nl, &(ag_idx_options){.classes = 10}, f->err, sizeof f->err);
        break;
    case 1: st = ag_dataset_parse(&ds, lb, nl, lb, nl, NULL, f->err, sizeof f->err); break;  /* labels as images */
    case 2: st = ag_dataset_parse(&ds, im, ni, im, ni, NULL, f->err, sizeof f->err); break;  /* images as labels */
    case 3: st = ag_dataset_parse(&ds, im, ni, lb, nl, &(ag_idx_options){.classes = 3}, f->err, sizeof f->err); break;
    case 4: st = ag_dataset_parse(NULL, im, ni, lb, nl, NULL, f->err, sizeof f->err); break;
    case 5: st = ag_dataset_parse(&ds, NULL, 0, lb, nl, NULL, f->err, sizeof f->err); break;
    }
    if (st == AG_OK) ag_dataset_free(&ds);
    else if (how != 4) ck_assert(ds.n == 0 && ds.images == NULL && ds.labels == NULL);
    f->msg = f->err;
    return st;
}
static ag_status h_ds0(fx *f) { return h_ds_parse(f, 0); }
static ag_status h_ds1(fx *f) { return h_ds_parse(f, 1); }
static ag_status h_ds2(fx *f) { return h_ds_parse(f, 2); }
static ag_status h_ds3(fx *f) { return h_ds_parse(f, 3); }
static ag_status h_ds4(fx *f) { return h_ds_parse(f, 4); }
static ag_status h_ds5(fx *f) { return h_ds_parse(f, 5); }
static ag_status h_ds_load(fx *f, const char *im, const char *lb) {
    ag_dataset ds;
    ag_status st = ag_dataset_load(&ds, im, lb, NULL, f->err, sizeof f->err);
    if (st == AG_OK) ag_dataset_free(&ds);
    f->msg = f->err;
    return st;
}
static ag_status h_ds_load_swapped(fx *f) { return h_ds_load(f, f->idx_lab, f->idx_img); }
static ag_status h_ds_load_missing(fx *f) { return h_ds_load(f, f->idx_img, "/nonexistent_ag/l.idx"); }
static ag_status h_ds_load_null(fx *f) { return h_ds_load(f, NULL, f->idx_lab); }
static ag_status h_ds_batch(fx *f) {
    uint8_t im[512], lb[64];
    ag_dataset ds;
    ck_assert_int_eq(ag_dataset_parse(&ds, im, idx_images(im, 5, 2, 3), lb, idx_labels(lb, 5, 9), NULL, NULL, 0),
                     AG_OK);
    ag_real x[12] = {42};
    int32_t l[2] = {-7, -7};
    ck_assert_int_eq(ag_dataset_batch(&ds, (uint32_t[]){0, 5}, 2, x, l, NULL), AG_ERR_ARG);
    ck_assert(x[0] == 42 && l[0] == -7); /* nothing written */
    ck_assert_int_eq(ag_dataset_batch(&ds, NULL, 2, x, l, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_dataset_batch(&ds, (uint32_t[]){0}, 1, NULL, l, NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_dataset_batch(NULL, (uint32_t[]){0}, 1, x, l, NULL), AG_ERR_ARG);
    ag_status st = ag_dataset_batch(&ds, (uint32_t[]){UINT32_MAX}, 1, x, NULL, NULL);
    ag_dataset_shuffle(NULL, 0, 1, 2);
    ag_dataset_free(&ds);
    ag_dataset_free(NULL);
    ag_idx_free(NULL);
    f->msg = "";
    return st;
}

/* kernels, threads, rng */
static ag_status h_gemm(fx *f, int how) {
    ag_real a[12] = {1}, b[12] = {1}, c[16] = {0};
    f->msg = "";
    switch (how) {
    case 0: return ag_gemm(0, 0, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2);     /* lda < k */
    case 1: return ag_gemm(0, 0, 2, 2, 3, 1, a, 3, b, 1, 0, c, 2);     /* ldb < n */
    case 2: return ag_gemm(0, 0, 2, 4, 3, 1, a, 3, b, 4, 0, c, 2);     /* ldc < n */
    case 3: return ag_gemm(1, 0, 4, 2, 3, 1, a, 3, b, 2, 0, c, 2);     /* trans_a: lda < m */
    case 4: return ag_gemm(0, 1, 2, 4, 3, 1, a, 3, b, 2, 0, c, 4);     /* trans_b: ldb < k */
    case 5: return ag_gemm(0, 0, 2, 2, 3, 1, NULL, 3, b, 2, 0, c, 2);
    case 6: return ag_gemm(0, 0, 2, 2, 3, 1, a, 3, NULL, 2, 0, c, 2);
    case 7: return ag_gemm(0, 0, 2, 2, 3, 1, a, 3, b, 2, 0, NULL, 2);
    case 8: return ag_gemm(0, 0, HALF, HALF, 3, 1, a, 3, b, HALF, 0, c, HALF); /* m*n overflows */
    case 9: return ag_gemm(0, 0, 2, 2, BIG, 1, a, BIG, b, 2, 0, c, 2);         /* k = SIZE_MAX */
    }
    return AG_OK;
}
#define GEMMROW(k) static ag_status h_gemm##k(fx *f) { return h_gemm(f, k); }
GEMMROW(0) GEMMROW(1) GEMMROW(2) GEMMROW(3) GEMMROW(4) GEMMROW(5) GEMMROW(6) GEMMROW(7) GEMMROW(8) GEMMROW(9)
static ag_status h_gemm_zero(fx *f) {
    /* empty products are valid no-ops (k = 0 scales C by beta) */
    ag_real c[4] = {1, 2, 3, 4};
    ck_assert_int_eq(ag_gemm(0, 0, 0, 2, 3, 1, NULL, 3, NULL, 2, 0, c, 2), AG_OK);
    ck_assert_int_eq(ag_gemm(0, 0, 2, 2, 0, 1, NULL, 0, NULL, 2, 0, c, 2), AG_OK);
    ck_assert(c[0] == 0 && c[3] == 0);
    f->msg = "";
    return ag_set_threads(-1);
}
static ag_status h_threads(fx *f) {
    int before = ag_get_threads();
    ag_status st = ag_set_threads(-5);
    ck_assert_int_eq(ag_get_threads(), before);
    ck_assert_int_eq(ag_set_threads(100000), AG_OK); /* clamped */
    ck_assert_int_ge(ag_get_threads(), 1);
    ck_assert_int_eq(ag_set_threads(1), AG_OK);
    ck_assert_ptr_nonnull(ag_kernel_name());
    f->msg = "";
    return st;
}
static ag_status h_rng(fx *f) {
    ag_rng r;
    ag_rng_seed(&r, 3);
    ck_assert_uint_eq(ag_rng_below(&r, 1), 0);
    ck_assert_uint_eq(ag_rng_below(&r, 0), 0); /* an empty range: 0, documented */
    ck_assert_uint_eq(ag_tensor_rows(NULL), 0);
    ag_rng_fill_normal(&r, NULL, 0, 0, 1);
    ag_rng_fill_uniform(&r, NULL, 0, 0, 1);
    ag_rng_shuffle(&r, NULL, 0);
    ck_assert_str_eq(ag_status_str((ag_status)-99), "unknown status");
    f->msg = ag_status_str(AG_ERR_NUMERIC);
    return AG_ERR_NUMERIC;
}
static ag_status h_allocator(fx *f) {
    f->msg = "";
    ck_assert_int_eq(ag_set_allocator(&(ag_allocator){0}), AG_ERR_ARG);
    return ag_set_allocator(&(ag_allocator){.malloc_fn = NULL});
}
static ag_status h_tape_nulls(fx *f) {
    /* the tape API with NULL: no crash, neutral answers */
    ck_assert_int_eq(ag_tape_new(NULL, NULL), AG_ERR_ARG);
    ag_tape_free(NULL);
    ag_tape_reset(NULL);
    ag_tape_clear_error(NULL);
    ck_assert_int_eq(ag_tape_set_grad_enabled(NULL, 1), 0);
    ck_assert_int_eq(ag_tape_set_check_numerics(NULL, 1), 0);
    ck_assert_uint_eq(ag_tape_step(NULL), 0);
    ck_assert_uint_eq(ag_tape_node_count(NULL), 0);
    ck_assert_uint_eq(ag_tape_mem_used(NULL), 0);
    ck_assert_uint_eq(ag_tape_mem_capacity(NULL), 0);
    ag_tape_dump(NULL, stderr);
    ag_tape_dump(f->t, NULL);
    char b[8] = "xyz";
    ck_assert_str_eq(ag_shape_str(NULL, b, sizeof b), "NULL");
    ck_assert_str_eq(ag_shape_str(f->x23, NULL, 5), "");
    ck_assert_str_eq(ag_shape_str(f->x23, b, 0), "");
    ck_assert_str_eq(ag_shape_str(f->x4d, b, 4), "2x1"); /* truncated, terminated */
    ck_assert_int_eq(ag_requires_grad(NULL), AG_ERR_ARG);
    ck_assert_int_eq(ag_backward(NULL, f->s), AG_ERR_ARG);
    ck_assert_int_eq(ag_backward_seed(NULL, f->s, NULL), AG_ERR_ARG);
    f->msg = ag_tape_errmsg(NULL);
    return ag_tape_status(NULL);
}
static ag_status h_tape_new_limit(fx *f) {
    /* a limit smaller than the initial size caps it; an allocation above the limit fails cleanly */
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, &(ag_tape_params){.mem_size = 1 << 20, .mem_limit = 1024}), AG_OK);
    ck_assert_uint_le(ag_tape_mem_capacity(t), 1024);
    ag_tensor *x = ag_tensor_new(t, 1, SH(1000));
    static char msg[AG_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "%s", ag_tape_errmsg(t));
    ag_status st = x ? AG_OK : ag_tape_status(t);
    ag_tape_free(t);
    f->msg = msg;
    return st;
}
static ag_status h_apply_out_null(fx *f) {
    ag_status st = ag_apply(f->t, &op_ok, TL(f->x23), 1, NULL, NULL);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_apply_no_tape(fx *f) {
    ag_tensor *out = (ag_tensor *)1;
    ag_status st = ag_apply(NULL, &op_ok, TL(f->x23), 1, NULL, &out);
    ck_assert_ptr_null(out);
    f->msg = "";
    return st;
}
static ag_status h_nobwd_grad(fx *f) {
    /* an op without backward on the only path from the loss to W */
    ag_tensor *y = ag_call(f->t, &op_nobwd, TL(ag_linear(f->t, f->x23, f->W, f->b)), 1, NULL);
    ck_assert_ptr_nonnull(y);
    ag_status st = ag_backward(f->t, ag_sum(f->t, y));
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_nobwd_mixed(fx *f) {
    /* J = sum(nobwd(z)) + sum(z): the other path alone would give W a (wrong) gradient */
    ag_tensor *z = ag_linear(f->t, f->x23, f->W, f->b);
    ag_tensor *cut = ag_sum(f->t, ag_call(f->t, &op_nobwd, TL(z), 1, NULL)); /* node #10, then #11 */
    ag_tensor *J = ag_add(f->t, cut, ag_sum(f->t, z));
    ck_assert_ptr_nonnull(J);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_nobwd_seed(fx *f) {
    ag_tensor *y = ag_call(f->t, &op_nobwd, TL(ag_linear(f->t, f->x23, f->W, f->b)), 1, NULL);
    ck_assert_ptr_nonnull(y);
    ag_status st = ag_backward_seed(f->t, y, (ag_real[8]){1, 1, 1, 1, 1, 1, 1, 1});
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_detach_only_path(fx *f) {
    /* the loss reaches W only through detach: nothing requires a gradient */
    ag_tensor *J = ag_sum(f->t, ag_detach(f->t, ag_linear(f->t, f->x23, f->W, f->b)));
    ck_assert_ptr_nonnull(J);
    ag_status st = ag_backward(f->t, J);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_shrink_null(fx *f) {
    f->msg = "";
    return ag_tape_shrink(NULL, 0);
}
static ag_status h_seed_other(fx *f) {
    ag_real seed[6] = {1, 1, 1, 1, 1, 1};
    ag_status st = ag_backward_seed(f->t, f->other, seed);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}
static ag_status h_seed_null(fx *f) {
    ag_tensor *y = ag_linear(f->t, f->x23, f->W, f->b);
    ag_status st = ag_backward_seed(f->t, y, NULL);
    f->msg = ag_tape_errmsg(f->t);
    return st;
}

/* ---------------------------------------------------------------- the table
 * Kinds: OP  expr is an op builder on F.t: NULL expected, message from the tape, and the failed
 *            op left no node and no arena bytes behind;
 *        ST  expr is a status of a call on F.t, message from the tape;
 *        NOTAPE  expr returns a tensor for a NULL tape: NULL expected, no message;
 *        H   expr is a helper h(f) that sets f->msg itself. */
#define T F.t
/* leaves: zero, (size_t)-1 and overflowing sizes, ranks, NULLs */
#define ROWS_LEAVES(X)                                                                              \
    X(OP, new_zero, ag_tensor_new(T, 2, SH(3, 0)), AG_ERR_SHAPE, "tensor_new:", "3x0 has a zero dimension") \
    X(OP, new_zero1, ag_tensor_new(T, 1, SH(0)), AG_ERR_SHAPE, "tensor_new:", "zero dimension")         \
    X(OP, new_m1, ag_tensor_new(T, 1, SH(BIG)), AG_ERR_SHAPE, "tensor_new:", "overflows size_t")        \
    X(OP, new_m1_2d, ag_tensor_new(T, 2, SH(2, BIG)), AG_ERR_SHAPE, "tensor_new:", "2x18446744073709551615") \
    X(OP, new_ovf, ag_tensor_new(T, 2, SH(HALF, HALF)), AG_ERR_SHAPE, "tensor_new:", "overflows size_t") \
    X(OP, new_ovf4, ag_tensor_new(T, 4, SH(1 << 16, 1 << 16, 1 << 16, 1 << 16)), AG_ERR_SHAPE, "tensor_new:", "65536x65536x65536x65536 overflows") \
    X(OP, new_bytes_ovf, ag_tensor_new(T, 1, SH(BIG / 2)), AG_ERR_SHAPE, "tensor_new:", "overflows")    \
    X(OP, new_rank5, ag_tensor_new(T, 5, SH(1, 1, 1, 1, 1)), AG_ERR_ARG, "tensor_new:", "rank 5 is outside 0..4") \
    X(OP, new_rankneg, ag_tensor_new(T, -1, SH(1)), AG_ERR_ARG, "tensor_new:", "rank -1")               \
    X(OP, new_shnull, ag_tensor_new(T, 2, NULL), AG_ERR_ARG, "tensor_new:", "shape is NULL")            \
    X(OP, from_null, ag_tensor_from(T, 1, SH(3), NULL), AG_ERR_ARG, "tensor_from:", "data is NULL")     \
    X(OP, from_zero, ag_tensor_from(T, 1, SH(0), (ag_real[]){1}), AG_ERR_SHAPE, "tensor_from:", "zero dimension") \
    X(OP, wrap_null, ag_tensor_wrap(T, 1, SH(3), NULL), AG_ERR_ARG, "tensor_wrap:", "data is NULL")     \
    X(OP, wrap_ovf, ag_tensor_wrap(T, 3, SH(HALF, HALF, 2), ebuf), AG_ERR_SHAPE, "tensor_wrap:", "overflows") \
    X(OP, wrap_rank, ag_tensor_wrap(T, 9, SH(1), ebuf), AG_ERR_ARG, "tensor_wrap:", "rank 9")           \
    X(H, arena_full_leaf, h_arena_full_leaf, AG_ERR_NOMEM, "tensor_new:", "arena is full")              \
    X(H, arena_full_op, h_arena_full_op, AG_ERR_NOMEM, "exp:", "arena is full")                         \
    X(H, arena_full_backward, h_arena_full_backward, AG_ERR_NOMEM, "backward:", "arena is full")        \
    X(H, user_buffer_full, h_user_buffer_full, AG_ERR_NOMEM, "tensor_new:", "arena is full")            \
    X(H, tape_new_tiny_buffer, h_tape_new_tiny_buffer, AG_ERR_ARG, "", "")                              \
    X(H, tape_new_limit, h_tape_new_limit, AG_ERR_NOMEM, "tensor_new:", "arena is full")
/* a NULL tape: no crash, NULL result */
#define ROWS_NOTAPE(X)                                                                              \
    X(NOTAPE, notape_new, ag_tensor_new(NULL, 1, SH(3)), AG_ERR_ARG, "", "")                            \
    X(NOTAPE, notape_from, ag_tensor_from(NULL, 1, SH(3), NULL), AG_ERR_ARG, "", "")                    \
    X(NOTAPE, notape_wrap, ag_tensor_wrap(NULL, 1, SH(3), ebuf), AG_ERR_ARG, "", "")                    \
    X(NOTAPE, notape_scalar, ag_scalar(NULL, 1), AG_ERR_ARG, "", "")                                    \
    X(NOTAPE, notape_call, ag_call(NULL, &op_ok, TL(F.x23), 1, NULL), AG_ERR_ARG, "", "")               \
    X(NOTAPE, notape_dense, ag_dense_forward(NULL, &(ag_dense){F.W, F.b, 3, 4, AG_ACT_RELU}, F.x23, NULL), AG_ERR_ARG, "", "") \
    X(NOTAPE, notape_activate, ag_activate(NULL, AG_ACT_RELU, F.x23), AG_ERR_ARG, "", "")               \
    X(NOTAPE, notape_l2decay, ag_l2_decay(NULL, 0.1, F.ps), AG_ERR_ARG, "", "")                         \
    X(NOTAPE, notape_mlp, ag_mlp_forward(NULL, NULL, F.x23, NULL, NULL), AG_ERR_ARG, "", "")
/* backward and the tape API in the wrong order */
#define ROWS_TAPE(X)                                                                                \
    X(ST, backward_null, ag_backward(T, NULL), AG_ERR_ARG, "backward:", "loss is NULL")                 \
    X(ST, backward_vector, ag_backward(T, F.x23), AG_ERR_SHAPE, "backward:", "loss is 2x3, not a scalar") \
    X(ST, backward_param, ag_backward(T, F.W), AG_ERR_ARG, "backward:", "parameter")                    \
    X(ST, backward_other, ag_backward(T, F.other), AG_ERR_ARG, "backward:", "another tape")             \
    X(ST, backward_stale, ag_backward(T, F.stale), AG_ERR_STATE, "backward:", "ag_tape_reset")          \
    X(ST, backward_leaf, ag_backward(T, F.s), AG_ERR_STATE, "backward:", "does not depend")             \
    X(H, backward_twice, h_backward_twice, AG_ERR_STATE, "backward:", "already ran")                    \
    X(H, backward_after_failed_op, h_backward_after_failed_op, AG_ERR_SHAPE, "matmul:", "a is 2x3 but b is 2x3") \
    X(H, backward_no_grad, h_backward_no_grad, AG_ERR_STATE, "backward:", "does not depend")            \
    X(H, backward_nograd_mode, h_backward_nograd_mode, AG_ERR_STATE, "backward:", "no-grad mode")       \
    X(H, backward_after_reset, h_backward_after_reset, AG_ERR_STATE, "backward:", "ag_tape_reset")      \
    X(H, backward_empty_after_reset, h_backward_empty_after_reset, AG_ERR_STATE, "backward:", "ag_tape_reset") \
    X(H, seed_null, h_seed_null, AG_ERR_ARG, "backward_seed:", "seed is NULL")                          \
    X(H, seed_other, h_seed_other, AG_ERR_ARG, "backward_seed:", "another tape")                        \
    X(H, requires_grad_result, h_requires_grad_result, AG_ERR_ARG, "requires_grad:", "exp result")      \
    X(H, requires_grad_stale, h_requires_grad_stale, AG_ERR_STATE, "requires_grad:", "ag_tape_reset")   \
    X(H, tape_nulls, h_tape_nulls, AG_ERR_ARG, "tape is NULL", "")                                      \
    X(ST, shrink_recorded, ag_tape_shrink(T, 0), AG_ERR_STATE, "tape_shrink:", "since the last ag_tape_reset; reset the tape first") \
    X(H, shrink_null, h_shrink_null, AG_ERR_ARG, "", "")                                                \
    X(OP, detach_null, ag_detach(T, NULL), AG_ERR_ARG, "detach:", "input 0 is NULL")                    \
    X(OP, detach_other, ag_detach(T, F.other), AG_ERR_ARG, "detach:", "input 0 belongs to another tape") \
    X(OP, detach_stale, ag_detach(T, F.stale), AG_ERR_STATE, "detach:", "input 0 was recorded before the last ag_tape_reset") \
    X(NOTAPE, detach_notape, ag_detach(NULL, F.x23), AG_ERR_ARG, "", "")                                \
    X(H, detach_only_path, h_detach_only_path, AG_ERR_STATE, "backward:", "does not depend")
/* ag_apply with bad descriptors and misbehaving user ops */
#define ROWS_APPLY(X)                                                                               \
    X(ST, apply_op_null, ag_apply(T, NULL, TL(F.x23), 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "apply:", "descriptor is NULL") \
    X(ST, apply_noname, ag_apply(T, &op_noname, TL(F.x23), 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "apply:", "name/shape/forward") \
    X(ST, apply_noshape, ag_apply(T, &op_noshape, TL(F.x23), 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "apply:", "name/shape/forward") \
    X(ST, apply_nofwd, ag_apply(T, &op_nofwd, TL(F.x23), 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "apply:", "name/shape/forward") \
    X(H, apply_out_null, h_apply_out_null, AG_ERR_ARG, "userop:", "out is NULL")                        \
    X(H, apply_no_tape, h_apply_no_tape, AG_ERR_ARG, "", "")                                            \
    X(ST, apply_n_in_0, ag_apply(T, &op_ok, TL(F.x23), 0, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "userop:", "got 0 inputs, expects 1") \
    X(ST, apply_n_in_2, ag_apply(T, &op_ok, TL(F.x23, F.x23), 2, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "userop:", "got 2 inputs") \
    X(ST, apply_n_in_neg, ag_apply(T, &op_ok, TL(F.x23), -1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "userop:", "got -1 inputs") \
    X(ST, apply_var_0, ag_apply(T, &op_var, TL(F.x23), 0, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "uservar:", "got 0 inputs") \
    X(ST, apply_var_65, ag_apply(T, &op_var, TL(F.x23), 65, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "uservar:", "got 65 inputs") \
    X(ST, apply_in_null, ag_apply(T, &op_ok, NULL, 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "userop:", "input array is NULL") \
    X(ST, apply_params_null, ag_apply(T, &op_params, TL(F.x23), 1, NULL, &(ag_tensor *){0}), AG_ERR_ARG, "userparams:", "params are NULL") \
    X(OP, call_in_null, ag_call(T, &op_ok, TL(NULL), 1, NULL), AG_ERR_ARG, "userop:", "input 0 is NULL") \
    X(OP, call_other, ag_call(T, &op_ok, TL(F.other), 1, NULL), AG_ERR_ARG, "userop:", "another tape")  \
    X(OP, call_stale, ag_call(T, &op_ok, TL(F.stale), 1, NULL), AG_ERR_STATE, "userop:", "reset")       \
    X(OP, op_rank5, ag_call(T, &op_rank5, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "rank5:", "output rank 5") \
    X(OP, op_rankneg, ag_call(T, &op_rankneg, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "rankneg:", "output rank -1") \
    X(OP, op_shape_null, ag_call(T, &op_shnull, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "shnull:", "rank 2") \
    X(OP, op_zero, ag_call(T, &op_zero, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "zerodim:", "3x0 has a zero dimension") \
    X(OP, op_ovf, ag_call(T, &op_ovf, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "ovf:", "overflows size_t")    \
    X(OP, op_m1, ag_call(T, &op_m1, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "minus1:", "18446744073709551615 overflows") \
    X(OP, op_shape_fails, ag_call(T, &op_shfail, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "shfail:", "refused 6") \
    X(OP, op_shape_silent, ag_call(T, &op_shsilent, TL(F.x23), 1, NULL), AG_ERR_SHAPE, "shsilent:", "failed with status -2") \
    X(OP, op_fwd_fails, ag_call(T, &op_fwdfail, TL(F.x23), 1, NULL), AG_ERR_ARG, "fwdfail:", "failed with status -1") \
    X(H, op_fwd_nan, h_fwd_nan, AG_ERR_NUMERIC, "fwdnan:", "NaN at element 0 of 6")                     \
    X(H, op_log_neg_numerics, h_log_neg_numerics, AG_ERR_NUMERIC, "log:", "NaN at element 0")           \
    X(H, op_bwd_fails, h_bwd_fail, AG_ERR_NUMERIC, "bwdfail:", "custom backward refused")               \
    X(H, op_bwd_silent, h_bwd_silent, AG_ERR_STATE, "bwdsilent:", "backward failed with status -4")     \
    X(H, op_bwd_inf, h_bwd_inf, AG_ERR_NUMERIC, "bwdinf:", "Inf at element 0")                          \
    X(H, op_nobwd, h_nobwd_grad, AG_ERR_STATE, "nobwd: has no backward, but a gradient reaches its 2x4 result (node #10)", "detach its input (ag_detach)") \
    X(H, op_nobwd_mixed, h_nobwd_mixed, AG_ERR_STATE, "nobwd: has no backward, but a gradient reaches its 2x4 result (node #10)", "detach") \
    X(H, op_nobwd_seed, h_nobwd_seed, AG_ERR_STATE, "nobwd: has no backward, but a gradient reaches its 2x4 result (node #10)", "give the op a backward") \
    X(STL, op_huge_limited, ag_apply(F.tl, &op_huge, TL(ag_tensor_new(F.tl, 1, SH(2))), 1, NULL, &(ag_tensor *){0}), AG_ERR_NOMEM, "huge:", "arena is full") \
    X(STL, op_alloc_huge, ag_apply(F.tl, &op_fwdhuge, TL(ag_tensor_new(F.tl, 1, SH(2))), 1, NULL, &(ag_tensor *){0}), AG_ERR_NOMEM, "fwdhuge:", "arena is full")
/* gradcheck */
#define ROWS_GRADCHECK(X)                                                                           \
    X(H, gc_f_null, h_gc_f_null, AG_ERR_ARG, "gradcheck:", "f is NULL")                                 \
    X(H, gc_wrt_null, h_gc_wrt_null, AG_ERR_ARG, "gradcheck:", "wrt is NULL")                           \
    X(H, gc_n0, h_gc_n0, AG_ERR_ARG, "gradcheck:", "n_wrt is 0")                                        \
    X(H, gc_res_null, h_gc_res_null, AG_ERR_ARG, "gradcheck:", "res is NULL")                           \
    X(H, gc_eps0, h_gc_eps0, AG_ERR_ARG, "gradcheck:", "eps 0 must be positive")                        \
    X(H, gc_eps_neg, h_gc_eps_neg, AG_ERR_ARG, "gradcheck:", "eps -0.001")                              \
    X(H, gc_eps_nan, h_gc_eps_nan, AG_ERR_ARG, "gradcheck:", "finite")                                  \
    X(H, gc_eps_inf, h_gc_eps_inf, AG_ERR_ARG, "gradcheck:", "finite")                                  \
    X(H, gc_eps_tiny, h_gc_eps_tiny, AG_ERR_ARG, "gradcheck:", "vanishes next to W[")                   \
    X(H, gc_wrt_elem_null, h_gc_wrt_elem_null, AG_ERR_ARG, "gradcheck:", "wrt[1] is NULL")              \
    X(H, gc_wrt_tape, h_gc_wrt_tape, AG_ERR_ARG, "gradcheck: wrt[0] is not a parameter", "ag_gradcheck_leaves") \
    X(H, gc_loss_null, h_gc_loss_null, AG_ERR_ARG, "gradcheck:", "returned NULL")                       \
    X(H, gc_loss_failed, h_gc_loss_failed, AG_ERR_SHAPE, "matmul:", "a is 2x3 but b is 2x3")            \
    X(H, gc_loss_vector, h_gc_loss_vector, AG_ERR_SHAPE, "gradcheck:", "loss is 2x4, not a scalar")     \
    X(H, gc_no_tape, h_gc_no_tape, AG_ERR_ARG, "", "")                                                  \
    X(H, gcl_params_null, h_gcl_params_null, AG_ERR_ARG, "gradcheck:", "params is NULL")                \
    X(H, gcl_leaves_null, h_gcl_leaves_null, AG_ERR_ARG, "gradcheck:", "leaves is NULL")                \
    X(H, gcl_nothing, h_gcl_nothing, AG_ERR_ARG, "gradcheck:", "nothing to check")                      \
    X(H, gcl_value_null, h_gcl_value_null, AG_ERR_ARG, "gradcheck:", "leaves[0] has a NULL value")      \
    X(H, gcl_size0, h_gcl_size0, AG_ERR_ARG, "gradcheck:", "leaves[0] has size 0")                      \
    X(H, gcl_same, h_gcl_same, AG_ERR_ARG, "gradcheck:", "leaves[0] and leaves[2] are the same buffer") \
    X(H, gcl_not_wrapped, h_gcl_not_wrapped, AG_ERR_ARG, "gradcheck: leaves[0] is not on the tape", "ag_tensor_wrap") \
    X(H, gcl_copied, h_gcl_copied, AG_ERR_ARG, "gradcheck: leaves[0] is not on the tape", "ag_tensor_wrap") \
    X(H, gcl_unmarked, h_gcl_unmarked, AG_ERR_ARG, "gradcheck: leaves[0] is on the tape", "did not mark it with ag_requires_grad") \
    X(H, gcl_size, h_gcl_size, AG_ERR_SHAPE, "gradcheck:", "leaves[0] has 5 elements but f wraps it as 2x3") \
    X(H, gcl_eps_tiny, h_gcl_eps_tiny, AG_ERR_ARG, "gradcheck:", "vanishes next to leaves[0][0] = 0.5")  \
    X(H, gcl_nomem, h_gcl_nomem, AG_ERR_NOMEM, "gradcheck:", "out of memory for the leaves' gradients") \
    X(H, gcl_no_tape, h_gcl_no_tape, AG_ERR_ARG, "", "")
/* parameter store */
#define ROWS_PARAMS(X)                                                                              \
    X(H, ps_null_name, h_ps_null_name, AG_ERR_ARG, "params_add", "name is NULL")                        \
    X(H, ps_empty_name, h_ps_empty_name, AG_ERR_ARG, "params_add", "empty")                             \
    X(H, ps_long_name, h_ps_long_name, AG_ERR_ARG, "params_add", "name is 200 bytes")                   \
    X(H, ps_null_out, h_ps_null_out, AG_ERR_ARG, "params_add", "out is NULL")                           \
    X(H, ps_rank5, h_ps_rank5, AG_ERR_ARG, "params_add p", "rank 5")                                    \
    X(H, ps_rankneg, h_ps_rankneg, AG_ERR_ARG, "params_add p", "rank -1")                               \
    X(H, ps_shape_null, h_ps_shape_null, AG_ERR_ARG, "params_add p", "shape is NULL")                   \
    X(H, ps_flags, h_ps_flags, AG_ERR_ARG, "params_add p", "only AG_DECAY")                             \
    X(H, ps_flags_rg, h_ps_flags_rg, AG_ERR_ARG, "params_add p", "flags 0x5")                           \
    X(H, ps_dup, h_ps_dup, AG_ERR_ARG, "params_add", "taken is already used")                           \
    X(H, ps_zero, h_ps_zero, AG_ERR_SHAPE, "params_add p", "3x0 has a zero dimension")                  \
    X(H, ps_zero1, h_ps_zero1, AG_ERR_SHAPE, "params_add p", "zero dimension")                          \
    X(H, ps_m1, h_ps_m1, AG_ERR_SHAPE, "params_add p", "18446744073709551615 overflows")                \
    X(H, ps_m1x2, h_ps_m1x2, AG_ERR_SHAPE, "params_add p", "overflows")                                 \
    X(H, ps_ovf, h_ps_ovf, AG_ERR_SHAPE, "params_add p", "4294967297x4294967297 overflows")             \
    X(H, ps_ovf4, h_ps_ovf4, AG_ERR_SHAPE, "params_add p", "overflows")                                 \
    X(H, ps_too_big, h_ps_too_big, AG_ERR_SHAPE, "params_add p", "overflows")                           \
    X(H, ps_round_ovf, h_ps_round_ovf, AG_ERR_SHAPE, "params_add p", "total parameter count overflows") \
    X(H, ps_null_store, h_ps_null_store, AG_ERR_ARG, "params is NULL", "")                              \
    X(H, ps_new_null, h_ps_new_null, AG_ERR_ARG, "", "")                                                \
    X(H, ps_accessors, h_ps_accessors, AG_ERR_ARG, "params is NULL", "")
/* optimizers */
#define ROWS_OPTIM(X)                                                                               \
    X(H, opt_lr0, h_opt_lr0, AG_ERR_ARG, "optim:", "lr must be finite and > 0 (got 0)")                 \
    X(H, opt_lrneg, h_opt_lrneg, AG_ERR_ARG, "optim:", "lr must be finite and > 0 (got -0.1)")          \
    X(H, opt_lrnan, h_opt_lrnan, AG_ERR_ARG, "optim:", "lr must be")                                    \
    X(H, opt_lrinf, h_opt_lrinf, AG_ERR_ARG, "optim:", "(got inf)")                                     \
    X(H, opt_kind, h_opt_kind, AG_ERR_ARG, "optim:", "unknown kind (got 42)")                           \
    X(H, opt_kindneg, h_opt_kindneg, AG_ERR_ARG, "optim:", "unknown kind")                              \
    X(H, opt_wdneg, h_opt_wdneg, AG_ERR_ARG, "optim:", "weight_decay")                                  \
    X(H, opt_wdnan, h_opt_wdnan, AG_ERR_ARG, "optim:", "weight_decay")                                  \
    X(H, opt_mom1, h_opt_mom1, AG_ERR_ARG, "optim:", "momentum must be in (0, 1) (got 1)")              \
    X(H, opt_momneg, h_opt_momneg, AG_ERR_ARG, "optim:", "momentum")                                    \
    X(H, opt_beta1, h_opt_beta1, AG_ERR_ARG, "optim:", "beta1 must be in (0, 1) (got 1.5)")             \
    X(H, opt_beta2, h_opt_beta2, AG_ERR_ARG, "optim:", "beta2")                                         \
    X(H, opt_epsneg, h_opt_epsneg, AG_ERR_ARG, "optim:", "eps must be > 0")                             \
    X(H, opt_clipneg, h_opt_clipneg, AG_ERR_ARG, "optim:", "clip_norm")                                 \
    X(H, opt_clipnan, h_opt_clipnan, AG_ERR_ARG, "optim:", "clip_norm")                                 \
    X(H, opt_sched, h_opt_sched, AG_ERR_ARG, "optim:", "unknown schedule kind (got 9)")                 \
    X(H, opt_step0, h_opt_step0, AG_ERR_ARG, "optim:", "step_size >= 1")                                \
    X(H, opt_gamma0, h_opt_gamma0, AG_ERR_ARG, "optim:", "gamma > 0")                                   \
    X(H, opt_cos, h_opt_cos, AG_ERR_ARG, "optim:", "total_steps > warmup_steps")                        \
    X(H, opt_null_cfg, h_opt_null_cfg, AG_ERR_ARG, "optim:", "config is NULL")                          \
    X(H, opt_null_ps, h_opt_null_ps, AG_ERR_ARG, "optim:", "params store is NULL")                      \
    X(H, opt_null_out, h_opt_null_out, AG_ERR_ARG, "", "")                                              \
    X(H, opt_store_grew, h_opt_store_grew, AG_ERR_STATE, "optim", "")                                   \
    X(H, opt_nan_grad, h_opt_nan_grad, AG_ERR_NUMERIC, "optim:", "gradient norm is nan; parameters left unchanged") \
    X(H, opt_state_range, h_opt_state_range, AG_ERR_ARG, "", "")                                        \
    X(H, opt_state_null, h_opt_state_null, AG_ERR_ARG, "", "")                                          \
    X(H, opt_null_misc, h_opt_null_misc, AG_ERR_ARG, "", "")
/* layers */
#define ROWS_LAYERS(X)                                                                              \
    X(H, dense_zero_in, h_dense_zero_in, AG_ERR_SHAPE, "fc.W", "zero dimension")                        \
    X(H, dense_zero_out, h_dense_zero_out, AG_ERR_SHAPE, "fc.W", "0x3 has a zero dimension")            \
    X(H, dense_ovf, h_dense_ovf, AG_ERR_SHAPE, "fc.W", "overflows")                                     \
    X(H, dense_m1, h_dense_m1, AG_ERR_SHAPE, "fc.W", "overflows")                                       \
    X(H, dense_dup, h_dense_dup, AG_ERR_ARG, "fc.W", "already used")                                    \
    X(H, dense_act, h_dense_act, AG_ERR_ARG, "dense fc:", "unknown activation 17")                      \
    X(H, dense_null_ps, h_dense_null_ps, AG_ERR_ARG, "", "")                                            \
    X(H, dense_null_name, h_dense_null_name, AG_ERR_ARG, "", "")                                        \
    X(H, dense_weights, h_dense_weights, AG_ERR_ARG, "", "")                                            \
    X(H, dense_fwd_shape, h_dense_fwd_shape, AG_ERR_SHAPE, "dense", "x is 3x4, expected K x 3")         \
    X(H, dense_fwd_null, h_dense_fwd_null, AG_ERR_ARG, "dense", "x is NULL")                            \
    X(H, dense_fwd_layer, h_dense_fwd_layer, AG_ERR_ARG, "dense:", "layer is NULL")                     \
    X(H, dense_fwd_other, h_dense_fwd_other, AG_ERR_ARG, "linear:", "another tape")                     \
    X(H, dense_fwd_stale, h_dense_fwd_stale, AG_ERR_STATE, "linear:", "reset")                          \
    X(H, dense_fwd_badact, h_dense_fwd_badact, AG_ERR_ARG, "activat", "9")                              \
    X(H, act_parse, h_act_parse, AG_ERR_ARG, "", "")                                                    \
    X(H, activate_bad, h_activate_bad, AG_ERR_ARG, "activate:", "unknown activation 11")                \
    X(H, spec_null, h_spec_null, AG_ERR_ARG, "mlp:", "spec is NULL")                                    \
    X(H, spec_empty, h_spec_empty, AG_ERR_ARG, "mlp:", "is empty")                                      \
    X(H, spec_one, h_spec_one, AG_ERR_ARG, "mlp: spec \"784\"", "at least two sizes")                   \
    X(H, spec_dashdash, h_spec_dashdash, AG_ERR_ARG, "mlp: spec \"784--10\"", "empty layer size at position 4") \
    X(H, spec_lead, h_spec_lead, AG_ERR_ARG, "mlp:", "empty layer size at position 0")                  \
    X(H, spec_trail, h_spec_trail, AG_ERR_ARG, "mlp:", "empty layer size at position 7")                \
    X(H, spec_zero, h_spec_zero, AG_ERR_ARG, "mlp:", "zero layer size at position 4")                   \
    X(H, spec_alpha, h_spec_alpha, AG_ERR_ARG, "mlp:", "'x' at position 5")                             \
    X(H, spec_space, h_spec_space, AG_ERR_ARG, "mlp:", "' ' at position 3")                             \
    X(H, spec_neg, h_spec_neg, AG_ERR_ARG, "mlp:", "'+' at position 4")                                 \
    X(H, spec_huge, h_spec_huge, AG_ERR_ARG, "mlp:", "layer size above")                                \
    X(H, spec_many, h_spec_many, AG_ERR_ARG, "mlp:", "more than 8 layer sizes")                         \
    X(H, spec_max0, h_spec_max0, AG_ERR_ARG, "mlp:", "more than 0")                                     \
    X(H, spec_ctrl, h_spec_ctrl, AG_ERR_ARG, "mlp:", "'?' at position 2")                               \
    X(H, spec_nulls, h_spec_nulls, AG_ERR_ARG, "mlp:", "sizes or n is NULL")                            \
    X(H, mlp_cfg_null, h_mlp_cfg_null, AG_ERR_ARG, "mlp:", "NULL")                                      \
    X(H, mlp_spec, h_mlp_spec, AG_ERR_ARG, "mlp: spec \"3--4\"", "position 2")                          \
    X(H, mlp_acts, h_mlp_acts, AG_ERR_ARG, "mlp:", "1")                                                 \
    X(H, mlp_act_bad, h_mlp_act_bad, AG_ERR_ARG, "mlp:", "activation")                                  \
    X(H, mlp_init_bad, h_mlp_init_bad, AG_ERR_ARG, "mlp:", "init")                                      \
    X(H, mlp_dup, h_mlp_dup, AG_ERR_ARG, "fc2.b", "already used")                                       \
    X(H, mlp_big, h_mlp_big, AG_ERR_NOMEM, "fc1.W", "out of memory")                                    \
    X(H, mlp_fwd_shape, h_mlp_fwd0, AG_ERR_SHAPE, "mlp:", "x is 3x4 but the model expects K x 3")       \
    X(H, mlp_fwd_model_null, h_mlp_fwd1, AG_ERR_ARG, "mlp:", "model is NULL")                           \
    X(H, mlp_fwd_x_null, h_mlp_fwd2, AG_ERR_ARG, "dense fc1:", "x is NULL")                             \
    X(H, mlp_cost_se_shape, h_mlp_fwd3, AG_ERR_SHAPE, "squared_error:", "h is 2x2 but y is 2x3")        \
    X(H, mlp_cost_ce_label, h_mlp_fwd4, AG_ERR_ARG, "cross_entropy:", "label 5 of row 7 is outside 0..1") \
    X(H, mlp_cost_ce_null, h_mlp_fwd5, AG_ERR_ARG, "cross_entropy:", "labels is NULL")                  \
    X(H, mlp_cost_model_null, h_mlp_fwd6, AG_ERR_ARG, "mlp:", "model is NULL")                          \
    X(H, mlp_fwd_other, h_mlp_fwd7, AG_ERR_ARG, "linear_act:", "another tape")                          \
    X(H, cost_weights_null, h_cost0, AG_ERR_ARG, "cost:", "weights is NULL but n is 2")                 \
    X(H, cost_se_shape, h_cost1, AG_ERR_SHAPE, "squared_error:", "h is 2x3 but y is 3x4")               \
    X(H, cost_ce_labels_null, h_cost2, AG_ERR_ARG, "cross_entropy:", "labels is NULL")                  \
    X(H, cost_ce_weight_null, h_cost3, AG_ERR_ARG, "l2:", "input 0 is NULL")                            \
    X(H, l2_decay_null, h_cost4, AG_ERR_ARG, "l2_decay:", "store is NULL")                              \
    X(H, l2_decay_nodecay, h_cost5, AG_ERR_ARG, "l2_decay:", "no AG_DECAY tensor")                      \
    X(H, cost_weight_other, h_cost6, AG_ERR_ARG, "l2:", "another tape")                                 \
    X(H, ref_new, h_ref_new, AG_ERR_ARG, "", "")                                                        \
    X(H, ref_calls, h_ref_calls, AG_ERR_ARG, "", "")
/* model files */
#define ROWS_MODEL(X)                                                                               \
    X(H, save_nodir, h_save_nodir, AG_ERR_IO, "save: /nonexistent_dir_ag/x/model.st:", "cannot create a temporary file") \
    X(H, save_null_path, h_save_null_path, AG_ERR_ARG, "save:", "path is NULL")                         \
    X(H, save_empty_path, h_save_empty_path, AG_ERR_ARG, "save:", "path is empty")                      \
    X(H, save_dir, h_save_dir, AG_ERR_IO, "save:", "")                                                  \
    X(H, save_extra_null, h_save_extra_null, AG_ERR_ARG, "save:", "NULL array")                         \
    X(H, save_extra_nodata, h_save_extra_nodata, AG_ERR_ARG, "save:", "extra buffer 0 has no data")     \
    X(H, save_extra_noname, h_save_extra_noname, AG_ERR_ARG, "save:", "invalid name")                   \
    X(H, save_extra_dup, h_save_extra_dup, AG_ERR_ARG, "save:", "tensor name W is used twice")          \
    X(H, save_extra_huge, h_save_extra_huge, AG_ERR_ARG, "save:", "extra buffer 0 is too large")        \
    X(H, save_meta_crc, h_save_meta_crc, AG_ERR_ARG, "save:", "crc32")                                  \
    X(H, save_meta_dup, h_save_meta_dup, AG_ERR_ARG, "save:", "metadata key arch is given twice")       \
    X(H, save_meta_null, h_save_meta_null, AG_ERR_ARG, "save:", "metadata")                             \
    X(H, save_meta_nullv, h_save_meta_nullv, AG_ERR_ARG, "save:", "metadata")                           \
    X(H, save_meta_arr, h_save_meta_arr, AG_ERR_ARG, "save:", "NULL array")                             \
    X(H, save_meta_many, h_save_meta_many, AG_ERR_ARG, "save:", "1025 metadata entries, at most 1023")  \
    X(H, save_bad_name, h_save_bad_name, AG_ERR_ARG, "save:", "invalid name")                           \
    X(H, load_missing, h_load_missing, AG_ERR_IO, "load:", "missing.st: no such file")                  \
    X(H, load_dir, h_load_dir, AG_ERR_IO, "load:", "not a regular file")                                \
    X(H, load_null_path, h_load_null_path, AG_ERR_ARG, "load:", "path is NULL")                         \
    X(H, load_null_ps, h_load_null_ps, AG_ERR_SHAPE, "load:", "tensor W in the file is not in the model") \
    X(H, load_junk, h_load_junk, AG_ERR_FORMAT, "load:", "junk.bin")                                    \
    X(H, load_idx, h_load_idx, AG_ERR_FORMAT, "load:", "img.idx")                                       \
    X(H, load_devnull, h_load_devnull, AG_ERR_IO, "load: /dev/null:", "not a regular file")             \
    X(H, load_extra_missing, h_load_extra_missing, AG_ERR_SHAPE, "load:", "opt.m")                      \
    X(H, load_extra_null, h_load_extra_null, AG_ERR_ARG, "load:", "NULL argument")                      \
    X(H, load_shape, h_load_shape, AG_ERR_SHAPE, "load:", "W is 4x3 in the file but 3x4 in the model")  \
    X(H, load_rank, h_load_rank, AG_ERR_SHAPE, "load:", "W is 4x3 in the file but 12 in the model")     \
    X(H, load_extra_param, h_load_extra_param, AG_ERR_SHAPE, "load:", "tensor c of the model is missing from the file") \
    X(H, load_fewer, h_load_fewer, AG_ERR_SHAPE, "load:", "tensor b in the file is not in the model")   \
    X(H, load_empty_store, h_load_empty, AG_ERR_SHAPE, "load:", "in the file is not in the model")      \
    X(H, parse_short, h_edit0, AG_ERR_FORMAT, "load: mem:", "truncated: 4 bytes")                       \
    X(H, parse_cut, h_edit1, AG_ERR_FORMAT, "load: mem:", "")                                           \
    X(H, parse_crc, h_edit2, AG_ERR_FORMAT, "load: mem:", "corrupt: CRC32 of the data is")              \
    X(H, parse_notobj, h_edit3, AG_ERR_FORMAT, "load: mem:", "not a safetensors file")                  \
    X(H, parse_hugelen, h_edit4, AG_ERR_FORMAT, "load: mem:", "header")                                 \
    X(H, parse_len0, h_edit5, AG_ERR_FORMAT, "load: mem:", "")                                          \
    X(H, parse_header_only, h_edit6, AG_ERR_FORMAT, "load: mem:", "")                                   \
    X(H, parse_dtype_unknown, h_edit7, AG_ERR_FORMAT, "load: mem:", "unknown dtype Q99")                \
    X(H, parse_dtype_other, h_edit8, AG_ERR_FORMAT, "load: mem:", "in the file but this build stores " DT) \
    X(H, parse_crc_text, h_edit9, AG_ERR_FORMAT, "load: mem:", "is not 0x + 8 hex digits")              \
    X(H, parse_trailing, h_edit10, AG_ERR_FORMAT, "load: mem:", "8 bytes of data after the last tensor") \
    X(H, parse_shape_edit, h_edit11, AG_ERR_FORMAT, "load: mem:", "")                                   \
    X(H, parse_null, h_parse_null, AG_ERR_ARG, "load: mem:", "NULL argument")                           \
    X(H, parse_empty, h_parse_empty, AG_ERR_FORMAT, "load: mem:", "truncated: 0 bytes")                 \
    X(H, parse_null_out, h_parse_null_out, AG_ERR_ARG, "load: mem:", "NULL argument")                   \
    X(H, json_empty, h_json_empty, AG_ERR_FORMAT, "load: mem:", "")                                     \
    X(H, json_open, h_json_open, AG_ERR_FORMAT, "load: mem:", "")                                       \
    X(H, json_notobj, h_json_notobj, AG_ERR_FORMAT, "load: mem:", "")                                   \
    X(H, json_badoff, h_json_badoff, AG_ERR_FORMAT, "load: mem:", "tensor W")                           \
    X(H, json_revoff, h_json_revoff, AG_ERR_FORMAT, "load: mem:", "tensor W")                           \
    X(H, json_ovfshape, h_json_ovfshape, AG_ERR_FORMAT, "load: mem:", "tensor W: shape overflows")      \
    X(H, json_bigint, h_json_bigint, AG_ERR_FORMAT, "load: mem:", "integer too large")                  \
    X(H, json_negint, h_json_negint, AG_ERR_FORMAT, "load: mem:", "non-negative integer")               \
    X(H, json_frac, h_json_frac, AG_ERR_FORMAT, "load: mem:", "fraction or exponent")                   \
    X(H, json_ninedims, h_json_ninedims, AG_ERR_FORMAT, "load: mem:", "more than 8 dimensions")         \
    X(H, json_nodtype, h_json_nodtype, AG_ERR_FORMAT, "load: mem:", "tensor W: missing dtype")          \
    X(H, json_dupkey, h_json_dupkey, AG_ERR_FORMAT, "load: mem:", "tensor W")                           \
    X(H, json_ctrl, h_json_ctrl, AG_ERR_FORMAT, "load: mem:", "control character")                      \
    X(H, json_badutf8, h_json_badutf8, AG_ERR_FORMAT, "load: mem:", "invalid UTF-8")                    \
    X(H, json_esc0, h_json_esc0, AG_ERR_FORMAT, "load: mem:", "\\u0000")                                \
    X(H, json_metanum, h_json_metanum, AG_ERR_FORMAT, "load: mem:", "not a string")                     \
    X(H, json_trailing, h_json_trailing, AG_ERR_FORMAT, "load: mem:", "")                               \
    X(H, json_deep, h_json_deep, AG_ERR_FORMAT, "load: mem:", "")                                       \
    X(H, meta_range, h_meta_range, AG_ERR_ARG, "", "")                                                  \
    X(H, read_null, h_read_null, AG_ERR_ARG, "load:", "NULL argument")                                  \
    X(H, open_missing, h_open_missing, AG_ERR_IO, "load: /nonexistent_ag/file.st:", "no such file")     \
    X(H, small_errbuf, h_small_errbuf, AG_ERR_FORMAT, "", "")
/* IDX files and data sets */
#define ROWS_IDX(X)                                                                                 \
    X(H, idx_tiny, h_idx0, AG_ERR_FORMAT, "idx: mem.idx:", "truncated: 3 bytes")                        \
    X(H, idx_header_cut, h_idx1, AG_ERR_FORMAT, "idx: mem.idx:", "header is 16 bytes but file has 12")  \
    X(H, idx_pixels_cut, h_idx2, AG_ERR_FORMAT, "idx: mem.idx:", "truncated")                           \
    X(H, idx_trailing, h_idx3, AG_ERR_FORMAT, "idx: mem.idx:", "1 bytes of trailing data")              \
    X(H, idx_float, h_idx4, AG_ERR_FORMAT, "idx: mem.idx:", "")                                         \
    X(H, idx_5dims, h_idx5, AG_ERR_FORMAT, "idx: mem.idx:", "")                                         \
    X(H, idx_magic, h_idx6, AG_ERR_FORMAT, "idx: mem.idx:", "")                                         \
    X(H, idx_zero_count, h_idx7, AG_ERR_FORMAT, "idx: mem.idx:", "header says 0 images")                \
    X(H, idx_huge_rows, h_idx8, AG_ERR_FORMAT, "idx: mem.idx:", "")                                     \
    X(H, idx_ovf, h_idx9, AG_ERR_FORMAT, "idx: mem.idx:", "")                                           \
    X(H, idx_size_mismatch, h_idx10, AG_ERR_FORMAT, "idx: mem.idx:", "images are 2x3 but 28x28 were expected") \
    X(H, idx_max_bytes, h_idx11, AG_ERR_FORMAT, "idx: mem.idx:", "")                                    \
    X(H, idx_label_range, h_idx12, AG_ERR_FORMAT, "idx: mem.idx:", "label 10 at index 10 is outside 0..9") \
    X(H, idx_labels_cut, h_idx13, AG_ERR_FORMAT, "idx: mem.idx:", "header says 12 labels but file has 10") \
    X(H, idx_gzip_mem, h_idx14, AG_ERR_FORMAT, "idx: mem.idx:", "corrupt gzip data")                    \
    X(H, idx_null, h_idx15, AG_ERR_ARG, "idx: mem.idx:", "NULL argument")                               \
    X(H, idx_empty, h_idx16, AG_ERR_FORMAT, "idx: mem.idx:", "truncated: 0 bytes")                      \
    X(H, idx_null_out, h_idx_null_out, AG_ERR_ARG, "idx: mem.idx:", "NULL argument")                    \
    X(H, idx_read_missing, h_idx_read_missing, AG_ERR_IO, "idx: /nonexistent_ag/x.idx:", "no such file") \
    X(H, idx_read_dir, h_idx_read_dir, AG_ERR_IO, "idx:", "is a directory")                             \
    X(H, idx_read_null, h_idx_read_null, AG_ERR_ARG, "idx:", "path is NULL")                            \
    X(H, idx_read_junk, h_idx_read_junk, AG_ERR_FORMAT, "idx:", "junk.bin")                             \
    X(H, idx_read_model, h_idx_read_model, AG_ERR_FORMAT, "idx:", "model.safetensors")                  \
    X(H, idx_read_badgz, h_idx_read_badgz, AG_ERR_FORMAT, "idx:", "bad.gz")                             \
    X(H, ds_count_mismatch, h_ds0, AG_ERR_FORMAT, "idx:", "has 5 images but")                           \
    X(H, ds_labels_as_images, h_ds1, AG_ERR_FORMAT, "idx:", "")                                         \
    X(H, ds_images_as_labels, h_ds2, AG_ERR_FORMAT, "idx:", "")                                         \
    X(H, ds_label_range, h_ds3, AG_ERR_FORMAT, "idx:", "label 3 at index 3 is outside 0..2")            \
    X(H, ds_null, h_ds4, AG_ERR_ARG, "idx:", "NULL argument")                                           \
    X(H, ds_null_images, h_ds5, AG_ERR_FORMAT, "idx:", "")                                              \
    X(H, ds_load_swapped, h_ds_load_swapped, AG_ERR_FORMAT, "idx:", "lab.idx")                          \
    X(H, ds_load_missing, h_ds_load_missing, AG_ERR_IO, "idx: /nonexistent_ag/l.idx:", "no such file")  \
    X(H, ds_load_null, h_ds_load_null, AG_ERR_ARG, "idx:", "images_path is NULL")                       \
    X(H, ds_batch, h_ds_batch, AG_ERR_ARG, "", "")
/* kernels, threads, rng, allocator */
#define ROWS_KERNELS(X)                                                                             \
    X(H, gemm_lda, h_gemm0, AG_ERR_ARG, "", "")                                                         \
    X(H, gemm_ldb, h_gemm1, AG_ERR_ARG, "", "")                                                         \
    X(H, gemm_ldc, h_gemm2, AG_ERR_ARG, "", "")                                                         \
    X(H, gemm_lda_trans, h_gemm3, AG_ERR_ARG, "", "")                                                   \
    X(H, gemm_ldb_trans, h_gemm4, AG_ERR_ARG, "", "")                                                   \
    X(H, gemm_a_null, h_gemm5, AG_ERR_ARG, "", "")                                                      \
    X(H, gemm_b_null, h_gemm6, AG_ERR_ARG, "", "")                                                      \
    X(H, gemm_c_null, h_gemm7, AG_ERR_ARG, "", "")                                                      \
    X(H, gemm_mn_ovf, h_gemm8, AG_ERR_ARG, "", "")                                                      \
    X(H, gemm_k_max, h_gemm9, AG_ERR_ARG, "", "")                                                       \
    X(H, gemm_zero_sizes, h_gemm_zero, AG_ERR_ARG, "", "")                                              \
    X(H, threads, h_threads, AG_ERR_ARG, "", "")                                                        \
    X(H, rng_status, h_rng, AG_ERR_NUMERIC, "non-finite", "")                                           \
    X(H, allocator, h_allocator, AG_ERR_ARG, "", "")
/* every row, for generating the row functions */
#define ROWS(X)                                                                                    \
    ROWS_LEAVES(X) ROWS_NOTAPE(X) ROWS_TAPE(X) ROWS_APPLY(X) ROWS_GRADCHECK(X) ROWS_PARAMS(X)      \
    ROWS_OPTIM(X) ROWS_LAYERS(X) ROWS_MODEL(X) ROWS_IDX(X) ROWS_KERNELS(X)

/* generate one function per row */
#define DEF_OP(name, expr)                                                                  \
    static ag_status c_##name(fx *f) {                                                      \
        size_t nodes_ = ag_tape_node_count(f->t), used_ = ag_tape_mem_used(f->t);           \
        ag_tensor *r_ = (expr);                                                             \
        f->msg = ag_tape_errmsg(f->t);                                                      \
        if (r_) return AG_OK;                                                               \
        ck_assert_msg(ag_tape_node_count(f->t) == nodes_, #name ": failed op left a node"); \
        ck_assert_msg(ag_tape_mem_used(f->t) == used_, #name ": failed op kept arena bytes"); \
        return ag_tape_status(f->t) == AG_OK ? (ag_status)99 : ag_tape_status(f->t);       \
    }
#define DEF_ST(name, expr)                   \
    static ag_status c_##name(fx *f) {       \
        ag_status st_ = (expr);              \
        f->msg = ag_tape_errmsg(f->t);       \
        return st_;                          \
    }
#define DEF_STL(name, expr)                  \
    static ag_status c_##name(fx *f) {       \
        ag_status st_ = (expr);              \
        f->msg = ag_tape_errmsg(f->tl);      \
        return st_;                          \
    }
#define DEF_NOTAPE(name, expr)               \
    static ag_status c_##name(fx *f) {       \
        ag_tensor *r_ = (expr);              \
        f->msg = "";                         \
        return r_ ? AG_OK : AG_ERR_ARG;      \
    }
#define DEF_H(name, fn) static ag_status c_##name(fx *f) { return fn(f); }
#define DEF(kind, name, expr, st, s1, s2) DEF_##kind(name, expr)
ROWS(DEF)

typedef struct row {
    const char *name;
    ag_status (*fn)(fx *f);
    ag_status want;
    const char *s1, *s2;
    int same_step; /* a failed op: the same step goes on after ag_tape_clear_error */
} row;
enum { SAME_OP = 1, SAME_ST = 0, SAME_STL = 0, SAME_NOTAPE = 1, SAME_H = 0 };
#define ROW(kind, name, expr, st, s1, s2) {#name, c_##name, st, s1, s2, SAME_##kind},
static const row rows_leaves_and_arena[] = {ROWS_LEAVES(ROW)};
static const row rows_null_tape[] = {ROWS_NOTAPE(ROW)};
static const row rows_backward_and_tape_order[] = {ROWS_TAPE(ROW)};
static const row rows_apply_and_user_ops[] = {ROWS_APPLY(ROW)};
static const row rows_gradcheck_arguments[] = {ROWS_GRADCHECK(ROW)};
static const row rows_params_store[] = {ROWS_PARAMS(ROW)};
static const row rows_optimizers[] = {ROWS_OPTIM(ROW)};
static const row rows_layers[] = {ROWS_LAYERS(ROW)};
static const row rows_model_files[] = {ROWS_MODEL(ROW)};
static const row rows_idx_and_datasets[] = {ROWS_IDX(ROW)};
static const row rows_kernels_threads_rng_allocator[] = {ROWS_KERNELS(ROW)};

/* Every row of a table: the status and the message, then the objects still work; the allocator
 * counts live blocks, so a row that leaks fails its table. */
static void run_rows(const char *subject, const row *rows, size_t n_rows) {
    cap_install();
    fixture_once();
    size_t failed = 0;
    for (size_t i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        fixture_row();
        ag_status st = r->fn(&F);
        char msg[AG_IO_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "%s", F.msg ? F.msg : "(null)");
        int bad = st != r->want || !strstr(msg, r->s1) || !strstr(msg, r->s2);
        if (bad) {
            failed++;
            fprintf(stderr, "bad_input row %s: status %d (%s), want %d; message \"%s\", want \"%s\" and \"%s\"\n",
                    r->name, (int)st, ag_status_str(st), (int)r->want, msg, r->s1, r->s2);
        }
        still_usable(r->name, r->same_step);
    }
    printf("bad_input %s: %zu error cases (rows of the table), %zu failed\n", subject, n_rows, failed);
    ag_params_free(scratch_ps);
    scratch_ps = NULL;
    fixture_free();
    size_t live = cap_uninstall();
    ck_assert_uint_eq(failed, 0);
    ck_assert_msg(live == 0, "%zu blocks leaked by the bad-input table %s", live, subject);
}
#define TABLE_TEST(subject)                                                                    \
    START_TEST(subject) {                                                                      \
        run_rows(#subject, rows_##subject, sizeof rows_##subject / sizeof rows_##subject[0]);  \
    }                                                                                          \
    END_TEST
TABLE_TEST(leaves_and_arena)
TABLE_TEST(null_tape)
TABLE_TEST(backward_and_tape_order)
TABLE_TEST(apply_and_user_ops)
TABLE_TEST(gradcheck_arguments)
TABLE_TEST(params_store)
TABLE_TEST(optimizers)
TABLE_TEST(layers)
TABLE_TEST(model_files)
TABLE_TEST(idx_and_datasets)
TABLE_TEST(kernels_threads_rng_allocator)



/* Issue 7 item 5: a NaN injected mid-network stops the forward at the first op that produces it,
 * with the op, the element and the step named; nothing after it is recorded. Backward likewise. */
START_TEST(numerics_stop_at_first_bad_op) {
    ag_params *ps;
    ag_mlp *m;
    ag_tape *t;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "3-8-8-2", .hidden = AG_ACT_TANH, .seed = 4}, NULL, 0),
                     AG_OK);
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real x[12] = {0.1, 0.2, 0.3, -1, 0, 1, 2, 2, 2, 0.5, -0.5, 0};
    for (int i = 0; i < 3; i++) ag_tape_reset(t); /* step 3 */

    /* off (the default): NaN flows through silently */
    ag_tensor *W2 = ag_params_find(ps, "fc2.W");
    ag_real saved = W2->value[13];
    W2->value[13] = (ag_real)NAN;
    ck_assert_ptr_nonnull(ag_mlp_forward(t, m, ag_tensor_from(t, 2, SH(4, 3), x), NULL, NULL));

    /* on: fc1 (fused linear + tanh) passes, fc2's linear_act is the first op with a NaN */
    ag_tape_reset(t);
    ck_assert_int_eq(ag_tape_set_check_numerics(t, 1), 0);
    ag_tensor *X = ag_tensor_from(t, 2, SH(4, 3), x);
    ck_assert_ptr_null(ag_mlp_forward(t, m, X, NULL, NULL));
    ck_assert_int_eq(ag_tape_status(t), AG_ERR_NUMERIC);
    const char *msg = ag_tape_errmsg(t);
    ck_assert_msg(strncmp(msg, "linear_act: ", 12) == 0 && strstr(msg, "NaN at element 1 of 32") && strstr(msg, "step 4"),
                  "message: %s", msg);
    ck_assert_uint_eq(ag_tape_node_count(t), 2); /* x, fc1 linear_act: nothing after the bad op */
    W2->value[13] = saved;

    /* a NaN in the data: the first layer's linear_act, the row's elements named */
    ag_tape_reset(t);
    x[7] = (ag_real)NAN;
    ck_assert_ptr_null(ag_mlp_forward(t, m, ag_tensor_from(t, 2, SH(4, 3), x), NULL, NULL));
    ck_assert_msg(strstr(ag_tape_errmsg(t), "linear_act: forward produced NaN at element 16 of 32"), "%s", ag_tape_errmsg(t));
    x[7] = 2;

    /* backward: sqrt at 0 has an infinite derivative; the sqrt node is named */
    ag_tape_reset(t);
    ag_tensor *h = ag_mlp_forward(t, m, ag_tensor_from(t, 2, SH(4, 3), x), NULL, NULL);
    ck_assert_ptr_nonnull(h);
    ag_tensor *J = ag_sum(t, ag_sqrt(t, ag_relu(t, ag_scale(t, h, 0))));
    ck_assert_ptr_nonnull(J);
    ck_assert_int_eq(ag_backward(t, J), AG_ERR_NUMERIC);
    ck_assert_msg(strstr(ag_tape_errmsg(t), "sqrt: backward put, in the gradient of input 0, Inf at element 0"),
                  "%s", ag_tape_errmsg(t));

    /* and the optimizer refuses a non-finite gradient without touching the weights */
    ag_optim *opt;
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1}, NULL, 0), AG_OK);
    ag_params_grads(ps)[0] = (ag_real)INFINITY;
    ag_real w0 = ag_params_values(ps)[0];
    ck_assert_int_eq(ag_optim_step(opt), AG_ERR_NUMERIC);
    ck_assert(ag_params_values(ps)[0] == w0);

    /* the tape goes on after a reset */
    ag_tape_reset(t);
    ag_params_zero_grad(ps);
    J = ag_mean(t, ag_mlp_forward(t, m, ag_tensor_from(t, 2, SH(4, 3), x), NULL, NULL));
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    ck_assert_int_eq(ag_optim_step(opt), AG_OK);
    ag_optim_free(opt);
    ag_tape_free(t);
    ag_mlp_free(m);
    ag_params_free(ps);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("bad_input");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, leaves_and_arena);
    tcase_add_test(tc, null_tape);
    tcase_add_test(tc, backward_and_tape_order);
    tcase_add_test(tc, apply_and_user_ops);
    tcase_add_test(tc, gradcheck_arguments);
    tcase_add_test(tc, params_store);
    tcase_add_test(tc, optimizers);
    tcase_add_test(tc, layers);
    tcase_add_test(tc, model_files);
    tcase_add_test(tc, idx_and_datasets);
    tcase_add_test(tc, kernels_threads_rng_allocator);
    tcase_add_test(tc, numerics_stop_at_first_bad_op);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(suite)

/*
 * test_alloc_fail.c - ag_dense_init and ag_mlp_new are all or nothing. The n-th allocation through
 * the library's hooks fails, for every n = 1, 2, ... until the construction succeeds; after each
 * failure the store must be exactly what it was before the call (count, numel, the tensor objects,
 * names, shapes, flags, values and gradients bitwise, views re-pointed into the current buffers),
 * nothing may leak, a later ag_params_add must land where a fresh one would, and the same
 * construction must then succeed with the weights a store without the failure gets. Stores start
 * empty, with one tensor, and with seven (so the construction grows the bookkeeping arrays past 8).
 * Also ag_params_truncate itself, and a failure that is not an allocation (a name clash after some
 * layers were registered), whose rollback is swept too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>
#include "testutil.h"

#define SH(...) ((size_t[]){__VA_ARGS__})
#define MAX_SNAP 16

/* ---------------------------------------------------------------- store snapshots */

typedef struct snap {
    size_t count, numel;
    ag_tensor *obj[MAX_SNAP];       /* the ag_tensor objects stay put */
    char name[MAX_SNAP][160];
    size_t shape[MAX_SNAP][AG_MAX_DIMS], size[MAX_SNAP], off[MAX_SNAP];
    int ndim[MAX_SNAP];
    unsigned flags[MAX_SNAP];
    ag_real *values, *grads;        /* copies of [0, numel), padding included */
    int had_buffers;
} snap;

/* test-side copies use libc directly: they stay out of the counted hooks */
static void snap_take(snap *s, ag_params *ps) {
    memset(s, 0, sizeof *s);
    s->count = ag_params_count(ps);
    s->numel = ag_params_numel(ps);
    ck_assert_uint_le(s->count, MAX_SNAP);
    s->had_buffers = ag_params_values(ps) != NULL;
    s->values = malloc((s->numel ? s->numel : 1) * sizeof(ag_real));
    s->grads = malloc((s->numel ? s->numel : 1) * sizeof(ag_real));
    ck_assert_ptr_nonnull(s->values);
    ck_assert_ptr_nonnull(s->grads);
    if (s->numel) {
        memcpy(s->values, ag_params_values(ps), s->numel * sizeof(ag_real));
        memcpy(s->grads, ag_params_grads(ps), s->numel * sizeof(ag_real));
    }
    for (size_t i = 0; i < s->count; i++) {
        ag_tensor *x = ag_params_at(ps, i);
        s->obj[i] = x;
        snprintf(s->name[i], sizeof s->name[i], "%s", x->name);
        s->ndim[i] = x->ndim;
        memcpy(s->shape[i], x->shape, sizeof x->shape);
        s->size[i] = x->size;
        s->flags[i] = x->flags;
        s->off[i] = (size_t)(x->value - ag_params_values(ps));
    }
}

static void snap_free(snap *s) {
    free(s->values);
    free(s->grads);
    s->values = s->grads = NULL;
}

/* the store is exactly as snapped (buffers may have moved; views must follow them) */
static void snap_check(const snap *s, ag_params *ps, const char *what, size_t n) {
    ck_assert_msg(ag_params_count(ps) == s->count, "%s, n = %zu: count %zu, was %zu", what, n, ag_params_count(ps),
                  s->count);
    ck_assert_msg(ag_params_numel(ps) == s->numel, "%s, n = %zu: numel %zu, was %zu", what, n, ag_params_numel(ps),
                  s->numel);
    ck_assert_ptr_null(ag_params_at(ps, s->count));
    if (!s->had_buffers) { /* an empty store goes back to having no buffers */
        ck_assert_ptr_null(ag_params_values(ps));
        ck_assert_ptr_null(ag_params_grads(ps));
        return;
    }
    ck_assert_msg(memcmp(ag_params_values(ps), s->values, s->numel * sizeof(ag_real)) == 0,
                  "%s, n = %zu: values changed", what, n);
    ck_assert_msg(memcmp(ag_params_grads(ps), s->grads, s->numel * sizeof(ag_real)) == 0,
                  "%s, n = %zu: gradients changed", what, n);
    for (size_t i = 0; i < s->count; i++) {
        ag_tensor *x = ag_params_at(ps, i);
        ck_assert_msg(x == s->obj[i], "%s, n = %zu: tensor %zu is another object", what, n, i);
        ck_assert_str_eq(x->name, s->name[i]);
        ck_assert_ptr_eq(ag_params_find(ps, s->name[i]), x);
        ck_assert_int_eq(x->ndim, s->ndim[i]);
        ck_assert(memcmp(x->shape, s->shape[i], sizeof x->shape) == 0);
        ck_assert_uint_eq(x->size, s->size[i]);
        ck_assert_uint_eq(x->flags, s->flags[i]);
        ck_assert_msg(x->value == ag_params_values(ps) + s->off[i] && x->grad == ag_params_grads(ps) + s->off[i],
                      "%s, n = %zu: %s does not view the current buffers", what, n, x->name);
    }
}

/* a store with n_pre tensors of odd sizes, random values and gradients */
static ag_params *pre_store(size_t n_pre) {
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_rng r;
    ag_rng_seed(&r, 99);
    for (size_t i = 0; i < n_pre; i++) {
        char name[32];
        snprintf(name, sizeof name, "pre%zu", i);
        ag_tensor *x;
        ck_assert_int_eq(ag_params_add(ps, name, 2, SH(i + 1, 3 + 2 * i), i % 2 ? 0 : AG_DECAY, &x), AG_OK);
    }
    for (size_t i = 0; i < n_pre; i++) { /* after every add: the buffers moved while adding */
        ag_tensor *x = ag_params_at(ps, i);
        ag_rng_fill_normal(&r, x->value, x->size, 0, 1);
        ag_rng_fill_normal(&r, x->grad, x->size, 0, 1);
    }
    return ps;
}

/* Nothing leaks into a rolled-back store: it holds the blocks it held before, except that an empty
 * store may keep the two bookkeeping arrays a failed ag_params_add grew (capacity, not content;
 * once the arrays exist, growing them is a realloc and adds no block). Real leaks also show at
 * the end, when every store is freed and the live count must be 0. */
static void check_live(size_t base, const snap *s, size_t n) {
    size_t live = ag_test_alloc_live(), slack = s->count == 0 ? 2 : 0;
    ck_assert_msg(live >= base && live <= base + slack, "pre %zu, n = %zu: %zu blocks live, %zu before",
                  s->count, n, live, base);
}

/* a later add behaves as on a store that never saw the failure: appended at the old numel, zero */
static void check_add_after(ag_params *ps, const snap *s) {
    ag_tensor *x;
    ck_assert_int_eq(ag_params_add(ps, "after", 1, SH(5), 0, &x), AG_OK);
    ck_assert_uint_eq(ag_params_count(ps), s->count + 1);
    ck_assert_ptr_eq(ag_params_at(ps, s->count), x);
    ck_assert_ptr_eq(x->value, ag_params_values(ps) + s->numel);
    ck_assert_uint_eq(ag_params_numel(ps), s->numel + AG_ALIGN / sizeof(ag_real));
    for (size_t i = 0; i < 5; i++) ck_assert(x->value[i] == 0 && x->grad[i] == 0);
    if (s->numel) ck_assert(memcmp(ag_params_values(ps), s->values, s->numel * sizeof(ag_real)) == 0);
}

static const size_t g_pre[] = {0, 1, 7};

/* ---------------------------------------------------------------- ag_params_truncate */

START_TEST(truncate_rolls_back) {
    ag_test_alloc_install();
    ag_params *ps = pre_store(5);
    snap s2, s5;
    ag_params *ref = pre_store(2);
    snap_take(&s2, ref);
    snap_take(&s5, ps);
    ag_params_free(ref);

    ck_assert_int_eq(ag_params_truncate(NULL, 0), AG_ERR_ARG);
    ck_assert_int_eq(ag_params_truncate(ps, 6), AG_ERR_ARG);
    snap_check(&s5, ps, "count too large", 0);
    ck_assert_int_eq(ag_params_truncate(ps, 5), AG_OK);
    snap_check(&s5, ps, "same count", 0);

    /* an optimizer made for 5 tensors refuses the smaller store */
    ag_optim *opt;
    ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.1}, NULL, 0), AG_OK);
    ck_assert_int_eq(ag_params_truncate(ps, 2), AG_OK);
    ck_assert_int_eq(ag_optim_step(opt), AG_ERR_STATE);
    ag_optim_free(opt);

    /* the first two are what a store that only ever had them holds (objects aside) */
    ck_assert_uint_eq(ag_params_count(ps), 2);
    ck_assert_uint_eq(ag_params_numel(ps), s2.numel);
    ck_assert(memcmp(ag_params_values(ps), s2.values, s2.numel * sizeof(ag_real)) == 0);
    ck_assert(memcmp(ag_params_grads(ps), s2.grads, s2.numel * sizeof(ag_real)) == 0);
    for (size_t i = 0; i < 2; i++) {
        ag_tensor *x = ag_params_at(ps, i);
        ck_assert_ptr_eq(x, s5.obj[i]);
        ck_assert_ptr_eq(x->value, ag_params_values(ps) + s2.off[i]);
        ck_assert_ptr_eq(x->grad, ag_params_grads(ps) + s2.off[i]);
    }
    ck_assert_ptr_null(ag_params_find(ps, "pre2"));
    ck_assert_ptr_null(ag_params_find(ps, "pre4"));
    ck_assert_ptr_null(ag_params_at(ps, 2));
    snap_free(&s2);
    snap_take(&s2, ps);
    /* removed names are free again, and adds append at the rolled-back numel */
    ag_tensor *x;
    ck_assert_int_eq(ag_params_add(ps, "pre2", 1, SH(4), 0, &x), AG_OK);
    ck_assert_ptr_eq(x->value, ag_params_values(ps) + s2.numel);
    ck_assert_int_eq(ag_params_truncate(ps, 2), AG_OK);
    check_add_after(ps, &s2);

    /* back to empty: no buffers at all, as a new store */
    ck_assert_int_eq(ag_params_truncate(ps, 0), AG_OK);
    ck_assert_uint_eq(ag_params_count(ps), 0);
    ck_assert_uint_eq(ag_params_numel(ps), 0);
    ck_assert_ptr_null(ag_params_values(ps));
    ck_assert_ptr_null(ag_params_grads(ps));
    ck_assert_int_eq(ag_params_add(ps, "pre0", 1, SH(3), 0, &x), AG_OK);
    ck_assert_ptr_eq(x->value, ag_params_values(ps));
    ag_params_free(ps);
    snap_free(&s2);
    snap_free(&s5);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

/* truncate never fails: when its shrinking copy cannot be allocated it keeps the buffers */
START_TEST(truncate_under_allocation_failure) {
    ag_test_alloc_install();
    size_t points = 0;
    for (size_t n = 1;; n++) {
        ck_assert_uint_lt(n, 100);
        ag_params *ps = pre_store(6);
        ag_params *ref = pre_store(3);
        snap s;
        snap_take(&s, ref);
        ag_params_free(ref);
        size_t base = ag_test_alloc_live();
        ag_test_alloc_fail_at(n);
        ck_assert_int_eq(ag_params_truncate(ps, 3), AG_OK);
        int failed = ag_test_alloc_failed();
        ag_test_alloc_fail_at(0);
        ck_assert_uint_le(ag_test_alloc_live(), base);
        ck_assert_uint_eq(ag_params_count(ps), 3);
        ck_assert_uint_eq(ag_params_numel(ps), s.numel);
        ck_assert(memcmp(ag_params_values(ps), s.values, s.numel * sizeof(ag_real)) == 0);
        ck_assert(memcmp(ag_params_grads(ps), s.grads, s.numel * sizeof(ag_real)) == 0);
        for (size_t i = 0; i < 3; i++)
            ck_assert_ptr_eq(ag_params_at(ps, i)->value, ag_params_values(ps) + s.off[i]);
        ag_params_zero_grad(ps); /* one loop over [0, numel) whichever buffers are kept */
        for (size_t i = 0; i < s.numel; i++) ck_assert(ag_params_grads(ps)[i] == 0);
        check_add_after(ps, &s);
        ag_params_free(ps);
        snap_free(&s);
        ck_assert_uint_eq(ag_test_alloc_live(), 0);
        if (!failed) break;
        points++;
    }
    ck_assert_uint_eq(points, 2); /* the two shrunk copies */
    ag_test_alloc_uninstall();
}
END_TEST

/* ---------------------------------------------------------------- ag_dense_init */

START_TEST(dense_init_all_or_nothing) {
    ag_test_alloc_install();
    size_t total_points = 0;
    for (size_t v = 0; v < sizeof g_pre / sizeof g_pre[0]; v++) {
        size_t points = 0;
        for (size_t n = 1;; n++) {
            ck_assert_msg(n < 1000, "no end to the sweep");
            ag_params *ps = pre_store(g_pre[v]);
            snap s;
            snap_take(&s, ps);
            size_t base = ag_test_alloc_live();
            ag_dense d;
            memset(&d, 0xA5, sizeof d);
            ag_test_alloc_fail_at(n);
            ag_status st = ag_dense_init(&d, ps, "fc", 7, 5, AG_ACT_TANH);
            int failed = ag_test_alloc_failed();
            ag_test_alloc_fail_at(0);
            if (!failed) {
                /* success: W (5x7, decayed) then b (5) right after the old tensors */
                ck_assert_int_eq(st, AG_OK);
                ck_assert_uint_eq(ag_params_count(ps), s.count + 2);
                ck_assert_ptr_eq(ag_params_at(ps, s.count), d.W);
                ck_assert_ptr_eq(ag_params_at(ps, s.count + 1), d.b);
                ck_assert_ptr_eq(d.W->value, ag_params_values(ps) + s.numel);
                ck_assert_uint_eq(d.W->flags & AG_DECAY, AG_DECAY);
                ck_assert_uint_eq(d.b->flags & AG_DECAY, 0);
                ck_assert(s.numel == 0 || memcmp(ag_params_values(ps), s.values, s.numel * sizeof(ag_real)) == 0);
                ag_params_free(ps);
                snap_free(&s);
                break;
            }
            points++;
            ck_assert_msg(st == AG_ERR_NOMEM, "pre %zu: allocation %zu failed, status %d", g_pre[v], n, (int)st);
            ck_assert_int_eq(ag_params_status(ps), AG_ERR_NOMEM);
            ck_assert_ptr_null(d.W);
            ck_assert_ptr_null(d.b);
            check_live(base, &s, n);
            snap_check(&s, ps, "dense_init", n);
            /* the same layer now goes in whole, behind the old tensors */
            ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 7, 5, AG_ACT_TANH), AG_OK);
            ck_assert_uint_eq(ag_params_count(ps), s.count + 2);
            ck_assert_ptr_eq(ag_params_find(ps, "fc.W"), d.W);
            ck_assert_ptr_eq(ag_params_find(ps, "fc.b"), d.b);
            ck_assert_ptr_eq(d.W->value, ag_params_values(ps) + s.numel);
            ck_assert(s.numel == 0 || memcmp(ag_params_values(ps), s.values, s.numel * sizeof(ag_real)) == 0);
            ag_params_free(ps);
            /* and a plain add on a rolled-back store */
            ps = pre_store(g_pre[v]);
            ag_test_alloc_fail_at(n);
            ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 7, 5, AG_ACT_TANH), AG_ERR_NOMEM);
            ag_test_alloc_fail_at(0);
            check_add_after(ps, &s);
            ag_params_free(ps);
            snap_free(&s);
            ck_assert_uint_eq(ag_test_alloc_live(), 0);
        }
        /* W: up to 2 reallocs, tensor, name, 2 buffers; b: tensor, name, 2 buffers */
        ck_assert_msg(points >= 8, "pre %zu: only %zu failure points", g_pre[v], points);
        total_points += points;
    }
    printf("alloc_fail: dense_init %zu failure points\n", total_points);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

/* the bias's name is taken: W was registered and must go again */
START_TEST(dense_init_name_clash_rolls_back) {
    ag_params *ps = pre_store(3);
    ag_tensor *x;
    ck_assert_int_eq(ag_params_add(ps, "fc.b", 1, SH(2), 0, &x), AG_OK);
    x->value[1] = (ag_real)0.25;
    snap s;
    snap_take(&s, ps);
    ag_dense d;
    ck_assert_int_eq(ag_dense_init(&d, ps, "fc", 4, 2, AG_ACT_RELU), AG_ERR_ARG);
    ck_assert_str_eq(ag_params_errmsg(ps), "params_add: name fc.b is already used");
    ck_assert_ptr_null(d.W);
    ck_assert_ptr_null(ag_params_find(ps, "fc.W"));
    snap_check(&s, ps, "dense name clash", 0);
    check_add_after(ps, &s);
    ag_params_free(ps);
    snap_free(&s);
}
END_TEST

/* ---------------------------------------------------------------- ag_mlp_new */

static const ag_mlp_config g_cfg = {.spec = "6-5-4-3", .hidden = AG_ACT_RELU, .output = AG_ACT_IDENTITY,
                                    .init = AG_INIT_HE_NORMAL, .seed = 11};

/* the layers' values a failure-free construction on the same store gives */
static void check_mlp_weights(const ag_mlp *m, size_t n_pre) {
    ag_params *ref = pre_store(n_pre);
    ag_mlp *mr;
    char err[AG_ERRMSG_SIZE];
    ck_assert_int_eq(ag_mlp_new(&mr, ref, &g_cfg, err, sizeof err), AG_OK);
    ck_assert_uint_eq(m->n_layers, 3);
    for (size_t i = 0; i < m->n_layers; i++) {
        ck_assert_str_eq(m->layers[i].W->name, mr->layers[i].W->name);
        ck_assert(memcmp(m->layers[i].W->value, mr->layers[i].W->value, m->layers[i].W->size * sizeof(ag_real)) == 0);
        ck_assert(memcmp(m->layers[i].b->value, mr->layers[i].b->value, m->layers[i].b->size * sizeof(ag_real)) == 0);
        ck_assert_ptr_eq(m->weights[i], m->layers[i].W);
    }
    ag_mlp_free(mr);
    ag_params_free(ref);
}

START_TEST(mlp_new_all_or_nothing) {
    ag_test_alloc_install();
    size_t total_points = 0;
    for (size_t v = 0; v < sizeof g_pre / sizeof g_pre[0]; v++) {
        size_t points = 0, store_failures = 0;
        for (size_t n = 1;; n++) {
            ck_assert_msg(n < 1000, "no end to the sweep");
            ag_params *ps = pre_store(g_pre[v]);
            ag_optim *opt = NULL; /* made on the store before the call: it must keep working */
            if (g_pre[v])
                ck_assert_int_eq(ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_MOMENTUM, .lr = 0.1,
                                                                          .momentum = 0.9},
                                              NULL, 0),
                                 AG_OK);
            snap s;
            snap_take(&s, ps);
            size_t base = ag_test_alloc_live();
            ag_mlp *m = (ag_mlp *)&s; /* must come back NULL */
            char err[AG_ERRMSG_SIZE];
            ag_test_alloc_fail_at(n);
            ag_status st = ag_mlp_new(&m, ps, &g_cfg, err, sizeof err);
            int failed = ag_test_alloc_failed();
            ag_test_alloc_fail_at(0);
            if (!failed) {
                ck_assert_msg(st == AG_OK, "%s", err);
                ck_assert_uint_eq(ag_params_count(ps), s.count + 6);
                ck_assert_ptr_eq(ag_params_at(ps, s.count), m->layers[0].W);
                ck_assert_ptr_eq(m->layers[0].W->value, ag_params_values(ps) + s.numel);
                check_mlp_weights(m, g_pre[v]);
                ag_mlp_free(m);
                ag_optim_free(opt);
                ag_params_free(ps);
                snap_free(&s);
                break;
            }
            points++;
            ck_assert_msg(st == AG_ERR_NOMEM, "pre %zu: allocation %zu failed, status %d (%s)", g_pre[v], n, (int)st,
                          err);
            ck_assert_msg(strstr(err, "out of memory") != NULL, "message \"%s\"", err);
            ck_assert_ptr_null(m);
            if (ag_params_status(ps) == AG_ERR_NOMEM) store_failures++;
            check_live(base, &s, n);
            snap_check(&s, ps, "mlp_new", n);
            if (opt) { /* same numel and count: the optimizer made before the call still steps */
                ck_assert_int_eq(ag_optim_step(opt), AG_OK);
                ag_optim_free(opt);
                opt = NULL;
                ck_assert(memcmp(ag_params_values(ps), s.values, s.numel * sizeof(ag_real)) != 0);
                memcpy(ag_params_values(ps), s.values, s.numel * sizeof(ag_real));
            }
            /* the same MLP now builds, behind the old tensors, with the weights of a clean build */
            ck_assert_int_eq(ag_mlp_new(&m, ps, &g_cfg, err, sizeof err), AG_OK);
            ck_assert_uint_eq(ag_params_count(ps), s.count + 6);
            ck_assert_ptr_eq(ag_params_find(ps, "fc1.W"), m->layers[0].W);
            ck_assert_ptr_eq(m->layers[0].W->value, ag_params_values(ps) + s.numel);
            ck_assert(s.numel == 0 || memcmp(ag_params_values(ps), s.values, s.numel * sizeof(ag_real)) == 0);
            check_mlp_weights(m, g_pre[v]);
            ag_mlp_free(m);
            ag_params_free(ps);
            /* and a plain add on a rolled-back store */
            ps = pre_store(g_pre[v]);
            ag_test_alloc_fail_at(n);
            ck_assert_int_eq(ag_mlp_new(&m, ps, &g_cfg, err, sizeof err), AG_ERR_NOMEM);
            ag_test_alloc_fail_at(0);
            check_add_after(ps, &s);
            ag_params_free(ps);
            snap_free(&s);
            ck_assert_uint_eq(ag_test_alloc_live(), 0);
        }
        /* the MLP object's 4 blocks, then 3 layers of at least 8 store allocations each */
        ck_assert_msg(points >= 4 + 3 * 8, "pre %zu: only %zu failure points", g_pre[v], points);
        ck_assert_msg(store_failures >= 3 * 8, "pre %zu: only %zu failures inside the store", g_pre[v],
                      store_failures);
        total_points += points;
    }
    printf("alloc_fail: mlp_new %zu failure points\n", total_points);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ag_test_alloc_uninstall();
}
END_TEST

/* layer 2's bias name is taken: layer 1 and fc2.W were registered and must go again, also when
 * the rollback's own (optional) allocations fail */
START_TEST(mlp_new_name_clash_rolls_back) {
    ag_test_alloc_install();
    size_t points = 0;
    for (size_t n = 1;; n++) {
        ck_assert_uint_lt(n, 1000);
        ag_params *ps = pre_store(2);
        ag_tensor *x;
        ck_assert_int_eq(ag_params_add(ps, "fc2.b", 1, SH(3), 0, &x), AG_OK);
        snap s;
        snap_take(&s, ps);
        size_t base = ag_test_alloc_live();
        ag_mlp *m;
        char err[AG_ERRMSG_SIZE];
        ag_test_alloc_fail_at(n);
        ag_status st = ag_mlp_new(&m, ps, &g_cfg, err, sizeof err);
        int failed = ag_test_alloc_failed();
        ag_test_alloc_fail_at(0);
        ck_assert_ptr_null(m);
        ck_assert_msg(st == AG_ERR_ARG || (failed && st == AG_ERR_NOMEM), "n = %zu: status %d (%s)", n, (int)st, err);
        if (st == AG_ERR_ARG)
            ck_assert_str_eq(err, "mlp: layer 2 (5 -> 4): params_add: name fc2.b is already used");
        check_live(base, &s, n);
        snap_check(&s, ps, "mlp_new name clash", n);
        ck_assert_ptr_null(ag_params_find(ps, "fc1.W"));
        ck_assert_ptr_null(ag_params_find(ps, "fc2.W"));
        check_add_after(ps, &s);
        ag_params_free(ps);
        snap_free(&s);
        ck_assert_uint_eq(ag_test_alloc_live(), 0);
        if (!failed) break;
        points++;
    }
    /* the MLP object's 4 blocks, fc1.W, fc1.b and fc2.W (4 each), two shrinking copies (2 each) */
    ck_assert_msg(points >= 4 + 3 * 4 + 2 * 2, "only %zu failure points", points);
    ag_test_alloc_uninstall();
}
END_TEST

static Suite *alloc_fail_suite(void) {
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tcase_create("alloc_fail");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, truncate_rolls_back);
    tcase_add_test(tc, truncate_under_allocation_failure);
    tcase_add_test(tc, dense_init_all_or_nothing);
    tcase_add_test(tc, dense_init_name_clash_rolls_back);
    tcase_add_test(tc, mlp_new_all_or_nothing);
    tcase_add_test(tc, mlp_new_name_clash_rolls_back);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(alloc_fail_suite)

/*
 * test_op_records.c - the per-op checks, generated from tests/ops/op_records.c: one TCase per record
 * (CK_RUN_CASE=sqrt runs one op; ctest has one entry per record, op_records/<name>) holding
 *
 *   <name>:gradcheck  ag_gradcheck (central differences, in the build's ag_real) at 2 seeded random
 *                     points in the record's domain, for every case and every layout at 3x4 (K 5),
 *                     within 1e-6 in double and op_tol_float in float; also: the checker restores
 *                     every value, and one more backward doubles the gradient (backward adds);
 *   <name>:bad_input  the record's erroneous calls, and for every input NULL, a tensor of another
 *                     tape and a stale tensor, and a NULL tape: the status, a message naming the op
 *                     and the fault, no node or arena bytes left behind, the tape usable afterwards;
 *   <name>:composed   the op against its twin made of other ops, forward and every input gradient.
 *
 * `test_op_records --list` prints the record names (one per line) for scripts.
 * Non-scalar results are reduced by a test-local op, loss = sum_i r_i y_i with fixed random r, so
 * every output element is weighted differently and no built-in op checks another one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_records.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define GC_EPS 1e-6
#define GC_TOL(r) 1e-6
#define TWIN_TOL 1e-10
#else
#define GC_EPS 1e-2
#define GC_TOL(r) op_tol_float(r)
#define TWIN_TOL 1e-4
#endif

enum { POINTS = 2, MAX_OUT = 16384, MAX_INTS = 4096, SMALL_R = 3, SMALL_C = 4, SMALL_K = 5 };

/* ---------------------------------------------------------------- drawing a point */

/* A case at its literal shapes, or a layout at the small size. */
typedef struct inst {
    const op_case *c;
    op_shape in[OP_MAX_IN];
    char label[96];
} inst;

static size_t n_insts(const op_record *r) { return r->n_cases + r->n_layouts; }
static inst inst_at(const op_record *r, size_t k) {
    inst it;
    memset(&it, 0, sizeof it);
    const int layout = k >= r->n_cases;
    it.c = layout ? &r->layouts[k - r->n_cases] : &r->cases[k];
    for (int i = 0; i < it.c->n_in; i++) it.in[i] = op_shape_at(it.c->in[i], SMALL_R, SMALL_C, SMALL_K);
    snprintf(it.label, sizeof it.label, "%s %s%s", r->name, it.c->label, layout ? " (layout at 3x4, K 5)" : "");
    return it;
}

static uint64_t seed_of(const char *name, size_t k, int point) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return h ^ (k * 1000003u) ^ ((uint64_t)point << 40);
}

/* Uniform in the domain, at least avoid_dist from every avoided point. */
static ag_real draw_one(ag_rng *rng, const op_record *r, op_domain d) {
    for (int tries = 0;; tries++) {
        double v = d.lo + (d.hi - d.lo) * ag_rng_uniform(rng);
        int ok = 1;
        for (int a = 0; a < r->n_avoid; a++) ok &= fabs(v - r->avoid[a]) >= r->avoid_dist;
        if (ok || tries > 1000) return (ag_real)v;
    }
}

/* The record's int32 side input (labels, indices) drawn into ints[MAX_INTS]; NULL if it has none. */
/* Element j of input i of case c: a mask input is 0 or 1, half each; the rest as draw_one. */
static ag_real draw_in(ag_rng *rng, const op_record *r, const op_case *c, int i) {
    if (r->mask_in & (1u << i)) return (ag_real)(ag_rng_uniform(rng) < 0.5 ? 0 : 1);
    return draw_one(rng, r, op_domain_of(r, c, i));
}

static const int32_t *fill_ints(ag_rng *rng, const op_record *r, const op_shape *in, const void *param,
                                int32_t *ints) {
    size_t count, range;
    if (!op_int_dims(r, in, param, &count, &range)) return NULL;
    ck_assert_uint_le(count, MAX_INTS);
    for (size_t k = 0; k < count; k++) ints[k] = (int32_t)ag_rng_below(rng, range);
    return ints;
}

/* ---------------------------------------------------------------- <name>:gradcheck */

typedef struct gc_ctx {
    const op_record *rec;
    op_call call;
    ag_tensor *const *p;
    ag_real r[MAX_OUT];
} gc_ctx;

static ag_tensor *gc_loss(ag_tape *t, void *vctx) {
    gc_ctx *c = vctx;
    ag_tensor *y = c->rec->build(t, c->p, &c->call);
    if (!y) return NULL;
    ck_assert_uint_le(y->size, MAX_OUT);
    ag_tensor *r = ag_tensor_wrap(t, y->ndim, y->shape, c->r);
    return ag_test_wsum(t, y, r);
}

/* Values of the point: drawn, and redrawn while an internal kink is too close. */
static void draw_point(ag_rng *rng, const op_record *r, const inst *it, ag_tensor *const *p, gc_ctx *ctx, ag_tape *t) {
    for (int tries = 0; tries < 50; tries++) {
        for (int i = 0; i < it->c->n_in; i++)
            for (size_t j = 0; j < p[i]->size; j++) p[i]->value[j] = draw_in(rng, r, it->c, i);
        if (!r->kink_dist) return;
        ag_tape_reset(t);
        if (r->kink_dist(t, p, &ctx->call) >= r->avoid_dist) return;
    }
    ck_abort_msg("%s: no point away from the kinks in 50 draws", it->label);
}

static void gradcheck_inst(const op_record *r, const inst *it, size_t k, int point, double *worst) {
    ag_rng rng;
    ag_rng_seed(&rng, seed_of(r->name, k, point));
    const int n = it->c->n_in;
    ag_params *ps;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ag_tensor *p[OP_MAX_IN];
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        ck_assert_int_eq(ag_params_add(ps, name, it->in[i].ndim, it->in[i].d, 0, &p[i]), AG_OK);
    }
    static int32_t ints[MAX_INTS];
    static gc_ctx ctx; /* MAX_OUT reals: off the stack */
    ctx.rec = r;
    ctx.call = (op_call){it->c->param, fill_ints(&rng, r, it->in, it->c->param, ints), n};
    ctx.p = p;
    for (int i = 0; i < MAX_OUT; i++) /* 4096 drawn, then repeated: the draws of the points stay as they were */
        ctx.r[i] = i < 4096 ? (ag_real)(2 * ag_rng_uniform(&rng) - 1) : ctx.r[i - 4096];
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    draw_point(&rng, r, it, p, &ctx, t);

    /* a copy to prove the checker restores every value exactly */
    const size_t numel = ag_params_numel(ps);
    ag_real *before = malloc(numel * sizeof *before), *g1 = malloc(numel * sizeof *g1);
    ck_assert(before && g1);
    memcpy(before, ag_params_values(ps), numel * sizeof(ag_real));

    ag_gradcheck_result res;
    ag_status st = ag_gradcheck(t, gc_loss, &ctx, p, (size_t)n, GC_EPS, &res);
    ck_assert_msg(st == AG_OK, "%s point %d: %s", it->label, point, ag_tape_errmsg(t));
    ck_assert_int_eq(memcmp(before, ag_params_values(ps), numel * sizeof(ag_real)), 0);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += p[i]->size;
    ck_assert_uint_eq(res.n_checked, total);
    *worst = ag_test_worse(*worst, res.max_rel_err);
    ck_assert_msg(res.max_rel_err <= GC_TOL(r), "%s point %d: relative error %g > %g (in%zu[%zu]: %g vs %g)", it->label,
                  point, res.max_rel_err, GC_TOL(r), res.worst_tensor, res.worst_index, res.analytic, res.numeric);

    /* backward accumulates (+=): the checker left the analytic gradient g in ->grad; one more
     * backward without zeroing must leave 2 g (an op that assigns leaves g) */
    memcpy(g1, ag_params_grads(ps), numel * sizeof(ag_real));
    double gmax = 0;
    for (size_t i = 0; i < numel; i++) gmax = ag_test_worse(gmax, fabs((double)g1[i]));
    if (gmax > 0) { /* softmax of one element is constant: nothing to add */
        ag_tape_reset(t);
        ag_tensor *loss = gc_loss(t, &ctx);
        ck_assert_ptr_nonnull(loss);
        ck_assert_int_eq(ag_backward(t, loss), AG_OK);
        const ag_real *g2 = ag_params_grads(ps);
        for (size_t i = 0; i < numel; i++)
            ck_assert_msg(fabs((double)g2[i] - 2.0 * g1[i]) <= 1e-4 * (fabs((double)g1[i]) + gmax),
                          "%s: gradient [%zu] is %g after two backward passes, want 2 x %g (backward must add)",
                          it->label, i, (double)g2[i], (double)g1[i]);
    }
    free(before);
    free(g1);
    ag_tape_free(t);
    ag_params_free(ps);
}

static void t_gradcheck(int ri) {
    const op_record *r = op_record_at(ri);
    double worst = 0;
    size_t checked = 0;
    for (size_t k = 0; k < n_insts(r); k++) {
        inst it = inst_at(r, k);
        if (it.c->n_in == 0) continue; /* nothing to differentiate (one_hot): its twin checks the values */
        for (int point = 0; point < POINTS; point++) gradcheck_inst(r, &it, k, point, &worst);
        checked++;
    }
    printf("%s:gradcheck %zu cases x %d points, worst relative error %.3g (%s)\n", r->name, checked, POINTS, worst,
           AG_REAL_NAME);
}

/* ---------------------------------------------------------------- <name>:bad_input */

/* The call builds the op on t from fresh zero tensors of the shapes; `bad` picks which argument
 * is spoilt: OP_NULL_* as in op_bad, or 200 + i (input i of tape t2), 300 + i (input i stale). */
enum { SPOIL_OTHER = 200, SPOIL_STALE = 300 };

typedef struct bad_env {
    ag_tape *t, *t2;
    ag_tensor *stale[OP_MAX_IN];
} bad_env;

/* Fresh zero tensors of the shapes on e->t, with the spoilt one swapped in. */
static void make_inputs(bad_env *e, int n_in, const op_shape *shapes, int spoil, ag_tensor **in) {
    for (int i = 0; i < OP_MAX_IN; i++) in[i] = NULL;
    for (int i = 0; i < n_in; i++) {
        in[i] = ag_tensor_new(e->t, shapes[i].ndim, shapes[i].d);
        ck_assert_ptr_nonnull(in[i]);
    }
    if (spoil >= SPOIL_STALE) in[spoil - SPOIL_STALE] = e->stale[spoil - SPOIL_STALE];
    else if (spoil >= SPOIL_OTHER) {
        const op_shape *sh = &shapes[spoil - SPOIL_OTHER];
        in[spoil - SPOIL_OTHER] = ag_tensor_new(e->t2, sh->ndim, sh->d);
    } else if (spoil >= OP_NULL_IN(0) && spoil <= OP_NULL_IN(OP_MAX_IN - 1)) in[spoil - 1] = NULL;
}

static ag_tensor *call_with(ag_tape *on, const op_record *r, ag_tensor **in, int n_in, const void *param,
                            const int32_t *labels, int spoil) {
    static const int32_t ok_labels[MAX_INTS]; /* zeros: valid for any shape */
    op_call call = {param, r->labels || r->index_count ? (labels ? labels : ok_labels) : NULL, n_in};
    if (spoil == OP_NULL_LABELS) call.labels = NULL;
    return r->build(on, spoil == OP_NULL_ARRAY ? NULL : in, &call);
}

/* One erroneous call: NULL, the status, the message naming the op and the fault, no node and no
 * arena bytes left behind, and the tape usable after clearing the error. */
static void expect_refused(bad_env *e, const op_record *r, const char *what, int n_in, const op_shape *shapes,
                           const void *param, const int32_t *labels, int spoil, ag_status want, const char *msg) {
    ag_tape_reset(e->t);
    ag_tape_reset(e->t2);
    /* stale tensors: recorded past everything the call allocates, so none aliases a new one */
    ck_assert_ptr_nonnull(ag_tensor_new(e->t, 1, (size_t[]){64 * 1024}));
    for (int i = 0; i < n_in; i++) e->stale[i] = ag_tensor_new(e->t, shapes[i].ndim, shapes[i].d);
    ag_tape_reset(e->t);
    ag_tensor *in[OP_MAX_IN];
    make_inputs(e, n_in, shapes, spoil, in);
    const size_t nodes = ag_tape_node_count(e->t), used = ag_tape_mem_used(e->t);
    ag_tensor *y = call_with(e->t, r, in, n_in, param, labels, spoil);
    const char *m = ag_tape_errmsg(e->t);
    const char *op = r->msg_name ? r->msg_name : r->name;
    ck_assert_msg(y == NULL, "%s %s: accepted", r->name, what);
    ck_assert_msg(ag_tape_status(e->t) == want, "%s %s: status %s, want %s (%s)", r->name, what,
                  ag_status_str(ag_tape_status(e->t)), ag_status_str(want), m);
    ck_assert_msg(strncmp(m, op, strlen(op)) == 0 && m[strlen(op)] == ':' && strstr(m, msg),
                  "%s %s: message \"%s\", want \"%s: ...%s...\"", r->name, what, m, op, msg);
    ck_assert_msg(ag_tape_node_count(e->t) == nodes, "%s %s: failed op left a node", r->name, what);
    ck_assert_msg(ag_tape_mem_used(e->t) == used, "%s %s: failed op kept arena bytes", r->name, what);
    /* the tape goes on after clearing the error: the first case builds */
    ag_tape_clear_error(e->t);
    const op_case *c0 = &r->cases[0];
    make_inputs(e, c0->n_in, c0->in, OP_NULL_NONE, in);
    ck_assert_msg(call_with(e->t, r, in, c0->n_in, c0->param, NULL, OP_NULL_NONE) != NULL,
                  "%s %s: a valid call fails afterwards: %s", r->name, what, ag_tape_errmsg(e->t));
}

static void t_bad_input(int ri) {
    const op_record *r = op_record_at(ri);
    bad_env e = {0};
    ck_assert_int_eq(ag_tape_new(&e.t, NULL), AG_OK);
    ck_assert_int_eq(ag_tape_new(&e.t2, NULL), AG_OK);
    size_t rows = 0;
    for (size_t k = 0; k < r->n_bad; k++, rows++) {
        const op_bad *b = &r->bad[k];
        expect_refused(&e, r, b->what, b->n_in, b->in, b->param ? b->param : r->cases[0].param, b->labels, b->null_in,
                       b->want, b->msg);
    }
    /* every input of the first case: NULL, of another tape, stale */
    const op_case *c0 = &r->cases[0];
    for (int i = 0; i < c0->n_in; i++) {
        char what[64], msg[96];
        if (!(r->optional_in & (1u << i))) {
            snprintf(what, sizeof what, "input %d NULL", i);
            snprintf(msg, sizeof msg, "input %d is NULL", i);
            expect_refused(&e, r, what, c0->n_in, c0->in, c0->param, NULL, OP_NULL_IN(i), AG_ERR_ARG, msg);
            rows++;
        }
        snprintf(what, sizeof what, "input %d of another tape", i);
        snprintf(msg, sizeof msg, "input %d belongs to another tape", i);
        expect_refused(&e, r, what, c0->n_in, c0->in, c0->param, NULL, SPOIL_OTHER + i, AG_ERR_ARG, msg);
        snprintf(what, sizeof what, "input %d stale", i);
        snprintf(msg, sizeof msg, "input %d was recorded before the last ag_tape_reset", i);
        expect_refused(&e, r, what, c0->n_in, c0->in, c0->param, NULL, SPOIL_STALE + i, AG_ERR_STATE, msg);
        rows += 2;
    }
    /* a NULL tape: NULL, nothing recorded anywhere */
    ag_tape_reset(e.t);
    ag_tensor *in[OP_MAX_IN];
    make_inputs(&e, c0->n_in, c0->in, OP_NULL_NONE, in);
    ck_assert_ptr_null(call_with(NULL, r, in, c0->n_in, c0->param, NULL, OP_NULL_NONE));
    ck_assert_int_eq(ag_tape_status(e.t), AG_OK);
    rows++;
    printf("%s:bad_input %zu erroneous calls refused\n", r->name, rows);
    ag_tape_free(e.t);
    ag_tape_free(e.t2);
}

/* ---------------------------------------------------------------- <name>:composed */

typedef struct run_out {
    ag_real *y, *g[OP_MAX_IN];
    size_t ny;
} run_out;

/* Forward and backward (seeded) of build at the given values; copies the results into o. */
static void run_build(ag_tape *t, op_build_fn build, const inst *it, const op_call *call, ag_real *const *vals,
                      ag_rng *seed_rng, run_out *o) {
    ag_tape_reset(t);
    ag_tensor *in[OP_MAX_IN];
    for (int i = 0; i < it->c->n_in; i++) {
        in[i] = ag_tensor_from(t, it->in[i].ndim, it->in[i].d, vals[i]);
        ck_assert_int_eq(ag_requires_grad(in[i]), AG_OK);
    }
    ag_tensor *y = build(t, in, call);
    ck_assert_msg(y != NULL, "%s: %s", it->label, ag_tape_errmsg(t));
    ag_real *seed = malloc(y->size * sizeof *seed);
    ck_assert_ptr_nonnull(seed);
    for (size_t i = 0; i < y->size; i++) seed[i] = (ag_real)(2 * ag_rng_uniform(seed_rng) - 1);
    if (y->flags & AG_REQUIRES_GRAD) ck_assert_int_eq(ag_backward_seed(t, y, seed), AG_OK); /* one_hot: none */
    free(seed);
    o->ny = y->size;
    o->y = malloc(y->size * sizeof(ag_real));
    ck_assert_ptr_nonnull(o->y);
    memcpy(o->y, y->value, y->size * sizeof(ag_real));
    for (int i = 0; i < it->c->n_in; i++) {
        o->g[i] = calloc(in[i]->size, sizeof(ag_real));
        ck_assert_ptr_nonnull(o->g[i]);
        if (in[i]->grad) memcpy(o->g[i], in[i]->grad, in[i]->size * sizeof(ag_real));
    }
}

static void compare(const char *label, const char *what, const ag_real *got, const ag_real *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        ck_assert_msg(d <= TWIN_TOL * (1 + fabs((double)want[i])), "%s: %s[%zu] is %.17g, the twin gives %.17g", label,
                      what, i, (double)got[i], (double)want[i]);
    }
}

static void t_composed(int ri) {
    const op_record *r = op_record_at(ri);
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    size_t checked = 0;
    for (size_t k = 0; k < r->n_cases; k++) {
        inst it = inst_at(r, k);
        ag_rng rng;
        ag_rng_seed(&rng, seed_of(r->name, k, 7));
        ag_real *vals[OP_MAX_IN];
        for (int i = 0; i < it.c->n_in; i++) {
            size_t n = 1;
            for (int d = 0; d < it.in[i].ndim; d++) n *= it.in[i].d[d];
            vals[i] = malloc(n * sizeof(ag_real));
            ck_assert_ptr_nonnull(vals[i]);
            for (size_t j = 0; j < n; j++) vals[i][j] = draw_in(&rng, r, it.c, i);
        }
        static int32_t ints[MAX_INTS];
        const op_call call = {it.c->param, fill_ints(&rng, r, it.in, it.c->param, ints), it.c->n_in};
        ag_rng s1 = rng, s2 = rng; /* the same backward seed for both */
        run_out a = {0}, b = {0};
        run_build(t, r->build, &it, &call, vals, &s1, &a);
        run_build(t, r->composed, &it, &call, vals, &s2, &b);
        ck_assert_msg(a.ny == b.ny, "%s: %zu outputs, the twin %zu", it.label, a.ny, b.ny);
        compare(it.label, "value", a.y, b.y, a.ny);
        for (int i = 0; i < it.c->n_in; i++) {
            char what[16];
            snprintf(what, sizeof what, "d in%d", i);
            size_t n = 1;
            for (int d = 0; d < it.in[i].ndim; d++) n *= it.in[i].d[d];
            compare(it.label, what, a.g[i], b.g[i], n);
            free(a.g[i]);
            free(b.g[i]);
            free(vals[i]);
        }
        free(a.y);
        free(b.y);
        checked++;
    }
    printf("%s:composed %zu cases agree with the twin\n", r->name, checked);
    ag_tape_free(t);
}

/* ---------------------------------------------------------------- the suite */

/* Check names a test after its TTest: one per record and kind, made here, freed after the run. */
static TTest *g_tests;

static void free_tests(void) {
    for (size_t i = 0; g_tests && i < 3 * op_record_count(); i++) free((char *)g_tests[i].name);
    free(g_tests);
    g_tests = NULL;
}

static Suite *op_records_suite(void) {
    TTest *tests = g_tests = calloc(3 * op_record_count(), sizeof *tests);
    if (!tests) return NULL;
    Suite *s = suite_create("op_records");
    static const struct {
        const char *kind;
        TFun fn;
    } kinds[] = {{"gradcheck", t_gradcheck}, {"bad_input", t_bad_input}, {"composed", t_composed}};
    for (size_t i = 0; i < op_record_count(); i++) {
        const op_record *r = op_record_at(i);
        TCase *tc = tcase_create(r->name);
        tcase_set_timeout(tc, 120);
        for (int k = 0; k < 3; k++) {
            if (k == 2 && !r->composed) continue;
            char *name = malloc(strlen(r->name) + 16);
            if (!name) return NULL;
            sprintf(name, "%s:%s", r->name, kinds[k].kind);
            tests[3 * i + (size_t)k] = (TTest){name, kinds[k].fn, __FILE__, __LINE__};
            tcase_add_loop_test(tc, &tests[3 * i + (size_t)k], (int)i, (int)i + 1);
        }
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < op_record_count(); i++) printf("%s\n", op_record_at(i)->name);
        return 0;
    }
    const char *only = getenv("CK_RUN_CASE");
    if (only && *only && !op_record_find(only)) {
        fprintf(stderr, "test_op_records: no record named %s (see --list)\n", only);
        return 1;
    }
    Suite *s = op_records_suite();
    if (!s) {
        fprintf(stderr, "test_op_records: out of memory\n");
        free_tests();
        return 1;
    }
    int rc = ag_test_run(s);
    free_tests();
    return rc;
}

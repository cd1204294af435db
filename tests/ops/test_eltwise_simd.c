/*
 * test_eltwise_simd.c - the element-wise kernels give the same bits at every vector width
 * (issue 4 item 3; the project rule: the same seed gives the same result on every machine).
 *
 * 1. ag__sigmoid_array's hand-written variants (SSE2, AVX2, AVX-512F, internal.h's test hook),
 *    each that this CPU runs, against the scalar ag__sigmoid1, byte for byte: random values,
 *    random bit patterns (denormals, NaNs with payloads, infinities), +-0, the edges of the exp
 *    clamp, overflow; every length 0..100 at 4 alignments, in place, and no write past the end.
 * 2. The AG__CLONES op bodies cannot be forced to one clone in-process, so `--hash` prints an
 *    FNV-1a hash of the forward value and input gradients of every op record marked `clones`
 *    (tests/ops/op_records.c, each of its layouts) on fixed random inputs (with specials) instead of
 *    running the suite; tests/noclones.cmake builds this file a second time
 *    against the library built with -DAG_NO_CLONES and a ctest compares the two outputs.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag_io.h>
#include "internal.h"
#include "op_records.h"
#include "testutil.h"

#ifdef AG_DOUBLE
#define NEXT nextafter
#else
#define NEXT nextafterf
#endif

static const char *const WIDE[] = {"sse2", "avx2", "avx512"};

static ag_real from_bits(uint64_t b) {
    ag_real v;
#ifdef AG_DOUBLE
    memcpy(&v, &b, sizeof v);
#else
    uint32_t u = (uint32_t)b;
    memcpy(&v, &u, sizeof v);
#endif
    return v;
}

/* Values that probe every branch of the sigmoid: signs of zero, subnormals, the -87.3 clamp and
 * its neighbours, exp underflow, overflow of 1/(1+e) never happening, infinities, NaNs. */
static size_t specials(ag_real *v) {
    size_t k = 0;
    const double base[] = {0.0, 1e-40, 1.4e-45, 1.17549435e-38, 1e-30, 0.5, 1.0, 2.0, 10.0, 17.0, 40.0,
                           87.0, 87.29, 87.3, 87.31, 88.0, 88.73, 89.0, 100.0, 104.0, 1e10, 1e30, 3e38,
                           (double)FLT_MAX, HUGE_VAL};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        v[k++] = (ag_real)base[i];
        v[k++] = (ag_real)-base[i];
        v[k++] = NEXT((ag_real)base[i], (ag_real)HUGE_VAL);
        v[k++] = NEXT((ag_real)-base[i], (ag_real)-HUGE_VAL);
    }
    v[k++] = (ag_real)NAN;
    v[k++] = -(ag_real)NAN;
#ifdef AG_DOUBLE
    v[k++] = from_bits(0x7ff0000000000001ull); /* signalling */
    v[k++] = from_bits(0xfff8000000012345ull); /* payload */
#else
    v[k++] = from_bits(0x7f800001u); /* signalling */
    v[k++] = from_bits(0xffc12345u); /* payload */
#endif
    return k;
}

/* Fill v with one of several value distributions. */
static void fill_kind(ag_rng *r, ag_real *v, size_t n, int kind) {
    for (size_t i = 0; i < n; i++) switch (kind) {
        case 0: v[i] = (ag_real)(40 * ag_rng_uniform(r) - 20); break;
        case 1: v[i] = (ag_real)(6 * ag_rng_normal(r)); break;
        case 2: v[i] = from_bits(ag_rng_next(r)); break; /* any bit pattern */
        default: v[i] = (ag_real)(200 * ag_rng_uniform(r) - 100); break;
        }
}

enum { MAXN = 100, PAD = 8, ALIGNS = 4 };

/* Variant `name` against the scalar on x[0, n): identical bytes, nothing written past n. */
static void check_variant_on(const char *name, const ag_real *x, size_t n) {
    ag_real want[MAXN + PAD], got[MAXN + 2 * PAD], inplace[MAXN + PAD];
    ck_assert_int_eq(ag__sigmoid_variant("scalar", x, want, n), 0);
    const ag_real guard = (ag_real)-12345.5;
    for (size_t i = 0; i < MAXN + 2 * PAD; i++) got[i] = guard;
    ck_assert_int_eq(ag__sigmoid_variant(name, x, got + PAD, n), 0);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[PAD + i], &want[i], sizeof(ag_real)) != 0)
            ck_abort_msg("%s: n %zu, x[%zu] = %a: got %a, scalar %a", name, n, i, (double)x[i],
                         (double)got[PAD + i], (double)want[i]);
    for (size_t i = 0; i < PAD; i++) {
        ck_assert_msg(memcmp(&got[i], &guard, sizeof guard) == 0, "%s wrote before o (n %zu)", name, n);
        ck_assert_msg(memcmp(&got[PAD + n + i], &guard, sizeof guard) == 0, "%s wrote past o + %zu", name, n);
    }
    memcpy(inplace, x, n * sizeof(ag_real));
    ck_assert_int_eq(ag__sigmoid_variant(name, inplace, inplace, n), 0);
    ck_assert_msg(n == 0 || memcmp(inplace, want, n * sizeof(ag_real)) == 0, "%s in place differs (n %zu)",
                  name, n);
}

/* Every length 0..MAXN at ALIGNS offsets, for every value kind and the specials (rotated so that
 * each special lands in every lane and in the tails). */
static void check_variant(const char *name) {
    ag_rng r;
    ag_rng_seed(&r, 4242);
    ag_real buf[MAXN + ALIGNS], sp[128];
    const size_t nsp = specials(sp);
    ck_assert_uint_le(nsp, 128);
    const int reps = ag_test_quick() ? 1 : 4;
    for (int kind = 0; kind < 5; kind++)
        for (int rep = 0; rep < reps; rep++)
            for (size_t n = 0; n <= MAXN; n++)
                for (size_t a = 0; a < ALIGNS; a++) {
                    if (kind < 4) fill_kind(&r, buf, n + a, kind);
                    else
                        for (size_t i = 0; i < n + a; i++) buf[i] = sp[(i + n + (size_t)rep * 7) % nsp];
                    check_variant_on(name, buf + a, n);
                }
}

START_TEST(test_variants_match_scalar) {
    int ran = 0;
    for (size_t v = 0; v < sizeof WIDE / sizeof WIDE[0]; v++) {
        ag_real x = 1, o;
        if (ag__sigmoid_variant(WIDE[v], &x, &o, 1) != 0) {
            printf("test_eltwise_simd: no %s variant in this build or CPU\n", WIDE[v]);
            continue;
        }
        check_variant(WIDE[v]);
        ran++;
    }
#if !defined(AG_DOUBLE) && (defined(__x86_64__) || defined(__i386__))
    ck_assert_int_ge(ran, 1); /* SSE2 at least */
#else
    (void)ran;
#endif
}
END_TEST

/* A sweep of the float bit patterns (every 4099th, 1M values) through each variant: long runs,
 * so the full-width loops see every exponent. */
START_TEST(test_variants_bit_sweep) {
#ifdef AG_DOUBLE
    return;
#else
    const size_t n = ag_test_quick() ? (1u << 16) : (1u << 20);
    ag_real *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    ck_assert(x && want && got);
    for (size_t i = 0; i < n; i++) x[i] = from_bits((uint64_t)((uint32_t)i * 4099u * (uint32_t)(4096 / (n >> 8))));
    ck_assert_int_eq(ag__sigmoid_variant("scalar", x, want, n), 0);
    for (size_t v = 0; v < sizeof WIDE / sizeof WIDE[0]; v++) {
        if (ag__sigmoid_variant(WIDE[v], x, got, n) != 0) continue;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], sizeof(ag_real)) != 0)
                ck_abort_msg("%s: x = %a: got %a, scalar %a", WIDE[v], (double)x[i], (double)got[i],
                             (double)want[i]);
    }
    free(x);
    free(want);
    free(got);
#endif
}
END_TEST

/* The dispatched ag__sigmoid_array is one of the variants, the widest the CPU runs (the SSE2 one
 * with -DAG_NO_CLONES), and gives the scalar's bits. */
START_TEST(test_dispatch) {
    const char *name = ag__sigmoid_variant_name();
    ck_assert_ptr_nonnull(name);
    ag_real x[MAXN], want[MAXN], got[MAXN];
    ag_rng r;
    ag_rng_seed(&r, 7);
    fill_kind(&r, x, MAXN, 1);
    ck_assert_int_eq(ag__sigmoid_variant(name, x, want, MAXN), 0);
    ag__sigmoid_array(x, got, MAXN);
    ck_assert(memcmp(got, want, sizeof got) == 0);
    ck_assert_int_eq(ag__sigmoid_variant("scalar", x, want, MAXN), 0);
    ck_assert(memcmp(got, want, sizeof got) == 0);
#if !defined(AG_NO_CLONES)
    /* nothing wider than the pick runs here */
    int after = 0;
    for (size_t v = 0; v < sizeof WIDE / sizeof WIDE[0]; v++) {
        if (after) ck_assert_int_ne(ag__sigmoid_variant(WIDE[v], x, got, MAXN), 0);
        if (strcmp(WIDE[v], name) == 0) after = 1;
    }
#endif
    ck_assert_int_eq(ag__sigmoid_variant("avx1024", x, got, MAXN), -1);
    ck_assert_int_eq(ag__sigmoid_variant(NULL, x, got, MAXN), -1);
    printf("test_eltwise_simd: ag__sigmoid_array uses %s\n", name);
}
END_TEST

/* ---------------------------------------------------------------- --hash: every op's bits */

static uint64_t fnv(uint64_t h, const ag_real *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ag_real x = v[i];
        if (x != x) x = (ag_real)NAN; /* NaN payloads are not results: one canonical NaN */
        unsigned char b[sizeof x];
        memcpy(b, &x, sizeof x);
        for (size_t k = 0; k < sizeof x; k++) h = (h ^ b[k]) * 0x100000001b3ull;
    }
    return h;
}

static ag_rng hrng;

/* A leaf of the given shape requiring a gradient: normal(0, scale) + shift, |.| if pos, and
 * about one element in 40 a special (unless clean). */
static ag_tensor *leaf(ag_tape *t, int nd, const size_t *shape, double scale, double shift, int pos, int clean) {
    ag_tensor *x = ag_tensor_new(t, nd, shape);
    if (!x) return NULL;
    static ag_real sp[128];
    static size_t nsp;
    if (!nsp) nsp = specials(sp);
    for (size_t i = 0; i < x->size; i++) {
        double v = scale * ag_rng_normal(&hrng) + shift;
        x->value[i] = (ag_real)(pos ? fabs(v) : v);
        if (!clean && ag_rng_below(&hrng, 40) == 0) x->value[i] = sp[ag_rng_below(&hrng, nsp)];
    }
    /* a denormal and a -0 in every non-clean tensor */
    if (!clean && x->size > 3) {
        x->value[1] = (ag_real)-0.0;
        x->value[2] = (ag_real)(pos ? 1e-40 : -1e-40);
    }
    ag_requires_grad(x);
    return x;
}

static void hash_print(ag_tape *t, const char *name, ag_tensor *y, ag_tensor *const *in, int n_in) {
    if (!y) {
        printf("%s failed: %s\n", name, ag_tape_errmsg(t));
        return;
    }
    ag_real *seed = malloc(y->size * sizeof *seed);
    for (size_t i = 0; i < y->size; i++) seed[i] = (ag_real)ag_rng_normal(&hrng);
    ag_status st = ag_backward_seed(t, y, seed);
    free(seed);
    printf("%-40s fwd %016" PRIx64, name, fnv(0xcbf29ce484222325ull, y->value, y->size));
    if (st != AG_OK) printf(" backward: %s", ag_status_str(st));
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->grad) printf(" d%d %016" PRIx64, i, fnv(0xcbf29ce484222325ull, in[i]->grad, in[i]->size));
    printf("\n");
}

static int same_shape(const op_shape *a, const op_shape *b) {
    int eq = a->ndim == b->ndim;
    for (int i = 0; eq && i < a->ndim; i++) eq = a->d[i] == b->d[i];
    return eq;
}

/* Every record with AG__CLONES bodies (tests/ops/op_records.c), each of its layouts at three sizes
 * (vector tails, one and several vectors per row), on clean values and with specials. */
static int hash_all(void) {
    ag_tape *t;
    if (ag_tape_new(&t, NULL) != AG_OK) return 1;
    ag_rng_seed(&hrng, 20261128);
    char name[96];
    const size_t sizes[][2] = {{7, 13}, {33, 100}, {64, 257}};
    const size_t K = 19; /* inner size of the products */
    for (size_t ri = 0; ri < op_record_count(); ri++) {
        const op_record *r = op_record_at(ri);
        if (!r->clones) continue;
        for (size_t li = 0; li < r->n_layouts; li++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int clean = 0; clean < 2; clean++) {
                    const op_case *c = &r->layouts[li];
                    ag_tape_reset(t);
                    ag_tensor *in[OP_MAX_IN] = {0};
                    for (int i = 0; i < c->n_in; i++) {
                        op_shape sh = op_shape_at(c->in[i], sizes[s][0], sizes[s][1], K);
                        op_domain d = op_domain_of(r, c, i);
                        in[i] = leaf(t, sh.ndim, sh.d, 3, 0, d.lo >= 0, clean);
                    }
                    int32_t *labels = NULL;
                    op_shape shs[OP_MAX_IN];
                    for (int i = 0; i < c->n_in; i++) shs[i] = op_shape_at(c->in[i], sizes[s][0], sizes[s][1], K);
                    size_t rows, classes; /* labels, or an index_count op's indices */
                    if (op_int_dims(r, shs, c->param, &rows, &classes)) {
                        labels = malloc((rows ? rows : 1) * sizeof *labels);
                        if (!labels) return 1;
                        for (size_t k = 0; k < rows; k++) labels[k] = (int32_t)ag_rng_below(&hrng, classes);
                    }
                    const op_call call = {c->param, labels, c->n_in};
                    snprintf(name, sizeof name, "%s/%s/%zux%zu/%s", r->name, c->label, sizes[s][0], sizes[s][1],
                             clean ? "clean" : "specials");
                    hash_print(t, name, r->build(t, in, &call), in, c->n_in);
                    free(labels);
                }
        /* x op x, where the first layout takes two inputs of one shape: both gradients into one buffer */
        const op_case *c0 = &r->layouts[0];
        if (c0->n_in == 2 && !r->labels && !r->index_count && same_shape(&c0->in[0], &c0->in[1]))
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                ag_tape_reset(t);
                op_shape sh = op_shape_at(c0->in[0], sizes[s][0], sizes[s][1], K);
                ag_tensor *x = leaf(t, sh.ndim, sh.d, 1.5, 0, op_domain_of(r, c0, 1).lo >= 0, 0);
                const op_call call = {c0->param, NULL, 2};
                snprintf(name, sizeof name, "%s/self/%zux%zu", r->name, sizes[s][0], sizes[s][1]);
                hash_print(t, name, r->build(t, (ag_tensor *[]){x, x}, &call), &x, 1);
            }
    }

    /* ag_dataset_batch's byte -> ag_real conversion: all 256 values, rows with tails */
    {
        ag_dataset ds = {0};
        ds.n = 50;
        ds.rows = 7;
        ds.cols = 9;
        ds.classes = 10;
        uint8_t images[50 * 63], labels[50];
        for (size_t i = 0; i < sizeof images; i++) images[i] = (uint8_t)(i * 37u + i / 256);
        for (size_t i = 0; i < 50; i++) labels[i] = (uint8_t)(i % 10);
        ds.images = images;
        ds.labels = labels;
        uint32_t idx[50];
        for (uint32_t i = 0; i < 50; i++) idx[i] = (i * 7u) % 50u;
        ag_real x[50 * 63];
        if (ag_dataset_batch(&ds, idx, 50, x, NULL, NULL) != AG_OK) return 1;
        printf("%-28s fwd %016" PRIx64 "\n", "dataset_batch", fnv(0xcbf29ce484222325ull, x, 50 * 63));
        /* and standardised: (v / 255 - mean) / std */
        if (ag_dataset_standardize(&ds, 0.2860, 0.3530) != AG_OK ||
            ag_dataset_batch(&ds, idx, 50, x, NULL, NULL) != AG_OK)
            return 1;
        printf("%-28s fwd %016" PRIx64 "\n", "dataset_batch_standard", fnv(0xcbf29ce484222325ull, x, 50 * 63));
    }
    ag_tape_free(t);
    return 0;
}

static Suite *eltwise_simd_suite(void) {
    Suite *s = suite_create("eltwise_simd");
    TCase *tc = tcase_create("sigmoid");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_variants_match_scalar);
    tcase_add_test(tc, test_variants_bit_sweep);
    tcase_add_test(tc, test_dispatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--hash") == 0) return hash_all();
    return ag_test_run(eltwise_simd_suite());
}

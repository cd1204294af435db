/*
 * eltwise.c - vectorised element-wise kernels shared by the ops: whole-array sums in double with
 * interleaved lanes (ag__sum, ag__sum_sq) and the sigmoid's hand-written SSE2/AVX2/AVX-512 variants
 * (ag__sigmoid_array). Every variant does the scalar's IEEE operations per element, so results are
 * the same bits on every machine and thread count.
 */
#include "eltwise.h"
#include "special.h"

#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------------------------- sums */

/* lane j accumulates the elements i with i % AG__SUM_LANES == j; then the lanes are added pairwise */
#define AG__SUM_LANES 32

static double combine_lanes(double *l) {
    for (int w = AG__SUM_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

AG__CLONES static double sum_lanes(const ag_real *restrict x, size_t n) {
    double l[AG__SUM_LANES] = {0};
    size_t i = 0;
    for (; i + AG__SUM_LANES <= n; i += AG__SUM_LANES)
        for (int j = 0; j < AG__SUM_LANES; j++) l[j] += (double)x[i + j];
    for (int j = 0; i < n; i++, j++) l[j] += (double)x[i];
    return combine_lanes(l);
}

AG__CLONES static double sum_sq_lanes(const ag_real *restrict x, size_t n) {
    double l[AG__SUM_LANES] = {0};
    size_t i = 0;
    for (; i + AG__SUM_LANES <= n; i += AG__SUM_LANES)
        for (int j = 0; j < AG__SUM_LANES; j++) l[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i < n; i++, j++) l[j] += (double)x[i] * (double)x[i];
    return combine_lanes(l);
}

/* extern entry points call static clones: clang emits a target_clones resolver only where the
 * function is called in its own file */
double ag__sum(const ag_real *x, size_t n) { return sum_lanes(x, n); }
double ag__sum_sq(const ag_real *x, size_t n) { return sum_sq_lanes(x, n); }

/* ---------------------------------------------------------------- sigmoid arrays
 * f(x) = 1/(1+e^-x) (backprop-derivation.md, "Notation"), stable for any |x| (ag__sigmoid1). */

/* The scalar is ag__sigmoid1 (internal.h). Its selects keep GCC from vectorising the loop (under
 * the default -ftrapping-math it will not if-convert them), so the float build on x86-64 runs the
 * same operations 4 at a time with SSE2 (baseline there): max, mul, add, sub, shifts, and/andnot
 * selects give each lane exactly the scalar's bits, so results do not depend on n or alignment. */
#if !defined(AG_DOUBLE) && (defined(__SSE2__) || defined(_M_X64))
#include <emmintrin.h>
#define AG__SIGMOID_SSE2 1
#endif
/* The same lanes 8 (AVX2) and 16 (AVX-512F) at a time, picked once from the CPU: every variant
 * does the SSE2 loop's operations in the same order (max with the same operand order, so a NaN
 * stays; ordered compares; selects of whole values), so all of them give the scalar's bits. */
#if defined(AG__SIGMOID_SSE2) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define AG__SIGMOID_WIDE 1
#endif

typedef void (*array_fn)(const ag_real *x, ag_real *o, size_t n);

static void sigmoid_scalar(const ag_real *x, ag_real *o, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = ag__sigmoid1(x[i]);
}

static void exp_scalar(const ag_real *x, ag_real *o, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = ag__exp_nonpos(x[i]);
}

#ifdef AG__SIGMOID_SSE2
/* ag__exp_nonpos 4 lanes at a time (AG__EXP_NONPOS_DEFINE, eltwise.h) */
typedef __m128 AG__SSE2_f;
typedef __m128i AG__SSE2_i;
#define AG__SSE2_set1(c) _mm_set1_ps(c)
#define AG__SSE2_add(a, b) _mm_add_ps(a, b)
#define AG__SSE2_sub(a, b) _mm_sub_ps(a, b)
#define AG__SSE2_mul(a, b) _mm_mul_ps(a, b)
#define AG__SSE2_max(lo, a) _mm_max_ps(lo, a) /* the second operand when unordered */
#define AG__SSE2_bits(f) _mm_castps_si128(f)
#define AG__SSE2_float(i) _mm_castsi128_ps(i)
#define AG__SSE2_iadd(i, j) _mm_add_epi32(i, j)
#define AG__SSE2_isub(i, j) _mm_sub_epi32(i, j)
#define AG__SSE2_iset1(c) _mm_set1_epi32(c)
#define AG__SSE2_shl23(i) _mm_slli_epi32(i, 23)
#define AG__SSE2_zero_lt(a, lo, v) _mm_andnot_ps(_mm_cmplt_ps(a, lo), v)
AG__EXP_NONPOS_DEFINE(AG__SSE2, static inline __attribute__((always_inline)), exp4)

/* 4 lanes at a time from i while 4 remain; returns where it stopped. */
static inline __attribute__((always_inline)) size_t sigmoid_sse2_from(const float *x, float *o, size_t i,
                                                                      size_t n) {
    const __m128 sign = _mm_set1_ps(-0.0f), one = _mm_set1_ps(1.0f);
    for (; i + 4 <= n; i += 4) {
        const __m128 xv = _mm_loadu_ps(x + i);
        const __m128 e = exp4(_mm_or_ps(xv, sign)); /* e^-|x| */
        const __m128 sg = _mm_div_ps(one, _mm_add_ps(one, e)), es = _mm_mul_ps(e, sg);
        const __m128 pos = _mm_cmpge_ps(xv, _mm_setzero_ps()); /* x >= 0 ? s : e s */
        _mm_storeu_ps(o + i, _mm_or_ps(_mm_and_ps(pos, sg), _mm_andnot_ps(pos, es)));
    }
    return i;
}

static void sigmoid_sse2(const ag_real *x, ag_real *o, size_t n) {
    for (size_t i = sigmoid_sse2_from(x, o, 0, n); i < n; i++) o[i] = ag__sigmoid1(x[i]);
}

static void exp_sse2(const ag_real *x, ag_real *o, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(o + i, exp4(_mm_loadu_ps(x + i)));
    for (; i < n; i++) o[i] = ag__exp_nonpos(x[i]);
}
#endif

#ifdef AG__SIGMOID_WIDE
typedef __m256 AG__AVX2_f;
typedef __m256i AG__AVX2_i;
#define AG__AVX2_set1(c) _mm256_set1_ps(c)
#define AG__AVX2_add(a, b) _mm256_add_ps(a, b)
#define AG__AVX2_sub(a, b) _mm256_sub_ps(a, b)
#define AG__AVX2_mul(a, b) _mm256_mul_ps(a, b)
#define AG__AVX2_max(lo, a) _mm256_max_ps(lo, a)
#define AG__AVX2_bits(f) _mm256_castps_si256(f)
#define AG__AVX2_float(i) _mm256_castsi256_ps(i)
#define AG__AVX2_iadd(i, j) _mm256_add_epi32(i, j)
#define AG__AVX2_isub(i, j) _mm256_sub_epi32(i, j)
#define AG__AVX2_iset1(c) _mm256_set1_epi32(c)
#define AG__AVX2_shl23(i) _mm256_slli_epi32(i, 23)
#define AG__AVX2_zero_lt(a, lo, v) _mm256_andnot_ps(_mm256_cmp_ps(a, lo, _CMP_LT_OS), v)
AG__EXP_NONPOS_DEFINE(AG__AVX2, static inline __attribute__((always_inline, target("avx2"))), exp8)

__attribute__((target("avx2"))) static void sigmoid_avx2(const ag_real *x, ag_real *o, size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 e = exp8(_mm256_or_ps(xv, sign));
        const __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, e)), es = _mm256_mul_ps(e, sg);
        const __m256 pos = _mm256_cmp_ps(xv, _mm256_setzero_ps(), _CMP_GE_OS);
        _mm256_storeu_ps(o + i, _mm256_or_ps(_mm256_and_ps(pos, sg), _mm256_andnot_ps(pos, es)));
    }
    for (i = sigmoid_sse2_from(x, o, i, n); i < n; i++) o[i] = ag__sigmoid1(x[i]);
}

__attribute__((target("avx2"))) static void exp_avx2(const ag_real *x, ag_real *o, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, exp8(_mm256_loadu_ps(x + i)));
    exp_sse2(x + i, o + i, n - i);
}

/* AVX-512F only (no DQ): compares into masks, the selects as masked moves; the last n % 16
 * elements through masked loads and stores (lanes past the end compute on zeros and are not
 * stored). */
typedef __m512 AG__AVX512_f;
typedef __m512i AG__AVX512_i;
#define AG__AVX512_set1(c) _mm512_set1_ps(c)
#define AG__AVX512_add(a, b) _mm512_add_ps(a, b)
#define AG__AVX512_sub(a, b) _mm512_sub_ps(a, b)
#define AG__AVX512_mul(a, b) _mm512_mul_ps(a, b)
#define AG__AVX512_max(lo, a) _mm512_max_ps(lo, a)
#define AG__AVX512_bits(f) _mm512_castps_si512(f)
#define AG__AVX512_float(i) _mm512_castsi512_ps(i)
#define AG__AVX512_iadd(i, j) _mm512_add_epi32(i, j)
#define AG__AVX512_isub(i, j) _mm512_sub_epi32(i, j)
#define AG__AVX512_iset1(c) _mm512_set1_epi32(c)
#define AG__AVX512_shl23(i) _mm512_slli_epi32(i, 23)
#define AG__AVX512_zero_lt(a, lo, v) \
    _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(a, lo, _CMP_LT_OS), _mm512_setzero_ps())
AG__EXP_NONPOS_DEFINE(AG__AVX512, static inline __attribute__((always_inline, target("avx512f"))), exp16)

/* the bitwise or (for -|x|) on the integer view: _mm512_or_ps needs AVX-512DQ */
__attribute__((target("avx512f"))) static inline __m512 sigmoid16(__m512 xv) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = exp16(
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(xv), _mm512_set1_epi32((int)0x80000000u))));
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, e)), es = _mm512_mul_ps(e, sg);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_GE_OS), es, sg);
}

/* f over x[0, n) 16 lanes at a time, the tail masked */
#define AG__AVX512_ARRAY(f, x, o, n)                                                              \
    do {                                                                                          \
        const size_t n_ = (n);                                                                    \
        size_t i_ = 0;                                                                            \
        for (; i_ + 16 <= n_; i_ += 16) _mm512_storeu_ps((o) + i_, f(_mm512_loadu_ps((x) + i_))); \
        if (i_ < n_) {                                                                            \
            const __mmask16 k_ = (__mmask16)((1u << (n_ - i_)) - 1);                              \
            _mm512_mask_storeu_ps((o) + i_, k_, f(_mm512_maskz_loadu_ps(k_, (x) + i_)));          \
        }                                                                                         \
    } while (0)

__attribute__((target("avx512f"))) static void sigmoid_avx512(const ag_real *x, ag_real *o, size_t n) {
    AG__AVX512_ARRAY(sigmoid16, x, o, n);
}

__attribute__((target("avx512f"))) static void exp_avx512(const ag_real *x, ag_real *o, size_t n) {
    AG__AVX512_ARRAY(exp16, x, o, n);
}
#endif

/* The dispatch: the widest variant the CPU runs (the baseline's with -DAG_NO_CLONES, as the
 * clones), chosen on the first call. */
static const struct {
    const char *name;
    array_fn fn, exp;
} sigmoid_variants[] = {
    {"scalar", sigmoid_scalar, exp_scalar},
#ifdef AG__SIGMOID_SSE2
    {"sse2", sigmoid_sse2, exp_sse2},
#endif
#ifdef AG__SIGMOID_WIDE
    {"avx2", sigmoid_avx2, exp_avx2},
    {"avx512", sigmoid_avx512, exp_avx512},
#endif
};
enum { N_SIGMOID_VARIANTS = sizeof sigmoid_variants / sizeof sigmoid_variants[0] };

static int sigmoid_runs(int v) { /* 1 if this CPU can run variant v */
#ifdef AG__SIGMOID_WIDE
    __builtin_cpu_init();
    if (strcmp(sigmoid_variants[v].name, "avx2") == 0) return __builtin_cpu_supports("avx2") != 0;
    if (strcmp(sigmoid_variants[v].name, "avx512") == 0) return __builtin_cpu_supports("avx512f") != 0;
#endif
    (void)v;
    return 1;
}

static _Atomic int sigmoid_pick = -1; /* index into sigmoid_variants; -1 before the first call */

static int sigmoid_choose(void) {
    int v = atomic_load_explicit(&sigmoid_pick, memory_order_relaxed);
    if (v >= 0) return v;
#ifdef AG_NO_CLONES
    v = N_SIGMOID_VARIANTS > 1 ? 1 : 0; /* SSE2 where it exists */
#else
    v = N_SIGMOID_VARIANTS - 1;
    while (v > 0 && !sigmoid_runs(v)) v--;
#endif
    atomic_store_explicit(&sigmoid_pick, v, memory_order_relaxed); /* every thread picks the same */
    return v;
}

void ag__sigmoid_array(const ag_real *x, ag_real *o, size_t n) { /* o == x allowed: no restrict */
    sigmoid_variants[sigmoid_choose()].fn(x, o, n);
}

const char *ag__sigmoid_variant_name(void) { return sigmoid_variants[sigmoid_choose()].name; }

/* index of the variant called name that this CPU runs, or -1 */
static int variant_runnable(const char *name) {
    for (int v = 0; v < N_SIGMOID_VARIANTS; v++)
        if (name && strcmp(name, sigmoid_variants[v].name) == 0) return sigmoid_runs(v) ? v : -1;
    return -1;
}

int ag__sigmoid_variant(const char *name, const ag_real *x, ag_real *o, size_t n) {
    const int v = variant_runnable(name);
    if (v < 0) return -1;
    sigmoid_variants[v].fn(x, o, n);
    return 0;
}

int ag__exp_variant(const char *name, const ag_real *x, ag_real *o, size_t n) {
    const int v = variant_runnable(name);
    if (v < 0) return -1;
    sigmoid_variants[v].exp(x, o, n);
    return 0;
}

/* ---------------------------------------------------------------- tanh arrays */
AG__CLONES static void tanh_run(const ag_real *restrict x, ag_real *restrict o, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = ag__fn_tanh(x[i]);
}
/* o == x allowed: element i is read before it is written, and a clone's vector step reads its
 * whole block first; restrict on the inner call is then sound only for distinct buffers, so the
 * in-place case goes through a stack block. */
void ag__tanh_array(const ag_real *x, ag_real *o, size_t n) {
    if (x != o) {
        tanh_run(x, o, n);
        return;
    }
    ag_real buf[256];
    for (size_t i = 0; i < n; i += 256) {
        const size_t w = n - i < 256 ? n - i : 256;
        memcpy(buf, x + i, w * sizeof *buf);
        tanh_run(buf, o + i, w);
    }
}

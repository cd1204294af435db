/*
 * eltwise.c - vectorised element-wise kernels shared by the ops: whole-array sums in double with
 * interleaved lanes (ag__sum, ag__sum_sq) and the sigmoid's hand-written SSE2/AVX2/AVX-512 variants
 * (ag__sigmoid_array). Every variant does the scalar's IEEE operations per element, so results are
 * the same bits on every machine and thread count.
 */
#include "eltwise.h"

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

typedef void (*sigmoid_fn)(const ag_real *x, ag_real *o, size_t n);

static void sigmoid_scalar(const ag_real *x, ag_real *o, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = ag__sigmoid1(x[i]);
}

#ifdef AG__SIGMOID_SSE2
/* 4 lanes at a time from i while 4 remain; returns where it stopped. */
static inline __attribute__((always_inline)) size_t sigmoid_sse2_from(const float *x, float *o, size_t i,
                                                                      size_t n) {
    const __m128 sign = _mm_set1_ps(-0.0f), lo = _mm_set1_ps(-87.3f), one = _mm_set1_ps(1.0f);
    const __m128 magic = _mm_set1_ps(12582912.0f), log2e = _mm_set1_ps(1.44269504088896341f);
    const __m128 c1 = _mm_set1_ps(0.693359375f), c2 = _mm_set1_ps(-2.12194440e-4f);
    const __m128i mbits = _mm_castps_si128(magic), e127 = _mm_set1_epi32(127);
    for (; i + 4 <= n; i += 4) {
        const __m128 xv = _mm_loadu_ps(x + i);
        const __m128 a = _mm_or_ps(xv, sign);      /* -|x| */
        const __m128 xc = _mm_max_ps(lo, a);       /* a < -87.3 ? -87.3 : a (a NaN stays) */
        const __m128 t = _mm_add_ps(_mm_mul_ps(xc, log2e), magic);
        const __m128 nn = _mm_sub_ps(t, magic);
        const __m128 r = _mm_sub_ps(_mm_sub_ps(xc, _mm_mul_ps(nn, c1)), _mm_mul_ps(nn, c2));
        __m128 p = _mm_set1_ps(1.9875691500e-4f);
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
        const __m128 y = _mm_add_ps(_mm_add_ps(_mm_mul_ps(p, _mm_mul_ps(r, r)), r), one);
        const __m128i bits =
            _mm_slli_epi32(_mm_add_epi32(_mm_sub_epi32(_mm_castps_si128(t), mbits), e127), 23);
        const __m128 v = _mm_mul_ps(y, _mm_castsi128_ps(bits));
        const __m128 e = _mm_andnot_ps(_mm_cmplt_ps(a, lo), v); /* a < -87.3 ? 0 : v */
        const __m128 sg = _mm_div_ps(one, _mm_add_ps(one, e)), es = _mm_mul_ps(e, sg);
        const __m128 pos = _mm_cmpge_ps(xv, _mm_setzero_ps()); /* x >= 0 ? s : e s */
        _mm_storeu_ps(o + i, _mm_or_ps(_mm_and_ps(pos, sg), _mm_andnot_ps(pos, es)));
    }
    return i;
}

static void sigmoid_sse2(const ag_real *x, ag_real *o, size_t n) {
    for (size_t i = sigmoid_sse2_from(x, o, 0, n); i < n; i++) o[i] = ag__sigmoid1(x[i]);
}
#endif

#ifdef AG__SIGMOID_WIDE
__attribute__((target("avx2"))) static void sigmoid_avx2(const ag_real *x, ag_real *o, size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-87.3f), one = _mm256_set1_ps(1.0f);
    const __m256 magic = _mm256_set1_ps(12582912.0f), log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
    const __m256i mbits = _mm256_castps_si256(magic), e127 = _mm256_set1_epi32(127);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 a = _mm256_or_ps(xv, sign);
        const __m256 xc = _mm256_max_ps(lo, a);
        const __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, log2e), magic);
        const __m256 nn = _mm256_sub_ps(t, magic);
        const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(nn, c1)), _mm256_mul_ps(nn, c2));
        __m256 p = _mm256_set1_ps(1.9875691500e-4f);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
        const __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), one);
        const __m256i bits = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), mbits), e127), 23);
        const __m256 v = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
        const __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(a, lo, _CMP_LT_OS), v);
        const __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, e)), es = _mm256_mul_ps(e, sg);
        const __m256 pos = _mm256_cmp_ps(xv, _mm256_setzero_ps(), _CMP_GE_OS);
        _mm256_storeu_ps(o + i, _mm256_or_ps(_mm256_and_ps(pos, sg), _mm256_andnot_ps(pos, es)));
    }
    for (i = sigmoid_sse2_from(x, o, i, n); i < n; i++) o[i] = ag__sigmoid1(x[i]);
}

/* AVX-512F only (no DQ): the bitwise or on the integer view, compares into masks, the selects as
 * masked moves; the last n % 16 elements through masked loads and stores (lanes past the end
 * compute on zeros and are not stored). */
__attribute__((target("avx512f"))) static inline __m512 sigmoid16(__m512 xv) {
    const __m512 lo = _mm512_set1_ps(-87.3f), one = _mm512_set1_ps(1.0f);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 a = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(xv), _mm512_set1_epi32((int)0x80000000u)));
    const __m512 xc = _mm512_max_ps(lo, a);
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)), magic);
    const __m512 nn = _mm512_sub_ps(t, magic);
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(xc, _mm512_mul_ps(nn, _mm512_set1_ps(0.693359375f))),
                                   _mm512_mul_ps(nn, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), one);
    const __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic)),
                         _mm512_set1_epi32(127)),
        23);
    const __m512 v = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
    const __m512 e = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(a, lo, _CMP_LT_OS), _mm512_setzero_ps());
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, e)), es = _mm512_mul_ps(e, sg);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_GE_OS), es, sg);
}

__attribute__((target("avx512f"))) static void sigmoid_avx512(const ag_real *x, ag_real *o, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(o + i, sigmoid16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(o + i, k, sigmoid16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}
#endif

/* The dispatch: the widest variant the CPU runs (the baseline's with -DAG_NO_CLONES, as the
 * clones), chosen on the first call. */
static const struct {
    const char *name;
    sigmoid_fn fn;
} sigmoid_variants[] = {
    {"scalar", sigmoid_scalar},
#ifdef AG__SIGMOID_SSE2
    {"sse2", sigmoid_sse2},
#endif
#ifdef AG__SIGMOID_WIDE
    {"avx2", sigmoid_avx2},
    {"avx512", sigmoid_avx512},
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

int ag__sigmoid_variant(const char *name, const ag_real *x, ag_real *o, size_t n) {
    for (int v = 0; v < N_SIGMOID_VARIANTS; v++)
        if (name && strcmp(name, sigmoid_variants[v].name) == 0) {
            if (!sigmoid_runs(v)) return -1;
            sigmoid_variants[v].fn(x, o, n);
            return 0;
        }
    return -1;
}


/*
 * eltwise.h - element-wise math shared by the ops and the optimizer: libm on ag_real, the scalar
 * exp/sigmoid/tanh the SIMD loops are built from, and the vectorised array kernels (eltwise.c).
 * Not installed. Knows nothing of tapes or ops.
 */
#ifndef AG_KERNELS_ELTWISE_H
#define AG_KERNELS_ELTWISE_H

#include "../base.h"

/* ---- for the built-in ops (ops_*.c, gradcheck.c): libm on ag_real, so the float build calls
 * expf/tanhf/... (no double round trips) and the double build exp/tanh/... */
#include <math.h>
#ifdef AG_DOUBLE
#define ag__exp exp
#define ag__log log
#define ag__tanh tanh
#define ag__sqrt sqrt
#define ag__pow pow
#define ag__fabs fabs
#else
#define ag__exp expf
#define ag__log logf
#define ag__tanh tanhf
#define ag__sqrt sqrtf
#define ag__pow powf
#define ag__fabs fabsf
#endif


/* ---- scalar activations shared by the element-wise ops and the fused linear_act (ops_*.c) */

/* sigmoid: f(x) = 1/(1+e^-x);  f'(x) = f(x)(1 - f(x)) (backprop-derivation.md, "Notation").
 * Stable for any |x|: with e = e^-|x| in (0, 1], f = 1/(1+e) for x >= 0 and e/(1+e) for x < 0,
 * so exp never overflows and f(-100) is a tiny positive number, not 0/0. */
#ifdef AG_DOUBLE
#define ag__exp_nonpos ag__exp
#else
/* e^x for x <= 0 (or NaN), branch-free so that the sigmoid loop vectorises (libm's expf is a call
 * per element and was most of a sigmoid layer's time). Cephes' expf: x = n ln2 + r with
 * n = round(x log2 e) (rounded by the 1.5 * 2^23 trick, exact for |n| < 2^22), r in
 * [-ln2/2, ln2/2] from a two-part ln2, a degree-7 polynomial for e^r, 2^n from the exponent bits.
 * About 1 ulp; IEEE operations only, so every machine and vector width gives the same bits.
 * Below -87.3 (where 2^n would leave the normal range) the result is 0, and NaN stays NaN.
 *
 * Written once, here, for every width: AG__EXP_NONPOS_DEFINE(P, attrs, name) defines
 * `attrs P_f name(P_f x)` from the operations of an instruction set P, so the scalar below and the
 * SSE2/AVX2/AVX-512 sigmoids (eltwise.c) run the same operations in the same order (the
 * bit-for-bit test: tests/kernels/test_exp_variants.c). P provides the types P_f (floats) and P_i (their
 * 32-bit integer view) and
 *   P_set1(c), P_add/P_sub/P_mul(a, b)  floats, IEEE single precision, lane by lane
 *   P_max(lo, a)                        a < lo ? lo : a (so a NaN a stays)
 *   P_bits(f), P_float(i)               the same bits as P_i / as P_f
 *   P_iadd/P_isub(i, j), P_iset1(c)     32-bit integers, wrapping
 *   P_shl23(i)                          i << 23
 *   P_zero_lt(a, lo, v)                 a < lo ? 0 : v (ordered: a NaN a keeps v)
 * v is computed for every lane and then selected, never in a branch (GCC will not speculate an FP
 * op under -ftrapping-math, so a branch would stop the scalar loop's if-conversion). */
#define AG__EXP_NONPOS_DEFINE(P, attrs, name)                                                                \
    attrs P##_f name(P##_f x) {                                                                              \
        const P##_f lo = P##_set1(-87.3f), magic = P##_set1(12582912.0f); /* 1.5 * 2^23 */                   \
        const P##_f xc = P##_max(lo, x);                                                                     \
        const P##_f t = P##_add(P##_mul(xc, P##_set1(1.44269504088896341f)), magic);                         \
        const P##_f n = P##_sub(t, magic);                                                                   \
        const P##_f r =                                                                                      \
            P##_sub(P##_sub(xc, P##_mul(n, P##_set1(0.693359375f))), P##_mul(n, P##_set1(-2.12194440e-4f))); \
        P##_f p = P##_set1(1.9875691500e-4f);                                                                \
        p = P##_add(P##_mul(p, r), P##_set1(1.3981999507e-3f));                                              \
        p = P##_add(P##_mul(p, r), P##_set1(8.3334519073e-3f));                                              \
        p = P##_add(P##_mul(p, r), P##_set1(4.1665795894e-2f));                                              \
        p = P##_add(P##_mul(p, r), P##_set1(1.6666665459e-1f));                                              \
        p = P##_add(P##_mul(p, r), P##_set1(5.0000001201e-1f));                                              \
        const P##_f y = P##_add(P##_add(P##_mul(p, P##_mul(r, r)), r), P##_set1(1.0f));                      \
        /* 2^n, n in [-126, 0]; a NaN's bits wrap harmlessly (the NaN survives in y) */                      \
        const P##_i bits = P##_shl23(P##_iadd(P##_isub(P##_bits(t), P##_bits(magic)), P##_iset1(127)));      \
        const P##_f v = P##_mul(y, P##_float(bits));                                                         \
        return P##_zero_lt(x, lo, v);                                                                        \
    }

/* The scalar instance: plain float arithmetic, unsigned for the integer view. */
static inline uint32_t ag__f1_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float ag__f1_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
typedef float AG__F1_f;
typedef uint32_t AG__F1_i;
#define AG__F1_set1(c) (c)
#define AG__F1_add(a, b) ((a) + (b))
#define AG__F1_sub(a, b) ((a) - (b))
#define AG__F1_mul(a, b) ((a) * (b))
#define AG__F1_max(lo, a) ((a) < (lo) ? (lo) : (a))
#define AG__F1_bits(f) ag__f1_bits(f)
#define AG__F1_float(i) ag__f1_float(i)
#define AG__F1_iadd(i, j) ((i) + (j))
#define AG__F1_isub(i, j) ((i) - (j))
#define AG__F1_iset1(c) ((uint32_t)(c))
#define AG__F1_shl23(i) ((i) << 23)
#define AG__F1_zero_lt(a, lo, v) ((a) < (lo) ? 0.0f : (v))
AG__EXP_NONPOS_DEFINE(AG__F1, static inline, ag__exp_nonpos)
#endif
static inline ag_real ag__sigmoid1(ag_real x) {
    const ag_real e = ag__exp_nonpos(-ag__fabs(x));
    const ag_real s = 1 / (1 + e), es = e * s; /* both always computed, then selected: vectorises */
    return x >= 0 ? s : es;
}

/* o[i] = ag__sigmoid1(x[i]) for i < n, bit for bit, SIMD where available (ops_elementwise.c);
 * o == x is allowed (in place). */
void ag__sigmoid_array(const ag_real *x, ag_real *o, size_t n);

/* tanh: f'(x) = 1 - f(x)^2 (backprop-derivation.md, "Notation").
 * Float: |x| < 0.3, the odd Taylor series to x^11 (next term < 2e-9 relative); otherwise
 * (1 - e)/(1 + e) with e = e^(-2|x|) <= 0.55 by ag__exp_nonpos (so no libm call; the subtraction
 * loses at most ~1 bit), the sign put back from x's bits. Both are computed and one selected, so
 * the loop form (ag__fn_tanh in special.h, the same operations and bits) vectorises: ag__tanh_array.
 * Within 3 ulp of tanhf over every float (the worst near |x| = ln2/2, where e^-2|x| = 1/2 carries
 * its ~1 ulp; tests/kernels/test_vmath.c); exact +-1 for large |x|,
 * +-0 stays, NaN stays NaN. The double build uses libm's tanh. */
#ifdef AG_DOUBLE
#define ag__tanh1 tanh
#else
static inline float ag__tanh1(float x) {
    const uint32_t sign = ag__f1_bits(x) & 0x80000000u;
    const float ax = ag__f1_float(ag__f1_bits(x) ^ sign), x2 = x * x;
    const float p = x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 +
                                                                               x2 * (-1382.0f / 155925)))));
    const float e = ag__exp_nonpos(-2 * ax), q = ag__f1_float(ag__f1_bits((1 - e) / (1 + e)) | sign);
    return ax < 0.3f ? p : q;
}
#endif

/* o[i] = ag__tanh1(x[i]) for i < n, bit for bit, vectorised in every clone (eltwise.c);
 * o == x is allowed (in place). */
void ag__tanh_array(const ag_real *x, ag_real *o, size_t n);

/* sum_i x_i and sum_i x_i^2 over n elements in double (ops_reduce.c): interleaved partial sums
 * combined in a fixed order, so vectorised yet the same bits on every call. */
double ag__sum(const ag_real *x, size_t n);
double ag__sum_sq(const ag_real *x, size_t n);

/* Test hook for the hand-written SIMD variants of ag__sigmoid_array (ops_elementwise.c): runs the
 * variant named "scalar", "sse2", "avx2" or "avx512" on x[0, n) into o and returns 0, or returns
 * -1 if this build or CPU has no such variant. The variant ag__sigmoid_array dispatches to (once,
 * from the CPU; the baseline with -DAG_NO_CLONES) is in *ag__sigmoid_variant_name(). */
int ag__sigmoid_variant(const char *name, const ag_real *x, ag_real *o, size_t n);
const char *ag__sigmoid_variant_name(void);
/* The same for the e^x those variants compute (ag__exp_nonpos, meant for x <= 0 or NaN):
 * o[i] = e^x[i] as variant `name` computes it. The double build has only "scalar" (libm's exp). */
int ag__exp_variant(const char *name, const ag_real *x, ag_real *o, size_t n);

#endif /* AG_KERNELS_ELTWISE_H */

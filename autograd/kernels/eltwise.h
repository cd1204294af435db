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
 * Below -87.3 (where 2^n would leave the normal range) the result is 0, and NaN stays NaN. */
static inline float ag__exp_nonpos(float x) {
    const float xc = x < -87.3f ? -87.3f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const float t = xc * 1.44269504088896341f + magic;
    const float n = t - magic;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * (r * r) + r + 1.0f;
    uint32_t ti, mi; /* unsigned: a NaN's bits wrap harmlessly (the NaN survives in y) */
    memcpy(&ti, &t, sizeof ti);
    memcpy(&mi, &magic, sizeof mi);
    const uint32_t bits = (ti - mi + 127u) << 23; /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float v = y * scale; /* computed unconditionally: a select of values, which GCC if-converts
                                  (with -ftrapping-math it will not speculate an FP op in a branch) */
    return x < -87.3f ? 0.0f : v;
}
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
 * In float, glibc's tanhf goes through expm1f and costs ~3x an expf, which dominates chains of tiny
 * ops. So: |x| < 0.3, the odd Taylor series to x^11 (next term < 2e-9 relative); otherwise
 * (1 - e)/(1 + e) with e = e^(-2|x|) <= 0.55, where the subtraction loses at most ~1 bit. Within a
 * few ulp of tanhf (a test holds it to 4e-7 relative); exact +-1 for large |x|, NaN stays NaN.
 * The double build uses libm's tanh. */
#ifdef AG_DOUBLE
#define ag__tanh1 tanh
#else
static inline float ag__tanh1(float x) {
    const float ax = fabsf(x);
    if (ax < 0.3f) {
        const float x2 = x * x;
        return x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 +
                                                                                    x2 * (-1382.0f / 155925)))));
    }
    const float e = expf(-2 * ax);
    return copysignf((1 - e) / (1 + e), x);
}
#endif

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

#endif /* AG_KERNELS_ELTWISE_H */

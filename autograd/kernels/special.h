/*
 * special.h - scalar special functions for the element-wise functions and losses of ops/functions.c
 * and ops/loss.c: log1p, expm1, the normal CDF, sin/cos, 1/sqrt. Not installed; knows nothing of
 * tapes.
 *
 * The double build calls libm (the reference precision, and what the 1e-6 gradient checks hold
 * the ops to). The float build uses branch-free forms of IEEE operations only, built on
 * ag__fn_exp_nonpos (eltwise.h's ag__exp_nonpos, its selects on the bits) and ag__fn_sel: GCC and
 * clang vectorise loops over them inside AG__CLONES bodies (AVX2 and SSE2 clones included),
 * and every clone does the same operations per element, so the clones give the baseline's bits.
 * Errors are a few ulp (each function says); the specials (0, +-inf, NaN) are selected at the end.
 */
#ifndef AG_KERNELS_SPECIAL_H
#define AG_KERNELS_SPECIAL_H

#include "eltwise.h"

#define AG__SQRT1_2 0.70710678118654752440 /* 1/sqrt(2) */
#define AG__INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */
/* |x| above which sin/cos leave the fast path for libm (ag__fn_trig_ok) */
#define AG__TRIG_FAST_MAX 8192.0f

#ifdef AG_DOUBLE
/* c ? a : b, for the ops' own selects (float: on the bits, see ag__fn_sel) */
static inline double ag__fn_pick(int c, double a, double b) { return c ? a : b; }
#define ag__fn_exp_nonpos exp
#endif

#ifdef AG_DOUBLE

static inline double ag__fn_log1p(double x) { return log1p(x); }
static inline double ag__fn_log1p_unit(double e) { return log1p(e); }
static inline double ag__fn_expm1(double x) { return expm1(x); }
static inline double ag__fn_expm1_nonpos(double x) { return expm1(x > 0 ? 0 : x); } /* NaN stays */
/* Phi(x) = P(N(0,1) <= x) = erfc(-x/sqrt2)/2: erfc keeps the left tail's relative precision */
static inline double ag__fn_ncdf(double x) { return 0.5 * erfc(-x * AG__SQRT1_2); }
static inline double ag__fn_sin(double x) { return sin(x); }
static inline double ag__fn_cos(double x) { return cos(x); }
static inline int ag__fn_trig_ok(double x) { (void)x; return 1; } /* libm everywhere */
static inline double ag__fn_rsqrt(double x) { return 1 / sqrt(x); }
static inline double ag__fn_exp(double x) { return exp(x); }
static inline double ag__fn_tanh(double x) { return tanh(x); }
static inline double ag__fn_log(double x) { return log(x); }

#else

/* c ? a : b on the bits. GCC sinks an operand used by one arm of a ?: into that arm, and then
 * (-ftrapping-math) will not if-convert a division there: the loop stops vectorising. */
static inline float ag__fn_sel(int c, float a, float b) {
    const uint32_t m = 0u - (uint32_t)(c != 0);
    return ag__f1_float((ag__f1_bits(a) & m) | (ag__f1_bits(b) & ~m));
}

#define ag__fn_pick ag__fn_sel

/* ag__exp_nonpos (eltwise.h) with its two selects on the bits: the same operations and bits, but
 * loops over it vectorise in every clone (GCC 12 if-converts its ?: only with AVX-512 masks). */
#define AG__FS_zero_lt(a, lo, v) ag__fn_sel((a) < (lo), 0.0f, (v))
#define AG__FS_f AG__F1_f
#define AG__FS_i AG__F1_i
#define AG__FS_set1 AG__F1_set1
#define AG__FS_add AG__F1_add
#define AG__FS_sub AG__F1_sub
#define AG__FS_mul AG__F1_mul
#define AG__FS_max(lo, a) ag__fn_sel((a) < (lo), (lo), (a))
#define AG__FS_bits AG__F1_bits
#define AG__FS_float AG__F1_float
#define AG__FS_iadd AG__F1_iadd
#define AG__FS_isub AG__F1_isub
#define AG__FS_iset1 AG__F1_iset1
#define AG__FS_shl23 AG__F1_shl23
AG__EXP_NONPOS_DEFINE(AG__FS, static inline, ag__fn_exp_nonpos)

/* log(1 + e) for e in [0, 1] (e = e^-|x| in softplus): with s = f/(2+f), log(1+f) = 2 atanh s
 * = 2s + 2s^3/3 + ... (|s| <= 0.172, terms to s^9: truncation < 3e-9 relative). e <= sqrt2 - 1
 * takes f = e directly; above, log(1+e) = ln2 + log((1+e)/2), and (1+e)/2 - 1 = (e-1)/2, so
 * s = (e-1)/(e+3). Both read e exactly (no rounded 1+e), so tiny e keep full precision. ~1 ulp. */
static inline float ag__fn_log1p_unit(float e) {
    const int hi = e > 0.41421356f;
    const float s = ag__fn_sel(hi, e - 1.0f, e) / ag__fn_sel(hi, e + 3.0f, e + 2.0f), z = s * s;
    const float r = z * (0.66666666666f + z * (0.4f + z * (0.28571428571f + z * 0.22222222222f)));
    return ag__fn_sel(hi, 0.69314718056f, 0.0f) + (2.0f * s + s * r);
}

/* log(1 + x), any x: u = 1 + x = 2^k m with m in [sqrt(1/2), sqrt(2)) from the bits (musl's
 * shift), log m by the series above, and (x - (u - 1))/u restores what rounding 1 + x lost
 * (first order). x = -1 gives -inf, x < -1 NaN, +inf inf, NaN NaN. ~1-2 ulp. */
static inline float ag__fn_log1p(float x) {
    const float u = 1.0f + x;
    const uint32_t b = ag__f1_bits(u) + (0x3f800000u - 0x3f3504f3u);
    const float k = (float)((int32_t)(b >> 23) - 0x7f);
    const float f = ag__f1_float((b & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    const float s = f / (2.0f + f), z = s * s;
    const float r = z * (0.66666666666f + z * (0.4f + z * (0.28571428571f + z * 0.22222222222f)));
    const float c = (x - (u - 1.0f)) / u;
    /* k ln2 with ln2 in two parts (the high one has 16 bits: k ln2_hi is exact) */
    float y = k * 0.693145751953125f + ((2.0f * s + s * r) + (c + k * 1.428606765330187e-6f));
    y = ag__fn_sel(u > 0.0f, y, u == 0.0f ? -INFINITY : NAN);
    return ag__fn_sel(u == INFINITY, INFINITY, y);
}

/* e^x - 1 for x <= 0 (or NaN): |x| < 0.5 its Taylor series to x^9 (next term < 3e-10 relative),
 * else e^x - 1, where e^x <= 0.61 so the subtraction loses under one bit. ~1-2 ulp. */
static inline float ag__fn_expm1_nonpos(float x) {
    const float p = x * (1.0f + x * (0.5f + x * (1.6666666667e-1f + x * (4.1666666667e-2f + x * (8.3333333333e-3f +
                    x * (1.3888888889e-3f + x * (1.9841269841e-4f + x * (2.4801587302e-5f + x * 2.7557319224e-6f))))))));
    return ag__fn_sel(x > -0.5f, p, ag__fn_exp_nonpos(x) - 1.0f);
}

/* e^x - 1, any x: |x| < 0.5 the Taylor series; below, e^x - 1; above, (1 - e)/e with e = e^-x
 * (e >= e^-0.5 > 1/2: 1 - e is exact), and past x = 80 e^8 / e^-(x-8), so that e^x up to FLT_MAX
 * stays finite (ag__exp_nonpos flushes below -87.3). One exp; ~2 ulp; overflow gives +inf. */
static inline float ag__fn_expm1(float x) {
    const float ax = fabsf(x), sh = ag__fn_sel(x > 80.0f, 8.0f, 0.0f), e = ag__fn_exp_nonpos(sh - ax);
    const float p = x * (1.0f + x * (0.5f + x * (1.6666666667e-1f + x * (4.1666666667e-2f + x * (8.3333333333e-3f +
                    x * (1.3888888889e-3f + x * (1.9841269841e-4f + x * (2.4801587302e-5f + x * 2.7557319224e-6f))))))));
    const float pos = ag__fn_sel(sh > 0.0f, 2980.9579870417283f, 1.0f - e) / e;
    return ag__fn_sel(ax < 0.5f, p, ag__fn_sel(x > 0.0f, pos, e - 1.0f)); /* NaN: e - 1 is NaN */
}

/* Phi(x) = erfc(-x/sqrt2)/2, erfc(z) = t e^(-z^2 + P(t)) for z >= 0 with t = 1/(1 + z/2) and
 * P the degree-9 Chebyshev fit of Numerical Recipes (erfcc; relative error < 1.2e-7 for every
 * z >= 0), and 2 - erfc(-z) below 0. So the left tail Phi(-x) keeps its relative precision. */
static inline float ag__fn_ncdf(float x) {
    const float z = -x * (float)AG__SQRT1_2, az = fabsf(z), t = 1.0f / (1.0f + 0.5f * az);
    const float p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                    t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    const float r = t * ag__fn_exp_nonpos(p - az * az); /* the exponent is <= 3e-8: fine for exp_nonpos */
    return 0.5f * ag__fn_sel(z >= 0.0f, r, 2.0f - r);
}

/* 1/sqrt(x): sqrtf keeps an errno path for x < 0, so its loops do not vectorise, and a scalar
 * sqrt + div cost ~8 ns on the Zen 5 host. Instead: y0 from the bits (0x5f3759df - b/2, within
 * 3.5%), then three Newton steps y (3/2 - x y^2 / 2) (relative error 3.5e-2 -> 1.8e-3 -> 4.7e-6 ->
 * 3e-11, so the float roundings dominate: ~1-2 ulp). Subnormal x is scaled by 2^24 first (the
 * result by 2^12); 0 gives 1/x = +-inf, +inf 0, x < 0 and NaN NaN, as 1/sqrt(x). */
static inline float ag__fn_rsqrt(float x) {
    const int sub = x < 1.17549435e-38f;
    const float xs = ag__fn_sel(sub, x * 16777216.0f, x), h = 0.5f * xs;
    float y = ag__f1_float(0x5f3759dfu - (ag__f1_bits(xs) >> 1));
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    y = y * ag__fn_sel(sub, 4096.0f, 1.0f);
    const float edge = ag__fn_sel(x == 0.0f, 1.0f / x, ag__fn_sel(x == INFINITY, 0.0f, NAN));
    return ag__fn_sel((x > 0.0f) & (x < INFINITY), y, edge);
}

/* e^x, any x, as expf gives it at the edges: x = n ln2 + r as in ag__exp_nonpos (the same Cephes
 * polynomial), but x clamped to [-104, 89] and 2^n applied as 2^(n/2) 2^(n - n/2), two normal
 * factors, so results past FLT_MAX round to +inf and those below FLT_MIN to the correctly rounded
 * subnormal of y 2^n (only the last product rounds). -inf gives 0, NaN NaN. Max error over every
 * float in [-104, 89] against glibc's expf: 1 ulp (tests/kernels/test_vmath.c). */
static inline float ag__fn_exp(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const float xc = ag__fn_sel(x > 89.0f, 89.0f, ag__fn_sel(x < -104.0f, -104.0f, x));
    const float t = xc * 1.44269504088896341f + magic, n = t - magic;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = (p * (r * r) + r) + 1.0f;
    /* n in [-150, 128] as an integer (biased by 256 so the halving shift is unsigned) */
    const uint32_t nb = ag__f1_bits(t) - ag__f1_bits(magic) + 256u, n1 = nb >> 1, n2 = nb - n1;
    const float s1 = ag__f1_float((n1 - 128u + 127u) << 23), s2 = ag__f1_float((n2 - 128u + 127u) << 23);
    return (y * s1) * s2; /* NaN: y is NaN */
}

/* ln x, as logf gives it at the edges (FreeBSD/musl logf): x = 2^k m with m in [sqrt(1/2), sqrt2)
 * from the bits (subnormals scaled by 2^25 first), f = m - 1 (exact), s = f/(2+f), and
 * log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)) with R the degree-4 minimax fit (|error| < 2^-34).
 * 0 gives -inf, x < 0 NaN, +inf +inf, NaN NaN. Max error over every positive float against glibc's
 * logf: 1 ulp (tests/kernels/test_vmath.c). */
static inline float ag__fn_log(float x) {
    const int sub = x < 1.17549435e-38f;
    const float xs = ag__fn_sel(sub, x * 33554432.0f, x); /* 2^25 */
    const uint32_t b = ag__f1_bits(xs) + (0x3f800000u - 0x3f3504f3u);
    const float k = (float)((int32_t)(b >> 23) - 0x7f) - ag__fn_sel(sub, 25.0f, 0.0f);
    const float f = ag__f1_float((b & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    const float s = f / (2.0f + f), z = s * s, w = z * z;
    const float R = z * (0x1.555554p-1f + w * 0x1.23d3dcp-2f) + w * (0x1.999c26p-2f + w * 0x1.f13c4cp-3f);
    const float hfsq = 0.5f * f * f;
    const float y = s * (hfsq + R) + k * 9.0580006145e-06f - hfsq + f + k * 6.9313812256e-01f;
    const float edge = ag__fn_sel(x == 0.0f, -INFINITY, ag__fn_sel(x == INFINITY, INFINITY, NAN));
    return ag__fn_sel((x > 0.0f) & (x < INFINITY), y, edge);
}

/* ag__tanh1 (eltwise.h) with its selects on the bits: the same operations and bits, vectorises */
static inline float ag__fn_tanh(float x) {
    const uint32_t sign = ag__f1_bits(x) & 0x80000000u;
    const float ax = ag__f1_float(ag__f1_bits(x) ^ sign), x2 = x * x;
    const float p = x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 +
                                                                               x2 * (-1382.0f / 155925)))));
    const float e = ag__fn_exp_nonpos(-2 * ax), q = ag__f1_float(ag__f1_bits((1 - e) / (1 + e)) | sign);
    return ag__fn_sel(ax < 0.3f, p, q);
}

/* sin and cos for |x| <= AG__TRIG_FAST_MAX (Cephes' sinf/cosf): n = round(x 2/pi) by the
 * 1.5 2^23 trick, r = x - n pi/2 with pi/2 in three parts (n C1 and n C2 exact for |n| < 2^13),
 * |r| <= pi/4, then the minimax polynomials for sin r and cos r and the quadrant n mod 4. ~1 ulp.
 * Outside (huge, inf, NaN) the result is 0: callers take libm's there (ag__fn_trig_ok). */
static inline int ag__fn_trig_ok(float x) { return fabsf(x) <= AG__TRIG_FAST_MAX; }
static inline float ag__fn_sincos_q(float x, uint32_t shift) { /* shift 0: sin x, 1: cos x = sin(x + pi/2) */
    const float magic = 12582912.0f, tn = x * 0.63661977236758134f + magic, n = tn - magic;
    const uint32_t q = ag__f1_bits(tn) + shift; /* the low bits of tn are n (magic's are 0) */
    const float r = ((x - n * 1.5703125f) - n * 4.837512969970703125e-4f) - n * 7.54978995489188216e-8f;
    const float z = r * r;
    const float s = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
    const float c = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
                    0.5f * z + 1.0f;
    const float v = ag__fn_sel(q & 1u, c, s);
    const float w = ag__f1_float(ag__f1_bits(v) ^ ((q & 2u) << 30)); /* quadrants 2, 3: -v */
    return ag__fn_sel(ag__fn_trig_ok(x), w, 0.0f);
}
static inline float ag__fn_sin(float x) { return ag__fn_sincos_q(x, 0); }
static inline float ag__fn_cos(float x) { return ag__fn_sincos_q(x, 1); }

#endif

#endif /* AG_KERNELS_SPECIAL_H */

/* gemm_x86.c - AVX-512 and AVX2 GEMM micro-kernels (see gemm.c for the blocking around them).
 * Each kernel keeps an MR x NR tile of C in registers: per k step it loads one NR-wide row of the packed B
 * micro-panel (two vectors) and broadcasts MR values of the packed A micro-panel, giving 2*MR independent
 * FMA chains - enough to cover FMA latency on two ports. The SIMD code is compiled through target
 * attributes, so the file needs no special flags and is chosen at run time (gemm.c). */
#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AG__UNROLL _Pragma("GCC unroll 16")

/* ======================= AVX-512: MR = 12 rows x NR = 2 zmm ======================= */
#define T512 __attribute__((target("avx512f,avx512vl,fma")))
#define A5_MR 12

#ifdef AG_DOUBLE
#define Z_W 8
typedef __m512d zv;
typedef __mmask8 zmask;
#define z_load(p) _mm512_loadu_pd(p)
#define z_set1(x) _mm512_set1_pd(x)
#define z_fma(a, b, c) _mm512_fmadd_pd(a, b, c)
#define z_mul(a, b) _mm512_mul_pd(a, b)
#define z_zero() _mm512_setzero_pd()
#define z_mload(m, p) _mm512_maskz_loadu_pd(m, p)
#define z_mstore(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#else
#define Z_W 16
typedef __m512 zv;
typedef __mmask16 zmask;
#define z_load(p) _mm512_loadu_ps(p)
#define z_set1(x) _mm512_set1_ps(x)
#define z_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define z_mul(a, b) _mm512_mul_ps(a, b)
#define z_zero() _mm512_setzero_ps()
#define z_mload(m, p) _mm512_maskz_loadu_ps(m, p)
#define z_mstore(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#endif
#define A5_NR (2 * Z_W)

/* `rows` is a compile-time constant at every call, so the loops below unroll and the arrays live in
 * registers. */
static inline __attribute__((always_inline)) T512 void
a5_tile(const int rows, size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, zmask m0,
        zmask m1, ag_real alpha, ag_real beta)
{
    zv c0[A5_MR], c1[A5_MR];
    AG__UNROLL for (int r = 0; r < rows; r++) c0[r] = c1[r] = z_zero();
    for (size_t p = 0; p < kc; p++) {
        zv b0 = z_load(b), b1 = z_load(b + Z_W);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv ar = z_set1(a[r]);
            c0[r] = z_fma(ar, b0, c0[r]);
            c1[r] = z_fma(ar, b1, c1[r]);
        }
        a += A5_MR;
        b += A5_NR;
    }
    zv va = z_set1(alpha);
    if (beta == 0) {
        AG__UNROLL for (int r = 0; r < rows; r++) {
            z_mstore(c + r * ldc, m0, z_mul(va, c0[r]));
            z_mstore(c + r * ldc + Z_W, m1, z_mul(va, c1[r]));
        }
    } else {
        zv vb = z_set1(beta);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv x0 = z_mload(m0, c + r * ldc), x1 = z_mload(m1, c + r * ldc + Z_W);
            z_mstore(c + r * ldc, m0, z_fma(va, c0[r], z_mul(vb, x0)));
            z_mstore(c + r * ldc + Z_W, m1, z_fma(va, c1[r], z_mul(vb, x1)));
        }
    }
}

static zmask lane_mask(int n)   /* lanes [0, n) of one vector, n clamped to [0, Z_W] */
{
    if (n <= 0) return 0;
    if (n >= Z_W) return (zmask)~(zmask)0;
    return (zmask)((1u << n) - 1);
}

T512 static void ukr_avx512(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, int mr,
                            int nr, ag_real alpha, ag_real beta)
{
    zmask m0 = lane_mask(nr), m1 = lane_mask(nr - Z_W);
    switch (mr) {
#define A5_CASE(R) case R: a5_tile(R, kc, a, b, c, ldc, m0, m1, alpha, beta); break;
        A5_CASE(12) A5_CASE(11) A5_CASE(10) A5_CASE(9) A5_CASE(8) A5_CASE(7)
        A5_CASE(6) A5_CASE(5) A5_CASE(4) A5_CASE(3) A5_CASE(2) A5_CASE(1)
#undef A5_CASE
    default: break;
    }
}

const ag__gemm_kernel ag__gemm_avx512 = {
    .name = "avx512", .mr = A5_MR, .nr = A5_NR,
#ifdef AG_DOUBLE
    .mc = 192, .kc = 256, .nc = 512,
#else
    .mc = 192, .kc = 384, .nc = 640,
#endif
    .ukr = ukr_avx512, .pack_b = NULL,
};

/* ======================= AVX2: MR = 6 rows x NR = 2 ymm ======================= */
#define T256 __attribute__((target("avx2,fma")))
#define A2_MR 6

#ifdef AG_DOUBLE
#define Y_W 4
typedef __m256d yv;
#define y_load(p) _mm256_loadu_pd(p)
#define y_set1(x) _mm256_set1_pd(x)
#define y_fma(a, b, c) _mm256_fmadd_pd(a, b, c)
#define y_mul(a, b) _mm256_mul_pd(a, b)
#define y_zero() _mm256_setzero_pd()
#define y_mload(m, p) _mm256_maskload_pd(p, m)
#define y_mstore(p, m, v) _mm256_maskstore_pd(p, m, v)
#define y_lanes() _mm256_set_epi64x(3, 2, 1, 0)
#define y_cmpgt(a, b) _mm256_cmpgt_epi64(a, b)
#define y_splat(n) _mm256_set1_epi64x(n)
#else
#define Y_W 8
typedef __m256 yv;
#define y_load(p) _mm256_loadu_ps(p)
#define y_set1(x) _mm256_set1_ps(x)
#define y_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define y_mul(a, b) _mm256_mul_ps(a, b)
#define y_zero() _mm256_setzero_ps()
#define y_mload(m, p) _mm256_maskload_ps(p, m)
#define y_mstore(p, m, v) _mm256_maskstore_ps(p, m, v)
#define y_lanes() _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0)
#define y_cmpgt(a, b) _mm256_cmpgt_epi32(a, b)
#define y_splat(n) _mm256_set1_epi32(n)
#endif
#define A2_NR (2 * Y_W)

static inline __attribute__((always_inline)) T256 void
a2_tile(const int rows, size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, __m256i m0,
        __m256i m1, ag_real alpha, ag_real beta)
{
    yv c0[A2_MR], c1[A2_MR];
    AG__UNROLL for (int r = 0; r < rows; r++) c0[r] = c1[r] = y_zero();
    for (size_t p = 0; p < kc; p++) {
        yv b0 = y_load(b), b1 = y_load(b + Y_W);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            yv ar = y_set1(a[r]);
            c0[r] = y_fma(ar, b0, c0[r]);
            c1[r] = y_fma(ar, b1, c1[r]);
        }
        a += A2_MR;
        b += A2_NR;
    }
    yv va = y_set1(alpha);
    if (beta == 0) {
        AG__UNROLL for (int r = 0; r < rows; r++) {
            y_mstore(c + r * ldc, m0, y_mul(va, c0[r]));
            y_mstore(c + r * ldc + Y_W, m1, y_mul(va, c1[r]));
        }
    } else {
        yv vb = y_set1(beta);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            yv x0 = y_mload(m0, c + r * ldc), x1 = y_mload(m1, c + r * ldc + Y_W);
            y_mstore(c + r * ldc, m0, y_fma(va, c0[r], y_mul(vb, x0)));
            y_mstore(c + r * ldc + Y_W, m1, y_fma(va, c1[r], y_mul(vb, x1)));
        }
    }
}

T256 static void ukr_avx2(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, int mr,
                          int nr, ag_real alpha, ag_real beta)
{
    __m256i m0 = y_cmpgt(y_splat(nr), y_lanes()), m1 = y_cmpgt(y_splat(nr - Y_W), y_lanes());
    switch (mr) {
#define A2_CASE(R) case R: a2_tile(R, kc, a, b, c, ldc, m0, m1, alpha, beta); break;
        A2_CASE(6) A2_CASE(5) A2_CASE(4) A2_CASE(3) A2_CASE(2) A2_CASE(1)
#undef A2_CASE
    default: break;
    }
}

const ag__gemm_kernel ag__gemm_avx2 = {
    .name = "avx2", .mr = A2_MR, .nr = A2_NR,
#ifdef AG_DOUBLE
    .mc = 144, .kc = 256, .nc = 512,
#else
    .mc = 144, .kc = 256, .nc = 1024,
#endif
    .ukr = ukr_avx2, .pack_b = NULL,
};

#else
/* Non-x86 targets build only the portable path; keep the translation unit non-empty for ISO C. */
typedef int ag__gemm_x86_unused;
#endif

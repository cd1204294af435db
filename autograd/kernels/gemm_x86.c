/* gemm_x86.c - AVX-512 and AVX2 GEMM micro-kernels (see gemm.c for the blocking around them).
 * Each kernel keeps an MR x NR tile of C in registers: per k step it loads one NR-wide row of the packed B
 * micro-panel (two vectors) and broadcasts MR values of the packed A micro-panel, giving 2*MR independent
 * FMA chains - enough to cover FMA latency on two ports. The SIMD code is compiled through target
 * attributes, so the file needs no special flags and is chosen at run time (gemm.c). */
#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* The tile loops below must unroll fully so that the C tile lives in registers. clang 14 ignores
 * "GCC unroll" and then keeps the accumulators on the stack (the AVX-512 kernel ran 3x slower). */
#if defined(__clang__)
#define AG__UNROLL _Pragma("clang loop unroll(full)")
#define AG__UNROLL4 _Pragma("clang loop unroll_count(4)")
#else
#define AG__UNROLL _Pragma("GCC unroll 16")
#define AG__UNROLL4 _Pragma("GCC unroll 4")
#endif

/* ======================= AVX-512: MR = 12 rows x NR = 2 zmm ======================= */
#define T512 __attribute__((target("avx512f,avx512vl,fma")))
#ifndef A5_MR
#define A5_MR 12
#endif

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
#define z_store(p, v) _mm512_storeu_pd(p, v)
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
#define z_store(p, v) _mm512_storeu_ps(p, v)
#endif
#define A5_NR (2 * Z_W)
/* Cache blocks: the B block (KC x NC) stays in L2 and its micro-panels stream through L1 with the A micro-panel.
 * KC = 1024 floats, NC = 256: B block 1 MiB of the 2 MiB L2; an MR x KC A micro-panel is 48 KiB. A long KC
 * writes each tile of C once per 1024 k steps, and with one k block at k <= 1024 a tile is loaded and stored
 * once. Against KC = 512, NC = 512, measured in one process alternating the two (1 thread, medians of 9):
 * square 1024 +1.6%, 256 +5%, the batch-128 X W^T and dY W products +8%, the rest of the MLP products within
 * -3%..+5%. */
#ifndef A5_KC
#define A5_KC (1024 * 4 / (int)sizeof(ag_real))
#endif
#ifndef A5_MC
#define A5_MC 192
#endif
#ifndef A5_NC
#define A5_NC 256
#endif
#ifndef A5_PF_B
#define A5_PF_B (8 * A5_NR)   /* B prefetch distance, elements: the micro-panel streams from L2 */
#endif

/* `rows` is a compile-time constant at every call, so the loops below unroll and the arrays live in
 * registers. */
/* `bs` is the distance between two k steps of B: A5_NR for a packed micro-panel, or ldb when the kernel reads
 * op(B) = B in place (`strided`: masked loads, nothing beyond nr is read). */
#ifndef A5_PF_BS
#define A5_PF_BS 12   /* prefetch distance of in-place B, in k steps (rows 3 KiB+ apart defeat the HW prefetcher) */
#endif
/* op(A) row r at the current k step: from a packed micro-panel (a[r], MR values per step), or with A read in place
 * (`inplace`, ukr_as: row r at a + r * lda, one value per step). The in-place rows are addressed from four
 * bases (rows 0, 3, 6, 9) plus 1, 2, 4 or 8 row strides, which x86 addressing does for free, so the loop does
 * not need twelve row pointers (too many registers). lb = lda in bytes. */
static inline __attribute__((always_inline)) ag_real a_at(const int inplace, const int r, const ag_real *a, size_t lb) {
    if (!inplace) return a[r];
    static const signed char base[12] = {0, 0, 0, 3, 0, 3, 6, 3, 0, 9, 6, 3};
    static const signed char mult[12] = {0, 1, 2, 0, 4, 2, 0, 4, 8, 0, 4, 8};
    const char *row0 = (const char *)a;
    if (r >= 12) return *(const ag_real *)(const void *)(row0 + (size_t)r * lb);
    return *(const ag_real *)(const void *)(row0 + (size_t)base[r] * lb + (size_t)mult[r] * lb);
}

static inline __attribute__((always_inline)) T512 void
a5_tile(const int rows, const int V, const int strided, const int a_inplace, size_t kc, const ag_real *a, size_t lda,
        const ag_real *b, size_t bs, ag_real *c, size_t ldc, zmask m0, zmask m1, ag_real alpha, ag_real beta) {
    const size_t astep = a_inplace ? 1 : A5_MR, lb = lda * sizeof(ag_real);   /* see a_at */
    /* V = 2 vectors of NR; V = 1 at the n edge when nr fits one vector: the second column of accumulators
     * would only sum zeros (784 = 24.5 x 32, so 2% of such a product's FMAs). Each element of C sees the same
     * FMAs in the same order either way. */
    zv c0[14], c1[14];   /* only [rows] is used */
    /* C rows are often 4 KiB apart (same L1 set): start fetching them now, they are needed at the end */
    AG__UNROLL for (int r = 0; r < rows; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        if (V == 2) _mm_prefetch((const char *)(c + r * ldc + A5_NR - 1), _MM_HINT_T0);
    }
    AG__UNROLL for (int r = 0; r < rows; r++) c0[r] = c1[r] = z_zero();
    if (strided) {
        /* unrolled: +5-10% here at 32-48 rows (measured), none on the packed loop below */
        AG__UNROLL4 for (size_t p = 0; p < kc; p++) {
            _mm_prefetch((const char *)(b + A5_PF_BS * bs), _MM_HINT_T0);
            if (V == 2) _mm_prefetch((const char *)(b + A5_PF_BS * bs + A5_NR - 1), _MM_HINT_T0);
            zv b0 = z_mload(m0, b), b1 = V == 2 ? z_mload(m1, b + Z_W) : z_zero();
            AG__UNROLL for (int r = 0; r < rows; r++) {
                zv ar = z_set1(a_at(a_inplace, r, a, lb));
                c0[r] = z_fma(ar, b0, c0[r]);
                if (V == 2) c1[r] = z_fma(ar, b1, c1[r]);
            }
            a += astep;
            b += bs;
        }
    } else {
        for (size_t p = 0; p < kc; p++) {
            _mm_prefetch((const char *)(b + A5_PF_B), _MM_HINT_T0);   /* both lines of a B row, 8 rows ahead */
            _mm_prefetch((const char *)(b + A5_PF_B + Z_W), _MM_HINT_T0);
            zv b0 = z_load(b), b1 = V == 2 ? z_load(b + Z_W) : z_zero();
            AG__UNROLL for (int r = 0; r < rows; r++) {
                zv ar = z_set1(a_at(a_inplace, r, a, lb));
                c0[r] = z_fma(ar, b0, c0[r]);
                if (V == 2) c1[r] = z_fma(ar, b1, c1[r]);
            }
            a += astep;
            b += A5_NR;
        }
    }
    zv va = z_set1(alpha);
    if (beta == 0) {
        AG__UNROLL for (int r = 0; r < rows; r++) {
            z_mstore(c + r * ldc, m0, z_mul(va, c0[r]));
            if (V == 2) z_mstore(c + r * ldc + Z_W, m1, z_mul(va, c1[r]));
        }
    } else {
        zv vb = z_set1(beta);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv x0 = z_mload(m0, c + r * ldc);
            z_mstore(c + r * ldc, m0, z_fma(va, c0[r], z_mul(vb, x0)));
            if (V == 2) {
                zv x1 = z_mload(m1, c + r * ldc + Z_W);
                z_mstore(c + r * ldc + Z_W, m1, z_fma(va, c1[r], z_mul(vb, x1)));
            }
        }
    }
}

static zmask lane_mask(int n) { /* lanes [0, n) of one vector, n clamped to [0, Z_W] */
    if (n <= 0) return 0;
    if (n >= Z_W) return (zmask)~(zmask)0;
    return (zmask)((1u << n) - 1);
}

/* ---- AVX-512 packing: the transposing cases (A m x k, B n x k) go through in-register W x W transposes,
 * which is what keeps packing small next to the FMAs for the MLP shapes; the others are masked copies. ---- */

/* Transposes a W x W block: rows [0, rows) of src (stride lds), columns [0, cols) of each; missing rows read
 * as zero. Output column j (the rows, as one vector) goes to dst + j * ldd, `lanes` values wide. */
static inline __attribute__((always_inline)) T512 void
t_block(const ag_real *src, size_t lds, int rows, int cols, ag_real *dst, size_t ldd, int lanes) {
    zmask cm = lane_mask(cols), lm = lane_mask(lanes);
    zv r[Z_W];
    AG__UNROLL for (int i = 0; i < Z_W; i++) r[i] = i < rows ? z_mload(cm, src + (size_t)i * lds) : z_zero();
#ifdef AG_DOUBLE
    /* pairs of rows: d[q][G] holds, in 128-bit lane L, column 2L+q of rows 2G, 2G+1 */
    zv d[2][4];
    AG__UNROLL for (int g = 0; g < 4; g++) {
        d[0][g] = _mm512_unpacklo_pd(r[2 * g], r[2 * g + 1]);
        d[1][g] = _mm512_unpackhi_pd(r[2 * g], r[2 * g + 1]);
    }
    AG__UNROLL for (int q = 0; q < 2; q++) {
        /* 4x4 transpose of 128-bit blocks: lane G of column 2L+q comes from d[q][G] lane L */
        zv s0 = _mm512_shuffle_f64x2(d[q][0], d[q][1], 0x44), s1 = _mm512_shuffle_f64x2(d[q][0], d[q][1], 0xEE);
        zv s2 = _mm512_shuffle_f64x2(d[q][2], d[q][3], 0x44), s3 = _mm512_shuffle_f64x2(d[q][2], d[q][3], 0xEE);
        zv o[4] = {_mm512_shuffle_f64x2(s0, s2, 0x88), _mm512_shuffle_f64x2(s0, s2, 0xDD),
                   _mm512_shuffle_f64x2(s1, s3, 0x88), _mm512_shuffle_f64x2(s1, s3, 0xDD)};
        AG__UNROLL for (int L = 0; L < 4; L++)
            if (2 * L + q < cols) z_mstore(dst + (size_t)(2 * L + q) * ldd, lm, o[L]);
    }
#else
    /* groups of four rows: c[q][G] holds, in 128-bit lane L, column 4L+q of rows 4G..4G+3 */
    zv c[4][4];
    AG__UNROLL for (int g = 0; g < 4; g++) {
        zv t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]), t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        zv t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]), t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        c[0][g] = _mm512_shuffle_ps(t0, t2, 0x44);
        c[1][g] = _mm512_shuffle_ps(t0, t2, 0xEE);
        c[2][g] = _mm512_shuffle_ps(t1, t3, 0x44);
        c[3][g] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
    AG__UNROLL for (int q = 0; q < 4; q++) {
        zv s0 = _mm512_shuffle_f32x4(c[q][0], c[q][1], 0x44), s1 = _mm512_shuffle_f32x4(c[q][0], c[q][1], 0xEE);
        zv s2 = _mm512_shuffle_f32x4(c[q][2], c[q][3], 0x44), s3 = _mm512_shuffle_f32x4(c[q][2], c[q][3], 0xEE);
        zv o[4] = {_mm512_shuffle_f32x4(s0, s2, 0x88), _mm512_shuffle_f32x4(s0, s2, 0xDD),
                   _mm512_shuffle_f32x4(s1, s3, 0x88), _mm512_shuffle_f32x4(s1, s3, 0xDD)};
        AG__UNROLL for (int L = 0; L < 4; L++)
            if (4 * L + q < cols) z_mstore(dst + (size_t)(4 * L + q) * ldd, lm, o[L]);
    }
#endif
}

T512 static void pack_a_avx512(int trans_a, const ag_real *a, size_t lda, size_t i0, size_t mc, size_t p0,
                               size_t kc, ag_real *dst) {
    for (size_t r0 = 0; r0 < mc; r0 += A5_MR, dst += A5_MR * kc) {
        int mr = (int)(mc - r0 < A5_MR ? mc - r0 : A5_MR);
        if (trans_a) {   /* A is k x m: one masked copy per k step, zeros beyond mr */
            const ag_real *src = a + p0 * lda + i0 + r0;
            zmask m0 = lane_mask(mr), m1 = lane_mask(mr - Z_W);
            for (size_t p = 0; p < kc; p++, src += lda) {
                z_mstore(dst + p * A5_MR, lane_mask(A5_MR), z_mload(m0, src));
                if (A5_MR > Z_W) z_mstore(dst + p * A5_MR + Z_W, lane_mask(A5_MR - Z_W), z_mload(m1, src + Z_W));
            }
        } else {         /* A is m x k: transpose W x W blocks of the MR rows */
            for (int g = 0; g * Z_W < A5_MR; g++) {
                int rows = mr - g * Z_W, lanes = A5_MR - g * Z_W < Z_W ? A5_MR - g * Z_W : Z_W;
                const ag_real *src = a + (i0 + r0 + (size_t)g * Z_W) * lda + p0;
                for (size_t p = 0; p < kc; p += Z_W) {
                    int cols = (int)(kc - p < Z_W ? kc - p : Z_W);
                    t_block(src + p, lda, rows, cols, dst + p * A5_MR + g * Z_W, A5_MR, lanes);
                }
            }
        }
    }
}

T512 static void pack_b_avx512(int trans_b, const ag_real *b, size_t ldb, size_t p0, size_t kc, size_t j0,
                               size_t nc, ag_real *dst) {
    for (size_t c0 = 0; c0 < nc; c0 += A5_NR, dst += A5_NR * kc) {
        int nr = (int)(nc - c0 < A5_NR ? nc - c0 : A5_NR);
        if (!trans_b) {  /* B is k x n: two masked vector copies per k step */
            const ag_real *src = b + p0 * ldb + j0 + c0;
            zmask m0 = lane_mask(nr), m1 = lane_mask(nr - Z_W);
            for (size_t p = 0; p < kc; p++, src += ldb) {
                z_store(dst + p * A5_NR, z_mload(m0, src));
                z_store(dst + p * A5_NR + Z_W, z_mload(m1, src + Z_W));
            }
        } else {         /* B is n x k: transpose W x W blocks of the NR rows */
            for (int g = 0; g < A5_NR / Z_W; g++) {
                int rows = nr - g * Z_W;
                const ag_real *src = b + (j0 + c0 + (size_t)g * Z_W) * ldb + p0;
                for (size_t p = 0; p < kc; p += Z_W) {
                    int cols = (int)(kc - p < Z_W ? kc - p : Z_W);
                    t_block(src + p, ldb, rows, cols, dst + p * A5_NR + g * Z_W, A5_NR, Z_W);
                }
            }
        }
    }
}

/* ---- AVX-512 direct kernels: no packing, for products where packing would cost as much as the FMAs
 * (a few rows of A, a short k, or a narrow op(B) such as the 10-wide output layer). gemm.c picks them by
 * shape only, never by thread count. ---- */

/* op(B) = B (k x n): C[rows x 16V] from broadcasts of A(i, p) = a[i*rs + p*cs] and rows of B read in place. */
static inline __attribute__((always_inline)) T512 void
d_axpy_tile(const int rows, const int V, size_t k, const ag_real *a, size_t rs, size_t cs, const ag_real *b,
            size_t ldb, ag_real *c, size_t ldc, int nr, ag_real alpha, ag_real beta) {
    zv acc[12][4];   /* only [rows][V] is used */
    zmask m[4];
    AG__UNROLL for (int v = 0; v < V; v++) m[v] = lane_mask(nr - v * Z_W);
    AG__UNROLL for (int r = 0; r < rows; r++) AG__UNROLL for (int v = 0; v < V; v++) acc[r][v] = z_zero();
    for (size_t p = 0; p < k; p++, a += cs, b += ldb) {
        zv bv[4];
        AG__UNROLL for (int v = 0; v < V; v++) bv[v] = z_mload(m[v], b + v * Z_W);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv ar = z_set1(a[r * rs]);
            AG__UNROLL for (int v = 0; v < V; v++) acc[r][v] = z_fma(ar, bv[v], acc[r][v]);
        }
    }
    zv va = z_set1(alpha), vb = z_set1(beta);
    AG__UNROLL for (int r = 0; r < rows; r++) AG__UNROLL for (int v = 0; v < V; v++) {
        ag_real *cp = c + r * ldc + v * Z_W;
        zv y = z_mul(va, acc[r][v]);
        if (beta != 0) y = z_fma(va, acc[r][v], z_mul(vb, z_mload(m[v], cp)));
        z_mstore(cp, m[v], y);
    }
}

/* Horizontal sums of 16 accumulators at once (a transpose-and-add tree, ~3 ops per vector instead of ~8
 * for separate reductions). Element v[4r + s] ends up in out[AG__RED_IDX(r, s)]. */
#ifdef AG_DOUBLE
#define AG__RED_IDX(r, s) ((r) < 2 ? 2 * (s) + (r) : 8 + 2 * (s) + (r) - 2)
static inline __attribute__((always_inline)) T512 void reduce16(const zv *v, ag_real *out) {
    zv w[8], x[4], y[2];
    AG__UNROLL for (int i = 0; i < 8; i++)   /* halves: v[2i] | v[2i+1] */
        w[i] = _mm512_add_pd(_mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0xEE));
    AG__UNROLL for (int i = 0; i < 4; i++)   /* quarters: v[4i] .. v[4i+3] */
        x[i] = _mm512_add_pd(_mm512_shuffle_f64x2(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f64x2(w[2 * i], w[2 * i + 1], 0xDD));
    AG__UNROLL for (int i = 0; i < 2; i++)   /* quarter q: v[8i+q], v[8i+4+q] */
        y[i] = _mm512_add_pd(_mm512_unpacklo_pd(x[2 * i], x[2 * i + 1]), _mm512_unpackhi_pd(x[2 * i], x[2 * i + 1]));
    _mm512_storeu_pd(out, y[0]);
    _mm512_storeu_pd(out + 8, y[1]);
}
#else
#define AG__RED_IDX(r, s) (4 * (s) + (r))
static inline __attribute__((always_inline)) T512 void reduce16(const zv *v, ag_real *out) {
    zv w[8], x[4], y[2];
    AG__UNROLL for (int i = 0; i < 8; i++)   /* halves: v[2i] | v[2i+1] */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    AG__UNROLL for (int i = 0; i < 4; i++)   /* quarters: v[4i] .. v[4i+3] */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    AG__UNROLL for (int i = 0; i < 2; i++)   /* quarter q: pairs of v[8i+q], v[8i+4+q] */
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
    /* quarter q: v[q], v[4+q], v[8+q], v[12+q] */
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD)));
}
#endif

/* op(B) = B^T, op(A) = A: C[rows x 4] as dot products of rows of A and rows of B, both contiguous in k.
 * Columns beyond nc re-read the last valid row of B and are not stored. */
static inline __attribute__((always_inline)) T512 void
d_dot_tile(const int rows, size_t k, const ag_real *a, size_t lda, const ag_real *b, size_t ldb, ag_real *c,
           size_t ldc, int nc, ag_real alpha, ag_real beta) {
    zv acc[16];   /* [4 r + s] */
    const ag_real *bp[4];
    AG__UNROLL for (int s = 0; s < 4; s++) bp[s] = b + (size_t)(s < nc ? s : nc - 1) * ldb;
    AG__UNROLL for (int i = 0; i < 16; i++) acc[i] = z_zero();
    for (size_t p = 0; p < k; p += Z_W) {
        zmask km = lane_mask((int)(k - p < Z_W ? k - p : Z_W));
        zv bv[4];
        AG__UNROLL for (int s = 0; s < 4; s++) bv[s] = z_mload(km, bp[s] + p);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv av = z_mload(km, a + r * lda + p);
            AG__UNROLL for (int s = 0; s < 4; s++) acc[4 * r + s] = z_fma(av, bv[s], acc[4 * r + s]);
        }
    }
    ag_real d[16];
    reduce16(acc, d);
    AG__UNROLL for (int r = 0; r < rows; r++) AG__UNROLL for (int s = 0; s < 4; s++) {
        if (s >= nc) break;
        ag_real *cp = c + r * ldc + s;
        ag_real dot = d[AG__RED_IDX(r, s)];
        *cp = beta == 0 ? alpha * dot : alpha * dot + beta * *cp;
    }
}

/* One row of A against 16 rows of B (a GEMV, C[1 x 16]): 16 independent FMA chains and 16 streams of B in
 * flight where d_dot_tile(1, ...) has 4, and one reduce16 per 16 dot products. The same sums, lane by lane
 * and then the same tree per vector, as d_dot_tile. Columns beyond nc re-read the last valid row of B. */
static inline __attribute__((always_inline)) T512 void
d_dot_row16(size_t k, const ag_real *a, const ag_real *b, size_t ldb, ag_real *c, int nc, ag_real alpha,
            ag_real beta) {
    zv acc[16];
    const ag_real *bp[16];
    AG__UNROLL for (int s = 0; s < 16; s++) bp[s] = b + (size_t)(s < nc ? s : nc - 1) * ldb;
    AG__UNROLL for (int i = 0; i < 16; i++) acc[i] = z_zero();
    for (size_t p = 0; p < k; p += Z_W) {
        zmask km = lane_mask((int)(k - p < Z_W ? k - p : Z_W));
        zv av = z_mload(km, a + p);
        AG__UNROLL for (int s = 0; s < 16; s++) acc[s] = z_fma(av, z_mload(km, bp[s] + p), acc[s]);
    }
    ag_real d[16];
    reduce16(acc, d);
    for (int s = 0; s < nc && s < 16; s++) {
        ag_real dot = d[AG__RED_IDX(s / 4, s % 4)]; /* acc[s] is "4 r + s" with r = s / 4 */
        c[s] = beta == 0 ? alpha * dot : alpha * dot + beta * c[s];
    }
}

T512 static void direct_avx512(int ta, int tb, size_t i0, size_t i1, size_t j0, size_t j1, size_t k,
                               ag_real alpha, const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                               ag_real beta, ag_real *c, size_t ldc) {
    if (!tb) {
        size_t rs = ta ? 1 : lda, cs = ta ? lda : 1;
        for (size_t i = i0; i < i1;) {
            size_t left = i1 - i;
            int rows = left >= 12 ? 12 : (int)left;
            int V = rows <= 6 ? 4 : 2;   /* few rows: wider tiles keep enough FMA chains in flight */
            const ag_real *ai = a + i * rs;
            for (size_t j = j0; j < j1; j += (size_t)V * Z_W) {
                int nr = (int)(j1 - j < (size_t)V * Z_W ? j1 - j : (size_t)V * Z_W);
                const ag_real *bj = b + j;
                ag_real *cij = c + i * ldc + j;
                switch (rows) {
#define D_CASE(R, VV) case R: d_axpy_tile(R, VV, k, ai, rs, cs, bj, ldb, cij, ldc, nr, alpha, beta); break;
                    D_CASE(1, 4) D_CASE(2, 4) D_CASE(3, 4) D_CASE(4, 4) D_CASE(5, 4) D_CASE(6, 4)
                    D_CASE(7, 2) D_CASE(8, 2) D_CASE(9, 2) D_CASE(10, 2) D_CASE(11, 2) D_CASE(12, 2)
#undef D_CASE
                default: break;
                }
            }
            i += (size_t)rows;
        }
    } else {   /* tb && !ta (gemm.c checks) */
        if (i1 - i0 == 1) {
            for (size_t j = j0; j < j1; j += 16)
                d_dot_row16(k, a + i0 * lda, b + j * ldb, ldb, c + i0 * ldc + j, (int)(j1 - j < 16 ? j1 - j : 16),
                            alpha, beta);
            return;
        }
        for (size_t i = i0; i < i1; i += 4) {
            int rows = i1 - i >= 4 ? 4 : (int)(i1 - i);
            for (size_t j = j0; j < j1; j += 4) {
                int nc = (int)(j1 - j < 4 ? j1 - j : 4);
                const ag_real *ai = a + i * lda, *bj = b + j * ldb;
                ag_real *cij = c + i * ldc + j;
                switch (rows) {
                case 4: d_dot_tile(4, k, ai, lda, bj, ldb, cij, ldc, nc, alpha, beta); break;
                case 3: d_dot_tile(3, k, ai, lda, bj, ldb, cij, ldc, nc, alpha, beta); break;
                case 2: d_dot_tile(2, k, ai, lda, bj, ldb, cij, ldc, nc, alpha, beta); break;
                default: d_dot_tile(1, k, ai, lda, bj, ldb, cij, ldc, nc, alpha, beta); break;
                }
            }
        }
    }
}

T512 static void ukr_avx512(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, int mr,
                            int nr, ag_real alpha, ag_real beta) {
    zmask m0 = lane_mask(nr), m1 = lane_mask(nr - Z_W);
    if (nr <= Z_W && mr == A5_MR) {   /* the n edge of a full-height tile */
        a5_tile(A5_MR, 1, 0, 0, kc, a, 0, b, A5_NR, c, ldc, m0, m1, alpha, beta);
        return;
    }
    switch (mr) {
#define A5_CASE(R) case R: a5_tile(R, 2, 0, 0, kc, a, 0, b, A5_NR, c, ldc, m0, m1, alpha, beta); break;
#if A5_MR >= 14
        A5_CASE(14) A5_CASE(13)
#endif
        A5_CASE(12) A5_CASE(11) A5_CASE(10) A5_CASE(9) A5_CASE(8) A5_CASE(7)
        A5_CASE(6) A5_CASE(5) A5_CASE(4) A5_CASE(3) A5_CASE(2) A5_CASE(1)
#undef A5_CASE
    default: break;
    }
}

/* As ukr_avx512 with B read in place: k step p of the micro-panel is b + p * ldb, nr columns. */
T512 static void ukr_bs_avx512(size_t kc, const ag_real *a, const ag_real *b, size_t ldb, ag_real *c, size_t ldc,
                               int mr, int nr, ag_real alpha, ag_real beta) {
    zmask m0 = lane_mask(nr), m1 = lane_mask(nr - Z_W);
    if (nr <= Z_W && mr == A5_MR) {   /* the n edge of a full-height tile */
        a5_tile(A5_MR, 1, 1, 0, kc, a, 0, b, ldb, c, ldc, m0, m1, alpha, beta);
        return;
    }
    switch (mr) {
#define A5_CASE(R) case R: a5_tile(R, 2, 1, 0, kc, a, 0, b, ldb, c, ldc, m0, m1, alpha, beta); break;
#if A5_MR >= 14
        A5_CASE(14) A5_CASE(13)
#endif
        A5_CASE(12) A5_CASE(11) A5_CASE(10) A5_CASE(9) A5_CASE(8) A5_CASE(7)
        A5_CASE(6) A5_CASE(5) A5_CASE(4) A5_CASE(3) A5_CASE(2) A5_CASE(1)
#undef A5_CASE
    default: break;
    }
}

/* As ukr_avx512 for a full-height tile with op(A) = A read in place (see ag__ukr_as_fn). */
T512 static void ukr_as_avx512(size_t kc, const ag_real *a, size_t lda, const ag_real *b, ag_real *c, size_t ldc,
                               int nr, ag_real alpha, ag_real beta) {
    zmask m0 = lane_mask(nr), m1 = lane_mask(nr - Z_W);
    if (nr <= Z_W) a5_tile(A5_MR, 1, 0, 1, kc, a, lda, b, A5_NR, c, ldc, m0, m1, alpha, beta);
    else a5_tile(A5_MR, 2, 0, 1, kc, a, lda, b, A5_NR, c, ldc, m0, m1, alpha, beta);
}

/* ---- AVX-512 kernel for op(A) = A with op(B) = B^T and few rows of A (X W^T at small batch): computes the
 * transposed tile C^T = B A^T, broadcasting from rows of B read in place (each contiguous in k, so no
 * transposing pack of the large operand) against a packed panel of A rows (the small operand, packed
 * like a B micro-panel). `rows` rows of B (columns of C) x nr rows of A; C[i][j] at c + i * ldc + j. ---- */
static inline __attribute__((always_inline)) T512 void
a5_tile_t(const int rows, size_t kc, const ag_real *b, size_t ldb, const ag_real *ap, ag_real *c, size_t ldc,
          int nr, ag_real alpha, ag_real beta) {
    zv c0[12], c1[12];
    const ag_real *br[12];
    AG__UNROLL for (int r = 0; r < rows; r++) br[r] = b + (size_t)r * ldb;
    AG__UNROLL for (int r = 0; r < rows; r++) c0[r] = c1[r] = z_zero();
    for (size_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(ap + A5_PF_B), _MM_HINT_T0);
        _mm_prefetch((const char *)(ap + A5_PF_B + Z_W), _MM_HINT_T0);
        zv a0 = z_load(ap), a1 = z_load(ap + Z_W);
        AG__UNROLL for (int r = 0; r < rows; r++) {
            zv br_p = z_set1(br[r][p]);
            c0[r] = z_fma(br_p, a0, c0[r]);
            c1[r] = z_fma(br_p, a1, c1[r]);
        }
        ap += A5_NR;
    }
    /* transpose through a small buffer: C row i gets lane i of every accumulator row */
    ag_real t[12][A5_NR] __attribute__((aligned(64)));
    zv va = z_set1(alpha);
    AG__UNROLL for (int r = 0; r < rows; r++) {
        z_store(t[r], z_mul(va, c0[r]));
        z_store(t[r] + Z_W, z_mul(va, c1[r]));
    }
    for (int i = 0; i < nr; i++) {
        ag_real *ci = c + (size_t)i * ldc;
        if (beta == 0) AG__UNROLL for (int r = 0; r < rows; r++) ci[r] = t[r][i];
        else AG__UNROLL for (int r = 0; r < rows; r++) ci[r] = t[r][i] + beta * ci[r];
    }
}

T512 static void ukr_t_avx512(size_t kc, const ag_real *b, size_t ldb, const ag_real *ap, ag_real *c, size_t ldc,
                              int rows, int nr, ag_real alpha, ag_real beta) {
    switch (rows) {
#define AT_CASE(R) case R: a5_tile_t(R, kc, b, ldb, ap, c, ldc, nr, alpha, beta); break;
        AT_CASE(12) AT_CASE(11) AT_CASE(10) AT_CASE(9) AT_CASE(8) AT_CASE(7)
        AT_CASE(6) AT_CASE(5) AT_CASE(4) AT_CASE(3) AT_CASE(2) AT_CASE(1)
#undef AT_CASE
    default: break;
    }
}

_Static_assert(A5_MR * A5_NR <= AG__GEMM_TILE_MAX, "tile buffer of ag_gemm_tiles");

const ag__gemm_kernel ag__gemm_avx512 = {
    .name = "avx512", .mr = A5_MR, .nr = A5_NR,
    .mc = A5_MC, .kc = A5_KC, .nc = A5_NC,
    .ukr = ukr_avx512, .ukr_bs = ukr_bs_avx512, .ukr_as = ukr_as_avx512, .ukr_t = ukr_t_avx512,
    .pack_a = pack_a_avx512, .pack_b = pack_b_avx512,
    .direct = direct_avx512,
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
#define y_store(p, v) _mm256_storeu_pd(p, v)
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
#define y_store(p, v) _mm256_storeu_ps(p, v)
#define y_lanes() _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0)
#define y_cmpgt(a, b) _mm256_cmpgt_epi32(a, b)
#define y_splat(n) _mm256_set1_epi32(n)
#endif
#define A2_NR (2 * Y_W)

/* bs: distance between k steps of B (A2_NR packed, ldb in place with masked loads when `strided`) */
static inline __attribute__((always_inline)) T256 void
a2_tile(const int rows, const int strided, const int a_inplace, size_t kc, const ag_real *a, size_t lda,
        const ag_real *b, size_t bs, ag_real *c, size_t ldc, __m256i m0, __m256i m1, ag_real alpha, ag_real beta) {
    const size_t astep = a_inplace ? 1 : A2_MR, lb = lda * sizeof(ag_real);   /* see a_at */
    yv c0[A2_MR], c1[A2_MR];
    AG__UNROLL for (int r = 0; r < rows; r++) c0[r] = c1[r] = y_zero();
    for (size_t p = 0; p < kc; p++) {
        yv b0, b1;
        if (strided) {
            _mm_prefetch((const char *)(b + 12 * bs), _MM_HINT_T0);
            b0 = y_mload(m0, b), b1 = y_mload(m1, b + Y_W);
        } else {
            b0 = y_load(b), b1 = y_load(b + Y_W);
        }
        AG__UNROLL for (int r = 0; r < rows; r++) {
            yv ar = y_set1(a_at(a_inplace, r, a, lb));
            c0[r] = y_fma(ar, b0, c0[r]);
            c1[r] = y_fma(ar, b1, c1[r]);
        }
        a += astep;
        b += strided ? bs : (size_t)A2_NR;
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

/* ---- AVX2 packing: W x W in-register transposes for the transposed cases, masked copies otherwise ---- */

static inline __attribute__((always_inline)) T256 __m256i y_mask(int n) { /* lanes [0, n) */
    return y_cmpgt(y_splat(n), y_lanes());
}

/* As t_block above: rows [0, rows) x columns [0, cols) of src, missing rows zero; output column j (lanes
 * [0, lanes)) to dst + j * ldd. */
static inline __attribute__((always_inline)) T256 void
t_block2(const ag_real *src, size_t lds, int rows, int cols, ag_real *dst, size_t ldd, int lanes) {
    __m256i cm = y_mask(cols), lm = y_mask(lanes);
    yv r[Y_W], o[Y_W];
    AG__UNROLL for (int i = 0; i < Y_W; i++) r[i] = i < rows ? y_mload(cm, src + (size_t)i * lds) : y_zero();
#ifdef AG_DOUBLE
    yv t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    yv t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    o[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    o[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    o[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    o[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
#else
    yv u[8];
    AG__UNROLL for (int g = 0; g < 2; g++) {   /* rows 4g..4g+3: u[4g+q] lane L holds column 4L+q */
        yv t0 = _mm256_unpacklo_ps(r[4 * g], r[4 * g + 1]), t1 = _mm256_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        yv t2 = _mm256_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]), t3 = _mm256_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        u[4 * g] = _mm256_shuffle_ps(t0, t2, 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
    AG__UNROLL for (int q = 0; q < 4; q++) {
        o[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        o[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
#endif
    AG__UNROLL for (int j = 0; j < Y_W; j++)
        if (j < cols) y_mstore(dst + (size_t)j * ldd, lm, o[j]);
}

T256 static void pack_a_avx2(int trans_a, const ag_real *a, size_t lda, size_t i0, size_t mc, size_t p0,
                             size_t kc, ag_real *dst) {
    for (size_t r0 = 0; r0 < mc; r0 += A2_MR, dst += A2_MR * kc) {
        int mr = (int)(mc - r0 < A2_MR ? mc - r0 : A2_MR);
        if (trans_a) {   /* A is k x m: masked copies of MR values, zeros beyond mr */
            const ag_real *src = a + p0 * lda + i0 + r0;
            __m256i m0 = y_mask(mr), m1 = y_mask(mr - Y_W), s0 = y_mask(A2_MR), s1 = y_mask(A2_MR - Y_W);
            for (size_t p = 0; p < kc; p++, src += lda) {
                y_mstore(dst + p * A2_MR, s0, y_mload(m0, src));
                if (A2_MR > Y_W) y_mstore(dst + p * A2_MR + Y_W, s1, y_mload(m1, src + Y_W));
            }
        } else {         /* A is m x k: transpose W x W blocks of the MR rows */
            for (int g = 0; g * Y_W < A2_MR; g++) {
                int rows = mr - g * Y_W, lanes = A2_MR - g * Y_W < Y_W ? A2_MR - g * Y_W : Y_W;
                const ag_real *src = a + (i0 + r0 + (size_t)g * Y_W) * lda + p0;
                for (size_t p = 0; p < kc; p += Y_W) {
                    int cols = (int)(kc - p < Y_W ? kc - p : Y_W);
                    t_block2(src + p, lda, rows, cols, dst + p * A2_MR + g * Y_W, A2_MR, lanes);
                }
            }
        }
    }
}

T256 static void pack_b_avx2(int trans_b, const ag_real *b, size_t ldb, size_t p0, size_t kc, size_t j0,
                             size_t nc, ag_real *dst) {
    for (size_t c0 = 0; c0 < nc; c0 += A2_NR, dst += A2_NR * kc) {
        int nr = (int)(nc - c0 < A2_NR ? nc - c0 : A2_NR);
        if (!trans_b) {  /* B is k x n: two masked vector copies per k step */
            const ag_real *src = b + p0 * ldb + j0 + c0;
            __m256i m0 = y_mask(nr), m1 = y_mask(nr - Y_W);
            for (size_t p = 0; p < kc; p++, src += ldb) {
                y_store(dst + p * A2_NR, y_mload(m0, src));
                y_store(dst + p * A2_NR + Y_W, y_mload(m1, src + Y_W));
            }
        } else {         /* B is n x k: transpose W x W blocks of the NR rows */
            for (int g = 0; g < A2_NR / Y_W; g++) {
                int rows = nr - g * Y_W;
                const ag_real *src = b + (j0 + c0 + (size_t)g * Y_W) * ldb + p0;
                for (size_t p = 0; p < kc; p += Y_W) {
                    int cols = (int)(kc - p < Y_W ? kc - p : Y_W);
                    t_block2(src + p, ldb, rows, cols, dst + p * A2_NR + g * Y_W, A2_NR, Y_W);
                }
            }
        }
    }
}

T256 static void ukr_avx2(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc, int mr,
                          int nr, ag_real alpha, ag_real beta) {
    __m256i m0 = y_cmpgt(y_splat(nr), y_lanes()), m1 = y_cmpgt(y_splat(nr - Y_W), y_lanes());
    switch (mr) {
#define A2_CASE(R) case R: a2_tile(R, 0, 0, kc, a, 0, b, A2_NR, c, ldc, m0, m1, alpha, beta); break;
        A2_CASE(6) A2_CASE(5) A2_CASE(4) A2_CASE(3) A2_CASE(2) A2_CASE(1)
#undef A2_CASE
    default: break;
    }
}

T256 static void ukr_bs_avx2(size_t kc, const ag_real *a, const ag_real *b, size_t ldb, ag_real *c, size_t ldc,
                             int mr, int nr, ag_real alpha, ag_real beta) {
    __m256i m0 = y_cmpgt(y_splat(nr), y_lanes()), m1 = y_cmpgt(y_splat(nr - Y_W), y_lanes());
    switch (mr) {
#define A2_CASE(R) case R: a2_tile(R, 1, 0, kc, a, 0, b, ldb, c, ldc, m0, m1, alpha, beta); break;
        A2_CASE(6) A2_CASE(5) A2_CASE(4) A2_CASE(3) A2_CASE(2) A2_CASE(1)
#undef A2_CASE
    default: break;
    }
}

/* As ukr_avx2 for a full-height tile with op(A) = A read in place (see ag__ukr_as_fn). */
T256 static void ukr_as_avx2(size_t kc, const ag_real *a, size_t lda, const ag_real *b, ag_real *c, size_t ldc, int nr,
                             ag_real alpha, ag_real beta) {
    __m256i m0 = y_cmpgt(y_splat(nr), y_lanes()), m1 = y_cmpgt(y_splat(nr - Y_W), y_lanes());
    a2_tile(A2_MR, 0, 1, kc, a, lda, b, A2_NR, c, ldc, m0, m1, alpha, beta);
}

_Static_assert(A2_MR * A2_NR <= AG__GEMM_TILE_MAX, "tile buffer of ag_gemm_tiles");

const ag__gemm_kernel ag__gemm_avx2 = {
    .name = "avx2", .mr = A2_MR, .nr = A2_NR,
#ifdef AG_DOUBLE
    .mc = 144, .kc = 256, .nc = 512,
#else
    .mc = 144, .kc = 256, .nc = 1024,
#endif
    .ukr = ukr_avx2, .ukr_bs = ukr_bs_avx2, .ukr_as = ukr_as_avx2, .pack_a = pack_a_avx2, .pack_b = pack_b_avx2,
};

#else
/* Non-x86 targets build only the portable path; keep the translation unit non-empty for ISO C. */
typedef int ag__gemm_x86_unused;
#endif

/*
 * rng.c - the library's own seeded PRNG (xoshiro256**, seeded through splitmix64).
 * Reproducible across machines: normals use only +, -, *, / and sqrt (all correctly rounded by
 * IEEE 754) plus a logarithm computed here, never libm's, whose last bit may differ by platform.
 */
#include "internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ag_rng_seed(ag_rng *r, uint64_t seed) {
    if (!r) return;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ag_rng_next(ag_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ag_rng_uniform(ag_rng *r) { return (double)(ag_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t ag_rng_below(ag_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    /* rejection keeps it unbiased: drop the top partial block of 2^64 */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ag_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* ln(x) for x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
 * ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1), |s| < 0.172, so 14 terms
 * bring the truncation below 1e-21. frexp/ldexp are exact. */
static double det_log(double x) {
    int e;
    double m = frexp(x, &e); /* m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, term = s, sum = 0.0;
    for (int k = 0; k < 14; k++) {
        sum += term / (double)(2 * k + 1);
        term *= s2;
    }
    return 2.0 * sum + (double)e * 0.69314718055994530942;
}

/* Marsaglia's polar method; the second normal of each pair is dropped to keep the state tiny. */
double ag_rng_normal(ag_rng *r) {
    double u, v, s;
    do {
        u = 2.0 * ag_rng_uniform(r) - 1.0;
        v = 2.0 * ag_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    return u * sqrt(-2.0 * det_log(s) / s);
}

void ag_rng_fill_uniform(ag_rng *r, ag_real *x, size_t n, double lo, double hi) {
    if (!r || !x) return;
    for (size_t i = 0; i < n; i++) x[i] = (ag_real)(lo + (hi - lo) * ag_rng_uniform(r));
}

void ag_rng_fill_normal(ag_rng *r, ag_real *x, size_t n, double mean, double std) {
    if (!r || !x) return;
    for (size_t i = 0; i < n; i++) x[i] = (ag_real)(mean + std * ag_rng_normal(r));
}

void ag_rng_shuffle(ag_rng *r, uint32_t *idx, size_t n) {
    if (!r || !idx) return;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ag_rng_below(r, i);
        uint32_t tmp = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = tmp;
    }
}

/* Counter-based (ag_rng_counter): the key is splitmix64's finaliser (ag__mix64, a bijection of 64
 * bits with full avalanche) chained over seed, step and stream; element i is then the i-th output
 * of splitmix64 started at the key. No state: any element of any stream is computed directly, in
 * any order, on any thread. */
uint64_t ag__rng_key(uint64_t seed, uint64_t step, uint64_t stream) {
    return ag__mix64(ag__mix64(ag__mix64(seed + AG__GOLDEN) ^ step) + stream);
}

uint64_t ag_rng_counter(uint64_t seed, uint64_t step, uint64_t stream, uint64_t index) {
    return ag__mix64(ag__rng_key(seed, step, stream) + (index + 1) * AG__GOLDEN);
}

/*
 * ops/dropout.c - inverted dropout: y = x m / (1 - p), m_i in {0, 1} kept with probability 1 - p;
 * dx += dy m / (1 - p) (written x (m ? s : 0), so a dropped NaN stays NaN, as torch's x m s). Identity (a view of x, dx += dy) in evaluation mode and for p = 0.
 *
 * The mask comes from the counter-based generator (rng.c): element i is dropped when the top 53
 * bits of ag_rng_counter(seed, k, stream, i), as a fraction of 2^53, are below p (keys as
 * ag_tape_set_seed says). Each element's bits depend only on its key and index, so the mask does
 * not depend on threads, on the order ops are recorded, or on anything else drawn that step.
 * Forward keeps the mask as one byte per element for backward: recomputing it there would cost the
 * hash again (0.17 ns/element with AVX-512DQ, 0.9 without, on the Zen 5 host), while the byte is
 * read with dy at stream speed (backward of 32 x 2048: 0.23-0.26 ns/element in all, bench_ops).
 *
 * Read next: ops/norm.c.
 */
#include "../internal.h"

typedef struct dropout_params {
    ag_real p;
    uint64_t stream;
    int active; /* set by shape(): training and p > 0 (else the identity view) */
} dropout_params;

static ag_status dropout_shape(ag_node *n) {
    dropout_params *p = n->params;
    const ag_tensor *x = n->in[0];
    if (!(p->p >= 0 && p->p < 1)) return ag_node_fail(n, AG_ERR_ARG, "p %g is outside [0, 1)", (double)p->p);
    p->active = n->out.tape->training && p->p > 0;
    ag_status st = ag__node_shape_like(n, x);
    if (!p->active) n->out.value = x->value; /* identity: a view, no copy */
    return st;
}

/* m[i] = 1 if element i0 + i is kept: the top 53 bits of its hash at or above thr = ceil(p 2^53).
 * Integer only, so every variant gives the same bytes. The hash is two 64-bit multiplies per
 * element: compilers emulate them with 32-bit ones below AVX-512DQ (0.9 ns/element at 256 bits on
 * the Zen 5 host), while AVX-512DQ's vpmullq does 8 at once (0.17 ns): that variant is written out. */
AG__CLONES static void mask_portable(uint8_t *restrict m, size_t i0, size_t n, uint64_t key, uint64_t thr) {
    for (size_t i = 0; i < n; i++) m[i] = (ag__mix64(key + (uint64_t)(i0 + i + 1) * AG__GOLDEN) >> 11) >= thr;
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(AG_NO_CLONES)
#include <immintrin.h>
#define DROPOUT_AVX512 1
__attribute__((target("avx512f,avx512dq"))) static void mask_avx512(uint8_t *restrict m, size_t i0, size_t n,
                                                                      uint64_t key, uint64_t thr) {
    const __m512i M1 = _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ull),
                  M2 = _mm512_set1_epi64((long long)0x94d049bb133111ebull), T = _mm512_set1_epi64((long long)thr),
                  ONE = _mm512_set1_epi64(1), STEP = _mm512_set1_epi64((long long)(8 * AG__GOLDEN));
    /* z = key + (i0 + i + 1) G for the 8 lanes */
    __m512i z = _mm512_add_epi64(_mm512_set1_epi64((long long)key),
                                 _mm512_mullo_epi64(_mm512_add_epi64(_mm512_set1_epi64((long long)(i0 + 1)),
                                                                     _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7)),
                                                    _mm512_set1_epi64((long long)AG__GOLDEN)));
    size_t i = 0;
    for (; i + 8 <= n; i += 8, z = _mm512_add_epi64(z, STEP)) {
        __m512i h = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), M1);
        h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 27)), M2);
        h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
        const __mmask8 k = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(h, 11), T);
        _mm_storel_epi64((__m128i *)(void *)(m + i), _mm512_cvtepi64_epi8(_mm512_maskz_mov_epi64(k, ONE)));
    }
    mask_portable(m + i, i0 + i, n - i, key, thr);
}
#endif

static void dropout_mask(uint8_t *m, size_t i0, size_t n, uint64_t key, uint64_t thr) {
#ifdef DROPOUT_AVX512
    if (__builtin_cpu_supports("avx512dq")) {
        mask_avx512(m, i0, n, key, thr);
        return;
    }
#endif
    mask_portable(m, i0, n, key, thr);
}

/* y = x * (m ? scale : 0): the select is on constants, so the loop vectorises (x * 0 keeps x's NaN,
 * as torch's x * mask * scale) */
AG__CLONES static void dropout_apply(ag_real *restrict y, const uint8_t *restrict m, const ag_real *restrict x,
                                     size_t n, ag_real scale) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] * (m[i] ? scale : 0);
}

static ag_real dropout_scale(const dropout_params *p) { return (ag_real)(1.0 / (1.0 - (double)p->p)); }

static ag_status dropout_forward(ag_node *n) {
    const dropout_params *p = n->params;
    if (!p->active) return AG_OK; /* the view holds the values */
    const ag_tape *t = n->out.tape;
    const uint64_t key = ag__rng_key(t->seed, t->step - t->seed_step, p->stream);
    const uint64_t thr = (uint64_t)ceil(ldexp((double)p->p, 53)); /* u = (h >> 11) 2^-53 >= p */
    const size_t N = n->out.size;
    const ag_real scale = dropout_scale(p);
    uint8_t buf[4096], *keep = NULL; /* the whole mask when backward needs it, else chunks on the stack */
    if (ag_node_needs_grad(n) && !(keep = ag_node_alloc(n, N))) return AG_ERR_NOMEM;
    for (size_t i = 0; i < N; i += sizeof buf) { /* a chunk of mask is still in L1 when applied */
        const size_t len = N - i < sizeof buf ? N - i : sizeof buf;
        uint8_t *m = keep ? keep + i : buf;
        dropout_mask(m, i, len, key, thr);
        dropout_apply(n->out.value + i, m, n->in[0]->value + i, len, scale);
    }
    n->saved = keep;
    return AG_OK;
}

AG__CLONES static ag_status dropout_backward(ag_node *n) {
    const dropout_params *p = n->params;
    ag_real *restrict dx = n->in[0]->grad;
    if (!dx) return AG_OK;
    const ag_real *restrict dy = n->out.grad;
    const size_t N = n->out.size;
    if (!p->active) {
        for (size_t i = 0; i < N; i++) dx[i] += dy[i];
        return AG_OK;
    }
    const uint8_t *restrict m = n->saved;
    const ag_real scale = dropout_scale(p);
    for (size_t i = 0; i < N; i++) dx[i] += dy[i] * (m[i] ? scale : 0);
    return AG_OK;
}

static const ag_op dropout_op = {"dropout", 1, sizeof(dropout_params), dropout_shape, dropout_forward,
                                 dropout_backward};

ag_tensor *ag_dropout(ag_tape *t, ag_tensor *x, ag_real p, uint64_t stream) {
    const dropout_params dp = {p, stream, 0};
    return AG__CALL(t, &dropout_op, &dp, x);
}

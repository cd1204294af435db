/*
 * optim.c - SGD, momentum, Nesterov, Adam/AdamW, schedules and clipping over the flat buffers of
 * an ag_params store. The formulas are listed in optim.h; each loop below names the one it runs.
 *
 * The update is element-wise, so it is one loop over [0, numel) when no weight decay is set, and
 * one loop per tensor when it is (decay only on AG_DECAY tensors, the factor fixed per tensor;
 * the padding between tensors then stays untouched at zero). Both paths run the same
 * per-element code, so their results are identical.
 */
#include <tapegrad/optim.h>

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <tapegrad/ag_ext.h>

#define N_STATE_MAX 2

struct ag_optim {
    ag_params *ps;
    ag_optim_config cfg;   /* defaults filled in */
    size_t numel;          /* store size the state was made for */
    uint64_t steps;        /* steps taken */
    double last_norm;      /* pre-clip global gradient norm at the last step */
    size_t n_state;
    const char *state_name[N_STATE_MAX];
    ag_real *state[N_STATE_MAX]; /* numel elements each, AG_ALIGN-aligned */
    char errmsg[AG_ERRMSG_SIZE];
    /* ag_optim_backward_step: the step's constants, read by consume() on any thread */
    ag_real step_lr;
    double step_bc1, step_bc2;
    ag_real *step_values; /* the store's value buffer, set by each step (it cannot move during one) */
    size_t n_params;          /* store size at creation */
    atomic_uchar *delivered;  /* [n_params] this step's gradient reached the parameter */
    atomic_size_t nonfinite;  /* pieces skipped for a NaN/Inf gradient this step */
    atomic_size_t first_bad;  /* index + 1 of a parameter with such a piece, 0 if none */
};

#ifdef AG_DOUBLE
#define RSQRT(x) sqrt(x)
#else
#define RSQRT(x) sqrtf(x)
#endif

/* The element-wise loops are memory-bound streams (from L2 when the update runs inside the
 * sweep); AVX2 and AVX-512 clones (AG_EXT_CLONES, chosen at load time) move two and four times
 * the bytes per instruction of the SSE2 baseline. No FMA: the clones round exactly like it, so
 * results do not depend on the machine. */
#define CLONES AG_EXT_CLONES
/* The element functions below are inlined into each loop, where their mode arguments are constants. */
#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- schedules */

double ag_schedule_lr(const ag_schedule *s, double lr, uint64_t t) {
    if (!s) return lr;
    uint64_t w = s->warmup_steps;
    if (w > 0 && t < w) return lr * (double)(t + 1) / (double)w; /* linear warm-up */
    t -= w;
    switch (s->kind) {
    case AG_SCHED_STEP:
        if (s->step_size == 0) return lr;
        return lr * pow(s->gamma, (double)(t / s->step_size)); /* lr gamma^floor(t / step_size) */
    case AG_SCHED_COSINE: {
        if (s->total_steps <= w) return lr;
        double T = (double)(s->total_steps - w);
        double p = (double)t < T ? (double)t / T : 1.0;
        /* min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2 */
        return s->min_lr + (lr - s->min_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * p));
    }
    case AG_SCHED_CONSTANT:
    default:
        return lr;
    }
}

/* ---------------------------------------------------------------- creation */

ag_status ag_optim_new(ag_optim **out, ag_params *ps, const ag_optim_config *cfg, char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!out) return AG_ERR_ARG;
    *out = NULL;
    if (!ps || !cfg) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: %s is NULL", ps ? "config" : "params store");
    ag_optim_config c = *cfg;
    if ((int)c.kind < AG_OPT_SGD || c.kind > AG_OPT_ADAMW) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: unknown kind (got %g)", (double)c.kind);
    if (!(c.lr > 0) || !isfinite(c.lr)) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: lr must be finite and > 0 (got %g)", (double)c.lr);
    if (!(c.weight_decay >= 0) || !isfinite(c.weight_decay))
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: weight_decay must be finite and >= 0 (got %g)", (double)c.weight_decay);
    if (c.momentum == 0) c.momentum = 0.9;
    if (c.beta1 == 0) c.beta1 = 0.9;
    if (c.beta2 == 0) c.beta2 = 0.999;
    if (c.eps == 0) c.eps = 1e-8;
    /* only what the chosen kind and schedule use is checked: Adam ignores momentum, SGD and
     * momentum ignore beta1, beta2 and eps, and a schedule ignores the other kinds' fields */
    const int adam = c.kind == AG_OPT_ADAM || c.kind == AG_OPT_ADAMW;
    if ((c.kind == AG_OPT_MOMENTUM || c.kind == AG_OPT_NESTEROV) && !(c.momentum > 0 && c.momentum < 1))
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: momentum must be in (0, 1) (got %g)", (double)c.momentum);
    if (adam && !(c.beta1 > 0 && c.beta1 < 1)) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: beta1 must be in (0, 1) (got %g)", (double)c.beta1);
    if (adam && !(c.beta2 > 0 && c.beta2 < 1)) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: beta2 must be in (0, 1) (got %g)", (double)c.beta2);
    if (adam && (!(c.eps > 0) || !isfinite(c.eps))) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: eps must be > 0 and finite (got %g)", (double)c.eps);
    if (!(c.clip_norm >= 0)) return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: clip_norm must be >= 0 (got %g)", (double)c.clip_norm);
    if (c.kind == AG_OPT_ADAMW) c.decoupled = 1;
    c.decoupled = c.decoupled != 0;
    c.zero_grad = c.zero_grad != 0;
    const ag_schedule *s = &c.schedule;
    if ((int)s->kind < AG_SCHED_CONSTANT || s->kind > AG_SCHED_COSINE)
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: unknown schedule kind (got %g)", (double)s->kind);
    if (s->kind == AG_SCHED_STEP && s->step_size == 0)
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: step schedule needs step_size >= 1 (got %g)", (double)(double)s->step_size);
    if (s->kind == AG_SCHED_STEP && (!(s->gamma > 0) || !isfinite(s->gamma)))
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: step schedule needs a finite gamma > 0 (got %g)", (double)s->gamma);
    if (s->kind == AG_SCHED_COSINE && s->total_steps <= s->warmup_steps)
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: cosine schedule needs total_steps > warmup_steps (got %g)", (double)(double)s->total_steps);
    if (s->kind == AG_SCHED_COSINE && (!(s->min_lr >= 0) || !isfinite(s->min_lr)))
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "optim: cosine schedule needs a finite min_lr >= 0 (got %g)", (double)s->min_lr);

    ag_optim *opt = ag_ext_calloc(1, sizeof *opt);
    if (!opt) return ag_ext_errf(err, errsize, AG_ERR_NOMEM, "optim: out of memory");
    opt->ps = ps;
    opt->cfg = c;
    opt->numel = ag_params_numel(ps);
    if (c.kind == AG_OPT_MOMENTUM || c.kind == AG_OPT_NESTEROV) {
        opt->n_state = 1;
        opt->state_name[0] = "velocity";
    } else if (c.kind == AG_OPT_ADAM || c.kind == AG_OPT_ADAMW) {
        opt->n_state = 2;
        opt->state_name[0] = "adam.m";
        opt->state_name[1] = "adam.v";
    }
    for (size_t i = 0; i < opt->n_state; i++) {
        opt->state[i] = ag_ext_aligned_alloc((opt->numel ? opt->numel : 1) * sizeof(ag_real));
        if (!opt->state[i]) {
            size_t numel = opt->numel; /* read before the free */
            ag_optim_free(opt);
            return ag_ext_errf(err, errsize, AG_ERR_NOMEM, "optim: out of memory for %zu state elements", numel);
        }
        memset(opt->state[i], 0, opt->numel * sizeof(ag_real));
    }
    opt->n_params = ag_params_count(ps);
    opt->delivered = ag_ext_calloc(opt->n_params ? opt->n_params : 1, sizeof *opt->delivered);
    if (!opt->delivered) {
        ag_optim_free(opt);
        return ag_ext_errf(err, errsize, AG_ERR_NOMEM, "optim: out of memory");
    }
    *out = opt;
    return AG_OK;
}

void ag_optim_free(ag_optim *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->n_state; i++) ag_ext_aligned_free(opt->state[i]);
    ag_ext_free(opt->delivered);
    ag_ext_free(opt);
}

/* ---------------------------------------------------------------- clipping */

double ag_grad_norm(ag_params *ps) {
    const ag_real *g = ag_params_grads(ps);
    size_t n = ag_params_numel(ps);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * (double)g[i];
    if (sum <= DBL_MAX || isnan(sum)) return sqrt(sum);
    /* the squares overflowed (double build, elements past 1e154): finite elements still have a
     * finite norm, summed relative to the largest */
    double big = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)g[i]);
        if (!(a <= DBL_MAX)) return a; /* Inf or NaN: the norm is that */
        if (a > big) big = a;
    }
    sum = 0;
    for (size_t i = 0; i < n; i++) sum += ((double)g[i] / big) * ((double)g[i] / big);
    return big * sqrt(sum);
}

double ag_clip_grad_norm(ag_params *ps, double max_norm) {
    double norm = ag_grad_norm(ps);
    if (!isfinite(norm) || !(max_norm > 0) || norm <= max_norm) return norm;
    ag_real scale = (ag_real)(max_norm / norm), *g = ag_params_grads(ps);
    size_t n = ag_params_numel(ps);
    for (size_t i = 0; i < n; i++) g[i] *= scale;
    return norm;
}

/* Finiteness: NaN and Inf are the values whose exponent bits are all ones. Testing the bits
 * with integer vector compares ORed into one mask has no dependency on an add's latency (a
 * float accumulation of g*0 cost a fifth of a batch-1 step), and the mask is kept across the rows
 * of a tile and reduced once. GCC/clang vector extensions, so each CLONES target gets its own
 * width. */
#ifdef AG_DOUBLE
typedef uint64_t fbits_t;
typedef int64_t fmask_t;
#define FB_EXP 0x7ff0000000000000u
#else
typedef uint32_t fbits_t;
typedef int32_t fmask_t;
#define FB_EXP 0x7f800000u
#endif
typedef fbits_t fb_vec __attribute__((vector_size(64)));
typedef fmask_t fb_mask __attribute__((vector_size(64)));
enum { FB_LANES = 64 / sizeof(fbits_t) };

/* ORs into *acc a nonzero lane for every non-finite element of g[0, n). */
INLINE void nonfinite_mask(fb_mask *acc, const ag_real *restrict g,
                                                                 size_t n) {
    const fb_vec exp = (fb_vec){0} + FB_EXP;
    fb_mask m = *acc;
    size_t i = 0;
    for (; i + FB_LANES <= n; i += FB_LANES) {
        fb_vec b;
        memcpy(&b, g + i, sizeof b);
        m |= (b & exp) == exp;
    }
    for (; i < n; i++) {
        fbits_t b;
        memcpy(&b, g + i, sizeof b);
        m[0] |= (b & FB_EXP) == FB_EXP;
    }
    *acc = m;
}

INLINE int mask_clear(const fb_mask *m) {
    fmask_t any = 0;
    for (size_t j = 0; j < FB_LANES; j++) any |= (*m)[j];
    return any == 0;
}

/* 1 if every element of g[0, n) is finite. */
CLONES static int all_finite(const ag_real *restrict g, size_t n) {
    fb_mask m = {0};
    nonfinite_mask(&m, g, n);
    return mask_clear(&m);
}

/* The same over rows x cols at g (row stride ldg): one call per tile of a product. */
CLONES static int all_finite_tile(const ag_real *restrict g, size_t rows, size_t cols, size_t ldg) {
    fb_mask m = {0};
    for (size_t r = 0; r < rows; r++) nonfinite_mask(&m, g + r * ldg, cols);
    return mask_clear(&m);
}

/* 1 if every g + decay * w over the tile is finite (g row stride ldg, w row stride ld): the
 * gradient of a consume_decay piece, formed as the update forms it, in pieces on the stack. */
CLONES static int all_finite_plus_tile(const ag_real *restrict g, size_t ldg, const ag_real *restrict w,
                                           size_t ld, ag_real decay, size_t rows, size_t cols) {
    ag_real buf[256];
    fb_mask m = {0};
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j += 256) {
            const size_t nc = cols - j < 256 ? cols - j : 256;
            for (size_t q = 0; q < nc; q++) buf[q] = g[r * ldg + j + q] + decay * w[r * ld + j + q];
            nonfinite_mask(&m, buf, nc);
        }
    return mask_clear(&m);
}

/* ---------------------------------------------------------------- the update */

/* The step's constants, passed by value so that the loops keep them in registers. */
typedef struct step_k {
    ag_real lr;
    ag_real wd_g, lrwd;             /* coupled decay lambda; decoupled alpha lambda */
    ag_real mu;                     /* momentum */
    ag_real b1, b2, ib1, ib2, eps;  /* Adam; ib = 1 - b */
    ag_real rbc1, rbc2;             /* Adam: 1 / (1 - b^t) */
} step_k;

/* How weight decay enters (a constant at every call, so each inlined loop keeps only its own). */
enum { DECAY_NONE, DECAY_COUPLED, DECAY_DECOUPLED };

/* The gradient the update sees: coupled decay adds lambda w, read before any decoupled decay. */
INLINE ag_real grad_at(const ag_real *restrict g, const ag_real *restrict w, size_t i, step_k k, int decay) {
    return decay == DECAY_COUPLED ? g[i] + k.wd_g * w[i] : g[i];
}

/* Decoupled decay (SGDW, AdamW): w -= (alpha lambda) w, before the update proper. */
INLINE void decay_weight(ag_real *restrict w, size_t i, step_k k, int decay) {
    if (decay == DECAY_DECOUPLED) w[i] -= k.lrwd * w[i];
}

/* SGD: w -= alpha (g + lambda w), W := W - alpha [(1/K) DeltaW + lambda W] when g = (1/K) DeltaW
 * (backprop-derivation.md, the SGD update); decay is NONE or COUPLED. */
INLINE void sgd_elem(size_t i, ag_real *restrict w, const ag_real *restrict g, step_k k, int decay) {
    w[i] -= k.lr * grad_at(g, w, i, k, decay);
}

/* v = mu v + g; momentum: w -= alpha v; Nesterov: w -= alpha (g + mu v). */
INLINE void momentum_elem(size_t i, ag_real *restrict w, const ag_real *restrict g, ag_real *restrict v, step_k k,
                          int decay, int nesterov) {
    const ag_real gi = grad_at(g, w, i, k, decay);
    decay_weight(w, i, k, decay);
    v[i] = k.mu * v[i] + gi;
    if (nesterov)
        w[i] -= k.lr * (gi + k.mu * v[i]);
    else
        w[i] -= k.lr * v[i];
}

/* m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; bias correction 1 - b^t;
 * w -= alpha mhat / (sqrt(vhat) + eps) */
INLINE void adam_elem(size_t i, ag_real *restrict w, const ag_real *restrict g, ag_real *restrict m,
                      ag_real *restrict v, step_k k, int decay) {
    const ag_real gi = grad_at(g, w, i, k, decay);
    decay_weight(w, i, k, decay);
    m[i] = k.b1 * m[i] + k.ib1 * gi;
    v[i] = k.b2 * v[i] + k.ib2 * gi * gi;
    const ag_real mhat = m[i] * k.rbc1, vhat = v[i] * k.rbc2;
    w[i] -= k.lr * mhat / (RSQRT(vhat) + k.eps);
}

/* The loops over [0, n): with zero, g[i] is cleared in the same pass (one stream over the
 * gradients instead of a separate ag_params_zero_grad). Every branch is outside the loops so
 * that they vectorise. */
INLINE void sgd_span(size_t n, ag_real *restrict w, ag_real *restrict g, int zero, step_k k, int decay) {
    if (zero)
        for (size_t i = 0; i < n; i++) {
            sgd_elem(i, w, g, k, decay);
            g[i] = 0;
        }
    else
        for (size_t i = 0; i < n; i++) sgd_elem(i, w, g, k, decay);
}

INLINE void momentum_span(size_t n, ag_real *restrict w, ag_real *restrict g, ag_real *restrict v, int zero,
                          step_k k, int decay, int nesterov) {
    if (zero)
        for (size_t i = 0; i < n; i++) {
            momentum_elem(i, w, g, v, k, decay, nesterov);
            g[i] = 0;
        }
    else
        for (size_t i = 0; i < n; i++) momentum_elem(i, w, g, v, k, decay, nesterov);
}

INLINE void adam_span(size_t n, ag_real *restrict w, ag_real *restrict g, ag_real *restrict m,
                      ag_real *restrict v, int zero, step_k k, int decay) {
    if (zero)
        for (size_t i = 0; i < n; i++) {
            adam_elem(i, w, g, m, v, k, decay);
            g[i] = 0;
        }
    else
        for (size_t i = 0; i < n; i++) adam_elem(i, w, g, m, v, k, decay);
}

/* Elements [lo, lo + n) of the flat buffers, with their gradient at g (the store's, or a tile
 * of a product under ag_optim_backward_step; written only with zero). wd_g: decay added to the
 * gradient (coupled); wd_w: decay applied to the weights directly (decoupled). At most one of
 * them is nonzero. Each call below names its constant modes, so it inlines to its own loop. */
INLINE void update_span(const ag_optim *opt, size_t lo, size_t n, ag_real *restrict g, int zero, ag_real lr,
                        ag_real wd_g, ag_real wd_w, double bc1, double bc2) {
    ag_real *restrict w = opt->step_values + lo; /* not a call per row of a tile */
    const ag_optim_config *c = &opt->cfg;
    step_k k = {.lr = lr, .wd_g = wd_g, .lrwd = lr * wd_w};
    switch (c->kind) {
    case AG_OPT_SGD:
        /* coupled and decoupled decay are the same update for plain SGD */
        k.wd_g = wd_g + wd_w;
        if (k.wd_g == 0)
            sgd_span(n, w, g, zero, k, DECAY_NONE);
        else
            sgd_span(n, w, g, zero, k, DECAY_COUPLED);
        break;
    case AG_OPT_MOMENTUM:
    case AG_OPT_NESTEROV: {
        ag_real *restrict v = opt->state[0] + lo;
        k.mu = (ag_real)c->momentum;
        const int decay = wd_g != 0 ? DECAY_COUPLED : wd_w != 0 ? DECAY_DECOUPLED : DECAY_NONE;
        if (c->kind == AG_OPT_NESTEROV) {
            if (decay == DECAY_COUPLED) momentum_span(n, w, g, v, zero, k, DECAY_COUPLED, 1);
            else if (decay == DECAY_DECOUPLED) momentum_span(n, w, g, v, zero, k, DECAY_DECOUPLED, 1);
            else momentum_span(n, w, g, v, zero, k, DECAY_NONE, 1);
        } else {
            if (decay == DECAY_COUPLED) momentum_span(n, w, g, v, zero, k, DECAY_COUPLED, 0);
            else if (decay == DECAY_DECOUPLED) momentum_span(n, w, g, v, zero, k, DECAY_DECOUPLED, 0);
            else momentum_span(n, w, g, v, zero, k, DECAY_NONE, 0);
        }
        break;
    }
    case AG_OPT_ADAM:
    case AG_OPT_ADAMW: {
        ag_real *restrict m = opt->state[0] + lo, *restrict v = opt->state[1] + lo;
        k.b1 = (ag_real)c->beta1;
        k.b2 = (ag_real)c->beta2;
        k.eps = (ag_real)c->eps;
        k.ib1 = (ag_real)(1 - c->beta1);
        k.ib2 = (ag_real)(1 - c->beta2);
        k.rbc1 = (ag_real)(1 / bc1);
        k.rbc2 = (ag_real)(1 / bc2);
        if (wd_g != 0) adam_span(n, w, g, m, v, zero, k, DECAY_COUPLED);
        else if (wd_w != 0) adam_span(n, w, g, m, v, zero, k, DECAY_DECOUPLED); /* AdamW */
        else adam_span(n, w, g, m, v, zero, k, DECAY_NONE);
        break;
    }
    }
}

/* The loops above compiled for the machine (CLONES): over [lo, lo + n) of the store, and over
 * a rows x cols tile (parameter elements base + r * ld, gradient g + r * ldg) in one call. */
CLONES static void update_flat(const ag_optim *opt, size_t lo, size_t n, ag_real *g, int zero, ag_real lr,
                                  ag_real wd_g, ag_real wd_w, double bc1, double bc2) {
    update_span(opt, lo, n, g, zero, lr, wd_g, wd_w, bc1, bc2);
}
CLONES static void update_tile(const ag_optim *opt, size_t base, size_t rows, size_t cols, size_t ld,
                                  const ag_real *g, size_t ldg, ag_real lr, ag_real wd_g, ag_real wd_w,
                                  double bc1, double bc2) {
    /* The packed GEMM delivers micro-tiles left to right along a panel of rows: each row of a tile
     * is a 128-byte piece of W (and v), rows kilobytes apart, too short for the hardware prefetchers
     * to follow, so the update waited on them. Fetch the next tile's pieces while this one is
     * updated: bench modern b32 +6-10%, main job b32 +4-7%, b128 within the noise. Wider pieces
     * (the direct path's 128-256 columns) stream well on their own; prefetching them measured
     * 4-15% slower at batch 1. */
    const int ahead = cols * sizeof(ag_real) <= 128;
    for (size_t r = 0; r < rows; r++) { /* g is const here: zero = 0 never writes it */
        const size_t nx = base + r * ld + cols;
        if (ahead && nx + cols <= opt->numel) {
            __builtin_prefetch(opt->step_values + nx, 1, 3);
            __builtin_prefetch(opt->step_values + nx + cols - 1, 1, 3);
            for (size_t i = 0; i < opt->n_state; i++) { /* momentum v; Adam m and v */
                __builtin_prefetch(opt->state[i] + nx, 1, 3);
                __builtin_prefetch(opt->state[i] + nx + cols - 1, 1, 3);
            }
        }
        update_span(opt, base + r * ld, cols, (ag_real *)(uintptr_t)(g + r * ldg), 0, lr, wd_g, wd_w, bc1, bc2);
    }
}

ag_status ag_optim_step(ag_optim *opt) {
    if (!opt) return AG_ERR_ARG;
    opt->errmsg[0] = '\0';
    ag_params *ps = opt->ps;
    size_t numel = ag_params_numel(ps);
    if (numel != opt->numel)
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, AG_ERR_STATE, "optim: the store holds %zu elements but the optimizer was made for %zu",
                     numel, opt->numel);
    const ag_optim_config *c = &opt->cfg;
    /* a NaN/Inf gradient must not reach the weights: clipping computes the norm anyway; without
     * it a finiteness check is enough, and the norm is computed only for the error message */
    if (c->clip_norm > 0)
        opt->last_norm = ag_clip_grad_norm(ps, c->clip_norm);
    else
        opt->last_norm = all_finite(ag_params_grads(ps), numel) ? 0 : ag_grad_norm(ps);
    if (!isfinite(opt->last_norm))
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, AG_ERR_NUMERIC, "optim: gradient norm is %g; parameters left unchanged",
                     opt->last_norm);
    ag_real lr = (ag_real)ag_optim_lr(opt);
    opt->step_values = ag_params_values(ps);
    uint64_t t = opt->steps + 1; /* 1-based step number for Adam's bias correction */
    double bc1 = 1, bc2 = 1;
    if (c->kind == AG_OPT_ADAM || c->kind == AG_OPT_ADAMW) {
        bc1 = 1 - pow(c->beta1, (double)t);
        bc2 = 1 - pow(c->beta2, (double)t);
    }
    if (c->weight_decay == 0) {
        update_flat(opt, 0, numel, ag_params_grads(ps), c->zero_grad, lr, 0, 0, bc1, bc2);
    } else {
        ag_real wd = (ag_real)c->weight_decay;
        const ag_real *base = ag_params_values(ps);
        size_t count = ag_params_count(ps);
        for (size_t k = 0; k < count; k++) {
            const ag_tensor *x = ag_params_at(ps, k);
            size_t lo = (size_t)(x->value - base);
            int decay = (x->flags & AG_DECAY) != 0; /* weights only, never biases */
            update_flat(opt, lo, x->size, ag_params_grads(ps) + lo, c->zero_grad, lr,
                        decay && !c->decoupled ? wd : 0, decay && c->decoupled ? wd : 0, bc1, bc2);
        }
    }
    if (c->zero_grad) /* the gradients are zero now, as after ag_params_zero_grad */
        for (size_t k = 0; k < ag_params_count(ps); k++) ag_ext_grad_zeroed(ag_params_at(ps, k));
    opt->steps = t;
    return AG_OK;
}

/* ---------------------------------------------------------------- update in backward */

/* Index of the parameter whose elements start at x->value (the store's tensors are carved in
 * order, so their value pointers increase with the index). */
static size_t param_index(const ag_optim *opt, const ag_tensor *x) {
    size_t lo = 0, hi = opt->n_params;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ag_params_at(opt->ps, mid)->value <= x->value) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Offset of x's first element in the store's value buffer, or SIZE_MAX if x is not in the store
 * (a parameter of another ag_params): one range test, on addresses as integers. */
static inline size_t store_offset(const ag_optim *opt, const ag_tensor *x) {
    const uintptr_t d = (uintptr_t)x->value - (uintptr_t)opt->step_values;
    return d < (uintptr_t)opt->numel * sizeof(ag_real) ? (size_t)(d / sizeof(ag_real)) : SIZE_MAX;
}

static int optim_accepts(void *ctx, const ag_tensor *x) {
    return store_offset((const ag_optim *)ctx, x) != SIZE_MAX;
}

/* The sink: update the delivered elements at once, with the same per-element code as
 * ag_optim_step, so the result is bit-identical. A piece holding NaN/Inf is skipped. Parameters
 * outside the store never arrive (optim_accepts refuses them); the range test keeps it so.
 * l2 != 0 (consume_decay): the gradient is g + l2 * w, an ag_l2 term, taken as coupled decay in
 * the update's own pass over w; it is offered only when the optimizer has no weight decay of its
 * own, so the sum rounds as the two-pass step's (g + lambda W, then the update). */
static void consume_piece(ag_optim *opt, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                          const ag_real *g, size_t ldg, unsigned flags, ag_real l2) {
    const ag_optim_config *c = &opt->cfg;
    const size_t lo = store_offset(opt, x);
    if (lo == SIZE_MAX) {
        assert(0 && "a parameter optim_accepts refused was delivered");
        return;
    }
    size_t idx = param_index(opt, x), base = lo + off;
    if (!(flags & AG_SINK_FINITE) &&
        !(l2 == 0 ? all_finite_tile(g, rows, cols, ldg)
                  : all_finite_plus_tile(g, ldg, opt->step_values + base, ld, l2, rows, cols))) {
        atomic_fetch_add_explicit(&opt->nonfinite, 1, memory_order_relaxed);
        size_t none = 0;
        atomic_compare_exchange_strong(&opt->first_bad, &none, idx + 1);
        /* reached: the end of the sweep must not update it as a parameter no gradient reached */
        atomic_store_explicit(&opt->delivered[idx], 1, memory_order_relaxed);
        return;
    }
    const int decay = c->weight_decay != 0 && (x->flags & AG_DECAY);
    const ag_real wd = (ag_real)c->weight_decay;
    assert(l2 == 0 || c->weight_decay == 0);
    update_tile(opt, base, rows, cols, ld, g, ldg, opt->step_lr, decay && !c->decoupled ? wd : l2,
                decay && c->decoupled ? wd : 0, opt->step_bc1, opt->step_bc2);
    atomic_store_explicit(&opt->delivered[idx], 1, memory_order_relaxed);
}

static void optim_consume(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                          const ag_real *g, size_t ldg, unsigned flags) {
    consume_piece(ctx, x, off, rows, cols, ld, g, ldg, flags, 0);
}

static void optim_consume_decay(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld,
                                const ag_real *g, size_t ldg, unsigned flags, ag_real decay) {
    consume_piece(ctx, x, off, rows, cols, ld, g, ldg, flags, decay);
}

/* ag_backward then ag_optim_step, for what the fused sweep cannot do. The tape's own sink (a
 * caller's) is set aside for the sweep, so the gradients land in ->grad, and put back. */
static ag_status two_pass_step(ag_optim *opt, ag_tape *t, ag_tensor *loss) {
    const ag_grad_sink *own = ag_tape_grad_sink(t);
    const ag_grad_sink saved = own ? *own : (ag_grad_sink){0};
    ag_tape_set_grad_sink(t, NULL);
    ag_status st = ag_backward(t, loss);
    ag_tape_set_grad_sink(t, own ? &saved : NULL);
    if (st != AG_OK) return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, st, "optim: backward failed: %s", ag_tape_errmsg(t));
    st = ag_optim_step(opt);
    if (st == AG_OK) ag_params_zero_grad(opt->ps); /* leave them as the fused path does */
    return st;
}

ag_status ag_optim_backward_step(ag_optim *opt, ag_tape *t, ag_tensor *loss) {
    if (!opt || !t) return AG_ERR_ARG;
    opt->errmsg[0] = '\0';
    ag_params *ps = opt->ps;
    const ag_optim_config *c = &opt->cfg;
    if (ag_params_numel(ps) != opt->numel || ag_params_count(ps) != opt->n_params)
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, AG_ERR_STATE, "optim: the store holds %zu elements but the optimizer was made for %zu",
                     ag_params_numel(ps), opt->numel);
    opt->step_values = ag_params_values(ps);
    /* clipping needs every gradient before any update */
    if (c->clip_norm > 0) return two_pass_step(opt, t, loss);
    opt->last_norm = 0; /* no norm without clipping; NaN below if a piece was skipped */
    uint64_t steps = opt->steps + 1;
    opt->step_lr = (ag_real)ag_optim_lr(opt);
    opt->step_bc1 = opt->step_bc2 = 1;
    if (c->kind == AG_OPT_ADAM || c->kind == AG_OPT_ADAMW) {
        opt->step_bc1 = 1 - pow(c->beta1, (double)steps);
        opt->step_bc2 = 1 - pow(c->beta2, (double)steps);
    }
    for (size_t i = 0; i < opt->n_params; i++) atomic_init(&opt->delivered[i], 0);
    atomic_init(&opt->nonfinite, 0);
    atomic_init(&opt->first_bad, 0);

    const ag_grad_sink *own = ag_tape_grad_sink(t); /* a caller's own sink comes back afterwards */
    /* another store's parameters are refused: their gradients stay in ->grad, as with two passes */
    const ag_grad_sink saved = own ? *own : (ag_grad_sink){0},
                       mine = {.consume = optim_consume,
                               .ctx = opt,
                               .accepts = optim_accepts,
                               .consume_decay = c->weight_decay == 0 ? optim_consume_decay : NULL};
    ag_tape_set_grad_sink(t, &mine);
    ag_status st = ag_backward(t, loss);
    ag_tape_set_grad_sink(t, own ? &saved : NULL);
    if (st != AG_OK) { /* the step counts if the sweep updated anything before it failed */
        int any = atomic_load(&opt->first_bad) != 0;
        for (size_t i = 0; i < opt->n_params && !any; i++) any = atomic_load(&opt->delivered[i]);
        if (any) opt->steps = steps;
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, st, "optim: backward failed: %s", ag_tape_errmsg(t));
    }

    /* parameters the sweep did not deliver: no gradient reached them (or their gradient
     * is left from earlier sweeps); they still decay and move with their momentum */
    for (size_t i = 0; i < opt->n_params; i++) {
        if (atomic_load_explicit(&opt->delivered[i], memory_order_relaxed)) continue;
        ag_tensor *x = ag_params_at(ps, i);
        if (x->flags & AG_STATE) continue; /* not a weight: no gradient, never updated */
        optim_consume(opt, x, 0, 1, x->size, x->size, x->grad, x->size, 0);
        memset(x->grad, 0, x->size * sizeof(ag_real));
        ag_ext_grad_zeroed(x);
    }
    opt->steps = steps;
    size_t bad = atomic_load(&opt->first_bad);
    if (bad) opt->last_norm = NAN;
    if (bad)
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, AG_ERR_NUMERIC,
                     "optim: NaN or Inf in the gradient of %s: %zu piece(s) of it left unchanged, "
                     "everything else updated", ag_params_at(ps, bad - 1)->name,
                     (size_t)atomic_load(&opt->nonfinite));
    return AG_OK;
}

void ag_optim_zero_grad(ag_optim *opt) {
    if (opt) ag_params_zero_grad(opt->ps);
}

/* ---------------------------------------------------------------- accessors and state */

double ag_optim_lr(const ag_optim *opt) {
    return opt ? ag_schedule_lr(&opt->cfg.schedule, opt->cfg.lr, opt->steps) : 0;
}
double ag_optim_grad_norm(const ag_optim *opt) { return opt ? opt->last_norm : 0; }
const ag_optim_config *ag_optim_get_config(const ag_optim *opt) { return opt ? &opt->cfg : NULL; }
const char *ag_optim_errmsg(const ag_optim *opt) { return opt ? opt->errmsg : "optim is NULL"; }
uint64_t ag_optim_steps(const ag_optim *opt) { return opt ? opt->steps : 0; }
void ag_optim_set_steps(ag_optim *opt, uint64_t steps) {
    if (opt) opt->steps = steps;
}
size_t ag_optim_state_count(const ag_optim *opt) { return opt ? opt->n_state : 0; }

ag_status ag_optim_state(ag_optim *opt, size_t i, const char **name, ag_real **ptr, size_t *n) {
    if (!opt) return AG_ERR_ARG;
    if (i >= opt->n_state)
        return ag_ext_errf(opt->errmsg, sizeof opt->errmsg, AG_ERR_ARG, "optim_state: index %zu, the optimizer has %zu state buffers", i,
                     opt->n_state);
    if (name) *name = opt->state_name[i];
    if (ptr) *ptr = opt->state[i];
    if (n) *n = opt->numel;
    return AG_OK;
}

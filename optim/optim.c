/*
 * optim.c - SGD, momentum, Nesterov, Adam/AdamW, schedules and clipping over the flat buffers of
 * an ag_params store. The formulas are listed in optim.h; each loop below names the one it runs.
 *
 * The update is element-wise, so it is one loop over [0, numel) when no weight decay is set, and
 * one loop per tensor when it is (decay only on AG_DECAY tensors, the factor fixed per tensor;
 * the padding between tensors then stays untouched at zero). Both paths run the same
 * per-element code, so their results are identical.
 */
#include "optim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

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
};

#ifdef AG_DOUBLE
#define RSQRT(x) sqrt(x)
#else
#define RSQRT(x) sqrtf(x)
#endif

/* The element-wise loops are memory-bound streams; an AVX2 clone (chosen at load time) moves
 * twice the bytes per instruction of the SSE2 baseline. No FMA: the clones round exactly like it,
 * so results do not depend on the machine. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(AG_NO_CLONES)
#define AG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AG_CLONES
#endif

static ag_status ofail(ag_optim *opt, ag_status st, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ag_status ofail(ag_optim *opt, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(opt->errmsg, sizeof opt->errmsg, fmt, ap);
    va_end(ap);
    return st;
}

static ag_status cfg_fail(char *err, size_t errsize, const char *msg, double v) {
    if (err && errsize) snprintf(err, errsize, "optim: %s (got %g)", msg, v);
    return AG_ERR_ARG;
}

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
    if (!ps || !cfg) {
        if (err && errsize) snprintf(err, errsize, "optim: %s is NULL", ps ? "config" : "params store");
        return AG_ERR_ARG;
    }
    ag_optim_config c = *cfg;
    if ((int)c.kind < AG_OPT_SGD || c.kind > AG_OPT_ADAMW) return cfg_fail(err, errsize, "unknown kind", c.kind);
    if (!(c.lr > 0) || !isfinite(c.lr)) return cfg_fail(err, errsize, "lr must be finite and > 0", c.lr);
    if (!(c.weight_decay >= 0) || !isfinite(c.weight_decay))
        return cfg_fail(err, errsize, "weight_decay must be finite and >= 0", c.weight_decay);
    if (c.momentum == 0) c.momentum = 0.9;
    if (c.beta1 == 0) c.beta1 = 0.9;
    if (c.beta2 == 0) c.beta2 = 0.999;
    if (c.eps == 0) c.eps = 1e-8;
    if (!(c.momentum > 0 && c.momentum < 1)) return cfg_fail(err, errsize, "momentum must be in (0, 1)", c.momentum);
    if (!(c.beta1 > 0 && c.beta1 < 1)) return cfg_fail(err, errsize, "beta1 must be in (0, 1)", c.beta1);
    if (!(c.beta2 > 0 && c.beta2 < 1)) return cfg_fail(err, errsize, "beta2 must be in (0, 1)", c.beta2);
    if (!(c.eps > 0)) return cfg_fail(err, errsize, "eps must be > 0", c.eps);
    if (!(c.clip_norm >= 0)) return cfg_fail(err, errsize, "clip_norm must be >= 0", c.clip_norm);
    if (c.kind == AG_OPT_ADAMW) c.decoupled = 1;
    c.decoupled = c.decoupled != 0;
    c.zero_grad = c.zero_grad != 0;
    const ag_schedule *s = &c.schedule;
    if ((int)s->kind < AG_SCHED_CONSTANT || s->kind > AG_SCHED_COSINE)
        return cfg_fail(err, errsize, "unknown schedule kind", s->kind);
    if (s->kind == AG_SCHED_STEP && (s->step_size == 0 || !(s->gamma > 0)))
        return cfg_fail(err, errsize, "step schedule needs step_size >= 1 and gamma > 0", (double)s->step_size);
    if (s->kind == AG_SCHED_COSINE && s->total_steps <= s->warmup_steps)
        return cfg_fail(err, errsize, "cosine schedule needs total_steps > warmup_steps", (double)s->total_steps);

    ag_optim *opt = ag__calloc(1, sizeof *opt);
    if (!opt) {
        if (err && errsize) snprintf(err, errsize, "optim: out of memory");
        return AG_ERR_NOMEM;
    }
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
        opt->state[i] = ag__aligned_alloc((opt->numel ? opt->numel : 1) * sizeof(ag_real));
        if (!opt->state[i]) {
            size_t numel = opt->numel; /* read before the free */
            ag_optim_free(opt);
            if (err && errsize) snprintf(err, errsize, "optim: out of memory for %zu state elements", numel);
            return AG_ERR_NOMEM;
        }
        memset(opt->state[i], 0, opt->numel * sizeof(ag_real));
    }
    *out = opt;
    return AG_OK;
}

void ag_optim_free(ag_optim *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->n_state; i++) ag__aligned_free(opt->state[i]);
    ag__free(opt);
}

/* ---------------------------------------------------------------- clipping */

double ag_grad_norm(ag_params *ps) {
    const ag_real *g = ag_params_grads(ps);
    size_t n = ag_params_numel(ps);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * (double)g[i];
    return sqrt(sum);
}

double ag_clip_grad_norm(ag_params *ps, double max_norm) {
    double norm = ag_grad_norm(ps);
    if (!isfinite(norm) || !(max_norm > 0) || norm <= max_norm) return norm;
    ag_real scale = (ag_real)(max_norm / norm), *g = ag_params_grads(ps);
    size_t n = ag_params_numel(ps);
    for (size_t i = 0; i < n; i++) g[i] *= scale;
    return norm;
}

/* 1 if every element of g[0, n) is finite. g*0 is 0 for a finite g and NaN for NaN/Inf, and a
 * sum with a NaN term is NaN; the L independent accumulators let the compiler vectorise the loop
 * without reassociating (unlike the double-precision norm, which cost 21% of a seed b32 step). */
AG_CLONES static int all_finite(const ag_real *restrict g, size_t n) {
    enum { L = 16 };
    ag_real acc[L] = {0};
    size_t i = 0;
    for (; i + L <= n; i += L)
        for (size_t j = 0; j < L; j++) acc[j] += g[i + j] * 0;
    ag_real s = 0;
    for (; i < n; i++) s += g[i] * 0;
    for (size_t j = 0; j < L; j++) s += acc[j];
    return s == 0;
}

/* ---------------------------------------------------------------- the update */

/* Run BODY (which uses w, g, ..., at i) for i in [0, n), then, with zero_grad, clear g[i] in
 * the same pass (one stream over the gradients instead of a separate ag_params_zero_grad).
 * Every branch is outside the loops so that they vectorise. */
#define EACH(BODY)                                                                                 \
    do {                                                                                           \
        if (zero)                                                                                  \
            for (size_t i = 0; i < n; i++) {                                                       \
                BODY;                                                                              \
                g[i] = 0;                                                                          \
            }                                                                                      \
        else                                                                                       \
            for (size_t i = 0; i < n; i++) {                                                       \
                BODY;                                                                              \
            }                                                                                      \
    } while (0)

/* Elements [lo, hi) of the flat buffers. wd_g: decay added to the gradient (coupled);
 * wd_w: decay applied to the weights directly (decoupled). At most one of them is nonzero. */
AG_CLONES static void update_range(ag_optim *opt, size_t lo, size_t hi, ag_real lr, ag_real wd_g,
                                   ag_real wd_w, double bc1, double bc2) {
    ag_real *restrict w = ag_params_values(opt->ps) + lo;
    ag_real *restrict g = ag_params_grads(opt->ps) + lo;
    const ag_optim_config *c = &opt->cfg;
    const size_t n = hi - lo;
    const int zero = c->zero_grad;
    const ag_real lrwd = lr * wd_w; /* decoupled: w -= (alpha lambda) w */
    switch (c->kind) {
    case AG_OPT_SGD: {
        /* w -= alpha (g + lambda w): W := W - alpha [(1/K) DeltaW + lambda W] when g = (1/K) DeltaW
         * (backprop-derivation.md, the SGD update). Coupled and decoupled decay are the same
         * update for plain SGD. */
        ag_real wd = wd_g + wd_w;
        if (wd == 0)
            EACH(w[i] -= lr * g[i]);
        else
            EACH(w[i] -= lr * (g[i] + wd * w[i]));
        break;
    }
    case AG_OPT_MOMENTUM:
    case AG_OPT_NESTEROV: {
        ag_real *restrict v = opt->state[0] + lo;
        ag_real mu = (ag_real)c->momentum;
        /* v = mu v + g; momentum: w -= alpha v; Nesterov: w -= alpha (g + mu v) */
#define MOM(GI, DECAY)                                                                             \
    do {                                                                                           \
        if (c->kind == AG_OPT_NESTEROV)                                                            \
            EACH(ag_real gi = (GI); DECAY; v[i] = mu * v[i] + gi; w[i] -= lr * (gi + mu * v[i]));  \
        else                                                                                       \
            EACH(ag_real gi = (GI); DECAY; v[i] = mu * v[i] + gi; w[i] -= lr * v[i]);              \
    } while (0)
        if (wd_g != 0)
            MOM(g[i] + wd_g * w[i], (void)0); /* coupled: g + lambda w */
        else if (wd_w != 0)
            MOM(g[i], w[i] -= lrwd * w[i]); /* decoupled (SGDW) */
        else
            MOM(g[i], (void)0);
#undef MOM
        break;
    }
    case AG_OPT_ADAM:
    case AG_OPT_ADAMW: {
        ag_real *restrict m = opt->state[0] + lo, *restrict v = opt->state[1] + lo;
        ag_real b1 = (ag_real)c->beta1, b2 = (ag_real)c->beta2, eps = (ag_real)c->eps;
        ag_real ib1 = (ag_real)(1 - c->beta1), ib2 = (ag_real)(1 - c->beta2);
        ag_real rbc1 = (ag_real)(1 / bc1), rbc2 = (ag_real)(1 / bc2);
        /* m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; bias correction 1 - b^t;
         * w -= alpha mhat / (sqrt(vhat) + eps) */
#define ADAM(GI, DECAY)                                                                            \
    EACH(ag_real gi = (GI); DECAY; m[i] = b1 * m[i] + ib1 * gi; v[i] = b2 * v[i] + ib2 * gi * gi;  \
         ag_real mhat = m[i] * rbc1; ag_real vhat = v[i] * rbc2; w[i] -= lr * mhat / (RSQRT(vhat) + eps))
        if (wd_g != 0)
            ADAM(g[i] + wd_g * w[i], (void)0);
        else if (wd_w != 0)
            ADAM(g[i], w[i] -= lrwd * w[i]); /* AdamW */
        else
            ADAM(g[i], (void)0);
#undef ADAM
        break;
    }
    }
}
#undef EACH

ag_status ag_optim_step(ag_optim *opt) {
    if (!opt) return AG_ERR_ARG;
    opt->errmsg[0] = '\0';
    ag_params *ps = opt->ps;
    size_t numel = ag_params_numel(ps);
    if (numel != opt->numel)
        return ofail(opt, AG_ERR_STATE, "optim: the store holds %zu elements but the optimizer was made for %zu",
                     numel, opt->numel);
    const ag_optim_config *c = &opt->cfg;
    /* a NaN/Inf gradient must not reach the weights: clipping computes the norm anyway; without
     * it a finiteness check is enough, and the norm is computed only for the error message */
    if (c->clip_norm > 0)
        opt->last_norm = ag_clip_grad_norm(ps, c->clip_norm);
    else
        opt->last_norm = all_finite(ag_params_grads(ps), numel) ? 0 : ag_grad_norm(ps);
    if (!isfinite(opt->last_norm))
        return ofail(opt, AG_ERR_NUMERIC, "optim: gradient norm is %g; parameters left unchanged",
                     opt->last_norm);
    ag_real lr = (ag_real)ag_optim_lr(opt);
    uint64_t t = opt->steps + 1; /* 1-based step number for Adam's bias correction */
    double bc1 = 1, bc2 = 1;
    if (c->kind == AG_OPT_ADAM || c->kind == AG_OPT_ADAMW) {
        bc1 = 1 - pow(c->beta1, (double)t);
        bc2 = 1 - pow(c->beta2, (double)t);
    }
    if (c->weight_decay == 0) {
        update_range(opt, 0, numel, lr, 0, 0, bc1, bc2);
    } else {
        ag_real wd = (ag_real)c->weight_decay;
        const ag_real *base = ag_params_values(ps);
        size_t count = ag_params_count(ps);
        for (size_t k = 0; k < count; k++) {
            const ag_tensor *x = ag_params_at(ps, k);
            size_t lo = (size_t)(x->value - base);
            int decay = (x->flags & AG_DECAY) != 0; /* weights only, never biases */
            update_range(opt, lo, lo + x->size, lr, decay && !c->decoupled ? wd : 0,
                         decay && c->decoupled ? wd : 0, bc1, bc2);
        }
    }
    opt->steps = t;
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
        return ofail(opt, AG_ERR_ARG, "optim_state: index %zu, the optimizer has %zu state buffers", i,
                     opt->n_state);
    if (name) *name = opt->state_name[i];
    if (ptr) *ptr = opt->state[i];
    if (n) *n = opt->numel;
    return AG_OK;
}

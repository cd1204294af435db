/*
 * ops/functions.c - element-wise functions of one tensor, any rank: softplus, log1p, expm1,
 * log_sigmoid, gelu (tanh form), gelu_erf, silu, leaky_relu, elu, sin, cos, reciprocal, rsqrt.
 *
 * Each op: its forward and backward side by side (FN below), the output of the input's shape.
 * Backward adds into the input's gradient (assigns a fresh one: ag_node_grad_out), and takes
 * f' from the saved output where that is exact (reciprocal -out^2, rsqrt -out^3/2) and from x elsewhere: the
 * output would lose it (sigmoid(x) = 1 - e^-softplus(x) cancels for x >> 0), and recomputing one
 * e^ in a vectorised loop costs less than saving and streaming another array.
 *
 * Stability: every e^ here is of -|x| or of an argument <= 0 (ag__fn_exp_nonpos), so nothing
 * overflows: softplus(1e4) = 1e4, log_sigmoid(-1e4) = -1e4, gelu(+-1e30) = 1e30 and -0, with the
 * right gradients. Where a product 0 * inf would appear in f' (gelu at |x| = 1e30, whose x^3
 * overflows) the vanishing factor is tested and the term dropped.
 *
 * Speed: the float build's math is branch-free (kernels/special.h), so the AG__CLONES loops
 * vectorise (AVX-512: 16 lanes) and give the baseline's bits; the double build calls libm.
 * Read next: ops/loss.c (bce_with_logits uses the same softplus).
 */
#include "../internal.h"
#include "../kernels/special.h"

static ag_status same_shape(ag_node *n) { return ag__node_shape_like(n, n->in[0]); }

/* The op's constant (leaky_relu's slope, elu's alpha) must be finite. */
static ag_status finite_param_shape(ag_node *n, const char *what) {
    const ag_real c = *(const ag_real *)n->params;
    if (!isfinite((double)c)) return ag_node_fail(n, AG_ERR_ARG, "%s is %g, must be finite", what, (double)c);
    return ag__node_shape_like(n, n->in[0]);
}

/* FN(name, FWD, BWD): o = FWD(x); dx += BWD(x, out, g). c is the op's ag_real parameter (0 if
 * none). */
#define FN(name, FWD, BWD)                                                                   \
    AG__CLONES static ag_status name##_forward(ag_node *n) {                                 \
        const ag_real *restrict xs = n->in[0]->value;                                        \
        ag_real *restrict o = n->out.value;                                                  \
        const ag_real c = n->params ? *(const ag_real *)n->params : 0;                       \
        ag_node_grad_out_declare(n); /* name##_backward: ag_node_grad_out */                 \
        (void)c;                                                                             \
        for (size_t i = 0, N = n->out.size; i < N; i++) {                                    \
            const ag_real x = xs[i];                                                         \
            o[i] = (FWD);                                                                    \
        }                                                                                    \
        return AG_OK;                                                                        \
    }                                                                                        \
    AG__CLONES static ag_status name##_backward(ag_node *n) {                                \
        int assign;                                                                          \
        ag_real *restrict dx = ag_node_grad_out(n, 0, &assign);                              \
        if (!dx) return AG_OK;                                                               \
        const ag_real *restrict xs = n->in[0]->value, *restrict o = n->out.value;            \
        const ag_real *restrict dout = n->out.grad;                                          \
        const ag_real c = n->params ? *(const ag_real *)n->params : 0;                       \
        (void)c;                                                                             \
        if (assign) /* 0 + term: the former zero-then-add's bits */                          \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                \
                const ag_real x = xs[i], out = o[i], g = dout[i];                            \
                (void)x, (void)out;                                                          \
                dx[i] = (ag_real)0 + (BWD);                                                  \
            }                                                                                \
        else                                                                                 \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                \
                const ag_real x = xs[i], out = o[i], g = dout[i];                            \
                (void)x, (void)out;                                                          \
                dx[i] += (BWD);                                                              \
            }                                                                                \
        return AG_OK;                                                                        \
    }

/* sigmoid(x) and 1 - sigmoid(x) = sigmoid(-x) from one e = e^-|x| (eltwise.h's ag__sigmoid1):
 * s1 = 1/(1+e) is the larger of the two, e s1 the smaller. */
static inline ag_real sig_pos(ag_real x, ag_real e) { /* sigmoid(x) */
    const ag_real s1 = 1 / (1 + e), es = e * s1;
    return ag__fn_pick(x >= 0, s1, es);
}
static inline ag_real sig_neg(ag_real x, ag_real e) { /* 1 - sigmoid(x) */
    const ag_real s1 = 1 / (1 + e), es = e * s1;
    return ag__fn_pick(x >= 0, es, s1);
}
#define NONPOS(x) ag__fn_pick((x) > 0, 0, (x))
#define E_NEG_ABS(x) ag__fn_exp_nonpos(-ag__fabs(x)) /* e^-|x| in (0, 1] */

/* ---- softplus: log(1 + e^x) = max(x, 0) + log1p(e^-|x|);  dx += g sigmoid(x) */
FN(softplus, ag__fn_pick(x > 0, x, 0) + ag__fn_log1p_unit(E_NEG_ABS(x)), g * sig_pos(x, E_NEG_ABS(x)))
static const ag_op softplus_op = {"softplus", 1, 0, same_shape, softplus_forward, softplus_backward};
ag_tensor *ag_softplus(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &softplus_op, NULL, x); }

/* ---- log_sigmoid: log sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(e^-|x|);
 * dx += g (1 - sigmoid(x)), from e^-|x| (not 1 - e^out, which cancels for x >> 0) */
FN(log_sigmoid, ag__fn_pick(x < 0, x, 0) - ag__fn_log1p_unit(E_NEG_ABS(x)), g * sig_neg(x, E_NEG_ABS(x)))
static const ag_op log_sigmoid_op = {"log_sigmoid", 1, 0, same_shape, log_sigmoid_forward, log_sigmoid_backward};
ag_tensor *ag_log_sigmoid(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &log_sigmoid_op, NULL, x); }

/* ---- log1p: log(1 + x);  dx += g / (1 + x). x = -1 gives -inf, x < -1 NaN, as libm. */
FN(log1p, ag__fn_log1p(x), g / (1 + x))
static const ag_op log1p_op = {"log1p", 1, 0, same_shape, log1p_forward, log1p_backward};
ag_tensor *ag_log1p(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &log1p_op, NULL, x); }

/* ---- expm1: e^x - 1;  dx += g e^x: out + 1 for x > 0, e^x itself below (out + 1 would round
 * e^-20 away) */
FN(expm1, ag__fn_expm1(x), g * ag__fn_pick(x > 0, out + 1, ag__fn_exp_nonpos(NONPOS(x))))
static const ag_op expm1_op = {"expm1", 1, 0, same_shape, expm1_forward, expm1_backward};
ag_tensor *ag_expm1(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &expm1_op, NULL, x); }

/* ---- silu: x sigmoid(x);  dx += g (s + x s (1 - s)), s = sigmoid(x) */
static inline ag_real silu_df(ag_real x) {
    const ag_real e = E_NEG_ABS(x);
    const ag_real s = sig_pos(x, e);
    return s + x * (s * sig_neg(x, e)); /* s (1 - s) first: 0 at |x| = 1e30, never 0 * inf */
}
FN(silu, x * sig_pos(x, E_NEG_ABS(x)), g * silu_df(x))
static const ag_op silu_op = {"silu", 1, 0, same_shape, silu_forward, silu_backward};
ag_tensor *ag_silu(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &silu_op, NULL, x); }

/* ---- gelu, tanh form (torch's approximate='tanh'):
 *   0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);  1 + tanh u = 2 sigmoid(2u), so
 *   gelu = x s with s = sigmoid(z), z = 2u = x (C0 + C1 x^2), C0 = 2 sqrt(2/pi), C1 = 0.044715 C0;
 *   dx += g (s + x s (1 - s) z'), z' = C0 + 3 C1 x^2.
 * At |x| = 1e30 (float) x^2 overflows: z' = inf while s (1 - s) = 0, so the term is dropped when
 * s (1 - s) is 0 (its limit). */
#define GELU_C0 ((ag_real)1.5957691216057308)   /* 2 sqrt(2/pi) */
#define GELU_C1 ((ag_real)0.071354816272923136) /* 0.044715 * 2 sqrt(2/pi) */
static inline ag_real gelu_z(ag_real x) { return x * (GELU_C0 + GELU_C1 * (x * x)); }
static inline ag_real gelu_df(ag_real x) {
    const ag_real z = gelu_z(x), e = E_NEG_ABS(z);
    const ag_real s = sig_pos(z, e), ss = s * sig_neg(z, e);
    const ag_real term = x * ss * (GELU_C0 + 3 * GELU_C1 * (x * x));
    return s + ag__fn_pick(ss > 0, term, 0);
}
FN(gelu, x * sig_pos(gelu_z(x), E_NEG_ABS(gelu_z(x))), g * gelu_df(x))
static const ag_op gelu_op = {"gelu", 1, 0, same_shape, gelu_forward, gelu_backward};
ag_tensor *ag_gelu(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &gelu_op, NULL, x); }

/* ---- gelu_erf: x Phi(x), Phi(x) = (1 + erf(x/sqrt2))/2 (torch's default gelu);
 * dx += g (Phi(x) + x phi(x)), phi(x) = e^(-x^2/2)/sqrt(2 pi) */
static inline ag_real gelu_erf_df(ag_real x) {
    return ag__fn_ncdf(x) + x * ((ag_real)AG__INV_SQRT_2PI * ag__fn_exp_nonpos((ag_real)-0.5 * (x * x)));
}
FN(gelu_erf, x * ag__fn_ncdf(x), g * gelu_erf_df(x))
static const ag_op gelu_erf_op = {"gelu_erf", 1, 0, same_shape, gelu_erf_forward, gelu_erf_backward};
ag_tensor *ag_gelu_erf(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &gelu_erf_op, NULL, x); }

/* ---- leaky_relu: x > 0 ? x : slope x;  dx += g (x > 0 ? 1 : slope), f'(0) = slope as torch */
FN(leaky_relu, ag__fn_pick(x > 0, x, c * x), ag__fn_pick(x > 0, g, c * g))
static ag_status leaky_relu_shape(ag_node *n) { return finite_param_shape(n, "slope"); }
static const ag_op leaky_relu_op = {"leaky_relu", 1, sizeof(ag_real), leaky_relu_shape, leaky_relu_forward,
                                    leaky_relu_backward};
ag_tensor *ag_leaky_relu(ag_tape *t, ag_tensor *x, ag_real slope) {
    return AG__CALL(t, &leaky_relu_op, &slope, x);
}

/* ---- elu: x > 0 ? x : alpha (e^x - 1);  dx += g (x > 0 ? 1 : alpha e^x), f'(0) = alpha as
 * torch; e^x recomputed (out + alpha cancels for x << 0) */
FN(elu, ag__fn_pick(x > 0, x, c * ag__fn_expm1_nonpos(NONPOS(x))),
   ag__fn_pick(x > 0, g, g * (c * ag__fn_exp_nonpos(NONPOS(x)))))
static ag_status elu_shape(ag_node *n) { return finite_param_shape(n, "alpha"); }
static const ag_op elu_op = {"elu", 1, sizeof(ag_real), elu_shape, elu_forward, elu_backward};
ag_tensor *ag_elu(ag_tape *t, ag_tensor *x, ag_real alpha) { return AG__CALL(t, &elu_op, &alpha, x); }

/* ---- reciprocal: 1/x;  dx += -g out^2. 1/0 = inf (IEEE, no error). */
FN(reciprocal, 1 / x, -g * (out * out))
static const ag_op reciprocal_op = {"reciprocal", 1, 0, same_shape, reciprocal_forward, reciprocal_backward};
ag_tensor *ag_reciprocal(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &reciprocal_op, NULL, x); }

/* ---- rsqrt: 1/sqrt(x);  dx += -g out^3 / 2. rsqrt(0) = inf, of a negative NaN. */
FN(rsqrt, ag__fn_rsqrt(x), (ag_real)-0.5 * g * (out * out * out)) /* special.h: no scalar sqrt */
static const ag_op rsqrt_op = {"rsqrt", 1, 0, same_shape, rsqrt_forward, rsqrt_backward};
ag_tensor *ag_rsqrt(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &rsqrt_op, NULL, x); }

/* ---- sin, cos: dx += g cos x, dx -= g sin x. The float build's fast path covers |x| <= 8192
 * (special.h); the vectorised loop leaves 0 elsewhere and a second pass takes libm's value there
 * (|x| > 8192, inf, NaN): the same result for any vector width. */
#ifdef AG_DOUBLE
#define TRIG_LIBM(f) f
#else
#define TRIG_LIBM(fn) fn##f
#endif
/* TRIG(name, f, df, sign): o = f(x); dx += sign g df(x) */
#define TRIG(name, F, DF, SIGN)                                                              \
    AG__CLONES static ag_status name##_forward(ag_node *n) {                                 \
        const ag_real *restrict xs = n->in[0]->value;                                        \
        ag_real *restrict o = n->out.value;                                                  \
        const size_t N = n->out.size;                                                        \
        for (size_t i = 0; i < N; i++) o[i] = ag__fn_##F(xs[i]);                             \
        for (size_t i = 0; i < N; i++)                                                       \
            if (!ag__fn_trig_ok(xs[i])) o[i] = TRIG_LIBM(F)(xs[i]);                          \
        return AG_OK;                                                                        \
    }                                                                                        \
    AG__CLONES static ag_status name##_backward(ag_node *n) {                                \
        ag_real *restrict dx = n->in[0]->grad;                                               \
        if (!dx) return AG_OK;                                                               \
        const ag_real *restrict xs = n->in[0]->value, *restrict dout = n->out.grad;          \
        const size_t N = n->out.size;                                                        \
        for (size_t i = 0; i < N; i++) dx[i] += SIGN dout[i] * ag__fn_##DF(xs[i]);           \
        for (size_t i = 0; i < N; i++)                                                       \
            if (!ag__fn_trig_ok(xs[i])) dx[i] += SIGN dout[i] * TRIG_LIBM(DF)(xs[i]);        \
        return AG_OK;                                                                        \
    }
TRIG(sin, sin, cos, +)
TRIG(cos, cos, sin, -)
static const ag_op sin_op = {"sin", 1, 0, same_shape, sin_forward, sin_backward};
static const ag_op cos_op = {"cos", 1, 0, same_shape, cos_forward, cos_backward};
ag_tensor *ag_sin(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &sin_op, NULL, x); }
ag_tensor *ag_cos(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &cos_op, NULL, x); }

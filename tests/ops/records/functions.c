/*
 * records/functions.c - the element-wise functions of issue 22 (autograd/ops/functions.c): softplus,
 * log_sigmoid, log1p, expm1, gelu, gelu_erf, silu, leaky_relu, elu, sin, cos, reciprocal, rsqrt.
 * Ranks 0..4; the speed shape is 32 x 2048 (an MLP block's activations). Twins: each function from
 * the first wave's ops by its defining formula (gelu_erf has none: the library has no erf).
 * Extremes (|x| = 1e4, 1e30) are checked against hand-derived values in tests/ops/test_functions.c.
 */
#include "records.h"

#include <math.h>

#define UNARY(fn)                                                                      \
    static ag_tensor *b_##fn(ag_tape *t, ag_tensor *const *in, const void *c) {        \
        (void)c;                                                                       \
        return ag_##fn(t, in[0]);                                                      \
    }
UNARY(softplus) UNARY(log_sigmoid) UNARY(log1p) UNARY(expm1) UNARY(gelu) UNARY(gelu_erf) UNARY(silu)
UNARY(sin) UNARY(cos) UNARY(reciprocal) UNARY(rsqrt)
static ag_tensor *b_leaky_relu(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_leaky_relu(t, in[0], P(c, ag_real));
}
static ag_tensor *b_elu(ag_tape *t, ag_tensor *const *in, const void *c) { return ag_elu(t, in[0], P(c, ag_real)); }

/* twins */
static ag_tensor *tw_softplus(ag_tape *t, ag_tensor *const *in, const void *c) { /* log(e^x + 1) */
    (void)c;
    return ag_log(t, ag_add_scalar(t, ag_exp(t, in[0]), 1));
}
static ag_tensor *tw_log_sigmoid(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_log(t, ag_sigmoid(t, in[0]));
}
static ag_tensor *tw_log1p(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_log(t, ag_add_scalar(t, in[0], 1));
}
static ag_tensor *tw_expm1(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_add_scalar(t, ag_exp(t, in[0]), -1);
}
static ag_tensor *tw_gelu(ag_tape *t, ag_tensor *const *in, const void *c) { /* x/2 (1 + tanh(k (x + 0.044715 x^3))) */
    (void)c;
    ag_tensor *u = ag_add(t, in[0], ag_scale(t, ag_pow(t, in[0], 3), (ag_real)0.044715));
    ag_tensor *th = ag_tanh(t, ag_scale(t, u, (ag_real)0.79788456080286536)); /* sqrt(2/pi) */
    return ag_mul(t, ag_scale(t, in[0], (ag_real)0.5), ag_add_scalar(t, th, 1));
}
static ag_tensor *tw_silu(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_mul(t, in[0], ag_sigmoid(t, in[0]));
}
static ag_tensor *tw_leaky_relu(ag_tape *t, ag_tensor *const *in, const void *c) { /* relu(x) - slope relu(-x) */
    return ag_sub(t, ag_relu(t, in[0]), ag_scale(t, ag_relu(t, ag_neg(t, in[0])), P(c, ag_real)));
}
static ag_tensor *tw_elu(ag_tape *t, ag_tensor *const *in, const void *c) { /* relu(x) + alpha (e^-relu(-x) - 1) */
    ag_tensor *neg = ag_exp(t, ag_neg(t, ag_relu(t, ag_neg(t, in[0]))));
    return ag_add(t, ag_relu(t, in[0]), ag_scale(t, ag_add_scalar(t, neg, -1), P(c, ag_real)));
}
static ag_tensor *tw_sin(ag_tape *t, ag_tensor *const *in, const void *c) { /* cos(x - pi/2) */
    (void)c;
    return ag_cos(t, ag_add_scalar(t, in[0], (ag_real)-1.5707963267948966));
}
static ag_tensor *tw_cos(ag_tape *t, ag_tensor *const *in, const void *c) { /* sin(x + pi/2) */
    (void)c;
    return ag_sin(t, ag_add_scalar(t, in[0], (ag_real)1.5707963267948966));
}
static ag_tensor *tw_reciprocal(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_pow(t, in[0], -1);
}
static ag_tensor *tw_rsqrt(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_pow(t, in[0], (ag_real)-0.5);
}

/* leaky_relu and elu: ranks 0..4 with a parameter (0.01 and 0.3; 1 and 0.7) */
static const ag_real SLOPE[] = {(ag_real)0.01, (ag_real)0.3}, ALPHA[] = {1, (ag_real)0.7};
#define PARAM_CASES(p)                                                                                    \
    {"scalar", 1, {S0}, &p[0], NULL}, {"5", 1, {SHP(1, 5)}, &p[1], NULL}, {"3x4", 1, {SHP(2, 3, 4)}, &p[0], NULL}, \
        {"2x3x4", 1, {SHP(3, 2, 3, 4)}, &p[1], NULL}, {"2x3x1x2", 1, {SHP(4, 2, 3, 1, 2)}, &p[0], NULL}
static const op_case LEAKY_CASES[] = {PARAM_CASES(SLOPE)}, ELU_CASES[] = {PARAM_CASES(ALPHA)};
static const op_case LEAKY_LAYOUT[] = {{"RxC slope 0.01", 1, {SHP(2, OP_R, OP_C)}, &SLOPE[0], NULL}};
static const op_case ELU_LAYOUT[] = {{"RxC alpha 1", 1, {SHP(2, OP_R, OP_C)}, &ALPHA[0], NULL}};

static const ag_real P_NAN = (ag_real)NAN, P_INF = (ag_real)INFINITY, P_MINF = (ag_real)-INFINITY;
#define PBAD(what, p, m) {what, 1, {SHP(2, 2, 3)}, &p, NULL, 0, AG_ERR_ARG, m}
static const op_bad LEAKY_BAD[] = {PBAD("slope NaN", P_NAN, "slope is "), PBAD("slope inf", P_INF, "slope is inf, must be finite")};
static const op_bad ELU_BAD[] = {PBAD("alpha inf", P_INF, "alpha is inf, must be finite"),
                                 PBAD("alpha -inf", P_MINF, "alpha is -inf"), PBAD("alpha NaN", P_NAN, "must be finite")};

#define WIDE {-3, 3}
#define NEAR_M1 {-0.5, 2} /* log1p: inside (-1, inf) */
#define EXPM1_DOM {-2, 2}
#define TRIG_DOM {-4, 4}
/* as op_records.c's ELT (tests/op_records.cmake reads the names of ELT calls), at 32 x 2048 */
#define ELT(nm, tw, cs, dom, ...)                                                                       \
    {.name = #nm, .build = b_##nm, .composed = tw, .cases = CASES(cs), .layouts = CASES(RC_LAYOUT),     \
     .domain = {dom}, .clones = 1, .speed_r = 32, .speed_c = 2048, __VA_ARGS__}

const op_record op_records_functions[] = {
    ELT(softplus, tw_softplus, RANK_CASES, WIDE),
    ELT(log_sigmoid, tw_log_sigmoid, RANK_CASES, WIDE),
    ELT(log1p, tw_log1p, RANK_CASES, NEAR_M1),
    ELT(expm1, tw_expm1, RANK_CASES, EXPM1_DOM),
    ELT(gelu, tw_gelu, RANK_CASES, WIDE),
    ELT(gelu_erf, NULL, RANK_CASES, WIDE),
    ELT(silu, tw_silu, RANK_CASES, WIDE),
    {.name = "leaky_relu", .build = b_leaky_relu, .composed = tw_leaky_relu, .cases = CASES(LEAKY_CASES),
     .layouts = CASES(LEAKY_LAYOUT), .domain = {AWAY}, AVOID_ZERO, .bad = CASES(LEAKY_BAD), .clones = 1,
     .speed_r = 32, .speed_c = 2048},
    {.name = "elu", .build = b_elu, .composed = tw_elu, .cases = CASES(ELU_CASES), .layouts = CASES(ELU_LAYOUT),
     .domain = {AWAY}, AVOID_ZERO, .bad = CASES(ELU_BAD), .clones = 1, .speed_r = 32, .speed_c = 2048},
    ELT(sin, tw_sin, RANK_CASES, TRIG_DOM),
    ELT(cos, tw_cos, RANK_CASES, TRIG_DOM),
    ELT(reciprocal, tw_reciprocal, RANK_CASES, AWAY, AVOID_ZERO),
    ELT(rsqrt, tw_rsqrt, RANK_CASES, POS),
};
const size_t op_records_functions_n = LEN(op_records_functions);

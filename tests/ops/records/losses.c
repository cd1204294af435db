/*
 * records/losses.c - the losses of issue 22 (autograd/ops/loss.c): bce_with_logits,
 * cross_entropy_ex (n-d logits, ignore index, label smoothing), l1_loss, huber_loss.
 * Speed shapes: 32 x 2048 for the element-wise losses; cross_entropy_ex on 4 x 64 x 1024 logits
 * (a language model's batch x time x vocabulary). Twins: the defining formulas from other ops;
 * cross_entropy_ex without options against ag_cross_entropy on the logits seen as rows x V.
 */
#include "records.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- bce_with_logits */

static ag_tensor *b_bce_with_logits(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_bce_with_logits(t, in[0], in[1]);
}
static ag_tensor *tw_bce_with_logits(ag_tape *t, ag_tensor *const *in, const void *c) { /* mean(softplus(x) - x y) */
    (void)c;
    return ag_mean(t, ag_sub(t, ag_softplus(t, in[0]), ag_mul(t, in[0], in[1])));
}
#define PAIR(label, ...) {label, 2, {__VA_ARGS__, __VA_ARGS__}, NULL, NULL}
static const op_case PAIR_CASES[] = {
    PAIR("scalar", S0), PAIR("5", SHP(1, 5)), PAIR("3x4", SHP(2, 3, 4)), PAIR("2x3x4", SHP(3, 2, 3, 4)),
    PAIR("2x3x1x2", SHP(4, 2, 3, 1, 2)),
};
static const op_case PAIR_LAYOUT[] = {{"RxC,RxC", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, NULL, NULL}};
#define BAD2(what, a, b, st, m) {what, 2, {a, b}, NULL, NULL, 0, st, m}
static const op_bad BCE_BAD[] = {
    BAD2("shapes differ", SHP(2, 2, 3), SHP(2, 3, 2), AG_ERR_SHAPE, "logits are 2x3 but targets are 3x2"),
    BAD2("targets broadcast", SHP(2, 2, 3), SHP(1, 3), AG_ERR_SHAPE, "targets are 3 (shapes must be equal)"),
    BAD2("scalar targets", SHP(1, 4), S0, AG_ERR_SHAPE, "targets are scalar"),
};

/* ---------------------------------------------------------------- cross_entropy_ex */

typedef struct cex_case {
    int use_opts;        /* 0: opts NULL */
    ag_ce_opts opts;
    int ignore_every;    /* > 0: every ignore_every-th row (1-based) gets the label opts.ignore_index */
} cex_case;

enum { CEX_MAX_ROWS = 4096 };

/* The case's labels: the given ones with every ignore_every-th row set to the ignore index. */
static const int32_t *cex_labels(const ag_tensor *x, const op_call *c, int32_t *buf) {
    const cex_case *cc = c->param;
    if (!cc->ignore_every || !x || !c->labels || x->ndim < 1) return c->labels;
    const size_t rows = x->size / x->shape[x->ndim - 1];
    if (rows > CEX_MAX_ROWS) return c->labels;
    memcpy(buf, c->labels, rows * sizeof *buf);
    for (size_t k = (size_t)cc->ignore_every - 1; k < rows; k += (size_t)cc->ignore_every) buf[k] = cc->opts.ignore_index;
    return buf;
}
static ag_tensor *b_cross_entropy_ex(ag_tape *t, ag_tensor *const *in, const void *c) {
    const cex_case *cc = CALL(c)->param;
    int32_t buf[CEX_MAX_ROWS];
    const int32_t *labels = cex_labels(in ? in[0] : NULL, CALL(c), buf);
    return ag_cross_entropy_ex(t, in[0], labels, cc->use_opts ? &cc->opts : NULL);
}
/* Without options: ag_cross_entropy on rows x V. With them: -(1/M) sum log_softmax(x) .* Q, Q the
 * smoothed one-hot rows ((1 - eps) onehot + eps/V), zero on ignored rows, M the rows kept. */
static ag_tensor *tw_cross_entropy_ex(ag_tape *t, ag_tensor *const *in, const void *c) {
    const cex_case *cc = CALL(c)->param;
    const ag_tensor *x = in[0];
    const size_t V = x->shape[x->ndim - 1], R = x->size / V;
    ag_tensor *rows = ag_reshape(t, in[0], 2, (size_t[]){R, V});
    int32_t buf[CEX_MAX_ROWS];
    const int32_t *labels = cex_labels(x, CALL(c), buf);
    if (!cc->use_opts) return ag_cross_entropy(t, rows, labels);
    const double eps = (double)cc->opts.label_smoothing;
    ag_tensor *Q = ag_tensor_new(t, 2, (size_t[]){R, V});
    size_t M = 0;
    for (size_t k = 0; Q && k < R; k++) {
        if (labels[k] == cc->opts.ignore_index) continue;
        M++;
        for (size_t j = 0; j < V; j++) Q->value[k * V + j] = (ag_real)(eps / (double)V + (j == (size_t)labels[k] ? 1 - eps : 0));
    }
    return ag_scale(t, ag_sum(t, ag_mul(t, ag_log_softmax(t, rows), Q)), (ag_real)(M ? -1.0 / (double)M : 0));
}
static const cex_case CEX_PLAIN = {0, {0, 0}, 0}, CEX_IGN3 = {1, {-100, 0}, 3},
                      CEX_SMOOTH = {1, {-100, (ag_real)0.1}, 0}, CEX_BOTH = {1, {-1, (ag_real)0.2}, 2},
                      CEX_IN_RANGE = {1, {1, (ag_real)0.05}, 0}, CEX_LAYOUT2 = {1, {-100, (ag_real)0.1}, 4};
static const op_case CEX_CASES[] = {
    {"3x4", 1, {SHP(2, 3, 4)}, &CEX_PLAIN, NULL},
    {"5 (1-D)", 1, {SHP(1, 5)}, &CEX_PLAIN, NULL},
    {"2x3x4", 1, {SHP(3, 2, 3, 4)}, &CEX_PLAIN, NULL},
    {"2x1x3x5", 1, {SHP(4, 2, 1, 3, 5)}, &CEX_PLAIN, NULL},
    {"4x5 ignore every 3rd", 1, {SHP(2, 4, 5)}, &CEX_IGN3, NULL},
    {"2x3x4 smoothing 0.1", 1, {SHP(3, 2, 3, 4)}, &CEX_SMOOTH, NULL},
    {"3x2x6 ignore -1 every 2nd, smoothing 0.2", 1, {SHP(3, 3, 2, 6)}, &CEX_BOTH, NULL},
    {"6x3 ignore_index 1 (a class), smoothing 0.05", 1, {SHP(2, 6, 3)}, &CEX_IN_RANGE, NULL},
};
static const op_case CEX_LAYOUTS[] = {
    {"4xRxC", 1, {SHP(3, 4, OP_R, OP_C)}, &CEX_PLAIN, NULL},
    {"RxC smoothing 0.1, every 4th ignored", 1, {SHP(2, OP_R, OP_C)}, &CEX_LAYOUT2, NULL},
};
static const cex_case CEX_EPS1 = {1, {-100, 1}, 0}, CEX_EPSNEG = {1, {-100, (ag_real)-0.1}, 0},
                      CEX_EPSNAN = {1, {-100, (ag_real)NAN}, 0};
#define CEXBAD(what, shp, p, lab, st, m) {what, 1, {shp}, &p, lab, 0, st, m}
static const op_bad CEX_BAD[] = {
    {"labels NULL", 1, {SHP(2, 2, 3)}, &CEX_PLAIN, NULL, OP_NULL_LABELS, AG_ERR_ARG, "labels is NULL"},
    CEXBAD("label too big", SHP(2, 2, 3), CEX_PLAIN, ((const int32_t[]){0, 3}), AG_ERR_ARG,
           "label 3 of row 1 is outside 0..2"),
    CEXBAD("label -100 without opts", SHP(2, 2, 3), CEX_PLAIN, ((const int32_t[]){-100, 0}), AG_ERR_ARG,
           "label -100 of row 0 is outside 0..2"),
    CEXBAD("label -1, ignore_index -100", SHP(2, 2, 3), CEX_SMOOTH, ((const int32_t[]){-100, -1}), AG_ERR_ARG,
           "label -1 of row 1"),
    CEXBAD("3-D, row 4 out of range", SHP(3, 2, 3, 2), CEX_PLAIN, ((const int32_t[]){0, 1, 0, 1, 2, 0}), AG_ERR_ARG,
           "label 2 of row 4 is outside 0..1"),
    CEXBAD("label INT32_MIN", SHP(1, 3), CEX_PLAIN, ((const int32_t[]){INT32_MIN}), AG_ERR_ARG, "label -2147483648"),
    CEXBAD("smoothing 1", SHP(2, 2, 3), CEX_EPS1, NULL, AG_ERR_ARG, "label_smoothing is 1, must be in [0, 1)"),
    CEXBAD("smoothing -0.1", SHP(2, 2, 3), CEX_EPSNEG, NULL, AG_ERR_ARG, "label_smoothing is -0.1"),
    CEXBAD("smoothing NaN", SHP(2, 2, 3), CEX_EPSNAN, NULL, AG_ERR_ARG, "must be in [0, 1)"),
    CEXBAD("scalar logits", S0, CEX_PLAIN, ((const int32_t[]){0}), AG_ERR_SHAPE, "logits are a scalar"),
};

/* ---------------------------------------------------------------- l1, huber */

static ag_tensor *b_l1_loss(ag_tape *t, ag_tensor *const *in, const void *c) {
    (void)c;
    return ag_l1_loss(t, in[0], in[1]);
}
static ag_tensor *tw_l1_loss(ag_tape *t, ag_tensor *const *in, const void *c) { /* mean sqrt((h - y)^2) */
    (void)c;
    return ag_mean(t, ag_sqrt(t, ag_square(t, ag_sub(t, in[0], in[1]))));
}
static ag_tensor *b_huber_loss(ag_tape *t, ag_tensor *const *in, const void *c) {
    return ag_huber_loss(t, in[0], in[1], P(c, ag_real));
}
/* mean(d^2/2 - relu(|d| - delta)^2/2): past delta, d^2/2 - (|d| - delta)^2/2 = delta (|d| - delta/2) */
static ag_tensor *tw_huber_loss(ag_tape *t, ag_tensor *const *in, const void *c) {
    ag_tensor *d = ag_sub(t, in[0], in[1]);
    ag_tensor *over = ag_relu(t, ag_add_scalar(t, ag_sqrt(t, ag_square(t, d)), -P(c, ag_real)));
    return ag_mean(t, ag_scale(t, ag_sub(t, ag_square(t, d), ag_square(t, over)), (ag_real)0.5));
}
/* the kinks: d = 0 for l1, |d| = delta for huber (its second derivative jumps there). The distance
 * is out of line: gcc 12 for aarch64 stops with an internal error vectorising these min loops. */
__attribute__((noinline)) static double kink_gap(ag_tensor *const *in, size_t i, double at) {
    return fabs(fabs((double)in[0]->value[i] - (double)in[1]->value[i]) - at);
}
static double l1_kink(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    (void)t, (void)c;
    double m = INFINITY;
    for (size_t i = 0; i < in[0]->size; i++) m = fmin(m, kink_gap(in, i, 0));
    return m;
}
static double huber_kink(ag_tape *t, ag_tensor *const *in, const op_call *c) {
    (void)t;
    const double delta = (double)P(c, ag_real);
    double m = INFINITY;
    for (size_t i = 0; i < in[0]->size; i++) m = fmin(m, kink_gap(in, i, delta));
    return m;
}
static const ag_real DELTA[] = {(ag_real)0.5, 1, (ag_real)0.8};
#define PAIRP(label, p, ...) {label, 2, {__VA_ARGS__, __VA_ARGS__}, &p, NULL}
static const op_case HUBER_CASES[] = {
    PAIRP("scalar", DELTA[0], S0), PAIRP("5", DELTA[1], SHP(1, 5)), PAIRP("3x4", DELTA[0], SHP(2, 3, 4)),
    PAIRP("2x3x4 delta 0.8", DELTA[2], SHP(3, 2, 3, 4)), PAIRP("2x3x1x2", DELTA[0], SHP(4, 2, 3, 1, 2)),
};
static const op_case HUBER_LAYOUT[] = {{"RxC,RxC delta 1", 2, {SHP(2, OP_R, OP_C), SHP(2, OP_R, OP_C)}, &DELTA[1], NULL}};
static const op_bad L1_BAD[] = {
    BAD2("shapes differ", SHP(2, 2, 3), SHP(2, 3, 4), AG_ERR_SHAPE, "h is 2x3 but y is 3x4"),
    BAD2("y broadcast", SHP(2, 2, 3), SHP(1, 3), AG_ERR_SHAPE, "y is 3 (shapes must be equal)"),
};
static const ag_real D_ZERO = 0, D_NEG = -1, D_NAN = (ag_real)NAN, D_INF = (ag_real)INFINITY;
#define HBAD(what, p, st, m) {what, 2, {SHP(2, 2, 3), SHP(2, 2, 3)}, &p, NULL, 0, st, m}
static const op_bad HUBER_BAD[] = {
    {"shapes differ", 2, {SHP(2, 2, 3), SHP(1, 6)}, &DELTA[0], NULL, 0, AG_ERR_SHAPE, "h is 2x3 but y is 6"},
    HBAD("delta 0", D_ZERO, AG_ERR_ARG, "delta is 0, must be finite and > 0"),
    HBAD("delta -1", D_NEG, AG_ERR_ARG, "delta is -1"),
    HBAD("delta NaN", D_NAN, AG_ERR_ARG, "must be finite and > 0"),
    HBAD("delta inf", D_INF, AG_ERR_ARG, "delta is inf"),
};

/* ---------------------------------------------------------------- the table */

const op_record op_records_losses[] = {
    {.name = "bce_with_logits", .build = b_bce_with_logits, .composed = tw_bce_with_logits,
     .cases = CASES(PAIR_CASES), .layouts = CASES(PAIR_LAYOUT), .domain = {{-3, 3}, {0, 1}},
     .bad = CASES(BCE_BAD), .clones = 1, .speed_r = 32, .speed_c = 2048},
    {.name = "cross_entropy_ex", .build = b_cross_entropy_ex, .composed = tw_cross_entropy_ex,
     .cases = CASES(CEX_CASES), .layouts = CASES(CEX_LAYOUTS), .domain = {{-2, 2}}, .labels = 1,
     .bad = CASES(CEX_BAD), .clones = 1, .speed_r = 64, .speed_c = 1024},
    {.name = "l1_loss", .build = b_l1_loss, .composed = tw_l1_loss, .cases = CASES(PAIR_CASES),
     .layouts = CASES(PAIR_LAYOUT), .domain = {ANY, ANY}, .avoid_dist = 0.05, .kink_dist = l1_kink,
     .bad = CASES(L1_BAD), .clones = 1, .speed_r = 32, .speed_c = 2048},
    {.name = "huber_loss", .build = b_huber_loss, .composed = tw_huber_loss, .cases = CASES(HUBER_CASES),
     .layouts = CASES(HUBER_LAYOUT), .domain = {ANY, ANY}, .avoid_dist = 0.05, .kink_dist = huber_kink,
     .bad = CASES(HUBER_BAD), .clones = 1, .speed_r = 32, .speed_c = 2048},
};
const size_t op_records_losses_n = LEN(op_records_losses);

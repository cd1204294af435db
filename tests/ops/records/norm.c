/*
 * records/norm.c - the records of the normalisation ops (layer_norm, rms_norm, batch_norm) and of
 * dropout. See op_records.h for what a record holds; test_norm.c checks what a record cannot
 * express (running-statistics updates against torch's formula, the model round trip of AG_STATE
 * tensors, the dropout mask's statistics).
 *
 * Optional inputs are given by the case's input count, in the order of the call (layer_norm: x,
 * gamma, beta; batch_norm: x, gamma, beta, running_mean, running_var); a case's param says which.
 * Two things the checker's repeated evaluations need:
 *   - dropout: the builder calls ag_tape_set_seed(t, DROP_SEED) right before the op, so every
 *     evaluation after the checker's tape reset draws the mask of step 0 of that seed (ag.h), the
 *     same mask each time: the function is deterministic, and the twin rebuilds the mask from
 *     ag_rng_counter(DROP_SEED, 0, stream, i).
 *   - batch_norm in training mode updates its running statistics in forward; the gradient checker
 *     requires the store (its inputs) to come back unchanged, so running statistics that are
 *     parameters are handed to the op as tape copies. The output does not depend on them in
 *     training, and their gradient is zero on both sides.
 * Float tolerance: the default (OP_TOL_FLOAT) for every record.
 */
#include "records.h"

#include <math.h>

#define EPS ((ag_real)1e-5)

/* ---------------------------------------------------------------- layer norm, RMS norm */

typedef struct ln_args {
    int n_axes;
    ag_real eps;
    int beta_only; /* two inputs are x and beta (else x and gamma) */
} ln_args;
static const ln_args LN1 = {1, EPS, 0}, LN2 = {2, EPS, 0}, LN2_BETA = {2, EPS, 1}, LN1_EPS3 = {1, (ag_real)1e-3, 0};

static ag_tensor *b_layer_norm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ln_args *a = CALL(c)->param;
    const int n = CALL(c)->n_in;
    ag_tensor *gamma = n == 3 || (n == 2 && !a->beta_only) ? in[1] : NULL;
    ag_tensor *beta = n == 3 ? in[2] : n == 2 && a->beta_only ? in[1] : NULL;
    return ag_layer_norm(t, in[0], a->n_axes, gamma, beta, a->eps);
}
static ag_tensor *b_rms_norm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const ln_args *a = CALL(c)->param;
    return ag_rms_norm(t, in[0], a->n_axes, CALL(c)->n_in > 1 ? in[1] : NULL, a->eps);
}

/* x as rows x D, normalised with mean_axis / sub / square / sqrt / div, back to x's shape; gamma
 * and beta broadcast over the leading axes (their shape is x's trailing one) */
static ag_tensor *row_twin(ag_tape *t, ag_tensor *const *in, const void *c, int center) {
    const ln_args *a = CALL(c)->param;
    ag_tensor *x = in[0];
    size_t D = 1;
    for (int d = x->ndim - a->n_axes; d < x->ndim; d++) D *= x->shape[d];
    const size_t R = x->size / D;
    ag_tensor *xr = ag_reshape(t, x, 2, (size_t[]){R, D});
    if (center) {
        ag_tensor *mu = ag_reshape(t, ag_mean_axis(t, xr, 1), 2, (size_t[]){R, 1});
        xr = ag_sub(t, xr, mu);
    }
    ag_tensor *var = ag_reshape(t, ag_mean_axis(t, ag_square(t, xr), 1), 2, (size_t[]){R, 1});
    ag_tensor *y = ag_reshape(t, ag_div(t, xr, ag_sqrt(t, ag_add_scalar(t, var, a->eps))), x->ndim, x->shape);
    const int n = CALL(c)->n_in;
    if (n == 3 || (n == 2 && !a->beta_only)) y = ag_mul(t, y, in[1]);
    if (n == 3 || (n == 2 && a->beta_only)) y = ag_add(t, y, in[n - 1]);
    return y;
}
static ag_tensor *tw_layer_norm(ag_tape *t, ag_tensor *const *in, const void *c) { return row_twin(t, in, c, 1); }
static ag_tensor *tw_rms_norm(ag_tape *t, ag_tensor *const *in, const void *c) { return row_twin(t, in, c, 0); }

static const op_case LN_CASES[] = {
    {"3x5 n=1 gamma beta", 3, {SHP(2, 3, 5), SHP(1, 5), SHP(1, 5)}, &LN1, NULL},
    {"5 n=1", 1, {SHP(1, 5)}, &LN1, NULL},
    {"4 n=1 gamma beta", 3, {SHP(1, 4), SHP(1, 4), SHP(1, 4)}, &LN1_EPS3, NULL},
    {"3x4 n=2 gamma beta", 3, {SHP(2, 3, 4), SHP(2, 3, 4), SHP(2, 3, 4)}, &LN2, NULL},
    {"2x3x4 n=2 gamma beta", 3, {SHP(3, 2, 3, 4), SHP(2, 3, 4), SHP(2, 3, 4)}, &LN2, NULL},
    {"2x3x4 n=1 gamma", 2, {SHP(3, 2, 3, 4), SHP(1, 4)}, &LN1, NULL},
    {"2x2x3x2 n=2 beta", 2, {SHP(4, 2, 2, 3, 2), SHP(2, 3, 2)}, &LN2_BETA, NULL},
    {"2x3x1x4 n=1", 1, {SHP(4, 2, 3, 1, 4)}, &LN1, NULL},
};
static const op_case LN_LAYOUTS[] = {
    {"RxC gamma beta", 3, {SHP(2, OP_R, OP_C), SHP(1, OP_C), SHP(1, OP_C)}, &LN1, NULL},
    {"RxC", 1, {SHP(2, OP_R, OP_C)}, &LN1, NULL},
};
static const op_case RMS_CASES[] = {
    {"3x5 n=1 gamma", 2, {SHP(2, 3, 5), SHP(1, 5)}, &LN1, NULL},
    {"5 n=1", 1, {SHP(1, 5)}, &LN1, NULL},
    {"3x4 n=2 gamma", 2, {SHP(2, 3, 4), SHP(2, 3, 4)}, &LN2, NULL},
    {"2x3x4 n=2 gamma", 2, {SHP(3, 2, 3, 4), SHP(2, 3, 4)}, &LN2, NULL},
    {"2x3x1x4 n=1", 1, {SHP(4, 2, 3, 1, 4)}, &LN1, NULL},
    {"2x2x3x2 n=1 gamma", 2, {SHP(4, 2, 2, 3, 2), SHP(1, 2)}, &LN1, NULL},
};
static const op_case RMS_LAYOUTS[] = {
    {"RxC gamma", 2, {SHP(2, OP_R, OP_C), SHP(1, OP_C)}, &LN1, NULL},
    {"RxC", 1, {SHP(2, OP_R, OP_C)}, &LN1, NULL},
};

static const ln_args LN_N0 = {0, EPS, 0}, LN_N3 = {3, EPS, 0}, LN_NNEG = {-1, EPS, 0}, LN_EPS0 = {1, 0, 0},
                     LN_EPSNEG = {1, -1, 0}, LN_EPSNAN = {1, (ag_real)NAN, 0}, LN_EPSINF = {1, (ag_real)INFINITY, 0};
static const op_bad LN_BAD[] = {
    {"n_axes 0", 1, {SHP(2, 3, 5)}, &LN_N0, NULL, 0, AG_ERR_SHAPE, "n_axes 0 is out of range for 3x5 (1..2)"},
    {"n_axes 3 of 2-D", 1, {SHP(2, 3, 5)}, &LN_N3, NULL, 0, AG_ERR_SHAPE, "n_axes 3 is out of range for 3x5"},
    {"n_axes -1", 1, {SHP(2, 3, 5)}, &LN_NNEG, NULL, 0, AG_ERR_SHAPE, "n_axes -1"},
    {"scalar x", 1, {S0}, &LN1, NULL, 0, AG_ERR_SHAPE, "out of range for scalar"},
    {"gamma size", 3, {SHP(2, 3, 5), SHP(1, 4), SHP(1, 5)}, &LN1, NULL, 0, AG_ERR_SHAPE,
     "gamma is 4 but x is 3x5, normalised over 5"},
    {"beta size", 3, {SHP(2, 3, 5), SHP(1, 5), SHP(2, 3, 5)}, &LN1, NULL, 0, AG_ERR_SHAPE, "beta is 3x5 but x is 3x5"},
    {"gamma rank", 3, {SHP(3, 2, 3, 4), SHP(1, 12), SHP(2, 3, 4)}, &LN2, NULL, 0, AG_ERR_SHAPE,
     "gamma is 12 but x is 2x3x4, normalised over 3x4"},
    {"beta alone, size", 2, {SHP(2, 3, 5), SHP(1, 3)}, &LN2_BETA, NULL, 0, AG_ERR_SHAPE, "beta is 3"},
    {"eps 0", 1, {SHP(2, 3, 5)}, &LN_EPS0, NULL, 0, AG_ERR_ARG, "eps 0 must be positive and finite"},
    {"eps -1", 1, {SHP(2, 3, 5)}, &LN_EPSNEG, NULL, 0, AG_ERR_ARG, "eps -1"},
    {"eps NaN", 1, {SHP(2, 3, 5)}, &LN_EPSNAN, NULL, 0, AG_ERR_ARG, "eps nan"},
    {"eps inf", 1, {SHP(2, 3, 5)}, &LN_EPSINF, NULL, 0, AG_ERR_ARG, "eps inf"},
};
static const op_bad RMS_BAD[] = {
    {"n_axes 0", 1, {SHP(2, 3, 5)}, &LN_N0, NULL, 0, AG_ERR_SHAPE, "n_axes 0 is out of range for 3x5 (1..2)"},
    {"n_axes 3 of 2-D", 2, {SHP(2, 3, 5), SHP(1, 5)}, &LN_N3, NULL, 0, AG_ERR_SHAPE, "n_axes 3"},
    {"gamma size", 2, {SHP(2, 3, 5), SHP(1, 3)}, &LN1, NULL, 0, AG_ERR_SHAPE,
     "gamma is 3 but x is 3x5, normalised over 5"},
    {"gamma for n_axes 2", 2, {SHP(3, 2, 3, 4), SHP(1, 4)}, &LN2, NULL, 0, AG_ERR_SHAPE, "normalised over 3x4"},
    {"eps 0", 1, {SHP(2, 3, 5)}, &LN_EPS0, NULL, 0, AG_ERR_ARG, "eps 0 must be positive"},
    {"eps NaN", 1, {SHP(2, 3, 5)}, &LN_EPSNAN, NULL, 0, AG_ERR_ARG, "eps nan"},
};

/* ---------------------------------------------------------------- batch norm */

typedef struct bn_args {
    ag_real momentum, eps;
    int eval; /* record in evaluation mode */
} bn_args;
static const bn_args BN_TRAIN = {(ag_real)0.1, EPS, 0}, BN_EVAL = {(ag_real)0.1, EPS, 1},
                     BN_MOM1 = {1, (ag_real)1e-3, 0};

/* inputs by count: x, gamma, beta, running_mean, running_var (4: running_var left NULL) */
static ag_tensor *b_batch_norm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const bn_args *a = CALL(c)->param;
    const int n = CALL(c)->n_in;
    ag_tensor *r[2] = {n > 3 ? in[3] : NULL, n > 4 ? in[4] : NULL};
    for (int i = 0; i < 2 && t && !a->eval; i++) /* training updates them: copies keep the store as it was */
        if (r[i] && (r[i]->flags & AG_PARAM)) r[i] = ag_tensor_from(t, r[i]->ndim, r[i]->shape, r[i]->value);
    const int was = ag_tape_set_training(t, !a->eval);
    ag_tensor *y = ag_batch_norm(t, in[0], n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, r[0], r[1], a->momentum, a->eps);
    ag_tape_set_training(t, was);
    return y;
}
/* x as N x C x L; per channel mean_axis over L then N, kept as C x 1 to broadcast */
static ag_tensor *tw_batch_norm(ag_tape *t, ag_tensor *const *in, const void *c) {
    const bn_args *a = CALL(c)->param;
    const int n = CALL(c)->n_in;
    ag_tensor *x = in[0];
    const size_t N = x->shape[0], C = x->shape[1], L = x->size / (N * C), col[2] = {C, 1};
    ag_tensor *x3 = ag_reshape(t, x, 3, (size_t[]){N, C, L}), *mu, *var;
    if (a->eval && n >= 5) {
        mu = ag_reshape(t, in[3], 2, col);
        var = ag_reshape(t, in[4], 2, col);
    } else {
        mu = ag_reshape(t, ag_mean_axis(t, ag_mean_axis(t, x3, 2), 0), 2, col);
        var = ag_reshape(t, ag_mean_axis(t, ag_mean_axis(t, ag_square(t, ag_sub(t, x3, mu)), 2), 0), 2, col);
    }
    ag_tensor *y = ag_div(t, ag_sub(t, x3, mu), ag_sqrt(t, ag_add_scalar(t, var, a->eps)));
    if (n > 1) y = ag_mul(t, y, ag_reshape(t, in[1], 2, col));
    if (n > 2) y = ag_add(t, y, ag_reshape(t, in[2], 2, col));
    return ag_reshape(t, y, x->ndim, x->shape);
}

#define C3 SHP(1, 3)
static const op_case BN_CASES[] = {
    {"8x3 train gamma beta running", 5, {SHP(2, 8, 3), C3, C3, C3, C3}, &BN_TRAIN, NULL},
    {"4x3 train", 1, {SHP(2, 4, 3)}, &BN_TRAIN, NULL},
    {"2x3 train gamma", 2, {SHP(2, 2, 3), C3}, &BN_TRAIN, NULL},
    {"2x3x4 train gamma beta running", 5, {SHP(3, 2, 3, 4), C3, C3, C3, C3}, &BN_TRAIN, NULL},
    {"2x3x2x2 train gamma beta", 3, {SHP(4, 2, 3, 2, 2), C3, C3}, &BN_TRAIN, NULL},
    {"1x3x5 train momentum 1", 5, {SHP(3, 1, 3, 5), C3, C3, C3, C3}, &BN_MOM1, NULL},
    {"4x3 eval gamma beta running", 5, {SHP(2, 4, 3), C3, C3, C3, C3}, &BN_EVAL, NULL},
    {"2x3x2x2 eval gamma beta running", 5, {SHP(4, 2, 3, 2, 2), C3, C3, C3, C3}, &BN_EVAL, NULL},
    {"2x3x4 eval no running (batch)", 3, {SHP(3, 2, 3, 4), C3, C3}, &BN_EVAL, NULL},
};
#define CC SHP(1, OP_C)
static const op_case BN_LAYOUTS[] = {
    {"NxCxL train gamma beta running", 5, {SHP(3, OP_R, OP_C, OP_K), CC, CC, CC, CC}, &BN_TRAIN, NULL},
    {"RxC train gamma beta running", 5, {SHP(2, OP_R, OP_C), CC, CC, CC, CC}, &BN_TRAIN, NULL},
    {"NxCxL eval gamma beta running", 5, {SHP(3, OP_R, OP_C, OP_K), CC, CC, CC, CC}, &BN_EVAL, NULL},
    {"RxC eval gamma beta running", 5, {SHP(2, OP_R, OP_C), CC, CC, CC, CC}, &BN_EVAL, NULL},
};
static const bn_args BN_MOMBIG = {(ag_real)1.5, EPS, 0}, BN_MOMNEG = {(ag_real)-0.1, EPS, 0},
                     BN_MOMNAN = {(ag_real)NAN, EPS, 0}, BN_EPS0 = {(ag_real)0.1, 0, 0};
static const op_bad BN_BAD[] = {
    {"1-D x", 1, {SHP(1, 5)}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE, "x is 5, must be N x C, N x C x L or N x C x H x W"},
    {"scalar x", 1, {S0}, &BN_EVAL, NULL, 0, AG_ERR_SHAPE, "x is scalar"},
    {"running_mean size", 5, {SHP(2, 4, 3), C3, C3, SHP(1, 4), C3}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE,
     "running_mean is 4 but x is 4x3 with 3 channels"},
    {"running_var size", 5, {SHP(3, 4, 3, 2), C3, C3, C3, SHP(1, 2)}, &BN_EVAL, NULL, 0, AG_ERR_SHAPE,
     "running_var is 2 but x is 4x3x2 with 3 channels"},
    {"running_var 2-D", 5, {SHP(2, 4, 3), C3, C3, C3, SHP(2, 1, 3)}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE,
     "running_var is 1x3"},
    {"gamma size", 3, {SHP(2, 4, 3), SHP(1, 4), C3}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE, "gamma is 4 but x is 4x3"},
    {"beta size", 3, {SHP(2, 4, 3), C3, SHP(1, 12)}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE, "beta is 12"},
    {"running_var NULL", 4, {SHP(2, 4, 3), C3, C3, C3}, &BN_TRAIN, NULL, 0, AG_ERR_ARG,
     "running_var is NULL but running_mean is not"},
    {"momentum 1.5", 1, {SHP(2, 4, 3)}, &BN_MOMBIG, NULL, 0, AG_ERR_ARG, "momentum 1.5 is outside [0, 1]"},
    {"momentum -0.1", 1, {SHP(2, 4, 3)}, &BN_MOMNEG, NULL, 0, AG_ERR_ARG, "momentum -0.1"},
    {"momentum NaN", 1, {SHP(2, 4, 3)}, &BN_MOMNAN, NULL, 0, AG_ERR_ARG, "momentum nan"},
    {"eps 0", 1, {SHP(2, 4, 3)}, &BN_EPS0, NULL, 0, AG_ERR_ARG, "eps 0 must be positive and finite"},
    {"one value per channel", 3, {SHP(2, 1, 3), C3, C3}, &BN_TRAIN, NULL, 0, AG_ERR_SHAPE,
     "training needs more than one value per channel (x is 1x3)"},
};

/* ---------------------------------------------------------------- dropout */

#define DROP_SEED 0x5eedull

typedef struct do_args {
    ag_real p;
    uint64_t stream;
    int eval;
} do_args;
static const do_args DO1 = {(ag_real)0.1, 1, 0}, DO3 = {(ag_real)0.3, 7, 0}, DO5 = {(ag_real)0.5, 2, 0},
                     DO0 = {0, 3, 0}, DO5_EVAL = {(ag_real)0.5, 2, 1};

static ag_tensor *b_dropout(ag_tape *t, ag_tensor *const *in, const void *c) {
    const do_args *a = CALL(c)->param;
    ag_tape_set_seed(t, DROP_SEED); /* step 0 of the seed: the same mask in every evaluation */
    const int was = ag_tape_set_training(t, !a->eval);
    ag_tensor *y = ag_dropout(t, in[0], a->p, a->stream);
    ag_tape_set_training(t, was);
    return y;
}
/* x .* m / (1 - p), the mask rebuilt from the documented key */
static ag_tensor *tw_dropout(ag_tape *t, ag_tensor *const *in, const void *c) {
    const do_args *a = CALL(c)->param;
    ag_tensor *m = ag_tensor_new(t, in[0]->ndim, in[0]->shape);
    const double thr = a->eval ? 0 : (double)a->p;
    for (size_t i = 0; m && i < m->size; i++) {
        const double u = (double)(ag_rng_counter(DROP_SEED, 0, a->stream, i) >> 11) * 0x1.0p-53;
        m->value[i] = u < thr ? 0 : (ag_real)(1.0 / (1.0 - thr));
    }
    return ag_mul(t, in[0], m);
}
static const op_case DO_CASES[] = {
    {"3x4 p=0.1", 1, {SHP(2, 3, 4)}, &DO1, NULL},   {"scalar p=0.5", 1, {S0}, &DO5, NULL},
    {"7 p=0.5", 1, {SHP(1, 7)}, &DO5, NULL},        {"2x3x4 p=0.3", 1, {SHP(3, 2, 3, 4)}, &DO3, NULL},
    {"2x3x1x2 p=0", 1, {SHP(4, 2, 3, 1, 2)}, &DO0, NULL}, {"3x4 eval p=0.5", 1, {SHP(2, 3, 4)}, &DO5_EVAL, NULL},
};
static const op_case DO_LAYOUTS[] = {
    {"RxC p=0.1", 1, {SHP(2, OP_R, OP_C)}, &DO1, NULL},
    {"RxC p=0.5", 1, {SHP(2, OP_R, OP_C)}, &DO5, NULL},
};
static const do_args DO_P1 = {1, 1, 0}, DO_PNEG = {(ag_real)-0.1, 1, 0}, DO_PNAN = {(ag_real)NAN, 1, 0},
                     DO_P1_EVAL = {(ag_real)1.5, 1, 1};
static const op_bad DO_BAD[] = {
    {"p 1", 1, {SHP(2, 3, 4)}, &DO_P1, NULL, 0, AG_ERR_ARG, "p 1 is outside [0, 1)"},
    {"p -0.1", 1, {SHP(2, 3, 4)}, &DO_PNEG, NULL, 0, AG_ERR_ARG, "p -0.1 is outside [0, 1)"},
    {"p NaN", 1, {SHP(1, 4)}, &DO_PNAN, NULL, 0, AG_ERR_ARG, "p nan"},
    {"p 1.5 in eval mode", 1, {SHP(1, 4)}, &DO_P1_EVAL, NULL, 0, AG_ERR_ARG, "p 1.5"},
};

/* ---------------------------------------------------------------- the table */

const op_record op_records_norm[] = {
    {.name = "layer_norm", .build = b_layer_norm, .composed = tw_layer_norm, .cases = CASES(LN_CASES),
     .layouts = CASES(LN_LAYOUTS), .domain = {ANY, ANY, ANY}, .optional_in = 3u << 1, .bad = CASES(LN_BAD),
     .clones = 1, .speed_r = 32, .speed_c = 512},
    {.name = "rms_norm", .build = b_rms_norm, .composed = tw_rms_norm, .cases = CASES(RMS_CASES),
     .layouts = CASES(RMS_LAYOUTS), .domain = {ANY, ANY}, .optional_in = 1u << 1, .bad = CASES(RMS_BAD),
     .clones = 1, .speed_r = 32, .speed_c = 512},
    {.name = "batch_norm", .build = b_batch_norm, .composed = tw_batch_norm, .cases = CASES(BN_CASES),
     .layouts = CASES(BN_LAYOUTS), .domain = {ANY, ANY, ANY, ANY, POS}, .optional_in = 15u << 1,
     .bad = CASES(BN_BAD), .clones = 1, .speed_r = 32, .speed_c = 64, .speed_k = 256},
    {.name = "dropout", .build = b_dropout, .composed = tw_dropout, .cases = CASES(DO_CASES),
     .layouts = CASES(DO_LAYOUTS), .domain = {ANY}, .bad = CASES(DO_BAD), .clones = 1, .speed_r = 32,
     .speed_c = 2048},
};
const size_t op_records_norm_n = LEN(op_records_norm);

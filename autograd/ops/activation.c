/*
 * ops/activation.c - the activation table: each ag_act's f and f', read by its element-wise op
 * (ag_sigmoid, ag_tanh, ag_relu, ag_activate), by the fused dense layer (ag_linear_act,
 * ops/matmul.c) and, through those, by the dense layer. The f of backprop-derivation.md:
 * a^(l+1) = f(z^(l+1)); f' is written from the saved output a = f(z) (sigmoid f(1 - f), tanh
 * 1 - f^2), so backward needs no z.
 *
 * A new activation is an ag_act value in ag.h and one row of ACTIVATIONS below: its scalar f, the
 * array form of f (its generated loop NAME_loop, or a hand-vectorised kernel), and da .* f'(a).
 * From the row come the op's forward and backward, the fused op's dz = da .* f'(a) and the entry
 * of ag__acts. The backward loops are AG__CLONES (AVX-512 / AVX2 / SSE2, the same bits); the
 * forward loops: sigmoid and tanh are vectorised kernels (kernels/eltwise.c), relu's clone measured
 * 18% slower on 128 x 1024 (bench_eltwise). Read next: ops/matmul.c.
 */
#include "../internal.h"

/* X(NAME, f(x), array form of f, da .* f'(a) with g = da) */
#define ACTIVATIONS(X)                                                                             \
    X(identity, x, identity_loop, g)                                                               \
    X(sigmoid, ag__sigmoid1(x), ag__sigmoid_array, g * a * (1 - a)) /* stable: kernels/eltwise.h */ \
    X(tanh, ag__tanh1(x), ag__tanh_array, g * (1 - a * a))           /* kernels/eltwise.h */        \
    X(relu, !(x <= 0) ? x : 0, relu_loop, a > 0 ? g : 0)             /* NaN stays NaN; f'(0) = 0 */

static ag_status same_shape(ag_node *n) {
    ag_node_grad_out_declare(n); /* NAME_backward takes its gradient from ag_node_grad_out */
    return ag__node_shape_like(n, n->in[0]);
}

/* NAME_loop: a = f(z) over n elements, a == z allowed (the fused op works in place).
 * NAME_forward, NAME_backward: the element-wise op (dx += da .* f'(a)).
 * NAME_df_set: dz = da .* f'(a), the fused op's, a row at a time. */
#define ACT_FUNCTIONS(NAME, F, ARRAY, DF)                                                          \
    __attribute__((unused)) static void NAME##_loop(const ag_real *z, ag_real *out, size_t n) {   \
        for (size_t i = 0; i < n; i++) {                                                           \
            const ag_real x = z[i];                                                                \
            out[i] = (F);                                                                          \
        }                                                                                          \
    }                                                                                              \
    static ag_status NAME##_forward(ag_node *n) {                                                  \
        ARRAY(n->in[0]->value, n->out.value, n->out.size);                                         \
        return AG_OK;                                                                              \
    }                                                                                              \
    AG__CLONES static ag_status NAME##_backward(ag_node *n) {                                      \
        int assign;                                                                                \
        ag_real *restrict dx = ag_node_grad_out(n, 0, &assign);                                    \
        if (!dx) return AG_OK;                                                                     \
        const ag_real *restrict o = n->out.value, *restrict dout = n->out.grad;                   \
        if (assign) /* 0 + term: the former zero-then-add's bits */                                \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                      \
                const ag_real a = o[i], g = dout[i];                                               \
                (void)a;                                                                           \
                dx[i] = (ag_real)0 + (DF);                                                         \
            }                                                                                      \
        else                                                                                       \
            for (size_t i = 0, N = n->out.size; i < N; i++) {                                      \
                const ag_real a = o[i], g = dout[i];                                               \
                (void)a; /* the identity's f' ignores it */                                        \
                dx[i] += (DF);                                                                     \
            }                                                                                      \
        return AG_OK;                                                                              \
    }                                                                                              \
    AG__CLONES static void NAME##_df_set(const ag_real *restrict o, const ag_real *restrict da,   \
                                         ag_real *restrict dz, size_t n) {                         \
        for (size_t i = 0; i < n; i++) {                                                           \
            const ag_real a = o[i], g = da[i];                                                     \
            (void)a;                                                                               \
            dz[i] = (DF);                                                                          \
        }                                                                                          \
    }
ACTIVATIONS(ACT_FUNCTIONS)

#define ACT_ROW(NAME, F, ARRAY, DF) \
    {#NAME, {#NAME, 1, 0, same_shape, NAME##_forward, NAME##_backward}, ARRAY, NAME##_df_set},
const ag__act_row ag__acts[AG_ACT_COUNT] = {ACTIVATIONS(ACT_ROW)};

/* The table's rows follow ag_act's values. */
#define ACT_INDEX(NAME, F, ARRAY, DF) ACT_INDEX_##NAME,
enum { ACTIVATIONS(ACT_INDEX) ACT_ROWS };
_Static_assert((int)ACT_ROWS == (int)AG_ACT_COUNT, "one ACTIVATIONS row per ag_act");
_Static_assert((int)ACT_INDEX_sigmoid == (int)AG_ACT_SIGMOID && (int)ACT_INDEX_tanh == (int)AG_ACT_TANH &&
                   (int)ACT_INDEX_relu == (int)AG_ACT_RELU,
               "ACTIVATIONS rows in ag_act's order");

/* ---------------------------------------------------------------- the public entry points */

static int act_valid(ag_act act) { return (int)act >= 0 && act < AG_ACT_COUNT; }

const char *ag_act_name(ag_act act) { return act_valid(act) ? ag__acts[act].name : "?"; }

ag_status ag_act_parse(const char *name, ag_act *out) {
    if (!name || !out) return AG_ERR_ARG;
    if (strcmp(name, "linear") == 0 || strcmp(name, "none") == 0) { /* other names of the identity */
        *out = AG_ACT_IDENTITY;
        return AG_OK;
    }
    for (int i = 0; i < AG_ACT_COUNT; i++)
        if (strcmp(name, ag__acts[i].name) == 0) {
            *out = (ag_act)i;
            return AG_OK;
        }
    return AG_ERR_ARG;
}

ag_tensor *ag_activate(ag_tape *t, ag_act act, ag_tensor *z) {
    if (!act_valid(act)) {
        if (t) ag__op_fail(t, AG_ERR_ARG, "activate: unknown activation %d", (int)act);
        return NULL;
    }
    if (act == AG_ACT_IDENTITY) return z; /* a = z: nothing to record */
    return AG__CALL(t, &ag__acts[act].op, NULL, z);
}

ag_tensor *ag_sigmoid(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &ag__acts[AG_ACT_SIGMOID].op, NULL, x); }
ag_tensor *ag_tanh(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &ag__acts[AG_ACT_TANH].op, NULL, x); }
ag_tensor *ag_relu(ag_tape *t, ag_tensor *x) { return AG__CALL(t, &ag__acts[AG_ACT_RELU].op, NULL, x); }

/*
 * mlp.h - a sequential multilayer perceptron of dense layers, built from a spec string such as
 * "784-256-10" (s_1 - s_2 - ... - s_{n_l}: input size, hidden sizes, output size).
 *
 * OVERVIEW
 *
 * Layer i (0-based, i = 0 .. n_layers-1) is the derivation's W^(i+1), b^(i+1): it maps
 * a^(i+1) (K x sizes[i]) to z^(i+2) = a^(i+1) W^T + b and a^(i+2) = f(z^(i+2)). Parameters are
 * named "<prefix><i+1>.W" and "<prefix><i+1>.b" (prefix "fc" by default: fc1.W, fc1.b, ...).
 * The ag_mlp (sizes, layers) is the caller's, freed with ag_mlp_free; its parameters belong to
 * the store. Forward records on a tape only: one model serves any number of tapes and batch sizes.
 *
 * EXAMPLE
 *
 *     ag_mlp *m;
 *     char err[AG_ERRMSG_SIZE];
 *     if (ag_mlp_new(&m, ps, &(ag_mlp_config){.spec = "2-4-1", .hidden = AG_ACT_SIGMOID,
 *                    .output = AG_ACT_SIGMOID, .init = AG_INIT_GLOROT_NORMAL, .seed = 1},
 *                    err, sizeof err) != AG_OK) { puts(err); ... }
 *     ag_tensor *h = ag_mlp_forward(t, m, x, NULL, NULL);
 *     ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, y, lambda);
 *     ...
 *     ag_mlp_free(m);   // the parameters stay in ps
 */
#ifndef AG_MLP_H
#define AG_MLP_H

#include <tapegrad/dense.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AG_MLP_MAX_LAYERS 256 /* most sizes a spec may list */

typedef struct ag_mlp_config {
    const char *spec;    /* "784-256-10": at least two positive sizes separated by '-' */
    ag_act hidden;       /* activation of every hidden layer (when acts is NULL) */
    ag_act output;       /* activation of the output layer (when acts is NULL) */
    const ag_act *acts;  /* optional: one activation per dense layer (n_acts of them) */
    size_t n_acts;
    ag_init init;        /* weight initialiser; biases start at zero */
    uint64_t seed;       /* seeds an ag_rng for the weights, layer by layer in order */
    const char *prefix;  /* parameter name prefix; NULL = "fc" */
} ag_mlp_config;

typedef struct ag_mlp {
    size_t n_layers;     /* dense layers: n_l - 1 */
    size_t *sizes;       /* n_layers + 1 entries: s_1 .. s_{n_l} */
    ag_dense *layers;    /* n_layers entries */
    ag_tensor **weights; /* n_layers entries: each layer's W, for the L2 term */
} ag_mlp;

/* Parse a spec into sizes[0..*n) (at most max entries). On error returns AG_ERR_ARG and writes
 * a message such as  mlp: spec "784--10" has an empty layer size at position 4  into err
 * (errsize bytes; may be NULL). Positions count characters from 0. Also AG_ERR_ARG: NULL spec,
 * sizes or n, fewer than two sizes, more than max. *n is 0 on error. */
ag_status ag_mlp_parse_spec(const char *spec, size_t *sizes, size_t max, size_t *n, char *err, size_t errsize);

/* Build the MLP: parse the spec, register every layer's W and b in ps (which owns them) and
 * initialise them; *out is the caller's, freed with ag_mlp_free. On error *out is NULL, the
 * status comes back and err holds the message: AG_ERR_ARG (a NULL argument, the spec, a wrong
 * number of activations, an unknown activation or initialiser, a prefix over 100 bytes, a
 * parameter name already in ps), AG_ERR_SHAPE (a layer whose element count overflows size_t),
 * AG_ERR_NOMEM (also for a layer too large to allocate). All or
 * nothing: on error ps holds exactly the tensors, numel, names and values it had before the call
 * (layers registered before the failing one are removed again; the flat buffers may have moved),
 * and only ag_params_status/errmsg tell of a failure the store saw. */
ag_status ag_mlp_new(ag_mlp **out, ag_params *ps, const ag_mlp_config *cfg, char *err, size_t errsize);
/* Frees the MLP object (NULL: nothing); its parameters belong to the store and stay there. */
void ag_mlp_free(ag_mlp *m);

/* Forward over a batch x (K x sizes[0]); returns the output a^(n_l) (K x sizes[n_layers]) or
 * NULL (see ag_tape_errmsg). If z is not NULL, z[i] receives layer i's pre-activation z^(i+2);
 * if a is not NULL, a[i] receives its activation a^(i+2) (n_layers entries each). With both NULL
 * a layer with an activation is one fused linear_act node (no z buffer). All are owned by t.
 * AG_ERR_ARG for a NULL m, AG_ERR_SHAPE unless x is 2-D with sizes[0] columns, then the errors
 * of ag_dense_forward. */
ag_tensor *ag_mlp_forward(ag_tape *t, const ag_mlp *m, ag_tensor *x, ag_tensor **z, ag_tensor **a);

/* The seed's cost: J = ag_squared_error(h, y) + ag_l2(lambda, the MLP's weights); the biases
 * are never regularised. Owned by t; NULL on error: AG_ERR_ARG for a NULL m, else as
 * ag_cost_squared_error_l2. */
ag_tensor *ag_mlp_cost_squared_error(ag_tape *t, const ag_mlp *m, ag_tensor *h, ag_tensor *y, ag_real lambda);
/* The classification alternative: J = ag_cross_entropy(logits, labels) + the same L2 term. Use
 * AG_ACT_IDENTITY as the output activation so that h is the logits. Errors as above, with
 * ag_cost_cross_entropy_l2. */
ag_tensor *ag_mlp_cost_cross_entropy(ag_tape *t, const ag_mlp *m, ag_tensor *logits, const int32_t *labels,
                                     ag_real lambda);

#ifdef __cplusplus
}
#endif
#endif /* AG_MLP_H */

/*
 * dense.h - a fully connected layer, its initialisers and activations, and the seed's costs.
 *
 * OVERVIEW
 *
 * A dense layer holds W (out x in, the derivation's W^(l), s_{l+1} x s_l; flagged AG_DECAY) and
 * b (out; never decayed) in an ag_params store, which owns them: an ag_dense only points at them
 * and needs no freeing. Its forward records built-in ops on a tape:
 *     z = ag_linear(x, W, b)     row k: z^(l+1) = W^(l) a^(l) + b^(l)
 *     a = f(z)                   the activation op chosen by ag_act
 * or, when the caller does not ask for z, the two fused into one linear_act node (no z buffer);
 * nothing else: a layer has no backward of its own, the tape differentiates it. x is K x in
 * (K examples, one per row), z and a are K x out. Layers mix freely with raw tape ops.
 *
 * EXAMPLE
 *
 *     ag_dense d;
 *     ag_rng rng;
 *     ag_rng_seed(&rng, 42);
 *     ag_dense_init(&d, ps, "fc1", 784, 256, AG_ACT_RELU);
 *     ag_dense_init_weights(&d, AG_INIT_HE_NORMAL, &rng);
 *     ag_tensor *z, *a = ag_dense_forward(t, &d, x, &z);   // after backward, z->grad = dJ/dz
 *
 * Read next: layers/include/tapegrad/mlp.h (a stack of dense layers from a spec such as "784-256-10").
 */
#ifndef AG_DENSE_H
#define AG_DENSE_H

#include <stdint.h>

#include <tapegrad/ag.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The activations (ag_act, ag_act_name, ag_act_parse, ag_activate) are in tapegrad/ag.h. */

typedef enum ag_init {
    AG_INIT_SMALL_GAUSS = 0, /* W ~ N(0, 0.01^2): the derivation's "small random values" */
    AG_INIT_GLOROT_NORMAL,   /* W ~ N(0, 2/(in+out))            (Glorot & Bengio 2010) */
    AG_INIT_GLOROT_UNIFORM,  /* W ~ U(-r, r), r = sqrt(6/(in+out)): same variance 2/(in+out) */
    AG_INIT_HE_NORMAL        /* W ~ N(0, 2/in)                   (He et al. 2015, for ReLU) */
} ag_init;

typedef struct ag_dense {
    ag_tensor *W; /* out x in, AG_DECAY; owned by the params store */
    ag_tensor *b; /* out, not decayed; owned by the params store */
    size_t in, out;
    ag_act act;
} ag_dense;

/* Register "<name>.W" (out x in, AG_DECAY) and "<name>.b" (out) in ps, both zero; ps owns them.
 * AG_ERR_ARG with no message for a NULL argument; otherwise the status with its message in
 * ag_params_errmsg(ps): AG_ERR_ARG for an unknown activation ("dense fc1: unknown activation 9"),
 * or ag_params_add's (a name already used or too long, a zero size, no memory). All or nothing:
 * on failure ps holds exactly the tensors, numel, names and values it had before the call (when
 * "<name>.b" fails, "<name>.W" is removed again; the flat buffers may have moved) and only
 * ag_params_status/errmsg tell of the failure; d is not initialised (W and b NULL once the
 * arguments were valid). */
ag_status ag_dense_init(ag_dense *d, ag_params *ps, const char *name, size_t in, size_t out, ag_act act);

/* Fill W from rng by the given rule (row-major order, so a seed always gives the same weights)
 * and set b to zero. AG_ERR_ARG, nothing changed, on NULL, a layer not initialised or an unknown
 * rule. */
ag_status ag_dense_init_weights(ag_dense *d, ag_init init, ag_rng *rng);
/* The standard deviation of the rule for a layer of that shape (the uniform's for Glorot uniform);
 * 0 for an unknown rule. */
double ag_init_std(ag_init init, size_t in, size_t out);

/* Record the layer on t and return a, owned by t (NULL on error, see ag_tape_errmsg). z_out (may
 * be NULL) receives z, the pre-activation; without it a layer whose activation is not the
 * identity records one fused linear_act node and no z. x must be 2-D, K x in (else AG_ERR_SHAPE);
 * a NULL or uninitialised d or a NULL x is AG_ERR_ARG (a NULL x while t holds an error keeps
 * that error); then the ops' errors. */
ag_tensor *ag_dense_forward(ag_tape *t, const ag_dense *d, ag_tensor *x, ag_tensor **z_out);

/* ---------------------------------------------------------------- costs
 * The seed's cost, with K the number of rows of h:
 *     J = (1/K) sum_k 1/2 ||h_k - y_k||^2 + lambda/2 sum_W sum W^2
 * = ag_squared_error(h, y) + ag_l2(lambda, weights). Only the tensors passed as weights are
 * regularised; pass weights, never biases. lambda == 0 records no L2 term. n may exceed
 * AG_MAX_IN (the L2 term is then a sum of several ag_l2 nodes). Results are owned by t; NULL on
 * error: the ops' errors, or AG_ERR_ARG for NULL weights with n > 0 and lambda != 0. */
ag_tensor *ag_cost_squared_error_l2(ag_tape *t, ag_tensor *h, ag_tensor *y, ag_real lambda,
                                    ag_tensor *const *weights, size_t n);
/* Softmax cross-entropy (ag_cross_entropy, the mean over K rows of logits) + the same L2 term. */
ag_tensor *ag_cost_cross_entropy_l2(ag_tape *t, ag_tensor *logits, const int32_t *labels, ag_real lambda,
                                    ag_tensor *const *weights, size_t n);
/* lambda/2 sum W^2 over every AG_DECAY tensor of ps (the weights; biases are never flagged).
 * AG_ERR_ARG if ps is NULL or holds no AG_DECAY tensor. */
ag_tensor *ag_l2_decay(ag_tape *t, ag_real lambda, const ag_params *ps);

#ifdef __cplusplus
}
#endif
#endif /* AG_DENSE_H */

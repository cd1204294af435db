/*
 * backprop_ref.h - the hand-derived backpropagation of backprop-derivation.md (the project's
 * math notes), written out literally for an MLP of dense layers, with no tape at all. Users and
 * tests compare the tape with it layer by layer (tests/layers/test_delta.c, examples/compare_backprop.c).
 *
 * OVERVIEW
 *
 * Everything is double and 1-based like the math: W[l] is W^(l) (s_{l+1} x s_l, row-major,
 * W[l][i*s_l + j] = W^(l)_ij), b[l] is b^(l) (s_{l+1}), for l = 1..n_l-1; z[l], a[l] and
 * delta[l] are K x s_l (row k is example k) for l = 1..n_l (z[1] and delta[1] are unused).
 * Index 0 of every array is unused. ag_ref_new allocates the struct and every array, the caller
 * writes W and b in place, ag_ref_free releases it all.
 *
 * Conventions (the same as ag_squared_error + ag_l2, so the tape can be compared exactly):
 *     J(W,b) = (1/K) sum_k 1/2 ||h(x^(k)) - y^(k)||^2 + lambda/2 sum_l sum_ij (W^(l)_ij)^2
 * with the weights only in the L2 term, never the biases. One activation f (sigmoid or tanh)
 * for every layer, the output layer included.
 *
 * EXAMPLE
 *
 *     ag_ref_mlp *r;
 *     ag_ref_new(&r, 3, (size_t[]){2, 4, 1}, AG_REF_SIGMOID, K);
 *     ... fill r->W[1], r->b[1], r->W[2], r->b[2] ...
 *     ag_ref_backprop(r, x, y, K, lambda);   // r->delta[l], r->DeltaW[l], r->Deltab[l], r->J
 *     ag_ref_update(r, K, alpha, lambda);    // W := W - alpha[(1/K) DeltaW + lambda W], ...
 *     ag_ref_free(r);
 */
#ifndef AG_BACKPROP_REF_H
#define AG_BACKPROP_REF_H

#include <stddef.h>

#include <tapegrad/ag.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ag_ref_act {
    AG_REF_SIGMOID, /* f(z) = 1/(1+e^-z),  f'(z) = f(z)(1 - f(z)) */
    AG_REF_TANH     /* f(z) = tanh z,      f'(z) = 1 - f(z)^2 */
} ag_ref_act;

typedef struct ag_ref_mlp {
    int n_l;            /* number of layers, the input layer being layer 1 (n_l >= 2) */
    size_t *s;          /* s[l] = s_l, units in layer l, l = 1..n_l */
    ag_ref_act f;       /* activation of layers 2..n_l */
    size_t K_max;       /* batch capacity given to ag_ref_new */
    double **W;         /* W[l]: W^(l), s_{l+1} x s_l; the caller fills it */
    double **b;         /* b[l]: b^(l), s_{l+1}; the caller fills it */
    double **DeltaW;    /* DeltaW[l] = sum_k delta^(l+1) a^(l)^T, s_{l+1} x s_l (after backprop) */
    double **Deltab;    /* Deltab[l] = sum_k delta^(l+1), s_{l+1} */
    double **z;         /* z[l]: K x s_l pre-activations, l = 2..n_l */
    double **a;         /* a[l]: K x s_l activations, l = 1..n_l (a[1] = x) */
    double **delta;     /* delta[l]: K x s_l residuals dJ(W,b;x^(k),y^(k))/dz^(l), l = 2..n_l */
    double J;           /* the batch cost of the last ag_ref_backprop / ag_ref_forward */
} ag_ref_mlp;

/* Allocate a network with n_l layers of sizes[0..n_l) = s_1..s_{n_l} units and room for K_max
 * examples. Weights and biases start at zero. AG_ERR_ARG on n_l < 2, a zero size, K_max 0, an
 * unknown f or NULL pointers; AG_ERR_NOMEM. *out is NULL on failure. Free with ag_ref_free. */
ag_status ag_ref_new(ag_ref_mlp **out, int n_l, const size_t *sizes, ag_ref_act f, size_t K_max);
void ag_ref_free(ag_ref_mlp *r); /* r and every array; NULL: nothing */

/* Forward pass for K examples (x: K x s_1, y: K x s_{n_l}, row-major), filling z, a and r->J.
 * Returns J. K must be 1..K_max and no pointer NULL (else NaN is returned, nothing written). */
double ag_ref_forward(ag_ref_mlp *r, const double *x, const double *y, size_t K, double lambda);

/* Forward pass, the delta recursion and the accumulation of DeltaW, Deltab over the K examples:
 *     delta^(n_l) = -(y - a^(n_l)) .* f'(z^(n_l))
 *     delta^(l)   = (W^(l)^T delta^(l+1)) .* f'(z^(l)),     l = n_l-1 .. 2
 *     DeltaW^(l) += delta^(l+1) a^(l)^T,  Deltab^(l) += delta^(l+1)
 * The deltas are per example (the derivative of the per-example cost, no 1/K). AG_ERR_ARG, with
 * nothing written, for a NULL pointer or K outside 1..K_max; never fails otherwise. */
ag_status ag_ref_backprop(ag_ref_mlp *r, const double *x, const double *y, size_t K, double lambda);

/* The batch gradient of J for layer l (1..n_l-1) after ag_ref_backprop:
 *     dW = (1/K) DeltaW^(l) + lambda W^(l),   db = (1/K) Deltab^(l)
 * dW has s_{l+1} x s_l entries, db has s_{l+1}; either may be NULL. AG_ERR_ARG for a NULL r,
 * l out of range or K == 0. */
ag_status ag_ref_gradient(const ag_ref_mlp *r, int l, size_t K, double lambda, double *dW, double *db);

/* The gradient-descent update after ag_ref_backprop, for every layer:
 *     W^(l) := W^(l) - alpha [ (1/K) DeltaW^(l) + lambda W^(l) ]
 *     b^(l) := b^(l) - alpha [ (1/K) Deltab^(l) ]
 * AG_ERR_ARG for a NULL r or K == 0. */
ag_status ag_ref_update(ag_ref_mlp *r, size_t K, double alpha, double lambda);

#ifdef __cplusplus
}
#endif
#endif /* AG_BACKPROP_REF_H */

/*
 * backprop_ref.c - backpropagation by hand, one example at a time, exactly as the derivation
 * (backprop-derivation.md) writes it: forward pass, output residual, the delta recursion, the
 * accumulation of DeltaW and Deltab, and the gradient-descent update. No tape, no GEMM, no
 * cleverness: this file is the yardstick the tape is measured against (tests/layers/test_delta.c).
 *
 * Read next: layers/dense.c (the same network recorded on the tape).
 */
#include <tapegrad/backprop_ref.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tapegrad/ag_ext.h> /* the library's allocator, nothing of the tape */

/* f(z) and f'(z) written through f(z), as the derivation does */
static double act_f(ag_ref_act f, double z) {
    return f == AG_REF_TANH ? tanh(z) : 1.0 / (1.0 + exp(-z));
}
static double act_fprime(ag_ref_act f, double fz) {
    return f == AG_REF_TANH ? 1.0 - fz * fz /* tanh: f' = 1 - f^2 */
                            : fz * (1.0 - fz); /* sigmoid: f' = f (1 - f) */
}

void ag_ref_free(ag_ref_mlp *r) {
    if (!r) return;
    for (int l = 0; l <= r->n_l; l++) {
        if (r->W) ag_ext_free(r->W[l]);
        if (r->b) ag_ext_free(r->b[l]);
        if (r->DeltaW) ag_ext_free(r->DeltaW[l]);
        if (r->Deltab) ag_ext_free(r->Deltab[l]);
        if (r->z) ag_ext_free(r->z[l]);
        if (r->a) ag_ext_free(r->a[l]);
        if (r->delta) ag_ext_free(r->delta[l]);
    }
    ag_ext_free(r->W);
    ag_ext_free(r->b);
    ag_ext_free(r->DeltaW);
    ag_ext_free(r->Deltab);
    ag_ext_free(r->z);
    ag_ext_free(r->a);
    ag_ext_free(r->delta);
    ag_ext_free(r->s);
    ag_ext_free(r);
}

static double *alloc_doubles(size_t a, size_t b, int *ok) {
    size_t n;
    if ((b != 0 && a > SIZE_MAX / b) || (n = a * b) > SIZE_MAX / sizeof(double)) {
        *ok = 0;
        return NULL;
    }
    double *p = ag_ext_calloc(n, sizeof(double));
    if (!p) *ok = 0;
    return p;
}

ag_status ag_ref_new(ag_ref_mlp **out, int n_l, const size_t *sizes, ag_ref_act f, size_t K_max) {
    if (!out) return AG_ERR_ARG;
    *out = NULL;
    if (n_l < 2 || !sizes || K_max == 0 || (f != AG_REF_SIGMOID && f != AG_REF_TANH)) return AG_ERR_ARG;
    for (int l = 0; l < n_l; l++)
        if (sizes[l] == 0) return AG_ERR_ARG;
    ag_ref_mlp *r = ag_ext_calloc(1, sizeof *r);
    if (!r) return AG_ERR_NOMEM;
    r->n_l = n_l;
    r->f = f;
    r->K_max = K_max;
    size_t m = (size_t)n_l + 1; /* 1-based arrays */
    r->s = ag_ext_calloc(m, sizeof *r->s);
    r->W = ag_ext_calloc(m, sizeof(double *));
    r->b = ag_ext_calloc(m, sizeof(double *));
    r->DeltaW = ag_ext_calloc(m, sizeof(double *));
    r->Deltab = ag_ext_calloc(m, sizeof(double *));
    r->z = ag_ext_calloc(m, sizeof(double *));
    r->a = ag_ext_calloc(m, sizeof(double *));
    r->delta = ag_ext_calloc(m, sizeof(double *));
    if (!r->s || !r->W || !r->b || !r->DeltaW || !r->Deltab || !r->z || !r->a || !r->delta) {
        ag_ref_free(r);
        return AG_ERR_NOMEM;
    }
    for (int l = 1; l <= n_l; l++) r->s[l] = sizes[l - 1];
    int ok = 1;
    for (int l = 1; l < n_l; l++) {
        r->W[l] = alloc_doubles(r->s[l + 1], r->s[l], &ok);      /* s_{l+1} x s_l */
        r->DeltaW[l] = alloc_doubles(r->s[l + 1], r->s[l], &ok); /* s_{l+1} x s_l */
        r->b[l] = alloc_doubles(r->s[l + 1], 1, &ok);            /* s_{l+1} */
        r->Deltab[l] = alloc_doubles(r->s[l + 1], 1, &ok);       /* s_{l+1} */
    }
    for (int l = 1; l <= n_l; l++) {
        r->a[l] = alloc_doubles(K_max, r->s[l], &ok); /* K x s_l */
        if (l >= 2) {
            r->z[l] = alloc_doubles(K_max, r->s[l], &ok);     /* K x s_l */
            r->delta[l] = alloc_doubles(K_max, r->s[l], &ok); /* K x s_l */
        }
    }
    if (!ok) {
        ag_ref_free(r);
        return AG_ERR_NOMEM;
    }
    *out = r;
    return AG_OK;
}

/* lambda/2 sum_l sum_ij (W^(l)_ij)^2: the weight-decay term of J (biases excluded) */
static double l2_term(const ag_ref_mlp *r, double lambda) {
    double sum = 0;
    for (int l = 1; l < r->n_l; l++)
        for (size_t i = 0; i < r->s[l + 1] * r->s[l]; i++) sum += r->W[l][i] * r->W[l][i];
    return lambda / 2 * sum;
}

double ag_ref_forward(ag_ref_mlp *r, const double *x, const double *y, size_t K, double lambda) {
    if (!r || !x || !y || K == 0 || K > r->K_max) return NAN;
    const int n_l = r->n_l;
    const size_t *s = r->s;
    double cost = 0;
    for (size_t k = 0; k < K; k++) {
        /* a^(1) = x */
        for (size_t j = 0; j < s[1]; j++) r->a[1][k * s[1] + j] = x[k * s[1] + j];
        for (int l = 1; l < n_l; l++) {
            const double *al = r->a[l] + k * s[l];
            double *zn = r->z[l + 1] + k * s[l + 1], *an = r->a[l + 1] + k * s[l + 1];
            for (size_t i = 0; i < s[l + 1]; i++) {
                /* z^(l+1) = W^(l) a^(l) + b^(l) */
                double zi = r->b[l][i];
                for (size_t j = 0; j < s[l]; j++) zi += r->W[l][i * s[l] + j] * al[j];
                zn[i] = zi;
                an[i] = act_f(r->f, zi); /* a^(l+1) = f(z^(l+1)) */
            }
        }
        /* J(W,b; x,y) = 1/2 ||h_{W,b}(x) - y||^2 */
        const double *h = r->a[n_l] + k * s[n_l];
        double jk = 0;
        for (size_t i = 0; i < s[n_l]; i++) {
            double d = h[i] - y[k * s[n_l] + i];
            jk += d * d;
        }
        cost += 0.5 * jk;
    }
    /* J(W,b) = 1/K sum_k J(W,b; x^(k), y^(k)) + lambda/2 sum W^2 */
    r->J = cost / (double)K + l2_term(r, lambda);
    return r->J;
}

ag_status ag_ref_backprop(ag_ref_mlp *r, const double *x, const double *y, size_t K, double lambda) {
    if (!r || !x || !y || K == 0 || K > r->K_max) return AG_ERR_ARG;
    const int n_l = r->n_l;
    const size_t *s = r->s;
    ag_ref_forward(r, x, y, K, lambda);

    /* DeltaW^(l) = 0, Deltab^(l) = 0 */
    for (int l = 1; l < n_l; l++) {
        memset(r->DeltaW[l], 0, s[l + 1] * s[l] * sizeof(double));
        memset(r->Deltab[l], 0, s[l + 1] * sizeof(double));
    }
    for (size_t k = 0; k < K; k++) {
        /* delta^(n_l) = -(y - a^(n_l)) .* f'(z^(n_l)) */
        const double *h = r->a[n_l] + k * s[n_l];
        double *dn = r->delta[n_l] + k * s[n_l];
        for (size_t i = 0; i < s[n_l]; i++)
            dn[i] = -(y[k * s[n_l] + i] - h[i]) * act_fprime(r->f, h[i]);

        /* delta^(l) = (W^(l)^T delta^(l+1)) .* f'(z^(l)),  l = n_l-1, ..., 2 */
        for (int l = n_l - 1; l >= 2; l--) {
            const double *dnext = r->delta[l + 1] + k * s[l + 1];
            const double *al = r->a[l] + k * s[l];
            double *dl = r->delta[l] + k * s[l];
            for (size_t i = 0; i < s[l]; i++) {
                double sum = 0; /* sum_{j=1}^{s_{l+1}} W^(l)_ji delta^(l+1)_j */
                for (size_t j = 0; j < s[l + 1]; j++) sum += r->W[l][j * s[l] + i] * dnext[j];
                dl[i] = sum * act_fprime(r->f, al[i]);
            }
        }

        for (int l = 1; l < n_l; l++) {
            const double *dnext = r->delta[l + 1] + k * s[l + 1];
            const double *al = r->a[l] + k * s[l];
            for (size_t i = 0; i < s[l + 1]; i++) {
                /* DeltaW^(l) += delta^(l+1) (a^(l))^T   (dJ/dW^(l)_ij = delta^(l+1)_i a^(l)_j) */
                for (size_t j = 0; j < s[l]; j++) r->DeltaW[l][i * s[l] + j] += dnext[i] * al[j];
                /* Deltab^(l) += delta^(l+1)            (dJ/db^(l)_i = delta^(l+1)_i) */
                r->Deltab[l][i] += dnext[i];
            }
        }
    }
    return AG_OK;
}

ag_status ag_ref_gradient(const ag_ref_mlp *r, int l, size_t K, double lambda, double *dW, double *db) {
    if (!r || l < 1 || l >= r->n_l || K == 0) return AG_ERR_ARG;
    const size_t *s = r->s;
    /* dJ/dW^(l) = (1/K) DeltaW^(l) + lambda W^(l) */
    if (dW)
        for (size_t i = 0; i < s[l + 1] * s[l]; i++)
            dW[i] = r->DeltaW[l][i] / (double)K + lambda * r->W[l][i];
    /* dJ/db^(l) = (1/K) Deltab^(l)   (b is not decayed) */
    if (db)
        for (size_t i = 0; i < s[l + 1]; i++) db[i] = r->Deltab[l][i] / (double)K;
    return AG_OK;
}

ag_status ag_ref_update(ag_ref_mlp *r, size_t K, double alpha, double lambda) {
    if (!r || K == 0) return AG_ERR_ARG;
    const size_t *s = r->s;
    for (int l = 1; l < r->n_l; l++) {
        /* W^(l) := W^(l) - alpha [ (1/K) DeltaW^(l) + lambda W^(l) ] */
        for (size_t i = 0; i < s[l + 1] * s[l]; i++)
            r->W[l][i] -= alpha * (r->DeltaW[l][i] / (double)K + lambda * r->W[l][i]);
        /* b^(l) := b^(l) - alpha [ (1/K) Deltab^(l) ] */
        for (size_t i = 0; i < s[l + 1]; i++) r->b[l][i] -= alpha * (r->Deltab[l][i] / (double)K);
    }
    return AG_OK;
}

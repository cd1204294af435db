/*
 * dense.c - the dense layer: two recorded ops, z = x W^T + b and a = f(z). The tape does the
 * rest: the gradient it leaves on z is the derivation's delta (divided by K for a batch-mean
 * cost), and on W and b the batch gradients (1/K) DeltaW + lambda W and (1/K) Deltab
 * (tests/layers/test_delta.c checks this against layers/backprop_ref.c); its initialisers. The
 * costs built on layers are in cost.c.
 */
#include <tapegrad/dense.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/ag_ext.h>

/* ---------------------------------------------------------------- the layer */

ag_status ag_dense_init(ag_dense *d, ag_params *ps, const char *name, size_t in, size_t out, ag_act act) {
    if (!d || !ps || !name) return AG_ERR_ARG;
    if ((int)act < 0 || act >= AG_ACT_COUNT)
        return ag_ext_params_fail(ps, AG_ERR_ARG, "dense %.128s: unknown activation %d", name, (int)act);
    memset(d, 0, sizeof *d);
    char wname[160], bname[160];
    int nw = snprintf(wname, sizeof wname, "%s.W", name), nb = snprintf(bname, sizeof bname, "%s.b", name);
    size_t mark = ag_params_count(ps); /* all or nothing: a failure rolls the store back to here */
    if (nw < 0 || (size_t)nw >= sizeof wname || nb < 0 || (size_t)nb >= sizeof bname) {
        /* let the store report the over-long name with its own message */
        ag_tensor *tmp;
        if (ag_params_add(ps, name, 1, (size_t[]){1}, 0, &tmp) != AG_OK) return ag_params_status(ps);
        ag_params_truncate(ps, mark);
        return AG_ERR_ARG;
    }
    ag_tensor *W, *b;
    ag_status st = ag_params_add(ps, wname, 2, (size_t[]){out, in}, AG_DECAY, &W); /* W^(l): s_{l+1} x s_l */
    if (st != AG_OK) return st; /* the store is unchanged */
    st = ag_params_add(ps, bname, 1, (size_t[]){out}, 0, &b); /* b^(l): s_{l+1}, never decayed */
    if (st != AG_OK) {
        ag_params_truncate(ps, mark); /* W must not outlive the layer that failed */
        return st;
    }
    d->W = W;
    d->b = b;
    d->in = in;
    d->out = out;
    d->act = act;
    return AG_OK;
}

double ag_init_std(ag_init init, size_t in, size_t out) {
    switch (init) {
    case AG_INIT_SMALL_GAUSS: return 0.01;
    case AG_INIT_GLOROT_NORMAL:
    case AG_INIT_GLOROT_UNIFORM: return sqrt(2.0 / (double)(in + out));
    case AG_INIT_HE_NORMAL: return sqrt(2.0 / (double)in);
    }
    return 0;
}

ag_status ag_dense_init_weights(ag_dense *d, ag_init init, ag_rng *rng) {
    if (!d || !d->W || !d->b || !rng) return AG_ERR_ARG;
    double std = ag_init_std(init, d->in, d->out);
    switch (init) {
    case AG_INIT_SMALL_GAUSS:
    case AG_INIT_GLOROT_NORMAL:
    case AG_INIT_HE_NORMAL: ag_rng_fill_normal(rng, d->W->value, d->W->size, 0.0, std); break;
    case AG_INIT_GLOROT_UNIFORM: {
        double r = sqrt(3.0) * std; /* U(-r, r) has variance r^2/3 = 2/(in+out): r = sqrt(6/(in+out)) */
        ag_rng_fill_uniform(rng, d->W->value, d->W->size, -r, r);
        break;
    }
    default: return AG_ERR_ARG;
    }
    memset(d->b->value, 0, d->b->size * sizeof(ag_real));
    return AG_OK;
}

/* the layer's name: its weight's name without the ".W" */
static int layer_name_len(const ag_dense *d) {
    size_t n = d->W->name ? strlen(d->W->name) : 0;
    return n >= 2 ? (int)(n - 2) : 0;
}

ag_tensor *ag_dense_forward(ag_tape *t, const ag_dense *d, ag_tensor *x, ag_tensor **z_out) {
    if (z_out) *z_out = NULL;
    if (!t) return NULL;
    if (!d || !d->W) {
        ag_ext_op_fail(t, AG_ERR_ARG, "dense: layer is NULL or not initialised");
        return NULL;
    }
    if (!x) {
        if (ag_tape_status(t) == AG_OK) ag_ext_op_fail(t, AG_ERR_ARG, "dense %.*s: x is NULL", layer_name_len(d), d->W->name);
        return ag_ext_op_missing(t);
    }
    if (x->ndim != 2 || x->shape[1] != d->in) {
        char s[64];
        ag_ext_op_fail(t, AG_ERR_SHAPE, "dense %.*s: x is %s, expected K x %zu", layer_name_len(d), d->W->name,
                 ag_shape_str(x, s, sizeof s), d->in);
        return NULL;
    }
    if (!z_out && d->act != AG_ACT_IDENTITY) /* nobody asks for z: one fused node, no z buffer */
        return ag_linear_act(t, x, d->W, d->b, d->act); /* a^(l+1) = f(W^(l) a^(l) + b^(l)) */
    ag_tensor *z = ag_linear(t, x, d->W, d->b); /* z^(l+1) = W^(l) a^(l) + b^(l), one row per example */
    if (z_out) *z_out = z;
    return ag_activate(t, d->act, z); /* a^(l+1) = f(z^(l+1)) */
}

/*
 * mlp.c - a stack of dense layers from a spec string; forward records each layer's two ops.
 */
#include <tapegrad/mlp.h>

#include <stdio.h>
#include <string.h>

#include <tapegrad/ag_ext.h>

#define AG_MLP_MAX_SIZE ((size_t)1 << 30) /* largest single layer size a spec may give */

ag_status ag_mlp_parse_spec(const char *spec, size_t *sizes, size_t max, size_t *n, char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (n) *n = 0;
    if (!spec) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: spec is NULL");
    if (!sizes || !n) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: sizes or n is NULL");
    if (!spec[0]) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: spec \"\" is empty");
    size_t count = 0, pos = 0;
    for (;;) {
        size_t start = pos, v = 0;
        if (spec[pos] == '-' || spec[pos] == '\0')
            return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: spec \"%.64s\" has an empty layer size at position %zu",
                           spec, start);
        while (spec[pos] != '-' && spec[pos] != '\0') {
            char c = spec[pos];
            if (c < '0' || c > '9')
                return ag_ext_errf(err, errsize, AG_ERR_ARG,
                               "mlp: spec \"%.64s\" has '%c' at position %zu, expected a digit or '-'", spec,
                               (c >= 32 && c < 127) ? c : '?', pos);
            v = v * 10 + (size_t)(c - '0');
            if (v > AG_MLP_MAX_SIZE)
                return ag_ext_errf(err, errsize, AG_ERR_ARG,
                               "mlp: spec \"%.64s\" has a layer size above %zu at position %zu", spec,
                               AG_MLP_MAX_SIZE, start);
            pos++;
        }
        if (v == 0)
            return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: spec \"%.64s\" has a zero layer size at position %zu",
                           spec, start);
        if (count == max)
            return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: spec \"%.64s\" has more than %zu layer sizes", spec, max);
        sizes[count++] = v;
        if (spec[pos] == '\0') break;
        pos++; /* the '-' */
    }
    if (count < 2)
        return ag_ext_errf(err, errsize, AG_ERR_ARG,
                       "mlp: spec \"%.64s\" needs at least two sizes (input and output), e.g. \"784-10\"", spec);
    *n = count;
    return AG_OK;
}

void ag_mlp_free(ag_mlp *m) {
    if (!m) return;
    ag_ext_free(m->sizes);
    ag_ext_free(m->layers);
    ag_ext_free(m->weights);
    ag_ext_free(m);
}

static int act_ok(ag_act a) { return a >= AG_ACT_IDENTITY && a <= AG_ACT_RELU; }

ag_status ag_mlp_new(ag_mlp **out, ag_params *ps, const ag_mlp_config *cfg, char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!out) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: out is NULL");
    *out = NULL;
    if (!ps || !cfg) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: %s is NULL", ps ? "config" : "params store");
    size_t sizes[AG_MLP_MAX_LAYERS], n;
    ag_status st = ag_mlp_parse_spec(cfg->spec, sizes, AG_MLP_MAX_LAYERS, &n, err, errsize);
    if (st != AG_OK) return st;
    size_t n_layers = n - 1;
    if (cfg->acts && cfg->n_acts != n_layers)
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: %zu activations given for the %zu layers of \"%.64s\"",
                       cfg->n_acts, n_layers, cfg->spec);
    for (size_t i = 0; i < n_layers; i++) {
        ag_act a = cfg->acts ? cfg->acts[i] : i + 1 == n_layers ? cfg->output : cfg->hidden;
        if (!act_ok(a)) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: layer %zu has unknown activation %d", i + 1, (int)a);
    }
    if ((int)cfg->init < AG_INIT_SMALL_GAUSS || cfg->init > AG_INIT_HE_NORMAL)
        return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: unknown initialiser %d", (int)cfg->init);
    const char *prefix = cfg->prefix ? cfg->prefix : "fc";
    if (strlen(prefix) > 100) return ag_ext_errf(err, errsize, AG_ERR_ARG, "mlp: prefix is longer than 100 bytes");

    ag_mlp *m = ag_ext_calloc(1, sizeof *m);
    if (!m) return ag_ext_errf(err, errsize, AG_ERR_NOMEM, "mlp: out of memory");
    m->n_layers = n_layers;
    m->sizes = ag_ext_calloc(n, sizeof *m->sizes);
    m->layers = ag_ext_calloc(n_layers, sizeof *m->layers);
    m->weights = ag_ext_calloc(n_layers, sizeof *m->weights);
    if (!m->sizes || !m->layers || !m->weights) {
        ag_mlp_free(m);
        return ag_ext_errf(err, errsize, AG_ERR_NOMEM, "mlp: out of memory");
    }
    memcpy(m->sizes, sizes, n * sizeof *sizes);
    ag_rng rng;
    ag_rng_seed(&rng, cfg->seed);
    size_t mark = ag_params_count(ps); /* all or nothing: a failure rolls the store back to here */
    for (size_t i = 0; i < n_layers; i++) {
        ag_act a = cfg->acts ? cfg->acts[i] : i + 1 == n_layers ? cfg->output : cfg->hidden;
        char name[128];
        snprintf(name, sizeof name, "%s%zu", prefix, i + 1);
        /* W^(l) is s_{l+1} x s_l, l = i + 1 */
        st = ag_dense_init(&m->layers[i], ps, name, sizes[i], sizes[i + 1], a);
        if (st == AG_OK) st = ag_dense_init_weights(&m->layers[i], cfg->init, &rng);
        if (st != AG_OK) {
            ag_ext_errf(err, errsize, st, "mlp: layer %zu (%zu -> %zu): %s", i + 1, sizes[i], sizes[i + 1],
                    ag_params_errmsg(ps));
            ag_params_truncate(ps, mark); /* drop the layers before the failing one too */
            ag_mlp_free(m);
            return st;
        }
        m->weights[i] = m->layers[i].W;
    }
    *out = m;
    return AG_OK;
}

ag_tensor *ag_mlp_forward(ag_tape *t, const ag_mlp *m, ag_tensor *x, ag_tensor **z, ag_tensor **a) {
    if (!t) return NULL;
    if (!m) {
        ag_ext_op_fail(t, AG_ERR_ARG, "mlp: model is NULL");
        return NULL;
    }
    if (x && (x->ndim != 2 || x->shape[1] != m->sizes[0])) {
        char s[64];
        ag_ext_op_fail(t, AG_ERR_SHAPE, "mlp: x is %s but the model expects K x %zu inputs", ag_shape_str(x, s, sizeof s),
                 m->sizes[0]);
        return NULL;
    }
    ag_tensor *h = x; /* a^(1) = x */
    int want = z || a; /* else no z: ag_dense_forward records one fused linear_act node per layer */
    for (size_t i = 0; i < m->n_layers; i++) {
        ag_tensor *zi = NULL;
        h = ag_dense_forward(t, &m->layers[i], h, want ? &zi : NULL); /* z^(l+1) = W^(l) a^(l) + b^(l); a^(l+1) = f(z^(l+1)) */
        if (z) z[i] = zi;
        if (a) a[i] = h;
        if (!h) return NULL;
    }
    return h;
}

ag_tensor *ag_mlp_cost_squared_error(ag_tape *t, const ag_mlp *m, ag_tensor *h, ag_tensor *y, ag_real lambda) {
    if (!m) {
        if (t) ag_ext_op_fail(t, AG_ERR_ARG, "mlp: model is NULL");
        return NULL;
    }
    return ag_cost_squared_error_l2(t, h, y, lambda, m->weights, m->n_layers);
}

ag_tensor *ag_mlp_cost_cross_entropy(ag_tape *t, const ag_mlp *m, ag_tensor *logits, const int32_t *labels,
                                     ag_real lambda) {
    if (!m) {
        if (t) ag_ext_op_fail(t, AG_ERR_ARG, "mlp: model is NULL");
        return NULL;
    }
    return ag_cost_cross_entropy_l2(t, logits, labels, lambda, m->weights, m->n_layers);
}

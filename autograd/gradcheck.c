/*
 * gradcheck.c - ag_gradcheck: the tape's gradient against central differences.
 *
 * For every element w of every tensor in wrt (parameters: they survive the tape resets between
 * evaluations; and, for ag_gradcheck_leaves, caller buffers that f wraps as tape leaves anew on
 * every call):
 *
 *     numeric = (f(w + eps) - f(w - eps)) / (w+ - w-)
 *
 * where w+ and w- are the perturbed values as actually stored in ag_real (in float, w + eps is
 * rounded, and dividing by the step that was really taken removes that error). The error measure is
 *
 *     rel = |analytic - numeric| / max(|analytic|, |numeric|, 1)
 *
 * a relative error for gradients of magnitude >= 1 and an absolute one below, where the rounding
 * noise of f (not the gradient) dominates; it works in float and double alike. The check is
 * "analytic and numeric agree" when rel is small: ~1e-6 or less is reachable in double with eps
 * around 1e-6, ~1e-3..1e-2 in float with eps around 1e-2..1e-3.
 *
 * The numeric evaluations run in no-grad mode (nothing is saved for backward). Every perturbed
 * value is restored from a saved copy, so the parameters end exactly as they started.
 *
 * A leaf's analytic gradient lives on the tape, which the next evaluation resets: right after the
 * backward it is found by the buffer's address (every leaf node wrapping that buffer; several
 * wraps add up, as d/dw of f(w, w) does) and copied out to scratch.
 *
 * A gradient sink set on the tape (ag_tape_set_grad_sink) would take the analytic gradient and
 * leave ->grad at zero, so the one backward runs with the sink set aside; it is put back right
 * after, whatever the outcome.
 */
#include "internal.h"

/* f(t) with the tape reset first; the scalar value, or a status. */
static ag_status eval(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor **loss) {
    ag_tape_reset(t);
    *loss = f(t, ctx);
    if (!*loss) {
        ag_status st = ag_tape_status(t);
        return st != AG_OK ? st : ag__fail(t, AG_ERR_ARG, "gradcheck: the loss function returned NULL "
                                                          "without recording an error");
    }
    if ((*loss)->size != 1) {
        char s[64];
        return ag__fail(t, AG_ERR_SHAPE, "gradcheck: loss is %s, not a scalar",
                        ag_shape_str(*loss, s, sizeof s));
    }
    return AG_OK;
}

/* After the analytic backward: the gradient of each leaf buffer, summed over the marked leaf
 * nodes that wrap it (none reached: zeros), into g (the leaves' sizes, one after another). */
static ag_status leaf_grads(ag_tape *t, const ag_gradcheck_leaf *leaves, size_t n_leaves, ag_real *g) {
    for (size_t j = 0; j < n_leaves; g += leaves[j].size, j++) {
        int wrapped = 0, marked = 0;
        memset(g, 0, leaves[j].size * sizeof *g);
        for (const ag_node *n = t->last; n; n = n->prev) {
            const ag_tensor *x = &n->out;
            if (n->op || x->value != leaves[j].value) continue;
            char s[64];
            if (x->size != leaves[j].size)
                return ag__fail(t, AG_ERR_SHAPE, "gradcheck: leaves[%zu] has %zu elements but f wraps it as %s", j,
                                leaves[j].size, ag_shape_str(x, s, sizeof s));
            wrapped = 1;
            if (!(x->flags & AG_REQUIRES_GRAD)) continue;
            marked = 1;
            for (size_t i = 0; x->grad && i < x->size; i++) g[i] += x->grad[i];
        }
        if (!wrapped)
            return ag__fail(t, AG_ERR_ARG, "gradcheck: leaves[%zu] is not on the tape (f must wrap that buffer with "
                                           "ag_tensor_wrap on every call)", j);
        if (!marked)
            return ag__fail(t, AG_ERR_ARG, "gradcheck: leaves[%zu] is on the tape but f did not mark it with "
                                           "ag_requires_grad", j);
    }
    return AG_OK;
}

ag_status ag_gradcheck_leaves(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor *const *params, size_t n_params,
                              const ag_gradcheck_leaf *leaves, size_t n_leaves, double eps, ag_gradcheck_result *res) {
    if (!t) return AG_ERR_ARG;
    if (res) memset(res, 0, sizeof *res);
    if (!f || !res) return ag__fail(t, AG_ERR_ARG, "gradcheck: %s", !f ? "f is NULL" : "res is NULL");
    if ((n_params && !params) || (n_leaves && !leaves))
        return ag__fail(t, AG_ERR_ARG, "gradcheck: %s is NULL", n_params && !params ? "params" : "leaves");
    if (n_params + n_leaves == 0 || n_leaves > SIZE_MAX - n_params)
        return ag__fail(t, AG_ERR_ARG, "gradcheck: nothing to check (no params and no leaves)");
    if (!(eps > 0) || !isfinite(eps))
        return ag__fail(t, AG_ERR_ARG, "gradcheck: eps %g must be positive and finite", eps);
    for (size_t i = 0; i < n_params; i++) {
        if (!params[i]) return ag__fail(t, AG_ERR_ARG, "gradcheck: wrt[%zu] is NULL", i);
        if (!(params[i]->flags & AG_PARAM))
            return ag__fail(t, AG_ERR_ARG,
                            "gradcheck: wrt[%zu] is not a parameter (tape tensors do not survive the reset before "
                            "each evaluation: give a leaf's buffer to ag_gradcheck_leaves)", i);
    }
    size_t leaf_numel = 0;
    for (size_t j = 0; j < n_leaves; j++) {
        if (!leaves[j].value || leaves[j].size == 0)
            return ag__fail(t, AG_ERR_ARG, "gradcheck: leaves[%zu] %s", j,
                            !leaves[j].value ? "has a NULL value" : "has size 0");
        for (size_t k = 0; k < j; k++)
            if (leaves[k].value == leaves[j].value)
                return ag__fail(t, AG_ERR_ARG, "gradcheck: leaves[%zu] and leaves[%zu] are the same buffer", k, j);
        if (leaves[j].size > (SIZE_MAX / sizeof(ag_real)) - leaf_numel)
            return ag__fail(t, AG_ERR_ARG, "gradcheck: the leaves' sizes overflow");
        leaf_numel += leaves[j].size;
    }
    ag_real *leaf_g = NULL; /* the leaves' analytic gradients: the tape forgets them at the next reset */
    if (leaf_numel && !(leaf_g = ag__malloc(leaf_numel * sizeof *leaf_g)))
        return ag__fail(t, AG_ERR_NOMEM, "gradcheck: out of memory for the leaves' gradients (%zu elements)",
                        leaf_numel);

    /* analytic: one forward and backward with the gradients of the parameters zeroed */
    for (size_t i = 0; i < n_params; i++) memset(params[i]->grad, 0, params[i]->size * sizeof(ag_real));
    ag_tensor *loss;
    ag_status st = eval(t, f, ctx, &loss);
    if (st == AG_OK) { /* into ->grad: no sink during this backward */
        const ag_grad_sink *own = ag_tape_grad_sink(t);
        const ag_grad_sink sink = own ? *own : (ag_grad_sink){0};
        ag_tape_set_grad_sink(t, NULL);
        st = ag_backward(t, loss);
        if (own) ag_tape_set_grad_sink(t, &sink);
    }
    if (st == AG_OK) st = leaf_grads(t, leaves, n_leaves, leaf_g);
    if (st != AG_OK) {
        ag__free(leaf_g);
        return st;
    }
    const ag_real *lg = leaf_g;
    for (size_t j = 0; j < n_leaves; lg += leaves[j].size, j++)
        if (leaves[j].grad) memcpy(leaves[j].grad, lg, leaves[j].size * sizeof *lg);

    /* numeric, element by element: the parameters, then the leaves */
    int grad_was = ag_tape_set_grad_enabled(t, 0);
    double worst = -1;
    lg = leaf_g;
    for (size_t i = 0; i < n_params + n_leaves && st == AG_OK; i++) {
        const int is_leaf = i >= n_params;
        ag_real *w = is_leaf ? leaves[i - n_params].value : params[i]->value;
        const ag_real *g = is_leaf ? lg : params[i]->grad;
        const size_t size = is_leaf ? leaves[i - n_params].size : params[i]->size;
        for (size_t j = 0; j < size; j++) {
            const ag_real w0 = w[j];
            const ag_real wp = (ag_real)(w0 + eps), wm = (ag_real)(w0 - eps);
            if (!(wp > wm)) {
                char what[48];
                if (is_leaf) snprintf(what, sizeof what, "leaves[%zu]", i - n_params);
                st = ag__fail(t, AG_ERR_ARG, "gradcheck: eps %g vanishes next to %s[%zu] = %g in %s", eps,
                              is_leaf ? what : params[i]->name ? params[i]->name : "wrt", j, (double)w0, AG_REAL_NAME);
                break;
            }
            w[j] = wp;
            st = eval(t, f, ctx, &loss);
            double fp = st == AG_OK ? (double)loss->value[0] : 0;
            w[j] = wm;
            if (st == AG_OK) st = eval(t, f, ctx, &loss);
            double fm = st == AG_OK ? (double)loss->value[0] : 0;
            w[j] = w0;
            if (st != AG_OK) break;

            double num = (fp - fm) / ((double)wp - (double)wm);
            double ana = (double)g[j];
            double abs_err = fabs(ana - num);
            double scale = fmax(fmax(fabs(ana), fabs(num)), 1.0);
            double rel = abs_err / scale;
            if (isnan(rel)) rel = INFINITY; /* NaN on either side is the worst possible */
            if (abs_err > res->max_abs_err || isnan(abs_err)) res->max_abs_err = isnan(abs_err) ? INFINITY : abs_err;
            if (rel > worst) {
                worst = rel;
                res->max_rel_err = rel;
                res->worst_tensor = i;
                res->worst_index = j;
                res->analytic = ana;
                res->numeric = num;
            }
            res->n_checked++;
        }
        if (is_leaf) lg += size;
    }
    ag_tape_set_grad_enabled(t, grad_was);
    ag__free(leaf_g);
    if (st == AG_OK) ag_tape_reset(t);
    return st;
}

ag_status ag_gradcheck(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor *const *wrt, size_t n_wrt, double eps,
                       ag_gradcheck_result *res) {
    if (!t) return AG_ERR_ARG;
    if (res) memset(res, 0, sizeof *res);
    if (!f || !wrt || n_wrt == 0 || !res)
        return ag__fail(t, AG_ERR_ARG, "gradcheck: %s", !f ? "f is NULL" : !wrt ? "wrt is NULL"
                                                         : n_wrt == 0 ? "n_wrt is 0" : "res is NULL");
    return ag_gradcheck_leaves(t, f, ctx, wrt, n_wrt, NULL, 0, eps, res);
}

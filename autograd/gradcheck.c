/*
 * gradcheck.c - ag_gradcheck: the tape's gradient against central differences.
 *
 * For every element w of every tensor in wrt (parameters: they survive the tape resets between
 * evaluations):
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

ag_status ag_gradcheck(ag_tape *t, ag_loss_fn f, void *ctx, ag_tensor *const *wrt, size_t n_wrt,
                       double eps, ag_gradcheck_result *res) {
    if (!t) return AG_ERR_ARG;
    if (res) memset(res, 0, sizeof *res);
    if (!f || !wrt || n_wrt == 0 || !res)
        return ag__fail(t, AG_ERR_ARG, "gradcheck: %s", !f ? "f is NULL" : !wrt ? "wrt is NULL"
                                                         : n_wrt == 0 ? "n_wrt is 0" : "res is NULL");
    if (!(eps > 0) || !isfinite(eps))
        return ag__fail(t, AG_ERR_ARG, "gradcheck: eps %g must be positive and finite", eps);
    for (size_t i = 0; i < n_wrt; i++) {
        if (!wrt[i]) return ag__fail(t, AG_ERR_ARG, "gradcheck: wrt[%zu] is NULL", i);
        if (wrt[i]->flags & AG_STATE)
            return ag__fail(t, AG_ERR_ARG, "gradcheck: wrt[%zu] is state (AG_STATE), which has no gradient", i);
        if (!(wrt[i]->flags & AG_PARAM))
            return ag__fail(t, AG_ERR_ARG,
                            "gradcheck: wrt[%zu] is not a parameter (tape tensors do not survive the "
                            "reset before each evaluation)", i);
    }

    /* analytic: one forward and backward with the gradients of wrt zeroed */
    for (size_t i = 0; i < n_wrt; i++) memset(wrt[i]->grad, 0, wrt[i]->size * sizeof(ag_real));
    ag_tensor *loss;
    ag_status st = eval(t, f, ctx, &loss);
    if (st == AG_OK) { /* into ->grad: no sink during this backward */
        const ag_grad_sink *own = ag_tape_grad_sink(t);
        const ag_grad_sink sink = own ? *own : (ag_grad_sink){0};
        ag_tape_set_grad_sink(t, NULL);
        st = ag_backward(t, loss);
        if (own) ag_tape_set_grad_sink(t, &sink);
    }
    if (st != AG_OK) return st;

    /* numeric, element by element */
    int grad_was = ag_tape_set_grad_enabled(t, 0);
    double worst = -1;
    for (size_t i = 0; i < n_wrt && st == AG_OK; i++) {
        ag_real *w = wrt[i]->value;
        for (size_t j = 0; j < wrt[i]->size; j++) {
            const ag_real w0 = w[j];
            const ag_real wp = (ag_real)(w0 + eps), wm = (ag_real)(w0 - eps);
            if (!(wp > wm)) {
                st = ag__fail(t, AG_ERR_ARG, "gradcheck: eps %g vanishes next to %s[%zu] = %g in %s", eps,
                              wrt[i]->name ? wrt[i]->name : "wrt", j, (double)w0, AG_REAL_NAME);
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
            double ana = (double)wrt[i]->grad[j];
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
    }
    ag_tape_set_grad_enabled(t, grad_was);
    if (st == AG_OK) ag_tape_reset(t);
    return st;
}

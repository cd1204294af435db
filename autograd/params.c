/*
 * params.c - the parameter store: one flat value buffer and one flat gradient buffer carved into
 * per-tensor views (llm.c's single allocation), so optimizers, zeroing and saving are one loop.
 */
#include "internal.h"
#include "io/io.h"

#include <tapegrad/ag_ext.h>

#include <stdarg.h>
#include <stdio.h>

#define AG_PARAM_NAME_MAX 128

struct ag_params {
    uint64_t moves;          /* buffers moved or tensors removed: see ag__params_moves */
    ag_tensor **tensors;     /* stable ag_tensor objects; views into the flat buffers */
    size_t *offsets;         /* element offset of each tensor in the flat buffers */
    size_t count, cap;
    ag_real *values, *grads; /* numel elements each, AG_ALIGN-aligned */
    size_t numel;
    ag_status status;
    char errmsg[AG_ERRMSG_SIZE];
};

/* Record a failure on the store (ag_params_status/errmsg) and return st. */
static ag_status vpfail(ag_params *ps, ag_status st, const char *fmt, va_list ap) {
    ps->status = st;
    return ag__verrf(ps->errmsg, sizeof ps->errmsg, st, fmt, ap);
}
static ag_status pfail(ag_params *ps, ag_status st, const char *fmt, ...) AG__PRINTF(3, 4);
static ag_status pfail(ag_params *ps, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vpfail(ps, st, fmt, ap);
    va_end(ap);
    return st;
}

ag_status ag_ext_params_fail(ag_params *ps, ag_status st, const char *fmt, ...) {
    if (!ps) return st;
    va_list ap;
    va_start(ap, fmt);
    vpfail(ps, st, fmt, ap);
    va_end(ap);
    return st;
}

ag_status ag_params_new(ag_params **out) {
    if (!out) return AG_ERR_ARG;
    *out = ag__calloc(1, sizeof **out);
    return *out ? AG_OK : AG_ERR_NOMEM;
}

void ag_params_free(ag_params *ps) {
    if (!ps) return;
    for (size_t i = 0; i < ps->count; i++) {
        ag__free((void *)ps->tensors[i]->name);
        ag__free(ps->tensors[i]);
    }
    ag__free(ps->tensors);
    ag__free(ps->offsets);
    ag__aligned_free(ps->values);
    ag__aligned_free(ps->grads);
    ag__free(ps);
}

/* Tensor i's gradient: its slice of the flat buffer, none for state (AG_STATE). */
static ag_real *param_grad(ag_params *ps, size_t i) {
    return ps->tensors[i]->flags & AG_STATE ? NULL : ps->grads + ps->offsets[i];
}

/* elements per AG_ALIGN bytes: every view starts aligned */
#define ALIGN_ELEMS (AG_ALIGN / sizeof(ag_real))

ag_status ag_params_add(ag_params *ps, const char *name, int ndim, const size_t *shape,
                        unsigned flags, ag_tensor **out) {
    if (out) *out = NULL;
    if (!ps) return AG_ERR_ARG;
    if (!out) return pfail(ps, AG_ERR_ARG, "params_add: out is NULL");
    if (!name || !name[0]) return pfail(ps, AG_ERR_ARG, "params_add: name is NULL or empty");
    size_t name_len = strlen(name);
    if (name_len > AG_PARAM_NAME_MAX)
        return pfail(ps, AG_ERR_ARG, "params_add: name is %zu bytes, at most %d", name_len,
                     AG_PARAM_NAME_MAX);
    /* names key saved files (ag_model_save): refuse here what a model file cannot hold */
    size_t bad = ag__utf8_bad_at((const unsigned char *)name, name_len);
    if (bad < name_len)
        return pfail(ps, AG_ERR_ARG, "params_add: name is not valid UTF-8 (byte %zu is 0x%02x)", bad,
                     (unsigned char)name[bad]);
    if (strcmp(name, "__metadata__") == 0)
        return pfail(ps, AG_ERR_ARG, "params_add: name __metadata__ is reserved (model files keep their metadata "
                                     "under it)");
    if (ndim < 0 || ndim > AG_MAX_DIMS)
        return pfail(ps, AG_ERR_ARG, "params_add %s: rank %d is outside 0..%d", name, ndim, AG_MAX_DIMS);
    if (ndim > 0 && !shape) return pfail(ps, AG_ERR_ARG, "params_add %s: shape is NULL", name);
    if ((flags & ~(unsigned)(AG_DECAY | AG_STATE)) || flags == (AG_DECAY | AG_STATE))
        return pfail(ps, AG_ERR_ARG, "params_add %s: flags 0x%x: only AG_DECAY or AG_STATE may be given", name,
                     flags);
    if (ag_params_find(ps, name)) return pfail(ps, AG_ERR_ARG, "params_add: name %s is already used", name);
    size_t numel;
    int rc = ag__shape_numel(ndim, shape, &numel);
    if (rc != 0) {
        ag_tensor tmp = {0};
        tmp.ndim = ndim;
        for (int i = 0; i < ndim; i++) tmp.shape[i] = shape[i];
        char s[96];
        return pfail(ps, AG_ERR_SHAPE, "params_add %s: shape %s %s", name, ag_shape_str(&tmp, s, sizeof s),
                     rc == -2 ? "has a zero dimension" : "overflows size_t");
    }
    size_t padded = (numel + ALIGN_ELEMS - 1) / ALIGN_ELEMS * ALIGN_ELEMS;
    const size_t max_numel = SIZE_MAX / 4 / sizeof(ag_real);
    if (padded > max_numel || ps->numel > max_numel - padded)
        return pfail(ps, AG_ERR_SHAPE, "params_add %s: total parameter count overflows", name);

    /* grow the bookkeeping arrays first: nothing observable changes until all allocations succeed */
    if (ps->count == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        ag_tensor **tv = ag__realloc(ps->tensors, cap * sizeof *tv);
        if (!tv) return pfail(ps, AG_ERR_NOMEM, "params_add %s: out of memory", name);
        ps->tensors = tv;
        size_t *ov = ag__realloc(ps->offsets, cap * sizeof *ov);
        if (!ov) return pfail(ps, AG_ERR_NOMEM, "params_add %s: out of memory", name);
        ps->offsets = ov;
        ps->cap = cap;
    }
    ag__param_tensor *pt = ag__calloc(1, sizeof *pt);
    ag_tensor *x = pt ? &pt->t : NULL;
    char *name_copy = ag__malloc(name_len + 1);
    size_t total = ps->numel + padded;
    ag_real *values = ag__aligned_alloc(total * sizeof(ag_real));
    ag_real *grads = ag__aligned_alloc(total * sizeof(ag_real));
    if (!x || !name_copy || !values || !grads) {
        ag__free(x);
        ag__free(name_copy);
        ag__aligned_free(values);
        ag__aligned_free(grads);
        return pfail(ps, AG_ERR_NOMEM, "params_add %s: out of memory for %zu elements", name, total);
    }
    if (ps->numel) {
        memcpy(values, ps->values, ps->numel * sizeof(ag_real));
        memcpy(grads, ps->grads, ps->numel * sizeof(ag_real));
    }
    memset(values + ps->numel, 0, padded * sizeof(ag_real));
    memset(grads + ps->numel, 0, padded * sizeof(ag_real));
    ag__aligned_free(ps->values);
    ag__aligned_free(ps->grads);
    ps->values = values;
    ps->grads = grads;

    ps->moves++;
    pt->store = ps;
    memcpy(name_copy, name, name_len + 1);
    x->name = name_copy;
    x->ndim = ndim;
    for (int i = 0; i < AG_MAX_DIMS; i++) x->shape[i] = i < ndim ? shape[i] : 1;
    x->size = numel;
    /* state (running statistics) takes no gradient: no AG_REQUIRES_GRAD and grad NULL, so ops skip
     * it as any input that needs none; its slice of the flat gradient buffer stays zero, so the
     * optimizers' flat loops leave its values as they are, and no sink delivers it */
    x->flags = AG_PARAM | (flags & AG_STATE ? 0u : (unsigned)AG_REQUIRES_GRAD) | flags;
    ps->offsets[ps->count] = ps->numel;
    ps->tensors[ps->count++] = x;
    ps->numel = total;
    for (size_t i = 0; i < ps->count; i++) { /* the buffers moved: re-point every view */
        ps->tensors[i]->value = ps->values + ps->offsets[i];
        ps->tensors[i]->grad = param_grad(ps, i);
    }
    *out = x;
    return AG_OK;
}

ag_status ag_params_truncate(ag_params *ps, size_t count) {
    if (!ps || count > ps->count) return AG_ERR_ARG;
    if (count == ps->count) return AG_OK;
    ps->moves++;
    for (size_t i = count; i < ps->count; i++) {
        ag__free((void *)ps->tensors[i]->name);
        ag__free(ps->tensors[i]);
    }
    size_t numel = ps->offsets[count]; /* the store's size when tensor count was added */
    ps->count = count;
    if (!numel) { /* back to empty: no buffers, as a new store */
        ag__aligned_free(ps->values);
        ag__aligned_free(ps->grads);
        ps->values = ps->grads = NULL;
        ps->numel = 0;
        return AG_OK;
    }
    /* give the memory back if a smaller copy can be had; a rollback must not fail, so without
     * one the buffers stay (only [0, numel) is ever read, and the next add reallocates them) */
    ag_real *values = ag__aligned_alloc(numel * sizeof(ag_real));
    ag_real *grads = values ? ag__aligned_alloc(numel * sizeof(ag_real)) : NULL;
    if (values && grads) {
        memcpy(values, ps->values, numel * sizeof(ag_real));
        memcpy(grads, ps->grads, numel * sizeof(ag_real));
        ag__aligned_free(ps->values);
        ag__aligned_free(ps->grads);
        ps->values = values;
        ps->grads = grads;
        for (size_t i = 0; i < count; i++) {
            ps->tensors[i]->value = ps->values + ps->offsets[i];
            ps->tensors[i]->grad = param_grad(ps, i);
        }
    } else {
        ag__aligned_free(values);
    }
    ps->numel = numel;
    return AG_OK;
}

size_t ag_params_count(const ag_params *ps) { return ps ? ps->count : 0; }
uint64_t ag__params_moves(const ag_params *ps) { return ps->moves; }

ag_tensor *ag_params_at(const ag_params *ps, size_t i) {
    return ps && i < ps->count ? ps->tensors[i] : NULL;
}

ag_tensor *ag_params_find(const ag_params *ps, const char *name) {
    if (!ps || !name) return NULL;
    for (size_t i = 0; i < ps->count; i++)
        if (strcmp(ps->tensors[i]->name, name) == 0) return ps->tensors[i];
    return NULL;
}

size_t ag_params_numel(const ag_params *ps) { return ps ? ps->numel : 0; }
ag_real *ag_params_values(ag_params *ps) { return ps ? ps->values : NULL; }
ag_real *ag_params_grads(ag_params *ps) { return ps ? ps->grads : NULL; }

void ag_params_zero_grad(ag_params *ps) {
    if (!ps || !ps->numel) return;
    memset(ps->grads, 0, ps->numel * sizeof(ag_real));
    for (size_t i = 0; i < ps->count; i++) ag__param(ps->tensors[i])->sink_flags &= ~AG__GRAD_DIRTY;
}

ag_status ag_params_status(const ag_params *ps) { return ps ? ps->status : AG_ERR_ARG; }
const char *ag_params_errmsg(const ag_params *ps) { return ps ? ps->errmsg : "params is NULL"; }

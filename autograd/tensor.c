/*
 * tensor.c - small utilities on shapes and statuses used by every room: element counts with
 * overflow checks, "32x784" shape strings, rows of a batch, status names.
 */
#include "base.h"

#include <stdio.h>

const char *ag_status_str(ag_status s) {
    switch (s) {
    case AG_OK: return "ok";
    case AG_ERR_ARG: return "invalid argument";
    case AG_ERR_SHAPE: return "shape mismatch";
    case AG_ERR_NOMEM: return "out of memory";
    case AG_ERR_STATE: return "invalid state";
    case AG_ERR_IO: return "i/o error";
    case AG_ERR_FORMAT: return "bad file format";
    case AG_ERR_NUMERIC: return "non-finite value";
    }
    return "unknown status";
}

int ag__shape_numel(int ndim, const size_t *shape, size_t *numel) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) return -2;
        if (!ag__mul_ok(n, shape[i], &n)) return -1;
    }
    /* leave room for the grad buffer and alignment: bytes must fit comfortably in size_t */
    if (n > (SIZE_MAX / 4) / sizeof(ag_real)) return -1;
    *numel = n;
    return 0;
}

const char *ag_shape_str(const ag_tensor *x, char *buf, size_t bufsize) {
    if (!buf || bufsize == 0) return "";
    buf[0] = '\0';
    if (!x) {
        snprintf(buf, bufsize, "NULL");
        return buf;
    }
    if (x->ndim == 0) {
        snprintf(buf, bufsize, "scalar");
        return buf;
    }
    size_t len = 0;
    for (int i = 0; i < x->ndim && len < bufsize; i++) {
        int w = snprintf(buf + len, bufsize - len, i ? "x%zu" : "%zu", x->shape[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

size_t ag_tensor_rows(const ag_tensor *x) { return !x ? 0 : x->ndim >= 2 ? x->shape[0] : 1; }

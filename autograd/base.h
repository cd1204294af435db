/*
 * base.h - what every room of the library shares (engine, ops, kernels, io); not installed.
 * The allocator hooks, overflow-checked sizes, the error-buffer helper, the printf-format
 * attribute and the multi-ISA clone attribute. Includes only the public ag.h and ag_ext.h.
 */
#ifndef AG_BASE_H
#define AG_BASE_H

#include <tapegrad/ag.h>
#include <tapegrad/ag_ext.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* AG__PRINTF(f, a): ag.h's AG_PRINTF, under the internal prefix the sources use. */
#define AG__PRINTF(f, a) AG_PRINTF(f, a)

/* Allocator hooks (see ag_set_allocator). Every heap block of the library goes through these. */
void *ag__malloc(size_t size);
void *ag__calloc(size_t n, size_t size); /* overflow-checked, zeroed */
void *ag__realloc(void *ptr, size_t size);
void ag__free(void *ptr);
/* AG_ALIGN-aligned block from the hooks; free with ag__aligned_free. */
void *ag__aligned_alloc(size_t size);
void ag__aligned_free(void *ptr);

/* a * b into *out, 0 on overflow. */
static inline int ag__mul_ok(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}

/* Element count of a shape with overflow and zero checks: 0 on success, else -1 (overflow)
 * or -2 (a zero dimension). Counts are bounded so that size * sizeof(ag_real) fits size_t. */
int ag__shape_numel(int ndim, const size_t *shape, size_t *numel);

/* The one error-message helper: write the printf-formatted message into err[errsize] (nothing
 * when err is NULL or errsize 0; cut to fit, always terminated) and return st. Every object's
 * message (tape, store, optimizer) and every caller's buffer (loaders, model files, builders) is
 * written through it. */
#define ag__errf ag_ext_errf /* one implementation (memory.c), public for extensions in ag_ext.h */
ag_status ag__verrf(char *err, size_t errsize, ag_status st, const char *fmt, va_list ap);

/* The same with a "<what>: <name>: " prefix (name NULL: "<memory>", data in memory; "": none):
 * the loaders and model files report through such buffers. */
ag_status ag__vbuf_fail(char *err, size_t errsize, ag_status st, const char *what, const char *name,
                        const char *fmt, va_list ap);
#define ag__buf_fail ag_ext_buf_fail /* the variadic form (memory.c; ag_ext.h) */

/* AG__CLONES before a function: GCC/clang compile it three times, for AVX-512F, AVX2 and the
 * baseline, and the loader picks one for the machine (ifunc, resolved once). For the element-wise
 * streams (the ops, optim.c): wider vectors, the same results, because the build has no FMA
 * (-ffp-contract=off), no reassociation (no -ffast-math, so sums stay in order) and every clone
 * does exactly the baseline's IEEE operations per element. Not under sanitizers nor with
 * -DAG_NO_CLONES (the A/B builds and the clones-vs-baseline test, tests/noclones.cmake): the
 * conditions are ag_ext.h's AG_EXT_CLONES, which optim.c uses. */
#define AG__CLONES AG_EXT_CLONES

#endif /* AG_BASE_H */

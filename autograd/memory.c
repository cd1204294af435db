/*
 * memory.c - the allocator hooks every heap block of the library goes through, and status names.
 * Tests swap the hooks to count allocations or to fail the n-th one (sqlite's approach).
 */
#include "base.h"

#include <tapegrad/ag_ext.h>

#include <stdio.h>
#include <stdlib.h>

static void *libc_malloc(size_t size, void *user) { (void)user; return malloc(size); }
static void *libc_realloc(void *p, size_t size, void *user) { (void)user; return realloc(p, size); }
static void libc_free(void *p, void *user) { (void)user; free(p); }

static ag_allocator g_alloc = {libc_malloc, libc_realloc, libc_free, NULL};

ag_status ag_set_allocator(const ag_allocator *a) {
    if (!a) {
        g_alloc = (ag_allocator){libc_malloc, libc_realloc, libc_free, NULL};
        return AG_OK;
    }
    if (!a->malloc_fn || !a->realloc_fn || !a->free_fn) return AG_ERR_ARG;
    g_alloc = *a;
    return AG_OK;
}

void *ag__malloc(size_t size) { return g_alloc.malloc_fn(size ? size : 1, g_alloc.user); }

void *ag__calloc(size_t n, size_t size) {
    size_t bytes;
    if (!ag__mul_ok(n, size, &bytes)) return NULL;
    void *p = ag__malloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void *ag__realloc(void *ptr, size_t size) {
    return g_alloc.realloc_fn(ptr, size ? size : 1, g_alloc.user);
}

void ag__free(void *ptr) {
    if (ptr) g_alloc.free_fn(ptr, g_alloc.user);
}

/* The hooks have no aligned variant, so over-allocate and keep the raw pointer just below the
 * aligned block. */
void *ag__aligned_alloc(size_t size) {
    if (size > SIZE_MAX - AG_ALIGN - sizeof(void *)) return NULL;
    char *raw = ag__malloc(size + AG_ALIGN + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + AG_ALIGN - 1) & ~(uintptr_t)(AG_ALIGN - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void ag__aligned_free(void *ptr) {
    if (ptr) ag__free(((void **)ptr)[-1]);
}

ag_status ag__verrf(char *err, size_t errsize, ag_status st, const char *fmt, va_list ap) {
    if (err && errsize) vsnprintf(err, errsize, fmt, ap);
    return st;
}

ag_status ag__vbuf_fail(char *err, size_t errsize, ag_status st, const char *what, const char *name,
                        const char *fmt, va_list ap) {
    if (!err || !errsize) return st;
    int k = name && !name[0] ? snprintf(err, errsize, "%s: ", what)
                             : snprintf(err, errsize, "%s: %s: ", what, name ? name : "<memory>");
    if (k < 0) k = 0;
    if ((size_t)k < errsize) ag__verrf(err + k, errsize - (size_t)k, st, fmt, ap);
    return st;
}

/* ---------------------------------------------------------------- for extensions (ag_ext.h) */

void *ag_ext_malloc(size_t size) { return ag__malloc(size); }
void *ag_ext_calloc(size_t n, size_t size) { return ag__calloc(n, size); }
void *ag_ext_realloc(void *ptr, size_t size) { return ag__realloc(ptr, size); }
void ag_ext_free(void *ptr) { ag__free(ptr); }
void *ag_ext_aligned_alloc(size_t size) { return ag__aligned_alloc(size); }
void ag_ext_aligned_free(void *ptr) { ag__aligned_free(ptr); }

ag_status ag_ext_errf(char *err, size_t errsize, ag_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ag__verrf(err, errsize, st, fmt, ap);
    va_end(ap);
    return st;
}

ag_status ag_ext_buf_fail(char *err, size_t errsize, ag_status st, const char *what, const char *name,
                          const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ag__vbuf_fail(err, errsize, st, what, name, fmt, ap);
    va_end(ap);
    return st;
}

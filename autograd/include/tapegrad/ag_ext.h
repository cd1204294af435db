/*
 * ag_ext.h - for code that extends tapegrad from outside the engine: layers, optimizers, model
 * builders (the library's own layers/ and optim/ use nothing else of the engine's).
 *
 * OVERVIEW
 *
 * A layer builder records ops and, when it fails before any op could, records its own failure on
 * the tape, so that backward refuses a step with a missing result just as after a failed op. A
 * builder that adds parameters reports on the store. An optimizer allocates through the library's
 * allocator hooks (ag_set_allocator) and writes its messages with ag_ext_errf. Nothing here gives
 * access to the tape's or the tensors' internals.
 *
 * EXAMPLE: a layer builder refusing a bad input.
 *
 *     ag_tensor *my_layer(ag_tape *t, ag_tensor *x) {
 *         if (!x) return ag_ext_op_missing(t);          // a failed input keeps its message
 *         if (x->ndim != 2) {
 *             ag_ext_op_fail(t, AG_ERR_SHAPE, "my_layer: x has %d dimensions, expects 2", x->ndim);
 *             return NULL;
 *         }
 *         return ag_relu(t, x);
 *     }
 */
#ifndef AG_EXT_H
#define AG_EXT_H

#include <stdarg.h>
#include <stddef.h>

#include <tapegrad/ag.h>

#ifdef __cplusplus
extern "C" {
#endif

/* AG_EXT_CLONES before a function: GCC/clang compile it three times, for AVX-512F, AVX2 and the
 * baseline, and the loader picks one for the machine (ifunc, resolved once): for element-wise
 * streams (the engine's ops, the optimizer's update). Wider vectors, the same results, provided
 * the build has no FMA (-ffp-contract=off), no reassociation (no -ffast-math) and every clone does
 * the baseline's IEEE operations per element. Not under sanitizers (their runtimes are not ready
 * when the resolvers run at load time) nor with -DAG_NO_CLONES (A/B builds, tests/noclones.cmake). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define AG_EXT_NO_CLONES_SAN 1
#endif
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(AG_EXT_NO_CLONES_SAN) && \
    !defined(AG_NO_CLONES)
#define AG_EXT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AG_EXT_CLONES
#endif

/* The library's allocator (ag_set_allocator's hooks, libc by default). ag_ext_calloc checks n * size
 * for overflow and zeroes; ag_ext_aligned_alloc returns AG_ALIGN-aligned memory, released only by
 * ag_ext_aligned_free. NULL when out of memory; the frees accept NULL. */
void *ag_ext_malloc(size_t size);
void *ag_ext_calloc(size_t n, size_t size);
void *ag_ext_realloc(void *ptr, size_t size);
void ag_ext_free(void *ptr);
void *ag_ext_aligned_alloc(size_t size);
void ag_ext_aligned_free(void *ptr);

/* Write the printf-formatted message into err[errsize] (nothing when err is NULL or errsize 0; cut
 * to fit, always terminated) and return st: the library's one way of filling a message buffer. */
ag_status ag_ext_errf(char *err, size_t errsize, ag_status st, const char *fmt, ...) AG_PRINTF(4, 5);
/* The same with a "<what>: <name>: " prefix, as the file formats report ("load: run.ck: ..."; name
 * NULL: "<memory>"; "": no name). */
ag_status ag_ext_buf_fail(char *err, size_t errsize, ag_status st, const char *what, const char *name,
                          const char *fmt, ...) AG_PRINTF(6, 7);

/* Record the failure of an op builder on t ("<builder>: <message>" is the caller's format) and
 * return st: the result is missing, so backward refuses until ag_tape_clear_error, as after a
 * failed ag_apply. A NULL t records nothing. */
ag_status ag_ext_op_fail(ag_tape *t, ag_status st, const char *fmt, ...) AG_PRINTF(3, 4);
/* NULL for a builder whose input is missing while t already holds an error (that message stays):
 * the result is missing all the same, so backward refuses. */
ag_tensor *ag_ext_op_missing(ag_tape *t);

/* Record a failure on the store (ag_params_status/errmsg), as ag_params_add does, for builders that
 * fail before adding anything; returns st. A NULL ps records nothing. */
ag_status ag_ext_params_fail(ag_params *ps, ag_status st, const char *fmt, ...) AG_PRINTF(3, 4);

/* Tell the engine that the caller has just set every element of param->grad to zero (an optimizer
 * clearing gradients in its own update pass), as ag_params_zero_grad would: the next backward may
 * then hand that parameter's gradient straight to a gradient sink. Without the call only that
 * shortcut is lost. Does nothing for NULL or a tensor that is not a parameter. */
void ag_ext_grad_zeroed(ag_tensor *param);

#ifdef __cplusplus
}
#endif
#endif /* AG_EXT_H */

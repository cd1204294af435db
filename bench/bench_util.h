/* bench_util.h - the clocks, the median and the denormal switch every benchmark program here uses
 * (header-only). */
#ifndef AG_BENCH_UTIL_H
#define AG_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

/* The compiler of this build (and so of the library built with it): kernels' speed depends on it. */
#define BENCH_STR_(x) #x
#define BENCH_STR(x) BENCH_STR_(x)
#if defined(__clang__)
#define BENCH_COMPILER "clang " BENCH_STR(__clang_major__) "." BENCH_STR(__clang_minor__) "." BENCH_STR(__clang_patchlevel__)
#elif defined(__GNUC__)
#define BENCH_COMPILER "gcc " __VERSION__
#else
#define BENCH_COMPILER "unknown compiler"
#endif

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double now_ns(void) { return now_s() * 1e9; }

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v and returns its median. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* --flush-denormal: FTZ (MXCSR bit 15) and DAZ (bit 6), as the torch twins' set_flush_denormal. */
static inline void flush_denormals(int on) {
#ifdef HAVE_MXCSR
    if (on) _mm_setcsr(_mm_getcsr() | 0x8040);
#else
    if (on) fprintf(stderr, "warning: --flush-denormal is only implemented on x86; ignored\n");
#endif
}

static inline int denormals_flushed(void) {
#ifdef HAVE_MXCSR
    return (_mm_getcsr() & 0x8040) == 0x8040;
#else
    return 0;
#endif
}

#endif

/* kernels.h - internal interface of the compute kernels: the GEMM micro-kernel table, the thread pool,
 * per-thread scratch buffers and test hooks. Public entry points (ag_gemm, ag_set_threads, ...) are in ag.h.
 * Read gemm.c (blocking driver) next, then gemm_x86.c (SIMD micro-kernels), then threads.c. */
#ifndef AG_KERNELS_H
#define AG_KERNELS_H

#include <stddef.h>

#include "../base.h"   /* ag.h, allocator hooks */

/* ---- thread pool (threads.c) ----
 * One process-wide pool of pthreads. The caller of ag__parallel_for always works too (as thread `base`),
 * workers sleep on a condition variable between jobs. Calls from inside a task run serially on the calling
 * worker, so nesting is safe. User threads may call concurrently: each has its own scratch as slot 0, and
 * a job that uses workers holds the pool (other user threads' jobs wait) from ag__parallel_begin to _end. */
typedef void (*ag__task_fn)(void *ctx, size_t task, int thread);

#define AG__MAX_THREADS 64

/* A planned parallel call: `thread` arguments will be slots in [base, base + used). */
typedef struct {
    int base, used;
    int held;   /* the pool is held: release with ag__parallel_end */
} ag__par;

/* Plans n_tasks from this thread; with more than one thread it holds the pool until ag__parallel_end,
 * so the caller can size the workers' scratch (ag__thread_scratch) before ag__parallel_run. */
ag__par ag__parallel_begin(size_t n_tasks);
/* Runs fn(ctx, t, thread) for every t in [0, n_tasks) and returns when all are done; `thread` is stable
 * for the duration of the task. */
void ag__parallel_run(const ag__par *p, size_t n_tasks, ag__task_fn fn, void *ctx);
void ag__parallel_end(ag__par *p);
/* begin, run, end */
void ag__parallel_for(size_t n_tasks, ag__task_fn fn, void *ctx);

/* Grow-only scratch buffer `slot` (0 .. AG__SCRATCH_SLOTS-1; the GEMM uses 3 per nesting level: A, B, shared) owned by
 * pool slot `thread` (0: the calling user thread's own), 64-byte aligned, contents not preserved when it grows.
 * A worker's (thread > 0) only while the pool is held. Returns NULL if it had to grow and could not (the old
 * buffer is released then). A user thread's are freed when it exits, or by ag__threads_shutdown. */
#define AG__SCRATCH_SLOTS 6
void *ag__thread_scratch(int thread, int slot, size_t bytes);

/* Joins the workers and frees their scratch and the calling thread's. The pool restarts lazily on the next
 * parallel call. */
void ag__threads_shutdown(void);

/* ---- GEMM kernels (gemm.c, gemm_x86.c) ----
 * Packed layouts: an A micro-panel is kc steps of MR values (rows of op(A)), a B micro-panel is kc steps of
 * NR values (columns of op(B)); both are zero-padded to MR/NR. */

/* C[mr x nr] = alpha * Apanel * Bpanel + beta * C, with mr <= MR and nr <= NR; beta == 0 does not read C. */
typedef void (*ag__ukr_fn)(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc,
                           int mr, int nr, ag_real alpha, ag_real beta);

/* The same with op(B) = B read in place: k step p of the micro-panel is b + p * ldb, only nr columns read.
 * Same operations in the same order as ukr on the packed panel, so results are identical. */
typedef void (*ag__ukr_bs_fn)(size_t kc, const ag_real *a, const ag_real *b, size_t ldb, ag_real *c, size_t ldc,
                              int mr, int nr, ag_real alpha, ag_real beta);

/* The same as ukr for a full-height tile (mr = MR) with op(A) = A read in place instead of from a packed panel:
 * row r of the panel at a + r * lda, kc values. Same operations in the same order as ukr, so results are
 * identical. */
typedef void (*ag__ukr_as_fn)(size_t kc, const ag_real *a, size_t lda, const ag_real *b, ag_real *c, size_t ldc,
                              int nr, ag_real alpha, ag_real beta);

/* For C = A B^T with few rows of A, the tile of C^T = B A^T: `rows` (<= MR) rows of B read in place (row r at
 * b + r * ldb, kc values) against a packed panel of nr (<= NR) rows of A in the B micro-panel layout (packed by
 * pack_b with trans_b = 1). Stores C[i][j] = alpha * sum + beta * C[i][j] at c + i * ldc + j, i < nr, j < rows. */
typedef void (*ag__ukr_t_fn)(size_t kc, const ag_real *b, size_t ldb, const ag_real *ap, ag_real *c, size_t ldc,
                             int rows, int nr, ag_real alpha, ag_real beta);

/* Packs op(B)[p0 .. p0+kc) x [j0 .. j0+nc) into ceil(nc/NR) micro-panels at dst. */
typedef void (*ag__packb_fn)(int trans_b, const ag_real *b, size_t ldb, size_t p0, size_t kc,
                             size_t j0, size_t nc, ag_real *dst);
/* Packs op(A)[i0 .. i0+mc) x [p0 .. p0+kc) into ceil(mc/MR) micro-panels at dst. */
typedef void (*ag__packa_fn)(int trans_a, const ag_real *a, size_t lda, size_t i0, size_t mc,
                             size_t p0, size_t kc, ag_real *dst);

/* Unpacked product for C[i0:i1, j0:j1], used for skinny shapes (see gemm.c use_direct): any op(A) with
 * op(B) = B, or op(A) = A with op(B) = B^T. */
typedef void (*ag__direct_fn)(int trans_a, int trans_b, size_t i0, size_t i1, size_t j0, size_t j1, size_t k,
                              ag_real alpha, const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                              ag_real beta, ag_real *c, size_t ldc);

typedef struct ag__gemm_kernel {
    const char *name;     /* "avx512", "avx2", "portable" */
    int mr, nr;           /* register tile */
    size_t mc, kc, nc;    /* cache blocks: A block mc x kc, B block kc x nc (L2) */
    ag__ukr_fn ukr;
    ag__ukr_bs_fn ukr_bs; /* NULL: B is always packed */
    ag__ukr_as_fn ukr_as; /* NULL: A is always packed */
    ag__ukr_t_fn ukr_t;   /* NULL: no transposed small-m path for A B^T */
    ag__packa_fn pack_a;  /* NULL: generic C packing */
    ag__packb_fn pack_b;  /* NULL: generic C packing */
    ag__direct_fn direct; /* NULL: always pack */
} ag__gemm_kernel;

extern const ag__gemm_kernel ag__gemm_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const ag__gemm_kernel ag__gemm_avx2, ag__gemm_avx512;
#endif

/* Forces a kernel path by name ("portable", "avx2", "avx512"); NULL restores the automatic choice
 * (which honours env AG_KERNEL). Returns 0 if the requested path is now in use, -1 if the CPU cannot run it
 * or the name is unknown (the best available path is used instead). */
int ag__kernel_force(const char *name);

/* Generic packing used when a kernel has no specialised packer. */
void ag__pack_a_generic(int mr, int trans_a, const ag_real *a, size_t lda, size_t i0, size_t mc,
                        size_t p0, size_t kc, ag_real *dst);
void ag__pack_b_generic(int nr, int trans_b, const ag_real *b, size_t ldb, size_t p0, size_t kc,
                        size_t j0, size_t nc, ag_real *dst);

/* mr * nr of every kernel is at most this (the per-thread tile buffer of ag_gemm_tiles) */
#define AG__GEMM_TILE_MAX 512

/* Products below this many flops (2mnk) stay on one thread: waking a sleeping worker costs ~10-30 us on
 * this VM, about what a second core saves on an 8 Mflop product (~40 us on one core). */
#define AG__GEMM_PAR_FLOPS 8000000.0

#endif

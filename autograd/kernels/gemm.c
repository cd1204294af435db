/* gemm.c - ag_gemm: packed, cache-blocked matrix product C = alpha op(A) op(B) + beta C (row-major).
 *
 * Loop nest (Goto/BLIS style, mirrored for row-major C so SIMD vectors run along a row of C):
 *   pc over k by KC      (the k-blocking depends on k only, so the summation order never changes)
 *     jc over n by NC    B block  kc x nc  packed, stays in L2
 *       ic over m by MC  A block  mc x kc  packed (op(A) = A: read in place, only a partial panel packed;
 *                                            see a_inplace)
 *         ir by MR       A micro-panel MR x kc
 *           jr by NR     B micro-panel kc x NR streams from L2 -> micro-kernel on an MR x NR tile of C
 * Threads split C into disjoint row or column strips (whole tiles) and run this nest on their strip, each
 * packing its own blocks (AG__SHARE_SPIN); a single task packs the operand it reuses once, whole (see
 * shared_panel). Packing only copies and the k blocking depends on k alone, so every C element sees the same
 * operations for any thread count.
 * Micro-kernels live in gemm_x86.c; this file has the portable one, the packing and the dispatch. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* ---- portable micro-kernel: plain C, the compiler vectorises the NR loop ---- */
#define P_MR 4
#define P_NR 8

static void store_portable(ag_real acc[P_MR][P_NR], ag_real *c, size_t ldc, int mr, int nr, ag_real alpha,
                           ag_real beta) {
    for (int i = 0; i < mr; i++) {
        ag_real *ci = c + (size_t)i * ldc;
        if (beta == 0)
            for (int j = 0; j < nr; j++) ci[j] = alpha * acc[i][j];
        else
            for (int j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
}

static void ukr_portable(size_t kc, const ag_real *a, const ag_real *b, ag_real *c, size_t ldc,
                         int mr, int nr, ag_real alpha, ag_real beta) {
    ag_real acc[P_MR][P_NR] = {{0}};
    for (size_t p = 0; p < kc; p++) {
        for (int i = 0; i < P_MR; i++)
            for (int j = 0; j < P_NR; j++) acc[i][j] += a[i] * b[j];
        a += P_MR;
        b += P_NR;
    }
    store_portable(acc, c, ldc, mr, nr, alpha, beta);
}

/* B read in place (k step p at b + p * ldb), only nr columns */
static void ukr_bs_portable(size_t kc, const ag_real *a, const ag_real *b, size_t ldb, ag_real *c, size_t ldc,
                            int mr, int nr, ag_real alpha, ag_real beta) {
    ag_real acc[P_MR][P_NR] = {{0}};
    for (size_t p = 0; p < kc; p++) {
        for (int i = 0; i < P_MR; i++)
            for (int j = 0; j < nr; j++) acc[i][j] += a[i] * b[j];
        a += P_MR;
        b += ldb;
    }
    store_portable(acc, c, ldc, mr, nr, alpha, beta);
}

_Static_assert(P_MR * P_NR <= AG__GEMM_TILE_MAX, "tile buffer of ag_gemm_tiles");

const ag__gemm_kernel ag__gemm_portable = {
    .name = "portable", .mr = P_MR, .nr = P_NR, .mc = 128, .kc = 256, .nc = 1024,
    .ukr = ukr_portable, .ukr_bs = ukr_bs_portable, .pack_a = NULL, .pack_b = NULL,
};

/* ---- packing ---- */

/* A block: rows [i0, i0+mc) of op(A), k range [p0, p0+kc), into MR-row micro-panels (zero-padded). */
void ag__pack_a_generic(int mr_tile, int trans_a, const ag_real *a, size_t lda, size_t i0, size_t mc,
                   size_t p0, size_t kc, ag_real *dst) {
    const size_t MR = (size_t)mr_tile;
    for (size_t r0 = 0; r0 < mc; r0 += MR, dst += MR * kc) {
        size_t mr = mc - r0 < MR ? mc - r0 : MR;
        if (trans_a) {   /* A is k x m: the MR values of one k step are contiguous */
            const ag_real *src = a + p0 * lda + i0 + r0;
            for (size_t p = 0; p < kc; p++, src += lda) {
                ag_real *d = dst + p * MR;
                for (size_t r = 0; r < mr; r++) d[r] = src[r];
                for (size_t r = mr; r < MR; r++) d[r] = 0;
            }
        } else {         /* A is m x k: walk MR rows side by side */
            for (size_t r = 0; r < mr; r++) {
                const ag_real *src = a + (i0 + r0 + r) * lda + p0;
                for (size_t p = 0; p < kc; p++) dst[p * MR + r] = src[p];
            }
            for (size_t r = mr; r < MR; r++)
                for (size_t p = 0; p < kc; p++) dst[p * MR + r] = 0;
        }
    }
}

void ag__pack_b_generic(int nr_tile, int trans_b, const ag_real *b, size_t ldb, size_t p0, size_t kc,
                        size_t j0, size_t nc, ag_real *dst) {
    const size_t NR = (size_t)nr_tile;
    for (size_t c0 = 0; c0 < nc; c0 += NR, dst += NR * kc) {
        size_t nr = nc - c0 < NR ? nc - c0 : NR;
        if (!trans_b) {  /* B is k x n: one k step of the panel is a contiguous piece of a row */
            const ag_real *src = b + p0 * ldb + j0 + c0;
            for (size_t p = 0; p < kc; p++, src += ldb) {
                ag_real *d = dst + p * NR;
                memcpy(d, src, nr * sizeof *d);
                for (size_t j = nr; j < NR; j++) d[j] = 0;
            }
        } else {         /* B is n x k: transpose NR rows */
            for (size_t j = 0; j < nr; j++) {
                const ag_real *src = b + (j0 + c0 + j) * ldb + p0;
                for (size_t p = 0; p < kc; p++) dst[p * NR + j] = src[p];
            }
            for (size_t j = nr; j < NR; j++)
                for (size_t p = 0; p < kc; p++) dst[p * NR + j] = 0;
        }
    }
}

/* ---- dispatch ---- */

static const ag__gemm_kernel *g_kernel;   /* path in use */
static pthread_once_t g_kernel_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static int cpu_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}
static int cpu_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Best path the CPU runs, capped by `name` if given ("avx2" never picks avx512). */
static const ag__gemm_kernel *pick(const char *name, int *honoured) {
    const ag__gemm_kernel *k = &ag__gemm_portable;
    int want = 2;   /* 0 portable, 1 avx2, 2 avx512 */
    if (name && strcmp(name, "portable") == 0) want = 0;
    else if (name && strcmp(name, "avx2") == 0) want = 1;
    int got = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (want >= 2 && cpu_avx512()) { k = &ag__gemm_avx512; got = 2; }
    else if (want >= 1 && cpu_avx2()) { k = &ag__gemm_avx2; got = 1; }
#endif
    if (honoured)
        *honoured = name && strcmp(k->name, name) == 0 && got == want;
    return k;
}

static void kernel_init(void) {
    const char *env = getenv("AG_KERNEL");
    g_kernel = pick(env && *env ? env : NULL, NULL);
}

static const ag__gemm_kernel *kernel(void) {
    pthread_once(&g_kernel_once, kernel_init);
    return g_kernel;
}

int ag__kernel_force(const char *name) {
    int ok = 0;
    kernel();   /* run the one-time init first so it cannot overwrite the choice later */
    if (!name) {
        kernel_init();
        return 0;
    }
    g_kernel = pick(name, &ok);
    return ok ? 0 : -1;
}

const char *ag_kernel_name(void) { return kernel()->name; }

/* ---- driver ---- */

/* In a column split every task needs all of op(A), in a row split all of op(B). That shared operand is packed
 * once per product into one buffer, a micro-panel at a time by whichever task needs it first (one flag per
 * panel: 0 free, 1 being packed, 2 ready), so tasks never wait at a barrier and nothing is packed twice.
 * Above this size each task packs its own copies instead (the old Goto scheme, re-packing per block). */
#define AG__SHARED_MAX_BYTES ((size_t)32 << 20)
/* Share the packed operand between tasks (1) or let every task pack its own blocks (0, Goto's scheme). Sharing
 * packs each panel once, but a task that needs a panel another is packing waits for it, spinning; on a VM the
 * hypervisor deschedules a vCPU that spins (pause-loop exiting), and the two tasks that march through the same
 * panels in step keep waiting on each other. Measured on the 2-vCPU VM, 2 threads against 1: square 512 0.99x
 * shared, 1.60x own copies; 1024 1.38x -> 1.80x; dY W 128x784x256 0.97x -> 1.64x. One task always packs the
 * whole operand once (no waiting). Results are identical either way: packing only copies. */
#ifndef AG__SHARE_SPIN
#define AG__SHARE_SPIN 0
#endif

typedef struct {
    const ag__gemm_kernel *kr;
    int ta, tb;
    size_t m, n, k;
    ag_real alpha, beta;
    const ag_real *a, *b;
    size_t lda, ldb, ldc;
    ag_real *c;
    size_t kc;            /* k block, a function of k only: fixes the summation order */
    size_t mc, nc;        /* m and n blocks of the task-local packing */
    int direct;           /* unpacked kernel (kr->direct) instead of the packed nest */
    int b_inplace;        /* op(B) = B read in place by kr->ukr_bs (few rows of A: packing B would not pay) */
    int a_inplace;        /* op(A) = A read in place by kr->ukr_as on the packed path (full-height tiles) */
    int t_small;          /* A B^T with few rows of A: C^T tiles by kr->ukr_t, B read in place, only A packed */
    int split_n;          /* tasks are column strips (else row strips) */
    size_t strip;         /* strip width in rows or columns, a multiple of the tile */
    ag_real *sh;          /* shared packed op(A) (split_n) or op(B), or NULL */
    atomic_uchar *flags;  /* [k block][panel] state of sh */
    size_t sh_len;        /* rows (or columns) of sh: m (or n) rounded up to the tile */
    size_t sh_panels;     /* sh_len / tile */
    ag_gemm_tile_fn fn;       /* ag_gemm_tiles: finished tiles go here (c is then its `work`); NULL for ag_gemm */
    void *fn_ctx;
    int level;            /* nesting level: scratch slots GEMM_SLOTS * level .. (see gemm_level) */
} gemm_job;

/* A product started from inside another one (a tile callback, such as a gradient sink's consume,
 * calling ag_gemm) must not reuse the scratch the outer product is still reading: each level of
 * nesting has its own scratch slots. gemm_level is the level a product started on this thread
 * gets; the tasks of a product set it for their own thread while they run. */
#define GEMM_SLOTS 3 /* per level: A, B, shared */
#define GEMM_LEVELS (AG__SCRATCH_SLOTS / GEMM_SLOTS)
static _Thread_local int gemm_level;

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* A buffer could not be had: release the pool (if held) and report it; C is still untouched. */
static ag_status gemm_nomem(ag__par *par) {
    ag__parallel_end(par);
    return AG_ERR_NOMEM;
}

/* Even blocks no larger than `max`, rounded up to `mult`: avoids a thin last block (784 -> 392+392). */
static size_t balanced_block(size_t len, size_t max, size_t mult) {
    if (len <= max) return round_up(len, mult);
    return round_up(ceil_div(len, ceil_div(len, max)), mult);
}

static void pack_a_any(const gemm_job *J, size_t i0, size_t mc, size_t pc, size_t kc, ag_real *dst) {
    if (J->kr->pack_a) J->kr->pack_a(J->ta, J->a, J->lda, i0, mc, pc, kc, dst);
    else ag__pack_a_generic(J->kr->mr, J->ta, J->a, J->lda, i0, mc, pc, kc, dst);
}

static void pack_b_any(const gemm_job *J, size_t pc, size_t kc, size_t j0, size_t nc, ag_real *dst) {
    if (J->kr->pack_b) J->kr->pack_b(J->tb, J->b, J->ldb, pc, kc, j0, nc, dst);
    else ag__pack_b_generic(J->kr->nr, J->tb, J->b, J->ldb, pc, kc, j0, nc, dst);
}

/* Rows [i0, i0+cnt) of A (k block at pc) as NR-wide panels in the B micro-panel layout (the t_small path). */
static void pack_at(const gemm_job *J, size_t pc, size_t kc, size_t i0, size_t cnt, ag_real *dst) {
    if (J->kr->pack_b) J->kr->pack_b(1, J->a, J->lda, pc, kc, i0, cnt, dst);
    else ag__pack_b_generic(J->kr->nr, 1, J->a, J->lda, pc, kc, i0, cnt, dst);
}

/* Waiting only ever covers another thread packing one micro-panel (microseconds); yield if it takes
 * longer, e.g. because that thread was descheduled. */
static void spin_pause(unsigned *spins) {
    if (++*spins > 2000) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Panel `idx` of the k block at pc in the shared buffer, packed on first use. */
static const ag_real *shared_panel(const gemm_job *J, size_t pc, size_t kc, size_t idx) {
    size_t tile = (size_t)(J->split_n && !J->t_small ? J->kr->mr : J->kr->nr);
    ag_real *p = J->sh + J->sh_len * pc + idx * tile * kc;
    atomic_uchar *f = &J->flags[pc / J->kc * J->sh_panels + idx];
    if (atomic_load_explicit(f, memory_order_acquire) == 2) return p;
    unsigned char expect = 0;
    if (atomic_compare_exchange_strong_explicit(f, &expect, 1, memory_order_acquire, memory_order_acquire)) {
        size_t lo = idx * tile;
        if (J->t_small) pack_at(J, pc, kc, lo, min_sz(tile, J->m - lo), p);
        else if (J->split_n) pack_a_any(J, lo, min_sz(tile, J->m - lo), pc, kc, p);
        else pack_b_any(J, pc, kc, lo, min_sz(tile, J->n - lo), p);
        atomic_store_explicit(f, 2, memory_order_release);
        return p;
    }
    unsigned spins = 0;
    while (atomic_load_explicit(f, memory_order_acquire) != 2) spin_pause(&spins);
    return p;
}

/* C[i0:i1, j0:j1] of the product; loops as in the file comment, with one operand from the shared buffer.
 * With J->fn (ag_gemm_tiles) each micro-tile goes to fn after its last k block: when k is a single block it is
 * computed into tbuf (MR x NR, stays in L1) and never touches C (= work), else it is accumulated in C as usual
 * and handed over from there. */
static void gemm_strip(const gemm_job *J, size_t i0, size_t i1, size_t j0, size_t j1, ag_real *abuf,
                       ag_real *bbuf, ag_real *tbuf) {
    const ag__gemm_kernel *kr = J->kr;
    const size_t MR = (size_t)kr->mr, NR = (size_t)kr->nr;
    const int sh_a = J->sh && J->split_n, sh_b = J->sh && !J->split_n;
    const int hot = J->fn && J->k <= J->kc;
    for (size_t pc = 0; pc < J->k; pc += J->kc) {
        size_t kc = min_sz(J->k - pc, J->kc);
        ag_real beta = pc == 0 ? J->beta : (ag_real)1;
        const int deliver = J->fn && pc + kc == J->k;
        for (size_t jc = j0; jc < j1; jc += J->nc) {
            size_t nc = min_sz(j1 - jc, J->nc);
            if (!sh_b && !J->b_inplace) pack_b_any(J, pc, kc, jc, nc, bbuf);
            if (J->b_inplace) {   /* few A micro-panels: each B micro-panel serves all of them while in L1 */
                const ag_real *a0 = sh_a ? NULL : abuf;
                if (!sh_a) pack_a_any(J, i0, i1 - i0, pc, kc, abuf);
                for (size_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)min_sz(nc - jr, NR);
                    const ag_real *bp = J->b + pc * J->ldb + jc + jr;
                    for (size_t ir = i0; ir < i1; ir += MR) {
                        const ag_real *ap = sh_a ? shared_panel(J, pc, kc, ir / MR) : a0 + (ir - i0) * kc;
                        int mr = (int)min_sz(i1 - ir, MR);
                        ag_real *cp = hot ? tbuf : J->c + ir * J->ldc + jc + jr;
                        size_t ldc = hot ? NR : J->ldc;
                        kr->ukr_bs(kc, ap, bp, J->ldb, cp, ldc, mr, nr, J->alpha, beta);
                        if (deliver) J->fn(J->fn_ctx, ir, jc + jr, (size_t)mr, (size_t)nr, cp, ldc);
                    }
                }
                continue;
            }
            for (size_t ic = i0; ic < i1; ic += J->mc) {
                size_t mc = min_sz(i1 - ic, J->mc);
                /* with A read in place only a last, partial panel is packed */
                size_t full = J->a_inplace ? mc / MR * MR : 0;
                if (!sh_a && full < mc) pack_a_any(J, ic + full, mc - full, pc, kc, abuf + full * kc);
                for (size_t ir = 0; ir < mc; ir += MR) {
                    int mr = (int)min_sz(mc - ir, MR);
                    const int inplace = ir < full;
                    const ag_real *ap = inplace ? J->a + (ic + ir) * J->lda + pc
                                        : sh_a  ? shared_panel(J, pc, kc, (ic + ir) / MR)
                                                : abuf + ir * kc;
                    ag_real *crow = J->c + (ic + ir) * J->ldc + jc;
                    for (size_t jr = 0; jr < nc; jr += NR) {
                        int nr = (int)min_sz(nc - jr, NR);
                        const ag_real *bp = sh_b ? shared_panel(J, pc, kc, (jc + jr) / NR) : bbuf + jr * kc;
                        ag_real *cp = hot ? tbuf : crow + jr;
                        size_t ldc = hot ? NR : J->ldc;
                        if (inplace) kr->ukr_as(kc, ap, J->lda, bp, cp, ldc, nr, J->alpha, beta);
                        else kr->ukr(kc, ap, bp, cp, ldc, mr, nr, J->alpha, beta);
                        if (deliver) J->fn(J->fn_ctx, ic + ir, jc + jr, (size_t)mr, (size_t)nr, cp, ldc);
                    }
                }
            }
        }
    }
}

/* C[:, j0:j1] of A B^T with few rows of A: all of A (k block) packed as NR-wide panels (by this task into abuf,
 * or once per product into the shared buffer when several tasks run), then for each MR rows of B (outermost,
 * so they stay in L1) every A panel; the kernel computes the C^T tile and stores it transposed. With J->fn,
 * tiles go to fn as in gemm_strip (tbuf then holds an NR x MR tile of C). */
static void gemm_t_strip(const gemm_job *J, size_t j0, size_t j1, ag_real *abuf, ag_real *tbuf) {
    const ag__gemm_kernel *kr = J->kr;
    const size_t MR = (size_t)kr->mr, NR = (size_t)kr->nr;
    const int hot = J->fn && J->k <= J->kc;
    for (size_t pc = 0; pc < J->k; pc += J->kc) {
        size_t kc = min_sz(J->k - pc, J->kc);
        ag_real beta = pc == 0 ? J->beta : (ag_real)1;
        const int deliver = J->fn && pc + kc == J->k;
        if (!J->sh) pack_at(J, pc, kc, 0, J->m, abuf);
        for (size_t j = j0; j < j1; j += MR)
            for (size_t i = 0; i < J->m; i += NR) {
                const ag_real *ap = J->sh ? shared_panel(J, pc, kc, i / NR) : abuf + i * kc;
                int rows = (int)min_sz(j1 - j, MR), nr = (int)min_sz(J->m - i, NR);
                ag_real *cp = hot ? tbuf : J->c + i * J->ldc + j;
                size_t ldc = hot ? MR : J->ldc;
                kr->ukr_t(kc, J->b + j * J->ldb + pc, J->ldb, ap, cp, ldc, rows, nr, J->alpha, beta);
                if (deliver) J->fn(J->fn_ctx, i, j, (size_t)nr, (size_t)rows, cp, ldc);
            }
    }
}

/* Direct blocks for ag_gemm_tiles: at most this many values, DIRECT_ROWS rows x 128 columns (256 for 6 rows or
 * fewer), computed into a stack buffer and handed to fn. The direct kernels compute every element from its row
 * of op(A) and column of op(B) alone, in the same order whatever the block bounds, so blocks change nothing. */
#define DIRECT_ROWS 12
#define DIRECT_BLOCK (DIRECT_ROWS * 128)

static void direct_tiles(const gemm_job *J, size_t i0, size_t i1, size_t j0, size_t j1) {
    _Alignas(64) ag_real buf[DIRECT_BLOCK];
    for (size_t i = i0; i < i1; i += DIRECT_ROWS) {
        size_t rows = min_sz(i1 - i, DIRECT_ROWS), width = rows <= DIRECT_ROWS / 2 ? 256 : 128;
        const ag_real *ai = J->a + (J->ta ? i : i * J->lda);
        for (size_t j = j0; j < j1; j += width) {
            size_t cols = min_sz(j1 - j, width);
            const ag_real *bj = J->b + (J->tb ? j * J->ldb : j);
            J->kr->direct(J->ta, J->tb, 0, rows, 0, cols, J->k, J->alpha, ai, J->lda, bj, J->ldb, 0, buf, cols);
            J->fn(J->fn_ctx, i, j, rows, cols, buf, cols);
        }
    }
}

static void gemm_task_at(const gemm_job *J, size_t task, int thread);
static void gemm_task(void *ctx, size_t task, int thread) {
    const gemm_job *J = ctx;
    int saved = gemm_level;
    gemm_level = J->level + 1; /* a product its tile callback starts is one level deeper */
    gemm_task_at(J, task, thread);
    gemm_level = saved;
}

static void gemm_task_at(const gemm_job *J, size_t task, int thread) {
    size_t lo = task * J->strip;
    _Alignas(64) ag_real tbuf[AG__GEMM_TILE_MAX];   /* ag_gemm_tiles: the micro-tile handed to fn */
    if (J->t_small) {
        gemm_t_strip(J, lo, min_sz(lo + J->strip, J->n), ag__thread_scratch(thread, GEMM_SLOTS * J->level, 0),
                     tbuf);
        return;
    }
    if (J->direct) {
        size_t i0 = 0, i1 = J->m, j0 = 0, j1 = J->n;
        if (J->split_n) j0 = lo, j1 = min_sz(lo + J->strip, J->n);
        else i0 = lo, i1 = min_sz(lo + J->strip, J->m);
        if (J->fn) direct_tiles(J, i0, i1, j0, j1);
        else J->kr->direct(J->ta, J->tb, i0, i1, j0, j1, J->k, J->alpha, J->a, J->lda, J->b, J->ldb, J->beta,
                           J->c, J->ldc);
        return;
    }
    ag_real *abuf = ag__thread_scratch(thread, GEMM_SLOTS * J->level, 0); /* sized by gemm_run beforehand */
    ag_real *bbuf = ag__thread_scratch(thread, GEMM_SLOTS * J->level + 1, 0);
    if (J->split_n)
        gemm_strip(J, 0, J->m, lo, min_sz(lo + J->strip, J->n), abuf, bbuf, tbuf);
    else
        gemm_strip(J, lo, min_sz(lo + J->strip, J->m), 0, J->n, abuf, bbuf, tbuf);
}

/* Skinny or small products where packing would cost about as much as the FMAs: few rows of A, a short
 * k, up to ~100^3 with B as stored, or a narrow B^T (the output layer). Depends on the shape only, so results stay independent of threads. */
static int use_direct(const ag__gemm_kernel *kr, int ta, int tb, size_t m, size_t n, size_t k) {
    if (!kr->direct) return 0;
    if (!tb) return m <= (size_t)kr->mr || k <= 16 || (double)m * (double)n * (double)k <= 1e6;
    return !ta && (m <= 4 || n <= 16);
}

/* op(B) = B read in place instead of packed when A has at most this many rows (its tiles reuse each B panel
 * too few times to amortise packing it). Shape only, and ukr_bs does what ukr does on the packed panel, so
 * results do not depend on it or on the thread count. */
static size_t bs_max_m(const ag__gemm_kernel *kr) {
    return (size_t)kr->mr * 4;   /* avx512 48 rows: +10-15% at 32 x 784 x 256..512, even at 48-64, -10% at 96+ */
}

/* A B^T takes the transposed small-m kernel (kr->ukr_t) up to this many rows of A: avx512 128 rows (+32-38% at
 * 32 x 256..512 x 784, +10-15% at 64-128 rows, -3% at 256). */
static size_t t_max_m(const ag__gemm_kernel *kr) {
    return (size_t)kr->nr * 4;
}

/* C = beta C for the degenerate cases (k == 0 or alpha == 0); beta == 0 writes zeros without reading. */
static void scale_c(size_t m, size_t n, ag_real beta, ag_real *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        ag_real *ci = c + i * ldc;
        if (beta == 0) for (size_t j = 0; j < n; j++) ci[j] = 0;
        else if (beta != 1) for (size_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* Argument checks shared by ag_gemm and ag_gemm_tiles (c, ldc: the output or the work matrix). */
static ag_status gemm_check(int trans_a, int trans_b, size_t m, size_t n, size_t k, const ag_real *a, size_t lda,
                            const ag_real *b, size_t ldb, const ag_real *c, size_t ldc) {
    if (!c || ldc < n) return AG_ERR_ARG;
    /* an operand whose extent (rows x leading dimension) overflows size_t cannot exist */
    const size_t max_elems = SIZE_MAX / sizeof(ag_real);
    if (m > max_elems / ldc) return AG_ERR_ARG;
    if (k > 0) {
        if (!a || !b) return AG_ERR_ARG;
        if (lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return AG_ERR_ARG;
        if ((trans_a ? k : m) > max_elems / lda || (trans_b ? n : k) > max_elems / ldb) return AG_ERR_ARG;
    }
    return AG_OK;
}

/* How the product is cut, from its shape and the thread count only (so results do not depend on threads):
 * J's k/m/n blocks, the path flags (split_n, b_inplace, t_small, a_inplace) and the strip width. Returns the
 * number of tasks. */
static size_t gemm_plan(gemm_job *J, double flops) {
    const ag__gemm_kernel *kr = J->kr;
    const size_t MR = (size_t)kr->mr, NR = (size_t)kr->nr, m = J->m, n = J->n;
    J->kc = balanced_block(J->k, kr->kc, 1);
    J->mc = balanced_block(m, kr->mc, MR);
    J->nc = balanced_block(n, kr->nc, NR);

    /* Strips of whole tiles along the larger side, two per thread: a thread that is descheduled (the VM's
     * second core is shared) then holds up less work, while strips stay wide enough to reuse each shared A
     * micro-panel over several B panels (four per thread measured 5-10% slower when the second core was
     * busy); none below ~1 Mflop. */
    size_t tasks = 1;
    int threads = ag_get_threads();
    if (threads > 1 && flops >= AG__GEMM_PAR_FLOPS) {
        tasks = (size_t)threads * 2;
        size_t by_work = (size_t)(flops / 1e6);
        if (tasks > by_work) tasks = by_work;
        if (tasks < 2) tasks = 2;
    }
    J->split_n = n >= m;
    J->b_inplace = !J->direct && !J->tb && kr->ukr_bs && J->split_n && m <= bs_max_m(kr);
    J->t_small = !J->direct && J->tb && !J->ta && kr->ukr_t && J->split_n && m <= t_max_m(kr);
    J->a_inplace = !J->direct && !J->b_inplace && !J->t_small && !J->ta && kr->ukr_as;
    size_t len = J->split_n ? n : m, tile = J->split_n ? NR : MR;
    if (J->direct) tile = J->split_n ? 64 : 12;   /* whole direct tiles */
    if (J->t_small) tile = MR;                    /* whole C^T tiles */
    size_t tiles = ceil_div(len, tile);
    if (tasks > tiles) tasks = tiles;
    J->strip = ceil_div(tiles, tasks) * tile;
    tasks = ceil_div(len, J->strip);
    if (J->split_n && J->nc > J->strip) J->nc = J->strip;
    if (!J->split_n && J->mc > J->strip) J->mc = J->strip;
    return tasks;
}

/* The shared packed operand (sh_bytes) and its panel flags (flag_bytes, all "not packed") in the first task's
 * scratch; 0 when there is no memory for them. */
static int gemm_take_shared(gemm_job *J, const ag__par *par, size_t sh_bytes, size_t flag_bytes) {
    char *sh = ag__thread_scratch(par->base, GEMM_SLOTS * J->level + 2, sh_bytes + flag_bytes);
    if (!sh) return 0;
    J->sh = (ag_real *)(void *)sh;
    J->flags = (atomic_uchar *)(sh + sh_bytes);
    for (size_t i = 0; i < flag_bytes; i++) atomic_init(&J->flags[i], 0);
    return 1;
}

/* The t_small path: one task packs A (few rows) for itself; several share one packed copy if it fits. */
static ag_status gemm_run_t_small(gemm_job *J, size_t tasks) {
    const size_t NR = (size_t)J->kr->nr, k = J->k;
    J->sh_len = round_up(J->m, NR);
    J->sh_panels = J->sh_len / NR;
    size_t sh_bytes = J->sh_len * k * sizeof(ag_real), flag_bytes = ceil_div(k, J->kc) * J->sh_panels;
    /* several tasks each pack their own copy: sharing one makes tasks wait on each other
     * (see AG__SHARE_SPIN) */
    int shared = tasks > 1 && AG__SHARE_SPIN && J->sh_len <= SIZE_MAX / sizeof(ag_real) / k &&
                 sh_bytes + flag_bytes <= AG__SHARED_MAX_BYTES;
    size_t abytes = shared ? 0 : J->sh_len * J->kc * sizeof(ag_real);
    ag__par par = ag__parallel_begin(tasks);
    for (int t = par.base; abytes && t < par.base + par.used; t++)
        if (!ag__thread_scratch(t, GEMM_SLOTS * J->level, abytes)) return gemm_nomem(&par);
    if (shared && !gemm_take_shared(J, &par, sh_bytes, flag_bytes)) return gemm_nomem(&par);
    ag__parallel_run(&par, tasks, gemm_task, J);
    ag__parallel_end(&par);
    return AG_OK;
}

/* The packed loop nest: each task's A and B blocks, and the shared operand, all of op(A) for column strips or
 * all of op(B) for row strips, when one task runs (or AG__SHARE_SPIN) and it fits. */
static ag_status gemm_run_packed(gemm_job *J, size_t tasks) {
    const size_t MR = (size_t)J->kr->mr, NR = (size_t)J->kr->nr, k = J->k;
    J->sh_len = J->split_n ? round_up(J->m, MR) : round_up(J->n, NR);
    J->sh_panels = J->split_n ? J->sh_len / MR : J->sh_len / NR;
    size_t n_kblocks = ceil_div(k, J->kc);
    size_t sh_bytes = J->sh_len * k * sizeof(ag_real);
    size_t flag_bytes = n_kblocks * J->sh_panels;
    int use_shared = (tasks == 1 || AG__SHARE_SPIN) && !(J->split_n && J->a_inplace) &&
                     J->sh_len <= SIZE_MAX / sizeof(ag_real) / k && sh_bytes + flag_bytes <= AG__SHARED_MAX_BYTES;
    if (use_shared) {
        if (J->split_n) J->mc = J->sh_len;   /* A comes whole from the shared buffer */
        else J->nc = J->sh_len;
    }

    /* Allocate every buffer before touching C, so a failure leaves C unchanged. */
    size_t abytes = J->mc * J->kc * sizeof(ag_real), bbytes = J->nc * J->kc * sizeof(ag_real);
    if (use_shared && J->split_n) abytes = 0;
    if ((use_shared && !J->split_n) || J->b_inplace) bbytes = 0;
    ag__par par = ag__parallel_begin(tasks);   /* holds the pool while the workers' scratch is sized */
    for (int t = par.base; t < par.base + par.used; t++)
        if ((abytes && !ag__thread_scratch(t, GEMM_SLOTS * J->level, abytes)) ||
            (bbytes && !ag__thread_scratch(t, GEMM_SLOTS * J->level + 1, bbytes)))
            return gemm_nomem(&par);
    if (use_shared && !gemm_take_shared(J, &par, sh_bytes, flag_bytes)) return gemm_nomem(&par);

    ag__parallel_run(&par, tasks, gemm_task, J);
    ag__parallel_end(&par);
    return AG_OK;
}

/* The product for checked arguments with k > 0, alpha != 0: into C, or with fn to fn tile by tile (C = work). */
static ag_status gemm_run(int trans_a, int trans_b, size_t m, size_t n, size_t k, ag_real alpha,
                          const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                          ag_real beta, ag_real *c, size_t ldc, ag_gemm_tile_fn fn, void *fn_ctx) {
    const ag__gemm_kernel *kr = kernel();
    double flops = 2.0 * (double)m * (double)n * (double)k;
    int direct = use_direct(kr, trans_a != 0, trans_b != 0, m, n, k);

    if (direct && flops < AG__GEMM_PAR_FLOPS && !fn) {   /* tiny products: no setup at all */
        kr->direct(trans_a != 0, trans_b != 0, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return AG_OK;
    }

    gemm_job J = {
        .kr = kr, .ta = trans_a != 0, .tb = trans_b != 0, .m = m, .n = n, .k = k,
        .alpha = alpha, .beta = beta, .a = a, .b = b, .lda = lda, .ldb = ldb, .ldc = ldc, .c = c,
        .direct = direct, .fn = fn, .fn_ctx = fn_ctx, .level = gemm_level,
    };
    /* every level's scratch is in use: nested too deep (a callback of a callback's product) */
    if (J.level >= GEMM_LEVELS) return AG_ERR_STATE;
    if (direct && flops < AG__GEMM_PAR_FLOPS) {   /* the same for ag_gemm_tiles, block by block */
        direct_tiles(&J, 0, m, 0, n);
        return AG_OK;
    }
    size_t tasks = gemm_plan(&J, flops);
    if (J.direct) {
        if (tasks == 1) gemm_task(&J, 0, 0);
        else ag__parallel_for(tasks, gemm_task, &J);
        return AG_OK;
    }
    return J.t_small ? gemm_run_t_small(&J, tasks) : gemm_run_packed(&J, tasks);
}

ag_status ag_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, ag_real alpha,
                  const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                  ag_real beta, ag_real *c, size_t ldc) {
    if (m == 0 || n == 0) return AG_OK;
    ag_status st = gemm_check(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    if (st != AG_OK) return st;
    if (k == 0 || alpha == 0) {
        scale_c(m, n, beta, c, ldc);
        return AG_OK;
    }
    return gemm_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, NULL);
}

/* Zeros for the degenerate products of ag_gemm_tiles, handed over in blocks of ZROWS x ZCOLS. */
#define ZROWS 8
#define ZCOLS 256
static const ag_real g_zeros[ZROWS * ZCOLS];

ag_status ag_gemm_tiles(int trans_a, int trans_b, size_t m, size_t n, size_t k, ag_real alpha,
                         const ag_real *a, size_t lda, const ag_real *b, size_t ldb,
                         ag_real *work, size_t ldw, ag_gemm_tile_fn fn, void *ctx) {
    if (m == 0 || n == 0) return AG_OK;
    if (!fn) return AG_ERR_ARG;
    ag_status st = gemm_check(trans_a, trans_b, m, n, k, a, lda, b, ldb, work, ldw);
    if (st != AG_OK) return st;
    if (k == 0 || alpha == 0) {
        for (size_t i = 0; i < m; i += ZROWS)
            for (size_t j = 0; j < n; j += ZCOLS)
                fn(ctx, i, j, min_sz(m - i, ZROWS), min_sz(n - j, ZCOLS), g_zeros, ZCOLS);
        return AG_OK;
    }
    return gemm_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, 0, work, ldw, fn, ctx);
}

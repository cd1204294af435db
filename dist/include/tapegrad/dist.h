/*
 * dist.h - data-parallel training over MPI with the same bits for any number of processes.
 *
 * OVERVIEW
 *
 * A separate library, tapegrad_dist, built in every configuration: with -DAG_MPI=ON it talks to
 * MPI; without it, it is the one-process case of the same code (a "world" of one rank, reductions
 * are copies). The core library never links MPI.
 *
 * THE RECIPE (why the bits do not depend on the process count P). A step's global batch of k
 * samples is cut into S micro-shards, shard i holding rows [i k / S, (i+1) k / S) of the batch
 * (ag_dist_shard_rows): the cut depends on k and S only, never on P. Each shard's gradient is
 * computed alone (its own forward and backward on the tape, the mean of its own samples' losses),
 * so it is the same bits on whichever rank computes it (the library's kernels give the same bits
 * for any thread count). The batch's gradient is the weighted sum over shards,
 *     g = sum_i (k_i / k) g_i          (docs/backprop-derivation.md: the batch mean (1/K) sum_k,
 *                                       regrouped by shard: (1/k) sum_i k_i mean_i = sum_i w_i mean_i)
 * and that sum is taken in exact integer arithmetic: each w_i g_i is rounded to a fixed-point
 * int64 with frac_bits fractional bits (round to nearest even, in double) and added into an int64
 * accumulator; the ranks' accumulators are summed with MPI_SUM over MPI_INT64_T. Integer addition
 * is associative, so neither the shards' assignment to ranks nor MPI's reduction order can change
 * the sum: P = 1, 2, 3, 4 (or any P) give the same bits, and a run without MPI that uses the same
 * S (one rank doing every shard) is the reference. The sum is turned back into ag_real once.
 *
 * PRECISION AND RANGE. With frac_bits f (default 40) a shard's weighted gradient element is kept
 * to 2^-f (9.1e-13 for 40) and must satisfy |w_i g_i| <= 2^(50-f) (1024 for 40); S <= 4096
 * shards cannot overflow the int64 sum. An element outside the range, or NaN/Inf, is counted as
 * non-finite and makes the reduction report AG_ERR_NUMERIC on every rank (a blow-up, as the
 * optimizer's own check would). The fixed grid is finer than float's rounding for every element
 * above ~1e-5 in magnitude; below 2^-(f+1) an element counts as 0.
 *
 * FAULTS. Every collective is non-blocking, polled with a deadline (timeout_s): a rank that died
 * or hangs makes the others' calls fail with AG_ERR_IO and a message naming the operation and the
 * wait, instead of blocking forever; MPI errors are returned (MPI_ERRORS_RETURN), never fatal.
 * ag_dist_check_same refuses ranks whose settings differ (a hash the caller computes).
 *
 * WORKED EXAMPLE: one step on rank r of P, shards [first, first + count) of S.
 *
 *     ag_dist_grad_begin(d, ps);
 *     for (size_t i = first; i < first + count; i++) {
 *         size_t off, n;
 *         ag_dist_shard_rows(k, S, i, &off, &n);
 *         if (!n) continue;
 *         ...forward on rows [off, off + n) of the batch, loss J_i (mean over those rows)...;
 *         ag_backward(t, J_i);                                   // into the store's grads
 *         ag_dist_grad_add(d, ps, (double)n / (double)k, J_i->value[0]);  // and zeroes them
 *     }
 *     double loss;
 *     if (ag_dist_grad_reduce(d, ps, &loss, NULL) == AG_OK) ag_optim_step(opt);
 */
#ifndef AG_DIST_H
#define AG_DIST_H

#include <stddef.h>
#include <stdint.h>

#include <tapegrad/ag.h>
#include <tapegrad/optim.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_dist ag_dist;

typedef struct ag_dist_config {
    int use_mpi;      /* 1: MPI_Init (a build without MPI refuses it, AG_ERR_ARG); 0: one process */
    int frac_bits;    /* fixed-point fractional bits, 8..48; 0 picks 40 */
    double timeout_s; /* longest wait of one collective, > 0; 0 picks 20 s */
    size_t bucket_bytes; /* ag_dist_backward's buckets (whole tensors, from the store's end); 0: 1 MiB */
    int no_overlap;      /* 1: buckets are reduced after backward only (to measure what overlap saves) */
} ag_dist_config;

/* 1 when this build of tapegrad_dist talks to MPI (-DAG_MPI=ON), else 0. */
int ag_dist_has_mpi(void);

/* Start: with use_mpi, MPI_Init_thread (argc/argv may be NULL) and MPI_ERRORS_RETURN on the
 * world's communicator. cfg may be NULL (one process). AG_ERR_ARG: NULL out, a config out of
 * range, or use_mpi in a build without MPI; AG_ERR_IO: MPI_Init failed; AG_ERR_NOMEM. The message
 * goes to err (may be NULL; errsize bytes). *out is NULL on failure. */
ag_status ag_dist_init(ag_dist **out, int *argc, char ***argv, const ag_dist_config *cfg, char *err,
                       size_t errsize);
/* MPI_Finalize (when MPI was started) and free d. NULL is a no-op. Call it only when every rank
 * ends normally: after a failed collective, end the process instead (ag_dist_abort). */
void ag_dist_finalize(ag_dist *d);
/* After a failure, end every rank of the job: MPI_Abort(status) when MPI was started (does not
 * return), else nothing (returns). For a program's fatal-error path, not a library's. */
void ag_dist_abort(ag_dist *d, int status);

int ag_dist_rank(const ag_dist *d); /* 0..size-1; 0 for NULL */
int ag_dist_size(const ag_dist *d); /* >= 1; 1 for NULL */
/* The message of the last failure, "" if none (owned by d). */
const char *ag_dist_errmsg(const ag_dist *d);

/* Every rank passes the hash of what must agree (architecture, settings, data sizes): AG_OK when
 * all are equal; otherwise AG_ERR_STATE on every rank, with a message naming what (a caller's
 * word, e.g. "settings") and the ranks that differ from rank 0. AG_ERR_IO on a failed or timed-out
 * exchange; AG_ERR_ARG for a NULL d. */
ag_status ag_dist_check_same(ag_dist *d, uint64_t hash, const char *what);

/* Rank 0's n values into buf on every rank. AG_ERR_ARG (NULL d, NULL buf with n > 0), AG_ERR_IO. */
ag_status ag_dist_broadcast(ag_dist *d, ag_real *buf, size_t n);
/* Rank 0's parameter values into every rank's store, and with opt (may be NULL) its state buffers
 * and step counter: the same starting point everywhere (a fresh run or a resume). AG_ERR_STATE
 * when the stores' sizes differ between ranks; AG_ERR_ARG, AG_ERR_IO. */
ag_status ag_dist_broadcast_params(ag_dist *d, ag_params *ps, ag_optim *opt);

/* The canonical cut of a batch of k rows into S shards: shard i (< S) is rows [*off, *off + *n),
 * *off = i k / S; some are empty when k < S. Depends on k, S and i only. Outputs 0 for S == 0 or
 * i >= S. Never fails. */
void ag_dist_shard_rows(size_t k, size_t S, size_t i, size_t *off, size_t *n);
/* The shards of rank r of P: [*first, *first + *count), contiguous, floor(S r / P) to
 * floor(S (r+1) / P) (S / P each when P divides S). Outputs 0 for P == 0 or r >= P. */
void ag_dist_rank_shards(size_t S, int P, int r, size_t *first, size_t *count);

/* A step's gradient over shards. begin: clears the accumulator (sized for ps on first use;
 * AG_ERR_NOMEM, AG_ERR_ARG). add: adds weight * grads of ps (every element of the flat buffer) and
 * weight * loss into the accumulator as fixed-point integers and zeroes the store's grads;
 * weight in [0, 1]. AG_ERR_STATE if ps changed size since begin; AG_ERR_ARG. Out-of-range or
 * non-finite values are counted, not added (see PRECISION AND RANGE), and make the reduction fail.
 * reduce: sums the accumulators of every rank (MPI_SUM over int64, exact), writes the sum into the
 * store's grads and *loss (may be NULL) the weighted loss sum; flags (may be NULL) is an int64
 * the caller adds on every rank and gets back summed (e.g. a stop request seen by some rank).
 * AG_ERR_NUMERIC (on every rank alike) when some rank counted a non-finite or out-of-range value:
 * grads then hold zeros; AG_ERR_IO on a failed or timed-out reduction; AG_ERR_STATE, AG_ERR_ARG. */
ag_status ag_dist_grad_begin(ag_dist *d, ag_params *ps);
ag_status ag_dist_grad_add(ag_dist *d, ag_params *ps, double weight, double loss);
ag_status ag_dist_grad_reduce(ag_dist *d, ag_params *ps, double *loss, int64_t *flags);

/* Backward of one shard straight into the accumulator: ag_backward(t, loss) with a gradient sink
 * (ag.h, ag_tape_set_grad_sink) that rounds each piece of a parameter's gradient, times weight,
 * into the accumulator as backward produces it, and weight * loss->value[0] into the loss slot. The
 * sink sees what ->grad would hold, bit for bit, so the integers are those of ag_backward +
 * ag_dist_grad_add, without storing, re-reading and zeroing a float gradient (the store's grads
 * stay zero). last = 1 on the rank's last shard of the step: with MPI, each bucket (bucket_bytes of
 * whole tensors, from the end of the store: the last layer's first, as backward completes them)
 * starts its MPI_Iallreduce as soon as its gradients are all in, while backward goes on; the sink
 * then also polls MPI from the calling thread so that the reductions progress (overlap). The sums
 * stay exact whenever a bucket starts, so overlap cannot change a bit. The tape's own sink, if any,
 * is set aside for the sweep and put back. The store's grads must hold zeros (as ag_dist_grad_reduce's
 * caller's optimizer step with zero_grad leaves them): what they hold is added in. A non-finite loss skips backward and is counted (the
 * reduction fails on every rank). Errors: AG_ERR_ARG (NULL, weight outside [0, 1]), AG_ERR_STATE
 * (no ag_dist_grad_begin on this store), the status of ag_backward (message in ag_dist_errmsg);
 * MPI failures during the sweep are reported by ag_dist_grad_reduce. */
ag_status ag_dist_backward(ag_dist *d, ag_params *ps, ag_tape *t, ag_tensor *loss, double weight, int last);

/* Seconds spent inside ag_dist_grad_reduce's communication since ag_dist_init (for benches). */
double ag_dist_comm_seconds(const ag_dist *d);

#ifdef __cplusplus
}
#endif
#endif /* AG_DIST_H */

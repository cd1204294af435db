/*
 * checkpoint.h - a training run's whole state in one file, for any model built on an ag_params
 * store: parameters, optimizer state and step counter, an ag_rng, and the data order (a uint32
 * permutation with the epoch and the position in it), plus the caller's own metadata.
 *
 * OVERVIEW
 *
 * A checkpoint is a model file (ag_io.h: safetensors layout, atomic save, CRC of the data and of
 * the header) holding
 *     every parameter under its name (the build's dtype),
 *     "optim.<state>" for each optimizer buffer (ag_optim_state: "optim.velocity", "optim.adam.m", ...),
 *     "data.order" (U32, the permutation) when one is given,
 * and in __metadata__ "optim" (the kind: sgd, momentum, nesterov, adam, adamw), "optim_steps",
 * "epoch", "position" and "rng" (four 16-digit hex words), next to the caller's entries.
 * Restoring all of it into new objects built the same way (same store names and shapes, same
 * optimizer kind) makes the following steps bit-identical to a run that never stopped.
 *
 * Loading is all-or-nothing: the whole file is checked against the objects given (names, shapes,
 * optimizer kind, rng, order length, that the order is a permutation) before anything changes.
 * ERRORS name the file and what differs, "load: run.ckpt: fc1.W is 8x784 in the file but 16x784
 * in the model" (AG_ERR_SHAPE: another model), "load: run.ckpt: the checkpoint's optimizer is adam
 * but this one is momentum" (AG_ERR_ARG: another optimizer), AG_ERR_FORMAT (truncated, corrupt, a
 * counter that is not a number), AG_ERR_IO, AG_ERR_NOMEM. Files written before "optim", "position"
 * and "rng" existed (the fashion_mnist example's older checkpoints) load when those are not asked
 * for: a missing "optim" is not checked (the state buffers' names still are), a missing
 * "position" reads 0.
 *
 * WORKED EXAMPLE: save after a step, resume in a new process.
 *
 *     ag_checkpoint ck = {.params = ps, .optim = opt, .rng = &rng, .order = order, .order_n = n,
 *                         .epoch = epoch, .position = step_in_epoch};
 *     if (ag_checkpoint_save("run.ckpt", &ck, err, sizeof err) != AG_OK) fprintf(stderr, "%s\n", err);
 *     // later: the same model and optimizer built anew, then
 *     ag_checkpoint back = {.params = ps2, .optim = opt2, .rng = &rng2, .order = order2, .order_n = n};
 *     if (ag_checkpoint_load("run.ckpt", &back, err, sizeof err) != AG_OK) ...;
 *     // back.epoch and back.position say where to go on; order2 and rng2 are restored
 */
#ifndef AG_CHECKPOINT_H
#define AG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <tapegrad/ag.h>
#include <tapegrad/ag_io.h>
#include <tapegrad/optim.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a checkpoint holds. Only params is required; a NULL optim, rng or order is neither saved
 * nor loaded. epoch and position are the caller's counters (e.g. the epoch and the batch within
 * it): saved, and set by a load. meta (n_meta entries) is saved with the file; keys must not be
 * the ones listed above, nor "crc32" or "header_crc32". */
typedef struct ag_checkpoint {
    ag_params *params;
    ag_optim *optim;
    ag_rng *rng;
    uint32_t *order; /* a permutation of 0..order_n-1 */
    size_t order_n;
    uint64_t epoch, position;
    const ag_kv *meta;
    size_t n_meta;
} ag_checkpoint;

/* Write ck into path atomically (ag_model_save). AG_ERR_ARG for a NULL ck or params, an order that
 * is not a permutation, a reserved or repeated key; the errors of ag_model_save otherwise. */
ag_status ag_checkpoint_save(const char *path, const ag_checkpoint *ck, char *err, size_t errsize);

/* Restore into ck's objects from an open model file (its caller's metadata can be read first, e.g.
 * to rebuild the model) or from path. Everything is checked before anything is written: on failure
 * the store, the optimizer, the rng, the order and ck's counters are unchanged. */
ag_status ag_checkpoint_read(const ag_model_file *m, ag_checkpoint *ck, char *err, size_t errsize);
ag_status ag_checkpoint_load(const char *path, ag_checkpoint *ck, char *err, size_t errsize);

/* The counters of a checkpoint file without loading it: epoch, position (0 when absent) and the
 * optimizer's step count (0 when absent), each checked to be a decimal number. AG_ERR_FORMAT
 * naming the entry otherwise; AG_ERR_ARG for a NULL argument. */
ag_status ag_checkpoint_counters(const ag_model_file *m, uint64_t *epoch, uint64_t *position, uint64_t *optim_steps,
                                 char *err, size_t errsize);

#ifdef __cplusplus
}
#endif
#endif /* AG_CHECKPOINT_H */

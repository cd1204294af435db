/*
 * optim.h - optimizers over an ag_params store: SGD (the derivation's update), momentum,
 * Nesterov, Adam and AdamW, learning-rate schedules, gradient clipping by global norm.
 *
 * OVERVIEW
 *
 * An optimizer works on the store's flat buffers (ag_params_values / ag_params_grads) in one
 * loop; only weight decay looks at tensors one by one, because it applies to AG_DECAY tensors
 * (weights) and never to biases. Its state (velocity, Adam moments, the step counter) is a few
 * flat buffers of ag_params_numel(ps) elements, readable and writable through ag_optim_state and
 * ag_optim_steps / ag_optim_set_steps so that a checkpoint can resume bit-identically.
 * ag_optim_step allocates nothing. The optimizer borrows the store, which must outlive it.
 *
 * THE GRADIENT. The optimizer uses whatever the tape left in the grads, typically the gradient
 * of a batch-mean cost, J = (1/K) sum_k J_k (+ lambda/2 sum W^2): K is the batch size, so
 * full-batch, mini-batch and online training (K = 1) are the same code.
 *
 * SGD AND THE DERIVATION. With g = (1/K) DeltaW (the gradient of the data term), the
 * derivation's update W := W - alpha [(1/K) DeltaW + lambda W], b := b - alpha (1/K) Deltab
 * can be had in two equal ways:
 *   - lambda in the cost: J = ag_squared_error(h, y) + ag_l2(lambda, weights); the tape then
 *     leaves g + lambda W in W->grad, and SGD with weight_decay = 0 does W -= alpha W->grad;
 *   - lambda in the optimizer: no L2 term on the tape and weight_decay = lambda, which SGD
 *     applies to AG_DECAY tensors only as W -= alpha (W->grad + lambda W).
 * For plain SGD the two are the same update (tests/optim/test_optim.c checks it); `decoupled` makes
 * no difference to it. For the other methods they differ, as usual:
 *   decoupled = 0: weight decay is added to the gradient (g + lambda W) before momentum/Adam,
 *                  exactly as an L2 term in the cost would be;
 *   decoupled = 1: decay is applied to the weights directly, W -= alpha lambda W, outside the
 *                  momentum/Adam statistics (SGDW / AdamW, Loshchilov & Hutter). AG_OPT_ADAMW
 *                  is AG_OPT_ADAM with decoupled = 1.
 *
 * UPDATES (g the gradient, after clipping and coupled decay; alpha the scheduled rate; t the
 * 1-based step number; mu the momentum; all state starts at zero):
 *   SGD       w -= alpha g
 *   momentum  v = mu v + g;                   w -= alpha v
 *   Nesterov  v = mu v + g;                   w -= alpha (g + mu v)
 *   Adam      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *             w -= alpha (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * (momentum and Nesterov in the form PyTorch uses, with no dampening.)
 *
 * WORKED EXAMPLE: a typical training loop.
 *
 *     ag_optim *opt;
 *     ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5}, NULL, 0);
 *     for (...) { ag_tape_reset(t); ag_optim_zero_grad(opt); ...forward...; ag_backward(t, J);
 *                 ag_optim_step(opt); }
 *     ag_optim_free(opt);
 * With .zero_grad = 1 the step clears the gradients itself and the loop drops ag_optim_zero_grad
 * (it is then needed only before the first step and after a failed one).
 */
#ifndef AG_OPTIM_H
#define AG_OPTIM_H

#include <stdint.h>

#include <tapegrad/ag.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ag_optim_kind {
    AG_OPT_SGD = 0,
    AG_OPT_MOMENTUM,
    AG_OPT_NESTEROV,
    AG_OPT_ADAM,
    AG_OPT_ADAMW /* Adam with decoupled weight decay */
} ag_optim_kind;

typedef enum ag_sched_kind {
    AG_SCHED_CONSTANT = 0, /* lr */
    AG_SCHED_STEP,         /* lr * gamma^floor(t / step_size) */
    AG_SCHED_COSINE        /* min_lr + (lr - min_lr) (1 + cos(pi min(t, T) / T)) / 2, T = total_steps */
} ag_sched_kind;

/* A learning-rate schedule, a function of the number t of steps already taken (0 for the first
 * step). With warmup_steps = W > 0 the first W steps use lr * (t + 1) / W, and the schedule
 * above then runs on t - W (with T = total_steps - W for cosine). */
typedef struct ag_schedule {
    ag_sched_kind kind;
    uint64_t step_size;   /* AG_SCHED_STEP: steps between decays (>= 1) */
    double gamma;         /* AG_SCHED_STEP: factor per decay, e.g. 0.1 (finite, > 0) */
    uint64_t total_steps; /* AG_SCHED_COSINE: steps until min_lr is reached (> warmup_steps) */
    double min_lr;        /* AG_SCHED_COSINE: final rate (finite, >= 0) */
    uint64_t warmup_steps;/* linear warm-up from lr/W to lr; 0 = none */
} ag_schedule;

/* The learning rate the schedule gives for step t (t steps already taken) from base rate lr.
 * An invalid schedule (step_size 0, total_steps <= warmup_steps for cosine) gives lr once past
 * the warm-up; a NULL s gives lr. Never fails. */
double ag_schedule_lr(const ag_schedule *s, double lr, uint64_t t);

typedef struct ag_optim_config {
    ag_optim_kind kind;
    double lr;            /* alpha, the base learning rate (> 0) */
    double weight_decay;  /* lambda on AG_DECAY tensors only (see SGD AND THE DERIVATION); 0 = none */
    int decoupled;        /* 1: decay the weights directly (SGDW/AdamW); 0: add lambda W to the gradient */
    double momentum;      /* mu for AG_OPT_MOMENTUM / AG_OPT_NESTEROV, in (0, 1); 0 picks 0.9 */
    double beta1, beta2;  /* Adam/AdamW, each in (0, 1); 0 picks 0.9 and 0.999 */
    double eps;           /* Adam/AdamW, finite and > 0; 0 picks 1e-8 */
    double clip_norm;     /* > 0: clip the gradient to this global L2 norm before each step */
    ag_schedule schedule; /* zero-initialised: constant rate */
    int zero_grad;        /* 1: a successful step zeroes each gradient element right after using it,
                           * in the same pass (bit-identical to step + ag_optim_zero_grad, one
                           * stream less); a failed step leaves the gradients as they were */
} ag_optim_config;

typedef struct ag_optim ag_optim;

/* Create an optimizer for ps, with state sized for the parameters ps holds now (add every
 * parameter first; a step after the store grew is AG_ERR_STATE). cfg is copied; ps is borrowed.
 * Release with ag_optim_free. AG_ERR_ARG with a message in err (may be NULL; errsize bytes) on a
 * NULL argument or a bad config; AG_ERR_NOMEM. *out is NULL on failure. A config is bad when a
 * field that its kind or schedule uses is out of range: lr (finite, > 0), weight_decay (finite,
 * >= 0) and clip_norm (>= 0) always; momentum only for momentum/Nesterov; beta1, beta2 and eps
 * only for Adam/AdamW; step_size and gamma only for AG_SCHED_STEP; total_steps and min_lr only
 * for AG_SCHED_COSINE. Fields a kind ignores (Adam's momentum, SGD's betas) are not checked. */
ag_status ag_optim_new(ag_optim **out, ag_params *ps, const ag_optim_config *cfg, char *err, size_t errsize);
void ag_optim_free(ag_optim *opt); /* its state; the store is left as it is */

/* One update from the gradients now in the store: clip (if clip_norm), decay, update, then
 * count the step. Allocates nothing. AG_ERR_STATE if the store changed size since creation,
 * AG_ERR_NUMERIC if some gradient element is NaN/Inf (parameters, state and steps untouched),
 * both with a message in ag_optim_errmsg; AG_ERR_ARG for a NULL opt. */
ag_status ag_optim_step(ag_optim *opt);
void ag_optim_zero_grad(ag_optim *opt); /* ag_params_zero_grad of the store */

/* Backward and step in one sweep ("update in backward"): ag_backward(t, loss) with the optimizer
 * as the tape's gradient sink (ag.h, ag_grad_sink). Each parameter is updated as soon as its
 * gradient is complete, and a dense layer's weight gradient goes tile by tile from the GEMM into
 * the update without being stored: the same result, bit for bit, as ag_backward + ag_optim_step
 * with one stream over the gradients fewer per pass. Differences: the gradients are left zeroed
 * (as with .zero_grad), the weights' ->grad never hold this step's gradient, and a NaN/Inf
 * gradient skips only the pieces that hold it (AG_ERR_NUMERIC after the step, which counts; the
 * rest is updated). Parameters no gradient reached still take their update (decay, momentum).
 * An ag_l2 term on a weight (the derivation's lambda W) is added by the update itself, in its one
 * pass over W (ag_grad_sink.consume_decay), when the optimizer has no weight_decay of its own.
 * A parameter of ANOTHER store that the loss depends on (a second model, a frozen one) is refused
 * by the optimizer's sink (ag_grad_sink.accepts): its gradient is left accumulated in its ->grad
 * and its value untouched, exactly as with ag_backward + ag_optim_step (zeroing it is up to its
 * own store); only the optimizer's own store is ever written.
 * With clip_norm > 0 (every gradient is needed first) the call runs ag_backward then
 * ag_optim_step (then zeroes the store's gradients) instead, with the tape's own sink, if any, set
 * aside for the sweep and put back; a NaN/Inf in the store's gradients then fails the whole step
 * as in ag_optim_step (nothing updated, gradients kept).
 * What the fused path adds to a parameter's gradient besides this sweep is what earlier
 * ag_backward calls left in ->grad; values written into ->grad by hand are not seen (a weight's
 * GEMM hands its tiles to the update without reading ->grad): record such terms on the tape, or
 * use ag_backward + ag_optim_step. Errors: AG_ERR_ARG, AG_ERR_STATE (store changed), the tape's
 * status if backward fails (then, on the fused path, parameters delivered before the failure are already
 * updated), AG_ERR_NUMERIC. */
ag_status ag_optim_backward_step(ag_optim *opt, ag_tape *t, ag_tensor *loss);

double ag_optim_lr(const ag_optim *opt);        /* the rate the next step will use */
/* pre-clip global norm at the last step with clip_norm > 0; without clipping only a failed
 * (non-finite) ag_optim_step computes it, a successful step reports 0, and a fused step
 * (ag_optim_backward_step) that skipped a non-finite piece reports NaN */
double ag_optim_grad_norm(const ag_optim *opt);
const ag_optim_config *ag_optim_get_config(const ag_optim *opt); /* with defaults filled in */
const char *ag_optim_errmsg(const ag_optim *opt); /* "" if none */

/* State for checkpoints. The step counter (steps taken; drives the schedule and Adam's bias
 * correction) and ag_optim_state_count() flat buffers: "velocity" for momentum and Nesterov,
 * "adam.m" and "adam.v" for Adam/AdamW, none for SGD. Each has *n == ag_params_numel(ps)
 * elements laid out like the store's buffers; the pointer is owned by the optimizer and may be
 * written (restore) between steps. Restoring the counter and every buffer, with the parameters,
 * makes the following steps bit-identical to an uninterrupted run. ag_optim_state: AG_ERR_ARG
 * for a NULL opt or i >= ag_optim_state_count (outputs untouched); name is a static string. */
uint64_t ag_optim_steps(const ag_optim *opt);
void ag_optim_set_steps(ag_optim *opt, uint64_t steps);
size_t ag_optim_state_count(const ag_optim *opt);
ag_status ag_optim_state(ag_optim *opt, size_t i, const char **name, ag_real **ptr, size_t *n);

/* Global L2 norm of every gradient in ps, computed in double (sqrt of the sum of squares over
 * the flat buffer); 0 for an empty or NULL store. Never fails. */
double ag_grad_norm(ag_params *ps);
/* If the global norm exceeds max_norm (> 0), scale every gradient by max_norm / norm. Returns the
 * norm before clipping (NaN/Inf are returned unchanged and nothing is scaled; so is everything
 * when max_norm <= 0). */
double ag_clip_grad_norm(ag_params *ps, double max_norm);

#ifdef __cplusplus
}
#endif
#endif /* AG_OPTIM_H */

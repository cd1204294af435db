/*
 * dist.c - tapegrad_dist (dist.h): the ranks, checks and broadcasts at start, and a step's
 * gradient summed exactly over micro-shards and ranks in int64 fixed point. Built with AG_MPI
 * defined (-DAG_MPI=ON) it talks to MPI; without, it is the one-rank case of the same code.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/ag_ext.h>
#include <tapegrad/dist.h>

#ifdef AG_MPI
#include <mpi.h>
#endif

/* the accumulator: numel gradient elements, then these slots */
enum { SLOT_LOSS, SLOT_BAD, SLOT_FLAGS, N_SLOTS };

/* A bucket: flat elements [lo, hi) of the accumulator, reduced by one call; `left` counts the
 * gradient elements backward has still to deliver into it (its tensors' sizes, padding excluded). */
typedef struct bucket {
    size_t lo, hi, elems;
    atomic_size_t left;
    int started, done;
#ifdef AG_MPI
    MPI_Request req;
#endif
} bucket;

struct ag_dist {
    int mpi, rank, size, frac, overlap;
    double timeout, comm_s;
    size_t bucket_elems;
    int64_t *acc;
    size_t numel; /* of the store the accumulator was sized for */
    /* the sink of ag_dist_backward: the store's tensors by flat offset, each one's bucket */
    ag_params *ps;
    size_t n_tens, *t_off, *t_size, *t_bucket;
    bucket *b;
    size_t nb, next_start;
    double scale;           /* weight * 2^f of the shard in flight */
    atomic_llong sweep_bad; /* out-of-range pieces of the sweep (worker threads add too) */
    int tracking;           /* the rank's last shard: buckets start as they fill */
    ag_status async_st;     /* a failure inside the sink, reported by the reduction */
    pthread_t main_thread;  /* the one that may call MPI (MPI_THREAD_FUNNELED) */
    double last_pump;       /* when the sink last polled MPI */
    char msg[512];
};

AG_PRINTF(2, 3) static void set_err(ag_dist *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
}

int ag_dist_has_mpi(void) {
#ifdef AG_MPI
    return 1;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- MPI plumbing */

#ifdef AG_MPI
static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* MPI counts are int: big buffers go in pieces of CHUNK elements */
#define CHUNK ((size_t)1 << 28)

static ag_status mpi_fail(ag_dist *d, int rc, const char *what) {
    char es[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "error %d", rc);
    set_err(d, "rank %d: %s: MPI: %s", d->rank, what, es);
    return AG_ERR_IO;
}

/* Poll a non-blocking call until done or timeout_s passed. Spins for the first 2 ms (a reduction
 * of a few MB finishes in that time), then sleeps 50 us between polls so that a rank waiting for a
 * slow one leaves the CPU to it. The deadline is what turns a dead peer into an error, not a hang. */
static ag_status wait_req(ag_dist *d, MPI_Request *req, const char *what) {
    double t0 = wall();
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        if (done) return AG_OK;
        double el = wall() - t0;
        if (el > d->timeout) {
            set_err(d,
                    "rank %d: %s: no answer from the other ranks within %g s (a rank died, hangs, or stopped "
                    "early); giving up",
                    d->rank, what, d->timeout);
            return AG_ERR_IO;
        }
        if (el > 2e-3) nanosleep(&(struct timespec){0, 50000}, NULL);
    }
}

static MPI_Datatype real_type(void) { return sizeof(ag_real) == sizeof(double) ? MPI_DOUBLE : MPI_FLOAT; }

static ag_status bcast(ag_dist *d, void *buf, size_t n, MPI_Datatype type, size_t elsize, const char *what) {
    for (size_t o = 0; o < n; o += CHUNK) {
        size_t m = n - o < CHUNK ? n - o : CHUNK;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + o * elsize, (int)m, type, 0, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        ag_status st = wait_req(d, &req, what);
        if (st != AG_OK) return st;
    }
    return AG_OK;
}
#endif

/* ---------------------------------------------------------------- start and end */

ag_status ag_dist_init(ag_dist **out, int *argc, char ***argv, const ag_dist_config *cfg, char *err,
                       size_t errsize) {
    ag_dist_config c = cfg ? *cfg : (ag_dist_config){0};
    const char *bad = NULL;
    if (!out) bad = "ag_dist_init: out is NULL";
    else if (c.frac_bits != 0 && (c.frac_bits < 8 || c.frac_bits > 48)) bad = "ag_dist_init: frac_bits outside 8..48";
    else if (!(c.timeout_s >= 0) || !isfinite(c.timeout_s)) bad = "ag_dist_init: timeout_s must be finite and >= 0";
    else if (c.use_mpi && !ag_dist_has_mpi())
        bad = "ag_dist_init: this tapegrad was built without MPI (configure with -DAG_MPI=ON and install Open MPI: "
              "apt-get install openmpi-bin libopenmpi-dev)";
    if (out) *out = NULL;
    if (bad) {
        if (err && errsize) snprintf(err, errsize, "%s", bad);
        return AG_ERR_ARG;
    }
    ag_dist *d = ag_ext_calloc(1, sizeof *d);
    if (!d) {
        if (err && errsize) snprintf(err, errsize, "ag_dist_init: out of memory");
        return AG_ERR_NOMEM;
    }
    d->frac = c.frac_bits ? c.frac_bits : 40;
    d->bucket_elems = (c.bucket_bytes ? c.bucket_bytes : (size_t)1 << 20) / sizeof(int64_t);
    if (!d->bucket_elems) d->bucket_elems = 1;
    d->overlap = !c.no_overlap;
    d->main_thread = pthread_self();
    d->timeout = c.timeout_s > 0 ? c.timeout_s : 20;
    d->size = 1;
#ifdef AG_MPI
    if (c.use_mpi) {
        /* Open MPI's non-blocking all-reduce picks a binomial tree for our message sizes; its ring
         * (bandwidth-optimal, what NCCL and Horovod use) reduced 4.3 MB in 0.51 ms instead of 0.83-0.88
         * on loopback (bench/README.md). Only when the user has not chosen; other MPIs ignore it. */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        int provided, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            if (err && errsize) snprintf(err, errsize, "ag_dist_init: MPI_Init_thread failed (error %d)", rc);
            ag_ext_free(d);
            return AG_ERR_IO;
        }
        d->mpi = 1;
        /* errors come back as statuses: a dead peer must not abort the survivors silently */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    }
#else
    (void)argc, (void)argv;
#endif
    *out = d;
    return AG_OK;
}

void ag_dist_finalize(ag_dist *d) {
    if (!d) return;
#ifdef AG_MPI
    if (d->mpi) MPI_Finalize();
#endif
    ag_ext_free(d->acc);
    ag_ext_free(d->t_off);
    ag_ext_free(d->b);
    ag_ext_free(d);
}

void ag_dist_abort(ag_dist *d, int status) {
#ifdef AG_MPI
    if (d && d->mpi) MPI_Abort(MPI_COMM_WORLD, status);
#else
    (void)d, (void)status;
#endif
}

int ag_dist_rank(const ag_dist *d) { return d ? d->rank : 0; }
int ag_dist_size(const ag_dist *d) { return d ? d->size : 1; }
const char *ag_dist_errmsg(const ag_dist *d) { return d ? d->msg : "ag_dist: NULL"; }
double ag_dist_comm_seconds(const ag_dist *d) { return d ? d->comm_s : 0; }

/* ---------------------------------------------------------------- checks and broadcasts */

ag_status ag_dist_check_same(ag_dist *d, uint64_t hash, const char *what) {
    if (!d) return AG_ERR_ARG;
    if (!what) what = "settings";
#ifdef AG_MPI
    if (!d->mpi || d->size == 1) return AG_OK;
    uint64_t *all = ag_ext_calloc((size_t)d->size, sizeof *all);
    if (!all) return set_err(d, "ag_dist_check_same: out of memory"), AG_ERR_NOMEM;
    MPI_Request req;
    int rc = MPI_Iallgather(&hash, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD, &req);
    ag_status st = rc != MPI_SUCCESS ? mpi_fail(d, rc, "check of the ranks' settings")
                                     : wait_req(d, &req, "check of the ranks' settings");
    if (st == AG_OK) {
        char list[200] = "";
        size_t len = 0, n_bad = 0;
        for (int r = 1; r < d->size; r++)
            if (all[r] != all[0]) {
                if (len + 16 < sizeof list) len += (size_t)snprintf(list + len, sizeof list - len, " %d", r);
                n_bad++;
            }
        if (n_bad) {
            set_err(d,
                    "rank %d: the %s of rank%s%s differ from rank 0's (hash %016llx here, %016llx on rank 0); "
                    "start every rank with the same program, model, data and options",
                    d->rank, what, n_bad > 1 ? "s" : "", list, (unsigned long long)hash, (unsigned long long)all[0]);
            st = AG_ERR_STATE;
        }
    }
    ag_ext_free(all);
    return st;
#else
    (void)hash;
    return AG_OK;
#endif
}

ag_status ag_dist_broadcast(ag_dist *d, ag_real *buf, size_t n) {
    if (!d || (!buf && n)) return AG_ERR_ARG;
#ifdef AG_MPI
    if (d->mpi && d->size > 1) return bcast(d, buf, n, real_type(), sizeof *buf, "broadcast from rank 0");
#endif
    return AG_OK;
}

ag_status ag_dist_broadcast_params(ag_dist *d, ag_params *ps, ag_optim *opt) {
    if (!d || !ps) return AG_ERR_ARG;
    size_t n = ag_params_numel(ps), n_state = opt ? ag_optim_state_count(opt) : 0;
    /* the sizes must agree before anything is sent in them */
    ag_status st = ag_dist_check_same(d, (uint64_t)n * 1000003u + n_state, "parameter and optimizer sizes");
    if (st != AG_OK) return st;
    if ((st = ag_dist_broadcast(d, ag_params_values(ps), n)) != AG_OK) return st;
    for (size_t i = 0; i < n_state; i++) {
        const char *name;
        ag_real *buf;
        size_t m;
        if (ag_optim_state(opt, i, &name, &buf, &m) != AG_OK) return set_err(d, "optimizer state %zu", i), AG_ERR_ARG;
        if ((st = ag_dist_broadcast(d, buf, m)) != AG_OK) return st;
    }
#ifdef AG_MPI
    if (opt && d->mpi && d->size > 1) {
        uint64_t steps = ag_optim_steps(opt);
        if ((st = bcast(d, &steps, 1, MPI_UINT64_T, sizeof steps, "broadcast of the step count")) != AG_OK) return st;
        ag_optim_set_steps(opt, steps);
    }
#endif
    return AG_OK;
}

/* ---------------------------------------------------------------- shards */

void ag_dist_shard_rows(size_t k, size_t S, size_t i, size_t *off, size_t *n) {
    size_t a = 0, b = 0;
    if (S && i < S) { /* i k fits: S and k are a batch's counts */
        a = i * k / S;
        b = (i + 1) * k / S;
    }
    if (off) *off = a;
    if (n) *n = b - a;
}

void ag_dist_rank_shards(size_t S, int P, int r, size_t *first, size_t *count) {
    size_t a = 0, b = 0;
    if (P > 0 && r >= 0 && r < P) {
        a = S * (size_t)r / (size_t)P;
        b = S * (size_t)(r + 1) / (size_t)P;
    }
    if (first) *first = a;
    if (count) *count = b - a;
}

/* ---------------------------------------------------------------- the gradient */

/* The store's tensors sorted by flat offset, and the buckets: whole tensors taken from the end of
 * the store (the last layer's, which backward completes first) until a bucket holds bucket_elems;
 * bucket 0 is the highest range. The same on every rank (the same store). */
static ag_status layout(ag_dist *d, ag_params *ps) {
    size_t nt = ag_params_count(ps);
    ag_ext_free(d->t_off);
    ag_ext_free(d->b);
    d->t_off = ag_ext_calloc(3 * nt + 1, sizeof *d->t_off);
    d->b = ag_ext_calloc(nt + 1, sizeof *d->b);
    d->ps = NULL, d->n_tens = 0, d->nb = 0;
    if (!d->t_off || !d->b) return set_err(d, "ag_dist_grad_begin: out of memory"), AG_ERR_NOMEM;
    d->t_size = d->t_off + nt, d->t_bucket = d->t_size + nt;
    ag_real *base = ag_params_values(ps);
    for (size_t i = 0; i < nt; i++) { /* insertion sort by offset: stores are added to in order anyway */
        const ag_tensor *x = ag_params_at(ps, i);
        size_t off = (size_t)(x->value - base), j = i;
        for (; j > 0 && d->t_off[j - 1] > off; j--) d->t_off[j] = d->t_off[j - 1], d->t_size[j] = d->t_size[j - 1];
        d->t_off[j] = off, d->t_size[j] = x->size;
    }
    size_t hi = d->numel, acc = 0;
    for (size_t j = nt; j-- > 0;) {
        bucket *b = &d->b[d->nb];
        acc += d->t_size[j];
        d->t_bucket[j] = d->nb;
        if (acc >= d->bucket_elems || j == 0) {
            b->lo = j == 0 ? 0 : d->t_off[j], b->hi = hi, b->elems = acc;
            hi = b->lo, acc = 0, d->nb++;
        }
    }
    if (nt == 0) d->b[0] = (bucket){.lo = 0, .hi = d->numel}, d->nb = 1;
    d->ps = ps, d->n_tens = nt;
    return AG_OK;
}

ag_status ag_dist_grad_begin(ag_dist *d, ag_params *ps) {
    if (!d || !ps) return AG_ERR_ARG;
    size_t n = ag_params_numel(ps);
    if (!d->acc || d->numel != n || d->ps != ps || d->n_tens != ag_params_count(ps)) {
        int64_t *a = ag_ext_realloc(d->acc, (n + N_SLOTS) * sizeof *a);
        if (!a) return set_err(d, "ag_dist_grad_begin: out of memory for %zu elements", n), AG_ERR_NOMEM;
        d->acc = a, d->numel = n;
        if (layout(d, ps) != AG_OK) return AG_ERR_NOMEM;
    }
    memset(d->acc, 0, (n + N_SLOTS) * sizeof *d->acc);
    for (size_t i = 0; i < d->nb; i++) {
        atomic_store(&d->b[i].left, d->b[i].elems);
        d->b[i].started = d->b[i].done = 0;
    }
    d->next_start = 0;
    d->tracking = 0;
    d->async_st = AG_OK;
    return AG_OK;
}

/* 1.5 * 2^52: (x + M) - M rounds x to the nearest integer, ties to even, for |x| < 2^51 (the
 * addition's own rounding does it); the range check keeps |x| <= 2^50. Per element IEEE operations
 * only, so every clone gives the same integers. Returns how many elements were out of range. */
AG_EXT_CLONES static size_t quantize_add(int64_t *acc, const ag_real *g, size_t n, double scale) {
    const double M = 6755399441055744.0, lim = 1125899906842624.0; /* 2^50 */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)g[i] * scale;
        if (fabs(x) <= lim) acc[i] += (int64_t)((x + M) - M);
        else bad++; /* NaN compares false too */
    }
    return bad;
}

ag_status ag_dist_grad_add(ag_dist *d, ag_params *ps, double weight, double loss) {
    if (!d || !ps || !(weight >= 0 && weight <= 1)) return AG_ERR_ARG;
    if (!d->acc || d->numel != ag_params_numel(ps))
        return set_err(d, "ag_dist_grad_add: the store changed size since ag_dist_grad_begin (or no begin)"),
               AG_ERR_STATE;
    /* w_i g_i scaled by 2^f: weight * 2^f first (exact: a power of two), then one rounding per element */
    double scale = ldexp(weight, d->frac);
    ag_real *g = ag_params_grads(ps);
    d->acc[d->numel + SLOT_BAD] += (int64_t)quantize_add(d->acc, g, d->numel, scale);
    memset(g, 0, d->numel * sizeof *g);
    double x = loss * scale;
    if (fabs(x) <= 1125899906842624.0) d->acc[d->numel + SLOT_LOSS] += (int64_t)((x + 6755399441055744.0) - 6755399441055744.0);
    else d->acc[d->numel + SLOT_BAD]++;
    return AG_OK;
}

/* ---------------------------------------------------------------- backward into the accumulator */

#ifdef AG_MPI
static ag_status start_bucket(ag_dist *d, size_t i) {
    bucket *b = &d->b[i];
    b->started = 1;
    if (b->hi - b->lo > CHUNK) return AG_OK; /* too big for one call: reduced in pieces at the end */
    int rc = MPI_Iallreduce(MPI_IN_PLACE, d->acc + b->lo, (int)(b->hi - b->lo), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD,
                            &b->req);
    if (rc != MPI_SUCCESS) return mpi_fail(d, rc, "gradient all-reduce");
    return AG_OK;
}

/* On the main thread, while backward goes on: start the buckets that are full, in bucket order
 * (every rank must issue the same collectives in the same order, whichever thread filled them), and
 * let MPI move the started ones along (Open MPI progresses only inside MPI calls). */
static void pump(ag_dist *d) {
    if (d->async_st != AG_OK) return;
    while (d->next_start < d->nb && atomic_load(&d->b[d->next_start].left) == 0) {
        d->async_st = start_bucket(d, d->next_start++);
        if (d->async_st != AG_OK) return;
    }
    for (size_t i = 0; i < d->next_start; i++) {
        bucket *b = &d->b[i];
        if (b->done || b->hi - b->lo > CHUNK) continue;
        int done = 0, rc = MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            d->async_st = mpi_fail(d, rc, "gradient all-reduce");
            return;
        }
        if (!done) break; /* the rest were started later */
        b->done = 1;
    }
}
#endif

/* The tensor of the store at flat offset off (binary search over the sorted offsets). */
static size_t tensor_at(const ag_dist *d, size_t off) {
    size_t lo = 0, hi = d->n_tens;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (d->t_off[mid] <= off) lo = mid;
        else hi = mid;
    }
    return lo;
}

static int sink_accepts(void *ctx, const ag_tensor *x) {
    ag_dist *d = ctx;
    const ag_real *base = ag_params_values(d->ps);
    return x->value >= base && x->value < base + d->numel;
}

/* A piece of a parameter's gradient, g[r*ldg + c] for x->value[off + r*ld + c]: rounded into the
 * accumulator like ag_dist_grad_add (the same doubles, the same integers), then counted off its
 * bucket. Pieces may come from the library's worker threads at once (disjoint elements). */
static void sink_consume(void *ctx, ag_tensor *x, size_t off, size_t rows, size_t cols, size_t ld, const ag_real *g,
                         size_t ldg, unsigned flags) {
    ag_dist *d = ctx;
    (void)flags;
    size_t at = (size_t)(x->value - ag_params_values(d->ps)) + off, bad = 0;
    for (size_t r = 0; r < rows; r++) bad += quantize_add(d->acc + at + r * ld, g + r * ldg, cols, d->scale);
    if (bad) atomic_fetch_add(&d->sweep_bad, (long long)bad);
    if (!d->tracking) return;
    size_t left = atomic_fetch_sub(&d->b[d->t_bucket[tensor_at(d, at)]].left, rows * cols) - rows * cols;
#ifdef AG_MPI
    /* a bucket just filled starts at once; otherwise MPI is polled every 50 us at most (a test per
     * piece cost 15% of the backward) */
    if (pthread_equal(pthread_self(), d->main_thread)) {
        double tn = wall();
        if (left == 0 || tn - d->last_pump > 50e-6) {
            d->last_pump = tn;
            pump(d);
        }
    }
#else
    (void)left;
#endif
}

ag_status ag_dist_backward(ag_dist *d, ag_params *ps, ag_tape *t, ag_tensor *loss, double weight, int last) {
    if (!d || !ps || !t || !loss || !(weight >= 0 && weight <= 1)) return AG_ERR_ARG;
    if (!d->acc || d->numel != ag_params_numel(ps) || d->ps != ps)
        return set_err(d, "ag_dist_backward: the store changed since ag_dist_grad_begin (or no begin)"), AG_ERR_STATE;
    double lv = (double)loss->value[0], scale = ldexp(weight, d->frac), x = lv * scale;
    if (fabs(x) <= 1125899906842624.0) d->acc[d->numel + SLOT_LOSS] += (int64_t)((x + 6755399441055744.0) - 6755399441055744.0);
    else d->acc[d->numel + SLOT_BAD]++;
    if (!isfinite(lv)) return AG_OK; /* counted: the reduction fails on every rank */
    d->scale = scale;
    atomic_store(&d->sweep_bad, 0);
    d->tracking = last && d->overlap && d->mpi && d->size > 1;
    const ag_grad_sink *old = ag_tape_grad_sink(t);
    ag_grad_sink keep = old ? *old : (ag_grad_sink){0};
    ag_tape_set_grad_sink(t, &(ag_grad_sink){.consume = sink_consume, .ctx = d, .accepts = sink_accepts});
    ag_status st = ag_backward(t, loss);
    ag_tape_set_grad_sink(t, old ? &keep : NULL);
    d->acc[d->numel + SLOT_BAD] += atomic_load(&d->sweep_bad);
    if (st != AG_OK) return set_err(d, "ag_dist_backward: %s", ag_tape_errmsg(t)), st;
    return AG_OK;
}

ag_status ag_dist_grad_reduce(ag_dist *d, ag_params *ps, double *loss, int64_t *flags) {
    if (!d || !ps) return AG_ERR_ARG;
    size_t n = d->numel;
    if (!d->acc || n != ag_params_numel(ps) || d->ps != ps)
        return set_err(d, "ag_dist_grad_reduce: the store changed size since ag_dist_grad_begin (or no begin)"),
               AG_ERR_STATE;
    if (flags) d->acc[n + SLOT_FLAGS] = *flags;
#ifdef AG_MPI
    if (d->mpi && d->size > 1) {
        double t0 = wall();
        if (d->async_st != AG_OK) return d->async_st;
        /* the buckets backward did not start (all of them without overlap), in bucket order, then
         * each one's end; then the slots, whose counts are final only now */
        for (size_t i = d->next_start; i < d->nb; i++) {
            ag_status st = start_bucket(d, i);
            if (st != AG_OK) return st;
        }
        d->next_start = d->nb;
        for (size_t i = 0; i < d->nb; i++) {
            bucket *b = &d->b[i];
            if (b->done) continue;
            if (b->hi - b->lo <= CHUNK) {
                ag_status st = wait_req(d, &b->req, "gradient all-reduce");
                if (st != AG_OK) return st;
            } else
                for (size_t o = b->lo; o < b->hi; o += CHUNK) {
                    size_t m = b->hi - o < CHUNK ? b->hi - o : CHUNK;
                    MPI_Request req;
                    int rc = MPI_Iallreduce(MPI_IN_PLACE, d->acc + o, (int)m, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req);
                    ag_status st = rc != MPI_SUCCESS ? mpi_fail(d, rc, "gradient all-reduce")
                                                     : wait_req(d, &req, "gradient all-reduce");
                    if (st != AG_OK) return st;
                }
            b->done = 1;
        }
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, d->acc + n, N_SLOTS, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req);
        ag_status st = rc != MPI_SUCCESS ? mpi_fail(d, rc, "gradient all-reduce") : wait_req(d, &req, "gradient all-reduce");
        if (st != AG_OK) return st;
        d->comm_s += wall() - t0;
    }
#endif
    if (flags) *flags = d->acc[n + SLOT_FLAGS];
    ag_real *g = ag_params_grads(ps);
    int64_t bad = d->acc[n + SLOT_BAD];
    if (bad) {
        memset(g, 0, n * sizeof *g);
        set_err(d, "%lld gradient or loss values of the step are NaN, Inf or beyond the fixed-point range +-%g",
                (long long)bad, ldexp(1, 50 - d->frac));
        return AG_ERR_NUMERIC;
    }
    double inv = ldexp(1, -d->frac); /* a power of two: the product is exact before the cast */
    for (size_t i = 0; i < n; i++) g[i] = (ag_real)((double)d->acc[i] * inv);
    if (loss) *loss = ldexp((double)d->acc[n + SLOT_LOSS], -d->frac);
    return AG_OK;
}

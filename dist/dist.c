/*
 * dist.c - tapegrad_dist (dist.h): the ranks, checks and broadcasts at start, and a step's
 * gradient summed exactly over micro-shards and ranks in int64 fixed point. Built with AG_MPI
 * defined (-DAG_MPI=ON) it talks to MPI; without, it is the one-rank case of the same code.
 */
#include <math.h>
#include <stdarg.h>
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

struct ag_dist {
    int mpi, rank, size, frac;
    double timeout, comm_s;
    int64_t *acc;
    size_t numel; /* of the store the accumulator was sized for */
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
    d->timeout = c.timeout_s > 0 ? c.timeout_s : 20;
    d->size = 1;
#ifdef AG_MPI
    if (c.use_mpi) {
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

ag_status ag_dist_grad_begin(ag_dist *d, ag_params *ps) {
    if (!d || !ps) return AG_ERR_ARG;
    size_t n = ag_params_numel(ps);
    if (!d->acc || d->numel != n) {
        int64_t *a = ag_ext_realloc(d->acc, (n + N_SLOTS) * sizeof *a);
        if (!a) return set_err(d, "ag_dist_grad_begin: out of memory for %zu elements", n), AG_ERR_NOMEM;
        d->acc = a, d->numel = n;
    }
    memset(d->acc, 0, (n + N_SLOTS) * sizeof *d->acc);
    return AG_OK;
}

/* 1.5 * 2^52: (x + M) - M rounds x to the nearest integer, ties to even, for |x| < 2^51 (the
 * addition's own rounding does it); the range check keeps |x| <= 2^50. Per element IEEE operations
 * only, so every clone gives the same integers. Returns how many elements were out of range. */
AG_EXT_CLONES static size_t quantize_add(int64_t *acc, ag_real *g, size_t n, double scale) {
    const double M = 6755399441055744.0, lim = 1125899906842624.0; /* 2^50 */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)g[i] * scale;
        if (fabs(x) <= lim) acc[i] += (int64_t)((x + M) - M);
        else bad++; /* NaN compares false too */
        g[i] = 0;
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
    d->acc[d->numel + SLOT_BAD] += (int64_t)quantize_add(d->acc, ag_params_grads(ps), d->numel, scale);
    double x = loss * scale;
    if (fabs(x) <= 1125899906842624.0) d->acc[d->numel + SLOT_LOSS] += (int64_t)((x + 6755399441055744.0) - 6755399441055744.0);
    else d->acc[d->numel + SLOT_BAD]++;
    return AG_OK;
}

ag_status ag_dist_grad_reduce(ag_dist *d, ag_params *ps, double *loss, int64_t *flags) {
    if (!d || !ps) return AG_ERR_ARG;
    size_t n = d->numel;
    if (!d->acc || n != ag_params_numel(ps))
        return set_err(d, "ag_dist_grad_reduce: the store changed size since ag_dist_grad_begin (or no begin)"),
               AG_ERR_STATE;
    if (flags) d->acc[n + SLOT_FLAGS] = *flags;
#ifdef AG_MPI
    if (d->mpi && d->size > 1) {
        double t0 = wall();
        /* the slots first: a short message all ranks must take part in whatever the store's size */
        size_t total = n + N_SLOTS;
        for (size_t o = 0; o < total; o += CHUNK) {
            size_t m = total - o < CHUNK ? total - o : CHUNK;
            MPI_Request req;
            int rc = MPI_Iallreduce(MPI_IN_PLACE, d->acc + o, (int)m, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req);
            ag_status st = rc != MPI_SUCCESS ? mpi_fail(d, rc, "gradient all-reduce")
                                             : wait_req(d, &req, "gradient all-reduce");
            if (st != AG_OK) return st;
        }
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

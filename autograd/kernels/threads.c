/* threads.c - the pthread pool behind ag__parallel_for, and per-thread scratch buffers.
 * Workers are started lazily on the first parallel job and sleep on a condition variable between jobs.
 * Tasks are handed out through an atomic counter; results never depend on which thread runs a task,
 * because callers give each task its own disjoint output. See kernels.h for the contract.
 * User threads may call in concurrently: each has its own scratch for the work it runs itself (slot 0),
 * and a job that uses the workers holds the pool, workers' scratch included, from plan to finish. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "kernels.h"

typedef struct {
    void *raw;   /* what ag__malloc returned */
    void *p;     /* raw rounded up to 64 bytes */
    size_t cap;
} scratch;

static struct {
    pthread_mutex_t mu;        /* guards everything below except `next` */
    pthread_mutex_t call_mu;   /* serialises top-level parallel calls from different user threads */
    pthread_cond_t wake, done;
    pthread_t tid[AG__MAX_THREADS];
    int n_workers;             /* started workers (slots 1..n_workers) */
    int quit;
    unsigned long gen;         /* bumped for each job */
    atomic_ulong gen_seen;     /* a copy of gen readable without mu, for the brief spin */
    ag__task_fn fn;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
    int job_threads;           /* slots 0 .. job_threads-1 take part */
    int active;                /* workers still running the current job */
} pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .call_mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

/* Workers' scratch, by pool slot (row 0 unused: slot 0 is always the calling user thread, which uses
 * its own set below). Sized and used only while the pool is held (call_mu). */
static scratch scr[AG__MAX_THREADS][AG__SCRATCH_SLOTS];

/* A user thread's own scratch, freed when the thread exits (the key's destructor) or by its
 * ag__threads_shutdown. Every set is listed, so a leak checker sees the ones still in use. */
typedef struct scratch_set {
    scratch s[AG__SCRATCH_SLOTS];
    struct scratch_set *prev, *next;
} scratch_set;
static pthread_mutex_t sets_mu = PTHREAD_MUTEX_INITIALIZER;
static scratch_set *sets;
static pthread_key_t set_key;
static int set_key_ok;
static pthread_once_t set_key_once = PTHREAD_ONCE_INIT;
static _Thread_local scratch_set *tls_set;

/* Job generation each worker was created at: it is created under mu just before gen++, so reading
 * pool.gen itself later would skip the job it was started for. */
static unsigned long start_gen[AG__MAX_THREADS];

/* Pool slot of the calling thread while it runs a task, -1 otherwise (detects nested calls). */
static _Thread_local int tls_slot = -1;

/* Online cores, read once: sysconf parses /sys on every call, which would dominate a tiny product. */
static atomic_int g_cores;

static int online_cores(void) {
    int n = atomic_load_explicit(&g_cores, memory_order_relaxed);
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c < 1 ? 1 : c > AG__MAX_THREADS ? AG__MAX_THREADS : (int)c;
    atomic_store_explicit(&g_cores, n, memory_order_relaxed);
    return n;
}

/* ag_set_threads value, 0 = online cores; read on every product, so lock-free. */
static atomic_int g_requested;

ag_status ag_set_threads(int n) {
    if (n < 0) return AG_ERR_ARG;
    if (n > AG__MAX_THREADS) n = AG__MAX_THREADS;
    atomic_store_explicit(&g_requested, n, memory_order_relaxed);
    return AG_OK;
}

int ag_get_threads(void) {
    int n = atomic_load_explicit(&g_requested, memory_order_relaxed);
    return n > 0 ? n : online_cores();
}

static void run_tasks(int slot) {
    size_t t;
    while ((t = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed)) < pool.n_tasks)
        pool.fn(pool.ctx, t, slot);
}

/* A training step issues its products a few to a few hundred microseconds apart; a worker that went
 * to sleep after each one must be woken by the next (a futex wake, and on a VM an interrupt to a
 * halted vCPU: tens of microseconds, longer than a small product). So an idle worker first watches
 * the job counter for AG__SPIN_US, yielding rather than spinning on PAUSE (a hypervisor deschedules
 * PAUSE-spinning vCPUs), and only then sleeps on the condition variable. */
#ifndef AG__SPIN_US
#define AG__SPIN_US 100
#endif
static void spin_for_job(unsigned long seen) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&pool.gen_seen, memory_order_acquire) != seen) return;
        sched_yield();
        if (i % 16 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 >= AG__SPIN_US) return;
        }
    }
}

static void *worker_main(void *arg) {
    int slot = (int)(intptr_t)arg;
    tls_slot = slot;
    pthread_mutex_lock(&pool.mu);
    unsigned long seen = start_gen[slot];
    for (;;) {
        if (!pool.quit && pool.gen == seen) { /* idle: watch for the next job briefly, then sleep */
            pthread_mutex_unlock(&pool.mu);
            spin_for_job(seen);
            pthread_mutex_lock(&pool.mu);
        }
        while (!pool.quit && pool.gen == seen) pthread_cond_wait(&pool.wake, &pool.mu);
        if (pool.quit) break;
        seen = pool.gen;
        if (slot >= pool.job_threads) continue;   /* not needed this time: back to sleep */
        pthread_mutex_unlock(&pool.mu);
        run_tasks(slot);
        pthread_mutex_lock(&pool.mu);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* A forked child has none of the workers, only their bookkeeping: start from an empty pool. */
static void atfork_child(void) {
    pthread_mutex_init(&pool.mu, NULL);
    pthread_mutex_init(&pool.call_mu, NULL);
    pthread_mutex_init(&sets_mu, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.n_workers = 0;
    pool.quit = 0;
    pool.active = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) { pthread_atfork(NULL, NULL, atfork_child); }

/* Starts workers up to want-1 (the caller is slot 0). Returns the number of usable slots. mu held. */
static int ensure_workers(int want) {
    if (pool.n_workers < want - 1) pthread_once(&atfork_once, atfork_register);
    while (pool.n_workers < want - 1) {
        int slot = pool.n_workers + 1;
        start_gen[slot] = pool.gen;
        if (pthread_create(&pool.tid[slot], NULL, worker_main, (void *)(intptr_t)slot) != 0) break;
        pool.n_workers++;
    }
    return want < pool.n_workers + 1 ? want : pool.n_workers + 1;
}

ag__par ag__parallel_begin(size_t n_tasks) {
    if (tls_slot >= 0)   /* nested: serial on this worker's slot, inside a job that holds the pool */
        return (ag__par){.base = tls_slot, .used = 1, .held = 0};
    int nt = ag_get_threads();
    if (n_tasks < (size_t)nt) nt = n_tasks ? (int)n_tasks : 1;
    if (nt > 1) pthread_mutex_lock(&pool.call_mu);
    return (ag__par){.base = 0, .used = nt, .held = nt > 1};
}

void ag__parallel_end(ag__par *p) {
    if (p->held) pthread_mutex_unlock(&pool.call_mu);
    p->held = 0;
}

void ag__parallel_run(const ag__par *p, size_t n_tasks, ag__task_fn fn, void *ctx) {
    if (n_tasks == 0) return;
    if (!p->held) {
        int saved = tls_slot;
        tls_slot = p->base;
        for (size_t t = 0; t < n_tasks; t++) fn(ctx, t, p->base);
        tls_slot = saved;
        return;
    }
    pthread_mutex_lock(&pool.mu);
    int nt = ensure_workers(p->used);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    pool.job_threads = nt;
    pool.active = nt - 1;
    pool.gen++;
    atomic_store_explicit(&pool.gen_seen, pool.gen, memory_order_release);
    if (nt > 1) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);

    tls_slot = 0;
    run_tasks(0);
    tls_slot = -1;

    pthread_mutex_lock(&pool.mu);
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

void ag__parallel_for(size_t n_tasks, ag__task_fn fn, void *ctx) {
    if (n_tasks == 0) return;
    ag__par p = ag__parallel_begin(n_tasks);
    ag__parallel_run(&p, n_tasks, fn, ctx);
    ag__parallel_end(&p);
}

static void free_set(scratch_set *set) {
    for (int s = 0; s < AG__SCRATCH_SLOTS; s++) ag__free(set->s[s].raw);
    pthread_mutex_lock(&sets_mu);
    if (set->prev) set->prev->next = set->next;
    else sets = set->next;
    if (set->next) set->next->prev = set->prev;
    pthread_mutex_unlock(&sets_mu);
    ag__free(set);
}

static void set_at_thread_exit(void *set) {
    free_set(set);
    tls_set = NULL;   /* a later destructor calling in again gets a new set, freed the same way */
}

static void make_set_key(void) {
    set_key_ok = pthread_key_create(&set_key, set_at_thread_exit) == 0;
    pthread_once(&atfork_once, atfork_register);   /* sets_mu may be held at a fork */
}

/* The calling user thread's set, made on first use; NULL if it cannot be allocated. */
static scratch_set *own_set(void) {
    if (tls_set) return tls_set;
    pthread_once(&set_key_once, make_set_key);
    scratch_set *set = ag__malloc(sizeof *set);
    if (!set) return NULL;
    *set = (scratch_set){0};
    pthread_mutex_lock(&sets_mu);
    set->next = sets;
    if (sets) sets->prev = set;
    sets = set;
    pthread_mutex_unlock(&sets_mu);
    /* without the key the set is only freed by ag__threads_shutdown, but stays listed (reachable) */
    if (set_key_ok) pthread_setspecific(set_key, set);
    tls_set = set;
    return set;
}

void *ag__thread_scratch(int thread, int slot, size_t bytes) {
    if (thread < 0 || thread >= AG__MAX_THREADS || slot < 0 || slot >= AG__SCRATCH_SLOTS) return NULL;
    scratch *s;
    if (thread == 0) {
        scratch_set *set = own_set();
        if (!set) return NULL;
        s = &set->s[slot];
    } else {
        s = &scr[thread][slot];
    }
    if (bytes <= s->cap) return s->p;
    /* free first: the contents need not survive, and peak memory stays lower */
    ag__free(s->raw);
    s->raw = s->p = NULL;
    s->cap = 0;
    if (bytes > SIZE_MAX - 64) return NULL;
    void *raw = ag__malloc(bytes + 64);
    if (!raw) return NULL;
    s->raw = raw;
    s->p = (void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    s->cap = bytes;
    return s->p;
}

/* Stops and joins every worker; call_mu held, so no job is running. */
static void join_workers(void) {
    pthread_mutex_lock(&pool.mu);
    pool.quit = 1;
    pthread_cond_broadcast(&pool.wake);
    int n = pool.n_workers;
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i <= n; i++) pthread_join(pool.tid[i], NULL);
    pthread_mutex_lock(&pool.mu);
    pool.n_workers = 0;
    pool.quit = 0;
    pthread_mutex_unlock(&pool.mu);
}

/* Joins idle workers when the process exits or the library is unloaded: a live thread's TLS block shows up
 * as "possibly lost" under valgrind, and an unloaded library must not leave threads running its code.
 * Skipped if a parallel call is in progress (exit from inside a task). Scratch stays reachable. */
__attribute__((destructor)) static void threads_at_exit(void) {
    if (pthread_mutex_trylock(&pool.call_mu) != 0) return;
    join_workers();
    pthread_mutex_unlock(&pool.call_mu);
}

void ag__threads_shutdown(void) {
    pthread_mutex_lock(&pool.call_mu);
    join_workers();
    for (int t = 1; t < AG__MAX_THREADS; t++)
        for (int s = 0; s < AG__SCRATCH_SLOTS; s++) {
            ag__free(scr[t][s].raw);
            scr[t][s] = (scratch){0};
        }
    pthread_mutex_unlock(&pool.call_mu);
    if (tls_set) {   /* only the caller's own set: another thread's may be in use */
        if (set_key_ok) pthread_setspecific(set_key, NULL);
        free_set(tls_set);
        tls_set = NULL;
    }
}

/*
 * fm.h - fashion_mnist's own types and the functions its files share:
 *   main.c     the program's outline        cli.c     flags, presets, --help, settings' checks
 *   util.c     errors, signals, outputs     model.c   the network, the data, checks of saved files
 *   resume.c   checkpoints, --resume        train.c   the training loop and the final model
 *   report.c   what is printed and plotted  eval.c    test-set evaluation and --eval
 *   dist.c     --dist (MPI ranks) and --dist-shards: the micro-shard step summed in fixed point
 */
#ifndef FM_H
#define FM_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/dist.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

#if defined(__GNUC__)
#define FM_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define FM_PRINTF(fmt, first)
#endif

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* Exit status (--help lists them): 128 + n for signal n */
enum { EXIT_RUN = 1, EXIT_USAGE = 2, EXIT_NUMERIC = 3 };

/* ---------------------------------------------------------------- options (cli.c) */

typedef struct cfg {
    char arch[256], act[32], loss[16], optim[16], schedule[16], init[32], l2[16], normalize[16];
    double lr, momentum, lambda, clip, target_acc;
    long batch, epochs, threads, limit, test_limit, stop_after;
    unsigned long long seed;
    char data[1024], model[1024], metrics[1024], plot[1024], checkpoint[1024], eval[1024], resume[1024];
    char preset[16];
    int no_flush_denormal; /* --no-flush-denormal */
    int dist;              /* --dist: data-parallel over MPI (mpirun -np N) */
    long dist_shards;      /* micro-shards per batch (0: the one-sweep step) */
    double dist_timeout;   /* longest wait for the other ranks, seconds */
} cfg;

enum { T_STR, T_DBL, T_LONG, T_U64 };
typedef struct opt_def {
    const char *name;
    int type;
    size_t off, size;
    int saved; /* restored from a checkpoint by --resume */
    const char *help;
} opt_def;

#define N_OPTS 31 /* entries of OPTS (checked where it is defined) */
extern const opt_def OPTS[N_OPTS];

void cfg_defaults(cfg *c);
int parse_args(cfg *c, int argc, char **argv, int pass, unsigned char *given);
int set_opt(cfg *c, const opt_def *o, const char *v, const char *from);
void opt_str(const cfg *c, const opt_def *o, char *buf, size_t size);
const opt_def *find_opt(const char *name);
size_t opt_index(const char *name); /* of a name in OPTS */
const char *unknown_name(const char *key, const char *value);
void check_mode(const cfg *c, const unsigned char *given);
void check_settings(const cfg *c, const unsigned char *given, const unsigned char *from_ck);

/* ---------------------------------------------------------------- shared helpers (util.c) */

/* The one error path: "fashion_mnist: <message>" on stderr; fail then exits with status. */
FM_PRINTF(1, 2) void report(const char *fmt, ...);
FM_PRINTF(2, 3) _Noreturn void fail(int status, const char *fmt, ...);
extern ag_dist *fm_dist; /* with --dist or --dist-shards: fail() then ends every rank (ag_dist_abort) */
int finish(int rc);
double now(void);
const char *shown(const char *s, char *buf, size_t size);
int meta_count(const char *s, unsigned long long max, unsigned long long *out);
int meta_number(const char *s, double *out);
void *alloc_aligned(size_t bytes);

extern volatile sig_atomic_t stop_signal;
void catch_signals(void);
const char *signal_name(int sig);

void output_target(const char *flag, const char *path, char *out, size_t size);
void check_outputs(const cfg *c, const unsigned char *given);

/* ---------------------------------------------------------------- the network and data (model.c) */

typedef struct net {
    ag_params *ps;
    ag_mlp *mlp;
    ag_tape *t;
    int mse;
    size_t in, out;
} net;

ag_status parse_init(const char *s, ag_init *out);
void net_build(net *n, const char *arch, const char *act, const char *loss, const char *init, uint64_t seed);
void net_free(net *n);
void load_split(ag_dataset *ds, const char *dir, const char *prefix, long limit);
void check_arch(const ag_model_file *mf, const char *file, const char *key, const char *arch);
void check_finite(const char *file, const ag_params *ps, const ag_named_buf *extra, size_t n_extra);
void read_input_stats(const ag_model_file *mf, const char *file, const char *what, double *mean, double *std);

/* ---------------------------------------------------------------- a training run */

typedef struct hist {
    double train_loss, test_loss, test_acc, seconds, sps, lr;
} hist;

typedef struct run {
    cfg c;
    unsigned char given[N_OPTS];   /* set on the command line */
    unsigned char from_ck[N_OPTS]; /* read from the --resume checkpoint (for messages) */
    int flushed;                   /* FTZ/DAZ set */
    ag_model_file *ck;             /* the --resume checkpoint, open until its tensors are read */
    size_t start_epoch, end_epoch, epochs_done;
    unsigned long long ck_steps;
    double train_seconds, samples_done;
    hist *h; /* one row per epoch run, h_cap of them allocated */
    size_t h_cap;
    ag_dataset train, test;
    double in_mean, in_std;               /* input standardisation (in_std 0: pixels / 255) */
    char in_mean_s[32], in_std_s[32];     /* round-trip text for the files */
    net n;
    ag_optim *opt;
    ag_named_buf state[8]; /* the optimizer's buffers, named optim.<name> */
    char state_names[8][64];
    size_t n_state;
    ag_real lambda_cost; /* 0: ag_cost_*_l2 records no L2 term */
    size_t bs, steps;    /* batch size, steps per epoch */
    ag_real *x, *oh;     /* one batch, reused by every step */
    int32_t *y;
    uint32_t *order, *eidx;
    ag_tensor *weights[AG_MLP_MAX_LAYERS];
    int tty;
    size_t steady_allocs, correct[10], total[10];
    double acc;
    int blown;       /* numerical blow-up: stop, keep the last good checkpoint, exit EXIT_NUMERIC */
    int interrupted; /* SIGINT/SIGTERM: stop after the current step, exit 128 + the signal */
    /* --dist / --dist-shards (dist.c): this rank's micro-shards of every batch */
    ag_dist *dist;
    int rank, nranks;
    size_t shard_first, shard_count;
    int dist_stop; /* a rank saw a stop signal at the last step (summed in the reduction) */
} run;

/* resume.c */
void resume_settings(run *r);
void resume_counters(run *r);
void resume_weights(run *r);
void save_checkpoint(run *r, size_t epoch);
void last_checkpoint(const run *r);

/* dist.c (of the example) */
void dist_start(run *r, int *argc, char ***argv);
void dist_outputs(run *r);
void dist_agree(run *r);
ag_status dist_step(run *r, size_t s, size_t k, double *loss);

/* train.c */
void install_counting_allocator(void);
void load_data(run *r);
void setup_training(run *r);
void train(run *r);
void finish_training(run *r);
void run_free(run *r);

/* report.c */
void print_header(const run *r);
void progress(int epoch, int epochs, size_t step, size_t steps, double loss, double sps, double eta);
void print_epoch(const run *r, size_t epoch);
void write_metrics(const char *path, const hist *h, size_t n);
void write_plot(const run *r, size_t epochs);
void print_classes(const size_t *correct, const size_t *total);
void print_summary(const run *r);

/* eval.c */
double evaluate(net *n, const ag_dataset *ds, ag_real *x, int32_t *y, ag_real *onehot, uint32_t *idx, size_t bs,
                double *loss_out, size_t *correct, size_t *total);
int run_eval(const cfg *c);

#endif

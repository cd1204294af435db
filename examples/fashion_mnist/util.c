/*
 * util.c - what every part of fashion_mnist uses: the error path, the exit status check, the clock,
 * metadata numbers, signals, and the checks of the output files before training.
 */
#if !defined(_XOPEN_SOURCE) || _XOPEN_SOURCE < 700
#undef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* realpath (XSI in glibc's headers) */
#endif
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fm.h"

/* ---------------------------------------------------------------- small helpers */

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void vreport(const char *fmt, va_list ap) {
    fputs("fashion_mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void report(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

/* status: EXIT_RUN for what goes wrong while running (files, data), EXIT_USAGE for a bad command
 * line (a value out of range, flags that conflict), as for a flag that cannot be parsed. */
_Noreturn void fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    if (fm_dist) { /* the other ranks would wait for this one until their timeout */
        fflush(NULL);
        ag_dist_abort(fm_dist, status);
    }
    exit(status);
}

ag_dist *fm_dist;

/* Standard output checked at exit: a full disk or a closed pipe must not end in status 0. */
int finish(int rc) {
    int e = fflush(stdout) != 0 ? errno : 0;
    if (e || ferror(stdout)) {
        report("cannot write to standard output%s%s", e ? ": " : "", e ? strerror(e) : "");
        return rc ? rc : 1;
    }
    return rc;
}

/* SIGINT/SIGTERM during training: the handler only records the signal and restores the default
 * action (a second Ctrl-C ends the program at once); the training loop stops after the current
 * step. */
volatile sig_atomic_t stop_signal;
static void on_signal(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    stop_signal = sig;
}
void catch_signals(void) {
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct sigaction sa, old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue; /* e.g. nohup, & */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}
const char *signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

/* ---------------------------------------------------------------- output files */

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) || S_ISBLK(m) ? "a device"
         : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* An output replaced through a temporary file and rename may be a regular file or not exist yet.
 * A symbolic link to a regular file is followed: out (when not NULL) gets the file it points to,
 * which is replaced while the link stays. Anything else (a directory, a FIFO, a device, a dangling
 * link) is refused rather than replaced. */
void output_target(const char *flag, const char *path, char *out, size_t size) {
    struct stat st;
    if (out) snprintf(out, size, "%s", path);
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return;
        fail(EXIT_RUN, "--%s %s: %s", flag, path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
        if (stat(path, &st) != 0)
            fail(EXIT_RUN, "--%s %s: a symbolic link to %s (%s); refusing to replace it", flag, path,
                 errno == ENOENT ? "a missing file" : "a file that cannot be reached", strerror(errno));
        if (!S_ISREG(st.st_mode))
            fail(EXIT_RUN, "--%s %s: a symbolic link to %s; refusing to replace it (give a regular file)", flag, path,
                 file_kind(st.st_mode));
        if (out) {
            char *r = realpath(path, NULL);
            if (!r) fail(EXIT_RUN, "--%s %s: %s", flag, path, strerror(errno));
            if (strlen(r) >= size) fail(EXIT_RUN, "--%s %s: the file it links to has too long a path", flag, path);
            snprintf(out, size, "%s", r);
            free(r);
        }
        return;
    }
    if (!S_ISREG(st.st_mode))
        fail(EXIT_RUN, "--%s %s: exists and is %s; refusing to replace it (give a regular file)", flag, path,
             file_kind(st.st_mode));
}

/* The directory an output goes to must take a new file (the temporary one renamed over it), checked
 * before training rather than found out when the first file is written. */
static void output_dir_writable(const char *flag, const char *path) {
    char dir[1100];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0)
        fail(EXIT_RUN, "--%s %s: cannot write in %s: %s", flag, path, dir, strerror(errno));
}

/* path made absolute with its directory's symbolic links resolved (the file itself may not exist) */
static void canonical(const char *path, char *out, size_t size) {
    char *r = realpath(path, NULL);
    if (!r) {
        const char *slash = strrchr(path, '/');
        char dir[1100];
        if (!slash) snprintf(dir, sizeof dir, ".");
        else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        char *rd = realpath(dir, NULL);
        if (rd) snprintf(out, size, "%s/%s", rd, slash ? slash + 1 : path);
        else snprintf(out, size, "%s", path);
        free(rd);
        return;
    }
    snprintf(out, size, "%s", r);
    free(r);
}

/* Two flags naming the same file (after symbolic links, or hard links to one file) */
static int same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ca[2300], cb[2300];
    canonical(a, ca, sizeof ca);
    canonical(b, cb, sizeof cb);
    return strcmp(ca, cb) == 0;
}

/* The outputs, before training: each a file of its own, a regular one or none yet, in a directory
 * that takes new files. */
void check_outputs(const cfg *c, const unsigned char *given) {
    const char *flag[4] = {"model", "checkpoint", "metrics", "plot"};
    if (c->resume[0] && !given[opt_index("checkpoint")]) flag[1] = "resume"; /* the checkpoint's path */
    const char *path[4] = {c->model, c->checkpoint, c->metrics, c->plot};
    for (int i = 0; i < 4; i++)
        if (path[i][0]) {
            output_target(flag[i], path[i], NULL, 0);
            output_dir_writable(flag[i], path[i]);
        }
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (path[i][0] && path[j][0] && same_file(path[i], path[j]))
                fail(EXIT_USAGE, "--%s %s and --%s %s name the same file: give each output its own path", flag[i],
                     path[i], flag[j], path[j]);
    for (int i = 0; i < 4; i++)
        if (c->resume[0] && i != 1 && strcmp(flag[1], "resume") && path[i][0] && same_file(path[i], c->resume))
            fail(EXIT_USAGE, "--%s %s is the checkpoint given to --resume: give the %s another path", flag[i], path[i],
                 flag[i]);
}

/* AG_ALIGN-aligned buffer (as the tape's own), zeroed; size rounded up as aligned_alloc requires */
void *alloc_aligned(size_t bytes) {
    size_t n = (bytes + AG_ALIGN - 1) / AG_ALIGN * AG_ALIGN;
    void *p = aligned_alloc(AG_ALIGN, n ? n : AG_ALIGN);
    if (!p) fail(EXIT_RUN, "out of memory for %zu bytes", bytes);
    memset(p, 0, n ? n : AG_ALIGN);
    return p;
}

/* A count in metadata: digits only, at most max. */
int meta_count(const char *s, unsigned long long max, unsigned long long *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v > max) return -1;
    *out = v;
    return 0;
}

/* A non-negative finite number in metadata. */
int meta_number(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v) || v < 0) return -1;
    *out = v;
    return 0;
}

/* s for a message: at most 48 bytes, anything but printable ASCII shown as '?' (metadata read
 * from a file must not write control sequences to the terminal) */
const char *shown(const char *s, char *buf, size_t size) {
    size_t k = 0;
    for (; s && *s && k + 4 < size && k < 48; s++) buf[k++] = (*s >= 32 && *s < 127) ? *s : '?';
    if (s && *s) buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
    buf[k] = '\0';
    return buf;
}


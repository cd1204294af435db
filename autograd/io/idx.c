/*
 * idx.c - IDX files (MNIST / Fashion-MNIST), raw or gzipped, and the data set built from an image
 * file and a label file. Every header is validated against the bytes present and a memory cap
 * before anything is allocated from it; gzip data is decoded in process (gunzip.c), its header
 * checked as soon as its first 16 bytes are out.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static void set_ok(char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---------------------------------------------------------------- header checks */

typedef struct hdr {
    uint32_t magic;
    size_t count, rows, cols;
    size_t header_bytes; /* 8 (labels) or 16 (images) */
    size_t data_bytes;   /* count * rows * cols, checked */
} hdr;

static const char *kind_name(uint32_t magic) { return magic == AG_IDX_IMAGES ? "images" : "labels"; }

/* The magic from the first 4 bytes: its header size, or an error. */
static ag_status check_magic(const unsigned char *p, const char *name, hdr *h, char *err, size_t errsize) {
    uint32_t m = be32(p);
    h->magic = m;
    if (p[0] != 0 || p[1] != 0)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name,
                     "not an IDX file (magic 0x%08x; expected 0x%08x for labels or 0x%08x for images)",
                     (unsigned)m, AG_IDX_LABELS, AG_IDX_IMAGES);
    if (m != AG_IDX_LABELS && m != AG_IDX_IMAGES)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name,
                     "unsupported IDX file (magic 0x%08x: type 0x%02x with %u dimensions; expected 0x%08x "
                     "for labels or 0x%08x for images)",
                     (unsigned)m, p[2], p[3], AG_IDX_LABELS, AG_IDX_IMAGES);
    h->header_bytes = m == AG_IDX_LABELS ? 8 : 16;
    return AG_OK;
}

/* Dimensions from the rest of the header (p points at the whole header). */
static ag_status check_dims(const unsigned char *p, const char *name, const ag_idx_options *o, hdr *h,
                            char *err, size_t errsize) {
    uint32_t count = be32(p + 4);
    h->count = count;
    h->rows = h->cols = 1;
    if (h->magic == AG_IDX_IMAGES) {
        uint32_t r = be32(p + 8), c = be32(p + 12);
        if (r == 0 || c == 0 || r > AG_IDX_MAX_SIDE || c > AG_IDX_MAX_SIDE)
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name,
                         "image size %ux%u in the header is invalid (each side must be 1..%d)", (unsigned)r,
                         (unsigned)c, AG_IDX_MAX_SIDE);
        if (o && ((o->rows && o->rows != r) || (o->cols && o->cols != c))) {
            if (o->rows && o->cols) /* both sides required */
                return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "images are %ux%u but %zux%zu were expected",
                             (unsigned)r, (unsigned)c, o->rows, o->cols);
            size_t want = o->rows ? o->rows : o->cols; /* one side required, the other 0 (any) */
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "images are %ux%u but %zu %s%s expected",
                         (unsigned)r, (unsigned)c, want, o->rows ? "row" : "column",
                         want == 1 ? " was" : "s were");
        }
        h->rows = r;
        h->cols = c;
    }
    if (count == 0) return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "header says 0 %s", kind_name(h->magic));
    size_t cap = o && o->max_bytes ? o->max_bytes : AG_IDX_MAX_BYTES;
    size_t per = h->rows * h->cols; /* <= 4096^2, no overflow */
    size_t total;
    if (!ag__mul_ok(per, h->count, &total) || total > cap)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name,
                     "header says %zu %s of %zux%zu, more than the cap of %zu bytes", h->count,
                     kind_name(h->magic), h->rows, h->cols, cap);
    h->data_bytes = total;
    return AG_OK;
}

static ag_status truncated_msg(const hdr *h, size_t got, const char *name, const char *extra, char *err,
                               size_t errsize) {
    if (h->magic == AG_IDX_IMAGES)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name,
                     "truncated%s: header says %zu images of %zux%zu but file has %zu bytes of pixels", extra,
                     h->count, h->rows, h->cols, got);
    return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "truncated%s: header says %zu labels but file has %zu",
                 extra, h->count, got);
}

static ag_status check_labels(const hdr *h, const uint8_t *data, const ag_idx_options *o, const char *name,
                              char *err, size_t errsize) {
    if (h->magic != AG_IDX_LABELS || !o || o->classes <= 0) return AG_OK;
    for (size_t i = 0; i < h->count; i++)
        if (data[i] >= o->classes)
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "label %u at index %zu is outside 0..%d",
                         (unsigned)data[i], i, o->classes - 1);
    return AG_OK;
}

/* ---------------------------------------------------------------- in memory */

/* The checked file as the caller's ag_idx; data becomes its buffer. */
static void set_result(ag_idx *out, const hdr *h, uint8_t *data) {
    out->magic = h->magic;
    out->count = h->count;
    out->rows = h->rows;
    out->cols = h->cols;
    out->data = data;
}

/* The checks and the result of one IDX file of len bytes at p. `own`, when not NULL, is an
 * ag__malloc'ed buffer that starts at p and becomes out->data (no copy); it is freed on failure.
 * `how` ends the size messages (" (decompressed)" for gzip data). */
static ag_status parse_plain(const unsigned char *p, size_t len, unsigned char *own, const char *name,
                             const char *how, const ag_idx_options *opts, ag_idx *out, char *err, size_t errsize) {
    hdr h = {0};
    ag_status st = AG_OK;
    uint8_t *data = NULL;
    if (len < 4) {
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "truncated: %zu bytes%s, too short for an IDX header", len, how);
        goto fail;
    }
    if ((st = check_magic(p, name, &h, err, errsize)) != AG_OK) goto fail;
    if (len < h.header_bytes) {
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "truncated: the %s header is %zu bytes but file has %zu%s",
                   kind_name(h.magic), h.header_bytes, len, how);
        goto fail;
    }
    if ((st = check_dims(p, name, opts, &h, err, errsize)) != AG_OK) goto fail;
    size_t have = len - h.header_bytes;
    if (have < h.data_bytes) {
        st = truncated_msg(&h, have, name, "", err, errsize);
        goto fail;
    }
    if (have > h.data_bytes) {
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "%zu bytes of trailing data%s after the %zu %s",
                   have - h.data_bytes, how, h.count, kind_name(h.magic));
        goto fail;
    }
    if ((st = check_labels(&h, p + h.header_bytes, opts, name, err, errsize)) != AG_OK) goto fail;
    if (own) {
        memmove(own, own + h.header_bytes, h.data_bytes);
        data = own;
    } else {
        data = ag__malloc(h.data_bytes);
        if (!data) return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "idx", name, "out of memory for %zu bytes", h.data_bytes);
        memcpy(data, p + h.header_bytes, h.data_bytes);
    }
    set_result(out, &h, data);
    return AG_OK;
fail:
    ag__free(own);
    return st;
}

/* Trailing bytes counted after the announced data (read from a raw file, or decoded from a gzip
 * one) before the file is refused; past this, "at least" this many are reported. */
#define TRAILING_COUNT_MAX ((size_t)1 << 20)

/* The output side of decoding one IDX file: the header is checked once its first 16 bytes are out
 * (before any large allocation), then the buffer grows with the data, up to what it announces. */
typedef struct gz_sink {
    const char *name;
    const ag_idx_options *opts;
    char *err;
    size_t errsize;
    ag_status st; /* why the sink refused to grow */
    hdr h;
    int have_hdr;
} gz_sink;

static int gz_more(void *ctx, unsigned char **buf, size_t *cap) {
    gz_sink *s = ctx;
    size_t want;
    if (*cap < 16) {
        want = 16;
    } else {
        if (!s->have_hdr) {
            if ((s->st = check_magic(*buf, s->name, &s->h, s->err, s->errsize)) != AG_OK ||
                (s->st = check_dims(*buf, s->name, s->opts, &s->h, s->err, s->errsize)) != AG_OK) {
                size_t used = s->err ? strnlen(s->err, s->errsize) : 0;
                if (s->err && used < s->errsize) snprintf(s->err + used, s->errsize - used, " (decompressed)");
                return 1;
            }
            s->have_hdr = 1;
        }
        size_t total = s->h.header_bytes + s->h.data_bytes; /* <= 16 + the checked cap */
        if (*cap >= total + TRAILING_COUNT_MAX) {
            s->st = ag__buf_fail(s->err, s->errsize, AG_ERR_FORMAT, "idx", s->name,
                          "at least %zu bytes of trailing data (decompressed) after the %zu %s", TRAILING_COUNT_MAX,
                          s->h.count, kind_name(s->h.magic));
            return 1;
        }
        if (*cap >= total) want = total + TRAILING_COUNT_MAX; /* more than announced: count it for the message */
        else {
            want = *cap < ((size_t)2 << 20) ? ((size_t)4 << 20) : *cap * 2; /* grow with the data present */
            if (want > total) want = total;
        }
    }
    unsigned char *nb = ag__realloc(*buf, want);
    if (!nb) {
        s->st = ag__buf_fail(s->err, s->errsize, AG_ERR_NOMEM, "idx", s->name, "out of memory for %zu bytes", want);
        return 1;
    }
    *buf = nb;
    *cap = want;
    return 0;
}

typedef struct mem_src {
    const unsigned char *p;
    size_t left;
} mem_src;

static ptrdiff_t mem_read(void *ctx, unsigned char *buf, size_t cap) {
    mem_src *m = ctx;
    size_t n = m->left < cap ? m->left : cap;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ptrdiff_t)n;
}

typedef struct fd_src {
    int fd;
    int err;                 /* errno of a failed read */
    const unsigned char *pre; /* bytes already read from fd (the magic), handed out first: no seek, */
    size_t pre_len;           /* so a pipe works too */
} fd_src;

static ptrdiff_t fd_read(void *ctx, unsigned char *buf, size_t cap) {
    fd_src *f = ctx;
    if (f->pre_len) {
        size_t n = f->pre_len < cap ? f->pre_len : cap;
        memcpy(buf, f->pre, n);
        f->pre += n;
        f->pre_len -= n;
        return (ptrdiff_t)n;
    }
    for (;;) {
        ssize_t r = read(f->fd, buf, cap);
        if (r >= 0) return (ptrdiff_t)r;
        if (errno != EINTR) {
            f->err = errno;
            return -1;
        }
    }
}

/* Decode a gzip file through `read`, then parse the IDX data it holds. */
static ag_status parse_gz(ag__gz_read_fn read, void *rctx, const int *read_errno, const char *name,
                          const ag_idx_options *opts, ag_idx *out, char *err, size_t errsize) {
    gz_sink sink = {name, opts, err, errsize, AG_OK, {0}, 0};
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    char why[96];
    ag_status st;
    switch (ag__gunzip(read, rctx, gz_more, &sink, &buf, &cap, &len, why, sizeof why)) {
    case AG__GZ_OK:
        return parse_plain(buf, len, buf, name, " (decompressed)", opts, out, err, errsize);
    case AG__GZ_STOPPED:
        st = sink.st;
        break;
    case AG__GZ_READ_ERROR:
        st = ag__buf_fail(err, errsize, AG_ERR_IO, "idx", name, "read error: %s", strerror(read_errno ? *read_errno : EIO));
        break;
    case AG__GZ_NOMEM:
        st = ag__buf_fail(err, errsize, AG_ERR_NOMEM, "idx", name, "out of memory for the gzip decoder");
        break;
    case AG__GZ_TRAILING:
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "trailing data after the gzip stream");
        break;
    default: /* NOT_GZIP cannot happen (the caller saw 1f 8b), CORRUPT */
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", name, "corrupt gzip data: %s", why);
        break;
    }
    ag__free(buf);
    return st;
}

ag_status ag_idx_parse(const void *buf, size_t len, const char *name, const ag_idx_options *opts, ag_idx *out,
                       char *err, size_t errsize) {
    if (out) memset(out, 0, sizeof *out);
    set_ok(err, errsize);
    if (!out || (!buf && len)) return ag__buf_fail(err, errsize, AG_ERR_ARG, "idx", name, "NULL argument");
    const unsigned char *p = buf;
    if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        mem_src m = {p, len};
        return parse_gz(mem_read, &m, NULL, name, opts, out, err, errsize);
    }
    return parse_plain(p, len, NULL, name, "", opts, out, err, errsize);
}

void ag_idx_free(ag_idx *f) {
    if (!f) return;
    ag__free(f->data);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- from files */

/* Read up to n bytes (fewer only at end of file). -1 on a read error (errno set). */
static ptrdiff_t read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ptrdiff_t)got;
}

/* The message for a failed read, from errno. */
static ag_status read_error(const char *path, char *err, size_t errsize) {
    return ag__buf_fail(err, errsize, AG_ERR_IO, "idx", path, "read error: %s", strerror(errno));
}

/* The rest of a raw IDX header after the `have` bytes in head[16] (2, or fewer at end of file), checked
 * into *h. */
static ag_status read_header(int fd, unsigned char *head, size_t have, const char *path,
                             const ag_idx_options *opts, hdr *h, char *err, size_t errsize) {
    ptrdiff_t n;
    if (have == 2) {
        if ((n = read_full(fd, head + 2, 2)) < 0) return read_error(path, err, errsize);
        have += (size_t)n;
    }
    if (have < 4)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", path, "truncated: %zu bytes, too short for an IDX header",
                     have);
    ag_status st = check_magic(head, path, h, err, errsize);
    if (st != AG_OK) return st;
    n = read_full(fd, head + 4, h->header_bytes - 4);
    if (n < 0) return read_error(path, err, errsize);
    if ((size_t)n < h->header_bytes - 4)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", path,
                     "truncated: the %s header is %zu bytes but file has %zu", kind_name(h->magic),
                     h->header_bytes, (size_t)n + 4);
    return check_dims(head, path, opts, h, err, errsize);
}

/* The h->data_bytes after the header into *data (ag__malloc'ed), the buffer growing with the data
 * actually present; a short file is refused, before allocating when it is a regular one. */
static ag_status read_data(int fd, const struct stat *sb, const hdr *h, const char *path, uint8_t **data,
                           char *err, size_t errsize) {
    if (S_ISREG(sb->st_mode) && (uintmax_t)sb->st_size < h->header_bytes + (uintmax_t)h->data_bytes)
        return truncated_msg(h, (size_t)sb->st_size - h->header_bytes, path, "", err, errsize);
    size_t cap = h->data_bytes < ((size_t)4 << 20) ? h->data_bytes : ((size_t)4 << 20), got = 0;
    if (!(*data = ag__malloc(cap)))
        return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "idx", path, "out of memory for %zu bytes", cap);
    for (;;) {
        ptrdiff_t n = read_full(fd, *data + got, cap - got);
        if (n < 0) return read_error(path, err, errsize);
        got += (size_t)n;
        if (got < cap || cap == h->data_bytes) break;
        size_t ncap = cap > h->data_bytes / 2 ? h->data_bytes : cap * 2;
        uint8_t *nd = ag__realloc(*data, ncap);
        if (!nd) return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "idx", path, "out of memory for %zu bytes", ncap);
        *data = nd;
        cap = ncap;
    }
    if (got < h->data_bytes) return truncated_msg(h, got, path, "", err, errsize);
    return AG_OK;
}

/* Refuse anything after the announced data, counting up to TRAILING_COUNT_MAX bytes of it. */
static ag_status check_no_trailing(int fd, const hdr *h, const char *path, char *err, size_t errsize) {
    unsigned char extra[4096];
    size_t more = 0;
    while (more < TRAILING_COUNT_MAX) {
        ptrdiff_t n = read_full(fd, extra, sizeof extra);
        if (n <= 0) break;
        more += (size_t)n;
    }
    if (!more) return AG_OK;
    return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", path, "%s%zu bytes of trailing data after the %zu %s",
                 more >= TRAILING_COUNT_MAX ? "at least " : "", more, h->count, kind_name(h->magic));
}

/* One IDX file, raw or gzipped, from an open fd (sb: its fstat). */
static ag_status read_fd(int fd, const struct stat *sb, const char *path, const ag_idx_options *opts,
                         ag_idx *out, char *err, size_t errsize) {
    unsigned char head[16];
    ptrdiff_t n = read_full(fd, head, 2);
    if (n < 0) return read_error(path, err, errsize);
    if (n == 2 && head[0] == 0x1f && head[1] == 0x8b) {
        fd_src f = {fd, 0, head, 2};
        return parse_gz(fd_read, &f, &f.err, path, opts, out, err, errsize);
    }
    hdr h;
    uint8_t *data = NULL;
    ag_status st = read_header(fd, head, (size_t)n, path, opts, &h, err, errsize);
    if (st == AG_OK) st = read_data(fd, sb, &h, path, &data, err, errsize);
    if (st == AG_OK) st = check_no_trailing(fd, &h, path, err, errsize);
    if (st == AG_OK) st = check_labels(&h, data, opts, path, err, errsize);
    if (st != AG_OK) {
        ag__free(data);
        return st;
    }
    set_result(out, &h, data);
    return AG_OK;
}

ag_status ag_idx_read(const char *path, const ag_idx_options *opts, ag_idx *out, char *err, size_t errsize) {
    if (out) memset(out, 0, sizeof *out);
    set_ok(err, errsize);
    if (!path || !out) return ag__buf_fail(err, errsize, AG_ERR_ARG, "idx", path ? path : "", path ? "out is NULL" : "path is NULL");
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT) return ag__buf_fail(err, errsize, AG_ERR_IO, "idx", path, "no such file");
        return ag__buf_fail(err, errsize, AG_ERR_IO, "idx", path, "cannot open: %s", strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || S_ISDIR(sb.st_mode)) {
        close(fd);
        return ag__buf_fail(err, errsize, AG_ERR_IO, "idx", path, "is a directory");
    }
    ag_status st = read_fd(fd, &sb, path, opts, out, err, errsize);
    close(fd);
    return st;
}

/* ---------------------------------------------------------------- data sets */

void ag_dataset_free(ag_dataset *ds) {
    if (!ds) return;
    ag__free(ds->images);
    ag__free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static ag_status pair(ag_dataset *ds, ag_idx *im, ag_idx *lb, const char *im_name, const char *lb_name,
                      const ag_idx_options *o, char *err, size_t errsize) {
    ag_status st = AG_OK;
    if (im->magic != AG_IDX_IMAGES)
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", im_name,
                   "is an IDX label file (magic 0x%08x) but an image file (magic 0x%08x) was expected",
                   AG_IDX_LABELS, AG_IDX_IMAGES);
    else if (lb->magic != AG_IDX_LABELS)
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", lb_name,
                   "is an IDX image file (magic 0x%08x) but a label file (magic 0x%08x) was expected",
                   AG_IDX_IMAGES, AG_IDX_LABELS);
    else if (im->count != lb->count)
        st = ag__buf_fail(err, errsize, AG_ERR_FORMAT, "idx", im_name, "has %zu images but %s has %zu labels", im->count,
                   lb_name ? lb_name : "<memory>", lb->count);
    if (st != AG_OK) {
        ag_idx_free(im);
        ag_idx_free(lb);
        return st;
    }
    size_t n = im->count;
    if (o && o->limit && o->limit < n) n = o->limit;
    ds->n = n;
    ds->rows = im->rows;
    ds->cols = im->cols;
    ds->images = im->data;
    ds->labels = lb->data;
    int maxl = 0;
    for (size_t i = 0; i < n; i++)
        if (lb->data[i] > maxl) maxl = lb->data[i];
    ds->classes = o && o->classes > 0 ? o->classes : maxl + 1;
    memset(im, 0, sizeof *im);
    memset(lb, 0, sizeof *lb);
    return AG_OK;
}

ag_status ag_dataset_load(ag_dataset *ds, const char *images_path, const char *labels_path,
                          const ag_idx_options *opts, char *err, size_t errsize) {
    if (ds) memset(ds, 0, sizeof *ds);
    set_ok(err, errsize);
    if (!ds || !images_path || !labels_path)
        return ag__buf_fail(err, errsize, AG_ERR_ARG, "idx", images_path ? images_path : "",
                     !ds ? "ds is NULL" : !images_path ? "images_path is NULL" : "labels_path is NULL");
    ag_idx im, lb;
    ag_status st = ag_idx_read(images_path, opts, &im, err, errsize);
    if (st != AG_OK) return st;
    st = ag_idx_read(labels_path, opts, &lb, err, errsize);
    if (st != AG_OK) {
        ag_idx_free(&im);
        return st;
    }
    return pair(ds, &im, &lb, images_path, labels_path, opts, err, errsize);
}

ag_status ag_dataset_parse(ag_dataset *ds, const void *images, size_t images_len, const void *labels,
                           size_t labels_len, const ag_idx_options *opts, char *err, size_t errsize) {
    if (ds) memset(ds, 0, sizeof *ds);
    set_ok(err, errsize);
    if (!ds) return ag__buf_fail(err, errsize, AG_ERR_ARG, "idx", NULL, "NULL argument");
    ag_idx im, lb;
    ag_status st = ag_idx_parse(images, images_len, "<images>", opts, &im, err, errsize);
    if (st != AG_OK) return st;
    st = ag_idx_parse(labels, labels_len, "<labels>", opts, &lb, err, errsize);
    if (st != AG_OK) {
        ag_idx_free(&im);
        return st;
    }
    return pair(ds, &im, &lb, "<images>", "<labels>", opts, err, errsize);
}

/* v / 255 rounded once in ag_real: the same values as the former (ag_real)(v / 255.0) table for
 * all 256 bytes (tests/io/test_idx.c), and unlike a table lookup it vectorises (AG__CLONES: at the
 * machine's width; an exact conversion and one division, so the same bits from every clone). */
AG__CLONES static void bytes_to_real(const uint8_t *restrict src, ag_real *restrict dst, size_t f) {
    for (size_t j = 0; j < f; j++) dst[j] = (ag_real)src[j] / (ag_real)255;
}

/* (v / 255 - mean) / std: a subtraction between two divisions leaves nothing to contract into an FMA, so
 * every clone rounds the same three operations */
AG__CLONES static void bytes_to_std(const uint8_t *restrict src, ag_real *restrict dst, size_t f, ag_real mean,
                                    ag_real std) {
    for (size_t j = 0; j < f; j++) dst[j] = ((ag_real)src[j] / (ag_real)255 - mean) / std;
}

ag_status ag_dataset_pixel_stats(const ag_dataset *ds, double *mean, double *std) {
    if (!ds || !mean || !std || !ds->images || ds->n == 0 || ds->rows * ds->cols == 0) return AG_ERR_ARG;
    size_t count[256] = {0};
    const size_t total = ds->n * ds->rows * ds->cols;
    for (size_t i = 0; i < total; i++) count[ds->images[i]]++;
    /* integer sums: S <= 255 total, Q <= 255^2 total, far below 2^64 for any loadable set */
    uint64_t s = 0, q = 0;
    for (uint64_t v = 0; v < 256; v++) s += v * count[v], q += v * v * count[v];
    const double n = (double)total, m = (double)s / n;
    double var = (double)q / n - m * m;
    *mean = m / 255;
    *std = var > 0 ? sqrt(var) / 255 : 0;
    return AG_OK;
}

ag_status ag_dataset_standardize(ag_dataset *ds, double mean, double std) {
    if (!ds || !isfinite(mean) || !isfinite(std) || std < 0 || (std == 0 && mean != 0)) return AG_ERR_ARG;
    ds->mean = mean;
    ds->std = std;
    return AG_OK;
}

ag_status ag_dataset_batch(const ag_dataset *ds, const uint32_t *idx, size_t n, ag_real *x, int32_t *labels,
                           ag_real *onehot) {
    if (!ds || !idx || !x) return AG_ERR_ARG; /* even for n == 0: the contract does not depend on n */
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= ds->n) return AG_ERR_ARG;
    const size_t f = ds->rows * ds->cols;
    const int standard = ds->std > 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n) /* rows are gathered at random: fetch the next one while converting this one */
            for (size_t b = 0; b < f; b += 64) __builtin_prefetch(ds->images + (size_t)idx[i + 1] * f + b, 0, 0);
        if (standard)
            bytes_to_std(ds->images + (size_t)idx[i] * f, x + i * f, f, (ag_real)ds->mean, (ag_real)ds->std);
        else
            bytes_to_real(ds->images + (size_t)idx[i] * f, x + i * f, f);
    }
    if (labels)
        for (size_t i = 0; i < n; i++) labels[i] = ds->labels[idx[i]];
    if (onehot) {
        size_t c = (size_t)ds->classes;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < c; j++) onehot[i * c + j] = 0;
            if (ds->labels[idx[i]] < c) onehot[i * c + ds->labels[idx[i]]] = 1;
        }
    }
    return AG_OK;
}

void ag_dataset_shuffle(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch) {
    if (!order) return;
    for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    ag_rng r;
    /* mix the epoch into the seed (splitmix-style odd constant), then let splitmix64 spread it */
    ag_rng_seed(&r, seed ^ (epoch + 1) * 0x9E3779B97F4A7C15ull);
    ag_rng_shuffle(&r, order, n);
}

/*
 * safetensors.c - model files in the safetensors layout and a strict JSON reader for
 * the header. See ag_io.h for the layout and the guarantees (atomic save, all-or-nothing load).
 *
 * The header reader is written for the one shape a safetensors header has (an object of tensor
 * objects and one "__metadata__" object of strings), so its depth is fixed at three levels; it
 * accepts exactly RFC 8259 JSON within that shape (strict strings and UTF-8, integers without
 * sign, fraction or leading zeros) and refuses unknown fields and duplicate names.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define META_VALUE_MAX ((size_t)64 << 10)
#define TMP_BASE_MAX 64 /* bytes of the target's name in its temporary file's name */

#ifdef AG_DOUBLE
#define AG_DTYPE "F64"
#else
#define AG_DTYPE "F32"
#endif

/* The header's own CRC, next to "crc32" (the data's) in __metadata__; not listed among the metadata. */
#define HEADER_CRC_KEY "header_crc32"

/* ---------------------------------------------------------------- little-endian values */

#define CHUNK_ELEMS 4096

/* ag_real -> little-endian bytes (out holds n * sizeof(ag_real)). */
static void to_le(const ag_real *v, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
#ifdef AG_DOUBLE
        uint64_t u;
        memcpy(&u, &v[i], 8);
        for (int b = 0; b < 8; b++) out[i * 8 + (size_t)b] = (unsigned char)(u >> (8 * b));
#else
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int b = 0; b < 4; b++) out[i * 4 + (size_t)b] = (unsigned char)(u >> (8 * b));
#endif
    }
}

static void from_le(const unsigned char *in, size_t n, ag_real *v) {
    for (size_t i = 0; i < n; i++) {
#ifdef AG_DOUBLE
        uint64_t u = 0;
        for (int b = 7; b >= 0; b--) u = u << 8 | in[i * 8 + (size_t)b];
        memcpy(&v[i], &u, 8);
#else
        uint32_t u = 0;
        for (int b = 3; b >= 0; b--) u = u << 8 | in[i * 4 + (size_t)b];
        memcpy(&v[i], &u, 4);
#endif
    }
}

/* ---------------------------------------------------------------- a growable string */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *q = ag__realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_size(sbuf *b, size_t v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%zu", v);
    sb_put(b, tmp, (size_t)k);
}
/* A JSON string literal. */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* ---------------------------------------------------------------- validation helpers */

static int utf8_ok(const unsigned char *s, size_t n) { return ag__utf8_bad_at(s, n) == n; }

/* Why s cannot be a tensor name or a metadata key ("is NULL", ...), NULL if it can. For messages:
 * "it <phrase>", "the key <phrase>". */
static const char *name_problem(const char *s) {
    if (!s) return "is NULL";
    if (!s[0]) return "is empty";
    size_t n = strlen(s);
    if (n > AG_MODEL_MAX_NAME) return "is longer than 1024 bytes"; /* AG_MODEL_MAX_NAME */
    if (!utf8_ok((const unsigned char *)s, n)) return "is not valid UTF-8";
    return NULL;
}

/* Room for any shape a file can give: 8 dimensions of 20 digits, 7 'x' and the NUL. */
#define SHAPE_STR_SIZE 176

static void shape_str(int ndim, const size_t *shape, char *buf, size_t size) {
    if (ndim == 0) {
        snprintf(buf, size, "scalar");
        return;
    }
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && k < size; i++) {
        int w = snprintf(buf + k, size - k, i ? "x%zu" : "%zu", shape[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* ---------------------------------------------------------------- save */

/* One tensor to save: ag_real values (parameters, extra buffers) or uint32 (ag_model_save_ex). */
typedef struct item {
    const char *name;
    const ag_real *data;
    const uint32_t *u32; /* not NULL: a U32 tensor */
    size_t n;
    int ndim;
    const size_t *shape;
    size_t one; /* shape storage for 1-D extras */
} item;

static size_t item_elem(const item *it) { return it->u32 ? 4 : sizeof(ag_real); }

/* Elements k..k+m of the tensor as they go into the file (little-endian) */
static void item_le(const item *it, size_t k, size_t m, unsigned char *out) {
    if (!it->u32) {
        to_le(it->data + k, m, out);
        return;
    }
    for (size_t i = 0; i < m; i++)
        for (int b = 0; b < 4; b++) out[i * 4 + (size_t)b] = (unsigned char)(it->u32[k + i] >> (8 * b));
}

static ag_status write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return AG_ERR_IO;
        }
        c += w;
        n -= (size_t)w;
    }
    return AG_OK;
}

/* What a save is given, gathered into one list of tensors (parameters, extras, u32 buffers). */
typedef struct save_req {
    const char *path;
    item *items;
    size_t ni;
    const ag_kv *meta;
    size_t n_meta;
    char *err;
    size_t errsize;
} save_req;

/* Counts, buffers and the total size, into r->items (the caller frees it, also on failure). */
static ag_status save_collect(save_req *r, const ag_params *ps, const ag_named_buf *extra, size_t n_extra,
                              const ag_u32_buf *ints, size_t n_ints) {
    const char *W = "save", *path = r->path;
    size_t np = ag_params_count(ps);
    /* compare before adding: np + n_extra or n_meta + 1 would wrap for counts near SIZE_MAX */
    if (np > AG_MODEL_MAX_TENSORS || n_extra > AG_MODEL_MAX_TENSORS - np ||
        n_ints > AG_MODEL_MAX_TENSORS - np - n_extra)
        return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, W, path,
                     "%zu parameters and %zu extra tensors, at most %d tensors", np, n_extra + n_ints,
                     AG_MODEL_MAX_TENSORS);
    if (r->n_meta > AG_MODEL_MAX_META - 1)
        return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, W, path, "%zu metadata entries, at most %d", r->n_meta,
                     AG_MODEL_MAX_META - 1);
    size_t ni = np + n_extra + n_ints; /* <= AG_MODEL_MAX_TENSORS */
    item *items = r->items = ag__calloc(ni ? ni : 1, sizeof *items);
    if (!items) return ag__buf_fail(r->err, r->errsize, AG_ERR_NOMEM, W, path, "out of memory");
    r->ni = ni;
    for (size_t i = 0; i < np; i++) {
        const ag_tensor *x = ag_params_at(ps, i);
        items[i] = (item){x->name, x->value, NULL, x->size, x->ndim, x->shape, 0};
    }
    for (size_t i = 0; i < n_extra + n_ints; i++) {
        item *it = &items[np + i];
        if (i < n_extra) *it = (item){extra[i].name, extra[i].data, NULL, extra[i].n, 1, NULL, extra[i].n};
        else *it = (item){ints[i - n_extra].name, NULL, ints[i - n_extra].data, ints[i - n_extra].n, 1, NULL, 0};
        it->one = it->n;
        it->shape = &it->one;
        if (!it->data && !it->u32 && it->n)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, W, path, "extra buffer %zu has no data", i);
        if (it->n > SIZE_MAX / 8)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, W, path, "extra buffer %zu is too large", i);
    }
    /* the data_offsets add up every tensor's bytes: the total must not wrap either */
    size_t total = 0;
    for (size_t i = 0; i < ni; i++) {
        size_t bytes;
        if (!ag__mul_ok(items[i].n, item_elem(&items[i]), &bytes) || bytes > SIZE_MAX - total)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, W, path, "tensors 0 to %zu hold more than %zu bytes of data",
                         i, (size_t)SIZE_MAX);
        total += bytes;
    }
    return AG_OK;
}

/* Tensor names: valid, not reserved, not repeated. */
static ag_status save_check_names(const save_req *r) {
    const item *items = r->items;
    for (size_t i = 0; i < r->ni; i++) {
        const char *why = name_problem(items[i].name);
        if (why)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "tensor %zu has an invalid name: it %s", i,
                         why);
        if (strcmp(items[i].name, "__metadata__") == 0)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path,
                         "tensor %zu has an invalid name: __metadata__ is reserved (the metadata is stored under it)",
                         i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(items[i].name, items[j].name) == 0)
                return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "tensor name %s is used twice",
                             items[i].name);
    }
    return AG_OK;
}

/* Metadata: valid keys and values, no reserved key, no key twice. */
static ag_status save_check_meta(const save_req *r) {
    const ag_kv *meta = r->meta;
    for (size_t i = 0; i < r->n_meta; i++) {
        const char *why = name_problem(meta[i].key);
        if (why)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "metadata entry %zu: the key %s", i, why);
        if (strcmp(meta[i].key, "crc32") == 0)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path,
                         "metadata entry %zu: the key crc32 is reserved (the CRC of the data is added under it)", i);
        if (strcmp(meta[i].key, HEADER_CRC_KEY) == 0)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path,
                         "metadata entry %zu: the key " HEADER_CRC_KEY
                         " is reserved (the CRC of the header is added under it)", i);
        if (!meta[i].value) why = "is NULL";
        else if (strlen(meta[i].value) > META_VALUE_MAX) why = "is longer than 65536 bytes"; /* META_VALUE_MAX */
        else if (!utf8_ok((const unsigned char *)meta[i].value, strlen(meta[i].value))) why = "is not valid UTF-8";
        if (why)
            return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "metadata entry %zu: the value of %s %s", i,
                         meta[i].key, why);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "metadata key %s is given twice",
                             meta[i].key);
    }
    return AG_OK;
}

/* CRC of the data section, as it will be written. */
static uint32_t data_crc(const item *items, size_t ni, unsigned char *chunk) {
    uint32_t crc = 0;
    for (size_t i = 0; i < ni; i++)
        for (size_t k = 0; k < items[i].n; k += CHUNK_ELEMS) {
            size_t m = items[i].n - k < CHUNK_ELEMS ? items[i].n - k : CHUNK_ELEMS;
            item_le(&items[i], k, m, chunk);
            crc = ag_crc32(crc, chunk, m * item_elem(&items[i]));
        }
    return crc;
}

static void len_le(uint64_t n, unsigned char out[8]) {
    for (int b = 0; b < 8; b++) out[b] = (unsigned char)(n >> (8 * b));
}

/* The CRC of a header (its 8 length bytes and N bytes of JSON) with the 8 hex digits at hex (an
 * offset in the JSON) read as '0': the value that goes there, and what a reader checks. */
static uint32_t header_crc(const unsigned char len8[8], const unsigned char *json, size_t n, size_t hex) {
    uint32_t crc = ag_crc32(0, len8, 8);
    crc = ag_crc32(crc, json, hex);
    crc = ag_crc32(crc, "00000000", 8);
    return ag_crc32(crc, json + hex + 8, n - hex - 8);
}

/* The JSON header into h (padded to 8): metadata with the data CRC and the header CRC, then the
 * tensor table. AG_ERR_NOMEM or AG_ERR_ARG (over AG_MODEL_MAX_HEADER) with a message. */
static ag_status build_header(const save_req *r, uint32_t crc, sbuf *h) {
    char crcs[16];
    snprintf(crcs, sizeof crcs, "0x%08x", (unsigned)crc);
    sb_str(h, "{\"__metadata__\":{");
    for (size_t i = 0; i < r->n_meta; i++) {
        sb_json(h, r->meta[i].key);
        sb_str(h, ":");
        sb_json(h, r->meta[i].value);
        sb_str(h, ",");
    }
    sb_str(h, "\"crc32\":");
    sb_json(h, crcs);
    sb_str(h, ",\"" HEADER_CRC_KEY "\":\"0x");
    size_t hex = h->len; /* the header CRC's digits, patched in below */
    sb_str(h, "00000000\"}");
    size_t off = 0;
    for (size_t i = 0; i < r->ni; i++) {
        const item *it = &r->items[i];
        sb_str(h, ",");
        sb_json(h, it->name);
        sb_str(h, it->u32 ? ":{\"dtype\":\"U32\",\"shape\":[" : ":{\"dtype\":\"" AG_DTYPE "\",\"shape\":[");
        for (int d = 0; d < it->ndim; d++) {
            if (d) sb_str(h, ",");
            sb_size(h, it->shape[d]);
        }
        sb_str(h, "],\"data_offsets\":[");
        sb_size(h, off);
        sb_str(h, ",");
        off += it->n * item_elem(it);
        sb_size(h, off);
        sb_str(h, "]}");
    }
    sb_str(h, "}");
    while (!h->oom && h->len % 8) sb_str(h, " "); /* data starts 8-aligned: 8 + N is a multiple of 8 */
    if (h->oom) return ag__buf_fail(r->err, r->errsize, AG_ERR_NOMEM, "save", r->path, "out of memory for the header");
    if (h->len > AG_MODEL_MAX_HEADER)
        return ag__buf_fail(r->err, r->errsize, AG_ERR_ARG, "save", r->path, "header of %zu bytes exceeds %zu", h->len,
                     AG_MODEL_MAX_HEADER);
    unsigned char len8[8];
    len_le(h->len, len8);
    char digits[9];
    snprintf(digits, sizeof digits, "%08x", (unsigned)header_crc(len8, (const unsigned char *)h->p, h->len, hex));
    memcpy(h->p + hex, digits, 8);
    return AG_OK;
}

/* The file the save replaces: path itself, or what a symbolic link at path points to (the link
 * stays a link), into *resolved (NULL: path itself). Anything else that exists there (a directory,
 * FIFO, device) is refused: the rename would replace the node itself. */
static ag_status resolve_target(const save_req *r, char **resolved) {
    struct stat sb;
    *resolved = NULL;
    if (lstat(r->path, &sb) != 0 || S_ISREG(sb.st_mode)) return AG_OK;
    const char *why = NULL;
    if (!S_ISLNK(sb.st_mode)) {
        why = "it exists and is not a regular file";
    } else if (!(*resolved = ag__malloc(PATH_MAX))) {
        return ag__buf_fail(r->err, r->errsize, AG_ERR_NOMEM, "save", r->path, "out of memory");
    } else if (!realpath(r->path, *resolved)) {
        why = errno == ENOENT ? "it is a symbolic link to nothing" : "its symbolic link cannot be followed";
    } else if (stat(*resolved, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        why = "it is a symbolic link to something that is not a regular file";
    }
    if (!why) return AG_OK;
    ag__free(*resolved);
    *resolved = NULL;
    return ag__buf_fail(r->err, r->errsize, AG_ERR_IO, "save", r->path, "cannot replace it: %s", why);
}

/* The header and the data into fd; 0 or the errno of the failed write. */
static int write_contents(int fd, const save_req *r, const sbuf *h, unsigned char *chunk) {
    unsigned char len8[8];
    len_le(h->len, len8);
    if (write_all(fd, len8, 8) != AG_OK || write_all(fd, h->p, h->len) != AG_OK) return errno;
    for (size_t i = 0; i < r->ni; i++)
        for (size_t k = 0; k < r->items[i].n; k += CHUNK_ELEMS) {
            size_t m = r->items[i].n - k < CHUNK_ELEMS ? r->items[i].n - k : CHUNK_ELEMS;
            item_le(&r->items[i], k, m, chunk);
            if (write_all(fd, chunk, m * item_elem(&r->items[i])) != AG_OK) return errno;
        }
    return 0;
}

/* Atomic replacement of target: a temporary file next to it (".<base>.tmp-<pid>-<attempt>", the
 * base cut to TMP_BASE_MAX bytes at a character boundary so that the name stays short of NAME_MAX
 * whatever the target's), written, fsync'ed, renamed over it, and the directory fsync'ed. */
static ag_status write_atomic(const save_req *r, const char *target, const sbuf *h, unsigned char *chunk) {
    const char *W = "save", *path = r->path;
    const char *slash = strrchr(target, '/');
    size_t dlen = slash ? (size_t)(slash - target) : 0;
    const char *base = slash ? slash + 1 : target;
    size_t blen = strlen(base);
    if (blen > TMP_BASE_MAX) {
        blen = TMP_BASE_MAX;
        while (blen && ((unsigned char)base[blen] & 0xC0) == 0x80) blen--; /* base[blen] continues a character */
    }
    size_t tmpsize = dlen + blen + 64; /* dir, '/', '.', base, ".tmp-", a long, '-', the attempt, NUL */
    char *tmp = ag__malloc(tmpsize), *dir = ag__malloc(dlen + 2);
    ag_status st = AG_OK;
    if (!tmp || !dir) {
        st = ag__buf_fail(r->err, r->errsize, AG_ERR_NOMEM, W, path, "out of memory");
        goto out;
    }
    if (slash) {
        memcpy(dir, target, dlen ? dlen : 1); /* "/x" -> "/" */
        dir[dlen ? dlen : 1] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, tmpsize, "%.*s%s.%.*s.tmp-%ld-%d", (int)dlen, target, slash ? "/" : "", (int)blen, base,
                 (long)getpid(), attempt);
        do fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        while (fd < 0 && errno == EINTR);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        st = ag__buf_fail(r->err, r->errsize, AG_ERR_IO, W, path, "cannot create a temporary file in %s: %s", dir,
                   strerror(errno));
        goto out;
    }
    const char *step = "write";
    int e = write_contents(fd, r, h, chunk);
    if (!e && fsync(fd) != 0) e = errno, step = "fsync";
    if (close(fd) != 0 && !e) e = errno, step = "close";
    if (!e && rename(tmp, target) != 0) e = errno, step = "rename";
    if (e) {
        unlink(tmp);
        st = ag__buf_fail(r->err, r->errsize, AG_ERR_IO, W, path, "%s failed: %s", step, strerror(e));
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) { /* make the rename durable; some file systems refuse fsync on a directory */
        fsync(dfd);
        close(dfd);
    }
out:
    ag__free(tmp);
    ag__free(dir);
    return st;
}

ag_status ag_model_save_ex(const char *path, const ag_params *ps, const ag_named_buf *extra, size_t n_extra,
                             const ag_u32_buf *ints, size_t n_ints, const ag_kv *meta, size_t n_meta, char *err,
                             size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!path || !path[0])
        return ag__buf_fail(err, errsize, AG_ERR_ARG, "save", "", path ? "path is empty" : "path is NULL");
    if ((n_extra && !extra) || (n_meta && !meta) || (n_ints && !ints))
        return ag__buf_fail(err, errsize, AG_ERR_ARG, "save", path, "NULL array");
    save_req r = {path, NULL, 0, meta, n_meta, err, errsize};
    sbuf h = {0};
    char *resolved = NULL;
    unsigned char chunk[CHUNK_ELEMS * 8];
    ag_status st = save_collect(&r, ps, extra, n_extra, ints, n_ints);
    if (st == AG_OK) st = save_check_names(&r);
    if (st == AG_OK) st = save_check_meta(&r);
    if (st == AG_OK) st = build_header(&r, data_crc(r.items, r.ni, chunk), &h);
    if (st == AG_OK) st = resolve_target(&r, &resolved);
    if (st == AG_OK) st = write_atomic(&r, resolved ? resolved : path, &h, chunk);
    ag__free(resolved);
    ag__free(h.p);
    ag__free(r.items);
    return st;
}

ag_status ag_model_save(const char *path, const ag_params *ps, const ag_named_buf *extra, size_t n_extra,
                        const ag_kv *meta, size_t n_meta, char *err, size_t errsize) {
    return ag_model_save_ex(path, ps, extra, n_extra, NULL, 0, meta, n_meta, err, errsize);
}

/* ---------------------------------------------------------------- the model file in memory */

typedef struct meta_ent {
    char *key, *value;
} meta_ent;

struct ag_model_file {
    unsigned char *buf; /* the whole file */
    size_t len;
    const unsigned char *data; /* data section */
    size_t data_len;
    ag_model_tensor *t;
    size_t nt, capt;
    meta_ent *meta;
    size_t nm, capm;
    int has_meta;
    size_t hcrc_at; /* offset in buf of the header CRC's 8 hex digits; 0: the file has none */
    char *name; /* for messages */
};

void ag_model_close(ag_model_file *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nt; i++) {
        ag__free((void *)m->t[i].name);
        ag__free((void *)m->t[i].dtype);
    }
    for (size_t i = 0; i < m->nm; i++) {
        ag__free(m->meta[i].key);
        ag__free(m->meta[i].value);
    }
    ag__free(m->t);
    ag__free(m->meta);
    ag__free(m->buf);
    ag__free(m->name);
    ag__free(m);
}

/* JSON reader state */
typedef struct jr {
    const unsigned char *p, *s, *e; /* cursor, start, end of the header */
    char *err;
    size_t errsize;
    const char *name;
    ag_status st;
} jr;

/* "load: <name>: malformed JSON header at byte <k>: <message>"; the first failure sticks. */
static ag_status jfail(jr *j, const char *fmt, ...) AG__PRINTF(2, 3);
static ag_status jfail(jr *j, const char *fmt, ...) {
    if (j->st != AG_OK) return j->st;
    j->st = ag__buf_fail(j->err, j->errsize, AG_ERR_FORMAT, "load", j->name, "malformed JSON header at byte %zu: ",
                  (size_t)(j->p - j->s));
    if (j->err && j->errsize) {
        size_t k = strlen(j->err);
        va_list ap;
        va_start(ap, fmt);
        ag__verrf(j->err + k, j->errsize - k, j->st, fmt, ap);
        va_end(ap);
    }
    return j->st;
}
static ag_status jnomem(jr *j) {
    if (j->st != AG_OK) return j->st;
    j->st = ag__buf_fail(j->err, j->errsize, AG_ERR_NOMEM, "load", j->name, "out of memory reading the header");
    return j->st;
}

static void ws(jr *j) {
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}
static int expect(jr *j, char c) {
    ws(j);
    if (j->p >= j->e) return jfail(j, "expected '%c' but the header ended", c), 0;
    if (*j->p != c) return jfail(j, "expected '%c'", c), 0;
    j->p++;
    return 1;
}
static int peek(jr *j, char c) {
    ws(j);
    return j->p < j->e && *j->p == c;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
static int hex4(jr *j, const unsigned char *q, unsigned *out) {
    if (j->e - q < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(q[i]);
        if (h < 0) return 0;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 1;
}

/* A string into a new heap copy (decoded, NUL-terminated). max: decoded bytes. */
static char *jstring(jr *j, size_t max, const char *what) {
    ws(j);
    if (j->p >= j->e || *j->p != '"') return jfail(j, "expected a string (%s)", what), NULL;
    const unsigned char *q = j->p + 1;
    /* find the end, checking raw bytes */
    const unsigned char *r = q;
    while (r < j->e && *r != '"') {
        if (*r < 0x20) {
            j->p = r;
            return jfail(j, "control character in a string"), NULL;
        }
        if (*r == '\\') {
            if (j->e - r < 2) {
                r = j->e;
                break;
            }
            r++;
        }
        r++;
    }
    if (r >= j->e) return jfail(j, "unterminated string"), NULL;
    if (!utf8_ok(q, (size_t)(r - q))) {
        j->p = q;
        return jfail(j, "invalid UTF-8 in a string"), NULL;
    }
    size_t raw = (size_t)(r - q);
    if (raw > 6 * max + 6) { /* decoded length is at least raw/6 */
        j->p = q;
        return jfail(j, "%s is longer than %zu bytes", what, max), NULL;
    }
    char *out = ag__malloc(raw + 1);
    if (!out) return jnomem(j), NULL;
    size_t n = 0;
    while (q < r) {
        if (*q != '\\') {
            out[n++] = (char)*q++;
            continue;
        }
        q++;
        unsigned char c = *q++;
        switch (c) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!hex4(j, q, &cp)) goto bad_escape;
            q += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad_escape;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (r - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(j, q + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    goto bad_escape;
                q += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) {
                j->p = q;
                ag__free(out);
                return jfail(j, "\\u0000 in a string"), NULL;
            }
            /* encoded length <= escape length (6 or 12), so out has room */
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | cp >> 6);
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | cp >> 12);
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | cp >> 18);
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
        bad_escape:
            j->p = q;
            ag__free(out);
            return jfail(j, "invalid escape in a string"), NULL;
        }
    }
    out[n] = '\0';
    if (n > max) {
        ag__free(out);
        return jfail(j, "%s is longer than %zu bytes", what, max), NULL;
    }
    j->p = r + 1;
    return out;
}

/* A non-negative integer: digits only, no leading zero. */
static int juint(jr *j, size_t *out, const char *what) {
    ws(j);
    if (j->p >= j->e || *j->p < '0' || *j->p > '9')
        return jfail(j, "%s: expected a non-negative integer", what), 0;
    if (*j->p == '0' && j->p + 1 < j->e && j->p[1] >= '0' && j->p[1] <= '9')
        return jfail(j, "%s: leading zero in an integer", what), 0;
    size_t v = 0;
    while (j->p < j->e && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (v > (SIZE_MAX - d) / 10) return jfail(j, "%s: integer too large", what), 0;
        v = v * 10 + d;
        j->p++;
    }
    if (j->p < j->e && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jfail(j, "%s: expected an integer, found a fraction or exponent", what), 0;
    *out = v;
    return 1;
}

static size_t dtype_size(const char *d) {
    static const struct {
        const char *name;
        size_t size;
    } k[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},    {"I32", 4},    {"I16", 2},
             {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},     {"BOOL", 1},   {"F8_E4M3", 1},
             {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(d, k[i].name) == 0) return k[i].size;
    return 0;
}

static int parse_tensor(jr *j, ag_model_tensor *t) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (!expect(j, '{')) return 0;
    if (peek(j, '}')) return jfail(j, "tensor %s: empty object", t->name), 0;
    for (;;) {
        char *key = jstring(j, 64, "field name");
        if (!key) return 0;
        if (!expect(j, ':')) return ag__free(key), 0;
        int ok = 1;
        if (strcmp(key, "dtype") == 0 && !have_dtype) {
            have_dtype = 1;
            char *d = jstring(j, 16, "dtype");
            if (!d) ok = 0;
            else if (!dtype_size(d)) {
                jfail(j, "tensor %s: unknown dtype %s", t->name, d);
                ag__free(d);
                ok = 0;
            } else
                t->dtype = d;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            have_shape = 1;
            if (!expect(j, '[')) ok = 0;
            else if (peek(j, ']')) j->p++;
            else
                for (;;) {
                    if (t->ndim == 8) {
                        jfail(j, "tensor %s: more than 8 dimensions", t->name);
                        ok = 0;
                        break;
                    }
                    if (!juint(j, &t->shape[t->ndim], "shape")) {
                        ok = 0;
                        break;
                    }
                    t->ndim++;
                    if (peek(j, ']')) {
                        j->p++;
                        break;
                    }
                    if (!expect(j, ',')) {
                        ok = 0;
                        break;
                    }
                }
        } else if (strcmp(key, "data_offsets") == 0 && !have_off) {
            have_off = 1;
            ok = expect(j, '[') && juint(j, &t->begin, "data_offsets") && expect(j, ',') &&
                 juint(j, &t->end, "data_offsets") && expect(j, ']');
        } else {
            jfail(j, "tensor %s: %s field %s", t->name,
                  strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets") ? "unknown"
                                                                                                : "repeated",
                  key);
            ok = 0;
        }
        ag__free(key);
        if (!ok) return 0;
        if (peek(j, '}')) {
            j->p++;
            break;
        }
        if (!expect(j, ',')) return 0;
    }
    if (!have_dtype || !have_shape || !have_off)
        return jfail(j, "tensor %s: missing %s", t->name, !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets"),
               0;
    return 1;
}

/* The value of HEADER_CRC_KEY, as the writer puts it: "0x" and 8 hex digits, no escapes. Records
 * where the digits are (the CRC is checked once the whole header is read). */
static int header_crc_entry(jr *j, ag_model_file *m) {
    if (m->hcrc_at) return jfail(j, "metadata key " HEADER_CRC_KEY " repeated"), 0;
    const unsigned char *q = j->p;
    int ok = j->e - q >= 12 && q[0] == '"' && q[1] == '0' && q[2] == 'x' && q[11] == '"';
    for (int i = 3; ok && i < 11; i++) ok = hexval(q[i]) >= 0;
    if (!ok) return jfail(j, HEADER_CRC_KEY " in __metadata__ is not \"0x\" and 8 hex digits"), 0;
    m->hcrc_at = (size_t)(q + 3 - m->buf);
    j->p = q + 12;
    return 1;
}

/* Room for one more listed metadata entry (the header CRC's is not listed). */
static int meta_room(jr *j, ag_model_file *m) {
    if (m->nm == AG_MODEL_MAX_META) return jfail(j, "more than %d metadata entries", AG_MODEL_MAX_META), 0;
    if (m->nm == m->capm) {
        size_t cap = m->capm ? m->capm * 2 : 8;
        meta_ent *q = ag__realloc(m->meta, cap * sizeof *q);
        if (!q) return jnomem(j), 0;
        m->meta = q;
        m->capm = cap;
    }
    return 1;
}

/* One "key": "value" entry of __metadata__ after the key k (taken over: freed or kept). */
static int meta_entry(jr *j, ag_model_file *m, char *k) {
    if (!expect(j, ':')) return ag__free(k), 0;
    ws(j);
    if (strcmp(k, HEADER_CRC_KEY) == 0) { /* kept apart: a checksum of the listing itself */
        ag__free(k);
        return header_crc_entry(j, m);
    }
    if (j->p < j->e && *j->p != '"') {
        jfail(j, "__metadata__ value of %s is not a string", k);
        ag__free(k);
        return 0;
    }
    char *v = jstring(j, META_VALUE_MAX, "metadata value");
    if (!v) return ag__free(k), 0;
    for (size_t i = 0; i < m->nm; i++)
        if (strcmp(m->meta[i].key, k) == 0) {
            jfail(j, "metadata key %s repeated", k);
            ag__free(k);
            ag__free(v);
            return 0;
        }
    m->meta[m->nm].key = k;
    m->meta[m->nm].value = v;
    m->nm++;
    return 1;
}

static int parse_meta(jr *j, ag_model_file *m) {
    if (!expect(j, '{')) return 0;
    if (peek(j, '}')) {
        j->p++;
        return 1;
    }
    for (;;) {
        const unsigned char *at = j->p;
        char *k = jstring(j, AG_MODEL_MAX_NAME, "metadata key");
        if (!k) return 0;
        if (strcmp(k, HEADER_CRC_KEY) != 0) {
            const unsigned char *after = j->p;
            j->p = at; /* a message about the count points at the key, as before it was read */
            if (!meta_room(j, m)) return ag__free(k), 0;
            j->p = after;
        }
        if (!meta_entry(j, m, k)) return 0;
        if (peek(j, '}')) {
            j->p++;
            return 1;
        }
        if (!expect(j, ',')) return 0;
    }
}

static int parse_header(jr *j, ag_model_file *m) {
    if (!expect(j, '{')) return 0;
    if (peek(j, '}')) {
        j->p++;
    } else
        for (;;) {
            char *key = jstring(j, AG_MODEL_MAX_NAME, "tensor name");
            if (!key) return 0;
            if (!expect(j, ':')) return ag__free(key), 0;
            if (strcmp(key, "__metadata__") == 0) {
                ag__free(key);
                if (m->has_meta) return jfail(j, "__metadata__ repeated"), 0;
                m->has_meta = 1;
                if (!parse_meta(j, m)) return 0;
            } else {
                if (m->nt == AG_MODEL_MAX_TENSORS) {
                    ag__free(key);
                    return jfail(j, "more than %d tensors", AG_MODEL_MAX_TENSORS), 0;
                }
                if (key[0] == '\0') {
                    ag__free(key);
                    return jfail(j, "empty tensor name"), 0;
                }
                if (m->nt == m->capt) {
                    size_t cap = m->capt ? m->capt * 2 : 8;
                    ag_model_tensor *q = ag__realloc(m->t, cap * sizeof *q);
                    if (!q) return ag__free(key), jnomem(j), 0;
                    m->t = q;
                    m->capt = cap;
                }
                ag_model_tensor *t = &m->t[m->nt++];
                memset(t, 0, sizeof *t);
                t->name = key;
                if (!parse_tensor(j, t)) return 0;
            }
            if (peek(j, '}')) {
                j->p++;
                break;
            }
            if (!expect(j, ',')) return 0;
        }
    ws(j);
    if (j->p != j->e) return jfail(j, "data after the closing brace"), 0;
    return 1;
}

/* Orders for the tensor table. Ties are broken by the place in the file (the entries point into
 * m->t, in file order), so the order is total and the tensor a message names (the later of two
 * with the same name or the same offsets) does not depend on the sort. */
static int cmp_begin(const ag_model_tensor *x, const ag_model_tensor *y) {
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y;
}
static int cmp_name(const ag_model_tensor *x, const ag_model_tensor *y) {
    int c = strcmp(x->name, y->name);
    return c ? c : x < y ? -1 : x > y;
}

/* Heapsort of a[0..n): in place, O(n log n), and it allocates nothing (glibc's qsort mallocs a
 * merge buffer behind the allocator hooks' back). */
static void sift_down(ag_model_tensor **a, size_t i, size_t n,
                      int (*cmp)(const ag_model_tensor *, const ag_model_tensor *)) {
    ag_model_tensor *v = a[i];
    for (;;) {
        size_t c = 2 * i + 1; /* i < n <= AG_MODEL_MAX_TENSORS: no overflow */
        if (c >= n) break;
        if (c + 1 < n && cmp(a[c + 1], a[c]) > 0) c++;
        if (cmp(a[c], v) <= 0) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = v;
}
static void sort_tensors(ag_model_tensor **a, size_t n,
                         int (*cmp)(const ag_model_tensor *, const ag_model_tensor *)) {
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) sift_down(a, i, n, cmp);
    for (size_t k = n - 1; k > 0; k--) {
        ag_model_tensor *t = a[0];
        a[0] = a[k];
        a[k] = t;
        sift_down(a, 0, k, cmp);
    }
}

/* A new ag_model_file owning buf (freed here when that fails), with a copy of name for messages. */
static ag_model_file *model_file_new(unsigned char *buf, size_t len, const char *name) {
    ag_model_file *m = ag__calloc(1, sizeof *m);
    char *nm = NULL;
    if (m && name) {
        nm = ag__malloc(strlen(name) + 1);
        if (nm) strcpy(nm, name);
    }
    if (!m || (name && !nm)) {
        ag__free(m);
        ag__free(nm);
        ag__free(buf);
        return NULL;
    }
    m->buf = buf;
    m->len = len;
    m->name = nm;
    return m;
}

/* The 8-byte length and the JSON header it announces; sets m->data and m->data_len. */
static ag_status read_header(ag_model_file *m, char *err, size_t errsize) {
    const char *W = "load", *name = m->name;
    const unsigned char *buf = m->buf;
    size_t len = m->len;
    if (len < 8)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, W, name, "truncated: %zu bytes, less than the 8-byte header length",
                     len);
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--) n = n << 8 | buf[b];
    if (n > AG_MODEL_MAX_HEADER)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, W, name,
                     "header length %llu exceeds %zu bytes: not a safetensors file or corrupt", (unsigned long long)n,
                     AG_MODEL_MAX_HEADER);
    if (n > len - 8)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, W, name, "truncated: header length is %llu but only %zu bytes follow",
                     (unsigned long long)n, len - 8);
    if (n < 2 || buf[8] != '{')
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, W, name, "not a safetensors file (the header is not a JSON object)");
    jr j = {buf + 8, buf + 8, buf + 8 + n, err, errsize, name, AG_OK};
    if (!parse_header(&j, m)) return j.st;
    m->data = buf + 8 + n;
    m->data_len = len - 8 - (size_t)n;
    return AG_OK;
}

/* The header's CRC (files that carry one): any byte of the metadata or the tensor table changed
 * since the save is refused, as a changed byte of the data is by "crc32". */
static ag_status check_header_crc(const ag_model_file *m, char *err, size_t errsize) {
    if (!m->hcrc_at) return AG_OK; /* a file from before header CRCs, or from another writer */
    uint32_t want = 0;
    for (size_t i = 0; i < 8; i++) want = want << 4 | (uint32_t)hexval(m->buf[m->hcrc_at + i]);
    size_t n = (size_t)(m->data - m->buf) - 8;
    uint32_t got = header_crc(m->buf, m->buf + 8, n, m->hcrc_at - 8);
    if (got == want) return AG_OK;
    return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name,
                 "corrupt: CRC32 of the header (metadata and tensor table) is 0x%08x but " HEADER_CRC_KEY
                 " says 0x%08x",
                 (unsigned)got, (unsigned)want);
}

/* Each tensor's size agrees with its dtype and shape and lies inside the data section; ord gets
 * the tensors (in file order). */
static ag_status check_tensor_sizes(ag_model_file *m, ag_model_tensor **ord, char *err, size_t errsize) {
    for (size_t i = 0; i < m->nt; i++) {
        ag_model_tensor *t = &m->t[i];
        size_t numel = 1, bytes;
        int ok = 1;
        for (int d = 0; d < t->ndim && ok; d++) ok = ag__mul_ok(numel, t->shape[d], &numel);
        if (!ok || !ag__mul_ok(numel, dtype_size(t->dtype), &bytes))
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name, "tensor %s: shape overflows", t->name);
        t->numel = numel;
        if (t->end < t->begin || t->end - t->begin != bytes) {
            char s[SHAPE_STR_SIZE];
            shape_str(t->ndim, t->shape, s, sizeof s);
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name,
                         "tensor %s: data_offsets [%zu, %zu] do not hold %s %s (%zu bytes)", t->name, t->begin, t->end,
                         s, t->dtype, bytes);
        }
        if (t->end > m->data_len)
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name,
                         "truncated: tensor %s ends at byte %zu of the data but the file has %zu bytes of data",
                         t->name, t->end, m->data_len);
        ord[i] = t;
    }
    return AG_OK;
}

/* No name twice, and the tensors, ordered by offset, tile the data section exactly. */
static ag_status check_tensor_tiling(const ag_model_file *m, ag_model_tensor **ord, char *err, size_t errsize) {
    if (m->nt) {
        sort_tensors(ord, m->nt, cmp_name);
        for (size_t i = 1; i < m->nt; i++)
            if (strcmp(ord[i - 1]->name, ord[i]->name) == 0)
                return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name, "tensor %s appears twice", ord[i]->name);
        sort_tensors(ord, m->nt, cmp_begin);
    }
    size_t pos = 0;
    for (size_t i = 0; i < m->nt; i++) {
        if (ord[i]->begin != pos)
            return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name, "tensor %s: data_offsets begin at %zu, %s %zu",
                         ord[i]->name, ord[i]->begin,
                         ord[i]->begin < pos ? "overlapping data before" : "leaving a gap after", pos);
        pos = ord[i]->end;
    }
    if (pos != m->data_len)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name, "%zu bytes of data after the last tensor",
                     m->data_len - pos);
    return AG_OK;
}

/* Every tensor: sizes agree, offsets in range, together they tile the data section. */
static ag_status check_tensor_table(ag_model_file *m, char *err, size_t errsize) {
    ag_model_tensor **ord = NULL;
    if (m->nt) {
        ord = ag__malloc(m->nt * sizeof *ord);
        if (!ord) return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "load", m->name, "out of memory");
    }
    ag_status st = check_tensor_sizes(m, ord, err, errsize);
    if (st == AG_OK) st = check_tensor_tiling(m, ord, err, errsize);
    ag__free(ord);
    return st;
}

/* "crc32" in __metadata__, when present: the CRC-32 of the data section. */
static ag_status check_data_crc(const ag_model_file *m, char *err, size_t errsize) {
    const char *c = ag_model_meta(m, "crc32");
    if (!c) return AG_OK;
    uint32_t want = 0;
    int ok = strlen(c) == 10 && c[0] == '0' && (c[1] == 'x' || c[1] == 'X');
    for (int i = 2; ok && i < 10; i++) {
        int h = hexval((unsigned char)c[i]);
        if (h < 0) ok = 0;
        else want = want << 4 | (uint32_t)h;
    }
    if (!ok)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name, "crc32 \"%.16s\" in __metadata__ is not 0x + 8 hex digits",
                     c);
    uint32_t got = ag_crc32(0, m->data, m->data_len);
    if (got != want)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name,
                     "corrupt: CRC32 of the data is 0x%08x but the header says 0x%08x", (unsigned)got, (unsigned)want);
    return AG_OK;
}

/* Takes ownership of buf (freed on failure too). */
static ag_status parse_owned(unsigned char *buf, size_t len, const char *name, ag_model_file **out, char *err,
                             size_t errsize) {
    ag_model_file *m = model_file_new(buf, len, name);
    if (!m) return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "load", name, "out of memory");
    /* the header's CRC last: a damaged table or data CRC text keeps its own, more telling message */
    ag_status st = read_header(m, err, errsize);
    if (st == AG_OK) st = check_tensor_table(m, err, errsize);
    if (st == AG_OK) st = check_data_crc(m, err, errsize);
    if (st == AG_OK) st = check_header_crc(m, err, errsize);
    if (st != AG_OK) {
        ag_model_close(m);
        return st;
    }
    *out = m;
    return AG_OK;
}

ag_status ag_model_parse(const void *buf, size_t len, const char *name, ag_model_file **out, char *err,
                         size_t errsize) {
    if (out) *out = NULL;
    if (err && errsize) err[0] = '\0';
    if (!out || (!buf && len)) return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", name, "NULL argument");
    unsigned char *copy = ag__malloc(len ? len : 1);
    if (!copy) return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "load", name, "out of memory for %zu bytes", len);
    if (len) memcpy(copy, buf, len);
    return parse_owned(copy, len, name, out, err, errsize);
}

ag_status ag_model_open(const char *path, ag_model_file **out, char *err, size_t errsize) {
    if (out) *out = NULL;
    if (err && errsize) err[0] = '\0';
    if (!path || !out)
        return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", path ? path : "", path ? "out is NULL" : "path is NULL");
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT) return ag__buf_fail(err, errsize, AG_ERR_IO, "load", path, "no such file");
        return ag__buf_fail(err, errsize, AG_ERR_IO, "load", path, "cannot open: %s", strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ag__buf_fail(err, errsize, AG_ERR_IO, "load", path, "not a regular file");
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX / 2) {
        close(fd);
        return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "load", path, "file too large");
    }
    size_t len = (size_t)sb.st_size;
    unsigned char *buf = ag__malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return ag__buf_fail(err, errsize, AG_ERR_NOMEM, "load", path, "out of memory for %zu bytes", len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            ag__free(buf);
            return ag__buf_fail(err, errsize, AG_ERR_IO, "load", path, "read error: %s", strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    return parse_owned(buf, got, path, out, err, errsize);
}

const char *ag_model_meta(const ag_model_file *m, const char *key) {
    if (!m || !key) return NULL;
    for (size_t i = 0; i < m->nm; i++)
        if (strcmp(m->meta[i].key, key) == 0) return m->meta[i].value;
    return NULL;
}
size_t ag_model_meta_count(const ag_model_file *m) { return m ? m->nm : 0; }
ag_status ag_model_meta_at(const ag_model_file *m, size_t i, const char **key, const char **value) {
    if (!m || i >= m->nm) return AG_ERR_ARG;
    if (key) *key = m->meta[i].key;
    if (value) *value = m->meta[i].value;
    return AG_OK;
}
size_t ag_model_tensor_count(const ag_model_file *m) { return m ? m->nt : 0; }
const ag_model_tensor *ag_model_tensor_at(const ag_model_file *m, size_t i) {
    return m && i < m->nt ? &m->t[i] : NULL;
}
const ag_model_tensor *ag_model_find(const ag_model_file *m, const char *name) {
    if (!m || !name) return NULL;
    for (size_t i = 0; i < m->nt; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

/* Does file tensor t fit (ndim, shape)? Message on failure. */
static ag_status check_fit(const ag_model_file *m, const char *tname, int ndim, const size_t *shape,
                           const ag_model_tensor **out, char *err, size_t errsize) {
    const ag_model_tensor *t = ag_model_find(m, tname);
    if (!t)
        return ag__buf_fail(err, errsize, AG_ERR_SHAPE, "load", m->name, "tensor %s of the model is missing from the file",
                     tname);
    if (strcmp(t->dtype, AG_DTYPE) != 0)
        return ag__buf_fail(err, errsize, AG_ERR_FORMAT, "load", m->name,
                     "%s is %s in the file but this build stores %s (" AG_REAL_NAME ")", tname, t->dtype, AG_DTYPE);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char a[SHAPE_STR_SIZE], b[SHAPE_STR_SIZE];
        shape_str(t->ndim, t->shape, a, sizeof a);
        shape_str(ndim, shape, b, sizeof b);
        return ag__buf_fail(err, errsize, AG_ERR_SHAPE, "load", m->name, "%s is %s in the file but %s in the model", tname,
                     a, b);
    }
    *out = t;
    return AG_OK;
}

const unsigned char *ag_model_data(const ag_model_file *m) { return m ? m->data : NULL; }
const char *ag_model_name(const ag_model_file *m) { return m && m->name ? m->name : "<memory>"; }

ag_status ag_model_read(const ag_model_file *m, ag_params *ps, ag_named_buf *extra, size_t n_extra, char *err,
                        size_t errsize) {
    return ag_model_read_ex(m, ps, extra, n_extra, NULL, 0, err, errsize);
}

ag_status ag_model_read_ex(const ag_model_file *m, ag_params *ps, ag_named_buf *extra, size_t n_extra,
                         const char *const *own, size_t n_own, char *err, size_t errsize) {
    if (err && errsize) err[0] = '\0';
    if (!m || (n_extra && !extra)) return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", m ? m->name : NULL, "NULL argument");
    /* a file holds at most AG_MODEL_MAX_TENSORS tensors: refuse a larger count before reading extra */
    if (n_extra > AG_MODEL_MAX_TENSORS)
        return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", m->name, "%zu extra buffers, at most %d tensors", n_extra,
                     AG_MODEL_MAX_TENSORS);
    size_t np = ag_params_count(ps);
    const ag_model_tensor *t;
    /* check everything first: nothing changes unless the whole file fits */
    for (size_t i = 0; i < np; i++) {
        const ag_tensor *x = ag_params_at(ps, i);
        ag_status st = check_fit(m, x->name, x->ndim, x->shape, &t, err, errsize);
        if (st != AG_OK) return st;
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (!extra[i].name || (!extra[i].data && extra[i].n))
            return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", m->name, "extra buffer %zu has no name or data", i);
        if (ag_params_find(ps, extra[i].name))
            return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", m->name, "extra buffer %s has a parameter's name",
                         extra[i].name);
        for (size_t k = 0; k < i; k++)
            if (strcmp(extra[k].name, extra[i].name) == 0)
                return ag__buf_fail(err, errsize, AG_ERR_ARG, "load", m->name, "extra buffer %s given twice", extra[i].name);
        ag_status st = check_fit(m, extra[i].name, 1, &extra[i].n, &t, err, errsize);
        if (st != AG_OK) return st;
    }
    if (m->nt != np + n_extra) { /* every wanted tensor was found, so the file has more */
        for (size_t i = 0; i < m->nt; i++) {
            int known = ag_params_find(ps, m->t[i].name) != NULL;
            for (size_t k = 0; k < n_extra && !known; k++) known = strcmp(extra[k].name, m->t[i].name) == 0;
            for (size_t k = 0; k < n_own && !known; k++) known = strcmp(own[k], m->t[i].name) == 0;
            if (!known)
                return ag__buf_fail(err, errsize, AG_ERR_SHAPE, "load", m->name, "tensor %s in the file is not in the model",
                             m->t[i].name);
        }
    }
    for (size_t i = 0; i < np; i++) {
        ag_tensor *x = ag_params_at(ps, i);
        t = ag_model_find(m, x->name);
        from_le(m->data + t->begin, x->size, x->value);
    }
    for (size_t i = 0; i < n_extra; i++) {
        t = ag_model_find(m, extra[i].name);
        from_le(m->data + t->begin, extra[i].n, extra[i].data);
    }
    return AG_OK;
}

ag_status ag_model_load(const char *path, ag_params *ps, ag_named_buf *extra, size_t n_extra, char *err,
                        size_t errsize) {
    ag_model_file *m;
    ag_status st = ag_model_open(path, &m, err, errsize);
    if (st != AG_OK) return st;
    st = ag_model_read(m, ps, extra, n_extra, err, errsize);
    ag_model_close(m);
    return st;
}

/*
 * ag_io.h - tapegrad's files: IDX data sets (MNIST, Fashion-MNIST) and model files in the
 * safetensors layout.
 *
 * OVERVIEW
 *
 * A data set is read into memory once (pixels stay uint8) and converted to ag_real one mini-batch
 * at a time. A model file holds the parameters of an ag_params store by name, extra named buffers
 * (optimizer state) and string metadata; it is written atomically and checked completely before
 * anything is loaded from it. What a call allocates, the matching ag_idx_free, ag_dataset_free
 * or ag_model_close releases (all accept NULL).
 *
 * ERRORS. Every fallible call returns an ag_status and, when err is not NULL, writes a message of
 * at most errsize bytes that names the file and what is wrong:
 *     idx: /d/train-images-idx3-ubyte.gz: truncated: header says 60000 images of 28x28 but file has 1234 bytes of pixels
 *     load: W1 is 256x784 in the file but 512x784 in the model
 * AG_ERR_IO: missing, unreadable or unwritable file. AG_ERR_FORMAT: truncated, corrupt or foreign
 * content. AG_ERR_SHAPE: the file is sound but does not fit the model. AG_ERR_NOMEM, AG_ERR_ARG as
 * usual. Nothing here trusts a size read from a file: every header is checked against the bytes
 * actually present and against a memory cap before anything is allocated from it. All heap
 * memory goes through the library's allocator hooks (ag_set_allocator). On success err holds "".
 *
 * WORKED EXAMPLE: epochs over an IDX data set, then the model saved and loaded back.
 *
 *     ag_dataset train;
 *     char err[AG_IO_ERRMSG_SIZE];
 *     ag_idx_options o = {.classes = 10, .rows = 28, .cols = 28};
 *     if (ag_dataset_load(&train, "/d/train-images-idx3-ubyte.gz", "/d/train-labels-idx1-ubyte.gz",
 *                         &o, err, sizeof err) != AG_OK) { fprintf(stderr, "%s\n", err); ... }
 *     uint32_t *order = ...n entries...;
 *     for (epoch...) {
 *         ag_dataset_shuffle(order, train.n, seed, epoch);  // depends only on (seed, epoch)
 *         for (b...) ag_dataset_batch(&train, order + b * K, K, x, labels, NULL);
 *     }
 *     ag_dataset_free(&train);
 *     ag_kv meta[] = {{"arch", "784-256-10"}};
 *     if (ag_model_save("model.safetensors", ps, NULL, 0, meta, 1, err, sizeof err) != AG_OK) ...
 *     // later, into a store holding the same names and shapes (e.g. rebuilt from "arch"):
 *     if (ag_model_load("model.safetensors", ps, NULL, 0, err, sizeof err) != AG_OK) ...
 *
 * IDX DATA SETS
 *
 * Files are raw IDX or gzip-compressed IDX (recognised by the bytes 1f 8b, whatever the name),
 * in files and in memory alike. gzip data is decoded in process (no external program), streamed
 * from the file, its CRC-32 and length checked, and the IDX header inside it is checked before
 * the data's buffer is allocated. Pixels stay uint8 in memory;
 * ag_dataset_batch converts the rows of one mini-batch to ag_real in [0, 1], or standardised
 * ((x - mean) / std, ag_dataset_standardize) with the statistics of the training set
 * (ag_dataset_pixel_stats).
 *
 * MODEL FILES (safetensors layout, readable by the `safetensors` Python package)
 *
 *     8-byte little-endian header length N, N bytes of JSON
 *       {"__metadata__": {"arch": "784-256-10", ..., "crc32": "0x1234abcd", "header_crc32": "0x89abcdef"},
 *        "W1": {"dtype": "F32", "shape": [256, 784], "data_offsets": [0, 802816]}, ...}
 *     padded with spaces to a multiple of 8, then the raw little-endian data.
 *
 * Parameters are stored under their names with the build's dtype (F32, or F64 with AG_DOUBLE);
 * extra named buffers (optimizer state) are 1-D tensors. "crc32" in __metadata__ is the CRC-32
 * (IEEE) of the data section. "header_crc32" (written since the checkpoint library,
 * <tapegrad/checkpoint.h>) is the CRC-32 of the header itself: the 8 length bytes and the N bytes
 * of JSON, padding included, with its own 8 hex digits read as "00000000"; so a changed byte in the
 * metadata (a learning rate, an epoch count) or in the tensor table is refused as AG_ERR_FORMAT
 * "corrupt: CRC32 of the header ...", as a changed data byte is. It is checked, not listed among
 * the metadata (ag_model_meta_count); files without it (older ones, other writers) load as before,
 * with the data CRC alone. Saving is atomic: a temporary file in the same directory
 * (".<name>.tmp-<pid>-<n>", <name> being the target's file name cut to 64 bytes, so that any legal
 * target name works) is written, flushed, fsync'ed and renamed over the target, and the directory
 * is fsync'ed, so a crash leaves either the old file or the new one (and maybe that temporary
 * file). Loading checks the file completely (length, JSON, offsets, every name, dtype and shape,
 * and the CRCs when "crc32" and "header_crc32" are present: files from other writers lack them) before it changes
 * anything: on failure the store and the extra buffers are unchanged.
 */
#ifndef AG_IO_H
#define AG_IO_H

#include <stddef.h>
#include <stdint.h>

#include <tapegrad/ag.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A buffer of this size holds every message whole when the paths in it (or the name given to a
 * *_parse call) are at most 512 bytes: tensor names and metadata keys are quoted in full, up to
 * their AG_MODEL_MAX_NAME bytes. Only a longer path, or a caller's name over that limit, can cut a
 * message (at errsize - 1 bytes: a smaller buffer too is never overrun). */
#define AG_IO_ERRMSG_SIZE 2048

/* ---------------------------------------------------------------- IDX files */

#define AG_IDX_LABELS 0x00000801u /* magic: unsigned bytes, 1 dimension (count) */
#define AG_IDX_IMAGES 0x00000803u /* magic: unsigned bytes, 3 dimensions (count, rows, cols) */
#define AG_IDX_MAX_BYTES ((size_t)1 << 30) /* default cap on the data of one file (1 GiB) */
#define AG_IDX_MAX_SIDE 4096               /* largest image side accepted */

/* One parsed IDX file. */
typedef struct ag_idx {
    uint32_t magic;   /* AG_IDX_LABELS or AG_IDX_IMAGES */
    size_t count;     /* items */
    size_t rows, cols;/* image size; 1 x 1 for labels */
    uint8_t *data;    /* count * rows * cols bytes (owned: ag_idx_free) */
} ag_idx;

typedef struct ag_idx_options {
    int classes;      /* labels must be in [0, classes); 0 accepts 0..255 */
    size_t rows, cols;/* required image size; 0 accepts any (each side 1..AG_IDX_MAX_SIDE) */
    size_t limit;     /* ag_dataset_*: keep the first limit examples; 0 keeps all */
    size_t max_bytes; /* cap on the data bytes of one file; 0 = AG_IDX_MAX_BYTES */
} ag_idx_options;

/* Parse one IDX file held in memory, raw or gzipped. name is used in messages (may be NULL).
 * The buffer (after decompression) must hold exactly the header and the data the header
 * announces. opts may be NULL (any size, no label check). out->data is then the caller's
 * (ag_idx_free). On failure *out is zeroed: AG_ERR_ARG (NULL out, NULL buf with len > 0),
 * AG_ERR_FORMAT (truncated, bad magic or sizes, over max_bytes, trailing bytes, a label out of
 * range; for gzip data also corrupt or truncated compressed data, a CRC-32 or length mismatch, and
 * bytes after the gzip stream other than zero padding), AG_ERR_NOMEM. */
ag_status ag_idx_parse(const void *buf, size_t len, const char *name, const ag_idx_options *opts,
                       ag_idx *out, char *err, size_t errsize);
/* Read and parse one IDX file, raw or gzipped, as ag_idx_parse; adds AG_ERR_IO (missing,
 * unreadable, a directory). The file is read once, front to back, in pieces (raw data straight into
 * its buffer), so pipes and FIFOs work too. */
ag_status ag_idx_read(const char *path, const ag_idx_options *opts, ag_idx *out, char *err,
                      size_t errsize);
void ag_idx_free(ag_idx *f); /* frees f->data and zeroes *f */

/* ---------------------------------------------------------------- data sets */

/* Images with their labels. */
typedef struct ag_dataset {
    size_t n;           /* examples */
    size_t rows, cols;  /* image size; features = rows * cols */
    int classes;        /* from the options; when 0 was given, 1 + the largest of the n labels kept
                         * (with a limit, of the first limit: a class seen only later is left out) */
    uint8_t *images;    /* n * rows * cols bytes, row-major, one image after another */
    uint8_t *labels;    /* n bytes */
    /* pixel values of ag_dataset_batch: byte / 255 while std is 0 (as loaded, and in a zeroed struct),
     * else (byte / 255 - mean) / std; set them with ag_dataset_standardize */
    double mean, std;
} ag_dataset;

/* Load an image file and its label file (each read as ag_idx_read); the arrays are the caller's
 * (ag_dataset_free). AG_ERR_FORMAT also when the counts differ or the files are swapped;
 * AG_ERR_ARG for a NULL argument. On failure *ds is zeroed. */
ag_status ag_dataset_load(ag_dataset *ds, const char *images_path, const char *labels_path,
                          const ag_idx_options *opts, char *err, size_t errsize);
/* The same from two in-memory raw IDX files (for fuzzers and tests). */
ag_status ag_dataset_parse(ag_dataset *ds, const void *images, size_t images_len, const void *labels,
                           size_t labels_len, const ag_idx_options *opts, char *err, size_t errsize);
void ag_dataset_free(ag_dataset *ds); /* frees the arrays and zeroes *ds */

/* The mean and the standard deviation (population: divided by the count) of all pixels of ds, as
 * byte / 255. Exact up to the final rounding to double (from the byte histogram). The scaling of
 * ds (mean, std) plays no part. AG_ERR_ARG for a NULL argument or a set without pixels. */
ag_status ag_dataset_pixel_stats(const ag_dataset *ds, double *mean, double *std);

/* From now on ag_dataset_batch gives (byte / 255 - mean) / std, input standardisation: with a
 * training set's own statistics (ag_dataset_pixel_stats) every feature of the first layer starts
 * centred with unit spread, which lets SGD converge in fewer epochs. Give the test set, and a saved
 * model's user, the training set's mean and std. std 0 (with mean 0) returns to byte / 255.
 * AG_ERR_ARG, ds unchanged, for a NULL ds, a mean that is not finite, or a std that is negative,
 * not finite, or 0 with a mean other than 0. */
ag_status ag_dataset_standardize(ag_dataset *ds, double mean, double std);

/* Rows idx[0..n) as ag_real (byte / 255, or standardised: ag_dataset_standardize) into x
 * (n * rows * cols), their labels into labels
 * (n entries, may be NULL) and one-hot targets into onehot (n * classes, may be NULL).
 * AG_ERR_ARG if an index is out of range or ds, idx or x is NULL, even when n is 0 (nothing is
 * written then).
 * Allocates nothing. */
ag_status ag_dataset_batch(const ag_dataset *ds, const uint32_t *idx, size_t n, ag_real *x,
                           int32_t *labels, ag_real *onehot);

/* order = a permutation of 0..n-1 that depends only on (seed, epoch): the same on every machine,
 * so an interrupted run resumed at an epoch sees the same batches. A NULL order does nothing. */
void ag_dataset_shuffle(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch);

/* ---------------------------------------------------------------- model files */

/* A caller's named buffer saved next to the parameters (1-D tensor of n elements). */
typedef struct ag_named_buf {
    const char *name;
    ag_real *data;
    size_t n;
} ag_named_buf;

/* A metadata entry (all values are strings in safetensors). */
typedef struct ag_kv {
    const char *key;
    const char *value;
} ag_kv;

#define AG_MODEL_MAX_HEADER ((size_t)100 << 20) /* JSON header cap, as the safetensors library */
#define AG_MODEL_MAX_TENSORS 65536
#define AG_MODEL_MAX_META 1024
#define AG_MODEL_MAX_NAME 1024 /* bytes of a tensor name, key or value (metadata values: 64 KiB) */

/* CRC-32 (IEEE 802.3, as zlib's crc32): pass 0 first, then the previous result to continue.
 * Never fails. */
uint32_t ag_crc32(uint32_t crc, const void *data, size_t n);

/* Save every parameter of ps (NULL: none), then the extra buffers, with the metadata entries.
 * Tensor names and keys are non-empty UTF-8 of at most AG_MODEL_MAX_NAME bytes and do not repeat;
 * no tensor is named "__metadata__" and no key is "crc32" or "header_crc32" (reserved: both are
 * added); values are
 * UTF-8 of at most 64 KiB, not NULL. Atomic (see above): on failure the target is untouched.
 * path names a new file, a regular file (replaced) or a symbolic link to one (the file it points to
 * is replaced, the link stays); anything else there (a directory, FIFO, device, a link to nothing)
 * is AG_ERR_IO "cannot replace it: ...", with nothing written.
 * AG_ERR_ARG (empty path, NULL arrays, invalid or repeated names, keys or values, more than
 * AG_MODEL_MAX_TENSORS tensors or AG_MODEL_MAX_META - 1 entries, a header over
 * AG_MODEL_MAX_HEADER), AG_ERR_IO (creating, writing, syncing or renaming), AG_ERR_NOMEM. */
ag_status ag_model_save(const char *path, const ag_params *ps, const ag_named_buf *extra,
                        size_t n_extra, const ag_kv *meta, size_t n_meta, char *err, size_t errsize);

/* Load into an existing store and extra buffers: the file must hold exactly these tensors,
 * with the same names, the build's dtype and the same shapes. Unchanged on failure: the errors of
 * ag_model_open, then AG_ERR_SHAPE (a tensor missing, extra or of another shape), AG_ERR_FORMAT
 * (another dtype), AG_ERR_ARG (an extra buffer without name or data, given twice or named like a
 * parameter, more than AG_MODEL_MAX_TENSORS extra buffers). */
ag_status ag_model_load(const char *path, ag_params *ps, ag_named_buf *extra, size_t n_extra,
                        char *err, size_t errsize);

/* A checked model file in memory: its tensors and metadata can be listed (e.g. to rebuild the
 * architecture from "arch") before loading into a store. */
typedef struct ag_model_file ag_model_file;

typedef struct ag_model_tensor {
    const char *name;
    const char *dtype;           /* "F32", "F64", "BF16", "I64", ... */
    int ndim;                    /* 0..AG_MAX_DIMS for tensors tapegrad can load; up to 8 listed */
    size_t shape[8];
    size_t numel;
    size_t begin, end;           /* byte offsets in the data section */
} ag_model_tensor;

/* Read and check a whole model file; release it with ag_model_close. *out is NULL on failure:
 * AG_ERR_ARG (NULL path or out), AG_ERR_IO (missing, unreadable, not a regular file),
 * AG_ERR_FORMAT (truncated, corrupt, not safetensors, CRC mismatch), AG_ERR_NOMEM. */
ag_status ag_model_open(const char *path, ag_model_file **out, char *err, size_t errsize);
/* The same from a file image in memory (copied). name is used in messages (may be NULL). */
ag_status ag_model_parse(const void *buf, size_t len, const char *name, ag_model_file **out,
                         char *err, size_t errsize);
void ag_model_close(ag_model_file *m); /* frees m and everything it lent */

/* The metadata (crc32 included) and the tensors, in file order. Strings and records are borrowed
 * from m until ag_model_close. An index out of range gives NULL (ag_model_meta_at: AG_ERR_ARG). */
const char *ag_model_meta(const ag_model_file *m, const char *key); /* NULL when absent */
size_t ag_model_meta_count(const ag_model_file *m);
ag_status ag_model_meta_at(const ag_model_file *m, size_t i, const char **key, const char **value);
size_t ag_model_tensor_count(const ag_model_file *m);
const ag_model_tensor *ag_model_tensor_at(const ag_model_file *m, size_t i);
const ag_model_tensor *ag_model_find(const ag_model_file *m, const char *name); /* NULL when absent */
/* Copy the file's tensors into ps and extra, with the checks of ag_model_load. */
ag_status ag_model_read(const ag_model_file *m, ag_params *ps, ag_named_buf *extra, size_t n_extra,
                        char *err, size_t errsize);

/* ---- for files that hold more than a model (optim/checkpoint.c is the library's own user) */

/* A caller's uint32 buffer saved as a 1-D U32 tensor (a data order, say). */
typedef struct ag_u32_buf {
    const char *name;
    const uint32_t *data;
    size_t n;
} ag_u32_buf;

/* ag_model_save with n_ints U32 tensors after the extra buffers; the same checks and messages
 * (ints may be NULL when n_ints is 0). */
ag_status ag_model_save_ex(const char *path, const ag_params *ps, const ag_named_buf *extra, size_t n_extra,
                           const ag_u32_buf *ints, size_t n_ints, const ag_kv *meta, size_t n_meta, char *err,
                           size_t errsize);
/* ag_model_read that leaves the n_skip tensors named in skip to the caller instead of refusing
 * them as "extra in the file" (read them with ag_model_data). */
ag_status ag_model_read_ex(const ag_model_file *m, ag_params *ps, ag_named_buf *extra, size_t n_extra,
                           const char *const *skip, size_t n_skip, char *err, size_t errsize);
/* The file's data section (checked by its CRC): tensor t's little-endian bytes are
 * data[t->begin .. t->end). NULL for a NULL m. */
const unsigned char *ag_model_data(const ag_model_file *m);
/* The name the messages about m use: its path, or "<memory>" for a buffer without one. */
const char *ag_model_name(const ag_model_file *m);

#ifdef __cplusplus
}
#endif
#endif /* AG_IO_H */

/*
 * io.h - internal interface of the file formats (io/): the gzip decoder and the UTF-8 check. Not
 * installed. Public entry points (IDX data sets, model files, CRC-32) are in <tapegrad/ag_io.h>.
 */
#ifndef AG_IO_INTERNAL_H
#define AG_IO_INTERNAL_H

#include <tapegrad/ag_io.h>

#include "../base.h"

/* Offset of the first byte of s[0..n) that is not part of strict UTF-8 (no overlongs, no
 * surrogates, <= U+10FFFF), n if none: parameter names and the model files' strings (params.c). */
size_t ag__utf8_bad_at(const unsigned char *s, size_t n);

/* ---- gunzip.c: gzip files (RFC 1952) of DEFLATE data (RFC 1951), decoded in process ----
 * Streaming both ways: input is pulled through `read`, output goes to one contiguous buffer that
 * the caller grows in `more` (and may refuse to grow: a header check before the big allocation). */

/* Up to cap bytes of input into buf: the count, 0 at the end of the input, -1 on a read error. */
typedef ptrdiff_t (*ag__gz_read_fn)(void *ctx, unsigned char *buf, size_t cap);
/* Called when all *cap bytes of *buf hold output (first with *buf NULL and *cap 0): enlarge it,
 * keeping its bytes (*buf may move), and return 0; or return nonzero to stop decoding. */
typedef int (*ag__gz_more_fn)(void *ctx, unsigned char **buf, size_t *cap);

typedef enum ag__gz_result {
    AG__GZ_OK = 0,     /* every member decoded, CRC-32 and length checked; nothing but zero bytes after */
    AG__GZ_STOPPED,    /* `more` returned nonzero */
    AG__GZ_READ_ERROR, /* `read` returned -1 */
    AG__GZ_NOMEM,      /* the decoder's own state (about 80 KiB) could not be allocated */
    AG__GZ_NOT_GZIP,   /* the input does not start with gzip's magic bytes 1f 8b */
    AG__GZ_CORRUPT,    /* bad header, bad DEFLATE data, truncated input, CRC-32 or length mismatch */
    AG__GZ_TRAILING,   /* bytes after the last member that are neither a member nor zero padding */
} ag__gz_result;

/* Decode every member of a gzip file, in order, into *buf (capacity *cap, grown only through
 * `more`); *len receives the bytes decoded, also when decoding stops early. `why` (may be NULL)
 * gets a one-line reason for NOT_GZIP, CORRUPT and TRAILING, e.g. "invalid distance too far back".
 * The buffer stays the caller's to free, whatever the result. */
ag__gz_result ag__gunzip(ag__gz_read_fn read, void *read_ctx, ag__gz_more_fn more, void *more_ctx,
                         unsigned char **buf, size_t *cap, size_t *len, char *why, size_t whysize);

#endif /* AG_IO_INTERNAL_H */

/*
 * fuzz_gunzip.c - differential libFuzzer harness: ag__gunzip against zlib's inflate (a fuzz-only
 * peer; the library never links zlib).
 *
 * Input: a mode byte m, then a payload P.
 *   m bit 0 = 0: P is a gzip file, decoded by both sides as is.
 *   m bit 0 = 1: P is a raw DEFLATE stream. zlib inflates it raw; the harness wraps the bytes zlib
 *                consumed in a gzip member with the right CRC-32 and ISIZE (computed from zlib's
 *                output), so the fuzzer explores DEFLATE without having to forge checksums. If zlib
 *                refuses P, the member is the whole of P with a trailer of what zlib produced.
 *   m bits 1-2: our read() size: everything asked, 1, 7 or 509 bytes.
 *   m bits 3-4: our output growth: doubling from 64, +1 up to 300 then doubling, +40000, +65536.
 * zlib decodes like gzip -d: member after member (each with a fresh window) while the rest starts
 * with 1f 8b; the rest may be all zeros; anything else is trailing data.
 * Checked: zlib OK <=> ours OK, with identical bytes; zlib's trailing <=> ours TRAILING; ours
 * NOT_GZIP only when the input does not start with 1f 8b 08; the common prefix of both outputs
 * always agrees; `why` set on NOT_GZIP / CORRUPT / TRAILING. Output is capped at 1 MiB on both
 * sides (ours: more() refuses, STOPPED); beyond it only the prefix is compared.
 * One allowed difference: zlib checks the optional header CRC (FHCRC) and the decoder may skip it,
 * so ours OK against zlib's "header crc mismatch" is accepted when the rest agrees (checked by
 * decoding again with the header CRC patched to its right value).
 * Build (tests/fuzz.cmake, AG_FUZZ=ON with zlib found): clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"
#include "io/io.h"

#ifndef AG_FUZZ_ENTRY
#define AG_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size);

#define CAP ((size_t)1 << 20)

static void fail(const char *what, const uint8_t *p, size_t n) {
    fprintf(stderr, "fuzz_gunzip: %s (input %zu bytes)\n", what, n);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, "%02x", p[i]);
    fprintf(stderr, "%s\n", n > 64 ? "..." : "");
    abort();
}

/* ---- zlib as gzip -d */

enum { Z_RES_OK, Z_RES_ERR, Z_RES_TRAIL, Z_RES_CAP };

typedef struct zout {
    int res;
    unsigned char *buf; /* CAP + 1 bytes: producing the last one means over the cap */
    size_t len;
    const char *msg;
} zout;

static void zlib_gunzip(const uint8_t *p, size_t n, zout *o) {
    o->len = 0;
    o->msg = NULL;
    if (n < 2 || p[0] != 0x1f || p[1] != 0x8b) {
        o->res = Z_RES_ERR;
        o->msg = "not gzip";
        return;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + 15) != Z_OK) abort();
    zs.next_in = (unsigned char *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = o->buf;
    zs.avail_out = (uInt)(CAP + 1);
    for (;;) {
        int r = inflate(&zs, Z_NO_FLUSH);
        o->len = CAP + 1 - zs.avail_out;
        if (o->len > CAP) {
            o->res = Z_RES_CAP;
            break;
        }
        if (r == Z_STREAM_END) {
            size_t rest = zs.avail_in;
            const unsigned char *q = zs.next_in;
            if (rest >= 2 && q[0] == 0x1f && q[1] == 0x8b) {
                inflateReset(&zs); /* next member: fresh window */
                continue;
            }
            size_t i = 0;
            while (i < rest && q[i] == 0) i++;
            o->res = i == rest ? Z_RES_OK : Z_RES_TRAIL;
            break;
        }
        if (r == Z_OK) continue; /* progress */
        o->res = Z_RES_ERR;      /* data error, or Z_BUF_ERROR: input ended inside a member */
        o->msg = zs.msg ? zs.msg : "truncated";
        break;
    }
    inflateEnd(&zs);
}

/* ---- ours */

typedef struct rd {
    const uint8_t *p;
    size_t n, pos, chunk;
} rd;

static ptrdiff_t rd_read(void *ctx, unsigned char *buf, size_t cap) {
    rd *r = ctx;
    if (cap == 0) abort(); /* a 0 answer would mean the end */
    size_t k = r->n - r->pos;
    if (k > cap) k = cap;
    if (r->chunk && k > r->chunk) k = r->chunk;
    memcpy(buf, r->p + r->pos, k);
    r->pos += k;
    return (ptrdiff_t)k;
}

static int grow_mode;

static int grow(void *ctx, unsigned char **buf, size_t *cap) {
    (void)ctx;
    size_t c = *cap, want;
    switch (grow_mode) {
    case 0: want = c ? 2 * c : 64; break;
    case 1: want = c < 300 ? c + 1 : 2 * c; break;
    case 2: want = c + 40000; break;
    default: want = c + 65536; break;
    }
    if (want > CAP) want = CAP;
    if (want <= c) return 1;
    unsigned char *p = realloc(*buf, want);
    if (!p) return 1;
    *buf = p;
    *cap = want;
    return 0;
}

typedef struct ours {
    ag__gz_result r;
    unsigned char *buf;
    size_t cap, len;
    char why[128];
} ours;

static void ours_gunzip(const uint8_t *p, size_t n, size_t chunk, ours *o) {
    rd r = {p, n, 0, chunk};
    o->buf = NULL;
    o->cap = o->len = 0;
    o->why[0] = 0;
    o->r = ag__gunzip(rd_read, &r, grow, NULL, &o->buf, &o->cap, &o->len, o->why, sizeof o->why);
    if (o->len > o->cap) fail("len > cap", p, n);
    if ((o->r == AG__GZ_NOT_GZIP || o->r == AG__GZ_CORRUPT || o->r == AG__GZ_TRAILING) && !o->why[0])
        fail("no reason given", p, n);
    if (o->r == AG__GZ_READ_ERROR || o->r == AG__GZ_NOMEM) fail("READ_ERROR / NOMEM without cause", p, n);
    if (o->r == AG__GZ_STOPPED && o->len != CAP) fail("STOPPED before the cap", p, n);
}

/* The same file with every member's FHCRC set to its right value, if that is the only thing
 * zlib objects to: NULL when there is no FHCRC in the first failing member to fix. */
static unsigned char *fix_hcrc(const uint8_t *p, size_t n) {
    /* Only the first member is patched: enough for the fuzzer's single-member files, and a second
     * FHCRC mismatch just means the relaxation is not applied (the input then counts as a
     * failure of ours, which would be a false alarm; it has not been seen). */
    if (n < 10 || !(p[3] & 2)) return NULL;
    size_t i = 10;
    if (p[3] & 4) {
        if (i + 2 > n) return NULL;
        i += 2 + (size_t)(p[i] | p[i + 1] << 8);
    }
    for (int f = 8; f <= 16; f <<= 1)
        if (p[3] & f) {
            while (i < n && p[i]) i++;
            i++;
        }
    if (i + 2 > n) return NULL;
    unsigned char *q = malloc(n);
    if (!q) abort();
    memcpy(q, p, n);
    uLong c = crc32(0L, q, (uInt)i);
    q[i] = (unsigned char)(c & 255);
    q[i + 1] = (unsigned char)((c >> 8) & 255);
    return q;
}

static void compare(const uint8_t *p, size_t n, size_t chunk, zout *z) {
    zlib_gunzip(p, n, z);
    ours o;
    ours_gunzip(p, n, chunk, &o);

    size_t common = z->len < o.len ? z->len : o.len;
    if (common && memcmp(z->buf, o.buf, common) != 0) fail("outputs differ in their common prefix", p, n);

    int zcap = z->res == Z_RES_CAP, ocap = o.r == AG__GZ_STOPPED;
    if (!zcap && !ocap) {
        if (o.r == AG__GZ_OK && z->res != Z_RES_OK) {
            int allowed = 0;
            if (z->msg && !strcmp(z->msg, "header crc mismatch")) {
                unsigned char *q = fix_hcrc(p, n);
                if (q) {
                    zout z2 = {.buf = z->buf};
                    zlib_gunzip(q, n, &z2);
                    allowed = z2.res == Z_RES_OK && z2.len == o.len && !memcmp(z2.buf, o.buf, o.len);
                    free(q);
                }
            }
            if (!allowed) {
                fprintf(stderr, "zlib: %s\n", z->msg ? z->msg : "trailing");
                fail("ours OK, zlib refuses", p, n);
            }
        } else if (z->res == Z_RES_OK && o.r != AG__GZ_OK) {
            fprintf(stderr, "ours: %d %s\n", o.r, o.why);
            fail("zlib OK, ours refuses", p, n);
        } else if (z->res == Z_RES_OK && o.len != z->len) {
            fail("both OK, lengths differ", p, n);
        }
        if ((z->res == Z_RES_TRAIL) != (o.r == AG__GZ_TRAILING)) {
            fprintf(stderr, "ours: %d %s; zlib: %s\n", o.r, o.why, z->msg ? z->msg : "-");
            fail("trailing data judged differently", p, n);
        }
    }
    if (o.r == AG__GZ_NOT_GZIP && n >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 8)
        fail("NOT_GZIP for a gzip header", p, n);
    if (o.r != AG__GZ_NOT_GZIP && (n < 2 || p[0] != 0x1f || p[1] != 0x8b))
        fail("not NOT_GZIP for a bad magic", p, n);
    free(o.buf);
}

int AG_FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const size_t chunks[4] = {0, 1, 7, 509};
    unsigned m = data[0];
    size_t chunk = chunks[(m >> 1) & 3];
    grow_mode = (int)((m >> 3) & 3);
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    zout z = {.buf = malloc(CAP + 1)};
    if (!z.buf) abort();

    if (!(m & 1)) {
        compare(p, n, chunk, &z);
    } else {
        /* raw DEFLATE through zlib, then wrapped */
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) abort();
        zs.next_in = (unsigned char *)p;
        zs.avail_in = (uInt)n;
        zs.next_out = z.buf;
        zs.avail_out = (uInt)(CAP + 1);
        int r;
        while ((r = inflate(&zs, Z_NO_FLUSH)) == Z_OK && zs.avail_out) {
        }
        size_t out = CAP + 1 - zs.avail_out, used = r == Z_STREAM_END ? (size_t)zs.total_in : n;
        inflateEnd(&zs);
        if (out <= CAP) {
            uLong c = crc32(0L, z.buf, (uInt)out);
            unsigned char *g = malloc(used + 18);
            if (!g) abort();
            static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
            memcpy(g, hdr, 10);
            if (used) memcpy(g + 10, p, used);
            for (int i = 0; i < 4; i++) g[10 + used + (size_t)i] = (unsigned char)(c >> (8 * i));
            for (int i = 0; i < 4; i++) g[14 + used + (size_t)i] = (unsigned char)((uint32_t)out >> (8 * i));
            compare(g, used + 18, chunk, &z);
            free(g);
        }
    }
    free(z.buf);
    return 0;
}

/*
 * gunzip.c - gzip files (RFC 1952) of DEFLATE data (RFC 1951), decoded in process, so reading a
 * compressed data set needs no external program. Input streams in through a callback, 64 KiB at a
 * time; output goes to one contiguous buffer that the caller grows, and that buffer is also the
 * LZ77 window. Every code, length and distance is checked against the format and against what has
 * been decoded, so damaged or hostile input ends in AG__GZ_CORRUPT with a reason, never in a read
 * or write out of bounds.
 *
 * Huffman codes are decoded through a table indexed by the next FAST_BITS input bits; the rare
 * longer codes fall back to a canonical bit-by-bit decode (count of codes per length).
 */
#include "io.h"

#define IN_SIZE (64 * 1024)
#define FAST_BITS 10
#define MAX_BITS 15

typedef struct huff {
    uint16_t fast[1 << FAST_BITS]; /* symbol | length << 9 by the next FAST_BITS bits; 0: longer or no code */
    uint16_t count[MAX_BITS + 1];  /* number of codes of each length */
    uint16_t sym[288];             /* symbols in canonical code order */
} huff;

typedef struct gz {
    ag__gz_read_fn read;
    void *read_ctx;
    ag__gz_more_fn more;
    void *more_ctx;
    unsigned char **buf;
    size_t *cap;
    size_t len;          /* bytes of output */
    size_t member_start; /* where the current member's output starts: distances may not reach before it */
    uint64_t bits;       /* input bits, least significant first; the bits above nbits are the next input */
    unsigned nbits;
    size_t in_pos, in_len;
    int in_end; /* read returned 0 */
    ag__gz_result err;
    char *why;
    size_t whysize;
    huff lit, dist, fixed_lit, fixed_dist;
    int have_fixed;
    unsigned char in[IN_SIZE];
} gz;

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,    65,    97,    129,
                                       193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
/* RFC 1951 3.2.7: the order in which the code-length code's lengths are sent */
static const uint8_t CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

static int fail(gz *g, ag__gz_result r, const char *why) {
    if (!g->err) {
        g->err = r;
        if (g->why && g->whysize) snprintf(g->why, g->whysize, "%s", why);
    }
    return -1;
}

static uint64_t le64(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8); /* one load: the byte loop below is not always merged into one */
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
#endif
}

/* Keep what is left of the input buffer and read more behind it: 0, or -1 on a read error. */
static int read_input(gz *g) {
    size_t rest = g->in_len - g->in_pos;
    memmove(g->in, g->in + g->in_pos, rest);
    g->in_pos = 0;
    g->in_len = rest;
    while (!g->in_end && g->in_len < 8) {
        ptrdiff_t r = g->read(g->read_ctx, g->in + g->in_len, IN_SIZE - g->in_len);
        if (r < 0 || (size_t)r > IN_SIZE - g->in_len) return fail(g, AG__GZ_READ_ERROR, "read error");
        if (r == 0) g->in_end = 1;
        g->in_len += (size_t)r;
    }
    return 0;
}

/* At least 56 bits in g->bits unless the input ends first (not an error here): 0, or -1 on a read error. */
static int refill(gz *g) {
    if (g->in_len - g->in_pos < 8 && !g->in_end && read_input(g) < 0) return -1;
    if (g->in_len - g->in_pos >= 8) {
        g->bits |= le64(g->in + g->in_pos) << g->nbits;
        g->in_pos += (63 - g->nbits) >> 3;
        g->nbits |= 56;
        return 0;
    }
    while (g->nbits <= 56 && g->in_pos < g->in_len) {
        g->bits |= (uint64_t)g->in[g->in_pos++] << g->nbits;
        g->nbits += 8;
    }
    return 0;
}

/* n (<= 32) bits, or -1: truncated input or a read error. */
static int64_t take(gz *g, unsigned n) {
    if (g->nbits < n) {
        if (refill(g) < 0) return -1;
        if (g->nbits < n) return fail(g, AG__GZ_CORRUPT, "truncated compressed data");
    }
    uint64_t v = g->bits & ((1ull << n) - 1);
    g->bits >>= n;
    g->nbits -= n;
    return (int64_t)v;
}

/* Build the decoding tables of a canonical code from its lengths (0 = symbol unused). zlib's rules:
 * an over-subscribed code is refused; an incomplete one only when `complete` is asked or a code is
 * longer than 1 bit (a single 1-bit code is legal); no code at all is legal, but no symbol decodes. */
static int build(huff *h, const uint8_t *lens, int n, int complete) {
    memset(h->count, 0, sizeof h->count);
    memset(h->fast, 0, sizeof h->fast);
    for (int s = 0; s < n; s++) h->count[lens[s]]++;
    h->count[0] = 0;
    int left = 1, max = 0;
    for (int l = 1; l <= MAX_BITS; l++) {
        left = (left << 1) - h->count[l];
        if (left < 0) return -1; /* over-subscribed */
        if (h->count[l]) max = l;
    }
    if (max == 0) return 0;
    if (left > 0 && (complete || max > 1)) return -1; /* incomplete */
    uint16_t offs[MAX_BITS + 2];
    offs[1] = 0;
    for (int l = 1; l <= MAX_BITS; l++) offs[l + 1] = (uint16_t)(offs[l] + h->count[l]);
    for (int s = 0; s < n; s++)
        if (lens[s]) h->sym[offs[lens[s]]++] = (uint16_t)s;
    /* canonical codes in order of (length, symbol); the table wants them bit-reversed (LSB first) */
    unsigned code = 0;
    int k = 0;
    for (int l = 1; l <= MAX_BITS; l++, code <<= 1)
        for (int c = 0; c < h->count[l]; c++, code++, k++) {
            if (l > FAST_BITS) continue;
            unsigned rev = 0;
            for (int b = 0; b < l; b++) rev |= ((code >> b) & 1u) << (l - 1 - b);
            for (unsigned i = rev; i < (1u << FAST_BITS); i += 1u << l) h->fast[i] = (uint16_t)(h->sym[k] | l << 9);
        }
    return 0;
}

/* Codes longer than FAST_BITS (and invalid bit patterns): canonical decode one bit at a time.
 * The symbol, -1 for no such code, -2 when the bits run out. */
static int slow_decode(const huff *h, uint64_t *bits, unsigned *nbits) {
    uint64_t b = *bits;
    unsigned nb = *nbits;
    int code = 0, first = 0, index = 0;
    for (int l = 1; l <= MAX_BITS; l++) {
        if (nb == 0) return -2;
        code |= (int)(b & 1);
        b >>= 1;
        nb--;
        int count = h->count[l];
        if (code - count < first) {
            *bits = b;
            *nbits = nb;
            return h->sym[index + (code - first)];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

/* One symbol of h from the bits given: the symbol, -1 for no such code, -2 when the bits run out. */
static inline int decode(const huff *h, uint64_t *bits, unsigned *nbits) {
    unsigned e = h->fast[*bits & ((1u << FAST_BITS) - 1)], l = e >> 9;
    if (!l) return slow_decode(h, bits, nbits);
    if (l > *nbits) return -2;
    *bits >>= l;
    *nbits -= l;
    return (int)(e & 511);
}

/* One symbol of h, or -1 with the error set. Used outside the hot loop. */
static int decode_sym(gz *g, const huff *h) {
    if (g->nbits < MAX_BITS && refill(g) < 0) return -1;
    int s = decode(h, &g->bits, &g->nbits);
    if (s == -2) return fail(g, AG__GZ_CORRUPT, "truncated compressed data");
    if (s < 0) return fail(g, AG__GZ_CORRUPT, "invalid Huffman code");
    return s;
}

/* Room for more output: the caller grows the buffer or stops. */
static int grow(gz *g) {
    size_t before = *g->cap;
    if (g->more(g->more_ctx, g->buf, g->cap) != 0 || *g->cap <= before || !*g->buf)
        return fail(g, AG__GZ_STOPPED, "output refused");
    return 0;
}

/* The literals and matches of one Huffman-coded block, up to its end-of-block code. The state
 * lives in locals here: output bytes may alias anything, so fields would be reloaded per byte. */
static int inflate_codes(gz *g, const huff *lit, const huff *dist) {
    uint64_t bits = g->bits;
    unsigned nbits = g->nbits;
    unsigned char *out = *g->buf;
    size_t len = g->len, cap = *g->cap;
    int rc = -1;
#define SAVE() (g->bits = bits, g->nbits = nbits, g->len = len)
#define LOAD() (bits = g->bits, nbits = g->nbits, out = *g->buf, cap = *g->cap)
#define CONSUME(n) (bits >>= (n), nbits -= (n))
    for (;;) {
        /* 48 bits cover a literal/length code (15), its extra bits (5), a distance code (15) and its extra (13) */
        if (nbits < 48) {
            if (g->in_len - g->in_pos >= 8) {
                bits |= le64(g->in + g->in_pos) << nbits;
                g->in_pos += (63 - nbits) >> 3;
                nbits |= 56;
            } else {
                SAVE();
                if (refill(g) < 0) return -1;
                LOAD();
            }
        }
        int sym = decode(lit, &bits, &nbits);
        if (sym < 0) {
            if (sym == -2) goto truncated;
            fail(g, AG__GZ_CORRUPT, "invalid literal/length code");
            goto out;
        }
        if (sym < 256) {
            if (len == cap) {
                SAVE();
                if (grow(g) < 0) return -1;
                LOAD();
            }
            out[len++] = (unsigned char)sym;
            continue;
        }
        if (sym == 256) break;
        sym -= 257;
        if (sym >= 29) {
            fail(g, AG__GZ_CORRUPT, "invalid literal/length code");
            goto out;
        }
        unsigned xb = LEN_EXTRA[sym];
        if (xb > nbits) goto truncated;
        size_t n = LEN_BASE[sym] + (size_t)(bits & ((1u << xb) - 1));
        CONSUME(xb);
        int ds = decode(dist, &bits, &nbits);
        if (ds == -2) goto truncated;
        if (ds < 0 || ds >= 30) {
            fail(g, AG__GZ_CORRUPT, "invalid distance code");
            goto out;
        }
        xb = DIST_EXTRA[ds];
        if (xb > nbits) goto truncated;
        size_t d = DIST_BASE[ds] + (size_t)(bits & ((1u << xb) - 1));
        CONSUME(xb);
        if (d > len - g->member_start) {
            fail(g, AG__GZ_CORRUPT, "invalid distance too far back");
            goto out;
        }
        while (n) {
            if (len == cap) {
                SAVE();
                if (grow(g) < 0) return -1;
                LOAD();
            }
            size_t chunk = cap - len < n ? cap - len : n;
            const unsigned char *from = out + len - d;
            unsigned char *to = out + len;
            if (d >= 8 && cap - len >= chunk + 8) /* 8 bytes a step: each step reads only bytes already out */
                for (size_t i = 0; i < chunk; i += 8) memcpy(to + i, from + i, 8); /* may write 7 past: spare room */
            else if (d == 1)
                memset(to, *from, chunk); /* a run of one byte */
            else
                for (size_t i = 0; i < chunk; i++) to[i] = from[i]; /* overlapping: repeats the last d bytes */
            len += chunk;
            n -= chunk;
        }
    }
    rc = 0;
    goto out;
truncated:
    fail(g, AG__GZ_CORRUPT, "truncated compressed data");
out:
    SAVE();
    return rc;
#undef SAVE
#undef LOAD
#undef CONSUME
}

static int stored_block(gz *g) {
    if (take(g, g->nbits & 7) < 0) return -1; /* to a byte boundary */
    int64_t ln = take(g, 16), nl = take(g, 16);
    if (ln < 0 || nl < 0) return -1;
    if (ln != (~nl & 0xffff)) return fail(g, AG__GZ_CORRUPT, "stored block length does not match its complement");
    size_t n = (size_t)ln;
    while (n && g->nbits >= 8) { /* whole bytes still in the bit buffer */
        if (g->len == *g->cap && grow(g) < 0) return -1;
        (*g->buf)[g->len++] = (unsigned char)take(g, 8);
        n--;
    }
    if (n) g->bits = 0; /* the rest comes straight from the input buffer */
    while (n) {
        if (g->in_pos == g->in_len) {
            if (g->in_end) return fail(g, AG__GZ_CORRUPT, "truncated compressed data");
            if (read_input(g) < 0) return -1;
            if (g->in_pos == g->in_len) return fail(g, AG__GZ_CORRUPT, "truncated compressed data");
        }
        if (g->len == *g->cap && grow(g) < 0) return -1;
        size_t chunk = g->in_len - g->in_pos;
        if (chunk > n) chunk = n;
        if (chunk > *g->cap - g->len) chunk = *g->cap - g->len;
        memcpy(*g->buf + g->len, g->in + g->in_pos, chunk);
        g->len += chunk;
        g->in_pos += chunk;
        n -= chunk;
    }
    return 0;
}

static int fixed_tables(gz *g) {
    if (g->have_fixed) return 0;
    uint8_t l[288];
    memset(l, 8, 144);
    memset(l + 144, 9, 112);
    memset(l + 256, 7, 24);
    memset(l + 280, 8, 8);
    if (build(&g->fixed_lit, l, 288, 1) < 0) return fail(g, AG__GZ_CORRUPT, "fixed code");
    memset(l, 5, 32); /* 30 and 31 complete the code but are refused when they occur */
    if (build(&g->fixed_dist, l, 32, 1) < 0) return fail(g, AG__GZ_CORRUPT, "fixed code");
    g->have_fixed = 1;
    return 0;
}

static int dynamic_tables(gz *g) {
    int64_t hlit = take(g, 5), hdist = take(g, 5), hclen = take(g, 4);
    if (hlit < 0 || hdist < 0 || hclen < 0) return -1;
    hlit += 257;
    hdist += 1;
    hclen += 4;
    if (hlit > 286 || hdist > 30) return fail(g, AG__GZ_CORRUPT, "too many length or distance codes");
    uint8_t lens[286 + 30];
    memset(lens, 0, 19);
    for (int i = 0; i < hclen; i++) {
        int64_t v = take(g, 3);
        if (v < 0) return -1;
        lens[CL_ORDER[i]] = (uint8_t)v;
    }
    huff *cl = &g->lit; /* the code-length code is done with before lit is built */
    if (build(cl, lens, 19, 1) < 0) return fail(g, AG__GZ_CORRUPT, "invalid code-length code");
    int n = (int)(hlit + hdist);
    for (int i = 0; i < n;) {
        int s = decode_sym(g, cl);
        if (s < 0) return -1;
        if (s < 16) {
            lens[i++] = (uint8_t)s;
            continue;
        }
        int rep;
        uint8_t v = 0;
        int64_t x;
        if (s == 16) {
            if (i == 0) return fail(g, AG__GZ_CORRUPT, "repeated code length with no previous length");
            v = lens[i - 1];
            if ((x = take(g, 2)) < 0) return -1;
            rep = 3 + (int)x;
        } else if (s == 17) {
            if ((x = take(g, 3)) < 0) return -1;
            rep = 3 + (int)x;
        } else {
            if ((x = take(g, 7)) < 0) return -1;
            rep = 11 + (int)x;
        }
        if (i + rep > n) return fail(g, AG__GZ_CORRUPT, "code lengths run past the codes");
        memset(lens + i, v, (size_t)rep);
        i += rep;
    }
    if (lens[256] == 0) return fail(g, AG__GZ_CORRUPT, "no end-of-block code");
    if (build(&g->lit, lens, (int)hlit, 0) < 0) return fail(g, AG__GZ_CORRUPT, "invalid literal/length code lengths");
    if (build(&g->dist, lens + hlit, (int)hdist, 0) < 0) return fail(g, AG__GZ_CORRUPT, "invalid distance code lengths");
    return 0;
}

static int inflate_member(gz *g) {
    int last;
    do {
        int64_t h = take(g, 3);
        if (h < 0) return -1;
        last = (int)(h & 1);
        switch (h >> 1) {
        case 0:
            if (stored_block(g) < 0) return -1;
            break;
        case 1:
            if (fixed_tables(g) < 0 || inflate_codes(g, &g->fixed_lit, &g->fixed_dist) < 0) return -1;
            break;
        case 2:
            if (dynamic_tables(g) < 0 || inflate_codes(g, &g->lit, &g->dist) < 0) return -1;
            break;
        default:
            return fail(g, AG__GZ_CORRUPT, "invalid block type");
        }
    } while (!last);
    return 0;
}

/* A header byte, added to the header's CRC-32 (for FHCRC) a bit at a time: headers are short. */
static int hbyte(gz *g, uint32_t *crc) {
    int64_t b = take(g, 8);
    if (b < 0) return -1;
    uint32_t c = ~*crc ^ (uint32_t)b;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    *crc = ~c;
    return (int)b;
}

/* The rest of a member's header, after its first two bytes (1f 8b). */
static int header(gz *g) {
    static const unsigned char id[2] = {0x1f, 0x8b};
    uint32_t crc = ag_crc32(0, id, 2);
    int cm = hbyte(g, &crc), flg = hbyte(g, &crc);
    if (cm < 0 || flg < 0) return -1;
    if (cm != 8) return fail(g, AG__GZ_CORRUPT, "unknown compression method (not deflate)");
    if (flg & 0xe0) return fail(g, AG__GZ_CORRUPT, "reserved header flags set");
    for (int i = 0; i < 6; i++) /* MTIME, XFL, OS */
        if (hbyte(g, &crc) < 0) return -1;
    if (flg & 4) { /* FEXTRA */
        int lo = hbyte(g, &crc), hi = hbyte(g, &crc);
        if (lo < 0 || hi < 0) return -1;
        for (int i = 0; i < (lo | hi << 8); i++)
            if (hbyte(g, &crc) < 0) return -1;
    }
    for (int f = 8; f <= 16; f += 8) /* FNAME, FCOMMENT: zero-terminated */
        if (flg & f) {
            int c;
            do
                if ((c = hbyte(g, &crc)) < 0) return -1;
            while (c != 0);
        }
    if (flg & 2) { /* FHCRC: the low 16 bits of the header's CRC-32 */
        int64_t v = take(g, 16);
        if (v < 0) return -1;
        if ((uint32_t)v != (crc & 0xffff)) return fail(g, AG__GZ_CORRUPT, "header CRC mismatch");
    }
    return 0;
}

static int trailer(gz *g) {
    if (take(g, g->nbits & 7) < 0) return -1;
    int64_t crc = take(g, 32), size = take(g, 32);
    if (crc < 0 || size < 0) return -1;
    size_t n = g->len - g->member_start;
    if ((uint32_t)size != (uint32_t)n) return fail(g, AG__GZ_CORRUPT, "length mismatch");
    uint32_t want = n ? ag_crc32(0, *g->buf + g->member_start, n) : 0; /* an empty member may have no buffer */
    if ((uint32_t)crc != want) return fail(g, AG__GZ_CORRUPT, "CRC-32 mismatch");
    return 0;
}

/* After a member: 1 for another member (its 1f 8b taken), 0 at the end, -1 on trailing data or an error. */
static int next_member(gz *g) {
    if (g->nbits < 16 && refill(g) < 0) return -1;
    if (g->nbits >= 16 && (g->bits & 0xffff) == 0x8b1f) {
        take(g, 16);
        return 1;
    }
    for (;;) { /* zero padding is accepted, as gzip does */
        if (g->nbits < 8 && refill(g) < 0) return -1;
        if (g->nbits < 8) return 0;
        if (take(g, 8) != 0) return fail(g, AG__GZ_TRAILING, "data after the gzip stream");
    }
}

ag__gz_result ag__gunzip(ag__gz_read_fn read, void *read_ctx, ag__gz_more_fn more, void *more_ctx,
                         unsigned char **buf, size_t *cap, size_t *len, char *why, size_t whysize) {
    if (why && whysize) why[0] = '\0';
    *len = 0;
    gz *g = ag__malloc(sizeof *g);
    if (!g) return AG__GZ_NOMEM;
    memset(g, 0, offsetof(gz, in));
    g->read = read;
    g->read_ctx = read_ctx;
    g->more = more;
    g->more_ctx = more_ctx;
    g->buf = buf;
    g->cap = cap;
    g->len = 0;
    g->why = why;
    g->whysize = whysize;
    if (refill(g) == 0) {
        if (g->nbits < 16 || (g->bits & 0xffff) != 0x8b1f) fail(g, AG__GZ_NOT_GZIP, "not gzip data");
        else {
            take(g, 16);
            do {
                g->member_start = g->len;
                if (header(g) < 0 || inflate_member(g) < 0 || trailer(g) < 0) break;
            } while (next_member(g) == 1);
        }
    }
    ag__gz_result res = g->err;
    *len = g->len;
    ag__free(g);
    return res;
}

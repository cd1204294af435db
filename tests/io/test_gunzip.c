/*
 * test_gunzip.c - the in-process gzip / DEFLATE decoder (ag__gunzip), checked against references
 * only: streams made by the system gzip program at test time (levels 1, 6, 9 on text, zeros,
 * random bytes and mixes up to a few MiB), and DEFLATE bodies written bit by bit here, each with
 * the output it must give or the error it must raise. Also: concatenated members, zero padding,
 * trailing bytes, every header field, reads and output growth in tiny steps, a refusing more(),
 * read errors, every truncation point, damaged trailers and allocation failures.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "internal.h"
#include "io/io.h"
#include "testutil.h"

/* ---- scratch directory for the gzip program's files */

static void setup(void) { ag_test_scratch_dir(); }
static void teardown(void) { ag_test_scratch_remove(); }

/* ---- CRC-32 (RFC 1952 section 8), bit at a time: slow and obviously right */

static uint32_t crc32_of(const unsigned char *p, size_t n, uint32_t crc) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

static uint32_t get32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- a growable byte string */

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void b_reserve(bytes *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + extra) c *= 2;
    b->p = realloc(b->p, c);
    ck_assert_ptr_nonnull(b->p);
    b->cap = c;
}
static void b_add(bytes *b, const void *p, size_t n) {
    b_reserve(b, n);
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_byte(bytes *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    b_add(b, &c, 1);
}
static void b_fill(bytes *b, unsigned v, size_t n) {
    if (!n) return;
    b_reserve(b, n);
    memset(b->p + b->n, (int)v, n);
    b->n += n;
}
static void b_free(bytes *b) {
    free(b->p);
    *b = (bytes){0};
}

/* ---- test data, deterministic */

static uint64_t rng_state;
static uint32_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void gen_random(bytes *b, size_t n) {
    b_reserve(b, n);
    for (size_t i = 0; i < n; i++) b->p[b->n++] = (unsigned char)(rnd() >> 24);
}

static void gen_text(bytes *b, size_t n) {
    static const char *words[] = {"the",   "gradient", "of",     "a",      "tensor", "tape",   "is",
                                  "loss",  "weights",  "batch",  "epoch",  "and",    "to",     "in",
                                  "model", "layer",    "learning", "rate", "backward", "forward",
                                  "image", "label",    "fashion", "mnist", "softmax", "entropy"};
    const size_t nw = sizeof words / sizeof *words;
    size_t end = b->n + n;
    while (b->n < end) {
        const char *w = words[rnd() % nw];
        size_t l = strlen(w);
        for (size_t i = 0; i < l && b->n < end; i++) b_byte(b, (unsigned char)w[i]);
        if (b->n < end) b_byte(b, rnd() % 13 == 0 ? '\n' : rnd() % 9 == 0 ? ',' : ' ');
    }
}

/* Segments of text, random bytes, zeros, short periodic runs and copies of bytes 20000..32768
 * back, so gzip emits matches at every distance up to its 32506 limit and switches blocks often. */
static void gen_mix(bytes *b, size_t n) {
    size_t end = b->n + n, start = b->n;
    while (b->n < end) {
        size_t left = end - b->n, k;
        switch (rnd() % 5) {
        case 0: gen_text(b, (k = 1 + rnd() % 8192) < left ? k : left); break;
        case 1: gen_random(b, (k = 1 + rnd() % 4096) < left ? k : left); break;
        case 2: b_fill(b, 0, (k = 1 + rnd() % 3000) < left ? k : left); break;
        case 3: { /* period 1..7 */
            size_t per = 1 + rnd() % 7;
            k = 3 + rnd() % 600;
            if (k > left) k = left;
            for (size_t i = 0; i < k; i++) b_byte(b, (unsigned char)('a' + (i % per)));
            break;
        }
        default: { /* a far copy */
            size_t back = 20000 + rnd() % 12769;
            k = 3 + rnd() % 300;
            if (k > left) k = left;
            if (b->n - start < back) break;
            b_reserve(b, k);
            for (size_t i = 0; i < k; i++, b->n++) b->p[b->n] = b->p[b->n - back];
        }
        }
    }
}

/* ---- the gzip program as reference compressor */

/* gzip -n -<level> of data; checks the trailer against our CRC-32 (which also checks the CRC). */
static bytes gzip_prog(const void *data, size_t len, int level) {
    char in[300], out[300], cmd[800];
    ag_test_scratch_path(in, sizeof in, "in");
    ag_test_scratch_path(out, sizeof out, "in.gz");
    FILE *f = fopen(in, "wb");
    ck_assert_ptr_nonnull(f);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "gzip -n -%d -c '%s' > '%s'", level, in, out);
    ck_assert_int_eq(system(cmd), 0);
    f = fopen(out, "rb");
    ck_assert_ptr_nonnull(f);
    bytes g = {0};
    unsigned char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) b_add(&g, chunk, got);
    fclose(f);
    ck_assert_uint_ge(g.n, 18);
    ck_assert_uint_eq(g.p[3], 0); /* -n: no name, so the body starts at byte 10 */
    ck_assert_uint_eq(get32le(g.p + g.n - 8), crc32_of(data, len, 0));
    ck_assert_uint_eq(get32le(g.p + g.n - 4), (uint32_t)len);
    return g;
}

/* ---- DEFLATE written by hand: a bit writer (RFC 1951 section 3.1.1) */

typedef struct bitw {
    bytes b;
    uint32_t acc;
    int nb;
} bitw;

/* Data elements go least significant bit first. */
static void put_bits(bitw *w, uint32_t v, int n) {
    for (int i = 0; i < n; i++) {
        w->acc |= ((v >> i) & 1u) << w->nb;
        if (++w->nb == 8) {
            b_byte(&w->b, w->acc);
            w->acc = 0;
            w->nb = 0;
        }
    }
}
/* Huffman codes go most significant bit first. */
static void put_huff(bitw *w, uint32_t code, int len) {
    for (int i = len - 1; i >= 0; i--) put_bits(w, (code >> i) & 1u, 1);
}
static void align(bitw *w) {
    if (w->nb) put_bits(w, 0, 8 - w->nb);
}

/* Length and distance code bases and extra bits (RFC 1951 section 3.2.5). */
static const int lbase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                              31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const int lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const int dbase[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                              193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const int dext[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3,  3,  4,  4,  5,  5,  6,
                             6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static int len_code(int len) { /* index 0..28 of the length code for len 3..258 */
    int i = 28;
    while (lbase[i] > len) i--;
    if (len == 258) i = 28;
    else if (i == 28) i = 27;
    return i;
}
static int dist_code(int dist) {
    int j = 29;
    while (dbase[j] > dist) j--;
    return j;
}

/* Fixed Huffman codes (RFC 1951 section 3.2.6). */
static void fix_sym(bitw *w, int s) {
    if (s < 144) put_huff(w, 0x30u + (unsigned)s, 8);
    else if (s < 256) put_huff(w, 0x190u + (unsigned)(s - 144), 9);
    else if (s < 280) put_huff(w, (unsigned)(s - 256), 7);
    else put_huff(w, 0xC0u + (unsigned)(s - 280), 8);
}
static void fix_match(bitw *w, int len, int dist) {
    int i = len_code(len), j = dist_code(dist);
    fix_sym(w, 257 + i);
    put_bits(w, (uint32_t)(len - lbase[i]), lext[i]);
    put_huff(w, (uint32_t)j, 5);
    put_bits(w, (uint32_t)(dist - dbase[j]), dext[j]);
}
static void fixed_hdr(bitw *w, int final) {
    put_bits(w, (uint32_t)final, 1);
    put_bits(w, 1, 2);
}
static void stored_block(bitw *w, int final, const unsigned char *p, size_t n) {
    put_bits(w, (uint32_t)final, 1);
    put_bits(w, 0, 2);
    align(w);
    b_byte(&w->b, n & 255);
    b_byte(&w->b, n >> 8);
    b_byte(&w->b, ~n & 255);
    b_byte(&w->b, (~n >> 8) & 255);
    b_add(&w->b, p, n);
}

/* Canonical codes from code lengths (RFC 1951 section 3.2.2). */
static void canon(const unsigned char *lens, int n, uint32_t *codes) {
    int count[16] = {0};
    uint32_t next[16] = {0};
    for (int i = 0; i < n; i++) count[lens[i]]++;
    count[0] = 0;
    uint32_t code = 0;
    for (int bits = 1; bits < 16; bits++) next[bits] = code = (code + (uint32_t)count[bits - 1]) << 1;
    for (int i = 0; i < n; i++) codes[i] = lens[i] ? next[lens[i]]++ : 0;
}

/* One code-length-alphabet symbol (0..18) and its extra bits. */
typedef struct clop {
    int sym, extra;
} clop;

/* Code lengths as code-length symbols: runs of zeros as 17 / 18, the rest one by one (no 16). */
static int rle_lens(const unsigned char *lens, int n, clop *ops) {
    int k = 0;
    for (int i = 0; i < n;) {
        int run = 0;
        while (i + run < n && lens[i + run] == 0 && run < 138) run++;
        if (run >= 11) ops[k++] = (clop){18, run - 11};
        else if (run >= 3) ops[k++] = (clop){17, run - 3};
        else {
            ops[k++] = (clop){lens[i], 0};
            run = 1;
        }
        i += run;
    }
    return k;
}

/* The code-length code used by every dynamic block here unless a test says otherwise: symbols
 * 0..12 get 4 bits and 13..18 get 5 bits, a complete code (13/16 + 6/32 = 1). */
static void default_cl(unsigned char cl[19]) {
    for (int i = 0; i < 19; i++) cl[i] = i < 13 ? 4 : 5;
}

static const int cl_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* A dynamic block header (RFC 1951 section 3.2.7): counts, the code-length code, then ops. */
static void dyn_hdr(bitw *w, int final, int hlit, int hdist, const unsigned char cl[19], const clop *ops, int nops) {
    put_bits(w, (uint32_t)final, 1);
    put_bits(w, 2, 2);
    put_bits(w, (uint32_t)(hlit - 257), 5);
    put_bits(w, (uint32_t)(hdist - 1), 5);
    put_bits(w, 19 - 4, 4);
    for (int i = 0; i < 19; i++) put_bits(w, cl[cl_order[i]], 3);
    uint32_t codes[19];
    canon(cl, 19, codes);
    for (int i = 0; i < nops; i++) {
        int s = ops[i].sym;
        put_huff(w, codes[s], cl[s]);
        if (s == 16) put_bits(w, (uint32_t)ops[i].extra, 2);
        if (s == 17) put_bits(w, (uint32_t)ops[i].extra, 3);
        if (s == 18) put_bits(w, (uint32_t)ops[i].extra, 7);
    }
}

/* A gzip member around a DEFLATE body: minimal header, then CRC-32 and ISIZE of data. */
static bytes gz_wrap(bitw *body, const unsigned char *data, size_t len) {
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    bytes g = {0};
    align(body);
    b_add(&g, hdr, 10);
    b_add(&g, body->b.p, body->b.n);
    uint32_t c = crc32_of(data, len, 0);
    for (int i = 0; i < 4; i++) b_byte(&g, (c >> (8 * i)) & 255);
    for (int i = 0; i < 4; i++) b_byte(&g, ((uint32_t)len >> (8 * i)) & 255);
    return g;
}

/* ---- running the decoder */

typedef struct src {
    const unsigned char *p;
    size_t n, pos;
    const size_t *chunks; /* read sizes, cycled; NULL: as much as asked */
    size_t nchunks, ci;
    size_t fail_at; /* return -1 once pos reaches this (with fail) */
    int fail;
    int eof_reads; /* calls that returned 0 */
} src;

static ptrdiff_t src_read(void *ctx, unsigned char *buf, size_t cap) {
    src *s = ctx;
    ck_assert_uint_gt(cap, 0);
    size_t lim = s->n;
    if (s->fail) {
        if (s->pos >= s->fail_at) return -1;
        lim = s->fail_at;
    }
    size_t k = lim - s->pos;
    if (k > cap) k = cap;
    if (s->chunks && k > s->chunks[s->ci % s->nchunks]) k = s->chunks[s->ci % s->nchunks];
    s->ci++;
    if (!k) {
        s->eof_reads++;
        return 0;
    }
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    return (ptrdiff_t)k;
}

typedef struct sink {
    size_t step;  /* bytes added per call; 0: double */
    size_t limit; /* refuse to grow past this; 0: no limit */
    int move;     /* always move the buffer (fresh block, old one poisoned and freed) */
    size_t calls;
} sink;

static int sink_more(void *ctx, unsigned char **buf, size_t *cap) {
    sink *k = ctx;
    if (k->calls++ == 0 && !*buf) ck_assert_uint_eq(*cap, 0);
    size_t want = k->step ? *cap + k->step : *cap ? *cap * 2 : 64;
    if (k->limit && want > k->limit) want = k->limit;
    if (want <= *cap) return 1;
    unsigned char *p;
    if (k->move) {
        p = malloc(want);
        ck_assert_ptr_nonnull(p);
        if (*cap) memcpy(p, *buf, *cap);
        if (*buf) memset(*buf, 0xA5, *cap);
        free(*buf);
    } else {
        p = realloc(*buf, want);
        ck_assert_ptr_nonnull(p);
    }
    *buf = p;
    *cap = want;
    return 0;
}

static const char *rname(ag__gz_result r) {
    switch (r) {
    case AG__GZ_OK: return "OK";
    case AG__GZ_STOPPED: return "STOPPED";
    case AG__GZ_READ_ERROR: return "READ_ERROR";
    case AG__GZ_NOMEM: return "NOMEM";
    case AG__GZ_NOT_GZIP: return "NOT_GZIP";
    case AG__GZ_CORRUPT: return "CORRUPT";
    case AG__GZ_TRAILING: return "TRAILING";
    }
    return "?";
}

typedef struct run_out {
    ag__gz_result r;
    unsigned char *buf;
    size_t cap, len;
    char why[160];
} run_out;

static run_out run_with(src *s, sink *k) {
    run_out o = {0};
    memset(o.why, 0, sizeof o.why);
    o.r = ag__gunzip(src_read, s, sink_more, k, &o.buf, &o.cap, &o.len, o.why, sizeof o.why);
    ck_assert_uint_le(o.len, o.cap);
    ck_assert_uint_lt(strlen(o.why), sizeof o.why);
    if (o.r == AG__GZ_NOT_GZIP || o.r == AG__GZ_CORRUPT || o.r == AG__GZ_TRAILING)
        ck_assert_msg(o.why[0] != 0, "%s without a reason", rname(o.r));
    return o;
}

static run_out run_simple(const unsigned char *p, size_t n) {
    src s = {.p = p, .n = n};
    sink k = {0};
    return run_with(&s, &k);
}

static void expect_data(const run_out *o, const unsigned char *want, size_t wantlen, const char *what) {
    ck_assert_msg(o->r == AG__GZ_OK, "%s: %s (%s), want OK", what, rname(o->r), o->why);
    ck_assert_msg(o->len == wantlen, "%s: %zu bytes, want %zu", what, o->len, wantlen);
    if (wantlen) {
        size_t i = 0;
        while (i < wantlen && o->buf[i] == want[i]) i++;
        ck_assert_msg(i == wantlen, "%s: first difference at byte %zu of %zu", what, i, wantlen);
    }
}

/* Decode with whole reads and doubling growth; expect OK and exactly want. */
static void expect_ok(const unsigned char *p, size_t n, const unsigned char *want, size_t wantlen, const char *what) {
    run_out o = run_simple(p, n);
    expect_data(&o, want, wantlen, what);
    free(o.buf);
}

/* Expect result r (or r2, when two answers are reasonable). */
static void expect_res2(const unsigned char *p, size_t n, ag__gz_result r, ag__gz_result r2, const char *what) {
    run_out o = run_simple(p, n);
    ck_assert_msg(o.r == r || o.r == r2, "%s: %s (%s), want %s", what, rname(o.r), o.why, rname(r));
    free(o.buf);
}
static void expect_res(const unsigned char *p, size_t n, ag__gz_result r, const char *what) {
    expect_res2(p, n, r, r, what);
}

/* Pseudo-text of n bytes, for the smaller tests. */
static bytes text_of(size_t n, uint64_t seed) {
    rng_state = seed;
    bytes t = {0};
    gen_text(&t, n);
    return t;
}

/* ==== gzip-made streams */

enum { K_EMPTY, K_ONE, K_TEXT, K_ZEROS, K_RANDOM, K_MIX, K_BIG, K_KINDS };
static const int levels[3] = {1, 6, 9};

static bytes make_kind(int kind) {
    int q = ag_test_quick();
    bytes d = {0};
    rng_state = 0x9E3779B97F4A7C15ULL + (uint64_t)kind;
    switch (kind) {
    case K_EMPTY: break;
    case K_ONE: b_byte(&d, 'x'); break;
    case K_TEXT: gen_text(&d, 10000); break;
    case K_ZEROS: b_fill(&d, 0, q ? 70000 : 300000); break; /* long matches at distance 1 */
    case K_RANDOM: gen_random(&d, 70000); break;              /* stored blocks */
    case K_MIX: gen_mix(&d, q ? 80000 : 300000); break;
    default: gen_mix(&d, q ? 300000 : 3u << 20); break; /* many blocks, full window */
    }
    return d;
}

START_TEST(gzip_levels_and_data) {
    int kind = _i / 3, level = levels[_i % 3];
    bytes d = make_kind(kind);
    bytes g = gzip_prog(d.p, d.n, level);
    char what[64];
    snprintf(what, sizeof what, "kind %d level %d", kind, level);
    expect_ok(g.p, g.n, d.p, d.n, what);
    b_free(&g);
    b_free(&d);
}
END_TEST

START_TEST(concatenated_members) {
    bytes a = make_kind(K_TEXT), b = make_kind(K_ZEROS), c = make_kind(K_RANDOM);
    bytes ga = gzip_prog(a.p, a.n, 1), gb = gzip_prog(b.p, b.n, 9), gc = gzip_prog(c.p, c.n, 6),
          ge = gzip_prog("", 0, 6);
    bytes all = {0}, want = {0};
    b_add(&all, ga.p, ga.n);
    b_add(&all, ge.p, ge.n); /* an empty member in the middle */
    b_add(&all, gb.p, gb.n);
    b_add(&all, gc.p, gc.n);
    b_add(&all, ga.p, ga.n);
    b_add(&want, a.p, a.n);
    b_add(&want, b.p, b.n);
    b_add(&want, c.p, c.n);
    b_add(&want, a.p, a.n);
    expect_ok(all.p, all.n, want.p, want.n, "four members and an empty one");
    /* the same with tiny reads: member boundaries fall inside reads */
    static const size_t ch[] = {1, 3, 7, 2, 11};
    src s = {.p = all.p, .n = all.n, .chunks = ch, .nchunks = 5};
    sink k = {0};
    run_out o = run_with(&s, &k);
    expect_data(&o, want.p, want.n, "members, tiny reads");
    free(o.buf);
    /* two empty members */
    b_free(&all);
    b_add(&all, ge.p, ge.n);
    b_add(&all, ge.p, ge.n);
    expect_ok(all.p, all.n, NULL, 0, "two empty members");
    bytes *v[] = {&a, &b, &c, &ga, &gb, &gc, &ge, &all, &want};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) b_free(v[i]);
}
END_TEST

/* Each member is a stream of its own: a distance may not reach into the previous member. */
START_TEST(distance_into_previous_member) {
    bytes t = text_of(100, 1), g = gzip_prog(t.p, t.n, 6);
    bitw w = {0};
    fixed_hdr(&w, 1);
    fix_match(&w, 3, 3); /* 3 bytes from 3 back: before this member's start */
    fix_sym(&w, 256);
    align(&w);
    static const unsigned char want[3] = {0}; /* CRC/ISIZE of "some 3 bytes": irrelevant */
    bytes m = gz_wrap(&w, want, 3), all = {0};
    b_add(&all, g.p, g.n);
    b_add(&all, m.p, m.n);
    expect_res(all.p, all.n, AG__GZ_CORRUPT, "distance into the previous member");
    b_free(&t);
    b_free(&g);
    b_free(&w.b);
    b_free(&m);
    b_free(&all);
}
END_TEST

START_TEST(zero_padding_accepted) {
    bytes t = text_of(3000, 2), g = gzip_prog(t.p, t.n, 6);
    static const size_t pads[] = {1, 7, 512, 70000};
    for (size_t i = 0; i < 4; i++) {
        bytes p = {0};
        b_add(&p, g.p, g.n);
        b_fill(&p, 0, pads[i]);
        expect_ok(p.p, p.n, t.p, t.n, "zero padding");
        /* padding split across tiny reads */
        static const size_t ch[] = {5, 1, 3};
        if (pads[i] > 512 && ag_test_quick()) {
            b_free(&p);
            continue;
        }
        src s = {.p = p.p, .n = p.n, .chunks = ch, .nchunks = 3};
        sink k = {0};
        run_out o = run_with(&s, &k);
        expect_data(&o, t.p, t.n, "zero padding, tiny reads");
        free(o.buf);
        b_free(&p);
    }
    b_free(&t);
    b_free(&g);
}
END_TEST

START_TEST(trailing_bytes_refused) {
    bytes t = text_of(3000, 3), g = gzip_prog(t.p, t.n, 6);
    struct {
        const char *tail;
        size_t zeros_before, n;
        ag__gz_result alt;
    } cases[] = {
        {"x", 0, 1, AG__GZ_TRAILING},
        {"hello", 0, 5, AG__GZ_TRAILING},
        {"\x01", 100, 1, AG__GZ_TRAILING},       /* zeros, then not zero */
        {"\x00\x00\x07", 70000, 3, AG__GZ_TRAILING},
        {"\x1f", 0, 1, AG__GZ_CORRUPT},          /* half a magic: trailing or a cut header */
        {"\x1f\x8b", 0, 2, AG__GZ_CORRUPT},
        {"\x1f\x8c\x08\x00", 0, 4, AG__GZ_TRAILING}, /* not a member */
        {"\x00\x1f\x8b\x08", 0, 4, AG__GZ_TRAILING}, /* padding is the end: no member after it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bytes p = {0};
        b_add(&p, g.p, g.n);
        b_fill(&p, 0, cases[i].zeros_before);
        b_add(&p, cases[i].tail, cases[i].n);
        char what[64];
        snprintf(what, sizeof what, "trailing case %zu", i);
        expect_res2(p.p, p.n, AG__GZ_TRAILING, cases[i].alt, what);
        b_free(&p);
    }
    b_free(&t);
    b_free(&g);
}
END_TEST

START_TEST(tiny_and_odd_reads) {
    rng_state = 77;
    bytes d = {0};
    gen_mix(&d, ag_test_quick() ? 40000 : 150000);
    bytes g = gzip_prog(d.p, d.n, 6);
    static const size_t c1[] = {1}, c2[] = {2, 3, 5, 7, 11, 13}, c3[] = {4093}, c4[] = {1, 65537, 2};
    const size_t *pats[] = {c1, c2, c3, c4};
    const size_t lens[] = {1, 6, 1, 3};
    for (int i = 0; i < 4; i++) {
        src s = {.p = g.p, .n = g.n, .chunks = pats[i], .nchunks = lens[i]};
        sink k = {0};
        run_out o = run_with(&s, &k);
        char what[32];
        snprintf(what, sizeof what, "read pattern %d", i);
        expect_data(&o, d.p, d.n, what);
        ck_assert_uint_eq(s.pos, g.n); /* all input consumed (to find the end) */
        ck_assert_int_ge(s.eof_reads, 1);
        free(o.buf);
    }
    b_free(&d);
    b_free(&g);
}
END_TEST

START_TEST(tiny_output_growth) {
    rng_state = 78;
    bytes d = {0};
    gen_mix(&d, ag_test_quick() ? 6000 : 40000);
    gen_text(&d, 2000);
    b_fill(&d, 'z', 700);
    bytes g = gzip_prog(d.p, d.n, 9);
    static const size_t steps[] = {1, 7, 4096};
    for (int i = 0; i < 3; i++)
        for (int move = 0; move < 2; move++) {
            static const size_t ch[] = {3, 1, 17};
            src s = {.p = g.p, .n = g.n, .chunks = i == 2 ? ch : NULL, .nchunks = 3};
            sink k = {.step = steps[i], .move = move};
            run_out o = run_with(&s, &k);
            char what[48];
            snprintf(what, sizeof what, "growth by %zu, move %d", steps[i], move);
            expect_data(&o, d.p, d.n, what);
            free(o.buf);
        }
    b_free(&d);
    b_free(&g);
}
END_TEST

START_TEST(caller_buffer_and_exact_fit) {
    bytes t = text_of(5000, 4), g = gzip_prog(t.p, t.n, 6);
    /* a buffer given by the caller is filled before more() is asked */
    src s = {.p = g.p, .n = g.n};
    sink k = {0};
    run_out o = {0};
    o.cap = 16;
    o.buf = malloc(o.cap);
    ck_assert_ptr_nonnull(o.buf);
    o.r = ag__gunzip(src_read, &s, sink_more, &k, &o.buf, &o.cap, &o.len, o.why, sizeof o.why);
    expect_data(&o, t.p, t.n, "caller's buffer");
    free(o.buf);
    /* room for exactly the output, then refusal: nothing more was needed, so OK */
    for (int step = 0; step < 2; step++) {
        src s2 = {.p = g.p, .n = g.n};
        sink k2 = {.step = step ? 1000 : t.n, .limit = t.n};
        o = run_with(&s2, &k2);
        expect_data(&o, t.p, t.n, "exact fit");
        free(o.buf);
    }
    b_free(&t);
    b_free(&g);
}
END_TEST

START_TEST(more_refuses_stops) {
    bytes t = text_of(20000, 5), g = gzip_prog(t.p, t.n, 6);
    src s = {.p = g.p, .n = g.n};
    sink k = {.step = 1000, .limit = 5000};
    run_out o = run_with(&s, &k);
    ck_assert_msg(o.r == AG__GZ_STOPPED, "%s", rname(o.r));
    ck_assert_uint_eq(o.len, 5000); /* every byte of the granted room was filled first */
    ck_assert_int_eq(memcmp(o.buf, t.p, 5000), 0);
    free(o.buf);
    /* one byte granted, then refused */
    src s2 = {.p = g.p, .n = g.n};
    sink k2 = {.limit = 1}; /* doubling wants 64: capped to 1 byte, then refused */
    o = run_with(&s2, &k2);
    ck_assert_msg(o.r == AG__GZ_STOPPED, "%s", rname(o.r));
    ck_assert_uint_eq(o.len, 1);
    ck_assert_uint_eq(o.buf[0], t.p[0]);
    free(o.buf);
    b_free(&t);
    b_free(&g);
}
END_TEST

static int refuse_all(void *ctx, unsigned char **buf, size_t *cap) {
    (void)buf;
    (void)cap;
    ++*(int *)ctx;
    return 1;
}

START_TEST(more_refuses_at_once) {
    bytes t = text_of(100, 6), g = gzip_prog(t.p, t.n, 6);
    src s = {.p = g.p, .n = g.n};
    int calls = 0;
    unsigned char *buf = NULL;
    size_t cap = 0, len = 99;
    ag__gz_result r = ag__gunzip(src_read, &s, refuse_all, &calls, &buf, &cap, &len, NULL, 0);
    ck_assert_msg(r == AG__GZ_STOPPED, "%s", rname(r));
    ck_assert_int_eq(calls, 1);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(buf);
    b_free(&t);
    b_free(&g);
}
END_TEST

/* read() failing at every position, with whole and 1-byte reads, and instead of the end. */
START_TEST(read_error_everywhere) {
    bytes t = text_of(ag_test_quick() ? 200 : 600, 7), g = gzip_prog(t.p, t.n, 6);
    for (int one = 0; one < 2; one++)
        for (size_t at = 0; at <= g.n; at++) {
            static const size_t c1[] = {1};
            src s = {.p = g.p, .n = g.n, .fail = 1, .fail_at = at, .chunks = one ? c1 : NULL, .nchunks = 1};
            sink k = {0};
            run_out o = run_with(&s, &k);
            ck_assert_msg(o.r == AG__GZ_READ_ERROR, "fail at %zu/%zu (1-byte %d): %s (%s)", at, g.n, one,
                          rname(o.r), o.why);
            free(o.buf);
        }
    b_free(&t);
    b_free(&g);
}
END_TEST

/* A header with the fields of flg (RFC 1952 section 2.3.1: FTEXT 1, FHCRC 2, FEXTRA 4 with xlen
 * bytes, FNAME 8, FCOMMENT 16), then the body and trailer of the gzip -n file g unchanged. */
static bytes with_header(const bytes *g, unsigned flg, size_t xlen) {
    bytes h = {0};
    static const unsigned char start[10] = {0x1f, 0x8b, 8, 0, 0x78, 0x56, 0x34, 0x12, 2, 3};
    b_add(&h, start, 10);
    h.p[3] = (unsigned char)flg;
    if (flg & 4) { /* FEXTRA: XLEN, then subfields SI1 SI2 LEN data */
        b_byte(&h, xlen & 255);
        b_byte(&h, xlen >> 8);
        size_t left = xlen;
        while (left >= 4) {
            size_t l = left - 4 > 1000 ? 1000 : left - 4;
            b_byte(&h, 'A');
            b_byte(&h, 'g');
            b_byte(&h, l & 255);
            b_byte(&h, l >> 8);
            for (size_t i = 0; i < l; i++) b_byte(&h, (unsigned)(i * 31 + 1));
            left -= 4 + l;
        }
        b_fill(&h, 0x1f, left); /* a stray tail: the decoder must only count XLEN */
    }
    if (flg & 8) b_add(&h, "train-images-idx3-ubyte", 24); /* FNAME, zero-terminated */
    if (flg & 16) b_add(&h, "a comment\nover two lines", 25); /* FCOMMENT */
    if (flg & 2) { /* FHCRC: low 16 bits of the CRC-32 of the header so far */
        uint32_t c = crc32_of(h.p, h.n, 0);
        b_byte(&h, c & 255);
        b_byte(&h, (c >> 8) & 255);
    }
    b_add(&h, g->p + 10, g->n - 10);
    return h;
}

START_TEST(header_fields) {
    bytes t = text_of(2000, 8), g = gzip_prog(t.p, t.n, 6);
    for (unsigned combo = 0; combo < 32; combo++) {
        unsigned flg = (combo & 1 ? 1u : 0) | (combo & 2 ? 2u : 0) | (combo & 4 ? 4u : 0) |
                       (combo & 8 ? 8u : 0) | (combo & 16 ? 16u : 0);
        bytes h = with_header(&g, flg, 37);
        char what[32];
        snprintf(what, sizeof what, "FLG %#x", flg);
        expect_ok(h.p, h.n, t.p, t.n, what);
        b_free(&h);
    }
    /* a wrong FHCRC (the header's CRC-16, RFC 1952 2.3.1): the decoder checks it */
    bytes bad = with_header(&g, 0x1f, 37);
    bad.p[bad.n - (g.n - 10) - 1] ^= 0x40;
    run_out ob = run_simple(bad.p, bad.n);
    ck_assert_msg(ob.r == AG__GZ_CORRUPT, "wrong FHCRC: %s", rname(ob.r));
    free(ob.buf);
    b_free(&bad);
    /* every field, 1-byte reads; and the longest extra field (in 13-byte reads under valgrind) */
    static const size_t c1[] = {1}, c13[] = {13};
    size_t xl[] = {0, 1, 2, 3, 4, 65535};
    for (int i = 0; i < 6; i++) {
        bytes h = with_header(&g, 0x1f, xl[i]);
        src s = {.p = h.p, .n = h.n, .chunks = xl[i] > 4 && ag_test_quick() ? c13 : c1, .nchunks = 1};
        sink k = {0};
        run_out o = run_with(&s, &k);
        expect_data(&o, t.p, t.n, "all fields, 1-byte reads");
        free(o.buf);
        b_free(&h);
    }
    b_free(&t);
    b_free(&g);
}
END_TEST

START_TEST(reserved_flags_and_method) {
    bytes t = text_of(500, 9), g = gzip_prog(t.p, t.n, 6);
    for (unsigned bit = 0x20; bit <= 0x80; bit <<= 1) {
        g.p[3] = (unsigned char)bit;
        expect_res(g.p, g.n, AG__GZ_CORRUPT, "reserved FLG bit");
    }
    g.p[3] = 0;
    static const unsigned cms[] = {0, 1, 7, 9, 15, 255};
    for (int i = 0; i < 6; i++) {
        g.p[2] = (unsigned char)cms[i];
        char what[32];
        snprintf(what, sizeof what, "CM %u", cms[i]);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, what);
    }
    b_free(&t);
    b_free(&g);
}
END_TEST

START_TEST(not_gzip) {
    bytes t = text_of(500, 10), g = gzip_prog(t.p, t.n, 6);
    expect_res(NULL, 0, AG__GZ_NOT_GZIP, "empty input");
    expect_res((const unsigned char *)"hello, world", 12, AG__GZ_NOT_GZIP, "text");
    expect_res((const unsigned char *)"\x1f\x8c\x08\x00\x00\x00\x00\x00\x00\x03", 10, AG__GZ_NOT_GZIP,
               "bad second magic byte");
    expect_res((const unsigned char *)"\x8b\x1f\x08\x00\x00\x00\x00\x00\x00\x03", 10, AG__GZ_NOT_GZIP,
               "swapped magic");
    expect_res((const unsigned char *)"PK\x03\x04\x14\x00\x00\x00\x08\x00", 10, AG__GZ_NOT_GZIP, "zip file");
    expect_res(g.p + 10, g.n - 10, AG__GZ_NOT_GZIP, "raw deflate");
    unsigned char z[64] = {0};
    expect_res(z, sizeof z, AG__GZ_NOT_GZIP, "zeros");
    unsigned char idx[16] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
    expect_res(idx, sizeof idx, AG__GZ_NOT_GZIP, "a raw IDX header");
    b_free(&t);
    b_free(&g);
}
END_TEST

/* Every proper prefix is refused: header, body, trailer cut anywhere. */
static void truncations(const bytes *g, const char *what) {
    for (size_t n = 0; n < g->n; n++) {
        run_out o = run_simple(g->p, n);
        int ok = n < 3 ? o.r == AG__GZ_NOT_GZIP || o.r == AG__GZ_CORRUPT : o.r == AG__GZ_CORRUPT;
        ck_assert_msg(ok, "%s cut to %zu of %zu: %s (%s)", what, n, g->n, rname(o.r), o.why);
        free(o.buf);
    }
}

START_TEST(every_truncation) {
    bytes t = text_of(400, 11), g = gzip_prog(t.p, t.n, 6);
    truncations(&g, "dynamic");
    rng_state = 12;
    bytes r = {0};
    gen_random(&r, 300);
    bytes gr = gzip_prog(r.p, r.n, 6);
    truncations(&gr, "stored");
    bytes gf = gzip_prog("abcabcabcabcabd", 15, 9);
    truncations(&gf, "fixed");
    bytes h = with_header(&gf, 0x1e, 9);
    truncations(&h, "all header fields");
    /* a second member cut short */
    bytes two = {0};
    b_add(&two, g.p, g.n);
    size_t first = two.n;
    b_add(&two, gf.p, gf.n);
    for (size_t n = first + 1; n < two.n; n++) {
        run_out o = run_simple(two.p, n);
        int ok = o.r == AG__GZ_CORRUPT || (n < first + 3 && o.r == AG__GZ_TRAILING);
        ck_assert_msg(ok, "second member cut to %zu: %s (%s)", n - first, rname(o.r), o.why);
        free(o.buf);
    }
    bytes *v[] = {&t, &g, &r, &gr, &gf, &h, &two};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) b_free(v[i]);
}
END_TEST

START_TEST(damaged_trailer) {
    bytes t = text_of(1000, 13), g = gzip_prog(t.p, t.n, 6);
    for (size_t i = g.n - 8; i < g.n; i++) {
        for (unsigned x = 1; x < 256; x <<= 7) { /* flip bit 0, then bit 7 */
            g.p[i] ^= (unsigned char)x;
            char what[48];
            snprintf(what, sizeof what, "%s byte %zu flipped", i < g.n - 4 ? "CRC" : "ISIZE", i - (g.n - 8));
            expect_res(g.p, g.n, AG__GZ_CORRUPT, what);
            g.p[i] ^= (unsigned char)x;
        }
    }
    expect_ok(g.p, g.n, t.p, t.n, "undamaged");
    b_free(&t);
    b_free(&g);
}
END_TEST

/* ==== DEFLATE bodies written by hand */

START_TEST(stored_blocks_valid) {
    rng_state = 14;
    bytes d = {0};
    gen_random(&d, 70000);
    bitw w = {0};
    stored_block(&w, 0, d.p, 0);          /* empty block */
    stored_block(&w, 0, d.p, 5);          /* short */
    stored_block(&w, 0, d.p + 5, 65535);  /* largest */
    fixed_hdr(&w, 0);                      /* a fixed block between, ending mid-byte */
    fix_sym(&w, d.p[65540]);
    fix_sym(&w, 256);
    stored_block(&w, 1, d.p + 65541, 4459); /* final; padding bits before LEN skipped */
    bytes g = gz_wrap(&w, d.p, d.n);
    expect_ok(g.p, g.n, d.p, d.n, "stored blocks");
    /* LEN = 0 alone is a whole stream */
    bitw e = {0};
    stored_block(&e, 1, NULL, 0);
    bytes ge = gz_wrap(&e, NULL, 0);
    expect_ok(ge.p, ge.n, NULL, 0, "one empty stored block");
    b_free(&d);
    b_free(&w.b);
    b_free(&g);
    b_free(&e.b);
    b_free(&ge);
}
END_TEST

START_TEST(stored_nlen_mismatch) {
    const unsigned char data[4] = {'a', 'b', 'c', 'd'};
    bitw w = {0};
    stored_block(&w, 1, data, 4);
    for (int k = 0; k < 2; k++) {
        /* body: 1 byte of block header, LEN (2), NLEN (2): flip one bit of NLEN */
        w.b.p[3 + k] ^= 0x10;
        bytes g = gz_wrap(&w, data, 4);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, "NLEN != ~LEN");
        w.b.p[3 + k] ^= 0x10;
        b_free(&g);
    }
    bytes g = gz_wrap(&w, data, 4);
    expect_ok(g.p, g.n, data, 4, "the unflipped block");
    b_free(&g);
    b_free(&w.b);
}
END_TEST

START_TEST(block_type_3) {
    static const unsigned char x = 'x';
    for (int after = 0; after < 2; after++) {
        bitw w = {0};
        if (after) { /* a valid fixed block, then the reserved type */
            fixed_hdr(&w, 0);
            fix_sym(&w, 'x');
            fix_sym(&w, 256);
        }
        put_bits(&w, 1, 1); /* BFINAL */
        put_bits(&w, 3, 2); /* BTYPE 11: reserved */
        put_bits(&w, 0, 16);
        bytes g = gz_wrap(&w, &x, (size_t)after);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, "block type 3");
        b_free(&g);
        b_free(&w.b);
    }
}
END_TEST

/* Fixed codes: literals of 8 and 9 bits, lengths with and without extra bits, distance 1 runs. */
START_TEST(fixed_block_valid) {
    bitw w = {0};
    bytes want = {0};
    fixed_hdr(&w, 1);
    const char *abc = "abc";
    for (int i = 0; i < 3; i++) fix_sym(&w, abc[i]);
    b_add(&want, "abcabcabca", 10);
    fix_match(&w, 7, 3); /* code 261, distance code 2 */
    fix_sym(&w, 0xFF);   /* a 9-bit literal */
    fix_sym(&w, 0x90);
    fix_sym(&w, 0x8F); /* the last 8-bit literal */
    b_add(&want, "\xff\x90\x8f", 3);
    fix_match(&w, 12, 5); /* code 265 + 1 extra bit; distance code 4 + 1 extra bit */
    b_add(&want, want.p + want.n - 5, 5);
    b_add(&want, want.p + want.n - 5, 5);
    b_add(&want, want.p + want.n - 5, 2);
    fix_sym(&w, 'x');
    fix_match(&w, 258, 1); /* code 285: 258 bytes, distance 1 */
    b_fill(&want, 'x', 259);
    fix_sym(&w, 256);
    align(&w);
    bytes g = gz_wrap(&w, want.p, want.n);
    expect_ok(g.p, g.n, want.p, want.n, "fixed block");
    b_free(&w.b);
    b_free(&want);
    b_free(&g);
}
END_TEST

/* Every length 3..258 and each distance code at its smallest and largest distance, up to 32768,
 * reaching back into a stored block: the expected output is built by copying byte by byte. */
START_TEST(fixed_all_lengths_and_distances) {
    rng_state = 15;
    bytes want = {0};
    gen_random(&want, 32768);
    bitw w = {0};
    stored_block(&w, 0, want.p, want.n);
    fixed_hdr(&w, 1);
    int nd = 0, dists[60];
    for (int j = 0; j < 30; j++) {
        dists[nd++] = dbase[j];
        dists[nd++] = dbase[j] + (1 << dext[j]) - 1; /* 32768 for code 29 */
    }
    for (int len = 3, i = 0; len <= 258; len++, i++) {
        int dist = dists[i % nd];
        fix_match(&w, len, dist);
        b_reserve(&want, (size_t)len);
        for (int k = 0; k < len; k++, want.n++) want.p[want.n] = want.p[want.n - (size_t)dist];
        fix_sym(&w, i & 255); /* and every literal value */
        b_byte(&want, (unsigned)(i & 255));
    }
    fix_sym(&w, 256);
    bytes g = gz_wrap(&w, want.p, want.n);
    expect_ok(g.p, g.n, want.p, want.n, "all lengths and distances");
    /* the same with the output grown 1000 bytes at a time and always moved */
    src s = {.p = g.p, .n = g.n};
    sink k = {.step = 1000, .move = 1};
    run_out o = run_with(&s, &k);
    expect_data(&o, want.p, want.n, "all lengths and distances, moving buffer");
    free(o.buf);
    b_free(&want);
    b_free(&w.b);
    b_free(&g);
}
END_TEST

START_TEST(fixed_invalid_codes) {
    static const unsigned char aaaa[4] = {'a', 'a', 'a', 'a'};
    for (int c = 0; c < 4; c++) {
        bitw w = {0};
        fixed_hdr(&w, 1);
        fix_sym(&w, 'a');
        if (c < 2) {
            fix_sym(&w, 286 + c); /* lit/len 286, 287: have codes, never valid */
        } else {
            fix_sym(&w, 257);            /* length 3 */
            put_huff(&w, 30u + (unsigned)c - 2, 5); /* distance code 30, 31 */
        }
        fix_sym(&w, 256);
        put_bits(&w, 0, 16);
        bytes g = gz_wrap(&w, aaaa, 4);
        char what[48];
        snprintf(what, sizeof what, c < 2 ? "lit/len code %d" : "distance code %d", c < 2 ? 286 + c : 28 + c);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, what);
        b_free(&g);
        b_free(&w.b);
    }
}
END_TEST

START_TEST(distance_too_far_back) {
    struct {
        int lits, dist;
    } cases[] = {{0, 1}, {1, 2}, {5, 6}, {5, 300}};
    for (int i = 0; i < 4; i++) {
        bitw w = {0};
        fixed_hdr(&w, 1);
        for (int k = 0; k < cases[i].lits; k++) fix_sym(&w, 'q');
        fix_match(&w, 3, cases[i].dist);
        fix_sym(&w, 256);
        bytes g = gz_wrap(&w, (const unsigned char *)"qqqqqqqq", (size_t)cases[i].lits + 3);
        char what[48];
        snprintf(what, sizeof what, "distance %d after %d bytes", cases[i].dist, cases[i].lits);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, what);
        b_free(&g);
        b_free(&w.b);
    }
    /* distance == bytes so far is fine */
    bitw w = {0};
    fixed_hdr(&w, 1);
    for (int k = 0; k < 5; k++) fix_sym(&w, 'a' + k);
    fix_match(&w, 4, 5);
    fix_sym(&w, 256);
    bytes g = gz_wrap(&w, (const unsigned char *)"abcdeabcd", 9);
    expect_ok(g.p, g.n, (const unsigned char *)"abcdeabcd", 9, "distance back to the first byte");
    b_free(&g);
    b_free(&w.b);
}
END_TEST

/* The dynamic block used below, "ababa": literal/length code lengths 2 for 'a', 'b', 256 and 257
 * (HLIT 258), distance code lengths 1 and 1 (HDIST 2); data a, b, <3, 2>, end. */
typedef struct dyn {
    unsigned char lens[320]; /* HLIT + HDIST code lengths */
    int hlit, hdist;
    clop ops[330];
    int nops;
    unsigned char cl[19];
} dyn;

static void dyn_ababa(dyn *d) {
    memset(d, 0, sizeof *d);
    d->hlit = 258;
    d->hdist = 2;
    d->lens['a'] = d->lens['b'] = d->lens[256] = d->lens[257] = 2;
    d->lens[258] = d->lens[259] = 1;
    d->nops = rle_lens(d->lens, d->hlit + d->hdist, d->ops);
    default_cl(d->cl);
}

/* Header from d, then the symbols syms (literal/length; a length symbol is followed by its
 * distance code, given as the next entry). */
static bytes dyn_stream(const dyn *d, const int *syms, int nsyms, const unsigned char *out, size_t outlen) {
    bitw w = {0};
    dyn_hdr(&w, 1, d->hlit, d->hdist, d->cl, d->ops, d->nops);
    uint32_t lc[320], dc[32];
    canon(d->lens, d->hlit, lc);
    canon(d->lens + d->hlit, d->hdist, dc);
    for (int i = 0; i < nsyms; i++) {
        int s = syms[i];
        put_huff(&w, lc[s], d->lens[s]);
        if (s > 256) { /* lengths here have no extra bits (257..264), nor distances (codes 0..3) */
            int dcode = syms[++i];
            put_huff(&w, dc[dcode], d->lens[d->hlit + dcode]);
        }
    }
    bytes g = gz_wrap(&w, out, outlen);
    b_free(&w.b);
    return g;
}

static const int ababa_syms[] = {'a', 'b', 257, 1, 256};

START_TEST(dynamic_block_valid) {
    dyn d;
    dyn_ababa(&d);
    bytes g = dyn_stream(&d, ababa_syms, 5, (const unsigned char *)"ababa", 5);
    expect_ok(g.p, g.n, (const unsigned char *)"ababa", 5, "dynamic ababa");
    b_free(&g);

    /* RFC 1951 3.2.7: one distance code of one bit (the other code unused) is allowed */
    dyn_ababa(&d);
    d.hdist = 1;
    d.lens[259] = 0;
    d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
    static const int s1[] = {'a', 'b', 257, 0, 256};
    g = dyn_stream(&d, s1, 5, (const unsigned char *)"abbbb", 5);
    expect_ok(g.p, g.n, (const unsigned char *)"abbbb", 5, "one distance code");
    b_free(&g);

    /* ... and one distance code of zero bits means literals only */
    d.lens[258] = 0;
    d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
    static const int s2[] = {'b', 'a', 'b', 256};
    g = dyn_stream(&d, s2, 4, (const unsigned char *)"bab", 3);
    expect_ok(g.p, g.n, (const unsigned char *)"bab", 3, "no distance codes");
    b_free(&g);

    /* repeat code 16 after a length, and a code-length code of only the symbols used
     * (0, 2, 3: 3, 2, 2 bits; 16: 3 bits; 18: 2 bits; complete). Code lengths: a 2, b..e 3,
     * 256 2 (2/4 + 4/8 = 1); HLIT 257, one distance code of zero bits. */
    memset(&d, 0, sizeof d);
    d.hlit = 257;
    d.hdist = 1;
    d.lens['a'] = d.lens[256] = 2;
    d.lens['b'] = d.lens['c'] = d.lens['d'] = d.lens['e'] = 3;
    d.cl[0] = 3;
    d.cl[2] = 2;
    d.cl[3] = 2;
    d.cl[16] = 3;
    d.cl[18] = 2;
    int k = 0;
    d.ops[k++] = (clop){18, 97 - 11}; /* 0..96 */
    d.ops[k++] = (clop){2, 0};        /* a */
    d.ops[k++] = (clop){3, 0};        /* b */
    d.ops[k++] = (clop){16, 0};       /* c d e: b's 3, three times */
    d.ops[k++] = (clop){18, 127};     /* 102..239 */
    d.ops[k++] = (clop){18, 16 - 11}; /* 240..255 */
    d.ops[k++] = (clop){2, 0};        /* 256 */
    d.ops[k++] = (clop){0, 0};        /* the distance code */
    d.nops = k;
    static const int s3[] = {'d', 'a', 'b', 'e', 'c', 256};
    g = dyn_stream(&d, s3, 6, (const unsigned char *)"dabec", 5);
    expect_ok(g.p, g.n, (const unsigned char *)"dabec", 5, "repeat code 16, sparse code-length code");
    b_free(&g);
}
END_TEST

START_TEST(dynamic_block_invalid) {
    dyn d;
    const unsigned char *out = (const unsigned char *)"ababa";
    /* 1. over-subscribed literal/length code: five codes of 2 bits */
    dyn_ababa(&d);
    d.lens['c'] = 2;
    d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
    bytes g = dyn_stream(&d, ababa_syms, 5, out, 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "over-subscribed literal/length code");
    b_free(&g);

    /* 2. over-subscribed code-length code: 19 codes of 4 bits */
    dyn_ababa(&d);
    memset(d.cl, 4, sizeof d.cl);
    g = dyn_stream(&d, ababa_syms, 5, out, 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "over-subscribed code-length code");
    b_free(&g);

    /* 3. over-subscribed distance code: three codes of 1 bit */
    dyn_ababa(&d);
    d.hdist = 3;
    d.lens[260] = 1;
    d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
    g = dyn_stream(&d, ababa_syms, 5, out, 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "over-subscribed distance code");
    b_free(&g);

    /* 4. repeat code 16 first: nothing to repeat. The 97 leading zeros are written as 16 (3) +
     * 18 (94), so a decoder that repeated "0" would count right and see a valid block. */
    dyn_ababa(&d);
    ck_assert_int_eq(d.ops[0].sym, 18);
    memmove(d.ops + 1, d.ops, (size_t)d.nops * sizeof *d.ops);
    d.nops++;
    d.ops[0] = (clop){16, 0};
    d.ops[1] = (clop){18, 94 - 11};
    g = dyn_stream(&d, ababa_syms, 5, out, 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "repeat code 16 first");
    b_free(&g);

    /* 5. code lengths overrun HLIT + HDIST = 260, three ways; a decoder that clamped the run
     * would read a valid block each time */
    dyn_ababa(&d); /* ..., 257: 2, then dist: 1 and 16 (repeat 1 three times): 263 lengths */
    ck_assert_int_eq(d.ops[d.nops - 1].sym, 1);
    d.ops[d.nops - 1] = (clop){16, 0};
    g = dyn_stream(&d, ababa_syms, 5, out, 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "code lengths overrun by 16");
    b_free(&g);

    dyn_ababa(&d); /* dist: 1, then 17 (3 zeros): 263; clamped: one distance code, 1 bit */
    d.ops[d.nops - 1] = (clop){17, 0};
    static const int s17[] = {'a', 'b', 257, 0, 256};
    g = dyn_stream(&d, s17, 5, (const unsigned char *)"abbbb", 5);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "code lengths overrun by 17");
    b_free(&g);

    dyn_ababa(&d); /* dist: 18 (11 zeros) alone: 269; clamped: no distance codes */
    d.nops--;
    d.ops[d.nops - 1] = (clop){18, 0};
    static const int s18[] = {'a', 'b', 256};
    g = dyn_stream(&d, s18, 3, (const unsigned char *)"ab", 2);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "code lengths overrun by 18");
    b_free(&g);

    /* 6. no end-of-block code: 256 has length 0 (258 takes its place); the block cannot end */
    dyn_ababa(&d);
    d.hlit = 259;
    d.lens[258] = 2; /* shifts the distance lengths: rebuild them */
    d.lens[256] = 0;
    d.lens[259] = d.lens[260] = 1;
    d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
    static const int snoeob[] = {'a', 'b'};
    g = dyn_stream(&d, snoeob, 2, (const unsigned char *)"ab", 2);
    expect_res(g.p, g.n, AG__GZ_CORRUPT, "no end-of-block code");
    b_free(&g);

    /* 7. HLIT 287 / 288 and HDIST 31 / 32: codes that cannot occur; zlib and gzip refuse them
     * even with length 0 */
    for (int c = 0; c < 4; c++) {
        dyn_ababa(&d);
        memset(d.lens + 258, 0, sizeof d.lens - 258);
        if (c < 2) d.hlit = 287 + c;
        else d.hdist = 31 + c - 2;
        d.lens[d.hlit] = d.lens[d.hlit + 1] = 1;
        d.nops = rle_lens(d.lens, d.hlit + d.hdist, d.ops);
        g = dyn_stream(&d, ababa_syms, 5, out, 5);
        char what[32];
        snprintf(what, sizeof what, c < 2 ? "HLIT %d" : "HDIST %d", c < 2 ? d.hlit : d.hdist);
        expect_res(g.p, g.n, AG__GZ_CORRUPT, what);
        b_free(&g);
    }
}
END_TEST

/* `why` is cut to whysize (terminated, nothing written past it) and may be NULL. */
START_TEST(why_buffer_bounds) {
    char why[32];
    memset(why, '#', sizeof why);
    src s = {.p = (const unsigned char *)"not gzip at all", .n = 15};
    sink k = {0};
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    ag__gz_result r = ag__gunzip(src_read, &s, sink_more, &k, &buf, &cap, &len, why, 4);
    ck_assert_int_eq(r, AG__GZ_NOT_GZIP);
    ck_assert_uint_le(strlen(why), 3);
    ck_assert_uint_gt(strlen(why), 0);
    for (size_t i = 4; i < sizeof why; i++) ck_assert_int_eq(why[i], '#');
    free(buf);
    s.pos = 0;
    buf = NULL;
    cap = 0;
    r = ag__gunzip(src_read, &s, sink_more, &k, &buf, &cap, &len, NULL, 0);
    ck_assert_int_eq(r, AG__GZ_NOT_GZIP);
    free(buf);
}
END_TEST

/* The decoder's own allocations failing one by one: NOMEM, nothing leaked. */
START_TEST(out_of_memory) {
    bytes t = text_of(3000, 16), g = gzip_prog(t.p, t.n, 6);
    ag_test_alloc_install();
    src s = {.p = g.p, .n = g.n};
    sink k = {0};
    run_out o = run_with(&s, &k);
    size_t calls = ag_test_alloc_count();
    expect_data(&o, t.p, t.n, "counting allocator");
    free(o.buf);
    ck_assert_uint_eq(ag_test_alloc_live(), 0);
    ck_assert_uint_ge(calls, 1);
    for (size_t n = 1; n <= calls; n++) {
        ag_test_alloc_fail_at(n);
        src s2 = {.p = g.p, .n = g.n};
        sink k2 = {0};
        o = run_with(&s2, &k2);
        ck_assert_msg(o.r == AG__GZ_NOMEM, "allocation %zu failed: %s", n, rname(o.r));
        free(o.buf);
        ck_assert_uint_eq(ag_test_alloc_live(), 0);
    }
    ag_test_alloc_uninstall();
    b_free(&t);
    b_free(&g);
}
END_TEST

/* tests/io/fuzz/corpus/gunzip (fuzz_gunzip's seeds and any crash it saved there) through the decoder,
 * without zlib: only that each input ends in a result, with len <= cap and the buffers intact
 * (ASan and valgrind watch). The mode byte as in fuzz_gunzip.c: bit 0 set wraps the payload, raw
 * DEFLATE, in a gzip header and a zero trailer (a CRC mismatch at the end, after the whole body has
 * been decoded); bits 1-2 pick the read size. */
START_TEST(fuzz_corpus_replay) {
    const char *root = getenv("AG_SOURCE_DIR");
    char path[1200];
    snprintf(path, sizeof path, "%s/tests/io/fuzz/corpus/gunzip", root ? root : ".");
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "cannot open %s", path);
    static const size_t reads[4] = {0, 1, 7, 509};
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char fp[1500];
        snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
        FILE *f = fopen(fp, "rb");
        ck_assert_ptr_nonnull(f);
        bytes in = {0};
        unsigned char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) b_add(&in, chunk, got);
        fclose(f);
        if (in.n == 0) continue;
        bytes g = {0};
        if (in.p[0] & 1) {
            static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
            b_add(&g, head, sizeof head);
            b_add(&g, in.p + 1, in.n - 1);
            b_fill(&g, 0, 8);
        } else {
            b_add(&g, in.p + 1, in.n - 1);
        }
        size_t rs = reads[(in.p[0] >> 1) & 3];
        src sr = {.p = g.p, .n = g.n, .chunks = rs ? &rs : NULL, .nchunks = 1};
        sink k = {.limit = (size_t)1 << 20};
        run_out o = run_with(&sr, &k);
        free(o.buf);
        b_free(&g);
        b_free(&in);
        files++;
    }
    closedir(d);
    ck_assert_uint_ge(files, 5);
}
END_TEST

static Suite *gunzip_suite(void) {
    Suite *s = suite_create("gunzip");
    TCase *tc = tcase_create("gunzip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, gzip_levels_and_data, 0, K_KINDS * 3);
    tcase_add_test(tc, concatenated_members);
    tcase_add_test(tc, distance_into_previous_member);
    tcase_add_test(tc, zero_padding_accepted);
    tcase_add_test(tc, trailing_bytes_refused);
    tcase_add_test(tc, tiny_and_odd_reads);
    tcase_add_test(tc, tiny_output_growth);
    tcase_add_test(tc, caller_buffer_and_exact_fit);
    tcase_add_test(tc, more_refuses_stops);
    tcase_add_test(tc, more_refuses_at_once);
    tcase_add_test(tc, read_error_everywhere);
    tcase_add_test(tc, header_fields);
    tcase_add_test(tc, reserved_flags_and_method);
    tcase_add_test(tc, not_gzip);
    tcase_add_test(tc, every_truncation);
    tcase_add_test(tc, damaged_trailer);
    tcase_add_test(tc, stored_blocks_valid);
    tcase_add_test(tc, stored_nlen_mismatch);
    tcase_add_test(tc, block_type_3);
    tcase_add_test(tc, fixed_block_valid);
    tcase_add_test(tc, fixed_all_lengths_and_distances);
    tcase_add_test(tc, fixed_invalid_codes);
    tcase_add_test(tc, distance_too_far_back);
    tcase_add_test(tc, dynamic_block_valid);
    tcase_add_test(tc, dynamic_block_invalid);
    tcase_add_test(tc, why_buffer_bounds);
    tcase_add_test(tc, out_of_memory);
    tcase_add_test(tc, fuzz_corpus_replay);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(gunzip_suite)

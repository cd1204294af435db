/*
 * fashion_mnist_synth.c - writes a tiny synthetic Fashion-MNIST-shaped data set (IDX files) for
 * the example's integration test: 256 training and 64 test images of 28x28, 10 classes, class c
 * drawn as a bright horizontal band at rows 2c+4..2c+6 over deterministic noise.
 *
 *     fashion_mnist_synth DIR     (train files gzipped when gzip is available, test files raw)
 *
 * and damages model files for the tests of metadata checks: the value of one metadata entry is
 * replaced, or the key of one renamed (the data section and its CRC are kept and the header's CRC,
 * if any, recomputed, so the file stays a sound safetensors file):
 *
 *     fashion_mnist_synth --set-meta IN OUT KEY VALUE
 *     fashion_mnist_synth --rename-meta IN OUT KEY NEWKEY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long lcg = 12345;
static unsigned rnd(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(lcg >> 33);
}

static void put32(FILE *f, unsigned v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int write_set(const char *dir, const char *prefix, unsigned n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(p, "wb");
    if (!fi || !fl) return perror(p), 1;
    put32(fi, 0x803), put32(fi, n), put32(fi, 28), put32(fi, 28);
    put32(fl, 0x801), put32(fl, n);
    for (unsigned i = 0; i < n; i++) {
        unsigned c = rnd() % 10;
        unsigned char img[784];
        for (int k = 0; k < 784; k++) {
            int row = k / 28;
            unsigned v = rnd() % 90;
            if (row >= (int)(2 * c + 4) && row < (int)(2 * c + 7)) v += 140;
            img[k] = (unsigned char)v;
        }
        fwrite(img, 1, 784, fi);
        fputc((int)c, fl);
    }
    return fclose(fi) | fclose(fl);
}

/* CRC-32 (IEEE), bit by bit: enough for one header */
static unsigned long crc32_of(unsigned long crc, const unsigned char *p, size_t n) {
    crc = ~crc & 0xffffffffUL;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xedb88320UL : crc >> 1;
    }
    return ~crc & 0xffffffffUL;
}

/* A header that carries "header_crc32" (tapegrad's files since the checkpoint library) gets it
 * recomputed, so that the edited file stays sound: the CRC of the 8 length bytes and the JSON
 * with its own 8 digits read as '0'. */
static void fix_header_crc(unsigned char *file, size_t total) {
    char *at = strstr((char *)file + 8, "\"header_crc32\":\"0x");
    if (!at || (size_t)(at - (char *)file) + 26 > total) return;
    char *hex = at + 18;
    memset(hex, '0', 8);
    char digits[9];
    snprintf(digits, sizeof digits, "%08lx", crc32_of(0, file, total));
    memcpy(hex, digits, 8);
}

/* In the JSON header of IN, "KEY":"old" becomes "KEY":"VALUE" (rename 0) or "KEY":"old" becomes
 * "VALUE":"old" (rename 1), written to OUT (strings without escapes). */
static int edit_meta(const char *in, const char *out, const char *key, const char *value, int rename) {
    FILE *f = fopen(in, "rb");
    if (!f) return perror(in), 1;
    static unsigned char buf[1 << 24];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unsigned long long n = 0;
    for (int i = 7; i >= 0 && len >= 8; i--) n = n << 8 | buf[i];
    if (len < 8 || n > len - 8) return fprintf(stderr, "%s: not a safetensors file\n", in), 1;
    size_t data = 8 + (size_t)n; /* the data section follows the header */
    char *hdr = malloc(n + 1), needle[256];
    if (!hdr) return 1;
    memcpy(hdr, buf + 8, n);
    hdr[n] = '\0';
    while (n && hdr[n - 1] == ' ') hdr[--n] = '\0';
    snprintf(needle, sizeof needle, "\"%s\":\"", key);
    char *at = strstr(hdr, needle), *end = at ? strchr(at + strlen(needle), '"') : NULL;
    if (!end) return fprintf(stderr, "%s: no metadata entry %s\n", in, key), free(hdr), 1;
    if (rename) end = at + strlen(needle) - 3; /* keep from the key's closing quote on */
    size_t pre = (size_t)(at - hdr) + (rename ? 1 : strlen(needle)), nn = pre + strlen(value) + strlen(end);
    size_t padded = (nn + 7) / 8 * 8;
    unsigned char *o = malloc(8 + padded);
    if (!o) return free(hdr), 1;
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((padded >> (8 * i)) & 0xff);
    memcpy(o + 8, hdr, pre);
    memcpy(o + 8 + pre, value, strlen(value));
    memcpy(o + 8 + pre + strlen(value), end, strlen(end));
    memset(o + 8 + nn, ' ', padded - nn);
    fix_header_crc(o, 8 + padded);
    FILE *of = fopen(out, "wb");
    if (!of) return perror(out), free(hdr), free(o), 1;
    fwrite(o, 1, 8 + padded, of);
    fwrite(buf + data, 1, len - data, of);
    free(hdr);
    free(o);
    return fclose(of) != 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "--set-meta") == 0) return edit_meta(argv[2], argv[3], argv[4], argv[5], 0);
    if (argc == 6 && strcmp(argv[1], "--rename-meta") == 0) return edit_meta(argv[2], argv[3], argv[4], argv[5], 1);
    if (argc != 2) {
        fprintf(stderr, "usage: fashion_mnist_synth DIR | --set-meta IN OUT KEY VALUE | --rename-meta IN OUT KEY NEWKEY\n");
        return 2;
    }
    if (write_set(argv[1], "train", 256) || write_set(argv[1], "t10k", 64)) return 1;
    return 0;
}

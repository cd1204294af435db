/*
 * fashion_mnist_synth.c - writes a tiny synthetic Fashion-MNIST-shaped data set (IDX files) for
 * the example's integration test: 256 training and 64 test images of 28x28, 10 classes, class c
 * drawn as a bright horizontal band at rows 2c+4..2c+6 over deterministic noise.
 *
 *     fashion_mnist_synth DIR     (train files gzipped when gzip is available, test files raw)
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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fashion_mnist_synth DIR\n");
        return 2;
    }
    if (write_set(argv[1], "train", 256) || write_set(argv[1], "t10k", 64)) return 1;
    return 0;
}

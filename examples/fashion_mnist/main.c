/*
 * fashion_mnist - train an MLP on Fashion-MNIST end to end: IDX loading, mini-batch training on
 * the tape, per-epoch evaluation, metrics CSV and SVG plot, atomic checkpoints with bit-identical
 * resume, model files in the safetensors layout, and evaluation of a saved model.
 *
 *     build/examples/fashion_mnist                    # the default preset (modern)
 *     build/examples/fashion_mnist --preset seed      # the seed's network and cost
 *     build/examples/fashion_mnist --eval fashion_mnist.safetensors
 *     build/examples/fashion_mnist --resume fashion_mnist.ckpt.safetensors
 *
 * Run with --help for every flag. The data set is Debian's dataset-fashion-mnist. This file is the
 * outline; fm.h says which file holds what.
 */
#include <stdio.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "fm.h"

/* FTZ/DAZ before the thread pool starts (workers inherit the MXCSR), as bench_train and the torch
 * twins do: momentum buffers decay into denormals, which cost x86 a microcode assist per operation.
 * Deterministic, so same-seed and resumed runs stay bit-identical. Returns 1 when set. */
static int flush_denormals(const cfg *c) {
#if defined(__SSE__)
    if (!c->no_flush_denormal) {
        _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
        return 1;
    }
#else
    (void)c;
#endif
    return 0;
}

int main(int argc, char **argv) {
    static run r; /* ~10 KiB of settings and paths, zeroed */
    cfg_defaults(&r.c);
    if (parse_args(&r.c, argc, argv, 0, r.given) != 0 || parse_args(&r.c, argc, argv, 1, r.given) != 0)
        return EXIT_USAGE;
    dist_start(&r, &argc, &argv); /* --dist: MPI_Init; rank > 0 is silent */
    r.flushed = flush_denormals(&r.c);
    install_counting_allocator();
    if (ag_set_threads((int)r.c.threads) != AG_OK) fail(EXIT_USAGE, "--threads %ld is invalid", r.c.threads);
    setvbuf(stdout, NULL, _IOLBF, 0);
    check_mode(&r.c, r.given);
    if (r.c.eval[0] && r.dist) fail(EXIT_USAGE, "--eval evaluates in one process: drop --dist and --dist-shards");
    if (r.c.eval[0]) return run_eval(&r.c);

    /* --resume: settings from the checkpoint, then the flags given explicitly */
    if (r.c.resume[0]) resume_settings(&r);
    check_settings(&r.c, r.given, r.from_ck);
    resume_counters(&r);
    dist_outputs(&r);
    check_outputs(&r.c, r.given);
    catch_signals();

    load_data(&r);
    setup_training(&r);
    print_header(&r);
    dist_agree(&r);
    train(&r);
    if (!r.blown && !r.interrupted) finish_training(&r);
    run_free(&r);
    int rc = finish(r.interrupted ? 128 + r.interrupted : r.blown ? EXIT_NUMERIC : 0);
    fm_dist = NULL;
    ag_dist_finalize(r.dist);
    return rc;
}

/*
 * svg.h - a small SVG writer for training curves: two panels, loss (train and test) and test
 * accuracy, against the epoch. No dependencies; written to a temporary file and renamed.
 */
#ifndef FM_SVG_H
#define FM_SVG_H

#include <stddef.h>

/* n points (epochs 1..n). Returns 0, or -1 with errno set. */
int svg_write_curves(const char *path, const char *title, size_t n, const double *train_loss,
                     const double *test_loss, const double *test_acc);

#endif

/*
 * svg.c - training curves as SVG (see svg.h).
 */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define W 900
#define H 380
#define PW 380 /* panel plot area */
#define PH 260

static void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

/* A "nice" axis step for the range. */
static double nice_step(double range, int ticks) {
    double raw = range / ticks, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

static void panel(FILE *f, int x0, int y0, const char *label, size_t n, const double *a, const char *a_name,
                  const char *a_color, const double *b, const char *b_name, const char *b_color, int percent) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (a && isfinite(a[i])) lo = fmin(lo, a[i]), hi = fmax(hi, a[i]);
        if (b && isfinite(b[i])) lo = fmin(lo, b[i]), hi = fmax(hi, b[i]);
    }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    /* values a few ulps apart at a large magnitude (where +-0.5 may not even change them): widen
     * to a range the doubles resolve, else the ticks below could be smaller than an ulp of lo */
    const double mag = fmax(fabs(lo), fabs(hi));
    if (!(hi - lo >= 1e-12 * mag)) lo -= 1e-9 * mag, hi += 1e-9 * mag;
    double step = nice_step(hi - lo, 5);
    lo = floor(lo / step) * step;
    hi = ceil(hi / step) * step;
    fprintf(f, "<g transform=\"translate(%d,%d)\">\n", x0, y0);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#999\"/>\n", PW, PH);
    fprintf(f, "<text x=\"%d\" y=\"-10\" text-anchor=\"middle\" font-size=\"14\">", PW / 2);
    esc(f, label);
    fputs("</text>\n", f);
    /* an integer count of ticks: v += step stops advancing once step is below half an ulp of v */
    const double q = (hi - lo) / step;
    const int ticks = q >= 0 && q <= 100 ? (int)lround(q) : 0;
    for (int k = 0; k <= ticks; k++) {
        const double v = lo + k * step;
        double y = PH - (v - lo) / (hi - lo) * PH;
        fprintf(f, "<line x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", PW, y, y);
        if (percent) fprintf(f, "<text x=\"-6\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%.4g%%</text>\n", y + 4, v * 100);
        else fprintf(f, "<text x=\"-6\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%.4g</text>\n", y + 4, v);
    }
    size_t xstep = n <= 10 ? 1 : (n + 9) / 10;
    for (size_t e = 1; e <= n; e += xstep) {
        double x = n > 1 ? (double)(e - 1) / (double)(n - 1) * PW : PW / 2.0;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\">%zu</text>\n", x, PH + 16, e);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n", PW / 2, PH + 34);
    const double *series[2] = {a, b};
    const char *names[2] = {a_name, b_name}, *colors[2] = {a_color, b_color};
    for (int s = 0; s < 2; s++) {
        if (!series[s]) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(series[s][i])) continue;
            double x = n > 1 ? (double)i / (double)(n - 1) * PW : PW / 2.0;
            double y = PH - (series[s][i] - lo) / (hi - lo) * PH;
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fputs("\"/>\n", f);
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(series[s][i])) continue;
            double x = n > 1 ? (double)i / (double)(n - 1) * PW : PW / 2.0;
            double y = PH - (series[s][i] - lo) / (hi - lo) * PH;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", x, y, colors[s]);
        }
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/>", PW - 110, 12 + 16 * s, colors[s]);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\">", PW - 94, 17 + 16 * s);
        esc(f, names[s]);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
}

int svg_write_curves(const char *path, const char *title, size_t n, const double *train_loss,
                     const double *test_loss, const double *test_acc) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 32);
    if (!tmp) return -1;
    snprintf(tmp, len + 32, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(tmp);
        return -1;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
    esc(f, title);
    fputs("</text>\n", f);
    panel(f, 70, 60, "loss", n, train_loss, "train", "#1f77b4", test_loss, "test", "#ff7f0e", 0);
    panel(f, 500, 60, "test accuracy", n, test_acc, "test", "#2ca02c", NULL, NULL, NULL, 1);
    fputs("</svg>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        errno = e ? e : EIO;
        return -1;
    }
    free(tmp);
    return 0;
}

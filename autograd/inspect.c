/*
 * inspect.c - looking at tensors and tapes: ag_stats_of, ag_tensor_print, ag_tape_dump and the
 * Graphviz export ag_tape_write_dot.
 *
 * The tape keeps its nodes as a list running newest first (t->last, n->prev), which is what
 * backward wants. People read a graph oldest first, and an edge names its input by creation
 * index, so the dump and the DOT writer build a small temporary index: the nodes in creation
 * order, the same nodes sorted by address (to map an input pointer to its index), and the
 * distinct parameters the tape used, numbered by first use. Nothing printed depends on an
 * address, so the same graph always gives the same bytes.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- stats */

ag_stats ag_stats_of(const ag_real *x, size_t n) {
    ag_stats s = {0};
    s.n = n;
    if (!x) return s;
    size_t m = 0; /* finite values */
    double sum = 0, sumsq = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i];
        if (v != v) {
            s.n_nan++;
            continue;
        }
        if (isinf(v)) {
            s.n_inf++;
            continue;
        }
        if (m == 0 || v < s.min) s.min = v;
        if (m == 0 || v > s.max) s.max = v;
        sum += v;
        sumsq += v * v;
        m++;
    }
    if (m == 0) return s;
    s.mean = sum / (double)m;
    s.norm = sqrt(sumsq);
    /* second pass around the mean: sumsq/m - mean^2 cancels badly when |mean| >> std */
    double dev = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i];
        if (v - v == 0) dev += (v - s.mean) * (v - s.mean); /* finite only: inf - inf is NaN */
    }
    s.std = sqrt(dev / (double)m);
    return s;
}

/* ---------------------------------------------------------------- ag_tensor_print */

/* Values are elided NumPy-style: a dimension longer than PRINT_MAX shows its first and last
 * PRINT_EDGE entries around "...". Each shown value is printf %g, right-aligned to the widest. */
#define PRINT_MAX 6
#define PRINT_EDGE 3

typedef struct {
    FILE *f;           /* NULL while measuring */
    const ag_real *v;
    const size_t *shape;
    int ndim;
    size_t stride[AG_MAX_DIMS];
    int width;         /* widest shown value */
} printer;

static void print_value(printer *p, ag_real v) {
    char buf[40];
    /* NaN by hand: printf shows its sign bit ("-nan" on glibc), which no one means */
    int w = v != v ? snprintf(buf, sizeof buf, "nan") : snprintf(buf, sizeof buf, "%g", (double)v);
    if (!p->f) {
        if (w > p->width) p->width = w;
        return;
    }
    fprintf(p->f, "%*s", p->width, buf);
}

/* Dimension d of the block starting at element off: "[a b c]" for the last dimension, else the
 * sub-blocks separated by newlines (a blank line between 2-D blocks of a 3-D tensor, as NumPy). */
static void print_dim(printer *p, int d, size_t off) {
    size_t n = p->shape[d];
    if (p->f) fputc('[', p->f);
    for (size_t i = 0; i < n; i++) {
        if (n > PRINT_MAX && i == PRINT_EDGE) {
            i = n - PRINT_EDGE; /* the elided middle */
            if (p->f) {
                if (d == p->ndim - 1) {
                    fputs(" ...", p->f);
                } else {
                    fputs("...", p->f);
                    for (int k = d; k < p->ndim - 1; k++) fputc('\n', p->f);
                    fprintf(p->f, "%*s", d + 1, "");
                }
            }
        }
        if (d == p->ndim - 1) {
            if (p->f && i > 0) fputc(' ', p->f);
            print_value(p, p->v[off + i]);
        } else {
            print_dim(p, d + 1, off + i * p->stride[d]);
            if (p->f && i + 1 < n) {
                for (int k = d; k < p->ndim - 1; k++) fputc('\n', p->f);
                fprintf(p->f, "%*s", d + 1, "");
            }
        }
    }
    if (p->f) fputc(']', p->f);
}

static void print_values(FILE *f, const char *label, const char *what, const ag_tensor *x,
                         const ag_real *v) {
    char s[96];
    fprintf(f, "%s%s: %s %s", label, what, ag_shape_str(x, s, sizeof s), AG_REAL_NAME);
    if (!what[0]) { /* flags belong to the tensor, not its gradient */
        static const struct { unsigned bit; const char *name; } names[] = {
            {AG_REQUIRES_GRAD, "requires_grad"}, {AG_PARAM, "param"}, {AG_DECAY, "decay"},
            {AG_BORROWED, "borrowed"}};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (x->flags & names[i].bit) fprintf(f, " %s", names[i].name);
    }
    fputc('\n', f);
    if (!v) {
        fputs("(no values)\n", f);
        return;
    }
    printer p = {NULL, v, x->shape, x->ndim, {0}, 0};
    if (x->ndim == 0) {
        print_value(&p, v[0]);
        p.f = f;
        print_value(&p, v[0]);
    } else {
        p.stride[x->ndim - 1] = 1;
        for (int d = x->ndim - 2; d >= 0; d--) p.stride[d] = p.stride[d + 1] * x->shape[d + 1];
        print_dim(&p, 0, 0); /* measure */
        p.f = f;
        print_dim(&p, 0, 0);
    }
    ag_stats st = ag_stats_of(v, x->size);
    fprintf(f, "\nstats: min=%g max=%g mean=%g std=%g norm=%g nan=%zu inf=%zu\n", st.min, st.max,
            st.mean, st.std, st.norm, st.n_nan, st.n_inf);
}

void ag_tensor_print(FILE *f, const char *label, const ag_tensor *x) {
    if (!f) return;
    if (!x) {
        if (label) fprintf(f, "%s: ", label);
        fputs("(null tensor)\n", f);
        return;
    }
    if (!label) label = x->name ? x->name : "tensor";
    if (x->ndim < 0 || x->ndim > AG_MAX_DIMS) {
        fprintf(f, "%s: (invalid tensor: rank %d)\n", label, x->ndim);
        return;
    }
    print_values(f, label, "", x, x->value);
    if (x->grad) print_values(f, label, ".grad", x, x->grad);
}

/* ---------------------------------------------------------------- the index of a tape */

typedef struct {
    const void *p;
    size_t i; /* node: creation index; parameter: number in first-use order */
} ref;

typedef struct {
    const ag_node **order; /* n nodes, oldest first */
    size_t n;
    ref *nodes;            /* the same n nodes sorted by address */
    ref *ext;              /* distinct inputs that are not nodes of the tape (parameters) */
    size_t n_ext;
    void *block;
} tape_index;

static int ref_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const ref *)a)->p, y = (uintptr_t)((const ref *)b)->p;
    return (x > y) - (x < y);
}

static const ref *ref_find(const ref *r, size_t n, const void *p) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)r[mid].p < (uintptr_t)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && r[lo].p == p ? &r[lo] : NULL;
}

/* The creation index of input x, or SIZE_MAX when x is not one of t's nodes. Membership is
 * decided by the lookup, not by x->tape alone, so a tensor the index does not know can never
 * be given some other node's number. */
static size_t node_index(const tape_index *ix, const ag_tape *t, const ag_tensor *x) {
    if (x->tape != t) return SIZE_MAX;
    const ref *r = ref_find(ix->nodes, ix->n, x);
    return r ? r->i : SIZE_MAX;
}

static void index_free(tape_index *ix) { ag__free(ix->block); }

static ag_status index_build(const ag_tape *t, tape_index *ix) {
    *ix = (tape_index){0};
    size_t n = t->n_nodes, n_in = 0;
    for (const ag_node *nd = t->last; nd; nd = nd->prev) n_in += (size_t)nd->n_in;
    if (n == 0) return AG_OK;
    size_t a, b, c;
    if (!ag__mul_ok(n, sizeof(const ag_node *), &a) || !ag__mul_ok(n, sizeof(ref), &b) ||
        !ag__mul_ok(n_in, sizeof(ref), &c) || b > SIZE_MAX - c || a > SIZE_MAX - b - c)
        return AG_ERR_NOMEM;
    /* refs first: they need the stricter alignment of the two (size_t next to a pointer) */
    char *block = ag__malloc(b + c + a);
    if (!block) return AG_ERR_NOMEM;
    ix->block = block;
    ix->nodes = (ref *)(void *)block;
    ix->ext = (ref *)(void *)(block + b);
    ix->order = (const ag_node **)(void *)(block + b + c);

    size_t k = n;
    for (const ag_node *nd = t->last; nd && k > 0; nd = nd->prev) ix->order[--k] = nd;
    ix->order += k; /* k > 0 only if n_nodes overstated the list: index what is there */
    ix->n = n - k;
    for (size_t i = 0; i < ix->n; i++) ix->nodes[i] = (ref){ix->order[i], i};
    qsort(ix->nodes, ix->n, sizeof(ref), ref_cmp);

    /* distinct external inputs: sort, drop repeats, then number them in first-use order */
    size_t e = 0;
    for (size_t i = 0; i < ix->n; i++)
        for (int j = 0; j < ix->order[i]->n_in; j++) {
            const ag_tensor *x = ix->order[i]->in[j];
            if (node_index(ix, t, x) == SIZE_MAX) ix->ext[e++] = (ref){x, SIZE_MAX};
        }
    qsort(ix->ext, e, sizeof(ref), ref_cmp);
    size_t d = 0;
    for (size_t i = 0; i < e; i++)
        if (d == 0 || ix->ext[d - 1].p != ix->ext[i].p) ix->ext[d++] = ix->ext[i];
    ix->n_ext = d;
    size_t next = 0;
    for (size_t i = 0; i < ix->n; i++)
        for (int j = 0; j < ix->order[i]->n_in; j++) {
            ref *r = (ref *)ref_find(ix->ext, ix->n_ext, ix->order[i]->in[j]);
            if (r && r->i == SIZE_MAX) r->i = next++;
        }
    return AG_OK;
}

/* ---------------------------------------------------------------- ag_tape_dump */

/* "-": no gradient flows here; "req": one will (requires_grad) but none is held yet;
 * "grad": holds a gradient buffer. */
static const char *grad_state(const ag_tensor *x) {
    if (x->grad) return "grad";
    return (x->flags & AG_REQUIRES_GRAD) ? "req" : "-";
}

static void dump_line(FILE *f, const tape_index *ix, const ag_tape *t, const ag_node *nd, size_t idx) {
    char s[96];
    fprintf(f, "#%-4zu %-16s %-14s %s", idx, nd->op ? nd->op->name : "leaf",
            ag_shape_str(&nd->out, s, sizeof s), grad_state(&nd->out));
    for (int i = 0; i < nd->n_in; i++) {
        const ag_tensor *x = nd->in[i];
        if (i == 0) fprintf(f, "%*s <-", 4 - (int)strlen(grad_state(&nd->out)), "");
        size_t k = ix ? node_index(ix, t, x) : SIZE_MAX;
        if (k != SIZE_MAX)
            fprintf(f, " #%zu", k);
        else if (x->name)
            fprintf(f, " %s", x->name);
        else /* no index to hand (out of memory): the shape at least */
            fprintf(f, " %s", ag_shape_str(x, s, sizeof s));
    }
    fputc('\n', f);
}

void ag_tape_dump(const ag_tape *t, FILE *f) {
    if (!t || !f) return;
    tape_index ix;
    if (index_build(t, &ix) != AG_OK) {
        /* no memory for the index: the list as it runs, newest first, inputs by name or shape */
        fputs("(out of memory: newest first, inputs by name or shape)\n", f);
        size_t idx = t->n_nodes;
        for (const ag_node *nd = t->last; nd && idx > 0; nd = nd->prev) dump_line(f, NULL, t, nd, --idx);
        return;
    }
    for (size_t i = 0; i < ix.n; i++) dump_line(f, &ix, t, ix.order[i], i);
    index_free(&ix);
}

/* ---------------------------------------------------------------- ag_tape_write_dot */

/* Output with the first failure remembered: the writer carries on cheaply and reports once. */
typedef struct {
    FILE *f;
    int failed;
} writer;

AG__PRINTF(2, 3) static void out(writer *w, const char *fmt, ...) {
    if (w->failed) return;
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(w->f, fmt, ap) < 0) w->failed = 1;
    va_end(ap);
}

/* A string inside a DOT "..." label: quote and backslash escaped (a lone backslash would start a
 * label escape such as \N or \l), a newline as \n, other control bytes as '?'. UTF-8 passes. */
static void out_escaped(writer *w, const char *s) {
    for (; !w->failed && *s; s++) {
        unsigned char c = (unsigned char)*s;
        int r;
        if (c == '"' || c == '\\')
            r = fprintf(w->f, "\\%c", c);
        else if (c == '\n')
            r = fputs("\\n", w->f);
        else
            r = fputc(c < 0x20 || c == 0x7f ? '?' : c, w->f);
        if (r < 0) w->failed = 1;
    }
}

static void out_norm(writer *w, const char *what, const ag_real *v, size_t n) {
    ag_stats s = ag_stats_of(v, n);
    out(w, "\\n|%s|=%g", what, s.norm);
    if (s.n_nan + s.n_inf) out(w, " (+%zu non-finite)", s.n_nan + s.n_inf);
}

/* The attributes after the label text: norms, closing quote, fill for gradient holders. */
static void out_attrs_tail(writer *w, const ag_tensor *x, unsigned flags) {
    if (flags & AG_DOT_NORMS) {
        out_norm(w, "v", x->value, x->value ? x->size : 0);
        if (x->grad) out_norm(w, "g", x->grad, x->size);
    }
    out(w, "\"%s];\n", x->grad ? ", style=filled, fillcolor=\"lightblue\"" : "");
}

ag_status ag_tape_write_dot(const ag_tape *t, FILE *f, unsigned flags) {
    if (!t || !f) return AG_ERR_ARG;
    tape_index ix;
    if (index_build(t, &ix) != AG_OK) return AG_ERR_NOMEM;
    writer w = {f, 0};
    char s[96];
    /* Top to bottom: data and parameters at the top, the loss at the bottom, the order in which
     * the code (and ag_tape_dump) lists them; edges point the way values flow. */
    out(&w, "digraph tape {\n  rankdir=TB;\n");
    size_t declared = 0;
    for (size_t i = 0; i < ix.n; i++) {
        const ag_node *nd = ix.order[i];
        /* parameters appear just before their first consumer; ids were given in that order */
        for (int j = 0; j < nd->n_in; j++) {
            const ref *r = ref_find(ix.ext, ix.n_ext, nd->in[j]);
            if (!r || r->i != declared) continue;
            const ag_tensor *x = nd->in[j];
            out(&w, "  p%zu [shape=ellipse, label=\"", declared++);
            out_escaped(&w, x->name ? x->name : "param");
            out(&w, "\\n%s", ag_shape_str(x, s, sizeof s));
            out_attrs_tail(&w, x, flags);
        }
        out(&w, "  n%zu [shape=%s, label=\"#%zu ", i, nd->op ? "box" : "ellipse", i);
        out_escaped(&w, nd->op ? nd->op->name : (nd->out.name ? nd->out.name : "leaf"));
        out(&w, "\\n%s", ag_shape_str(&nd->out, s, sizeof s));
        out_attrs_tail(&w, &nd->out, flags);
        for (int j = 0; j < nd->n_in; j++) {
            size_t k = node_index(&ix, t, nd->in[j]);
            if (k != SIZE_MAX) {
                out(&w, "  n%zu -> n%zu;\n", k, i);
            } else {
                const ref *r = ref_find(ix.ext, ix.n_ext, nd->in[j]);
                out(&w, "  p%zu -> n%zu;\n", r ? r->i : 0, i);
            }
        }
    }
    out(&w, "}\n");
    index_free(&ix);
    /* flush, so that a full disk shows up here and not in the caller's fclose */
    if (!w.failed && (fflush(f) != 0 || ferror(f))) w.failed = 1;
    return w.failed ? AG_ERR_IO : AG_OK;
}

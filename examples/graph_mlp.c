/*
 * graph_mlp.c - look inside one training step. A 4-8-3 MLP (tanh hidden layer, sigmoid output,
 * the seed's squared error + L2 cost) takes one SGD step on a batch of 5 random examples; the tape
 * of that step is then
 *   - written as a Graphviz graph with the norm of every value and gradient (AG_DOT_NORMS),
 *   - printed as a text dump, one line per node, oldest first,
 * and the first layer's weight is printed with its gradient. When Graphviz's `dot` is on PATH the
 * graph is also rendered to SVG beside the .dot file.
 *
 *     build/examples/graph_mlp [out.dot]        (default mlp_step.dot; writes out.svg too)
 *     dot -Tsvg mlp_step.dot -o mlp_step.svg    (by hand; apt-get install graphviz)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

#define K 5 /* examples in the batch */

/* Is prog an executable in some directory of PATH? */
static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        char full[4096];
        if (len > 0 && len + strlen(prog) + 2 <= sizeof full) {
            snprintf(full, sizeof full, "%.*s/%s", (int)len, path, prog);
            if (access(full, X_OK) == 0) return 1;
        }
        path += len + (path[len] == ':');
    }
    return 0;
}

/* Run `dot -Tsvg in -o out` without a shell (no quoting of paths); its exit status, or -1. */
static int render_svg(const char *in, const char *out) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execlp("dot", "dot", "-Tsvg", in, "-o", out, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    const char *dot_path = argc > 1 ? argv[1] : "mlp_step.dot";

    /* a tiny batch: 5 examples of 4 features, targets one-hot over 3 classes */
    ag_real x[K * 4], y[K * 3] = {0};
    ag_rng rng;
    ag_rng_seed(&rng, 7);
    ag_rng_fill_normal(&rng, x, K * 4, 0, 1);
    for (int k = 0; k < K; k++) y[k * 3 + ag_rng_below(&rng, 3)] = 1;

    ag_params *ps;
    ag_tape *t;
    ag_mlp *m;
    ag_optim *opt;
    char err[AG_ERRMSG_SIZE];
    if (ag_params_new(&ps) != AG_OK || ag_tape_new(&t, NULL) != AG_OK) return 1;
    ag_mlp_config cfg = {.spec = "4-8-3", .hidden = AG_ACT_TANH, .output = AG_ACT_SIGMOID,
                         .init = AG_INIT_GLOROT_NORMAL, .seed = 1};
    if (ag_mlp_new(&m, ps, &cfg, err, sizeof err) != AG_OK ||
        ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5}, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    /* one step: forward, cost, backward. Asking for z (the pre-activations) records each layer
     * as linear + activation rather than one fused node, so the graph shows z and its gradient
     * dJ/dz, the derivation's delta / K. */
    ag_tensor *z[2];
    ag_tensor *X = ag_tensor_wrap(t, 2, (size_t[]){K, 4}, x);
    ag_tensor *Y = ag_tensor_wrap(t, 2, (size_t[]){K, 3}, y);
    ag_tensor *h = ag_mlp_forward(t, m, X, z, NULL);
    ag_tensor *J = ag_mlp_cost_squared_error(t, m, h, Y, (ag_real)1e-4);
    ag_optim_zero_grad(opt);
    if (!J || ag_backward(t, J) != AG_OK) {
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
        return 1;
    }
    double loss_before = (double)J->value[0];

    /* The tape as backward left it, before the update moves the weights: every |v| in the graph
     * is a value this step computed with, every |g| the gradient it produced. */
    FILE *f = fopen(dot_path, "w");
    if (!f) {
        perror(dot_path);
        return 1;
    }
    ag_status st = ag_tape_write_dot(t, f, AG_DOT_NORMS);
    if (fclose(f) != 0 && st == AG_OK) st = AG_ERR_IO;
    if (st != AG_OK) {
        fprintf(stderr, "%s: %s\n", dot_path, ag_status_str(st));
        return 1;
    }
    printf("tape of one step (%zu nodes): # index, op, shape, gradient (- none, req expected, grad held), inputs\n",
           ag_tape_node_count(t));
    ag_tape_dump(t, stdout);
    printf("\n");
    ag_tensor_print(stdout, NULL, ag_params_find(ps, "fc1.W"));

    if (ag_optim_step(opt) != AG_OK) {
        fprintf(stderr, "%s\n", ag_optim_errmsg(opt));
        return 1;
    }
    /* the same batch after the step, forward only */
    ag_tape_reset(t);
    ag_tape_set_grad_enabled(t, 0);
    X = ag_tensor_wrap(t, 2, (size_t[]){K, 4}, x);
    Y = ag_tensor_wrap(t, 2, (size_t[]){K, 3}, y);
    J = ag_mlp_cost_squared_error(t, m, ag_mlp_forward(t, m, X, NULL, NULL), Y, (ag_real)1e-4);
    if (!J) {
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
        return 1;
    }
    printf("\nloss %.6f before the step, %.6f after\n", loss_before, (double)J->value[0]);

    printf("wrote %s\n", dot_path);
    if (on_path("dot")) {
        char svg[4096];
        size_t n = strlen(dot_path);
        int cut = n > 4 && strcmp(dot_path + n - 4, ".dot") == 0 ? 4 : 0; /* a.dot -> a.svg */
        snprintf(svg, sizeof svg, "%.*s.svg", (int)(n - (size_t)cut), dot_path);
        int rc = render_svg(dot_path, svg);
        printf("dot -Tsvg %s -o %s: exit status %d%s\n", dot_path, svg, rc, rc == 0 ? "" : " (failed)");
        if (rc != 0) return 1;
    } else {
        printf("Graphviz `dot` is not on PATH: render with  dot -Tsvg %s -o out.svg  (apt-get install graphviz)\n",
               dot_path);
    }

    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_tape_free(t);
    ag_params_free(ps);
    return 0;
}

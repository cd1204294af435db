/* A program outside the tapegrad tree, built against it the three documented ways
 * (tests/consumer_test.sh): one MLP step, a save and a load, through the installed headers. */
#include <stdio.h>
#include <string.h>

#include <tapegrad/ag_io.h>
#include <tapegrad/mlp.h>
#include <tapegrad/optim.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "app.safetensors";
    ag_real x[4 * 2] = {0, 0, 0, 1, 1, 0, 1, 1}, y[4] = {0, 1, 1, 0};
    ag_params *ps = NULL, *back = NULL;
    ag_tape *t = NULL;
    ag_mlp *m = NULL, *m2 = NULL;
    ag_optim *opt = NULL;
    char err[AG_IO_ERRMSG_SIZE];
    ag_mlp_config cfg = {.spec = "2-4-1", .hidden = AG_ACT_TANH, .init = AG_INIT_GLOROT_NORMAL, .seed = 1};
    int ok = ag_params_new(&ps) == AG_OK && ag_tape_new(&t, NULL) == AG_OK &&
             ag_mlp_new(&m, ps, &cfg, err, sizeof err) == AG_OK &&
             ag_optim_new(&opt, ps, &(ag_optim_config){.kind = AG_OPT_SGD, .lr = 0.5}, err, sizeof err) == AG_OK;
    ag_tensor *J = NULL;
    for (int step = 0; ok && step < 50; step++) {
        ag_tape_reset(t);
        ag_tensor *h = ag_mlp_forward(t, m, ag_tensor_wrap(t, 2, (size_t[]){4, 2}, x), NULL, NULL);
        J = ag_mlp_cost_squared_error(t, m, h, ag_tensor_wrap(t, 2, (size_t[]){4, 1}, y), 0);
        ok = ag_optim_backward_step(opt, t, J) == AG_OK;
    }
    if (ok) ok = ag_model_save(path, ps, NULL, 0, NULL, 0, err, sizeof err) == AG_OK;
    cfg.seed = 2; /* other weights, until the load */
    if (ok) ok = ag_params_new(&back) == AG_OK && ag_mlp_new(&m2, back, &cfg, err, sizeof err) == AG_OK &&
                 ag_model_load(path, back, NULL, 0, err, sizeof err) == AG_OK &&
                 ag_params_numel(back) == ag_params_numel(ps) &&
                 memcmp(ag_params_values(back), ag_params_values(ps), ag_params_numel(ps) * sizeof(ag_real)) == 0;
    if (ok)
        printf("consumer ok: %s build, kernel %s, loss %.4f\n", AG_REAL_NAME, ag_kernel_name(), (double)J->value[0]);
    else fprintf(stderr, "consumer failed: %s %s\n", err, t ? ag_tape_errmsg(t) : "");
    ag_optim_free(opt);
    ag_mlp_free(m);
    ag_mlp_free(m2);
    ag_tape_free(t);
    ag_params_free(ps);
    ag_params_free(back);
    return ok ? 0 : 1;
}

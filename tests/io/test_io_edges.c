/*
 * test_io_edges.c - model-file reads that must be refused before anything is written: an extra
 * buffer named like a parameter (both would be filled from the same tensor), one named twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/ag_io.h>
#include "testutil.h"

START_TEST(extra_buffer_names_must_be_their_own) {
    char path[512];
    ag_test_scratch_path(path, sizeof path, "m.safetensors");
    char err[AG_ERRMSG_SIZE];
    ag_params *ps;
    ag_tensor *w;
    ck_assert_int_eq(ag_params_new(&ps), AG_OK);
    ck_assert_int_eq(ag_params_add(ps, "w", 1, (size_t[]){2}, 0, &w), AG_OK);
    w->value[0] = 1;
    w->value[1] = 2;
    ag_real m[2] = {5, 6};
    ck_assert_int_eq(ag_model_save(path, ps, (ag_named_buf[]){{"m", m, 2}}, 1, NULL, 0, err, sizeof err), AG_OK);
    w->value[0] = 9;
    ag_real got[2] = {-1, -1}, got2[2] = {-1, -1};
    /* "w" is the parameter's tensor in the file: as an extra buffer it is refused */
    ck_assert_int_eq(ag_model_load(path, ps, (ag_named_buf[]){{"w", got, 2}}, 1, err, sizeof err), AG_ERR_ARG);
    ck_assert_msg(strstr(err, "extra buffer w has a parameter's name"), "%s", err);
    ck_assert(got[0] == -1 && w->value[0] == 9);
    /* the same extra buffer twice */
    ck_assert_int_eq(ag_model_load(path, ps, (ag_named_buf[]){{"m", got, 2}, {"m", got2, 2}}, 2, err, sizeof err),
                     AG_ERR_ARG);
    ck_assert_msg(strstr(err, "extra buffer m given twice"), "%s", err);
    ck_assert(got[0] == -1 && got2[0] == -1 && w->value[0] == 9);
    /* and the right request reads both */
    ck_assert_int_eq(ag_model_load(path, ps, (ag_named_buf[]){{"m", got, 2}}, 1, err, sizeof err), AG_OK);
    ck_assert(got[0] == 5 && got[1] == 6 && w->value[0] == 1 && w->value[1] == 2);
    ag_params_free(ps);
    ag_test_scratch_remove();
}
END_TEST

static Suite *io_edges_suite(void) {
    Suite *s = suite_create("io_edges");
    TCase *tc = tcase_create("io_edges");
    tcase_add_test(tc, extra_buffer_names_must_be_their_own);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(io_edges_suite)

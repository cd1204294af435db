/*
 * test_losses_composed.c - the losses of issue 22 against PyTorch's numbers and against the same
 * loss written from built-ins alone:
 *   - a stable binary cross-entropy from built-ins (no user op): mean(softplus(x) - x y), which
 *     must agree with ag_bce_with_logits and with torch's binary_cross_entropy_with_logits, logits
 *     of +-1e4 included (the naive -y log s(x) - (1-y) log(1 - s(x)) gives inf/NaN there);
 *   - cross_entropy_ex with an ignore index and label smoothing on 3-D logits (one row of 1e4),
 *     an ignore index that is a class, and every row ignored (loss 0, zero gradient: torch NaN).
 * The expected numbers were computed with PyTorch 2 in float64 (torch.nn.functional, reduction
 * 'mean', .backward() for the gradients), and the BCE loss by hand as well (each term below).
 */
#include <math.h>
#include <stdio.h>

#include "testutil.h"

#ifdef AG_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-6
#endif

static void expect_near(const char *what, size_t i, double got, double want) {
    ck_assert_msg(fabs(got - want) <= TOL * (1 + fabs(want)), "%s[%zu] = %.17g, want %.17g", what, i, got, want);
}

/* logits and targets; torch: F.binary_cross_entropy_with_logits(x, y) = 2500.2893776158126. By
 * hand, softplus(x) - x y per element: 0, 0, 1e4, 1e4 (the +-1e4 pairs), ln 2 = 0.69314718055994531,
 * log1p(e^-2.5) = 0.078889734292549560, log1p(e^-3) + 0.75 = 0.79858735157374206,
 * softplus(0.1) = 0.74439666007357094; their mean is 20002.315020926500 / 8. */
static const double BX[8] = {1e4, -1e4, 1e4, -1e4, 0, 2.5, -3, 0.1};
static const double BY[8] = {1, 0, 0, 1, 0.5, 1, 0.25, 0};
static const double B_LOSS = 2500.2893776158126;
/* d/dx = (sigmoid(x) - y)/8, d/dy = -x/8 (torch's x.grad and y.grad) */
static const double B_DX[8] = {0.0, 0.0, 0.125, -0.125, 0.0, -0.009482272502655431, -0.025321765852804153,
                               0.0656223984348675};
static const double B_DY[8] = {-1250.0, 1250.0, -1250.0, 1250.0, -0.0, -0.3125, 0.375, -0.0125};

/* the composed form: softplus, mul, sub, mean: built-ins only */
static ag_tensor *bce_composed(ag_tape *t, ag_tensor *x, ag_tensor *y) {
    return ag_mean(t, ag_sub(t, ag_softplus(t, x), ag_mul(t, x, y)));
}

START_TEST(bce_composed_agrees) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real xv[8], yv[8];
    for (int i = 0; i < 8; i++) xv[i] = (ag_real)BX[i], yv[i] = (ag_real)BY[i];
    for (int form = 0; form < 2; form++) {
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){8}, xv), *y = ag_tensor_from(t, 1, (size_t[]){8}, yv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ck_assert_int_eq(ag_requires_grad(y), AG_OK);
        ag_tensor *J = form ? bce_composed(t, x, y) : ag_bce_with_logits(t, x, y);
        ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        const char *name = form ? "composed" : "bce_with_logits";
        ck_assert_msg(isfinite((double)J->value[0]), "%s: loss %g", name, (double)J->value[0]);
        expect_near(name, 0, (double)J->value[0], B_LOSS);
        for (size_t i = 0; i < 8; i++) {
            expect_near(form ? "composed dx" : "dx", i, (double)x->grad[i], B_DX[i]);
            expect_near(form ? "composed dy" : "dy", i, (double)y->grad[i], B_DY[i]);
        }
    }
    /* targets that need no gradient get none; logits still do */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 1, (size_t[]){8}, xv), *y = ag_tensor_from(t, 1, (size_t[]){8}, yv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ck_assert_int_eq(ag_backward(t, ag_bce_with_logits(t, x, y)), AG_OK);
    ck_assert_ptr_null(y->grad);
    expect_near("dx (data targets)", 6, (double)x->grad[6], B_DX[6]);
    /* logits of +-1e30 (x^2 would overflow in float): softplus(x) - x y is 0 for the matching
     * targets and 1e30 for the others; the gradient (sigmoid(x) - y)/4 is 0, 0, 1/4, -1/4 */
    ag_tape_reset(t);
    x = ag_tensor_from(t, 1, (size_t[]){4}, (ag_real[]){(ag_real)1e30, (ag_real)-1e30, (ag_real)1e30, (ag_real)-1e30});
    y = ag_tensor_from(t, 1, (size_t[]){4}, (ag_real[]){1, 0, 0, 1});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *J = ag_bce_with_logits(t, x, y);
    ck_assert_ptr_nonnull(J);
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    expect_near("bce 1e30", 0, (double)J->value[0], 2 * (double)(ag_real)1e30 / 4);
    static const double d30[4] = {0, 0, 0.25, -0.25};
    for (size_t i = 0; i < 4; i++) expect_near("bce 1e30 dx", i, (double)x->grad[i], d30[i]);
    printf("bce_with_logits: built-in, composed and torch agree at logits of +-1e4 (%s)\n", AG_REAL_NAME);
    ag_tape_free(t);
}
END_TEST

/* 2 x 3 x 4 logits, labels [[1, -100, 3], [0, 2, -100]], ignore_index -100, label_smoothing 0.1:
 * torch F.cross_entropy(X.reshape(-1, 4), labels.reshape(-1), ignore_index=-100,
 * label_smoothing=0.1) = 251.00362526619128 (row 3 holds 1e4 and -1e4: its loss is 1e4-scale but
 * finite), and X.grad below (ignored rows 0). */
static const double CX[24] = {1.0, 2.0, 0.5, -1.0, 0.0, 0.0, 0.0, 0.0, 3.0, -2.0, 1.0, 0.25,
                              1e4, 0.0, -1e4, 5.0, -0.5, 1.5, 2.5, -3.5, 7.0, 7.0, 7.0, 7.0};
static const int32_t C_LAB[6] = {1, -100, 3, 0, 2, -100};
static const double C_LOSS = 251.00362526619128;
static const double C_DX[24] = {
    0.04980195451205029,  -0.07888499060028073, 0.027747228948376383, 0.001335807139854056,
    0.0,                  0.0,                  0.0,                  0.0,
    0.20104666148228287,  -0.004853246081845016, 0.02180455239570897, -0.21799796779614677,
    0.01874999999999999,  -0.00625,             -0.00625,             -0.00625,
    0.002514432363015075, 0.05851088240560171,  -0.05521167016187978, -0.005813644606737049,
    0.0,                  0.0,                  0.0,                  0.0};
/* the same logits, labels [[2, 2, 2], [1, 2, 3]], ignore_index 2 (a class), no smoothing:
 * torch gives 5000.69314718056 and this gradient */
static const int32_t C_LAB2[6] = {2, 2, 2, 1, 2, 3};
static const double C_LOSS2 = 5000.69314718056;
static const double C_DX2[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5, -0.5, 0, 0, 0, 0, 0, 0, 0.125, 0.125, 0.125, -0.375};

static void run_ce(ag_tape *t, const int32_t *labels, const ag_ce_opts *o, double want, const double *dwant) {
    ag_real xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (ag_real)CX[i];
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 3, (size_t[]){2, 3, 4}, xv);
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *J = ag_cross_entropy_ex(t, x, labels, o);
    ck_assert_msg(J != NULL, "%s", ag_tape_errmsg(t));
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    expect_near("cross_entropy_ex", 0, (double)J->value[0], want);
    for (size_t i = 0; i < 24; i++) expect_near("cross_entropy_ex dx", i, (double)x->grad[i], dwant[i]);
}

START_TEST(cross_entropy_ex_matches_torch) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    run_ce(t, C_LAB, &(ag_ce_opts){-100, (ag_real)0.1}, C_LOSS, C_DX);
    run_ce(t, C_LAB2, &(ag_ce_opts){2, 0}, C_LOSS2, C_DX2);
    /* every row ignored: 0 and a zero gradient (documented; torch's mean is 0/0) */
    static const int32_t all[6] = {-100, -100, -100, -100, -100, -100};
    static const double zeros[24];
    run_ce(t, all, &(ag_ce_opts){-100, (ag_real)0.3}, 0, zeros);
    /* logits of +-1e30: row {1e30, 0, -1e30} with label 0 costs 0 (gradient 0), with label 1 costs
     * 1e30 (gradient (p - onehot)/2 = {1, -1, 0}/2); the mean over the two rows is 5e29 */
    ag_tape_reset(t);
    ag_tensor *x = ag_tensor_from(t, 2, (size_t[]){2, 3},
                                  (ag_real[]){(ag_real)1e30, 0, (ag_real)-1e30, (ag_real)1e30, 0, (ag_real)-1e30});
    ck_assert_int_eq(ag_requires_grad(x), AG_OK);
    ag_tensor *J = ag_cross_entropy_ex(t, x, (const int32_t[]){0, 1}, NULL);
    ck_assert_ptr_nonnull(J);
    ck_assert_int_eq(ag_backward(t, J), AG_OK);
    expect_near("cross_entropy_ex 1e30", 0, (double)J->value[0], (double)(ag_real)1e30 / 2);
    static const double d30[6] = {0, 0, 0, 0.5, -0.5, 0};
    for (size_t i = 0; i < 6; i++) expect_near("cross_entropy_ex 1e30 dx", i, (double)x->grad[i], d30[i]);
    printf("cross_entropy_ex: ignore index, smoothing, 3-D logits with 1e4 agree with torch (%s)\n", AG_REAL_NAME);
    ag_tape_free(t);
}
END_TEST

/* no options = ag_cross_entropy on the rows (the same loss and gradient, bit for bit not required) */
START_TEST(cross_entropy_ex_plain_is_cross_entropy) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    ag_real xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (ag_real)CX[i];
    static const int32_t lab[6] = {1, 0, 3, 0, 2, 1};
    ag_real g[2][24], J[2];
    for (int form = 0; form < 2; form++) {
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from(t, 3, (size_t[]){2, 3, 4}, xv);
        ck_assert_int_eq(ag_requires_grad(x), AG_OK);
        ag_tensor *y = form ? ag_cross_entropy(t, ag_reshape(t, x, 2, (size_t[]){6, 4}), lab)
                            : ag_cross_entropy_ex(t, x, lab, NULL);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(ag_backward(t, y), AG_OK);
        J[form] = y->value[0];
        for (int i = 0; i < 24; i++) g[form][i] = x->grad[i];
    }
    expect_near("loss", 0, (double)J[0], (double)J[1]);
    for (size_t i = 0; i < 24; i++) expect_near("dx", i, (double)g[0][i], (double)g[1][i]);
    ag_tape_free(t);
}
END_TEST

/* l1 and huber by hand: d = h - y = {-3, -0.5, 0, 0.25, 2}; l1 = 5.75/5 = 1.15, f' = sign(d)/5
 * (0 at d = 0, as torch); huber with delta 1: {2.5, 0.125, 0, 0.03125, 1.5} / 5 = 0.83125,
 * f' = clamp(d, -1, 1)/5. */
START_TEST(l1_huber_by_hand) {
    ag_tape *t;
    ck_assert_int_eq(ag_tape_new(&t, NULL), AG_OK);
    static const double dl1[5] = {-0.2, -0.2, 0, 0.2, 0.2}, dhu[5] = {-0.2, -0.1, 0, 0.05, 0.2};
    for (int form = 0; form < 2; form++) {
        ag_tape_reset(t);
        ag_tensor *h = ag_tensor_from(t, 1, (size_t[]){5}, (ag_real[]){-2, 0.5, 1, 1.25, 1e4 + 2});
        ag_tensor *y = ag_tensor_from(t, 1, (size_t[]){5}, (ag_real[]){1, 1, 1, 1, 1e4});
        ck_assert_int_eq(ag_requires_grad(h), AG_OK);
        ag_tensor *J = form ? ag_huber_loss(t, h, y, 1) : ag_l1_loss(t, h, y);
        ck_assert_ptr_nonnull(J);
        ck_assert_int_eq(ag_backward(t, J), AG_OK);
        expect_near(form ? "huber" : "l1", 0, (double)J->value[0], form ? 0.83125 : 1.15);
        for (size_t i = 0; i < 5; i++) expect_near(form ? "huber dh" : "l1 dh", i, (double)h->grad[i], form ? dhu[i] : dl1[i]);
    }
    ag_tape_free(t);
}
END_TEST

static Suite *losses_suite(void) {
    Suite *s = suite_create("losses_composed");
    TCase *tc = tcase_create("losses");
    tcase_add_test(tc, bce_composed_agrees);
    tcase_add_test(tc, cross_entropy_ex_matches_torch);
    tcase_add_test(tc, cross_entropy_ex_plain_is_cross_entropy);
    tcase_add_test(tc, l1_huber_by_hand);
    suite_add_tcase(s, tc);
    return s;
}

AG_TEST_MAIN(losses_suite)

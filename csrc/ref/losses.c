/*
 * losses.c: how wrong the network is (eq. 18-22), and where the error starts flowing back.
 *
 * y is the network's output (B,n), t the target (B,n): one-hot rows for labels, or any values
 * the user wants (the paper's y-hat). Every loss is a mean over the B samples, so a gradient
 * does not grow with the batch size. Sums run in double: a batch of 60,000 float errors added
 * in float would lose digits.
 *
 * A readable reference kernel (csrc/ref/): plain loops a student can set beside the paper;
 * no intrinsics, no threads, no tricks for speed.
 */
#include <math.h>
#include "internal.h"

/* d, y, t are (B,n) arrays: with n == 0 they hold nothing and may be NULL */
static int check_loss_grad(const void *d, const void *y, const void *t, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    if (B == 0) return PYNN_ERR_SIZE;            /* a mean over no samples is undefined */
    if (n > 0 && (d == NULL || y == NULL || t == NULL)) return PYNN_ERR_NULL;
    return PYNN_OK;
}

static int check_loss(const double *loss, const void *y, const void *t, int64_t B, int64_t n) {
    if (loss == NULL) return PYNN_ERR_NULL;
    return check_loss_grad(y, y, t, B, n);
}

/* eq. 22: L = (1/B) sum_i sum_j (t_ij - y_ij)^2: summed over the output units, averaged over
 * the samples. For one sample (B = 1) this is eq. 21. */
int pynn_quadratic_loss_forward(double *loss, const float *y, const float *t, int64_t B, int64_t n) {
    PYNN_TRY(check_loss(loss, y, t, B, n));
    double sum = 0.0;
    for (int64_t i = 0; i < B * n; i++) {
        double diff = (double)t[i] - (double)y[i];
        sum += diff * diff;
    }
    *loss = sum / (double)B;
    return PYNN_OK;
}

/* the forward summed (t - y)^2 / B, so dL/dy = 2 (y - t) / B (eq. 36's 2(y - y-hat) per sample) */
int pynn_quadratic_loss_backward(float *dy, const float *y, const float *t, int64_t B, int64_t n) {
    PYNN_TRY(check_loss_grad(dy, y, t, B, n));
    float scale = 2.0f / (float)B;
    for (int64_t i = 0; i < B * n; i++) dy[i] = scale * (y[i] - t[i]);
    return PYNN_OK;
}

/* softmax (eq. 23) and cross-entropy in one: L = -(1/B) sum_b sum_j t_bj log p_bj, with
 * log p_j = z_j - logsumexp(z). The log-sum-exp (max subtracted) never overflows, and log p is
 * never computed as log(0): a confident wrong answer costs a large finite number, not Inf.
 * probs (B,n) receives the softmax, which the backward needs. */
int pynn_softmax_cross_entropy_forward(double *loss, float *probs, const float *logits,
                                       const float *t, int64_t B, int64_t n) {
    PYNN_TRY(check_loss(loss, logits, t, B, n));
    if (n > 0 && probs == NULL) return PYNN_ERR_NULL;
    if (n == 0) { *loss = 0.0; return PYNN_OK; }   /* rows without columns: nothing to sum */
    double total = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *z_b = logits + b * n, *t_b = t + b * n;
        float *p_b = probs + b * n;
        float maxval = -INFINITY;
        for (int64_t j = 0; j < n; j++) if (z_b[j] > maxval) maxval = z_b[j];
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) sum += expf(z_b[j] - maxval);
        double lse = (double)maxval + log(sum);
        float scale = (float)(1.0 / sum);
        /* probs may alias logits (the network writes them over the logits): z_j is read for
         * the loss before p_j takes its place, which is why the exponentials are taken twice */
        for (int64_t j = 0; j < n; j++) {
            if (t_b[j] != 0.0f) total -= (double)t_b[j] * ((double)z_b[j] - lse);
            p_b[j] = expf(z_b[j] - maxval) * scale;
        }
    }
    *loss = total / (double)B;
    return PYNN_OK;
}

/* the derivative of -sum_j t_j log softmax(z)_j with respect to z_j is p_j * sum_k t_k - t_j:
 * p - t for a one-hot (or any normalised) target. Divided by B, as the forward averaged. */
int pynn_softmax_cross_entropy_backward(float *dlogits, const float *probs, const float *t,
                                        int64_t B, int64_t n) {
    PYNN_TRY(check_loss_grad(dlogits, probs, t, B, n));
    if (n == 0) return PYNN_OK;
    float inv_B = 1.0f / (float)B;
    for (int64_t b = 0; b < B; b++) {
        const float *p_b = probs + b * n, *t_b = t + b * n;
        float *d_b = dlogits + b * n;
        float tsum = 0.0f;
        for (int64_t j = 0; j < n; j++) tsum += t_b[j];
        for (int64_t j = 0; j < n; j++) d_b[j] = (p_b[j] * tsum - t_b[j]) * inv_B;
    }
    return PYNN_OK;
}

/* sigmoid outputs with cross-entropy per unit (each unit a yes/no question):
 * L = -(1/B) sum [t log s(z) + (1-t) log(1-s(z))] = (1/B) sum [softplus(z) - t z],
 * with softplus(z) = max(z,0) + log1p(e^-|z|), finite for any z. probs receives s(z). */
int pynn_sigmoid_cross_entropy_forward(double *loss, float *probs, const float *logits,
                                       const float *t, int64_t B, int64_t n) {
    PYNN_TRY(check_loss(loss, logits, t, B, n));
    if (n > 0 && probs == NULL) return PYNN_ERR_NULL;
    double total = 0.0;   /* summed before the sigmoid: probs may alias logits */
    for (int64_t i = 0; i < B * n; i++) {
        double z = logits[i];
        double softplus = (z > 0.0 ? z : 0.0) + log1p(exp(-fabs(z)));
        total += softplus - (double)t[i] * z;
    }
    PYNN_TRY(pynn_sigmoid_forward(probs, logits, B * n));
    *loss = total / (double)B;
    return PYNN_OK;
}

/* d/dz [softplus(z) - t z] = s(z) - t: the sigmoid's own derivative cancels */
int pynn_sigmoid_cross_entropy_backward(float *dlogits, const float *probs, const float *t,
                                        int64_t B, int64_t n) {
    PYNN_TRY(check_loss_grad(dlogits, probs, t, B, n));
    float inv_B = 1.0f / (float)B;
    for (int64_t i = 0; i < B * n; i++) dlogits[i] = (probs[i] - t[i]) * inv_B;
    return PYNN_OK;
}

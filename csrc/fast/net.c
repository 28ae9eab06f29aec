/*
 * net.c: the pieces every part of the fused network shares (net.h lists the parts): the
 * network's checks, the workspace size, and the output layer's loss and delta, row by row.
 * Not the place to learn the mathematics (csrc/ref/losses.c and activations.c show it); these
 * are the same formulas, one pass per row.
 */
#include <math.h>
#include <string.h>
#include "net.h"

int pynn_net_check(const struct pynn_net *net) {
    if (net == NULL || net->sizes == NULL || net->W == NULL || net->b == NULL) return PYNN_ERR_NULL;
    if (net->n_layers < 1 || net->n_layers > PYNN_MAX_LAYERS) return PYNN_ERR_SIZE;
    for (int64_t l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] < 1 || net->sizes[l] > PYNN_MAX_WIDTH) return PYNN_ERR_SIZE;
    for (int64_t l = 0; l < net->n_layers; l++)
        if (net->W[l] == NULL || net->b[l] == NULL) return PYNN_ERR_NULL;
    int h = net->hidden, o = net->output;
    if (h != PYNN_LINEAR && h != PYNN_SIGMOID && h != PYNN_RELU && h != PYNN_TANH) return PYNN_ERR_ARG;
    if (o != PYNN_LINEAR && o != PYNN_SIGMOID && o != PYNN_SOFTMAX) return PYNN_ERR_ARG;
    if (net->loss != PYNN_LOSS_QUADRATIC && net->loss != PYNN_LOSS_CROSS_ENTROPY) return PYNN_ERR_ARG;
    if (net->loss == PYNN_LOSS_CROSS_ENTROPY && o == PYNN_LINEAR) return PYNN_ERR_ARG;
    return PYNN_OK;
}

int64_t pynn_net_workspace(const struct pynn_net *net, int64_t batch, int training) {
    if (pynn_net_check(net) != PYNN_OK || batch < 1) return -1;
    if (!training) return pynn_net_forward_workspace(net, batch);
    /* the general path's, or what the small path needs, for a batch that pynn_net_train cuts
     * down to a short epoch */
    int64_t general = pynn_net_train_workspace(net, batch);
    int64_t small = pynn_net_small_workspace(net, batch);
    return general > small ? general : small;
}

/* whether all n values are finite: a NaN's or an Inf's exponent bits are all ones (integer
 * operations, which the compiler vectorises, unlike a floating-point sum kept in order) */
static int all_finite(const float *x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, x + j, sizeof(u));
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

/* softmax and cross-entropy of one row (n) of logits z_b against t_b: returns the loss; z_b
 * becomes the probabilities and d_b = (p tsum - t) / B */
static double softmax_cross_entropy_row(float *z_b, const float *t_b, float *d_b, int64_t n,
                                        float inv_B) {
    double loss = 0.0;
    float maxval = -INFINITY;
    for (int64_t j = 0; j < n; j++) if (z_b[j] > maxval) maxval = z_b[j];
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {     /* each exponential once, kept in delta's row */
        d_b[j] = expf(z_b[j] - maxval);
        sum += d_b[j];
    }
    double lse = (double)maxval + log(sum);
    float scale = (float)(1.0 / sum), tsum = 0.0f;
    for (int64_t j = 0; j < n; j++) {     /* the loss reads z_j before p_j replaces it */
        if (t_b[j] != 0.0f) loss -= (double)t_b[j] * ((double)z_b[j] - lse);
        z_b[j] = d_b[j] * scale;
        tsum += t_b[j];
    }
    for (int64_t j = 0; j < n; j++) d_b[j] = (z_b[j] * tsum - t_b[j]) * inv_B;
    return loss;
}

/* sigmoid outputs with cross-entropy, one row: z_b becomes the probabilities, d_b = (p - t)/B */
static double sigmoid_cross_entropy_row(float *z_b, const float *t_b, float *d_b, int64_t n,
                                        float inv_B) {
    double loss = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double zz = z_b[j];
        loss += (zz > 0.0 ? zz : 0.0) + log1p(exp(-fabs(zz))) - (double)t_b[j] * zz;
    }
    pynn_sigmoid_forward(z_b, z_b, n);
    for (int64_t j = 0; j < n; j++) d_b[j] = (z_b[j] - t_b[j]) * inv_B;
    return loss;
}

/* the quadratic loss of one row of outputs y_b = f(z) (kind `output`), and d_b = dL/dz */
static double quadratic_row(int output, const float *y_b, const float *t_b, float *d_b,
                            int64_t n, int64_t B) {
    double loss = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double diff = (double)t_b[j] - (double)y_b[j];
        loss += diff * diff;
    }
    float scale = 2.0f / (float)B;                          /* dL/dy = 2 (y - t) / B */
    for (int64_t j = 0; j < n; j++) d_b[j] = scale * (y_b[j] - t_b[j]);
    pynn_activation_backward(output, d_b, y_b, d_b, 1, n);
    return loss;
}

void pynn_net_loss_delta_rows(const struct pynn_net *net, float *z, const float *T, float *delta,
                              double *row_loss, int64_t r0, int64_t r1, int64_t B,
                              const float *X) {
    int64_t n = net->sizes[net->n_layers], n_in = net->sizes[0];
    float inv_B = 1.0f / (float)B;
    for (int64_t r = r0; r < r1; r++) {
        /* a NaN or Inf input poisons the gradients even when the loss comes out finite (ReLU
         * turns -Inf into 0): its row's loss is NaN, so the batch takes no step */
        int x_ok = all_finite(X + r * n_in, n_in);
        float *z_b = z + r * n, *d_b = delta + r * n;
        const float *t_b = T + r * n;
        double loss;
        if (net->loss == PYNN_LOSS_CROSS_ENTROPY && net->output == PYNN_SOFTMAX)
            loss = softmax_cross_entropy_row(z_b, t_b, d_b, n, inv_B);
        else if (net->loss == PYNN_LOSS_CROSS_ENTROPY)
            loss = sigmoid_cross_entropy_row(z_b, t_b, d_b, n, inv_B);
        else
            loss = quadratic_row(net->output, z_b, t_b, d_b, n, B);
        row_loss[r] = x_ok ? loss : NAN;
    }
}

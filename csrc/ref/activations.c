/*
 * activations.c: the functions applied element by element (eq. 4), and softmax (eq. 23).
 *
 * Each forward sits beside its backward. The backward takes the forward's *output* rather than
 * its input, because every derivative here is cheapest written in terms of it:
 * sigmoid' = s(1-s), tanh' = 1-t^2, relu' = [out > 0]. dinp may alias dout, out may alias inp.
 * The fused network step (csrc/fast/net*.c) applies the same formulas inside its own passes.
 *
 * A readable reference kernel (csrc/ref/): plain loops a student can set beside the paper;
 * no intrinsics, no threads, no tricks for speed.
 */
#include <math.h>
#include "internal.h"

static int check_ew(const void *a, const void *b, const void *c, int64_t n) {
    if (n < 0) return PYNN_ERR_SIZE;
    if (n > 0 && (a == NULL || b == NULL || c == NULL)) return PYNN_ERR_NULL;
    return PYNN_OK;
}

/* sigmoid (eq. 17): out = 1 / (1 + e^-inp), written so that neither branch overflows */
int pynn_sigmoid_forward(float *out, const float *inp, int64_t n) {
    PYNN_TRY(check_ew(out, inp, inp, n));
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float e = expf(x);          /* e^x <= 1, so no overflow for very negative x */
            out[i] = e / (1.0f + e);
        }
    }
    return PYNN_OK;
}

/* the forward was out = s(inp); ds/dinp = s(1 - s), so dinp = dout * out * (1 - out) */
int pynn_sigmoid_backward(float *dinp, const float *out, const float *dout, int64_t n) {
    PYNN_TRY(check_ew(dinp, out, dout, n));
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
    return PYNN_OK;
}

/* ReLU: out = max(0, inp). NaN propagates (a NaN input must not turn into a silent 0). */
int pynn_relu_forward(float *out, const float *inp, int64_t n) {
    PYNN_TRY(check_ew(out, inp, inp, n));
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
    return PYNN_OK;
}

/* the forward passed inp through where it was positive: the gradient passes there too */
int pynn_relu_backward(float *dinp, const float *out, const float *dout, int64_t n) {
    PYNN_TRY(check_ew(dinp, out, dout, n));
    for (int64_t i = 0; i < n; i++) {   /* both read first: a select the compiler vectorises */
        float d = dout[i], o = out[i];
        dinp[i] = o > 0.0f ? d : 0.0f;
    }
    return PYNN_OK;
}

int pynn_tanh_forward(float *out, const float *inp, int64_t n) {
    PYNN_TRY(check_ew(out, inp, inp, n));
    for (int64_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
    return PYNN_OK;
}

/* the forward was out = tanh(inp); d tanh = 1 - tanh^2 */
int pynn_tanh_backward(float *dinp, const float *out, const float *dout, int64_t n) {
    PYNN_TRY(check_ew(dinp, out, dout, n));
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
    return PYNN_OK;
}

/* softmax (eq. 23) over each row of inp (B,n): out_j = e^(z_j - max) / sum_k e^(z_k - max).
 * Subtracting the row's maximum changes nothing mathematically (it cancels in the fraction)
 * and keeps every exponent <= 0, so z = 1000 does not overflow. */
int pynn_softmax_forward(float *out, const float *inp, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    PYNN_TRY(check_ew(out, inp, inp, B * n));
    if (B * n == 0) return PYNN_OK;     /* rows without columns: nothing to do, however many */
    for (int64_t b = 0; b < B; b++) {
        const float *inp_b = inp + b * n;
        float *out_b = out + b * n;
        float maxval = -INFINITY;
        for (int64_t j = 0; j < n; j++) if (inp_b[j] > maxval) maxval = inp_b[j];
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            out_b[j] = expf(inp_b[j] - maxval);
            sum += out_b[j];
        }
        float scale = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++) out_b[j] *= scale;
    }
    return PYNN_OK;
}

/* the Jacobian of softmax is d out_i / d z_j = out_i (delta_ij - out_j), so
 * dinp_i = out_i * (dout_i - sum_j dout_j out_j), row by row */
int pynn_softmax_backward(float *dinp, const float *out, const float *dout, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    PYNN_TRY(check_ew(dinp, out, dout, B * n));
    if (B * n == 0) return PYNN_OK;
    for (int64_t b = 0; b < B; b++) {
        const float *out_b = out + b * n, *dout_b = dout + b * n;
        float *dinp_b = dinp + b * n;
        double dot = 0.0;
        for (int64_t j = 0; j < n; j++) dot += (double)dout_b[j] * out_b[j];
        for (int64_t j = 0; j < n; j++) dinp_b[j] = out_b[j] * (dout_b[j] - (float)dot);
    }
    return PYNN_OK;
}

int pynn_activation_forward(int kind, float *out, const float *inp, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    switch (kind) {
    case PYNN_LINEAR:
        PYNN_TRY(check_ew(out, inp, inp, B * n));
        if (out != inp) for (int64_t i = 0; i < B * n; i++) out[i] = inp[i];
        return PYNN_OK;
    case PYNN_SIGMOID: return pynn_sigmoid_forward(out, inp, B * n);
    case PYNN_RELU:    return pynn_relu_forward(out, inp, B * n);
    case PYNN_TANH:    return pynn_tanh_forward(out, inp, B * n);
    case PYNN_SOFTMAX: return pynn_softmax_forward(out, inp, B, n);
    default:           return PYNN_ERR_ARG;
    }
}

int pynn_activation_backward(int kind, float *dinp, const float *out, const float *dout,
                             int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    switch (kind) {
    case PYNN_LINEAR:
        PYNN_TRY(check_ew(dinp, out, dout, B * n));
        if (dinp != dout) for (int64_t i = 0; i < B * n; i++) dinp[i] = dout[i];
        return PYNN_OK;
    case PYNN_SIGMOID: return pynn_sigmoid_backward(dinp, out, dout, B * n);
    case PYNN_RELU:    return pynn_relu_backward(dinp, out, dout, B * n);
    case PYNN_TANH:    return pynn_tanh_backward(dinp, out, dout, B * n);
    case PYNN_SOFTMAX: return pynn_softmax_backward(dinp, out, dout, B, n);
    default:           return PYNN_ERR_ARG;
    }
}

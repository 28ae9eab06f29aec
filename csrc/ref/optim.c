/*
 * optim.c: the step downhill (section 4.3): W <- W - eta * dL/dW, and its two refinements.
 *
 * Each update walks n parameters once. weight_decay adds the L2 penalty's gradient
 * (lambda * w, from the term lambda/2 |w|^2 in the loss) to dw before the step. The fused
 * network step runs the same formulas through its step kernels (csrc/fast/fast.h).
 *
 * A readable reference kernel (csrc/ref/): plain loops a student can set beside the paper;
 * no intrinsics, no threads, no tricks for speed.
 */
#include <math.h>
#include "internal.h"

static int check_update(const void *w, const void *dw, const void *state, int64_t n, float lr) {
    if (n < 0) return PYNN_ERR_SIZE;
    if (!isfinite(lr) || lr < 0.0f) return PYNN_ERR_ARG;
    if (n > 0 && (w == NULL || dw == NULL || state == NULL)) return PYNN_ERR_NULL;
    return PYNN_OK;
}

/* plain gradient descent (section 4.3): w <- w - lr * (dw + weight_decay * w) */
int pynn_sgd_update(float *w, const float *dw, int64_t n, float lr, float weight_decay) {
    PYNN_TRY(check_update(w, dw, w, n, lr));
    for (int64_t i = 0; i < n; i++) w[i] -= lr * (dw[i] + weight_decay * w[i]);
    return PYNN_OK;
}

/* momentum (heavy ball, as PyTorch's SGD does it): vel <- momentum * vel + g; w <- w - lr * vel.
 * vel remembers the recent direction, so steps along a consistent slope grow and
 * steps that flip sign from batch to batch cancel. */
int pynn_momentum_update(float *w, float *vel, const float *dw, int64_t n, float lr,
                         float momentum, float weight_decay) {
    PYNN_TRY(check_update(w, dw, vel, n, lr));
    if (!(momentum >= 0.0f && momentum < 1.0f)) return PYNN_ERR_ARG;
    for (int64_t i = 0; i < n; i++) {
        float g = dw[i] + weight_decay * w[i];
        vel[i] = momentum * vel[i] + g;
        w[i] -= lr * vel[i];
    }
    return PYNN_OK;
}

/* Adam (Kingma & Ba 2015): running means of g (m) and g^2 (v), bias-corrected for their zero
 * start, step = lr * m_hat / (sqrt(v_hat) + eps). step counts from 1. */
int pynn_adam_update(float *w, float *m, float *v, const float *dw, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    PYNN_TRY(check_update(w, dw, m, n, lr));
    if (n > 0 && v == NULL) return PYNN_ERR_NULL;
    if (!(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f && eps > 0.0f) || step < 1)
        return PYNN_ERR_ARG;
    float c1 = 1.0f / (1.0f - powf(beta1, (float)step));
    float c2 = 1.0f / (1.0f - powf(beta2, (float)step));
    for (int64_t i = 0; i < n; i++) {
        float g = dw[i] + weight_decay * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        w[i] -= lr * (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
    }
    return PYNN_OK;
}

/*
 * conv.h: the checks the readable (ref/conv.c) and the fast (fast/conv.c) convolution and
 * pooling both run before touching memory, and the output sizes they share. Not part of the
 * API (that is pynn.h).
 */
#ifndef PYNN_CONV_H
#define PYNN_CONV_H
#include <stdint.h>
#include "internal.h"

/* a product of up to four sizes as int64, or -1 when one is negative or it overflows */
static inline int64_t pynn_mul4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return pynn_mul_size(pynn_mul_size(a, b), pynn_mul_size(c, d));
}

/* the shape's sizes, checked: OH and OW, the inner dimension K = C*KH*KW and the counts of
 * the input, weight and output arrays, so that every index below fits in int64 */
struct pynn_conv2d_sizes {
    int64_t OH, OW, K, P;       /* P = OH*OW output positions per image */
    int64_t n_inp, n_weight, n_out;
};

static inline int pynn_conv2d_check(const struct pynn_conv2d_shape *s, struct pynn_conv2d_sizes *z) {
    if (s == NULL) return PYNN_ERR_NULL;
    if (s->B < 0 || s->C < 1 || s->H < 1 || s->W < 1 || s->OC < 1 || s->KH < 1 || s->KW < 1)
        return PYNN_ERR_SIZE;
    if (s->stride < 1 || s->pad < 0) return PYNN_ERR_ARG;
    /* the padded image, H + 2 pad, must fit and hold the kernel */
    if (s->pad > (INT64_MAX - s->H) / 2 || s->pad > (INT64_MAX - s->W) / 2) return PYNN_ERR_OVERFLOW;
    int64_t Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
    if (Hp < s->KH || Wp < s->KW) return PYNN_ERR_SIZE;
    z->OH = (Hp - s->KH) / s->stride + 1;
    z->OW = (Wp - s->KW) / s->stride + 1;
    z->K = pynn_mul4(s->C, s->KH, s->KW, 1);
    z->P = pynn_mul_size(z->OH, z->OW);
    z->n_inp = pynn_mul4(s->B, s->C, s->H, s->W);
    z->n_weight = pynn_mul_size(s->OC, z->K);
    z->n_out = pynn_mul4(s->B, s->OC, z->OH, z->OW);
    /* the unfolded patches of one image, (K,P), and the GEMM's M*N*K */
    int64_t col = pynn_mul_size(z->K, z->P);
    if (z->K < 0 || z->P < 0 || z->n_inp < 0 || z->n_weight < 0 || z->n_out < 0 || col < 0 ||
        pynn_mul4(s->OC, z->K, z->P, 1) < 0)
        return PYNN_ERR_OVERFLOW;
    return PYNN_OK;
}

/* the sizes of a k x k, stride k pooling of (B,C,H,W) into (B,C,H/k,W/k) */
static inline int pynn_pool_check(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k) {
    if (B < 0 || C < 0 || H < 1 || W < 1) return PYNN_ERR_SIZE;
    if (k < 1) return PYNN_ERR_ARG;
    if (k > H || k > W) return PYNN_ERR_SIZE;
    if (pynn_mul_size(H, W) < 0 || pynn_mul_size(H, W) > INT32_MAX) return PYNN_ERR_OVERFLOW;
    if (pynn_mul4(B, C, H, W) < 0) return PYNN_ERR_OVERFLOW;
    return PYNN_OK;
}

/* whether every argmax of a (B*C planes of OH x OW) pooling lies in its own k x k window of
 * its (H,W) plane: the backward writes only where this holds */
static inline int pynn_pool_argmax_ok(const int32_t *argmax, int64_t planes, int64_t H,
                                      int64_t W, int64_t k) {
    int64_t OH = H / k, OW = W / k;
    for (int64_t q = 0; q < planes; q++) {
        const int32_t *am = argmax + q * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int64_t idx = am[y * OW + x];
                if (idx < 0 || idx >= H * W) return 0;
                if ((idx / W) / k != y || (idx % W) / k != x) return 0;
            }
    }
    return 1;
}

/* the checks of both pooling backwards; B*C == 0 passes them (nothing to write) */
static inline int pynn_pool_backward_check(const float *dinp, const float *dout,
                                           const int32_t *argmax, int64_t B, int64_t C,
                                           int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    if (dinp == NULL || dout == NULL || argmax == NULL) return PYNN_ERR_NULL;
    return pynn_pool_argmax_ok(argmax, B * C, H, W, k) ? PYNN_OK : PYNN_ERR_ARG;
}

/* channel o of pynn_conv2d_relu_pool_backward_weights (pynn.h), the readable loops: only the
 * outputs the windows chose carry a gradient (v = dout where out > 0), and each reached the
 * weights through the pixels its patch read, so dweight[o] gathers v times that patch, window
 * by window (zero in the padding), and dbias[o] gathers v */
static inline void pynn_relu_pool_weights_channel(float *dweight, float *dbias,
                                                  const float *dout, const float *out,
                                                  const int32_t *argmax, const float *inp,
                                                  const struct pynn_conv2d_shape *s,
                                                  const struct pynn_conv2d_sizes *z, int64_t k,
                                                  int64_t o) {
    int64_t n = (z->OH / k) * (z->OW / k);          /* windows per plane */
    float *dw = dweight + o * z->K;
    for (int64_t e = 0; e < z->K; e++) dw[e] = 0.0f;
    if (dbias != NULL) dbias[o] = 0.0f;
    for (int64_t b = 0; b < s->B; b++) {
        int64_t q = b * s->OC + o;                    /* the plane (b,o) */
        for (int64_t t = 0; t < n; t++) {
            if (!(out[q * n + t] > 0.0f)) continue;   /* ReLU passed nothing back */
            float v = 0.0f + dout[q * n + t];
            int64_t y = argmax[q * n + t] / z->OW, x = argmax[q * n + t] % z->OW;
            if (dbias != NULL) dbias[o] += v;
            for (int64_t c = 0; c < s->C; c++)
                for (int64_t i = 0; i < s->KH; i++)
                    for (int64_t jj = 0; jj < s->KW; jj++) {
                        int64_t h = s->stride * y + i - s->pad, w = s->stride * x + jj - s->pad;
                        float px = h < 0 || h >= s->H || w < 0 || w >= s->W
                                       ? 0.0f : inp[((b * s->C + c) * s->H + h) * s->W + w];
                        dw[(c * s->KH + i) * s->KW + jj] += v * px;
                    }
        }
    }
}

/* the checks of pynn_conv2d_relu_pool_backward_weights (both): the convolution's shape, its
 * output's pooling, the pointers, and every argmax in its window; B == 0 passes them */
static inline int pynn_relu_pool_weights_check(float *dweight, const float *dout,
                                               const float *out, const int32_t *argmax,
                                               const float *inp,
                                               const struct pynn_conv2d_shape *s, int64_t k,
                                               struct pynn_conv2d_sizes *z, int check_argmax) {
    PYNN_TRY(pynn_conv2d_check(s, z));
    PYNN_TRY(pynn_pool_check(s->B, s->OC, z->OH, z->OW, k));
    if (dweight == NULL) return PYNN_ERR_NULL;
    if (s->B == 0) return PYNN_OK;
    if (dout == NULL || out == NULL || argmax == NULL || inp == NULL) return PYNN_ERR_NULL;
    if (check_argmax && !pynn_pool_argmax_ok(argmax, s->B * s->OC, z->OH, z->OW, k))
        return PYNN_ERR_ARG;
    return PYNN_OK;
}

#endif

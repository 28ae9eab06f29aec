/*
 * ref/conv.c: the readable convolution and max pooling.
 *
 * This is the reference: plain loops over the sum that defines each output, no blocking, no
 * intrinsics, no threads, what a student reads next to docs/MATH.md. The fast kernels in
 * fast/conv.c are tested against these, and these against numpy in float64.
 *
 * Shapes are NCHW (pynn.h): inp (B,C,H,W), weight (OC,C,KH,KW), out (B,OC,OH,OW).
 */
#include "conv.h"

/* the input pixel a kernel tap reads, or 0 in the zero padding around the image */
static float pixel(const float *plane, int64_t H, int64_t W, int64_t h, int64_t w) {
    return h < 0 || h >= H || w < 0 || w >= W ? 0.0f : plane[h * W + w];
}

/* out[b,o,y,x] = bias[o] + sum over c,i,j of weight[o,c,i,j] * inp[b,c, s*y+i-p, s*x+j-p] */
int pynn_conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                            const struct pynn_conv2d_shape *s) {
    struct pynn_conv2d_sizes z;
    PYNN_TRY(pynn_conv2d_check(s, &z));
    if (s->B == 0) return PYNN_OK;
    if (out == NULL || inp == NULL || weight == NULL) return PYNN_ERR_NULL;
    int64_t C = s->C, H = s->H, W = s->W, KH = s->KH, KW = s->KW;
    for (int64_t b = 0; b < s->B; b++) {
        const float *inp_b = inp + b * C * H * W;
        for (int64_t o = 0; o < s->OC; o++) {
            const float *w_o = weight + o * z.K;
            float *out_bo = out + (b * s->OC + o) * z.P;
            for (int64_t y = 0; y < z.OH; y++) {
                for (int64_t x = 0; x < z.OW; x++) {
                    float sum = bias != NULL ? bias[o] : 0.0f;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < KH; i++)
                            for (int64_t j = 0; j < KW; j++)
                                sum += w_o[(c * KH + i) * KW + j] *
                                       pixel(inp_b + c * H * W, H, W, y * s->stride + i - s->pad,
                                             x * s->stride + j - s->pad);
                    out_bo[y * z.OW + x] = sum;
                }
            }
        }
    }
    return PYNN_OK;
}

/* In the forward pass every output took out += weight[o,c,i,j] * inp[b,c,h,w] (h = s*y+i-p,
 * w = s*x+j-p) for each tap inside the image, so now, for each output's dout:
 *   dweight[o,c,i,j] += inp[b,c,h,w] * dout,   dinp[b,c,h,w] += weight[o,c,i,j] * dout,
 * and dbias[o] += dout, since the bias was added to every output of channel o. Taps that fell
 * in the padding read a constant zero: they pass no gradient on. */
int pynn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight,
                             const struct pynn_conv2d_shape *s) {
    struct pynn_conv2d_sizes z;
    PYNN_TRY(pynn_conv2d_check(s, &z));
    if (s->B == 0) return PYNN_OK;
    if (dweight == NULL || dout == NULL || inp == NULL || (dinp != NULL && weight == NULL))
        return PYNN_ERR_NULL;
    int64_t C = s->C, H = s->H, W = s->W, KH = s->KH, KW = s->KW;
    for (int64_t b = 0; b < s->B; b++) {
        const float *inp_b = inp + b * C * H * W;
        float *dinp_b = dinp != NULL ? dinp + b * C * H * W : NULL;
        for (int64_t o = 0; o < s->OC; o++) {
            const float *w_o = weight != NULL ? weight + o * z.K : NULL;
            float *dw_o = dweight + o * z.K;
            const float *dout_bo = dout + (b * s->OC + o) * z.P;
            for (int64_t y = 0; y < z.OH; y++) {
                for (int64_t x = 0; x < z.OW; x++) {
                    float d = dout_bo[y * z.OW + x];
                    if (dbias != NULL) dbias[o] += d;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < KH; i++)
                            for (int64_t j = 0; j < KW; j++) {
                                int64_t h = y * s->stride + i - s->pad, w = x * s->stride + j - s->pad;
                                if (h < 0 || h >= H || w < 0 || w >= W) continue;   /* padding */
                                int64_t tap = (c * KH + i) * KW + j, at = (c * H + h) * W + w;
                                dw_o[tap] += inp_b[at] * d;
                                if (dinp_b != NULL) dinp_b[at] += w_o[tap] * d;
                            }
                }
            }
        }
    }
    return PYNN_OK;
}

/* out[b,c,y,x] = the largest of the k x k window inp[b,c, k*y .. k*y+k, k*x .. k*x+k); a NaN
 * wins (the first one met), else the first of equals in row-major order */
int pynn_maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp, int64_t B,
                               int64_t C, int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    if (out == NULL || argmax == NULL || inp == NULL) return PYNN_ERR_NULL;
    int64_t OH = H / k, OW = W / k;
    for (int64_t q = 0; q < B * C; q++) {          /* each plane (b,c) in turn */
        const float *inp_q = inp + q * H * W;
        for (int64_t y = 0; y < OH; y++) {
            for (int64_t x = 0; x < OW; x++) {
                int64_t best = (k * y) * W + k * x;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++) {
                        int64_t at = (k * y + i) * W + k * x + j;
                        float v = inp_q[at], m = inp_q[best];
                        if (v > m || (v != v && m == m)) best = at;
                    }
                out[(q * OH + y) * OW + x] = inp_q[best];
                argmax[(q * OH + y) * OW + x] = (int32_t)best;
            }
        }
    }
    return PYNN_OK;
}

/* in the forward pass out = inp[argmax], so the gradient goes there and nowhere else:
 * dinp[b,c, argmax] += dout */
int pynn_maxpool2d_backward_ref(float *dinp, const float *dout, const int32_t *argmax, int64_t B,
                                int64_t C, int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_backward_check(dinp, dout, argmax, B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    int64_t n = (H / k) * (W / k);                  /* outputs per plane */
    for (int64_t q = 0; q < B * C; q++)
        for (int64_t t = 0; t < n; t++)
            dinp[q * H * W + argmax[q * n + t]] += dout[q * n + t];
    return PYNN_OK;
}

/* the first layer's backward through ReLU and pooling (pynn_relu_pool_weights_channel in
 * conv.h, one output channel at a time) */
int pynn_conv2d_relu_pool_backward_weights_ref(float *dweight, float *dbias, const float *dout,
                                               const float *out, const int32_t *argmax,
                                               const float *inp,
                                               const struct pynn_conv2d_shape *s, int64_t k) {
    struct pynn_conv2d_sizes z;
    PYNN_TRY(pynn_relu_pool_weights_check(dweight, dout, out, argmax, inp, s, k, &z, 1));
    for (int64_t o = 0; o < s->OC; o++)
        pynn_relu_pool_weights_channel(dweight, dbias, dout, out, argmax, inp, s, &z, k, o);
    return PYNN_OK;
}

/*
 * augment.c: distorting digits to make more training data (Simard, Steinkraus & Platt 2003).
 *
 * One warp serves every geometric distortion: each output pixel looks up the input at a point
 * given by an affine map (shift, rotation, scale, shear) plus, optionally, a displacement field
 * (the elastic distortion), and interpolates bilinearly. The elastic fields are random numbers
 * smoothed by a Gaussian, which the second kernel does. The random numbers themselves come from
 * the caller (pynn/augment.py draws them from a seeded numpy Generator), so a seed gives the
 * same distortions every time. Images are parallel across threads; no intrinsics.
 */
#include <math.h>
#include "internal.h"

static int check_stack(const void *out, const void *inp, int64_t n, int64_t H, int64_t W,
                       int64_t *size) {
    if (n < 0 || H < 0 || W < 0) return PYNN_ERR_SIZE;
    *size = pynn_mul_size(H, W);
    if (*size < 0 || pynn_mul_size(n, *size) < 0) return PYNN_ERR_OVERFLOW;
    if (n * *size > 0 && (out == NULL || inp == NULL)) return PYNN_ERR_NULL;
    return PYNN_OK;
}

/* img (H,W) at the real point (y,x) in pixel units, bilinear between pixel centres, 0 outside */
static inline float bilinear(const float *img, int64_t H, int64_t W, float y, float x) {
    float fy = y - 0.5f, fx = x - 0.5f;
    if (fy >= 0.0f && fx >= 0.0f && fy < (float)(H - 1) && fx < (float)(W - 1)) {
        /* all four neighbours inside: the common case, without a test per neighbour */
        int64_t r = (int64_t)fy, c = (int64_t)fx;
        float ty = fy - (float)r, tx = fx - (float)c;
        const float *p = img + r * W + c;
        return (1.0f - ty) * ((1.0f - tx) * p[0] + tx * p[1]) + ty * ((1.0f - tx) * p[W] + tx * p[W + 1]);
    }
    if (!(fy > -1.0f && fy < (float)H && fx > -1.0f && fx < (float)W)) return 0.0f;
    int64_t r = (int64_t)floorf(fy), c = (int64_t)floorf(fx);
    float ty = fy - (float)r, tx = fx - (float)c;
    float v00 = 0.0f, v01 = 0.0f, v10 = 0.0f, v11 = 0.0f;
    if (r >= 0) {
        if (c >= 0) v00 = img[r * W + c];
        if (c + 1 < W) v01 = img[r * W + c + 1];
    }
    if (r + 1 < H) {
        if (c >= 0) v10 = img[(r + 1) * W + c];
        if (c + 1 < W) v11 = img[(r + 1) * W + c + 1];
    }
    return (1.0f - ty) * ((1.0f - tx) * v00 + tx * v01) + ty * ((1.0f - tx) * v10 + tx * v11);
}

/* out (n,H,W): out_k at pixel centre (y,x) is inp_k at the point
 *     u = m[0]*x + m[1]*y + m[2] + dx_k(y,x),   v = m[3]*x + m[4]*y + m[5] + dy_k(y,x)
 * with m = mats + 6k (x horizontal, y down, pixel units), bilinear, 0 outside the image. dx and
 * dy are (n,fh,fw) displacement fields, or both NULL for a purely affine warp; a field coarser
 * than the image (fh < H) is read bilinearly at the pixel's place in it, (y*fh/H, x*fw/W), so
 * a smooth field can be made on a coarse grid. out must not overlap inp. */
int pynn_warp(float *out, const float *inp, int64_t n, int64_t H, int64_t W, const float *mats,
              const float *dx, const float *dy, int64_t fh, int64_t fw) {
    int64_t size;
    PYNN_TRY(check_stack(out, inp, n, H, W, &size));
    if (n * size == 0) return PYNN_OK;
    if (mats == NULL) return PYNN_ERR_NULL;
    if ((dx == NULL) != (dy == NULL)) return PYNN_ERR_NULL;
    if (dx && (fh < 1 || fw < 1)) return PYNN_ERR_SIZE;
    int64_t fsize = dx ? pynn_mul_size(fh, fw) : 0;
    if (fsize < 0 || pynn_mul_size(n, fsize) < 0) return PYNN_ERR_OVERFLOW;
    for (int64_t i = 0; i < 6 * n; i++)
        if (!isfinite(mats[i])) return PYNN_ERR_ARG;
    int same = dx && fh == H && fw == W;          /* a field at the image's own resolution */
    float sy = (float)fh / (float)H, sx = (float)fw / (float)W;
    #pragma omp parallel for schedule(static) if (n * size > (1 << 16))
    for (int64_t k = 0; k < n; k++) {
        const float *m = mats + 6 * k, *img = inp + k * size;
        const float *dx_k = dx ? dx + k * fsize : NULL, *dy_k = dy ? dy + k * fsize : NULL;
        float *dst = out + k * size;
        for (int64_t r = 0; r < H; r++) {
            float y = (float)r + 0.5f;
            for (int64_t c = 0; c < W; c++) {
                float x = (float)c + 0.5f;
                float u = m[0] * x + m[1] * y + m[2], v = m[3] * x + m[4] * y + m[5];
                if (same) {
                    u += dx_k[r * W + c];
                    v += dy_k[r * W + c];
                } else if (dx_k) {
                    u += bilinear(dx_k, fh, fw, y * sy, x * sx);
                    v += bilinear(dy_k, fh, fw, y * sy, x * sx);
                }
                dst[r * W + c] = bilinear(img, H, W, v, u);
            }
        }
    }
    return PYNN_OK;
}

#define PYNN_MAX_BLUR_RADIUS 64

/* out (n,H,W): each image of inp convolved with a Gaussian of standard deviation sigma (cut at
 * 3 sigma, at most 64 pixels) and multiplied by gain, 0 outside the image; rows first into tmp
 * (n,H,W), then columns. sigma == 0 only multiplies. */
int pynn_gaussian_blur(float *out, float *tmp, const float *inp, int64_t n, int64_t H, int64_t W,
                       float sigma, float gain) {
    int64_t size;
    PYNN_TRY(check_stack(out, inp, n, H, W, &size));
    if (!(sigma >= 0.0f) || !isfinite(sigma) || !isfinite(gain)) return PYNN_ERR_ARG;
    if (n * size == 0) return PYNN_OK;
    if (tmp == NULL) return PYNN_ERR_NULL;
    float g[2 * PYNN_MAX_BLUR_RADIUS + 1];
    int64_t R = (int64_t)ceilf(3.0f * sigma);
    if (R > PYNN_MAX_BLUR_RADIUS) R = PYNN_MAX_BLUR_RADIUS;
    double total = 0.0;
    for (int64_t i = -R; i <= R; i++) {
        double e = sigma > 0.0f ? exp(-0.5 * (double)(i * i) / ((double)sigma * sigma)) : 1.0;
        g[i + R] = (float)e;
        total += e;
    }
    for (int64_t i = 0; i <= 2 * R; i++) g[i] = (float)(g[i] / total);
    #pragma omp parallel for schedule(static) if (n * size > (1 << 16))
    for (int64_t k = 0; k < n; k++) {
        const float *img = inp + k * size;
        float *t = tmp + k * size, *dst = out + k * size;
        for (int64_t r = 0; r < H; r++) {
            for (int64_t c = 0; c < W; c++) {
                int64_t lo = c - R < 0 ? -c : -R, hi = c + R >= W ? W - 1 - c : R;
                float acc = 0.0f;
                for (int64_t i = lo; i <= hi; i++) acc += g[i + R] * img[r * W + c + i];
                t[r * W + c] = gain * acc;
            }
        }
        for (int64_t r = 0; r < H; r++) {
            int64_t lo = r - R < 0 ? -r : -R, hi = r + R >= H ? H - 1 - r : R;
            for (int64_t c = 0; c < W; c++) dst[r * W + c] = 0.0f;
            for (int64_t i = lo; i <= hi; i++) {
                const float *trow = t + (r + i) * W;
                float gi = g[i + R];
                for (int64_t c = 0; c < W; c++) dst[r * W + c] += gi * trow[c];
            }
        }
    }
    return PYNN_OK;
}

/*
 * augment.c: distorting digits to make more training data (Simard, Steinkraus & Platt 2003).
 *
 * One warp serves every geometric distortion: each output pixel looks up the input at a point
 * given by an affine map (shift, rotation, scale, shear) plus, optionally, a displacement field
 * (the elastic distortion), and interpolates bilinearly. The elastic fields are random numbers
 * smoothed by a Gaussian, which the second kernel does. The random numbers themselves come from
 * the caller (pynn/augment.py draws them from a seeded numpy Generator), so a seed gives the
 * same distortions every time. Images are shared among the pool's threads (pynn_parallel_for),
 * each computed by one thread, so the results do not depend on the thread count; no intrinsics.
 * Image kernels (csrc/image/): they prepare the network's input and never touch a network.
 */
#include <math.h>
#include <string.h>
#include "fast/fast.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYNN_X86 1
#endif

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

struct warp_job {
    float *out;
    const float *inp, *mats, *dx, *dy;
    int64_t H, W, size, fh, fw, fsize;
};

/* images [k0, k1) of pynn_warp */
static void warp_images(int64_t k0, int64_t k1, void *arg) {
    const struct warp_job *job = arg;
    const int64_t H = job->H, W = job->W, size = job->size, fh = job->fh, fw = job->fw;
    const float *dx = job->dx, *dy = job->dy;
    int same = dx && fh == H && fw == W;          /* a field at the image's own resolution */
    float sy = (float)fh / (float)H, sx = (float)fw / (float)W;
    for (int64_t k = k0; k < k1; k++) {
        const float *m = job->mats + 6 * k, *img = job->inp + k * size;
        const float *dx_k = dx ? dx + k * job->fsize : NULL, *dy_k = dy ? dy + k * job->fsize : NULL;
        float *dst = job->out + k * size;
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
    if (fh < 0 || fw < 0) return PYNN_ERR_SIZE;       /* even when there is nothing to warp */
    if (n * size == 0) return PYNN_OK;
    if (mats == NULL) return PYNN_ERR_NULL;
    if ((dx == NULL) != (dy == NULL)) return PYNN_ERR_NULL;
    if (dx && (fh < 1 || fw < 1)) return PYNN_ERR_SIZE;
    int64_t fsize = dx ? pynn_mul_size(fh, fw) : 0;
    if (fsize < 0 || pynn_mul_size(n, fsize) < 0) return PYNN_ERR_OVERFLOW;
    for (int64_t i = 0; i < 6 * n; i++)
        if (!isfinite(mats[i])) return PYNN_ERR_ARG;
    struct warp_job job = {out, inp, mats, dx, dy, H, W, size, fh, fw, fsize};
    unsigned fp = pynn_flush_denormals();
    double flops = (dx ? 60.0 : 30.0) * (double)(n * size);      /* about, per pixel */
    pynn_parallel_for(pynn_threads_for(flops), n, warp_images, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

#define PYNN_MAX_BLUR_RADIUS 64

/* g[0..2R]: a Gaussian of standard deviation sigma cut at 3 sigma (R at most 64), summing to 1;
 * returns R. sigma == 0 gives the single tap 1. */
static int64_t gaussian_taps(float *g, float sigma) {
    int64_t R = (int64_t)ceilf(3.0f * sigma);
    if (R > PYNN_MAX_BLUR_RADIUS) R = PYNN_MAX_BLUR_RADIUS;
    double total = 0.0;
    for (int64_t i = -R; i <= R; i++) {
        double e = sigma > 0.0f ? exp(-0.5 * (double)(i * i) / ((double)sigma * sigma)) : 1.0;
        g[i + R] = (float)e;
        total += e;
    }
    for (int64_t i = 0; i <= 2 * R; i++) g[i] = (float)(g[i] / total);
    return R;
}

struct blur_job {
    float *out, *tmp;
    const float *inp;
    int64_t H, W, size, R;
    float gain;
    float g[2 * PYNN_MAX_BLUR_RADIUS + 1];      /* the taps, g[0..2R] */
};

/* images [k0, k1) of pynn_gaussian_blur */
static void blur_images(int64_t k0, int64_t k1, void *arg) {
    const struct blur_job *job = arg;
    const int64_t H = job->H, W = job->W, size = job->size, R = job->R;
    const float *g = job->g;
    const float gain = job->gain;
    for (int64_t k = k0; k < k1; k++) {
        const float *img = job->inp + k * size;
        float *t = job->tmp + k * size, *dst = job->out + k * size;
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
}

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
    struct blur_job job = {out, tmp, inp, H, W, size, 0, gain, {0.0f}};
    job.R = gaussian_taps(job.g, sigma);
    unsigned fp = pynn_flush_denormals();
    double flops = 4.0 * (double)(2 * job.R + 1) * (double)(n * size);
    pynn_parallel_for(pynn_threads_for(flops), n, blur_images, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* ---- every distortion in one pass over each image (pynn_distort) ----
 * The elastic field is linear in its noise: smoothed by the Gaussian G on the coarse grid, then
 * read bilinearly (U) at each pixel, it is U_y G_y N G_x^T U_x^T. The two products A_y = U_y G_y
 * (H, fh) and A_x = U_x G_x (W, fw) are made once per call, so an image's field at full
 * resolution is two small dense products with the noise, rows of W floats that vectorise, in
 * place of a blur and a bilinear read per pixel. The warp then reads a copy of the image with a
 * zero border, its coordinates clamped into the border, so that every pixel takes the same
 * branch-free path (four gathers) whether it falls inside the image, across its edge or far
 * outside (where the border's zeros give 0, as pynn_warp's test does). The stroke width works
 * on the warped image while it is still in cache. The kernel is compiled for each SIMD set and
 * runs on the one pynn_kernels_select chose; all of them do the same arithmetic in the same
 * order (no contraction into FMA under -std=c11), so they agree bit for bit. */
#define DMAX PYNN_DISTORT_MAX

#define LANES 16                 /* field rows are padded to whole blocks of LANES floats */

struct distort_plan {
    int64_t H, W, fh, fw, wv;    /* wv: W rounded up to whole blocks of LANES */
    float ay[DMAX * DMAX];       /* (H, fh): gain times the read along y of the blur along y */
    float axt[DMAX * DMAX];      /* (fw, wv): the same along x, transposed, 0 past W */
};

struct distort_work {            /* one per thread, on its stack */
    float pad[(DMAX + 3) * (DMAX + 3)];  /* the image with a zero border, 1 before, 2 after */
    float dx[DMAX * DMAX], dy[DMAX * DMAX], t[DMAX * DMAX];
    float q[(DMAX + 2) * (DMAX + 2)];    /* the warped image with a zero border of 1 */
    float e[(DMAX + 2) * DMAX];          /* q's 3-wide row extremes; rows 0 and H+1 stay 0 */
};

/* a (n, fn), row stride ld: the bilinear read at the pixel centres of n pixels, (i + 0.5) * fn / n - 0.5 in
 * cells as pynn_warp reads a coarse field (0 outside), of the blur with taps g[0..2R], times
 * gain; written transposed (fn, n) when transpose is set */
static void field_axis(float *a, int64_t n, int64_t fn, const float *g, int64_t R, float gain,
                       int transpose, int64_t ld) {
    float s = (float)fn / (float)n;
    for (int64_t i = 0; i < n; i++) {
        float f = ((float)i + 0.5f) * s - 0.5f;
        int64_t j0 = (int64_t)floorf(f);
        float t = f - (float)j0;
        for (int64_t j = 0; j < fn; j++) {
            double v = 0.0;       /* (U G)[i][j] = sum over the two cells read of weight * G */
            for (int64_t d = 0; d < 2; d++) {
                int64_t cell = j0 + d, k = j - cell;
                if (cell < 0 || cell >= fn || k < -R || k > R) continue;
                v += (double)(d ? t : 1.0f - t) * g[k + R];
            }
            a[transpose ? j * ld + i : i * ld + j] = (float)(gain * v);
        }
    }
}

#define PYNN_MAX3(a, b, c) ((a) > (b) ? ((a) > (c) ? (a) : (c)) : ((b) > (c) ? (b) : (c)))
#define PYNN_MIN3(a, b, c) ((a) < (b) ? ((a) < (c) ? (a) : (c)) : ((b) < (c) ? (b) : (c)))

/* one row of the warp: o[c] is the padded image (row stride pw) read bilinearly at the pixel
 * centre (c + 0.5) moved by the affine map (m0, m3 and the row's ru, rv) and the field dxr, dyr.
 * int indices and restrict pointers let the compiler vectorise it with gathers. */
static inline __attribute__((always_inline)) void
warp_row(float *restrict o, const float *restrict pad, const float *restrict dxr,
         const float *restrict dyr, int W, int pw, float m0, float m3, float ru, float rv,
         float xmax, float ymax) {
    for (int c = 0; c < W; c++) {
        float x = (float)c + 0.5f;
        /* in the padded image's pixel units: +1 for the border, -0.5 to pixel centres */
        float fx = m0 * x + ru + dxr[c] + 0.5f, fy = m3 * x + rv + dyr[c] + 0.5f;
        fx = fx > 0.0f ? fx : 0.0f;                 /* NaN goes to 0 too */
        fx = fx < xmax ? fx : xmax;
        fy = fy > 0.0f ? fy : 0.0f;
        fy = fy < ymax ? fy : ymax;
        int ix = (int)fx, iy = (int)fy, at = iy * pw + ix;
        float tx = fx - (float)ix, ty = fy - (float)iy;
        o[c] = (1.0f - ty) * ((1.0f - tx) * pad[at] + tx * pad[at + 1])
             + ty * ((1.0f - tx) * pad[at + pw] + tx * pad[at + pw + 1]);
    }
}

/* one image: dst (H,W) from img; nz its noise (2, fh, fw) or NULL; amount its stroke width */
static inline __attribute__((always_inline)) void
distort_body(float *dst, const float *img, const float *m, const float *nz, float amount,
             const struct distort_plan *p, struct distort_work *w) {
    const int64_t H = p->H, W = p->W, fh = p->fh, fw = p->fw, wv = p->wv, pw = W + 3, qw = W + 2;
    for (int64_t r = 0; r < H; r++)
        memcpy(w->pad + (r + 1) * pw + 1, img + r * W, (size_t)W * sizeof(float));
    if (nz != NULL) {
        /* blocks of LANES columns summed in a local array, which the compiler keeps in
         * vector registers; the sums run over j (and i) in order, as a plain loop would */
        for (int64_t comp = 0; comp < 2; comp++) {
            const float *nc = nz + comp * fh * fw;
            float *D = comp ? w->dy : w->dx, *t = w->t;
            for (int64_t i = 0; i < fh; i++)            /* t (fh, wv) = (2 noise - 1) A_x^T */
                for (int64_t cb = 0; cb < wv; cb += LANES) {
                    float acc[LANES] = {0.0f};
                    for (int64_t j = 0; j < fw; j++) {
                        float v = 2.0f * nc[i * fw + j] - 1.0f;
                        const float *a = p->axt + j * wv + cb;
                        for (int l = 0; l < LANES; l++) acc[l] += v * a[l];
                    }
                    memcpy(t + i * wv + cb, acc, sizeof acc);
                }
            for (int64_t r = 0; r < H; r++)             /* D (H, wv) = A_y t */
                for (int64_t cb = 0; cb < wv; cb += LANES) {
                    float acc[LANES] = {0.0f};
                    for (int64_t i = 0; i < fh; i++) {
                        float a = p->ay[r * fh + i];
                        const float *ti = t + i * wv + cb;
                        for (int l = 0; l < LANES; l++) acc[l] += a * ti[l];
                    }
                    memcpy(D + r * wv + cb, acc, sizeof acc);
                }
        }
    } else {
        memset(w->dx, 0, (size_t)(H * wv) * sizeof(float));
        memset(w->dy, 0, (size_t)(H * wv) * sizeof(float));
    }
    float wa = fabsf(amount);
    const float xmax = (float)(W + 1), ymax = (float)(H + 1);
    for (int64_t r = 0; r < H; r++) {
        float y = (float)r + 0.5f;
        warp_row(wa != 0.0f ? w->q + (r + 1) * qw + 1 : dst + r * W, w->pad, w->dx + r * wv,
                 w->dy + r * wv, (int)W, (int)pw, m[0], m[3], m[1] * y + m[2], m[4] * y + m[5],
                 xmax, ymax);
    }
    if (wa == 0.0f) return;
    /* stroke width as pynn_stroke_width: blend with the 3x3 grey dilation (amount > 0) or
     * erosion, 0 outside the image */
    const float *q = w->q;
    float *e = w->e;
#define STROKE_PASS(EXT)                                                                    \
    do {                                                                                    \
        for (int64_t r = 1; r <= H; r++)                                                    \
            for (int64_t c = 0; c < W; c++)                                                 \
                e[r * W + c] = EXT(q[r * qw + c], q[r * qw + c + 1], q[r * qw + c + 2]);    \
        for (int64_t r = 0; r < H; r++)                                                     \
            for (int64_t c = 0; c < W; c++)                                                 \
                dst[r * W + c] = (1.0f - wa) * q[(r + 1) * qw + c + 1]                      \
                    + wa * EXT(e[r * W + c], e[(r + 1) * W + c], e[(r + 2) * W + c]);       \
    } while (0)
    if (amount > 0.0f) STROKE_PASS(PYNN_MAX3);
    else STROKE_PASS(PYNN_MIN3);
#undef STROKE_PASS
}

typedef void (*distort_fn)(float *, const float *, const float *, const float *, float,
                           const struct distort_plan *, struct distort_work *);

static void distort_generic(float *dst, const float *img, const float *m, const float *nz,
                            float amount, const struct distort_plan *p, struct distort_work *w) {
    distort_body(dst, img, m, nz, amount, p, w);
}

#ifdef PYNN_X86
__attribute__((target("avx2,fma")))
static void distort_avx2(float *dst, const float *img, const float *m, const float *nz,
                         float amount, const struct distort_plan *p, struct distort_work *w) {
    distort_body(dst, img, m, nz, amount, p, w);
}

/* 256-bit vectors: on the AMD EPYC measured, 16-lane gathers were slower than two 8-lane ones */
__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,prefer-vector-width=256")))
static void distort_avx512(float *dst, const float *img, const float *m, const float *nz,
                           float amount, const struct distort_plan *p, struct distort_work *w) {
    distort_body(dst, img, m, nz, amount, p, w);
}
#endif

struct distort_job {
    float *out;
    const float *inp, *mats;
    const int64_t *field;
    const float *noise, *amount;
    int64_t size, fsize;
    const struct distort_plan *plan;
    distort_fn fn;
};

/* images [k0, k1) of pynn_distort, through one work area on this thread's stack */
static void distort_images(int64_t k0, int64_t k1, void *arg) {
    const struct distort_job *job = arg;
    const int64_t size = job->size;
    struct distort_work work;
    memset(&work, 0, sizeof work);
    for (int64_t k = k0; k < k1; k++) {
        int64_t f = job->field != NULL ? job->field[k] : -1;
        job->fn(job->out + k * size, job->inp + k * size, job->mats + 6 * k,
                f >= 0 ? job->noise + f * job->fsize : NULL,
                job->amount != NULL ? job->amount[k] : 0.0f, job->plan, &work);
    }
}

int pynn_distort(float *out, const float *inp, int64_t n, int64_t H, int64_t W, const float *mats,
                 const int64_t *field, const float *noise, int64_t n_fields, int64_t fh,
                 int64_t fw, float sigma, float gain, const float *amount) {
    int64_t size;
    PYNN_TRY(check_stack(out, inp, n, H, W, &size));
    if (H > DMAX || W > DMAX) return PYNN_ERR_SIZE;
    if (n_fields < 0 || fh < 0 || fw < 0) return PYNN_ERR_SIZE;
    if (!(sigma >= 0.0f) || !isfinite(sigma) || !isfinite(gain)) return PYNN_ERR_ARG;
    if (n * size == 0) return PYNN_OK;
    if (mats == NULL) return PYNN_ERR_NULL;
    int64_t fsize = 0;
    if (n_fields > 0) {
        if (noise == NULL || field == NULL) return PYNN_ERR_NULL;
        if (fh < 1 || fw < 1 || fh > DMAX || fw > DMAX) return PYNN_ERR_SIZE;
        fsize = 2 * fh * fw;
        if (pynn_mul_size(n_fields, fsize) < 0) return PYNN_ERR_OVERFLOW;
        int bad = 0;
        for (int64_t i = 0; i < n_fields * fsize; i++) bad |= !(noise[i] >= 0.0f && noise[i] <= 1.0f);
        if (bad) return PYNN_ERR_ARG;
    }
    for (int64_t i = 0; i < 6 * n; i++)
        if (!isfinite(mats[i])) return PYNN_ERR_ARG;
    for (int64_t k = 0; k < n; k++) {
        if (field != NULL && (field[k] < -1 || field[k] >= n_fields)) return PYNN_ERR_ARG;
        if (amount != NULL && !(amount[k] >= -1.0f && amount[k] <= 1.0f)) return PYNN_ERR_ARG;
    }
    struct distort_plan plan;
    plan.H = H; plan.W = W; plan.fh = fh; plan.fw = fw;
    plan.wv = (W + LANES - 1) / LANES * LANES;
    if (n_fields > 0) {
        float g[2 * PYNN_MAX_BLUR_RADIUS + 1];
        int64_t R = gaussian_taps(g, sigma);
        memset(plan.axt, 0, sizeof plan.axt);
        field_axis(plan.ay, H, fh, g, R, gain, 0, fh);
        field_axis(plan.axt, W, fw, g, R, 1.0f, 1, plan.wv);
    }
    struct distort_job job = {out, inp, mats, field, noise, amount, size, fsize, &plan,
                              distort_generic};
#ifdef PYNN_X86
    const char *set = pynn_kernels()->name;
    if (strcmp(set, "avx512f") == 0) job.fn = distort_avx512;
    else if (strcmp(set, "avx2") == 0) job.fn = distort_avx2;
#endif
    /* about, per image: the warp and the stroke width per pixel, and the field's two products */
    double flops = 40.0 * (double)size;
    if (n_fields > 0) flops += 8.0 * (double)(fh * fw + H * fh) * (double)plan.wv;
    unsigned fp = pynn_flush_denormals();
    pynn_parallel_for(pynn_threads_for(flops * (double)n), n, distort_images, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/*
 * fast/conv.c: the convolution and max pooling the network runs on. Same contracts as the
 * readable ones in ref/conv.c (pynn.h), and tested against them.
 *
 * A convolution is a matrix product of unfolded patches ("im2col"): for one image, col (K,P)
 * holds in row k = (c,i,j) and column p = (y,x) the input pixel that tap (c,i,j) of output
 * (y,x) reads (zero in the padding), so that
 *   out_b (OC,P) = weight (OC,K) col (K,P)            the forward
 *   dweight (OC,K) += dout_b (OC,P) col^T (P,K)        summed over the images
 *   dcol (K,P) = weight^T (K,OC) dout_b (OC,P), then folded back onto dinp_b ("col2im").
 * The products run on the packed GEMM of gemm_fast.c (pynn_gemm_part, its SIMD kernels chosen
 * at run time); one image's col fits in L2, where the GEMM reads it without a copy.
 *
 * Threads: the forward and dinp give each thread whole images; dweight gives each thread a
 * range of its columns (the taps k), for which it unfolds its own rows of every image. Each
 * output element is summed by one thread in one fixed order, whatever the thread count, so
 * the bits do not depend on it. The caller's workspace holds each thread's unfolded patches;
 * nothing here allocates.
 */
#include <string.h>
#include "conv.h"
#include "fast.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* [lo, hi) of `total` that part t of nt owns, in multiples of `unit` */
static void share(int64_t total, int64_t unit, int t, int nt, int64_t *lo, int64_t *hi) {
    int64_t units = (total + unit - 1) / unit;
    *lo = min64(units * t / nt * unit, total);
    *hi = min64(units * (t + 1) / nt * unit, total);
}

/* the floats one thread's share of the workspace holds: col or dcol (K,P), and col^T (P,K) */
static int64_t floats_per_thread(const struct pynn_conv2d_sizes *z) {
    int64_t kp = pynn_mul_size(z->K, z->P);
    return kp < 0 || kp > (INT64_MAX - 32) / 2 ? -1 : 2 * kp + 32;
}

static float *thread_work(float *work, int64_t per_thread, int tid) {
    float *p = work + per_thread * tid;
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);   /* 64-byte aligned: 16 floats of slack */
}

/* threads for a job of `flops`, as many as the workspace holds */
static int threads_for(double flops, int64_t work_len, int64_t per_thread) {
    int nt = pynn_threads_for(flops);
    return (int)min64(nt, work_len / per_thread);
}

int64_t pynn_conv2d_workspace(const struct pynn_conv2d_shape *s) {
    struct pynn_conv2d_sizes z;
    if (pynn_conv2d_check(s, &z) != PYNN_OK) return -1;
    return pynn_mul_size(floats_per_thread(&z), pynn_get_num_threads());
}

/* ---- unfolding ---- */

/* rows [k0,k1) of image inp_b's col (K,P), into dst with row stride P */
static void im2col_rows(float *dst, const float *inp_b, const struct pynn_conv2d_shape *s,
                        const struct pynn_conv2d_sizes *z, int64_t k0, int64_t k1) {
    int64_t st = s->stride, pad = s->pad, W = s->W;
    for (int64_t k = k0; k < k1; k++) {
        int64_t c = k / (s->KH * s->KW), i = k / s->KW % s->KH, j = k % s->KW;
        const float *plane = inp_b + c * s->H * W;
        /* the columns x whose tap w = st*x + j - pad lies in the image: [x0, x1) */
        int64_t x0 = pad - j > 0 ? min64(z->OW, (pad - j + st - 1) / st) : 0;
        int64_t x1 = W + pad - j > 0 ? min64(z->OW, (W + pad - j + st - 1) / st) : 0;
        if (x1 < x0) x1 = x0;
        for (int64_t y = 0; y < z->OH; y++) {
            float *row = dst + (k - k0) * z->P + y * z->OW;
            int64_t h = st * y + i - pad;
            if (h < 0 || h >= s->H) {
                memset(row, 0, sizeof(float) * z->OW);
                continue;
            }
            const float *src = plane + h * W;      /* row[x] = src[st*x + j - pad] */
            for (int64_t x = 0; x < x0; x++) row[x] = 0.0f;
            if (st == 1) memcpy(row + x0, src + x0 + j - pad, sizeof(float) * (x1 - x0));
            else for (int64_t x = x0; x < x1; x++) row[x] = src[st * x + j - pad];
            for (int64_t x = x1; x < z->OW; x++) row[x] = 0.0f;
        }
    }
}

/* columns [k0,k1) of image inp_b's col^T (P,K), into dst with row stride k1 - k0 */
static void im2col_transposed(float *dst, const float *inp_b, const struct pynn_conv2d_shape *s,
                              const struct pynn_conv2d_sizes *z, int64_t k0, int64_t k1) {
    int64_t nk = k1 - k0, KHW = s->KH * s->KW;
    for (int64_t y = 0; y < z->OH; y++)
        for (int64_t x = 0; x < z->OW; x++) {
            float *row = dst + (y * z->OW + x) * nk;   /* row[k - k0], k in [k0,k1) */
            for (int64_t k = k0; k < k1;) {
                int64_t c = k / KHW, i = k / s->KW % s->KH, j = k % s->KW;
                int64_t h = s->stride * y + i - s->pad, w0 = s->stride * x - s->pad;
                /* the rest of this kernel row: taps j .. KW-1, or up to k1 */
                int64_t run = min64(s->KW - j, k1 - k);
                for (int64_t t = 0; t < run; t++) {
                    int64_t w = w0 + j + t;
                    row[k - k0 + t] = h < 0 || h >= s->H || w < 0 || w >= s->W
                                 ? 0.0f : inp_b[(c * s->H + h) * s->W + w];
                }
                k += run;
            }
        }
}

/* dinp_b += dcol folded back onto the image: every tap adds to the pixel it read */
static void col2im_add(float *dinp_b, const float *dcol, const struct pynn_conv2d_shape *s,
                       const struct pynn_conv2d_sizes *z) {
    int64_t st = s->stride, pad = s->pad, W = s->W;
    for (int64_t k = 0; k < z->K; k++) {
        int64_t c = k / (s->KH * s->KW), i = k / s->KW % s->KH, j = k % s->KW;
        float *plane = dinp_b + c * s->H * W;
        int64_t x0 = pad - j > 0 ? (pad - j + st - 1) / st : 0;
        int64_t x1 = W + pad - j > 0 ? min64(z->OW, (W + pad - j + st - 1) / st) : 0;
        for (int64_t y = 0; y < z->OH; y++) {
            int64_t h = st * y + i - pad;
            if (h < 0 || h >= s->H) continue;
            const float *row = dcol + k * z->P + y * z->OW;
            float *dst = plane + h * W;
            for (int64_t x = x0; x < x1; x++) dst[st * x + j - pad] += row[x];
        }
    }
}

/* ---- the convolution ---- */

struct conv_job {
    const struct pynn_conv2d_shape *s;
    struct pynn_conv2d_sizes z;
    float *out, *dinp, *dweight, *dbias;
    const float *inp, *weight, *bias, *dout;
    float *work;
    int64_t per_thread;
};

/* out_b (OC,P) = bias + weight (OC,K) col (K,P), on this thread or shared among nt threads
 * (then every thread calls it, and the col in thread 0's workspace is shared) */
static void forward_image(const struct conv_job *j, int64_t b, float *col, int tid, int nt) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    float *out_b = j->out + b * s->OC * z->P;
    int64_t k0, k1, o0, o1;
    share(z->K, 1, tid, nt, &k0, &k1);
    im2col_rows(col + k0 * z->P, j->inp + b * s->C * s->H * s->W, s, z, k0, k1);
    share(s->OC, 1, tid, nt, &o0, &o1);
    for (int64_t o = o0; o < o1 && j->bias != NULL; o++)
        for (int64_t p = 0; p < z->P; p++) out_b[o * z->P + p] = j->bias[o];
    pynn_barrier(nt);
    struct pynn_gemm_args g = {0, 0, s->OC, z->P, z->K, 1.0f, j->weight, z->K, col, z->P,
                               j->bias != NULL ? 1.0f : 0.0f, out_b, z->P, NULL, -1, NULL, NULL};
    pynn_gemm_part(&g, tid, nt);
    pynn_barrier(nt);     /* col is overwritten by the next image */
}

static void forward_job(int tid, int nt, void *arg) {
    const struct conv_job *j = arg;
    if (j->s->B >= nt) {            /* whole images to each thread */
        int64_t b0, b1;
        share(j->s->B, 1, tid, nt, &b0, &b1);
        float *col = thread_work(j->work, j->per_thread, tid);
        for (int64_t b = b0; b < b1; b++) forward_image(j, b, col, 0, 1);
    } else {                        /* fewer images than threads: each shared by all */
        float *col = thread_work(j->work, j->per_thread, 0);
        for (int64_t b = 0; b < j->s->B; b++) forward_image(j, b, col, tid, nt);
    }
}

int pynn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                        const struct pynn_conv2d_shape *s, float *work, int64_t work_len) {
    struct conv_job j = {s, {0}, out, NULL, NULL, NULL, inp, weight, bias, NULL, work, 0};
    PYNN_TRY(pynn_conv2d_check(s, &j.z));
    if (work_len < 0) return PYNN_ERR_SIZE;
    if (s->B == 0) return PYNN_OK;
    if (out == NULL || inp == NULL || weight == NULL || work == NULL) return PYNN_ERR_NULL;
    j.per_thread = floats_per_thread(&j.z);
    if (j.per_thread < 0) return PYNN_ERR_OVERFLOW;
    if (work_len < j.per_thread) return PYNN_ERR_SIZE;
    double flops = 2.0 * (double)s->B * (double)s->OC * (double)j.z.K * (double)j.z.P;
    unsigned fp = pynn_flush_denormals();
    pynn_parallel(threads_for(flops, work_len, j.per_thread), forward_job, &j);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* dweight[:, k0:k1] += sum over images of dout_b (OC,P) col_b^T[:, k0:k1] (P, k1-k0) */
static void dweight_columns(const struct conv_job *j, int64_t k0, int64_t k1, float *colT) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    if (k0 >= k1) return;
    for (int64_t b = 0; b < s->B; b++) {
        im2col_transposed(colT, j->inp + b * s->C * s->H * s->W, s, z, k0, k1);
        struct pynn_gemm_args g = {0, 0, s->OC, k1 - k0, z->P, 1.0f, j->dout + b * s->OC * z->P,
                                   z->P, colT, k1 - k0, 1.0f, j->dweight + k0, z->K, NULL, -1,
                                   NULL, NULL};
        pynn_gemm_part(&g, 0, 1);
    }
}

/* dinp_b += col2im(weight^T (K,OC) dout_b (OC,P)) */
static void dinp_image(const struct conv_job *j, int64_t b, float *dcol) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    struct pynn_gemm_args g = {1, 0, z->K, z->P, s->OC, 1.0f, j->weight, z->K,
                               j->dout + b * s->OC * z->P, z->P, 0.0f, dcol, z->P, NULL, -1,
                               NULL, NULL};
    pynn_gemm_part(&g, 0, 1);
    col2im_add(j->dinp + b * s->C * s->H * s->W, dcol, s, z);
}

static void backward_job(int tid, int nt, void *arg) {
    const struct conv_job *j = arg;
    const struct pynn_conv2d_shape *s = j->s;
    float *colT = thread_work(j->work, j->per_thread, tid);
    float *dcol = colT + j->z.K * j->z.P;
    int64_t k0, k1, b0, b1, o0, o1;
    share(j->z.K, 16, tid, nt, &k0, &k1);
    dweight_columns(j, k0, k1, colT);
    if (j->dbias != NULL) {         /* dbias[o] += sum over images and positions of dout */
        share(s->OC, 1, tid, nt, &o0, &o1);
        for (int64_t b = 0; b < s->B; b++)
            for (int64_t o = o0; o < o1; o++) {
                const float *d = j->dout + (b * s->OC + o) * j->z.P;
                float sum = 0.0f;
                for (int64_t p = 0; p < j->z.P; p++) sum += d[p];
                j->dbias[o] += sum;
            }
    }
    if (j->dinp != NULL) {
        share(s->B, 1, tid, nt, &b0, &b1);
        for (int64_t b = b0; b < b1; b++) dinp_image(j, b, dcol);
    }
}

int pynn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const struct pynn_conv2d_shape *s,
                         float *work, int64_t work_len) {
    struct conv_job j = {s, {0}, NULL, dinp, dweight, dbias, inp, weight, NULL, dout, work, 0};
    PYNN_TRY(pynn_conv2d_check(s, &j.z));
    if (work_len < 0) return PYNN_ERR_SIZE;
    if (s->B == 0) return PYNN_OK;
    if (dweight == NULL || dout == NULL || inp == NULL || work == NULL ||
        (dinp != NULL && weight == NULL))
        return PYNN_ERR_NULL;
    j.per_thread = floats_per_thread(&j.z);
    if (j.per_thread < 0) return PYNN_ERR_OVERFLOW;
    if (work_len < j.per_thread) return PYNN_ERR_SIZE;
    double flops = 2.0 * (double)s->B * (double)s->OC * (double)j.z.K * (double)j.z.P;
    flops *= dinp != NULL ? 2.0 : 1.0;
    unsigned fp = pynn_flush_denormals();
    pynn_parallel(threads_for(flops, work_len, j.per_thread), backward_job, &j);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* ---- max pooling ---- */

struct pool_job {
    float *out, *dinp;
    int32_t *argmax;
    const int32_t *argmax_in;
    const float *inp, *dout;
    int64_t planes, H, W, k;
};

/* planes [q0,q1): the loops of the reference, a plane's rows at a time */
static void pool_forward_planes(const struct pool_job *j, int64_t q0, int64_t q1) {
    int64_t H = j->H, W = j->W, k = j->k, OH = H / k, OW = W / k;
    for (int64_t q = q0; q < q1; q++) {
        const float *inp_q = j->inp + q * H * W;
        float *out_q = j->out + q * OH * OW;
        int32_t *am_q = j->argmax + q * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int64_t best = (k * y) * W + k * x;
                float m = inp_q[best];
                for (int64_t i = 0; i < k; i++) {
                    const float *row = inp_q + (k * y + i) * W + k * x;
                    for (int64_t t = 0; t < k; t++) {
                        float v = row[t];
                        if (v > m || (v != v && m == m)) m = v, best = (k * y + i) * W + k * x + t;
                    }
                }
                out_q[y * OW + x] = m;
                am_q[y * OW + x] = (int32_t)best;
            }
    }
}

static void pool_forward_job(int tid, int nt, void *arg) {
    const struct pool_job *j = arg;
    int64_t q0, q1;
    share(j->planes, 1, tid, nt, &q0, &q1);
    pool_forward_planes(j, q0, q1);
}

int pynn_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, int64_t B, int64_t C,
                           int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    if (out == NULL || argmax == NULL || inp == NULL) return PYNN_ERR_NULL;
    struct pool_job j = {out, NULL, argmax, NULL, inp, NULL, B * C, H, W, k};
    pynn_parallel(pynn_threads_for((double)(B * C * H * W)), pool_forward_job, &j);
    return PYNN_OK;
}

static void pool_backward_job(int tid, int nt, void *arg) {
    const struct pool_job *j = arg;
    int64_t q0, q1, n = (j->H / j->k) * (j->W / j->k);
    share(j->planes, 1, tid, nt, &q0, &q1);
    for (int64_t q = q0; q < q1; q++) {
        float *dinp_q = j->dinp + q * j->H * j->W;
        for (int64_t t = 0; t < n; t++) dinp_q[j->argmax_in[q * n + t]] += j->dout[q * n + t];
    }
}

int pynn_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, int64_t B,
                            int64_t C, int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_backward_check(dinp, dout, argmax, B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    struct pool_job j = {NULL, dinp, NULL, argmax, NULL, dout, B * C, H, W, k};
    pynn_parallel(pynn_threads_for((double)(B * C * H * W)), pool_backward_job, &j);
    return PYNN_OK;
}

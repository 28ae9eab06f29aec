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
 * The products run on the micro-kernels of the packed GEMM (gemm_kernels.c, the SIMD set
 * chosen at run time), in gemm_fast.c's blocking: the weights are packed once per call rather
 * than once per image, and one image's col, which fits in L2, is read where it lies. The
 * unfolding copies each pixel KH*KW times, in short runs. A forward of stride 1 and no padding
 * whose output rows are whole vectors of 8 (both of the MNIST network's layers) skips it where
 * the kernel set has a convkernel: each run of 8 output positions reads 8 consecutive pixels of
 * a tap, so the micro-kernel loads them from the image itself (which stays in L1) at the tap's
 * offset, the same sums in the same order. Likewise dweight without padding, where the set has
 * a dwkernel, reads the pixels its taps read from the images (dweight_from_image), and dinp of
 * stride 1 without padding adds each tile of its product to the image as it comes
 * (dinp_tiles), never writing dcol. A first layer followed by ReLU and pooling takes its
 * weights' gradient from the windows the pooling chose alone (the end of this file).
 *
 * Threads: the forward and dinp give each thread whole images (a batch smaller than the
 * thread count shares each image: some rows of col and some columns of out_b to each thread);
 * dweight gives each thread the taps of some kernel rows (c,i), whose pixels it reads from the
 * images or unfolds into its own columns of every image's col^T (or, for a kernel of few
 * rows, fixed groups of images; see DW_GROUPS; an image of many positions unfolds rows of col
 * instead, see DW_DOT_POSITIONS). Each output element is summed by one thread in one fixed
 * order, whatever the thread count, so the bits do not depend on it. The caller's workspace
 * holds each thread's packed weights and unfolded patches; nothing here allocates.
 */
#include <string.h>
#include "conv.h"
#include "fast.h"
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define POOL_AVX2 1      /* the pooling's AVX2 loops (chosen where the kernel set is not generic) */
#endif

#define SPILL 8      /* floats a short copy may write past the end of col^T (im2col_transposed) */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* the kernel set the convolution runs on (pynn_kernels' conv): every packing and kernel here
 * comes from this one set */
static const struct pynn_kernels *conv_set(void) { return pynn_kernels()->conv; }

/* dweight's product sums over this many output positions at a time (whole images): enough
 * that its tile of dweight is loaded and stored once per long sum, few enough that the
 * unfolded patches stay in L2 */
#define DW_POSITIONS 128

/* an image of this many positions or more sums its dweight on its own, as dot products along
 * the positions: long enough sums that their lanes' final additions cost little */
#define DW_DOT_POSITIONS 256

static int64_t images_per_step(const struct pynn_conv2d_sizes *z) {
    return z->P >= DW_POSITIONS ? 1 : DW_POSITIONS / z->P;
}

/* the floats of the weights packed for the micro-kernel, as W (OC,K) or as W^T (K,OC) */
static int64_t pack_floats(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z) {
    return pynn_mul_size(s->OC + PYNN_MR_MAX, z->K + PYNN_MR_MAX);
}

/* the floats after the packed weights for the forward's col (K,P); or the backward's col^T
 * (n,K) and dout^T (n,OC) for n positions at a step, then dcol (K,P), or the taps' offsets
 * and a tile (dinp_tiles) */
static int64_t col_floats(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z) {
    int64_t kp = pynn_mul_size(z->K, z->P);
    int64_t n = pynn_mul_size(images_per_step(z), z->P);
    int64_t step = pynn_mul_size(n, z->K + s->OC);
    int64_t tiles = 2 * z->K + 16 + PYNN_MR_MAX * PYNN_NR_MAX;
    int64_t dw = pynn_mul_size(z->K + PYNN_KC, s->OC + 1);   /* dweight_from_image's */
    if (kp < 0 || step < 0 || dw < 0 || z->K > INT64_MAX / 4 ||
        dw > INT64_MAX - 64 - z->K)
        return -1;
    dw += z->K + 64;
    int64_t most = kp > step ? kp : step;
    most = most > tiles ? most : tiles;
    return most > dw ? most : dw;
}

/* the floats one thread's share of the workspace holds: the packed weights, col, and with
 * `pooled` one image's output (OC,P) before its pooling */
static int64_t floats_per_thread(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z,
                                 int pooled) {
    int64_t pack = pack_floats(s, z), most = col_floats(s, z);
    int64_t img = pooled ? pynn_mul_size(s->OC, z->P) : 0;
    if (most < 0 || pack < 0 || img < 0 || most > INT64_MAX - 80 - SPILL - pack - img) return -1;
    return pack + most + img + 80 + SPILL;
}

/* where thread share `wpack` keeps its image before the pooling (after col and its spill) */
static float *image_before_pool(float *wpack, const struct pynn_conv2d_shape *s,
                                const struct pynn_conv2d_sizes *z) {
    float *p = wpack + pack_floats(s, z) + col_floats(s, z) + SPILL;
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* dweight is split among the threads by the taps of kernel rows (c,i); a kernel of few rows
 * (a first layer's) would leave a thread idle and each product narrow, so there the images
 * are split instead, into DW_GROUPS groups: each sums its dweight into its own copy, at the
 * start of the workspace, and the copies are added in order, so that the bits do not depend
 * on the thread count either way */
#define DW_GROUPS 8
#define DW_FEW_ROWS 16

static int64_t group_floats(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z) {
    return s->C * s->KH < DW_FEW_ROWS ? pynn_mul4(DW_GROUPS, s->OC, z->K, 1) : 0;
}

/* thread tid's share of the workspace, after the groups' copies of dweight */
static float *thread_work(float *work, int64_t shared, int64_t per_thread, int tid) {
    float *p = work + shared + per_thread * tid;
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);   /* 64-byte aligned: 16 floats of slack */
}

/* threads for a job of `flops`, as many as the workspace holds (at least one: checked) and
 * pynn_parallel_parts runs (16) */
static int threads_for(double flops, int64_t work_len, int64_t shared, int64_t per_thread) {
    int nt = pynn_threads_for(flops);
    return (int)min64(min64(nt, 16), (work_len - shared) / per_thread);
}

int64_t pynn_conv2d_workspace(const struct pynn_conv2d_shape *s) {
    struct pynn_conv2d_sizes z;
    if (pynn_conv2d_check(s, &z) != PYNN_OK) return -1;
    int64_t shared = group_floats(s, &z);
    int64_t per = pynn_mul_size(floats_per_thread(s, &z, 0), pynn_get_num_threads());
    return shared < 0 || per < 0 || per > INT64_MAX - shared ? -1 : shared + per;
}

int64_t pynn_conv2d_relu_pool_workspace(const struct pynn_conv2d_shape *s) {
    struct pynn_conv2d_sizes z;
    if (pynn_conv2d_check(s, &z) != PYNN_OK) return -1;
    return pynn_mul_size(floats_per_thread(s, &z, 1), pynn_get_num_threads());
}

/* x[0] + ... + x[n-1] in eight interleaved partial sums, which the compiler runs as one
 * vector: one running sum would wait on each add's latency */
static float sum_floats(const float *x, int64_t n) {
    float part[8] = {0};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int l = 0; l < 8; l++) part[l] += x[p + l];
    for (; p < n; p++) part[p % 8] += x[p];
    return ((part[0] + part[4]) + (part[1] + part[5])) +
           ((part[2] + part[6]) + (part[3] + part[7]));
}

/* ---- unfolding ---- */

/* dst[0..n) = src[0..n), in copies of 8 floats that the compiler makes two or one vector
 * moves (the runs here are short: a library memcpy call would cost more than the copy) */
static inline void copy_floats(float *dst, const float *src, int64_t n) {
    int64_t x = 0;
    for (; x + 8 <= n; x += 8) memcpy(dst + x, src + x, 8 * sizeof(float));
    for (; x < n; x++) dst[x] = src[x];
}

/* rows [k0,k1) of image inp_b's col (K,P), into dst with row stride P */
static void im2col_rows(float *dst, const float *inp_b, const struct pynn_conv2d_shape *s,
                        const struct pynn_conv2d_sizes *z, int64_t k0, int64_t k1) {
    int64_t st = s->stride, pad = s->pad, W = s->W;
    if (st == 1 && pad == 0) {      /* every tap inside the image: row k, y is one run */
        for (int64_t k = k0; k < k1; k++) {
            int64_t c = k / (s->KH * s->KW), i = k / s->KW % s->KH, j = k % s->KW;
            const float *src = inp_b + (c * s->H + i) * W + j;
            float *row = dst + (k - k0) * z->P;
            for (int64_t y = 0; y < z->OH; y++, src += W, row += z->OW)
                copy_floats(row, src, z->OW);
        }
        return;
    }
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
            if (st == 1) copy_floats(row + x0, src + x0 + j - pad, x1 - x0);
            else for (int64_t x = x0; x < x1; x++) row[x] = src[st * x + j - pad];
            for (int64_t x = x1; x < z->OW; x++) row[x] = 0.0f;
        }
    }
}

/* col^T (P,K) of image inp_b, the columns of kernel rows [r0,r1) only (kernel row r = (c,i)
 * holds the taps r*KW .. r*KW + KW), into dst with row stride ld: for each output position,
 * the KW pixels each of those kernel rows reads, one run from one image row. A run of KW <= 8
 * inside the image is copied as 8 floats when 8 exist there: the extra ones land on the next
 * run, written after it, or past the last row, where the workspace leaves room (SPILL). */
static void im2col_transposed(float *dst, int64_t ld, const float *inp_b,
                              const struct pynn_conv2d_shape *s,
                              const struct pynn_conv2d_sizes *z, int64_t r0, int64_t r1) {
    int64_t KW = s->KW, W = s->W, HW = s->H * s->W, CHW = s->C * HW;
    for (int64_t y = 0; y < z->OH; y++)
        for (int64_t x = 0; x < z->OW; x++) {
            float *row = dst + (y * z->OW + x) * ld;
            int64_t w0 = s->stride * x - s->pad;
            int inside = w0 >= 0 && w0 + KW <= W;
            int64_t c = r0 / s->KH, i = r0 % s->KH - 1;      /* kernel row r = (c,i) */
            for (int64_t r = r0; r < r1; r++, row += KW) {
                if (++i == s->KH) i = 0, c++;
                int64_t h = s->stride * y + i - s->pad;
                int64_t at = c * HW + h * W + w0;       /* where the run starts in the image */
                if (h < 0 || h >= s->H) {
                    for (int64_t t = 0; t < KW; t++) row[t] = 0.0f;
                } else if (inside && KW <= 8 && at + 8 <= CHW) {
                    memcpy(row, inp_b + at, 8 * sizeof(float));
                } else {
                    for (int64_t t = 0; t < KW; t++)
                        row[t] = w0 + t >= 0 && w0 + t < W ? inp_b[at + t] : 0.0f;
                }
            }
        }
}

/* dst[0..n) += src[0..n), the arrays apart (dcol and dinp lie in different buffers), in
 * runs of 8 that the compiler makes vector adds */
static inline void add_floats(float *restrict dst, const float *restrict src, int64_t n) {
    int64_t x = 0;
    for (; x + 8 <= n; x += 8)
        for (int l = 0; l < 8; l++) dst[x + l] += src[x + l];
    for (; x < n; x++) dst[x] += src[x];
}

/* dinp_b += dcol folded back onto the image: every tap adds to the pixel it read. Compiled
 * twice, for the baseline and for AVX2 (col2im_add picks by the kernel set): additions alone,
 * so both give the same bits, the wider one in half the instructions. */
static inline __attribute__((always_inline)) void col2im_body(
        float *dinp_b, const float *dcol, const struct pynn_conv2d_shape *s,
        const struct pynn_conv2d_sizes *z) {
    int64_t st = s->stride, pad = s->pad, W = s->W;
    /* the taps of one kernel column j in turn: a row of the image then takes its adds at one
     * offset after another, each reading what the last stored at the same place (which the
     * processor forwards), not one float off (which stalls the load) */
    for (int64_t c = 0; c < s->C; c++)
        for (int64_t j = 0; j < s->KW; j++)
            for (int64_t i = 0; i < s->KH; i++) {
                int64_t k = (c * s->KH + i) * s->KW + j;
                float *plane = dinp_b + c * s->H * W;
                int64_t x0 = pad - j > 0 ? (pad - j + st - 1) / st : 0;
                int64_t x1 = W + pad - j > 0 ? min64(z->OW, (W + pad - j + st - 1) / st) : 0;
                for (int64_t y = 0; y < z->OH; y++) {
                    int64_t h = st * y + i - pad;
                    if (h < 0 || h >= s->H) continue;
                    const float *row = dcol + k * z->P + y * z->OW;
                    float *dst = plane + h * W;
                    if (st == 1) add_floats(dst + j - pad + x0, row + x0, x1 - x0);
                    else for (int64_t x = x0; x < x1; x++) dst[st * x + j - pad] += row[x];
                }
            }
}

static void col2im_generic(float *dinp_b, const float *dcol, const struct pynn_conv2d_shape *s,
                           const struct pynn_conv2d_sizes *z) {
    col2im_body(dinp_b, dcol, s, z);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2"))) static void col2im_avx2(
        float *dinp_b, const float *dcol, const struct pynn_conv2d_shape *s,
        const struct pynn_conv2d_sizes *z) {
    col2im_body(dinp_b, dcol, s, z);
}
#endif

static void col2im_add(float *dinp_b, const float *dcol, const struct pynn_conv2d_shape *s,
                       const struct pynn_conv2d_sizes *z) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (strcmp(conv_set()->name, "generic") != 0) {
        col2im_avx2(dinp_b, dcol, s, z);
        return;
    }
#endif
    col2im_generic(dinp_b, dcol, s, z);
}

/* ---- the products, on the micro-kernels of gemm_kernels.c ---- */

static int64_t round_up(int64_t n, int64_t unit) { return (n + unit - 1) / unit * unit; }

/* op(A) (M,K) packed as pynn_gemm packs it, once for all the images of a call: for each
 * slice of KC along k, slivers of mr rows (the kernel set's; for each k, the mr values of a
 * column; rows past M zero). A is (M,K) with row stride lda, or stored transposed, (K,M).
 * Slivers [q0,q1) of each slice only, so that threads can share the packing. Packed row i is
 * op(A)'s row rows[i] (rows NULL: row i). */
static void pack_rows(float *dst, const float *A, int64_t lda, int trans, int64_t M, int64_t K,
                      int64_t q0, int64_t q1, const int32_t *rows) {
    const int64_t mr = conv_set()->mr, Mp = round_up(M, mr);
    for (int64_t pc = 0; pc < K; pc += PYNN_KC) {
        int64_t kc = min64(PYNN_KC, K - pc);
        for (int64_t ir = q0 * mr; ir < q1 * mr; ir += mr) {
            float *d = dst + pc * Mp + ir * kc;
            for (int64_t k = 0; k < kc; k++)
                for (int64_t r = 0; r < mr; r++) {
                    int64_t i = ir + r < M && rows != NULL ? rows[ir + r] : ir + r;
                    d[k * mr + r] = ir + r >= M ? 0.0f : trans ? A[(pc + k) * lda + i]
                                                               : A[i * lda + pc + k];
                }
        }
    }
}

/* the slivers of mr rows that M rows make */
static int64_t slivers(int64_t M) {
    int64_t mr = conv_set()->mr;
    return (M + mr - 1) / mr;
}

/* C (M,N) = A (packed by pack_rows) B (K,N) + beta C, B read in place (row stride ldb): the
 * blocked loops of gemm_fast.c's packed path, without its packing of A for every call. Each
 * sliver of B (kc x nr) stays in L1 while A's slivers pass it. beta == 0 never reads C. */
static void packed_product(const float *apack, int64_t M, int64_t N, int64_t K, const float *B,
                           int64_t ldb, float beta, float *C, int64_t ldc) {
    const struct pynn_kernels *kern = conv_set();
    const int mr = kern->mr, nr = kern->nr;
    int64_t Mp = round_up(M, mr);
    for (int64_t pc = 0; pc < K; pc += PYNN_KC) {
        int64_t kc = min64(PYNN_KC, K - pc);
        float bt = pc == 0 ? beta : 1.0f;           /* later slices add to the first */
        for (int64_t jr = 0; jr < N; jr += nr)
            for (int64_t ir = 0; ir < M; ir += mr)
                kern->ukernel(kc, apack + pc * Mp + ir * kc, B + pc * ldb + jr, ldb,
                              C + ir * ldc + jr, ldc, (int)min64(mr, M - ir),
                              (int)min64(nr, N - jr), 1.0f, bt);
    }
}

/* whether the forward reads its patches from the image (the set's convkernel) instead of
 * unfolding them: stride 1, no padding, output rows of whole vectors of 8, so that every run
 * of 8 output positions reads 8 consecutive pixels of each tap; and offsets that fit int32 */
static int reads_image(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z) {
    return conv_set()->convkernel != NULL && s->stride == 1 && s->pad == 0 &&
           z->OW % 8 == 0 && s->C * s->H * s->W <= INT32_MAX;
}

/* off[k] = where tap k = (c,i,j) of output position (0,0) lies in an image, for k in
 * [k0,k1) */
static void tap_offsets(int32_t *off, const struct pynn_conv2d_shape *s, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; k++) {
        int64_t c = k / (s->KH * s->KW), i = k / s->KW % s->KH, j = k % s->KW;
        off[k] = (int32_t)((c * s->H + i) * s->W + j);
    }
}

/* C (M, positions [p0,p1)) = bias + A (packed by pack_rows) times image inp_b's patches, then
 * ReLU with `relu`; the patches read where they lie (reads_image; p0, p1 multiples of 8):
 * packed_product's loops and sums over C holding the bias, with no unfolding and no pass of
 * its own for the bias or the ReLU. Output position p = (y,x) reads tap k at off[k] + y W + x.
 * bias NULL: none. */
static void image_product(const float *apack, int64_t M, int64_t p0, int64_t p1,
                          const float *inp_b, const int32_t *off,
                          const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z,
                          const float *bias, int relu, float *C, int64_t ldc) {
    const struct pynn_kernels *kern = conv_set();
    const int mr = kern->mr, nr = kern->nr;
    int64_t Mp = round_up(M, mr), K = z->K, OW = z->OW;
    for (int64_t pc = 0; pc < K; pc += PYNN_KC) {
        int64_t kc = min64(PYNN_KC, K - pc);
        float bt = pc == 0 ? 0.0f : 1.0f;           /* later slices add to the first */
        int last = pc + kc == K;
        for (int64_t jr = p0; jr < p1; jr += nr) {
            int n = (int)min64(nr, p1 - jr);
            const float *x0 = inp_b + jr / OW * s->W + jr % OW;
            const float *x1 = n > 8 ? inp_b + (jr + 8) / OW * s->W + (jr + 8) % OW : x0;
            for (int64_t ir = 0; ir < M; ir += mr)
                kern->convkernel(kc, apack + pc * Mp + ir * kc, x0, x1, off + pc,
                                 C + ir * ldc + jr, ldc, (int)min64(mr, M - ir), n, 1.0f, bt,
                                 pc == 0 && bias != NULL ? bias + ir : NULL, relu && last);
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
    int64_t shared, per_thread;     /* the groups' copies of dweight; each thread's share */
    int64_t pool;                   /* k of the pooling after a ReLU, or 0: none */
    int32_t *argmax;
    int set_dinp;                   /* zero each image's dinp before adding into it */
};

static void pool_planes(const float *inp, float *out, int32_t *argmax, int64_t q0, int64_t q1,
                        int64_t H, int64_t W, int64_t k);

/* out_b (OC,P) = bias + weight (OC,K) col (K,P), on this thread or shared among nt threads
 * (then every thread calls it, each unfolds some rows of the shared col and computes some
 * columns of out_b). With a pooling, out_b is the thread share's image before it: ReLU in
 * place, then each thread pools some of its channels into the output. */
static void forward_image(const struct conv_job *j, int64_t b, float *wpack, float *col,
                          int tid, int nt) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    float *out_b = j->pool ? image_before_pool(wpack, s, z) : j->out + b * s->OC * z->P;
    const float *inp_b = j->inp + b * s->C * s->H * s->W;
    int64_t k0, k1, p0, p1;
    int direct = reads_image(s, z);     /* col then holds the taps' offsets */
    pynn_share(z->K, 1, tid, nt, &k0, &k1);
    if (!direct) im2col_rows(col + k0 * z->P, inp_b, s, z, k0, k1);
    pynn_share(z->P, 16, tid, nt, &p0, &p1);
    for (int64_t o = 0; o < s->OC && j->bias != NULL && !direct; o++)
        for (int64_t p = p0; p < p1; p++) out_b[o * z->P + p] = j->bias[o];
    pynn_barrier(nt);
    if (direct)       /* the bias, and before a pooling the ReLU, on the tiles' way out */
        image_product(wpack, s->OC, p0, p1, inp_b, (const int32_t *)col, s, z, j->bias,
                      j->pool != 0, out_b, z->P);
    else
        packed_product(wpack, s->OC, p1 - p0, z->K, col + p0, z->P, j->bias != NULL ? 1.0f : 0.0f,
                       out_b + p0, z->P);
    pynn_barrier(nt);     /* col is overwritten by the next image */
    if (j->pool) {
        int64_t o0, o1, k = j->pool, n = (z->OH / k) * (z->OW / k);
        pynn_share(s->OC, 1, tid, nt, &o0, &o1);
        for (int64_t e = o0 * z->P; e < o1 * z->P && !direct; e++)   /* ReLU, as pynn_relu_forward */
            out_b[e] = out_b[e] < 0.0f ? 0.0f : out_b[e];
        pool_planes(out_b, j->out + b * s->OC * n, j->argmax + b * s->OC * n, o0, o1, z->OH,
                    z->OW, k);
        pynn_barrier(nt);     /* out_b is overwritten by the next image */
    }
}

static void forward_job(int tid, int nt, void *arg) {
    const struct conv_job *j = arg;
    const struct pynn_conv2d_shape *s = j->s;
    int whole = s->B >= nt;         /* whole images to each thread, else each shared by all */
    float *wpack = thread_work(j->work, j->shared, j->per_thread, whole ? tid : 0);
    float *col = wpack + pack_floats(s, &j->z);
    int64_t q0, q1;
    pynn_share(slivers(s->OC), 1, whole ? 0 : tid, whole ? 1 : nt, &q0, &q1);
    pack_rows(wpack, j->weight, j->z.K, 0, s->OC, j->z.K, q0, q1, NULL);
    if (reads_image(s, &j->z)) {
        int64_t k0, k1;
        pynn_share(j->z.K, 1, whole ? 0 : tid, whole ? 1 : nt, &k0, &k1);
        tap_offsets((int32_t *)col, s, k0, k1);
    }
    if (whole) {
        int64_t b0, b1;
        pynn_share(s->B, 1, tid, nt, &b0, &b1);
        for (int64_t b = b0; b < b1; b++) forward_image(j, b, wpack, col, 0, 1);
    } else {
        pynn_barrier(nt);
        for (int64_t b = 0; b < s->B; b++) forward_image(j, b, wpack, col, tid, nt);
    }
}

/* the workspace's parts for the job's shape: one shared part and one thread's own; the caller's
 * work_len must hold both (more threads run where it holds more) */
static int split_work(struct conv_job *j, int64_t work_len) {
    j->per_thread = floats_per_thread(j->s, &j->z, j->pool != 0);
    j->shared = j->pool ? 0 : group_floats(j->s, &j->z);
    if (j->per_thread < 0 || j->shared < 0 || j->per_thread > INT64_MAX - j->shared)
        return PYNN_ERR_OVERFLOW;
    return work_len < j->shared + j->per_thread ? PYNN_ERR_SIZE : PYNN_OK;
}

/* both forwards: j holds the call's arrays and pooling */
static int forward(struct conv_job *j, int64_t work_len) {
    const struct pynn_conv2d_shape *s = j->s;
    PYNN_TRY(pynn_conv2d_check(s, &j->z));
    if (work_len < 0) return PYNN_ERR_SIZE;
    if (j->pool) PYNN_TRY(pynn_pool_check(s->B, s->OC, j->z.OH, j->z.OW, j->pool));
    if (s->B == 0) return PYNN_OK;
    if (j->out == NULL || j->inp == NULL || j->weight == NULL || j->work == NULL ||
        (j->pool && j->argmax == NULL))
        return PYNN_ERR_NULL;
    PYNN_TRY(split_work(j, work_len));
    double flops = 2.0 * (double)s->B * (double)s->OC * (double)j->z.K * (double)j->z.P;
    unsigned fp = pynn_flush_denormals();
    /* whole images to each thread, as parts any thread may claim; a batch smaller than the
     * thread count shares each image, at barriers */
    int nt = threads_for(flops, work_len, j->shared, j->per_thread);
    if (s->B >= nt) pynn_parallel_parts(nt, nt, forward_job, j);
    else pynn_parallel(nt, forward_job, j);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

int pynn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                        const struct pynn_conv2d_shape *s, float *work, int64_t work_len) {
    struct conv_job j = {s, {0}, out, NULL, NULL, NULL, inp, weight, bias, NULL, work, 0, 0, 0,
                         NULL, 0};
    return forward(&j, work_len);
}

int pynn_conv2d_relu_pool_forward(float *out, int32_t *argmax, const float *inp,
                                  const float *weight, const float *bias,
                                  const struct pynn_conv2d_shape *s, int64_t k, float *work,
                                  int64_t work_len) {
    struct conv_job j = {s, {0}, out, NULL, NULL, NULL, inp, weight, bias, NULL, work, 0, 0, k,
                         argmax, 0};
    if (k < 1) return PYNN_ERR_ARG;
    return forward(&j, work_len);
}

/* dw[:, r0*KW : r1*KW] (the taps of kernel rows [r0,r1); dw (OC,K) with row stride K) +=
 * sum over images [b_lo,b_hi) of dout_b (OC,P) col_b^T (P, taps), a few images to a
 * product: dout^T and col^T of those images stacked, (n,OC) and (n,taps) */
static void dweight_sum(const struct conv_job *j, int64_t b_lo, int64_t b_hi, int64_t r0,
                        int64_t r1, float *dw, float *ws) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    int64_t nk = (r1 - r0) * s->KW, step = images_per_step(z), OC = s->OC, P = z->P;
    if (nk == 0) return;
    if (P >= DW_DOT_POSITIONS) {
        /* dw[o, tap] += dout_b row o . col row tap: both rows lie along the positions, so the
         * dot kernel reads them where they are (ws holds the image's col rows of these taps) */
        const struct pynn_kernels *kern = conv_set();
        float *dw_r = dw + r0 * s->KW;
        for (int64_t b = b_lo; b < b_hi; b++) {
            const float *dout_b = j->dout + b * OC * P;
            im2col_rows(ws, j->inp + b * s->C * s->H * s->W, s, z, r0 * s->KW, r1 * s->KW);
            for (int64_t o = 0; o < OC; o += PYNN_DOT_MR)
                for (int64_t t = 0; t < nk; t += PYNN_DOT_NR)
                    kern->dotkernel(P, dout_b + o * P, P, ws + t * P, P, dw_r + o * z->K + t, z->K,
                                    (int)min64(PYNN_DOT_MR, OC - o),
                                    (int)min64(PYNN_DOT_NR, nk - t), 1.0f, 1.0f);
        }
        return;
    }
    float *doutT = ws, *colT = ws + step * P * OC;
    for (int64_t b0 = b_lo; b0 < b_hi; b0 += step) {
        int64_t nb = min64(step, b_hi - b0);
        for (int64_t b = b0; b < b0 + nb; b++) {
            const float *dout_b = j->dout + b * OC * P;
            float *dT = doutT + (b - b0) * P * OC;
            for (int64_t o = 0; o < OC; o++)
                for (int64_t p = 0; p < P; p++) dT[p * OC + o] = dout_b[o * P + p];
            im2col_transposed(colT + (b - b0) * P * nk, nk, j->inp + b * s->C * s->H * s->W, s,
                              z, r0, r1);
        }
        struct pynn_gemm_args g = {1, 0, OC, nk, nb * P, 1.0f, doutT, OC, colT, nk, 1.0f,
                                   dw + r0 * s->KW, z->K, NULL, -1, NULL, NULL};
        pynn_gemm_part(&g, 0, 1);
    }
}

/* whether dweight reads the pixels its taps read from the images (the set's dwkernel) instead
 * of unfolding them: no padding (every tap of every position lies in an image), offsets that
 * fit int32 within the images of one slice of positions */
static int dweight_reads_image(const struct pynn_conv2d_shape *s, const struct pynn_conv2d_sizes *z) {
    return conv_set()->dwkernel != NULL && s->pad == 0 &&
           (PYNN_KC / z->P + 2) * s->C * s->H * s->W <= INT32_MAX;
}

/* dw[:, taps [k0,k1)] += the sum over every image b and position p of dout_b[:, p] times the
 * pixel each tap reads at p, read from the images by the set's dwkernel: dw^T's tiles (taps x
 * output channels) summed over all the positions of the batch, a slice of KC at a time, into
 * ws, then added to dw. Each element is one chain over the positions in order, on one thread. */
static void dweight_from_image(const struct conv_job *j, int64_t k0, int64_t k1, float *ws) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    const struct pynn_kernels *kern = conv_set();
    const int mr = kern->mr, nr = kern->nr;
    const int64_t OC = s->OC, P = z->P, N = s->B * P, CHW = s->C * s->H * s->W;
    if (k0 >= k1) return;
    float *dwT = ws;                                     /* (k1-k0, OC) */
    float *doutT = dwT + round_up((k1 - k0) * OC, 16);   /* (KC, OC): a slice's dout^T */
    int32_t *pos = (int32_t *)(doutT + PYNN_KC * OC);    /* (KC) */
    int32_t *off = pos + PYNN_KC;                        /* (K): the taps' offsets */
    tap_offsets(off, s, k0, k1);
    for (int64_t pc = 0; pc < N; pc += PYNN_KC) {
        int64_t kc = min64(PYNN_KC, N - pc), b_first = pc / P;
        for (int64_t q = 0; q < kc;) {       /* the slice's positions, an image's run at a time */
            int64_t b = (pc + q) / P, p0 = (pc + q) % P, n = min64(P - p0, kc - q);
            for (int64_t p = p0; p < p0 + n; p++)
                pos[q + p - p0] = (int32_t)((b - b_first) * CHW +
                                            s->stride * (p / z->OW * s->W + p % z->OW));
            for (int64_t o = 0; o < OC; o++) {
                const float *d = j->dout + (b * OC + o) * P + p0;
                for (int64_t p = 0; p < n; p++) doutT[(q + p) * OC + o] = d[p];
            }
            q += n;
        }
        const float *base = j->inp + b_first * CHW;
        for (int64_t jr = 0; jr < OC; jr += nr)
            for (int64_t ir = k0; ir < k1; ir += mr) {
                const float *taps[PYNN_MR_MAX];
                int m = (int)min64(mr, k1 - ir);
                for (int r = 0; r < m; r++) taps[r] = base + off[ir + r];
                kern->dwkernel(kc, taps, pos, doutT + jr, OC, dwT + (ir - k0) * OC + jr, OC, m,
                               (int)min64(nr, OC - jr), 1.0f, pc == 0 ? 0.0f : 1.0f);
            }
    }
    for (int64_t o = 0; o < OC; o++)
        for (int64_t k = k0; k < k1; k++) j->dweight[o * z->K + k] += dwT[(k - k0) * OC + o];
}

/* dinp_b += col2im(weight^T (K,OC) dout_b (OC,P)) */
static void dinp_image(const struct conv_job *j, int64_t b, const float *wTpack, float *dcol) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    packed_product(wTpack, z->K, z->P, s->OC, j->dout + b * s->OC * z->P, z->P, 0.0f, dcol, z->P);
    col2im_add(j->dinp + b * s->C * s->H * s->W, dcol, s, z);
}

/* whether dinp folds the product's tiles onto the image as they come (stride 1, no padding:
 * every tap of every position lies in the image), never writing dcol */
static int folds_tiles(const struct pynn_conv2d_shape *s) {
    return s->stride == 1 && s->pad == 0 && s->C * s->H * s->W <= INT32_MAX;
}

/* the taps in the order dinp_tiles takes them, (c,j,i), with their offsets in an image: the
 * rows of a tile then add to runs of pixels an image row apart, never to a run one float off
 * the run just stored (a load that overlaps part of a store in flight stalls) */
static void fold_order(int32_t *order, int32_t *off, const struct pynn_conv2d_shape *s) {
    int64_t k = 0;
    for (int64_t c = 0; c < s->C; c++)
        for (int64_t j = 0; j < s->KW; j++)
            for (int64_t i = 0; i < s->KH; i++, k++) {
                order[k] = (int32_t)((c * s->KH + i) * s->KW + j);
                off[k] = (int32_t)((c * s->H + i) * s->W + j);
            }
}

/* dinp_image without dcol (folds_tiles): each tile of weight^T dout_b, taps [ir, ir+m) (of
 * wTpack's rows, packed in fold_order's order) by positions [jr, jr+n), summed over all of OC
 * into t while it is in L1, is added to the image at once: position p = (y,x) of tap k read
 * pixel off[k] + y W + x, so the tile's positions in one output row add to consecutive
 * pixels. Compiled twice, as col2im is. */
static inline __attribute__((always_inline)) void dinp_tiles_body(
        const struct conv_job *j, int64_t b, const float *wTpack, const int32_t *off, float *t) {
    const struct pynn_conv2d_shape *s = j->s;
    const struct pynn_conv2d_sizes *z = &j->z;
    const struct pynn_kernels *kern = conv_set();
    const int mr = kern->mr, nr = kern->nr;
    const int64_t M = z->K, N = z->P, K = s->OC, Mp = round_up(M, mr), OW = z->OW;
    const float *dout_b = j->dout + b * K * N;
    float *dinp_b = j->dinp + b * s->C * s->H * s->W;
    int64_t seg_at[PYNN_NR_MAX + 1], seg_q[PYNN_NR_MAX + 1], seg_len[PYNN_NR_MAX + 1];
    for (int64_t jr = 0; jr < N; jr += nr) {
        int n = (int)min64(nr, N - jr), nseg = 0;
        for (int64_t q = 0; q < n; nseg++) {    /* the tile's runs within one output row */
            int64_t y = (jr + q) / OW, x = (jr + q) % OW;
            seg_at[nseg] = y * s->W + x, seg_q[nseg] = q, seg_len[nseg] = min64(n - q, OW - x);
            q += seg_len[nseg];
        }
        /* runs of 8 summed over all of OC in one slice: the kernel adds its tile to them */
        int in_place = kern->foldkernel != NULL && OW % 8 == 0 && K <= PYNN_KC;
        for (int64_t ir = 0; ir < M; ir += mr) {
            int m = (int)min64(mr, M - ir);
            if (in_place) {
                float *c0[PYNN_MR_MAX], *c1[PYNN_MR_MAX];
                int64_t at0 = jr / OW * s->W + jr % OW, at1 = (jr + 8) / OW * s->W + (jr + 8) % OW;
                for (int r = 0; r < m; r++) {
                    c0[r] = dinp_b + off[ir + r] + at0;
                    c1[r] = n > 8 ? dinp_b + off[ir + r] + at1 : c0[r];
                }
                kern->foldkernel(K, wTpack + ir * K, dout_b + jr, N, c0, c1, m, n);
                continue;
            }
            for (int64_t pc = 0; pc < K; pc += PYNN_KC)
                kern->ukernel(min64(PYNN_KC, K - pc), wTpack + pc * Mp + ir * min64(PYNN_KC, K - pc),
                              dout_b + pc * N + jr, N, t, nr, m, n, 1.0f, pc == 0 ? 0.0f : 1.0f);
            for (int r = 0; r < m; r++) {
                float *tap = dinp_b + off[ir + r];
                for (int g = 0; g < nseg; g++)
                    add_floats(tap + seg_at[g], t + r * nr + seg_q[g], seg_len[g]);
            }
        }
    }
}

static void dinp_tiles_generic(const struct conv_job *j, int64_t b, const float *wTpack,
                               const int32_t *off, float *t) {
    dinp_tiles_body(j, b, wTpack, off, t);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2"))) static void dinp_tiles_avx2(
        const struct conv_job *j, int64_t b, const float *wTpack, const int32_t *off, float *t) {
    dinp_tiles_body(j, b, wTpack, off, t);
}
#endif

static void dinp_tiles(const struct conv_job *j, int64_t b, const float *wTpack,
                       const int32_t *off, float *t) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (strcmp(conv_set()->name, "generic") != 0) {
        dinp_tiles_avx2(j, b, wTpack, off, t);
        return;
    }
#endif
    dinp_tiles_generic(j, b, wTpack, off, t);
}

/* the groups [part share of DW_GROUPS] of images each sum their dweight into their own copy
 * (see DW_GROUPS) */
static void dweight_groups(const struct conv_job *j, int part, int nparts, float *ws) {
    const struct pynn_conv2d_shape *s = j->s;
    int64_t n = s->OC * j->z.K, g0, g1, b_lo, b_hi;
    float *copies = (float *)j->work;
    pynn_share(DW_GROUPS, 1, part, nparts, &g0, &g1);
    for (int64_t g = g0; g < g1; g++) {
        memset(copies + g * n, 0, sizeof(float) * n);
        pynn_share(s->B, 1, (int)g, DW_GROUPS, &b_lo, &b_hi);
        dweight_sum(j, b_lo, b_hi, 0, s->C * s->KH, copies + g * n, ws);
    }
}

/* then dweight += the sum of the copies, in group order */
static void add_groups_job(int part, int nparts, void *arg) {
    const struct conv_job *j = arg;
    int64_t n = j->s->OC * j->z.K, e0, e1;
    const float *copies = j->work;
    pynn_share(n, 16, part, nparts, &e0, &e1);
    for (int64_t e = e0; e < e1; e++) {
        float sum = 0.0f;
        for (int64_t g = 0; g < DW_GROUPS; g++) sum += copies[g * n + e];
        j->dweight[e] += sum;
    }
}

/* image b's dinp zeroed, when the call writes the gradient rather than adds it */
static void zero_image(const struct conv_job *j, int64_t b) {
    int64_t n = j->s->C * j->s->H * j->s->W;
    if (j->set_dinp) memset(j->dinp + b * n, 0, sizeof(float) * (size_t)n);
}

/* part `part` of nparts of everything but adding up the groups' copies of dweight; parts
 * share no output, so any thread may run any part (pynn_parallel_parts) */
static void backward_job(int part, int nparts, void *arg) {
    const struct conv_job *j = arg;
    const struct pynn_conv2d_shape *s = j->s;
    float *wTpack = thread_work(j->work, j->shared, j->per_thread, part);
    float *ws = wTpack + pack_floats(s, &j->z);
    int64_t r0, r1, b0, b1, o0, o1;
    if (j->shared == 0) {
        pynn_share(s->C * s->KH, 1, part, nparts, &r0, &r1);
        if (dweight_reads_image(s, &j->z)) dweight_from_image(j, r0 * s->KW, r1 * s->KW, ws);
        else dweight_sum(j, 0, s->B, r0, r1, j->dweight, ws);
    } else {
        dweight_groups(j, part, nparts, ws);
    }
    if (j->dbias != NULL) {         /* dbias[o] += sum over images and positions of dout */
        pynn_share(s->OC, 1, part, nparts, &o0, &o1);
        for (int64_t b = 0; b < s->B; b++)
            for (int64_t o = o0; o < o1; o++)
                j->dbias[o] += sum_floats(j->dout + (b * s->OC + o) * j->z.P, j->z.P);
    }
    if (j->dinp != NULL) {
        pynn_share(s->B, 1, part, nparts, &b0, &b1);
        if (b0 < b1 && folds_tiles(s)) {     /* ws: the taps' order and offsets, then a tile */
            int32_t *order = (int32_t *)ws, *off = order + j->z.K;
            float *t = ws + round_up(2 * j->z.K, 16);
            fold_order(order, off, s);
            pack_rows(wTpack, j->weight, j->z.K, 1, j->z.K, s->OC, 0, slivers(j->z.K), order);
            for (int64_t b = b0; b < b1; b++) {
                zero_image(j, b);
                dinp_tiles(j, b, wTpack, off, t);
            }
        } else if (b0 < b1) {
            pack_rows(wTpack, j->weight, j->z.K, 1, j->z.K, s->OC, 0, slivers(j->z.K), NULL);
            for (int64_t b = b0; b < b1; b++) {
                zero_image(j, b);
                dinp_image(j, b, wTpack, ws);   /* ws: dcol */
            }
        }
    }
}

int pynn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const struct pynn_conv2d_shape *s,
                         int set, float *work, int64_t work_len) {
    struct conv_job j = {s, {0}, NULL, dinp, dweight, dbias, inp, weight, NULL, dout, work, 0, 0,
                         0, NULL, set != 0};
    PYNN_TRY(pynn_conv2d_check(s, &j.z));
    if (work_len < 0) return PYNN_ERR_SIZE;
    if (set && s->B == 0) {          /* no image: every gradient is zero */
        if (dweight == NULL) return PYNN_ERR_NULL;
        memset(dweight, 0, sizeof(float) * (size_t)(s->OC * j.z.K));
        if (dbias != NULL) memset(dbias, 0, sizeof(float) * (size_t)s->OC);
        return PYNN_OK;
    }
    if (s->B == 0) return PYNN_OK;
    if (dweight == NULL || dout == NULL || inp == NULL || work == NULL ||
        (dinp != NULL && weight == NULL))
        return PYNN_ERR_NULL;
    PYNN_TRY(split_work(&j, work_len));
    if (set) {                       /* small beside dinp: zeroed here, before the threads */
        memset(dweight, 0, sizeof(float) * (size_t)(s->OC * j.z.K));
        if (dbias != NULL) memset(dbias, 0, sizeof(float) * (size_t)s->OC);
    }
    double flops = 2.0 * (double)s->B * (double)s->OC * (double)j.z.K * (double)j.z.P;
    flops *= dinp != NULL ? 2.0 : 1.0;
    unsigned fp = pynn_flush_denormals();
    int nt = threads_for(flops, work_len, j.shared, j.per_thread);
    pynn_parallel_parts(nt, nt, backward_job, &j);
    if (j.shared > 0) pynn_parallel_parts(nt, nt, add_groups_job, &j);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* ---- max pooling ---- */

struct pool_job {
    float *out, *dinp;
    int32_t *argmax;
    const int32_t *argmax_in;
    const float *inp, *dout, *out_in;
    int64_t planes, H, W, k;
    int bad[64];                /* the backward's check: whether thread t found a bad argmax */
};

/* planes [q0,q1) of the forward, any k: the reference's scan, its choice made without
 * branches (a window's winner is as unpredictable as the data) */
static void pool_forward_planes(const float *inp, float *out, int32_t *argmax, int64_t q0,
                                int64_t q1, int64_t H, int64_t W, int64_t k) {
    int64_t OH = H / k, OW = W / k;
    for (int64_t q = q0; q < q1; q++) {
        const float *inp_q = inp + q * H * W;
        float *out_q = out + q * OH * OW;
        int32_t *am_q = argmax + q * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int32_t best = (int32_t)((k * y) * W + k * x);
                float m = inp_q[best];
                for (int64_t i = 0; i < k; i++)
                    for (int64_t t = 0; t < k; t++) {
                        int32_t at = (int32_t)((k * y + i) * W + k * x + t);
                        float v = inp_q[at];
                        int wins = (v > m) | ((v != v) & (m == m));   /* a NaN wins, once */
                        m = wins ? v : m;
                        best = wins ? at : best;
                    }
                out_q[y * OW + x] = m;
                am_q[y * OW + x] = best;
            }
    }
}

/* a pair's winner: b if it is larger, or a NaN where a is not (so the first of equals, and
 * the first NaN, win, as in the sequential scan) */
static inline int32_t later_wins(float a, float b) { return (b > a) | ((b != b) & (a == a)); }

/* mask all ones: x, else y, by their bits */
static inline float pick(int32_t mask, float x, float y) {
    int32_t xb, yb, r;
    memcpy(&xb, &x, 4);
    memcpy(&yb, &y, 4);
    r = (xb & mask) | (yb & ~mask);
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* k = 2, one output row: the two pairs of each window, then their winners, chosen by masks
 * rather than branches, so that the compiler runs a row's windows side by side (inlined, so
 * that the AVX2 loop's tail is compiled for AVX2 too: no switch between SSE and AVX code) */
static inline __attribute__((always_inline)) void pool2_row(const float *row0, const float *row1, int32_t at0, int32_t W,
                      float *out, int32_t *am, int64_t OW) {
    for (int64_t x = 0; x < OW; x++) {
        float a = row0[2 * x], b = row0[2 * x + 1], c = row1[2 * x], d = row1[2 * x + 1];
        int32_t ia = at0 + 2 * (int32_t)x;
        int32_t wb = -later_wins(a, b), wd = -later_wins(c, d);   /* all ones: the later */
        float top = pick(wb, b, a), bottom = pick(wd, d, c);
        int32_t itop = ia - wb, ibottom = ia + W - wd;
        int32_t wbot = -later_wins(top, bottom);
        out[x] = pick(wbot, bottom, top);
        am[x] = (ibottom & wbot) | (itop & ~wbot);
    }
}

#ifdef POOL_AVX2
/* later_wins for eight pairs: all ones where b wins */
__attribute__((target("avx2"))) static inline __m256 later_wins8(__m256 a, __m256 b) {
    return _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ),
                        _mm256_and_ps(_mm256_cmp_ps(b, b, _CMP_UNORD_Q),
                                      _mm256_cmp_ps(a, a, _CMP_ORD_Q)));
}

/* the even and the odd floats of p[0..16), each in order */
__attribute__((target("avx2"))) static inline void split_pairs(const float *p, __m256 *even,
                                                                __m256 *odd) {
    __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* pool2_row, eight windows at a time: the same choices, made by the same comparisons, so the
 * same bits */
__attribute__((target("avx2"))) static void pool2_row_avx2(const float *row0, const float *row1,
                                                            int32_t at0, int32_t W, float *out,
                                                            int32_t *am, int64_t OW) {
    const __m256i twice = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i width = _mm256_set1_epi32(W);
    int64_t x = 0;
    for (; x + 8 <= OW; x += 8) {
        __m256 a, b, c, d;
        split_pairs(row0 + 2 * x, &a, &b);
        split_pairs(row1 + 2 * x, &c, &d);
        __m256i ia = _mm256_add_epi32(_mm256_set1_epi32(at0 + 2 * (int32_t)x), twice);
        __m256 wb = later_wins8(a, b), wd = later_wins8(c, d);
        __m256 top = _mm256_blendv_ps(a, b, wb), bottom = _mm256_blendv_ps(c, d, wd);
        __m256i itop = _mm256_sub_epi32(ia, _mm256_castps_si256(wb));
        __m256i ibottom = _mm256_sub_epi32(_mm256_add_epi32(ia, width), _mm256_castps_si256(wd));
        __m256 wbot = later_wins8(top, bottom);
        _mm256_storeu_ps(out + x, _mm256_blendv_ps(top, bottom, wbot));
        _mm256_storeu_si256((__m256i *)(am + x), _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(itop), _mm256_castsi256_ps(ibottom), wbot)));
    }
    pool2_row(row0 + 2 * x, row1 + 2 * x, at0 + 2 * (int32_t)x, W, out + x, am + x, OW - x);
}
#endif

/* planes [q0,q1) of inp, (H,W) each, pooled into out and argmax, (H/k,W/k) each */
static void pool_planes(const float *inp, float *out, int32_t *argmax, int64_t q0, int64_t q1,
                        int64_t H, int64_t W, int64_t k) {
    if (k != 2) {
        pool_forward_planes(inp, out, argmax, q0, q1, H, W, k);
        return;
    }
    int64_t OH = H / 2, OW = W / 2;
#ifdef POOL_AVX2
    int wide = strcmp(conv_set()->name, "generic") != 0;
#endif
    for (int64_t q = q0; q < q1; q++)
        for (int64_t y = 0; y < OH; y++) {
            const float *row0 = inp + q * H * W + 2 * y * W;
            float *o = out + (q * OH + y) * OW;
            int32_t *am = argmax + (q * OH + y) * OW;
#ifdef POOL_AVX2
            if (wide) {
                pool2_row_avx2(row0, row0 + W, (int32_t)(2 * y * W), (int32_t)W, o, am, OW);
                continue;
            }
#endif
            pool2_row(row0, row0 + W, (int32_t)(2 * y * W), (int32_t)W, o, am, OW);
        }
}

static void pool_forward_job(int tid, int nt, void *arg) {
    const struct pool_job *j = arg;
    int64_t q0, q1;
    pynn_share(j->planes, 1, tid, nt, &q0, &q1);
    pool_planes(j->inp, j->out, j->argmax, q0, q1, j->H, j->W, j->k);
}

int pynn_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, int64_t B, int64_t C,
                           int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    if (B * C == 0) return PYNN_OK;
    if (out == NULL || argmax == NULL || inp == NULL) return PYNN_ERR_NULL;
    struct pool_job j = {out, NULL, argmax, NULL, inp, NULL, NULL, B * C, H, W, k, {0}};
    pynn_parallel(pynn_threads_for((double)(B * C * H * W)), pool_forward_job, &j);
    return PYNN_OK;
}

/* whether an argmax of planes [q0,q1) lies outside its window: row k*y + i of the window
 * (y,x) holds the indices [(k*y + i)*W + k*x, +k) (a range test per row, no division, no
 * branch: the loops unroll for k = 2 and run side by side) */
static inline __attribute__((always_inline)) int pool_any_bad(const struct pool_job *j,
                                                              int64_t q0, int64_t q1, int64_t k) {
    int64_t W = j->W, OH = j->H / k, OW = W / k;
    int bad = 0;
    for (int64_t q = q0; q < q1; q++) {
        const int32_t *am = j->argmax_in + q * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int64_t idx = am[y * OW + x];
                int inside = 0;
                for (int64_t i = 0; i < k; i++)
                    inside |= (uint64_t)(idx - ((k * y + i) * W + k * x)) < (uint64_t)k;
                bad |= !inside;
            }
    }
    return bad;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
/* pool_any_bad for k = 2, eight windows at a time: window (y,x)'s index less the index of its
 * top left pixel must be 0, 1, W or W + 1 (int32 arithmetic: the index and that pixel's both
 * lie in int32, so the difference is exact whenever it is one of those) */
__attribute__((target("avx2"))) static int pool2_any_bad_avx2(const struct pool_job *j,
                                                               int64_t q0, int64_t q1) {
    const int64_t W = j->W, OH = j->H / 2, OW = W / 2;
    const __m256i twice = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i pair = _mm256_set1_epi32(~1), width = _mm256_set1_epi32((int32_t)W);
    __m256i ok = _mm256_set1_epi32(-1);
    int bad = 0;
    for (int64_t q = q0; q < q1; q++) {
        const int32_t *am = j->argmax_in + q * OH * OW;
        for (int64_t y = 0; y < OH; y++) {
            int64_t x = 0;
            for (; x + 8 <= OW; x += 8) {
                __m256i top = _mm256_add_epi32(_mm256_set1_epi32((int32_t)(2 * y * W + 2 * x)),
                                               twice);
                __m256i d = _mm256_sub_epi32(
                    _mm256_loadu_si256((const __m256i *)(am + y * OW + x)), top);
                __m256i row0 = _mm256_cmpeq_epi32(_mm256_and_si256(d, pair), _mm256_setzero_si256());
                __m256i row1 = _mm256_cmpeq_epi32(
                    _mm256_and_si256(_mm256_sub_epi32(d, width), pair), _mm256_setzero_si256());
                ok = _mm256_and_si256(ok, _mm256_or_si256(row0, row1));
            }
            for (; x < OW; x++) {
                int64_t d = am[y * OW + x] - (2 * y * W + 2 * x);
                bad |= !(d == 0 || d == 1 || d == W || d == W + 1);
            }
        }
    }
    return bad || _mm256_movemask_epi8(ok) != -1;
}
#endif

static void pool_check_job(int tid, int nt, void *arg) {
    struct pool_job *j = arg;
    int64_t q0, q1;
    pynn_share(j->planes, 1, tid, nt, &q0, &q1);
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (j->k == 2 && strcmp(conv_set()->name, "generic") != 0) {
        j->bad[tid] = pool2_any_bad_avx2(j, q0, q1);
        return;
    }
#endif
    j->bad[tid] = j->k == 2 ? pool_any_bad(j, q0, q1, 2) : pool_any_bad(j, q0, q1, j->k);
}

static void pool_backward_job(int tid, int nt, void *arg) {
    const struct pool_job *j = arg;
    int64_t q0, q1, n = (j->H / j->k) * (j->W / j->k);
    pynn_share(j->planes, 1, tid, nt, &q0, &q1);
    for (int64_t q = q0; q < q1; q++) {
        float *dinp_q = j->dinp + q * j->H * j->W;
        for (int64_t t = 0; t < n; t++) dinp_q[j->argmax_in[q * n + t]] += j->dout[q * n + t];
    }
}

/* in the forward pass out = relu(inp)[argmax], so the gradient reaches inp at the argmax
 * alone, and only where out > 0 (ReLU passed nothing on where it gave 0): each plane is
 * written whole, zero but there. dout is added to a zero, as the pooling backward adds it
 * into a zeroed dinp, so that the bits are the layers' (a -0 becomes +0 alike). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
/* planes [q0,q1) for k = 2, each written once in a pass (no zeroing first): four windows at a
 * time, each window's value (0 + dout where out > 0, else 0) placed at its argmax's place in
 * the two rows of 8 pixels and 0 at the others; what no window covers (a last odd row or
 * column) is 0. The bits of relu_pool_backward_job's loop. */
__attribute__((target("avx2"))) static void relu_pool2_backward_avx2(const struct pool_job *j,
                                                                      int64_t q0, int64_t q1) {
    const int64_t H = j->H, W = j->W, OH = H / 2, OW = W / 2, n = OH * OW;
    const __m256i twice = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i even_odd = _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1);
    const __m256i lanes2 = _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6);
    const __m256i row1 = _mm256_add_epi32(even_odd, _mm256_set1_epi32((int32_t)W));
    for (int64_t q = q0; q < q1; q++) {
        float *dinp_q = j->dinp + q * H * W;
        const int32_t *am = j->argmax_in + q * n;
        const float *d = j->dout + q * n, *o = j->out_in + q * n;
        for (int64_t y = 0; y < OH; y++) {
            float *r0 = dinp_q + 2 * y * W, *r1 = r0 + W;
            int64_t x = 0;
            for (; x + 4 <= OW; x += 4) {
                int64_t t = y * OW + x;
                __m128 d4 = _mm_add_ps(_mm_setzero_ps(), _mm_loadu_ps(d + t));
                __m128 v4 = _mm_and_ps(_mm_cmpgt_ps(_mm_loadu_ps(o + t), _mm_setzero_ps()), d4);
                __m128i a4 = _mm_sub_epi32(_mm_loadu_si128((const __m128i *)(am + t)),
                                           _mm_set1_epi32((int32_t)(2 * y * W + 2 * x)));
                /* each window twice, and where in it the lane lies (0/1 in row 0, W/W+1 in 1) */
                __m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v4), twice);
                __m256i a = _mm256_sub_epi32(
                    _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(a4), twice), lanes2);
                _mm256_storeu_ps(r0 + 2 * x, _mm256_and_ps(_mm256_castsi256_ps(
                                     _mm256_cmpeq_epi32(a, even_odd)), v));
                _mm256_storeu_ps(r1 + 2 * x, _mm256_and_ps(_mm256_castsi256_ps(
                                     _mm256_cmpeq_epi32(a, row1)), v));
            }
            for (; x < OW; x++) {
                int64_t t = y * OW + x, a = am[t] - (2 * y * W + 2 * x);
                float v = o[t] > 0.0f ? 0.0f + d[t] : 0.0f;
                r0[2 * x] = a == 0 ? v : 0.0f, r0[2 * x + 1] = a == 1 ? v : 0.0f;
                r1[2 * x] = a == W ? v : 0.0f, r1[2 * x + 1] = a == W + 1 ? v : 0.0f;
            }
            if (W % 2) r0[W - 1] = r1[W - 1] = 0.0f;
        }
        if (H % 2) memset(dinp_q + (H - 1) * W, 0, sizeof(float) * W);
    }
}
#endif

static void relu_pool_backward_job(int tid, int nt, void *arg) {
    const struct pool_job *j = arg;
    int64_t q0, q1, n = (j->H / j->k) * (j->W / j->k);
    pynn_share(j->planes, 1, tid, nt, &q0, &q1);
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (j->k == 2 && strcmp(conv_set()->name, "generic") != 0) {
        relu_pool2_backward_avx2(j, q0, q1);
        return;
    }
#endif
    for (int64_t q = q0; q < q1; q++) {
        float *dinp_q = j->dinp + q * j->H * j->W;
        memset(dinp_q, 0, sizeof(float) * j->H * j->W);
        for (int64_t t = 0; t < n; t++) {
            float d = j->dout[q * n + t], o = j->out_in[q * n + t];
            dinp_q[j->argmax_in[q * n + t]] = o > 0.0f ? 0.0f + d : 0.0f;
        }
    }
}

struct pool_pass {
    struct pool_job *j;
    pynn_job_fn write;
};

/* each thread checks the argmax of its planes; after all have, each writes its planes unless
 * one found a bad index */
static void pool_backward_pass(int tid, int nt, void *arg) {
    const struct pool_pass *pass = arg;
    pool_check_job(tid, nt, pass->j);
    pynn_barrier(nt);
    for (int t = 0; t < nt; t++)
        if (pass->j->bad[t]) return;
    pass->write(tid, nt, pass->j);
}

/* the checks of the readable backward, except that the argmax is checked by all the threads
 * (every one of them before anything is written); the threads are counted by the bytes the
 * pass moves, four for each element of dinp, as it does little arithmetic */
static int pool_backward(struct pool_job *j, pynn_job_fn fn) {
    if (j->planes == 0) return PYNN_OK;
    if (j->dinp == NULL || j->dout == NULL || j->argmax_in == NULL) return PYNN_ERR_NULL;
    int nt = (int)min64(pynn_threads_for(4.0 * (double)(j->planes * j->H * j->W)), 64);
    struct pool_pass pass = {j, fn};
    pynn_parallel(nt, pool_backward_pass, &pass);
    for (int t = 0; t < nt; t++)
        if (j->bad[t]) return PYNN_ERR_ARG;
    return PYNN_OK;
}

int pynn_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, int64_t B,
                            int64_t C, int64_t H, int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    struct pool_job j = {NULL, dinp, NULL, argmax, NULL, dout, NULL, B * C, H, W, k, {0}};
    return pool_backward(&j, pool_backward_job);
}

int pynn_relu_maxpool2d_backward(float *dinp, const float *dout, const float *out,
                                 const int32_t *argmax, int64_t B, int64_t C, int64_t H,
                                 int64_t W, int64_t k) {
    PYNN_TRY(pynn_pool_check(B, C, H, W, k));
    if (B * C > 0 && out == NULL) return PYNN_ERR_NULL;
    struct pool_job j = {NULL, dinp, NULL, argmax, NULL, dout, out, B * C, H, W, k, {0}};
    return pool_backward(&j, relu_pool_backward_job);
}

/* ---- a convolution's weight gradients through ReLU and pooling ----
 * (pynn_conv2d_relu_pool_backward_weights): the argmax checked by all the threads first, as
 * the pooling backwards do, then each thread sums the channels it owns. Without padding and
 * with rows of at most 8 taps, a channel's windows are gathered a chunk at a time into a list
 * of the chosen ones (their patch and gradient: the branch on out > 0 taken once), and the
 * list is run through once for each group of 8 rows (c,i) of taps, the group's sums held in
 * AVX2 registers, the patches read with masked loads, multiply then add as the readable loops
 * round: each element summed in the same order, so the same bits. */

#define WEIGHTS_CHUNK 256       /* chosen windows gathered at a time (on the stack) */

struct weights_job {
    struct pool_job pool;       /* the argmax (pool.argmax_in), its window k (pool.k) and its
                                 * check, over the B*OC output planes */
    const struct pynn_conv2d_shape *s;
    struct pynn_conv2d_sizes z;
    float *dweight, *dbias;
    const float *dout, *out, *inp;
};

static int weights_listed(const struct pynn_conv2d_shape *s) {
    return s->pad == 0 && s->KW <= 8 && strcmp(conv_set()->name, "generic") != 0;
}

#ifdef POOL_AVX2
struct chosen_window {
    const float *patch;         /* the patch's corner in the image */
    float v;                    /* 0 + dout */
};

/* rows [0, nrows) of taps (a constant in each copy the switch below makes, so that the sums
 * stay in registers), starting at start[r] from a patch's corner, += v times the patch over
 * the n windows of the list; dw row r at dw + r KW */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
weights_rows(const struct chosen_window *list, int n, float *dw, int64_t KW,
             const int64_t *start, __m256i mask, const int nrows) {
    __m256 acc[8];
    for (int r = 0; r < nrows; r++) acc[r] = _mm256_maskload_ps(dw + r * KW, mask);
    for (int e = 0; e < n; e++) {
        __m256 vv = _mm256_set1_ps(list[e].v);
        for (int r = 0; r < nrows; r++)
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(
                                               vv, _mm256_maskload_ps(list[e].patch + start[r], mask)));
    }
    for (int r = 0; r < nrows; r++) _mm256_maskstore_ps(dw + r * KW, mask, acc[r]);
}

__attribute__((target("avx2"))) static void weights_group(const struct chosen_window *list,
                                                          int n, float *dw, int64_t KW,
                                                          const int64_t *start, __m256i mask,
                                                          int64_t nrows) {
    switch (nrows) {
    case 1: weights_rows(list, n, dw, KW, start, mask, 1); break;
    case 2: weights_rows(list, n, dw, KW, start, mask, 2); break;
    case 3: weights_rows(list, n, dw, KW, start, mask, 3); break;
    case 4: weights_rows(list, n, dw, KW, start, mask, 4); break;
    case 5: weights_rows(list, n, dw, KW, start, mask, 5); break;
    case 6: weights_rows(list, n, dw, KW, start, mask, 6); break;
    case 7: weights_rows(list, n, dw, KW, start, mask, 7); break;
    default: weights_rows(list, n, dw, KW, start, mask, 8); break;
    }
}

/* the next window of channel o to look at: image b's window t */
struct window_cursor {
    int64_t b, t;
};

/* up to WEIGHTS_CHUNK of channel o's chosen windows from the cursor on, into list (their
 * count returned, the cursor moved past them), their gradients added to *db in order. No
 * branch on out > 0 (as unpredictable as the data): every window is written at the list's end,
 * which moves on past the chosen ones only; the others add +0 to db, which leaves its bits as
 * skipping them would (a sum from +0 is never -0). k is a constant in the copy for k = 2. */
static inline __attribute__((always_inline)) int gather_body(
        const struct weights_job *j, int64_t o, struct window_cursor *at,
        struct chosen_window *list, float *db, const int64_t k) {
    const struct pynn_conv2d_shape *s = j->s;
    const int64_t OW = j->z.OW, WW = OW / k, n = (j->z.OH / k) * WW;
    const int64_t HW = s->H * s->W, st = s->stride, W = s->W;
    int count = 0;
    float sum = *db;
    for (; at->b < s->B; at->b++, at->t = 0) {
        int64_t q = at->b * s->OC + o;
        const float *d = j->dout + q * n, *out = j->out + q * n;
        const int32_t *am = j->pool.argmax_in + q * n;
        const float *image = j->inp + at->b * s->C * HW;
        int64_t t = at->t, wy = t / WW, wx = t % WW;
        int64_t corner = k * (wy * OW + wx);      /* the window's top left output */
        const float *row = image + st * k * wy * W;  /* its first input row */
        for (; t < n; t++) {
            if (count == WEIGHTS_CHUNK) {
                at->t = t;
                *db = sum;
                return count;
            }
            int chosen = out[t] > 0.0f;
            float v = 0.0f + d[t];
            sum += chosen ? v : 0.0f;
            /* the output the window chose: (k wy + dy, k wx + dx), checked to lie in it; dy
             * by comparisons, not a loop whose exit is as unpredictable as the data */
            int64_t rel = am[t] - corner, dy = 0;
            for (int64_t e = 1; e < k; e++) dy += rel >= e * OW;
            list[count].patch = row + st * (dy * W + k * wx + rel - dy * OW);
            list[count].v = v;
            count += chosen;
            corner += k;
            if (++wx == WW) {
                wx = 0, wy++;
                corner = k * wy * OW;
                row = image + st * k * wy * W;
            }
        }
    }
    *db = sum;
    return count;
}

/* gather_body in a function of its own, so that its loop keeps its values in registers */
__attribute__((noinline)) static int gather_windows(const struct weights_job *j, int64_t o,
                                                    struct window_cursor *at,
                                                    struct chosen_window *list, float *db) {
    int64_t k = j->pool.k;
    return k == 2 ? gather_body(j, o, at, list, db, 2) : gather_body(j, o, at, list, db, k);
}

__attribute__((target("avx2"))) static void weights_channel_avx2(const struct weights_job *j,
                                                                 int64_t o) {
    const struct pynn_conv2d_shape *s = j->s;
    const int64_t k = j->pool.k, OW = j->z.OW, WH = j->z.OH / k, WW = OW / k, n = WH * WW;
    const int64_t rows = s->C * s->KH, HW = s->H * s->W, KW = s->KW;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)KW),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    float *dw = j->dweight + o * j->z.K;
    memset(dw, 0, sizeof(float) * (size_t)j->z.K);
    float db = 0.0f;
    struct chosen_window list[WEIGHTS_CHUNK];
    struct window_cursor at = {0, 0};
    while (at.b < s->B) {
        int count = gather_windows(j, o, &at, list, &db);
        for (int64_t r0 = 0; r0 < rows; r0 += 8) {
            int64_t start[8];
            for (int64_t r = r0; r < r0 + 8 && r < rows; r++)
                start[r - r0] = (r / s->KH) * HW + (r % s->KH) * s->W;
            weights_group(list, count, dw + r0 * KW, KW, start, mask, min64(8, rows - r0));
        }
    }
    if (j->dbias != NULL) j->dbias[o] = db;
}
#endif

static void weights_pass(int tid, int nt, void *arg) {
    struct weights_job *j = arg;
    pool_check_job(tid, nt, &j->pool);
    pynn_barrier(nt);
    for (int t = 0; t < nt; t++)
        if (j->pool.bad[t]) return;
    int64_t o0, o1;
    pynn_share(j->s->OC, 1, tid, nt, &o0, &o1);
    for (int64_t o = o0; o < o1; o++) {
#ifdef POOL_AVX2
        if (weights_listed(j->s)) {
            weights_channel_avx2(j, o);
            continue;
        }
#endif
        pynn_relu_pool_weights_channel(j->dweight, j->dbias, j->dout, j->out, j->pool.argmax_in,
                                       j->inp, j->s, &j->z, j->pool.k, o);
    }
}

int pynn_conv2d_relu_pool_backward_weights(float *dweight, float *dbias, const float *dout,
                                           const float *out, const int32_t *argmax,
                                           const float *inp, const struct pynn_conv2d_shape *s,
                                           int64_t k) {
    struct weights_job j = {{NULL, NULL, NULL, argmax, NULL, NULL, NULL, 0, 0, 0, k, {0}},
                            s, {0}, dweight, dbias, dout, out, inp};
    /* the argmax is checked below, by the threads */
    PYNN_TRY(pynn_relu_pool_weights_check(dweight, dout, out, argmax, inp, s, k, &j.z, 0));
    j.pool.planes = s->B * s->OC;
    j.pool.H = j.z.OH;
    j.pool.W = j.z.OW;
    /* at most every window chosen: 2 flops a tap, each window's patch of K taps */
    double flops = 2.0 * (double)j.pool.planes * (double)((j.z.OH / k) * (j.z.OW / k)) *
                   (double)j.z.K;
    int nt = (int)min64(pynn_threads_for(flops), 64);
    unsigned fp = pynn_flush_denormals();
    pynn_parallel(nt, weights_pass, &j);
    pynn_restore_denormals(fp);
    for (int t = 0; t < nt; t++)
        if (j.pool.bad[t]) return PYNN_ERR_ARG;
    return PYNN_OK;
}

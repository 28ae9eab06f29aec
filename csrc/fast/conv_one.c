/*
 * fast/conv_one.c: one image through a network of convolutions, max poolings and dense layers
 * (pynn_steps_forward_one): the pad's digit on a convolutional network, in one C call.
 *
 * One image gives the batch path (conv.c) nothing to spread its costs over: packing the
 * weights, unfolding the patches and a barrier between every two steps cost more than the
 * arithmetic. So a convolution here is direct, and reads everything where it lies:
 *   out[o][y][x..x+8) = bias[o] + sum over taps k = (c,i,j) of weight[o][k] * in[c][y+i][x+j..x+j+8)
 * a tile of TILE_NO output channels by TILE_NR rows of 8 positions held in registers, each
 * tap one load of 8 input pixels per row (stride 1: they are consecutive) and one broadcast of
 * a weight per channel. Nothing is packed, so weights changed in place are read as they are.
 * The bias, ReLU and a following 2x2 max pooling happen in the tile's registers (another
 * activation or pooling on a few rows of scratch), so the unpooled output is never written
 * whole. Padding is a padded copy of the input. Steps have no stride: a network with another
 * stride takes the layer path.
 *
 * Threads: each step is one job of parts (pynn_parallel_parts): a convolution's parts are
 * runs of (channel block, group of rows) units, a dense layer's runs of its rows, so a part
 * writes its own outputs, and several parts to a thread, so that the caller takes over the
 * parts of a worker that is slow to come or loses its core. Every output
 * is summed by one thread in one order whatever the thread count, so the bits do not depend
 * on it. The sums run in another order than the layer path's (one pass over the taps rather
 * than KC-long slices): the results agree to float32 rounding.
 *
 * Kernel sets: the tile and a dense layer's rows are written once with 8-lane AVX2 intrinsics,
 * compiled for AVX2 and for AVX-512 (where they have 32 registers; the 8-wide rows of a digit's
 * second convolution give a 16-lane vector nothing to fill), and once in portable C; the choice
 * follows pynn_kernels().
 */
#include <string.h>
#include "fast.h"

#define TILE_NO 6           /* output channels of a tile */
#define TILE_NR 2           /* output rows of a tile, 8 positions each */
#define SLACK 16            /* floats after each buffer: a row's last vector may read past it */
#define MAX_PARTS 16        /* parts of a step; each has its own scratch */
#define PARTS_PER_THREAD 8  /* so that a thread that loses its core holds up one small part */
#define MAX_STEPS 256

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t gcd64(int64_t a, int64_t b) { return b == 0 ? a : gcd64(b, a % b); }

/* ---- the tile ----
 * acc[o][r][l] = sum over k < K of w[o][k] * in[r][tap[k] + l] for TILE_NO channels o,
 * TILE_NR rows r and 8 lanes l; w[o] for o >= no and in[r] for r >= nr point at real rows
 * (computed, not stored). Then, for o < no, v = bias[o] + acc, ReLU'd when relu, and either
 *   out[o*plane + r*row + l] = v[r][l]                        for r < nr, l < n, or (pool2)
 *   out[o*plane + l] = the max of v[0..2)[2l..2l+2)            for l < n/2 (nr = 2, n even):
 * the 2 x 2 max pooling of the tile's two rows, a NaN winning as in the reference. */
struct tile_out {
    float *out;
    int64_t plane, row;
    const float *bias;          /* bias[o] for o < no, or NULL */
    int no, nr, n, relu, pool2;
};
typedef void (*tile_fn)(int64_t K, const int32_t *tap, const float *const *w,
                        const float *const *in, const struct tile_out *t);

/* ---- a dense layer's rows ----
 * z[j] = sum over i < n of W[j*n + i] * a[i] for j < m: rows of W read where they lie, each
 * once, beside a, which stays in L1. The layer reads W from memory once a call and does two
 * flops a float of it, so the reading is the cost: rows go in fours (each load of a serves four
 * rows) with two chains of sums a row (even and odd vectors, so that a row's next load need not
 * wait for its last sum). A row's sum is the same chain whatever rows go with it, so that any
 * split of the rows among threads gives the same bits. */
typedef void (*rows_fn)(int64_t n, const float *a, const float *W, float *z, int64_t m);

static void rows_generic(int64_t n, const float *a, const float *W, float *z, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        const float *wrow = W + j * n;
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) sum += wrow[i] * a[i];
        z[j] = sum;
    }
}

/* the larger of a and b, or a NaN if either is one (the reference's scan keeps the first NaN
 * it meets; which NaN does not matter) */
static inline float nan_max(float a, float b) { return (b > a) | ((b != b) & (a == a)) ? b : a; }

static void tile_generic(int64_t K, const int32_t *tap, const float *const *w,
                         const float *const *in, const struct tile_out *t) {
    float acc[TILE_NO][TILE_NR][8];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < K; k++) {
        int32_t at = tap[k];
        for (int o = 0; o < TILE_NO; o++) {
            float wk = w[o][k];
            for (int r = 0; r < TILE_NR; r++)
                for (int l = 0; l < 8; l++) acc[o][r][l] += wk * in[r][at + l];
        }
    }
    for (int o = 0; o < t->no; o++) {
        float v[TILE_NR][8];
        for (int r = 0; r < TILE_NR; r++)
            for (int l = 0; l < 8; l++) {
                v[r][l] = acc[o][r][l] + (t->bias != NULL ? t->bias[o] : 0.0f);
                if (t->relu && v[r][l] < 0.0f) v[r][l] = 0.0f;
            }
        float *out_o = t->out + o * t->plane;
        if (t->pool2)
            for (int l = 0; l < t->n / 2; l++)
                out_o[l] = nan_max(nan_max(nan_max(v[0][2 * l], v[0][2 * l + 1]), v[1][2 * l]),
                                   v[1][2 * l + 1]);
        else
            for (int r = 0; r < t->nr; r++)
                for (int l = 0; l < t->n; l++) out_o[r * t->row + l] = v[r][l];
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define TGT_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))

/* nan_max, lane by lane (max_ps alone returns its second operand when either is NaN) */
TGT_AVX2 static inline __m256 nan_max8(__m256 a, __m256 b) {
    return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

/* one channel's two rows of the tile, biased and activated, to the output. A whole vector
 * takes a plain store: a masked store is microcoded on AMD's cores, dear beside a first
 * layer's tile of 25 taps. */
TGT_AVX2 static inline __attribute__((always_inline)) void tile_store(
        const struct tile_out *t, int o, __m256 acc0, __m256 acc1, __m256i mask) {
    __m256 b = _mm256_set1_ps(t->bias != NULL ? t->bias[o] : 0.0f);
    __m256 v0 = _mm256_add_ps(acc0, b), v1 = _mm256_add_ps(acc1, b);
    if (t->relu) {      /* max(0, v): a NaN passes, as in the reference */
        v0 = _mm256_max_ps(_mm256_setzero_ps(), v0);
        v1 = _mm256_max_ps(_mm256_setzero_ps(), v1);
    }
    float *out_o = t->out + o * t->plane;
    if (t->pool2) {
        __m256 m = nan_max8(v0, v1);                                       /* rows */
        __m256 p = nan_max8(_mm256_shuffle_ps(m, m, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm256_shuffle_ps(m, m, _MM_SHUFFLE(3, 1, 3, 1)));   /* pairs */
        __m128 p4 = _mm256_castps256_ps128(
            _mm256_permutevar8x32_ps(p, _mm256_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5)));
        if (t->n == 8) _mm_storeu_ps(out_o, p4);
        else _mm_maskstore_ps(out_o, _mm_cmpgt_epi32(_mm_set1_epi32(t->n / 2),
                                                     _mm_setr_epi32(0, 1, 2, 3)), p4);
        return;
    }
    if (t->n == 8) {
        _mm256_storeu_ps(out_o, v0);
        if (t->nr > 1) _mm256_storeu_ps(out_o + t->row, v1);
        return;
    }
    _mm256_maskstore_ps(out_o, mask, v0);
    if (t->nr > 1) _mm256_maskstore_ps(out_o + t->row, mask, v1);
}

/* the tile for NO >= t->no channels (a constant once inlined: the channels a block lacks cost
 * nothing when NO is its count) */
TGT_AVX2 static inline __attribute__((always_inline)) void tile_body(
        const int NO, int64_t K, const int32_t *tap, const float *const *w,
        const float *const *in, const struct tile_out *t) {
    /* twelve named accumulators: GCC keeps an array of vectors in memory */
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];
    const float *in0 = in[0], *in1 = in[1];
#pragma GCC unroll 4
    for (int64_t k = 0; k < K; k++) {
        int32_t at = tap[k];
        __m256 v0 = _mm256_loadu_ps(in0 + at), v1 = _mm256_loadu_ps(in1 + at), b;
#define TAP(o) if (NO > o) { b = _mm256_broadcast_ss(w##o + k); \
                             a##o##0 = _mm256_fmadd_ps(b, v0, a##o##0); \
                             a##o##1 = _mm256_fmadd_ps(b, v1, a##o##1); }
        TAP(0) TAP(1) TAP(2) TAP(3) TAP(4) TAP(5)
#undef TAP
    }
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(t->n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    tile_store(t, 0, a00, a01, mask);
    if (NO > 1 && t->no > 1) tile_store(t, 1, a10, a11, mask);
    if (NO > 2 && t->no > 2) tile_store(t, 2, a20, a21, mask);
    if (NO > 3 && t->no > 3) tile_store(t, 3, a30, a31, mask);
    if (NO > 4 && t->no > 4) tile_store(t, 4, a40, a41, mask);
    if (NO > 5 && t->no > 5) tile_store(t, 5, a50, a51, mask);
}

/* blocks of 4 to 6 channels have a tile each; fewer (a layer of at most 3 or of 7 channels)
 * take the 6-channel one's time */
#define TILE_BY_NO(K, tap, w, in, t)                       \
    switch ((t)->no) {                                    \
    case 6: tile_body(6, K, tap, w, in, t); break;        \
    case 5: tile_body(5, K, tap, w, in, t); break;        \
    case 4: tile_body(4, K, tap, w, in, t); break;        \
    default: tile_body(6, K, tap, w, in, t); break;       \
    }

TGT_AVX2 static void tile_avx2(int64_t K, const int32_t *tap, const float *const *w,
                               const float *const *in, const struct tile_out *t) {
    TILE_BY_NO(K, tap, w, in, t)
}

TGT_AVX512 static void tile_avx512(int64_t K, const int32_t *tap, const float *const *w,
                                   const float *const *in, const struct tile_out *t) {
    TILE_BY_NO(K, tap, w, in, t)
}

/* R rows of W from wrow against a (rows_generic's z[0..R)): lanes of 8 along the row in two
 * chains (even and odd vectors), the last vector short, then the two added and the lanes
 * summed, the same steps for every R */
TGT_AVX2 static inline __attribute__((always_inline)) void rows_body(
        const int R, int64_t n, const float *a, const float *wrow, float *z) {
    __m256 even[4], odd[4];
    for (int r = 0; r < R; r++) even[r] = odd[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8);
        for (int r = 0; r < R; r++) {
            even[r] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(wrow + r * n + i), even[r]);
            odd[r] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(wrow + r * n + i + 8), odd[r]);
        }
    }
    for (int half = 0; i < n; i += 8, half ^= 1) {     /* at most 15 left: one or two vectors */
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)min64(n - i, 8)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 ai = _mm256_maskload_ps(a + i, mask);
        for (int r = 0; r < R; r++) {
            __m256 *acc = half ? &odd[r] : &even[r];
            *acc = _mm256_fmadd_ps(ai, _mm256_maskload_ps(wrow + r * n + i, mask), *acc);
        }
    }
    for (int r = 0; r < R; r++) {
        __m256 v = _mm256_add_ps(even[r], odd[r]);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        z[r] = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
    }
}

#define ROWS_IN_FOURS(n, a, W, z, m)                                       \
    int64_t j = 0;                                                         \
    for (; j + 4 <= m; j += 4) rows_body(4, n, a, W + j * n, z + j);       \
    for (; j < m; j++) rows_body(1, n, a, W + j * n, z + j);

TGT_AVX2 static void rows_avx2(int64_t n, const float *a, const float *W, float *z, int64_t m) {
    ROWS_IN_FOURS(n, a, W, z, m)
}

TGT_AVX512 static void rows_avx512(int64_t n, const float *a, const float *W, float *z, int64_t m) {
    ROWS_IN_FOURS(n, a, W, z, m)
}
#endif

/* the tile and the rows of the kernel set in use (tests switch sets with pynn_kernels_select) */
struct one_kernels {
    tile_fn tile;
    rows_fn rows;
};

static struct one_kernels kernels_for_set(void) {
#ifdef TGT_AVX2
    const char *name = pynn_kernels()->name;
    if (strcmp(name, "avx512f") == 0) return (struct one_kernels){tile_avx512, rows_avx512};
    if (strcmp(name, "avx2") == 0) return (struct one_kernels){tile_avx2, rows_avx2};
#endif
    return (struct one_kernels){tile_generic, rows_generic};
}

/* ---- checking the steps ---- */

static int elementwise(int act) {
    return act == PYNN_LINEAR || act == PYNN_SIGMOID || act == PYNN_RELU || act == PYNN_TANH;
}

/* the output shape of step s, checked; its input was checked by the caller */
static int step_output(const struct pynn_step *s, int64_t *C, int64_t *H, int64_t *W) {
    switch (s->kind) {
    case PYNN_STEP_CONV:
        if (s->OC < 1 || s->K < 1 || s->pad < 0) return PYNN_ERR_SIZE;
        if (!elementwise(s->act)) return PYNN_ERR_ARG;
        if (s->H + 2 * s->pad < s->K || s->W + 2 * s->pad < s->K) return PYNN_ERR_SIZE;
        *C = s->OC, *H = s->H + 2 * s->pad - s->K + 1, *W = s->W + 2 * s->pad - s->K + 1;
        return PYNN_OK;
    case PYNN_STEP_POOL:
        if (s->K < 1 || s->K > s->H || s->K > s->W) return PYNN_ERR_SIZE;
        *C = s->C, *H = s->H / s->K, *W = s->W / s->K;
        return PYNN_OK;
    case PYNN_STEP_DENSE:
        if (s->OC < 1) return PYNN_ERR_SIZE;
        if (!elementwise(s->act)) return PYNN_ERR_ARG;
        *C = s->OC, *H = 1, *W = 1;
        return PYNN_OK;
    default:
        return PYNN_ERR_ARG;
    }
}

/* the largest images the steps make, in floats: any value, padded input and unfolded taps
 * each fit in int32 (the tap offsets are int32) */
#define MAX_VALUES ((int64_t)1 << 28)

struct steps_sizes {
    int64_t most;           /* the most values of any step's input or output */
    int64_t padded;         /* the largest padded input of a convolution */
    int64_t taps;           /* the most taps C*K*K of a convolution */
    int64_t scratch;        /* one part's scratch */
};

/* a * b * c, or INT64_MAX when it overflows (sizes here are positive) */
static int64_t mul3(int64_t a, int64_t b, int64_t c) {
    int64_t p = pynn_mul_size(pynn_mul_size(a, b), c);
    return p < 0 ? INT64_MAX : p;
}

static int steps_check(const struct pynn_step *steps, int64_t n, struct steps_sizes *z) {
    if (steps == NULL) return PYNN_ERR_NULL;
    if (n < 1 || n > MAX_STEPS) return PYNN_ERR_SIZE;
    memset(z, 0, sizeof(*z));
    int64_t C = steps[0].C, H = steps[0].H, W = steps[0].W;
    for (int64_t l = 0; l < n; l++) {
        const struct pynn_step *s = &steps[l];
        if (s->C != C || s->H != H || s->W != W) return PYNN_ERR_SIZE;   /* not the last output */
        if (C < 1 || H < 1 || W < 1 || mul3(C, H, W) > MAX_VALUES) return PYNN_ERR_SIZE;
        if (s->kind == PYNN_STEP_CONV &&
            (s->K > MAX_VALUES || s->pad > MAX_VALUES || s->OC > MAX_VALUES))
            return PYNN_ERR_SIZE;
        PYNN_TRY(step_output(s, &C, &H, &W));
        if (mul3(C, H, W) > MAX_VALUES) return PYNN_ERR_SIZE;
        if (s->kind == PYNN_STEP_CONV) {
            int64_t padded = mul3(s->C, s->H + 2 * s->pad, s->W + 2 * s->pad);
            int64_t taps = mul3(s->C, s->K, s->K);
            if (padded > MAX_VALUES || taps > MAX_VALUES) return PYNN_ERR_SIZE;
            if (s->pad > 0 && padded > z->padded) z->padded = padded;
            if (taps > z->taps) z->taps = taps;
            /* a following pooling of k works on TILE_NO channels of lcm(k, TILE_NR) rows */
            if (l + 1 < n && steps[l + 1].kind == PYNN_STEP_POOL && steps[l + 1].K >= 1 &&
                steps[l + 1].K <= H) {
                int64_t k = steps[l + 1].K, rows = k * TILE_NR / gcd64(k, TILE_NR);
                if (mul3(TILE_NO, rows, W) + SLACK > z->scratch)
                    z->scratch = mul3(TILE_NO, rows, W) + SLACK;
            }
        }
        int64_t most = mul3(s->C, s->H, s->W) > mul3(C, H, W) ? mul3(s->C, s->H, s->W) : mul3(C, H, W);
        if (most > z->most) z->most = most;
    }
    return PYNN_OK;
}

/* floats of the workspace: two buffers for the values between steps, the padded input, the
 * taps (int32), and each part's scratch */
static int64_t steps_floats(const struct steps_sizes *z) {
    return 2 * (z->most + SLACK) + (z->padded + SLACK) + (z->taps + SLACK) + MAX_PARTS * z->scratch;
}

int64_t pynn_steps_workspace(const struct pynn_step *steps, int64_t n) {
    struct steps_sizes z;
    if (steps_check(steps, n, &z) != PYNN_OK) return -1;
    return steps_floats(&z);
}

/* ---- a convolution, with its pooling ---- */

struct conv_job {
    const struct pynn_step *s;
    const float *in;            /* (C, Hp, Wp): the input, padded */
    int64_t Hp, Wp, OH, OW;     /* the convolution's output, before pooling */
    int64_t rows, cols;         /* the rows and columns of it that the pooling reads (all) */
    int64_t pool;               /* the following pooling's k, or 1 */
    int64_t group, n_groups, n_blocks;  /* units: a block of channels by `group` rows */
    const int32_t *tap;
    float *out;                 /* (OC, rows/pool, cols/pool) */
    float *scratch;             /* MAX_PARTS parts of scratch_len */
    int64_t scratch_len;
    tile_fn tile;
};

/* dst (rows_out, cols_out; row stride ld_dst) = the max of each k x k window of src (row
 * stride ld_src), a NaN winning as in the reference */
static void pool_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src,
                      int64_t rows_out, int64_t cols_out, int64_t k) {
    for (int64_t y = 0; y < rows_out; y++)
        for (int64_t x = 0; x < cols_out; x++) {
            const float *win = src + k * y * ld_src + k * x;
            float m = win[0];
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) m = nan_max(m, win[i * ld_src + j]);
            dst[y * ld_dst + x] = m;
        }
}

/* unit u: block u / n_groups, channels [o0, o1), of rows [y0, y1), activated and pooled into
 * out. The OC channels are cut into n_blocks blocks as even as can be, at most TILE_NO each (32
 * channels: blocks of 5 and 6, not five 6s and a 2 that costs a 6). A pooling of 2 happens in
 * the tile (its two rows are a row of windows); any other k, or an activation other than ReLU,
 * goes through the part's scratch (`group` rows of the channels). */
static void conv_unit(const struct conv_job *j, int64_t u, float *scratch) {
    const struct pynn_step *s = j->s;
    int64_t taps = s->C * s->K * s->K, o0, o1;
    pynn_share(s->OC, 1, (int)(u / j->n_groups), (int)j->n_blocks, &o0, &o1);
    int64_t y0 = u % j->n_groups * j->group, y1 = min64(y0 + j->group, j->rows);
    int no = (int)(o1 - o0);
    const float *w[TILE_NO];
    for (int o = 0; o < TILE_NO; o++) w[o] = s->weight + (o0 + (o < no ? o : no - 1)) * taps;
    int relu = s->act == PYNN_RELU, other = !relu && s->act != PYNN_LINEAR;
    int pool2 = j->pool == 2 && !other, via_scratch = j->pool > 1 && !pool2;
    int64_t PH = j->rows / j->pool, PW = j->cols / j->pool;
    float *dst = via_scratch ? scratch : j->out + o0 * j->OH * j->OW + y0 * j->OW;
    int64_t plane = via_scratch ? j->group * j->cols : j->OH * j->OW;
    int64_t ld = via_scratch ? j->cols : j->OW;
    struct tile_out t = {NULL, pool2 ? PH * PW : plane, ld, s->bias != NULL ? s->bias + o0 : NULL,
                         no, 0, 0, relu, pool2};
    for (int64_t y = y0; y < y1; y += TILE_NR) {
        t.nr = (int)min64(TILE_NR, y1 - y);
        for (int64_t x = 0; x < j->cols; x += 8) {
            const float *in[TILE_NR];
            for (int r = 0; r < TILE_NR; r++)
                in[r] = j->in + (y + (r < t.nr ? r : t.nr - 1)) * j->Wp + x;
            t.n = (int)min64(8, j->cols - x);
            t.out = pool2 ? j->out + o0 * PH * PW + y / 2 * PW + x / 2 : dst + (y - y0) * ld + x;
            j->tile(taps, j->tap, w, in, &t);
        }
    }
    if (pool2) return;
    if (other)
        for (int o = 0; o < no; o++)
            for (int64_t y = y0; y < y1; y++) {
                float *row = dst + o * plane + (y - y0) * ld;
                pynn_activation_forward(s->act, row, row, 1, j->cols);
            }
    if (via_scratch)
        for (int o = 0; o < no; o++)
            pool_rows(j->out + (o0 + o) * PH * PW + y0 / j->pool * PW, PW, dst + o * plane,
                      ld, (y1 - y0) / j->pool, PW, j->pool);
}

static void conv_part(int part, int nparts, void *arg) {
    const struct conv_job *j = arg;
    int64_t u0, u1;
    pynn_share(j->n_blocks * j->n_groups, 1, part, nparts, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) conv_unit(j, u, j->scratch + part * j->scratch_len);
}

/* step s (a convolution) from in, followed by a pooling of k (1: none), into out */
static void conv_step(const struct pynn_step *s, int64_t pool, const float *in, float *out,
                      float *padded, int32_t *tap, float *scratch, int64_t scratch_len) {
    struct conv_job j;
    j.s = s;
    j.Hp = s->H + 2 * s->pad, j.Wp = s->W + 2 * s->pad;
    j.OH = j.Hp - s->K + 1, j.OW = j.Wp - s->K + 1;
    j.pool = pool;
    j.rows = j.OH / pool * pool, j.cols = j.OW / pool * pool;
    j.group = pool * TILE_NR / gcd64(pool, TILE_NR);
    j.n_groups = (j.rows + j.group - 1) / j.group;
    j.n_blocks = (s->OC + TILE_NO - 1) / TILE_NO;
    j.out = out, j.scratch = scratch, j.scratch_len = scratch_len;
    j.tile = kernels_for_set().tile;
    if (s->pad > 0) {               /* the zero-padded copy the taps read */
        memset(padded, 0, sizeof(float) * s->C * j.Hp * j.Wp);
        for (int64_t c = 0; c < s->C; c++)
            for (int64_t h = 0; h < s->H; h++)
                memcpy(padded + (c * j.Hp + h + s->pad) * j.Wp + s->pad,
                       in + (c * s->H + h) * s->W, sizeof(float) * s->W);
        in = padded;
    }
    j.in = in;
    for (int64_t c = 0, k = 0; c < s->C; c++)        /* tap (c,i,j): where it reads from */
        for (int64_t i = 0; i < s->K; i++)
            for (int64_t t = 0; t < s->K; t++) tap[k++] = (int32_t)((c * j.Hp + i) * j.Wp + t);
    j.tap = tap;
    double flops = 2.0 * (double)s->OC * (double)(s->C * s->K * s->K) * (double)(j.rows * j.cols);
    int64_t units = j.n_blocks * j.n_groups;
    int nt = (int)min64(pynn_threads_for(flops), units);
    if (nt > 1) pynn_parallel_parts(nt, (int)min64(min64(nt * PARTS_PER_THREAD, MAX_PARTS), units),
                                    conv_part, &j);
    else conv_part(0, 1, &j);
}

/* ---- a dense layer ---- */

#define DENSE_ROWS 4        /* rows a thread takes at a time: the rows kernel's fours */

struct dense_job {
    const struct pynn_step *s;
    const float *a;
    float *z;
    rows_fn rows;
};

/* rows [j0, j1) of z = act(W a + b) */
static void dense_part(int part, int nparts, void *arg) {
    const struct dense_job *job = arg;
    const struct pynn_step *s = job->s;
    int64_t n_in = s->C * s->H * s->W, j0, j1;
    pynn_share(s->OC, DENSE_ROWS, part, nparts, &j0, &j1);
    float *z = job->z;
    job->rows(n_in, job->a, s->weight + j0 * n_in, z + j0, j1 - j0);
    if (s->bias != NULL) for (int64_t j = j0; j < j1; j++) z[j] += s->bias[j];
    if (s->act == PYNN_RELU) for (int64_t j = j0; j < j1; j++) z[j] = z[j] < 0.0f ? 0.0f : z[j];
    else if (s->act != PYNN_LINEAR && j0 < j1) pynn_activation_forward(s->act, z + j0, z + j0, 1, j1 - j0);
}

static void dense_step(const struct pynn_step *s, const float *a, float *z) {
    struct dense_job job = {s, a, z, kernels_for_set().rows};
    double flops = 2.0 * (double)s->OC * (double)(s->C * s->H * s->W);
    int64_t units = (s->OC + DENSE_ROWS - 1) / DENSE_ROWS;
    int nt = (int)min64(pynn_threads_for(flops), units);
    if (nt > 1) pynn_parallel_parts(nt, (int)min64(min64(nt * PARTS_PER_THREAD, MAX_PARTS), units),
                                    dense_part, &job);
    else dense_part(0, 1, &job);
}

/* ---- the network ---- */

int pynn_steps_forward_one(const struct pynn_step *steps, int64_t n, int output, const float *x,
                           const uint8_t *x_u8, float scale, float *out, float *work,
                           int64_t work_len) {
    struct steps_sizes z;
    PYNN_TRY(steps_check(steps, n, &z));
    if (work_len < 0) return PYNN_ERR_SIZE;
    if ((x == NULL) == (x_u8 == NULL) || out == NULL || work == NULL) return PYNN_ERR_NULL;
    if (output < PYNN_LINEAR || output > PYNN_SOFTMAX) return PYNN_ERR_ARG;
    for (int64_t l = 0; l < n; l++)
        if (steps[l].kind != PYNN_STEP_POOL && steps[l].weight == NULL) return PYNN_ERR_NULL;
    if (work_len < steps_floats(&z)) return PYNN_ERR_SIZE;
    float *buf[2] = {work, work + z.most + SLACK};
    float *padded = buf[1] + z.most + SLACK;
    int32_t *tap = (int32_t *)(padded + z.padded + SLACK);
    float *scratch = (float *)tap + z.taps + SLACK;
    /* the input into buffer 0 (pixels scaled as pynn_scale_u8 does); the floats after each
     * buffer's values are zero, so that a row's last vector reads numbers */
    int64_t n_in = steps[0].C * steps[0].H * steps[0].W;
    if (x_u8 != NULL) for (int64_t i = 0; i < n_in; i++) buf[0][i] = (float)x_u8[i] * scale;
    else memcpy(buf[0], x, sizeof(float) * n_in);
    memset(buf[0] + n_in, 0, sizeof(float) * SLACK);
    memset(padded + z.padded, 0, sizeof(float) * SLACK);
    unsigned fp = pynn_flush_denormals();
    const float *a = buf[0];
    int64_t n_out = 0;
    for (int64_t l = 0, next = 1; l < n; l++, next ^= 1) {
        const struct pynn_step *s = &steps[l];
        int64_t pool = 1;
        if (s->kind == PYNN_STEP_CONV && l + 1 < n && steps[l + 1].kind == PYNN_STEP_POOL)
            pool = steps[++l].K;            /* the pooling happens in the convolution's output */
        int64_t C, H, W;
        step_output(&steps[l], &C, &H, &W);
        n_out = C * H * W;
        float *dst = l == n - 1 ? out : buf[next];
        if (s->kind == PYNN_STEP_CONV)
            conv_step(s, pool, a, dst, padded, tap, scratch, z.scratch);
        else if (s->kind == PYNN_STEP_DENSE)
            dense_step(s, a, dst);
        else
            for (int64_t c = 0; c < s->C; c++)
                pool_rows(dst + c * H * W, W, a + c * s->H * s->W, s->W, H, W, s->K);
        if (dst != out) memset(dst + n_out, 0, sizeof(float) * SLACK);
        a = dst;
    }
    if (output == PYNN_SOFTMAX) pynn_softmax_forward(out, out, 1, n_out);
    else pynn_activation_forward(output, out, out, 1, n_out);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

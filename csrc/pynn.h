/*
 * pynn.h: the whole C API of pynn.
 *
 * Everything Python may call is declared here, and the cffi build reads its declarations from
 * the block between the two "cdef" markers below, so C and Python cannot drift apart. That block
 * holds plain declarations only (no macros, no includes), which is what cffi's parser accepts.
 *
 * Conventions, the same for every function:
 *  - float32 arrays, row-major. A matrix "(B,n)" has B rows of n floats, row stride n unless a
 *    leading dimension (ld*) is given.
 *  - The letters in shape comments: B samples in a batch, n or N units in a layer, K the inner
 *    dimension of a product, M the rows of a product.
 *  - Every function returns PYNN_OK or an error code; none allocates, prints or exits. Buffers
 *    are owned by the caller.
 *  - Pointers are checked for NULL and sizes for being negative or overflowing before any
 *    memory is touched; the Python side (pynn/ops.py) additionally checks dtype, layout and shape.
 */
#ifndef PYNN_H
#define PYNN_H
#include <stdint.h>

/* cdef begin */

enum pynn_status {
    PYNN_OK = 0,
    PYNN_ERR_NULL = 1,      /* a required pointer was NULL */
    PYNN_ERR_SIZE = 2,      /* a size was negative, or sizes disagree (e.g. ld < row length) */
    PYNN_ERR_ARG = 3,       /* an argument out of its domain (unknown kind, bad hyperparameter) */
    PYNN_ERR_OVERFLOW = 4   /* a size computation would overflow int64 */
};

enum pynn_activation { PYNN_LINEAR = 0, PYNN_SIGMOID = 1, PYNN_RELU = 2, PYNN_TANH = 3, PYNN_SOFTMAX = 4 };

/* ---- machine: threads and CPU dispatch (runtime.c) ---- */
int pynn_set_num_threads(int n);          /* n >= 1; threads used by the parallel kernels */
int pynn_get_num_threads(void);
const char *pynn_cpu_features(void);      /* widest SIMD path this CPU runs: "avx512f", "avx2" or "generic" */

/* ---- matrix product (gemm.c: readable reference; gemm_fast.c: packed, vectorised) ----
 * C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
 * op(A) is (M,K), op(B) is (K,N), C is (M,N). A is stored (M,K) with row stride lda when
 * trans_a == 0, else (K,M); likewise B is (K,N) or (N,K) with stride ldb. beta == 0 means C is
 * only written, never read (so it may hold garbage or NaN). */
int pynn_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc);
int pynn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);

/* ---- bias (gemm.c) ---- */
int pynn_bias_forward(float *z, const float *bias, int64_t B, int64_t n);   /* z (B,n) += bias (n) */
int pynn_bias_backward(float *dbias, const float *dz, int64_t B, int64_t n); /* dbias (n) += column sums of dz (B,n) */

/* ---- activations (activations.c), element by element over n floats; out may alias inp ---- */
int pynn_sigmoid_forward(float *out, const float *inp, int64_t n);
int pynn_sigmoid_backward(float *dinp, const float *out, const float *dout, int64_t n);
int pynn_relu_forward(float *out, const float *inp, int64_t n);
int pynn_relu_backward(float *dinp, const float *out, const float *dout, int64_t n);
int pynn_tanh_forward(float *out, const float *inp, int64_t n);
int pynn_tanh_backward(float *dinp, const float *out, const float *dout, int64_t n);
/* softmax over each row of a (B,n) matrix */
int pynn_softmax_forward(float *out, const float *inp, int64_t B, int64_t n);
int pynn_softmax_backward(float *dinp, const float *out, const float *dout, int64_t B, int64_t n);
/* dispatch on enum pynn_activation (softmax needs the row length n; elementwise ones use B*n) */
int pynn_activation_forward(int kind, float *out, const float *inp, int64_t B, int64_t n);
int pynn_activation_backward(int kind, float *dinp, const float *out, const float *dout,
                             int64_t B, int64_t n);

/* ---- losses (losses.c); y the network's output (B,n), t the target (B,n) ---- */
int pynn_quadratic_loss_forward(double *loss, const float *y, const float *t, int64_t B, int64_t n);
int pynn_quadratic_loss_backward(float *dy, const float *y, const float *t, int64_t B, int64_t n);
int pynn_softmax_cross_entropy_forward(double *loss, float *probs, const float *logits,
                                       const float *t, int64_t B, int64_t n);
int pynn_softmax_cross_entropy_backward(float *dlogits, const float *probs, const float *t,
                                        int64_t B, int64_t n);
int pynn_sigmoid_cross_entropy_forward(double *loss, float *probs, const float *logits,
                                       const float *t, int64_t B, int64_t n);
int pynn_sigmoid_cross_entropy_backward(float *dlogits, const float *probs, const float *t,
                                        int64_t B, int64_t n);

/* ---- optimiser updates (optim.c), over n parameters ---- */
int pynn_sgd_update(float *w, const float *dw, int64_t n, float lr, float weight_decay);
int pynn_momentum_update(float *w, float *vel, const float *dw, int64_t n, float lr,
                         float momentum, float weight_decay);
int pynn_adam_update(float *w, float *m, float *v, const float *dw, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step);

/* ---- at the network's edges (convert.c) ---- */
int pynn_scale_u8(float *out, const uint8_t *inp, int64_t n, float scale);  /* out = inp * scale */
int pynn_argmax_rows(int64_t *out, const float *x, int64_t B, int64_t n);  /* index of each row's max; -1 if NaN */

/* ---- drawings to MNIST's form (preprocess.c); images (H,W), pixel (r,c) covers [r,r+1)x[c,c+1) ---- */
int pynn_raster_strokes(float *canvas, int64_t H, int64_t W, const float *xy,
                        const int64_t *lengths, int64_t n_strokes, float scale, float off_x,
                        float off_y, float radius);
int pynn_resample_area(float *out, int64_t h, int64_t w, const float *inp, int64_t H, int64_t W,
                       float y0, float x0, float sy, float sx, float gain);
int pynn_ink_moments(double *m, const float *inp, int64_t H, int64_t W);  /* mass, cy, cx, edge */
int pynn_ink_bbox(int64_t *box, const float *inp, int64_t H, int64_t W, float threshold);
int pynn_stroke_width(float *out, const float *inp, int64_t n, int64_t H, int64_t W,
                      const float *amount);

/* ---- distortions for training (augment.c); image stacks (n,H,W) ---- */
int pynn_warp(float *out, const float *inp, int64_t n, int64_t H, int64_t W, const float *mats,
              const float *dx, const float *dy);
int pynn_gaussian_blur(float *out, float *tmp, const float *inp, int64_t n, int64_t H, int64_t W,
                       float sigma, float gain);

/* cdef end */

#endif

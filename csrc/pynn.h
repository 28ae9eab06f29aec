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
 *    memory is touched; the Python side (pynn/ops/) additionally checks dtype, layout and shape.
 *
 * The files behind it (paths under csrc/): ref/ holds the readable reference kernels, one
 * forward beside its backward; fast/ the packed, vectorised and fused ones that the network
 * runs, tested against ref/; image/ the pixel kernels (drawings to MNIST's form, distortions);
 * runtime.c the thread pool that every parallel kernel shares.
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
/* on != 0: every job that can be split is split among the threads, however small (by default a
 * job too small to pay for waking a thread runs on one). For tests: the results must not depend
 * on the thread count, and this shows it for the small products the default never splits. */
int pynn_share_every_job(int on);
const char *pynn_cpu_features(void);      /* widest SIMD path this CPU runs: "avx512f", "avx2" or "generic" */

/* ---- matrix product (ref/gemm.c: readable reference; fast/gemm_fast.c: packed, vectorised) ----
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
/* C (M,N) = A (M,K) B (K,N), each stored whole, row by row: pynn_gemm with neither transposed,
 * alpha 1 and beta 0, in the fewest arguments (each one is a conversion in the Python that
 * calls it, a digit at a time) */
int pynn_matmul(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C);

/* ---- bias (ref/gemm.c) ---- */
int pynn_bias_forward(float *z, const float *bias, int64_t B, int64_t n);   /* z (B,n) += bias (n) */
int pynn_bias_backward(float *dbias, const float *dz, int64_t B, int64_t n); /* dbias (n) += column sums of dz (B,n) */

/* ---- activations (ref/activations.c), element by element over n floats; out may alias inp ---- */
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

/* ---- losses (ref/losses.c); y the network's output (B,n), t the target (B,n) ---- */
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

/* ---- optimiser updates (ref/optim.c), over n parameters ---- */
int pynn_sgd_update(float *w, const float *dw, int64_t n, float lr, float weight_decay);
int pynn_momentum_update(float *w, float *vel, const float *dw, int64_t n, float lr,
                         float momentum, float weight_decay);
int pynn_adam_update(float *w, float *m, float *v, const float *dw, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step);

/* ---- at the network's edges (ref/convert.c) ---- */
int pynn_scale_u8(float *out, const uint8_t *inp, int64_t n, float scale);  /* out = inp * scale */
int pynn_argmax_rows(int64_t *out, const float *x, int64_t B, int64_t n);  /* index of each row's max; -1 if NaN */

/* ---- drawings to MNIST's form (image/preprocess.c); images (H,W), pixel (r,c) covers [r,r+1)x[c,c+1) ---- */
int pynn_raster_strokes(float *canvas, int64_t H, int64_t W, const float *xy,
                        const int64_t *lengths, int64_t n_strokes, float scale, float off_x,
                        float off_y, float radius);
int pynn_resample_area(float *out, int64_t h, int64_t w, const float *inp, int64_t H, int64_t W,
                       float y0, float x0, float sy, float sx, float gain);
int pynn_ink_moments(double *m, const float *inp, int64_t H, int64_t W);  /* mass, cy, cx, edge */
int pynn_ink_bbox(int64_t *box, const float *inp, int64_t H, int64_t W, float threshold);
int pynn_stroke_width(float *out, const float *inp, int64_t n, int64_t H, int64_t W,
                      const float *amount);

/* ---- distortions for training (image/augment.c); image stacks (n,H,W) ---- */
int pynn_warp(float *out, const float *inp, int64_t n, int64_t H, int64_t W, const float *mats,
              const float *dx, const float *dy, int64_t fh, int64_t fw);
int pynn_gaussian_blur(float *out, float *tmp, const float *inp, int64_t n, int64_t H, int64_t W,
                       float sigma, float gain);

/* ---- fast paths: thread pool, SIMD choice, the whole network in one call ----
 * (runtime.c, fast/gemm_kernels.c, fast/net*.c; pynn_gemm above runs on the same pool and kernels) */

/* the kernel set the fast paths use: "avx512f", "avx2", "generic", or "auto" (the widest this
 * CPU runs, the default). Tests use it to run every path; PYNN_ERR_ARG if the CPU lacks it. */
int pynn_kernels_select(const char *name);

enum pynn_loss_kind { PYNN_LOSS_QUADRATIC = 0, PYNN_LOSS_CROSS_ENTROPY = 1 };
enum pynn_optim_kind { PYNN_OPT_SGD = 0, PYNN_OPT_MOMENTUM = 1, PYNN_OPT_ADAM = 2 };

/* the largest network the one-call paths take: layers, and units in one layer */
enum pynn_net_limits { PYNN_MAX_LAYERS = 64, PYNN_MAX_WIDTH = 16777216 };

/* a network as the arrays its owner keeps: layer l has W[l] (sizes[l+1], sizes[l]) and b[l]
 * (sizes[l+1]); hidden and output are enum pynn_activation, loss an enum pynn_loss_kind */
struct pynn_net {
    int64_t n_layers;
    const int64_t *sizes;
    float **W;
    float **b;
    int hidden;
    int output;
    int loss;
};

/* an optimiser's settings and state: state1[p] is momentum's velocity or Adam's m for parameter
 * array p (in the order W0, b0, W1, b1, ...), state2[p] Adam's v; step counts the steps taken
 * and advances by one per batch (Adam's bias correction uses it). */
struct pynn_optimizer {
    int kind;
    float lr;
    float momentum;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    int64_t step;
    float **state1;
    float **state2;
};

/* ---- one optimiser step over many parameter arrays (fast/optim.c), on the thread pool ----
 * w[p] (n[p] floats, p < count) takes opt's step with the gradient dw[p] and the state
 * opt->state1[p] (momentum's velocity, Adam's m) and state2[p] (Adam's v); opt->step advances
 * by one, and Adam's bias correction uses the new count. The bits are those of one pynn_*_update
 * call per array. *finite is 1 when every gradient is finite; with check_finite, a gradient
 * holding a NaN or Inf leaves everything (opt->step included) as it was. No array written may
 * overlap another array of the call. */
int pynn_optimizer_step(struct pynn_optimizer *opt, float **w, const float **dw,
                        const int64_t *n, int64_t count, int check_finite, int *finite);

/* floats of workspace the calls below need for batches of up to `batch` rows (training != 0:
 * pynn_net_train; else pynn_net_forward, which works through larger inputs in chunks) */
int64_t pynn_net_workspace(const struct pynn_net *net, int64_t batch, int training);
/* The input of the two calls below, (n, sizes[0]): X floats, or X_u8 values (pixels as stored)
 * times scale, exactly one of the two non-NULL. Rows of X_u8 are scaled as pynn_scale_u8 does,
 * a batch or chunk at a time into the workspace, so a data set never needs a float copy and the
 * bits are those of X = pynn_scale_u8(X_u8, scale). */
/* out (n, sizes[L]) = the network's output for the input: probabilities for softmax */
int pynn_net_forward(const struct pynn_net *net, const float *X, const uint8_t *X_u8,
                     float scale, int64_t n, float *out, float *work, int64_t work_len);
/* mini-batch training: batch k takes the rows order[k*batch .. ] of the input and of the
 * targets T (n, sizes[L]) (order NULL: rows in turn), runs forward, loss, backward and one
 * optimiser step, and writes its loss to losses[k]. A batch whose loss is not finite changes
 * nothing (no step) and ends the run; *batches_done counts the batches run, that one included. */
int pynn_net_train(const struct pynn_net *net, struct pynn_optimizer *opt, const float *X,
                   const uint8_t *X_u8, float scale, const float *T, int64_t n,
                   const int64_t *order, int64_t n_order, int64_t batch, double *losses,
                   int64_t *batches_done, float *work, int64_t work_len);

/* ---- every distortion of an image in one pass (image/augment.c) ----
 * out (n,H,W), H and W at most PYNN_DISTORT_MAX: image k warped as pynn_warp does with the affine
 * map mats + 6k plus, when field[k] >= 0, the elastic field made from noise + field[k]*2*fh*fw,
 * i.e. (dx, dy) = gain * Gaussian_sigma(2 noise - 1) on the (fh, fw) grid (as pynn_gaussian_blur,
 * noise uniform in [0,1]), read bilinearly at each pixel; then its stroke width changed by
 * amount[k] as pynn_stroke_width does. field NULL: no fields; amount NULL: no stroke change. */
#define PYNN_DISTORT_MAX 64
int pynn_distort(float *out, const float *inp, int64_t n, int64_t H, int64_t W, const float *mats,
                 const int64_t *field, const float *noise, int64_t n_fields, int64_t fh,
                 int64_t fw, float sigma, float gain, const float *amount);

/* ---- one sample (fast/net_one.c): the pad's digit ----
 * out (sizes[L]) = the network's output for one input: x (sizes[0]) floats, or x_u8 (sizes[0])
 * pixels times scale (exactly one of the two non-NULL). work: at least pynn_net_workspace(net,
 * 1, 0) floats; out must not overlap x or work. A lone call runs on the caller's thread; calls
 * that come back to back share their big layers among the threads. The first layer skips the
 * blocks of 16 inputs that are all zero (a digit's blank paper): the bits are those of
 * pynn_net_forward, except that a blank input counts as nothing against a weight that is Inf or
 * NaN, where the batch path's 0 * Inf gives NaN. */
int pynn_net_forward_one(const struct pynn_net *net, const float *x, const uint8_t *x_u8,
                         float scale, float *out, float *work, int64_t work_len);

/* ---- dropout (ref/dropout.c), element by element over n floats ----
 * inverted dropout: mask[i] = 1/(1-p) with probability 1-p, else 0, drawn from (seed, stream,
 * i) alone (no state: the same arguments give the same mask); a[i] *= mask[i]. p in [0,1). */
int pynn_dropout_forward(float *a, float *mask, int64_t n, float p, uint64_t seed,
                         uint64_t stream);
int pynn_dropout_backward(float *da, const float *mask, int64_t n);   /* da[i] *= mask[i] */

/* ---- convolution and max pooling (ref/conv.c: readable loops; fast/conv.c: unfolded patches
 * times the packed GEMM, on the thread pool) ----
 * Images are NCHW: a batch of B images of C channels of H rows of W floats. A convolution of
 * stride s and zero padding p takes inp (B,C,H,W) and weight (OC,C,KH,KW) to out (B,OC,OH,OW),
 * OH = (H + 2p - KH)/s + 1 and OW = (W + 2p - KW)/s + 1 (floor):
 *   out[b,o,y,x] = bias[o] + sum over c,i,j of weight[o,c,i,j] * inp[b,c, s*y+i-p, s*x+j-p],
 * where a read outside the image is a zero. Every count must be at least 1 except B (0: nothing
 * to do), the padded image at least the kernel, s >= 1, p >= 0: else PYNN_ERR_SIZE/ARG. */
struct pynn_conv2d_shape {
    int64_t B, C, H, W;         /* the input */
    int64_t OC, KH, KW;         /* the weight is (OC,C,KH,KW) */
    int64_t stride, pad;
};
/* floats of workspace the fast convolution (forward and backward) needs for this shape on the
 * threads set now; negative if the shape is invalid. A smaller workspace runs on fewer threads,
 * down to one thread's share; below that the call fails with PYNN_ERR_SIZE. */
int64_t pynn_conv2d_workspace(const struct pynn_conv2d_shape *s);
/* out (B,OC,OH,OW) = the convolution of inp (B,C,H,W) with weight (OC,C,KH,KW), plus bias (OC)
 * (NULL: no bias). out must not overlap the inputs or work. */
int pynn_conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                            const struct pynn_conv2d_shape *s);
int pynn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                        const struct pynn_conv2d_shape *s, float *work, int64_t work_len);
/* from dout (B,OC,OH,OW): dweight (OC,C,KH,KW) += the gradient of the weights, dbias (OC) += that
 * of the bias, dinp (B,C,H,W) += that of the input. dinp and dbias may be NULL (not wanted: the
 * first layer needs no dinp); dweight may not. The outputs must not overlap each other or the
 * inputs. */
int pynn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight,
                             const struct pynn_conv2d_shape *s);
/* the same on the workspace; with `set` nonzero the gradients are written over what dinp,
 * dweight and dbias held instead of added to it (each image's dinp zeroed by the thread that
 * then adds into it, while it is in that core's cache) */
int pynn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const struct pynn_conv2d_shape *s,
                         int set, float *work, int64_t work_len);
/* max pooling over k x k windows, stride k: out (B,C,H/k,W/k) (floor: rows and columns past the
 * last whole window are left out) holds each window's largest value (NaN if the window holds
 * one), argmax the same shape the input element it came from, as h*W + w within its plane
 * (b,c): the first in row-major order among equals. 1 <= k <= H, W; H*W must fit in int32. */
int pynn_maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp, int64_t B,
                               int64_t C, int64_t H, int64_t W, int64_t k);
int pynn_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, int64_t B, int64_t C,
                           int64_t H, int64_t W, int64_t k);
/* dinp (B,C,H,W) += dout routed to the argmax of its window: the gradient reaches only the
 * element the forward chose. An argmax outside its own window is PYNN_ERR_ARG, found before
 * anything is written. dinp must not overlap dout or argmax. */
int pynn_maxpool2d_backward_ref(float *dinp, const float *dout, const int32_t *argmax, int64_t B,
                                int64_t C, int64_t H, int64_t W, int64_t k);
int pynn_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, int64_t B,
                            int64_t C, int64_t H, int64_t W, int64_t k);
/* a convolution, ReLU and k x k max pooling in one pass (a network's Conv2d, ReLU, MaxPool2d):
 * out (B,OC,OH/k,OW/k) and argmax as pynn_maxpool2d_forward's of relu(the convolution), the
 * same bits as the three calls, without the convolution's whole output; work holds
 * pynn_conv2d_relu_pool_workspace floats (less runs on fewer threads, down to one's share) */
int64_t pynn_conv2d_relu_pool_workspace(const struct pynn_conv2d_shape *s);
int pynn_conv2d_relu_pool_forward(float *out, int32_t *argmax, const float *inp,
                                  const float *weight, const float *bias,
                                  const struct pynn_conv2d_shape *s, int64_t k, float *work,
                                  int64_t work_len);
/* its backward to the convolution's output: dinp (B,C,H,W) = dout routed to the argmax of its
 * window where out > 0, zero elsewhere (written, not added: the same bits as the pooling's and
 * the ReLU's backwards into a zeroed dinp). An argmax outside its own window is PYNN_ERR_ARG,
 * found before anything is written. */
int pynn_relu_maxpool2d_backward(float *dinp, const float *dout, const float *out,
                                 const int32_t *argmax, int64_t B, int64_t C, int64_t H,
                                 int64_t W, int64_t k);
/* the whole backward of pynn_conv2d_relu_pool_forward to the weights, for a layer whose input
 * needs no gradient (the first): dweight (OC,C,KH,KW) and dbias (OC) (NULL: not wanted) are
 * written from dout (B,OC,OH/k,OW/k) and the forward's out and argmax. Only the outputs the
 * windows chose, where out > 0, pass a gradient back, so the sums run over the windows alone:
 *   dweight[o,c,i,j] = sum over b and windows w of v * inp[b,c, s*y_w+i-p, s*x_w+j-p]
 *   dbias[o] = sum of v,      v = 0 + dout[b,o,w] where out[b,o,w] > 0 (others are skipped)
 * with (y_w, x_w) the convolution output argmax[b,o,w] names: the sums of the ReLU and pooling
 * backwards followed by the convolution's backward, with the pooling's zeros left out (so an
 * Inf in the input where nothing was chosen gives no NaN). An argmax outside its own window
 * is PYNN_ERR_ARG, found before anything is written. Summed for each element in the order
 * b, then w, whatever the thread count or kernel set: the same bits from both. */
int pynn_conv2d_relu_pool_backward_weights_ref(float *dweight, float *dbias, const float *dout,
                                               const float *out, const int32_t *argmax,
                                               const float *inp,
                                               const struct pynn_conv2d_shape *s, int64_t k);
int pynn_conv2d_relu_pool_backward_weights(float *dweight, float *dbias, const float *dout,
                                           const float *out, const int32_t *argmax,
                                           const float *inp, const struct pynn_conv2d_shape *s,
                                           int64_t k);

/* ---- one image through a network of convolutions, poolings and dense layers (fast/conv_one.c):
 * the pad's digit on a convolutional network ----
 * steps[0..n) in order; step l's input is (C,H,W) (a dense step reads it flattened, C*H*W
 * values), and must be step l-1's output:
 *   PYNN_STEP_CONV   weight (OC,C,K,K), bias (OC), stride 1, zero padding pad: (OC, H+2pad-K+1,
 *                    W+2pad-K+1), then act (enum pynn_activation, elementwise or linear)
 *   PYNN_STEP_POOL   max over K x K windows at stride K: (C, H/K, W/K)
 *   PYNN_STEP_DENSE  weight (OC, C*H*W), bias (OC): (OC,1,1) = act(weight x + bias)
 * then out = output(last step's values) (enum pynn_activation, softmax included). The same
 * mathematics as the layer kernels above, summed in another order: equal to float32 rounding. */
enum pynn_step_kind { PYNN_STEP_CONV = 0, PYNN_STEP_POOL = 1, PYNN_STEP_DENSE = 2 };
struct pynn_step {
    int kind;
    int act;
    int64_t C, H, W;
    int64_t OC, K, pad;
    const float *weight;
    const float *bias;
};
/* floats of workspace pynn_steps_forward_one needs; negative if the steps do not fit together */
int64_t pynn_steps_workspace(const struct pynn_step *steps, int64_t n);
/* out (the last step's value count) = the network's output for one input: x (C*H*W of step 0)
 * floats, or x_u8 pixels times scale (exactly one non-NULL). out must not overlap x or work. */
int pynn_steps_forward_one(const struct pynn_step *steps, int64_t n, int output, const float *x,
                           const uint8_t *x_u8, float scale, float *out, float *work,
                           int64_t work_len);

/* cdef end */

#endif

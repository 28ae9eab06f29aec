/*
 * net.h: what the parts of the fused network share among themselves (not part of the API,
 * which is pynn.h): the checks, the workspace each part needs, a layer's product, the output
 * layer's loss and delta, and an optimiser step over a block of parameters.
 *
 * The parts, one file each:
 *   net.c          the shared pieces below, and pynn_net_workspace
 *   net_forward.c  pynn_net_forward: the whole network over a batch, for inference
 *   net_one.c      pynn_net_forward_one: one digit, the pad's path
 *   net_train.c    pynn_net_train: forward, loss, backward and step for batches of any size
 *   net_small.c    the same for small batches through one hidden layer, which net_train.c
 *                  hands over to
 * The mathematics is the layer-by-layer path of pynn/network.py (forward, backward, then the
 * optimiser of pynn/optim.py), done in the same order with the same formulas, and tested to give
 * the same weights; only the work is arranged differently:
 *  - z = a W^T + b and f(z) happen in the GEMM's output pass (the epilogue), tile by tile;
 *  - softmax and cross-entropy are one pass per row, giving the loss and delta = (p - t)/B;
 *  - the threads of one pool job share every product (each owns a block of columns) and meet
 *    at a barrier between the steps that read what another thread wrote.
 * Every output element is computed by one thread in a fixed order, whatever the thread count,
 * so a run is bit-for-bit repeatable. Nothing here allocates: the caller passes one workspace
 * of pynn_net_workspace() floats and each part carves it up.
 */
#ifndef PYNN_NET_H
#define PYNN_NET_H
#include <stdint.h>
#include <string.h>
#include "fast.h"

/* ---- the network (net.c) ---- */

/* PYNN_OK when the network's pointers, widths and kinds are ones the fused path runs */
int pynn_net_check(const struct pynn_net *net);

/* the network's input rows: X (n, n_in) floats, or X_u8 values times scale (the other NULL) */
struct net_input {
    const float *X;
    const uint8_t *X_u8;
    float scale;
};

/* row `src` of the input, as floats, into dst (n_in): pynn_scale_u8's arithmetic for X_u8 */
static inline void net_input_row(const struct net_input *in, int64_t src, int64_t n_in,
                                 float *dst) {
    if (in->X_u8 == NULL) {
        memcpy(dst, in->X + src * n_in, (size_t)n_in * sizeof(float));
        return;
    }
    const uint8_t *row = in->X_u8 + src * n_in;
    for (int64_t i = 0; i < n_in; i++) dst[i] = (float)row[i] * in->scale;
}

/* the widest layer, input included */
static inline int64_t net_widest(const struct pynn_net *net) {
    int64_t w = 0;
    for (int64_t l = 0; l <= net->n_layers; l++) if (net->sizes[l] > w) w = net->sizes[l];
    return w;
}

/* floating-point operations of a forward pass over B rows */
static inline double net_forward_flops(const struct pynn_net *net, int64_t B) {
    double f = 0.0;
    for (int64_t l = 0; l < net->n_layers; l++) f += 2.0 * (double)B * net->sizes[l] * net->sizes[l + 1];
    return f;
}

/* the layer's product with its epilogue: z (B,n_out) = f(a (B,n_in) W^T + b) */
static inline struct pynn_gemm_args net_layer_forward(const struct pynn_net *net, int64_t l,
                                                      const float *a, float *z, int64_t B,
                                                      int act) {
    int64_t n_in = net->sizes[l], n_out = net->sizes[l + 1];
    struct pynn_gemm_args g = {0, 1, B, n_out, n_in, 1.0f, a, n_in, net->W[l], n_in, 0.0f,
                               z, n_out, net->b[l], act, NULL, NULL};
    return g;
}

/* the output function over rows [r0, r1) of z (B,n), in place */
static inline void net_output_rows(int kind, float *z, int64_t r0, int64_t r1, int64_t n) {
    if (r0 >= r1) return;
    if (kind == PYNN_SOFTMAX) pynn_softmax_forward(z + r0 * n, z + r0 * n, r1 - r0, n);
    else pynn_activation_forward(kind, z + r0 * n, z + r0 * n, r1 - r0, n);
}

/* loss of each row in [r0,r1) of a batch of B and dL/dz of the output layer into delta (cross-
 * entropy: z holds logits and becomes the probabilities; quadratic: z holds f(z)). X is the
 * batch's input: a row with a value that is not finite gets the loss NaN. */
void pynn_net_loss_delta_rows(const struct pynn_net *net, float *z, const float *T, float *delta,
                              double *row_loss, int64_t r0, int64_t r1, int64_t B,
                              const float *X);

/* rows [i0, i0+rows) x columns [j0, j0+n) of parameter array p (row length ld) take the
 * optimiser's step with the gradient g (row stride gld); its state arrays share its layout */
static inline void net_step_block(const struct pynn_optimizer *opt, int64_t p, int64_t step,
                                  float *w, int64_t ld, int64_t i0, int64_t j0, int64_t rows,
                                  int64_t n, const float *g, int64_t gld) {
    int64_t at = i0 * ld + j0;
    float *s1 = opt->kind == PYNN_OPT_SGD ? NULL : opt->state1[p] + at;
    float *s2 = opt->kind == PYNN_OPT_ADAM ? opt->state2[p] + at : NULL;
    pynn_kernels()->stepkernel(opt, step, w + at, s1, s2, ld, g, gld, rows, n);
}

/* ---- the workspace each part needs, in floats, for batches of up to `batch` rows ---- */
int64_t pynn_net_forward_workspace(const struct pynn_net *net, int64_t batch);  /* net_forward.c */
int64_t pynn_net_train_workspace(const struct pynn_net *net, int64_t batch);    /* net_train.c */
int64_t pynn_net_small_workspace(const struct pynn_net *net, int64_t batch);    /* net_small.c */

/* ---- small batches (net_small.c) ---- */

/* whether batches of `batch` rows of this network take the small path */
int pynn_net_small_path(const struct pynn_net *net, int64_t batch);
/* pynn_net_train's work on the small path, arguments checked and the workspace large enough */
void pynn_net_small_train(const struct pynn_net *net, struct pynn_optimizer *opt,
                          const struct net_input *in, const float *T, const int64_t *order,
                          int64_t n_order, int64_t batch, double *losses, int64_t *batches_done,
                          float *work);

#endif

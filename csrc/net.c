/*
 * net.c: a whole network in one call: the forward pass for inference, and training (forward,
 * loss, backward, optimiser step) over many batches, rows gathered through a permutation, so
 * that neither a batch nor a sample costs a trip through Python.
 *
 * The mathematics is the layer-by-layer path of pynn/network.py (forward, backward, then the
 * optimiser of pynn/optim.py), done in the same order with the same formulas, and tested to give
 * the same weights; only the work is arranged differently:
 *  - z = a W^T + b and f(z) happen in the GEMM's output pass (the epilogue), tile by tile;
 *  - softmax and cross-entropy are one pass per row, giving the loss and delta = (p - t)/B;
 *  - the threads of one pool job share every product (each owns a block of columns) and meet
 *    at a barrier between the steps that read what another thread wrote.
 * Every output element is computed by one thread in a fixed order, whatever the thread count,
 * so a run is bit-for-bit repeatable. Nothing here allocates: the caller passes one workspace
 * of pynn_net_workspace() floats and this file carves it up.
 */
#include <math.h>
#include <string.h>
#include "fast.h"

/* ---- checks ---- */

static int check_net(const struct pynn_net *net) {
    if (net == NULL || net->sizes == NULL || net->W == NULL || net->b == NULL) return PYNN_ERR_NULL;
    if (net->n_layers < 1 || net->n_layers > PYNN_MAX_LAYERS) return PYNN_ERR_SIZE;
    for (int64_t l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] < 1 || net->sizes[l] > PYNN_MAX_WIDTH) return PYNN_ERR_SIZE;
    for (int64_t l = 0; l < net->n_layers; l++)
        if (net->W[l] == NULL || net->b[l] == NULL) return PYNN_ERR_NULL;
    int h = net->hidden, o = net->output;
    if (h != PYNN_LINEAR && h != PYNN_SIGMOID && h != PYNN_RELU && h != PYNN_TANH) return PYNN_ERR_ARG;
    if (o != PYNN_LINEAR && o != PYNN_SIGMOID && o != PYNN_SOFTMAX) return PYNN_ERR_ARG;
    if (net->loss != PYNN_LOSS_QUADRATIC && net->loss != PYNN_LOSS_CROSS_ENTROPY) return PYNN_ERR_ARG;
    if (net->loss == PYNN_LOSS_CROSS_ENTROPY && o == PYNN_LINEAR) return PYNN_ERR_ARG;
    return PYNN_OK;
}

static int64_t widest(const struct pynn_net *net) {
    int64_t w = 0;
    for (int64_t l = 0; l <= net->n_layers; l++) if (net->sizes[l] > w) w = net->sizes[l];
    return w;
}

/* ---- the forward pass (inference) ---- */

/* rows past the forward's two ping-pong buffers: floats per row of the workspace */
static int64_t forward_floats_per_row(const struct pynn_net *net) { return 2 * widest(net); }

struct forward_job {
    const struct pynn_net *net;
    const float *X;
    float *out, *work;
    int64_t n, chunk;
};

/* the output function over rows [r0, r1) of z (B,n), in place */
static void output_rows(int kind, float *z, int64_t r0, int64_t r1, int64_t n) {
    if (r0 >= r1) return;
    if (kind == PYNN_SOFTMAX) pynn_softmax_forward(z + r0 * n, z + r0 * n, r1 - r0, n);
    else pynn_activation_forward(kind, z + r0 * n, z + r0 * n, r1 - r0, n);
}

/* the layer's product with its epilogue: z (B,n_out) = f(a (B,n_in) W^T + b) */
static struct pynn_gemm_args layer_forward(const struct pynn_net *net, int64_t l, const float *a,
                                           float *z, int64_t B, int act) {
    int64_t n_in = net->sizes[l], n_out = net->sizes[l + 1];
    struct pynn_gemm_args g = {0, 1, B, n_out, n_in, 1.0f, a, n_in, net->W[l], n_in, 0.0f,
                               z, n_out, net->b[l], act, NULL, NULL};
    return g;
}

static void row_share(int64_t B, int tid, int nt, int64_t *r0, int64_t *r1) {
    *r0 = B * tid / nt;
    *r1 = B * (tid + 1) / nt;
}

static void forward_job(int tid, int nt, void *arg) {
    struct forward_job *job = arg;
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers, w = widest(net);
    for (int64_t start = 0; start < job->n; start += job->chunk) {
        int64_t B = job->n - start < job->chunk ? job->n - start : job->chunk;
        const float *a = job->X + start * net->sizes[0];
        for (int64_t l = 0; l < L; l++) {
            int last = l == L - 1;
            float *z = last ? job->out + start * net->sizes[L] : job->work + (l % 2) * job->chunk * w;
            int act = !last ? net->hidden : net->output == PYNN_SOFTMAX ? -1 : net->output;
            struct pynn_gemm_args g = layer_forward(net, l, a, z, B, act);
            pynn_gemm_part(&g, tid, nt);
            pynn_barrier(nt);
            a = z;
        }
        if (net->output == PYNN_SOFTMAX) {
            int64_t r0, r1;
            row_share(B, tid, nt, &r0, &r1);
            output_rows(PYNN_SOFTMAX, job->out + start * net->sizes[L], r0, r1, net->sizes[L]);
            pynn_barrier(nt);
        }
    }
}

static int64_t small_workspace(const struct pynn_net *net, int64_t batch);

static double forward_flops(const struct pynn_net *net, int64_t B) {
    double f = 0.0;
    for (int64_t l = 0; l < net->n_layers; l++) f += 2.0 * (double)B * net->sizes[l] * net->sizes[l + 1];
    return f;
}

int64_t pynn_net_workspace(const struct pynn_net *net, int64_t batch, int training) {
    if (check_net(net) != PYNN_OK || batch < 1) return -1;
    int64_t L = net->n_layers, w = widest(net);
    if (!training) return batch * forward_floats_per_row(net);
    int64_t acts = 0, grad = 0;
    for (int64_t l = 1; l <= L; l++) acts += net->sizes[l];
    for (int64_t l = 0; l < L; l++)
        if (net->sizes[l] * net->sizes[l + 1] > grad) grad = net->sizes[l] * net->sizes[l + 1];
    /* row losses (doubles), gathered X and T, activations, two deltas, dW, db; or what the
     * small path needs, for a batch that pynn_net_train cuts down to a short epoch */
    int64_t general = 2 * batch + batch * (net->sizes[0] + net->sizes[L] + acts + 2 * w) + grad + w + 64;
    int64_t small = small_workspace(net, batch);
    return general > small ? general : small;
}

int pynn_net_forward(const struct pynn_net *net, const float *X, int64_t n, float *out,
                     float *work, int64_t work_len) {
    if (n < 0 || work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(check_net(net));
    if (n == 0) return PYNN_OK;
    if (X == NULL || out == NULL || work == NULL) return PYNN_ERR_NULL;
    int64_t per_row = forward_floats_per_row(net);
    int64_t chunk = work_len / per_row;
    if (chunk < 1) return PYNN_ERR_SIZE;
    if (chunk > n) chunk = n;
    struct forward_job job = {net, X, out, work, n, chunk};
    unsigned fp = pynn_flush_denormals();
    int nt = pynn_threads_for(forward_flops(net, chunk));
    if (nt <= 1) forward_job(0, 1, &job);   /* a digit at a time: no pool, no wake-up */
    else pynn_parallel(nt, forward_job, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* ---- one sample: a digit from the pad ----
 * The batch path's work without its machinery: no chunking, no GEMM driver. Each layer is dot
 * products of the input with W's rows, six rows at a time through the dot kernel (each output a
 * sum over n_in, read where W lies), then bias and activation on the n_out results while they
 * are in L1. The same kernel and formulas as the batch path, so a row gets the same bits
 * either way.
 * A lone call runs on the caller's thread: a digit's few hundred thousand flops cost less than
 * waking a sleeping thread. Calls that come back to back (a stream of digits) share each layer's
 * rows among the threads, in parts that each thread claims in turn (the caller takes the worker's
 * part too when the worker is slow to come), so that each core, as a rule, keeps the same part
 * of the weights in its own cache.
 * A drawn digit is mostly blank paper: about a fifth of MNIST's pixels hold ink, in about 58%
 * of the blocks of 16. The first layer reads W over those blocks only (pynn_dotblocks_fn),
 * which at 784-128-10 is most of the call: the weights come from L2 at its bandwidth, a cache
 * line a block. */
#define PYNN_ONE_BLOCKS 256     /* inputs of up to 4096 values are scanned for blank blocks */
struct one_job {
    const struct pynn_net *net;
    int64_t l;
    const float *a;
    float *z;
    const int32_t *blk;     /* a's blocks that hold a value other than zero, or NULL: all */
    int nblk;
};

/* part `tid` of `nt` of layer l's units: z = f(a W^T + b), softmax excepted (it needs the
 * whole row) */
static void one_layer_part(int tid, int nt, void *arg) {
    const struct one_job *job = arg;
    const struct pynn_net *net = job->net;
    const struct pynn_kernels *kern = pynn_kernels();
    int64_t l = job->l, n_in = net->sizes[l], n_out = net->sizes[l + 1];
    int64_t groups = (n_out + PYNN_DOT_NR - 1) / PYNN_DOT_NR;
    int64_t j0 = groups * tid / nt * PYNN_DOT_NR, j1 = groups * (tid + 1) / nt * PYNN_DOT_NR;
    if (j1 > n_out) j1 = n_out;
    if (j0 >= j1) return;
    const float *W = net->W[l], *b = net->b[l], *a = job->a;
    float *z = job->z;
    for (int64_t j = j0; j < j1; j += PYNN_DOT_NR) {
        int n = (int)(j1 - j < PYNN_DOT_NR ? j1 - j : PYNN_DOT_NR);
        if (job->blk != NULL) kern->dotblocks(n_in, a, job->blk, job->nblk, W + j * n_in, n_in, z + j, n);
        else kern->dotkernel(n_in, a, n_in, W + j * n_in, n_in, z + j, n_out, 1, n, 1.0f, 0.0f);
    }
    for (int64_t j = j0; j < j1; j++) z[j] += b[j];
    int act = l == net->n_layers - 1 ? net->output : net->hidden;
    if (act == PYNN_RELU) for (int64_t j = j0; j < j1; j++) z[j] = z[j] < 0.0f ? 0.0f : z[j];
    else if (act != PYNN_LINEAR && act != PYNN_SOFTMAX)
        pynn_activation_forward(act, z + j0, z + j0, 1, j1 - j0);
}

/* the blocks of 16 of x (n values) that hold a value other than zero (either sign), listed in
 * blk; returns how many */
static int nonzero_blocks(const float *x, int64_t n, int32_t *blk) {
    int nb = 0;
    for (int64_t p = 0; p < n; p += PYNN_DOT_BLOCK) {
        uint32_t any = 0;
        for (int64_t i = p; i < p + PYNN_DOT_BLOCK && i < n; i++) {
            uint32_t u;
            memcpy(&u, x + i, sizeof(u));
            any |= u << 1;          /* all but the sign bit */
        }
        blk[nb] = (int32_t)(p / PYNN_DOT_BLOCK);
        nb += any != 0;
    }
    return nb;
}

int pynn_net_forward_one(const struct pynn_net *net, const float *x, const uint8_t *x_u8,
                         float scale, float *out, float *work, int64_t work_len) {
    if (work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(check_net(net));
    if ((x == NULL) == (x_u8 == NULL) || out == NULL || work == NULL) return PYNN_ERR_NULL;
    int64_t w = widest(net);
    if (work_len < 2 * w) return PYNN_ERR_SIZE;
    if (x_u8 != NULL) {              /* pixels to 0..1 as pynn_scale_u8 does, into buffer 0 */
        for (int64_t i = 0; i < net->sizes[0]; i++) work[i] = (float)x_u8[i] * scale;
        x = work;
    }
    unsigned fp = pynn_flush_denormals();
    int stream = pynn_stream_call();
    /* a digit's blank blocks of pixels: the first layer skips their columns of W, unless
     * nearly all blocks hold ink */
    int32_t blk[PYNN_ONE_BLOCKS];
    int nblk = -1;
    int64_t all = (net->sizes[0] + PYNN_DOT_BLOCK - 1) / PYNN_DOT_BLOCK;
    if (all <= PYNN_ONE_BLOCKS) nblk = nonzero_blocks(x, net->sizes[0], blk);
    const float *a = x;
    for (int64_t l = 0; l < net->n_layers; l++) {
        float *z = l == net->n_layers - 1 ? out : work + ((l + 1) % 2) * w;  /* never over x */
        int sparse = l == 0 && nblk >= 0 && nblk * 8 < all * 7;
        struct one_job job = {net, l, a, z, sparse ? blk : NULL, nblk};
        /* a layer too small to share (the output layer, typically) stays on this thread */
        double n_read = sparse ? (double)nblk * PYNN_DOT_BLOCK : (double)net->sizes[l];
        int nt = stream ? pynn_threads_for_reads(4.0 * n_read * net->sizes[l + 1]) : 1;
        if (nt > 1) pynn_parallel_parts(nt, nt, one_layer_part, &job);
        else one_layer_part(0, 1, &job);
        a = z;
    }
    if (net->output == PYNN_SOFTMAX) output_rows(PYNN_SOFTMAX, out, 0, 1, net->sizes[net->n_layers]);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* ---- training ---- */

struct train_job {
    const struct pynn_net *net;
    struct pynn_optimizer *opt;
    const float *X, *T;
    int64_t n;
    const int64_t *order;
    int64_t n_order, batch;
    double *losses;
    int64_t done;
    /* the workspace, carved */
    double *row_loss;
    float *Xb, *Tb, *acts[65], *delta[2], *dW, *db;
};

/* whether all n values are finite: a NaN's or an Inf's exponent bits are all ones (integer
 * operations, which the compiler vectorises, unlike a floating-point sum kept in order) */
static int all_finite(const float *x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, x + j, sizeof(u));
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

/* loss of each row in [r0,r1) and dL/dz of the output layer (cross-entropy: z holds logits and
 * becomes the probabilities; quadratic: z holds f(z)). Mirrors losses.c and activations.c. */
static void output_delta_rows(const struct pynn_net *net, float *z, const float *T, float *delta,
                              double *row_loss, int64_t r0, int64_t r1, int64_t B,
                              const float *X) {
    int64_t n = net->sizes[net->n_layers], n_in = net->sizes[0];
    float inv_B = 1.0f / (float)B;
    for (int64_t r = r0; r < r1; r++) {
        /* a NaN or Inf input poisons the gradients even when the loss comes out finite (ReLU
         * turns -Inf into 0): its row's loss is NaN, so the batch takes no step */
        int x_ok = all_finite(X + r * n_in, n_in);
        float *z_b = z + r * n, *d_b = delta + r * n;
        const float *t_b = T + r * n;
        double loss = 0.0;
        if (net->loss == PYNN_LOSS_CROSS_ENTROPY && net->output == PYNN_SOFTMAX) {
            float maxval = -INFINITY;
            for (int64_t j = 0; j < n; j++) if (z_b[j] > maxval) maxval = z_b[j];
            double sum = 0.0;
            for (int64_t j = 0; j < n; j++) {     /* each exponential once, kept in delta's row */
                d_b[j] = expf(z_b[j] - maxval);
                sum += d_b[j];
            }
            double lse = (double)maxval + log(sum);
            float scale = (float)(1.0 / sum), tsum = 0.0f;
            for (int64_t j = 0; j < n; j++) {     /* the loss reads z_j before p_j replaces it */
                if (t_b[j] != 0.0f) loss -= (double)t_b[j] * ((double)z_b[j] - lse);
                z_b[j] = d_b[j] * scale;
                tsum += t_b[j];
            }
            for (int64_t j = 0; j < n; j++) d_b[j] = (z_b[j] * tsum - t_b[j]) * inv_B;
        } else if (net->loss == PYNN_LOSS_CROSS_ENTROPY) {          /* sigmoid outputs */
            for (int64_t j = 0; j < n; j++) {
                double zz = z_b[j];
                loss += (zz > 0.0 ? zz : 0.0) + log1p(exp(-fabs(zz))) - (double)t_b[j] * zz;
            }
            pynn_sigmoid_forward(z_b, z_b, n);
            for (int64_t j = 0; j < n; j++) d_b[j] = (z_b[j] - t_b[j]) * inv_B;
        } else {                                                    /* quadratic on f(z) */
            for (int64_t j = 0; j < n; j++) {
                double diff = (double)t_b[j] - (double)z_b[j];
                loss += diff * diff;
            }
            float scale = 2.0f / (float)B;                          /* dL/dy = 2 (y - t) / B */
            for (int64_t j = 0; j < n; j++) d_b[j] = scale * (z_b[j] - t_b[j]);
            pynn_activation_backward(net->output, d_b, z_b, d_b, 1, n);
        }
        row_loss[r] = x_ok ? loss : NAN;
    }
}

/* rows [i0, i0+rows) x columns [j0, j0+n) of parameter array p (row length ld) take the
 * optimiser's step with the gradient g (row stride gld); its state arrays share its layout */
static void step_block(const struct pynn_optimizer *opt, int64_t p, int64_t step, float *w,
                       int64_t ld, int64_t i0, int64_t j0, int64_t rows, int64_t n,
                       const float *g, int64_t gld) {
    int64_t at = i0 * ld + j0;
    float *s1 = opt->kind == PYNN_OPT_SGD ? NULL : opt->state1[p] + at;
    float *s2 = opt->kind == PYNN_OPT_ADAM ? opt->state2[p] + at : NULL;
    pynn_kernels()->stepkernel(opt, step, w + at, s1, s2, ld, g, gld, rows, n);
}

/* the dW product's tiles go straight into the step: dW is never written to memory */
struct tile_step {
    const struct pynn_optimizer *opt;
    int64_t p, step, ld;
    float *w;
};

static void step_tile(void *ctx, const float *tile, int64_t ld, int64_t i0, int64_t j0,
                      int64_t m, int64_t n) {
    const struct tile_step *t = ctx;
    step_block(t->opt, t->p, t->step, t->w, t->ld, i0, j0, m, n, tile, ld);
}

static void col_share(int64_t n, int tid, int nt, int64_t *c0, int64_t *c1) {
    int64_t units = (n + 15) / 16;
    *c0 = units * tid / nt * 16;
    *c1 = units * (tid + 1) / nt * 16;
    if (*c0 > n) *c0 = n;
    if (*c1 > n) *c1 = n;
}

/* one batch of B rows: forward, loss, backward, update. Returns the batch's loss (all threads).
 * The optimiser's step count advances only when the weights do. */
static double train_step(struct train_job *job, const float *Xb, const float *Tb, int64_t B,
                         int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers;
    /* forward: hidden layers through their activation, the output layer through its own
     * (softmax and the cross-entropy outputs are applied with the loss, row by row) */
    const float *a = Xb;
    for (int64_t l = 0; l < L; l++) {
        int last = l == L - 1;
        int act = !last ? net->hidden
                : (net->loss == PYNN_LOSS_CROSS_ENTROPY || net->output == PYNN_SOFTMAX) ? -1
                : net->output;
        struct pynn_gemm_args g = layer_forward(net, l, a, job->acts[l], B, act);
        pynn_gemm_part(&g, tid, nt);
        pynn_barrier(nt);
        a = job->acts[l];
    }
    int64_t r0, r1, n_out = net->sizes[L];
    row_share(B, tid, nt, &r0, &r1);
    if (net->loss == PYNN_LOSS_QUADRATIC && net->output == PYNN_SOFTMAX)
        output_rows(PYNN_SOFTMAX, job->acts[L - 1], r0, r1, n_out);
    output_delta_rows(net, job->acts[L - 1], Tb, job->delta[(L - 1) % 2], job->row_loss, r0, r1, B,
                      Xb);
    pynn_barrier(nt);
    /* every thread sums the same row losses in the same order, so all agree on the verdict:
     * a batch whose loss is not finite leaves the weights and the optimiser as they were */
    double loss = 0.0;
    for (int64_t r = 0; r < B; r++) loss += job->row_loss[r];
    loss /= (double)B;
    if (!isfinite(loss)) return loss;
    int64_t step = job->opt->step + 1;  /* thread 0 stores it once every thread has read it */
    /* backward, last layer first */
    for (int64_t l = L - 1; l >= 0; l--) {
        int64_t n_in = net->sizes[l], n_outl = net->sizes[l + 1];
        const float *delta = job->delta[l % 2];
        const float *a_prev = l > 0 ? job->acts[l - 1] : Xb;
        if (l > 0) {
            /* dL/da_prev = delta W (with the weights before this step's update), then through
             * the hidden activation's derivative, each thread on the columns it computed */
            float *dprev = job->delta[(l - 1) % 2];
            struct pynn_gemm_args g = {0, 0, B, n_in, n_outl, 1.0f, delta, n_outl, net->W[l], n_in,
                                       0.0f, dprev, n_in, NULL, -1, NULL, NULL};
            pynn_gemm_part(&g, tid, nt);
            int64_t m0, m1, j0, j1;     /* the block this thread computed */
            pynn_gemm_region(&g, tid, nt, &m0, &m1, &j0, &j1);
            for (int64_t r = m0; r < m1 && j1 > j0; r++)
                pynn_activation_backward(net->hidden, dprev + r * n_in + j0, a_prev + r * n_in + j0,
                                         dprev + r * n_in + j0, 1, j1 - j0);
            /* the step below rewrites the columns of W this thread's dW covers; the other
             * threads' delta W may still be reading them, so wait, unless both products split
             * W's columns alike (units of 16): each thread then reads only what it rewrites.
             * The test depends on shapes only, so every thread takes the same branch. */
            struct pynn_gemm_args gw = {1, 0, n_outl, n_in, B, 1.0f, delta, n_outl, a_prev, n_in,
                                        0.0f, job->dW, n_in, NULL, -1, step_tile, NULL};
            if (!(B <= PYNN_KC && pynn_gemm_splits_columns(&g, nt) &&
                  pynn_gemm_splits_columns(&gw, nt)))
                pynn_barrier(nt);
        }
        /* dW = delta^T a_prev (n_out, n_in), each tile stepped as it comes out of the kernel
         * (one K slice: B <= KC); a bigger batch goes through the dW buffer */
        struct tile_step ts = {job->opt, 2 * l, step, n_in, net->W[l]};
        struct pynn_gemm_args g = {1, 0, n_outl, n_in, B, 1.0f, delta, n_outl, a_prev, n_in,
                                   0.0f, job->dW, n_in, NULL, -1, NULL, NULL};
        if (B <= PYNN_KC) {
            g.tile_fn = step_tile;
            g.tile_ctx = &ts;
        }
        pynn_gemm_part(&g, tid, nt);
        /* db = column sums of delta, in row order (as bias_backward adds them) */
        int64_t c0, c1;
        col_share(n_outl, tid, nt, &c0, &c1);
        if (c1 > c0) {
            for (int64_t j = c0; j < c1; j++) job->db[j] = 0.0f;
            for (int64_t r = 0; r < B; r++) {
                const float *d_r = delta + r * n_outl;
                for (int64_t j = c0; j < c1; j++) job->db[j] += d_r[j];
            }
        }
        if (c1 > c0)
            step_block(job->opt, 2 * l + 1, step, net->b[l], n_outl, 0, c0, 1, c1 - c0,
                       job->db + c0, n_outl);
        if (g.tile_fn == NULL) {
            pynn_barrier(nt);   /* dW complete (the split of its columns is not ours to know) */
            col_share(n_in, tid, nt, &c0, &c1);
            if (c1 > c0)
                step_block(job->opt, 2 * l, step, net->W[l], n_in, 0, c0, n_outl, c1 - c0,
                           job->dW + c0, n_in);
        }
        pynn_barrier(nt);   /* weights and the next delta are complete */
    }
    if (tid == 0) job->opt->step = step;
    return loss;
}

static void train_job(int tid, int nt, void *arg) {
    struct train_job *job = arg;
    const struct pynn_net *net = job->net;
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers];
    int64_t n_batches = (job->n_order + job->batch - 1) / job->batch;
    for (int64_t k = 0; k < n_batches; k++) {
        int64_t first = k * job->batch;
        int64_t B = job->n_order - first < job->batch ? job->n_order - first : job->batch;
        const float *Xb = job->X + first * n_in, *Tb = job->T + first * n_out;
        if (job->order != NULL) {           /* gather the batch's rows */
            int64_t r0, r1;
            row_share(B, tid, nt, &r0, &r1);
            for (int64_t r = r0; r < r1; r++) {
                int64_t src = job->order[first + r];
                memcpy(job->Xb + r * n_in, job->X + src * n_in, (size_t)n_in * sizeof(float));
                memcpy(job->Tb + r * n_out, job->T + src * n_out, (size_t)n_out * sizeof(float));
            }
            pynn_barrier(nt);
            Xb = job->Xb;
            Tb = job->Tb;
        }
        double loss = train_step(job, Xb, Tb, B, tid, nt);
        if (tid == 0) {
            job->losses[k] = loss;
            job->done = k + 1;
        }
        if (!isfinite(loss)) break;         /* every thread sees the same loss */
    }
}

/* ---- small batches through one hidden layer: the paper's way of training ----
 * A batch of one digit (or ten) is too small a product to share out block by block: the
 * barriers between the general step's products would cost more than their arithmetic. So for
 * a network with one hidden layer, each thread owns a fixed run of hidden units for the whole
 * call: their rows of W0, their columns of W1, and the optimiser's state of both, which stay in
 * that core's cache from one step to the next. A step then needs one meeting of the threads:
 *   1. a0[:, own] = f(x W0[own]^T + b0[own])
 *   2. P_k = a0[:, k] W1[:, k]^T for each own block k of SMALL_BLOCK units (thread 0, owner of
 *      block 0, adds b1 to P_0)
 *   3. barrier
 *   4. every thread alike: z = P_0 + P_1 + ... in block order, then the loss and delta
 *   5. delta0[:, own] = f'(delta W1[:, own]); W1[:, own] and W0[own] step, b1 by thread 0
 * The blocks and the order of the partial sums depend on the widths alone, so a run gives the
 * same bits on any number of threads. P is kept for even and odd steps, since a thread may
 * begin the next step while another still reads this one's sums. */
#define SMALL_B 16          /* batches of up to this many rows take the small path */
#define SMALL_OUT 64        /* ... when the output layer is at most this wide */
#define SMALL_BLOCK 64      /* hidden units a block: what a thread owns, and one partial sum */
#define SMALL_THREADS 8
#define SMALL_CHUNK 256     /* bias gradients made at a time, on the stack, before they step */

static int small_path(const struct pynn_net *net, int64_t batch) {
    return net->n_layers == 2 && batch <= SMALL_B && net->sizes[2] <= SMALL_OUT;
}

/* n floats rounded up to whole cache lines: the row stride of a0 and delta0, and the stride of
 * the partial sums' blocks, so that no line holds two threads' values (a line written by both
 * passes from core to core at every step) */
static int64_t small_ld(int64_t n) { return (n + 15) / 16 * 16; }

static int64_t small_blocks(const struct pynn_net *net) {
    return (net->sizes[1] + SMALL_BLOCK - 1) / SMALL_BLOCK;
}

/* a0 and delta0 (B, H); the partial sums, twice; gathered rows, three batches. For any batch
 * size, so that the general path's workspace covers a batch cut down to a short epoch's rows. */
static int64_t small_workspace(const struct pynn_net *net, int64_t batch) {
    if (net->n_layers != 2) return 0;
    if (batch > SMALL_B) batch = SMALL_B;
    return 2 * batch * small_ld(net->sizes[1]) + 2 * small_blocks(net) * small_ld(batch * net->sizes[2]) +
           3 * batch * net->sizes[0] + 64;
}

struct small_job {
    const struct pynn_net *net;
    struct pynn_optimizer *opt;
    const float *X, *T;
    const int64_t *order;
    int64_t n_order, batch;
    double *losses;
    int64_t done;
    float *a0, *delta0, *P, *Xg;
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* a request that the n floats of a row come into cache, a line at a time */
static void prefetch_row(const float *row, int64_t n) {
    for (int64_t byte = 0; byte < n * (int64_t)sizeof(float); byte += 64)
        __builtin_prefetch((const char *)row + byte, 0, 2);
}

/* this thread's share of batch k's rows, copied into slot k % 3 of the gathered rows, and a
 * request for its share of batch k + 1's rows, so that they are in cache when their turn
 * comes (rows drawn at random from a data set are likely in memory only). Batch k is copied
 * during step k - 1, before its barrier; step k reads slot k % 3 until it is done, and no
 * thread can be more than one step ahead of another, so the copy for k + 1 lands in the slot
 * nobody is reading. */
static void small_gather(const struct small_job *job, int64_t k, int tid, int nt) {
    int64_t n0 = job->net->sizes[0], first = k * job->batch;
    int64_t B = min64(job->batch, job->n_order - first), r0, r1;
    row_share(B, tid, nt, &r0, &r1);
    float *slot = job->Xg + (k % 3) * job->batch * n0;
    for (int64_t r = r0; r < r1; r++)
        memcpy(slot + r * n0, job->X + job->order[first + r] * n0, (size_t)n0 * sizeof(float));
    int64_t next = first + job->batch, n_next = min64(job->batch, job->n_order - next);
    row_share(n_next > 0 ? n_next : 0, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) prefetch_row(job->X + job->order[next + r] * n0, n0);
}

/* rows [i0, i0+m) x columns [j0, j0+n) of parameter array p (row length ld) step with the
 * gradient d^T A of a small batch: d's column i (stride d_step) for row i0 + i */
static void small_gradstep(const struct pynn_optimizer *opt, int64_t p, int64_t step, int64_t B,
                           int m, const float *d, int64_t d_step, const float *A, int64_t lda,
                           float *w, int64_t ld, int64_t i0, int64_t j0, int64_t n) {
    int64_t at = i0 * ld + j0;
    float *s1 = opt->kind == PYNN_OPT_SGD ? NULL : opt->state1[p] + at;
    float *s2 = opt->kind == PYNN_OPT_ADAM ? opt->state2[p] + at : NULL;
    pynn_kernels()->gradstep(opt, step, (int)B, m, d, d_step, A, lda, w + at, s1, s2, ld, n);
}

static void small_job(int tid, int nt, void *arg) {
    struct small_job *job = arg;
    const struct pynn_net *net = job->net;
    const struct pynn_kernels *kern = pynn_kernels();
    const struct pynn_optimizer *opt = job->opt;
    int64_t n0 = net->sizes[0], H = net->sizes[1], nL = net->sizes[2], nb = small_blocks(net);
    int64_t k0 = nb * tid / nt, k1 = nb * (tid + 1) / nt;
    int64_t u0 = k0 * SMALL_BLOCK, u1 = min64(H, k1 * SMALL_BLOCK), nu = u1 - u0;
    int64_t ld = small_ld(H), pstride = small_ld(job->batch * nL);   /* see small_ld */
    float *W0 = net->W[0], *b0 = net->b[0], *W1 = net->W[1], *b1 = net->b[1];
    float *a0 = job->a0, *delta0 = job->delta0;
    float z[SMALL_B * SMALL_OUT], delta[SMALL_B * SMALL_OUT], Tg[SMALL_B * SMALL_OUT];
    float g[SMALL_CHUNK];
    double row_loss[SMALL_B];
    int64_t step = opt->step;   /* read before any thread passes the first barrier */
    int64_t n_batches = (job->n_order + job->batch - 1) / job->batch;
    /* shuffled batches of several rows are gathered by all threads together, a step ahead;
     * one row, or an unshuffled run, is read where it lies */
    int gather = job->order != NULL && job->batch > 1;
    if (gather) {
        small_gather(job, 0, tid, nt);
        pynn_barrier(nt);
    }
    for (int64_t k = 0; k < n_batches; k++) {
        int64_t first = k * job->batch, B = min64(job->batch, job->n_order - first);
        const float *Xb = gather ? job->Xg + (k % 3) * job->batch * n0
                                 : job->X + (job->order ? job->order[first] : first) * n0;
        for (int64_t r = 0; r < B; r++) {
            int64_t src = job->order ? job->order[first + r] : first + r;
            memcpy(Tg + r * nL, job->T + src * nL, (size_t)nL * sizeof(float));
        }
        if (!gather && job->order && first + 1 < job->n_order)     /* the next row, to cache */
            prefetch_row(job->X + job->order[first + 1] * n0, n0);
        float *P = job->P + (k % 2) * nb * pstride;
        /* 1. own hidden units, six rows of W0 at a time against every row of the batch */
        for (int64_t j = u0; j < u1; j += PYNN_DOT_NR) {
            int n = (int)min64(PYNN_DOT_NR, u1 - j);
            for (int64_t r = 0; r < B; r += PYNN_DOT_MR)
                kern->dotkernel(n0, Xb + r * n0, n0, W0 + j * n0, n0, a0 + r * ld + j, ld,
                                (int)min64(PYNN_DOT_MR, B - r), n, 1.0f, 0.0f);
        }
        for (int64_t r = 0; r < B && nu > 0; r++) {
            float *a = a0 + r * ld + u0;
            for (int64_t j = 0; j < nu; j++) a[j] += b0[u0 + j];
            if (net->hidden == PYNN_RELU) for (int64_t j = 0; j < nu; j++) a[j] = a[j] < 0.0f ? 0.0f : a[j];
            else if (net->hidden != PYNN_LINEAR) pynn_activation_forward(net->hidden, a, a, 1, nu);
        }
        /* 2. the output layer's partial sums over own blocks */
        for (int64_t kb = k0; kb < k1; kb++) {
            int64_t c0 = kb * SMALL_BLOCK, bw = min64(SMALL_BLOCK, H - c0);
            float *Pk = P + kb * pstride;
            for (int64_t o = 0; o < nL; o += PYNN_DOT_NR)
                for (int64_t r = 0; r < B; r += PYNN_DOT_MR)
                    kern->dotkernel(bw, a0 + r * ld + c0, ld, W1 + o * H + c0, H, Pk + r * nL + o, nL,
                                    (int)min64(PYNN_DOT_MR, B - r), (int)min64(PYNN_DOT_NR, nL - o),
                                    1.0f, 0.0f);
            if (kb == 0)
                for (int64_t r = 0; r < B; r++)
                    for (int64_t o = 0; o < nL; o++) Pk[r * nL + o] += b1[o];
        }
        if (gather && k + 1 < n_batches) small_gather(job, k + 1, tid, nt);
        pynn_barrier(nt);
        /* 4. the output, its loss and delta, the same in every thread */
        for (int64_t i = 0; i < B * nL; i++) {
            float sum = P[i];
            for (int64_t kb = 1; kb < nb; kb++) sum += P[kb * pstride + i];
            z[i] = sum;
        }
        if (net->loss == PYNN_LOSS_QUADRATIC && net->output != PYNN_LINEAR)
            output_rows(net->output, z, 0, B, nL);
        output_delta_rows(net, z, Tg, delta, row_loss, 0, B, B, Xb);
        double loss = 0.0;
        for (int64_t r = 0; r < B; r++) loss += row_loss[r];
        loss /= (double)B;
        if (tid == 0) {
            job->losses[k] = loss;
            job->done = k + 1;
        }
        if (!isfinite(loss)) break;     /* no step, as on the general path */
        step++;
        /* 5. back through W1 to own hidden units (W1 as it was before this step) */
        for (int64_t r = 0; r < B && nu > 0; r++) {
            float *d = delta0 + r * ld + u0;
            if (kern->gemvkernel)
                kern->gemvkernel(nL, delta + r * nL, 1, W1 + u0, H, d, nu, 1.0f, 0.0f);
            else
                for (int64_t j = 0; j < nu; j++) {
                    float sum = 0.0f;
                    for (int64_t o = 0; o < nL; o++) sum += delta[r * nL + o] * W1[o * H + u0 + j];
                    d[j] = sum;
                }
            pynn_activation_backward(net->hidden, d, a0 + r * ld + u0, d, 1, nu);
        }
        /* own columns of W1, rows of W0, and own biases step, four rows of W at a time */
        for (int64_t o = 0; o < nL && nu > 0; o += PYNN_ROWGRAD_M)
            small_gradstep(opt, 2, step, B, (int)min64(PYNN_ROWGRAD_M, nL - o), delta + o, nL,
                           a0 + u0, ld, W1, H, o, u0, nu);
        if (tid == 0) {
            for (int64_t o = 0; o < nL; o++) {
                g[o] = 0.0f;
                for (int64_t r = 0; r < B; r++) g[o] += delta[r * nL + o];
            }
            step_block(opt, 3, step, b1, nL, 0, 0, 1, nL, g, nL);
        }
        for (int64_t j = u0; j < u1; j += PYNN_ROWGRAD_M)
            small_gradstep(opt, 0, step, B, (int)min64(PYNN_ROWGRAD_M, u1 - j), delta0 + j, ld, Xb,
                           n0, W0, n0, j, 0, n0);
        for (int64_t c = u0; c < u1; c += SMALL_CHUNK) {
            int64_t len = min64(SMALL_CHUNK, u1 - c);
            for (int64_t j = 0; j < len; j++) {
                g[j] = 0.0f;
                for (int64_t r = 0; r < B; r++) g[j] += delta0[r * ld + c + j];
            }
            step_block(opt, 1, step, b0, H, 0, c, 1, len, g, len);
        }
    }
    if (tid == 0) job->opt->step = step;
}

static void small_train(const struct pynn_net *net, struct pynn_optimizer *opt, const float *X,
                        const float *T, const int64_t *order, int64_t n_order, int64_t batch,
                        double *losses, int64_t *batches_done, float *work) {
    struct small_job job = {net, opt, X, T, order, n_order, batch, losses, 0, NULL, NULL, NULL, NULL};
    int64_t H = net->sizes[1], nb = small_blocks(net);
    /* from a cache line on (the workspace has a line to spare), so that the threads' parts of
     * a0, delta0, the partial sums and the gathered rows start on lines of their own */
    float *p = (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    int64_t ld = small_ld(H);
    job.a0 = p;          p += batch * ld;
    job.delta0 = p;      p += batch * ld;
    job.P = p;           p += 2 * nb * small_ld(batch * net->sizes[2]);
    job.Xg = p;
    int64_t steps = (n_order + batch - 1) / batch;
    int nt = pynn_threads_for_steps(3.0 * forward_flops(net, batch), steps);
    if (nt > nb) nt = (int)nb;
    if (nt > SMALL_THREADS) nt = SMALL_THREADS;
    if (nt <= 1) small_job(0, 1, &job);
    else pynn_parallel(nt, small_job, &job);
    *batches_done = job.done;
}

int pynn_net_train(const struct pynn_net *net, struct pynn_optimizer *opt, const float *X,
                   const float *T, int64_t n, const int64_t *order, int64_t n_order,
                   int64_t batch, double *losses, int64_t *batches_done, float *work,
                   int64_t work_len) {
    if (n < 0 || n_order < 0 || batch < 1 || work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(check_net(net));
    if (opt == NULL || batches_done == NULL) return PYNN_ERR_NULL;
    *batches_done = 0;
    if (n_order == 0) return PYNN_OK;
    if (X == NULL || T == NULL || work == NULL || losses == NULL) return PYNN_ERR_NULL;
    if (order == NULL && n_order > n) return PYNN_ERR_SIZE;
    if (order != NULL)
        for (int64_t i = 0; i < n_order; i++) if (order[i] < 0 || order[i] >= n) return PYNN_ERR_ARG;
    if (opt->kind != PYNN_OPT_SGD && opt->kind != PYNN_OPT_MOMENTUM && opt->kind != PYNN_OPT_ADAM)
        return PYNN_ERR_ARG;
    if (!(isfinite(opt->lr) && opt->lr >= 0.0f && isfinite(opt->weight_decay)) || opt->step < 0)
        return PYNN_ERR_ARG;
    if (opt->kind == PYNN_OPT_MOMENTUM && !(opt->momentum >= 0.0f && opt->momentum < 1.0f))
        return PYNN_ERR_ARG;
    if (opt->kind == PYNN_OPT_ADAM && !(opt->beta1 >= 0.0f && opt->beta1 < 1.0f && opt->beta2 >= 0.0f &&
                                        opt->beta2 < 1.0f && opt->eps > 0.0f))
        return PYNN_ERR_ARG;
    int64_t L = net->n_layers;
    for (int64_t p = 0; p < 2 * L && opt->kind != PYNN_OPT_SGD; p++) {
        if (opt->state1 == NULL || opt->state1[p] == NULL) return PYNN_ERR_NULL;
        if (opt->kind == PYNN_OPT_ADAM && (opt->state2 == NULL || opt->state2[p] == NULL))
            return PYNN_ERR_NULL;
    }
    if (batch > n_order) batch = n_order;
    int64_t need = pynn_net_workspace(net, batch, 1);
    if (need < 0 || work_len < need) return PYNN_ERR_SIZE;
    if (small_path(net, batch)) {
        unsigned fp = pynn_flush_denormals();
        small_train(net, opt, X, T, order, n_order, batch, losses, batches_done, work);
        pynn_restore_denormals(fp);
        return PYNN_OK;
    }

    struct train_job job;
    memset(&job, 0, sizeof(job));
    job.net = net; job.opt = opt; job.X = X; job.T = T; job.n = n;
    job.order = order; job.n_order = n_order; job.batch = batch; job.losses = losses;
    /* carve the workspace; each piece starts on a 64-byte boundary when work does */
    float *p = work;
    job.row_loss = (double *)p;   p += 2 * batch + 16 - (2 * batch) % 16;
    int64_t w = widest(net);
    job.Xb = p;                   p += batch * net->sizes[0];
    job.Tb = p;                   p += batch * net->sizes[L];
    for (int64_t l = 0; l < L; l++) { job.acts[l] = p; p += batch * net->sizes[l + 1]; }
    job.delta[0] = p;             p += batch * w;
    job.delta[1] = p;             p += batch * w;
    job.db = p;                   p += w;
    job.dW = p;

    double flops = 3.0 * forward_flops(net, batch);
    unsigned fp = pynn_flush_denormals();
    int nt = pynn_threads_for(flops);
    if (nt <= 1) train_job(0, 1, &job);
    else pynn_parallel(nt, train_job, &job);
    pynn_restore_denormals(fp);
    *batches_done = job.done;
    return PYNN_OK;
}

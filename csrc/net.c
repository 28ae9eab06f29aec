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
    if (net->n_layers < 1 || net->n_layers > 64) return PYNN_ERR_SIZE;
    for (int64_t l = 0; l <= net->n_layers; l++)
        if (net->sizes[l] < 1 || net->sizes[l] > (1 << 24)) return PYNN_ERR_SIZE;
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
    /* row losses (doubles), gathered X and T, activations, two deltas, dW, db */
    return 2 * batch + batch * (net->sizes[0] + net->sizes[L] + acts + 2 * w) + grad + w + 64;
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
 * The batch path's work without its machinery: no pool (a digit's few hundred thousand flops
 * cost less than waking a thread), no chunking, no GEMM driver. Each layer is dot products of
 * the input with W's rows, six rows at a time through the dot kernel (each output a sum over
 * n_in, read where W lies), then bias and activation on the n_out results while they are in
 * L1. The same kernel and formulas as the batch path, so a row gets the same bits either way. */
int pynn_net_forward_one(const struct pynn_net *net, const float *x, const uint8_t *x_u8,
                         float scale, float *out, float *work, int64_t work_len) {
    if (work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(check_net(net));
    if ((x == NULL) == (x_u8 == NULL) || out == NULL || work == NULL) return PYNN_ERR_NULL;
    int64_t L = net->n_layers, w = widest(net);
    if (work_len < 2 * w) return PYNN_ERR_SIZE;
    if (x_u8 != NULL) {              /* pixels to 0..1 as pynn_scale_u8 does, into buffer 0 */
        for (int64_t i = 0; i < net->sizes[0]; i++) work[i] = (float)x_u8[i] * scale;
        x = work;
    }
    const struct pynn_kernels *kern = pynn_kernels();
    unsigned fp = pynn_flush_denormals();
    const float *a = x;
    for (int64_t l = 0; l < L; l++) {
        int64_t n_in = net->sizes[l], n_out = net->sizes[l + 1];
        int last = l == L - 1;
        float *z = last ? out : work + ((l + 1) % 2) * w;   /* layer 0 never writes over x */
        const float *W = net->W[l], *b = net->b[l];
        for (int64_t j = 0; j < n_out; j += PYNN_DOT_NR) {
            int n = (int)(n_out - j < PYNN_DOT_NR ? n_out - j : PYNN_DOT_NR);
            kern->dotkernel(n_in, a, n_in, W + j * n_in, n_in, z + j, n_out, 1, n, 1.0f, 0.0f);
        }
        for (int64_t j = 0; j < n_out; j++) z[j] += b[j];
        int act = last ? net->output : net->hidden;
        if (act == PYNN_RELU) for (int64_t j = 0; j < n_out; j++) z[j] = z[j] < 0.0f ? 0.0f : z[j];
        else if (act != PYNN_LINEAR) output_rows(act, z, 0, 1, n_out);
        a = z;
    }
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
        const float *x_b = X + r * n_in;
        float x_sum = 0.0f;
        for (int64_t j = 0; j < n_in; j++) x_sum += x_b[j] * 0.0f;   /* 0 unless some x is NaN or Inf */
        float *z_b = z + r * n, *d_b = delta + r * n;
        const float *t_b = T + r * n;
        double loss = 0.0;
        if (net->loss == PYNN_LOSS_CROSS_ENTROPY && net->output == PYNN_SOFTMAX) {
            float maxval = -INFINITY;
            for (int64_t j = 0; j < n; j++) if (z_b[j] > maxval) maxval = z_b[j];
            double sum = 0.0;
            for (int64_t j = 0; j < n; j++) sum += expf(z_b[j] - maxval);
            double lse = (double)maxval + log(sum);
            float scale = (float)(1.0 / sum), tsum = 0.0f;
            for (int64_t j = 0; j < n; j++) {     /* the loss reads z_j before p_j replaces it */
                if (t_b[j] != 0.0f) loss -= (double)t_b[j] * ((double)z_b[j] - lse);
                z_b[j] = expf(z_b[j] - maxval) * scale;
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
        row_loss[r] = x_sum == 0.0f ? loss : NAN;
    }
}

/* rows [i0, i0+rows) x columns [j0, j0+n) of parameter array p (row length ld) take the
 * optimiser's step with the gradient g (row stride gld); its state arrays share its layout */
static void step_block(const struct pynn_optimizer *opt, int64_t p, int64_t step, float *w,
                       int64_t ld, int64_t i0, int64_t j0, int64_t rows, int64_t n,
                       const float *g, int64_t gld) {
    pynn_stepkernel_fn stepkernel = pynn_kernels()->stepkernel;
    for (int64_t i = 0; i < rows; i++) {
        int64_t at = (i0 + i) * ld + j0;
        float *s1 = opt->kind == PYNN_OPT_SGD ? NULL : opt->state1[p] + at;
        float *s2 = opt->kind == PYNN_OPT_ADAM ? opt->state2[p] + at : NULL;
        stepkernel(opt, step, w + at, s1, s2, g + i * gld, n);
    }
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

/*
 * net_train.c: mini-batch training of the whole network in one call (pynn_net_train): for each
 * batch, rows gathered through a permutation (and uint8 input scaled to floats on the way), the
 * forward pass, the loss and its delta, the backward pass and the optimiser's step, so that no
 * batch costs a trip through Python.
 *
 * One pool job runs every batch. Its threads share each product (pynn_gemm_part: each owns a
 * block of columns or rows) and meet at a barrier wherever a step reads what another thread
 * wrote. The gradient dW is never stored: each tile of delta^T a_prev goes from the GEMM's
 * registers straight into the optimiser's step (step_tile). Small batches through one hidden
 * layer go to net_small.c instead, where barriers between products would cost more than the
 * products.
 */
#include <math.h>
#include <string.h>
#include "net.h"

struct train_job {
    const struct pynn_net *net;
    struct pynn_optimizer *opt;
    struct net_input in;
    const float *T;
    int64_t n;
    const int64_t *order;
    int64_t n_order, batch;
    double *losses;
    int64_t done;
    /* the workspace, carved */
    double *row_loss;
    float *Xb, *Tb, *acts[65], *delta[2], *dW, *db;
};

/* row losses (doubles), gathered X and T, activations, two deltas, dW, db */
int64_t pynn_net_train_workspace(const struct pynn_net *net, int64_t batch) {
    int64_t L = net->n_layers, w = net_widest(net);
    int64_t acts = 0, grad = 0;
    for (int64_t l = 1; l <= L; l++) acts += net->sizes[l];
    for (int64_t l = 0; l < L; l++)
        if (net->sizes[l] * net->sizes[l + 1] > grad) grad = net->sizes[l] * net->sizes[l + 1];
    return 2 * batch + batch * (net->sizes[0] + net->sizes[L] + acts + 2 * w) + grad + w + 64;
}

/* the job's buffers out of the workspace; each piece starts on a 64-byte boundary when work
 * does */
static void carve_workspace(struct train_job *job, float *work) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers, batch = job->batch, w = net_widest(net);
    float *p = work;
    job->row_loss = (double *)p;   p += 2 * batch + 16 - (2 * batch) % 16;
    job->Xb = p;                   p += batch * net->sizes[0];
    job->Tb = p;                   p += batch * net->sizes[L];
    for (int64_t l = 0; l < L; l++) { job->acts[l] = p; p += batch * net->sizes[l + 1]; }
    job->delta[0] = p;             p += batch * w;
    job->delta[1] = p;             p += batch * w;
    job->db = p;                   p += w;
    job->dW = p;
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
    net_step_block(t->opt, t->p, t->step, t->w, t->ld, i0, j0, m, n, tile, ld);
}

/* forward: hidden layers through their activation, the output layer through its own
 * (softmax and the cross-entropy outputs are applied with the loss, row by row) */
static void forward_layers(struct train_job *job, const float *Xb, int64_t B, int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers;
    const float *a = Xb;
    for (int64_t l = 0; l < L; l++) {
        int last = l == L - 1;
        int act = !last ? net->hidden
                : (net->loss == PYNN_LOSS_CROSS_ENTROPY || net->output == PYNN_SOFTMAX) ? -1
                : net->output;
        struct pynn_gemm_args g = net_layer_forward(net, l, a, job->acts[l], B, act);
        pynn_gemm_part(&g, tid, nt);
        pynn_barrier(nt);
        a = job->acts[l];
    }
}

/* the output layer's delta and the batch's loss. Every thread sums the same row losses in the
 * same order, so all agree on the verdict. */
static double loss_and_delta(struct train_job *job, const float *Xb, const float *Tb, int64_t B,
                             int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers, r0, r1, n_out = net->sizes[L];
    pynn_share(B, 1, tid, nt, &r0, &r1);
    if (net->loss == PYNN_LOSS_QUADRATIC && net->output == PYNN_SOFTMAX)
        net_output_rows(PYNN_SOFTMAX, job->acts[L - 1], r0, r1, n_out);
    pynn_net_loss_delta_rows(net, job->acts[L - 1], Tb, job->delta[(L - 1) % 2], job->row_loss,
                             r0, r1, B, Xb);
    pynn_barrier(nt);
    double loss = 0.0;
    for (int64_t r = 0; r < B; r++) loss += job->row_loss[r];
    return loss / (double)B;
}

/* dL/da_prev = delta W (with the weights before this step's update) into the other delta
 * buffer, then through the hidden activation's derivative, each thread on the columns it
 * computed; and the barrier, when needed, before layer l's weights may change */
static void backward_delta(struct train_job *job, int64_t l, const float *delta,
                           const float *a_prev, int64_t B, int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t n_in = net->sizes[l], n_outl = net->sizes[l + 1];
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

/* layer l's weights and biases take the step: dW = delta^T a_prev (n_out, n_in), each tile
 * stepped as it comes out of the kernel (one K slice: B <= KC), a bigger batch through the dW
 * buffer; db = column sums of delta, in row order (as bias_backward adds them) */
static void step_layer(struct train_job *job, int64_t l, const float *delta,
                       const float *a_prev, int64_t B, int64_t step, int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t n_in = net->sizes[l], n_outl = net->sizes[l + 1];
    struct tile_step ts = {job->opt, 2 * l, step, n_in, net->W[l]};
    struct pynn_gemm_args g = {1, 0, n_outl, n_in, B, 1.0f, delta, n_outl, a_prev, n_in,
                               0.0f, job->dW, n_in, NULL, -1, NULL, NULL};
    if (B <= PYNN_KC) {
        g.tile_fn = step_tile;
        g.tile_ctx = &ts;
    }
    pynn_gemm_part(&g, tid, nt);
    int64_t c0, c1;
    pynn_share(n_outl, 16, tid, nt, &c0, &c1);
    if (c1 > c0) {
        for (int64_t j = c0; j < c1; j++) job->db[j] = 0.0f;
        for (int64_t r = 0; r < B; r++) {
            const float *d_r = delta + r * n_outl;
            for (int64_t j = c0; j < c1; j++) job->db[j] += d_r[j];
        }
    }
    if (c1 > c0)
        net_step_block(job->opt, 2 * l + 1, step, net->b[l], n_outl, 0, c0, 1, c1 - c0,
                       job->db + c0, n_outl);
    if (g.tile_fn == NULL) {
        pynn_barrier(nt);   /* dW complete (the split of its columns is not ours to know) */
        pynn_share(n_in, 16, tid, nt, &c0, &c1);
        if (c1 > c0)
            net_step_block(job->opt, 2 * l, step, net->W[l], n_in, 0, c0, n_outl, c1 - c0,
                           job->dW + c0, n_in);
    }
}

/* one batch of B rows: forward, loss, backward, update. Returns the batch's loss (all threads).
 * A batch whose loss is not finite leaves the weights and the optimiser as they were; the
 * optimiser's step count advances only when the weights do. */
static double train_step(struct train_job *job, const float *Xb, const float *Tb, int64_t B,
                         int tid, int nt) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers;
    forward_layers(job, Xb, B, tid, nt);
    double loss = loss_and_delta(job, Xb, Tb, B, tid, nt);
    if (!isfinite(loss)) return loss;
    int64_t step = job->opt->step + 1;  /* thread 0 stores it once every thread has read it */
    for (int64_t l = L - 1; l >= 0; l--) {      /* backward, last layer first */
        const float *delta = job->delta[l % 2];
        const float *a_prev = l > 0 ? job->acts[l - 1] : Xb;
        if (l > 0) backward_delta(job, l, delta, a_prev, B, tid, nt);
        step_layer(job, l, delta, a_prev, B, step, tid, nt);
        pynn_barrier(nt);   /* weights and the next delta are complete */
    }
    if (tid == 0) job->opt->step = step;
    return loss;
}

/* this thread's share of batch rows [first, first + B), through the permutation if there is
 * one, into the gathered X (as floats) and T; then the barrier after which the whole batch is
 * there */
static void gather_batch(struct train_job *job, int64_t first, int64_t B, int tid, int nt) {
    int64_t n_in = job->net->sizes[0], n_out = job->net->sizes[job->net->n_layers];
    int64_t r0, r1;
    pynn_share(B, 1, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t src = job->order != NULL ? job->order[first + r] : first + r;
        net_input_row(&job->in, src, n_in, job->Xb + r * n_in);
        memcpy(job->Tb + r * n_out, job->T + src * n_out, (size_t)n_out * sizeof(float));
    }
    pynn_barrier(nt);
}

static void train_job(int tid, int nt, void *arg) {
    struct train_job *job = arg;
    const struct pynn_net *net = job->net;
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers];
    int64_t n_batches = (job->n_order + job->batch - 1) / job->batch;
    for (int64_t k = 0; k < n_batches; k++) {
        int64_t first = k * job->batch;
        int64_t B = job->n_order - first < job->batch ? job->n_order - first : job->batch;
        const float *Xb, *Tb;
        if (job->order != NULL || job->in.X_u8 != NULL) {     /* rows to gather or to scale */
            gather_batch(job, first, B, tid, nt);
            Xb = job->Xb;
            Tb = job->Tb;
        } else {                                              /* rows in turn, read in place */
            Xb = job->in.X + first * n_in;
            Tb = job->T + first * n_out;
        }
        double loss = train_step(job, Xb, Tb, B, tid, nt);
        if (tid == 0) {
            job->losses[k] = loss;
            job->done = k + 1;
        }
        if (!isfinite(loss)) break;         /* every thread sees the same loss */
    }
}

/* the optimiser's kind, settings and state arrays, for a network of L layers */
static int check_optimizer(const struct pynn_optimizer *opt, int64_t L) {
    if (opt->kind != PYNN_OPT_SGD && opt->kind != PYNN_OPT_MOMENTUM && opt->kind != PYNN_OPT_ADAM)
        return PYNN_ERR_ARG;
    if (!(isfinite(opt->lr) && opt->lr >= 0.0f && isfinite(opt->weight_decay)) || opt->step < 0)
        return PYNN_ERR_ARG;
    if (opt->kind == PYNN_OPT_MOMENTUM && !(opt->momentum >= 0.0f && opt->momentum < 1.0f))
        return PYNN_ERR_ARG;
    if (opt->kind == PYNN_OPT_ADAM && !(opt->beta1 >= 0.0f && opt->beta1 < 1.0f && opt->beta2 >= 0.0f &&
                                        opt->beta2 < 1.0f && opt->eps > 0.0f))
        return PYNN_ERR_ARG;
    for (int64_t p = 0; p < 2 * L && opt->kind != PYNN_OPT_SGD; p++) {
        if (opt->state1 == NULL || opt->state1[p] == NULL) return PYNN_ERR_NULL;
        if (opt->kind == PYNN_OPT_ADAM && (opt->state2 == NULL || opt->state2[p] == NULL))
            return PYNN_ERR_NULL;
    }
    return PYNN_OK;
}

/* the general path: every batch in one pool job */
static void general_train(struct train_job *job, float *work, int64_t *batches_done) {
    carve_workspace(job, work);
    double flops = 3.0 * net_forward_flops(job->net, job->batch);
    unsigned fp = pynn_flush_denormals();
    int nt = pynn_threads_for(flops);
    if (nt <= 1) train_job(0, 1, job);
    else pynn_parallel(nt, train_job, job);
    pynn_restore_denormals(fp);
    *batches_done = job->done;
}

int pynn_net_train(const struct pynn_net *net, struct pynn_optimizer *opt, const float *X,
                   const uint8_t *X_u8, float scale, const float *T, int64_t n,
                   const int64_t *order, int64_t n_order, int64_t batch, double *losses,
                   int64_t *batches_done, float *work, int64_t work_len) {
    if (n < 0 || n_order < 0 || batch < 1 || work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(pynn_net_check(net));
    if (opt == NULL || batches_done == NULL) return PYNN_ERR_NULL;
    *batches_done = 0;
    if (n_order == 0) return PYNN_OK;
    if ((X == NULL) == (X_u8 == NULL) || T == NULL || work == NULL || losses == NULL)
        return PYNN_ERR_NULL;
    if (order == NULL && n_order > n) return PYNN_ERR_SIZE;
    if (order != NULL)
        for (int64_t i = 0; i < n_order; i++) if (order[i] < 0 || order[i] >= n) return PYNN_ERR_ARG;
    PYNN_TRY(check_optimizer(opt, net->n_layers));
    if (batch > n_order) batch = n_order;
    int64_t need = pynn_net_workspace(net, batch, 1);
    if (need < 0 || work_len < need) return PYNN_ERR_SIZE;
    struct net_input in = {X, X_u8, scale};
    if (pynn_net_small_path(net, batch)) {
        unsigned fp = pynn_flush_denormals();
        pynn_net_small_train(net, opt, &in, T, order, n_order, batch, losses, batches_done, work);
        pynn_restore_denormals(fp);
        return PYNN_OK;
    }
    struct train_job job;
    memset(&job, 0, sizeof(job));
    job.net = net; job.opt = opt; job.in = in; job.T = T; job.n = n;
    job.order = order; job.n_order = n_order; job.batch = batch; job.losses = losses;
    general_train(&job, work, batches_done);
    return PYNN_OK;
}

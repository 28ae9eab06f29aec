/*
 * net_small.c: small batches through one hidden layer, the paper's way of training.
 *
 * A batch of one digit (or ten) is too small a product to share out block by block: the
 * barriers between the general step's products (net_train.c) would cost more than their
 * arithmetic. So for a network with one hidden layer, each thread owns a fixed run of hidden
 * units for the whole call: their rows of W0, their columns of W1, and the optimiser's state of
 * both, which stay in that core's cache from one step to the next. A step then needs one
 * meeting of the threads:
 *   1. a0[:, own] = f(x W0[own]^T + b0[own])
 *   2. P_k = a0[:, k] W1[:, k]^T for each own block k of SMALL_BLOCK units (thread 0, owner of
 *      block 0, adds b1 to P_0)
 *   3. barrier
 *   4. every thread alike: z = P_0 + P_1 + ... in block order, then the loss and delta
 *   5. delta0[:, own] = f'(delta W1[:, own]); W1[:, own] and W0[own] step, b1 by thread 0
 * The blocks and the order of the partial sums depend on the widths alone, so a run gives the
 * same bits on any number of threads. P is kept for even and odd steps, since a thread may
 * begin the next step while another still reads this one's sums. Deeper networks and larger
 * batches are not served here.
 */
#include <math.h>
#include <string.h>
#include "net.h"

#define SMALL_B 16          /* batches of up to this many rows take the small path */
#define SMALL_OUT 64        /* ... when the output layer is at most this wide */
#define SMALL_BLOCK 64      /* hidden units a block: what a thread owns, and one partial sum */
#define SMALL_THREADS 8
#define SMALL_CHUNK 256     /* bias gradients made at a time, on the stack, before they step */

int pynn_net_small_path(const struct pynn_net *net, int64_t batch) {
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
int64_t pynn_net_small_workspace(const struct pynn_net *net, int64_t batch) {
    if (net->n_layers != 2) return 0;
    if (batch > SMALL_B) batch = SMALL_B;
    return 2 * batch * small_ld(net->sizes[1]) + 2 * small_blocks(net) * small_ld(batch * net->sizes[2]) +
           3 * batch * net->sizes[0] + 64;
}

struct small_job {
    const struct pynn_net *net;
    struct pynn_optimizer *opt;
    struct net_input in;
    const float *T;
    const int64_t *order;
    int64_t n_order, batch;
    double *losses;
    int64_t done;
    float *a0, *delta0, *P, *Xg;
};

/* what one thread owns for the whole call: blocks [k0, k1), hidden units [u0, u1) */
struct small_own {
    int64_t k0, k1, u0, u1, nu;
    int64_t ld, pstride;    /* row stride of a0 and delta0; stride of the partial sums' blocks */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* a request that the n bytes at p come into cache, a line at a time */
static void prefetch_bytes(const void *p, int64_t n) {
    for (int64_t byte = 0; byte < n; byte += 64)
        __builtin_prefetch((const char *)p + byte, 0, 2);
}

/* the same for row `src` of the input (n values), as it is stored */
static void prefetch_input_row(const struct net_input *in, int64_t src, int64_t n) {
    if (in->X_u8 != NULL) prefetch_bytes(in->X_u8 + src * n, n);
    else prefetch_bytes(in->X + src * n, n * (int64_t)sizeof(float));
}

/* the input row of the batch row `i` of the run (through the permutation, if there is one) */
static int64_t source_row(const struct small_job *job, int64_t i) {
    return job->order != NULL ? job->order[i] : i;
}

/* this thread's share of batch k's rows, copied (as floats) into slot k % 3 of the gathered
 * rows, and a request for its share of batch k + 1's rows, so that they are in cache when
 * their turn comes (rows drawn at random from a data set are likely in memory only). Batch k
 * is copied during step k - 1, before its barrier; step k reads slot k % 3 until it is done,
 * and no thread can be more than one step ahead of another, so the copy for k + 1 lands in
 * the slot nobody is reading. */
static void small_gather(const struct small_job *job, int64_t k, int tid, int nt) {
    int64_t n0 = job->net->sizes[0], first = k * job->batch;
    int64_t B = min64(job->batch, job->n_order - first), r0, r1;
    pynn_share(B, 1, tid, nt, &r0, &r1);
    float *slot = job->Xg + (k % 3) * job->batch * n0;
    for (int64_t r = r0; r < r1; r++)
        net_input_row(&job->in, source_row(job, first + r), n0, slot + r * n0);
    int64_t next = first + job->batch, n_next = min64(job->batch, job->n_order - next);
    pynn_share(n_next > 0 ? n_next : 0, 1, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) prefetch_input_row(&job->in, source_row(job, next + r), n0);
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

/* 1. own hidden units, six rows of W0 at a time against every row of the batch, then bias and
 * activation */
static void hidden_forward(const struct small_job *job, const struct small_own *own,
                           const float *Xb, int64_t B) {
    const struct pynn_net *net = job->net;
    const struct pynn_kernels *kern = pynn_kernels();
    int64_t n0 = net->sizes[0], u0 = own->u0, u1 = own->u1, nu = own->nu, ld = own->ld;
    const float *W0 = net->W[0], *b0 = net->b[0];
    float *a0 = job->a0;
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
}

/* 2. the output layer's partial sums over own blocks into P (block 0 carries b1) */
static void output_partials(const struct small_job *job, const struct small_own *own,
                            float *P, int64_t B) {
    const struct pynn_net *net = job->net;
    const struct pynn_kernels *kern = pynn_kernels();
    int64_t H = net->sizes[1], nL = net->sizes[2], ld = own->ld, pstride = own->pstride;
    const float *W1 = net->W[1], *b1 = net->b[1], *a0 = job->a0;
    for (int64_t kb = own->k0; kb < own->k1; kb++) {
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
}

/* 4. the output z (B, nL) as the partial sums in block order, its loss and delta, the same in
 * every thread; returns the batch's loss */
static double output_loss(const struct small_job *job, const struct small_own *own,
                          const float *P, const float *Xb, const float *Tg, float *z,
                          float *delta, double *row_loss, int64_t B) {
    const struct pynn_net *net = job->net;
    int64_t nL = net->sizes[2], nb = small_blocks(net), pstride = own->pstride;
    for (int64_t i = 0; i < B * nL; i++) {
        float sum = P[i];
        for (int64_t kb = 1; kb < nb; kb++) sum += P[kb * pstride + i];
        z[i] = sum;
    }
    if (net->loss == PYNN_LOSS_QUADRATIC && net->output != PYNN_LINEAR)
        net_output_rows(net->output, z, 0, B, nL);
    pynn_net_loss_delta_rows(net, z, Tg, delta, row_loss, 0, B, B, Xb);
    double loss = 0.0;
    for (int64_t r = 0; r < B; r++) loss += row_loss[r];
    return loss / (double)B;
}

/* 5a. back through W1 to own hidden units (W1 as it was before this step) */
static void hidden_backward(const struct small_job *job, const struct small_own *own,
                            const float *delta, int64_t B) {
    const struct pynn_net *net = job->net;
    const struct pynn_kernels *kern = pynn_kernels();
    int64_t H = net->sizes[1], nL = net->sizes[2], u0 = own->u0, nu = own->nu, ld = own->ld;
    const float *W1 = net->W[1];
    for (int64_t r = 0; r < B && nu > 0; r++) {
        float *d = job->delta0 + r * ld + u0;
        if (kern->gemvkernel)
            kern->gemvkernel(nL, delta + r * nL, 1, W1 + u0, H, d, nu, 1.0f, 0.0f);
        else
            for (int64_t j = 0; j < nu; j++) {
                float sum = 0.0f;
                for (int64_t o = 0; o < nL; o++) sum += delta[r * nL + o] * W1[o * H + u0 + j];
                d[j] = sum;
            }
        pynn_activation_backward(net->hidden, d, job->a0 + r * ld + u0, d, 1, nu);
    }
}

/* 5b. own columns of W1, rows of W0, and own biases step, four rows of W at a time; b1 by
 * thread 0 */
static void step_own(const struct small_job *job, const struct small_own *own,
                     const float *delta, const float *Xb, int64_t B, int64_t step, int tid) {
    const struct pynn_net *net = job->net;
    const struct pynn_optimizer *opt = job->opt;
    int64_t n0 = net->sizes[0], H = net->sizes[1], nL = net->sizes[2];
    int64_t u0 = own->u0, u1 = own->u1, nu = own->nu, ld = own->ld;
    float *W0 = net->W[0], *b0 = net->b[0], *W1 = net->W[1], *b1 = net->b[1];
    const float *a0 = job->a0, *delta0 = job->delta0;
    float g[SMALL_CHUNK];
    for (int64_t o = 0; o < nL && nu > 0; o += PYNN_ROWGRAD_M)
        small_gradstep(opt, 2, step, B, (int)min64(PYNN_ROWGRAD_M, nL - o), delta + o, nL,
                       a0 + u0, ld, W1, H, o, u0, nu);
    if (tid == 0) {
        for (int64_t o = 0; o < nL; o++) {
            g[o] = 0.0f;
            for (int64_t r = 0; r < B; r++) g[o] += delta[r * nL + o];
        }
        net_step_block(opt, 3, step, b1, nL, 0, 0, 1, nL, g, nL);
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
        net_step_block(opt, 1, step, b0, H, 0, c, 1, len, g, len);
    }
}

static void small_job(int tid, int nt, void *arg) {
    struct small_job *job = arg;
    const struct pynn_net *net = job->net;
    int64_t n0 = net->sizes[0], H = net->sizes[1], nL = net->sizes[2], nb = small_blocks(net);
    struct small_own own;
    pynn_share(nb, 1, tid, nt, &own.k0, &own.k1);
    own.u0 = own.k0 * SMALL_BLOCK;
    own.u1 = min64(H, own.k1 * SMALL_BLOCK);
    own.nu = own.u1 - own.u0;
    own.ld = small_ld(H);
    own.pstride = small_ld(job->batch * nL);     /* see small_ld */
    float z[SMALL_B * SMALL_OUT], delta[SMALL_B * SMALL_OUT], Tg[SMALL_B * SMALL_OUT];
    double row_loss[SMALL_B];
    int64_t step = job->opt->step;   /* read before any thread passes the first barrier */
    int64_t n_batches = (job->n_order + job->batch - 1) / job->batch;
    /* shuffled batches of several rows, and every batch of uint8 rows (to be scaled), are
     * gathered by all threads together, a step ahead; one float row, or an unshuffled run of
     * them, is read where it lies */
    int gather = (job->order != NULL && job->batch > 1) || job->in.X_u8 != NULL;
    if (gather) {
        small_gather(job, 0, tid, nt);
        pynn_barrier(nt);
    }
    for (int64_t k = 0; k < n_batches; k++) {
        int64_t first = k * job->batch, B = min64(job->batch, job->n_order - first);
        const float *Xb = gather ? job->Xg + (k % 3) * job->batch * n0
                                 : job->in.X + (job->order ? job->order[first] : first) * n0;
        for (int64_t r = 0; r < B; r++) {
            int64_t src = job->order ? job->order[first + r] : first + r;
            memcpy(Tg + r * nL, job->T + src * nL, (size_t)nL * sizeof(float));
        }
        if (!gather && job->order && first + 1 < job->n_order)     /* the next row, to cache */
            prefetch_input_row(&job->in, job->order[first + 1], n0);
        float *P = job->P + (k % 2) * nb * own.pstride;
        hidden_forward(job, &own, Xb, B);
        output_partials(job, &own, P, B);
        if (gather && k + 1 < n_batches) small_gather(job, k + 1, tid, nt);
        pynn_barrier(nt);
        double loss = output_loss(job, &own, P, Xb, Tg, z, delta, row_loss, B);
        if (tid == 0) {
            job->losses[k] = loss;
            job->done = k + 1;
        }
        if (!isfinite(loss)) break;     /* no step, as on the general path */
        step++;
        hidden_backward(job, &own, delta, B);
        step_own(job, &own, delta, Xb, B, step, tid);
    }
    if (tid == 0) job->opt->step = step;
}

void pynn_net_small_train(const struct pynn_net *net, struct pynn_optimizer *opt,
                          const struct net_input *in, const float *T, const int64_t *order,
                          int64_t n_order, int64_t batch, double *losses, int64_t *batches_done,
                          float *work) {
    struct small_job job = {net, opt, *in, T, order, n_order, batch, losses, 0, NULL, NULL, NULL,
                            NULL};
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
    int nt = pynn_threads_for_steps(3.0 * net_forward_flops(net, batch), steps);
    if (nt > nb) nt = (int)nb;
    if (nt > SMALL_THREADS) nt = SMALL_THREADS;
    if (nt <= 1) small_job(0, 1, &job);
    else pynn_parallel(nt, small_job, &job);
    *batches_done = job.done;
}

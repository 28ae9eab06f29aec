/*
 * net_forward.c: the whole network over a batch, for inference: each layer's product with its
 * bias and activation in the GEMM's epilogue, the layers in turn through two ping-pong buffers,
 * a large input in chunks that fit the workspace (an input of uint8 values scaled a chunk at a
 * time into the buffer the first layer reads). One pool job runs every layer of every chunk;
 * its threads share each product and meet at a barrier between layers. No training here
 * (net_train.c), and no shortcut for a single digit (net_one.c).
 */
#include "net.h"

/* the forward's two ping-pong buffers: floats per row of the workspace */
static int64_t forward_floats_per_row(const struct pynn_net *net) { return 2 * net_widest(net); }

int64_t pynn_net_forward_workspace(const struct pynn_net *net, int64_t batch) {
    return batch * forward_floats_per_row(net);
}

struct forward_job {
    const struct pynn_net *net;
    struct net_input in;
    float *out, *work;
    int64_t n, chunk;
};

/* rows [start, start + B) of a uint8 input scaled into the second ping-pong buffer (which the
 * first layer only reads, and the second layer writes once every thread is past the first),
 * this thread's share of them; returns the buffer once all threads have done theirs */
static const float *scale_chunk(const struct forward_job *job, int64_t start, int64_t B,
                                int tid, int nt) {
    int64_t n_in = job->net->sizes[0], r0, r1;
    float *buf = job->work + job->chunk * net_widest(job->net);
    pynn_share(B, 1, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) net_input_row(&job->in, start + r, n_in, buf + r * n_in);
    pynn_barrier(nt);
    return buf;
}

/* rows [start, start + B) of the input through every layer into out: thread tid's share */
static void forward_chunk(const struct forward_job *job, int64_t start, int64_t B, int tid,
                          int nt) {
    const struct pynn_net *net = job->net;
    int64_t L = net->n_layers, w = net_widest(net);
    const float *a = job->in.X_u8 != NULL ? scale_chunk(job, start, B, tid, nt)
                                          : job->in.X + start * net->sizes[0];
    for (int64_t l = 0; l < L; l++) {
        int last = l == L - 1;
        float *z = last ? job->out + start * net->sizes[L] : job->work + (l % 2) * job->chunk * w;
        int act = !last ? net->hidden : net->output == PYNN_SOFTMAX ? -1 : net->output;
        struct pynn_gemm_args g = net_layer_forward(net, l, a, z, B, act);
        pynn_gemm_part(&g, tid, nt);
        pynn_barrier(nt);
        a = z;
    }
    if (net->output == PYNN_SOFTMAX) {
        int64_t r0, r1;
        pynn_share(B, 1, tid, nt, &r0, &r1);
        net_output_rows(PYNN_SOFTMAX, job->out + start * net->sizes[L], r0, r1, net->sizes[L]);
        pynn_barrier(nt);
    }
}

static void forward_job(int tid, int nt, void *arg) {
    struct forward_job *job = arg;
    for (int64_t start = 0; start < job->n; start += job->chunk) {
        int64_t B = job->n - start < job->chunk ? job->n - start : job->chunk;
        forward_chunk(job, start, B, tid, nt);
    }
}

int pynn_net_forward(const struct pynn_net *net, const float *X, const uint8_t *X_u8,
                     float scale, int64_t n, float *out, float *work, int64_t work_len) {
    if (n < 0 || work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(pynn_net_check(net));
    if (n == 0) return PYNN_OK;
    if ((X == NULL) == (X_u8 == NULL) || out == NULL || work == NULL) return PYNN_ERR_NULL;
    int64_t per_row = forward_floats_per_row(net);
    int64_t chunk = work_len / per_row;
    if (chunk < 1) return PYNN_ERR_SIZE;
    if (chunk > n) chunk = n;
    struct forward_job job = {net, {X, X_u8, scale}, out, work, n, chunk};
    unsigned fp = pynn_flush_denormals();
    int nt = pynn_threads_for(net_forward_flops(net, chunk));
    if (nt <= 1) forward_job(0, 1, &job);   /* a digit at a time: no pool, no wake-up */
    else pynn_parallel(nt, forward_job, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/*
 * net_one.c: one sample through the network, the pad's digit (pynn_net_forward_one).
 *
 * The batch path's work without its machinery: no chunking, no GEMM driver. Each layer is dot
 * products of the input with W's rows, six rows at a time through the dot kernel (each output a
 * sum over n_in, read where W lies), then bias and activation on the n_out results while they
 * are in L1. The same kernel and formulas as the batch path (net_forward.c), so a row gets the
 * same bits either way.
 * A lone call runs on the caller's thread: a digit's few hundred thousand flops cost less than
 * waking a sleeping thread. Calls that come back to back (a stream of digits) share each layer's
 * rows among the threads, in parts that each thread claims in turn (the caller takes the worker's
 * part too when the worker is slow to come), so that each core, as a rule, keeps the same part
 * of the weights in its own cache.
 * A drawn digit is mostly blank paper: about a fifth of MNIST's pixels hold ink, in about 58%
 * of the blocks of 16. The first layer reads W over those blocks only (pynn_dotblocks_fn),
 * which at 784-128-10 is most of the call: the weights come from L2 at its bandwidth, a cache
 * line a block.
 */
#include <string.h>
#include "net.h"

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
    int64_t j0, j1;
    pynn_share(n_out, PYNN_DOT_NR, tid, nt, &j0, &j1);
    if (j0 >= j1) return;
    const float *W = net->W[l], *b = net->b[l], *a = job->a;
    float *z = job->z;
    if (job->blk != NULL)
        kern->dotblocks(n_in, a, job->blk, job->nblk, W + j0 * n_in, n_in, z + j0, (int)(j1 - j0));
    else
        for (int64_t j = j0; j < j1; j += PYNN_DOT_NR) {
            int n = (int)(j1 - j < PYNN_DOT_NR ? j1 - j : PYNN_DOT_NR);
            kern->dotkernel(n_in, a, n_in, W + j * n_in, n_in, z + j, n_out, 1, n, 1.0f, 0.0f);
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

/* layer l from a into z, on this thread alone or shared among the awake pool (stream) */
static void one_layer(const struct pynn_net *net, int64_t l, const float *a, float *z,
                      const int32_t *blk, int nblk, int stream) {
    struct one_job job = {net, l, a, z, blk, nblk};
    /* a layer too small to share (the output layer, typically) stays on this thread */
    double n_read = blk != NULL ? (double)nblk * PYNN_DOT_BLOCK : (double)net->sizes[l];
    int nt = stream ? pynn_threads_for_reads(4.0 * n_read * net->sizes[l + 1]) : 1;
    if (nt > 1) pynn_parallel_parts(nt, nt, one_layer_part, &job);
    else one_layer_part(0, 1, &job);
}

int pynn_net_forward_one(const struct pynn_net *net, const float *x, const uint8_t *x_u8,
                         float scale, float *out, float *work, int64_t work_len) {
    if (work_len < 0) return PYNN_ERR_SIZE;
    PYNN_TRY(pynn_net_check(net));
    if ((x == NULL) == (x_u8 == NULL) || out == NULL || work == NULL) return PYNN_ERR_NULL;
    int64_t w = net_widest(net);
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
        one_layer(net, l, a, z, sparse ? blk : NULL, nblk, stream);
        a = z;
    }
    if (net->output == PYNN_SOFTMAX) net_output_rows(PYNN_SOFTMAX, out, 0, 1, net->sizes[net->n_layers]);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

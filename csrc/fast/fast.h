/*
 * fast.h: what the fast kernels share among themselves (not part of the API, which is pynn.h):
 * the SIMD kernel table chosen at run time, and the blocked GEMM driver that the fused network
 * step (net_train.c) calls from inside its own parallel region. The thread pool they run on is
 * runtime.h's.
 */
#ifndef PYNN_FAST_H
#define PYNN_FAST_H
#include <stdint.h>
#include "internal.h"
#include "runtime.h"

/* ---- micro-kernels (gemm_kernels.c) ----
 * Blocking constants of the packed ("BLIS") path. A micro-tile of C is mr x nr, each kernel
 * set's own (struct pynn_kernels: the tile that fills its registers); A is packed in slivers of
 * mr rows (for each k, mr consecutive floats), B is read as rows of nr floats that are ldb
 * apart (a packed sliver has ldb = nr; an unpacked (K,N) matrix its own row stride).
 * PYNN_MR_MAX and PYNN_NR_MAX bound every set's, for the buffers. */
#define PYNN_MR_MAX 8
#define PYNN_NR_MAX 48
#define PYNN_KC 256

/* c (m x n, row stride ldc; m <= mr, n <= nr) = alpha * a_packed (mr x K) * b (K x n) + beta * c;
 * beta == 0 never reads c. */
typedef void (*pynn_ukernel_fn)(int64_t K, const float *a, const float *b, int64_t ldb,
                                float *c, int64_t ldc, int m, int n, float alpha, float beta);
/* c (m x n) = alpha * A (m x K, row stride lda) * B (n x K, row stride ldb)^T + beta * c:
 * dot products of rows, for a product whose second operand is stored transposed (z = a W^T)
 * and is too big to pack every call. m <= 4, n <= 6. */
typedef void (*pynn_dotkernel_fn)(int64_t K, const float *A, int64_t lda, const float *B,
                                  int64_t ldb, float *c, int64_t ldc, int m, int n,
                                  float alpha, float beta);
#define PYNN_DOT_MR 4
#define PYNN_DOT_NR 6

/* the dot kernel for one row a whose values outside the listed blocks of 16 (blk[0..nblk),
 * ascending; block b is a[16b .. 16b+16) clipped to K) are all zero: c[j] (j < n) = the dot
 * product of a with B's row j, read over those blocks only. All of a layer's rows (or a
 * thread's part of them) in one call, so that the kernel can fetch the rows it comes to next
 * while it sums the ones it has. A zero value adds exactly
 * nothing to a finite sum, and the blocks keep their lanes and order, so the bits are the dot
 * kernel's (m = 1, alpha 1, beta 0) whenever B is finite where a is zero. A digit lights about
 * a fifth of its pixels, so its first layer reads about half of W's cache lines. */
typedef void (*pynn_dotblocks_fn)(int64_t K, const float *a, const int32_t *blk, int nblk,
                                  const float *B, int64_t ldb, float *c, int n);
#define PYNN_DOT_BLOCK 16

/* one optimiser step over a block of m rows by n parameters of w (row stride ldw) with
 * gradient g (row stride ldg); s1 is momentum's velocity or Adam's m, s2 Adam's v, laid out as
 * w (NULL when the kind has none): the formulas of ref/optim.c, whose functions the portable set
 * calls and the AVX-512 set runs 16 lanes at a time. A block at a time, because a gradient
 * tile of the GEMM steps as it comes out: a call a row would cost more than the row. */
typedef void (*pynn_stepkernel_fn)(const struct pynn_optimizer *opt, int64_t step, float *w,
                                   float *s1, float *s2, int64_t ldw, const float *g,
                                   int64_t ldg, int64_t m, int64_t n);

/* one row of C: c (n) = alpha * sum_k a[k * a_step] * B[k*ldb .. k*ldb + n] + beta * c, B read
 * row by row where it lies: a batch of one times a row-major matrix (dX = delta W). NULL in a
 * set without one (the packed path serves). Each element the same chain of operations whatever
 * n is (c = beta c, then c += (alpha a_k) B[k, j] for k in order), so a row cut among threads
 * at any column gives the bits of the whole row. */
typedef void (*pynn_gemvkernel_fn)(int64_t K, const float *a, int64_t a_step, const float *B,
                                   int64_t ldb, float *c, int64_t n, float alpha, float beta);

/* the same for a whole row of at most PYNN_GEMV4_N columns, faster but summed in another order:
 * only for a row no thread split cuts (NULL in a set without one: gemvkernel serves) */
typedef pynn_gemvkernel_fn pynn_gemvnarrow_fn;

/* four rows of C at most 16 wide (the output layer's ten), i < 4: c[i * ldc ..] (n) = alpha *
 * sum_k A[i * lda + k] * B[k*ldb .. k*ldb + n] + beta * c[i * ldc ..], each row of B read once
 * for the four. NULL in a set without one (the gemv kernel serves, row by row). Its sums are
 * not gemvkernel's either: rows go to it in fours counted from row 0 of C, and threads split
 * such a C's rows in whole fours, so that a row takes the same kernel on any thread count. */
#define PYNN_GEMV4_N 16
#define PYNN_GEMV4_M 4
typedef void (*pynn_gemv4kernel_fn)(int64_t K, const float *A, int64_t lda, const float *B,
                                    int64_t ldb, float *c, int64_t ldc, int64_t n, float alpha,
                                    float beta);

/* up to four rows of a small batch's gradient d^T A: for i < m (m <= 4), g[i * ldg ..] (n) =
 * sum over r < B, in order, of d[r * d_step + i] * A[r * lda .. r * lda + n) (net_small.c's
 * steps: four rows of W at a time, so that each load of A serves four of them); the building
 * block of the gradstep kernels */
#define PYNN_ROWGRAD_M 4
typedef void (*pynn_rowgrad_fn)(int B, int m, const float *d, int64_t d_step, const float *A,
                                int64_t lda, float *g, int64_t ldg, int64_t n);

/* rows [0, m) of W (row stride ldw) and its optimiser state take the step with the gradient
 * a rowgrad gives for them (m <= 4, n columns): the gradient is never stored where the set can
 * keep it in registers. s1, s2 as for the step kernel (NULL when the kind has none). */
typedef void (*pynn_gradstep_fn)(const struct pynn_optimizer *opt, int64_t step, int B, int m,
                                 const float *d, int64_t d_step, const float *A, int64_t lda,
                                 float *w, float *s1, float *s2, int64_t ldw, int64_t n);

/* a convolution's forward tile read from the image itself, not from unfolded patches (an
 * implicit im2col), for a convolution of stride 1 and no padding whose output rows are whole
 * vectors of 8: c (m x n, n <= nr) = alpha * a_packed (mr x K) * B + beta * c, where row k of B
 * is the n pixels tap k reads for n consecutive output positions, the runs of 8 at
 * x0 + off[k] and x1 + off[k] (off[k] = tap k's offset in the image; each run of 8 positions
 * lies in one output row, so it is 8 consecutive pixels); then + bias[r] on row r (bias NULL:
 * none) and, with relu, max(0, .) as pynn_relu_forward. The same sums, in the same order, as
 * the ukernel on the unfolded patches over C holding the bias, so the same bits. NULL in a
 * set without one. */
typedef void (*pynn_convkernel_fn)(int64_t K, const float *a, const float *x0, const float *x1,
                                   const int32_t *off, float *c, int64_t ldc, int m, int n,
                                   float alpha, float beta, const float *bias, int relu);

/* a tile of a convolution's weight gradient, transposed (taps x output channels), read from
 * the images: c (m x n; m <= mr rows, n <= nr columns) = alpha * sum over K positions p of
 * taps[r][pos[p]] * b[p * ldb .. + n] + beta * c, where taps[r] (r < m) points at the images
 * shifted by tap r's offset and pos[p] is position p's offset in them; b holds dout^T (a
 * position's output channels in a row). Each element sums its positions in order in one
 * chain. NULL in a set without one. */
typedef void (*pynn_dwkernel_fn)(int64_t K, const float *const *taps, const int32_t *pos,
                                 const float *b, int64_t ldb, float *c, int64_t ldc, int m,
                                 int n, float alpha, float beta);

/* the micro-kernel's tile added in place to runs of 8 floats (a convolution's dinp, folded
 * as it comes): for r < m, columns [0,8) of row r of alpha * a_packed (mr x K) * b (K x n,
 * row stride ldb) go to c0[r] and columns [8,16) to c1[r] (n is 8 or 16), each c += that
 * value rounded once, as the ukernel with beta 1 does. NULL in a set without one. */
typedef void (*pynn_foldkernel_fn)(int64_t K, const float *a, const float *b, int64_t ldb,
                                   float *const *c0, float *const *c1, int m, int n);

struct pynn_kernels {
    const char *name;
    pynn_ukernel_fn ukernel;
    int mr, nr;                 /* the micro-kernel's tile */
    pynn_dotkernel_fn dotkernel;
    pynn_stepkernel_fn stepkernel;
    pynn_gemvkernel_fn gemvkernel;
    pynn_gradstep_fn gradstep;
    pynn_dotblocks_fn dotblocks;
    pynn_gemv4kernel_fn gemv4kernel;
    pynn_gemvnarrow_fn gemvnarrow;
    pynn_convkernel_fn convkernel;
    pynn_dwkernel_fn dwkernel;
    pynn_foldkernel_fn foldkernel;
    /* the set the convolution runs on (conv.c): this one, or for AVX-512, the AVX2 set, whose
     * image-reading kernels (conv, dw, fold) the AVX-512 set has no counterpart of */
    const struct pynn_kernels *conv;
};
const struct pynn_kernels *pynn_kernels(void);

/* ---- the blocked GEMM driver (gemm_fast.c) ----
 * The part of C = alpha op(A) op(B) + beta C that thread tid of nthreads owns, computed with
 * that thread's packing buffers. Arguments are trusted (checked by the caller). Every thread of
 * the job must call it with the same arguments. */
struct pynn_gemm_args {
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha;
    const float *A; int64_t lda;
    const float *B; int64_t ldb;
    float beta;
    float *C; int64_t ldc;
    /* optional epilogue, applied once the whole sum is in C: C[i,j] += bias[j], then act */
    const float *bias;
    int act;                  /* enum pynn_activation, elementwise kinds only; -1: none */
    /* optional, packed path with K <= PYNN_KC only: C is never written; each finished tile
     * of alpha op(A) op(B) (m x n, row stride ld, at rows i0.., columns j0.. of C) goes to
     * tile_fn instead, e.g. a gradient tile straight into the optimiser's step */
    void (*tile_fn)(void *ctx, const float *tile, int64_t ld, int64_t i0, int64_t j0,
                    int64_t m, int64_t n);
    void *tile_ctx;
};
void pynn_gemm_part(const struct pynn_gemm_args *g, int tid, int nthreads);
/* whether pynn_gemm_part splits C's columns among the threads (in units of 16 off the dot
 * path; else its rows): a function of the shapes and thread count only, the same in every
 * thread */
int pynn_gemm_splits_columns(const struct pynn_gemm_args *g, int nthreads);
/* the block of C, rows [m0,m1) x columns [n0,n1), that pynn_gemm_part gives thread tid */
void pynn_gemm_region(const struct pynn_gemm_args *g, int tid, int nthreads, int64_t *m0,
                      int64_t *m1, int64_t *n0, int64_t *n1);

#endif

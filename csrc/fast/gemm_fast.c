/*
 * gemm_fast.c: the matrix product the network runs on. Same contract as pynn_gemm_ref in
 * csrc/ref/gemm.c, and tested against it on every edge of the blocking. Not the place to learn
 * what a matrix product is (ref/gemm.c is); this is how it runs fast on this machine.
 *
 * The packed path follows Goto and van de Geijn ("Anatomy of high-performance matrix
 * multiplication") as BLIS arranges it, written for row-major C (the roles of A and B are the
 * mirror image of BLIS's column-major ones):
 *   for each KC-deep slice of the sum:
 *     pack a block of op(A), up to MC_BIG rows, into slivers of mr rows      (stays in L3/L2)
 *     for each block of NC_L2 columns: pack op(B) into slivers of nr columns  (stays in L2)
 *       for each mr-row sliver of A (in L1), for each nr-column sliver of B (streamed from L2):
 *         the micro-kernel updates one mr x nr tile of C in registers
 * (mr x nr: the tile of the kernel set chosen at run time).
 * B that is already stored row by row and small against A's row count is read where it lies
 * (the backward's delta W and delta^T a_prev), skipping its copy.
 *
 * The dot path serves z = a W^T for batches of up to DOT_MAX_M rows: it reads W in place, row
 * by row, instead of transposing all of it into slivers for a product that uses it only a few
 * times. One or two rows of C times a row-major B (delta W for a batch of one), sums of one or
 * two products (delta^T a for a batch of one), and rows of C at most 16 wide take the gemv
 * kernel row by row.
 *
 * Threads split the columns of C (or its rows, when C is too narrow); each thread packs its own
 * blocks into its own thread-local buffers, so no lock or barrier is needed inside a product,
 * and a thread's share gives the same bits whatever the others do.
 */
#include <stdint.h>
#include "fast.h"

#define MC_BIG 1024         /* rows of A packed at once (1 MiB at KC = 256) */
#define NC_L2 240            /* columns of B packed at once (240 KiB at KC = 256), a multiple
                                of every set's nr */
#define DOT_MAX_M 256        /* the dot path's largest batch */
#define DOT_MAX_K 4096

/* per-thread packing buffers: static storage, no allocation in any call */
static __thread float pack_a_buf[MC_BIG * PYNN_KC + 16];
static __thread float pack_b_buf[PYNN_KC * NC_L2 + 16];
static __thread float tile_buf[PYNN_MR_MAX * PYNN_NR_MAX + 16];  /* a tile on its way to tile_fn */

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* op(A)[i0:i0+mc, p0:p0+kc] into slivers of mr rows: sliver s holds, for each k, the mr values
 * of column k (rows past mc are zeros, so the kernel needs no row mask on A) */
static void pack_a(const struct pynn_gemm_args *g, int mr, int64_t i0, int64_t mc, int64_t p0,
                   int64_t kc, float *dst) {
    for (int64_t ir = 0; ir < mc; ir += mr, dst += mr * kc) {
        int m = (int)min64(mr, mc - ir);
        if (!g->trans_a) {              /* A (M,K): row i is contiguous along k */
            for (int r = 0; r < m; r++) {
                const float *src = g->A + (i0 + ir + r) * g->lda + p0;
                for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = src[k];
            }
            for (int r = m; r < mr; r++)
                for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = 0.0f;
        } else {                        /* A stored (K,M): column k of op(A) is contiguous */
            for (int64_t k = 0; k < kc; k++) {
                const float *src = g->A + (p0 + k) * g->lda + i0 + ir;
                float *d = dst + k * mr;
                for (int r = 0; r < m; r++) d[r] = src[r];
                for (int r = m; r < mr; r++) d[r] = 0.0f;
            }
        }
    }
}

/* op(B)[p0:p0+kc, j0:j0+nc] into slivers of nr columns: for each k, nr consecutive values */
static void pack_b(const struct pynn_gemm_args *g, int nr, int64_t p0, int64_t kc, int64_t j0,
                   int64_t nc, float *dst) {
    for (int64_t jr = 0; jr < nc; jr += nr, dst += nr * kc) {
        int n = (int)min64(nr, nc - jr);
        if (!g->trans_b) {              /* B (K,N): row k is contiguous along j */
            for (int64_t k = 0; k < kc; k++) {
                const float *src = g->B + (p0 + k) * g->ldb + j0 + jr;
                float *d = dst + k * nr;
                for (int j = 0; j < n; j++) d[j] = src[j];
                for (int j = n; j < nr; j++) d[j] = 0.0f;
            }
        } else {                        /* B stored (N,K): column j of op(B) is contiguous */
            /* a transpose, in 16 x nr pieces: one cache line of each of the n rows in, then
             * 16 rows of the sliver out */
            const float *src = g->B + (j0 + jr) * g->ldb + p0;
            for (int64_t k0 = 0; k0 < kc; k0 += 16) {
                int kk = (int)min64(16, kc - k0);
                for (int k = 0; k < kk; k++) {
                    float *d = dst + (k0 + k) * nr;
                    for (int j = 0; j < n; j++) d[j] = src[j * g->ldb + k0 + k];
                    for (int j = n; j < nr; j++) d[j] = 0.0f;
                }
            }
        }
    }
}

/* bias and activation on a finished m x n tile of C while it is still in L1 */
static void epilogue(const struct pynn_gemm_args *g, float *c, int64_t m, int64_t n, int64_t j0) {
    if (g->bias == NULL && g->act < 0) return;
    for (int64_t r = 0; r < m; r++) {
        float *crow = c + r * g->ldc;
        if (g->bias != NULL) {
            const float *b = g->bias + j0;
            for (int64_t j = 0; j < n; j++) crow[j] += b[j];
        }
        switch (g->act) {
        case PYNN_RELU:    for (int64_t j = 0; j < n; j++) crow[j] = crow[j] < 0.0f ? 0.0f : crow[j]; break;
        case PYNN_SIGMOID: pynn_sigmoid_forward(crow, crow, n); break;
        case PYNN_TANH:    pynn_tanh_forward(crow, crow, n); break;
        default: break;   /* linear, none */
        }
    }
}

/* C[m0:m1, n0:n1] = beta * C (the sum over an empty K), then the epilogue */
static void scale_only(const struct pynn_gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t i = m0; i < m1; i++) {
        float *crow = g->C + i * g->ldc;
        for (int64_t j = n0; j < n1; j++) crow[j] = g->beta == 0.0f ? 0.0f : g->beta * crow[j];
        epilogue(g, crow + n0, 1, n1 - n0, n0);
    }
}

/* whether `rows` rows of B read in place, ldb floats apart, would crowd into too few sets of
 * a 32 KiB, 8-way L1 (64 sets of 64-byte lines): rows a power of two of lines apart share
 * sets (1024 floats apart, all of them one set), and a sliver of B would not stay in L1 */
static int crowds_l1(int64_t ldb, int64_t rows) {
    if (ldb % 16 != 0) return 0;         /* rows not on line boundaries spread over the sets */
    int64_t lines = ldb / 16, sets = 64;
    while (sets > 1 && lines % 2 == 0) lines /= 2, sets /= 2;
    return sets * 8 < rows;
}

static void packed_range(const struct pynn_gemm_args *g, const struct pynn_kernels *kern,
                         int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    float *abuf = align64(pack_a_buf), *bbuf = align64(pack_b_buf);
    const int mr = kern->mr, nr = kern->nr;
    const int64_t mc_max = MC_BIG / mr * mr;        /* whole slivers to a block */
    /* read B in place when it is row-major, not reused across many row blocks, and its rows
     * stay in L1 */
    int copy_b = g->trans_b || (m1 - m0) > 4 * PYNN_MR_MAX * 16 ||
                 crowds_l1(g->ldb, min64(g->K, PYNN_KC));
    for (int64_t pc = 0; pc < g->K; pc += PYNN_KC) {
        int64_t kc = min64(PYNN_KC, g->K - pc);
        float beta = pc == 0 ? g->beta : 1.0f;     /* later slices add to the first */
        int last = pc + kc == g->K;
        for (int64_t ic = m0; ic < m1; ic += mc_max) {
            int64_t mc = min64(mc_max, m1 - ic);
            pack_a(g, mr, ic, mc, pc, kc, abuf);
            for (int64_t jc = n0; jc < n1; jc += NC_L2) {
                int64_t nc = min64(NC_L2, n1 - jc);
                if (copy_b) pack_b(g, nr, pc, kc, jc, nc, bbuf);
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    int m = (int)min64(mr, mc - ir);
                    const float *a_s = abuf + ir * kc;
                    for (int64_t jr = 0; jr < nc; jr += nr) {
                        int n = (int)min64(nr, nc - jr);
                        const float *b_s = copy_b ? bbuf + jr * kc : g->B + pc * g->ldb + jc + jr;
                        int64_t ldb = copy_b ? nr : g->ldb;
                        if (g->tile_fn != NULL) {   /* one K slice: the tile is complete */
                            float *t = align64(tile_buf);
                            kern->ukernel(kc, a_s, b_s, ldb, t, nr, m, n, g->alpha, 0.0f);
                            g->tile_fn(g->tile_ctx, t, nr, ic + ir, jc + jr, m, n);
                            continue;
                        }
                        float *c_t = g->C + (ic + ir) * g->ldc + jc + jr;
                        kern->ukernel(kc, a_s, b_s, ldb, c_t, g->ldc, m, n, g->alpha, beta);
                        if (last) epilogue(g, c_t, m, n, jc + jr);
                    }
                }
            }
        }
    }
}

static void dot_range(const struct pynn_gemm_args *g, const struct pynn_kernels *kern,
                      int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t j = n0; j < n1; j += PYNN_DOT_NR) {
        int n = (int)min64(PYNN_DOT_NR, n1 - j);
        const float *wrows = g->B + j * g->ldb;
        for (int64_t i = m0; i < m1; i += PYNN_DOT_MR) {
            int m = (int)min64(PYNN_DOT_MR, m1 - i);
            float *c_t = g->C + i * g->ldc + j;
            kern->dotkernel(g->K, g->A + i * g->lda, g->lda, wrows, g->ldb, c_t, g->ldc, m, n,
                            g->alpha, g->beta);
        }
    }
    /* bias and activation in one pass over the whole block, long rows the compiler vectorises
     * (a pass per 4 x 6 tile costs more in loop overhead than the block's trip through L2) */
    epilogue(g, g->C + m0 * g->ldc + n0, m1 - m0, n1 - n0, n0);
}

/* the kernel for single rows of C: the narrow one for a whole row of at most 16 columns where
 * the set has one, else gemvkernel (pynn_matmul's one-row way takes the same) */
static pynn_gemvkernel_fn row_kernel(const struct pynn_kernels *kern, int narrow) {
    return narrow && kern->gemvnarrow != NULL ? kern->gemvnarrow : kern->gemvkernel;
}

/* rows of C one at a time, each a sum of B's rows weighted by a row of op(A); a narrow C four
 * rows at a time where the set has a kernel for it. The kernel a row takes depends on C's shape
 * and the row's index alone, never on the region a thread was given, so that the bits do not
 * depend on the thread count: the fours are counted from row 0 (a region of rows starts on a
 * four, pynn_gemm_region), and the narrow kernels take only whole rows. */
static void gemv_range(const struct pynn_gemm_args *g, const struct pynn_kernels *kern,
                       int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    int narrow = g->N <= PYNN_GEMV4_N && n1 - n0 == g->N;
    int64_t i = m0;
    if (kern->gemv4kernel != NULL && !g->trans_a && narrow)
        for (; i + PYNN_GEMV4_M <= m1; i += PYNN_GEMV4_M) {
            float *c = g->C + i * g->ldc + n0;
            kern->gemv4kernel(g->K, g->A + i * g->lda, g->lda, g->B + n0, g->ldb, c, g->ldc,
                              n1 - n0, g->alpha, g->beta);
            epilogue(g, c, PYNN_GEMV4_M, n1 - n0, n0);
        }
    pynn_gemvkernel_fn row = row_kernel(kern, narrow);
    for (; i < m1; i++) {
        const float *a = g->trans_a ? g->A + i : g->A + i * g->lda;
        float *c = g->C + i * g->ldc + n0;
        row(g->K, a, g->trans_a ? g->lda : 1, g->B + n0, g->ldb, c, n1 - n0, g->alpha, g->beta);
        epilogue(g, c, 1, n1 - n0, n0);
    }
}

static int use_dot(const struct pynn_gemm_args *g) {
    return g->trans_b && !g->trans_a && g->M <= DOT_MAX_M && g->K <= DOT_MAX_K && g->tile_fn == NULL;
}

/* one or two rows of C, a sum of one or two products, or rows of at most 16 columns (the
 * output layer's ten) with A stored row by row: row by row through the gemv kernel. Packing
 * A for so narrow a C costs as much as the product, and the kernel keeps such a row in
 * registers. */
static int use_gemv(const struct pynn_gemm_args *g) {
    return (g->M <= 2 || g->K <= 2 || (g->N <= PYNN_GEMV4_N && !g->trans_a)) && !g->trans_b &&
           g->tile_fn == NULL;
}

/* split the columns when every thread gets a couple of tiles, else the rows; columns go to
 * the threads in units of 16, or of 6 on the dot path. Off the dot path, a C whose rows give
 * each thread 16 slivers or more splits its rows: each thread then packs only its own rows of
 * A, where a column split has every thread pack all of it (a transposing copy, as dear as a
 * tenth of the product at 256x800x784), and the halves balance to a sliver, where columns
 * balance only to a 48-wide tile. On two threads dW at 10x800 ran 1.3x faster, and dX at
 * 256x800 1.1x. */
int pynn_gemm_splits_columns(const struct pynn_gemm_args *g, int nthreads) {
    int64_t col_unit = use_dot(g) ? PYNN_DOT_NR : 16;
    if (!use_dot(g) && g->M >= 16 * PYNN_MR_MAX * nthreads) return 0;
    /* an outer product (dW for a batch of one) goes row by row: whole rows to each thread,
     * which write whole lines of C; halves of rows ran slower than one thread at 128x784 */
    if (use_gemv(g) && g->K > 0 && g->M >= 2 * PYNN_MR_MAX * nthreads) return 0;
    return g->N >= 2 * col_unit * nthreads || g->M < 2 * PYNN_MR_MAX * nthreads;
}

void pynn_gemm_region(const struct pynn_gemm_args *g, int tid, int nthreads, int64_t *m0,
                      int64_t *m1, int64_t *n0, int64_t *n1) {
    int dot = use_dot(g);
    *m0 = 0, *m1 = g->M, *n0 = 0, *n1 = g->N;
    if (pynn_gemm_splits_columns(g, nthreads))
        pynn_share(g->N, dot ? PYNN_DOT_NR : 16, tid, nthreads, n0, n1);
    else
        pynn_share(g->M, dot ? PYNN_DOT_MR : use_gemv(g) ? PYNN_GEMV4_M : pynn_kernels()->mr,
                   tid, nthreads, m0, m1);
}

/* rows [m0,m1) x columns [n0,n1) of C, on the calling thread */
static void gemm_range(const struct pynn_gemm_args *g, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1) {
    const struct pynn_kernels *kern = pynn_kernels();
    if (m0 >= m1 || n0 >= n1) return;
    if (g->K == 0) scale_only(g, m0, m1, n0, n1);
    else if (use_dot(g)) dot_range(g, kern, m0, m1, n0, n1);
    else if (use_gemv(g) && kern->gemvkernel != NULL)
        gemv_range(g, kern, m0, m1, n0, n1);
    else packed_range(g, kern, m0, m1, n0, n1);
}

void pynn_gemm_part(const struct pynn_gemm_args *g, int tid, int nthreads) {
    int64_t m0, m1, n0, n1;
    pynn_gemm_region(g, tid, nthreads, &m0, &m1, &n0, &n1);
    gemm_range(g, m0, m1, n0, n1);
}

/* pynn_gemm's parts: the region split as pynn_gemm_region splits it, except that a split
 * between columns falls on a cache line of C (when every row of C starts at the same place in
 * a line): two threads writing the two ends of one line would pass it back and forth on every
 * row, which made a two-thread outer product slower than one thread */
static void gemm_job(int part, int nparts, void *arg) {
    const struct pynn_gemm_args *g = arg;
    int64_t m0, m1, n0, n1;
    pynn_gemm_region(g, part, nparts, &m0, &m1, &n0, &n1);
    if (pynn_gemm_splits_columns(g, nparts) && g->ldc % 16 == 0) {
        int64_t lead = (int64_t)(((uintptr_t)g->C / sizeof(float)) % 16);  /* floats into a line */
        if (n0 > 0) n0 = n0 - lead < 0 ? 0 : n0 - lead;
        if (n1 < g->N) n1 = n1 - lead < 0 ? 0 : n1 - lead;
    }
    gemm_range(g, m0, m1, n0, n1);
}

/* pynn_gemm's thread count. Its parts any free thread may claim: a worker whose core is busy
 * elsewhere costs nothing, the caller runs its part. A run of products called back to back
 * counts the pool awake; a product that one thread does even then never reads the clock. One
 * row of C times a row-major B reads each float of B once for one multiply-add, as fast as
 * the cache B comes from gives it, and is split only when B is large. */
static int gemm_threads(const struct pynn_gemm_args *g) {
    double flops = 2.0 * (double)g->M * (double)g->N * (double)g->K;
    int nt = pynn_threads_for_awake(flops);
    if (nt > 1 && !pynn_stream_call()) nt = pynn_threads_for(flops);
    if (nt > 1 && g->M == 1 && use_gemv(g)) {
        int streams = pynn_threads_for_streams(4.0 * (double)g->K * (double)g->N);
        nt = streams < nt ? streams : nt;
    }
    return nt;
}

int pynn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc) {
    PYNN_TRY(pynn_gemm_check(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc));
    if (M == 0 || N == 0) return PYNN_OK;
    /* one row of op(A) stored as a column with lda 1 lies in memory as the untransposed row:
     * read so, it takes the one-row paths, which read A along its rows */
    if (M == 1 && trans_a && lda == 1) trans_a = 0, lda = K;
    struct pynn_gemm_args g = {trans_a != 0, trans_b != 0, M, N, K, alpha, A, lda, B, ldb,
                               beta, C, ldc, NULL, -1, NULL, NULL};
    int nt = gemm_threads(&g);
    unsigned fp = pynn_flush_denormals();
    pynn_parallel_parts(nt, nt, gemm_job, &g);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}

/* A script's one row times a weight matrix, when one thread does it (gemm_threads), goes
 * straight to the row kernel pynn_gemm's driver would pick for it (gemv_range), the same bits:
 * at a layer's ten outputs the driver's way to that kernel is a seventh of the C call (skipping
 * only its split of the work, in pynn_gemm, saved nothing measurable). */
int pynn_matmul(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C) {
    if (M == 1 && N > 0 && K > 0 && pynn_threads_for_awake(2.0 * (double)N * (double)K) == 1) {
        const struct pynn_kernels *kern = pynn_kernels();
        if (kern->gemvkernel != NULL) {        /* else the driver packs: gemm_range */
            pynn_gemvkernel_fn row = row_kernel(kern, N <= PYNN_GEMV4_N);
            PYNN_TRY(pynn_gemm_check(0, 0, M, N, K, A, K, B, N, C, N));
            unsigned fp = pynn_flush_denormals();
            row(K, A, 1, B, N, C, N, 1.0f, 0.0f);
            pynn_restore_denormals(fp);
            return PYNN_OK;
        }
    }
    return pynn_gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
}

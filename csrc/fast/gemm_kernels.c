/*
 * gemm_kernels.c: the innermost loops of the fast GEMM, one set per SIMD width, chosen when the
 * library first runs (never at build time: no -march=native, each function carries its own
 * target attribute and only runs on a CPU that reports the feature).
 *
 * Two kinds of kernel:
 *  - the micro-kernel of the packed path (Goto/BLIS): an mr x nr tile of C held in registers,
 *    updated with one rank-1 product per k: mr broadcasts of packed A times nr floats of a row
 *    of B. Each set has the tile that fills its registers: on AVX-512, 8 x 48 = 24 accumulators
 *    of 16 floats, 3 loads of B and 8 broadcasts per 24 fused multiply-adds; on AVX2, 6 x 16 =
 *    12 accumulators of 8 floats (of 16 registers), 2 loads and 6 broadcasts per 12.
 *  - the dot kernel, for z = a W^T with the weights W (N,K) stored row by row: 4 rows of a
 *    against 6 rows of W, 24 accumulators running along K, summed across lanes at the end.
 *    It reads W where it lies, which for a batch of 64 is cheaper than packing (transposing) it.
 * Edges (m < MR, n < NR, K not a multiple of 16) use masked loads and stores, so nothing outside
 * the matrices is read or written. Only the inner loops live here: no blocking, no threads
 * (gemm_fast.c), no mathematics that the readable kernels in csrc/ref/ do not show first.
 */
#include <math.h>
#include <string.h>
#include "fast.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYNN_X86 1
#include <immintrin.h>
#endif

/* ---------------- portable C: the compiler vectorises for the baseline ISA ---------------- */
#define MR_GENERIC 8
#define NR_GENERIC 48

static void ukernel_generic(int64_t K, const float *a, const float *b, int64_t ldb,
                            float *c, int64_t ldc, int m, int n, float alpha, float beta) {
    float acc[MR_GENERIC][NR_GENERIC];
    memset(acc, 0, sizeof(acc));
    for (int64_t p = 0; p < K; p++) {
        const float *a_p = a + p * MR_GENERIC, *b_p = b + p * ldb;
        for (int r = 0; r < MR_GENERIC; r++)
            for (int j = 0; j < n; j++) acc[r][j] += a_p[r] * b_p[j];
    }
    for (int r = 0; r < m; r++) {
        float *crow = c + r * ldc;
        for (int j = 0; j < n; j++)
            crow[j] = alpha * acc[r][j] + (beta == 0.0f ? 0.0f : beta * crow[j]);
    }
}

static void dotkernel_generic(int64_t K, const float *A, int64_t lda, const float *B,
                              int64_t ldb, float *c, int64_t ldc, int m, int n,
                              float alpha, float beta) {
    for (int r = 0; r < m; r++) {
        const float *arow = A + r * lda;
        for (int j = 0; j < n; j++) {
            const float *brow = B + j * ldb;
            float s[8] = {0};   /* eight partial sums, so the compiler can vectorise */
            int64_t p = 0;
            for (; p + 8 <= K; p += 8)
                for (int l = 0; l < 8; l++) s[l] += arow[p + l] * brow[p + l];
            for (; p < K; p++) s[0] += arow[p] * brow[p];
            float dot = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
            float *cij = c + r * ldc + j;
            *cij = alpha * dot + (beta == 0.0f ? 0.0f : beta * *cij);
        }
    }
}

/* the optimiser's step: the reference functions of optim.c themselves */
static void stepkernel_generic(const struct pynn_optimizer *opt, int64_t step, float *w,
                               float *s1, float *s2, int64_t ldw, const float *g, int64_t ldg,
                               int64_t m, int64_t n) {
    for (int64_t i = 0; i < m; i++, w += ldw, g += ldg) {
        switch (opt->kind) {
        case PYNN_OPT_SGD:
            pynn_sgd_update(w, g, n, opt->lr, opt->weight_decay);
            break;
        case PYNN_OPT_MOMENTUM:
            pynn_momentum_update(w, s1 + i * ldw, g, n, opt->lr, opt->momentum, opt->weight_decay);
            break;
        default:
            pynn_adam_update(w, s1 + i * ldw, s2 + i * ldw, g, n, opt->lr, opt->beta1, opt->beta2,
                             opt->eps, opt->weight_decay, step);
            break;
        }
    }
}

/* a small batch's gradient rows, batch rows in order; inlined into each set so that the
 * compiler vectorises it for that set's ISA */
static inline __attribute__((always_inline)) void rowgrad_body(int B, int m, const float *d,
        int64_t d_step, const float *A, int64_t lda, float *g, int64_t ldg, int64_t n) {
    for (int i = 0; i < m; i++) {
        float *gi = g + i * ldg;
        float d0 = d[i];
        for (int64_t k = 0; k < n; k++) gi[k] = d0 * A[k];
        for (int r = 1; r < B; r++) {
            float dr = d[r * d_step + i];
            const float *a = A + r * lda;
            for (int64_t k = 0; k < n; k++) gi[k] += dr * a[k];
        }
    }
}

static void rowgrad_generic(int B, int m, const float *d, int64_t d_step, const float *A,
                            int64_t lda, float *g, int64_t ldg, int64_t n) {
    rowgrad_body(B, m, d, d_step, A, lda, g, ldg, n);
}

/* the fused gradient-and-step for a set without one of its own: the set's rowgrad into a
 * buffer on the stack, a chunk at a time, then its step kernel */
#define GRADSTEP_CHUNK 256
static inline __attribute__((always_inline)) void gradstep_via(
        pynn_rowgrad_fn rowgrad, pynn_stepkernel_fn stepkernel, const struct pynn_optimizer *opt,
        int64_t step, int B, int m, const float *d, int64_t d_step, const float *A, int64_t lda,
        float *w, float *s1, float *s2, int64_t ldw, int64_t n) {
    float g[PYNN_ROWGRAD_M * GRADSTEP_CHUNK];
    for (int64_t c = 0; c < n; c += GRADSTEP_CHUNK) {
        int64_t len = n - c < GRADSTEP_CHUNK ? n - c : GRADSTEP_CHUNK;
        rowgrad(B, m, d, d_step, A + c, lda, g, GRADSTEP_CHUNK, len);
        stepkernel(opt, step, w + c, s1 ? s1 + c : NULL, s2 ? s2 + c : NULL, ldw, g,
                   GRADSTEP_CHUNK, m, len);
    }
}

static void gradstep_generic(const struct pynn_optimizer *opt, int64_t step, int B, int m,
                             const float *d, int64_t d_step, const float *A, int64_t lda, float *w,
                             float *s1, float *s2, int64_t ldw, int64_t n) {
    gradstep_via(rowgrad_generic, stepkernel_generic, opt, step, B, m, d, d_step, A, lda, w, s1,
                 s2, ldw, n);
}

/* how many of the blocks listed (ascending) K leaves whole: all, or all but the last */
static inline int whole_blocks(int64_t K, const int32_t *blk, int nblk) {
    return nblk > 0 && ((int64_t)blk[nblk - 1] + 1) * PYNN_DOT_BLOCK > K ? nblk - 1 : nblk;
}

/* dotkernel_generic's sums for one row of A, over the blocks listed: each block is two of its
 * runs of 8 (an element past the last whole run goes to s[0], as there). Six rows of B in
 * each pass over the blocks, so that their reads overlap, fetching the next six rows' blocks
 * (as dotblocks_avx2 does, where it says why); a last block that K cuts short is the only
 * one that needs the checks. */
static void dotblocks_generic(int64_t K, const float *a, const int32_t *blk, int nblk,
                              const float *B, int64_t ldb, float *c, int n) {
    int whole = whole_blocks(K, blk, nblk);
    for (int j0 = 0; j0 < n; j0 += PYNN_DOT_NR) {
        int m = n - j0 < PYNN_DOT_NR ? n - j0 : PYNN_DOT_NR;
        const float *B_j = B + j0 * ldb;
        int64_t ahead = j0 + 2 * PYNN_DOT_NR <= n ? PYNN_DOT_NR * ldb : 0;
        float s[PYNN_DOT_NR][8] = {{0}};
        for (int i = 0; i < whole; i++) {
            int64_t p = (int64_t)blk[i] * PYNN_DOT_BLOCK;
            for (int j = 0; j < m; j++) {
                const float *b_i = B_j + j * ldb + p;
                __builtin_prefetch(b_i + ahead);
                for (int l = 0; l < 8; l++) s[j][l] += a[p + l] * b_i[l];
                for (int l = 0; l < 8; l++) s[j][l] += a[p + 8 + l] * b_i[8 + l];
            }
        }
        for (int j = 0; j < m && whole < nblk; j++) {
            const float *brow = B_j + j * ldb;
            int64_t p = (int64_t)blk[whole] * PYNN_DOT_BLOCK;
            for (; p + 8 <= K; p += 8)
                for (int l = 0; l < 8; l++) s[j][l] += a[p + l] * brow[p + l];
            for (; p < K; p++) s[j][0] += a[p] * brow[p];
        }
        for (int j = 0; j < m; j++) {
            float dot = ((s[j][0] + s[j][4]) + (s[j][1] + s[j][5])) + ((s[j][2] + s[j][6]) + (s[j][3] + s[j][7]));
            c[j0 + j] = 1.0f * dot + 0.0f;
        }
    }
}

/* one row of C as a sum of B's rows: c (n) = beta c, then for each k, c += (alpha a_k) B[k,:];
 * four rows of B a pass, so that each pass over c (in L1) serves four of them. The same
 * order of operations as the SIMD sets, without their fused multiply-adds. */
static void gemvkernel_generic(int64_t K, const float *a, int64_t a_step, const float *B,
                               int64_t ldb, float *c, int64_t n, float alpha, float beta) {
    for (int64_t j = 0; j < n; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    int64_t p = 0;
    for (; p + 4 <= K; p += 4) {
        const float *b0 = B + p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        float a0 = alpha * a[p * a_step], a1 = alpha * a[(p + 1) * a_step];
        float a2 = alpha * a[(p + 2) * a_step], a3 = alpha * a[(p + 3) * a_step];
        for (int64_t j = 0; j < n; j++)
            c[j] = (((c[j] + a0 * b0[j]) + a1 * b1[j]) + a2 * b2[j]) + a3 * b3[j];
    }
    for (; p < K; p++) {
        const float *b0 = B + p * ldb;
        float a0 = alpha * a[p * a_step];
        for (int64_t j = 0; j < n; j++) c[j] += a0 * b0[j];
    }
}

static const struct pynn_kernels kernels_generic = {"generic", ukernel_generic, MR_GENERIC,
                                                    NR_GENERIC, dotkernel_generic,
                                                    stepkernel_generic, gemvkernel_generic,
                                                    gradstep_generic, dotblocks_generic, NULL, NULL,
                                                    NULL, NULL, NULL, &kernels_generic};

#ifdef PYNN_X86
/* ---------------- AVX2 + FMA: 8 floats a vector ---------------- */
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define MR_AVX2 6
#define NR_AVX2 16

TGT_AVX2 static inline __m256 mask8(int n) {   /* lanes < n set */
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes));
}

/* the instance of a tile kernel X for m rows: ROWS 6, 4, 2 or 1, a compile-time constant in
 * each, so that its unused accumulators and loads drop out */
#define AVX2_BY_ROWS(X)                                                   \
    do {                                                                  \
        if (m > 4) X(6);                                                  \
        else if (m > 2) X(4);                                             \
        else if (m == 2) X(2);                                            \
        else X(1);                                                        \
    } while (0)

/* a ROWS x 16 tile (ROWS <= 6 rows of the packed sliver, m <= ROWS of them stored), of which
 * the first NV vectors of 8 columns are computed (n <= 8 NV); FULL (n == 16): plain loads and
 * stores, else masked ones. Compile-time constants after inlining, as for AVX-512 below; the
 * 12 accumulators are named variables for the same reason. */
#define Y_ZERO(r) __m256 y##r##0 = _mm256_setzero_ps(), y##r##1 = y##r##0;
#define Y_FMA(r)                                                          \
    if (ROWS > r) {                                                       \
        __m256 ar = _mm256_broadcast_ss(a + r);                           \
        y##r##0 = _mm256_fmadd_ps(ar, b0, y##r##0);                       \
        if (NV > 1) y##r##1 = _mm256_fmadd_ps(ar, b1, y##r##1);           \
    }
#define Y_LOAD(p, mk) (FULL ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), (mk)))
/* row r of the tile out: alpha y + beta c, then EPI(r) on o0, o1 (a kernel's epilogue) */
#define Y_STORE_THEN(r, EPI)                                              \
    if (ROWS > r && m > r) {                                              \
        float *crow = c + r * ldc;                                        \
        __m256 o0 = _mm256_mul_ps(va, y##r##0), o1 = _mm256_mul_ps(va, y##r##1); \
        if (beta != 0.0f) {                                               \
            o0 = _mm256_fmadd_ps(vb, Y_LOAD(crow, k0), o0);               \
            if (NV > 1) o1 = _mm256_fmadd_ps(vb, Y_LOAD(crow + 8, k1), o1); \
        }                                                                 \
        EPI(r)                                                            \
        if (FULL) _mm256_storeu_ps(crow, o0), _mm256_storeu_ps(crow + 8, o1); \
        else {                                                            \
            _mm256_maskstore_ps(crow, k0, o0);                            \
            if (NV > 1) _mm256_maskstore_ps(crow + 8, k1, o1);            \
        }                                                                 \
    }
#define NO_EPILOGUE(r)
#define Y_STORE(r) Y_STORE_THEN(r, NO_EPILOGUE)

TGT_AVX2 static inline __attribute__((always_inline)) void
ukernel_avx2_tile(const int ROWS, const int FULL, const int NV, int64_t K, const float *a,
                  const float *b, int64_t ldb, float *c, int64_t ldc, int m, int n,
                  float alpha, float beta) {
    Y_ZERO(0) Y_ZERO(1) Y_ZERO(2) Y_ZERO(3) Y_ZERO(4) Y_ZERO(5)
    const __m256i k0 = _mm256_castps_si256(mask8(n)), k1 = _mm256_castps_si256(mask8(n - 8));
    for (int64_t p = 0; p < K; p++, a += MR_AVX2, b += ldb) {
        __m256 b0 = Y_LOAD(b, k0), b1 = _mm256_setzero_ps();
        if (NV > 1) b1 = Y_LOAD(b + 8, k1);
        Y_FMA(0) Y_FMA(1) Y_FMA(2) Y_FMA(3) Y_FMA(4) Y_FMA(5)
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    Y_STORE(0) Y_STORE(1) Y_STORE(2) Y_STORE(3) Y_STORE(4) Y_STORE(5)
}
/* ukernel_avx2_tile with B's rows read from the image (pynn_convkernel_fn): two runs of 8
 * pixels a tap, at x0 + off[k] and x1 + off[k]; n is 8 or 16. The bias and ReLU go on each
 * row on its way out: y + bias rounds as the ukernel's beta * c + y with c = bias, and
 * max_ps(0, o) returns o for a NaN or a -0, as o < 0 ? 0 : o does. */
#define BIAS_RELU(r)                                                      \
    if (bias != NULL) {                                                   \
        const __m256 br = _mm256_set1_ps(bias[r]);                        \
        o0 = _mm256_add_ps(o0, br), o1 = _mm256_add_ps(o1, br);           \
    }                                                                     \
    if (relu) o0 = _mm256_max_ps(zero, o0), o1 = _mm256_max_ps(zero, o1);
#define C_STORE(r) Y_STORE_THEN(r, BIAS_RELU)
TGT_AVX2 static inline __attribute__((always_inline)) void
convkernel_avx2_tile(const int ROWS, const int NV, int64_t K, const float *a, const float *x0,
                     const float *x1, const int32_t *off, float *c, int64_t ldc, int m, int n,
                     float alpha, float beta, const float *bias, int relu) {
    const int FULL = NV > 1;
    Y_ZERO(0) Y_ZERO(1) Y_ZERO(2) Y_ZERO(3) Y_ZERO(4) Y_ZERO(5)
    const __m256i k0 = _mm256_castps_si256(mask8(n)), k1 = _mm256_castps_si256(mask8(n - 8));
    for (int64_t p = 0; p < K; p++, a += MR_AVX2) {
        const int32_t o = off[p];
        __m256 b0 = _mm256_loadu_ps(x0 + o), b1 = _mm256_setzero_ps();
        if (NV > 1) b1 = _mm256_loadu_ps(x1 + o);
        Y_FMA(0) Y_FMA(1) Y_FMA(2) Y_FMA(3) Y_FMA(4) Y_FMA(5)
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), zero = _mm256_setzero_ps();
    C_STORE(0) C_STORE(1) C_STORE(2) C_STORE(3) C_STORE(4) C_STORE(5)
}
#undef C_STORE
#undef BIAS_RELU

/* the dweight tile (pynn_dwkernel_fn): ukernel_avx2_tile with A's values broadcast from the
 * images, tap r's at t_r + pos[p], instead of from a packed sliver */
#define D_FMA(r)                                                          \
    if (ROWS > r) {                                                       \
        __m256 ar = _mm256_broadcast_ss(t##r + o);                        \
        y##r##0 = _mm256_fmadd_ps(ar, b0, y##r##0);                       \
        if (NV > 1) y##r##1 = _mm256_fmadd_ps(ar, b1, y##r##1);           \
    }
TGT_AVX2 static inline __attribute__((always_inline)) void
dwkernel_avx2_tile(const int ROWS, const int FULL, const int NV, int64_t K,
                   const float *const *taps, const int32_t *pos, const float *b, int64_t ldb,
                   float *c, int64_t ldc, int m, int n, float alpha, float beta) {
    /* rows past m read tap 0's values (m >= 1) and are never stored */
    const float *t0 = taps[0], *t1 = m > 1 ? taps[1] : t0, *t2 = m > 2 ? taps[2] : t0;
    const float *t3 = m > 3 ? taps[3] : t0, *t4 = m > 4 ? taps[4] : t0, *t5 = m > 5 ? taps[5] : t0;
    Y_ZERO(0) Y_ZERO(1) Y_ZERO(2) Y_ZERO(3) Y_ZERO(4) Y_ZERO(5)
    const __m256i k0 = _mm256_castps_si256(mask8(n)), k1 = _mm256_castps_si256(mask8(n - 8));
    for (int64_t p = 0; p < K; p++, b += ldb) {
        const int32_t o = pos[p];
        __m256 b0 = Y_LOAD(b, k0), b1 = _mm256_setzero_ps();
        if (NV > 1) b1 = Y_LOAD(b + 8, k1);
        D_FMA(0) D_FMA(1) D_FMA(2) D_FMA(3) D_FMA(4) D_FMA(5)
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    Y_STORE(0) Y_STORE(1) Y_STORE(2) Y_STORE(3) Y_STORE(4) Y_STORE(5)
}
#undef D_FMA

/* the fold tile (pynn_foldkernel_fn): ukernel_avx2_tile's sums, each row's two vectors added
 * to the runs at c0[r] and c1[r] */
#define F_STORE(r)                                                                            \
    if (ROWS > r && m > r) {                                                                  \
        _mm256_storeu_ps(c0[r], _mm256_fmadd_ps(one, _mm256_loadu_ps(c0[r]), y##r##0));      \
        if (NV > 1)                                                                           \
            _mm256_storeu_ps(c1[r], _mm256_fmadd_ps(one, _mm256_loadu_ps(c1[r]), y##r##1));  \
    }
TGT_AVX2 static inline __attribute__((always_inline)) void
foldkernel_avx2_tile(const int ROWS, const int NV, int64_t K, const float *a, const float *b,
                     int64_t ldb, float *const *c0, float *const *c1, int m) {
    const int FULL = 1;
    const __m256i k0 = _mm256_setzero_si256(), k1 = k0;
    Y_ZERO(0) Y_ZERO(1) Y_ZERO(2) Y_ZERO(3) Y_ZERO(4) Y_ZERO(5)
    for (int64_t p = 0; p < K; p++, a += MR_AVX2, b += ldb) {
        __m256 b0 = Y_LOAD(b, k0), b1 = _mm256_setzero_ps();
        if (NV > 1) b1 = Y_LOAD(b + 8, k1);
        Y_FMA(0) Y_FMA(1) Y_FMA(2) Y_FMA(3) Y_FMA(4) Y_FMA(5)
    }
    const __m256 one = _mm256_set1_ps(1.0f);
    F_STORE(0) F_STORE(1) F_STORE(2) F_STORE(3) F_STORE(4) F_STORE(5)
}
#undef F_STORE

#define FOLDKERNEL_AVX2_ROWS(ROWS)                                                             \
    do {                                                                                      \
        if (n > 8) foldkernel_avx2_tile(ROWS, 2, K, a, b, ldb, c0, c1, m);                    \
        else foldkernel_avx2_tile(ROWS, 1, K, a, b, ldb, c0, c1, m);                          \
    } while (0)

TGT_AVX2 static void foldkernel_avx2(int64_t K, const float *a, const float *b, int64_t ldb,
                                     float *const *c0, float *const *c1, int m, int n) {
    AVX2_BY_ROWS(FOLDKERNEL_AVX2_ROWS);
}
#undef FOLDKERNEL_AVX2_ROWS

#undef Y_ZERO
#undef Y_FMA
#undef Y_LOAD
#undef Y_STORE
#undef Y_STORE_THEN
#undef NO_EPILOGUE

#define DWKERNEL_AVX2_ROWS(ROWS)                                                               \
    do {                                                                                      \
        if (n == NR_AVX2)                                                                     \
            dwkernel_avx2_tile(ROWS, 1, 2, K, taps, pos, b, ldb, c, ldc, m, n, alpha, beta);  \
        else if (n > 8)                                                                       \
            dwkernel_avx2_tile(ROWS, 0, 2, K, taps, pos, b, ldb, c, ldc, m, n, alpha, beta);  \
        else dwkernel_avx2_tile(ROWS, 0, 1, K, taps, pos, b, ldb, c, ldc, m, n, alpha, beta); \
    } while (0)

TGT_AVX2 static void dwkernel_avx2(int64_t K, const float *const *taps, const int32_t *pos,
                                   const float *b, int64_t ldb, float *c, int64_t ldc, int m,
                                   int n, float alpha, float beta) {
    AVX2_BY_ROWS(DWKERNEL_AVX2_ROWS);
}
#undef DWKERNEL_AVX2_ROWS

#define CONVKERNEL_AVX2_ROWS(ROWS)                                                             \
    do {                                                                                      \
        if (n > 8)                                                                            \
            convkernel_avx2_tile(ROWS, 2, K, a, x0, x1, off, c, ldc, m, n, alpha, beta, bias, relu); \
        else convkernel_avx2_tile(ROWS, 1, K, a, x0, x1, off, c, ldc, m, n, alpha, beta, bias, relu); \
    } while (0)

TGT_AVX2 static void convkernel_avx2(int64_t K, const float *a, const float *x0, const float *x1,
                                     const int32_t *off, float *c, int64_t ldc, int m, int n,
                                     float alpha, float beta, const float *bias, int relu) {
    AVX2_BY_ROWS(CONVKERNEL_AVX2_ROWS);
}
#undef CONVKERNEL_AVX2_ROWS

/* a tile of ROWS rows: full width, or the vectors that n needs */
#define UKERNEL_AVX2_ROWS(ROWS)                                                                \
    do {                                                                                      \
        if (n == NR_AVX2) ukernel_avx2_tile(ROWS, 1, 2, K, a, b, ldb, c, ldc, m, n, alpha, beta); \
        else if (n > 8) ukernel_avx2_tile(ROWS, 0, 2, K, a, b, ldb, c, ldc, m, n, alpha, beta);   \
        else ukernel_avx2_tile(ROWS, 0, 1, K, a, b, ldb, c, ldc, m, n, alpha, beta);              \
    } while (0)

TGT_AVX2 static void ukernel_avx2(int64_t K, const float *a, const float *b, int64_t ldb,
                                  float *c, int64_t ldc, int m, int n, float alpha, float beta) {
    AVX2_BY_ROWS(UKERNEL_AVX2_ROWS);
}
#undef UKERNEL_AVX2_ROWS
#undef AVX2_BY_ROWS

TGT_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* dotkernel_avx2 for one row of A (z = a W^T for one digit): the row against all n <= 6 rows
 * of B at once, six streams of B in flight where two rows against three had three, and no row
 * of A computed twice. Each sum is dotkernel_avx2's chain (8 lanes along K, the tail masked,
 * then hsum256), so the bits are the same. */
TGT_AVX2 static void dotrow_avx2(int64_t K, const float *a, const float *B, int64_t ldb,
                                 float *c, int n, float alpha, float beta) {
    const float *brow[PYNN_DOT_NR];
    for (int j = 0; j < PYNN_DOT_NR; j++) brow[j] = B + (j < n ? j : 0) * ldb;
    __m256 acc[PYNN_DOT_NR];
    for (int j = 0; j < PYNN_DOT_NR; j++) acc[j] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= K; p += 8) {
        __m256 av = _mm256_loadu_ps(a + p);
        for (int j = 0; j < PYNN_DOT_NR; j++)
            acc[j] = _mm256_fmadd_ps(av, _mm256_loadu_ps(brow[j] + p), acc[j]);
    }
    if (p < K) {
        __m256i mk = _mm256_castps_si256(mask8((int)(K - p)));
        __m256 av = _mm256_maskload_ps(a + p, mk);
        for (int j = 0; j < PYNN_DOT_NR; j++)
            acc[j] = _mm256_fmadd_ps(av, _mm256_maskload_ps(brow[j] + p, mk), acc[j]);
    }
    for (int j = 0; j < n; j++)
        c[j] = alpha * hsum256(acc[j]) + (beta == 0.0f ? 0.0f : beta * c[j]);
}

/* up to 4 rows of A against 3 rows of B at a time: 12 accumulators, the three vectors of B in
 * registers while the rows of A stream past them (7 loads for 12 fused multiply-adds; one row:
 * dotrow_avx2). Whole vectors load unmasked, and only the last, partial one of K is masked:
 * each sum is the same chain as dotrow_avx2's (8 lanes along K, then hsum256). */
#define DOT_AVX2_ROW(r)                                                                      \
    do {                                                                                     \
        __m256 a_r = LOAD(ar[r] + p);                                                        \
        acc##r##0 = _mm256_fmadd_ps(a_r, b0, acc##r##0);                                     \
        acc##r##1 = _mm256_fmadd_ps(a_r, b1, acc##r##1);                                     \
        acc##r##2 = _mm256_fmadd_ps(a_r, b2, acc##r##2);                                     \
    } while (0)
#define DOT_AVX2_STEP()                                                                      \
    do {                                                                                     \
        __m256 b0 = LOAD(br[0] + p), b1 = LOAD(br[1] + p), b2 = LOAD(br[2] + p);             \
        DOT_AVX2_ROW(0); DOT_AVX2_ROW(1); DOT_AVX2_ROW(2); DOT_AVX2_ROW(3);                  \
    } while (0)
#define DOT_AVX2_STORE(r, j)                                                                 \
    do {                                                                                     \
        if (r < m && j0 + j < n) {                                                           \
            float *cij = c + r * ldc + j0 + j;                                               \
            *cij = alpha * hsum256(acc##r##j) + (beta == 0.0f ? 0.0f : beta * *cij);         \
        }                                                                                    \
    } while (0)

TGT_AVX2 static void dotkernel_avx2(int64_t K, const float *A, int64_t lda, const float *B,
                                    int64_t ldb, float *c, int64_t ldc, int m, int n,
                                    float alpha, float beta) {
    if (m == 1) {
        dotrow_avx2(K, A, B, ldb, c, n, alpha, beta);
        return;
    }
    const float *ar[4];
    for (int r = 0; r < 4; r++) ar[r] = A + (r < m ? r : 0) * lda;   /* a missing row repeats row 0 */
    for (int j0 = 0; j0 < n; j0 += 3) {
        const float *br[3];
        for (int j = 0; j < 3; j++) br[j] = B + (j0 + j < n ? j0 + j : j0) * ldb;
        __m256 acc00 = _mm256_setzero_ps(), acc01 = acc00, acc02 = acc00, acc10 = acc00,
               acc11 = acc00, acc12 = acc00, acc20 = acc00, acc21 = acc00, acc22 = acc00,
               acc30 = acc00, acc31 = acc00, acc32 = acc00;
        int64_t p = 0;
#define LOAD(q) _mm256_loadu_ps(q)
        for (; p + 8 <= K; p += 8) DOT_AVX2_STEP();
#undef LOAD
        if (p < K) {
            const __m256i mk = _mm256_castps_si256(mask8((int)(K - p)));
#define LOAD(q) _mm256_maskload_ps((q), mk)
            DOT_AVX2_STEP();
#undef LOAD
        }
        DOT_AVX2_STORE(0, 0); DOT_AVX2_STORE(0, 1); DOT_AVX2_STORE(0, 2);
        DOT_AVX2_STORE(1, 0); DOT_AVX2_STORE(1, 1); DOT_AVX2_STORE(1, 2);
        DOT_AVX2_STORE(2, 0); DOT_AVX2_STORE(2, 1); DOT_AVX2_STORE(2, 2);
        DOT_AVX2_STORE(3, 0); DOT_AVX2_STORE(3, 1); DOT_AVX2_STORE(3, 2);
    }
}
#undef DOT_AVX2_ROW
#undef DOT_AVX2_STEP
#undef DOT_AVX2_STORE

TGT_AVX2 static void rowgrad_avx2(int B, int m, const float *d, int64_t d_step, const float *A,
                                  int64_t lda, float *g, int64_t ldg, int64_t n) {
    rowgrad_body(B, m, d, d_step, A, lda, g, ldg, n);
}

static void gradstep_avx2(const struct pynn_optimizer *opt, int64_t step, int B, int m,
                          const float *d, int64_t d_step, const float *A, int64_t lda, float *w,
                          float *s1, float *s2, int64_t ldw, int64_t n) {
    gradstep_via(rowgrad_avx2, stepkernel_generic, opt, step, B, m, d, d_step, A, lda, w, s1, s2,
                 ldw, n);
}

/* dotrow_avx2's sums over the blocks listed, six rows of B at a time as there: each row one
 * chain of sums along K (8 lanes, then hsum256), so the bits are the same. Whole blocks take
 * plain loads; only a last block that K cuts short is masked. A row's blocks are lines apart,
 * which the hardware's stream prefetcher does not follow, so each pass fetches the next six
 * rows' blocks (the last pass, its own) for the pass after it. */
TGT_AVX2 static void dotblocks_avx2(int64_t K, const float *a, const int32_t *blk, int nblk,
                                    const float *B, int64_t ldb, float *c, int n) {
    int whole = whole_blocks(K, blk, nblk);
    for (int j0 = 0; j0 < n; j0 += PYNN_DOT_NR) {
        const float *brow[PYNN_DOT_NR];
        for (int j = 0; j < PYNN_DOT_NR; j++) brow[j] = B + (j0 + j < n ? j0 + j : j0) * ldb;
        int64_t ahead = j0 + 2 * PYNN_DOT_NR <= n ? PYNN_DOT_NR * ldb : 0;
        __m256 acc[PYNN_DOT_NR];
        for (int j = 0; j < PYNN_DOT_NR; j++) acc[j] = _mm256_setzero_ps();
        for (int i = 0; i < whole; i++) {
            int64_t p = (int64_t)blk[i] * PYNN_DOT_BLOCK;
            for (int j = 0; j < PYNN_DOT_NR; j++) _mm_prefetch((const char *)(brow[j] + ahead + p), _MM_HINT_T0);
            __m256 a0 = _mm256_loadu_ps(a + p), a1 = _mm256_loadu_ps(a + p + 8);
            for (int j = 0; j < PYNN_DOT_NR; j++)
                acc[j] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(brow[j] + p), acc[j]);
            for (int j = 0; j < PYNN_DOT_NR; j++)
                acc[j] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(brow[j] + p + 8), acc[j]);
        }
        if (whole < nblk)
            for (int64_t p = (int64_t)blk[whole] * PYNN_DOT_BLOCK; p < K; p += 8) {
                __m256i mk = _mm256_castps_si256(mask8((int)(K - p < 8 ? K - p : 8)));
                __m256 av = _mm256_maskload_ps(a + p, mk);
                for (int j = 0; j < PYNN_DOT_NR; j++)
                    acc[j] = _mm256_fmadd_ps(av, _mm256_maskload_ps(brow[j] + p, mk), acc[j]);
            }
        for (int j = 0; j < PYNN_DOT_NR && j0 + j < n; j++) c[j0 + j] = 1.0f * hsum256(acc[j]) + 0.0f;
    }
}

/* a whole row of at most 16 columns (the output layer's ten), held in registers: each vector
 * of it sums B's rows in four interleaved chains (rows p, p+4, ...; then p+1, p+5, ...), added
 * at the end, so that four fused multiply-adds are in flight at once instead of each waiting
 * for the last. NV, the vectors of 8 columns, is a constant in each instance. Its sums differ
 * from gemvkernel's in the last bits, so it serves only rows that are never cut among threads
 * (pynn_gemvnarrow_fn). */
TGT_AVX2 static inline __attribute__((always_inline)) void gemv_narrow_avx2(
        const int NV, int64_t K, const float *a, int64_t a_step, const float *B, int64_t ldb,
        float *c, int64_t n, float alpha, float beta) {
    const __m256i k0 = _mm256_castps_si256(mask8((int)n)), k1 = _mm256_castps_si256(mask8((int)n - 8));
    __m256 y[4][2];
    for (int s = 0; s < 4; s++) y[s][0] = y[s][1] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 4 <= K; p += 4)
        for (int s = 0; s < 4; s++) {
            const float *brow = B + (p + s) * ldb;
            __m256 as = _mm256_set1_ps(a[(p + s) * a_step]);
            /* with two vectors the first is whole: a plain load, cheaper than a masked one */
            __m256 b0 = NV > 1 ? _mm256_loadu_ps(brow) : _mm256_maskload_ps(brow, k0);
            y[s][0] = _mm256_fmadd_ps(as, b0, y[s][0]);
            if (NV > 1) y[s][1] = _mm256_fmadd_ps(as, _mm256_maskload_ps(brow + 8, k1), y[s][1]);
        }
    for (; p < K; p++) {
        const float *brow = B + p * ldb;
        __m256 as = _mm256_set1_ps(a[p * a_step]);
        y[0][0] = _mm256_fmadd_ps(as, _mm256_maskload_ps(brow, k0), y[0][0]);
        if (NV > 1) y[0][1] = _mm256_fmadd_ps(as, _mm256_maskload_ps(brow + 8, k1), y[0][1]);
    }
    float out[16];
    const __m256 va = _mm256_set1_ps(alpha);
    for (int v = 0; v < NV; v++) {
        __m256 sum = _mm256_add_ps(_mm256_add_ps(y[0][v], y[1][v]), _mm256_add_ps(y[2][v], y[3][v]));
        _mm256_storeu_ps(out + 8 * v, _mm256_mul_ps(va, sum));
    }
    for (int64_t j = 0; j < n; j++) c[j] = beta == 0.0f ? out[j] : fmaf(beta, c[j], out[j]);
}

TGT_AVX2 static void gemvnarrow_avx2(int64_t K, const float *a, int64_t a_step, const float *B,
                                     int64_t ldb, float *c, int64_t n, float alpha, float beta) {
    if (n <= 8) gemv_narrow_avx2(1, K, a, a_step, B, ldb, c, n, alpha, beta);
    else gemv_narrow_avx2(2, K, a, a_step, B, ldb, c, n, alpha, beta);
}

/* one row of C: c (n) = alpha * sum_k a[k * a_step] * B[k*ldb .. k*ldb + n] + beta * c, as
 * gemvkernel_avx512 does it, 8 columns a vector. A row wider than 128 columns (narrower ones
 * keep their sums in registers, gemv_regs_avx2 below): four rows of B at a time stream through
 * the row's sums front to back, each column one chain of fused multiply-adds in the order of k.
 * The sums live in an aligned buffer on the stack, not in c: c may start anywhere in a cache
 * line (numpy's allocations are 16-byte aligned), and a vector that straddles two lines costs
 * twice, once for every four rows. When all of B's rows start at the same place in a 32-byte
 * line (ldb a multiple of 8), the columns before the first boundary go apart, four and one at
 * a time, so that the vector loads of B do not straddle lines either. A row wider than the
 * buffer goes in pieces of columns, each over all of K. A sum of fewer than eight rows (an
 * outer product's one) passes over c once or twice and goes there directly, as it lies. */
#define GEMV_ACC 1024                  /* floats of sums on the stack (4 KiB) */

/* the columns [j0, j1) of rows p .. p+R-1 of B (R = 1 or 4, a constant in each instance) added
 * into y, four or one columns a step: the head and tail of a piece */
TGT_AVX2 static inline __attribute__((always_inline)) void gemv_narrow_cols(
        const int R, const float *b, int64_t ldb, const float *s, float *y, int64_t j0,
        int64_t j1, int fresh) {
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        __m128 v = fresh ? _mm_setzero_ps() : _mm_loadu_ps(y + j);
        for (int r = 0; r < R; r++)
            v = _mm_fmadd_ps(_mm_set1_ps(s[r]), _mm_loadu_ps(b + r * ldb + j), v);
        _mm_storeu_ps(y + j, v);
    }
    for (; j < j1; j++) {
        float v = fresh ? 0.0f : y[j];
        for (int r = 0; r < R; r++) v = fmaf(s[r], b[r * ldb + j], v);
        y[j] = v;
    }
}

/* rows p .. p+R-1 of B over one piece: `lead` columns apart, then whole vectors, then the rest */
TGT_AVX2 static inline __attribute__((always_inline)) void gemv_rows(
        const int R, const float *b, int64_t ldb, const float *s, float *y, int64_t w,
        int64_t lead, int fresh) {
    gemv_narrow_cols(R, b, ldb, s, y, 0, lead & 3, fresh);
    gemv_narrow_cols(R, b, ldb, s, y, lead & 3, lead, fresh);
    __m256 as[4];
    for (int r = 0; r < R; r++) as[r] = _mm256_set1_ps(s[r]);
    int64_t j = lead;
    for (; j + 8 <= w; j += 8) {
        __m256 v = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(y + j);
        for (int r = 0; r < R; r++)
            v = _mm256_fmadd_ps(as[r], _mm256_loadu_ps(b + r * ldb + j), v);
        _mm256_storeu_ps(y + j, v);
    }
    gemv_narrow_cols(R, b, ldb, s, y, j, w, fresh);
}

/* eight rows or more: the sums in the buffer */
TGT_AVX2 __attribute__((noinline)) static void gemv_buffered_avx2(
        int64_t K, const float *a, int64_t a_step, const float *B, int64_t ldb, float *c,
        int64_t n, float alpha, float beta) {
    float mem[GEMV_ACC + 8] __attribute__((aligned(32)));
    int same_place = ldb % 8 == 0 && ((uintptr_t)B & 3) == 0;
    for (int64_t j0 = 0; j0 < n;) {
        /* columns to the first 32-byte boundary of B's rows; a piece other than the last ends
         * on one, so the next piece has none */
        int64_t lead = same_place ? (int64_t)((32 - ((uintptr_t)(B + j0) & 31)) & 31) / 4 : 0;
        int64_t w = n - j0 < GEMV_ACC - 8 + lead ? n - j0 : GEMV_ACC - 8 + lead;
        if (lead > w) lead = w;
        float *y = mem + ((8 - lead) & 7);     /* y + lead on a 32-byte boundary */
        int fresh = beta == 0.0f;              /* beta == 0: c is never read */
        if (!fresh)
            for (int64_t j = 0; j < w; j++) y[j] = beta * c[j0 + j];
        int64_t p = 0;
        for (; p + 4 <= K; p += 4, fresh = 0) {
            float s[4];
            for (int r = 0; r < 4; r++) s[r] = alpha * a[(p + r) * a_step];
            gemv_rows(4, B + p * ldb + j0, ldb, s, y, w, lead, fresh);
        }
        for (; p < K; p++, fresh = 0) {
            float s0 = alpha * a[p * a_step];
            gemv_rows(1, B + p * ldb + j0, ldb, &s0, y, w, lead, fresh);
        }
        memcpy(c + j0, y, (size_t)w * sizeof(float));
        j0 += w;
    }
}

/* a row of at most 16 vectors (128 columns) and eight rows or more: its sums stay in registers
 * over all of K while B's rows stream through one at a time, each one sequential read, where
 * the buffered kernel reads four rows side by side and loads and stores its sums once every
 * four rows: the faster of the two wherever B lies in a line, but a wider row would need more
 * registers than there are, or passes over B with gaps between its pieces. Each column
 * is the same chain of fused multiply-adds in the order of k, from beta * c or from zero. The
 * last vector may be partial: it loads masked and stores through a buffer. NV is a constant in
 * each instance, and the sums are named variables, not an array (GCC kept an array of them in
 * memory for some NV, storing all of it on every row); at 16 it keeps two on the stack, which
 * still ran fastest. */
#define GEMV_REGS_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
                          X(12) X(13) X(14) X(15)
TGT_AVX2 static inline __attribute__((always_inline)) void gemv_regs_nv(
        const int NV, int64_t K, const float *a, int64_t a_step, const float *B, int64_t ldb,
        float *c, int64_t n, float alpha, float beta) {
    const int64_t last = 8 * (NV - 1), rest = n - last;      /* columns of the last vector */
    const __m256i mk = _mm256_castps_si256(mask8((int)rest));
    const int whole = rest == 8;
    /* vector u of row b: whole vectors load plainly, the last one masked unless it is whole */
#define ROW_LOAD(b, u) \
    ((u) < NV - 1 || whole ? _mm256_loadu_ps((b) + 8 * (u)) : _mm256_maskload_ps((b) + 8 * (u), mk))
#define DECL(u) __m256 acc##u = _mm256_setzero_ps();
    GEMV_REGS_EACH(DECL)
#undef DECL
    if (beta != 0.0f) {                                      /* else c is never read */
        const __m256 vb = _mm256_set1_ps(beta);
#define INIT(u) if ((u) < NV) acc##u = _mm256_mul_ps(vb, ROW_LOAD(c, u));
        GEMV_REGS_EACH(INIT)
#undef INIT
    }
    for (int64_t p = 0; p < K; p++) {
        const float *b = B + p * ldb;
        const __m256 sv = _mm256_set1_ps(alpha * a[p * a_step]);
#define STEP(u) if ((u) < NV) acc##u = _mm256_fmadd_ps(sv, ROW_LOAD(b, u), acc##u);
        GEMV_REGS_EACH(STEP)
#undef STEP
    }
    float out[8];
#define STORE(u)                                                                             \
    if ((u) < NV - 1 || ((u) == NV - 1 && whole)) _mm256_storeu_ps(c + 8 * (u), acc##u);      \
    else if ((u) == NV - 1) _mm256_storeu_ps(out, acc##u);
    GEMV_REGS_EACH(STORE)
#undef STORE
#undef ROW_LOAD
    if (!whole)
        for (int64_t j = 0; j < rest; j++) c[last + j] = out[j];
}

#define GEMV_REGS_N 128                /* columns the register kernel takes */
TGT_AVX2 __attribute__((noinline)) static void gemv_regs_avx2(
        int64_t K, const float *a, int64_t a_step, const float *B, int64_t ldb, float *c,
        int64_t n, float alpha, float beta) {
    switch ((n + 7) / 8) {
#define GEMV_REGS_CASE(nv) \
    case nv: gemv_regs_nv(nv, K, a, a_step, B, ldb, c, n, alpha, beta); break;
    GEMV_REGS_CASE(1) GEMV_REGS_CASE(2) GEMV_REGS_CASE(3) GEMV_REGS_CASE(4)
    GEMV_REGS_CASE(5) GEMV_REGS_CASE(6) GEMV_REGS_CASE(7) GEMV_REGS_CASE(8)
    GEMV_REGS_CASE(9) GEMV_REGS_CASE(10) GEMV_REGS_CASE(11) GEMV_REGS_CASE(12)
    GEMV_REGS_CASE(13) GEMV_REGS_CASE(14) GEMV_REGS_CASE(15) GEMV_REGS_CASE(16)
#undef GEMV_REGS_CASE
    }
}

/* eight rows or more go to the registers (up to 128 columns) or the buffer; a sum of fewer (an
 * outer product's one) passes over c once or twice and stays in place: its last n % 8 columns
 * go one at a time through the same chain of fused multiply-adds (a masked store costs more
 * than the scalar loop on some CPUs). The other kernels are functions apart: with the buffered
 * one's 4 KiB frame here, an outer product ran a tenth slower. */
TGT_AVX2 static void gemvkernel_avx2(int64_t K, const float *a, int64_t a_step, const float *B,
                                     int64_t ldb, float *c, int64_t n, float alpha, float beta) {
    if (K >= 8) {
        if (n <= GEMV_REGS_N) gemv_regs_avx2(K, a, a_step, B, ldb, c, n, alpha, beta);
        else gemv_buffered_avx2(K, a, a_step, B, ldb, c, n, alpha, beta);
        return;
    }
    const int64_t nv = n / 8 * 8;     /* columns in whole vectors */
    int fresh = beta == 0.0f;         /* beta == 0: c is never read, the first pass starts at 0 */
    if (!fresh) {
        const __m256 vb = _mm256_set1_ps(beta);
        int64_t j = 0;
        for (; j < nv; j += 8) _mm256_storeu_ps(c + j, _mm256_mul_ps(vb, _mm256_loadu_ps(c + j)));
        for (; j < n; j++) c[j] *= beta;
    }
    int64_t p = 0;
    for (; p + 4 <= K; p += 4, fresh = 0) {
        const float *b0 = B + p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        float s0 = alpha * a[p * a_step], s1 = alpha * a[(p + 1) * a_step];
        float s2 = alpha * a[(p + 2) * a_step], s3 = alpha * a[(p + 3) * a_step];
        __m256 a0 = _mm256_set1_ps(s0), a1 = _mm256_set1_ps(s1);
        __m256 a2 = _mm256_set1_ps(s2), a3 = _mm256_set1_ps(s3);
        int64_t j = 0;
        for (; j < nv; j += 8) {
            __m256 y = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(c + j);
            y = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b0 + j), y);
            y = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b1 + j), y);
            y = _mm256_fmadd_ps(a2, _mm256_loadu_ps(b2 + j), y);
            y = _mm256_fmadd_ps(a3, _mm256_loadu_ps(b3 + j), y);
            _mm256_storeu_ps(c + j, y);
        }
        for (; j < n; j++) {
            float y = fresh ? 0.0f : c[j];
            y = fmaf(s0, b0[j], y);
            y = fmaf(s1, b1[j], y);
            y = fmaf(s2, b2[j], y);
            c[j] = fmaf(s3, b3[j], y);
        }
    }
    for (; p < K; p++, fresh = 0) {
        const float *b0 = B + p * ldb;
        float s0 = alpha * a[p * a_step];
        __m256 a0 = _mm256_set1_ps(s0);
        int64_t j = 0;
        for (; j < nv; j += 8) {
            __m256 y = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(c + j);
            _mm256_storeu_ps(c + j, _mm256_fmadd_ps(a0, _mm256_loadu_ps(b0 + j), y));
        }
        for (; j < n; j++) c[j] = fmaf(s0, b0[j], fresh ? 0.0f : c[j]);
    }
}

/* four rows of a narrow C (n <= 16) in registers, 8 accumulators: each row of B, loaded once,
 * serves the four rows of A; the four rows' chains overlap one another. NV, the vectors of 8
 * columns, is a constant in each instance. The accumulators are named variables, not an
 * array, so that GCC keeps them in registers (as in the AVX-512 micro-kernel). */
#define GEMV4_ROW(r, ar)                                                                     \
    do {                                                                                     \
        __m256 a_r = _mm256_set1_ps(ar[p]);                                                  \
        y##r##0 = _mm256_fmadd_ps(a_r, b0, y##r##0);                                         \
        if (NV > 1) y##r##1 = _mm256_fmadd_ps(a_r, b1, y##r##1);                             \
    } while (0)
#define GEMV4_STORE(r)                                                                       \
    do {                                                                                     \
        float out[16], *crow = c + r * ldc;                                                  \
        _mm256_storeu_ps(out, _mm256_mul_ps(va, y##r##0));                                   \
        if (NV > 1) _mm256_storeu_ps(out + 8, _mm256_mul_ps(va, y##r##1));                   \
        for (int64_t j = 0; j < n; j++)                                                      \
            crow[j] = beta == 0.0f ? out[j] : fmaf(beta, crow[j], out[j]);                   \
    } while (0)

TGT_AVX2 static inline __attribute__((always_inline)) void gemv4_avx2_nv(
        const int NV, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
        float *c, int64_t ldc, int64_t n, float alpha, float beta) {
    const __m256i k0 = _mm256_castps_si256(mask8((int)n)), k1 = _mm256_castps_si256(mask8((int)n - 8));
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    __m256 y00 = _mm256_setzero_ps(), y01 = y00, y10 = y00, y11 = y00;
    __m256 y20 = y00, y21 = y00, y30 = y00, y31 = y00;
    for (int64_t p = 0; p < K; p++) {
        const float *brow = B + p * ldb;
        __m256 b0 = NV > 1 ? _mm256_loadu_ps(brow) : _mm256_maskload_ps(brow, k0);
        __m256 b1 = NV > 1 ? _mm256_maskload_ps(brow + 8, k1) : _mm256_setzero_ps();
        GEMV4_ROW(0, a0); GEMV4_ROW(1, a1); GEMV4_ROW(2, a2); GEMV4_ROW(3, a3);
    }
    const __m256 va = _mm256_set1_ps(alpha);
    GEMV4_STORE(0); GEMV4_STORE(1); GEMV4_STORE(2); GEMV4_STORE(3);
}
#undef GEMV4_ROW
#undef GEMV4_STORE

TGT_AVX2 static void gemv4kernel_avx2(int64_t K, const float *A, int64_t lda, const float *B,
                                      int64_t ldb, float *c, int64_t ldc, int64_t n, float alpha,
                                      float beta) {
    if (n <= 8) gemv4_avx2_nv(1, K, A, lda, B, ldb, c, ldc, n, alpha, beta);
    else gemv4_avx2_nv(2, K, A, lda, B, ldb, c, ldc, n, alpha, beta);
}

static const struct pynn_kernels kernels_avx2 = {"avx2", ukernel_avx2, MR_AVX2, NR_AVX2,
                                                 dotkernel_avx2, stepkernel_generic, gemvkernel_avx2,
                                                 gradstep_avx2, dotblocks_avx2, gemv4kernel_avx2,
                                                 gemvnarrow_avx2, convkernel_avx2,
                                                 dwkernel_avx2, foldkernel_avx2, &kernels_avx2};

/* ---------------- AVX-512: 16 floats a vector ---------------- */
#define TGT_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define MR_AVX512 8
#define NR_AVX512 48

TGT_AVX512 static inline __mmask16 mask16(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* a ROWS x 48 tile (ROWS <= 8 rows of the packed sliver, m <= ROWS of them stored), of which
 * the first NV vectors of 16 columns are computed (n <= 16 NV). ROWS, FULL and NV are
 * compile-time constants after inlining, so the full 8-row tile runs with plain loads, a tile
 * of 1, 2 or 4 rows (a batch of one, a batch's last rows) does no wasted work, and neither does
 * the last tile of a row of C whose width is not a multiple of 48 (784 = 16 x 48 + 16: its last
 * tile, at full width, cost a whole tile for a third of one). Each element's sum is the same
 * chain of fused multiply-adds whatever NV is. The 24 accumulators are named variables, not an
 * array: GCC then keeps every one in a register instead of writing an array back to the stack
 * each iteration. */
#define ACC_ZERO(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0;
#define ACC_FMA(r)                                                        \
    if (ROWS > r) {                                                       \
        __m512 ar = _mm512_set1_ps(a[r]);                                 \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0);                       \
        if (NV > 1) c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1);           \
        if (NV > 2) c##r##2 = _mm512_fmadd_ps(ar, b2, c##r##2);           \
    }
#define ACC_STORE(r)                                                      \
    if (ROWS > r && m > r) {                                              \
        float *crow = c + r * ldc;                                        \
        __m512 o0 = _mm512_mul_ps(va, c##r##0), o1 = _mm512_mul_ps(va, c##r##1); \
        __m512 o2 = _mm512_mul_ps(va, c##r##2);                           \
        if (beta != 0.0f) {                                               \
            o0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, crow), o0);      \
            if (NV > 1) o1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, crow + 16), o1); \
            if (NV > 2) o2 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k2, crow + 32), o2); \
        }                                                                 \
        _mm512_mask_storeu_ps(crow, k0, o0);                              \
        if (NV > 1) _mm512_mask_storeu_ps(crow + 16, k1, o1);             \
        if (NV > 2) _mm512_mask_storeu_ps(crow + 32, k2, o2);             \
    }

TGT_AVX512 static inline __attribute__((always_inline)) void
ukernel_avx512_tile(const int ROWS, const int FULL, const int NV, int64_t K, const float *a,
                    const float *b, int64_t ldb, float *c, int64_t ldc, int m, int n,
                    float alpha, float beta) {
    ACC_ZERO(0) ACC_ZERO(1) ACC_ZERO(2) ACC_ZERO(3) ACC_ZERO(4) ACC_ZERO(5) ACC_ZERO(6) ACC_ZERO(7)
    const __mmask16 k0 = mask16(n), k1 = mask16(n - 16), k2 = mask16(n - 32);
    for (int64_t p = 0; p < K; p++, a += MR_AVX512, b += ldb) {
        __m512 b0, b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps();
        if (FULL) {
            b0 = _mm512_loadu_ps(b); b1 = _mm512_loadu_ps(b + 16); b2 = _mm512_loadu_ps(b + 32);
        } else {
            b0 = _mm512_maskz_loadu_ps(k0, b);
            if (NV > 1) b1 = _mm512_maskz_loadu_ps(k1, b + 16);
            if (NV > 2) b2 = _mm512_maskz_loadu_ps(k2, b + 32);
        }
        ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5) ACC_FMA(6) ACC_FMA(7)
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3)
    ACC_STORE(4) ACC_STORE(5) ACC_STORE(6) ACC_STORE(7)
}

/* a tile of ROWS rows: full width, or the vectors that n needs */
#define UKERNEL_ROWS(ROWS)                                                                    \
    do {                                                                                      \
        if (n == NR_AVX512) ukernel_avx512_tile(ROWS, 1, 3, K, a, b, ldb, c, ldc, m, n, alpha, beta); \
        else if (n > 32) ukernel_avx512_tile(ROWS, 0, 3, K, a, b, ldb, c, ldc, m, n, alpha, beta);  \
        else if (n > 16) ukernel_avx512_tile(ROWS, 0, 2, K, a, b, ldb, c, ldc, m, n, alpha, beta);  \
        else ukernel_avx512_tile(ROWS, 0, 1, K, a, b, ldb, c, ldc, m, n, alpha, beta);             \
    } while (0)

TGT_AVX512 static void ukernel_avx512(int64_t K, const float *a, const float *b, int64_t ldb,
                                      float *c, int64_t ldc, int m, int n, float alpha, float beta) {
    if (m > 4) UKERNEL_ROWS(8);
    else if (m > 2) UKERNEL_ROWS(4);
    else if (m == 2) UKERNEL_ROWS(2);
    else UKERNEL_ROWS(1);
}

/* sums of the 16 lanes of each of 4 vectors, as the 4 lanes of one 128-bit vector */
TGT_AVX512 static inline __m128 hsum4_512(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
    __m256 s0 = _mm256_add_ps(_mm512_castps512_ps256(v0), _mm512_extractf32x8_ps(v0, 1));
    __m256 s1 = _mm256_add_ps(_mm512_castps512_ps256(v1), _mm512_extractf32x8_ps(v1, 1));
    __m256 s2 = _mm256_add_ps(_mm512_castps512_ps256(v2), _mm512_extractf32x8_ps(v2, 1));
    __m256 s3 = _mm256_add_ps(_mm512_castps512_ps256(v3), _mm512_extractf32x8_ps(v3, 1));
    __m256 h01 = _mm256_hadd_ps(s0, s1), h23 = _mm256_hadd_ps(s2, s3);
    __m256 h = _mm256_hadd_ps(h01, h23);   /* lanes: 0 1 2 3 (low half) | 0 1 2 3 (high half) */
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* the dot kernel with MR_ rows of A (a compile-time constant after inlining) and 6 rows of B.
 * Rows of B past n point at row 0, so they are read safely and their sums dropped. Named
 * accumulators again, for the same reason as above. */
#define DOT_ZERO(r)                                                                  \
    __m512 d##r##0 = _mm512_setzero_ps(), d##r##1 = d##r##0, d##r##2 = d##r##0,      \
           d##r##3 = d##r##0, d##r##4 = d##r##0, d##r##5 = d##r##0;
#define DOT_FMA(r, av_expr)                                                          \
    if (MR_ > r) {                                                                   \
        __m512 av = av_expr;                                                         \
        d##r##0 = _mm512_fmadd_ps(av, bv0, d##r##0);                                 \
        d##r##1 = _mm512_fmadd_ps(av, bv1, d##r##1);                                 \
        d##r##2 = _mm512_fmadd_ps(av, bv2, d##r##2);                                 \
        d##r##3 = _mm512_fmadd_ps(av, bv3, d##r##3);                                 \
        d##r##4 = _mm512_fmadd_ps(av, bv4, d##r##4);                                 \
        d##r##5 = _mm512_fmadd_ps(av, bv5, d##r##5);                                 \
    }
#define DOT_STORE(r)                                                                 \
    if (MR_ > r) {                                                                   \
        __m128 lo = hsum4_512(d##r##0, d##r##1, d##r##2, d##r##3);                   \
        __m128 hi = hsum4_512(d##r##4, d##r##5, _mm512_setzero_ps(), _mm512_setzero_ps()); \
        __m256 sum = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);        \
        float *crow = c + r * ldc;                                                   \
        __m256 out = _mm256_mul_ps(va, sum);                                         \
        if (beta != 0.0f) out = _mm256_fmadd_ps(vb, _mm256_maskz_loadu_ps(kn, crow), out); \
        _mm256_mask_storeu_ps(crow, kn, out);                                        \
    }

TGT_AVX512 static inline __attribute__((always_inline)) void
dotkernel_avx512_rows(const int MR_, int64_t K, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float *c, int64_t ldc, int n, float alpha, float beta) {
    const float *br0 = B, *br1 = B + (1 < n ? 1 : 0) * ldb, *br2 = B + (2 < n ? 2 : 0) * ldb;
    const float *br3 = B + (3 < n ? 3 : 0) * ldb, *br4 = B + (4 < n ? 4 : 0) * ldb;
    const float *br5 = B + (5 < n ? 5 : 0) * ldb;
    const float *ar0 = A, *ar1 = A + lda, *ar2 = A + 2 * lda, *ar3 = A + 3 * lda;
    DOT_ZERO(0) DOT_ZERO(1) DOT_ZERO(2) DOT_ZERO(3)
    int64_t p = 0;
    for (; p + 16 <= K; p += 16) {
        __m512 bv0 = _mm512_loadu_ps(br0 + p), bv1 = _mm512_loadu_ps(br1 + p);
        __m512 bv2 = _mm512_loadu_ps(br2 + p), bv3 = _mm512_loadu_ps(br3 + p);
        __m512 bv4 = _mm512_loadu_ps(br4 + p), bv5 = _mm512_loadu_ps(br5 + p);
        DOT_FMA(0, _mm512_loadu_ps(ar0 + p)) DOT_FMA(1, _mm512_loadu_ps(ar1 + p))
        DOT_FMA(2, _mm512_loadu_ps(ar2 + p)) DOT_FMA(3, _mm512_loadu_ps(ar3 + p))
    }
    if (p < K) {
        __mmask16 km = mask16((int)(K - p));
        __m512 bv0 = _mm512_maskz_loadu_ps(km, br0 + p), bv1 = _mm512_maskz_loadu_ps(km, br1 + p);
        __m512 bv2 = _mm512_maskz_loadu_ps(km, br2 + p), bv3 = _mm512_maskz_loadu_ps(km, br3 + p);
        __m512 bv4 = _mm512_maskz_loadu_ps(km, br4 + p), bv5 = _mm512_maskz_loadu_ps(km, br5 + p);
        DOT_FMA(0, _mm512_maskz_loadu_ps(km, ar0 + p)) DOT_FMA(1, _mm512_maskz_loadu_ps(km, ar1 + p))
        DOT_FMA(2, _mm512_maskz_loadu_ps(km, ar2 + p)) DOT_FMA(3, _mm512_maskz_loadu_ps(km, ar3 + p))
    }
    __mmask8 kn = (__mmask8)((1u << n) - 1);
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    DOT_STORE(0) DOT_STORE(1) DOT_STORE(2) DOT_STORE(3)
}

TGT_AVX512
static void dotkernel_avx512(int64_t K, const float *A, int64_t lda, const float *B,
                             int64_t ldb, float *c, int64_t ldc, int m, int n,
                             float alpha, float beta) {
    switch (m) {
    case 4: dotkernel_avx512_rows(4, K, A, lda, B, ldb, c, ldc, n, alpha, beta); break;
    case 3: dotkernel_avx512_rows(3, K, A, lda, B, ldb, c, ldc, n, alpha, beta); break;
    case 2: dotkernel_avx512_rows(2, K, A, lda, B, ldb, c, ldc, n, alpha, beta); break;
    default: dotkernel_avx512_rows(1, K, A, lda, B, ldb, c, ldc, n, alpha, beta); break;
    }
}

/* dotkernel_avx512_rows(1, ...)'s sums over the blocks listed for n <= 6 rows of B, fetching
 * the blocks of the rows `ahead` floats further on: a block is one vector; whole ones (the
 * first `whole`) take plain loads, a last one that K cuts short a masked load */
TGT_AVX512 static inline __attribute__((always_inline)) void
dotblocks6_avx512(int64_t K, const float *a, const int32_t *blk, int nblk, int whole,
                  const float *B, int64_t ldb, int64_t ahead, float *c, int n) {
    const int MR_ = 1;
    const float *br0 = B, *br1 = B + (1 < n ? 1 : 0) * ldb, *br2 = B + (2 < n ? 2 : 0) * ldb;
    const float *br3 = B + (3 < n ? 3 : 0) * ldb, *br4 = B + (4 < n ? 4 : 0) * ldb;
    const float *br5 = B + (5 < n ? 5 : 0) * ldb;
    const float *brow[PYNN_DOT_NR] = {br0, br1, br2, br3, br4, br5};
    DOT_ZERO(0)
    for (int i = 0; i < whole; i++) {
        int64_t p = (int64_t)blk[i] * PYNN_DOT_BLOCK;
        for (int j = 0; j < PYNN_DOT_NR; j++)
            _mm_prefetch((const char *)(brow[j] + ahead + p), _MM_HINT_T0);
        __m512 bv0 = _mm512_loadu_ps(br0 + p), bv1 = _mm512_loadu_ps(br1 + p);
        __m512 bv2 = _mm512_loadu_ps(br2 + p), bv3 = _mm512_loadu_ps(br3 + p);
        __m512 bv4 = _mm512_loadu_ps(br4 + p), bv5 = _mm512_loadu_ps(br5 + p);
        DOT_FMA(0, _mm512_loadu_ps(a + p))
    }
    if (whole < nblk) {
        int64_t p = (int64_t)blk[whole] * PYNN_DOT_BLOCK;
        __mmask16 km = mask16((int)(K - p));
        __m512 bv0 = _mm512_maskz_loadu_ps(km, br0 + p), bv1 = _mm512_maskz_loadu_ps(km, br1 + p);
        __m512 bv2 = _mm512_maskz_loadu_ps(km, br2 + p), bv3 = _mm512_maskz_loadu_ps(km, br3 + p);
        __m512 bv4 = _mm512_maskz_loadu_ps(km, br4 + p), bv5 = _mm512_maskz_loadu_ps(km, br5 + p);
        DOT_FMA(0, _mm512_maskz_loadu_ps(km, a + p))
    }
    __mmask8 kn = (__mmask8)((1u << n) - 1);
    __m256 va = _mm256_set1_ps(1.0f), vb = _mm256_set1_ps(0.0f);
    const float beta = 0.0f;
    const int64_t ldc = 0;
    DOT_STORE(0)
}

/* six rows of B a pass, as dotblocks_avx2 (which says why each pass fetches the next six) */
TGT_AVX512 static void dotblocks_avx512(int64_t K, const float *a, const int32_t *blk, int nblk,
                                        const float *B, int64_t ldb, float *c, int n) {
    int whole = whole_blocks(K, blk, nblk);
    for (int j0 = 0; j0 < n; j0 += PYNN_DOT_NR) {
        int64_t ahead = j0 + 2 * PYNN_DOT_NR <= n ? PYNN_DOT_NR * ldb : 0;
        dotblocks6_avx512(K, a, blk, nblk, whole, B + j0 * ldb, ldb, ahead, c + j0,
                          n - j0 < PYNN_DOT_NR ? n - j0 : PYNN_DOT_NR);
    }
}

/* the optimiser's constants, broadcast once per call */
struct step_consts {
    int kind;
    __m512 lr, wd, mom, b1, nb1, b2, nb2, eps, vc1, vc2;
};

TGT_AVX512 static inline __attribute__((always_inline)) struct step_consts
step_consts(const struct pynn_optimizer *opt, int64_t step) {
    float c1 = 1.0f, c2 = 1.0f;
    if (opt->kind == PYNN_OPT_ADAM) {
        c1 = 1.0f / (1.0f - powf(opt->beta1, (float)step));
        c2 = 1.0f / (1.0f - powf(opt->beta2, (float)step));
    }
    struct step_consts c = {opt->kind, _mm512_set1_ps(opt->lr), _mm512_set1_ps(opt->weight_decay),
                            _mm512_set1_ps(opt->momentum), _mm512_set1_ps(opt->beta1),
                            _mm512_set1_ps(1.0f - opt->beta1), _mm512_set1_ps(opt->beta2),
                            _mm512_set1_ps(1.0f - opt->beta2), _mm512_set1_ps(opt->eps),
                            _mm512_set1_ps(c1), _mm512_set1_ps(c2)};
    return c;
}

/* the step of 16 parameters (lanes k; whole: all 16, stored unmasked, since a masked store
 * costs more on some CPUs) with gradient g, in optim.c's order of operations; only the fused
 * multiply-adds round differently */
TGT_AVX512 static inline __attribute__((always_inline)) void
step16(const struct step_consts *c, float *w, float *s1, float *s2, __m512 g, __mmask16 k, int whole) {
    __m512 wi = whole ? _mm512_loadu_ps(w) : _mm512_maskz_loadu_ps(k, w);
    __m512 gi = _mm512_fmadd_ps(c->wd, wi, g);                          /* dw + wd w */
    if (c->kind == PYNN_OPT_SGD) {
        wi = _mm512_fnmadd_ps(c->lr, gi, wi);
    } else if (c->kind == PYNN_OPT_MOMENTUM) {
        __m512 vel = _mm512_fmadd_ps(c->mom, whole ? _mm512_loadu_ps(s1) : _mm512_maskz_loadu_ps(k, s1), gi);
        if (whole) _mm512_storeu_ps(s1, vel);
        else _mm512_mask_storeu_ps(s1, k, vel);
        wi = _mm512_fnmadd_ps(c->lr, vel, wi);
    } else {
        __m512 m = _mm512_fmadd_ps(c->b1, _mm512_maskz_loadu_ps(k, s1), _mm512_mul_ps(c->nb1, gi));
        __m512 v = _mm512_fmadd_ps(c->b2, _mm512_maskz_loadu_ps(k, s2),
                                   _mm512_mul_ps(_mm512_mul_ps(c->nb2, gi), gi));
        _mm512_mask_storeu_ps(s1, k, m);
        _mm512_mask_storeu_ps(s2, k, v);
        __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(v, c->vc2)), c->eps);
        wi = _mm512_sub_ps(wi, _mm512_div_ps(_mm512_mul_ps(c->lr, _mm512_mul_ps(m, c->vc1)), den));
    }
    if (whole) _mm512_storeu_ps(w, wi);
    else _mm512_mask_storeu_ps(w, k, wi);
}

/* the optimiser's step, row by row, 16 parameters at a time, the tail masked */
TGT_AVX512 static void stepkernel_avx512(const struct pynn_optimizer *opt, int64_t step, float *w,
                                         float *s1, float *s2, int64_t ldw, const float *g,
                                         int64_t ldg, int64_t m, int64_t n) {
    const struct step_consts c = step_consts(opt, step);
    for (int64_t r = 0; r < m; r++)
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = mask16((int)(n - i < 16 ? n - i : 16));
            int whole = k == (__mmask16)0xFFFF;
            const float *gi = g + r * ldg + i;
            int64_t at = r * ldw + i;
            step16(&c, w + at, s1 ? s1 + at : NULL, s2 ? s2 + at : NULL,
                   whole ? _mm512_loadu_ps(gi) : _mm512_maskz_loadu_ps(k, gi), k, whole);
        }
}

/* a row of C, kept in L1 while four rows of B at a time stream through it front to back
 * (four sequential streams the prefetcher follows): per 16 columns, four loads of B, four
 * fused multiply-adds, and one load and store of C */
TGT_AVX512 static void gemvkernel_avx512(int64_t K, const float *a, int64_t a_step, const float *B,
                                         int64_t ldb, float *c, int64_t n, float alpha, float beta) {
    const __m512 vb = _mm512_set1_ps(beta);
    /* whole vectors load and store unmasked (a masked store costs far more on some CPUs, as
     * much as the rest of the loop), the tail masked */
#define GEMV_LOAD(p, k, whole) ((whole) ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((k), (p)))
#define GEMV_STORE(p, k, whole, v) \
    do { if (whole) _mm512_storeu_ps((p), (v)); else _mm512_mask_storeu_ps((p), (k), (v)); } while (0)
    /* beta == 0: C is never read, the first pass over it starts from zero */
    int fresh = beta == 0.0f;
    for (int64_t j = 0; j < n && !fresh; j += 16) {     /* C = beta C */
        __mmask16 k = mask16((int)(n - j < 16 ? n - j : 16));
        int whole = n - j >= 16;
        GEMV_STORE(c + j, k, whole, _mm512_mul_ps(vb, GEMV_LOAD(c + j, k, whole)));
    }
    int64_t p = 0;
    for (; p + 4 <= K; p += 4, fresh = 0) {
        const float *b0 = B + p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        __m512 a0 = _mm512_set1_ps(alpha * a[p * a_step]);
        __m512 a1 = _mm512_set1_ps(alpha * a[(p + 1) * a_step]);
        __m512 a2 = _mm512_set1_ps(alpha * a[(p + 2) * a_step]);
        __m512 a3 = _mm512_set1_ps(alpha * a[(p + 3) * a_step]);
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 k = mask16((int)(n - j < 16 ? n - j : 16));
            int whole = n - j >= 16;
            __m512 y = fresh ? _mm512_setzero_ps() : GEMV_LOAD(c + j, k, whole);
            y = _mm512_fmadd_ps(a0, GEMV_LOAD(b0 + j, k, whole), y);
            y = _mm512_fmadd_ps(a1, GEMV_LOAD(b1 + j, k, whole), y);
            y = _mm512_fmadd_ps(a2, GEMV_LOAD(b2 + j, k, whole), y);
            y = _mm512_fmadd_ps(a3, GEMV_LOAD(b3 + j, k, whole), y);
            GEMV_STORE(c + j, k, whole, y);
        }
    }
    for (; p < K; p++, fresh = 0) {
        const float *b0 = B + p * ldb;
        __m512 a0 = _mm512_set1_ps(alpha * a[p * a_step]);
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 k = mask16((int)(n - j < 16 ? n - j : 16));
            int whole = n - j >= 16;
            __m512 y = fresh ? _mm512_setzero_ps() : GEMV_LOAD(c + j, k, whole);
            GEMV_STORE(c + j, k, whole, _mm512_fmadd_ps(a0, GEMV_LOAD(b0 + j, k, whole), y));
        }
    }
#undef GEMV_LOAD
#undef GEMV_STORE
}

/* a small batch's gradient rows, 16 columns at a time (masked), each row of A loaded once for
 * the M rows of g; fused multiply-adds, batch rows in order. Only the last columns of the
 * gradstep kernel come here: it does whole vectors itself, with the same arithmetic. M is a
 * constant in each instance (see rowgrad_avx512), so the loops over it unroll. */
TGT_AVX512 static inline __attribute__((always_inline)) void rowgrad_avx512_m(
        const int M, int B, const float *d, int64_t d_step, const float *A, int64_t lda, float *g,
        int64_t ldg, int64_t n) {
    for (int64_t k = 0; k < n; k += 16) {
        __mmask16 km = mask16((int)(n - k));
        __m512 acc[PYNN_ROWGRAD_M];
        __m512 a0 = _mm512_maskz_loadu_ps(km, A + k);
        for (int i = 0; i < M; i++) acc[i] = _mm512_mul_ps(_mm512_set1_ps(d[i]), a0);
        for (int r = 1; r < B; r++) {
            a0 = _mm512_maskz_loadu_ps(km, A + r * lda + k);
            for (int i = 0; i < M; i++)
                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(d[r * d_step + i]), a0, acc[i]);
        }
        for (int i = 0; i < M; i++) _mm512_mask_storeu_ps(g + i * ldg + k, km, acc[i]);
    }
}

TGT_AVX512 static void rowgrad_avx512(int B, int m, const float *d, int64_t d_step, const float *A,
                                      int64_t lda, float *g, int64_t ldg, int64_t n) {
    switch (m) {
    case 4: rowgrad_avx512_m(4, B, d, d_step, A, lda, g, ldg, n); break;
    case 3: rowgrad_avx512_m(3, B, d, d_step, A, lda, g, ldg, n); break;
    case 2: rowgrad_avx512_m(2, B, d, d_step, A, lda, g, ldg, n); break;
    case 1: rowgrad_avx512_m(1, B, d, d_step, A, lda, g, ldg, n); break;
    default: break;
    }
}

/* a small batch's gradient rows straight into the optimiser's step: for 32 columns of M rows
 * of W, the gradient (as rowgrad_avx512 makes it) stays in registers and steps w and its state
 * there, so the gradient is never stored */
TGT_AVX512 static inline __attribute__((always_inline)) void gradstep_avx512_m(
        const int M, const struct step_consts *c, int B, const float *d, int64_t d_step,
        const float *A, int64_t lda, float *w, float *s1, float *s2, int64_t ldw, int64_t n) {
    for (int64_t k = 0; k + 32 <= n; k += 32) {     /* whole vectors; the caller does the tail */
        __m512 acc[PYNN_ROWGRAD_M][2], a[2];
        for (int v = 0; v < 2; v++) a[v] = _mm512_loadu_ps(A + k + 16 * v);
        for (int i = 0; i < M; i++) {
            __m512 di = _mm512_set1_ps(d[i]);
            for (int v = 0; v < 2; v++) acc[i][v] = _mm512_mul_ps(di, a[v]);
        }
        for (int r = 1; r < B; r++) {
            const float *ar = A + r * lda + k, *dr = d + r * d_step;
            for (int v = 0; v < 2; v++) a[v] = _mm512_loadu_ps(ar + 16 * v);
            for (int i = 0; i < M; i++) {
                __m512 di = _mm512_set1_ps(dr[i]);
                for (int v = 0; v < 2; v++) acc[i][v] = _mm512_fmadd_ps(di, a[v], acc[i][v]);
            }
        }
        for (int i = 0; i < M; i++)
            for (int v = 0; v < 2; v++) {
                int64_t at = i * ldw + k + 16 * v;
                step16(c, w + at, s1 ? s1 + at : NULL, s2 ? s2 + at : NULL, acc[i][v],
                       (__mmask16)0xFFFF, 1);
            }
    }
}

TGT_AVX512 static void gradstep_avx512(const struct pynn_optimizer *opt, int64_t step, int B,
                                       int m, const float *d, int64_t d_step, const float *A,
                                       int64_t lda, float *w, float *s1, float *s2, int64_t ldw,
                                       int64_t n) {
    const struct step_consts c = step_consts(opt, step);
    switch (m) {
    case 4: gradstep_avx512_m(4, &c, B, d, d_step, A, lda, w, s1, s2, ldw, n); break;
    case 3: gradstep_avx512_m(3, &c, B, d, d_step, A, lda, w, s1, s2, ldw, n); break;
    case 2: gradstep_avx512_m(2, &c, B, d, d_step, A, lda, w, s1, s2, ldw, n); break;
    case 1: gradstep_avx512_m(1, &c, B, d, d_step, A, lda, w, s1, s2, ldw, n); break;
    default: return;
    }
    int64_t k = n / 32 * 32;         /* the last columns: gradient to a buffer, then the step */
    if (k < n) {
        float g[PYNN_ROWGRAD_M * 32];
        rowgrad_avx512(B, m, d, d_step, A + k, lda, g, 32, n - k);
        stepkernel_avx512(opt, step, w + k, s1 ? s1 + k : NULL, s2 ? s2 + k : NULL, ldw, g, 32,
                          m, n - k);
    }
}

static const struct pynn_kernels kernels_avx512 = {"avx512f", ukernel_avx512, MR_AVX512,
                                                   NR_AVX512, dotkernel_avx512,
                                                   stepkernel_avx512, gemvkernel_avx512,
                                                   gradstep_avx512, dotblocks_avx512, NULL, NULL,
                                                   NULL, NULL, NULL, &kernels_avx2};
#endif

/* ---------------- the choice ---------------- */

static const struct pynn_kernels *chosen = NULL;

/* the widest set this CPU runs, or the one asked for by name (tests use it to exercise every
 * path); NULL or "auto" goes back to the widest. Asking for one the CPU lacks is an error. */
int pynn_kernels_select(const char *name) {
    const struct pynn_kernels *best = &kernels_generic;
#ifdef PYNN_X86
    __builtin_cpu_init();
    int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (has_avx512) best = &kernels_avx512;
    else if (has_avx2) best = &kernels_avx2;
    if (name != NULL && strcmp(name, "avx512f") == 0) {
        if (!has_avx512) return PYNN_ERR_ARG;
        best = &kernels_avx512;
    } else if (name != NULL && strcmp(name, "avx2") == 0) {
        if (!has_avx2) return PYNN_ERR_ARG;
        best = &kernels_avx2;
    } else
#endif
    if (name != NULL && strcmp(name, "generic") == 0) {
        best = &kernels_generic;
    } else if (name != NULL && strcmp(name, "auto") != 0 && strcmp(name, best->name) != 0) {
        return PYNN_ERR_ARG;
    }
    __atomic_store_n(&chosen, best, __ATOMIC_RELEASE);
    return PYNN_OK;
}

const struct pynn_kernels *pynn_kernels(void) {
    const struct pynn_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k == NULL) {
        pynn_kernels_select(NULL);
        k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    }
    return k;
}

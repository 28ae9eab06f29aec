/*
 * gemm.c: the readable matrix product, and the bias that goes with it.
 *
 * This is the reference: three loops, no blocking, no intrinsics, the paper's eq. 5-9
 * (c_ij = row i of A . column j of B) as a student would write it. The fast product in
 * csrc/fast/gemm_fast.c is tested against this one, and this one against numpy in float64.
 * Never made faster: speed belongs in csrc/fast/, and this stays the yardstick.
 */
#include "internal.h"

/* the checks both GEMMs run: pointers, sizes, leading dimensions */
int pynn_gemm_check(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb,
                    const float *C, int64_t ldc) {
    if (M < 0 || N < 0 || K < 0) return PYNN_ERR_SIZE;
    if (M > 0 && N > 0 && C == NULL) return PYNN_ERR_NULL;
    /* each operand is needed whenever it holds data: a kernel may walk A's rows even when
     * N == 0 (the fast one does), so A is required for M*K > 0 and B for K*N > 0 */
    if ((M > 0 && K > 0 && A == NULL) || (K > 0 && N > 0 && B == NULL)) return PYNN_ERR_NULL;
    /* A is (M,K) or, transposed, (K,M); B is (K,N) or (N,K) */
    PYNN_TRY(trans_a ? pynn_check_matrix(K, M, lda) : pynn_check_matrix(M, K, lda));
    PYNN_TRY(trans_b ? pynn_check_matrix(N, K, ldb) : pynn_check_matrix(K, N, ldb));
    PYNN_TRY(pynn_check_matrix(M, N, ldc));
    if (pynn_mul_size(pynn_mul_size(M, N), K) < 0) return PYNN_ERR_OVERFLOW;
    return PYNN_OK;
}

/* C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C.
 * The element of op(A) at (i,p) is A[i*lda + p], or A[p*lda + i] when transposed. */
int pynn_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc) {
    PYNN_TRY(pynn_gemm_check(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc));
    if (M == 0 || N == 0) return PYNN_OK;
    for (int64_t i = 0; i < M; i++) {
        float *crow = C + i * ldc;
        for (int64_t j = 0; j < N; j++) {
            float dot = 0.0f;   /* row i of op(A) . column j of op(B) */
            for (int64_t p = 0; p < K; p++) {
                float a_ip = trans_a ? A[p * lda + i] : A[i * lda + p];
                float b_pj = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                dot += a_ip * b_pj;
            }
            /* beta == 0 must not read C: it may be uninitialised */
            crow[j] = alpha * dot + (beta == 0.0f ? 0.0f : beta * crow[j]);
        }
    }
    return PYNN_OK;
}

/* z is (B,n), bias is (n): every row of z gets the bias added (z = W.a + b, per sample) */
int pynn_bias_forward(float *z, const float *bias, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    if (B * n == 0) return PYNN_OK;
    if (z == NULL || bias == NULL) return PYNN_ERR_NULL;
    for (int64_t i = 0; i < B; i++) {
        float *z_b = z + i * n;
        for (int64_t j = 0; j < n; j++) z_b[j] += bias[j];
    }
    return PYNN_OK;
}

/* in the forward pass every sample's z got + b, so each sample's dz flows into db:
 * dbias (n) += sum over the B rows of dz (B,n) */
int pynn_bias_backward(float *dbias, const float *dz, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    if (B * n == 0) return PYNN_OK;
    if (dbias == NULL || dz == NULL) return PYNN_ERR_NULL;
    for (int64_t i = 0; i < B; i++) {
        const float *dz_b = dz + i * n;
        for (int64_t j = 0; j < n; j++) dbias[j] += dz_b[j];
    }
    return PYNN_OK;
}

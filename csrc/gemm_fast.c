/*
 * gemm_fast.c: the matrix product the network runs on. Same contract as pynn_gemm_ref in
 * gemm.c, and tested against it.
 *
 * First version: loops ordered so the innermost one streams a row of B and a row of C
 * (unit stride, which the compiler vectorises), rows of C split across threads.
 */
#include "internal.h"

int pynn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc) {
    PYNN_TRY(pynn_gemm_check(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc));
    unsigned int fp_mode = pynn_flush_denormals();
    #pragma omp parallel for schedule(static) if (M * N * K > (1 << 20))
    for (int64_t i = 0; i < M; i++) {
        pynn_flush_denormals();
        float *crow = C + i * ldc;
        for (int64_t j = 0; j < N; j++) crow[j] = beta == 0.0f ? 0.0f : beta * crow[j];
        for (int64_t p = 0; p < K; p++) {
            float a_ip = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
            if (trans_b) {
                for (int64_t j = 0; j < N; j++) crow[j] += a_ip * B[j * ldb + p];
            } else {
                const float *brow = B + p * ldb;
                for (int64_t j = 0; j < N; j++) crow[j] += a_ip * brow[j];
            }
        }
    }
    pynn_restore_denormals(fp_mode);
    return PYNN_OK;
}

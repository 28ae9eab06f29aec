/*
 * internal.h: helpers shared by the kernel files, not part of the API (that is pynn.h).
 * Argument checks that every entry point runs before touching memory, and denormal flushing.
 */
#ifndef PYNN_INTERNAL_H
#define PYNN_INTERNAL_H
#include <stdint.h>
#include "pynn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#include <pmmintrin.h>
/* Denormal floats cost ~100 cycles each on x86 and slow late training epochs by a fifth;
 * flush results to zero (FTZ) and treat denormal inputs as zero (DAZ) on the calling thread.
 * Returns the thread's previous mode: a kernel hands it to pynn_restore_denormals before it
 * returns, so the caller's own arithmetic (numpy's, on the same thread) keeps its denormals. */
static inline unsigned int pynn_flush_denormals(void) {
    unsigned int mode = _mm_getcsr();    /* one read and one write: each costs a small call's worth */
    _mm_setcsr(mode | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON);
    return mode;
}
static inline void pynn_restore_denormals(unsigned int mode) { _mm_setcsr(mode); }
#else
static inline unsigned int pynn_flush_denormals(void) { return 0; }
static inline void pynn_restore_denormals(unsigned int mode) { (void)mode; }
#endif

/* a * b as int64, or -1 when negative inputs or overflow */
static inline int64_t pynn_mul_size(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* the element count of a (rows,cols) matrix with row stride ld, or a negative status */
static inline int pynn_check_matrix(int64_t rows, int64_t cols, int64_t ld) {
    if (rows < 0 || cols < 0 || ld < 0) return PYNN_ERR_SIZE;
    if (rows > 0 && ld < cols) return PYNN_ERR_SIZE;
    if (pynn_mul_size(rows, ld) < 0) return PYNN_ERR_OVERFLOW;
    return PYNN_OK;
}

/* sizes of a (B,n) matrix with row stride n */
static inline int pynn_check_bn(int64_t B, int64_t n) {
    if (B < 0 || n < 0) return PYNN_ERR_SIZE;
    if (pynn_mul_size(B, n) < 0) return PYNN_ERR_OVERFLOW;
    return PYNN_OK;
}

/* pointer, size and leading-dimension checks shared by both GEMMs (ref/gemm.c) */
int pynn_gemm_check(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t lda, const float *B, int64_t ldb,
                    const float *C, int64_t ldc);

#define PYNN_TRY(expr) do { int pynn_rc_ = (expr); if (pynn_rc_ != PYNN_OK) return pynn_rc_; } while (0)

#endif

/*
 * runtime.c: what the kernels need to know about the machine: how many threads to use, and
 * which SIMD path the CPU runs (chosen at run time, never at build time).
 */
#include <stdlib.h>
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int num_threads = 0;   /* 0: not set yet, use all cores */

int pynn_set_num_threads(int n) {
    if (n < 1 || n > 1024) return PYNN_ERR_ARG;
    num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    return PYNN_OK;
}

int pynn_get_num_threads(void) {
    if (num_threads > 0) return num_threads;
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

const char *pynn_cpu_features(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
    return "generic";
}

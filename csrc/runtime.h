/*
 * runtime.h: the machine as every parallel kernel sees it (runtime.c): the thread pool, how
 * many threads a job is worth, and how a job's work is split among them. Not part of the API
 * (that is pynn.h).
 */
#ifndef PYNN_RUNTIME_H
#define PYNN_RUNTIME_H
#include <stdint.h>
#include "internal.h"

/* ---- thread pool (runtime.c) ----
 * pynn_parallel runs fn(tid, nthreads, arg) on nthreads threads (the caller is tid 0) and
 * returns when all are done. Every thread flushes denormals while it runs a job (the caller's
 * entry point does so for itself, with pynn_flush_denormals/pynn_restore_denormals from
 * internal.h). Workers spin briefly after a job, then sleep on a condition
 * variable, so an idle process burns no CPU; a forked child starts a fresh pool. */
typedef void (*pynn_job_fn)(int tid, int nthreads, void *arg);
void pynn_parallel(int nthreads, pynn_job_fn fn, void *arg);
/* fn(i, nparts, arg) for each part i < nparts (at most 16), on up to nthreads threads: thread i
 * runs part i as a rule, but a part is claimed by whichever thread is free, so a worker
 * that is slow to wake (its core busy with another program) costs nothing: the caller runs
 * the parts nobody has claimed. A part must not call pynn_barrier. */
void pynn_parallel_parts(int nthreads, int nparts, pynn_job_fn fn, void *arg);
/* a barrier among the nthreads threads of the current job (no-op for one thread) */
void pynn_barrier(int nthreads);
/* threads to use for a product of about `flops` floating-point operations */
int pynn_threads_for(double flops);
/* threads for one job of `steps` steps of `step_flops` each that meet at a barrier every step:
 * waking the pool is paid once for the whole job, a barrier once a step */
int pynn_threads_for_steps(double step_flops, int64_t steps);
/* whether this call comes within a moment of the last one that asked: a stream of small calls
 * (a digit at a time), for which waking the pool once pays, since its workers then stay awake
 * while the calls keep coming; a lone call runs on the caller's thread */
int pynn_stream_call(void);
/* threads for a product of `flops` when the pool's workers are awake */
int pynn_threads_for_awake(double flops);
/* threads for a job bound by reading `bytes` of weights from cache, when the workers are
 * awake: one digit's layer, a few flops a byte, pays for a second thread sooner than a GEMM */
int pynn_threads_for_reads(double bytes);
/* threads for reading `bytes` once, front to back, when each read serves a flop or two (one row
 * times a matrix): a matrix that fits a core's L2 streams about as fast on one core as on two,
 * and on a busy machine the second costs more than it brings, so only one of a megabyte a
 * thread or more is split */
int pynn_threads_for_streams(double bytes);

/* ---- splitting work ----
 * [lo, hi) of `total` items that part `tid` of `nt` owns: whole runs of `unit` items (the last
 * clipped to total), as even as whole units allow, in order. Every split of work among threads
 * goes through here, and depends on the sizes and the part count alone, never on which thread
 * runs a part, so an item is computed the same way whatever the thread count. */
static inline void pynn_share(int64_t total, int64_t unit, int tid, int nt, int64_t *lo,
                              int64_t *hi) {
    int64_t units = (total + unit - 1) / unit;
    int64_t a = units * tid / nt * unit, b = units * (tid + 1) / nt * unit;
    *lo = a < total ? a : total;
    *hi = b < total ? b : total;
}

/* body(lo, hi, arg) over the items [0, n), in runs that pynn_share cuts, each run a part of
 * pynn_parallel_parts on up to nthreads threads (one run on the caller's thread when nthreads
 * is 1): a loop whose items are independent of each other, such as the images of a stack.
 * Each item is computed by one thread, so the results do not depend on the thread count. */
typedef void (*pynn_range_fn)(int64_t lo, int64_t hi, void *arg);
void pynn_parallel_for(int nthreads, int64_t n, pynn_range_fn body, void *arg);

#endif

/*
 * runtime.c: what the kernels need to know about the machine: how many threads to use, which
 * SIMD path the CPU runs (chosen at run time, never at build time), and the small thread pool
 * the parallel kernels run on.
 *
 * Why a pool of our own rather than OpenMP: libgomp's workers keep spinning after a parallel
 * region (unless OMP_WAIT_POLICY=passive is set before it loads, which would also slow every
 * other OpenMP library in the process), and a child forked after a parallel region hangs on its
 * next one. This pool's workers spin for at most SPIN_NS after a job (so back-to-back products
 * in a training loop do not pay a wake-up each) and then sleep on a condition variable, so an
 * idle process, such as the drawing pad between strokes, uses no CPU; and a forked child starts
 * a fresh pool. Small problems never wake the pool at all (pynn_threads_for).
 * It sits at the top of csrc/ because every parallel kernel, fast or image, runs on it; it
 * computes nothing itself.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#include "runtime.h"
#include "fast/fast.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 64
#define MAX_PARTS 16             /* parts of one pynn_parallel_parts job: a bit each in the claim word */
#define SPIN_NS 200000L          /* how long an idle worker spins before it sleeps */
#define WAIT_SPIN_NS 50000L      /* how long a thread spins at a barrier before it sleeps */
#define MIN_FLOPS_PER_THREAD 2e6 /* below this, waking a second thread costs more than it saves */
#define MIN_FLOPS_AWAKE 1e5      /* ... unless the workers are still spinning from the last job */
#define MIN_BYTES_AWAKE 3e4      /* the same for a job bound by reading weights from L2 (one
                                  * digit's layer): each thread's share of them */
#define MIN_BYTES_STREAMED 2e5   /* the same for one row times a matrix, bound by one read a
                                  * flop: each thread's share of the matrix */

static int num_threads = 0;     /* 0: not set yet, use all cores */

/* ---- thread count ---- */

static int cores(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int pynn_set_num_threads(int n) {
    if (n < 1 || n > 1024) return PYNN_ERR_ARG;
    __atomic_store_n(&num_threads, n, __ATOMIC_RELAXED);
    return PYNN_OK;
}

/* the default: the CPUs this process may run on, counted once (sched_getaffinity is a system
 * call, which on a virtual machine costs as much as a digit's first layer), and again in a
 * forked child */
static int default_threads = 0;

int pynn_get_num_threads(void) {
    int n = __atomic_load_n(&num_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    n = __atomic_load_n(&default_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    n = cores();
    n = n > MAX_THREADS ? MAX_THREADS : n;
    __atomic_store_n(&default_threads, n, __ATOMIC_RELAXED);
    return n;
}

const char *pynn_cpu_features(void) {
    return pynn_kernels()->name;
}

/* ---- the pool ---- */

static struct {
    pthread_mutex_t busy;        /* one job at a time; a second caller runs alone */
    pthread_mutex_t lock;        /* guards the sleep/wake hand-off */
    pthread_cond_t wake;
    int workers;                 /* workers started (tids 1..workers) */
    int sleepers;
    unsigned generation;         /* bumped for every job */
    pynn_job_fn fn;
    void *arg;
    int remaining;               /* workers of the current job not yet done */
    int caller_sleeping;         /* the caller sleeps on `remaining` */
    int bar_sleepers;            /* threads asleep at the barrier */
    int bar_count;               /* barrier among the job's threads */
    unsigned bar_generation;
    uint64_t job;                /* the posted job, one word: generation << 32 | parts << 31 |
                                  * threads (parts: pynn_parallel_parts, else pynn_parallel) */
    uint64_t claim;              /* parts: generation << 32 | parts << 16 | parts claimed */
    unsigned parts_done;
    int parts_sleepers;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static unsigned load_u(unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* wait until *p != old: spin for a while (the other threads are usually a few microseconds
 * away), then sleep in the kernel, counted in *sleepers, so that a thread whose partner lost
 * its core on a busy machine gives its own core away instead of burning it */
static void wait_change(unsigned *p, unsigned old, int *sleepers) {
    long start = 0;
    for (int spins = 0; __atomic_load_n(p, __ATOMIC_SEQ_CST) == old; spins++) {
        cpu_relax();
        if ((spins & 63) != 63) continue;
        long t = now_ns();
        if (start == 0) start = t;
        if (t - start < WAIT_SPIN_NS) continue;
#ifdef __linux__
        __atomic_add_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(p, __ATOMIC_SEQ_CST) == old)
            syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
        __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
        return;
#else
        sched_yield();
#endif
    }
}

/* after changing *p: wake whoever sleeps on it */
static void wake_all(unsigned *p, int *sleepers) {
#ifdef __linux__
    if (__atomic_load_n(sleepers, __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)p; (void)sleepers;
#endif
}

static unsigned start_generation[MAX_THREADS];

/* A worker woken from sleep is often placed on the CPU of the thread that woke it (its recent
 * load is low, so the scheduler takes it for a short helper), and the two then take turns on
 * one CPU for tens of milliseconds until the load balancer moves one: a two-thread product ran
 * at half the speed of one thread after every pause. So a woken worker that finds itself on
 * the caller's CPU moves itself to another CPU it may run on, and then lets the scheduler
 * place it freely again (which does not move it back). Only on waking: sched_getcpu can be a
 * system call in a virtual machine, too dear for every job. */
static int caller_cpu = -1;

static void note_callers_cpu(void) {
#ifdef __linux__
    __atomic_store_n(&caller_cpu, sched_getcpu(), __ATOMIC_RELAXED);
#endif
}

/* the CPUs this thread may run on (*allowed), and the same without the caller's last CPU
 * (*others); false when there is no other CPU to go to, or the caller's is not known */
static int others_than_callers(cpu_set_t *allowed, cpu_set_t *others) {
#if defined(__linux__) && defined(CPU_COUNT)
    int cpu = __atomic_load_n(&caller_cpu, __ATOMIC_RELAXED);
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof(*allowed), allowed) != 0)
        return 0;
    *others = *allowed;
    CPU_CLR(cpu, others);
    return CPU_COUNT(others) > 0;
#else
    (void)allowed; (void)others;
    return 0;
#endif
}

static void leave_callers_cpu(void) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t allowed, others;
    if (sched_getcpu() != __atomic_load_n(&caller_cpu, __ATOMIC_RELAXED)) return;
    if (others_than_callers(&allowed, &others) &&
        sched_setaffinity(0, sizeof(others), &others) == 0)
        sched_setaffinity(0, sizeof(allowed), &allowed);
#endif
}

/* Moving after waking comes late: the woken worker first has to get the caller's CPU, which
 * the caller, busy with the job, keeps for up to a scheduler tick (a product after a pause ran
 * at one thread's speed for a millisecond and more). So a worker about to sleep first leaves
 * the CPU the caller last posted from out of its affinity mask, where the scheduler will wake
 * it on another CPU; awake, it takes back the mask it had, `saved`. Returns whether it moved. */
static int sleep_off_callers_cpu(cpu_set_t *saved) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t others;
    return others_than_callers(saved, &others) &&
           sched_setaffinity(0, sizeof(others), &others) == 0;
#else
    (void)saved;
    return 0;
#endif
}

static void wake_anywhere(const cpu_set_t *saved) {
#if defined(__linux__) && defined(CPU_COUNT)
    sched_setaffinity(0, sizeof(*saved), saved);
#else
    (void)saved;
#endif
}

/* claim and run the parts of job `gen` until none is left: first part `tid` (so that a part
 * goes to the same thread each time, whose cache keeps its data), then any other. A part is
 * claimed by one compare-and-swap on a word that names the job (generation << 32 | parts << 16
 * | a bit for each part claimed), so a thread that comes late (the job done, or another
 * posted) claims nothing and never touches a finished job's arguments; the caller waits only
 * for the parts that were claimed, which are running. */
static void run_parts(unsigned gen, int tid) {
    for (;;) {
        uint64_t w = __atomic_load_n(&pool.claim, __ATOMIC_ACQUIRE);
        unsigned n = (unsigned)(w >> 16) & 0xFFFFu, taken = (unsigned)w & 0xFFFFu;
        if ((unsigned)(w >> 32) != gen || taken == (1u << n) - 1) return;
        unsigned part = (unsigned)tid % n;
        if (taken & (1u << part)) part = (unsigned)__builtin_ctz(~taken);   /* any free part */
        if (!__atomic_compare_exchange_n(&pool.claim, &w, w | (1u << part), 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        unsigned fp = pynn_flush_denormals();
        pool.fn((int)part, (int)n, pool.arg);   /* set before the claim word was published */
        pynn_restore_denormals(fp);
        __atomic_add_fetch(&pool.parts_done, 1, __ATOMIC_SEQ_CST);
        wake_all(&pool.parts_done, &pool.parts_sleepers);
    }
}

static void *worker_main(void *arg) {
    int tid = (int)(intptr_t)arg;
    /* the generation before the job that started this worker: that job is still to be run,
     * even when this thread first runs after it was posted */
    unsigned seen = start_generation[tid];
    for (;;) {
        long start = now_ns();
        for (int spins = 0; load_u(&pool.generation) == seen; spins++) {
            cpu_relax();
            if ((spins & 255) == 255 && now_ns() - start > SPIN_NS) {
                cpu_set_t saved;
                int moved = sleep_off_callers_cpu(&saved);
                pthread_mutex_lock(&pool.lock);
                while (load_u(&pool.generation) == seen) {
                    pool.sleepers++;
                    pthread_cond_wait(&pool.wake, &pool.lock);
                    pool.sleepers--;
                }
                pthread_mutex_unlock(&pool.lock);
                if (moved) wake_anywhere(&saved);
                else leave_callers_cpu();
                break;
            }
        }
        /* the job as one word, and only once its generation is the one posted: a worker that
         * lags behind a parts job (whose caller does not wait for it) may find the next job
         * half posted, and waits for it */
        unsigned gen = load_u(&pool.generation);
        uint64_t job = __atomic_load_n(&pool.job, __ATOMIC_ACQUIRE);
        if ((unsigned)(job >> 32) != gen) continue;
        int parts = (int)(job >> 31) & 1, nthreads = (int)(job & 0x7FFFFFFFu);
        seen = gen;
        if (parts) {
            run_parts(gen, tid);
        } else if (tid < nthreads) {
            unsigned fp = pynn_flush_denormals();
            pool.fn(tid, nthreads, pool.arg);
            pynn_restore_denormals(fp);
            __atomic_sub_fetch(&pool.remaining, 1, __ATOMIC_SEQ_CST);
            wake_all((unsigned *)&pool.remaining, &pool.caller_sleeping);
        }
    }
    return NULL;
}

/* a forked child has none of the parent's workers: start over */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.workers = pool.sleepers = 0;
    pool.remaining = pool.bar_count = pool.caller_sleeping = pool.bar_sleepers = 0;
    pool.parts_sleepers = 0;
    pool.claim = 0;
    default_threads = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* start workers up to tid n-1; returns how many threads the pool can run now */
static int pool_grow(int n) {
    pthread_once(&atfork_once, register_atfork);
    while (pool.workers < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[pool.workers + 1] = pool.generation;
        int rc = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)(pool.workers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool.workers++;
    }
    return pool.workers + 1 < n ? pool.workers + 1 : n;
}

/* Threads for a job of `flops`: sleeping workers take ~10-50 us to wake, so small jobs run
 * alone; but while the workers are still spinning after a recent job (a training loop, a run
 * of products), handing them half of a small product pays. The answer never changes results:
 * every element is computed the same way whichever thread computes it. */
/* as many threads as get at least `per_thread` flops each, within the thread count */
static int share_every_job = 0;     /* pynn_share_every_job */

int pynn_share_every_job(int on) {
    __atomic_store_n(&share_every_job, on != 0, __ATOMIC_RELAXED);
    return PYNN_OK;
}

static int sharing_every_job(void) { return __atomic_load_n(&share_every_job, __ATOMIC_RELAXED); }

static int threads_at(double flops, double per_thread) {
    int n = pynn_get_num_threads();
    if (sharing_every_job()) return n;
    int useful = (int)(flops / per_thread);
    if (useful < 1) useful = 1;
    return n < useful ? n : useful;
}

int pynn_threads_for(double flops) {
    int awake = __atomic_load_n(&pool.workers, __ATOMIC_RELAXED) > 0 &&
                __atomic_load_n(&pool.sleepers, __ATOMIC_RELAXED) == 0;
    return threads_at(flops, awake ? MIN_FLOPS_AWAKE : MIN_FLOPS_PER_THREAD);
}

int pynn_threads_for_steps(double step_flops, int64_t steps) {
    if ((double)steps * step_flops < MIN_FLOPS_PER_THREAD && !sharing_every_job())
        return 1;                                                      /* not worth a wake-up */
    return threads_at(step_flops, MIN_FLOPS_AWAKE);
}

#define STREAM_NS 100000L     /* calls closer than this are a stream */

int pynn_stream_call(void) {
    static long last_call = 0;
    long now = now_ns();
    long before = __atomic_exchange_n(&last_call, now, __ATOMIC_RELAXED);
    return now - before <= STREAM_NS || sharing_every_job();
}

int pynn_threads_for_awake(double flops) {
    return threads_at(flops, MIN_FLOPS_AWAKE);
}

int pynn_threads_for_reads(double bytes) {
    return threads_at(bytes, MIN_BYTES_AWAKE);
}

int pynn_threads_for_streams(double bytes) {
    return threads_at(bytes, MIN_BYTES_STREAMED);
}

/* publish the next generation's job word (kind and thread count in job_bits; fn, arg and the
 * counts set before) and wake the sleeping workers */
static void post_job(uint64_t job_bits) {
    unsigned gen = load_u(&pool.generation) + 1;
    __atomic_store_n(&pool.job, (uint64_t)gen << 32 | job_bits, __ATOMIC_RELEASE);
    pthread_mutex_lock(&pool.lock);
    __atomic_store_n(&pool.generation, gen, __ATOMIC_RELEASE);
    if (pool.sleepers > 0) {
        note_callers_cpu();
        pthread_cond_broadcast(&pool.wake);
    }
    pthread_mutex_unlock(&pool.lock);
}

void pynn_parallel(int nthreads, pynn_job_fn fn, void *arg) {
    if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
    if (nthreads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(0, 1, arg);              /* alone, or another caller has the pool: run here */
        return;
    }
    nthreads = pool_grow(nthreads);
    pool.fn = fn;
    pool.arg = arg;
    pool.bar_count = 0;
    __atomic_store_n(&pool.remaining, nthreads - 1, __ATOMIC_RELAXED);
    post_job((uint64_t)nthreads);
    fn(0, nthreads, arg);
    for (int left; (left = __atomic_load_n(&pool.remaining, __ATOMIC_SEQ_CST)) > 0;)
        wait_change((unsigned *)&pool.remaining, (unsigned)left, &pool.caller_sleeping);
    pthread_mutex_unlock(&pool.busy);
}

void pynn_parallel_parts(int nthreads, int nparts, pynn_job_fn fn, void *arg) {
    if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
    if (nthreads > nparts) nthreads = nparts;
    if (nthreads <= 1 || nparts > MAX_PARTS || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int i = 0; i < nparts; i++) fn(i, nparts, arg);
        return;
    }
    pool_grow(nthreads);
    pool.fn = fn;
    pool.arg = arg;
    __atomic_store_n(&pool.parts_done, 0, __ATOMIC_RELEASE);
    /* the claim word names the generation post_job is about to publish (only this caller, who
     * holds `busy`, moves the generation) */
    unsigned gen = load_u(&pool.generation) + 1;
    __atomic_store_n(&pool.claim, (uint64_t)gen << 32 | (uint64_t)nparts << 16, __ATOMIC_RELEASE);
    post_job((uint64_t)1 << 31 | (uint64_t)nthreads);
    run_parts(gen, 0);              /* the caller claims parts too, all of them if need be */
    for (unsigned done; (done = __atomic_load_n(&pool.parts_done, __ATOMIC_SEQ_CST)) < (unsigned)nparts;)
        wait_change(&pool.parts_done, done, &pool.parts_sleepers);
    pthread_mutex_unlock(&pool.busy);
}

struct range_job {
    int64_t n;
    pynn_range_fn body;
    void *arg;
};

static void range_part(int part, int nparts, void *arg) {
    const struct range_job *job = arg;
    int64_t lo, hi;
    pynn_share(job->n, 1, part, nparts, &lo, &hi);
    if (lo < hi) job->body(lo, hi, job->arg);
}

void pynn_parallel_for(int nthreads, int64_t n, pynn_range_fn body, void *arg) {
    if (n <= 0) return;
    if (nthreads > n) nthreads = (int)n;
    if (nthreads > MAX_PARTS) nthreads = MAX_PARTS;
    if (nthreads <= 1) {
        body(0, n, arg);
        return;
    }
    struct range_job job = {n, body, arg};
    pynn_parallel_parts(nthreads, nthreads, range_part, &job);
}

void pynn_barrier(int nthreads) {
    if (nthreads <= 1) return;
    unsigned gen = load_u(&pool.bar_generation);
    if (__atomic_add_fetch(&pool.bar_count, 1, __ATOMIC_ACQ_REL) == nthreads) {
        __atomic_store_n(&pool.bar_count, 0, __ATOMIC_RELAXED);
        __atomic_fetch_add(&pool.bar_generation, 1, __ATOMIC_SEQ_CST);
        wake_all(&pool.bar_generation, &pool.bar_sleepers);
    } else {
        wait_change(&pool.bar_generation, gen, &pool.bar_sleepers);
    }
}

/*
 * fast/optim.c: one optimiser step over all of a network's parameter arrays in one call,
 * shared among the threads: the update the layer-by-layer training step takes after its
 * backward pass. Every element takes ref/optim.c's formula (its very functions, on pieces of
 * the arrays), so the bits are those of one pynn_*_update call per array, whatever the split.
 *
 * The arrays are laid end to end and cut into one run per thread; each thread first checks
 * that its run of the gradients is finite, and (when asked) after a barrier all of them step,
 * or none.
 */
#include <string.h>
#include "runtime.h"

#define STEP_MAX_THREADS 64

struct step_job {
    const struct pynn_optimizer *opt;
    float *const *w;
    const float *const *dw;
    const int64_t *n;
    int64_t count, total, step;
    int check;
    int bad[STEP_MAX_THREADS];
};

/* whether x[0..n) holds a NaN or an Inf: an exponent of all ones */
static int any_not_finite(const float *x, int64_t n) {
    uint32_t hit = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        hit |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return hit != 0;
}

/* the piece [lo, hi) of the arrays laid end to end, array by array: f(job, p, first, len) */
typedef int (*piece_fn)(const struct step_job *j, int64_t p, int64_t first, int64_t len);

static int each_piece(const struct step_job *j, int64_t lo, int64_t hi, piece_fn f) {
    int64_t start = 0, any = 0;
    for (int64_t p = 0; p < j->count && start < hi; start += j->n[p], p++) {
        int64_t a = lo > start ? lo - start : 0, b = hi - start < j->n[p] ? hi - start : j->n[p];
        if (a < b) any |= f(j, p, a, b - a);
    }
    return (int)any;
}

static int check_piece(const struct step_job *j, int64_t p, int64_t first, int64_t len) {
    return any_not_finite(j->dw[p] + first, len);
}

static int step_piece(const struct step_job *j, int64_t p, int64_t first, int64_t len) {
    const struct pynn_optimizer *o = j->opt;
    float *w = j->w[p] + first;
    const float *g = j->dw[p] + first;
    switch (o->kind) {       /* the arguments were checked before any thread started */
    case PYNN_OPT_SGD:
        return pynn_sgd_update(w, g, len, o->lr, o->weight_decay);
    case PYNN_OPT_MOMENTUM:
        return pynn_momentum_update(w, o->state1[p] + first, g, len, o->lr, o->momentum,
                                    o->weight_decay);
    default:
        return pynn_adam_update(w, o->state1[p] + first, o->state2[p] + first, g, len, o->lr,
                                o->beta1, o->beta2, o->eps, o->weight_decay, j->step);
    }
}

static void step_job(int tid, int nt, void *arg) {
    struct step_job *j = arg;
    int64_t lo, hi;
    pynn_share(j->total, 16, tid, nt, &lo, &hi);
    j->bad[tid] = each_piece(j, lo, hi, check_piece);
    if (j->check) {
        pynn_barrier(nt);
        for (int t = 0; t < nt; t++)
            if (j->bad[t]) return;
    }
    each_piece(j, lo, hi, step_piece);
}

int pynn_optimizer_step(struct pynn_optimizer *opt, float **w, const float **dw,
                        const int64_t *n, int64_t count, int check_finite, int *finite) {
    if (opt == NULL || finite == NULL) return PYNN_ERR_NULL;
    if (count < 0) return PYNN_ERR_SIZE;
    if (opt->kind != PYNN_OPT_SGD && opt->kind != PYNN_OPT_MOMENTUM && opt->kind != PYNN_OPT_ADAM)
        return PYNN_ERR_ARG;
    if (opt->step < 0 || opt->step == INT64_MAX) return PYNN_ERR_ARG;
    /* the hyperparameters, checked as the updates check them: a call over no elements */
    switch (opt->kind) {
    case PYNN_OPT_SGD:
        PYNN_TRY(pynn_sgd_update(NULL, NULL, 0, opt->lr, opt->weight_decay));
        break;
    case PYNN_OPT_MOMENTUM:
        PYNN_TRY(pynn_momentum_update(NULL, NULL, NULL, 0, opt->lr, opt->momentum,
                                      opt->weight_decay));
        break;
    default:
        PYNN_TRY(pynn_adam_update(NULL, NULL, NULL, NULL, 0, opt->lr, opt->beta1, opt->beta2,
                                  opt->eps, opt->weight_decay, opt->step + 1));
    }
    if (count > 0 && (w == NULL || dw == NULL || n == NULL)) return PYNN_ERR_NULL;
    if (count > 0 && opt->kind != PYNN_OPT_SGD &&
        (opt->state1 == NULL || (opt->kind == PYNN_OPT_ADAM && opt->state2 == NULL)))
        return PYNN_ERR_NULL;
    int64_t total = 0;
    for (int64_t p = 0; p < count; p++) {
        if (n[p] < 0) return PYNN_ERR_SIZE;
        if (n[p] > INT64_MAX - total) return PYNN_ERR_OVERFLOW;
        total += n[p];
        if (n[p] > 0 && (w[p] == NULL || dw[p] == NULL)) return PYNN_ERR_NULL;
        if (n[p] > 0 && opt->kind != PYNN_OPT_SGD &&
            (opt->state1[p] == NULL || (opt->kind == PYNN_OPT_ADAM && opt->state2[p] == NULL)))
            return PYNN_ERR_NULL;
    }
    struct step_job j = {opt, w, dw, n, count, total, opt->step + 1, check_finite != 0, {0}};
    /* bound by moving the arrays: 20 bytes an element for momentum (three read, two written) */
    int nt = pynn_threads_for_streams(20.0 * (double)total);
    if (nt > STEP_MAX_THREADS) nt = STEP_MAX_THREADS;
    unsigned fp = pynn_flush_denormals();    /* as the pool's workers do */
    if (nt > 1)
        pynn_parallel(nt, step_job, &j);
    else
        step_job(0, 1, &j);
    pynn_restore_denormals(fp);
    int bad = 0;
    for (int t = 0; t < nt; t++) bad |= j.bad[t];
    *finite = !bad;
    if (!bad || !check_finite) opt->step++;
    return PYNN_OK;
}

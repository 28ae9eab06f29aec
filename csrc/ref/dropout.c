/*
 * dropout.c: inverted dropout (Srivastava et al. 2014), the regulariser that drops each hidden
 * unit's activation with probability p during training.
 *
 * "Inverted": the kept units are scaled by 1/(1-p) in training, so the expected activation is
 * unchanged and prediction runs the network as it is, with no dropout and no rescaling.
 * The keep/drop draws come from a counter-based generator (splitmix64 of the element's index
 * mixed with a seed and a stream number), so a mask needs no state: the same (seed, stream)
 * gives the same mask, and the caller takes a new stream per training step.
 *
 * A readable reference kernel (csrc/ref/): plain loops a student can set beside the paper;
 * no intrinsics, no threads, no tricks for speed.
 */
#include "internal.h"

/* splitmix64's finaliser: a bijection of 64 bits whose outputs pass as independent draws */
static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* a (n) floats, mask (n) floats, both written: element i is kept with probability 1-p, and then
 * mask[i] = 1/(1-p), else mask[i] = 0; a[i] *= mask[i]. p in [0,1), else PYNN_ERR_ARG. */
int pynn_dropout_forward(float *a, float *mask, int64_t n, float p, uint64_t seed,
                         uint64_t stream) {
    if (n < 0) return PYNN_ERR_SIZE;
    if (!(p >= 0.0f && p < 1.0f)) return PYNN_ERR_ARG;       /* NaN fails too */
    if (n > 0 && (a == NULL || mask == NULL)) return PYNN_ERR_NULL;
    float scale = 1.0f / (1.0f - p);
    /* drop when the top 53 bits, as a uniform number u in [0,1), fall below p */
    double threshold = (double)p * 9007199254740992.0;          /* p * 2^53 */
    uint64_t base = seed ^ (stream * 0x9E3779B97F4A7C15ULL);
    base = splitmix64(base);                                      /* nearby streams far apart */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(base + (uint64_t)i) >> 11;
        float m = (double)r < threshold ? 0.0f : scale;
        mask[i] = m;
        a[i] *= m;
    }
    return PYNN_OK;
}

/* da (n) *= mask (n): the gradient flows through the kept units, scaled as they were */
int pynn_dropout_backward(float *da, const float *mask, int64_t n) {
    if (n < 0) return PYNN_ERR_SIZE;
    if (n > 0 && (da == NULL || mask == NULL)) return PYNN_ERR_NULL;
    for (int64_t i = 0; i < n; i++) da[i] *= mask[i];
    return PYNN_OK;
}

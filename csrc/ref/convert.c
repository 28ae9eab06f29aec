/*
 * convert.c: the small jobs at the network's edges, kept in C so that no arithmetic on the
 * training or inference path runs in numpy: pixels to floats on the way in, the most probable
 * class on the way out.
 *
 * A readable reference kernel (csrc/ref/): plain loops a student can set beside the paper;
 * no intrinsics, no threads, no tricks for speed.
 */
#include "internal.h"

/* out[i] = inp[i] * scale: uint8 pixels (0..255) to floats, e.g. scale = 1/255 */
int pynn_scale_u8(float *out, const uint8_t *inp, int64_t n, float scale) {
    if (n < 0) return PYNN_ERR_SIZE;
    if (n > 0 && (out == NULL || inp == NULL)) return PYNN_ERR_NULL;
    for (int64_t i = 0; i < n; i++) out[i] = (float)inp[i] * scale;
    return PYNN_OK;
}

/* out[b] = the column of the largest value in row b of x (B,n); the first one on ties.
 * A NaN anywhere in a row makes that row's answer -1: no class is the right answer. */
int pynn_argmax_rows(int64_t *out, const float *x, int64_t B, int64_t n) {
    PYNN_TRY(pynn_check_bn(B, n));
    if (B > 0 && n == 0) return PYNN_ERR_SIZE;
    if (B > 0 && (out == NULL || x == NULL)) return PYNN_ERR_NULL;
    for (int64_t b = 0; b < B; b++) {
        const float *x_b = x + b * n;
        int64_t best = 0;
        for (int64_t j = 0; j < n; j++) {
            if (x_b[j] != x_b[j]) { best = -1; break; }
            if (x_b[j] > x_b[best]) best = j;
        }
        out[b] = best;
    }
    return PYNN_OK;
}

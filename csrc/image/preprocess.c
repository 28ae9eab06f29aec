/*
 * preprocess.c: turning a drawing into the input MNIST's digits were made into.
 *
 * MNIST's recipe (LeCun et al.): the digit's bounding box is scaled so that its longer side is
 * 20 pixels, anti-aliased, and the result is placed in a 28x28 field so that its centre of mass
 * is the centre. The kernels here are the pieces of that recipe: drawing strokes as thick lines
 * on a fine grid, averaging a grid down (or up) over areas, measuring where the ink is and how
 * thick it is, and moving a stroke's weight towards a target. pynn/preprocess.py strings them
 * together; it keeps only the bookkeeping (a bounding box, a scale, an offset).
 *
 * Images are (H,W) row-major; pixel (r,c) covers the square [r,r+1) x [c,c+1), so its centre
 * is (r+0.5, c+0.5). Plain loops, no intrinsics: a 28x28 digit is small enough. A stack of
 * images (pynn_stroke_width) is shared among the pool's threads, an image to a thread.
 * Image kernels (csrc/image/): they prepare the network's input and never touch a network.
 */
#include <math.h>
#include <string.h>
#include "runtime.h"

static int check_image(const void *p, int64_t H, int64_t W) {
    if (H < 0 || W < 0) return PYNN_ERR_SIZE;
    if (pynn_mul_size(H, W) < 0) return PYNN_ERR_OVERFLOW;
    if (H * W > 0 && p == NULL) return PYNN_ERR_NULL;
    return PYNN_OK;
}

/* v clamped to [lo, hi] before it becomes an index: never converts an out-of-range float */
static int64_t clamp_index(double v, int64_t lo, int64_t hi) {
    if (!(v > (double)lo)) return lo;      /* also catches NaN */
    if (v > (double)hi) return hi;
    return (int64_t)v;
}

/* the segment a -> b (a lone point when a == b) drawn into canvas (H,W) with a pen of the given
 * radius: canvas = max(canvas, coverage), coverage falling from 1 to 0 over the one pixel across
 * the pen's edge, which anti-aliases it */
static void draw_segment(float *canvas, int64_t H, int64_t W, double ax, double ay, double bx,
                         double by, double radius) {
    double reach = radius + 1.0;
    int64_t r0 = clamp_index(floor(fmin(ay, by) - reach), 0, H);
    int64_t r1 = clamp_index(ceil(fmax(ay, by) + reach), 0, H);
    int64_t c0 = clamp_index(floor(fmin(ax, bx) - reach), 0, W);
    int64_t c1 = clamp_index(ceil(fmax(ax, bx) + reach), 0, W);
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    /* squared distances: beyond `outer` nothing is covered, within `inner` all of it, so only
     * the one-pixel ring between them needs a square root */
    double outer = (radius + 0.5) * (radius + 0.5);
    double inner = radius > 0.5 ? (radius - 0.5) * (radius - 0.5) : 0.0;
    for (int64_t r = r0; r < r1; r++) {
        float *row = canvas + r * W;
        double py = r + 0.5 - ay;
        for (int64_t c = c0; c < c1; c++) {
            if (row[c] >= 1.0f) continue;          /* already fully covered */
            double px = c + 0.5 - ax;
            /* distance from the pixel centre to the nearest point of the segment */
            double t = len2 > 0.0 ? (px * dx + py * dy) / len2 : 0.0;
            t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
            double ex = px - t * dx, ey = py - t * dy, d2 = ex * ex + ey * ey;
            if (d2 >= outer) continue;
            float v = d2 <= inner ? 1.0f : (float)fmin(1.0, radius + 0.5 - sqrt(d2));
            if (v > row[c]) row[c] = v;
        }
    }
}

/* Strokes drawn into canvas (H,W): canvas = max(canvas, coverage). xy (P,2) holds the points
 * of all strokes one after another as (x,y), lengths (S) how many belong to each stroke. A point
 * lands at (x*scale + off_x, y*scale + off_y) in canvas pixels. A stroke is the set of points
 * within `radius` of its polyline (a lone point is a disc).
 * A pad sends points much closer together than its pen is wide, and every segment costs the
 * pixels around it: points nearer than radius/2 to the last one drawn are passed over. On a
 * curve of radius rho the chord then strays at most (radius/2)^2 / (8 rho) from it, under a
 * sixteenth of the pen's radius for any curve the pen can draw (rho >= radius/2). */
int pynn_raster_strokes(float *canvas, int64_t H, int64_t W, const float *xy,
                        const int64_t *lengths, int64_t n_strokes, float scale, float off_x,
                        float off_y, float radius) {
    PYNN_TRY(check_image(canvas, H, W));
    if (n_strokes < 0) return PYNN_ERR_SIZE;
    if (n_strokes > 0 && lengths == NULL) return PYNN_ERR_NULL;
    if (!isfinite(scale) || !isfinite(off_x) || !isfinite(off_y) || !(radius >= 0.0f)
        || !isfinite(radius)) return PYNN_ERR_ARG;
    if (H * W == 0) return PYNN_OK;    /* no pixels: a segment's rows would hold nothing */
    double step2 = 0.25 * (double)radius * radius;
    int64_t first = 0;
    for (int64_t s = 0; s < n_strokes; s++) {
        int64_t n = lengths[s];
        if (n < 0) return PYNN_ERR_SIZE;
        if (n > 0 && xy == NULL) return PYNN_ERR_NULL;
        const float *pts = xy + 2 * first;
        int64_t p = 0;
        while (p < n) {
            double ax = pts[2 * p] * (double)scale + off_x, ay = pts[2 * p + 1] * (double)scale + off_y;
            double bx = ax, by = ay;
            int64_t q = p;
            while (q + 1 < n) {            /* the next point far enough away, or the last one */
                q++;
                bx = pts[2 * q] * (double)scale + off_x;
                by = pts[2 * q + 1] * (double)scale + off_y;
                if (!isfinite(bx) || !isfinite(by)) return PYNN_ERR_ARG;
                if ((bx - ax) * (bx - ax) + (by - ay) * (by - ay) >= step2) break;
            }
            if (!isfinite(ax) || !isfinite(ay)) return PYNN_ERR_ARG;
            draw_segment(canvas, H, W, ax, ay, bx, by, radius);
            if (q == n - 1) break;
            p = q;
        }
        first += n;
    }
    return PYNN_OK;
}

#define PYNN_RESAMPLE_SPAN 16

/* length of [a,b) inside the pixel [r, r+1) */
static inline double overlap(double a, double b, int64_t r) {
    double lo = a > (double)r ? a : (double)r, hi = b < (double)(r + 1) ? b : (double)(r + 1);
    return hi > lo ? hi - lo : 0.0;
}

/* out (h,w) from inp (H,W) by area averaging: out pixel (i,j) is gain times the mean of inp over
 * the rectangle [y0 + i*sy, y0 + (i+1)*sy) x [x0 + j*sx, x0 + (j+1)*sx), inp being 0 outside
 * itself. sy, sx > 1 shrink (every input pixel counts by the area it shares with the output
 * pixel, which is what anti-aliases), < 1 enlarge; fractional y0, x0 shift by part of a pixel. */
int pynn_resample_area(float *out, int64_t h, int64_t w, const float *inp, int64_t H, int64_t W,
                       float y0, float x0, float sy, float sx, float gain) {
    PYNN_TRY(check_image(out, h, w));
    PYNN_TRY(check_image(inp, H, W));
    if (!isfinite(y0) || !isfinite(x0) || !(sy > 0.0f) || !(sx > 0.0f) || !isfinite(sy)
        || !isfinite(sx) || !isfinite(gain)) return PYNN_ERR_ARG;
    if (h * w == 0) return PYNN_OK;
    if (H * W == 0) {                  /* nothing to average: inp is 0 everywhere */
        memset(out, 0, (size_t)(h * w) * sizeof(float));
        return PYNN_OK;
    }
    double norm = gain / ((double)sy * (double)sx);
    double wx[PYNN_RESAMPLE_SPAN];     /* one output column's weights, when it spans few inputs */
    for (int64_t i = 0; i < h; i++) {
        double ya = y0 + (double)i * sy, yb = ya + sy;
        int64_t r0 = clamp_index(floor(ya), 0, H), r1 = clamp_index(ceil(yb), 0, H);
        for (int64_t j = 0; j < w; j++) {
            double xa = x0 + (double)j * sx, xb = xa + sx;
            int64_t c0 = clamp_index(floor(xa), 0, W), c1 = clamp_index(ceil(xb), 0, W);
            int cached = c1 - c0 <= PYNN_RESAMPLE_SPAN;
            for (int64_t c = c0; cached && c < c1; c++) wx[c - c0] = overlap(xa, xb, c);
            double acc = 0.0;
            for (int64_t r = r0; r < r1; r++) {
                const float *row = inp + r * W;
                double racc = 0.0;
                if (cached)
                    for (int64_t c = c0; c < c1; c++) racc += wx[c - c0] * row[c];
                else
                    for (int64_t c = c0; c < c1; c++) racc += overlap(xa, xb, c) * row[c];
                acc += overlap(ya, yb, r) * racc;
            }
            out[i * w + j] = (float)(acc * norm);
        }
    }
    return PYNN_OK;
}

/* m = {mass, cy, cx, edge} of inp (H,W): mass the sum of the values, (cy,cx) their centre of
 * mass in pixel units (0,0 when there is no mass), edge the summed gradient magnitude, which for
 * a stroke of soft or hard edges is about the length of its outline. A stroke of width t and
 * length L has mass t*L and outline 2L, so 2*mass/edge estimates its width. */
int pynn_ink_moments(double *m, const float *inp, int64_t H, int64_t W) {
    PYNN_TRY(check_image(inp, H, W));
    if (m == NULL) return PYNN_ERR_NULL;
    double mass = 0.0, sy = 0.0, sx = 0.0, edge = 0.0;
    if (H * W == 0) H = W = 0;         /* no pixels: no rows to walk, however many are declared */
    for (int64_t r = 0; r < H; r++) {
        const float *row = inp + r * W, *below = r + 1 < H ? row + W : NULL;
        for (int64_t c = 0; c < W; c++) {
            double v = row[c];
            mass += v;
            sy += v * (r + 0.5);
            sx += v * (c + 0.5);
            double gx = (c + 1 < W ? row[c + 1] : 0.0f) - v, gy = (below ? below[c] : 0.0f) - v;
            if (gx != 0.0 || gy != 0.0) edge += sqrt(gx * gx + gy * gy);   /* ink is sparse */
        }
        /* the step from outside (0) into the first column and row */
        if (W > 0) edge += fabs((double)row[0]);   /* an empty row has no first column */
    }
    for (int64_t c = 0; c < W && H > 0; c++) edge += fabs((double)inp[c]);
    m[0] = mass;
    m[1] = mass > 0.0 ? sy / mass : 0.0;
    m[2] = mass > 0.0 ? sx / mass : 0.0;
    m[3] = edge;
    return PYNN_OK;
}

/* box = {r0, r1, c0, c1}: rows r0..r1-1 and columns c0..c1-1 hold every value > threshold of
 * inp (H,W); all zero when no value is above it */
int pynn_ink_bbox(int64_t *box, const float *inp, int64_t H, int64_t W, float threshold) {
    PYNN_TRY(check_image(inp, H, W));
    if (box == NULL) return PYNN_ERR_NULL;
    if (H * W == 0) H = W = 0;         /* no pixels: no rows to walk, however many are declared */
    int64_t r0 = H, r1 = 0, c0 = W, c1 = 0;
    for (int64_t r = 0; r < H; r++) {
        const float *row = inp + r * W;
        for (int64_t c = 0; c < W; c++) {
            if (row[c] > threshold) {
                if (r < r0) r0 = r;
                r1 = r + 1;
                if (c < c0) c0 = c;
                if (c + 1 > c1) c1 = c + 1;
            }
        }
    }
    if (r1 == 0) r0 = c0 = 0;
    box[0] = r0; box[1] = r1; box[2] = c0; box[3] = c1;
    return PYNN_OK;
}

struct stroke_job {
    float *out;
    const float *inp, *amount;
    int64_t H, W, size;
};

/* images [k0, k1) of pynn_stroke_width */
static void stroke_images(int64_t k0, int64_t k1, void *arg) {
    const struct stroke_job *job = arg;
    const int64_t H = job->H, W = job->W, size = job->size;
    for (int64_t k = k0; k < k1; k++) {
        const float *img = job->inp + k * size;
        float *dst = job->out + k * size;
        float a = job->amount[k], wa = fabsf(a);
        int grow = a > 0.0f;
        if (wa == 0.0f) {
            for (int64_t i = 0; i < size; i++) dst[i] = img[i];
            continue;
        }
        /* the 3x3 extreme is separable: first across each row into dst, then down each
         * column, keeping the rows above and at r (before they are overwritten) aside */
        for (int64_t r = 0; r < H; r++) {
            const float *row = img + r * W;
            for (int64_t c = 0; c < W; c++) {
                float e = row[c];
                float left = c > 0 ? row[c - 1] : 0.0f, right = c + 1 < W ? row[c + 1] : 0.0f;
                if (grow) { e = left > e ? left : e; e = right > e ? right : e; }
                else { e = left < e ? left : e; e = right < e ? right : e; }
                dst[r * W + c] = e;
            }
        }
        for (int64_t c = 0; c < W; c++) {
            float above = 0.0f;                      /* the row extreme of row r-1 */
            for (int64_t r = 0; r < H; r++) {
                float here = dst[r * W + c], below = r + 1 < H ? dst[(r + 1) * W + c] : 0.0f;
                float e = here;
                if (grow) { e = above > e ? above : e; e = below > e ? below : e; }
                else { e = above < e ? above : e; e = below < e ? below : e; }
                above = here;
                dst[r * W + c] = (1.0f - wa) * img[r * W + c] + wa * e;
            }
        }
    }
}

/* out (n,H,W): image k moved towards its 3x3 grey dilation (the brightest value around each
 * pixel) when amount[k] > 0, which widens a stroke by up to 2 pixels, or towards its 3x3 grey
 * erosion (the darkest) when amount[k] < 0, which narrows it; |amount| <= 1 is the blend.
 * Pixels outside the image count as 0. out must not overlap inp. */
int pynn_stroke_width(float *out, const float *inp, int64_t n, int64_t H, int64_t W,
                      const float *amount) {
    if (n < 0) return PYNN_ERR_SIZE;
    int64_t size = pynn_mul_size(H, W);
    if (H < 0 || W < 0) return PYNN_ERR_SIZE;
    if (size < 0 || pynn_mul_size(n, size) < 0) return PYNN_ERR_OVERFLOW;
    if (n * size == 0) return PYNN_OK;
    if (out == NULL || inp == NULL || amount == NULL) return PYNN_ERR_NULL;
    for (int64_t k = 0; k < n; k++)
        if (!(amount[k] >= -1.0f && amount[k] <= 1.0f)) return PYNN_ERR_ARG;
    struct stroke_job job = {out, inp, amount, H, W, size};
    unsigned fp = pynn_flush_denormals();
    pynn_parallel_for(pynn_threads_for(12.0 * (double)(n * size)), n, stroke_images, &job);
    pynn_restore_denormals(fp);
    return PYNN_OK;
}


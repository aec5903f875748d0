/* Resize (opsets 10-17) and the deprecated Upsample (opsets 7-9).
 *
 * Every output coordinate maps back to an input coordinate per axis
 * (coordinate_transformation_mode); the mode turns that coordinate into
 * taps: one input index (nearest), two (linear) or four (cubic), each with
 * a weight. The weights of an N-d output element are the products of its
 * per-axis weights, so linear and cubic run as one pass per resized axis,
 * last axis first, which sums in the same order as the ONNX reference.
 * Nearest is a single gather and works on every dtype.
 *
 * Backward (float32) is the adjoint of the same passes: nearest adds each
 * output's gradient to the pixel it copied; linear and cubic run the
 * transposed axis passes in the opposite order (first axis first), each
 * output's gradient spread onto its taps with the forward weights.
 * Extrapolated outputs (tf_crop_and_resize) get no gradient through, and
 * roi, scales and sizes get none. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

typedef enum { MODE_NEAREST, MODE_LINEAR, MODE_CUBIC } ResizeMode;

typedef enum {
    COORD_HALF_PIXEL,
    COORD_PYTORCH_HALF_PIXEL,
    COORD_ALIGN_CORNERS,
    COORD_ASYMMETRIC,
    COORD_TF_HALF_PIXEL_FOR_NN,
    COORD_TF_CROP_AND_RESIZE,
} CoordMode;

typedef enum {
    NEAREST_ROUND_PREFER_FLOOR,
    NEAREST_ROUND_PREFER_CEIL,
    NEAREST_FLOOR,
    NEAREST_CEIL,
} NearestMode;

typedef struct {
    ResizeMode mode;
    CoordMode coord;
    NearestMode nearest;
    double cubic_a;
    bool exclude_outside;
    float extrapolation;
    int rank;
    int64_t in[SH_MAX_RANK], out[SH_MAX_RANK];
    double scale[SH_MAX_RANK];   /* out / in as the transform uses it */
    double resized[SH_MAX_RANK]; /* in * scale: the spec's length_resized, not floored */
    double roi_start[SH_MAX_RANK], roi_end[SH_MAX_RANK]; /* tf_crop_and_resize */
} Resize;

/* The input taps of one output index along one axis. */
typedef struct {
    int64_t idx[4];
    float w[4];
    int n;
    bool outside; /* tf_crop_and_resize: the extrapolation value goes here */
} Taps;

static bool present(const OpCtx *c, int i) { return i >= 0 && i < c->n_in && c->in[i]; }

static bool is_upsample(const OpCtx *c) { return strcmp(c->node->op_type, "Upsample") == 0; }

/* Input positions move between versions: Upsample and Resize-10 take
 * (X, scales); Resize-11+ takes (X, roi, scales, sizes). */
static int scales_input(const OpCtx *c) { return is_upsample(c) || c->opset < 11 ? 1 : 2; }
static int sizes_input(const OpCtx *c) { return is_upsample(c) || c->opset < 11 ? -1 : 3; }
static int roi_input(const OpCtx *c) { return is_upsample(c) || c->opset < 11 ? -1 : 1; }

/* ---- attributes -------------------------------------------------------- */

static int pick(const OpCtx *c, const char *attr, const char *value, const char *const *names,
                int count, int *out)
{
    for (int i = 0; i < count; i++)
        if (strcmp(value, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return op_fail(c, SH_E_UNSUPPORTED, "%s '%s' is not supported", attr, value);
}

static int resize_attrs(const OpCtx *c, Resize *r)
{
    static const char *const modes[] = {"nearest", "linear", "cubic", "bilinear"};
    static const char *const coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                         "asymmetric", "tf_half_pixel_for_nn",
                                         "tf_crop_and_resize"};
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                           "ceil"};
    bool legacy = is_upsample(c) || c->opset < 11;
    int m = 0, v = 0, rc;
    if ((rc = pick(c, "mode", node_attr_str(c->node, "mode", "nearest"), modes, legacy ? 4 : 3, &m)) < 0)
        return rc;
    r->mode = m == 3 ? MODE_LINEAR : (ResizeMode)m; /* Upsample-7 spelled linear "bilinear" */
    if (legacy) {
        /* What the ONNX version converter maps Resize-10 onto. */
        r->coord = COORD_ASYMMETRIC;
        r->nearest = NEAREST_FLOOR;
        r->cubic_a = -0.75;
        r->exclude_outside = false;
        r->extrapolation = 0;
        return 0;
    }
    if ((rc = pick(c, "coordinate_transformation_mode",
                   node_attr_str(c->node, "coordinate_transformation_mode", "half_pixel"), coords,
                   6, &v)) < 0)
        return rc;
    r->coord = (CoordMode)v;
    if ((rc = pick(c, "nearest_mode", node_attr_str(c->node, "nearest_mode", "round_prefer_floor"),
                   nearests, 4, &v)) < 0)
        return rc;
    r->nearest = (NearestMode)v;
    r->cubic_a = node_attr_float(c->node, "cubic_coeff_a", -0.75f);
    r->exclude_outside = node_attr_int(c->node, "exclude_outside", 0) != 0;
    r->extrapolation = node_attr_float(c->node, "extrapolation_value", 0.0f);
    if (node_attr_int(c->node, "antialias", 0) != 0)
        return op_fail(c, SH_E_UNSUPPORTED, "antialias (opset 18) is not supported");
    if (node_attr(c->node, "axes"))
        return op_fail(c, SH_E_UNSUPPORTED, "attribute axes (opset 18) is not supported");
    return 0;
}

/* ---- output size --------------------------------------------------------- */

/* Scales as doubles: input (opset 9+) or, for Upsample-7, an attribute. */
static int read_scales(const OpCtx *c, double *scales, int *n)
{
    int i = scales_input(c);
    *n = -1;
    if (present(c, i) && c->in[i]->numel > 0) {
        const Tensor *t = c->in[i];
        if (t->dtype != SH_F32)
            return op_fail(c, SH_E_UNSUPPORTED, "scales (input %d) is %s; expected float32", i,
                           dtype_name(t->dtype));
        if (!t->data)
            return op_fail(c, SH_E_STATE, "scales (input %d) is not known when planning", i);
        if (t->numel > SH_MAX_RANK)
            return op_fail(c, SH_E_SHAPE, "scales has %lld values", (long long)t->numel);
        for (int64_t k = 0; k < t->numel; k++)
            scales[k] = tensor_f32(t)[k];
        *n = (int)t->numel;
        return 0;
    }
    const float *f;
    int k = is_upsample(c) ? node_attr_floats(c->node, "scales", &f) : -1;
    if (k > SH_MAX_RANK)
        return op_fail(c, SH_E_SHAPE, "scales has %d values", k);
    for (int j = 0; j < k; j++)
        scales[j] = f[j];
    *n = k;
    return 0;
}

/* Output dims: floor(in * scale) from scales, or sizes as given (then the
 * transform's scale is out / in). Exactly one of the two must be set. */
static int resize_dims(const OpCtx *c, Resize *r)
{
    const Shape *s = &c->in[0]->shape;
    double scales[SH_MAX_RANK];
    int ns, rc, zi = sizes_input(c);
    if ((rc = read_scales(c, scales, &ns)) < 0)
        return rc;
    bool have_sizes = present(c, zi) && c->in[zi]->numel > 0;
    r->rank = s->rank;
    memcpy(r->in, s->d, sizeof r->in);
    if (ns >= 0 && have_sizes)
        return op_fail(c, SH_E_ARG, "give scales or sizes, not both");
    if (ns < 0 && !have_sizes)
        return op_fail(c, SH_E_FORMAT, "needs scales or sizes");
    if (ns >= 0) {
        if (ns != s->rank)
            return op_fail(c, SH_E_SHAPE, "scales has %d values for an input of rank %d", ns, s->rank);
        for (int a = 0; a < s->rank; a++) {
            double o = floor((double)s->d[a] * scales[a]);
            if (!(scales[a] > 0) || !(o < 1e15))
                return op_fail(c, SH_E_ARG, "scale %g on axis %d is invalid", scales[a], a);
            r->out[a] = (int64_t)o;
            r->scale[a] = scales[a];
            r->resized[a] = (double)s->d[a] * scales[a];
        }
        return 0;
    }
    const Tensor *t = c->in[zi];
    if (t->dtype != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "sizes (input %d) is %s; expected int64", zi,
                       dtype_name(t->dtype));
    if (!t->data)
        return op_fail(c, SH_E_STATE, "sizes (input %d) is not known when planning", zi);
    if (t->numel != s->rank)
        return op_fail(c, SH_E_SHAPE, "sizes has %lld values for an input of rank %d",
                       (long long)t->numel, s->rank);
    for (int a = 0; a < s->rank; a++) {
        int64_t o = tensor_i64(t)[a];
        if (o < 0 || (s->d[a] == 0 && o > 0))
            return op_fail(c, SH_E_ARG, "size %lld on axis %d is invalid for input size %lld",
                           (long long)o, a, (long long)s->d[a]);
        r->out[a] = o;
        r->scale[a] = s->d[a] ? (double)o / (double)s->d[a] : 1.0;
        r->resized[a] = (double)o;
    }
    return 0;
}

/* roi = [starts..., ends...] in normalized coordinates; default the whole
 * axis. Read at run time: only tf_crop_and_resize uses it. */
static int resize_roi(const OpCtx *c, Resize *r)
{
    int ri = roi_input(c);
    for (int a = 0; a < r->rank; a++) {
        r->roi_start[a] = 0;
        r->roi_end[a] = 1;
    }
    if (r->coord != COORD_TF_CROP_AND_RESIZE || !present(c, ri) || c->in[ri]->numel == 0)
        return 0;
    const Tensor *t = c->in[ri];
    if (t->numel != 2 * r->rank)
        return op_fail(c, SH_E_SHAPE, "roi has %lld values; expected %d", (long long)t->numel,
                       2 * r->rank);
    if (t->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "roi is %s; expected float32", dtype_name(t->dtype));
    for (int a = 0; a < r->rank; a++) {
        r->roi_start[a] = tensor_f32(t)[a];
        r->roi_end[a] = tensor_f32(t)[a + r->rank];
    }
    return 0;
}

static int resize_setup(const OpCtx *c, Resize *r)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0 || (rc = resize_attrs(c, r)) < 0 || (rc = resize_dims(c, r)) < 0)
        return rc;
    if (dtype_size(c->in[0]->dtype) == 0)
        return op_fail(c, SH_E_UNSUPPORTED, "input has unsupported element type");
    if (r->rank < 1)
        return op_fail(c, SH_E_SHAPE, "input must have rank >= 1");
    if (r->mode != MODE_NEAREST && c->in[0]->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "%s mode needs float32 input, got %s",
                       r->mode == MODE_LINEAR ? "linear" : "cubic", dtype_name(c->in[0]->dtype));
    return 0;
}

static int resize_infer(OpCtx *c)
{
    Resize r;
    int rc = resize_setup(c, &r);
    if (rc < 0)
        return rc;
    Shape o = shape_make(r.rank, r.out);
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* ---- taps ---------------------------------------------------------------- */

/* The input coordinate output index x reads along axis a. With scales,
 * the spec (and its test data) take length_resized as in * scale, not
 * the floored output size; ONNX Runtime uses the floored size, so the two
 * differ for align_corners when in * scale is fractional. */
static double source_coord(const Resize *r, int a, int64_t x)
{
    double s = r->scale[a], in = (double)r->in[a], out = r->resized[a], xf = (double)x;
    switch (r->coord) {
    case COORD_HALF_PIXEL: return (xf + 0.5) / s - 0.5;
    case COORD_PYTORCH_HALF_PIXEL: return out > 1 ? (xf + 0.5) / s - 0.5 : 0;
    case COORD_ALIGN_CORNERS: return out > 1 ? xf * (in - 1) / (out - 1) : 0;
    case COORD_ASYMMETRIC: return xf / s;
    case COORD_TF_HALF_PIXEL_FOR_NN: return (xf + 0.5) / s;
    case COORD_TF_CROP_AND_RESIZE: {
        double lo = r->roi_start[a], hi = r->roi_end[a];
        return out > 1 ? lo * (in - 1) + xf * (hi - lo) * (in - 1) / (out - 1)
                       : 0.5 * (lo + hi) * (in - 1);
    }
    }
    return 0;
}

static double nearest_index(NearestMode m, double x)
{
    double f = floor(x);
    switch (m) {
    case NEAREST_ROUND_PREFER_FLOOR: return x - f > 0.5 ? f + 1 : f;
    case NEAREST_ROUND_PREFER_CEIL: return x - f >= 0.5 ? f + 1 : f;
    case NEAREST_FLOOR: return f;
    case NEAREST_CEIL: return ceil(x);
    }
    return f;
}

/* Keys' cubic convolution weights for the points at offsets -1, 0, 1, 2
 * from floor(x), t = x - floor(x). */
static void cubic_weights(double t, double A, double w[4])
{
    double d[4] = {1 + t, t, 1 - t, 2 - t};
    for (int k = 0; k < 4; k++) {
        double x = d[k];
        w[k] = x <= 1 ? ((A + 2) * x - (A + 3)) * x * x + 1
                      : ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    }
}

static int64_t clamp_index(double i, int64_t len)
{
    return !(i > 0) ? 0 : i > (double)(len - 1) ? len - 1 : (int64_t)i; /* NaN -> 0 */
}

static void make_taps(const Resize *r, int a, int64_t x, Taps *t)
{
    int64_t len = r->in[a];
    double xo = source_coord(r, a, x);
    t->outside = r->coord == COORD_TF_CROP_AND_RESIZE && (xo < 0 || xo > (double)(len - 1));
    if (r->mode == MODE_NEAREST) {
        t->n = 1;
        t->idx[0] = clamp_index(nearest_index(r->nearest, xo), len);
        t->w[0] = 1;
        return;
    }
    double f = floor(xo), ratio = xo - f, w[4], sum = 0;
    int first = r->mode == MODE_LINEAR ? 0 : -1;
    t->n = r->mode == MODE_LINEAR ? 2 : 4;
    if (r->mode == MODE_LINEAR) {
        w[0] = 1 - ratio;
        w[1] = ratio;
    } else {
        cubic_weights(ratio, r->cubic_a, w);
    }
    for (int k = 0; k < t->n; k++) {
        double p = f + first + k;
        if (r->exclude_outside && (p < 0 || p > (double)(len - 1)))
            w[k] = 0;
        sum += w[k];
        t->idx[k] = clamp_index(p, len);
    }
    for (int k = 0; k < t->n; k++)
        t->w[k] = (float)(r->exclude_outside && sum != 0 ? w[k] / sum : w[k]);
}

/* True if the axis maps every output index to the same input index with
 * weight 1, so its pass can be skipped. */
static bool axis_is_identity(const Resize *r, const Taps *taps, int a)
{
    if (r->in[a] != r->out[a])
        return false;
    for (int64_t x = 0; x < r->out[a]; x++) {
        const Taps *t = &taps[x];
        float at_x = 0;
        if (t->outside)
            return false;
        for (int k = 0; k < t->n; k++) {
            if (t->idx[k] == x)
                at_x += t->w[k];
            else if (t->w[k] != 0)
                return false;
        }
        if (at_x != 1.0f)
            return false;
    }
    return true;
}

/* ---- scratch layout: taps per axis, then two float buffers ------------- */

static size_t taps_bytes(const Resize *r)
{
    size_t n = 0;
    for (int a = 0; a < r->rank; a++)
        n += (size_t)r->out[a];
    return (n * sizeof(Taps) + 63) / 64 * 64;
}

/* Largest intermediate of the axis passes: axes [a, rank) resized. */
static int64_t max_intermediate(const Resize *r)
{
    int64_t best = 0;
    for (int a = 1; a < r->rank; a++) {
        int64_t n = 1;
        for (int k = 0; k < r->rank; k++)
            n *= k < a ? r->in[k] : r->out[k];
        best = n > best ? n : best;
    }
    return best;
}

static size_t resize_scratch(const OpCtx *c)
{
    Resize r;
    if (resize_setup(c, &r) < 0)
        return 0;
    size_t bytes = taps_bytes(&r);
    if (r.mode == MODE_NEAREST && r.rank > 0)
        bytes += (size_t)r.out[r.rank - 1] * sizeof(int64_t);
    if (r.mode != MODE_NEAREST)
        bytes += 2 * (((size_t)max_intermediate(&r) * sizeof(float) + 63) / 64 * 64);
    return bytes;
}

/* ---- kernels ------------------------------------------------------------- */

/* Eight floats at any alignment (GCC/clang vector extension). */
typedef float f32x8 __attribute__((vector_size(32), aligned(4), may_alias));

/* d[j] = sum over k < n of w[k] * p[k][j]: the taps of one output row,
 * summed in tap order. */
static inline __attribute__((always_inline)) void
blend_rows(float *restrict d, const float *const *p, const float *w, int64_t len, int n)
{
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        f32x8 acc = *(const f32x8 *)(p[0] + j) * w[0];
        for (int k = 1; k < n; k++)
            acc += *(const f32x8 *)(p[k] + j) * w[k];
        *(f32x8 *)(d + j) = acc;
    }
    for (; j < len; j++) {
        float acc = w[0] * p[0][j];
        for (int k = 1; k < n; k++)
            acc += w[k] * p[k][j];
        d[j] = acc;
    }
}

/* One linear/cubic pass over axis a: [outer, len_in, inner] ->
 * [outer, len_out, inner], with n taps per output index (the same on the
 * whole axis; a literal at each call site so the tap loops unroll). The
 * last axis (inner == 1) gathers point by point; other axes blend rows. */
static inline __attribute__((always_inline)) void
resize_axis_n(float *restrict dst, const float *restrict src, int64_t outer, int64_t len_in,
              int64_t len_out, int64_t inner, const Taps *taps, float extrapolation, int n)
{
    for (int64_t o = 0; o < outer; o++) {
        const float *s = src + o * len_in * inner;
        if (inner == 1) {
            float *d = dst + o * len_out;
            for (int64_t x = 0; x < len_out; x++) {
                const Taps *t = &taps[x];
                float acc = t->w[0] * s[t->idx[0]];
                for (int k = 1; k < n; k++)
                    acc += t->w[k] * s[t->idx[k]];
                d[x] = t->outside ? extrapolation : acc;
            }
            continue;
        }
        for (int64_t x = 0; x < len_out; x++) {
            float *d = dst + (o * len_out + x) * inner;
            const Taps *t = &taps[x];
            if (t->outside) {
                for (int64_t j = 0; j < inner; j++)
                    d[j] = extrapolation;
                continue;
            }
            const float *p[4];
            for (int k = 0; k < n; k++)
                p[k] = s + t->idx[k] * inner;
            blend_rows(d, p, t->w, inner, n);
        }
    }
}

static void resize_axis(float *dst, const float *src, int64_t outer, int64_t len_in,
                        int64_t len_out, int64_t inner, const Taps *taps, float extrapolation)
{
    if (taps[0].n == 2)
        resize_axis_n(dst, src, outer, len_in, len_out, inner, taps, extrapolation, 2);
    else
        resize_axis_n(dst, src, outer, len_in, len_out, inner, taps, extrapolation, 4);
}

/* Runs one pass per resized axis, last axis first, ping-ponging between
 * the scratch buffers; the pass of the first resized axis writes y. */
static void resize_interpolate(const Resize *r, Taps *const *taps, const float *x, float *y,
                               float *buf0, float *buf1)
{
    bool skip[SH_MAX_RANK];
    int first = -1;
    for (int a = r->rank - 1; a >= 0; a--) {
        skip[a] = axis_is_identity(r, taps[a], a);
        if (!skip[a])
            first = a;
    }
    int64_t dims[SH_MAX_RANK];
    memcpy(dims, r->in, sizeof dims);
    if (first < 0) { /* nothing moves */
        int64_t n = 1;
        for (int a = 0; a < r->rank; a++)
            n *= r->in[a];
        memcpy(y, x, (size_t)n * sizeof *y);
        return;
    }
    const float *cur = x;
    for (int a = r->rank - 1; a >= 0; a--) {
        if (skip[a])
            continue;
        int64_t outer = 1, inner = 1;
        for (int k = 0; k < a; k++)
            outer *= dims[k];
        for (int k = a + 1; k < r->rank; k++)
            inner *= dims[k];
        float *dst = a == first ? y : cur == buf0 ? buf1 : buf0;
        resize_axis(dst, cur, outer, dims[a], r->out[a], inner, taps[a], r->extrapolation);
        dims[a] = r->out[a];
        cur = dst;
    }
}

/* Nearest: one gather. Rows over all axes but the last share one input
 * offset; the last axis reads its own index table. es is a literal at
 * every call site. */
static inline __attribute__((always_inline)) void
nearest_kernel(const Resize *r, Taps *const *taps, const int64_t *restrict last, const char *x,
               char *y, size_t es, const void *extrapolation)
{
    int n = r->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1, rows = 1;
    for (int a = n - 1; a >= 0; a--) {
        stride[a] = st;
        st *= r->in[a];
    }
    for (int a = 0; a < n - 1; a++)
        rows *= r->out[a];
    int64_t inner = r->out[n - 1];
    const Taps *tl = taps[n - 1];
    for (int64_t row = 0; row < rows; row++) {
        int64_t off = 0;
        bool outside = false;
        for (int a = 0; a < n - 1; a++) {
            const Taps *t = &taps[a][idx[a]];
            outside |= t->outside;
            off += t->idx[0] * stride[a];
        }
        const char *src = x + off * (int64_t)es;
        for (int64_t j = 0; j < inner; j++, y += es)
            memcpy(y, outside || tl[j].outside ? extrapolation : src + last[j] * (int64_t)es, es);
        for (int a = n - 2; a >= 0; a--) {
            if (++idx[a] < r->out[a])
                break;
            idx[a] = 0;
        }
    }
}

static void resize_nearest(const Resize *r, Taps *const *taps, int64_t *last, const char *x,
                           char *y, size_t es, const void *extrapolation)
{
    for (int64_t j = 0; j < r->out[r->rank - 1]; j++)
        last[j] = taps[r->rank - 1][j].idx[0];
    switch (es) {
    case 1: nearest_kernel(r, taps, last, x, y, 1, extrapolation); break;
    case 4: nearest_kernel(r, taps, last, x, y, 4, extrapolation); break;
    default: nearest_kernel(r, taps, last, x, y, 8, extrapolation); break;
    }
}

static int resize_forward(OpCtx *c)
{
    Resize r;
    int rc = resize_setup(c, &r);
    if (rc < 0 || (rc = resize_roi(c, &r)) < 0)
        return rc;
    if (c->out[0]->numel == 0)
        return 0;
    if (c->scratch_bytes < resize_scratch(c))
        return op_fail(c, SH_E_STATE, "scratch buffer is too small");
    Taps *taps[SH_MAX_RANK], *t = c->scratch;
    for (int a = 0; a < r.rank; a++) {
        taps[a] = t;
        for (int64_t x = 0; x < r.out[a]; x++)
            make_taps(&r, a, x, &t[x]);
        t += r.out[a];
    }
    if (r.mode == MODE_NEAREST) {
        /* The extrapolation value in the data's type, truncated and
         * clamped for integer types. */
        char extrap[8] = {0};
        DType dt = c->in[0]->dtype;
        float e = r.extrapolation;
        if (dt == SH_F32)
            memcpy(extrap, &e, sizeof e);
        else if (dt == SH_I64)
            *(int64_t *)extrap = e > -9.2e18f && e < 9.2e18f ? (int64_t)e : 0;
        else if (dt == SH_U8)
            extrap[0] = (char)(e >= 255 ? 255 : e > 0 ? (uint8_t)e : 0);
        else
            extrap[0] = e != 0;
        int64_t *last = (int64_t *)((char *)c->scratch + taps_bytes(&r));
        resize_nearest(&r, taps, last, c->in[0]->data, c->out[0]->data, dtype_size(dt), extrap);
        return 0;
    }
    char *buf0 = (char *)c->scratch + taps_bytes(&r);
    char *buf1 = buf0 + ((size_t)max_intermediate(&r) * sizeof(float) + 63) / 64 * 64;
    resize_interpolate(&r, taps, tensor_f32(c->in[0]), tensor_f32(c->out[0]), (float *)buf0,
                       (float *)buf1);
    return 0;
}

/* ---- backward ------------------------------------------------------------ */

/* d[j] += w * s[j] for j < len. */
static void add_scaled(float *restrict d, const float *restrict s, float w, int64_t len)
{
    int64_t j = 0;
    for (; j + 8 <= len; j += 8)
        *(f32x8 *)(d + j) += *(const f32x8 *)(s + j) * w;
    for (; j < len; j++)
        d[j] += w * s[j];
}

/* The adjoint of resize_axis: dst [outer, len_in, inner] += each row (or
 * point, inner == 1) of src [outer, len_out, inner] times its tap
 * weights, added at the taps. Extrapolated outputs add nothing. */
static void resize_axis_adjoint(float *restrict dst, const float *restrict src, int64_t outer,
                                int64_t len_in, int64_t len_out, int64_t inner, const Taps *taps)
{
    for (int64_t o = 0; o < outer; o++) {
        float *d = dst + o * len_in * inner;
        const float *s = src + o * len_out * inner;
        for (int64_t x = 0; x < len_out; x++) {
            const Taps *t = &taps[x];
            if (t->outside)
                continue;
            if (inner == 1) {
                for (int k = 0; k < t->n; k++)
                    d[t->idx[k]] += t->w[k] * s[x];
            } else {
                for (int k = 0; k < t->n; k++)
                    add_scaled(d + t->idx[k] * inner, s + x * inner, t->w[k], inner);
            }
        }
    }
}

/* gx += the adjoint of resize_interpolate applied to gy: the passes of
 * the resized axes in reverse (first axis first) through zeroed scratch
 * buffers; the last pass adds into gx. */
static void resize_interpolate_adjoint(const Resize *r, Taps *const *taps, const float *gy,
                                       float *gx, float *buf0, float *buf1)
{
    bool skip[SH_MAX_RANK];
    int last = -1;
    for (int a = 0; a < r->rank; a++) {
        skip[a] = axis_is_identity(r, taps[a], a);
        if (!skip[a])
            last = a;
    }
    int64_t dims[SH_MAX_RANK];
    memcpy(dims, r->out, sizeof dims);
    if (last < 0) { /* nothing moves */
        int64_t n = 1;
        for (int a = 0; a < r->rank; a++)
            n *= r->in[a];
        add_scaled(gx, gy, 1.0f, n);
        return;
    }
    const float *cur = gy;
    for (int a = 0; a < r->rank; a++) {
        if (skip[a])
            continue;
        int64_t outer = 1, inner = 1;
        for (int k = 0; k < a; k++)
            outer *= dims[k];
        for (int k = a + 1; k < r->rank; k++)
            inner *= dims[k];
        float *dst = a == last ? gx : cur == buf0 ? buf1 : buf0;
        if (a != last)
            memset(dst, 0, (size_t)(outer * r->in[a] * inner) * sizeof *dst);
        resize_axis_adjoint(dst, cur, outer, r->in[a], r->out[a], inner, taps[a]);
        dims[a] = r->in[a];
        cur = dst;
    }
}

/* The adjoint of nearest_kernel on floats: walks gy in order and adds
 * each element to the input element it copied. */
static void nearest_adjoint(const Resize *r, Taps *const *taps, const float *gy, float *gx)
{
    int n = r->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1, rows = 1;
    for (int a = n - 1; a >= 0; a--) {
        stride[a] = st;
        st *= r->in[a];
    }
    for (int a = 0; a < n - 1; a++)
        rows *= r->out[a];
    int64_t inner = r->out[n - 1];
    const Taps *tl = taps[n - 1];
    for (int64_t row = 0; row < rows; row++, gy += inner) {
        int64_t off = 0;
        bool outside = false;
        for (int a = 0; a < n - 1; a++) {
            const Taps *t = &taps[a][idx[a]];
            outside |= t->outside;
            off += t->idx[0] * stride[a];
        }
        if (!outside) {
            float *g = gx + off;
            for (int64_t j = 0; j < inner; j++)
                if (!tl[j].outside)
                    g[tl[j].idx[0]] += gy[j];
        }
        for (int a = n - 2; a >= 0; a--) {
            if (++idx[a] < r->out[a])
                break;
            idx[a] = 0;
        }
    }
}

/* Only the data (input 0) gets a gradient. */
static int resize_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gin[0] || !gout[0])
        return 0;
    Resize r;
    int rc = resize_setup(c, &r);
    if (rc < 0 || (rc = resize_roi(c, &r)) < 0)
        return rc;
    if (c->in[0]->dtype != SH_F32 || gin[0]->dtype != SH_F32 || gout[0]->dtype != SH_F32 ||
        gin[0]->numel != c->in[0]->numel || gout[0]->numel != c->out[0]->numel)
        return op_fail(c, SH_E_STATE, "gradients must be float32 with the sizes of input 0 and output 0");
    if (c->out[0]->numel == 0 || c->in[0]->numel == 0)
        return 0;
    if (c->scratch_bytes < resize_scratch(c))
        return op_fail(c, SH_E_STATE, "scratch buffer is too small");
    Taps *taps[SH_MAX_RANK], *t = c->scratch;
    for (int a = 0; a < r.rank; a++) {
        taps[a] = t;
        for (int64_t x = 0; x < r.out[a]; x++)
            make_taps(&r, a, x, &t[x]);
        t += r.out[a];
    }
    if (r.mode == MODE_NEAREST) {
        nearest_adjoint(&r, taps, tensor_f32(gout[0]), tensor_f32(gin[0]));
        return 0;
    }
    char *buf0 = (char *)c->scratch + taps_bytes(&r);
    char *buf1 = buf0 + ((size_t)max_intermediate(&r) * sizeof(float) + 63) / 64 * 64;
    resize_interpolate_adjoint(&r, taps, tensor_f32(gout[0]), tensor_f32(gin[0]), (float *)buf0,
                               (float *)buf1);
    return 0;
}

/* ---- channel coupling ---- */

/* Resizing keeps axes whose size does not change (batch, channels). */
static int resize_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0), *out = cc_out_shape(cc, 0);
    for (int a = 0; a < in->rank; a++)
        if (in->d[a] == out->d[a])
            cc_same(cc, 0, a, 0, a);
    for (int i = 1; i < cc_node(cc)->n_in; i++)
        if (cc_has_input(cc, i))
            cc_consume(cc, i, 0);
    return 0;
}

const OpDef sh_ops_resize[] = {
    /* Input 1 is scales (Upsample, Resize-10) or roi; 2 scales; 3 sizes. */
    {.name = "Resize", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1,
     .shape_inputs = 0xEu, .infer = resize_infer, .forward = resize_forward,
     .scratch = resize_scratch, .backward = resize_backward, .bwd_scratch = resize_scratch,
     .coupling = resize_couple},
    {.name = "Upsample", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
     .shape_inputs = 1u << 1, .infer = resize_infer, .forward = resize_forward,
     .scratch = resize_scratch, .backward = resize_backward, .bwd_scratch = resize_scratch,
     .coupling = resize_couple},
    {.name = NULL},
};

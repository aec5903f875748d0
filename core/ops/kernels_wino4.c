/* Winograd F(4x4, 3x3) for 2-D 3x3 stride-1 convs: each 4x4 output tile
 * comes from a 6x6 input tile through 36 GEMMs with K = cin/group over the
 * tiles of a chunk of images: 36 multiplies per 16 outputs, 4x fewer than
 * the direct conv (F(2x2,3x3): 16 per 4, 2.25x). Transforms run eight
 * tiles a vector whatever the image size (a 7x7 map has only four tiles):
 * the six-float rows of eight tiles' patches, read from zero-padded
 * planes, are transposed in registers into one vector per patch element,
 * and the 4x4 results transposed back into rows. Lavin & Gray's matrices (points 0, +-1, +-2, infinity):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Their float error is larger than F(2x2,3x3)'s (about 1e-6 of the
 * output's scale against 1e-7); the tests hold it to the direct conv's
 * 1e-4 tolerance. */
#include "kernels.h"
#include "kernels_simd.h"

#include <cblas.h>
#include <string.h>

typedef struct {
    int64_t th, tw, tiles; /* tile rows, tile columns, tiles per image */
    int64_t ph, pw;        /* the zero-padded plane the tiles read: 4*th+2 by 4*tw+2 */
} W4Geom;

static W4Geom w4_geom(const ConvShape *s)
{
    W4Geom g;
    g.th = (s->out[1] + 3) / 4;
    g.tw = (s->out[2] + 3) / 4;
    g.tiles = g.th * g.tw;
    g.ph = 4 * g.th + 2;
    g.pw = 4 * g.tw + 2;
    return g;
}

static int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

static size_t a64(size_t floats) { return (floats * sizeof(float) + 63) / 64 * 64; }

/* Floats per padded plane: the eight-wide row loads of a row's last tile
 * run two floats past it, and past the plane for its last row. */
static int64_t w4_plane(const W4Geom *g) { return g->ph * g->pw + 8; }

/* U [group][36][cout_g][cin_g], V [36][cin_g][T8], M [36][cout_g][T8],
 * the chunk's padded planes of one channel, and per tile its offset in
 * the planes and in the output. T8: the chunk's tiles rounded up to 8. */
size_t conv_winograd4_scratch(const ConvShape *s, int64_t chunk)
{
    const W4Geom g = w4_geom(s);
    const int64_t T8 = round8(chunk * g.tiles), cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    return a64((size_t)(36 * s->cout * cin_g)) + a64((size_t)(36 * cin_g * T8)) +
           a64((size_t)(36 * cout_g * T8)) + a64((size_t)(chunk * w4_plane(&g))) +
           2 * (size_t)T8 * (sizeof(int64_t) + 1) + 64;
}

int64_t conv_winograd4_tiles(const ConvShape *s) { return w4_geom(s).tiles; }

/* U = G g G^T for every 3x3 filter g, eight input channels a vector
 * (their filters transposed into tk [9][8] first). */
static void w4_weights(float *u, const float *w, const ConvShape *s)
{
    static const float G[6][3] = {{0.25f, 0, 0},
                                  {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                  {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                  {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                  {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                  {0, 0, 1}};
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    for (int64_t gr = 0; gr < s->group; gr++)
        for (int64_t co = 0; co < cout_g; co++) {
            const float *blk = w + (gr * cout_g + co) * cin_g * 9;
            float *uc = u + (gr * 36 * cout_g + co) * cin_g; /* + xi*cout_g*cin_g + ci */
            for (int64_t ci = 0; ci < cin_g; ci += 8) {
                const int64_t n = cin_g - ci < 8 ? cin_g - ci : 8;
                float tk[9][8] = {{0}};
                for (int64_t l = 0; l < n; l++)
                    for (int k = 0; k < 9; k++)
                        tk[k][l] = blk[(ci + l) * 9 + k];
                f32x8 k8[9], t[6][3];
                for (int k = 0; k < 9; k++)
                    memcpy(&k8[k], tk[k], sizeof k8[k]);
                for (int i = 0; i < 6; i++) /* G g */
                    for (int j = 0; j < 3; j++)
                        t[i][j] = F32X8_SPLAT(G[i][0]) * k8[j] + F32X8_SPLAT(G[i][1]) * k8[3 + j] +
                                  F32X8_SPLAT(G[i][2]) * k8[6 + j];
                for (int i = 0; i < 6; i++) /* (G g) G^T */
                    for (int j = 0; j < 6; j++) {
                        const f32x8 e = t[i][0] * F32X8_SPLAT(G[j][0]) + t[i][1] * F32X8_SPLAT(G[j][1]) +
                                        t[i][2] * F32X8_SPLAT(G[j][2]);
                        float lane[8];
                        memcpy(lane, &e, sizeof lane);
                        memcpy(uc + (i * 6 + j) * cout_g * cin_g + ci, lane, (size_t)n * sizeof(float));
                    }
            }
        }
}

/* o[k*so] = (B^T i)[k] over six vectors i[k*si]. */
static inline void w4_bt(f32x8 *o, int so, const f32x8 *i, int si)
{
    const f32x8 d0 = i[0], d1 = i[si], d2 = i[2 * si], d3 = i[3 * si], d4 = i[4 * si], d5 = i[5 * si];
    const f32x8 four = F32X8_SPLAT(4.0f), five = F32X8_SPLAT(5.0f), two = F32X8_SPLAT(2.0f);
    o[0] = four * d0 - five * d2 + d4;
    o[so] = d4 + d3 - four * (d1 + d2);
    o[2 * so] = d4 - d3 + four * (d1 - d2);
    o[3 * so] = d4 - d2 + two * (d3 - d1);
    o[4 * so] = d4 - d2 - two * (d3 - d1);
    o[5 * so] = four * d1 - five * d3 + d5;
}

/* o[k*so] = (A^T m)[k] over six vectors m[k*si]. */
static inline void w4_at(f32x8 *o, int so, const f32x8 *m, int si)
{
    const f32x8 m0 = m[0], m1 = m[si], m2 = m[2 * si], m3 = m[3 * si], m4 = m[4 * si], m5 = m[5 * si];
    const f32x8 s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    o[0] = m0 + s12 + s34;
    o[so] = d12 + F32X8_SPLAT(2.0f) * d34;
    o[2 * so] = s12 + F32X8_SPLAT(4.0f) * s34;
    o[3 * so] = d12 + F32X8_SPLAT(8.0f) * d34 + m5;
}

/* V[xi] columns t0..t0+7 (v: plane 0 there, planes vstride apart) =
 * B^T d B of the patches of eight tiles starting at base[l] in the padded
 * planes (row stride pw); NULL lanes are tiles past the chunk: zeros. */
static void w4_input8(float *v, int64_t vstride, const float *const *base, int64_t pw)
{
    f32x8 in[36], mid[36], out[36];
    for (int r = 0; r < 6; r++) {
        f32x8 rows[8];
        for (int l = 0; l < 8; l++)
            rows[l] = base[l] ? *(const f32x8 *)(base[l] + r * pw) : (f32x8){0};
        transpose8(rows); /* rows[c]: patch element (r, c) of the eight tiles */
        for (int c = 0; c < 6; c++)
            in[r * 6 + c] = rows[c];
    }
    for (int c = 0; c < 6; c++) /* columns: B^T d */
        w4_bt(mid + c, 6, in + c, 6);
    for (int r = 0; r < 6; r++) /* rows: (B^T d) B */
        w4_bt(out + r * 6, 1, mid + r * 6, 1);
    for (int k = 0; k < 36; k++)
        *(f32x8 *)(v + k * vstride) = out[k];
}

/* Y = A^T m A + bias (then max(0, .)) for eight tiles of one output
 * channel (m: plane 0 at their column, planes mstride apart), written to
 * y + out[l] for the tiles with out[l] >= 0, clipped to OH x OW by the
 * rows and columns each tile has (nr[l], nc[l]). */
static void w4_output8(float *y, const int64_t *out_off, const int8_t *nr, const int8_t *nc, int64_t OW,
                       const float *m, int64_t mstride, float bias, int relu)
{
    const f32x8 b8 = F32X8_SPLAT(bias), z8 = {0};
    f32x8 in[36], mid[24], o[16];
    for (int k = 0; k < 36; k++)
        in[k] = *(const f32x8 *)(m + k * mstride);
    for (int c = 0; c < 6; c++) /* columns: A^T m, 4 x 6 */
        w4_at(mid + c, 6, in + c, 6);
    for (int r = 0; r < 4; r++) /* rows: (A^T m) A, 4 x 4 */
        w4_at(o + r * 4, 1, mid + r * 6, 1);
    for (int k = 0; k < 16; k++) {
        o[k] += b8;
        if (relu)
            o[k] = (f32x8)((i32x8)o[k] & (o[k] > z8));
    }
    for (int r = 0; r < 4; r++) {
        /* rows of the eight tiles: lane l of o[r*4 + c] is tile l's (r, c) */
        const f32x8 lo01 = __builtin_shufflevector(o[r * 4], o[r * 4 + 1], 0, 8, 1, 9, 2, 10, 3, 11);
        const f32x8 hi01 = __builtin_shufflevector(o[r * 4], o[r * 4 + 1], 4, 12, 5, 13, 6, 14, 7, 15);
        const f32x8 lo23 = __builtin_shufflevector(o[r * 4 + 2], o[r * 4 + 3], 0, 8, 1, 9, 2, 10, 3, 11);
        const f32x8 hi23 = __builtin_shufflevector(o[r * 4 + 2], o[r * 4 + 3], 4, 12, 5, 13, 6, 14, 7, 15);
        f32x4 row[8];
        row[0] = __builtin_shufflevector(lo01, lo23, 0, 1, 8, 9);
        row[1] = __builtin_shufflevector(lo01, lo23, 2, 3, 10, 11);
        row[2] = __builtin_shufflevector(lo01, lo23, 4, 5, 12, 13);
        row[3] = __builtin_shufflevector(lo01, lo23, 6, 7, 14, 15);
        row[4] = __builtin_shufflevector(hi01, hi23, 0, 1, 8, 9);
        row[5] = __builtin_shufflevector(hi01, hi23, 2, 3, 10, 11);
        row[6] = __builtin_shufflevector(hi01, hi23, 4, 5, 12, 13);
        row[7] = __builtin_shufflevector(hi01, hi23, 6, 7, 14, 15);
        for (int l = 0; l < 8; l++) {
            if (out_off[l] < 0 || r >= nr[l])
                continue;
            float *dst = y + out_off[l] + r * OW;
            if (nc[l] == 4)
                *(f32x4 *)dst = row[l];
            else
                for (int c = 0; c < nc[l]; c++)
                    dst[c] = row[l][c];
        }
    }
}

/* Copies the chunk's images of one channel (x: image 0's plane, images
 * x_image floats apart) into the interior of their padded planes. */
static void w4_fill_planes(float *p, const float *x, int64_t x_image, int64_t cnt, const ConvShape *s,
                           const W4Geom *g)
{
    const int64_t IH = s->in[1], IW = s->in[2];
    for (int64_t j = 0; j < cnt; j++) {
        float *pj = p + j * w4_plane(g) + s->pad[1] * g->pw + s->pad[2];
        for (int64_t ih = 0; ih < IH; ih++)
            copy_row(pj + ih * g->pw, x + j * x_image + ih * IW, IW);
    }
}

/* Per tile of the chunk: its patch's offset in the planes, its output's
 * offset from the chunk's first output plane (-1 past the chunk), and the
 * rows and columns of its 4x4 that fall inside the output. */
static void w4_tile_table(int64_t *in_off, int64_t *out_off, int8_t *nr, int8_t *nc, int64_t T, int64_t T8,
                          const ConvShape *s, const W4Geom *g)
{
    const int64_t OH = s->out[1], OW = s->out[2], out_image = s->cout * OH * OW;
    for (int64_t t = 0; t < T8; t++) {
        if (t >= T) {
            in_off[t] = out_off[t] = -1;
            nr[t] = nc[t] = 0;
            continue;
        }
        const int64_t j = t / g->tiles, th = t % g->tiles / g->tw, tw = t % g->tw;
        in_off[t] = j * w4_plane(g) + 4 * th * g->pw + 4 * tw;
        out_off[t] = j * out_image + 4 * th * OW + 4 * tw;
        nr[t] = (int8_t)(OH - 4 * th < 4 ? OH - 4 * th : 4);
        nc[t] = (int8_t)(OW - 4 * tw < 4 ? OW - 4 * tw : 4);
    }
}

void conv_winograd4(float *y, const float *x, const float *w, const float *b, const ConvShape *s, int64_t chunk,
                    int relu, bool weights_ready, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t in_sp = s->in[1] * s->in[2], P = s->out[1] * s->out[2];
    const W4Geom g = w4_geom(s);
    const int64_t T8max = round8(chunk * g.tiles);
    float *u = scratch;
    float *v = u + a64((size_t)(36 * s->cout * cin_g)) / sizeof(float);
    float *m = v + a64((size_t)(36 * cin_g * T8max)) / sizeof(float);
    float *p = m + a64((size_t)(36 * cout_g * T8max)) / sizeof(float);
    int64_t *in_off = (int64_t *)(void *)(p + a64((size_t)(chunk * w4_plane(&g))) / sizeof(float));
    int64_t *out_off = in_off + T8max;
    int8_t *nr = (int8_t *)(out_off + T8max), *nc = nr + T8max;
    if (!weights_ready)
        w4_weights(u, w, s);
    /* borders stay zero: each channel rewrites only the interiors */
    memset(p, 0, (size_t)(chunk * w4_plane(&g)) * sizeof *p);
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = s->n - n0 < chunk ? s->n - n0 : chunk, T = cnt * g.tiles, T8 = round8(T);
        const int64_t vstride = cin_g * T8, mstride = cout_g * T8;
        w4_tile_table(in_off, out_off, nr, nc, T, T8, s, &g);
        for (int64_t gr = 0; gr < s->group; gr++) {
            for (int64_t ci = 0; ci < cin_g; ci++) {
                w4_fill_planes(p, x + (n0 * s->cin + gr * cin_g + ci) * in_sp, s->cin * in_sp, cnt, s, &g);
                for (int64_t t = 0; t < T8; t += 8) {
                    const float *base[8];
                    for (int l = 0; l < 8; l++)
                        base[l] = in_off[t + l] >= 0 ? p + in_off[t + l] : NULL;
                    w4_input8(v + ci * T8 + t, vstride, base, g.pw);
                }
            }
            for (int xi = 0; xi < 36; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)T8, (int)cin_g, 1.0f,
                            u + (gr * 36 + xi) * cout_g * cin_g, (int)cin_g, v + xi * vstride, (int)T8, 0.0f,
                            m + xi * mstride, (int)T8);
            float *yc = y + (n0 * s->cout + gr * cout_g) * P;
            for (int64_t co = 0; co < cout_g; co++)
                for (int64_t t = 0; t < T8; t += 8)
                    w4_output8(yc + co * P, out_off + t, nr + t, nc + t, s->out[2], m + co * T8 + t, mstride,
                               b ? b[gr * cout_g + co] : 0.0f, relu);
        }
    }
}

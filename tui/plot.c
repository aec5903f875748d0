#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "plot.h"

#include "core/util.h"

#include <curses.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PlotMode plot_mode(void)
{
    const char *env = getenv("SHEARS_PLOT");
    if (!glyphs.utf8 || (env && !strcmp(env, "ascii")))
        return PLOT_ASCII;
    if (env && !strcmp(env, "block"))
        return PLOT_BLOCK;
    return PLOT_BRAILLE;
}

typedef struct {
    int w, h, sx, sy;   /* cells, dots per cell */
    uint8_t *dots;      /* (w*sx) x (h*sy) */
    signed char *role;  /* per cell: the last series drawn there, -1 none */
} Canvas;

static void canvas_set(Canvas *c, int px, int py, Role r)
{
    if (px < 0 || py < 0 || px >= c->w * c->sx || py >= c->h * c->sy)
        return;
    c->dots[py * c->w * c->sx + px] = 1;
    c->role[(py / c->sy) * c->w + px / c->sx] = (signed char)r;
}

static void canvas_line(Canvas *c, int x0, int y0, int x1, int y1, Role r)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (int guard = 0; guard < 100000; guard++) {
        canvas_set(c, x0, y0, r);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* The text of cell (cx, cy). */
static void cell_glyph(const Canvas *c, PlotMode mode, int cx, int cy, char *out)
{
    const uint8_t *d = c->dots;
    int stride = c->w * c->sx, px = cx * c->sx, py = cy * c->sy;
#define DOT(i, j) d[(py + (j)) * stride + px + (i)]
    if (mode == PLOT_BRAILLE) {
        unsigned bits = (unsigned)(DOT(0, 0) | DOT(0, 1) << 1 | DOT(0, 2) << 2 | DOT(1, 0) << 3 | DOT(1, 1) << 4 |
                                   DOT(1, 2) << 5 | DOT(0, 3) << 6 | DOT(1, 3) << 7);
        if (!bits) {
            strcpy(out, " ");
            return;
        }
        unsigned cp = 0x2800 + bits;
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        out[3] = '\0';
    } else if (mode == PLOT_BLOCK) {
        int top = DOT(0, 0), bottom = DOT(0, 1);
        strcpy(out, top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ");
    } else
        strcpy(out, DOT(0, 0) ? "*" : " ");
#undef DOT
}

void plot_draw(int y, int x, int h, int w, const PlotAxes *ax, const PlotSeries *s, int n_series, PlotMode mode)
{
    char label[32];
    int lw = 0;
    for (int k = 0; k < 2; k++) { /* the wider of the two y labels */
        snprintf(label, sizeof label, ax->y_fmt, (k ? ax->y0 : ax->y1) * ax->y_scale);
        lw = (int)strlen(label) > lw ? (int)strlen(label) : lw;
    }
    int pw = w - lw - 1, ph = h - 1; /* the last row holds x labels */
    if (pw < 4 || ph < 2)
        return;
    for (int r = 0; r < ph; r++) {
        double v = ax->y1 - (ax->y1 - ax->y0) * r / (ph > 1 ? ph - 1 : 1);
        bool show = r == 0 || r == ph - 1 || (ph >= 7 && r == (ph - 1) / 2);
        snprintf(label, sizeof label, ax->y_fmt, v * ax->y_scale);
        draw_textf(y + r, x, lw + 1, ROLE_DIM, "%*s%s", lw, show ? label : "", glyphs.vline);
    }
    Canvas c = {.w = pw, .h = ph};
    c.sx = mode == PLOT_BRAILLE ? 2 : 1;
    c.sy = mode == PLOT_BRAILLE ? 4 : mode == PLOT_BLOCK ? 2 : 1;
    c.dots = xcalloc((size_t)(pw * c.sx * ph * c.sy), 1);
    c.role = xmalloc((size_t)(pw * ph));
    memset(c.role, -1, (size_t)(pw * ph));
    int dw = pw * c.sx, dh = ph * c.sy;
    double xr = ax->x1 - ax->x0, yr = ax->y1 - ax->y0;
    if (xr <= 0)
        xr = 1;
    if (yr <= 0)
        yr = 1;
    for (int k = 0; k < n_series; k++) {
        int px0 = 0, py0 = 0;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i]))
                continue;
            int px = (int)lround((s[k].x[i] - ax->x0) / xr * (dw - 1));
            int py = (int)lround((ax->y1 - s[k].y[i]) / yr * (dh - 1));
            py = py < 0 ? 0 : py >= dh ? dh - 1 : py;
            if (i == 0 || s[k].n == 1)
                canvas_set(&c, px, py, s[k].role);
            else
                canvas_line(&c, px0, py0, px, py, s[k].role);
            px0 = px;
            py0 = py;
        }
    }
    int marker = ax->marker_x >= ax->x0 ? (int)lround((ax->marker_x - ax->x0) / xr * (pw - 1)) : -1;
    for (int r = 0; r < ph; r++)
        for (int col = 0; col < pw; col++) {
            char g[8];
            cell_glyph(&c, mode, col, r, g);
            Role role = c.role[r * pw + col] >= 0 ? (Role)c.role[r * pw + col] : ROLE_NORMAL;
            if (col == marker && g[0] == ' ') {
                strcpy(g, glyphs.vline);
                role = ax->marker_role;
            }
            draw_text(y + r, x + lw + 1 + col, 1, role, g, false);
        }
    /* x labels: both ends */
    char left[16], right[16];
    snprintf(left, sizeof left, "%g", ax->x0);
    snprintf(right, sizeof right, "%g", ax->x1);
    draw_fill(y + ph, x, w, ROLE_DIM);
    draw_text(y + ph, x + lw + 1, pw, ROLE_DIM, left, false);
    draw_text(y + ph, x + w - (int)strlen(right), (int)strlen(right), ROLE_DIM, right, false);
    free(c.dots);
    free(c.role);
}

/* Line plots in a rectangle of character cells: Unicode braille (2x4 dots
 * a cell), block characters (1x2) or plain ASCII (1x1), each series in its
 * own color role, with y labels on the left and an optional vertical
 * marker (the plan's ratio). */
#ifndef SH_TUI_PLOT_H
#define SH_TUI_PLOT_H

#include "draw.h"

typedef enum { PLOT_BRAILLE, PLOT_BLOCK, PLOT_ASCII } PlotMode;

typedef struct {
    const double *x, *y;
    int n;
    Role role;
} PlotSeries;

typedef struct {
    double x0, x1, y0, y1;   /* axes ranges */
    const char *y_fmt;       /* label format, e.g. "%.0f%%" */
    double y_scale;          /* label = y * y_scale */
    double marker_x;         /* < x0: none */
    Role marker_role;
} PlotAxes;

/* The mode for the current glyphs (SHEARS_PLOT=braille|block|ascii overrides). */
PlotMode plot_mode(void);
/* Draws series into the h x w cells at (y, x). */
void plot_draw(int y, int x, int h, int w, const PlotAxes *ax, const PlotSeries *s, int n_series, PlotMode mode);

#endif

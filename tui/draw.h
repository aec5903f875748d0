/* Drawing on the curses screen: semantic color roles (with a monochrome
 * fallback, NO_COLOR respected, a richer palette on 256-color terminals),
 * glyphs in UTF-8 or plain ASCII, and clipped text, bars and fills. Every
 * pane draws through these, inside its own rectangle of stdscr. */
#ifndef SH_TUI_DRAW_H
#define SH_TUI_DRAW_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ROLE_NORMAL, ROLE_TITLE, ROLE_SUMMARY, ROLE_HEADER, ROLE_PANE_TITLE, ROLE_PANE_TITLE_FOCUS,
    ROLE_SELECTED, ROLE_SELECTED_DIM, ROLE_MARKED, ROLE_BLOCKED, ROLE_APPROX, ROLE_DIM, ROLE_ERROR,
    ROLE_NOTICE, ROLE_COMMAND, ROLE_PROGRESS, ROLE_SCORE_LOW, ROLE_SCORE_MID, ROLE_SCORE_HIGH,
    ROLE_PLOT_A, ROLE_PLOT_B, ROLE_PLAN, ROLE_BORDER, ROLE_PRUNED, ROLE_GOOD,
    ROLE_HEAT0, ROLE_HEAT1, ROLE_HEAT2, ROLE_HEAT3, ROLE_HEAT4,
    ROLE_COUNT
} Role;

typedef struct {
    bool utf8;
    const char *vline, *hline, *arrow, *ellipsis, *mark, *approx, *up, *down;
    const char *bar[9];   /* eighths of a cell: bar[0] empty .. bar[8] full */
    const char *heat[5];  /* from cold to hot */
} Glyphs;

extern Glyphs glyphs;

/* After the screen is up: picks colors (none if the terminal has none or
 * NO_COLOR is set) and glyphs (UTF-8 unless ascii or the locale's codeset
 * is not UTF-8). */
void draw_setup(bool ascii, bool no_color);
bool draw_has_color(void);
int draw_colors(void); /* 0, 8, 256 */
/* The curses attribute of a role. */
int role_attr(Role r);

/* Display width of UTF-8 text (each byte of invalid input counts 1). */
int text_width(const char *s);
/* Writes s at (y, x), at most w columns, padding with blanks to w when pad. */
void draw_text(int y, int x, int w, Role r, const char *s, bool pad);
void draw_textf(int y, int x, int w, Role r, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void draw_fill(int y, int x, int w, Role r);
/* A horizontal bar of frac (0..1) of w columns. */
void draw_bar(int y, int x, int w, double frac, Role r);

#endif

#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "draw.h"

#include <curses.h>
#include <langinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

Glyphs glyphs;
static int role_attrs[ROLE_COUNT];
static int n_colors;

static const Glyphs utf8_glyphs = {
    .utf8 = true, .vline = "\u2502", .hline = "\u2500", .arrow = "\u2192", .ellipsis = "\u2026",
    .mark = "\u25cf", .approx = "~", .up = "\u25b2", .down = "\u25bc",
    .bar = {" ", "\u258f", "\u258e", "\u258d", "\u258c", "\u258b", "\u258a", "\u2589", "\u2588"},
    .heat = {"\u00b7", "\u2591", "\u2592", "\u2593", "\u2588"},
};

static const Glyphs ascii_glyphs = {
    .utf8 = false, .vline = "|", .hline = "-", .arrow = ">", .ellipsis = "~", .mark = "x", .approx = "~",
    .up = "^", .down = "v",
    .bar = {" ", " ", " ", " ", "-", "-", "-", "=", "="},
    .heat = {".", ":", "+", "*", "#"},
};

/* fg, bg for 8 colors and for 256; attributes for monochrome. */
static const struct {
    short fg8, bg8, fg256, bg256;
    int attr;   /* added in every mode */
    int mono;   /* used instead of colors in monochrome */
} palette[ROLE_COUNT] = {
    [ROLE_NORMAL] = {-1, -1, -1, -1, 0, 0},
    [ROLE_TITLE] = {COLOR_BLACK, COLOR_CYAN, 16, 74, A_BOLD, A_REVERSE | A_BOLD},
    [ROLE_SUMMARY] = {COLOR_CYAN, -1, 117, -1, 0, A_BOLD},
    [ROLE_HEADER] = {COLOR_YELLOW, -1, 180, -1, 0, A_UNDERLINE},
    [ROLE_PANE_TITLE] = {COLOR_WHITE, -1, 250, 236, 0, A_UNDERLINE},
    [ROLE_PANE_TITLE_FOCUS] = {COLOR_BLACK, COLOR_GREEN, 16, 114, A_BOLD, A_REVERSE | A_BOLD},
    [ROLE_SELECTED] = {COLOR_BLACK, COLOR_CYAN, 16, 117, 0, A_REVERSE},
    [ROLE_SELECTED_DIM] = {COLOR_WHITE, COLOR_BLUE, 255, 24, 0, A_UNDERLINE},
    [ROLE_MARKED] = {COLOR_RED, -1, 203, -1, A_BOLD, A_BOLD},
    [ROLE_BLOCKED] = {COLOR_MAGENTA, -1, 133, -1, 0, A_DIM},
    [ROLE_APPROX] = {COLOR_YELLOW, -1, 179, -1, 0, 0},
    [ROLE_DIM] = {COLOR_BLUE, -1, 244, -1, 0, A_DIM},
    [ROLE_ERROR] = {COLOR_RED, -1, 196, -1, A_BOLD, A_BOLD},
    [ROLE_NOTICE] = {COLOR_YELLOW, -1, 221, -1, 0, A_BOLD},
    [ROLE_COMMAND] = {COLOR_GREEN, -1, 114, -1, A_BOLD, A_BOLD},
    [ROLE_PROGRESS] = {COLOR_BLACK, COLOR_GREEN, 16, 71, 0, A_REVERSE},
    [ROLE_SCORE_LOW] = {COLOR_RED, -1, 167, -1, 0, 0},
    [ROLE_SCORE_MID] = {COLOR_YELLOW, -1, 179, -1, 0, 0},
    [ROLE_SCORE_HIGH] = {COLOR_GREEN, -1, 107, -1, 0, 0},
    [ROLE_PLOT_A] = {COLOR_CYAN, -1, 81, -1, 0, 0},
    [ROLE_PLOT_B] = {COLOR_MAGENTA, -1, 213, -1, 0, A_BOLD},
    [ROLE_PLAN] = {COLOR_RED, -1, 203, -1, A_BOLD, A_BOLD},
    [ROLE_BORDER] = {COLOR_BLUE, -1, 240, -1, 0, 0},
    [ROLE_PRUNED] = {COLOR_MAGENTA, -1, 176, -1, 0, A_UNDERLINE},
    [ROLE_GOOD] = {COLOR_GREEN, -1, 114, -1, 0, 0},
    [ROLE_HEAT0] = {COLOR_BLUE, -1, 24, -1, 0, 0},
    [ROLE_HEAT1] = {COLOR_CYAN, -1, 31, -1, 0, 0},
    [ROLE_HEAT2] = {COLOR_GREEN, -1, 107, -1, 0, 0},
    [ROLE_HEAT3] = {COLOR_YELLOW, -1, 178, -1, 0, 0},
    [ROLE_HEAT4] = {COLOR_RED, -1, 196, -1, A_BOLD, A_BOLD},
};

void draw_setup(bool ascii, bool no_color)
{
    const char *cs = nl_langinfo(CODESET);
    bool utf8 = !ascii && cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);
    glyphs = utf8 ? utf8_glyphs : ascii_glyphs;
    n_colors = 0;
    const char *nc = getenv("NO_COLOR");
    if (!no_color && !(nc && nc[0]) && has_colors() && start_color() != ERR) {
        use_default_colors();
        n_colors = COLORS >= 256 ? 256 : COLORS >= 8 ? 8 : 0;
    }
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (n_colors == 0) {
            role_attrs[r] = palette[r].mono;
            continue;
        }
        short fg = n_colors == 256 ? palette[r].fg256 : palette[r].fg8;
        short bg = n_colors == 256 ? palette[r].bg256 : palette[r].bg8;
        init_pair((short)(r + 1), fg, bg);
        role_attrs[r] = (int)COLOR_PAIR(r + 1) | palette[r].attr;
    }
}

bool draw_has_color(void) { return n_colors > 0; }
int draw_colors(void) { return n_colors; }
int role_attr(Role r) { return role_attrs[r]; }

/* Bytes and columns of the next character of s. */
static int next_char(const char *s, int *cols)
{
    if (!glyphs.utf8 || (unsigned char)*s < 0x80) {
        *cols = 1;
        return 1;
    }
    mbstate_t st;
    memset(&st, 0, sizeof st);
    wchar_t wc;
    size_t n = mbrtowc(&wc, s, strlen(s), &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
        *cols = 1;
        return 1;
    }
    int w = wcwidth(wc);
    *cols = w < 0 ? 1 : w;
    return (int)n;
}

int text_width(const char *s)
{
    int w = 0;
    while (*s) {
        int cols;
        s += next_char(s, &cols);
        w += cols;
    }
    return w;
}

void draw_text(int y, int x, int w, Role r, const char *s, bool pad)
{
    if (w <= 0 || y < 0 || y >= LINES || x >= COLS)
        return;
    if (x + w > COLS)
        w = COLS - x;
    attrset(role_attrs[r]);
    move(y, x);
    int used = 0;
    while (*s && used < w) {
        int cols, n = next_char(s, &cols);
        if (used + cols > w)
            break;
        unsigned char c = (unsigned char)*s;
        if (n == 1 && (c < ' ' || c == 127))
            addch('?'); /* control characters would move the cursor */
        else if (n == 1 && c >= 0x80)
            addch('?');
        else
            addnstr(s, n);
        used += cols;
        s += n;
    }
    if (pad)
        for (; used < w; used++)
            addch(' ');
    attrset(A_NORMAL);
}

void draw_textf(int y, int x, int w, Role r, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    draw_text(y, x, w, r, buf, false);
}

void draw_fill(int y, int x, int w, Role r) { draw_text(y, x, w, r, "", true); }

void draw_bar(int y, int x, int w, double frac, Role r)
{
    if (w <= 0)
        return;
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    int eighths = (int)(frac * w * 8 + 0.5);
    char buf[1024] = "";
    size_t used = 0;
    for (int i = 0; i < w && used + 8 < sizeof buf; i++) {
        int e = eighths - 8 * i;
        const char *g = glyphs.bar[e >= 8 ? 8 : e <= 0 ? 0 : e];
        if (!glyphs.utf8)
            g = e >= 6 ? "#" : e >= 3 ? "=" : e > 0 ? "-" : " ";
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s", g);
    }
    draw_text(y, x, w, r, buf, true);
}

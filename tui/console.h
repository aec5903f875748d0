/* The console line: GNU readline driven from curses. getch() stays the
 * only input; keys are turned into the bytes a terminal would send and fed
 * to readline through rl_getc_function + rl_callback_read_char(), and the
 * line is drawn by the app from console_view() (readline never touches the
 * terminal). History persists in a file; Tab completes command names,
 * keys, choices, group and layer names, criteria and file paths, and the
 * list of candidates is shown by the app, not printed by readline. */
#ifndef SH_TUI_CONSOLE_H
#define SH_TUI_CONSOLE_H

#include "viewmodel.h"

#include <stdbool.h>

typedef struct Console {
    bool active;
    bool keep_history;     /* lines go to the history (not for searches) */
    char *history_path;
    char prompt[16];
    char *line;            /* a finished line, taken by console_take_line */
    bool finished;
    char matches[512];     /* the last completion candidates shown */
    const ViewModel *vm;   /* names for completion (UI thread) */
} Console;

void console_init(Console *c, const char *history_path);
void console_done(Console *c);
/* Opens the line with prompt and prefilled text. */
void console_open(Console *c, const char *prompt, const char *prefill, bool keep_history);
void console_close(Console *c);
/* Feeds a curses key. Returns true when a line was finished (Enter). */
bool console_key(Console *c, int key);
/* The finished line (new string). */
char *console_take_line(Console *c);
/* What to draw: the prompt, the line and the cursor's byte offset in it. */
void console_view(const Console *c, const char **prompt, const char **line, int *point);

#endif

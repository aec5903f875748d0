/* The terminal: curses on the real terminal or on an invisible one of a
 * pinned size (screen tests, benchmarks). While curses owns the screen,
 * stdout and stderr are redirected into a pipe that the app drains into
 * the log, so nothing else writes to the terminal; Ctrl-C only raises a
 * flag; a fatal signal (or SIGTERM/SIGHUP) restores the terminal with
 * async-signal-safe calls (precomputed escape strings, tcsetattr) before
 * the process dies. */
#ifndef SH_TUI_TERM_H
#define SH_TUI_TERM_H

#include "log.h"

#include <signal.h>
#include <stdbool.h>

/* Ctrl-C presses not yet handled. */
extern volatile sig_atomic_t term_interrupts;

/* Opens curses. *capture_fd receives the read end of the output pipe. */
int term_open(bool invisible, int rows, int cols, int *capture_fd);
void term_close(void);
bool term_is_open(void);
/* The invisible terminal takes a new size (KEY_RESIZE follows). */
void term_resize(int rows, int cols);
/* Moves what the capture pipe holds into the log. */
void term_drain(int fd, Log *log);
/* Writes the screen (stdscr) as text, one line per row, trailing blanks dropped. */
int term_dump(const char *path, bool overwrite);

#endif

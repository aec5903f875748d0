/* The workbench log: command lines, their output, errors and notices, as
 * a ring of lines. Appends are thread-safe (the job thread writes command
 * output while the UI thread draws). */
#ifndef SH_TUI_LOG_H
#define SH_TUI_LOG_H

#include <pthread.h>
#include <stdbool.h>

typedef enum { LOG_OUTPUT, LOG_COMMAND, LOG_ERROR, LOG_NOTICE } LogKind;

typedef struct {
    char *text;
    LogKind kind;
} LogLine;

typedef struct Log {
    pthread_mutex_t mu;
    LogLine *lines; /* ring of cap lines */
    int cap, start, n;
    long total;     /* lines ever appended (views follow the tail by it) */
    char *partial;  /* output text after the last newline */
    LogKind partial_kind;
} Log;

void log_init(Log *l, int cap);
void log_done(Log *l);
/* Appends text of kind, split at newlines; a trailing fragment waits for
 * the rest of its line ('\r' starts the fragment over). */
void log_append(Log *l, LogKind kind, const char *text);
/* Appends one whole line (printf format). */
void log_printf(Log *l, LogKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Ends a pending fragment as a line of its own. */
void log_flush(Log *l);
/* Copies line i (0 = oldest kept) into buf; false if out of range. */
bool log_line(Log *l, int i, char *buf, int n, LogKind *kind);
int log_count(Log *l);
long log_total(Log *l);

#endif

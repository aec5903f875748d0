/* A session's memory of its commands: the successful ones in order (what
 * `record FILE` writes as a replayable script), and, in the workbench, a
 * crash journal: the same list on disk, appended as each command
 * succeeds, compacted to `load SNAPSHOT` + settings and data whenever the
 * model changed in memory (apply, train, undo ...; the model is saved as
 * an ONNX snapshot first, atomically). `shears --recover` replays it.
 * No curses here: the headless program records too. */
#ifndef SH_TUI_SESSION_H
#define SH_TUI_SESSION_H

#include "commands/commands.h"

#include <pthread.h>
#include <stdbool.h>

typedef struct Session {
    pthread_mutex_t mu;  /* the UI thread reads while the job thread records */
    char **cmds;         /* successful commands, as text */
    int n, cap;
    char *record_path;   /* recording into this script, or NULL */
    /* journal (workbench only) */
    char *dir;           /* NULL: no journal */
    char *journal_path;
    char **journal;      /* the journal's commands */
    int n_journal, cap_journal;
    char *snapshot;      /* the snapshot the journal loads, or NULL */
    int seq;
    const Graph *last_model; /* to notice a replaced model */
} Session;

void session_init(Session *s);
void session_done(Session *s);

/* True for commands a script leaves out (front-end commands, help). */
bool session_skips(const char *name);

/* Notes that c succeeded on ws (call on the thread that owns ws, right
 * after the command): adds it to the history, the record file and the
 * journal, snapshotting the model when it changed in memory. */
void session_command_ok(Session *s, Workspace *ws, const Command *c);
/* Call before running a command on ws (remembers the model it had). */
void session_command_begin(Session *s, const Workspace *ws);

/* Starts recording into path: writes the history so far (refusing an
 * existing file unless overwrite), then appends. path NULL stops. */
int session_record(Session *s, const char *path, bool overwrite);

/* Runs a script like run_script_text (same output, same stop rule),
 * noting every successful command. */
int session_run_text(Session *s, Workspace *ws, const char *text, const char *origin, Out *o);

/* $XDG_STATE_HOME/shears/<name> (default ~/.local/state/shears/<name>),
 * its parent folders created. New string. */
char *state_path(const char *name);
/* $XDG_CONFIG_HOME/shears/<name> (default ~/.config/shears/<name>). */
char *config_path(const char *name);
/* mkdir -p. */
int make_dirs(const char *path);

/* Starts this process's journal in dir (created): a journal left by a
 * session that did not end cleanly is kept as journal.prev.shears. */
int session_journal_start(Session *s, const char *dir);
/* Marks the journal as ended cleanly. */
void session_journal_close(Session *s);
/* The journal to recover from dir: the last session's (an unclean one
 * first). *text is the script, *cwd the folder it ran in (new strings). */
int session_journal_read(const char *dir, char **text, char **cwd);

#endif

/* The command table: one entry per command, from which dispatch, `help`
 * and completion words are generated, so they cannot drift apart. */
#ifndef SH_COMMANDS_H
#define SH_COMMANDS_H

#include "parse.h"

#include "core/workspace.h"

#include <cJSON.h>
#include <signal.h>
#include <stdbool.h>

/* Where a command's results go. Text lines go to sink (text mode only);
 * every command also fills a JSON object printed in --json mode. */
typedef struct Out {
    bool json;
    void (*sink)(void *ctx, const char *text);
    void *sink_ctx;
    cJSON *obj; /* the current command's result object (borrowed) */
    /* Jobs (the TUI runs commands on a worker thread): long commands report
     * progress (fraction 0..1 and a short status) and partial results as
     * they arrive, and poll cancel between steps. All optional. */
    void (*progress)(void *ctx, double fraction, const char *status);
    void (*partial)(void *ctx, const char *command, const cJSON *result);
    void *job_ctx;
    volatile sig_atomic_t *cancel;
} Out;

/* Reports progress / a partial result if the Out takes them. */
void out_progress(Out *o, double fraction, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void out_partial(Out *o, const char *command, const cJSON *result);
/* True if the user asked to cancel the running command. */
bool out_cancelled(const Out *o);

/* Appends formatted text (a newline is not added). */
void out_text(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An Out that writes text to stdout. */
Out out_stdout(bool json);

typedef int (*CommandFn)(Workspace *ws, const Command *c, Out *o);

typedef struct {
    const char *name;
    const char *positional; /* usage of positional words, e.g. "FILE.onnx" */
    int min_pos, max_pos;
    const char *keys;       /* "split=train|test limit=N": keys, with choices after '=' if '|' */
    const char *summary;    /* one line */
    const char *help;       /* paragraph */
    CommandFn run;
} CommandDef;

extern const CommandDef command_table[];

const CommandDef *command_find(const char *name);

/* Validates arguments against the table and runs the command, filling
 * o->obj with {"command", "ok", "error"?, ...}. Returns the command's code. */
int command_run(Workspace *ws, const Command *c, Out *o);

/* Runs every command of text in order. In text mode errors print as one
 * line "origin:line: command: message" on stderr; in JSON mode one object
 * per command on stdout. Stops at the first failure unless keep-going is
 * set. Returns 0 if every command succeeded. */
int run_script_text(Workspace *ws, const char *text, const char *origin, Out *o);
/* The same, with hooks around each command (NULL: none): before runs
 * first, after gets the command's return code (a front end records the
 * session with them). */
typedef struct {
    void (*before)(void *ctx, Workspace *ws, const Command *c);
    void (*after)(void *ctx, Workspace *ws, const Command *c, int rc);
    void *ctx;
} ScriptHooks;
int run_script_text_hooked(Workspace *ws, const char *text, const char *origin, Out *o, const ScriptHooks *h);
int run_script_file(Workspace *ws, const char *path, Out *o);

/* Completion words: calls emit for every command name (arg_index < 0) or
 * for every key of command name (arg_index >= 0), beginning with prefix. */
void command_complete(const char *name, int arg_index, const char *prefix,
                      void (*emit)(const char *word, void *ctx), void *ctx);

/* Handlers (one file per family). */
int cmd_help(Workspace *ws, const Command *c, Out *o);
int cmd_set(Workspace *ws, const Command *c, Out *o);
int cmd_echo(Workspace *ws, const Command *c, Out *o);
int cmd_source(Workspace *ws, const Command *c, Out *o);
int cmd_load(Workspace *ws, const Command *c, Out *o);
int cmd_build(Workspace *ws, const Command *c, Out *o);
int cmd_info(Workspace *ws, const Command *c, Out *o);
int cmd_export(Workspace *ws, const Command *c, Out *o);
int cmd_run(Workspace *ws, const Command *c, Out *o);
int cmd_data(Workspace *ws, const Command *c, Out *o);
int cmd_eval(Workspace *ws, const Command *c, Out *o);
int cmd_train(Workspace *ws, const Command *c, Out *o);
int cmd_groups(Workspace *ws, const Command *c, Out *o);
int cmd_units(Workspace *ws, const Command *c, Out *o);
int cmd_mark(Workspace *ws, const Command *c, Out *o);
int cmd_unmark(Workspace *ws, const Command *c, Out *o);
int cmd_plan(Workspace *ws, const Command *c, Out *o);
int cmd_preview(Workspace *ws, const Command *c, Out *o);
int cmd_apply(Workspace *ws, const Command *c, Out *o);
int cmd_undo(Workspace *ws, const Command *c, Out *o);
int cmd_redo(Workspace *ws, const Command *c, Out *o);
int cmd_prune(Workspace *ws, const Command *c, Out *o);
int cmd_bench(Workspace *ws, const Command *c, Out *o);
int cmd_sparsity(Workspace *ws, const Command *c, Out *o);
int cmd_finetune(Workspace *ws, const Command *c, Out *o);
int cmd_sensitivity(Workspace *ws, const Command *c, Out *o);
/* prune budget=: per-group ratios from the sensitivity curves (cmd_sensitivity.c). */
int cmd_prune_budget(Workspace *ws, const Command *c, Out *o);
int cmd_score(Workspace *ws, const Command *c, Out *o);
int cmd_criteria(Workspace *ws, const Command *c, Out *o);
int cmd_plugin(Workspace *ws, const Command *c, Out *o);

/* Argument helpers: parse a value or fail naming the command and key. */
int arg_int(const Command *c, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out);
int arg_double(const Command *c, const char *key, double dflt, double lo, double hi, double *out);
int arg_bool(const Command *c, const char *key, bool dflt, bool *out);
/* Splits a comma-separated list into at most cap new strings; returns count. */
int split_list(const char *s, char **out, int cap);

#endif

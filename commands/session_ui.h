/* Commands that only make sense with a front end (record, bind,
 * dump-screen, quit, key) call through this small callback struct, which a
 * front end registers in the Workspace (ws->ui, ws->ui_ctx). commands/
 * never includes a front end's headers: the front end fills the struct.
 * A NULL hook (or no struct) makes the command fail with a message saying
 * it needs the interactive workbench. Hooks return 0 or a negative SH_E_*
 * code with a message recorded (sh_fail). */
#ifndef SH_SESSION_UI_H
#define SH_SESSION_UI_H

#include "commands.h"

#include <stdbool.h>

typedef struct UiHooks {
    /* Writes the session's successful commands so far to path as a script
     * and keeps appending later ones; path NULL stops recording. */
    int (*record)(void *ctx, const char *path, bool overwrite, Out *o);
    /* Binds key (a key name: j, Down, C-r, F5, Space...) to action: a UI
     * action name or a command line (":text" opens the console with text).
     * key NULL lists the bindings; action NULL shows key's binding. */
    int (*bind)(void *ctx, const char *key, const char *action, Out *o);
    /* Writes the screen as text, one line per row. */
    int (*dump_screen)(void *ctx, const char *path, bool overwrite, Out *o);
    /* Leaves the workbench; asks first when there is unsaved work unless force. */
    int (*quit)(void *ctx, bool force, Out *o);
    /* Presses the named key as if typed. */
    int (*key)(void *ctx, const char *name, Out *o);
} UiHooks;

int cmd_record(Workspace *ws, const Command *c, Out *o);
int cmd_bind(Workspace *ws, const Command *c, Out *o);
int cmd_dump_screen(Workspace *ws, const Command *c, Out *o);
int cmd_quit(Workspace *ws, const Command *c, Out *o);
int cmd_key(Workspace *ws, const Command *c, Out *o);

/* True for the commands of this family (a recorded script leaves them out). */
bool command_is_front_end(const char *name);

#endif

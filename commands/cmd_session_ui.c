/* Front-end commands: record, bind, dump-screen, quit, key. Each calls the
 * hook the front end registered (commands/session_ui.h). */
#include "session_ui.h"

#include "core/error.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static const UiHooks *hooks(const Workspace *ws) { return ws->ui; }

static int no_front_end(const char *name)
{
    return sh_fail(SH_E_STATE, "%s needs the interactive workbench (run shears MODEL.onnx in a terminal)", name);
}

bool command_is_front_end(const char *name)
{
    static const char *const names[] = {"record", "bind", "dump-screen", "quit", "key", NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

int cmd_record(Workspace *ws, const Command *c, Out *o)
{
    const UiHooks *h = hooks(ws);
    bool force;
    int rc = arg_bool(c, "force", false, &force);
    if (rc < 0)
        return rc;
    if (!h || !h->record)
        return sh_fail(SH_E_STATE, "record needs a session that keeps its history (the shears program, "
                                   "in a script, with -c or in the workbench)");
    const char *path = cmd_pos(c, 0);
    if ((rc = h->record(ws->ui_ctx, strcmp(path, "off") == 0 ? NULL : path, force, o)) < 0)
        return rc;
    cJSON_AddStringToObject(o->obj, "record", path);
    return 0;
}

/* Joins words from index `from` on into one command line (key=value words
 * kept as written). */
static char *join_words(const Command *c, int from)
{
    size_t len = 1;
    for (int i = from; i < c->n_args; i++)
        len += strlen(c->args[i].value) + (c->args[i].key ? strlen(c->args[i].key) + 1 : 0) + 1;
    char *text = xcalloc(len, 1);
    for (int i = from; i < c->n_args; i++) {
        if (i > from)
            strcat(text, " ");
        if (c->args[i].key) {
            strcat(text, c->args[i].key);
            strcat(text, "=");
        }
        strcat(text, c->args[i].value);
    }
    return text;
}

int cmd_bind(Workspace *ws, const Command *c, Out *o)
{
    const UiHooks *h = hooks(ws);
    if (!h || !h->bind)
        return no_front_end("bind");
    if (c->n_args > 0 && c->args[0].key)
        return sh_fail(SH_E_ARG, "bind takes a key name first (bind KEY COMMAND), not '%s=...'", c->args[0].key);
    const char *key = c->n_args > 0 ? c->args[0].value : NULL;
    char *action = c->n_args > 1 ? join_words(c, 1) : NULL;
    int rc = h->bind(ws->ui_ctx, key, action, o);
    if (rc == 0 && key) {
        cJSON_AddStringToObject(o->obj, "key", key);
        if (action)
            cJSON_AddStringToObject(o->obj, "action", action);
    }
    free(action);
    return rc;
}

int cmd_dump_screen(Workspace *ws, const Command *c, Out *o)
{
    const UiHooks *h = hooks(ws);
    bool force;
    int rc = arg_bool(c, "force", false, &force);
    if (rc < 0)
        return rc;
    if (!h || !h->dump_screen)
        return no_front_end("dump-screen");
    if ((rc = h->dump_screen(ws->ui_ctx, cmd_pos(c, 0), force, o)) == 0)
        cJSON_AddStringToObject(o->obj, "path", cmd_pos(c, 0));
    return rc;
}

int cmd_quit(Workspace *ws, const Command *c, Out *o)
{
    const UiHooks *h = hooks(ws);
    bool force;
    int rc = arg_bool(c, "force", false, &force);
    if (rc < 0)
        return rc;
    if (!h || !h->quit)
        return no_front_end("quit");
    return h->quit(ws->ui_ctx, force, o);
}

int cmd_key(Workspace *ws, const Command *c, Out *o)
{
    const UiHooks *h = hooks(ws);
    if (!h || !h->key)
        return no_front_end("key");
    for (int i = 0; i < c->n_args; i++) {
        if (c->args[i].key)
            return sh_fail(SH_E_ARG, "key takes key names (j, Down, C-r, Space...), not '%s=...'", c->args[i].key);
        int rc = h->key(ws->ui_ctx, c->args[i].value, o);
        if (rc < 0)
            return rc;
    }
    return 0;
}

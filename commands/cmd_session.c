/* Session commands: help, set, echo, source. */
#include "commands.h"

#include "core/error.h"
#include "core/threads.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

int cmd_help(Workspace *ws, const Command *c, Out *o)
{
    (void)ws;
    const char *name = cmd_pos(c, 0);
    if (name) {
        const CommandDef *d = command_find(name);
        if (!d)
            return sh_fail(SH_E_ARG, "no command '%s' (type 'help' for the list)", name);
        out_text(o, "%s %s%s%s\n  %s\n  %s\n", d->name, d->positional, d->keys[0] ? " " : "",
                 d->keys, d->summary, d->help);
        cJSON_AddStringToObject(o->obj, "name", d->name);
        cJSON_AddStringToObject(o->obj, "usage", d->positional);
        cJSON_AddStringToObject(o->obj, "arguments", d->keys);
        cJSON_AddStringToObject(o->obj, "summary", d->summary);
        cJSON_AddStringToObject(o->obj, "help", d->help);
        return 0;
    }
    cJSON *list = cJSON_AddArrayToObject(o->obj, "commands");
    out_text(o, "commands (help COMMAND for details; ';' separates commands, '#' starts a comment):\n");
    for (const CommandDef *d = command_table; d->name; d++) {
        out_text(o, "  %-8s %s\n", d->name, d->summary);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", d->name);
        cJSON_AddStringToObject(e, "summary", d->summary);
        cJSON_AddItemToArray(list, e);
    }
    return 0;
}

int cmd_set(Workspace *ws, const Command *c, Out *o)
{
    const char *name = cmd_pos(c, 0), *value = cmd_pos(c, 1);
    Command fake = {.name = c->name};
    Arg arg = {.key = (char *)name, .value = (char *)value};
    fake.args = &arg;
    fake.n_args = 1;
    int rc;
    if (strcmp(name, "keep-going") == 0) {
        bool on;
        if ((rc = arg_bool(&fake, name, false, &on)) < 0)
            return rc;
        ws->keep_going = on;
    } else if (strcmp(name, "threads") == 0) {
        int64_t n;
        if ((rc = arg_int(&fake, name, 1, 1, 256, &n)) < 0)
            return rc;
        ws->threads = (int)n;
        sh_set_threads((int)n);
    } else if (strcmp(name, "batch") == 0) {
        int64_t n;
        if ((rc = arg_int(&fake, name, 64, 1, 1 << 20, &n)) < 0)
            return rc;
        ws->batch = n;
    } else
        return sh_fail(SH_E_ARG, "unknown setting '%s' (settings: keep-going, threads, batch)", name);
    out_text(o, "%s = %s\n", name, value);
    cJSON_AddStringToObject(o->obj, "name", name);
    cJSON_AddStringToObject(o->obj, "value", value);
    return 0;
}

int cmd_echo(Workspace *ws, const Command *c, Out *o)
{
    (void)ws;
    size_t len = 1;
    for (int i = 0; i < c->n_args; i++)
        len += strlen(c->args[i].value) + (c->args[i].key ? strlen(c->args[i].key) + 1 : 0) + 1;
    char *text = xcalloc(len, 1);
    for (int i = 0; i < c->n_args; i++) {
        if (i)
            strcat(text, " ");
        if (c->args[i].key) {
            strcat(text, c->args[i].key);
            strcat(text, "=");
        }
        strcat(text, c->args[i].value);
    }
    out_text(o, "%s\n", text);
    cJSON_AddStringToObject(o->obj, "text", text);
    free(text);
    return 0;
}

int cmd_source(Workspace *ws, const Command *c, Out *o)
{
    static int depth = 0;
    if (depth >= 16)
        return sh_fail(SH_E_ARG, "scripts nested more than 16 deep (a script sourcing itself?)");
    depth++;
    cJSON *saved = o->obj;
    int rc = run_script_file(ws, cmd_pos(c, 0), o);
    o->obj = saved;
    depth--;
    if (rc < 0 && !sh_errmsg()[0])
        sh_fail(rc, "%s failed", cmd_pos(c, 0));
    return rc;
}

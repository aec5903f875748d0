/* libFuzzer target: the console language. Parses the fuzz data as a
 * script and runs every command on an empty Workspace, in text mode with
 * output discarded or in JSON mode (chosen by the first byte). Commands
 * that could touch the file system are parsed but not run (see
 * SAFE_COMMANDS).
 * Invariant checked: command_to_text writes a command back as text that
 * parses to the same command. */
#include "commands/commands.h"
#include "core/error.h"
#include "core/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commands that cannot reach the file system from an empty Workspace.
 * Every other command of the table (load, build, export, save, source,
 * data, run, and whatever is added later) is parsed but not run: it could
 * read a device or write files. Unknown names run (their error path). */
static const char *const SAFE_COMMANDS[] = {"help", "set", "echo", "info", "eval", "train", "finetune", NULL};

static bool may_run(const char *name)
{
    if (!command_find(name))
        return true;
    for (int i = 0; SAFE_COMMANDS[i]; i++)
        if (strcmp(name, SAFE_COMMANDS[i]) == 0)
            return true;
    return false;
}

static void discard(void *ctx, const char *text)
{
    (void)ctx;
    (void)text;
}

static bool same_command(const Command *a, const Command *b)
{
    if (strcmp(a->name, b->name) != 0 || a->n_args != b->n_args)
        return false;
    for (int i = 0; i < a->n_args; i++) {
        const Arg *x = &a->args[i], *y = &b->args[i];
        if ((!x->key) != (!y->key) || (x->key && strcmp(x->key, y->key) != 0) ||
            strcmp(x->value, y->value) != 0)
            return false;
    }
    return true;
}

static void check_to_text(const Command *c)
{
    char *text = command_to_text(c);
    CommandList again;
    if (parse_commands(text, &again) < 0 || again.n != 1 || !same_command(c, &again.cmds[0])) {
        fprintf(stderr, "fuzz_commands: command '%s' written back as [%s] parses differently\n",
                c->name, text);
        abort();
    }
    command_list_done(&again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a model may ask for any size: past this, shears must refuse cleanly
     * (libFuzzer reports mallocs over 2 GB as failures) */
    sh_set_memory_budget((size_t)256 << 20);
    if (size == 0 || size > 4096)
        return 0;
    bool json = data[0] & 1;
    char *text = xmalloc(size);
    memcpy(text, data + 1, size - 1); /* the script is NUL-terminated at its first NUL */
    text[size - 1] = '\0';
    CommandList list;
    if (parse_commands(text, &list) < 0) {
        free(text);
        return 0;
    }
    Workspace *ws = workspace_new();
    Out out = {.json = json, .sink = discard};
    for (int i = 0; i < list.n; i++) {
        const Command *c = &list.cmds[i];
        check_to_text(c);
        if (!may_run(c->name))
            continue;
        cJSON *obj = cJSON_CreateObject();
        out.obj = obj;
        command_run(ws, c, &out);
        char *printed = cJSON_PrintUnformatted(obj);
        free(printed);
        cJSON_Delete(obj);
    }
    workspace_free(ws);
    command_list_done(&list);
    free(text);
    return 0;
}

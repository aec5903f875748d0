#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "keymap.h"

#include "commands/parse.h"
#include "core/error.h"
#include "core/util.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char keymap_defaults[] =
    "# moving\n"
    "bind Up move-up; bind k move-up; bind Down move-down; bind j move-down\n"
    "bind PgUp page-up; bind C-b page-up; bind PgDn page-down; bind C-f page-down\n"
    "bind Home move-first; bind g move-first; bind End move-last; bind G move-last\n"
    "bind Left move-left; bind h move-left; bind Right move-right; bind l move-right\n"
    "bind Enter enter; bind Tab next-pane; bind BTab prev-pane\n"
    "# the workbench\n"
    "bind : console; bind / search; bind n search-next; bind o sort; bind v plot-view\n"
    "bind ? help; bind F1 help; bind Esc cancel; bind q quit; bind C-l redraw\n"
    "bind Space toggle-mark\n"
    "# commands (%g: the selected group, %u: the selected unit, %m: the model's name;\n"
    "# a leading ':' opens the console with the text to finish)\n"
    "bind m \":mark %g ratio=\"\n"
    "bind s \"score l1\"\n"
    "bind S \"sensitivity %g criterion=l1\"\n"
    "bind p preview\n"
    "bind a apply\n"
    "bind f \"finetune epochs=1\"\n"
    "bind u undo\n"
    "bind C-r redo\n"
    "bind e \":export %m-pruned.onnx\"\n"
    "bind E eval\n"
    "bind b bench\n";

static const struct {
    const char *name, *help;
} actions[ACT_COUNT] = {
    [ACT_NONE] = {"none", "does nothing"},
    [ACT_UP] = {"move-up", "previous row"},
    [ACT_DOWN] = {"move-down", "next row"},
    [ACT_PAGE_UP] = {"page-up", "previous page"},
    [ACT_PAGE_DOWN] = {"page-down", "next page"},
    [ACT_FIRST] = {"move-first", "first row"},
    [ACT_LAST] = {"move-last", "last row"},
    [ACT_LEFT] = {"move-left", "previous column (heat map) / group"},
    [ACT_RIGHT] = {"move-right", "next column (heat map) / group"},
    [ACT_ENTER] = {"enter", "open: the selected layer's units"},
    [ACT_NEXT_PANE] = {"next-pane", "focus the next pane"},
    [ACT_PREV_PANE] = {"prev-pane", "focus the previous pane"},
    [ACT_CONSOLE] = {"console", "open the command console"},
    [ACT_SEARCH] = {"search", "search the focused pane"},
    [ACT_SEARCH_NEXT] = {"search-next", "next search match"},
    [ACT_TOGGLE_MARK] = {"toggle-mark", "mark / unmark the selected unit (runs mark / unmark)"},
    [ACT_SORT] = {"sort", "units by score / by index"},
    [ACT_HELP] = {"help", "this help"},
    [ACT_CANCEL] = {"cancel", "cancel the job, close an overlay"},
    [ACT_QUIT] = {"quit", "leave (asks when there is unsaved work)"},
    [ACT_REDRAW] = {"redraw", "redraw the screen"},
    [ACT_PLOT_VIEW] = {"plot-view", "plot: sensitivity / training curves"},
};

const char *action_name(Action a) { return a < ACT_COUNT ? actions[a].name : "none"; }
const char *action_help(Action a) { return a < ACT_COUNT ? actions[a].help : ""; }

Action action_find(const char *name)
{
    for (int a = 1; a < ACT_COUNT; a++)
        if (strcmp(actions[a].name, name) == 0)
            return (Action)a;
    return ACT_NONE;
}

static const struct {
    const char *name;
    int code;
} named[] = {
    {"Space", ' '},         {"Enter", '\n'},     {"Tab", '\t'},       {"BTab", KEY_BTAB},
    {"Esc", 27},            {"Backspace", 127},  {"Delete", KEY_DC},  {"Up", KEY_UP},
    {"Down", KEY_DOWN},     {"Left", KEY_LEFT},  {"Right", KEY_RIGHT}, {"PgUp", KEY_PPAGE},
    {"PgDn", KEY_NPAGE},    {"Home", KEY_HOME},  {"End", KEY_END},    {"Insert", KEY_IC},
    {"PageUp", KEY_PPAGE},  {"PageDown", KEY_NPAGE}, {"Escape", 27},  {"Return", '\n'},
    {"S-Tab", KEY_BTAB},    {"Click", KEY_SH_CLICK}, {"WheelUp", KEY_SH_WHEEL_UP},
    {"WheelDown", KEY_SH_WHEEL_DOWN},
};

int key_parse(const char *name, int *code)
{
    size_t len = strlen(name);
    if (len == 1 && (unsigned char)name[0] > ' ' && (unsigned char)name[0] < 127) {
        *code = name[0];
        return 0;
    }
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(named[i].name, name) == 0) {
            *code = named[i].code;
            return 0;
        }
    if (len == 3 && (name[0] == 'C' || name[0] == 'c') && name[1] == '-' && name[2] >= 'a' && name[2] <= 'z') {
        *code = name[2] - 'a' + 1;
        return 0;
    }
    if ((name[0] == 'F' || name[0] == 'f') && len >= 2 && len <= 3) {
        int n = atoi(name + 1);
        if (n >= 1 && n <= 12) {
            *code = KEY_F(n);
            return 0;
        }
    }
    return sh_fail(SH_E_ARG, "unknown key '%s' (keys: a character, Space, Enter, Tab, Esc, Up, PgDn, Home, F5, C-r)", name);
}

void keycode_name(int code, char *buf, size_t n)
{
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (named[i].code == code) {
            snprintf(buf, n, "%s", named[i].name);
            return;
        }
    if (code > ' ' && code < 127)
        snprintf(buf, n, "%c", code);
    else if (code >= 1 && code <= 26)
        snprintf(buf, n, "C-%c", 'a' + code - 1);
    else if (code >= KEY_F(1) && code <= KEY_F(12))
        snprintf(buf, n, "F%d", code - KEY_F(0));
    else
        snprintf(buf, n, "#%d", code);
}

void keymap_init(Keymap *k) { memset(k, 0, sizeof *k); }

void keymap_done(Keymap *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->b[i].command);
    free(k->b);
    memset(k, 0, sizeof *k);
}

const Binding *keymap_find(const Keymap *k, int key)
{
    if (key == '\r' || key == KEY_ENTER)
        key = '\n';
    if (key == KEY_BACKSPACE || key == 8)
        key = 127;
    for (int i = 0; i < k->n; i++)
        if (k->b[i].key == key)
            return &k->b[i];
    return NULL;
}

int keymap_bind(Keymap *k, const char *key, const char *target)
{
    int code;
    int rc = key_parse(key, &code);
    if (rc < 0)
        return rc;
    while (*target == ' ')
        target++;
    if (!*target)
        return sh_fail(SH_E_ARG, "bind %s needs an action or a command", key);
    Action act = action_find(target);
    Binding *b = (Binding *)keymap_find(k, code);
    if (!b) {
        grow_array((void **)&k->b, &k->cap, k->n + 1, sizeof *k->b);
        b = &k->b[k->n++];
        b->key = code;
    } else
        free(b->command);
    b->act = act;
    b->command = act == ACT_NONE ? xstrdup(target) : NULL;
    return 0;
}

void keymap_load_defaults(Keymap *k)
{
    CommandList list;
    if (parse_commands(keymap_defaults, &list) < 0)
        return;
    for (int i = 0; i < list.n; i++) {
        const Command *c = &list.cmds[i];
        if (strcmp(c->name, "bind") != 0 || c->n_args < 2)
            continue;
        /* the target: the remaining words, key=value kept as written */
        char target[512] = "";
        for (int a = 1; a < c->n_args; a++) {
            size_t used = strlen(target);
            snprintf(target + used, sizeof target - used, "%s%s%s%s", a > 1 ? " " : "",
                     c->args[a].key ? c->args[a].key : "", c->args[a].key ? "=" : "", c->args[a].value);
        }
        keymap_bind(k, c->args[0].value, target);
    }
    command_list_done(&list);
}

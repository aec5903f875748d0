/* Keys and what they do. A key is bound either to a workbench action
 * (move-down, next-pane, toggle-mark, ...: they change only the view) or
 * to a command line, run through the console like a typed one, so it
 * shows in the log and lands in a recorded script. The defaults are
 * written in the command language (`bind KEY TARGET`), like a config file. */
#ifndef SH_TUI_KEYMAP_H
#define SH_TUI_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ACT_NONE,
    ACT_UP, ACT_DOWN, ACT_PAGE_UP, ACT_PAGE_DOWN, ACT_FIRST, ACT_LAST, ACT_LEFT, ACT_RIGHT, ACT_ENTER,
    ACT_NEXT_PANE, ACT_PREV_PANE, ACT_CONSOLE, ACT_SEARCH, ACT_SEARCH_NEXT, ACT_TOGGLE_MARK, ACT_SORT,
    ACT_HELP, ACT_CANCEL, ACT_QUIT, ACT_REDRAW, ACT_PLOT_VIEW,
    ACT_COUNT
} Action;

/* Synthetic keys: mouse events become these (the row is in the app). */
#define KEY_SH_CLICK 0x7001
#define KEY_SH_WHEEL_UP 0x7002
#define KEY_SH_WHEEL_DOWN 0x7003
#define KEY_SH_SORT 0x7004

typedef struct {
    int key;
    Action act;     /* ACT_NONE: command */
    char *command;  /* the command line (":..." opens the console with it) */
} Binding;

typedef struct Keymap {
    Binding *b;
    int n, cap;
} Keymap;

/* Parses a key name: a character, Space, Enter, Tab, BTab, Esc, Backspace,
 * Delete, Up/Down/Left/Right, PgUp/PgDn, Home/End, F1..F12, C-a..C-z. */
int key_parse(const char *name, int *code);
/* The name key_parse reads back. */
void keycode_name(int code, char *buf, size_t n);

const char *action_name(Action a);
const char *action_help(Action a);
Action action_find(const char *name);

void keymap_init(Keymap *k);
void keymap_done(Keymap *k);
/* Binds key to target (an action name or a command line). */
int keymap_bind(Keymap *k, const char *key, const char *target);
const Binding *keymap_find(const Keymap *k, int key);
/* The built-in bindings, as commands (see keymap.c). */
extern const char keymap_defaults[];
/* Binds the defaults. */
void keymap_load_defaults(Keymap *k);

#endif

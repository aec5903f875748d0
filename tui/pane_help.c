#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_help.h"

#include "app.h"
#include "pane_overlay.h"

#include "commands/commands.h"

#include <stdio.h>
#include <string.h>

void pane_help_fill(Pane *p, const Keymap *k)
{
    overlay_clear(p);
    overlay_set_title(p, "help: keys and commands", " Esc / q: close    arrows, PgUp/PgDn: scroll");
    overlay_add(p, ROLE_HEADER, "keys (change them with: bind KEY ACTION|COMMAND, in ~/.config/shears/config)");
    for (int pass = 0; pass < 2; pass++) /* actions first, then commands */
        for (int i = 0; i < k->n; i++) {
            const Binding *b = &k->b[i];
            char name[32];
            if ((pass == 0) != (b->act != ACT_NONE))
                continue;
            keycode_name(b->key, name, sizeof name);
            if (b->act != ACT_NONE)
                overlay_add(p, ROLE_NORMAL, "  %-9s %-12s %s", name, action_name(b->act), action_help(b->act));
            else
                overlay_add(p, ROLE_NORMAL, "  %-9s %s%s", name, b->command,
                            b->command[0] == ':' ? "   (opens the console)" : "");
        }
    overlay_add(p, ROLE_NORMAL, "%s", "");
    overlay_add(p, ROLE_HEADER, "commands (type : then a command; Tab completes; help COMMAND for details)");
    for (const CommandDef *d = command_table; d->name; d++)
        overlay_add(p, ROLE_NORMAL, "  %-12s %s", d->name, d->summary);
}

static bool help_key(Pane *p, struct App *app, int key)
{
    (void)app;
    return overlay_scroll_key(p, key);
}

static const PaneClass help_class = {.name = "help", .draw = overlay_draw, .on_key = help_key, .done = overlay_done};

Pane *pane_help_new(void) { return pane_overlay_new(&help_class); }

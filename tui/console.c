#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "console.h"

#include "commands/commands.h"
#include "core/util.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <readline/history.h>
#include <readline/readline.h>

/* Readline is one global machine: the console using it now. */
static Console *current;
static unsigned char pending[64];
static int n_pending, head;
static FILE *devnull;
static bool initialized;

static int feed_getc(FILE *f)
{
    (void)f;
    return head < n_pending ? pending[head++] : 0; /* never blocks: readline reads only what was fed */
}

static int feed_available(void) { return head < n_pending; }

static void redisplay(void) {} /* the app draws from console_view */

static void on_line(char *line)
{
    if (!current)
        return;
    free(current->line);
    current->line = line ? xstrdup(line) : xstrdup("");
    current->finished = true;
    free(line);
    rl_callback_handler_remove(); /* the handler is installed again by console_open */
}

/* ---- completion ---- */

typedef struct {
    char **words;
    int n, cap;
} Words;

static Words cands;

static void add_word(const char *w, void *ctx)
{
    Words *ws = ctx;
    for (int i = 0; i < ws->n; i++)
        if (!strcmp(ws->words[i], w))
            return;
    grow_array((void **)&ws->words, &ws->cap, ws->n + 1, sizeof *ws->words);
    ws->words[ws->n++] = xstrdup(w);
}

static void clear_words(Words *ws)
{
    for (int i = 0; i < ws->n; i++)
        free(ws->words[i]);
    ws->n = 0;
}

static char *word_generator(const char *text, int state)
{
    static int i;
    if (!state)
        i = 0;
    size_t len = strlen(text);
    while (i < cands.n) {
        const char *w = cands.words[i++];
        if (strncmp(w, text, len) == 0)
            return strdup(w); /* readline frees with free() */
    }
    return NULL;
}

/* Adds the '|'-separated choices of spec (up to a blank) that begin with text. */
static void add_choices(const char *spec, size_t len, const char *text)
{
    char buf[256];
    if (len >= sizeof buf)
        return;
    memcpy(buf, spec, len);
    buf[len] = '\0';
    for (char *save, *tok = strtok_r(buf, "|[]", &save); tok; tok = strtok_r(NULL, "|[]", &save))
        if (tok[0] && !(tok[0] >= 'A' && tok[0] <= 'Z') && strncmp(tok, text, strlen(text)) == 0 &&
            !strchr(tok, '.') && !strchr(tok, ' '))
            add_word(tok, &cands);
}

static void add_names(const char *text, bool groups, bool layers, bool criteria)
{
    const ViewModel *vm = current ? current->vm : NULL;
    size_t len = strlen(text);
    if (!vm)
        return;
    for (int i = 0; groups && i < vm->n_groups; i++)
        if (!strncmp(vm->groups[i].name, text, len))
            add_word(vm->groups[i].name, &cands);
    for (int i = 0; layers && i < vm->n_layers; i++)
        if (!strncmp(vm->layers[i].name, text, len))
            add_word(vm->layers[i].name, &cands);
    for (int i = 0; criteria && i < vm->n_criteria; i++)
        if (!strncmp(vm->criteria[i], text, len))
            add_word(vm->criteria[i], &cands);
}

/* The command word and the index of the word being completed (0 = the
 * command itself), looking back from start to the last ';'. */
static int word_context(int start, char *cmd, size_t n)
{
    const char *buf = rl_line_buffer;
    int from = start;
    while (from > 0 && buf[from - 1] != ';')
        from--;
    int words = 0;
    cmd[0] = '\0';
    for (int i = from; i < start;) {
        while (i < start && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i >= start)
            break;
        int b = i;
        while (i < start && buf[i] != ' ' && buf[i] != '\t')
            i++;
        if (words == 0)
            snprintf(cmd, n, "%.*s", i - b, buf + b);
        words++;
    }
    return words;
}

static char **complete_value(const CommandDef *d, const char *key, const char *text)
{
    const char *p = strstr(d->keys, key);
    while (p && p != d->keys && p[-1] != ' ')
        p = strstr(p + 1, key);
    if (!strcmp(key, "criterion"))
        add_names(text, false, false, true);
    else if (!strcmp(key, "ignore"))
        add_names(text, true, false, false);
    if (p && p[strlen(key)] == '=') {
        const char *v = p + strlen(key) + 1;
        size_t len = strcspn(v, " ");
        if (memchr(v, '|', len))
            add_choices(v, len, text);
        else if (strstr(key, "FILE") || !strncmp(v, "FILE", 4) || strstr(v, "FILE"))
            return rl_completion_matches(text, rl_filename_completion_function);
    }
    return cands.n ? rl_completion_matches(text, word_generator) : NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    char cmd[64];
    clear_words(&cands);
    rl_attempted_completion_over = 1; /* no readline fallback to file names */
    int word = word_context(start, cmd, sizeof cmd);
    if (word == 0) {
        command_complete(NULL, -1, text, add_word, &cands);
        return cands.n ? rl_completion_matches(text, word_generator) : NULL;
    }
    const CommandDef *d = command_find(cmd);
    if (!d)
        return NULL;
    if (start > 0 && rl_line_buffer[start - 1] == '=') { /* a value: find its key */
        int k = start - 1;
        while (k > 0 && rl_line_buffer[k - 1] != ' ')
            k--;
        char key[64];
        snprintf(key, sizeof key, "%.*s", start - 1 - k, rl_line_buffer + k);
        return complete_value(d, key, text);
    }
    const char *pos = d->positional;
    if (strstr(pos, "GROUP"))
        add_names(text, true, true, false);
    if (strstr(pos, "CRITERION"))
        add_names(text, false, false, true);
    if (strchr(pos, '|') && !strstr(pos, "FILE"))
        add_choices(pos, strlen(pos), text);
    if (!strcmp(cmd, "plan") || !strcmp(cmd, "plugin")) /* verbs, then files */
        add_choices(pos, strlen(pos), text);
    command_complete(cmd, word - 1, text, add_word, &cands);
    bool files = strstr(pos, "FILE") || strstr(pos, ".onnx") || strstr(pos, ".json") || strstr(pos, "PATH");
    if (files && (!cands.n || strchr(text, '/') || text[0] == '.')) {
        clear_words(&cands);
        rl_attempted_completion_over = 1;
        return rl_completion_matches(text, rl_filename_completion_function);
    }
    return cands.n ? rl_completion_matches(text, word_generator) : NULL;
}

/* Readline would print the candidates; the app shows them instead. */
static void show_matches(char **matches, int n, int max_len)
{
    (void)max_len;
    if (!current)
        return;
    size_t used = 0;
    current->matches[0] = '\0';
    for (int i = 1; i <= n && used + 2 < sizeof current->matches; i++)
        used += (size_t)snprintf(current->matches + used, sizeof current->matches - used, "%s%s",
                                 i > 1 ? "  " : "", matches[i]);
}

static void init_readline(void)
{
    if (initialized)
        return;
    initialized = true;
    devnull = fopen("/dev/null", "r+");
    rl_readline_name = "shears";
    rl_instream = devnull;
    rl_outstream = devnull;
    rl_getc_function = feed_getc;
    rl_input_available_hook = feed_available;
    rl_redisplay_function = redisplay;
    rl_prep_term_function = NULL;
    rl_deprep_term_function = NULL;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_attempted_completion_function = complete;
    rl_completion_display_matches_hook = show_matches;
    rl_completer_word_break_characters = (char *)" \t\n\"';=";
    rl_basic_word_break_characters = (char *)" \t\n\"';=";
    rl_initialize();
    rl_variable_bind("bell-style", "none");
    rl_variable_bind("enable-bracketed-paste", "off");
    rl_variable_bind("show-all-if-ambiguous", "off");
    rl_variable_bind("show-all-if-unmodified", "on");
    rl_set_screen_size(24, 1000);
}

void console_init(Console *c, const char *history_path)
{
    memset(c, 0, sizeof *c);
    init_readline();
    using_history();
    clear_history();
    stifle_history(1000);
    c->history_path = xstrdup(history_path);
    if (c->history_path)
        read_history(c->history_path);
}

void console_done(Console *c)
{
    console_close(c);
    if (c->history_path)
        history_truncate_file(c->history_path, 1000);
    clear_history();
    free(c->history_path);
    free(c->line);
    clear_words(&cands);
    free(cands.words);
    cands.words = NULL;
    cands.cap = 0;
    memset(c, 0, sizeof *c);
}

void console_open(Console *c, const char *prompt, const char *prefill, bool keep_history)
{
    if (current && current != c)
        console_close(current);
    current = c;
    c->active = true;
    c->finished = false;
    c->keep_history = keep_history;
    c->matches[0] = '\0';
    snprintf(c->prompt, sizeof c->prompt, "%s", prompt);
    n_pending = head = 0;
    rl_callback_handler_install(c->prompt, on_line);
    using_history(); /* history navigation starts from the newest line */
    if (prefill && prefill[0]) {
        rl_insert_text(prefill);
        rl_point = rl_end;
    }
}

void console_close(Console *c)
{
    if (!c->active)
        return;
    c->active = false;
    if (!c->finished)
        rl_callback_handler_remove();
    if (current == c)
        current = NULL;
}

/* The bytes a terminal sends for key. */
static int key_bytes(int key, unsigned char *out)
{
    const char *seq = NULL;
    switch (key) {
    case KEY_LEFT: seq = "\033[D"; break;
    case KEY_RIGHT: seq = "\033[C"; break;
    case KEY_UP: seq = "\033[A"; break;
    case KEY_DOWN: seq = "\033[B"; break;
    case KEY_HOME: seq = "\033[H"; break;
    case KEY_END: seq = "\033[F"; break;
    case KEY_DC: seq = "\033[3~"; break;
    case KEY_BACKSPACE: out[0] = 127; return 1;
    case KEY_ENTER: out[0] = '\n'; return 1;
    default:
        if (key >= 0 && key < 256) {
            out[0] = (unsigned char)key;
            return 1;
        }
        return 0;
    }
    memcpy(out, seq, strlen(seq));
    return (int)strlen(seq);
}

static void add_to_history(Console *c, const char *line)
{
    if (!c->keep_history || !line[0])
        return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && !strcmp(last->line, line))
        return;
    add_history(line);
    if (!c->history_path)
        return;
    struct stat st;
    if (stat(c->history_path, &st) != 0)
        write_history(c->history_path);
    else
        append_history(1, c->history_path);
}

bool console_key(Console *c, int key)
{
    if (!c->active || c->finished)
        return c->finished;
    if (key == '\r')
        key = '\n';
    n_pending = key_bytes(key, pending);
    head = 0;
    c->matches[0] = key == '\t' ? c->matches[0] : '\0';
    while (head < n_pending && !c->finished)
        rl_callback_read_char();
    n_pending = head = 0;
    if (c->finished) {
        add_to_history(c, c->line);
        c->active = false;
        if (current == c)
            current = NULL;
    }
    return c->finished;
}

char *console_take_line(Console *c)
{
    char *line = c->line;
    c->line = NULL;
    c->finished = false;
    return line ? line : xstrdup("");
}

void console_view(const Console *c, const char **prompt, const char **line, int *point)
{
    *prompt = c->prompt;
    *line = c->active && rl_line_buffer ? rl_line_buffer : "";
    *point = c->active ? rl_point : 0;
}

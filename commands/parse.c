#include "parse.h"

#include "core/error.h"
#include "core/util.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t n, cap;
} Str;

static void str_push(Str *s, char c)
{
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->buf = xrealloc(s->buf, s->cap);
    }
    s->buf[s->n++] = c;
    s->buf[s->n] = '\0';
}

static void add_word(Command *c, Str *w, bool quoted_key_part, int key_len)
{
    char *text = w->buf ? w->buf : xstrdup("");
    w->buf = NULL;
    w->n = w->cap = 0;
    if (!c->name) {
        c->name = text;
        return;
    }
    c->args = xrealloc(c->args, sizeof *c->args * (size_t)(c->n_args + 1));
    Arg *a = &c->args[c->n_args++];
    if (key_len > 0 && !quoted_key_part) {
        a->key = xmalloc((size_t)key_len + 1);
        memcpy(a->key, text, (size_t)key_len);
        a->key[key_len] = '\0';
        a->value = xstrdup(text + key_len + 1);
        free(text);
    } else {
        a->key = NULL;
        a->value = text;
    }
}

static void finish_command(CommandList *l, Command *c)
{
    if (c->name) {
        l->cmds = xrealloc(l->cmds, sizeof *l->cmds * (size_t)(l->n + 1));
        l->cmds[l->n++] = *c;
    }
    memset(c, 0, sizeof *c);
}

static bool is_key_char(char ch) { return isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.'; }

int parse_commands(const char *text, CommandList *out)
{
    Command cur = {0};
    Str word = {0};
    bool in_word = false, quoted_before_eq = false;
    int line = 1, key_len = -1;
    memset(out, 0, sizeof *out);
    for (const char *p = text;; p++) {
        char ch = *p;
        bool end = ch == '\0' || ch == '\n' || ch == ';' || ch == '#';
        if (end || ch == ' ' || ch == '\t' || ch == '\r') {
            if (in_word) {
                if (!cur.name)
                    cur.line = line;
                add_word(&cur, &word, quoted_before_eq, key_len);
                in_word = false;
            }
            if (ch == '#')
                while (p[1] && p[1] != '\n')
                    p++;
            if (end && ch != '#')
                finish_command(out, &cur);
            if (ch == '\n')
                line++;
            if (ch == '\0')
                break;
            continue;
        }
        if (!in_word) {
            in_word = true;
            quoted_before_eq = false;
            key_len = -1;
            str_push(&word, 'x'); /* ensure a buffer even for "" */
            word.n = 0;
            word.buf[0] = '\0';
        }
        if (ch == '"' || ch == '\'') {
            char q = ch;
            int quote_line = line; /* errors name where the quote opens */
            if (key_len < 0)
                quoted_before_eq = true;
            for (p++; *p && *p != q; p++) {
                if (*p == '\\' && q == '"' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                if (*p == '\n')
                    line++;
                str_push(&word, *p);
            }
            if (!*p) {
                free(word.buf);
                command_done(&cur);
                command_list_done(out);
                return sh_fail(SH_E_ARG, "line %d: unterminated quote", quote_line);
            }
            continue;
        }
        if (ch == '=' && key_len < 0 && cur.name && !quoted_before_eq && word.n > 0) {
            bool ok = true;
            for (size_t i = 0; i < word.n; i++)
                ok = ok && is_key_char(word.buf[i]);
            if (ok)
                key_len = (int)word.n;
        }
        str_push(&word, ch);
    }
    free(word.buf);
    return 0;
}

void command_done(Command *c)
{
    free(c->name);
    for (int i = 0; i < c->n_args; i++) {
        free(c->args[i].key);
        free(c->args[i].value);
    }
    free(c->args);
    memset(c, 0, sizeof *c);
}

void command_list_done(CommandList *l)
{
    for (int i = 0; i < l->n; i++)
        command_done(&l->cmds[i]);
    free(l->cmds);
    memset(l, 0, sizeof *l);
}

const char *cmd_get(const Command *c, const char *key)
{
    for (int i = c->n_args - 1; i >= 0; i--) /* the last one given wins */
        if (c->args[i].key && strcmp(c->args[i].key, key) == 0)
            return c->args[i].value;
    return NULL;
}

const char *cmd_pos(const Command *c, int i)
{
    for (int k = 0; k < c->n_args; k++)
        if (!c->args[k].key && i-- == 0)
            return c->args[k].value;
    return NULL;
}

int cmd_n_pos(const Command *c)
{
    int n = 0;
    for (int k = 0; k < c->n_args; k++)
        n += !c->args[k].key;
    return n;
}

/* A value after key= may hold '=' unquoted; a positional word may not
 * (it would read back as key=value). */
static bool needs_quotes(const char *s, bool allow_eq)
{
    if (!*s)
        return true;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || *s == ';' || *s == '#' || *s == '"' || *s == '\'' ||
            (*s == '=' && !allow_eq))
            return true;
    return false;
}

static void append_word(Str *s, const char *w, bool allow_eq)
{
    if (!needs_quotes(w, allow_eq)) {
        for (; *w; w++)
            str_push(s, *w);
        return;
    }
    str_push(s, '"');
    for (; *w; w++) {
        if (*w == '"' || *w == '\\')
            str_push(s, '\\');
        str_push(s, *w);
    }
    str_push(s, '"');
}

char *command_to_text(const Command *c)
{
    Str s = {0};
    append_word(&s, c->name, false);
    for (int i = 0; i < c->n_args; i++) {
        str_push(&s, ' ');
        if (c->args[i].key) {
            append_word(&s, c->args[i].key, false);
            str_push(&s, '=');
            append_word(&s, c->args[i].value, true);
        } else
            append_word(&s, c->args[i].value, false);
    }
    return s.buf ? s.buf : xstrdup("");
}

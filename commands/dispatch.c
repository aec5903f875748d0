/* Validation and dispatch of commands, script running, completion. */
#include "commands.h"

#include "core/error.h"
#include "core/fileio.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void stdout_sink(void *ctx, const char *text)
{
    (void)ctx;
    fputs(text, stdout);
    fflush(stdout); /* progress must show up in logs as it happens */
}

Out out_stdout(bool json)
{
    Out o = {.json = json, .sink = stdout_sink};
    return o;
}

void out_text(Out *o, const char *fmt, ...)
{
    if (o->json || !o->sink)
        return;
    char small[1024], *buf = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small) {
        buf = xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(buf, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    o->sink(o->sink_ctx, buf);
    if (buf != small)
        free(buf);
}

void out_progress(Out *o, double fraction, const char *fmt, ...)
{
    if (!o->progress)
        return;
    char status[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(status, sizeof status, fmt, ap);
    va_end(ap);
    o->progress(o->job_ctx, fraction, status);
}

void out_partial(Out *o, const char *command, const cJSON *result)
{
    if (o->partial)
        o->partial(o->job_ctx, command, result);
}

bool out_cancelled(const Out *o) { return o->cancel && *o->cancel; }

/* ---- argument validation ---- */

/* Finds key in a spec like "split=train|test limit=N"; *choices receives
 * the text after '=' (up to the next blank) and its length. */
static bool spec_find(const char *spec, const char *key, const char **choices, size_t *len)
{
    size_t klen = strlen(key);
    for (const char *p = spec; *p;) {
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '='), *end = strchr(p, ' ');
        if (!end)
            end = p + strlen(p);
        if (eq && eq < end && (size_t)(eq - p) == klen && strncmp(p, key, klen) == 0) {
            *choices = eq + 1;
            *len = (size_t)(end - eq - 1);
            return true;
        }
        p = end;
    }
    return false;
}

static bool choice_ok(const char *choices, size_t len, const char *value)
{
    char buf[256];
    if (!memchr(choices, '|', len) || len >= sizeof buf)
        return true; /* a placeholder, not a list of choices */
    memcpy(buf, choices, len);
    buf[len] = '\0';
    for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|"))
        if (strcmp(tok, value) == 0 || (tok[0] >= 'A' && tok[0] <= 'Z'))
            return true;
    return false;
}

/* The closest key of spec to a mistyped one, for "did you mean". */
static void closest_key(const char *spec, const char *key, char *best, size_t n)
{
    int best_d = 3;
    best[0] = '\0';
    for (const char *p = spec; *p;) {
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ' ');
        if (!end)
            end = p + strlen(p);
        if (eq && eq < end) {
            char k[64];
            size_t kl = (size_t)(eq - p) < sizeof k - 1 ? (size_t)(eq - p) : sizeof k - 1;
            memcpy(k, p, kl);
            k[kl] = '\0';
            int d = edit_distance(k, key);
            if (d < best_d) {
                best_d = d;
                snprintf(best, n, "%s", k);
            }
        }
        p = end;
    }
}

/* A command of free text ("echo TEXT...") with no keys of its own reads
 * key=value words as text: `echo loss=0.5` prints loss=0.5. */
static bool takes_free_text(const CommandDef *d)
{
    return !d->keys[0] && strstr(d->positional, "...") != NULL;
}

static int validate_args(const CommandDef *d, const Command *c)
{
    bool free_text = takes_free_text(d);
    for (int i = 0; i < c->n_args; i++) {
        const Arg *a = &c->args[i];
        const char *choices;
        size_t len;
        if (!a->key || free_text)
            continue;
        if (!spec_find(d->keys, a->key, &choices, &len)) {
            char best[64];
            closest_key(d->keys, a->key, best, sizeof best);
            if (best[0])
                return sh_fail(SH_E_ARG, "unknown argument '%s' (did you mean '%s'?)", a->key, best);
            return sh_fail(SH_E_ARG, "unknown argument '%s'%s%s", a->key,
                           d->keys[0] ? "; arguments: " : "", d->keys);
        }
        if (!choice_ok(choices, len, a->value))
            return sh_fail(SH_E_ARG, "%s must be one of %.*s, got '%s'", a->key, (int)len, choices,
                           a->value);
    }
    int n_pos = free_text ? c->n_args : cmd_n_pos(c);
    if (n_pos < d->min_pos || n_pos > d->max_pos)
        return sh_fail(SH_E_ARG, "expected %s%s (usage: %s %s)",
                       d->min_pos == d->max_pos && d->min_pos == 0 ? "no positional arguments" : "",
                       d->min_pos == d->max_pos && d->min_pos == 0 ? "" : d->positional, d->name,
                       d->positional);
    return 0;
}

static const CommandDef *find_or_suggest(const char *name)
{
    const CommandDef *d = command_find(name);
    if (d)
        return d;
    const char *best = NULL;
    int best_d = 3;
    for (const CommandDef *t = command_table; t->name; t++) {
        int dist = edit_distance(t->name, name);
        if (dist < best_d) {
            best_d = dist;
            best = t->name;
        }
    }
    if (best)
        sh_fail(SH_E_ARG, "unknown command '%s' (did you mean '%s'?)", name, best);
    else
        sh_fail(SH_E_ARG, "unknown command '%s' (type 'help' for the list)", name);
    return NULL;
}

int command_run(Workspace *ws, const Command *c, Out *o)
{
    cJSON_AddStringToObject(o->obj, "command", c->name);
    sh_clear_error();
    const CommandDef *d = find_or_suggest(c->name);
    int rc = d ? validate_args(d, c) : SH_E_ARG;
    if (rc == 0)
        rc = d->run(ws, c, o);
    cJSON_AddBoolToObject(o->obj, "ok", rc == 0);
    if (rc < 0)
        cJSON_AddStringToObject(o->obj, "error", sh_errmsg());
    return rc;
}

/* ---- scripts ---- */

static void print_json(const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (s) {
        puts(s);
        free(s);
    }
    fflush(stdout);
}

int run_script_text(Workspace *ws, const char *text, const char *origin, Out *o)
{
    return run_script_text_hooked(ws, text, origin, o, NULL);
}

int run_script_text_hooked(Workspace *ws, const char *text, const char *origin, Out *o, const ScriptHooks *h)
{
    CommandList list;
    int rc = parse_commands(text, &list), failed = 0;
    if (rc < 0) {
        char msg[1100];
        snprintf(msg, sizeof msg, "%s: %s", origin, sh_errmsg());
        if (o->json) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddNullToObject(obj, "command"); /* every object has the same keys */
            cJSON_AddBoolToObject(obj, "ok", 0);
            cJSON_AddStringToObject(obj, "error", msg);
            print_json(obj);
            cJSON_Delete(obj);
        } else
            fprintf(stderr, "shears: %s\n", msg);
        return rc;
    }
    for (int i = 0; i < list.n; i++) {
        const Command *c = &list.cmds[i];
        cJSON *obj = cJSON_CreateObject();
        cJSON *saved = o->obj;
        o->obj = obj;
        if (h && h->before)
            h->before(h->ctx, ws, c);
        rc = command_run(ws, c, o);
        o->obj = saved;
        if (h && h->after)
            h->after(h->ctx, ws, c, rc);
        if (o->json)
            print_json(obj);
        else {
            fflush(stdout);
            if (rc < 0)
                fprintf(stderr, "shears: %s:%d: %s: %s\n", origin, c->line, c->name, sh_errmsg());
        }
        cJSON_Delete(obj);
        if (rc < 0) {
            failed = rc;
            if (!ws->keep_going)
                break;
        }
    }
    command_list_done(&list);
    return failed;
}

int run_script_file(Workspace *ws, const char *path, Out *o)
{
    unsigned char *text;
    size_t n;
    int rc = read_file(path, &text, &n, 16u << 20);
    if (rc < 0)
        return rc;
    if (memchr(text, '\0', n)) {
        free(text);
        return sh_fail(SH_E_FORMAT, "%s is not a text script (it contains NUL bytes)", path);
    }
    rc = run_script_text(ws, (const char *)text, path, o);
    free(text);
    return rc;
}

/* ---- completion ---- */

void command_complete(const char *name, int arg_index, const char *prefix,
                      void (*emit)(const char *word, void *ctx), void *ctx)
{
    size_t plen = strlen(prefix);
    if (arg_index < 0) {
        for (const CommandDef *d = command_table; d->name; d++)
            if (strncmp(d->name, prefix, plen) == 0)
                emit(d->name, ctx);
        return;
    }
    const CommandDef *d = command_find(name);
    if (!d)
        return;
    for (const char *p = d->keys; *p;) {
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '='), *end = strchr(p, ' ');
        if (!end)
            end = p + strlen(p);
        if (eq && eq < end) {
            char word[64];
            size_t kl = (size_t)(eq - p) + 1;
            if (kl < sizeof word) {
                memcpy(word, p, kl);
                word[kl] = '\0';
                if (strncmp(word, prefix, plen) == 0)
                    emit(word, ctx);
            }
        }
        p = end;
    }
}

/* ---- argument helpers ---- */

int arg_int(const Command *c, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
    const char *s = cmd_get(c, key);
    *out = dflt;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return sh_fail(SH_E_ARG, "%s must be an integer from %lld to %lld, got '%s'", key,
                       (long long)lo, (long long)hi, s);
    *out = v;
    return 0;
}

int arg_double(const Command *c, const char *key, double dflt, double lo, double hi, double *out)
{
    const char *s = cmd_get(c, key);
    *out = dflt;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return sh_fail(SH_E_ARG, "%s must be a number from %g to %g, got '%s'", key, lo, hi, s);
    *out = v;
    return 0;
}

int arg_bool(const Command *c, const char *key, bool dflt, bool *out)
{
    const char *s = cmd_get(c, key);
    *out = dflt;
    if (!s)
        return 0;
    if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "off") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0"))
        *out = false;
    else
        return sh_fail(SH_E_ARG, "%s must be on or off, got '%s'", key, s);
    return 0;
}

int split_list(const char *s, char **out, int cap)
{
    int n = 0;
    const char *p = s;
    while (*p && n < cap) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        out[n] = xmalloc(len + 1);
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

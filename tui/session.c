#include "session.h"

#include "commands/session_ui.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/onnx.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL "journal.shears"
#define JOURNAL_PREV "journal.prev.shears"
#define CLOSED_MARK "# session ended cleanly\n"

void session_init(Session *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void session_done(Session *s)
{
    free_list(s->cmds, s->n);
    free_list(s->journal, s->n_journal);
    free(s->record_path);
    free(s->dir);
    free(s->journal_path);
    free(s->snapshot);
    pthread_mutex_destroy(&s->mu);
    memset(s, 0, sizeof *s);
}

bool session_skips(const char *name)
{
    return command_is_front_end(name) || strcmp(name, "help") == 0;
}

static void push(char ***list, int *n, int *cap, char *text)
{
    grow_array((void **)list, cap, *n + 1, sizeof **list);
    (*list)[(*n)++] = text;
}

/* ---- paths ---- */

int make_dirs(const char *path)
{
    char *p = xstrdup(path);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            int rc = sh_fail(SH_E_IO, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return rc;
        }
        *q = '/';
    }
    int rc = 0;
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        rc = sh_fail(SH_E_IO, "cannot create folder %s: %s", p, strerror(errno));
    free(p);
    return rc;
}

static char *xdg_path(const char *var, const char *fallback, const char *name)
{
    const char *base = getenv(var), *home = getenv("HOME");
    char *dir = base && base[0] == '/' ? xasprintf("%s/shears", base)
                                       : xasprintf("%s/%s/shears", home && home[0] ? home : "/tmp", fallback);
    make_dirs(dir);
    char *path = xasprintf("%s/%s", dir, name);
    free(dir);
    return path;
}

char *state_path(const char *name) { return xdg_path("XDG_STATE_HOME", ".local/state", name); }
char *config_path(const char *name) { return xdg_path("XDG_CONFIG_HOME", ".config", name); }

/* ---- history and recording ---- */

static int append_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    if (!f)
        return sh_fail(SH_E_IO, "cannot append to %s: %s", path, strerror(errno));
    fprintf(f, "%s\n", line);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return sh_fail(SH_E_IO, "cannot write %s", path);
    return 0;
}

int session_record(Session *s, const char *path, bool overwrite)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (!path) {
        free(s->record_path);
        s->record_path = NULL;
        goto done;
    }
    AtomicFile af;
    if ((rc = atomic_open(&af, path, overwrite)) < 0)
        goto done;
    fprintf(af.f, "# recorded by shears: replay with `shears %s`\n", path);
    for (int i = 0; i < s->n; i++)
        fprintf(af.f, "%s\n", s->cmds[i]);
    if ((rc = atomic_commit(&af)) < 0)
        goto done;
    free(s->record_path);
    s->record_path = xstrdup(path);
done:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- journal ---- */

static bool is_env_command(const char *text)
{
    static const char *const env[] = {"set ", "data ", "plugin ", NULL};
    for (int i = 0; env[i]; i++)
        if (strncmp(text, env[i], strlen(env[i])) == 0)
            return true;
    return false;
}

static bool starts_model(const char *name)
{
    return strcmp(name, "load") == 0 || strcmp(name, "build") == 0;
}

static int write_journal(Session *s)
{
    AtomicFile af;
    int rc = atomic_open(&af, s->journal_path, true);
    if (rc < 0)
        return rc;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    fprintf(af.f, "# shears session journal: replay with `shears --recover`\n# cwd: %s\n", cwd);
    for (int i = 0; i < s->n_journal; i++)
        fprintf(af.f, "%s\n", s->journal[i]);
    return atomic_commit(&af);
}

/* The journal becomes `first` followed by the settings and data commands
 * of the history (those still matter for the model that first loads). */
static void compact_journal(Session *s, char *first)
{
    char **old = s->journal;
    int n_old = s->n_journal;
    s->journal = NULL;
    s->n_journal = s->cap_journal = 0;
    push(&s->journal, &s->n_journal, &s->cap_journal, first);
    for (int i = 0; i < n_old; i++)
        if (is_env_command(old[i]))
            push(&s->journal, &s->n_journal, &s->cap_journal, xstrdup(old[i]));
    free_list(old, n_old);
}

static char *quoted(const char *path)
{
    return xasprintf("\"%s\"", path); /* snapshot paths hold no quotes */
}

/* Saves ws->model as the next snapshot and compacts the journal to load it. */
static void snapshot_model(Session *s, Workspace *ws)
{
    char *path = xasprintf("%s/model-%ld-%d.onnx", s->dir, (long)getpid(), ++s->seq);
    if (onnx_save(ws->model, path, true) < 0) {
        free(path);
        return; /* the journal keeps the commands: a recovery replays them */
    }
    char *q = quoted(path);
    compact_journal(s, xasprintf("load %s", q));
    free(q);
    if (write_journal(s) == 0) {
        if (s->snapshot)
            unlink(s->snapshot);
        free(s->snapshot);
        s->snapshot = path;
    } else
        free(path);
}

static void journal_command(Session *s, Workspace *ws, const Command *c, const char *text)
{
    if (!s->dir)
        return;
    bool replaced = ws->model != s->last_model;
    if (starts_model(c->name)) {
        compact_journal(s, xstrdup(text));
        write_journal(s);
        return;
    }
    push(&s->journal, &s->n_journal, &s->cap_journal, xstrdup(text));
    if (ws->model && (replaced || !strcmp(c->name, "train") || !strcmp(c->name, "finetune")))
        snapshot_model(s, ws);
    else
        append_line(s->journal_path, text);
}

void session_command_begin(Session *s, const Workspace *ws) { s->last_model = ws->model; }

void session_command_ok(Session *s, Workspace *ws, const Command *c)
{
    if (session_skips(c->name))
        return;
    char *text = command_to_text(c);
    pthread_mutex_lock(&s->mu);
    push(&s->cmds, &s->n, &s->cap, xstrdup(text));
    if (s->record_path && append_line(s->record_path, text) < 0) {
        free(s->record_path); /* stop rather than fail every command */
        s->record_path = NULL;
    }
    journal_command(s, ws, c, text);
    pthread_mutex_unlock(&s->mu);
    free(text);
}

static bool journal_clean(const char *path)
{
    unsigned char *text;
    size_t n;
    if (read_file(path, &text, &n, 64u << 20) < 0)
        return true;
    size_t m = strlen(CLOSED_MARK);
    bool clean = n >= m && memcmp(text + n - m, CLOSED_MARK, m) == 0;
    free(text);
    return clean;
}

/* Paths of snapshots the journal at path loads (at most one). */
static bool journal_mentions(const char *journal, const char *name)
{
    unsigned char *text;
    size_t n;
    if (read_file(journal, &text, &n, 64u << 20) < 0)
        return false;
    bool found = strstr((char *)text, name) != NULL;
    free(text);
    return found;
}

/* Removes snapshots no kept journal refers to. */
static void sweep_snapshots(const char *dir, const char *keep_a, const char *keep_b)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "model-", 6) != 0)
            continue;
        if ((keep_a && journal_mentions(keep_a, e->d_name)) || (keep_b && journal_mentions(keep_b, e->d_name)))
            continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

int session_journal_start(Session *s, const char *dir)
{
    int rc = make_dirs(dir);
    if (rc < 0)
        return rc;
    free(s->dir);
    free(s->journal_path);
    s->dir = xstrdup(dir);
    s->journal_path = xasprintf("%s/" JOURNAL, dir);
    char *prev = xasprintf("%s/" JOURNAL_PREV, dir);
    if (file_exists(s->journal_path) && !journal_clean(s->journal_path))
        rename(s->journal_path, prev); /* an unclean one stays recoverable */
    sweep_snapshots(dir, file_exists(prev) ? prev : NULL, NULL);
    free(prev);
    for (int i = 0; i < s->n; i++) /* commands that ran before the journal started */
        push(&s->journal, &s->n_journal, &s->cap_journal, xstrdup(s->cmds[i]));
    return write_journal(s);
}

void session_journal_close(Session *s)
{
    if (s->dir)
        append_line(s->journal_path, CLOSED_MARK "");
}

int session_journal_read(const char *dir, char **text, char **cwd)
{
    char *cur = xasprintf("%s/" JOURNAL, dir), *prev = xasprintf("%s/" JOURNAL_PREV, dir);
    const char *path = file_exists(cur) && !journal_clean(cur) ? cur
                       : file_exists(prev)                     ? prev
                       : file_exists(cur)                      ? cur
                                                               : NULL;
    int rc;
    unsigned char *data = NULL;
    size_t n;
    *text = *cwd = NULL;
    if (!path)
        rc = sh_fail(SH_E_IO, "no session to recover (no journal in %s)", dir);
    else if ((rc = read_file(path, &data, &n, 64u << 20)) == 0) {
        const char *c = strstr((char *)data, "\n# cwd: ");
        if (c) {
            c += 8;
            *cwd = xmalloc(strcspn(c, "\n") + 1);
            memcpy(*cwd, c, strcspn(c, "\n"));
            (*cwd)[strcspn(c, "\n")] = '\0';
        }
        *text = (char *)data;
    }
    free(cur);
    free(prev);
    return rc;
}

/* ---- headless scripts ---- */

static void before_command(void *ctx, Workspace *ws, const Command *c)
{
    (void)c;
    session_command_begin(ctx, ws);
}

static void after_command(void *ctx, Workspace *ws, const Command *c, int rc)
{
    if (rc == 0)
        session_command_ok(ctx, ws, c);
}

int session_run_text(Session *s, Workspace *ws, const char *text, const char *origin, Out *o)
{
    const ScriptHooks h = {before_command, after_command, s};
    return run_script_text_hooked(ws, text, origin, o, &h);
}

/* shears entry point. On a terminal, `shears [MODEL.onnx] [--data NAME]`
 * opens the workbench (tui/app.c); otherwise, and with -c, a script or
 * --json, commands run headless: `-c` commands, script files, or a model
 * given on the command line with its `info` table. */
#include "app.h"
#include "bench_ui.h"
#include "session.h"

#include "commands/session_ui.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/threads.h"
#include "core/util.h"

#include <cblas.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shears [options] [MODEL.onnx] [SCRIPT.shears]\n"
            "  -c COMMANDS     run commands (separated by ';') and exit\n"
            "  --json          print one JSON object per command\n"
            "  --threads N     BLAS threads (default: OPENBLAS_NUM_THREADS or all cores)\n"
            "  --data NAME     load a dataset after the model (e.g. fashion-mnist)\n"
            "  --recover       restore the last workbench session (model, plan, history)\n"
            "  --keys FILE     workbench test: keys from FILE on an invisible screen\n"
            "  --size COLSxROWS  the invisible screen's size (default 80x24)\n"
            "  --ascii         plain ASCII drawing (also when the locale is not UTF-8)\n"
            "  --bench-ui      measure keystroke-to-redraw time and stalls during a job\n"
            "  -h, --help      this help; 'shears -c help' lists the commands\n"
            "On a terminal, without -c, a script or --json, shears opens the workbench.\n");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

typedef struct {
    const char *commands, *model, *script, *data, *keys;
    bool json, recover, ascii, bench;
    int threads, cols, rows;
} Options;

static bool needs_value(const char *a)
{
    static const char *const with_value[] = {"-c", "--threads", "--data", "--keys", "--size", NULL};
    for (int i = 0; with_value[i]; i++)
        if (!strcmp(a, with_value[i]))
            return true;
    return false;
}

static int parse_options(int argc, char **argv, Options *opt)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--json"))
            opt->json = true;
        else if (!strcmp(a, "--recover"))
            opt->recover = true;
        else if (!strcmp(a, "--ascii"))
            opt->ascii = true;
        else if (!strcmp(a, "--bench-ui"))
            opt->bench = true;
        else if (needs_value(a) && i + 1 >= argc)
            return sh_fail(SH_E_ARG, "%s needs a value (see shears --help)", a);
        else if (!strcmp(a, "-c"))
            opt->commands = argv[++i];
        else if (!strcmp(a, "--data"))
            opt->data = argv[++i];
        else if (!strcmp(a, "--keys"))
            opt->keys = argv[++i];
        else if (!strcmp(a, "--size")) {
            if (sscanf(argv[++i], "%dx%d", &opt->cols, &opt->rows) != 2 || opt->cols < 10 || opt->rows < 5 ||
                opt->cols > 1000 || opt->rows > 1000)
                return sh_fail(SH_E_ARG, "--size needs COLSxROWS (e.g. 80x24), got '%s'", argv[i]);
        } else if (!strcmp(a, "--threads")) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 256)
                return sh_fail(SH_E_ARG, "--threads needs a number from 1 to 256, got '%s'", argv[i]);
            opt->threads = (int)n;
        } else if (a[0] == '-')
            return sh_fail(SH_E_ARG, "unknown option '%s' (see shears --help)", a);
        else if (ends_with(a, ".onnx") && !opt->model)
            opt->model = a;
        else if (!opt->script)
            opt->script = a;
        else
            return sh_fail(SH_E_ARG, "unexpected argument '%s' (see shears --help)", a);
    }
    return 0;
}

/* Runs a script file. session_run_text reports failing commands itself;
 * a script that cannot be read is reported here. */
static int run_script(Session *s, Workspace *ws, const char *path, Out *out)
{
    unsigned char *text;
    size_t n;
    int rc = read_file(path, &text, &n, 16u << 20);
    if (rc == 0 && memchr(text, '\0', n))
        rc = sh_fail(SH_E_FORMAT, "%s is not a text script (it contains NUL bytes)", path);
    if (rc < 0) {
        free(text);
        if (out->json) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddBoolToObject(obj, "ok", 0);
            cJSON_AddStringToObject(obj, "error", sh_errmsg());
            char *line = cJSON_PrintUnformatted(obj);
            if (line)
                puts(line);
            free(line);
            cJSON_Delete(obj);
        } else
            fprintf(stderr, "shears: %s\n", sh_errmsg());
        return rc;
    }
    rc = session_run_text(s, ws, (const char *)text, path, out);
    free(text);
    return rc;
}

static int headless_record(void *ctx, const char *path, bool overwrite, Out *o)
{
    Session *s = ctx;
    int rc = session_record(s, path, overwrite);
    if (rc == 0 && path)
        out_text(o, "recording to %s (%d commands so far)\n", path, s->n);
    return rc;
}

/* Replays the last workbench session's journal (headless). */
static int recover_headless(Session *s, Workspace *ws, Out *out)
{
    char *dir = state_path("session"), *text, *cwd;
    int rc = session_journal_read(dir, &text, &cwd);
    free(dir);
    if (rc < 0) {
        fprintf(stderr, "shears: %s\n", sh_errmsg());
        return rc;
    }
    if (cwd && chdir(cwd) != 0)
        fprintf(stderr, "shears: cannot go back to %s; paths are read from here\n", cwd);
    bool keep = ws->keep_going;
    ws->keep_going = true;
    rc = session_run_text(s, ws, text, "journal", out);
    ws->keep_going = keep;
    free(text);
    free(cwd);
    return rc;
}

static int run_headless(const Options *opt)
{
    Workspace *ws = workspace_new();
    Session session;
    session_init(&session);
    static const UiHooks hooks = {.record = headless_record};
    ws->ui = &hooks;
    ws->ui_ctx = &session;
    ws->threads = opt->threads ? opt->threads : openblas_get_num_threads();
    Out out = out_stdout(opt->json);
    int rc = 0;
    if (opt->recover)
        rc = recover_headless(&session, ws, &out);
    if (rc == 0 && opt->model) {
        char *cmd = xasprintf("load \"%s\"%s%s%s", opt->model, opt->data ? "; data " : "", opt->data ? opt->data : "",
                              opt->commands || opt->script ? "" : "; info");
        rc = session_run_text(&session, ws, cmd, "command line", &out);
        free(cmd);
    }
    if (rc == 0 && opt->script)
        rc = run_script(&session, ws, opt->script, &out);
    if (rc == 0 && opt->commands)
        rc = session_run_text(&session, ws, opt->commands, "-c", &out);
    if (!opt->model && !opt->script && !opt->commands && !opt->recover)
        usage(stderr);
    ws->ui = NULL;
    workspace_free(ws);
    session_done(&session);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    Options opt = {0};
    if (parse_options(argc, argv, &opt) < 0) {
        fprintf(stderr, "shears: %s\n", sh_errmsg());
        return 2;
    }
    if (opt.threads)
        sh_set_threads(opt.threads);
    bool batch = opt.commands || opt.script || opt.json;
    bool terminal = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (opt.bench || (!batch && (opt.keys || terminal))) {
        setlocale(LC_ALL, "");
        AppOptions ao = {.model = opt.model, .data = opt.data, .keys_path = opt.keys, .rows = opt.rows,
                         .cols = opt.cols, .recover = opt.recover, .ascii = opt.ascii,
                         .threads = opt.threads ? opt.threads : openblas_get_num_threads()};
        return opt.bench ? bench_ui_run(&ao) : app_run(&ao);
    }
    return run_headless(&opt);
}

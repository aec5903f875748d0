/* shears entry point. Headless for now: runs `-c` commands, script files,
 * or loads a model given on the command line and shows `info`. */
#include "commands/commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/threads.h"
#include "core/util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shears [options] [MODEL.onnx] [SCRIPT.shears]\n"
            "  -c COMMANDS     run commands (separated by ';') and exit\n"
            "  --json          print one JSON object per command\n"
            "  --threads N     BLAS threads (default: OPENBLAS_NUM_THREADS or all cores)\n"
            "  -h, --help      this help; 'shears -c help' lists the commands\n");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

typedef struct {
    const char *commands, *model, *script;
    bool json;
    int threads;
} Options;

static int parse_options(int argc, char **argv, Options *opt)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--json"))
            opt->json = true;
        else if ((!strcmp(a, "-c") || !strcmp(a, "--threads")) && i + 1 >= argc)
            return sh_fail(SH_E_ARG, "%s needs a value (see shears --help)", a);
        else if (!strcmp(a, "-c"))
            opt->commands = argv[++i];
        else if (!strcmp(a, "--threads")) {
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

/* Runs a script file. run_script_text reports failing commands itself;
 * a script that cannot be read is reported here (guessing from the
 * message which case it was printed nothing for a missing script, and
 * a failing command twice). */
static int run_script(Workspace *ws, const char *path, Out *out)
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
    rc = run_script_text(ws, (const char *)text, path, out);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    Options opt = {0};
    if (parse_options(argc, argv, &opt) < 0) {
        fprintf(stderr, "shears: %s\n", sh_errmsg());
        return 2;
    }
    Workspace *ws = workspace_new();
    if (opt.threads)
        sh_set_threads(opt.threads);
    ws->threads = opt.threads ? opt.threads : openblas_get_num_threads();
    Out out = out_stdout(opt.json);
    int rc = 0;
    if (opt.model) {
        char *cmd = xasprintf("load \"%s\"%s", opt.model,
                              opt.commands || opt.script ? "" : "; info");
        rc = run_script_text(ws, cmd, "command line", &out);
        free(cmd);
    }
    if (rc == 0 && opt.script)
        rc = run_script(ws, opt.script, &out);
    if (rc == 0 && opt.commands)
        rc = run_script_text(ws, opt.commands, "-c", &out);
    if (!opt.model && !opt.script && !opt.commands)
        usage(stderr);
    workspace_free(ws);
    return rc < 0 ? 1 : 0;
}

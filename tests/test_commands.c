/* The command language end to end on a Workspace: validation and
 * suggestions, help and completion generated from the table, settings,
 * scripts and their JSON objects, and the model and data commands on
 * models built in code and on the ONNX conformance data. */
#include "commands/commands.h"
#include "core/error.h"
#include "core/exec.h"
#include "core/fileio.h"
#include "core/npy.h"
#include "core/onnx.h"
#include "core/threads.h"
#include "core/util.h"
#include "tests/support/graphutil.h"
#include "tests/support/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define CONV2D_MODEL "/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d/model.onnx"

/* The first 20 labels of the Fashion-MNIST test split (t10k-labels). */
static const int fashion_test_labels[20] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1, 2, 4, 8, 0};

/* ---- text capture and command helpers -------------------------------------- */

typedef struct {
    char *buf;
    size_t n;
} Capture;

static void capture_sink(void *ctx, const char *text)
{
    Capture *c = ctx;
    size_t k = strlen(text);
    c->buf = xrealloc(c->buf, c->n + k + 1);
    memcpy(c->buf + c->n, text, k + 1);
    c->n += k;
}

static const char *captured(const Capture *c) { return c->buf ? c->buf : ""; }

static void capture_reset(Capture *c)
{
    free(c->buf);
    c->buf = NULL;
    c->n = 0;
}

/* Runs one command line; its text goes to cap (may be NULL) and its JSON
 * object to *obj (deleted if obj is NULL). */
static int run_cmd(Workspace *ws, const char *line, Capture *cap, cJSON **obj)
{
    CommandList l;
    if (parse_commands(line, &l) != 0 || l.n != 1)
        fail_msg("<<%s>> is not one command", line);
    Capture scratch = {0};
    Out o = {.json = false, .sink = capture_sink, .sink_ctx = cap ? cap : &scratch};
    o.obj = cJSON_CreateObject();
    int rc = command_run(ws, &l.cmds[0], &o);
    if (obj)
        *obj = o.obj;
    else
        cJSON_Delete(o.obj);
    capture_reset(&scratch);
    command_list_done(&l);
    return rc;
}

static void cmd_ok(Workspace *ws, const char *line, Capture *cap, cJSON **obj)
{
    if (run_cmd(ws, line, cap, obj) != 0)
        fail_msg("<<%s>> failed: %s", line, sh_errmsg());
}

static void cmd_fails(Workspace *ws, const char *line, int code, const char *phrase)
{
    int rc = run_cmd(ws, line, NULL, NULL);
    if (rc != code)
        fail_msg("<<%s>> returned %d (%s), want %d", line, rc, sh_errmsg(), code);
    if (phrase && !strstr(sh_errmsg(), phrase))
        fail_msg("<<%s>>: message \"%s\" lacks \"%s\"", line, sh_errmsg(), phrase);
}

static double json_number(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON has no number \"%s\"", key);
    return v->valuedouble;
}

static const char *json_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        fail_msg("JSON has no string \"%s\"", key);
    return v->valuestring;
}

static int table_size(void)
{
    int n = 0;
    while (command_table[n].name)
        n++;
    return n;
}

/* Redirects a file descriptor (stdout, stderr) into a temporary file. */
typedef struct {
    int fd, saved;
    char *path;
} Redirect;

static void redirect_begin(Redirect *r, int fd, const char *dir, const char *name)
{
    fflush(stdout);
    fflush(stderr);
    r->fd = fd;
    r->path = tg_path(dir, name);
    int f = open(r->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(f >= 0);
    r->saved = dup(fd);
    dup2(f, fd);
    close(f);
}

/* Restores the descriptor and returns what was written (caller frees). */
static char *redirect_end(Redirect *r)
{
    fflush(stdout);
    fflush(stderr);
    dup2(r->saved, r->fd);
    close(r->saved);
    unsigned char *data;
    size_t n;
    assert_int_equal(read_file(r->path, &data, &n, 1u << 20), 0);
    unlink(r->path);
    free(r->path);
    return (char *)data;
}

/* ---- models built in code ------------------------------------------------------ */

/* image [N,1,28,28] -> Flatten -> Gemm(W [10,784], B [10], transB) -> logits. */
static Graph *linear_model_batch(const float *w, const float *b, int64_t batch)
{
    Graph *g = graph_new();
    g->opset = 13;
    Shape xs = shape_of(4, batch, (int64_t)1, (int64_t)28, (int64_t)28);
    int x = graph_add_input(g, "image", SH_F32, &xs);
    g->values[x].dim_names[0] = xstrdup("batch");
    int flat = tg_op1(g, "Flatten", "flat", 1, &x);
    Shape ws = shape_of(2, (int64_t)10, (int64_t)784), bs = shape_of(1, (int64_t)10);
    int gin[3] = {flat, tg_const_f32(g, "fc.weight", &ws, w), tg_const_f32(g, "fc.bias", &bs, b)};
    int y = tg_op1(g, "Gemm", "logits", 3, gin);
    node_set_int(&g->nodes[g->n_nodes - 1], "transB", 1);
    graph_add_output(g, y);
    return g;
}

static Graph *linear_model(const float *w, const float *b) { return linear_model_batch(w, b, -1); }

/* Class k scores the sum of the normalized pixels in rows
 * [28k/10, 28(k+1)/10): the brightest band of rows wins. */
static char *write_band_model_batch(const char *dir, const char *name, int64_t batch)
{
    float *w = xcalloc(10 * 784, sizeof *w), b[10] = {0};
    for (int k = 0; k < 10; k++)
        for (int r = k * 28 / 10; r < (k + 1) * 28 / 10; r++)
            for (int c = 0; c < 28; c++)
                w[k * 784 + r * 28 + c] = 1;
    Graph *g = linear_model_batch(w, b, batch);
    char *path = tg_path(dir, name);
    if (onnx_save(g, path, false) != 0)
        fail_msg("save: %s", sh_errmsg());
    graph_free(g);
    free(w);
    return path;
}

static char *write_band_model(const char *dir) { return write_band_model_batch(dir, "band.onnx", -1); }

/* Zero weights and bias 2 on class 1: always predicts class 1. */
static char *write_bias_model(const char *dir)
{
    float *w = xcalloc(10 * 784, sizeof *w), b[10] = {0};
    b[1] = 2;
    Graph *g = linear_model(w, b);
    char *path = tg_path(dir, "bias.onnx");
    if (onnx_save(g, path, false) != 0)
        fail_msg("save: %s", sh_errmsg());
    graph_free(g);
    free(w);
    return path;
}

typedef struct {
    Workspace *ws;
    char *dir;
} Fixture;

static int setup(void **state)
{
    Fixture *f = xcalloc(1, sizeof *f);
    f->ws = workspace_new();
    f->dir = tg_mkdtemp();
    if (!f->dir)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    workspace_free(f->ws);
    tg_rmdir(f->dir);
    free(f->dir);
    free(f);
    sh_set_threads(1);
    return 0;
}

/* ---- validation and suggestions -------------------------------------------------- */

static void test_unknown_command_suggests_the_closest(void **state)
{
    Fixture *f = *state;
    cmd_fails(f->ws, "lod model.onnx", SH_E_ARG, "did you mean 'load'?");
    cmd_fails(f->ws, "hepl", SH_E_ARG, "did you mean 'help'?");
    cmd_fails(f->ws, "evl", SH_E_ARG, "did you mean 'eval'?");
    cmd_fails(f->ws, "exprot x.onnx", SH_E_ARG, "did you mean 'export'?");
    cmd_fails(f->ws, "frobnicate", SH_E_ARG, "unknown command 'frobnicate'");
    assert_null(strstr(sh_errmsg(), "did you mean"));
}

static void test_unknown_key_suggests_the_closest(void **state)
{
    Fixture *f = *state;
    cmd_fails(f->ws, "data fashion-mnist splt=test", SH_E_ARG, "did you mean 'split'?");
    cmd_fails(f->ws, "eval batchsize=8", SH_E_ARG, "unknown argument 'batchsize'");
    cmd_fails(f->ws, "eval bach=8", SH_E_ARG, "did you mean 'batch'?");
    cmd_fails(f->ws, "export m.onnx forse=on", SH_E_ARG, "did you mean 'force'?");
    /* nothing close: the valid arguments are listed */
    cmd_fails(f->ws, "eval qqqqqqqq=1", SH_E_ARG, "batch=N limit=N");
    cmd_fails(f->ws, "info verbose=on", SH_E_ARG, "unknown argument 'verbose'");
}

static void test_choices_are_validated(void **state)
{
    Fixture *f = *state;
    cmd_fails(f->ws, "data fashion-mnist split=tset", SH_E_ARG, "split must be one of train|test");
    assert_non_null(strstr(sh_errmsg(), "got 'tset'"));
    cmd_fails(f->ws, "export m.onnx force=maybe", SH_E_ARG, "force must be one of on|off");
    assert_false(f->ws->has_train || f->ws->has_test);
}

static void test_wrong_positional_count_shows_usage(void **state)
{
    Fixture *f = *state;
    cmd_fails(f->ws, "load", SH_E_ARG, "usage: load FILE.onnx");
    cmd_fails(f->ws, "load a.onnx b.onnx", SH_E_ARG, "usage: load FILE.onnx");
    cmd_fails(f->ws, "info extra", SH_E_ARG, "expected no positional arguments");
    cmd_fails(f->ws, "set batch", SH_E_ARG, "usage: set NAME VALUE");
    cmd_fails(f->ws, "help load info", SH_E_ARG, "usage: help [COMMAND]");
    cmd_fails(f->ws, "data", SH_E_ARG, "usage: data");
}

/* Every key that completion offers passes validation: a command given
 * only that key fails later, on its positional words, not on the key. */
static void test_every_completed_key_is_accepted(void **state)
{
    Fixture *f = *state;
    for (const CommandDef *d = command_table; d->name; d++) {
        const char *p = d->keys;
        while (*p) {
            while (*p == ' ')
                p++;
            const char *eq = strchr(p, '='), *end = strchr(p, ' ');
            if (!end)
                end = p + strlen(p);
            if (!eq || eq > end) {
                p = end;
                continue;
            }
            const char *bar = memchr(eq + 1, '|', (size_t)(end - eq - 1));
            char value[64];
            snprintf(value, sizeof value, "%.*s", (int)((bar ? bar : end) - eq - 1), eq + 1);
            if (!bar)
                snprintf(value, sizeof value, "1");
            char line[512];
            int n = snprintf(line, sizeof line, "%s %.*s=%s", d->name, (int)(eq - p), p, value);
            for (int k = 0; k <= d->max_pos && n < (int)sizeof line - 4; k++)
                n += snprintf(line + n, sizeof line - (size_t)n, " w");
            cmd_fails(f->ws, line, SH_E_ARG, "usage:");
            p = end;
        }
    }
}

/* ---- help and completion ------------------------------------------------------------ */

static void test_help_lists_every_command_of_the_table(void **state)
{
    Fixture *f = *state;
    Capture cap = {0};
    cJSON *obj;
    cmd_ok(f->ws, "help", &cap, &obj);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "commands");
    assert_int_equal(cJSON_GetArraySize(list), table_size());
    int i = 0;
    for (const CommandDef *d = command_table; d->name; d++, i++) {
        char line[256];
        snprintf(line, sizeof line, "  %-8s %s\n", d->name, d->summary);
        if (!strstr(captured(&cap), line))
            fail_msg("help lacks the line <<%s>>:\n%s", line, captured(&cap));
        assert_string_equal(json_string(cJSON_GetArrayItem(list, i), "name"), d->name);
    }
    cJSON_Delete(obj);
    capture_reset(&cap);
}

static void test_help_works_for_every_command(void **state)
{
    Fixture *f = *state;
    for (const CommandDef *d = command_table; d->name; d++) {
        Capture cap = {0};
        cJSON *obj;
        char line[64];
        snprintf(line, sizeof line, "help %s", d->name);
        cmd_ok(f->ws, line, &cap, &obj);
        const char *text = captured(&cap);
        assert_true(strncmp(text, d->name, strlen(d->name)) == 0);
        assert_non_null(strstr(text, d->summary));
        assert_non_null(strstr(text, d->help));
        assert_non_null(strstr(text, d->positional));
        assert_non_null(strstr(text, d->keys));
        assert_string_equal(json_string(obj, "name"), d->name);
        assert_string_equal(json_string(obj, "usage"), d->positional);
        assert_string_equal(json_string(obj, "arguments"), d->keys);
        cJSON_Delete(obj);
        capture_reset(&cap);
    }
    cmd_fails(f->ws, "help lod", SH_E_ARG, "'lod'");
}

typedef struct {
    char words[64][64];
    int n;
} Words;

static void collect_word(const char *word, void *ctx)
{
    Words *w = ctx;
    if (w->n < 64)
        snprintf(w->words[w->n++], sizeof w->words[0], "%s", word);
}

static bool has_word(const Words *w, const char *word)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->words[i], word) == 0)
            return true;
    return false;
}

static void test_completion_gives_command_names_and_keys(void **state)
{
    (void)state;
    Words w = {0};
    command_complete(NULL, -1, "", collect_word, &w);
    assert_int_equal(w.n, table_size());
    for (const CommandDef *d = command_table; d->name; d++)
        assert_true(has_word(&w, d->name));

    memset(&w, 0, sizeof w);
    command_complete(NULL, -1, "e", collect_word, &w);
    assert_int_equal(w.n, 3);
    assert_true(has_word(&w, "echo") && has_word(&w, "export") && has_word(&w, "eval"));

    memset(&w, 0, sizeof w);
    command_complete(NULL, -1, "zz", collect_word, &w);
    assert_int_equal(w.n, 0);

    /* every command's keys, as its table entry lists them */
    for (const CommandDef *d = command_table; d->name; d++) {
        memset(&w, 0, sizeof w);
        command_complete(d->name, 0, "", collect_word, &w);
        int want = 0;
        for (const char *p = d->keys; *p;) {
            while (*p == ' ')
                p++;
            const char *eq = strchr(p, '='), *end = strchr(p, ' ');
            if (!end)
                end = p + strlen(p);
            if (eq && eq < end) {
                char key[64];
                snprintf(key, sizeof key, "%.*s", (int)(eq - p + 1), p);
                if (!has_word(&w, key))
                    fail_msg("completion of %s lacks %s", d->name, key);
                want++;
            }
            p = end;
        }
        assert_int_equal(w.n, want);
    }

    memset(&w, 0, sizeof w);
    command_complete("data", 1, "", collect_word, &w);
    assert_true(has_word(&w, "split=") && has_word(&w, "limit=") && has_word(&w, "normalize="));
    assert_false(has_word(&w, "fashion-mnist"));

    memset(&w, 0, sizeof w);
    command_complete("data", 1, "l", collect_word, &w);
    assert_int_equal(w.n, 2);
    assert_true(has_word(&w, "limit=") && has_word(&w, "labels="));

    memset(&w, 0, sizeof w);
    command_complete("eval", 0, "", collect_word, &w);
    assert_true(has_word(&w, "batch=") && has_word(&w, "limit="));

    memset(&w, 0, sizeof w);
    command_complete("info", 0, "", collect_word, &w);
    assert_int_equal(w.n, 0);
    command_complete("nosuchcommand", 0, "", collect_word, &w);
    assert_int_equal(w.n, 0);
}

/* ---- settings ------------------------------------------------------------------------ */

static void test_set_changes_settings_and_refuses_bad_values(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    assert_false(ws->keep_going);
    cmd_ok(ws, "set keep-going on", NULL, NULL);
    assert_true(ws->keep_going);
    cmd_ok(ws, "set keep-going off", NULL, NULL);
    assert_false(ws->keep_going);
    cmd_ok(ws, "set batch 16", NULL, NULL);
    assert_int_equal(ws->batch, 16);
    cmd_ok(ws, "set threads 2", NULL, NULL);
    assert_int_equal(ws->threads, 2);
    assert_int_equal(sh_get_threads(), 2);
    cmd_ok(ws, "set threads 1", NULL, NULL);
    assert_int_equal(sh_get_threads(), 1);

    cmd_fails(ws, "set batch 0", SH_E_ARG, "batch");
    cmd_fails(ws, "set batch many", SH_E_ARG, "'many'");
    cmd_fails(ws, "set threads 0", SH_E_ARG, "threads");
    cmd_fails(ws, "set keep-going perhaps", SH_E_ARG, "'perhaps'");
    cmd_fails(ws, "set colour red", SH_E_ARG, "unknown setting 'colour'");
    assert_int_equal(ws->batch, 16);
    assert_int_equal(ws->threads, 1);
    assert_false(ws->keep_going);
}

/* ---- scripts ----------------------------------------------------------------------------- */

static void test_script_stops_at_the_first_failure(void **state)
{
    Fixture *f = *state;
    Capture cap = {0};
    Out o = {.sink = capture_sink, .sink_ctx = &cap};
    Redirect err;
    redirect_begin(&err, STDERR_FILENO, f->dir, "stderr.txt");
    int rc = run_script_text(f->ws, "echo first\n\nbogus arg\necho second\n", "demo.shears", &o);
    char *errors = redirect_end(&err);
    assert_int_equal(rc, SH_E_ARG);
    assert_string_equal(captured(&cap), "first\n");
    if (!strstr(errors, "demo.shears:3: bogus: unknown command 'bogus'"))
        fail_msg("stderr: %s", errors);
    free(errors);
    capture_reset(&cap);

    /* keep-going runs the rest and still reports the failure */
    redirect_begin(&err, STDERR_FILENO, f->dir, "stderr.txt");
    rc = run_script_text(f->ws, "set keep-going on; echo first\nbogus\necho second", "kg", &o);
    errors = redirect_end(&err);
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(captured(&cap), "first\n"));
    assert_non_null(strstr(captured(&cap), "second\n"));
    assert_non_null(strstr(errors, "kg:2: bogus:"));
    free(errors);
    capture_reset(&cap);
    f->ws->keep_going = false;

    /* a script that does not parse runs nothing */
    redirect_begin(&err, STDERR_FILENO, f->dir, "stderr.txt");
    rc = run_script_text(f->ws, "echo before\necho \"open", "broken", &o);
    errors = redirect_end(&err);
    assert_int_equal(rc, SH_E_ARG);
    assert_string_equal(captured(&cap), "");
    assert_non_null(strstr(errors, "broken: line 2: unterminated quote"));
    free(errors);
    capture_reset(&cap);
}

static void test_source_runs_a_file_and_refuses_endless_nesting(void **state)
{
    Fixture *f = *state;
    char *inner = tg_path(f->dir, "inner.shears"), *loop = tg_path(f->dir, "loop.shears");
    const char *inner_text = "echo from inner\nset batch 7\n";
    assert_int_equal(write_file_atomic(inner, inner_text, strlen(inner_text), false), 0);
    char *loop_text = xasprintf("source \"%s\"\n", loop);
    assert_int_equal(write_file_atomic(loop, loop_text, strlen(loop_text), false), 0);
    Capture cap = {0};
    char *line = xasprintf("source \"%s\"", inner);
    cmd_ok(f->ws, line, &cap, NULL);
    assert_string_equal(captured(&cap), "from inner\nbatch = 7\n");
    assert_int_equal(f->ws->batch, 7);
    free(line);
    capture_reset(&cap);

    Redirect err;
    redirect_begin(&err, STDERR_FILENO, f->dir, "stderr.txt");
    line = xasprintf("source \"%s\"", loop);
    int rc = run_cmd(f->ws, line, NULL, NULL);
    char *errors = redirect_end(&err);
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(errors, "nested more than 16 deep"));
    free(errors);
    free(line);
    cmd_fails(f->ws, "source /nonexistent/script.shears", SH_E_IO, "/nonexistent/script.shears");
    free(loop_text);
    free(inner);
    free(loop);
}

static void test_json_objects_have_command_ok_and_error(void **state)
{
    Fixture *f = *state;
    Capture cap = {0};
    Out o = {.json = true, .sink = capture_sink, .sink_ctx = &cap};
    Redirect out;
    redirect_begin(&out, STDOUT_FILENO, f->dir, "stdout.txt");
    int rc = run_script_text(f->ws, "echo hello; set batch 4\nload /nonexistent.onnx\necho never", "j", &o);
    char *text = redirect_end(&out);
    assert_int_equal(rc, SH_E_IO);
    assert_string_equal(captured(&cap), ""); /* JSON mode writes no text lines */
    static const char *names[] = {"echo", "set", "load"};
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++) {
        cJSON *obj = cJSON_Parse(l);
        if (!obj)
            fail_msg("line %d is not JSON: %s", n, l);
        assert_true(n < 3);
        assert_string_equal(json_string(obj, "command"), names[n]);
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(obj, "ok");
        assert_true(cJSON_IsBool(ok));
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(obj, "error");
        if (n < 2) {
            assert_true(cJSON_IsTrue(ok));
            assert_null(err);
        } else {
            assert_true(cJSON_IsFalse(ok));
            assert_non_null(strstr(json_string(obj, "error"), "/nonexistent.onnx"));
        }
        if (n == 0)
            assert_string_equal(json_string(obj, "text"), "hello");
        cJSON_Delete(obj);
    }
    assert_int_equal(n, 3);
    free(text);

    /* a parse error is one object too */
    redirect_begin(&out, STDOUT_FILENO, f->dir, "stdout.txt");
    rc = run_script_text(f->ws, "echo \"open", "bad", &o);
    text = redirect_end(&out);
    assert_int_equal(rc, SH_E_ARG);
    cJSON *obj = cJSON_Parse(text);
    assert_non_null(obj);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "command"))); /* no command ran */
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(obj, "ok")));
    assert_non_null(strstr(json_string(obj, "error"), "line 1"));
    cJSON_Delete(obj);
    free(text);

    /* command_run fills the object directly as well */
    cmd_fails(f->ws, "lod x", SH_E_ARG, NULL);
    cJSON *o2;
    assert_int_equal(run_cmd(f->ws, "lod x", NULL, &o2), SH_E_ARG);
    assert_string_equal(json_string(o2, "command"), "lod");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o2, "ok")));
    assert_non_null(strstr(json_string(o2, "error"), "did you mean 'load'"));
    cJSON_Delete(o2);
}

/* ---- model commands ---------------------------------------------------------------- */

static void test_failed_load_keeps_the_previous_model(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    cmd_fails(ws, "info", SH_E_STATE, "no model loaded");
    char *band = write_band_model(f->dir);
    char *line = xasprintf("load \"%s\"", band);
    cJSON *obj;
    cmd_ok(ws, line, NULL, &obj);
    assert_int_equal(json_number(obj, "params"), 7850);
    assert_int_equal(json_number(obj, "nodes"), 2);
    cJSON_Delete(obj);
    Graph *model = ws->model, *original = ws->original;
    assert_non_null(model);

    cmd_fails(ws, "load /nonexistent/model.onnx", SH_E_IO, "/nonexistent/model.onnx");
    assert_ptr_equal(ws->model, model);
    assert_ptr_equal(ws->original, original);
    assert_string_equal(ws->model_path, band);

    /* a file that is not ONNX */
    char *junk = tg_path(f->dir, "junk.onnx");
    assert_int_equal(write_file_atomic(junk, "not a model\n", 12, false), 0);
    char *junk_line = xasprintf("load \"%s\"", junk);
    cmd_fails(ws, junk_line, SH_E_FORMAT, "junk.onnx");
    assert_ptr_equal(ws->model, model);

    /* a model with a NaN weight */
    float *w = xcalloc(10 * 784, sizeof *w), b[10] = {0};
    w[5] = NAN;
    Graph *g = linear_model(w, b);
    char *nan_path = tg_path(f->dir, "nan.onnx");
    assert_int_equal(onnx_save(g, nan_path, false), 0);
    char *nan_line = xasprintf("load \"%s\"", nan_path);
    cmd_fails(ws, nan_line, SH_E_NUMERIC, "'fc.weight'");
    assert_ptr_equal(ws->model, model);
    assert_string_equal(ws->model_path, band);
    /* and the kept model still works */
    cmd_ok(ws, "info", NULL, NULL);
    graph_free(g);
    free(w);
    free(nan_path);
    free(nan_line);
    free(junk);
    free(junk_line);
    free(line);
    free(band);
}

static void test_info_on_conformance_conv_counts_params_and_macs(void **state)
{
    Fixture *f = *state;
    /* the initializers as stored in the file */
    Graph *g;
    if (onnx_load(CONV2D_MODEL, &g) != 0)
        fail_msg("%s", sh_errmsg());
    int64_t init_sum = 0;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & VAL_CONST) && g->values[v].data)
            init_sum += g->values[v].data->numel;
    /* the model is one Conv: x [2,3,7,5] * W [4,3,3,2] + b [4] -> [2,4,5,4] */
    assert_int_equal(g->n_nodes, 1);
    assert_string_equal(g->nodes[0].op_type, "Conv");
    const Value *x = &g->values[g->inputs[0]];
    const Value *w = &g->values[g->nodes[0].in[1]];
    Shape xs = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)7, (int64_t)5);
    Shape wsh = shape_of(4, (int64_t)4, (int64_t)3, (int64_t)3, (int64_t)2);
    assert_true(shape_eq(&x->shape, &xs));
    assert_true(shape_eq(&w->data->shape, &wsh));
    assert_int_equal(init_sum, 4 * 3 * 3 * 2 + 4);
    graph_free(g);

    cJSON *obj;
    Capture cap = {0};
    cmd_ok(f->ws, "load " CONV2D_MODEL, NULL, NULL);
    cmd_ok(f->ws, "info", &cap, &obj);
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(obj, "totals");
    assert_int_equal(json_number(tot, "params"), init_sum);
    /* output [2,4,5,4], each element 3*3*2 MACs; the model's batch is fixed at 2 */
    int64_t macs = 2 * 4 * 5 * 4 * (3 * 3 * 2);
    assert_int_equal(json_number(tot, "macs"), macs);
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(obj, "nodes");
    assert_int_equal(cJSON_GetArraySize(nodes), 1);
    assert_int_equal(json_number(cJSON_GetArrayItem(nodes, 0), "macs"), macs);
    assert_string_equal(json_string(cJSON_GetArrayItem(nodes, 0), "shape"), "[2,4,5,4]");
    assert_non_null(strstr(captured(&cap), "Conv"));
    cJSON_Delete(obj);
    capture_reset(&cap);

    /* a symbolic batch is reported per sample, with N in shapes */
    char *band = write_band_model(f->dir);
    char *line = xasprintf("load \"%s\"", band);
    cmd_ok(f->ws, line, NULL, NULL);
    cmd_ok(f->ws, "info", &cap, &obj);
    tot = cJSON_GetObjectItemCaseSensitive(obj, "totals");
    assert_int_equal(json_number(tot, "params"), 7850);
    assert_int_equal(json_number(tot, "macs"), 10 * 784);
    nodes = cJSON_GetObjectItemCaseSensitive(obj, "nodes");
    assert_string_equal(json_string(cJSON_GetArrayItem(nodes, 1), "shape"), "[N,10]");
    assert_non_null(strstr(captured(&cap), "[N,784]"));
    cJSON_Delete(obj);
    capture_reset(&cap);
    free(line);
    free(band);
}

static void test_data_and_eval_give_hand_computed_accuracy(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    cmd_fails(ws, "eval", SH_E_STATE, "no model loaded");
    char *bias = write_bias_model(f->dir), *band = write_band_model(f->dir);
    char *load_bias = xasprintf("load \"%s\"", bias), *load_band = xasprintf("load \"%s\"", band);
    cmd_ok(ws, load_bias, NULL, NULL);
    cmd_fails(ws, "eval", SH_E_STATE, "no data loaded");

    cJSON *obj;
    cmd_ok(ws, "data fashion-mnist split=test limit=20", NULL, &obj);
    const cJSON *test = cJSON_GetObjectItemCaseSensitive(obj, "test");
    assert_int_equal(json_number(test, "samples"), 20);
    assert_int_equal(json_number(test, "classes"), 10);
    assert_string_equal(json_string(test, "shape"), "[20,1,28,28]");
    assert_false(ws->has_train);
    cJSON_Delete(obj);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tensor_i64(&ws->test.y)[i], fashion_test_labels[i]);

    /* always class 1: the labels hold four 1s; the loss of every row is
     * log(e^2 + 9) minus 2 where the label is 1 */
    cmd_ok(ws, "eval batch=8", NULL, &obj);
    assert_int_equal(json_number(obj, "samples"), 20);
    assert_int_equal(json_number(obj, "correct"), 4);
    assert_float_equal(json_number(obj, "accuracy"), 0.2, 1e-12);
    double want_loss = log(exp(2.0) + 9) - 2.0 * 4 / 20;
    printf("bias model: loss %.6f, hand-computed %.6f\n", json_number(obj, "loss"), want_loss);
    assert_float_equal(json_number(obj, "loss"), want_loss, 1e-5);
    cJSON_Delete(obj);

    /* the brightest band of rows: predictions 7 7 2 1 4 2 5 7 5 5 6 7 6 8 6 1 1 3 7 2
     * (worked out from the raw pixels, normalized by 0.2860,0.3530) match the
     * labels at samples 3, 8 and 15 */
    cmd_ok(ws, load_band, NULL, NULL);
    cmd_ok(ws, "eval", NULL, &obj);
    assert_int_equal(json_number(obj, "correct"), 3);
    assert_float_equal(json_number(obj, "accuracy"), 0.15, 1e-12);
    cJSON_Delete(obj);
    cmd_ok(ws, "eval batch=3 limit=10", NULL, &obj);
    assert_int_equal(json_number(obj, "samples"), 10);
    assert_int_equal(json_number(obj, "correct"), 2);
    cJSON_Delete(obj);
    /* new data replaces the old; failed data commands keep it */
    cmd_ok(ws, "data fashion-mnist split=test limit=5 normalize=none", NULL, NULL);
    assert_int_equal(ws->test.n, 5);
    cmd_fails(ws, "data fashion-mnist path=/nonexistent", SH_E_IO, "/nonexistent");
    assert_int_equal(ws->test.n, 5); /* the previous data stays */
    cmd_fails(ws, "data csv", SH_E_ARG, "unknown data source 'csv'");
    free(load_bias);
    free(load_band);
    free(bias);
    free(band);
}

static void test_eval_of_a_fixed_batch_model_uses_whole_batches(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    char *b8 = write_band_model_batch(f->dir, "band8.onnx", 8);
    char *b32 = write_band_model_batch(f->dir, "band32.onnx", 32);
    char *l8 = xasprintf("load \"%s\"", b8), *l32 = xasprintf("load \"%s\"", b32);
    cmd_ok(ws, "data fashion-mnist split=test limit=20", NULL, NULL);
    /* batches of exactly 8: samples 0..15; the band predictions match at 3, 8, 15 */
    cmd_ok(ws, l8, NULL, NULL);
    cJSON *obj;
    cmd_ok(ws, "eval batch=5", NULL, &obj);
    assert_int_equal(json_number(obj, "samples"), 16);
    assert_int_equal(json_number(obj, "correct"), 3);
    assert_int_equal(json_number(obj, "batch"), 8);
    cJSON_Delete(obj);
    /* batches of 32 from 20 samples: nothing can run, and eval says so */
    cmd_ok(ws, l32, NULL, NULL);
    cmd_fails(ws, "eval", SH_E_SHAPE, "'image'");
    assert_non_null(strstr(sh_errmsg(), "32"));
    assert_non_null(strstr(sh_errmsg(), "20"));
    free(l8);
    free(l32);
    free(b8);
    free(b32);
}

static void test_eval_refuses_data_the_model_cannot_take(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    char *band = write_band_model(f->dir), *load = xasprintf("load \"%s\"", band);
    cmd_ok(ws, load, NULL, NULL);
    /* 14x14 images from NPY files */
    Shape xs = shape_of(3, (int64_t)4, (int64_t)14, (int64_t)14), ys = shape_of(1, (int64_t)4);
    Tensor *x = tensor_new(SH_F32, &xs), *y = tensor_new(SH_I64, &ys);
    char *xp = tg_path(f->dir, "x.npy"), *yp = tg_path(f->dir, "y.npy");
    assert_int_equal(npy_write(xp, x, false), 0);
    assert_int_equal(npy_write(yp, y, false), 0);
    char *data = xasprintf("data npy x=\"%s\" y=\"%s\" classes=10", xp, yp);
    cmd_ok(ws, data, NULL, NULL);
    assert_int_equal(ws->test.n, 4);
    cmd_fails(ws, "eval", SH_E_SHAPE, "'image'");
    assert_non_null(strstr(sh_errmsg(), "[N,1,28,28]"));
    cmd_fails(ws, "data npy x=a.npy", SH_E_ARG, "x= and y=");
    tensor_free(x);
    tensor_free(y);
    free(data);
    free(xp);
    free(yp);
    free(load);
    free(band);
}

static void test_echo_prints_key_value_words_as_text(void **state)
{
    Fixture *f = *state;
    Capture cap = {0};
    cJSON *obj;
    cmd_ok(f->ws, "echo loss=0.5 \"a b\" done", &cap, &obj);
    assert_string_equal(captured(&cap), "loss=0.5 a b done\n");
    assert_string_equal(json_string(obj, "text"), "loss=0.5 a b done");
    cJSON_Delete(obj);
    capture_reset(&cap);
    cmd_ok(f->ws, "echo", &cap, NULL);
    assert_string_equal(captured(&cap), "\n");
    capture_reset(&cap);
}

/* undo and redo step to another model: the optimizer state of the one
 * left behind is dropped (a later fine-tune starts fresh). */
static void test_undo_drops_the_optimizer_state(void **state)
{
    Fixture *f = *state;
    cmd_ok(f->ws, "load samples/fmnist-cnn.onnx", NULL, NULL);
    cmd_ok(f->ws, "data fashion-mnist limit=256 val=0.25 seed=3", NULL, NULL);
    cmd_ok(f->ws, "score l1", NULL, NULL);
    cmd_ok(f->ws, "prune ratio=0.3", NULL, NULL);
    cmd_ok(f->ws, "apply compensate=off", NULL, NULL);
    cmd_ok(f->ws, "finetune epochs=1 batch=64 opt=adamw", NULL, NULL);
    assert_true(f->ws->opt.n > 0);
    cmd_ok(f->ws, "undo", NULL, NULL);
    assert_int_equal(f->ws->opt.n, 0);
    cmd_ok(f->ws, "finetune epochs=1 batch=64 opt=adamw", NULL, NULL);
    assert_true(f->ws->opt.n > 0);
    cmd_ok(f->ws, "redo", NULL, NULL);
    assert_int_equal(f->ws->opt.n, 0);
}

/* preview's estimate is the loss and accuracy of the plan applied
 * without bias compensation, on the same validation samples. */
static void test_preview_estimate_equals_eval_after_apply(void **state)
{
    Fixture *f = *state;
    cJSON *pre, *before, *after;
    cmd_ok(f->ws, "load samples/fmnist-cnn.onnx", NULL, NULL);
    cmd_ok(f->ws, "data fashion-mnist limit=1200 val=0.25 seed=3", NULL, NULL);
    cmd_ok(f->ws, "score l1", NULL, NULL);
    cmd_ok(f->ws, "prune ratio=0.4", NULL, NULL);
    cmd_ok(f->ws, "preview estimate=200", NULL, &pre);
    cmd_ok(f->ws, "eval split=val limit=200", NULL, &before);
    cmd_ok(f->ws, "apply compensate=off", NULL, NULL);
    cmd_ok(f->ws, "eval split=val limit=200", NULL, &after);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(pre, "estimate");
    assert_non_null(e);
    assert_string_equal(json_string(e, "split"), "val");
    assert_true(json_number(e, "samples") == 200);
    assert_true(fabs(json_number(e, "loss_before") - json_number(before, "loss")) < 1e-6);
    assert_true(fabs(json_number(e, "loss_after") - json_number(after, "loss")) < 1e-6);
    assert_true(json_number(e, "accuracy_after") == json_number(after, "accuracy"));
    assert_true(json_number(e, "loss_after") > json_number(e, "loss_before")); /* 40% of every layer hurts */
    cJSON_Delete(pre);
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static bool only_files(const char *dir, const char *const *names, int n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int seen = 0;
    bool ok = true;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        bool known = false;
        for (int i = 0; i < n; i++)
            known = known || strcmp(e->d_name, names[i]) == 0;
        if (!known) {
            printf("unexpected file %s\n", e->d_name);
            ok = false;
        }
        seen++;
    }
    closedir(d);
    return ok && seen == n;
}

static void test_export_refuses_to_overwrite_unless_forced(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    char *band = write_band_model(f->dir), *out = tg_path(f->dir, "out.onnx");
    char *load = xasprintf("load \"%s\"", band);
    cmd_fails(ws, "export x.onnx", SH_E_STATE, "no model loaded");
    cmd_ok(ws, load, NULL, NULL);
    const char *placeholder = "precious user file";
    assert_int_equal(write_file_atomic(out, placeholder, strlen(placeholder), false), 0);
    struct stat before, after;
    assert_int_equal(stat(out, &before), 0);

    char *plain = xasprintf("export \"%s\"", out), *forced = xasprintf("export \"%s\" force=on", out);
    cmd_fails(ws, plain, SH_E_IO, "out.onnx");
    unsigned char *data;
    size_t n;
    assert_int_equal(read_file(out, &data, &n, 1 << 20), 0);
    assert_int_equal(n, strlen(placeholder));
    assert_memory_equal(data, placeholder, n);
    free(data);

    cmd_ok(ws, forced, NULL, NULL);
    assert_int_equal(stat(out, &after), 0);
    /* replaced by rename, not rewritten in place: a new inode */
    assert_true(before.st_ino != after.st_ino);
    static const char *const files[] = {"band.onnx", "out.onnx"};
    assert_true(only_files(f->dir, files, 2)); /* no temporary left behind */
    Graph *g;
    assert_int_equal(onnx_load(out, &g), 0);
    assert_int_equal(g->n_nodes, ws->model->n_nodes);
    assert_int_equal(graph_param_count(g), 7850);
    graph_free(g);
    cmd_fails(ws, "export /nonexistent/dir/m.onnx", SH_E_IO, "/nonexistent/dir");
    free(plain);
    free(forced);
    free(load);
    free(band);
    free(out);
}

static void test_run_writes_npy_outputs_equal_to_exec_run(void **state)
{
    Fixture *f = *state;
    Workspace *ws = f->ws;
    char *band = write_band_model(f->dir), *in = tg_path(f->dir, "in.npy"), *out = tg_path(f->dir, "out.npy");
    char *load = xasprintf("load \"%s\"", band);
    cmd_ok(ws, load, NULL, NULL);
    TRng r;
    trng_seed(&r, 9);
    Shape xs = shape_of(4, (int64_t)3, (int64_t)1, (int64_t)28, (int64_t)28);
    Tensor *x = t_rand(&r, &xs, -1, 1);
    assert_int_equal(npy_write(in, x, false), 0);

    char *line = xasprintf("run input=\"%s\" output=\"%s\"", in, out);
    cJSON *obj;
    Capture cap = {0};
    cmd_ok(ws, line, &cap, &obj);
    assert_non_null(strstr(captured(&cap), "logits"));
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(obj, "outputs");
    assert_int_equal(cJSON_GetArraySize(outs), 1);
    assert_string_equal(json_string(cJSON_GetArrayItem(outs, 0), "shape"), "[3,10]");
    cJSON_Delete(obj);
    capture_reset(&cap);

    Tensor got = {0};
    assert_int_equal(npy_read(&got, out), 0);
    ExecPlan *p = NULL;
    assert_int_equal(exec_plan(ws->model, &xs, NULL, &p), 0);
    assert_int_equal(exec_run(p, &x), 0);
    double d = t_max_diff("run output.npy vs exec_run", &got, exec_output(p, 0));
    assert_true(d == 0);
    /* and the value is right: class k sums rows of band k */
    double s0 = 0;
    for (int rr = 0; rr < 2; rr++)
        for (int c = 0; c < 28; c++)
            s0 += tensor_f32(x)[rr * 28 + c];
    assert_float_equal(tensor_f32(&got)[0], s0, 1e-4);
    exec_free(p);
    tensor_done(&got);

    /* an existing output file is kept unless force=on */
    cmd_fails(ws, line, SH_E_IO, "out.npy");
    char *forced = xasprintf("%s force=on", line);
    cmd_ok(ws, forced, NULL, NULL);
    /* input count and dtype are checked, naming the file or input */
    char *two = xasprintf("run input=\"%s\",\"%s\"", in, in);
    cmd_fails(ws, two, SH_E_ARG, "the model has 1 input");
    Shape is = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)28, (int64_t)28);
    Tensor *ints = tensor_new(SH_I64, &is);
    char *ipath = tg_path(f->dir, "ints.npy");
    assert_int_equal(npy_write(ipath, ints, false), 0);
    char *iline = xasprintf("run input=\"%s\"", ipath);
    cmd_fails(ws, iline, SH_E_SHAPE, "'image'");
    cmd_fails(ws, "run", SH_E_ARG, "input=");
    Shape bad = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)28, (int64_t)27);
    Tensor *bt = tensor_new(SH_F32, &bad);
    char *bpath = tg_path(f->dir, "bad.npy");
    assert_int_equal(npy_write(bpath, bt, false), 0);
    char *bline = xasprintf("run input=\"%s\"", bpath);
    cmd_fails(ws, bline, SH_E_SHAPE, "'image'");
    cmd_fails(ws, "run input=/nonexistent.npy", SH_E_IO, "/nonexistent.npy");
    tensor_free(bt);
    free(bpath);
    free(bline);
    tensor_free(ints);
    free(ipath);
    free(iline);
    free(two);
    free(forced);
    free(line);
    tensor_free(x);
    free(load);
    free(band);
    free(in);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_command_suggests_the_closest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_suggests_the_closest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_choices_are_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_positional_count_shows_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_completed_key_is_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_lists_every_command_of_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_works_for_every_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_gives_command_names_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_changes_settings_and_refuses_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_stops_at_the_first_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_runs_a_file_and_refuses_endless_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_objects_have_command_ok_and_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_load_keeps_the_previous_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_on_conformance_conv_counts_params_and_macs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_and_eval_give_hand_computed_accuracy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_of_a_fixed_batch_model_uses_whole_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_refuses_data_the_model_cannot_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_prints_key_value_words_as_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preview_estimate_equals_eval_after_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undo_drops_the_optimizer_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_refuses_to_overwrite_unless_forced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_writes_npy_outputs_equal_to_exec_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The workbench: one App holds the session (workspace, job, log, view
 * model, key map, console, panes) and runs the loop: keys in, commands
 * out, redraw when something changed. The Workspace changes only through
 * commands, run one at a time on the job thread (front-end commands, which
 * touch only the UI, run on the UI thread). */
#ifndef SH_TUI_APP_H
#define SH_TUI_APP_H

#include "commands/session_ui.h"
#include "console.h"
#include "draw.h"
#include "job.h"
#include "keymap.h"
#include "log.h"
#include "pane.h"
#include "session.h"
#include "viewmodel.h"

#include <stdbool.h>

typedef struct {
    const char *model;      /* load at start */
    const char *data;       /* data NAME at start */
    const char *keys_path;  /* keys from this file; the screen is invisible */
    int rows, cols;         /* the invisible screen's size (default 24 x 80) */
    bool recover;           /* replay the last session's journal first */
    bool ascii;             /* plain ASCII glyphs */
    bool no_journal;        /* no crash journal (tests that share a state folder) */
    int threads;
    /* --bench-ui: keys come from bench_ui.c's driver */
    int (*driver)(struct App *app, void *ctx, double now); /* returns a key or -1; called each loop turn */
    void *driver_ctx;
} AppOptions;

typedef enum { MODE_NORMAL, MODE_CONSOLE, MODE_SEARCH, MODE_CONFIRM } Mode;
typedef enum { OVERLAY_NONE, OVERLAY_PREVIEW, OVERLAY_HELP } Overlay;
enum { PANE_LAYERS, PANE_UNITS, PANE_PLOT, PANE_LOG, N_PANES };
typedef enum { PLOT_AUTO, PLOT_SENSITIVITY, PLOT_TRAINING } PlotView;

typedef struct {
    char *text;
    int batch;       /* commands submitted together stop at the first failure */
    bool keep_going; /* ... unless this is set (a recovery) */
} Queued;

/* Keys from a file (--keys) or pressed by `key`. */
typedef struct {
    int *keys;       /* key codes; KEY_DIRECTIVE entries point into words */
    char **args;
    int n, cap, next;
    int *injected;   /* from `key NAME` and the mouse */
    int n_injected, cap_injected;
} KeySource;

typedef struct App {
    AppOptions opt;
    Workspace *ws;
    Session session;
    Log log;
    Job job;
    Keymap keys;
    ViewModel vm;
    Measures measures;
    Console console;
    UiHooks hooks;
    Pane *panes[N_PANES];
    Pane *overlays[3];     /* by Overlay */
    int focus;
    Overlay overlay;
    Mode mode;
    char confirm[256];     /* the question in MODE_CONFIRM */
    bool confirm_quit;     /* what 'y' does: quit */
    Queued *queue;
    int n_queue, cap_queue, batch, failed_batch;
    uint64_t job_model;    /* the model hash a job started on */
    char *job_text;        /* the running job's command line */
    char notice[512];
    Role notice_role;
    int sel_group;         /* the group the units and plot panes show, -1 */
    int click_row;         /* for KEY_SH_CLICK: row within the pane */
    char *search;
    PlotView plot_view;
    TrainPoint *train;     /* the last training run's curve */
    int n_train;
    char train_name[32];
    cJSON *preview;        /* the last preview's result (the overlay shows it) */
    KeySource input;
    bool quit, dirty, too_small, invisible;
    bool pending_resize;
    int resize_rows, resize_cols;
    long seen_job_version, seen_log_total;
    int capture_fd;        /* read end of the stdout/stderr pipe, -1 */
    /* performance: keystroke to redraw */
    double key_time;       /* when the key being handled arrived, 0 none */
    double key_max_ms, key_sum_ms, key_job_max_ms, loop_job_max_ms;
    int key_count, key_job_count;
    double last_turn;      /* end of the previous loop turn (stall measurement) */
} App;

/* Runs the workbench until quit; returns the exit code. */
int app_run(const AppOptions *opt);

/* Submits a command line (one or more commands): logged, queued behind a
 * running job, front-end commands run at once. */
void app_submit(App *app, const char *text, bool keep_going);
/* Shows a one-line notice on the status line (and in the log). */
void app_notice(App *app, Role role, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The selected unit of the units pane (-1 none). */
int app_selected_unit(App *app);
/* Selects a group (units and plot panes follow). */
void app_select_group(App *app, int id);
bool app_job_running(const App *app);
/* Renders now (used by dump-screen and the benchmark). */
void app_render(App *app);
/* Writes the screen as text. */
int app_dump_screen(App *app, const char *path, bool overwrite);

#endif

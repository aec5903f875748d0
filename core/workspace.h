/* One session's state: the current model, the model as loaded, the data,
 * settings. Only commands/ changes a Workspace. */
#ifndef SH_WORKSPACE_H
#define SH_WORKSPACE_H

#include "data.h"
#include "depgraph.h"
#include "graph.h"
#include "plan.h"
#include "sparsity.h"
#include "train.h"

#include <stdbool.h>

struct UiHooks;

typedef struct Workspace {
    Graph *model;        /* current model (NULL until load) */
    Graph *original;     /* the model as loaded, for comparison and undo */
    char *model_path;
    Dataset train, test;   /* the loaded splits */
    bool has_train, has_test;
    DataSubset fit, val;   /* train carved into a fitting part and a validation part */
    DataSubset test_all;   /* every test sample */
    double val_fraction;
    uint64_t split_seed;
    char *data_desc;       /* "fashion-mnist" */
    int threads;
    int64_t batch;       /* default batch for eval/run */
    bool keep_going;     /* scripts continue after a failing command */
    bool dirty;          /* model changed since load/save */
    /* pruning */
    DepGraph *dg;        /* groups of the current model (built on demand) */
    Plan plan;           /* marks on the current model */
    char *score_name;    /* criterion of the scores below */
    double **scores;     /* per group of dg: one score per unit, or NULL */
    Graph **undo, **redo;   /* models before / after each apply */
    Plan *undo_plan, *redo_plan; /* the plan in effect with each of them */
    OptState opt;        /* optimizer state carried between train/finetune runs */
    SparsityMasks sparse; /* 2:4 masks held through fine-tuning (n == 0: off) */
    int n_undo, n_redo;
    /* a front end's hooks for front-end commands (commands/session_ui.h); NULL headless */
    const struct UiHooks *ui;
    void *ui_ctx;
} Workspace;

Workspace *workspace_new(void);
void workspace_free(Workspace *ws); /* NULL-safe */

/* Loads, validates and prepares a model. The workspace changes only on
 * success: a failed load keeps the previous model. */
int ws_load_model(Workspace *ws, const char *path);
/* Makes g (taken) the current and original model; origin names it. */
int ws_set_model(Workspace *ws, Graph *g, const char *origin);
/* Replaces the loaded data: either split may be NULL (not loaded). Takes
 * ownership of the datasets' contents. Carves val_fraction of train into
 * the validation part (seeded). */
int ws_set_data(Workspace *ws, Dataset *train, Dataset *test, double val_fraction, uint64_t seed,
                const char *desc);
int ws_require_model(const Workspace *ws);
int ws_require_data(const Workspace *ws);
/* The subset named "train" (the fitting part), "val" or "test"; fails
 * naming what is missing. */
int ws_subset(const Workspace *ws, const char *name, const DataSubset **out);

/* The dependency groups of the current model (built on first use). */
int ws_groups(Workspace *ws, const DepGraph **out);
/* Replaces the current model by g (taken), keeping the old one for undo;
 * plan, groups and scores start over. */
void ws_replace_model(Workspace *ws, Graph *g);
int ws_undo(Workspace *ws);
int ws_redo(Workspace *ws);
/* Forgets groups, plan and scores (the model changed). */
void ws_model_changed(Workspace *ws);

/* Refuses float weights that are NaN or infinite, naming the tensor. */
int graph_check_finite(const Graph *g, const char *origin);

#endif

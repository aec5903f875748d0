/* One session's state: the current model, the model as loaded, the data,
 * settings. Only commands/ changes a Workspace. */
#ifndef SH_WORKSPACE_H
#define SH_WORKSPACE_H

#include "data.h"
#include "graph.h"

#include <stdbool.h>

typedef struct Workspace {
    Graph *model;        /* current model (NULL until load) */
    Graph *original;     /* the model as loaded, for comparison and undo */
    char *model_path;
    Dataset data;
    bool has_data;
    char *data_desc;     /* "fashion-mnist test (10000 samples)" */
    int threads;
    int64_t batch;       /* default batch for eval/run */
    bool keep_going;     /* scripts continue after a failing command */
    bool dirty;          /* model changed since load/save */
} Workspace;

Workspace *workspace_new(void);
void workspace_free(Workspace *ws); /* NULL-safe */

/* Loads, validates and prepares a model. The workspace changes only on
 * success: a failed load keeps the previous model. */
int ws_load_model(Workspace *ws, const char *path);
/* Makes g (taken) the current and original model; origin names it. */
int ws_set_model(Workspace *ws, Graph *g, const char *origin);
/* Replaces the data (takes ownership of *ds's contents on success). */
void ws_set_data(Workspace *ws, Dataset *ds, const char *desc);
int ws_require_model(const Workspace *ws);
int ws_require_data(const Workspace *ws);

/* Refuses float weights that are NaN or infinite, naming the tensor. */
int graph_check_finite(const Graph *g, const char *origin);

#endif

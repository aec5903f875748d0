/* Pruning plans: which units of which groups to remove. Groups are named
 * (depgraph's group names are stable for a given graph), and a plan is
 * bound to the model it was made for by the model's content hash, so a
 * plan applied to the same model gives the same result on any machine. */
#ifndef SH_PLAN_H
#define SH_PLAN_H

#include "depgraph.h"
#include "graph.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *group;     /* group name */
    int n_units;     /* the group's unit count when marked */
    bool *marked;    /* n_units flags */
} PlanEntry;

typedef struct {
    PlanEntry *entries;
    int n;
    char *criterion;    /* how the marks were chosen ("manual", "l1", ...) */
    uint64_t model_hash;
} Plan;

void plan_init(Plan *p, uint64_t model_hash);
void plan_done(Plan *p);
int plan_copy(Plan *dst, const Plan *src);
/* The entry of a group (created if absent when create). */
PlanEntry *plan_entry(Plan *p, const Group *grp, bool create);
/* Marks or unmarks unit u of a group. */
int plan_mark(Plan *p, const Group *grp, int unit, bool on);
void plan_clear(Plan *p);
int plan_count(const Plan *p);
/* Units of grp marked in p. */
int plan_marked_in(const Plan *p, const Group *grp);

/* Checks the plan against a depgraph: every group exists, is not blocked,
 * has the recorded number of units and keeps at least one unit. */
int plan_check(const Plan *p, const DepGraph *dg);

/* JSON (cJSON): {"model_hash": "...", "criterion": "...",
 *   "groups": [{"group": "conv1", "units": 32, "remove": [3, 7]}]} */
int plan_save(const Plan *p, const char *path, bool overwrite);
/* Loads a plan and refuses it if it was made for another model. */
int plan_load(Plan *p, const char *path, uint64_t model_hash);

/* A hash of the model's structure and weights (FNV-1a over nodes,
 * attributes and initializer bytes). */
uint64_t graph_content_hash(const Graph *g);

#endif

/* Pruning rules: turn scores into marks. Local scope removes the same
 * fraction of every group; global scope ranks all units of all groups
 * together (scores normalized per group) and removes the lowest. Neither
 * applies anything: they fill a plan. */
#ifndef SH_PRUNE_H
#define SH_PRUNE_H

#include "depgraph.h"
#include "graph.h"
#include "plan.h"

#include <stdbool.h>

typedef struct {
    double ratio;        /* fraction of units to remove */
    bool global;         /* rank units across groups */
    double max_ratio;    /* no group loses more than this fraction (default 0.9) */
    int round_to;        /* remaining units a multiple of this (1 = off) */
    const char *ignore;  /* comma-separated group names or ids left alone */
    double macs_target;  /* > 0: choose the ratio so MACs fall to this fraction */
} PruneRule;

/* Marks units of dg's groups by rule into p (replacing its marks). scores
 * has one array per group (NULL for blocked groups). For macs_target the
 * ratio is searched so that the pruned model's MACs are at most the
 * target fraction of g's. */
int prune_select(const Graph *g, const DepGraph *dg, double *const *scores, const PruneRule *r, Plan *p);

#endif

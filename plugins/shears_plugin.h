/* shears criterion plugins: the public ABI.
 *
 * A plugin is a shared library that scores the units of a model's
 * dependency groups (channels, neurons, attention heads) so that shears
 * can prune the lowest-scoring ones. It sees plain C arrays only; nothing
 * of shears' internals. Build one with
 *
 *     cc -std=c11 -O2 -fPIC -shared -I<shears>/plugins my_plugin.c -o my_plugin.so
 *
 * and load it with the command `plugin load my_plugin.so`; its criterion
 * then works like a builtin: `score NAME`, `units GROUP`, `mark GROUP
 * lowest=K`. See example_plugin.c.
 *
 * The plugin exports one function,
 *
 *     const ShearsPluginInfo *shears_plugin_info(void);
 *
 * returning a pointer to static data. shears refuses a plugin whose
 * abi_version differs from its own SHEARS_PLUGIN_ABI_VERSION (the layout
 * of the structs below is part of the version), a name that is empty,
 * longer than 31 characters, not made of [A-Za-z0-9_-], or already taken,
 * and a NULL score function. A loaded plugin stays loaded until shears
 * exits; the strings it returns must stay valid.
 *
 * Scoring. score(model, scores, err, err_size) is called once per `score`
 * command, on one thread. model describes every group that can be pruned
 * (groups blocked by an unsupported op are not listed). For group k,
 * scores[k] holds model->groups[k].n_units doubles, zeroed, to fill with
 * one finite score per unit: higher = more important. shears then applies
 * the user's normalization (norm=). Return 0 on success; otherwise write
 * a one-line reason into err (err_size bytes, always at least 256) and
 * return non-zero: shears reports it and keeps its previous scores.
 * Everything in model is borrowed for the duration of the call: read it,
 * never write it, never keep pointers to it.
 *
 * Units and slices. Removing unit u of a group removes, from every
 * parameter of the group, the slice of elements whose index along
 * param.axis is one of the unit's channels:
 *
 *     param.idx[param.start[u]] ... param.idx[param.start[u + 1] - 1]
 *
 * (one channel for a conv filter or FFN neuron, head_dim channels for an
 * attention head). Parameters are float32, row-major (C order): element
 * (i0, ..., i_{rank-1}) is data[((i0 * shape[1] + i1) * shape[2] + ...)].
 * A Conv's filter o is param {axis 0, idx o}; the next Conv's input slice
 * for the same channel is param {axis 1, idx o}; BatchNormalization's
 * scale, bias and running statistics are 1-D params on axis 0. */
#ifndef SHEARS_PLUGIN_H
#define SHEARS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define SHEARS_PLUGIN_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* One parameter tensor of a group and the slice each unit owns. */
typedef struct {
    const char *name;      /* initializer name, e.g. "conv1.weight" */
    const char *op_type;   /* the op reading it: "Conv", "Gemm", "BatchNormalization", ... */
    int input_index;       /* which input of that op (Conv: 1 weight, 2 bias; BN: 1 scale, 2 bias, 3 mean, 4 var) */
    int trainable;         /* 1 for weights, 0 for statistics (BN running mean/var) */
    const float *data;     /* the values */
    int rank;
    const int64_t *shape;  /* rank dims */
    int axis;              /* the axis the units cut */
    const int64_t *start;  /* n_units + 1 offsets into idx */
    const int64_t *idx;    /* indices along axis, grouped by unit */
} ShearsParam;

/* A group of coupled units. */
typedef struct {
    int id;                /* shears' group id (as shown by `groups`) */
    const char *name;      /* the first producing layer, e.g. "conv5" */
    const char *kind;      /* "channels", "neurons", "heads", "width" */
    int n_units;
    int64_t unit_width;    /* channels per unit */
    int n_params;
    const ShearsParam *params;
    /* needs_data plugins: mean |activation| of each unit over the
     * calibration batches, read after the ReLU that follows the group's
     * first producer (else at its output); NULL otherwise. */
    const double *act_mean_abs;
} ShearsGroup;

typedef struct {
    int abi_version;       /* SHEARS_PLUGIN_ABI_VERSION of the running shears */
    int n_groups;
    const ShearsGroup *groups;
    uint64_t seed;         /* the user's seed= (for randomized criteria) */
} ShearsModel;

typedef int (*ShearsScoreFn)(const ShearsModel *model, double *const *scores, char *err, size_t err_size);

typedef struct {
    int abi_version;       /* set to SHEARS_PLUGIN_ABI_VERSION */
    const char *name;      /* the criterion's command name, e.g. "l1max" */
    const char *summary;   /* one line for `criteria` */
    int needs_data;        /* 1: needs calibration data (fills act_mean_abs) */
    ShearsScoreFn score;
} ShearsPluginInfo;

/* The one symbol a plugin exports. */
const ShearsPluginInfo *shears_plugin_info(void);

#ifdef __cplusplus
}
#endif

#endif

/* An example shears criterion plugin: "l1max", the largest |w| in each
 * unit's slices of the group's trainable parameters (a unit holding one
 * large weight is kept). Built by `make` as $(BUILD)/plugins/example_plugin.so;
 * try: shears -c 'load samples/fmnist-cnn.onnx; plugin load build/plugins/example_plugin.so;
 * score l1max; units conv5' */
#include "shears_plugin.h"

#include <math.h>

/* max |w| over unit u's slice of p. */
static double slice_max_abs(const ShearsParam *p, int u)
{
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < p->axis; k++)
        outer *= p->shape[k];
    for (int k = p->axis + 1; k < p->rank; k++)
        inner *= p->shape[k];
    int64_t size = p->shape[p->axis];
    double best = 0;
    for (int64_t i = p->start[u]; i < p->start[u + 1]; i++)
        for (int64_t o = 0; o < outer; o++) {
            const float *row = p->data + (o * size + p->idx[i]) * inner;
            for (int64_t r = 0; r < inner; r++)
                best = fmax(best, fabs((double)row[r]));
        }
    return best;
}

static int score_l1max(const ShearsModel *model, double *const *scores, char *err, size_t err_size)
{
    (void)err;
    (void)err_size;
    for (int g = 0; g < model->n_groups; g++) {
        const ShearsGroup *grp = &model->groups[g];
        for (int u = 0; u < grp->n_units; u++)
            for (int k = 0; k < grp->n_params; k++)
                if (grp->params[k].trainable)
                    scores[g][u] = fmax(scores[g][u], slice_max_abs(&grp->params[k], u));
    }
    return 0;
}

static const ShearsPluginInfo info = {
    .abi_version = SHEARS_PLUGIN_ABI_VERSION,
    .name = "l1max",
    .summary = "largest |w| in the unit's parameter slices (example plugin)",
    .needs_data = 0,
    .score = score_l1max,
};

const ShearsPluginInfo *shears_plugin_info(void) { return &info; }

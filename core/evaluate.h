/* Evaluation of a classifier on a dataset: top-1 accuracy, mean
 * cross-entropy, throughput and batch latency. */
#ifndef SH_EVALUATE_H
#define SH_EVALUATE_H

#include "data.h"
#include "graph.h"

typedef struct {
    int64_t samples;
    int64_t correct;
    double accuracy;      /* correct / samples */
    double loss;          /* mean cross-entropy */
    double seconds;       /* wall time of the forward passes */
    double images_per_s;
    double batch_ms;      /* median forward time of one full batch */
    int64_t batch;        /* batch size used */
} EvalResult;

/* How the model's first output relates to class probabilities. */
typedef enum { OUT_LOGITS, OUT_PROBS, OUT_LOG_PROBS } OutputKind;
OutputKind graph_output_kind(const Graph *g);

/* Checks that the model's first input can take the dataset's samples
 * (same element count per sample) and its first output gives one score
 * per class; fails naming both shapes. */
int eval_check_compat(const Graph *g, const Dataset *ds);

/* Runs g over set in batches of batch (the model's own batch if fixed). */
int evaluate(const Graph *g, const DataSubset *set, int64_t batch, EvalResult *r);

/* Cross-entropy of one row of n scores of the given kind for label y;
 * *argmax receives the predicted class. */
double row_cross_entropy(const float *scores, int n, int64_t y, OutputKind kind, int *argmax);

#endif

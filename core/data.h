/* Datasets for training and evaluation: images as float32 [N,C,H,W]
 * (pixels scaled to [0,1], then normalized per channel as
 * (x - mean[c]) / std[c]) and int64 labels [N]. Loaded from IDX (MNIST,
 * Fashion-MNIST) or NPY. Subsets (a train/validation split) are index
 * lists over one Dataset, so the images are held once; a BatchIter copies
 * one batch at a time, in order or shuffled per epoch, optionally
 * augmented. Every random choice comes from a seeded xoshiro256** so the
 * same seed gives the same order on every machine. */
#ifndef SH_DATA_H
#define SH_DATA_H

#include "tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- portable random numbers ---------------------------------------- */

/* xoshiro256** seeded through splitmix64 (Vigna): integer arithmetic
 * only, so sequences are identical on every platform and compiler. */
typedef struct {
    uint64_t s[4];
} Xoshiro;

void xoshiro_seed(Xoshiro *r, uint64_t seed);
uint64_t xoshiro_next(Xoshiro *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t xoshiro_below(Xoshiro *r, uint64_t n);
/* Uniform float in [0, 1), 24 random bits. */
float xoshiro_uniform(Xoshiro *r);
/* Fisher-Yates shuffle of a[0..n). */
void xoshiro_shuffle(Xoshiro *r, int64_t *a, int64_t n);

/* ---- datasets ---------------------------------------------------------- */

#define DATA_MAX_CHANNELS 16

/* Per-channel normalization. n == 0: none (mean 0, std 1); n == 1: one
 * mean/std for every channel; otherwise n must equal the channel count. */
typedef struct {
    int n;
    float mean[DATA_MAX_CHANNELS];
    float std[DATA_MAX_CHANNELS];
} DataNorm;

DataNorm data_norm_none(void);
DataNorm data_norm_one(float mean, float std);

typedef struct {
    Tensor x;            /* F32 [N,C,H,W], normalized */
    Tensor y;            /* I64 [N], each in [0, n_classes) */
    int64_t n, c, h, w;
    int n_classes;
    DataNorm norm;       /* as applied, expanded to c entries */
} Dataset;

/* Builds a dataset from an image tensor (U8, divided by 255, or F32, taken
 * as already scaled) of [N,H,W] or [N,C,H,W] and a label tensor (U8 or
 * I64) of [N]. Takes ownership of both tensors' contents (reset on return,
 * success or not); an F32 [N,C,H,W] buffer is normalized in place, not
 * copied. n_classes 0 means max label + 1. x_name/y_name name the sources
 * in messages. norm NULL means none. */
int dataset_from_tensors(Dataset *ds, Tensor *x, Tensor *y, int n_classes, const DataNorm *norm,
                         const char *x_name, const char *y_name);

/* IDX images [N,H,W] (or [N,C,H,W]) and labels [N], raw or gzipped.
 * limit > 0 keeps the first limit samples (the counts declared by the two
 * files must still agree). */
int dataset_load_idx(Dataset *ds, const char *images_path, const char *labels_path, int64_t limit,
                     int n_classes, const DataNorm *norm);

/* MNIST / Fashion-MNIST in dir: split "train" (train-*-ubyte[.gz]) or
 * "test" (t10k-*-ubyte[.gz]); 10 classes. */
int dataset_load_mnist(Dataset *ds, const char *dir, const char *split, int64_t limit, const DataNorm *norm);

/* x.npy (F32 or U8, [N,H,W] or [N,C,H,W]) and y.npy (I64 or U8, [N]). */
int dataset_load_npy(Dataset *ds, const char *x_path, const char *y_path, int64_t limit, int n_classes,
                     const DataNorm *norm);

void dataset_done(Dataset *ds);

/* ---- subsets and splits ------------------------------------------------ */

/* Some samples of a dataset, by index (ascending). The dataset is
 * borrowed and must outlive the subset. */
typedef struct {
    const Dataset *ds;
    int64_t *idx; /* owned */
    int64_t n;
} DataSubset;

/* Every sample, in order. */
void data_subset_all(DataSubset *s, const Dataset *ds);
/* Carves a validation set of round(val_fraction * N) samples, chosen by
 * seed, out of ds; train gets the rest. The two are disjoint and together
 * hold every sample once. val_fraction in [0, 1). */
int data_split(DataSubset *train, DataSubset *val, const Dataset *ds, double val_fraction, uint64_t seed);
void data_subset_done(DataSubset *s);

/* ---- batches ----------------------------------------------------------- */

typedef struct {
    bool shuffle;   /* a new order every epoch, from (seed, epoch) */
    bool drop_last; /* skip the final partial batch */
    uint64_t seed;
    /* Augmentation (training only), random per sample from (seed, epoch): */
    int crop_pad;   /* random crop after zero-padding by this many pixels (0: off) */
    bool hflip;     /* mirror left-right with probability 1/2 */
} BatchOpts;

typedef struct {
    /* The current batch, valid until the next call; rows = x.shape.d[0]. */
    Tensor x;             /* F32 [B,C,H,W] view on the iterator's buffer */
    Tensor y;             /* I64 [B] view */
    const int64_t *index; /* dataset index of each row */
    int64_t epoch;        /* epoch of the current batch */
    /* private */
    const DataSubset *set;
    BatchOpts opt;
    int64_t batch, pos, *order;
    float *xbuf, *pad_value;
    int64_t *ybuf;
    Xoshiro aug;
} BatchIter;

/* Iterates set (borrowed) in batches of batch rows, starting at epoch 0. */
int batch_iter_init(BatchIter *it, const DataSubset *set, int64_t batch, const BatchOpts *opt);
/* Fills it->x and it->y with the next batch of the epoch and returns 1;
 * at the end of the epoch returns 0 and moves to the next epoch (the next
 * call starts it). */
int batch_iter_next(BatchIter *it);
/* Restarts at the beginning of epoch (e.g. to resume training). */
void batch_iter_set_epoch(BatchIter *it, int64_t epoch);
/* Batches per epoch. */
int64_t batch_iter_count(const BatchIter *it);
void batch_iter_done(BatchIter *it);

#endif

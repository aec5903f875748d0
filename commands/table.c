/* The command catalogue. Adding a command is one entry here plus its
 * handler; help and completion follow from this table. */
#include "commands.h"

#include <string.h>

#define TRAIN_KEYS                                                                                 \
    "epochs=N lr=F opt=sgd|adamw batch=N wd=F momentum=F nesterov=on|off schedule=constant|step|cosine " \
    "step=N gamma=F warmup=N smoothing=F clip=F seed=N crop=N flip=on|off limit=N slim=F group_lasso=F"

const CommandDef command_table[] = {
    {"help", "[COMMAND]", 0, 1, "", "list commands, or show one command's usage",
     "Without an argument lists every command with a one-line summary; with a command name shows its usage and arguments.",
     cmd_help},
    {"set", "NAME VALUE", 2, 2, "", "change a setting: keep-going on|off, threads N, batch N",
     "keep-going on|off: scripts continue after a failing command. threads N: BLAS threads. batch N: default batch size of eval and run.",
     cmd_set},
    {"echo", "TEXT...", 0, 64, "", "print text (useful in scripts)", "Prints its words separated by spaces.",
     cmd_echo},
    {"source", "FILE.shears", 1, 1, "", "run the commands of a script file",
     "Runs a script file in this session; a failing command stops it unless keep-going is on.", cmd_source},
    {"load", "FILE.onnx", 1, 1, "", "load an ONNX model",
     "Loads a model, folds constants, infers shapes with a symbolic batch and refuses NaN weights. A failed load keeps the previous model.",
     cmd_load},
    {"build", "ARCH.json", 1, 1, "", "build a new model from a JSON architecture description",
     "Builds a freshly initialized model (layer types: conv, bn, relu, gelu, maxpool, avgpool, gap, flatten, linear, dropout, residual, patch_embed, cls_token, pos_embed, transformer, layernorm, take_cls; see core/builder.h and samples/*.json).",
     cmd_build},
    {"info", "", 0, 0, "", "per-node table: op, output shape, params, MACs, % of total",
     "Shows every node of the current model with its output shape (N = batch), parameter count and multiply-accumulates per sample, and the totals.",
     cmd_info},
    {"export", "FILE.onnx", 1, 1, "force=on|off", "write the current model as ONNX",
     "Writes the model atomically; refuses to replace an existing file unless force=on.", cmd_export},
    {"run", "", 0, 0, "input=FILE.npy[,...] output=FILE.npy[,...] force=on|off",
     "run the model on NPY inputs and write NPY outputs",
     "Feeds one NPY file per model input (in order, comma-separated) and writes each output to the NPY files given, or prints a summary.",
     cmd_run},
    {"data", "fashion-mnist|mnist|idx|npy", 1, 1,
     "split=train|test|all limit=N val=F seed=N normalize=MEAN,STD|none path=DIR images=FILE labels=FILE train-images=FILE train-labels=FILE test-images=FILE test-labels=FILE x=FILE y=FILE train-x=FILE train-y=FILE test-x=FILE test-y=FILE classes=N",
     "load a dataset: training and/or test split, with a validation part",
     "fashion-mnist and mnist read the IDX files (path= defaults to /usr/share/datasets/<name>); idx takes train-/test-images= and labels= (or images=/labels= for one split); npy takes x=/y= likewise. split=all (default) loads both splits; val=0.1 carves a seeded validation part out of the training split. normalize defaults to the model's recorded shears.normalize, else Fashion-MNIST's 0.2860,0.3530.",
     cmd_data},
    {"eval", "", 0, 0, "split=test|val|train batch=N limit=N",
     "top-1 accuracy, mean cross-entropy, images/s and batch latency",
     "Runs the model over a split (default: test if loaded, else val; limit= uses the first N samples).", cmd_eval},
    {"train", "", 0, 0, TRAIN_KEYS, "train the model on the training split",
     "SGD (momentum, Nesterov, weight decay) or AdamW with a constant, step or cosine schedule and linear warm-up; label smoothing, gradient clipping, augmentation (crop=PAD, flip=on). Ctrl-C cancels and keeps the last finished step. Validates on the val part after each epoch.",
     cmd_train},
    {"finetune", "", 0, 0, TRAIN_KEYS " distill=T alpha=F",
     "fine-tune to recover accuracy (recovery-friendly defaults; distill=T uses the original model as teacher)",
     "Like train with defaults for recovery: 3 epochs, SGD lr 0.01, cosine, no warm-up. distill=T adds KL divergence to the unpruned original's outputs at temperature T, weighted by alpha (default 0.5).",
     cmd_finetune},
    {"save", "FILE.onnx", 1, 1, "force=on|off", "save the model (weights and BatchNorm statistics) as ONNX",
     "The same as export: writes atomically (temporary file + rename); refuses to replace an existing file unless force=on.", cmd_export},
    {"groups", "", 0, 0, "", "dependency groups: units, parameters, blocked groups and why",
     "Lists every group of coupled channels (units that must be removed together), what kind they are (channels, neurons, heads, width), their parameters, and, for groups that cannot be pruned, the node and op that block them.",
     cmd_groups},
    {"units", "GROUP", 1, 1, "sort=score|index", "the units of a group with their scores, marks shown",
     "Lists the units of a group (by id or name from 'groups'), sorted by score when scored.", cmd_units},
    {"score", "CRITERION", 1, 1, "batches=N batch=N reduce=mean|sum|max norm=none|mean|max|lamp seed=N",
     "score every unit of every group with a criterion (see: criteria)",
     "Fills the scores that units shows and mark lowest=K / ratio=R use. Data-free: l1, l2 (group magnitude: per tensor the mean |w| or RMS of the unit's slice, combined over the group's tensors by reduce=), fpgm, bn, random (seed=). Data-driven, on batches=N (default 8) batches of batch=N (default 64) samples of the training split: taylor, fisher, act, apoz, wanda, head. norm= normalizes within each group (lamp: s_i / sum of the scores >= s_i). Plugins add more (plugin load).",
     cmd_score},
    {"criteria", "", 0, 0, "", "list the importance criteria (builtins and loaded plugins)",
     "Shows every criterion score accepts, whether it needs calibration data, and the plugin it came from.",
     cmd_criteria},
    {"plugin", "load PATH.so", 2, 2, "", "load a criterion plugin (a .so built against plugins/shears_plugin.h)",
     "Opens the shared library, checks that it was built for this shears' plugin ABI version and registers its criterion under its own name for score.",
     cmd_plugin},
    {"mark", "GROUP [UNITS]", 1, 2, "lowest=N ratio=F", "mark units of a group for removal",
     "Marks units given as 3,7,10-12, or the lowest-scoring K (lowest=K) or fraction (ratio=R) of the group. A group always keeps at least one unit.",
     cmd_mark},
    {"unmark", "[GROUP [UNITS]]", 0, 2, "", "clear marks (all, a group's, or some units)",
     "Without arguments clears the whole plan.", cmd_unmark},
    {"plan", "[show|save FILE.json|load FILE.json]", 0, 2, "force=on|off", "show, save or load the plan",
     "Plans are JSON bound to the model's content hash; loading a plan made for another model is refused.", cmd_plan},
    {"prune", "", 0, 0, "ratio=F scope=local|global criterion=NAME batches=N max=F ignore=GROUPS round_to=N macs=F steps=N epochs=N",
     "mark units by rule (does not apply): a ratio per group or globally, or a MACs target",
     "local: every group loses the ratio of its units; global: all units ranked together (scores divided by their group's mean). max= caps any group's loss (default 0.9), round_to=N keeps widths at multiples of N, ignore=a,b leaves groups alone, macs=F searches the ratio that brings MACs down to that fraction. criterion= scores first. steps=K prunes iteratively: K rounds of score, prune, apply and fine-tune (epochs= each), every round removing the same fraction of what is left.",
     cmd_prune},
    {"preview", "", 0, 0, "", "every slice the plan removes, and params and MACs before -> after",
     "Shows every tensor slice that would be removed (parameters and activations) and the resulting sizes, without changing the model.",
     cmd_preview},
    {"apply", "", 0, 0, "compensate=on|off batches=N", "remove the marked units: a smaller dense model, verified",
     "Slices weights, biases, BatchNorm statistics and shape constants, re-infers shapes, and verifies on a probe batch that the pruned model equals the original with the removed channels zeroed. Bias compensation (on by default, needs data): each removed channel's mean contribution on calibration batches is folded into its consumers' biases.",
     cmd_apply},
    {"sparsity", "2:4|off", 1, 1, "", "2:4 semi-structured masks on Conv/Gemm/MatMul weights (no CPU speedup)",
     "2:4 zeroes the 2 smallest of every 4 weights along each layer's input axis (NVIDIA ASP's rule) and holds the masks through training; the model exports with zeros. It shrinks nothing and gives no speedup on CPUs. off releases the masks.",
     cmd_sparsity},
    {"bench", "", 0, 0, "batch=N iters=N top=N", "measure latency at batch 1 and N, and the slowest layers",
     "Times the current model on random input (median of iters runs after warm-up) at batch 1 and batch N, with per-layer times at batch N.",
     cmd_bench},
    {"undo", "", 0, 0, "", "go back to the model before the last apply", "Restores the previous model.", cmd_undo},
    {"redo", "", 0, 0, "", "redo an undone apply", "Re-applies what undo took back.", cmd_redo},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};

const CommandDef *command_find(const char *name)
{
    for (const CommandDef *d = command_table; d->name; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* The command catalogue. Adding a command is one entry here plus its
 * handler; help and completion follow from this table. */
#include "commands.h"

#include <string.h>

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
     "split=train|test limit=N normalize=MEAN,STD|none path=DIR images=FILE labels=FILE x=FILE y=FILE classes=N",
     "load a dataset for evaluation",
     "fashion-mnist and mnist read the IDX files (path= defaults to /usr/share/datasets/<name>); idx takes images= and labels=; npy takes x= and y=. normalize defaults to the model's recorded shears.normalize, else Fashion-MNIST's 0.2860,0.3530.",
     cmd_data},
    {"eval", "", 0, 0, "batch=N limit=N", "top-1 accuracy, mean cross-entropy, images/s and batch latency",
     "Runs the model over the loaded data (limit= uses the first N samples).", cmd_eval},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};

const CommandDef *command_find(const char *name)
{
    for (const CommandDef *d = command_table; d->name; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

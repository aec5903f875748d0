/* The console language: commands separated by newlines or ';', words
 * separated by blanks, "quoted" or 'quoted' words, key=value arguments,
 * '#' comments to the end of the line. */
#ifndef SH_PARSE_H
#define SH_PARSE_H

typedef struct {
    char *key;   /* NULL for a positional word */
    char *value;
} Arg;

typedef struct {
    char *name;
    Arg *args;
    int n_args;
    int line;    /* 1-based line in the source text */
} Command;

typedef struct {
    Command *cmds;
    int n;
} CommandList;

/* Parses text into commands (empty commands are dropped). Fails naming
 * the line on an unterminated quote. */
int parse_commands(const char *text, CommandList *out);
void command_list_done(CommandList *l);
void command_done(Command *c);

/* Value of key (NULL if absent). */
const char *cmd_get(const Command *c, const char *key);
/* The i-th positional word (NULL if absent). */
const char *cmd_pos(const Command *c, int i);
int cmd_n_pos(const Command *c);

/* Writes the command back as text (quoting words that need it). */
char *command_to_text(const Command *c);

#endif

/* Whole-file reads and atomic writes: a write goes to a temporary file in
 * the same folder and is renamed into place only when complete, so a
 * failed or interrupted save never leaves a half-written file. */
#ifndef SH_FILEIO_H
#define SH_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char *path; /* final name */
    char *tmp;  /* temporary name in the same folder */
} AtomicFile;

/* Opens a temporary file beside path. Fails (SH_E_IO) if path exists and
 * overwrite is false, naming the file. */
int atomic_open(AtomicFile *af, const char *path, bool overwrite);
/* Flushes, fsyncs and renames into place; on any failure removes the
 * temporary file. Always releases af. */
int atomic_commit(AtomicFile *af);
/* Removes the temporary file and releases af (NULL-safe, idempotent). */
void atomic_abort(AtomicFile *af);

/* Writes a whole buffer atomically. */
int write_file_atomic(const char *path, const void *data, size_t n, bool overwrite);

/* Reads a whole file (at most max_bytes) into a new buffer (*data, owned
 * by the caller, NUL-terminated for convenience). */
int read_file(const char *path, unsigned char **data, size_t *n, size_t max_bytes);

bool file_exists(const char *path);

#endif

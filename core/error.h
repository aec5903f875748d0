/* Error codes and the one-sentence error message of the calling thread.
 * Functions that can fail return 0 or a negative SH_E_* code and record a
 * human sentence naming the file, node or argument with sh_fail(). */
#ifndef SH_ERROR_H
#define SH_ERROR_H

enum {
    SH_OK = 0,
    SH_E_IO = -1,          /* file missing, unreadable, unwritable */
    SH_E_FORMAT = -2,      /* corrupt or malformed input */
    SH_E_UNSUPPORTED = -3, /* valid input shears does not handle */
    SH_E_SHAPE = -4,       /* inconsistent shapes */
    SH_E_ARG = -5,         /* bad argument or command */
    SH_E_NOMEM = -6,       /* allocation failed or size overflow */
    SH_E_STATE = -7,       /* command not valid now (no model loaded, ...) */
    SH_E_CANCELLED = -8,   /* the user cancelled a job */
    SH_E_NUMERIC = -9,     /* NaN/Inf where a finite number is required */
};

/* Records the message (printf format) for this thread and returns code. */
int sh_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "prefix: " (printf format); returns code. */
int sh_fail_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" if none). Borrowed. */
const char *sh_errmsg(void);

void sh_clear_error(void);

const char *sh_strcode(int code);

#endif

#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[1024];

int sh_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return code;
}

int sh_fail_prefix(int code, const char *fmt, ...)
{
    char prefix[256], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err_msg - 3)
        n = sizeof err_msg - 3;
    memcpy(err_msg, prefix, n);
    memcpy(err_msg + n, ": ", 2);
    size_t room = sizeof err_msg - n - 3, len = strlen(old);
    if (len > room)
        len = room;
    memcpy(err_msg + n + 2, old, len);
    err_msg[n + 2 + len] = '\0';
    return code;
}

const char *sh_errmsg(void) { return err_msg; }

void sh_clear_error(void) { err_msg[0] = '\0'; }

const char *sh_strcode(int code)
{
    switch (code) {
    case SH_OK: return "ok";
    case SH_E_IO: return "i/o error";
    case SH_E_FORMAT: return "format error";
    case SH_E_UNSUPPORTED: return "unsupported";
    case SH_E_SHAPE: return "shape error";
    case SH_E_ARG: return "bad argument";
    case SH_E_NOMEM: return "out of memory";
    case SH_E_STATE: return "invalid state";
    case SH_E_CANCELLED: return "cancelled";
    case SH_E_NUMERIC: return "numeric error";
    default: return "error";
    }
}

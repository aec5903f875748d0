#include "log.h"

#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void log_init(Log *l, int cap)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->cap = cap;
    l->lines = xcalloc((size_t)cap, sizeof *l->lines);
}

void log_done(Log *l)
{
    if (!l->lines)
        return;
    for (int i = 0; i < l->cap; i++)
        free(l->lines[i].text);
    free(l->lines);
    free(l->partial);
    pthread_mutex_destroy(&l->mu);
    memset(l, 0, sizeof *l);
}

/* Under the lock. Takes text. */
static void push_line(Log *l, LogKind kind, char *text)
{
    int slot;
    if (l->n < l->cap)
        slot = (l->start + l->n++) % l->cap;
    else {
        slot = l->start;
        l->start = (l->start + 1) % l->cap;
        free(l->lines[slot].text);
    }
    l->lines[slot].text = text;
    l->lines[slot].kind = kind;
    l->total++;
}

static char *concat(const char *a, const char *b, size_t blen)
{
    size_t alen = a ? strlen(a) : 0;
    char *s = xmalloc(alen + blen + 1);
    if (alen)
        memcpy(s, a, alen);
    memcpy(s + alen, b, blen);
    s[alen + blen] = '\0';
    return s;
}

void log_append(Log *l, LogKind kind, const char *text)
{
    pthread_mutex_lock(&l->mu);
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\r\n");
        if (len || !l->partial) {
            char *joined = concat(l->partial, p, len);
            free(l->partial);
            l->partial = joined;
            l->partial_kind = kind;
        }
        p += len;
        if (*p == '\r') { /* a progress line redrawn in place: keep the newest */
            free(l->partial);
            l->partial = NULL;
            p++;
        } else if (*p == '\n') {
            push_line(l, l->partial_kind, l->partial ? l->partial : xstrdup(""));
            l->partial = NULL;
            p++;
        }
    }
    if (l->partial && !l->partial[0]) {
        free(l->partial);
        l->partial = NULL;
    }
    pthread_mutex_unlock(&l->mu);
}

void log_printf(Log *l, LogKind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_flush(l);
    pthread_mutex_lock(&l->mu);
    push_line(l, kind, xstrdup(buf));
    pthread_mutex_unlock(&l->mu);
}

void log_flush(Log *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->partial) {
        push_line(l, l->partial_kind, l->partial);
        l->partial = NULL;
    }
    pthread_mutex_unlock(&l->mu);
}

bool log_line(Log *l, int i, char *buf, int n, LogKind *kind)
{
    pthread_mutex_lock(&l->mu);
    bool ok = i >= 0 && i < l->n;
    if (ok) {
        const LogLine *ln = &l->lines[(l->start + i) % l->cap];
        snprintf(buf, (size_t)n, "%s", ln->text);
        *kind = ln->kind;
    }
    pthread_mutex_unlock(&l->mu);
    return ok;
}

int log_count(Log *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

long log_total(Log *l)
{
    pthread_mutex_lock(&l->mu);
    long t = l->total;
    pthread_mutex_unlock(&l->mu);
    return t;
}

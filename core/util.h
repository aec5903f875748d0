/* Small allocation and string helpers. Small allocations abort on
 * failure (STYLE.md); tensor allocations return errors instead. */
#ifndef SH_UTIL_H
#define SH_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);      /* NULL-safe: returns NULL for NULL */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Grows *arr (element size elem) so that it holds at least need elements. */
void grow_array(void **arr, int *cap, int need, size_t elem);

uint64_t hash_str(const char *s);
/* FNV-1a over bytes, chainable: pass the previous result as seed. */
uint64_t hash_bytes(const void *p, size_t n, uint64_t seed);

double now_seconds(void); /* CLOCK_MONOTONIC */

/* Levenshtein distance, capped at 100. */
int edit_distance(const char *a, const char *b);

#endif

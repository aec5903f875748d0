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

/* The most bytes one data allocation (a tensor, an arena, scratch) may
 * take: the machine's physical memory unless set lower (tests, fuzzing).
 * Larger requests fail with a clear message instead of paging the machine
 * to a halt. sh_set_memory_budget(0) restores the default. */
size_t sh_memory_budget(void);
void sh_set_memory_budget(size_t bytes);
/* 0 if bytes fit the budget, else SH_E_NOMEM naming what (a noun phrase). */
int sh_check_budget(size_t bytes, const char *what);

/* A count in a few characters: "1.23G", "4.56M", "12.3K", "789"; "?" if negative (unknown). */
void format_count(double x, char *buf, size_t n);

/* Levenshtein distance, capped at 100. */
int edit_distance(const char *a, const char *b);

#endif

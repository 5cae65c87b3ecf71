/* The original stored `services` and `pcidevs` as Python literals
 * ("{'meminfo-writer': True}", "['02:00.0']"). This parses the small subset
 * it wrote (dicts and lists of strings, booleans, None and integers) into
 * real values and prints them back the way Python's repr() does. */
#ifndef QUBES_PYLITERAL_H
#define QUBES_PYLITERAL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum pyval_type { PYV_NONE, PYV_BOOL, PYV_INT, PYV_STR };

struct pyval {
    enum pyval_type type;
    bool b;
    long long i;
    char *s;
};

struct pydict_item {
    char *key;
    struct pyval val;
};

/* Insertion-ordered, as Python dicts are. */
struct pydict {
    struct pydict_item *items;
    size_t n;
};

struct pylist {
    char **items;
    size_t n;
};

int pydict_parse(const char *text, struct pydict *out, struct qerr *err);
int pylist_parse(const char *text, struct pylist *out, struct qerr *err);
/* Return malloc'ed repr() text, NULL on allocation failure. */
char *pydict_format(const struct pydict *d);
char *pylist_format(const struct pylist *l);

void pydict_free(struct pydict *d);
void pylist_free(struct pylist *l);

const struct pyval *pydict_get(const struct pydict *d, const char *key);
/* Replaces the value of an existing key in place, else appends. */
int pydict_set(struct pydict *d, const char *key, const struct pyval *v);
int pydict_del(struct pydict *d, const char *key);
int pylist_append(struct pylist *l, const char *s);

#endif

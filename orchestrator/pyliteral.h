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

/* Changes one key of a dict literal in its text, keeping the rest of the
 * text as it was (the original's spacing and quotes, the other keys in
 * their order): with `v` the key gets that value (appended when new),
 * without it the key goes. *out is the malloc'ed new text, equal to `text`
 * when nothing changed (a key to remove that is not there). */
int pydict_edit(const char *text, const char *key, const struct pyval *v, char **out,
                struct qerr *err);
/* Python's truth of a value: False, None, 0 and '' are false. */
bool pyval_truth(const struct pyval *v);

/* ---- a VM's `services` dict (qvm-service) ----
 * Its keys travel to the guest on the kernel command line and become file
 * names there: a service name is [A-Za-z0-9_.-], 1..63 characters, not
 * starting with '.' or '-'. */
#define QSERVICE_NAME_MAX 63
/* The guest's argument, "qubes.services=name1,!name2", at most this long. */
#define QSERVICES_ARG_MAX 1024

int qservice_check_name(const char *name, struct qerr *err);
/* The argument for the dict's entries in their order: NAME for a true
 * value, !NAME for a false one; keys that are not service names are left
 * out. "" for none. Fails, naming the limit, when it would be longer than
 * QSERVICES_ARG_MAX. */
int qservices_cmdline(const struct pydict *d, char out[QSERVICES_ARG_MAX + 1], struct qerr *err);

#endif

/* An element's attributes as read from qubes.xml, in document order.
 * This list is what is written back, so attributes we do not know survive
 * a load/save round trip untouched. */
#ifndef QUBES_ATTRS_H
#define QUBES_ATTRS_H

#include <stddef.h>

struct qattr {
    char *name;
    char *value;
};

struct qattrs {
    struct qattr *v;
    size_t n, cap;
};

const char *qattrs_get(const struct qattrs *a, const char *name);
/* Replaces the value in place (keeping the position) or appends. -1 on ENOMEM. */
int qattrs_set(struct qattrs *a, const char *name, const char *value);
/* Appends without looking for an existing one: for loading, where the XML
 * parser has already refused duplicate attributes. -1 on ENOMEM. */
int qattrs_append(struct qattrs *a, const char *name, const char *value);
/* Makes room for `n` more attributes. */
int qattrs_reserve(struct qattrs *a, size_t n);
void qattrs_del(struct qattrs *a, const char *name);
void qattrs_free(struct qattrs *a);

#endif

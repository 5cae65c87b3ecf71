/* The VM collection: every VM of qubes.xml, indexed by qid and by name,
 * plus the global defaults of the root element. Loading validates the whole
 * document and fails with one error naming the element and the problem. */
#ifndef QUBES_COLLECTION_H
#define QUBES_COLLECTION_H

#include <stddef.h>

#include "attrs.h"
#include "error.h"
#include "vm.h"

/* The global references of the root element. */
enum qglobal {
    QG_DEFAULT_TEMPLATE,
    QG_DEFAULT_NETVM,
    QG_DEFAULT_FW_NETVM,
    QG_UPDATEVM,
    QG_CLOCKVM,
    QG_COUNT
};

struct qvm_collection {
    struct qvm *by_qid;         /* uthash, hh_qid */
    struct qvm *by_name;        /* uthash, hh_name */
    int globals[QG_COUNT];      /* qids, -1 for None */
    struct qattrs root_attrs;   /* every root attribute, in document order */
};

/* "default_template" etc. as in qubes.xml; -1 if unknown. */
const char *qglobal_attr(enum qglobal g);
int qglobal_from_attr(const char *attr);

struct qvm_collection *qvm_collection_new(void);
void qvm_collection_free(struct qvm_collection *c);
/* dom0 exists in every collection; the loader synthesises it. */
int qvm_collection_add_dom0(struct qvm_collection *c, struct qerr *err);

/* At most this many attributes on one element of qubes.xml (a VM of the
 * original has about 40). Checked on the text before it is parsed: the
 * XML parser compares each attribute of an element with all before it. */
#define QUBES_MAX_ATTRS 256

/* Parses and validates a whole qubes.xml. `origin` names the file in errors. */
int qvm_collection_parse(const char *buf, size_t len, const char *origin,
                         struct qvm_collection **out, struct qerr *err);
/* Serialises to a malloc'ed document; NULL (with err) on failure. */
char *qvm_collection_format(const struct qvm_collection *c, size_t *len, struct qerr *err);
/* Runs the whole-collection checks (references, classes, cycles) again,
 * as the loader does; used before saving a changed collection. */
int qvm_collection_validate(const struct qvm_collection *c, struct qerr *err);

struct qvm *qvm_collection_by_qid(const struct qvm_collection *c, int qid);
struct qvm *qvm_collection_by_name(const struct qvm_collection *c, const char *name);
size_t qvm_collection_count(const struct qvm_collection *c);
/* VMs sorted by qid, in a malloc'ed array (the caller frees the array only). */
struct qvm **qvm_collection_sorted(const struct qvm_collection *c, size_t *n);

/* Lowest free qid / netid, -1 with err when all are taken. */
int qvm_collection_alloc_qid(const struct qvm_collection *c, struct qerr *err);
int qvm_collection_alloc_netid(const struct qvm_collection *c, struct qerr *err);

/* Takes ownership of vm (qid and name set); refuses duplicates. */
int qvm_collection_add(struct qvm_collection *c, struct qvm *vm, struct qerr *err);
/* Unlinks vm (the caller frees it) and clears global references to it. */
void qvm_collection_remove(struct qvm_collection *c, struct qvm *vm);
int qvm_collection_rename(struct qvm_collection *c, struct qvm *vm, const char *name,
                          struct qerr *err);

int qvm_collection_set_global(struct qvm_collection *c, enum qglobal g, int qid,
                              struct qerr *err);
const char *qvm_collection_default_kernel(const struct qvm_collection *c);
int qvm_collection_set_default_kernel(struct qvm_collection *c, const char *kernel,
                                      struct qerr *err);

/* VMs whose template is `tpl`, in a malloc'ed array (DispVMs included). */
struct qvm **qvm_collection_children(const struct qvm_collection *c, const struct qvm *tpl,
                                     size_t *n);

#endif

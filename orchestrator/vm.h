/* The VM model: classes, labels, names and the typed view of a VM record.
 * A record's attributes (struct qattrs) are the truth that is saved; the
 * typed fields are a cache kept in step by qvm_set_attr(), the only way an
 * attribute of a loaded VM changes. */
#ifndef QUBES_VM_H
#define QUBES_VM_H

#include <stdbool.h>
#include <uthash.h>

#include "attrs.h"
#include "error.h"

#define QUBES_MAX_QID 253       /* qids 1..253 for VMs, 0 for dom0 */
#define QUBES_MAX_NETID 253
#define QUBES_NAME_MAX 31

enum qvm_class {
    QVM_ADMIN,                  /* dom0 */
    QVM_TEMPLATE,               /* PV template */
    QVM_TEMPLATE_HVM,
    QVM_NET,
    QVM_PROXY,
    QVM_APP,
    QVM_HVM,
    QVM_DISP,
    QVM_CLASS_COUNT
};

/* "QubesAppVm" <-> QVM_APP; -1 for an unknown element name. */
const char *qvm_class_element(enum qvm_class c);
int qvm_class_from_element(const char *element);
/* The short name qvm-ls and qvm-prefs show ("AppVM", "TemplateHVM", ...). */
const char *qvm_class_label(enum qvm_class c);
bool qvm_class_is_hvm(enum qvm_class c);
bool qvm_class_is_template(enum qvm_class c);
bool qvm_class_is_netvm(enum qvm_class c);        /* NetVM or ProxyVM */
/* Directory under $BASE: "vm-templates", "servicevms" or "appvms". */
const char *qvm_class_subdir(enum qvm_class c);

struct qlabel {
    int index;
    const char *name;
    unsigned color;
};
const struct qlabel *qlabel_by_name(const char *name);
const struct qlabel *qlabel_by_index(int index);

/* Checks a VM name: ^[a-zA-Z][a-zA-Z0-9_-]*$, at most 31 characters, not
 * none/true/false. Error text names the name and the rule it breaks. */
int qvm_check_name(const char *name, struct qerr *err);
/* The same, for a VM being created or renamed: dom0 is taken, and so are
 * disp<N> (the names DispVMs get). */
int qvm_check_new_name(const char *name, struct qerr *err);
/* Whether a name is a DispVM's: "disp" and digits. */
bool qvm_is_dispvm_name(const char *name);

struct qvm {
    enum qvm_class cls;
    int qid;
    char *name;
    int template_qid;           /* -1: none */
    int netvm_qid;              /* -1: none */
    int dispvm_netvm_qid;       /* its DispVMs' netvm, -1: none (see qvm_dispvm_netvm) */
    int netid;                  /* -1 unless NetVM/ProxyVM */
    int dispid;                 /* -1 unless DispVM */
    const struct qlabel *label;
    struct qattrs attrs;
    int line;                   /* where it was in qubes.xml, 0 if new */
    bool indexed;               /* in a collection: qid and name are its keys */
    UT_hash_handle hh_qid;
    UT_hash_handle hh_name;
};

struct qvm *qvm_new(enum qvm_class cls);
void qvm_free(struct qvm *vm);

/* Validates `value` for attribute `name` of a VM of this class and, when it
 * is one we model, refreshes the typed field. Unknown attributes are kept
 * as they are. The error names the attribute and the problem. The qid and
 * name of a VM in a collection are its index keys: they are refused here
 * (qvm_collection_rename changes a name). */
int qvm_set_attr(struct qvm *vm, const char *name, const char *value, struct qerr *err);
/* The same for loading: the attribute is known to be new on this VM. */
int qvm_load_attr(struct qvm *vm, const char *name, const char *value, struct qerr *err);
const char *qvm_get_attr(const struct qvm *vm, const char *name);
/* The netvm of the DispVMs `vm` asks for: its own netvm while
 * uses_default_dispvm_netvm is True (the default), else dispvm_netvm_qid
 * (-1: DispVMs without a network). */
int qvm_dispvm_netvm(const struct qvm *vm);
/* Typed readers for attributes with a documented default. */
bool qvm_get_bool(const struct qvm *vm, const char *name, bool dflt);
long qvm_get_int(const struct qvm *vm, const char *name, long dflt);

/* Value parsers shared with qvm-prefs. */
int qparse_bool(const char *text, bool *out);
int qparse_int(const char *text, long min, long max, long *out);
/* "none"/"None" -> -1, else a qid in 0..253. */
int qparse_qidref(const char *text, int *out);
int qcheck_pcidev(const char *bdf);
int qcheck_mac(const char *mac);

#endif

#include "vm.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pyliteral.h"

static const struct {
    const char *element;
    const char *label;
    const char *subdir;
} classes[QVM_CLASS_COUNT] = {
    [QVM_ADMIN] = { "QubesAdminVm", "AdminVM", "" },
    [QVM_TEMPLATE] = { "QubesTemplateVm", "TemplateVM", "vm-templates" },
    [QVM_TEMPLATE_HVM] = { "QubesTemplateHVm", "TemplateHVM", "vm-templates" },
    [QVM_NET] = { "QubesNetVm", "NetVM", "servicevms" },
    [QVM_PROXY] = { "QubesProxyVm", "ProxyVM", "servicevms" },
    [QVM_APP] = { "QubesAppVm", "AppVM", "appvms" },
    [QVM_HVM] = { "QubesHVm", "HVM", "appvms" },
    [QVM_DISP] = { "QubesDisposableVm", "DisposableVM", "appvms" },
};

const char *qvm_class_element(enum qvm_class c)
{
    return classes[c].element;
}

int qvm_class_from_element(const char *element)
{
    for (int c = 0; c < QVM_CLASS_COUNT; c++)
        if (strcmp(classes[c].element, element) == 0)
            return c;
    return -1;
}

const char *qvm_class_label(enum qvm_class c)
{
    return classes[c].label;
}

const char *qvm_class_subdir(enum qvm_class c)
{
    return classes[c].subdir;
}

bool qvm_class_is_hvm(enum qvm_class c)
{
    return c == QVM_HVM || c == QVM_TEMPLATE_HVM;
}

bool qvm_class_is_template(enum qvm_class c)
{
    return c == QVM_TEMPLATE || c == QVM_TEMPLATE_HVM;
}

bool qvm_class_is_netvm(enum qvm_class c)
{
    return c == QVM_NET || c == QVM_PROXY;
}

static const struct qlabel labels[] = {
    { 1, "red", 0xcc0000 },
    { 2, "orange", 0xf57900 },
    { 3, "yellow", 0xedd400 },
    { 4, "green", 0x73d216 },
    { 5, "gray", 0x555753 },
    { 6, "blue", 0x3465a4 },
    { 7, "purple", 0x75507b },
    { 8, "black", 0x000000 },
};

const struct qlabel *qlabel_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof labels / sizeof *labels; i++)
        if (strcmp(labels[i].name, name) == 0)
            return &labels[i];
    return NULL;
}

const struct qlabel *qlabel_by_index(int index)
{
    if (index < 1 || index > (int)(sizeof labels / sizeof *labels))
        return NULL;
    return &labels[index - 1];
}

int qvm_check_name(const char *name, struct qerr *err)
{
    size_t len = strlen(name);
    if (len == 0)
        return qerr_set(err, "invalid VM name '': a name cannot be empty");
    if (len > QUBES_NAME_MAX)
        return qerr_set(err, "invalid VM name '%.40s%s': longer than %d characters",
                        name, len > 40 ? "..." : "", QUBES_NAME_MAX);
    if (!isalpha((unsigned char)name[0]) || (unsigned char)name[0] >= 0x80)
        return qerr_set(err, "invalid VM name '%s': must start with a letter", name);
    for (const char *p = name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x80 || !(isalnum(ch) || ch == '_' || ch == '-'))
            return qerr_set(err, "invalid VM name '%s': only letters, digits, '_' and '-' are allowed",
                            name);
    }
    if (strcasecmp(name, "none") == 0 || strcasecmp(name, "true") == 0 ||
        strcasecmp(name, "false") == 0)
        return qerr_set(err, "invalid VM name '%s': reserved word", name);
    return 0;
}

int qvm_check_new_name(const char *name, struct qerr *err)
{
    if (qvm_check_name(name, err) < 0)
        return -1;
    if (strcmp(name, "dom0") == 0)
        return qerr_set(err, "invalid VM name 'dom0': reserved for the admin VM");
    if (qvm_is_dispvm_name(name))
        return qerr_set(err, "invalid VM name '%s': names disp<N> are kept for DispVMs", name);
    return 0;
}

bool qvm_is_dispvm_name(const char *name)
{
    if (strncmp(name, "disp", 4) != 0 || !name[4])
        return false;
    for (const char *p = name + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

int qparse_bool(const char *text, bool *out)
{
    if (strcmp(text, "True") == 0 || strcmp(text, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(text, "False") == 0 || strcmp(text, "false") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

int qparse_int(const char *text, long min, long max, long *out)
{
    const char *p = text;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || errno == ERANGE || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int qparse_qidref(const char *text, int *out)
{
    long v;
    if (strcmp(text, "none") == 0 || strcmp(text, "None") == 0) {
        *out = -1;
        return 0;
    }
    if (qparse_int(text, 0, QUBES_MAX_QID, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* [dddd:]bb:dd.f */
int qcheck_pcidev(const char *bdf)
{
    const char *p = bdf;
    size_t len = strlen(bdf);
    if (len == 12) {
        for (int i = 0; i < 4; i++)
            if (!isxdigit((unsigned char)p[i]))
                return -1;
        if (p[4] != ':')
            return -1;
        p += 5;
        len -= 5;
    }
    if (len != 7)
        return -1;
    return isxdigit((unsigned char)p[0]) && isxdigit((unsigned char)p[1]) && p[2] == ':' &&
                   isxdigit((unsigned char)p[3]) && isxdigit((unsigned char)p[4]) &&
                   p[5] == '.' && p[6] >= '0' && p[6] <= '7'
               ? 0
               : -1;
}

int qcheck_mac(const char *mac)
{
    if (strlen(mac) != 17)
        return -1;
    for (int i = 0; i < 17; i++) {
        if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
            return -1;
    }
    return 0;
}

static int check_uuid(const char *u)
{
    if (strlen(u) != 36)
        return -1;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !isxdigit((unsigned char)u[i]))
            return -1;
    }
    return 0;
}

/* A path component list without "..", and without control characters. */
static int check_path_text(const char *p, bool must_be_absolute, bool must_be_relative)
{
    if (*p == '\0')
        return -1;
    if (must_be_absolute && *p != '/')
        return -1;
    if (must_be_relative && *p == '/')
        return -1;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return -1;
    const char *seg = p;
    while (seg) {
        if (strncmp(seg, "..", 2) == 0 && (seg[2] == '/' || seg[2] == '\0'))
            return -1;
        seg = strchr(seg, '/');
        if (seg)
            seg++;
    }
    return 0;
}

/* What an attribute holds, for the attributes the model knows. */
enum attr_kind {
    AK_QID, AK_NAME, AK_QIDREF, AK_NETID, AK_DISPID, AK_LABEL, AK_MEM, AK_VCPUS,
    AK_UINT, AK_BOOL, AK_DICT, AK_PCIDEVS, AK_DIR, AK_DISK, AK_IMG, AK_KERNEL, AK_MAC,
    AK_UUID, AK_TEXT,
};

#define C_ALL 0xffu
#define C_BIT(c) (1u << (c))
#define C_NET (C_BIT(QVM_NET) | C_BIT(QVM_PROXY))
#define C_HVMS (C_BIT(QVM_HVM) | C_BIT(QVM_TEMPLATE_HVM))
#define C_PV (C_ALL & ~C_HVMS & ~C_BIT(QVM_ADMIN))

static const struct attr_desc {
    const char *name;
    enum attr_kind kind;
    unsigned classes;           /* where the attribute means something */
} attr_table[] = {
    { "qid", AK_QID, C_ALL },
    { "name", AK_NAME, C_ALL },
    { "template_qid", AK_QIDREF, C_ALL },
    { "netvm_qid", AK_QIDREF, C_ALL },
    { "dispvm_netvm_qid", AK_QIDREF, C_ALL },
    { "netid", AK_NETID, C_NET },
    { "dispid", AK_DISPID, C_BIT(QVM_DISP) },
    { "label", AK_LABEL, C_ALL },
    { "memory", AK_MEM, C_ALL },
    { "maxmem", AK_MEM, C_ALL },
    { "vcpus", AK_VCPUS, C_ALL },
    { "qrexec_timeout", AK_UINT, C_ALL },
    { "uses_default_netvm", AK_BOOL, C_ALL },
    { "uses_default_dispvm_netvm", AK_BOOL, C_ALL },
    { "internal", AK_BOOL, C_ALL },
    { "installed_by_rpm", AK_BOOL, C_ALL },
    { "include_in_backups", AK_BOOL, C_ALL },
    { "debug", AK_BOOL, C_ALL },
    { "autostart", AK_BOOL, C_ALL },
    { "uses_default_kernel", AK_BOOL, C_PV },
    { "uses_default_kernelopts", AK_BOOL, C_PV },
    { "qrexec_installed", AK_BOOL, C_HVMS },
    { "guiagent_installed", AK_BOOL, C_HVMS },
    { "seamless_gui_mode", AK_BOOL, C_HVMS },
    { "services", AK_DICT, C_ALL },
    { "pcidevs", AK_PCIDEVS, C_ALL },
    { "dir_path", AK_DIR, C_ALL },
    { "root_img", AK_DISK, C_ALL },
    { "private_img", AK_DISK, C_ALL },
    { "volatile_img", AK_DISK, C_ALL },
    { "firewall_conf", AK_IMG, C_ALL },
    { "conf_file", AK_IMG, C_ALL },
    { "kernel", AK_KERNEL, C_PV },
    { "mac", AK_MAC, C_ALL },
    { "uuid", AK_UUID, C_ALL },
    { "kernelopts", AK_TEXT, C_PV },
    { "default_user", AK_TEXT, C_ALL },
    { "timezone", AK_TEXT, C_HVMS },
    { "drive", AK_TEXT, C_HVMS },
};

#define N_ATTRS (sizeof attr_table / sizeof *attr_table)

static int cmp_desc(const void *a, const void *b)
{
    return strcmp((*(const struct attr_desc *const *)a)->name,
                  (*(const struct attr_desc *const *)b)->name);
}

/* Every VM attribute of a load is looked up: by binary search over the
 * table sorted once, not by a scan. */
static const struct attr_desc *attr_lookup(enum qvm_class cls, const char *name)
{
    static const struct attr_desc *sorted[N_ATTRS];
    if (!sorted[0]) {
        for (size_t i = 0; i < N_ATTRS; i++)
            sorted[i] = &attr_table[i];
        qsort(sorted, N_ATTRS, sizeof *sorted, cmp_desc);
    }
    struct attr_desc key = { .name = name };
    const struct attr_desc *k = &key;
    const struct attr_desc *const *hit = bsearch(&k, sorted, N_ATTRS, sizeof *sorted, cmp_desc);
    return hit && ((*hit)->classes & C_BIT(cls)) ? *hit : NULL;
}

static int check_text(const char *v)
{
    for (const unsigned char *c = (const unsigned char *)v; *c; c++)
        if (*c < 0x20 && *c != '\t')
            return -1;
    return 0;
}

/* Checks the value and, for modelled attributes, updates the typed cache. */
static int apply_attr(struct qvm *vm, const struct attr_desc *d, const char *value,
                      struct qerr *err)
{
    long n;
    bool b;
    int ref;
    const char *name = d->name;

    switch (d->kind) {
    case AK_QID:
        if (qparse_int(value, 0, QUBES_MAX_QID, &n) < 0)
            return qerr_set(err, "qid=\"%s\": not a number in 0..%d", value, QUBES_MAX_QID);
        if ((vm->cls == QVM_ADMIN) != (n == 0))
            return qerr_set(err, "qid=\"%s\": qid 0 is dom0's and only dom0's", value);
        vm->qid = (int)n;
        return 0;
    case AK_NAME:
        if (vm->cls == QVM_ADMIN) {
            if (strcmp(value, "dom0") != 0)
                return qerr_set(err, "name=\"%s\": the admin VM is called dom0", value);
        } else {
            if (qvm_check_name(value, err) < 0)
                return -1;
            if (strcmp(value, "dom0") == 0)
                return qerr_set(err, "name=\"dom0\": reserved for the admin VM");
        }
        {
            char *copy = strdup(value);
            if (!copy)
                return qerr_errno(err, ENOMEM, "name");
            free(vm->name);
            vm->name = copy;
        }
        return 0;
    case AK_QIDREF:
        if (qparse_qidref(value, &ref) < 0)
            return qerr_set(err, "%s=\"%s\": neither a qid in 0..%d nor none", name, value,
                            QUBES_MAX_QID);
        if (strcmp(name, "template_qid") == 0)
            vm->template_qid = ref;
        else if (strcmp(name, "dispvm_netvm_qid") == 0)
            vm->dispvm_netvm_qid = ref;
        else
            vm->netvm_qid = ref;
        return 0;
    case AK_NETID:
        if (qparse_int(value, 1, QUBES_MAX_NETID, &n) < 0)
            return qerr_set(err, "netid=\"%s\": not a number in 1..%d", value, QUBES_MAX_NETID);
        vm->netid = (int)n;
        return 0;
    case AK_DISPID:
        if (qparse_int(value, 0, INT_MAX, &n) < 0)
            return qerr_set(err, "dispid=\"%s\": not a non-negative number", value);
        vm->dispid = (int)n;
        return 0;
    case AK_LABEL: {
        const struct qlabel *l = qlabel_by_name(value);
        if (!l)
            return qerr_set(err, "label=\"%s\": unknown label (red, orange, yellow, green, "
                            "gray, blue, purple, black)", value);
        vm->label = l;
        return 0;
    }
    case AK_MEM:
        if (qparse_int(value, 1, 1L << 30, &n) < 0)
            return qerr_set(err, "%s=\"%s\": not a memory size in MiB (1..%ld)", name, value,
                            1L << 30);
        return 0;
    case AK_VCPUS:
        if (qparse_int(value, 1, 4096, &n) < 0)
            return qerr_set(err, "vcpus=\"%s\": not a number in 1..4096", value);
        return 0;
    case AK_UINT:
        if (qparse_int(value, 0, INT_MAX, &n) < 0)
            return qerr_set(err, "%s=\"%s\": not a non-negative number", name, value);
        return 0;
    case AK_BOOL:
        if (qparse_bool(value, &b) < 0)
            return qerr_set(err, "%s=\"%s\": not a boolean (True or False)", name, value);
        return 0;
    case AK_DICT: {
        struct pydict dict;
        if (pydict_parse(value, &dict, err) < 0)
            return qerr_prefix(err, "%s=\"%s\": not a Python dict literal", name, value);
        pydict_free(&dict);
        return 0;
    }
    case AK_PCIDEVS: {
        struct pylist list;
        if (pylist_parse(value, &list, err) < 0)
            return qerr_prefix(err, "%s=\"%s\": not a Python list literal", name, value);
        for (size_t i = 0; i < list.n; i++) {
            if (qcheck_pcidev(list.items[i]) < 0) {
                qerr_set(err, "%s=\"%s\": '%s' is not a PCI address (bb:dd.f)", name, value,
                         list.items[i]);
                pylist_free(&list);
                return -1;
            }
        }
        pylist_free(&list);
        return 0;
    }
    case AK_DIR:
        if (check_path_text(value, true, false) < 0)
            return qerr_set(err, "%s=\"%s\": not an absolute path without '..'", name, value);
        return 0;
    case AK_DISK:
        /* A disk image lives in the VM's directory: an absolute path would
         * hand the VM any file or device of the host. */
        if (check_path_text(value, false, true) < 0)
            return qerr_set(err, "%s=\"%s\": not a path relative to dir_path without '..'",
                            name, value);
        return 0;
    case AK_IMG:
        if (check_path_text(value, false, false) < 0)
            return qerr_set(err, "%s=\"%s\": not a path without '..'", name, value);
        return 0;
    case AK_KERNEL:
        if (strcmp(value, "None") != 0 &&
            (check_text(value) < 0 || strchr(value, '/') || value[0] == '.' || value[0] == '\0'))
            return qerr_set(err, "kernel=\"%s\": not a kernel version", value);
        return 0;
    case AK_MAC:
        if (strcmp(value, "None") != 0 && qcheck_mac(value) < 0)
            return qerr_set(err, "mac=\"%s\": not a MAC address (xx:xx:xx:xx:xx:xx) or None",
                            value);
        return 0;
    case AK_UUID:
        if (check_uuid(value) < 0)
            return qerr_set(err, "uuid=\"%s\": not a UUID", value);
        return 0;
    case AK_TEXT:
        if (check_text(value) < 0)
            return qerr_set(err, "%s: contains control characters", name);
        return 0;
    }
    return 0;
}

int qvm_dispvm_netvm(const struct qvm *vm)
{
    return qvm_get_bool(vm, "uses_default_dispvm_netvm", true) ? vm->netvm_qid
                                                                : vm->dispvm_netvm_qid;
}

struct qvm *qvm_new(enum qvm_class cls)
{
    struct qvm *vm = calloc(1, sizeof *vm);
    if (!vm)
        return NULL;
    vm->cls = cls;
    vm->qid = -1;
    vm->template_qid = -1;
    vm->netvm_qid = -1;
    vm->dispvm_netvm_qid = -1;
    vm->netid = -1;
    vm->dispid = -1;
    vm->label = qlabel_by_name(cls == QVM_ADMIN ? "black" : "red");
    return vm;
}

void qvm_free(struct qvm *vm)
{
    if (!vm)
        return;
    free(vm->name);
    qattrs_free(&vm->attrs);
    free(vm);
}

int qvm_set_attr(struct qvm *vm, const char *name, const char *value, struct qerr *err)
{
    if (vm->indexed && (strcmp(name, "qid") == 0 || strcmp(name, "name") == 0))
        return qerr_set(err, "the %s of a VM in a collection does not change this way", name);
    const struct attr_desc *d = attr_lookup(vm->cls, name);
    if (d && apply_attr(vm, d, value, err) < 0)
        return -1;
    if (qattrs_set(&vm->attrs, name, value) < 0)
        return qerr_errno(err, ENOMEM, "setting %s", name);
    return 0;
}

int qvm_load_attr(struct qvm *vm, const char *name, const char *value, struct qerr *err)
{
    const struct attr_desc *d = attr_lookup(vm->cls, name);
    if (d && apply_attr(vm, d, value, err) < 0)
        return -1;
    if (qattrs_append(&vm->attrs, name, value) < 0)
        return qerr_errno(err, ENOMEM, "loading %s", name);
    return 0;
}

const char *qvm_get_attr(const struct qvm *vm, const char *name)
{
    return qattrs_get(&vm->attrs, name);
}

bool qvm_get_bool(const struct qvm *vm, const char *name, bool dflt)
{
    const char *v = qvm_get_attr(vm, name);
    bool b;
    return v && qparse_bool(v, &b) == 0 ? b : dflt;
}

long qvm_get_int(const struct qvm *vm, const char *name, long dflt)
{
    const char *v = qvm_get_attr(vm, name);
    long n;
    return v && qparse_int(v, LONG_MIN, LONG_MAX, &n) == 0 ? n : dflt;
}

/* qvm-prefs and qubes-prefs: the user's view of VM and global properties,
 * with type checks and the class rules. One table says what exists, for
 * which classes, and how it is read and set. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyliteral.h"
#include "hosts.h"
#include "qubes.h"
#include "../templates/templates.h"

#define C_BIT(c) (1u << (c))
#define C_ALL (0xffu & ~C_BIT(QVM_ADMIN))
#define C_HVMS (C_BIT(QVM_HVM) | C_BIT(QVM_TEMPLATE_HVM))
#define C_PV (C_ALL & ~C_HVMS)
#define C_NOTDISP (C_ALL & ~C_BIT(QVM_DISP))

struct pref;
typedef char *(*pref_get_fn)(struct qubes *q, const struct qvm *vm, const struct pref *p);
typedef int (*pref_set_fn)(struct qubes *q, struct qvm *vm, const struct pref *p,
                           const char *value, struct qerr *err);

struct pref {
    const char *name;
    const char *attr;           /* the qubes.xml attribute behind it, if one */
    unsigned classes;
    pref_get_fn get;
    pref_set_fn set;            /* NULL: read-only */
};

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

static const char *vm_name_of(struct qubes *q, int qid)
{
    struct qvm *vm = qid >= 0 ? qvm_collection_by_qid(q->coll, qid) : NULL;
    return vm ? vm->name : NULL;
}

/* ---- getters ---- */

/* What the original assumed for an attribute its file did not carry. */
static const char *attr_default(const char *attr)
{
    static const char *const defaults[][2] = {
        { "autostart", "False" }, { "debug", "False" }, { "internal", "False" },
        { "installed_by_rpm", "False" }, { "include_in_backups", "True" },
        { "seamless_gui_mode", "False" }, { "qrexec_installed", "False" },
        { "guiagent_installed", "False" }, { "pcidevs", "[]" }, { "services", "{}" },
        { "default_user", "user" }, { "qrexec_timeout", "60" }, { "timezone", "localtime" },
        { "drive", "None" }, { "vcpus", "2" },
    };
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        if (strcmp(defaults[i][0], attr) == 0)
            return defaults[i][1];
    return "";
}

static char *get_attr(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q;
    const char *v = qvm_get_attr(vm, p->attr);
    return xstrdup(v ? v : attr_default(p->attr));
}

static char *get_name(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xstrdup(vm->name);
}

static char *get_label(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xstrdup(vm->label ? vm->label->name : "");
}

static char *get_type(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xstrdup(qvm_class_label(vm->cls));
}

static char *get_qid(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xasprintf("%d", vm->qid);
}

static char *get_template(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)p;
    const char *n = vm_name_of(q, vm->template_qid);
    return xstrdup(n ? n : "none");
}

static char *get_netvm(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)p;
    const char *n = vm_name_of(q, vm->netvm_qid);
    bool dflt = qvm_get_bool(vm, "uses_default_netvm", false);
    return xasprintf("%s%s", n ? n : "none", dflt ? " (default)" : "");
}

static char *get_updateable(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xstrdup(qvm_class_is_template(vm->cls) || vm->template_qid < 0 ? "True" : "False");
}

static char *get_dir(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)p;
    char dir[PATH_MAX];
    if (qubes_vm_dir(q, vm, dir, sizeof dir, NULL) < 0)
        return xstrdup("");
    return xstrdup(dir);
}

/* An image path as a user wants it: absolute, in the VM's directory.
 * A template-based VM's root is its template's. */
static char *get_img(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    const struct qvm *owner = vm;
    if (strcmp(p->attr, "root_img") == 0 && vm->template_qid >= 0) {
        const struct qvm *tpl = qvm_collection_by_qid(q->coll, vm->template_qid);
        if (tpl)
            owner = tpl;
    }
    const char *img = qvm_get_attr(owner, p->attr);
    if (!img)
        return xstrdup("");
    if (qvm_host(owner))    /* a volume there: HOST:POOL/VOLUME */
        return xasprintf("%s:%s/%s.%s", qvm_host(owner), QHOST_POOL, owner->name, img);
    char dir[PATH_MAX];
    if (qubes_vm_dir(q, owner, dir, sizeof dir, NULL) < 0)
        return xstrdup(img);
    return xasprintf("%s/%s", dir, img);
}

static char *get_host(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    return xstrdup(qvm_host(vm) ? qvm_host(vm) : QHOST_LOCAL);
}

static char *get_kernel(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)p;
    if (qvm_get_bool(vm, "uses_default_kernel", true)) {
        const char *k = qvm_collection_default_kernel(q->coll);
        return xasprintf("%s (default)", k ? k : "none");
    }
    const char *k = qvm_get_attr(vm, "kernel");
    return xstrdup(k && strcmp(k, "None") != 0 ? k : "none");
}

#define DEFAULT_KERNELOPTS "nopat"

static char *get_kernelopts(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    if (qvm_get_bool(vm, "uses_default_kernelopts", true))
        return xasprintf("%s (default)", DEFAULT_KERNELOPTS);
    return xstrdup(qvm_get_attr(vm, "kernelopts"));
}

static char *get_mac(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)q, (void)p;
    const char *m = qvm_get_attr(vm, "mac");
    return xstrdup(m && strcmp(m, "None") != 0 ? m : "auto");
}

/* The original's: without the GUI agent there is no seamless mode, whatever
 * the attribute says (it is kept, and counts again once the agent is). */
static char *get_seamless(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    if (!qvm_get_bool(vm, "guiagent_installed", false))
        return xstrdup("False");
    return get_attr(q, vm, p);
}

/* ---- setters ---- */

static int set_checked_attr(struct qvm *vm, const char *attr, const char *value,
                            struct qerr *err)
{
    return qvm_set_attr(vm, attr, value, err);
}

/* The original's spellings (it evaluated the capitalised word, and took
 * on and off for debug): true, false, 1, 0, on, off, in any case. */
static int parse_user_bool(const char *v, bool *out)
{
    static const char *const yes[] = { "true", "on", "1" };
    static const char *const no[] = { "false", "off", "0" };
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int set_bool(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                    struct qerr *err)
{
    (void)q;
    bool b;
    if (parse_user_bool(value, &b) < 0)
        return qerr_set(err, "%s: '%s' is not a boolean (true, false, 1, 0, on or off, in any "
                        "case)", p->name, value);
    return set_checked_attr(vm, p->attr, b ? "True" : "False", err);
}

static int set_long(struct qvm *vm, const char *attr, long n, struct qerr *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", n);
    return set_checked_attr(vm, attr, buf, err);
}

/* An integer, and positive (memory, maxmem, vcpus). */
static int parse_positive(const struct pref *p, const char *value, long *n, struct qerr *err)
{
    if (qparse_int(value, LONG_MIN, LONG_MAX, n) < 0)
        return qerr_set(err, "%s: '%s' is not a number", p->name, value);
    if (*n <= 0)
        return qerr_set(err, "%s: must be positive, not %ld", p->name, *n);
    return 0;
}

/* memory and maxmem, in MiB: positive, and not more than the host has.
 * Neither is held against the other, as in the original: a VM boots with
 * `memory` and its domain's maximum is the larger of the two. */
static int set_memory(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                      struct qerr *err)
{
    (void)q;
    long n, host;
    if (parse_positive(p, value, &n, err) < 0)
        return -1;
    if ((host = qubes_host_memory_mib(err)) < 0)
        return qerr_prefix(err, "%s", p->name);
    if (n > host)
        return qerr_set(err, "%s: %ld MiB is more than this host has (%ld MiB, MemTotal in "
                        "/proc/meminfo)", p->name, n, host);
    return set_long(vm, p->attr, n, err);
}

static int set_vcpus(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                     struct qerr *err)
{
    (void)q;
    long n, host;
    if (parse_positive(p, value, &n, err) < 0)
        return -1;
    if ((host = qubes_host_cpus(err)) < 0)
        return qerr_prefix(err, "vcpus");
    if (n > host)
        return qerr_set(err, "vcpus: %ld is more than this host has (%ld online CPUs)", n, host);
    return set_long(vm, p->attr, n, err);
}

/* Seconds, 0 included. */
static int set_timeout(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                       struct qerr *err)
{
    (void)q;
    long n;
    if (qparse_int(value, LONG_MIN, LONG_MAX, &n) < 0)
        return qerr_set(err, "%s: '%s' is not a number of seconds", p->name, value);
    if (n < 0)
        return qerr_set(err, "%s: must not be negative, not %ld", p->name, n);
    if (n > INT_MAX)
        return qerr_set(err, "%s: %ld seconds is more than %d", p->name, n, INT_MAX);
    return set_long(vm, p->attr, n, err);
}

static int set_label(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                     struct qerr *err)
{
    (void)q, (void)p;
    if (!qlabel_by_name(value))
        return qerr_set(err, "label: unknown label '%s' (red, orange, yellow, green, gray, "
                        "blue, purple, black)", value);
    return set_checked_attr(vm, "label", value, err);
}

static int require_halted(struct qubes *q, const struct qvm *vm, const char *what,
                          struct qerr *err)
{
    char why[PATH_MAX + 64];
    int r = qubes_vm_running(q, vm, why, sizeof why, err);
    if (r > 0)
        return qerr_set(err, "Cannot change %s of a running VM ('%s' %s)", what, vm->name, why);
    return r;
}

/* The qid of the NetVM or ProxyVM `value` names for `vm`'s property `what`. */
static int netvm_named(struct qubes *q, const struct qvm *vm, const char *value, const char *what,
                       const char *self, struct qerr *err)
{
    struct qvm *net = qubes_find_vm(q, value, err);
    if (!net)
        return qerr_prefix(err, "%s", what);
    if (!qvm_class_is_netvm(net->cls))
        return qerr_set(err, "%s: '%s' is a %s, not a NetVM or ProxyVM", what, net->name,
                        qvm_class_label(net->cls));
    if (net == vm)
        return qerr_set(err, "%s: '%s' cannot be %s", what, vm->name, self);
    return net->qid;
}

static int set_netvm(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                     struct qerr *err)
{
    (void)p;
    char num[16];
    if (vm->cls == QVM_NET)
        return qerr_set(err, "netvm: a NetVM ('%s') has no netvm", vm->name);
    if (strcasecmp(value, "none") == 0) {
        if (set_checked_attr(vm, "netvm_qid", "none", err) < 0)
            return -1;
        return set_checked_attr(vm, "uses_default_netvm", "False", err);
    }
    int qid;
    /* The word is lower case: "Default" may be a VM's name. */
    bool dflt = strcmp(value, "default") == 0;
    if (dflt) {
        qid = q->coll->globals[vm->cls == QVM_PROXY ? QG_DEFAULT_FW_NETVM : QG_DEFAULT_NETVM];
        if (qid == vm->qid)
            return qerr_set(err, "netvm: the default netvm of a %s is '%s' itself, which cannot "
                            "be its own netvm", qvm_class_label(vm->cls), vm->name);
    } else {
        if ((qid = netvm_named(q, vm, value, "netvm", "its own netvm", err)) < 0)
            return -1;
    }
    if (qid < 0)
        snprintf(num, sizeof num, "none");
    else
        snprintf(num, sizeof num, "%d", qid);
    if (set_checked_attr(vm, "netvm_qid", num, err) < 0)
        return -1;
    return set_checked_attr(vm, "uses_default_netvm", dflt ? "True" : "False", err);
}

/* The netvm of the VM's DispVMs: its own netvm by default, like netvm it
 * takes a NetVM or ProxyVM (never the VM itself), `default` or `none`. */
static char *get_dispvm_netvm(struct qubes *q, const struct qvm *vm, const struct pref *p)
{
    (void)p;
    const char *n = vm_name_of(q, qvm_dispvm_netvm(vm));
    bool dflt = qvm_get_bool(vm, "uses_default_dispvm_netvm", true);
    return xasprintf("%s%s", n ? n : "none", dflt ? " (default)" : "");
}

static int set_dispvm_netvm(struct qubes *q, struct qvm *vm, const struct pref *p,
                            const char *value, struct qerr *err)
{
    (void)p;
    char num[16] = "none";
    bool dflt = strcmp(value, "default") == 0;
    if (!dflt && strcasecmp(value, "none") != 0) {
        int qid = netvm_named(q, vm, value, "dispvm_netvm", "the netvm of its own DispVMs", err);
        if (qid < 0)
            return -1;
        snprintf(num, sizeof num, "%d", qid);
    }
    if (set_checked_attr(vm, "dispvm_netvm_qid", num, err) < 0)
        return -1;
    return set_checked_attr(vm, "uses_default_dispvm_netvm", dflt ? "True" : "False", err);
}

static int set_template(struct qubes *q, struct qvm *vm, const struct pref *p,
                        const char *value, struct qerr *err)
{
    (void)p;
    if (vm->template_qid < 0)
        return qerr_set(err, "template: '%s' is a %s without a template (standalone); it "
                        "cannot be given one", vm->name, qvm_class_label(vm->cls));
    struct qvm *tpl = qubes_find_vm(q, value, err);
    if (!tpl)
        return qerr_prefix(err, "template");
    if (template_check_compat(vm->cls, vm->name, tpl, err) < 0)
        return qerr_prefix(err, "template");
    if (require_halted(q, vm, "the template", err) < 0)
        return -1;
    char num[16];
    snprintf(num, sizeof num, "%d", tpl->qid);
    return set_checked_attr(vm, "template_qid", num, err);
}

static int kernel_installed(struct qubes *q, const char *version, struct qerr *err)
{
    char dir[PATH_MAX];
    struct stat st;
    if (strchr(version, '/') || version[0] == '.' || version[0] == '\0')
        return qerr_set(err, "kernel: '%s' is not a kernel version", version);
    snprintf(dir, sizeof dir, "%s/vm-kernels/%s", q->cfg.base_dir, version);
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return qerr_set(err, "kernel: version '%s' is not installed (no directory %s)", version,
                        dir);
    return 0;
}

static int set_kernel(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                      struct qerr *err)
{
    (void)p;
    if (strcasecmp(value, "default") == 0) {
        const char *k = qvm_collection_default_kernel(q->coll);
        if (set_checked_attr(vm, "kernel", k ? k : "None", err) < 0)
            return -1;
        return set_checked_attr(vm, "uses_default_kernel", "True", err);
    }
    if (strcasecmp(value, "none") != 0 && kernel_installed(q, value, err) < 0)
        return -1;
    if (set_checked_attr(vm, "kernel", strcasecmp(value, "none") == 0 ? "None" : value, err) < 0)
        return -1;
    return set_checked_attr(vm, "uses_default_kernel", "False", err);
}

static int set_kernelopts(struct qubes *q, struct qvm *vm, const struct pref *p,
                          const char *value, struct qerr *err)
{
    (void)q, (void)p;
    /* The default is nopat, what the VM boots with while
     * uses_default_kernelopts is True; the attribute says it too, as the
     * original wrote it back. */
    if (strcmp(value, "default") == 0) {
        if (set_checked_attr(vm, "kernelopts", DEFAULT_KERNELOPTS, err) < 0)
            return -1;
        return set_checked_attr(vm, "uses_default_kernelopts", "True", err);
    }
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if (*c < 0x20)
            return qerr_set(err, "kernelopts: control characters are not allowed");
    if (set_checked_attr(vm, "kernelopts", value, err) < 0)
        return -1;
    return set_checked_attr(vm, "uses_default_kernelopts", "False", err);
}

/* BB:DD.F, as lspci and the original's qvm-pci write them. */
static bool is_bdf(const char *s)
{
    return strlen(s) == 7 && qcheck_pcidev(s) == 0;
}

static int set_pcidevs(struct qubes *q, struct qvm *vm, const struct pref *p,
                       const char *value, struct qerr *err)
{
    struct pylist l = { 0 };
    const char *v = value;
    while (isspace((unsigned char)*v))
        v++;
    if (*v == '[') {
        if (pylist_parse(v, &l, err) < 0)
            return qerr_prefix(err, "pcidevs: '%s' is not a list", value);
    } else {
        /* "02:00.0 03:00.0": the friendlier spelling. */
        char *copy = strdup(value), *save = NULL;
        if (!copy)
            return qerr_errno(err, ENOMEM, "pcidevs");
        for (char *t = strtok_r(copy, " ,", &save); t; t = strtok_r(NULL, " ,", &save))
            if (pylist_append(&l, t) < 0) {
                free(copy);
                pylist_free(&l);
                return qerr_errno(err, ENOMEM, "pcidevs");
            }
        free(copy);
    }
    for (size_t i = 0; i < l.n; i++) {
        if (!is_bdf(l.items[i])) {
            qerr_set(err, "pcidevs: '%s' is not a PCI address (BB:DD.F)", l.items[i]);
            pylist_free(&l);
            return -1;
        }
    }
    if (require_halted(q, vm, "the PCI devices", err) < 0) {
        pylist_free(&l);
        return -1;
    }
    char *text = pylist_format(&l);
    pylist_free(&l);
    if (!text)
        return qerr_errno(err, ENOMEM, "pcidevs");
    int rc = set_checked_attr(vm, p->attr, text, err);
    free(text);
    return rc;
}

static int set_mac(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                   struct qerr *err)
{
    (void)q, (void)p;
    if (strcmp(value, "auto") == 0)
        return set_checked_attr(vm, "mac", "None", err);
    if (qcheck_mac(value) < 0)
        return qerr_set(err, "mac: '%s' is not a MAC address (xx:xx:xx:xx:xx:xx) or auto",
                        value);
    return set_checked_attr(vm, "mac", value, err);
}

static int set_default_user(struct qubes *q, struct qvm *vm, const struct pref *p,
                            const char *value, struct qerr *err)
{
    (void)q, (void)p;
    size_t n = strlen(value);
    bool ok = n > 0 && n <= 32 && (islower((unsigned char)value[0]) || value[0] == '_');
    for (size_t i = 1; ok && i < n; i++)
        ok = islower((unsigned char)value[i]) || isdigit((unsigned char)value[i]) ||
             value[i] == '_' || value[i] == '-';
    if (!ok)
        return qerr_set(err, "default_user: '%s' is not a user name", value);
    return set_checked_attr(vm, "default_user", value, err);
}

static int set_timezone(struct qubes *q, struct qvm *vm, const struct pref *p,
                        const char *value, struct qerr *err)
{
    (void)q, (void)p;
    long n;
    if (strcasecmp(value, "localtime") == 0)
        return set_checked_attr(vm, "timezone", "localtime", err);
    if (qparse_int(value, INT_MIN, INT_MAX, &n) < 0)
        return qerr_set(err, "timezone: '%s' is neither localtime nor an offset in seconds",
                        value);
    return set_long(vm, "timezone", n, err);
}

/* TYPE:BACKENDVM:PATH, TYPE hd or cdrom, PATH absolute, or none; with the
 * original's conversions: hd:/x is hd:dom0:/x, a bare /x cdrom:dom0:/x. */
static int set_drive(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                     struct qerr *err)
{
    (void)p;
    if (!*value || strcasecmp(value, "none") == 0)
        return set_checked_attr(vm, "drive", "None", err);
    const char *type = "cdrom", *rest = value, *path = value;
    if (strncmp(value, "hd:", 3) == 0)
        type = "hd", rest = value + 3;
    else if (strncmp(value, "cdrom:", 6) == 0)
        rest = value + 6;
    char backend[QUBES_NAME_MAX + 1] = "dom0";
    if (*rest == '/') {
        path = rest;
    } else {
        const char *colon = strchr(rest, ':');
        size_t blen = colon ? (size_t)(colon - rest) : 0;
        if (!colon)
            return qerr_set(err, "drive: '%s': the image's path must be absolute (hd:/x, "
                            "cdrom:VM:/x, /x)", value);
        if (blen == 0 || blen > QUBES_NAME_MAX)
            return qerr_set(err, "drive: '%s' is not hd:VM:/PATH or cdrom:VM:/PATH", value);
        memcpy(backend, rest, blen);
        backend[blen] = '\0';
        path = colon + 1;
        if (!qvm_collection_by_name(q->coll, backend))
            return qerr_set(err, "drive: no VM named '%s' to hold the image", backend);
    }
    if (*path != '/')
        return qerr_set(err, "drive: '%s': the image's path must be absolute (hd:/x, "
                        "cdrom:VM:/x, /x)", value);
    char *text = xasprintf("%s:%s:%s", type, backend, path);
    if (!text)
        return qerr_errno(err, ENOMEM, "drive");
    int rc = set_checked_attr(vm, "drive", text, err);
    free(text);
    return rc;
}

static int set_seamless(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                        struct qerr *err)
{
    bool b;
    if (parse_user_bool(value, &b) == 0 && b && !qvm_get_bool(vm, "guiagent_installed", false))
        return qerr_set(err, "seamless_gui_mode: needs the GUI agent: set guiagent_installed "
                        "of '%s' first", vm->name);
    return set_bool(q, vm, p, value, err);
}

/* Where a VM's images are is chosen when it is made (qvm-create --host). */
static int set_host(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                    struct qerr *err)
{
    (void)q, (void)p, (void)value;
    return qerr_set(err, "host: '%s' lives where its images are; the host is chosen by "
                    "qvm-create --host, and moving a VM between hosts is not supported yet",
                    vm->name);
}

/* A rename is a transaction of its own (qubes_vm_rename): never set here. */
static int set_name(struct qubes *q, struct qvm *vm, const struct pref *p, const char *value,
                    struct qerr *err)
{
    (void)q, (void)vm, (void)p, (void)value;
    return qerr_set(err, "name: a rename saves the database itself (qubes_vm_rename)");
}

static const struct pref vm_prefs[] = {
    { "name", NULL, C_NOTDISP, get_name, set_name },
    { "label", "label", C_ALL, get_label, set_label },
    { "type", NULL, C_ALL, get_type, NULL },
    { "template", NULL, C_BIT(QVM_APP) | C_BIT(QVM_HVM) | C_BIT(QVM_NET) | C_BIT(QVM_PROXY) |
                            C_BIT(QVM_DISP), get_template, set_template },
    { "netvm", NULL, C_ALL, get_netvm, set_netvm },
    { "dispvm_netvm", NULL, C_NOTDISP, get_dispvm_netvm, set_dispvm_netvm },
    { "updateable", NULL, C_ALL, get_updateable, NULL },
    { "autostart", "autostart", C_NOTDISP, get_attr, set_bool },
    { "installed_by_rpm", "installed_by_rpm", C_NOTDISP, get_attr, NULL },
    { "include_in_backups", "include_in_backups", C_NOTDISP, get_attr, set_bool },
    { "internal", "internal", C_NOTDISP, get_attr, set_bool },
    { "dir", NULL, C_ALL, get_dir, NULL },
    { "host", NULL, C_NOTDISP, get_host, set_host },
    { "config", "conf_file", C_NOTDISP, get_attr, NULL },
    { "pcidevs", "pcidevs", C_NOTDISP, get_attr, set_pcidevs },
    { "root_img", "root_img", C_NOTDISP, get_img, NULL },
    { "private_img", "private_img", C_NOTDISP, get_img, NULL },
    { "volatile_img", "volatile_img", C_NOTDISP, get_img, NULL },
    { "vcpus", "vcpus", C_NOTDISP, get_attr, set_vcpus },
    { "memory", "memory", C_NOTDISP, get_attr, set_memory },
    { "maxmem", "maxmem", C_NOTDISP, get_attr, set_memory },
    { "mac", "mac", C_NOTDISP, get_mac, set_mac },
    { "kernel", "kernel", C_PV & ~C_BIT(QVM_DISP), get_kernel, set_kernel },
    { "kernelopts", "kernelopts", C_PV & ~C_BIT(QVM_DISP), get_kernelopts, set_kernelopts },
    { "debug", "debug", C_NOTDISP, get_attr, set_bool },
    { "default_user", "default_user", C_NOTDISP, get_attr, set_default_user },
    { "qrexec_timeout", "qrexec_timeout", C_NOTDISP, get_attr, set_timeout },
    { "drive", "drive", C_HVMS, get_attr, set_drive },
    { "timezone", "timezone", C_HVMS, get_attr, set_timezone },
    { "qrexec_installed", "qrexec_installed", C_HVMS, get_attr, set_bool },
    { "guiagent_installed", "guiagent_installed", C_HVMS, get_attr, set_bool },
    { "seamless_gui_mode", "seamless_gui_mode", C_HVMS, get_seamless, set_seamless },
    { "services", "services", C_NOTDISP, get_attr, NULL },
    { "qid", NULL, C_ALL, get_qid, NULL },
    { "netid", "netid", C_BIT(QVM_NET) | C_BIT(QVM_PROXY), get_attr, NULL },
    { "dispid", "dispid", C_BIT(QVM_DISP), get_attr, NULL },
    { "uuid", "uuid", C_NOTDISP, get_attr, NULL },
};

static const struct pref *find_pref(const struct qvm *vm, const char *name, struct qerr *err)
{
    for (size_t i = 0; i < sizeof vm_prefs / sizeof *vm_prefs; i++) {
        if (strcmp(vm_prefs[i].name, name) == 0) {
            if (!(vm_prefs[i].classes & C_BIT(vm->cls))) {
                qerr_set(err, "property '%s' does not apply to '%s' (a %s)", name, vm->name,
                         qvm_class_label(vm->cls));
                return NULL;
            }
            return &vm_prefs[i];
        }
    }
    qerr_set(err, "no property '%s' (qvm-prefs -l %s lists them)", name, vm->name);
    return NULL;
}

int qubes_prefs_list(struct qubes *q, const struct qvm *vm, FILE *out, struct qerr *err)
{
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 has no VM properties");
    for (size_t i = 0; i < sizeof vm_prefs / sizeof *vm_prefs; i++) {
        const struct pref *p = &vm_prefs[i];
        if (!(p->classes & C_BIT(vm->cls)))
            continue;
        char *v = p->get(q, vm, p);
        if (!v)
            return qerr_errno(err, ENOMEM, "listing '%s'", vm->name);
        fprintf(out, "%-19s: %s\n", p->name, v);
        free(v);
    }
    return 0;
}

char *qubes_prefs_get(struct qubes *q, const struct qvm *vm, const char *prop, struct qerr *err)
{
    if (vm->cls == QVM_ADMIN) {
        qerr_set(err, "dom0 has no VM properties");
        return NULL;
    }
    const struct pref *p = find_pref(vm, prop, err);
    if (!p)
        return NULL;
    char *v = p->get(q, vm, p);
    if (!v)
        qerr_errno(err, ENOMEM, "reading %s", prop);
    return v;
}

int qubes_prefs_set(struct qubes *q, struct qvm *vm, const char *prop, const char *value,
                    struct qerr *err)
{
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0's properties cannot be changed");
    const struct pref *p = find_pref(vm, prop, err);
    if (!p)
        return -1;
    if (!p->set)
        return qerr_set(err, "property '%s' is read-only", prop);
    return p->set(q, vm, p, value, err);
}

int qubes_prefs_set_and_save(struct qubes *q, struct qvm *vm, const char *prop,
                             const char *value, struct qerr *err)
{
    const struct pref *p = vm->cls == QVM_ADMIN ? NULL : find_pref(vm, prop, err);
    if (vm->cls == QVM_ADMIN)
        qerr_set(err, "dom0's properties cannot be changed");
    if (p && p->set == set_name) {
        if (qubes_vm_rename(q, vm, value, err) == 0)
            return 0;
        qubes_unlock(q);
        return -1;
    }
    return qubes_commit(q, p ? qubes_prefs_set(q, vm, prop, value, err) : -1, err);
}

/* ---- global properties (qubes-prefs) ---- */

static const struct {
    const char *name;
    int global;                 /* enum qglobal; -1 default-kernel, -2 dispvm-preload,
                                   -3 dispvm-memory */
} globals[] = {
    { "default-template", QG_DEFAULT_TEMPLATE },
    { "default-netvm", QG_DEFAULT_NETVM },
    { "default-fw-netvm", QG_DEFAULT_FW_NETVM },
    { "updatevm", QG_UPDATEVM },
    { "clockvm", QG_CLOCKVM },
    { "default-kernel", -1 },
    { "dispvm-preload", -2 },
    { "dispvm-memory", -3 },
};

static int find_global(const char *name, struct qerr *err)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm)
        n = sizeof norm - 1;
    for (size_t i = 0; i < n; i++)
        norm[i] = name[i] == '_' ? '-' : name[i];
    norm[n] = '\0';
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (strcmp(globals[i].name, norm) == 0)
            return (int)i;
    return qerr_set(err, "no global property '%s' (qubes-prefs -l lists them)", name);
}

static char *global_value(struct qubes *q, size_t i)
{
    if (globals[i].global == -3) {
        const char *v = qattrs_get(&q->coll->root_attrs, "dispvm_memory");
        return xstrdup(v ? v : "auto");
    }
    if (globals[i].global == -2) {
        const char *v = qattrs_get(&q->coll->root_attrs, "dispvm_preload");
        return xstrdup(v ? v : "0");
    }
    if (globals[i].global < 0) {
        const char *k = qvm_collection_default_kernel(q->coll);
        return xstrdup(k ? k : "none");
    }
    const char *n = vm_name_of(q, q->coll->globals[globals[i].global]);
    return xstrdup(n ? n : "none");
}

int qubes_global_list(struct qubes *q, FILE *out, struct qerr *err)
{
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++) {
        char *v = global_value(q, i);
        if (!v)
            return qerr_errno(err, ENOMEM, "listing");
        fprintf(out, "%-17s: %s\n", globals[i].name, v);
        free(v);
    }
    return 0;
}

char *qubes_global_get(struct qubes *q, const char *prop, struct qerr *err)
{
    int i = find_global(prop, err);
    if (i < 0)
        return NULL;
    char *v = global_value(q, (size_t)i);
    if (!v)
        qerr_errno(err, ENOMEM, "reading %s", prop);
    return v;
}

static int follow_default_netvm(struct qubes *q, int g, struct qerr *err);
static int check_global_class(int g, const char *name, const struct qvm *vm, struct qerr *err);

int qubes_global_set(struct qubes *q, const char *prop, const char *value, struct qerr *err)
{
    int i = find_global(prop, err);
    if (i < 0)
        return -1;
    bool none = strcasecmp(value, "none") == 0;
    int g = globals[i].global;
    if (g == -3) {
        /* How new DispVM savefiles keep the guest's memory: shared with
         * every DispVM (copy-on-write), a full image, or shared where the
         * backend can (auto). */
        if (strcmp(value, "auto") != 0 && strcmp(value, "shared") != 0 &&
            strcmp(value, "full") != 0)
            return qerr_set(err, "dispvm-memory: '%s' is not auto, shared or full", value);
        if (qattrs_set(&q->coll->root_attrs, "dispvm_memory", value) < 0)
            return qerr_errno(err, ENOMEM, "dispvm-memory");
        return 0;
    }
    if (g == -2) {
        long n;
        if (qparse_int(value, 0, QUBES_DISPVM_PRELOAD_MAX, &n) < 0)
            return qerr_set(err, "dispvm-preload: '%s' is not a number in 0..%d", value,
                            QUBES_DISPVM_PRELOAD_MAX);
        char num[8];
        snprintf(num, sizeof num, "%ld", n);
        if (qattrs_set(&q->coll->root_attrs, "dispvm_preload", num) < 0)
            return qerr_errno(err, ENOMEM, "dispvm-preload");
        return 0;
    }
    if (g < 0) {
        if (!none && kernel_installed(q, value, err) < 0)
            return qerr_prefix(err, "default-kernel");
        return qvm_collection_set_default_kernel(q->coll, none ? NULL : value, err);
    }
    struct qvm *vm = NULL;
    if (!none && !(vm = qubes_find_vm(q, value, err)))
        return qerr_prefix(err, "%s", globals[i].name);
    if (vm && check_global_class(g, globals[i].name, vm, err) < 0)
        return -1;
    if (qvm_collection_set_global(q->coll, (enum qglobal)g, vm ? vm->qid : -1, err) < 0)
        return -1;
    return follow_default_netvm(q, g, err);
}

/* VMs that use the default netvm follow it when it changes. */
static int follow_default_netvm(struct qubes *q, int g, struct qerr *err)
{
    if (g != QG_DEFAULT_NETVM && g != QG_DEFAULT_FW_NETVM)
        return 0;
    char num[16];
    int qid = q->coll->globals[g];
    if (qid < 0)
        snprintf(num, sizeof num, "none");
    else
        snprintf(num, sizeof num, "%d", qid);
    for (struct qvm *vm = q->coll->by_qid; vm; vm = vm->hh_qid.next) {
        bool proxy = vm->cls == QVM_PROXY;
        if (vm->cls == QVM_ADMIN || vm->cls == QVM_NET || vm->qid == qid ||
            proxy != (g == QG_DEFAULT_FW_NETVM) || !qvm_get_bool(vm, "uses_default_netvm", false))
            continue;
        if (qvm_set_attr(vm, "netvm_qid", num, err) < 0)
            return -1;
    }
    return 0;
}

static int check_global_class(int g, const char *name, const struct qvm *vm, struct qerr *err)
{
    if (g == QG_DEFAULT_TEMPLATE && !qvm_class_is_template(vm->cls))
        return qerr_set(err, "default-template: '%s' is a %s, not a template", vm->name,
                        qvm_class_label(vm->cls));
    if ((g == QG_DEFAULT_NETVM || g == QG_DEFAULT_FW_NETVM) && !qvm_class_is_netvm(vm->cls))
        return qerr_set(err, "%s: '%s' is a %s, not a NetVM or ProxyVM", name,
                        vm->name, qvm_class_label(vm->cls));
    if ((g == QG_UPDATEVM || g == QG_CLOCKVM) && vm->cls == QVM_ADMIN)
        return qerr_set(err, "%s: dom0 cannot be the %s", name, name);
    return 0;
}

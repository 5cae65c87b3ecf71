#include "qubes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../dispvm/dvmdata.h"
#include "../storage/storage.h"
#include "../templates/templates.h"
#include "runtime.h"
#include "util.h"

int qubes_open(struct qubes *q, bool offline, struct qerr *err)
{
    qensure_std_fds();
    memset(q, 0, sizeof *q);
    q->db.fd = -1;
    if (qubes_config_init(&q->cfg, err) < 0)
        return -1;
    if (offline)
        q->cfg.offline = true;
    if (qdb_init(&q->db, q->cfg.db_path, err) < 0)
        return -1;
    vmm_init(&q->vmm, &q->cfg);
    return 0;
}

void qubes_close(struct qubes *q)
{
    if (q->db.path)
        qdb_close(&q->db);
    vmm_close(&q->vmm);
    qvm_collection_free(q->coll);
    q->coll = NULL;
}

int qubes_load_for_reading(struct qubes *q, struct qerr *err)
{
    qvm_collection_free(q->coll);   /* a reload replaces what was loaded */
    q->coll = NULL;
    if (qdb_lock_for_reading(&q->db, err) < 0)
        return -1;
    int rc = qdb_load(&q->db, &q->coll, err);
    qdb_unlock(&q->db, NULL);
    return rc;
}

int qubes_load_for_writing(struct qubes *q, bool create, struct qerr *err)
{
    qvm_collection_free(q->coll);
    q->coll = NULL;
    if (qdb_lock_for_writing(&q->db, create ? QDB_CREATE : 0, err) < 0)
        return -1;
    if (qdb_load(&q->db, &q->coll, err) < 0) {
        qdb_unlock(&q->db, NULL);
        return -1;
    }
    return 0;
}

int qubes_save_and_unlock(struct qubes *q, struct qerr *err)
{
    int rc = qvm_collection_validate(q->coll, err);
    if (rc == 0)
        rc = qdb_save(&q->db, q->coll, err);
    qdb_unlock(&q->db, NULL);
    return rc;
}

void qubes_unlock(struct qubes *q)
{
    if (q->db.lock != QDB_UNLOCKED)
        qdb_unlock(&q->db, NULL);
}

int qubes_commit(struct qubes *q, int rc, struct qerr *err)
{
    if (rc == 0)
        return qubes_save_and_unlock(q, err);
    qubes_unlock(q);
    return rc < 0 ? rc : 0;
}

struct qvm *qubes_find_vm(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm = qvm_collection_by_name(q->coll, name);
    if (!vm)
        qerr_set(err, "A VM with the name '%s' does not exist in the system", name);
    return vm;
}

int qubes_vm_state(struct qubes *q, const struct qvm *vm, enum qvm_power *out,
                   struct qerr *err)
{
    return qvm_power_get(&q->vmm, &q->cfg, vm, NULL, out, err);
}

int qubes_vm_power(struct qubes *q, const struct qvm *vm, struct vmm_domain *info,
                   enum qvm_power *out, struct qerr *err)
{
    return qvm_power_get(&q->vmm, &q->cfg, vm, info, out, err);
}

enum qvm_power qubes_refine_power(const struct qubes *q, const struct qvm *vm,
                                  const struct vmm_domain *d)
{
    return qvm_power_refine(&q->cfg, vm, d);
}

int qubes_vm_dir(const struct qubes *q, const struct qvm *vm, char *out, size_t len,
                 struct qerr *err)
{
    return qubes_config_vm_dir(&q->cfg, qvm_class_subdir(vm->cls), vm->name, out, len, err);
}

/* ---- creation ---- */

static int pick_class(const struct qvm_create_opts *o, enum qvm_class *cls, struct qerr *err)
{
    int kinds = o->net + o->proxy + o->hvm_template + (o->hvm && !o->hvm_template);
    if (kinds > 1)
        return qerr_set(err, "choose one of --net, --proxy, --hvm and --hvm-template");
    if (o->net)
        *cls = QVM_NET;
    else if (o->proxy)
        *cls = QVM_PROXY;
    else if (o->hvm_template)
        *cls = QVM_TEMPLATE_HVM;
    else if (o->hvm)
        *cls = QVM_HVM;
    else
        *cls = QVM_APP;
    return 0;
}

/* The template a new VM is based on (its files come from it when
 * standalone), or NULL for a VM without one. */
static int pick_template(struct qubes *q, const struct qvm_create_opts *o, enum qvm_class cls,
                         struct qvm **tpl, struct qerr *err)
{
    *tpl = NULL;
    if (cls == QVM_TEMPLATE_HVM) {
        if (o->template)
            return qerr_set(err, "a TemplateHVM cannot be based on a template (drop -t)");
        return 0;
    }
    if (o->template) {
        if (!(*tpl = qubes_find_vm(q, o->template, err)))
            return -1;
    } else if (cls == QVM_HVM || o->standalone) {
        return 0;       /* -H or -s alone: a standalone VM with an empty disk */
    } else {
        int qid = q->coll->globals[QG_DEFAULT_TEMPLATE];
        if (qid < 0)
            return qerr_set(err, "no default template: give one with -t, or -s for a "
                            "standalone VM with an empty root image");
        *tpl = qvm_collection_by_qid(q->coll, qid);
        if ((*tpl)->cls == QVM_TEMPLATE_HVM)
            return qerr_set(err, "the default template '%s' is a TemplateHVM: use -H to "
                            "create an HVM based on it, or give a TemplateVM with -t",
                            (*tpl)->name);
    }
    return template_check_compat(cls, o->name, *tpl, err);
}

static long host_maxmem(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    long mib = pages > 0 && psize > 0 ? (long)((double)pages * psize / 2 / (1 << 20)) : 4000;
    return mib > 4000 ? 4000 : mib;
}

void qubes_new_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(rand() ^ getpid() ^ (long)i);
    }
    b[6] = (b[6] & 0x0f) | 0x40;    /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80;    /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

static int fill_record(struct qubes *q, struct qvm *vm, const struct qvm_create_opts *o,
                       const struct qvm *tpl, const char *dir, struct qerr *err)
{
    char num[32], conf[64], uuid[37];
    enum qvm_class cls = vm->cls;
    bool hvm = qvm_class_is_hvm(cls);
    bool template_based = tpl && !o->standalone;
    int netvm = -1;
    if (cls == QVM_PROXY || cls == QVM_NET)
        netvm = cls == QVM_PROXY ? q->coll->globals[QG_DEFAULT_FW_NETVM] : -1;
    else
        netvm = q->coll->globals[QG_DEFAULT_NETVM];
    long memory = o->memory ? o->memory
                            : hvm ? 512 : qvm_class_is_netvm(cls) ? 200 : 400;

    snprintf(conf, sizeof conf, "%s.conf", o->name);
    qubes_new_uuid(uuid);
#define SET(k, v)                                                                               \
    do {                                                                                        \
        if (qvm_set_attr(vm, k, v, err) < 0)                                                    \
            return -1;                                                                          \
    } while (0)
#define SETN(k, n)                                                                              \
    do {                                                                                        \
        snprintf(num, sizeof num, "%ld", (long)(n));                                            \
        SET(k, num);                                                                            \
    } while (0)
    SETN("qid", vm->qid);
    SET("name", o->name);
    SET("dir_path", dir);
    SET("conf_file", conf);
    SET("root_img", "root.img");
    SET("private_img", "private.img");
    SET("volatile_img", "volatile.img");
    if (template_based)
        SETN("template_qid", tpl->qid);
    else
        SET("template_qid", "none");
    if (netvm >= 0)
        SETN("netvm_qid", netvm);
    else
        SET("netvm_qid", "none");
    SET("uses_default_netvm", cls == QVM_NET ? "False" : "True");
    if (qvm_class_is_netvm(cls))
        SETN("netid", vm->netid);
    SET("label", o->label);
    SETN("memory", memory);
    SETN("maxmem", memory > host_maxmem() ? memory : host_maxmem());
    SETN("vcpus", o->vcpus ? o->vcpus : 2);
    SET("pcidevs", "[]");
    SET("internal", o->internal ? "True" : "False");
    SET("installed_by_rpm", "False");
    SET("include_in_backups", "True");
    SET("debug", "False");
    SET("autostart", "False");
    SET("services", "{}");
    SET("default_user", "user");
    SET("qrexec_timeout", "60");
    SET("mac", "None");
    if (hvm) {
        SET("drive", "None");
        SET("timezone", "localtime");
        SET("qrexec_installed", "False");
        SET("guiagent_installed", "False");
        SET("seamless_gui_mode", "False");
    } else {
        const char *k = qvm_collection_default_kernel(q->coll);
        SET("kernel", k ? k : "None");
        SET("kernelopts", "");
        SET("uses_default_kernel", "True");
        SET("uses_default_kernelopts", "True");
    }
    SET("uuid", uuid);
#undef SET
#undef SETN
    return 0;
}

static int make_disks(const struct qvm_create_opts *o, enum qvm_class cls,
                      const struct qvm *tpl, const char *tpl_dir, const char *dir,
                      struct qerr *err)
{
    char root[PATH_MAX + 16], priv[PATH_MAX + 16], src[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/root.img", dir);
    snprintf(priv, sizeof priv, "%s/private.img", dir);
    bool own_root = qvm_class_is_template(cls) || o->standalone || (cls == QVM_HVM && !tpl);

    if (o->root_copy_from || o->root_move_from) {
        if (!own_root)
            return qerr_set(err, "-r/-R give a root image to a template or standalone VM only; "
                            "'%s' uses its template's", o->name);
        if (o->root_copy_from ? storage_copy_sparse(o->root_copy_from, root, err)
                              : storage_move(o->root_move_from, root, err))
            return -1;
    } else if (own_root && tpl) {
        snprintf(src, sizeof src, "%s/root.img", tpl_dir);
        if (storage_copy_sparse(src, root, err) < 0)
            return -1;
    } else if (own_root) {
        if (storage_create_sparse(root, qvm_class_is_hvm(cls) ? STORAGE_HVM_ROOT_SIZE
                                                            : STORAGE_PV_ROOT_SIZE, err) < 0)
            return -1;
    }

    /* private.img: the template's, copied, when the VM is based on one. */
    if (tpl) {
        snprintf(src, sizeof src, "%s/private.img", tpl_dir);
        if (access(src, F_OK) == 0)
            return storage_copy_sparse(src, priv, err);
    }
    return storage_create_sparse(priv, STORAGE_PRIVATE_SIZE, err);
}

/* A kernel for direct boot: DIR/vmlinuz (and DIR/initramfs) into VMDIR/kernel/. */
static int copy_kernel(const char *from, const char *vmdir, struct qerr *err)
{
    char kdir[PATH_MAX + 16], src[PATH_MAX + 16], dst[PATH_MAX + 32];
    snprintf(kdir, sizeof kdir, "%s/kernel", vmdir);
    if (qmkdir(kdir, err) < 0)
        return -1;
    static const char *const files[] = { "vmlinuz", "initramfs" };
    for (size_t i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", from, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", kdir, files[i]);
        if (i == 1 && access(src, F_OK) < 0)
            break;      /* an initramfs is optional */
        if (storage_copy_sparse(src, dst, err) < 0)
            return qerr_prefix(err, "--kernel");
    }
    return 0;
}

static void apply_first_defaults(struct qubes *q, const struct qvm *vm)
{
    int *g = q->coll->globals;
    if (vm->cls == QVM_NET) {
        if (g[QG_DEFAULT_FW_NETVM] < 0)
            qvm_collection_set_global(q->coll, QG_DEFAULT_FW_NETVM, vm->qid, NULL);
        if (g[QG_CLOCKVM] < 0)
            qvm_collection_set_global(q->coll, QG_CLOCKVM, vm->qid, NULL);
    } else if (vm->cls == QVM_PROXY) {
        if (g[QG_DEFAULT_NETVM] < 0)
            qvm_collection_set_global(q->coll, QG_DEFAULT_NETVM, vm->qid, NULL);
        if (g[QG_UPDATEVM] < 0)
            qvm_collection_set_global(q->coll, QG_UPDATEVM, vm->qid, NULL);
    } else if (qvm_class_is_template(vm->cls) && g[QG_DEFAULT_TEMPLATE] < 0) {
        qvm_collection_set_global(q->coll, QG_DEFAULT_TEMPLATE, vm->qid, NULL);
    }
}

int qubes_vm_create(struct qubes *q, const struct qvm_create_opts *o, struct qvm **out,
                    struct qerr *err)
{
    enum qvm_class cls;
    struct qvm *tpl;
    char dir[PATH_MAX], tpl_dir[PATH_MAX] = "";

    /* The name is checked before anything touches the file system. */
    if (qvm_check_new_name(o->name, err) < 0)
        return -1;
    if (!o->label)
        return qerr_set(err, "a label is required (-l red|orange|yellow|green|gray|blue|"
                        "purple|black)");
    if (!qlabel_by_name(o->label))
        return qerr_set(err, "unknown label '%s' (red, orange, yellow, green, gray, blue, "
                        "purple, black)", o->label);
    if (o->root_copy_from && o->root_move_from)
        return qerr_set(err, "give either -r or -R, not both");
    if (qvm_collection_by_name(q->coll, o->name))
        return qerr_set(err, "A VM with the name '%s' already exists in the system", o->name);
    if (pick_class(o, &cls, err) < 0 || pick_template(q, o, cls, &tpl, err) < 0)
        return -1;
    if (tpl && qubes_vm_dir(q, tpl, tpl_dir, sizeof tpl_dir, err) < 0)
        return -1;

    struct qvm *vm = qvm_new(cls);
    if (!vm)
        return qerr_errno(err, ENOMEM, "creating '%s'", o->name);
    int qid = qvm_collection_alloc_qid(q->coll, err);
    if (qid < 0)
        goto fail_free;
    vm->qid = qid;
    if (qvm_class_is_netvm(cls) && (vm->netid = qvm_collection_alloc_netid(q->coll, err)) < 0)
        goto fail_free;
    if (qubes_config_vm_dir(&q->cfg, qvm_class_subdir(cls), o->name, dir, sizeof dir, err) < 0 ||
        fill_record(q, vm, o, tpl, dir, err) < 0)
        goto fail_free;

    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s/%s", q->cfg.base_dir, qvm_class_subdir(cls));
    if (qmkdirs(parent, err) < 0)
        goto fail_free;
    if (qmkdir(dir, err) < 0)
        goto fail_free;
    if (make_disks(o, cls, tpl, tpl_dir, dir, err) < 0 ||
        (o->kernel_dir && copy_kernel(o->kernel_dir, dir, err) < 0))
        goto fail_dir;
    if (qvm_collection_add(q->coll, vm, err) < 0)
        goto fail_dir;
    apply_first_defaults(q, vm);
    if (qubes_save_and_unlock(q, err) < 0) {
        qvm_collection_remove(q->coll, vm);
        goto fail_dir;
    }
    *out = vm;
    return 0;

fail_dir:
    /* -R moved the caller's image in: give it back before removing the rest. */
    if (o->root_move_from) {
        char root[PATH_MAX + 16];
        snprintf(root, sizeof root, "%s/root.img", dir);
        if (access(root, F_OK) == 0)
            storage_move(root, o->root_move_from, NULL);
    }
    storage_remove_tree(dir, NULL);
fail_free:
    qvm_free(vm);
    return -1;
}

/* ---- removal ---- */

static int names_of(struct qvm **vms, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", vms[i]->name);
    return 0;
}

int qubes_vm_remove(struct qubes *q, const char *name, bool just_db, bool *had_savefile,
                    struct qerr *err)
{
    if (had_savefile)
        *had_savefile = false;
    struct qvm *vm = qubes_find_vm(q, name, err);
    if (!vm)
        return -1;
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 cannot be removed");

    size_t n;
    struct qvm **kids = qvm_collection_children(q->coll, vm, &n);
    char names[512];
    if (!kids)
        return qerr_errno(err, ENOMEM, "removing '%s'", name);
    names_of(kids, n, names, sizeof names);
    free(kids);
    if (n > 0)
        return qerr_set(err, "Cannot remove template '%s': VMs based on it exist: %s", name, names);
    size_t users = 0;
    for (struct qvm *o = q->coll->by_qid; o; o = o->hh_qid.next)
        if (o->netvm_qid == vm->qid || o->dispvm_netvm_qid == vm->qid)
            users++;
    if (users > 0) {
        struct qvm *list[QUBES_MAX_QID + 1];
        size_t k = 0;
        for (struct qvm *o = q->coll->by_qid; o; o = o->hh_qid.next)
            if (o->netvm_qid == vm->qid || o->dispvm_netvm_qid == vm->qid)
                list[k++] = o;
        names_of(list, k, names, sizeof names);
        return qerr_set(err, "Cannot remove '%s': it is the netvm of %s (of the VM or its "
                        "DispVMs)", name, names);
    }

    enum qvm_power state;
    if (qubes_vm_state(q, vm, &state, err) < 0)
        return qerr_prefix(err, "cannot tell whether '%s' is running", name);
    if (qvm_power_is_running(state))
        return qerr_set(err, "Cannot remove '%s': the VM is %s; shut it down first", name,
                        qvm_power_name(state));

    char dir[PATH_MAX], aside[PATH_MAX + 64] = "";
    if (!just_db) {
        if (qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0)
            return -1;
        /* Move the files aside first: if saving fails they come back. */
        snprintf(aside, sizeof aside, "%s.removing-%d", dir, (int)getpid());
        if (rename(dir, aside) < 0) {
            if (errno != ENOENT)
                return qerr_errno(err, errno, "cannot remove %s", dir);
            aside[0] = '\0';    /* no files: nothing to delete */
        }
    }
    /* What the halted VM left in its run directory (a DispVM's layers, its
     * agent's socket and lock) means nothing without its domain: it goes
     * now, under the lock, so that it never meets a VM of that name made
     * later. */
    char rundir[PATH_MAX];
    if (!just_db && (qrt_vm_path(&q->cfg, name, NULL, rundir, sizeof rundir, err) < 0 ||
                     (access(rundir, F_OK) == 0 && storage_remove_tree(rundir, err) < 0))) {
        if (aside[0] && rename(aside, dir) < 0)
            qerr_prefix(err, "and could not move %s back to %s", aside, dir);
        return qerr_prefix(err, "cannot remove the run directory of '%s'", name);
    }
    qvm_collection_remove(q->coll, vm);
    if (qubes_save_and_unlock(q, err) < 0) {
        if (aside[0] && rename(aside, dir) < 0)
            qerr_prefix(err, "and could not move %s back to %s", aside, dir);
        qvm_collection_add(q->coll, vm, NULL);
        return -1;
    }
    qvm_free(vm);
    if (just_db)
        return 0;
    if (aside[0] && storage_remove_tree(aside, err) < 0)
        return qerr_prefix(err, "record removed, but its files remain");
    /* A dvm VM's savefile set goes with it (memory files still mapped by
     * running DispVMs stay until qvm-cleanup-dispvms). */
    int had = dvmdata_forget(&q->cfg, name);
    if (had_savefile)
        *had_savefile = had > 0;
    return 0;
}

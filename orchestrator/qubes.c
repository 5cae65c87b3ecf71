#include "qubes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../dispvm/dvmdata.h"
#include "../storage/storage.h"
#include "../templates/templates.h"
#include "hosts.h"
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
    for (size_t i = 0; i < q->nremote; i++)
        vmm_close(&q->remote[i].vmm);
    q->nremote = 0;
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

struct vmm *qubes_host_vmm(struct qubes *q, const char *host, struct qerr *err)
{
    if (!host || !*host || strcmp(host, QHOST_LOCAL) == 0)
        return &q->vmm;
    for (size_t i = 0; i < q->nremote; i++) {
        if (strcmp(q->remote[i].host, host) != 0)
            continue;
        if (q->remote[i].down[0]) {
            qerr_set(err, "%s", q->remote[i].down);
            return NULL;
        }
        return &q->remote[i].vmm;
    }
    if (q->nremote == QUBES_REMOTES_MAX) {
        qerr_set(err, "host '%s': more than %d other hosts in one command", host,
                 QUBES_REMOTES_MAX);
        return NULL;
    }
    struct qubes_remote *r = &q->remote[q->nremote++];
    memset(r, 0, sizeof *r);
    snprintf(r->host, sizeof r->host, "%s", host);
    if (qhosts_vmm(&q->cfg, host, &r->vmm, err) < 0) {
        snprintf(r->down, sizeof r->down, "%s", err->msg);
        return NULL;
    }
    return &r->vmm;
}

struct vmm *qubes_vmm_of(struct qubes *q, const struct qvm *vm, struct qerr *err)
{
    const char *host = qvm_host(vm);
    struct vmm *v = qubes_host_vmm(q, host, err);
    if (!v)
        qerr_prefix(err, "'%s' lives on host '%s'", vm->name, host);
    return v;
}

int qubes_vm_state(struct qubes *q, const struct qvm *vm, enum qvm_power *out,
                   struct qerr *err)
{
    struct vmm *v = qubes_vmm_of(q, vm, err);
    return v ? qvm_power_get(v, &q->cfg, vm, NULL, out, err) : -1;
}

int qubes_vm_power(struct qubes *q, const struct qvm *vm, struct vmm_domain *info,
                   enum qvm_power *out, struct qerr *err)
{
    struct vmm *v = qubes_vmm_of(q, vm, err);
    return v ? qvm_power_get(v, &q->cfg, vm, info, out, err) : -1;
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

int qubes_vm_image(const struct qubes *q, const struct qvm *vm, const char *attr,
                   const char *dflt, char *out, size_t len, struct qerr *err)
{
    char dir[PATH_MAX];
    if (qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0)
        return -1;
    const char *img = qvm_get_attr(vm, attr);
    if (!img || !*img)
        img = dflt;
    if (img[0] == '/' || strstr(img, ".."))
        return qerr_set(err, "%s=\"%s\" of '%s': not a file of its directory", attr, img,
                        vm->name);
    if (snprintf(out, len, "%s/%s", dir, img) >= (int)len)
        return qerr_set(err, "path of %s of '%s' is too long", attr, vm->name);
    return 0;
}

/* Whether another process holds the lock file at `path` (a flock): the
 * file is not created, and a shared lock taken for the test goes at once. */
static bool lock_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

bool qubes_qrexecd_alive(const struct qubes *q, const char *name)
{
    char path[PATH_MAX];
    return qrt_vm_path(&q->cfg, name, QRT_QREXEC_LOCK, path, sizeof path, NULL) == 0 &&
           lock_held(path);
}

int qubes_vm_running(struct qubes *q, const struct qvm *vm, char *why, size_t len,
                     struct qerr *err)
{
    char buf[PATH_MAX + 64], path[PATH_MAX];
    enum qvm_power st;
    if (!why) {
        why = buf;
        len = sizeof buf;
    }
    if (qubes_vm_state(q, vm, &st, err) < 0)
        return qerr_prefix(err, "cannot tell whether '%s' is running", vm->name);
    if (qvm_power_is_running(st)) {
        snprintf(why, len, "is %s", qvm_power_name(st));
        return 1;
    }
    if (qrt_vm_path(&q->cfg, vm->name, QRT_QREXEC_LOCK, path, sizeof path, err) < 0)
        return -1;
    if (lock_held(path)) {
        snprintf(why, len, "has a qrexec-daemon (%s is locked)", path);
        return 1;
    }
    if (vm->cls == QVM_DISP) {
        if (qrt_vm_path(&q->cfg, vm->name, QRT_OWNER, path, sizeof path, err) < 0)
            return -1;
        if (qrt_owner_alive(path)) {
            snprintf(why, len, "has a live owner (%s)", path);
            return 1;
        }
    }
    return 0;
}

long qubes_host_memory_mib(struct qerr *err)
{
    static const char meminfo[] = "/proc/meminfo";
    FILE *f = fopen(meminfo, "re");
    if (!f)
        return qerr_errno(err, errno, "cannot read the host's memory from %s", meminfo);
    char line[256];
    long kib = -1;
    while (kib < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    if (kib <= 0)
        return qerr_set(err, "no MemTotal in %s", meminfo);
    return kib / 1024;
}

long qubes_host_cpus(struct qerr *err)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return qerr_errno(err, errno ? errno : EINVAL, "cannot count the host's online CPUs");
    return n;
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
    /* Networks are this host's: a VM on another host has none. */
    bool remote = o->host && strcmp(o->host, QHOST_LOCAL) != 0;
    if (remote)
        netvm = -1;
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
    SET("uses_default_netvm", cls == QVM_NET || remote ? "False" : "True");
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

/* ---- a VM on another host: its images are volumes there ---- */

struct remote_disks {
    struct vmm vmm;
    const char *vm_name;
    const char *made[8];        /* the kinds uploaded, for undoing */
    size_t n;
    unsigned long long sent;
};

static int upload(struct remote_disks *r, const char *kind, const char *src,
                  unsigned long long size, struct qerr *err)
{
    char vol[QHOST_VOLUME_NAME_MAX];
    struct stat st;
    if (src && stat(src, &st) < 0)
        return qerr_errno(err, errno, "cannot read %s", src);
    if (src)
        size = (unsigned long long)st.st_size;
    unsigned long long sent = 0;
    if (qhost_volume_name(r->vm_name, kind, vol, sizeof vol, err) < 0 ||
        vmm_volume_upload(&r->vmm, QHOST_POOL, vol, src, size, &sent, err) < 0)
        return -1;
    r->made[r->n++] = kind;
    r->sent += sent;
    return 0;
}

/* A copy, made there, of the volume `kind` of the VM `from` (same host). */
static int clone_there(struct remote_disks *r, const char *kind, const char *from,
                       struct qerr *err)
{
    if (qhost_volume_copy(&r->vmm, r->vm_name, from, kind, err) < 0)
        return -1;
    r->made[r->n++] = kind;
    return 0;
}

static void undo_uploads(struct remote_disks *r)
{
    for (size_t i = 0; i < r->n; i++)
        qhost_volume_delete(&r->vmm, r->vm_name, r->made[i], NULL);
    r->n = 0;
}

/* The images make_disks makes, as volumes of the host's pool: the root
 * image of a template or standalone VM (-r's file, or the template's for a
 * standalone copy, or an empty one), the private image (the template's, or
 * an empty one), the kernel of --kernel. Sparse: holes travel as lengths.
 * A template there is copied there: nothing travels. */
static int make_remote_disks(const struct qvm_create_opts *o, enum qvm_class cls,
                             const struct qvm *tpl, const char *tpl_dir,
                             struct remote_disks *r, struct qerr *err)
{
    char src[PATH_MAX + 16];
    bool own_root = qvm_class_is_template(cls) || o->standalone || (cls == QVM_HVM && !tpl);
    if (vmm_pool_ensure(&r->vmm, QHOST_POOL, QHOST_POOL_DIR, err) < 0)
        return -1;
    if (tpl && qvm_host(tpl)) {
        if ((own_root && !o->root_copy_from && clone_there(r, "root.img", tpl->name, err) < 0) ||
            (own_root && o->root_copy_from &&
             upload(r, "root.img", o->root_copy_from, 0, err) < 0) ||
            clone_there(r, "private.img", tpl->name, err) < 0)
            return -1;
        goto kernel;
    }
    const char *root = o->root_copy_from;
    if (!root && tpl) {
        snprintf(src, sizeof src, "%s/root.img", tpl_dir);
        root = src;
    }
    if (own_root && upload(r, "root.img", root,
                           qvm_class_is_hvm(cls) ? STORAGE_HVM_ROOT_SIZE : STORAGE_PV_ROOT_SIZE,
                           err) < 0)
        return -1;
    const char *priv = NULL;
    if (tpl) {
        snprintf(src, sizeof src, "%s/private.img", tpl_dir);
        priv = access(src, F_OK) == 0 ? src : NULL;
    }
    if (upload(r, "private.img", priv, STORAGE_PRIVATE_SIZE, err) < 0)
        return -1;
kernel:
    if (o->kernel_dir) {
        snprintf(src, sizeof src, "%s/vmlinuz", o->kernel_dir);
        if (upload(r, "vmlinuz", src, 0, err) < 0)
            return qerr_prefix(err, "--kernel");
        snprintf(src, sizeof src, "%s/initramfs", o->kernel_dir);
        if (access(src, F_OK) == 0 && upload(r, "initramfs", src, 0, err) < 0)
            return qerr_prefix(err, "--kernel");
    }
    return 0;
}

/* What a VM on another host can be today, and the host it names. */
static int check_remote(struct qubes *q, const struct qvm_create_opts *o, const struct qvm *tpl,
                        struct remote_disks *r, struct qerr *err)
{
    const char *tpl_host = tpl ? qvm_host(tpl) : NULL;
    /* A VM based on a template here boots there over a copy of the
     * template's root kept there (lifecycle.c: the template's replica). */
    if (tpl_host && strcmp(tpl_host, o->host) != 0)
        return qerr_set(err, "--host %s: the template '%s' lives on host '%s': copying a "
                        "VM from a template on another host is not supported yet",
                        o->host, tpl->name, tpl_host);
    if (o->root_move_from)
        return qerr_set(err, "--host %s: -R moves a file into the VM's directory, and a VM on "
                        "another host has no image here: give it with -r", o->host);
    if (q->cfg.offline)
        return qerr_set(err, "--host %s: creating a VM on another host talks to that host, "
                        "which offline mode does not", o->host);
    r->vm_name = o->name;
    return qhosts_vmm(&q->cfg, o->host, &r->vmm, err);
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
    const char *host = o->host && strcmp(o->host, QHOST_LOCAL) != 0 ? o->host : NULL;
    if (tpl && qvm_host(tpl) && !host)
        return qerr_set(err, "the template '%s' lives on host '%s', and its images are there: "
                        "VMs based on it or copied from it are not supported yet", tpl->name,
                        qvm_host(tpl));
    struct remote_disks remote = { 0 };
    if (host && check_remote(q, o, tpl, &remote, err) < 0)
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
        fill_record(q, vm, o, tpl, dir, err) < 0 ||
        (host && qvm_set_attr(vm, "host", host, err) < 0))
        goto fail_free;

    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s/%s", q->cfg.base_dir, qvm_class_subdir(cls));
    if (qmkdirs(parent, err) < 0)
        goto fail_free;
    if (qmkdir(dir, err) < 0)
        goto fail_free;
    if (host ? make_remote_disks(o, cls, tpl, tpl_dir, &remote, err) < 0
             : make_disks(o, cls, tpl, tpl_dir, dir, err) < 0 ||
                   (o->kernel_dir && copy_kernel(o->kernel_dir, dir, err) < 0))
        goto fail_dir;
    if (qvm_collection_add(q->coll, vm, err) < 0)
        goto fail_dir;
    apply_first_defaults(q, vm);
    if (qubes_save_and_unlock(q, err) < 0) {
        qvm_collection_remove(q->coll, vm);
        goto fail_dir;
    }
    vmm_close(&remote.vmm);
    *out = vm;
    return 0;

fail_dir:
    undo_uploads(&remote);
    /* -R moved the caller's image in: give it back before removing the rest. */
    if (o->root_move_from) {
        char root[PATH_MAX + 16];
        snprintf(root, sizeof root, "%s/root.img", dir);
        if (access(root, F_OK) == 0)
            storage_move(root, o->root_move_from, NULL);
    }
    storage_remove_tree(dir, NULL);
fail_free:
    vmm_close(&remote.vmm);
    qvm_free(vm);
    return -1;
}

/* ---- removal ---- */

/* The hosts a template here keeps copies on (DIR/replicas/HOST.stamp,
 * lifecycle.c). */
static size_t replica_hosts(const char *dir, char (*out)[QHOST_NAME_MAX + 1], size_t max)
{
    char sdir[PATH_MAX + 16];
    snprintf(sdir, sizeof sdir, "%s/replicas", dir);
    DIR *d = opendir(sdir);
    size_t n = 0;
    for (struct dirent *e; d && n < max && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 6 && len - 6 <= QHOST_NAME_MAX && strcmp(e->d_name + len - 6, ".stamp") == 0) {
            memcpy(out[n], e->d_name, len - 6);
            out[n][len - 6] = '\0';
            if (qhost_check_name(out[n], NULL) == 0)
                n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

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

    /* A VM on another host: that host answers before anything changes,
     * or its volumes would be left there unknown (--just-db forgets the VM
     * and leaves them, and does not ask). */
    char host[QHOST_NAME_MAX + 1] = "";
    if (qvm_host(vm))
        snprintf(host, sizeof host, "%s", qvm_host(vm));
    struct vmm *remote = NULL;
    enum qvm_power state = QVM_POWER_HALTED;
    if (host[0] && !just_db && !(remote = qubes_vmm_of(q, vm, err)))
        return qerr_prefix(err, "Cannot remove '%s': its host '%s' (which holds its volumes)",
                           name, host);
    if ((!host[0] || remote) && qubes_vm_state(q, vm, &state, err) < 0)
        return qerr_prefix(err, "cannot tell whether '%s' is running", name);
    if (qvm_power_is_running(state))
        return qerr_set(err, "Cannot remove '%s': the VM is %s%s%s; shut it down first", name,
                        qvm_power_name(state), host[0] ? " on host " : "", host);

    char dir[PATH_MAX], aside[PATH_MAX + 64] = "";
    char replicas[8][QHOST_NAME_MAX + 1];
    size_t nreplicas = 0;
    if (!just_db) {
        if (qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0)
            return -1;
        nreplicas = replica_hosts(dir, replicas, 8);
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
    /* A template's copies on the hosts of VMs based on it. */
    for (size_t h = 0; h < nreplicas; h++) {
        struct vmm v __attribute__((cleanup(vmm_close))) = { 0 };
        if (qhosts_vmm(&q->cfg, replicas[h], &v, err) < 0 || qhost_volumes_delete(&v, name, err) < 0)
            return qerr_prefix(err, "record removed, but its copies on host '%s' remain "
                               "(volumes %s.* of pool %s)", replicas[h], name, QHOST_POOL);
    }
    if (remote && qhost_volumes_delete(remote, name, err) < 0)
        return qerr_prefix(err, "record removed, but its volumes on host '%s' remain", host);
    /* A dvm VM's savefile set goes with it (memory files still mapped by
     * running DispVMs stay until qvm-cleanup-dispvms). */
    int had = dvmdata_forget(&q->cfg, name);
    if (had_savefile)
        *had_savefile = had > 0;
    return 0;
}

/* ---- renaming ---- */

/* One VM's rename: every path named after it (computed from the names,
 * never from dir_path) and what has been done, so that a failure puts each
 * thing back. */
struct rename_move {
    struct qvm *vm;
    char old_name[QUBES_NAME_MAX + 1], new_name[QUBES_NAME_MAX + 1];
    char old_dir[PATH_MAX], new_dir[PATH_MAX];          /* $BASE/<class dir>/NAME */
    char conf_at[PATH_MAX + 64], conf_to[PATH_MAX + 64];  /* in new_dir; "": none */
    char old_run[PATH_MAX], new_run[PATH_MAX];          /* $RUN/vms/NAME */
    char aside_run[PATH_MAX + 32];                      /* a leftover of the new name */
    char *was_dir_path, *was_conf_file;                 /* the record's; NULL: absent */
    bool dir_moved, conf_moved, run_aside, run_moved, attrs_kept, renamed;
};

/* 1 when something is at `path`, 0 when nothing, -1 (with the error). */
static int path_taken(const char *path, struct qerr *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    return qerr_errno(err, errno, "name: cannot look at %s", path);
}

/* The original's per-VM configuration file (conf_file, NAME.conf in the
 * VM's directory) is renamed NEW.conf with it, when it is there. */
static int plan_conf(struct rename_move *m, struct qerr *err)
{
    const char *conf = qvm_get_attr(m->vm, "conf_file");
    char at[PATH_MAX + 64], to[PATH_MAX + 64];
    if (!conf || !*conf || strchr(conf, '/') || strcmp(conf, ".") == 0 ||
        strcmp(conf, "..") == 0)
        return 0;       /* not a file of the VM's directory: not ours to move */
    snprintf(at, sizeof at, "%s/%s", m->old_dir, conf);
    snprintf(to, sizeof to, "%s/%s.conf", m->old_dir, m->new_name);
    int r = strcmp(at, to) == 0 ? 0 : path_taken(at, err);
    if (r <= 0)
        return r;
    if ((r = path_taken(to, err)) != 0)
        return r < 0 ? -1 : qerr_set(err, "name: %s already exists", to);
    snprintf(m->conf_at, sizeof m->conf_at, "%s/%s", m->new_dir, conf);
    snprintf(m->conf_to, sizeof m->conf_to, "%s/%s.conf", m->new_dir, m->new_name);
    return 0;
}

/* Everything is checked before anything changes. */
static int rename_plan(struct qubes *q, struct qvm *vm, const char *name, struct rename_move *m,
                       struct qerr *err)
{
    char why[PATH_MAX + 64];
    memset(m, 0, sizeof *m);
    m->vm = vm;
    if (qvm_check_new_name(name, err) < 0)
        return qerr_prefix(err, "name");
    if (qvm_collection_by_name(q->coll, name))
        return qerr_set(err, "name: a VM named '%s' already exists", name);
    if (qvm_get_bool(vm, "installed_by_rpm", false))
        return qerr_set(err, "name: '%s' was installed by RPM (installed_by_rpm is True) and "
                        "cannot be renamed: clone it and remove the package instead", vm->name);
    int r = qubes_vm_running(q, vm, why, sizeof why, err);
    if (r < 0)
        return -1;
    if (r > 0)
        return qerr_set(err, "Cannot change the name of a running VM ('%s' %s)", vm->name, why);
    snprintf(m->old_name, sizeof m->old_name, "%s", vm->name);
    snprintf(m->new_name, sizeof m->new_name, "%s", name);
    const char *sub = qvm_class_subdir(vm->cls);
    if (qubes_config_vm_dir(&q->cfg, sub, vm->name, m->old_dir, sizeof m->old_dir, err) < 0 ||
        qubes_config_vm_dir(&q->cfg, sub, name, m->new_dir, sizeof m->new_dir, err) < 0 ||
        qrt_vm_path(&q->cfg, vm->name, NULL, m->old_run, sizeof m->old_run, err) < 0 ||
        qrt_vm_path(&q->cfg, name, NULL, m->new_run, sizeof m->new_run, err) < 0)
        return -1;
    if ((r = path_taken(m->new_dir, err)) != 0)
        return r < 0 ? -1 : qerr_set(err, "name: %s already exists", m->new_dir);
    snprintf(m->aside_run, sizeof m->aside_run, "%s.leftover-%d", m->new_run, (int)getpid());
    return plan_conf(m, err);
}

static int keep_attr(const struct qvm *vm, const char *name, char **out, struct qerr *err)
{
    const char *v = qvm_get_attr(vm, name);
    *out = v ? strdup(v) : NULL;
    return v && !*out ? qerr_errno(err, ENOMEM, "name") : 0;
}

static void put_attr_back(struct qvm *vm, const char *name, const char *was)
{
    if (was)
        qvm_set_attr(vm, name, was, NULL);
    else
        qattrs_del(&vm->attrs, name);   /* no typed field caches these two */
}

static int rename_apply(struct qubes *q, struct rename_move *m, struct qerr *err)
{
    if (rename(m->old_dir, m->new_dir) == 0)
        m->dir_moved = true;
    else if (errno != ENOENT)   /* a record without files (an R2 file's VM) */
        return qerr_errno(err, errno, "name: cannot rename %s to %s", m->old_dir, m->new_dir);
    if (m->dir_moved && m->conf_at[0]) {
        if (rename(m->conf_at, m->conf_to) < 0)
            return qerr_errno(err, errno, "name: cannot rename %s to %s", m->conf_at, m->conf_to);
        m->conf_moved = true;
    }
    /* What an earlier VM of the new name left in its run directory never
     * meets this one: it is set aside now and removed once the rename is
     * saved. */
    int r = path_taken(m->new_run, err);
    if (r < 0)
        return -1;
    if (r > 0) {
        if (rename(m->new_run, m->aside_run) < 0)
            return qerr_errno(err, errno, "name: cannot move %s aside", m->new_run);
        m->run_aside = true;
    }
    if (rename(m->old_run, m->new_run) == 0)
        m->run_moved = true;
    else if (errno != ENOENT)
        return qerr_errno(err, errno, "name: cannot rename %s to %s", m->old_run, m->new_run);

    if (keep_attr(m->vm, "dir_path", &m->was_dir_path, err) < 0 ||
        keep_attr(m->vm, "conf_file", &m->was_conf_file, err) < 0)
        return -1;
    m->attrs_kept = true;
    if (qvm_collection_rename(q->coll, m->vm, m->new_name, err) < 0)
        return qerr_prefix(err, "name");
    m->renamed = true;
    char conf[QUBES_NAME_MAX + 8];
    snprintf(conf, sizeof conf, "%s.conf", m->new_name);
    if (qvm_set_attr(m->vm, "dir_path", m->new_dir, err) < 0 ||
        qvm_set_attr(m->vm, "conf_file", conf, err) < 0)
        return qerr_prefix(err, "name");
    return 0;
}

static void rename_undo(struct qubes *q, struct rename_move *m, struct qerr *err)
{
    if (m->renamed)
        qvm_collection_rename(q->coll, m->vm, m->old_name, NULL);
    if (m->attrs_kept) {
        put_attr_back(m->vm, "dir_path", m->was_dir_path);
        put_attr_back(m->vm, "conf_file", m->was_conf_file);
    }
    if (m->run_moved && rename(m->new_run, m->old_run) < 0)
        qerr_prefix(err, "and %s could not be moved back to %s", m->new_run, m->old_run);
    if (m->run_aside && rename(m->aside_run, m->new_run) < 0)
        qerr_prefix(err, "and %s could not be moved back to %s", m->aside_run, m->new_run);
    if (m->conf_moved && rename(m->conf_to, m->conf_at) < 0)
        qerr_prefix(err, "and %s could not be moved back to %s", m->conf_to, m->conf_at);
    if (m->dir_moved && rename(m->new_dir, m->old_dir) < 0)
        qerr_prefix(err, "and %s could not be moved back to %s", m->new_dir, m->old_dir);
    m->renamed = m->attrs_kept = m->run_moved = m->run_aside = m->conf_moved = m->dir_moved =
        false;
}

/* A savefile set (dispvm/dvmdata.h) is found by its VM's name: one under
 * the old name would serve DispVMs from a VM that no longer has it, one
 * under the new name is an earlier VM's; and its root layer names the
 * template's root image by the path a template rename changes. */
static void forget_savefile_set(const struct qubes_config *cfg, const char *name)
{
    struct dvmdata set;
    if (dvmdata_of(cfg, name, &set, NULL) == 0 &&
        (access(set.savefile, F_OK) == 0 || access(set.meta, F_OK) == 0 ||
         access(set.root, F_OK) == 0))
        dvmdata_forget(cfg, name);
}

static int children_halted(struct qubes *q, const struct qvm *tpl, struct qerr *err)
{
    char why[PATH_MAX + 64];
    for (struct qvm *c = q->coll->by_qid; c; c = c->hh_qid.next) {
        if (c == tpl || c->template_qid != tpl->qid)
            continue;
        int r = qubes_vm_running(q, c, why, sizeof why, err);
        if (r < 0)
            return -1;
        if (r > 0)
            return qerr_set(err, "Cannot rename template '%s' while a VM based on it runs "
                            "('%s' %s): its disks name the template's root image", tpl->name,
                            c->name, why);
    }
    return 0;
}

/* The root layers VMs based on a renamed template keep between runs (with
 * debug on; others are made afresh at every start) name its root image by
 * path: they are pointed at the new one (rebase -u: a name, nothing read). */
struct layer_rebase {
    char old_root[PATH_MAX + 64], new_root[PATH_MAX + 64];
    char **layers;
    size_t n;
};

static int rebase_children(struct qubes *q, const struct rename_move *m, struct layer_rebase *lr,
                           struct qerr *err)
{
    const char *root = qvm_get_attr(m->vm, "root_img");
    if (!root || !*root)
        root = "root.img";
    snprintf(lr->old_root, sizeof lr->old_root, "%s/%s", m->old_dir, root);
    snprintf(lr->new_root, sizeof lr->new_root, "%s/%s", m->new_dir, root);
    if (!m->dir_moved)
        return 0;
    if (!(lr->layers = calloc(QUBES_MAX_QID + 1, sizeof *lr->layers)))
        return qerr_errno(err, ENOMEM, "name");
    for (struct qvm *c = q->coll->by_qid; c; c = c->hh_qid.next) {
        char layer[PATH_MAX];
        struct stat st;
        if (c == m->vm || c->template_qid != m->vm->qid || c->cls == QVM_DISP ||
            !qvm_get_bool(c, "debug", false))
            continue;
        if (qubes_vm_image(q, c, "volatile_img", "volatile.img", layer, sizeof layer, err) < 0)
            return -1;
        if (lstat(layer, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (storage_rebase_layer(layer, lr->new_root, "raw", err) < 0)
            return qerr_prefix(err, "name: the root layer of '%s', based on '%s'", c->name,
                               m->old_name);
        if (!(lr->layers[lr->n++] = strdup(layer)))
            return qerr_errno(err, ENOMEM, "name");
    }
    return 0;
}

static void rebase_children_back(struct layer_rebase *lr, struct qerr *err)
{
    for (size_t i = lr->n; i-- > 0;)
        if (lr->layers[i] && storage_rebase_layer(lr->layers[i], lr->old_root, "raw", NULL) < 0)
            qerr_prefix(err, "and %s could not be pointed back at %s", lr->layers[i],
                        lr->old_root);
}

static void layer_rebase_free(struct layer_rebase *lr)
{
    for (size_t i = 0; lr->layers && i < lr->n; i++)
        free(lr->layers[i]);
    free(lr->layers);
}

/* The one reference to a VM by name in qubes.xml: an HVM's drive,
 * TYPE:BACKENDVM:PATH. Those naming a renamed VM are changed with it. */
struct drive_refs {
    struct qvm *vm[QUBES_MAX_QID + 1];
    char *was[QUBES_MAX_QID + 1];
    size_t n;
};

static int follow_drives(struct qubes *q, const struct rename_move *m, struct drive_refs *d,
                         struct qerr *err)
{
    size_t old_len = strlen(m->old_name);
    for (struct qvm *c = q->coll->by_qid; c; c = c->hh_qid.next) {
        const char *drive = qvm_get_attr(c, "drive"), *rest;
        if (!qvm_class_is_hvm(c->cls) || !drive)
            continue;
        if (strncmp(drive, "hd:", 3) == 0)
            rest = drive + 3;
        else if (strncmp(drive, "cdrom:", 6) == 0)
            rest = drive + 6;
        else
            continue;
        if (strncmp(rest, m->old_name, old_len) != 0 || rest[old_len] != ':')
            continue;
        char *now = NULL, *was = strdup(drive);
        if (!was || asprintf(&now, "%.*s%s%s", (int)(rest - drive), drive, m->new_name,
                             rest + old_len) < 0) {
            free(was);
            return qerr_errno(err, ENOMEM, "name");
        }
        d->vm[d->n] = c;
        d->was[d->n++] = was;
        int r = qvm_set_attr(c, "drive", now, err);
        free(now);
        if (r < 0)
            return qerr_prefix(err, "name: the drive of '%s'", c->name);
    }
    return 0;
}

static void drives_back(struct drive_refs *d)
{
    for (size_t i = d->n; i-- > 0;)
        qvm_set_attr(d->vm[i], "drive", d->was[i], NULL);
}

static void drive_refs_free(struct drive_refs *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->was[i]);
    free(d);
}

int qubes_vm_rename(struct qubes *q, struct qvm *vm, const char *name, struct qerr *err)
{
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "name: dom0 cannot be renamed");
    if (vm->cls == QVM_DISP)
        return qerr_set(err, "name: '%s' is a DispVM, named after its dispid", vm->name);
    if (qvm_host(vm))
        return qerr_set(err, "name: '%s' lives on host '%s', where its volumes are named after "
                        "it: renaming a VM on another host is not supported yet", vm->name,
                        qvm_host(vm));
    if (strcmp(name, vm->name) == 0) {
        qubes_unlock(q);        /* nothing to do */
        return 0;
    }
    struct rename_move moves[2];        /* the VM, and a template's T-dvm */
    struct layer_rebase lr = { .layers = NULL };
    struct drive_refs *drives = calloc(1, sizeof *drives);
    size_t n = 0, done = 0;
    int rc = -1;
    char dvm_old[QUBES_NAME_MAX + 8], dvm_new[QUBES_NAME_MAX + 8];
    if (!drives)
        return qerr_errno(err, ENOMEM, "name");
    if (rename_plan(q, vm, name, &moves[n++], err) < 0)
        goto out;
    /* A template's DispVM template, T-dvm, is found by that name: it goes
     * with the template. */
    if (qvm_class_is_template(vm->cls)) {
        if (children_halted(q, vm, err) < 0)
            goto out;
        snprintf(dvm_old, sizeof dvm_old, "%s-dvm", vm->name);
        struct qvm *dvm = qvm_collection_by_name(q->coll, dvm_old);
        if (dvm) {
            snprintf(dvm_new, sizeof dvm_new, "%s-dvm", name);
            if (rename_plan(q, dvm, dvm_new, &moves[n++], err) < 0) {
                qerr_prefix(err, "'%s', the DispVM template of '%s', is renamed '%s' with it",
                            dvm_old, vm->name, dvm_new);
                goto out;
            }
        }
    }

    for (; done < n; done++)
        if (rename_apply(q, &moves[done], err) < 0)
            goto undo;
    for (size_t i = 0; i < n; i++)
        if (follow_drives(q, &moves[i], drives, err) < 0)
            goto undo;
    if (qvm_class_is_template(vm->cls) && rebase_children(q, &moves[0], &lr, err) < 0)
        goto undo;
    if (qvm_collection_validate(q->coll, err) < 0 || qdb_save(&q->db, q->coll, err) < 0)
        goto undo;
    /* Saved: what belonged to the old names goes, still under the lock. */
    for (size_t i = 0; i < n; i++) {
        if (moves[i].run_aside)
            storage_remove_tree(moves[i].aside_run, NULL);
        forget_savefile_set(&q->cfg, moves[i].old_name);
        forget_savefile_set(&q->cfg, moves[i].new_name);
    }
    qubes_unlock(q);
    rc = 0;
    goto out;

undo:
    rebase_children_back(&lr, err);
    drives_back(drives);
    /* The step that failed may have done part of its work. */
    for (size_t i = done < n ? done + 1 : n; i-- > 0;)
        rename_undo(q, &moves[i], err);
out:
    drive_refs_free(drives);
    layer_rebase_free(&lr);
    for (size_t i = 0; i < n; i++) {
        free(moves[i].was_dir_path);
        free(moves[i].was_conf_file);
    }
    return rc;
}

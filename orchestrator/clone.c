/* qvm-clone, in the order it happens: the checks and the source's files
 * (read lock), the copies (no lock), the record (write lock). See clone.h. */
#include "clone.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/storage.h"
#include "firewall.h"
#include "hosts.h"
#include "qubes.h"
#include "util.h"

/* The root and private images and the files of kernel/. */
#define CLONE_MAX_FILES 16

/* A file of the source's directory that the clone gets a copy of. */
struct clone_file {
    char rel[PATH_MAX];         /* its path in the directory: "kernel/vmlinuz" */
    struct stat st;             /* when listed: the copy is of this file */
};

struct clone_files {
    struct clone_file f[CLONE_MAX_FILES];
    size_t n;
};

struct clone {
    /* caller fills in */
    const struct qvm_clone_opts *o;
    /* step 1: who the source is, where things go */
    enum qvm_class cls;
    int src_qid;
    char src_uuid[64];
    char src_dir[PATH_MAX];
    char dir[PATH_MAX];         /* the clone's: $BASE/<class dir>/NEW */
    struct clone_files files;
    /* step 2 */
    char staging[PATH_MAX + 32];        /* NEW.cloning-PID, beside dir */
    bool staged;
    /* a VM on another host: its volumes copied there (hosts.h) */
    char host[QHOST_NAME_MAX + 1];
    struct vmm vmm;
    const char *made[8];
    size_t nmade;
};

static bool cancelled(const struct qvm_clone_opts *o)
{
    return o->cancel && *o->cancel;
}

/* ---- step 1: the checks and the source's files ---- */

static int check_source(const struct qubes *q, const struct qvm *src, struct qerr *err)
{
    if (src->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 cannot be cloned");
    if (src->cls == QVM_DISP) {
        const struct qvm *t = qvm_collection_by_qid(q->coll, src->template_qid);
        return qerr_set(err, "'%s' is a DispVM: it is disposable and cannot be cloned%s%s%s",
                        src->name, t ? " (clone its template '" : "", t ? t->name : "",
                        t ? "')" : "");
    }
    return 0;
}

static int check_halted(struct qubes *q, const struct qvm *src, struct qerr *err)
{
    enum qvm_power st;
    if (qubes_vm_state(q, src, &st, err) < 0)
        return qerr_prefix(err, "cannot tell whether '%s' is running", src->name);
    if (qvm_power_is_running(st))
        return qerr_set(err, "Cannot clone '%s': the VM is %s, and its disks may change while "
                        "they are copied; shut it down first", src->name, qvm_power_name(st));
    return 0;
}

static int check_name_free(const struct qubes *q, const struct clone *c, struct qerr *err)
{
    struct stat st;
    if (qvm_collection_by_name(q->coll, c->o->name))
        return qerr_set(err, "A VM with the name '%s' already exists in the system", c->o->name);
    if (lstat(c->dir, &st) == 0)
        return qerr_set(err, "%s exists, but no VM '%s' does (left by something else?): "
                        "remove it first", c->dir, c->o->name);
    if (errno != ENOENT)
        return qerr_errno(err, errno, "cannot look at %s", c->dir);
    return 0;
}

/* A directory that may not exist yet, spelt one way: its parent resolved,
 * then its last component. Trailing slashes do not count. */
static int canonical_dir(const char *path, char *out, size_t len)
{
    char buf[PATH_MAX], parent[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -1;
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == buf)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - buf), buf);
    char real[PATH_MAX];
    if (!realpath(parent, real))
        return -1;
    return snprintf(out, len, "%s/%s", strcmp(real, "/") == 0 ? "" : real, base) < (int)len
               ? 0 : -1;
}

/* -p: this project cannot put a VM's files elsewhere. */
static int check_dir_option(const struct clone *c, struct qerr *err)
{
    const char *given = c->o->dir;
    char a[PATH_MAX], b[PATH_MAX];
    if (!given)
        return 0;
    if (canonical_dir(given, a, sizeof a) == 0 && canonical_dir(c->dir, b, sizeof b) == 0 &&
        strcmp(a, b) == 0)
        return 0;
    return qerr_set(err, "-p %s: the files of '%s' can only go to %s. A VM's files are always "
                    "in $QUBES_BASE_DIR/<class dir>/NAME, never where dir_path says, so that "
                    "qubes.xml cannot point a VM's disks at any file of the host: leave -p out",
                    given, c->o->name, c->dir);
}

/* A relative path that stays below its directory (no ".." component). */
static bool stays_inside(const char *rel)
{
    if (rel[0] == '/' || rel[0] == '\0')
        return false;
    for (const char *p = rel; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
        if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0'))
            return false;
    return true;
}

static int add_file(struct clone_files *l, const char *dir, const char *rel, struct qerr *err)
{
    char path[PATH_MAX * 2];
    struct stat st;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->f[i].rel, rel) == 0)
            return 0;
    if (!stays_inside(rel) || strlen(rel) >= sizeof l->f[0].rel)
        return qerr_set(err, "\"%s\": not a file of %s", rel, dir);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : qerr_errno(err, errno, "cannot look at %s", path);
    /* A link would hand the clone whatever file it points at. */
    if (!S_ISREG(st.st_mode))
        return qerr_set(err, "%s is not a regular file: it cannot be cloned", path);
    if (l->n == CLONE_MAX_FILES)
        return qerr_set(err, "%s: more than %d files to copy", dir, CLONE_MAX_FILES);
    snprintf(l->f[l->n].rel, sizeof l->f[l->n].rel, "%s", rel);
    l->f[l->n++].st = st;
    return 0;
}

static int add_image(struct clone_files *l, const struct qvm *vm, const char *dir,
                     const char *attr, const char *dflt, struct qerr *err)
{
    const char *img = qvm_get_attr(vm, attr);
    return add_file(l, dir, img ? img : dflt, err);
}

static int only_dots(const struct dirent *d)
{
    return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/* What the clone copies: a root of its own (a template-based VM's is its
 * template's), the private image, and its own kernel's files. A missing
 * image is not copied (a private image is made at the first start). */
static int list_files(const struct qvm *vm, const char *dir, struct clone_files *l,
                      struct qerr *err)
{
    l->n = 0;
    if (vm->template_qid < 0 && add_image(l, vm, dir, "root_img", "root.img", err) < 0)
        return -1;
    if (add_image(l, vm, dir, "private_img", "private.img", err) < 0)
        return -1;

    char kdir[PATH_MAX + 16];
    struct stat st;
    snprintf(kdir, sizeof kdir, "%s/kernel", dir);
    if (lstat(kdir, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    struct dirent **names;
    int n = scandir(kdir, &names, only_dots, alphasort);
    if (n < 0)
        return qerr_errno(err, errno, "cannot read %s", kdir);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char rel[NAME_MAX + 16];
        snprintf(rel, sizeof rel, "kernel/%s", names[i]->d_name);
        if (rc == 0)
            rc = add_file(l, dir, rel, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int check_and_list(struct qubes *q, struct clone *c, struct qerr *err)
{
    const struct qvm_clone_opts *o = c->o;
    if (qvm_check_new_name(o->name, err) < 0 || qubes_load_for_reading(q, err) < 0)
        return -1;
    struct qvm *src = qubes_find_vm(q, o->src, err);
    if (!src || check_source(q, src, err) < 0)
        return -1;
    if (qvm_host(src)) {
        snprintf(c->host, sizeof c->host, "%s", qvm_host(src));
        if (q->cfg.offline)
            return qerr_set(err, "'%s' lives on host '%s': a clone there talks to that host, "
                            "which offline mode does not", src->name, c->host);
        if (qhosts_vmm(&q->cfg, c->host, &c->vmm, err) < 0)
            return -1;
    }
    c->cls = src->cls;
    c->src_qid = src->qid;
    const char *uuid = qvm_get_attr(src, "uuid");
    snprintf(c->src_uuid, sizeof c->src_uuid, "%s", uuid ? uuid : "");
    if (qubes_vm_dir(q, src, c->src_dir, sizeof c->src_dir, err) < 0 ||
        qubes_config_vm_dir(&q->cfg, qvm_class_subdir(c->cls), o->name, c->dir, sizeof c->dir,
                            err) < 0)
        return -1;
    if (check_name_free(q, c, err) < 0 || check_dir_option(c, err) < 0 ||
        check_halted(q, src, err) < 0)
        return -1;
    return list_files(src, c->src_dir, &c->files, err);
}

/* ---- step 2: the copies ---- */

struct copy_view {
    FILE *out;
    const char *file;
    uint64_t size;              /* apparent */
    long every_ms, start_ms, last_ms;
    const volatile sig_atomic_t *cancel;
};

static void mib(uint64_t bytes, char *out, size_t len)
{
    if (bytes >= (1ULL << 30))
        snprintf(out, len, "%.1f GiB", (double)bytes / (1 << 30));
    else
        snprintf(out, len, "%.1f MiB", (double)bytes / (1 << 20));
}

static int show_copy(void *ctx, uint64_t done, uint64_t total)
{
    struct copy_view *v = ctx;
    char a[32], b[32];
    if (v->cancel && *v->cancel)
        return -1;
    long now = qnow_ms();
    if (done == 0 && v->start_ms == 0) {
        v->start_ms = v->last_ms = now;
        mib(v->size, a, sizeof a);
        mib(total, b, sizeof b);
        qsay(v->out, "--> Copying %s (%s, %s of data)", v->file, a, b);
    } else if (done < total && (v->every_ms < 0 || now - v->last_ms >= v->every_ms)) {
        v->last_ms = now;
        mib(done, a, sizeof a);
        mib(total, b, sizeof b);
        qsay(v->out, "--> %s: %d%% (%s of %s)", v->file, (int)(done * 100 / total), a, b);
    }
    return 0;
}

static int copy_file(const struct clone *c, const struct clone_file *f, struct qerr *err)
{
    char from[PATH_MAX * 2], to[PATH_MAX * 2 + 32];
    snprintf(from, sizeof from, "%s/%s", c->src_dir, f->rel);
    snprintf(to, sizeof to, "%s/%s", c->staging, f->rel);
    const char *slash = strrchr(f->rel, '/');
    if (slash) {
        char parent[PATH_MAX * 2 + 32];
        snprintf(parent, sizeof parent, "%s/%.*s", c->staging, (int)(slash - f->rel), f->rel);
        if (qmkdirs(parent, err) < 0)
            return -1;
    }
    struct copy_view v = {
        .out = c->o->progress, .file = f->rel, .size = (uint64_t)f->st.st_size,
        .every_ms = c->o->progress_ms ? c->o->progress_ms : CLONE_PROGRESS_MS,
        .cancel = c->o->cancel,
    };
    bool reflinked;
    if (storage_copy_sparse_progress(from, to, show_copy, &v, &reflinked, err) < 0) {
        if (cancelled(c->o))
            return qerr_set(err, "interrupted while copying %s: nothing was cloned", from);
        return -1;
    }
    if (reflinked)
        qsay(c->o->progress, "--> Copied %s by reflink (its blocks are shared until written)",
             f->rel);
    else
        qsay(c->o->progress, "--> Copied %s in %.1f s", f->rel,
             (double)(qnow_ms() - v.start_ms) / 1000);
    return 0;
}

/* The source's volumes on its host, copied there under the clone's names
 * (nothing travels); the root layer of a VM based on a template is made at
 * each start and is not copied. */
static int copy_volumes(struct clone *c, struct qerr *err)
{
    static const char *const kinds[] = { "root.img", "private.img", "vmlinuz", "initramfs" };
    qsay(c->o->progress, "--> Copying the volumes of '%s' on host %s", c->o->src, c->host);
    for (size_t i = 0; i < 4; i++) {
        char path[PATH_MAX];
        int rc = qhost_volume_path(&c->vmm, c->o->src, kinds[i], path, sizeof path, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (cancelled(c->o))
            return qerr_set(err, "interrupted: nothing was cloned");
        if (qhost_volume_copy(&c->vmm, c->o->name, c->o->src, kinds[i], err) < 0)
            return -1;
        c->made[c->nmade++] = kinds[i];
    }
    return 0;
}

static void undo_volumes(struct clone *c)
{
    for (size_t i = 0; i < c->nmade; i++)
        qhost_volume_delete(&c->vmm, c->o->name, c->made[i], NULL);
    c->nmade = 0;
}

static int copy_files(struct clone *c, struct qerr *err)
{
    char parent[PATH_MAX];
    snprintf(c->staging, sizeof c->staging, "%s.cloning-%d", c->dir, (int)getpid());
    snprintf(parent, sizeof parent, "%s", c->dir);
    *strrchr(parent, '/') = '\0';
    if (qmkdirs(parent, err) < 0 || qmkdir(c->staging, err) < 0)
        return -1;
    c->staged = true;
    qsay(c->o->progress, "--> Cloning '%s' to '%s'", c->o->src, c->o->name);
    for (size_t i = 0; i < c->files.n; i++) {
        if (cancelled(c->o))
            return qerr_set(err, "interrupted: nothing was cloned");
        if (copy_file(c, &c->files.f[i], err) < 0)
            return -1;
    }
    return 0;
}

/* ---- step 3: the record ---- */

/* The source still is the VM listed, halted, with the same files, none of
 * them written since. */
static int recheck(struct qubes *q, const struct clone *c, struct qvm **srcp, struct qerr *err)
{
    struct qvm *src = qvm_collection_by_name(q->coll, c->o->src);
    const char *uuid = src ? qvm_get_attr(src, "uuid") : NULL;
    if (!src || src->qid != c->src_qid || src->cls != c->cls ||
        strcmp(uuid ? uuid : "", c->src_uuid) != 0)
        return qerr_set(err, "'%s' was removed or replaced while its files were copied: "
                        "nothing was cloned", c->o->src);
    if (check_name_free(q, c, err) < 0 || check_halted(q, src, err) < 0)
        return -1;
    struct clone_files now;
    if (list_files(src, c->src_dir, &now, err) < 0)
        return -1;
    for (size_t i = 0; i < c->files.n || i < now.n; i++) {
        const struct clone_file *a = i < c->files.n ? &c->files.f[i] : NULL;
        const struct clone_file *b = i < now.n ? &now.f[i] : NULL;
        if (a && b && strcmp(a->rel, b->rel) == 0 && qstat_same(&a->st, &b->st))
            continue;
        return qerr_set(err, "the files of '%s' changed while they were copied (%s/%s: was the "
                        "VM started?): nothing was cloned; try again", c->o->src, c->src_dir,
                        (a ? a : b)->rel);
    }
    *srcp = src;
    return 0;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The value the clone gets for attribute `name` of the source: `*value`
 * (NULL: the attribute is left out). */
static void clone_value(const struct clone *c, const struct qvm *vm, const char *name,
                        const char **value, char *buf, size_t len)
{
    static const char *const as_new[] = { "installed_by_rpm", "internal", "autostart", "debug" };
    if (strcmp(name, "qid") == 0) {
        snprintf(buf, len, "%d", vm->qid);
        *value = buf;
    } else if (strcmp(name, "netid") == 0 && vm->netid >= 0) {
        snprintf(buf, len, "%d", vm->netid);
        *value = buf;
    } else if (strcmp(name, "name") == 0) {
        *value = c->o->name;
    } else if (strcmp(name, "dir_path") == 0) {
        *value = c->dir;
    } else if (strcmp(name, "conf_file") == 0) {
        snprintf(buf, len, "%s.conf", c->o->name);
        *value = buf;
    } else if (strcmp(name, "uuid") == 0) {
        qubes_new_uuid(buf);
        *value = buf;
    } else if (strcmp(name, "mac") == 0) {
        *value = "None";
    } else if (starts_with(name, "backup_")) {
        *value = NULL;
    } else {
        for (size_t i = 0; i < sizeof as_new / sizeof *as_new; i++)
            if (strcmp(name, as_new[i]) == 0)
                *value = "False";
    }
}

static int make_record(struct qubes *q, const struct clone *c, const struct qvm *src,
                       struct qvm **out, struct qerr *err)
{
    struct qvm *vm = qvm_new(c->cls);
    if (!vm)
        return qerr_errno(err, ENOMEM, "cloning '%s'", src->name);
    if ((vm->qid = qvm_collection_alloc_qid(q->coll, err)) < 0 ||
        (qvm_class_is_netvm(c->cls) && (vm->netid = qvm_collection_alloc_netid(q->coll, err)) < 0))
        goto fail;
    /* The source's attributes in its order; then the identity a record
     * needs, where the source had none (an R2 file may lack a uuid). */
    static const char *const identity[] = { "qid", "name", "dir_path", "conf_file", "uuid" };
    char buf[PATH_MAX];
    for (size_t i = 0; i < src->attrs.n; i++) {
        const char *name = src->attrs.v[i].name, *value = src->attrs.v[i].value;
        clone_value(c, vm, name, &value, buf, sizeof buf);
        if (value && qvm_set_attr(vm, name, value, err) < 0)
            goto fail;
    }
    for (size_t i = 0; i < sizeof identity / sizeof *identity; i++) {
        const char *value = NULL;
        if (qvm_get_attr(vm, identity[i]))
            continue;
        clone_value(c, vm, identity[i], &value, buf, sizeof buf);
        if (qvm_set_attr(vm, identity[i], value, err) < 0)
            goto fail;
    }
    if (qvm_collection_add(q->coll, vm, err) < 0)
        goto fail;
    *out = vm;
    return 0;
fail:
    qvm_free(vm);
    return qerr_prefix(err, "cannot make the record of '%s'", c->o->name);
}

/* Its rules, as the source's file has them now (rules that expired are
 * dropped on reading), written under the write lock like every change. */
static int copy_firewall(struct qubes *q, const struct clone *c, const struct qvm *src,
                         struct qerr *err)
{
    char from[PATH_MAX], to[PATH_MAX * 2];
    struct stat st;
    if (qfw_path(q, src, from, sizeof from, err) < 0)
        return -1;
    if (lstat(from, &st) < 0)
        return errno == ENOENT ? 0 : qerr_errno(err, errno, "cannot look at %s", from);
    struct qfw fw;
    int rc = qfw_load(from, &fw, err);
    if (rc == 0) {
        snprintf(to, sizeof to, "%s/%s", c->staging, strrchr(from, '/') + 1);
        rc = qfw_write(q, to, &fw, err);
    }
    qfw_free(&fw);
    return rc < 0 ? qerr_prefix(err, "the firewall rules of '%s'", src->name) : 0;
}

static int commit(struct qubes *q, struct clone *c, struct qvm **out, struct qerr *err)
{
    struct qvm *src = NULL, *vm = NULL;
    if (cancelled(c->o))
        return qerr_set(err, "interrupted: nothing was cloned");
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = recheck(q, c, &src, err);
    if (rc == 0)
        rc = make_record(q, c, src, &vm, err);
    if (rc == 0)
        rc = qvm_collection_validate(q->coll, err);
    if (rc == 0)
        rc = copy_firewall(q, c, src, err);
    if (rc == 0 && renameat2(AT_FDCWD, c->staging, AT_FDCWD, c->dir, RENAME_NOREPLACE) < 0)
        rc = qerr_errno(err, errno, "cannot rename %s to %s", c->staging, c->dir);
    if (rc == 0) {
        c->staged = false;
        /* A failed save (a full disk) leaves the old file and our lock:
         * the directory goes before any other writer may look. */
        if ((rc = qdb_save(&q->db, q->coll, err)) < 0)
            storage_remove_tree(c->dir, NULL);
    }
    if (rc < 0 && vm) {
        qvm_collection_remove(q->coll, vm);
        qvm_free(vm);
        vm = NULL;
    }
    qubes_unlock(q);
    *out = vm;
    return rc;
}

int qubes_vm_clone(struct qubes *q, const struct qvm_clone_opts *o, struct qvm **out,
                   struct qerr *err)
{
    struct clone *c = calloc(1, sizeof *c);
    if (!c)
        return qerr_errno(err, ENOMEM, "cloning '%s'", o->src);
    c->o = o;
    *out = NULL;
    int rc = check_and_list(q, c, err);
    if (rc == 0)
        rc = copy_files(c, err);
    if (rc == 0 && c->host[0])
        rc = copy_volumes(c, err);
    if (rc == 0)
        rc = commit(q, c, out, err);
    if (c->staged)
        storage_remove_tree(c->staging, NULL);
    if (rc < 0)
        undo_volumes(c);
    vmm_close(&c->vmm);
    free(c);
    return rc;
}

/* Block devices hot-plugged into running VMs, laid out as qvm-block uses
 * them: where a source's data is (sysfs), the checks of a source, the
 * running domains' disks, then listing, attaching and detaching. */
#include "block.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "runtime.h"
#include "util.h"

/* ---- where a block device's data is, from sysfs ---- */

/* The first line of a small sysfs file, without its newline; -1 when it
 * cannot be read. */
static int read_line(const char *path, char *out, size_t len)
{
    if (qread_small(path, out, len) < 0)
        return -1;
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

static void sys_dev_path(dev_t d, const char *file, char *out, size_t len)
{
    snprintf(out, len, "/sys/dev/block/%u:%u%s%s", major(d), minor(d), file ? "/" : "",
             file ? file : "");
}

static int parse_devno(const char *text, dev_t *out)
{
    unsigned maj, min;
    if (sscanf(text, "%u:%u", &maj, &min) != 2)
        return -1;
    *out = makedev(maj, min);
    return 0;
}

/* The disk a partition is on; the device itself when it is no partition. */
static dev_t whole_disk(dev_t d)
{
    char path[PATH_MAX], real[PATH_MAX], text[32];
    sys_dev_path(d, "partition", path, sizeof path);
    if (access(path, F_OK) != 0)
        return d;
    sys_dev_path(d, NULL, path, sizeof path);
    if (!realpath(path, real))
        return d;
    char parent[PATH_MAX + 8];
    snprintf(parent, sizeof parent, "%s/dev", dirname(real));
    dev_t w;
    return read_line(parent, text, sizeof text) == 0 && parse_devno(text, &w) == 0 ? w : d;
}

/* One device, or a disk and a partition of it. */
static bool overlap(dev_t a, dev_t b)
{
    return a == b || whole_disk(a) == b || whole_disk(b) == a;
}

/* The file behind a loop device (the disk of a partition's), stat'ed. */
static bool loop_backing(dev_t d, struct stat *st)
{
    char sys[PATH_MAX], file[PATH_MAX];
    sys_dev_path(whole_disk(d), "loop/backing_file", sys, sizeof sys);
    return read_line(sys, file, sizeof file) == 0 && stat(file, st) == 0;
}

bool qblock_same_data(const struct qblock_source *a, const struct qblock_source *b)
{
    if (!a->block && !b->block)
        return a->dev == b->dev && a->ino == b->ino;
    if (a->block && b->block)
        return overlap(a->rdev, b->rdev);
    const struct qblock_source *dev = a->block ? a : b, *file = a->block ? b : a;
    struct stat st;
    return loop_backing(dev->rdev, &st) && st.st_dev == file->dev &&
           st.st_ino == file->ino;
}

/* What a path names now, following links: for comparing with the disks of
 * running domains (whose paths the hypervisor resolved). */
static int identify(const char *path, struct qblock_source *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    if (stat(path, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
        return -1;
    out->block = S_ISBLK(st.st_mode);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->rdev = st.st_rdev;
    return 0;
}

/* ---- a source the user names ---- */

static bool trusted_uid(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

/* Whether someone other than root may put another file in place of
 * `entry` in the directory `dir`. */
static bool others_may_replace(const struct stat *dir, const struct stat *entry)
{
    if (!trusted_uid(dir->st_uid))
        return true;
    bool group_w = (dir->st_mode & S_IWGRP) && dir->st_gid != 0;
    if (!group_w && !(dir->st_mode & S_IWOTH))
        return false;
    /* Sticky: only the entry's owner (or the directory's) may rename it. */
    return !(dir->st_mode & S_ISVTX) || !trusted_uid(entry->st_uid);
}

static void user_name(uid_t uid, char *out, size_t len)
{
    struct passwd *pw = getpwuid(uid);
    if (pw)
        snprintf(out, len, "user %s", pw->pw_name);
    else
        snprintf(out, len, "uid %u", (unsigned)uid);
}

/* Says who may put another file in place of `entry` (whose path is
 * `walked`) in `dir` (`parent`). */
static int refuse_replaceable(const char *source, const char *parent, const struct stat *dir,
                              const char *walked, const struct stat *entry, struct qerr *err)
{
    char who[80], what[PATH_MAX + 64];
    if (!trusted_uid(dir->st_uid)) {
        user_name(dir->st_uid, who, sizeof who);
        snprintf(what, sizeof what, "%s (its owner)", parent);
    } else if (dir->st_mode & S_ISVTX) {
        user_name(entry->st_uid, who, sizeof who);
        snprintf(what, sizeof what, "%s (its owner, in the sticky %s)", walked, parent);
    } else {
        struct group *gr = getgrgid(dir->st_gid);
        if (dir->st_mode & S_IWOTH)
            snprintf(who, sizeof who, "any user");
        else if (gr)
            snprintf(who, sizeof who, "group %s", gr->gr_name);
        else
            snprintf(who, sizeof who, "gid %u", (unsigned)dir->st_gid);
        snprintf(what, sizeof what, "%s (mode %04o)", parent, (unsigned)(dir->st_mode & 07777));
    }
    return qerr_set(err, "%s: %s may change %s, so the file could be replaced between this "
                    "check and the hypervisor's open: keep it where only root can write",
                    source, who, what);
}

static const char *kind(mode_t m)
{
    return S_ISLNK(m) ? "a symbolic link" : S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO"
         : S_ISCHR(m) ? "a character device" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}

int qblock_open_source(const char *path, struct qblock_source *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    cleanup_free char *canon = realpath(path, NULL);
    if (!canon)
        return qerr_errno(err, errno, "%s", path);
    if (strlen(canon) >= sizeof out->path)
        return qerr_set(err, "path too long: %s", canon);
    strcpy(out->path, canon);
    /* Walk it again from /, following no link: what realpath saw must
     * still be there, and stay there. */
    cleanup_close int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat dst, st;
    if (dir < 0 || fstat(dir, &dst) < 0)
        return qerr_errno(err, errno, "cannot open /");
    st = dst;
    char walked[PATH_MAX] = "";
    for (char *p = canon + 1, *slash; *p; p = slash + 1) {
        slash = strchr(p, '/');
        bool last = !slash;
        if (slash)
            *slash = '\0';
        int fd = openat(dir, p, O_PATH | O_NOFOLLOW | O_CLOEXEC | (last ? 0 : O_DIRECTORY));
        if (fd < 0) {
            int e = errno;
            if (e == ELOOP || e == ENOTDIR || e == ENOENT)
                return qerr_set(err, "%s: %s/%s changed while it was being checked", path,
                                walked, p);
            return qerr_errno(err, e, "%s/%s", walked, p);
        }
        if (fstat(fd, &st) < 0) {
            int e = errno;
            close(fd);
            return qerr_errno(err, e, "%s/%s", walked, p);
        }
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", *walked ? walked : "/");
        size_t w = strlen(walked);
        snprintf(walked + w, sizeof walked - w, "/%s", p);
        if (others_may_replace(&dst, &st)) {
            close(fd);
            return refuse_replaceable(out->path, parent, &dst, walked, &st, err);
        }
        qclose(&dir);
        dir = fd;
        dst = st;
        if (last)
            break;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return qerr_set(err, "%s is %s, not a regular file or a block device", out->path,
                        kind(st.st_mode));
    out->block = S_ISBLK(st.st_mode);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->rdev = st.st_rdev;
    return 0;
}

/* ---- the rules --ro lifts ---- */

/* `path` is `dir` or inside it. */
static bool inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0' || n == 1);
}

static void resolved(const char *path, char *out, size_t len)
{
    char *r = realpath(path, NULL);
    snprintf(out, len, "%s", r ? r : path);
    free(r);
}

/* Where the host keeps its VMs: a VM's directory, the DispVM savefiles,
 * qubes.xml and the rest of $QUBES_BASE_DIR (but its image directory), the
 * run directories, the shared-memory directory. */
static int check_host_dirs(const struct qubes_config *cfg, const char *path, struct qerr *err)
{
    char base[PATH_MAX], run[PATH_MAX], shm[PATH_MAX], dir[PATH_MAX + 64];
    resolved(cfg->base_dir, base, sizeof base);
    resolved(cfg->run_dir, run, sizeof run);
    resolved(QRT_SHM_DIR, shm, sizeof shm);
    static const char *const class_dirs[] = { "appvms", "servicevms", "vm-templates" };
    for (size_t i = 0; i < sizeof class_dirs / sizeof *class_dirs; i++) {
        snprintf(dir, sizeof dir, "%s/%s", base, class_dirs[i]);
        size_t n = strlen(dir);
        if (inside(path, dir) && path[n] == '/') {
            char vm[QUBES_NAME_MAX + 2];
            snprintf(vm, sizeof vm, "%.*s", (int)strcspn(path + n + 1, "/"), path + n + 1);
            return qerr_set(err, "%s is in the directory of VM '%s': it may only be attached "
                            "read-only (--ro)", path, vm);
        }
    }
    snprintf(dir, sizeof dir, "%s/%s", base, QBLOCK_IMAGE_DIR);
    if (inside(path, base) && !(inside(path, dir) && strcmp(path, dir) != 0))
        return qerr_set(err, "%s is in %s, the VMs' database and files (image files go in %s): "
                        "it may only be attached read-only (--ro)", path, base, dir);
    if (inside(path, run))
        return qerr_set(err, "%s is in %s, the VMs' run directories: it may only be attached "
                        "read-only (--ro)", path, run);
    if (inside(path, shm))
        return qerr_set(err, "%s is in %s, the DispVMs' memory and savefiles: it may only be "
                        "attached read-only (--ro)", path, shm);
    return 0;
}

/* A mounted file system on the device (or on a partition of it, or on the
 * disk holding it): *where gets its mount point. */
static bool mounted(dev_t d, char *where, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (f && !found && getline(&line, &cap, f) > 0) {
        char devno[32], mnt[PATH_MAX];
        if (sscanf(line, "%*d %*d %31s %*s %4095s", devno, mnt) != 2)
            continue;
        dev_t md;
        const char *sep = strstr(line, " - ");
        char fstype[64], source[PATH_MAX];
        struct stat st;
        found = (parse_devno(devno, &md) == 0 && major(md) != 0 && overlap(md, d)) ||
                (sep && sscanf(sep + 3, "%63s %4095s", fstype, source) == 2 &&
                 strncmp(source, "/dev/", 5) == 0 && stat(source, &st) == 0 &&
                 S_ISBLK(st.st_mode) && overlap(st.st_rdev, d));
        if (found)
            snprintf(where, len, "%s", mnt);
    }
    free(line);
    if (f)
        fclose(f);
    return found;
}

/* Swap on the source (a device, a partition of it, a file). */
static bool swap_on(const struct qblock_source *s, char *what, size_t len)
{
    FILE *f = fopen("/proc/swaps", "re");
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    /* The header line names no file. */
    while (f && !found && getline(&line, &cap, f) > 0) {
        char name[PATH_MAX];
        struct qblock_source sw;
        if (sscanf(line, "%4095s", name) == 1 && identify(name, &sw) == 0 &&
            qblock_same_data(&sw, s)) {
            found = true;
            snprintf(what, len, "%s", name);
        }
    }
    free(line);
    if (f)
        fclose(f);
    return found;
}

/* A device built on `sys` (a device's sysfs directory): device-mapper, md,
 * bcache. *who gets its name. */
static bool has_holder(const char *sys, char *who, size_t len)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/holders", sys);
    DIR *d = opendir(path);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        if (e->d_name[0] != '.') {
            snprintf(who, len, "%s", e->d_name);
            found = true;
        }
    if (d)
        closedir(d);
    return found;
}

/* Another device built on this one or on a partition of it. */
static bool held(dev_t d, char *who, size_t len)
{
    char sys[PATH_MAX];
    sys_dev_path(d, NULL, sys, sizeof sys);
    if (has_holder(sys, who, len))
        return true;
    DIR *top = opendir(sys);
    bool found = false;
    for (struct dirent *e; top && !found && (e = readdir(top));) {
        char part[PATH_MAX + 300];
        snprintf(part, sizeof part, "%s/%s/partition", sys, e->d_name);
        if (e->d_name[0] == '.' || access(part, F_OK) != 0)
            continue;
        snprintf(part, sizeof part, "%s/%s", sys, e->d_name);
        found = has_holder(part, who, len);
    }
    if (top)
        closedir(top);
    return found;
}

/* A loop device over the file: *which gets its name. */
static bool backs_loop(const struct qblock_source *s, char *which, size_t len)
{
    DIR *d = opendir("/sys/block");
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        char sys[PATH_MAX], text[32];
        dev_t ld;
        struct stat st;
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        snprintf(sys, sizeof sys, "/sys/block/%s/dev", e->d_name);
        if (read_line(sys, text, sizeof text) == 0 && parse_devno(text, &ld) == 0 &&
            loop_backing(ld, &st) && st.st_dev == s->dev && st.st_ino == s->ino) {
            snprintf(which, len, "/dev/%s", e->d_name);
            found = true;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* In use on the host: 0, or -1 with why. */
static int check_host_use(const struct qblock_source *s, struct qerr *err)
{
    char what[PATH_MAX];
    if (s->block && mounted(s->rdev, what, sizeof what))
        return qerr_set(err, "%s holds a file system mounted on %s", s->path, what);
    if (swap_on(s, what, sizeof what))
        return qerr_set(err, "%s is in use as swap (%s)", s->path, what);
    if (s->block && held(s->rdev, what, sizeof what))
        return qerr_set(err, "%s is in use by %s", s->path, what);
    if (!s->block && backs_loop(s, what, sizeof what))
        return qerr_set(err, "%s is the backing file of %s", s->path, what);
    return 0;
}

int qblock_check_writable(const struct qubes_config *cfg, const struct qblock_source *s,
                          struct qerr *err)
{
    if (check_host_dirs(cfg, s->path, err) < 0)
        return -1;
    if (check_host_use(s, err) < 0)
        return qerr_prefix(err, "in use on the host (attach it read-only with --ro, or stop "
                           "using it)");
    return 0;
}

/* ---- frontends ---- */

bool qblock_valid_frontend(const char *dev)
{
    return strlen(dev) == 3 && dev[0] == 'v' && dev[1] == 'd' && dev[2] >= 'b' && dev[2] <= 'z';
}

static const struct vmm_disk *disk_at(const struct vmm_disk *disks, size_t n, const char *target)
{
    for (size_t i = 0; i < n; i++)
        if (!disks[i].backing && disks[i].target && strcmp(disks[i].target, target) == 0)
            return &disks[i];
    return NULL;
}

int qblock_pick_frontend(const struct vmm_disk *disks, size_t n, const char *wanted,
                         char out[8], struct qerr *err)
{
    if (wanted) {
        if (!qblock_valid_frontend(wanted))
            return qerr_set(err, "frontend '%s': one of vdb to vdz", wanted);
        const struct vmm_disk *d = disk_at(disks, n, wanted);
        if (d)
            return qerr_set(err, "frontend %s is taken (by %s)", wanted,
                            d->source ? d->source : "a disk");
        snprintf(out, 8, "%s", wanted);
        return 0;
    }
    for (char c = 'b'; c <= 'z'; c++) {
        snprintf(out, 8, "vd%c", c);
        if (!disk_at(disks, n, out))
            return 0;
    }
    return qerr_set(err, "no free frontend: vdb to vdz are all taken");
}

/* ---- the running domains' disks ---- */

struct scan {
    struct vmm_domain *doms;
    size_t ndoms;
    struct vmm_disk **disks;    /* per domain; NULL for one that does not run */
    size_t *ndisks;
};

static void scan_free(struct scan *s)
{
    for (size_t i = 0; s->disks && i < s->ndoms; i++)
        vmm_disks_free(s->disks[i], s->ndisks[i]);
    free(s->disks);
    free(s->ndisks);
    vmm_domains_free(s->doms, s->ndoms);
    memset(s, 0, sizeof *s);
}

/* Every running domain of the hypervisor (domain names are host-wide: those
 * of other databases too) with its disks. */
static int scan_domains(struct qubes *q, struct scan *s, struct qerr *err)
{
    memset(s, 0, sizeof *s);
    if (vmm_list_domains(&q->vmm, &s->doms, &s->ndoms, err) < 0)
        return -1;
    s->disks = calloc(s->ndoms + 1, sizeof *s->disks);
    s->ndisks = calloc(s->ndoms + 1, sizeof *s->ndisks);
    if (!s->disks || !s->ndisks) {
        scan_free(s);
        return qerr_errno(err, ENOMEM, "listing the domains' disks");
    }
    for (size_t i = 0; i < s->ndoms; i++) {
        if (s->doms[i].id < 0)
            continue;
        struct qerr e;
        if (vmm_domain_disks(&q->vmm, s->doms[i].name, &s->disks[i], &s->ndisks[i], &e) < 0) {
            /* A domain that went meanwhile has no disks; another error counts. */
            enum qvm_power st;
            if (vmm_domain_state(&q->vmm, s->doms[i].name, &st, err) == 0 &&
                st == QVM_POWER_HALTED)
                continue;
            *err = e;
            scan_free(s);
            return -1;
        }
    }
    return 0;
}

/* The running domain and disk whose data the source reaches, if any. */
static bool find_user(const struct scan *s, const struct qblock_source *src, const char **dom,
                      const struct vmm_disk **disk, const struct vmm_disk **owner)
{
    for (size_t i = 0; i < s->ndoms; i++) {
        const struct vmm_disk *top = NULL;
        for (size_t k = 0; k < s->ndisks[i]; k++) {
            const struct vmm_disk *d = &s->disks[i][k];
            if (!d->backing)
                top = d;
            if (!d->source)
                continue;
            struct qblock_source other;
            bool same = identify(d->source, &other) == 0 ? qblock_same_data(&other, src)
                                                         : strcmp(d->source, src->path) == 0;
            if (same) {
                *dom = s->doms[i].name;
                *disk = d;
                *owner = top;
                return true;
            }
        }
    }
    return false;
}

static bool ours(const struct vmm_disk *d)
{
    return !d->backing && d->tag && d->target &&
           strncmp(d->tag, QBLOCK_TAG_PREFIX, strlen(QBLOCK_TAG_PREFIX)) == 0;
}

/* ---- listing ---- */

static int add_attached(struct qblock_list *l, const char *vm, const struct vmm_disk *d)
{
    struct qblock_attached *bigger = realloc(l->attached, (l->nattached + 1) * sizeof *bigger);
    if (!bigger)
        return -1;
    l->attached = bigger;
    struct qblock_attached *a = &l->attached[l->nattached];
    a->vm = strdup(vm);
    a->frontend = strdup(d->target);
    a->source = strdup(d->source ? d->source : "-");
    a->readonly = d->readonly;
    l->nattached++;
    return a->vm && a->frontend && a->source ? 0 : -1;
}

static int add_available(struct qblock_list *l, const char *path, unsigned long long bytes,
                         const char *what, bool block)
{
    struct qblock_available *bigger = realloc(l->available, (l->navailable + 1) * sizeof *bigger);
    if (!bigger)
        return -1;
    l->available = bigger;
    struct qblock_available *a = &l->available[l->navailable++];
    a->path = strdup(path);
    a->what = strdup(what);
    a->bytes = bytes;
    a->block = block;
    return a->path && a->what ? 0 : -1;
}

/* Whether a source can be attached: free of the host and, when the
 * hypervisor was asked, of every running domain. */
static bool free_source(const struct qblock_source *s, const struct scan *sc)
{
    const char *dom;
    const struct vmm_disk *d, *owner;
    struct qerr e;
    return check_host_use(s, &e) == 0 && !(sc && find_user(sc, s, &dom, &d, &owner));
}

/* A sysfs attribute of the device `sys`, "" when it has none. */
static const char *sys_attr(const char *sys, const char *name, char *out, size_t len)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", sys, name);
    if (read_line(path, out, len) < 0)
        out[0] = '\0';
    return out;
}

/* A host block device's description: what kind, and what names it. */
static void describe(const char *sys, char *out, size_t len)
{
    char a[256], b[256], path[PATH_MAX + 8], real[PATH_MAX];
    if (*sys_attr(sys, "partition", a, sizeof a)) {
        snprintf(path, sizeof path, "%s/..", sys);
        const char *slash = realpath(path, real) ? strrchr(real, '/') : NULL;
        snprintf(out, len, "partition %s of %s", a, slash ? slash + 1 : "?");
    } else if (*sys_attr(sys, "loop/backing_file", a, sizeof a)) {
        snprintf(out, len, "loop device of %s", a);
    } else if (*sys_attr(sys, "dm/name", a, sizeof a)) {
        snprintf(out, len, "device-mapper %s", a);
    } else {
        char rm[8];
        sys_attr(sys, "device/vendor", a, sizeof a);
        sys_attr(sys, "device/model", b, sizeof b);
        snprintf(out, len, "%sdisk %s %s", *sys_attr(sys, "removable", rm, sizeof rm) == '1' ?
                 "removable " : "", a, b);
        /* Vendors pad their names. */
        for (char *p = out; (p = strstr(p, "  "));)
            memmove(p, p + 1, strlen(p));
        for (size_t n = strlen(out); n && out[n - 1] == ' ';)
            out[--n] = '\0';
    }
    if (*sys_attr(sys, "ro", a, sizeof a) == '1') {
        size_t n = strlen(out);
        snprintf(out + n, len - n, ", read-only");
    }
}

static int cmp_available(const void *x, const void *y)
{
    const struct qblock_available *a = x, *b = y;
    if (a->block != b->block)
        return a->block ? -1 : 1;
    return strcmp(a->path, b->path);
}

/* Host block devices (disks and partitions of /sys/class/block with a
 * node in /dev and a size), not in use. */
static int list_host_devices(struct qblock_list *l, const struct scan *sc, struct qerr *err)
{
    DIR *d = opendir("/sys/class/block");
    if (!d)
        return 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char sys[PATH_MAX], path[PATH_MAX + 64], text[64], dev[PATH_MAX], what[600];
        if (e->d_name[0] == '.')
            continue;
        snprintf(sys, sizeof sys, "/sys/class/block/%s", e->d_name);
        snprintf(path, sizeof path, "%s/size", sys);
        unsigned long long sectors = 0;
        if (read_line(path, text, sizeof text) < 0 || sscanf(text, "%llu", &sectors) != 1 ||
            sectors == 0)
            continue;
        /* Its node: DEVNAME of its uevent, the same device. */
        snprintf(path, sizeof path, "%s/uevent", sys);
        char uevent[1024];
        const char *dn;
        struct qblock_source s;
        if (qread_small(path, uevent, sizeof uevent) < 0 || !(dn = strstr(uevent, "DEVNAME=")))
            continue;
        snprintf(dev, sizeof dev, "/dev/%.*s", (int)strcspn(dn + 8, "\n"), dn + 8);
        snprintf(path, sizeof path, "%s/dev", sys);
        dev_t num;
        if (read_line(path, text, sizeof text) < 0 || parse_devno(text, &num) < 0 ||
            identify(dev, &s) < 0 || !s.block || s.rdev != num || !free_source(&s, sc))
            continue;
        describe(sys, what, sizeof what);
        if (add_available(l, dev, sectors * 512, what, true) < 0)
            rc = qerr_errno(err, ENOMEM, "listing block devices");
    }
    closedir(d);
    return rc;
}

/* The regular files of the image directory, not in use. */
static int list_image_files(struct qubes *q, struct qblock_list *l, const struct scan *sc,
                            struct qerr *err)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/%s", q->cfg.base_dir, QBLOCK_IMAGE_DIR);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char path[PATH_MAX + 300];
        struct stat st;
        struct qblock_source s;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (identify(path, &s) < 0 || !free_source(&s, sc))
            continue;
        if (add_available(l, path, (unsigned long long)st.st_size, "image file", false) < 0)
            rc = qerr_errno(err, ENOMEM, "listing image files");
    }
    closedir(d);
    return rc;
}

int qblock_list(struct qubes *q, struct qblock_list *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    struct scan sc = { 0 };
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    if (!q->vmm.offline) {
        if (scan_domains(q, &sc, err) < 0)
            return -1;
        out->attached_known = true;
        for (size_t i = 0; i < sc.ndoms; i++) {
            if (!qvm_collection_by_name(q->coll, sc.doms[i].name))
                continue;       /* another database's */
            for (size_t k = 0; k < sc.ndisks[i]; k++)
                if (ours(&sc.disks[i][k]) && add_attached(out, sc.doms[i].name,
                                                          &sc.disks[i][k]) < 0) {
                    scan_free(&sc);
                    qblock_list_free(out);
                    return qerr_errno(err, ENOMEM, "listing attached devices");
                }
        }
    }
    const struct scan *scp = out->attached_known ? &sc : NULL;
    int rc = list_host_devices(out, scp, err) < 0 || list_image_files(q, out, scp, err) < 0
             ? -1 : 0;
    scan_free(&sc);
    if (rc < 0) {
        qblock_list_free(out);
        return -1;
    }
    if (out->navailable > 1)
        qsort(out->available, out->navailable, sizeof *out->available, cmp_available);
    return 0;
}

void qblock_list_free(struct qblock_list *l)
{
    for (size_t i = 0; i < l->nattached; i++) {
        free(l->attached[i].vm);
        free(l->attached[i].frontend);
        free(l->attached[i].source);
    }
    for (size_t i = 0; i < l->navailable; i++) {
        free(l->available[i].path);
        free(l->available[i].what);
    }
    free(l->attached);
    free(l->available);
    memset(l, 0, sizeof *l);
}

/* ---- attaching and detaching ---- */

/* The VM of the database, running (its agent need not have answered). */
static int running_vm(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st;
    if (qvm_check_name(name, err) < 0 || qubes_load_for_reading(q, err) < 0 ||
        !(vm = qubes_find_vm(q, name, err)))
        return -1;
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 is the host: its block devices are the ones to attach");
    /* Offline, every VM reads as Halted: say why instead. */
    if (vmm_require(&q->vmm, err) < 0 || qubes_vm_power(q, vm, NULL, &st, err) < 0)
        return -1;
    if (st == QVM_POWER_PAUSED)
        return qerr_set(err, "VM '%s' is paused: unpause it first", name);
    if (st != QVM_POWER_RUNNING && st != QVM_POWER_TRANSIENT)
        return qerr_set(err, "VM '%s' is not running (%s)", name, qvm_power_name(st));
    return 0;
}

int qblock_attach(struct qubes *q, const struct qblock_attach_opts *o, char frontend[8],
                  char *source, size_t len, struct qerr *err)
{
    struct qblock_source s;
    if (o->frontend && !qblock_valid_frontend(o->frontend))
        return qerr_set(err, "frontend '%s': one of vdb to vdz", o->frontend);
    if (running_vm(q, o->vm, err) < 0 || qblock_open_source(o->source, &s, err) < 0 ||
        (!o->readonly && qblock_check_writable(&q->cfg, &s, err) < 0))
        return -1;
    /* From the look at the domains to the attach: no other attach between. */
    cleanup_close int lock = qrt_lock(&q->cfg, QBLOCK_LOCK, err);
    struct scan sc;
    if (lock < 0 || scan_domains(q, &sc, err) < 0)
        return -1;
    const char *dom;
    const struct vmm_disk *d, *owner;
    int rc = 0;
    if (find_user(&sc, &s, &dom, &d, &owner)) {
        if (d->backing)
            rc = qerr_set(err, "%s is in use by '%s' (a backing file of its %s): it cannot be "
                          "attached to another VM", s.path, dom,
                          owner && owner->target ? owner->target : "disk");
        else if (strcmp(dom, o->vm) == 0)
            rc = qerr_set(err, "%s is already attached to '%s' as %s", s.path, dom,
                          d->target ? d->target : "a disk");
        else
            rc = qerr_set(err, "%s is attached to '%s' as %s: it cannot be attached to another "
                          "VM", s.path, dom, d->target ? d->target : "a disk");
    }
    size_t i;
    for (i = 0; rc == 0 && i < sc.ndoms && strcmp(sc.doms[i].name, o->vm) != 0; i++)
        ;
    if (rc == 0 && i == sc.ndoms)
        rc = qerr_set(err, "VM '%s' is not running", o->vm);
    if (rc == 0 && qblock_pick_frontend(sc.disks[i], sc.ndisks[i], o->frontend, frontend, err) < 0)
        rc = qerr_prefix(err, "VM '%s'", o->vm);
    if (rc == 0) {
        char tag[32];
        snprintf(tag, sizeof tag, QBLOCK_TAG_PREFIX "%s", frontend);
        struct vmm_disk_spec spec = { .source = s.path, .block = s.block,
                                      .readonly = o->readonly, .target = frontend, .tag = tag };
        rc = vmm_attach_disk(&q->vmm, o->vm, &spec, err);
    }
    scan_free(&sc);
    if (rc == 0 && source)
        snprintf(source, len, "%s", s.path);
    return rc;
}

/* Until none of the VM's disks has one of the `n` targets, or the deadline. */
static int wait_gone(struct qubes *q, const char *vm, char (*targets)[8], size_t n, long deadline,
                     struct qerr *err)
{
    for (;;) {
        struct vmm_disk *disks;
        size_t nd;
        if (vmm_domain_disks(&q->vmm, vm, &disks, &nd, err) < 0)
            return -1;
        const char *left = NULL;
        for (size_t i = 0; i < n && !left; i++)
            if (disk_at(disks, nd, targets[i]))
                left = targets[i];
        vmm_disks_free(disks, nd);
        if (!left)
            return 0;
        if (qnow_ms() > deadline)
            return qerr_set(err, "VM '%s' did not let %s go: the guest still holds it (it goes "
                            "when the guest releases it, or when the VM stops)", vm, left);
        usleep(100000);
    }
}

int qblock_detach(struct qubes *q, const char *vm, const char *frontend, long timeout_ms,
                  int *count, struct qerr *err)
{
    long deadline = qnow_ms() + timeout_ms;
    struct vmm_disk *disks;
    size_t nd;
    if (count)
        *count = 0;
    if (running_vm(q, vm, err) < 0 || vmm_domain_disks(&q->vmm, vm, &disks, &nd, err) < 0)
        return -1;
    char (*targets)[8] = calloc(nd + 1, sizeof *targets);
    size_t n = 0;
    int rc = targets ? 0 : qerr_errno(err, ENOMEM, "detaching from %s", vm);
    if (rc == 0 && frontend) {
        const struct vmm_disk *d = disk_at(disks, nd, frontend);
        if (!d)
            rc = qerr_set(err, "VM '%s' has no device %s", vm, frontend);
        else if (!ours(d))
            rc = qerr_set(err, "%s of VM '%s' was not attached by qvm-block (one of the VM's "
                          "own disks is not detached)", frontend, vm);
    }
    for (size_t i = 0; rc == 0 && i < nd; i++) {
        const struct vmm_disk *d = &disks[i];
        if (!ours(d) || (frontend && strcmp(d->target, frontend) != 0))
            continue;
        struct vmm_disk_spec spec = { .source = d->source, .block = d->block,
                                      .readonly = d->readonly, .target = d->target };
        if (!d->source)
            rc = qerr_set(err, "%s of VM '%s' has no source to detach", d->target, vm);
        else if (vmm_detach_disk(&q->vmm, vm, &spec, err) < 0)
            rc = -1;
        else
            snprintf(targets[n++], 8, "%s", d->target);
    }
    vmm_disks_free(disks, nd);
    if (n > 0 && wait_gone(q, vm, targets, n, deadline, err) < 0)
        rc = -1;
    else if (rc == 0 && count)
        *count = (int)n;
    free(targets);
    return rc;
}

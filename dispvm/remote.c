#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/util.h"
#include "savefile.h"

static int set_names(const char *dvm, const char *gen, struct dispvm_remote_set *out,
                     struct qerr *err)
{
    char kind[3][48];
    snprintf(out->gen, sizeof out->gen, "%s", gen);
    snprintf(kind[0], sizeof kind[0], "savefile-%s", gen);
    snprintf(kind[1], sizeof kind[1], "root-%s.img", gen);
    snprintf(kind[2], sizeof kind[2], "private-%s.img", gen);
    return qhost_volume_name(dvm, kind[0], out->savefile, sizeof out->savefile, err) < 0 ||
                   qhost_volume_name(dvm, kind[1], out->root, sizeof out->root, err) < 0 ||
                   qhost_volume_name(dvm, kind[2], out->priv, sizeof out->priv, err) < 0
               ? -1 : 0;
}

int dispvm_remote_current(const struct dispvm_template *t, struct dispvm_remote_set *out,
                          struct qerr *err)
{
    char gen[32];
    if (qread_small(t->set.gen, gen, sizeof gen) < 0)
        return errno == ENOENT ? 0 : qerr_errno(err, errno, "cannot read %s", t->set.gen);
    gen[strcspn(gen, "\n")] = '\0';
    if (!gen[0] || strspn(gen, "0123456789") != strlen(gen))
        return qerr_set(err, "%s: not a generation (digits)", t->set.gen);
    return set_names(t->dvm, gen, out, err) < 0 ? -1 : 1;
}

void dispvm_remote_discard(struct vmm *vmm, const struct dispvm_remote_set *n)
{
    const char *vols[] = { n->savefile, n->root, n->priv };
    for (size_t i = 0; i < 3; i++)
        vmm_volume_delete(vmm, QHOST_POOL, vols[i], NULL);
}

/* A volume's path there; a missing one is an error. */
static int path_of(struct vmm *vmm, const char *vol, char *out, size_t len, struct qerr *err)
{
    int rc = vmm_volume_path(vmm, QHOST_POOL, vol, out, len, err);
    return rc < 0 ? -1 : rc == 0 ? qerr_set(err, "no volume %s in pool %s", vol, QHOST_POOL) : 0;
}

/* The savefile's header, read from its volume: its fixed part says how
 * long the rest is. */
static int read_header(struct vmm *vmm, const char *vol, void **out, size_t *len,
                       struct qerr *err)
{
    unsigned char fixed[SAVEFILE_FIXED_SIZE];
    size_t got, need;
    *out = NULL;
    if (vmm_volume_read(vmm, QHOST_POOL, vol, 0, fixed, sizeof fixed, &got, err) < 0 ||
        savefile_header_size(fixed, got, &need, err) < 0)
        return -1;
    void *buf = malloc(need);
    if (!buf)
        return qerr_errno(err, ENOMEM, "the header of %s", vol);
    if (vmm_volume_read(vmm, QHOST_POOL, vol, 0, buf, need, &got, err) < 0 || got != need) {
        free(buf);
        return got != need ? qerr_set(err, "volume %s: its header is cut short", vol) : -1;
    }
    *out = buf;
    *len = need;
    return 0;
}

/* The DispVM identity the header must have room for: the longest name,
 * with its volumes in the pool's directory. */
static int check_room(const char *pool_dir, const void *header, size_t hlen, struct qerr *err)
{
    struct savefile_info si;
    char root[PATH_MAX], priv[PATH_MAX], name[16];
    snprintf(name, sizeof name, "disp%d", DISPVM_MAX_DISPID);
    snprintf(root, sizeof root, "%s/%s.root.qcow2", pool_dir, name);
    snprintf(priv, sizeof priv, "%s/%s.private.qcow2", pool_dir, name);
    struct savefile_identity id = {
        .name = name, .uuid = "00000000-0000-0000-0000-000000000000",
        .genid = "00000000-0000-0000-0000-000000000000", .disks = { root, priv },
        .formats = { "qcow2", "qcow2" }, .ndisks = 2,
    };
    void *h = NULL;
    size_t len;
    if (savefile_parse_header(header, hlen, &si, err) < 0)
        return -1;
    int rc = savefile_header_as(&si, &id, &h, &len, err);
    free(h);
    savefile_info_free(&si);
    return rc;
}

int dispvm_remote_save(struct vmm *vmm, const struct dispvm_template *t,
                       struct dispvm_remote_set *n, void **header, size_t *hlen, FILE *progress,
                       struct qerr *err)
{
    struct timespec ts;
    char gen[24], path[PATH_MAX], from[QHOST_VOLUME_NAME_MAX];
    unsigned long long sent;
    *header = NULL;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(gen, sizeof gen, "%lld%09ld", (long long)ts.tv_sec, ts.tv_nsec);
    if (set_names(t->dvm, gen, n, err) < 0)
        return -1;
    qsay(progress, "--> Saving '%s' on host %s (volume %s)", t->dvm, t->host, n->savefile);
    /* The savefile is written by that host's daemon at the path of a volume
     * made for it. On failure, every volume of the new generation goes
     * (deleting one not made yet is no error). */
    if (vmm_volume_upload(vmm, QHOST_POOL, n->savefile, NULL, 0, &sent, err) < 0 ||
        path_of(vmm, n->savefile, path, sizeof path, err) < 0 ||
        vmm_save(vmm, t->dvm, path, err) < 0)
        goto fail;
    /* Its disks as the saved memory believes them: the root layer made at
     * its start, flattened (its backing file may be replaced when the
     * template changes), and its private image. */
    if (qhost_volume_name(t->dvm, "volatile.img", from, sizeof from, err) < 0 ||
        vmm_volume_clone(vmm, QHOST_POOL, n->root, from, "qcow2", err) < 0 ||
        qhost_volume_name(t->dvm, "private.img", from, sizeof from, err) < 0 ||
        vmm_volume_clone(vmm, QHOST_POOL, n->priv, from, "raw", err) < 0)
        goto fail;
    char *slash = strrchr(path, '/');
    if (slash)
        *slash = '\0';
    if (read_header(vmm, n->savefile, header, hlen, err) < 0 ||
        check_room(path, *header, *hlen, err) < 0)
        goto fail;
    return 0;
fail:
    free(*header);
    *header = NULL;
    dispvm_remote_discard(vmm, n);
    return qerr_prefix(err, "saving '%s' on host '%s'", t->dvm, t->host);
}

int dispvm_remote_install(struct vmm *vmm, const struct dispvm_template *t,
                          const struct dispvm_remote_set *n, const void *header, size_t hlen,
                          const char *stamp, struct qerr *err)
{
    cleanup_close int lock = dvmdata_lock(&t->set, true, err);
    if (lock < 0)
        return -1;
    struct dispvm_remote_set old;
    struct qerr ignored;
    int had = dispvm_remote_current(t, &old, &ignored);
    /* Unusable (no stamp) until the header and generation agree. */
    if ((unlink(t->set.meta) < 0 && errno != ENOENT) ||
        qwrite_file_atomic(t->set.header, header, hlen, 0644, err) < 0 ||
        qwrite_file_atomic(t->set.gen, n->gen, strlen(n->gen), 0644, err) < 0 ||
        qwrite_file_atomic(t->set.meta, stamp, strlen(stamp), 0644, err) < 0)
        return qerr_prefix(err, "cannot put the savefile set of '%s' in place", t->dvm);
    if (had == 1 && strcmp(old.gen, n->gen) != 0)
        dispvm_remote_discard(vmm, &old);
    return 0;
}

/* The set's header, from its copy here. */
static int local_header(const struct dispvm_template *t, struct savefile_info *si,
                        struct qerr *err)
{
    cleanup_close int fd = open(t->set.header, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    size_t len;
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", t->set.header);
    cleanup_free char *buf = qread_fd(fd, &len);
    if (!buf)
        return qerr_errno(err, errno, "cannot read %s", t->set.header);
    return savefile_parse_header(buf, len, si, err) < 0 ? qerr_prefix(err, "%s", t->set.header)
                                                        : 0;
}

int dispvm_remote_restore(struct vmm *vmm, struct dispvm_state *d, struct qerr *err)
{
    const struct dispvm_template *t = d->tpl;
    struct dispvm_remote_set set;
    char vol[3][QHOST_VOLUME_NAME_MAX], path[3][PATH_MAX];
    static const char *const kinds[] = { "root.qcow2", "private.qcow2", "savefile" };
    int rc = dispvm_remote_current(t, &set, err);
    if (rc <= 0)
        return rc < 0 ? -1 : qerr_set(err, "no savefile of '%s' on host '%s' (run "
                                      "qvm-create-default-dvm --host %s %s)", t->name, t->host,
                                      t->host, t->name);
    for (int i = 0; i < 3; i++)
        if (qhost_volume_name(d->name, kinds[i], vol[i], sizeof vol[i], err) < 0)
            return -1;
    /* From here on, volumes of it may exist there. */
    d->has_domain = true;
    if (qhost_volumes_delete(vmm, d->name, err) < 0 ||      /* a leftover's */
        vmm_volume_layer(vmm, QHOST_POOL, vol[0], set.root, err) < 0 ||
        vmm_volume_layer(vmm, QHOST_POOL, vol[1], set.priv, err) < 0 ||
        vmm_volume_clone(vmm, QHOST_POOL, vol[2], set.savefile, "raw", err) < 0)
        return qerr_prefix(err, "the volumes of %s on host '%s'", d->name, t->host);
    for (int i = 0; i < 3; i++)
        if (path_of(vmm, vol[i], path[i], sizeof path[i], err) < 0)
            return -1;
    struct savefile_info si;
    struct savefile_identity id = {
        .name = d->name, .uuid = d->uuid, .genid = d->genid,
        .disks = { path[0], path[1] }, .formats = { "qcow2", "qcow2" }, .ndisks = 2,
    };
    void *h = NULL;
    size_t hlen;
    if (local_header(t, &si, err) < 0)
        return -1;
    rc = savefile_header_as(&si, &id, &h, &hlen, err);
    savefile_info_free(&si);
    if (rc == 0)
        rc = vmm_volume_write(vmm, QHOST_POOL, vol[2], 0, h, hlen, err);
    free(h);
    qsay(d->progress, "--> Restoring %s on host %s from %s", d->name, t->host, set.savefile);
    if (rc == 0 && vmm_restore(vmm, path[2], err) < 0)
        rc = qerr_prefix(err, "%s on host '%s'", d->name, t->host);
    /* Its emulator has read it: the copy goes. */
    struct qerr ignored;
    vmm_volume_delete(vmm, QHOST_POOL, vol[2], &ignored);
    return rc;
}

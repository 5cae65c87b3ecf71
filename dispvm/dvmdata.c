#include "dvmdata.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vm.h"
#include "../storage/storage.h"
#include "shmem.h"

int dvmdata_path(const struct qubes_config *cfg, const char *file, char *out, size_t len,
                 struct qerr *err)
{
    int n = file ? snprintf(out, len, "%s/dvmdata/%s", cfg->base_dir, file)
                 : snprintf(out, len, "%s/dvmdata", cfg->base_dir);
    if (n < 0 || (size_t)n >= len)
        return qerr_set(err, "path of %s in dvmdata is too long", file ? file : "dvmdata");
    return 0;
}

int dvmdata_of(const struct qubes_config *cfg, const char *dvm, struct dvmdata *out,
               struct qerr *err)
{
    static const char *const parts[] = { "savefile", "root.qcow2", "private.img", "meta", "shm",
                                         "root-layer.qcow2", "private-layer.qcow2", "lock",
                                         "header", "gen" };
    char *const dst[] = { out->savefile, out->root, out->priv, out->meta, out->shm_record,
                          out->root_layer, out->priv_layer, out->lock, out->header, out->gen };
    char file[QUBES_NAME_MAX + 32];
    if (strlen(dvm) > QUBES_NAME_MAX)
        return qerr_set(err, "'%s' is too long a name for a DispVM template", dvm);
    if (dvmdata_path(cfg, NULL, out->dir, sizeof out->dir, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        snprintf(file, sizeof file, "%s.%s", dvm, parts[i]);
        if (dvmdata_path(cfg, file, dst[i], PATH_MAX, err) < 0)
            return -1;
    }
    snprintf(file, sizeof file, "%s.savefile", dvm);
    return qrt_shm_path(file, out->shm_copy, sizeof out->shm_copy, err);
}

int dvmdata_lock(const struct dvmdata *set, bool exclusive, struct qerr *err)
{
    if (qmkdirs(set->dir, err) < 0)
        return -1;
    int fd = open(set->lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", set->lock);
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return qerr_errno(err, e, "cannot lock %s", set->lock);
        }
    }
    return fd;
}

/* "DEV INO SIZE" of a file we may trust: a regular file of ours. */
static int file_id(const char *path, char *out, size_t len)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return -1;
    snprintf(out, len, "%llu %llu %lld\n", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size);
    return 0;
}

int dvmdata_publish_shm(const struct dvmdata *set, struct qerr *err)
{
    char tmp[PATH_MAX + 8], id[96], link[PATH_MAX];
    unlink(set->shm_record);
    if (qrt_shm_dir(true, err) < 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", set->shm_copy);
    unlink(tmp);
    if (storage_copy_sparse(set->savefile, tmp, err) < 0 || chmod(tmp, 0600) < 0 ||
        rename(tmp, set->shm_copy) < 0) {
        unlink(tmp);
        return qerr_prefix(err, "no copy of the savefile in %s", QRT_SHM_DIR);
    }
    if (file_id(set->shm_copy, id, sizeof id) < 0 ||
        qwrite_file_atomic(set->shm_record, id, strlen(id), 0644, err) < 0)
        return qerr_prefix(err, "the copy of the savefile in %s is not recorded", QRT_SHM_DIR);
    if (qrt_shm_path(DVMDATA_SHM_CURRENT, link, sizeof link, err) < 0)
        return -1;
    unlink(link);
    if (symlink(set->shm_copy, link) < 0)
        return qerr_errno(err, errno, "cannot link %s", link);
    return 0;
}

void dvmdata_unpublish_shm(const struct dvmdata *set, bool remove)
{
    char link[PATH_MAX], target[PATH_MAX];
    unlink(set->shm_record);
    if (!remove || qrt_shm_dir(false, NULL) < 0)
        return;
    unlink(set->shm_copy);
    ssize_t n = qrt_shm_path(DVMDATA_SHM_CURRENT, link, sizeof link, NULL) == 0
                    ? readlink(link, target, sizeof target - 1) : -1;
    if (n > 0 && (target[n] = '\0', strcmp(target, set->shm_copy) == 0))
        unlink(link);
}

const char *dvmdata_restore_from(const struct dvmdata *set)
{
    char was[96], now[96];
    if (qrt_shm_dir(false, NULL) == 0 && qread_small(set->shm_record, was, sizeof was) == 0 &&
        file_id(set->shm_copy, now, sizeof now) == 0 && strcmp(was, now) == 0)
        return set->shm_copy;
    return set->savefile;
}

int dvmdata_forget(const struct qubes_config *cfg, const char *dvm)
{
    struct dvmdata set;
    char links[2][PATH_MAX], target[PATH_MAX];
    if (qvm_check_name(dvm, NULL) < 0 || dvmdata_of(cfg, dvm, &set, NULL) < 0 ||
        dvmdata_path(cfg, DVMDATA_DEFAULT_SAVEFILE, links[0], sizeof links[0], NULL) < 0 ||
        qrt_shm_path(DVMDATA_SHM_CURRENT, links[1], sizeof links[1], NULL) < 0)
        return 0;
    int had = access(set.savefile, F_OK) == 0 || access(set.gen, F_OK) == 0;
    /* In shared memory, only when the directory is ours. */
    bool shm = qrt_shm_dir(false, NULL) == 0;
    const char *const files[] = { set.savefile, set.root, set.priv, set.meta, set.shm_record,
                                  set.root_layer, set.priv_layer, set.lock, set.header, set.gen,
                                  shm ? set.shm_copy : NULL };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (files[i])
            unlink(files[i]);
    /* The original's links, when they named what is gone now. */
    for (int i = 0; i < (shm ? 2 : 1); i++) {
        ssize_t n = readlink(links[i], target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strstr(target, dvm)) && access(target, F_OK) != 0)
            unlink(links[i]);
    }
    dispvm_ram_gc(cfg, dvm, set.savefile, true);
    return had;
}

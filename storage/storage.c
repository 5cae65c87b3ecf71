#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../orchestrator/util.h"

int storage_create_sparse(const char *path, uint64_t size, struct qerr *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot create %s", path);
    if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return qerr_errno(err, e, "cannot size %s", path);
    }
    close(fd);
    return 0;
}

int storage_copy_range(int in, off_t *in_off, int out, off_t len)
{
    bool fallback = false;
    static char buf[1 << 16];
    off_t end = *in_off + len;
    while (*in_off < end) {
        size_t want = (size_t)(end - *in_off);
        if (!fallback) {
            ssize_t r = copy_file_range(in, in_off, out, NULL, want, 0);
            if (r > 0)
                continue;
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                return 0;       /* end of the input */
            if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
                return -1;
            fallback = true;    /* across file systems the kernel may refuse */
        }
        ssize_t r = pread(in, buf, want < sizeof buf ? want : sizeof buf, *in_off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r;
        for (ssize_t done = 0; done < r;) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            done += w;
        }
        *in_off += r;
    }
    return 0;
}

/* A progress report to the caller of a copy; -1 with ECANCELED when it
 * asks for the copy to stop. */
struct progress {
    storage_progress_fn fn;
    void *ctx;
    uint64_t done, total;
};

static int report(struct progress *p)
{
    if (!p->fn)
        return 0;
    if (p->done > p->total)
        p->total = p->done;     /* the source grew while it was copied */
    if (p->fn(p->ctx, p->done, p->total) == 0)
        return 0;
    errno = ECANCELED;
    return -1;
}

/* The bytes of data in the first `size` bytes of `in` (its holes left out). */
static int data_bytes(int in, off_t size, uint64_t *out)
{
    off_t pos = 0;
    *out = 0;
    while (pos < size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -1;
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -1;
        if (hole > size)
            hole = size;
        *out += (uint64_t)(hole - data);
        pos = hole;
    }
    return 0;
}

static int copy_extents(int in, int out, off_t size, struct progress *p)
{
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;          /* only a hole remains */
            return -1;
        }
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -1;
        off_t ipos = data;
        if (lseek(out, data, SEEK_SET) < 0)
            return -1;
        /* In steps, so that a caller hears of a long copy as it goes. */
        while (ipos < hole) {
            off_t step = hole - ipos;
            if (p && p->fn && step > (off_t)STORAGE_COPY_STEP)
                step = (off_t)STORAGE_COPY_STEP;
            off_t from = ipos;
            if (storage_copy_range(in, &ipos, out, step) < 0)
                return -1;
            if (ipos == from)
                break;          /* the source ended early (it shrank) */
            if (p) {
                p->done += (uint64_t)(ipos - from);
                if (report(p) < 0)
                    return -1;
            }
        }
        pos = hole;
    }
    return ftruncate(out, size);
}

int storage_copy_sparse(const char *src, const char *dst, struct qerr *err)
{
    return storage_copy_sparse_progress(src, dst, NULL, NULL, NULL, err);
}

int storage_copy_sparse_progress(const char *src, const char *dst, storage_progress_fn fn,
                                 void *ctx, bool *reflinked, struct qerr *err)
{
    char *tmp = NULL;
    int in = -1, out = -1, rc = -1;
    struct stat st;
    struct progress p = { fn, ctx, 0, 0 };

    if (reflinked)
        *reflinked = false;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return qerr_errno(err, errno, "cannot open %s", src);
    if (fstat(in, &st) < 0) {
        qerr_errno(err, errno, "cannot copy %s", src);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        qerr_errno(err, EINVAL, "cannot copy %s", src);
        goto out;
    }
    if (fn && data_bytes(in, st.st_size, &p.total) < 0) {
        qerr_errno(err, errno, "cannot read the extents of %s", src);
        goto out;
    }
    if (report(&p) < 0) {
        qerr_errno(err, errno, "copying %s", src);
        goto out;
    }
    if (asprintf(&tmp, "%s.tmp-XXXXXX", dst) < 0) {
        tmp = NULL;
        qerr_errno(err, ENOMEM, "copying %s", src);
        goto out;
    }
    out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0) {
        qerr_errno(err, errno, "cannot create %s", tmp);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (ioctl(out, FICLONE, in) == 0) {
        if (reflinked)
            *reflinked = true;
        p.done = p.total;
        if (report(&p) < 0) {
            qerr_errno(err, errno, "copying %s", src);
            goto out;
        }
    } else if (copy_extents(in, out, st.st_size, &p) < 0) {
        qerr_errno(err, errno, "cannot copy %s to %s", src, dst);
        goto out;
    } else if (p.done < p.total) {
        p.total = p.done;       /* the source shrank while it was copied */
        if (report(&p) < 0) {
            qerr_errno(err, errno, "copying %s", src);
            goto out;
        }
    }
    if (fchmod(out, 0660) < 0 || fsync(out) < 0) {
        qerr_errno(err, errno, "cannot finish %s", dst);
        goto out;
    }
    if (rename(tmp, dst) < 0) {
        qerr_errno(err, errno, "cannot rename %s to %s", tmp, dst);
        goto out;
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
out:
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

int storage_move(const char *src, const char *dst, struct qerr *err)
{
    if (rename(src, dst) == 0)
        return 0;
    if (errno != EXDEV)
        return qerr_errno(err, errno, "cannot move %s to %s", src, dst);
    if (storage_copy_sparse(src, dst, err) < 0)
        return -1;
    if (unlink(src) < 0)
        return qerr_errno(err, errno, "copied %s to %s but cannot remove it", src, dst);
    return 0;
}

int storage_rebase_layer(const char *layer, const char *backing, const char *backing_fmt,
                         struct qerr *err)
{
    char *argv[] = { "qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", (char *)backing_fmt,
                     "-b", (char *)backing, (char *)layer, NULL };
    return qrun_program(argv, err);
}

int storage_clone_layer(const char *empty, const char *dst, struct qerr *err)
{
    int in = open(empty, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    struct stat st;
    if (in < 0)
        return qerr_errno(err, errno, "cannot open %s", empty);
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
        qerr_errno(err, S_ISREG(st.st_mode) ? errno : EINVAL, "cannot copy %s", empty);
        goto out;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        qerr_errno(err, errno, "cannot create %s", dst);
        goto out;
    }
    if (ioctl(out, FICLONE, in) < 0 && copy_extents(in, out, st.st_size, NULL) < 0) {
        qerr_errno(err, errno, "cannot copy %s to %s", empty, dst);
        unlink(dst);
        goto out;
    }
    rc = 0;
out:
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

int storage_backing_readonly(const char *path, struct qerr *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = qerr_errno(err, errno, "cannot stat %s", path);
    else if (!S_ISREG(st.st_mode))
        rc = qerr_set(err, "%s is not a file", path);
    else if ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
             fchmod(fd, st.st_mode & 07777 & ~(mode_t)(S_IWGRP | S_IWOTH)) < 0)
        rc = qerr_errno(err, errno, "cannot make %s read-only to all but its owner", path);
    close(fd);
    return rc;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define QCOW2_HEAD_MAX 65536u           /* what is read: the header, its extensions, the name */
#define QCOW2_EXT_BACKING_FORMAT 0xE2792ACAu

int storage_qcow2_backing(const char *image, char *path, size_t len, char *fmt, size_t fmtlen,
                          struct qerr *err)
{
    path[0] = fmt[0] = '\0';
    int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", image);
    unsigned char *h = malloc(QCOW2_HEAD_MAX);
    ssize_t n = h ? pread(fd, h, QCOW2_HEAD_MAX, 0) : -1;
    int e = errno;
    close(fd);
    if (n < 0) {
        free(h);
        return qerr_errno(err, h ? e : ENOMEM, "cannot read %s", image);
    }
    int rc = -1;
    uint32_t version = n >= 72 ? be32(h + 4) : 0;
    if (n < 72 || be32(h) != 0x514649fbu || (version != 2 && version != 3)) {
        qerr_set(err, "%s is not a qcow2 image", image);
        goto out;
    }
    uint64_t name_at = (uint64_t)be32(h + 8) << 32 | be32(h + 12);
    uint32_t name_len = be32(h + 16), head = version == 3 && n >= 104 ? be32(h + 100) : 72;
    if (name_at == 0) {
        rc = 1;
        goto out;
    }
    if (name_len == 0 || name_len > 1023 || name_at + name_len > (uint64_t)n) {
        qerr_set(err, "%s: its backing file's name is not where its header says", image);
        goto out;
    }
    /* Extensions: type, length, data padded to 8 bytes; type 0 ends them. */
    for (uint64_t at = head; at + 8 <= (uint64_t)n && at + 8 <= name_at;) {
        uint32_t type = be32(h + at), elen = be32(h + at + 4);
        if (type == 0 || at + 8 + elen > (uint64_t)n)
            break;
        if (type == QCOW2_EXT_BACKING_FORMAT && elen > 0 && elen < fmtlen) {
            memcpy(fmt, h + at + 8, elen);
            fmt[elen] = '\0';
        }
        at += 8 + (((uint64_t)elen + 7) & ~(uint64_t)7);
    }
    char name[1024];
    memcpy(name, h + name_at, name_len);
    name[name_len] = '\0';
    if (strlen(name) != name_len) {
        qerr_set(err, "%s: its backing file's name holds a NUL byte", image);
        goto out;
    }
    int w;
    if (name[0] == '/') {
        w = snprintf(path, len, "%s", name);
    } else {
        const char *slash = strrchr(image, '/');
        w = slash ? snprintf(path, len, "%.*s/%s", (int)(slash - image), image, name)
                  : snprintf(path, len, "%s", name);
    }
    if (w < 0 || (size_t)w >= len) {
        path[0] = '\0';
        qerr_set(err, "%s: its backing file's name is too long", image);
        goto out;
    }
    rc = 0;
out:
    free(h);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int storage_remove_tree(const char *dir, struct qerr *err)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return qerr_errno(err, errno, "cannot remove %s", dir);
    return 0;
}

int storage_create_layer(const char *backing, const char *backing_fmt, const char *layer,
                         struct qerr *err)
{
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", (char *)backing_fmt, "-b",
                     (char *)backing, (char *)layer, NULL };
    if (qrun_program(argv, err) < 0)
        return -1;
    /* qemu-img makes it as the umask says (0644): a VM's writes are its own. */
    if (chmod(layer, 0600) < 0)
        return qerr_errno(err, errno, "cannot set the mode of %s", layer);
    return 0;
}

#include "db.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_SUFFIX ".tmp-"

int qdb_init(struct qubes_db *db, const char *path, struct qerr *err)
{
    memset(db, 0, sizeof *db);
    db->fd = -1;
    db->path = strdup(path);
    char *copy = strdup(path);
    if (!db->path || !copy) {
        free(copy);
        free(db->path);
        return qerr_errno(err, ENOMEM, "%s", path);
    }
    db->dir = strdup(dirname(copy));
    free(copy);
    if (!db->dir) {
        free(db->path);
        return qerr_errno(err, ENOMEM, "%s", path);
    }
    return 0;
}

void qdb_close(struct qubes_db *db)
{
    if (db->lock != QDB_UNLOCKED)
        qdb_unlock(db, NULL);
    free(db->path);
    free(db->dir);
    db->path = db->dir = NULL;
}

static int set_lock(int fd, short type, bool wait)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    int r;
    do
        r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (r < 0 && errno == EINTR);
    return r;
}

/* The type of a lock held through other file descriptions, F_UNLCK if none. */
static int other_holder(int fd, short probe)
{
    struct flock fl = { .l_type = probe, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -1;
    return fl.l_type;
}

static char *tmp_prefix(const struct qubes_db *db)
{
    const char *base = strrchr(db->path, '/');
    base = base ? base + 1 : db->path;
    char *p;
    if (asprintf(&p, ".%s" TMP_SUFFIX, base) < 0)
        return NULL;
    return p;
}

/* Writes the collection to a fresh temporary file beside qubes.xml, flushed
 * to disk with mode 0660. Returns its fd and name, or -1 (nothing left behind). */
static int write_temp(const struct qubes_db *db, const struct qvm_collection *c,
                      char **tmp_path, struct qerr *err)
{
    size_t len;
    char *text = qvm_collection_format(c, &len, err);
    if (!text)
        return -1;
    char *prefix = tmp_prefix(db);
    char *path = NULL;
    if (!prefix || asprintf(&path, "%s/%sXXXXXX", db->dir, prefix) < 0) {
        free(prefix);
        free(text);
        return qerr_errno(err, ENOMEM, "saving %s", db->path);
    }
    free(prefix);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        qerr_errno(err, errno, "cannot create a temporary file in %s", db->dir);
        free(path);
        free(text);
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, text + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            qerr_errno(err, r < 0 ? errno : EIO, "cannot write %s (old %s kept)", path, db->path);
            goto fail;
        }
        done += (size_t)r;
    }
    if (fsync(fd) < 0) {
        qerr_errno(err, errno, "cannot flush %s to disk (old %s kept)", path, db->path);
        goto fail;
    }
    if (fchmod(fd, 0660) < 0) {
        qerr_errno(err, errno, "cannot set the mode of %s", path);
        goto fail;
    }
    free(text);
    *tmp_path = path;
    return fd;
fail:
    free(text);
    unlink(path);
    close(fd);
    free(path);
    return -1;
}

static int fsync_dir(const char *dir, struct qerr *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return qerr_errno(err, errno, "cannot open directory %s", dir);
    int r = fsync(dfd);
    int e = errno;
    close(dfd);
    if (r < 0)
        return qerr_errno(err, e, "cannot flush directory %s", dir);
    return 0;
}

/* A first, empty database (dom0 only). link() makes the creation atomic:
 * of two processes creating it at once, one wins and the other uses its file. */
static int create_empty(struct qubes_db *db, struct qerr *err)
{
    if (qmkdirs(db->dir, err) < 0)
        return -1;
    struct qvm_collection *c = qvm_collection_new();
    if (!c)
        return qerr_errno(err, ENOMEM, "creating %s", db->path);
    for (int g = 0; g < QG_COUNT; g++)
        qvm_collection_set_global(c, (enum qglobal)g, -1, NULL);
    char *tmp = NULL;
    int fd = qvm_collection_add_dom0(c, err) == 0 ? write_temp(db, c, &tmp, err) : -1;
    qvm_collection_free(c);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (link(tmp, db->path) < 0 && errno != EEXIST)
        rc = qerr_errno(err, errno, "cannot create %s", db->path);
    unlink(tmp);
    close(fd);
    free(tmp);
    if (rc == 0)
        rc = fsync_dir(db->dir, err);
    return rc;
}

/* A leftover temporary file can only come from a writer that died while
 * saving: the caller holds the write lock, so nobody else is saving. */
static void remove_stale_temps(const struct qubes_db *db)
{
    char *prefix = tmp_prefix(db);
    DIR *d = prefix ? opendir(db->dir) : NULL;
    if (d) {
        size_t plen = strlen(prefix);
        struct dirent *e;
        while ((e = readdir(d)))
            if (strncmp(e->d_name, prefix, plen) == 0)
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    free(prefix);
}

/* The lock a parent handed down, if QUBES_DB_LOCK_FD names our qubes.xml and
 * that file description is the one holding its lock. */
static int inherited_lock(const struct qubes_db *db, short *type)
{
    const char *env = getenv(QDB_LOCK_FD_ENV);
    if (!env || !*env)
        return -1;
    char *end;
    long fd = strtol(env, &end, 10);
    if (*end || fd < 0 || fd > 1 << 20)
        return -1;
    struct stat fst, pst;
    if (fstat((int)fd, &fst) < 0 || lstat(db->path, &pst) < 0 || !S_ISREG(fst.st_mode) ||
        fst.st_dev != pst.st_dev || fst.st_ino != pst.st_ino)
        return -1;
    /* Nobody but this description holds a lock on the file ... */
    if (other_holder((int)fd, F_WRLCK) != F_UNLCK)
        return -1;
    /* ... and, seen from a new description, somebody does: so it is ours. */
    int probe = open(db->path, O_RDONLY | O_CLOEXEC);
    if (probe < 0)
        return -1;
    int held = other_holder(probe, F_WRLCK);
    close(probe);
    if (held != F_RDLCK && held != F_WRLCK)
        return -1;
    *type = (short)held;
    return fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
}

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}

/* What may be read as the database: a regular file, not too large. */
static int check_file(const struct qubes_db *db, const struct stat *st, struct qerr *err)
{
    if (!S_ISREG(st->st_mode))
        return qerr_set(err, "%s is not a regular file (%s)", db->path, file_kind(st->st_mode));
    if (st->st_size > QDB_MAX_SIZE)
        return qerr_set(err, "%s is %lld bytes, more than a database may be (%d MiB)", db->path,
                        (long long)st->st_size, QDB_MAX_SIZE >> 20);
    return 0;
}

/* Opens qubes.xml itself, never through a link and never waiting (a FIFO
 * would block the open), and checks what it is before anything reads it. */
static int open_db(const struct qubes_db *db, short type, struct qerr *err)
{
    int fd = open(db->path, (type == F_WRLCK ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW |
                                O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP)
            return qerr_set(err, "%s is a symbolic link: refusing to follow it (the database "
                            "must be the file itself)", db->path);
        return errno == ENOENT ? -2 : qerr_errno(err, errno, "cannot open %s", db->path);
    }
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? qerr_errno(err, errno, "cannot stat %s", db->path)
                                : check_file(db, &st, err);
    int fl = rc < 0 ? -1 : fcntl(fd, F_GETFL);
    if (rc == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
        rc = qerr_errno(err, errno, "cannot open %s", db->path);
    if (rc < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int lock_db(struct qubes_db *db, short type, unsigned flags, struct qerr *err)
{
    if (db->lock != QDB_UNLOCKED)
        return qerr_set(err, "%s: lock already taken", db->path);

    short held;
    int ifd = inherited_lock(db, &held);
    if (ifd >= 0) {
        if (type == F_WRLCK) {
            close(ifd);
            return qerr_set(err, "%s: the database is locked by the process that started this "
                            "one (%s); a helper run under that lock may only read it",
                            db->path, QDB_LOCK_FD_ENV);
        }
        db->fd = ifd;
        db->inherited = true;
        db->lock = QDB_READ;
        return 0;
    }

    for (;;) {
        int fd = open_db(db, type, err);
        if (fd == -2 && (flags & QDB_CREATE)) {
            if (create_empty(db, err) < 0)
                return -1;
            continue;
        }
        if (fd == -2)
            return qerr_errno(err, ENOENT, "cannot open %s", db->path);
        if (fd < 0)
            return -1;
        if (set_lock(fd, type, true) < 0) {
            int e = errno;
            close(fd);
            return qerr_errno(err, e, "cannot lock %s", db->path);
        }
        struct stat fst, pst;
        if (fstat(fd, &fst) < 0) {
            int e = errno;
            close(fd);
            return qerr_errno(err, e, "cannot stat %s", db->path);
        }
        if (lstat(db->path, &pst) == 0 && fst.st_dev == pst.st_dev && fst.st_ino == pst.st_ino) {
            db->fd = fd;
            db->lock = type == F_WRLCK ? QDB_WRITE : QDB_READ;
            db->inherited = false;
            if (type == F_WRLCK)
                remove_stale_temps(db);
            return 0;
        }
        /* A writer renamed a new qubes.xml over the one we locked while we
         * waited: our lock is on a dead file. Drop it and lock the new one. */
        db->replaced_while_waiting++;
        close(fd);
    }
}

int qdb_lock_for_reading(struct qubes_db *db, struct qerr *err)
{
    return lock_db(db, F_RDLCK, 0, err);
}

int qdb_lock_for_writing(struct qubes_db *db, unsigned flags, struct qerr *err)
{
    return lock_db(db, F_WRLCK, flags, err);
}

static int export_fd(struct qubes_db *db, struct qerr *err)
{
    int fl = fcntl(db->fd, F_GETFD);
    if (fl < 0 || fcntl(db->fd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
        return qerr_errno(err, errno, "cannot share the lock on %s", db->path);
    char num[16];
    snprintf(num, sizeof num, "%d", db->fd);
    if (setenv(QDB_LOCK_FD_ENV, num, 1) < 0)
        return qerr_errno(err, errno, "cannot share the lock on %s", db->path);
    return 0;
}

int qdb_share_with_children(struct qubes_db *db, struct qerr *err)
{
    if (db->lock == QDB_UNLOCKED)
        return qerr_set(err, "%s: not locked, nothing to share", db->path);
    if (db->inherited)
        return 0;       /* our own children inherit the same variable */
    db->shared = true;
    return export_fd(db, err);
}

int qdb_unlock(struct qubes_db *db, struct qerr *err)
{
    if (db->lock == QDB_UNLOCKED)
        return qerr_set(err, "%s: not locked", db->path);
    int rc = 0;
    /* An inherited description is the parent's lock: closing our duplicate
     * leaves it held, where F_UNLCK would release it for the parent too. */
    if (!db->inherited && set_lock(db->fd, F_UNLCK, false) < 0)
        rc = qerr_errno(err, errno, "cannot unlock %s", db->path);
    close(db->fd);
    if (db->shared)
        unsetenv(QDB_LOCK_FD_ENV);
    db->fd = -1;
    db->lock = QDB_UNLOCKED;
    db->inherited = db->shared = false;
    return rc;
}

int qdb_load(struct qubes_db *db, struct qvm_collection **out, struct qerr *err)
{
    if (db->lock == QDB_UNLOCKED)
        return qerr_set(err, "%s: load without a lock", db->path);
    struct stat st;
    if (fstat(db->fd, &st) < 0)
        return qerr_errno(err, errno, "cannot stat %s", db->path);
    if (check_file(db, &st, err) < 0)
        return -1;
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return qerr_errno(err, ENOMEM, "loading %s", db->path);
    for (;;) {
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return qerr_errno(err, ENOMEM, "loading %s", db->path);
            }
            buf = nb;
        }
        ssize_t r = pread(db->fd, buf + len, cap - len, (off_t)len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return qerr_errno(err, e, "cannot read %s", db->path);
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > QDB_MAX_SIZE) {     /* it grew while we read it */
            free(buf);
            return qerr_set(err, "%s is more than a database may be (%d MiB)", db->path,
                            QDB_MAX_SIZE >> 20);
        }
    }
    int rc = qvm_collection_parse(buf, len, db->path, out, err);
    free(buf);
    return rc;
}

int qdb_save(struct qubes_db *db, const struct qvm_collection *c, struct qerr *err)
{
    if (db->lock != QDB_WRITE || db->inherited)
        return qerr_set(err, "%s: save without the write lock", db->path);
    char *tmp = NULL;
    int fd = write_temp(db, c, &tmp, err);
    if (fd < 0)
        return -1;

    /* Keep the owner and group of the file we replace (root may change them). */
    struct stat old;
    if (fstat(db->fd, &old) == 0 && geteuid() == 0)
        (void)!fchown(fd, old.st_uid, old.st_gid);

    /* Nobody else can know this file yet, so the lock is granted at once. It
     * is in place before the rename makes the file visible. */
    if (set_lock(fd, F_WRLCK, false) < 0) {
        qerr_errno(err, errno, "cannot lock %s", tmp);
        goto fail;
    }
    if (rename(tmp, db->path) < 0) {
        qerr_errno(err, errno, "cannot rename %s to %s (old file kept)", tmp, db->path);
        goto fail;
    }
    free(tmp);
    int rc = fsync_dir(db->dir, err);
    /* From here the new file is qubes.xml: hold its lock, release the old. */
    close(db->fd);
    db->fd = fd;
    if (db->shared && export_fd(db, rc < 0 ? NULL : err) < 0)
        rc = -1;
    return rc;
fail:
    unlink(tmp);
    close(fd);
    free(tmp);
    return -1;
}

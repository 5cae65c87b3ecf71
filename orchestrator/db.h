/* qubes.xml on disk: reader/writer locks and atomic saves.
 *
 * Locks are open-file-description record locks (F_OFD_SETLKW) over the
 * whole of qubes.xml. They conflict with the classic fcntl record locks the
 * original tools took on the same file, so old and new tools exclude each
 * other. After a lock is granted the locked file is compared with the path
 * (st_dev, st_ino): a writer may have renamed a new qubes.xml over the one
 * we waited on, and then we retry on the new file.
 *
 * Saving never rewrites qubes.xml in place: the document goes to a
 * temporary file in the same directory, which is fsync'ed, given mode 0660,
 * locked, renamed over qubes.xml, and the directory fsync'ed. Only then is
 * the old file closed, which releases the lock on it; the handle keeps its
 * write lock, now on the new file, and may save again.
 *
 * Helpers run under a write lock (see qdb_share_with_children): a process
 * holding the lock can hand its locked file description to the programs it
 * starts. The descriptor number travels in QUBES_DB_LOCK_FD. A tool that
 * finds it, and finds that descriptor to be qubes.xml itself and the only
 * holder of its lock, reads through it instead of waiting for a lock that
 * its own parent holds; it never unlocks it and never writes through it.
 */
#ifndef QUBES_DB_H
#define QUBES_DB_H

#include <stdbool.h>

#include "collection.h"
#include "error.h"

#define QDB_LOCK_FD_ENV "QUBES_DB_LOCK_FD"

/* qubes.xml must be a regular file (a symbolic link is not followed, a FIFO
 * or a device is refused before anything reads it) of at most this size: a
 * full database of 253 VMs is about 150 KB. */
#define QDB_MAX_SIZE (16 << 20)

enum qdb_lock { QDB_UNLOCKED, QDB_READ, QDB_WRITE };

/* Flags of qdb_lock_for_writing. */
#define QDB_CREATE 1u           /* create an empty database if there is none */

struct qubes_db {
    char *path;                 /* .../qubes.xml */
    char *dir;
    int fd;                     /* the locked file, -1 when unlocked */
    enum qdb_lock lock;
    bool inherited;             /* a parent's lock, used read-only */
    bool shared;                /* handed to children (QUBES_DB_LOCK_FD) */
    unsigned replaced_while_waiting;    /* times the re-check found a new file */
};

int qdb_init(struct qubes_db *db, const char *path, struct qerr *err);
/* Unlocks if needed and frees the handle's memory. */
void qdb_close(struct qubes_db *db);

int qdb_lock_for_reading(struct qubes_db *db, struct qerr *err);
int qdb_lock_for_writing(struct qubes_db *db, unsigned flags, struct qerr *err);
int qdb_unlock(struct qubes_db *db, struct qerr *err);

/* Both need the handle locked; saving needs the write lock. */
int qdb_load(struct qubes_db *db, struct qvm_collection **out, struct qerr *err);
int qdb_save(struct qubes_db *db, const struct qvm_collection *c, struct qerr *err);

/* Lets programs this process starts from now on read under its lock. */
int qdb_share_with_children(struct qubes_db *db, struct qerr *err);

#endif

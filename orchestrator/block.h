/* Block devices hot-plugged into running VMs (qvm-block): a host block
 * device or an image file (raw) becomes a virtio disk of a running VM, and
 * goes again. The hypervisor is the truth about what is attached: every
 * running domain's description is read, never a record of ours.
 *
 * A source is a path the user names. It is resolved once (realpath), then
 * walked from / with every component opened without following links; each
 * directory on the way must be one only root can change (root's, and
 * writable by nobody else, or sticky with the entry below it root's), so
 * that nobody can put another file in its place between this check and
 * the hypervisor's open; it must be a regular file or a block device. A
 * source that reaches the data of a disk of any running domain (the same
 * file, the same device, a partition of it or the disk holding it, a loop
 * device over it, a backing file) is refused, read-only or not. Writable,
 * it must also be outside what the host keeps of its VMs ($QUBES_BASE_DIR
 * but for QBLOCK_IMAGE_DIR in it, $QUBES_RUN_DIR, /dev/shm/qubes) and not
 * in use on the host (mounted, swap, held by another device, backing a
 * loop device): --ro lifts those two rules. */
#ifndef QUBES_BLOCK_H
#define QUBES_BLOCK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "qubes.h"

/* $QUBES_BASE_DIR/images: the image files qvm-block -l offers (any other
 * path may be named), the one place under $QUBES_BASE_DIR a writable
 * attach may take a file from. */
#define QBLOCK_IMAGE_DIR "images"
/* $QUBES_RUN_DIR/block.lock: an attach's checks and the attach itself
 * happen under it, so that two attaches of one source cannot both pass. */
#define QBLOCK_LOCK "block.lock"
/* The tag of a disk qvm-block attached, followed by its frontend; only such
 * disks are listed as attached and may be detached. */
#define QBLOCK_TAG_PREFIX "qubes-block-"
#define QBLOCK_DETACH_TIMEOUT_MS 20000

/* ---- what qvm-block does ---- */

/* A device qvm-block attached to a running VM. */
struct qblock_attached {
    char *vm;
    char *frontend;
    char *source;
    bool readonly;
};

/* Something that can be attached: a host block device, or an image file of
 * QBLOCK_IMAGE_DIR. */
struct qblock_available {
    char *path;
    unsigned long long bytes;
    char *what;                 /* "disk QEMU HARDDISK", "partition 1 of sdb", ... */
    bool block;
};

struct qblock_list {
    bool attached_known;        /* false offline: the hypervisor was not asked */
    struct qblock_attached *attached;
    size_t nattached;
    struct qblock_available *available;
    size_t navailable;
};

/* The devices attached to the running VMs of the database, and the host
 * block devices and image files not in use on the host nor by any running
 * domain. Offline, the hypervisor is not asked: attached_known is false and
 * the available ones may include devices attached to VMs. */
int qblock_list(struct qubes *q, struct qblock_list *out, struct qerr *err);
void qblock_list_free(struct qblock_list *l);

struct qblock_attach_opts {
    const char *vm;
    const char *source;         /* a path, as the user named it */
    bool readonly;
    const char *frontend;       /* vdb..vdz, NULL: the first free one */
};

/* Hot-plugs the source into the running VM as a raw virtio disk; the
 * frontend used goes to frontend[8] and the resolved source to source. */
int qblock_attach(struct qubes *q, const struct qblock_attach_opts *o, char frontend[8],
                  char *source, size_t len, struct qerr *err);

/* Unplugs `frontend` (NULL: every device qvm-block attached) from the
 * running VM and waits until the hypervisor no longer lists it, at most
 * timeout_ms: a guest that does not let a device go makes this fail,
 * naming it. *count (may be NULL) gets how many went. */
int qblock_detach(struct qubes *q, const char *vm, const char *frontend, long timeout_ms,
                  int *count, struct qerr *err);

/* ---- the rules, on their own for the tests ---- */

/* A source resolved and checked: what it is and where its data is. */
struct qblock_source {
    char path[PATH_MAX];        /* resolved */
    bool block;
    dev_t dev;                  /* a regular file's file system and inode */
    ino_t ino;
    dev_t rdev;                 /* a block device's number */
};

/* Resolves and walks `path` as said above; refuses what is not a regular
 * file or a block device (a link, a FIFO, a directory ...) and a path
 * that a user other than root could change. */
int qblock_open_source(const char *path, struct qblock_source *out, struct qerr *err);
/* The rules --ro lifts: where the host keeps its VMs, and use on the host. */
int qblock_check_writable(const struct qubes_config *cfg, const struct qblock_source *s,
                          struct qerr *err);
/* Whether two sources reach the same data: one file, one device, a disk
 * and its partition, a loop device and the file behind it. */
bool qblock_same_data(const struct qblock_source *a, const struct qblock_source *b);
/* "vdb" to "vdz". */
bool qblock_valid_frontend(const char *dev);
/* `wanted` when valid and free among the disks, else the first free one
 * (wanted NULL); out gets it. */
int qblock_pick_frontend(const struct vmm_disk *disks, size_t n, const char *wanted,
                         char out[8], struct qerr *err);

#endif

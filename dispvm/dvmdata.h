/* The savefile set of a DispVM template VM (DVM, "T-dvm"), as files: where
 * they are and how they go. In $BASE/dvmdata:
 *   DVM.savefile       the saved domain (dispvm/savefile.h)
 *   DVM.root.qcow2     its root layer and private image as they were at
 *   DVM.private.img    the save: what its memory believes is on disk
 *   DVM.root-layer.qcow2, DVM.private-layer.qcow2
 *                      empty copy-on-write layers over those two, made once
 *                      with the set: a DispVM's own layers are copies of
 *                      them (no qemu-img per DispVM)
 *   DVM.meta           what the savefile was made from (its staleness stamp)
 *   DVM.lock           restores hold it shared until their QEMU has opened
 *                      the set's files; a new set replaces the old one
 *                      holding it exclusive
 *   DVM.shm            which file the copy in shared memory is (device,
 *                      inode, size): a restore reads that copy only when
 *                      it is that file, in a directory of ours
 *   default-savefile, savefile-root   the original's links
 *   dispid             the counter DispVM names are taken from
 *   dont-use-shm       when present, no copy goes to shared memory
 *   DVM.header, DVM.gen   a set on another host: its savefile's header,
 *                      the generation its volumes there are named with
 * and QRT_SHM_DIR/DVM.savefile, a copy in memory, with the link
 * QRT_SHM_DIR/current-savefile. Nothing here opens the database or the
 * hypervisor: the removal of a VM (qubes.h) forgets a set through it. */
#ifndef QUBES_DISPVM_DVMDATA_H
#define QUBES_DISPVM_DVMDATA_H

#include <limits.h>
#include <stdbool.h>

#include "../orchestrator/config.h"
#include "../orchestrator/error.h"

#define DVMDATA_DEFAULT_SAVEFILE "default-savefile"
#define DVMDATA_SAVEFILE_ROOT "savefile-root"
#define DVMDATA_DISPID "dispid"
#define DVMDATA_NO_SHM "dont-use-shm"
#define DVMDATA_SHM_CURRENT "current-savefile"

struct dvmdata {
    char dir[PATH_MAX];                 /* $BASE/dvmdata */
    char savefile[PATH_MAX], root[PATH_MAX], priv[PATH_MAX], meta[PATH_MAX];
    char root_layer[PATH_MAX], priv_layer[PATH_MAX], lock[PATH_MAX];
    char shm_copy[PATH_MAX];            /* QRT_SHM_DIR/DVM.savefile */
    char shm_record[PATH_MAX];          /* DVM.shm: which file that copy is */
    /* A set on another host (T-dvm-HOST): its files are volumes there
     * (dispvm/remote.h); here only its stamp (meta), its lock, and: */
    char header[PATH_MAX];              /* DVM.header: a copy of the savefile's header */
    char gen[PATH_MAX];                 /* DVM.gen: the generation of its volumes */
};

/* The paths of the set of the VM `dvm`. */
int dvmdata_of(const struct qubes_config *cfg, const char *dvm, struct dvmdata *out,
               struct qerr *err);
/* Takes the set's lock (DVM.lock): shared (restores) or exclusive (the
 * replacement of the set), waiting. Returns the descriptor that holds it,
 * or -1. */
int dvmdata_lock(const struct dvmdata *set, bool exclusive, struct qerr *err);
/* $BASE/dvmdata/FILE. */
int dvmdata_path(const struct qubes_config *cfg, const char *file, char *out, size_t len,
                 struct qerr *err);

/* Copies the savefile to shared memory (when QRT_SHM_DIR is ours) and
 * records which file the copy is; links current-savefile to it. */
int dvmdata_publish_shm(const struct dvmdata *set, struct qerr *err);
/* The copy in shared memory is no longer read: its record goes, so a
 * restore reads the savefile in dvmdata (a new set's, once in place). With
 * `remove`, the copy goes too, and current-savefile when it names it. */
void dvmdata_unpublish_shm(const struct dvmdata *set, bool remove);
/* The savefile a restore reads: the copy in shared memory when it is the
 * one recorded, in a directory of ours; else the savefile in dvmdata. */
const char *dvmdata_restore_from(const struct dvmdata *set);

/* After the VM `dvm` is removed: its savefile set, stamp, shared-memory
 * copy, the links that named them, and the memory files no DispVM maps.
 * Returns 1 when it had a savefile, else 0. */
int dvmdata_forget(const struct qubes_config *cfg, const char *dvm);

#endif

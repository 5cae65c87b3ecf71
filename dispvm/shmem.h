/* Shared-memory DispVMs: the dvm VM's RAM lives in a file on tmpfs
 * (/dev/shm/qubes/DVM.GEN.ram, GEN a nanosecond time stamp: a new file for
 * every savefile), the savefile holds device state only, and every DispVM
 * maps the file private, copy-on-write. The file never changes once saved:
 * QEMU writes to it only through the dvm VM's shared mapping, which ends
 * with the save, and DispVMs' writes land in their own copies. (QEMU 7.2
 * would punch holes in it should a DispVM's balloon inflate, so a DispVM's
 * balloon is only ever deflated.) A RAM file goes once no savefile and no
 * DispVM uses it any more.
 *
 * Which DispVM maps which file is recorded in its run directory
 * ($RUN/vms/dispN/ram). */
#ifndef QUBES_DISPVM_SHMEM_H
#define QUBES_DISPVM_SHMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../orchestrator/qubes.h"

#define DISPVM_RAM_DIR "/dev/shm/qubes"

/* Whether a new savefile keeps memory shared: the global setting
 * dispvm-memory (auto, shared, full); auto and shared need a backend that
 * can. `why` gets the reason, for the tools to say. Returns -1 when
 * `shared` is asked of a backend that cannot. */
int dispvm_memory_shared(struct qubes *q, bool *shared, char *why, size_t whylen,
                         struct qerr *err);

/* A fresh RAM file name for the dvm VM `dvm`. */
void dispvm_ram_new(const char *dvm, char *out, size_t len);

/* The RAM file a savefile's domain XML maps shared, "" for a full-image
 * savefile. Returns 0, or -1 when the XML names a file outside
 * DISPVM_RAM_DIR. */
int dispvm_ram_of_xml(const char *xml, char *out, size_t len);

/* Records that the DispVM with run directory `rundir` maps `ram`. */
int dispvm_ram_claim(const char *rundir, const char *ram, struct qerr *err);

/* Removes the RAM files of `dvm` that no DispVM of this host's run
 * directory records, other than the current savefile's, and named before
 * that savefile was made.
 * `all_unused`: also unused files newer than that (a preparation that
 * died), for when no preparation runs. Returns how many went. */
int dispvm_ram_gc(struct qubes *q, const char *dvm, bool all_unused);

/* The RAM file the DispVM with run directory `rundir` recorded, "" when
 * none. */
void dispvm_ram_recorded(const char *rundir, char *out, size_t len);
/* After a DispVM that mapped `ram` is gone: removes that file (and older
 * ones of its dvm VM) when no savefile or DispVM needs it any more. */
void dispvm_ram_release(struct qubes *q, const char *ram);

/* Memory of a running domain's emulator process (/proc/PID/smaps): its
 * PSS, the part private to it, and the part of its RAM file it shares
 * with its template (mapped, not yet copied). KiB. */
struct dispvm_memuse {
    unsigned long pss_kib, private_kib, shared_kib;
    bool maps_ram_file;
};
int dispvm_memuse(int pid, struct dispvm_memuse *out);

#endif

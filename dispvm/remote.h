/* Private to dispvm/: DispVMs on another host (hosts.h), from a savefile
 * set made there. The set of template T for host H is T-dvm-H's (a VM
 * based on T that lives on H, booted there and saved there); its files
 * are volumes of the pool QHOST_POOL on H, named for its generation GEN
 * (a new set never replaces a file a running DispVM uses):
 *   T-dvm-H.savefile-GEN     the saved domain, memory and device state
 *   T-dvm-H.root-GEN.img     its root as the saved memory believes it is
 *                            (its root layer flattened, raw)
 *   T-dvm-H.private-GEN.img  its private image at the save
 * and here, in $BASE/dvmdata, what needs no round trip: DVM.header (a copy
 * of the savefile's header, the domain XML a DispVM's is made from),
 * DVM.gen (GEN) and DVM.meta (its stamp, as for a set here).
 *
 * A DispVM dispN there has the volumes dispN.root.qcow2 and
 * dispN.private.qcow2 (layers over the set's two images) and, while it is
 * restored, dispN.savefile: a copy of the savefile made there, whose
 * header is then overwritten in place with dispN's domain XML (libvirt
 * restores a savefile under the name and UUID its header holds, and pads
 * that header with 64 KiB, so the new XML fits without moving the stream).
 * Nothing of the memory image travels; the header does, both ways. Memory
 * is a full image (no shared-memory file on that host yet), and a DispVM
 * there has no network (networks are this host's). */
#ifndef QUBES_DISPVM_REMOTE_H
#define QUBES_DISPVM_REMOTE_H

#include "../orchestrator/hosts.h"
#include "state.h"

struct dispvm_remote_set {
    char gen[24];
    char savefile[QHOST_VOLUME_NAME_MAX], root[QHOST_VOLUME_NAME_MAX],
        priv[QHOST_VOLUME_NAME_MAX];
};

/* The set installed for t (DVM.gen): 1 with its names, 0 when none. */
int dispvm_remote_current(const struct dispvm_template *t, struct dispvm_remote_set *out,
                          struct qerr *err);

/* Saves the running T-dvm-H (through `vmm`, its host's) into a new set
 * *n there: the domain stops. *header (malloc'ed, *hlen bytes) is the
 * savefile's header, checked to leave room for any DispVM's XML. On
 * failure, the volumes of *n are deleted. */
int dispvm_remote_save(struct vmm *vmm, const struct dispvm_template *t,
                       struct dispvm_remote_set *n, void **header, size_t *hlen, FILE *progress,
                       struct qerr *err);
/* Puts *n in place of the set installed (under the set's lock, exclusive:
 * no restore is between reading the set and its domain opening the
 * files), with its header and stamp here; the old set's volumes go
 * (running DispVMs keep the files they opened). */
int dispvm_remote_install(struct vmm *vmm, const struct dispvm_template *t,
                          const struct dispvm_remote_set *n, const void *header, size_t hlen,
                          const char *stamp, struct qerr *err);
/* Deletes the volumes of *n (best effort). */
void dispvm_remote_discard(struct vmm *vmm, const struct dispvm_remote_set *n);

/* Restores d's domain on its host (`vmm`) from the set installed, under
 * its identity; running when this returns. d->has_domain tells whether
 * its volumes or domain may exist there (dispvm_teardown removes them). */
int dispvm_remote_restore(struct vmm *vmm, struct dispvm_state *d, struct qerr *err);

#endif

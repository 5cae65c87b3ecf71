/* Shared-memory DispVMs: the dvm VM's RAM lives in a file on tmpfs
 * (QRT_SHM_DIR/DVM.GEN.ram, GEN a nanosecond time stamp: a new file for
 * every savefile), the savefile holds device state only, and every DispVM
 * maps the file private, copy-on-write. The file never changes once saved:
 * QEMU writes to it only through the dvm VM's shared mapping, which ends
 * with the save, and DispVMs' writes land in their own copies. (QEMU 7.2
 * would punch holes in it should a DispVM's balloon inflate, so a DispVM's
 * balloon is only ever deflated.) A RAM file goes once no savefile and no
 * DispVM uses it any more.
 *
 * Which DispVM maps which file is recorded in its run directory
 * ($RUN/vms/dispN/ram, the `record` below). These are files only: nothing
 * here opens the database or the hypervisor, and nothing in QRT_SHM_DIR is
 * made, trusted or removed unless that directory is ours (runtime.h). */
#ifndef QUBES_DISPVM_SHMEM_H
#define QUBES_DISPVM_SHMEM_H

#include <stdbool.h>
#include <stddef.h>

#include "../orchestrator/config.h"
#include "../orchestrator/error.h"

/* A fresh RAM file for the dvm VM `dvm`, created empty, mode 0600 and
 * given to QEMU's user (qemulator_ids; QEMU opens and sizes it), in
 * QRT_SHM_DIR once that is checked to be ours; its name in `out`. */
int dispvm_ram_create(const char *dvm, char *out, size_t len, struct qerr *err);
/* Whether `ram` (a savefile's) is a RAM file we made: a regular file of
 * ours or of QEMU's user that nobody else can read, in QRT_SHM_DIR checked
 * to be ours. */
int dispvm_ram_check(const char *ram, struct qerr *err);

/* The RAM file a savefile's domain XML maps shared, "" for a full-image
 * savefile. Returns 0, or -1 when the XML names a file outside
 * QRT_SHM_DIR. */
int dispvm_ram_of_xml(const char *xml, char *out, size_t len);

/* The dvm VM a RAM file belongs to (from its name); -1 when `ram` is not
 * named as one. */
int dispvm_ram_dvm(const char *ram, char *dvm, size_t len);

/* Records in `record` that a DispVM maps `ram`. */
int dispvm_ram_claim(const char *record, const char *ram, struct qerr *err);
/* The RAM file `record` names, "" when none. */
void dispvm_ram_recorded(const char *record, char *out, size_t len);

/* The kernel a shared-memory DispVM's QEMU is given ($RUN/QRT_BOOT_STUB,
 * written when missing or not what it should be): the header of a Linux
 * kernel image and nothing to run. QEMU reads the kernel and initramfs of
 * a direct kernel boot whole at its start, on the path of every restore;
 * a restored guest never boots (a reboot ends the domain: on_reboot
 * destroy), and the option ROM and firmware entries that a kernel brings
 * stay as the saved machine had them. Its path in `out`. */
int dispvm_boot_stub(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err);

/* Removes the RAM files of `dvm` that no DispVM of this host's run
 * directory records, other than the one `savefile` maps, and named before
 * that savefile was made. `all_unused`: also unused files newer than that
 * (a preparation that died), for when no preparation runs. Returns how
 * many went. */
int dispvm_ram_gc(const struct qubes_config *cfg, const char *dvm, const char *savefile,
                  bool all_unused);

#endif

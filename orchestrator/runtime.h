/* Where the host keeps what lives only while it runs: every path under
 * $QUBES_RUN_DIR and under the shared-memory directory is built here and
 * nowhere else.
 *
 *   $RUN/start.lock, qfile-daemon-dvm.lock,   host-wide locks and logs
 *        qrexec-policy.log
 *   $RUN/dvmd.sock dvmd.lock dvmd.log         the DispVM service (qubes-dvmd)
 *   $RUN/vms/NAME/                            one directory per VM:
 *        agent.sock qrexec.sock qrexec.lock     the agent's channel, its daemon
 *        qrexec.log ready paused                and what it says, when the agent
 *                                               last answered, a pause by
 *                                               qvm-pause
 *        owner ram firewall.xml console.log     a DispVM's owner, the memory
 *        root.qcow2 private.qcow2 savefile      file it maps, its rules, its
 *                                               console, disk layers, clone
 *   /dev/shm/qubes/                           DVM.savefile, current-savefile,
 *                                               DVM.GEN.ram (dispvm/shmem.h) */
#ifndef QUBES_RUNTIME_H
#define QUBES_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

#define QRT_SHM_PARENT "/dev/shm"
#define QRT_SHM_DIR QRT_SHM_PARENT "/qubes"

/* Host-wide files in $RUN. */
#define QRT_START_LOCK "start.lock"
#define QRT_DISPVM_LOCK "qfile-daemon-dvm.lock"
#define QRT_DVMD_SOCK "dvmd.sock"       /* the DispVM service takes requests */
#define QRT_DVMD_LOCK "dvmd.lock"       /* held while it runs; holds its pid */
#define QRT_DVMD_LOG "dvmd.log"
#define QRT_POLICY_LOG "qrexec-policy.log"  /* every qrexec policy decision */
#define QRT_BOOT_STUB "dispvm-boot-stub" /* the kernel a restored DispVM's QEMU loads */

/* Files in a VM's run directory. */
#define QRT_AGENT_SOCK "agent.sock"
#define QRT_QREXEC_SOCK "qrexec.sock"    /* the VM's qrexec-daemon takes requests */
#define QRT_QREXEC_LOCK "qrexec.lock"    /* held by that daemon while it runs */
#define QRT_QREXEC_LOG "qrexec.log"      /* and what it has to say */
#define QRT_RELAY_LOG "relay.log"        /* a VM on another host: its channel relay's */
#define QRT_RELAY_LOCK "relay.lock"      /* held by that relay while it runs */
#define QRT_READY "ready"
#define QRT_PAUSED "paused"              /* qvm-pause paused this domain id */
#define QRT_OWNER "owner"
#define QRT_RAM "ram"
#define QRT_CONSOLE "console.log"
#define QRT_ROOT_LAYER "root.qcow2"
#define QRT_PRIVATE_LAYER "private.qcow2"
#define QRT_CLONE "savefile"
#define QRT_HOST "host"                  /* a DispVM on another host: that host's name */

/* $RUN/FILE. */
int qrt_path(const struct qubes_config *cfg, const char *file, char *out, size_t len,
             struct qerr *err);
/* $RUN/vms: the parent of every VM's run directory. */
int qrt_vms_dir(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err);
/* $RUN/vms/NAME, or $RUN/vms/NAME/FILE when `file` is not NULL. */
int qrt_vm_path(const struct qubes_config *cfg, const char *name, const char *file, char *out,
                size_t len, struct qerr *err);
/* QRT_SHM_DIR/FILE. */
int qrt_shm_path(const char *file, char *out, size_t len, struct qerr *err);
/* The shared-memory directory, made when missing (`create`), checked
 * before anything in it is read, written or removed: a directory, not a
 * link, ours (this process's user), and writable by nobody else. /dev/shm
 * is everybody's, so a local user may have made QRT_SHM_DIR first: then
 * it is refused, with what is wrong. */
int qrt_shm_dir(bool create, struct qerr *err);
/* Who owns a DispVM: the process that made and keeps it, recorded in its
 * run directory (QRT_OWNER) as "PID STARTTIME", which tells that process
 * apart from a later one with the same pid. A DispVM whose owner is alive
 * exists (perhaps still being made, before its domain); one whose owner is
 * gone is a leftover for qvm-cleanup-dispvms. */
int qrt_owner_write(const char *path, struct qerr *err);
bool qrt_owner_alive(const char *path);
/* Takes the exclusive flock of $RUN/FILE (creating $RUN), waiting; returns
 * the descriptor that holds it (close() releases it), or -1. */
int qrt_lock(const struct qubes_config *cfg, const char *file, struct qerr *err);

#endif

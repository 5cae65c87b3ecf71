/* Starting and stopping VMs: the power-state machine over libvirt and the
 * guest agent. A VM's power state comes from libvirt, refined by the agent:
 * a running domain whose agent has not answered yet is Transient. */
#ifndef QUBES_LIFECYCLE_H
#define QUBES_LIFECYCLE_H

#include <stdbool.h>
#include <stdio.h>

#include "qubes.h"

enum qvm_op { QOP_START, QOP_SHUTDOWN, QOP_KILL, QOP_PAUSE, QOP_UNPAUSE, QOP_RUN, QOP_COUNT };

/* The transition table: 0 when `op` is allowed in state `st`, else -1 with
 * the original's message. */
int qvm_op_allowed(enum qvm_op op, enum qvm_power st, struct qerr *err);

/* The template exclusion (templates.h) with the power states it needs,
 * asked of the hypervisor: 0 when `vm` may start now. */
int qubes_template_exclusion(struct qubes *q, const struct qvm *vm, struct qerr *err);

struct qvm_start_opts {
    bool wait;                  /* wait for the agent (Running), else return Transient */
    FILE *progress;             /* where to say what happens, or NULL */
    const char *mem_file;       /* keep the guest's RAM in this file, mapped
                                   shared (a shared-memory DispVM template) */
    bool gui;                   /* its GUI starts: send the monitor layout
                                   (with wait) */
    bool debug;                 /* debug mode for this start (as the VM's
                                   `debug` property: a child keeps its layer) */
};

/* qubes-channel-relay for the running VM `name` on another host (it
 * returns once it listens; one that already serves the VM stays, the new
 * one ends). */
int qubes_channel_relay_spawn(const char *name, struct qerr *err);

/* Each loads what it needs; `q` is open, nothing locked. */
int qubes_vm_start(struct qubes *q, const char *name, const struct qvm_start_opts *o,
                   struct qerr *err);
/* The host's boot (qvm-start --autostart): every halted VM whose
 * `autostart` is True, but DispVMs, started with `o`, those another one's
 * netvm chain holds first (a VM's start starts its chain anyway). A VM that
 * fails does not stop the others: -1 when any failed, the message naming
 * each with its reason. `*started` counts the VMs started. */
int qubes_vm_start_autostart(struct qubes *q, const struct qvm_start_opts *o, int *started,
                             struct qerr *err);
/* Starts the netvm `netvm_qid` (-1: none) of `for_whom` when it is halted,
 * its own netvm first, and waits for its agent: a VM's gateway is a guest.
 * qubes_vm_start does it for the VM it starts. */
int qubes_netvm_up(struct qubes *q, int netvm_qid, const char *for_whom, FILE *progress,
                   struct qerr *err);
/* A NetVM or ProxyVM with running VMs behind it is refused unless `force`. */
int qubes_vm_shutdown(struct qubes *q, const char *name, long timeout_ms, bool force,
                      struct qerr *err);
/* qvm-shutdown --all: every VM that runs but dom0 and those named in
 * `exclude` (each must exist), VMs before the netvms they use: a VM is
 * asked to power off once no VM of the set that has not gone uses it as
 * its netvm, and the asked ones are waited for together, each for at most
 * `timeout_ms` from its request. A VM that is refused or does not stop in
 * time stays, and its netvm with it (unless `force`); the others go on.
 * -1 when any stayed: the message names each with the reason. Paused and
 * suspended VMs are refused, as qubes_vm_shutdown refuses them. */
int qubes_vm_shutdown_all(struct qubes *q, const char *const *exclude, size_t nexclude,
                          long timeout_ms, bool force, FILE *progress, struct qerr *err);
/* The names (malloc'ed, in name order, NULL-terminated) of the VMs a
 * command can run in now: Running or Transient, dom0, preloaded DispVMs
 * and those named in `exclude` (each must exist) left out; qvm-run --all. */
int qubes_running_vms(struct qubes *q, const char *const *exclude, size_t nexclude,
                      char ***names, size_t *n, struct qerr *err);
int qubes_vm_kill(struct qubes *q, const char *name, struct qerr *err);
/* The pause is marked in the VM's run directory (power.h) before the
 * domain is paused; the unpause clears it, and so does a refusal because
 * the VM is not paused (resumed behind our back). */
int qubes_vm_pause(struct qubes *q, const char *name, struct qerr *err);
int qubes_vm_unpause(struct qubes *q, const char *name, struct qerr *err);
struct qvm_run_opts {
    const char *user;           /* NULL: the VM's default_user */
    const char *command;        /* by /bin/sh -c in the VM, or */
    const char *service;        /* a service of /etc/qubes-rpc in the VM */
    const char *source;         /* who asks for the service ("dom0" by default) */
    bool pass_io;               /* our input and output are the command's */
    const int *fds;             /* with pass_io: its input, output and error
                                   instead of ours (-1: none) */
    const char *local_command;  /* its input and output are the output and
                                   the input of this command of ours, run by
                                   /bin/sh -c (qvm-run --localcmd); its
                                   error output is ours */
    bool no_start;              /* a halted VM is an error: nothing starts */
    FILE *progress;             /* when the VM must start first */
    long timeout_ms;            /* the command must end within it; 0: no limit */
};

/* Runs a command or service in the VM (starting it when halted, unless
 * no_start); *status gets its exit status. A VM whose qrexec-daemon
 * answers runs, and gets the command without the hypervisor being asked
 * (or its backend loaded); one paused by qubes_vm_pause, or whose daemon
 * does not answer, is asked of the hypervisor first, as the transition
 * table says. Refused offline.
 *
 * With a local command, its output is the command's input and the
 * command's output its input, both ways at once: what one side writes
 * while the other does not read is held (the local command's output, up
 * to 64 MiB, while the command's output waits for it to read) so that
 * neither waits on the other where two pipes would not. A local command
 * that ends first, or closes its input, does not end the VM's: that one
 * still gets all the local command wrote, its further output is dropped,
 * and *status is still its status. Once the VM's command has ended, the
 * local command gets the end of its input (and SIGPIPE if it writes on)
 * and is waited for; one that fails is named on `progress`. */
int qubes_vm_run(struct qubes *q, const char *name, const struct qvm_run_opts *o, int *status,
                 struct qerr *err);

/* Grows the root image of a template or standalone VM to `bytes`: refused
 * for a VM based on a template ("resize the template instead"), for a
 * running VM, for a template while a VM based on it runs, and for a
 * shrink. */
int qubes_vm_grow_root(struct qubes *q, const char *name, unsigned long long bytes,
                       struct qerr *err);

#endif

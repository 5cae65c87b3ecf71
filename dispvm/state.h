/* Private to dispvm/: what a request, a preparation or a pool knows of the
 * template its DispVMs come from, and one struct per DispVM that every
 * step shares. Both are computed once, from the collection as loaded, and
 * keep qids and names, never pointers into a collection (a write
 * transaction replaces it). */
#ifndef QUBES_DISPVM_STATE_H
#define QUBES_DISPVM_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "../orchestrator/net.h"
#include "../orchestrator/qubes.h"
#include "../orchestrator/util.h"
#include "dvmdata.h"

/* Domain names disp1..disp253 (dispvm/restore.c hands them out in turn). */
#define DISPVM_MAX_DISPID 253

struct dispvm_template {
    int qid;
    char name[QUBES_NAME_MAX + 1];      /* T */
    char dvm[QUBES_NAME_MAX + 1];       /* T-dvm, whose savefile DispVMs restore; on
                                           another host H, T-dvm-H (living there) */
    char host[QUBES_NAME_MAX + 1];      /* that host; "" for this one */
    bool hvm;                           /* T is a TemplateHVM */
    long memory_mib;                    /* what a DispVM has once restored */
    int dvm_qid, dvm_netvm_qid;         /* -1: no T-dvm yet / no network */
    struct dvmdata set;
};

/* The template `name` (NULL: the default template) in q->coll, for
 * DispVMs on this host; _on: on the host `host` (NULL or "": this one), a
 * registered one (hosts.h), whose savefile set is of T-dvm-HOST. */
int dispvm_template_find(struct qubes *q, const char *name, struct dispvm_template *t,
                         struct qerr *err);
int dispvm_template_find_on(struct qubes *q, const char *name, const char *host,
                            struct dispvm_template *t, struct qerr *err);
/* The hypervisor of the host the template's DispVMs go to. */
struct vmm *dispvm_template_vmm(struct qubes *q, const struct dispvm_template *t,
                                struct qerr *err);

/* The template's and T-dvm's records in `c`, by qid (NULL when gone). */
struct qvm *dispvm_template_vm(const struct qvm_collection *c, const struct dispvm_template *t);
struct qvm *dispvm_dvm_vm(const struct qvm_collection *c, const struct dispvm_template *t);

/* How many DispVMs of a template wait preloaded (qubes-prefs
 * dispvm-preload, 0..QUBES_DISPVM_PRELOAD_MAX). */
int dispvm_preload_target(const struct qvm_collection *c);

struct dispvm_state {
    /* What the caller fills in (dispvm_state_init). */
    const struct dispvm_template *tpl;
    char source[QUBES_NAME_MAX + 1];    /* the VM that asks; "dom0" for a preload */
    int source_qid;                     /* -1: not in the database */
    int netvm_qid;                      /* its netvm: the source's dispvm_netvm, or
                                           T-dvm's for dom0; -1: none */
    char label[16];                     /* the DispVM's */
    bool preload;                       /* restored to wait, paused, for a request */
    char host[QUBES_NAME_MAX + 1];      /* the host it goes to (its template's set's);
                                           "" for this one */
    FILE *progress;
    const char *service, *command;      /* what runs in it (dispvm_request) */
    const char *user;

    /* What the steps share, once it has a name (dispvm_state_name); `name`
     * opens this part, which dispvm_state_unname clears with the next. */
    char name[QUBES_NAME_MAX + 1];      /* dispN */
    int dispid;
    char uuid[37], genid[37];
    struct qnet net;
    long long fw_next;                  /* its rules' earliest expiry, as written (0: none) */
    char rundir[PATH_MAX];              /* $RUN/vms/dispN and what is in it */
    char agent_sock[PATH_MAX], qrexec_sock[PATH_MAX], owner[PATH_MAX], ram[PATH_MAX];
    char console[PATH_MAX];
    char root_layer[PATH_MAX], private_layer[PATH_MAX], clone[PATH_MAX];

    /* Private: what exists, so that a teardown removes just that. */
    bool has_domain, has_record;
    /* The set's savefile as it was when the DispVM's memory file was
     * taken from it (shared memory, here): while it is still that file,
     * the memory file is the current one and the teardown need not look
     * for memory files that no savefile or DispVM needs any more. */
    bool set_seen;
    struct stat set_st;
    /* With --timings: its emulator's threads' CPU and page faults when the
     * request began (zero: the emulator started for it), and when
     * (qnow_ms; 0: not taken). */
    struct qproc_cpu emu0;
    long emu_t0;
};

/* The caller's part: who asks (the label is the source VM's unless given;
 * red when neither). */
void dispvm_state_init(struct dispvm_state *d, const struct dispvm_template *t,
                       const struct qvm_collection *c, const char *source, const char *label,
                       bool preload, FILE *progress);
/* The shared part for the DispVM `name` with `dispid` (-1: read from its
 * record in `c`, for a DispVM that exists): its run directory's paths and
 * its network, on the one T-dvm was saved on. */
int dispvm_state_name(struct dispvm_state *d, const struct qubes_config *cfg,
                      const struct qvm_collection *c, const char *name, int dispid,
                      struct qerr *err);
/* Drops the shared and private parts (after a failed claim of a preload). */
void dispvm_state_unname(struct dispvm_state *d);
/* The source VM's record in `c`, by qid (NULL when not there). */
struct qvm *dispvm_source_vm(const struct qvm_collection *c, const struct dispvm_state *d);
/* A state for tearing down an existing DispVM (domain and record). */
int dispvm_state_existing(struct dispvm_state *d, const struct qubes_config *cfg,
                          const struct qvm_collection *c, const char *name, struct qerr *err);

/* This process owns the DispVM (runtime.h, qrt_owner_write): the worker
 * of the DispVM service that made it and tears it down.
 * qvm-cleanup-dispvms removes DispVMs whose owner is gone. */
int dispvm_own(const struct dispvm_state *d, struct qerr *err);

#endif

/* Private to dispvm/: the messages between a request (qfile-daemon-dvm,
 * qvm-run --dispvm, qvm-create-default-dvm), the DispVM service
 * (qubes-dvmd) and the service's workers, one per DispVM. All travel on
 * unix SOCK_SEQPACKET sockets, root's only: one message is a header
 * (magic, type, payload length, each a host-order uint32) and the payload,
 * NUL-terminated text fields, with up to DVM_MAX_FDS descriptors attached
 * (SCM_RIGHTS).
 *
 * A request: the client sends REQUEST (its standard error attached, where
 * progress and timings go) to $RUN/dvmd.sock. The service hands the
 * connection itself to a worker: a preload's (CLAIM) or a new one's. From
 * then on the client talks to the worker: READY (the DispVM's name: the
 * client runs the service in it through the DispVM's qrexec-daemon) or
 * ERROR; then the client's DONE when the service ended (or its hang-up,
 * any time), and the worker tears the DispVM down; with --wait-teardown it
 * says GONE first. */
#ifndef QUBES_DISPVM_PROTO_H
#define QUBES_DISPVM_PROTO_H

#include <stdint.h>

#include "../orchestrator/error.h"
#include "../orchestrator/vm.h"

#define DVM_MAGIC 0x31445644u       /* "DVD1" */
#define DVM_MAX_PAYLOAD 8192
#define DVM_MAX_FIELDS 12
#define DVM_MAX_FDS 2

enum dvm_type {
    /* client -> service; fds: stderr. Fields: DVM_RQ_* below. */
    DVM_REQUEST = 1,
    /* worker -> client: NAME, the DispVM is running and has its identity */
    DVM_READY = 2,
    /* service or worker -> client: TEXT; the request failed */
    DVM_ERROR = 3,
    /* client -> worker: the service ended; the DispVM may go */
    DVM_DONE = 4,
    /* worker -> client: the DispVM is gone (asked for with --wait-teardown) */
    DVM_GONE = 5,
    /* service -> a parked preload's worker: the request's fields; fds: the
     * client's connection and its stderr */
    DVM_CLAIM = 6,
    /* worker -> service: the same, back: this preload cannot serve it */
    DVM_DECLINE = 7,
    /* worker -> service: the same, back: this preload is broken and goes */
    DVM_BROKEN = 12,
    /* worker -> service: TEMPLATE NAME: a preload is restored and parked */
    DVM_PARKED = 8,
    /* worker -> service: a claimed preload's service ended (or failed) */
    DVM_SERVED = 9,
    /* client -> service; fds: stderr: TEMPLATE: the savefile set of
     * TEMPLATE is new; its preloads go, new ones come */
    DVM_FILL = 10,
    /* service -> client: the FILL is done: TEXT, what the pool holds */
    DVM_FILLED = 11,
    /* worker -> service: a request's DispVM is gone; the worker waits for
     * the next request (no fork, its hypervisor connection kept) */
    DVM_IDLE = 13,
    /* service -> an idle worker: a request's fields; fds: the client's
     * connection and its stderr */
    DVM_TAKE = 14,
    /* service -> a preload's worker whose claimed DispVM is gone (it said
     * IDLE): POOL: make the next preload of POOL (a template here) */
    DVM_PRELOAD = 15,
};

/* A pool of preloads: its template T, or T@HOST for DispVMs on another
 * host (a FILL's field, a preload worker's argument); dvm_pool_key makes
 * it (host NULL, "" or "local": this one). */
#define DVM_POOL_KEY_MAX (2 * QUBES_NAME_MAX + 2)
void dvm_pool_key(char out[DVM_POOL_KEY_MAX], const char *tpl, const char *host);

/* The fields of REQUEST and CLAIM, in order. */
enum {
    DVM_RQ_TEMPLATE,    /* "" for the default template */
    DVM_RQ_SOURCE,      /* the VM that asks, or dom0 */
    DVM_RQ_LABEL,       /* "" for the source's label */
    DVM_RQ_FLAGS,       /* letters: r regenerate a stale savefile, w wait for the
                           teardown, p progress, t timings (both on the fd) */
    DVM_RQ_MIN_FREE,    /* QUBES_DISPVM_MIN_FREE_MIB of the client, or "" */
    DVM_RQ_FEED,        /* QUBES_DISPVM_FEED of the client, or "" */
    DVM_RQ_HOST,        /* the host it must go to ("local": this one), or "": where
                           a savefile is and memory is most free */
    DVM_RQ_NFIELDS
};

struct dvm_msg {
    uint32_t type;
    int nfields;
    const char *field[DVM_MAX_FIELDS];
    int fds[DVM_MAX_FDS];
    int nfds;
    char buf[DVM_MAX_PAYLOAD + 1];
};

/* One message; -1 with err when it cannot be sent (or is too long). */
int dvm_send(int sock, uint32_t type, const char *const fields[], int nfields, const int *fds,
             int nfds, struct qerr *err);
/* The next message, waiting at most timeout_ms (-1: no limit). 0: one is
 * in *m (its descriptors are the caller's); 1: the peer hung up; -1: an
 * error, or something that is not a message, or the deadline. */
int dvm_recv(int sock, struct dvm_msg *m, int timeout_ms, struct qerr *err);
/* Closes the descriptors of m that the caller did not take (set to -1). */
void dvm_msg_close_fds(struct dvm_msg *m);
/* Field i of m, "" when it has fewer. */
const char *dvm_field(const struct dvm_msg *m, int i);

#endif

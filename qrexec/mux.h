/* The session multiplexer over one agent channel (guest/protocol.h), the
 * same code on both ends: the host's qrexec-daemon and the guest's agent.
 * One thread, one poll loop; every descriptor non-blocking; no session can
 * stall the channel or another session, and what the mux holds per session
 * is bounded by QAG_WINDOW per stream.
 *
 * A session is either one this side opened (qmux_call: we are the caller,
 * we send STDIN and receive STDOUT/STDERR and the end) or one the peer
 * opened (ops.request: we serve it, with qmux_serve, qmux_answer or
 * qmux_refuse). Descriptors handed to the mux become its own: it makes
 * them non-blocking and closes them. */
#ifndef QUBES_QREXEC_MUX_H
#define QUBES_QREXEC_MUX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../guest/protocol.h"

#define QMUX_MAX_SESSIONS 256   /* all at once, both kinds */
#define QMUX_MAX_PEER_SESSIONS 64 /* opened by the peer */

enum qmux_role { QMUX_HOST, QMUX_GUEST };

struct qmux;

struct qmux_ops {
    /* The peer opened session `sid` with a request frame (payload NUL
     * terminated beyond len). The handler answers it now or later with
     * qmux_serve/qmux_answer/qmux_refuse. */
    void (*request)(struct qmux *m, uint32_t sid, uint32_t type, const char *payload,
                    uint32_t len, void *ctx);
    /* A session we opened ended: status is its exit status, or -1 with
     * `error` set (refused, the peer's ERROR text, the channel reset). All
     * its output has been written by then. */
    void (*ended)(struct qmux *m, void *sctx, int status, const char *error);
    /* Something about the channel or a breach of the protocol, for a log. */
    void (*log)(void *ctx, const char *msg);
    /* Host: the handshake has completed (again, after a reset). May be NULL. */
    void (*ready)(struct qmux *m, void *ctx);
    /* The channel has ended (host: the peer hung up). The loop stops. May be NULL. */
    void (*lost)(struct qmux *m, void *ctx);
};

/* `chan` is the channel (the host's socket to QEMU, the guest's port). */
struct qmux *qmux_new(int chan, enum qmux_role role, const struct qmux_ops *ops, void *ctx);
void qmux_free(struct qmux *m);
/* Another descriptor for the loop: cb runs when poll reports `events`
 * (POLLIN/POLLOUT) or an error on it. */
typedef void (*qmux_fd_cb)(struct qmux *m, int fd, short revents, void *arg);
int qmux_watch(struct qmux *m, int fd, short events, qmux_fd_cb cb, void *arg);
void qmux_unwatch(struct qmux *m, int fd);
/* Runs until qmux_stop or the channel's end (host); what is queued then
 * and can be written at once is written before it returns. */
int qmux_run(struct qmux *m);
void qmux_stop(struct qmux *m);
bool qmux_ready(const struct qmux *m);
/* Ends every session and starts the handshake again (the mux does this
 * itself when the channel goes out of step or, in the guest, when the
 * port reports no host). */
void qmux_reset(struct qmux *m, const char *why);

/* Opens a session: the request frame, and the descriptors its streams go
 * through (-1: no input / discard). Returns the session id, or 0 with the
 * descriptors closed (too many sessions, the channel not ready). */
uint32_t qmux_call(struct qmux *m, uint32_t type, const void *req, uint32_t len, int in_fd,
                   int out_fd, int err_fd, void *sctx);
/* The caller is gone: CLOSE, and nothing more of the session reaches it. */
void qmux_cancel(struct qmux *m, uint32_t sid);

/* Serves a peer's session with a process: in_fd takes its STDIN, out_fd
 * and err_fd give its STDOUT and STDERR; once `pid` has exited and its
 * output is drained, EXIT with its status. On CLOSE or a reset its process
 * group is killed. When the session is gone already, the process is
 * killed and reaped at once (-1). */
int qmux_serve(struct qmux *m, uint32_t sid, int in_fd, int out_fd, int err_fd, pid_t pid);
/* Ends a peer's session with EXIT `status`, or ERROR `msg`. */
void qmux_answer(struct qmux *m, uint32_t sid, int status);
void qmux_refuse(struct qmux *m, uint32_t sid, const char *msg);

/* Sends one frame outside any session bookkeeping (for tests and for
 * hostile peers). */
int qmux_send_raw(struct qmux *m, uint32_t type, uint32_t sid, const void *data, uint32_t len);
/* Takes bytes as if they had come from the channel (for the fuzzer). */
void qmux_feed(struct qmux *m, const void *data, size_t len);
/* Counters for tests: bytes queued toward the channel, live sessions. */
size_t qmux_queued(const struct qmux *m);
int qmux_sessions(const struct qmux *m);

/* A process's own relay between its streams and a session's pipes (the
 * callers' side: qvm-run, qrexec-client-vm): copies user_in to to_session
 * (closing it at end of input), from_out to user_out and from_err to
 * user_err (-1: discard), and returns when both outputs have ended and
 * `ctl` (a socket the answer arrives on, or -1) is readable. The user's
 * descriptors stay as they are (blocking or not); deadline_ms (CLOCK_MONOTONIC,
 * 0: none) ends it early with -1 and errno ETIMEDOUT, a user_out that
 * nobody reads any more with -1 and EPIPE (the caller ends the session). */
int qmux_pump(int user_in, int user_out, int user_err, int to_session, int from_out,
              int from_err, int ctl, long deadline_ms);
/* A flag a signal handler sets: once it is non-zero, qmux_pump (and
 * agent_connect) return -1 with errno EINTR: at once when the signal
 * interrupts their wait, within half a second when it came just before
 * it. A caller's stop signal so ends its session without a process of its
 * own. NULL (the default): signals are ridden out. */
void qmux_stop_on(volatile sig_atomic_t *flag);
bool qmux_stopped(void);

long qmux_now_ms(void);

#endif

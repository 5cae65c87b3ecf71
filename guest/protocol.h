/* The protocol between the host and the agent inside a guest, version 2,
 * over one virtio-serial port (QAG_PORT_NAME; on the host a unix socket
 * that the VM's qrexec-daemon alone holds).
 *
 * Every frame: a 16-byte header (magic, type, session, payload length,
 * each a little-endian uint32) and the payload, at most QAG_MAX_PAYLOAD.
 *
 * The channel. The host's daemon opens it with HELLO (session 0) carrying
 * a nonce, sent again until the agent answers HELLO_ACK with the same
 * nonce; whatever comes before that answer is discarded, so a channel never
 * reads what an earlier one left behind (a DispVM restored from a savefile
 * wakes up with its template's last words in its buffers). A HELLO at any
 * later time resets the channel: every session ends, its processes are
 * killed. A reader that meets something that is not a frame (a wrong
 * magic, a length over the limit) is out of step: the agent discards bytes
 * until the next HELLO; the daemon ends every session, logs it and sends a
 * new HELLO.
 *
 * Sessions: any number at once, each named by the id its opener chose, the
 * host's with bit 31 clear, the guest's with it set (QAG_GUEST_SESSION).
 * A request opens one: EXEC, SERVICE, IDENTITY or SHUTDOWN from the host,
 * CALL from the guest. The opener (the caller) sends STDIN; the other side
 * (the service) sends STDOUT and STDERR, and last EXIT or ERROR, which end
 * the session. An empty data frame ends that stream. CLOSE, from the
 * caller, ends a session early: the service's processes are killed and
 * nothing is answered. Frames of a session that has ended are dropped.
 *
 * Flow control, per stream: a side may have at most QAG_WINDOW bytes of a
 * stream sent and not yet credited; the receiver sends CREDIT as it hands
 * the data on. So a reader that does not read stalls its own session and
 * nothing else, and neither side holds more than QAG_WINDOW bytes of any
 * stream. Data beyond the credit is a breach: the receiver ends that
 * session (CLOSE or ERROR) and logs it.
 *
 * Local callers. On each side a unix SOCK_SEQPACKET socket takes the
 * requests of local programs (host: $RUN/vms/NAME/qrexec.sock, for root;
 * guest: QAG_LOCAL_SOCKET, for qrexec-client-vm): one message per request,
 * a frame (session 0) with three descriptors attached (SCM_RIGHTS): the
 * data to send as STDIN is read from the first, STDOUT is written to the
 * second, STDERR to the third. The answer is one message: EXIT or ERROR.
 * A caller that hangs up before it ends the session (CLOSE).
 *
 * Changes from version 1 (magic "QAG1"): one session at a time there, a
 * 12-byte header without a session id, no flow control, no CREDIT, CLOSE or
 * CALL, and host tools spoke to the agent's socket themselves. */
#ifndef QUBES_AGENT_PROTOCOL_H
#define QUBES_AGENT_PROTOCOL_H

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QAG_MAGIC 0x32474151u           /* "QAG2" */
#define QAG_VERSION 2
#define QAG_PORT_NAME "org.qubes.agent.0"
#define QAG_LOCAL_SOCKET "/run/qubes/qrexec-agent.sock"
#define QAG_MAX_PAYLOAD 65536
#define QAG_MAX_DATA 16384              /* the largest data frame a side sends */
#define QAG_WINDOW 65536                /* per stream, see above */
#define QAG_GUEST_SESSION 0x80000000u
/* CALL's names, as REFERENCE's original bounded them: [A-Za-z0-9_.+-] */
#define QAG_MAX_SERVICE 64
#define QAG_MAX_TARGET 32

enum qag_type {
    QAG_HELLO = 1,          /* host -> guest: uint64 nonce */
    QAG_HELLO_ACK = 2,      /* guest -> host: the same nonce */
    QAG_EXEC = 3,           /* host -> guest: "USER\0COMMAND" run by /bin/sh -c */
    QAG_STDIN = 4,          /* caller -> service: data; empty = end of input */
    QAG_STDOUT = 5,         /* service -> caller: data; empty = end */
    QAG_STDERR = 6,         /* service -> caller: data; empty = end */
    QAG_EXIT = 7,           /* service -> caller: int32 exit status (128+N for signal N) */
    QAG_SHUTDOWN = 8,       /* host -> guest: power off (answered by EXIT 0 first) */
    QAG_ERROR = 9,          /* service -> caller: text; the request failed or was refused */
    QAG_SERVICE = 10,       /* host -> guest: "USER\0SERVICE\0SOURCE-VM": run the
                               service /etc/qubes-rpc/SERVICE, like EXEC, with
                               QREXEC_REMOTE_DOMAIN=SOURCE-VM and
                               QREXEC_SERVICE_FULL_NAME=SERVICE */
    QAG_IDENTITY = 11,      /* host -> guest: "NAME\0MAC\0IP/PREFIX\0GATEWAY\0SEED":
                               who the guest is now (a restored DispVM is not the VM
                               that was saved); empty MAC: no network (its interface is
                               left without address, down). SEED: 32
                               random bytes from the host, in hex, which the guest
                               adds to its entropy pool and reseeds its random
                               number generator with, before anything else runs:
                               DispVMs restored from one savefile share its state.
                               Answered by EXIT 0, or ERROR */
    QAG_CALL = 12,          /* guest -> host: "TARGET\0SERVICE": the guest asks for
                               SERVICE on TARGET (a VM, "dom0" or "$dispvm"); the
                               host's policy decides; refused: ERROR. The caller is
                               always the VM the channel belongs to */
    QAG_CREDIT = 13,        /* either way: uint32 stream (QAG_STDIN/STDOUT/STDERR),
                               uint32 bytes the receiver has handed on */
    QAG_CLOSE = 14,         /* caller -> service: the caller is gone */
};

struct qag_header {
    uint32_t magic;
    uint32_t type;
    uint32_t session;
    uint32_t len;
};

/* A target or service name both ends of a guest check before use: the
 * original's alphabet, [A-Za-z0-9_.+-], fitting a buffer of `max` bytes with
 * the NUL, and never "." or ".." (it becomes a file name: /etc/qubes-rpc/NAME
 * in the guest, a policy file on the host). */
static inline bool qag_good_name(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == 0 || n >= max || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.+-", s[i]))
            return false;
    return true;
}

#endif

/* The framed protocol between the host and the agent inside a guest, over
 * one virtio-serial port ("org.qubes.agent.0"; a unix socket on the host).
 *
 * Every frame: a 12-byte header (magic, type, payload length, all little-
 * endian uint32) and the payload. One session at a time: the host opens it
 * with HELLO carrying a nonce, the agent answers HELLO_ACK with the same
 * nonce (anything before that is discarded, so a session never reads what an
 * earlier one left behind). Then, for a command: EXEC, STDIN frames (an
 * empty one is end-of-file) one way, STDOUT/STDERR frames the other, and
 * finally EXIT with the status. SERVICE runs a named service the same way.
 * SHUTDOWN asks the guest to power off. */
#ifndef QUBES_AGENT_PROTOCOL_H
#define QUBES_AGENT_PROTOCOL_H

#include <stdint.h>

#define QAG_MAGIC 0x31474151u           /* "QAG1" */
#define QAG_PORT_NAME "org.qubes.agent.0"
#define QAG_MAX_PAYLOAD 65536

enum qag_type {
    QAG_HELLO = 1,          /* host -> guest: uint64 nonce */
    QAG_HELLO_ACK = 2,      /* guest -> host: the same nonce */
    QAG_EXEC = 3,           /* host -> guest: "USER\0COMMAND" run by /bin/sh -c */
    QAG_STDIN = 4,          /* host -> guest: data; empty = end of input */
    QAG_STDOUT = 5,         /* guest -> host: data */
    QAG_STDERR = 6,         /* guest -> host: data */
    QAG_EXIT = 7,           /* guest -> host: int32 exit status (128+N for signal N) */
    QAG_SHUTDOWN = 8,       /* host -> guest: power off */
    QAG_ERROR = 9,          /* guest -> host: text; the request failed */
    QAG_SERVICE = 10,       /* host -> guest: "USER\0SERVICE\0SOURCE-VM": run the
                               service /etc/qubes-rpc/SERVICE, like EXEC */
    QAG_IDENTITY = 11,      /* host -> guest: "NAME\0MAC\0IP/PREFIX\0GATEWAY\0SEED":
                               who the guest is now (a restored DispVM is not the VM
                               that was saved); empty MAC: no network. SEED: 32
                               random bytes from the host, in hex, which the guest
                               adds to its entropy pool and reseeds its random
                               number generator with, before anything else runs:
                               DispVMs restored from one savefile share its state
                               (an agent that knows no SEED ignores it). Answered
                               by EXIT 0, or ERROR */
};

struct qag_header {
    uint32_t magic;
    uint32_t type;
    uint32_t len;
};

#endif

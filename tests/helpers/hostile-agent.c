/* A guest agent that lies, for tests/unit/test_agent.c: it plays the guest
 * on a VM's agent socket (protocol v2, guest/protocol.h). It listens on
 * SOCKET (removing what is there), prints "listening", takes one
 * connection (the VM's qrexec-daemon), answers every HELLO with HELLO_ACK
 * and the same nonce, and exits at the end of the connection. Requests
 * other than EXEC get no answer. An EXEC ("USER\0COMMAND") is answered per
 * its COMMAND, in every MODE:
 *   echo X       STDOUT "X", empty STDOUT and STDERR, EXIT 0 (a good agent)
 *   short-exit   an EXIT whose payload is 2 bytes, not a status
 *   ctrl         an ERROR full of terminal control sequences
 *   half         the header of a 100-byte STDOUT frame, 10 bytes of it, then
 *                nothing more, whatever comes: the channel stalls for good
 *   silent       nothing
 *   hold         nothing yet ("held SID" on stdout); answered "held-ok" and
 *                EXIT 0 after the next flood has been sent
 *   flood        16 MiB of STDOUT at once, without waiting for any CREDIT
 *   oversized    a frame header whose length is over QAG_MAX_PAYLOAD
 *   badmagic     16 bytes that are not a frame
 *   junk X       frames of unknown types and for sessions that do not exist,
 *                then as "echo X"
 * MODE says what happens besides:
 *   lies, flood, oversized   nothing more
 *   mute         not even HELLO is answered: the agent never answers
 *   unknown      junk frames right after the handshake too
 *   calls        after the handshake, CALLs (guest session ids) that dom0
 *                must refuse, one that its policy allows (qubes.Ok to dom0),
 *                one on a host-range session id, and 200 at once; prints
 *                "call LABEL error TEXT", "call LABEL exit N" or "call LABEL
 *                stdout DATA" per answer, "calls done" once every CALL that
 *                should have an answer has one.
 * It prints "close SID" for each CLOSE it gets.
 * Usage: hostile-agent SOCKET MODE */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../guest/protocol.h"

#define MANY 200
#define FLOOD (16u << 20)

static const char *mode;
static char *out;               /* what goes to the daemon, not yet written */
static size_t outlen, outcap;
static char in[2 * (sizeof(struct qag_header) + QAG_MAX_PAYLOAD)];
static size_t inlen;
static int scanning = 1, started; /* for a HELLO; the first came */
static int mute;               /* after "half": nothing more, ever */
static uint32_t held;           /* a "hold" session, 0: none */
static int answers, expected;

static void queue(const void *p, size_t len)
{
    if (mute)
        return;
    if (outlen + len > outcap) {
        while (outlen + len > outcap)
            outcap = outcap ? outcap * 2 : 65536;
        if (!(out = realloc(out, outcap)))
            _exit(3);
    }
    memcpy(out + outlen, p, len);
    outlen += len;
}

static void frame(uint32_t type, uint32_t sid, const void *p, uint32_t len)
{
    struct qag_header h = { QAG_MAGIC, type, sid, len };
    queue(&h, sizeof h);
    if (len)
        queue(p, len);
}

static void exit_status(uint32_t sid, int32_t status)
{
    frame(QAG_EXIT, sid, &status, 4);
}

static void echo(uint32_t sid, const char *text)
{
    frame(QAG_STDOUT, sid, text, (uint32_t)strlen(text));
    frame(QAG_STDOUT, sid, NULL, 0);
    frame(QAG_STDERR, sid, NULL, 0);
    exit_status(sid, 0);
}

/* Frames the daemon must ignore; `sid`, when not 0, is a live session. */
static void junk(uint32_t sid)
{
    uint32_t credit[2] = { 99, 4096 };
    uint64_t wrong = 0x0123456789abcdefull;
    frame(99, 0, "what", 4);                    /* an unknown type, no session */
    frame(0, 0, NULL, 0);
    frame(QAG_STDOUT, 0x1234, "nobody", 6);     /* sessions that do not exist */
    frame(QAG_EXIT, 0x4321, "\0\0\0\0", 4);
    frame(QAG_ERROR, 0x777, "nobody", 6);
    frame(QAG_CREDIT, 0x999, credit, 8);
    frame(QAG_CLOSE, QAG_GUEST_SESSION | 0x55, NULL, 0);
    frame(QAG_STDIN, QAG_GUEST_SESSION | 0x56, "x", 1);
    frame(QAG_HELLO_ACK, 0, &wrong, 8);         /* a stale answer */
    if (sid) {
        frame(99, sid, "what", 4);              /* unknown types on a live one */
        frame(0xffffffffu, sid, NULL, 0);
        frame(QAG_CREDIT, sid, credit, 8);      /* a stream that is not one */
        frame(QAG_CREDIT, sid, "\1", 1);        /* too short */
    }
}

static void exec(uint32_t sid, const char *p, uint32_t len)
{
    size_t ul = strnlen(p, len);
    const char *cmd = ul < len ? p + ul + 1 : "";
    if (strncmp(cmd, "echo ", 5) == 0) {
        echo(sid, cmd + 5);
    } else if (strcmp(cmd, "short-exit") == 0) {
        frame(QAG_EXIT, sid, "\0\0", 2);
    } else if (strcmp(cmd, "ctrl") == 0) {
        const char *t = "no such user \x1b]0;owned\x07\x1b[2J\xc2\x9b" "6n\rdone";
        frame(QAG_ERROR, sid, t, (uint32_t)strlen(t));
    } else if (strcmp(cmd, "half") == 0) {
        struct qag_header h = { QAG_MAGIC, QAG_STDOUT, sid, 100 };
        queue(&h, sizeof h);
        queue("0123456789", 10);
        mute = 1;
    } else if (strcmp(cmd, "hold") == 0) {
        held = sid;
        printf("held %u\n", sid);
    } else if (strcmp(cmd, "flood") == 0) {
        static char data[QAG_MAX_DATA];
        memset(data, 'f', sizeof data);
        for (uint32_t n = 0; n < FLOOD; n += sizeof data)
            frame(QAG_STDOUT, sid, data, sizeof data);
        exit_status(sid, 0);
        if (held)
            echo(held, "held-ok");
        held = 0;
    } else if (strcmp(cmd, "oversized") == 0) {
        struct qag_header h = { QAG_MAGIC, QAG_STDOUT, sid, QAG_MAX_PAYLOAD + 1 };
        queue(&h, sizeof h);
        queue("the rest of a frame that is too long", 36);
    } else if (strcmp(cmd, "badmagic") == 0) {
        queue("GARBAGE!GARBAGE!", 16);
    } else if (strncmp(cmd, "junk ", 5) == 0) {
        junk(sid);
        echo(sid, cmd + 5);
    }
    /* "silent" and anything else: nothing */
}

/* ---- calls ---- */

struct call {
    const char *label;
    const char *p;
    uint32_t len;
};
#define C(label, lit) { label, lit, sizeof lit - 1 }
static const struct call calls[] = {
    C("slash", "a/b\0qubes.Ok"),
    C("dotdot-target", "../x\0qubes.Ok"),
    C("dotdot-service", "dom0\0../../bin/sh"),
    C("long-service", "dom0\0qubes.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    C("long-target", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\0qubes.Ok"),
    C("no-nul", "dom0"),
    C("empty", ""),
    C("extra-source", "dom0\0qubes.Extra\0dom0"),
    C("no-such-vm", "nosuchvm\0qubes.Any"),
    C("no-policy", "work\0qubes.NoPolicy"),
    C("ok", "dom0\0qubes.Ok"),
};
#define NCALLS (int)(sizeof calls / sizeof calls[0])
#define HOST_SID 0x4242u        /* a CALL on a session id of the host's range */

static const char *label_of(uint32_t sid)
{
    uint32_t n = sid & ~QAG_GUEST_SESSION;
    if (sid == HOST_SID)
        return "host-sid";
    if (!(sid & QAG_GUEST_SESSION))
        return NULL;
    if (n >= 1 && n <= (uint32_t)NCALLS)
        return calls[n - 1].label;
    return n >= 1000 && n < 1000 + MANY ? "many" : NULL;
}

static void send_calls(void)
{
    for (int i = 0; i < NCALLS; i++) {
        frame(QAG_CALL, QAG_GUEST_SESSION | (uint32_t)(i + 1), calls[i].p, calls[i].len);
        frame(QAG_STDIN, QAG_GUEST_SESSION | (uint32_t)(i + 1), NULL, 0);
    }
    frame(QAG_CALL, HOST_SID, "dom0\0qubes.Ok", 13);
    for (uint32_t i = 0; i < MANY; i++)
        frame(QAG_CALL, QAG_GUEST_SESSION | (1000 + i), "work\0qubes.NoPolicy", 19);
    expected = NCALLS + MANY;
}

static void call_answer(const struct qag_header *h, const char *p)
{
    const char *label = label_of(h->session);
    if (!label)
        return;
    if (h->type == QAG_STDOUT && h->len)
        printf("call %s stdout %.*s\n", label, (int)strcspn(p, "\n"), p);
    if (h->type == QAG_ERROR)
        printf("call %s error %s\n", label, p);
    if (h->type == QAG_EXIT) {
        int32_t st = -1;
        if (h->len == 4)
            memcpy(&st, p, 4);
        printf("call %s exit %d\n", label, st);
    }
    if ((h->type == QAG_ERROR || h->type == QAG_EXIT) && ++answers == expected)
        printf("calls done\n");
}

/* ---- the channel ---- */

static void ready(void)
{
    if (strcmp(mode, "unknown") == 0)
        junk(0);
    if (strcmp(mode, "calls") == 0)
        send_calls();
}

static void take(const struct qag_header *h, char *p)
{
    char save = p[h->len];
    p[h->len] = '\0';
    if (h->type == QAG_HELLO && h->len == 8)
        frame(QAG_HELLO_ACK, 0, p, 8);      /* again: the daemon reset the channel */
    else if (h->type == QAG_EXEC && !(h->session & QAG_GUEST_SESSION))
        exec(h->session, p, h->len);
    else if (h->type == QAG_CLOSE)
        printf("close %u\n", h->session);
    else if (h->session & QAG_GUEST_SESSION || h->session == HOST_SID)
        call_answer(h, p);
    p[h->len] = save;
}

/* Frames out of what came; before the handshake (and after a reader of
 * ours went out of step), everything up to a HELLO is skipped. */
static void input(void)
{
    if (strcmp(mode, "mute") == 0) {
        inlen = 0;
        return;
    }
    size_t pos = 0;
    struct qag_header pat = { QAG_MAGIC, QAG_HELLO, 0, 8 }, h;
    while (inlen - pos >= sizeof h) {
        if (scanning) {
            char *hit = memmem(in + pos, inlen - pos, &pat, sizeof pat);
            if (!hit) {
                pos = inlen - (sizeof pat - 1);
                break;
            }
            pos = (size_t)(hit - in);
            if (inlen - pos < sizeof pat + 8)
                break;
            frame(QAG_HELLO_ACK, 0, hit + sizeof pat, 8);
            pos += sizeof pat + 8;
            scanning = 0;
            if (!started++)
                ready();
            continue;
        }
        memcpy(&h, in + pos, sizeof h);
        if (h.magic != QAG_MAGIC || h.len > QAG_MAX_PAYLOAD) {
            printf("out of step\n");
            scanning = 1;
            continue;
        }
        if (inlen - pos < sizeof h + h.len)
            break;
        take(&h, in + pos + sizeof h);
        pos += sizeof h + h.len;
    }
    memmove(in, in + pos, inlen - pos);
    inlen -= pos;
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hostile-agent SOCKET MODE\n");
        return 2;
    }
    mode = argv[2];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof addr.sun_path)
        return 2;
    strcpy(addr.sun_path, argv[1]);
    signal(SIGPIPE, SIG_IGN);
    unlink(argv[1]);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 4) < 0) {
        perror("hostile-agent");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    int c;
    while ((c = accept(l, NULL, NULL)) < 0)
        if (errno != EINTR)
            return 1;
    close(l);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    size_t done = 0;            /* of `out`, written */
    for (;;) {
        struct pollfd p = { c, POLLIN | (outlen > done ? POLLOUT : 0), 0 };
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return 1;
        if (p.revents & POLLOUT) {
            ssize_t w = write(c, out + done, outlen - done);
            if (w > 0)
                done += (size_t)w;
            if (done == outlen)
                done = outlen = 0;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(c, in + inlen, sizeof in - inlen);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return 0;   /* the daemon went */
            if (r > 0) {
                inlen += (size_t)r;
                input();
            }
        }
    }
}

/* A guest agent that lies, for the tests: it takes the agent's place on a
 * VM's socket (removing what is there), answers every handshake, and then
 * answers each request as MODE says:
 *   short-exit   an EXIT frame too short to hold a status
 *   error        an ERROR frame full of terminal control sequences
 *   half-frame   the header of a 100-byte STDOUT frame and 10 bytes of it
 *   output       1 MiB of output, then EXIT 0
 *   silent       nothing at all
 * and then keeps the connection open, saying nothing. It prints
 * "listening" once it listens, and serves connections until killed.
 * Usage: hostile-agent SOCKET MODE */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../guest/protocol.h"
#include "../../orchestrator/util.h"

static void frame(int fd, uint32_t type, const void *data, uint32_t len)
{
    struct qag_header h = { QAG_MAGIC, type, len };
    if (qwrite_all(fd, &h, sizeof h) < 0 || (len && qwrite_all(fd, data, len) < 0))
        _exit(3);
}

/* One frame in; -1 at the end of the stream. */
static int take(int fd, struct qag_header *h, char *payload)
{
    size_t got = 0;
    while (got < sizeof *h) {
        ssize_t r = read(fd, (char *)h + got, sizeof *h - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    if (h->magic != QAG_MAGIC || h->len > QAG_MAX_PAYLOAD)
        return -1;
    for (got = 0; got < h->len;) {
        ssize_t r = read(fd, payload + got, h->len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void serve(int c, const char *mode)
{
    static char payload[QAG_MAX_PAYLOAD];
    struct qag_header h;
    /* Handshakes (the host may send HELLO more than once), then a request. */
    do {
        if (take(c, &h, payload) < 0)
            _exit(0);
        if (h.type == QAG_HELLO && h.len == 8)
            frame(c, QAG_HELLO_ACK, payload, 8);
    } while (h.type == QAG_HELLO);
    if (strcmp(mode, "short-exit") == 0) {
        frame(c, QAG_EXIT, "\0\0", 2);
    } else if (strcmp(mode, "error") == 0) {
        const char *text = "no such user \x1b]0;owned\x07\x1b[2J\xc2\x9b" "6n\rdone";
        frame(c, QAG_ERROR, text, (uint32_t)strlen(text));
    } else if (strcmp(mode, "half-frame") == 0) {
        struct qag_header big = { QAG_MAGIC, QAG_STDOUT, 100 };
        if (qwrite_all(c, &big, sizeof big) < 0 || qwrite_all(c, "0123456789", 10) < 0)
            _exit(3);
    } else if (strcmp(mode, "output") == 0) {
        memset(payload, 'x', 16384);
        for (int i = 0; i < 64; i++)
            frame(c, QAG_STDOUT, payload, 16384);
        frame(c, QAG_EXIT, "\0\0\0\0", 4);
    }
    /* "silent", and after the lies: the connection stays, silent. */
    while (read(c, payload, sizeof payload) > 0)
        ;
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hostile-agent SOCKET MODE\n");
        return 2;
    }
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof addr.sun_path)
        return 2;
    strcpy(addr.sun_path, argv[1]);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);       /* connections' processes reap themselves */
    unlink(argv[1]);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 16) < 0) {
        perror("hostile-agent");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            close(l);
            serve(c, argv[2]);
        }
        close(c);
    }
}

/* qrexec-client-vm: from inside a VM, calls SERVICE on TARGET (another VM,
 * dom0 or $dispvm) through the agent's local socket, QAG_LOCAL_SOCKET
 * (protocol.h). The host's policy decides; the exit status is the
 * service's. Without PROG our stdin is the service's input and its output
 * our stdout; with PROG, PROG talks to the service: the service's output is
 * PROG's stdin, PROG's stdout the service's input. The service's stderr is
 * not shown. Static, libc only (and the mux's relay, qmux_pump). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../qrexec/mux.h"
#include "protocol.h"

#define ME "qrexec-client-vm"
/* Exit statuses: the service's, or one of these. */
#define EX_NOAGENT 1
#define EX_USAGE 2
#define EX_FAILED 126

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " ME " TARGET SERVICE [PROG [ARGS...]]\n"
            "Calls SERVICE on TARGET (a VM, dom0 or $dispvm) through the agent; the\n"
            "host's policy decides. Without PROG, standard input and output are the\n"
            "service's; with PROG, PROG's are. The exit status is the service's; %d\n"
            "when the call was refused or failed, %d when the agent cannot be reached.\n",
            EX_FAILED, EX_NOAGENT);
}

static int check_names(const char *target, const char *service)
{
    if (strcmp(target, "$dispvm") != 0 && !qag_good_name(target, QAG_MAX_TARGET)) {
        fprintf(stderr, ME ": bad target '%s': 1 to %d of A-Z a-z 0-9 _ . + - (not starting with '.'), "
                "or $dispvm\n", target, QAG_MAX_TARGET - 1);
        return -1;
    }
    if (!qag_good_name(service, QAG_MAX_SERVICE)) {
        fprintf(stderr, ME ": bad service name '%s': 1 to %d of A-Z a-z 0-9 _ . + - (not starting "
                "with '.')\n", service, QAG_MAX_SERVICE - 1);
        return -1;
    }
    return 0;
}

/* Descriptors 0-2 open, so that the socket or a pipe is not taken for one. */
static void std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return;
}

static int connect_agent(void)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", QAG_LOCAL_SOCKET);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, ME ": cannot connect to %s: %s (is qubes-agent running?)\n",
                QAG_LOCAL_SOCKET, strerror(errno));
        if (s >= 0)
            close(s);
        return -1;
    }
    return s;
}

/* The request, one message: CALL (session 0) "TARGET\0SERVICE", and the
 * session's ends: where its input is read, where its output is written. */
static int send_call(int s, const char *target, const char *service, const int ends[3])
{
    char buf[sizeof(struct qag_header) + QAG_MAX_TARGET + QAG_MAX_SERVICE];
    size_t tl = strlen(target), sl = strlen(service);
    struct qag_header h = { QAG_MAGIC, QAG_CALL, 0, (uint32_t)(tl + 1 + sl) };
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, target, tl + 1);
    memcpy(buf + sizeof h + tl + 1, service, sl);
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(3 * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { buf, sizeof h + h.len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.room,
                          .msg_controllen = sizeof ctl.room };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(cm), ends, 3 * sizeof(int));
    ssize_t r;
    while ((r = sendmsg(s, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return r == (ssize_t)iov.iov_len ? 0 : -1;
}

/* PROG, its stdin the service's output, its stdout the service's input. */
static pid_t start_prog(char **argv, int from_service, int to_service)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (dup2(from_service, 0) < 0 || dup2(to_service, 1) < 0)
            _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, ME ": cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        fprintf(stderr, ME ": fork: %s\n", strerror(errno));
    return pid;
}

/* Prints the service's (or the policy's) error text, made printable. */
static void say_error(const char *target, const char *service, char *text)
{
    for (char *p = text; *p; p++)
        if (!isprint((unsigned char)*p))
            *p = '?';
    fprintf(stderr, ME ": %s %s: %s\n", target, service, text);
}

/* The agent's one answer: EXIT gives our status, ERROR says why not. */
static int answer(int s, const char *target, const char *service)
{
    static char buf[sizeof(struct qag_header) + QAG_MAX_PAYLOAD + 1];
    struct qag_header h;
    ssize_t n;
    while ((n = recv(s, buf, sizeof buf - 1, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0 || n < (ssize_t)sizeof h) {
        say_error(target, service, n < 0 ? strerror(errno) : "the agent hung up without an answer");
        return EX_FAILED;
    }
    memcpy(&h, buf, sizeof h);
    buf[n] = '\0';
    if (h.magic == QAG_MAGIC && h.len == (size_t)n - sizeof h) {
        if (h.type == QAG_EXIT && h.len == 4) {
            int32_t status;
            memcpy(&status, buf + sizeof h, sizeof status);
            return status >= 0 && status <= 255 ? status : 255;
        }
        if (h.type == QAG_ERROR) {
            say_error(target, service, buf + sizeof h);
            return EX_FAILED;
        }
    }
    say_error(target, service, "the agent's answer makes no sense");
    return EX_FAILED;
}

static int pipes(int p[3][2])
{
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            fprintf(stderr, ME ": pipe: %s\n", strerror(errno));
            return -1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    int i = 1;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--") == 0) {
        i++;
    } else if (argc > 1 && argv[1][0] == '-' && argv[1][1]) {
        fprintf(stderr, ME ": unknown option %s\n", argv[1]);
        usage(stderr);
        return EX_USAGE;
    }
    if (argc - i < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *target = argv[i], *service = argv[i + 1];
    char **prog = argc - i > 2 ? argv + i + 2 : NULL;
    if (check_names(target, service) < 0)
        return EX_USAGE;

    /* A service that stops reading its input must not kill us before its
     * answer comes: writes to it fail with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    std_fds();
    int s = connect_agent();
    int p[3][2];
    if (s < 0)
        return EX_NOAGENT;
    if (pipes(p) < 0)
        return EX_FAILED;
    /* The agent's ends: stdin's read end, stdout's and stderr's write ends. */
    int ends[3] = { p[0][0], p[1][1], p[2][1] };
    if (send_call(s, target, service, ends) < 0) {
        fprintf(stderr, ME ": cannot send the request to %s: %s\n", QAG_LOCAL_SOCKET,
                strerror(errno));
        return EX_NOAGENT;
    }
    for (int k = 0; k < 3; k++)
        close(ends[k]);

    pid_t pid = -1;
    if (prog) {
        pid = start_prog(prog, p[1][0], p[0][1]);
        if (pid < 0)
            return EX_FAILED;   /* our hang-up ends the session */
        close(p[1][0]);
        close(p[0][1]);
        /* Only the service's stderr is left to us: read and dropped, so
         * that it never waits on us, until the answer is there. */
        qmux_pump(-1, -1, -1, -1, -1, p[2][0], s, 0);
    } else {
        qmux_pump(0, 1, -1, p[0][1], p[1][0], p[2][0], s, 0);
    }
    int status = answer(s, target, service);
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    return status;
}

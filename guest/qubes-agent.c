/* The guest agent: runs inside a VM (started, and restarted, by its init),
 * speaks the channel protocol (protocol.h) with the host's qrexec-daemon
 * over the virtio-serial port QAG_PORT_NAME through the session multiplexer
 * (qrexec/mux.h), runs what the host asks for, any number of sessions at
 * once, and passes on the calls of local programs (qrexec-client-vm) that
 * come to QAG_LOCAL_SOCKET. A small static program with no dependencies
 * beyond libc. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/ifconf.h"
#include "../qrexec/mux.h"
#include "protocol.h"

#define NET_IF "eth0"
#define RPC_DIR "/etc/qubes-rpc"
/* A local request: the header and "TARGET\0SERVICE", with room to spare so
 * that one too long is seen as such rather than cut short. */
#define REQ_MAX (sizeof(struct qag_header) + QAG_MAX_TARGET + QAG_MAX_SERVICE + 8)
/* Local callers at once: each holds a socket and, while its request waits
 * for the mux, three descriptors. */
#define MAX_CLIENTS QMUX_MAX_SESSIONS
/* How long SHUTDOWN's answer may take to leave before the power goes. */
#define FLUSH_MS 2000

static struct qmux *mux;
static bool powering_off;
static long power_off_by;
static int nclients;

/* A local caller: its socket, and its session once its request is sent. */
struct client {
    int fd;
    uint32_t sid;               /* 0 while we wait for its request */
};

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qubes-agent: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* /dev/vportNpM whose /sys/class/virtio-ports/.../name is ours. */
static int open_port(void)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    char path[512], name[128];
    int fd = -1;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(name, sizeof name, f)) {
            name[strcspn(name, "\n")] = '\0';
            if (strcmp(name, QAG_PORT_NAME) == 0) {
                snprintf(path, sizeof path, "/dev/%s", e->d_name);
                fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
            }
        }
        fclose(f);
        if (fd >= 0)
            break;
    }
    if (d)
        closedir(d);
    return fd;
}

/* Splits a request's payload into its NUL-separated fields, at most max
 * (the mux ends a payload with a NUL beyond len, so the last one is a
 * string too; a NUL at the very end is taken for that end, not for an
 * empty field after it). Returns how many there were, -1 for more than max. */
static int fields(const char *payload, uint32_t len, const char *part[], int max)
{
    uint32_t at = 0;
    int n = 0;
    if (len > 0 && payload[len - 1] == '\0')
        len--;
    while (n < max) {
        part[n++] = payload + at;
        at += (uint32_t)strnlen(payload + at, len - at);
        if (at >= len)
            return n;
        at++;
    }
    return -1;
}

/* ---- the host's requests ---- */

static void refuse_errno(uint32_t sid, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    qmux_refuse(mux, sid, msg);
}

static void close_pipes(int p[3][2])
{
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            if (p[i][j] >= 0)
                close(p[i][j]);
}

/* The new process: its own session (so that the mux can kill all of it),
 * the pipes as its standard streams, the signals as a program expects them
 * (the agent ignores SIGPIPE, and an ignored signal stays so across exec). */
static void __attribute__((noreturn)) child(char *const argv[], int p[3][2],
                                            const char *service, const char *source)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    setsid();
    if (dup2(p[0][0], 0) < 0 || dup2(p[1][1], 1) < 0 || dup2(p[2][1], 2) < 0)
        _exit(127);
    if (service && (setenv("QREXEC_REMOTE_DOMAIN", source, 1) < 0 ||
                    setenv("QREXEC_SERVICE_FULL_NAME", service, 1) < 0))
        _exit(127);
    if (chdir("/") < 0)
        _exit(127);
    execv(argv[0], argv);
    dprintf(2, "qubes-agent: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Runs argv for session sid; the mux takes its streams and, when it has
 * exited, answers with its status. `service`: what a service's environment
 * names (NULL for a command). */
static void start(uint32_t sid, char *const argv[], const char *service, const char *source)
{
    int p[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            refuse_errno(sid, "cannot start it: pipe");
            close_pipes(p);
            return;
        }
    pid_t pid = fork();
    if (pid == 0)
        child(argv, p, service, source);
    if (pid < 0) {
        refuse_errno(sid, "cannot start it: fork");
        close_pipes(p);
        return;
    }
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    if (qmux_serve(mux, sid, p[0][1], p[1][0], p[2][0], pid) < 0) {
        /* The session is not there to serve (it cannot happen from within
         * its request): nobody will reap the process but us. */
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

/* EXEC "USER\0COMMAND": the command by /bin/sh -c. The test guest runs
 * everything as root, so USER is not looked at. */
static void take_exec(uint32_t sid, const char *payload, uint32_t len)
{
    const char *part[2];
    if (fields(payload, len, part, 2) != 2 || !part[1][0]) {
        qmux_refuse(mux, sid, "bad EXEC request: \"USER\\0COMMAND\" expected");
        return;
    }
    char *argv[] = { "/bin/sh", "-c", (char *)part[1], NULL };
    start(sid, argv, NULL, NULL);
}

/* SERVICE "USER\0SERVICE\0SOURCE": the program /etc/qubes-rpc/SERVICE; the
 * name is checked so that it can only ever name a file there. */
static void take_service(uint32_t sid, const char *payload, uint32_t len)
{
    const char *part[3] = { "", "", "" };
    int n = fields(payload, len, part, 3);
    if (n < 2) {
        qmux_refuse(mux, sid, "bad SERVICE request: \"USER\\0SERVICE\\0SOURCE\" expected");
        return;
    }
    if (!qag_good_name(part[1], QAG_MAX_SERVICE)) {
        qmux_refuse(mux, sid, "bad service name: 1 to 63 of [A-Za-z0-9_.+-], not starting with '.'");
        return;
    }
    char path[sizeof RPC_DIR + QAG_MAX_SERVICE + 1];
    snprintf(path, sizeof path, RPC_DIR "/%s", part[1]);
    if (access(path, X_OK) < 0) {
        char msg[QAG_MAX_SERVICE + 32];
        snprintf(msg, sizeof msg, "no service %s in this VM", part[1]);
        qmux_refuse(mux, sid, msg);
        return;
    }
    char *argv[] = { path, NULL };
    start(sid, argv, part[1], part[2]);
}

/* Host entropy, hex: into the pool, credited, and the generator reseeded
 * now, so that two guests restored from one savefile part ways at once. */
static int take_seed(const char *hex)
{
    union {
        struct rand_pool_info info;
        unsigned char room[sizeof(struct rand_pool_info) + 64];
    } seed;
    unsigned char *bytes = (unsigned char *)seed.info.buf;
    size_t n = 0;
    for (; n < 64 && isxdigit((unsigned char)hex[2 * n]) && isxdigit((unsigned char)hex[2 * n + 1]);
         n++)
        sscanf(hex + 2 * n, "%2hhx", &bytes[n]);
    if (n == 0)
        return 0;
    seed.info.entropy_count = (int)(n * 8);
    seed.info.buf_size = (int)n;
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 || ioctl(fd, RNDADDENTROPY, &seed.info) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0
                 ? -1 : 0;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* IDENTITY "NAME\0MAC\0IP/PREFIX\0GATEWAY\0SEED", the identity the host
 * gives a restored VM: the seed first, then the hostname, the network
 * interface's MAC, address and default route. */
static void take_identity(uint32_t sid, const char *payload, uint32_t len)
{
    const char *part[5] = { "", "", "", "", "" };
    if (fields(payload, len, part, 5) < 0) {
        qmux_refuse(mux, sid, "bad IDENTITY request: \"NAME\\0MAC\\0IP/PREFIX\\0GATEWAY\\0SEED\" expected");
        return;
    }
    const char *what = NULL;
    char ip[32] = "";
    int prefix = 24;
    if (take_seed(part[4]) < 0)
        what = "random seed";
    else if (!part[0][0] ? (errno = EINVAL) : sethostname(part[0], strlen(part[0])) < 0)
        what = "hostname";
    else if (part[1][0]) {
        const char *slash = strchr(part[2], '/');
        snprintf(ip, sizeof ip, "%.*s", slash ? (int)(slash - part[2]) : (int)strlen(part[2]),
                 part[2]);
        if (slash)
            prefix = atoi(slash + 1);
        if (ifconf_set_mac(NET_IF, part[1]) < 0)
            what = "MAC address";
        else if (ifconf_set_ipv4(NET_IF, ip, prefix) < 0 || ifconf_up(NET_IF) < 0)
            what = "address";
        else if (part[3][0] && ifconf_default_route(NET_IF, part[3]) < 0)
            what = "default route";
    } else if (access("/sys/class/net/" NET_IF, F_OK) == 0 && ifconf_unconfigure(NET_IF) < 0) {
        what = "interface down";     /* no network: nothing of the saved VM's stays */
    }
    if (what) {
        char msg[64];
        snprintf(msg, sizeof msg, "cannot set the %s", what);
        refuse_errno(sid, msg);
        return;
    }
    qmux_answer(mux, sid, 0);
}

/* Stops the loop once SHUTDOWN's answer has left (or the time is up): the
 * mux has no flush of its own, and stopping it skips its last write. */
static void flush_tick(struct qmux *m, int fd, short revents, void *arg)
{
    uint64_t ticks;
    (void)revents;
    (void)arg;
    if (read(fd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        qmux_stop(m);
    if (qmux_queued(m) == 0 || qmux_now_ms() >= power_off_by)
        qmux_stop(m);
}

/* SHUTDOWN: answered first; main powers off once the answer is out. */
static void take_shutdown(uint32_t sid)
{
    qmux_answer(mux, sid, 0);
    if (powering_off)
        return;
    powering_off = true;
    power_off_by = qmux_now_ms() + FLUSH_MS;
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec every = { { 0, 10 * 1000000 }, { 0, 10 * 1000000 } };
    if (t < 0 || timerfd_settime(t, 0, &every, NULL) < 0 ||
        qmux_watch(mux, t, POLLIN, flush_tick, NULL) < 0) {
        logmsg("cannot wait for SHUTDOWN's answer to leave: %s", strerror(errno));
        qmux_stop(mux);
    }
}

static void on_request(struct qmux *m, uint32_t sid, uint32_t type, const char *payload,
                       uint32_t len, void *ctx)
{
    (void)ctx;
    if (powering_off && type != QAG_SHUTDOWN) {
        qmux_refuse(m, sid, "the VM is powering off");
        return;
    }
    switch (type) {
    case QAG_EXEC:
        take_exec(sid, payload, len);
        break;
    case QAG_SERVICE:
        take_service(sid, payload, len);
        break;
    case QAG_IDENTITY:
        take_identity(sid, payload, len);
        break;
    case QAG_SHUTDOWN:
        take_shutdown(sid);
        break;
    default: {
        char msg[64];
        snprintf(msg, sizeof msg, "request type %u not known to this agent", type);
        qmux_refuse(m, sid, msg);
    }
    }
}

/* ---- local callers ---- */

/* One message to a local caller: a header (session 0) and `data`. The
 * caller waits for it, so the socket has room; if not, it is dropped
 * rather than let one caller stall the agent. */
static void reply(int fd, uint32_t type, const void *data, size_t len)
{
    char buf[sizeof(struct qag_header) + 4096];
    if (len > sizeof buf - sizeof(struct qag_header))
        len = sizeof buf - sizeof(struct qag_header);
    struct qag_header h = { QAG_MAGIC, type, 0, (uint32_t)len };
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, data, len);
    if (send(fd, buf, sizeof h + len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EPIPE &&
        errno != ECONNRESET)    /* those: the caller has gone, nobody to tell */
        logmsg("cannot answer a local caller: %s", strerror(errno));
}

static void reply_error(int fd, const char *msg)
{
    reply(fd, QAG_ERROR, msg, strlen(msg));
}

static void drop_client(struct client *c)
{
    qmux_unwatch(mux, c->fd);
    close(c->fd);
    free(c);
    nclients--;
}

/* A session of a local caller ended: it hears how, and goes. */
static void on_ended(struct qmux *m, void *sctx, int status, const char *error)
{
    struct client *c = sctx;
    (void)m;
    if (error) {
        reply_error(c->fd, error);
    } else {
        int32_t code = status;
        reply(c->fd, QAG_EXIT, &code, sizeof code);
    }
    drop_client(c);
}

/* The descriptors a message brought (all of them closed on exec); the
 * first three are kept in fds, any more closed. Returns how many came. */
static int take_fds(struct msghdr *msg, int fds[3])
{
    int n = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++, n++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof fd, sizeof fd);
            if (n < 3)
                fds[n] = fd;
            else
                close(fd);
        }
    }
    return n;
}

/* What is wrong with a local request, or NULL; `req` gets the payload
 * rebuilt as "TARGET\0SERVICE" (and so nothing the caller added). */
static const char *check_call(char *buf, ssize_t n, int flags, int nfds, char *req,
                              uint32_t *reqlen)
{
    struct qag_header h;
    const char *part[2];
    if (flags & MSG_TRUNC)
        return "request too long";
    if (flags & MSG_CTRUNC || nfds != 3)
        return "a request takes three descriptors (stdin, stdout, stderr)";
    if (n < (ssize_t)sizeof h)
        return "request shorter than its header";
    memcpy(&h, buf, sizeof h);
    if (h.magic != QAG_MAGIC)
        return "not a request of protocol version 2 (bad magic)";
    if (h.type != QAG_CALL)
        return "only CALL is taken here";
    if (h.session != 0)
        return "a local request's session must be 0";
    if (h.len != (size_t)n - sizeof h)
        return "request length does not match its message";
    buf[n] = '\0';
    if (fields(buf + sizeof h, h.len, part, 2) != 2)
        return "bad CALL request: \"TARGET\\0SERVICE\" expected";
    if (strcmp(part[0], "$dispvm") != 0 && !qag_good_name(part[0], QAG_MAX_TARGET))
        return "bad target name: 1 to 31 of [A-Za-z0-9_.+-], or $dispvm";
    if (!qag_good_name(part[1], QAG_MAX_SERVICE))
        return "bad service name: 1 to 63 of [A-Za-z0-9_.+-], not starting with '.'";
    size_t tl = strlen(part[0]), sl = strlen(part[1]);
    memcpy(req, part[0], tl + 1);
    memcpy(req + tl + 1, part[1], sl);
    *reqlen = (uint32_t)(tl + 1 + sl);
    return NULL;
}

/* A caller's one message: its request, passed on to the host as a session. */
static void take_call(struct client *c)
{
    char buf[REQ_MAX + 1], req[REQ_MAX];
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(8 * sizeof(int))];
    } ctl;
    struct iovec iov = { buf, REQ_MAX };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.room,
                          .msg_controllen = sizeof ctl.room };
    ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int fds[3] = { -1, -1, -1 };
    int nfds = n > 0 ? take_fds(&msg, fds) : 0;
    uint32_t reqlen = 0;
    const char *why = n <= 0 ? "" : check_call(buf, n, msg.msg_flags, nfds, req, &reqlen);
    if (!why) {
        c->sid = qmux_call(mux, QAG_CALL, req, reqlen, fds[0], fds[1], fds[2], c);
        if (c->sid)
            return;
        why = qmux_ready(mux) ? "too many sessions" : "the host is not connected";
    } else {
        for (int i = 0; i < 3 && i < nfds; i++)
            close(fds[i]);
    }
    if (why[0])                 /* "": the caller hung up before asking */
        reply_error(c->fd, why);
    drop_client(c);
}

/* A caller's socket: first its request; once its session is under way it
 * has nothing more to say, so what can be read is its hang-up (or noise,
 * dropped), which ends the session. */
static void on_client(struct qmux *m, int fd, short revents, void *arg)
{
    struct client *c = arg;
    char b[64];
    (void)revents;
    if (c->sid == 0) {
        take_call(c);
        return;
    }
    ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    qmux_cancel(m, c->sid);
    drop_client(c);
}

static void on_listen(struct qmux *m, int fd, short revents, void *arg)
{
    (void)revents;
    (void)arg;
    int s = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (s < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            logmsg("accept on %s: %s", QAG_LOCAL_SOCKET, strerror(errno));
        return;
    }
    struct client *c = nclients < MAX_CLIENTS ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        reply_error(s, "too many callers at once");
        close(s);
        return;
    }
    c->fd = s;
    nclients++;
    if (qmux_watch(m, s, POLLIN, on_client, c) < 0) {
        reply_error(s, "too many callers at once");
        close(s);
        free(c);
        nclients--;
    }
}

/* The socket local programs call through. Mode 0666: any program in the VM
 * may ask, as in the original, since the host's policy judges the VM and
 * not who in it asks; in the test guest everything runs as root anyway. */
static int listen_local(void)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", QAG_LOCAL_SOCKET);
    if ((mkdir("/run", 0755) < 0 && errno != EEXIST) ||
        (mkdir("/run/qubes", 0755) < 0 && errno != EEXIST))
        return -1;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(QAG_LOCAL_SOCKET);   /* an earlier agent's: init restarts us */
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || chmod(QAG_LOCAL_SOCKET, 0666) < 0 ||
        listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void on_log(void *ctx, const char *msg)
{
    (void)ctx;
    logmsg("%s", msg);
}

/* Descriptors 0-2 open, so that no pipe or socket of ours is taken for a
 * standard stream (a child's dup2 onto itself would leave it close-on-exec). */
static void std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return;
}

/* Every session holds up to four descriptors here: more than the default
 * 1024 once many run at once. */
static void more_fds(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max && r.rlim_cur < 4096) {
        r.rlim_cur = r.rlim_max < 4096 ? r.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static const struct qmux_ops ops = {
    .request = on_request,
    .ended = on_ended,
    .log = on_log,
};

int main(void)
{
    int port;
    signal(SIGPIPE, SIG_IGN);
    std_fds();
    more_fds();
    for (int tries = 0; (port = open_port()) < 0; tries++) {
        if (tries == 100)
            logmsg("no virtio port named %s: is virtio_console loaded?", QAG_PORT_NAME);
        usleep(100000);
    }
    /* The mux handles the port's hang-ups itself (a port with no host
     * behind it reports one): it resets and waits for the next HELLO. */
    mux = qmux_new(port, QMUX_GUEST, &ops, NULL);
    if (!mux) {
        logmsg("out of memory");
        return 1;
    }
    int l = listen_local();
    if (l < 0 || qmux_watch(mux, l, POLLIN, on_listen, NULL) < 0)
        logmsg("no %s (%s): this VM cannot call services", QAG_LOCAL_SOCKET, strerror(errno));
    logmsg("ready on %s", QAG_PORT_NAME);
    int rc = qmux_run(mux);
    if (powering_off) {
        sync();
        reboot(RB_POWER_OFF);
    }
    logmsg("the loop ended (%d): %s", rc, strerror(errno));
    return 1;
}

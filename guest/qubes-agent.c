/* The guest agent: runs inside a VM (PID 1's child), talks to the host over
 * the virtio-serial port QAG_PORT_NAME, and runs the commands it is sent,
 * streaming their input and output. A small static program with no
 * dependencies beyond libc. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../orchestrator/ifconf.h"
#include "protocol.h"

#define NET_IF "eth0"

static int port = -1;

static void logmsg(const char *fmt, const char *arg)
{
    fprintf(stderr, "qubes-agent: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
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

/* Writes all of buf. A host that reads slowly is waited for as long as it
 * stays connected: a frame is never cut short, or the host would read the
 * rest of it as frames. A host that hangs up ends the session (-1). */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            if (poll(&pfd, 1, 1000) > 0 && (pfd.revents & POLLHUP) && !(pfd.revents & POLLOUT))
                return -1;
            continue;
        }
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static int send_frame(uint32_t type, const void *data, uint32_t len)
{
    struct qag_header h = { QAG_MAGIC, type, len };
    if (write_all(port, &h, sizeof h) < 0)
        return -1;
    return len ? write_all(port, data, len) : 0;
}

/* Reads exactly len bytes; 0 on success, -1 on error or end of session. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || (r < 0 && errno == EAGAIN)) {
            /* The host side is not connected (the port reports a hang-up
             * at once, so poll alone would spin): wait for it. */
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            if (poll(&pfd, 1, 200) > 0 && !(pfd.revents & POLLIN))
                usleep(10000);
            continue;
        }
        if (r < 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static char payload[QAG_MAX_PAYLOAD + 1];

static int recv_frame(struct qag_header *h)
{
    if (read_all(port, h, sizeof *h) < 0)
        return -1;
    if (h->magic != QAG_MAGIC || h->len > QAG_MAX_PAYLOAD)
        return -2;              /* out of step: resynchronise */
    if (h->len && read_all(port, payload, h->len) < 0)
        return -1;
    payload[h->len] = '\0';
    return 0;
}

/* Finds the next HELLO, byte by byte if need be, and acknowledges it. */
static void await_hello(void)
{
    uint32_t window[3] = { 0 };
    for (;;) {
        unsigned char b;
        if (read_all(port, &b, 1) < 0)
            continue;
        /* Slide a 12-byte window until a HELLO header shows up. */
        unsigned char *w = (unsigned char *)window;
        memmove(w, w + 1, 11);
        w[11] = b;
        if (window[0] == QAG_MAGIC && window[1] == QAG_HELLO && window[2] == 8) {
            if (read_all(port, payload, 8) == 0)
                send_frame(QAG_HELLO_ACK, payload, 8);
            return;
        }
    }
}

/* Runs argv (argv[0] a path) with `env` added to the environment. */
static void run_command(const char *user, char *const argv[], const char *env)
{
    int in[2], out[2], err[2];
    (void)user;                 /* the test guest runs everything as root */
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        send_frame(QAG_ERROR, "pipe failed", 11);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        setsid();
        if (env)
            putenv((char *)env);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        send_frame(QAG_ERROR, "fork failed", 11);
        return;
    }
    int to_child = in[1], port_watch = port;
    int open_outputs = 2;
    bool lost = false;          /* the host went away mid-frame: no more frames */
    static char buf[16384];
    while (open_outputs > 0 && !lost) {
        struct pollfd p[3] = {
            { .fd = out[0], .events = POLLIN },
            { .fd = err[0], .events = POLLIN },
            { .fd = port_watch, .events = POLLIN },
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP))) {
                ssize_t r = read(p[i].fd, buf, sizeof buf);
                if (r > 0) {
                    if (send_frame(i == 0 ? QAG_STDOUT : QAG_STDERR, buf, (uint32_t)r) < 0) {
                        kill(-pid, SIGKILL);
                        lost = true;
                        break;
                    }
                } else {
                    close(p[i].fd);
                    if (i == 0)
                        out[0] = -1;
                    else
                        err[0] = -1;
                    open_outputs--;
                }
            }
        }
        if ((p[2].revents & POLLHUP) && !(p[2].revents & POLLIN)) {
            /* The host went away: nobody wants the command any more. */
            kill(-pid, SIGKILL);
            port_watch = -1;
        }
        if (p[2].revents & POLLIN) {
            struct qag_header h;
            int r = recv_frame(&h);
            if (r == 0 && h.type == QAG_STDIN && to_child >= 0) {
                if (h.len == 0 || write_all(to_child, payload, h.len) < 0) {
                    close(to_child);
                    to_child = -1;
                }
            }
        }
    }
    if (to_child >= 0)
        close(to_child);
    if (out[0] >= 0)
        close(out[0]);
    if (err[0] >= 0)
        close(err[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int32_t code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (!lost)
        send_frame(QAG_EXIT, &code, sizeof code);
}

/* A service is a program in /etc/qubes-rpc named by the request; the name
 * is checked so that it can only ever name a file there. */
static void run_service(uint32_t len)
{
    const char *user = payload;
    size_t ul = strnlen(user, len);
    const char *service = ul < len ? user + ul + 1 : NULL;
    size_t sl = service ? strnlen(service, len - ul - 1) : 0;
    const char *source = service && ul + sl + 2 <= len ? service + sl + 1 : "";
    bool ok = service && sl > 0 && sl < 64 && service[0] != '.';
    for (size_t i = 0; ok && i < sl; i++) {
        char ch = service[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '_' || ch == '-' || ch == '+';
    }
    if (!ok) {
        send_frame(QAG_ERROR, "bad service name", 16);
        return;
    }
    static char path[128], env[128];
    snprintf(path, sizeof path, "/etc/qubes-rpc/%s", service);
    if (access(path, X_OK) < 0) {
        char msg[160];
        int n = snprintf(msg, sizeof msg, "no service %s in this VM", service);
        send_frame(QAG_ERROR, msg, (uint32_t)n);
        return;
    }
    snprintf(env, sizeof env, "QREXEC_REMOTE_DOMAIN=%s", source);
    char *argv[] = { path, NULL };
    run_command(user, argv, env);
}

/* The identity the host gives a restored VM: hostname, then the network
 * interface's MAC, address and default route. */
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

static void take_identity(uint32_t len)
{
    const char *part[5] = { "", "", "", "", "" };
    const char *p = payload, *end = payload + len;
    for (int i = 0; i < 5 && p < end; i++) {
        part[i] = p;
        p += strnlen(p, (size_t)(end - p)) + 1;
    }
    payload[len] = '\0';
    const char *what = NULL;
    char ip[32] = "";
    int prefix = 24;
    if (take_seed(part[4]) < 0)
        what = "random seed";
    else if (!part[0][0] || sethostname(part[0], strlen(part[0])) < 0)
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
    }
    if (what) {
        char msg[128];
        int n = snprintf(msg, sizeof msg, "cannot set the %s: %s", what, strerror(errno));
        send_frame(QAG_ERROR, msg, (uint32_t)n);
        return;
    }
    send_frame(QAG_EXIT, "\0\0\0\0", 4);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (int tries = 0; (port = open_port()) < 0; tries++) {
        if (tries == 100)
            logmsg("no virtio port named %s: is virtio_console loaded?", QAG_PORT_NAME);
        usleep(100000);
    }
    logmsg("ready on %s", QAG_PORT_NAME);
    await_hello();
    for (;;) {
        struct qag_header h;
        int r = recv_frame(&h);
        if (r == -2) {
            await_hello();      /* out of step: wait for the next session */
            continue;
        }
        if (r < 0)
            continue;
        if (h.type == QAG_HELLO && h.len == 8) {
            send_frame(QAG_HELLO_ACK, payload, 8);
        } else if (h.type == QAG_EXEC) {
            const char *user = payload;
            size_t ulen = strnlen(payload, h.len);
            if (ulen >= h.len) {
                send_frame(QAG_ERROR, "bad EXEC frame", 14);
            } else {
                char *argv[] = { "/bin/sh", "-c", payload + ulen + 1, NULL };
                run_command(user, argv, NULL);
            }
        } else if (h.type == QAG_SERVICE) {
            run_service(h.len);
        } else if (h.type == QAG_IDENTITY) {
            take_identity(h.len);
        } else if (h.type == QAG_SHUTDOWN) {
            sync();
            send_frame(QAG_EXIT, "\0\0\0\0", 4);
            reboot(RB_POWER_OFF);
        }
    }
}

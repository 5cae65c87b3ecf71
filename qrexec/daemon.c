/* A VM's qrexec daemon: dom0's callers, the guest's calls, the rules that
 * expire, and its start. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/config.h"
#include "../orchestrator/firewall.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vm.h"
#include "../orchestrator/vmm.h"
#include "mux.h"
#include "policy.h"

static const char *prog = "qrexec-daemon";

#define LOCK_WAIT_MS 10000      /* for the daemon of the VM's last run to go */
#define CONNECT_WAIT_MS 30000   /* for QEMU's end of the channel */
#define MAX_CLIENTS 256

static struct daemon {
    struct qubes_config cfg;
    const char *name;
    char rundir[PATH_MAX], sock[PATH_MAX], bindir[PATH_MAX];
    char db[PATH_MAX];          /* qrexec-daemon-db, which does the database work */
    struct qmux *m;
    int listener, lock;
    int ready;                  /* the starter's line (--ready-fd) until the agent answered */
    ino_t sock_ino;
} D = { .listener = -1, .lock = -1, .ready = -1 };

struct client {
    int fd;
    uint32_t sid;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char who[64];
    snprintf(who, sizeof who, "%s[%s]", prog, D.name);
    va_list ap;
    va_start(ap, fmt);
    qlogv(who, fmt, ap);
    va_end(ap);
}

static void mux_log(void *ctx, const char *msg)
{
    (void)ctx;
    say("%s", msg);
}

/* ---- dom0's callers ---- */

static void answer(int fd, uint32_t type, const void *data, size_t len)
{
    char msg[sizeof(struct qag_header) + 1024];
    if (len > 1024)
        len = 1024;
    struct qag_header h = { QAG_MAGIC, type, 0, (uint32_t)len };
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, data, len);
    send(fd, msg, sizeof h + len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void client_gone(struct client *c)
{
    qmux_unwatch(D.m, c->fd);
    close(c->fd);
    free(c);
}

static void caller_ended(struct qmux *m, void *sctx, int status, const char *error)
{
    (void)m;
    struct client *c = sctx;
    if (error) {
        answer(c->fd, QAG_ERROR, error, strlen(error));
    } else {
        int32_t code = status;
        answer(c->fd, QAG_EXIT, &code, sizeof code);
    }
    client_gone(c);
}

/* A caller that hangs up before the end: the session is cancelled. */
static void client_hangup(struct qmux *m, int fd, short revents, void *arg)
{
    (void)fd;
    (void)revents;
    struct client *c = arg;
    char b;
    if (recv(c->fd, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN)
        return;
    qmux_cancel(m, c->sid);
    client_gone(c);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The first message of a connection: a request frame with the session's
 * three descriptors. */
static void client_request(struct qmux *m, int fd, short revents, void *arg)
{
    (void)revents;
    struct client *c = arg;
    static char buf[sizeof(struct qag_header) + QAG_MAX_PAYLOAD];
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(3 * sizeof(int))];
    } ctl;
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.room,
                         .msg_controllen = sizeof ctl.room };
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int fds[3] = { -1, -1, -1 }, nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds, CMSG_DATA(cm), (nfds > 3 ? 3 : (size_t)nfds) * sizeof(int));
        }
    struct qag_header h;
    const char *why = NULL;
    if (n < (ssize_t)sizeof h)
        why = n == 0 ? NULL : "request too short";
    else if (memcpy(&h, buf, sizeof h), h.magic != QAG_MAGIC || h.len != n - (ssize_t)sizeof h)
        why = "not a request frame";
    else if (h.type != QAG_EXEC && h.type != QAG_SERVICE && h.type != QAG_IDENTITY &&
             h.type != QAG_SHUTDOWN)
        why = "not a request dom0 makes";
    else if (nfds != 3 || (mh.msg_flags & MSG_CTRUNC))
        why = "a request comes with three descriptors";
    if (n <= 0 || why) {
        if (why)
            answer(fd, QAG_ERROR, why, strlen(why));
        close_fds(fds, nfds > 3 ? 3 : nfds);
        client_gone(c);
        return;
    }
    c->sid = qmux_call(m, h.type, buf + sizeof h, h.len, fds[0], fds[1], fds[2], c);
    if (!c->sid) {
        why = "the VM's agent is not ready (its channel is being reset) or too busy";
        answer(fd, QAG_ERROR, why, strlen(why));
        client_gone(c);
        return;
    }
    qmux_watch(m, fd, POLLIN, client_hangup, c);
}

static void accept_client(struct qmux *m, int fd, short revents, void *arg)
{
    (void)revents;
    (void)arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0)
        return;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        say("refused a caller of uid %d: only root asks the agent", (int)cred.uid);
        close(cfd);
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    if (!c || qmux_watch(m, cfd, POLLIN, client_request, c) < 0) {
        free(c);
        close(cfd);
        return;
    }
    c->fd = cfd;
}

/* The agent answered: dom0's callers may come. The socket appears under
 * its name at once, complete (bound under another name, renamed). */
static void channel_ready(struct qmux *m, void *ctx)
{
    (void)ctx;
    if (D.listener >= 0)
        return;
    char tmp[PATH_MAX + 8];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(tmp, sizeof tmp, "%s.new", D.sock);
    if (strlen(tmp) >= sizeof addr.sun_path) {
        say("socket path %s too long", tmp);
        exit(1);
    }
    strcpy(addr.sun_path, tmp);
    unlink(tmp);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(077);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    struct stat st;
    if (rc < 0 || listen(fd, 64) < 0 || stat(tmp, &st) < 0 || rename(tmp, D.sock) < 0) {
        say("cannot listen on %s: %s", D.sock, strerror(errno));
        exit(1);
    }
    D.listener = fd;
    D.sock_ino = st.st_ino;
    qmux_watch(m, fd, POLLIN, accept_client, NULL);
    say("the agent answered; listening on %s", D.sock);
    if (D.ready >= 0) {
        (void)!write(D.ready, "", 1);
        qclose(&D.ready);
    }
}

/* Our socket goes with us, unless a daemon of a later run of the VM has
 * put its own there. */
static void unlink_socket(void)
{
    struct stat st;
    if (D.listener >= 0 && stat(D.sock, &st) == 0 && st.st_ino == D.sock_ino)
        unlink(D.sock);
}

static void channel_lost(struct qmux *m, void *ctx)
{
    (void)m;
    (void)ctx;
    unlink_socket();
    say("the VM's channel closed: done");
}

/* ---- the guest's calls ---- */

static void policy_log(const char *target, const char *service, const char *action,
                       const char *why)
{
    char path[PATH_MAX], line[1024], when[32];
    struct qerr e;
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
    if (qrt_path(&D.cfg, QRT_POLICY_LOG, path, sizeof path, &e) < 0)
        return;
    int n = snprintf(line, sizeof line, "%s source=%s target=%s service=%s action=%s%s%s\n",
                     when, D.name, target, service, action, why ? " " : "", why ? why : "");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd >= 0) {
        (void)!write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        close(fd);
    }
    say("call %s %s: %s%s%s", target, service, action, why ? " " : "", why ? why : "");
}

static void refuse(uint32_t sid, const char *target, const char *service, const char *why)
{
    policy_log(target, service, "deny", why);
    qmux_refuse(D.m, sid, "refused by dom0's policy");
}

/* A VM the call may go to: one in qubes.xml, as qrexec-daemon-db reads it
 * (never locked for writing); its messages go to our log. */
static int known_vm(const char *name, struct qerr *err)
{
    char *argv[] = { D.db, "known", "--", (char *)name, NULL };
    int st;
    if (qrun_status(argv, &st, err) < 0)
        return -1;
    if (st == 0)
        return 0;
    if (st == 1)
        return qerr_set(err, "no VM '%s' in the database", name);
    return qerr_set(err, "cannot tell whether '%s' is a VM: %s ended with status %d", name,
                    D.db, st);
}

/* Runs the allowed call in dom0: its stdin and stdout are the session's,
 * its stderr our log (nothing of dom0's messages reaches the guest). */
static void run_call(uint32_t sid, char *const argv[], const char *service)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        qmux_refuse(D.m, sid, "dom0 could not run the call");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        dup2(in[0], 0);
        dup2(out[1], 1);
        signal(SIGPIPE, SIG_DFL);
        setenv("QREXEC_REMOTE_DOMAIN", D.name, 1);
        setenv("QREXEC_SERVICE_FULL_NAME", service, 1);
        execv(argv[0], argv);
        fprintf(stderr, "%s: cannot run %s: %s\n", prog, argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        qmux_refuse(D.m, sid, "dom0 could not run the call");
        return;
    }
    qmux_serve(D.m, sid, in[1], out[0], -1, pid);
}

static void guest_call(uint32_t sid, const char *p, uint32_t len)
{
    size_t tl = strnlen(p, len);
    const char *target = p, *service = tl < len ? p + tl + 1 : "";
    size_t sl = tl < len ? strnlen(service, len - tl - 1) : 0;
    struct qerr err;
    /* Names first: nothing else is looked at before they are known good. */
    if (tl >= len || sl == 0 || qpol_check_target(target, &err) < 0 ||
        qpol_check_service(service, &err) < 0) {
        say("refused a call with a malformed target or service name");
        policy_log("(malformed)", "(malformed)", "deny", "bad name");
        qmux_refuse(D.m, sid, "malformed call: bad target or service name");
        return;
    }
    struct qpol_decision d;
    if (qpol_evaluate(qpol_dir(), service, D.name, target, &d, &err) < 0) {
        refuse(sid, target, service, err.msg);
        return;
    }
    const char *how = NULL;     /* why an allow is one, for the log */
    if (d.action == QPOL_ASK) {
        const char *yes = getenv("QUBES_RPC_ASSUME_YES");
        if (!yes || strcmp(yes, "1") != 0) {
            refuse(sid, target, service, "(ask: no dialog here, and QUBES_RPC_ASSUME_YES is "
                   "not 1)");
            return;
        }
        how = "(ask: QUBES_RPC_ASSUME_YES=1)";
    } else if (d.action == QPOL_DENY) {
        refuse(sid, target, service, d.line ? NULL : "(no matching policy line)");
        return;
    }
    /* Allowed: what it runs, and that it is there, before it is logged. */
    char path[PATH_MAX], tool[PATH_MAX + 32];
    const char *user = d.user[0] ? d.user : NULL;
    char *argv[12];
    int n = 0;
    if (strcmp(d.target, "dom0") == 0) {
        const char *dir = getenv("QUBES_RPC_DIR");
        snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/etc/qubes-rpc", service);
        if (access(path, X_OK) < 0) {
            refuse(sid, d.target, service, "(no such service in dom0)");
            return;
        }
        argv[n++] = path;
    } else if (strcmp(d.target, "$dispvm") == 0) {
        snprintf(tool, sizeof tool, "%s/qfile-daemon-dvm", D.bindir);
        argv[n++] = tool;
        argv[n++] = "-q";
        argv[n++] = (char *)service;
        argv[n++] = (char *)D.name;
        argv[n++] = (char *)(user ? user : "DEFAULT");
    } else {
        if (known_vm(d.target, &err) < 0) {
            say("%s", err.msg);
            refuse(sid, d.target, service, "(no such VM)");
            return;
        }
        snprintf(tool, sizeof tool, "%s/qvm-run", D.bindir);
        argv[n++] = tool;
        argv[n++] = "-q";
        argv[n++] = "-p";
        if (user) {
            argv[n++] = "-u";
            argv[n++] = (char *)user;
        }
        argv[n++] = "--source";
        argv[n++] = (char *)D.name;
        argv[n++] = "--service";
        argv[n++] = (char *)service;
        argv[n++] = d.target;
    }
    argv[n] = NULL;
    policy_log(d.target, service, "allow", how);
    run_call(sid, argv, service);
}

static void request(struct qmux *m, uint32_t sid, uint32_t type, const char *p, uint32_t len,
                    void *ctx)
{
    (void)ctx;
    if (type == QAG_CALL)
        guest_call(sid, p, len);
    else
        qmux_refuse(m, sid, "not a request the guest makes");
}

static const struct qmux_ops ops = { .request = request, .ended = caller_ended,
                                     .log = mux_log, .ready = channel_ready,
                                     .lost = channel_lost };

/* ---- rules that expire ----
 * A rule with an expiry time leaves the VM's chains when it expires, while
 * the VM runs and without any tool being called. The daemon lives exactly
 * as long as the VM, so it keeps a timer at the earliest expiry and
 * installs the chains again then, under the qubes.xml write lock as the
 * tools that change rules do (so that the last rules saved are the ones in
 * force). It learns of changed rules from the directory of the firewall
 * file, which every writer replaces by rename. The database work is
 * qrexec-daemon-db's, in a child: the loop never waits for a lock that a
 * starter of this very VM may hold while it waits for us, and the daemon
 * (started with every VM, facing its guest) loads no XML parser. */

#define FW_RETRY_S 2            /* after a failed re-install */

struct fw_result {
    int rc;
    long long next;             /* earliest expiry; 0: none */
    char path[PATH_MAX];        /* the firewall file */
    char msg[sizeof ((struct qerr *)0)->msg];
};

static struct {
    int timer, watch, pipe;
    pid_t child;
    bool child_applies, pending, pending_apply;
    char file[NAME_MAX + 1];    /* its name in the watched directory */
    char path[PATH_MAX];        /* and its whole path */
    char answer[PATH_MAX + 1024];       /* the child's line, as it comes */
    size_t got;
} FW = { .timer = -1, .watch = -1, .pipe = -1 };

/* qrexec-daemon-db's line (QREXECD_DB in daemon.h): "0 NEXT PATH" or
 * "-1 MESSAGE". False when it is neither. */
static bool fw_parse(char *line, struct fw_result *r)
{
    char *nl = strchr(line, '\n');
    if (!nl)
        return false;
    *nl = '\0';
    int at = 0;
    if (strncmp(line, "-1 ", 3) == 0) {
        r->rc = -1;
        snprintf(r->msg, sizeof r->msg, "%s", line + 3);
        return true;
    }
    if (sscanf(line, "0 %lld %n", &r->next, &at) != 1 || at == 0 || r->next < 0 ||
        line[at] != '/' || strlen(line + at) >= sizeof r->path)
        return false;
    r->rc = 0;
    snprintf(r->path, sizeof r->path, "%s", line + at);
    return true;
}

static void fw_arm(long long when)
{
    struct itimerspec its = { .it_value = { .tv_sec = (time_t)when } };
    if (timerfd_settime(FW.timer, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        say("cannot set the firewall timer: %s", strerror(errno));
}

static void fw_job(bool apply);
static bool fw_tag(const char *path, long long *next);

/* The watch on the firewall file's directory, once its path is known. */
static void fw_changed(struct qmux *m, int fd, short revents, void *arg);
static void fw_watch(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    snprintf(FW.file, sizeof FW.file, "%s", slash + 1);
    snprintf(FW.path, sizeof FW.path, "%s", path);
    FW.watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (FW.watch < 0 ||
        inotify_add_watch(FW.watch, dir, IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE) < 0 ||
        qmux_watch(D.m, FW.watch, POLLIN, fw_changed, NULL) < 0)
        say("changes of %s are not watched: %s", path, strerror(errno));
}

static void fw_done(struct qmux *m, int fd, short revents, void *arg)
{
    (void)revents;
    (void)arg;
    ssize_t n;
    while ((n = read(fd, FW.answer + FW.got, sizeof FW.answer - 1 - FW.got)) > 0)
        FW.got += (size_t)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR) && FW.got < sizeof FW.answer - 1)
        return;             /* the rest of its line is still to come */
    qmux_unwatch(m, fd);
    close(fd);
    FW.pipe = -1;
    waitpid(FW.child, NULL, 0);
    FW.child = 0;
    bool applied = FW.child_applies;
    FW.answer[FW.got] = '\0';
    FW.got = 0;
    struct fw_result r = { .rc = -1 };
    if (!fw_parse(FW.answer, &r))
        snprintf(r.msg, sizeof r.msg, "%s ended without an answer", D.db);
    if (r.rc == 0 && FW.watch < 0)
        fw_watch(r.path);
    if (r.rc < 0 && applied) {
        /* The expired rule lets traffic through until this works: say
         * so, and try again soon. */
        say("a firewall rule expired, but the chains could not be installed again: %s",
            r.msg);
        fw_arm((long long)time(NULL) + FW_RETRY_S);
    } else if (r.rc < 0) {
        say("the expiry times of the firewall rules are unknown: %s", r.msg);
    } else {
        if (applied)
            say("a firewall rule expired: the chains are installed again without it");
        fw_arm(r.next);
    }
    if (FW.pending) {
        FW.pending = false;
        fw_job(FW.pending_apply);
    }
}

static void fw_job(bool apply)
{
    if (FW.child) {             /* one at a time; the next one after it */
        FW.pending = true;
        FW.pending_apply |= apply;
        return;
    }
    FW.pending_apply = false;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        say("cannot check the firewall's expiry times: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* The lock and the starter's line are close-on-exec: a next daemon
         * of the VM does not wait for the helper, nor does our starter. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (dup2(p[1], 1) == 1) {
            char *argv[] = { D.db, "firewall", "--", (char *)D.name, apply ? "apply" : NULL,
                             NULL };
            execv(D.db, argv);
        }
        dprintf(1, "-1 cannot run %s: %s\n", D.db, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    if (pid < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0 ||
        qmux_watch(D.m, p[0], POLLIN, fw_done, NULL) < 0) {
        say("cannot check the firewall's expiry times: %s", strerror(errno));
        close(p[0]);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return;
    }
    FW.pipe = p[0];
    FW.child = pid;
    FW.child_applies = apply;
}

static void fw_expired(struct qmux *m, int fd, short revents, void *arg)
{
    (void)m;
    (void)revents;
    (void)arg;
    uint64_t ticks;
    if (read(fd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks)
        fw_job(true);
}

static void fw_changed(struct qmux *m, int fd, short revents, void *arg)
{
    (void)m;
    (void)revents;
    (void)arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool ours = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if ((ev->mask & IN_Q_OVERFLOW) || (ev->len && strcmp(ev->name, FW.file) == 0))
                ours = true;
            p += sizeof *ev + ev->len;
        }
    if (!ours)
        return;
    /* The writer tagged the file with its rules' earliest expiry: nothing
     * to read, no process (a claimed preload's rules are written in its
     * request's time). Without a tag, or while a helper is at work (it may
     * have read the file before), the helper reads it. */
    long long next;
    if (!FW.child && fw_tag(FW.path, &next)) {
        if (next)
            say("the firewall rules changed: the first to expire does at %lld", next);
        else
            say("the firewall rules changed: none expires");
        fw_arm(next);
        return;
    }
    fw_job(false);
}

/* The earliest expiry time the firewall file's writer tagged it with
 * (QFW_NEXT_TAG); false when it has no such tag. */
static bool fw_tag(const char *path, long long *next)
{
    char v[24];
    long t;
    ssize_t n = getxattr(path, QFW_NEXT_TAG, v, sizeof v - 1);
    if (n <= 0)
        return false;
    v[n] = '\0';
    if (qparse_int(v, 0, LONG_MAX, &t) < 0)
        return false;
    *next = t;
    return true;
}

/* `next`: the earliest expiry of the rules in `path` as the starter wrote
 * them (0: none), -1 when it does not know them. */
static void fw_start(const char *path, long long next)
{
    FW.timer = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (FW.timer < 0 || qmux_watch(D.m, FW.timer, POLLIN, fw_expired, NULL) < 0) {
        say("rules that expire are not watched: %s", strerror(errno));
        return;
    }
    if (path)
        fw_watch(path);
    /* Where the starter says, nothing is read to begin with. */
    if (path && next >= 0)
        fw_arm(next);
    else
        fw_job(false);
}

/* ---- start ---- */

static void on_signal(int sig)
{
    (void)sig;
    if (D.m)
        qmux_stop(D.m);         /* the loop ends; the socket is removed */
}

static int take_lock(struct qerr *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", D.rundir, QRT_QREXEC_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    for (long until = qnow_ms() + LOCK_WAIT_MS; flock(fd, LOCK_EX | LOCK_NB) < 0;) {
        if (errno != EWOULDBLOCK || qnow_ms() > until) {
            close(fd);
            return qerr_set(err, "another qrexec-daemon of '%s' still runs (%s is locked)",
                            D.name, path);
        }
        usleep(20000);
    }
    return fd;
}

static int connect_channel(struct qerr *err)
{
    char path[PATH_MAX];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (qrt_vm_path(&D.cfg, D.name, QRT_AGENT_SOCK, path, sizeof path, err) < 0)
        return -1;
    if (strlen(path) >= sizeof addr.sun_path)
        return qerr_set(err, "%s: path too long", path);
    strcpy(addr.sun_path, path);
    int last = 0;
    for (long until = qnow_ms() + CONNECT_WAIT_MS; qnow_ms() < until; usleep(20000)) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return qerr_errno(err, errno, "socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        last = errno;
        close(fd);
    }
    return qerr_errno(err, last, "cannot connect to the agent channel %s", path);
}

static int own_dir(struct qerr *err)
{
    ssize_t n = readlink("/proc/self/exe", D.bindir, sizeof D.bindir - 1);
    if (n < 0)
        return qerr_errno(err, errno, "cannot find the program's directory");
    D.bindir[n] = '\0';
    char *slash = strrchr(D.bindir, '/');
    if (slash)
        *slash = '\0';
    return 0;
}

/* How the daemon leaves its starter: stays (FOREGROUND), forks and lets
 * the starter exit 0 (EXIT_PARENT, a program), or tells the starter
 * through `ready` and goes its own way (READY_FD, forked by a process that
 * goes on). */
enum detach { FOREGROUND, EXIT_PARENT, READY_FD };

static int serve(const char *name, const char *firewall, long long fw_next, enum detach how,
                 int ready, struct qerr *err)
{
    D.name = name;
    char dir[PATH_MAX];
    if (qvm_check_name(D.name, err) < 0 || qubes_config_init(&D.cfg, err) < 0 ||
        own_dir(err) < 0 || vmm_plugin_dir(dir, sizeof dir, err) < 0)
        return -1;
    if (snprintf(D.db, sizeof D.db, "%s/%s", dir, QREXECD_DB) >= (int)sizeof D.db)
        return qerr_set(err, "the path of %s is too long", QREXECD_DB);
    if (access(D.db, X_OK) < 0)
        return qerr_errno(err, errno, "cannot run %s (the database work of qrexec-daemon)",
                          D.db);
    if (qrt_vm_path(&D.cfg, D.name, NULL, D.rundir, sizeof D.rundir, err) < 0 ||
        qrt_vm_path(&D.cfg, D.name, QRT_QREXEC_SOCK, D.sock, sizeof D.sock, err) < 0 ||
        qmkdirs(D.rundir, err) < 0)
        return -1;
    int lock = D.lock = take_lock(err);
    if (lock < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (how != FOREGROUND) {
        char log[PATH_MAX + 16];
        snprintf(log, sizeof log, "%s/%s", D.rundir, QRT_QREXEC_LOG);
        int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (lfd < 0 || null < 0)
            return qerr_errno(err, errno, "cannot open %s", log);
        if (how == EXIT_PARENT) {
            pid_t pid = fork();
            if (pid < 0)
                return qerr_errno(err, errno, "fork");
            if (pid > 0)
                _exit(0);       /* the lock is the child's now */
        }
        setsid();
        dup2(null, 0);
        dup2(lfd, 1);
        dup2(lfd, 2);
        close(null);
        close(lfd);
    }
    char pid[24];             /* the lock file says who holds it */
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(lock, 0) == 0)
        (void)!pwrite(lock, pid, (size_t)n, 0);
    /* The starter hears twice: now, and once the agent answered (the
     * socket is there) or, with the line's end, that we ended first. */
    if (how == READY_FD) {
        (void)!write(ready, "", 1);
        D.ready = ready;
        (void)fcntl(ready, F_SETFD, FD_CLOEXEC);
    }
    struct qerr e;
    int chan = connect_channel(&e);
    if (chan < 0) {
        say("%s", e.msg);
        return 1;
    }
    D.m = qmux_new(chan, QMUX_HOST, &ops, NULL);
    if (!D.m) {
        say("out of memory");
        return 1;
    }
    say("holding the channel of %s", D.name);
    fw_start(firewall, fw_next);
    qmux_run(D.m);
    unlink_socket();
    qmux_free(D.m);
    close(lock);
    return 0;
}

int qrexecd_run(const char *name, bool foreground, int ready, const char *firewall,
                long long fw_next, struct qerr *err)
{
    if (ready >= 0)
        return serve(name, firewall, fw_next, READY_FD, ready, err);
    return serve(name, firewall, fw_next, foreground ? FOREGROUND : EXIT_PARENT, -1, err);
}

int qrexecd_spawn(const char *name, const char *firewall, long long fw_next, int *answered,
                  struct qerr *err)
{
    pid_t pid;
    char path[PATH_MAX];
    if (qsibling_program("qrexec-daemon", "QUBES_QREXEC_DAEMON", path, sizeof path, err) < 0)
        return -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return qerr_errno(err, errno, "cannot start the qrexec daemon of '%s': pipe", name);
    /* The line back is its descriptor 3; every signal as a new program's. */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 3);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    char *argv[10] = { path, "--ready-fd", "3" }, next[24];
    int a = 3;
    if (firewall) {
        argv[a++] = "--firewall";
        argv[a++] = (char *)firewall;
    }
    if (firewall && fw_next >= 0) {
        snprintf(next, sizeof next, "%lld", fw_next);
        argv[a++] = "--firewall-expiry";
        argv[a++] = next;
    }
    argv[a++] = "--";
    argv[a++] = (char *)name;
    argv[a] = NULL;
    fflush(NULL);
    int r = posix_spawn(&pid, path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (r != 0) {
        close(p[0]);
        return qerr_errno(err, r, "cannot start the qrexec daemon of '%s': %s", name, path);
    }
    /* It says so once it holds the VM's lock; then it is on its own (a
     * zombie of ours only if it ends before we do). */
    char b;
    ssize_t n;
    while ((n = read(p[0], &b, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1) {
        close(p[0]);
        waitpid(pid, NULL, 0);
        return qerr_set(err, "cannot start the qrexec daemon of '%s' (see above)", name);
    }
    if (answered)
        *answered = p[0];
    else
        close(p[0]);
    return 0;
}

int qrexecd_wait_answer(const char *name, int answered, long timeout_ms, struct qerr *err)
{
    struct pollfd p = { answered, POLLIN, 0 };
    for (long end = qnow_ms() + timeout_ms;;) {
        long left = end - qnow_ms();
        if (qmux_stopped())
            return qerr_errno(err, EINTR, "%s: stopped before its agent answered", name);
        if (left <= 0)
            return qerr_set(err, "%s: its agent did not answer within %ld s", name,
                            timeout_ms / 1000);
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno != EINTR)
            return qerr_errno(err, errno, "%s: waiting for its agent", name);
        if (r <= 0)
            continue;
        char b;
        ssize_t n = read(answered, &b, 1);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return qerr_set(err, "%s: its qrexec daemon ended before its agent answered (its "
                        "domain or its agent's channel is gone)", name);
    }
}

/* qubes-channel-relay: the agent channel of a VM on another host, served
 * where the local tools look for it. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../guest/protocol.h"
#include "../hosts.h"
#include "../runtime.h"
#include "tool.h"

static const char *prog = "qubes-channel-relay";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [--foreground] NAME\n"
"Serve the agent channel of the running VM NAME, which lives on another\n"
"host (qvm-create --host), on $QUBES_RUN_DIR/vms/NAME/%s, where the\n"
"qrexec daemon and the other tools reach a local VM's: each connection\n"
"gets the guest's channel through that host's libvirt daemon (libvirt's\n"
"channel streams), nothing through a shared file. It ends when the VM\n"
"stops, or 15 s after its host stops answering. Started by qvm-start;\n"
"returns once it listens, its messages in $QUBES_RUN_DIR/vms/NAME/%s.\n"
"While it runs it holds $QUBES_RUN_DIR/vms/NAME/%s (flock): a second\n"
"one, with the VM already served, ends at once with status 0.\n"
"\n"
"Options:\n"
"      --foreground  stay attached, messages on standard error\n"
"      --version     show the version and the hypervisor backends\n"
"  -h, --help        show this help\n", prog, QRT_AGENT_SOCK, QRT_RELAY_LOG, QRT_RELAY_LOCK);
}

struct paths {
    char sock[PATH_MAX], log[PATH_MAX], lock[PATH_MAX];
};

/* The VM's host (from qubes.xml, read once) and the relay's files. */
static int find(const char *name, struct vmm *remote, struct paths *p, struct qerr *err)
{
    struct qubes q;
    int rc = -1;
    if (qvm_check_name(name, err) < 0 || qubes_open(&q, false, err) < 0)
        return -1;
    struct qvm *vm = qubes_load_for_reading(&q, err) < 0 ? NULL : qubes_find_vm(&q, name, err);
    if (vm && !qvm_host(vm))
        qerr_set(err, "'%s' lives on this host: its agent's socket is the emulator's own", name);
    else if (vm && qhosts_vmm(&q.cfg, qvm_host(vm), remote, err) == 0 &&
             qrt_vm_path(&q.cfg, name, QRT_AGENT_SOCK, p->sock, sizeof p->sock, err) == 0 &&
             qrt_vm_path(&q.cfg, name, QRT_RELAY_LOG, p->log, sizeof p->log, err) == 0 &&
             qrt_vm_path(&q.cfg, name, QRT_RELAY_LOCK, p->lock, sizeof p->lock, err) == 0)
        rc = 0;
    qubes_close(&q);
    return rc;
}

static int listen_on(const char *path, struct qerr *err)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path)
        return qerr_set(err, "%s: path too long for a socket", path);
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return qerr_errno(err, errno, "socket");
    unlink(path);
    mode_t old = umask(0077);       /* root's alone, like the emulator's socket */
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    umask(old);
    if (rc < 0 || listen(fd, 8) < 0) {
        qerr_errno(err, errno, "cannot listen on %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    close_range(3, ~0U, 0);
    tool_check_version(argc, argv);
    bool foreground = tool_vm_daemon_options(argc, argv, prog, usage);
    const char *name = argv[optind];
    struct qerr err;
    struct vmm remote;
    struct paths p;
    if (find(name, &remote, &p, &err) < 0)
        tool_fail(prog, &err);
    const char *sock = p.sock, *log = p.log;
    /* One relay per VM: a second start finds the first serving. */
    int lockfd = open(p.lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lockfd < 0) {
        qerr_errno(&err, errno, "cannot open %s", p.lock);
        tool_fail(prog, &err);
    }
    if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return 0;       /* served already */
        qerr_errno(&err, errno, "cannot lock %s", p.lock);
        tool_fail(prog, &err);
    }
    int lfd = listen_on(sock, &err);
    if (lfd < 0)
        tool_fail(prog, &err);
    struct stat mine;
    if (stat(sock, &mine) < 0) {
        qerr_errno(&err, errno, "%s", sock);
        tool_fail(prog, &err);
    }
    if (!foreground) {
        /* The starter returns once we listen: its next step connects. */
        int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0) {
            qerr_errno(&err, errno, "cannot open %s", log);
            tool_fail(prog, &err);
        }
        pid_t pid = fork();
        if (pid < 0) {
            qerr_errno(&err, errno, "fork");
            tool_fail(prog, &err);
        }
        if (pid > 0)
            _exit(0);
        setsid();
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0)
            dup2(null, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
    }
    qlog(prog, "serving the agent channel of '%s' (%s) on %s", name, remote.uri, sock);
    int rc = vmm_channel_relay(&remote, name, QAG_PORT_NAME, lfd, &err);
    /* The socket goes with us, unless a newer relay took its place. */
    struct stat now;
    if (stat(sock, &now) == 0 && now.st_ino == mine.st_ino && now.st_dev == mine.st_dev)
        unlink(sock);
    if (rc < 0) {
        qlog(prog, "'%s': %s", name, err.msg);
        return 1;
    }
    qlog(prog, "'%s' stopped: done", name);
    return 0;
}

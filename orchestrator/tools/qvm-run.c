/* qvm-run: run a command in a VM, starting the VM when it is halted. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../../dispvm/dispvm.h"
#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-run";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME COMMAND...\n"
"  or:  %s [options] --all [--exclude VM]... COMMAND...\n"
"  or:  %s [options] --service SERVICE NAME | --all --service SERVICE\n"
"  or:  %s [options] --dispvm[=TEMPLATE] COMMAND...\n"
"Run COMMAND (by /bin/sh -c inside the VM), or the VM's service SERVICE\n"
"(/etc/qubes-rpc/SERVICE, e.g. qubes.VMShell), and return its exit status.\n"
"A halted VM is started first (unless --no-auto). With --dispvm the command\n"
"runs in a fresh DispVM of TEMPLATE (default: the default template),\n"
"destroyed afterwards.\n"
"\n"
"Options:\n"
"  -p, --pass-io       the command's input and output are ours\n"
"      --localcmd CMD  the command's input is the output of the local command\n"
"                      CMD (by /bin/sh -c, as us) and its output is CMD's input,\n"
"                      both at once; its error output is ours. The status is\n"
"                      the VM command's: a CMD that ends first does not end it\n"
"                      (its further output is dropped); CMD is waited for, and\n"
"                      named when it fails\n"
"  -a, --auto          start a halted VM first (the default)\n"
"      --no-auto       a halted VM is an error: nothing is started\n"
"      --all           run in every VM that runs (Running or Transient), dom0\n"
"                      and preloaded DispVMs left out, one after the other in\n"
"                      name order; with -p each line of output (and of error\n"
"                      output) comes as \"VM: line\", and the commands get no\n"
"                      input. The status is the highest of theirs (1 for a VM\n"
"                      the command could not run in, which is named)\n"
"      --exclude VM    with --all: not in VM (may be repeated)\n"
"  -u, --user USER     run as USER (default: the VM's default_user)\n"
"  -s, --service NAME  run a service instead of a command\n"
"      --source VM     the VM that asks for the service (default dom0; the\n"
"                      service sees it as QREXEC_REMOTE_DOMAIN)\n"
"      --dispvm[=T]    run in a new DispVM (from T's savefile)\n"
"      --nogui         accepted and ignored: there is no GUI daemon here\n"
"      --offline-mode  refused: this needs the hypervisor\n"
"  -q, --quiet         no progress messages when the VM must start\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog, prog, prog);
}

/* The words from optind on, joined by spaces (malloc'ed). */
static char *join_args(int argc, char **argv, int from)
{
    size_t len = 1;
    for (int i = from; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *cmd = calloc(1, len);
    for (int i = from; cmd && i < argc; i++) {
        if (i > from)
            strcat(cmd, " ");
        strcat(cmd, argv[i]);
    }
    return cmd;
}

static int run_in_dispvm(int argc, char **argv, const char *tpl, bool quiet)
{
    if (argc - optind < 1)
        tool_usage_error(prog, "--dispvm wants a command");
    char *cmd = join_args(argc, argv, optind);
    struct dispvm_request r = { .command = cmd, .source = "dom0", .user = "DEFAULT",
                                .template_name = tpl, .regenerate = true,
                                .progress = quiet ? NULL : stderr };
    struct qubes q;
    struct qerr err;
    int status = 0;
    if (!cmd || qubes_open(&q, false, &err) < 0 || dispvm_run(&q.cfg, &r, &status, &err) < 0) {
        free(cmd);
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    free(cmd);
    qubes_close(&q);
    return status;
}

/* ---- qvm-run --all -p: each VM's lines, prefixed with its name ---- */

struct prefixer {
    const char *name;
    int from[2];                /* the command's output and error output */
};

/* Copies what fd has to `to`, each line prefixed; *at_start: the next
 * byte begins a line. false at its end. */
static bool prefix_chunk(int fd, int to, const char *name, bool *at_start)
{
    char in[4096], out[2 * sizeof in + 64];
    ssize_t got = read(fd, in, sizeof in);
    if (got <= 0)
        return got < 0 && errno == EINTR;
    size_t used = 0;
    for (ssize_t i = 0; i < got; i++) {
        if (*at_start) {
            used += (size_t)snprintf(out + used, sizeof out - used, "%s: ", name);
            *at_start = false;
        }
        out[used++] = in[i];
        *at_start = in[i] == '\n';
        if (used > sizeof out - 64) {
            qwrite_all(to, out, used);  /* a reader gone (EPIPE): dropped */
            used = 0;
        }
    }
    qwrite_all(to, out, used);
    return true;
}

static void *prefix_main(void *arg)
{
    struct prefixer *pf = arg;
    bool at_start[2] = { true, true };
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    while (pf->from[0] >= 0 || pf->from[1] >= 0) {
        struct pollfd p[2] = { { pf->from[0], POLLIN, 0 }, { pf->from[1], POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        for (int k = 0; k < 2; k++)
            if (pf->from[k] >= 0 && p[k].revents &&
                !prefix_chunk(pf->from[k], k + 1, pf->name, &at_start[k])) {
                if (!at_start[k])
                    qwrite_all(k + 1, "\n", 1);  /* the next VM's lines begin anew */
                close(pf->from[k]);
                pf->from[k] = -1;
            }
    }
    return NULL;
}

/* qubes_vm_run with the output and error output prefixed with the VM's name. */
static int run_prefixed(struct qubes *q, const char *name, struct qvm_run_opts *o, int *status,
                        struct qerr *err)
{
    int out[2], er[2];
    pthread_t t;
    if (pipe2(out, O_CLOEXEC) < 0)
        return qerr_errno(err, errno, "pipe");
    if (pipe2(er, O_CLOEXEC) < 0) {
        close(out[0]);
        close(out[1]);
        return qerr_errno(err, errno, "pipe");
    }
    struct prefixer pf = { name, { out[0], er[0] } };
    int fds[3] = { -1, out[1], er[1] };
    int rc = pthread_create(&t, NULL, prefix_main, &pf);
    bool started = rc == 0;
    if (started) {
        o->fds = fds;
        rc = qubes_vm_run(q, name, o, status, err);
        o->fds = NULL;
    } else {
        close(out[0]);
        close(er[0]);
        rc = qerr_errno(err, rc, "cannot start a thread");
    }
    close(out[1]);      /* the prefixer ends once it has printed the rest */
    close(er[1]);
    if (started)
        pthread_join(t, NULL);
    return rc;
}

/* --all: one VM after the other; the highest status, 1 for a VM the
 * command could not run in. */
static int run_everywhere(struct qubes *q, struct qvm_run_opts *o, const char *const *exclude,
                          size_t nexclude, bool quiet)
{
    char **names;
    size_t n;
    struct qerr err;
    if (qubes_running_vms(q, exclude, nexclude, &names, &n, &err) < 0) {
        qerr_prefix(&err, "cannot run anything");
        qubes_close(q);
        tool_fail(prog, &err);
    }
    if (n == 0 && !quiet)
        fprintf(stderr, "%s: no running VM%s to run the command in\n", prog,
                nexclude ? " but those left out" : "");
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int status = 0;
        int rc = o->pass_io && !o->local_command ? run_prefixed(q, names[i], o, &status, &err)
                                                 : qubes_vm_run(q, names[i], o, &status, &err);
        if (rc < 0) {
            fprintf(stderr, "%s: error: %s: ", prog, names[i]);
            qprint_text(stderr, err.msg);
            fputc('\n', stderr);
            status = 1;
        }
        if (status > worst)
            worst = status;
        free(names[i]);
    }
    free(names);
    return worst;
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    enum { O_SOURCE = 1001, O_DISPVM, O_NO_AUTO, O_LOCALCMD, O_ALL, O_EXCLUDE, O_NOGUI };
    static const struct option opts[] = {
        { "pass-io", no_argument, NULL, 'p' },
        { "user", required_argument, NULL, 'u' },
        { "service", required_argument, NULL, 's' },
        { "source", required_argument, NULL, O_SOURCE },
        { "dispvm", optional_argument, NULL, O_DISPVM },
        { "auto", no_argument, NULL, 'a' },
        { "no-auto", no_argument, NULL, O_NO_AUTO },
        { "localcmd", required_argument, NULL, O_LOCALCMD },
        { "all", no_argument, NULL, O_ALL },
        { "exclude", required_argument, NULL, O_EXCLUDE },
        { "nogui", no_argument, NULL, O_NOGUI },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, pass = false, dispvm = false, all = false;
    const char *dvm_template = NULL;
    const char *exclude[argc];     /* --exclude, at most one per argument */
    size_t nexclude = 0;
    struct qvm_run_opts o = { 0 };
    int c;
    /* '+': options end at the VM name, so the command keeps its own. */
    while ((c = getopt_long(argc, argv, "+pu:s:aqh", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pass = true; break;
        case 'u': o.user = optarg; break;
        case 's': o.service = optarg; break;
        case O_SOURCE: o.source = optarg; break;
        case O_DISPVM:
            dispvm = true;
            dvm_template = optarg;
            break;
        case 'a': o.no_start = false; break;
        case O_NO_AUTO: o.no_start = true; break;
        case O_LOCALCMD: o.local_command = optarg; break;
        case O_ALL: all = true; break;
        case O_EXCLUDE: exclude[nexclude++] = optarg; break;
        case O_NOGUI: break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (nexclude && !all)
        tool_usage_error(prog, "--exclude goes with --all");
    if (dispvm && (all || o.local_command || o.no_start))
        tool_usage_error(prog, "--dispvm runs in a new DispVM: not with --all, --localcmd "
                               "or --no-auto");
    if (dispvm)
        return run_in_dispvm(argc, argv, dvm_template, quiet);
    int words = all ? 0 : 1;   /* the VM name */
    if (o.service ? argc - optind != words : argc - optind < words + 1)
        tool_usage_error(prog, all ? (o.service ? "--all --service wants no VM name"
                                                : "--all wants a command")
                                   : (o.service ? "--service wants only a VM name"
                                                : "expected a VM name and a command"));
    struct qerr err;
    if (o.source && strcmp(o.source, "dom0") != 0 && qvm_check_name(o.source, &err) < 0)
        tool_fail(prog, &err);
    char *cmd = join_args(argc, argv, optind + words);
    if (!cmd)
        return 1;
    o.command = cmd;
    o.pass_io = pass;
    o.progress = quiet ? NULL : stderr;
    struct qubes q;
    int status = 0;
    if (qubes_open(&q, offline, &err) < 0)
        tool_fail(prog, &err);
    if (all)
        status = run_everywhere(&q, &o, exclude, nexclude, quiet);
    else if (qubes_vm_run(&q, argv[optind], &o, &status, &err) < 0) {
        free(cmd);
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    free(cmd);
    qubes_close(&q);
    return status;
}

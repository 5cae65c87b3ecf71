/* What every command shares: the error exit and the common options. */
#ifndef QUBES_TOOL_H
#define QUBES_TOOL_H

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "../qubes.h"
#include "../util.h"

#define QUBES_VERSION "0.5"
#define TOOL_OFFLINE_OPT 1000   /* getopt value of --offline-mode */

/* Prints "PROG: error: MESSAGE" as one line: what a message may carry from
 * a guest, a file or a name (a newline, a control sequence) is shown
 * escaped (qprint_text). */
static inline __attribute__((noreturn)) void tool_fail(const char *prog, const struct qerr *err)
{
    fprintf(stderr, "%s: error: ", prog);
    qprint_text(stderr, err->msg);
    fputc('\n', stderr);
    exit(1);
}

/* --version, anywhere before "--": the program, and which hypervisor
 * backends this installation has. */
static inline void tool_check_version(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--version") != 0)
            continue;
        char backends[256];
        const char *name = strrchr(argv[0], '/');
        vmm_backends_available(backends, sizeof backends);
        printf("%s (qubes-orchestrator %s)\nhypervisor backends: %s\n", name ? name + 1 : argv[0],
               QUBES_VERSION, backends);
        exit(0);
    }
}

static inline __attribute__((noreturn)) void tool_usage_error(const char *prog, const char *msg)
{
    fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", prog, msg, prog);
    exit(2);
}

/* The options of the property tools (qvm-prefs, qubes-prefs): returns the
 * mode 'l', 'g' or 's' when one was given, 0 when the arguments decide. */
static inline int tool_prefs_options(int argc, char **argv, const char *prog,
                                     void (*usage)(FILE *), bool *offline)
{
    static const struct option opts[] = {
        { "list", no_argument, NULL, 'l' },
        { "get", no_argument, NULL, 'g' },
        { "set", no_argument, NULL, 's' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int mode = 0, c;
    while ((c = getopt_long(argc, argv, "lgsh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': case 'g': case 's':
            if (mode && mode != c)
                tool_usage_error(prog, "choose one of -l, -g and -s");
            mode = c;
            break;
        case TOOL_OFFLINE_OPT: *offline = true; break;
        case 'h': usage(stdout); exit(0);
        default: tool_usage_error(prog, "bad option");
        }
    }
    return mode;
}

/* Options of the tools that take only --offline-mode and `nargs` arguments
 * (`what` names them in the usage error): returns whether --offline-mode was
 * given; exits on --help (printing `help`) and on usage errors. */
static inline bool tool_simple_options(int argc, char **argv, const char *prog,
                                       const char *help, int nargs, const char *what)
{
    static const struct option opts[] = {
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'h': fputs(help, stdout); exit(0);
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (argc - optind != nargs)
        tool_usage_error(prog, what);
    return offline;
}

/* The options of a daemon that serves one VM (qrexec-daemon,
 * qubes-channel-relay): --foreground and --help (`usage` prints the help),
 * then the VM's name, which is argv[optind]; exits on usage errors.
 * Returns whether --foreground was given. */
static inline bool tool_vm_daemon_options(int argc, char **argv, const char *prog,
                                          void (*usage)(FILE *f))
{
    static const struct option opts[] = {
        { "foreground", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool foreground = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': foreground = true; break;
        case 'h': usage(stdout); exit(0);
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (argc - optind != 1)
        tool_usage_error(prog, "expected the VM's name");
    return foreground;
}

/* The whole main of a tool that applies one operation to one VM
 * (qvm-kill, qvm-pause, qvm-unpause): `what` is its one-line description. */
static inline int tool_vm_op_main(int argc, char **argv, const char *prog, const char *what,
                                  int (*op)(struct qubes *, const char *, struct qerr *))
{
    char help[512];
    snprintf(help, sizeof help,
             "Usage: %s [options] NAME\n%s\n\nOptions:\n"
             "      --offline-mode  refused: this needs the hypervisor\n"
             "      --version       show the version and the hypervisor backends\n"
             "  -h, --help          show this help\n", prog, what);
    bool offline = tool_simple_options(argc, argv, prog, help, 1, "expected exactly one VM name");
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 || op(&q, argv[optind], &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}

#endif

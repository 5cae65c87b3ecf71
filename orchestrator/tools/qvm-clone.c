/* qvm-clone: a new VM made from a halted one (orchestrator/clone.h). */
#include <getopt.h>
#include <signal.h>
#include <string.h>

#include "../clone.h"
#include "tool.h"

static const char *prog = "qvm-clone";

/* The first SIGINT, SIGTERM or SIGHUP stops the clone at the next step of
 * a copy (a lock being waited for is still taken, and a record being saved
 * is saved), leaving nothing; a second one acts as it usually does. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* A signal ignored when we started (nohup, a background job) stays so. */
static void catch_signal(int sig)
{
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND | SA_RESTART };
    struct sigaction old;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(sig, &sa, NULL);
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] SRC NEW\n"
"Clone the halted VM SRC into a new VM NEW of the same class (a clone of a\n"
"template is a template): SRC's settings (label, netvm, memory, vCPUs,\n"
"kernel and its options, services, PCI devices, template, HVM settings...),\n"
"sparse copies of its disk images and its own kernel, and its firewall\n"
"rules, with a qid, UUID, MAC and directory of its own. dom0, DispVMs and\n"
"running VMs cannot be cloned. Copies are reflinks where the file system\n"
"has them; a long copy shows its progress every few seconds.\n"
"\n"
"Options:\n"
"  -p, --path DIR      where NEW's files go: only its usual directory,\n"
"                      $QUBES_BASE_DIR/<class dir>/NEW, is accepted (a VM's\n"
"                      files are never anywhere else)\n"
"      --offline-mode  do not contact the hypervisor (SRC is taken as halted)\n"
"  -q, --quiet         no progress and nothing on success\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "path", required_argument, NULL, 'p' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct qvm_clone_opts o = { .progress = stderr, .cancel = &interrupted };
    bool offline = false, quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "p:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'p': o.dir = optarg; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (argc - optind != 2)
        tool_usage_error(prog, "expected the names of the VM to clone and of the clone");
    o.src = argv[optind];
    o.name = argv[optind + 1];
    if (quiet)
        o.progress = NULL;

    struct qubes q;
    struct qerr err;
    struct qvm *vm;
    /* The name never reaches the file system unless it is valid. */
    if (qvm_check_new_name(o.name, &err) < 0)
        tool_fail(prog, &err);
    catch_signal(SIGINT);
    catch_signal(SIGTERM);
    catch_signal(SIGHUP);
    if (qubes_open(&q, offline, &err) < 0 || qubes_vm_clone(&q, &o, &vm, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    char dir[PATH_MAX];
    qubes_vm_dir(&q, vm, dir, sizeof dir, NULL);
    if (!quiet) {
        printf("Cloned '%s' into %s '%s' (qid %d) in ", o.src, qvm_class_label(vm->cls),
               vm->name, vm->qid);
        qprint_text(stdout, dir);
        putchar('\n');
    }
    qubes_close(&q);
    return 0;
}

/* qvm-create: add a VM to the database and create its files. */
#include <getopt.h>
#include <string.h>

#include "../hosts.h"
#include "tool.h"

static const char *prog = "qvm-create";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"Create a new VM: its record in qubes.xml and its directory with a sparse\n"
"private.img (and root.img for templates and standalone VMs).\n"
"\n"
"Options:\n"
"  -l, --label LABEL        colour label (required): red, orange, yellow, green,\n"
"                           gray, blue, purple, black\n"
"  -t, --template NAME      template to base the VM on (default: default-template;\n"
"                           with -H a TemplateHVM)\n"
"  -H, --hvm                create an HVM (standalone unless -t names a TemplateHVM)\n"
"      --hvm-template       create a TemplateHVM (a template for HVMs)\n"
"  -n, --net                create a NetVM\n"
"  -p, --proxy              create a ProxyVM\n"
"  -s, --standalone         copy the template's disks instead of using them\n"
"                           (without a template: an empty root.img)\n"
"  -m, --mem MIB            initial memory in MiB\n"
"  -c, --vcpus N            number of virtual CPUs\n"
"  -i, --internal           hide the VM from menus\n"
"  -r, --root-copy-from F   root.img is a copy of F (templates, standalone VMs)\n"
"  -R, --root-move-from F   root.img is F, moved (templates, standalone VMs)\n"
"  -k, --kernel DIR         boot DIR/vmlinuz (with DIR/initramfs) directly; VMs\n"
"                           based on a template use the template's\n"
"      --host NAME          the VM lives on the host NAME (qvm-host list): its\n"
"                           images are volumes of the pool '%s' there\n"
"                           (%s on that host), none is a file here; a\n"
"                           VM based on a template has it there or here\n"
"                           (default: local; not with -R)\n"
"      --offline-mode       do not contact the hypervisor\n"
"  -q, --quiet              say nothing on success\n"
"      --version            show the version and the hypervisor backends\n"
"  -h, --help               show this help\n", prog, QHOST_POOL, QHOST_POOL_DIR);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "label", required_argument, NULL, 'l' },
        { "template", required_argument, NULL, 't' },
        { "hvm", no_argument, NULL, 'H' },
        { "hvm-template", no_argument, NULL, 'T' },
        { "net", no_argument, NULL, 'n' },
        { "proxy", no_argument, NULL, 'p' },
        { "standalone", no_argument, NULL, 's' },
        { "mem", required_argument, NULL, 'm' },
        { "vcpus", required_argument, NULL, 'c' },
        { "internal", no_argument, NULL, 'i' },
        { "root-copy-from", required_argument, NULL, 'r' },
        { "root-move-from", required_argument, NULL, 'R' },
        { "kernel", required_argument, NULL, 'k' },
        { "host", required_argument, NULL, 'O' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct qvm_create_opts o = { 0 };
    bool offline = false, quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "l:t:Hnpsm:c:ir:R:k:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': o.label = optarg; break;
        case 't': o.template = optarg; break;
        case 'H': o.hvm = true; break;
        case 'T': o.hvm_template = true; break;
        case 'n': o.net = true; break;
        case 'p': o.proxy = true; break;
        case 's': o.standalone = true; break;
        case 'm':
            if (qparse_int(optarg, 1, 1L << 30, &o.memory) < 0)
                tool_usage_error(prog, "--mem wants a size in MiB");
            break;
        case 'c':
            if (qparse_int(optarg, 1, 4096, &o.vcpus) < 0)
                tool_usage_error(prog, "--vcpus wants a number from 1 to 4096");
            break;
        case 'i': o.internal = true; break;
        case 'r': o.root_copy_from = optarg; break;
        case 'R': o.root_move_from = optarg; break;
        case 'k': o.kernel_dir = optarg; break;
        case 'O': o.host = optarg; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc - 1)
        tool_usage_error(prog, "expected exactly one VM name");
    o.name = argv[optind];

    struct qubes q;
    struct qerr err;
    struct qvm *vm;
    /* The name never reaches the file system unless it is valid. */
    if (qvm_check_new_name(o.name, &err) < 0)
        tool_fail(prog, &err);
    if (qubes_open(&q, offline, &err) < 0 || qubes_load_for_writing(&q, true, &err) < 0)
        tool_fail(prog, &err);
    if (qubes_vm_create(&q, &o, &vm, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    char dir[PATH_MAX];
    qubes_vm_dir(&q, vm, dir, sizeof dir, NULL);
    if (!quiet && qvm_host(vm))
        printf("Created %s '%s' (qid %d) on host %s (settings in %s)\n",
               qvm_class_label(vm->cls), vm->name, vm->qid, qvm_host(vm), dir);
    else if (!quiet)
        printf("Created %s '%s' (qid %d) in %s\n", qvm_class_label(vm->cls), vm->name, vm->qid,
               dir);
    qubes_close(&q);
    return 0;
}

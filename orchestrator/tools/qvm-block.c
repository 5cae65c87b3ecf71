/* qvm-block: list, attach and detach the block devices of running VMs. */
#include <string.h>

#include "../block.h"
#include "tool.h"

static const char *prog = "qvm-block";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [-l]\n"
"  or:  %s -a [--ro] [--frontend DEV] VM SOURCE\n"
"  or:  %s -d [--timeout S] VM [DEV]\n"
"List, attach and detach block devices of running VMs, through the hypervisor.\n"
"A SOURCE is a host block device or an image file (raw), by its path (or\n"
"dom0:NAME for /dev/NAME, or dom0:PATH, as the original wrote them). It must\n"
"be a regular file or a block device, in directories only root can change, and\n"
"attached to no running VM. Unless read-only, it must also be outside the VMs'\n"
"files ($QUBES_BASE_DIR but for its images/ directory, the run directories,\n"
"/dev/shm/qubes) and not in use on the host (mounted, swap, held by another\n"
"device, behind a loop device).\n"
"\n"
"Options:\n"
"  -l, --list           the devices attached to running VMs (VM, frontend, mode,\n"
"                       source), then the host block devices and the image files\n"
"                       of $QUBES_BASE_DIR/images that can be attached (default)\n"
"  -a, --attach         hot-plug SOURCE into the running VM as a virtio disk\n"
"  -A, --attach-file    the same (the original's option for files)\n"
"      --ro             read-only: the guest cannot write to it\n"
"  -f, --frontend DEV   the disk's name in the VM's description, vdb to vdz\n"
"                       (default: the first free one, also the guest's name for\n"
"                       it; a guest names its disks in the order they appear)\n"
"  -d, --detach         unplug DEV (default: every device qvm-block attached) and\n"
"                       wait until the hypervisor reports it gone\n"
"      --timeout S      how long -d waits for the guest to let it go (default %d)\n"
"      --offline-mode   do not contact the hypervisor: -l lists the host's devices\n"
"                       and image files only, -a and -d are refused\n"
"      --version        show the version and the hypervisor backends\n"
"  -h, --help           show this help\n",
            prog, prog, prog, QBLOCK_DETACH_TIMEOUT_MS / 1000);
}

static void human(unsigned long long bytes, char *out, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%llu B", bytes);
    else
        snprintf(out, len, "%.1f %s", v, units[u]);
}

/* Pads to `width` columns what qprint_text printed of `text`. */
static void cell(const char *text, size_t width)
{
    qprint_text(stdout, text);
    for (size_t n = strlen(text); n < width; n++)
        putchar(' ');
}

static void list(const struct qubes *q, const struct qblock_list *l)
{
    size_t vw = 2, pw = 6;
    for (size_t i = 0; i < l->nattached; i++)
        vw = strlen(l->attached[i].vm) > vw ? strlen(l->attached[i].vm) : vw;
    for (size_t i = 0; i < l->navailable; i++)
        pw = strlen(l->available[i].path) > pw ? strlen(l->available[i].path) : pw;
    if (!l->attached_known) {
        printf("Attached to running VMs: not known in offline mode (the hypervisor is not "
               "asked)\n");
    } else {
        printf("Attached to running VMs:\n");
        if (l->nattached == 0)
            printf("  (none)\n");
        else
            printf("  %-*s  DEV  MODE  SOURCE\n", (int)vw, "VM");
        for (size_t i = 0; i < l->nattached; i++) {
            const struct qblock_attached *a = &l->attached[i];
            printf("  %-*s  %-4s %-4s  ", (int)vw, a->vm, a->frontend, a->readonly ? "ro" : "rw");
            qprint_text(stdout, a->source);
            putchar('\n');
        }
    }
    printf("Available (host block devices, and image files in %s/%s)%s:\n", q->cfg.base_dir,
           QBLOCK_IMAGE_DIR, l->attached_known ? "" : ", devices attached to VMs included");
    if (l->navailable == 0)
        printf("  (none)\n");
    else
        printf("  %-*s  %10s  %s\n", (int)pw, "SOURCE", "SIZE", "WHAT");
    for (size_t i = 0; i < l->navailable; i++) {
        const struct qblock_available *a = &l->available[i];
        char size[32];
        human(a->bytes, size, sizeof size);
        fputs("  ", stdout);
        cell(a->path, pw);
        printf("  %10s  ", size);
        qprint_text(stdout, a->what);
        putchar('\n');
    }
}

/* The original's dom0:NAME (a device of /dev) and dom0:PATH. */
static const char *source_path(const char *arg, char *buf, size_t len)
{
    if (strncmp(arg, "dom0:", 5) != 0)
        return arg;
    arg += 5;
    if (strchr(arg, '/'))
        return arg;
    snprintf(buf, len, "/dev/%s", arg);
    return buf;
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    enum { OPT_RO = 1001, OPT_TIMEOUT };
    static const struct option opts[] = {
        { "list", no_argument, NULL, 'l' },
        { "attach", no_argument, NULL, 'a' },
        { "attach-file", no_argument, NULL, 'A' },
        { "detach", no_argument, NULL, 'd' },
        { "ro", no_argument, NULL, OPT_RO },
        { "frontend", required_argument, NULL, 'f' },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int mode = 0, c;
    bool ro = false, offline = false;
    const char *frontend = NULL;
    long timeout_s = QBLOCK_DETACH_TIMEOUT_MS / 1000;
    while ((c = getopt_long(argc, argv, "laAdf:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': case 'a': case 'A': case 'd': {
            int m = c == 'A' ? 'a' : c;
            if (mode && mode != m)
                tool_usage_error(prog, "choose one of -l, -a and -d");
            mode = m;
            break;
        }
        case OPT_RO: ro = true; break;
        case 'f': frontend = optarg; break;
        case OPT_TIMEOUT:
            if (qparse_int(optarg, 1, 3600, &timeout_s) < 0)
                tool_usage_error(prog, "--timeout takes seconds (1 to 3600)");
            break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (!mode)
        mode = 'l';
    int nargs = argc - optind;
    if (mode == 'l' && nargs != 0)
        tool_usage_error(prog, "-l takes no arguments");
    if (mode == 'a' && nargs != 2)
        tool_usage_error(prog, "-a takes a VM and a SOURCE");
    if (mode == 'd' && nargs != 1 && nargs != 2)
        tool_usage_error(prog, "-d takes a VM and, optionally, a device");
    if ((ro || frontend) && mode != 'a')
        tool_usage_error(prog, "--ro and --frontend go with -a");
    const char *dev = mode == 'd' && nargs == 2 ? argv[optind + 1] : frontend;
    if (dev && !qblock_valid_frontend(dev))
        tool_usage_error(prog, "a device is one of vdb to vdz");

    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0)
        tool_fail(prog, &err);
    int rc = 0;
    if (mode == 'l') {
        struct qblock_list l;
        if ((rc = qblock_list(&q, &l, &err)) == 0) {
            list(&q, &l);
            qblock_list_free(&l);
        }
    } else if (mode == 'a') {
        char used[8], path[PATH_MAX], buf[PATH_MAX];
        struct qblock_attach_opts o = { .vm = argv[optind], .readonly = ro, .frontend = frontend,
                                        .source = source_path(argv[optind + 1], buf, sizeof buf) };
        if ((rc = qblock_attach(&q, &o, used, path, sizeof path, &err)) == 0)
            qsay(stdout, "Attached %s to '%s' as %s (%s)", path, o.vm, used,
                 ro ? "read-only" : "read-write");
    } else {
        int n;
        const char *vm = argv[optind];
        if ((rc = qblock_detach(&q, vm, dev, timeout_s * 1000, &n, &err)) == 0) {
            if (dev)
                qsay(stdout, "Detached %s from '%s'", dev, vm);
            else if (n == 0)
                qsay(stdout, "Nothing qvm-block attached is attached to '%s'", vm);
            else
                qsay(stdout, "Detached %d device%s from '%s'", n, n == 1 ? "" : "s", vm);
        }
    }
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}

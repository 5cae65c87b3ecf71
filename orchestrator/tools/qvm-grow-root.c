/* qvm-grow-root: make a template's or standalone VM's root image larger. */
#include <ctype.h>
#include <string.h>

#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-grow-root";

static const char help[] =
"Usage: qvm-grow-root [options] NAME SIZE\n"
"Grow the root image of a template or standalone VM to SIZE (bytes, or with\n"
"a K, M, G or T suffix). The file grows sparse; the guest grows its file\n"
"system. Refused for a VM based on a template (resize the template), for a\n"
"running VM, for a template while a VM based on it runs, and for a shrink.\n"
"\n"
"Options:\n"
"      --offline-mode  do not contact the hypervisor (VMs taken as halted)\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n";

static int parse_size(const char *s, unsigned long long *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'T': shift += 10; /* fall through */
    case 'G': shift += 10; /* fall through */
    case 'M': shift += 10; /* fall through */
    case 'K': shift += 10; end++; break;
    case '\0': break;
    default: return -1;
    }
    if (*end && !(toupper((unsigned char)end[0]) == 'B' && !end[1]))
        return -1;
    if (shift && v > (~0ULL >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    bool offline = tool_simple_options(argc, argv, prog, help, 2, "expected a VM name and a size");
    unsigned long long bytes;
    if (parse_size(argv[optind + 1], &bytes) < 0)
        tool_usage_error(prog, "SIZE is a number of bytes, optionally with K, M, G or T");
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 ||
        qubes_vm_grow_root(&q, argv[optind], bytes, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}

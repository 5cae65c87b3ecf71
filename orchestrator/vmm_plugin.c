/* Where the hypervisor backends are and which are installed: apart from
 * vmm.c so that --version (every tool's) links nothing of the domain XML. */
#include "vmm.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int vmm_plugin_dir(char *out, size_t len, struct qerr *err)
{
    const char *env = getenv("QUBES_VMM_PLUGIN_DIR");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        return qerr_errno(err, errno, "cannot find the program's directory");
    exe[n] = '\0';
    snprintf(out, len, "%s/../lib/qubes-orchestrator", dirname(exe));
    return 0;
}

void vmm_backends_available(char *out, size_t len)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    struct qerr e;
    bool has[2] = { false, false };
    const char *files[2] = { VMM_LIBVIRT_PLUGIN, VMM_LIBXL_PLUGIN };
    if (vmm_plugin_dir(dir, sizeof dir, &e) == 0)
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            has[i] = access(path, R_OK) == 0;
        }
    snprintf(out, len, "libvirt%s, libxl%s", has[0] ? "" : " (not installed)",
             has[1] ? "" : " (not built: no xenlight at build time)");
}

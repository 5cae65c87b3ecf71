/* Where things are: paths and the hypervisor URI, from the environment.
 *   QUBES_BASE_DIR  (default /var/lib/qubes)   qubes.xml and VM directories
 *   QUBES_RUN_DIR   (default /var/run/qubes)   runtime state
 *   QUBES_VMM_URI   (default qemu:///system)   libvirt connection
 *   QUBES_OFFLINE=1 (or --offline-mode)        no hypervisor access at all */
#ifndef QUBES_CONFIG_H
#define QUBES_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct qubes_config {
    char base_dir[PATH_MAX];
    char run_dir[PATH_MAX];
    char db_path[PATH_MAX];
    char vmm_uri[1024];
    bool offline;
};

int qubes_config_init(struct qubes_config *cfg, struct qerr *err);
/* $BASE/<class subdir>/<name>, the directory a VM of that class gets. */
int qubes_config_vm_dir(const struct qubes_config *cfg, const char *subdir, const char *name,
                        char *out, size_t outlen, struct qerr *err);

#endif

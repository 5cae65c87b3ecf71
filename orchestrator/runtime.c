#include "runtime.h"

#include <stdio.h>

#include "util.h"

static int fits(int n, size_t len, const char *what, struct qerr *err)
{
    if (n < 0 || (size_t)n >= len)
        return qerr_set(err, "runtime path of %s is too long", what);
    return 0;
}

int qrt_path(const struct qubes_config *cfg, const char *file, char *out, size_t len,
             struct qerr *err)
{
    return fits(snprintf(out, len, "%s/%s", cfg->run_dir, file), len, file, err);
}

int qrt_vms_dir(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err)
{
    return fits(snprintf(out, len, "%s/vms", cfg->run_dir), len, "the VMs", err);
}

int qrt_vm_path(const struct qubes_config *cfg, const char *name, const char *file, char *out,
                size_t len, struct qerr *err)
{
    int n = file ? snprintf(out, len, "%s/vms/%s/%s", cfg->run_dir, name, file)
                 : snprintf(out, len, "%s/vms/%s", cfg->run_dir, name);
    return fits(n, len, name, err);
}

int qrt_shm_path(const char *file, char *out, size_t len, struct qerr *err)
{
    return fits(snprintf(out, len, "%s/%s", QRT_SHM_DIR, file), len, file, err);
}

int qrt_lock(const struct qubes_config *cfg, const char *file, struct qerr *err)
{
    return qflock(cfg->run_dir, file, err);
}

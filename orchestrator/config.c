#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pick(char *out, size_t len, const char *env, const char *dflt, struct qerr *err)
{
    const char *v = getenv(env);
    if (!v || !*v)
        v = dflt;
    if (strlen(v) >= len)
        return qerr_set(err, "%s is too long", env);
    strcpy(out, v);
    /* Trailing slashes would make paths and messages differ for one place. */
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
        out[n - 1] = '\0';
    return 0;
}

int qubes_config_init(struct qubes_config *cfg, struct qerr *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (pick(cfg->base_dir, sizeof cfg->base_dir, "QUBES_BASE_DIR", "/var/lib/qubes", err) < 0 ||
        pick(cfg->run_dir, sizeof cfg->run_dir, "QUBES_RUN_DIR", "/var/run/qubes", err) < 0)
        return -1;
    const char *uri = getenv("QUBES_VMM_URI");
    if (!uri || !*uri)
        uri = "qemu:///system";
    if (strlen(uri) >= sizeof cfg->vmm_uri)
        return qerr_set(err, "QUBES_VMM_URI is too long");
    strcpy(cfg->vmm_uri, uri);
    if (cfg->base_dir[0] != '/')
        return qerr_set(err, "QUBES_BASE_DIR must be an absolute path, not '%s'", cfg->base_dir);
    if (snprintf(cfg->db_path, sizeof cfg->db_path, "%s/qubes.xml", cfg->base_dir) >=
        (int)sizeof cfg->db_path)
        return qerr_set(err, "QUBES_BASE_DIR is too long");
    const char *off = getenv("QUBES_OFFLINE");
    cfg->offline = off && *off && strcmp(off, "0") != 0;
    return 0;
}

int qubes_config_vm_dir(const struct qubes_config *cfg, const char *subdir, const char *name,
                        char *out, size_t outlen, struct qerr *err)
{
    if (snprintf(out, outlen, "%s/%s/%s", cfg->base_dir, subdir, name) >= (int)outlen)
        return qerr_set(err, "path of VM '%s' is too long", name);
    return 0;
}

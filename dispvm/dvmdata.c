#include "dvmdata.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/runtime.h"
#include "../orchestrator/vm.h"
#include "shmem.h"

int dvmdata_path(const struct qubes_config *cfg, const char *file, char *out, size_t len,
                 struct qerr *err)
{
    int n = file ? snprintf(out, len, "%s/dvmdata/%s", cfg->base_dir, file)
                 : snprintf(out, len, "%s/dvmdata", cfg->base_dir);
    if (n < 0 || (size_t)n >= len)
        return qerr_set(err, "path of %s in dvmdata is too long", file ? file : "dvmdata");
    return 0;
}

int dvmdata_of(const struct qubes_config *cfg, const char *dvm, struct dvmdata *out,
               struct qerr *err)
{
    static const char *const parts[] = { "savefile", "root.qcow2", "private.img", "meta" };
    char *const dst[] = { out->savefile, out->root, out->priv, out->meta };
    char file[QUBES_NAME_MAX + 32];
    if (strlen(dvm) > QUBES_NAME_MAX)
        return qerr_set(err, "'%s' is too long a name for a DispVM template", dvm);
    if (dvmdata_path(cfg, NULL, out->dir, sizeof out->dir, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        snprintf(file, sizeof file, "%s.%s", dvm, parts[i]);
        if (dvmdata_path(cfg, file, dst[i], PATH_MAX, err) < 0)
            return -1;
    }
    snprintf(file, sizeof file, "%s.savefile", dvm);
    return qrt_shm_path(file, out->shm_copy, sizeof out->shm_copy, err);
}

int dvmdata_forget(const struct qubes_config *cfg, const char *dvm)
{
    struct dvmdata set;
    char links[2][PATH_MAX], target[PATH_MAX];
    if (qvm_check_name(dvm, NULL) < 0 || dvmdata_of(cfg, dvm, &set, NULL) < 0 ||
        dvmdata_path(cfg, DVMDATA_DEFAULT_SAVEFILE, links[0], sizeof links[0], NULL) < 0 ||
        qrt_shm_path(DVMDATA_SHM_CURRENT, links[1], sizeof links[1], NULL) < 0)
        return 0;
    int had = access(set.savefile, F_OK) == 0;
    const char *const files[] = { set.savefile, set.root, set.priv, set.meta, set.shm_copy };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        unlink(files[i]);
    /* The original's links, when they named what is gone now. */
    for (int i = 0; i < 2; i++) {
        ssize_t n = readlink(links[i], target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strstr(target, dvm)) && access(target, F_OK) != 0)
            unlink(links[i]);
    }
    dispvm_ram_gc(cfg, dvm, set.savefile, true);
    return had;
}

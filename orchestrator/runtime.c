#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int qrt_shm_dir(bool create, struct qerr *err)
{
    struct stat st;
    if (create && qmkdirs(QRT_SHM_DIR, err) < 0)
        return -1;
    if (lstat(QRT_SHM_DIR, &st) < 0)
        return qerr_errno(err, errno, "%s", QRT_SHM_DIR);
    if (S_ISLNK(st.st_mode))
        return qerr_set(err, "%s is a symbolic link: refusing to use it", QRT_SHM_DIR);
    if (!S_ISDIR(st.st_mode))
        return qerr_set(err, "%s is not a directory: refusing to use it", QRT_SHM_DIR);
    if (st.st_uid != geteuid())
        return qerr_set(err, "%s belongs to uid %u, not to us (uid %u): refusing to use it "
                        "(another user made it; remove it)", QRT_SHM_DIR, (unsigned)st.st_uid,
                        (unsigned)geteuid());
    if (st.st_mode & 022)
        return qerr_set(err, "%s is writable by others (mode %03o): refusing to use it",
                        QRT_SHM_DIR, (unsigned)(st.st_mode & 0777));
    return 0;
}

/* "PID STARTTIME" of process `pid` (the start time in clock ticks since
 * boot, field 22 of its stat). */
static int process_id(pid_t pid, char *out, size_t len)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (qread_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *p = strrchr(buf, ')');   /* the command name may hold spaces */
    unsigned long long start = 0;
    for (int field = 2; p && *p; p++) {
        if (*p == ' ' && ++field == 22) {
            start = strtoull(p + 1, NULL, 10);
            break;
        }
    }
    snprintf(out, len, "%d %llu\n", (int)pid, start);
    return 0;
}

int qrt_owner_write(const char *path, struct qerr *err)
{
    char owner[64];
    if (process_id(getpid(), owner, sizeof owner) < 0)
        return qerr_set(err, "cannot read this process's start time");
    return qwrite_runtime_file(path, owner, err);
}

bool qrt_owner_alive(const char *path)
{
    char rec[64], now[64];
    if (qread_small(path, rec, sizeof rec) < 0)
        return false;
    return process_id((pid_t)atoi(rec), now, sizeof now) == 0 && strcmp(rec, now) == 0;
}

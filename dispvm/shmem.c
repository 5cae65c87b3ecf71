#include "shmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/domain.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "savefile.h"

int dispvm_ram_create(const char *dvm, char *out, size_t len, struct qerr *err)
{
    struct timespec ts;
    char file[PATH_MAX];
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(file, sizeof file, "%s.%lld%09ld.ram", dvm, (long long)ts.tv_sec, ts.tv_nsec);
    if (qrt_shm_dir(true, err) < 0 || qrt_shm_path(file, out, len, err) < 0)
        return qerr_prefix(err, "cannot keep the memory of '%s' in a file", dvm);
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot create %s", out);
    /* QEMU maps it: the file is its user's, and nobody else's. */
    uid_t u;
    gid_t g;
    qemulator_ids(&u, &g);
    if (geteuid() == 0 && u != 0 && fchown(fd, u, g) < 0) {
        int e = errno;
        close(fd);
        unlink(out);
        return qerr_errno(err, e, "cannot give %s to the emulator's user (uid %u)", out,
                          (unsigned)u);
    }
    close(fd);
    return 0;
}

/* Boot protocol 2.00, loaded high, one sector of setup: what QEMU's x86
 * loader checks before it takes a kernel. */
#define STUB_SIZE 1536

static void boot_stub(unsigned char *b)
{
    memset(b, 0, STUB_SIZE);
    b[0x1f1] = 1;                       /* setup sectors: the setup is 2 x 512 bytes */
    b[0x1fe] = 0x55;                    /* boot flag */
    b[0x1ff] = 0xaa;
    memcpy(b + 0x202, "HdrS", 4);       /* the header's magic */
    b[0x206] = 0x00;                    /* protocol 2.00 */
    b[0x207] = 0x02;
    b[0x211] = 0x01;                    /* LOADED_HIGH */
}

int dispvm_boot_stub(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err)
{
    unsigned char want[STUB_SIZE], have[STUB_SIZE + 1];
    if (qrt_path(cfg, QRT_BOOT_STUB, out, len, err) < 0)
        return -1;
    boot_stub(want);
    int fd = open(out, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    ssize_t n = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, have, sizeof have)
                                                                       : -1;
    if (fd >= 0)
        close(fd);
    if (n == STUB_SIZE && memcmp(have, want, STUB_SIZE) == 0)
        return 0;
    return qwrite_file(out, want, STUB_SIZE, 0640, false, err);
}

int dispvm_ram_check(const char *ram, struct qerr *err)
{
    struct stat st;
    if (qrt_shm_dir(false, err) < 0)
        return -1;
    if (lstat(ram, &st) < 0)
        return qerr_errno(err, errno, "the savefile's memory file %s", ram);
    uid_t qemu_uid;
    gid_t qemu_gid;
    qemulator_ids(&qemu_uid, &qemu_gid);
    if (!S_ISREG(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != qemu_uid) ||
        (st.st_mode & 077))
        return qerr_set(err, "the savefile's memory file %s is not one of ours (a file of uid "
                        "%u, mode %03o): refusing it", ram, (unsigned)st.st_uid,
                        (unsigned)(st.st_mode & 0777));
    return 0;
}

int dispvm_ram_of_xml(const char *xml, char *out, size_t len)
{
    out[0] = '\0';
    const char *obj = strstr(xml, "memory-backend-file,id=" DOMAIN_RAM_ID ",");
    if (!obj)
        return 0;
    const char *p = strstr(obj, "mem-path="), *end;
    if (!p || !strstr(obj, "share=on"))
        return 0;
    p += strlen("mem-path=");
    for (end = p; *end && *end != ',' && *end != '\'' && *end != '"'; end++)
        ;
    size_t n = (size_t)(end - p);
    if (n >= len || strncmp(p, QRT_SHM_DIR "/", strlen(QRT_SHM_DIR) + 1) != 0)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    if (strchr(out + strlen(QRT_SHM_DIR) + 1, '/')) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* The generation of a RAM file name "DVM.GEN.ram" of `dvm`, or -1. */
static long long ram_gen(const char *dvm, const char *file)
{
    size_t dl = strlen(dvm), fl = strlen(file);
    if (strncmp(file, dvm, dl) != 0 || file[dl] != '.' || fl < dl + 6 ||
        strcmp(file + fl - 4, ".ram") != 0)
        return -1;
    char *end;
    long long g = strtoll(file + dl + 1, &end, 10);
    return end == file + fl - 4 && g > 0 ? g : -1;
}

int dispvm_ram_dvm(const char *ram, char *dvm, size_t len)
{
    const char *base = strrchr(ram, '/');
    const char *dot = base ? strchr(base + 1, '.') : NULL;
    if (!dot || dot - base - 1 >= (long)len)
        return -1;
    snprintf(dvm, len, "%.*s", (int)(dot - base - 1), base + 1);
    return 0;
}

int dispvm_ram_claim(const char *record, const char *ram, struct qerr *err)
{
    if (qwrite_runtime_file(record, ram, err) < 0)
        return qerr_prefix(err, "cannot record the memory file a DispVM maps");
    return 0;
}

void dispvm_ram_recorded(const char *record, char *out, size_t len)
{
    if (qread_small(record, out, len) < 0)
        out[0] = '\0';
}

/* Whether a VM's run directory records `ram`. */
static bool mapped(const struct qubes_config *cfg, const char *ram)
{
    char dir[PATH_MAX];
    if (qrt_vms_dir(cfg, dir, sizeof dir, NULL) < 0)
        return false;
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char record[PATH_MAX], ram_of[PATH_MAX];
        if (e->d_name[0] == '.' ||
            qrt_vm_path(cfg, e->d_name, QRT_RAM, record, sizeof record, NULL) < 0)
            continue;
        dispvm_ram_recorded(record, ram_of, sizeof ram_of);
        found = strcmp(ram_of, ram) == 0;
    }
    closedir(d);
    return found;
}

int dispvm_ram_gc(const struct qubes_config *cfg, const char *dvm, const char *savefile,
                  bool all_unused)
{
    char current[PATH_MAX] = "";
    struct savefile_info si;
    struct stat st;
    /* Files named after the savefile was made belong to a preparation that
     * may still run: only older ones are candidates. */
    long long made = stat(savefile, &st) == 0
                         ? (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec : -1;
    if (made >= 0 && savefile_read(savefile, &si, NULL) == 0) {
        dispvm_ram_of_xml(si.xml, current, sizeof current);
        savefile_info_free(&si);
    }
    long long cur = current[0] ? ram_gen(dvm, strrchr(current, '/') + 1) : -1;
    DIR *d = qrt_shm_dir(false, NULL) == 0 ? opendir(QRT_SHM_DIR) : NULL;
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        long long g = ram_gen(dvm, ent->d_name);
        char path[PATH_MAX];
        if (g < 0 || g == cur || (!all_unused && g >= made) ||
            qrt_shm_path(ent->d_name, path, sizeof path, NULL) < 0)
            continue;
        if (!mapped(cfg, path) && unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

#include "shmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/domain.h"
#include "../orchestrator/util.h"
#include "savefile.h"

int dispvm_memory_shared(struct qubes *q, bool *shared, char *why, size_t whylen,
                         struct qerr *err)
{
    const char *want = qattrs_get(&q->coll->root_attrs, "dispvm_memory");
    if (!want)
        want = "auto";
    if (strcmp(want, "full") == 0) {
        *shared = false;
        snprintf(why, whylen, "full memory image (dispvm-memory is full)");
        return 0;
    }
    bool can = vmm_shares_memory(&q->vmm) == 1 && access("/dev/shm", W_OK) == 0;
    if (!can && strcmp(want, "shared") == 0)
        return qerr_set(err, "dispvm-memory is shared, but the %s hypervisor connection "
                        "cannot share a DispVM's memory (QEMU through libvirt and a writable "
                        "/dev/shm are needed)", q->vmm.uri);
    *shared = can;
    snprintf(why, whylen, can ? "shared memory (guest RAM in %s, copy-on-write in DispVMs)"
                              : "full memory image (the %s connection cannot share memory)",
             can ? DISPVM_RAM_DIR : q->vmm.uri);
    return 0;
}

void dispvm_ram_new(const char *dvm, char *out, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, len, "%s/%s.%lld%09ld.ram", DISPVM_RAM_DIR, dvm, (long long)ts.tv_sec,
             ts.tv_nsec);
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
    if (n >= len || strncmp(p, DISPVM_RAM_DIR "/", strlen(DISPVM_RAM_DIR) + 1) != 0)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    if (strchr(out + strlen(DISPVM_RAM_DIR) + 1, '/')) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int dispvm_ram_claim(const char *rundir, const char *ram, struct qerr *err)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/ram", rundir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || qwrite_all(fd, ram, strlen(ram)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return qerr_errno(err, e, "cannot record the memory file of %s", rundir);
    }
    close(fd);
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

void dispvm_ram_recorded(const char *rundir, char *out, size_t len)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/ram", rundir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, len - 1) : -1;
    if (fd >= 0)
        close(fd);
    out[n > 0 ? n : 0] = '\0';
}

void dispvm_ram_release(struct qubes *q, const char *ram)
{
    const char *base = strrchr(ram, '/');
    const char *dot = base ? strchr(base + 1, '.') : NULL;
    char dvm[64];
    if (!dot || dot - base - 1 >= (long)sizeof dvm)
        return;
    snprintf(dvm, sizeof dvm, "%.*s", (int)(dot - base - 1), base + 1);
    dispvm_ram_gc(q, dvm, false);
}

static bool recorded(const char *run_dir, const char *ram)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/vms", run_dir);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char rundir[PATH_MAX + 300], mapped[PATH_MAX];
        snprintf(rundir, sizeof rundir, "%s/%s", dir, e->d_name);
        dispvm_ram_recorded(rundir, mapped, sizeof mapped);
        found = strcmp(mapped, ram) == 0;
    }
    closedir(d);
    return found;
}

int dispvm_ram_gc(struct qubes *q, const char *dvm, bool all_unused)
{
    char save[PATH_MAX], current[PATH_MAX] = "";
    struct savefile_info si;
    struct qerr e;
    struct stat st;
    snprintf(save, sizeof save, "%s/dvmdata/%s.savefile", q->cfg.base_dir, dvm);
    /* Files named after the savefile was made belong to a preparation that
     * may still run: only older ones are candidates. */
    long long made = stat(save, &st) == 0
                         ? (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec : -1;
    if (made >= 0 && savefile_read(save, &si, &e) == 0) {
        dispvm_ram_of_xml(si.xml, current, sizeof current);
        savefile_info_free(&si);
    }
    long long cur = current[0] ? ram_gen(dvm, strrchr(current, '/') + 1) : -1;
    DIR *d = opendir(DISPVM_RAM_DIR);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        long long g = ram_gen(dvm, ent->d_name);
        if (g < 0 || g == cur || (!all_unused && g >= made))
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", DISPVM_RAM_DIR, ent->d_name);
        if (!recorded(q->cfg.run_dir, path) && unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int dispvm_memuse(int pid, struct dispvm_memuse *out)
{
    memset(out, 0, sizeof *out);
    char path[64], line[PATH_MAX + 128];
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    bool in_ram = false;
    unsigned long v, ram_rss = 0, ram_anon = 0;
    while (fgets(line, sizeof line, f)) {
        char name[32];
        if (sscanf(line, "%31[A-Za-z_]: %lu kB", name, &v) != 2) {
            /* A mapping's header line: is it a RAM file of ours? */
            in_ram = strstr(line, DISPVM_RAM_DIR "/") && strstr(line, ".ram");
            out->maps_ram_file |= in_ram;
            continue;
        }
        if (strcmp(name, "Pss") == 0)
            out->pss_kib += v;
        else if (strcmp(name, "Private_Dirty") == 0 || strcmp(name, "Private_Clean") == 0)
            out->private_kib += in_ram ? 0 : v;
        else if (in_ram && strcmp(name, "Rss") == 0)
            ram_rss += v;
        else if (in_ram && strcmp(name, "Anonymous") == 0)
            ram_anon += v;
    }
    fclose(f);
    /* In the RAM file's private mapping, copied pages are anonymous; the
     * others are the template's, shared. */
    out->private_kib += ram_anon;
    out->shared_kib = ram_rss - ram_anon;
    return 0;
}

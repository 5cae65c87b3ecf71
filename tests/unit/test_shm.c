/* /dev/shm is everybody's: a local user may make /dev/shm/qubes before
 * the first DispVM savefile and fill it. In a private mount namespace
 * with a /dev/shm of its own (the host's is never touched), as root, with
 * an unprivileged user playing the attacker: a directory that is not ours
 * is refused, a savefile copy there is never read, and nothing there is
 * removed. Needs root. */
#include "../../dispvm/dvmdata.h"
#include "../../dispvm/shmem.h"
#include "../../orchestrator/runtime.h"
#include "../testutil.h"

#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>

#define NOBODY 65534

/* Runs `cmd` by /bin/sh as the unprivileged user. */
static int as_nobody(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
            _exit(98);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void fresh_shm(void)
{
    umount2("/dev/shm", MNT_DETACH);
    if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0) {
        perror("mount /dev/shm");
        exit(99);
    }
}

int main(void)
{
    if (geteuid() != 0) {
        printf("1..0 # SKIP needs root (a mount namespace and another user)\n");
        return 0;
    }
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        printf("1..0 # SKIP no private mount namespace here: %s\n", strerror(errno));
        return 0;
    }
    char base[] = "/tmp/qubes-shm.XXXXXX";
    if (!mkdtemp(base))
        return 99;
    struct qubes_config cfg = { 0 };
    snprintf(cfg.base_dir, sizeof cfg.base_dir, "%s", base);
    snprintf(cfg.run_dir, sizeof cfg.run_dir, "%s/run", base);
    struct dvmdata set;
    struct qerr err;
    char path[4096], ram[4096];
    if (dvmdata_of(&cfg, "fedora-dvm", &set, &err) < 0)
        return 99;
    snprintf(path, sizeof path, "%s/dvmdata", base);
    mkdir(path, 0755);
    spit(set.savefile, "the real savefile\n");

    /* QEMU's user, as libvirt runs it here (root where there is none). */
    struct passwd *pw = getpwnam("libvirt-qemu");
    uid_t qemu_uid = pw ? pw->pw_uid : 0;
    gid_t qemu_gid = pw ? pw->pw_gid : 0;

    /* Ours: made 0750 in QEMU's group, and used. */
    fresh_shm();
    ok(qrt_shm_dir(true, &err) == 0, "a missing /dev/shm/qubes is made");
    struct stat st;
    int r = lstat(QRT_SHM_DIR, &st);
    ok(r == 0 && st.st_uid == 0 && st.st_gid == qemu_gid && (st.st_mode & 0777) == 0750,
       "owned by root, group %u (QEMU's is %u), mode %03o", (unsigned)st.st_gid,
       (unsigned)qemu_gid, (unsigned)(st.st_mode & 0777));
    ok(dvmdata_publish_shm(&set, &err) == 0, "the savefile is copied there");
    r = lstat(set.shm_copy, &st);
    ok(r == 0 && (st.st_mode & 0777) == 0600,
       "the copy is mode %03o (it holds guest memory)", (unsigned)(st.st_mode & 0777));
    ok(strcmp(dvmdata_restore_from(&set), set.shm_copy) == 0, "and a restore reads the copy");
    /* Another file in its place, the same size and newer: not the one recorded. */
    snprintf(path, sizeof path, "%s.other", set.shm_copy);
    spit(path, "the fake savefile\n");
    rename(path, set.shm_copy);
    ok(strcmp(dvmdata_restore_from(&set), set.savefile) == 0,
       "a copy replaced by another file (same size, newer) is not read");
    r = dispvm_ram_create("fedora-dvm", ram, sizeof ram, &err) == 0 ? lstat(ram, &st) : -1;
    ok(r == 0 && (st.st_mode & 0777) == 0600 && st.st_uid == qemu_uid,
       "a RAM file is made 0600, QEMU's user's (uid %u, %s)", (unsigned)st.st_uid, ram);
    ok(dispvm_ram_check(ram, &err) == 0, "and passes the check a restore makes");
    ok(chown(ram, 65534, 65534) == 0 && dispvm_ram_check(ram, &err) < 0 &&
           strstr(err.msg, "not one of ours"),
       "one of another user's is refused: %s", err.msg);
    ok(chown(ram, qemu_uid, qemu_gid) == 0, "given back to QEMU's user");
    chmod(ram, 0644);
    ok(dispvm_ram_check(ram, &err) < 0 && strstr(err.msg, "not one of ours"),
       "one others can read is refused: %s", err.msg);

    /* The attacker's: made first by another user, with a savefile of the
     * same size and newer, and a RAM file. */
    fresh_shm();
    ok(as_nobody("mkdir -m 0777 /dev/shm/qubes && printf 'the fake savefile\\n' > "
                 "/dev/shm/qubes/fedora-dvm.savefile && touch /dev/shm/qubes/fedora-dvm.1.ram") == 0,
       "another user makes /dev/shm/qubes first");
    ok(qrt_shm_dir(true, &err) < 0 && strstr(err.msg, "belongs to uid 65534"),
       "it is refused: %s", err.msg);
    ok(strcmp(dvmdata_restore_from(&set), set.savefile) == 0,
       "a restore reads the savefile in dvmdata, not the copy planted there");
    ok(dispvm_ram_create("fedora-dvm", ram, sizeof ram, &err) < 0 && strstr(err.msg, "uid 65534"),
       "no RAM file is made there: %s", err.msg);
    ok(dvmdata_publish_shm(&set, &err) < 0, "no copy is put there: %s", err.msg);
    snprintf(path, sizeof path, "%s/fedora-dvm.1.ram", QRT_SHM_DIR);
    ok(dispvm_ram_check(path, &err) < 0, "its RAM file is refused: %s", err.msg);
    dispvm_ram_gc(&cfg, "fedora-dvm", set.savefile, true);
    dvmdata_forget(&cfg, "fedora-dvm");
    ok(access(path, F_OK) == 0 && access(set.shm_copy, F_OK) == 0,
       "and nothing in it is removed (not ours to touch)");

    /* Root's, but writable by others; a link to a directory of root's. */
    fresh_shm();
    mkdir(QRT_SHM_DIR, 0777);
    chmod(QRT_SHM_DIR, 0777);
    ok(qrt_shm_dir(true, &err) < 0 && strstr(err.msg, "writable by others"),
       "root's but mode 777: refused: %s", err.msg);
    fresh_shm();
    mkdir("/dev/shm/elsewhere", 0755);
    symlink("/dev/shm/elsewhere", QRT_SHM_DIR);
    ok(qrt_shm_dir(true, &err) < 0 && strstr(err.msg, "symbolic link"),
       "a symbolic link: refused: %s", err.msg);

    /* The kernel a restored DispVM's QEMU loads: written once, the header
     * of a Linux kernel and nothing more; one spoilt, or a link planted in
     * its place, is written again (the link replaced, not followed). */
    mkdir(cfg.run_dir, 0750);
    char stub[4096], victim[4096];
    size_t n = 0;
    ok(dispvm_boot_stub(&cfg, stub, sizeof stub, &err) == 0, "the boot stub is written (%s)",
       stub);
    char *b = slurp(stub, &n);
    ok(b && n == 1536 && memcmp(b + 0x202, "HdrS", 4) == 0 && b[0x206] == 0 && b[0x207] == 2 &&
       b[0x1f1] == 1 && (b[0x211] & 1) && (unsigned char)b[0x1fe] == 0x55,
       "a kernel header of boot protocol 2.00, loaded high, one setup sector, %zu bytes", n);
    free(b);
    struct stat st1, st2;
    stat(stub, &st1);
    dispvm_boot_stub(&cfg, stub, sizeof stub, &err);
    stat(stub, &st2);
    ok(st1.st_ino == st2.st_ino, "a stub that is right is left as it is (the same file)");
    spit(stub, "spoilt");
    ok(dispvm_boot_stub(&cfg, stub, sizeof stub, &err) == 0 && (b = slurp(stub, &n)) && n == 1536 &&
       memcmp(b + 0x202, "HdrS", 4) == 0, "a spoilt one is written again");
    free(b);
    snprintf(victim, sizeof victim, "%s/victim", base);
    spit(victim, "not a kernel\n");
    unlink(stub);
    symlink(victim, stub);
    ok(dispvm_boot_stub(&cfg, stub, sizeof stub, &err) == 0 && lstat(stub, &st1) == 0 &&
       S_ISREG(st1.st_mode), "a link in its place is replaced by the stub");
    b = slurp(victim, NULL);
    ok(b && strcmp(b, "not a kernel\n") == 0, "and the file it pointed to is untouched");
    free(b);

    umount2("/dev/shm", MNT_DETACH);
    rm_scratch(base);
    return done_testing();
}

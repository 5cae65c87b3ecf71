#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void qlog(const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qlogv(who, fmt, ap);
    va_end(ap);
}

void qlogv(const char *who, const char *fmt, va_list ap)
{
    char msg[1024], when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One line, one write: stderr is unbuffered, and the processes that
     * share a log must not interleave within a line. */
    char line[4 * sizeof msg + 128];
    FILE *m = fmemopen(line, sizeof line, "w");
    if (!m) {
        fprintf(stderr, "%s %s: %s\n", when, who, msg);
        return;
    }
    fprintf(m, "%s %s: ", when, who);
    qprint_text(m, msg);
    fputc('\n', m);
    long len = ftell(m);
    fclose(m);
    if (len > 0)
        fwrite(line, 1, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1, stderr);
    fflush(stderr);
}

int qsibling_program(const char *name, const char *env, char *out, size_t len,
                     struct qerr *err)
{
    const char *set = env ? getenv(env) : NULL;
    if (set && *set) {
        snprintf(out, len, "%s", set);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    if (n < 0)
        return qerr_errno(err, errno, "cannot find the program's directory");
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    size_t at = slash ? (size_t)(slash + 1 - out) : 0;
    if (at + strlen(name) >= len)
        return qerr_set(err, "the path of %s is too long", name);
    strcpy(out + at, name);
    return 0;
}

void qsay(FILE *f, const char *fmt, ...)
{
    if (!f)
        return;
    char *text;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    qprint_text(f, text);
    free(text);
    fputc('\n', f);
    fflush(f);
}

/* The length of the UTF-8 sequence at p when it is valid (shortest form,
 * no surrogate) and printable, else 0. */
static int printable_utf8(const unsigned char *p)
{
    int n = p[0] >= 0x20 && p[0] < 0x7f ? 1
          : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
          : p[0] >= 0xe0 && p[0] <= 0xef ? 3
          : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
        return 0;       /* C1 controls, U+0080..U+009F */
    /* Line and paragraph separators, bidi embeddings, overrides, isolates. */
    if (n == 3 && p[0] == 0xe2 && ((p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||
                                   (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)))
        return 0;
    return n;
}

void qprint_text(FILE *f, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        int n = printable_utf8(p);
        if (n > 0) {
            fwrite(p, 1, (size_t)n, f);
            p += n;
        } else {
            if (*p == '\n')
                fputs("\\n", f);
            else
                fprintf(f, "\\x%02x", *p);
            p++;
        }
    }
}

void qensure_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int null = open("/dev/null", O_RDWR);   /* the lowest free number: fd */
        if (null >= 0 && null != fd) {
            dup2(null, fd);
            close(null);
        }
    }
}

int qrun_status(char *const argv[], int *status, struct qerr *err)
{
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (r != 0)
        return qerr_errno(err, r, "cannot run %s", argv[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return qerr_errno(err, errno, "waiting for %s", argv[0]);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

int qrun_program(char *const argv[], struct qerr *err)
{
    int status;
    if (qrun_status(argv, &status, err) < 0)
        return -1;
    if (status != 0)
        return qerr_set(err, "%s failed (status %d)", argv[0], status);
    return 0;
}

/* QEMU's user, its name and groups: looked up once. */
static const struct emulator {
    uid_t uid;
    gid_t gid;
    char name[64];
    gid_t groups[64];
    int ngroups;
} *emulator(void)
{
    static struct emulator e;
    static int known;
    if (!known) {
        const char *name = getenv("QUBES_EMULATOR_USER");
        struct passwd *pw = getpwnam(name && *name ? name : "libvirt-qemu");
        snprintf(e.name, sizeof e.name, "%s", pw ? pw->pw_name : "root");
        e.uid = pw ? pw->pw_uid : 0;
        e.gid = pw ? pw->pw_gid : 0;
        e.ngroups = 64;
        if (!pw || getgrouplist(e.name, e.gid, e.groups, &e.ngroups) < 0) {
            e.groups[0] = e.gid;
            e.ngroups = 1;
        }
        known = 1;
    }
    return &e;
}

void qemulator_ids(uid_t *uid, gid_t *gid)
{
    *uid = emulator()->uid;
    *gid = emulator()->gid;
}

void qemulator_backing_label(char *out, size_t len)
{
    snprintf(out, len, "+0:+%u", (unsigned)emulator()->gid);
}

/* 0750 whatever the umask, in the emulator's group. */
int qmkdir(const char *path, struct qerr *err)
{
    if (mkdir(path, 0750) < 0)
        return qerr_errno(err, errno, "cannot create %s", path);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    uid_t u;
    gid_t g;
    qemulator_ids(&u, &g);
    int r = geteuid() == 0 && g != 0 ? fchown(fd, 0, g) : 0;
    if (r == 0)
        r = fchmod(fd, 0750);
    int e = errno;
    close(fd);
    if (r < 0) {
        rmdir(path);
        return qerr_errno(err, e, "cannot set the owner and mode of %s", path);
    }
    return 0;
}

int qemulator_reaches(const char *path, struct qerr *err)
{
    const struct emulator *q = emulator();
    if (q->uid == 0)
        return 0;
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return qerr_set(err, "path too long: %s", path);
    for (char *p = strchr(buf + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        struct stat st;
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) {
            bool in_group = false;
            for (int i = 0; i < q->ngroups; i++)
                in_group |= q->groups[i] == st.st_gid;
            mode_t bit = st.st_uid == q->uid ? S_IXUSR : in_group ? S_IXGRP : S_IXOTH;
            if (!(st.st_mode & bit)) {
                char owner[64] = "?";
                struct passwd *o = getpwuid(st.st_uid);
                if (o)
                    snprintf(owner, sizeof owner, "%s", o->pw_name);
                struct group *gr = getgrgid(st.st_gid);
                return qerr_set(err, "QEMU runs as %s, which may not enter %s (mode %03o, %s:%s): "
                                "give it search permission (chmod o+x, or its group)", q->name, buf,
                                (unsigned)(st.st_mode & 0777), owner, gr ? gr->gr_name : "?");
            }
        }
        *p = '/';
    }
    return 0;
}

int qmkdirs(const char *path, struct qerr *err)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf)
        return qerr_set(err, "path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            struct qerr e = { 0 };
            if (qmkdir(buf, &e) < 0 && e.code != EEXIST) {
                if (err)
                    *err = e;
                return -1;
            }
            *p = c;
            if (!c)
                break;
        }
    }
    return 0;
}

int qflock(const char *dir, const char *name, struct qerr *err)
{
    char path[PATH_MAX];
    if (qmkdirs(dir, err) < 0)
        return -1;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return qerr_set(err, "path too long: %s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return qerr_errno(err, e, "cannot lock %s", path);
        }
    return fd;
}

int qwrite_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

long qnow_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

char *qread_fd(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            char *bigger = realloc(buf, (cap *= 2) + 1);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    if (!buf) {
        errno = ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int qread_small(const char *path, char *out, size_t len)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    while ((n = read(fd, out, len - 1)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static int write_file(const char *path, const void *data, size_t len, unsigned mode,
                      bool durable, const char *tag, const char *value, struct qerr *err)
{
    char tmp[PATH_MAX + 16], dir[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= sizeof tmp)
        return qerr_set(err, "path too long: %s", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot create a file beside %s", path);
    int ok = fchmod(fd, (mode_t)mode) == 0 && qwrite_all(fd, data, len) == 0 &&
             (!durable || fsync(fd) == 0);
    int e = errno;
    /* Best effort: a file system without it, or a caller that may not. */
    if (ok && tag)
        (void)fsetxattr(fd, tag, value, strlen(value), 0);
    if (close(fd) < 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok || rename(tmp, path) < 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return qerr_errno(err, e, "cannot write %s", path);
    }
    if (!durable)
        return 0;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    cleanup_close int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd);
    return 0;
}

int qwrite_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                       struct qerr *err)
{
    return write_file(path, data, len, mode, true, NULL, NULL, err);
}

int qwrite_file(const char *path, const void *data, size_t len, unsigned mode, bool durable,
                struct qerr *err)
{
    return write_file(path, data, len, mode, durable, NULL, NULL, err);
}

int qwrite_file_tagged(const char *path, const void *data, size_t len, unsigned mode,
                       bool durable, const char *tag, const char *value, struct qerr *err)
{
    return write_file(path, data, len, mode, durable, tag, value, err);
}

int qwrite_runtime_file(const char *path, const char *text, struct qerr *err)
{
    return write_file(path, text, strlen(text), 0600, false, NULL, NULL, err);
}

/* Process `pid`'s threads: opendir of /proc/PID/task (NULL with errno),
 * then next_tid until it gives 0. */
static DIR *open_tasks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    return opendir(path);
}

static long next_tid(DIR *d)
{
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long tid = strtol(e->d_name, &end, 10);
        if (tid > 0 && !*end)
            return tid;
    }
    return 0;
}

int qproc_set_nice(pid_t pid, int nice)
{
    DIR *d = open_tasks(pid);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int n = 0, why = 0;
    long tid;
    while ((tid = next_tid(d)) > 0) {
        if (setpriority(PRIO_PROCESS, (id_t)tid, nice) == 0)
            n++;
        else if (errno != ESRCH && !why)
            why = errno;        /* ESRCH: that thread ended meanwhile */
    }
    closedir(d);
    if (why) {
        errno = why;
        return -1;
    }
    return n;
}

/* qread_small of /proc/PID/task/TID/NAME. */
static int task_file(pid_t pid, long tid, const char *name, char *buf, size_t size)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%ld/%s", (int)pid, tid, name);
    return qread_small(path, buf, size);
}

int qproc_threads_cpu(pid_t pid, struct qproc_cpu *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = open_tasks(pid);
    if (!d)
        return -1;
    long tid;
    while ((tid = next_tid(d)) > 0) {
        char comm[32], sched[128], stat[1024];
        /* A thread that ends meanwhile is left out. */
        if (task_file(pid, tid, "schedstat", sched, sizeof sched) < 0 ||
            task_file(pid, tid, "stat", stat, sizeof stat) < 0)
            continue;
        int cls = tid == pid ? QPROC_MAIN : QPROC_OTHER;
        if (cls == QPROC_OTHER && task_file(pid, tid, "comm", comm, sizeof comm) == 0 &&
            strncmp(comm, "CPU ", 4) == 0)
            cls = QPROC_VCPU;
        out->ns[cls] += strtoull(sched, NULL, 10);
        /* After the name (which may hold spaces and parentheses): state,
         * ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
         * majflt. */
        char *p = strrchr(stat, ')');
        unsigned long minflt = 0, majflt = 0;
        if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %lu %*u %lu", &minflt, &majflt) == 2)
            out->faults[cls] += minflt + majflt;
    }
    closedir(d);
    return 0;
}

bool qstat_same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

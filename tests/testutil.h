/* Shared by the C tests: scratch databases, child processes, lock probes. */
#ifndef QUBES_TESTUTIL_H
#define QUBES_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/db.h"
#include "tap.h"

static inline const char *fixture_path(void)
{
    const char *f = getenv("QUBES_TEST_FIXTURES");
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/qubes-r2.xml", f ? f : "../shared/fixtures");
    return buf;
}

static inline char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf)
        buf[n < cap ? n : cap - 1] = '\0';
    if (len)
        *len = n;
    return buf;
}

static inline int spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* A scratch directory holding a copy of the fixture as qubes.xml. */
static inline void scratch_db(char *dir, size_t dlen, char *db, size_t len)
{
    snprintf(dir, dlen, "%s/qubes-ctest.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(99);
    }
    snprintf(db, len, "%s/qubes.xml", dir);
    char *text = slurp(fixture_path(), NULL);
    if (!text || spit(db, text) < 0) {
        fprintf(stderr, "cannot copy the fixture %s\n", fixture_path());
        exit(99);
    }
    free(text);
}

static inline void rm_scratch(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static inline ino_t inode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static inline long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Whether some process is blocked waiting for a lock on inode `ino`
 * (a "->" line of /proc/locks). */
static inline bool lock_waiter_on(ino_t ino)
{
    FILE *f = fopen("/proc/locks", "r");
    char line[512], needle[64];
    bool found = false;
    snprintf(needle, sizeof needle, ":%lu ", (unsigned long)ino);
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "->") && strstr(line, needle))
            found = true;
    if (f)
        fclose(f);
    return found;
}

/* Waits up to `ms` for a waiter to show up on `ino`. */
static inline bool wait_for_waiter(ino_t ino, long ms)
{
    long end = now_ms() + ms;
    while (now_ms() < end) {
        if (lock_waiter_on(ino))
            return true;
        usleep(2000);
    }
    return false;
}

/* The type of lock somebody holds on `path` as seen from a new open file
 * description: F_UNLCK, F_RDLCK or F_WRLCK. */
static inline int lock_held_on(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int r = fcntl(fd, F_OFD_GETLK, &fl);
    close(fd);
    return r < 0 ? -1 : fl.l_type;
}

/* Reads one line from a pipe, with a timeout; returns length or -1. */
static inline int read_line(int fd, char *buf, size_t len, long timeout_ms)
{
    size_t n = 0;
    long end = now_ms() + timeout_ms;
    while (n + 1 < len) {
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        long left = end - now_ms();
        if (left <= 0)
            return -1;
        struct timeval tv = { left / 1000, (left % 1000) * 1000 };
        if (select(fd + 1, &set, NULL, NULL, &tv) <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    return (int)n;
}

static inline void say(int fd, const char *msg)
{
    if (write(fd, msg, strlen(msg)) < 0)
        _exit(98);
}

/* Waits for a child with a timeout; kills it when the time is up.
 * Returns the wait status, or -1 when it had to be killed. */
static inline int wait_child(pid_t pid, long timeout_ms)
{
    long end = now_ms() + timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(1000);
    }
}

#endif

#include "timing.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static struct {
    int fd;
    char who[24];
    double wall, cpu;           /* at the previous mark, ms */
    long faults;
} T = { .fd = -1 };

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* This process's CPU and that of the children it waited for. */
static double cpu_ms(void)
{
    struct rusage ru;
    double own = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    if (getrusage(RUSAGE_CHILDREN, &ru) < 0)
        return own;
    return own + (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* The page faults of the same (minor and major): in a short step they
 * are often most of its CPU, above all in a virtual machine. */
static long faults(void)
{
    struct rusage self, kids;
    long n = getrusage(RUSAGE_SELF, &self) < 0 ? 0 : self.ru_minflt + self.ru_majflt;
    if (getrusage(RUSAGE_CHILDREN, &kids) == 0)
        n += kids.ru_minflt + kids.ru_majflt;
    return n;
}

void qtime_who(const char *who)
{
    snprintf(T.who, sizeof T.who, "%s", who);
    T.cpu = cpu_ms();           /* a forked child starts with no children's time */
    T.faults = faults();
}

/* Timings to a duplicate of `fd` (-1: off), the old one closed after the
 * new one is made (fd may be the old one); `publish`: the environment
 * names it for the hypervisor backend, loaded into this process with a
 * copy of this module of its own (which reads it again before each timed
 * step, and publishes nothing). */
static void start(int fd, const char *who, bool publish)
{
    int old = T.fd;
    T.fd = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (old >= 0)
        close(old);
    qtime_who(who);
    if (publish && T.fd >= 0) {
        char num[16];
        snprintf(num, sizeof num, "%d", T.fd);
        setenv(QTIME_ENV, num, 1);
    } else if (publish) {
        unsetenv(QTIME_ENV);
    }
    T.wall = clock_ms(CLOCK_MONOTONIC);
    T.cpu = cpu_ms();
    T.faults = faults();
}

void qtime_start(int fd, const char *who)
{
    start(fd, who, true);
}

void qtime_from_env(const char *who)
{
    const char *v = getenv(QTIME_ENV);
    char *end;
    long fd = v && *v ? strtol(v, &end, 10) : -1;
    bool named = fd >= 0 && *end == '\0' && fd < 1024 && fcntl((int)fd, F_GETFD) >= 0;
    start(named ? (int)fd : -1, who, false);
}

void qtime_release(void)
{
    int old = T.fd;
    T.fd = -1;
    if (old >= 0)
        close(old);
}

bool qtime_on(void)
{
    return T.fd >= 0;
}

int qtime_fd(void)
{
    return T.fd;
}

static void line_of(const char *step, double wall, double cpu, long flt, const char *who)
{
    char buf[176];
    int n = snprintf(buf, sizeof buf, "timing: %-34s %8.1f ms wall %7.2f ms cpu %5ld faults  %s\n",
                     step, wall, cpu, flt, who);
    if (n > 0)
        (void)!write(T.fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void line(const char *step, double wall, double cpu, long flt)
{
    line_of(step, wall, cpu, flt, T.who);
}

void qtime_mark(const char *step)
{
    if (T.fd < 0)
        return;
    double wall = clock_ms(CLOCK_MONOTONIC), cpu = cpu_ms();
    long flt = faults();
    line(step, wall - T.wall, cpu - T.cpu, flt - T.faults);
    T.wall = wall;
    T.cpu = cpu;
    T.faults = flt;
}

void qtime_begin(struct qtime_step *s)
{
    if (T.fd < 0)
        return;
    s->wall = clock_ms(CLOCK_MONOTONIC);
    s->cpu = cpu_ms();
    s->faults = faults();
}

void qtime_end(const struct qtime_step *s, const char *step)
{
    if (T.fd < 0)
        return;
    line(step, clock_ms(CLOCK_MONOTONIC) - s->wall, cpu_ms() - s->cpu, faults() - s->faults);
}

void qtime_report(const char *step, double wall_ms, double cpu_ms, long flt, const char *who)
{
    if (T.fd >= 0)
        line_of(step, wall_ms, cpu_ms, flt, who);
}

/* qproc_threads_cpu: a process's threads' CPU time and page faults, by
 * class (main thread, threads named "CPU ..." as QEMU's vCPUs are, the
 * rest), as --timings reports an emulator's. Three threads of this test
 * spin for known amounts of their own CPU time and stay alive while it is
 * read. */
#include "../../orchestrator/util.h"
#include "../tap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VCPU_MS 60
#define OTHER_MS 120
#define MAIN_MS 40
#define PAGES 200

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void spin(double ms)
{
    double end = thread_cpu_ms() + ms;
    while (thread_cpu_ms() < end)
        ;
}

struct spinner {
    const char *name;
    double ms;
    int ready[2], release[2];
};

static void *spinner_main(void *arg)
{
    struct spinner *s = arg;
    pthread_setname_np(pthread_self(), s->name);
    spin(s->ms);
    char c = 0;
    (void)!write(s->ready[1], &c, 1);
    (void)!read(s->release[0], &c, 1);     /* alive until the main thread has read */
    return NULL;
}

static int start(struct spinner *s, pthread_t *t, const char *name, double ms)
{
    s->name = name;
    s->ms = ms;
    if (pipe(s->ready) < 0 || pipe(s->release) < 0)
        return -1;
    return pthread_create(t, NULL, spinner_main, s);
}

int main(void)
{
    struct spinner v, o;
    pthread_t tv, to;
    if (start(&v, &tv, "CPU 0/TEST", VCPU_MS) != 0 || start(&o, &to, "io thread", OTHER_MS) != 0) {
        ok(0, "threads started");
        return done_testing();
    }
    spin(MAIN_MS);
    char *mem = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; mem != MAP_FAILED && i < PAGES; i++)
        mem[i * 4096] = 1;
    char c;
    (void)!read(v.ready[0], &c, 1);
    (void)!read(o.ready[0], &c, 1);

    struct qproc_cpu cpu;
    int rc = qproc_threads_cpu(getpid(), &cpu);
    double ms[QPROC_CLASSES];
    for (int k = 0; k < QPROC_CLASSES; k++)
        ms[k] = (double)cpu.ns[k] / 1e6;
    ok(rc == 0, "read this process's threads");
    ok(ms[QPROC_VCPU] >= VCPU_MS && ms[QPROC_VCPU] < VCPU_MS + 40,
       "the thread named \"CPU 0/TEST\" is a vCPU: %.1f ms (spun %d)", ms[QPROC_VCPU], VCPU_MS);
    ok(ms[QPROC_OTHER] >= OTHER_MS && ms[QPROC_OTHER] < OTHER_MS + 40,
       "another thread is neither: %.1f ms (spun %d)", ms[QPROC_OTHER], OTHER_MS);
    ok(ms[QPROC_MAIN] >= MAIN_MS && ms[QPROC_MAIN] < OTHER_MS,
       "the main thread's own: %.1f ms (spun %d)", ms[QPROC_MAIN], MAIN_MS);
    ok(cpu.faults[QPROC_MAIN] >= PAGES, "the main thread's page faults: %lu (touched %d pages)",
       cpu.faults[QPROC_MAIN], PAGES);
    ok(cpu.faults[QPROC_VCPU] < PAGES, "not counted for the others: %lu, %lu",
       cpu.faults[QPROC_VCPU], cpu.faults[QPROC_OTHER]);

    (void)!write(v.release[1], &c, 1);
    (void)!write(o.release[1], &c, 1);
    pthread_join(tv, NULL);
    pthread_join(to, NULL);

    /* A process that is gone: an error saying so, no figures. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    memset(&cpu, 0xff, sizeof cpu);
    errno = 0;
    rc = qproc_threads_cpu(pid, &cpu);
    ok(rc == -1 && errno == ENOENT && cpu.ns[QPROC_MAIN] == 0, "a process that is gone: ENOENT");
    return done_testing();
}

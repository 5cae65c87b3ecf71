/* What the benchmarks on libvirt share: the clock and medians, running the
 * tools (each in the bench's CPU accounting group), a failure that cleans
 * up first, and the scratch installation with its test guest.
 *
 * Our CPU: every process the bench starts goes into a cpuacct cgroup of its
 * own (cgroup v1 `/sys/fs/cgroup/cpuacct/qubes-bench-PID`, or the unified
 * `/sys/fs/cgroup/qubes-bench-PID`), written into its cgroup.procs by the
 * forked child before exec; what the tools start (the DispVM service, its
 * workers, qrexec-daemons) inherits it, libvirtd and QEMU are not ours and
 * are not in it, and neither is the bench itself, whose polling would
 * count. Without a cgroup, our CPU is RUSAGE_CHILDREN: the tools and the
 * children they waited for only. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Names the bench in messages and where the tools are; call first. */
void bench_init(const char *name, const char *tools_dir);
/* Called by bench_die (in the bench's own process only), before it exits. */
void bench_on_failure(void (*cleanup)(void));
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A progress line on stderr (stdout holds the figures). */
void bench_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double bench_now(void);                 /* monotonic, seconds */
double bench_median(double *v, int n);  /* sorts v; n > 0 */
void bench_msleep(double ms);

/* ---- our CPU ---- */

/* Makes the cgroup; false when none can be made (RUSAGE_CHILDREN then). */
bool bench_cg_setup(void);
bool bench_cg_on(void);
/* What our CPU counts, for the output: lines after the first begin with
 * `indent`. */
const char *bench_cg_says(const char *indent);
/* CPU seconds of what the bench started so far (cgroup, or children). */
double bench_our_cpu(void);
/* How many processes are in the cgroup (0 without one). */
int bench_cg_procs(void);
/* Waits until our CPU grows by less than 1 ms in 250 ms (at most
 * `max_s`): what the bench started has settled. */
void bench_cg_settle(double max_s);
/* Busy CPU time of the machine since boot, in clock ticks (user, nice,
 * system, irq, softirq, steal), and the number of cores. */
unsigned long long bench_busy_ticks(int *cores);
/* Waits until the whole machine used under 3% of its cores in 0.5 s (at
 * most `max_s`): guests and libvirt included, not only what we started. */
void bench_machine_settle(double max_s);
/* Waits (up to 30 s) for the cgroup to empty, then removes it; says so
 * when it cannot. */
void bench_cg_remove(void);

/* In a forked child, before exec: into the cgroup. */
void bench_cg_enter(void);
/* fork() for a child whose time is measured: the child joins the cgroup
 * (unless `outside`) and returns 0 only once the parent lets it go
 * (bench_release of *go); the parent gets its pid. Joining a cgroup waits
 * for an RCU grace period when none was joined just before (8 ms on the
 * test machine): the bench's cost, kept out of the tool's time. */
pid_t bench_fork_held(bool outside, int *go);
/* Lets the child of bench_fork_held go, and closes `go`. */
void bench_release(int go);

/* ---- running programs ---- */

enum {
    BENCH_PATH = 1,         /* argv[0] is on PATH (else a tool in TOOLS-DIR) */
    BENCH_MAY_FAIL = 2,     /* return its status (else a failure ends the bench) */
    BENCH_OUTSIDE = 4,      /* not in the cgroup: the bench's own look-ups */
};
/* Runs argv with `input` (NULL: nothing) on its stdin; its stdout goes to
 * `out` (NUL-terminated, NULL: dropped), stderr is dropped. *wall gets its
 * wall time, *cpu its user+system (with the children it waited for); both
 * optional. Returns its exit status (128+N for signal N). */
int bench_exec(unsigned flags, char *const argv[], const char *input, char *out, size_t outlen,
               double *wall, double *cpu);
/* bench_exec of a tool that must succeed; returns its wall seconds. */
double bench_run(char *const argv[]);
/* The path of tool `name` in TOOLS-DIR. */
const char *bench_tool_path(const char *name, char *buf, size_t len);

/* ---- the scratch installation ---- */

struct bench_env {
    char dir[64];           /* QUBES_BASE_DIR, mode 0711 so QEMU's user passes */
    char run[80];           /* QUBES_RUN_DIR */
    char root[4200], kernel[4200];
    char tpl[32];           /* the test guest: a template HVM, 512 MiB */
    char net[32];           /* with BENCH_NETWORK=1: the NetVM, default netvm */
    bool network;
    bool run_tmpfs;         /* the run directory is a tmpfs of its own */
    const char *extra[4];   /* other VMs to stop at the end */
};

/* A new base and run directory under /tmp (`tag` in the name; the run
 * directory on a tmpfs, as /run is on a host, when it can be mounted), the NetVM
 * when BENCH_NETWORK=1 (default netvm, started) and the template of
 * GUEST-DIR/root.img and GUEST-DIR/kernel. */
void bench_env_setup(struct bench_env *e, const char *tag, const char *guest_dir);
/* Stops what runs (the DispVM service, the VMs), removes the directories,
 * the template's memory files and the cgroup. Safe to call twice. */
void bench_env_cleanup(struct bench_env *e);
/* "networking: ..." line. */
void bench_env_print(const struct bench_env *e);

#endif

/* Cold start of the test guest to agent-ready, the orchestrator's own CPU
 * time per start against the wall time spent in libvirt and QEMU, a
 * command on the running VM, and the time to kill, for a template HVM and
 * a child on its copy-on-write layer in turn. With BENCH_NETWORK=1 every
 * VM sits behind a NetVM guest (started before the first figure), with
 * its firewall chains: the same figures with networking on. DispVMs are
 * bench_dispvm's. Prints figures only.
 * Usage: bench_lifecycle TOOLS-DIR GUEST-DIR [RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

static struct bench_env E;

static void cleanup(void)
{
    bench_env_cleanup(&E);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_lifecycle TOOLS-DIR GUEST-DIR [RUNS]\n");
        return 2;
    }
    bench_init("bench_lifecycle", argv[1]);
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (runs < 1)
        bench_die("RUNS must be at least 1");
    bool cg = bench_cg_setup();
    bench_on_failure(cleanup);
    bench_env_setup(&E, "lc", argv[2]);
    char kid[32];
    snprintf(kid, sizeof kid, "bench-kid-%d", (int)getpid());
    char *mk_c[] = { "qvm-create", "-q", "-l", "red", "-H", "-t", E.tpl, kid, NULL };
    bench_run(mk_c);
    E.extra[0] = kid;
    bench_env_print(&E);

    double *start = calloc((size_t)runs, sizeof *start), *cpu = calloc((size_t)runs, sizeof *cpu);
    double *ours = calloc((size_t)runs, sizeof *ours), *echo = calloc((size_t)runs, sizeof *echo);
    double *rcpu = calloc((size_t)runs, sizeof *rcpu), *kill_t = calloc((size_t)runs, sizeof *kill_t);
    double *kcpu = calloc((size_t)runs, sizeof *kcpu);
    for (int i = 0; i < runs; i++) {
        const char *vm = i % 2 ? E.tpl : kid;     /* both kinds of disk set-up */
        char *start_argv[] = { "qvm-start", "-q", (char *)vm, NULL };
        char *run_argv[] = { "qvm-run", "-p", (char *)vm, "echo hi", NULL };
        char *kill_argv[] = { "qvm-kill", (char *)vm, NULL };
        char out[64];
        bench_cg_settle(10);
        double c0 = bench_our_cpu();
        bench_exec(0, start_argv, NULL, NULL, 0, &start[i], &cpu[i]);
        ours[i] = bench_our_cpu() - c0;
        bench_exec(0, run_argv, NULL, out, sizeof out, &echo[i], &rcpu[i]);
        if (strcmp(out, "hi\n") != 0)
            bench_die("qvm-run -p %s 'echo hi' printed \"%s\"", vm, out);
        bench_exec(0, kill_argv, NULL, NULL, 0, &kill_t[i], &kcpu[i]);
    }
    printf("cold start of the test guest to agent-ready (qvm-start), %d runs:\n", runs);
    double ms = bench_median(start, runs), mc = bench_median(cpu, runs);
    printf("  wall: median %.0f ms (min %.0f, max %.0f)\n", ms * 1e3, start[0] * 1e3,
           start[runs - 1] * 1e3);
    printf("  our CPU: qvm-start's user+system median %.1f ms", mc * 1e3);
    if (cg)
        printf(", with what it starts meanwhile\n  (the VM's qrexec-daemon; the cgroup) %.1f ms",
               bench_median(ours, runs) * 1e3);
    printf(";\n  the rest, %.0f ms, is libvirt, QEMU and the guest booting (TCG: no usable KVM "
           "here)\n", (ms - mc) * 1e3);
    printf("qvm-run -p VM 'echo hi' on the running VM: median %.1f ms (our CPU %.1f ms)\n",
           bench_median(echo, runs) * 1e3, bench_median(rcpu, runs) * 1e3);
    printf("qvm-kill: median %.0f ms (our CPU %.1f ms)\n", bench_median(kill_t, runs) * 1e3,
           bench_median(kcpu, runs) * 1e3);
    fflush(stdout);
    free(start);
    free(cpu);
    free(ours);
    free(echo);
    free(rcpu);
    free(kill_t);
    free(kcpu);
    bench_env_cleanup(&E);
    return 0;
}

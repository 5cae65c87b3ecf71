/* A VM on another host against the same VM here, side by side in one run:
 * the second host is make host2-up's daemon on this machine (TCP on
 * 127.0.0.2, another mount namespace: what travels goes through libvirt's
 * RPC as it would between machines, without a network's latency). Figures:
 * the upload of the test guest's images at qvm-create --host (MB/s of the
 * data sent), a cold start to agent-ready and a command on the running
 * VM (through qubes-channel-relay there), a kill; a DispVM request to
 * complete output from a savefile made there (qvm-create-default-dvm
 * --host) against one made here. Prints figures only.
 * Usage: bench_hosts TOOLS-DIR GUEST-DIR HOST2-UP [RUNS]   (RUNS default 5) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"

#define H2_URI "qemu+tcp://127.0.0.2:16510/system"

static struct bench_env E;
static char remote[32], remote_dvm[64];
static bool made_remote, registered, made_dvm;

static void cleanup(void)
{
    if (made_dvm) {
        /* The dvm VMs, then the template: its copies on host2 (made for
         * the dvm VM there) go with it. */
        char local_dvm[64];
        snprintf(local_dvm, sizeof local_dvm, "%s-dvm", E.tpl);
        char *stop[] = { "qubes-dvmd", "--stop", NULL };
        char *rm_remote[] = { "qvm-remove", "-q", remote_dvm, NULL };
        char *rm_local[] = { "qvm-remove", "-q", local_dvm, NULL };
        char *rm_tpl[] = { "qvm-remove", "-q", E.tpl, NULL };
        bench_exec(BENCH_MAY_FAIL, stop, NULL, NULL, 0, NULL, NULL);
        bench_exec(BENCH_MAY_FAIL, rm_remote, NULL, NULL, 0, NULL, NULL);
        bench_exec(BENCH_MAY_FAIL, rm_local, NULL, NULL, 0, NULL, NULL);
        bench_exec(BENCH_MAY_FAIL, rm_tpl, NULL, NULL, 0, NULL, NULL);
        made_dvm = false;
    }
    if (made_remote) {
        char *kill_argv[] = { "qvm-kill", remote, NULL };
        char *rm_argv[] = { "qvm-remove", "-q", remote, NULL };
        bench_exec(BENCH_MAY_FAIL, kill_argv, NULL, NULL, 0, NULL, NULL);
        bench_exec(BENCH_MAY_FAIL, rm_argv, NULL, NULL, 0, NULL, NULL);
        made_remote = false;
    }
    if (registered) {
        char *unreg[] = { "qvm-host", "-q", "remove", "bench-h2", NULL };
        bench_exec(BENCH_MAY_FAIL, unreg, NULL, NULL, 0, NULL, NULL);
        registered = false;
    }
    bench_env_cleanup(&E);
}

/* Data bytes of a file (its allocated blocks: what a sparse upload
 * sends), and its size. */
static double data_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_blocks * 512 : 0;
}

static double size_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

struct figures {
    double start, echo, kill;
};

static void measure(const char *vm, int runs, struct figures *f)
{
    double *start = calloc((size_t)runs, sizeof *start), *echo = calloc((size_t)runs, sizeof *echo);
    double *kill_t = calloc((size_t)runs, sizeof *kill_t);
    if (!start || !echo || !kill_t)
        bench_die("out of memory");
    for (int i = 0; i < runs; i++) {
        char *start_argv[] = { "qvm-start", "-q", (char *)vm, NULL };
        char *run_argv[] = { "qvm-run", "-p", (char *)vm, "echo hi", NULL };
        char *kill_argv[] = { "qvm-kill", (char *)vm, NULL };
        char out[64];
        bench_exec(0, start_argv, NULL, NULL, 0, &start[i], NULL);
        double e[5];
        for (int k = 0; k < 5; k++) {
            bench_exec(0, run_argv, NULL, out, sizeof out, &e[k], NULL);
            if (strcmp(out, "hi\n") != 0)
                bench_die("qvm-run -p %s 'echo hi' printed \"%s\"", vm, out);
        }
        echo[i] = bench_median(e, 5);
        bench_exec(0, kill_argv, NULL, NULL, 0, &kill_t[i], NULL);
    }
    f->start = bench_median(start, runs);
    f->echo = bench_median(echo, runs);
    f->kill = bench_median(kill_t, runs);
    free(start);
    free(echo);
    free(kill_t);
}

/* Median wall time of `runs` DispVM requests on `host` ("local" or a
 * registered host) running `echo hi`, to the end of its output. */
static double dispvm_requests(const char *tpl, const char *host, int runs)
{
    double *t = calloc((size_t)runs + 1, sizeof *t);
    if (!t)
        bench_die("out of memory");
    char *argv[] = { "qfile-daemon-dvm", "-q", "--host", (char *)host, "-t", (char *)tpl,
                     "qubes.VMShell", "dom0", "DEFAULT", NULL };
    for (int i = 0; i <= runs; i++) {      /* the first warms the service up */
        char out[64];
        bench_exec(0, argv, "echo hi\n", out, sizeof out, &t[i], NULL);
        if (strcmp(out, "hi\n") != 0)
            bench_die("a DispVM on %s printed \"%s\"", host, out);
    }
    double m = bench_median(t + 1, runs);
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: bench_hosts TOOLS-DIR GUEST-DIR HOST2-UP [RUNS]\n");
        return 2;
    }
    bench_init("bench_hosts", argv[1]);
    int runs = argc > 4 ? atoi(argv[4]) : 5;
    if (runs < 1)
        bench_die("RUNS must be at least 1");
    char *up[] = { argv[3], NULL };
    if (bench_exec(BENCH_PATH | BENCH_MAY_FAIL | BENCH_OUTSIDE, up, NULL, NULL, 0, NULL, NULL) != 0)
        bench_die("%s failed: no second host", argv[3]);
    bench_on_failure(cleanup);
    bench_env_setup(&E, "hosts", argv[2]);
    char *reg[] = { "qvm-host", "-q", "add", "bench-h2", H2_URI, NULL };
    bench_run(reg);
    registered = true;

    char kernel_dir[4200];
    snprintf(kernel_dir, sizeof kernel_dir, "%s", E.kernel);
    snprintf(remote, sizeof remote, "bench-rt-%d", (int)getpid());
    char *mk[] = { "qvm-create", "-q", "-l", "red", "--hvm-template", "--host", "bench-h2",
                   "-r", E.root, "--kernel", kernel_dir, remote, NULL };
    double t0 = bench_now();
    bench_run(mk);
    double upload = bench_now() - t0;
    made_remote = true;
    char vmlinuz[4300], initrd[4300];
    snprintf(vmlinuz, sizeof vmlinuz, "%s/vmlinuz", kernel_dir);
    snprintf(initrd, sizeof initrd, "%s/initramfs", kernel_dir);
    double bytes = data_bytes(E.root) + data_bytes(vmlinuz) + data_bytes(initrd);
    double size = size_bytes(E.root) + size_bytes(vmlinuz) + size_bytes(initrd);

    printf("A VM on another host (%s, make host2-up: this machine, another mount namespace,\n"
           "TCP on 127.0.0.2) against the same guest here; %d runs each, medians\n", H2_URI, runs);
    bench_env_print(&E);
    printf("\nqvm-create --host: the test guest's images uploaded (sparse: %.1f MiB of data in "
           "%.0f MiB\nof images) in %.2f s: %.0f MB/s of data, with the pool's set-up and the "
           "record\n", bytes / 1048576, size / 1048576, upload, bytes / upload / 1e6);
    fflush(stdout);

    bench_say("here");
    struct figures here, there;
    measure(E.tpl, runs, &here);
    bench_say("on host2");
    measure(remote, runs, &there);
    printf("\n%-48s %10s %10s %8s\n", "", "here", "host2", "host2/here");
    printf("%-48s %7.0f ms %7.0f ms %8.2f\n", "cold start to agent-ready (qvm-start)",
           here.start * 1e3, there.start * 1e3, there.start / here.start);
    printf("%-48s %7.1f ms %7.1f ms %8.2f\n", "qvm-run -p VM 'echo hi' on the running VM",
           here.echo * 1e3, there.echo * 1e3, there.echo / here.echo);
    printf("%-48s %7.0f ms %7.0f ms %8.2f\n", "qvm-kill", here.kill * 1e3, there.kill * 1e3,
           there.kill / here.kill);
    printf("(on host2 the agent's channel goes through libvirt's channel stream and\n"
           "qubes-channel-relay; a start there also asks the host first and holds its lock)\n");
    fflush(stdout);

    /* DispVMs: a savefile here and one on host2, of the same template. */
    bench_say("DispVM savefiles, here and on host2");
    char *prep_here[] = { "qvm-create-default-dvm", "-q", E.tpl, NULL };
    char *prep_there[] = { "qvm-create-default-dvm", "-q", "--host", "bench-h2", E.tpl, NULL };
    double prep_h = bench_run(prep_here);
    snprintf(remote_dvm, sizeof remote_dvm, "%s-dvm-bench-h2", E.tpl);
    made_dvm = true;
    double prep_t = bench_run(prep_there);
    bench_say("DispVM requests here");
    double dh = dispvm_requests(E.tpl, "local", runs);
    bench_say("DispVM requests on host2");
    double dt = dispvm_requests(E.tpl, "bench-h2", runs);
    printf("\n%-48s %7.1f s  %7.1f s  %8.2f\n", "qvm-create-default-dvm (boot, save)", prep_h,
           prep_t, prep_t / prep_h);
    printf("%-48s %7.0f ms %7.0f ms %8.2f\n", "DispVM request to output (qfile-daemon-dvm)",
           dh * 1e3, dt * 1e3, dt / dh);
    printf("(here: the savefile as dispvm-memory chose, shared memory where it can; on host2:\n"
           "a full memory image, copied there per DispVM and its header rewritten in place)\n");
    cleanup();
    return 0;
}

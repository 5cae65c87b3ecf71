/* qrexec-daemon-db: the database work of a VM's qrexec-daemon, a program
 * of its own so that the daemon loads no XML parser (qrexec/daemon.h says
 * how it is run and what it answers). Its caller is the daemon, root's;
 * qubes.xml and the firewall files are read as any tool reads them. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../../orchestrator/firewall.h"
#include "../../orchestrator/qubes.h"
#include "../../orchestrator/vmguard.h"
#include "../daemon.h"

static int usage(void)
{
    fprintf(stderr, "usage: %s known -- NAME | firewall -- NAME [apply]\n"
            "(the database work of qrexec-daemon, which runs it)\n", QREXECD_DB);
    return 2;
}

static int known(const char *name)
{
    struct qubes q;
    struct qerr err;
    int rc = qubes_open(&q, true, &err);
    if (rc == 0)
        rc = qubes_load_for_reading(&q, &err);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", QREXECD_DB, err.msg);
        qubes_close(&q);
        return 2;
    }
    rc = qubes_find_vm(&q, name, &err) ? 0 : 1;
    qubes_close(&q);
    return rc;
}

/* The VM's firewall file and its rules' earliest expiry; with `apply`, its
 * chains installed again first. */
static int firewall(const char *name, bool apply)
{
    struct qubes q;
    struct qerr err;
    char path[PATH_MAX];
    long long next = 0;
    int rc = qubes_open(&q, false, &err);
    if (rc == 0)
        rc = apply ? qubes_load_for_writing(&q, false, &err) : qubes_load_for_reading(&q, &err);
    struct qvm *vm = rc == 0 ? qubes_find_vm(&q, name, &err) : NULL;
    if (rc == 0 && !vm)
        rc = -1;
    if (rc == 0)
        rc = qfw_path(&q, vm, path, sizeof path, &err);
    if (rc == 0)
        rc = apply ? vmguard_up_next(&q, vm, &next, &err) : vmguard_next_expire(&q, vm, &next, &err);
    if (apply)
        qubes_unlock(&q);
    qubes_close(&q);
    /* One line, one write: the daemon reads it to its end. */
    char line[sizeof path + sizeof err.msg + 32];
    if (rc == 0)
        snprintf(line, sizeof line, "0 %lld %s\n", next, path);
    else
        snprintf(line, sizeof line, "-1 %s\n", err.msg);
    for (char *c = line; *c && c[1]; c++)      /* one line, whatever a message holds */
        if (*c == '\n')
            *c = ' ';
    fputs(line, stdout);
    return fflush(stdout) == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "known") == 0 && strcmp(argv[2], "--") == 0)
        return known(argv[3]);
    if (argc >= 4 && strcmp(argv[1], "firewall") == 0 && strcmp(argv[2], "--") == 0 &&
        (argc == 4 || (argc == 5 && strcmp(argv[4], "apply") == 0)))
        return firewall(argv[3], argc == 5);
    return usage();
}

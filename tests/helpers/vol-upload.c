/* Drives the storage of a backend (vmm.h: pools and volumes) for the tests
 * of remote hosts, before the tools use it:
 *   vol-upload URI POOL PATH NAME FILE      the pool (made when missing),
 *                                           then FILE as the new volume NAME
 *   vol-upload URI POOL PATH NAME --empty SIZE
 *   vol-upload URI POOL PATH NAME --delete
 * Prints "sent BYTES MS" (the data bytes that travelled, the wall time) on
 * success; the error on standard error, status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../orchestrator/config.h"
#include "../../orchestrator/util.h"
#include "../../orchestrator/vmm.h"

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: vol-upload URI POOL PATH NAME FILE | --empty SIZE | --delete\n");
        return 2;
    }
    struct qubes_config cfg;
    struct qerr err;
    if (qubes_config_init(&cfg, &err) < 0) {
        fprintf(stderr, "vol-upload: %s\n", err.msg);
        return 1;
    }
    snprintf(cfg.vmm_uri, sizeof cfg.vmm_uri, "%s", argv[1]);
    cfg.offline = false;
    struct vmm vmm;
    vmm_init(&vmm, &cfg);
    unsigned long long sent = 0, size = 0;
    long t0 = qnow_ms();
    int rc;
    if (strcmp(argv[5], "--delete") == 0) {
        rc = vmm_volume_delete(&vmm, argv[2], argv[4], &err);
    } else if (strcmp(argv[5], "--empty") == 0 && argc == 7) {
        size = strtoull(argv[6], NULL, 10);
        rc = vmm_pool_ensure(&vmm, argv[2], argv[3], &err);
        if (rc == 0)
            rc = vmm_volume_upload(&vmm, argv[2], argv[4], NULL, size, &sent, &err);
    } else {
        struct stat st;
        if (stat(argv[5], &st) < 0) {
            perror(argv[5]);
            return 1;
        }
        rc = vmm_pool_ensure(&vmm, argv[2], argv[3], &err);
        if (rc == 0)
            rc = vmm_volume_upload(&vmm, argv[2], argv[4], argv[5], (unsigned long long)st.st_size,
                                   &sent, &err);
    }
    vmm_close(&vmm);
    if (rc < 0) {
        fprintf(stderr, "vol-upload: %s\n", err.msg);
        return 1;
    }
    printf("sent %llu %ld\n", sent, qnow_ms() - t0);
    return 0;
}

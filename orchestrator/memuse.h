/* The memory of a running VM's emulator process, from /proc/PID/smaps:
 * its PSS, the part private to it, and the part of a DispVM template's RAM
 * file (in QRT_SHM_DIR) it shares, mapped and not yet copied. */
#ifndef QUBES_MEMUSE_H
#define QUBES_MEMUSE_H

#include <stdbool.h>

struct qvm_memuse {
    unsigned long pss_kib, private_kib, shared_kib;
    bool maps_ram_file;         /* it maps a RAM file of the shared-memory directory */
};

/* -1 when the process's smaps cannot be read. */
int qvm_memuse(int pid, struct qvm_memuse *out);

#endif

#include "memuse.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"

int qvm_memuse(int pid, struct qvm_memuse *out)
{
    memset(out, 0, sizeof *out);
    char path[64], line[PATH_MAX + 128];
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    bool in_ram = false;
    unsigned long v, ram_rss = 0, ram_anon = 0;
    while (fgets(line, sizeof line, f)) {
        char name[32];
        if (sscanf(line, "%31[A-Za-z_]: %lu kB", name, &v) != 2) {
            /* A mapping's header line: is it a RAM file of ours? */
            in_ram = strstr(line, QRT_SHM_DIR "/") && strstr(line, ".ram");
            out->maps_ram_file |= in_ram;
            continue;
        }
        if (strcmp(name, "Pss") == 0)
            out->pss_kib += v;
        else if (strcmp(name, "Private_Dirty") == 0 || strcmp(name, "Private_Clean") == 0)
            out->private_kib += in_ram ? 0 : v;
        else if (in_ram && strcmp(name, "Rss") == 0)
            ram_rss += v;
        else if (in_ram && strcmp(name, "Anonymous") == 0)
            ram_anon += v;
    }
    fclose(f);
    /* In the RAM file's private mapping, copied pages are anonymous; the
     * others are the template's, shared. */
    out->private_kib += ram_anon;
    out->shared_kib = ram_rss - ram_anon;
    return 0;
}

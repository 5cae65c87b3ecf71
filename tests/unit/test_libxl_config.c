/* The libxl backend's translation of a VM's description into a libxl
 * domain configuration, compared as libxl's own JSON with the reviewed
 * files in tests/libxl/. Needs no Xen: neither the translation nor
 * libxl_domain_config_to_json uses a libxl context.
 *
 * Usage: test_libxl_config EXPECTED_DIR [OUT_DIR]; with OUT_DIR, what was
 * produced is written there too (NAME.json), for a diff. */
#include "../../orchestrator/libxl_config.h"
#include "../tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *expected_dir, *out_dir;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int c;
    while (m && (c = fgetc(f)) != EOF)
        fputc(c, m);
    fclose(f);
    if (m)
        fclose(m);
    return buf;
}

/* Translates `s` and compares its JSON (plus a final newline) with NAME.json. */
static void check_json(const char *name, const struct domain_spec *s, const char *what)
{
    libxl_domain_config c;
    struct qerr err = { 0 };
    libxl_domain_config_init(&c);
    int rc = qxl_config_from_spec(s, &c, &err);
    if (!ok(rc == 0, "%s: translated (%s)", name, rc ? err.msg : "no error")) {
        libxl_domain_config_dispose(&c);
        return;
    }
    /* Destroy is also libxl's default, which its JSON leaves out. */
    ok(c.on_poweroff == LIBXL_ACTION_ON_SHUTDOWN_DESTROY &&
       c.on_reboot == LIBXL_ACTION_ON_SHUTDOWN_DESTROY &&
       c.on_crash == LIBXL_ACTION_ON_SHUTDOWN_DESTROY,
       "%s: poweroff, reboot and crash destroy the domain", name);
    char *json = libxl_domain_config_to_json(NULL, &c);
    libxl_domain_config_dispose(&c);
    if (!ok(json != NULL, "%s: libxl renders it as JSON without a context", name))
        return;
    char path[4096];
    if (out_dir) {
        snprintf(path, sizeof path, "%s/%s.json", out_dir, name);
        FILE *f = fopen(path, "we");
        if (f) {
            fprintf(f, "%s\n", json);
            fclose(f);
        }
    }
    snprintf(path, sizeof path, "%s/%s.json", expected_dir, name);
    char *want = slurp(path);
    size_t n = strlen(json);
    int same = want && strncmp(want, json, n) == 0 && strcmp(want + n, "\n") == 0;
    ok(same, "%s: %s (as %s)", name, what, path);
    if (!want)
        diag("cannot read %s: %s", path, strerror(errno));
    free(want);
    free(json);
}

static void check_error(const char *name, const struct domain_spec *s, const char *needle)
{
    libxl_domain_config c;
    struct qerr err = { 0 };
    libxl_domain_config_init(&c);
    int rc = qxl_config_from_spec(s, &c, &err);
    libxl_domain_config_dispose(&c);
    ok(rc < 0 && strstr(err.msg, needle), "%s: refused, naming '%s' (%s)", name, needle,
       rc < 0 ? err.msg : "accepted");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXPECTED_DIR [OUT_DIR]\n", argv[0]);
        return 2;
    }
    expected_dir = argv[1];
    out_dir = argc > 2 ? argv[2] : NULL;

    /* A template HVM: its own raw root, direct kernel boot. */
    struct domain_spec tpl = {
        .name = "tpl",
        .uuid = "6f1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
        .type = "qemu",
        .memory_mib = 512, .maxmem_mib = 512, .vcpus = 2,
        .kernel = "/var/lib/qubes/vm-templates/tpl/kernel/vmlinuz",
        .initrd = "/var/lib/qubes/vm-templates/tpl/kernel/initramfs",
        .cmdline = "console=ttyS0 root=/dev/vda rw quiet qubes.name=tpl nopat",
        .disks = { { "/var/lib/qubes/vm-templates/tpl/root.img", "raw", false },
                   { "/var/lib/qubes/vm-templates/tpl/private.img", "raw", false } },
        .ndisks = 2,
        .serial_log = "/var/lib/qubes/vm-templates/tpl/console.log",
        .agent_socket = "/run/qubes/vms/tpl/agent.sock",
    };
    check_json("template", &tpl,
               "HVM, qemu-xen, 512 MiB, 2 vCPUs, kernel/ramdisk/cmdline, raw xvda/xvdb, "
               "serial to a file, agent channel on a socket");

    /* A child of it: a qcow2 layer over the template's root, its own
     * private image, a NIC on a bridge; the template's kernel. */
    struct domain_spec child = {
        .name = "work",
        .uuid = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9",
        .type = "qemu",
        .memory_mib = 800, .maxmem_mib = 800, .vcpus = 1,
        .kernel = "/var/lib/qubes/vm-templates/tpl/kernel/vmlinuz",
        .cmdline = "console=ttyS0 root=/dev/vda rw quiet qubes.name=work "
                   "qubes.ip=10.137.2.5 nopat",
        .disks = { { "/var/lib/qubes/appvms/work/volatile.img", "qcow2", false },
                   { "/var/lib/qubes/appvms/work/private.img", "raw", false } },
        .ndisks = 2,
        .serial_log = "/var/lib/qubes/appvms/work/console.log",
        .agent_socket = "/run/qubes/vms/work/agent.sock",
        .nics = { { "00:16:3E:5E:6C:05", "qbr-fw1", NULL } },
        .nnics = 1,
    };
    check_json("child", &child,
               "qcow2 root layer and raw private image, e1000 NIC with its MAC on its bridge, "
               "no ramdisk");

    /* No kernel: the firmware boots the disk. More maxmem than memory. */
    struct domain_spec bare = {
        .name = "standalone",
        .type = "kvm",
        .memory_mib = 400, .maxmem_mib = 1000, .vcpus = 3,
        .disks = { { "/srv/standalone/root.img", "raw", false } },
        .ndisks = 1,
    };
    check_json("nokernel", &bare,
               "no kernel, ramdisk or cmdline; max 1000 MiB, target 400; 3 vCPUs; no UUID, "
               "serial or channel");

    /* A read-only disk goes past the emulated ones. */
    struct domain_spec ro = {
        .name = "ro",
        .memory_mib = 256, .maxmem_mib = 256, .vcpus = 1,
        .disks = { { "/srv/ro/root.img", "raw", false }, { "/srv/ro/data.img", "raw", true } },
        .ndisks = 2,
    };
    check_json("readonly", &ro, "a read-only disk is xvdf, PV only, readwrite 0");

    struct domain_spec shm = tpl;
    shm.mem_file = "/dev/shm/qubes/tpl.ram";
    check_error("mem_file", &shm, "/dev/shm/qubes/tpl.ram");
    check_error("mem_file", &shm, "libvirt");

    struct domain_spec bad = child;
    bad.nics[0].mac = "00:16:3e:5e:6c";
    check_error("bad MAC", &bad, "00:16:3e:5e:6c");
    bad = child;
    bad.uuid = "not-a-uuid";
    check_error("bad UUID", &bad, "not-a-uuid");
    bad = child;
    bad.disks[1].format = "vmdk";
    check_error("unknown disk format", &bad, "vmdk");
    bad = child;
    bad.vcpus = 0;
    check_error("no vCPU", &bad, "0 vCPUs");
    return done_testing();
}

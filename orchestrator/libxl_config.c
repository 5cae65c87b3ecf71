#include "libxl_config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxl_utils.h>

/* The first disk index qemu-xen does not also emulate as an IDE disk
 * (it emulates xvda..xvdd). */
#define QXL_FIRST_PV_ONLY_DISK 4

/* Every string the configuration holds is freed by its dispose function. */
static int dup_into(char **dst, const char *src, struct qerr *err)
{
    if (!src) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(src);
    return *dst ? 0 : qerr_errno(err, ENOMEM, "libxl configuration");
}

static int parse_mac(const char *text, libxl_mac mac)
{
    unsigned v[6];
    int end = -1;
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &end) != 6 || end != 17 || text[end] != '\0')
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

/* libxl_bitmap_alloc wants a context (it allocates through it); the
 * bitmap's dispose only frees `map`, so a calloc'ed one is the same thing. */
static int vcpu_bitmap(libxl_bitmap *b, long vcpus, struct qerr *err)
{
    b->size = (uint32_t)((vcpus + 7) / 8);
    b->map = calloc(b->size, 1);
    if (!b->map)
        return qerr_errno(err, ENOMEM, "libxl configuration");
    for (long i = 0; i < vcpus; i++)
        b->map[i / 8] |= (uint8_t)(1u << (i % 8));
    return 0;
}

static int add_disks(const struct domain_spec *s, libxl_domain_config *c, struct qerr *err)
{
    if (s->ndisks < 0 || s->ndisks > DOMAIN_MAX_DISKS)
        return qerr_set(err, "'%s': %d disks (at most %d)", s->name, s->ndisks, DOMAIN_MAX_DISKS);
    if (s->ndisks == 0)
        return 0;
    c->disks = calloc((size_t)s->ndisks, sizeof *c->disks);
    if (!c->disks)
        return qerr_errno(err, ENOMEM, "libxl configuration");
    for (int i = 0; i < s->ndisks; i++) {
        const struct domain_disk *d = &s->disks[i];
        libxl_device_disk *x = &c->disks[i];
        libxl_device_disk_init(x);
        c->num_disks = i + 1;
        if (!d->path || !d->format)
            return qerr_set(err, "'%s': disk %d has no path or format", s->name, i);
        if (strcmp(d->format, "raw") == 0)
            x->format = LIBXL_DISK_FORMAT_RAW;
        else if (strcmp(d->format, "qcow2") == 0)
            x->format = LIBXL_DISK_FORMAT_QCOW2;
        else
            return qerr_set(err, "'%s': disk %s has format '%s' (the libxl backend takes raw "
                            "or qcow2)", s->name, d->path, d->format);
        /* qemu-xen refuses a read-only disk it emulates as IDE, and it
         * emulates the first four; a read-only disk is therefore placed
         * past them, seen by the guest's PV block driver only. */
        char vdev[8];
        snprintf(vdev, sizeof vdev, "xvd%c",
                 'a' + i + (d->readonly ? QXL_FIRST_PV_ONLY_DISK : 0));
        if (dup_into(&x->pdev_path, d->path, err) < 0 || dup_into(&x->vdev, vdev, err) < 0)
            return -1;
        /* QEMU in dom0 serves every disk: it is the only backend that
         * reads qcow2, and a template child's root is a qcow2 layer. */
        x->backend = LIBXL_DISK_BACKEND_QDISK;
        x->readwrite = !d->readonly;
    }
    return 0;
}

static int add_nics(const struct domain_spec *s, libxl_domain_config *c, struct qerr *err)
{
    if (s->nnics <= 0)
        return 0;
    c->nics = calloc((size_t)s->nnics, sizeof *c->nics);
    if (!c->nics)
        return qerr_errno(err, ENOMEM, "libxl configuration");
    for (int i = 0; i < s->nnics && i < DOMAIN_MAX_NICS; i++) {
        const struct domain_nic *d = &s->nics[i];
        libxl_device_nic *n = &c->nics[i];
        libxl_device_nic_init(n);
        c->num_nics = i + 1;
        if (parse_mac(d->mac, n->mac) < 0)
            return qerr_set(err, "'%s': bad MAC address '%s'", s->name, d->mac);
        /* An emulated e1000 for firmware and guests without Xen drivers, and
         * the PV interface beside it: a Linux guest unplugs the emulated one
         * at boot and uses netfront. qemu-xen's HVM machine has no virtio-net
         * in the NIC models libxl accepts on every version. The network's
         * bridge has its name. */
        n->nictype = LIBXL_NIC_TYPE_VIF_IOEMU;
        if (dup_into(&n->model, "e1000", err) < 0 || dup_into(&n->bridge, d->network, err) < 0 ||
            (d->ifname && dup_into(&n->ifname, d->ifname, err) < 0))
            return -1;
    }
    return 0;
}

static int add_channel(const struct domain_spec *s, libxl_domain_config *c, struct qerr *err)
{
    if (!s->agent_socket)
        return 0;
    c->channels = calloc(1, sizeof *c->channels);
    if (!c->channels)
        return qerr_errno(err, ENOMEM, "libxl configuration");
    libxl_device_channel *ch = &c->channels[0];
    libxl_device_channel_init(ch);
    c->num_channels = 1;
    /* A PV console in the guest, named like the libvirt backend's
     * virtio-serial port; xenconsoled listens on the socket for us. */
    libxl_device_channel_init_connection(ch, LIBXL_CHANNEL_CONNECTION_SOCKET);
    if (dup_into(&ch->name, QXL_AGENT_CHANNEL, err) < 0 ||
        dup_into(&ch->u.socket.path, s->agent_socket, err) < 0)
        return -1;
    return 0;
}

int qxl_config_from_spec(const struct domain_spec *s, libxl_domain_config *c, struct qerr *err)
{
    if (!s->name || !*s->name)
        return qerr_set(err, "a domain needs a name");
    /* Mapping guest RAM from a file of ours is a QEMU command-line option
     * that only the libvirt backend passes; Xen owns an HVM's memory. */
    if (s->mem_file)
        return qerr_set(err, "'%s': memory file %s: shared-memory DispVMs need the libvirt "
                        "backend (QEMU); the libxl backend cannot map guest RAM from a file",
                        s->name, s->mem_file);
    if (s->memory_mib <= 0 || s->vcpus <= 0 || s->vcpus > 4096)
        return qerr_set(err, "'%s': %ld MiB and %ld vCPUs is not a domain", s->name,
                        s->memory_mib, s->vcpus);

    libxl_domain_create_info *ci = &c->c_info;
    ci->type = LIBXL_DOMAIN_TYPE_HVM;
    if (dup_into(&ci->name, s->name, err) < 0)
        return -1;
    if (s->uuid && libxl_uuid_from_string(&ci->uuid, s->uuid) != 0)
        return qerr_set(err, "'%s': bad UUID '%s'", s->name, s->uuid);

    libxl_domain_build_info *b = &c->b_info;
    libxl_domain_build_info_init_type(b, LIBXL_DOMAIN_TYPE_HVM);
    long maxmem = s->maxmem_mib > s->memory_mib ? s->maxmem_mib : s->memory_mib;
    b->max_memkb = (uint64_t)maxmem * 1024;
    b->target_memkb = (uint64_t)s->memory_mib * 1024;
    b->max_vcpus = (int)s->vcpus;
    if (vcpu_bitmap(&b->avail_vcpus, s->vcpus, err) < 0)
        return -1;
    b->device_model_version = LIBXL_DEVICE_MODEL_VERSION_QEMU_XEN;
    if (s->kernel && (dup_into(&b->kernel, s->kernel, err) < 0 ||
                      dup_into(&b->ramdisk, s->initrd, err) < 0 ||
                      dup_into(&b->cmdline, s->cmdline, err) < 0))
        return -1;
    /* Headless, as the libvirt backend's domains: no display, no VGA. */
    libxl_defbool_set(&b->u.hvm.nographic, true);
    libxl_defbool_set(&b->u.hvm.vnc.enable, false);
    libxl_defbool_set(&b->u.hvm.sdl.enable, false);
    b->u.hvm.vga.kind = LIBXL_VGA_INTERFACE_TYPE_NONE;
    if (s->serial_log) {
        b->u.hvm.serial_list = calloc(2, sizeof *b->u.hvm.serial_list);
        if (!b->u.hvm.serial_list ||
            asprintf(&b->u.hvm.serial_list[0], "file:%s", s->serial_log) < 0) {
            if (b->u.hvm.serial_list)
                b->u.hvm.serial_list[0] = NULL;
            return qerr_errno(err, ENOMEM, "libxl configuration");
        }
    }

    if (add_disks(s, c, err) < 0 || add_nics(s, c, err) < 0 || add_channel(s, c, err) < 0)
        return -1;

    /* A VM that stops, for whatever reason, is gone: the next start
     * begins from its record again. */
    c->on_poweroff = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
    c->on_reboot = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
    c->on_watchdog = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
    c->on_crash = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
    return 0;
}

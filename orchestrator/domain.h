/* A VM's libvirt domain description, built with libxml2 from what the VM
 * record and its files say. */
#ifndef QUBES_DOMAIN_H
#define QUBES_DOMAIN_H

#include <stdbool.h>

#include "error.h"

#define DOMAIN_MAX_DISKS 4
#define DOMAIN_MAX_NICS 2
/* PCIe root ports a domain gets beyond what its devices take, for disks
 * hot-plugged later (libvirt itself leaves one). */
#define DOMAIN_HOTPLUG_PORTS 3

struct domain_disk {
    const char *path;
    const char *format;         /* "raw" or "qcow2" */
    bool readonly;
    /* A layer's raw backing file, named here with the DAC label libvirt
     * gives it (backing_label, "+UID:+GID") and the chain ended: libvirt
     * reads no header of the layer. NULL: libvirt reads the chain. */
    const char *backing, *backing_label;
};

/* A virtio NIC on one of our networks (a bridge of the same name, with no
 * address of the host on it). */
struct domain_nic {
    const char *mac;
    const char *network;
    const char *ifname;         /* the host side's device; NULL: the hypervisor's choice */
};

struct domain_spec {
    const char *name;
    const char *uuid;
    const char *type;           /* "qemu" (TCG) or "kvm" */
    long memory_mib, maxmem_mib, vcpus;
    const char *kernel, *initrd, *cmdline;  /* direct kernel boot when kernel is set */
    struct domain_disk disks[DOMAIN_MAX_DISKS];
    int ndisks;
    const char *serial_log;     /* the guest's console, appended to */
    const char *agent_socket;   /* the agent's virtio-serial port, a unix socket */
    bool agent_socket_auto;     /* the port's socket where the hypervisor's host
                                   puts channels (a VM on another host: reached
                                   by channel streams, qubes-channel-relay) */
    struct domain_nic nics[DOMAIN_MAX_NICS];    /* in this order: eth0, eth1 */
    int nnics;
    /* Guest RAM in this file (on tmpfs) instead of anonymous memory, mapped
     * shared (the guest's writes go to the file: a DispVM template) or
     * private (copy-on-write over it: a DispVM). QEMU only: passed through
     * <qemu:commandline>, since libvirt's own file-backed memory lives in
     * files it names and removes. */
    const char *mem_file;
    bool mem_shared;
};

/* The QEMU arguments of a memory file, as domain_xml() writes them:
 * "memory-backend-file,id=qubes.ram,size=BYTES,mem-path=PATH,share=on|off". */
#define DOMAIN_RAM_ID "qubes.ram"


/* One <disk> element as the domain XML and hot-plugging write it: a file or
 * a block device, virtio, the given format (raw or qcow2), optionally
 * read-only and with a libvirt alias. */
struct domain_disk_el {
    bool block;
    const char *format, *source, *target;
    bool readonly;
    const char *alias;          /* NULL: none */
    const char *backing, *backing_label;    /* as in struct domain_disk */
};
struct _xmlTextWriter;          /* libxml2's xmlTextWriter */
int domain_write_disk(struct _xmlTextWriter *w, const struct domain_disk_el *d);

/* A malloc'ed <domain> document, or NULL with err. */
char *domain_xml(const struct domain_spec *s, struct qerr *err);

/* The domain type to use: QUBES_VMM_DOMAIN_TYPE (qemu, kvm or auto), "qemu"
 * by default. auto picks kvm when /dev/kvm can create a VM. */
const char *domain_type(void);

#endif

#include "domain.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libxml/xmlwriter.h>

#include "xmlfile.h"

const char *domain_type(void)
{
    const char *t = getenv("QUBES_VMM_DOMAIN_TYPE");
    if (!t || !*t || strcmp(t, "qemu") == 0)
        return "qemu";
    if (strcmp(t, "kvm") == 0)
        return "kvm";
    /* auto: a VM that can be created. (A host may still fail later, as
     * QEMU's CPU setup does on some nested hosts: then configure qemu.) */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int ok = kvm >= 0 && ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
    if (ok) {
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        ok = vm >= 0;
        if (vm >= 0)
            close(vm);
    }
    if (kvm >= 0)
        close(kvm);
    return ok ? "kvm" : "qemu";
}

/* After QEMU starts, libvirt reads the guest CPU's features back to
 * check them against the XML. With QEMU's generic interface that is one
 * qom-get per CPU property, about 400 QMP round trips, 450-650 ms of a
 * start here under TCG (a DispVM's restore is otherwise 250 ms). Taking
 * that capability away makes libvirt use the x86 interface it used before,
 * two qom-gets of the CPUID words, which checks the same features. The
 * cost: libvirt logs the domain as tainted (custom-hypervisor-feature).
 * QUBES_VMM_CPU_READBACK=full keeps libvirt's default. */
static int cpu_readback_trimmed(void)
{
    const char *v = getenv("QUBES_VMM_CPU_READBACK");
    return !(v && strcmp(v, "full") == 0);
}

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"

#define W(call)                                                                               \
    do {                                                                                      \
        if ((call) < 0)                                                                       \
            return -1;                                                                        \
    } while (0)
#define EL(w, name) xmlTextWriterStartElement(w, (const xmlChar *)(name))
#define END(w) xmlTextWriterEndElement(w)
#define ATTR(w, k, v) xmlTextWriterWriteAttribute(w, (const xmlChar *)(k), (const xmlChar *)(v))
#define TEXT(w, name, v) xmlTextWriterWriteElement(w, (const xmlChar *)(name), (const xmlChar *)(v))

int domain_write_disk(xmlTextWriterPtr w, const struct domain_disk_el *d)
{
    W(EL(w, "disk"));
    W(ATTR(w, "type", d->block ? "block" : "file"));
    W(ATTR(w, "device", "disk"));
    W(EL(w, "driver"));
    W(ATTR(w, "name", "qemu"));
    W(ATTR(w, "type", d->format));
    W(END(w));
    W(EL(w, "source"));
    W(ATTR(w, d->block ? "dev" : "file", d->source));
    W(END(w));
    if (d->backing) {
        W(EL(w, "backingStore"));
        W(ATTR(w, "type", "file"));
        W(EL(w, "format"));
        W(ATTR(w, "type", "raw"));
        W(END(w));
        W(EL(w, "source"));
        W(ATTR(w, "file", d->backing));
        W(EL(w, "seclabel"));
        W(ATTR(w, "model", "dac"));
        W(ATTR(w, "relabel", "yes"));
        W(TEXT(w, "label", d->backing_label));
        W(END(w));
        W(END(w));
        W(EL(w, "backingStore"));       /* the end of the chain */
        W(END(w));
        W(END(w));
    }
    W(EL(w, "target"));
    W(ATTR(w, "dev", d->target));
    W(ATTR(w, "bus", "virtio"));
    W(END(w));
    if (d->readonly) {
        W(EL(w, "readonly"));
        W(END(w));
    }
    if (d->alias) {
        W(EL(w, "alias"));
        W(ATTR(w, "name", d->alias));
        W(END(w));
    }
    return END(w);
}

static int domain_body(xmlTextWriterPtr w, const void *ctx)
{
    const struct domain_spec *s = ctx;
    char num[32];
    W(EL(w, "domain"));
    W(ATTR(w, "type", s->type));
    int readback = cpu_readback_trimmed();
    if (s->mem_file || readback)
        W(ATTR(w, "xmlns:qemu", QEMU_NS));
    W(TEXT(w, "name", s->name));
    if (s->uuid)
        W(TEXT(w, "uuid", s->uuid));
    /* A VM generation id (QEMU's vmgenid device): libvirt picks one; a
     * DispVM restored from a savefile gets its own, which tells its kernel
     * to reseed its random-number generator. */
    W(EL(w, "genid"));
    W(END(w));
    snprintf(num, sizeof num, "%ld", s->maxmem_mib > s->memory_mib ? s->maxmem_mib : s->memory_mib);
    W(EL(w, "memory"));
    W(ATTR(w, "unit", "MiB"));
    W(xmlTextWriterWriteString(w, (const xmlChar *)num));
    W(END(w));
    snprintf(num, sizeof num, "%ld", s->memory_mib);
    W(EL(w, "currentMemory"));
    W(ATTR(w, "unit", "MiB"));
    W(xmlTextWriterWriteString(w, (const xmlChar *)num));
    W(END(w));
    snprintf(num, sizeof num, "%ld", s->vcpus);
    W(TEXT(w, "vcpu", num));

    W(EL(w, "os"));
    W(EL(w, "type"));
    W(ATTR(w, "arch", "x86_64"));
    W(ATTR(w, "machine", "q35"));
    W(xmlTextWriterWriteString(w, (const xmlChar *)"hvm"));
    W(END(w));
    if (s->kernel) {
        W(TEXT(w, "kernel", s->kernel));
        if (s->initrd)
            W(TEXT(w, "initrd", s->initrd));
        if (s->cmdline)
            W(TEXT(w, "cmdline", s->cmdline));
    }
    W(END(w));
    W(EL(w, "features"));
    W(EL(w, "acpi"));
    W(END(w));
    W(END(w));
    /* A VM that stops, for whatever reason, is gone: the next start
     * begins from its record again. */
    W(TEXT(w, "on_poweroff", "destroy"));
    W(TEXT(w, "on_reboot", "destroy"));
    W(TEXT(w, "on_crash", "destroy"));

    W(EL(w, "devices"));
    for (int i = 0; i < s->ndisks; i++) {
        char dev[8];
        snprintf(dev, sizeof dev, "vd%c", 'a' + i);
        struct domain_disk_el d = { .format = s->disks[i].format, .source = s->disks[i].path,
                                    .target = dev, .readonly = s->disks[i].readonly,
                                    .backing = s->disks[i].backing,
                                    .backing_label = s->disks[i].backing_label };
        W(domain_write_disk(w, &d));
    }
    if (s->serial_log) {
        W(EL(w, "serial"));
        W(ATTR(w, "type", "file"));
        W(EL(w, "source"));
        W(ATTR(w, "path", s->serial_log));
        W(ATTR(w, "append", "on"));     /* survives a restore */
        W(END(w));
        W(EL(w, "target"));
        W(ATTR(w, "port", "0"));
        W(END(w));
        W(END(w));
    }
    if (s->agent_socket || s->agent_socket_auto) {
        W(EL(w, "channel"));
        W(ATTR(w, "type", "unix"));
        W(EL(w, "source"));
        W(ATTR(w, "mode", "bind"));
        if (s->agent_socket)
            W(ATTR(w, "path", s->agent_socket));
        W(END(w));
        W(EL(w, "target"));
        W(ATTR(w, "type", "virtio"));
        W(ATTR(w, "name", "org.qubes.agent.0"));
        W(END(w));
        W(END(w));
    }
    for (int i = 0; i < s->nnics && i < DOMAIN_MAX_NICS; i++) {
        const struct domain_nic *n = &s->nics[i];
        W(EL(w, "interface"));
        W(ATTR(w, "type", "network"));
        W(EL(w, "mac"));
        W(ATTR(w, "address", n->mac));
        W(END(w));
        W(EL(w, "source"));
        W(ATTR(w, "network", n->network));
        W(END(w));
        if (n->ifname) {
            W(EL(w, "target"));
            W(ATTR(w, "dev", n->ifname));
            W(END(w));
        }
        W(EL(w, "model"));
        W(ATTR(w, "type", "virtio"));
        W(END(w));
        W(END(w));
    }
    /* No USB controller: libvirt would add an emulated xHCI (a q35
     * machine's default) that nothing here uses, one more device for an
     * untrusted guest to drive, for QEMU to start and for every DispVM to
     * restore. */
    W(EL(w, "controller"));
    W(ATTR(w, "type", "usb"));
    W(ATTR(w, "model", "none"));
    W(END(w));
    /* Free PCIe root ports for disks hot-plugged by qvm-block. libvirt
     * gives each PCIe device a root port, taking the ones the XML names
     * first, and adds a spare only when it had to add ports itself: so the
     * XML names one per device (virtio-serial, balloon, disks, NICs) and
     * DOMAIN_HOTPLUG_PORTS more, which stay free. */
    W(EL(w, "controller"));     /* the root they hang from, named first */
    W(ATTR(w, "type", "pci"));
    W(ATTR(w, "index", "0"));
    W(ATTR(w, "model", "pcie-root"));
    W(END(w));
    int ports = 2 + s->ndisks + s->nnics + DOMAIN_HOTPLUG_PORTS;
    for (int i = 0; i < ports; i++) {
        W(EL(w, "controller"));
        W(ATTR(w, "type", "pci"));
        W(ATTR(w, "model", "pcie-root-port"));
        W(END(w));
    }
    W(EL(w, "memballoon"));
    W(ATTR(w, "model", "virtio"));
    W(END(w));
    W(END(w));          /* devices */
    if (s->mem_file) {
        /* The machine's RAM is this backend: a later -machine option
         * overrides the memory-backend libvirt gives it. */
        char obj[PATH_MAX + 128];
        snprintf(obj, sizeof obj, "memory-backend-file,id=%s,size=%ld,mem-path=%s,share=%s",
                 DOMAIN_RAM_ID, (s->maxmem_mib > s->memory_mib ? s->maxmem_mib : s->memory_mib) * 1048576,
                 s->mem_file, s->mem_shared ? "on" : "off");
        const char *args[] = { "-object", obj, "-machine", "memory-backend=" DOMAIN_RAM_ID };
        W(EL(w, "qemu:commandline"));
        for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
            W(EL(w, "qemu:arg"));
            W(ATTR(w, "value", args[i]));
            W(END(w));
        }
        W(END(w));
    }
    if (readback) {
        W(EL(w, "qemu:capabilities"));
        W(EL(w, "qemu:del"));
        W(ATTR(w, "capability", "cpu-unavailable-features"));
        W(END(w));
        W(END(w));
    }
    return END(w);      /* domain */
}

char *domain_xml(const struct domain_spec *s, struct qerr *err)
{
    /* QEMU's option syntax: a comma would end the path. */
    if (s->mem_file && strchr(s->mem_file, ','))
        return qerr_set(err, "memory file %s: a path with a comma cannot be given to QEMU",
                        s->mem_file), NULL;
    char *out = qxml_build(domain_body, s, " ", false);
    if (!out && errno == EIO)
        qerr_set(err, "domain XML of %s: libxml2 writer failed", s->name);
    else if (!out)
        qerr_errno(err, ENOMEM, "domain XML of %s", s->name);
    return out;
}

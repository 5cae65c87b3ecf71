/* The domain XML (orchestrator/domain.c) read back with libxml2: what
 * libvirt is told besides the VM's devices. */
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "orchestrator/domain.h"
#include "tests/tap.h"

/* The number of nodes `expr` selects in `xml` (qemu: bound to libvirt's
 * QEMU namespace), or -1 when the document does not parse. */
static int count(const char *xml, const char *expr)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR);
    if (!doc)
        return -1;
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"qemu", (const xmlChar *)"http://libvirt.org/schemas/domain/qemu/1.0");
    xmlXPathObjectPtr r = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    int n = r && r->nodesetval ? r->nodesetval->nodeNr : 0;
    xmlXPathFreeObject(r);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    return n;
}

static char *build(const struct domain_spec *s)
{
    struct qerr err = { 0 };
    char *xml = domain_xml(s, &err);
    if (!xml)
        diag("domain_xml: %s", err.msg);
    return xml;
}

#define DEL_CPU "/domain/qemu:capabilities/qemu:del[@capability='cpu-unavailable-features']"

int main(void)
{
    struct domain_spec s = { .name = "work", .type = "qemu", .memory_mib = 400, .maxmem_mib = 4000, .vcpus = 2 };
    s.disks[0] = (struct domain_disk){ .path = "/var/lib/qubes/appvms/work/root.img",
                                       .format = "raw" };
    s.disks[1] = (struct domain_disk){ .path = "/var/lib/qubes/appvms/work/private.img",
                                       .format = "raw" };
    s.ndisks = 2;
    s.nics[0] = (struct domain_nic){ "00:16:3e:5e:6c:05", "qnet1", NULL };
    s.nnics = 1;

    unsetenv("QUBES_VMM_CPU_READBACK");
    char *xml = build(&s);
    ok(xml && count(xml, "/domain") == 1, "the domain XML parses");
    ok(xml && count(xml, DEL_CPU) == 1,
       "by default libvirt is told to read the CPU back by its CPUID words (cpu-unavailable-features taken away)");
    ok(xml && count(xml, "/domain/qemu:commandline") == 0, "a VM with anonymous memory passes QEMU no arguments of its own");
    ok(xml && count(xml, "/domain/devices/controller[@model='pcie-root-port']") == 2 + 2 + 1 + DOMAIN_HOTPLUG_PORTS,
       "one root port per device and %d spare for hot-plugged disks", DOMAIN_HOTPLUG_PORTS);
    ok(xml && count(xml, "/domain/devices/controller[@type='usb']") == 1 &&
       count(xml, "/domain/devices/controller[@type='usb'][@model='none']") == 1,
       "no USB controller: the one USB element says none");
    ok(xml && count(xml, "/domain/devices/disk/backingStore") == 0,
       "disks without a backing file named: libvirt reads their chains");
    free(xml);

    /* A template-based VM: its layer over the template's root, named. */
    s.disks[0] = (struct domain_disk){ .path = "/var/lib/qubes/appvms/work/volatile.img",
                                       .format = "qcow2",
                                       .backing = "/var/lib/qubes/vm-templates/fedora/root.img",
                                       .backing_label = "+0:+64055" };
    xml = build(&s);
    ok(xml && count(xml, "/domain/devices/disk[1]/backingStore[@type='file'][format/@type='raw']"
                         "/source[@file='/var/lib/qubes/vm-templates/fedora/root.img']"
                         "/seclabel[@model='dac'][@relabel='yes'][label='+0:+64055']") == 1,
       "a layer's backing file is named, raw, with the label it is given");
    ok(xml && count(xml, "/domain/devices/disk[1]/backingStore/backingStore[not(@type)][not(*)]") == 1 &&
       count(xml, "/domain/devices/disk[1]/backingStore/backingStore/backingStore") == 0,
       "and an empty backingStore ends the chain (libvirt reads no header)");
    ok(xml && count(xml, "/domain/devices/disk[2]/backingStore") == 0, "the other disk has none");
    free(xml);
    s.disks[0] = (struct domain_disk){ .path = "/var/lib/qubes/appvms/work/root.img",
                                       .format = "raw" };

    s.mem_file = "/dev/shm/qubes/work-dvm.ram";
    s.mem_shared = true;
    xml = build(&s);
    ok(xml && count(xml, DEL_CPU) == 1 && count(xml, "/domain/qemu:commandline/qemu:arg") == 4,
       "with a memory file: its arguments and the capability, in the one namespace");
    free(xml);

    setenv("QUBES_VMM_CPU_READBACK", "full", 1);
    xml = build(&s);
    ok(xml && count(xml, "/domain/qemu:capabilities") == 0 && count(xml, "/domain/qemu:commandline/qemu:arg") == 4,
       "QUBES_VMM_CPU_READBACK=full: libvirt's default read-back, nothing overridden");
    free(xml);
    s.mem_file = NULL;
    xml = build(&s);
    ok(xml && count(xml, "/domain") == 1 && !strstr(xml, "xmlns:qemu"),
       "and without a memory file no QEMU namespace at all");
    free(xml);

    s.mem_file = "/dev/shm/a,b.ram";
    unsetenv("QUBES_VMM_CPU_READBACK");
    struct qerr err = { 0 };
    xml = domain_xml(&s, &err);
    ok(!xml && strstr(err.msg, "comma"), "a memory file whose path QEMU would split is refused (%s)", err.msg);
    free(xml);
    return done_testing();
}

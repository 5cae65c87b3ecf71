/* qvm-block's rules without a hypervisor: the disk XML both ways, the
 * frontend choice, the checks of a source (what it is, who may change the
 * way to it, where it is). */
#include "../../orchestrator/block.h"
#include "../tap.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void touch(const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, "data", 4) != 4)
            diag("short write to %s", path);
        close(fd);
    }
}

static void xml_round_trip(void)
{
    struct qerr err;
    const char *odd = "/srv/a 'b\" <c> & d.img";
    struct vmm_disk_spec spec = { .source = odd, .readonly = true, .target = "vdc",
                                  .tag = "qubes-block-vdc" };
    char *xml = vmm_disk_xml(&spec, &err);
    ok(xml && strstr(xml, "type=\"raw\"") && strstr(xml, "bus=\"virtio\"") &&
       strstr(xml, "<readonly/>") && strstr(xml, "name=\"ua-qubes-block-vdc\"") &&
       strstr(xml, "type=\"file\""),
       "the disk XML: a raw virtio file disk, read-only, with the tag as libvirt user alias");
    ok(xml && !strstr(xml, odd), "a path's quotes, < and & are escaped by the writer");
    /* Back through the reader, inside a domain. */
    char doc[2048];
    snprintf(doc, sizeof doc, "<domain><devices>%s</devices></domain>", xml ? xml : "");
    struct vmm_disk *d = NULL;
    size_t n = 0;
    ok(vmm_disks_from_xml(doc, &d, &n, &err) == 0 && n == 1 && strcmp(d[0].source, odd) == 0 &&
       strcmp(d[0].target, "vdc") == 0 && d[0].readonly && !d[0].block &&
       strcmp(d[0].tag, "qubes-block-vdc") == 0,
       "and read back: the same path, target, mode and tag");
    if (n)
        vmm_disks_free(d, n);
    free(xml);
    spec.tag = "a'b";
    ok(!vmm_disk_xml(&spec, &err) && strstr(err.msg, "disk tag"), "a tag out of [A-Za-z0-9_-] "
       "is refused (%s)", err.msg);
    spec = (struct vmm_disk_spec){ .source = "/dev/sdb", .block = true, .target = "vdd" };
    xml = vmm_disk_xml(&spec, &err);
    ok(xml && strstr(xml, "type=\"block\"") && strstr(xml, "dev=\"/dev/sdb\"") &&
       !strstr(xml, "readonly") && !strstr(xml, "alias"),
       "a block device: type block, source dev, writable, no alias without a tag");
    free(xml);
}

/* What libvirt 9.0 says of a running child VM with one device attached. */
static const char LIVE[] =
    "<domain type='qemu' id='7'><name>work</name><devices>"
    "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/b/appvms/work/volatile.img' index='3'/>"
    "<backingStore type='file' index='4'><format type='raw'/>"
    "<source file='/b/vm-templates/tpl/root.img'/><backingStore/></backingStore>"
    "<target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>"
    "<disk type='file' device='disk'><source file='/b/appvms/work/private.img'/>"
    "<backingStore/><target dev='vdb' bus='virtio'/><alias name='virtio-disk1'/></disk>"
    "<disk type='block' device='disk'><source dev='/dev/loop3' index='5'/><backingStore/>"
    "<target dev='vdc' bus='virtio'/><readonly/><alias name='ua-qubes-block-vdc'/></disk>"
    "<disk type='network' device='disk'><source protocol='nbd' name='x'/>"
    "<target dev='vdd' bus='virtio'/></disk>"
    "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>"
    "<controller type='pci' index='0' model='pcie-root'/>"
    "</devices></domain>";

static void live_description(void)
{
    struct qerr err;
    struct vmm_disk *d = NULL;
    size_t n = 0;
    ok(vmm_disks_from_xml(LIVE, &d, &n, &err) == 0 && n == 6, "a live description: 5 disks "
       "and one backing file");
    if (n != 6)
        return;
    ok(strcmp(d[0].target, "vda") == 0 && !d[0].readonly && !d[0].tag && !d[0].backing,
       "the root layer, writable, untagged");
    ok(d[1].backing && d[1].readonly && !d[1].target &&
       strcmp(d[1].source, "/b/vm-templates/tpl/root.img") == 0,
       "its template's root, a read-only backing file");
    ok(strcmp(d[3].target, "vdc") == 0 && d[3].block && d[3].readonly &&
       strcmp(d[3].source, "/dev/loop3") == 0 && strcmp(d[3].tag, "qubes-block-vdc") == 0,
       "the attached block device, read-only, with its tag (libvirt's user alias)");
    ok(strcmp(d[4].target, "vdd") == 0 && !d[4].source, "a network disk has no source");
    ok(strcmp(d[5].target, "sda") == 0 && !d[5].source, "nor an empty CD-ROM");

    char out[8];
    ok(qblock_pick_frontend(d, n, NULL, out, &err) == 0 && strcmp(out, "vde") == 0,
       "the first free frontend is vde");
    ok(qblock_pick_frontend(d, n, "vdx", out, &err) == 0 && strcmp(out, "vdx") == 0,
       "a free frontend asked for is taken");
    ok(qblock_pick_frontend(d, n, "vdc", out, &err) < 0 && strstr(err.msg, "/dev/loop3"),
       "a taken one is refused, naming what holds it (%s)", err.msg);
    vmm_disks_free(d, n);
    ok(vmm_disks_from_xml("<domain><devices><disk", &d, &n, &err) < 0,
       "a description that is not XML is an error");
}

static void frontends(void)
{
    const char *good[] = { "vdb", "vdm", "vdz" };
    const char *bad[] = { "vda", "vd{", "vdbb", "sdb", "xvdb", "", "vd" };
    int all = 1;
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        all &= qblock_valid_frontend(good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        all &= !qblock_valid_frontend(bad[i]);
    ok(all, "frontends are vdb to vdz, nothing else (not vda, the root)");
    struct vmm_disk full[26];
    char names[26][8];
    memset(full, 0, sizeof full);
    for (int i = 0; i < 26; i++) {
        snprintf(names[i], sizeof names[i], "vd%c", 'a' + i);
        full[i].target = names[i];
    }
    char out[8];
    struct qerr err;
    ok(qblock_pick_frontend(full, 25, NULL, out, &err) == 0 && strcmp(out, "vdz") == 0,
       "with vda to vdy taken, vdz is the free one");
    ok(qblock_pick_frontend(full, 26, NULL, out, &err) < 0 && strstr(err.msg, "no free"),
       "with vdz taken too, there is none (%s)", err.msg);
}

static void sources(void)
{
    struct qblock_source s, t;
    struct qerr err;
    char file[128], path[160];
    touch("disk.img", file, sizeof file);
    ok(qblock_open_source(file, &s, &err) == 0 && !s.block && strcmp(s.path, file) == 0,
       "a regular file in directories only root changes is a source");
    snprintf(path, sizeof path, "%s/link", dir);
    ok(symlink("disk.img", path) == 0 && qblock_open_source(path, &t, &err) == 0 &&
       strcmp(t.path, file) == 0, "a symbolic link is resolved once: the file it names is used");
    ok(qblock_same_data(&s, &t), "and it is the same data");
    snprintf(path, sizeof path, "%s/hard", dir);
    ok(link(file, path) == 0 && qblock_open_source(path, &t, &err) == 0 && qblock_same_data(&s, &t),
       "a hard link is the same data too (compared by inode)");
    char other[128];
    touch("other.img", other, sizeof other);
    ok(qblock_open_source(other, &t, &err) == 0 && !qblock_same_data(&s, &t),
       "another file is not");
    snprintf(path, sizeof path, "%s/fifo", dir);
    ok(mkfifo(path, 0600) == 0 && qblock_open_source(path, &t, &err) < 0 &&
       strstr(err.msg, "is a FIFO"), "a FIFO is refused, without waiting (%s)", err.msg);
    snprintf(path, sizeof path, "%s/sub", dir);
    ok(mkdir(path, 0700) == 0 && qblock_open_source(path, &t, &err) < 0 &&
       strstr(err.msg, "is a directory"), "a directory is refused");
    ok(qblock_open_source("/dev/null", &t, &err) < 0 && strstr(err.msg, "character device"),
       "a character device is refused");
    snprintf(path, sizeof path, "%s/missing", dir);
    ok(qblock_open_source(path, &t, &err) < 0 && strstr(err.msg, "No such file"),
       "a missing file is refused (%s)", err.msg);
    snprintf(path, sizeof path, "%s/dangling", dir);
    ok(symlink("missing", path) == 0 && qblock_open_source(path, &t, &err) < 0,
       "so is a link to nothing");
    /* A directory others may write: the file could be swapped for another
     * (a link to a device, say) after the check. */
    char open_dir[128], inner[160];
    snprintf(open_dir, sizeof open_dir, "%s/open", dir);
    mkdir(open_dir, 0700);
    chmod(open_dir, 0777);
    snprintf(inner, sizeof inner, "%s/open/x.img", dir);
    touch("open/x.img", inner, sizeof inner);
    ok(qblock_open_source(inner, &t, &err) < 0 && strstr(err.msg, "any user may change") &&
       strstr(err.msg, open_dir), "a file in a directory anybody may write is refused (%s)",
       err.msg);
    chmod(open_dir, 01777);
    ok(qblock_open_source(inner, &t, &err) == 0,
       "in a sticky one, a file of root's (or ours) is a source");
    if (geteuid() == 0) {
        ok(chown(inner, 65534, 65534) == 0 && qblock_open_source(inner, &t, &err) < 0 &&
           strstr(err.msg, "may change") && strstr(err.msg, "its owner, in the sticky"),
           "a file of another user's there is refused (%s)", err.msg);
        chmod(open_dir, 0700);
        ok(chown(open_dir, 65534, 65534) == 0 && qblock_open_source(inner, &t, &err) < 0 &&
           strstr(err.msg, "its owner"), "and so is one under a directory of another user's");
    } else {
        ok(1, "a file of another user's in a sticky directory # SKIP not root");
        ok(1, "a directory of another user's # SKIP not root");
    }
}

static void writable(void)
{
    struct qubes_config cfg;
    struct qerr err;
    struct qblock_source s;
    char base[128], run[128], path[200];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_RUN_DIR", run, 1);
    qubes_config_init(&cfg, &err);
    const char *dirs[] = { "base", "base/appvms", "base/appvms/work", "base/dvmdata",
                           "base/images", "run", "run/vms", "run/vms/work" };
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, dirs[i]);
        mkdir(path, 0700);
    }
    struct { const char *file, *expect; } cases[] = {
        { "base/appvms/work/private.img", "in the directory of VM 'work'" },
        { "base/appvms/work/firewall.xml", "in the directory of VM 'work'" },
        { "base/dvmdata/x-dvm.savefile", "the VMs' database and files" },
        { "base/qubes.xml", "the VMs' database and files" },
        { "run/vms/work/volatile.img", "run directories" },
        { "base/images/data.img", NULL },
        { "outside.img", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        touch(cases[i].file, path, sizeof path);
        int r = qblock_open_source(path, &s, &err) == 0 ? qblock_check_writable(&cfg, &s, &err) : -2;
        if (cases[i].expect)
            ok(r == -1 && strstr(err.msg, cases[i].expect) && strstr(err.msg, "--ro"),
               "%s may only be attached read-only (%s)", cases[i].file, err.msg);
        else
            ok(r == 0, "%s may be attached writable", cases[i].file);
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/qubes-block.XXXXXX", "/tmp");
    if (!mkdtemp(dir))
        return 1;
    xml_round_trip();
    live_description();
    frontends();
    sources();
    writable();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("cannot remove %s", dir);
    return done_testing();
}

/* libvirt's QEMU savefile and its clones under a DispVM's identity
 * (dispvm/savefile.h), and the RAM file a shared-memory savefile names
 * (dispvm/shmem.h). The domain XML a clone carries is compared with the
 * reviewed files in tests/savefile/ (NAME.xml in, NAME.expect.xml out);
 * savefiles are built here byte by byte, good and broken.
 *
 * Usage: test_savefile DIR [OUT_DIR]; with OUT_DIR, what was produced is
 * written there too (NAME.expect.xml), for a diff. */
#include "../../dispvm/savefile.h"
#include "../../dispvm/shmem.h"
#include "../testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir, *out_dir;
static char scratch[] = "/tmp/qubes-savefile.XXXXXX";

static char *fixture(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = slurp(path, NULL);
    if (!text) {
        fprintf(stderr, "test_savefile: cannot read %s: %s\n", path, strerror(errno));
        exit(99);
    }
    size_t n = strlen(text);    /* the files end in a newline libvirt does not write */
    if (n && text[n - 1] == '\n')
        text[n - 1] = '\0';
    return text;
}

/* The identity of disp7, as dispvm/restore.c gives it. */
static struct savefile_identity disp7(bool nic, bool private_ram)
{
    struct savefile_identity id = {
        .name = "disp7", .uuid = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
        .disks = { "/var/run/qubes/vms/disp7/root.qcow2", "/var/run/qubes/vms/disp7/private.qcow2" },
        .formats = { "qcow2", "qcow2" }, .ndisks = 2,
        .chains = { { 2, { "/var/lib/qubes/dvmdata/fedora-dvm.root.qcow2",
                           "/var/lib/qubes/vm-templates/fedora/root.img" }, { "qcow2", "raw" } },
                    { 1, { "/var/lib/qubes/dvmdata/fedora-dvm.private.img" }, { "raw" } } },
        .image_label = "+64055:+64055",
        .agent_socket = "/var/run/qubes/vms/disp7/agent.sock",
        .serial_log = "/var/run/qubes/vms/disp7/console.log",
        .mac = nic ? "00:16:3e:7c:8b:07" : NULL,
        .private_ram = private_ram,
    };
    return id;
}

/* The clone's domain XML for `name`.xml against `name`.expect.xml. */
static void check_rewrite(const char *name, const struct savefile_identity *id)
{
    char file[256];
    snprintf(file, sizeof file, "%s.xml", name);
    char *in = fixture(file);
    struct qerr err = { 0 };
    char *got = savefile_domain_xml(in, id, &err);
    if (!ok(got != NULL, "%s: the domain XML is rewritten (%s)", name, got ? "no error" : err.msg)) {
        free(in);
        return;
    }
    snprintf(file, sizeof file, "%s.expect.xml", name);
    char path[4096];
    if (out_dir) {
        char *text;
        snprintf(path, sizeof path, "%s/%s", out_dir, file);
        if (asprintf(&text, "%s\n", got) > 0) {
            spit(path, text);
            free(text);
        }
    }
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *want = slurp(path, NULL);
    size_t n = want ? strlen(want) : 0;
    if (n && want[n - 1] == '\n')
        want[n - 1] = '\0';
    ok(want && strcmp(got, want) == 0, "%s: as tests/savefile/%s", name, file);
    free(want);
    free(got);
    free(in);
}

/* A savefile as libvirt 9.0 writes one: the 92-byte header, the domain XML
 * and the cookie (NUL-terminated, padded to `pad` bytes in all), then the
 * stream. The fields can be spoilt for the hostile cases. */
struct fake {
    const char *magic;
    uint32_t version, was_running, compressed;
    long data_len_delta;        /* added to the true data_len */
    long cookie_delta;          /* added to the true cookie offset */
    size_t pad;                 /* bytes of XML, cookie and padding; 0: just them */
    size_t stream_len;
    size_t truncate_to;         /* 0: the whole file */
};

static void write_fake(const char *path, const struct fake *f, const char *xml, const char *cookie)
{
    size_t xl = strlen(xml) + 1, cl = strlen(cookie) + 1;
    size_t data = f->pad > xl + cl ? f->pad : xl + cl;
    uint32_t fields[5] = { f->version, (uint32_t)((long)data + f->data_len_delta), f->was_running,
                           f->compressed, (uint32_t)((long)xl + f->cookie_delta) };
    unsigned char header[92] = { 0 };
    memcpy(header, f->magic, 16);
    memcpy(header + 16, fields, sizeof fields);
    char *body = calloc(1, data);
    memcpy(body, xml, xl);
    memcpy(body + xl, cookie, cl);
    FILE *out = fopen(path, "we");
    fwrite(header, 1, sizeof header, out);
    fwrite(body, 1, data, out);
    for (size_t i = 0; i < f->stream_len; i++)
        fputc((int)((i * 7 + 3) & 0xff), out);
    fclose(out);
    free(body);
    if (f->truncate_to && truncate(path, (off_t)f->truncate_to) < 0)
        exit(99);
}

/* The bytes of `path` from `off` on. */
static char *tail_of(const char *path, off_t off, size_t *len)
{
    size_t n;
    char *all = slurp(path, &n);
    if (!all || (size_t)off > n)
        return free(all), NULL;
    *len = n - (size_t)off;
    char *t = malloc(*len + 1);
    memcpy(t, all + off, *len);
    free(all);
    return t;
}

static void check_files(void)
{
    char *xml = fixture("full.xml"), *cookie = fixture("cookie.xml"), *want = fixture("full.expect.xml");
    char src[256], clone[256], fifo[256];
    snprintf(src, sizeof src, "%s/src.save", scratch);
    snprintf(clone, sizeof clone, "%s/clone.save", scratch);
    snprintf(fifo, sizeof fifo, "%s/clone.fifo", scratch);
    struct fake good = { .magic = "LibvirtQemudSave", .version = 2, .was_running = 1,
                         .pad = 16384, .stream_len = 300000 };
    struct savefile_info si;
    struct qerr err = { 0 };

    write_fake(src, &good, xml, cookie);
    ok(savefile_read(src, &si, &err) == 0, "a libvirt 9.0 savefile is read%s%s",
       err.msg[0] ? ": " : "", err.msg);
    ok(si.version == 2 && si.was_running == 1 && si.data_len == 16384 &&
       si.stream_offset == 92 + 16384 && si.size == 92 + 16384 + 300000,
       "its header: version 2, running, 16384 bytes of XML, the stream after them");
    ok(si.xml && strcmp(si.xml, xml) == 0, "its domain XML");
    ok(si.cookie && strcmp(si.cookie, cookie) == 0, "its cookie");
    savefile_info_free(&si);

    struct savefile_identity id = disp7(true, false);
    ok(savefile_clone(src, clone, &id, &err) == 0, "a clone is written%s%s",
       err.msg[0] ? ": " : "", err.msg);
    struct stat st;
    ok(stat(clone, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600 (it holds guest memory)");
    ok(savefile_read(clone, &si, &err) == 0, "the clone reads as a savefile%s%s",
       err.msg[0] ? ": " : "", err.msg);
    ok(si.xml && strcmp(si.xml, want) == 0, "with the domain XML of the DispVM (full.expect.xml)");
    ok(si.cookie && strcmp(si.cookie, cookie) == 0, "and the same cookie");
    ok(si.version == 2 && si.was_running == 1 && si.compressed == 0, "and the same header fields");
    size_t a, b;
    char *s1 = tail_of(src, 92 + 16384, &a), *s2 = tail_of(clone, si.stream_offset, &b);
    ok(s1 && s2 && a == 300000 && b == a && memcmp(s1, s2, a) == 0,
       "followed by the same stream, byte for byte");
    free(s2);
    savefile_info_free(&si);
    ok(savefile_clone(src, clone, &id, &err) < 0 && err.code == EEXIST,
       "a clone never replaces a file: %s", err.msg);
    unlink(clone);

    /* Through a FIFO: the same bytes as the copy, read in order. */
    pid_t writer = savefile_feed(src, fifo, &id, &err);
    ok(writer > 0, "a feeder starts (%s)", writer > 0 ? "no error" : err.msg);
    if (writer > 0) {
        size_t n;
        char *fed = slurp(fifo, &n);
        int ws;
        waitpid(writer, &ws, 0);
        ok(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "it wrote the whole clone and exited 0");
        savefile_clone(src, clone, &id, &err);
        size_t m;
        char *copy = slurp(clone, &m);
        ok(fed && copy && n == m && memcmp(fed, copy, n) == 0,
           "the FIFO carries exactly the clone (%zu bytes)", n);
        free(fed);
        free(copy);
        unlink(fifo);
        unlink(clone);
    }
    free(s1);

    /* Broken or foreign savefiles are refused with what is wrong. */
    static const struct {
        const char *what, *expect;
        struct fake f;
    } bad[] = {
        { "bad magic", "not a libvirt QEMU savefile (bad magic)",
          { .magic = "LibvirtQemudPart", .version = 2, .stream_len = 100 } },
        { "version 3", "unsupported savefile (version 3",
          { .magic = "LibvirtQemudSave", .version = 3, .stream_len = 100 } },
        { "compressed", "compressed 1",
          { .magic = "LibvirtQemudSave", .version = 2, .compressed = 1, .stream_len = 100 } },
        { "no stream", "unsupported savefile",
          { .magic = "LibvirtQemudSave", .version = 2, .stream_len = 0 } },
        { "data_len past the end", "unsupported savefile",
          { .magic = "LibvirtQemudSave", .version = 2, .data_len_delta = 1 << 20, .stream_len = 100 } },
        { "cookie past data_len", "unsupported savefile",
          { .magic = "LibvirtQemudSave", .version = 2, .cookie_delta = 1 << 20, .stream_len = 100 } },
        { "shorter than a header", "too short for a savefile",
          { .magic = "LibvirtQemudSave", .version = 2, .stream_len = 100, .truncate_to = 50 } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_fake(src, &bad[i].f, xml, cookie);
        memset(&err, 0, sizeof err);
        int rc = savefile_read(src, &si, &err);
        ok(rc < 0 && strstr(err.msg, bad[i].expect) && strstr(err.msg, src),
           "%s: refused, naming the file: %s", bad[i].what, err.msg);
        ok(savefile_clone(src, clone, &id, &err) < 0 && access(clone, F_OK) != 0,
           "%s: no clone is made of it", bad[i].what);
    }
    memset(&err, 0, sizeof err);
    ok(savefile_read("/nonexistent/x.savefile", &si, &err) < 0 && err.code == ENOENT &&
       strstr(err.msg, "/nonexistent/x.savefile"), "a missing savefile: %s", err.msg);
    ok(savefile_domain_xml("<domain><name>x", &id, &err) == NULL &&
       strstr(err.msg, "does not parse"), "domain XML that does not parse: %s", err.msg);
    free(xml);
    free(cookie);
    free(want);
}

static void check_ram_of_xml(void)
{
    char ram[4096], *shared = fixture("shared.xml"), *full = fixture("full.xml");
    ok(dispvm_ram_of_xml(shared, ram, sizeof ram) == 0 &&
       strcmp(ram, "/dev/shm/qubes/fedora-dvm.1796157280712288195.ram") == 0,
       "a shared-memory savefile names its RAM file (%s)", ram);
    ok(dispvm_ram_of_xml(full, ram, sizeof ram) == 0 && ram[0] == '\0',
       "a full-image savefile names none");
    static const struct {
        const char *value, *what;
        int rc;
    } cases[] = {
        { "memory-backend-file,id=qubes.ram,size=1,mem-path=/etc/shadow,share=on",
          "a file outside the shared-memory directory", -1 },
        { "memory-backend-file,id=qubes.ram,size=1,mem-path=/dev/shm/qubes/../../etc/shadow,share=on",
          "a path that leaves the directory", -1 },
        { "memory-backend-file,id=qubes.ram,size=1,mem-path=/dev/shm/qubesx/a.ram,share=on",
          "a directory that only starts like it", -1 },
        { "memory-backend-file,id=qubes.ram,size=1,mem-path=/dev/shm/qubes/a.1.ram,share=off",
          "a private mapping (not a template's)", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char xml[1024];
        snprintf(xml, sizeof xml, "<domain><qemu:commandline><qemu:arg value='%s'/>"
                 "</qemu:commandline></domain>", cases[i].value);
        int rc = dispvm_ram_of_xml(xml, ram, sizeof ram);
        ok(rc == cases[i].rc && ram[0] == '\0', "%s: %s", cases[i].what,
           cases[i].rc < 0 ? "refused" : "no RAM file");
    }
    char dvm[64];
    ok(dispvm_ram_dvm("/dev/shm/qubes/fedora-dvm.1796157280712288195.ram", dvm, sizeof dvm) == 0 &&
       strcmp(dvm, "fedora-dvm") == 0, "a RAM file belongs to its dvm VM (%s)", dvm);
    free(shared);
    free(full);
}

/* A header read alone (a savefile on another host) and rewritten in
 * place: the same size, the stream where it was, the new XML in it; an XML
 * that does not fit is refused. */
static void check_in_place(void)
{
    char path[4096];
    char *xml = fixture("full.xml"), *cookie = fixture("cookie.xml");
    snprintf(path, sizeof path, "%s/padded.save", scratch);
    struct fake f = { .magic = "LibvirtQemudSave", .version = 2, .was_running = 1,
                      .pad = strlen(xml) + strlen(cookie) + 2 + 65536, .stream_len = 4096 };
    write_fake(path, &f, xml, cookie);
    size_t n, need = 0;
    char *all = slurp(path, &n);
    struct qerr err;
    ok(savefile_header_size(all, 91, &need, &err) < 0, "91 bytes are not a header's fixed part");
    ok(savefile_header_size(all, SAVEFILE_FIXED_SIZE, &need, &err) == 0 &&
       need == SAVEFILE_FIXED_SIZE + f.pad, "the fixed part tells the header's size (%zu)", need);
    struct savefile_info si;
    ok(savefile_parse_header(all, need - 1, &si, &err) < 0 && strstr(err.msg, "of its"),
       "a header cut short is refused (%s)", err.msg);
    ok(savefile_parse_header(all, need, &si, &err) == 0 && strcmp(si.xml, xml) == 0 &&
       strcmp(si.cookie, cookie) == 0, "a header alone parses: its XML and cookie");
    struct savefile_identity id = disp7(false, false);
    id.agent_socket = id.serial_log = NULL;
    void *h = NULL;
    size_t hlen = 0;
    ok(savefile_header_as(&si, &id, &h, &hlen, &err) == 0 && hlen == need,
       "rewritten for disp7, the header keeps its size (%zu)", hlen);
    /* The file with the new header over the old one: a savefile of disp7
     * whose stream is the old one's, byte for byte. */
    char *patched = malloc(n);
    memcpy(patched, all, n);
    memcpy(patched, h, hlen);
    snprintf(path, sizeof path, "%s/patched.save", scratch);
    FILE *out = fopen(path, "we");
    fwrite(patched, 1, n, out);
    fclose(out);
    struct savefile_info pi;
    size_t tl = 0;
    char *tail = tail_of(path, (off_t)need, &tl);
    ok(savefile_read(path, &pi, &err) == 0 && pi.stream_offset == (off_t)need &&
       strstr(pi.xml, "<name>disp7</name>") && !strstr(pi.xml, "<name>fedora-dvm") &&
       strcmp(pi.cookie, cookie) == 0 && tail && tl == f.stream_len &&
       memcmp(tail, all + need, tl) == 0,
       "the patched file reads as disp7's savefile, the stream untouched");
    savefile_info_free(&pi);
    free(tail);
    free(h);
    /* Without room (libvirt's padding gone), a longer XML does not fit. */
    char longer[600];
    snprintf(longer, sizeof longer, "/var/lib/qubes/pool/%0500d.root.qcow2", 7);
    id.disks[0] = longer;
    si.data_len = (uint32_t)(strlen(xml) + strlen(cookie) + 2);
    h = NULL;
    ok(savefile_header_as(&si, &id, &h, &hlen, &err) < 0 && !h && strstr(err.msg, "does not fit"),
       "an XML longer than the header's room is refused (%s)", err.msg);
    savefile_info_free(&si);
    free(patched);
    free(all);
    free(xml);
    free(cookie);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_savefile DIR [OUT_DIR]\n");
        return 2;
    }
    dir = argv[1];
    out_dir = argc > 2 ? argv[2] : NULL;
    if (!mkdtemp(scratch))
        return 99;

    struct savefile_identity full = disp7(true, false), shared = disp7(true, true),
                             alone = disp7(false, false);
    shared.boot_stub = "/var/run/qubes/dispvm-boot-stub";
    check_rewrite("full", &full);
    check_rewrite("shared", &shared);
    check_rewrite("no-network", &alone);
    struct qerr err;
    alone.image_label = NULL;
    char *xml = fixture("full.xml"), *out = xml ? savefile_domain_xml(xml, &alone, &err) : NULL;
    ok(xml && !out && strstr(err.msg, "cannot describe the backing files of "
                                      "/var/run/qubes/vms/disp7/root.qcow2"),
       "a chain without the label its files get is refused: %s", out ? "(taken)" : err.msg);
    free(out);
    free(xml);
    check_files();
    check_ram_of_xml();
    check_in_place();

    rm_scratch(scratch);
    return done_testing();
}

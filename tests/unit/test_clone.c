/* qvm-clone through the C API: sparse copies with progress (storage.h),
 * and the clone's rules that need a running VM or a moment in the middle
 * of a clone, on libvirt's in-process test driver (tests/t/64-clone.t has
 * the tool, the attributes and the real guest). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../orchestrator/clone.h"
#include "../../orchestrator/qubes.h"
#include "../../storage/storage.h"
#include "../tap.h"

#define MIB (1ULL << 20)

/* A sparse file of `size` bytes with pseudo-random data in `n` extents. */
static int make_image(const char *path, off_t size, const off_t *at, const size_t *len, int n,
                      unsigned seed)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, size) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char *buf = malloc(len[i]);
        for (size_t k = 0; k < len[i]; k++)
            buf[k] = (char)rand_r(&seed);
        ssize_t w = pwrite(fd, buf, len[i], at[i]);
        free(buf);
        if (w != (ssize_t)len[i])
            return -1;
    }
    return close(fd);
}

static bool same_contents(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    static char ba[1 << 16], bb[1 << 16];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        same = na == nb && memcmp(ba, bb, na) == 0;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of `dir` whose name contains `part`. */
static int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    if (d)
        closedir(d);
    return n;
}

struct calls {
    uint64_t done[64], total[64];
    int n, stop_at;             /* stop_at: the call that asks to stop, -1 none */
};

static int record(void *ctx, uint64_t done, uint64_t total)
{
    struct calls *c = ctx;
    if (c->n < 64) {
        c->done[c->n] = done;
        c->total[c->n] = total;
    }
    return c->n++ == c->stop_at;
}

static void test_storage(const char *dir)
{
    char src[512], dst[512], dst2[512];
    struct qerr err;
    snprintf(src, sizeof src, "%s/src.img", dir);
    snprintf(dst, sizeof dst, "%s/dst.img", dir);
    snprintf(dst2, sizeof dst2, "%s/dst2.img", dir);
    /* 40 MiB of data in three extents of a 100 MiB file. */
    const off_t at[] = { 0, 30 * MIB, 70 * MIB };
    const size_t len[] = { 4 * MIB, 20 * MIB, 16 * MIB };
    if (make_image(src, 100 * MIB, at, len, 3, 7) < 0) {
        ok(0, "cannot make %s: %s", src, strerror(errno));
        return;
    }

    struct calls c = { .stop_at = -1 };
    bool reflinked = true;
    ok(storage_copy_sparse_progress(src, dst, record, &c, &reflinked, &err) == 0,
       "a copy with progress succeeds");
    ok(same_contents(src, dst), "the copy has the source's contents");
    struct stat s, d;
    stat(src, &s);
    stat(dst, &d);
    ok(d.st_size == s.st_size, "and its size");
    ok((uint64_t)d.st_blocks * 512 <= 41 * MIB,
       "and stays sparse: %llu bytes allocated for 40 MiB of data in 100 MiB",
       (unsigned long long)d.st_blocks * 512);
    diag("copied %s", reflinked ? "by reflink" : "with copy_file_range");
    ok(c.n >= 2 && c.done[0] == 0 && c.total[0] == 40 * MIB,
       "progress starts at 0 of the source's data (40 MiB, its holes not counted)");
    bool monotone = true;
    for (int i = 1; i < c.n && i < 64; i++)
        monotone = monotone && c.done[i] >= c.done[i - 1] && c.total[i] == c.total[0];
    ok(monotone, "it only grows, of the same total");
    ok(c.n >= 2 && c.done[c.n - 1] == c.total[c.n - 1], "and ends with all of it");
    if (!reflinked)
        ok(c.n >= 1 + 3, "a copy of more than one step is told each step (%d calls for 40 MiB "
           "in steps of %llu MiB)", c.n, STORAGE_COPY_STEP / MIB);
    else
        ok(c.n == 2, "a reflink is told at its start and its end");

    /* Stopped by its caller: no file, no temporary file. */
    struct calls stop = { .stop_at = 1 };
    ok(storage_copy_sparse_progress(src, dst2, record, &stop, NULL, &err) < 0 &&
       strstr(err.msg, strerror(ECANCELED)), "a copy its caller stops fails: %s", err.msg);
    ok(!exists(dst2) && count_entries(dir, "dst2.img.tmp-") == 0,
       "and leaves neither the copy nor its temporary file");
    struct calls first = { .stop_at = 0 };
    ok(storage_copy_sparse_progress(src, dst2, record, &first, NULL, &err) < 0 &&
       !exists(dst2) && count_entries(dir, "dst2.img.tmp-") == 0,
       "stopped before it starts: the same");

    snprintf(dst2, sizeof dst2, "%s/nothing.img", dir);
    ok(storage_copy_sparse_progress(dst2, dst, record, &c, NULL, &err) < 0 &&
       strstr(err.msg, dst2), "a missing source is an error naming it: %s", err.msg);

    /* Without a caller to tell, the copy is the same one. */
    snprintf(dst2, sizeof dst2, "%s/plain.img", dir);
    ok(storage_copy_sparse(src, dst2, &err) == 0 && same_contents(src, dst2),
       "storage_copy_sparse copies as before");
}

/* ---- the clone ---- */

static struct qubes q;
static char base[256];

static struct qvm *create(const struct qvm_create_opts *o)
{
    struct qerr err;
    struct qvm *vm = NULL;
    if (qubes_load_for_writing(&q, true, &err) < 0 || qubes_vm_create(&q, o, &vm, &err) < 0) {
        qubes_unlock(&q);
        diag("cannot create %s: %s", o->name, err.msg);
        return NULL;
    }
    return vm;
}

static int test_domain(const char *name, struct qerr *err)
{
    char xml[512];
    snprintf(xml, sizeof xml, "<domain type='test'><name>%s</name><memory>65536</memory>"
             "<os><type>hvm</type></os></domain>", name);
    return vmm_create(&q.vmm, xml, err);
}

static int clone(const char *src, const char *name, FILE *progress, long every_ms,
                 const volatile sig_atomic_t *cancel, struct qvm **out, struct qerr *err)
{
    struct qvm_clone_opts o = { .src = src, .name = name, .progress = progress,
                                .progress_ms = every_ms, .cancel = cancel };
    struct qvm *vm;
    int rc = qubes_vm_clone(&q, &o, &vm, err);
    if (out)
        *out = vm;
    return rc;
}

/* Nothing of a clone named `name` anywhere: no record, no directory, no
 * copy under way. */
static bool nothing_of(const char *name)
{
    char parent[512], dir[600], staging[64];
    struct qerr err;
    if (qubes_load_for_reading(&q, &err) < 0 || qvm_collection_by_name(q.coll, name))
        return false;
    snprintf(parent, sizeof parent, "%s/appvms", base);
    snprintf(dir, sizeof dir, "%s/%s", parent, name);
    snprintf(staging, sizeof staging, "%s.cloning-", name);
    return !exists(dir) && count_entries(parent, staging) == 0;
}

/* A progress stream that does something between the listing of the
 * source's files and their copy: at the line "--> Cloning". */
static void (*on_cloning)(void);

static ssize_t hook_write(void *cookie, const char *buf, size_t size)
{
    (void)cookie;
    if (on_cloning && memmem(buf, size, "--> Cloning", 11)) {
        void (*f)(void) = on_cloning;
        on_cloning = NULL;
        f();
    }
    return (ssize_t)size;
}

static FILE *hook_stream(void (*f)(void))
{
    on_cloning = f;
    return fopencookie(NULL, "w", (cookie_io_functions_t){ .write = hook_write });
}

static void write_to_solo_root(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/appvms/solo/root.img", base);
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, "x", 1, 4096) != 1)
        diag("cannot write %s", path);
    close(fd);
}

static void create_c3_meanwhile(void)
{
    struct qubes other;
    struct qerr err;
    struct qvm *vm;
    struct qvm_create_opts o = { .name = "c3", .label = "green", .hvm = true };
    if (qubes_open(&other, false, &err) < 0 || qubes_load_for_writing(&other, false, &err) < 0 ||
        qubes_vm_create(&other, &o, &vm, &err) < 0)
        diag("cannot create c3 during the copy: %s", err.msg);
    qubes_close(&other);
}

static void test_clone(void)
{
    struct qerr err;
    char img[512], run[512], path[512];
    snprintf(run, sizeof run, "%s/run", base);
    snprintf(img, sizeof img, "%s/guest.img", base);
    const off_t at[] = { 0, 40 * MIB };
    const size_t len[] = { 1 * MIB, 39 * MIB };
    make_image(img, 128 * MIB, at, len, 2, 11);

    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_RUN_DIR", run, 1);
    setenv("QUBES_VMM_URI", "test:///default", 1);
    unsetenv("QUBES_OFFLINE");
    qubes_open(&q, false, &err);
    struct qvm_create_opts t = { .name = "tpl", .label = "black", .hvm_template = true,
                                 .root_copy_from = img };
    struct qvm_create_opts k = { .name = "kid", .label = "red", .hvm = true, .template = "tpl" };
    struct qvm_create_opts s = { .name = "solo", .label = "blue", .hvm = true,
                                 .root_copy_from = img };
    struct qvm_create_opts n = { .name = "net", .label = "red", .net = true, .standalone = true };
    if (!create(&t) || !create(&k) || !create(&s) || !create(&n)) {
        ok(0, "a database with a template HVM, its child, a standalone HVM and a NetVM");
        return;
    }

    /* A running VM is refused; its template, halted, is not. */
    ok(test_domain("kid", &err) == 0, "the child's domain runs (test driver)");
    struct qvm *vm;
    ok(clone("kid", "kid2", NULL, 0, NULL, NULL, &err) < 0 &&
       strstr(err.msg, "Cannot clone 'kid': the VM is") && strstr(err.msg, "shut it down first"),
       "a running VM is not cloned: %s", err.msg);
    ok(nothing_of("kid2"), "and nothing of the clone is left");

    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&text, &tlen);
    if (!ok(clone("tpl", "tpl2", mem, -1, NULL, &vm, &err) == 0 && vm->cls == QVM_TEMPLATE_HVM,
            "a template whose child runs is cloned, into a template"))
        diag("%s", err.msg);
    fclose(mem);
    ok(text && strstr(text, "--> Copying root.img (128.0 MiB, 40.0 MiB of data)") &&
       strstr(text, "--> Copied root.img"), "its copies are shown from start to end");
    bool reflink = text && strstr(text, "by reflink");
    if (!reflink)
        ok(text && strstr(text, "--> root.img: 2% (1.0 MiB of 40.0 MiB)") &&
           strstr(text, "--> root.img: 42% (17.0 MiB of 40.0 MiB)"),
           "with how far each has come (its data: 1 MiB, then 39 MiB in steps of 16)");
    else
        ok(1, "# SKIP the copy was a reflink: no steps to show");
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
        diag("  %s", line);
    free(text);
    snprintf(path, sizeof path, "%s/vm-templates/tpl2/root.img", base);
    snprintf(img, sizeof img, "%s/vm-templates/tpl/root.img", base);
    ok(same_contents(img, path), "its root image is the template's");
    vmm_destroy(&q.vmm, "kid", &err);

    struct qvm *net2;
    if (!ok(clone("net", "net2", NULL, 0, NULL, &net2, &err) == 0, "a NetVM is cloned"))
        diag("%s", err.msg);
    const struct qvm *net1 = qubes_find_vm(&q, "net", &err);
    ok(net1 && net2 && net2->cls == QVM_NET && net2->netid > 0 && net2->netid != net1->netid,
       "its clone is a NetVM with a netid of its own (%d, the source's %d)",
       net2 ? net2->netid : -1, net1 ? net1->netid : -1);

    /* Stopped: nothing is cloned. */
    volatile sig_atomic_t stop = 1;
    ok(clone("solo", "c1", NULL, 0, &stop, NULL, &err) < 0 && strstr(err.msg, "interrupted") &&
       strstr(err.msg, "nothing was cloned"), "an interrupted clone fails: %s", err.msg);
    ok(nothing_of("c1"), "and leaves nothing");

    /* The source written to during the copy (it was started and stopped). */
    mem = hook_stream(write_to_solo_root);
    ok(clone("solo", "c2", mem, 0, NULL, NULL, &err) < 0 &&
       strstr(err.msg, "the files of 'solo' changed while they were copied") &&
       strstr(err.msg, "solo/root.img"), "a source written to during the copy: refused: %s",
       err.msg);
    fclose(mem);
    ok(nothing_of("c2"), "and nothing of the clone is left");

    /* No lock is held during the copy: another tool may create a VM of the
     * clone's name meanwhile, and the clone then gives way. */
    alarm(60);  /* a lock held here would wait for ever */
    mem = hook_stream(create_c3_meanwhile);
    ok(clone("solo", "c3", mem, 0, NULL, NULL, &err) < 0 && strstr(err.msg, "already exists"),
       "a VM of its name made during the copy: the clone gives way: %s", err.msg);
    fclose(mem);
    alarm(0);
    snprintf(path, sizeof path, "%s/appvms", base);
    ok(qubes_load_for_reading(&q, &err) == 0 && qubes_find_vm(&q, "c3", &err) &&
       (qubes_find_vm(&q, "c3", &err))->cls == QVM_HVM && count_entries(path, "c3") == 1,
       "the other VM keeps its record and directory, and no copy is left beside it");
    qubes_close(&q);
}

int main(void)
{
    snprintf(base, sizeof base, "%s/qubes-clone.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(base))
        return 99;
    chmod(base, 0711);
    test_storage(base);
    test_clone();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        return 99;
    return done_testing();
}

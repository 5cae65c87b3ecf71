/* What a qcow2 image's header says its backing file is
 * (storage_qcow2_backing): layers made by qemu-img over raw and qcow2
 * files, named absolutely or relatively, an image without a backing file,
 * and headers that are not qcow2 or lie about where the name is; and a
 * backing file made read-only to all but its owner
 * (storage_backing_readonly). Needs qemu-img. */
#include "../../orchestrator/util.h"
#include "../../storage/storage.h"
#include "../testutil.h"

static char dir[] = "/tmp/qubes-storage-XXXXXX";

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* Overwrites `len` bytes of `file` at `off`. */
static int patch(const char *file, off_t off, const void *bytes, size_t len)
{
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    int rc = fd >= 0 && pwrite(fd, bytes, len, off) == (ssize_t)len ? 0 : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

static void copy(const char *from, const char *to)
{
    size_t len;
    char *b = slurp(from, &len);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (!b || fd < 0 || write(fd, b, len) != (ssize_t)len)
        exit(99);
    close(fd);
    free(b);
}

int main(void)
{
    struct qerr err;
    char raw[512], base[512], layer[512], top[512], bad[512], link[512], path[4096], fmt[16];
    if (!mkdtemp(dir))
        return 99;
    path_in(raw, sizeof raw, "root.img");
    path_in(base, sizeof base, "set.root.qcow2");
    path_in(layer, sizeof layer, "layer.qcow2");
    path_in(top, sizeof top, "top.qcow2");
    path_in(bad, sizeof bad, "bad.qcow2");
    path_in(link, sizeof link, "link.qcow2");
    if (storage_create_sparse(raw, 1 << 20, &err) < 0 ||
        storage_create_layer(raw, "raw", base, &err) < 0 ||
        storage_create_layer(base, "qcow2", layer, &err) < 0) {
        fprintf(stderr, "test_storage: %s\n", err.msg);
        return 99;
    }

    int rc = storage_qcow2_backing(layer, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc == 0 && strcmp(path, base) == 0 && strcmp(fmt, "qcow2") == 0,
       "a layer over a qcow2 image names it and its format (%s, %s)", path, fmt);
    rc = storage_qcow2_backing(base, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc == 0 && strcmp(path, raw) == 0 && strcmp(fmt, "raw") == 0,
       "and that one names the raw image under it (%s, %s)", path, fmt);

    /* Named relatively: from the image's directory, not ours. */
    if (storage_create_layer(base, "qcow2", top, &err) < 0 ||
        storage_rebase_layer(top, "set.root.qcow2", "qcow2", &err) < 0)
        return 99;
    rc = storage_qcow2_backing(top, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc == 0 && strcmp(path, base) == 0, "a relative name is taken from the image's directory (%s)",
       path);

    /* No backing file at all: a fresh qcow2 of its own. */
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", bad, "1M", NULL };
    if (qrun_program(argv, &err) < 0)
        return 99;
    rc = storage_qcow2_backing(bad, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc == 1 && path[0] == '\0', "an image without a backing file says so (1, no path)");

    rc = storage_qcow2_backing(raw, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc < 0 && strstr(err.msg, "is not a qcow2 image"), "a raw file is refused: %s", err.msg);

    /* A header that puts the name past the end of what is read, or gives
     * it no length, or a length beyond what qcow2 allows. */
    const struct {
        off_t off;
        unsigned char bytes[8];
        size_t len;
        const char *what;
    } lies[] = {
        { 8, { 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0 }, 8, "a name beyond the header" },
        { 16, { 0, 0, 0, 0 }, 4, "a name of no length" },
        { 16, { 0, 0, 0x10, 0 }, 4, "a name of 4096 bytes" },
    };
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        copy(layer, bad);
        if (patch(bad, lies[i].off, lies[i].bytes, lies[i].len) < 0)
            return 99;
        rc = storage_qcow2_backing(bad, path, sizeof path, fmt, sizeof fmt, &err);
        ok(rc < 0 && strstr(err.msg, "not where its header says") && path[0] == '\0',
           "%s is refused: %s", lies[i].what, err.msg);
    }

    /* A NUL inside the name. */
    copy(layer, bad);
    unsigned char h[20];
    int fd = open(bad, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        return 99;
    close(fd);
    off_t name_at = (off_t)h[12] << 24 | (off_t)h[13] << 16 | (off_t)h[14] << 8 | h[15];
    if (patch(bad, name_at + 2, "", 1) < 0)
        return 99;
    rc = storage_qcow2_backing(bad, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc < 0 && strstr(err.msg, "NUL"), "a name holding a NUL byte is refused: %s", err.msg);

    /* A link is not followed. */
    if (symlink(layer, link) < 0)
        return 99;
    rc = storage_qcow2_backing(link, path, sizeof path, fmt, sizeof fmt, &err);
    ok(rc < 0 && strstr(err.msg, "cannot open"), "a symbolic link is not followed: %s", err.msg);

    /* A backing file loses its group and other write bits, nothing else;
     * a link or a directory is refused. */
    struct stat st;
    chmod(raw, 06662);
    ok(storage_backing_readonly(raw, &err) == 0 && stat(raw, &st) == 0 &&
       (st.st_mode & 07777) == 06640, "a backing file 6662 becomes 6640");
    ok(storage_backing_readonly(raw, &err) == 0 && stat(raw, &st) == 0 &&
       (st.st_mode & 07777) == 06640, "and stays so");
    chmod(raw, 0666);
    if (unlink(link) < 0 || symlink(raw, link) < 0)
        return 99;
    ok(storage_backing_readonly(link, &err) < 0 && stat(raw, &st) == 0 &&
       (st.st_mode & 07777) == 0666, "a link to one is not followed: %s", err.msg);
    ok(storage_backing_readonly(dir, &err) < 0 && strstr(err.msg, "is not a file"),
       "a directory is refused: %s", err.msg);

    storage_remove_tree(dir, NULL);
    return done_testing();
}

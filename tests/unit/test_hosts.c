/* The host registry (orchestrator/hosts.c): names and URIs checked, the
 * writer refusing to run without the qubes.xml write lock, a round trip,
 * and hostile files refused with the file, the line and the problem. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../orchestrator/hosts.h"
#include "../../orchestrator/qubes.h"
#include "../testutil.h"

static struct qubes q;

int main(void)
{
    char dir[] = "/tmp/qubes-hosts.XXXXXX";
    if (!mkdtemp(dir))
        return 99;
    char base[4200], run[4200], path[4200];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_RUN_DIR", run, 1);
    struct qerr err;
    if (qubes_open(&q, true, &err) < 0 || qubes_load_for_writing(&q, true, &err) < 0 ||
        qubes_save_and_unlock(&q, &err) < 0 || qhosts_path(&q.cfg, path, sizeof path, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 99;
    }

    const struct { const char *name; const char *expect; } names[] = {
        { "h2", NULL }, { "rack-1_b", NULL },
        { "local", "the local host's" }, { "", "cannot be empty" }, { "2h", "must start with a letter" },
        { "a/b", "only letters" }, { "../x", "must start with a letter" },
        { "abcdefghijabcdefghijabcdefghijab", "longer than 31" }, { "none", "reserved word" },
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int rc = qhost_check_name(names[i].name, &err);
        if (names[i].expect)
            ok(rc < 0 && strstr(err.msg, names[i].expect) && strstr(err.msg, "host name"),
               "host name '%s' refused (%s)", names[i].name, rc < 0 ? err.msg : "accepted");
        else
            ok(rc == 0, "host name '%s' accepted", names[i].name);
    }
    const struct { const char *uri; const char *expect; } uris[] = {
        { "qemu+tcp://127.0.0.2:16510/system", NULL },
        { "qemu+tls://host.example/system", NULL },
        { "qemu+ssh://root@host.example/system?keyfile=/root/.ssh/k", NULL },
        { "qemu:///system", "names no host" }, { "qemu+ssh://user@/system", "names no host" },
        { "test:///default", "a local driver" }, { "libxl://", "a local driver" },
        { "host.example", "not SCHEME://HOST/PATH" }, { "://h/x", "not SCHEME://HOST/PATH" },
        { "qemu+tcp://h/system x", "character 20" }, { "qemu+tcp://h/\"system", "character 14" },
        { "qemu+tcp://h/sys\ntem", "character 17" }, { "qe mu://h/", "character 3" },
        { "q$mu://h/", "not a URI scheme" }, { "", "cannot be empty" },
    };
    for (size_t i = 0; i < sizeof uris / sizeof *uris; i++) {
        int rc = qhost_check_uri(uris[i].uri, &err);
        if (uris[i].expect)
            ok(rc < 0 && strstr(err.msg, uris[i].expect), "URI %zu refused (%s)", i + 1,
               rc < 0 ? err.msg : "accepted");
        else
            ok(rc == 0, "URI %s accepted", uris[i].uri);
    }

    struct qhosts h;
    ok(qhosts_load(path, &h, &err) == 0 && h.n == 0, "no registry: no hosts");
    ok(qhosts_add(&h, "h2", "qemu+tcp://127.0.0.2:16510/system", &err) == 0 &&
           qhosts_add(&h, "h3", "qemu+tls://h3.example/system", &err) == 0, "two hosts added");
    ok(qhosts_add(&h, "h2", "qemu+tcp://other/system", &err) < 0 && strstr(err.msg, "'h2' is registered"),
       "a taken name refused (%s)", err.msg);
    ok(qhosts_add(&h, "h4", "qemu+tls://h3.example/system", &err) < 0 && strstr(err.msg, "is host 'h3'"),
       "a taken URI refused (%s)", err.msg);
    ok(qhosts_write(&q.db, path, &h, &err) < 0 && strstr(err.msg, "write lock") && access(path, F_OK) < 0,
       "written without the qubes.xml write lock: refused, nothing written (%s)", err.msg);
    ok(qubes_load_for_writing(&q, false, &err) == 0 && qhosts_write(&q.db, path, &h, &err) == 0,
       "written under the write lock");
    qubes_unlock(&q);
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640, "mode 0640");
    struct qhosts back;
    ok(qhosts_load(path, &back, &err) == 0 && back.n == 2 && strcmp(back.host[1].name, "h3") == 0 &&
           strcmp(back.host[0].uri, "qemu+tcp://127.0.0.2:16510/system") == 0,
       "read back the same, in order");
    ok(qhosts_remove(&back, "h2", &err) == 0 && back.n == 1 && !qhosts_find(&back, "h2") &&
           qhosts_find(&back, "h3"), "remove takes one away");
    ok(qhosts_remove(&back, "h2", &err) < 0 && strstr(err.msg, "no host named 'h2'"),
       "and an unknown one is an error (%s)", err.msg);

    const struct { const char *text, *expect; } bad[] = {
        { "<QubesHosts><host name=\"a\"/></QubesHosts>", ":1: a host without a uri" },
        { "<QubesHosts>\n<host uri=\"qemu+tcp://h/system\"/></QubesHosts>", ":2: a host without a name" },
        { "<QubesHosts><host name=\"local\" uri=\"qemu+tcp://h/system\"/></QubesHosts>", "the local host's" },
        { "<QubesHosts><host name=\"a\" uri=\"qemu:///system\"/></QubesHosts>", "names no host" },
        { "<QubesHosts><host name=\"a\" uri=\"qemu+tcp://h/s\"/><host name=\"a\" uri=\"qemu+tcp://i/s\"/></QubesHosts>",
          "'a' is registered already" },
        { "<QubesHosts><vm name=\"a\"/></QubesHosts>", "unknown element <vm>" },
        { "<Other/>", "root element is not QubesHosts" },
        { "<QubesHosts>", "not well-formed" },
        { "<!DOCTYPE x [<!ENTITY a \"b\">]><QubesHosts/>", "DOCTYPE is not allowed" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spit(path, bad[i].text);
        int rc = qhosts_load(path, &h, &err);
        ok(rc < 0 && strstr(err.msg, bad[i].expect) && strstr(err.msg, path) && h.n == 0,
           "bad registry %zu refused, naming the file and the problem (%s)", i + 1,
           rc < 0 ? err.msg : "accepted");
    }
    unlink(path);
    ok(mkfifo(path, 0600) == 0 && qhosts_load(path, &h, &err) < 0 && strstr(err.msg, "not a regular file"),
       "a FIFO in its place is refused at once (%s)", err.msg);
    unlink(path);
    ok(symlink("/etc/passwd", path) == 0 && qhosts_load(path, &h, &err) < 0,
       "a symbolic link is not followed (%s)", err.msg);
    unlink(path);
    char *big = malloc(300 * 1024);
    memset(big, ' ', 300 * 1024 - 1);
    big[300 * 1024 - 1] = '\0';
    spit(path, big);
    free(big);
    ok(qhosts_load(path, &h, &err) < 0 && strstr(err.msg, "at most"), "a file of 300 KiB is refused (%s)",
       err.msg);
    qubes_close(&q);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("cannot remove %s", dir);
    return done_testing();
}

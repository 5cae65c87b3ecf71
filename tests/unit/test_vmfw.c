/* The host-side firewall of a VM's interface (orchestrator/vmfw.c): the
 * nft scripts for a few VMs, compared with the reviewed files in
 * tests/vmfw/; what is refused before a script is written (names and
 * addresses that are not what they claim, host names in rules); expired
 * rules left out and the next expiry reported; the runner, against stand-ins
 * for nft. Needs neither root nor nft (tests/t/36-vmfw.t runs the scripts),
 * but for the last part: libnftables in a network namespace of this
 * process's own, skipped where none can be made.
 *
 * Usage: test_vmfw EXPECTED_DIR [OUT_DIR]; with OUT_DIR, each script made
 * is written there too (NAME.nft), for a diff. */
#include <linux/netlink.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../orchestrator/vmfw.h"
#include "../tap.h"
#include "../testutil.h"

static const char *expected_dir, *out_dir;

#define NOW 1000000000LL

static void add(struct qfw *fw, const char *address, int netmask, const char *proto, int port,
                int toport, long long expire)
{
    struct qfw_rule r = { .netmask = netmask, .port = port, .toport = toport, .expire = expire };
    snprintf(r.address, sizeof r.address, "%s", address);
    snprintf(r.proto, sizeof r.proto, "%s", proto);
    struct qerr err;
    if (qfw_add(fw, &r, &err) < 0)
        exit(99);
}

/* The AppVM with qid 1 behind netid 9, and its gateway. */
static struct vmfw_iface appvm(void)
{
    return (struct vmfw_iface){
        .ifname = "qvm1", .mac = "00:16:3e:5e:6c:01", .ip = "10.137.9.3",
        .gw_mac = "00:16:3e:5e:6d:09", .gw_ip = { "10.137.9.1", "10.138.9.1" },
        .apply_rules = true,
    };
}

static void compare(const char *name, const char *script)
{
    char path[4096];
    if (out_dir) {
        snprintf(path, sizeof path, "%s/%s.nft", out_dir, name);
        spit(path, script);
    }
    snprintf(path, sizeof path, "%s/%s.nft", expected_dir, name);
    char *want = slurp(path, NULL);
    ok(want && strcmp(want, script) == 0, "%s: the script is the reviewed %s", name, path);
    free(want);
}

static void check_script(const char *name, const struct vmfw_iface *ifc, const struct qfw *fw,
                         long long want_next)
{
    char *script;
    long long next = -1;
    struct qerr err = { 0 };
    int rc = vmfw_script(ifc, fw, NOW, &script, &next, &err);
    if (!ok(rc == 0, "%s: a script (%s)", name, rc ? err.msg : "no error"))
        return;
    ok(next == want_next, "%s: the next expiry is %lld (got %lld)", name, want_next, next);
    compare(name, script);
    free(script);
}

static void deny_policy_with_rules(void)
{
    struct qfw fw;
    qfw_defaults(&fw);
    fw.allow = false;
    fw.icmp = false;
    add(&fw, "192.0.2.1", 32, "tcp", 1234, 0, 0);
    add(&fw, "10.1.2.3", 16, "udp", 1000, 2000, NOW + 600);
    add(&fw, "198.51.100.0", 24, "any", 0, 0, NOW);       /* expired just now */
    add(&fw, "example.org", 32, "any", 0, 0, NOW - 5);    /* expired: not even read */
    add(&fw, "203.0.113.0", 24, "tcp", 0, 0, NOW + 60);
    struct vmfw_iface ifc = appvm();
    check_script("appvm-deny", &ifc, &fw, NOW + 60);
    qfw_free(&fw);
}

static void allow_policy_dispvm(void)
{
    struct qfw fw;
    qfw_defaults(&fw);
    fw.dns = false;
    add(&fw, "198.51.100.7", 32, "any", 0, 0, 0);
    add(&fw, "0.0.0.0", 0, "udp", 5000, 5000, 0);
    add(&fw, "0.0.0.0", 0, "any", 0, 0, NOW + 1);
    struct vmfw_iface ifc = {
        .ifname = "qdisp12", .mac = "00:16:3E:7C:8B:0C", .ip = "10.138.9.13",
        .gw_mac = "00:16:3e:5e:6d:09", .gw_ip = { "10.138.9.1" }, .apply_rules = true,
    };
    check_script("dispvm-allow", &ifc, &fw, NOW + 1);
    qfw_free(&fw);
}

static void proxyvm_uplink(void)
{
    const char *nets[] = { "10.137.7.0/24", "10.138.7.9/24" };
    struct vmfw_iface ifc = {
        .ifname = "qvm5", .mac = "00:16:3e:5e:6c:05", .ip = "10.137.1.7",
        .gw_mac = "00:16:3e:5e:6d:01", .gw_ip = { "10.137.1.1", "10.138.1.1" },
        .extra = nets, .n_extra = 2, .apply_rules = false,
    };
    check_script("proxyvm-uplink", &ifc, NULL, 0);
    /* Its own rules: for its own address only, DNS to its gateway kept. */
    struct qfw fw;
    qfw_defaults(&fw);
    fw.allow = false;
    fw.dns = false;
    add(&fw, "192.0.2.0", 24, "tcp", 443, 0, 0);
    ifc.apply_rules = true;
    check_script("proxyvm-uplink-rules", &ifc, &fw, 0);
    qfw_free(&fw);
}

static void removal(void)
{
    char *script;
    struct qerr err = { 0 };
    if (ok(vmfw_remove_script("qvm1", &script, &err) == 0, "remove: a script")) {
        compare("remove", script);
        free(script);
    }
    ok(vmfw_remove_script("qvm1;x", &script, &err) < 0 && strstr(err.msg, "qvm1;x") &&
           !script, "remove: a bad interface name is refused, no script");
}

/* vmfw_script on `ifc` fails, naming `needle`, and makes no script. */
static void refused(const char *what, const struct vmfw_iface *ifc, const struct qfw *fw,
                    const char *needle)
{
    char *script = (char *)"untouched";
    long long next;
    struct qerr err = { 0 };
    int rc = vmfw_script(ifc, fw, NOW, &script, &next, &err);
    ok(rc < 0 && strstr(err.msg, needle) && !script, "%s is refused (\"%s\")", what, err.msg);
}

static void refusals(void)
{
    struct qfw fw;
    qfw_defaults(&fw);
    struct vmfw_iface ifc;
    static const char *const names[] = { "", "Qvm1", "qvm-1", "qvm1 ", "qvm1\"", "qvm123456789abcd",
                                         "from_vm" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        ifc = appvm();
        ifc.ifname = names[i];
        char what[64];
        snprintf(what, sizeof what, "interface name \"%s\"", names[i]);
        refused(what, &ifc, &fw, "interface name");
    }
    ifc = appvm();
    ifc.ifname = NULL;
    refused("no interface name", &ifc, &fw, "interface name");
    ifc = appvm();
    ifc.ifname = "qvm123456789abc";
    char *script;
    long long next;
    struct qerr err = { 0 };
    ok(vmfw_script(&ifc, &fw, NOW, &script, &next, &err) == 0, "15 characters are a name");
    free(script);

    static const char *const macs[] = { "00:16:3e:5e:6c", "00-16-3e-5e-6c-01",
                                        "00:16:3e:5e:6c:01:02", "0x:16:3e:5e:6c:01",
                                        " 0:16:3e:5e:6c:01", "00:16:3e:5e:6c:0g" };
    for (size_t i = 0; i < sizeof macs / sizeof *macs; i++) {
        ifc = appvm();
        ifc.mac = macs[i];
        char what[64];
        snprintf(what, sizeof what, "MAC \"%s\"", macs[i]);
        refused(what, &ifc, &fw, "not a MAC address");
    }
    ifc = appvm();
    ifc.mac = "01:00:5e:00:00:01";
    refused("a multicast MAC", &ifc, &fw, "not the address of one interface");
    ifc = appvm();
    ifc.gw_mac = "00:00:00:00:00:00";
    refused("a gateway MAC of zeros", &ifc, &fw, "gateway MAC");
    ifc = appvm();
    ifc.gw_mac = "00:16:3E:5E:6C:01";
    refused("the VM's own MAC as its gateway's", &ifc, &fw, "the same MAC");

    static const char *const ips[] = { "10.137.9", "10.137.9.300", "10.137.9.3/24", "0.0.0.0",
                                       "::1", "10.137.9.3;" };
    for (size_t i = 0; i < sizeof ips / sizeof *ips; i++) {
        ifc = appvm();
        ifc.ip = ips[i];
        char what[64];
        snprintf(what, sizeof what, "address \"%s\"", ips[i]);
        refused(what, &ifc, &fw, "not an IPv4 address");
    }
    ifc = appvm();
    ifc.gw_ip[0] = NULL;
    refused("no gateway address", &ifc, &fw, "gateway address");
    ifc = appvm();
    ifc.gw_ip[1] = "10.138.9.256";
    refused("a bad second gateway address", &ifc, &fw, "gateway address \"10.138.9.256\"");

    static const char *const prefixes[] = { "10.137.7.0/0", "10.137.7.0/33", "10.137.7.0/2a",
                                            "10.137.7.0/", "proxy/24", "10.137.7.0/024" };
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        ifc = appvm();
        ifc.extra = &prefixes[i];
        ifc.n_extra = 1;
        char what[64];
        snprintf(what, sizeof what, "extra source \"%s\"", prefixes[i]);
        refused(what, &ifc, &fw, "not an IPv4 network");
    }

    ifc = appvm();
    refused("a VM with rules to apply and none given", &ifc, NULL, "no firewall rules");
    add(&fw, "example.org", 32, "tcp", 443, 0, NOW + 10);
    refused("a rule naming a host", &ifc, &fw, "rule 1: \"example.org\" is not an IPv4 address");
    fw.rules[0].expire = NOW;
    ok(vmfw_script(&ifc, &fw, NOW, &script, &next, &err) == 0 && next == 0 &&
           !strstr(script, "example.org"),
       "the same rule, expired, is left out (no error, no next expiry)");
    free(script);
    fw.rules[0] = (struct qfw_rule){ .address = "192.0.2.1", .netmask = 32, .proto = "any",
                                     .port = 80 };
    refused("a port without tcp or udp", &ifc, &fw, "rule 1: ports need the protocol tcp or udp");
    fw.rules[0] = (struct qfw_rule){ .address = "192.0.2.1", .netmask = 32, .proto = "udp",
                                     .port = 90, .toport = 80 };
    refused("a port range that ends before it begins", &ifc, &fw, "rule 1: ports 90-80");
    fw.rules[0].netmask = 33;
    refused("a netmask of 33", &ifc, &fw, "rule 1: netmask 33");
    snprintf(fw.rules[0].proto, sizeof fw.rules[0].proto, "ip");
    fw.rules[0].netmask = 32;
    refused("a protocol that is not tcp, udp or any", &ifc, &fw, "rule 1: protocol \"ip\"");
    qfw_free(&fw);
}

/* A stand-in for nft, a shell script: `body` after the #! line. */
static void fake_nft(const char *path, const char *body)
{
    char text[1024];
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    spit(path, text);
    chmod(path, 0755);
}

static void runner(const char *scratch)
{
    char nft[4200], got[4200], cmd[9000];
    snprintf(nft, sizeof nft, "%s/nft", scratch);
    snprintf(got, sizeof got, "%s/stdin", scratch);
    setenv("QUBES_NFT", nft, 1);
    struct qerr err = { 0 };
    const char *script = "add table bridge qubes\n# a second line\n";

    snprintf(cmd, sizeof cmd, "[ \"$*\" = '-f -' ] || exit 3; cat > '%s'", got);
    fake_nft(nft, cmd);
    int rc = vmfw_apply(script, &err);
    char *seen = slurp(got, NULL);
    ok(rc == 0 && seen && strcmp(seen, script) == 0,
       "apply: runs QUBES_NFT with -f -, the script on its standard input (%s)",
       rc ? err.msg : "ok");
    free(seen);

    fake_nft(nft, "cat >/dev/null; echo '/dev/stdin:1:1-3: Error: no such thing' >&2; exit 1");
    rc = vmfw_apply(script, &err);
    ok(rc < 0 && strstr(err.msg, "failed (status 1): /dev/stdin:1:1-3: Error: no such thing") &&
           strstr(err.msg, nft), "apply: nft's failure reports its status and what it said (%s)",
       err.msg);

    /* nft stops reading at its first error: a long script must not block. */
    fake_nft(nft, "head -c 10 >/dev/null; echo stopped >&2; exit 1");
    size_t big = 4 << 20;
    char *long_script = malloc(big + 1);
    memset(long_script, '#', big);
    long_script[big] = '\0';
    rc = vmfw_apply(long_script, &err);
    free(long_script);
    ok(rc < 0 && strstr(err.msg, "stopped"), "apply: an nft that reads only part of a 4 MiB "
       "script and fails is reported, not waited for (%s)", err.msg);

    fake_nft(nft, "kill -TERM $$");
    rc = vmfw_apply(script, &err);
    ok(rc < 0 && strstr(err.msg, "signal 15"), "apply: an nft killed by a signal (%s)", err.msg);

    snprintf(nft, sizeof nft, "%s/no-such-nft", scratch);
    setenv("QUBES_NFT", nft, 1);
    rc = vmfw_apply(script, &err);
    ok(rc < 0 && strstr(err.msg, "cannot run") && strstr(err.msg, "no-such-nft"),
       "apply: an nft that is not there (%s)", err.msg);
    unsetenv("QUBES_NFT");
}

/* nft's errors quote the line at fault under their first line: a TAP
 * line takes the first. */
static const char *first_line(const char *msg)
{
    static char line[QERR_MSG_MAX];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(msg, "\n"), msg);
    return line;
}

/* This process in a network namespace of its own (for one who is not root,
 * in a user namespace of its own too), where nothing else sees nft's
 * changes. */
static int own_netns(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid == 0)
        return unshare(CLONE_NEWNET);
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
        return -1;
    char map[64];
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    if (spit("/proc/self/setgroups", "deny\n") < 0 || spit("/proc/self/uid_map", map) < 0)
        return -1;
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    return spit("/proc/self/gid_map", map);
}

/* Netfilter netlink sockets that a program run from here would inherit. */
static int open_across_exec(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) {
        int domain, protocol, flags = fcntl(fd, F_GETFD);
        socklen_t dl = sizeof domain, pl = sizeof protocol;
        if (flags >= 0 && !(flags & FD_CLOEXEC) &&
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 && domain == AF_NETLINK &&
            getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &pl) == 0 &&
            protocol == NETLINK_NETFILTER)
            n++;
    }
    return n;
}

static int apply_n(const char *script, int n)
{
    struct qerr err;
    int failed = 0;
    for (int i = 0; i < n; i++)
        if (vmfw_apply(script, &err) < 0) {
            diag("pid %d: %s", (int)getpid(), first_line(err.msg));
            failed++;
        }
    return failed;
}

/* libnftables, as vmfw_apply uses it without QUBES_NFT: the same scripts,
 * the same one transaction, nft's own words in errors. */
static void library(const char *scratch)
{
    struct qerr err = { 0 };
    unsetenv("QUBES_NFT");
    if (own_netns() < 0) {
        ok(1, "library # skip no network namespace of our own here: %s", strerror(errno));
        return;
    }
    if (vmfw_preload(&err) < 0) {
        ok(1, "library # skip %s", err.msg);
        return;
    }
    ok(1, "library: preloaded in a network namespace of our own");
    int across = open_across_exec();
    ok(across == 0, "library: its netlink socket is not inherited across exec (%d would be)",
       across);

    struct vmfw_iface ifc = appvm();
    struct qfw fw;
    qfw_defaults(&fw);
    char *install, *removal;
    long long next;
    if (vmfw_script(&ifc, &fw, NOW, &install, &next, &err) < 0 ||
        vmfw_remove_script("qvm1", &removal, &err) < 0)
        exit(99);
    int rc = vmfw_apply(install, &err);
    ok(rc == 0, "library: a VM's chains installed (%s)", rc ? first_line(err.msg) : "ok");
    rc = vmfw_apply(install, &err);
    ok(rc == 0, "library: and replaced (%s)", rc ? first_line(err.msg) : "ok");
    rc = vmfw_apply(removal, &err) < 0 || vmfw_apply(removal, &err) < 0 ? -1 : 0;
    ok(rc == 0, "library: removed, and removed again (%s)", rc ? first_line(err.msg) : "ok");

    rc = vmfw_apply("add table bridge qubes_t\nadd chain bridge qubes_t c\n"
                    "add rule bridge qubes_t c jump nosuch\n", &err);
    ok(rc < 0 && strstr(err.msg, "libnftables.so.1 failed (returned -1): ") &&
           strstr(err.msg, ":3:") && strstr(err.msg, "Error: ") &&
           strstr(err.msg, "add rule bridge qubes_t c jump nosuch"),
       "library: a failure names the library, and nft's error the line at fault (%s)",
       first_line(err.msg));
    rc = vmfw_apply("delete table bridge qubes_t\n", &err);
    ok(rc < 0 && strstr(err.msg, "No such file or directory"),
       "library: nothing of a script that failed was applied (%s)", first_line(err.msg));
    rc = vmfw_apply("this is not nft\n", &err);
    ok(rc < 0 && strstr(err.msg, "syntax error"), "library: a syntax error (%s)",
       first_line(err.msg));
    rc = vmfw_apply(install, &err);
    ok(rc == 0, "library: the next script after failures applies (%s)",
       rc ? first_line(err.msg) : "ok");

    /* A child inherits the context: it must make its own, or the two
     * would take each other's answers from one socket. */
    pid_t pid = fork();
    if (pid == 0)
        exit(apply_n(install, 50) ? 1 : 0);
    int failed = apply_n(install, 50), st = -1;
    waitpid(pid, &st, 0);
    ok(failed == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
       "library: a forked child and its parent apply at the same time, 50 times each "
       "(parent: %d failed; child: status %d)", failed, WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    /* The context's socket stays where it was made; the scripts go where
     * the process is. */
    rc = vmfw_apply("add table bridge qubes_here\n", &err);
    if (rc == 0 && unshare(CLONE_NEWNET) == 0) {
        rc = vmfw_apply("delete table bridge qubes_here\n", &err);
        ok(rc < 0, "library: after a move to another network namespace, scripts apply there "
           "(%s)", rc ? first_line(err.msg) : "the table of the one before was found");
        rc = vmfw_apply(install, &err);
        ok(rc == 0, "library: a VM's chains installed there (%s)",
           rc ? first_line(err.msg) : "ok");
    } else {
        ok(0, "library: a table, then another network namespace (%s)",
           rc ? first_line(err.msg) : strerror(errno));
    }

    char nft[4200], got[4200], cmd[9000];
    snprintf(nft, sizeof nft, "%s/nft", scratch);
    snprintf(got, sizeof got, "%s/stdin.lib", scratch);
    snprintf(cmd, sizeof cmd, "cat > '%s'", got);
    fake_nft(nft, cmd);
    setenv("QUBES_NFT", nft, 1);
    rc = vmfw_apply(install, &err);
    char *seen = slurp(got, NULL);
    ok(rc == 0 && seen && strcmp(seen, install) == 0,
       "library: loaded or not, QUBES_NFT is run when it is set (%s)",
       rc ? first_line(err.msg) : "ok");
    unsetenv("QUBES_NFT");
    free(seen);
    free(install);
    free(removal);
    qfw_free(&fw);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: test_vmfw EXPECTED_DIR [OUT_DIR]\n");
        return 2;
    }
    expected_dir = argv[1];
    out_dir = argc == 3 ? argv[2] : NULL;
    char scratch[] = "/tmp/qubes-vmfw.XXXXXX";
    if (!mkdtemp(scratch))
        return 99;

    deny_policy_with_rules();
    allow_policy_dispvm();
    proxyvm_uplink();
    removal();
    refusals();
    runner(scratch);
    library(scratch);

    rm_scratch(scratch);
    return done_testing();
}

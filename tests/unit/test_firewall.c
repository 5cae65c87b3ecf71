/* Firewall rules (orchestrator/firewall.c): the writer refuses to run
 * without the qubes.xml write lock and takes none itself; files round-trip
 * in the original's format; files the original wrote without a protocol
 * read as it read them; expired rules are dropped; bad files and bad rules
 * get errors naming the problem. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../orchestrator/firewall.h"
#include "../../orchestrator/qubes.h"
#include "../testutil.h"

static struct qubes q;

static void setup(const char *dir)
{
    char base[4200], run[4200];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_RUN_DIR", run, 1);
    setenv("QUBES_OFFLINE", "1", 1);
    struct qerr err;
    if (qubes_open(&q, true, &err) < 0 || qubes_load_for_writing(&q, true, &err) < 0 ||
        qubes_save_and_unlock(&q, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        exit(99);
    }
}

static char *slurp_text(const char *path)
{
    return slurp(path, NULL);
}

int main(void)
{
    char dir[] = "/tmp/qubes-fw.XXXXXX";
    if (!mkdtemp(dir))
        return 99;
    setup(dir);
    struct qerr err;
    char path[4200];
    snprintf(path, sizeof path, "%s/firewall.xml", dir);

    struct qfw fw;
    ok(qfw_load(path, &fw, &err) == 0 && fw.allow && fw.dns && fw.icmp && !fw.yum_proxy &&
           fw.n == 0, "no file: the defaults (allow; DNS, ICMP allowed; update proxy denied)");

    char *words[][3] = { { "10.1.0.0/16", "tcp", "80-90" }, { "192.0.2.53", "udp", "53" },
                         { "192.168.1.1", "any", NULL } };
    int nwords[] = { 3, 3, 2 };
    struct qfw_rule r;
    for (int i = 0; i < 3; i++)
        if (qfw_parse_rule(nwords[i], words[i], &r, &err) < 0 || qfw_add(&fw, &r, &err) < 0)
            diag("rule %d: %s", i, err.msg);
    fw.allow = false;
    fw.yum_proxy = true;

    ok(qfw_write(&q, path, &fw, &err) < 0 && strstr(err.msg, "write lock") &&
           access(path, F_OK) != 0,
       "written without the qubes.xml write lock: refused, nothing written (%s)", err.msg);
    ok(qubes_load_for_writing(&q, false, &err) == 0, "with the write lock held");
    ok(qfw_write(&q, path, &fw, &err) == 0, "it writes");
    qubes_unlock(&q);

    char *text = slurp_text(path);
    ok(text && strstr(text, "<QubesFirewallRules policy=\"deny\" dns=\"allow\" icmp=\"allow\" "
                            "yumProxy=\"allow\">") &&
           strstr(text, "<rule address=\"10.1.0.0\" proto=\"tcp\" netmask=\"16\" port=\"80\" "
                        "toport=\"90\"/>") &&
           strstr(text, "<rule address=\"192.0.2.53\" proto=\"udp\" port=\"53\"/>") &&
           strstr(text, "<rule address=\"192.168.1.1\" proto=\"any\"/>"),
       "in the original's format (netmask only when not 32, ports only when set)");
    free(text);

    struct qfw back;
    ok(qfw_load(path, &back, &err) == 0 && back.n == 3 && !back.allow && back.yum_proxy &&
           back.rules[0].netmask == 16 && back.rules[0].port == 80 && back.rules[0].toport == 90 &&
           strcmp(back.rules[1].address, "192.0.2.53") == 0 && back.rules[2].netmask == 32,
       "and reads back the same");
    qfw_free(&back);
    qfw_free(&fw);

    /* As the original wrote it before rules had a protocol, and with
     * rules that expired. */
    char old[4200];
    snprintf(old, sizeof old, "%s/old.xml", dir);
    spit(old, "<QubesFirewallRules policy=\"allow\" dns=\"deny\" icmp=\"allow\">\n"
              "  <rule address=\"1.2.3.4\" port=\"443\"/>\n"
              "  <rule address=\"5.6.7.8\" netmask=\"24\"/>\n"
              "  <rule address=\"9.9.9.9\" proto=\"tcp\" port=\"22\" expire=\"1000\"/>\n"
              "  <rule address=\"8.8.8.8\" proto=\"udp\" port=\"53\" expire=\"99999999999\"/>\n"
              "</QubesFirewallRules>\n");
    ok(qfw_load(old, &fw, &err) == 0 && fw.n == 3 && !fw.dns && !fw.yum_proxy &&
           strcmp(fw.rules[0].proto, "tcp") == 0 && strcmp(fw.rules[1].proto, "any") == 0 &&
           fw.rules[1].netmask == 24 && strcmp(fw.rules[2].address, "8.8.8.8") == 0 &&
           fw.rules[2].expire == 99999999999LL,
       "an old file: tcp with a port, any without; the expired rule dropped, the other kept");
    qfw_free(&fw);

    const struct { const char *text, *expect; } bad[] = {
        { "<QubesFirewallRules policy=\"maybe\"/>", "policy=\"maybe\": not allow or deny" },
        { "<QubesFirewallRules>\n<rule address=\"1.2.3.4\" netmask=\"40\"/></QubesFirewallRules>",
          ":2: rule: netmask=\"40\": not a number in 0..32" },
        { "<QubesFirewallRules><rule proto=\"tcp\"/></QubesFirewallRules>", "without an address" },
        { "<QubesFirewallRules><rule address=\"a b\"/></QubesFirewallRules>",
          "not an IPv4 address or host name" },
        { "<QubesFirewallRules><rule address=\"1.1.1.1\" proto=\"icmp\"/></QubesFirewallRules>",
          "protocol \"icmp\"" },
        { "<QubesFirewallRules><pass/></QubesFirewallRules>", "unknown element <pass>" },
        { "<Other/>", "root element is not QubesFirewallRules" },
        { "<QubesFirewallRules>", "not well-formed" },
        { "<!DOCTYPE x [<!ENTITY a \"b\">]><QubesFirewallRules/>", "DOCTYPE is not allowed" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spit(old, bad[i].text);
        int rc = qfw_load(old, &fw, &err);
        ok(rc < 0 && strstr(err.msg, bad[i].expect) && strstr(err.msg, old),
           "bad file %zu refused, naming the file and the problem (%s)", i + 1,
           rc < 0 ? err.msg : "accepted");
    }
    /* Not a file of ours: refused before anything reads it. */
    unlink(old);
    ok(mkfifo(old, 0600) == 0 && qfw_load(old, &fw, &err) < 0 && strstr(err.msg, "not a regular file"),
       "a FIFO in place of the rules is refused at once (%s)", err.msg);
    unlink(old);
    ok(symlink("/etc/passwd", old) == 0 && qfw_load(old, &fw, &err) < 0 && strstr(err.msg, old),
       "a symbolic link is not followed (%s)", err.msg);
    unlink(old);

    const struct { int n; char *w[3]; const char *expect; } badr[] = {
        { 1, { "1.2.3.4;reboot" }, "not an IPv4 address or host name" },
        { 2, { "example.org", "any" }, "a host name; a rule takes an IPv4 address" },
        { 1, { "1.2.3.4/33" }, "netmask \"33\"" },
        { 2, { "1.2.3.4", "tcp" }, "needs a port" },
        { 3, { "1.2.3.4", "tcp", "0" }, "not PORT or PORT-PORT" },
        { 3, { "1.2.3.4", "tcp", "90-80" }, "ends before it begins" },
        { 3, { "1.2.3.4", "any", "80" }, "ports need the protocol tcp or udp" },
        { 2, { "1.2.3.4", "gre" }, "protocol \"gre\"" },
    };
    for (size_t i = 0; i < sizeof badr / sizeof *badr; i++)
        ok(qfw_parse_rule(badr[i].n, badr[i].w, &r, &err) < 0 && strstr(err.msg, badr[i].expect),
           "bad rule %zu refused (%s)", i + 1, err.msg);

    qubes_close(&q);
    rm_scratch(dir);
    return done_testing();
}

/* qvm-firewall: show and change a VM's firewall rules (firewall.xml). */
#include <string.h>
#include <time.h>

#include "../firewall.h"
#include "../vmguard.h"
#include "tool.h"

static const char *prog = "qvm-firewall";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME [RULE]\n"
"Show (the default) or change the firewall rules of the VM NAME. The policy\n"
"applies to traffic no rule matches; each rule is an exception to it.\n"
"A RULE is: ADDRESS[/NETMASK] [any | tcp|udp PORT[-TOPORT]], where ADDRESS\n"
"is an IPv4 address (a host name is refused: it would have to be resolved;\n"
"one in a file of the original's is listed, but its VM does not start with a\n"
"netvm until it is removed). Changes are made under the qubes.xml\n"
"write lock and written atomically.\n"
"\n"
"Options:\n"
"  -l, --list             list the settings and rules (default)\n"
"  -a, --add              add RULE\n"
"  -e, --expire WHEN      the added rule expires at WHEN: +SECONDS from now, or\n"
"                         a UNIX time; a running VM loses it then by itself\n"
"  -d, --del N            remove rule number N (as listed)\n"
"  -P, --policy P         allow or deny what no rule matches\n"
"  -D, --dns P            allow or deny DNS\n"
"  -i, --icmp P           allow or deny ICMP\n"
"  -Y, --yum-proxy P      allow or deny the update proxy\n"
"      --version          show the version and the hypervisor backends\n"
"  -h, --help             show this help\n", prog);
}

static bool allow_arg(const char *opt, const char *v)
{
    if (strcmp(v, "allow") == 0)
        return true;
    if (strcmp(v, "deny") != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes allow or deny", opt);
        tool_usage_error(prog, msg);
    }
    return false;
}

/* +SECONDS from now, or a UNIX time; not in the past. */
static long long expire_arg(const char *v)
{
    long n;
    long long now = (long long)time(NULL);
    bool rel = v[0] == '+';
    if (qparse_int(v + rel, 1, rel ? 10L * 365 * 86400 : 1L << 40, &n) < 0)
        tool_usage_error(prog, "--expire takes +SECONDS or a UNIX time");
    long long at = rel ? now + n : n;
    if (at <= now) {
        char msg[96];
        snprintf(msg, sizeof msg, "--expire %s: that time has passed (now is %lld)", v, now);
        tool_usage_error(prog, msg);
    }
    return at;
}

static void list(const char *name, const char *path, const struct qfw *fw)
{
    printf("firewall of '%s' (%s)\n", name, path);
    printf("policy: %s; DNS: %s; ICMP: %s; update proxy: %s\n", fw->allow ? "allow" : "deny",
           fw->dns ? "allow" : "deny", fw->icmp ? "allow" : "deny",
           fw->yum_proxy ? "allow" : "deny");
    if (fw->n == 0) {
        printf("no rules\n");
        return;
    }
    printf("%3s  %s (%s)\n", "#", "rule", fw->allow ? "denied" : "allowed");
    for (size_t i = 0; i < fw->n; i++) {
        char text[400];
        qfw_rule_text(&fw->rules[i], text, sizeof text);
        printf("%3zu  %s\n", i + 1, text);
    }
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "list", no_argument, NULL, 'l' },
        { "add", no_argument, NULL, 'a' },
        { "expire", required_argument, NULL, 'e' },
        { "del", required_argument, NULL, 'd' },
        { "policy", required_argument, NULL, 'P' },
        { "dns", required_argument, NULL, 'D' },
        { "icmp", required_argument, NULL, 'i' },
        { "yum-proxy", required_argument, NULL, 'Y' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool add = false, change = false;
    long del = 0;
    long long expire = 0;
    int policy = -1, dns = -1, icmp = -1, yum = -1, c;
    while ((c = getopt_long(argc, argv, "+lae:d:P:D:i:Y:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': break;
        case 'a': add = change = true; break;
        case 'e': expire = expire_arg(optarg); break;
        case 'd':
            if (qparse_int(optarg, 1, 100000, &del) < 0)
                tool_usage_error(prog, "--del takes a rule number");
            change = true;
            break;
        case 'P': policy = allow_arg("--policy", optarg); change = true; break;
        case 'D': dns = allow_arg("--dns", optarg); change = true; break;
        case 'i': icmp = allow_arg("--icmp", optarg); change = true; break;
        case 'Y': yum = allow_arg("--yum-proxy", optarg); change = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind >= argc)
        tool_usage_error(prog, "expected NAME");
    const char *name = argv[optind++];
    int nrule = argc - optind;
    if (add != (nrule > 0))
        tool_usage_error(prog, add ? "--add needs a RULE" : "a RULE goes with --add");
    if (expire && !add)
        tool_usage_error(prog, "--expire goes with --add");
    if (add && del)
        tool_usage_error(prog, "--add and --del: one at a time");

    struct qubes q;
    struct qerr err;
    struct qfw_rule rule;
    if (add && qfw_parse_rule(nrule, argv + optind, &rule, &err) < 0)
        tool_fail(prog, &err);
    rule.expire = expire;
    if (qvm_check_name(name, &err) < 0 || qubes_open(&q, false, &err) < 0 ||
        (change ? qubes_load_for_writing(&q, false, &err) : qubes_load_for_reading(&q, &err)) < 0)
        tool_fail(prog, &err);
    char path[4200];
    struct qfw fw;
    struct qvm *vm = qubes_find_vm(&q, name, &err);
    if (!vm || qfw_path(&q, vm, path, sizeof path, &err) < 0 || qfw_load(path, &fw, &err) < 0) {
        qubes_unlock(&q);
        tool_fail(prog, &err);
    }
    int rc = 0;
    if (change) {
        if (policy >= 0)
            fw.allow = policy;
        if (dns >= 0)
            fw.dns = dns;
        if (icmp >= 0)
            fw.icmp = icmp;
        if (yum >= 0)
            fw.yum_proxy = yum;
        if (del && (size_t)del > fw.n)
            rc = qerr_set(&err, "'%s' has no rule %ld (it has %zu)", name, del, fw.n);
        else if (del)
            memmove(&fw.rules[del - 1], &fw.rules[del], (fw.n - (size_t)del) * sizeof *fw.rules),
                fw.n--;
        if (rc == 0 && add)
            rc = qfw_add(&fw, &rule, &err);
        if (rc == 0)
            rc = qfw_write(&q, path, &fw, &err);
        /* A running VM has the new rules at once (under the lock, so
         * that two changes apply in the order they were saved). */
        bool applied = false;
        if (rc == 0 && (rc = vmguard_reload(&q, vm, &applied, &err)) < 0)
            qerr_prefix(&err, "the rules are saved, but not yet in force");
        if (rc == 0 && applied)
            fprintf(stderr, "--> in force in the running VM %s\n", name);
        if (rc == 0 && vm->netvm_qid < 0)
            fprintf(stderr, "warning: '%s' has no netvm: its rules apply to nothing until it "
                    "has one\n", name);
        qubes_unlock(&q);
    } else {
        list(name, path, &fw);
    }
    qfw_free(&fw);
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}

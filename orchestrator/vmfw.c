#include "vmfw.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define TABLE "bridge " VMFW_TABLE

/* Every VM's addresses: what no VM may reach but its gateway. */
static const char vm_ranges[] = "{ 10.137.0.0/16, 10.138.0.0/16 }";
/* The ICMP that answers something; an echo request opens an exchange. */
static const char icmp_answers[] =
    "{ echo-reply, destination-unreachable, time-exceeded, parameter-problem }";

/* The interface as the script writes it: checked, canonical. */
struct iface {
    char name[VMFW_IFNAME_MAX + 1];
    char mac[18], gw_mac[18];
    char ip[INET_ADDRSTRLEN];
    char gw[2 * INET_ADDRSTRLEN + 8];  /* one address, or a set of two */
    char *own;                  /* the VM's sources: ip, or a set with its extra prefixes */
    bool forwards;              /* it has extra prefixes: a ProxyVM's uplink */
    bool apply_rules;
};

/* From the VM, or toward it: which end of a packet is the VM's. */
enum dir { FROM_VM, TO_VM };

static bool valid_ifname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > VMFW_IFNAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])))
            return false;
    return true;
}

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A unicast MAC, exactly "xx:xx:xx:xx:xx:xx", written in lower case. */
static int canon_mac(const char *what, const char *in, char out[18], struct qerr *err)
{
    unsigned char b[6] = { 0 };
    bool well_formed = in && strlen(in) == 17;
    for (int i = 0; well_formed && i < 6; i++) {
        int hi = hexval(in[3 * i]), lo = hexval(in[3 * i + 1]);
        well_formed = hi >= 0 && lo >= 0 && (i == 5 || in[3 * i + 2] == ':');
        if (well_formed)
            b[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!well_formed)
        return qerr_set(err, "%s \"%s\": not a MAC address xx:xx:xx:xx:xx:xx", what,
                        in ? in : "(none)");
    if ((b[0] & 1) || !(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]))
        return qerr_set(err, "%s %s: not the address of one interface", what, in);
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return 0;
}

static int canon_ip(const char *what, const char *in, char out[INET_ADDRSTRLEN],
                    struct qerr *err)
{
    struct in_addr a;
    if (!in || inet_pton(AF_INET, in, &a) != 1 || a.s_addr == 0)
        return qerr_set(err, "%s \"%s\": not an IPv4 address", what, in ? in : "(none)");
    inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
    return 0;
}

/* `addr` with `bits` of netmask as nft writes a network: the host bits
 * cleared, "/32" left out; "" for /0, which is every address. */
static void network_text(struct in_addr addr, int bits, char *out, size_t len)
{
    if (bits == 0) {
        out[0] = '\0';
        return;
    }
    uint32_t mask = bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
    struct in_addr net = { htonl(ntohl(addr.s_addr) & mask) };
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &net, a, sizeof a);
    if (bits == 32)
        snprintf(out, len, "%s", a);
    else
        snprintf(out, len, "%s/%d", a, bits);
}

/* "A.B.C.D/N" (N in 1..32) or "A.B.C.D". */
static int canon_prefix(const char *in, char *out, size_t len, struct qerr *err)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = in ? strchr(in, '/') : NULL;
    size_t alen = slash ? (size_t)(slash - in) : in ? strlen(in) : 0;
    int bits = 32;
    struct in_addr a;
    bool good = in && alen < sizeof addr;
    if (good) {
        memcpy(addr, in, alen);
        addr[alen] = '\0';
        good = inet_pton(AF_INET, addr, &a) == 1;
    }
    if (good && slash) {
        const char *n = slash + 1;
        good = isdigit((unsigned char)n[0]) && (!n[1] || (isdigit((unsigned char)n[1]) && !n[2]));
        bits = good ? atoi(n) : 0;
        good = good && bits >= 1 && bits <= 32;
    }
    if (!good)
        return qerr_set(err, "extra source \"%s\": not an IPv4 network A.B.C.D/N (N in 1..32)",
                        in ? in : "(none)");
    network_text(a, bits, out, len);
    return 0;
}

static int check_iface(const struct vmfw_iface *in, struct iface *x, struct qerr *err)
{
    memset(x, 0, sizeof *x);
    if (!valid_ifname(in->ifname))
        return qerr_set(err, "interface name \"%s\": not 1..%d of [a-z0-9]",
                        in->ifname ? in->ifname : "", VMFW_IFNAME_MAX);
    snprintf(x->name, sizeof x->name, "%s", in->ifname);
    x->apply_rules = in->apply_rules;
    char gw[2][INET_ADDRSTRLEN];
    bool two_gw = in->gw_ip[1] != NULL;
    if (canon_mac("MAC", in->mac, x->mac, err) < 0 ||
        canon_mac("gateway MAC", in->gw_mac, x->gw_mac, err) < 0 ||
        canon_ip("address", in->ip, x->ip, err) < 0 ||
        canon_ip("gateway address", in->gw_ip[0], gw[0], err) < 0 ||
        (two_gw && canon_ip("gateway address", in->gw_ip[1], gw[1], err) < 0))
        return qerr_prefix(err, "%s", x->name);
    if (strcmp(x->mac, x->gw_mac) == 0)
        return qerr_set(err, "%s: the VM and its gateway have the same MAC %s", x->name, x->mac);
    if (two_gw && strcmp(gw[0], gw[1]) != 0)
        snprintf(x->gw, sizeof x->gw, "{ %s, %s }", gw[0], gw[1]);
    else
        snprintf(x->gw, sizeof x->gw, "%s", gw[0]);

    /* The VM's own address, and its networks after it in a set. */
    x->forwards = in->n_extra > 0;
    size_t len = 0;
    FILE *f = open_memstream(&x->own, &len);
    if (!f)
        return qerr_errno(err, errno, "%s", x->name);
    fprintf(f, "%s%s", in->n_extra ? "{ " : "", x->ip);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < in->n_extra; i++) {
        char net[INET_ADDRSTRLEN + 4];
        if ((rc = canon_prefix(in->extra[i], net, sizeof net, err)) == 0)
            fprintf(f, ", %s", net);
    }
    fputs(in->n_extra ? " }" : "", f);
    if (fclose(f) != 0 && rc == 0)
        rc = qerr_errno(err, ENOMEM, "the addresses");
    if (rc < 0) {
        free(x->own);
        x->own = NULL;
        return qerr_prefix(err, "%s", x->name);
    }
    return 0;
}

/* The rules that count at `now`, checked before anything is written: each
 * must name an IPv4 network. */
static int check_rules(const struct qfw *fw, long long now, long long *next_expire,
                       struct qerr *err)
{
    *next_expire = 0;
    for (size_t i = 0; i < fw->n; i++) {
        const struct qfw_rule *r = &fw->rules[i];
        struct in_addr a;
        if (r->expire && r->expire <= now)
            continue;
        if (r->expire && (!*next_expire || r->expire < *next_expire))
            *next_expire = r->expire;
        if (inet_pton(AF_INET, r->address, &a) != 1)
            return qerr_set(err, "rule %zu: \"%s\" is not an IPv4 address (a host name must be "
                            "resolved before the rules are applied)", i + 1, r->address);
        if (r->netmask < 0 || r->netmask > 32)
            return qerr_set(err, "rule %zu: netmask %d: not in 0..32", i + 1, r->netmask);
        bool ports = strcmp(r->proto, "tcp") == 0 || strcmp(r->proto, "udp") == 0;
        if (!ports && strcmp(r->proto, "any") != 0)
            return qerr_set(err, "rule %zu: protocol \"%s\": not tcp, udp or any", i + 1, r->proto);
        if (!ports && (r->port || r->toport))
            return qerr_set(err, "rule %zu: ports need the protocol tcp or udp", i + 1);
        if (r->port < 0 || r->port > 65535 || r->toport < 0 || r->toport > 65535 ||
            (r->toport && r->toport < r->port))
            return qerr_set(err, "rule %zu: ports %d-%d: not a range in 0..65535", i + 1,
                            r->port, r->toport);
    }
    return 0;
}

static void __attribute__((format(printf, 2, 3))) rule(FILE *f, const char *fmt, ...)
{
    va_list ap;
    fputs("\t\t", f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

/* The frame's ends and the VM's address: its own MAC to the gateway's (or
 * broadcast, for ARP), its own IPv4 addresses, nothing but IPv4 and ARP. */
static void link_checks(FILE *f, const struct iface *x, enum dir d)
{
    const char *src_mac = d == FROM_VM ? x->mac : x->gw_mac;
    const char *dst_mac = d == FROM_VM ? x->gw_mac : x->mac;
    rule(f, "# %s", d == FROM_VM ? "from its own MAC to the gateway's; ARP about the gateway only"
                                 : "from the gateway's MAC to its own; ARP from the gateway only");
    rule(f, "ether saddr != %s drop", src_mac);
    rule(f, "ether type != { ip, arp } drop");
    rule(f, "ether type arp ether daddr { %s, ff:ff:ff:ff:ff:ff } arp htype 1 arp ptype ip "
            "arp hlen 6 arp plen 4 arp saddr ether %s arp saddr ip %s arp daddr ip %s return",
         dst_mac, src_mac, d == FROM_VM ? x->ip : x->gw, d == FROM_VM ? x->gw : x->ip);
    rule(f, "ether type arp drop");
    rule(f, "ether daddr != %s drop", dst_mac);
    rule(f, "ip %s != %s drop", d == FROM_VM ? "saddr" : "daddr", x->own);
}

/* The gateway, the one VM this one talks to: DNS and ICMP by the flags;
 * then nothing to or from any other VM. Each rule starts with `only`
 * (a match, or ""). */
static void gateway(FILE *f, const struct iface *x, enum dir d, bool dns, bool icmp,
                    const char *only)
{
    const char *peer = d == FROM_VM ? "daddr" : "saddr";
    const char *port = d == FROM_VM ? "dport" : "sport";
    rule(f, "# the gateway: DNS %s, ICMP %s; no other VM", dns ? "allowed" : "denied",
         icmp ? "allowed" : d == TO_VM ? "errors only" : "denied");
    if (dns) {
        rule(f, "%sip %s %s udp %s 53 return", only, peer, x->gw, port);
        rule(f, "%sip %s %s tcp %s 53 return", only, peer, x->gw, port);
    }
    if (icmp)
        rule(f, "%sip %s %s ip protocol icmp return", only, peer, x->gw);
    else if (d == TO_VM)
        rule(f, "%sip saddr %s icmp type != echo-reply return", only, x->gw);
    rule(f, "%sip %s %s drop", only, peer, vm_ranges);
}

/* What a ProxyVM forwards for its networks, from (or to) any address but
 * its own: the gateway for DNS and ICMP, no other VM, then on. The rules of
 * the VMs it forwards for hold on their own interfaces. */
static void forwarded(FILE *f, const struct iface *x, enum dir d)
{
    char only[64];
    snprintf(only, sizeof only, "ip %s != %s ", d == FROM_VM ? "saddr" : "daddr", x->ip);
    rule(f, "# what it forwards for its networks (their own chains hold their rules)");
    gateway(f, x, d, true, true, only);
    rule(f, "%sreturn", only);
}

/* One firewall rule, from the VM (its destination) or toward it (the
 * answer's source), with the action opposite to the policy. */
static void fw_rule(FILE *f, size_t i, const struct qfw_rule *r, bool policy_allow, enum dir d)
{
    char text[320], net[INET_ADDRSTRLEN + 4], match[64] = "", ports[16] = "";
    struct in_addr a;
    inet_pton(AF_INET, r->address, &a);
    network_text(a, r->netmask, net, sizeof net);
    qfw_rule_text(r, text, sizeof text);
    rule(f, "# rule %zu: %s", i + 1, text);
    if (*net)
        snprintf(match, sizeof match, "ip %s %s ", d == FROM_VM ? "daddr" : "saddr", net);
    if (r->toport && r->toport != r->port)
        snprintf(ports, sizeof ports, "%d-%d", r->port, r->toport);
    else if (r->port)
        snprintf(ports, sizeof ports, "%d", r->port);
    const char *verdict = policy_allow ? "drop" : "return";
    if (strcmp(r->proto, "any") == 0)
        rule(f, "%s%s", match, verdict);
    else if (*ports)
        rule(f, "%s%s %s %s %s", match, r->proto, d == FROM_VM ? "dport" : "sport", ports,
             verdict);
    else
        rule(f, "%smeta l4proto %s %s", match, r->proto, verdict);
}

static void vm_chain(FILE *f, const struct iface *x, const struct qfw *fw, long long now,
                     enum dir d)
{
    fprintf(f, "\tchain %s_%s {\n", d == FROM_VM ? "from" : "to", x->name);
    link_checks(f, x, d);
    if (x->forwards && x->apply_rules)
        forwarded(f, x, d);
    if (!x->apply_rules) {
        gateway(f, x, d, true, true, "");
        rule(f, "return");
        fprintf(f, "\t}\n");
        return;
    }
    rule(f, "# plain IPv4: no options, no fragments (their ports cannot be checked)");
    rule(f, "ip version != 4 drop");
    rule(f, "ip hdrlength != 5 drop");
    rule(f, "ip frag-off & 0x3fff != 0 drop");
    if (d == TO_VM) {
        rule(f, "# answers only: nobody opens a connection to the VM");
        rule(f, "tcp flags & (syn | ack) == syn drop");
        rule(f, "icmp type != %s drop", icmp_answers);
    }
    /* A ProxyVM answers its VMs' DNS by asking its own gateway. */
    gateway(f, x, d, fw->dns || x->forwards, fw->icmp, "");
    if (d == TO_VM) {
        rule(f, "# ICMP errors about what the VM sent");
        rule(f, "icmp type != echo-reply return");
    }
    for (size_t i = 0; i < fw->n; i++)
        if (!fw->rules[i].expire || fw->rules[i].expire > now)
            fw_rule(f, i, &fw->rules[i], fw->allow, d);
    rule(f, "# ICMP %s", fw->icmp ? "allowed" : "denied");
    rule(f, "ip protocol icmp %s", fw->icmp ? "return" : "drop");
    rule(f, "# the policy: %s", fw->allow ? "allow" : "deny");
    rule(f, "%s", fw->allow ? "return" : "drop");
    fprintf(f, "\t}\n");
}

/* The table, its maps and base chains, made when missing; the base chains'
 * rules are written anew, the same each time, in the same transaction. */
static void base(FILE *f)
{
    static const char *const hooks[][2] = {
        { "prerouting", "iifname vmap @from_vm" },
        { "forward", "oifname vmap @to_vm" },
        { "input", "iifname @vm_ports drop" },
        { "output", "oifname @vm_ports drop" },
    };
    fprintf(f, "add table " TABLE "\n"
               "add set " TABLE " vm_ports { type ifname; }\n"
               "add map " TABLE " from_vm { type ifname : verdict; }\n"
               "add map " TABLE " to_vm { type ifname : verdict; }\n");
    for (size_t i = 0; i < sizeof hooks / sizeof *hooks; i++)
        fprintf(f, "add chain " TABLE " hook_%s { type filter hook %s priority filter; "
                   "policy accept; }\n"
                   "flush chain " TABLE " hook_%s\n"
                   "add rule " TABLE " hook_%s %s\n",
                hooks[i][0], hooks[i][0], hooks[i][0], hooks[i][0], hooks[i][1]);
}

/* The VM's chains and its entries in the maps, made when missing. */
static void vm_entries(FILE *f, const char *name)
{
    fprintf(f, "add chain " TABLE " from_%s\n"
               "add chain " TABLE " to_%s\n"
               "add element " TABLE " from_vm { \"%s\" : jump from_%s }\n"
               "add element " TABLE " to_vm { \"%s\" : jump to_%s }\n"
               "add element " TABLE " vm_ports { \"%s\" }\n",
            name, name, name, name, name, name, name);
}

/* Closes the stream writing *text (which sets it) and hands it over. */
static int finish(FILE *f, char **text, char **script, struct qerr *err)
{
    if (fclose(f) != 0) {
        free(*text);
        return qerr_errno(err, ENOMEM, "an nft script");
    }
    *script = *text;
    return 0;
}

int vmfw_script(const struct vmfw_iface *ifc, const struct qfw *fw, long long now,
                char **script, long long *next_expire, struct qerr *err)
{
    struct iface x;
    *script = NULL;
    *next_expire = 0;
    int rc = check_iface(ifc, &x, err);
    cleanup_free char *own = x.own;     /* NULL when the check failed */
    if (rc < 0)
        return -1;
    if (x.apply_rules && !fw)
        return qerr_set(err, "%s: no firewall rules given", x.name);
    if (x.apply_rules && check_rules(fw, now, next_expire, err) < 0)
        return qerr_prefix(err, "%s", x.name);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return qerr_errno(err, errno, "an nft script");
    fprintf(f, "# %s: the VM %s (%s) behind the gateway %s (%s)", x.name, x.own, x.mac, x.gw,
            x.gw_mac);
    if (x.apply_rules)
        fprintf(f, "; policy %s, DNS %s, ICMP %s\n", fw->allow ? "allow" : "deny",
                fw->dns ? "allow" : "deny", fw->icmp ? "allow" : "deny");
    else
        fprintf(f, "; anti-spoofing only\n");
    base(f);
    vm_entries(f, x.name);
    fprintf(f, "flush chain " TABLE " from_%s\n"
               "flush chain " TABLE " to_%s\n"
               "table " TABLE " {\n",
            x.name, x.name);
    vm_chain(f, &x, fw, now, FROM_VM);
    vm_chain(f, &x, fw, now, TO_VM);
    fprintf(f, "}\n");
    return finish(f, &text, script, err);
}

int vmfw_remove_script(const char *ifname, char **script, struct qerr *err)
{
    *script = NULL;
    if (!valid_ifname(ifname))
        return qerr_set(err, "interface name \"%s\": not 1..%d of [a-z0-9]", ifname ? ifname : "",
                        VMFW_IFNAME_MAX);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return qerr_errno(err, errno, "an nft script");
    /* Made first, so that removing what is not there is no error. */
    fprintf(f, "# %s: its chains removed\n"
               "add table " TABLE "\n"
               "add set " TABLE " vm_ports { type ifname; }\n"
               "add map " TABLE " from_vm { type ifname : verdict; }\n"
               "add map " TABLE " to_vm { type ifname : verdict; }\n",
            ifname);
    vm_entries(f, ifname);
    fprintf(f, "delete element " TABLE " vm_ports { \"%s\" }\n"
               "delete element " TABLE " from_vm { \"%s\" }\n"
               "delete element " TABLE " to_vm { \"%s\" }\n"
               "flush chain " TABLE " from_%s\n"
               "flush chain " TABLE " to_%s\n"
               "delete chain " TABLE " from_%s\n"
               "delete chain " TABLE " to_%s\n",
            ifname, ifname, ifname, ifname, ifname, ifname, ifname);
    return finish(f, &text, script, err);
}

/* QUBES_NFT, else nft where Debian puts it: never a search of PATH, whose
 * first nft would be trusted with the host's firewall. */
static const char *nft_program(void)
{
    const char *env = getenv("QUBES_NFT");
    if (env && *env)
        return env;
    static const char *const known[] = { "/usr/sbin/nft", "/sbin/nft" };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (access(known[i], X_OK) == 0)
            return known[i];
    return NULL;
}

/* The script goes in as a memory file, read from the start: nft may
 * answer before it has read all of it without either side waiting. */
static int apply_program(const char *script, struct qerr *err)
{
    const char *nft = nft_program();
    if (!nft)
        return qerr_set(err, "nft is not in /usr/sbin or /sbin (install nftables, or set "
                        "QUBES_NFT)");
    cleanup_close int in = memfd_create("vmfw-script", MFD_CLOEXEC);
    if (in < 0)
        return qerr_errno(err, errno, "a memory file for nft's script");
    if (qwrite_all(in, script, strlen(script)) < 0 || lseek(in, 0, SEEK_SET) < 0)
        return qerr_errno(err, errno, "writing nft's script");
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return qerr_errno(err, errno, "a pipe for nft's messages");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    char *argv[] = { (char *)nft, "-f", "-", NULL };
    pid_t pid;
    int r = posix_spawnp(&pid, nft, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (r != 0) {
        close(out[0]);
        return qerr_errno(err, r, "cannot run %s", nft);
    }
    size_t len;
    cleanup_free char *said = qread_fd(out[0], &len);
    close(out[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return qerr_errno(err, errno, "waiting for %s", nft);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    while (said && len && isspace((unsigned char)said[len - 1]))
        said[--len] = '\0';
    return qerr_set(err, "%s -f - failed (%s %d)%s%s", nft,
                    WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st)
                                                                        : WTERMSIG(st),
                    said && *said ? ": " : "", said ? said : "");
}

/* Without QUBES_NFT, scripts go to libnftables, the library nft is made
 * of, in this process: the same parser and the same one transaction per
 * script, without a process and the loading of its libraries each time.
 * It is loaded at the first use, not linked: every tool links this code
 * and most never touch the firewall. Building needs no libnftables-dev:
 * these are the prototypes of <nftables/libnftables.h>, and dlvsym asks
 * for them at the version they have there, so that another function of
 * the same name in a later library is never called through them. */
#define NFT_LIBRARY "libnftables.so.1"
#define NFT_ABI "LIBNFTABLES_1"
#define NFT_CTX_DEFAULT 0

struct nft_ctx;

static struct {
    int loaded;                 /* 0: not tried; 1: yes; -1: no, the program is run */
    char why[256];              /* dlerror()'s text when it could not be */
    struct nft_ctx *(*nft_ctx_new)(uint32_t flags);
    void (*nft_ctx_free)(struct nft_ctx *ctx);
    int (*nft_ctx_buffer_output)(struct nft_ctx *ctx);
    int (*nft_ctx_buffer_error)(struct nft_ctx *ctx);
    const char *(*nft_ctx_get_output_buffer)(struct nft_ctx *ctx);
    const char *(*nft_ctx_get_error_buffer)(struct nft_ctx *ctx);
    int (*nft_run_cmd_from_filename)(struct nft_ctx *ctx, const char *filename);
    int (*nft_run_cmd_from_buffer)(struct nft_ctx *ctx, const char *buf);
    /* One context (a netlink socket, nft's copy of the ruleset), kept for
     * the life of the process, where it stays reachable: closing a socket
     * that has committed waits for the kernel to free what the commit
     * replaced, most of what a run of nft costs. It serves only the
     * process that made it, in the network namespace it was made in (its
     * socket stays there): a forked child shares its parent's socket, and
     * two processes reading one socket take each other's answers. */
    struct nft_ctx *ctx;
    pid_t pid;
    dev_t ns_dev;
    ino_t ns_ino;               /* 0: the namespace is unknown, the context not kept */
} lib;

/* Contexts a parent made before a fork: their descriptor may have been
 * closed, or reused, by this process since, so they are neither used nor
 * freed here; only kept reachable, like every context. */
static struct inherited {
    struct nft_ctx *ctx;
    struct inherited *next;
} *inherited;

static bool program_wanted(void)
{
    const char *env = getenv("QUBES_NFT");
    return env && *env;
}

#define LIB_SYM(h, f) ((lib.f = (__typeof__(lib.f))dlvsym(h, #f, NFT_ABI)) != NULL)

/* 0 when the library is there; -1, for good, when it is not. */
static int lib_load(void)
{
    if (lib.loaded)
        return lib.loaded > 0 ? 0 : -1;
    lib.loaded = -1;
    const char *why;
    void *h = dlopen(NFT_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        why = dlerror();
        snprintf(lib.why, sizeof lib.why, "%s", why ? why : "not found");
        return -1;
    }
    if (!(LIB_SYM(h, nft_ctx_new) && LIB_SYM(h, nft_ctx_free) &&
          LIB_SYM(h, nft_ctx_buffer_output) && LIB_SYM(h, nft_ctx_buffer_error) &&
          LIB_SYM(h, nft_ctx_get_output_buffer) && LIB_SYM(h, nft_ctx_get_error_buffer) &&
          LIB_SYM(h, nft_run_cmd_from_filename) && LIB_SYM(h, nft_run_cmd_from_buffer))) {
        why = dlerror();
        snprintf(lib.why, sizeof lib.why, "%s", why ? why : "a function is missing");
        dlclose(h);
        return -1;
    }
    /* Kept loaded for the life of the process, and of its forked children. */
    lib.loaded = 1;
    return 0;
}

static bool netns_of_self(dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (stat("/proc/self/ns/net", &st) < 0)
        return false;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return true;
}

static bool lib_ctx_is_here(void)
{
    dev_t dev;
    ino_t ino;
    return lib.ctx && lib.pid == getpid() && lib.ns_ino && netns_of_self(&dev, &ino) &&
           dev == lib.ns_dev && ino == lib.ns_ino;
}

static void lib_drop_ctx(void)
{
    if (!lib.ctx)
        return;
    struct inherited *k;
    if (lib.pid == getpid())
        lib.nft_ctx_free(lib.ctx);
    else if ((k = malloc(sizeof *k))) {
        *k = (struct inherited){ lib.ctx, inherited };
        inherited = k;
    }
    lib.ctx = NULL;
}

/* libnftables opens its socket without close-on-exec, so every program
 * this process runs afterwards would hold it; `fd` is where it went when
 * it is a netfilter netlink socket. */
static void keep_from_exec(int fd)
{
    int domain, protocol, flags;
    socklen_t dl = sizeof domain, pl = sizeof protocol;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 && domain == AF_NETLINK &&
        getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &pl) == 0 &&
        protocol == NETLINK_NETFILTER && (flags = fcntl(fd, F_GETFD)) >= 0)
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static struct nft_ctx *lib_ctx(struct qerr *err)
{
    if (lib_ctx_is_here())
        return lib.ctx;
    lib_drop_ctx();
    /* nft_ctx_new ends the process when it cannot open its netlink
     * socket: one is opened first, so as to fail here instead. The
     * library's own then takes the same descriptor, the lowest free one. */
    int probe = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (probe < 0) {
        qerr_errno(err, errno, "%s: no netfilter netlink socket", NFT_LIBRARY);
        return NULL;
    }
    close(probe);
    struct nft_ctx *ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
        qerr_set(err, "%s: nft_ctx_new failed", NFT_LIBRARY);
        return NULL;
    }
    keep_from_exec(probe);
    if (lib.nft_ctx_buffer_output(ctx) != 0 || lib.nft_ctx_buffer_error(ctx) != 0) {
        lib.nft_ctx_free(ctx);
        qerr_set(err, "%s: cannot keep nft's messages in memory", NFT_LIBRARY);
        return NULL;
    }
    lib.ctx = ctx;
    lib.pid = getpid();
    if (!netns_of_self(&lib.ns_dev, &lib.ns_ino))
        lib.ns_ino = 0;
    return ctx;
}

/* The script goes in as a file, not a buffer: nft 1.0.6 shows an error in
 * a buffer with the buffer's first line, whichever line is at fault, and
 * without its number. */
static int apply_library(const char *script, struct qerr *err)
{
    struct nft_ctx *ctx = lib_ctx(err);
    if (!ctx)
        return -1;
    cleanup_close int in = memfd_create("vmfw-script", MFD_CLOEXEC);
    if (in < 0)
        return qerr_errno(err, errno, "a memory file for nft's script");
    if (qwrite_all(in, script, strlen(script)) < 0)
        return qerr_errno(err, errno, "writing nft's script");
    char path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", in);
    /* Without /proc the file has no name: a buffer after all. */
    int rc = access(path, R_OK) == 0 ? lib.nft_run_cmd_from_filename(ctx, path)
                                     : lib.nft_run_cmd_from_buffer(ctx, script);
    const char *said = lib.nft_ctx_get_error_buffer(ctx);
    /* Emptied too, so that nothing of one script stays for the next. */
    (void)lib.nft_ctx_get_output_buffer(ctx);
    if (rc == 0)
        return 0;
    int len = said ? (int)strlen(said) : 0;
    while (len && isspace((unsigned char)said[len - 1]))
        len--;
    qerr_set(err, "%s failed (returned %d)%s%.*s", NFT_LIBRARY, rc, len ? ": " : "", len,
             len ? said : "");
    /* Not used again: what a failure left in its socket or its copy of
     * the ruleset would meet the next script. */
    lib_drop_ctx();
    return -1;
}

int vmfw_apply(const char *script, struct qerr *err)
{
    if (program_wanted() || lib_load() < 0)
        return apply_program(script, err);
    return apply_library(script, err);
}

int vmfw_preload(struct qerr *err)
{
    if (program_wanted())
        return 0;
    if (lib_load() < 0)
        return qerr_set(err, "cannot load %s (scripts go to the nft program instead): %s",
                        NFT_LIBRARY, lib.why);
    return lib_ctx(err) ? 0 : -1;
}

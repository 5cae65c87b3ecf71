/* Per-VM firewall rules in the original's firewall.xml:
 *
 *   <QubesFirewallRules policy="allow|deny" dns="allow|deny"
 *                       icmp="allow|deny" yumProxy="allow|deny">
 *     <rule address="A" [netmask="N", when not 32] proto="tcp|udp|any"
 *           [port="P"] [toport="P2"] [expire="UNIX-TIME"]/>
 *   </QubesFirewallRules>
 *
 * No file means the defaults: policy allow, DNS and ICMP allowed, the
 * update proxy denied. The policy applies to what no rule matches; a rule
 * is an exception to it. Expired rules are dropped when read.
 *
 * The file lives in the VM's directory ($BASE/<class dir>/NAME, never a
 * dir_path from qubes.xml), named by its firewall_conf attribute (a plain
 * file name; firewall.xml by default); a DispVM's is in its run directory.
 * Writes are atomic, and the writer requires the caller to hold the
 * qubes.xml write lock: it takes no lock itself, so that changes of the
 * rules and of the VMs they belong to are one critical section. */
#ifndef QUBES_FIREWALL_H
#define QUBES_FIREWALL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct qubes;
struct qvm;

struct qfw_rule {
    char address[256];          /* an IPv4 address or a host name */
    int netmask;                /* 0..32 */
    char proto[4];              /* tcp, udp or any */
    int port, toport;           /* 0: none */
    long long expire;           /* 0: never */
};

struct qfw {
    bool allow, dns, icmp, yum_proxy;
    struct qfw_rule *rules;
    size_t n;
};

void qfw_defaults(struct qfw *fw);
void qfw_free(struct qfw *fw);

/* The firewall file of `vm`. */
int qfw_path(const struct qubes *q, const struct qvm *vm, char *out, size_t len,
             struct qerr *err);

/* Reads `path` (missing: the defaults). The error names the file, the line
 * and the problem; a file with a DOCTYPE is refused. */
int qfw_load(const char *path, struct qfw *fw, struct qerr *err);

/* The extended attribute a firewall file is written with: the earliest
 * expiry time of its rules when it was written (qfw_next_expiry, decimal),
 * for a running VM's qrexec-daemon, which links no XML parser. In the
 * trusted namespace: only root sets it (and reads it); a file without it
 * (copied, or written by a process that may not) is read instead. */
#define QFW_NEXT_TAG "trusted.qubes.firewall-next"

/* Writes `fw` to `path` atomically, tagged (QFW_NEXT_TAG). Refused unless
 * `q` holds the qubes.xml write lock. */
int qfw_write(const struct qubes *q, const char *path, const struct qfw *fw, struct qerr *err);

/* Parses a rule given on a command line:
 * "ADDRESS[/NETMASK] [any | tcp|udp PORT[-TOPORT]]" (words separate). */
int qfw_parse_rule(int argc, char *const argv[], struct qfw_rule *r, struct qerr *err);
int qfw_add(struct qfw *fw, const struct qfw_rule *r, struct qerr *err);

/* The earliest expiry time of `fw`'s rules after `now` (seconds since
 * the epoch); 0 when no rule expires later. */
long long qfw_next_expiry(const struct qfw *fw, long long now);

/* One line describing a rule, e.g. "10.0.0.0/8 tcp 80-90". */
void qfw_rule_text(const struct qfw_rule *r, char *out, size_t len);

#endif

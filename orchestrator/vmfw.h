/* A VM's firewall and anti-spoofing, enforced on the host side of its
 * network interface (a tap on a bridge), where the VM cannot undo them:
 * nftables scripts for `nft -f -`, and the one function that applies them.
 *
 * Everything lives in one table, `bridge qubes`. Its base chains hand a
 * frame to a VM's chains by interface name, through verdict maps:
 *   prerouting  iifname vmap @from_vm   -> from_IF, before the bridge learns
 *                                          the source MAC (so a VM cannot
 *                                          take over another's, or the
 *                                          gateway's, place in its table)
 *   forward     oifname vmap @to_vm     -> to_IF
 *   input       iifname @vm_ports drop  (the host is on no VM network)
 *   output      oifname @vm_ports drop
 * Interfaces in none of them (other bridges, the gateway's own port) pass
 * untouched. A VM's chains end a frame with `drop` or let it go on with
 * `return`.
 *
 * From the VM: its own MAC as source, the gateway's MAC as destination
 * (or broadcast, for ARP); ARP with its own MAC and address asking for
 * the gateway only; IPv4 from its own address (or its extra prefixes)
 * only; no IPv6, VLAN tags or other ethertypes; nothing to other VMs
 * (10.137.0.0/16, 10.138.0.0/16) but DNS (udp and tcp 53) and ICMP to the
 * gateway, by the `dns` and `icmp` flags; then the rules in order, each
 * the exception to the policy; ICMP by `icmp`; the policy.
 * Toward the VM: from the gateway's MAC to its own (or broadcast, for
 * ARP from the gateway), IPv4 to its own address. The bridge family has no
 * connection tracking on this kernel (no nf_conntrack_bridge), so replies
 * are recognised without state: a packet toward the VM passes when it
 * looks like the answer to something the VM may send (the same checks with
 * source and destination swapped); nobody opens a TCP connection to the
 * VM (a SYN without ACK is dropped); ICMP errors pass (PMTU discovery
 * needs them), echo requests do not. IPv4 fragments and options are
 * dropped both ways: without reassembly, the ports of a fragment cannot be
 * checked. What is refused is dropped, not rejected (the bridge family has
 * no reject on this kernel): a VM sees a timeout.
 *
 * The uplink of a ProxyVM (extra prefixes: the networks it routes): what
 * it forwards, from or to any address but its own, gets anti-spoofing and
 * nothing to or from other VMs but DNS and ICMP with the gateway (the
 * rules of the VMs behind it hold on their own interfaces); its own
 * traffic gets its own rules, with DNS to its gateway always allowed (it
 * answers its VMs' DNS by asking there). With apply_rules false (no
 * rules), its own traffic is treated as what it forwards.
 *
 * The script that installs a VM's chains is one transaction: it creates
 * the table and base chains when missing, replaces the VM's chains, and
 * nothing is ever half applied. The removal script removes them whether or
 * not they exist. Names and addresses reach a script only checked and
 * written anew: nothing from a VM's record goes to nft as it came. */
#ifndef QUBES_VMFW_H
#define QUBES_VMFW_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "firewall.h"

#define VMFW_TABLE "qubes"
#define VMFW_IFNAME_MAX 15

/* One VM's interface, as the caller knows it (orchestrator/net.h). */
struct vmfw_iface {
    const char *ifname;         /* host side: [a-z0-9], 1..15 characters */
    const char *mac;            /* the VM's, "xx:xx:xx:xx:xx:xx" */
    const char *ip;             /* the VM's IPv4 address */
    const char *gw_mac;         /* the gateway's: its netvm's serving side */
    const char *gw_ip[2];       /* 10.137.N.1 and 10.138.N.1 (or NULL) */
    /* Networks the VM may also send from ("10.137.7.0/24"): a ProxyVM
     * forwards its own networks' traffic without translation. */
    const char *const *extra;
    size_t n_extra;
    bool apply_rules;           /* false: anti-spoofing and the gateway only */
};

/* The script installing the chains of `ifc` with the rules of `fw` (not
 * read when apply_rules is false; may then be NULL). Rules that expired
 * by `now` (expire <= now) are left out; *next_expire is the earliest
 * expiry still to come (0: none), when the caller applies it again.
 * Rule addresses must be IPv4 (a host name is refused: resolving is the
 * caller's). *script is malloc'ed. */
int vmfw_script(const struct vmfw_iface *ifc, const struct qfw *fw, long long now,
                char **script, long long *next_expire, struct qerr *err);

/* The script removing the chains of `ifname`; the table and base chains
 * stay for the other VMs. */
int vmfw_remove_script(const char *ifname, char **script, struct qerr *err);

/* Applies `script`, all of it or nothing, as `nft -f -` does: through
 * libnftables (libnftables.so.1, loaded at the first call), or, when
 * QUBES_NFT is set or the library is not there, by running that program,
 * else nft from /usr/sbin or /sbin, with the script on its standard input.
 * The error carries what nft said. Not for two threads at once. */
int vmfw_apply(const char *script, struct qerr *err);

/* Loads libnftables and makes this process's nft context now, so that a
 * long-lived process pays the loading once, before it forks: its children
 * inherit the library (each makes its own context, which is cheap). Does
 * nothing when QUBES_NFT is set; -1 when the library cannot be loaded
 * (vmfw_apply then runs the program) or no context can be made. */
int vmfw_preload(struct qerr *err);

#endif

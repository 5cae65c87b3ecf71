/* IPv4 settings of a network interface through ioctls: the host's bridges
 * and, compiled into the guest agent, the guest's own interface. Plain
 * libc, no program is run. Each returns 0, or -1 with errno set. */
#ifndef QUBES_IFCONF_H
#define QUBES_IFCONF_H

/* Creates the bridge `name` (an existing one is fine). */
int ifconf_bridge_add(const char *name);
/* Sets the address `ip` with `prefix` bits of netmask on `ifname` (an alias
 * label such as "br0:1" adds a second address). */
int ifconf_set_ipv4(const char *ifname, const char *ip, int prefix);
/* Brings the interface up. */
int ifconf_up(const char *ifname);
/* Sets the hardware address, "xx:xx:xx:xx:xx:xx". */
int ifconf_set_mac(const char *ifname, const char *mac);
/* Makes `gateway` the default route (replacing the one there was). */
int ifconf_default_route(const char *ifname, const char *gateway);
/* Removes its IPv4 address and takes it down. */
int ifconf_unconfigure(const char *ifname);
/* 1 when the interface exists and is up, 0 when not, -1 on error. */
int ifconf_is_up(const char *ifname);

#endif

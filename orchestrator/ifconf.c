#include "ifconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

static int with_socket(int (*fn)(int, const void *), const void *arg)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = fn(fd, arg);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int set_name(struct ifreq *r, const char *ifname)
{
    memset(r, 0, sizeof *r);
    if (strlen(ifname) >= sizeof r->ifr_name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(r->ifr_name, ifname);
    return 0;
}

static int sin_of(struct sockaddr *sa, const char *ip)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)sa;
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int do_bridge_add(int fd, const void *name)
{
    char buf[IFNAMSIZ];
    if (strlen(name) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", (const char *)name);
    return ioctl(fd, SIOCBRADDBR, buf) < 0 && errno != EEXIST ? -1 : 0;
}

int ifconf_bridge_add(const char *name)
{
    return with_socket(do_bridge_add, name);
}

struct ipv4_arg {
    const char *ifname, *ip;
    int prefix;
};

static int do_set_ipv4(int fd, const void *p)
{
    const struct ipv4_arg *a = p;
    struct ifreq r;
    if (a->prefix < 0 || a->prefix > 32) {
        errno = EINVAL;
        return -1;
    }
    if (set_name(&r, a->ifname) < 0 || sin_of(&r.ifr_addr, a->ip) < 0 ||
        ioctl(fd, SIOCSIFADDR, &r) < 0)
        return -1;
    char mask[INET_ADDRSTRLEN];
    struct in_addr m = { htonl(a->prefix ? 0xffffffffu << (32 - a->prefix) : 0) };
    inet_ntop(AF_INET, &m, mask, sizeof mask);
    if (set_name(&r, a->ifname) < 0 || sin_of(&r.ifr_netmask, mask) < 0)
        return -1;
    return ioctl(fd, SIOCSIFNETMASK, &r);
}

int ifconf_set_ipv4(const char *ifname, const char *ip, int prefix)
{
    struct ipv4_arg a = { ifname, ip, prefix };
    return with_socket(do_set_ipv4, &a);
}

static int get_flags(int fd, const char *ifname, struct ifreq *r)
{
    return set_name(r, ifname) < 0 ? -1 : ioctl(fd, SIOCGIFFLAGS, r);
}

static int do_up(int fd, const void *ifname)
{
    struct ifreq r;
    if (get_flags(fd, ifname, &r) < 0)
        return -1;
    if (r.ifr_flags & IFF_UP)
        return 0;
    r.ifr_flags |= IFF_UP;
    return ioctl(fd, SIOCSIFFLAGS, &r);
}

int ifconf_up(const char *ifname)
{
    return with_socket(do_up, ifname);
}

/* Setting 0.0.0.0 removes the interface's IPv4 address; then it goes
 * down (and its routes with it). */
static int do_unconfigure(int fd, const void *ifname)
{
    struct ifreq r;
    if (set_name(&r, ifname) < 0 || sin_of(&r.ifr_addr, "0.0.0.0") < 0 ||
        (ioctl(fd, SIOCSIFADDR, &r) < 0 && errno != EADDRNOTAVAIL))
        return -1;
    if (get_flags(fd, ifname, &r) < 0)
        return -1;
    r.ifr_flags &= ~IFF_UP;
    return ioctl(fd, SIOCSIFFLAGS, &r);
}

int ifconf_unconfigure(const char *ifname)
{
    return with_socket(do_unconfigure, ifname);
}

static int do_is_up(int fd, const void *ifname)
{
    struct ifreq r;
    if (get_flags(fd, ifname, &r) < 0)
        return errno == ENODEV ? 0 : -1;
    return (r.ifr_flags & IFF_UP) ? 1 : 0;
}

int ifconf_is_up(const char *ifname)
{
    return with_socket(do_is_up, ifname);
}

struct mac_arg {
    const char *ifname, *mac;
};

static int do_set_mac(int fd, const void *p)
{
    const struct mac_arg *a = p;
    struct ifreq r;
    unsigned b[6];
    char end;
    if (sscanf(a->mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
               &end) != 6) {
        errno = EINVAL;
        return -1;
    }
    if (set_name(&r, a->ifname) < 0)
        return -1;
    r.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (int i = 0; i < 6; i++)
        r.ifr_hwaddr.sa_data[i] = (char)b[i];
    return ioctl(fd, SIOCSIFHWADDR, &r);
}

int ifconf_set_mac(const char *ifname, const char *mac)
{
    struct mac_arg a = { ifname, mac };
    return with_socket(do_set_mac, &a);
}

struct route_arg {
    const char *ifname, *gateway;
};

static int do_default_route(int fd, const void *p)
{
    const struct route_arg *a = p;
    struct rtentry rt;
    char dev[IFNAMSIZ];
    memset(&rt, 0, sizeof rt);
    snprintf(dev, sizeof dev, "%s", a->ifname);
    if (sin_of(&rt.rt_dst, "0.0.0.0") < 0 || sin_of(&rt.rt_genmask, "0.0.0.0") < 0)
        return -1;
    rt.rt_dev = dev;
    /* Whatever default route there was goes first (none is fine). */
    while (ioctl(fd, SIOCDELRT, &rt) == 0)
        ;
    if (sin_of(&rt.rt_gateway, a->gateway) < 0)
        return -1;
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    return ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST ? -1 : 0;
}

int ifconf_default_route(const char *ifname, const char *gateway)
{
    struct route_arg a = { ifname, gateway };
    return with_socket(do_default_route, &a);
}

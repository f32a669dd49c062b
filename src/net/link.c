/* The bridge and the guests' TAPs: netlink through libnl-route-3, TAPs through /dev/net/tun. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

static void
nl_sockp(struct nl_sock **sk)
{
    if (*sk)
        nl_socket_free(*sk);
}
static void
rtnl_linkp(struct rtnl_link **l)
{
    if (*l)
        rtnl_link_put(*l);
}
static void
nl_cachep(struct nl_cache **c)
{
    if (*c)
        nl_cache_free(*c);
}

/* libnl's -NLE_* codes as -errno, for tp_err and errmap. */
static int
nl_to_errno(int nle)
{
    switch (nle < 0 ? -nle : nle) {
    case NLE_PERM:
        return -EPERM;
    case NLE_EXIST:
        return -EEXIST;
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
        return -ENODEV;
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_BUSY:
        return -EBUSY;
    case NLE_INVAL:
        return -EINVAL;
    case NLE_OPNOTSUPP:
        return -EOPNOTSUPP;
    case NLE_NOACCESS:
        return -EACCES;
    default:
        return -EIO;
    }
}

static int
nl_fail(struct tp_err *err, int nle, const char *what, const char *name)
{
    return tp_err_set(err, nl_to_errno(nle), "%s '%s': %s", what, name, nl_geterror(nle));
}

static int
route_open(struct nl_sock **ret, struct tp_err *err)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return tp_err_set(err, -ENOMEM, "allocate a netlink socket");
    int r = nl_connect(sk, NETLINK_ROUTE);
    if (r < 0) {
        nl_socket_free(sk);
        return tp_err_set(err, nl_to_errno(r), "connect to rtnetlink: %s", nl_geterror(r));
    }
    *ret = sk;
    return 0;
}

/* Bring link up, and enslave it to master_ifindex unless 0, and give it mac unless NULL. */
static int
link_up(struct nl_sock *sk, struct rtnl_link *link, int master_ifindex, const uint8_t *mac,
        struct tp_err *err)
{
    _cleanup_(rtnl_linkp) struct rtnl_link *change = rtnl_link_alloc();
    if (!change)
        return tp_err_set(err, -ENOMEM, "allocate a link change");
    rtnl_link_set_flags(change, IFF_UP);
    if (master_ifindex > 0)
        rtnl_link_set_master(change, master_ifindex);
    if (mac) {
        struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, 6);
        if (!lladdr)
            return tp_err_set(err, -ENOMEM, "allocate a MAC address");
        rtnl_link_set_addr(change, lladdr);
        nl_addr_put(lladdr);
    }
    int r = rtnl_link_change(sk, link, change, 0);
    if (r < 0)
        return nl_fail(err, r,
                       master_ifindex > 0 ? "attach to " NET_BRIDGE " and bring up" : "bring up",
                       rtnl_link_get_name(link));
    return 0;
}

struct addr_sweep {
    struct nl_sock *sk;
    int ifindex;
    struct nl_addr *keep;
    int r;
};

static void
addr_sweep_one(struct nl_object *obj, void *arg)
{
    struct addr_sweep *s = arg;
    struct rtnl_addr *a = (struct rtnl_addr *)obj;

    if (rtnl_addr_get_ifindex(a) != s->ifindex || rtnl_addr_get_family(a) != AF_INET)
        return;
    if (nl_addr_cmp(rtnl_addr_get_local(a), s->keep) == 0 &&
        rtnl_addr_get_prefixlen(a) == (int)nl_addr_get_prefixlen(s->keep)) {
        s->r = 1; /* already there */
        return;
    }
    (void)rtnl_addr_delete(s->sk, a, 0); /* another subnet's gateway: a --subnet change */
}

int
net_bridge_ensure(const struct net_subnet *sn, struct tp_err *err)
{
    _cleanup_(nl_sockp) struct nl_sock *sk = NULL;
    _cleanup_(rtnl_linkp) struct rtnl_link *br = NULL;
    _cleanup_(nl_cachep) struct nl_cache *addrs = NULL;
    int r;

    r = route_open(&sk, err);
    if (r < 0)
        return r;
    r = rtnl_link_get_kernel(sk, 0, NET_BRIDGE, &br);
    bool created = false;
    if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
        created = true;
        r = rtnl_link_bridge_add(sk, NET_BRIDGE);
        if (r < 0 && r != -NLE_EXIST)
            return nl_fail(err, r, "create bridge", NET_BRIDGE);
        r = rtnl_link_get_kernel(sk, 0, NET_BRIDGE, &br);
    }
    if (r < 0)
        return nl_fail(err, r, "look up bridge", NET_BRIDGE);
    if (!rtnl_link_is_bridge(br))
        return tp_err_set(err, -EEXIST,
                          "interface '%s' exists and is not a bridge: remove it or "
                          "run torpord --cleanup-network",
                          NET_BRIDGE);
    /* torpord's bridge has a MAC of its making (02:74 + the gateway's address, any subnet):
     * another bridge of this name is someone else's, whose ports must not become ours. */
    struct nl_addr *ll = rtnl_link_get_addr(br);
    const uint8_t *b = ll && nl_addr_get_len(ll) == 6 ? nl_addr_get_binary_addr(ll) : NULL;
    if (!created && (!b || b[0] != 0x02 || b[1] != 0x74))
        return tp_err_set(err, -EEXIST,
                          "a bridge '%s' exists that torpord did not make: remove it (ip link "
                          "del %s) or run torpord without --network",
                          NET_BRIDGE, NET_BRIDGE);

    uint32_t gw = htonl(net_subnet_gateway(sn));
    struct nl_addr *local = nl_addr_build(AF_INET, &gw, sizeof(gw));
    if (!local)
        return tp_err_set(err, -ENOMEM, "allocate an address");
    nl_addr_set_prefixlen(local, (int)sn->prefix);
    struct addr_sweep sweep = { .sk = sk, .ifindex = rtnl_link_get_ifindex(br), .keep = local };
    r = rtnl_addr_alloc_cache(sk, &addrs);
    if (r >= 0)
        nl_cache_foreach(addrs, addr_sweep_one, &sweep);
    if (sweep.r == 0) {
        struct rtnl_addr *a = rtnl_addr_alloc();
        if (!a) {
            nl_addr_put(local);
            return tp_err_set(err, -ENOMEM, "allocate an address");
        }
        rtnl_addr_set_ifindex(a, sweep.ifindex);
        rtnl_addr_set_local(a, local);
        r = rtnl_addr_add(sk, a, 0);
        rtnl_addr_put(a);
        if (r < 0 && r != -NLE_EXIST) {
            nl_addr_put(local);
            return nl_fail(err, r, "give the gateway address to", NET_BRIDGE);
        }
    }
    nl_addr_put(local);
    /* A bridge without a MAC of its own takes its lowest port's, so it would change whenever
     * VMs come and go, and guests' neighbour caches would point at a MAC that is gone. */
    uint8_t mac[6];
    net_mac_from_ip(net_subnet_gateway(sn), mac);
    return link_up(sk, br, 0, mac, err);
}

int
net_link_delete(const char *name, struct tp_err *err)
{
    _cleanup_(nl_sockp) struct nl_sock *sk = NULL;
    _cleanup_(rtnl_linkp) struct rtnl_link *link = NULL;
    int r = route_open(&sk, err);
    if (r < 0)
        return r;
    r = rtnl_link_get_kernel(sk, 0, name, &link);
    if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV)
        return 0;
    if (r < 0)
        return nl_fail(err, r, "look up interface", name);
    r = rtnl_link_delete(sk, link);
    if (r < 0 && r != -NLE_OBJ_NOTFOUND && r != -NLE_NODEV)
        return nl_fail(err, r, "delete interface", name);
    return 0;
}

/* Bridge port isolation (IFLA_BRPORT_ISOLATED, Linux 4.18): the bridge forwards nothing from
 * one isolated port to another; the bridge itself (the gateway) and non-isolated ports are
 * still reached. libnl 3.7 has no setter for it, so the RTM_SETLINK is built here, as
 * `bridge link set dev TAP isolated on` sends it. */
static int
port_set_isolated(struct nl_sock *sk, int ifindex, const char *name, bool on, struct tp_err *err)
{
    struct ifinfomsg ifi = { .ifi_family = AF_BRIDGE, .ifi_index = ifindex };
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
    struct nlattr *info;
    int r;

    if (!msg)
        return tp_err_set(err, -ENOMEM, "allocate a netlink message");
    /* The bridge reads IFLA_PROTINFO as port attributes only when flagged nested. */
    if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
        !(info = nla_nest_start(msg, IFLA_PROTINFO | NLA_F_NESTED)) ||
        nla_put_u8(msg, IFLA_BRPORT_ISOLATED, on ? 1 : 0) < 0 || nla_nest_end(msg, info) < 0) {
        nlmsg_free(msg);
        return tp_err_set(err, -ENOMEM, "build the isolation request for '%s'", name);
    }
    r = nl_send_auto(sk, msg);
    nlmsg_free(msg);
    if (r >= 0)
        r = nl_wait_for_ack(sk);
    if (r < 0)
        return nl_fail(err, r, on ? "isolate bridge port" : "share bridge port", name);
    return 0;
}

int
net_tap_open(const char *name, bool isolated, bool persist, struct tp_err *err)
{
    _cleanup_(nl_sockp) struct nl_sock *sk = NULL;
    _cleanup_(rtnl_linkp) struct rtnl_link *br = NULL, *tap = NULL;
    _cleanup_close_ int fd = -EBADF;
    struct ifreq ifr = { 0 };
    int r;

    if (strlen(name) >= IFNAMSIZ)
        return tp_err_set(err, -EINVAL, "TAP name '%s' is too long", name);
    r = net_link_delete(name, err); /* a leftover of a dead VMM: the address is ours now */
    if (r < 0)
        return r;
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '/dev/net/tun' (is the tun module loaded?)");
    /* QEMU's virtio-net wants the vnet header (Firecracker sets it on its own fd); no packet
     * info. Not persistent (yet): until the end, a failure closes the fd and the TAP goes. */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        return tp_err_errno(err, -errno, "create TAP '%s'", name);

    r = route_open(&sk, err);
    if (r < 0)
        return r;
    r = rtnl_link_get_kernel(sk, 0, NET_BRIDGE, &br);
    if (r < 0)
        return nl_fail(err, r, "look up bridge", NET_BRIDGE);
    r = rtnl_link_get_kernel(sk, 0, name, &tap);
    if (r < 0)
        return nl_fail(err, r, "look up TAP", name);
    /* A bridge port first, isolated (or not) next, up last: no other guest's frame is ever
     * queued for this one while its isolation is not in place yet. */
    r = rtnl_link_enslave_ifindex(sk, rtnl_link_get_ifindex(br), rtnl_link_get_ifindex(tap));
    if (r < 0)
        return nl_fail(err, r, "attach to " NET_BRIDGE, name);
    r = port_set_isolated(sk, rtnl_link_get_ifindex(tap), name, isolated, err);
    if (r < 0)
        return r;
    r = link_up(sk, tap, 0, NULL, err);
    if (r < 0)
        return r;
    if (!persist)
        return TAKE_FD(fd); /* the TAP lives as long as the fd: a VMM that exits takes it along */
    /* Last, so that nothing before leaves a TAP behind. Firecracker runs without capabilities:
     * an owner lets our euid attach to the TAP all the same. */
    if (ioctl(fd, TUNSETOWNER, (unsigned long)geteuid()) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
        return tp_err_errno(err, -errno, "make TAP '%s' persistent", name);
    return 0; /* the fd goes: a non-multiqueue TAP takes one attached file, the VMM's */
}

int
net_tap_list(char ***ret, struct tp_err *err)
{
    _cleanup_(nl_sockp) struct nl_sock *sk = NULL;
    _cleanup_(nl_cachep) struct nl_cache *links = NULL;
    char **v = xnew(char *, 1);
    size_t n = 0;
    int r = route_open(&sk, err);
    if (r < 0) {
        free(v);
        return r;
    }
    r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links);
    if (r < 0) {
        free(v);
        return tp_err_set(err, nl_to_errno(r), "list interfaces: %s", nl_geterror(r));
    }
    for (struct nl_object *o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
        const char *name = rtnl_link_get_name((struct rtnl_link *)o);
        if (!name || !net_tap_name_ours(name))
            continue;
        v = xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = xstrdup(name);
        v[n] = NULL;
    }
    *ret = v;
    return 0;
}

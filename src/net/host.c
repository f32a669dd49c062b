/* What torpord sets up on the host for guest networks, and what --cleanup-network removes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

#define IP_FORWARD     "/proc/sys/net/ipv4/ip_forward"
#define ROUTE_LOCALNET "/proc/sys/net/ipv4/conf/" NET_BRIDGE "/route_localnet"
#define SEND_REDIRECTS "/proc/sys/net/ipv4/conf/" NET_BRIDGE "/send_redirects"

/* NAT to the uplink needs the namespace to route IPv4. Set, never cleared: other software may
 * depend on it as well. */
static int
enable_forwarding(struct tp_err *err)
{
    _cleanup_close_ int fd = open(IP_FORWARD, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        return tp_err_errno(err, -errno, "enable IPv4 forwarding ('%s')", IP_FORWARD);
    return 0;
}

/* A port published on 127.0.0.1 is DNATed on the host's own output path to a guest, with the
 * connection's loopback source: the kernel routes such a packet out of an interface only with
 * route_localnet on it (then postrouting masquerades it, and the guard chain keeps guests from
 * using it the other way). Our own bridge only; gone with the bridge. */
static int
enable_route_localnet(struct tp_err *err)
{
    _cleanup_close_ int fd = open(ROUTE_LOCALNET, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        return tp_err_errno(err, -errno, "enable route_localnet on '%s' ('%s')", NET_BRIDGE,
                            ROUTE_LOCALNET);
    return 0;
}

/* The host must not tell a guest to use another guest as its router (ICMP redirects). */
static int
disable_redirects(struct tp_err *err)
{
    _cleanup_close_ int fd = open(SEND_REDIRECTS, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0\n", 2) != 2)
        return tp_err_errno(err, -errno, "disable send_redirects on '%s' ('%s')", NET_BRIDGE,
                            SEND_REDIRECTS);
    return 0;
}

int
net_host_setup(const struct net_subnet *sn, struct tp_err *err)
{
    int r = net_bridge_ensure(sn, err);
    if (r >= 0)
        r = enable_forwarding(err);
    if (r >= 0)
        r = enable_route_localnet(err);
    if (r >= 0)
        r = disable_redirects(err);
    if (r >= 0)
        r = net_nft_apply(sn, err);
    if (r < 0)
        return tp_err_wrap(err, "set up guest networking");
    return 0;
}

int
net_host_cleanup(struct tp_err *err)
{
    _cleanup_strv_free_ char **taps = NULL;
    int first = 0, r;

    r = net_tap_list(&taps, err);
    if (r < 0)
        first = r;
    strv_foreach (t, taps) {
        r = net_link_delete(*t, first < 0 ? NULL : err);
        if (r < 0 && first == 0)
            first = r;
    }
    r = net_link_delete(NET_BRIDGE, first < 0 ? NULL : err);
    if (r < 0 && first == 0)
        first = r;
    r = net_nft_remove(first < 0 ? NULL : err);
    if (r < 0 && first == 0)
        first = r;
    return first < 0 ? tp_err_wrap(err, "clean up guest networking") : 0;
}

int
net_port_probe(const struct net_port *p, struct tp_err *err)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(p->host_port),
                              .sin_addr.s_addr = htonl(p->host_ip) };
    char what[NET_PORT_STR_LEN];
    const int one = 1;
    _cleanup_close_ int fd =
        socket(AF_INET, (p->proto == NET_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);

    net_port_format_host(p, what);
    if (fd < 0)
        return tp_err_errno(err, -errno, "check host port %s", what);
    /* SO_REUSEADDR: a TCP connection of the past (TIME_WAIT) is no conflict, a listener is. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
        return 0;
    if (errno == EADDRINUSE)
        return tp_err_set(err, -EADDRINUSE,
                          "host port %s is in use by another process: publish another host port",
                          what);
    if (errno == EADDRNOTAVAIL) {
        char ip[NET_IP_LEN];
        net_ip_format(p->host_ip, ip);
        return tp_err_set(err, -EINVAL,
                          "host port %s: %s is not an address of this host (use 127.0.0.1, "
                          "0.0.0.0 or one of its own)",
                          what, ip);
    }
    return tp_err_errno(err, -errno, "check host port %s", what);
}

char *
net_host_dns(void)
{
    /* Where the stub resolver of systemd-resolved names the real ones. */
    static const char *const files[] = { "/etc/resolv.conf", "/run/systemd/resolve/resolv.conf" };
    char buf[4096], out[128];

    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
        _cleanup_close_ int fd = open(files[k], O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (net_resolv_servers(buf, out, sizeof(out)) > 0)
            return xstrdup(out);
    }
    return NULL;
}

/* What torpord sets up on the host for guest networks, and what --cleanup-network removes. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"

#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"

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

int
net_host_setup(const struct net_subnet *sn, struct tp_err *err)
{
    int r = net_bridge_ensure(sn, err);
    if (r >= 0)
        r = enable_forwarding(err);
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

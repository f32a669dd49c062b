/* The guest's network interface: address, default route, resolv.conf and (for a fork child)
 * MAC, set with raw rtnetlink from the host's "IP/PREFIX,GATEWAY[,MAC]". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

/* musl-gcc has no linux/ headers: the rtnetlink ABI as the kernel defines it. */
#ifndef AF_NETLINK
#define AF_NETLINK 16
#endif
#define NETLINK_ROUTE  0
#define NLM_F_REQUEST  0x1
#define NLM_F_ACK      0x4
#define NLM_F_DUMP     0x300
#define NLM_F_REPLACE  0x100
#define NLM_F_CREATE   0x400
#define NLMSG_ERROR    2
#define NLMSG_DONE     3
#define RTM_NEWLINK    16
#define RTM_NEWADDR    20
#define RTM_DELADDR    21
#define RTM_GETADDR    22
#define RTM_NEWROUTE   24
#define IFLA_ADDRESS   1
#define IFA_ADDRESS    1
#define IFA_LOCAL      2
#define RTA_OIF        4
#define RTA_GATEWAY    5
#define RT_TABLE_MAIN  254
#define RTPROT_BOOT    3
#define RTN_UNICAST    1
#define NET_IF_WAIT_MS 3000
#define NET_RESOLV     "/etc/resolv.conf"

struct nlmsghdr {
    uint32_t nlmsg_len;
    uint16_t nlmsg_type;
    uint16_t nlmsg_flags;
    uint32_t nlmsg_seq;
    uint32_t nlmsg_pid;
};
struct nlmsgerr {
    int error;
    struct nlmsghdr msg;
};
struct ifinfomsg {
    unsigned char ifi_family, ifi_pad;
    unsigned short ifi_type;
    int ifi_index;
    unsigned ifi_flags, ifi_change;
};
struct ifaddrmsg {
    uint8_t ifa_family, ifa_prefixlen, ifa_flags, ifa_scope;
    uint32_t ifa_index;
};
struct rtmsg {
    unsigned char rtm_family, rtm_dst_len, rtm_src_len, rtm_tos, rtm_table, rtm_protocol, rtm_scope,
        rtm_type;
    unsigned rtm_flags;
};
struct rtattr {
    unsigned short rta_len, rta_type;
};
struct nl_sockaddr {
    sa_family_t nl_family;
    unsigned short nl_pad;
    uint32_t nl_pid, nl_groups;
};

#define NL_ALIGN(n) (((n) + 3u) & ~3u)

struct nl_req {
    struct nlmsghdr h;
    char body[256];
};

static void
req_init(struct nl_req *q, uint16_t type, uint16_t flags, const void *hdr, size_t hlen)
{
    memset(q, 0, sizeof(*q));
    q->h.nlmsg_type = type;
    q->h.nlmsg_flags = NLM_F_REQUEST | flags;
    memcpy(q->body, hdr, hlen);
    q->h.nlmsg_len = (uint32_t)NL_ALIGN(sizeof(q->h) + hlen);
}

static void
req_attr(struct nl_req *q, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)q + q->h.nlmsg_len);
    a->rta_type = type;
    a->rta_len = (unsigned short)(sizeof(*a) + len);
    memcpy(a + 1, data, len);
    q->h.nlmsg_len += NL_ALIGN(a->rta_len);
}

/* Send q and wait for its acknowledgement: 0 or -errno. */
static int
nl_talk(int fd, struct nl_req *q)
{
    static uint32_t seq;
    char buf[4096];
    struct nl_sockaddr to = { .nl_family = AF_NETLINK };

    q->h.nlmsg_seq = ++seq;
    q->h.nlmsg_flags |= NLM_F_ACK;
    if (sendto(fd, q, q->h.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
        return -errno;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        for (size_t off = 0; off + sizeof(struct nlmsghdr) <= (size_t)n;) {
            struct nlmsghdr *h = (struct nlmsghdr *)(buf + off);
            if (h->nlmsg_len < sizeof(*h) || off + h->nlmsg_len > (size_t)n)
                break;
            if (h->nlmsg_seq == q->h.nlmsg_seq && h->nlmsg_type == NLMSG_ERROR)
                return ((struct nlmsgerr *)(h + 1))->error; /* 0 = ack */
            off += NL_ALIGN(h->nlmsg_len);
        }
    }
}

/* Delete every IPv4 address of ifindex (a fork child's parent's). */
static int
addr_flush(int fd, int ifindex)
{
    struct ifaddrmsg am = { .ifa_family = AF_INET };
    struct nl_req q;
    char buf[8192];
    struct {
        uint8_t prefix;
        uint32_t local;
    } found[16];
    size_t nfound = 0;
    bool done = false;

    req_init(&q, RTM_GETADDR, NLM_F_DUMP, &am, sizeof(am));
    q.h.nlmsg_seq = 0x7a000001;
    struct nl_sockaddr to = { .nl_family = AF_NETLINK };
    if (sendto(fd, &q, q.h.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
        return -errno;
    while (!done) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        for (size_t off = 0; off + sizeof(struct nlmsghdr) <= (size_t)n;) {
            struct nlmsghdr *h = (struct nlmsghdr *)(buf + off);
            if (h->nlmsg_len < sizeof(*h) || off + h->nlmsg_len > (size_t)n)
                break;
            off += NL_ALIGN(h->nlmsg_len);
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            if (h->nlmsg_type != RTM_NEWADDR)
                continue;
            struct ifaddrmsg *a = (struct ifaddrmsg *)(h + 1);
            if ((int)a->ifa_index != ifindex || nfound == sizeof(found) / sizeof(found[0]))
                continue;
            size_t alen = h->nlmsg_len - NL_ALIGN(sizeof(*h) + sizeof(*a));
            struct rtattr *ra = (struct rtattr *)((char *)a + NL_ALIGN(sizeof(*a)));
            while (alen >= sizeof(*ra) && ra->rta_len >= sizeof(*ra) && ra->rta_len <= alen) {
                if (ra->rta_type == IFA_LOCAL && ra->rta_len == sizeof(*ra) + 4) {
                    found[nfound].prefix = a->ifa_prefixlen;
                    memcpy(&found[nfound].local, ra + 1, 4);
                    nfound++;
                }
                alen -= NL_ALIGN(ra->rta_len) < alen ? NL_ALIGN(ra->rta_len) : alen;
                ra = (struct rtattr *)((char *)ra + NL_ALIGN(ra->rta_len));
            }
        }
    }
    for (size_t k = 0; k < nfound; k++) {
        struct ifaddrmsg del = { .ifa_family = AF_INET,
                                 .ifa_prefixlen = found[k].prefix,
                                 .ifa_index = (uint32_t)ifindex };
        req_init(&q, RTM_DELADDR, 0, &del, sizeof(del));
        req_attr(&q, IFA_LOCAL, &found[k].local, 4);
        int r = nl_talk(fd, &q);
        if (r < 0 && r != -EADDRNOTAVAIL)
            return r;
    }
    return 0;
}

int
net_cfg_parse(const char *text, struct net_cfg *ret)
{
    char buf[96];
    struct net_cfg c = { 0 };
    struct in_addr a;

    if (strlen(text) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, text);
    char *slash = strchr(buf, '/'), *comma = strchr(buf, ',');
    if (!slash || !comma || slash > comma)
        return -EINVAL;
    *slash = *comma = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1)
        return -EINVAL;
    c.ip = a.s_addr;
    char *end;
    unsigned long p = strtoul(slash + 1, &end, 10);
    if (end == slash + 1 || *end || p < 1 || p > 32)
        return -EINVAL;
    c.prefix = (unsigned)p;
    char *mac = strchr(comma + 1, ',');
    if (mac)
        *mac++ = '\0';
    if (inet_pton(AF_INET, comma + 1, &a) != 1)
        return -EINVAL;
    c.gw = a.s_addr;
    if (mac) {
        unsigned b[6];
        char tail;
        if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                   &tail) != 6)
            return -EINVAL;
        for (int k = 0; k < 6; k++)
            c.mac[k] = (uint8_t)b[k];
        c.has_mac = true;
    }
    *ret = c;
    return 0;
}

/* The guest's one NIC: the first interface that is not the loopback. It exists once
 * virtio_net probed its device, which module loading does synchronously; the wait covers a
 * late probe. */
static int
nic_find(char name[IF_NAMESIZE])
{
    for (int waited = 0; waited <= NET_IF_WAIT_MS; waited += 20) {
        struct if_nameindex *v = if_nameindex();
        int idx = 0;
        for (struct if_nameindex *p = v; p && p->if_index; p++)
            if (strcmp(p->if_name, "lo") != 0) {
                idx = (int)p->if_index;
                snprintf(name, IF_NAMESIZE, "%s", p->if_name);
                break;
            }
        if (v)
            if_freenameindex(v);
        if (idx > 0)
            return idx;
        nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000000 }, NULL);
    }
    return -ENODEV;
}

static void
write_small(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (write(fd, text, strlen(text)) < 0)
        agent_log("write '%s': %s", path, strerror(errno));
    close(fd);
}

/* Written whole to a temporary file and renamed: a reader never sees half of it. */
static void
resolv_write(uint32_t gw, const char *dns)
{
    char ip[INET_ADDRSTRLEN], text[256];
    int n = snprintf(text, sizeof(text), "# written by torpor-agent\n");

    /* The host's own name servers (torpord passes those its guests can reach), at most three
     * IPv4 literals as resolv.conf takes; else the gateway. */
    char list[128];
    unsigned kept = 0;
    snprintf(list, sizeof(list), "%s", dns ? dns : "");
    for (char *save = NULL, *w = strtok_r(list, ",", &save); w && kept < 3;
         w = strtok_r(NULL, ",", &save)) {
        struct in_addr a;
        if (inet_pton(AF_INET, w, &a) != 1)
            continue;
        n += snprintf(text + n, sizeof(text) - (size_t)n, "nameserver %s\n", w);
        kept++;
    }
    if (!kept) {
        inet_ntop(AF_INET, &gw, ip, sizeof(ip));
        n += snprintf(text + n, sizeof(text) - (size_t)n, "nameserver %s\n", ip);
    }
    int fd = open(NET_RESOLV ".torpor", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || rename(NET_RESOLV ".torpor", NET_RESOLV) < 0)
        agent_log("write '%s': %s", NET_RESOLV, strerror(errno));
    if (fd >= 0)
        close(fd);
}

int
net_apply(const struct net_cfg *c)
{
    char ifname[IF_NAMESIZE], path[96];
    struct nl_req q;
    int ifindex = nic_find(ifname), r;

    if (ifindex < 0)
        return ifindex;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    /* A MAC change and a link going up then announce the address (gratuitous ARP), so peers'
     * neighbour caches follow a fork child at once. */
    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/arp_notify", ifname);
    write_small(path, "1\n");

    /* A new MAC (a fork child): down first, so that coming up again makes the IPv6 link-local
     * address from the new MAC and announces the new pair. */
    if (c->has_mac) {
        struct ifinfomsg im = { .ifi_family = AF_UNSPEC,
                                .ifi_index = ifindex,
                                .ifi_change = IFF_UP };
        req_init(&q, RTM_NEWLINK, 0, &im, sizeof(im));
        r = nl_talk(fd, &q);
        if (r < 0) {
            close(fd);
            return r;
        }
    }
    r = addr_flush(fd, ifindex);
    if (r >= 0) {
        struct ifaddrmsg am = { .ifa_family = AF_INET,
                                .ifa_prefixlen = (uint8_t)c->prefix,
                                .ifa_index = (uint32_t)ifindex };
        req_init(&q, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &am, sizeof(am));
        req_attr(&q, IFA_LOCAL, &c->ip, 4);
        req_attr(&q, IFA_ADDRESS, &c->ip, 4);
        r = nl_talk(fd, &q);
    }
    if (r >= 0 && c->has_mac) {
        struct ifinfomsg im = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
        req_init(&q, RTM_NEWLINK, 0, &im, sizeof(im));
        req_attr(&q, IFLA_ADDRESS, c->mac, 6);
        r = nl_talk(fd, &q);
    }
    if (r >= 0) {
        struct ifinfomsg im = {
            .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP
        };
        req_init(&q, RTM_NEWLINK, 0, &im, sizeof(im));
        r = nl_talk(fd, &q);
    }
    if (r >= 0) {
        struct rtmsg rm = { .rtm_family = AF_INET,
                            .rtm_table = RT_TABLE_MAIN,
                            .rtm_protocol = RTPROT_BOOT,
                            .rtm_scope = 0, /* universe */
                            .rtm_type = RTN_UNICAST };
        req_init(&q, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rm, sizeof(rm));
        req_attr(&q, RTA_GATEWAY, &c->gw, 4);
        uint32_t oif = (uint32_t)ifindex;
        req_attr(&q, RTA_OIF, &oif, 4);
        r = nl_talk(fd, &q);
    }
    close(fd);
    if (r < 0)
        return r;
    if (!c->keep_resolv)
        resolv_write(c->gw, c->dns);
    return 0;
}

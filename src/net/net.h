/* Guest networking on the host: torpor's bridge, one TAP per VM, NAT and forwarding in
 * torpor's own nftables table (inet torpor), and the pure address arithmetic behind them.
 * Nothing here knows instances or hypervisors: the manager names TAPs and addresses. */
#pragma once

#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define NET_BRIDGE         "torpor0"
#define NET_NFT_TABLE      "torpor"    /* family inet */
#define NET_NFT_PORTS      "ports"     /* map: host address . proto . port -> guest . port */
#define NET_NFT_PORTS_ANY  "ports_any" /* map: proto . port -> guest . port (0.0.0.0) */
#define NET_TAP_PREFIX     "tp"        /* + 8 hex digits of the guest's address */
#define NET_SUBNET_DEFAULT "10.88.0.0/16"
#define NET_MAC_LEN        18 /* "xx:xx:xx:xx:xx:xx" + NUL */
#define NET_IP_LEN         16 /* "255.255.255.255" + NUL */

/* An IPv4 subnet; addresses are in host byte order throughout. */
struct net_subnet {
    uint32_t network; /* host bits zero */
    unsigned prefix;  /* 8..30 */
};

/* ---- addr.c: pure ---- */

/* "A.B.C.D/N" with N in 8..30 and no host bits set. -EINVAL saying what is wrong. */
int net_subnet_parse(const char *text, struct net_subnet *ret, struct tp_err *err);
/* "A.B.C.D/N" into buf (at least NET_IP_LEN + 3). */
void net_subnet_format(const struct net_subnet *sn, char *buf, size_t size);
uint32_t net_prefix_mask(unsigned prefix);
/* The gateway (the bridge's own address): the subnet's first host address. */
uint32_t net_subnet_gateway(const struct net_subnet *sn);
/* The lowest address after the gateway and before the broadcast address that is not in used
 * (any order, may hold addresses outside sn). -EADDRNOTAVAIL when every one is taken. */
int net_addr_pick(const struct net_subnet *sn, const uint32_t *used, size_t n, uint32_t *ret,
                  struct tp_err *err);
/* The guest's MAC: locally administered unicast 02:74 followed by its IPv4 address, so one
 * address always has one MAC (a reused address keeps peers' neighbour caches right). */
void net_mac_from_ip(uint32_t ip, uint8_t ret_mac[6]);
void net_mac_format(const uint8_t mac[6], char ret[NET_MAC_LEN]);
/* "xx:xx:xx:xx:xx:xx" (hex, either case). -EINVAL otherwise. */
int net_mac_parse(const char *text, uint8_t ret_mac[6]);
void net_ip_format(uint32_t ip, char ret[NET_IP_LEN]);
/* -EINVAL unless a dotted quad. */
int net_ip_parse(const char *text, uint32_t *ret);
/* The TAP of the guest at ip: NET_TAP_PREFIX + 8 lowercase hex digits (unique per address). */
void net_tap_name(uint32_t ip, char ret[IFNAMSIZ]);
/* Whether name is a TAP name net_tap_name() makes. */
bool net_tap_name_ours(const char *name);

/* ---- port.c: published ports, pure ---- */

#define NET_PORTS_MAX        64          /* per instance */
#define NET_PORT_HOST_IP_DEF 0x7f000001u /* 127.0.0.1: the host itself, as the issue asks */
/* "127.0.0.1:65535/tcp" and "65535/tcp -> 255.255.255.255:65535" fit. */
#define NET_PORT_STR_LEN 40

enum net_proto {
    NET_PROTO_TCP,
    NET_PROTO_UDP,
    _NET_PROTO_MAX,
    _NET_PROTO_INVALID = -EINVAL,
};

/* A guest port published on the host: traffic to host_ip:host_port/proto goes to the guest's
 * guest_port. host_ip 0 (0.0.0.0) means every address of the host. */
struct net_port {
    uint32_t host_ip; /* host byte order */
    uint16_t host_port;
    uint16_t guest_port;
    enum net_proto proto;
};

const char *net_proto_to_string(enum net_proto p); /* NULL when out of range */
enum net_proto net_proto_from_string(const char *s);
/* docker's -p: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]; HOSTIP is an IPv4 literal (default
 * 127.0.0.1), ports 1..65535, proto tcp by default. -EINVAL saying what is wrong. */
int net_port_parse(const char *text, struct net_port *ret, struct tp_err *err);
/* "HOSTIP:HOSTPORT/PROTO" (the host side, as conflicts are reported). */
void net_port_format_host(const struct net_port *p, char ret[NET_PORT_STR_LEN]);
/* Whether a and b claim the same host port: same proto and port, and the same address or
 * either one every address (0.0.0.0). */
bool net_port_overlaps(const struct net_port *a, const struct net_port *b);
/* ports 1..65535, proto valid, at most NET_PORTS_MAX, no two overlapping. -EINVAL naming the
 * offending entry ("ports[2]: ..."). */
int net_ports_check(const struct net_port *v, size_t n, struct tp_err *err);

/* ---- link.c: netlink (libnl-route-3) and /dev/net/tun; need CAP_NET_ADMIN ---- */

/* Create NET_BRIDGE if missing, give it the gateway address/prefix (replacing any other
 * address it has), bring it up. */
int net_bridge_ensure(const struct net_subnet *sn, struct tp_err *err);
/* Create TAP name (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), enslave it to NET_BRIDGE, bring it up, and
 * set its bridge port isolated (no layer-2 traffic with other isolated ports) or not. A leftover
 * interface of that name is deleted first. Not persistent: returns the O_CLOEXEC tun fd, and the
 * TAP goes when the last fd does, i.e. with the VMM it is handed to. persist (for a VMM that
 * opens the TAP by name): the TAP stays without an fd, owned by our euid (so a VMM without
 * CAP_NET_ADMIN may attach to it); returns 0, and the caller deletes it (net_link_delete) when
 * the VMM is gone. */
int net_tap_open(const char *name, bool isolated, bool persist, struct tp_err *err);
/* Delete interface name; 0 when it does not exist. */
int net_link_delete(const char *name, struct tp_err *err);
/* Names of the existing interfaces for which net_tap_name_ours() holds. *ret is a NULL-terminated
 * strv owned by the caller. */
int net_tap_list(char ***ret, struct tp_err *err);

/* The name servers of a resolv.conf text a guest can use: up to three IPv4 addresses, not
 * loopback, comma-separated into out (size bytes); their count. Pure. */
int net_resolv_servers(const char *text, char *out, size_t size);

/* ---- nft.c: libnftables; only tables inet and bridge NET_NFT_TABLE are ever touched ---- */

/* Replace the table's rules: masquerade what sn sends elsewhere, forward to and from the
 * bridge, DNAT published ports (maps NET_NFT_PORTS and NET_NFT_PORTS_ANY, whose elements are
 * kept). */
int net_nft_apply(const struct net_subnet *sn, struct tp_err *err);
/* Publish v[0..n) to the guest at guest_ip, in one transaction; tag (an instance id: [a-z0-9-])
 * is each element's comment. An element for the same host port that maps elsewhere is a
 * leftover: it is replaced. */
int net_nft_ports_add(const struct net_port *v, size_t n, uint32_t guest_ip, const char *tag,
                      struct tp_err *err);
/* Unpublish v[0..n) where they map to guest_ip; a port not published (or published to another
 * guest) is left alone, and no error. -EPERM when nftables refuses. */
int net_nft_ports_remove(const struct net_port *v, size_t n, uint32_t guest_ip, struct tp_err *err);
/* Make the published ports exactly v[0..n), in one transaction (recovery). */
struct net_nft_port {
    struct net_port port;
    uint32_t guest_ip;
    const char *tag;
};
int net_nft_ports_reset(const struct net_nft_port *v, size_t n, struct tp_err *err);
/* Let the TAP tap send only with mac ("xx:..") and ip (table bridge torpor, antispoof). */
int net_nft_tap_allow(const char *tap, const char *mac, uint32_t ip, struct tp_err *err);
/* Remove the tables (inet and bridge torpor); 0 when there are none. */
int net_nft_remove(struct tp_err *err);

/* ---- host.c: the two entry points of torpord ---- */

/* The host's name servers for guests ("IP[,IP...]", malloc'd), from /etc/resolv.conf or, when
 * that names only a local stub, systemd-resolved's list; NULL when there is none. */
char *net_host_dns(void);

/* Bridge, IPv4 forwarding, nft table: idempotent (a restart reapplies it). */
int net_host_setup(const struct net_subnet *sn, struct tp_err *err);
/* Whether the host port of p is free for publishing: bind it (and let go at once) in torpord's
 * network namespace. -EADDRINUSE when a socket of another process has it, -EINVAL when p's
 * address is not one of the host's. Ports below 1024 need CAP_NET_BIND_SERVICE here. */
int net_port_probe(const struct net_port *p, struct tp_err *err);
/* Every TAP of ours, the bridge and the table; 0 when nothing was there. Best effort: goes on
 * after a failure and returns the first. */
int net_host_cleanup(struct tp_err *err);

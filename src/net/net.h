/* Guest networking on the host: torpor's bridge, one TAP per VM, NAT and forwarding in
 * torpor's own nftables table (inet torpor), and the pure address arithmetic behind them.
 * Nothing here knows instances or hypervisors: the manager names TAPs and addresses. */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define NET_BRIDGE         "torpor0"
#define NET_NFT_TABLE      "torpor" /* family inet */
#define NET_TAP_PREFIX     "tp"     /* + 8 hex digits of the guest's address */
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

/* ---- link.c: netlink (libnl-route-3) and /dev/net/tun; need CAP_NET_ADMIN ---- */

/* Create NET_BRIDGE if missing, give it the gateway address/prefix (replacing any other
 * address it has), bring it up. */
int net_bridge_ensure(const struct net_subnet *sn, struct tp_err *err);
/* Create TAP name (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, not persistent: it goes when the last fd
 * does, i.e. with the VMM it is handed to), enslave it to NET_BRIDGE, bring it up. A leftover
 * interface of that name is deleted first. Returns the O_CLOEXEC tun fd. */
int net_tap_open(const char *name, struct tp_err *err);
/* Delete interface name; 0 when it does not exist. */
int net_link_delete(const char *name, struct tp_err *err);
/* Names of the existing interfaces for which net_tap_name_ours() holds. *ret is a NULL-terminated
 * strv owned by the caller. */
int net_tap_list(char ***ret, struct tp_err *err);

/* ---- nft.c: libnftables; only table inet NET_NFT_TABLE is ever touched ---- */

/* Replace the table's contents: masquerade what sn sends elsewhere, forward to and from the
 * bridge. */
int net_nft_apply(const struct net_subnet *sn, struct tp_err *err);
/* Remove the table; 0 when there is none. */
int net_nft_remove(struct tp_err *err);

/* ---- host.c: the two entry points of torpord ---- */

/* Bridge, IPv4 forwarding, nft table: idempotent (a restart reapplies it). */
int net_host_setup(const struct net_subnet *sn, struct tp_err *err);
/* Every TAP of ours, the bridge and the table; 0 when nothing was there. Best effort: goes on
 * after a failure and returns the first. */
int net_host_cleanup(struct tp_err *err);

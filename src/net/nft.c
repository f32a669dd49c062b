/* NAT and forwarding for the guest subnet in torpor's own nftables table (libnftables); no
 * other table or chain is read or written. */
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

/* DNAT of published ports (prerouting and output): to a local address only, by address first,
 * then for every address. A lookup that misses matches nothing, and the packet goes on. */
#define DNAT_RULES                                                                       \
    "fib daddr type local meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto " \
    ". th dport map @" NET_NFT_PORTS "\n"                                                \
    "    fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th "   \
    "dport map @" NET_NFT_PORTS_ANY

/* Run one nft script atomically (libnftables commits a buffer as a single transaction). */
static int
nft_run(const char *script, const char *what, struct tp_err *err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    int r = 0;

    if (!ctx)
        return tp_err_set(err, -ENOMEM, "%s: create an nftables context", what);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, script) != 0) {
        char *msg = xstrdup(nft_ctx_get_error_buffer(ctx));
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        /* libnftables reports no errno; permission and a kernel without nf_tables are the
         * usual causes, and worth naming. */
        if (strstr(msg, "Operation not permitted"))
            r = tp_err_set(err, -EPERM, "%s: %s", what, msg);
        else if (strstr(msg, "Protocol not supported") || strstr(msg, "Address family not"))
            r = tp_err_set(err, -EOPNOTSUPP,
                           "%s: %s (is the nf_tables module loaded? modprobe nf_tables)", what,
                           msg);
        else
            r = tp_err_set(err, -EIO, "%s: %s", what, *msg ? msg : "nft failed");
        free(msg);
    }
    nft_ctx_free(ctx);
    return r;
}

/* A table of this name that torpord did not make (it carries TABLE_MARK) is someone else's:
 * flushing it would destroy their rules. 0 when there is none or it is ours. */
#define TABLE_MARK "torpord"

static int
table_foreign(const char *family, struct tp_err *err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    _cleanup_free_ char *cmd = xasprintf("list table %s " NET_NFT_TABLE, family);
    int r = 0;

    if (!ctx)
        return tp_err_set(err, -ENOMEM, "create an nftables context");
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, cmd) == 0) { /* it exists */
        const char *out = nft_ctx_get_output_buffer(ctx);
        if (!out || !strstr(out, "comment \"" TABLE_MARK "\""))
            r = tp_err_set(err, -EEXIST,
                           "an nftables table '%s " NET_NFT_TABLE "' exists that torpord did not "
                           "make: remove it (nft delete table %s " NET_NFT_TABLE
                           ") or run torpord without --network",
                           family, family);
    }
    nft_ctx_free(ctx);
    return r;
}

int
net_nft_apply(const struct net_subnet *sn, struct tp_err *err)
{
    int rf = table_foreign("inet", err);
    if (rf == 0)
        rf = table_foreign("bridge", err);
    if (rf < 0)
        return rf;
    char sub[NET_IP_LEN + 4], gw[NET_IP_LEN], gw_mac[NET_MAC_LEN];
    uint8_t mac[6];
    net_subnet_format(sn, sub, sizeof(sub));
    net_ip_format(net_subnet_gateway(sn), gw);
    net_mac_from_ip(net_subnet_gateway(sn), mac);
    net_mac_format(mac, gw_mac);
    /* add + flush + define in one transaction: the table never exists half-filled, and a
     * restart with another --subnet replaces the old rules. `flush table` empties the chains
     * but not the maps: published ports of VMMs that outlived a daemon keep working while the
     * next one starts (inst_net_reclaim then replaces the maps' contents).
     * - postrouting: masquerade what leaves the subnet; what the host sends a guest from
     *   127.0.0.0/8 (a published port on 127.0.0.1: the guest cannot answer a loopback
     *   address); and a guest's connection to a published port that lands on a guest (so the
     *   reply comes back through the host, which undoes the DNAT).
     * - prerouting (arriving from elsewhere) and output (made on the host): DNAT of published
     *   ports, by host address (ports) or for every local address (ports_any).
     * - guard: route_localnet on the bridge (host.c) must not let guests reach the host's
     *   loopback services, so nothing from the bridge may be addressed to 127.0.0.0/8.
     * - guard also: nothing addressed to 127.0.0.0/8 arrives from anywhere but lo (a DNAT of a
     *   port published on 127.0.0.1 must not be reachable from the LAN), and no guest sends
     *   with a loopback source.
     * - forward: what the bridge sends (not to link-local 169.254/16, the cloud metadata
     *   service), and replies to it; DNATed traffic to the bridge; nothing else to it (a LAN
     *   host routing our subnet through us reaches no guest). With br_netfilter, bridged frames
     *   between shared guests pass here too (in and out torpor0): they are accepted.
     * - table bridge torpor: each TAP may send only with its own MAC and IPv4 address, in
     *   Ethernet, ARP and IP (no IPv6 is offered): no guest takes over another's address; and
     *   nothing to the gateway's MAC for another guest's address: routing through the host
     *   would get around port isolation (published ports go to the gateway's own address). */
    char *script =
        xasprintf("add table inet " NET_NFT_TABLE " { comment \"" TABLE_MARK "\"; }\n"
                  "flush table inet " NET_NFT_TABLE "\n"
                  "table inet " NET_NFT_TABLE " {\n"
                  "  comment \"" TABLE_MARK "\"\n"
                  "  map " NET_NFT_PORTS " {\n"
                  "    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service\n"
                  "  }\n"
                  "  map " NET_NFT_PORTS_ANY " {\n"
                  "    type inet_proto . inet_service : ipv4_addr . inet_service\n"
                  "  }\n"
                  "  chain guard {\n"
                  "    type filter hook prerouting priority raw; policy accept;\n"
                  "    iifname != \"lo\" ip daddr 127.0.0.0/8 drop\n"
                  "    iifname \"" NET_BRIDGE "\" ip saddr 127.0.0.0/8 drop\n"
                  "  }\n"
                  "  chain prerouting {\n"
                  "    type nat hook prerouting priority dstnat; policy accept;\n"
                  "    " DNAT_RULES "\n"
                  "  }\n"
                  "  chain output {\n"
                  "    type nat hook output priority -100; policy accept;\n"
                  "    " DNAT_RULES "\n"
                  "  }\n"
                  "  chain postrouting {\n"
                  "    type nat hook postrouting priority srcnat; policy accept;\n"
                  "    ip saddr %s ip daddr != %s masquerade\n"
                  "    oifname \"" NET_BRIDGE "\" ip saddr 127.0.0.0/8 masquerade\n"
                  "    oifname \"" NET_BRIDGE "\" ip saddr %s ct status dnat masquerade\n"
                  "  }\n"
                  "  chain forward {\n"
                  "    type filter hook forward priority filter; policy accept;\n"
                  "    iifname \"" NET_BRIDGE "\" ip daddr 169.254.0.0/16 drop\n"
                  "    iifname \"" NET_BRIDGE "\" accept\n"
                  "    oifname \"" NET_BRIDGE "\" ct state established,related accept\n"
                  "    oifname \"" NET_BRIDGE "\" ct status dnat accept\n"
                  "    oifname \"" NET_BRIDGE "\" drop\n"
                  "  }\n"
                  "}\n"
                  "add table bridge " NET_NFT_TABLE " { comment \"" TABLE_MARK "\"; }\n"
                  "flush table bridge " NET_NFT_TABLE "\n"
                  "table bridge " NET_NFT_TABLE " {\n"
                  "  comment \"" TABLE_MARK "\"\n"
                  "  set macs {\n"
                  "    type ifname . ether_addr\n"
                  "  }\n"
                  "  set ips {\n"
                  "    type ifname . ipv4_addr\n"
                  "  }\n"
                  "  chain antispoof {\n"
                  "    type filter hook prerouting priority -300; policy accept;\n"
                  "    iifname != \"" NET_TAP_PREFIX "*\" accept\n"
                  "    iifname . ether saddr != @macs counter drop\n"
                  "    ether type arp iifname . arp saddr ether != @macs counter drop\n"
                  "    ether type arp iifname . arp saddr ip != @ips counter drop\n"
                  "    ether type ip iifname . ip saddr != @ips counter drop\n"
                  "    ether daddr %s ip daddr %s ip daddr != %s counter drop\n"
                  "    ether type ip6 drop\n"
                  "  }\n"
                  "}\n",
                  sub, sub, sub, gw_mac, sub, gw);
    int r = nft_run(script, "set up nftables tables inet and bridge " NET_NFT_TABLE, err);
    free(script);
    return r;
}

/* A comment nft takes inside quotes as it is: an instance id or name. */
static bool
tag_ok(const char *tag)
{
    if (!tag || !*tag || strlen(tag) > 64)
        return false;
    for (const char *c = tag; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return false;
    return true;
}

/* Append "<verb> element inet torpor MAP { KEY [comment "TAG"] [: VALUE] }\n" to *script:
 * with_value for add, not for delete. */
static void
append_element(char **script, const char *verb, const struct net_port *p, uint32_t guest_ip,
               const char *tag, bool with_value)
{
    char host[NET_IP_LEN], guest[NET_IP_LEN], key[64], value[48], comment[80] = "";
    const char *proto = net_proto_to_string(p->proto);

    net_ip_format(p->host_ip, host);
    net_ip_format(guest_ip, guest);
    if (p->host_ip)
        snprintf(key, sizeof(key), "%s . %s . %u", host, proto, (unsigned)p->host_port);
    else
        snprintf(key, sizeof(key), "%s . %u", proto, (unsigned)p->host_port);
    snprintf(value, sizeof(value), " : %s . %u", guest, (unsigned)p->guest_port);
    if (with_value && tag_ok(tag))
        snprintf(comment, sizeof(comment), " comment \"%s\"", tag);
    char *s = xasprintf(
        "%s%s element inet " NET_NFT_TABLE " %s { %s%s%s }\n", *script ? *script : "", verb,
        p->host_ip ? NET_NFT_PORTS : NET_NFT_PORTS_ANY, key, comment, with_value ? value : "");
    free(*script);
    *script = s;
}

int
net_nft_ports_add(const struct net_port *v, size_t n, uint32_t guest_ip, const char *tag,
                  struct tp_err *err)
{
    _cleanup_free_ char *script = NULL;
    int r;

    if (n == 0)
        return 0;
    for (size_t k = 0; k < n; k++)
        append_element(&script, "add", &v[k], guest_ip, tag, true);
    r = nft_run(script, "publish ports", NULL);
    if (r >= 0)
        return 0;
    /* The store makes a host port one instance's at a time, so an element already there for
     * another guest is a leftover (its removal failed): delete it and try once more. */
    for (size_t k = 0; k < n; k++) {
        _cleanup_free_ char *del = NULL;
        append_element(&del, "delete", &v[k], guest_ip, NULL, false);
        (void)nft_run(del, "remove a stale published port", NULL);
    }
    return nft_run(script, "publish ports in nftables table inet " NET_NFT_TABLE, err);
}

int
net_nft_ports_remove(const struct net_port *v, size_t n, uint32_t guest_ip, struct tp_err *err)
{
    int first = 0;

    /* One port per transaction, and each one added before it is deleted: a missing element is
     * not an error, and an element that maps to another guest (the add fails) is not ours. */
    for (size_t k = 0; k < n; k++) {
        _cleanup_free_ char *script = NULL;
        _cleanup_(tp_err_clear) struct tp_err e = { 0 };
        append_element(&script, "add", &v[k], guest_ip, NULL, true);
        append_element(&script, "delete", &v[k], guest_ip, NULL, false);
        int r = nft_run(script, "unpublish port", &e);
        if (r == -EPERM && first == 0)
            first = tp_err_set(err, r, "%s", tp_err_msg(&e));
    }
    return first;
}

int
net_nft_ports_reset(const struct net_nft_port *v, size_t n, struct tp_err *err)
{
    _cleanup_free_ char *script =
        xstrdup("flush map inet " NET_NFT_TABLE " " NET_NFT_PORTS "\n"
                "flush map inet " NET_NFT_TABLE " " NET_NFT_PORTS_ANY "\n");

    for (size_t k = 0; k < n; k++)
        append_element(&script, "add", &v[k].port, v[k].guest_ip, v[k].tag, true);
    return nft_run(script, "replace the published ports in nftables table inet " NET_NFT_TABLE,
                   err);
}

int
net_nft_tap_allow(const char *tap, const char *mac, uint32_t ip, struct tp_err *err)
{
    char addr[NET_IP_LEN];
    _cleanup_free_ char *script = NULL;

    /* The TAP's name, MAC and address all follow from the address: an element left behind
     * is still right for whoever gets that address next. */
    net_ip_format(ip, addr);
    script = xasprintf("add element bridge " NET_NFT_TABLE " macs { \"%s\" . %s }\n"
                       "add element bridge " NET_NFT_TABLE " ips { \"%s\" . %s }\n",
                       tap, mac, tap, addr);
    return nft_run(script, "allow the guest's own addresses on its TAP", err);
}

int
net_nft_remove(struct tp_err *err)
{
    /* Someone else's table of this name is theirs to remove. */
    int rf = table_foreign("inet", err);
    if (rf == 0)
        rf = table_foreign("bridge", err);
    if (rf < 0)
        return rf;
    /* `add` first so that `delete` never fails on a missing table (nft 1.0.6 has no
     * `destroy`); both in one transaction. */
    return nft_run("add table inet " NET_NFT_TABLE "\ndelete table inet " NET_NFT_TABLE "\n"
                   "add table bridge " NET_NFT_TABLE "\ndelete table bridge " NET_NFT_TABLE "\n",
                   "remove nftables tables inet and bridge " NET_NFT_TABLE, err);
}

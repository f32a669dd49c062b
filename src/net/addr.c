/* Address arithmetic for guest networks: subnets, address picking, MACs and TAP names. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

#define PREFIX_MIN 8
#define PREFIX_MAX 30 /* a /31 or /32 leaves no address after the gateway */

int
net_ip_parse(const char *text, uint32_t *ret)
{
    uint32_t ip = 0;
    const char *p = text;

    for (int k = 0; k < 4; k++) {
        unsigned v = 0, digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        /* No leading zeros: "010" would be octal to inet_aton and decimal here. */
        if (digits == 0 || digits > 3 || v > 255 || (digits > 1 && p[-(int)digits] == '0'))
            return -EINVAL;
        ip = ip << 8 | v;
        if (k < 3 && *p++ != '.')
            return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    *ret = ip;
    return 0;
}

uint32_t
net_prefix_mask(unsigned prefix)
{
    return prefix == 0 ? 0 : prefix >= 32 ? UINT32_MAX : ~(UINT32_MAX >> prefix);
}

int
net_subnet_parse(const char *text, struct net_subnet *ret, struct tp_err *err)
{
    const char *slash = text ? strchr(text, '/') : NULL;
    char addr[NET_IP_LEN];
    uint32_t ip;
    char *end;

    if (!slash || (size_t)(slash - text) >= sizeof(addr))
        return tp_err_set(err, -EINVAL, "subnet '%s' is not A.B.C.D/N", text ? text : "");
    memcpy(addr, text, (size_t)(slash - text));
    addr[slash - text] = '\0';
    if (net_ip_parse(addr, &ip) < 0)
        return tp_err_set(err, -EINVAL, "subnet '%s': '%s' is not an IPv4 address", text, addr);
    errno = 0;
    long prefix = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || errno || slash[1] == '-' || slash[1] == '+')
        return tp_err_set(err, -EINVAL, "subnet '%s': prefix '%s' is not a number", text,
                          slash + 1);
    if (prefix < PREFIX_MIN || prefix > PREFIX_MAX)
        return tp_err_set(err, -EINVAL, "subnet '%s': prefix /%ld is outside /%d../%d", text,
                          prefix, PREFIX_MIN, PREFIX_MAX);
    if (ip & ~net_prefix_mask((unsigned)prefix)) {
        char net[NET_IP_LEN];
        net_ip_format(ip & net_prefix_mask((unsigned)prefix), net);
        return tp_err_set(err, -EINVAL, "subnet '%s' has host bits set (did you mean '%s/%ld'?)",
                          text, net, prefix);
    }
    *ret = (struct net_subnet){ .network = ip, .prefix = (unsigned)prefix };
    return 0;
}

void
net_subnet_format(const struct net_subnet *sn, char *buf, size_t size)
{
    char ip[NET_IP_LEN];
    net_ip_format(sn->network, ip);
    snprintf(buf, size, "%s/%u", ip, sn->prefix);
}

uint32_t
net_subnet_gateway(const struct net_subnet *sn)
{
    return sn->network + 1;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int
net_addr_pick(const struct net_subnet *sn, const uint32_t *used, size_t n, uint32_t *ret,
              struct tp_err *err)
{
    uint32_t first = net_subnet_gateway(sn) + 1;
    uint32_t last = (sn->network | ~net_prefix_mask(sn->prefix)) - 1; /* before broadcast */
    uint32_t *v = NULL;
    uint32_t cand = first;

    if (n) {
        v = malloc(n * sizeof(*v));
        if (!v)
            abort();
        memcpy(v, used, n * sizeof(*v));
        qsort(v, n, sizeof(*v), cmp_u32);
    }
    /* Walk the sorted taken addresses: the first gap at or after `first` is the answer. */
    for (size_t k = 0; k < n && cand <= last; k++) {
        if (v[k] < cand)
            continue;
        if (v[k] > cand)
            break;
        cand++;
    }
    free(v);
    if (cand > last) {
        char sub[NET_IP_LEN + 4];
        net_subnet_format(sn, sub, sizeof(sub));
        return tp_err_set(err, -EADDRNOTAVAIL,
                          "no free address in subnet '%s': all %" PRIu32 " are taken", sub,
                          last - first + 1);
    }
    *ret = cand;
    return 0;
}

void
net_mac_from_ip(uint32_t ip, uint8_t ret_mac[6])
{
    ret_mac[0] = 0x02; /* locally administered, unicast */
    ret_mac[1] = 0x74;
    ret_mac[2] = (uint8_t)(ip >> 24);
    ret_mac[3] = (uint8_t)(ip >> 16);
    ret_mac[4] = (uint8_t)(ip >> 8);
    ret_mac[5] = (uint8_t)ip;
}

void
net_mac_format(const uint8_t mac[6], char ret[NET_MAC_LEN])
{
    snprintf(ret, NET_MAC_LEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
net_mac_parse(const char *text, uint8_t ret_mac[6])
{
    uint8_t mac[6];

    if (!text || strlen(text) != NET_MAC_LEN - 1)
        return -EINVAL;
    for (int k = 0; k < 6; k++) {
        int hi = hex_digit(text[3 * k]), lo = hex_digit(text[3 * k + 1]);
        if (hi < 0 || lo < 0 || (k < 5 && text[3 * k + 2] != ':'))
            return -EINVAL;
        mac[k] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(ret_mac, mac, sizeof(mac));
    return 0;
}

void
net_ip_format(uint32_t ip, char ret[NET_IP_LEN])
{
    snprintf(ret, NET_IP_LEN, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff,
             ip & 0xff);
}

void
net_tap_name(uint32_t ip, char ret[IFNAMSIZ])
{
    snprintf(ret, IFNAMSIZ, NET_TAP_PREFIX "%08" PRIx32, ip);
}

bool
net_tap_name_ours(const char *name)
{
    size_t pl = strlen(NET_TAP_PREFIX);
    if (strncmp(name, NET_TAP_PREFIX, pl) != 0 || strlen(name) != pl + 8)
        return false;
    return strspn(name + pl, "0123456789abcdef") == 8;
}

int
net_resolv_servers(const char *text, char *out, size_t size)
{
    int n = 0;
    size_t len = 0;

    if (size)
        out[0] = '\0';
    for (const char *line = text; line && *line && n < 3;) {
        const char *end = strchr(line, '\n');
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        char word[16], addr[64];
        /* "nameserver ADDR": IPv4 only, and not loopback (a stub resolver on the host is
         * nothing a guest can reach). */
        char lb[160];
        snprintf(lb, sizeof(lb), "%.*s", (int)(ll < sizeof(lb) - 1 ? ll : sizeof(lb) - 1), line);
        uint32_t ip;
        if (sscanf(lb, "%15s %63s", word, addr) == 2 && strcmp(word, "nameserver") == 0 &&
            net_ip_parse(addr, &ip) == 0 && (ip >> 24) != 127 && ip != 0) {
            int w = snprintf(out + len, size - len, "%s%s", n ? "," : "", addr);
            if (w < 0 || (size_t)w >= size - len)
                break;
            len += (size_t)w;
            n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

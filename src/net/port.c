/* Published ports: docker's -p syntax, their text form and the checks a list of them passes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "util/macro.h"

static const char *const proto_names[_NET_PROTO_MAX] = {
    [NET_PROTO_TCP] = "tcp",
    [NET_PROTO_UDP] = "udp",
};

const char *
net_proto_to_string(enum net_proto p)
{
    return p >= 0 && p < _NET_PROTO_MAX ? proto_names[p] : NULL;
}

enum net_proto
net_proto_from_string(const char *s)
{
    for (int p = 0; s && p < _NET_PROTO_MAX; p++)
        if (strcmp(proto_names[p], s) == 0)
            return (enum net_proto)p;
    return _NET_PROTO_INVALID;
}

/* A port number 1..65535 in decimal, nothing else (no sign, no spaces, no leading zero). */
static int
port_number(const char *s, size_t len, uint16_t *ret)
{
    unsigned v = 0;

    if (len == 0 || len > 5 || s[0] == '0')
        return -EINVAL;
    for (size_t k = 0; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[k] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *ret = (uint16_t)v;
    return 0;
}

int
net_port_parse(const char *text, struct net_port *ret, struct tp_err *err)
{
    struct net_port p = { .host_ip = NET_PORT_HOST_IP_DEF, .proto = NET_PROTO_TCP };
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    const char *colon2 = NULL, *colon1 = memchr(text, ':', len);

    if (slash) {
        p.proto = net_proto_from_string(slash + 1);
        if (p.proto < 0)
            return tp_err_set(err, -EINVAL, "port '%s': protocol '%s' is not tcp or udp", text,
                              slash + 1);
    }
    if (text[0] == '[')
        return tp_err_set(err, -EINVAL, "port '%s': only IPv4 host addresses are supported", text);
    if (colon1)
        colon2 = memchr(colon1 + 1, ':', len - (size_t)(colon1 + 1 - text));
    if (!colon1 || (colon2 && memchr(colon2 + 1, ':', len - (size_t)(colon2 + 1 - text))))
        return tp_err_set(err, -EINVAL,
                          "port '%s' is not [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp] (a host port "
                          "is required)",
                          text);
    const char *hport = text, *gport = colon1 + 1;
    if (colon2) {
        char ip[NET_IP_LEN];
        size_t n = (size_t)(colon1 - text);
        bool ok = n < sizeof(ip);
        if (ok) {
            memcpy(ip, text, n);
            ip[n] = '\0';
            ok = net_ip_parse(ip, &p.host_ip) == 0;
        }
        if (!ok)
            return tp_err_set(err, -EINVAL, "port '%s': host address '%.*s' is not an IPv4 address",
                              text, (int)n, text);
        hport = colon1 + 1;
        gport = colon2 + 1;
    }
    const char *hend = colon2 ? colon2 : colon1;
    if (port_number(hport, (size_t)(hend - hport), &p.host_port) < 0)
        return tp_err_set(err, -EINVAL, "port '%s': host port '%.*s' is not a number in 1..65535",
                          text, (int)(hend - hport), hport);
    if (port_number(gport, (size_t)(text + len - gport), &p.guest_port) < 0)
        return tp_err_set(err, -EINVAL, "port '%s': guest port '%.*s' is not a number in 1..65535",
                          text, (int)(text + len - gport), gport);
    *ret = p;
    return 0;
}

void
net_port_format_host(const struct net_port *p, char ret[NET_PORT_STR_LEN])
{
    char ip[NET_IP_LEN];
    const char *proto = net_proto_to_string(p->proto);

    net_ip_format(p->host_ip, ip);
    snprintf(ret, NET_PORT_STR_LEN, "%s:%u/%s", ip, (unsigned)p->host_port, proto ? proto : "?");
}

bool
net_port_overlaps(const struct net_port *a, const struct net_port *b)
{
    return a->proto == b->proto && a->host_port == b->host_port &&
           (a->host_ip == b->host_ip || a->host_ip == 0 || b->host_ip == 0);
}

int
net_ports_check(const struct net_port *v, size_t n, struct tp_err *err)
{
    if (n > NET_PORTS_MAX)
        return tp_err_set(err, -EINVAL, "%zu ports: at most %d can be published per instance", n,
                          NET_PORTS_MAX);
    for (size_t k = 0; k < n; k++) {
        char a[NET_PORT_STR_LEN], b[NET_PORT_STR_LEN];
        if (!net_proto_to_string(v[k].proto))
            return tp_err_set(err, -EINVAL, "ports[%zu]: protocol is not tcp or udp", k);
        if (v[k].host_port == 0 || v[k].guest_port == 0)
            return tp_err_set(err, -EINVAL, "ports[%zu]: ports are 1..65535", k);
        for (size_t j = 0; j < k; j++) {
            if (!net_port_overlaps(&v[j], &v[k]))
                continue;
            net_port_format_host(&v[k], a);
            net_port_format_host(&v[j], b);
            return tp_err_set(err, -EINVAL,
                              "ports[%zu]: '%s' is published twice (ports[%zu]: '%s')", k, a, j, b);
        }
    }
    return 0;
}

/* Unit tests for the pure parts of net/: subnets, address picking, MACs, TAP names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka needs the headers above */
#include <cmocka.h>

#include "net/net.h"
#include "util/cleanup.h"

static void
subnet_fails(const char *text, const char *needle)
{
    struct net_subnet sn = { .network = 7, .prefix = 7 };
    struct tp_err err = { 0 };

    assert_int_equal(net_subnet_parse(text, &sn, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("'%s': message '%s' lacks '%s'", text, tp_err_msg(&err), needle);
    assert_int_equal(sn.network, 7); /* untouched */
    tp_err_clear(&err);
}

static void
test_subnet_parse(void **state)
{
    struct net_subnet sn;
    char buf[32];
    (void)state;

    assert_int_equal(net_subnet_parse(NET_SUBNET_DEFAULT, &sn, NULL), 0);
    assert_int_equal(sn.network, 0x0a580000);
    assert_int_equal(sn.prefix, 16);
    assert_int_equal(net_subnet_gateway(&sn), 0x0a580001);
    net_subnet_format(&sn, buf, sizeof(buf));
    assert_string_equal(buf, "10.88.0.0/16");
    assert_int_equal(net_subnet_parse("192.168.7.248/30", &sn, NULL), 0);
    assert_int_equal(sn.prefix, 30);
    assert_int_equal(net_subnet_parse("10.0.0.0/8", &sn, NULL), 0);

    subnet_fails("10.88.0.0", "is not A.B.C.D/N");
    subnet_fails("", "is not A.B.C.D/N");
    subnet_fails("10.88.0/16", "is not an IPv4 address");
    subnet_fails("10.88.0.256/16", "is not an IPv4 address");
    subnet_fails("10.088.0.0/16", "is not an IPv4 address");
    subnet_fails("10.88.0.0/", "is not a number");
    subnet_fails("10.88.0.0/x", "is not a number");
    subnet_fails("10.88.0.0/+16", "is not a number");
    subnet_fails("10.88.0.0/31", "outside /8../30");
    subnet_fails("10.0.0.0/7", "outside /8../30");
    subnet_fails("10.88.0.1/16", "host bits set (did you mean '10.88.0.0/16'?)");
}

static void
test_addr_pick(void **state)
{
    struct net_subnet sn;
    struct tp_err err = { 0 };
    uint32_t ip = 0;
    (void)state;

    assert_int_equal(net_subnet_parse("10.88.0.0/16", &sn, NULL), 0);
    assert_int_equal(net_addr_pick(&sn, NULL, 0, &ip, NULL), 0);
    assert_int_equal(ip, 0x0a580002); /* after the gateway */
    /* The lowest gap, whatever order and strays (another subnet's) the list has. */
    const uint32_t used[] = { 0x0a580004, 0x01020304, 0x0a580002, 0x0a580003, 0x0a580006 };
    assert_int_equal(net_addr_pick(&sn, used, 5, &ip, NULL), 0);
    assert_int_equal(ip, 0x0a580005);

    /* A /30 has one guest address; a second one is an exhausted subnet. */
    assert_int_equal(net_subnet_parse("192.168.7.248/30", &sn, NULL), 0);
    assert_int_equal(net_addr_pick(&sn, NULL, 0, &ip, NULL), 0);
    assert_int_equal(ip, 0xc0a807fa);
    const uint32_t full[] = { 0xc0a807fa };
    ip = 0;
    assert_int_equal(net_addr_pick(&sn, full, 1, &ip, &err), -EADDRNOTAVAIL);
    assert_int_equal(ip, 0);
    assert_non_null(strstr(tp_err_msg(&err), "no free address in subnet '192.168.7.248/30'"));
    tp_err_clear(&err);

    /* /29: .1 gateway, .2-.6 guests, .7 broadcast. */
    assert_int_equal(net_subnet_parse("10.1.1.0/29", &sn, NULL), 0);
    const uint32_t five[] = { 0x0a010102, 0x0a010103, 0x0a010104, 0x0a010105, 0x0a010106 };
    assert_int_equal(net_addr_pick(&sn, five, 4, &ip, NULL), 0);
    assert_int_equal(ip, 0x0a010106);
    assert_int_equal(net_addr_pick(&sn, five, 5, &ip, NULL), -EADDRNOTAVAIL);
}

static void
test_mac_and_names(void **state)
{
    uint8_t mac[6], back[6];
    char text[NET_MAC_LEN], ip[NET_IP_LEN], tap[IFNAMSIZ];
    uint32_t v;
    (void)state;

    net_mac_from_ip(0x0a580002, mac);
    net_mac_format(mac, text);
    assert_string_equal(text, "02:74:0a:58:00:02");
    assert_true((mac[0] & 0x02) && !(mac[0] & 0x01)); /* locally administered, unicast */
    assert_int_equal(net_mac_parse("02:74:0A:58:00:02", back), 0);
    assert_memory_equal(mac, back, 6);
    assert_int_equal(net_mac_parse("02:74:0a:58:00", back), -EINVAL);
    assert_int_equal(net_mac_parse("02-74-0a-58-00-02", back), -EINVAL);
    assert_int_equal(net_mac_parse("02:74:0a:58:00:0g", back), -EINVAL);
    /* Different addresses, different MACs. */
    net_mac_from_ip(0x0a580003, back);
    assert_memory_not_equal(mac, back, 6);

    net_ip_format(0xc0a807fa, ip);
    assert_string_equal(ip, "192.168.7.250");
    assert_int_equal(net_ip_parse("192.168.7.250", &v), 0);
    assert_int_equal(v, 0xc0a807fa);
    assert_int_equal(net_ip_parse("1.2.3", &v), -EINVAL);
    assert_int_equal(net_ip_parse("1.2.3.4.", &v), -EINVAL);

    net_tap_name(0x0a580002, tap);
    assert_string_equal(tap, "tp0a580002");
    assert_true(strlen(tap) < IFNAMSIZ);
    assert_true(net_tap_name_ours(tap));
    assert_false(net_tap_name_ours("tp0a58000"));
    assert_false(net_tap_name_ours("tp0A580002"));
    assert_false(net_tap_name_ours("torpor0"));
    assert_false(net_tap_name_ours("tap0a580002"));
}

/* docker's -p syntax: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]. */
static void
test_port_parse(void **state)
{
    static const struct {
        const char *text;
        struct net_port want;
    } good[] = {
        { "8080:80", { 0x7f000001, 8080, 80, NET_PROTO_TCP } },
        { "8080:80/tcp", { 0x7f000001, 8080, 80, NET_PROTO_TCP } },
        { "5353:53/udp", { 0x7f000001, 5353, 53, NET_PROTO_UDP } },
        { "0.0.0.0:80:8000", { 0, 80, 8000, NET_PROTO_TCP } },
        { "10.1.2.3:1:65535/udp", { 0x0a010203, 1, 65535, NET_PROTO_UDP } },
        { "127.0.0.1:65535:1", { 0x7f000001, 65535, 1, NET_PROTO_TCP } },
    };
    static const struct {
        const char *text, *msg;
    } bad[] = {
        { "80", "is not [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp] (a host port is required)" },
        { "80/tcp", "a host port is required" },
        { "1.2.3.4:80:80:80", "is not [HOSTIP:]HOSTPORT:GUESTPORT" },
        { "8080:80/sctp", "protocol 'sctp' is not tcp or udp" },
        { "8080:80/", "protocol '' is not tcp or udp" },
        { "8080:80/TCP", "protocol 'TCP'" },
        { "0:80", "host port '0' is not a number in 1..65535" },
        { "65536:80", "host port '65536'" },
        { "080:80", "host port '080'" },
        { "-1:80", "host port '-1'" },
        { "+80:80", "host port '+80'" },
        { "8080-8090:80", "host port '8080-8090'" },
        { ":80", "host port ''" },
        { "80:", "guest port '' is not a number in 1..65535" },
        { "80:0", "guest port '0'" },
        { "80:99999", "guest port '99999'" },
        { "80: 80", "guest port ' 80'" },
        { "localhost:80:80", "host address 'localhost' is not an IPv4 address" },
        { "1.2.3:80:80", "host address '1.2.3'" },
        { "256.0.0.1:80:80", "host address '256.0.0.1'" },
        { ":80:80", "host address ''" },
        { "[::1]:80:80", "only IPv4 host addresses are supported" },
        { "", "is not [HOSTIP:]HOSTPORT:GUESTPORT" },
    };
    (void)state;

    for (size_t k = 0; k < ELEMENTSOF(good); k++) {
        struct net_port p = { 0 };
        struct tp_err err = { 0 };
        if (net_port_parse(good[k].text, &p, &err) < 0)
            fail_msg("'%s': %s", good[k].text, tp_err_msg(&err));
        assert_int_equal(p.host_ip, good[k].want.host_ip);
        assert_int_equal(p.host_port, good[k].want.host_port);
        assert_int_equal(p.guest_port, good[k].want.guest_port);
        assert_int_equal(p.proto, good[k].want.proto);
    }
    for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
        struct net_port p = { .host_port = 7 };
        struct tp_err err = { 0 };
        assert_int_equal(net_port_parse(bad[k].text, &p, &err), -EINVAL);
        if (!strstr(tp_err_msg(&err), bad[k].msg))
            fail_msg("'%s': got '%s', want '%s'", bad[k].text, tp_err_msg(&err), bad[k].msg);
        assert_int_equal(p.host_port, 7); /* ret untouched on failure */
        tp_err_clear(&err);
    }
}

/* A list: ranges, protocols, and no host port twice (0.0.0.0 overlaps every address). */
static void
test_ports_check(void **state)
{
    char text[NET_PORT_STR_LEN];
    struct tp_err err = { 0 };
    struct net_port v[NET_PORTS_MAX + 1];
    (void)state;

    assert_int_equal(net_ports_check(NULL, 0, &err), 0);
    v[0] = (struct net_port){ 0x7f000001, 80, 80, NET_PROTO_TCP };
    v[1] = (struct net_port){ 0x7f000001, 80, 80, NET_PROTO_UDP }; /* other proto */
    v[2] = (struct net_port){ 0x7f000002, 80, 80, NET_PROTO_TCP }; /* other address */
    v[3] = (struct net_port){ 0x7f000001, 81, 80, NET_PROTO_TCP }; /* same guest port: fine */
    assert_int_equal(net_ports_check(v, 4, &err), 0);
    v[4] = (struct net_port){ 0, 80, 90, NET_PROTO_UDP };
    assert_int_equal(net_ports_check(v, 5, &err), -EINVAL);
    assert_string_equal(
        tp_err_msg(&err),
        "ports[4]: '0.0.0.0:80/udp' is published twice (ports[1]: '127.0.0.1:80/udp')");
    tp_err_clear(&err);
    v[4] = (struct net_port){ 0x7f000001, 0, 90, NET_PROTO_UDP };
    assert_int_equal(net_ports_check(v, 5, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "ports[4]: ports are 1..65535");
    tp_err_clear(&err);
    v[4] = (struct net_port){ 0x7f000001, 90, 90, (enum net_proto)7 };
    assert_int_equal(net_ports_check(v, 5, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "ports[4]: protocol is not tcp or udp");
    tp_err_clear(&err);
    for (size_t k = 0; k < ELEMENTSOF(v); k++)
        v[k] = (struct net_port){ 0x7f000001, (uint16_t)(1000 + k), 80, NET_PROTO_TCP };
    assert_int_equal(net_ports_check(v, NET_PORTS_MAX, &err), 0);
    assert_int_equal(net_ports_check(v, NET_PORTS_MAX + 1, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "at most 64"));
    tp_err_clear(&err);

    net_port_format_host(&(struct net_port){ 0xffffffff, 65535, 1, NET_PROTO_UDP }, text);
    assert_string_equal(text, "255.255.255.255:65535/udp");
    assert_string_equal(net_proto_to_string(NET_PROTO_UDP), "udp");
    assert_null(net_proto_to_string(_NET_PROTO_MAX));
    assert_int_equal(net_proto_from_string("tcp"), NET_PROTO_TCP);
    assert_int_equal(net_proto_from_string("icmp"), _NET_PROTO_INVALID);
    assert_int_equal(net_proto_from_string(NULL), _NET_PROTO_INVALID);
}

static void
test_resolv_servers(void **state)
{
    char out[128];
    (void)state;

    assert_int_equal(
        net_resolv_servers("# c\nnameserver 127.0.0.53\noptions edns0\n", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(net_resolv_servers("search x\nnameserver 10.0.0.2\nnameserver ::1\n"
                                        "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"
                                        "nameserver 8.8.8.8\n",
                                        out, sizeof(out)),
                     3);
    assert_string_equal(out, "10.0.0.2,1.1.1.1,9.9.9.9");
    assert_int_equal(net_resolv_servers("nameserver 0.0.0.0\nnameserver x.y\n", out, sizeof(out)),
                     0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolv_servers), cmocka_unit_test(test_subnet_parse),
        cmocka_unit_test(test_addr_pick),      cmocka_unit_test(test_mac_and_names),
        cmocka_unit_test(test_port_parse),     cmocka_unit_test(test_ports_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

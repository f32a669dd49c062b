/* Guest networks from the manager's side: address allocation with the record, the TAP handed
 * to each VMM, what the guest is told, and reclaiming TAPs nobody uses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance/manager-internal.h"
#include "util/log.h"
#include "util/xalloc.h"

int
inst_insert_record(struct inst_manager *m, struct inst_record *rec, bool want_net,
                   struct tp_err *err)
{
    _cleanup_free_ uint32_t *used = NULL;
    size_t n = 0;
    int r;

    memset(&rec->net, 0, sizeof(rec->net));
    if (!want_net)
        return store_insert(m->store, rec, err);
    if (!m->net_on)
        return tp_err_set(err, -EOPNOTSUPP,
                          "torpord runs without guest networking (start it with --network or "
                          "--subnet CIDR), or ask for network 'none'");
    /* The store's unique index is the guarantee; the lock only keeps two runs from picking
     * the same address and one of them failing for it. */
    pthread_mutex_lock(&m->net_lock);
    r = store_net_used(m->store, &used, &n, err);
    if (r >= 0)
        r = net_addr_pick(&m->subnet, used, n, &rec->net.ip, err);
    if (r >= 0) {
        rec->net.prefix = (uint8_t)m->subnet.prefix;
        net_mac_from_ip(rec->net.ip, rec->net.mac);
        r = store_insert(m->store, rec, err);
    }
    pthread_mutex_unlock(&m->net_lock);
    if (r < 0)
        memset(&rec->net, 0, sizeof(rec->net));
    return r;
}

/* i's ports, to its address. */
static int
ports_publish(struct inst *i, struct tp_err *err)
{
    const struct inst_record *rec = i->rec;
    int r = net_nft_ports_add(rec->ports, rec->n_ports, rec->net.ip, i->id, err);
    if (r < 0)
        return tp_err_wrap(err, "publish the ports of '%s'", rec->name);
    return 0;
}

void
inst_ports_unpublish(struct inst_manager *m, struct inst *i)
{
    struct tp_err err = { 0 };

    if (!m->net_on || !i->rec || !i->rec->net.ip || i->rec->n_ports == 0)
        return;
    if (net_nft_ports_remove(i->rec->ports, i->rec->n_ports, i->rec->net.ip, &err) < 0)
        log_warn("instance=%s op=network unpublish ports: %s", i->id, tp_err_msg(&err));
    tp_err_clear(&err);
}

int
inst_nic_open(struct inst_manager *m, struct inst *i, struct hv_vm_spec *spec, struct inst_nic *nic,
              struct tp_err *err)
{
    const struct inst_net *net = &i->rec->net;
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    int r;

    spec->nic = NULL;
    if (!net->ip)
        return 0;
    if (!drv || !hv_has_cap(drv, HV_CAP_NET))
        return tp_err_set(err, -EOPNOTSUPP, "%s cannot give a guest a network interface yet",
                          drv ? drv->name : i->rec->cfg.hypervisor);
    if (!m->net_on)
        return tp_err_set(err, -EOPNOTSUPP,
                          "instance '%s' has a network address but torpord runs without guest "
                          "networking (--network or --subnet)",
                          i->rec->name);
    net_tap_name(net->ip, nic->tap);
    net_mac_format(net->mac, nic->mac);
    int fd = net_tap_open(nic->tap, !i->rec->cfg.net_shared, drv->net_tap_by_name, err);
    if (fd < 0)
        return tp_err_wrap(err, "network interface of '%s'", i->rec->name);
    nic->hv = (struct hv_nic){ .tap_fd = drv->net_tap_by_name ? -EBADF : fd,
                               .tap_name = nic->tap,
                               .mac = nic->mac };
    /* From here a failure closes the TAP (the cleanup), which the kernel then deletes, or
     * deletes a persistent one. */
    nic->m = m;
    nic->owner = i;
    r = net_nft_tap_allow(nic->tap, nic->mac, net->ip, err);
    if (r < 0)
        return tp_err_wrap(err, "network interface of '%s'", i->rec->name);
    r = inst_failpoint(i, "net.tap", err);
    if (r < 0)
        return r;
    if (i->rec->n_ports > 0) {
        r = ports_publish(i, err);
        if (r < 0)
            return r;
        r = inst_failpoint(i, "net.rules", err);
        if (r < 0)
            return r;
    }
    spec->nic = &nic->hv;
    return 0;
}

void
inst_nic_close(struct inst_nic *nic)
{
    nic->hv.tap_fd = safe_close(nic->hv.tap_fd);
    /* No VMM took the TAP over: its ports lead nowhere, a persistent TAP goes. */
    if (nic->owner && !nic->owner->vm)
        inst_net_detach(nic->m, nic->owner);
    nic->owner = NULL;
}

void
inst_net_detach(struct inst_manager *m, struct inst *i)
{
    const struct hv_driver *drv = i->rec ? hv_driver_find(i->rec->cfg.hypervisor) : NULL;
    struct tp_err err = { 0 };
    char tap[IFNAMSIZ];

    inst_ports_unpublish(m, i);
    if (!m->net_on || !i->rec->net.ip || !drv || !drv->net_tap_by_name)
        return;
    net_tap_name(i->rec->net.ip, tap);
    if (net_link_delete(tap, &err) < 0)
        log_warn("instance=%s op=network remove TAP: %s", i->id, tp_err_msg(&err));
    tp_err_clear(&err);
}

static void
net_strings(const struct inst_net *net, char ip[NET_IP_LEN], char gw[NET_IP_LEN])
{
    const struct net_subnet sn = { .network = net->ip & net_prefix_mask(net->prefix),
                                   .prefix = net->prefix };
    net_ip_format(net->ip, ip);
    net_ip_format(net_subnet_gateway(&sn), gw);
}

char *
inst_net_cmdline(const struct inst_record *rec)
{
    char ip[NET_IP_LEN], gw[NET_IP_LEN];

    if (!rec->net.ip)
        return NULL;
    net_strings(&rec->net, ip, gw);
    return xasprintf("torpor.net=%s/%u,%s", ip, (unsigned)rec->net.prefix, gw);
}

char *
inst_net_identity(const struct inst_record *rec)
{
    char ip[NET_IP_LEN], gw[NET_IP_LEN], mac[NET_MAC_LEN];

    if (!rec->net.ip)
        return NULL;
    net_strings(&rec->net, ip, gw);
    net_mac_format(rec->net.mac, mac);
    return xasprintf("net=%s/%u,%s,%s", ip, (unsigned)rec->net.prefix, gw, mac);
}

void
inst_net_release(struct inst_manager *m, struct inst *i)
{
    struct tp_err err = { 0 };
    char tap[IFNAMSIZ];

    if (!m->net_on || !i->rec->net.ip)
        return;
    inst_ports_unpublish(m, i);
    net_tap_name(i->rec->net.ip, tap);
    if (net_link_delete(tap, &err) < 0)
        log_warn("instance=%s op=network remove TAP: %s", i->id, tp_err_msg(&err));
    tp_err_clear(&err);
}

/* Publish exactly the ports of instances whose VMM lives, in one transaction: what a dead
 * daemon published for a VMM that is gone since (or half-published) goes. */
static void
ports_reclaim(struct inst_manager *m)
{
    struct net_nft_port *v = NULL;
    size_t n = 0;
    struct tp_err err = { 0 };

    pthread_mutex_lock(&m->lock);
    for (size_t k = 0; k < m->n; k++) {
        struct inst *i = m->tab[k];
        if (!i->rec || !i->rec->net.ip || !(i->vm || i->rec->vmm_pid > 0))
            continue;
        v = xrealloc(v, (n + i->rec->n_ports) * sizeof(*v));
        for (size_t p = 0; p < i->rec->n_ports; p++)
            v[n++] = (struct net_nft_port){ .port = i->rec->ports[p],
                                            .guest_ip = i->rec->net.ip,
                                            .tag = i->id };
    }
    /* The tags point into the table's instances: keep it still while nft reads them. */
    if (net_nft_ports_reset(v, n, &err) < 0)
        log_warn("op=recover reset published ports: %s", tp_err_msg(&err));
    pthread_mutex_unlock(&m->lock);
    tp_err_clear(&err);
    free(v);
}

void
inst_net_reclaim(struct inst_manager *m)
{
    _cleanup_strv_free_ char **taps = NULL;
    struct tp_err err = { 0 };

    if (!m->net_on)
        return;
    ports_reclaim(m);
    if (net_tap_list(&taps, &err) < 0) {
        log_warn("op=recover list TAPs: %s", tp_err_msg(&err));
        tp_err_clear(&err);
        return;
    }
    strv_foreach (t, taps) {
        bool used = false;
        pthread_mutex_lock(&m->lock);
        for (size_t k = 0; k < m->n && !used; k++) {
            struct inst *i = m->tab[k];
            char name[IFNAMSIZ];
            if (!i->rec || !i->rec->net.ip)
                continue;
            net_tap_name(i->rec->net.ip, name);
            /* Recorded pid: an Unknown instance's VMM lives without a handle. */
            used = strcmp(name, *t) == 0 && (i->vm || i->rec->vmm_pid > 0);
        }
        pthread_mutex_unlock(&m->lock);
        if (used)
            continue;
        log_info("op=recover removing TAP '%s': no instance's VMM uses it", *t);
        if (net_link_delete(*t, &err) < 0)
            log_warn("op=recover remove TAP '%s': %s", *t, tp_err_msg(&err));
        tp_err_clear(&err);
    }
}

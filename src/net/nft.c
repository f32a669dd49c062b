/* NAT and forwarding for the guest subnet in torpor's own nftables table (libnftables); no
 * other table or chain is read or written. */
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "util/xalloc.h"

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
        /* libnftables reports no errno; permission is the usual cause and worth naming. */
        r = tp_err_set(err, strstr(msg, "Operation not permitted") ? -EPERM : -EIO, "%s: %s", what,
                       *msg ? msg : "nft failed");
        free(msg);
    }
    nft_ctx_free(ctx);
    return r;
}

int
net_nft_apply(const struct net_subnet *sn, struct tp_err *err)
{
    char sub[NET_IP_LEN + 4];
    net_subnet_format(sn, sub, sizeof(sub));
    /* add + flush + define in one transaction: the table never exists half-filled, and a
     * restart with another --subnet replaces the old rules. Masquerade only what leaves the
     * subnet; forward what the bridge sends, and replies to it. */
    char *script = xasprintf("add table inet " NET_NFT_TABLE "\n"
                             "flush table inet " NET_NFT_TABLE "\n"
                             "table inet " NET_NFT_TABLE " {\n"
                             "  chain postrouting {\n"
                             "    type nat hook postrouting priority srcnat; policy accept;\n"
                             "    ip saddr %s ip daddr != %s masquerade\n"
                             "  }\n"
                             "  chain forward {\n"
                             "    type filter hook forward priority filter; policy accept;\n"
                             "    iifname \"" NET_BRIDGE "\" accept\n"
                             "    oifname \"" NET_BRIDGE "\" ct state established,related accept\n"
                             "  }\n"
                             "}\n",
                             sub, sub);
    int r = nft_run(script, "set up nftables table inet " NET_NFT_TABLE, err);
    free(script);
    return r;
}

int
net_nft_remove(struct tp_err *err)
{
    /* `add` first so that `delete` never fails on a missing table (nft 1.0.6 has no
     * `destroy`); both in one transaction. */
    return nft_run("add table inet " NET_NFT_TABLE "\ndelete table inet " NET_NFT_TABLE "\n",
                   "remove nftables table inet " NET_NFT_TABLE, err);
}

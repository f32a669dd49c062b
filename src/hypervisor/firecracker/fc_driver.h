/* The Firecracker driver (fc_driver.c), in the registry beside QEMU; tested against the strict
 * double (tests/fc-double), since Firecracker cannot run where torpor is built. */
#pragma once

#include "hypervisor/driver.h"

#define FC_BINARY_DEFAULT   "firecracker"
#define FC_BINARY_ENV       "TORPOR_FIRECRACKER" /* the binary (torpord --firecracker sets it) */
#define FC_AGENT_VSOCK_PORT 52                   /* where torpor's guest agent listens (AF_VSOCK) */

extern const struct hv_driver fc_driver;

/* The binary this driver starts: $TORPOR_FIRECRACKER, else "firecracker" on PATH. */
const char *fc_binary(void);
/* "X.Y.Z" from `firecracker --version` output ("Firecracker v1.16.1"); -EPROTO without one. */
int fc_version_parse(const char *text, char **ret);

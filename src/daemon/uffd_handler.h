/* torpord's page-fault handler mode: serves one restored Firecracker VMM's guest memory from a
 * snapshot's memory file over userfaultfd (docs/design/uffd.md). */
#pragma once

/* argv: torpord --uffd-handler MEMORY-FILE INSTANCE-DIR, with the listening socket as fd 3.
 * Returns the process's exit status. */
int uffd_handler_main(int argc, char **argv);

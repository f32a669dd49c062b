/* The agent's built-in commands (AGENT_EXEC_F_BUILTIN): tar-out and tar-in, for copying files
 * in and out of guests whose images have no tar of their own. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "tar.h"

static int
argc_of(char *const *argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

static int
builtin_tar_out(char *const *argv)
{
    if (argc_of(argv) != 2) {
        dprintf(STDERR_FILENO, "usage: tar-out PATH\n");
        return TAR_EXIT_FAIL;
    }
    return tar_create(STDOUT_FILENO, argv[1], STDERR_FILENO);
}

static int
builtin_tar_in(char *const *argv)
{
    if (argc_of(argv) != 2) {
        dprintf(STDERR_FILENO, "usage: tar-in DIR\n");
        return TAR_EXIT_FAIL;
    }
    return tar_extract(STDIN_FILENO, argv[1], STDERR_FILENO);
}

static const struct {
    const char *name;
    builtin_fn fn;
} builtins[] = {
    { "tar-out", builtin_tar_out },
    { "tar-in", builtin_tar_in },
};

builtin_fn
builtin_find(const char *name)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        if (strcmp(builtins[i].name, name) == 0)
            return builtins[i].fn;
    return NULL;
}

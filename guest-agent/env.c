/* The environment a command starts with: the host's variables, plus HOME, PATH and HOSTNAME
 * where the host passed none (docker exec gives the same three), and TERM for a terminal. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "agent.h"

static bool
env_has(char *const *env, const char *key)
{
    size_t n = strlen(key);

    for (; env && *env; env++)
        if (strncmp(*env, key, n) == 0 && (*env)[n] == '=')
            return true;
    return false;
}

char **
env_build(char *const *env, const char *home, bool tty)
{
    struct utsname u;
    bool add_home = !env_has(env, "HOME"), add_path = !env_has(env, "PATH");
    bool add_host = !env_has(env, "HOSTNAME") && uname(&u) == 0;
    bool add_term = tty && !env_has(env, "TERM");
    size_t n = 0, text = 0;

    if (add_home)
        text += strlen("HOME=") + strlen(home) + 1;
    if (add_host)
        text += strlen("HOSTNAME=") + strlen(u.nodename) + 1;
    for (; env && env[n]; n++)
        ;

    /* One block: the pointers (the host's strings are borrowed), then the added strings. */
    size_t slots = n + 4 + 1;
    char **out = malloc(slots * sizeof(char *) + text);
    if (!out)
        return NULL;
    char *s = (char *)(out + slots);
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        out[k++] = env[i];
    if (add_home) {
        out[k++] = s;
        s += sprintf(s, "HOME=%s", home) + 1;
    }
    if (add_path)
        out[k++] = (char *)AGENT_DEFAULT_PATH;
    if (add_host) {
        out[k++] = s;
        sprintf(s, "HOSTNAME=%s", u.nodename);
    }
    if (add_term)
        out[k++] = (char *)"TERM=xterm";
    out[k] = NULL;
    return out;
}

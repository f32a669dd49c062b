/* The environment a command starts with: the host's variables, plus HOME, PATH and HOSTNAME
 * where the host passed none (docker exec gives the same three). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "agent.h"

#define HOME_MAX 4096

static bool
env_has(char *const *env, const char *key)
{
    size_t n = strlen(key);

    for (; env && *env; env++)
        if (strncmp(*env, key, n) == 0 && (*env)[n] == '=')
            return true;
    return false;
}

bool
env_passwd_home(const char *passwd_path, uid_t uid, char *buf, size_t size)
{
    FILE *f = fopen(passwd_path, "re");
    char *line = NULL;
    size_t cap = 0;
    bool found = false;

    if (!f)
        return false;
    while (!found && getline(&line, &cap, f) > 0) {
        /* name:password:uid:gid:gecos:home:shell */
        char *field[7] = { 0 }, *p = line;
        size_t k = 0;

        line[strcspn(line, "\n")] = '\0';
        for (; k < 7 && p; k++) {
            field[k] = p;
            p = strchr(p, ':');
            if (p)
                *p++ = '\0';
        }
        if (k < 6 || !*field[2] || !*field[5])
            continue;
        char *end;
        errno = 0;
        unsigned long u = strtoul(field[2], &end, 10);
        if (errno || *end || field[2][0] == '-' || u != (unsigned long)uid)
            continue;
        /* The first entry for uid decides, as getpwuid() does; one that does not fit is not
         * truncated into another directory. */
        if (strlen(field[5]) < size) {
            strcpy(buf, field[5]);
            found = true;
        } else {
            break;
        }
    }
    free(line);
    fclose(f);
    return found;
}

char **
env_build(char *const *env, uid_t uid, const char *passwd_path)
{
    char home[HOME_MAX];
    struct utsname u;
    bool add_home = !env_has(env, "HOME"), add_path = !env_has(env, "PATH");
    bool add_host = !env_has(env, "HOSTNAME") && uname(&u) == 0;
    size_t n = 0, text = 0;

    if (add_home && !env_passwd_home(passwd_path, uid, home, sizeof(home)))
        strcpy(home, uid == 0 ? "/root" : "/");
    if (add_home)
        text += strlen("HOME=") + strlen(home) + 1;
    if (add_host)
        text += strlen("HOSTNAME=") + strlen(u.nodename) + 1;
    for (; env && env[n]; n++)
        ;

    /* One block: the pointers (the host's strings are borrowed), then the added strings. */
    size_t slots = n + 3 + 1;
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
    out[k] = NULL;
    return out;
}

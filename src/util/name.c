/* Instance names: lowercase letters and digits, '-' after the first character. */
#include "name.h"

bool
name_valid(const char *s, size_t max)
{
    size_t n;

    if (!s)
        return false;
    for (n = 0; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (n > 0 && c == '-');
        if (!ok || n >= max)
            return false;
    }
    return n > 0;
}

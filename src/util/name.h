/* The one rule for instance names (and refs, whose ids and id prefixes are lowercase hex):
 * [a-z0-9][a-z0-9-]{0,max-1}. The store, the API and the CLI all check it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define NAME_MAX_LEN 63

bool name_valid(const char *s, size_t max);

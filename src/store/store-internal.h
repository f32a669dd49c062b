/* Helpers shared inside the store module (and its tests): inst_config <-> JSON text. */
#pragma once

#include "store/store.h"

/* Compact JSON object of c (cmd as an array, absent values as null); caller frees.
 * -EINVAL when a string is not valid UTF-8 (JSON cannot carry it). */
int inst_config_to_json(const struct inst_config *c, char **ret_json, struct tp_err *err);

/* Parse what inst_config_to_json() wrote. Unknown keys are ignored and missing ones read as
 * NULL/0/true(agent), so later versions can add fields without a migration.
 * -EBADMSG when text is not JSON or a field has the wrong type or range. */
int inst_config_from_json(const char *text, struct inst_config *ret, struct tp_err *err);

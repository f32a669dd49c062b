/* Instance states and the single-hop transition table the manager composes flows from. */
#pragma once

#include <stdbool.h>

enum inst_state {
    INST_CREATED,
    INST_RUNNING,
    INST_PAUSED,
    INST_STANDBY,
    INST_STOPPED,
    INST_UNKNOWN,
    _INST_STATE_MAX,
    _INST_STATE_INVALID = -22,
};

/* "Created", "Running", ...; NULL for a value outside the enum. */
const char *inst_state_to_string(enum inst_state s);
/* "Running" (as printed) or lowercase; returns _INST_STATE_INVALID on anything else (and NULL). */
enum inst_state inst_state_from_string(const char *s);
/* Whether from -> to is one legal hop. from == to is never a hop; out-of-range values are not. */
bool inst_state_can(enum inst_state from, enum inst_state to);

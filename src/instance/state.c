/* Instance states: their names and the single-hop transition table. */
#include "instance/state.h"

#include <stddef.h>
#include <string.h>

#include "util/macro.h"

static const char *const state_names[_INST_STATE_MAX] = {
    [INST_CREATED] = "Created", [INST_RUNNING] = "Running", [INST_PAUSED] = "Paused",
    [INST_STANDBY] = "Standby", [INST_STOPPED] = "Stopped", [INST_UNKNOWN] = "Unknown",
};

/* Lowercase spellings, accepted on input so users can type `torpor ls --state running`. */
static const char *const state_names_lower[_INST_STATE_MAX] = {
    [INST_CREATED] = "created", [INST_RUNNING] = "running", [INST_PAUSED] = "paused",
    [INST_STANDBY] = "standby", [INST_STOPPED] = "stopped", [INST_UNKNOWN] = "unknown",
};

/* hop[from][to]: one step the manager may take. Multi-step flows (e.g. Running -> Paused ->
 * Standby) are composed by the manager from these. Nothing returns to Created, and Unknown is
 * left only by re-deriving the state from what really exists (process, snapshot files). */
static const bool hop[_INST_STATE_MAX][_INST_STATE_MAX] = {
    [INST_CREATED] = {
        [INST_RUNNING] = true, /* booted, or a fork child resumed */
        [INST_STANDBY] = true, /* a fork child born as a snapshot (fork --standby) */
        [INST_STOPPED] = true, /* boot failed */
    },
    [INST_RUNNING] = {
        [INST_PAUSED] = true,
        [INST_STOPPED] = true,
        [INST_UNKNOWN] = true,
    },
    [INST_PAUSED] = {
        [INST_RUNNING] = true,
        [INST_STANDBY] = true,
        [INST_STOPPED] = true,
        [INST_UNKNOWN] = true,
    },
    [INST_STANDBY] = {
        [INST_PAUSED] = true,  /* snapshot loaded, not yet resumed */
        [INST_RUNNING] = true, /* resumed on load */
        [INST_STOPPED] = true, /* snapshot discarded */
    },
    [INST_STOPPED] = {
        [INST_RUNNING] = true, /* start */
    },
    [INST_UNKNOWN] = {
        [INST_RUNNING] = true,
        [INST_PAUSED] = true,
        [INST_STANDBY] = true,
        [INST_STOPPED] = true,
    },
};

static bool
state_valid(enum inst_state s)
{
    return (int)s >= 0 && s < _INST_STATE_MAX;
}

const char *
inst_state_to_string(enum inst_state s)
{
    return state_valid(s) ? state_names[s] : NULL;
}

enum inst_state
inst_state_from_string(const char *s)
{
    if (!s)
        return _INST_STATE_INVALID;
    for (size_t i = 0; i < ELEMENTSOF(state_names); i++)
        if (strcmp(s, state_names[i]) == 0 || strcmp(s, state_names_lower[i]) == 0)
            return (enum inst_state)i;
    return _INST_STATE_INVALID;
}

bool
inst_state_can(enum inst_state from, enum inst_state to)
{
    if (!state_valid(from) || !state_valid(to))
        return false;
    return hop[from][to];
}

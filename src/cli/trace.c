/* --trace output: the phases of an instance's last_operation, as run, standby, restore and
 * fork (for its source) print them. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util/macro.h"

void
cli_print_trace(const json_t *inst)
{
    const json_t *op = json_object_get(inst, "last_operation");
    const json_t *phases = json_object_get(op, "phases");
    const json_t *ph;
    size_t i, width = strlen("total");

    if (!json_is_array(phases))
        return;
    json_array_foreach(phases, i, ph)
    {
        const char *name = json_string_value(json_object_get(ph, "name"));
        if (name)
            width = MAX(width, strlen(name));
    }
    json_array_foreach(phases, i, ph)
    {
        const char *name = json_string_value(json_object_get(ph, "name"));
        fprintf(stderr, "%-*s %10.1f ms\n", (int)width, name ? name : "?",
                json_number_value(json_object_get(ph, "ms")));
    }
    if (json_is_number(json_object_get(op, "total_ms")))
        fprintf(stderr, "%-*s %10.1f ms\n", (int)width, "total",
                json_number_value(json_object_get(op, "total_ms")));
}

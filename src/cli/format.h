/* --format templates for ps and inspect (format.c). */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "util/err.h"

/* -EINVAL for a template that cannot be right (unclosed "{{"), before anything is asked. */
int cli_format_check(const char *tmpl, struct tp_err *err);
/* One line for obj: tmpl with each {{...}} replaced. -EINVAL naming a field obj lacks. */
int cli_format_print(FILE *out, const char *tmpl, const json_t *obj, struct tp_err *err);

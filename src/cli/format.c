/* --format for ps and inspect, as docker's: "json", "table", or a Go-template-like text where
 * {{.Field}} (or {{.Field.Sub}}) is a field of the instance and {{json .}} / {{json .Field}} its
 * JSON. Field names match the API's keys without case or underscores: .ID, .Name, .State,
 * .CreatedAt, .LastOperation.TotalMs. */
#include "format.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/xalloc.h"

/* "CreatedAt" names "created_at": letters and digits compared without case, '_' skipped. */
static bool
key_matches(const char *want, size_t len, const char *key)
{
    size_t i = 0;
    for (; *key; key++) {
        if (*key == '_')
            continue;
        if (i >= len || tolower((unsigned char)want[i]) != tolower((unsigned char)*key))
            return false;
        i++;
    }
    return i == len;
}

static const json_t *
field(const json_t *obj, const char *path, size_t len)
{
    const json_t *cur = obj;
    size_t at = 0;

    while (at < len) {
        if (path[at] != '.')
            return NULL;
        size_t end = at + 1;
        while (end < len && path[end] != '.')
            end++;
        if (end == at + 1)
            return at == 0 && len == 1 ? obj : NULL; /* "." alone */
        const char *k;
        json_t *v, *next = NULL;
        json_object_foreach((json_t *)cur, k, v) if (key_matches(path + at + 1, end - at - 1, k))
            next = v;
        if (!next)
            return NULL;
        cur = next;
        at = end;
    }
    return cur;
}

static void
put_value(FILE *out, const json_t *v, bool as_json)
{
    if (as_json || json_is_object(v) || json_is_array(v)) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(s ? s : "null", out);
        free(s);
    } else if (json_is_string(v))
        fputs(json_string_value(v), out);
    else if (json_is_integer(v))
        fprintf(out, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        fprintf(out, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        fputs(json_is_true(v) ? "true" : "false", out);
    else
        fputs("<no value>", out); /* null, as Go's templates print a missing value */
}

int
cli_format_check(const char *tmpl, struct tp_err *err)
{
    for (const char *p = strstr(tmpl, "{{"); p; p = strstr(p + 2, "{{"))
        if (!strstr(p, "}}"))
            return tp_err_set(err, -EINVAL, "--format: '{{' without '}}' in '%s'", tmpl);
    return 0;
}

int
cli_format_print(FILE *out, const char *tmpl, const json_t *obj, struct tp_err *err)
{
    const char *p = tmpl;

    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            fputs(p, out);
            break;
        }
        fwrite(p, 1, (size_t)(open - p), out);
        const char *close = strstr(open + 2, "}}");
        if (!close)
            return tp_err_set(err, -EINVAL, "--format: '{{' without '}}'");
        const char *a = open + 2, *b = close;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        bool as_json = (size_t)(b - a) > 5 && strncmp(a, "json ", 5) == 0;
        if (as_json) {
            a += 5;
            while (a < b && isspace((unsigned char)*a))
                a++;
        }
        const json_t *v = field(obj, a, (size_t)(b - a));
        if (!v)
            return tp_err_set(err, -EINVAL, "--format: no field '%.*s'", (int)(b - a), a);
        put_value(out, v, as_json);
        p = close + 2;
    }
    fputc('\n', out);
    return 0;
}

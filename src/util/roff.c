/* roff output for generated manual pages: escaping and requests. */
#include "util/roff.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/xalloc.h"

void
roff_text(FILE *f, const char *s)
{
    bool line_start = true;

    for (; *s; s++) {
        if (line_start) {
            /* Leading blanks would force a break and an indent: the filler decides. */
            while (*s == ' ' || *s == '\t')
                s++;
            if (!*s)
                break;
            if (*s == '.' || *s == '\'')
                fputs("\\&", f);
        }
        line_start = *s == '\n';
        switch (*s) {
        case '\\':
            fputs("\\e", f);
            break;
        case '-':
            fputs("\\-", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

void
roff_title(FILE *f, const char *name, const char *section, const char *source, const char *manual)
{
    fputs(".TH \"", f);
    for (const char *p = name; *p; p++)
        fputc(toupper((unsigned char)*p), f);
    fprintf(f, "\" \"%s\" \"\" \"%s\" \"%s\"\n", section, source, manual);
    /* No hyphenation, ragged right: option names must stay whole to be searchable. */
    fputs(".nh\n.ad l\n", f);
}

void
roff_section(FILE *f, const char *title)
{
    fprintf(f, ".SH \"%s\"\n", title);
}

void
roff_paragraphs(FILE *f, const char *text)
{
    const char *p = text;

    while (*p) {
        while (*p == '\n')
            p++;
        if (!*p)
            break;
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        _cleanup_free_ char *buf = xstrndup(p, len);

        fputs(".PP\n", f);
        roff_text(f, buf);
        if (len > 0 && buf[len - 1] != '\n')
            fputc('\n', f);
        p += len;
    }
}

void
roff_option(FILE *f, char short_name, const char *name, const char *arg, const char *help)
{
    fputs(".TP\n", f);
    if (short_name)
        fprintf(f, "\\fB\\-%c\\fR, ", short_name);
    fputs("\\fB\\-\\-", f);
    roff_text(f, name);
    fputs("\\fR", f);
    if (arg) {
        fputs(" \\fI", f);
        roff_text(f, arg);
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff_text(f, help ? help : "");
    fputc('\n', f);
}

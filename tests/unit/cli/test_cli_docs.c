/* Unit tests for what the CLI generates from its tables (completion scripts, torpor(1)) and for
 * the pure parts of torpor stats (sizes, rows, options). */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "cli/cli.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

static char *
generate(void (*gen)(FILE *f))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    gen(f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* The line of arm (a verb's case arm in the script) that sets key, e.g. "opts='...'". */
static char *
arm_value(const char *arm, const char *key)
{
    _cleanup_free_ char *pat = xasprintf("\n        %s='", key);
    const char *p = strstr(arm, pat), *end;

    if (!p)
        return NULL;
    p += strlen(pat);
    end = strchr(p, '\'');
    assert_non_null(end);
    return xasprintf(" %.*s ", (int)(end - p), p); /* padded: words are " w " */
}

static bool
has_word(const char *words, const char *prefix, const char *word)
{
    _cleanup_free_ char *w = xasprintf(" %s%s ", prefix, word);
    return strstr(words, w) != NULL;
}

/* Every verb of the table has an arm in the bash script, listing each of its options (long and
 * short), each option taking a value among valopts, and what its operands are. */
static void
test_bash_completion_covers_the_tables(void **state)
{
    _cleanup_free_ char *script = generate(cli_completion_bash);
    (void)state;

    const char *help_arm = strstr(script, "\n    help)\n");
    _cleanup_free_ char *verbs = NULL, *top = NULL;

    assert_non_null(strstr(script, "\ncomplete -F _torpor torpor\n"));
    assert_non_null(help_arm);
    verbs = arm_value(help_arm, "choices");
    assert_non_null(verbs);
    top = xasprintf("compgen -W '%.*s' -- \"$cur\"", (int)strlen(verbs) - 2, verbs + 1);
    assert_non_null(strstr(script, top));
    for (size_t i = 0; i < cli_n_verbs; i++) {
        const struct cli_verb *v = &cli_verbs[i];
        _cleanup_free_ char *head = xasprintf("\n    %s)\n", v->name);
        _cleanup_free_ char *opts = NULL, *valopts = NULL, *arm = NULL;
        const char *at = strstr(script, head), *end;
        struct cli_syntax syn;

        if (!at)
            fail_msg("no case arm for verb '%s'", v->name);
        end = strstr(at, ";;");
        arm = xstrndup(at, (size_t)(end - at));
        opts = arm_value(arm, "opts");
        valopts = arm_value(arm, "valopts");
        assert_non_null(opts);
        assert_non_null(valopts);
        assert_true(has_word(opts, "--", "help") && has_word(opts, "-", "h"));
        v->syntax(v->name, &syn);
        assert_string_equal(syn.verb, v->name);
        for (size_t k = 0; k < CLI_FLAGS_MAX && syn.flags[k].name; k++) {
            const struct cli_flag *fl = &syn.flags[k];
            char s[2] = { fl->short_name, '\0' };

            if (!fl->help)
                continue;
            if (!has_word(opts, "--", fl->name) || (fl->short_name && !has_word(opts, "-", s)))
                fail_msg("%s: opts lack --%s or -%s: %s", v->name, fl->name, s, opts);
            if (has_word(valopts, "--", fl->name) != (fl->arg != NULL))
                fail_msg("%s: valopts wrong about --%s: %s", v->name, fl->name, valopts);
        }
        if (!strstr(arm, "operands="))
            fail_msg("%s: no operands", v->name);
        /* The verb list offered after "torpor " and "torpor help " names it too. */
        assert_true(has_word(verbs, "", v->name));
    }
    /* Global options, for "torpor --<TAB>"; --man stays hidden. */
    assert_non_null(strstr(script, "'--socket --version -V --help -h'"));
    assert_null(strstr(script, "--man"));
}

/* zsh gets the same script through bashcompinit. */
static void
test_zsh_completion(void **state)
{
    _cleanup_free_ char *zsh = generate(cli_completion_zsh);
    _cleanup_free_ char *bash = generate(cli_completion_bash);
    (void)state;

    assert_true(strncmp(zsh, "#compdef torpor\n", 16) == 0);
    assert_non_null(strstr(zsh, "bashcompinit"));
    assert_non_null(strstr(zsh, bash));
}

/* roff for --name: "\-\-name" with each '-' escaped. */
static char *
roff_long(const char *name)
{
    char *out = xmalloc(2 * strlen(name) + 8), *p = out;

    p += sprintf(p, "\\-\\-");
    for (; *name; name++) {
        if (*name == '-')
            *p++ = '\\';
        *p++ = *name;
    }
    *p = '\0';
    return out;
}

static void
test_man_page_covers_the_tables(void **state)
{
    _cleanup_free_ char *page = generate(cli_man_page);
    (void)state;

    assert_true(strncmp(page, ".TH \"TORPOR\" \"1\"", 16) == 0);
    for (size_t i = 0; i < cli_n_verbs; i++) {
        const struct cli_verb *v = &cli_verbs[i];
        _cleanup_free_ char *ss = xasprintf(".SS \"torpor %s\"\n", v->name);
        const char *at = strstr(page, ss), *end;
        _cleanup_free_ char *sect = NULL;
        struct cli_syntax syn;

        if (!v->help) {
            assert_null(at);
            continue;
        }
        if (!at) {
            fail_msg("no section for '%s'", v->name);
            return; /* fail_msg is not known to gcc as noreturn */
        }
        end = strstr(at + 1, ".SS ");
        if (!end)
            end = strstr(at, ".SH ");
        sect = xstrndup(at, (size_t)(end - at));
        v->syntax(v->name, &syn);
        for (size_t k = 0; k < CLI_FLAGS_MAX && syn.flags[k].name; k++) {
            _cleanup_free_ char *want = roff_long(syn.flags[k].name);
            if (!strstr(sect, want))
                fail_msg("%s: no %s in its section", v->name, want);
        }
    }
    /* No line starts a request by accident: each begins with '.', a letter, '\\' or the like,
     * never with a space (a break) or "'" (a request). */
    for (const char *l = page; *l; l = strchrnul(l, '\n'), l += *l ? 1 : 0)
        if (*l == ' ' || *l == '\'')
            fail_msg("bad line: %.40s", l);
}

static void
test_format_bytes(void **state)
{
    static const struct {
        uint64_t n;
        const char *want;
    } rows[] = {
        { 0, "0B" },
        { 1023, "1023B" },
        { 1024, "1KiB" },
        { 256ull << 20, "256MiB" },
        { 209640ull * 1024, "204.7MiB" },
        { 3ull << 29, "1.5GiB" },
        { 1ull << 40, "1TiB" },
    };
    char buf[32];
    (void)state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        cli_format_bytes(rows[i].n, buf, sizeof(buf));
        assert_string_equal(buf, rows[i].want);
    }
}

static json_t *
sample(int64_t cpu_ns, int64_t ts)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id", "0123456789abcdef", "name", "web",
                     "cpu_ns", (json_int_t)cpu_ns, "timestamp_ms", (json_int_t)ts, "pss_bytes",
                     (json_int_t)(64ll << 20), "memory_bytes", (json_int_t)(256ll << 20), "threads",
                     (json_int_t)6);
}

static void
test_stats_row(void **state)
{
    json_t *a = sample(1000000000, 10000), *b = sample(1500000000, 11000);
    json_t *row = cli_stats_row(a, b, false);
    (void)state;

    /* 0.5 s of CPU in 1 s: 50% of one host CPU. */
    assert_string_equal(json_string_value(json_object_get(row, "CPUPerc")), "50.00%");
    assert_string_equal(json_string_value(json_object_get(row, "MemUsage")), "64MiB / 256MiB");
    assert_string_equal(json_string_value(json_object_get(row, "MemPerc")), "25.00%");
    assert_string_equal(json_string_value(json_object_get(row, "ID")), "0123456789ab");
    assert_string_equal(json_string_value(json_object_get(row, "Name")), "web");
    assert_string_equal(json_string_value(json_object_get(row, "PIDs")), "6");
    json_decref(row);
    /* No earlier sample, or a clock that did not move: 0%, never a division by zero. */
    row = cli_stats_row(NULL, b, true);
    assert_string_equal(json_string_value(json_object_get(row, "CPUPerc")), "0.00%");
    assert_string_equal(json_string_value(json_object_get(row, "ID")), "0123456789abcdef");
    json_decref(row);
    row = cli_stats_row(b, b, false);
    assert_string_equal(json_string_value(json_object_get(row, "CPUPerc")), "0.00%");
    json_decref(row);
    json_decref(a);
    json_decref(b);
}

static int
parse_stats(const char *const *words, struct stats_opts *o, struct tp_err *err)
{
    char *argv[16];
    int argc = 0;

    while (words[argc]) {
        argv[argc] = (char *)words[argc];
        argc++;
    }
    argv[argc] = NULL;
    return cli_parse_stats(argc, argv, o, err);
}

static void
test_stats_options(void **state)
{
    struct stats_opts o;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(parse_stats((const char *[]){ "stats", NULL }, &o, &err), 0);
    assert_false(o.no_stream || o.json || o.all || o.format || o.n_names);
    assert_int_equal(parse_stats((const char *[]){ "stats", "web", "--no-stream", "--format",
                                                   "json", "db", NULL },
                                 &o, &err),
                     0);
    assert_true(o.no_stream && o.json && !o.format);
    assert_int_equal(o.n_names, 2);
    assert_string_equal(o.names[1], "db");
    assert_int_equal(parse_stats((const char *[]){ "stats", "--format", "table", NULL }, &o, &err),
                     0);
    assert_false(o.json || o.format);
    assert_int_equal(
        parse_stats((const char *[]){ "stats", "--format", "{{.Name}}", "--no-trunc", NULL }, &o,
                    &err),
        0);
    assert_string_equal(o.format, "{{.Name}}");
    assert_true(o.no_trunc);
    assert_int_equal(
        parse_stats((const char *[]){ "stats", "--format", "{{.Name", NULL }, &o, &err), -EINVAL);
    tp_err_clear(&err);
    assert_int_equal(parse_stats((const char *[]){ "stats", "-a", "web", NULL }, &o, &err),
                     -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "takes no NAME"));
    tp_err_clear(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bash_completion_covers_the_tables),
        cmocka_unit_test(test_zsh_completion),
        cmocka_unit_test(test_man_page_covers_the_tables),
        cmocka_unit_test(test_format_bytes),
        cmocka_unit_test(test_stats_row),
        cmocka_unit_test(test_stats_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

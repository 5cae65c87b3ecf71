/* The Python literals of qubes.xml (`services`, `pcidevs`): parsed into
 * values, written back as Python's repr() writes them. */
#include <stdlib.h>
#include <string.h>

#include "../../orchestrator/pyliteral.h"
#include "../tap.h"

static char *dict_roundtrip(const char *text)
{
    struct pydict d;
    struct qerr err;
    if (pydict_parse(text, &d, &err) < 0)
        return NULL;
    char *out = pydict_format(&d);
    pydict_free(&d);
    return out;
}

static char *list_roundtrip(const char *text)
{
    struct pylist l;
    struct qerr err;
    if (pylist_parse(text, &l, &err) < 0)
        return NULL;
    char *out = pylist_format(&l);
    pylist_free(&l);
    return out;
}

static void is_str(char *got, const char *want, const char *name)
{
    ok(got && strcmp(got, want) == 0, "%s: %s", name, got ? got : "(parse failed)");
    free(got);
}

int main(void)
{
    struct qerr err;
    struct pydict d;
    struct pylist l;

    /* What the original wrote. */
    ok(pydict_parse("{ 'meminfo-writer': True}", &d, &err) == 0 && d.n == 1 &&
       strcmp(d.items[0].key, "meminfo-writer") == 0 && d.items[0].val.type == PYV_BOOL &&
       d.items[0].val.b, "the fixture's services dict parses to one true entry");
    pydict_free(&d);
    is_str(dict_roundtrip("{'ntpd': False, 'meminfo-writer': False}"),
           "{'ntpd': False, 'meminfo-writer': False}", "insertion order is kept");
    is_str(dict_roundtrip("{ 'meminfo-writer': True}"), "{'meminfo-writer': True}",
           "written back with Python's spacing");
    is_str(dict_roundtrip("{}"), "{}", "an empty dict");
    is_str(list_roundtrip("[]"), "[]", "an empty list");
    is_str(list_roundtrip("['02:00.0', '03:00.0']"), "['02:00.0', '03:00.0']", "a pcidevs list");
    ok(pylist_parse("['02:00.0', '03:00.0']", &l, &err) == 0 && l.n == 2 &&
       strcmp(l.items[1], "03:00.0") == 0, "list items are real strings");
    pylist_free(&l);

    /* repr() rules. */
    is_str(list_roundtrip("[\"it's\"]"), "[\"it's\"]", "a quote inside: double quotes");
    is_str(list_roundtrip("['say \"hi\"']"), "['say \"hi\"']", "double quotes inside: single");
    is_str(list_roundtrip("['both \\' and \"']"), "['both \\' and \"']",
           "both quotes: single, the single one escaped");
    is_str(list_roundtrip("['a\\\\b']"), "['a\\\\b']", "a backslash is escaped");
    is_str(list_roundtrip("['a\\nb\\tc']"), "['a\\nb\\tc']", "newline and tab are escaped");
    is_str(list_roundtrip("['\\x01']"), "['\\x01']", "control bytes as \\xNN");
    is_str(dict_roundtrip("{'a': None, 'b': -12, 'c': 'x'}"), "{'a': None, 'b': -12, 'c': 'x'}",
           "None, integers and strings as values");
    is_str(dict_roundtrip("{'a': True,}"), "{'a': True}", "a trailing comma is accepted");

    /* pydict_set replaces in place, appends new keys. */
    ok(pydict_parse("{'a': True, 'b': False}", &d, &err) == 0, "parse for editing");
    struct pyval v = { .type = PYV_BOOL, .b = true };
    pydict_set(&d, "b", &v);
    pydict_set(&d, "c", &v);
    char *f = pydict_format(&d);
    is_str(f, "{'a': True, 'b': True, 'c': True}", "set replaces in place and appends");
    pydict_del(&d, "a");
    is_str(pydict_format(&d), "{'b': True, 'c': True}", "del removes");
    pydict_free(&d);

    /* Malformed input: refused, with the offset. */
    static const struct {
        const char *text, *want;
    } bad[] = {
        { "", "expected '{'" },
        { "{'a': True", "expected ',' or '}'" },
        { "{'a' True}", "expected ':' at offset 5" },
        { "{'a': Tru}", "expected a string, True, False, None or an integer at offset 6" },
        { "{a: True}", "expected a quoted string at offset 1" },
        { "{'a: True}", "unterminated string at offset 1" },
        { "{'a': True} x", "unexpected text after the literal at offset 12" },
        { "{'a': True, 'a': False}", "duplicate key" },
        { "{'a': __import__('os')}", "at offset 6" },
        { "{'a': 99999999999999999999999}", "integer out of range" },
        { "{'a\\q': 1}", "unsupported escape" },
        { "{'\\x0': 1}", "bad \\x escape" },
        { "{'\\x00': 1}", "bad \\x escape" },
        { "{'a': True}}", "unexpected text" },
        { "{'a': [1]}", "at offset 6" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = pydict_parse(bad[i].text, &d, &err);
        ok(r < 0 && strstr(err.msg, bad[i].want), "dict [%s] refused: %s", bad[i].text,
           r < 0 ? err.msg : "(accepted)");
        if (r == 0)
            pydict_free(&d);
    }
    static const char *const bad_lists[] = { "[", "['a'", "['a' 'b']", "[1]", "['a'],", "{}" };
    for (size_t i = 0; i < sizeof bad_lists / sizeof *bad_lists; i++) {
        int r = pylist_parse(bad_lists[i], &l, &err);
        ok(r < 0, "list [%s] refused: %s", bad_lists[i], r < 0 ? err.msg : "(accepted)");
        if (r == 0)
            pylist_free(&l);
    }
    return done_testing();
}

/* The Python literals of qubes.xml (`services`, `pcidevs`): parsed into
 * values, written back as Python's repr() writes them. */
#include <stdio.h>
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
    if (got && strcmp(got, want) != 0)
        diag("expected: %s", want);
    free(got);
}

/* A list of one string: the string that the literal holds. */
static char *list_item(const char *text)
{
    struct pylist l = { 0 };
    struct qerr err;
    if (pylist_parse(text, &l, &err) < 0 || l.n != 1) {
        if (l.n)
            pylist_free(&l);
        return NULL;
    }
    char *s = strdup(l.items[0]);
    pylist_free(&l);
    return s;
}

/* The repr of a one-string list built through the API (not the parser). */
static char *repr_of(const char *s)
{
    struct pylist l = { 0 };
    if (pylist_append(&l, s) < 0)
        return NULL;
    char *out = pylist_format(&l);
    pylist_free(&l);
    return out;
}

/* The value of `key` in a parsed dict, checked for type. */
static int dict_int(const char *text, const char *key, long long want)
{
    struct pydict d;
    struct qerr err;
    if (pydict_parse(text, &d, &err) < 0)
        return 0;
    const struct pyval *v = pydict_get(&d, key);
    int r = v && v->type == PYV_INT && v->i == want;
    pydict_free(&d);
    return r;
}

int main(void)
{
    struct qerr err;
    struct pydict d;
    struct pylist l;

    /* ---- What the original wrote (the fixture's values). ---- */
    ok(pydict_parse("{ 'meminfo-writer': True}", &d, &err) == 0 && d.n == 1 &&
       strcmp(d.items[0].key, "meminfo-writer") == 0 && d.items[0].val.type == PYV_BOOL &&
       d.items[0].val.b, "the fixture's services dict parses to one true entry");
    pydict_free(&d);
    ok(pydict_parse("{'ntpd': False, 'meminfo-writer': False}", &d, &err) == 0 && d.n == 2 &&
       strcmp(d.items[0].key, "ntpd") == 0 && d.items[0].val.type == PYV_BOOL &&
       !d.items[0].val.b && strcmp(d.items[1].key, "meminfo-writer") == 0 &&
       d.items[1].val.type == PYV_BOOL && !d.items[1].val.b,
       "the netvm's services: ntpd False, then meminfo-writer False");
    ok(pydict_get(&d, "ntpd") == &d.items[0].val && pydict_get(&d, "nope") == NULL,
       "pydict_get finds a key and misses an absent one");
    pydict_free(&d);
    is_str(dict_roundtrip("{'ntpd': False, 'meminfo-writer': False}"),
           "{'ntpd': False, 'meminfo-writer': False}", "insertion order is kept");
    is_str(dict_roundtrip("{ 'meminfo-writer': True}"), "{'meminfo-writer': True}",
           "written back with Python's spacing");
    is_str(dict_roundtrip("{'meminfo-writer': True}"), "{'meminfo-writer': True}",
           "the usual services dict is written back unchanged");
    is_str(dict_roundtrip("{'meminfo-writer': False}"), "{'meminfo-writer': False}",
           "the HVM's services dict");
    is_str(dict_roundtrip("{}"), "{}", "an empty dict");
    ok(pylist_parse("[]", &l, &err) == 0 && l.n == 0, "[] is an empty list");
    pylist_free(&l);
    is_str(list_roundtrip("[]"), "[]", "an empty list");
    is_str(list_roundtrip("['02:00.0', '03:00.0']"), "['02:00.0', '03:00.0']", "a pcidevs list");
    ok(pylist_parse("['02:00.0', '03:00.0']", &l, &err) == 0 && l.n == 2 &&
       strcmp(l.items[0], "02:00.0") == 0 && strcmp(l.items[1], "03:00.0") == 0,
       "list items are real strings, in order");
    pylist_free(&l);

    /* ---- Insertion order. ---- */
    is_str(dict_roundtrip("{'z': 1, 'a': 2, 'm': 3, 'b': 4}"), "{'z': 1, 'a': 2, 'm': 3, 'b': 4}",
           "keys keep their order, not sorted");
    is_str(list_roundtrip("['zz', 'aa', 'mm']"), "['zz', 'aa', 'mm']", "list items keep their order");
    {
        struct pydict e = { 0 };
        struct pyval t = { .type = PYV_BOOL, .b = true }, n = { .type = PYV_NONE };
        pydict_set(&e, "second", &t);
        pydict_set(&e, "first", &n);
        pydict_set(&e, "second", &n);   /* replaced in place, not moved */
        is_str(pydict_format(&e), "{'second': None, 'first': None}",
               "a dict built with pydict_set keeps insertion order");
        pydict_free(&e);
    }

    /* ---- Whitespace as Python allows it. ---- */
    is_str(dict_roundtrip("  {\n\t'a' :\tTrue ,\r\n 'b':False }  \n"), "{'a': True, 'b': False}",
           "spaces, tabs and newlines between tokens");
    is_str(list_roundtrip(" [ '02:00.0' ,'03:00.0' , ] "), "['02:00.0', '03:00.0']",
           "a list with spaces and a trailing comma");

    /* ---- repr() quoting rules. ---- */
    is_str(list_roundtrip("[\"it's\"]"), "[\"it's\"]", "a quote inside: double quotes");
    is_str(repr_of("it's"), "[\"it's\"]", "repr of a string holding ': double quotes");
    is_str(list_roundtrip("['say \"hi\"']"), "['say \"hi\"']", "double quotes inside: single");
    is_str(repr_of("say \"hi\""), "['say \"hi\"']", "repr of a string holding \": single quotes");
    is_str(list_roundtrip("['both \\' and \"']"), "['both \\' and \"']",
           "both quotes: single, the single one escaped");
    is_str(repr_of("a'b\"c"), "['a\\'b\"c']", "repr of a string with both quotes");
    is_str(list_roundtrip("[\"a\\\"b\"]"), "['a\"b']", "an escaped double quote, re-quoted");
    is_str(list_roundtrip("['a\\\\b']"), "['a\\\\b']", "a backslash is escaped");
    is_str(repr_of("C:\\dir\\"), "['C:\\\\dir\\\\']", "repr doubles backslashes");
    is_str(repr_of("it's a\\b"), "[\"it's a\\\\b\"]", "backslash escaped inside double quotes");
    is_str(list_roundtrip("['a\\nb\\tc']"), "['a\\nb\\tc']", "newline and tab are escaped");
    is_str(repr_of("l1\nl2\r\n"), "['l1\\nl2\\r\\n']", "repr of newline and CR");
    is_str(list_roundtrip("['\\x01']"), "['\\x01']", "control bytes as \\xNN");
    is_str(repr_of("\x1b[0m\x7f\x1f"), "['\\x1b[0m\\x7f\\x1f']",
           "ESC, DEL and 0x1f as \\xNN, lower-case hex");
    is_str(list_roundtrip("['\\x41\\x6A']"), "['Aj']", "printable \\x escapes come back as text");
    is_str(list_roundtrip("['']"), "['']", "an empty string");
    {
        char *s = list_item("['tab\\there\\\\ \\'q\\' \\\"d\\\" nl\\n cr\\r \\x7f']");
        ok(s && strcmp(s, "tab\there\\ 'q' \"d\" nl\n cr\r \x7f") == 0,
           "escapes decode to the bytes they stand for");
        free(s);
    }
    is_str(dict_roundtrip("{\"it's\": 'x'}"), "{\"it's\": 'x'}", "keys follow the same rules");
    is_str(dict_roundtrip("{'k': 'a\\nb'}"), "{'k': 'a\\nb'}", "string values are escaped too");
    is_str(dict_roundtrip("{'a': None, 'b': -12, 'c': 'x'}"), "{'a': None, 'b': -12, 'c': 'x'}",
           "None, integers and strings as values");
    is_str(dict_roundtrip("{'a': True,}"), "{'a': True}", "a trailing comma is accepted");
    is_str(dict_roundtrip("{'': ''}"), "{'': ''}", "empty key and value");

    /* ---- Integers and None. ---- */
    ok(dict_int("{'n': 0}", "n", 0), "0");
    ok(dict_int("{'n': 42}", "n", 42), "42");
    ok(dict_int("{'n': -7}", "n", -7), "-7");
    ok(dict_int("{'n': 9223372036854775807}", "n", 9223372036854775807LL), "LLONG_MAX");
    ok(dict_int("{'n': -9223372036854775808}", "n", -9223372036854775807LL - 1), "LLONG_MIN");
    is_str(dict_roundtrip("{'n': -9223372036854775808, 'm': 9223372036854775807}"),
           "{'n': -9223372036854775808, 'm': 9223372036854775807}", "extreme integers round trip");
    ok(pydict_parse("{'n': 9223372036854775808}", &d, &err) < 0 &&
       strstr(err.msg, "integer out of range"), "LLONG_MAX + 1 refused: %s", err.msg);
    ok(pydict_parse("{'n': -9223372036854775809}", &d, &err) < 0 &&
       strstr(err.msg, "integer out of range"), "LLONG_MIN - 1 refused: %s", err.msg);
    ok(pydict_parse("{'a': None}", &d, &err) == 0 && d.n == 1 &&
       d.items[0].val.type == PYV_NONE, "None is a value of its own type");
    pydict_free(&d);
    is_str(dict_roundtrip("{'a': None}"), "{'a': None}", "None is written back as None");
    ok(pydict_parse("{'a': Nonesuch}", &d, &err) < 0, "Nonesuch is not None: %s", err.msg);
    ok(pydict_parse("{'a': True_}", &d, &err) < 0, "True_ is not True: %s", err.msg);
    ok(pydict_parse("{'a': true}", &d, &err) < 0, "lower-case true is not Python: %s", err.msg);

    /* ---- pydict_set replaces in place, appends new keys; del, append. ---- */
    ok(pydict_parse("{'a': True, 'b': False}", &d, &err) == 0, "parse for editing");
    struct pyval v = { .type = PYV_BOOL, .b = true };
    pydict_set(&d, "b", &v);
    pydict_set(&d, "c", &v);
    is_str(pydict_format(&d), "{'a': True, 'b': True, 'c': True}", "set replaces in place and appends");
    ok(pydict_del(&d, "a") == 0 && pydict_del(&d, "zz") < 0, "del of a present and an absent key");
    is_str(pydict_format(&d), "{'b': True, 'c': True}", "del removes");
    struct pyval sv = { .type = PYV_STR, .s = "it's" };
    pydict_set(&d, "s", &sv);
    is_str(pydict_format(&d), "{'b': True, 'c': True, 's': \"it's\"}",
           "a string value is copied and quoted");
    pydict_free(&d);
    l = (struct pylist){ 0 };
    pylist_append(&l, "02:00.0");
    pylist_append(&l, "03:00.0");
    is_str(pylist_format(&l), "['02:00.0', '03:00.0']", "pylist_append builds a list");
    pylist_free(&l);

    /* ---- Duplicate keys. ---- */
    static const char *const dups[] = {
        "{'a': True, 'a': False}",
        "{'a': 1, 'b': 2, 'a': 1}",
        "{'a': 1, \"a\": 2}",
        "{'a': 1, '\\x61': 2}",
    };
    for (size_t i = 0; i < sizeof dups / sizeof *dups; i++) {
        int r = pydict_parse(dups[i], &d, &err);
        ok(r < 0 && strstr(err.msg, "duplicate key"), "duplicate key refused in [%s]: %s", dups[i],
           r < 0 ? err.msg : "(accepted)");
        if (r == 0)
            pydict_free(&d);
    }

    /* ---- Malformed dicts: refused, with the offset (or "at end of text"). ---- */
    static const struct {
        const char *text, *want;
    } bad[] = {
        { "", "expected '{' at end of text" },
        { "   ", "expected '{' at end of text" },
        { "x{}", "expected '{' at offset 0 ('x')" },
        { "{", "expected a quoted string at end of text" },
        { "{'a': True", "expected ',' or '}' at end of text" },
        { "{'a' True}", "expected ':' at offset 5 ('T')" },
        { "{'a':}", "expected a string, True, False, None or an integer at offset 5 ('}')" },
        { "{'a': Tru}", "expected a string, True, False, None or an integer at offset 6 ('T')" },
        { "{a: True}", "expected a quoted string at offset 1 ('a')" },
        { "{'a: True}", "unterminated string at offset 1" },
        { "{'a': True} x", "unexpected text after the literal at offset 12 ('x')" },
        { "{'a': True}}", "unexpected text after the literal at offset 11 ('}')" },
        { "{'a': True 'b': False}", "expected ',' or '}' at offset 11 (''')" },
        { "{'a': True,, 'b': 1}", "expected a quoted string at offset 11 (',')" },
        { "{, }", "expected a quoted string at offset 1 (',')" },
        { "{'a': __import__('os')}", "at offset 6 ('_')" },
        { "{'a': 99999999999999999999999}", "integer out of range at offset 6" },
        { "{'a': -}", "expected a value at offset 6 ('-')" },
        { "{'a': +1}", "at offset 6 ('+')" },
        { "{'a\\q': 1}", "unsupported escape at offset 4 ('q')" },
        { "{'a\\", "unsupported escape at end of text" },
        { "{'\\x0': 1}", "bad \\x escape at offset 3" },
        { "{'\\xg0': 1}", "bad \\x escape at offset 3" },
        { "{'\\x00': 1}", "bad \\x escape at offset 3" },
        { "{'a': [1]}", "at offset 6 ('[')" },
        { "{'a': {'b': 1}}", "at offset 6 ('{')" },
        { "{1: True}", "expected a quoted string at offset 1 ('1')" },
        { "{'a': 1.5}", "expected ',' or '}' at offset 7 ('.')" },
        { "{'a': True}\x01", "unexpected text after the literal at offset 11 (byte 0x01)" },
        { "{'a': 'b' \x7f}", "at offset 10 (byte 0x7f)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&err, 0, sizeof err);
        int r = pydict_parse(bad[i].text, &d, &err);
        ok(r < 0 && strstr(err.msg, bad[i].want), "dict #%zu [%s] refused: %s", i, bad[i].text,
           r < 0 ? err.msg : "(accepted)");
        if (r < 0 && !strstr(err.msg, bad[i].want))
            diag("expected the message to contain: %s", bad[i].want);
        if (r == 0)
            pydict_free(&d);
    }

    /* ---- Malformed lists. ---- */
    static const struct {
        const char *text, *want;
    } bad_lists[] = {
        { "", "expected '[' at end of text" },
        { "[", "expected a quoted string at end of text" },
        { "['a'", "expected ',' or ']' at end of text" },
        { "['a' 'b']", "expected ',' or ']' at offset 5 (''')" },
        { "[1]", "expected a quoted string at offset 1 ('1')" },
        { "[None]", "expected a quoted string at offset 1 ('N')" },
        { "[True]", "expected a quoted string at offset 1 ('T')" },
        { "['a'],", "unexpected text after the literal at offset 5 (',')" },
        { "{}", "expected '[' at offset 0 ('{')" },
        { "[,]", "expected a quoted string at offset 1 (',')" },
        { "['a',,]", "expected a quoted string at offset 5 (',')" },
        { "[['a']]", "expected a quoted string at offset 1 ('[')" },
        { "['02:00.0\\", "unsupported escape at end of text" },
        { "['\\x1']", "bad \\x escape at offset 3" },
        { "('a',)", "expected '[' at offset 0 ('(')" },
    };
    for (size_t i = 0; i < sizeof bad_lists / sizeof *bad_lists; i++) {
        memset(&err, 0, sizeof err);
        int r = pylist_parse(bad_lists[i].text, &l, &err);
        ok(r < 0 && strstr(err.msg, bad_lists[i].want), "list #%zu [%s] refused: %s", i,
           bad_lists[i].text, r < 0 ? err.msg : "(accepted)");
        if (r < 0 && !strstr(err.msg, bad_lists[i].want))
            diag("expected the message to contain: %s", bad_lists[i].want);
        if (r == 0)
            pylist_free(&l);
    }

    /* ---- Every string that formats parses back to itself. ---- */
    {
        char all[256];
        int bad_bytes = 0;
        for (int b = 1; b < 256; b++) {
            char s[4] = { 'a', (char)b, 'z', 0 };
            char *f = repr_of(s);
            char *back = f ? list_item(f) : NULL;
            if (!back || strcmp(back, s) != 0) {
                if (bad_bytes++ < 5)
                    diag("byte 0x%02x: repr %s does not parse back", b, f ? f : "(null)");
            }
            free(f);
            free(back);
            all[b - 1] = (char)b;
        }
        all[255] = 0;
        ok(bad_bytes == 0, "every byte 0x01..0xff survives format -> parse");
        char *f = repr_of(all);
        char *back = f ? list_item(f) : NULL;
        ok(back && strcmp(back, all) == 0, "a string of all 255 bytes survives format -> parse");
        int ctl = 0;
        for (const unsigned char *p = (const unsigned char *)f; p && *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                ctl++;
        ok(f && ctl == 0, "the repr of that string has no raw control byte");
        free(f);
        free(back);
    }

    return done_testing();
}

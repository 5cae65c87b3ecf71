/* The one printer for text from guests and files (qprint_text, and qsay
 * and tool_fail through it): printable UTF-8 as it is, everything a
 * terminal could take as a control escaped. */
#include "../../orchestrator/util.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

static char *printed(const char *text)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qprint_text(f, text);
    fclose(f);
    return buf;
}

static void check(const char *what, const char *in, const char *want)
{
    char *got = printed(in);
    ok(strcmp(got, want) == 0, "%s: %s", what, got);
    free(got);
}

int main(void)
{
    check("plain text", "hello, world 42 /path/x.img", "hello, world 42 /path/x.img");
    check("a newline", "two\nlines", "two\\nlines");
    check("ESC: a colour, a title (OSC), a query (CSI 6n)",
          "\x1b[31mred\x1b]0;title\x07\x1b[6n", "\\x1b[31mred\\x1b]0;title\\x07\\x1b[6n");
    check("CR, tab, BEL, backspace, DEL", "a\rb\tc\ad\be\x7f", "a\\x0db\\x09c\\x07d\\x08e\\x7f");
    check("C1 controls in UTF-8 (CSI U+009B, OSC U+009D, ST U+009C)", "\xc2\x9b" "2J\xc2\x9d" "0;x\xc2\x9c",
          "\\xc2\\x9b2J\\xc2\\x9d0;x\\xc2\\x9c");
    check("a raw C1 byte (CSI 0x9b)", "\x9b" "2J", "\\x9b2J");
    check("UTF-8 that prints", "Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xc2\xa0.",
          "Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xc2\xa0.");
    check("an overlong '/'", "a\xc0\xaf" "b", "a\\xc0\\xafb");
    check("an overlong 3-byte form", "\xe0\x80\xaf", "\\xe0\\x80\\xaf");
    check("a surrogate", "\xed\xa0\x80", "\\xed\\xa0\\x80");
    check("beyond U+10FFFF", "\xf4\x90\x80\x80 \xf5\x80", "\\xf4\\x90\\x80\\x80 \\xf5\\x80");
    check("a sequence cut short", "end\xe2\x82", "end\\xe2\\x82");
    check("a lone continuation byte", "\x80x", "\\x80x");
    check("bidi override and isolate (U+202E, U+2066)", "\xe2\x80\xae" "abc\xe2\x81\xa6",
          "\\xe2\\x80\\xaeabc\\xe2\\x81\\xa6");
    check("line and paragraph separators", "a\xe2\x80\xa8" "b\xe2\x80\xa9", "a\\xe2\\x80\\xa8b\\xe2\\x80\\xa9");
    check("an en dash still prints", "a \xe2\x80\x93 b", "a \xe2\x80\x93 b");

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qsay(f, "warning: %s: %s", "disp7", "guest says \x1b[2J\xc2\x9b" "6n");
    fclose(f);
    ok(strcmp(buf, "warning: disp7: guest says \\x1b[2J\\xc2\\x9b6n\n") == 0,
       "qsay prints through it, one line: %s", buf);
    free(buf);
    return done_testing();
}

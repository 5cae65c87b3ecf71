/* qrexec policy evaluation (qrexec/policy.h): the original's format, first
 * match wins, deny by default, $anyvm never dom0, and hostile names and
 * files refused. */
#include "../../qrexec/policy.h"
#include "../tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096];

static void policy(const char *service, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, service);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* "action target user line" of a call, or "error: ..." */
static const char *decide(const char *service, const char *src, const char *dst)
{
    static char buf[2048];
    struct qpol_decision d;
    struct qerr err = { 0 };
    if (qpol_evaluate(dir, service, src, dst, &d, &err) < 0)
        snprintf(buf, sizeof buf, "error: %s", err.msg);
    else
        snprintf(buf, sizeof buf, "%s %s %s %d", qpol_action_name(d.action), d.target,
                 d.user[0] ? d.user : "-", d.line);
    return buf;
}

static void is_(const char *got, const char *want, const char *what)
{
    ok(strcmp(got, want) == 0, "%s: %s", what, got);
    if (strcmp(got, want) != 0)
        printf("#   expected: %s\n", want);
}

static void like_(const char *got, const char *part, const char *what)
{
    ok(strstr(got, part) != NULL, "%s: %s", what, got);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/policy", getenv("SCRATCH") ? getenv("SCRATCH") : "/tmp");
    mkdir(dir, 0755);

    is_(decide("qubes.Nothing", "work", "vault"), "deny vault - 0", "no policy file: deny");
    policy("qubes.VMShell",
           "# the original's default for VMShell, and ours\n"
           "\n"
           "work vault allow,user=root\n"
           "   # an indented comment\n"
           "short line\n"
           "work $dispvm allow\n"
           "$anyvm $dispvm allow\n"
           "$anyvm $anyvm deny\n");
    is_(decide("qubes.VMShell", "work", "vault"), "allow vault root 3", "an exact line allows, with its user");
    is_(decide("qubes.VMShell", "work", "$dispvm"), "allow $dispvm - 6", "$dispvm matches a DispVM request");
    is_(decide("qubes.VMShell", "mail", "$dispvm"), "allow $dispvm - 7", "$anyvm $dispvm: any VM");
    is_(decide("qubes.VMShell", "mail", "vault"), "deny vault - 8", "$anyvm $anyvm deny: the rest is denied");
    is_(decide("qubes.VMShell", "mail", "dom0"), "deny dom0 - 0", "$anyvm never matches dom0 as target");

    policy("qubes.Any", "$anyvm $anyvm allow\n");
    is_(decide("qubes.Any", "work", "dom0"), "deny dom0 - 0",
        "'$anyvm $anyvm allow' does not let a VM call dom0");
    is_(decide("qubes.Any", "dom0", "work"), "deny work - 0", "nor matches dom0 as the source");
    is_(decide("qubes.Any", "work", "$dispvm"), "allow $dispvm - 1",
        "$anyvm as target matches $dispvm too, as in the original");
    policy("qubes.ToDom0", "work dom0 allow\n");
    is_(decide("qubes.ToDom0", "work", "dom0"), "allow dom0 - 1", "dom0 is reached only by name");

    policy("qubes.First", "work vault deny\nwork vault allow\n");
    is_(decide("qubes.First", "work", "vault"), "deny vault - 1", "the first matching line wins");
    policy("qubes.Ask", "$anyvm $anyvm ask\n");
    is_(decide("qubes.Ask", "work", "vault"), "ask vault - 1", "ask is its own action");
    policy("qubes.Redirect", "$anyvm $dispvm allow,target=viewer\nwork\tvault\t allow,target=$dispvm\n");
    is_(decide("qubes.Redirect", "work", "$dispvm"), "allow viewer - 1", "target= sends the call elsewhere");
    is_(decide("qubes.Redirect", "work", "vault"), "allow $dispvm - 2", "tabs separate fields; target=$dispvm");
    policy("qubes.Crlf", "work vault allow\r\n");
    is_(decide("qubes.Crlf", "work", "vault"), "allow vault - 1", "a CRLF line reads as its LF twin");

    /* A matching line that cannot be read is an error and a deny, never an allow. */
    policy("qubes.Bad", "work vault permit\n");
    like_(decide("qubes.Bad", "work", "vault"), "qubes.Bad:1: unknown action 'permit'", "an unknown action");
    policy("qubes.BadOpt", "work vault allow,sudo=yes\n");
    like_(decide("qubes.BadOpt", "work", "vault"), "unknown option 'sudo=yes'", "an unknown option");
    policy("qubes.BadTarget", "work vault allow,target=../etc\n");
    like_(decide("qubes.BadTarget", "work", "vault"), "target=../etc: bad VM name", "a bad target=");
    policy("qubes.BadUser", "work vault allow,user=-oProxy\n");
    like_(decide("qubes.BadUser", "work", "vault"), "user=-oProxy: not a user name", "a bad user=");
    is_(decide("qubes.BadUser", "mail", "vault"), "deny vault - 0", "a bad line that does not match is skipped");

    /* Names from the guest, checked before any file is opened. */
    like_(decide("../../etc/passwd", "work", "vault"), "bad service name", "a service with '/'");
    like_(decide("..", "work", "vault"), "bad service name", "the service '..'");
    like_(decide("qubes.VMShell", "work", "../x"), "bad VM name", "a target with '/'");
    like_(decide("qubes.VMShell", "work", "-x"), "bad VM name", "a target starting with '-'");
    like_(decide("qubes.VMShell", "$dispvm", "vault"), "source '$dispvm'", "$dispvm is no source");
    like_(decide("qubes.VMShell", "work", "$anyvm"), "bad VM name", "$anyvm is no target of a call");
    char longname[80];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    like_(decide(longname, "work", "vault"), "bad service name", "a service of 65 bytes");
    like_(decide("qubes.VMShell", "work", "a234567890123456789012345678901x"), "bad VM name",
          "a target of 32 bytes");
    is_(decide("qubes.Open+pdf", "work", "vault"), "deny vault - 0", "'+' is allowed in a service name");

    /* The file itself. */
    char path[4200], target[4200];
    snprintf(path, sizeof path, "%s/qubes.Link", dir);
    snprintf(target, sizeof target, "%s/qubes.Any", dir);
    symlink(target, path);
    is_(decide("qubes.Link", "work", "vault"), "allow vault - 1",
        "a policy that is a symbolic link (the administrator's) is followed");
    snprintf(path, sizeof path, "%s/qubes.Dir", dir);
    mkdir(path, 0755);
    like_(decide("qubes.Dir", "work", "vault"), "not a regular file", "a directory is refused");
    snprintf(path, sizeof path, "%s/qubes.Fifo", dir);
    mkfifo(path, 0644);
    like_(decide("qubes.Fifo", "work", "vault"), "not a regular file", "a FIFO is refused, without blocking");
    snprintf(path, sizeof path, "%s/qubes.Huge", dir);
    truncate(path, 0);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 60000; i++)
        fputs("# padding padding padding\n", f);
    fclose(f);
    like_(decide("qubes.Huge", "work", "vault"), "larger than 1048576 bytes", "a policy over 1 MiB is refused");
    char *line = malloc(5000);
    memset(line, 'x', 4999);
    line[4999] = '\0';
    policy("qubes.LongLine", line);
    free(line);
    like_(decide("qubes.LongLine", "work", "vault"), "qubes.LongLine:1: longer than 4096 bytes",
          "a line over 4096 bytes is refused");
    return done_testing();
}

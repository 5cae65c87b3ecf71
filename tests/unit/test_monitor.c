/* The monitor layout (orchestrator/monitor.c): lines of xrandr -q as it
 * prints them (connected outputs with a mode; disconnected ones and mode
 * lists ignored), the check of layout files, and where the layout comes
 * from. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../orchestrator/monitor.h"
#include "../testutil.h"

int main(void)
{
    char out[1024];
    struct qerr err;
    const char *xr =
        "Screen 0: minimum 320 x 200, current 3200 x 1080, maximum 16384 x 16384\n"
        "eDP-1 connected primary 1280x800+0+280 (normal left inverted right x axis y axis) 286mm x 179mm\n"
        "   1280x800      59.81*+\n"
        "   1024x768      60.00  \n"
        "HDMI-1 connected 1920x1080+1280+0 (normal left inverted right x axis y axis) 527mm x 296mm\n"
        "   1920x1080     60.00*+  50.00    59.94  \n"
        "DP-1 disconnected (normal left inverted right x axis y axis)\n"
        "DP-2 connected (normal left inverted right x axis y axis)\n"
        "   2560x1440     59.95 +\n";
    ok(qmonitor_from_xrandr(xr, out, sizeof out) == 0 &&
           strcmp(out, "1280 800 0 280\n1920 1080 1280 0\n") == 0,
       "xrandr -q: one line per connected output with a mode (got %s)", out);
    ok(qmonitor_from_xrandr("Screen 0: minimum 8 x 8\nVGA-1 disconnected\n", out, sizeof out) < 0,
       "no connected output: no layout");

    ok(qmonitor_check("1920 1080 0 0\n\n  1280\t1024 1920 0  \n", out, sizeof out, &err) == 0 &&
           strcmp(out, "1920 1080 0 0\n1280 1024 1920 0\n") == 0,
       "a layout file: blank lines skipped, spacing normalised");
    const struct { const char *text, *expect; } bad[] = {
        { "1920 1080 0\n", "line 1: \"1920 1080 0\" is not W H X Y" },
        { "1920 1080 0 0\n0 768 0 0\n", "line 2: sizes 1..65535" },
        { "1920 1080 -5 0\n", "is not W H X Y" },
        { "1920 1080 0 0; reboot\n", "is not W H X Y" },
        { "\n\n", "no monitor" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(qmonitor_check(bad[i].text, out, sizeof out, &err) < 0 && strstr(err.msg, bad[i].expect),
           "bad layout %zu refused (%s)", i + 1, err.msg);
    char many[2048] = "";
    for (int i = 0; i <= QMONITOR_MAX; i++)
        strcat(many, "800 600 0 0\n");
    ok(qmonitor_check(many, out, sizeof out, &err) < 0 && strstr(err.msg, "more than"),
       "at most %d monitors", QMONITOR_MAX);

    /* Where it comes from. */
    char dir[] = "/tmp/qubes-mon.XXXXXX";
    if (!mkdtemp(dir))
        return 99;
    struct qubes_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.base_dir, sizeof cfg.base_dir, "%s", dir);
    unsetenv("DISPLAY");
    unsetenv("QUBES_MONITOR_LAYOUT");
    const char *src = NULL;
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) == 0 && out[0] == '\0',
       "no display, no file: no layout, no error");
    char path[4200];
    snprintf(path, sizeof path, "%s/monitor-layout", dir);
    spit(path, "1024 768 0 0\n");
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) == 0 &&
           strcmp(out, "1024 768 0 0\n") == 0 && src && strcmp(src, "monitor-layout") == 0,
       "$QUBES_BASE_DIR/monitor-layout is read");
    char other[4200];
    snprintf(other, sizeof other, "%s/other", dir);
    spit(other, "640 480 0 0\n");
    setenv("QUBES_MONITOR_LAYOUT", other, 1);
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) == 0 && strcmp(out, "640 480 0 0\n") == 0,
       "QUBES_MONITOR_LAYOUT names another file");
    setenv("QUBES_MONITOR_LAYOUT", path, 1);
    spit(path, "big monitor\n");
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) < 0 && strstr(err.msg, path) &&
           out[0] == '\0',
       "a bad file is an error naming it (%s)", err.msg);
    snprintf(other, sizeof other, "%s/missing", dir);
    setenv("QUBES_MONITOR_LAYOUT", other, 1);
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) < 0 && strstr(err.msg, "missing"),
       "a QUBES_MONITOR_LAYOUT that does not exist is an error (%s)", err.msg);
    /* A display whose xrandr does not run: the file is used. */
    char *saved_path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    setenv("DISPLAY", ":987", 1);
    setenv("PATH", dir, 1);
    spit(path, "800 600 0 0\n");
    setenv("QUBES_MONITOR_LAYOUT", path, 1);
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) == 0 && strcmp(out, "800 600 0 0\n") == 0,
       "with a display but no xrandr, the file");
    /* One that runs (a script printing what xrandr prints): it wins. */
    char xrandr[4200];
    snprintf(xrandr, sizeof xrandr, "%s/xrandr", dir);
    spit(xrandr, "#!/bin/sh\n[ \"$1\" = -q ] || exit 1\n"
                 "echo 'Screen 0: minimum 320 x 200'\n"
                 "echo 'HDMI-1 connected primary 2560x1440+0+0 (normal) 600mm x 340mm'\n");
    chmod(xrandr, 0755);
    ok(qmonitor_layout(&cfg, out, sizeof out, &src, &err) == 0 &&
           strcmp(out, "2560 1440 0 0\n") == 0 && src && strcmp(src, "xrandr -q") == 0,
       "with a display and xrandr, xrandr's layout (got %s)", out);
    setenv("PATH", saved_path, 1);
    free(saved_path);
    rm_scratch(dir);
    return done_testing();
}

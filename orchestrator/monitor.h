/* The host's monitor layout, for the GUI side of VMs: one "W H X Y" line
 * per monitor (width, height and position in pixels), sent to a VM's
 * qubes.SetMonitorLayout service when its GUI starts (qvm-start without
 * --no-guid, and DispVMs).
 *
 * Where it comes from, first found: `xrandr -q` when DISPLAY is set and
 * xrandr runs (every connected output with a mode); the file named by
 * QUBES_MONITOR_LAYOUT; $QUBES_BASE_DIR/monitor-layout. None: nothing is
 * sent. */
#ifndef QUBES_MONITOR_H
#define QUBES_MONITOR_H

#include <stddef.h>

#include "config.h"
#include "error.h"

#define QMONITOR_MAX 16
#define QMONITOR_SERVICE "qubes.SetMonitorLayout"

/* The layout into `out` ("" when there is none); `source` (may be NULL)
 * says where it came from. Errors only for a layout file that exists and
 * is bad. */
int qmonitor_layout(const struct qubes_config *cfg, char *out, size_t len, const char **source,
                    struct qerr *err);

/* The layout lines of `xrandr -q` output: 0, or -1 when it has none. */
int qmonitor_from_xrandr(const char *text, char *out, size_t len);

/* Checks and normalises layout text: 1..QMONITOR_MAX lines of four
 * numbers (W and H positive), one space between them. */
int qmonitor_check(const char *text, char *out, size_t len, struct qerr *err);

/* Gives the layout to the VM whose agent listens on `sock`, or in a
 * session already open. */
struct agent_conn;
int qmonitor_send(const char *sock, const char *layout, struct qerr *err);
int qmonitor_send_on(struct agent_conn *c, const char *layout, struct qerr *err);

#endif

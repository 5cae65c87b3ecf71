/* libFuzzer target for the channel multiplexer (qrexec/mux.h): the input
 * is what a hostile peer sends on the channel, to the guest's side (which
 * scans for a HELLO, then takes frames of any kind, any session). Half of
 * it goes in, a session of our own is opened if the channel is up, the
 * rest goes in. No crash, no leak, and what the mux holds stays bounded.
 *
 *   make fuzz FUZZ_SECONDS=300
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../qrexec/mux.h"

static void request(struct qmux *m, uint32_t sid, uint32_t type, const char *p, uint32_t len,
                    void *ctx)
{
    (void)type, (void)p, (void)len, (void)ctx;
    if (sid & 1)
        qmux_answer(m, sid, 0);
    else
        qmux_refuse(m, sid, "no");
}

static void ended(struct qmux *m, void *sctx, int status, const char *error)
{
    (void)m, (void)sctx, (void)status, (void)error;
}

static const struct qmux_ops ops = { .request = request, .ended = ended };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int chan = -1;
    if (chan < 0) {
        chan = open("/dev/null", O_RDWR | O_CLOEXEC);
        signal(SIGPIPE, SIG_IGN);
    }
    struct qmux *m = qmux_new(chan, QMUX_GUEST, &ops, NULL);
    if (!m)
        return 0;
    qmux_feed(m, data, size / 2);
    if (qmux_ready(m))
        qmux_call(m, QAG_CALL, "vm\0qubes.VMShell", 16, -1, -1, -1, NULL);
    qmux_feed(m, data + size / 2, size - size / 2);
    if (qmux_sessions(m) > QMUX_MAX_SESSIONS || qmux_queued(m) > 64u * 1024 * 1024)
        abort();
    qmux_free(m);
    return 0;
}

#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dvm_header {
    uint32_t magic, type, len;
};

int dvm_send(int sock, uint32_t type, const char *const fields[], int nfields, const int *fds,
             int nfds, struct qerr *err)
{
    char msg[sizeof(struct dvm_header) + DVM_MAX_PAYLOAD];
    size_t len = 0;
    for (int i = 0; i < nfields; i++) {
        size_t n = strlen(fields[i]) + 1;
        if (len + n > DVM_MAX_PAYLOAD)
            return qerr_set(err, "a DispVM service message over %d bytes", DVM_MAX_PAYLOAD);
        memcpy(msg + sizeof(struct dvm_header) + len, fields[i], n);
        len += n;
    }
    struct dvm_header h = { DVM_MAGIC, type, (uint32_t)len };
    memcpy(msg, &h, sizeof h);
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(DVM_MAX_FDS * sizeof(int))];
    } ctl;
    struct iovec iov = { msg, sizeof h + len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        if (nfds > DVM_MAX_FDS)
            return qerr_set(err, "a DispVM service message with %d descriptors", nfds);
        mh.msg_control = ctl.room;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t r;
    while ((r = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return qerr_errno(err, errno, "cannot send to the DispVM service");
    return 0;
}

void dvm_msg_close_fds(struct dvm_msg *m)
{
    for (int i = 0; i < m->nfds; i++)
        if (m->fds[i] >= 0) {
            close(m->fds[i]);
            m->fds[i] = -1;
        }
    m->nfds = 0;
}

void dvm_pool_key(char out[DVM_POOL_KEY_MAX], const char *tpl, const char *host)
{
    bool here = !host || !host[0] || strcmp(host, "local") == 0;
    snprintf(out, DVM_POOL_KEY_MAX, "%s%s%s", tpl, here ? "" : "@", here ? "" : host);
}

const char *dvm_field(const struct dvm_msg *m, int i)
{
    return i >= 0 && i < m->nfields ? m->field[i] : "";
}

int dvm_recv(int sock, struct dvm_msg *m, int timeout_ms, struct qerr *err)
{
    memset(m, 0, offsetof(struct dvm_msg, buf));
    if (timeout_ms >= 0) {
        struct pollfd p = { sock, POLLIN, 0 };
        int r;
        while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
            ;
        if (r == 0)
            return qerr_set(err, "the DispVM service did not answer within %d s",
                            timeout_ms / 1000);
    }
    char raw[sizeof(struct dvm_header) + DVM_MAX_PAYLOAD];
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(DVM_MAX_FDS * sizeof(int))];
    } ctl;
    struct iovec iov = { raw, sizeof raw };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.room,
                         .msg_controllen = sizeof ctl.room };
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(m->fds + m->nfds, CMSG_DATA(cm), (size_t)k * sizeof(int));
            m->nfds += k;
        }
    if (n < 0)
        return qerr_errno(err, errno, "cannot read from the DispVM service");
    if (n == 0)
        return 1;
    struct dvm_header h;
    if ((size_t)n < sizeof h || (memcpy(&h, raw, sizeof h), h.magic != DVM_MAGIC) ||
        h.len != (size_t)n - sizeof h || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        dvm_msg_close_fds(m);
        return qerr_set(err, "a malformed message from the DispVM service");
    }
    m->type = h.type;
    memcpy(m->buf, raw + sizeof h, h.len);
    m->buf[h.len] = '\0';
    /* Fields: each NUL-terminated; a last one without its NUL counts too. */
    for (size_t off = 0; off < h.len && m->nfields < DVM_MAX_FIELDS;) {
        m->field[m->nfields++] = m->buf + off;
        off += strlen(m->buf + off) + 1;
    }
    return 0;
}

/* qubes-dnsd: a tiny DNS server for the test guest's NetVMs and ProxyVMs,
 * which have none of their own (busybox), so that the VMs behind them can
 * resolve the test's names. It answers the names given with -a itself, one
 * A record with a TTL of 60 s, and forwards every other query to the
 * upstream of -f, relaying its answer to the client; without -f every other
 * name does not exist (NXDOMAIN).
 *
 * UDP only, IPv4 only: no TCP (an answer the upstream truncated reaches the
 * client as it is), no EDNS of its own, no cache, no recursion of its own.
 *
 * Everything it receives is untrusted. A query has one question (QDCOUNT 1,
 * else FORMERR), whose name is 1-63-byte labels, 255 bytes at most, with no
 * compression pointer (a question has no earlier name to point to); answers
 * (QR set) from clients are dropped. A forwarded query leaves under a fresh
 * random id; an answer is taken only from the upstream's address and port,
 * for an id still pending (256 at most, the oldest evicted, none older than
 * 5 s) and for that query's question. No allocation: the memory is the
 * static tables below. It logs nothing but fatal errors (-q not even those).
 * Static, libc only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ME "qubes-dnsd"
#define EX_FATAL 1
#define EX_USAGE 2

#define MAX_LISTEN 16
#define MAX_NAMES 64
#define MAX_PENDING 256
#define PENDING_MS 5000
#define TTL 60
#define HDR 12                  /* the header's bytes (RFC 1035 4.1.1) */
#define MAX_NAME 255            /* a name's wire bytes, with the root's zero */
#define MAX_LABEL 63
/* Datagrams read from one socket per wake-up: a flood on one socket
 * leaves the others their turn. */
#define BATCH 64

/* Header flags, and the values we use. */
#define F_QR 0x8000
#define F_OPCODE 0x7800
#define F_AA 0x0400
#define F_RD 0x0100
#define F_RA 0x0080
#define F_RCODE 0x000f
enum { RC_NOERROR = 0, RC_FORMERR = 1, RC_SERVFAIL = 2, RC_NXDOMAIN = 3, RC_NOTIMP = 4 };
enum { T_A = 1, T_ANY = 255, C_IN = 1 };

/* A name of -a: its wire form and its address. */
struct known {
    uint8_t wire[MAX_NAME];
    size_t len;
    struct in_addr addr;
};

/* A question as received: the name's wire form (with the final zero),
 * type, class, and where the question ends in its message. */
struct question {
    uint8_t name[MAX_NAME];
    size_t name_len;
    uint16_t type, qclass;
    size_t end;
};

/* A forwarded query waiting for the upstream's answer. */
struct pending {
    bool used;
    uint64_t seq;               /* order of arrival: the smallest is the oldest */
    int64_t sent_ms;
    uint16_t id;                /* ours, the upstream's answer carries it */
    uint16_t client_id;
    struct sockaddr_in client;
    int fd;                     /* the socket it came in on, which answers */
    struct question q;
};

static struct {
    struct sockaddr_in listen[MAX_LISTEN];
    int n_listen;
    struct known names[MAX_NAMES];
    int n_names;
    bool forward;
    struct sockaddr_in upstream;
    bool quiet;
} cfg;

static int listen_fd[MAX_LISTEN];
static int up_fd = -1;
/* Our end of the connected upstream socket: a query from it is one of our
 * own come back (an -f that points at ourselves), never to be forwarded. */
static bool up_connected;
static struct sockaddr_in up_local;
static struct pending pending[MAX_PENDING];
static uint64_t pending_seq;
/* One datagram at a time, and none is larger. */
static uint8_t buf[65536];

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " ME " [-l ADDR]... [-p PORT] [-a NAME=IPV4]... [-f UPSTREAM[:PORT]] [-q]\n"
            "A DNS server over UDP and IPv4. It answers each NAME of -a itself with an\n"
            "A record for IPV4 (TTL %d s; letters match in either case), forwards every\n"
            "other query to UPSTREAM and relays the answer, or without -f answers that\n"
            "the name does not exist.\n"
            "  -l ADDR             listen on the IPv4 address ADDR (repeatable, up to %d;\n"
            "                      default 0.0.0.0)\n"
            "  -p PORT             listen on PORT (default 53)\n"
            "  -a NAME=IPV4        answer NAME with IPV4 (repeatable, up to %d)\n"
            "  -f UPSTREAM[:PORT]  forward to the IPv4 address UPSTREAM, port PORT\n"
            "                      (default 53)\n"
            "  -q                  quiet: not even fatal errors are printed\n"
            "  -h, --help          this text\n"
            "It logs nothing but fatal errors, on stderr. Exit status: 0 after SIGTERM\n"
            "or SIGINT, %d on a fatal error, %d on bad usage.\n",
            TTL, MAX_LISTEN, MAX_NAMES, EX_FATAL, EX_USAGE);
}

static void bad_usage(const char *fmt, const char *arg) __attribute__((noreturn));
static void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, ME ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see " ME " --help)\n");
    exit(EX_USAGE);
}

static void fatal(const char *what, const struct sockaddr_in *a) __attribute__((noreturn));
static void fatal(const char *what, const struct sockaddr_in *a)
{
    if (!cfg.quiet) {
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        fprintf(stderr, ME ": %s %s:%u: %s\n", what, ip, ntohs(a->sin_port), strerror(errno));
    }
    exit(EX_FATAL);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Wire names compared with ASCII letters in either case (RFC 4343); the
 * length bytes, at most 63, are no letters. */
static bool same_name(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* ---- The command line ---- */

/* A port, 1 to 65535, digits only. */
static bool parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 5)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static bool parse_ipv4(const char *s, struct in_addr *a)
{
    return inet_pton(AF_INET, s, a) == 1;
}

/* A dotted NAME (a final dot allowed) to its wire form: labels of 1 to 63
 * letters, digits, '-' or '_', 255 bytes in all. */
static bool name_to_wire(const char *s, size_t n, uint8_t *wire, size_t *len)
{
    size_t w = 0;
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0)
        return false;
    for (size_t i = 0; i <= n;) {
        size_t start = i;
        while (i < n && s[i] != '.') {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_'))
                return false;
            i++;
        }
        size_t l = i - start;
        if (l == 0 || l > MAX_LABEL || w + 1 + l + 1 > MAX_NAME)
            return false;
        wire[w++] = (uint8_t)l;
        memcpy(wire + w, s + start, l);
        w += l;
        i++;                    /* past the dot, or past the end */
    }
    wire[w++] = 0;
    *len = w;
    return true;
}

static void add_known(const char *arg)
{
    const char *eq = strrchr(arg, '=');
    struct known k;
    if (!eq)
        bad_usage("-a '%s': not NAME=IPV4", arg);
    if (!name_to_wire(arg, (size_t)(eq - arg), k.wire, &k.len))
        bad_usage("-a '%s': the name must be labels of 1 to 63 of A-Z a-z 0-9 - _ separated by "
                  "dots, 253 characters at most", arg);
    if (!parse_ipv4(eq + 1, &k.addr))
        bad_usage("-a '%s': not an IPv4 address after '='", arg);
    for (int i = 0; i < cfg.n_names; i++)
        if (same_name(cfg.names[i].wire, cfg.names[i].len, k.wire, k.len))
            bad_usage("-a '%s': that name is given twice", arg);
    if (cfg.n_names == MAX_NAMES)
        bad_usage("-a '%s': too many names (64 at most)", arg);
    cfg.names[cfg.n_names++] = k;
}

static void add_listen(const char *arg)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    if (!parse_ipv4(arg, &a.sin_addr))
        bad_usage("-l '%s': not an IPv4 address", arg);
    if (cfg.n_listen == MAX_LISTEN)
        bad_usage("-l '%s': too many addresses (16 at most)", arg);
    cfg.listen[cfg.n_listen++] = a;
}

static void set_upstream(const char *arg)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strchr(arg, ':');
    size_t hl = colon ? (size_t)(colon - arg) : strlen(arg);
    uint16_t port = 53;
    if (cfg.forward)
        bad_usage("-f '%s': only one upstream", arg);
    if (hl >= sizeof host)
        bad_usage("-f '%s': not an IPv4 address", arg);
    memcpy(host, arg, hl);
    host[hl] = '\0';
    if (!parse_ipv4(host, &cfg.upstream.sin_addr))
        bad_usage("-f '%s': not an IPv4 address", arg);
    if (colon && !parse_port(colon + 1, &port))
        bad_usage("-f '%s': the port must be 1 to 65535", arg);
    cfg.upstream.sin_family = AF_INET;
    cfg.upstream.sin_port = htons(port);
    cfg.forward = true;
}

static void parse_args(int argc, char **argv)
{
    static const struct option longs[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
    uint16_t port = 53;
    char opt[3] = "-?";
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":l:p:a:f:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'l': add_listen(optarg); break;
        case 'p':
            if (!parse_port(optarg, &port))
                bad_usage("-p '%s': the port must be 1 to 65535", optarg);
            break;
        case 'a': add_known(optarg); break;
        case 'f': set_upstream(optarg); break;
        case 'q': cfg.quiet = true; break;
        case 'h': usage(stdout); exit(0);
        case ':':
            opt[1] = (char)optopt;
            bad_usage("%s needs an argument", opt);
        default:
            opt[1] = (char)optopt;
            bad_usage("unknown option %s", optopt ? opt : argv[optind - 1]);
        }
    }
    if (optind < argc)
        bad_usage("unexpected argument '%s'", argv[optind]);
    if (cfg.n_listen == 0)
        cfg.listen[cfg.n_listen++] = (struct sockaddr_in){ .sin_family = AF_INET,
                                                           .sin_addr.s_addr = htonl(INADDR_ANY) };
    for (int i = 0; i < cfg.n_listen; i++)
        cfg.listen[i].sin_port = htons(port);
}

/* ---- Ids and time ---- */

/* Ids a forger off the upstream's path cannot guess: the kernel's random
 * bytes, or, should its pool not be ready this early in a boot, a
 * generator seeded from the clocks (better than none). */
static uint16_t random_id(void)
{
    static uint8_t pool[256];
    static size_t left;
    static uint64_t state;
    if (left < 2) {
        ssize_t r = getrandom(pool, sizeof pool, GRND_NONBLOCK);
        left = r == (ssize_t)sizeof pool ? sizeof pool : 0;
    }
    if (left >= 2) {
        left -= 2;
        return get16(pool + left);
    }
    if (state == 0) {
        struct timespec m, r;
        clock_gettime(CLOCK_MONOTONIC, &m);
        clock_gettime(CLOCK_REALTIME, &r);
        state = ((uint64_t)r.tv_nsec << 32) ^ (uint64_t)m.tv_nsec ^ (uint64_t)r.tv_sec ^
                ((uint64_t)getpid() << 16);
    }
    /* splitmix64 */
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint16_t)(z ^ (z >> 31));
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- Messages ---- */

/* The question at offset 12 of a message of n bytes, checked to its end. */
static bool parse_question(const uint8_t *msg, size_t n, struct question *q)
{
    size_t off = HDR;
    q->name_len = 0;
    for (;;) {
        if (off >= n)
            return false;
        uint8_t len = msg[off];
        /* Above 63: 0xC0 a compression pointer, 0x40 and 0x80 label
         * types nobody uses. */
        if (len > MAX_LABEL || len > n - off - 1 || q->name_len + 1 + len > MAX_NAME)
            return false;
        memcpy(q->name + q->name_len, msg + off, 1 + (size_t)len);
        q->name_len += 1 + (size_t)len;
        off += 1 + (size_t)len;
        if (len == 0)
            break;
    }
    if (n - off < 4)
        return false;
    q->type = get16(msg + off);
    q->qclass = get16(msg + off + 2);
    q->end = off + 4;
    return true;
}

static const struct known *lookup(const struct question *q)
{
    for (int i = 0; i < cfg.n_names; i++)
        if (same_name(cfg.names[i].wire, cfg.names[i].len, q->name, q->name_len))
            return &cfg.names[i];
    return NULL;
}

static void send_to(int fd, const uint8_t *msg, size_t n, const struct sockaddr_in *to)
{
    /* A client that is gone or a full buffer loses its answer, as UDP may. */
    while (sendto(fd, msg, n, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to) < 0 &&
           errno == EINTR)
        ;
}

/* An answer's flags: the query's opcode and RD, and RA when we forward. */
static unsigned answer_flags(const uint8_t *query, unsigned rcode)
{
    return F_QR | (get16(query + 2) & (F_OPCODE | F_RD)) | (cfg.forward ? F_RA : 0) | rcode;
}

/* A refusal with the header alone: for a query whose question cannot be
 * read or need not be. */
static void reply_header(int fd, const uint8_t *query, const struct sockaddr_in *to, unsigned rcode)
{
    uint8_t out[HDR] = { 0 };
    put16(out, get16(query));
    put16(out + 2, answer_flags(query, rcode));
    send_to(fd, out, sizeof out, to);
}

/* Our own answer: the query's id and question, authoritative (but for a
 * SERVFAIL), and the A record of `addr` when there is one. */
static void reply(int fd, const uint8_t *query, const struct question *q,
                  const struct sockaddr_in *to, unsigned rcode, const struct in_addr *addr)
{
    uint8_t out[HDR + MAX_NAME + 4 + 16];
    size_t n = q->end;
    put16(out, get16(query));
    put16(out + 2, answer_flags(query, rcode) | (rcode == RC_SERVFAIL ? 0 : F_AA));
    put16(out + 4, 1);
    put16(out + 6, addr ? 1 : 0);
    put16(out + 8, 0);
    put16(out + 10, 0);
    memcpy(out + HDR, query + HDR, q->end - HDR);
    if (addr) {
        out[n++] = 0xc0;        /* the name: a pointer to the question's */
        out[n++] = HDR;
        put16(out + n, T_A);
        put16(out + n + 2, C_IN);
        put16(out + n + 4, 0);
        put16(out + n + 6, TTL);
        put16(out + n + 8, 4);
        memcpy(out + n + 10, &addr->s_addr, 4);
        n += 14;
    }
    send_to(fd, out, n, to);
}

static void answer_known(int fd, const uint8_t *query, const struct question *q,
                         const struct known *k, const struct sockaddr_in *to)
{
    bool a = q->qclass == C_IN && (q->type == T_A || q->type == T_ANY);
    reply(fd, query, q, to, RC_NOERROR, a ? &k->addr : NULL);
}

/* ---- Forwarding ---- */

static struct pending *pending_find(uint16_t id, int64_t now)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        struct pending *p = &pending[i];
        if (p->used && now - p->sent_ms >= PENDING_MS)
            p->used = false;
        if (p->used && p->id == id)
            return p;
    }
    return NULL;
}

/* A free slot, or the oldest entry's. */
static struct pending *pending_slot(int64_t now)
{
    struct pending *oldest = &pending[0];
    for (int i = 0; i < MAX_PENDING; i++) {
        struct pending *p = &pending[i];
        if (!p->used || now - p->sent_ms >= PENDING_MS)
            return p;
        if (p->seq < oldest->seq)
            oldest = p;
    }
    return oldest;
}

/* An id no pending query has (256 of 65536 are taken at most). */
static bool fresh_id(uint16_t *id, int64_t now)
{
    for (int tries = 0; tries < 32; tries++) {
        uint16_t c = random_id();
        if (!pending_find(c, now)) {
            *id = c;
            return true;
        }
    }
    return false;
}

/* Connected, the kernel chooses our address toward the upstream (and
 * drops datagrams from anyone else). Done when first needed, and again
 * after a send failed: the network may not be up when we start. */
static bool upstream_ready(void)
{
    socklen_t l = sizeof up_local;
    if (up_connected)
        return true;
    if (connect(up_fd, (const struct sockaddr *)&cfg.upstream, sizeof cfg.upstream) < 0 ||
        getsockname(up_fd, (struct sockaddr *)&up_local, &l) < 0)
        return false;
    up_connected = true;
    return true;
}

static void forward(int fd, uint8_t *query, size_t n, const struct question *q,
                    const struct sockaddr_in *from)
{
    int64_t now = now_ms();
    uint16_t client_id = get16(query), id;
    if (!upstream_ready() || !fresh_id(&id, now)) {
        reply(fd, query, q, from, RC_SERVFAIL, NULL);
        return;
    }
    put16(query, id);
    ssize_t r;
    while ((r = send(up_fd, query, n, MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    put16(query, client_id);
    if (r < 0) {
        up_connected = false;
        reply(fd, query, q, from, RC_SERVFAIL, NULL);
        return;
    }
    struct pending *p = pending_slot(now);
    *p = (struct pending){ .used = true, .seq = ++pending_seq, .sent_ms = now, .id = id,
                           .client_id = client_id, .client = *from, .fd = fd, .q = *q };
}

/* The upstream's answer: for a pending id and that query's question, or,
 * with no question, a refusal that carries no records (what a server
 * says to a query it cannot read). */
static void on_answer(uint8_t *msg, size_t n, const struct sockaddr_in *from)
{
    struct question q;
    if (!same_addr(from, &cfg.upstream) || n < HDR || !(get16(msg + 2) & F_QR))
        return;
    struct pending *p = pending_find(get16(msg), now_ms());
    if (!p)
        return;
    unsigned qd = get16(msg + 4);
    bool refusal = qd == 0 && (get16(msg + 2) & F_RCODE) != RC_NOERROR && get16(msg + 6) == 0 &&
                   get16(msg + 8) == 0;
    bool same = qd == 1 && parse_question(msg, n, &q) && q.type == p->q.type &&
                q.qclass == p->q.qclass && same_name(q.name, q.name_len, p->q.name, p->q.name_len);
    if (!refusal && !same)
        return;
    put16(msg, p->client_id);
    send_to(p->fd, msg, n, &p->client);
    p->used = false;
}

/* ---- Queries ---- */

/* Below 1024 other than 53, a source port is a service's (echo, chargen)
 * and no resolver's: answering it could start an endless exchange. */
static bool client_port(const struct sockaddr_in *from)
{
    unsigned port = ntohs(from->sin_port);
    return port >= 1024 || port == 53;
}

static void on_query(int fd, uint8_t *msg, size_t n, const struct sockaddr_in *from)
{
    struct question q;
    if (n < HDR || (get16(msg + 2) & F_QR) || !client_port(from))
        return;
    if (up_connected && same_addr(from, &up_local))
        return;
    if (get16(msg + 2) & F_OPCODE) {
        reply_header(fd, msg, from, RC_NOTIMP);
        return;
    }
    if (get16(msg + 4) != 1 || !parse_question(msg, n, &q)) {
        reply_header(fd, msg, from, RC_FORMERR);
        return;
    }
    const struct known *k = lookup(&q);
    if (k)
        answer_known(fd, msg, &q, k, from);
    else if (cfg.forward)
        forward(fd, msg, n, &q, from);
    else
        reply(fd, msg, &q, from, RC_NXDOMAIN, NULL);
}

/* Up to BATCH datagrams from fd, a listening socket or (upstream) ours. */
static void drain(int fd, bool upstream)
{
    for (int i = 0; i < BATCH; i++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* Errors others caused (an ICMP refusal) are each reported once. */
        if (r < 0 || fl != sizeof from || from.sin_family != AF_INET)
            continue;
        if (upstream)
            on_answer(buf, (size_t)r, &from);
        else
            on_query(fd, buf, (size_t)r, &from);
    }
}

/* ---- Start ---- */

/* Nothing to flush or remove: the end can be immediate. */
static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

/* Descriptors 0-2 open, so that no socket is taken for stderr. */
static void std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return;
}

static int udp_socket(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("cannot make a socket for", a);
    return fd;
}

int main(int argc, char **argv)
{
    struct pollfd pfd[MAX_LISTEN + 1];
    int nfds = 0;
    parse_args(argc, argv);
    std_fds();
    struct sigaction sa = { .sa_handler = on_term };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < cfg.n_listen; i++) {
        listen_fd[i] = udp_socket(&cfg.listen[i]);
        if (bind(listen_fd[i], (const struct sockaddr *)&cfg.listen[i], sizeof cfg.listen[i]) < 0)
            fatal("cannot listen on", &cfg.listen[i]);
        pfd[nfds++] = (struct pollfd){ .fd = listen_fd[i], .events = POLLIN };
    }
    if (cfg.forward) {
        up_fd = udp_socket(&cfg.upstream);
        pfd[nfds++] = (struct pollfd){ .fd = up_fd, .events = POLLIN };
    }
    for (;;) {
        if (poll(pfd, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            fatal("cannot wait for queries on", &cfg.listen[0]);
        }
        for (int i = 0; i < nfds; i++)
            if (pfd[i].revents)
                drain(pfd[i].fd, pfd[i].fd == up_fd);
    }
}

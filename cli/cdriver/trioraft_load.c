/* trioraft_load: the C driver of `trioraft bench` (put and get), run by cli/bench_c.py.
 *
 * The Python side finds the leader, the cluster id and the node ids, registers the client
 * sessions, and starts this program with all of it on the command line. This program opens
 * one DEALER per connection and endpoint, prints "ready", reads the go from stdin
 * ("<start_at> <measure_at> <until>", CLOCK_MONOTONIC seconds as Python's time.monotonic,
 * until 0: run for the quota), runs the closed loops (one request in flight each) from one
 * epoll over the sockets' ZMQ_FDs, prints "progress <ops>" 5 times a second, and at the end
 * "hist <bucket> <n>", "error <kind> <n>", "final <ops> <end> <cpu> <misses> <warm-up errors>".
 *
 * Requests are one frame, header then CBOR body, as wire/codec.py, the bodies hand-encoded;
 * a reply (one frame; [header, body] from older builds) is read as far as its header (a
 * get's also for 0x82 0xf6: key missing); only ErrorReply is parsed, for its code and
 * leader hint. Retries follow cli/bench_fast.py: NotLeader goes to the hinted leader at
 * once; Busy, ProposalDropped and unreachable nodes back off (jittered,
 * 10 ms doubling to 0.5 s); there is no discovery: an endpoint that fails as the leader
 * hands the role to the next one, whose NotLeader hint then leads on; an unanswered attempt
 * is sent again after the attempt timeout (a put: with the same session seq; without a
 * session it fails as Timeout); an operation gives up after the op timeout as
 * Timeout(<last error>); eventual gets move to the connection's next endpoint; an expired
 * session is registered again here (when no earlier attempt of the put can have applied).
 *
 * Build: cc -O2 -std=c99 trioraft_load.c <pyzmq's bundled libzmq.so> -Wl,-rpath,<its dir> -lm
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* The few declarations of libzmq 4.x's zmq.h used here (no headers on this machine). */
typedef struct { void *socket; int fd; short events; short revents; } zmq_pollitem_t;
void *zmq_ctx_new(void);
int zmq_ctx_set(void *ctx, int option, int optval);
int zmq_ctx_term(void *ctx);
void *zmq_socket(void *ctx, int type);
int zmq_setsockopt(void *s, int option, const void *value, size_t len);
int zmq_getsockopt(void *s, int option, void *value, size_t *len);
int zmq_connect(void *s, const char *addr);
int zmq_send(void *s, const void *buf, size_t len, int flags);
int zmq_recv(void *s, void *buf, size_t len, int flags);
int zmq_poll(zmq_pollitem_t *items, int n, long timeout_ms);
int zmq_close(void *s);
#define ZMQ_DEALER 5
#define ZMQ_MAX_SOCKETS 2
#define ZMQ_DONTWAIT 1
#define ZMQ_RCVMORE 13
#define ZMQ_FD 14
#define ZMQ_LINGER 17
#define ZMQ_RECONNECT_IVL 18
#define ZMQ_RECONNECT_IVL_MAX 21
#define ZMQ_IMMEDIATE 39
#define ZMQ_POLLOUT 2

/* wire/codec.py's header and wire/client_messages.py's type codes */
enum { HEADER = 20, VERSION = 1, PUT = 34, WRITE_REPLY = 36, GET = 37, GET_REPLY = 38,
       ERROR_REPLY = 39, SESSION = 50, SESSION_REPLY = 51 };
/* error kinds: wire/errors.py's codes, and Unreachable (not sent: not connected) */
enum { E_ANY = 1, E_NOT_LEADER, E_UNAVAILABLE, E_TIMEOUT, E_WIRE = 8, E_DROPPED = 9,
       E_BUSY = 11, E_EXPIRED = 12, E_UNREACHABLE = 14 };
static const char *KINDS[] = {"", "TrioraftError", "NotLeader", "Unavailable", "Timeout",
    "Compacted", "ConfigError", "StorageError", "WireError", "ProposalDropped",
    "InvalidRequest", "Busy", "SessionExpired", "ChangeInProgress", "Unreachable"};
#define BACKOFF 0.01
#define MAX_BACKOFF 0.5
#define ERROR_PAUSE 0.01
#define PROGRESS_EVERY 0.2
#define CONNECT_WAIT 1.0
#define BUCKETS 2048
#define MAX_EPS 16
#define MAX_KINDS 32

enum { DONE, FLIGHT, SLEEP };
typedef struct {
    uint64_t rid, session, seq, key, rng;
    int state, resend, ep, conn, measuring, uncertain, last;
    int code; /* of the request in body: PUT, GET or SESSION */
    size_t len;
    double t0, wake, deadline, backoff;
    uint8_t *body; /* HEADER bytes after the start of its allocation */
} Loop;
typedef struct { void *s; int touched, connected; } Sock;

static int put, eventual, level, neps, nconns, nloops, running, leader, *targets;
static uint64_t cluster, ids[MAX_EPS], rids, done, misses, warmup_errors, hist[BUCKETS];
static long quota = -1, issued, errors_total;
static double attempt_timeout = 2.0, op_timeout = 30.0, start_at, measure_at, until, end;
static char *eps[MAX_EPS], *prefix = "bench/";
static size_t value_size;
static uint64_t key_space = 1000;
static uint8_t *value;
static Loop *loops;
static Sock *socks;
static int *touched, ntouched;
static char *kind_names[MAX_KINDS];
static uint64_t kind_counts[MAX_KINDS];
static int nkinds;

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
#define mono() seconds(CLOCK_MONOTONIC) /* as Python's time.monotonic() */
#define cpu() seconds(CLOCK_PROCESS_CPUTIME_ID)

static uint64_t rnd(Loop *l) { /* splitmix64 */
    uint64_t z = (l->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void die(const char *what) {
    fprintf(stderr, "trioraft_load: %s\n", what);
    exit(2);
}

/* --- CBOR: the heads of unsigned ints (major 0), byte strings (2), text (3), arrays (4) */

static uint8_t *cbor_head(uint8_t *p, int major, uint64_t v) {
    int n = v < 24 ? 0 : v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x100000000ULL ? 4 : 8;
    *p++ = (uint8_t)(major << 5 | (n == 0 ? v : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27));
    for (int i = n - 1; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* The head at *p of the given major type: its value, or -1 (and *p is past it). */
static int cbor_read(const uint8_t **p, const uint8_t *end, int major, uint64_t *v) {
    if (*p >= end || **p >> 5 != major) return -1;
    int info = *(*p)++ & 31, n = info < 24 ? 0 : info <= 27 ? 1 << (info - 24) : -1;
    if (n < 0 || end - *p < n) return -1;
    *v = n ? 0 : (uint64_t)info;
    while (n--) *v = *v << 8 | *(*p)++;
    return 0;
}

/* The loop's request body: PutRequest [key, value, session_id, seq], GetRequest
 * [key, consistency] or SessionRequest []; the key is cli.bench's "<prefix><i:08d>". */
static void encode(Loop *l) {
    char key[256];
    int klen = snprintf(key, sizeof key, "%s%08llu", prefix, (unsigned long long)l->key);
    uint8_t *p = l->body;
    *p++ = l->code == PUT ? 0x84 : l->code == GET ? 0x82 : 0x80;
    if (l->code != SESSION) {
        p = cbor_head(p, 2, (uint64_t)klen);
        memcpy(p, key, (size_t)klen), p += klen;
    }
    if (l->code == PUT) {
        p = cbor_head(p, 2, value_size);
        memcpy(p, value, value_size), p += value_size;
        p = cbor_head(cbor_head(p, 0, l->session), 0, l->seq);
    } else if (l->code == GET) {
        p = cbor_head(p, 0, (uint64_t)level);
    }
    l->len = (size_t)(p - l->body);
}

/* --- the closed loops ---------------------------------------------------------------- */

static void begin(Loop *l, double now);
static void retry(Loop *l, int kind, uint64_t hint, double now);

static void sleep_until(Loop *l, double wake, int resend) {
    l->state = SLEEP, l->wake = wake, l->resend = resend;
}

static void stop(Loop *l) {
    l->state = DONE;
    running--;
}

static void count_error(const char *name) {
    int i = 0;
    while (i < nkinds && strcmp(kind_names[i], name)) i++;
    if (i == nkinds && nkinds < MAX_KINDS) kind_names[nkinds++] = strdup(name);
    if (i < nkinds) kind_counts[i]++;
    errors_total++;
}

/* The operation failed: counted, then (after a pause) the loop's next one. */
static void fail(Loop *l, const char *name, double now) {
    if (!l->measuring) {
        warmup_errors++;
    } else {
        count_error(name);
        if (quota >= 0) {
            issued--; /* to be made again */
            if (errors_total > (quota > 1000 ? quota : 1000)) { stop(l); return; } /* give up */
        }
    }
    sleep_until(l, now + ERROR_PAUSE, 0);
}

static void send_attempt(Loop *l, double now) {
    uint8_t *h = l->body - HEADER; /* one frame: the header, then the body */
    int ep = eventual ? targets[l->conn] % neps : leader;
    Sock *s = &socks[l->conn * neps + ep];
    l->ep = ep;
    l->rid = ++rids << 16 | (uint64_t)(l - loops);
    h[0] = VERSION, h[1] = 0, h[2] = (uint8_t)(l->code >> 8), h[3] = (uint8_t)l->code;
    for (int i = 0; i < 8; i++) {
        h[4 + i] = (uint8_t)(cluster >> (56 - 8 * i));
        h[12 + i] = (uint8_t)(l->rid >> (56 - 8 * i));
    }
    if (zmq_send(s->s, h, HEADER + l->len, ZMQ_DONTWAIT) < 0) { /* IMMEDIATE: */
        retry(l, E_UNREACHABLE, 0, now); /* not connected, nothing sent */
        return;
    }
    if (!s->touched) s->touched = 1, touched[ntouched++] = (int)(s - socks);
    l->state = FLIGHT, l->wake = now + attempt_timeout;
}

static void resend(Loop *l, double now) {
    char name[64];
    if (now < l->deadline) {
        send_attempt(l, now);
        return;
    }
    snprintf(name, sizeof name, eventual ? "Timeout" : "Timeout(%s)", KINDS[l->last]);
    fail(l, name, now);
}

static void back_off(Loop *l, double now) { /* jittered: loops refused together part */
    double jitter = 0.5 + 0.5 * (double)(rnd(l) >> 11) / 9007199254740992.0;
    sleep_until(l, now + l->backoff * jitter, 1);
    l->backoff = l->backoff * 2 < MAX_BACKOFF ? l->backoff * 2 : MAX_BACKOFF;
}

/* An attempt failed with an error of kind k: retry as the client does, or fail. */
static void retry(Loop *l, int k, uint64_t hint, double now) {
    int lost = k == E_UNAVAILABLE || k == E_TIMEOUT; /* sent, not answered */
    int again = lost || k == E_NOT_LEADER || k == E_DROPPED || k == E_BUSY || k == E_UNREACHABLE;
    l->last = k;
    if (eventual) { /* on to the connection's next endpoint */
        if (lost || k == E_BUSY || k == E_UNREACHABLE) {
            targets[l->conn]++;
            sleep_until(l, now + ERROR_PAUSE, 1);
        } else {
            fail(l, KINDS[k], now);
        }
        return;
    }
    for (int i = 0; k == E_NOT_LEADER && hint && i < neps; i++)
        if (ids[i] == hint) { /* follow the hint at once */
            leader = i;
            resend(l, now);
            return;
        }
    if (again && k != E_BUSY && leader == l->ep)
        leader = (leader + 1) % neps; /* the next one leads, unless another loop moved it */
    if (lost && l->code == PUT) l->uncertain = 1; /* the put may have applied */
    if ((lost && l->code == PUT && !l->session) || (k == E_EXPIRED && l->uncertain)) {
        fail(l, "Timeout", now);
    } else if (k == E_EXPIRED && l->code == PUT) { /* not applied: a new session, then put */
        l->code = SESSION;
        encode(l);
        resend(l, now);
    } else if (again) {
        back_off(l, now);
    } else {
        fail(l, KINDS[k], now);
    }
}

/* An ErrorReply body, [code, message, leader_id]: its code and hint, or -1. */
static int parse_error(const uint8_t *p, const uint8_t *end, uint64_t *code, uint64_t *hint) {
    uint64_t len;
    if (p >= end || *p++ != 0x83 || cbor_read(&p, end, 0, code) < 0 ||
        cbor_read(&p, end, 3, &len) < 0 || (uint64_t)(end - p) < len)
        return -1;
    p += len;
    return cbor_read(&p, end, 0, hint);
}

static void on_reply(const uint8_t *h, int hlen, const uint8_t *b, int blen) {
    uint64_t rid = 0, code, hint, session;
    if (hlen != HEADER) return;
    for (int i = 0; i < 8; i++) rid = rid << 8 | h[12 + i];
    uint64_t i = rid & 0xffff;
    if (i >= (uint64_t)nloops || loops[i].rid != rid || loops[i].state != FLIGHT)
        return; /* not a reply to an attempt still waiting */
    Loop *l = &loops[i];
    double now = mono();
    int type = h[2] << 8 | h[3];
    int want = l->code == PUT ? WRITE_REPLY : l->code == GET ? GET_REPLY : SESSION_REPLY;
    const uint8_t *p = b + 1;
    if (h[0] != VERSION || h[1]) {
        retry(l, E_WIRE, 0, now);
    } else if (type == want && l->code == SESSION) { /* [session_id, ttl_ms] */
        if (blen < 1 || b[0] != 0x82 || cbor_read(&p, b + blen, 0, &session) < 0) {
            retry(l, E_WIRE, 0, now);
            return;
        }
        l->session = session, l->seq = 1, l->code = PUT;
        encode(l);
        resend(l, now);
    } else if (type == want) {
        if (l->measuring) {
            double us = (now - l->t0) * 1e6;
            int bucket = (int)(log(us > 1.0 ? us : 1.0) / log(1.02));
            hist[bucket < BUCKETS ? bucket : BUCKETS - 1]++;
            done++;
            end = now;
            if (type == GET_REPLY && blen >= 2 && b[0] == 0x82 && b[1] == 0xf6) misses++;
        }
        begin(l, now);
    } else if (type == ERROR_REPLY && parse_error(b, b + blen, &code, &hint) == 0) {
        retry(l, code >= 1 && code <= 13 ? (int)code : E_ANY, hint, now);
    } else {
        retry(l, E_WIRE, 0, now);
    }
}

/* Start the loop's next operation, or stop it (deadline passed, quota made). */
static void begin(Loop *l, double now) {
    if (until > 0 && now >= until) {
        stop(l);
        return;
    }
    l->measuring = now >= measure_at;
    if (l->measuring && quota >= 0) {
        if (issued >= quota) {
            stop(l);
            return;
        }
        issued++; /* reserved: the workers make exactly --ops operations */
    }
    l->key = rnd(l) % key_space;
    l->code = put ? PUT : GET;
    if (put && l->session) l->seq++;
    encode(l);
    l->deadline = now + op_timeout, l->backoff = BACKOFF, l->uncertain = 0;
    l->t0 = mono();
    send_attempt(l, now);
}

/* Every reply waiting on a socket. ZMQ_FD is edge-triggered: a socket is read until EAGAIN
 * (which also re-arms its FD), after any send on it as well (replies may send). */
static void drain(int si) {
    static uint8_t h[65536], b[65536];
    void *s = socks[si].s;
    socks[si].touched = 1; /* sends from here on are followed by a recv in this loop */
    for (;;) { /* a reply is one frame, read at most sizeof h; or [header, body] */
        int hlen = zmq_recv(s, h, sizeof h, ZMQ_DONTWAIT), blen = -1, frames = 1, more = 0;
        size_t size = sizeof more;
        if (hlen < 0) {
            socks[si].touched = 0;
            return;
        }
        if (hlen > (int)sizeof h) hlen = (int)sizeof h;
        while (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &size) == 0 && more && ++frames)
            blen = zmq_recv(s, b, sizeof b, ZMQ_DONTWAIT);
        if (frames == 1 && hlen >= HEADER)
            on_reply(h, HEADER, h + HEADER, hlen - HEADER);
        else if (frames == 2 && blen >= 0)
            on_reply(h, hlen, b, blen < (int)sizeof b ? blen : (int)sizeof b);
    }
}

/* --- setup, run, report --------------------------------------------------------------- */

static int split_u64(char *text, uint64_t *out, int max) {
    int n = 0;
    for (char *t = strtok(text, ","); t && n < max; t = strtok(NULL, ","))
        out[n++] = strtoull(t, NULL, 10);
    return n;
}

static void usage(void) {
    die("usage: trioraft_load -w put|get [-l level] [-k cluster] [-v value_size] "
        "[-n key_space] [-p prefix] [-q quota] [-L leader] -e id,endpoint... -t targets "
        "-c loops [-s sessions] [-r seed] [-T attempt,op]");
}

int main(int argc, char **argv) {
    static uint64_t list[65536];
    uint64_t seed = 1;
    char *sessions = NULL, *target_list = NULL, go[256];
    int opt, n;
    while ((opt = getopt(argc, argv, "w:l:k:v:n:p:q:L:e:t:c:s:r:T:")) != -1) {
        switch (opt) {
        case 'w': put = !strcmp(optarg, "put"); break;
        case 'l': level = atoi(optarg); break;
        case 'k': cluster = strtoull(optarg, NULL, 10); break;
        case 'v': value_size = strtoull(optarg, NULL, 10); break;
        case 'n': key_space = strtoull(optarg, NULL, 10); break;
        case 'p': prefix = optarg; break;
        case 'q': quota = atol(optarg); break;
        case 'L': leader = atoi(optarg); break;
        case 'e':
            if (neps == MAX_EPS || !strchr(optarg, ',')) usage();
            ids[neps] = strtoull(optarg, NULL, 10), eps[neps++] = strchr(optarg, ',') + 1;
            break;
        case 't': target_list = optarg; break;
        case 'c': nloops = atoi(optarg); break;
        case 's': sessions = optarg; break;
        case 'r': seed = strtoull(optarg, NULL, 10); break;
        case 'T': if (sscanf(optarg, "%lf,%lf", &attempt_timeout, &op_timeout) != 2) usage(); break;
        default: usage();
        }
    }
    eventual = !put && level == 2;
    if (!neps || !target_list || nloops < 0 || nloops > 0xffff || !key_space ||
        leader < 0 || leader >= neps || strlen(prefix) > 200)
        usage();
    nconns = split_u64(target_list, list, 65536);
    targets = calloc((size_t)nconns + 1, sizeof *targets);
    for (int j = 0; j < nconns; j++) targets[j] = (int)list[j];
    if (!nconns) usage();
    loops = calloc((size_t)nloops + 1, sizeof *loops);
    value = malloc(value_size + 1);
    memset(value, 'v', value_size);
    n = sessions ? split_u64(sessions, list, nloops) : 0;
    for (int i = 0; i < nloops; i++) {
        loops[i].conn = i % nconns, loops[i].session = i < n ? list[i] : 0;
        loops[i].rng = seed * 0x100000001b3ULL + (uint64_t)i;
        if (!(loops[i].body = malloc(HEADER + value_size + 300))) die("out of memory");
        loops[i].body += HEADER; /* room for the header in front (send_attempt) */
    }

    /* one DEALER per connection and endpoint, all in one epoll */
    void *ctx = zmq_ctx_new(); /* its I/O thread does the TCP work */
    int nsocks = nconns * neps, epfd = epoll_create1(0);
    int options[][2] = {{ZMQ_LINGER, 0}, {ZMQ_IMMEDIATE, 1}, {ZMQ_RECONNECT_IVL, 20},
                        {ZMQ_RECONNECT_IVL_MAX, 1000}}; /* as wire.zsock.open_dealer */
    socks = calloc((size_t)nsocks, sizeof *socks);
    touched = calloc((size_t)nsocks, sizeof *touched);
    zmq_pollitem_t *items = calloc((size_t)nsocks, sizeof *items);
    /* libzmq allows 1,023 sockets per context unless told: --connections x endpoints */
    if (zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, nsocks + 8) < 0)
        die("cannot raise ZeroMQ's socket limit");
    for (int i = 0; i < nsocks; i++) {
        void *s = socks[i].s = zmq_socket(ctx, ZMQ_DEALER);
        if (!s) /* one per connection and endpoint, each with its file descriptors */
            die("cannot open a ZeroMQ socket per connection and endpoint: the open-file limit?");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        int fd;
        size_t size = sizeof fd;
        for (int k = 0; k < 4; k++) zmq_setsockopt(s, options[k][0], &options[k][1], sizeof(int));
        if (zmq_connect(s, eps[i % neps]) < 0) die("cannot connect to an endpoint");
        if (zmq_getsockopt(s, ZMQ_FD, &fd, &size) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
            die("cannot poll a socket");
    }
    /* wait (up to CONNECT_WAIT) until connected: IMMEDIATE sockets are writable then */
    for (double give_up = mono() + CONNECT_WAIT;;) {
        int waiting = 0;
        for (int i = 0; i < nsocks; i++)
            if (!socks[i].connected)
                touched[waiting] = i, /* for now: which socket an item is */
                items[waiting++] = (zmq_pollitem_t){socks[i].s, 0, ZMQ_POLLOUT, 0};
        if (!waiting || mono() >= give_up) break;
        zmq_poll(items, waiting, 10);
        for (int i = 0; i < waiting; i++) socks[touched[i]].connected = items[i].revents != 0;
    }
    printf("ready\n");
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin) ||
        sscanf(go, "%lf %lf %lf", &start_at, &measure_at, &until) != 3)
        die("no go on stdin");

    /* the closed loops, from the go until they all stop */
    double now, cpu0 = -1, next_progress = mono() + PROGRESS_EVERY;
    running = nloops;
    for (int i = 0; i < nloops; i++) sleep_until(&loops[i], start_at, 0);
    while (running > 0) {
        struct epoll_event evs[64];
        double wake;
        now = mono();
        if (cpu0 < 0 && now >= measure_at) cpu0 = cpu();
        if (now >= next_progress) {
            printf("progress %llu\n", (unsigned long long)done);
            fflush(stdout);
            next_progress = now + PROGRESS_EVERY;
        }
        for (int i = 0; i < nloops; i++) {
            Loop *l = &loops[i];
            if (l->state == FLIGHT && now >= l->wake) retry(l, E_TIMEOUT, 0, now); /* no reply */
            else if (l->state == SLEEP && now >= l->wake && l->resend) resend(l, now);
            else if (l->state == SLEEP && now >= l->wake) begin(l, now);
        }
        while (ntouched > 0) { /* a send may have taken the FD's edge */
            int si = touched[--ntouched];
            if (socks[si].touched) drain(si);
        }
        wake = cpu0 < 0 && measure_at < next_progress ? measure_at : next_progress;
        for (int i = 0; i < nloops; i++)
            if (loops[i].state != DONE && loops[i].wake < wake) wake = loops[i].wake;
        double ms = ceil((wake - mono()) * 1000);
        n = epoll_wait(epfd, evs, 64, ms > 0 ? (int)ms : 0);
        for (int i = 0; i < n; i++) drain((int)evs[i].data.u32);
    }
    double cpu_used = cpu0 < 0 ? 0.0 : cpu() - cpu0;

    for (int b = 0; b < BUCKETS; b++)
        if (hist[b]) printf("hist %d %llu\n", b, (unsigned long long)hist[b]);
    for (int i = 0; i < nkinds; i++)
        printf("error %s %llu\n", kind_names[i], (unsigned long long)kind_counts[i]);
    printf("final %llu %.9f %.6f %llu %llu\n", (unsigned long long)done, end, cpu_used,
           (unsigned long long)misses, (unsigned long long)warmup_errors);
    fflush(stdout);
    for (int i = 0; i < nsocks; i++) zmq_close(socks[i].s);
    zmq_ctx_term(ctx);
    return 0;
}

/*
 * pubsub_msg.c: the load client's messages. The fixed-width header a
 * publisher writes into each body (ps_msg_header); the incremental parser
 * that finds template-wrapped messages in what a subscriber receives, in
 * pieces of any size (ps_pp_feed, ps_pp_end); the accounting of each
 * delivery (warm-up, latency, duplicates, order, another run's messages);
 * and the latency histogram.
 */
#include "pubsub.h"

#include "shk_atomic_internal.h"

#include <string.h>

static void put_dec(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static void put_hex8(char *p, uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 7; i >= 0; i--) {
        p[i] = hex[v & 15];
        v >>= 4;
    }
}

void ps_msg_header(char *b, uint32_t ch, uint32_t seq, uint64_t t_ns)
{
    memcpy(b, "r=", 2);
    put_hex8(b + 2, ps_opt.run_id);
    memcpy(b + 10, ";c=", 3);
    put_dec(b + 13, ch, 6);
    memcpy(b + 19, ";s=", 3);
    put_dec(b + 22, seq, 10);
    memcpy(b + 32, ";t=", 3);
    put_dec(b + 35, t_ns, 19);
    b[54] = ';';
}

static int get_dec(const char *p, int width, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parses pp->hdr; -1 if it is no message header at all. */
static int parse_header(ps_pp_t *pp)
{
    const char *b = pp->hdr;
    uint64_t ch, seq, t;
    if (memcmp(b, "r=", 2) || memcmp(b + 10, ";c=", 3) || memcmp(b + 19, ";s=", 3) ||
        memcmp(b + 32, ";t=", 3) || b[54] != ';' || get_dec(b + 13, 6, &ch) < 0 ||
        get_dec(b + 22, 10, &seq) < 0 || get_dec(b + 35, 19, &t) < 0 || seq > UINT32_MAX)
        return -1;
    char run[8];
    put_hex8(run, ps_opt.run_id);
    pp->stale = memcmp(b + 2, run, 8) != 0;
    pp->ch = (uint32_t)ch;
    pp->seq = (uint32_t)seq;
    pp->t_ns = t;
    return 0;
}

/* ---- accounting ------------------------------------------------------------------------- */

void ps_acct_init(ps_acct_t *a, uint64_t *win)
{
    *a = (ps_acct_t){.win = win};
}

#define WIN_MASK (PS_WIN_BITS - 1)
#define BIT_TEST(w, i) (((w)[(i) >> 6] >> ((i) & 63)) & 1)
#define BIT_SET(w, i) ((w)[(i) >> 6] |= 1ull << ((i) & 63))
#define BIT_CLR(w, i) ((w)[(i) >> 6] &= ~(1ull << ((i) & 63)))

static int deliver(ps_worker_t *w, ps_sub_t *s)
{
    ps_pp_t *pp = &s->pp;
    ps_acct_t *a = &s->acct;
    if (pp->stale) {
        a->stale++;
        return 0;
    }
    if (pp->ch != s->ch) {
        ps_sub_error(w, s, "a message of channel %u on a subscriber of channel %u", pp->ch, s->ch);
        return -1;
    }
    uint32_t seq = pp->seq;
    if (seq == 0) { /* warm-up */
        if (!a->warmed) {
            a->warmed = 1;
            if (ps_opt.settle && a->base == 0)
                a->base = 1;
            /* A count the parent polls; nothing is published with it. */
            SHK_ADD_RELAXED(ps_sh->warm, 1);
        }
        return 0;
    }
    a->delivered++;
    w->delivered++;
    w->last_delivery_ns = s->now;
    ps_hist_add(&w->lat, s->now > pp->t_ns ? s->now - pp->t_ns : 0);
    if (a->base == 0)
        a->base = seq;
    if (seq < a->base) {
        a->reord++;
        return 0;
    }
    if (seq > a->max) {
        if (seq - a->max >= PS_WIN_BITS)
            memset(a->win, 0, PS_WIN_BITS / 8);
        else
            for (uint32_t i = a->max + 1; i != seq; i++)
                BIT_CLR(a->win, i & WIN_MASK);
        BIT_SET(a->win, seq & WIN_MASK);
        a->got++;
        a->max = seq;
    } else if (a->max - seq >= PS_WIN_BITS) {
        /* Too old for the window: counted as new and out of order. */
        a->got++;
        a->reord++;
    } else if (BIT_TEST(a->win, seq & WIN_MASK)) {
        a->dup++;
    } else {
        BIT_SET(a->win, seq & WIN_MASK);
        a->got++;
        a->reord++;
    }
    return 0;
}

/* ---- the payload parser ----------------------------------------------------------------- */

void ps_pp_reset(ps_pp_t *pp)
{
    pp->state = PP_PREFIX;
    pp->matched = 0;
    pp->skip = 0;
}

/* The body is read: match the suffix, or deliver now if there is none. */
static int body_done(ps_worker_t *w, ps_sub_t *s)
{
    s->pp.matched = 0;
    if (ps_opt.suffix_len) {
        s->pp.state = PP_SUFFIX;
        return 0;
    }
    s->pp.state = PP_PREFIX;
    return deliver(w, s);
}

int ps_pp_feed(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n)
{
    ps_pp_t *pp = &s->pp;
    while (n) {
        switch (pp->state) {
        case PP_PREFIX:
            while (n && pp->matched < ps_opt.prefix_len) {
                if (*p != ps_opt.prefix[pp->matched]) {
                    ps_sub_error(w, s, "message does not start with the template's prefix");
                    return -1;
                }
                pp->matched++, p++, n--;
            }
            if (pp->matched == ps_opt.prefix_len) {
                pp->state = PP_HDR;
                pp->matched = 0;
            }
            break;
        case PP_HDR: {
            size_t k = PS_HDR_LEN - pp->matched;
            if (k > n)
                k = n;
            memcpy(pp->hdr + pp->matched, p, k);
            pp->matched += (uint32_t)k, p += k, n -= k;
            if (pp->matched < PS_HDR_LEN)
                break;
            if (parse_header(pp) < 0) {
                ps_sub_error(w, s, "not a message header: '%.*s'", PS_HDR_LEN, pp->hdr);
                return -1;
            }
            pp->skip = ps_opt.size - PS_HDR_LEN;
            pp->state = PP_BODY;
            if (pp->skip == 0 && body_done(w, s) < 0)
                return -1;
            break;
        }
        case PP_BODY: {
            size_t k = pp->skip < n ? (size_t)pp->skip : n;
            pp->skip -= k, p += k, n -= k;
            if (pp->skip == 0 && body_done(w, s) < 0)
                return -1;
            break;
        }
        case PP_SUFFIX:
            while (n && pp->matched < ps_opt.suffix_len) {
                if (*p != ps_opt.suffix[pp->matched]) {
                    ps_sub_error(w, s,
                                 "message of %u bytes not followed by the template's suffix "
                                 "(a message of another size?)",
                                 ps_opt.size);
                    return -1;
                }
                pp->matched++, p++, n--;
            }
            if (pp->matched == ps_opt.suffix_len) {
                pp->state = PP_PREFIX;
                pp->matched = 0;
                if (deliver(w, s) < 0)
                    return -1;
            }
            break;
        }
    }
    return 0;
}

int ps_pp_end(ps_worker_t *w, ps_sub_t *s)
{
    if (s->pp.state == PP_PREFIX && s->pp.matched == 0)
        return 0;
    /* The suffix may separate messages rather than end each: a unit may
     * end right after a message's body (nchan's raw long-poll answers one
     * message without its separator, several with one after each). */
    if (s->pp.state == PP_SUFFIX && s->pp.matched == 0) {
        ps_pp_reset(&s->pp);
        return deliver(w, s);
    }
    ps_sub_error(w, s, "a message is cut short (parser state %d, %u bytes in)", s->pp.state,
                 s->pp.matched);
    ps_pp_reset(&s->pp);
    return -1;
}

/* ---- latency histogram ------------------------------------------------------------------ */

static unsigned hist_index(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
    unsigned shift = msb - 6;
    return 128 + (msb - 7) * 64 + (unsigned)((v >> shift) & 63);
}

static uint64_t hist_mid(unsigned i)
{
    if (i < 128)
        return i;
    unsigned msb = (i - 128) / 64 + 7, sub = (i - 128) % 64, shift = msb - 6;
    uint64_t lo = (uint64_t)(64 + sub) << shift;
    return lo + ((1ull << shift) >> 1);
}

void ps_hist_add(ps_hist_t *h, uint64_t v)
{
    h->n[hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

void ps_hist_merge(ps_hist_t *into, const ps_hist_t *from)
{
    for (unsigned i = 0; i < PS_HIST_N; i++)
        into->n[i] += from->n[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t ps_hist_quantile(const ps_hist_t *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PS_HIST_N; i++) {
        seen += h->n[i];
        if (seen > want) {
            uint64_t m = hist_mid(i);
            return m > h->max ? h->max : m;
        }
    }
    return h->max;
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit_top.c: the `shmkit top` verb. On a terminal, a live view redrawn
 * after every reading (each second by default) until `q`: the terminal is
 * put in non-canonical mode without echo and on its alternate screen, the
 * frame is drawn from the top with every line cut to the width and cleared
 * to its end (no flicker, no curses: the view is printable ASCII, so a
 * byte is a column), and it is restored on q, SIGINT, SIGTERM, SIGHUP and
 * around a suspend (SIGTSTP). Arrows, j/k, space and b scroll. When
 * standard output is no terminal (or with --once), one text report, with
 * rates over one interval. Readings: shmkit_top_sample.c; the text:
 * shmkit_top_view.c.
 */
#include "shmkit_top_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

void shmkit_top_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s top [--instance NAME] [--interval MS] [--once] [ZONE...]\n"
            "\n"
            "A live view of the named zones of instance NAME (default \"default\"), read\n"
            "again every MS milliseconds (default 1000, 100 to 3600000): per zone the slab\n"
            "pool and its size classes in use, the locks with acquisitions, contentions and\n"
            "recoveries per second, the bus's slots with queue depth, oldest alert, alerts\n"
            "in and out and doorbells per second, and the channel store with its slots.\n"
            "Without ZONE, every zone of the instance, listed again at every reading, so\n"
            "the view follows the instance through restarts and reloads. Keys: q quits,\n"
            "arrows, j/k, space and b scroll. When standard output is not a terminal, or\n"
            "with --once, prints one text report with rates over one interval and exits.\n"
            "Read-only and lock-free, as stat. Exit status: 0, 1 if a zone could not be\n"
            "attached (text report) or the zones cannot be listed, 2 for a wrong command\n"
            "line.\n",
            prog);
}

/* ---- the terminal ---------------------------------------------------------------------- */

static volatile sig_atomic_t got_quit, got_winch, got_tstp;
static struct termios saved_tty;
static int tty_in; /* standard input is a terminal we changed */

static void on_signal(int sig)
{
    if (sig == SIGWINCH)
        got_winch = 1;
    else if (sig == SIGTSTP)
        got_tstp = 1;
    else
        got_quit = 1;
}

/* All of buf to fd (the terminal). */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t k = write(fd, buf, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        buf += k;
        len -= (size_t)k;
    }
}

/* Into the view: keys one at a time without echo, the alternate screen,
 * no cursor. */
static void screen_enter(void)
{
    if (tty_in) {
        struct termios t = saved_tty;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        tcsetattr(0, TCSAFLUSH, &t);
    }
    write_all(1, "\x1b[?1049h\x1b[?25l", 14);
}

static void screen_leave(void)
{
    write_all(1, "\x1b[?25h\x1b[?1049l", 14);
    if (tty_in)
        tcsetattr(0, TCSAFLUSH, &saved_tty);
}

static void handle_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    sigaction(SIGTSTP, &sa, NULL);
}

/* Stop as a terminal program does on ^Z, the terminal restored meanwhile. */
static void suspend(void)
{
    struct sigaction sa = {0};
    screen_leave();
    sa.sa_handler = SIG_DFL;
    sigaction(SIGTSTP, &sa, NULL);
    raise(SIGTSTP); /* stopped here until SIGCONT */
    handle_signals();
    screen_enter();
}

/* One frame: the first line of `text` (the heading) always, then the lines
 * from `*top` on, each cut to the width, and a last line saying where we
 * are. *top is kept inside the text. */
static unsigned page = 20; /* body rows of the last frame: a page to scroll */

static void draw(const char *text, unsigned *top)
{
    struct winsize ws = {0};
    unsigned rows = 24, cols = 80, nlines = 0, row = 0;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 2 && ws.ws_col > 10) {
        rows = ws.ws_row;
        cols = ws.ws_col;
    }
    for (const char *s = text; *s; s++)
        nlines += *s == '\n';
    if (!nlines)
        nlines = 1;
    unsigned body = rows - 2; /* the heading and the last line */
    page = body;
    if (*top + body > nlines - 1)
        *top = nlines - 1 > body ? nlines - 1 - body : 0;

    size_t cap = (size_t)rows * (cols + 8) + 64, len = 0;
    char *frame = malloc(cap), *p;
    if (!frame)
        return;
    len += (size_t)snprintf(frame, cap, "\x1b[H");
    const char *s = text;
    for (unsigned i = 0; *s && row < rows - 1; i++) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        if (i == 0 || (i > *top && i <= *top + body)) {
            size_t take = n < cols ? n : cols;
            memcpy(frame + len, s, take);
            len += take;
            memcpy(frame + len, "\x1b[K\r\n", 5);
            len += 5;
            row++;
        }
        s = nl ? nl + 1 : s + n;
    }
    while (row < rows - 1) {
        memcpy(frame + len, "\x1b[K\r\n", 5);
        len += 5;
        row++;
    }
    p = frame + len;
    len += (size_t)snprintf(p, cap - len, "%.*s\x1b[K\x1b[J", (int)cols,
                            nlines > body + 1 ? "-- more: arrows, j/k, space, b scroll; q quits --"
                                              : "");
    write_all(1, frame, len);
    free(frame);
}

/* Keys read: 0 to go on, 1 to quit. Moves *top. */
static int keys(unsigned *top)
{
    char k[64];
    ssize_t n = read(0, k, sizeof k);
    for (ssize_t i = 0; i < n; i++) {
        if (k[i] == 'q' || k[i] == 'Q')
            return 1;
        if (k[i] == 'j')
            (*top)++;
        else if (k[i] == 'k' && *top)
            (*top)--;
        else if (k[i] == ' ')
            *top += page;
        else if (k[i] == 'b')
            *top = *top > page ? *top - page : 0;
        else if (k[i] == 'g')
            *top = 0;
        else if (k[i] == '\x1b' && i + 2 < n && k[i + 1] == '[') {
            char c = k[i + 2];
            i += 2;
            if (c == 'B')
                (*top)++;
            else if (c == 'A' && *top)
                (*top)--;
            else if ((c == '5' || c == '6') && i + 1 < n && k[i + 1] == '~') {
                i++;
                *top = c == '6' ? *top + page : (*top > page ? *top - page : 0);
            }
        }
    }
    return 0;
}

static uint64_t mono_ms(void)
{
    return shk_time_ns() / 1000000;
}

typedef struct {
    const char *instance;
    char **names;
    unsigned nnames;
    unsigned interval_ms;
} top_opts_t;

static int live(const top_opts_t *o, const char *prog)
{
    shmkit_top_snap_t snap[2];
    shmkit_top_head_t head = {o->instance, 1, o->interval_ms / 1000.0};
    unsigned cur = 0, top = 0;
    int have_prev = 0, rc = 0;
    char *text = NULL;

    tty_in = isatty(0) && tcgetattr(0, &saved_tty) == 0;
    handle_signals();
    screen_enter();
    uint64_t next = 0;
    while (!got_quit) {
        uint64_t now = mono_ms();
        if (now >= next) {
            if (shmkit_top_sample(o->instance, o->names, o->nnames, &snap[cur]) != 0) {
                rc = 1;
                break;
            }
            char *t = shmkit_top_render(have_prev ? &snap[cur ^ 1] : NULL, &snap[cur], &head);
            if (!t) {
                rc = 1;
                break;
            }
            free(text);
            text = t;
            if (have_prev)
                shmkit_top_snap_free(&snap[cur ^ 1]);
            have_prev = 1;
            cur ^= 1;
            next = (next && next + o->interval_ms > now ? next : now) + o->interval_ms;
            draw(text, &top);
            continue;
        }
        struct pollfd p = {.fd = tty_in ? 0 : -1, .events = POLLIN};
        int n = poll(&p, 1, (int)(next - now));
        if (got_tstp) {
            got_tstp = 0;
            suspend();
            draw(text, &top);
        }
        if (got_winch) {
            got_winch = 0;
            draw(text, &top);
        }
        if (n > 0 && (p.revents & (POLLHUP | POLLERR)))
            break; /* the terminal is gone */
        if (n > 0 && (p.revents & POLLIN)) {
            if (keys(&top))
                break;
            draw(text, &top);
        }
    }
    screen_leave();
    if (have_prev)
        shmkit_top_snap_free(&snap[cur ^ 1]);
    free(text);
    if (rc)
        fprintf(stderr, "%s top: out of memory\n", prog);
    return rc;
}

/* The one text report: two readings one interval apart. */
static int once(const top_opts_t *o, const char *prog)
{
    shmkit_top_snap_t a, b;
    shmkit_top_head_t head = {o->instance, 0, o->interval_ms / 1000.0};
    struct timespec ts = {o->interval_ms / 1000, (long)(o->interval_ms % 1000) * 1000000};
    char *text = NULL;
    int rc = 1;
    if (shmkit_top_sample(o->instance, o->names, o->nnames, &a) != 0)
        goto oom;
    if (!a.error && a.n) /* the interval the rates are over */
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    if (shmkit_top_sample(o->instance, o->names, o->nnames, &b) != 0) {
        shmkit_top_snap_free(&a);
        goto oom;
    }
    text = shmkit_top_render(&a, &b, &head);
    rc = b.error || b.failed ? 1 : 0;
    shmkit_top_snap_free(&a);
    shmkit_top_snap_free(&b);
    if (!text)
        goto oom;
    fputs(text, stdout);
    free(text);
    return rc;
oom:
    fprintf(stderr, "%s top: out of memory\n", prog);
    return 1;
}

int shmkit_top_main(int argc, char **argv, const char *prog)
{
    top_opts_t o = {"default", NULL, 0, 1000};
    int force_once = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            shmkit_top_usage(stdout, prog);
            return 0;
        } else if (strcmp(a, "--once") == 0) {
            force_once = 1;
        } else if (strcmp(a, "--instance") == 0 && i + 1 < argc) {
            o.instance = argv[++i];
        } else if (strncmp(a, "--instance=", 11) == 0) {
            o.instance = a + 11;
        } else if ((strcmp(a, "--interval") == 0 && i + 1 < argc && (v = argv[++i])) ||
                   (strncmp(a, "--interval=", 11) == 0 && (v = a + 11))) {
            char *end;
            errno = 0;
            unsigned long ms = strtoul(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-' || ms < 100 || ms > 3600000) {
                fprintf(stderr, "%s top: --interval takes 100 to 3600000 (milliseconds)\n", prog);
                return 2;
            }
            o.interval_ms = (unsigned)ms;
        } else if (a[0] == '-') {
            char *e = shk_stat_escape(a, 0);
            fprintf(stderr, "%s top: unknown option \"%s\"\n", prog, e ? e : "?");
            free(e);
            shmkit_top_usage(stderr, prog);
            return 2;
        } else {
            break;
        }
    }
    if (i < argc) {
        o.names = argv + i;
        o.nnames = (unsigned)(argc - i);
    }
    return !force_once && isatty(1) ? live(&o, prog) : once(&o, prog);
}

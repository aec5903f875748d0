#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "term.h"

#include "core/error.h"
#include "core/fileio.h"
#include "core/util.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <term.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

volatile sig_atomic_t term_interrupts;

static SCREEN *screen;
static FILE *out_fp, *in_fp;
static int tty_fd = -1;              /* what curses writes to (a dup of stdout) */
static int saved_out = -1, saved_err = -1;
static int pipe_w = -1;
static struct termios saved_termios;
static bool have_termios;
static char restore_buf[512];
static size_t restore_len;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGHUP, SIGQUIT};
#define N_FATAL (int)(sizeof fatal_signals / sizeof fatal_signals[0])
static struct sigaction old_fatal[N_FATAL], old_int;

static void on_fatal(int sig)
{
    if (tty_fd >= 0 && restore_len) {
        ssize_t w = write(tty_fd, restore_buf, restore_len);
        (void)w;
    }
    if (have_termios)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
    if (saved_err >= 0)
        dup2(saved_err, STDERR_FILENO); /* a crash report should be seen */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_interrupt(int sig)
{
    (void)sig;
    term_interrupts++;
}

static void add_restore(const char *cap)
{
    const char *s = cap;
    if (cap[0] != '\033') {
        s = tigetstr((char *)cap);
        if (!s || s == (char *)-1)
            return;
    }
    size_t n = strlen(s);
    if (restore_len + n < sizeof restore_buf) {
        memcpy(restore_buf + restore_len, s, n);
        restore_len += n;
    }
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_fatal};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_FATAL; i++)
        sigaction(fatal_signals[i], &sa, &old_fatal[i]);
    struct sigaction si = {.sa_handler = on_interrupt};
    sigemptyset(&si.sa_mask);
    sigaction(SIGINT, &si, &old_int);
}

static void restore_signals(void)
{
    for (int i = 0; i < N_FATAL; i++)
        sigaction(fatal_signals[i], &old_fatal[i], NULL);
    sigaction(SIGINT, &old_int, NULL);
}

/* stdout and stderr into a pipe the app drains. */
static int capture_output(int *capture_fd)
{
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) < 0)
        return sh_fail(SH_E_IO, "cannot create a pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    pipe_w = fds[1];
    *capture_fd = fds[0];
    return 0;
}

static void release_output(int capture_fd)
{
    fflush(stdout);
    fflush(stderr);
    if (saved_out >= 0) {
        dup2(saved_out, STDOUT_FILENO);
        close(saved_out);
    }
    if (saved_err >= 0) {
        dup2(saved_err, STDERR_FILENO);
        close(saved_err);
    }
    if (pipe_w >= 0)
        close(pipe_w);
    if (capture_fd >= 0)
        close(capture_fd);
    saved_out = saved_err = pipe_w = -1;
}

static int capture_read_fd = -1;

/* Closes the streams curses used (tty_fd belongs to out_fp). */
static void close_streams(void)
{
    if (out_fp)
        fclose(out_fp);
    if (in_fp)
        fclose(in_fp);
    out_fp = in_fp = NULL;
    tty_fd = -1;
}

int term_open(bool invisible, int rows, int cols, int *capture_fd)
{
    *capture_fd = -1;
    install_signals();
    restore_len = 0;
    if (invisible) {
        char num[16];
        snprintf(num, sizeof num, "%d", rows);
        setenv("LINES", num, 1);
        snprintf(num, sizeof num, "%d", cols);
        setenv("COLUMNS", num, 1);
        use_env(TRUE);
        out_fp = fopen("/dev/null", "w");
        in_fp = fopen("/dev/null", "r");
        const char *term = getenv("TERM");
        screen = out_fp && in_fp ? newterm(term && term[0] ? term : "xterm-256color", out_fp, in_fp) : NULL;
    } else {
        have_termios = tcgetattr(STDIN_FILENO, &saved_termios) == 0;
        tty_fd = dup(STDOUT_FILENO);
        out_fp = tty_fd >= 0 ? fdopen(tty_fd, "w") : NULL;
        in_fp = NULL;
        screen = out_fp ? newterm(NULL, out_fp, stdin) : NULL;
    }
    if (!screen) {
        restore_signals();
        close_streams();
        have_termios = false;
        return sh_fail(SH_E_UNSUPPORTED, "cannot start the screen on this terminal (TERM=%s)",
                       getenv("TERM") ? getenv("TERM") : "");
    }
    set_term(screen);
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
    mouseinterval(0);
    if (!invisible) {
        add_restore("\033[?1000l\033[?1002l\033[?1006l");
        add_restore("sgr0");
        add_restore("cnorm");
        add_restore("rmkx");
        add_restore("rmcup");
        add_restore("\r\n");
    }
    int rc = capture_output(capture_fd);
    capture_read_fd = *capture_fd;
    return rc;
}

bool term_is_open(void) { return screen != NULL; }

void term_close(void)
{
    if (!screen)
        return;
    release_output(capture_read_fd);
    capture_read_fd = -1;
    curs_set(1);
    endwin();
    delscreen(screen);
    screen = NULL;
    close_streams();
    if (have_termios)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
    have_termios = false;
    restore_signals();
}

void term_resize(int rows, int cols) { resizeterm(rows, cols); }

void term_drain(int fd, Log *log)
{
    char buf[4096];
    for (int guard = 0; fd >= 0 && guard < 64; guard++) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
            break;
        buf[n] = '\0';
        for (ssize_t i = 0; i < n; i++) /* NUL bytes would cut the text */
            if (!buf[i])
                buf[i] = ' ';
        log_append(log, LOG_OUTPUT, buf);
    }
}

int term_dump(const char *path, bool overwrite)
{
    AtomicFile af;
    int rc = atomic_open(&af, path, overwrite);
    if (rc < 0)
        return rc;
    char *line = xmalloc((size_t)COLS * MB_CUR_MAX + 2);
    for (int y = 0; y < LINES; y++) {
        size_t used = 0, keep = 0;
        for (int x = 0; x < COLS; x++) {
            cchar_t cc;
            wchar_t wch[CCHARW_MAX + 1] = {0};
            attr_t attrs;
            short pair;
            if (mvwin_wch(stdscr, y, x, &cc) == ERR || getcchar(&cc, wch, &attrs, &pair, NULL) == ERR)
                wch[0] = L' ';
            if (wch[0] == 0)
                continue; /* the second cell of a wide character */
            char mb[16];
            mbstate_t st;
            memset(&st, 0, sizeof st);
            size_t n = wcrtomb(mb, wch[0], &st);
            if (n == (size_t)-1) {
                mb[0] = '?';
                n = 1;
            }
            memcpy(line + used, mb, n);
            used += n;
            if (wch[0] != L' ')
                keep = used;
            if (wcwidth(wch[0]) == 2)
                x++;
        }
        line[keep] = '\0';
        fprintf(af.f, "%s\n", line);
    }
    free(line);
    return atomic_commit(&af);
}

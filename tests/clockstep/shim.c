/* An LD_PRELOAD shim that steps the wall clock of one process, and only the wall clock.
 *
 * CLOCK_REALTIME and CLOCK_REALTIME_COARSE (clock_gettime), gettimeofday and time are offset
 * by the number of seconds (a decimal, may be negative) in the file named by CLOCKSTEP_FILE,
 * read again on every call, so a test steps a running process by rewriting the file.
 * CLOCK_MONOTONIC, CLOCK_BOOTTIME and every other clock are left alone: Python's time.sleep
 * and time.monotonic keep working (Debian 12's libfaketime breaks time.sleep on Python 3.11
 * when the monotonic clock is left alone). Built by tests/clockstep/shim.py with
 * `cc -shared -fPIC`.
 *
 * The file is read with open/read/close into a buffer on the stack: no allocation and no
 * shared state, so concurrent calls from several threads are safe.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_ns(void) {
    const char *path = getenv("CLOCKSTEP_FILE");
    if (path == NULL) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    /* Parse [-]SECONDS[.FRACTION] by hand: strtod may depend on the locale. */
    const char *p = buf;
    int negative = 0;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '-' || *p == '+') negative = *p++ == '-';
    long long whole = 0, frac = 0, scale = 1000000000LL;
    while (*p >= '0' && *p <= '9') whole = whole * 10 + (*p++ - '0');
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9' && scale > 1) {
            scale /= 10;
            frac += (*p++ - '0') * scale;
        }
    }
    long long ns = whole * 1000000000LL + frac;
    return negative ? -ns : ns;
}

static int real_clock_gettime(clockid_t id, struct timespec *ts) {
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static void shift(struct timespec *ts, long long by) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + by;
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000L;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts, offset_ns());
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv != NULL) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}

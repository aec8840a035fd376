/* metrics_watch.c: times a running im-task binary through its /metrics, for
 * bench/runtime_bench.sh.
 *
 *   metrics_watch --addr 127.0.0.1:PORT --target N [--pid PID]
 *                 [--interval-ms 10] [--timeout SECONDS]
 *
 * Scrapes /metrics every interval (one plain HTTP/1.0 GET on a fresh loopback
 * connection: no process per sample, so sampling every 10 ms costs little)
 * and sums imtask_tasks_consumed_total and imtask_tasks_succeeded_total over
 * their series. The clock starts at the first sample where consumed > 0
 * (succeeded then is S0) and stops at the first sample where succeeded >= N:
 * rate = (N - S0) / elapsed, which is exact up to one interval at the end.
 * With --pid it also reads the process's CPU time (utime + stime) over the
 * same window, and stops early when the process dies. Over the same window it
 * also reads the CPU seconds the whole machine was busy (/proc/stat) and,
 * with --broker-pid, the broker's: what is left is other load.
 *
 * Gives up when a task is dead-lettered (imtask_tasks_dead_lettered_total > 0:
 * no-op tasks never should be) or when succeeded has not moved for --stall
 * seconds (default 60).
 *
 * Prints progress once a second on stderr, then one line on stdout:
 *   RESULT msgs=M secs=S rate=R cpu=C paused_frac=P samples=K wait=W
 *          sys_busy=Y broker_cpu=Z
 * (paused_frac: share of samples where imtask_consumer_paused was 1).
 * --trace FILE writes every sample: seconds, consumed, succeeded,
 * imtask_consumer_in_flight, imtask_consumer_paused.
 * Exits 1 on timeout, stall, dead letters or when the process died first. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MW_BUF (1 << 20)

static double mw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mw_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GET /metrics into buf; returns the length or -1. */
static ssize_t mw_scrape(const struct sockaddr_in *sa, char *buf, size_t cap)
{
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n";
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == cap - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* Sum of the values of every series of metric `name` (exact name). */
static double mw_sum(const char *text, const char *name, bool *found)
{
    size_t nl = strlen(name);
    double sum = 0;
    *found = false;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || (p[nl] != '{' && p[nl] != ' '))
            continue;
        const char *sp = p + nl;
        if (*sp == '{') {
            sp = strchr(sp, '}');
            if (!sp)
                continue;
            sp++;
        }
        sum += strtod(sp, NULL);
        *found = true;
    }
    return sum;
}

/* utime + stime of pid in seconds, -1 when gone. */
static double mw_cpu(int pid)
{
    char path[64], buf[2048];
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds all CPUs spent busy (not idle or iowait) since boot. */
static double mw_sys_busy(void)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 4)
        return 0;
    /* user nice system idle iowait irq softirq steal (guest is in user) */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"target", required_argument, NULL, 'n'},
        {"pid", required_argument, NULL, 'p'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 'w'},
        {"stall", required_argument, NULL, 's'},
        {"trace", required_argument, NULL, 'T'},
        {"broker-pid", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    const char *addr = NULL, *trace_path = NULL;
    FILE *trace = NULL;
    long long target = 0;
    int pid = 0, broker_pid = 0, interval = 10, opt;
    double timeout = 600, stall = 60;
    struct sockaddr_in sa;

    while ((opt = getopt_long(argc, argv, "a:n:p:i:w:s:T:B:", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'n':
            target = strtoll(optarg, NULL, 10);
            break;
        case 'p':
            pid = atoi(optarg);
            break;
        case 'i':
            interval = atoi(optarg);
            break;
        case 'w':
            timeout = strtod(optarg, NULL);
            break;
        case 's':
            stall = strtod(optarg, NULL);
            break;
        case 'T':
            trace_path = optarg;
            break;
        case 'B':
            broker_pid = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: metrics_watch --addr HOST:PORT --target N [--pid PID] "
                            "[--interval-ms MS] [--timeout SECONDS] [--stall SECONDS] "
                            "[--trace FILE] [--broker-pid PID]\n");
            return 2;
        }
    }
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || target < 1 || interval < 1) {
        fprintf(stderr, "metrics_watch: --addr HOST:PORT and --target N >= 1 are needed\n");
        return 2;
    }
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "metrics_watch: %s is not an IPv4 address\n", host);
        return 2;
    }

    char *buf = malloc(MW_BUF);
    if (!buf)
        return 1;
    if (trace_path) {
        trace = fopen(trace_path, "w");
        if (!trace) {
            perror(trace_path);
            return 2;
        }
        fprintf(trace, "# secs consumed succeeded consumer_in_flight paused\n");
    }
    double t_start = mw_now(), t_first = 0, t_done = 0, t_progress = t_start;
    double cpu_first = 0, cpu_done = 0, s_first = 0, succeeded = 0, consumed = 0;
    double sys_first = 0, sys_done = 0, broker_first = 0, broker_done = 0;
    double last_progress_count = 0, dead = 0, t_moved = t_start, last_succeeded = -1;
    long samples = 0, paused_samples = 0;
    bool died = false, stalled = false;
    for (;;) {
        double now = mw_now();
        if (now - t_start > timeout)
            break;
        if (pid > 0 && kill(pid, 0) != 0) {
            died = true;
            break;
        }
        if (mw_scrape(&sa, buf, MW_BUF) > 0) {
            bool f1, f2, f3, f4;
            double t = mw_now();
            consumed = mw_sum(buf, "imtask_tasks_consumed_total", &f1);
            succeeded = mw_sum(buf, "imtask_tasks_succeeded_total", &f2);
            double paused = mw_sum(buf, "imtask_consumer_paused", &f3);
            dead = mw_sum(buf, "imtask_tasks_dead_lettered_total", &f4);
            if (trace) {
                bool f5;
                fprintf(trace, "%.3f %.0f %.0f %.0f %.0f\n", t - t_start, consumed, succeeded,
                        mw_sum(buf, "imtask_consumer_in_flight", &f5), paused);
            }
            if (dead > 0) /* a benchmark of no-op tasks must not dead-letter any */
                break;
            if (succeeded != last_succeeded) {
                last_succeeded = succeeded;
                t_moved = t;
            } else if (t - t_moved > stall) {
                stalled = true;
                break;
            }
            if (f1 && f2) {
                if (t_first == 0 && consumed > 0) {
                    t_first = t;
                    s_first = succeeded;
                    cpu_first = pid > 0 ? mw_cpu(pid) : 0;
                    sys_first = mw_sys_busy();
                    broker_first = broker_pid > 0 ? mw_cpu(broker_pid) : 0;
                }
                if (t_first > 0) {
                    samples++;
                    paused_samples += f3 && paused > 0;
                }
                if (succeeded >= (double)target) {
                    t_done = t;
                    cpu_done = pid > 0 ? mw_cpu(pid) : 0;
                    sys_done = mw_sys_busy();
                    broker_done = broker_pid > 0 ? mw_cpu(broker_pid) : 0;
                    break;
                }
                if (t - t_progress >= 1.0) {
                    fprintf(stderr,
                            "metrics_watch: %.1f s: consumed %.0f succeeded %.0f (%.0f/s)\n",
                            t - t_start, consumed, succeeded,
                            (succeeded - last_progress_count) / (t - t_progress));
                    t_progress = t;
                    last_progress_count = succeeded;
                }
            }
        }
        mw_sleep_ms(interval);
    }
    free(buf);
    if (trace)
        fclose(trace);
    if (t_done == 0) {
        fprintf(stderr, "metrics_watch: %s with %.0f of %lld succeeded (%.0f consumed)\n",
                died      ? "the process exited"
                : dead    ? "tasks were dead-lettered (see the process's log)"
                : stalled ? "no progress for --stall seconds"
                          : "timed out",
                succeeded, target, consumed);
        return 1;
    }
    double secs = t_done - t_first;
    double msgs = (double)target - s_first;
    printf("RESULT msgs=%.0f secs=%.3f rate=%.0f cpu=%.2f paused_frac=%.2f samples=%ld "
           "wait=%.3f sys_busy=%.2f broker_cpu=%.2f\n",
           msgs, secs, secs > 0 ? msgs / secs : 0, cpu_done - cpu_first,
           samples ? (double)paused_samples / (double)samples : 0, samples, t_first - t_start,
           sys_done - sys_first, broker_done - broker_first);
    return 0;
}

/* archive_bench.c: end-to-end throughput and peak memory of the archive job
 * (archive_run: list from the im-repo double, NDJSON + zstd, put, read back
 * and verify, manifest, delete, checkpoint) for N messages older than the
 * cutoff, plus 1000 newer ones it must leave. --list-only times the double's
 * ListMessagesBefore alone (all pages, no archiving), to tell whether the
 * double is the limit. Prints figures; asserts none. bench/archive/run.sh
 * runs it; docs/archive.md has the figures. */
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "repoclient/repoclient.h"
#include "tasks/archive/archive_run.h"
#include "tasks/archive/storage.h"

#define EPOCH_MS 1735689600000LL
#define STEP_MS 60000LL

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static int admin_post(const char *admin, const char *path)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", admin, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || st != 200) {
        fprintf(stderr, "archive_bench: POST %s: %s %ld\n", url, curl_easy_strerror(rc), st);
        return -1;
    }
    return 0;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv)
{
    const char *addr = getenv("IMTASK_IMREPO_ADDR"), *admin = getenv("IMTASK_IMREPO_ADMIN");
    const char *dir = NULL;
    int64_t n = 100000, page = 10000, seg = 100000, del = 10000;
    int list_only = 0, level = 3;
    static const struct option opts[] = {
        {"messages", required_argument, NULL, 'n'},     {"store", required_argument, NULL, 's'},
        {"page", required_argument, NULL, 'p'},         {"segment", required_argument, NULL, 'g'},
        {"delete-batch", required_argument, NULL, 'd'}, {"level", required_argument, NULL, 'l'},
        {"list-only", no_argument, NULL, 'L'},          {NULL, 0, NULL, 0},
    };
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'n':
            n = strtoll(optarg, NULL, 10);
            break;
        case 's':
            dir = optarg;
            break;
        case 'p':
            page = strtoll(optarg, NULL, 10);
            break;
        case 'g':
            seg = strtoll(optarg, NULL, 10);
            break;
        case 'd':
            del = strtoll(optarg, NULL, 10);
            break;
        case 'l':
            level = atoi(optarg);
            break;
        case 'L':
            list_only = 1;
            break;
        default:
            fprintf(stderr, "usage: archive_bench --store DIR [--messages N] [--page N] "
                            "[--segment N] [--delete-batch N] [--level L] [--list-only]\n");
            return 2;
        }
    }
    if (!addr || !admin || !dir || n < 1 || n > 1000000) {
        fprintf(stderr, "archive_bench: needs IMTASK_IMREPO_ADDR, IMTASK_IMREPO_ADMIN, --store "
                        "DIR and 1 <= --messages <= 1000000 (the double keeps 1M deletions)\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char path[128], err[1024];
    snprintf(path, sizeof(path), "/messages?count=%" PRId64 "&reset=1", n + 1000);
    if (admin_post(admin, path) || admin_post(admin, "/faults/reset"))
        return 1;
    repo_conf_t *conf = repo_conf_new();
    repo_conf_set(conf, "endpoints", addr, err, sizeof(err));
    repo_conf_set(conf, "default_timeout", "60s", err, sizeof(err));
    repo_conf_set(conf, "max_recv_msg_bytes", "16777216", err, sizeof(err));
    repo_client_t *repo = NULL;
    if (repo_client_new(&repo, conf, err, sizeof(err))) {
        fprintf(stderr, "archive_bench: %s\n", err);
        return 1;
    }
    int64_t cutoff = EPOCH_MS + n * STEP_MS;
    int rc = 0;
    if (list_only) {
        double t0 = now_s();
        int64_t got = 0;
        char cursor[2048] = "";
        for (;;) {
            ImRepo__V1__ListMessagesBeforeRequest req =
                IM_REPO__V1__LIST_MESSAGES_BEFORE_REQUEST__INIT;
            req.before = cutoff;
            req.cursor = cursor;
            req.limit = (int32_t)page;
            ImRepo__V1__ListMessagesBeforeResponse *resp = NULL;
            repo_status_t st;
            if (repo_list_messages_before(repo, &req, NULL, &resp, &st) != REPO_ERR_OK) {
                fprintf(stderr, "archive_bench: list: %s\n", st.message);
                rc = 1;
                break;
            }
            got += (int64_t)resp->n_messages;
            int more = resp->has_more;
            snprintf(cursor, sizeof(cursor), "%s", resp->next_cursor);
            repo_response_free(&resp->base);
            if (!more)
                break;
        }
        double dt = now_s() - t0;
        printf("list-only: %" PRId64 " messages listed in %.2f s = %.0f msg/s (the double's "
               "ListMessagesBefore, pages of %" PRId64 ")\n",
               got, dt, (double)got / dt, page);
    } else {
        store_t *s = store_open_local(dir, err, sizeof(err));
        if (!s) {
            fprintf(stderr, "archive_bench: %s\n", err);
            return 1;
        }
        archive_limits_t lim;
        archive_limits_default(&lim);
        lim.page_size = page;
        lim.segment_max_messages = seg;
        lim.delete_batch = del;
        lim.zstd_level = level;
        lim.call_timeout_ms = 60000;
        archive_env_t env = {.store = s, .repo = repo};
        archive_counts_t c;
        char run[64];
        snprintf(run, sizeof(run), "bench@%" PRId64, cutoff);
        double t0 = now_s();
        archive_rc_t arc = archive_run(&env, &lim, "bench", run, cutoff, &c, err, sizeof(err));
        double dt = now_s() - t0;
        if (arc != ARCHIVE_OK) {
            fprintf(stderr, "archive_bench: run: %s\n", err);
            rc = 1;
        } else if (c.messages != (uint64_t)n || c.deleted != (uint64_t)n) {
            fprintf(stderr,
                    "archive_bench: archived %" PRIu64 " and deleted %" PRIu64 ", expected %" PRId64
                    "\n",
                    c.messages, c.deleted, n);
            rc = 1;
        }
        printf("archive: %" PRIu64 " messages in %.2f s = %.0f msg/s end to end; %" PRIu64
               " segments, %" PRIu64 " pages, NDJSON %.1f MiB -> zstd %.1f MiB (level %d); "
               "peak RSS %.1f MiB\n",
               c.messages, dt, (double)c.messages / dt, c.segments, c.pages,
               (double)c.ndjson_bytes / 1048576.0, (double)c.zst_bytes / 1048576.0, level,
               (double)peak_rss_kib() / 1024.0);
        store_close(s);
    }
    repo_client_destroy(&repo);
    admin_post(admin, "/messages?count=100000&reset=1");
    curl_global_cleanup();
    return rc;
}

/* storage_local.c: the local-directory backend of storage.h. A put writes a
 * temporary file beside the target (".<name>.tmp.<pid>.<n>"), fsyncs it,
 * renames it over the target and fsyncs the directory, so after a crash the
 * key holds either the old object or the new one, never a part. A put of a
 * new key only (store_put_new) links the temporary file to the target
 * instead, which fails when the target exists. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "storage_internal.h"

#define LOCAL_LIST_MAX 10000000 /* keys one listing may return */
/* a path: the directory (< PATH_MAX) + "/" + a key or a temporary name */
#define LOCAL_PATH_MAX (PATH_MAX + STORE_KEY_MAX + 128)

typedef struct {
    char dir[PATH_MAX];
} local_t;

static atomic_uint tmp_seq;

static int fsync_dir(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "storage: open directory %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc) {
        snprintf(err, errlen, "storage: fsync directory %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

/* mkdir -p of path (absolute or relative), fsyncing the parent of each
 * directory it creates so the new entry survives a crash. */
static int mkdirs(const char *path, char *err, size_t errlen)
{
    char buf[LOCAL_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(buf)) {
        snprintf(err, errlen, "storage: path too long: %.100s", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) == 0) {
            char parent[LOCAL_PATH_MAX];
            memcpy(parent, buf, i + 1);
            char *slash = strrchr(parent, '/');
            if (slash == parent)
                parent[1] = '\0';
            else if (slash)
                *slash = '\0';
            else
                snprintf(parent, sizeof(parent), ".");
            if (fsync_dir(parent, err, errlen))
                return -1;
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "storage: mkdir %s: %s", buf, strerror(errno));
            return -1;
        } else {
            struct stat st;
            if (stat(buf, &st) || !S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "storage: %s exists and is not a directory", buf);
                return -1;
            }
        }
        buf[i] = saved;
    }
    return 0;
}

void *store_local_open(const store_config_t *c, char *desc, size_t desclen, char *err,
                       size_t errlen)
{
    local_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = strlen(c->dir);
    while (n > 1 && c->dir[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof(l->dir) - STORE_KEY_MAX - 64) {
        snprintf(err, errlen, "storage.dir: expected a directory path, got \"%.200s\"", c->dir);
        free(l);
        return NULL;
    }
    memcpy(l->dir, c->dir, n);
    l->dir[n] = '\0';
    if (mkdirs(l->dir, err, errlen)) {
        free(l);
        return NULL;
    }
    snprintf(desc, desclen, "local:%s", l->dir);
    return l;
}

static void local_path(const local_t *l, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", l->dir, key);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int local_put(void *b, const char *key, const void *data, size_t len,
                     const char *content_type, int only_new, char *err, size_t errlen)
{
    (void)content_type;
    local_t *l = b;
    char path[LOCAL_PATH_MAX], dir[LOCAL_PATH_MAX], tmp[LOCAL_PATH_MAX + 64];
    local_path(l, key, path, sizeof(path));
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    if (mkdirs(dir, err, errlen))
        return -1;
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%u", dir, slash + 1, (long)getpid(),
             atomic_fetch_add(&tmp_seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "storage: create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write_all(fd, data, len) || fsync(fd)) {
        snprintf(err, errlen, "storage: write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd)) {
        snprintf(err, errlen, "storage: close %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (only_new) {
        /* link(2) fails with EEXIST instead of replacing: create-if-absent */
        int rc = link(tmp, path);
        int e = errno;
        unlink(tmp);
        if (rc && e == EEXIST)
            return 1;
        if (rc) {
            snprintf(err, errlen, "storage: link %s to %s: %s", tmp, path, strerror(e));
            return -1;
        }
    } else if (rename(tmp, path)) {
        snprintf(err, errlen, "storage: rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return fsync_dir(dir, err, errlen);
}

static int local_get(void *b, const char *key, size_t max, void **data, size_t *len, char *err,
                     size_t errlen)
{
    local_t *l = b;
    char path[LOCAL_PATH_MAX];
    local_path(l, key, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 1;
        snprintf(err, errlen, "storage: open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "storage: %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > max) {
        snprintf(err, errlen, "storage: %s is %lld bytes, more than the %zu allowed", path,
                 (long long)st.st_size, max);
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory reading %s", path);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "storage: read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

typedef struct {
    char *key;
    uint64_t size;
} entry_t;

typedef struct {
    entry_t *v;
    size_t n, cap;
} entries_t;

static int entries_add(entries_t *e, const char *key, uint64_t size)
{
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 64;
        if (nc > LOCAL_LIST_MAX)
            return -1;
        entry_t *nv = realloc(e->v, nc * sizeof(*nv));
        if (!nv)
            return -1;
        e->v = nv;
        e->cap = nc;
    }
    e->v[e->n].key = strdup(key);
    if (!e->v[e->n].key)
        return -1;
    e->v[e->n].size = size;
    e->n++;
    return 0;
}

/* Walks dir (whose key prefix is rel, "" or "a/b/") collecting regular files
 * whose keys start with prefix. */
static int walk(const local_t *l, const char *rel, const char *prefix, entries_t *out, int depth,
                char *err, size_t errlen)
{
    char path[LOCAL_PATH_MAX];
    if (depth > 32)
        return 0;
    snprintf(path, sizeof(path), "%s/%s", l->dir, rel);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "storage: open directory %s: %s", path, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    size_t plen = strlen(prefix), rlen = strlen(rel);
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue; /* ".", "..", temporary files */
        char key[STORE_KEY_MAX + 2];
        if (rlen + strlen(de->d_name) + 1 >= sizeof(key))
            continue;
        snprintf(key, sizeof(key), "%s%s", rel, de->d_name);
        size_t klen = strlen(key);
        /* Prune: the key must agree with prefix on their common length. */
        size_t cmp = klen < plen ? klen : plen;
        if (strncmp(key, prefix, cmp))
            continue;
        char full[LOCAL_PATH_MAX];
        snprintf(full, sizeof(full), "%s/%s", l->dir, key);
        struct stat st;
        if (lstat(full, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            char sub[STORE_KEY_MAX + 4];
            snprintf(sub, sizeof(sub), "%s/", key);
            rc = walk(l, sub, prefix, out, depth + 1, err, errlen);
        } else if (S_ISREG(st.st_mode) && klen >= plen && store_key_ok(key)) {
            if (entries_add(out, key, (uint64_t)st.st_size)) {
                snprintf(err, errlen, "storage: listing %s: out of memory or over %d keys", prefix,
                         LOCAL_LIST_MAX);
                rc = -1;
            }
        }
    }
    closedir(d);
    return rc;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const entry_t *)a)->key, ((const entry_t *)b)->key);
}

static int local_list(void *b, const char *prefix,
                      int (*each)(void *opaque, const char *key, uint64_t size), void *opaque,
                      char *err, size_t errlen)
{
    local_t *l = b;
    entries_t e = {0};
    /* Start at the deepest directory the prefix names. */
    char rel[STORE_KEY_MAX + 2] = "";
    const char *slash = strrchr(prefix, '/');
    if (slash) {
        size_t n = (size_t)(slash - prefix) + 1;
        memcpy(rel, prefix, n);
        rel[n] = '\0';
    }
    int rc = walk(l, rel, prefix, &e, 0, err, errlen);
    if (rc == 0) {
        if (e.n > 1)
            qsort(e.v, e.n, sizeof(*e.v), entry_cmp);
        for (size_t i = 0; i < e.n; i++) {
            if (each(opaque, e.v[i].key, e.v[i].size))
                break;
        }
    }
    for (size_t i = 0; i < e.n; i++)
        free(e.v[i].key);
    free(e.v);
    return rc;
}

static int local_del(void *b, const char *key, char *err, size_t errlen)
{
    local_t *l = b;
    char path[LOCAL_PATH_MAX];
    local_path(l, key, path, sizeof(path));
    if (unlink(path)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "storage: remove %s: %s", path, strerror(errno));
        return -1;
    }
    char *slash = strrchr(path, '/');
    *slash = '\0';
    return fsync_dir(path, err, errlen);
}

static void local_close(void *b)
{
    free(b);
}

const store_backend_ops_t store_local_ops = {
    .put = local_put,
    .get = local_get,
    .list = local_list,
    .del = local_del,
    .close = local_close,
};

/* config.c: YAML config loading (libyaml document API), typed binding with
 * environment overrides, unknown-key detection and a redacted dump. */
#include "infra/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "infra/log.h"

extern char **environ;

#define CFG_ORIGIN_MAX 160
#define CFG_NAME_MAX 128

/* One effective value, kept for cfg_dump. */
typedef struct {
    char *section;
    char *key;
    char *text; /* NULL for an unset optional value */
    char origin[CFG_ORIGIN_MAX];
    bool secret;
    bool quoted; /* print text as a YAML string (else as it is: numbers, lists) */
} cfg_entry_t;

struct cfg_s {
    char *path;
    bool have_doc;
    yaml_document_t doc;
    bool *used; /* per node of doc: a key node that some bind consumed */
    size_t nnodes;
    cfg_entry_t *entries;
    size_t nentries, centries;
    void **owned; /* strings and arrays handed out to bound structs */
    size_t nowned, cowned;
    char **bound_sections; /* sections bound so far, for cfg_finish */
    size_t nbound, cbound;
};

static void cfg_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Remember p so cfg_destroy frees it; frees p and returns NULL on failure. */
static void *cfg_own(cfg_t *cfg, void *p)
{
    if (!p)
        return NULL;
    if (cfg->nowned == cfg->cowned) {
        size_t ncap = cfg->cowned ? cfg->cowned * 2 : 32;
        void **n = realloc(cfg->owned, ncap * sizeof(*n));
        if (!n) {
            free(p);
            return NULL;
        }
        cfg->owned = n;
        cfg->cowned = ncap;
    }
    cfg->owned[cfg->nowned++] = p;
    return p;
}

static char *cfg_strdup(cfg_t *cfg, const char *s)
{
    return cfg_own(cfg, strdup(s));
}

static const char *cfg_display_path(const cfg_t *cfg)
{
    return cfg->path ? cfg->path : "<no file>";
}

/* ---- loading ---------------------------------------------------------- */

static cfg_t *cfg_new_empty(const char *name)
{
    cfg_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    if (name) {
        cfg->path = strdup(name);
        if (!cfg->path) {
            free(cfg);
            return NULL;
        }
    }
    return cfg;
}

static cfg_t *cfg_parse(cfg_t *cfg, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_node_t *root;

    if (!yaml_parser_initialize(&parser)) {
        cfg_seterr(err, errlen, "%s: out of memory starting the YAML parser",
                   cfg_display_path(cfg));
        goto fail;
    }
    yaml_parser_set_input_string(&parser, buf, len);
    if (!yaml_parser_load(&parser, &cfg->doc)) {
        cfg_seterr(err, errlen, "%s:%zu:%zu: invalid YAML: %s%s%s", cfg_display_path(cfg),
                   parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                   parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        goto fail;
    }
    yaml_parser_delete(&parser);
    cfg->have_doc = true;
    cfg->nnodes = (size_t)(cfg->doc.nodes.top - cfg->doc.nodes.start);
    cfg->used = calloc(cfg->nnodes ? cfg->nnodes : 1, sizeof(bool));
    if (!cfg->used) {
        cfg_seterr(err, errlen, "%s: out of memory", cfg_display_path(cfg));
        goto fail;
    }
    root = yaml_document_get_root_node(&cfg->doc);
    if (root && !(root->type == YAML_MAPPING_NODE ||
                  (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))) {
        cfg_seterr(err, errlen, "%s:%zu: expected a mapping of sections at the top level",
                   cfg_display_path(cfg), root->start_mark.line + 1);
        goto fail;
    }
    return cfg;
fail:
    cfg_destroy(cfg);
    return NULL;
}

cfg_t *cfg_load_string(const char *yaml, const char *name, char *err, size_t errlen)
{
    cfg_t *cfg = cfg_new_empty(name ? name : "<string>");
    if (!cfg) {
        cfg_seterr(err, errlen, "out of memory");
        return NULL;
    }
    return cfg_parse(cfg, (const unsigned char *)yaml, strlen(yaml), err, errlen);
}

cfg_t *cfg_load(const char *path, char *err, size_t errlen)
{
    cfg_t *cfg;
    FILE *f;
    unsigned char *buf = NULL;
    size_t len = 0;

    if (!path) {
        cfg = cfg_new_empty(NULL);
        if (!cfg)
            cfg_seterr(err, errlen, "out of memory");
        return cfg;
    }
    f = fopen(path, "rb");
    if (!f) {
        cfg_seterr(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(CFG_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        cfg_seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    len = fread(buf, 1, CFG_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        cfg_seterr(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
        goto fail;
    }
    if (len > CFG_MAX_FILE_BYTES) {
        cfg_seterr(err, errlen, "%s: config file larger than %d bytes", path, CFG_MAX_FILE_BYTES);
        goto fail;
    }
    fclose(f);
    f = NULL;
    cfg = cfg_new_empty(path);
    if (!cfg) {
        cfg_seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    cfg = cfg_parse(cfg, buf, len, err, errlen);
    free(buf);
    return cfg;
fail:
    if (f)
        fclose(f);
    free(buf);
    return NULL;
}

void cfg_destroy(cfg_t *cfg)
{
    if (!cfg)
        return;
    if (cfg->have_doc)
        yaml_document_delete(&cfg->doc);
    free(cfg->used);
    for (size_t i = 0; i < cfg->nentries; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].text);
    }
    free(cfg->entries);
    for (size_t i = 0; i < cfg->nowned; i++)
        free(cfg->owned[i]);
    free(cfg->owned);
    for (size_t i = 0; i < cfg->nbound; i++)
        free(cfg->bound_sections[i]);
    free(cfg->bound_sections);
    free(cfg->path);
    free(cfg);
}

const char *cfg_path(const cfg_t *cfg)
{
    return cfg->path ? cfg->path : "";
}

/* ---- document access -------------------------------------------------- */

static yaml_node_t *cfg_node(const cfg_t *cfg, int id)
{
    return yaml_document_get_node((yaml_document_t *)&cfg->doc, id);
}

static size_t cfg_node_index(const cfg_t *cfg, const yaml_node_t *n)
{
    return (size_t)(n - cfg->doc.nodes.start);
}

static const char *cfg_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static size_t cfg_line(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* The mapping of top-level key `section` ("" = the root), or NULL. Sets
 * *keynode to the key node that names it. */
static yaml_node_t *cfg_section_node(const cfg_t *cfg, const char *section, yaml_node_t **keynode)
{
    yaml_node_t *root;
    if (!cfg->have_doc)
        return NULL;
    root = yaml_document_get_root_node((yaml_document_t *)&cfg->doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return NULL;
    if (section[0] == '\0') {
        if (keynode)
            *keynode = NULL;
        return root;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = cfg_node(cfg, p->key);
        const char *ks = cfg_scalar(k);
        if (ks && strcmp(ks, section) == 0) {
            if (keynode)
                *keynode = k;
            return cfg_node(cfg, p->value);
        }
    }
    return NULL;
}

bool cfg_has_section(const cfg_t *cfg, const char *section)
{
    return cfg_section_node(cfg, section, NULL) != NULL;
}

/* ---- values ----------------------------------------------------------- */

int cfg_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}};
    char *end;
    double v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            double ms = v * units[i].ms;
            if (ms > 9.0e15)
                return -1;
            *out_ms = (int64_t)llround(ms);
            return 0;
        }
    }
    return -1;
}

static int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool cfg_in_range(const cfg_field_t *f, double v)
{
    if (f->min == 0 && f->max == 0)
        return true;
    return v >= f->min && v <= f->max;
}

/* "expected ..." text for field f. */
static void cfg_expected(const cfg_field_t *f, char *buf, size_t len)
{
    bool ranged = !(f->min == 0 && f->max == 0);
    switch (f->type) {
    case CFG_STRING:
        snprintf(buf, len, "a non-empty string");
        break;
    case CFG_INT:
        if (ranged)
            snprintf(buf, len, "an integer in [%.0f, %.0f]", f->min, f->max);
        else
            snprintf(buf, len, "an integer");
        break;
    case CFG_DOUBLE:
        if (ranged)
            snprintf(buf, len, "a number in [%g, %g]", f->min, f->max);
        else
            snprintf(buf, len, "a number");
        break;
    case CFG_BOOL:
        snprintf(buf, len, "true or false");
        break;
    case CFG_DURATION:
        if (ranged)
            snprintf(buf, len, "a duration like 500ms, 5s, 2m in [%.0fms, %.0fms]", f->min, f->max);
        else
            snprintf(buf, len, "a duration like 500ms, 5s, 2m");
        break;
    case CFG_ENUM: {
        size_t n = (size_t)snprintf(buf, len, "one of");
        for (size_t i = 0; f->choices && f->choices[i] && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "%s %s", i ? "," : "", f->choices[i]);
        break;
    }
    case CFG_LIST:
        snprintf(buf, len, "a list of strings (at most %d)", CFG_MAX_LIST);
        break;
    }
}

/* Parse text into the field's slot. Returns 0, or -1 when text does not fit. */
static int cfg_store_scalar(cfg_t *cfg, const cfg_field_t *f, const char *text, void *out)
{
    char *slot = (char *)out + f->offset;
    char *end;
    switch (f->type) {
    case CFG_STRING: {
        char *s;
        if (!*text)
            return -1;
        s = cfg_strdup(cfg, text);
        if (!s)
            return -1;
        memcpy(slot, &s, sizeof(s));
        return 0;
    }
    case CFG_INT: {
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (end == text || *end || errno || !cfg_in_range(f, (double)v))
            return -1;
        int64_t iv = v;
        memcpy(slot, &iv, sizeof(iv));
        return 0;
    }
    case CFG_DOUBLE: {
        double v;
        errno = 0;
        v = strtod(text, &end);
        if (end == text || *end || errno || !isfinite(v) || !cfg_in_range(f, v))
            return -1;
        memcpy(slot, &v, sizeof(v));
        return 0;
    }
    case CFG_BOOL: {
        bool v;
        if (cfg_parse_bool(text, &v))
            return -1;
        memcpy(slot, &v, sizeof(v));
        return 0;
    }
    case CFG_DURATION: {
        int64_t ms;
        if (cfg_parse_duration_ms(text, &ms) || !cfg_in_range(f, (double)ms))
            return -1;
        memcpy(slot, &ms, sizeof(ms));
        return 0;
    }
    case CFG_ENUM:
        for (int i = 0; f->choices && f->choices[i]; i++) {
            if (strcasecmp(text, f->choices[i]) == 0) {
                memcpy(slot, &i, sizeof(i));
                return 0;
            }
        }
        return -1;
    case CFG_LIST: {
        /* comma-separated: the environment form and a scalar in the file */
        const char **items;
        size_t n = 0;
        char *copy = cfg_strdup(cfg, text);
        cfg_list_t l;
        if (!copy)
            return -1;
        items = cfg_own(cfg, calloc(CFG_MAX_LIST, sizeof(*items)));
        if (!items)
            return -1;
        for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*tok))
                tok++;
            for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]); e--)
                e[-1] = '\0';
            if (!*tok)
                continue;
            if (n == CFG_MAX_LIST)
                return -1;
            items[n++] = tok;
        }
        l.items = items;
        l.count = n;
        memcpy(slot, &l, sizeof(l));
        return 0;
    }
    }
    return -1;
}

/* A YAML sequence of scalars into a CFG_LIST slot; -1 with *bad set to the
 * offending node when an item is not a scalar or there are too many. */
static int cfg_store_seq(cfg_t *cfg, const cfg_field_t *f, yaml_node_t *seq, void *out,
                         yaml_node_t **bad)
{
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    const char **items;
    cfg_list_t l;
    if (n > CFG_MAX_LIST) {
        *bad = seq;
        return -1;
    }
    items = cfg_own(cfg, calloc(n ? n : 1, sizeof(*items)));
    if (!items)
        return -1;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = cfg_node(cfg, seq->data.sequence.items.start[i]);
        const char *s = cfg_scalar(it);
        if (!s) {
            *bad = it;
            return -1;
        }
        items[i] = s; /* lives in the document, freed by cfg_destroy */
    }
    l.items = items;
    l.count = n;
    memcpy((char *)out + f->offset, &l, sizeof(l));
    return 0;
}

/* Canonical text of a bound value, for cfg_dump. */
static char *cfg_value_text(const cfg_field_t *f, const void *out, bool *quoted)
{
    const char *slot = (const char *)out + f->offset;
    char buf[256];
    *quoted = false;
    switch (f->type) {
    case CFG_STRING: {
        const char *s;
        memcpy(&s, slot, sizeof(s));
        *quoted = true;
        return s ? strdup(s) : NULL;
    }
    case CFG_INT: {
        int64_t v;
        memcpy(&v, slot, sizeof(v));
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        break;
    }
    case CFG_DOUBLE: {
        double v;
        memcpy(&v, slot, sizeof(v));
        snprintf(buf, sizeof(buf), "%g", v);
        break;
    }
    case CFG_BOOL: {
        bool v;
        memcpy(&v, slot, sizeof(v));
        snprintf(buf, sizeof(buf), "%s", v ? "true" : "false");
        break;
    }
    case CFG_DURATION: {
        int64_t v;
        memcpy(&v, slot, sizeof(v));
        snprintf(buf, sizeof(buf), "%lldms", (long long)v);
        break;
    }
    case CFG_ENUM: {
        int v;
        memcpy(&v, slot, sizeof(v));
        snprintf(buf, sizeof(buf), "%s", f->choices[v]);
        break;
    }
    case CFG_LIST: {
        cfg_list_t l;
        size_t total = 3;
        char *s;
        memcpy(&l, slot, sizeof(l));
        for (size_t i = 0; i < l.count; i++)
            total += strlen(l.items[i]) * 2 + 4;
        s = malloc(total);
        if (!s)
            return NULL;
        size_t n = 0;
        s[n++] = '[';
        for (size_t i = 0; i < l.count; i++) {
            if (i) {
                s[n++] = ',';
                s[n++] = ' ';
            }
            s[n++] = '"';
            n += log_json_escape(s + n, total - n - 2, l.items[i]);
            s[n++] = '"';
        }
        s[n++] = ']';
        s[n] = '\0';
        return s;
    }
    }
    return strdup(buf);
}

static int cfg_add_entry(cfg_t *cfg, const char *section, const char *key, char *text,
                         const char *origin, bool secret, bool quoted)
{
    cfg_entry_t *e;
    if (cfg->nentries == cfg->centries) {
        size_t ncap = cfg->centries ? cfg->centries * 2 : 32;
        cfg_entry_t *n = realloc(cfg->entries, ncap * sizeof(*n));
        if (!n)
            goto fail;
        cfg->entries = n;
        cfg->centries = ncap;
    }
    e = &cfg->entries[cfg->nentries];
    memset(e, 0, sizeof(*e));
    e->section = strdup(section);
    e->key = strdup(key);
    if (!e->section || !e->key) {
        free(e->section);
        free(e->key);
        goto fail;
    }
    e->text = text;
    snprintf(e->origin, sizeof(e->origin), "%s", origin);
    e->secret = secret;
    e->quoted = quoted;
    cfg->nentries++;
    return 0;
fail:
    free(text);
    return -1;
}

/* IMTASK_<SECTION>_<KEY>: upper case, '.' and '-' as '_'. */
static void cfg_env_name(const char *section, const char *key, char *buf, size_t len)
{
    size_t n =
        (size_t)snprintf(buf, len, "%s%s%s%s", CFG_ENV_PREFIX, section, section[0] ? "_" : "", key);
    for (size_t i = strlen(CFG_ENV_PREFIX); i < n && i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        buf[i] = (c == '.' || c == '-') ? '_' : (char)toupper(c);
    }
}

static const char *cfg_type_word(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : "a list";
}

static const cfg_field_t *cfg_find_field(const cfg_field_t *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(fields[i].key, key) == 0)
            return &fields[i];
    }
    return NULL;
}

static bool cfg_looks_secret(const char *key)
{
    return strcasestr(key, "password") || strcasestr(key, "secret") || strcasestr(key, "key");
}

/* Unknown keys of a passthrough section, from the file then the environment
 * (the environment wins on the same key). */
static int cfg_bind_passthrough(cfg_t *cfg, const char *section, yaml_node_t *map,
                                const cfg_field_t *fields, size_t nfields, cfg_kvs_t *pt, char *err,
                                size_t errlen)
{
    cfg_kv_t *kvs = cfg_own(cfg, calloc(CFG_MAX_PASSTHROUGH, sizeof(*kvs)));
    char envprefix[CFG_NAME_MAX];
    size_t n = 0, plen;

    if (!kvs) {
        cfg_seterr(err, errlen, "out of memory");
        return -1;
    }
    if (map) {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = cfg_node(cfg, p->key), *v = cfg_node(cfg, p->value);
            const char *ks = cfg_scalar(k);
            char origin[CFG_ORIGIN_MAX];
            if (cfg_find_field(fields, nfields, ks))
                continue;
            if (!cfg_scalar(v)) {
                cfg_seterr(err, errlen, "%s:%zu: %s.%s: expected a single value, got %s",
                           cfg_display_path(cfg), cfg_line(v), section, ks, cfg_type_word(v));
                return -1;
            }
            if (n == CFG_MAX_PASSTHROUGH) {
                cfg_seterr(err, errlen, "%s:%zu: %s: more than %d extra keys",
                           cfg_display_path(cfg), cfg_line(k), section, CFG_MAX_PASSTHROUGH);
                return -1;
            }
            snprintf(origin, sizeof(origin), "%s:%zu", cfg_display_path(cfg), cfg_line(k));
            kvs[n].key = ks;
            kvs[n].value = cfg_scalar(v);
            kvs[n].origin = cfg_strdup(cfg, origin);
            cfg->used[cfg_node_index(cfg, k)] = true;
            n++;
        }
    }
    cfg_env_name(section, "", envprefix, sizeof(envprefix));
    plen = strlen(envprefix);
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[CFG_NAME_MAX], fieldenv[CFG_NAME_MAX];
        size_t klen, i;
        bool known = false;
        if (!eq || strncmp(*e, envprefix, plen) != 0 || (size_t)(eq - *e) <= plen)
            continue;
        klen = (size_t)(eq - *e) - plen;
        if (klen >= sizeof(key))
            continue;
        for (i = 0; i < nfields && !known; i++) {
            cfg_env_name(section, fields[i].key, fieldenv, sizeof(fieldenv));
            known = strlen(fieldenv) == (size_t)(eq - *e) &&
                    strncmp(fieldenv, *e, (size_t)(eq - *e)) == 0;
        }
        if (known)
            continue;
        for (i = 0; i < klen; i++) {
            char c = (*e)[plen + i];
            key[i] = c == '_' ? '.' : (char)tolower((unsigned char)c);
        }
        key[klen] = '\0';
        for (i = 0; i < n && strcmp(kvs[i].key, key) != 0; i++)
            ;
        if (i == n) {
            if (n == CFG_MAX_PASSTHROUGH) {
                cfg_seterr(err, errlen, "environment: %s: more than %d extra keys", section,
                           CFG_MAX_PASSTHROUGH);
                return -1;
            }
            kvs[n].key = cfg_strdup(cfg, key);
            n++;
        }
        char origin[CFG_ORIGIN_MAX];
        snprintf(origin, sizeof(origin), "env %.*s", (int)(eq - *e), *e);
        kvs[i].value = eq + 1;
        kvs[i].origin = cfg_strdup(cfg, origin);
        if (!kvs[i].key || !kvs[i].origin) {
            cfg_seterr(err, errlen, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        bool secret = cfg_looks_secret(kvs[i].key);
        if (secret)
            log_add_secret(kvs[i].value);
        if (cfg_add_entry(cfg, section, kvs[i].key, strdup(kvs[i].value), kvs[i].origin, secret,
                          true)) {
            cfg_seterr(err, errlen, "out of memory");
            return -1;
        }
    }
    pt->items = kvs;
    pt->count = n;
    return 0;
}

static int cfg_note_bound(cfg_t *cfg, const char *section)
{
    if (cfg->nbound == cfg->cbound) {
        size_t ncap = cfg->cbound ? cfg->cbound * 2 : 8;
        char **n = realloc(cfg->bound_sections, ncap * sizeof(*n));
        if (!n)
            return -1;
        cfg->bound_sections = n;
        cfg->cbound = ncap;
    }
    cfg->bound_sections[cfg->nbound] = strdup(section);
    if (!cfg->bound_sections[cfg->nbound])
        return -1;
    cfg->nbound++;
    return 0;
}

int cfg_bind(cfg_t *cfg, const char *section, const cfg_field_t *fields, size_t nfields, void *out,
             cfg_kvs_t *passthrough, char *err, size_t errlen)
{
    yaml_node_t *seckey = NULL;
    yaml_node_t *map = cfg_section_node(cfg, section, &seckey);
    const char *dot = section[0] ? "." : "";

    if (map && map->type == YAML_SCALAR_NODE && map->data.scalar.length == 0)
        map = NULL; /* "section:" with nothing under it */
    if (map && map->type != YAML_MAPPING_NODE) {
        cfg_seterr(err, errlen, "%s:%zu: %s: expected a mapping of keys, got %s",
                   cfg_display_path(cfg), cfg_line(map), section,
                   map->type == YAML_SCALAR_NODE ? "a single value" : "a list");
        return -1;
    }
    if (seckey)
        cfg->used[cfg_node_index(cfg, seckey)] = true;
    if (cfg_note_bound(cfg, section)) {
        cfg_seterr(err, errlen, "out of memory");
        return -1;
    }

    /* duplicate keys are always a mistake */
    for (yaml_node_pair_t *p = map ? map->data.mapping.pairs.start : NULL;
         map && p < map->data.mapping.pairs.top; p++) {
        const char *ks = cfg_scalar(cfg_node(cfg, p->key));
        if (!ks) {
            cfg_seterr(err, errlen, "%s:%zu: %s: keys must be plain strings", cfg_display_path(cfg),
                       cfg_line(cfg_node(cfg, p->key)), section);
            return -1;
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            if (strcmp(cfg_scalar(cfg_node(cfg, q->key)), ks) == 0) {
                cfg_seterr(err, errlen, "%s:%zu: %s%s%s: duplicate key (first at line %zu)",
                           cfg_display_path(cfg), cfg_line(cfg_node(cfg, p->key)), section, dot, ks,
                           cfg_line(cfg_node(cfg, q->key)));
                return -1;
            }
        }
    }

    for (size_t i = 0; i < nfields; i++) {
        const cfg_field_t *f = &fields[i];
        char envname[CFG_NAME_MAX], expected[160], origin[CFG_ORIGIN_MAX];
        const char *envval, *text = NULL;
        yaml_node_t *keyn = NULL, *valn = NULL;
        bool have = false, quoted = false;

        for (yaml_node_pair_t *p = map ? map->data.mapping.pairs.start : NULL;
             map && p < map->data.mapping.pairs.top; p++) {
            yaml_node_t *k = cfg_node(cfg, p->key);
            if (strcmp(cfg_scalar(k), f->key) == 0) {
                keyn = k;
                valn = cfg_node(cfg, p->value);
                cfg->used[cfg_node_index(cfg, k)] = true;
                break;
            }
        }
        cfg_expected(f, expected, sizeof(expected));
        cfg_env_name(section, f->key, envname, sizeof(envname));
        envval = getenv(envname);
        if (envval) {
            snprintf(origin, sizeof(origin), "env %s", envname);
            if (cfg_store_scalar(cfg, f, envval, out)) {
                cfg_seterr(err, errlen, "environment %s: %s%s%s: expected %s, got \"%s\"", envname,
                           section, dot, f->key, expected,
                           (f->flags & CFG_SECRET) ? "[REDACTED]" : envval);
                return -1;
            }
            have = true;
        } else if (valn) {
            snprintf(origin, sizeof(origin), "%s:%zu", cfg_display_path(cfg), cfg_line(keyn));
            if (f->type == CFG_LIST && valn->type == YAML_SEQUENCE_NODE) {
                yaml_node_t *bad = NULL;
                if (cfg_store_seq(cfg, f, valn, out, &bad)) {
                    cfg_seterr(err, errlen, "%s:%zu: %s%s%s: expected %s", cfg_display_path(cfg),
                               cfg_line(bad ? bad : valn), section, dot, f->key, expected);
                    return -1;
                }
                have = true;
            } else if (valn->type != YAML_SCALAR_NODE) {
                cfg_seterr(err, errlen, "%s:%zu: %s%s%s: expected %s, got %s",
                           cfg_display_path(cfg), cfg_line(valn), section, dot, f->key, expected,
                           cfg_type_word(valn));
                return -1;
            } else {
                text = cfg_scalar(valn);
                /* an empty value ("key:" or key: "") means: not set */
                if (*text) {
                    if (cfg_store_scalar(cfg, f, text, out)) {
                        cfg_seterr(err, errlen, "%s:%zu: %s%s%s: expected %s, got \"%s\"",
                                   cfg_display_path(cfg), cfg_line(valn), section, dot, f->key,
                                   expected, (f->flags & CFG_SECRET) ? "[REDACTED]" : text);
                        return -1;
                    }
                    have = true;
                }
            }
        }
        if (!have && f->def) {
            snprintf(origin, sizeof(origin), "default");
            if (cfg_store_scalar(cfg, f, f->def, out)) {
                cfg_seterr(err, errlen, "%s%s%s: the built-in default \"%s\" is not %s", section,
                           dot, f->key, f->def, expected);
                return -1;
            }
            have = true;
        }
        if (!have && (f->flags & CFG_REQUIRED)) {
            if (map)
                cfg_seterr(err, errlen, "%s:%zu: %s%s%s: missing required key (%s; or set %s)",
                           cfg_display_path(cfg), cfg_line(map), section, dot, f->key, expected,
                           envname);
            else
                cfg_seterr(err, errlen, "%s: %s%s%s: missing required key (%s; or set %s)",
                           cfg_display_path(cfg), section, dot, f->key, expected, envname);
            return -1;
        }
        if (!have) {
            /* not set: the zero value of its type (NULL, 0, false, empty list) */
            static const char zero[sizeof(cfg_list_t)];
            size_t size = f->type == CFG_STRING   ? sizeof(char *)
                          : f->type == CFG_LIST   ? sizeof(cfg_list_t)
                          : f->type == CFG_BOOL   ? sizeof(bool)
                          : f->type == CFG_ENUM   ? sizeof(int)
                          : f->type == CFG_DOUBLE ? sizeof(double)
                                                  : sizeof(int64_t);
            memcpy((char *)out + f->offset, zero, size);
            snprintf(origin, sizeof(origin), "not set");
        }
        if (have && (f->flags & CFG_SECRET) && f->type == CFG_STRING) {
            const char *s;
            memcpy(&s, (char *)out + f->offset, sizeof(s));
            log_add_secret(s);
        }
        char *text_now = have ? cfg_value_text(f, out, &quoted) : NULL;
        if (cfg_add_entry(cfg, section, f->key, text_now, origin, (f->flags & CFG_SECRET) != 0,
                          quoted)) {
            cfg_seterr(err, errlen, "out of memory");
            return -1;
        }
    }
    if (passthrough)
        return cfg_bind_passthrough(cfg, section, map, fields, nfields, passthrough, err, errlen);
    return 0;
}

int cfg_finish(cfg_t *cfg, char *err, size_t errlen)
{
    yaml_node_t *root;
    if (!cfg->have_doc)
        return 0;
    root = yaml_document_get_root_node(&cfg->doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = cfg_node(cfg, p->key), *v = cfg_node(cfg, p->value);
        const char *ks = cfg_scalar(k);
        bool bound = false;
        for (size_t i = 0; ks && i < cfg->nbound; i++)
            bound = bound || strcmp(cfg->bound_sections[i], ks) == 0;
        if (!bound && !cfg->used[cfg_node_index(cfg, k)]) {
            size_t n = (size_t)snprintf(
                err, errlen, "%s:%zu: unknown section or key \"%s\" (known:", cfg_display_path(cfg),
                cfg_line(k), ks ? ks : "?");
            for (size_t i = 0; i < cfg->nbound && n < errlen; i++)
                n += (size_t)snprintf(err + n, errlen - n, " %s",
                                      cfg->bound_sections[i][0] ? cfg->bound_sections[i] : "");
            if (n < errlen)
                snprintf(err + n, errlen - n, ")");
            return -1;
        }
        if (!bound || v->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *kk = cfg_node(cfg, q->key);
            if (!cfg->used[cfg_node_index(cfg, kk)]) {
                size_t n = (size_t)snprintf(
                    err, errlen, "%s:%zu: %s.%s: unknown key (known:", cfg_display_path(cfg),
                    cfg_line(kk), ks, cfg_scalar(kk) ? cfg_scalar(kk) : "?");
                for (size_t i = 0; i < cfg->nentries && n < errlen; i++) {
                    if (strcmp(cfg->entries[i].section, ks) == 0)
                        n += (size_t)snprintf(err + n, errlen - n, " %s", cfg->entries[i].key);
                }
                if (n < errlen)
                    snprintf(err + n, errlen - n, ")");
                return -1;
            }
        }
    }
    return 0;
}

static void cfg_dump_string(FILE *out, const char *s)
{
    char buf[1024];
    fputc('"', out);
    while (*s) {
        /* escape in bounded chunks */
        char chunk[256];
        size_t n = strlen(s);
        if (n > sizeof(chunk) - 1)
            n = sizeof(chunk) - 1;
        memcpy(chunk, s, n);
        chunk[n] = '\0';
        log_json_escape(buf, sizeof(buf), chunk);
        fputs(buf, out);
        s += n;
    }
    fputc('"', out);
}

void cfg_dump(const cfg_t *cfg, FILE *out)
{
    const char *cur = NULL;
    fprintf(out, "# effective configuration (file: %s)\n", cfg->path ? cfg->path : "none");
    for (size_t i = 0; i < cfg->nentries; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        bool top = e->section[0] == '\0';
        if (!top && (!cur || strcmp(cur, e->section) != 0)) {
            fprintf(out, "%s:\n", e->section);
            cur = e->section;
        }
        fprintf(out, "%s%s: ", top ? "" : "  ", e->key);
        if (!e->text)
            fputs("~", out);
        else if (e->secret)
            fputs("\"[REDACTED]\"", out);
        else if (e->quoted)
            cfg_dump_string(out, e->text);
        else
            fputs(e->text, out);
        fprintf(out, "  # %s\n", e->origin);
    }
}

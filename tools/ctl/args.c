/* args.c: long-option parsing from tables, usage text, number and
 * PARTITION:OFFSET parsing for imtask-ctl. */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CTL_USAGE_COL 28 /* where option help starts */

int ctl_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The option called name (len bytes) in the sets, and its index over all sets. */
static const ctl_opt_t *ctl_args_find(const ctl_optset_t *sets, size_t nsets, const char *name,
                                      size_t len, size_t *index)
{
    size_t idx = 0;
    for (size_t s = 0; s < nsets; s++) {
        for (size_t i = 0; i < sets[s].count; i++, idx++) {
            const ctl_opt_t *o = &sets[s].opts[i];
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
                *index = idx;
                return o;
            }
        }
    }
    return NULL;
}

/* Store value (NULL for a flag) into o. */
static int ctl_args_store(const ctl_opt_t *o, const char *value, char *err, size_t errlen)
{
    switch (o->kind) {
    case CTL_OPT_FLAG:
        *(bool *)o->out = true;
        return 0;
    case CTL_OPT_STRING:
        *(const char **)o->out = value;
        return 0;
    case CTL_OPT_INT:
        if (ctl_parse_int(value, o->min, o->max, (int64_t *)o->out) != 0) {
            snprintf(err, errlen, "--%s: expected an integer in [%lld, %lld], got \"%s\"", o->name,
                     (long long)o->min, (long long)o->max, value);
            return -1;
        }
        return 0;
    case CTL_OPT_LIST: {
        ctl_list_t *l = o->out;
        if (l->count >= CTL_LIST_MAX) {
            snprintf(err, errlen, "--%s: given more than %d times", o->name, CTL_LIST_MAX);
            return -1;
        }
        l->items[l->count++] = value;
        return 0;
    }
    }
    snprintf(err, errlen, "--%s: bad option table", o->name);
    return -1;
}

int ctl_args_parse(int argc, char **argv, const ctl_optset_t *sets, size_t nsets, unsigned flags,
                   const char **pos, size_t maxpos, size_t *npos, int *consumed, char *err,
                   size_t errlen)
{
    bool seen[CTL_ARGS_MAX_OPTS] = {false};
    bool only_pos = false;
    size_t total = 0;
    int i;

    *npos = 0;
    for (size_t s = 0; s < nsets; s++)
        total += sets[s].count;
    if (total > CTL_ARGS_MAX_OPTS) {
        snprintf(err, errlen, "too many options in the tables (%zu, at most %d)", total,
                 CTL_ARGS_MAX_OPTS);
        return CTL_ARGS_ERROR;
    }
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *value = NULL;
        const ctl_opt_t *o;
        size_t idx = 0, len;

        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (flags & CTL_ARGS_STOP_AT_POSITIONAL)
                break;
            if (*npos >= maxpos) {
                snprintf(err, errlen, "unexpected argument \"%s\"", a);
                return CTL_ARGS_ERROR;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return CTL_ARGS_HELP;
        if (strcmp(a, "-v") == 0)
            a = "--verbose";
        if (a[1] != '-') {
            snprintf(err, errlen, "unknown option \"%s\" (options are long: --name)", a);
            return CTL_ARGS_ERROR;
        }
        name = a + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        o = ctl_args_find(sets, nsets, name, len, &idx);
        if (!o) {
            snprintf(err, errlen, "unknown option \"--%.*s\"", (int)len, name);
            return CTL_ARGS_ERROR;
        }
        if (seen[idx] && o->kind != CTL_OPT_LIST) {
            snprintf(err, errlen, "--%s given twice", o->name);
            return CTL_ARGS_ERROR;
        }
        seen[idx] = true;
        if (o->kind == CTL_OPT_FLAG) {
            if (eq) {
                snprintf(err, errlen, "--%s takes no value", o->name);
                return CTL_ARGS_ERROR;
            }
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s needs a value (%s)", o->name, o->arg ? o->arg : "VALUE");
            return CTL_ARGS_ERROR;
        }
        if (ctl_args_store(o, value, err, errlen) != 0)
            return CTL_ARGS_ERROR;
    }
    if (consumed)
        *consumed = i;
    return CTL_ARGS_OK;
}

void ctl_args_usage(FILE *out, const char *prog, const ctl_command_t *cmd, const ctl_optset_t *sets,
                    size_t nsets)
{
    fprintf(out, "usage: %s %s%s%s\n", prog, cmd->name, cmd->synopsis ? " " : "",
            cmd->synopsis ? cmd->synopsis : "");
    if (cmd->about)
        fprintf(out, "\n%s\n", cmd->about);
    for (size_t s = 0; s < nsets; s++) {
        if (sets[s].count == 0)
            continue;
        fprintf(out, "\n%s:\n", sets[s].title ? sets[s].title : "options");
        for (size_t i = 0; i < sets[s].count; i++) {
            const ctl_opt_t *o = &sets[s].opts[i];
            int n = fprintf(out, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
            if (n < 0)
                return;
            if (n >= CTL_USAGE_COL - 1)
                fprintf(out, "\n%*s", CTL_USAGE_COL, "");
            else
                fprintf(out, "%*s", CTL_USAGE_COL - n, "");
            fprintf(out, "%s%s\n", o->help ? o->help : "",
                    o->kind == CTL_OPT_LIST ? " (may be repeated)" : "");
        }
    }
}

int ctl_parse_partoff(const char *s, ctl_partoff_t *out)
{
    const char *colon = s ? strchr(s, ':') : NULL;
    char part[16];
    int64_t p, o;
    size_t plen;
    if (!colon)
        return -1;
    plen = (size_t)(colon - s);
    if (plen == 0 || plen >= sizeof(part))
        return -1;
    memcpy(part, s, plen);
    part[plen] = '\0';
    if (ctl_parse_int(part, 0, INT32_MAX, &p) != 0 || ctl_parse_int(colon + 1, 0, INT64_MAX, &o))
        return -1;
    out->partition = (int32_t)p;
    out->offset = o;
    return 0;
}

int ctl_parse_partoff_list(const char *s, ctl_partoff_t *out, size_t max, size_t *n, char *err,
                           size_t errlen)
{
    const char *p = s;
    *n = 0;
    if (!s || !*s) {
        snprintf(err, errlen, "expected PARTITION:OFFSET[,PARTITION:OFFSET...], got nothing");
        return -1;
    }
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        ctl_partoff_t po;
        bool dup = false;
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "expected PARTITION:OFFSET, got \"%.*s\" (item %zu)",
                     (int)(len < 40 ? len : 40), p, *n + 1);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (ctl_parse_partoff(item, &po) != 0) {
            snprintf(err, errlen, "expected PARTITION:OFFSET like 2:1534, got \"%s\"", item);
            return -1;
        }
        for (size_t i = 0; i < *n && !dup; i++)
            dup = out[i].partition == po.partition && out[i].offset == po.offset;
        if (!dup) {
            if (*n >= max) {
                snprintf(err, errlen, "more than %zu offsets given", max);
                return -1;
            }
            out[(*n)++] = po;
        }
        if (!comma)
            break;
        p = comma + 1;
        if (!*p) {
            snprintf(err, errlen, "expected PARTITION:OFFSET after the last ','");
            return -1;
        }
    }
    return 0;
}

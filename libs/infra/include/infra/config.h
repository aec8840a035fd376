/* config.h: the YAML configuration of a binary, read once at start into typed
 * structs, with environment overrides and errors that say where and what.
 *
 * A file is loaded (cfg_load), then each module binds its own section to its
 * own struct with a table of fields (cfg_bind). For each field the value comes
 * from, in order: the environment (IMTASK_<SECTION>_<KEY>, upper case, '.' and
 * '-' become '_'), the file, the field's default. Keys in the file that no
 * bind asked for are errors (cfg_finish), so a typo never goes unnoticed.
 *
 * A section bound with CFG_PASSTHROUGH keeps the keys its table does not name
 * as an ordered list of raw key/value strings (e.g. the librdkafka properties
 * of `kafka:`); their environment form is IMTASK_<SECTION>_<KEY> with '.'
 * written as '_' (IMTASK_KAFKA_SECURITY_PROTOCOL -> security.protocol).
 *
 * Ownership: strings bound into structs belong to the cfg_t and live until
 * cfg_destroy(). Not thread-safe; use from main() before starting workers.
 */
#ifndef INFRA_CONFIG_H
#define INFRA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_ERR_MAX 512
#define CFG_MAX_FILE_BYTES (4 * 1024 * 1024)
#define CFG_MAX_PASSTHROUGH 128 /* extra keys a passthrough section may hold */
#define CFG_MAX_LIST 256        /* items of a string list */
#define CFG_ENV_PREFIX "IMTASK_"

typedef struct cfg_s cfg_t;

typedef enum {
    CFG_STRING,   /* const char *                                            */
    CFG_INT,      /* int64_t, within [min, max]                              */
    CFG_BOOL,     /* bool: true/false/yes/no/on/off/1/0                      */
    CFG_DOUBLE,   /* double, within [min, max]                               */
    CFG_DURATION, /* int64_t milliseconds: "250ms", "5s", "2m", "1h", "1d" or a
                     bare number of milliseconds; within [min, max] ms         */
    CFG_ENUM,     /* int: index of the value in the NULL-terminated `choices` */
    CFG_LIST,     /* cfg_list_t: a YAML sequence of scalars, or in the env a
                     comma-separated string                                  */
} cfg_type_t;

enum {
    CFG_REQUIRED = 1 << 0, /* no default: must be in the file or environment */
    CFG_SECRET = 1 << 1,   /* redacted by cfg_dump, registered with log_add_secret */
};

typedef struct {
    const char *const *items;
    size_t count;
} cfg_list_t;

typedef struct {
    const char *key; /* lower_snake_case name inside the section */
    cfg_type_t type;
    size_t offset;   /* offsetof(struct, member) */
    const char *def; /* default as text, parsed like a file value; NULL = none */
    unsigned flags;
    double min, max;            /* for CFG_INT, CFG_DOUBLE, CFG_DURATION; both 0 = no limit */
    const char *const *choices; /* for CFG_ENUM */
    const char *help;           /* one line, shown by cfg_dump */
} cfg_field_t;

typedef struct {
    const char *key;
    const char *value;
    const char *origin; /* "file.yaml:12" or "env IMTASK_..." */
} cfg_kv_t;

typedef struct {
    const cfg_kv_t *items;
    size_t count;
} cfg_kvs_t;

/* Load and parse path (YAML, top level a mapping of sections). path NULL
 * gives an empty config where defaults and the environment decide. On error
 * returns NULL and writes "file:line:column: what" into err. */
cfg_t *cfg_load(const char *path, char *err, size_t errlen);
/* Same from a string; name is used in messages. */
cfg_t *cfg_load_string(const char *yaml, const char *name, char *err, size_t errlen);
void cfg_destroy(cfg_t *cfg); /* NULL is a no-op */

/* Bind `section` (a top-level key; "" binds top-level scalars) into out
 * using the fields table. Returns 0, or -1 with err like
 *   "imtask.yaml:12: fanout.batch_size: expected an integer in [1, 10000], got \"abc\""
 * passthrough: non-NULL to keep unknown keys of the section there (cfg owns
 * them); NULL to leave unknown keys for cfg_finish to report. */
int cfg_bind(cfg_t *cfg, const char *section, const cfg_field_t *fields, size_t nfields, void *out,
             cfg_kvs_t *passthrough, char *err, size_t errlen);

/* True when the file has this section (whether or not it was bound). */
bool cfg_has_section(const cfg_t *cfg, const char *section);

/* After every bind: fails if the file holds a section or key nobody bound,
 * naming it with its line and the known keys of that section. */
int cfg_finish(cfg_t *cfg, char *err, size_t errlen);

/* Print the effective configuration as YAML with the origin of each value as
 * a comment; secrets (CFG_SECRET fields, passthrough keys whose names contain
 * "password", "secret" or "key") print as "[REDACTED]". */
void cfg_dump(const cfg_t *cfg, FILE *out);

/* The source file ("" when none). */
const char *cfg_path(const cfg_t *cfg);

/* Parse a duration as CFG_DURATION does; 0 on success. */
int cfg_parse_duration_ms(const char *s, int64_t *out_ms);

#endif

/* config_test.c: config loading, binding, env overrides, passthrough, errors, dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/config.h"
#include "infra/log.h"

typedef struct {
    int64_t batch_size;
    double ratio;
    bool enabled;
    int64_t timeout_ms;
    int mode;
    cfg_list_t topics;
    const char *api_token;
    const char *name;
} demo_t;

static const char *const demo_modes[] = {"per_recipient", "per_gateway", NULL};

static const cfg_field_t demo_fields[] = {
    {.key = "batch_size",
     .type = CFG_INT,
     .offset = offsetof(demo_t, batch_size),
     .def = "100",
     .min = 1,
     .max = 10000},
    {.key = "ratio",
     .type = CFG_DOUBLE,
     .offset = offsetof(demo_t, ratio),
     .def = "0.5",
     .min = 0,
     .max = 1},
    {.key = "enabled", .type = CFG_BOOL, .offset = offsetof(demo_t, enabled), .def = "false"},
    {.key = "timeout",
     .type = CFG_DURATION,
     .offset = offsetof(demo_t, timeout_ms),
     .def = "5s",
     .min = 1,
     .max = 60000},
    {.key = "mode",
     .type = CFG_ENUM,
     .offset = offsetof(demo_t, mode),
     .def = "per_recipient",
     .choices = demo_modes},
    {.key = "topics", .type = CFG_LIST, .offset = offsetof(demo_t, topics), .def = "x"},
    {.key = "api_token",
     .type = CFG_STRING,
     .offset = offsetof(demo_t, api_token),
     .flags = CFG_SECRET},
    {.key = "name", .type = CFG_STRING, .offset = offsetof(demo_t, name), .def = "demo"},
};
#define NDEMO (sizeof(demo_fields) / sizeof(demo_fields[0]))

typedef struct {
    const char *brokers;
} kafka_t;

static const cfg_field_t kafka_fields[] = {
    {.key = "brokers",
     .type = CFG_STRING,
     .offset = offsetof(kafka_t, brokers),
     .flags = CFG_REQUIRED},
};

static const char *const env_names[] = {
    "IMTASK_DEMO_BATCH_SIZE",         "IMTASK_DEMO_TOPICS",     "IMTASK_KAFKA_BROKERS",
    "IMTASK_KAFKA_SECURITY_PROTOCOL", "IMTASK_KAFKA_CLIENT_ID", "IMTASK_DEMO_TIMEOUT",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
    log_clear_secrets();
    return 0;
}

/* Load yaml, bind demo (and kafka when the text has it); returns the rc and the error. */
static int bind_demo(const char *yaml, demo_t *d, char *err, size_t errlen)
{
    cfg_t *cfg = cfg_load_string(yaml, "t.yaml", err, errlen);
    int rc;
    if (!cfg)
        return -2;
    memset(d, 0, sizeof(*d));
    rc = cfg_bind(cfg, "demo", demo_fields, NDEMO, d, NULL, err, errlen);
    if (rc == 0)
        rc = cfg_finish(cfg, err, errlen);
    cfg_destroy(cfg);
    return rc;
}

static void test_valid_file(void **state)
{
    char err[CFG_ERR_MAX] = "";
    demo_t d;
    kafka_t k;
    cfg_kvs_t props;
    cfg_t *cfg = cfg_load("libs/infra/tests/testdata/valid.yaml", err, sizeof(err));
    (void)state;
    assert_non_null(cfg);
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_bind(cfg, "demo", demo_fields, NDEMO, &d, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_bind(cfg, "kafka", kafka_fields, 1, &k, &props, err, sizeof(err)), 0);
    /* log, http and shutdown are not bound here: cfg_finish must name the first */
    assert_int_equal(cfg_finish(cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "valid.yaml:2: unknown section or key \"log\""));

    assert_int_equal(d.batch_size, 200);
    assert_true(d.ratio > 0.249 && d.ratio < 0.251);
    assert_true(d.enabled);
    assert_int_equal(d.timeout_ms, 1500);
    assert_int_equal(d.mode, 1);
    assert_int_equal(d.topics.count, 3);
    assert_string_equal(d.topics.items[2], "c");
    assert_string_equal(d.api_token, "s3cr3t-token");
    assert_string_equal(d.name, "demo");
    assert_string_equal(k.brokers, "127.0.0.1:19092");
    assert_int_equal(props.count, 3);
    assert_string_equal(props.items[0].key, "security.protocol");
    assert_string_equal(props.items[0].value, "plaintext");
    assert_string_equal(props.items[0].origin, "libs/infra/tests/testdata/valid.yaml:8");
    assert_string_equal(props.items[2].key, "queue.buffering.max.ms");
    cfg_destroy(cfg);
}

static void test_defaults_without_file(void **state)
{
    char err[CFG_ERR_MAX] = "";
    demo_t d;
    cfg_t *cfg = cfg_load(NULL, err, sizeof(err));
    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg_bind(cfg, "demo", demo_fields, NDEMO, &d, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(d.batch_size, 100);
    assert_int_equal(d.timeout_ms, 5000);
    assert_int_equal(d.mode, 0);
    assert_false(d.enabled);
    assert_null(d.api_token);
    assert_int_equal(d.topics.count, 1);
    cfg_destroy(cfg);
}

struct bad_case {
    const char *yaml;
    const char *error;
};

static void test_invalid_files(void **state)
{
    static const struct bad_case cases[] = {
        {"demo:\n  batch_size: abc\n",
         "t.yaml:2: demo.batch_size: expected an integer in [1, 10000], got \"abc\""},
        {"demo:\n  batch_size: 0\n",
         "t.yaml:2: demo.batch_size: expected an integer in [1, 10000], got \"0\""},
        {"demo:\n  ratio: 1.5\n", "t.yaml:2: demo.ratio: expected a number in [0, 1], got \"1.5\""},
        {"demo:\n  enabled: maybe\n",
         "t.yaml:2: demo.enabled: expected true or false, got \"maybe\""},
        {"demo:\n  timeout: 5 parsecs\n",
         "t.yaml:2: demo.timeout: expected a duration like 500ms, 5s, 2m in [1ms, 60000ms], got "
         "\"5 parsecs\""},
        {"demo:\n  timeout: 2m\n",
         "t.yaml:2: demo.timeout: expected a duration like 500ms, 5s, 2m in [1ms, 60000ms], got "
         "\"2m\""},
        {"demo:\n  mode: fast\n",
         "t.yaml:2: demo.mode: expected one of per_recipient, per_gateway, got \"fast\""},
        {"demo:\n  batch_size: [1, 2]\n",
         "t.yaml:2: demo.batch_size: expected an integer in [1, 10000], got a list"},
        {"demo:\n  topics: [a, [b]]\n",
         "t.yaml:2: demo.topics: expected a list of strings (at most 256)"},
        {"demo:\n  batch_size: 5\n  batch_size: 6\n",
         "t.yaml:3: demo.batch_size: duplicate key (first at line 2)"},
        {"demo:\n  batchsize: 5\n",
         "t.yaml:2: demo.batchsize: unknown key (known: batch_size ratio enabled timeout mode "
         "topics api_token name)"},
        {"demo:\n  batch_size: 5\nfanuot:\n  x: 1\n",
         "t.yaml:3: unknown section or key \"fanuot\" (known: demo)"},
        {"demo: 5\n", "t.yaml:1: demo: expected a mapping of keys, got a single value"},
        {"demo:\n  api_token: 12\n  name: \"\"\n  ratio: [\n", NULL /* YAML syntax, below */},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[CFG_ERR_MAX] = "";
        demo_t d;
        int rc = bind_demo(cases[i].yaml, &d, err, sizeof(err));
        if (!cases[i].error) {
            assert_int_equal(rc, -2);
            assert_non_null(strstr(err, "t.yaml:5:1: invalid YAML: "));
            continue;
        }
        if (rc == 0 || strcmp(err, cases[i].error) != 0)
            fail_msg("case %zu: rc %d\n  got:  %s\n  want: %s", i, rc, err, cases[i].error);
    }
}

static void test_invalid_yaml_top_level(void **state)
{
    char err[CFG_ERR_MAX] = "";
    cfg_t *cfg = cfg_load_string("- a\n- b\n", "t.yaml", err, sizeof(err));
    (void)state;
    assert_null(cfg);
    assert_string_equal(err, "t.yaml:1: expected a mapping of sections at the top level");
    cfg = cfg_load("libs/infra/tests/testdata/does-not-exist.yaml", err, sizeof(err));
    assert_null(cfg);
    assert_string_equal(err, "libs/infra/tests/testdata/does-not-exist.yaml: cannot open config "
                             "file: No such file or directory");
}

static void test_required_missing(void **state)
{
    char err[CFG_ERR_MAX] = "";
    kafka_t k;
    cfg_kvs_t props;
    cfg_t *cfg = cfg_load_string("kafka:\n  client.id: x\n", "t.yaml", err, sizeof(err));
    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg_bind(cfg, "kafka", kafka_fields, 1, &k, &props, err, sizeof(err)), -1);
    assert_string_equal(err, "t.yaml:2: kafka.brokers: missing required key (a non-empty string; "
                             "or set IMTASK_KAFKA_BROKERS)");
    cfg_destroy(cfg);
}

static void test_env_overrides(void **state)
{
    char err[CFG_ERR_MAX] = "";
    demo_t d;
    kafka_t k;
    cfg_kvs_t props;
    cfg_t *cfg;
    (void)state;
    setenv("IMTASK_DEMO_BATCH_SIZE", "321", 1);
    setenv("IMTASK_DEMO_TOPICS", "t1, t2 ,,t3", 1);
    setenv("IMTASK_KAFKA_BROKERS", "k1:9092,k2:9092", 1);
    setenv("IMTASK_KAFKA_SECURITY_PROTOCOL", "ssl", 1);
    setenv("IMTASK_KAFKA_CLIENT_ID", "from-env", 1);
    cfg = cfg_load_string("demo:\n  batch_size: 5\nkafka:\n  brokers: file:1\n"
                          "  security.protocol: plaintext\n",
                          "t.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(cfg_bind(cfg, "demo", demo_fields, NDEMO, &d, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_bind(cfg, "kafka", kafka_fields, 1, &k, &props, err, sizeof(err)), 0);
    assert_int_equal(cfg_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(d.batch_size, 321);
    assert_int_equal(d.topics.count, 3);
    assert_string_equal(d.topics.items[0], "t1");
    assert_string_equal(d.topics.items[1], "t2");
    assert_string_equal(d.topics.items[2], "t3");
    assert_string_equal(k.brokers, "k1:9092,k2:9092");
    assert_int_equal(props.count, 2);
    assert_string_equal(props.items[0].key, "security.protocol");
    assert_string_equal(props.items[0].value, "ssl");
    assert_string_equal(props.items[0].origin, "env IMTASK_KAFKA_SECURITY_PROTOCOL");
    assert_string_equal(props.items[1].key, "client.id");
    assert_string_equal(props.items[1].value, "from-env");
    cfg_destroy(cfg);

    setenv("IMTASK_DEMO_TIMEOUT", "soon", 1);
    cfg = cfg_load_string("", "t.yaml", err, sizeof(err));
    assert_int_equal(cfg_bind(cfg, "demo", demo_fields, NDEMO, &d, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "environment IMTASK_DEMO_TIMEOUT: demo.timeout: expected a duration "
                             "like 500ms, 5s, 2m in [1ms, 60000ms], got \"soon\"");
    cfg_destroy(cfg);
}

static void test_dump_redacts(void **state)
{
    char err[CFG_ERR_MAX] = "";
    char *buf = NULL;
    size_t len = 0;
    demo_t d;
    kafka_t k;
    cfg_kvs_t props;
    FILE *out = open_memstream(&buf, &len);
    cfg_t *cfg = cfg_load("libs/infra/tests/testdata/valid.yaml", err, sizeof(err));
    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg_bind(cfg, "demo", demo_fields, NDEMO, &d, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_bind(cfg, "kafka", kafka_fields, 1, &k, &props, err, sizeof(err)), 0);
    cfg_dump(cfg, out);
    fclose(out);
    assert_null(strstr(buf, "s3cr3t-token"));
    assert_null(strstr(buf, "hunter2-secret"));
    assert_non_null(
        strstr(buf, "  api_token: \"[REDACTED]\"  # libs/infra/tests/testdata/valid.yaml:20\n"));
    assert_non_null(
        strstr(buf, "  sasl.password: \"[REDACTED]\"  # libs/infra/tests/testdata/valid.yaml:9\n"));
    assert_non_null(strstr(buf, "  batch_size: 200  # libs/infra/tests/testdata/valid.yaml:14\n"));
    assert_non_null(strstr(buf, "  name: \"demo\"  # default\n"));
    assert_non_null(strstr(buf, "  timeout: 1500ms  #"));
    assert_non_null(strstr(buf, "  topics: [\"a\", \"b\", \"c\"]  #"));
    assert_non_null(strstr(buf, "  brokers: \"127.0.0.1:19092\"  #"));
    free(buf);
    cfg_destroy(cfg);
}

static void test_durations(void **state)
{
    int64_t ms;
    (void)state;
    assert_int_equal(cfg_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(cfg_parse_duration_ms("1.5s", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(cfg_parse_duration_ms("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(cfg_parse_duration_ms("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(cfg_parse_duration_ms("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(cfg_parse_duration_ms("42", &ms), 0);
    assert_int_equal(ms, 42);
    assert_int_equal(cfg_parse_duration_ms("-1s", &ms), -1);
    assert_int_equal(cfg_parse_duration_ms("1 s", &ms), -1);
    assert_int_equal(cfg_parse_duration_ms("", &ms), -1);
    assert_int_equal(cfg_parse_duration_ms("s", &ms), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_valid_file, clear_env),
        cmocka_unit_test_setup(test_defaults_without_file, clear_env),
        cmocka_unit_test_setup(test_invalid_files, clear_env),
        cmocka_unit_test_setup(test_invalid_yaml_top_level, clear_env),
        cmocka_unit_test_setup(test_required_missing, clear_env),
        cmocka_unit_test_setup(test_env_overrides, clear_env),
        cmocka_unit_test_setup(test_dump_redacts, clear_env),
        cmocka_unit_test_setup(test_durations, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, clear_env);
}

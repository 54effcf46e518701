/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_conf.c: the configuration reader: tokens, quotes and escapes,
 * blocks and contexts, argument counts, include (relative, missing, cycles),
 * every syntax error with its exact message and line, handler errors (with
 * or without shk_conf_error) located at their file:line, nesting limits,
 * NUL bytes, directories and endless streams, the samples in test/conf read
 * by relative paths, and the size / key=value helpers at their limits.
 */
#include "shk_conf.h"
#include "util_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define CTX_HTTP (SHK_CONF_USER << 0)
#define CTX_LOC (SHK_CONF_USER << 1)
#define CTX_NEST (SHK_CONF_USER << 2)

static char dir[128];
static char seen[4096]; /* what handlers saw, one line per directive */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    size_t n = strlen(seen);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(seen + n, sizeof seen - n, fmt, ap);
    va_end(ap);
}

static int show_where; /* h_record also notes the file and the context */

static int h_record(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)data;
    if (show_where)
        note("%s:%u:%#x ", shk_conf_file(cf), shk_conf_line(cf), shk_conf_context(cf));
    note("%s:%u", argv[0], shk_conf_line(cf));
    for (int i = 1; i < argc; i++)
        note(" [%s]", argv[i]);
    note("\n");
    return SHK_OK;
}

static int h_fail(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    (void)data;
    return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", argv[1], argv[0]);
}

/* Handlers that fail without shk_conf_error(): the reader adds the location. */
static int h_fail_plain(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)cf, (void)argc, (void)data;
    return shk_error(SHK_ECONF, "bad value \"%s\"", argv[1]);
}

static int h_fail_nomem(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)cf, (void)argc, (void)data;
    return shk_error(SHK_ENOMEM, "no room in zone \"%s\"", argv[1]);
}

static int h_fail_positive(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)cf, (void)argc, (void)argv, (void)data;
    return 1;
}

/* Located by the handler, but its own status. */
static int h_fail_located(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc, (void)data;
    shk_conf_error(cf, "cannot map \"%s\"", argv[1]);
    return SHK_ENOMEM;
}

static int h_reparse(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc, (void)data;
    return shk_conf_parse(cf, argv[1]);
}

/* shk_conf_params' callback for `params`: notes each pair; "n" takes
 * digits only, "big" raises its own message, "oom" answers SHK_ENOMEM,
 * "x..." keys are known, anything else is not. */
static int p_set(shk_conf_t *cf, const char *k, const char *v, void *ctx)
{
    (void)ctx;
    note("param %s=%s\n", k, v);
    if (strcmp(k, "n") == 0)
        return v[0] && strspn(v, "0123456789") == strlen(v) ? SHK_OK : SHK_EINVAL;
    if (strcmp(k, "big") == 0)
        return shk_conf_error(cf, "\"big=%s\": too big", v);
    if (strcmp(k, "oom") == 0)
        return SHK_ENOMEM;
    return k[0] == 'x' ? SHK_OK : SHK_ENOENT;
}

static int h_params(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)data;
    return shk_conf_params(cf, argc, argv, 1, p_set, NULL);
}

static const shk_conf_directive_t table[] = {
    {"params", SHK_CONF_ANY, SHK_CONF_1MORE, h_params, 0, NULL},
    {"worker_processes", SHK_CONF_MAIN, SHK_CONF_TAKE1, h_record, 0, NULL},
    {"limit_req_zone", SHK_CONF_MAIN | CTX_HTTP, SHK_CONF_TAKE3, h_record, 0, NULL},
    {"http", SHK_CONF_MAIN, SHK_CONF_NOARGS | SHK_CONF_BLOCK, h_record, CTX_HTTP, NULL},
    {"location", CTX_HTTP, SHK_CONF_TAKE1 | SHK_CONF_BLOCK, h_record, CTX_LOC, NULL},
    {"limit_req", CTX_LOC, SHK_CONF_1MORE, h_record, 0, NULL},
    {"flag", SHK_CONF_ANY, SHK_CONF_NOARGS | SHK_CONF_TAKE2, h_record, 0, NULL},
    {"many", SHK_CONF_ANY, SHK_CONF_2MORE, h_record, 0, NULL},
    {"fail", SHK_CONF_ANY, SHK_CONF_TAKE1, h_fail, 0, NULL},
    {"fail_plain", SHK_CONF_ANY, SHK_CONF_TAKE1, h_fail_plain, 0, NULL},
    {"fail_nomem", SHK_CONF_ANY, SHK_CONF_TAKE1, h_fail_nomem, 0, NULL},
    {"fail_positive", SHK_CONF_ANY, SHK_CONF_NOARGS, h_fail_positive, 0, NULL},
    {"fail_located", SHK_CONF_ANY, SHK_CONF_TAKE1, h_fail_located, 0, NULL},
    {"reparse", SHK_CONF_ANY, SHK_CONF_TAKE1, h_reparse, 0, NULL},
    {"nest", SHK_CONF_ANY, SHK_CONF_NOARGS | SHK_CONF_BLOCK, h_record, CTX_NEST, NULL},
    {NULL, 0, 0, NULL, 0, NULL},
};

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/shk_test_conf_%ld", (long)getpid());
    mkdir(dir, 0700);
    seen[0] = '\0';
    show_where = 0;
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* Write dir/name and return its path in a static buffer slot. */
static const char *put(const char *name, const char *text)
{
    static char paths[8][256];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

static int parse(const char *path)
{
    shk_conf_t *cf = shk_conf_new(NULL);
    ck_assert_ptr_nonnull(cf);
    ck_assert_int_eq(shk_conf_add(cf, table), SHK_OK);
    int rc = shk_conf_parse(cf, path);
    shk_conf_free(cf);
    return rc;
}

static void expect_error(const char *text, const char *tmpl)
{
    const char *path = put("bad.conf", text);
    char want[1024];
    const char *p = strstr(tmpl, "%s");
    ck_assert_ptr_nonnull(p);
    snprintf(want, sizeof want, "%.*s%s%s", (int)(p - tmpl), tmpl, path, p + 2);
    ck_assert_int_eq(parse(path), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);
}

START_TEST(reads_directives_blocks_quotes)
{
    const char *path = put("ok.conf",
                           "# a comment\n"
                           "worker_processes 4; # trailing comment\n"
                           "limit_req_zone $binary_remote_addr zone=one:10m rate=10r/s;\r\n"
                           "http {\n"
                           "    location /limited {\n"
                           "        limit_req zone=one burst=5 nodelay;\n"
                           "    }\n"
                           "    location \"/with space\" { limit_req 'single quoted';}\n"
                           "}\n"
                           "flag;\n"
                           "flag \"a\\\"b\\\\c\" 'tab\\there';\n"
                           "many a b c d e;\n"
                           "flag \"\" \"multi\nline\";\n");
    ck_assert_int_eq(parse(path), SHK_OK);
    ck_assert_str_eq(seen, "worker_processes:2 [4]\n"
                           "limit_req_zone:3 [$binary_remote_addr] [zone=one:10m] [rate=10r/s]\n"
                           "http:4\n"
                           "location:5 [/limited]\n"
                           "limit_req:6 [zone=one] [burst=5] [nodelay]\n"
                           "location:8 [/with space]\n"
                           "limit_req:8 [single quoted]\n"
                           "flag:10\n"
                           "flag:11 [a\"b\\c] [tab\there]\n"
                           "many:12 [a] [b] [c] [d] [e]\n"
                           "flag:13 [] [multi\nline]\n");
}
END_TEST

START_TEST(syntax_errors_with_lines)
{
    expect_error("worker_processes 4;\nlimit_rq zone=one;\n",
                 "unknown directive \"limit_rq\" in %s:2");
    expect_error("worker_processes 4;\nworker_processes 4\n",
                 "unexpected end of file, expecting \";\" or \"}\" in %s:2");
    expect_error("http {\n location /a {\n }\n", "unexpected end of file, expecting \"}\" in %s:3");
    expect_error("http {\n\n# nothing\n\n", "unexpected end of file, expecting \"}\" in %s:1");
    expect_error("http {\n flag\n\n", "unexpected end of file, expecting \";\" or \"}\" in %s:2");
    expect_error("worker_processes 4;\n}\n", "unexpected \"}\" in %s:2");
    expect_error("http {\n location /a {\n limit_req x }\n}\n", "unexpected \"}\" in %s:3");
    expect_error("{\n", "unexpected \"{\" in %s:1");
    expect_error(";\n", "unexpected \";\" in %s:1");
    expect_error("http;\n", "directive \"http\" has no opening \"{\" in %s:1");
    expect_error("worker_processes 4 {\n}\n",
                 "directive \"worker_processes\" takes no block, unexpected \"{\" in %s:1");
    expect_error("\n\nworker_processes;\n",
                 "invalid number of arguments in \"worker_processes\" directive in %s:3");
    expect_error("worker_processes 1 2;\n",
                 "invalid number of arguments in \"worker_processes\" directive in %s:1");
    expect_error("flag a;\n", "invalid number of arguments in \"flag\" directive in %s:1");
    expect_error("many a;\n", "invalid number of arguments in \"many\" directive in %s:1");
    expect_error("limit_req a;\n", "\"limit_req\" directive is not allowed here in %s:1");
    expect_error("http {\n worker_processes 2;\n}\n",
                 "\"worker_processes\" directive is not allowed here in %s:2");
    expect_error("location /x { }\n", "\"location\" directive is not allowed here in %s:1");
    expect_error("flag \"unterminated;\n",
                 "unexpected end of file, expecting '\"' in %s:1");
    expect_error("flag \"a\"b c;\n", "unexpected \"b\" after a quoted string in %s:1");
    expect_error("\nfail 10x;\n", "invalid value \"10x\" in \"fail\" directive in %s:2");
    expect_error("many a b c d e f g h i j k l m n o p;\n",
                 "too many arguments in \"many\" directive (at most 15) in %s:1");
}
END_TEST

START_TEST(nul_bytes_and_long_tokens)
{
    char path[256];
    snprintf(path, sizeof path, "%s/nul.conf", dir);
    FILE *f = fopen(path, "w");
    fwrite("flag;\nflag a\0b;\n", 1, 16, f);
    fclose(f);
    ck_assert_int_eq(parse(path), SHK_ECONF);
    char want[512];
    snprintf(want, sizeof want, "unexpected NUL byte in %s:2", path);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* a long token is read whole; one beyond the limit is reported */
    size_t n = 5000;
    char *text = malloc(n + 32);
    strcpy(text, "fail ");
    memset(text + 5, 'x', n);
    strcpy(text + 5 + n, ";\n");
    const char *longp = put("long.conf", text);
    ck_assert_int_eq(parse(longp), SHK_ECONF);
    /* The message is cut visibly, in its middle: the location survives. */
    const char *m = shk_last_errmsg();
    snprintf(want, sizeof want, "xx... in %s:1", longp);
    ck_assert_uint_eq(strlen(m), 1023);
    ck_assert_str_eq(m + strlen(m) - strlen(want), want);
    ck_assert(strncmp(m, "invalid value \"xxx", 18) == 0);
    free(text);
    n = SHK_CONF_MAX_TOKEN + 1;
    text = malloc(n + 32);
    strcpy(text, "flag ");
    memset(text + 5, 'y', n);
    strcpy(text + 5 + n, " z;\n");
    const char *lp = put("toolong.conf", text);
    ck_assert_int_eq(parse(lp), SHK_ECONF);
    snprintf(want, sizeof want, "too long parameter (more than %d bytes) in %s:1",
             SHK_CONF_MAX_TOKEN, lp);
    ck_assert_str_eq(shk_last_errmsg(), want);
    free(text);
}
END_TEST

START_TEST(include_files)
{
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0700);
    put("sub/zones.conf", "limit_req_zone a b c;\ninclude more.conf;\n");
    put("sub/more.conf", "flag;\n");
    const char *main_conf = put("main.conf", "worker_processes 1;\ninclude sub/zones.conf;\nflag x y;\n");
    ck_assert_int_eq(parse(main_conf), SHK_OK);
    ck_assert_str_eq(seen, "worker_processes:1 [1]\nlimit_req_zone:1 [a] [b] [c]\nflag:1\n"
                           "flag:3 [x] [y]\n");

    /* errors inside an included file name that file */
    put("sub/bad.conf", "\nnope;\n");
    const char *inc_bad = put("incbad.conf", "include sub/bad.conf;\n");
    ck_assert_int_eq(parse(inc_bad), SHK_ECONF);
    char want[512];
    snprintf(want, sizeof want, "unknown directive \"nope\" in %s/sub/bad.conf:2", dir);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* a missing include names the includer */
    const char *missing = put("missing.conf", "flag;\ninclude nothere.conf;\n");
    ck_assert_int_eq(parse(missing), SHK_ECONF);
    snprintf(want, sizeof want,
             "open() \"%s/nothere.conf\" failed (No such file or directory) in %s:2", dir, missing);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* a cycle */
    put("c1.conf", "include c2.conf;\n");
    const char *c2 = put("c2.conf", "flag;\ninclude c1.conf;\n");
    snprintf(want, sizeof want, "%s/c1.conf", dir);
    ck_assert_int_eq(parse(want), SHK_ECONF);
    char msg[512];
    snprintf(msg, sizeof msg, "include cycle: \"%s/c1.conf\" is already being read in %s:2", dir,
             c2);
    ck_assert_str_eq(shk_last_errmsg(), msg);

    /* the top-level file missing */
    snprintf(want, sizeof want, "%s/none.conf", dir);
    ck_assert_int_eq(parse(want), SHK_ECONF);
    snprintf(msg, sizeof msg, "open() \"%s/none.conf\" failed (No such file or directory)", dir);
    ck_assert_str_eq(shk_last_errmsg(), msg);
}
END_TEST

START_TEST(tables)
{
    shk_conf_t *cf = shk_conf_new(NULL);
    ck_assert_int_eq(shk_conf_add(cf, table), SHK_OK);
    ck_assert_int_eq(shk_conf_add(cf, table), SHK_EEXIST);
    static const shk_conf_directive_t dup[] = {
        {"x", SHK_CONF_MAIN, SHK_CONF_TAKE1, h_record, 0, NULL},
        {"x", SHK_CONF_MAIN, SHK_CONF_TAKE1, h_record, 0, NULL},
        {NULL, 0, 0, NULL, 0, NULL}};
    ck_assert_int_eq(shk_conf_add(cf, dup), SHK_EEXIST);
    static const shk_conf_directive_t inc[] = {
        {"include", SHK_CONF_MAIN, SHK_CONF_TAKE1, h_record, 0, NULL}, {NULL, 0, 0, NULL, 0, NULL}};
    ck_assert_int_eq(shk_conf_add(cf, inc), SHK_EEXIST);
    static const shk_conf_directive_t nohandler[] = {
        {"y", SHK_CONF_MAIN, SHK_CONF_TAKE1, NULL, 0, NULL}, {NULL, 0, 0, NULL, 0, NULL}};
    ck_assert_int_eq(shk_conf_add(cf, nohandler), SHK_EINVAL);
    int user;
    shk_conf_free(cf);
    cf = shk_conf_new(&user);
    ck_assert_ptr_eq(shk_conf_user(cf), &user);
    shk_conf_free(cf);
}
END_TEST

START_TEST(parse_size_limits)
{
    size_t v;
    ck_assert_int_eq(shk_parse_size("0", &v), SHK_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(shk_parse_size("10m", &v), SHK_OK);
    ck_assert_uint_eq(v, 10u << 20);
    ck_assert_int_eq(shk_parse_size("10M", &v), SHK_OK);
    ck_assert_uint_eq(v, 10u << 20);
    ck_assert_int_eq(shk_parse_size("1k", &v), SHK_OK);
    ck_assert_uint_eq(v, 1024);
    ck_assert_int_eq(shk_parse_size("3G", &v), SHK_OK);
    ck_assert_uint_eq(v, (size_t)3 << 30);
    ck_assert_int_eq(shk_parse_size("18446744073709551615", &v), SHK_OK);
    ck_assert_uint_eq(v, SIZE_MAX);
    ck_assert_int_eq(shk_parse_size("18446744073709551616", &v), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_size("17179869183g", &v), SHK_OK);
    ck_assert_int_eq(shk_parse_size("17179869184g", &v), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_size("16777216t", &v), SHK_EINVAL);
    const char *junk[] = {"", "k", "-1", "+1", " 1m", "1m ", "1mm", "1.5m", "0x10", "1 m", "m1"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        ck_assert_msg(shk_parse_size(junk[i], &v) == SHK_EINVAL, "\"%s\" accepted", junk[i]);
}
END_TEST

/* The zone=name:size parser moved to shm/ (shk_zone_parse); its
 * assertions are in test_shm.c, zone_parse_at_limits. */
START_TEST(parse_kv)
{
    const char *k, *val;
    size_t kl;
    ck_assert_int_eq(shk_parse_kv("rate=10r/s", &k, &kl, &val), SHK_OK);
    ck_assert_uint_eq(kl, 4);
    ck_assert(strncmp(k, "rate", kl) == 0);
    ck_assert_str_eq(val, "10r/s");
    ck_assert_int_eq(shk_parse_kv("burst=", &k, &kl, &val), SHK_OK);
    ck_assert_str_eq(val, "");
    ck_assert_int_eq(shk_parse_kv("nodelay", &k, &kl, &val), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_kv("=5", &k, &kl, &val), SHK_EINVAL);
}
END_TEST

/* A directive's key=value list (shk_conf_params): taken in order up to the
 * first refusal, one message for an unknown key, one for a bad value. */
START_TEST(directive_params)
{
    const char *p = put("ok.conf", "params n=12 x=a=b xy=;\n");
    ck_assert_int_eq(parse(p), SHK_OK);
    ck_assert_str_eq(seen, "param n=12\nparam x=a=b\nparam xy=\n");
    seen[0] = '\0';
    expect_error("params n=1 n=1x x=2;\n",
                 "invalid value in \"n=1x\" of \"params\" directive in %s:1");
    ck_assert_str_eq(seen, "param n=1\nparam n=1x\n"); /* x=2 never reached */
    expect_error("params color=red;\n",
                 "invalid parameter \"color=red\" in \"params\" directive in %s:1");
    expect_error("params nodelay;\n",
                 "invalid parameter \"nodelay\" in \"params\" directive in %s:1");
    expect_error("params =5;\n", "invalid parameter \"=5\" in \"params\" directive in %s:1");
    expect_error("params big=7;\n", "\"big=7\": too big in %s:1");
    /* the longest key is handed over whole; one byte more is not a key */
    char text[256], key[SHK_CONF_KEY_MAX + 2];
    memset(key, 'x', sizeof key - 1);
    key[SHK_CONF_KEY_MAX] = '\0';
    snprintf(text, sizeof text, "params %s=1;\n", key);
    seen[0] = '\0';
    ck_assert_int_eq(parse(put("long.conf", text)), SHK_OK);
    ck_assert_uint_eq(strlen(seen), strlen("param ") + SHK_CONF_KEY_MAX + strlen("=1\n"));
    key[SHK_CONF_KEY_MAX] = 'x';
    key[SHK_CONF_KEY_MAX + 1] = '\0';
    snprintf(text, sizeof text, "params %s=1;\n", key);
    const char *lp = put("longer.conf", text);
    ck_assert_int_eq(parse(lp), SHK_ECONF);
    ck_assert_ptr_nonnull(strstr(shk_last_errmsg(), "invalid parameter"));
    /* a status other than SHK_ECONF is a bad value */
    expect_error("params oom=1;\n",
                 "invalid value in \"oom=1\" of \"params\" directive in %s:1");
    char *argv[] = {"params", "n=1", NULL};
    ck_assert_int_eq(shk_conf_params(NULL, 2, argv, 1, p_set, NULL), SHK_EINVAL);
    shk_conf_t *cf = shk_conf_new(NULL);
    ck_assert_int_eq(shk_conf_params(cf, 2, argv, 0, p_set, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_conf_params(cf, 2, argv, 1, NULL, NULL), SHK_EINVAL);
    shk_conf_free(cf);
}
END_TEST

/* The samples in test/conf, named relative to the repository root (where
 * make runs the suites): messages must keep the path relative. */
static const char *sample(const char *name)
{
    static char paths[4][256];
    static int k;
    char *p = paths[k++ % 4];
    const char *slash = strrchr(__FILE__, '/');
    int n = slash ? (int)(slash - __FILE__ + 1) : 0;
    snprintf(p, 256, "%.*sconf/%s", n, __FILE__, name);
    ck_assert_msg(access(p, R_OK) == 0, "%s: %s (run the suite from the repository root)", p,
                  strerror(errno));
    return p;
}

/* Durations: what proc's worker_shutdown_timeout accepted before (a bare
 * number, ms, s, m) means what it meant; h, d and compound terms are new. */
START_TEST(parse_duration_units)
{
    static const struct {
        const char *text;
        unsigned ms;
    } good[] = {
        {"0", 0},          {"5", 5000},        {"30", 30000},       {"5s", 5000},
        {"500ms", 500},    {"0ms", 0},         {"1m", 60000},       {"10s", 10000},
        {"2h", 7200000},   {"1d", 86400000},   {"1m30s", 90000},    {"1s500ms", 1500},
        {"1h30m", 5400000}, {"1d2h3m4s5ms", 93784005}, {"007s", 7000},
        {"4294967295ms", 4294967295u}, {"4294967s", 4294967000u}, {"71582m", 4294920000u},
        {"49d", 4233600000u}, {"49d17h", 4294800000u}, {"4294967", 4294967000u},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        unsigned v = 12345;
        ck_assert_msg(shk_parse_duration(good[i].text, &v) == SHK_OK, "\"%s\": %s", good[i].text,
                      shk_last_errmsg());
        ck_assert_msg(v == good[i].ms, "\"%s\" is %u ms, not %u", good[i].text, v, good[i].ms);
    }
    const char *big[] = {"4294967296ms", "4294968s", "4294968", "71583m", "1194h", "50d",
                         "49d18h", "99999999999999999999999", "18446744073709551617ms",
                         "4294967295s"};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        unsigned v = 12345;
        ck_assert_msg(shk_parse_duration(big[i], &v) == SHK_ERANGE, "\"%s\" not ERANGE", big[i]);
        ck_assert_uint_eq(v, 12345);
    }
    ck_assert_str_eq(shk_last_errmsg(), "duration \"4294967295s\" is too long (at most "
                                        "4294967295 ms)");
    const char *junk[] = {"", "s", "ms", "-1", "+1", "-1s", " 1s", "1s ", "1 s", "1.5s", "1x",
                          "5x", "1ss", "1s1m", "1m1m", "1ms1s", "1m30", "1M", "1S", "1D", "0x10",
                          "1h 30m", "1,5s", "99999999999999999999999x", "1y", "1w"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        unsigned v = 12345;
        ck_assert_msg(shk_parse_duration(junk[i], &v) == SHK_EINVAL, "\"%s\" accepted", junk[i]);
        ck_assert_uint_eq(v, 12345);
    }
    ck_assert_str_eq(shk_last_errmsg(), "invalid duration \"1w\"");
    unsigned v;
    ck_assert_int_eq(shk_parse_duration(NULL, &v), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_duration("1s", NULL), SHK_EINVAL);
}
END_TEST

START_TEST(samples_relative_paths)
{
    char want[4096], d[128];
    snprintf(d, sizeof d, "%s", sample("")); /* "test/conf/" */

    show_where = 1;
    ck_assert_msg(parse(sample("main.conf")) == SHK_OK, "%s", shk_last_errmsg());
    snprintf(want, sizeof want,
             "%1$smain.conf:3:0x1 worker_processes:3 [2]\n"
             "%1$szones/zones.conf:2:0x1 limit_req_zone:2 [$binary_remote_addr] [zone=one:10m] "
             "[rate=10r/s]\n"
             "%1$szones/more.conf:1:0x1 flag:1 [quoted; {value} # not a comment] [it's]\n"
             "%1$smain.conf:6:0x1 http:6\n"
             "%1$szones/http.conf:1:0x100 location:1 [/static]\n"
             "%1$szones/http.conf:1:0x200 flag:1\n"
             "%1$smain.conf:8:0x100 location:8 [/api]\n"
             "%1$smain.conf:9:0x200 limit_req:9 [zone=one] [burst=5] [nodelay]\n",
             d);
    ck_assert_str_eq(seen, want);

    snprintf(want, sizeof want, "unknown directive \"limit_rq\" in %serrors/unknown.conf:7", d);
    ck_assert_int_eq(parse(sample("errors/unknown.conf")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);

    snprintf(want, sizeof want,
             "unexpected end of file, expecting \";\" or \"}\" in %serrors/eof.conf:12", d);
    ck_assert_int_eq(parse(sample("errors/eof.conf")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);

    snprintf(want, sizeof want,
             "include cycle: \"%1$serrors/cycle_a.conf\" is already being read in "
             "%1$serrors/cycle_b.conf:2", d);
    ck_assert_int_eq(parse(sample("errors/cycle_a.conf")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);

    snprintf(want, sizeof want,
             "open() \"%1$serrors/nothere.conf\" failed (No such file or directory) in "
             "%1$serrors/missing.conf:3", d);
    ck_assert_int_eq(parse(sample("errors/missing.conf")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* An include inside a block is read in that block's context. */
    snprintf(want, sizeof want,
             "\"worker_processes\" directive is not allowed here in %serrors/workers.conf:3", d);
    ck_assert_int_eq(parse(sample("errors/misplaced.conf")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* The top-level file, relative, as given. */
    ck_assert_int_eq(parse("test/conf/none.conf"), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(),
                     "open() \"test/conf/none.conf\" failed (No such file or directory)");
}
END_TEST

START_TEST(escapes_crlf_variables)
{
    const char *path = put("esc.conf", "flag \"n\\nr\\rt\\tq\\\"s\\\\\" 'x\\y$z';\r\n"
                                       "many $binary_remote_addr \"$host\" a$b;\r\n"
                                       "\r\n"
                                       "# comment\r\n"
                                       "flag  ;\r\n");
    ck_assert_msg(parse(path) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_str_eq(seen, "flag:1 [n\nr\rt\tq\"s\\] [x\\y$z]\n"
                           "many:2 [$binary_remote_addr] [$host] [a$b]\n"
                           "flag:5\n");
    /* Lines count under CRLF too. */
    expect_error("flag;\r\n\r\nnope;\r\n", "unknown directive \"nope\" in %s:3");
    expect_error("flag 'a'\"b\";\n", "unexpected \"\"\" after a quoted string in %s:1");
    expect_error("flag 'a\n\nb;\n", "unexpected end of file, expecting \"'\" in %s:1");
}
END_TEST

START_TEST(handler_errors_located)
{
    char sub[256], want[1024];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0700);

    /* shk_error(SHK_ECONF) without location: the reader adds it. */
    expect_error("flag;\nfail_plain 7;\n", "bad value \"7\" in %s:2");
    /* another status, a message that happens to contain " in " */
    const char *p = put("nomem.conf", "\n\nfail_nomem one;\n");
    ck_assert_int_eq(parse(p), SHK_ENOMEM);
    snprintf(want, sizeof want, "no room in zone \"one\" in %s:3", p);
    ck_assert_str_eq(shk_last_errmsg(), want);
    /* a positive return is a configuration error */
    expect_error("fail_positive;\n", "\"fail_positive\" directive failed in %s:1");
    /* located by the handler: not located twice, its status kept */
    p = put("located.conf", "fail_located x;\n");
    ck_assert_int_eq(parse(p), SHK_ENOMEM);
    snprintf(want, sizeof want, "cannot map \"x\" in %s:1", p);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* inside an included file, inside a block: that file and line */
    put("sub/h.conf", "location /a {\n    limit_req x;\n    fail 10x;\n}\n");
    p = put("inc_h.conf", "http {\n  include sub/h.conf;\n}\n");
    ck_assert_int_eq(parse(p), SHK_ECONF);
    snprintf(want, sizeof want, "invalid value \"10x\" in \"fail\" directive in %s/sub/h.conf:3",
             dir);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* A handler may not restart the reader it runs in. */
    p = put("reparse.conf", "flag;\nreparse other.conf;\n");
    ck_assert_int_eq(parse(p), SHK_EBUSY);
    snprintf(want, sizeof want,
             "shk_conf_parse: the reader is already reading \"%s\" in %s:2", p, p);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* Outside a handler there is no location to give. */
    shk_conf_t *cf = shk_conf_new(NULL);
    ck_assert_int_eq(shk_conf_error(cf, "x %d", 1), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), "x 1 in (none):0");
    ck_assert_ptr_null(shk_conf_file(cf));
    ck_assert_uint_eq(shk_conf_line(cf), 0);
    ck_assert_uint_eq(shk_conf_context(cf), SHK_CONF_MAIN);
    shk_conf_free(cf);
}
END_TEST

START_TEST(nesting_limits)
{
    char text[2048], name[256], want[1024];
    size_t n = 0;

    /* 16 nested blocks are fine, the 17th is refused before its handler runs. */
    for (int i = 0; i < SHK_CONF_MAX_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "nest {\n");
    for (int i = 0; i < SHK_CONF_MAX_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "}\n");
    ck_assert_msg(parse(put("deep16.conf", text)) == SHK_OK, "%s", shk_last_errmsg());
    seen[0] = '\0';
    n = 0;
    for (int i = 0; i <= SHK_CONF_MAX_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "nest {\n");
    for (int i = 0; i <= SHK_CONF_MAX_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "}\n");
    snprintf(want, sizeof want, "blocks nested too deep (more than %d) in %%s:%d",
             SHK_CONF_MAX_DEPTH, SHK_CONF_MAX_DEPTH + 1);
    expect_error(text, want);
    int calls = 0;
    for (const char *q = seen; (q = strstr(q, "nest:")) != NULL; q++)
        calls++;
    ck_assert_int_eq(calls, SHK_CONF_MAX_DEPTH);

    /* d0 -> d1 -> ... -> d17: reading d1 nests 16 includes (fine), d0 17. */
    for (int i = 0; i <= SHK_CONF_MAX_DEPTH + 1; i++) {
        snprintf(name, sizeof name, "d%d.conf", i);
        if (i == SHK_CONF_MAX_DEPTH + 1)
            snprintf(text, sizeof text, "flag last;\n");
        else
            snprintf(text, sizeof text, "include d%d.conf;\n", i + 1);
        put(name, text);
    }
    snprintf(name, sizeof name, "%s/d1.conf", dir);
    seen[0] = '\0';
    ck_assert_int_eq(parse(name), SHK_ECONF); /* "flag last" has one argument: not allowed */
    snprintf(want, sizeof want,
             "invalid number of arguments in \"flag\" directive in %s/d%d.conf:1", dir,
             SHK_CONF_MAX_DEPTH + 1);
    ck_assert_str_eq(shk_last_errmsg(), want);
    snprintf(name, sizeof name, "%s/d0.conf", dir);
    ck_assert_int_eq(parse(name), SHK_ECONF);
    snprintf(want, sizeof want, "includes nested too deep (more than %d) in %s/d%d.conf:1",
             SHK_CONF_MAX_DEPTH, dir, SHK_CONF_MAX_DEPTH);
    ck_assert_str_eq(shk_last_errmsg(), want);
}
END_TEST

static int feed_fifo(void *arg)
{
    const char *path = arg;
    char buf[65536];
    memset(buf, ' ', sizeof buf);
    signal(SIGPIPE, SIG_IGN);
    int fd = open(path, O_WRONLY);
    TU_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    /* Spaces without end, until the reader goes away. */
    for (;;) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            TU_CHECK(errno == EPIPE, "write: %s", strerror(errno));
            break;
        }
    }
    close(fd);
    return 0;
}

START_TEST(endless_and_odd_files)
{
    char want[1024], fifo[256];

    /* a device of zeros: refused at its first NUL, not read forever */
    ck_assert_int_eq(parse(put("zero.conf", "flag;\ninclude /dev/zero;\n")), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), "unexpected NUL byte in /dev/zero:1");
    /* a directory */
    char sub[256];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    mkdir(sub, 0700);
    const char *p = put("dir.conf", "include adir;\n");
    ck_assert_int_eq(parse(p), SHK_ECONF);
    snprintf(want, sizeof want, "read() \"%s\" failed (Is a directory) in %s:1", sub, p);
    ck_assert_str_eq(shk_last_errmsg(), want);

    /* a stream that never ends: cut at SHK_CONF_MAX_FILE */
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t pid = tu_fork(feed_fifo, fifo);
    int rc = parse(fifo);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
    /* Whatever happened, let the writer finish: open and close the read end. */
    int fd = open(fifo, O_RDONLY | O_NONBLOCK);
    if (fd >= 0)
        close(fd);
    tu_wait_ok(pid);
    ck_assert_int_eq(rc, SHK_ECONF);
    snprintf(want, sizeof want, "file \"%s\" is too large (more than %d bytes)", fifo,
             SHK_CONF_MAX_FILE);
    ck_assert_str_eq(msg, want);
}
END_TEST

/* Regression: an empty quoted word as the first token of a file or of a
 * block body wrote through a NULL pointer (SIGSEGV in `shmkit check`, and a
 * SIGHUP with such a file killed the master). */
START_TEST(empty_quoted_words)
{
    ck_assert_int_eq(parse(put("e1.conf", "\"\";\n")), SHK_ECONF);
    ck_assert_msg(strstr(shk_last_errmsg(), "unknown directive \"\"") != NULL, "%s",
                  shk_last_errmsg());
    ck_assert_int_eq(parse(put("e2.conf", "'' x;\n")), SHK_ECONF);
    ck_assert_msg(strstr(shk_last_errmsg(), "unknown directive \"\"") != NULL, "%s",
                  shk_last_errmsg());
    expect_error("http {\n\"\" {\n}\n}\n", "unknown directive \"\" in %s:2");
    expect_error("nest {\n'';\n}\n", "unknown directive \"\" in %s:2");
    /* as arguments they are kept, empty */
    seen[0] = '\0';
    ck_assert_int_eq(parse(put("e3.conf", "flag \"\" '';\nmany '' \"\" \"\";\n")), SHK_OK);
    ck_assert_str_eq(seen, "flag:1 [] []\nmany:2 [] [] []\n");
}
END_TEST

/* Includes fanning out: 5 levels of files that each include the next level
 * 8 times would be 8^5 = 32768 files read; the reader stops at
 * SHK_CONF_MAX_FILES and says so, quickly. */
START_TEST(include_fanout_is_bounded)
{
    char name[256], text[1536];
    for (int lvl = 0; lvl < 5; lvl++) {
        size_t n = 0;
        for (int k = 0; k < 8; k++)
            n += (size_t)snprintf(text + n, sizeof text - n, "include f%d.conf;\n", lvl + 1);
        snprintf(name, sizeof name, "f%d.conf", lvl);
        put(name, text);
    }
    put("f5.conf", "flag;\n");
    snprintf(name, sizeof name, "%s/f0.conf", dir);
    seen[0] = '\0';
    uint64_t t0 = shk_time_ms();
    ck_assert_int_eq(parse(name), SHK_ECONF);
    ck_assert_msg(strstr(shk_last_errmsg(), "too many files read (more than 1024, includes counted)"),
                  "%s", shk_last_errmsg());
    ck_assert_msg(strstr(shk_last_errmsg(), ".conf:"), "not located: %s", shk_last_errmsg());
    int flags = 0;
    for (const char *q = seen; (q = strstr(q, "flag:")) != NULL; q++)
        flags++;
    ck_assert_int_lt(flags, SHK_CONF_MAX_FILES); /* stopped, not read to the end */
    ck_assert_uint_lt(shk_time_ms() - t0, 60000); /* liveness only */

    /* A few large files included many times: bounded by bytes too. */
    static char big[1 << 20];
    memset(big, ' ', sizeof big - 2);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    put("big.conf", big);
    size_t n = 0;
    for (int k = 0; k < 65; k++)
        n += (size_t)snprintf(text + n, sizeof text - n, "include big.conf;\n");
    ck_assert_int_eq(parse(put("bigs.conf", text)), SHK_ECONF);
    ck_assert_msg(strstr(shk_last_errmsg(), "bytes in all (includes counted)"), "%s",
                  shk_last_errmsg());
}
END_TEST

START_TEST(parse_pid_range)
{
    pid_t p = 77;
    ck_assert_int_eq(shk_parse_pid("1", 1, &p), SHK_OK);
    ck_assert_int_eq(p, 1);
    ck_assert_int_eq(shk_parse_pid("2147483647", 10, &p), SHK_OK);
    ck_assert_int_eq(p, 2147483647);
    ck_assert_int_eq(shk_parse_pid("12345/rest", 5, &p), SHK_OK); /* only len bytes */
    ck_assert_int_eq(p, 12345);
    p = 77;
    ck_assert_int_eq(shk_parse_pid("2147483648", 10, &p), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_pid("4294967297", 10, &p), SHK_ERANGE); /* 2^32 + 1: not 1 */
    ck_assert_str_eq(shk_last_errmsg(), "process id \"4294967297\" out of range (1 to 2147483647)");
    ck_assert_int_eq(shk_parse_pid("99999999999999999999999", 23, &p), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_pid("0", 1, &p), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_pid("000", 3, &p), SHK_ERANGE);
    ck_assert_int_eq(shk_parse_pid("", 0, &p), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_pid("-1", 2, &p), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_pid("+1", 2, &p), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_pid(" 1", 2, &p), SHK_EINVAL);
    ck_assert_int_eq(shk_parse_pid("1x", 2, &p), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "invalid process id \"1x\"");
    ck_assert_int_eq(p, 77); /* untouched on failure */
    ck_assert_int_eq(shk_parse_pid(NULL, 1, &p), SHK_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("reader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, reads_directives_blocks_quotes);
    tcase_add_test(tc, syntax_errors_with_lines);
    tcase_add_test(tc, nul_bytes_and_long_tokens);
    tcase_add_test(tc, include_files);
    tcase_add_test(tc, tables);
    tcase_add_test(tc, parse_size_limits);
    tcase_add_test(tc, parse_kv);
    tcase_add_test(tc, directive_params);
    tcase_add_test(tc, samples_relative_paths);
    tcase_add_test(tc, escapes_crlf_variables);
    tcase_add_test(tc, handler_errors_located);
    tcase_add_test(tc, nesting_limits);
    tcase_add_test(tc, endless_and_odd_files);
    tcase_add_test(tc, empty_quoted_words);
    tcase_add_test(tc, include_fanout_is_bounded);
    tcase_add_test(tc, parse_pid_range);
    tcase_add_test(tc, parse_duration_units);
    suite_add_tcase(s, tc);
    return tu_run(s);
}

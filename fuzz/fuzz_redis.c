/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_redis.c: what the redis module reads from outside, on arbitrary
 * bytes. The first byte picks the reader: 0 the announcement a relay gets
 * from the pub/sub channel (shk_redis_ann_parse), 1 a stream id
 * (shk_redis_parse_id), 2 the options with the rest as the URL (and, after
 * a NUL, as the namespace: shk_redis_conf). Properties: each returns
 * success or an error, never a crash; a parsed announcement's strings are
 * NUL-terminated at their lengths and its data lies inside the input; a
 * parsed id prints back as the input.
 */
#include "fuzz.h"
#include "shk_redis_internal.h"

#include <string.h>

SHK_FUZZ_TARGET(redis)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        redis_ann_t a;
        if (shk_redis_ann_parse(in, n, &a) == 0) {
            FUZZ_CHECK(a.data >= in && a.data + a.len == in + n, "data outside the input");
            FUZZ_CHECK(strlen(a.chan) > 0 && strlen(a.chan) <= SHK_CHAN_ID_MAX, "channel");
            FUZZ_CHECK(strlen(a.eid) <= SHK_CHAN_EVENT_MAX && strlen(a.et) <= SHK_CHAN_EVENT_MAX,
                       "event strings");
        }
        break;
    }
    case 1: {
        shk_chan_msgid_t id;
        if (shk_redis_parse_id(in, n, &id) == SHK_OK) {
            char back[48];
            int k = snprintf(back, sizeof back, "%llu-%u", (unsigned long long)id.time_ms, id.tag);
            /* leading zeros are the one way two spellings meet */
            FUZZ_CHECK(k > 0 && (size_t)k <= n, "id %s from %zu bytes", back, n);
        }
        break;
    }
    default: {
        char *s = malloc(n + 2);
        redis_conf_t c;
        FUZZ_CHECK(s != NULL, "malloc");
        memcpy(s, in, n);
        s[n] = s[n + 1] = '\0';
        const char *ns = s + strlen(s) + 1;
        shk_redis_opts_t o = {.url = s, .ns = ns < s + n + 1 && *ns ? ns : NULL};
        if (shk_redis_conf(&o, &c) == SHK_OK)
            FUZZ_CHECK(c.host[0] || c.path[0], "neither host nor path");
        free(s);
        break;
    }
    }
    return 0;
}

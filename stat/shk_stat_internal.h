/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_stat_internal.h: what the report module's files share: the growable
 * buffer and the one writer (JSON structure, string escaping for JSON and
 * for terminals), the field descriptions every section of a report is made
 * of, and the description tables themselves. Never installed, never
 * included by a public header.
 *
 * Who holds what: shk_stat_buf.c the buffer, the escapes and the JSON
 * writer; shk_stat_field.c reading a described field from its record and
 * writing a section as JSON members or objects and as text lines or table
 * rows; shk_stat_tables.c the tables (one per section: the figure's JSON
 * key, where it is in its record, its text label and format); shk_stat_render.c
 * the documents (which sections, nested how, in which order) and the walk
 * over zones that fills the records from the modules' lock-free stats.
 */
#ifndef SHK_STAT_INTERNAL_H
#define SHK_STAT_INTERNAL_H

#include "shk_internal.h"
#include "shk_stat.h"
#include "shk_chan.h"
#include "shk_redis.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the buffer and the writer (shk_stat_buf.c) ---------------------------------------- */

/* Deepest JSON nesting a report writes (document, zones, zone, slab,
 * classes, class = 6). */
#define SHK_STAT_DEPTH 8

/*
 * A report being written: the growable string, whether it is JSON or
 * text, and for JSON the open objects and arrays (which bracket closes each
 * and whether it holds a member yet, for the commas). On allocation failure
 * or a nesting error `failed` is set and every later append does nothing;
 * the caller checks it once at the end.
 */
typedef struct shk_stat_w_s {
    char *p;
    size_t len, cap;
    int failed;
    int json;
    unsigned depth;
    char close[SHK_STAT_DEPTH];
    unsigned char more[SHK_STAT_DEPTH];
} shk_stat_w_t;

SHK_HIDDEN void shk_stat_put(shk_stat_w_t *w, const char *s, size_t n);
SHK_HIDDEN void shk_stat_puts(shk_stat_w_t *w, const char *s);
SHK_HIDDEN void shk_stat_printf(shk_stat_w_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* n spaces. */
SHK_HIDDEN void shk_stat_pad(shk_stat_w_t *w, size_t n);
/* Release the string (the writer may be used again, empty). */
SHK_HIDDEN void shk_stat_w_free(shk_stat_w_t *w);

/*
 * The n bytes at s as a JSON string literal, quotes included (docs/stat.md,
 * "Escaping"): `"` and `\` escaped, the control characters U+0000..U+001F,
 * U+007F and U+0080..U+009F (the last as their UTF-8 sequences) and
 * U+2028/U+2029 as \uXXXX (\n, \t, \r, \b, \f as such); every other valid
 * UTF-8 sequence as it is; each byte that does not start or continue a
 * valid sequence as \u00XX of the byte (lossy: it reads back as U+00XX, but
 * the document stays valid UTF-8 and valid JSON).
 */
SHK_HIDDEN void shk_stat_json_str(shk_stat_w_t *w, const char *s, size_t n);

/* The n bytes at s for a terminal: printable ASCII (0x20..0x7e) as it is
 * but `\` doubled, every other byte (controls, DEL, >= 0x80) as \xHH, so
 * nothing raw reaches a terminal and the text can be read back exactly. */
SHK_HIDDEN void shk_stat_text_str(shk_stat_w_t *w, const char *s, size_t n);

/* JSON structure. `key` names the member in an object, NULL for an array
 * element (or the document); the comma before it is written as needed.
 * shk_stat_json_open opens '{' or '['; shk_stat_json_close closes the
 * innermost. Nothing happens in a text report. */
SHK_HIDDEN void shk_stat_json_key(shk_stat_w_t *w, const char *key);
SHK_HIDDEN void shk_stat_json_open(shk_stat_w_t *w, const char *key, char bracket);
SHK_HIDDEN void shk_stat_json_close(shk_stat_w_t *w);

/* ---- field descriptions (shk_stat_field.c) ------------------------------------------- */

/* How a field's value is stored in its record. */
enum {
    SHK_STAT_UINT = 1, /* unsigned integer of `size` bytes (1, 2, 4 or 8) */
    SHK_STAT_INT,      /* signed integer of `size` bytes */
    SHK_STAT_BOOL,     /* an integer read as true (non-zero) or false */
    SHK_STAT_CHARS,    /* char[size], read up to its first NUL or its end */
    SHK_STAT_CSTR      /* const char *, NUL-terminated (NULL reads as "") */
};

/* Field flags. */
#define SHK_STAT_HIDE0 0x1u /* text, line sections: the line is left out when the value is 0 */
#define SHK_STAT_HEAD 0x2u  /* text, line sections: "label value" opening the section, at
                             * the parent's indent and without the label's padding */
#define SHK_STAT_NOTEXT 0x4u /* JSON only (why says why) */

/*
 * One figure of a section. The JSON member is `"key": value` (a number, a
 * string, true/false, or the value's name from `names`). The text is, for a
 * field with a `label`, a new line ("  label        value", line sections)
 * or a new column (table sections, `label` its header, `width` its width:
 * positive right-aligned, negative left-aligned); a field without a label
 * continues the previous field's line or column. Its text is `pre`, the
 * value (its name from `tnames`, else from `names`), then `post`; or `zero`
 * alone when the value is 0 and `zero` is set. A field without a key or
 * without text says why in `why` (a test checks every field has both or a
 * reason; docs/stat.md lists them).
 *
 * Records are plain structures filled by shk_stat_render.c from the
 * modules' stats calls; the field says where its value is: `off`, `size`
 * and `kind`, which SHK_STAT_NUM(T, member) and friends fill in.
 */
typedef struct shk_stat_field_s {
    const char *key;
    unsigned kind;
    size_t off, size;
    const char *const *names;  /* numbers shown by name: names[v], NULL-terminated */
    const char *const *tnames; /* the text's names when they differ */
    const char *label;
    int width;
    const char *pre, *post, *zero;
    unsigned flags;
    const char *why;
} shk_stat_field_t;

/* The place and kind of a number, a bool, a char array or a string pointer
 * member of record type T, for a field's initializer. */
#define SHK_STAT_SIGNED(x)                                                                     \
    _Generic((x), signed char: 1, short: 1, int: 1, long: 1, long long: 1, default: 0)
#define SHK_STAT_NUM(T, m)                                                                     \
    SHK_STAT_PLACE(T, m), .kind = SHK_STAT_SIGNED(((T *)0)->m) ? SHK_STAT_INT : SHK_STAT_UINT
#define SHK_STAT_PLACE(T, m) .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define SHK_STAT_BOOLF(T, m) SHK_STAT_PLACE(T, m), .kind = SHK_STAT_BOOL
#define SHK_STAT_CHARSF(T, m) SHK_STAT_PLACE(T, m), .kind = SHK_STAT_CHARS
#define SHK_STAT_CSTRF(T, m) SHK_STAT_PLACE(T, m), .kind = SHK_STAT_CSTR

/* How a section is written as text. */
enum {
    SHK_STAT_LINES = 1, /* one line per labelled field; JSON: members of the open object */
    SHK_STAT_TABLE      /* one row per record under a header row; JSON: one object per record */
};

typedef struct shk_stat_section_s {
    const char *name; /* what the section describes, for messages and docs */
    size_t rec_size;  /* sizeof the record its fields are read from */
    const char *key;  /* JSON: the member that holds it (an object, or an array of rows) */
    unsigned style;   /* SHK_STAT_LINES or SHK_STAT_TABLE */
    const char *indent;
    int label_width;  /* lines: labels padded to this */
    const char *title; /* table: a line (indent included) written before the header row */
    int (*shown)(const void *rec); /* table: whether a row goes into the text (NULL: all) */
    const shk_stat_field_t *fields;
    unsigned nfields;
} shk_stat_section_t;

/* A field's value read from its record. */
typedef struct shk_stat_val_s {
    unsigned kind;   /* the field's kind */
    uint64_t u;      /* UINT, BOOL (0 or 1) */
    int64_t i;       /* INT */
    const char *s;   /* CHARS, CSTR */
    size_t n;        /* their length */
} shk_stat_val_t;

/* Read field f from rec. */
SHK_HIDDEN void shk_stat_value(const shk_stat_field_t *f, const void *rec, shk_stat_val_t *v);
/* 1 when the value is 0 (a number) or empty (a string). */
SHK_HIDDEN int shk_stat_value_zero(const shk_stat_val_t *v);
/* The field's text (pre, value, post; or zero), escaped, as it appears in
 * a text report. */
SHK_HIDDEN void shk_stat_field_text(shk_stat_w_t *w, const shk_stat_field_t *f,
                                    const void *rec);

/*
 * Write rec as section sec. Line sections: JSON, its members into the open
 * object; text, its lines. Table sections: JSON, one object in the open
 * array; text, one row (if sec->shown allows). shk_stat_table_open opens a
 * table section's array (JSON, under sec->key) or writes its title and
 * header row (text); shk_stat_table_close closes it.
 */
SHK_HIDDEN void shk_stat_section(shk_stat_w_t *w, const shk_stat_section_t *sec,
                                 const void *rec);
SHK_HIDDEN void shk_stat_table_open(shk_stat_w_t *w, const shk_stat_section_t *sec);
SHK_HIDDEN void shk_stat_table_close(shk_stat_w_t *w, const shk_stat_section_t *sec);

/* ---- the records and their tables (shk_stat_tables.c) ---------------------------------- */

/* The document's own line: {"instance": ...} / "instance NAME". */
typedef struct shk_stat_doc_s {
    const char *instance;
} shk_stat_doc_t;

/* A zone, read once from its handle. */
typedef struct shk_stat_zone_s {
    const char *name, *tag; /* the handle's own (terminated) strings */
    size_t size;
    unsigned kind; /* SHK_ZONE_ANON, SHK_ZONE_NAMED */
    uint64_t generation;
    pid_t creator;
    int creator_alive;
} shk_stat_zone_t;

/* A bus slot with its index. */
typedef struct shk_stat_slot_s {
    unsigned slot;
    shk_bus_slot_stats_t s;
} shk_stat_slot_t;

/* A channel store slot with its index. */
typedef struct shk_stat_cslot_s {
    unsigned slot;
    shk_chan_slot_stats_t s;
} shk_stat_cslot_t;

/* A part of a report that could not be read: which one (a lock's or a
 * slot's index) and the message. */
typedef struct shk_stat_fault_s {
    unsigned index;
    const char *error;
} shk_stat_fault_t;

/* One entry of `shmkit zones`: its names, and the zone or why not. */
typedef struct shk_stat_listed_s {
    char instance[SHK_ZONE_NAME_MAX + 1];
    char zone[SHK_ZONE_NAME_MAX + 1];
    shk_stat_zone_t z;
    const char *error; /* NULL when the zone was attached */
} shk_stat_listed_t;

/* The sections (records in brackets). */
extern const shk_stat_section_t shk_stat_doc_sec SHK_HIDDEN;        /* shk_stat_doc_t */
extern const shk_stat_section_t shk_stat_zone_sec SHK_HIDDEN;       /* shk_stat_zone_t */
extern const shk_stat_section_t shk_stat_slab_sec SHK_HIDDEN;       /* shk_slab_stats_t */
extern const shk_stat_section_t shk_stat_slab_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_class_sec SHK_HIDDEN;      /* shk_slab_class_stat_t */
extern const shk_stat_section_t shk_stat_lock_sec SHK_HIDDEN;       /* shk_zone_lock_t */
extern const shk_stat_section_t shk_stat_lock_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_bus_sec SHK_HIDDEN;        /* shk_bus_stats_t */
extern const shk_stat_section_t shk_stat_bus_fault_sec SHK_HIDDEN;  /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_slot_sec SHK_HIDDEN;       /* shk_stat_slot_t */
extern const shk_stat_section_t shk_stat_slot_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_chan_sec SHK_HIDDEN;       /* shk_chan_stats_t */
extern const shk_stat_section_t shk_stat_chan_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_cslot_sec SHK_HIDDEN;      /* shk_stat_cslot_t */
extern const shk_stat_section_t shk_stat_cslot_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_redis_sec SHK_HIDDEN;      /* shk_redis_stats_t */
extern const shk_stat_section_t shk_stat_redis_fault_sec SHK_HIDDEN; /* shk_stat_fault_t */
extern const shk_stat_section_t shk_stat_list_sec SHK_HIDDEN;       /* shk_stat_listed_t */
extern const shk_stat_section_t shk_stat_list_fault_sec SHK_HIDDEN; /* shk_stat_listed_t */

/* Every section above, NULL-terminated (for the tests and the docs). */
extern const shk_stat_section_t *const shk_stat_sections[] SHK_HIDDEN;

#endif /* SHK_STAT_INTERNAL_H */

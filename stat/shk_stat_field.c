/*
 * shk_stat_field.c: a described field read from its record, and a section
 * (a table of fields, shk_stat_tables.c) written from one record: as JSON
 * members or one JSON object, as text lines or one table row, so both
 * outputs come from the same description.
 */
#include "shk_stat_internal.h"

#include <inttypes.h>
#include <stdio.h>

void shk_stat_value(const shk_stat_field_t *f, const void *rec, shk_stat_val_t *v)
{
    const char *p = (const char *)rec + f->off;
    memset(v, 0, sizeof *v);
    v->kind = f->kind;
    switch (f->kind) {
    case SHK_STAT_UINT:
    case SHK_STAT_BOOL:
    case SHK_STAT_INT: {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64 = 0;
        int neg;
        switch (f->size) {
        case 1: memcpy(&u8, p, 1); u64 = u8; neg = (u8 & 0x80u) != 0; break;
        case 2: memcpy(&u16, p, 2); u64 = u16; neg = (u16 & 0x8000u) != 0; break;
        case 4: memcpy(&u32, p, 4); u64 = u32; neg = (u32 & 0x80000000u) != 0; break;
        case 8: memcpy(&u64, p, 8); neg = (u64 >> 63) != 0; break;
        default: neg = 0; break; /* no such field (the tables hold none) */
        }
        if (f->kind == SHK_STAT_BOOL) {
            v->u = u64 != 0;
        } else if (f->kind == SHK_STAT_UINT) {
            v->u = u64;
        } else {
            /* sign-extend the f->size-byte value */
            if (neg && f->size < 8)
                u64 |= ~(uint64_t)0 << (f->size * 8);
            memcpy(&v->i, &u64, sizeof v->i);
        }
        break;
    }
    case SHK_STAT_CHARS:
        v->s = p;
        v->n = strnlen(p, f->size);
        break;
    case SHK_STAT_CSTR:
        memcpy(&v->s, p, sizeof v->s);
        if (!v->s)
            v->s = "";
        v->n = strlen(v->s);
        break;
    default:
        v->s = "";
        break;
    }
}

int shk_stat_value_zero(const shk_stat_val_t *v)
{
    switch (v->kind) {
    case SHK_STAT_INT: return v->i == 0;
    case SHK_STAT_CHARS:
    case SHK_STAT_CSTR: return v->n == 0;
    default: return v->u == 0;
    }
}

/* A number in decimal (the reports write many: no printf for each). */
static void put_u64(shk_stat_w_t *w, uint64_t u)
{
    char d[20];
    size_t n = sizeof d;
    do {
        d[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    shk_stat_put(w, d + n, sizeof d - n);
}

static void put_num(shk_stat_w_t *w, const shk_stat_val_t *v)
{
    if (v->kind != SHK_STAT_INT || v->i >= 0) {
        put_u64(w, v->kind == SHK_STAT_INT ? (uint64_t)v->i : v->u);
        return;
    }
    shk_stat_put(w, "-", 1);
    put_u64(w, (uint64_t)0 - (uint64_t)v->i); /* INT64_MIN too */
}

/* names[v] when the value has a name there, else NULL. */
static const char *value_name(const char *const *names, const shk_stat_val_t *v)
{
    uint64_t k;
    if (!names)
        return NULL;
    if (v->kind == SHK_STAT_INT) {
        if (v->i < 0)
            return NULL;
        k = (uint64_t)v->i;
    } else {
        k = v->u;
    }
    for (uint64_t i = 0; names[i]; i++)
        if (i == k)
            return names[i];
    return NULL;
}

/* The value alone, as text: a name, a number, or the escaped string. */
static void value_text(shk_stat_w_t *w, const shk_stat_field_t *f, const shk_stat_val_t *v)
{
    const char *name = value_name(f->tnames ? f->tnames : f->names, v);
    if (name)
        shk_stat_puts(w, name);
    else if (v->kind == SHK_STAT_BOOL)
        shk_stat_puts(w, v->u ? "true" : "false");
    else if (v->kind == SHK_STAT_CHARS || v->kind == SHK_STAT_CSTR)
        shk_stat_text_str(w, v->s, v->n);
    else
        put_num(w, v);
}

void shk_stat_field_text(shk_stat_w_t *w, const shk_stat_field_t *f, const void *rec)
{
    shk_stat_val_t v;
    shk_stat_value(f, rec, &v);
    if (f->zero && shk_stat_value_zero(&v)) {
        shk_stat_puts(w, f->zero);
        return;
    }
    if (f->pre)
        shk_stat_puts(w, f->pre);
    value_text(w, f, &v);
    if (f->post)
        shk_stat_puts(w, f->post);
}

static void field_json(shk_stat_w_t *w, const shk_stat_field_t *f, const void *rec)
{
    shk_stat_val_t v;
    const char *name;
    shk_stat_value(f, rec, &v);
    shk_stat_json_key(w, f->key);
    if (f->names) {
        /* a value without a name (a damaged record) still gives a string */
        char num[24];
        if (!(name = value_name(f->names, &v))) {
            if (v.kind == SHK_STAT_INT)
                snprintf(num, sizeof num, "%" PRId64, v.i);
            else
                snprintf(num, sizeof num, "%" PRIu64, v.u);
            name = num;
        }
        shk_stat_json_str(w, name, strlen(name));
    } else if (v.kind == SHK_STAT_BOOL) {
        shk_stat_puts(w, v.u ? "true" : "false");
    } else if (v.kind == SHK_STAT_CHARS || v.kind == SHK_STAT_CSTR) {
        shk_stat_json_str(w, v.s, v.n);
    } else {
        put_num(w, &v);
    }
}

/* Fields [i, end) are a line or a column: field i and the unlabelled
 * fields after it. Returns end. */
static unsigned group_end(const shk_stat_section_t *sec, unsigned i)
{
    unsigned e = i + 1;
    while (e < sec->nfields && !sec->fields[e].label)
        e++;
    return e;
}

/* Pad what was written since `start` to `width` columns (negative:
 * left-aligned, spaces after; positive: right-aligned, spaces before). */
static void pad_from(shk_stat_w_t *w, size_t start, int width)
{
    size_t have = w->len - start, want = (size_t)(width < 0 ? -width : width);
    if (w->failed || have >= want)
        return;
    shk_stat_pad(w, want - have);
    if (width > 0 && !w->failed) {
        memmove(w->p + start + (want - have), w->p + start, have);
        memset(w->p + start, ' ', want - have);
    }
}

/* The text of fields [i, end), those without NOTEXT. */
static void group_text(shk_stat_w_t *w, const shk_stat_section_t *sec, unsigned i, unsigned end,
                       const void *rec)
{
    for (unsigned k = i; k < end; k++)
        if (!(sec->fields[k].flags & SHK_STAT_NOTEXT))
            shk_stat_field_text(w, &sec->fields[k], rec);
}

static void lines_text(shk_stat_w_t *w, const shk_stat_section_t *sec, const void *rec)
{
    for (unsigned i = 0, end; i < sec->nfields; i = end) {
        const shk_stat_field_t *f = &sec->fields[i];
        end = group_end(sec, i);
        if (f->flags & SHK_STAT_NOTEXT)
            continue;
        if (f->flags & SHK_STAT_HIDE0) {
            shk_stat_val_t v;
            shk_stat_value(f, rec, &v);
            if (shk_stat_value_zero(&v))
                continue;
        }
        if (f->flags & SHK_STAT_HEAD) {
            shk_stat_puts(w, f->label);
            shk_stat_puts(w, " ");
        } else {
            size_t start;
            shk_stat_puts(w, sec->indent);
            start = w->len;
            shk_stat_puts(w, f->label);
            shk_stat_puts(w, " ");
            pad_from(w, start, -sec->label_width);
        }
        group_text(w, sec, i, end, rec);
        shk_stat_puts(w, "\n");
    }
}

static void row_text(shk_stat_w_t *w, const shk_stat_section_t *sec, const void *rec)
{
    if (sec->shown && !sec->shown(rec))
        return;
    shk_stat_puts(w, sec->indent);
    for (unsigned i = 0, end, cols = 0; i < sec->nfields; i = end) {
        size_t start;
        end = group_end(sec, i);
        if (sec->fields[i].flags & SHK_STAT_NOTEXT)
            continue;
        if (cols++)
            shk_stat_puts(w, " ");
        start = w->len;
        group_text(w, sec, i, end, rec);
        /* a left-aligned last column is not padded: no trailing spaces */
        if (end < sec->nfields || sec->fields[i].width > 0)
            pad_from(w, start, sec->fields[i].width);
    }
    shk_stat_puts(w, "\n");
}

void shk_stat_section(shk_stat_w_t *w, const shk_stat_section_t *sec, const void *rec)
{
    if (w->json) {
        if (sec->style == SHK_STAT_TABLE)
            shk_stat_json_open(w, NULL, '{');
        for (unsigned i = 0; i < sec->nfields; i++)
            if (sec->fields[i].key)
                field_json(w, &sec->fields[i], rec);
        if (sec->style == SHK_STAT_TABLE)
            shk_stat_json_close(w);
    } else if (sec->style == SHK_STAT_TABLE) {
        row_text(w, sec, rec);
    } else {
        lines_text(w, sec, rec);
    }
}

void shk_stat_table_open(shk_stat_w_t *w, const shk_stat_section_t *sec)
{
    if (w->json) {
        shk_stat_json_open(w, sec->key, '[');
        return;
    }
    if (sec->title) {
        shk_stat_puts(w, sec->title);
        shk_stat_puts(w, "\n");
    }
    shk_stat_puts(w, sec->indent);
    for (unsigned i = 0, end, cols = 0; i < sec->nfields; i = end) {
        const shk_stat_field_t *f = &sec->fields[i];
        size_t start;
        end = group_end(sec, i);
        if (f->flags & SHK_STAT_NOTEXT)
            continue;
        if (cols++)
            shk_stat_puts(w, " ");
        start = w->len;
        shk_stat_puts(w, f->label ? f->label : "");
        if (end < sec->nfields || f->width > 0)
            pad_from(w, start, f->width);
    }
    shk_stat_puts(w, "\n");
}

void shk_stat_table_close(shk_stat_w_t *w, const shk_stat_section_t *sec)
{
    (void)sec;
    shk_stat_json_close(w);
}

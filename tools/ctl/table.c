/* table.c: aligned, width-aware text tables (see table.h). */
#include "table.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CTL_TABLE_GAP 2 /* spaces between columns */

struct ctl_table_s {
    size_t ncols;
    char *headings[CTL_TABLE_MAX_COLS];
    bool right[CTL_TABLE_MAX_COLS];
    size_t flex;  /* column index, or ncols for none */
    char **cells; /* rows * ncols, row-major */
    size_t rows, cap;
};

/* Length of the valid UTF-8 sequence at s (its code point in *cp), or 0
 * when s does not start one. */
static size_t ctl_utf8_next(const unsigned char *s, uint32_t *cp)
{
    uint32_t c = s[0], min;
    size_t n;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        c &= 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        c &= 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* Columns a code point takes: 2 for East Asian wide and full-width ones. */
static size_t ctl_cp_width(uint32_t c)
{
    if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf && c != 0x303f) ||
        (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
        (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
        (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
        (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd))
        return 2;
    return 1;
}

size_t ctl_text_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t w = 0;
    while (*p) {
        uint32_t cp;
        size_t n = ctl_utf8_next(p, &cp);
        if (n == 0) {
            w++; /* shown as one replacement column */
            p++;
            continue;
        }
        w += ctl_cp_width(cp);
        p += n;
    }
    return w;
}

void ctl_text_clean(const char *s, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t o = 0;
    if (outlen == 0)
        return;
    while (*p) {
        uint32_t cp;
        size_t n = ctl_utf8_next(p, &cp);
        if (n == 0) {
            if (o + 1 >= outlen)
                break;
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n >= outlen)
            break;
        if (cp < 0x20 || cp == 0x7f) {
            out[o++] = ' ';
        } else {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
}

void ctl_text_cut(const char *s, size_t width, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, w = 0, keep_w = width >= 3 ? width - 3 : 0, keep_o = 0;
    bool cut = false;
    if (outlen == 0)
        return;
    /* copy while it fits; remember where "..." would have to start */
    while (*p) {
        uint32_t cp = '?';
        size_t n = ctl_utf8_next(p, &cp), cw;
        if (n == 0)
            n = 1;
        cw = n == 1 && *p >= 0x80 ? 1 : ctl_cp_width(cp);
        if (w + cw > width || o + n >= outlen) {
            cut = true;
            break;
        }
        if (w + cw <= keep_w)
            keep_o = o + n;
        memcpy(out + o, p, n);
        o += n;
        w += cw;
        p += n;
    }
    if (cut) {
        o = keep_o;
        for (size_t i = 0; i < 3 && i < width && o + 1 < outlen; i++)
            out[o++] = '.';
    }
    out[o] = '\0';
}

static char *ctl_table_copy(const char *s)
{
    char buf[CTL_TABLE_CELL_MAX];
    ctl_text_clean(s ? s : "-", buf, sizeof(buf));
    return strdup(buf);
}

ctl_table_t *ctl_table_new(size_t ncols, const char *const *headings)
{
    ctl_table_t *t;
    if (ncols == 0 || ncols > CTL_TABLE_MAX_COLS || !headings)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->flex = ncols;
    for (size_t i = 0; i < ncols; i++) {
        t->headings[i] = ctl_table_copy(headings[i]);
        if (!t->headings[i]) {
            ctl_table_destroy(&t);
            return NULL;
        }
    }
    return t;
}

void ctl_table_destroy(ctl_table_t **tp)
{
    ctl_table_t *t = tp ? *tp : NULL;
    if (!t)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        free(t->headings[i]);
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
    *tp = NULL;
}

void ctl_table_align_right(ctl_table_t *t, size_t col)
{
    if (col < t->ncols)
        t->right[col] = true;
}

void ctl_table_set_flex(ctl_table_t *t, size_t col)
{
    if (col < t->ncols)
        t->flex = col;
}

size_t ctl_table_rows(const ctl_table_t *t)
{
    return t->rows;
}

int ctl_table_add(ctl_table_t *t, const char *const *cells)
{
    char **row;
    if (t->rows >= CTL_TABLE_MAX_ROWS)
        return -1;
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **grown;
        if (cap > CTL_TABLE_MAX_ROWS)
            cap = CTL_TABLE_MAX_ROWS;
        grown = realloc(t->cells, cap * t->ncols * sizeof(*grown));
        if (!grown)
            return -1;
        t->cells = grown;
        t->cap = cap;
    }
    row = t->cells + t->rows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = ctl_table_copy(cells[i]);
        if (!row[i]) {
            while (i > 0)
                free(row[--i]);
            return -1;
        }
    }
    t->rows++;
    return 0;
}

static void ctl_table_print_row(const ctl_table_t *t, FILE *out, char *const *row,
                                const size_t *widths)
{
    char cut[CTL_TABLE_CELL_MAX];
    for (size_t c = 0; c < t->ncols; c++) {
        const char *cell = row[c];
        size_t w;
        if (c == t->flex && ctl_text_width(cell) > widths[c]) {
            ctl_text_cut(cell, widths[c], cut, sizeof(cut));
            cell = cut;
        }
        w = ctl_text_width(cell);
        if (c > 0)
            fprintf(out, "%*s", CTL_TABLE_GAP, "");
        if (t->right[c])
            fprintf(out, "%*s%s", (int)(widths[c] - w), "", cell);
        else if (c + 1 == t->ncols)
            fputs(cell, out); /* no trailing blanks */
        else
            fprintf(out, "%s%*s", cell, (int)(widths[c] - w), "");
    }
    fputc('\n', out);
}

void ctl_table_print(const ctl_table_t *t, FILE *out, size_t width)
{
    size_t widths[CTL_TABLE_MAX_COLS], total = 0;
    for (size_t c = 0; c < t->ncols; c++) {
        widths[c] = ctl_text_width(t->headings[c]);
        for (size_t r = 0; r < t->rows; r++) {
            size_t w = ctl_text_width(t->cells[r * t->ncols + c]);
            if (w > widths[c])
                widths[c] = w;
        }
        total += widths[c] + (c ? CTL_TABLE_GAP : 0);
    }
    if (width > 0 && total > width && t->flex < t->ncols) {
        size_t others = total - widths[t->flex];
        size_t room = width > others ? width - others : 0;
        size_t min = ctl_text_width(t->headings[t->flex]);
        if (min < CTL_TABLE_FLEX_MIN)
            min = CTL_TABLE_FLEX_MIN;
        if (room < min)
            room = min;
        if (room < widths[t->flex])
            widths[t->flex] = room;
    }
    ctl_table_print_row(t, out, t->headings, widths);
    for (size_t r = 0; r < t->rows; r++)
        ctl_table_print_row(t, out, t->cells + r * t->ncols, widths);
}

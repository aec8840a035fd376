/* table.h: aligned text tables for imtask-ctl output: columns as wide as
 * their widest cell (UTF-8 aware), numbers right-aligned, one flexible
 * column cut with "..." so rows fit a width, control bytes made harmless. */
#ifndef CTL_TABLE_H
#define CTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define CTL_TABLE_MAX_COLS 16
#define CTL_TABLE_MAX_ROWS 200000
#define CTL_TABLE_CELL_MAX 1024 /* bytes kept of a cell */
#define CTL_TABLE_FLEX_MIN 12   /* the flexible column is never cut narrower */

typedef struct ctl_table_s ctl_table_t;

/* A table with ncols columns and these headings (copied). NULL on bad
 * arguments or out of memory. */
ctl_table_t *ctl_table_new(size_t ncols, const char *const *headings);
void ctl_table_destroy(ctl_table_t **tp); /* NULL no-op; sets *tp NULL */

/* Right-align column col (for numbers). */
void ctl_table_align_right(ctl_table_t *t, size_t col);
/* Column col is the one cut so that rows fit the print width. */
void ctl_table_set_flex(ctl_table_t *t, size_t col);

/* Add a row of ncols cells (copied; NULL prints as "-"). Returns 0, or -1
 * when the table is full (CTL_TABLE_MAX_ROWS) or memory ran out. */
int ctl_table_add(ctl_table_t *t, const char *const *cells);
size_t ctl_table_rows(const ctl_table_t *t);

/* Print the headings and rows; width > 0 cuts the flexible column so rows
 * fit in width columns (not below CTL_TABLE_FLEX_MIN). */
void ctl_table_print(const ctl_table_t *t, FILE *out, size_t width);

/* Display columns of UTF-8 text (East Asian wide characters count 2). */
size_t ctl_text_width(const char *s);

/* Copy s into out (outlen bytes) cut to at most width columns; when cut,
 * the end is "..." (within width). Never splits a UTF-8 sequence. */
void ctl_text_cut(const char *s, size_t width, char *out, size_t outlen);

/* Copy s into out with control bytes turned into spaces and invalid UTF-8
 * bytes into '?', cut to outlen - 1 bytes on a character boundary. */
void ctl_text_clean(const char *s, char *out, size_t outlen);

#endif

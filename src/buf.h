/*
 * buf.h - a growable byte buffer with a hard size limit.
 *
 * Every buffer fed by the network or a file has a cap; going over it is an
 * error (-1), never a silent realloc (curl dynbuf "toobig"). The data is
 * always NUL-terminated so text can be used in place.
 *
 * struct buf is embedded by callers; treat its fields as read-only.
 */
#ifndef FNRUN_BUF_H
#define FNRUN_BUF_H

#include <stddef.h>

struct buf {
	char *data; /* NUL-terminated; NULL until the first append */
	size_t len; /* bytes used, excluding the NUL */
	size_t cap; /* bytes allocated */
	size_t max; /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buf may be reused after buf_init(). */
void buf_cleanup(struct buf *b);
/* Empties the buffer and keeps its storage. */
void buf_reset(struct buf *b);
/* Returns 0, or -1 (buffer unchanged) when len would exceed max. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Gives the storage to the caller (free() it) and resets the buf. */
char *buf_steal(struct buf *b);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);

#endif

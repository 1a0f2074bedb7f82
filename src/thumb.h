/*
 * thumb.h - thumbnails of PNG results, with libpng.
 *
 * Blocking file work: call it from libuv's thread pool, never on the loop.
 * It keeps no state between calls, so calls on different files may run at
 * once on different threads.
 */
#ifndef FNRUN_THUMB_H
#define FNRUN_THUMB_H

#include <stddef.h>

#include "err.h"

/* Largest width or height thumb_png() decodes (pixels). */
#define THUMB_MAX_SIDE 16384

/*
 * Decodes the PNG src (any colour type and bit depth; interlaced too) to
 * 8-bit RGB, alpha composited on white, and writes it to dst as an 8-bit
 * RGB PNG whose longer side is at most max_side pixels: each output pixel
 * is the average of the box of source pixels it covers. An image already
 * within max_side keeps its size (never scaled up). dst appears whole or
 * not at all: a temp file in dst's directory is renamed over it.
 *
 * Returns 0, or -1 with err set: ERR_INVALID when src is not a PNG (or a
 * corrupt one) or max_side is outside 1..THUMB_MAX_SIDE; ERR_TOO_LARGE for
 * an image wider or taller than THUMB_MAX_SIDE; ERR_IO when a file cannot
 * be read or written. On failure dst is untouched and no temp file stays.
 */
int thumb_png(const char *src, const char *dst, int max_side, struct err *err);

#define THUMB_HEADER 24 /* bytes of a PNG that hold its width and height */

/*
 * The width and height in a PNG's first n bytes (THUMB_HEADER are enough):
 * 0, or -1 when they do not start a PNG with a size.
 */
int thumb_png_header(const unsigned char *b, size_t n, int *w, int *h);

/*
 * The width and height in the PNG header of the file at path (its first
 * 24 bytes; nothing is decoded). Returns 0, or -1 with err: ERR_IO when it
 * cannot be read, ERR_INVALID when it does not start like a PNG.
 */
int thumb_png_size(const char *path, int *w, int *h, struct err *err);

#endif

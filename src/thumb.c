/*
 * thumb.c - thumbnails of PNG results: decode with libpng, shrink by box
 * averaging, write with libpng, atomically.
 *
 * Invariants:
 * 1. Memory is bounded by the output, not the input: a non-interlaced PNG
 *    is decoded one row at a time and each row is summed into the output
 *    row it belongs to. Only an interlaced PNG (whose last pass finishes
 *    every row) is held whole, up to THUMB_INTERLACED_MAX bytes.
 * 2. Each source pixel belongs to exactly one output pixel: column x goes
 *    to x * dw / sw, row y to y * dh / sh (integer division), so the boxes
 *    tile the source and the picture's mean survives the shrink.
 * 3. libpng reports errors by longjmp: every resource a decode or encode
 *    owns lives in a context struct of the caller's frame, never in a local
 *    of the function that called setjmp, and is freed by the caller.
 * 4. dst is replaced by rename(2) of a complete temp file in its own
 *    directory; on any failure the temp file is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thumb.h"
#include "util.h"

/* Bytes of decoded RGBA an interlaced PNG may take (it is held whole). */
#define THUMB_INTERLACED_MAX ((size_t)256 << 20)

/* The box scaler: source rows in, output pixels (8-bit RGB) out. */
struct box {
	int sw, sh;       /* source size, pixels */
	int dw, dh;       /* output size, pixels */
	uint32_t *xmap;   /* sw entries: output column of each source column */
	uint32_t *colcnt; /* dw entries: source columns in each output column */
	uint64_t *acc;    /* dw * 3 sums of the output row being built */
	uint32_t rows;    /* source rows summed into acc */
	unsigned char *out; /* dw * dh * 3 bytes, row by row; owned */
};

struct thumb_read {
	FILE *fp;
	int io_error;       /* 1: a read failed (ERR_IO), else a format error */
	char msg[160];      /* libpng's error text */
	png_structp png;
	png_infop info;
	unsigned char *rows; /* one RGBA row, or the whole image if interlaced */
	png_bytep *ptrs;     /* interlaced: the start of each row in rows */
	struct box box;
};

struct thumb_write {
	FILE *fp;
	char msg[160];
	png_structp png;
	png_infop info;
};

/* ---- the box scaler ---- */

static void box_init(struct box *b, int sw, int sh, int dw, int dh)
{
	memset(b, 0, sizeof *b);
	b->sw = sw;
	b->sh = sh;
	b->dw = dw;
	b->dh = dh;
	b->xmap = xcalloc((size_t)sw, sizeof *b->xmap);
	b->colcnt = xcalloc((size_t)dw, sizeof *b->colcnt);
	b->acc = xcalloc((size_t)dw * 3, sizeof *b->acc);
	b->out = xcalloc((size_t)dw * dh, 3);
	for (int x = 0; x < sw; x++) {
		b->xmap[x] = (uint32_t)((uint64_t)x * (uint64_t)dw / (uint64_t)sw);
		b->colcnt[b->xmap[x]]++;
	}
}

static void box_cleanup(struct box *b)
{
	free(b->xmap);
	free(b->colcnt);
	free(b->acc);
	free(b->out);
	memset(b, 0, sizeof *b);
}

static int box_out_row(const struct box *b, int y)
{
	return (int)((uint64_t)y * (uint64_t)b->dh / (uint64_t)b->sh);
}

/* One colour channel over white: c * a + 255 * (1 - a), rounded. */
static unsigned over_white(unsigned c, unsigned a)
{
	return (c * a + 255u * (255u - a) + 127u) / 255u;
}

/* Writes the averages of acc as output row oy and clears acc. */
static void box_flush(struct box *b, int oy)
{
	unsigned char *o = b->out + (size_t)oy * (size_t)b->dw * 3;

	for (int x = 0; x < b->dw; x++) {
		uint64_t n = (uint64_t)b->colcnt[x] * b->rows;

		for (int c = 0; c < 3; c++)
			o[x * 3 + c] = (unsigned char)((b->acc[x * 3 + c] + n / 2) / n);
	}
	memset(b->acc, 0, (size_t)b->dw * 3 * sizeof *b->acc);
	b->rows = 0;
}

/* Adds source row y (8-bit RGBA, sw pixels); rows come in order 0..sh-1. */
static void box_row(struct box *b, int y, const unsigned char *rgba)
{
	int oy = box_out_row(b, y);

	for (int x = 0; x < b->sw; x++) {
		const unsigned char *p = rgba + (size_t)x * 4;
		uint64_t *a = b->acc + (size_t)b->xmap[x] * 3;

		a[0] += over_white(p[0], p[3]);
		a[1] += over_white(p[1], p[3]);
		a[2] += over_white(p[2], p[3]);
	}
	b->rows++;
	if (y + 1 == b->sh || box_out_row(b, y + 1) != oy)
		box_flush(b, oy);
}

/* The output size: the longer side becomes at most max_side, never larger. */
static void fit(int sw, int sh, int max_side, int *dw, int *dh)
{
	int lng = sw > sh ? sw : sh, shrt = sw > sh ? sh : sw;
	int dl = lng < max_side ? lng : max_side;
	int ds = (int)(((uint64_t)shrt * (uint64_t)dl + (uint64_t)lng / 2) / (uint64_t)lng);

	if (ds < 1)
		ds = 1;
	*dw = sw > sh ? dl : ds;
	*dh = sw > sh ? ds : dl;
}

/* ---- libpng callbacks ---- */

static void on_png_error(png_structp png, png_const_charp msg)
{
	char *buf = png_get_error_ptr(png);

	snprintf(buf, 160, "%s", msg);
	png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg; /* ancillary-chunk trouble; the pixels are still good */
}

static void on_read(png_structp png, png_bytep data, size_t len)
{
	struct thumb_read *r = png_get_io_ptr(png);

	if (fread(data, 1, len, r->fp) == len)
		return;
	r->io_error = ferror(r->fp) != 0;
	png_error(png, r->io_error ? "read error" : "the file ends too early");
}

/* ---- decoding ---- */

/* Asks libpng for 8-bit RGBA whatever the file holds. */
static void read_transforms(png_structp png, png_infop info)
{
	int type = png_get_color_type(png, info);
	int depth = png_get_bit_depth(png, info);

	if (type == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (png_get_valid(png, info, PNG_INFO_tRNS))
		png_set_tRNS_to_alpha(png);
	if (depth == 16)
		png_set_scale_16(png);
	if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
		png_set_gray_to_rgb(png);
	/* Opaque pictures get alpha 255, so one path composites every row. */
	png_set_filler(png, 0xff, PNG_FILLER_AFTER);
}

static void read_interlaced(struct thumb_read *r, int w, int h)
{
	r->ptrs = xcalloc((size_t)h, sizeof *r->ptrs);
	for (int y = 0; y < h; y++)
		r->ptrs[y] = r->rows + (size_t)y * (size_t)w * 4;
	png_read_image(r->png, r->ptrs);
	for (int y = 0; y < h; y++)
		box_row(&r->box, y, r->rows + (size_t)y * (size_t)w * 4);
}

/*
 * Decodes r->fp (past its 8-byte signature) into r->box. All allocations
 * go into r (invariant 3). Returns 0 or -1 with err set.
 */
static int decode(struct thumb_read *r, int max_side, struct err *err)
{
	png_uint_32 w, h;
	int dw, dh, passes;

	if (setjmp(png_jmpbuf(r->png))) {
		err_set(err, r->io_error ? ERR_IO : ERR_INVALID, "not a valid PNG: %s", r->msg);
		return -1;
	}
	png_set_read_fn(r->png, r, on_read);
	png_set_sig_bytes(r->png, 8);
	png_read_info(r->png, r->info);
	w = png_get_image_width(r->png, r->info);
	h = png_get_image_height(r->png, r->info);
	if (w > THUMB_MAX_SIDE || h > THUMB_MAX_SIDE) {
		err_set(err, ERR_TOO_LARGE, "image is %ux%u; the limit is %dx%d", (unsigned)w,
			(unsigned)h, THUMB_MAX_SIDE, THUMB_MAX_SIDE);
		return -1;
	}
	read_transforms(r->png, r->info);
	passes = png_set_interlace_handling(r->png);
	png_read_update_info(r->png, r->info);
	if (png_get_rowbytes(r->png, r->info) != (size_t)w * 4)
		png_error(r->png, "unexpected row layout");
	if (passes > 1 && (size_t)w * h * 4 > THUMB_INTERLACED_MAX) {
		err_set(err, ERR_TOO_LARGE, "interlaced image %ux%u is over %zu MiB decoded",
			(unsigned)w, (unsigned)h, THUMB_INTERLACED_MAX >> 20);
		return -1;
	}
	fit((int)w, (int)h, max_side, &dw, &dh);
	box_init(&r->box, (int)w, (int)h, dw, dh);
	r->rows = xmalloc((size_t)w * 4 * (passes > 1 ? h : 1));
	if (passes > 1) {
		read_interlaced(r, (int)w, (int)h);
		return 0;
	}
	for (png_uint_32 y = 0; y < h; y++) {
		png_read_row(r->png, r->rows, NULL);
		box_row(&r->box, (int)y, r->rows);
	}
	return 0;
}

/* Opens src and checks the PNG signature. Returns 0 or -1 with err set. */
static int open_png(struct thumb_read *r, const char *src, struct err *err)
{
	unsigned char sig[8];
	size_t n;

	r->fp = fopen(src, "rb");
	if (r->fp == NULL) {
		err_set(err, ERR_IO, "%s: %s", src, strerror(errno));
		return -1;
	}
	n = fread(sig, 1, sizeof sig, r->fp);
	if (n < sizeof sig && ferror(r->fp)) {
		err_set(err, ERR_IO, "%s: read error", src);
		return -1;
	}
	if (n < sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
		err_set(err, ERR_INVALID, "%s: not a PNG file", src);
		return -1;
	}
	return 0;
}

static void read_cleanup(struct thumb_read *r)
{
	if (r->png != NULL)
		png_destroy_read_struct(&r->png, &r->info, NULL);
	if (r->fp != NULL)
		fclose(r->fp);
	free(r->rows);
	free(r->ptrs);
	box_cleanup(&r->box);
}

/* ---- encoding ---- */

/* Writes the picture to w->fp. Returns 0 or -1 with err set. */
static int encode(struct thumb_write *w, const struct box *b, struct err *err)
{
	if (setjmp(png_jmpbuf(w->png))) {
		err_set(err, ERR_IO, "writing PNG: %s", w->msg);
		return -1;
	}
	png_init_io(w->png, w->fp);
	png_set_IHDR(w->png, w->info, (png_uint_32)b->dw, (png_uint_32)b->dh, 8,
		     PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
		     PNG_FILTER_TYPE_DEFAULT);
	png_write_info(w->png, w->info);
	for (int y = 0; y < b->dh; y++)
		png_write_row(w->png, b->out + (size_t)y * (size_t)b->dw * 3);
	png_write_end(w->png, w->info);
	return 0;
}

/* "<dir of dst>/.thumb-XXXXXX" into tmp, for mkstemp. */
static int temp_name(const char *dst, char *tmp, size_t size)
{
	const char *slash = strrchr(dst, '/');
	int dirlen = slash ? (int)(slash - dst) : 1;
	const char *dir = slash ? dst : ".";

	if (slash == dst)
		dirlen = 0; /* dst in "/": "/.thumb-..." */
	return snprintf(tmp, size, "%.*s/.thumb-XXXXXX", dirlen, dir) < (int)size ? 0 : -1;
}

/* Encodes into an open temp file; closes it. Returns 0 or -1 with err set. */
static int write_temp(int fd, const struct box *b, struct err *err)
{
	struct thumb_write w = {0};
	int rc = -1;

	w.fp = fdopen(fd, "wb");
	if (w.fp == NULL) {
		close(fd);
		err_set(err, ERR_IO, "fdopen: %s", strerror(errno));
		return -1;
	}
	w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w.msg, on_png_error,
					on_png_warning);
	w.info = w.png ? png_create_info_struct(w.png) : NULL;
	if (w.info == NULL)
		err_set(err, ERR_IO, "libpng: out of memory");
	else
		rc = encode(&w, b, err);
	if (w.png != NULL)
		png_destroy_write_struct(&w.png, &w.info);
	if (fflush(w.fp) != 0 || ferror(w.fp)) {
		err_set(err, ERR_IO, "write: %s", strerror(errno));
		rc = -1;
	}
	if (fclose(w.fp) != 0) {
		err_set(err, ERR_IO, "close: %s", strerror(errno));
		rc = -1;
	}
	return rc;
}

static int write_atomic(const char *dst, const struct box *b, struct err *err)
{
	char tmp[4096];
	int fd;

	if (temp_name(dst, tmp, sizeof tmp) < 0) {
		err_set(err, ERR_IO, "%s: path too long", dst);
		return -1;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		err_set(err, ERR_IO, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	/* mkstemp makes 0600; a thumbnail is as readable as any output. */
	if (fchmod(fd, 0644) < 0 || write_temp(fd, b, err) < 0) {
		err_set(err, ERR_IO, "%s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, dst) < 0) {
		err_set(err, ERR_IO, "rename to %s: %s", dst, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int thumb_png(const char *src, const char *dst, int max_side, struct err *err)
{
	struct thumb_read r = {0};
	int rc = -1;

	if (max_side < 1 || max_side > THUMB_MAX_SIDE) {
		err_set(err, ERR_INVALID, "max_side: must be from 1 to %d", THUMB_MAX_SIDE);
		return -1;
	}
	if (open_png(&r, src, err) < 0)
		goto out;
	r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r.msg, on_png_error,
				       on_png_warning);
	r.info = r.png ? png_create_info_struct(r.png) : NULL;
	if (r.info == NULL) {
		err_set(err, ERR_IO, "libpng: out of memory");
		goto out;
	}
	if (decode(&r, max_side, err) == 0)
		rc = write_atomic(dst, &r.box, err);
out:
	read_cleanup(&r);
	return rc;
}

int thumb_png_header(const unsigned char *b, size_t n, int *w, int *h)
{
	static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

	if (n < THUMB_HEADER || memcmp(b, sig, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0)
		return -1;
	*w = (int)((uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19]);
	*h = (int)((uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23]);
	return *w > 0 && *h > 0 ? 0 : -1;
}

int thumb_png_size(const char *path, int *w, int *h, struct err *err)
{
	unsigned char b[THUMB_HEADER];
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		err_set(err, ERR_IO, "open %s: %s", path, strerror(errno));
		return -1;
	}
	got = read(fd, b, sizeof b);
	close(fd);
	if (thumb_png_header(b, got > 0 ? (size_t)got : 0, w, h) < 0) {
		err_set(err, ERR_INVALID, "%s is not a PNG with a size", path);
		return -1;
	}
	return 0;
}

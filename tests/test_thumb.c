/*
 * test_thumb.c - thumbnails (thumb.c): sizes, the mean of the picture, every
 * colour type, errors, and no temp file left behind. Inputs are written and
 * outputs read back with libpng directly.
 */
#include <check.h>
#include <dirent.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "thumb.h"

/* A picture to write: w x h pixels of `channels` samples of `depth` bits. */
struct pic {
	int w, h;
	int type;      /* PNG_COLOR_TYPE_* */
	int depth;     /* bits per sample */
	int interlace; /* PNG_INTERLACE_NONE or PNG_INTERLACE_ADAM7 */
	/* Sample c of pixel (x, y), in 0 .. 2^depth - 1. */
	unsigned (*sample)(int x, int y, int c);
};

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

static const char *tpath(const char *name)
{
	static char p[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof p[i], "%s/%s", tu_tmpdir(), name);
	return p[i];
}

static int channels_of(int type)
{
	switch (type) {
	case PNG_COLOR_TYPE_GRAY:
	case PNG_COLOR_TYPE_PALETTE:
		return 1;
	case PNG_COLOR_TYPE_GRAY_ALPHA:
		return 2;
	case PNG_COLOR_TYPE_RGB:
		return 3;
	default:
		return 4;
	}
}

/* Packs one row of samples as the PNG format lays them out. */
static void pack_row(const struct pic *p, int y, unsigned char *row)
{
	int ch = channels_of(p->type), bit = 0;

	memset(row, 0, ((size_t)p->w * ch * p->depth + 7) / 8);
	for (int x = 0; x < p->w; x++) {
		for (int c = 0; c < ch; c++) {
			unsigned v = p->sample(x, y, c);

			if (p->depth == 16) {
				row[bit / 8] = (unsigned char)(v >> 8);
				row[bit / 8 + 1] = (unsigned char)v;
			} else {
				row[bit / 8] |= (unsigned char)(v << (8 - p->depth - bit % 8));
			}
			bit += p->depth;
		}
	}
}

static void write_pic(const char *path, const struct pic *p, const png_color *palette,
		      int npalette)
{
	FILE *f = fopen(path, "wb");
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	size_t rowbytes = ((size_t)p->w * channels_of(p->type) * p->depth + 7) / 8;
	unsigned char *row = malloc(rowbytes);
	int passes;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
	png_init_io(png, f);
	png_set_IHDR(png, info, (png_uint_32)p->w, (png_uint_32)p->h, p->depth, p->type,
		     p->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	if (palette != NULL)
		png_set_PLTE(png, info, palette, npalette);
	png_write_info(png, info);
	passes = png_set_interlace_handling(png);
	for (int pass = 0; pass < passes; pass++) {
		for (int y = 0; y < p->h; y++) {
			pack_row(p, y, row);
			png_write_row(png, row);
		}
	}
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	fclose(f);
	free(row);
}

struct rgb {
	int w, h;
	unsigned char *px; /* w * h * 3 */
};

/* Reads an output back; it must be 8-bit RGB, not interlaced. */
static struct rgb read_rgb(const char *path)
{
	FILE *f = fopen(path, "rb");
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	struct rgb r;

	ck_assert_msg(f != NULL, "%s missing", path);
	ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
	png_init_io(png, f);
	png_read_info(png, info);
	ck_assert_int_eq(png_get_bit_depth(png, info), 8);
	ck_assert_int_eq(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
	r.w = (int)png_get_image_width(png, info);
	r.h = (int)png_get_image_height(png, info);
	r.px = malloc((size_t)r.w * r.h * 3);
	for (int y = 0; y < r.h; y++)
		png_read_row(png, r.px + (size_t)y * r.w * 3, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	fclose(f);
	return r;
}

static double rgb_mean(const struct rgb *r, int c)
{
	double sum = 0;

	for (int i = 0; i < r->w * r->h; i++)
		sum += r->px[i * 3 + c];
	return sum / (r->w * r->h);
}

/* Files in the temp dir other than "." and "..". */
static int dir_entries(void)
{
	DIR *d = opendir(tu_tmpdir());
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* ---- samples ---- */

/* A smooth RGB pattern whose three channels differ. */
static unsigned grad(int x, int y, int c)
{
	return (unsigned)(c == 0 ? x * 7 + y : c == 1 ? y * 3 : (x * y) / 5) % 256;
}

/* Deterministic noise: an integer hash of (x, y, c). */
static unsigned noise(int x, int y, int c)
{
	uint32_t h = (uint32_t)x * 73856093u ^ (uint32_t)y * 19349663u ^ (uint32_t)c * 83492791u;

	h ^= h >> 13;
	h *= 0x5bd1e995u;
	h ^= h >> 15;
	return h % 256;
}

/* Red at alpha 128 left, fully transparent black right. */
static unsigned half_red(int x, int y, int c)
{
	static const unsigned left[4] = {255, 0, 0, 128}, right[4] = {0, 0, 0, 0};

	(void)y;
	return x < 4 ? left[c] : right[c];
}

static unsigned grey16(int x, int y, int c)
{
	(void)x, (void)y, (void)c;
	return 0x8080; /* 128 in 8 bits */
}

/* 1-bit grey stripes: columns alternate black and white. */
static unsigned stripes(int x, int y, int c)
{
	(void)y, (void)c;
	return (unsigned)x % 2;
}

/* Grey 200 at alpha 0 top, grey 0 at alpha 255 bottom. */
static unsigned grey_alpha(int x, int y, int c)
{
	(void)x;
	if (c == 0)
		return y < 2 ? 200 : 0;
	return y < 2 ? 0 : 255;
}

static unsigned palette_index(int x, int y, int c)
{
	(void)y, (void)c;
	return (unsigned)x % 3;
}

/* ---- sizes ---- */

static void check_size(int w, int h, int max_side, int want_w, int want_h)
{
	struct pic p = {w, h, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, grad};
	struct err err = {0};
	struct rgb r;

	write_pic(tpath("in.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), max_side, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, want_w);
	ck_assert_int_eq(r.h, want_h);
	free(r.px);
}

START_TEST(wide)
{
	check_size(400, 100, 64, 64, 16);
	check_size(1000, 3, 100, 100, 1); /* a sliver keeps one row */
}
END_TEST

START_TEST(tall)
{
	check_size(90, 300, 60, 18, 60);
	check_size(256, 256, 64, 64, 64);
}
END_TEST

START_TEST(smaller_is_untouched)
{
	struct pic p = {30, 20, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, grad};
	struct err err = {0};
	struct rgb r;

	write_pic(tpath("in.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 64, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 30);
	ck_assert_int_eq(r.h, 20);
	for (int y = 0; y < 20; y++)
		for (int x = 0; x < 30; x++)
			for (int c = 0; c < 3; c++)
				ck_assert_uint_eq(r.px[(y * 30 + x) * 3 + c], grad(x, y, c));
	free(r.px);
	/* Exactly max_side stays as it is too. */
	check_size(64, 10, 64, 64, 10);
}
END_TEST

/* ---- pixels ---- */

START_TEST(mean_preserved)
{
	struct pic p = {333, 217, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, noise};
	struct err err = {0};
	struct rgb r;
	double want[3] = {0};

	for (int y = 0; y < p.h; y++)
		for (int x = 0; x < p.w; x++)
			for (int c = 0; c < 3; c++)
				want[c] += noise(x, y, c);
	write_pic(tpath("in.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 50, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 50);
	ck_assert_int_eq(r.h, 33);
	for (int c = 0; c < 3; c++) {
		double m = want[c] / (p.w * p.h);

		ck_assert_msg(rgb_mean(&r, c) > m - 1.5 && rgb_mean(&r, c) < m + 1.5,
			      "channel %d: mean %.2f, source %.2f", c, rgb_mean(&r, c), m);
	}
	/* An average of noise is smooth: no output pixel is near 0 or 255. */
	for (int i = 0; i < r.w * r.h * 3; i++)
		ck_assert_msg(r.px[i] > 60 && r.px[i] < 195, "pixel %d is %u", i, r.px[i]);
	free(r.px);
}
END_TEST

START_TEST(interlaced_same_as_plain)
{
	struct pic p = {97, 61, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, noise};
	struct pic q = p;
	struct err err = {0};
	struct rgb a, b;

	q.interlace = PNG_INTERLACE_ADAM7;
	write_pic(tpath("plain.png"), &p, NULL, 0);
	write_pic(tpath("adam7.png"), &q, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("plain.png"), tpath("a.png"), 20, &err), 0);
	ck_assert_int_eq(thumb_png(tpath("adam7.png"), tpath("b.png"), 20, &err), 0);
	a = read_rgb(tpath("a.png"));
	b = read_rgb(tpath("b.png"));
	ck_assert_int_eq(a.w, b.w);
	ck_assert_int_eq(a.h, b.h);
	ck_assert_mem_eq(a.px, b.px, (size_t)a.w * a.h * 3);
	free(a.px);
	free(b.px);
}
END_TEST

START_TEST(rgba_on_white)
{
	struct pic p = {8, 4, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, half_red};
	struct err err = {0};
	struct rgb r;

	write_pic(tpath("in.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 2, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 2);
	ck_assert_int_eq(r.h, 1);
	/* Left: red at half alpha over white is (255, 127, 127). */
	ck_assert_uint_eq(r.px[0], 255);
	ck_assert_uint_ge(r.px[1], 126);
	ck_assert_uint_le(r.px[1], 128);
	ck_assert_uint_eq(r.px[1], r.px[2]);
	/* Right: fully transparent is white, whatever colour it carries. */
	ck_assert_uint_eq(r.px[3], 255);
	ck_assert_uint_eq(r.px[4], 255);
	ck_assert_uint_eq(r.px[5], 255);
	free(r.px);
}
END_TEST

START_TEST(grey_inputs)
{
	struct pic g16 = {10, 10, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, grey16};
	struct pic g1 = {16, 4, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, stripes};
	struct pic ga = {4, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, grey_alpha};
	struct err err = {0};
	struct rgb r;

	write_pic(tpath("g16.png"), &g16, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("g16.png"), tpath("out.png"), 5, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 5);
	for (int i = 0; i < 5 * 5 * 3; i++)
		ck_assert_uint_eq(r.px[i], 128);
	free(r.px);

	/* Black and white columns average to mid grey. */
	write_pic(tpath("g1.png"), &g1, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("g1.png"), tpath("out.png"), 8, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 8);
	ck_assert_int_eq(r.h, 2);
	for (int i = 0; i < 8 * 2 * 3; i++)
		ck_assert_uint_eq(r.px[i], 128);
	free(r.px);

	/* Transparent top rows become white, opaque black bottom rows stay black. */
	write_pic(tpath("ga.png"), &ga, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("ga.png"), tpath("out.png"), 2, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.h, 2);
	ck_assert_uint_eq(r.px[0], 255);
	ck_assert_uint_eq(r.px[2 * 3], 0);
	free(r.px);
}
END_TEST

START_TEST(palette_input)
{
	static const png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
	struct pic p = {3, 1, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, palette_index};
	struct err err = {0};
	struct rgb r;

	write_pic(tpath("in.png"), &p, pal, 3);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 10, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 3);
	ck_assert_mem_eq(r.px, "\xff\0\0\0\xff\0\0\0\xff", 9);
	free(r.px);
	/* All three averaged into one pixel: 85 each. */
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 1, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_uint_eq(r.px[0], 85);
	ck_assert_uint_eq(r.px[1], 85);
	ck_assert_uint_eq(r.px[2], 85);
	free(r.px);
}
END_TEST

/* ---- errors and the temp file ---- */

START_TEST(not_png_is_invalid)
{
	static const char text[] = "this is not a picture, just some text\n";
	struct err err = {0};

	ck_assert_int_eq(tu_write_file(tpath("in.png"), text, sizeof text - 1), 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 64, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_int_eq(access(tpath("out.png"), F_OK), -1);
	ck_assert_int_eq(dir_entries(), 1);

	/* Shorter than the signature. */
	err_clear(&err);
	ck_assert_int_eq(tu_write_file(tpath("in.png"), "\x89PN", 3), 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 64, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

START_TEST(truncated_png_is_invalid)
{
	struct pic p = {64, 64, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, noise};
	struct err err = {0};
	size_t len;
	char *data;

	write_pic(tpath("full.png"), &p, NULL, 0);
	data = tu_read_file(tpath("full.png"), &len);
	ck_assert_int_eq(tu_write_file(tpath("cut.png"), data, len / 2), 0);
	free(data);
	ck_assert_int_eq(thumb_png(tpath("cut.png"), tpath("out.png"), 16, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_int_eq(access(tpath("out.png"), F_OK), -1);
	ck_assert_int_eq(dir_entries(), 2);
}
END_TEST

START_TEST(io_errors)
{
	struct pic p = {8, 8, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, grad};
	struct err err = {0};

	ck_assert_int_eq(thumb_png(tpath("missing.png"), tpath("out.png"), 4, &err), -1);
	ck_assert_int_eq(err.code, ERR_IO);

	/* The destination's directory does not exist. */
	write_pic(tpath("in.png"), &p, NULL, 0);
	err_clear(&err);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("no/such/dir/out.png"), 4, &err), -1);
	ck_assert_int_eq(err.code, ERR_IO);
	ck_assert_int_eq(dir_entries(), 1);

	err_clear(&err);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 0, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

START_TEST(too_large_is_refused)
{
	struct pic p = {THUMB_MAX_SIDE + 1, 1, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE,
			stripes};
	struct err err = {0};

	write_pic(tpath("wide.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("wide.png"), tpath("out.png"), 64, &err), -1);
	ck_assert_int_eq(err.code, ERR_TOO_LARGE);
	ck_assert_int_eq(access(tpath("out.png"), F_OK), -1);
}
END_TEST

START_TEST(replaces_atomically_no_temp_left)
{
	struct pic p = {120, 80, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE, grad};
	struct err err = {0};
	struct stat st;
	struct rgb r;

	ck_assert_int_eq(tu_write_file(tpath("out.png"), "old", 3), 0);
	write_pic(tpath("in.png"), &p, NULL, 0);
	ck_assert_int_eq(thumb_png(tpath("in.png"), tpath("out.png"), 30, &err), 0);
	r = read_rgb(tpath("out.png"));
	ck_assert_int_eq(r.w, 30);
	ck_assert_int_eq(r.h, 20);
	free(r.px);
	/* Only in.png and out.png: the temp file was renamed, not copied. */
	ck_assert_int_eq(dir_entries(), 2);
	ck_assert_int_eq(stat(tpath("out.png"), &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
}
END_TEST

Suite *suite_thumb(void)
{
	Suite *s = suite_create("thumb");
	TCase *tc = tcase_create("thumb");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, wide);
	tcase_add_test(tc, tall);
	tcase_add_test(tc, smaller_is_untouched);
	tcase_add_test(tc, mean_preserved);
	tcase_add_test(tc, interlaced_same_as_plain);
	tcase_add_test(tc, rgba_on_white);
	tcase_add_test(tc, grey_inputs);
	tcase_add_test(tc, palette_input);
	tcase_add_test(tc, not_png_is_invalid);
	tcase_add_test(tc, truncated_png_is_invalid);
	tcase_add_test(tc, io_errors);
	tcase_add_test(tc, too_large_is_refused);
	tcase_add_test(tc, replaces_atomically_no_temp_left);
	suite_add_tcase(s, tc);
	return s;
}

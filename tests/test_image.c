/*
 * test_image.c - the pixel operations (image.c), the PNG writer (png.c),
 * the sim picture, and the consistency of the image and sim node classes.
 * PNGs are decoded with libpng, an independent reader.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "json.h" /* -I/usr/include/json-c has a json.h too */
#include "model_sim.h"
#include "node.h"
#include "testutil.h"

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

static float *px_at(const struct image *img, int b, int x, int y)
{
	return img->px + (((size_t)b * (size_t)img->h + (size_t)y) * (size_t)img->w + (size_t)x) * 3;
}

/* A reproducible noisy picture (an LCG; no libc rand state). */
static struct image *noisy(int w, int h, int n)
{
	struct image *img = image_new(w, h, n);
	uint32_t s = 12345;

	for (size_t i = 0; i < (size_t)w * h * n * 3; i++) {
		s = s * 1664525u + 1013904223u;
		img->px[i] = (float)(s >> 8) / 16777216.0f;
	}
	return img;
}

static double mean(const struct image *img)
{
	double sum = 0;
	size_t n = (size_t)img->n * img->h * img->w * 3;

	for (size_t i = 0; i < n; i++)
		sum += img->px[i];
	return sum / (double)n;
}

static double variance(const struct image *img)
{
	double m = mean(img), sum = 0;
	size_t n = (size_t)img->n * img->h * img->w * 3;

	for (size_t i = 0; i < n; i++)
		sum += (img->px[i] - m) * (img->px[i] - m);
	return sum / (double)n;
}

/* --- image ops --- */

START_TEST(test_new_limits)
{
	struct image *img = image_new(3, 2, 1);

	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(img->refs, 1);
	ck_assert(img->px[0] == 0.0f && img->px[17] == 0.0f);
	ck_assert_ptr_eq(image_ref(img), img);
	ck_assert_int_eq(img->refs, 2);
	image_unref(img);
	image_unref(img);
	image_unref(NULL);
	ck_assert_ptr_null(image_new(16384, 16384, 1)); /* over 2^28 floats */
	ck_assert_ptr_null(image_new(0, 5, 1));
	ck_assert_ptr_null(image_new(5, 5, -1));
}
END_TEST

START_TEST(test_fill_exact)
{
	struct image *img = image_fill(5, 4, 2, 0x3366CC);

	ck_assert_int_eq(img->w, 5);
	ck_assert_int_eq(img->h, 4);
	ck_assert_int_eq(img->n, 2);
	for (int b = 0; b < 2; b++)
		for (int y = 0; y < 4; y++)
			for (int x = 0; x < 5; x++) {
				const float *p = px_at(img, b, x, y);
				ck_assert(p[0] == (float)(0x33 / 255.0));
				ck_assert(p[1] == (float)(0x66 / 255.0));
				ck_assert(p[2] == (float)(0xCC / 255.0));
			}
	image_unref(img);
}
END_TEST

START_TEST(test_invert)
{
	struct image *img = noisy(7, 5, 2);
	struct image *inv = image_invert(img);

	ck_assert_int_eq(inv->w, 7);
	ck_assert_int_eq(inv->n, 2);
	for (size_t i = 0; i < 7 * 5 * 2 * 3; i++)
		ck_assert(inv->px[i] == 1.0f - img->px[i]);
	image_unref(inv);
	image_unref(img);
}
END_TEST

START_TEST(test_blur_keeps_constant_and_size)
{
	struct image *img = image_fill(40, 30, 2, 0x336699);
	struct image *out = image_blur(img, 3, 1.5);

	ck_assert_int_eq(out->w, 40);
	ck_assert_int_eq(out->h, 30);
	ck_assert_int_eq(out->n, 2);
	for (size_t i = 0; i < 40 * 30 * 2 * 3; i++)
		ck_assert(out->px[i] == img->px[i]); /* exactly: weights sum to 1 */
	image_unref(out);
	image_unref(img);
}
END_TEST

START_TEST(test_blur_keeps_mean_lowers_variance)
{
	struct image *img = noisy(64, 48, 1);
	struct image *out = image_blur(img, 5, 2.0);

	ck_assert_int_eq(out->w, 64);
	ck_assert_int_eq(out->h, 48);
	ck_assert_float_eq_tol(mean(out), mean(img), 0.005);
	ck_assert(variance(out) < variance(img) / 4);
	image_unref(out);
	image_unref(img);
}
END_TEST

/* An impulse spreads into a symmetric kernel that sums to 1. */
START_TEST(test_blur_impulse_symmetric)
{
	struct image *img = image_new(21, 21, 1);
	struct image *out;
	double sum = 0;

	px_at(img, 0, 10, 10)[0] = 1.0f;
	out = image_blur(img, 3, 1.0);
	for (int y = 0; y < 21; y++)
		for (int x = 0; x < 21; x++) {
			float v = px_at(out, 0, x, y)[0];
			sum += v;
			ck_assert_float_eq_tol(v, px_at(out, 0, 20 - x, y)[0], 1e-7);
			ck_assert_float_eq_tol(v, px_at(out, 0, y, x)[0], 1e-7);
			if (abs(x - 10) > 3 || abs(y - 10) > 3)
				ck_assert(v == 0.0f);
		}
	ck_assert_float_eq_tol(sum, 1.0, 1e-5);
	/* linspace(-1, 1, 7) with sigma 1: the centre outweighs the edge. */
	ck_assert(px_at(out, 0, 10, 10)[0] > px_at(out, 0, 13, 10)[0]);
	image_unref(out);
	image_unref(img);
}
END_TEST

/* A radius wider than the image still reflects sensibly. */
START_TEST(test_blur_radius_over_size)
{
	struct image *img = noisy(4, 3, 1);
	struct image *out = image_blur(img, 31, 10.0);

	for (size_t i = 0; i < 4 * 3 * 3; i++)
		ck_assert(out->px[i] >= 0.0f && out->px[i] <= 1.0f);
	image_unref(out);
	image_unref(img);
}
END_TEST

static const char *const methods[] = {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"};

START_TEST(test_scale_sizes_all_methods)
{
	struct image *img = noisy(256, 256, 2);
	struct image *flat = image_fill(37, 23, 1, 0xCC9933);

	for (size_t m = 0; m < 5; m++) {
		struct image *out = image_scale(img, 128, 96, methods[m], "disabled");
		struct image *up = image_scale(flat, 80, 50, methods[m], "disabled");

		ck_assert_msg(out->w == 128 && out->h == 96 && out->n == 2, "%s", methods[m]);
		ck_assert_float_eq_tol(mean(out), mean(img), 0.02);
		for (size_t i = 0; i < 80 * 50 * 3; i++)
			ck_assert_msg(fabsf(up->px[i] - flat->px[i % 3]) <= 1.0f / 255,
				      "%s: %zu: %f", methods[m], i, up->px[i]);
		image_unref(up);
		image_unref(out);
	}
	image_unref(flat);
	image_unref(img);
}
END_TEST

START_TEST(test_scale_zero_keeps_aspect)
{
	struct image *img = noisy(200, 100, 1);
	struct image *odd = noisy(3, 2, 1), *odd5 = noisy(5, 2, 1);
	struct image *a = image_scale(img, 0, 50, "bilinear", "disabled");
	struct image *b = image_scale(img, 50, 0, "bilinear", "disabled");
	struct image *c = image_scale(img, 0, 0, "bilinear", "disabled");
	struct image *d = image_scale(odd, 0, 1, "area", "disabled");
	struct image *e = image_scale(odd5, 0, 1, "area", "disabled");

	ck_assert(a->w == 100 && a->h == 50);
	ck_assert(b->w == 50 && b->h == 25);
	ck_assert_ptr_eq(c, img); /* both 0: the same image */
	ck_assert_int_eq(img->refs, 2);
	/* Python's round(): 1.5 -> 2, 2.5 -> 2. */
	ck_assert(d->w == 2 && d->h == 1);
	ck_assert(e->w == 2 && e->h == 1);
	image_unref(a);
	image_unref(b);
	image_unref(c);
	image_unref(d);
	image_unref(e);
	image_unref(odd);
	image_unref(odd5);
	image_unref(img);
}
END_TEST

/* torch interpolate(mode="bilinear", align_corners=False) on 2 -> 4. */
START_TEST(test_scale_bilinear_like_torch)
{
	struct image *img = image_new(2, 1, 1);
	struct image *out;
	float want[4];

	px_at(img, 0, 0, 0)[0] = 0.2f;
	px_at(img, 0, 1, 0)[0] = 1.0f;
	want[0] = 0.2f;
	want[1] = 0.75f * 0.2f + 0.25f;
	want[2] = 0.25f * 0.2f + 0.75f;
	want[3] = 1.0f;
	out = image_scale(img, 4, 1, "bilinear", "disabled");
	for (int x = 0; x < 4; x++)
		ck_assert_float_eq_tol(px_at(out, 0, x, 0)[0], want[x], 1e-6);
	image_unref(out);
	out = image_scale(img, 1, 1, "area", "disabled");
	ck_assert_float_eq_tol(px_at(out, 0, 0, 0)[0], 0.6f, 1e-6);
	image_unref(out);
	image_unref(img);
}
END_TEST

/* Column x holds x / 199; a centre crop to 1:1 keeps columns 50..149. */
START_TEST(test_scale_crop_center)
{
	struct image *img = image_new(200, 100, 1);
	struct image *out, *same;

	for (int y = 0; y < 100; y++)
		for (int x = 0; x < 200; x++)
			for (int c = 0; c < 3; c++)
				px_at(img, 0, x, y)[c] = (float)x / 199.0f;
	out = image_scale(img, 100, 100, "nearest-exact", "center");
	ck_assert(out->w == 100 && out->h == 100);
	ck_assert_float_eq_tol(px_at(out, 0, 0, 0)[0], 50 / 199.0f, 1e-6);
	ck_assert_float_eq_tol(px_at(out, 0, 99, 99)[2], 149 / 199.0f, 1e-6);
	image_unref(out);
	/* Halving with nearest-exact picks every other column, from 51. */
	out = image_scale(img, 50, 50, "nearest-exact", "center");
	ck_assert_float_eq_tol(px_at(out, 0, 0, 0)[0], 51 / 199.0f, 1e-6);
	ck_assert_float_eq_tol(px_at(out, 0, 49, 0)[0], 149 / 199.0f, 1e-6);
	image_unref(out);
	/* Same aspect: nothing is cropped. */
	same = image_scale(img, 20, 10, "nearest-exact", "center");
	ck_assert_float_eq_tol(px_at(same, 0, 0, 0)[0], 5 / 199.0f, 1e-6);
	ck_assert_float_eq_tol(px_at(same, 0, 19, 0)[0], 195 / 199.0f, 1e-6);
	image_unref(same);
	image_unref(img);
}
END_TEST

/* --- PNG --- */

struct reader {
	const unsigned char *p;
	size_t len, off;
};

static void read_mem(png_structp png, png_bytep out, png_size_t n)
{
	struct reader *r = png_get_io_ptr(png);

	if (r->off + n > r->len)
		png_error(png, "read past the end");
	memcpy(out, r->p + r->off, n);
	r->off += n;
}

struct decoded {
	int w, h;
	unsigned char *rgb; /* w*h*3 */
	char *prompt;       /* the tEXt "prompt", or NULL */
};

/* Decodes an 8-bit RGB PNG with libpng. Returns 0 or -1. */
static int decode(const unsigned char *data, size_t len, struct decoded *d)
{
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	struct reader r = {data, len, 0};
	png_bytep *rows = NULL;
	png_textp text;
	int ntext = 0;

	memset(d, 0, sizeof *d);
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_read_struct(&png, &info, NULL);
		free(rows);
		free(d->rgb);
		free(d->prompt);
		return -1;
	}
	png_set_read_fn(png, &r, read_mem);
	png_read_info(png, info);
	if (png_get_bit_depth(png, info) != 8 || png_get_color_type(png, info) != PNG_COLOR_TYPE_RGB)
		png_error(png, "not 8-bit RGB");
	d->w = (int)png_get_image_width(png, info);
	d->h = (int)png_get_image_height(png, info);
	d->rgb = malloc((size_t)d->w * d->h * 3);
	rows = malloc(sizeof *rows * (size_t)d->h);
	for (int y = 0; y < d->h; y++)
		rows[y] = d->rgb + (size_t)y * d->w * 3;
	png_read_image(png, rows);
	png_read_end(png, info);
	png_get_text(png, info, &text, &ntext);
	for (int i = 0; i < ntext; i++)
		if (strcmp(text[i].key, "prompt") == 0)
			d->prompt = strdup(text[i].text);
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	return 0;
}

static void decoded_free(struct decoded *d)
{
	free(d->rgb);
	free(d->prompt);
}

/* Every byte within 1/255 of the float it came from. */
static void assert_same_pixels(const struct decoded *d, const struct image *img, int b)
{
	ck_assert_int_eq(d->w, img->w);
	ck_assert_int_eq(d->h, img->h);
	for (int y = 0; y < img->h; y++)
		for (int x = 0; x < img->w; x++)
			for (int c = 0; c < 3; c++) {
				float want = px_at(img, b, x, y)[c] * 255.0f;
				int got = d->rgb[((size_t)y * img->w + x) * 3 + c];
				ck_assert_msg(fabsf((float)got - want) <= 1.0f,
					      "(%d,%d,%d): %d vs %f", x, y, c, got, want);
			}
}

static const char prompt_json[] = "{\"1\": {\"class_type\": \"SimTextEncode\", "
				  "\"inputs\": {\"text\": \"a lighthouse at dusk\"}}}";

START_TEST(test_png_roundtrip_with_text)
{
	struct image *img = noisy(33, 17, 2);
	const char *keys[] = {"prompt"}, *values[] = {prompt_json};
	unsigned char *data;
	size_t len;
	struct decoded d;

	ck_assert_int_eq(png_encode(img, 1, keys, values, 1, &data, &len), 0);
	ck_assert(len > 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0);
	ck_assert_int_eq(decode(data, len, &d), 0);
	assert_same_pixels(&d, img, 1);
	ck_assert_str_eq(d.prompt, prompt_json);
	decoded_free(&d);
	free(data);
	/* Without text chunks. */
	ck_assert_int_eq(png_encode(img, 0, NULL, NULL, 0, &data, &len), 0);
	ck_assert_int_eq(decode(data, len, &d), 0);
	assert_same_pixels(&d, img, 0);
	ck_assert_ptr_null(d.prompt);
	decoded_free(&d);
	free(data);
	image_unref(img);
}
END_TEST

/* Out-of-range floats clamp; bytes truncate as numpy's astype(uint8). */
START_TEST(test_png_clamps_and_truncates)
{
	struct image *img = image_new(4, 1, 1);
	unsigned char *data;
	size_t len;
	struct decoded d;
	const float in[4] = {-0.5f, 1.5f, 1.0f - 0.8f, 0.5f};
	const unsigned char want[4] = {0, 255, 50, 127};

	for (int x = 0; x < 4; x++)
		px_at(img, 0, x, 0)[0] = in[x];
	ck_assert_int_eq(png_encode(img, 0, NULL, NULL, 0, &data, &len), 0);
	ck_assert_int_eq(decode(data, len, &d), 0);
	for (int x = 0; x < 4; x++)
		ck_assert_int_eq(d.rgb[x * 3], want[x]);
	decoded_free(&d);
	free(data);
	image_unref(img);
}
END_TEST

START_TEST(test_png_rejects_bad_args)
{
	struct image *img = noisy(4, 4, 1);
	const char *empty[] = {""}, *vals[] = {"x"};
	unsigned char *data = (unsigned char *)"sentinel";
	size_t len = 7;

	ck_assert_int_eq(png_encode(img, 1, NULL, NULL, 0, &data, &len), -1);
	ck_assert_ptr_null(data);
	ck_assert_int_eq(png_encode(img, -1, NULL, NULL, 0, &data, &len), -1);
	ck_assert_int_eq(png_encode(img, 0, empty, vals, 1, &data, &len), -1);
	image_unref(img);
}
END_TEST

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

START_TEST(test_png_write_atomic)
{
	struct image *img = image_sim_render("a lighthouse at dusk", 42, 96, 64, 8, 8);
	struct image *other = image_fill(10, 20, 1, 0xFF0000);
	const char *keys[] = {"prompt"}, *values[] = {prompt_json};
	char path[512], missing[512];
	unsigned char *data;
	size_t len;
	struct decoded d;
	struct stat st;
	int w = 0, h = 0;

	snprintf(path, sizeof path, "%s/sim_00001_.png", tu_tmpdir());
	ck_assert_int_eq(png_write(path, img, 0, keys, values, 1), 0);
	ck_assert_int_eq(count_entries(tu_tmpdir()), 1); /* no temp file left */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	data = (unsigned char *)tu_read_file(path, &len);
	ck_assert_int_eq(decode(data, len, &d), 0);
	assert_same_pixels(&d, img, 0);
	ck_assert_str_eq(d.prompt, prompt_json);
	decoded_free(&d);
	free(data);
	ck_assert_int_eq(png_size(path, &w, &h), 0);
	ck_assert(w == 96 && h == 64);
	/* Replacing an existing file is one rename. */
	ck_assert_int_eq(png_write(path, other, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(png_size(path, &w, &h), 0);
	ck_assert(w == 10 && h == 20);
	ck_assert_int_eq(count_entries(tu_tmpdir()), 1);
	/* A missing directory fails cleanly. */
	snprintf(missing, sizeof missing, "%s/nope/x.png", tu_tmpdir());
	errno = 0;
	ck_assert_int_eq(png_write(missing, img, 0, NULL, NULL, 0), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(count_entries(tu_tmpdir()), 1);
	image_unref(other);
	image_unref(img);
}
END_TEST

START_TEST(test_png_size_rejects)
{
	char path[512];
	int w, h;

	snprintf(path, sizeof path, "%s/not.png", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(path, "GIF89a not a png at all, no", 27), 0);
	ck_assert_int_eq(png_size(path, &w, &h), -1);
	snprintf(path, sizeof path, "%s/short.png", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(path, "\x89PNG\r\n\x1a\n", 8), 0);
	ck_assert_int_eq(png_size(path, &w, &h), -1);
	snprintf(path, sizeof path, "%s/missing.png", tu_tmpdir());
	ck_assert_int_eq(png_size(path, &w, &h), -1);
}
END_TEST

/* The recorded ComfyUI output decodes to the size png_size reads. */
START_TEST(test_png_size_comfy_fixture)
{
	char path[1024];
	int w = 0, h = 0;

	snprintf(path, sizeof path, "%s/fixtures/comfyui/outputs/fr_weightless_00001_.png",
		 tu_shared());
	ck_assert_int_eq(png_size(path, &w, &h), 0);
	ck_assert(w == 128 && h == 96);
}
END_TEST

/* --- The sim picture --- */

static int same_pixels(const struct image *a, const struct image *b)
{
	return a->w == b->w && a->h == b->h && a->n == b->n &&
	       memcmp(a->px, b->px, sizeof(float) * 3 * a->w * a->h * a->n) == 0;
}

START_TEST(test_sim_deterministic)
{
	struct image *a = image_sim_render("a lighthouse at dusk", 42, 128, 96, 8, 8);
	struct image *b = image_sim_render("a lighthouse at dusk", 42, 128, 96, 8, 8);
	struct image *seed = image_sim_render("a lighthouse at dusk", 43, 128, 96, 8, 8);
	struct image *text = image_sim_render("a lighthouse at dawn", 42, 128, 96, 8, 8);
	struct image *big = image_sim_render("a lighthouse at dusk", UINT64_MAX, 128, 96, 8, 8);

	ck_assert(a->w == 128 && a->h == 96 && a->n == 1);
	ck_assert(same_pixels(a, b));
	ck_assert(!same_pixels(a, seed));
	ck_assert(!same_pixels(a, text));
	ck_assert(!same_pixels(a, big));
	image_unref(a);
	image_unref(b);
	image_unref(seed);
	image_unref(text);
	image_unref(big);
}
END_TEST

/* Frame i of an n-frame video, as a one-image batch; caller unrefs. */
static struct image *video_frame(const char *text, uint64_t seed, int i, int n)
{
	struct image *batch = image_new(96, 64, n), *one = image_new(96, 64, 1);
	size_t floats = (size_t)96 * 64 * 3;

	ck_assert(batch != NULL && one != NULL);
	image_sim_frame(batch, i, text, seed);
	memcpy(one->px, batch->px + (size_t)i * floats, floats * sizeof(float));
	image_unref(batch);
	return one;
}

/* Video frames: deterministic, each one moved from the last, seed and text matter. */
START_TEST(test_sim_video_frames_move)
{
	struct image *f[6], *again = video_frame("a fox", 5, 3, 6);
	struct image *seed = video_frame("a fox", 6, 3, 6), *text = video_frame("a cat", 5, 3, 6);
	struct image *batch = image_new(8, 8, 2);

	for (int i = 0; i < 6; i++)
		f[i] = video_frame("a fox", 5, i, 6);
	ck_assert(same_pixels(f[3], again));
	ck_assert(!same_pixels(f[3], seed));
	ck_assert(!same_pixels(f[3], text));
	for (int i = 1; i < 6; i++)
		ck_assert_msg(!same_pixels(f[i - 1], f[i]), "frames %d and %d are the same", i - 1, i);
	/* An index outside the batch draws nothing. */
	image_sim_frame(batch, 2, "x", 1);
	image_sim_frame(batch, -1, "x", 1);
	for (size_t k = 0; k < (size_t)8 * 8 * 3 * 2; k++)
		ck_assert(batch->px[k] == 0.0f);
	for (int i = 0; i < 6; i++)
		image_unref(f[i]);
	image_unref(again);
	image_unref(seed);
	image_unref(text);
	image_unref(batch);
}
END_TEST

START_TEST(test_sim_structured)
{
	/* 8 seeds of a full-size render: a few seconds under ASan on a busy machine. */
	for (uint64_t seed = 0; seed < 8; seed++) {
		struct image *img = image_sim_render("a lighthouse at dusk", seed, 512, 512, 20, 20);
		size_t n = (size_t)512 * 512 * 3, out = 0;

		/* Not flat, and in range (counted, then asserted once: fast). */
		ck_assert_msg(variance(img) > 0.01, "seed %d: variance %f", (int)seed,
			      variance(img));
		for (size_t i = 0; i < n; i++)
			out += !(img->px[i] >= 0.0f && img->px[i] <= 1.0f);
		ck_assert_msg(out == 0, "seed %d: %zu values outside [0, 1]", (int)seed, out);
		image_unref(img);
	}
}
END_TEST

START_TEST(test_sim_steps_refine)
{
	struct image *s1 = image_sim_render("x", 7, 64, 64, 1, 4);
	struct image *s2 = image_sim_render("x", 7, 64, 64, 2, 4);
	struct image *s4 = image_sim_render("x", 7, 64, 64, 4, 4);
	struct image *s2b = image_sim_render("x", 7, 64, 64, 2, 4);
	double d1 = 0, d2 = 0;

	ck_assert(same_pixels(s2, s2b));
	ck_assert(!same_pixels(s1, s2));
	ck_assert(!same_pixels(s2, s4));
	for (size_t i = 0; i < 64 * 64 * 3; i++) {
		d1 += fabsf(s1->px[i] - s4->px[i]);
		d2 += fabsf(s2->px[i] - s4->px[i]);
	}
	ck_assert(d2 < d1); /* later steps are closer to the final picture */
	image_unref(s1);
	image_unref(s2);
	image_unref(s4);
	image_unref(s2b);
}
END_TEST

START_TEST(test_sim_odd_sizes)
{
	struct image *a = image_sim_render("", 0, 16, 4096, 3, 3);
	struct image *b = image_sim_render(NULL, 0, 17, 1, 0, 0);

	ck_assert(a->w == 16 && a->h == 4096);
	ck_assert(b->w == 17 && b->h == 1);
	image_unref(a);
	image_unref(b);
}
END_TEST

/* --- The class tables --- */

static void check_input(const struct node_class *c, const struct node_input *in)
{
	struct json_object *def = NULL;
	struct err err = {0};

	ck_assert_msg(in->name && in->type, "%s: unnamed input", c->name);
	for (size_t j = 0; j < c->ninputs; j++)
		ck_assert_msg(&c->inputs[j] == in || strcmp(c->inputs[j].name, in->name) != 0,
			      "%s.%s declared twice", c->name, in->name);
	if (strcmp(in->type, "COMBO") == 0)
		ck_assert_msg(in->options && in->options[0], "%s.%s: no options", c->name, in->name);
	if (in->def == NULL)
		return;
	ck_assert_msg(json_parse(in->def, strlen(in->def), 8, &def, &err) == 0, "%s.%s: %s",
		      c->name, in->name, err.msg);
	if (strcmp(in->type, "INT") == 0 || strcmp(in->type, "FLOAT") == 0) {
		double v = json_object_get_double(def);
		ck_assert_msg(!in->has_min || v >= in->min, "%s.%s below min", c->name, in->name);
		ck_assert_msg(!in->has_max || v <= in->max, "%s.%s above max", c->name, in->name);
	}
	if (strcmp(in->type, "COMBO") == 0) {
		int found = 0;
		for (size_t k = 0; in->options[k]; k++)
			found |= strcmp(in->options[k], json_object_get_string(def)) == 0;
		ck_assert_msg(found, "%s.%s: default not an option", c->name, in->name);
	}
	json_object_put(def);
}

START_TEST(test_class_tables)
{
	static const char *const names[] = {"SimTextEncode", "SimSampler",   "EmptyImage",
					    "ImageInvert",   "ImageBlur",    "ImageScale",
					    "SaveImage",     "PreviewImage", "GetImageSize",
					    "PreviewAny",    "SimVideoSampler", "CreateVideo",
					    "SaveVideo"};
	static const char *const outputs[] = {"SaveImage", "PreviewImage", "PreviewAny",
					      "SaveVideo"};
	const size_t n = sizeof names / sizeof names[0];

	nodes_reset();
	model_sim_register();
	model_sim_register(); /* twice is harmless */
	ck_assert_int_eq(nodes_count(), n);
	for (size_t i = 0; i < n; i++) {
		const struct node_class *c = nodes_find(names[i]);
		int out_node = 0;

		ck_assert_msg(c != NULL, "%s missing", names[i]);
		ck_assert_ptr_nonnull(c->run);
		ck_assert(c->category && c->python_module);
		ck_assert(c->noutputs == 0 || c->outputs != NULL);
		for (size_t j = 0; j < c->noutputs; j++)
			ck_assert(c->outputs[j] && (!c->output_names || c->output_names[j]));
		for (size_t j = 0; j < c->ninputs; j++)
			check_input(c, &c->inputs[j]);
		for (size_t j = 0; j < sizeof outputs / sizeof outputs[0]; j++)
			out_node |= strcmp(outputs[j], c->name) == 0;
		ck_assert_int_eq(c->output_node, out_node);
		ck_assert(out_node || c->noutputs > 0);
	}
	ck_assert_ptr_nonnull(nodes_find("SimSampler")->cancel);
	ck_assert_ptr_nonnull(nodes_find("SimVideoSampler")->cancel);
	ck_assert_ptr_nonnull(nodes_find("SaveVideo")->cancel);
	ck_assert_int_eq(nodes_find("GetImageSize")->noutputs, 3);
	nodes_reset();
}
END_TEST

/* The part of /object_info our tables decide, against ComfyUI's answer. */
static void compare_object_info(const char *label, const char *name)
{
	char path[1024], *text, *line, *want, *got;
	struct json_object *rec = NULL, *w, *g;
	struct err err = {0};
	static const char *const keys[] = {"input",         "input_order", "output",
					   "output_name",   "name",        "category",
					   "python_module", "output_node"};

	snprintf(path, sizeof path, "%s/fixtures/comfyui/comfy-transcript.jsonl", tu_shared());
	text = tu_read_file(path, NULL);
	ck_assert_msg(text != NULL, "%s missing: the recordings are kept in tests/fixtures/comfyui/ "
		      "(or set FNRUN_SHARED to another copy)", path);
	line = strstr(text, label);
	ck_assert_ptr_nonnull(line);
	while (line > text && line[-1] != '\n')
		line--;
	*strchrnul(line, '\n') = '\0';
	ck_assert_int_eq(json_parse(line, strlen(line), 64, &rec, &err), 0);
	w = json_get(json_get(rec, "resp_json"), name);
	g = nodes_object_info(nodes_find(name));
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		want = json_dumps(json_get(w, keys[i]));
		got = json_dumps(json_get(g, keys[i]));
		ck_assert_msg(strcmp(want, got) == 0, "%s.%s:\nwant %s\ngot  %s", name, keys[i],
			      want, got);
		free(want);
		free(got);
	}
	json_object_put(g);
	json_object_put(rec);
	free(text);
}

START_TEST(test_object_info_matches_comfyui)
{
	nodes_reset();
	model_sim_register();
	compare_object_info("\"object_info one node (V1)\"", "EmptyImage");
	compare_object_info("\"object_info one node (V3)\"", "ImageBlur");
	nodes_reset();
}
END_TEST

Suite *suite_image(void)
{
	Suite *s = suite_create("image");
	TCase *ops = tcase_create("ops");
	TCase *png = tcase_create("png");
	TCase *sim = tcase_create("sim");
	TCase *classes = tcase_create("classes");

	tcase_add_test(ops, test_new_limits);
	tcase_add_test(ops, test_fill_exact);
	tcase_add_test(ops, test_invert);
	tcase_add_test(ops, test_blur_keeps_constant_and_size);
	tcase_add_test(ops, test_blur_keeps_mean_lowers_variance);
	tcase_add_test(ops, test_blur_impulse_symmetric);
	tcase_add_test(ops, test_blur_radius_over_size);
	tcase_add_test(ops, test_scale_sizes_all_methods);
	tcase_add_test(ops, test_scale_zero_keeps_aspect);
	tcase_add_test(ops, test_scale_bilinear_like_torch);
	tcase_add_test(ops, test_scale_crop_center);
	suite_add_tcase(s, ops);

	tcase_add_checked_fixture(png, NULL, teardown);
	tcase_add_test(png, test_png_roundtrip_with_text);
	tcase_add_test(png, test_png_clamps_and_truncates);
	tcase_add_test(png, test_png_rejects_bad_args);
	tcase_add_test(png, test_png_write_atomic);
	tcase_add_test(png, test_png_size_rejects);
	tcase_add_test(png, test_png_size_comfy_fixture);
	suite_add_tcase(s, png);

	tcase_set_timeout(sim, 30);
	tcase_add_test(sim, test_sim_deterministic);
	tcase_add_test(sim, test_sim_video_frames_move);
	tcase_add_test(sim, test_sim_structured);
	tcase_add_test(sim, test_sim_steps_refine);
	tcase_add_test(sim, test_sim_odd_sizes);
	suite_add_tcase(s, sim);

	tcase_add_test(classes, test_class_tables);
	tcase_add_test(classes, test_object_info_matches_comfyui);
	suite_add_tcase(s, classes);
	return s;
}

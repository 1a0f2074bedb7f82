/*
 * image.c - reference-counted RGB float images and the pixel operations of
 * the built-in nodes, following what ComfyUI does with PyTorch and PIL:
 *
 *  - fill: torch.full with (channel / 255) as a float32;
 *  - blur: ComfyUI's ImageBlur kernel, a Gaussian sampled on
 *    linspace(-1, 1, 2r+1) (so sigma is relative to the radius), applied
 *    with reflect padding; the 2-D kernel is separable, so two 1-D passes;
 *  - scale: torch.nn.functional.interpolate with align_corners=False for
 *    nearest-exact, bilinear, bicubic (A = -0.75) and area (adaptive average
 *    pooling); lanczos goes through PIL in ComfyUI, so it is PIL's Lanczos
 *    (a = 3, widened when shrinking) on 8-bit values.
 *
 * Every resampling is a separable pass described by a tap table (struct
 * taps): output sample i is the weighted sum of k source samples. The same
 * two-pass routine runs blur and all scale methods. Weights and sums are
 * doubles, so a flat colour comes out as exactly the same float (the
 * weights add up to 1 far below float precision), as torch's does.
 *
 * The sim model's picture (image_sim_render) is drawn here too: a sky
 * gradient, ground stripes and a few shapes, all placed by a hash of
 * (text, seed), blended towards per-pixel noise before the last step; and
 * the sim video's frames (image_sim_frame), the same scene seen by a
 * camera that pans along a wider panorama as the frame index grows.
 *
 * Invariants: px holds n*h*w*3 floats; refs > 0 while anyone holds it;
 * images are never written after they are returned, so sharing is safe
 * (image_sim_frame fills a batch its caller still holds alone).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "util.h"

/* Largest image: 2^28 floats (1 GiB), as image.h promises. */
#define IMAGE_MAX_FLOATS ((size_t)1 << 28)

struct image *image_new(int w, int h, int n)
{
	struct image *img;
	size_t count;

	if (w <= 0 || h <= 0 || n <= 0)
		return NULL;
	count = (size_t)w * (size_t)h;
	if (count > IMAGE_MAX_FLOATS / 3 / (size_t)n)
		return NULL;
	count *= (size_t)n * 3;
	img = xmalloc(sizeof *img);
	img->refs = 1;
	img->w = w;
	img->h = h;
	img->n = n;
	img->px = calloc(count, sizeof(float));
	if (img->px == NULL) {
		free(img);
		return NULL;
	}
	return img;
}

struct image *image_ref(struct image *img)
{
	if (img != NULL)
		img->refs++;
	return img;
}

void image_unref(struct image *img)
{
	if (img == NULL || --img->refs > 0)
		return;
	free(img->px);
	free(img);
}

static size_t image_floats(const struct image *img)
{
	return (size_t)img->n * (size_t)img->h * (size_t)img->w * 3;
}

/* A new reference to img; the operations that change nothing return one. */
static struct image *image_same(const struct image *img)
{
	/* The caller holds a reference; sharing is safe because images are
	 * never written after they are produced. */
	return image_ref((struct image *)img);
}

struct image *image_fill(int w, int h, int n, uint32_t color)
{
	struct image *img = image_new(w, h, n);
	float rgb[3];
	size_t px;

	if (img == NULL)
		return NULL;
	/* Python divides in double, torch.full stores float32. */
	rgb[0] = (float)(((color >> 16) & 0xFF) / 255.0);
	rgb[1] = (float)(((color >> 8) & 0xFF) / 255.0);
	rgb[2] = (float)((color & 0xFF) / 255.0);
	px = image_floats(img) / 3;
	for (size_t i = 0; i < px; i++)
		memcpy(img->px + 3 * i, rgb, sizeof rgb);
	return img;
}

struct image *image_invert(const struct image *img)
{
	struct image *out = image_new(img->w, img->h, img->n);
	size_t count;

	if (out == NULL)
		return NULL;
	count = image_floats(img);
	for (size_t i = 0; i < count; i++)
		out->px[i] = 1.0f - img->px[i];
	return out;
}

/* --- Tap tables: one separable 1-D resampling. --- */

struct taps {
	int n;      /* output samples */
	int k;      /* taps per output sample */
	int *idx;   /* n*k source indices, each in [0, source length) */
	double *w;  /* n*k weights; unused taps weigh 0 */
};

/* Zeroed tables for n outputs of k taps; release with taps_cleanup(). */
static void taps_init(struct taps *t, int n, int k)
{
	t->n = n;
	t->k = k;
	t->idx = xcalloc((size_t)n * (size_t)k, sizeof *t->idx);
	t->w = xcalloc((size_t)n * (size_t)k, sizeof *t->w);
}

static void taps_cleanup(struct taps *t)
{
	free(t->idx);
	free(t->w);
}

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* torch: src = min(floor((dst + 0.5) * in / out), in - 1). */
static void taps_nearest(struct taps *t, int in, int out)
{
	float scale = (float)in / (float)out;

	taps_init(t, out, 1);
	for (int i = 0; i < out; i++) {
		t->idx[i] = clampi((int)floorf(((float)i + 0.5f) * scale), 0, in - 1);
		t->w[i] = 1.0;
	}
}

/* torch upsample_bilinear2d, align_corners=False. */
static void taps_bilinear(struct taps *t, int in, int out)
{
	float scale = (float)in / (float)out;

	taps_init(t, out, 2);
	for (int i = 0; i < out; i++) {
		float real = scale * ((float)i + 0.5f) - 0.5f;
		int i0;

		if (real < 0)
			real = 0;
		i0 = (int)real;
		t->idx[2 * i] = i0;
		t->idx[2 * i + 1] = i0 < in - 1 ? i0 + 1 : i0;
		t->w[2 * i + 1] = real - (float)i0;
		t->w[2 * i] = 1.0 - t->w[2 * i + 1];
	}
}

/* torch upsample_bicubic2d: cubic convolution with A = -0.75, edges clamped. */
static void taps_bicubic(struct taps *t, int in, int out)
{
	const float a = -0.75f;
	float scale = (float)in / (float)out;

	taps_init(t, out, 4);
	for (int i = 0; i < out; i++) {
		float real = scale * ((float)i + 0.5f) - 0.5f;
		float f = floorf(real), x = real - f, y = 1.0f - x;
		double *w = t->w + 4 * i;

		/* torch computes the coefficients in float. */
		w[0] = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a;
		w[1] = ((a + 2) * x - (a + 3)) * x * x + 1;
		w[2] = ((a + 2) * y - (a + 3)) * y * y + 1;
		w[3] = ((a * (y + 1) - 5 * a) * (y + 1) + 8 * a) * (y + 1) - 4 * a;
		for (int j = 0; j < 4; j++)
			t->idx[4 * i + j] = clampi((int)f - 1 + j, 0, in - 1);
	}
}

/* torch adaptive_avg_pool: output i averages [floor(i*in/out), ceil((i+1)*in/out)). */
static void taps_area(struct taps *t, int in, int out)
{
	taps_init(t, out, (in + out - 1) / out + 1);
	for (int i = 0; i < out; i++) {
		int lo = (int)((int64_t)i * in / out);
		int hi = (int)(((int64_t)(i + 1) * in + out - 1) / out);

		for (int j = lo; j < hi; j++) {
			t->idx[i * t->k + (j - lo)] = j;
			t->w[i * t->k + (j - lo)] = 1.0 / (hi - lo);
		}
	}
}

static double lanczos3(double x)
{
	double px = M_PI * x;

	if (x == 0)
		return 1;
	if (x <= -3 || x >= 3)
		return 0;
	return 3 * sin(px) * sin(px / 3) / (px * px);
}

/* PIL precompute_coeffs with the Lanczos filter (support 3). */
static void taps_lanczos(struct taps *t, int in, int out)
{
	double scale = (double)in / out;
	double fscale = scale < 1 ? 1 : scale;
	double support = 3 * fscale;

	taps_init(t, out, (int)ceil(support) * 2 + 1);
	for (int i = 0; i < out; i++) {
		double center = ((double)i + 0.5) * scale, sum = 0;
		int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);

		lo = lo < 0 ? 0 : lo;
		hi = hi > in ? in : hi;
		for (int j = lo; j < hi && j - lo < t->k; j++) {
			double w = lanczos3((j - center + 0.5) / fscale);

			t->idx[i * t->k + (j - lo)] = j;
			t->w[i * t->k + (j - lo)] = w;
			sum += w;
		}
		for (int j = 0; j < t->k && sum != 0; j++)
			t->w[i * t->k + j] /= sum;
	}
}

/* Mirror index without repeating the edge, as torch's 'reflect' padding. */
static int reflect(int i, int n)
{
	int period = 2 * (n - 1);

	if (n == 1)
		return 0;
	i %= period;
	if (i < 0)
		i += period;
	return i < n ? i : period - i;
}

/* ImageBlur's kernel: exp(-t^2 / (2 sigma^2)) on linspace(-1, 1, 2r+1). */
static void taps_blur(struct taps *t, int n, int radius, double sigma)
{
	int k = 2 * radius + 1;
	double kernel[63], sum = 0;
	float step = 2.0f / (float)(k - 1);

	for (int j = 0; j < k; j++) {
		/* torch.linspace fills each half from its own end. */
		float x = j < k / 2 ? -1.0f + step * (float)j : 1.0f - step * (float)(k - 1 - j);

		kernel[j] = exp(-((double)x * x) / (2.0 * sigma * sigma));
		sum += kernel[j];
	}
	taps_init(t, n, k);
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < k; j++) {
			t->idx[i * k + j] = reflect(i + j - radius, n);
			t->w[i * k + j] = kernel[j] / sum;
		}
	}
}

/* --- The two passes. --- */

/* PIL stores each pass as 8-bit, rounding half up. */
static float quantize(float v)
{
	float q = floorf(v * 255.0f + 0.5f);

	return (q < 0 ? 0 : q > 255 ? 255 : q) / 255.0f;
}

/* Horizontal pass over rows_in rows of the region at (x0, y0) into tmp. */
static void resample_rows(const float *src, int w_src, int x0, int y0, int rows_in,
			  const struct taps *tx, float *tmp, int quant)
{
	for (int y = 0; y < rows_in; y++) {
		const float *row = src + ((size_t)(y0 + y) * (size_t)w_src + (size_t)x0) * 3;
		float *o = tmp + (size_t)y * (size_t)tx->n * 3;

		for (int x = 0; x < tx->n; x++) {
			double acc[3] = {0, 0, 0};

			for (int j = 0; j < tx->k; j++) {
				const float *p = row + 3 * tx->idx[x * tx->k + j];
				double w = tx->w[x * tx->k + j];

				acc[0] += w * p[0];
				acc[1] += w * p[1];
				acc[2] += w * p[2];
			}
			for (int c = 0; c < 3; c++)
				o[3 * x + c] = quant ? quantize((float)acc[c]) : (float)acc[c];
		}
	}
}

/* Vertical pass from tmp into dst; acc holds one output row of doubles. */
static void resample_cols(const float *tmp, const struct taps *tx, const struct taps *ty,
			  double *acc, float *dst, int quant)
{
	size_t row = (size_t)tx->n * 3;

	for (int y = 0; y < ty->n; y++) {
		float *o = dst + (size_t)y * row;

		memset(acc, 0, row * sizeof *acc);
		for (int j = 0; j < ty->k; j++) {
			const float *p = tmp + (size_t)ty->idx[y * ty->k + j] * row;
			double w = ty->w[y * ty->k + j];

			for (size_t x = 0; w != 0 && x < row; x++)
				acc[x] += w * p[x];
		}
		for (size_t x = 0; x < row; x++)
			o[x] = quant ? quantize((float)acc[x]) : (float)acc[x];
	}
}

/*
 * Applies (tx, ty) to every batch entry of img, reading the region at
 * (x0, y0) of ty's source height. Returns a new image or NULL (too large).
 */
static struct image *resample_image(const struct image *img, int x0, int y0, int rows_in,
				    const struct taps *tx, const struct taps *ty, int quant)
{
	struct image *out = image_new(tx->n, ty->n, img->n);
	size_t in_plane = (size_t)img->w * (size_t)img->h * 3;
	size_t out_plane;
	float *tmp, *src = NULL;
	double *acc;

	if (out == NULL)
		return NULL;
	out_plane = (size_t)out->w * (size_t)out->h * 3;
	tmp = xmalloc((size_t)rows_in * (size_t)tx->n * 3 * sizeof(float));
	acc = xmalloc((size_t)tx->n * 3 * sizeof(double));
	if (quant)
		src = xmalloc(in_plane * sizeof(float));
	for (int b = 0; b < img->n; b++) {
		const float *plane = img->px + (size_t)b * in_plane;

		if (quant) {
			/* ComfyUI hands PIL uint8(clip(255 * x)), truncated. */
			for (size_t i = 0; i < in_plane; i++) {
				float v = 255.0f * plane[i];

				src[i] = floorf(v < 0 ? 0 : v > 255 ? 255 : v) / 255.0f;
			}
			plane = src;
		}
		resample_rows(plane, img->w, x0, y0, rows_in, tx, tmp, quant);
		resample_cols(tmp, tx, ty, acc, out->px + (size_t)b * out_plane, quant);
	}
	free(acc);
	free(src);
	free(tmp);
	return out;
}

struct image *image_blur(const struct image *img, int radius, double sigma)
{
	struct taps tx, ty;
	struct image *out;

	if (radius <= 0)
		return image_same(img);
	if (radius > 31)
		radius = 31;
	if (!(sigma > 0))
		sigma = 0.1;
	taps_blur(&tx, img->w, radius, sigma);
	taps_blur(&ty, img->h, radius, sigma);
	out = resample_image(img, 0, 0, img->h, &tx, &ty, 0);
	taps_cleanup(&tx);
	taps_cleanup(&ty);
	return out;
}

/* --- Scaling. --- */

struct scale_method {
	const char *name;
	void (*build)(struct taps *t, int in, int out);
	int quant; /* 1: 8-bit values between passes, as PIL */
};

static const struct scale_method scale_methods[] = {
	{"nearest-exact", taps_nearest, 0},
	{"bilinear", taps_bilinear, 0},
	{"area", taps_area, 0},
	{"bicubic", taps_bicubic, 0},
	{"lanczos", taps_lanczos, 1},
};

static const struct scale_method *scale_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof scale_methods / sizeof scale_methods[0]; i++)
		if (name != NULL && strcmp(scale_methods[i].name, name) == 0)
			return &scale_methods[i];
	return &scale_methods[1];
}

/* Python's round(): half to even (the default rounding mode). */
static int py_round(double v)
{
	return (int)nearbyint(v);
}

struct crop_box {
	int x, y, w, h;
};

/* comfy.utils.common_upscale's "center" crop to the target aspect ratio. */
static struct crop_box crop_center(int old_w, int old_h, int w, int h)
{
	double old_aspect = (double)old_w / old_h, new_aspect = (double)w / h;
	struct crop_box box = {0, 0, old_w, old_h};

	if (old_aspect > new_aspect)
		box.x = py_round((old_w - old_w * (new_aspect / old_aspect)) / 2);
	else if (old_aspect < new_aspect)
		box.y = py_round((old_h - old_h * (old_aspect / new_aspect)) / 2);
	box.w = old_w - 2 * box.x;
	box.h = old_h - 2 * box.y;
	if (box.w < 1 || box.h < 1)
		box = (struct crop_box){0, 0, old_w, old_h};
	return box;
}

struct image *image_scale(const struct image *img, int w, int h, const char *method,
			  const char *crop)
{
	const struct scale_method *m = scale_method_find(method);
	struct crop_box box = {0, 0, img->w, img->h};
	struct taps tx, ty;
	struct image *out;

	if (w <= 0 && h <= 0)
		return image_same(img);
	/* ImageScale: a zero side keeps the aspect ratio. */
	if (w <= 0)
		w = py_round((double)img->w * h / img->h);
	else if (h <= 0)
		h = py_round((double)img->h * w / img->w);
	w = w < 1 ? 1 : w;
	h = h < 1 ? 1 : h;
	if (crop != NULL && strcmp(crop, "center") == 0)
		box = crop_center(img->w, img->h, w, h);
	m->build(&tx, box.w, w);
	m->build(&ty, box.h, h);
	out = resample_image(img, box.x, box.y, box.h, &tx, &ty, m->quant);
	taps_cleanup(&tx);
	taps_cleanup(&ty);
	return out;
}

/* --- The sim model's picture. --- */

#define SIM_MAX_SHAPES 8

enum sim_kind { SIM_DISC, SIM_BOX };

struct sim_shape {
	int kind;              /* enum sim_kind */
	int x0, y0, x1, y1;    /* bounding box in pixels, end exclusive */
	float cx, cy, r2;      /* SIM_DISC: centre and squared radius, pixels */
	float rgb[3];
};

struct sim_scene {
	float sky_top[3], sky_low[3], ground[3];
	int horizon;           /* first ground row */
	int stripe;            /* ground stripe height, pixels (>= 1) */
	int nshapes;
	struct sim_shape shapes[SIM_MAX_SHAPES];
};

/* splitmix64: a tiny, well-mixed generator; state advances per call. */
static uint64_t sim_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A float in [lo, hi). */
static float sim_range(uint64_t *state, float lo, float hi)
{
	return lo + (hi - lo) * (float)(sim_next(state) >> 40) / 16777216.0f;
}

static void sim_color(uint64_t *state, float rgb[3], float lo, float hi)
{
	for (int c = 0; c < 3; c++)
		rgb[c] = sim_range(state, lo, hi);
}

static int clamp_px(float v, int n)
{
	return v < 0 ? 0 : v > (float)n ? n : (int)v;
}

static void sim_disc(struct sim_shape *s, float cx, float cy, float r, int w, int h)
{
	s->kind = SIM_DISC;
	s->cx = cx;
	s->cy = cy;
	s->r2 = r * r;
	s->x0 = clamp_px(cx - r, w);
	s->x1 = clamp_px(cx + r + 1, w);
	s->y0 = clamp_px(cy - r, h);
	s->y1 = clamp_px(cy + r + 1, h);
}

static void sim_box(struct sim_shape *s, float x, float y, float bw, float bh, int w, int h)
{
	s->kind = SIM_BOX;
	s->x0 = clamp_px(x, w);
	s->x1 = clamp_px(x + bw, w);
	s->y0 = clamp_px(y, h);
	s->y1 = clamp_px(y + bh, h);
}

/*
 * Where the camera looks. A still has the panorama as wide as the picture
 * and every offset 0; a video frame spreads the shapes over a wider
 * panorama and moves the camera along it, the sun slower (it is far away)
 * and rising, the ground stripes scrolling towards the viewer.
 */
struct sim_cam {
	float pw;             /* panorama width the shapes are spread over, pixels */
	float pan;            /* camera offset into the panorama, pixels */
	float sun_dx, sun_dy; /* the sun's own offset, pixels */
	float t;              /* 0..1 along the video; scrolls the ground stripes */
};

/* Everything random about the picture, drawn from one stream. */
static void sim_plan(struct sim_scene *sc, uint64_t state, int w, int h, const struct sim_cam *cam)
{
	float side = (float)(w < h ? w : h);
	int towers;

	sim_color(&state, sc->sky_top, 0.05f, 0.45f);
	sim_color(&state, sc->sky_low, 0.55f, 1.0f);
	sim_color(&state, sc->ground, 0.1f, 0.5f);
	sc->horizon = (int)((float)h * sim_range(&state, 0.45f, 0.75f));
	sc->stripe = 1 + (int)(h * sim_range(&state, 0.01f, 0.04f));
	/* A sun in the sky, towers standing on the horizon, rocks in front. */
	sim_disc(&sc->shapes[0], cam->pw * sim_range(&state, 0.1f, 0.9f) - cam->sun_dx,
		 sc->horizon * sim_range(&state, 0.2f, 0.7f) - cam->sun_dy,
		 side * sim_range(&state, 0.05f, 0.14f), w, h);
	sim_color(&state, sc->shapes[0].rgb, 0.7f, 1.0f);
	towers = 2 + (int)sim_range(&state, 0, 3);
	sc->nshapes = 1;
	for (int i = 0; i < towers; i++) {
		struct sim_shape *s = &sc->shapes[sc->nshapes++];
		float bw = w * sim_range(&state, 0.03f, 0.14f), bh = h * sim_range(&state, 0.1f, 0.4f);

		sim_box(s, cam->pw * sim_range(&state, 0, 0.95f) - cam->pan, sc->horizon - bh, bw, bh, w, h);
		sim_color(&state, s->rgb, 0.0f, 0.8f);
	}
	while (sc->nshapes < SIM_MAX_SHAPES - 1 && sim_range(&state, 0, 1) < 0.7f) {
		struct sim_shape *s = &sc->shapes[sc->nshapes++];

		sim_disc(s, cam->pw * sim_range(&state, 0, 1) - cam->pan,
			 sc->horizon + (h - sc->horizon) * sim_range(&state, 0.2f, 1),
			 side * sim_range(&state, 0.03f, 0.1f), w, h);
		sim_color(&state, s->rgb, 0.2f, 0.9f);
	}
}

static void sim_background(const struct sim_scene *sc, float *px, int w, int h, float t)
{
	/* Six stripes pass over the whole video; a still (t = 0) does not move. */
	int scroll = (int)(t * 6.0f * (float)sc->stripe);

	for (int y = 0; y < h; y++) {
		float rgb[3], *row = px + (size_t)y * (size_t)w * 3;

		if (y < sc->horizon) {
			float f = (float)y / (float)(sc->horizon > 1 ? sc->horizon - 1 : 1);

			for (int c = 0; c < 3; c++)
				rgb[c] = sc->sky_top[c] + (sc->sky_low[c] - sc->sky_top[c]) * f;
		} else {
			float shade = ((y - sc->horizon + scroll) / sc->stripe) % 2 ? 0.75f : 1.0f;

			for (int c = 0; c < 3; c++)
				rgb[c] = sc->ground[c] * shade;
		}
		for (int x = 0; x < w; x++)
			memcpy(row + 3 * x, rgb, sizeof rgb);
	}
}

static void sim_paint(const struct sim_shape *s, float *px, int w)
{
	for (int y = s->y0; y < s->y1; y++) {
		float dy = (float)y + 0.5f - s->cy;

		for (int x = s->x0; x < s->x1; x++) {
			float dx = (float)x + 0.5f - s->cx;

			if (s->kind == SIM_DISC && dx * dx + dy * dy > s->r2)
				continue;
			memcpy(px + ((size_t)y * (size_t)w + (size_t)x) * 3, s->rgb, sizeof s->rgb);
		}
	}
}

/* Before the last step the picture is a mix of itself and seeded noise. */
static void sim_noise(float *px, size_t npx, uint64_t seed, float keep)
{
	for (size_t i = 0; i < npx; i++) {
		uint64_t state = seed ^ (i * 0xD1B54A32D192ED03ull);
		uint64_t r = sim_next(&state);

		for (int c = 0; c < 3; c++) {
			float noise = (float)((r >> (16 * c)) & 0xFFFF) / 65535.0f;
			float *p = px + 3 * i + c;

			*p = keep * *p + (1.0f - keep) * noise;
		}
	}
}

/* FNV-1a over the text, then mixed with the seed. */
static uint64_t sim_hash(const char *text, uint64_t seed)
{
	uint64_t hsh = 0xCBF29CE484222325ull, state = seed;

	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		hsh = (hsh ^ *p) * 0x100000001B3ull;
	return hsh ^ sim_next(&state);
}

/* The scene as cam sees it, drawn into px (w * h * 3 floats). */
static void sim_draw(float *px, uint64_t base, int w, int h, const struct sim_cam *cam)
{
	struct sim_scene sc;

	sim_plan(&sc, base, w, h, cam);
	sim_background(&sc, px, w, h, cam->t);
	for (int i = 0; i < sc.nshapes; i++)
		sim_paint(&sc.shapes[i], px, w);
}

struct image *image_sim_render(const char *text, uint64_t seed, int w, int h, int step,
			       int steps)
{
	struct image *img = image_new(w, h, 1);
	struct sim_cam still = {.pw = (float)w};
	uint64_t base;

	if (img == NULL)
		return NULL;
	base = sim_hash(text ? text : "", seed);
	sim_draw(img->px, base, w, h, &still);
	steps = steps < 1 ? 1 : steps;
	step = clampi(step, 0, steps);
	if (step < steps)
		sim_noise(img->px, (size_t)w * (size_t)h, base, (float)step / (float)steps);
	return img;
}

void image_sim_frame(struct image *batch, int index, const char *text, uint64_t seed)
{
	int w = batch->w, h = batch->h;
	float t = batch->n > 1 ? (float)index / (float)(batch->n - 1) : 0.0f;
	/* Half a picture of panning over the video, the sun at a fifth of the speed. */
	struct sim_cam cam = {.pw = 1.5f * (float)w, .pan = 0.5f * (float)w * t,
			      .sun_dx = 0.1f * (float)w * t, .sun_dy = 0.15f * (float)h * t, .t = t};

	if (index < 0 || index >= batch->n)
		return;
	sim_draw(batch->px + (size_t)index * (size_t)w * (size_t)h * 3,
		 sim_hash(text ? text : "", seed), w, h, &cam);
}

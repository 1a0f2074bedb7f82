/*
 * image.h - RGB float images (ComfyUI's IMAGE: [B,H,W,3] in 0..1) and the
 * pixel operations the built-in nodes need.
 *
 * Images are reference-counted because one output can feed several nodes
 * and the execution cache; operations return new images.
 */
#ifndef FNRUN_IMAGE_H
#define FNRUN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct image {
	int refs;     /* owners; freed when it drops to 0 */
	int w, h, n;  /* width, height, batch size */
	float *px;    /* n*h*w*3 floats, row-major, RGB in 0..1 */
};

/* A zeroed n x h x w image with one reference. NULL when too large (over 2^28 floats). */
struct image *image_new(int w, int h, int n);
struct image *image_ref(struct image *img);
void image_unref(struct image *img); /* NULL is a no-op */

/* EmptyImage: color 0xRRGGBB. */
struct image *image_fill(int w, int h, int n, uint32_t color);
/* ImageInvert: 1 - x. */
struct image *image_invert(const struct image *img);
/* ImageBlur: Gaussian, radius 1..31, sigma > 0 (ComfyUI's kernel). */
struct image *image_blur(const struct image *img, int radius, double sigma);
/*
 * ImageScale: methods "nearest-exact", "bilinear", "area", "bicubic",
 * "lanczos" (unknown: bilinear). w or h 0 keeps the aspect ratio. crop
 * "center" crops to the target aspect first.
 */
struct image *image_scale(const struct image *img, int w, int h, const char *method,
			  const char *crop);
/*
 * The sim model's picture: deterministic in (text, seed, w, h), with visible
 * structure (shapes, gradients), refined as step goes from 1 to steps.
 */
struct image *image_sim_render(const char *text, uint64_t seed, int w, int h, int step,
			       int steps);
/*
 * Frame `index` of the sim video into batch entry index (batch->n frames,
 * batch->w x batch->h): the still's scene (text, seed) seen by a camera
 * that pans across a wider panorama from the first frame to the last, so
 * successive frames move. Deterministic in (text, seed, w, h, index, n).
 * The caller must hold batch alone (nobody else reads it yet).
 */
void image_sim_frame(struct image *batch, int index, const char *text, uint64_t seed);

/*
 * Encodes batch entry `index` as PNG (8-bit RGB) with optional tEXt chunks
 * (keys[i] = values[i]). Caller frees *out. Returns 0 or -1.
 */
int png_encode(const struct image *img, int index, const char *const *keys,
	       const char *const *values, size_t ntext, unsigned char **out, size_t *outlen);
/*
 * Writes the PNG to path atomically (a temp file in the same directory,
 * then rename), so no half-written file is ever visible. Returns 0 or -1
 * with errno set.
 */
int png_write(const char *path, const struct image *img, int index, const char *const *keys,
	      const char *const *values, size_t ntext);
/* Reads the width and height from a PNG file's IHDR; 0 or -1. */
int png_size(const char *path, int *w, int *h);

#endif

/*
 * png.c - PNG output with zlib only: 8-bit RGB, no interlace.
 *
 * A file is the signature, IHDR, one tEXt chunk per key, one IDAT holding
 * the zlib stream of the filtered rows, and IEND; every chunk carries zlib's
 * crc32 of its type and data. Each row uses the Sub filter (the difference
 * from the pixel to the left), which shrinks smooth pictures a lot for one
 * subtraction per byte.
 *
 * Floats become bytes as ComfyUI's SaveImage does it:
 * uint8(clip(255 * x, 0, 255)), truncated, in float32.
 *
 * png_write() never exposes a half-written file: it writes a hidden temp
 * file in the target directory and renames it over the target.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "image.h"
#include "util.h"

/* ComfyUI's SaveImage passes compress_level=4 to PIL. */
#define PNG_ZLIB_LEVEL 4
/* Largest chunk payload the format allows. */
#define PNG_CHUNK_MAX 0x7FFFFFFFu

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Appends one chunk at out + *off (the caller sized out) and advances *off.
 * The data comes in two parts so tEXt needs no copy: a then b.
 */
static void put_chunk(unsigned char *out, size_t *off, const char *type, const void *a,
		      size_t alen, const void *b, size_t blen)
{
	unsigned char *p = out + *off;
	uLong crc;

	put32(p, (uint32_t)(alen + blen));
	memcpy(p + 4, type, 4);
	if (alen > 0)
		memcpy(p + 8, a, alen);
	if (blen > 0)
		memcpy(p + 8 + alen, b, blen);
	crc = crc32(0L, p + 4, (uInt)(4 + alen));
	if (blen > 0)
		crc = crc32(crc, p + 8 + alen, (uInt)blen);
	put32(p + 8 + alen + blen, (uint32_t)crc);
	*off += 12 + alen + blen;
}

static unsigned char to_byte(float x)
{
	float v = 255.0f * x;

	/* fmaxf-style clamp that also maps NaN to 0. */
	if (!(v > 0))
		return 0;
	return v >= 255 ? 255 : (unsigned char)v;
}

/* Raw scanlines of one batch entry, each with filter 1 (Sub). Caller frees. */
static unsigned char *png_rows(const struct image *img, int index, size_t *len)
{
	size_t stride = (size_t)img->w * 3 + 1;
	const float *px = img->px + (size_t)index * (size_t)img->w * (size_t)img->h * 3;
	unsigned char *raw = xmalloc(stride * (size_t)img->h);

	for (int y = 0; y < img->h; y++) {
		unsigned char *row = raw + (size_t)y * stride;
		const float *src = px + (size_t)y * (size_t)img->w * 3;
		unsigned char prev[3] = {0, 0, 0};

		row[0] = 1;
		for (size_t i = 0; i < (size_t)img->w * 3; i++) {
			unsigned char v = to_byte(src[i]);

			row[1 + i] = (unsigned char)(v - prev[i % 3]);
			prev[i % 3] = v;
		}
	}
	*len = stride * (size_t)img->h;
	return raw;
}

static int text_ok(const char *key, const char *value)
{
	size_t klen = key ? strlen(key) : 0;

	/* PNG keywords are 1-79 bytes; the value must fit a chunk. */
	return klen >= 1 && klen <= 79 && value != NULL && strlen(value) < PNG_CHUNK_MAX - 80;
}

/*
 * One deflate stream, reset between images: setting one up allocates and
 * clears about 256 KiB, which cost more than compressing a small image
 * (and returned the memory to the system each time). The worker encodes
 * on its loop thread only.
 */
static z_stream zs;
static int zs_ready;

/* IDAT payload: the zlib stream of the filtered rows. Caller frees. */
static unsigned char *png_deflate(const struct image *img, int index, size_t *zlen)
{
	size_t rawlen;
	unsigned char *raw = png_rows(img, index, &rawlen);
	uLong n = compressBound((uLong)rawlen);
	unsigned char *z = xmalloc(n);
	int rc = zs_ready ? deflateReset(&zs) : deflateInit(&zs, PNG_ZLIB_LEVEL);

	zs_ready = rc == Z_OK;
	if (rc == Z_OK) {
		zs.next_in = raw;
		zs.avail_in = (uInt)rawlen;
		zs.next_out = z;
		zs.avail_out = (uInt)n;
		rc = deflate(&zs, Z_FINISH);
	}
	free(raw);
	if (rc != Z_STREAM_END || zs.total_out > PNG_CHUNK_MAX) {
		free(z);
		return NULL;
	}
	*zlen = zs.total_out;
	return z;
}

int png_encode(const struct image *img, int index, const char *const *keys,
	       const char *const *values, size_t ntext, unsigned char **out, size_t *outlen)
{
	unsigned char ihdr[13], *z, *buf;
	size_t zlen, total, off = 0;

	*out = NULL;
	*outlen = 0;
	if (img == NULL || index < 0 || index >= img->n)
		return -1;
	for (size_t i = 0; i < ntext; i++)
		if (!text_ok(keys[i], values[i]))
			return -1;
	z = png_deflate(img, index, &zlen);
	if (z == NULL)
		return -1;
	total = sizeof png_signature + (12 + sizeof ihdr) + (12 + zlen) + 12;
	for (size_t i = 0; i < ntext; i++)
		total += 12 + strlen(keys[i]) + 1 + strlen(values[i]);
	put32(ihdr, (uint32_t)img->w);
	put32(ihdr + 4, (uint32_t)img->h);
	ihdr[8] = 8;  /* bit depth */
	ihdr[9] = 2;  /* colour type: RGB */
	ihdr[10] = 0; /* deflate */
	ihdr[11] = 0; /* adaptive filtering */
	ihdr[12] = 0; /* no interlace */
	buf = xmalloc(total);
	memcpy(buf, png_signature, sizeof png_signature);
	off = sizeof png_signature;
	put_chunk(buf, &off, "IHDR", ihdr, sizeof ihdr, NULL, 0);
	for (size_t i = 0; i < ntext; i++)
		put_chunk(buf, &off, "tEXt", keys[i], strlen(keys[i]) + 1, values[i],
			  strlen(values[i]));
	put_chunk(buf, &off, "IDAT", z, zlen, NULL, 0);
	put_chunk(buf, &off, "IEND", NULL, 0, NULL, 0);
	free(z);
	*out = buf;
	*outlen = off;
	return 0;
}

/* Writes all of data to fd, retrying short writes. 0 or -1 with errno. */
static int write_all(int fd, const unsigned char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* "<dir>/.<name>.XXXXXX": hidden, so directory scans for counters skip it. */
static int temp_path(const char *path, char *tmp, size_t size)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	int n = snprintf(tmp, size, "%.*s.%s.XXXXXX", dirlen, path, path + dirlen);

	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int write_file(const char *tmp_template, const char *path, const unsigned char *data,
		      size_t len)
{
	char tmp[PATH_MAX];
	int fd, saved;

	memcpy(tmp, tmp_template, strlen(tmp_template) + 1);
	fd = mkstemp(tmp);
	if (fd < 0)
		return -1;
	/* mkstemp makes 0600; outputs are served and copied, like ComfyUI's. */
	if (fchmod(fd, 0644) < 0 || write_all(fd, data, len) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) == 0)
		return 0;
	fd = -1;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

int png_write(const char *path, const struct image *img, int index, const char *const *keys,
	      const char *const *values, size_t ntext)
{
	char tmp[PATH_MAX];
	unsigned char *data;
	size_t len;
	int rc;

	if (temp_path(path, tmp, sizeof tmp) < 0)
		return -1;
	if (png_encode(img, index, keys, values, ntext, &data, &len) < 0) {
		errno = EINVAL;
		return -1;
	}
	rc = write_file(tmp, path, data, len);
	free(data);
	return rc;
}

int png_size(const char *path, int *w, int *h)
{
	unsigned char head[24];
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (got < sizeof head) {
		ssize_t n = read(fd, head + got, sizeof head - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got < sizeof head || memcmp(head, png_signature, 8) != 0 ||
	    memcmp(head + 12, "IHDR", 4) != 0 || get32(head + 16) > INT_MAX ||
	    get32(head + 20) > INT_MAX) {
		errno = EINVAL;
		return -1;
	}
	*w = (int)get32(head + 16);
	*h = (int)get32(head + 20);
	return 0;
}

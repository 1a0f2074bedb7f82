/*
 * video_enc.c - the ffmpeg child that turns an IMAGE batch into an MP4
 * (see video_enc.h).
 *
 * One encoder's life:
 *
 *   start -- temp file made, ffmpeg spawned --> FEEDING
 *   FEEDING -- a frame written, more left --> FEEDING (next frame converted)
 *   FEEDING -- last frame written, or a write failed --> stdin closed, WAITING
 *   FEEDING/WAITING -- cancel --> SIGKILL to the group, WAITING
 *   WAITING -- exit and stderr EOF (or the grace timer after exit) --> finish
 *   finish: cancelled: temp removed, INTERRUPTED; exit 0 and a non-empty
 *       file: renamed into place, OK; else temp removed, FAILED
 *
 * Invariants: 1. at most one frame write is in flight, so one RGB buffer
 * serves every frame and memory stays one frame however long the video;
 * 2. on_end is called exactly once, after ffmpeg has exited; 3. the
 * encoder is freed when its handles have all closed (pending == 0), never
 * earlier; 4. the final path never holds a partial file.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "util.h"
#include "video_enc.h"

#define ENC_GRACE_MS 2000     /* after exit, how long to wait for stderr's EOF */
#define ENC_TAIL_BYTES 2048   /* the end of ffmpeg's stderr kept for a failure */
#define ENC_MAX_METADATA 32768 /* a longer prompt is not tagged (argv limits) */

struct video_enc {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, err;
	uv_timer_t grace;
	uv_write_t wreq;
	int pending;            /* handles initialised and not yet closed */
	int pid;
	struct image *frames;   /* one reference */
	int next;               /* the next frame to write */
	unsigned char *rgb;     /* one frame, w * h * 3 bytes; owned */
	char *path, *tmp;       /* final and temp file; owned */
	char *prompt_json;      /* owned; NULL: no metadata */
	double fps;
	int in_closed, err_eof, exited, finished, cancelled;
	int64_t exit_status;
	int term_signal;
	char tail[ENC_TAIL_BYTES + 1]; /* the end of stderr, NUL-terminated */
	size_t tail_len;
	char rbuf[4096];
	uint64_t start_ms;
	void (*on_end)(void *arg, int outcome, const char *message);
	void *arg;
};

static void enc_on_closed(uv_handle_t *h)
{
	struct video_enc *e = h->data;

	if (--e->pending > 0)
		return;
	image_unref(e->frames);
	free(e->rgb);
	free(e->path);
	free(e->tmp);
	free(e->prompt_json);
	free(e);
}

static void enc_close(struct video_enc *e, uv_handle_t *h)
{
	if (h->loop != NULL && !uv_is_closing(h))
		uv_close(h, enc_on_closed);
}

static void enc_handle(struct video_enc *e, uv_handle_t *h)
{
	h->data = e;
	e->pending++;
}

static void enc_close_stdin(struct video_enc *e)
{
	if (e->in_closed)
		return;
	e->in_closed = 1;
	enc_close(e, (uv_handle_t *)&e->in); /* ffmpeg reads EOF: the video ends */
}

/* Keeps the last ENC_TAIL_BYTES of stderr. */
static void tail_feed(struct video_enc *e, const char *p, size_t n)
{
	e->tail_len = util_tail_keep(e->tail, e->tail_len, ENC_TAIL_BYTES, p, n);
	e->tail[e->tail_len] = '\0';
}

/* Why it failed, or NULL when the temp file is a finished video. Caller frees. */
static char *enc_failure(struct video_enc *e)
{
	struct stat st;
	size_t n = e->tail_len;

	while (n > 0 && (e->tail[n - 1] == '\n' || e->tail[n - 1] == '\r' || e->tail[n - 1] == ' '))
		n--;
	if (e->term_signal)
		return xasprintf("ffmpeg was killed by signal %d (%s)%s%.*s", e->term_signal,
				 strsignal(e->term_signal), n ? ": " : "", (int)n, e->tail);
	if (e->exit_status != 0)
		return xasprintf("ffmpeg exited with status %" PRId64 "%s%.*s", e->exit_status,
				 n ? ": " : "", (int)n, e->tail);
	if (stat(e->tmp, &st) < 0 || st.st_size == 0)
		return xstrdup("ffmpeg exited with status 0 but wrote no video");
	if (rename(e->tmp, e->path) < 0)
		return xasprintf("cannot rename %s to %s: %s", e->tmp, e->path, strerror(errno));
	return NULL;
}

/* Once ffmpeg has exited and its stderr is done (or given up on). */
static void enc_finish(struct video_enc *e)
{
	char *why = NULL;
	int outcome = VIDEO_ENC_OK;

	if (e->finished)
		return;
	e->finished = 1;
	enc_close_stdin(e);
	enc_close(e, (uv_handle_t *)&e->err);
	enc_close(e, (uv_handle_t *)&e->grace);
	if (e->cancelled)
		outcome = VIDEO_ENC_INTERRUPTED;
	else if ((why = enc_failure(e)) != NULL)
		outcome = VIDEO_ENC_FAILED;
	if (outcome != VIDEO_ENC_OK)
		unlink(e->tmp);
	log_info("video encode end pid=%d outcome=%d frames=%d ms=%" PRIu64, e->pid, outcome,
		 e->frames->n, uv_now(e->loop) - e->start_ms);
	e->on_end(e->arg, outcome, why);
	free(why);
}

static void enc_on_grace(uv_timer_t *t)
{
	struct video_enc *e = t->data;

	/* ffmpeg exited but something still holds its stderr open. */
	if (e->exited)
		enc_finish(e);
}

static void enc_on_exit(uv_process_t *p, int64_t status, int sig)
{
	struct video_enc *e = p->data;

	e->exited = 1;
	e->exit_status = status;
	e->term_signal = sig;
	enc_close(e, (uv_handle_t *)p);
	if (e->err_eof) {
		enc_finish(e);
		return;
	}
	uv_timer_start(&e->grace, enc_on_grace, ENC_GRACE_MS, 0);
}

static void enc_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct video_enc *e = h->data;

	*b = uv_buf_init(e->rbuf, sizeof e->rbuf);
}

static void enc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct video_enc *e = s->data;

	if (nread > 0)
		tail_feed(e, b->base, (size_t)nread);
	if (nread >= 0)
		return;
	e->err_eof = 1;
	enc_close(e, (uv_handle_t *)s);
	if (e->exited)
		enc_finish(e);
}

/* Frame i as 8-bit RGB, as ComfyUI's clamp(x * 255).to(uint8) makes it. */
static void enc_convert(struct video_enc *e, int i)
{
	size_t n = (size_t)e->frames->w * (size_t)e->frames->h * 3;
	const float *px = e->frames->px + (size_t)i * n;

	for (size_t k = 0; k < n; k++) {
		float v = px[k] * 255.0f;

		e->rgb[k] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (unsigned char)v;
	}
}

static void enc_write_next(struct video_enc *e);

static void enc_on_written(uv_write_t *w, int status)
{
	struct video_enc *e = w->data;

	if (status < 0) {
		/* ffmpeg stopped reading (it failed, or was killed): its exit says why. */
		if (status != UV_ECANCELED)
			log_debug("video encode stdin pid=%d error=%s", e->pid, uv_strerror(status));
		enc_close_stdin(e);
		return;
	}
	enc_write_next(e);
}

static void enc_write_next(struct video_enc *e)
{
	size_t n = (size_t)e->frames->w * (size_t)e->frames->h * 3;
	uv_buf_t b = uv_buf_init((char *)e->rgb, (unsigned)n);

	if (e->in_closed || e->cancelled)
		return;
	if (e->next >= e->frames->n) {
		enc_close_stdin(e);
		return;
	}
	enc_convert(e, e->next++);
	if (uv_write(&e->wreq, (uv_stream_t *)&e->in, &b, 1, enc_on_written) < 0)
		enc_close_stdin(e);
}

/* ffmpeg's argv: v borrows constants and own's strings; the caller frees own[0..nown). */
struct enc_argv {
	char *v[48];  /* NULL-terminated */
	char *own[8]; /* the formatted ones, owned */
	int n, nown;
};

static void argv_add(struct enc_argv *a, const char *s)
{
	a->v[a->n++] = (char *)s;
}

static void argv_addf(struct enc_argv *a, char *s)
{
	a->own[a->nown++] = s;
	argv_add(a, s);
}

/*
 * H.264 in MP4 with the moov atom first (+faststart), so a browser plays
 * it while it downloads without range requests; ultrafast is the quickest
 * preset (the measurements are in README.md). yuv420p needs even sides:
 * an odd last row or column is cropped.
 */
static void enc_argv(struct video_enc *e, struct enc_argv *a)
{
	memset(a, 0, sizeof *a);
	argv_add(a, "ffmpeg");
	argv_add(a, "-hide_banner");
	argv_add(a, "-nostats");
	argv_add(a, "-loglevel");
	argv_add(a, "error");
	argv_add(a, "-f");
	argv_add(a, "rawvideo");
	argv_add(a, "-pix_fmt");
	argv_add(a, "rgb24");
	argv_add(a, "-video_size");
	argv_addf(a, xasprintf("%dx%d", e->frames->w, e->frames->h));
	argv_add(a, "-framerate");
	argv_addf(a, xasprintf("%lld/1000", (long long)llround(e->fps * 1000)));
	argv_add(a, "-i");
	argv_add(a, "pipe:0");
	argv_add(a, "-an");
	argv_add(a, "-vf");
	argv_add(a, "crop=trunc(iw/2)*2:trunc(ih/2)*2");
	argv_add(a, "-c:v");
	argv_add(a, "libx264");
	argv_add(a, "-preset");
	argv_add(a, "ultrafast");
	argv_add(a, "-pix_fmt");
	argv_add(a, "yuv420p");
	argv_add(a, "-movflags");
	argv_add(a, "+faststart+use_metadata_tags");
	if (e->prompt_json != NULL) {
		argv_add(a, "-metadata");
		argv_addf(a, xasprintf("prompt=%s", e->prompt_json));
	}
	argv_add(a, "-f");
	argv_add(a, "mp4");
	argv_add(a, "-y");
	argv_add(a, e->tmp);
	a->v[a->n] = NULL;
}

/* "<dir>/.<name>.XXXXXX", created empty; 0 or -1 with errno. */
static int enc_make_temp(struct video_enc *e)
{
	const char *slash = strrchr(e->path, '/');
	int dirlen = slash ? (int)(slash - e->path + 1) : 0;
	int fd;

	e->tmp = xasprintf("%.*s.%s.XXXXXX", dirlen, e->path, e->path + dirlen);
	fd = mkstemp(e->tmp);
	if (fd < 0)
		return -1;
	/* mkstemp makes 0600; outputs are served and copied, like png.c's. ffmpeg keeps the mode. */
	if (fchmod(fd, 0644) < 0) {
		int saved = errno;

		close(fd);
		unlink(e->tmp);
		errno = saved;
		return -1;
	}
	close(fd);
	return 0;
}

static int enc_spawn(struct video_enc *e, struct err *err)
{
	uv_stdio_container_t stdio[3];
	uv_process_options_t po;
	struct enc_argv a;
	int rc;

	memset(stdio, 0, sizeof stdio);
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&e->in;
	stdio[1].flags = UV_IGNORE;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&e->err;
	enc_argv(e, &a);
	memset(&po, 0, sizeof po);
	po.file = a.v[0];
	po.args = a.v;
	po.exit_cb = enc_on_exit;
	po.flags = UV_PROCESS_DETACHED; /* its own group: the kill reaches all of it */
	po.stdio = stdio;
	po.stdio_count = 3;
	rc = uv_spawn(e->loop, &e->proc, &po);
	enc_handle(e, (uv_handle_t *)&e->proc); /* initialised even when the spawn fails */
	for (int i = 0; i < a.nown; i++)
		free(a.own[i]);
	if (rc == UV_ENOENT)
		err_set(err, ERR_NOT_FOUND,
			"ffmpeg was not found on PATH; the video nodes need it (Debian package ffmpeg)");
	else if (rc < 0)
		err_set(err, ERR_UNAVAILABLE, "cannot run ffmpeg: %s", uv_strerror(rc));
	return rc < 0 ? -1 : 0;
}

static struct video_enc *enc_new(uv_loop_t *loop, const struct video_enc_opts *o)
{
	struct video_enc *e = xcalloc(1, sizeof *e);

	e->loop = loop;
	e->frames = image_ref((struct image *)o->frames);
	e->fps = o->fps > 0 ? o->fps : 24.0;
	e->path = xstrdup(o->path);
	if (o->prompt_json != NULL && strlen(o->prompt_json) < ENC_MAX_METADATA)
		e->prompt_json = xstrdup(o->prompt_json);
	e->rgb = xmalloc((size_t)o->frames->w * (size_t)o->frames->h * 3);
	e->on_end = o->on_end;
	e->arg = o->arg;
	e->wreq.data = e;
	uv_pipe_init(loop, &e->in, 0);
	enc_handle(e, (uv_handle_t *)&e->in);
	uv_pipe_init(loop, &e->err, 0);
	enc_handle(e, (uv_handle_t *)&e->err);
	uv_timer_init(loop, &e->grace);
	enc_handle(e, (uv_handle_t *)&e->grace);
	return e;
}

/* Closes every handle of an encoder whose start failed; it frees itself. */
static void enc_abandon(struct video_enc *e)
{
	e->finished = 1;
	enc_close(e, (uv_handle_t *)&e->proc);
	enc_close(e, (uv_handle_t *)&e->in);
	enc_close(e, (uv_handle_t *)&e->err);
	enc_close(e, (uv_handle_t *)&e->grace);
}

struct video_enc *video_enc_start(uv_loop_t *loop, const struct video_enc_opts *o,
				  struct err *err)
{
	struct video_enc *e = enc_new(loop, o);

	if (enc_make_temp(e) < 0) {
		err_set(err, ERR_IO, "cannot create a temp file beside %s: %s", o->path,
			strerror(errno));
		free(e->tmp);
		e->tmp = NULL;
		enc_abandon(e);
		return NULL;
	}
	if (enc_spawn(e, err) < 0) {
		log_warn("video encode spawn error=%s", log_q(err->msg));
		unlink(e->tmp);
		enc_abandon(e);
		return NULL;
	}
	e->pid = e->proc.pid;
	e->start_ms = uv_now(loop);
	log_info("video encode start pid=%d frames=%d size=%dx%d fps=%g", e->pid, e->frames->n,
		 e->frames->w, e->frames->h, e->fps);
	uv_read_start((uv_stream_t *)&e->err, enc_on_alloc, enc_on_read);
	enc_write_next(e);
	return e;
}

void video_enc_cancel(struct video_enc *e)
{
	if (e == NULL || e->finished || e->cancelled)
		return;
	e->cancelled = 1;
	log_info("video encode cancel pid=%d", e->pid);
	if (!e->exited)
		kill(-e->pid, SIGKILL);
	enc_close_stdin(e);
}

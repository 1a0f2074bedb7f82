/*
 * video_enc.h - encodes an IMAGE batch as an MP4 (H.264, yuv420p) by
 * piping raw RGB frames to an ffmpeg child, without blocking the loop.
 *
 * The frames go to ffmpeg's stdin one at a time (the next only once the
 * previous is written), so the loop keeps serving /ws, /queue and
 * /interrupt while ffmpeg works. ffmpeg writes a hidden temp file beside
 * the final path (".<name>.XXXXXX"); only a clean exit renames it into
 * place, every other ending removes it. ffmpeg runs in its own process
 * group; video_enc_cancel() SIGKILLs it.
 */
#ifndef FNRUN_VIDEO_ENC_H
#define FNRUN_VIDEO_ENC_H

#include <uv.h>

#include "err.h"

struct image;
struct video_enc;

enum video_enc_outcome { VIDEO_ENC_OK, VIDEO_ENC_FAILED, VIDEO_ENC_INTERRUPTED };

struct video_enc_opts {
	const struct image *frames; /* referenced until the end: the batch, n >= 1 frames */
	double fps;                 /* frames per second, > 0 (kept to 1/1000) */
	const char *path;           /* the final file; copied */
	const char *prompt_json;    /* the "prompt" metadata tag, or NULL; copied */
	/*
	 * Called once, after ffmpeg has exited and the temp file is renamed or
	 * removed. message: why it failed (ffmpeg's exit and the end of its
	 * stderr), NULL otherwise; borrowed for the call. The encoder frees
	 * itself after its handles close; do not touch it after on_end.
	 */
	void (*on_end)(void *arg, int outcome, const char *message);
	void *arg;
};

/*
 * Starts ffmpeg (found on PATH) and the frame feed. Returns the encoder,
 * or NULL with err set (on_end is never called then): ERR_NOT_FOUND when
 * there is no ffmpeg on PATH (install the Debian package ffmpeg),
 * ERR_IO when the temp file cannot be made, ERR_UNAVAILABLE when pipes or
 * the spawn fail otherwise. Nothing is left on disk after a failed start.
 */
struct video_enc *video_enc_start(uv_loop_t *loop, const struct video_enc_opts *o,
				  struct err *err);

/* Kills ffmpeg; on_end follows with VIDEO_ENC_INTERRUPTED. Idempotent. */
void video_enc_cancel(struct video_enc *e);

#endif

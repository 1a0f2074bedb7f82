/*
 * thumb_video.h - a PNG poster of a video result: its first frame, scaled
 * down, made by an ffmpeg child process.
 *
 * Blocking: call it from libuv's thread pool, never on the loop. It keeps
 * no state between calls, so calls may run at once on different threads.
 */
#ifndef FNRUN_THUMB_VIDEO_H
#define FNRUN_THUMB_VIDEO_H

#include "err.h"

/* Most bytes of PNG read back from ffmpeg; over it the poster is refused. */
#define THUMB_VIDEO_MAX_PNG (8 << 20)

/*
 * Runs `ffmpeg` (found on PATH) on the video src and writes the first
 * frame to dst as a PNG whose longer side is at most max_side pixels
 * (never scaled up), keeping the aspect ratio. ffmpeg gets /dev/null as
 * stdin, its own process group and default signals; its PNG comes back on
 * a pipe, bounded by THUMB_VIDEO_MAX_PNG, and it is killed when it runs
 * past timeout_ms. dst appears whole or not at all (a temp file in its
 * directory, then rename).
 *
 * Returns 0, or -1 with err set: ERR_NOT_FOUND when there is no ffmpeg on
 * PATH; ERR_TIMEOUT when it ran too long; ERR_TOO_LARGE when its output
 * was over the bound; ERR_INVALID when max_side is outside 1..16384 or
 * ffmpeg failed or wrote no PNG (the message has the end of its stderr);
 * ERR_IO when dst cannot be written. On failure dst is untouched and no
 * temp file or child process stays.
 */
int thumb_video_poster(const char *src, const char *dst, int max_side, int timeout_ms,
		       struct err *err);

#endif

/*
 * thumb_video.c - a video's poster: ffmpeg decodes the first frame and
 * writes it, scaled, as a PNG to a pipe; we check it and write it to disk.
 *
 * Invariants:
 * 1. The child is always reaped before we return (waitpid on its own pid,
 *    never -1: libuv reaps only the children it spawned itself), and is
 *    SIGKILLed first when it runs past the deadline or over the bound.
 * 2. Our pipe ends are close-on-exec, so a child another thread spawns at
 *    the same time never holds them open (we would wait for an EOF that
 *    never comes); posix_spawn's dup2 gives ffmpeg its own copies.
 * 3. Memory is bounded: the PNG by THUMB_VIDEO_MAX_PNG, stderr by the tail
 *    kept for the message.
 * 4. dst is replaced by rename(2) of a complete temp file in its directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "thumb.h"
#include "thumb_video.h"
#include "util.h"

extern char **environ;

#define POSTER_TAIL 512 /* bytes of ffmpeg's stderr kept for a message */

/* One ffmpeg run: the child, our pipe ends and what came back. */
struct poster {
	pid_t pid;
	int out, errfd;            /* our read ends; -1 once at EOF */
	unsigned char *png;        /* stdout, up to THUMB_VIDEO_MAX_PNG bytes; owned */
	size_t len;
	int too_large;
	char tail[POSTER_TAIL + 1]; /* the end of stderr */
	size_t tail_len;
};

static void poster_tail(struct poster *p, const char *b, size_t n)
{
	p->tail_len = util_tail_keep(p->tail, p->tail_len, POSTER_TAIL, b, n);
	p->tail[p->tail_len] = '\0';
	while (p->tail_len > 0 && (p->tail[p->tail_len - 1] == '\n' || p->tail[p->tail_len - 1] == '\r'))
		p->tail[--p->tail_len] = '\0';
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Spawns ffmpeg with stdout and stderr on pipes; 0, or -1 with err. */
static int poster_spawn(struct poster *p, char *const argv[], struct err *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int out[2] = {-1, -1}, errp[2] = {-1, -1}, rc;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		err_set(err, ERR_IO, "pipe: %s", strerror(errno));
		close_fd(&out[0]), close_fd(&out[1]), close_fd(&errp[0]), close_fd(&errp[1]);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	posix_spawnattr_init(&at);
	/* A thread-pool thread blocks signals; ffmpeg must get the defaults. */
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(&p->pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close_fd(&out[1]);
	close_fd(&errp[1]);
	p->out = out[0];
	p->errfd = errp[0];
	if (rc == 0)
		return 0;
	close_fd(&p->out);
	close_fd(&p->errfd);
	if (rc == ENOENT)
		err_set(err, ERR_NOT_FOUND, "ffmpeg was not found on PATH (Debian package ffmpeg)");
	else
		err_set(err, ERR_IO, "cannot run ffmpeg: %s", strerror(rc));
	return -1;
}

/* Reads what is ready on fd; at EOF (or an error) closes it. */
static void poster_read(struct poster *p, int *fd)
{
	char b[16384];
	ssize_t n = read(*fd, b, sizeof b);

	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		close_fd(fd);
		return;
	}
	if (fd == &p->errfd) {
		poster_tail(p, b, (size_t)n);
		return;
	}
	if (p->len + (size_t)n > THUMB_VIDEO_MAX_PNG) {
		p->too_large = 1;
		close_fd(fd);
		return;
	}
	memcpy(p->png + p->len, b, (size_t)n);
	p->len += (size_t)n;
}

/* Reads both pipes until EOF, the deadline or the bound; 0, or -1 on timeout. */
static int poster_collect(struct poster *p, int64_t deadline)
{
	while ((p->out >= 0 || p->errfd >= 0) && !p->too_large) {
		struct pollfd pf[2] = {{.fd = p->out, .events = POLLIN}, {.fd = p->errfd, .events = POLLIN}};
		int64_t now = util_now_ms();
		int r;

		if (now >= deadline)
			return -1;
		r = poll(pf, 2, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			return -1;
		if (r > 0 && pf[0].revents)
			poster_read(p, &p->out);
		if (r > 0 && pf[1].revents)
			poster_read(p, &p->errfd);
	}
	return 0;
}

/*
 * Reaps the child: it has closed its output, so it is exiting; past the
 * deadline it is killed. Returns its wait status, or -1 when it could not
 * be waited for (then it counts as failed).
 */
static int poster_reap(struct poster *p, int64_t deadline, int kill_now)
{
	int status = 0;

	if (kill_now)
		kill(-p->pid, SIGKILL);
	for (;;) {
		pid_t r = waitpid(p->pid, &status, kill_now ? 0 : WNOHANG);

		if (r == p->pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (r == 0 && util_now_ms() >= deadline) {
			kill(-p->pid, SIGKILL);
			kill_now = 1;
		} else if (r == 0) {
			poll(NULL, 0, 5); /* bounded by the deadline; the exit is imminent */
		}
	}
}

/* Writes the PNG to dst through a temp file in its directory; 0 or -1 with err. */
static int poster_write(const char *dst, const unsigned char *png, size_t len, struct err *err)
{
	const char *slash = strrchr(dst, '/');
	char *tmp = xasprintf("%.*s.poster.XXXXXX", slash ? (int)(slash - dst + 1) : 0, dst);
	int fd = mkstemp(tmp), ok = fd >= 0 && fchmod(fd, 0644) == 0;

	for (size_t off = 0; ok && off < len;) {
		ssize_t n = write(fd, png + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		ok = n > 0;
		off += n > 0 ? (size_t)n : 0;
	}
	if (fd >= 0 && close(fd) < 0)
		ok = 0;
	if (ok && rename(tmp, dst) == 0) {
		free(tmp);
		return 0;
	}
	err_set(err, ERR_IO, "cannot write %s: %s", dst, strerror(errno));
	if (fd >= 0)
		unlink(tmp);
	free(tmp);
	return -1;
}

/* What went wrong with a finished run, or 0 when png holds a PNG. */
static int poster_check(const struct poster *p, int status, struct err *err)
{
	int w, h;

	if (p->too_large) {
		err_set(err, ERR_TOO_LARGE, "ffmpeg's poster is over %d bytes", THUMB_VIDEO_MAX_PNG);
		return -1;
	}
	if (status == -1) {
		err_set(err, ERR_INVALID, "ffmpeg could not be waited for: %s", strerror(errno));
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		err_set(err, ERR_INVALID, "ffmpeg failed (%s %d): %s",
			WIFEXITED(status) ? "status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), p->tail);
		return -1;
	}
	if (thumb_png_header(p->png, p->len, &w, &h) < 0) {
		err_set(err, ERR_INVALID, "ffmpeg wrote no PNG: %s", p->tail);
		return -1;
	}
	return 0;
}

int thumb_video_poster(const char *src, const char *dst, int max_side, int timeout_ms,
		       struct err *err)
{
	char scale[128];
	char *argv[] = {"ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i",
			(char *)src, "-an", "-frames:v", "1", "-vf", scale, "-f", "image2pipe",
			"-c:v", "png", "pipe:1", NULL};
	struct poster p = {.pid = -1, .out = -1, .errfd = -1};
	int64_t deadline = util_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
	int status, rc = -1, late;

	if (max_side < 1 || max_side > THUMB_MAX_SIDE) {
		err_set(err, ERR_INVALID, "max_side %d is outside 1..%d", max_side, THUMB_MAX_SIDE);
		return -1;
	}
	/* Fit within max_side, never larger than the video. */
	snprintf(scale, sizeof scale,
		 "scale=w='min(%d,iw)':h='min(%d,ih)':force_original_aspect_ratio=decrease",
		 max_side, max_side);
	if (poster_spawn(&p, argv, err) < 0)
		return -1;
	p.png = xmalloc(THUMB_VIDEO_MAX_PNG);
	late = poster_collect(&p, deadline) < 0;
	close_fd(&p.out);
	close_fd(&p.errfd);
	status = poster_reap(&p, deadline, late || p.too_large);
	if (late)
		err_set(err, ERR_TIMEOUT, "ffmpeg ran past %d ms and was killed", timeout_ms);
	else if (poster_check(&p, status, err) == 0)
		rc = poster_write(dst, p.png, p.len, err);
	free(p.png);
	return rc;
}

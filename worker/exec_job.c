/*
 * exec_job.c - the exec model's process runner (model_exec_job_start(),
 * model_exec_job_cancel()): one command in its own process group, stdin,
 * stdout and stderr on pipe(2)s, "PROGRESS n/m" lines or elapsed time as
 * progress, a timeout, SIGTERM then SIGKILL, and the end of stderr in a
 * failure message.
 *
 * Invariants (model_exec.c, 2 and 3): only exit 0 with a non-empty regular
 * output file counts as success; every other ending removes the output. A
 * job frees itself when its process handle, pipes and timers have all
 * closed (pending == 0), never earlier, and calls on_end exactly once,
 * after the process has exited.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "model_exec.h"
#include "util.h"

#define EXEC_TICK_MS 100
#define EXEC_GRACE_MS 2000
#define EXEC_TAIL_LINES 20

/* The last EXEC_TAIL_LINES lines of stderr, bounded in bytes. */
struct tail {
	char text[8192]; /* complete lines, each ending in '\n' */
	size_t len;
	int nlines;
	char cur[1024]; /* the line being read; longer ones are cut */
	size_t curlen;
};

struct model_exec_job {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_timer_t tick;  /* every EXEC_TICK_MS: elapsed progress, timeout */
	uv_timer_t grace; /* SIGKILL after SIGTERM; stop waiting for pipes after exit */
	uv_write_t wreq;
	int pending;      /* handles initialised and not yet closed */
	int pid;
	char *stdin_text; /* owned; must outlive the write */
	size_t stdin_len;
	char *output;     /* owned */
	uint64_t start_ms, expected_ms, timeout_ms, grace_ms; /* loop time, ms */
	uint64_t progress_ms; /* loop time of the last command progress sent */
	int last_pct;         /* last elapsed-time percent sent */
	int has_stdin, out_eof, err_eof, exited, finished, term_sent, cancelled, timed_out;
	int cmd_progress;     /* the command printed a PROGRESS line */
	int64_t exit_status;
	int term_signal;
	char line[256];       /* the stdout line being read */
	size_t linelen;
	int line_long;        /* the current stdout line overflowed: ignored */
	struct tail tail;
	char rbuf[4096];
	void (*on_progress)(void *arg, double value, double max);
	void (*on_end)(void *arg, int outcome, const char *message);
	void *arg;
};

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
		     : (s[0] & 0xf8) == 0xf0 ? 4 : 0;

	if (len == 0 || len > n || (len == 2 && s[0] < 0xc2))
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Appends the current line, control bytes and bad UTF-8 as '?'. */
static void tail_push(struct tail *t)
{
	char line[sizeof t->cur + 1];
	size_t n = 0;

	while (t->curlen && (t->cur[t->curlen - 1] == '\r' || t->cur[t->curlen - 1] == ' '))
		t->curlen--;
	for (size_t i = 0; i < t->curlen;) {
		const unsigned char *c = (const unsigned char *)t->cur + i;
		size_t k = utf8_seq(c, t->curlen - i);

		if (k == 0 || (k == 1 && (c[0] < 0x20 || c[0] == 0x7f) && c[0] != '\t')) {
			line[n++] = '?';
			i++;
			continue;
		}
		memcpy(line + n, c, k);
		n += k;
		i += k;
	}
	t->curlen = 0;
	if (n == 0)
		return;
	while (t->nlines >= EXEC_TAIL_LINES || t->len + n + 1 > sizeof t->text) {
		char *nl = memchr(t->text, '\n', t->len);
		size_t drop = (size_t)(nl - t->text) + 1;

		memmove(t->text, t->text + drop, t->len - drop);
		t->len -= drop;
		t->nlines--;
	}
	memcpy(t->text + t->len, line, n);
	t->len += n;
	t->text[t->len++] = '\n';
	t->nlines++;
}

static void tail_feed(struct tail *t, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			tail_push(t);
		else if (t->curlen < sizeof t->cur)
			t->cur[t->curlen++] = p[i];
	}
}

static void job_on_closed(uv_handle_t *h)
{
	struct model_exec_job *j = h->data;

	if (--j->pending > 0)
		return;
	free(j->stdin_text);
	free(j->output);
	free(j);
}

static void job_close(struct model_exec_job *j, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, job_on_closed);
}

static void job_handle(struct model_exec_job *j, uv_handle_t *h)
{
	h->data = j;
	j->pending++;
}

static void job_finish(struct model_exec_job *j);

/*
 * After SIGTERM: SIGKILL. After exit: a grandchild holds the pipes open;
 * kill the group and end without the rest of its output.
 */
static void job_on_grace(uv_timer_t *t)
{
	struct model_exec_job *j = t->data;

	kill(-j->pid, SIGKILL);
	if (j->exited)
		job_finish(j);
}

/* SIGTERM to the process group; SIGKILL follows after grace_ms. */
static void job_terminate(struct model_exec_job *j)
{
	if (j->term_sent || j->exited)
		return;
	j->term_sent = 1;
	kill(-j->pid, SIGTERM);
	uv_timer_start(&j->grace, job_on_grace, j->grace_ms, 0);
}

/* "PROGRESS n/m" on stdout; other lines are ignored. */
static void job_stdout_line(struct model_exec_job *j, const char *s)
{
	double n, m;
	char *end;
	uint64_t now = uv_now(j->loop);

	if (strncmp(s, "PROGRESS ", 9) != 0)
		return;
	n = strtod(s + 9, &end);
	if (end == s + 9 || *end != '/')
		return;
	s = end + 1;
	m = strtod(s, &end);
	while (end != s && isspace((unsigned char)*end))
		end++;
	if (end == s || *end != '\0' || !isfinite(n) || !isfinite(m) || m <= 0 || n < 0)
		return;
	n = n > m ? m : n;
	/* At most one message per 50 ms, but always the last step. */
	if (j->cmd_progress && n < m && now - j->progress_ms < 50)
		return;
	j->cmd_progress = 1;
	j->progress_ms = now;
	j->on_progress(j->arg, n, m);
}

static void job_stdout(struct model_exec_job *j, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n' && j->linelen < sizeof j->line - 1) {
			j->line[j->linelen++] = p[i];
		} else if (p[i] != '\n') {
			j->line_long = 1;
		} else {
			j->line[j->linelen] = '\0';
			if (!j->line_long)
				job_stdout_line(j, j->line);
			j->linelen = 0;
			j->line_long = 0;
		}
	}
}

static void job_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct model_exec_job *j = h->data;

	*b = uv_buf_init(j->rbuf, sizeof j->rbuf);
}

static void job_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct model_exec_job *j = s->data;
	int is_out = s == (uv_stream_t *)&j->out;

	if (nread > 0 && is_out)
		job_stdout(j, b->base, (size_t)nread);
	else if (nread > 0)
		tail_feed(&j->tail, b->base, (size_t)nread);
	if (nread >= 0)
		return;
	/* EOF or a read error: this stream is done. */
	if (!is_out)
		tail_push(&j->tail);
	*(is_out ? &j->out_eof : &j->err_eof) = 1;
	job_close(j, (uv_handle_t *)s);
	if (j->exited && j->out_eof && j->err_eof)
		job_finish(j);
}

static void job_on_exit(uv_process_t *p, int64_t status, int sig)
{
	struct model_exec_job *j = p->data;

	j->exited = 1;
	j->exit_status = status;
	j->term_signal = sig;
	job_close(j, (uv_handle_t *)p);
	log_info("exec exit pid=%d status=%" PRId64 " signal=%d ms=%" PRIu64, j->pid, status, sig,
		 uv_now(j->loop) - j->start_ms);
	if (j->out_eof && j->err_eof) {
		job_finish(j);
		return;
	}
	/* exit_cb may come before the last output: wait for EOF, bounded. */
	uv_timer_start(&j->grace, job_on_grace, j->grace_ms, 0);
}

static void job_on_tick(uv_timer_t *t)
{
	struct model_exec_job *j = t->data;
	uint64_t elapsed = uv_now(j->loop) - j->start_ms;
	int pct;

	if (j->exited || j->term_sent)
		return;
	if (j->timeout_ms && elapsed >= j->timeout_ms) {
		j->timed_out = 1;
		log_warn("exec timeout pid=%d ms=%" PRIu64, j->pid, elapsed);
		job_terminate(j);
		return;
	}
	if (j->cmd_progress || j->expected_ms == 0)
		return;
	pct = (int)(elapsed * 100 / j->expected_ms);
	pct = pct > 95 ? 95 : pct;
	if (pct > j->last_pct) {
		j->last_pct = pct;
		j->on_progress(j->arg, pct, 100);
	}
}

static void job_on_written(uv_write_t *w, int status)
{
	struct model_exec_job *j = w->data;

	if (status < 0 && status != UV_ECANCELED)
		log_debug("exec stdin pid=%d error=%s", j->pid, uv_strerror(status));
	job_close(j, (uv_handle_t *)&j->in);
}

/* Why the run failed, or NULL when the output file is good. Caller frees. */
static char *job_failure(struct model_exec_job *j)
{
	struct stat st;

	if (j->timed_out)
		return xasprintf("command timed out after %.1f s and was killed",
				 (double)j->timeout_ms / 1000);
	if (j->term_signal)
		return xasprintf("command was killed by signal %d (%s)", j->term_signal,
				 strsignal(j->term_signal));
	if (j->exit_status != 0)
		return xasprintf("command exited with status %" PRId64, j->exit_status);
	if (lstat(j->output, &st) < 0)
		return xstrdup("command exited with status 0 but wrote no output file");
	if (!S_ISREG(st.st_mode))
		return xstrdup("command exited with status 0 but its output is not a regular file");
	if (st.st_size == 0)
		return xstrdup("command exited with status 0 but wrote an empty output file");
	return NULL;
}

/* Once the process has exited and its pipes are done (or given up). */
static void job_finish(struct model_exec_job *j)
{
	struct buf msg;
	char *why = NULL;
	int outcome = MODEL_EXEC_OK;

	if (j->finished)
		return;
	j->finished = 1;
	job_close(j, (uv_handle_t *)&j->out);
	job_close(j, (uv_handle_t *)&j->err);
	job_close(j, (uv_handle_t *)&j->tick);
	job_close(j, (uv_handle_t *)&j->grace);
	if (j->has_stdin)
		job_close(j, (uv_handle_t *)&j->in);
	if (j->cancelled)
		outcome = MODEL_EXEC_INTERRUPTED;
	else if ((why = job_failure(j)) != NULL)
		outcome = MODEL_EXEC_FAILED;
	if (outcome != MODEL_EXEC_OK)
		unlink(j->output);
	buf_init(&msg, 512 + sizeof j->tail.text);
	if (why != NULL) {
		buf_puts(&msg, why);
		if (j->tail.len > 0)
			buf_printf(&msg, ": %.*s", (int)j->tail.len - 1, j->tail.text);
	}
	j->on_end(j->arg, outcome, why ? msg.data : NULL);
	buf_cleanup(&msg);
	free(why);
}

/*
 * A pipe(2) between p and the child's descriptor, where libuv's
 * UV_CREATE_PIPE would make a socketpair: programs that open /dev/stdin or
 * /dev/stderr (flite -f /dev/stdin, text2wave, shell scripts) cannot open
 * a socket. Fills c with the child's end, which the caller closes after
 * the spawn.
 */
static int job_pipe(struct model_exec_job *j, uv_pipe_t *p, int child_reads,
		    uv_stdio_container_t *c)
{
	uv_file fds[2];
	int rc;

	uv_pipe_init(j->loop, p, 0);
	job_handle(j, (uv_handle_t *)p);
	c->flags = UV_INHERIT_FD;
	c->data.fd = -1;
	rc = uv_pipe(fds, 0, 0);
	if (rc < 0)
		return rc;
	c->data.fd = fds[child_reads ? 0 : 1];
	rc = uv_pipe_open(p, fds[child_reads ? 1 : 0]);
	if (rc < 0)
		close(fds[child_reads ? 1 : 0]);
	return rc;
}

/* Timers and the three pipes; stdio gets the child's ends. */
static int job_init_handles(struct model_exec_job *j, uv_stdio_container_t *stdio)
{
	int rc = 0;

	uv_timer_init(j->loop, &j->tick);
	job_handle(j, (uv_handle_t *)&j->tick);
	uv_timer_init(j->loop, &j->grace);
	job_handle(j, (uv_handle_t *)&j->grace);
	j->wreq.data = j;
	memset(stdio, 0, 3 * sizeof *stdio);
	stdio[0].flags = UV_IGNORE; /* /dev/null */
	rc = job_pipe(j, &j->out, 0, &stdio[1]);
	if (rc == 0)
		rc = job_pipe(j, &j->err, 0, &stdio[2]);
	if (rc == 0 && j->has_stdin)
		rc = job_pipe(j, &j->in, 1, &stdio[0]);
	return rc;
}

static void job_close_child_ends(uv_stdio_container_t *stdio)
{
	for (int i = 0; i < 3; i++)
		if (stdio[i].flags == UV_INHERIT_FD && stdio[i].data.fd >= 0)
			close(stdio[i].data.fd);
}

/* Closes what start initialised, after a failed start. */
static void job_abandon(struct model_exec_job *j, int spawned)
{
	j->finished = 1;
	if (spawned)
		job_close(j, (uv_handle_t *)&j->proc);
	job_close(j, (uv_handle_t *)&j->tick);
	job_close(j, (uv_handle_t *)&j->grace);
	if (j->out.loop != NULL)
		job_close(j, (uv_handle_t *)&j->out);
	if (j->err.loop != NULL)
		job_close(j, (uv_handle_t *)&j->err);
	if (j->in.loop != NULL)
		job_close(j, (uv_handle_t *)&j->in);
}

static int job_spawn(struct model_exec_job *j, char *const *argv, uv_stdio_container_t *stdio)
{
	uv_process_options_t po;

	memset(&po, 0, sizeof po);
	po.file = argv[0];
	po.args = (char **)argv;
	po.exit_cb = job_on_exit;
	po.flags = UV_PROCESS_DETACHED; /* own group: kill(-pid) reaches grandchildren */
	po.stdio = stdio;
	po.stdio_count = 3;
	return uv_spawn(j->loop, &j->proc, &po);
}

static void job_begin_io(struct model_exec_job *j)
{
	uv_buf_t b = uv_buf_init(j->stdin_text, (unsigned)j->stdin_len);

	uv_read_start((uv_stream_t *)&j->out, job_on_alloc, job_on_read);
	uv_read_start((uv_stream_t *)&j->err, job_on_alloc, job_on_read);
	if (j->has_stdin && uv_write(&j->wreq, (uv_stream_t *)&j->in, &b, 1, job_on_written) < 0)
		job_close(j, (uv_handle_t *)&j->in);
	uv_timer_start(&j->tick, job_on_tick, EXEC_TICK_MS, EXEC_TICK_MS);
}

static struct model_exec_job *job_new(uv_loop_t *loop, const struct model_exec_job_opts *o)
{
	struct model_exec_job *j = xcalloc(1, sizeof *j);

	j->loop = loop;
	j->has_stdin = o->stdin_text != NULL;
	j->stdin_text = xstrdup(o->stdin_text ? o->stdin_text : "");
	j->stdin_len = strlen(j->stdin_text);
	j->output = xstrdup(o->output);
	j->expected_ms = o->expected_ms;
	j->timeout_ms = o->timeout_ms;
	j->grace_ms = o->grace_ms ? o->grace_ms : EXEC_GRACE_MS;
	j->on_progress = o->on_progress;
	j->on_end = o->on_end;
	j->arg = o->arg;
	return j;
}

struct model_exec_job *model_exec_job_start(uv_loop_t *loop, const struct model_exec_job_opts *o,
					    struct err *err)
{
	struct model_exec_job *j = job_new(loop, o);
	uv_stdio_container_t stdio[3];
	int rc = job_init_handles(j, stdio);

	if (rc < 0) {
		err_set(err, ERR_UNAVAILABLE, "cannot create pipes: %s", uv_strerror(rc));
		job_close_child_ends(stdio);
		job_abandon(j, 0);
		return NULL;
	}
	rc = job_spawn(j, o->argv, stdio);
	job_handle(j, (uv_handle_t *)&j->proc); /* initialised even when the spawn fails */
	job_close_child_ends(stdio);
	if (rc < 0) {
		err_set(err, ERR_UNAVAILABLE, "cannot run \"%s\": %s", o->argv[0], uv_strerror(rc));
		log_warn("exec spawn program=%s error=%s", log_q(o->argv[0]), uv_strerror(rc));
		job_abandon(j, 1);
		return NULL;
	}
	j->pid = j->proc.pid;
	j->start_ms = uv_now(loop);
	log_info("exec start pid=%d program=%s", j->pid, log_q(o->argv[0]));
	job_begin_io(j);
	return j;
}

void model_exec_job_cancel(struct model_exec_job *j)
{
	if (j->finished || j->cancelled)
		return;
	j->cancelled = 1;
	log_info("exec cancel pid=%d", j->pid);
	job_terminate(j);
}

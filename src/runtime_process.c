/*
 * runtime_process.c - the process runtime: the model server is a child
 * process on a free loopback port, in its own session and process group
 * (so its children die with it), pinned to its GPU with
 * CUDA_VISIBLE_DEVICES, its output appended to its log file. Stopping
 * sends SIGTERM to the group, then SIGKILL after the grace time.
 *
 * Handles of an instance: the process and one timer (the start notice,
 * then the grace time). on_exit runs once both are closed, then the
 * instance is freed.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "runtime_process.h"
#include "server.h"
#include "util.h"

extern char **environ;

struct proc_inst {
	struct runtime_inst base;    /* first: the runner sees only this */
	uv_process_t proc;
	uv_timer_t timer;            /* the start notice, then the grace time */
	int open;                    /* handles not yet closed */
	int exited;                  /* the process has exited */
	int64_t status;              /* its exit status, or -1 */
	char why[160];
	char log_path[4096];
	char id[32];                 /* runner id, for log lines */
};

static void on_closed(uv_handle_t *h)
{
	struct proc_inst *p = h->data;

	if (--p->open > 0)
		return;
	p->base.cb.on_exit(&p->base, p->status, p->why, p->base.ud);
	free(p);
}

static void on_proc_exit(uv_process_t *proc, int64_t status, int sig)
{
	struct proc_inst *p = proc->data;

	log_info("model server exited runner=%s pid=%d status=%lld signal=%d", p->id, p->base.pid,
		 (long long)status, sig);
	p->exited = 1;
	p->status = sig ? -1 : status;
	snprintf(p->why, sizeof p->why, "model server exited (status %lld, signal %d)",
		 (long long)status, sig);
	p->base.pid = 0;
	uv_close((uv_handle_t *)&p->proc, on_closed);
	uv_close((uv_handle_t *)&p->timer, on_closed);
}

static void on_start_notice(uv_timer_t *t)
{
	struct proc_inst *p = t->data;

	if (p->exited)
		return;
	p->base.started = 1;
	p->base.cb.on_started(&p->base, p->base.ud);
}

/* 1 when the "NAME=value" entry a sets the same variable as b. */
static int same_name(const char *a, const char *b)
{
	size_t n = strcspn(a, "=");

	return strncmp(a, b, n) == 0 && b[n] == '=';
}

/*
 * The environment of the child: ours, then cuda (CUDA_VISIBLE_DEVICES
 * pinning it to its GPU; NULL: none), then the model's env entries. Each
 * name appears once: a later one replaces an earlier one (so the model's
 * env overrides both; getenv() would take the first of two copies). The
 * strings are borrowed; free the array only.
 */
char **runtime_process_env(const struct reg_model *m, const char *cuda)
{
	size_t n = 0, k = 0, out = 0;
	char **env;

	while (environ[n])
		n++;
	env = xcalloc(n + m->nenv + 2, sizeof *env);
	for (size_t i = 0; i < n; i++)
		env[k++] = environ[i];
	if (cuda)
		env[k++] = (char *)cuda;
	for (size_t i = 0; i < m->nenv; i++)
		env[k++] = m->env[i];
	/* Keep the last of each name, in place. */
	for (size_t i = 0; i < k; i++) {
		int later = 0;
		for (size_t j = i + 1; j < k && !later; j++)
			later = same_name(env[i], env[j]);
		if (!later)
			env[out++] = env[i];
	}
	env[out] = NULL;
	return env;
}

static int spawn(struct proc_inst *p, const struct runtime_spec *spec, struct err *err)
{
	const struct reg_model *m = spec->model;
	uv_process_options_t o = {0};
	uv_stdio_container_t stdio[3];
	char **argv = xcalloc(m->ncommand + 1, sizeof *argv), **env, cuda[48];
	int fd, rc;

	snprintf(cuda, sizeof cuda, "CUDA_VISIBLE_DEVICES=%d", spec->gpu);
	env = runtime_process_env(m, cuda);
	for (size_t i = 0; i < m->ncommand; i++)
		argv[i] = registry_expand(m->command[i], p->base.port, spec->bindir, spec->configdir,
					 spec->out_dir);
	util_mkdirs(spec->run_dir);
	fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
	stdio[1].data.fd = fd;
	stdio[2] = stdio[1];
	o.file = argv[0];
	o.args = argv;
	o.env = env;
	o.cwd = spec->run_dir;
	o.flags = UV_PROCESS_DETACHED;
	o.stdio_count = 3;
	o.stdio = stdio;
	o.exit_cb = on_proc_exit;
	p->proc.data = p;
	rc = uv_spawn(server.loop, &p->proc, &o);
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		p->base.pid = p->proc.pid;
		log_info("model server spawned runner=%s model=%s pid=%d port=%d cmd=%s log=%s",
			 p->id, m->id, p->base.pid, p->base.port, log_q(argv[0]), log_q(p->log_path));
	} else {
		err_set(err, ERR_UNAVAILABLE, "cannot run %s: %s", argv[0], uv_strerror(rc));
	}
	for (size_t i = 0; i < m->ncommand; i++)
		free(argv[i]);
	free(argv);
	free(env);
	return rc == 0 ? 0 : -1;
}

static void on_failed_spawn_closed(uv_handle_t *h)
{
	free(h->data);
}

static struct runtime_inst *proc_start(const struct runtime_spec *spec,
				       const struct runtime_cbs *cb, void *ud, struct err *err)
{
	struct proc_inst *p = xcalloc(1, sizeof *p);

	p->base.rt = &runtime_process;
	p->base.cb = *cb;
	p->base.ud = ud;
	p->status = -1;
	snprintf(p->base.host, sizeof p->base.host, "127.0.0.1");
	snprintf(p->log_path, sizeof p->log_path, "%s", spec->log_path);
	snprintf(p->id, sizeof p->id, "%s", spec->runner_id);
	p->base.port = util_free_port();
	if (p->base.port < 0) {
		err_set(err, ERR_UNAVAILABLE, "no free port for the model server");
		free(p);
		return NULL;
	}
	if (spawn(p, spec, err) < 0) {
		/* uv_spawn initialised the handle even on failure: close it first. */
		uv_close((uv_handle_t *)&p->proc, on_failed_spawn_closed);
		return NULL;
	}
	uv_timer_init(server.loop, &p->timer);
	p->timer.data = p;
	p->open = 2;
	uv_timer_start(&p->timer, on_start_notice, 0, 0);
	return &p->base;
}

static void kill_group(int pid, int sig)
{
	if (pid > 0) {
		kill(-pid, sig);
		kill(pid, sig);
	}
}

static void on_grace(uv_timer_t *t)
{
	struct proc_inst *p = t->data;

	if (!p->exited) {
		log_warn("model server ignored SIGTERM, killing runner=%s pid=%d", p->id, p->base.pid);
		kill_group(p->base.pid, SIGKILL);
	}
}

static void proc_stop(struct runtime_inst *inst, uint64_t grace_ms)
{
	struct proc_inst *p = (struct proc_inst *)inst;

	if (p->exited)
		return;
	if (grace_ms == 0) {
		kill_group(p->base.pid, SIGKILL);
		return;
	}
	kill_group(p->base.pid, SIGTERM);
	uv_timer_start(&p->timer, on_grace, grace_ms, 0);
}

static void proc_log_tail(struct runtime_inst *inst, char *out, size_t n)
{
	runtime__file_tail(((struct proc_inst *)inst)->log_path, out, n);
}

const struct runtime runtime_process = {
	.name = "process",
	.start = proc_start,
	.stop = proc_stop,
	.health = runtime__health_http,
	.log_tail = proc_log_tail,
};

void runtime_process_kill_orphan(int pid)
{
	char path[64], cmd[256] = "";
	FILE *f;

	/* Only a process group we started: its leader runs our command line. */
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	if (fread(cmd, 1, sizeof cmd - 1, f) == 0)
		cmd[0] = '\0';
	fclose(f);
	log_warn("stopping orphan model server pid=%d cmd=%s", pid, log_q(cmd));
	kill_group(pid, SIGKILL);
}

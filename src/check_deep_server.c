/*
 * check_deep_server.c - a model server's node classes for `fnrun check
 * --deep` (check_deep__server_info(), check_deep_internal.h): GET
 * /object_info from an external model's first URL, or from a process
 * model's server started once for it.
 *
 * A process model's command is checked first: its program can run (found
 * as the runtime finds it: a bare name on PATH, a relative path from the
 * server's own directory); a file it names after {configdir}, --config or
 * --extra-model-paths-config exists; an fnrun-worker exec config passes
 * `fnrun-worker --check`. Then the server starts with its placeholders
 * filled ({port} a free loopback port, {outdir} and its cwd a temp
 * directory) and is asked until it answers, exits, or start_timeout
 * passes; an exit or silence is reported with its last lines of output.
 *
 * Invariants:
 *  1. Every process started here runs in a process group of its own; the
 *     group is killed and its leader reaped before the function that
 *     started it returns (SIGTERM, then SIGKILL after DEEP_GRACE_MS).
 *  2. A server's temp directory is removed once the server is gone.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "check_deep_internal.h"
#include "json.h"
#include "registry.h"
#include "runtime_process.h"
#include "util.h"

#define DEEP_MAX_INFO (64 << 20)   /* bytes of one /object_info answer */
#define DEEP_GRACE_MS 3000         /* SIGTERM to SIGKILL, ms */
#define DEEP_WORKER_CHECK_MS 30000 /* `fnrun-worker --check`, at most, ms */
#define DEEP_TAIL 4096             /* bytes of a server's output read for a message */
#define DEEP_EXTERNAL_MS 30000     /* an external server's answer, at most, ms */

extern char **environ;

/* A model server started for the check. */
struct server {
	pid_t pid;               /* also its process group; 0: none */
	int port;
	char dir[PATH_MAX];      /* temp: its cwd, {outdir} and its log */
	char out[PATH_MAX + 16]; /* {outdir}: dir/output */
	char log[PATH_MAX + 16]; /* its stdout and stderr: dir/server.log */
};

/* ---- processes ---- */

/* Waits ms, or less when a signal arrives. A pause between polls, never a sync. */
static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* The value of name in the model's env, else in ours; NULL when unset. */
static const char *model_getenv(const struct reg_model *m, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < m->nenv; i++)
		if (strncmp(m->env[i], name, len) == 0 && m->env[i][len] == '=')
			return m->env[i] + len + 1;
	return getenv(name);
}

/*
 * Resolves prog as the model server's spawn does: a name without '/' on
 * PATH (the model's env first), a relative path from the server's cwd.
 * Returns the path to run (caller frees), or NULL with why not in why.
 */
static char *resolve_program(const struct reg_model *m, const char *prog, const char *cwd,
			     char *why, size_t n)
{
	const char *path = model_getenv(m, "PATH");
	char *full;

	if (strchr(prog, '/') != NULL) {
		full = prog[0] == '/' ? xstrdup(prog) : xasprintf("%s/%s", cwd, prog);
		if (util_runnable(full))
			return full;
		snprintf(why, n, "%s%s",
			 access(full, F_OK) < 0 ? strerror(errno) : "not an executable file",
			 prog[0] == '/' ? "" : " (a relative program is taken from the server's own "
			 "directory: give {bindir}/NAME, an absolute path or a name on PATH)");
		free(full);
		return NULL;
	}
	full = util_which(prog, path);
	if (full == NULL)
		snprintf(why, n, "not found on PATH; install it or give its full path");
	return full;
}

/*
 * Starts the program at path with argv in a new process group, with the
 * model's env, cwd dir, stdin /dev/null, stdout and stderr to log.
 * Returns the pid, or -1 with why.
 */
static pid_t spawn(const struct reg_model *m, const char *path, char *const *argv, const char *dir,
		   const char *log, char *why, size_t n)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	char **env = runtime_process_env(m, NULL);
	pid_t pid = -1;
	int rc;

	sigemptyset(&none);
	sigfillset(&dfl); /* no signal ignored or caught in the child */
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addchdir_np(&fa, dir);
	rc = posix_spawn(&pid, path, &fa, &at, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(env);
	if (rc == 0)
		return pid;
	snprintf(why, n, "%s", strerror(rc));
	return -1;
}

/* 1 once pid has exited; it stays unreaped, so its group id stays reserved. */
static int has_exited(pid_t pid)
{
	siginfo_t si = {0};

	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Waits up to ms for pid to exit (1), or a signal to us (0). */
static int wait_exit(pid_t pid, long ms)
{
	uint64_t deadline = util_mono_ms() + (uint64_t)ms;
	long step = 5;

	while (!has_exited(pid)) {
		if (util_mono_ms() >= deadline || check_deep__interrupted())
			return 0;
		pause_ms(step);
		step = step < 100 ? step * 2 : step;
	}
	return 1;
}

/*
 * Ends pid's process group: SIGTERM, up to DEEP_GRACE_MS for pid to exit,
 * then SIGKILL to what is left of the group (the unreaped leader keeps its
 * id from being reused); reaps pid. Returns its wait status.
 */
static int stop_group(pid_t pid)
{
	int status = 0;

	if (!has_exited(pid)) {
		kill(-pid, SIGTERM);
		wait_exit(pid, DEEP_GRACE_MS);
	}
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static void describe_status(int status, char *out, size_t n)
{
	if (WIFEXITED(status))
		snprintf(out, n, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, n, "killed by signal %d, %s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(out, n, "wait status %d", status);
}

/*
 * The last lines (at most 3) of the file at path, joined with " | " into
 * out, control characters as spaces: a server's own words, on one line.
 */
static void output_tail(const char *path, char *out, size_t n)
{
	char buf[DEEP_TAIL + 1], *lines[3] = {0}, *p, *save = NULL; /* lines: a ring */
	FILE *f = fopen(path, "rb");
	size_t len = 0, k = 0;
	long size;

	out[0] = '\0';
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > DEEP_TAIL ? size - DEEP_TAIL : 0, SEEK_SET);
	len = fread(buf, 1, DEEP_TAIL, f);
	fclose(f);
	buf[len] = '\0';
	for (p = strtok_r(buf, "\n", &save); p != NULL; p = strtok_r(NULL, "\n", &save)) {
		for (char *c = p; *c; c++)
			*c = (unsigned char)*c < 0x20 ? ' ' : *c;
		if (strspn(p, " ") < strlen(p))
			lines[k++ % 3] = p;
	}
	for (size_t i = k > 3 ? k - 3 : 0, at = 0; i < k && at < n; i++)
		at += (size_t)snprintf(out + at, n - at, "%s%s", at ? " | " : "", lines[i % 3]);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* A fresh temp directory for one server in s->dir, with output/ and a log path. 0 or -1. */
static int server_dir(struct server *s)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(s->dir, sizeof s->dir, "%s/fnrun-check-XXXXXX",
		 tmp && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(s->dir) == NULL)
		return -1;
	snprintf(s->out, sizeof s->out, "%s/output", s->dir);
	snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
	return mkdir(s->out, 0755);
}

static void server_dir_remove(struct server *s)
{
	if (s->dir[0] != '\0')
		nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	return buf_append(ud, p, size * n) < 0 ? 0 : size * n;
}

/* Every transfer stops when a signal arrives. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	return check_deep__interrupted() ? 1 : 0;
}

/*
 * GET base + "/object_info" within timeout_ms. Returns 200 with the node
 * classes in *info (caller owns; json_object_put), 0 when nothing answered,
 * another status when the answer was not a JSON object of classes; why
 * says what happened when it is not 200.
 */
static long get_info(const char *base, long timeout_ms, struct json_object **info, char *why,
		     size_t n)
{
	char *url = xasprintf("%s/object_info", base);
	CURL *c = curl_easy_init();
	struct err e = {0};
	struct buf body;
	long status = 0;
	CURLcode rc;

	*info = NULL;
	buf_init(&body, DEEP_MAX_INFO);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "fnrun-check");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK)
		snprintf(why, n, "%s", rc == CURLE_WRITE_ERROR ? "its answer is larger than 64MB"
							      : curl_easy_strerror(rc));
	else if (status != 200)
		snprintf(why, n, "HTTP %ld", status);
	else if (json_parse(body.data ? body.data : "", body.len, JSON_MAX_DEPTH, info, &e) < 0 ||
		 !json_object_is_type(*info, json_type_object))
		snprintf(why, n, "its answer is not a JSON object of node classes (%s)",
			 e.code ? e.msg : "another JSON value");
	if (rc == CURLE_OK && status == 200 && !json_object_is_type(*info, json_type_object)) {
		json_object_put(*info);
		*info = NULL;
		status = -1;
	}
	buf_cleanup(&body);
	curl_easy_cleanup(c);
	free(url);
	return rc == CURLE_OK ? status : 0;
}

/* ---- a process model: its command, then the server itself ---- */

static void argv_free(char **argv)
{
	for (size_t i = 0; argv != NULL && argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

/* m's command with its placeholders replaced for server s. Free with argv_free(). */
static char **expand_command(const struct check_deep *d, const struct reg_model *m,
			     const struct server *s)
{
	char **argv = xcalloc(m->ncommand + 1, sizeof *argv);

	for (size_t i = 0; i < m->ncommand; i++)
		argv[i] = registry_expand(m->command[i], s->port, d->bindir, d->configdir, s->out);
	return argv;
}

/* The node of item i of m's command. */
static yaml_node_t *command_at(struct check_deep *d, const struct reg_model *m, size_t i)
{
	yaml_node_t *cmd = check_deep__map(d, check_deep__model(d, m->id, NULL), "command", NULL);

	return check_deep__seq(d, cmd, i);
}

/* The `command:` key of m, where what is wrong with the whole command is reported. */
static yaml_node_t *command_key(struct check_deep *d, const struct reg_model *m)
{
	return check_deep__model_key(d, m->id, "command");
}

/*
 * The file argument i of m's command names, within argv[i], or NULL when
 * it names none: the value of --config or --extra-model-paths-config (as
 * the next argument or after '='; *config is 1 for --config), or a path
 * from {configdir} on (not a list such as "{configdir}/a:{configdir}/b").
 */
static const char *file_arg(const struct check_deep *d, const struct reg_model *m, char **argv,
			    size_t i, const struct server *s, int *config)
{
	static const char *const flags[] = {"--config", "--extra-model-paths-config"};
	const char *t = m->command[i], *at = strstr(t, "{configdir}");
	char *pre, *exp;
	size_t skip;

	for (size_t f = 0; f < 2; f++) {
		size_t len = strlen(flags[f]);

		*config = f == 0;
		if (i > 0 && strcmp(m->command[i - 1], flags[f]) == 0)
			return argv[i];
		if (strncmp(argv[i], flags[f], len) == 0 && argv[i][len] == '=')
			return argv[i] + len + 1;
	}
	*config = 0;
	if (at == NULL || strpbrk(at, ":,;") != NULL)
		return NULL;
	pre = xstrndup(t, (size_t)(at - t));
	exp = registry_expand(pre, s->port, d->bindir, d->configdir, s->out);
	skip = strlen(exp);
	free(pre);
	free(exp);
	return argv[i] + skip;
}

/*
 * Runs `prog --check config` (fnrun-worker's exec config check) in s's
 * directory and reports each line it writes on failure at command[i].
 */
static void worker_check(struct check_deep *d, const struct reg_model *m, const char *prog,
			 const char *config, size_t i, const struct server *s)
{
	char *argv[] = {(char *)prog, "--check", (char *)config, NULL};
	char *log = xasprintf("%s/check.log", s->dir), *text, *p, *save = NULL, why[256];
	pid_t pid = spawn(m, prog, argv, s->dir, log, why, sizeof why);
	int done, status;
	size_t len = 0;

	if (pid < 0) {
		free(log);
		return; /* the server's own start reports it */
	}
	done = wait_exit(pid, DEEP_WORKER_CHECK_MS);
	status = stop_group(pid);
	text = done && status != 0 ? check_deep__read_file(log, 65536, &len) : NULL;
	if (!done && !check_deep__interrupted())
		check_deep__add(d, command_at(d, m, i), 0,
				"models.%s.command[%zu]: %s --check %s did not finish within %ds", m->id,
				i, prog, config, DEEP_WORKER_CHECK_MS / 1000);
	for (p = text ? strtok_r(text, "\n", &save) : NULL; p != NULL; p = strtok_r(NULL, "\n", &save))
		check_deep__add(d, command_at(d, m, i), 0, "models.%s.command[%zu]: %s", m->id, i, p);
	free(text);
	free(log);
}

/* Checks the files m's command (argv, expanded) names; worker_check() on a worker's config. */
static void check_files(struct check_deep *d, const struct reg_model *m, char **argv,
			const char *prog, const struct server *s)
{
	const char *base = prog ? strrchr(prog, '/') : NULL;
	int worker = base != NULL && strcmp(base + 1, "fnrun-worker") == 0;

	for (size_t i = 1; i < m->ncommand; i++) {
		int config;
		const char *f = file_arg(d, m, argv, i, s, &config);
		char *full;

		if (f == NULL || f[0] == '\0')
			continue;
		full = f[0] == '/' ? xstrdup(f) : xasprintf("%s/%s", s->dir, f);
		if (access(full, F_OK) < 0)
			check_deep__add(d, command_at(d, m, i), 0, "models.%s.command[%zu]: \"%s\": %s%s",
					m->id, i, f, strerror(errno), f[0] == '/' ? "" :
					" (a relative path is taken from the server's own directory: "
					"give \"{configdir}/FILE\" or an absolute path)");
		else if (worker && config)
			worker_check(d, m, prog, full, i, s);
		free(full);
	}
}

static void fmt_ms(char *out, size_t n, int64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(out, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, n, "%lldms", (long long)ms);
}

/*
 * Asks s for /object_info until it answers 200 (the classes, caller owns),
 * exits, answers what no retry will change (4xx, not JSON classes), a
 * signal arrives or m's start_timeout passes: NULL, with the last reason
 * in why and the last status (0: nothing answered) in *status.
 */
static struct json_object *await_info(const struct reg_model *m, const struct server *s,
				      long *status, char *why, size_t n)
{
	uint64_t deadline = util_mono_ms() + (uint64_t)m->start_timeout_ms;
	struct json_object *info = NULL;
	char base[64];
	long step = 5;

	snprintf(base, sizeof base, "http://127.0.0.1:%d", s->port);
	*status = 0;
	while (!check_deep__interrupted() && !has_exited(s->pid)) {
		uint64_t now = util_mono_ms();

		if (now >= deadline)
			break;
		*status = get_info(base, (long)(deadline - now), &info, why, n);
		if (*status == 200 || *status < 0 || (*status >= 400 && *status < 500))
			break;
		pause_ms(step);
		step = step < 200 ? step * 2 : step;
	}
	return info;
}

/* Reports why server s of m gave no classes: it exited, answered wrongly, or said nothing. */
static void report_start(struct check_deep *d, const struct reg_model *m, const struct server *s,
			 int exited, int wstatus, long status, const char *why)
{
	char tail[1024], how[128], limit[32], said[1100];

	output_tail(s->log, tail, sizeof tail);
	snprintf(said, sizeof said, "%s%s", tail[0] ? "its last output: " : "it wrote nothing", tail);
	describe_status(wstatus, how, sizeof how);
	fmt_ms(limit, sizeof limit, m->start_timeout_ms);
	if (exited)
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: the model server exited "
				"before answering GET /object_info (%s); %s", m->id, how, said);
	else if (status != 0)
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: the model server gave "
				"no node classes on GET /object_info (%s); a ComfyUI-compatible server "
				"answers 200 with a JSON object of them; %s", m->id, why, said);
	else
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: the model server did not "
				"answer GET /object_info within %s (start_timeout; %s); %s", m->id,
				limit, why, said);
}

/* Starts m's server (argv, prog resolved), reads its classes, stops it. NULL: reported. */
static struct json_object *run_server(struct check_deep *d, const struct reg_model *m, char **argv,
				      const char *prog, struct server *s)
{
	char why[512] = "it did not answer";
	struct json_object *info;
	int wstatus, exited;
	long status;

	s->pid = spawn(m, prog, argv, s->dir, s->log, why, sizeof why);
	if (s->pid < 0) {
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: cannot run \"%s\": %s",
				m->id, argv[0], why);
		return NULL;
	}
	info = await_info(m, s, &status, why, sizeof why);
	exited = has_exited(s->pid);
	wstatus = stop_group(s->pid);
	if (info == NULL && !check_deep__interrupted())
		report_start(d, m, s, exited, wstatus, status, why);
	return info;
}

/* The node classes of a process model, from one start of its server; NULL: reported. */
static struct json_object *process_info(struct check_deep *d, const struct reg_model *m)
{
	struct server s = {0};
	struct json_object *info = NULL;
	char why[512], **argv;
	char *prog;

	s.port = util_free_port();
	if (s.port < 0 || server_dir(&s) < 0) {
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: not started: no free "
				"port or temp directory (%s)", m->id, strerror(errno));
		server_dir_remove(&s);
		return NULL;
	}
	argv = expand_command(d, m, &s);
	prog = resolve_program(m, argv[0], s.dir, why, sizeof why);
	if (prog == NULL)
		check_deep__add(d, command_key(d, m), 0, "models.%s.command: cannot run \"%s\": %s",
				m->id, argv[0], why);
	check_files(d, m, argv, prog, &s);
	if (prog != NULL && !check_deep__interrupted())
		info = run_server(d, m, argv, prog, &s);
	free(prog);
	argv_free(argv);
	server_dir_remove(&s);
	return info;
}

/* The node classes of an external model, from its first URL; NULL: reported. */
static struct json_object *external_info(struct check_deep *d, const struct reg_model *m)
{
	yaml_node_t *k = NULL, *model = check_deep__model(d, m->id, NULL);
	yaml_node_t *urls = check_deep__map(d, model, "urls", NULL);
	struct json_object *info = NULL;
	char why[512];

	check_deep__map(d, model, "url", &k);
	if (get_info(m->urls[0], DEEP_EXTERNAL_MS, &info, why, sizeof why) == 200)
		return info;
	if (!check_deep__interrupted())
		check_deep__add(d, k ? k : check_deep__seq(d, urls, 0), 0,
				"models.%s.%s: cannot read GET %s/object_info: %s; start the model "
				"server there, or fix the URL", m->id, k ? "url" : "urls[0]", m->urls[0],
				why);
	return NULL;
}

struct json_object *check_deep__server_info(struct check_deep *d, const struct reg_model *m)
{
	return m->runtime == REG_RUNTIME_EXTERNAL ? external_info(d, m) : process_info(d, m);
}

/*
 * test_check_deep.c - `fnrun check --deep FILE` and `fnrun-worker --check
 * CONFIG`, run as the real binaries: one test per kind of finding, each
 * with its exact file:line:col and text; clean registries (and the
 * examples) pass; and no model server outlives the check.
 *
 * Each test writes reg.yaml into its temp dir: BASE below (19 lines) plus
 * the models under test from line 20, next to copies of the fixtures in
 * tests/fixtures/deep/ (workflows, exec configs). The check runs with
 * TMPDIR set to the temp dir, so every model server it starts has its cwd
 * there: servers_left() finds any that outlive it.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "testutil.h"
#include "util.h"

#define FIXTURES "tests/fixtures/deep"
#define RUN_MS 60000 /* one command, at most; a hung check fails the test */

static const char BASE[] =
	"functions:\n"                                                      /* 1 */
	"  Image:\n"                                                        /* 2 */
	"    params:\n"                                                     /* 3 */
	"      prompt: {type: string, required: true}\n"                    /* 4 */
	"      width: {type: int, default: 512, min: 64, max: 2048}\n"      /* 5 */
	"      seed: {type: int, default: 1, min: 0, max: 9007199254740991}\n" /* 6 */
	"    qualities: {low: {label: Low, typical_seconds: [1, 2]}}\n"     /* 7 */
	"  Speech:\n"                                                       /* 8 */
	"    params:\n"                                                     /* 9 */
	"      text: {type: string, required: true}\n"                      /* 10 */
	"      voice: {type: enum, options: [a, b], default: a}\n"          /* 11 */
	"      speed: {type: int, default: 175, min: 80, max: 450}\n"       /* 12 */
	"    qualities: {low: {label: Low, typical_seconds: [1, 2]}}\n"     /* 13 */
	"  Odd:\n"                                                          /* 14 */
	"    params: {size: {type: int, default: 512, min: 16, max: 8192}, seed: {type: int, default: 1},\n" /* 15 */
	"             steps: {type: float, default: 4}, mode: {type: enum, options: [none, melt], default: none},\n" /* 16 */
	"             words: {type: string}}\n"                             /* 17 */
	"    qualities: {low: {label: Low, typical_seconds: [1, 2]}}\n"     /* 18 */
	"models:\n";                                                        /* 19 */

/* The sim model of fnrun-worker, every param bound (lines 20-25 when first). */
#define IMAGE                                                                                  \
	"  image:\n"                                                                           \
	"    function: Image\n"                                                                \
	"    quality: low\n"                                                                   \
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"         \
	"    workflow: sim.json\n"                                                             \
	"    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"

/* An exec model of fnrun-worker (worker-tone.yaml), every param bound (lines 20-25 when first). */
#define SPEECH                                                                                 \
	"  speech:\n"                                                                          \
	"    function: Speech\n"                                                               \
	"    quality: low\n"                                                                   \
	"    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/worker-tone.yaml\", --port, \"{port}\"]\n" \
	"    workflow: tone.json\n"                                                            \
	"    bind: {text: \"1.inputs.text\", voice: \"1.inputs.voice\", speed: \"1.inputs.speed\"}\n"

static char reg_path[PATH_MAX];

struct run {
	int status; /* the wait status */
	char *out;  /* stdout, NUL-terminated; free() */
	char *err;  /* stderr */
};

static void teardown(void)
{
	tu_kill_users_of(tu_tmpdir());
	tu_rmrf(tu_tmpdir());
}

static void copy_fixture(const char *name)
{
	char from[PATH_MAX], to[PATH_MAX];
	size_t len = 0;
	char *data;

	snprintf(from, sizeof from, "%s/%s", FIXTURES, name);
	snprintf(to, sizeof to, "%s/%s", tu_tmpdir(), name);
	data = tu_read_file(from, &len);
	ck_assert_msg(data != NULL, "cannot read %s", from);
	ck_assert_int_eq(tu_write_file(to, data, len), 0);
	free(data);
}

/* Writes BASE + models as reg.yaml, next to the fixtures; returns its path. */
static const char *write_reg(const char *models)
{
	static const char *const fixtures[] = {"sim.json", "sim-typo.json", "tone.json",
					       "worker-tone.yaml", "worker-nobin.yaml"};
	char *yaml = xasprintf("%s%s", BASE, models);

	for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
		copy_fixture(fixtures[i]);
	snprintf(reg_path, sizeof reg_path, "%s/reg.yaml", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(reg_path, yaml, strlen(yaml)), 0);
	free(yaml);
	return reg_path;
}

static char *slurp(const char *path)
{
	char *s = tu_read_file(path, NULL);

	return s ? s : xstrdup("");
}

/*
 * Runs argv (argv[0] a binary of tu_bindir()) with TMPDIR set to the temp
 * dir, stdout and stderr captured, within RUN_MS.
 */
static void run(const char *const *args, struct run *r)
{
	char out[PATH_MAX], err[PATH_MAX], *argv[16] = {0};
	pid_t pid;

	snprintf(out, sizeof out, "%s/stdout.txt", tu_tmpdir());
	snprintf(err, sizeof err, "%s/stderr.txt", tu_tmpdir());
	argv[0] = xstrdup(tu_bin(args[0]));
	for (size_t i = 1; args[i] != NULL && i < 15; i++)
		argv[i] = (char *)args[i];
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(o, 1);
		dup2(e, 2);
		setenv("TMPDIR", tu_tmpdir(), 1);
		execv(argv[0], argv);
		_exit(127);
	}
	r->status = tu_wait_exit(pid, RUN_MS);
	if (r->status == -1)
		tu_stop(pid, 100);
	free(argv[0]);
	ck_assert_msg(r->status != -1, "%s did not finish within %d ms", args[0], RUN_MS);
	r->out = slurp(out);
	r->err = slurp(err);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static int exit_code(const struct run *r)
{
	return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

/* `fnrun check --deep` of BASE + models; the caller frees r. */
static void deep(const char *models, struct run *r)
{
	const char *args[] = {"fnrun", "check", "--deep", write_reg(models), NULL};

	run(args, r);
}

/* 1 when process pid has its cwd under dir or names dir in its command line. */
static int uses(const char *pid, const char *dir)
{
	char path[64], buf[8192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%s/cwd", pid);
	n = readlink(path, buf, sizeof buf - 1);
	if (n > 0 && strncmp(buf, dir, strlen(dir)) == 0)
		return 1;
	snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
	fd = open(path, O_RDONLY);
	n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	for (ssize_t i = 0; i < n; i++)
		buf[i] = buf[i] ? buf[i] : ' ';
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, dir) != NULL;
}

/* Processes other than this one that use the temp dir: model servers left behind. */
static int servers_left(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char self[32];
	int found = 0;

	snprintf(self, sizeof self, "%d", (int)getpid());
	while (d != NULL && (e = readdir(d)) != NULL)
		if (atoi(e->d_name) > 0 && strcmp(e->d_name, self) != 0 && uses(e->d_name, tu_tmpdir()))
			found++;
	if (d != NULL)
		closedir(d);
	return found;
}

/* want with each "TMP" replaced by the temp dir. Caller frees. */
static char *with_tmp(const char *want)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	buf_puts(&b, "");
	for (const char *p = want; *p; p++) {
		if (strncmp(p, "TMP", 3) == 0) {
			buf_puts(&b, tu_tmpdir());
			p += 2;
		} else {
			buf_putc(&b, *p);
		}
	}
	return buf_steal(&b);
}

/* r failed with exactly want on stderr ("TMP": the temp dir); no server left. */
static void expect_findings(struct run *r, const char *want)
{
	char *w = with_tmp(want);

	ck_assert_msg(strcmp(r->err, w) == 0, "got:\n%s\nwant:\n%s", r->err, w);
	ck_assert_int_eq(exit_code(r), 1);
	ck_assert_str_eq(r->out, "");
	ck_assert_int_eq(servers_left(), 0);
	free(w);
}

/* r passed: "FILE: ok" on stdout, exit 0, and notes (or nothing) on stderr. */
static void expect_ok(struct run *r, const char *file, const char *notes)
{
	char *ok = xasprintf("%s: ok\n", file), *n = with_tmp(notes);

	ck_assert_msg(exit_code(r) == 0, "exit %d, stderr:\n%s", exit_code(r), r->err);
	ck_assert_str_eq(r->out, ok);
	ck_assert_str_eq(r->err, n);
	ck_assert_int_eq(servers_left(), 0);
	free(ok);
	free(n);
}

/* ---- clean registries pass ---- */

START_TEST(clean_registry_passes)
{
	struct run r;

	deep(IMAGE SPEECH, &r);
	expect_ok(&r, reg_path, "");
	run_free(&r);
}
END_TEST

START_TEST(examples_pass)
{
	const char *a[] = {"fnrun", "check", "--deep", "examples/registry.yaml", NULL};
	const char *b[] = {"fnrun", "check", "--deep", "examples/registry-docker.yaml", NULL};
	struct run r;

	run(a, &r);
	expect_ok(&r, "examples/registry.yaml", "");
	run_free(&r);
	run(b, &r);
	/* A note per model, none an error. */
	ck_assert_ptr_nonnull(strstr(r.err, "examples/registry-docker.yaml:85:3: models.create_image_low: "
					    "not started (docker): checked against the registry only\n"));
	for (const char *p = r.err; *p; p = strchr(p, '\n') + 1)
		ck_assert_ptr_nonnull(strstr(p, ": not started (docker): checked against the registry only\n"));
	expect_ok(&r, "examples/registry-docker.yaml", r.err);
	run_free(&r);
}
END_TEST

/* ---- one test per kind of finding ---- */

START_TEST(bind_to_an_input_the_node_lacks)
{
	struct run r;

	deep("  speech:\n"
	     "    function: Speech\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/worker-tone.yaml\", --port, \"{port}\"]\n"
	     "    workflow: tone.json\n"
	     "    bind: {text: \"1.inputs.text\", voice: \"1.inputs.voice\", speed: \"1.inputs.pitch\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:25:60: models.speech.bind.speed: node 1 (Tone) has no input "
			    "\"pitch\"; its inputs: text, voice, speed, loud\n");
	run_free(&r);
}
END_TEST

START_TEST(param_bound_nowhere)
{
	struct run r;

	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:20:3: models.image: param seed of function Image is bound "
			    "nowhere, so a request's value for it is ignored; bind it to a node input "
			    "(bind: {seed: \"NODE.inputs.NAME\"}), or list it under unbound: [seed] if "
			    "the model has no use for it\n");
	run_free(&r);
	/* Listed under unbound: the model opts out. */
	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\"}\n"
	     "    unbound: [seed]\n",
	     &r);
	expect_ok(&r, reg_path, "");
	run_free(&r);
}
END_TEST

/* `unbound:` is checked by plain `fnrun check`: params of the function, not bound. */
START_TEST(unbound_names_unused_params)
{
	const char *args[] = {"fnrun", "check", NULL, NULL};
	struct run r;

	args[2] = write_reg(IMAGE "    unbound: [seed, pitch, seed]\n");
	run(args, &r);
	expect_findings(&r, "TMP/reg.yaml:26:15: models.image.unbound[0]: param seed is bound "
			    "(bind.seed); list under unbound only params the model leaves unused\n"
			    "TMP/reg.yaml:26:21: models.image.unbound[1]: unknown param \"pitch\" of "
			    "function Image; its params: prompt, width, seed\n"
			    "TMP/reg.yaml:26:28: models.image.unbound[2]: duplicate param; list it once\n");
	run_free(&r);
}
END_TEST

START_TEST(workflow_class_type_typo)
{
	struct run r;

	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim-typo.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:24:5: models.image.workflow: node 2 of sim-typo.json has "
			    "class_type \"SimSamplr\", which the model server does not have; did you "
			    "mean \"SimSampler\"?\n");
	run_free(&r);
}
END_TEST

START_TEST(missing_binary)
{
	struct run r;

	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [\"{configdir}/no-such-server\", --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
	     "  image2:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [fnrun-no-such-server, --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:23:5: models.image.command: cannot run "
			    "\"TMP/no-such-server\": No such file or directory\n"
			    "TMP/reg.yaml:29:5: models.image2.command: cannot run \"fnrun-no-such-server\": "
			    "not found on PATH; install it or give its full path\n");
	run_free(&r);
}
END_TEST

START_TEST(missing_exec_config)
{
	struct run r;

	deep("  speech:\n"
	     "    function: Speech\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/worker-sx.yaml\", --port, \"{port}\"]\n"
	     "    workflow: tone.json\n"
	     "    bind: {text: \"1.inputs.text\", voice: \"1.inputs.voice\", speed: \"1.inputs.speed\"}\n",
	     &r);
	/* Ours, at the argument; then the worker's own words, as it exits at start. */
	expect_findings(&r, "TMP/reg.yaml:23:5: models.speech.command: the model server exited before "
			    "answering GET /object_info (exit status 1); its last output: fnrun-worker: "
			    "TMP/worker-sx.yaml: No such file or directory\n"
			    "TMP/reg.yaml:23:65: models.speech.command[4]: \"TMP/worker-sx.yaml\": No such "
			    "file or directory\n");
	run_free(&r);
}
END_TEST

/* Files a command names after --extra-model-paths-config or from {configdir} on. */
START_TEST(missing_file_arguments)
{
	struct run r;

	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [sh, -c, \"exit 0\", \"{port}\", --extra-model-paths-config, \"{configdir}/extra.yaml\", \"--user-directory={configdir}/user\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:23:5: models.image.command: the model server exited before "
			    "answering GET /object_info (exit status 0); it wrote nothing\n"
			    "TMP/reg.yaml:23:71: models.image.command[5]: \"TMP/extra.yaml\": No such file "
			    "or directory\n"
			    "TMP/reg.yaml:23:97: models.image.command[6]: \"TMP/user\": No such file or "
			    "directory\n");
	run_free(&r);
}
END_TEST

/* An exec config whose node runs a program that is not installed: fnrun-worker --check says so. */
START_TEST(missing_exec_program)
{
	struct run r;

	deep("  speech:\n"
	     "    function: Speech\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/worker-nobin.yaml\", --port, \"{port}\"]\n"
	     "    workflow: tone.json\n"
	     "    bind: {text: \"1.inputs.text\"}\n"
	     "    unbound: [voice, speed]\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:23:65: models.speech.command[4]: TMP/worker-nobin.yaml:6:15: "
			    "nodes.Tone.command[0]: cannot run \"fnrun-no-such-tts\": not found on PATH; "
			    "install it or give its full path\n");
	run_free(&r);
}
END_TEST

START_TEST(param_range_wider_than_the_input)
{
	struct run r;

	deep("  odd:\n"
	     "    function: Odd\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {size: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
	     "    unbound: [steps, mode, words]\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:25:12: models.odd.bind.size: param size allows 16 to 8192, "
			    "but node 2 (SimSampler) input \"width\" takes 16 to 4096; give "
			    "functions.Odd.params.size a min and max within that range\n"
			    "TMP/reg.yaml:25:36: models.odd.bind.seed: param seed allows any value (no min "
			    "or max), but node 2 (SimSampler) input \"seed\" takes 0 to "
			    "18446744073709551615; give functions.Odd.params.seed a min and max within "
			    "that range\n");
	run_free(&r);
}
END_TEST

START_TEST(param_type_does_not_fit)
{
	struct run r;

	deep("  odd:\n"
	     "    function: Odd\n"
	     "    quality: low\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {steps: \"2.inputs.steps\", mode: \"2.inputs.fail\",\n"
	     "           words: [\"1.inputs.text\", \"2.inputs.conditioning\"]}\n"
	     "    unbound: [size, seed]\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:25:12: models.odd.bind.steps: param steps is a float, but node 2 "
			    "(SimSampler) input \"steps\" is INT, which takes an int param\n"
			    "TMP/reg.yaml:25:37: models.odd.bind.mode: node 2 (SimSampler) input \"fail\" "
			    "does not accept option melt of param mode; it accepts: none, oom, error, "
			    "crash, hang\n"
			    "TMP/reg.yaml:26:37: models.odd.bind.words[1]: param words is a string, but node 2 "
			    "(SimSampler) input \"conditioning\" is CONDITIONING, which takes a link from "
			    "another node, not a param\n");
	run_free(&r);
}
END_TEST

/* A server that exits, and one that never answers and ignores SIGTERM: both reported, both gone. */
START_TEST(server_exits_or_never_answers)
{
	struct run r;

	deep("  image:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [sh, -c, \"echo loading >&2; echo no GPU here >&2; exit 3\", \"{port}\"]\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
	     "  hang:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    command: [sh, -c, \"trap '' TERM; echo waiting; while :; do sleep 1; done\", \"{port}\"]\n"
	     "    start_timeout: 500ms\n"
	     "    workflow: sim.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n",
	     &r);
	expect_findings(&r, "TMP/reg.yaml:23:5: models.image.command: the model server exited before "
			    "answering GET /object_info (exit status 3); its last output: loading | no GPU "
			    "here\n"
			    "TMP/reg.yaml:29:5: models.hang.command: the model server did not answer GET "
			    "/object_info within 500ms (start_timeout; Couldn't connect to server); its "
			    "last output: waiting\n");
	run_free(&r);
}
END_TEST

#define EXTERNAL                                                                               \
	"  ext:\n"                                                                             \
	"    function: Image\n"                                                                \
	"    quality: low\n"                                                                   \
	"    runtime: external\n"                                                              \
	"    url: http://127.0.0.1:%d\n"                                                       \
	"    workflow: sim.json\n"                                                             \
	"    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"

START_TEST(external_server_unreachable)
{
	int port = tu_free_port();
	char *models = xasprintf(EXTERNAL, port);
	char *want = xasprintf("TMP/reg.yaml:24:5: models.ext.url: cannot read GET "
			       "http://127.0.0.1:%d/object_info: Couldn't connect to server; start the "
			       "model server there, or fix the URL\n", port);
	struct run r;

	deep(models, &r);
	expect_findings(&r, want);
	run_free(&r);
	free(want);
	free(models);
}
END_TEST

/* An external server that answers is checked like a started one, and left running. */
START_TEST(external_server_checked)
{
	int port = tu_free_port();
	char portstr[16], log[PATH_MAX];
	char *argv[] = {NULL, "--model", "sim", "--port", portstr, NULL};
	char *models = xasprintf(EXTERNAL, port);
	struct run r;
	pid_t pid;

	snprintf(portstr, sizeof portstr, "%d", port);
	snprintf(log, sizeof log, "%s/external.log", tu_tmpdir());
	argv[0] = xstrdup(tu_bin("fnrun-worker"));
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(tu_wait_http(port, "/object_info", 200, 20000), 0);
	deep(models, &r);
	ck_assert_msg(exit_code(&r) == 0, "stderr:\n%s", r.err);
	ck_assert_str_eq(r.err, "");
	ck_assert_int_eq(kill(pid, 0), 0);
	tu_stop(pid, 2000);
	run_free(&r);
	free(models);
	free(argv[0]);
}
END_TEST

START_TEST(docker_model_is_a_note)
{
	struct run r;

	deep("  box:\n"
	     "    function: Image\n"
	     "    quality: low\n"
	     "    runtime: docker\n"
	     "    image: localhost/fnrun/worker-sim:latest\n"
	     "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
	     "    workflow: sim-typo.json\n"
	     "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n",
	     &r);
	/* Not started, so sim-typo.json's class typo goes unseen. */
	expect_ok(&r, reg_path, "TMP/reg.yaml:20:3: models.box: not started (docker): checked "
				"against the registry only\n");
	run_free(&r);
}
END_TEST

/* A registry that does not load: its errors alone, and no server started. */
START_TEST(registry_errors_stop_the_check)
{
	struct run r;

	deep(IMAGE "    colour: blue\n", &r);
	expect_findings(&r, "TMP/reg.yaml:26:5: models.image.colour: unknown key; allowed keys: "
			    "function, quality, runtime, command, image, url, urls, env, workflow, bind, "
			    "unbound, resources, idle_timeout, start_timeout, step_timeout, "
			    "min_instances, max_instances, fallback, weight, enabled, version, rollout, "
			    "free_after_job, prewarm, target_wait\n");
	run_free(&r);
}
END_TEST

/* ---- fnrun-worker --check ---- */

START_TEST(worker_check_examples)
{
	static const char *const configs[] = {"examples/worker-espeak.yaml",
					       "examples/worker-flite.yaml",
					       "examples/worker-festival.yaml", FIXTURES "/worker-tone.yaml"};

	for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
		const char *args[] = {"fnrun-worker", "--check", configs[i], NULL};
		char *ok = xasprintf("%s: ok\n", configs[i]);
		struct run r;

		run(args, &r);
		ck_assert_msg(exit_code(&r) == 0, "%s: %s", configs[i], r.err);
		ck_assert_str_eq(r.out, ok);
		ck_assert_str_eq(r.err, "");
		run_free(&r);
		free(ok);
	}
}
END_TEST

START_TEST(worker_check_errors)
{
	static const struct {
		const char *config, *want;
	} cases[] = {
		{FIXTURES "/worker-broken.yaml",
		 FIXTURES "/worker-broken.yaml:5:21: nodes.Tone.inputs.speed.type: unknown type "
			  "\"NUMBER\"; allowed: INT, FLOAT, STRING, BOOLEAN, COMBO\n"},
		{FIXTURES "/worker-nobin.yaml",
		 FIXTURES "/worker-nobin.yaml:6:15: nodes.Tone.command[0]: cannot run "
			  "\"fnrun-no-such-tts\": not found on PATH; install it or give its full path\n"},
		{FIXTURES "/worker-sx.yaml",
		 FIXTURES "/worker-sx.yaml: No such file or directory\n"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *args[] = {"fnrun-worker", "--check", cases[i].config, NULL};
		struct run r;

		run(args, &r);
		ck_assert_int_eq(exit_code(&r), 1);
		ck_assert_str_eq(r.out, "");
		ck_assert_str_eq(r.err, cases[i].want);
		run_free(&r);
	}
}
END_TEST

Suite *suite_check_deep(void)
{
	Suite *s = suite_create("check_deep");
	TCase *tc = tcase_create("check_deep");

	/* Each test runs fnrun check once or twice: a second or less, more under ASan. */
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, clean_registry_passes);
	tcase_add_test(tc, examples_pass);
	tcase_add_test(tc, bind_to_an_input_the_node_lacks);
	tcase_add_test(tc, param_bound_nowhere);
	tcase_add_test(tc, unbound_names_unused_params);
	tcase_add_test(tc, workflow_class_type_typo);
	tcase_add_test(tc, missing_binary);
	tcase_add_test(tc, missing_exec_config);
	tcase_add_test(tc, missing_file_arguments);
	tcase_add_test(tc, missing_exec_program);
	tcase_add_test(tc, param_range_wider_than_the_input);
	tcase_add_test(tc, param_type_does_not_fit);
	tcase_add_test(tc, server_exits_or_never_answers);
	tcase_add_test(tc, external_server_unreachable);
	tcase_add_test(tc, external_server_checked);
	tcase_add_test(tc, docker_model_is_a_note);
	tcase_add_test(tc, registry_errors_stop_the_check);
	tcase_add_test(tc, worker_check_examples);
	tcase_add_test(tc, worker_check_errors);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * test_exec.c - the exec model: config errors with file:line:col, class
 * registration, argv building (no shell), and the process runner (exit
 * status, stderr tail, progress, timeout, cancel with a process group).
 * Each test runs in its own process with its own temp dir.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "json.h" /* -I/usr/include/json-c has a json.h too */
#include "log.h"
#include "model_exec.h"
#include "node.h"
#include "testutil.h"
#include "util.h"

static void setup(void)
{
	log_init(LOG_ERROR, NULL);
	signal(SIGPIPE, SIG_IGN); /* as the worker's main() does */
	nodes_reset();
}

static void teardown(void)
{
	nodes_reset();
	model_exec_unload();
	tu_rmrf(tu_tmpdir());
}

/* Writes yaml to <tmp>/cfg.yaml and loads it; the error text without the dir. */
static int load_yaml(const char *yaml, struct err *err)
{
	char path[512];

	snprintf(path, sizeof path, "%s/cfg.yaml", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(path, yaml, strlen(yaml)), 0);
	err_clear(err);
	return model_exec_load(path, err);
}

static const char *msg_of(const struct err *err)
{
	size_t n = strlen(tu_tmpdir());

	return strncmp(err->msg, tu_tmpdir(), n) == 0 ? err->msg + n + 1 : err->msg;
}

/* Loading yaml fails with ERR_INVALID, message `want`, nothing registered. */
static void load_fails(const char *yaml, const char *want)
{
	struct err err;

	ck_assert_int_eq(load_yaml(yaml, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_str_eq(msg_of(&err), want);
	ck_assert_uint_eq(nodes_count(), 0);
}

#define NODE_HEAD "nodes:\n  T:\n"

START_TEST(test_unknown_type)
{
	load_fails(NODE_HEAD
		   "    inputs:\n"
		   "      speed: {type: NUMBER}\n"
		   "    command: [x, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:4:21: nodes.T.inputs.speed.type: unknown type \"NUMBER\"; "
		   "allowed: INT, FLOAT, STRING, BOOLEAN, COMBO");
}
END_TEST

START_TEST(test_unknown_placeholder)
{
	load_fails(NODE_HEAD
		   "    inputs:\n"
		   "      speed: {type: INT}\n"
		   "    command: [x, \"--rate={sped}\", \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:5:18: nodes.T.command[1]: unknown placeholder \"{sped}\"; "
		   "allowed: {output}, {speed}");
	load_fails(NODE_HEAD
		   "    command: [x, \"{output}\"]\n"
		   "    stdin: \"{text}\"\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:4:12: nodes.T.stdin: unknown placeholder \"{text}\"; allowed: {output}");
}
END_TEST

START_TEST(test_missing_command)
{
	load_fails(NODE_HEAD "    output: {kind: audio}\n",
		   "cfg.yaml:3:5: nodes.T: missing key \"command\"");
	load_fails(NODE_HEAD "    command: []\n    output: {kind: audio}\n",
		   "cfg.yaml:3:14: nodes.T.command: needs at least the program to run");
	load_fails(NODE_HEAD "    command: x\n    output: {kind: audio}\n",
		   "cfg.yaml:3:14: nodes.T.command: expected a list");
}
END_TEST

START_TEST(test_bad_yaml)
{
	struct err err;

	ck_assert_int_eq(load_yaml(NODE_HEAD "    command: [x, \"{output}\"\n"
					     "    output: {kind: audio}\n",
				   &err),
			 -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_msg(strncmp(msg_of(&err), "cfg.yaml:4:", 11) == 0, "%s", err.msg);
	ck_assert_msg(strstr(err.msg, "YAML syntax error: ") != NULL, "%s", err.msg);
	load_fails("", "cfg.yaml: top level: the file is empty; expected \"nodes:\"");
	load_fails("- a\n", "cfg.yaml:1:1: top level: expected a mapping with the key \"nodes\"");
}
END_TEST

START_TEST(test_duplicate_node)
{
	load_fails("nodes:\n"
		   "  T: {command: [x, \"{output}\"], output: {kind: audio}}\n"
		   "  T: {command: [y, \"{output}\"], output: {kind: audio}}\n",
		   "cfg.yaml:3:3: nodes.T: duplicate node");
	load_fails(NODE_HEAD
		   "    inputs:\n"
		   "      a: {type: INT}\n"
		   "      a: {type: INT}\n"
		   "    command: [x, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:5:7: nodes.T.inputs.a: duplicate input");
	load_fails(NODE_HEAD
		   "    command: [x, \"{output}\"]\n"
		   "    command: [y, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:4:5: nodes.T.command: duplicate key");
}
END_TEST

START_TEST(test_duplicate_registered)
{
	struct err err;

	ck_assert_int_eq(load_yaml("nodes:\n  T: {command: [x, \"{output}\"], output: {kind: audio}}\n",
				   &err),
			 0);
	ck_assert_uint_eq(nodes_count(), 1);
	ck_assert_int_eq(load_yaml("nodes:\n  U: {command: [x, \"{output}\"], output: {kind: audio}}\n"
				   "  T: {command: [x, \"{output}\"], output: {kind: audio}}\n",
				   &err),
			 -1);
	ck_assert_str_eq(msg_of(&err),
			 "cfg.yaml:3:3: nodes.T: a node class of that name is already registered");
	ck_assert_uint_eq(nodes_count(), 1); /* U was not registered either */
}
END_TEST

/* More mistakes, each with where and what is allowed. */
START_TEST(test_other_errors)
{
	load_fails(NODE_HEAD "    comand: [x]\n",
		   "cfg.yaml:3:5: nodes.T: unknown key \"comand\"; allowed: display_name, category, "
		   "description, inputs, command, stdin, output, expected_seconds, timeout_seconds");
	load_fails(NODE_HEAD "    command: [x, y]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:14: nodes.T.command: no entry holds {output}, the file the command "
		   "must write");
	load_fails(NODE_HEAD "    command: [\"{output}\"]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:15: nodes.T.command[0]: the program must be a fixed, non-empty name");
	load_fails(NODE_HEAD "    command: [x, \"{output}\", \"a}b\"]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:30: nodes.T.command[2]: unmatched \"}\"; write \"}}\" for a literal brace");
	load_fails(NODE_HEAD "    command: [x, \"{output\"]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:18: nodes.T.command[1]: unclosed \"{\"; write \"{{\" for a literal brace");
	load_fails(NODE_HEAD "    command: [x, \"{output}\"]\n    output: {kind: sound}\n",
		   "cfg.yaml:4:20: nodes.T.output.kind: unknown kind \"sound\"; allowed: image, audio, "
		   "video");
	load_fails(NODE_HEAD "    inputs: {output: {type: STRING}}\n    command: [x, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:3:14: nodes.T.inputs.output: the name \"output\" is reserved for the "
		   "{output} placeholder");
	load_fails(NODE_HEAD "    inputs: {n: {type: INT, options: [a]}}\n    command: [x, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:3:38: nodes.T.inputs.n.options: not allowed for type INT");
	load_fails(NODE_HEAD "    inputs: {n: {type: INT, default: 500, max: 450}}\n"
		   "    command: [x, \"{output}\"]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:38: nodes.T.inputs.n.default: 500 is outside min..max");
	load_fails(NODE_HEAD "    inputs: {v: {type: COMBO, options: [a, b], default: c}}\n"
		   "    command: [x, \"{output}\"]\n    output: {kind: audio}\n",
		   "cfg.yaml:3:57: nodes.T.inputs.v.default: \"c\" is not one of the options");
	load_fails(NODE_HEAD "    inputs: {v: {type: COMBO}}\n    command: [x, \"{output}\"]\n"
		   "    output: {kind: audio}\n",
		   "cfg.yaml:3:24: nodes.T.inputs.v: type COMBO needs \"options\"");
	load_fails(NODE_HEAD "    command: [x, \"{output}\"]\n    output: {kind: audio}\n"
		   "    timeout_seconds: soon\n",
		   "cfg.yaml:5:22: nodes.T.timeout_seconds: expected a number, got \"soon\"");
	load_fails(NODE_HEAD "    command: [x, \"{output}\"]\n    output: {kind: audio, prefix: ../up}\n",
		   "cfg.yaml:4:35: nodes.T.output.prefix: expected a relative path of letters, "
		   "digits, _ - . and /, without \"..\"");
	load_fails("nodes: {}\n", "cfg.yaml:1:8: nodes: declares no node");
	load_fails("nodez: {}\n", "cfg.yaml:1:1: top level: unknown key \"nodez\"; allowed: nodes");
}
END_TEST

START_TEST(test_missing_file)
{
	struct err err = {0};

	ck_assert_int_eq(model_exec_load("/nonexistent/cfg.yaml", &err), -1);
	ck_assert_int_eq(err.code, ERR_IO);
	ck_assert_str_eq(err.msg, "/nonexistent/cfg.yaml: No such file or directory");
}
END_TEST

static const struct node_input *input_of(const struct node_class *c, const char *name)
{
	for (size_t i = 0; i < c->ninputs; i++)
		if (strcmp(c->inputs[i].name, name) == 0)
			return &c->inputs[i];
	ck_abort_msg("no input %s", name);
	return NULL;
}

START_TEST(test_examples_register)
{
	static const char *const files[] = {"examples/worker-espeak.yaml",
					    "examples/worker-flite.yaml",
					    "examples/worker-festival.yaml"};
	const struct node_class *c;
	const struct node_input *in;
	struct err err = {0};

	for (size_t i = 0; i < 3; i++)
		ck_assert_msg(model_exec_load(files[i], &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(nodes_count(), 3);
	c = nodes_find("EspeakTTS");
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->display_name, "Speak (espeak-ng)");
	ck_assert_str_eq(c->category, "audio");
	ck_assert_str_eq(c->python_module, "custom_nodes.fnrun_exec");
	ck_assert_int_eq(c->output_node, 1);
	ck_assert_uint_eq(c->noutputs, 0);
	ck_assert_ptr_nonnull(c->cancel);
	ck_assert_uint_eq(c->ninputs, 4);
	ck_assert_str_eq(c->inputs[0].name, "text"); /* file order */
	in = input_of(c, "text");
	ck_assert_str_eq(in->type, "STRING");
	ck_assert_int_eq(in->required, 1);
	ck_assert_int_eq(in->multiline, 1);
	ck_assert_str_eq(in->def, "\"Hello from Function Runner.\"");
	in = input_of(c, "voice");
	ck_assert_str_eq(in->type, "COMBO");
	ck_assert_str_eq(in->def, "\"en\"");
	ck_assert_str_eq(in->options[0], "en");
	ck_assert_str_eq(in->options[2], "en-gb");
	in = input_of(c, "speed");
	ck_assert_str_eq(in->type, "INT");
	ck_assert_str_eq(in->def, "175");
	ck_assert(in->has_min && in->min == 80 && in->has_max && in->max == 450 && in->step == 5);
	ck_assert_str_eq(in->tooltip, "Words per minute");
	in = input_of(nodes_find("FliteTTS"), "stretch");
	ck_assert_str_eq(in->type, "FLOAT");
	ck_assert_str_eq(in->def, "1.0");
	ck_assert_ptr_nonnull(nodes_find("FestivalTTS"));
}
END_TEST

START_TEST(test_object_info)
{
	struct err err = {0};
	struct json_object *info;
	char *text;

	ck_assert_int_eq(load_yaml(NODE_HEAD
				   "    inputs:\n"
				   "      seed: {type: INT, default: 1, control_after_generate: true}\n"
				   "      loud: {type: BOOLEAN, default: yes, required: false}\n"
				   "    command: [x, \"{output}\"]\n"
				   "    output: {kind: image}\n",
				   &err),
			 0);
	info = nodes_object_info(nodes_find("T"));
	text = json_dumps(info);
	ck_assert_msg(strstr(text, "\"seed\": [\"INT\", {\"default\": 1") != NULL, "%s", text);
	ck_assert_msg(strstr(text, "\"control_after_generate\": true") != NULL, "%s", text);
	ck_assert_msg(strstr(text, "\"optional\": {\"loud\": [\"BOOLEAN\", {\"default\": true") != NULL,
		      "%s", text);
	ck_assert_msg(strstr(text, "\"output_node\": true") != NULL, "%s", text);
	ck_assert_msg(strstr(text, "\"display_name\": \"T\"") != NULL, "%s", text);
	free(text);
	json_object_put(info);
}
END_TEST

/* ------------------------------------------------------------------ */

static const char argv_yaml[] =
	NODE_HEAD
	"    inputs:\n"
	"      text: {type: STRING}\n"
	"      speed: {type: INT, default: 175}\n"
	"      extra: {type: STRING, required: false}\n"
	"      mode: {type: COMBO, options: [fast, slow], default: slow, required: false}\n"
	"    command: [/bin/prog, \"{text}\", \"--rate={speed}\", \"{{literal}}\", \"a{{b}}c\",\n"
	"              \"-o\", \"{output}\", \"pre-{text}-{speed}-post\", \"{extra}\", \"{mode}\"]\n"
	"    stdin: \"say {text} at {speed}\\n\"\n"
	"    output: {kind: audio}\n";

static char **argv_of(const struct model_exec_value *v, size_t n)
{
	char **argv = NULL;
	struct err err = {0};

	ck_assert_msg(model_exec_build_argv(nodes_find("T"), v, n, "/out/x.wav", &argv, &err) == 0,
		      "%s", err.msg);
	return argv;
}

START_TEST(test_argv_placeholders)
{
	static const char *const hostile[] = {
		"hello world", "it's \"quoted\"", "--rm -rf /", "$(touch /tmp/pwned); `id` | cat > x",
		"{output}", "",
	};
	struct err err = {0};
	char *in = NULL;

	ck_assert_int_eq(load_yaml(argv_yaml, &err), 0);
	for (size_t k = 0; k < sizeof hostile / sizeof hostile[0]; k++) {
		struct model_exec_value v[] = {{"text", hostile[k]}, {"speed", "200"}};
		char **argv = argv_of(v, 2);
		char want[256];

		ck_assert_str_eq(argv[0], "/bin/prog");
		ck_assert_str_eq(argv[1], hostile[k]); /* one argument, verbatim */
		ck_assert_str_eq(argv[2], "--rate=200");
		ck_assert_str_eq(argv[3], "{literal}");
		ck_assert_str_eq(argv[4], "a{b}c");
		ck_assert_str_eq(argv[5], "-o");
		ck_assert_str_eq(argv[6], "/out/x.wav");
		snprintf(want, sizeof want, "pre-%s-200-post", hostile[k]);
		ck_assert_str_eq(argv[7], want);
		ck_assert_str_eq(argv[8], "");     /* absent optional, no default */
		ck_assert_str_eq(argv[9], "slow"); /* absent optional, its default */
		ck_assert_ptr_null(argv[10]);
		model_exec_free_argv(argv);
	}
	{
		struct model_exec_value v[] = {{"text", "hi"}, {"speed", "90"}, {"mode", "fast"}};

		ck_assert_int_eq(model_exec_build_stdin(nodes_find("T"), v, 3, "/o", &in, &err), 0);
		ck_assert_str_eq(in, "say hi at 90\n");
		free(in);
	}
}
END_TEST

START_TEST(test_argv_errors)
{
	struct model_exec_value v[] = {{"speed", "200"}};
	struct node_class other = {.name = "Other"};
	struct err err = {0};
	char **argv = (char **)1;

	ck_assert_int_eq(load_yaml(argv_yaml, &err), 0);
	ck_assert_int_eq(model_exec_build_argv(nodes_find("T"), v, 1, "/o", &argv, &err), -1);
	ck_assert_ptr_null(argv);
	ck_assert_str_eq(err.msg, "input \"text\" has no value");
	err_clear(&err);
	ck_assert_int_eq(model_exec_build_argv(&other, v, 1, "/o", &argv, &err), -1);
	ck_assert_str_eq(err.msg, "Other is not an exec node class");
}
END_TEST

/* ------------------------------------------------------------------ */
/* The process runner                                                 */

struct jr {
	struct model_exec_job *job;
	int ended, outcome;
	char msg[16384];
	double value[512], max[512];
	int nprogress;
	int cancel_on_progress; /* cancel when the first progress arrives */
};

static void jr_progress(void *arg, double value, double max)
{
	struct jr *r = arg;

	ck_assert_int_eq(r->ended, 0);
	if (r->nprogress < 512) {
		r->value[r->nprogress] = value;
		r->max[r->nprogress] = max;
		r->nprogress++;
	}
	if (r->cancel_on_progress)
		model_exec_job_cancel(r->job);
}

static void jr_end(void *arg, int outcome, const char *msg)
{
	struct jr *r = arg;

	ck_assert_int_eq(r->ended, 0);
	r->ended = 1;
	r->outcome = outcome;
	snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
	ck_assert(outcome == MODEL_EXEC_OK ? msg == NULL : msg != NULL || outcome == MODEL_EXEC_INTERRUPTED);
}

static const char *out_path(void)
{
	static char p[512];

	snprintf(p, sizeof p, "%s/.out.partial.wav", tu_tmpdir());
	return p;
}

/* Runs `sh -c script sh OUTPUT` to its end on a private loop. */
static void run_sh(struct jr *r, const char *script, const char *stdin_text, uint64_t expected_ms,
		   uint64_t timeout_ms, uint64_t grace_ms)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, "sh", (char *)out_path(), NULL};
	struct model_exec_job_opts o = {
		.argv = argv, .stdin_text = stdin_text, .output = out_path(),
		.expected_ms = expected_ms, .timeout_ms = timeout_ms, .grace_ms = grace_ms,
		.on_progress = jr_progress, .on_end = jr_end, .arg = r,
	};
	struct err err = {0};
	uv_loop_t loop;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	r->job = model_exec_job_start(&loop, &o, &err);
	ck_assert_msg(r->job != NULL, "%s", err.msg);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(r->ended, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static int out_exists(void)
{
	return access(out_path(), F_OK) == 0;
}

START_TEST(test_job_success_progress)
{
	struct jr r = {0};
	char *data;

	run_sh(&r,
	       "echo PROGRESS 1/4; echo 'PROGRESS 4/4 '; echo PROGRESS x/4; echo noise;"
	       "printf 'RIFF' > \"$1\"",
	       NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_OK);
	ck_assert_int_eq(r.nprogress, 2);
	ck_assert(r.value[0] == 1 && r.max[0] == 4 && r.value[1] == 4 && r.max[1] == 4);
	data = tu_read_file(out_path(), NULL);
	ck_assert_str_eq(data, "RIFF");
	free(data);
}
END_TEST

START_TEST(test_job_stdin)
{
	struct jr r = {0};
	char *data;

	run_sh(&r, "cat > \"$1\"", "line one\n'quoted' $(not run)\n", 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_OK);
	data = tu_read_file(out_path(), NULL);
	ck_assert_str_eq(data, "line one\n'quoted' $(not run)\n");
	free(data);
}
END_TEST

START_TEST(test_job_exit_status_tail)
{
	struct jr r = {0};
	struct buf want;

	/* 30 lines of stderr, a partial file: only the last 20 lines survive. */
	run_sh(&r,
	       "echo partial > \"$1\"; i=1; while [ $i -le 30 ]; do echo \"err $i\" >&2; "
	       "i=$((i+1)); done; printf 'no newline' >&2; exit 3",
	       NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	buf_init(&want, 4096);
	buf_puts(&want, "command exited with status 3: ");
	for (int i = 12; i <= 30; i++)
		buf_printf(&want, "err %d\n", i);
	buf_puts(&want, "no newline");
	ck_assert_str_eq(r.msg, want.data);
	buf_cleanup(&want);
	ck_assert(!out_exists());
}
END_TEST

START_TEST(test_job_bad_output)
{
	struct jr r = {0};

	run_sh(&r, "echo done", NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	ck_assert_str_eq(r.msg, "command exited with status 0 but wrote no output file");
	memset(&r, 0, sizeof r);
	run_sh(&r, ": > \"$1\"; echo 'warning: empty' >&2", NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	ck_assert_str_eq(r.msg, "command exited with status 0 but wrote an empty output file: "
				"warning: empty");
	ck_assert(!out_exists());
	memset(&r, 0, sizeof r);
	run_sh(&r, "ln -s /etc/passwd \"$1\"", NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	ck_assert_str_eq(r.msg, "command exited with status 0 but its output is not a regular file");
	ck_assert(!out_exists());
}
END_TEST

START_TEST(test_job_signal_and_bytes)
{
	struct jr r = {0};

	/* Control bytes and invalid UTF-8 in stderr become '?'. */
	run_sh(&r, "printf 'bad \\033[31m\\377 caf\\303\\251\\n' >&2; kill -9 $$", NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	ck_assert_str_eq(r.msg, "command was killed by signal 9 (Killed): bad ?[31m? caf\xc3\xa9");
}
END_TEST

START_TEST(test_job_spawn_enoent)
{
	char *argv[] = {"fnrun-no-such-program", "{output}", NULL};
	struct model_exec_job_opts o = {.argv = argv, .output = out_path(),
					.on_progress = jr_progress, .on_end = jr_end};
	struct err err = {0};
	struct jr r = {0};
	uv_loop_t loop;

	o.arg = &r;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_ptr_null(model_exec_job_start(&loop, &o, &err));
	ck_assert_str_eq(err.msg, "cannot run \"fnrun-no-such-program\": no such file or directory");
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(r.ended, 0); /* a failed start never calls back */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(test_job_elapsed_progress)
{
	struct jr r = {0};

	/* No PROGRESS lines: elapsed / expected, capped at 95%. */
	run_sh(&r, "sleep 0.6; echo x > \"$1\"", NULL, 200, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_OK);
	ck_assert_int_ge(r.nprogress, 2);
	for (int i = 0; i < r.nprogress; i++) {
		ck_assert(r.max[i] == 100 && r.value[i] <= 95);
		ck_assert(i == 0 || r.value[i] > r.value[i - 1]);
	}
	ck_assert(r.value[r.nprogress - 1] == 95);
}
END_TEST

START_TEST(test_job_timeout)
{
	struct jr r = {0};

	run_sh(&r, "echo partial > \"$1\"; echo 'working...' >&2; exec sleep 30", NULL, 0, 300, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_FAILED);
	ck_assert_str_eq(r.msg, "command timed out after 0.3 s and was killed: working...");
	ck_assert(!out_exists());
}
END_TEST

/* 1 once pid is gone or a zombie, polling up to ms. */
static int gone_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		char path[64], *stat;

		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		stat = tu_read_file(path, NULL);
		if (stat == NULL)
			return 1;
		if (strstr(stat, ") Z ") != NULL) {
			free(stat);
			return 1;
		}
		free(stat);
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	return 0;
}

static pid_t read_pid(const char *name)
{
	char path[512], *s;
	pid_t pid;

	snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
	s = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(s);
	pid = (pid_t)atoi(s);
	free(s);
	ck_assert_int_gt(pid, 1);
	return pid;
}

START_TEST(test_job_cancel_kills_group)
{
	struct jr r = {.cancel_on_progress = 1};
	char script[1024];

	/* A grandchild in the group; cancel once both are running. */
	snprintf(script, sizeof script,
		 "echo partial > \"$1\"; sleep 60 & echo $! > %s/grandchild.pid; "
		 "echo PROGRESS 0/1; wait",
		 tu_tmpdir());
	run_sh(&r, script, NULL, 0, 0, 0);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_INTERRUPTED);
	ck_assert(!out_exists());
	ck_assert(gone_within(read_pid("grandchild.pid"), 3000));
}
END_TEST

START_TEST(test_job_cancel_sigkill)
{
	struct jr r = {.cancel_on_progress = 1};
	uint64_t t0 = uv_hrtime();

	/* SIGTERM ignored: SIGKILL after the grace period. */
	run_sh(&r, "trap '' TERM; echo partial > \"$1\"; echo PROGRESS 0/1; while :; do sleep 1; done",
	       NULL, 0, 0, 300);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_INTERRUPTED);
	ck_assert(!out_exists());
	ck_assert_uint_ge((uv_hrtime() - t0) / 1000000, 300);
}
END_TEST

START_TEST(test_job_grandchild_holds_pipes)
{
	struct jr r = {0};
	char script[1024];

	/* The command exits but a grandchild keeps stdout open: end after the grace. */
	snprintf(script, sizeof script,
		 "echo ok > \"$1\"; sleep 60 & echo $! > %s/grandchild.pid; exit 0", tu_tmpdir());
	run_sh(&r, script, NULL, 0, 0, 200);
	ck_assert_int_eq(r.outcome, MODEL_EXEC_OK);
	ck_assert(gone_within(read_pid("grandchild.pid"), 3000));
}
END_TEST

/* ------------------------------------------------------------------ */
/* The example configs drive the real programs.                       */

static int have_program(const char *name)
{
	char cmd[256];

	snprintf(cmd, sizeof cmd, "command -v %s > /dev/null 2>&1", name);
	return system(cmd) == 0;
}

static void speak(const char *file, const char *class_name, const char *program)
{
	/* Not starting with "--": festival 2.5 crashes on that (SIGSEGV). */
	struct model_exec_value v[] = {{"text", "Hello, it's \"Function Runner\" -- --rate=9."}};
	const struct node_class *c;
	struct err err = {0};
	char **argv = NULL, *in = NULL, *data;
	struct jr r = {0};
	size_t len = 0;
	uv_loop_t loop;

	ck_assert_msg(have_program(program), "%s is not installed: run scripts/install-deps",
		      program);
	ck_assert_msg(model_exec_load(file, &err) == 0, "%s", err.msg);
	c = nodes_find(class_name);
	ck_assert_int_eq(model_exec_build_argv(c, v, 1, out_path(), &argv, &err), 0);
	ck_assert_int_eq(model_exec_build_stdin(c, v, 1, out_path(), &in, &err), 0);
	struct model_exec_job_opts o = {.argv = argv, .stdin_text = in, .output = out_path(),
					.on_progress = jr_progress, .on_end = jr_end, .arg = &r};
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	r.job = model_exec_job_start(&loop, &o, &err);
	ck_assert_msg(r.job != NULL, "%s", err.msg);
	model_exec_free_argv(argv);
	free(in);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	ck_assert_msg(r.outcome == MODEL_EXEC_OK, "%s", r.msg);
	data = tu_read_file(out_path(), &len);
	ck_assert_uint_gt(len, 1000);
	ck_assert(memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WAVE", 4) == 0);
	free(data);
}

START_TEST(test_espeak_wav)
{
	speak("examples/worker-espeak.yaml", "EspeakTTS", "espeak-ng");
}
END_TEST

START_TEST(test_flite_wav)
{
	speak("examples/worker-flite.yaml", "FliteTTS", "flite");
}
END_TEST

START_TEST(test_festival_wav)
{
	speak("examples/worker-festival.yaml", "FestivalTTS", "text2wave");
}
END_TEST

/* ------------------------------------------------------------------ */
/* End to end: the real fnrun-worker with --model exec.               */

struct worker {
	pid_t pid;
	int port;
	char out[512];
};

static int worker_start(struct worker *w, const char *config)
{
	char dirs[3][512], log[512], port[16];
	static const char *const names[] = {"out", "temp", "in"};

	ck_assert_msg(access(tu_bin("fnrun-worker"), X_OK) == 0, "%s is not built",
		      tu_bin("fnrun-worker"));
	for (int i = 0; i < 3; i++)
		snprintf(dirs[i], sizeof dirs[i], "%s/%s", tu_tmpdir(), names[i]);
	snprintf(w->out, sizeof w->out, "%s", dirs[0]);
	snprintf(log, sizeof log, "%s/worker.log", tu_tmpdir());
	w->port = tu_free_port();
	snprintf(port, sizeof port, "%d", w->port);
	char *argv[] = {(char *)tu_bin("fnrun-worker"), "--model", "exec", "--config", (char *)config,
			"--port", port, "--output-directory", dirs[0], "--temp-directory", dirs[1],
			"--input-directory", dirs[2], "--log-level", "warn", NULL};
	w->pid = tu_spawn(argv, log);
	ck_assert_int_gt(w->pid, 0);
	ck_assert_msg(tu_wait_http(w->port, "/object_info", 200, 10000) == 0, "worker did not start");
	return 0;
}

/* Stops the worker; a clean exit also means no leak under ASan. */
static void worker_stop(struct worker *w)
{
	int status;

	/* One SIGTERM (tu_stop sends two, to the group and the pid). */
	kill(w->pid, SIGTERM);
	status = tu_wait_exit(w->pid, 5000);
	if (status == -1)
		status = tu_stop(w->pid, 1000);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker exit status %d", status);
}

/* POSTs {"1": {class, inputs}} and returns the prompt id (static). */
static const char *post_prompt(struct worker *w, const char *cls, const char *inputs)
{
	static char id[64];
	struct tu_resp resp;
	struct json_object *o = NULL;
	struct err err = {0};
	char *body = xasprintf("{\"prompt\": {\"1\": {\"class_type\": \"%s\", \"inputs\": %s}}}", cls,
			       inputs);

	ck_assert_int_eq(tu_http(w->port, "POST", "/prompt", "application/json", body, strlen(body),
				 &resp),
			 0);
	ck_assert_msg(resp.status == 200, "%d %s", resp.status, resp.body);
	ck_assert_int_eq(json_parse(resp.body, resp.len, JSON_MAX_DEPTH, &o, &err), 0);
	snprintf(id, sizeof id, "%s", json_get_str(o, "prompt_id"));
	json_object_put(o);
	tu_resp_free(&resp);
	free(body);
	return id;
}

/* Polls /history/<id> until the prompt has ended; caller puts the entry's object. */
static struct json_object *wait_history(struct worker *w, const char *id, struct json_object **root)
{
	char path[128];

	snprintf(path, sizeof path, "/history/%s", id);
	for (int i = 0; i < 1500; i++) {
		struct tu_resp resp;
		struct err err = {0};
		struct json_object *entry;

		ck_assert_int_eq(tu_http(w->port, "GET", path, NULL, NULL, 0, &resp), 0);
		ck_assert_int_eq(json_parse(resp.body, resp.len, JSON_MAX_DEPTH, root, &err), 0);
		tu_resp_free(&resp);
		entry = json_get_obj(*root, id);
		if (entry != NULL)
			return entry;
		json_object_put(*root);
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	ck_abort_msg("prompt %s did not end", id);
	return NULL;
}

/* The last history message of the entry: its type, and its data. */
static const char *last_message(struct json_object *entry, struct json_object **data)
{
	struct json_object *msgs = json_get_arr(json_get_obj(entry, "status"), "messages");
	struct json_object *last = json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1);

	*data = json_object_array_get_idx(last, 1);
	return json_object_get_string(json_object_array_get_idx(last, 0));
}

START_TEST(test_e2e_espeak)
{
	struct worker w;
	struct json_object *root, *entry, *file, *data;
	struct tu_resp resp;
	char path[600];

	ck_assert_msg(have_program("espeak-ng"), "espeak-ng is not installed");
	if (worker_start(&w, "examples/worker-espeak.yaml") < 0)
		return;
	entry = wait_history(&w, post_prompt(&w, "EspeakTTS",
					      "{\"text\": \"-- rm -rf / $(id)\", \"voice\": \"en-gb\", "
					      "\"speed\": 200, \"pitch\": 40}"),
			     &root);
	ck_assert_str_eq(last_message(entry, &data), "execution_success");
	file = json_object_array_get_idx(json_get_arr(json_get_obj(json_get_obj(entry, "outputs"), "1"),
						      "audio"),
					 0);
	ck_assert_ptr_nonnull(file);
	ck_assert_str_eq(json_get_str(file, "filename"), "speech_00001_.wav");
	ck_assert_str_eq(json_get_str(file, "subfolder"), "");
	ck_assert_str_eq(json_get_str(file, "type"), "output");
	json_object_put(root);
	ck_assert_int_eq(tu_http(w.port, "GET", "/view?filename=speech_00001_.wav&type=output", NULL,
				 NULL, 0, &resp),
			 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert(resp.len > 1000 && memcmp(resp.body, "RIFF", 4) == 0);
	tu_resp_free(&resp);
	snprintf(path, sizeof path, "%s/speech_00001_.wav", w.out);
	ck_assert_int_eq(access(path, F_OK), 0);
	worker_stop(&w);
}
END_TEST

/* Only the final file is left in the output directory: no partials. */
static int count_hidden(const char *dir)
{
	char cmd[600], *out;
	int n;

	snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '^\\.fnrun_' > '%s/count'", dir, tu_tmpdir());
	ck_assert_int_ne(system(cmd), -1);
	snprintf(cmd, sizeof cmd, "%s/count", tu_tmpdir());
	out = tu_read_file(cmd, NULL);
	n = out ? atoi(out) : -1;
	free(out);
	return n;
}

START_TEST(test_e2e_fake_ok_fail)
{
	struct worker w;
	struct json_object *root, *entry, *data, *file;
	char path[600], inputs[300], *text;

	if (worker_start(&w, "tests/fixtures/exec/fake.yaml") < 0)
		return;
	entry = wait_history(&w, post_prompt(&w, "FakeGen",
					      "{\"text\": \"$(id) 'x'\", \"mode\": \"ok\", \"steps\": 3}"),
			     &root);
	ck_assert_str_eq(last_message(entry, &data), "execution_success");
	file = json_object_array_get_idx(json_get_arr(json_get_obj(json_get_obj(entry, "outputs"), "1"),
						      "audio"),
					 0);
	ck_assert_str_eq(json_get_str(file, "subfolder"), "fake");
	snprintf(path, sizeof path, "%s/fake/%s", w.out, json_get_str(file, "filename"));
	text = tu_read_file(path, NULL);
	ck_assert_str_eq(text, "$(id) 'x'");
	free(text);
	json_object_put(root);

	entry = wait_history(&w, post_prompt(&w, "FakeGen",
					      "{\"text\": \"x\", \"mode\": \"fail\", \"steps\": 0}"),
			     &root);
	ck_assert_str_eq(last_message(entry, &data), "execution_error");
	ck_assert_str_eq(json_get_str(data, "exception_type"), "RuntimeError");
	ck_assert_str_eq(json_get_str(data, "exception_message"),
			 "command exited with status 1: fake-gen: failing on purpose\n");
	ck_assert_str_eq(json_get_str(data, "node_type"), "FakeGen");
	json_object_put(root);

	/* max_length is checked before the command runs. */
	snprintf(inputs, sizeof inputs, "{\"text\": \"%0101d\", \"mode\": \"ok\", \"steps\": 0}", 0);
	entry = wait_history(&w, post_prompt(&w, "FakeGen", inputs), &root);
	ck_assert_str_eq(last_message(entry, &data), "execution_error");
	ck_assert_str_eq(json_get_str(data, "exception_type"), "ValueError");
	ck_assert_str_eq(json_get_str(data, "exception_message"),
			 "input \"text\" is 101 characters long; max_length is 100\n");
	json_object_put(root);
	ck_assert_int_eq(count_hidden(w.out), 0);
	worker_stop(&w);
}
END_TEST

START_TEST(test_e2e_interrupt_kills)
{
	struct worker w;
	struct json_object *root, *entry, *data;
	struct tu_resp resp;
	const char *id;
	pid_t pid = 0;

	if (worker_start(&w, "tests/fixtures/exec/fake.yaml") < 0)
		return;
	id = post_prompt(&w, "FakeGen", "{\"text\": \"x\", \"mode\": \"hang\", \"steps\": 0}");
	/* The command writes its pid to the partial file once it runs. */
	for (int i = 0; i < 500 && pid <= 0; i++) {
		char cmd[700], *s;

		snprintf(cmd, sizeof cmd, "cat '%s'/.fnrun_*.partial.txt > '%s/pid' 2>/dev/null", w.out,
			 tu_tmpdir());
		if (system(cmd) == 0) {
			snprintf(cmd, sizeof cmd, "%s/pid", tu_tmpdir());
			s = tu_read_file(cmd, NULL);
			pid = s ? atoi(s) : 0;
			free(s);
		}
		if (pid <= 0)
			nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	ck_assert_int_gt(pid, 1);
	ck_assert_int_eq(tu_http(w.port, "POST", "/interrupt", "application/json", "{}", 2, &resp), 0);
	ck_assert_int_eq(resp.status, 200);
	tu_resp_free(&resp);
	entry = wait_history(&w, id, &root);
	ck_assert_str_eq(last_message(entry, &data), "execution_interrupted");
	json_object_put(root);
	ck_assert(gone_within(pid, 3000));
	ck_assert_int_eq(count_hidden(w.out), 0);
	worker_stop(&w);
}
END_TEST

Suite *suite_exec(void)
{
	Suite *s = suite_create("exec");
	TCase *config = tcase_create("config");
	TCase *argv = tcase_create("argv");
	TCase *job = tcase_create("job");
	TCase *real = tcase_create("real");
	TCase *e2e = tcase_create("e2e");

	tcase_add_checked_fixture(config, setup, teardown);
	tcase_add_test(config, test_unknown_type);
	tcase_add_test(config, test_unknown_placeholder);
	tcase_add_test(config, test_missing_command);
	tcase_add_test(config, test_bad_yaml);
	tcase_add_test(config, test_duplicate_node);
	tcase_add_test(config, test_duplicate_registered);
	tcase_add_test(config, test_other_errors);
	tcase_add_test(config, test_missing_file);
	tcase_add_test(config, test_examples_register);
	tcase_add_test(config, test_object_info);
	suite_add_tcase(s, config);

	tcase_add_checked_fixture(argv, setup, teardown);
	tcase_add_test(argv, test_argv_placeholders);
	tcase_add_test(argv, test_argv_errors);
	suite_add_tcase(s, argv);

	tcase_add_checked_fixture(job, setup, teardown);
	tcase_set_timeout(job, 20);
	tcase_add_test(job, test_job_success_progress);
	tcase_add_test(job, test_job_stdin);
	tcase_add_test(job, test_job_exit_status_tail);
	tcase_add_test(job, test_job_bad_output);
	tcase_add_test(job, test_job_signal_and_bytes);
	tcase_add_test(job, test_job_spawn_enoent);
	tcase_add_test(job, test_job_elapsed_progress);
	tcase_add_test(job, test_job_timeout);
	tcase_add_test(job, test_job_cancel_kills_group);
	tcase_add_test(job, test_job_cancel_sigkill);
	tcase_add_test(job, test_job_grandchild_holds_pipes);
	suite_add_tcase(s, job);

	tcase_add_checked_fixture(real, setup, teardown);
	tcase_set_timeout(real, 60);
	tcase_add_test(real, test_espeak_wav);
	tcase_add_test(real, test_flite_wav);
	tcase_add_test(real, test_festival_wav);
	suite_add_tcase(s, real);

	tcase_add_checked_fixture(e2e, setup, teardown);
	tcase_set_timeout(e2e, 60);
	tcase_add_test(e2e, test_e2e_espeak);
	tcase_add_test(e2e, test_e2e_fake_ok_fail);
	tcase_add_test(e2e, test_e2e_interrupt_kills);
	suite_add_tcase(s, e2e);
	return s;
}

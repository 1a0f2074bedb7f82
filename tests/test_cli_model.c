/*
 * test_cli_model.c - `fnrun new-model` and `fnrun dry-run`
 * (src/cli_model.c), run as an operator runs them: the real binary, files
 * in a temp dir, stdout and stderr apart.
 *
 * new-model's files are then loaded by the code that will read them:
 * registry_check() and registry_load() for the registry, model_exec_load()
 * (fnrun-worker's exec loader, linked into the test runner) for the exec
 * config. The end-to-end cases need sox: new-model's output served by a
 * real `fnrun serve` (a job through `fnrun submit`), and dry-run's output
 * posted as is to a real fnrun-worker.
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comfy_client.h"
#include "gwtest.h"
#include "model_exec.h"
#include "registry.h"
#include "util.h"

#define RUN_MS 60000
#define SOX "sox -n {output} synth {seconds} sine {note}"
#define DEMO "examples/registry.yaml"

/* An operator's registry: one function, no model, comments to keep. */
static const char OPERATOR_REG[] =
	"# The operator's registry.\n"
	"functions:\n"
	"  Create Speech:\n"
	"    params:\n"
	"      text: {type: string, required: true}   # what to say\n"
	"    qualities:\n"
	"      low: {label: Fast, typical_seconds: [1, 2]}\n"
	"\n"
	"# Models come here.\n"
	"models:\n"
	"  speech:\n"
	"    function: Create Speech\n"
	"    quality: low\n"
	"    command: [speak, --port, \"{port}\"]\n"
	"    workflow: speech.json\n"
	"\n"
	"# The end.\n";

static const char SPEECH_WF[] =
	"{\"1\": {\"class_type\": \"Speak\", \"inputs\": {\"text\": \"\"}}}\n";

struct run {
	int status; /* the exit status; -1 when killed or out of time */
	char *out;  /* stdout; "" when none */
	char *err;  /* stderr */
};

static char path_buf[4][600];

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

/* tmpdir/name in one of four rotating static buffers. */
static const char *tmp_path(const char *name)
{
	static int k;
	char *p = path_buf[k++ % 4];

	snprintf(p, sizeof path_buf[0], "%s/%s", tu_tmpdir(), name);
	return p;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Runs `fnrun ARGS...` (args NULL-terminated), stdout and stderr to files. */
static void run_fnrun(struct run *r, const char *const *args)
{
	char out[600], err[600], *argv[40];
	size_t n = 0;
	pid_t pid;
	int st;

	snprintf(out, sizeof out, "%s/.stdout", tu_tmpdir());
	snprintf(err, sizeof err, "%s/.stderr", tu_tmpdir());
	argv[n++] = (char *)tu_bin("fnrun");
	for (; args[n - 1] != NULL && n < 39; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fo, 1);
		dup2(fe, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	st = tu_wait_exit(pid, RUN_MS);
	if (st == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	r->status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	r->out = tu_read_file(out, NULL);
	r->err = tu_read_file(err, NULL);
	r->out = r->out ? r->out : xstrdup("");
	r->err = r->err ? r->err : xstrdup("");
}

/* Asserts exit status 1 with `want` in stderr and nothing on stdout. */
static void expect_failure(const char *const *args, const char *want)
{
	struct run r;

	run_fnrun(&r, args);
	ck_assert_msg(r.status == 1, "exit %d, expected 1; stderr: %s", r.status, r.err);
	ck_assert_msg(strstr(r.err, want) != NULL, "stderr lacks \"%s\": %s", want, r.err);
	ck_assert_msg(r.out[0] == '\0', "stdout not empty: %s", r.out);
	run_free(&r);
}

static int exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Names in dir, one per line (hidden ones too); caller frees. */
static char *list_dir(const char *dir)
{
	char *cmd = xasprintf("ls -A %s", dir), buf[4096];
	FILE *p = popen(cmd, "r");
	size_t n;

	ck_assert_ptr_nonnull(p);
	n = fread(buf, 1, sizeof buf - 1, p);
	buf[n] = '\0';
	pclose(p);
	free(cmd);
	return xstrdup(buf);
}

/* 1 when `program` is on PATH. */
static int have(const char *program)
{
	char *dirs = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"), *save = NULL;
	int found = 0;

	for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/%s", d, program);

		found = access(p, X_OK) == 0;
		free(p);
	}
	free(dirs);
	return found;
}

static struct json_object *parse_file(const char *path)
{
	size_t len = 0;
	char *text = tu_read_file(path, &len);
	struct json_object *o;

	ck_assert_msg(text != NULL, "%s is missing", path);
	o = cc_parse(text, len);
	free(text);
	return o;
}

/* OPERATOR_REG at reg, its workflow beside it. */
static void write_operator_reg(const char *reg)
{
	ck_assert_int_eq(tu_write_file(reg, OPERATOR_REG, strlen(OPERATOR_REG)), 0);
	ck_assert_int_eq(tu_write_file(tmp_path("speech.json"), SPEECH_WF, strlen(SPEECH_WF)), 0);
}

/* The sox model with typed inputs, added to the operator's registry. */
static void new_sound_model(struct run *r, const char *reg)
{
	const char *args[] = {"new-model", "create_sound", "--function", "Create Sound",
			      "--command", SOX, "--input", "seconds=FLOAT:0.1:5:0.5",
			      "--input", "note=STRING:A4", "--ext", "wav", "--registry", reg, NULL};

	run_fnrun(r, args);
}

static const struct reg_bind *bind_of(const struct reg_model *m, const char *param)
{
	for (size_t i = 0; i < m->nbinds; i++)
		if (strcmp(m->binds[i].param, param) == 0)
			return &m->binds[i];
	return NULL;
}

/* The registry new-model wrote: the function and the model, as asked. */
static void check_sound_registry(const char *reg)
{
	struct err e = {0};
	struct registry *r;
	const struct reg_function *f;
	const struct reg_model *m;

	ck_assert_int_eq(registry_check(reg, stderr), 0);
	r = registry_load(reg, &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	f = registry_function(r, "Create Sound");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(registry_function(r, "Create Speech"));
	ck_assert_ptr_nonnull(registry_model(r, "speech"));
	ck_assert_int_eq(f->output, REG_OUTPUT_AUDIO);
	ck_assert_uint_eq(f->nparams, 2);
	ck_assert_str_eq(f->params[0].name, "seconds");
	ck_assert_int_eq(f->params[0].type, REG_FLOAT);
	ck_assert(f->params[0].has_min && f->params[0].min_num == 0.1);
	ck_assert(f->params[0].has_max && f->params[0].max_num == 5);
	ck_assert_double_eq(json_object_get_double(f->params[0].def), 0.5);
	ck_assert_str_eq(f->params[1].name, "note");
	ck_assert_int_eq(f->params[1].type, REG_STRING);
	ck_assert_str_eq(json_object_get_string(f->params[1].def), "A4");
	ck_assert_uint_eq(f->nqualities, 3);
	ck_assert_str_eq(f->qualities[f->default_quality].key, "standard");
	m = registry_model(r, "create_sound");
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_eq(m->function, f);
	ck_assert_str_eq(f->qualities[m->quality].key, "standard");
	ck_assert_int_eq(m->runtime, REG_RUNTIME_PROCESS);
	ck_assert_int_eq(m->gpu_memory, 0);
	ck_assert(m->command_outdir);
	ck_assert_str_eq(m->command[0], "{bindir}/fnrun-worker");
	ck_assert_str_eq(m->command[4], "{configdir}/worker-create_sound.yaml");
	ck_assert_uint_eq(m->nbinds, 2);
	ck_assert_str_eq(bind_of(m, "seconds")->node, "1");
	ck_assert_str_eq(bind_of(m, "seconds")->input, "seconds");
	ck_assert_str_eq(bind_of(m, "note")->input, "note");
	registry_unref(r);
}

/* The exec config loads in fnrun-worker's loader and builds sox's argv. */
static void check_sound_config(const char *cfg)
{
	const struct model_exec_value vals[] = {{"seconds", "0.5"}, {"note", "A4"}};
	const char *want[] = {"sox", "-n", "/o/x.wav", "synth", "0.5", "sine", "A4", NULL};
	const struct node_class *c;
	struct err e = {0};
	char **argv = NULL;

	ck_assert_msg(model_exec_load(cfg, &e) == 0, "%s", e.msg);
	c = nodes_find("CreateSound");
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->ninputs, 2);
	ck_assert_str_eq(c->inputs[0].type, "FLOAT");
	ck_assert(c->inputs[0].has_min && c->inputs[0].min == 0.1 && c->inputs[0].max == 5);
	ck_assert_str_eq(c->inputs[1].type, "STRING");
	ck_assert_int_eq(model_exec_build_argv(c, vals, 2, "/o/x.wav", &argv, &e), 0);
	for (size_t i = 0; want[i] || argv[i]; i++)
		ck_assert_msg(want[i] && argv[i] && strcmp(want[i], argv[i]) == 0,
			      "argv[%zu] is %s, expected %s", i, argv[i], want[i]);
	model_exec_free_argv(argv);
	model_exec_unload();
	nodes_reset();
}

START_TEST(new_model_writes_three_files_that_load)
{
	const char *reg = tmp_path("registry.yaml");
	struct json_object *wf, *node, *in;
	struct run r;
	char *text;

	write_operator_reg(reg);
	new_sound_model(&r, reg);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, "fnrun check --deep") && strstr(r.out, ": ok"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "kill -HUP") && strstr(r.out, "curl -s"), "%s", r.out);
	run_free(&r);
	check_sound_registry(reg);
	check_sound_config(tmp_path("worker-create_sound.yaml"));
	wf = parse_file(tmp_path("workflows/create_sound.json"));
	node = json_get_obj(wf, "1");
	in = json_get_obj(node, "inputs");
	ck_assert_str_eq(json_get_str(node, "class_type"), "CreateSound");
	ck_assert(json_object_is_type(json_get(in, "seconds"), json_type_double));
	ck_assert_double_eq(json_object_get_double(json_get(in, "seconds")), 0.5);
	ck_assert_str_eq(json_get_str(in, "note"), "A4");
	json_object_put(wf);
	/* The operator's comments survive the merge. */
	text = tu_read_file(reg, NULL);
	ck_assert(strncmp(text, OPERATOR_REG, 40) == 0);
	ck_assert_ptr_nonnull(strstr(text, "# what to say"));
	ck_assert_ptr_nonnull(strstr(text, "# Models come here."));
	/* Each entry lands at the end of its own section, above what follows it. */
	ck_assert(strstr(text, "\n  Create Sound:\n") < strstr(text, "# Models come here."));
	ck_assert(strstr(text, "\n  speech:\n") < strstr(text, "\n  create_sound:\n"));
	ck_assert(strstr(text, "\n  create_sound:\n") < strstr(text, "# The end."));
	/* Again: nothing is overwritten, and each clash is named. */
	new_sound_model(&r, reg);
	ck_assert_int_eq(r.status, 1);
	ck_assert_msg(strstr(r.err, "worker-create_sound.yaml already exists"), "%s", r.err);
	ck_assert_msg(strstr(r.err, "workflows/create_sound.json already exists"), "%s", r.err);
	ck_assert_msg(strstr(r.err, "model create_sound is already in"), "%s", r.err);
	run_free(&r);
	{
		char *after = tu_read_file(reg, NULL);

		ck_assert_str_eq(after, text);
		free(after);
	}
	free(text);
}
END_TEST

START_TEST(new_model_prints_entries_to_paste)
{
	const char *dir = tmp_path("models"), *reg = tmp_path("models/registry.yaml");
	const char *args[] = {"new-model", "create_sound", "--function", "Create Sound",
			      "--command", SOX, "--dir", dir, NULL};
	struct err e = {0};
	struct registry *r;
	const struct reg_function *f;
	struct run run;

	run_fnrun(&run, args);
	ck_assert_msg(run.status == 0, "exit %d: %s", run.status, run.err);
	ck_assert_msg(strstr(run.err, "fnrun check: ok"), "%s", run.err);
	ck_assert_int_eq(tu_write_file(reg, run.out, strlen(run.out)), 0);
	run_free(&run);
	ck_assert_int_eq(registry_check(reg, stderr), 0);
	r = registry_load(reg, &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	f = registry_function(r, "Create Sound");
	/* Untyped placeholders are required strings; "Sound" makes it audio. */
	ck_assert_int_eq(f->output, REG_OUTPUT_AUDIO);
	ck_assert_int_eq(f->params[0].type, REG_STRING);
	ck_assert(f->params[0].required && f->params[1].required);
	ck_assert_ptr_nonnull(registry_model(r, "create_sound"));
	registry_unref(r);
	ck_assert(exists(tmp_path("models/worker-create_sound.yaml")));
	/* Nothing of the check is left behind. */
	{
		char *names = list_dir(dir);

		ck_assert_str_eq(names, "registry.yaml\nworker-create_sound.yaml\nworkflows\n");
		free(names);
	}
	expect_failure(args, "worker-create_sound.yaml already exists");
}
END_TEST

START_TEST(new_model_refuses_what_needs_a_shell)
{
	const char *dir = tmp_path("m");
	const char *pipe_args[] = {"new-model", "x", "--function", "F", "--dir", dir, "--command",
				   "sox -n {output} synth 1 sine 440 | lame - out.mp3", NULL};
	const char *var_args[] = {"new-model", "x", "--function", "F", "--dir", dir, "--command",
				  "sox -n {output} synth \"$SECONDS\" sine 440", NULL};
	const char *noout_args[] = {"new-model", "x", "--function", "F", "--dir", dir,
				    "--command", "sox -n out.wav synth {seconds}", NULL};
	const char *quote_args[] = {"new-model", "x", "--function", "F", "--dir", dir,
				    "--command", "sox -n {output} 'synth", NULL};
	const char *input_args[] = {"new-model", "x", "--function", "F", "--dir", dir, "--command",
				    SOX, "--input", "tempo=INT:1:9:5", NULL};
	const char *range_args[] = {"new-model", "x", "--function", "F", "--dir", dir, "--command",
				    SOX, "--input", "seconds=FLOAT:1:5:9", NULL};

	expect_failure(pipe_args, "\"|\" at column 34 needs a shell");
	expect_failure(var_args, "\"$\" at column 24 needs a shell");
	expect_failure(noout_args, "has no {output}");
	expect_failure(quote_args, "a quote is not closed");
	expect_failure(input_args, "--input tempo=INT:1:9:5: expected NAME=TYPE");
	expect_failure(range_args, "--input seconds: min <= default <= max");
	ck_assert(!exists(tmp_path("m/worker-x.yaml")));
}
END_TEST

/* Quotes keep a word whole; a placeholder may be part of one. */
START_TEST(new_model_splits_as_a_shell_would)
{
	const char *dir = tmp_path("m");
	const char *args[] = {"new-model", "tone", "--function", "Create Sound", "--dir", dir,
			      "--command",
			      "sox -n \"{output}\" synth 'a b' sine --gain={gain} "
			      "\"x\\\"y\" {{lit}}",
			      "--input", "gain=INT:-10:10", NULL};
	const struct model_exec_value vals[] = {{"gain", "3"}};
	const char *want[] = {"sox", "-n", "/o.wav", "synth", "a b", "sine", "--gain=3",
			      "x\"y", "{lit}", NULL};
	struct err e = {0};
	char **argv = NULL;
	struct run r;

	run_fnrun(&r, args);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	run_free(&r);
	ck_assert_msg(model_exec_load(tmp_path("m/worker-tone.yaml"), &e) == 0, "%s", e.msg);
	ck_assert_str_eq(nodes_find("Tone")->inputs[0].def, "-10");
	ck_assert_int_eq(model_exec_build_argv(nodes_find("Tone"), vals, 1, "/o.wav", &argv, &e),
			 0);
	for (size_t i = 0; want[i] || argv[i]; i++)
		ck_assert_msg(want[i] && argv[i] && strcmp(want[i], argv[i]) == 0,
			      "argv[%zu] is %s, expected %s", i, argv[i], want[i]);
	model_exec_free_argv(argv);
	model_exec_unload();
	nodes_reset();
}
END_TEST

/* A function already there: its params give the types; it is not added again. */
START_TEST(new_model_joins_an_existing_function)
{
	static const char reg_text[] =
		"functions:\n"
		"  Create Sound:\n"
		"    output: audio\n"
		"    params:\n"
		"      note: {type: enum, options: [A4, C5], default: C5}\n"
		"    qualities:\n"
		"      low: {label: Fast, typical_seconds: [1, 2]}\n";
	const char *reg = tmp_path("registry.yaml");
	const char *args[] = {"new-model", "tone", "--function", "Create Sound", "--quality", "low",
			      "--registry", reg, "--command",
			      "sox -n {output} synth 1 sine {note} gain {gain}", "--input",
			      "gain=FLOAT:-5:5:0", NULL};
	const char *no_default[] = {"new-model", "tone2", "--function", "Create Sound",
				    "--quality", "low", "--registry", reg, "--command",
				    "sox -n {output} synth 1 sine {note} gain {gain}", NULL};
	const char *bad_quality[] = {"new-model", "tone3", "--function", "Create Sound",
				     "--quality", "high", "--registry", reg, "--command",
				     "sox -n {output} synth 1 sine {note}", NULL};
	struct err e = {0};
	struct registry *r;
	const struct reg_model *m;
	struct run run;
	char *text;

	ck_assert_int_eq(tu_write_file(reg, reg_text, strlen(reg_text)), 0);
	run_fnrun(&run, args);
	ck_assert_msg(run.status == 0, "exit %d: %s", run.status, run.err);
	run_free(&run);
	text = tu_read_file(reg, NULL);
	ck_assert_ptr_eq(strstr(strstr(text, "Create Sound:") + 1, "Create Sound:"), NULL);
	free(text);
	r = registry_load(reg, &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	m = registry_model(r, "tone");
	ck_assert_uint_eq(m->nbinds, 1); /* gain is no param: it keeps its default */
	ck_assert_str_eq(m->binds[0].param, "note");
	registry_unref(r);
	ck_assert_msg(model_exec_load(tmp_path("worker-tone.yaml"), &e) == 0, "%s", e.msg);
	ck_assert_str_eq(nodes_find("Tone")->inputs[0].type, "COMBO");
	ck_assert_str_eq(nodes_find("Tone")->inputs[0].options[1], "C5");
	ck_assert_str_eq(nodes_find("Tone")->inputs[0].def, "\"C5\"");
	model_exec_unload();
	nodes_reset();
	expect_failure(no_default, "{gain}: Create Sound has no param gain, so it needs a default");
	expect_failure(bad_quality, "--quality high: allowed: low");
	ck_assert(!exists(tmp_path("worker-tone2.yaml")) && !exists(tmp_path("worker-tone3.yaml")));
}
END_TEST

/* A merge that would not load: the registry as it was, and nothing else left. */
START_TEST(new_model_leaves_nothing_when_the_result_would_not_load)
{
	static const char reg_text[] =
		"functions:\n"
		"  F:\n"
		"    params: {}\n"
		"    qualities:\n"
		"      low: {label: L, typical_seconds: [1, 2]}\n"
		"models:\n"
		"  {}\n"; /* valid, but no block entry can follow it */
	const char *reg = tmp_path("registry.yaml");
	const char *args[] = {"new-model", "x", "--function", "F", "--quality", "low", "--registry",
			      reg, "--command", "true {output}", NULL};
	char *text, *names;

	ck_assert_int_eq(tu_write_file(reg, reg_text, strlen(reg_text)), 0);
	ck_assert_int_eq(registry_check(reg, stderr), 0);
	expect_failure(args, "the result would not load (1 error above); nothing written");
	text = tu_read_file(reg, NULL);
	ck_assert_str_eq(text, reg_text);
	names = list_dir(tu_tmpdir());
	ck_assert_str_eq(names, ".stderr\n.stdout\nregistry.yaml\n");
	free(names);
	free(text);
}
END_TEST

/* ---- dry-run ---- */

/* The models and workflows of dry-run's stdout: headers[i] above wfs[i]. */
struct dry {
	char *headers[16];
	struct json_object *wfs[16];
	size_t n;
	char *text; /* the whole output */
};

static void dry_parse(struct dry *d, char *out)
{
	char *p = out;

	memset(d, 0, sizeof *d);
	d->text = xstrdup(out);
	while ((p = strstr(p, "# model ")) != NULL && d->n < 16) {
		char *nl = strchr(p, '\n'), *json = nl + 1, *end;

		while (*json == '#')
			json = strchr(json, '\n') + 1;
		end = strstr(json, "\n# model ");
		d->headers[d->n] = xstrndup(p, (size_t)(nl - p));
		d->wfs[d->n++] = cc_parse(json, end ? (size_t)(end - json) : strlen(json));
		p = end ? end + 1 : json + strlen(json);
	}
}

static void dry_free(struct dry *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->headers[i]);
		json_object_put(d->wfs[i]);
	}
	free(d->text);
}

static struct json_object *wf_input(struct json_object *wf, const char *node, const char *name)
{
	return json_get(json_get_obj(json_get_obj(wf, node), "inputs"), name);
}

START_TEST(dry_run_prints_each_candidate_model)
{
	const char *args[] = {"dry-run", "Create Image", "--quality", "high", "--param",
			      "prompt=a fox at dawn", "--param", "width=640", "--param=seed=7",
			      "--config", DEMO, NULL};
	const char *want[] = {
		"# model create_image_high (quality high, runtime process, weight 100)",
		"# model create_image_standard (quality standard, runtime process, weight 100)",
		"# model create_image_low (quality low, runtime process, weight 100)",
	};
	struct run r;
	struct dry d;

	run_fnrun(&r, args);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	dry_parse(&d, r.out);
	ck_assert_uint_eq(d.n, 3);
	ck_assert_ptr_eq(strstr(d.text, "drawn at random"), NULL);
	ck_assert_ptr_nonnull(strstr(d.text, "# the fallback of create_image_high\n"));
	for (size_t i = 0; i < 3; i++) {
		ck_assert_str_eq(d.headers[i], want[i]);
		ck_assert_str_eq(json_object_get_string(wf_input(d.wfs[i], "1", "text")),
				 "a fox at dawn");
		ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[i], "2", "width")), 640);
		ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[i], "2", "height")), 512);
		ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[i], "2", "seed")), 7);
		ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[i], "2", "steps")), 8);
		ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(
					 wf_input(d.wfs[i], "3", "images"), 0)), "2");
	}
	dry_free(&d);
	run_free(&r);
}
END_TEST

START_TEST(dry_run_prints_the_random_seed_it_drew)
{
	const char *args[] = {"dry-run", "Create Video", "--quality", "low", "--param",
			      "prompt=a boat", "--param", "fps=12", "--config", DEMO, NULL};
	struct run r;
	struct dry d;
	long long seed = -1;
	const char *line;

	run_fnrun(&r, args);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	dry_parse(&d, r.out);
	ck_assert_uint_eq(d.n, 1);
	line = strstr(d.text, "\n# seed: ");
	ck_assert_msg(line && sscanf(line, "\n# seed: %lld, drawn at random", &seed) == 1, "%s",
		      d.text);
	ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[0], "2", "seed")), seed);
	/* One param bound to two inputs. */
	ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[0], "2", "fps")), 12);
	ck_assert_int_eq(json_object_get_int64(wf_input(d.wfs[0], "3", "fps")), 12);
	dry_free(&d);
	run_free(&r);
}
END_TEST

START_TEST(dry_run_refuses_a_bad_param)
{
	const char *range[] = {"dry-run", "Create Image", "--param", "prompt=x", "--param",
			       "width=9999", "--config", DEMO, NULL};
	const char *type[] = {"dry-run", "Create Image", "--param", "width=wide", "--config", DEMO,
			      NULL};
	const char *unknown[] = {"dry-run", "Create Image", "--param", "colour=red", "--config",
				 DEMO, NULL};
	const char *missing[] = {"dry-run", "Create Image", "--config", DEMO, NULL};
	const char *function[] = {"dry-run", "Create Poem", "--config", DEMO, NULL};

	expect_failure(range, "params.width: must be an integer from 256 to 2048");
	expect_failure(type, "--param width: must be an integer, not \"wide\"");
	expect_failure(unknown, "--param colour: Create Image has no such param; its params: "
				"prompt, width, height, seed");
	expect_failure(missing, "params.prompt: is required");
	expect_failure(function, "function: unknown function \"Create Poem\"; available: "
				 "Create Image, Create Speech, Create Video");
}
END_TEST

START_TEST(dry_run_refuses_an_unknown_quality)
{
	const char *args[] = {"dry-run", "Create Speech", "--quality", "ultra", "--param",
			      "text=hi", "--config", DEMO, NULL};

	expect_failure(args, "quality: unknown quality \"ultra\" of Create Speech; allowed: low, "
			     "standard, high");
}
END_TEST

/* ---- end to end, with sox ---- */

/* sox is installed by `make check` (scripts/install-deps): its absence is a failure, not a skip. */
static int need_sox(void)
{
	ck_assert_msg(have("sox"), "sox is not installed: run scripts/install-deps "
				   "(make check does)");
	return 1;
}

/* A RIFF/WAVE file of more than its header. */
static void assert_wav(const char *path)
{
	size_t len = 0;
	char *data = tu_read_file(path, &len);

	ck_assert_msg(data && len > 44 && memcmp(data, "RIFF", 4) == 0 &&
			      memcmp(data + 8, "WAVE", 4) == 0,
		      "%s is not a WAV file (%zu bytes)", path, len);
	free(data);
}

/* new-model's registry served by a real gateway; a job through `fnrun submit`. */
START_TEST(new_model_serves_a_job_end_to_end)
{
	struct gw g = {0};
	char server[64], *line, *save = NULL, *saved = NULL;
	const char *out = tmp_path("results");
	const char *submit[] = {"submit", "Create Sound", "--param", "seconds=0.2", "--param",
				"note=C5", "--out", out, "--server", server, NULL};
	struct run r;

	if (!need_sox())
		return;
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
	write_operator_reg(tmp_path("registry.yaml"));
	new_sound_model(&r, tmp_path("registry.yaml"));
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	run_free(&r);
	gw_start(&g);
	snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
	run_fnrun(&r, submit);
	if (r.status != 0) {
		char *log = gw_log(&g);

		gw_stop(&g, 5000);
		ck_abort_msg("fnrun submit: exit %d: %s\ngateway log:\n%s", r.status, r.err, log);
	}
	for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		saved = util_ends_with(line, ".wav") ? line : saved;
	ck_assert_msg(saved != NULL, "no .wav saved: %s", r.out);
	assert_wav(saved);
	run_free(&r);
	ck_assert_int_eq(gw_stop(&g, 10000) != -1, 1);
}
END_TEST

/* dry-run's workflow, posted as is to the model server, runs. */
START_TEST(dry_run_prompt_runs_on_the_model_server)
{
	const char *reg = tmp_path("registry.yaml");
	const char *dry[] = {"dry-run", "Create Sound", "--param", "seconds=0.3", "--param",
			     "note=C5", "--config", reg, NULL};
	const char *cfg = tmp_path("worker-create_sound.yaml");
	const char *wargs[] = {"--model", "exec", "--config", cfg, NULL};
	struct cc_worker w = {0};
	struct cc_log log = {0};
	struct json_object *body, *hist, *outputs, *file;
	struct tws *t;
	struct run r;
	struct dry d;
	char *id, path[1200];

	if (!need_sox())
		return;
	write_operator_reg(reg);
	new_sound_model(&r, reg);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	run_free(&r);
	run_fnrun(&r, dry);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	dry_parse(&d, r.out);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_double_eq(json_object_get_double(wf_input(d.wfs[0], "1", "seconds")), 0.3);
	cc_start(&w, wargs);
	t = cc_ws_open(w.port, "", "cli-model", NULL);
	body = cc_request(json_object_get(d.wfs[0]), "cli-model");
	id = cc_submit_ok(w.port, body);
	cc_collect(t, id, RUN_MS, &log);
	ck_assert_msg(strstr(cc_log_types(&log), "execution_success"), "%s\n%s", cc_log_types(&log),
		      cc_log_tail(&w));
	snprintf(path, sizeof path, "/history/%s", id);
	hist = cc_get_json(w.port, path);
	outputs = json_get_obj(json_get_obj(hist, id), "outputs");
	file = json_object_array_get_idx(json_get_arr(json_get_obj(outputs, "1"), "audio"), 0);
	ck_assert_ptr_nonnull(file);
	snprintf(path, sizeof path, "%s/%s", w.out, json_get_str(file, "filename"));
	assert_wav(path);
	json_object_put(hist);
	json_object_put(body);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
	dry_free(&d);
	run_free(&r);
}
END_TEST

Suite *suite_cli_model(void)
{
	Suite *s = suite_create("cli_model");
	TCase *tc = tcase_create("new_model");
	TCase *dr = tcase_create("dry_run");
	TCase *e2e = tcase_create("end_to_end");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, new_model_writes_three_files_that_load);
	tcase_add_test(tc, new_model_prints_entries_to_paste);
	tcase_add_test(tc, new_model_refuses_what_needs_a_shell);
	tcase_add_test(tc, new_model_splits_as_a_shell_would);
	tcase_add_test(tc, new_model_joins_an_existing_function);
	tcase_add_test(tc, new_model_leaves_nothing_when_the_result_would_not_load);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(dr, NULL, teardown);
	tcase_set_timeout(dr, 60);
	tcase_add_test(dr, dry_run_prints_each_candidate_model);
	tcase_add_test(dr, dry_run_prints_the_random_seed_it_drew);
	tcase_add_test(dr, dry_run_refuses_a_bad_param);
	tcase_add_test(dr, dry_run_refuses_an_unknown_quality);
	suite_add_tcase(s, dr);
	tcase_add_checked_fixture(e2e, NULL, teardown);
	tcase_set_timeout(e2e, 120);
	tcase_add_test(e2e, new_model_serves_a_job_end_to_end);
	tcase_add_test(e2e, dry_run_prompt_runs_on_the_model_server);
	suite_add_tcase(s, e2e);
	return s;
}

/*
 * main.c - fnrun-worker: a ComfyUI-compatible model server.
 *
 *   fnrun-worker --model sim|exec [--config FILE] [--listen ADDR] [--port N]
 *   fnrun-worker --check FILE
 *
 * It speaks the ComfyUI 0.3.64 HTTP/WebSocket API so that the gateway (or
 * any ComfyUI client) can drive it. `sim` makes real PNG images at a set
 * speed and can be told to fail like a GPU model does; `exec` wraps
 * command-line generators declared in a YAML config.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "model_exec.h"
#include "model_sim.h"
#include "util.h"
#include "worker.h"

extern const char *api_input_dir;

static const char usage[] =
	"usage: fnrun-worker --model sim|exec [--config FILE] [--listen ADDR] [--port N]\n"
	"       fnrun-worker --check FILE\n"
	"  --model sim|exec          sim: simulated image model; exec: wrap commands (--config)\n"
	"  --config FILE             exec: YAML file declaring node classes and commands\n"
	"  --check FILE              validate an exec config (and that each node's program\n"
	"                            can run) without serving: FILE: ok, or each error as\n"
	"                            FILE:LINE:COL: key: what is wrong; exit 0 or 1\n"
	"  --listen [ADDR]           address to bind (default 127.0.0.1; no value: 0.0.0.0)\n"
	"  --port N                  port (default 8188)\n"
	"  --output-directory DIR    where outputs go (default ./output)\n"
	"  --temp-directory DIR      previews (default ./temp; wiped at start)\n"
	"  --input-directory DIR     inputs (default ./input)\n"
	"  --step-ms N               sim: time per sampler step (default 50)\n"
	"  --fail MODE               sim: none|oom|error|crash|hang for every job\n"
	"  --fail-once PATH          sim: --fail applies only while PATH does not exist;\n"
	"                            the first failing job creates it (tests: fail once)\n"
	"  --vram MB                 sim: GPU memory the model holds (default 2048)\n"
	"  --vram-total MB           sim: device total reported (default 24576)\n"
	"  --load-ms N               sim: model load time at start; /health says starting\n"
	"  --max-upload-size MB      largest request body (default 100)\n"
	"  --cache-none              never reuse node outputs between prompts\n"
	"  --log-level LEVEL         error|warn|info|debug (default info)\n";

enum {
	OPT_MODEL = 1, OPT_CONFIG, OPT_LISTEN, OPT_PORT, OPT_OUT, OPT_TEMP, OPT_IN,
	OPT_STEP, OPT_FAIL, OPT_VRAM, OPT_VRAM_TOTAL, OPT_LOAD, OPT_UPLOAD, OPT_CACHE_NONE,
	OPT_LOG, OPT_HELP, OPT_FAIL_ONCE, OPT_CHECK,
};

static const struct option options[] = {
	{"model", required_argument, NULL, OPT_MODEL},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"check", required_argument, NULL, OPT_CHECK},
	{"listen", optional_argument, NULL, OPT_LISTEN},
	{"port", required_argument, NULL, OPT_PORT},
	{"output-directory", required_argument, NULL, OPT_OUT},
	{"temp-directory", required_argument, NULL, OPT_TEMP},
	{"input-directory", required_argument, NULL, OPT_IN},
	{"step-ms", required_argument, NULL, OPT_STEP},
	{"fail", required_argument, NULL, OPT_FAIL},
	{"fail-once", required_argument, NULL, OPT_FAIL_ONCE},
	{"vram", required_argument, NULL, OPT_VRAM},
	{"vram-total", required_argument, NULL, OPT_VRAM_TOTAL},
	{"load-ms", required_argument, NULL, OPT_LOAD},
	{"max-upload-size", required_argument, NULL, OPT_UPLOAD},
	{"cache-none", no_argument, NULL, OPT_CACHE_NONE},
	{"log-level", required_argument, NULL, OPT_LOG},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *model, *config, *listen, *out, *temp, *in;
	const char *check; /* --check FILE: validate the exec config, then exit */
	int port;
	unsigned load_ms;
};

/* A non-negative integer flag within [0, max]; exits with usage otherwise. */
static unsigned long num_arg(const char *name, const char *v, unsigned long max)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || n > max || v[0] == '-') {
		fprintf(stderr, "fnrun-worker: --%s: expected a whole number from 0 to %lu, got \"%s\"\n",
			name, max, v);
		exit(2);
	}
	return n;
}

static void parse_args(int argc, char **argv, struct args *a)
{
	int c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case OPT_MODEL: a->model = optarg; break;
		case OPT_CONFIG: a->config = optarg; break;
		case OPT_CHECK: a->check = optarg; break;
		case OPT_LISTEN:
			/* As ComfyUI's argparse: the address may follow as its own argument. */
			if (optarg == NULL && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			a->listen = optarg ? optarg : "0.0.0.0";
			break;
		case OPT_PORT: a->port = (int)num_arg("port", optarg, 65535); break;
		case OPT_OUT: a->out = optarg; break;
		case OPT_TEMP: a->temp = optarg; break;
		case OPT_IN: a->in = optarg; break;
		case OPT_STEP: worker.settings.step_ms = (unsigned)num_arg("step-ms", optarg, 600000); break;
		case OPT_FAIL: worker.settings.fail_mode = optarg; break;
		case OPT_FAIL_ONCE: worker.fail_once = optarg; break;
		case OPT_VRAM: worker.settings.vram_bytes = num_arg("vram", optarg, 1 << 24) << 20; break;
		case OPT_VRAM_TOTAL: worker.vram_total = num_arg("vram-total", optarg, 1 << 24) << 20; break;
		case OPT_LOAD: a->load_ms = (unsigned)num_arg("load-ms", optarg, 3600000); break;
		case OPT_UPLOAD: worker.max_upload = num_arg("max-upload-size", optarg, 4096) << 20; break;
		case OPT_CACHE_NONE: worker.cache_none = 1; break;
		case OPT_LOG:
			if (log_level_parse(optarg) < 0) {
				fprintf(stderr, "fnrun-worker: --log-level: expected error, warn, info or debug\n");
				exit(2);
			}
			log_init(log_level_parse(optarg), NULL);
			break;
		case OPT_HELP: fputs(usage, stdout); exit(0);
		default: fputs(usage, stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fnrun-worker: unexpected argument \"%s\"\n%s", argv[optind], usage);
		exit(2);
	}
}

static const char *const fail_modes[] = {"none", "oom", "error", "crash", "hang", NULL};

static int check_args(const struct args *a)
{
	int ok = 0;

	if (strcmp(a->model, "sim") != 0 && strcmp(a->model, "exec") != 0) {
		fprintf(stderr, "fnrun-worker: --model: expected sim or exec, got \"%s\"\n", a->model);
		return -1;
	}
	if (strcmp(a->model, "exec") == 0 && a->config == NULL) {
		fprintf(stderr, "fnrun-worker: --model exec needs --config FILE\n");
		return -1;
	}
	for (size_t i = 0; fail_modes[i]; i++)
		ok |= strcmp(worker.settings.fail_mode, fail_modes[i]) == 0;
	if (!ok) {
		fprintf(stderr, "fnrun-worker: --fail: expected none, oom, error, crash or hang\n");
		return -1;
	}
	return 0;
}

/* Creates dir and returns its absolute path (caller frees), or NULL. */
static char *abs_dir(const char *dir)
{
	char buf[PATH_MAX];

	if (util_mkdirs(dir) < 0 || realpath(dir, buf) == NULL) {
		fprintf(stderr, "fnrun-worker: cannot use directory %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	return xstrdup(buf);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	return f->level > 0 ? remove(path) : 0;
}

/* ComfyUI wipes its temp directory at start: previews never outlive a run. */
static void wipe_dir(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void on_loaded(uv_timer_t *t)
{
	worker.state = WORKER_IDLE;
	worker.vram_used = worker.settings.vram_bytes;
	log_info("model loaded model=%s", worker.model);
	worker_kick();
}

static void on_closed(void *arg)
{
	uv_stop(worker.loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
	static int stopping;

	if (stopping++)
		return; /* a second signal while shutting down changes nothing */
	log_info("shutting down signal=%d", signum);
	worker.interrupt = 1;
	run_interrupt(); /* exec: sends SIGTERM to the command's process group */
	http_server_close(worker.http, on_closed, NULL);
}

static int load_model(const struct args *a)
{
	struct err e = {0};

	if (strcmp(a->model, "sim") == 0) {
		model_sim_register();
		return 0;
	}
	if (model_exec_load(a->config, &e) < 0) {
		fprintf(stderr, "fnrun-worker: %s\n", e.msg);
		return -1;
	}
	return 0;
}

/* `--check FILE`: "FILE: ok" and 0, or each error on stderr and 1. */
static int check_config(const char *path)
{
	if (model_exec_check(path, stderr) > 0)
		return 1;
	printf("%s: ok\n", path);
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = {.model = "sim", .listen = "127.0.0.1", .port = 8188,
			 .out = "output", .temp = "temp", .in = "input"};
	struct err e = {0};
	char *out, *temp, *in;

	signal(SIGPIPE, SIG_IGN);
	worker.settings.step_ms = 50;
	worker.settings.fail_mode = "none";
	worker.settings.vram_bytes = (uint64_t)2048 << 20;
	worker.vram_total = (uint64_t)24576 << 20;
	worker.max_upload = (size_t)100 << 20;
	worker.argc = argc;
	worker.argv = argv;
	parse_args(argc, argv, &a);
	if (a.check != NULL)
		return check_config(a.check);
	if (check_args(&a) < 0)
		return 2;
	worker.fail_mode = worker.settings.fail_mode;
	out = abs_dir(a.out);
	temp = abs_dir(a.temp);
	in = abs_dir(a.in);
	if (!out || !temp || !in || load_model(&a) < 0) {
		/* Freed so the sanitizer's leak report does not bury the message above. */
		free(out);
		free(temp);
		free(in);
		return 1;
	}
	wipe_dir(temp);
	worker.settings.output_dir = out;
	worker.settings.temp_dir = temp;
	api_input_dir = in;
	worker.model = a.model;
	worker.loop = uv_default_loop();
	worker.started_ms = util_mono_ms();
	worker.state = a.load_ms ? WORKER_STARTING : WORKER_IDLE;
	worker.vram_used = a.load_ms ? 0 : worker.settings.vram_bytes;
	worker.http = worker_http_start(a.listen, a.port, &e);
	if (worker.http == NULL) {
		fprintf(stderr, "fnrun-worker: cannot listen on %s:%d: %s\n", a.listen, a.port, e.msg);
		return 1;
	}
	log_info("listening model=%s addr=%s port=%d nodes=%zu", a.model, a.listen,
		 http_server_port(worker.http), nodes_count());
	uv_timer_init(worker.loop, &worker.load_timer);
	uv_timer_init(worker.loop, &worker.kick_timer);
	if (a.load_ms)
		uv_timer_start(&worker.load_timer, on_loaded, a.load_ms, 0);
	uv_signal_init(worker.loop, &worker.sigterm);
	uv_signal_init(worker.loop, &worker.sigint);
	uv_signal_start(&worker.sigterm, on_signal, SIGTERM);
	uv_signal_start(&worker.sigint, on_signal, SIGINT);
	uv_run(worker.loop, UV_RUN_DEFAULT);
	return 0;
}

/*
 * main.c - fnrun: the gateway daemon (`fnrun serve`), the registry checker
 * (`fnrun check [--deep] FILE`, check_deep.c), the operator tools
 * (new-model, dry-run: cli_model.c; gpus) and the command-line client
 * (submit, jobs, job, cancel, functions, docs; see cli.c and cli_docs.c).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_deep.h"
#include "cli.h"
#include "cli_admin.h"
#include "cli_keys.h"
#include "cli_model.h"
#include "log.h"
#include "nvml.h"
#include "registry.h"
#include "server.h"
#include "util.h"

static const char serve_usage[] =
	"usage: fnrun serve [--config FILE] [--listen ADDR:PORT] [--data DIR]\n"
	"  --config FILE        registry (default: examples/registry.yaml beside the binary)\n"
	"  --listen ADDR:PORT   default 127.0.0.1:8180 (or the registry's server.listen)\n"
	"  --data DIR           store, outputs and logs (default ./data)\n"
	"  --log-level LEVEL    error|warn|info|debug\n"
	"  --time-scale X       multiply registry timeouts (tests use < 1)\n"
	"  --insecure           serve a non-loopback address without API keys (a trusted network)\n"
	"  --store URL          a PostgreSQL store shared by several nodes (postgres://...;\n"
	"                       also $FNRUN_STORE_URL or server.store; default DATA/fnrun.db)\n"
	"  --node NAME          this node's name (also $FNRUN_NODE or server.node; default\n"
	"                       the host name)\n";

static int split_listen(const char *v, char **host, int *port)
{
	const char *colon = strrchr(v, ':');
	char *end;
	long p;

	if (colon == NULL || colon == v)
		return -1;
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535)
		return -1;
	free(*host);
	/* An IPv6 address comes in brackets ("[::1]:8180"); the socket wants it bare. */
	if (v[0] == '[' && colon[-1] == ']' && colon - v > 2)
		*host = xstrndup(v + 1, (size_t)(colon - v - 2));
	else
		*host = xstrndup(v, (size_t)(colon - v));
	*port = (int)p;
	return 0;
}

static int log_level_set; /* --log-level was given: it wins over server.log_level */

/* Registry server: section first, then flags over it. */
/* The first of flag, $env, the registry's value that is set; NULL when none. */
static const char *first_of(const char *flag, const char *env, const char *reg)
{
	const char *e = getenv(env);

	return flag ? flag : e && *e ? e : reg;
}

/* --store, --node and the lease: flag, then environment, then registry. */
static int apply_cluster(const struct reg_server *s, const char *store_flag, const char *node_flag)
{
	const char *store = first_of(store_flag, "FNRUN_STORE_URL", s->store);
	const char *node = first_of(node_flag, "FNRUN_NODE", s->node);
	char host[256];

	if (store && strncmp(store, "postgres://", 11) != 0 &&
	    strncmp(store, "postgresql://", 13) != 0) {
		fprintf(stderr, "fnrun: --store: expected a postgres:// URL, got \"%s\"\n", store);
		return -1;
	}
	if (node == NULL) {
		if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
		host[strcspn(host, ".")] = '\0';
		node = host;
	}
	if (!registry_node_name_ok(node)) {
		fprintf(stderr, "fnrun: --node: \"%s\": 1 to 64 letters, digits, '.', '_' or '-'\n",
			node);
		return -1;
	}
	server.cfg.store_url = store ? xstrdup(store) : NULL;
	server.cfg.node = xstrdup(node);
	server.cfg.lease_ms = s->lease_ms;
	return 0;
}

static int apply_registry_defaults(const char *listen_flag, const char *data_flag,
				   const char *store_flag, const char *node_flag)
{
	struct err e = {0};
	struct registry *r = registry_load(server.cfg.config_path, &e);
	const struct reg_server *s;
	const char *listen, *data;

	if (r == NULL) {
		fprintf(stderr, "fnrun: %s\n", e.msg);
		return -1;
	}
	s = registry_server(r);
	listen = listen_flag ? listen_flag : s->listen;
	data = data_flag ? data_flag : s->data;
	server.cfg.max_queue = s->max_queue;
	server.cfg.max_body = s->max_body;
	server.cfg.max_json_depth = (int)s->max_json_depth;
	server.cfg.max_watchers = s->max_watchers;
	if (apply_cluster(s, store_flag, node_flag) < 0) {
		registry_free(r);
		return -1;
	}
	if (!log_level_set)
		log_init(s->log_level, NULL);
	if (listen && split_listen(listen, &server.cfg.listen_host, &server.cfg.listen_port) < 0) {
		fprintf(stderr, "fnrun: --listen: expected ADDR:PORT, got \"%s\"\n", listen);
		registry_free(r);
		return -1;
	}
	if (util_mkdirs(data ? data : "data") < 0 ||
	    (server.cfg.data_dir = realpath(data ? data : "data", NULL)) == NULL) {
		fprintf(stderr, "fnrun: --data: cannot use %s: %s\n", data, strerror(errno));
		registry_free(r);
		return -1;
	}
	registry_free(r);
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
		{"data", required_argument, NULL, 'd'},   {"log-level", required_argument, NULL, 'v'},
		{"time-scale", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
		{"insecure", no_argument, NULL, 'i'},
		{"store", required_argument, NULL, 's'}, {"node", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	const char *listen = NULL, *data = NULL, *store = NULL, *node = NULL;
	int c;

	server.cfg.bindir = util_exe_dir();
	server.cfg.listen_host = xstrdup("127.0.0.1");
	server.cfg.listen_port = 8180;
	server.cfg.stop_grace_ms = 5000;
	server.cfg.max_attempts = 3;
	server.cfg.time_scale = 1.0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': server.cfg.config_path = realpath(optarg, NULL);
			if (server.cfg.config_path == NULL) {
				fprintf(stderr, "fnrun: --config: %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			break;
		case 'l': listen = optarg; break;
		case 'd': data = optarg; break;
		case 'v':
			if (log_level_parse(optarg) < 0) {
				fprintf(stderr, "fnrun: --log-level: expected error, warn, info or debug\n");
				return 2;
			}
			log_init(log_level_parse(optarg), NULL);
			log_level_set = 1;
			break;
		case 't': server.cfg.time_scale = atof(optarg);
			if (server.cfg.time_scale <= 0) {
				fprintf(stderr, "fnrun: --time-scale: expected a number above 0\n");
				return 2;
			}
			break;
		case 'i': server.cfg.insecure = 1; break;
		case 's': store = optarg; break;
		case 'n': node = optarg; break;
		case 'h': fputs(serve_usage, stdout); return 0;
		default: fputs(serve_usage, stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fnrun serve: unexpected argument \"%s\" (the registry is given with --config FILE)\n",
			argv[optind]);
		fputs(serve_usage, stderr);
		return 2;
	}
	if (server.cfg.config_path == NULL)
		server.cfg.config_path = registry_default_path();
	if (apply_registry_defaults(listen, data, store, node) < 0)
		return 1;
	return server_run();
}

static const char check_usage[] =
	"usage: fnrun check [--deep] FILE\n"
	"  checks a registry: every error as FILE:LINE:COL: key: what is wrong; what is allowed\n"
	"  --deep   also start each model server once (or read its exec config) and check\n"
	"           bind paths, param types and ranges, class types, binaries and config files\n"
	"           against what the model server says it accepts (/object_info)\n";

static int cmd_check(int argc, char **argv)
{
	int n, deep = 0;
	const char *file = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--deep") == 0)
			deep = 1;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return fputs(check_usage, stdout), 0;
		else if (argv[i][0] == '-' || file != NULL)
			return fputs(check_usage, stderr), 2;
		else
			file = argv[i];
	}
	if (file == NULL)
		return fputs(check_usage, stderr), 2;
	n = deep ? check_deep(file, stderr) : registry_check(file, stderr);
	if (n == 0)
		printf("%s: ok\n", file);
	return n == 0 ? 0 : 1;
}

/* Every subcommand, one line each: `fnrun --help` and a bad command. */
static void usage(FILE *out)
{
	fputs("usage: fnrun COMMAND [ARGS]   (fnrun COMMAND --help for its options)\n\n"
	      "Run the gateway:\n"
	      "       fnrun serve [--config FILE] [--listen ADDR:PORT] [--data DIR]\n\n"
	      "Operators:\n"
	      "       fnrun check [--deep] FILE\n"
	      "       fnrun new-model ID --function NAME --command 'CMD {param}...' [...]\n"
	      "       fnrun dry-run FUNCTION [--quality Q] [--param NAME=VALUE]... [--config FILE]\n"
	      "       fnrun keys create --scope user|operator [--name N] | list | revoke ID|NAME\n"
	      "       fnrun admin models|runners|keys|status|events | start|stop|drain|promote|rollback ID\n"
	      "                   | weight ID N   (the operator API; key in $FNRUN_KEY)\n"
	      "       fnrun gpus\n\n"
	      "Users (talk to a running server):\n", out);
	cli_usage(out);
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "gpus") == 0)
		return cli_gpus(argc - 1, argv + 1);
	if (strcmp(argv[1], "admin") == 0)
		return cli_admin(argc - 1, argv + 1);
	if (strcmp(argv[1], "keys") == 0)
		return cli_keys(argc - 1, argv + 1);
	if (strcmp(argv[1], "new-model") == 0)
		return cli_new_model(argc - 1, argv + 1);
	if (strcmp(argv[1], "dry-run") == 0)
		return cli_dry_run(argc - 1, argv + 1);
	rc = cli_main(argc, argv);
	if (rc == -1) {
		fprintf(stderr, "fnrun: unknown command \"%s\"\n", argv[1]);
		usage(stderr);
		return 2;
	}
	return rc;
}

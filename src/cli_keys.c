/*
 * cli_keys.c - `fnrun keys create|list|revoke`: API keys in the key file
 * (keys.db) of a data directory, found as `fnrun serve` finds it (--data
 * DIR, else the registry's server.data from --config FILE, else ./data).
 * Works while the gateway runs (it sees a change within a second) or not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_keys.h"
#include "registry.h"
#include "store_keys.h"
#include "util.h"

static const char usage[] =
	"usage: fnrun keys create --scope user|operator [--name NAME] [--data DIR | --config FILE]\n"
	"       fnrun keys list [--data DIR | --config FILE]\n"
	"       fnrun keys revoke ID|NAME [--data DIR | --config FILE]\n"
	"  create prints the new key once, on standard output; the store keeps only its hash.\n"
	"  A user key sees and cancels its own jobs; an operator key also reaches /api/admin,\n"
	"  /admin and /metrics. Send it as `Authorization: Bearer KEY`.\n";

struct opts {
	const char *scope, *name, *data, *config, *target;
};

static int parse(int argc, char **argv, struct opts *o)
{
	for (int i = 2; i < argc; i++) {
		const char **slot = NULL;
		if (strcmp(argv[i], "--scope") == 0)
			slot = &o->scope;
		else if (strcmp(argv[i], "--name") == 0)
			slot = &o->name;
		else if (strcmp(argv[i], "--data") == 0)
			slot = &o->data;
		else if (strcmp(argv[i], "--config") == 0)
			slot = &o->config;
		if (slot) {
			if (i + 1 >= argc) {
				fprintf(stderr, "fnrun keys: %s needs a value\n", argv[i]);
				return -1;
			}
			*slot = argv[++i];
		} else if (argv[i][0] != '-' && o->target == NULL) {
			o->target = argv[i];
		} else {
			fprintf(stderr, "fnrun keys: unexpected argument \"%s\"\n", argv[i]);
			return -1;
		}
	}
	return 0;
}

/* The key file of the data directory the options name; NULL after saying why. */
static struct keystore *open_store(const struct opts *o)
{
	struct err e = {0};
	struct registry *r = NULL;
	struct keystore *s;
	char path[4096];
	const char *data = o->data;

	if (data == NULL && o->config) {
		r = registry_load(o->config, &e);
		if (r == NULL) {
			fprintf(stderr, "fnrun keys: %s\n", e.msg);
			return NULL;
		}
		data = registry_server(r)->data;
	}
	snprintf(path, sizeof path, "%s", data ? data : "data");
	registry_free(r);
	if (util_mkdirs(path) < 0) {
		fprintf(stderr, "fnrun keys: cannot make the data directory %s\n", path);
		return NULL;
	}
	strncat(path, "/keys.db", sizeof path - strlen(path) - 1);
	s = keystore_open(path, &e);
	if (s == NULL)
		fprintf(stderr, "fnrun keys: %s\n", e.msg);
	return s;
}

static void when(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int create(struct keystore *s, const struct opts *o)
{
	char text[KEY_TEXT_LEN + 1], name[80];
	struct key_row row;
	struct err e = {0};
	int scope = key_scope_parse(o->scope);

	if (scope < 0) {
		fprintf(stderr, "fnrun keys create: --scope: expected user or operator\n");
		return 2;
	}
	if (o->name == NULL) {
		unsigned char r[3];
		util_random(r, sizeof r);
		snprintf(name, sizeof name, "%s-%02x%02x%02x", o->scope, r[0], r[1], r[2]);
	}
	if (store_key_create(s, o->name ? o->name : name, scope, text, &row, &e) < 0) {
		fprintf(stderr, "fnrun keys create: %s\n", e.msg);
		return 1;
	}
	printf("%s\n", text);
	fprintf(stderr, "made %s key \"%s\" (id %s); it is shown only this once\n", o->scope, row.name,
		row.id);
	return 0;
}

static int list(struct keystore *s)
{
	struct key_row *v;
	size_t n;
	struct err e = {0};

	if (store_key_list(s, &v, &n, &e) < 0) {
		fprintf(stderr, "fnrun keys list: %s\n", e.msg);
		return 1;
	}
	printf("%-16s  %-24s  %-8s  %-20s  %s\n", "ID", "NAME", "SCOPE", "CREATED", "REVOKED");
	for (size_t i = 0; i < n; i++) {
		char c[32], r[32] = "-";
		when(v[i].created_at, c, sizeof c);
		if (v[i].revoked_at)
			when(v[i].revoked_at, r, sizeof r);
		printf("%-16s  %-24s  %-8s  %-20s  %s\n", v[i].id, v[i].name,
		       key_scope_name(v[i].scope), c, r);
	}
	free(v);
	return 0;
}

int cli_keys(int argc, char **argv)
{
	struct opts o = {0};
	struct keystore *s;
	struct err e = {0};
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (parse(argc, argv, &o) < 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "list") != 0 &&
	    strcmp(argv[1], "revoke") != 0) {
		fprintf(stderr, "fnrun keys: unknown action \"%s\"\n", argv[1]);
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "revoke") == 0 && o.target == NULL) {
		fputs("fnrun keys revoke: which key? give its ID or NAME\n", stderr);
		return 2;
	}
	s = open_store(&o);
	if (s == NULL)
		return 1;
	if (strcmp(argv[1], "create") == 0) {
		rc = create(s, &o);
	} else if (strcmp(argv[1], "list") == 0) {
		rc = list(s);
	} else {
		rc = store_key_revoke(s, o.target, &e) == 0 ? 0 : 1;
		if (rc == 0)
			printf("revoked %s\n", o.target);
		else
			fprintf(stderr, "fnrun keys revoke: %s\n", e.msg);
	}
	keystore_close(s);
	return rc;
}

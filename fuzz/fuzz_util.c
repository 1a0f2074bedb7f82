/*
 * fuzz_util.c - helpers shared by the fuzz targets (fuzz_util.h).
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "log.h"

static char tmpdir[256];

static void rm_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
		if (unlink(path) != 0 && rmdir(path) != 0)
			continue; /* a subdirectory with files: the harness cleans its own */
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir[0])
		return tmpdir;
	snprintf(tmpdir, sizeof tmpdir, "%s/fnrun-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		fuzz_fail("mkdtemp");
	atexit(rm_tmpdir);
	return tmpdir;
}

void fuzz_write(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		fuzz_fail(path);
}

void fuzz_quiet(void)
{
	FILE *null = fopen("/dev/null", "w");

	if (null == NULL)
		fuzz_fail("/dev/null");
	log_init(LOG_DEBUG, null);
	signal(SIGPIPE, SIG_IGN);
}

void fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz: %s\n", what);
	abort();
}

/*
 * outputs.c - the output store's layout (outputs.h): public names to
 * paths on disk, with the two-character shard directories made once.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outputs.h"

/* The shard of a job: its id's first two characters when they are safe, else "__". */
static void shard_of(const char *job_id, char s[3])
{
	int ok = strlen(job_id) >= 2;

	for (int i = 0; ok && i < 2; i++)
		ok = (job_id[i] >= '0' && job_id[i] <= '9') || (job_id[i] >= 'a' && job_id[i] <= 'z');
	s[0] = ok ? job_id[0] : '_';
	s[1] = ok ? job_id[1] : '_';
	s[2] = '\0';
}

/*
 * The shards known to exist under the last root used (one bit each), so
 * that a job costs no mkdir at all once its shard is there.
 */
static struct {
	char root[PATH_MAX];
	unsigned char made[256 * 256 / 8];
} known;

static unsigned shard_bit(const char s[3])
{
	return (unsigned)(unsigned char)s[0] << 8 | (unsigned char)s[1];
}

static int shard_known(const char *root, const char s[3])
{
	unsigned b = shard_bit(s);

	return strcmp(known.root, root) == 0 && (known.made[b >> 3] & (1u << (b & 7)));
}

static void shard_note(const char *root, const char s[3])
{
	unsigned b = shard_bit(s);

	if (strcmp(known.root, root) != 0) {
		memset(&known, 0, sizeof known);
		snprintf(known.root, sizeof known.root, "%s", root);
	}
	known.made[b >> 3] |= (unsigned char)(1u << (b & 7));
}

int outputs_write_path(const char *root, const char *job_id, const char *file, char *out, size_t n,
		       struct err *err)
{
	char s[3], dir[PATH_MAX];

	if (strchr(job_id, '/') || strchr(file, '/') || file[0] == '\0') {
		err_set(err, ERR_INVALID, "output name %s/%s: no '/' allowed", job_id, file);
		return -1;
	}
	shard_of(job_id, s);
	if (snprintf(dir, sizeof dir, "%s/%s", root, s) >= (int)sizeof dir ||
	    snprintf(out, n, "%s/%s-%s", dir, job_id, file) >= (int)n) {
		err_set(err, ERR_INVALID, "output name %s/%s: too long", job_id, file);
		return -1;
	}
	if (shard_known(root, s))
		return 0;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		err_set(err, ERR_IO, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	shard_note(root, s);
	return 0;
}

void outputs_stem(char *out, size_t n, const char *function, const char *job_id)
{
	size_t o = 0;
	int dash = 0;

	if (n == 0)
		return;
	for (const char *p = function; *p && o + 10 < n; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			out[o++] = (char)c;
		} else if (c >= 'A' && c <= 'Z') {
			out[o++] = (char)(c - 'A' + 'a');
		} else {
			if (o > 0 && !dash)
				out[o++] = '-';
			dash = 1;
			continue;
		}
		dash = 0;
	}
	if (o > 0 && out[o - 1] == '-')
		o--;
	snprintf(out + o, n - o, "%s%.8s", o ? "-" : "job-", job_id);
}

void outputs_name(char *out, size_t n, const char *stem, size_t i, const char *server_name)
{
	const char *dot = strrchr(server_name, '.');
	char ext[9] = "";
	size_t e = 0;

	for (const char *p = dot ? dot + 1 : ""; *p && e < sizeof ext - 1; p++) {
		unsigned char c = (unsigned char)*p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
			e = 0;
			break;
		}
		ext[e++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	if (dot && dot[1 + e] != '\0')
		e = 0; /* longer than 8, or odd bytes: not an extension we repeat */
	ext[e] = '\0';
	if (i == 0)
		snprintf(out, n, "%s.%s", stem, e ? ext : "bin");
	else
		snprintf(out, n, "%s-%zu.%s", stem, i + 1, e ? ext : "bin");
}

int outputs_rel_ok(const char *rel)
{
	const char *p = rel;

	if (rel[0] == '\0' || rel[0] == '/')
		return 0;
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += n;
		if (*p == '/')
			p++;
		if (*p == '\0' && p[-1] == '/')
			return 0; /* a trailing slash names a directory */
	}
	return 1;
}

/* The resolved regular file under root, or -1. */
static int inside(const char *root, const char *full, char *out, size_t n)
{
	char rroot[PATH_MAX], rfull[PATH_MAX];
	struct stat st;
	size_t rn;

	if (realpath(root, rroot) == NULL || realpath(full, rfull) == NULL ||
	    stat(rfull, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	rn = strlen(rroot);
	/* A symlink may point anywhere: the resolved path must stay inside. */
	if (strncmp(rfull, rroot, rn) != 0 || rfull[rn] != '/' || strlen(rfull) >= n)
		return -1;
	memcpy(out, rfull, strlen(rfull) + 1);
	return 0;
}

int outputs_resolve(const char *root, const char *rel, char *out, size_t n, struct err *err)
{
	char full[PATH_MAX], job[256], s[3];
	const char *file;
	size_t jn;

	if (!outputs_rel_ok(rel)) {
		err_set(err, ERR_INVALID, "path: must be JOB_ID/FILE, without '..' or '/' at the start");
		return -1;
	}
	file = strchr(rel, '/');
	if (file == NULL || strchr(file + 1, '/')) {
		err_set(err, ERR_NOT_FOUND, "no such output"); /* not JOB/FILE: nothing there */
		return -1;
	}
	file++;
	jn = (size_t)(file - 1 - rel);
	if (jn >= sizeof job || strlen(root) + strlen(rel) + 8 >= sizeof full) {
		err_set(err, ERR_INVALID, "path: too long");
		return -1;
	}
	memcpy(job, rel, jn);
	job[jn] = '\0';
	shard_of(job, s);
	snprintf(full, sizeof full, "%s/%s/%s-%s", root, s, job, file);
	if (inside(root, full, out, n) == 0)
		return 0;
	snprintf(full, sizeof full, "%s/%s", root, rel); /* the earlier layout */
	if (inside(root, full, out, n) == 0)
		return 0;
	err_set(err, ERR_NOT_FOUND, "no such output");
	return -1;
}

size_t outputs_sweep_temp(const char *root, int64_t before)
{
	DIR *top = opendir(root), *d;
	struct dirent *s, *f;
	char path[PATH_MAX];
	struct stat st;
	size_t removed = 0;

	if (top == NULL)
		return 0;
	while ((s = readdir(top)) != NULL) {
		if (s->d_name[0] == '.' || strlen(s->d_name) != 2)
			continue; /* shards are two characters */
		snprintf(path, sizeof path, "%s/%s", root, s->d_name);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((f = readdir(d)) != NULL) {
			/* Outputs are "<job id>-<name>"; only temporary files start with a dot. */
			if (f->d_name[0] != '.' || strcmp(f->d_name, ".") == 0 ||
			    strcmp(f->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof path, "%s/%s/%s", root, s->d_name, f->d_name);
			if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime < before &&
			    unlink(path) == 0)
				removed++;
		}
		closedir(d);
	}
	closedir(top);
	return removed;
}

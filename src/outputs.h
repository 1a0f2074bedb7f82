/*
 * outputs.h - the output store: the result files of jobs, under the data
 * directory's outputs/, where they outlive the model servers that made
 * them.
 *
 * A file's public name is "<job id>/<file>" (the URL /api/outputs/<job
 * id>/<file>). On disk it is
 *
 *   <root>/<s>/<job id>-<file>    s: the job id's first two characters
 *
 * so the store has at most 256 directories, each made once, and a job
 * costs its files only (a directory per job was the largest filesystem
 * cost of a job). Files of the earlier layout, <root>/<job id>/<file>,
 * are still found.
 */
#ifndef FNRUN_OUTPUTS_H
#define FNRUN_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/*
 * Where the file `file` of job job_id is written, into out (n bytes); its
 * directory is made if missing. Returns 0, or -1 with err (ERR_IO when the
 * directory cannot be made, ERR_INVALID for a name with '/' or too long).
 */
int outputs_write_path(const char *root, const char *job_id, const char *file, char *out, size_t n,
		       struct err *err);

/*
 * The stem of a job's output file names, into out (n bytes): the function
 * in lower case with '-' between words, and the job id's first 8 digits
 * ("create-image-3f2a9c1d"). What a user downloads names what they asked
 * for, never the model that made it.
 */
void outputs_stem(char *out, size_t n, const char *function, const char *job_id);

/*
 * The name of a job's output i, into out (n bytes): the stem, "-<i+1>"
 * after the first, and the extension of the model server's own name
 * (letters and digits, at most 8; "bin" when it has none).
 */
void outputs_name(char *out, size_t n, const char *stem, size_t i, const char *server_name);

/*
 * Removes the temporary files (hidden: ".thumb-...", ".poster....") that
 * a process killed while writing left in root's shard directories, those
 * last changed before `before` (seconds since the epoch): a file being
 * written now is left alone. Returns how many were removed. Blocking: run
 * it on the thread pool.
 */
size_t outputs_sweep_temp(const char *root, int64_t before);

/*
 * 1 for a relative path whose parts are neither empty nor "." nor "..":
 * one that stays inside the directory it is taken in.
 */
int outputs_rel_ok(const char *rel);

/*
 * Resolves a public name rel ("<job id>/<file>") under root into out (an
 * absolute path with no symlink left). Fails with ERR_INVALID for an empty,
 * absolute or dotted ("..", ".", "//") name or one that is not JOB/FILE,
 * and ERR_NOT_FOUND when no such regular file is there or it resolves
 * outside root.
 */
int outputs_resolve(const char *root, const char *rel, char *out, size_t n, struct err *err);

#endif

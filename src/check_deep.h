/*
 * check_deep.h - `fnrun check --deep FILE`: everything `fnrun check` does,
 * plus the checks that need each model's own description of its nodes.
 */
#ifndef FNRUN_CHECK_DEEP_H
#define FNRUN_CHECK_DEEP_H

#include <stdio.h>

/*
 * Checks the registry at path deeply and writes every finding, one per
 * line as "FILE:LINE:COL: path.to.key: what is wrong; what is allowed",
 * to out. Returns the number of errors; 0 means valid.
 */
int check_deep(const char *path, FILE *out);

#endif

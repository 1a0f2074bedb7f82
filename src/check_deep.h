/*
 * check_deep.h - `fnrun check --deep FILE`: everything `fnrun check` does,
 * plus the checks that need each model's own description of its nodes
 * (check_deep.c; check_deep_server.c starts or asks the model servers,
 * check_deep_nodes.c compares their node classes with the registry).
 */
#ifndef FNRUN_CHECK_DEEP_H
#define FNRUN_CHECK_DEEP_H

#include <stdio.h>

/*
 * Checks the registry at path deeply and writes every finding, one per
 * line as "FILE:LINE:COL: path.to.key: what is wrong; what is allowed",
 * to out (NULL: none written), in file order. When the registry does not
 * load, its errors are written as registry_check() writes them and no
 * model server starts. A docker model gets a note line ("models.ID: not
 * started (docker): checked against the registry only") that is not an
 * error. Every model server started is stopped before this returns.
 * Returns the number of errors; 0 means valid.
 */
int check_deep(const char *path, FILE *out);

#endif

/*
 * check_deep.c - `fnrun check --deep FILE` (check_deep.h).
 */
#include "check_deep.h"
#include "registry.h"

int check_deep(const char *path, FILE *out)
{
	return registry_check(path, out);
}

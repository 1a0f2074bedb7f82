/*
 * cli_model.c - `fnrun new-model` and `fnrun dry-run` (cli_model.h).
 */
#include <stdio.h>

#include "cli_model.h"

int cli_new_model(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("fnrun new-model: not yet\n", stderr);
	return 2;
}

int cli_dry_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("fnrun dry-run: not yet\n", stderr);
	return 2;
}

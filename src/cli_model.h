/*
 * cli_model.h - operator commands that need no running server:
 * `fnrun new-model` (scaffolds a model from a command line) and
 * `fnrun dry-run` (prints the workflow each candidate model would get).
 */
#ifndef FNRUN_CLI_MODEL_H
#define FNRUN_CLI_MODEL_H

/* argv[0] is the subcommand's name. Return the process exit status. */
int cli_new_model(int argc, char **argv);
int cli_dry_run(int argc, char **argv);

#endif

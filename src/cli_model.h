/*
 * cli_model.h - operator commands that need no running server:
 * `fnrun new-model` (scaffolds a model from a command line) and
 * `fnrun dry-run` (prints the workflow each candidate model would get).
 *
 * Exit statuses: 0 done, 1 failed (what and why on stderr), 2 usage.
 */
#ifndef FNRUN_CLI_MODEL_H
#define FNRUN_CLI_MODEL_H

/*
 * `fnrun new-model ID --function NAME --command 'PROGRAM ... {output} {x}'
 * [--input NAME=TYPE[:...]]... [--output KIND] [--ext EXT] [--quality Q]
 * [--dir DIR] [--registry FILE]`: writes DIR/worker-ID.yaml (an exec
 * config for fnrun-worker, one node class) and DIR/workflows/ID.json (one
 * node of that class), then the registry entries (the model, and the
 * function when the registry lacks it): printed to stdout to paste, or
 * merged into FILE. Never overwrites a file; the result is checked as
 * `fnrun check` checks it. argv[0] is the subcommand's name.
 */
int cli_new_model(int argc, char **argv);

/*
 * `fnrun dry-run FUNCTION [--quality Q] [--param NAME=VALUE]... [--config
 * FILE]`: validates the params as POST /api/generate does, then prints to
 * stdout, for each model that could run the job (the quality's models in
 * file order, then their fallback chains), a line "# model ID (quality Q,
 * runtime R, weight W)" and the workflow it would get as the `prompt` of
 * POST /prompt, as indented JSON. argv[0] is the subcommand's name.
 */
int cli_dry_run(int argc, char **argv);

#endif

/*
 * cli_keys.h - `fnrun keys create|list|revoke` (cli_keys.c).
 */
#ifndef FNRUN_CLI_KEYS_H
#define FNRUN_CLI_KEYS_H

/* argv[0] is "keys". Returns the exit status. */
int cli_keys(int argc, char **argv);

#endif

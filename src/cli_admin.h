/*
 * cli_admin.h - `fnrun admin` (cli_admin.c).
 */
#ifndef FNRUN_CLI_ADMIN_H
#define FNRUN_CLI_ADMIN_H

/* argv[0] is "admin". Returns the exit status. */
int cli_admin(int argc, char **argv);

#endif

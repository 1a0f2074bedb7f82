/*
 * cli_docs.h - `fnrun docs` (cli_docs.c): reference pages for users and
 * operators, written from a running gateway.
 */
#ifndef FNRUN_CLI_DOCS_H
#define FNRUN_CLI_DOCS_H

/* argv[0] is "docs". Returns the exit status (0, 1 failed, 2 usage). */
int cli_docs(int argc, char **argv);

#endif

/*
 * pgtest.h - a private PostgreSQL server for the tests: Debian's
 * postgresql-15 binaries, a cluster made by initdb in a temp dir, listening
 * on a Unix socket in that dir only (no TCP port), stopped and removed at
 * the end. As root, the server runs as the `postgres` user (PostgreSQL
 * refuses root). It is killed with the process that started it
 * (PR_SET_PDEATHSIG), so no test leaves it running.
 *
 * Use it from a Check unchecked fixture (started once per TCase, in the
 * parent) and give each test its own database (pg_test_db).
 */
#ifndef FNRUN_PGTEST_H
#define FNRUN_PGTEST_H

#include <sys/types.h>

struct pgtest {
	char dir[256];  /* the cluster and its socket */
	pid_t pid;      /* the postmaster */
};

/* Starts a server; aborts the test with the reason when it cannot. */
void pg_start(struct pgtest *p);
/* Stops it (fast shutdown, then SIGKILL) and removes its dir. */
void pg_stop(struct pgtest *p);
/* Kills the postmaster with SIGKILL, then starts it again on the same cluster. */
void pg_restart(struct pgtest *p);
/*
 * Creates a new, empty database and writes its URL
 * (postgresql://fnrun@/NAME?host=DIR) into url.
 */
void pg_test_db(const struct pgtest *p, char *url, size_t n);
/* 1 when the PostgreSQL server binaries are installed. */
int pg_available(void);

#endif

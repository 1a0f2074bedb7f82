/*
 * pgtest.c - a private PostgreSQL server for the tests (pgtest.h).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgtest.h"
#include "testutil.h"

#define PG_START_MS 30000

/* The newest installed server's bin dir, e.g. /usr/lib/postgresql/15/bin. */
static const char *bindir(void)
{
	static char dir[256];
	glob_t g;

	if (dir[0])
		return dir;
	if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0)
		return NULL;
	snprintf(dir, sizeof dir, "%s", g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	*strrchr(dir, '/') = '\0';
	return dir;
}

int pg_available(void)
{
	return bindir() != NULL;
}

/* As root, become `postgres` (PostgreSQL will not run as root). */
static void drop_root(void)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	pw = getpwnam("postgres");
	if (pw == NULL || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		fprintf(stderr, "pgtest: cannot become the postgres user\n");
		_exit(126);
	}
}

/* Runs argv (as postgres when root) with output to log; its exit status. */
static int run_as_pg(char *const argv[], const char *log)
{
	pid_t pid = fork();
	int status = -1;

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		drop_root();
		execv(argv[0], argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return status;
}

static void conninfo(const struct pgtest *p, const char *db, char *out, size_t n)
{
	snprintf(out, n, "host=%s user=fnrun dbname=%s connect_timeout=5", p->dir, db);
}

/* Starts the postmaster on p->dir and waits until it accepts connections. */
static void launch(struct pgtest *p)
{
	char postgres[300], log[300], info[400];
	int64_t deadline;

	snprintf(postgres, sizeof postgres, "%s/postgres", bindir());
	snprintf(log, sizeof log, "%s/server.log", p->dir);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		char *argv[] = {postgres, "-D", p->dir, "-k", p->dir, "-c", "listen_addresses=",
				"-c", "fsync=off", "-c", "full_page_writes=off",
				"-c", "synchronous_commit=off", "-c", "max_connections=200", NULL};
		setpgid(0, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		drop_root();
		/* After setuid, which clears it: the server dies with whoever started it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(postgres, argv);
		_exit(127);
	}
	conninfo(p, "postgres", info, sizeof info);
	deadline = tu_now_ms() + PG_START_MS;
	while (PQping(info) != PQPING_OK) {
		int status;
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			char *text = tu_read_file(log, NULL);
			p->pid = 0;
			ck_abort_msg("PostgreSQL exited at start: %s", text ? text : "");
		}
		ck_assert_msg(tu_now_ms() < deadline, "PostgreSQL did not start in %d ms", PG_START_MS);
		usleep(20000); /* polling a socket that does not exist yet */
	}
}

void pg_start(struct pgtest *p)
{
	char initdb[300], log[300];
	struct passwd *pw = getpwnam("postgres");
	int status;

	memset(p, 0, sizeof *p);
	ck_assert_msg(bindir() != NULL, "PostgreSQL is not installed (postgresql-15)");
	snprintf(p->dir, sizeof p->dir, "/tmp/fnrun-pg-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(p->dir));
	if (geteuid() == 0) {
		ck_assert_msg(pw != NULL, "no postgres user (is postgresql-15 installed?)");
		ck_assert_int_eq(chown(p->dir, pw->pw_uid, pw->pw_gid), 0);
	}
	snprintf(initdb, sizeof initdb, "%s/initdb", bindir());
	snprintf(log, sizeof log, "%s.initdb.log", p->dir);
	{
		char *argv[] = {initdb, "-D", p->dir, "-U", "fnrun", "-A", "trust", "-E", "UTF8",
				"--locale=C", "--no-sync", NULL};
		status = run_as_pg(argv, log);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = tu_read_file(log, NULL);
		ck_abort_msg("initdb failed: %s", text ? text : "");
	}
	unlink(log);
	launch(p);
}

static void halt(struct pgtest *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGINT); /* fast shutdown */
	if (tu_wait_exit(p->pid, 10000) == -1) {
		kill(-p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	p->pid = 0;
}

void pg_stop(struct pgtest *p)
{
	halt(p);
	if (p->dir[0])
		tu_rmrf(p->dir);
	p->dir[0] = '\0';
}

void pg_restart(struct pgtest *p)
{
	halt(p);
	launch(p);
}

void pg_test_db(const struct pgtest *p, char *url, size_t n)
{
	static int count;
	char info[400], sql[96], name[64];
	PGconn *c;
	PGresult *r;

	snprintf(name, sizeof name, "t%d_%d", (int)getpid(), ++count);
	conninfo(p, "postgres", info, sizeof info);
	c = PQconnectdb(info);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
	r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	snprintf(url, n, "postgresql://fnrun@/%s?host=%s", name, p->dir);
}

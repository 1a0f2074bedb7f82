/*
 * worker-shim.c - /usr/local/bin/fnrun-worker inside the fnrun images: runs
 * the real fnrun-worker (/usr/local/lib/fnrun/fnrun-worker) with the
 * defaults a container needs, then the caller's arguments (later flags win):
 *
 *   --listen=0.0.0.0   the published port reaches the container's interface,
 *                      not its loopback; only the host's 127.0.0.1 is published
 *   --output-directory /tmp/output, --temp-directory /tmp/temp,
 *   --input-directory /tmp/input
 *                      the root filesystem is read-only; /tmp is a tmpfs
 *
 * So one registry command, ["{bindir}/fnrun-worker", --model, sim, --port,
 * "{port}"], serves runtime process and runtime docker alike.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define REAL "/usr/local/lib/fnrun/fnrun-worker"

int main(int argc, char **argv)
{
	static const char *const defaults[] = {
		"--listen=0.0.0.0",   "--output-directory", "/tmp/output", "--temp-directory",
		"/tmp/temp",          "--input-directory",  "/tmp/input",
	};
	enum { NDEF = sizeof defaults / sizeof defaults[0] };
	char *args[NDEF + 256];
	int n = 0;

	if (argc > 256 - 1) {
		fprintf(stderr, "fnrun-worker: too many arguments\n");
		return 2;
	}
	args[n++] = (char *)REAL;
	for (int i = 0; i < NDEF; i++)
		args[n++] = (char *)defaults[i];
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execv(REAL, args);
	fprintf(stderr, "fnrun-worker: cannot run %s: %s\n", REAL, strerror(errno));
	return 127;
}

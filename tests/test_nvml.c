/*
 * test_nvml.c - src/nvml.c and `fnrun gpus` against tests/fake_nvml.c, a
 * fake libnvidia-ml.so.1 whose GPUs come from a state file the tests write
 * (and rewrite between calls).
 *
 * The fake is $FNRUN_FAKE_NVML or $FNRUN_BIN/../tests/libnvidia-ml.so.1,
 * where the Makefile builds it beside the test runner.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvml.h"
#include "testutil.h"

#define H200_TOTAL 150754820096ULL /* bytes, from fixtures/nvml-h200.txt */
#define H200_USED 644939776ULL
#define GIB (1ULL << 30)

static char state_path[512], log_path[512];

static const char *fake_lib(void)
{
	static char path[1024];
	const char *p = getenv("FNRUN_FAKE_NVML");

	if (p && *p)
		return p;
	snprintf(path, sizeof path, "%s/../tests/libnvidia-ml.so.1", tu_bindir());
	return path;
}

static void setup(void)
{
	const char *lib = fake_lib();

	ck_assert_msg(access(lib, R_OK) == 0, "fake NVML not built: %s", lib);
	snprintf(state_path, sizeof state_path, "%s/nvml-state", tu_tmpdir());
	snprintf(log_path, sizeof log_path, "%s/nvml-log", tu_tmpdir());
	setenv("FNRUN_NVML_LIB", lib, 1);
	setenv("FAKE_NVML_STATE", state_path, 1);
	setenv("FAKE_NVML_LOG", log_path, 1);
}

static void teardown(void)
{
	nvml_shutdown();
	tu_rmrf(tu_tmpdir());
}

static void write_state(const char *text)
{
	ck_assert_int_eq(tu_write_file(state_path, text, strlen(text)), 0);
}

static void init_ok(void)
{
	struct err e = {0};

	ck_assert_msg(nvml_init(&e) == 0, "nvml_init: %s", e.msg);
}

static struct gpu_info device_ok(int i)
{
	struct gpu_info g;
	struct err e = {0};

	ck_assert_msg(nvml_device(i, &g, &e) == 0, "nvml_device(%d): %s", i, e.msg);
	return g;
}

/* Runs cli_gpus with fd (1 or 2) captured; returns its status, the text in *out (caller frees). */
static int run_gpus(int fd, char **out)
{
	char path[600], *argv[] = {"gpus", NULL};
	int saved, tmp, rc;

	snprintf(path, sizeof path, "%s/capture-%d", tu_tmpdir(), fd);
	fflush(stdout);
	fflush(stderr);
	saved = dup(fd);
	tmp = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert(saved >= 0 && tmp >= 0);
	dup2(tmp, fd);
	close(tmp);
	rc = cli_gpus(1, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved, fd);
	close(saved);
	*out = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(*out);
	return rc;
}

START_TEST(test_one_gpu)
{
	struct gpu_info g;

	write_state("gpu 0 NVIDIA-H200 GPU-1699d92c 150754820096 644939776\n");
	init_ok();
	ck_assert_int_eq(nvml_count(), 1);
	g = device_ok(0);
	ck_assert_int_eq(g.index, 0);
	ck_assert_str_eq(g.name, "NVIDIA-H200");
	ck_assert_str_eq(g.uuid, "GPU-1699d92c");
	ck_assert_uint_eq(g.total, H200_TOTAL);
	ck_assert_uint_eq(g.used, H200_USED);
	ck_assert_uint_eq(g.free, H200_TOTAL - H200_USED);
}
END_TEST

START_TEST(test_two_gpus)
{
	struct gpu_info a, b;

	write_state("# two cards, listed out of order\n"
		    "gpu 1 RTX-4090 GPU-bbbb 25757220864 1073741824\n"
		    "gpu 0 NVIDIA-H200 GPU-aaaa 150754820096 644939776\n");
	init_ok();
	ck_assert_int_eq(nvml_count(), 2);
	a = device_ok(0);
	b = device_ok(1);
	ck_assert_str_eq(a.name, "NVIDIA-H200");
	ck_assert_str_eq(b.name, "RTX-4090");
	ck_assert_str_eq(b.uuid, "GPU-bbbb");
	ck_assert_int_eq(b.index, 1);
	ck_assert_uint_eq(a.total, H200_TOTAL);
	ck_assert_uint_eq(b.total, 25757220864ULL);
	ck_assert_uint_eq(b.used, GIB);
	ck_assert_uint_eq(b.free, 25757220864ULL - GIB);
}
END_TEST

START_TEST(test_processes_per_gpu)
{
	struct gpu_proc p[8];
	struct err e = {0};
	size_t n = 99;

	write_state("gpu 0 A GPU-a 100000000000 20000000000\n"
		    "gpu 1 B GPU-b 100000000000 3000000000\n"
		    "proc 0 542 9229565952\n"
		    "proc 1 700 2147483648\n"
		    "proc 0 543 na\n");
	init_ok();
	ck_assert_int_eq(nvml_processes(0, p, 8, &n, &e), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(p[0].pid, 542);
	ck_assert_uint_eq(p[0].used, 9229565952ULL);
	ck_assert_uint_eq(p[1].pid, 543);
	ck_assert_uint_eq(p[1].used, 0); /* NVML_VALUE_NOT_AVAILABLE */
	ck_assert_int_eq(nvml_processes(1, p, 8, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(p[0].pid, 700);
	ck_assert_uint_eq(p[0].used, 2 * GIB);
}
END_TEST

/* Writes one GPU and count processes on it (pid 1000+k, k MiB). */
static void write_many(int count)
{
	size_t cap = 64 + (size_t)count * 40, len;
	char *s = malloc(cap);

	ck_assert_ptr_nonnull(s);
	len = (size_t)snprintf(s, cap, "gpu 0 A GPU-a 100000000000 1000000000\n");
	for (int k = 0; k < count; k++)
		len += (size_t)snprintf(s + len, cap - len, "proc 0 %d %llu\n", 1000 + k,
					(unsigned long long)k << 20);
	write_state(s);
	free(s);
}

START_TEST(test_process_list_grows)
{
	struct gpu_proc p[64];
	struct err e = {0};
	size_t n = 0;
	char *log;

	write_many(40);
	init_ok();
	ck_assert_int_eq(nvml_processes(0, p, 64, &n, &e), 0);
	ck_assert_uint_eq(n, 40);
	for (int k = 0; k < 40; k++) {
		ck_assert_uint_eq(p[k].pid, 1000 + (unsigned)k);
		ck_assert_uint_eq(p[k].used, (uint64_t)k << 20);
	}
	/* The first answer was "insufficient size" (7); the retry fitted. */
	log = tu_read_file(log_path, NULL);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(strstr(log, "procs v3 gpu=0 in=16 out=40 rc=7\n") == log, "log: %s", log);
	ck_assert_msg(strstr(log, "out=40 rc=0\n") != NULL, "log: %s", log);
	free(log);
}
END_TEST

START_TEST(test_process_list_truncated)
{
	struct gpu_proc p[8];
	struct err e = {0};
	size_t n = 0;

	write_many(40);
	init_ok();
	ck_assert_int_eq(nvml_processes(0, p, 8, &n, &e), 0);
	ck_assert_uint_eq(n, 8);
	ck_assert_uint_eq(p[7].pid, 1007);
	ck_assert_uint_eq(p[7].used, 7ULL << 20);
}
END_TEST

START_TEST(test_process_list_over_limit)
{
	struct gpu_proc p[8];
	struct err e = {0};
	size_t n = 5;

	write_many(5000);
	init_ok();
	ck_assert_int_eq(nvml_processes(0, p, 8, &n, &e), -1);
	ck_assert_int_eq(e.code, ERR_TOO_LARGE);
	ck_assert_uint_eq(n, 0);
	ck_assert_msg(strstr(e.msg, "5000 processes") != NULL, "msg: %s", e.msg);
}
END_TEST

START_TEST(test_library_missing)
{
	struct err e = {0};

	setenv("FNRUN_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
	write_state("gpu 0 A GPU-a 100 10\n");
	ck_assert_int_eq(nvml_init(&e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_msg(strstr(e.msg, "no NVIDIA library") != NULL, "msg: %s", e.msg);
	ck_assert_msg(strstr(e.msg, "/nonexistent/libnvidia-ml.so.1") != NULL, "msg: %s", e.msg);
	ck_assert_int_eq(nvml_count(), 0);
}
END_TEST

START_TEST(test_library_lacks_nvml)
{
	struct err e = {0};

	setenv("FNRUN_NVML_LIB", "libc.so.6", 1); /* opens, but is no NVML */
	ck_assert_int_eq(nvml_init(&e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_msg(strstr(e.msg, "libc.so.6 lacks nvmlInit_v2") != NULL, "msg: %s", e.msg);
}
END_TEST

START_TEST(test_driver_not_loaded)
{
	struct err e = {0};

	unlink(state_path); /* the fake's "no driver" */
	ck_assert_int_eq(nvml_init(&e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_msg(strstr(e.msg, "Driver Not Loaded") != NULL, "msg: %s", e.msg);
	/* Nothing stayed open: a later init with a driver succeeds. */
	write_state("gpu 0 A GPU-a 100 10\n");
	init_ok();
	ck_assert_int_eq(nvml_count(), 1);
}
END_TEST

START_TEST(test_no_gpu)
{
	struct err e = {0};

	write_state("# a driver, but no card\n");
	ck_assert_int_eq(nvml_init(&e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_msg(strstr(e.msg, "no NVIDIA GPU") != NULL, "msg: %s", e.msg);
	ck_assert_int_eq(nvml_count(), 0);
}
END_TEST

START_TEST(test_state_change_seen)
{
	struct gpu_proc p[4];
	struct err e = {0};
	size_t n = 9;

	write_state("gpu 0 NVIDIA-H200 GPU-1 150754820096 644939776\n");
	init_ok();
	ck_assert_uint_eq(device_ok(0).used, H200_USED);
	ck_assert_int_eq(nvml_processes(0, p, 4, &n, &e), 0);
	ck_assert_uint_eq(n, 0);

	/* A process took 8.6 GiB, and a second card appeared. */
	write_state("gpu 0 NVIDIA-H200 GPU-1 150754820096 9883746304\n"
		    "gpu 1 NVIDIA-H200 GPU-2 150754820096 644939776\n"
		    "proc 0 542 9229565952\n");
	ck_assert_int_eq(nvml_count(), 2);
	ck_assert_uint_eq(device_ok(0).used, 9883746304ULL);
	ck_assert_uint_eq(device_ok(0).free, H200_TOTAL - 9883746304ULL);
	ck_assert_int_eq(nvml_processes(0, p, 4, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(p[0].used, 9229565952ULL);

	/* It exited. */
	write_state("gpu 0 NVIDIA-H200 GPU-1 150754820096 644939776\n");
	ck_assert_int_eq(nvml_count(), 1);
	ck_assert_int_eq(nvml_processes(0, p, 4, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(device_ok(0).used, H200_USED);
}
END_TEST

START_TEST(test_device_errors)
{
	struct gpu_info g;
	struct gpu_proc p[4];
	struct err e = {0};
	size_t n = 9;

	write_state("gpu 0 A GPU-a 100 10\nfail memory 999\nfail procs 3\n");
	ck_assert_int_eq(nvml_device(0, &g, &e), -1); /* before init */
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	err_clear(&e);
	init_ok();
	ck_assert_int_eq(nvml_device(3, &g, &e), -1);
	ck_assert_int_eq(e.code, ERR_NOT_FOUND);
	ck_assert_str_eq(e.msg, "no GPU 3");
	err_clear(&e);
	ck_assert_int_eq(nvml_device(0, &g, &e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_str_eq(e.msg, "GPU 0: memory: Unknown Error");
	err_clear(&e);
	ck_assert_int_eq(nvml_processes(0, p, 4, &n, &e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	ck_assert_str_eq(e.msg, "GPU 0: processes: Unknown Error");
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_init_twice_then_shutdown)
{
	struct gpu_info g;
	struct err e = {0};

	write_state("gpu 0 A GPU-a 100 10\n");
	init_ok();
	init_ok(); /* a no-op while open */
	ck_assert_int_eq(nvml_count(), 1);
	nvml_shutdown();
	ck_assert_int_eq(nvml_count(), 0);
	ck_assert_int_eq(nvml_device(0, &g, &e), -1);
	ck_assert_int_eq(e.code, ERR_UNAVAILABLE);
	nvml_shutdown(); /* a no-op when closed */
	init_ok();
	ck_assert_str_eq(device_ok(0).name, "A");
}
END_TEST

START_TEST(test_cli_gpus)
{
	char state[512], want[128], *out;

	/* Our own pid: its command line is readable and names the runner. */
	snprintf(state, sizeof state,
		 "gpu 0 NVIDIA-H200 GPU-1699d92c 150754820096 9883746304\n"
		 "gpu 1 NVIDIA-H200 GPU-2 150754820096 644939776\n"
		 "proc 0 %d 9229565952\nproc 0 4000000 na\n",
		 (int)getpid());
	write_state(state);
	ck_assert_int_eq(run_gpus(1, &out), 0);
	ck_assert_msg(strstr(out, "GPU 0  NVIDIA-H200  GPU-1699d92c\n"
				  "  memory  total 143771 MiB  used 9426 MiB  free 134345 MiB\n") == out,
		      "out: %s", out);
	snprintf(want, sizeof want, "  pid %d  8802 MiB  ", (int)getpid());
	ck_assert_msg(strstr(out, want) != NULL, "out: %s", out);
	ck_assert_msg(strstr(out, "run") != NULL, "no command line: %s", out);
	ck_assert_msg(strstr(out, "  pid 4000000  ? MiB  (not readable)\n") != NULL, "out: %s", out);
	ck_assert_msg(strstr(out, "GPU 1  NVIDIA-H200  GPU-2\n"
				  "  memory  total 143771 MiB  used 615 MiB  free 143156 MiB\n"
				  "  no compute processes\n") != NULL,
		      "out: %s", out);
	free(out);
	ck_assert_int_eq(nvml_count(), 0); /* it shut NVML down */
}
END_TEST

START_TEST(test_cli_gpus_without_nvml)
{
	char *err;

	setenv("FNRUN_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
	ck_assert_int_eq(run_gpus(2, &err), 1);
	ck_assert_msg(strstr(err, "fnrun gpus: no NVIDIA library: cannot open "
				  "/nonexistent/libnvidia-ml.so.1") == err,
		      "stderr: %s", err);
	free(err);
}
END_TEST

Suite *suite_nvml(void)
{
	Suite *s = suite_create("nvml");
	TCase *tc = tcase_create("fake");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_one_gpu);
	tcase_add_test(tc, test_two_gpus);
	tcase_add_test(tc, test_processes_per_gpu);
	tcase_add_test(tc, test_process_list_grows);
	tcase_add_test(tc, test_process_list_truncated);
	tcase_add_test(tc, test_process_list_over_limit);
	tcase_add_test(tc, test_library_missing);
	tcase_add_test(tc, test_library_lacks_nvml);
	tcase_add_test(tc, test_driver_not_loaded);
	tcase_add_test(tc, test_no_gpu);
	tcase_add_test(tc, test_state_change_seen);
	tcase_add_test(tc, test_device_errors);
	tcase_add_test(tc, test_init_twice_then_shutdown);
	tcase_add_test(tc, test_cli_gpus);
	tcase_add_test(tc, test_cli_gpus_without_nvml);
	suite_add_tcase(s, tc);
	return s;
}

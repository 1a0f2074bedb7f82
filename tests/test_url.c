/*
 * test_url.c - model server URLs (url.c): a table of good URLs with what
 * they normalise to, and a table of bad ones with the whole message each
 * must give (what is wrong and what is allowed).
 */
#include <check.h>
#include <string.h>

#include "url.h"

#define ALLOWED "must be an http:// URL with a host and an optional port, e.g. http://127.0.0.1:8188"
#define BASE_ONLY "give only http://HOST:PORT, e.g. http://127.0.0.1:8188"

static const struct {
	const char *text;
	const char *host;
	int port;
	const char *base;
} good[] = {
	{"http://127.0.0.1:8188", "127.0.0.1", 8188, "http://127.0.0.1:8188"},
	/* No port: 80, and the result says so, so the runtime uses what was checked. */
	{"http://127.0.0.1", "127.0.0.1", 80, "http://127.0.0.1:80"},
	{"http://10.0.0.5:8188/", "10.0.0.5", 8188, "http://10.0.0.5:8188"},
	{"http://10.0.0.5:65535", "10.0.0.5", 65535, "http://10.0.0.5:65535"},
	{"http://10.0.0.5:1", "10.0.0.5", 1, "http://10.0.0.5:1"},
	{"http://10.0.0.5:0080", "10.0.0.5", 80, "http://10.0.0.5:80"},
	/* localhost is what wsc.c maps it to. */
	{"http://localhost:8188", "127.0.0.1", 8188, "http://127.0.0.1:8188"},
	{"HTTP://LocalHost", "127.0.0.1", 80, "http://127.0.0.1:80"},
	/* curl's IPv4 forms come out dotted. */
	{"http://127.1:8188", "127.0.0.1", 8188, "http://127.0.0.1:8188"},
	{"http://[::1]:8188", "::1", 8188, "http://[::1]:8188"},
	{"http://[0:0::1]:8188/", "::1", 8188, "http://[::1]:8188"},
	{"http://[FD00::5]", "fd00::5", 80, "http://[fd00::5]:80"},
};

static const struct {
	const char *text;
	const char *msg;
} bad[] = {
	{"https://host", "https is not supported: model servers are reached over plain HTTP on a "
			 "trusted network (no TLS to them); give http://HOST:PORT, e.g. "
			 "http://127.0.0.1:8188"},
	{"https://127.0.0.1:8188", "https is not supported: model servers are reached over plain "
				   "HTTP on a trusted network (no TLS to them); give "
				   "http://HOST:PORT, e.g. http://127.0.0.1:8188"},
	{"ftp://x", "scheme \"ftp\" is not supported; " ALLOWED},
	{"ws://127.0.0.1:8188", "scheme \"ws\" is not supported; " ALLOWED},
	{"127.0.0.1:8188", "has no http:// scheme; " ALLOWED},
	{"localhost:8188", "has no http:// scheme; " ALLOWED},
	{"http:/127.0.0.1:8188", "has no http:// scheme; " ALLOWED},
	{"", "is empty; " ALLOWED},
	{"http://host:0", "has port 0; give a port from 1 to 65535, e.g. http://127.0.0.1:8188"},
	{"http://host:99999", "has a port that is not a number from 1 to 65535; " ALLOWED},
	{"http://host:x", "has a port that is not a number from 1 to 65535; " ALLOWED},
	{"http://:8188", "has no host; " ALLOWED},
	{"http://u:p@host:1", "must not carry a user name or password; " BASE_ONLY},
	{"http://u@127.0.0.1:1", "must not carry a user name or password; " BASE_ONLY},
	{"http://host:1/x", "has a path (\"/x\"); fnrun adds /prompt, /ws and the other routes "
			    "itself: " BASE_ONLY},
	{"http://127.0.0.1:1//", "has a path (\"//\"); fnrun adds /prompt, /ws and the other routes "
				 "itself: " BASE_ONLY},
	{"http://host:1?q", "has a query (\"?q\"); " BASE_ONLY},
	{"http://host:1/?", "has a query (\"?\"); " BASE_ONLY},
	{"http://host:1#top", "has a fragment (\"#top\"); " BASE_ONLY},
	/* wsc.c resolves no names, so the check refuses them. */
	{"http://host", "host \"host\" is a name, and fnrun connects to model servers by address: "
			"give an IPv4 address, an [IPv6] one or localhost, e.g. http://10.0.0.5:8188"},
	{"http://gpu-box.lan:8188", "host \"gpu-box.lan\" is a name, and fnrun connects to model "
				    "servers by address: give an IPv4 address, an [IPv6] one or "
				    "localhost, e.g. http://10.0.0.5:8188"},
	{"http://0.0.0.0:8188", "host 0.0.0.0 is the unspecified address; give the address the "
				"server is reached at, e.g. http://127.0.0.1:8188"},
	{"http://[::]:8188", "host :: is the unspecified address; give the address the server is "
			     "reached at, e.g. http://127.0.0.1:8188"},
	{"http://[fe80::1%25eth0]:8188", "has an IPv6 zone id (%eth0), which fnrun cannot use; give "
					 "an address without one, e.g. http://[fd00::5]:8188"},
	{"http://a b:1", "is not a valid URL (Bad hostname); " ALLOWED},
};

START_TEST(good_urls)
{
	const char *text = good[_i].text;
	struct err e = {0};
	struct url u, again;

	ck_assert_msg(url_parse_model_server(text, &u, &e) == 0, "%s: %s", text, e.msg);
	ck_assert_int_eq(e.code, 0);
	ck_assert_str_eq(u.scheme, "http");
	ck_assert_str_eq(u.host, good[_i].host);
	ck_assert_int_eq(u.port, good[_i].port);
	ck_assert_str_eq(u.base, good[_i].base);
	/* A base is a good URL that normalises to itself. */
	ck_assert_int_eq(url_parse_model_server(u.base, &again, &e), 0);
	ck_assert_str_eq(again.base, u.base);
}
END_TEST

START_TEST(bad_urls)
{
	const char *text = bad[_i].text;
	struct err e = {0};
	struct url u;

	memset(&u, 'x', sizeof u);
	ck_assert_msg(url_parse_model_server(text, &u, &e) == -1, "%s was accepted", text);
	ck_assert_int_eq(e.code, ERR_INVALID);
	ck_assert_msg(strcmp(e.msg, bad[_i].msg) == 0, "%s\ngot  %s\nwant %s", text, e.msg,
		      bad[_i].msg);
	/* Nothing half-filled is left behind. */
	ck_assert_str_eq(u.base, "");
	ck_assert_int_eq(u.port, 0);
}
END_TEST

START_TEST(null_and_long_urls)
{
	char text[URL_MAX_TEXT + 20];
	struct err e = {0};
	struct url u;

	ck_assert_int_eq(url_parse_model_server(NULL, &u, &e), -1);
	ck_assert_str_eq(e.msg, "is empty; " ALLOWED);
	memset(text, 0, sizeof text);
	memcpy(text, "http://127.0.0.1:1/", 19);
	memset(text + 19, 'a', URL_MAX_TEXT - 18);
	err_clear(&e);
	ck_assert_int_eq(url_parse_model_server(text, &u, &e), -1);
	ck_assert_str_eq(e.msg, "is longer than 2048 characters; " ALLOWED);
	/* Exactly the limit is parsed (and refused for its path). */
	text[URL_MAX_TEXT] = '\0';
	err_clear(&e);
	ck_assert_int_eq(url_parse_model_server(text, &u, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "has a path"));
}
END_TEST

Suite *suite_url(void)
{
	Suite *s = suite_create("url");
	TCase *tc = tcase_create("url");

	/* Milliseconds alone, but seconds on a loaded machine under ASan. */
	tcase_set_timeout(tc, 30);

	tcase_add_loop_test(tc, good_urls, 0, (int)(sizeof good / sizeof good[0]));
	tcase_add_loop_test(tc, bad_urls, 0, (int)(sizeof bad / sizeof bad[0]));
	tcase_add_test(tc, null_and_long_urls);
	suite_add_tcase(s, tc);
	return s;
}

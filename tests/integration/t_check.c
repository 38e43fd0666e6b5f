/* The command line: `pgmoat --check FILE` accepts a valid configuration
 * (exit 0), rejects broken ones (exit 1) naming every error as
 * file:line: message on stderr, warns about unknown keys (exit 0);
 * --version, --help, bad options, and a normal start with a broken file.
 * No PostgreSQL needed. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

static char *userlist;
static int seq;

/* Writes `text` (with @AUTHFILE@ replaced) to a new file; returns its path. */
static char *write_conf(const char *text)
{
	char *path = h_strdupf("%s/check%d.ini", h_tmpdir(), seq++);
	char *body = strdup(text);
	char *at = strstr(body, "@AUTHFILE@");
	if (at) {
		*at = '\0';
		char *full = h_strdupf("%s%s%s", body, userlist, at + strlen("@AUTHFILE@"));
		free(body);
		body = full;
	}
	if (!h_write_file(path, body))
		h_bail("cannot write %s", path);
	free(body);
	return path;
}

/* Runs pgmoat with `args` and `path`; returns the exit status, and what it
 * wrote on stderr only. */
static int run_pgmoat(const char *a1, const char *path, char **err)
{
	const char *argv[] = {
	        "/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1 >/dev/null", h_pgmoat_bin(), a1,
	        path,      NULL};
	if (!a1)
		argv[4] = path, argv[5] = NULL;
	return h_run(argv, NULL, 30, err);
}

static bool has(const char *text, const char *path, int line)
{
	char *needle = h_strdupf("%s:%d:", path, line);
	bool found = strstr(text, needle) != NULL;
	free(needle);
	return found;
}

#define HEAD                                                                                       \
	"[databases]\n"                                                                            \
	"app = host=127.0.0.1 port=5432 dbname=app\n"                                              \
	"\n"                                                                                       \
	"[pgmoat]\n"                                                                               \
	"listen_addr = 127.0.0.1\n"                                                                \
	"listen_port = 6432\n"                                                                     \
	"auth_type = md5\n"                                                                        \
	"auth_file = @AUTHFILE@\n"
/* HEAD is 8 lines; the next line is 9. */

/* One broken file: exit 1 and the error reported at `line`. */
static void expect_error(const char *what, const char *text, int line)
{
	char *path = write_conf(text);
	char *err = NULL;
	int rc = run_pgmoat("--check", path, &err);
	ok(rc == 1 && has(err, path, line), "%s: exit 1 and '%s:%d: ...' (exit %d)", what,
	   strrchr(path, '/') + 1, line, rc);
	if (rc != 1 || !has(err, path, line))
		h_diag_text("  stderr: ", err);
	free(err);
	free(path);
}

int main(void)
{
	h_init("t_check", 60);
	userlist = h_strdupf("%s/userlist.txt", h_tmpdir());
	h_write_file(userlist,
	             "\"app\" \"secret\"\n\"other\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n");
	tap_plan(23);

	char *valid = write_conf("; a comment\n" HEAD "pool_mode = session\n"
	                         "default_pool_size = 20\n"
	                         "max_client_conn = 100\n"
	                         "query_wait_timeout = 500ms\n"
	                         "server_lifetime = 1h\n"
	                         "pkt_buf = 8kB\n"
	                         "server_reset_query = DISCARD ALL\n"
	                         "workers = 2\n"
	                         "\n"
	                         "[users]\n"
	                         "app = pool_mode=session\n");
	char *err = NULL;
	int rc = run_pgmoat("--check", valid, &err);
	is_int(rc, 0, "--check on a valid file exits 0");
	if (rc != 0)
		h_diag_text("  stderr: ", err);
	free(err);

	char *alias = write_conf("[databases]\n"
	                         "* = host=127.0.0.1 port=5432\n"
	                         "[pgbouncer]\n"
	                         "listen_port = 6432\n"
	                         "auth_type = trust\n"
	                         "auth_file = @AUTHFILE@\n");
	rc = run_pgmoat("--check", alias, &err);
	is_int(rc, 0, "[pgbouncer] is accepted as the settings section, '*' as a database");
	free(err);

	expect_error("bad integer", HEAD "default_pool_size = abc\n", 9);
	expect_error("negative pool size", HEAD "default_pool_size = -1\n", 9);
	expect_error("port out of range", HEAD "listen_port = 70000\n", 9);
	expect_error("unknown pool_mode", HEAD "pool_mode = sometimes\n", 9);
	expect_error("unknown auth_type", HEAD "auth_type = kerberos\n", 9);
	expect_error("bad time value", HEAD "query_wait_timeout = soon\n", 9);
	expect_error("unknown section", HEAD "\n[nonsense]\nfoo = bar\n", 10);
	expect_error("line without '='", HEAD "this line is not a setting\n", 9);
	expect_error("bad port in a connection string",
	             "[databases]\napp = host=127.0.0.1 port=notanumber dbname=app\n"
	             "[pgmoat]\nauth_type = trust\nauth_file = @AUTHFILE@\n",
	             2);
	expect_error("garbage connection string",
	             "[databases]\napp = this is not a connection string\n"
	             "[pgmoat]\nauth_type = trust\nauth_file = @AUTHFILE@\n",
	             2);
	expect_error("unknown connection-string key",
	             "[databases]\napp = host=127.0.0.1 colour=blue\n"
	             "[pgmoat]\nauth_type = trust\nauth_file = @AUTHFILE@\n",
	             2);

	/* Every error is listed, not just the first. */
	char *two = write_conf(HEAD "default_pool_size = abc\n"
	                            "pool_mode = session\n"
	                            "max_client_conn = lots\n");
	rc = run_pgmoat("--check", two, &err);
	ok(rc == 1 && has(err, two, 9) && has(err, two, 11),
	   "two errors (lines 9 and 11) are both reported");
	if (rc != 1)
		h_diag_text("  stderr: ", err);
	free(err);

	/* Unknown key: a warning naming the nearest known key, still valid. */
	char *unknown = write_conf(HEAD "listen_prot = 6433\n");
	rc = run_pgmoat("--check", unknown, &err);
	is_int(rc, 0, "an unknown key is only a warning: exit 0");
	ok(has(err, unknown, 9), "the warning names file:line");
	ok(strstr(err, "listen_port") != NULL, "and suggests the nearest key (listen_port)");
	h_diag_text("  stderr: ", err);
	free(err);

	char *missing = h_strdupf("%s/does-not-exist.ini", h_tmpdir());
	rc = run_pgmoat("--check", missing, &err);
	ok(rc == 1 && strstr(err, missing) != NULL, "a missing file: exit 1, the path named");
	free(err);

	const char *v[] = {h_pgmoat_bin(), "--version", NULL};
	char *out = NULL;
	rc = h_run(v, NULL, 30, &out);
	ok(rc == 0 && strstr(out, "pgmoat") && strpbrk(out, "0123456789"),
	   "--version exits 0 and prints a version ('%.*s')", (int)strcspn(out, "\n"), out);
	free(out);
	const char *h[] = {h_pgmoat_bin(), "--help", NULL};
	rc = h_run(h, NULL, 30, &out);
	ok(rc == 0 && strstr(out, "--check") != NULL, "--help exits 0 and documents --check");
	free(out);
	const char *b[] = {h_pgmoat_bin(), "--no-such-option", valid, NULL};
	rc = h_run(b, NULL, 30, &out);
	ok(rc != 0 && rc < 128, "an unknown option is refused (exit %d)", rc);
	free(out);

	/* A normal start with a broken file fails at once, naming the line. */
	char *broken = write_conf(HEAD "listen_port = 0\ndefault_pool_size = abc\n");
	rc = run_pgmoat(NULL, broken, &err);
	ok(rc != 0 && rc < 128, "starting with a broken file exits non-zero (exit %d)", rc);
	ok(has(err, broken, 10), "and says where the error is");
	free(err);

	free(valid);
	free(alias);
	free(two);
	free(unknown);
	free(missing);
	free(broken);
	return h_done();
}

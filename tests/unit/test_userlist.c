/* The auth file: parsing, escapes, errors with line numbers, lookups. */
#include <config.h>

#include "auth/userlist.h"
#include "tests/lib/tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MD5_SECRET "md532e12f215ba27cb750c9e093ce4b5127"
#define SCRAM_SECRET                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static void test_kinds(void)
{
	is_int(secret_kind_of(MD5_SECRET), SECRET_MD5, "kind: md5 hash");
	is_int(secret_kind_of(SCRAM_SECRET), SECRET_SCRAM, "kind: SCRAM verifier");
	is_int(secret_kind_of("password"), SECRET_PLAIN, "kind: plain password");
	is_int(secret_kind_of(""), SECRET_PLAIN, "kind: empty");
	is_int(secret_kind_of("md532E12F215BA27CB750C9E093CE4B5127"), SECRET_PLAIN,
	       "kind: md5 with uppercase hex is a plain password");
	is_int(secret_kind_of("md5abc"), SECRET_PLAIN, "kind: short md5 is a plain password");
	is_int(secret_kind_of("SCRAM-SHA-256$junk"), SECRET_SCRAM,
	       "kind: SCRAM prefix (validated on load)");
	is_str(secret_kind_name(SECRET_MD5), "SECRET_MD5", "kind name");
}

static void test_parse(void)
{
	const char *text = "; a comment\n"
	                   "   ; an indented comment\n"
	                   "\n"
	                   "   \t \n"
	                   "\"alice\" \"" MD5_SECRET "\"\n"
	                   "\"bob\"   \"" SCRAM_SECRET "\"\n"
	                   "\"carol\" \"plain pass\"   trailing text is ignored\n"
	                   "\t\"tab\"\t\"x\" ; a trailing comment\n"
	                   "\"say \"\"hi\"\"\" \"pa\"\"ss\"\n"
	                   "\"\"\"\" \"\"\"\"\"\"\n"
	                   "\"empty\" \"\"\n"
	                   "\"dup\" \"first\"\n"
	                   "\"crlf\" \"windows\"\r\n"
	                   "\r\n"
	                   "\"dup\" \"second\"\n"
	                   "\"Alice\" \"other\"\n"
	                   "\"last\" \"no newline\"";
	struct strlist errors;
	struct userlist *l;

	strlist_init(&errors);
	l = userlist_parse_string("t.txt", text, &errors);
	ok(l != NULL, "parse: good text");
	is_int((long)errors.n, 0, "parse: no errors");
	if (l == NULL)
		tap_bail("cannot go on");
	is_int((long)userlist_count(l), 11, "parse: 11 distinct users");
	is_str(userlist_lookup(l, "alice"), MD5_SECRET, "lookup alice (md5)");
	is_str(userlist_lookup(l, "bob"), SCRAM_SECRET, "lookup bob (SCRAM)");
	is_str(userlist_lookup(l, "carol"), "plain pass", "text after the secret ignored");
	is_str(userlist_lookup(l, "tab"), "x", "tabs around fields");
	is_str(userlist_lookup(l, "say \"hi\""), "pa\"ss", "\"\" escapes in both fields");
	is_str(userlist_lookup(l, "\""), "\"\"", "fields made only of escaped quotes");
	is_str(userlist_lookup(l, "empty"), "", "empty secret kept");
	is_str(userlist_lookup(l, "dup"), "second", "a later line wins");
	is_str(userlist_lookup(l, "crlf"), "windows", "CRLF line end");
	is_str(userlist_lookup(l, "Alice"), "other", "user names are case-sensitive");
	is_str(userlist_lookup(l, "last"), "no newline", "last line without newline");
	ok(userlist_lookup(l, "nobody") == NULL, "unknown user");
	ok(userlist_lookup(l, "alic") == NULL, "prefix of a user");
	ok(userlist_lookup(l, "") == NULL, "empty user");
	ok(userlist_lookup(l, NULL) == NULL, "NULL user");
	is_int(secret_kind_of(userlist_lookup(l, "bob")), SECRET_SCRAM, "bob's kind");
	userlist_free(l);
	strlist_free(&errors);

	l = userlist_parse_string("empty", "", NULL);
	ok(l != NULL && userlist_count(l) == 0, "empty text: empty list");
	ok(userlist_lookup(l, "alice") == NULL, "empty list: no lookup");
	userlist_free(l);
	l = userlist_parse_string("comments", "; only\n;comments\n\n", NULL);
	ok(l != NULL && userlist_count(l) == 0, "only comments: empty list");
	userlist_free(l);
	ok(userlist_lookup(NULL, "x") == NULL && userlist_count(NULL) == 0, "NULL list");
	userlist_free(NULL);
}

static void test_errors(void)
{
	char long_user[USERLIST_MAX_USER + 2], long_secret[USERLIST_MAX_SECRET + 2];
	char *text;
	struct strlist errors;
	struct userlist *l;
	static const char *const want[] = {
	        "bad.txt:2: expected a quoted user name",
	        "bad.txt:3: unterminated quoted user name",
	        "bad.txt:4: expected a quoted secret after the user name",
	        "bad.txt:5: expected a quoted secret after the user name",
	        "bad.txt:6: unterminated quoted secret",
	        "bad.txt:7: empty user name",
	        "bad.txt:8: malformed SCRAM secret",
	        "bad.txt:9: expected a quoted secret after the user name",
	        "bad.txt:11: user name too long",
	        "bad.txt:13: secret too long",
	        "bad.txt:14: unterminated quoted user name",
	        "bad.txt:15: expected a quoted user name",
	        "bad.txt:16: expected a quoted secret after the user name",
	};

	memset(long_user, 'u', sizeof(long_user));
	long_user[sizeof(long_user) - 1] = '\0'; /* USERLIST_MAX_USER + 1 bytes */
	memset(long_secret, 's', sizeof(long_secret));
	long_secret[sizeof(long_secret) - 1] = '\0';
	text = malloc(8192);
	snprintf(text, 8192,
	         "\"ok\" \"fine\"\n" /* 1 */
	         "alice \"x\"\n" /* 2 */
	         "\"alice\n" /* 3 */
	         "\"alice\" x\n" /* 4 */
	         "\"alice\"\n" /* 5 */
	         "\"alice\" \"x\n" /* 6 */
	         "\"\" \"x\"\n" /* 7 */
	         "\"alice\" \"SCRAM-SHA-256$4096:abc\"\n" /* 8 */
	         "\"alice\"\"x\"\n" /* 9: one field a"x */
	         "\"%.*s\" \"max user\"\n" /* 10 */
	         "\"%s\" \"x\"\n" /* 11 */
	         "\"maxsecret\" \"%.*s\"\n" /* 12 */
	         "\"longsecret\" \"%s\"\n" /* 13 */
	         "\"multi\n" /* 14 */
	         "line\" \"x\"\n" /* 15 */
	         "\"alice\" ; \"x\"\n", /* 16 */
	         USERLIST_MAX_USER, long_user, long_user, USERLIST_MAX_SECRET, long_secret,
	         long_secret);

	strlist_init(&errors);
	l = userlist_parse_string("bad.txt", text, &errors);
	ok(l == NULL, "errors: no list");
	is_int((long)errors.n, (long)(sizeof(want) / sizeof(want[0])), "errors: every bad line");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		is_str(i < errors.n ? errors.items[i] : NULL, want[i], "error %zu", i);
	strlist_free(&errors);

	ok(userlist_parse_string("bad.txt", text, NULL) == NULL, "errors: NULL error list");
	free(text);

	/* The limits themselves are fine. */
	text = malloc(8192);
	snprintf(text, 8192, "\"%.*s\" \"%.*s\"\n", USERLIST_MAX_USER, long_user,
	         USERLIST_MAX_SECRET, long_secret);
	l = userlist_parse_string("max.txt", text, NULL);
	ok(l != NULL && userlist_count(l) == 1, "longest user and secret accepted");
	userlist_free(l);
	free(text);
}

static const char *srcdir(void)
{
	const char *d = getenv("PGMOAT_SRCDIR");
	return d != NULL && d[0] != '\0' ? d : ".";
}

static void test_load(void)
{
	char path[4096], want[4200], tmp[4096];
	const char *tmpdir = getenv("TMPDIR");
	struct strlist errors;
	struct userlist *l;
	int fd;

	snprintf(path, sizeof(path), "%s/tests/unit/data/auth_userlist.txt", srcdir());
	strlist_init(&errors);
	l = userlist_load(path, &errors);
	ok(l != NULL, "load %s", path);
	if (l != NULL) {
		is_int((long)userlist_count(l), 4, "load: 4 users");
		is_str(userlist_lookup(l, "postgres"), MD5_SECRET, "load: md5 user");
		is_str(userlist_lookup(l, "user"), SCRAM_SECRET, "load: SCRAM user");
		is_str(userlist_lookup(l, "plain"), "pass word", "load: plain user");
		is_str(userlist_lookup(l, "say \"hi\""), "a\"b", "load: escapes");
	}
	userlist_free(l);
	is_int((long)errors.n, 0, "load: no errors");
	strlist_free(&errors);

	strlist_init(&errors);
	l = userlist_load("/nonexistent/pgmoat/userlist.txt", &errors);
	ok(l == NULL, "missing file: no list");
	is_str(errors.n == 1 ? errors.items[0] : NULL,
	       "/nonexistent/pgmoat/userlist.txt: cannot open: No such file or directory",
	       "missing file: error");
	strlist_free(&errors);

	l = userlist_load("", NULL);
	ok(l != NULL && userlist_count(l) == 0, "empty path: empty list");
	userlist_free(l);
	l = userlist_load(NULL, NULL);
	ok(l != NULL && userlist_count(l) == 0, "NULL path: empty list");
	userlist_free(l);

	/* A NUL byte cannot come through parse_string: write a file. */
	snprintf(tmp, sizeof(tmp), "%s/pgmoat_test_userlist_XXXXXX",
	         tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
	fd = mkstemp(tmp);
	if (fd < 0)
		tap_bail("mkstemp: %s", strerror(errno));
	static const char nul_text[] = "\"a\" \"b\"\n\"c\" \"d\0e\"\n\"f\" \"g\"\n";
	if (write(fd, nul_text, sizeof(nul_text) - 1) != (ssize_t)(sizeof(nul_text) - 1))
		tap_bail("write: %s", strerror(errno));
	close(fd);
	strlist_init(&errors);
	l = userlist_load(tmp, &errors);
	ok(l == NULL, "NUL byte: no list");
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", tmp);
	is_str(errors.n == 1 ? errors.items[0] : NULL, want, "NUL byte: error on line 2");
	strlist_free(&errors);
	unlink(tmp);
}

/* Tens of thousands of users, in reverse order, with duplicates. */
static void test_many(void)
{
	enum { N = 50000 };
	size_t cap = (size_t)N * 48 + 64, len = 0;
	char *text = malloc(cap), user[32], secret[32];
	struct userlist *l;
	bool all = true;

	for (int i = N - 1; i >= 0; i--)
		len += (size_t)snprintf(text + len, cap - len, "\"user%d\" \"pw%d\"\n", i, i);
	len += (size_t)snprintf(text + len, cap - len, "\"user77\" \"replaced\"\n");
	l = userlist_parse_string("many.txt", text, NULL);
	ok(l != NULL && userlist_count(l) == N, "many: %d users", N);
	for (int i = 0; l != NULL && i < N; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(secret, sizeof(secret), "pw%d", i);
		const char *got = userlist_lookup(l, user);
		if (i == 77 ? got == NULL || strcmp(got, "replaced") != 0
		            : got == NULL || strcmp(got, secret) != 0) {
			diag("lookup %s gave %s", user, got ? got : "(null)");
			all = false;
			break;
		}
	}
	ok(all, "many: every user found with its own secret");
	ok(l != NULL && userlist_lookup(l, "user50000") == NULL, "many: unknown user");
	userlist_free(l);
	free(text);
}

int main(void)
{
	test_kinds();
	test_parse();
	test_errors();
	test_load();
	test_many();
	return tap_done();
}

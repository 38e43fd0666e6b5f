/* Unit test of conf/ini.c: syntax, line numbers in errors, %include. */
#include <config.h>

#include "conf/ini.h"
#include "tests/lib/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The source tree: $PGMOAT_SRCDIR (make check), else found from __FILE__. */
static const char *srcdir(void)
{
	static char dir[4096];
	const char *env = getenv("PGMOAT_SRCDIR");
	if (env && *env)
		return env;
	const char *suffix = "tests/unit/test_ini.c";
	const char *file = __FILE__;
	size_t n = strlen(file), s = strlen(suffix);
	if (n >= s && strcmp(file + n - s, suffix) == 0 && n > s)
		snprintf(dir, sizeof(dir), "%.*s", (int)(n - s - 1), file);
	else
		snprintf(dir, sizeof(dir), ".");
	return dir;
}

static char *data_path(const char *name)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%.3000s/tests/unit/data/%s", srcdir(), name);
	return path;
}

/* Every key the reader reports, as "file:line [section] key=value". */
static void record(const char *file, int line, const char *section, const char *key,
                   const char *value, void *arg)
{
	if (key) /* section headers are checked by test_headers() */
		strlist_addf(arg, "%s:%d [%s] %s=%s", file, line, section, key, value);
}

static void record_headers(const char *file, int line, const char *section, const char *key,
                           const char *value, void *arg)
{
	(void)value;
	if (!key)
		strlist_addf(arg, "%s:%d [%s]", file, line, section);
}

/* Compare a list with the expected strings (NULL-terminated). */
static void is_list(const struct strlist *got, const char *const *want, const char *what)
{
	size_t n = 0;
	while (want[n])
		n++;
	is_int((long)got->n, (long)n, "%s: count", what);
	for (size_t i = 0; i < n; i++)
		is_str(i < got->n ? got->items[i] : NULL, want[i], "%s: item %zu", what, i);
	for (size_t i = n; i < got->n; i++)
		diag("unexpected: %s", got->items[i]);
}

static void test_comments_and_quotes(void)
{
	const char *text = "; comment\n"
	                   "# another comment\n"
	                   "   ; indented comment\n"
	                   "[sec]\n"
	                   "  key1 =   value one   \n"
	                   "key2=\"quoted ; not a comment\"\n"
	                   "key3 = \"with \\\"escapes\\\" and \\\\ backslash\"\n"
	                   "\"quoted key\" = x\n"
	                   "empty =\n"
	                   "semi = a;b # c\n"
	                   "[ other ]\n"
	                   "KeY = v=w\n";
	struct strlist keys, errors;
	strlist_init(&keys);
	strlist_init(&errors);
	ok(ini_parse_string("t.ini", text, record, &keys, &errors), "valid text parses");
	const char *want[] = {"t.ini:5 [sec] key1=value one",
	                      "t.ini:6 [sec] key2=quoted ; not a comment",
	                      "t.ini:7 [sec] key3=with \"escapes\" and \\ backslash",
	                      "t.ini:8 [sec] quoted key=x",
	                      "t.ini:9 [sec] empty=",
	                      "t.ini:10 [sec] semi=a;b # c",
	                      "t.ini:12 [other] KeY=v=w",
	                      NULL};
	is_list(&keys, want, "keys");
	is_int((long)errors.n, 0, "no errors");
	strlist_free(&keys);
	strlist_free(&errors);
}

static void test_errors(void)
{
	const char *text = "[ok]\n" /* 1 */
	                   "a = 1\n" /* 2 */
	                   "[broken\n" /* 3 */
	                   "b = 2\n" /* 4: skipped, under a broken header */
	                   "[sec]\n" /* 5 */
	                   "novalue\n" /* 6 */
	                   "= nokey\n" /* 7 */
	                   "c = \"unterminated\n" /* 8 */
	                   "d = \"x\" trailing\n" /* 9 */
	                   "%bogus thing\n" /* 10 */
	                   "[]\n" /* 11 */
	                   "e = 5\n" /* 12: skipped */
	                   "[sec2] junk\n" /* 13 */
	                   "[good] ; comment\n" /* 14 */
	                   "f = 6\n" /* 15 */
	                   "\"unterminated = 7\n"; /* 16 */
	struct strlist keys, errors;
	strlist_init(&keys);
	strlist_init(&errors);
	ok(!ini_parse_string("t.ini", text, record, &keys, &errors), "syntax errors: false");
	const char *want_errors[] = {"t.ini:3: unterminated section header '[broken'",
	                             "t.ini:6: missing '=' after key 'novalue'",
	                             "t.ini:7: missing key before '='",
	                             "t.ini:8: c: unterminated quoted value",
	                             "t.ini:9: d: unexpected text after the closing quote",
	                             "t.ini:10: unknown directive '%bogus'",
	                             "t.ini:11: empty section name",
	                             "t.ini:13: unexpected text after section header [sec2]",
	                             "t.ini:16: unterminated quoted key",
	                             NULL};
	is_list(&errors, want_errors, "errors");
	const char *want_keys[] = {"t.ini:2 [ok] a=1", "t.ini:15 [good] f=6", NULL};
	is_list(&keys, want_keys, "keys around errors");
	strlist_free(&keys);
	strlist_free(&errors);

	strlist_init(&keys);
	strlist_init(&errors);
	ok(!ini_parse_string("u.ini", "x = 1\n[s]\ny = 2\n", record, &keys, &errors),
	   "key before any section: false");
	const char *want_e2[] = {"u.ini:1: 'x' is outside of any [section]", NULL};
	is_list(&errors, want_e2, "outside section");
	const char *want_k2[] = {"u.ini:3 [s] y=2", NULL};
	is_list(&keys, want_k2, "key after the error");
	strlist_free(&keys);
	strlist_free(&errors);
}

static void test_crlf_bom_and_sections(void)
{
	struct strlist keys, errors;
	strlist_init(&keys);
	strlist_init(&errors);
	ok(ini_parse_string("w.ini",
	                    "\xEF\xBB\xBF[PgBouncer]\r\nListen_Port = 6432\r\n\r\n[databases]\r\n"
	                    "Db = host=x\r\nlast = no newline",
	                    record, &keys, &errors),
	   "CRLF and BOM");
	const char *want[] = {"w.ini:2 [PgBouncer] Listen_Port=6432",
	                      "w.ini:5 [databases] Db=host=x",
	                      "w.ini:6 [databases] last=no newline", NULL};
	is_list(&keys, want, "sections and keys passed as written");
	is_int((long)errors.n, 0, "no errors");
	strlist_free(&keys);
	strlist_free(&errors);
}

static void test_include(void)
{
	struct strlist keys, errors;
	char main_path[4096], sub[4096], missing[4096];
	snprintf(main_path, sizeof(main_path), "%s", data_path("conf_inc_main.ini"));
	snprintf(sub, sizeof(sub), "%s", data_path("conf_inc_sub.ini"));
	snprintf(missing, sizeof(missing), "%s", data_path("conf_inc_missing.ini"));
	strlist_init(&keys);
	strlist_init(&errors);
	ok(!ini_parse_file(main_path, record, &keys, &errors), "include with errors: false");
	char w[4][4200];
	snprintf(w[0], sizeof(w[0]), "%s:2 [pgmoat] a=1", main_path);
	snprintf(w[1], sizeof(w[1]), "%s:1 [pgmoat] b=2", sub);
	snprintf(w[2], sizeof(w[2]), "%s:3 [databases] db=x", sub);
	snprintf(w[3], sizeof(w[3]), "%s:4 [databases] c=3", main_path);
	const char *want[] = {w[0], w[1], w[2], w[3], NULL};
	is_list(&keys, want, "included keys in order, with their file and line");
	char e[2][8400];
	snprintf(e[0], sizeof(e[0]), "%s:5: %%include '%s': cannot open: No such file or directory",
	         main_path, missing);
	snprintf(e[1], sizeof(e[1]), "%s:6: %%include needs a file name", main_path);
	const char *want_e[] = {e[0], e[1], NULL};
	is_list(&errors, want_e, "include errors");
	strlist_free(&keys);
	strlist_free(&errors);

	/* A file including itself stops at the depth limit, with one error. */
	char loop[4096];
	snprintf(loop, sizeof(loop), "%s", data_path("conf_inc_loop.ini"));
	strlist_init(&keys);
	strlist_init(&errors);
	ok(!ini_parse_file(loop, record, &keys, &errors), "include loop: false");
	char e2[4200];
	snprintf(e2, sizeof(e2), "%s:2: %%include nested more than 8 levels deep", loop);
	const char *want_e2[] = {e2, NULL};
	is_list(&errors, want_e2, "include loop error");
	strlist_free(&keys);
	strlist_free(&errors);
}

static void test_unreadable(void)
{
	struct strlist keys, errors;
	strlist_init(&keys);
	strlist_init(&errors);
	ok(!ini_parse_file("/nonexistent/pgmoat.ini", record, &keys, &errors), "missing file");
	const char *want[] = {"/nonexistent/pgmoat.ini: cannot open: No such file or directory",
	                      NULL};
	is_list(&errors, want, "missing file error");
	strlist_free(&errors);

	strlist_init(&errors);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/tests/unit/data", srcdir());
	ok(!ini_parse_file(dir, record, &keys, &errors), "a directory");
	char e[4200];
	snprintf(e, sizeof(e), "%s: cannot open: Is a directory", dir);
	const char *want_d[] = {e, NULL};
	is_list(&errors, want_d, "directory error");
	is_int((long)keys.n, 0, "no keys");
	strlist_free(&keys);
	strlist_free(&errors);
}

/* Every section header is announced at its own line, keys or not. */
static void test_headers(void)
{
	struct strlist got, errors;
	strlist_init(&got);
	strlist_init(&errors);
	bool okay = ini_parse_string("h.ini", "[a]\n\n[empty]\n[b]\nk = v\n", record_headers, &got,
	                             &errors);
	ok(okay, "headers: parses");
	static const char *const want[] = {"h.ini:1 [a]", "h.ini:3 [empty]", "h.ini:4 [b]", NULL};
	is_list(&got, want, "headers announced");
	strlist_free(&got);
	strlist_free(&errors);
}
int main(void)
{
	test_headers();

	test_comments_and_quotes();
	test_errors();
	test_crlf_bom_and_sections();
	test_include();
	test_unreadable();
	return tap_done();
}

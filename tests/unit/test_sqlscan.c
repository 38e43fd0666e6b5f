/* The SQL lexer's tokens, which statements the scanner flags as leaving
 * session state, and which texts the classifier lets run on a replica.
 * Every query is scanned from a heap copy of exactly its length, with no NUL
 * after it, so a read past the end shows up under a sanitizer. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "proxy/sqlscan.h"
#include "tests/lib/tap.h"

/* A copy of q[0..len) with nothing after it. */
static char *exact_copy(const char *q, size_t len)
{
	char *c = malloc(len ? len : 1);
	if (!c)
		tap_bail("out of memory");
	memcpy(c, q, len);
	return c;
}

static void scan_exact(const char *q, size_t len, struct sql_scan *out)
{
	char *c = exact_copy(q, len);
	sql_scan(c, len, out);
	free(c);
}

/* q for a test description, on one line. */
static const char *oneline(const char *q)
{
	static char buf[256];
	size_t i;
	for (i = 0; q[i] && i < sizeof(buf) - 1; i++)
		buf[i] = q[i] == '\n' || q[i] == '\t' ? ' ' : q[i];
	buf[i] = '\0';
	return buf;
}

static const struct {
	const char *q;
	unsigned flags;
	const char *what;
} cases[] = {
        /* nothing to flag */
        {"SELECT 1", 0, ""},
        {"", 0, ""},
        {"   \n\t ", 0, ""},
        {"SELECT listen FROM t", 0, ""},
        {"SELECT 'LISTEN x'", 0, ""},
        {"SELECT 'it''s; LISTEN x'", 0, ""},
        {"SELECT E'it\\'s; LISTEN x'", 0, ""},
        {"SELECT E'\\\\'; SELECT 'a\\'; SELECT 1", 0, ""},
        {"SELECT $$pg_advisory_lock(1)$$", 0, ""},
        {"SELECT $fn$ $$ ; LISTEN x; $$ $fn$", 0, ""},
        {"SELECT $a$ $b$ pg_advisory_lock(1) $b$ $a$", 0, ""},
        {"-- LISTEN x\nSELECT 1", 0, ""},
        {"/* LISTEN x; pg_advisory_lock(1) */ SELECT 1", 0, ""},
        {"/* a /* nested */ LISTEN x; */ SELECT 1", 0, ""},
        {"SELECT \"pg_advisory_lock(1); LISTEN x\"", 0, ""},
        {"SELECT \"a\"\"b; LISTEN x\"", 0, ""},
        {"SELECT pg_advisory_xact_lock(1)", 0, ""},
        {"SELECT pg_advisory_xact_lock_shared(1), pg_try_advisory_xact_lock(2)", 0, ""},
        {"SELECT pg_try_advisory_xact_lock_shared(1)", 0, ""},
        {"SELECT pg_advisory_unlock(1), pg_advisory_unlock_shared(1)", 0, ""},
        {"SELECT pg_advisory_unlock_all()", 0, ""},
        {"SELECT pg_advisory_lock FROM t", 0, ""},
        {"SELECT \"PG_ADVISORY_LOCK\"(1)", 0, ""},
        {"SELECT my_set_config(1), set_configs(2)", 0, ""},
        {"SELECT current_setting('x')", 0, ""},
        {"NOTIFY listen", 0, ""},
        {"UNLISTEN x", 0, ""},
        {"PREPARE TRANSACTION 'gid'", 0, ""},
        {"prepare transaction 'x''y'", 0, ""},
        {"COMMIT PREPARED 'gid'", 0, ""},
        {"EXECUTE prepare_me(1)", 0, ""},
        {"DEALLOCATE prepare", 0, ""},
        {"DECLARE c CURSOR FOR SELECT 1", 0, ""},
        {"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", 0, ""},
        {"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", 0, ""},
        {"SELECT 1 WITH HOLD", 0, ""},
        {"CREATE TEMP TABLE t (a int) ON COMMIT DROP", 0, ""},
        {"create temporary table t on commit drop as select 1", 0, ""},
        {"CREATE LOCAL TEMP TABLE IF NOT EXISTS t (LIKE u) ON COMMIT DROP", 0, ""},
        {"CREATE TABLE temp (a int)", 0, ""},
        {"CREATE UNLOGGED TABLE t (a int)", 0, ""},
        {"CREATE TEMP FUNCTION f() AS 'x'", 0, ""},
        {"INSERT INTO temp VALUES (1)", 0, ""},
        {"INSERT INTO temp SELECT 1", 0, ""},
        {"WITH w AS (SELECT 1) INSERT INTO temp SELECT * FROM w", 0, ""},
        {"SELECT 1 INTO temp FROM t", 0, ""},
        {"SELECT 1 INTO t FROM u", 0, ""},
        {"SELECT 'set_config(' || 'temp'", 0, ""},
        {"SELECT template, attempt, temperature FROM t", 0, ""},
        {"SELECT 1; SELECT 2", 0, ""},

        /* advisory locks */
        {"SELECT pg_advisory_lock(1)", SQL_ADVISORY_LOCK, "pg_advisory_lock"},
        {"SELECT PG_ADVISORY_LOCK(1)", SQL_ADVISORY_LOCK, "PG_ADVISORY_LOCK"},
        {"select pg_advisory_lock_shared(1)", SQL_ADVISORY_LOCK, "pg_advisory_lock_shared"},
        {"SELECT pg_try_advisory_lock(1, 2)", SQL_ADVISORY_LOCK, "pg_try_advisory_lock"},
        {"SELECT pg_try_advisory_lock_shared(1)", SQL_ADVISORY_LOCK, "pg_try_advisory_lock_shared"},
        {"SELECT pg_catalog.pg_advisory_lock (1)", SQL_ADVISORY_LOCK, "pg_advisory_lock"},
        {"SELECT \"pg_catalog\".\"pg_advisory_lock\"(1)", SQL_ADVISORY_LOCK, "pg_advisory_lock"},
        {"SELECT pg_advisory_lock -- c\n /* c */ ($1)", SQL_ADVISORY_LOCK, "pg_advisory_lock"},
        {"SELECT * FROM t WHERE pg_try_advisory_lock(id)", SQL_ADVISORY_LOCK,
         "pg_try_advisory_lock"},
        {"SELECT 'x'; SELECT pg_advisory_lock(1)", SQL_ADVISORY_LOCK, "pg_advisory_lock"},

        /* LISTEN */
        {"LISTEN x", SQL_LISTEN, "LISTEN"},
        {"  listen \"Chan\";", SQL_LISTEN, "LISTEN"},
        {"/* hi */ LISTEN x", SQL_LISTEN, "LISTEN"},
        {"SELECT 1; LISTEN x", SQL_LISTEN, "LISTEN"},
        {"SELECT ';'; LISTEN x; SELECT 2", SQL_LISTEN, "LISTEN"},

        /* WITH HOLD */
        {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", SQL_WITH_HOLD, "DECLARE ... WITH HOLD"},
        {"declare \"c\" binary no scroll cursor with hold for select 1", SQL_WITH_HOLD,
         "DECLARE ... WITH HOLD"},
        {"BEGIN; DECLARE hold CURSOR WITH /* c */ HOLD FOR SELECT 1; COMMIT", SQL_WITH_HOLD,
         "DECLARE ... WITH HOLD"},

        /* temporary tables */
        {"CREATE TEMP TABLE t (a int)", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"create temporary table t (a int)", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE GLOBAL TEMPORARY TABLE t (a int)", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE LOCAL TEMP TABLE t (a int)", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS", SQL_TEMP_TABLE,
         "CREATE TEMP TABLE"},
        {"CREATE TEMP TABLE t AS SELECT 1 AS on_commit_drop", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE TEMP TABLE t (a text DEFAULT 'ON COMMIT DROP')", SQL_TEMP_TABLE,
         "CREATE TEMP TABLE"},
        {"CREATE TEMP TABLE t (a int); SELECT 1", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"CREATE TEMP VIEW v AS SELECT 1", SQL_TEMP_TABLE, "CREATE TEMP VIEW"},
        {"CREATE OR REPLACE TEMP RECURSIVE VIEW v (n) AS SELECT 1", SQL_TEMP_TABLE,
         "CREATE TEMP VIEW"},
        {"CREATE TEMPORARY SEQUENCE s", SQL_TEMP_TABLE, "CREATE TEMP SEQUENCE"},
        {"SELECT 1 INTO TEMP t", SQL_TEMP_TABLE, "SELECT ... INTO TEMP"},
        {"SELECT * INTO TEMPORARY TABLE t FROM u", SQL_TEMP_TABLE, "SELECT ... INTO TEMP"},
        {"SELECT a INTO LOCAL TEMP \"t\" FROM u", SQL_TEMP_TABLE, "SELECT ... INTO TEMP"},
        {"WITH w AS (SELECT 1) SELECT * INTO TEMP t FROM w", SQL_TEMP_TABLE,
         "SELECT ... INTO TEMP"},

        /* PREPARE */
        {"PREPARE p AS SELECT 1", SQL_PREPARE, "PREPARE"},
        {"prepare p (int, text) as select $1, $2", SQL_PREPARE, "PREPARE"},
        {"PREPARE \"p\" AS SELECT 1", SQL_PREPARE, "PREPARE"},
        {"PREPARE transaction AS SELECT 1", SQL_PREPARE, "PREPARE"},
        {"SELECT 1; PREPARE p AS SELECT 2", SQL_PREPARE, "PREPARE"},

        /* set_config */
        {"SELECT set_config('search_path', 'x', false)", SQL_SET_CONFIG, ""},
        {"SELECT pg_catalog.SET_CONFIG('a.b', 'c', true)", SQL_SET_CONFIG, ""},
        {"SELECT \"set_config\" ('a', 'b', false)", SQL_SET_CONFIG, ""},
        /* code that may change settings */
        {"DO $$BEGIN PERFORM set_config('search_path', 'a', false); END$$", SQL_SET_CONFIG, ""},
        {"do 'begin set search_path = a; end'", SQL_SET_CONFIG, ""},
        {"select 1; CALL proc()", SQL_SET_CONFIG, ""},
        {"INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", 0, ""},
        {"SELECT done, undo FROM todo", 0, ""},

        /* several at once: what names the first */
        {"LISTEN a; SELECT pg_advisory_lock(1), set_config('a', 'b', false)",
         SQL_LISTEN | SQL_ADVISORY_LOCK | SQL_SET_CONFIG, "LISTEN"},
        {"SELECT set_config('a', 'b', false); PREPARE p AS SELECT 1; LISTEN x",
         SQL_SET_CONFIG | SQL_PREPARE | SQL_LISTEN, "PREPARE"},
        {"CREATE TEMP TABLE t AS SELECT pg_advisory_lock(1)", SQL_TEMP_TABLE | SQL_ADVISORY_LOCK,
         "CREATE TEMP TABLE"},

        /* unterminated constructs at the end of the input */
        {"SELECT 'LISTEN x", 0, ""},
        {"SELECT E'LISTEN x\\", 0, ""},
        {"SELECT $$ LISTEN x", 0, ""},
        {"SELECT $t$ LISTEN x $t", 0, ""},
        {"SELECT 1 /* LISTEN x; /* */", 0, ""},
        {"SELECT \"LISTEN x\"\"", 0, ""},
        {"SELECT 1 -- LISTEN x", 0, ""},
        {"LISTEN x; SELECT 'oops", SQL_LISTEN, "LISTEN"},
        {"SELECT pg_advisory_lock", 0, ""},
        {"SELECT pg_advisory_lock /* (", 0, ""},
        {"SELECT pg_advisory_lock(", SQL_ADVISORY_LOCK, "pg_advisory_lock"},
        {"CREATE TEMP TABLE t (a text DEFAULT 'x", SQL_TEMP_TABLE, "CREATE TEMP TABLE"},
        {"PREPARE", 0, ""},
        {"PREPARE TRANSACTION", 0, ""},
        {"DECLARE c CURSOR WITH", 0, ""},
        {"SELECT 1 INTO TEMP", 0, ""},
        {"CREATE TEMP", 0, ""},
};

static void test_cases(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct sql_scan s;
		scan_exact(cases[i].q, strlen(cases[i].q), &s);
		is_int(s.flags, cases[i].flags, "flags: %s", oneline(cases[i].q));
		is_str(s.what, cases[i].what, "what: %s", oneline(cases[i].q));
	}
}

static void test_lengths(void)
{
	struct sql_scan s;
	const char *q = "SELECT 1; LISTEN x";

	scan_exact(q, strlen(q), &s);
	is_int(s.flags, SQL_LISTEN, "whole text: LISTEN");
	scan_exact(q, 12, &s);
	is_int(s.flags, 0, "cut to \"SELECT 1; LI\": nothing");
	/* the C string goes on past len: only len counts */
	sql_scan(q, 12, &s);
	is_int(s.flags, 0, "len shorter than the C string");
	sql_scan("LISTEN", 3, &s);
	is_int(s.flags, 0, "\"LIS\" of \"LISTEN\"");
	sql_scan("SELECT pg_advisory_lock(1)", 23, &s);
	is_int(s.flags, 0, "cut before the parenthesis");

	static const char nul[] = "SELECT 1\0; LISTEN x";
	scan_exact(nul, sizeof(nul) - 1, &s);
	is_int(s.flags, 0, "a NUL ends the text");
	static const char nul2[] = "SELECT pg_advisory_lock\0(1)";
	scan_exact(nul2, sizeof(nul2) - 1, &s);
	is_int(s.flags, 0, "a NUL ends the text before the parenthesis");
	static const char nul3[] = "LISTEN x\0garbage";
	scan_exact(nul3, sizeof(nul3) - 1, &s);
	is_int(s.flags, SQL_LISTEN, "text before a NUL is scanned");

	sql_scan(NULL, 0, &s);
	is_int(s.flags, 0, "NULL, 0: nothing");
	is_str(s.what, "", "NULL, 0: what empty");
	strlcopy(s.what, "stale", sizeof(s.what));
	s.flags = 99;
	sql_scan("", 0, &s);
	ok(s.flags == 0 && s.what[0] == '\0', "output cleared on empty input");

	/* SELECT "pg_advisory_lock(1)xxx...x: a quoted identifier that never
	 * closes, to the last byte */
	char big[300];
	memset(big, 'x', sizeof(big));
	memcpy(big, "SELECT \"pg_advisory_lock(1)", 27);
	scan_exact(big, sizeof(big), &s);
	is_int(s.flags, 0, "unterminated long quoted identifier");
}

/* what names the first thing flagged, not the first flag bit. */
static void test_first_what(void)
{
	struct sql_scan s;
	const char *q = "SELECT 1 INTO TEMP t; SELECT pg_advisory_lock(1)";
	scan_exact(q, strlen(q), &s);
	is_int(s.flags, SQL_TEMP_TABLE | SQL_ADVISORY_LOCK, "both flagged");
	is_str(s.what, "SELECT ... INTO TEMP", "first one named");
	ok(strlen(s.what) < sizeof(s.what), "what terminated");
}

struct want_tok {
	enum sql_tok_kind kind;
	const char *text;
};

static void lex_is(const char *q, const struct want_tok *want, size_t n)
{
	char *c = exact_copy(q, strlen(q));
	struct sql_lexer lx;
	struct sql_tok t;
	size_t i = 0;
	bool good = true;

	sql_lexer_init(&lx, c, strlen(q));
	while (sql_next(&lx, &t)) {
		if (i >= n || t.kind != want[i].kind || t.len != strlen(want[i].text) ||
		    memcmp(t.p, want[i].text, t.len) != 0) {
			diag("token %zu: %s \"%.*s\"", i, sql_tok_kind_name(t.kind), (int)t.len,
			     t.p);
			good = false;
		}
		i++;
	}
	ok(good && i == n && t.kind == SQL_TOK_END && t.len == 0, "lex: %s", oneline(q));
	ok(!sql_next(&lx, &t) && t.kind == SQL_TOK_END, "lex: END again after the end");
	free(c);
}

#define LEX(q, ...)                                                                                \
	do {                                                                                       \
		static const struct want_tok w_[] = {__VA_ARGS__};                                 \
		lex_is(q, w_, ARRAY_SIZE(w_));                                                     \
	} while (0)

static void test_lexer(void)
{
	LEX("SELECT a.b, \"Q\"\"x\", E'it\\'s', $tag$ $$ 'x' $tag$, 1.5e-3, $1::int4 <> -- c\n"
	    "/* /* n */ */ x;",
	    {SQL_TOK_IDENT, "SELECT"}, {SQL_TOK_IDENT, "a"}, {SQL_TOK_OP, "."},
	    {SQL_TOK_IDENT, "b"}, {SQL_TOK_OP, ","}, {SQL_TOK_QIDENT, "Q\"\"x"}, {SQL_TOK_OP, ","},
	    {SQL_TOK_STRING, "E'it\\'s'"}, {SQL_TOK_OP, ","},
	    {SQL_TOK_STRING, "$tag$ $$ 'x' $tag$"}, {SQL_TOK_OP, ","}, {SQL_TOK_NUMBER, "1.5e-3"},
	    {SQL_TOK_OP, ","}, {SQL_TOK_PARAM, "$1"}, {SQL_TOK_OP, "::"}, {SQL_TOK_IDENT, "int4"},
	    {SQL_TOK_OP, "<>"}, {SQL_TOK_IDENT, "x"}, {SQL_TOK_SEMI, ";"});
	LEX("U&'d\\0061' U&\"d\\0061\" B'101' X'1F' N'n' 'a''b' e'\\\\'",
	    {SQL_TOK_STRING, "U&'d\\0061'"}, {SQL_TOK_QIDENT, "d\\0061"},
	    {SQL_TOK_STRING, "B'101'"}, {SQL_TOK_STRING, "X'1F'"}, {SQL_TOK_STRING, "N'n'"},
	    {SQL_TOK_STRING, "'a''b'"}, {SQL_TOK_STRING, "e'\\\\'"});
	LEX("0x1F .5 1_000 10. a$b $$$$ $ _x \xc3\xa9t\xc3\xa9 \"\"", {SQL_TOK_NUMBER, "0x1F"},
	    {SQL_TOK_NUMBER, ".5"}, {SQL_TOK_NUMBER, "1_000"}, {SQL_TOK_NUMBER, "10."},
	    {SQL_TOK_IDENT, "a$b"}, {SQL_TOK_STRING, "$$$$"}, {SQL_TOK_OP, "$"},
	    {SQL_TOK_IDENT, "_x"}, {SQL_TOK_IDENT, "\xc3\xa9t\xc3\xa9"}, {SQL_TOK_QIDENT, ""});
	LEX("a>=-1 b@-2 c+/*x*/d e--x\n f[1:2] g!=h ->> (i)", {SQL_TOK_IDENT, "a"},
	    {SQL_TOK_OP, ">="}, {SQL_TOK_OP, "-"}, {SQL_TOK_NUMBER, "1"}, {SQL_TOK_IDENT, "b"},
	    {SQL_TOK_OP, "@-"}, {SQL_TOK_NUMBER, "2"}, {SQL_TOK_IDENT, "c"}, {SQL_TOK_OP, "+"},
	    {SQL_TOK_IDENT, "d"}, {SQL_TOK_IDENT, "e"}, {SQL_TOK_IDENT, "f"}, {SQL_TOK_OP, "["},
	    {SQL_TOK_NUMBER, "1"}, {SQL_TOK_OP, ":"}, {SQL_TOK_NUMBER, "2"}, {SQL_TOK_OP, "]"},
	    {SQL_TOK_IDENT, "g"}, {SQL_TOK_OP, "!="}, {SQL_TOK_IDENT, "h"}, {SQL_TOK_OP, "->>"},
	    {SQL_TOK_OP, "("}, {SQL_TOK_IDENT, "i"}, {SQL_TOK_OP, ")"});
	/* unterminated: to the end, nothing after */
	LEX("x 'abc", {SQL_TOK_IDENT, "x"}, {SQL_TOK_STRING, "'abc"});
	LEX("x E'ab\\", {SQL_TOK_IDENT, "x"}, {SQL_TOK_STRING, "E'ab\\"});
	LEX("x $q$ab$q", {SQL_TOK_IDENT, "x"}, {SQL_TOK_STRING, "$q$ab$q"});
	LEX("x \"ab\"\"", {SQL_TOK_IDENT, "x"}, {SQL_TOK_QIDENT, "ab\"\""});
	LEX("x /* a /* b */ y", {SQL_TOK_IDENT, "x"});
	LEX("x -- y", {SQL_TOK_IDENT, "x"});
	LEX("x $", {SQL_TOK_IDENT, "x"}, {SQL_TOK_OP, "$"});
	LEX("x 1e", {SQL_TOK_IDENT, "x"}, {SQL_TOK_NUMBER, "1e"});

	struct sql_lexer lx;
	struct sql_tok t;
	sql_lexer_init(&lx, NULL, 0);
	ok(!sql_next(&lx, &t) && t.kind == SQL_TOK_END, "empty input: END");
	sql_lexer_init(&lx, "SELECT", 3);
	ok(sql_next(&lx, &t) && t.kind == SQL_TOK_IDENT && t.len == 3, "len respected: SEL");
	ok(!sql_next(&lx, &t), "then END");
	is_str(sql_tok_kind_name(SQL_TOK_QIDENT), "SQL_TOK_QIDENT", "kind name");
	is_str(sql_tok_kind_name(SQL_TOK_SEMI), "SQL_TOK_SEMI", "last kind name");
}

static void test_tok_is(void)
{
	struct sql_lexer lx;
	struct sql_tok t;
	const char *q = "SeLeCt \"Select\" 'select' sel";

	sql_lexer_init(&lx, q, strlen(q));
	sql_next(&lx, &t);
	ok(sql_tok_is(&t, "select"), "IDENT matches ignoring case");
	ok(sql_tok_is(&t, "SELECT"), "IDENT matches an upper-case word");
	ok(!sql_tok_is(&t, "selects"), "longer word does not match");
	ok(!sql_tok_is(&t, "sel"), "shorter word does not match");
	sql_next(&lx, &t);
	ok(sql_tok_is(&t, "Select"), "QIDENT matches exactly");
	ok(!sql_tok_is(&t, "select"), "QIDENT is case-sensitive");
	ok(!sql_tok_is(&t, "Selec"), "QIDENT: shorter word does not match");
	sql_next(&lx, &t);
	ok(!sql_tok_is(&t, "'select'") && !sql_tok_is(&t, "select"), "STRING never matches");
	sql_next(&lx, &t);
	ok(sql_tok_is(&t, "SEL") && !sql_tok_is(&t, ""), "last word");
}

/* sql_read_only() */

static bool read_only_exact(const char *q, size_t len, const struct strlist *funcs)
{
	char *c = exact_copy(q, len);
	bool ro = sql_read_only(c, len, funcs);
	free(c);
	return ro;
}

/* write_functions for ro_cases: prefix, mixed case. */
static const char *const ro_funcs[] = {"nextval", "setval", "lo_*", "Audit_Log"};

static const struct {
	const char *q;
	bool ro;
} ro_cases[] = {
        /* plain queries */
        {"SELECT 1", true},
        {"select 1;", true},
        {"SELECT 1 ;  -- done\n", true},
        {"SELECT 1; /* c */ ;\n", true},
        {"  /* lead */ SELECT a FROM t WHERE b = $1", true},
        {"SELECT a, count(*) FROM t GROUP BY a HAVING count(*) > 1 ORDER BY 2 LIMIT 5", true},
        {"VALUES (1), (2)", true},
        {"TABLE t", true},
        {"(SELECT 1)", true},
        {"((SELECT 1) UNION ALL (SELECT 2)) ORDER BY 1", true},
        {"SELECT 1 UNION SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4", true},
        {"SELECT (SELECT max(a) FROM t), count(*) FROM u", true},
        {"SELECT * FROM t FOR READ ONLY", true},
        {"SELECT substring('abc' FROM 1 FOR 2)", true},
        {"SELECT t.update, t.delete, t.into FROM t", true},
        {"SELECT 1 AS insert, 2 AS into, 3 AS update", true},
        {"SELECT \"update\", \"for\" FROM t", true},
        {"SELECT 'for update', 'into', 'delete'", true},
        /* WITH */
        {"WITH w AS (SELECT 1) SELECT * FROM w", true},
        {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 9) "
         "SELECT * FROM r",
         true},
        {"WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b",
         true},
        {"WITH w AS (SELECT 1) TABLE w", true},
        {"(WITH w AS (SELECT 1) SELECT * FROM w)", true},
        {"WITH w AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM w", false},
        {"WITH w AS (UPDATE t SET a = 1 RETURNING a) SELECT 1", false},
        {"with w as (delete from t returning *) select 1", false},
        {"WITH w AS (MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE) SELECT 1", false},
        {"WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) SELECT * FROM a", false},
        {"WITH a AS (WITH b AS (SELECT 1) DELETE FROM t RETURNING *) SELECT * FROM a", false},
        {"WITH w AS (SELECT 1) INSERT INTO t SELECT * FROM w", false},
        {"WITH w AS (SELECT 1) DELETE FROM t", false},
        {"WITH w AS (SELECT 1) UPDATE t SET a = 2", false},
        /* locking clauses */
        {"SELECT * FROM t FOR UPDATE", false},
        {"SELECT * FROM t FOR NO KEY UPDATE", false},
        {"SELECT * FROM t FOR SHARE", false},
        {"select * from t for key share of t nowait", false},
        {"SELECT * FROM t FOR UPDATE SKIP LOCKED LIMIT 1", false},
        {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", false},
        {"SELECT * FROM t WHERE a IN (SELECT a FROM u FOR SHARE SKIP LOCKED)", false},
        {"WITH w AS (SELECT * FROM t FOR KEY SHARE) SELECT * FROM w", false},
        {"(SELECT 1 FROM t) FOR UPDATE", false},
        {"SELECT 1 UNION (SELECT a FROM t FOR NO KEY UPDATE)", false},
        /* INTO */
        {"SELECT * INTO new_t FROM t", false},
        {"SELECT 1 INTO TEMP x", false},
        {"WITH w AS (SELECT 1) SELECT * INTO x FROM w", false},
        {"(SELECT 1 INTO x)", false},
        {"INSERT INTO t SELECT * FROM u", false},
        {"SELECT 'into' AS x", true},
        /* write_functions */
        {"SELECT nextval('s')", false},
        {"SELECT NEXTVAL('s')", false},
        {"SELECT pg_catalog.nextval('s')", false},
        {"SELECT \"pg_catalog\".\"nextval\"('s')", false},
        {"SELECT \"nextval\"('s')", false},
        {"SELECT \"Nextval\"(1)", true},
        {"SELECT nextval FROM t", true},
        {"SELECT nextval_x('s'), my_nextval(1), nextva(1)", true},
        {"SELECT nextval /* c */ ('s')", false},
        {"SELECT nextval -- c\n('s')", false},
        {"SELECT a FROM t WHERE b IN (SELECT setval('s', 1))", false},
        {"SELECT * FROM t WHERE a = (SELECT 1 WHERE nextval('s') > 0)", false},
        {"VALUES (1), (nextval('s'))", false},
        {"WITH w AS (SELECT setval('s', 1, true)) SELECT * FROM w", false},
        {"SELECT lo_import('/tmp/x')", false},
        {"SELECT LO_UNLINK(1)", false},
        {"SELECT lo_(1)", false},
        {"SELECT lo(1), lo_ FROM t", true},
        {"SELECT \"lo_Export\"(1, 'x')", false},
        {"SELECT \"LO_export\"(1)", true},
        {"SELECT audit_log(1)", false},
        {"SELECT AUDIT_LOG(1)", false},
        {"SELECT \"Audit_Log\"(1)", false},
        {"SELECT \"audit_log\"(1)", true},
        {"SELECT 1 AS nextval", true},
        {"SELECT 'nextval('", true},
        {"SELECT $$nextval('s')$$", true},
        {"SELECT /* nextval( */ 1", true},
        {"SELECT \"nextval(\"", true},
        /* lexing */
        {"SELECT 'a;b'", true},
        {"SELECT E'it\\'s; DELETE FROM t'", true},
        {"SELECT e'\\\\', E'\\''", true},
        {"SELECT 'it''s; DELETE'", true},
        {"SELECT 'a'''", true},
        {"SELECT ''", true},
        {"SELECT $fn$ ; DELETE FROM t; $fn$", true},
        {"SELECT $a$ $b$ ; $b$ $a$, 1", true},
        {"SELECT $$$$", true},
        {"SELECT 1 /* a /* nested ; */ still; */", true},
        {"SELECT \"a;b\", \"x\"\"; y\" FROM t", true},
        {"SELECT U&\"a\" FROM t", true},
        {"SELECT 1 -- ; DELETE FROM t", true},
        {"SELECT E'\\\\'; DELETE FROM t", false},
        {"SELECT 'a\\'; SELECT 1", false},
        {"SELECT 1 /* a */ ; /* b */ SELECT 2", false},
        /* unterminated */
        {"SELECT 'abc", false},
        {"SELECT 'a''", false},
        {"SELECT E'abc\\'", false},
        {"SELECT $$abc", false},
        {"SELECT $$$", false},
        {"SELECT $t$ abc $t", false},
        {"SELECT \"abc", false},
        {"SELECT \"a\"\"", false},
        {"SELECT 1 /* abc", false},
        {"SELECT 1 /* a /* b */", false},
        {"SELECT (1", false},
        {"SELECT 1)", false},
        /* pgmoat:primary */
        {"/* pgmoat:primary */ SELECT 1", false},
        {"SELECT 1 -- pgmoat:primary", false},
        {"SELECT 1; -- PGMOAT:Primary\n", false},
        {"SELECT /* outer /* pgmoat:primary */ */ 1", false},
        {"SELECT 1 /* route: pgmoat:primary, please */", false},
        {"BEGIN READ ONLY; SELECT 1 /* pgmoat:primary */", false},
        {"BEGIN /* pgmoat:primary */ READ ONLY", false},
        {"SELECT 'pgmoat:primary'", true},
        {"SELECT 1 AS \"pgmoat:primary\"", true},
        {"SELECT $$/* pgmoat:primary */$$", true},
        {"SELECT 1 /* pgmoat: primary */", true},
        /* everything else */
        {"", false},
        {"   \n", false},
        {"-- nothing\n", false},
        {";", false},
        {"; SELECT 1", false},
        {"SELECT 1; SELECT 2", false},
        {"SELECT 1; INSERT INTO t VALUES (1)", false},
        {"INSERT INTO t VALUES (1)", false},
        {"UPDATE t SET a = 1", false},
        {"DELETE FROM t", false},
        {"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", false},
        {"CALL p()", false},
        {"DO $$BEGIN END$$", false},
        {"SET search_path = a", false},
        {"SHOW search_path", false},
        {"EXPLAIN SELECT 1", false},
        {"EXPLAIN ANALYZE SELECT 1", false},
        {"COPY t TO STDOUT", false},
        {"PREPARE p AS SELECT 1", false},
        {"EXECUTE p", false},
        {"CREATE TABLE t AS SELECT 1", false},
        {"DECLARE c CURSOR FOR SELECT 1", false},
        {"LOCK TABLE t", false},
        {"LISTEN x", false},
        {"COMMIT", false},
        {"SELECT 1; BEGIN READ ONLY", false},
        /* BEGIN ... READ ONLY */
        {"BEGIN READ ONLY", true},
        {"begin read only;", true},
        {"BEGIN TRANSACTION READ ONLY", true},
        {"BEGIN WORK READ ONLY", true},
        {"START TRANSACTION READ ONLY", true},
        {"START TRANSACTION READ ONLY, DEFERRABLE", true},
        {"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", true},
        {"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", true},
        {"BEGIN READ ONLY ISOLATION LEVEL READ UNCOMMITTED", true},
        {"START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY NOT DEFERRABLE", true},
        {"BEGIN READ ONLY, NOT DEFERRABLE", true},
        {"BEGIN READ /* c */ ONLY -- c", true},
        {"BEGIN READ ONLY; SELECT 1", true},
        {"BEGIN READ ONLY; SELECT 1; SELECT 2; COMMIT", true},
        {"BEGIN READ ONLY; SELECT 'COMMIT; SET TRANSACTION READ WRITE'", true},
        {"BEGIN", false},
        {"BEGIN;", false},
        {"BEGIN; SELECT 1", false},
        {"BEGIN READ WRITE", false},
        {"BEGIN ISOLATION LEVEL READ COMMITTED", false},
        {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", false},
        {"BEGIN READ ONLY, READ WRITE", false},
        {"BEGIN READ WRITE, READ ONLY", false},
        {"START READ ONLY", false},
        {"START TRANSACTION", false},
        {"BEGIN READ ONLY,", false},
        {"BEGIN , READ ONLY", false},
        {"BEGIN READ ONLY,, DEFERRABLE", false},
        {"BEGIN READ ONLY garbage", false},
        {"BEGIN READ", false},
        {"BEGIN ISOLATION LEVEL", false},
        {"BEGIN ISOLATION LEVEL REPEATABLE", false},
        {"BEGIN NOT READ ONLY", false},
        {"BEGIN \"read\" only", false},
        {"BEGIN READ ONLY; COMMIT; INSERT INTO t VALUES (1)", false},
        {"BEGIN READ ONLY; ROLLBACK; SELECT 1", false},
        {"BEGIN READ ONLY; PREPARE TRANSACTION 'x'; SELECT 1", false},
        {"BEGIN READ ONLY; SET TRANSACTION READ WRITE", false},
        {"BEGIN READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false},
        {"BEGIN READ ONLY; SELECT 'oops", false},
        {"BEGIN READ ONLY; /* open", false},
};

/* With write_functions = "*", every call is a write: keywords and types
 * that take '(' must not be taken for calls. */
static const struct {
	const char *q;
	bool ro;
} ro_star_cases[] = {
        {"SELECT 1 WHERE 1 IN (1, 2) AND 2 NOT IN (3)", true},
        {"SELECT EXISTS (SELECT 1), 1 = ANY (ARRAY[1]), 1 = ALL (ARRAY[1]), ARRAY(SELECT 1)", true},
        {"SELECT ROW(1, 2), (1, 2) IS NOT NULL", true},
        {"SELECT x::numeric(10, 2), CAST(x AS varchar(10)), x::character varying(5) FROM t", true},
        {"SELECT timestamp(3) '2020-01-01', interval(2) '1 s'", true},
        {"SELECT * FROM generate_series AS g(n)", true},
        {"SELECT 1 FROM t GROUP BY CUBE (a), ROLLUP (b), GROUPING SETS ((a))", true},
        {"SELECT a FROM t ORDER BY (a) LIMIT (1) OFFSET (1)", true},
        {"SELECT * FROM t WHERE a BETWEEN (1) AND (2) OR NOT (b) AND (c) LIKE ('x')", true},
        {"SELECT DISTINCT ON (a) a FROM ONLY (t)", true},
        {"SELECT * FROM a JOIN b USING (id) JOIN LATERAL (SELECT 1) c ON (true)", true},
        {"SELECT CASE (a) WHEN (1) THEN (2) ELSE (3) END FROM t", true},
        {"SELECT COALESCE(a, 1), NULLIF(a, 1), GREATEST(a, 1), LEAST(a, 1) FROM t", true},
        {"WITH w AS (SELECT 1) SELECT * FROM w UNION (SELECT 2) EXCEPT (SELECT 3)", true},
        {"VALUES (1)", true},
        {"SELECT now()", false},
        {"SELECT count(*) FILTER (WHERE a) FROM t", false},
        {"SELECT sum(a) OVER (PARTITION BY b) FROM t", false},
        {"SELECT \"in\"(1)", false},
        {"SELECT pg_catalog.char(1)", false},
        {"SELECT DISTINCT ON (a) f(b) FROM t", false},
        {"SELECT * FROM (VALUES (1)) v(a)", false}, /* taken for a call */
};

static void test_read_only_cases(void)
{
	struct strlist funcs, star;

	strlist_init(&funcs);
	for (size_t i = 0; i < ARRAY_SIZE(ro_funcs); i++)
		strlist_add(&funcs, ro_funcs[i]);
	for (size_t i = 0; i < ARRAY_SIZE(ro_cases); i++) {
		const char *q = ro_cases[i].q;
		is_int(read_only_exact(q, strlen(q), &funcs), ro_cases[i].ro, "read-only: %s",
		       oneline(q));
	}
	strlist_init(&star);
	strlist_add(&star, "*");
	for (size_t i = 0; i < ARRAY_SIZE(ro_star_cases); i++) {
		const char *q = ro_star_cases[i].q;
		is_int(read_only_exact(q, strlen(q), &star), ro_star_cases[i].ro,
		       "read-only, every function writes: %s", oneline(q));
	}
	strlist_free(&funcs);
	strlist_free(&star);
}

static void test_read_only_lists(void)
{
	struct strlist empty, odd;
	const char *q = "SELECT nextval('s'), lo_import('x')";

	ok(read_only_exact(q, strlen(q), NULL), "no write_functions: every call reads");
	strlist_init(&empty);
	ok(read_only_exact(q, strlen(q), &empty), "empty write_functions");
	strlist_init(&odd);
	strlist_add(&odd, "");
	strlist_add(&odd, "lo_import*");
	ok(!read_only_exact(q, strlen(q), &odd), "a prefix that is the whole name: lo_import*");
	q = "SELECT nextval('s')";
	ok(read_only_exact(q, strlen(q), &odd), "an empty item matches no name");
	strlist_free(&odd);
}

static void test_read_only_lengths(void)
{
	struct strlist funcs;
	const char *q = "SELECT 1; DELETE FROM t";

	strlist_init(&funcs);
	strlist_add(&funcs, "nextval");
	ok(!read_only_exact(q, strlen(q), &funcs), "whole text: two statements");
	ok(read_only_exact(q, 9, &funcs), "cut to \"SELECT 1;\"");
	ok(sql_read_only(q, 9, &funcs), "len shorter than the C string");
	ok(!read_only_exact(q, 3, &funcs), "\"SEL\"");
	q = "SELECT nextval('s')";
	ok(read_only_exact(q, 14, &funcs), "cut before the parenthesis");
	ok(!read_only_exact(q, 15, &funcs), "cut after the parenthesis");
	q = "SELECT 'a';";
	ok(!read_only_exact(q, 9, &funcs), "cut inside a string");

	static const char nul[] = "SELECT 1\0; DELETE FROM t";
	ok(read_only_exact(nul, sizeof(nul) - 1, &funcs), "a NUL ends the text");
	static const char nul2[] = "SELECT 'a\0'";
	ok(!read_only_exact(nul2, sizeof(nul2) - 1, &funcs), "a NUL inside a string ends it");
	ok(!sql_read_only(NULL, 0, &funcs), "NULL, 0");

	/* "SELECT 1" padded with blanks to the limit, and one byte past it */
	char *big = malloc(SQL_READ_ONLY_MAX + 1);
	if (!big)
		tap_bail("out of memory");
	memset(big, ' ', SQL_READ_ONLY_MAX + 1);
	memcpy(big, "SELECT 1", 8);
	ok(read_only_exact(big, SQL_READ_ONLY_MAX, &funcs), "text of SQL_READ_ONLY_MAX bytes");
	ok(!read_only_exact(big, SQL_READ_ONLY_MAX + 1, &funcs), "one byte more: too long");
	/* a quoted identifier that never closes, to the last byte */
	memcpy(big, "SELECT \"", 8);
	ok(!read_only_exact(big, 4096, &funcs), "unterminated long quoted identifier");
	free(big);
	strlist_free(&funcs);
}

int main(void)
{
	test_cases();
	test_lengths();
	test_first_what();
	test_lexer();
	test_tok_is();
	test_read_only_cases();
	test_read_only_lists();
	test_read_only_lengths();
	return tap_done();
}

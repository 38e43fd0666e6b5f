/* A one-pass SQL lexer, a scanner that finds statements leaving session
 * state on a server connection (state transaction pooling cannot carry from
 * one server to another), and a classifier of what may run on a replica.
 *
 * All work on (q, len) in place: the text need not be NUL-terminated, a NUL
 * byte ends it, nothing is allocated or copied and nothing past len is read.
 * standard_conforming_strings is assumed on: backslash escapes only in E''. */
#ifndef PGMOAT_PROXY_SQLSCAN_H
#define PGMOAT_PROXY_SQLSCAN_H

#include <stdbool.h>
#include <stddef.h>

/* SQL_TOK_END: no more text; IDENT: an unquoted word or keyword; QIDENT: a
 * "quoted" or U&"quoted" identifier; STRING: '..', E'..', B'..', X'..',
 * N'..', U&'..' or $tag$..$tag$; NUMBER: 42, 1.5e-3, .5, 0x1F; PARAM: $1;
 * OP: punctuation, "::", or an operator such as "<>"; SEMI: ";". */
#define SQL_TOK_KIND_LIST(X)                                                                       \
	X(SQL_TOK_END)                                                                             \
	X(SQL_TOK_IDENT)                                                                           \
	X(SQL_TOK_QIDENT)                                                                          \
	X(SQL_TOK_STRING)                                                                          \
	X(SQL_TOK_NUMBER)                                                                          \
	X(SQL_TOK_PARAM)                                                                           \
	X(SQL_TOK_OP)                                                                              \
	X(SQL_TOK_SEMI)

enum sql_tok_kind {
#define SQL_TOK_KIND_ENUM(name) name,
	SQL_TOK_KIND_LIST(SQL_TOK_KIND_ENUM)
#undef SQL_TOK_KIND_ENUM
};

/* Text of a token, pointing into the scanned query:
 * - QIDENT: the text between the quotes, "" and U& escapes left as written;
 * - STRING: the whole literal with its prefix and quotes (or dollar tags);
 * - everything else: the token as written.
 * An unterminated string, quoted identifier or comment runs to the end. */
struct sql_tok {
	enum sql_tok_kind kind;
	const char *p;
	size_t len;
};

struct sql_lexer {
	const char *p; /* next byte to read */
	const char *end; /* len, or the first NUL byte */
};

void sql_lexer_init(struct sql_lexer *lx, const char *q, size_t len);
/* The next token into *t; false (and a SQL_TOK_END token) at the end. */
bool sql_next(struct sql_lexer *lx, struct sql_tok *t);
/* Is t the word?  Case-insensitive (ASCII) for IDENT, exact for QIDENT
 * (compared with the raw text between the quotes), false for other kinds. */
bool sql_tok_is(const struct sql_tok *t, const char *word);
/* "SQL_TOK_IDENT" for SQL_TOK_IDENT. */
const char *sql_tok_kind_name(enum sql_tok_kind k);

/* Session state a statement would leave on the server connection. */
/* pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock and
 * pg_try_advisory_lock_shared called anywhere (not the _xact_ ones) */
#define SQL_ADVISORY_LOCK (1u << 0)
#define SQL_LISTEN (1u << 1) /* a LISTEN statement */
#define SQL_WITH_HOLD (1u << 2) /* DECLARE ... WITH HOLD: outlives its transaction */
/* CREATE [GLOBAL|LOCAL] TEMP[ORARY] TABLE|VIEW|SEQUENCE unless ON COMMIT
 * DROP; SELECT ... INTO TEMP[ORARY] */
#define SQL_TEMP_TABLE (1u << 3)
#define SQL_PREPARE (1u << 4) /* PREPARE name ... AS (not PREPARE TRANSACTION) */
/* set_config( called anywhere, or a DO or CALL statement: code that may
 * change settings without a SET command tag */
#define SQL_SET_CONFIG (1u << 5)

struct sql_scan {
	unsigned flags; /* SQL_* */
	/* The first flagged thing other than SQL_SET_CONFIG, for error
	 * messages: a function name as written ("PG_ADVISORY_LOCK"), or a
	 * description of the statement ("LISTEN", "DECLARE ... WITH HOLD",
	 * "CREATE TEMP TABLE", ...).  Empty when nothing else is flagged. */
	char what[64];
};

/* Scan a simple Query or Parse string; statements are separated by ';'. */
void sql_scan(const char *q, size_t len, struct sql_scan *out);

struct strlist;

/* Longer text is never classified as read-only. */
#define SQL_READ_ONLY_MAX (1024 * 1024)

/* Whether the SQL that begins a transaction may run on a replica under
 * read_routing = auto.  True for exactly:
 * - one statement (then only ';', blanks and comments) that is a plain
 *   query: SELECT, VALUES, TABLE or WITH, possibly in parentheses or joined
 *   by UNION/INTERSECT/EXCEPT, that nowhere has a locking clause
 *   (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE), INTO
 *   (SELECT ... INTO makes a table), INSERT, UPDATE, DELETE or MERGE (a
 *   data-modifying CTE, or WITH ... INSERT), nor calls a function named in
 *   write_functions (may be NULL);
 * - BEGIN [WORK | TRANSACTION] or START TRANSACTION whose modes include
 *   READ ONLY and neither READ WRITE nor ISOLATION LEVEL SERIALIZABLE (a
 *   standby refuses it).  More statements may follow (the transaction
 *   refuses writes, so they are not looked into), but not READ WRITE,
 *   SERIALIZABLE, or a statement after one that ends the transaction
 *   (COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION).
 * A word right after '.' or AS is a name, never one of the keywords above.
 * A function is called when an identifier is followed by '(' and is neither
 * a keyword that takes '(' (IN, ANY, ARRAY, VALUES, OVER, ...), a type name
 * with a modifier (numeric(10, 2), varchar(n)), a name right after AS (an
 * alias or CAST's type) nor a type right after "::" (an alias with column
 * names after ')', "(VALUES (1)) v(a)", counts as a call).  Its name (the last
 * component of a qualified one) matches an item ignoring ASCII case when
 * unquoted and exactly when quoted ("Nextval" is not nextval; "" escapes
 * are compared as written); an item ending in '*' matches names that begin
 * with the rest ("lo_*").
 * Always false when any comment contains "pgmoat:primary" (in any case), a
 * string, quoted identifier or block comment is unterminated, the text is
 * empty or longer than SQL_READ_ONLY_MAX.  The text need not be
 * NUL-terminated: a NUL byte ends it, as in sql_scan(). */
bool sql_read_only(const char *sql, size_t len, const struct strlist *write_functions);

#endif

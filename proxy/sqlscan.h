/* A one-pass SQL lexer, and a scanner that finds statements leaving session
 * state on a server connection (state transaction pooling cannot carry from
 * one server to another).
 *
 * Both work on (q, len) in place: the text need not be NUL-terminated, a NUL
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

#endif

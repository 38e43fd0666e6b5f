/* SQL lexer, session-state scanner and read-routing classifier.
 *
 * The lexer follows PostgreSQL's rules closely enough that words inside
 * strings, comments, dollar quotes and quoted identifiers are never taken for
 * keywords.  The scanner is a small state machine over its tokens: one per
 * statement for what follows a statement's first keyword, one for
 * SELECT ... INTO TEMP, and a look-back of two tokens for function calls and
 * ON COMMIT DROP.  The read-routing classifier reads the same tokens, with the
 * comments between them searched for a pgmoat:primary marker: one pass over
 * a query with its parenthesis depth and a two-token look-back, or a small
 * parser of BEGIN's transaction modes. */
#include <config.h>

#include "proxy/sqlscan.h"

#include <string.h>

#include "common/util.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	        (unsigned char)c >= 0x80;
}

static bool is_ident_char(char c)
{
	return is_ident_start(c) || is_digit(c) || c == '$';
}

static char to_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Characters PostgreSQL builds operators from. */
static bool is_op_char(char c)
{
	return c != '\0' && strchr("+-*/<>=~!@#%^&|`?", c) != NULL;
}

void sql_lexer_init(struct sql_lexer *lx, const char *q, size_t len)
{
	const char *nul;
	if (!len) {
		lx->p = lx->end = ""; /* q may be NULL */
		return;
	}
	nul = memchr(q, '\0', len);
	lx->p = q;
	lx->end = nul ? nul : q + len;
}

/* What skip_blank saw in the comments it skipped. */
struct blank {
	bool marker; /* a comment containing "pgmoat:primary" (any case) */
	bool open; /* a block comment that runs to the end */
};

#define PRIMARY_MARKER "pgmoat:primary"

/* Does [p, e) contain w, ignoring ASCII case? */
static bool contains_ci(const char *p, const char *e, const char *w)
{
	size_t n = strlen(w);
	for (; (size_t)(e - p) >= n; p++) {
		size_t i = 0;
		while (i < n && to_lower(p[i]) == w[i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* Whitespace, -- comments and nested block comments; what the comments held
 * into *b when b is not NULL. */
static const char *skip_blank(const char *p, const char *e, struct blank *b)
{
	while (p < e) {
		const char *s = p;
		if (is_space(*p)) {
			p++;
		} else if (*p == '-' && e - p >= 2 && p[1] == '-') {
			while (p < e && *p != '\n' && *p != '\r')
				p++;
			if (b && contains_ci(s, p, PRIMARY_MARKER))
				b->marker = true;
		} else if (*p == '/' && e - p >= 2 && p[1] == '*') {
			size_t depth = 1;
			p += 2;
			while (p < e && depth) {
				if (*p == '/' && e - p >= 2 && p[1] == '*') {
					depth++;
					p += 2;
				} else if (*p == '*' && e - p >= 2 && p[1] == '/') {
					depth--;
					p += 2;
				} else {
					p++;
				}
			}
			if (b && contains_ci(s, p, PRIMARY_MARKER))
				b->marker = true;
			if (b && depth)
				b->open = true;
		} else {
			break;
		}
	}
	return p;
}

/* From just after an opening quote to just after the closing one (a doubled
 * quote stands for itself; with `backslash`, \ escapes the next byte). */
static const char *skip_quoted(const char *p, const char *e, char quote, bool backslash,
                               bool *closed)
{
	while (p < e) {
		char c = *p++;
		if (backslash && c == '\\') {
			if (p < e)
				p++;
		} else if (c == quote) {
			if (p < e && *p == quote) {
				p++;
			} else {
				*closed = true;
				return p;
			}
		}
	}
	*closed = false;
	return e;
}

/* Length of the dollar-quote tag at s ("$$", "$tag$"), 0 if there is none. */
static size_t dollar_tag(const char *s, const char *e)
{
	const char *p = s + 1;
	if (p < e && is_ident_start(*p)) {
		while (p < e && is_ident_char(*p) && *p != '$')
			p++;
	}
	return p < e && *p == '$' ? (size_t)(p + 1 - s) : 0;
}

static const char *skip_dollar(const char *s, const char *e, size_t tag)
{
	const char *p = s + tag;
	while (p < e) {
		const char *d = memchr(p, '$', (size_t)(e - p));
		if (!d)
			break;
		if ((size_t)(e - d) >= tag && memcmp(d, s, tag) == 0)
			return d + tag;
		p = d + 1;
	}
	return e;
}

static const char *skip_number(const char *p, const char *e)
{
	while (p < e && (is_digit(*p) || *p == '_'))
		p++;
	if (p < e && *p == '.' && !(e - p >= 2 && p[1] == '.')) {
		p++;
		while (p < e && (is_digit(*p) || *p == '_'))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		const char *x = p + 1;
		if (x < e && (*x == '+' || *x == '-'))
			x++;
		if (x < e && is_digit(*x))
			p = x;
	}
	/* the rest of 0x1F, 0o17, 0b101, 1e10, or trailing junk */
	while (p < e &&
	       (is_digit(*p) || *p == '_' || (is_ident_start(*p) && (unsigned char)*p < 0x80)))
		p++;
	return p;
}

/* An operator as PostgreSQL reads one: it never contains -- or / *, and a
 * trailing + or - belongs to the next token unless the operator has one of
 * ~!@#^&|`?% in it ("=-1" is "=" "-" "1", "@-" stays whole). */
static const char *skip_operator(const char *s, const char *e)
{
	const char *p = s;
	bool special = false;
	while (p < e && is_op_char(*p)) {
		if (p > s && ((p[0] == '-' && p[-1] == '-') || (p[0] == '*' && p[-1] == '/'))) {
			p--;
			break;
		}
		if (strchr("~!@#^&|`?%", *p))
			special = true;
		p++;
	}
	while (!special && p - s > 1 && (p[-1] == '+' || p[-1] == '-'))
		p--;
	return p;
}

bool sql_next(struct sql_lexer *lx, struct sql_tok *t)
{
	const char *s = skip_blank(lx->p, lx->end, NULL), *e = lx->end;
	bool closed;
	t->p = s;
	if (s >= e) {
		lx->p = e;
		t->kind = SQL_TOK_END;
		t->len = 0;
		return false;
	}
	const char *p = s + 1;
	char c = *s, c1 = e - s >= 2 ? s[1] : 0, c2 = e - s >= 3 ? s[2] : 0;
	size_t tag;
	t->kind = SQL_TOK_OP;
	if (c == '\'' || (c1 == '\'' && strchr("eEbBxXnN", c)) ||
	    ((c == 'u' || c == 'U') && c1 == '&' && c2 == '\'')) {
		/* '..', E'..' (the only kind with \ escapes), B'', X'', N'', U&'' */
		t->kind = SQL_TOK_STRING;
		p = s + (c == '\'' ? 1 : c1 == '\'' ? 2 : 3);
		p = skip_quoted(p, e, '\'', c == 'e' || c == 'E', &closed);
	} else if (c == '"' || ((c == 'u' || c == 'U') && c1 == '&' && c2 == '"')) {
		t->kind = SQL_TOK_QIDENT;
		t->p = c == '"' ? s + 1 : s + 3;
		p = skip_quoted(t->p, e, '"', false, &closed);
		t->len = (size_t)(p - t->p) - (closed ? 1 : 0);
		lx->p = p;
		return true;
	} else if (is_ident_start(c)) {
		t->kind = SQL_TOK_IDENT;
		while (p < e && is_ident_char(*p))
			p++;
	} else if (is_digit(c) || (c == '.' && is_digit(c1))) {
		t->kind = SQL_TOK_NUMBER;
		p = skip_number(c == '.' ? s + 1 : s, e);
	} else if (c == '$' && is_digit(c1)) {
		t->kind = SQL_TOK_PARAM;
		while (p < e && is_digit(*p))
			p++;
	} else if (c == '$' && (tag = dollar_tag(s, e)) != 0) {
		t->kind = SQL_TOK_STRING;
		p = skip_dollar(s, e, tag);
	} else if (c == ';') {
		t->kind = SQL_TOK_SEMI;
	} else if (c == ':' && c1 == ':') {
		p = s + 2;
	} else if (is_op_char(c)) {
		p = skip_operator(s, e);
	}
	t->len = (size_t)(p - s);
	lx->p = p;
	return true;
}

bool sql_tok_is(const struct sql_tok *t, const char *word)
{
	size_t i;
	if (t->kind == SQL_TOK_QIDENT)
		return strncmp(t->p, word, t->len) == 0 && word[t->len] == '\0';
	if (t->kind != SQL_TOK_IDENT)
		return false;
	for (i = 0; i < t->len; i++) {
		if (word[i] == '\0' || to_lower(t->p[i]) != to_lower(word[i]))
			return false;
	}
	return word[i] == '\0';
}

const char *sql_tok_kind_name(enum sql_tok_kind k)
{
	switch (k) {
#define SQL_TOK_KIND_NAME(name)                                                                    \
	case name:                                                                                 \
		return #name;
		SQL_TOK_KIND_LIST(SQL_TOK_KIND_NAME)
#undef SQL_TOK_KIND_NAME
	}
	return "SQL_TOK_?";
}

/* The scanner. */

/* Words without which nothing can be flagged ("declare" for WITH HOLD,
 * "temp" for TEMPORARY too, "do" and "call" for code that may change
 * settings), sorted, and where the first of them starting with each byte
 * is. */
static const char *const triggers[] = {
        "advisory_lock", "call", "declare", "do", "listen", "prepare", "set_config", "temp",
};
static const unsigned char trigger_at[256] = {
        ['a'] = 1, ['A'] = 1, ['c'] = 2, ['C'] = 2, ['d'] = 3, ['D'] = 3, ['l'] = 5,
        ['L'] = 5, ['p'] = 6, ['P'] = 6, ['s'] = 7, ['S'] = 7, ['t'] = 8, ['T'] = 8,
};

/* A quick look for any of triggers, in one pass. */
static bool has_trigger(const char *p, const char *e)
{
	for (; e - p >= 2; p++) {
		unsigned i = trigger_at[(unsigned char)*p];
		if (!i)
			continue;
		for (const char *const *t = &triggers[i - 1];
		     t < triggers + ARRAY_SIZE(triggers) && (*t)[0] == to_lower(*p); t++) {
			const char *w = *t + 1, *x = p + 1;
			while (*w && x < e && to_lower(*x) == *w) {
				w++;
				x++;
			}
			if (!*w)
				return true;
		}
	}
	return false;
}

static const struct {
	const char *name;
	unsigned flag;
} sql_funcs[] = {
        {"pg_advisory_lock", SQL_ADVISORY_LOCK},
        {"pg_advisory_lock_shared", SQL_ADVISORY_LOCK},
        {"pg_try_advisory_lock", SQL_ADVISORY_LOCK},
        {"pg_try_advisory_lock_shared", SQL_ADVISORY_LOCK},
        {"set_config", SQL_SET_CONFIG},
};

/* Words that can follow SELECT ... INTO <target>: "INTO temp FROM" names a
 * table called temp rather than starting INTO TEMP name. */
static const char *const after_into[] = {
        "from",   "where", "group", "having", "window",    "order",  "limit",
        "offset", "fetch", "for",   "union",  "intersect", "except",
};

enum scan_state {
	SCAN_NONE, /* nothing more to look for in this statement */
	SCAN_PREPARE, /* after PREPARE */
	SCAN_PREPARE_TX, /* after PREPARE TRANSACTION: a string follows, or it is a name */
	SCAN_DECLARE, /* DECLARE before FOR: looking for WITH HOLD */
	SCAN_CREATE, /* after CREATE [OR REPLACE] */
	SCAN_CREATE_OR, /* after CREATE OR */
	SCAN_CREATE_SCOPE, /* after CREATE GLOBAL|LOCAL */
	SCAN_CREATE_TEMP, /* after CREATE ... TEMP [RECURSIVE] */
	SCAN_TEMP_TABLE, /* CREATE TEMP TABLE: flagged unless ON COMMIT DROP before AS */
};

enum scan_into {
	INTO_NONE,
	INTO_SEEN, /* SELECT ... INTO */
	INTO_SCOPE, /* INTO GLOBAL|LOCAL */
	INTO_TEMP, /* INTO [GLOBAL|LOCAL] TEMP: a name must follow */
};

/* All zero (SQL_TOK_END, SCAN_NONE, INTO_NONE) at a statement's start. */
struct scanner {
	struct sql_scan *out;
	struct sql_tok t1, t2; /* the two tokens before this one in the statement */
	size_t pos; /* of this token in its statement */
	size_t depth; /* of parentheses */
	enum scan_state state;
	enum scan_into into;
	bool into_ok; /* the statement may be a SELECT ... INTO */
};

static bool kw(const struct sql_tok *t, const char *word)
{
	return t->kind == SQL_TOK_IDENT && sql_tok_is(t, word);
}

static bool is_char(const struct sql_tok *t, char c)
{
	return t->kind == SQL_TOK_OP && t->len == 1 && t->p[0] == c;
}

static bool is_temp(const struct sql_tok *t)
{
	return kw(t, "temp") || kw(t, "temporary");
}

static void scan_flag(struct scanner *sc, unsigned flag, const char *what, size_t len)
{
	struct sql_scan *out = sc->out;
	/* `what` names the first thing the guard refuses. */
	if (!(out->flags & ~SQL_SET_CONFIG) && flag != SQL_SET_CONFIG) {
		size_t n = MIN(len, sizeof(out->what) - 1);
		memcpy(out->what, what, n);
		out->what[n] = '\0';
	}
	out->flags |= flag;
}

static void scan_flag_str(struct scanner *sc, unsigned flag, const char *what)
{
	scan_flag(sc, flag, what, strlen(what));
}

/* A statement ends: start the next one from zero (t1, t2: SQL_TOK_END). */
static void scan_end(struct scanner *sc)
{
	if (sc->state == SCAN_TEMP_TABLE)
		scan_flag_str(sc, SQL_TEMP_TABLE, "CREATE TEMP TABLE");
	*sc = (struct scanner){.out = sc->out};
}

/* "(" after t1: a call of one of sql_funcs? */
static void scan_call(struct scanner *sc)
{
	const struct sql_tok *name = &sc->t1;
	if (name->kind != SQL_TOK_IDENT && name->kind != SQL_TOK_QIDENT)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(sql_funcs); i++) {
		if (sql_tok_is(name, sql_funcs[i].name)) {
			scan_flag(sc, sql_funcs[i].flag, name->p, name->len);
			return;
		}
	}
}

static void scan_start(struct scanner *sc, const struct sql_tok *t)
{
	sc->into_ok = kw(t, "select") || kw(t, "with") || kw(t, "explain") || is_char(t, '(');
	if (kw(t, "listen"))
		scan_flag_str(sc, SQL_LISTEN, "LISTEN");
	else if (kw(t, "do") || kw(t, "call"))
		scan_flag(sc, SQL_SET_CONFIG, t->p, t->len);
	else if (kw(t, "prepare"))
		sc->state = SCAN_PREPARE;
	else if (kw(t, "declare"))
		sc->state = SCAN_DECLARE;
	else if (kw(t, "create"))
		sc->state = SCAN_CREATE;
}

static void scan_into(struct scanner *sc, const struct sql_tok *t)
{
	switch (sc->into) {
	case INTO_NONE:
		if (sc->into_ok && kw(t, "into") && !kw(&sc->t1, "insert") && !kw(&sc->t1, "merge"))
			sc->into = INTO_SEEN;
		return;
	case INTO_SEEN:
		if (kw(t, "global") || kw(t, "local"))
			sc->into = INTO_SCOPE;
		else
			sc->into = is_temp(t) ? INTO_TEMP : INTO_NONE;
		return;
	case INTO_SCOPE:
		sc->into = is_temp(t) ? INTO_TEMP : INTO_NONE;
		return;
	case INTO_TEMP:
		sc->into = INTO_NONE;
		if (t->kind == SQL_TOK_IDENT) {
			for (size_t i = 0; i < ARRAY_SIZE(after_into); i++) {
				if (sql_tok_is(t, after_into[i]))
					return;
			}
		} else if (t->kind != SQL_TOK_QIDENT) {
			return;
		}
		scan_flag_str(sc, SQL_TEMP_TABLE, "SELECT ... INTO TEMP");
		return;
	}
}

/* What follows a statement's first keyword. */
static enum scan_state scan_step(struct scanner *sc, const struct sql_tok *t)
{
	switch (sc->state) {
	case SCAN_NONE:
		break;
	case SCAN_PREPARE:
		if (kw(t, "transaction"))
			return SCAN_PREPARE_TX;
		if (t->kind == SQL_TOK_IDENT || t->kind == SQL_TOK_QIDENT)
			scan_flag_str(sc, SQL_PREPARE, "PREPARE");
		break;
	case SCAN_PREPARE_TX:
		/* PREPARE TRANSACTION 'gid', or a statement named transaction */
		if (t->kind != SQL_TOK_STRING)
			scan_flag_str(sc, SQL_PREPARE, "PREPARE");
		break;
	case SCAN_DECLARE:
		if (kw(t, "hold") && kw(&sc->t1, "with"))
			scan_flag_str(sc, SQL_WITH_HOLD, "DECLARE ... WITH HOLD");
		else if (!kw(t, "for"))
			return SCAN_DECLARE;
		break;
	case SCAN_CREATE:
		if (kw(t, "or"))
			return SCAN_CREATE_OR;
		if (kw(t, "global") || kw(t, "local"))
			return SCAN_CREATE_SCOPE;
		if (is_temp(t))
			return SCAN_CREATE_TEMP;
		break;
	case SCAN_CREATE_OR:
		if (kw(t, "replace"))
			return SCAN_CREATE;
		break;
	case SCAN_CREATE_SCOPE:
		if (is_temp(t))
			return SCAN_CREATE_TEMP;
		break;
	case SCAN_CREATE_TEMP:
		if (kw(t, "recursive"))
			return SCAN_CREATE_TEMP;
		if (kw(t, "table"))
			return SCAN_TEMP_TABLE;
		if (kw(t, "view"))
			scan_flag_str(sc, SQL_TEMP_TABLE, "CREATE TEMP VIEW");
		else if (kw(t, "sequence"))
			scan_flag_str(sc, SQL_TEMP_TABLE, "CREATE TEMP SEQUENCE");
		break;
	case SCAN_TEMP_TABLE:
		/* ON COMMIT comes before AS in CREATE TABLE ... AS */
		if (sc->depth == 0 && kw(t, "as")) {
			scan_flag_str(sc, SQL_TEMP_TABLE, "CREATE TEMP TABLE");
			break;
		}
		if (sc->depth == 0 && kw(t, "drop") && kw(&sc->t1, "commit") && kw(&sc->t2, "on"))
			break;
		return SCAN_TEMP_TABLE;
	}
	return SCAN_NONE;
}

static void scan_token(struct scanner *sc, const struct sql_tok *t)
{
	if (is_char(t, '(')) {
		scan_call(sc);
		sc->depth++;
	} else if (is_char(t, ')') && sc->depth) {
		sc->depth--;
	}
	if (sc->pos == 0) {
		scan_start(sc, t);
	} else {
		scan_into(sc, t);
		sc->state = scan_step(sc, t);
	}
	sc->t2 = sc->t1;
	sc->t1 = *t;
	sc->pos++;
}

void sql_scan(const char *q, size_t len, struct sql_scan *out)
{
	struct sql_lexer lx;
	struct scanner sc = {.out = out};
	struct sql_tok t;

	out->flags = 0;
	out->what[0] = '\0';
	sql_lexer_init(&lx, q, len);
	if (!has_trigger(lx.p, lx.end))
		return;
	for (;;) {
		bool more = sql_next(&lx, &t);
		if (!more || t.kind == SQL_TOK_SEMI) {
			scan_end(&sc);
			if (!more)
				return;
		} else {
			scan_token(&sc, &t);
		}
	}
}

/* The read-routing classifier. */

struct route {
	struct sql_lexer lx;
	const struct strlist *funcs; /* write_functions, or NULL */
	/* A pgmoat:primary comment, or an unterminated literal or comment:
	 * route_next() ends the text there. */
	bool bad;
};

/* Words that take '(' without being a function's name: keywords, syntax
 * that looks like a call (CAST, COALESCE, ...), and types with a modifier
 * (numeric(10, 2)). */
static const char *const paren_words[] = {
        "all",       "and",      "any",        "array",        "as",        "between",
        "bit",       "both",     "by",         "case",         "cast",      "char",
        "character", "coalesce", "columns",    "cube",         "dec",       "decimal",
        "default",   "distinct", "else",       "escape",       "except",    "exists",
        "filter",    "first",    "float",      "for",          "from",      "greatest",
        "group",     "grouping", "groups",     "having",       "ilike",     "in",
        "intersect", "interval", "is",         "join",         "lateral",   "leading",
        "least",     "like",     "limit",      "materialized", "national",  "nchar",
        "next",      "not",      "nullif",     "numeric",      "offset",    "on",
        "only",      "operator", "or",         "over",         "partition", "passing",
        "placing",   "range",    "repeatable", "returning",    "rollup",    "row",
        "rows",      "select",   "sets",       "similar",      "some",      "symmetric",
        "then",      "time",     "timestamp",  "to",           "trailing",  "union",
        "using",     "value",    "values",     "varchar",      "varying",   "when",
        "where",     "window",   "with",       "zone",
};

/* Statements other than a query, and SELECT ... INTO, wherever they start. */
static const char *const write_words[] = {"delete", "insert", "into", "merge", "update"};
/* What follows FOR in a locking clause. */
static const char *const lock_words[] = {"key", "no", "share", "update"};

static bool kw_in(const struct sql_tok *t, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (kw(t, words[i]))
			return true;
	}
	return false;
}

#define KW_IN(t, words) kw_in(t, words, ARRAY_SIZE(words))

/* Is t, the last token before the end of the text, a string or quoted
 * identifier that closes?  (An unterminated one runs to the end.) */
static bool tok_closed(const struct sql_lexer *lx, const struct sql_tok *t)
{
	const char *e = t->p + t->len;
	size_t pre, tag;
	bool closed;

	if (lx->p < lx->end)
		return true;
	if (t->kind == SQL_TOK_QIDENT)
		return e < lx->p; /* the closing quote was read */
	if (t->kind != SQL_TOK_STRING)
		return true;
	if (t->p[0] == '$') {
		tag = dollar_tag(t->p, e);
		return tag && t->len >= 2 * tag && memcmp(e - tag, t->p, tag) == 0;
	}
	pre = t->p[0] == '\'' ? 1 : t->p[1] == '\'' ? 2 : 3;
	(void)skip_quoted(t->p + pre, e, '\'', t->p[0] == 'e' || t->p[0] == 'E', &closed);
	return closed;
}

/* The next token into *t; false (and SQL_TOK_END) at the end of the text or
 * once the text is bad. */
static bool route_next(struct route *r, struct sql_tok *t)
{
	struct blank b = {false, false};
	bool more;

	r->lx.p = skip_blank(r->lx.p, r->lx.end, &b);
	more = sql_next(&r->lx, t);
	if (b.marker || b.open || (more && !tok_closed(&r->lx, t)))
		r->bad = true;
	if (r->bad) {
		t->kind = SQL_TOK_END;
		return false;
	}
	return more;
}

/* Does item ("nextval", "lo_*") name the function called name? */
static bool func_matches(const struct sql_tok *name, const char *item)
{
	size_t n = strlen(item);
	bool prefix = n && item[n - 1] == '*';

	if (prefix)
		n--;
	if (prefix ? name->len < n : name->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char a = name->p[i], b = item[i];
		if (name->kind == SQL_TOK_IDENT ? to_lower(a) != to_lower(b) : a != b)
			return false;
	}
	return true;
}

/* '(' follows name, which follows before: a call of a write function? */
static bool route_write_call(const struct route *r, const struct sql_tok *before,
                             const struct sql_tok *name)
{
	if (!r->funcs)
		return false;
	if (name->kind == SQL_TOK_IDENT) {
		if (!is_char(before, '.') && KW_IN(name, paren_words))
			return false;
	} else if (name->kind != SQL_TOK_QIDENT) {
		return false;
	}
	/* an alias with column names (AS t(a)), CAST's type, or a type after
	 * ::; an alias right after ')' ("(VALUES (1)) v(a)") is taken for a
	 * call, since so is DISTINCT ON (a) f(b) */
	if (kw(before, "as") ||
	    (before->kind == SQL_TOK_OP && before->len == 2 && before->p[0] == ':' &&
	     before->p[1] == ':'))
		return false;
	for (size_t i = 0; i < r->funcs->n; i++) {
		if (func_matches(name, r->funcs->items[i]))
			return true;
	}
	return false;
}

/* From the first token: one plain query, then nothing but ';'. */
static bool route_query(struct route *r, struct sql_tok *t)
{
	struct sql_tok t1 = {.kind = SQL_TOK_END}, t2 = t1; /* the two tokens before t */
	size_t depth = 0;

	while (is_char(t, '(')) {
		depth++;
		route_next(r, t);
	}
	if (!kw(t, "select") && !kw(t, "with") && !kw(t, "values") && !kw(t, "table"))
		return false;
	for (; t->kind != SQL_TOK_END && t->kind != SQL_TOK_SEMI; route_next(r, t)) {
		if (t->kind == SQL_TOK_IDENT && !is_char(&t1, '.') && !kw(&t1, "as")) {
			/* a word after '.' or AS is a name */
			if (KW_IN(t, write_words) || (kw(&t1, "for") && KW_IN(t, lock_words)))
				return false;
		} else if (is_char(t, '(')) {
			if (route_write_call(r, &t2, &t1))
				return false;
			depth++;
		} else if (is_char(t, ')')) {
			if (!depth)
				return false;
			depth--;
		}
		t2 = t1;
		t1 = *t;
	}
	while (t->kind == SQL_TOK_SEMI)
		route_next(r, t);
	return depth == 0 && t->kind == SQL_TOK_END;
}

/* One transaction mode from t, and the token after it into *t. */
static bool route_mode(struct route *r, struct sql_tok *t, bool *read_only)
{
	if (kw(t, "isolation")) {
		if (!route_next(r, t) || !kw(t, "level") || !route_next(r, t))
			return false;
		/* not SERIALIZABLE: a standby refuses it */
		if (kw(t, "repeatable")) {
			if (!route_next(r, t) || !kw(t, "read"))
				return false;
		} else if (kw(t, "read")) {
			if (!route_next(r, t) || (!kw(t, "committed") && !kw(t, "uncommitted")))
				return false;
		} else {
			return false;
		}
	} else if (kw(t, "read")) {
		if (!route_next(r, t) || !kw(t, "only"))
			return false;
		*read_only = true;
	} else if (kw(t, "not")) {
		if (!route_next(r, t) || !kw(t, "deferrable"))
			return false;
	} else if (!kw(t, "deferrable")) {
		return false;
	}
	route_next(r, t);
	return true;
}

/* From BEGIN or START: a transaction that begins READ ONLY?  Leaves *t at
 * the ';' or end after it. */
static bool route_begin(struct route *r, struct sql_tok *t)
{
	bool read_only = false;

	if (kw(t, "start")) {
		if (!route_next(r, t) || !kw(t, "transaction"))
			return false;
		route_next(r, t);
	} else {
		route_next(r, t);
		if (kw(t, "work") || kw(t, "transaction"))
			route_next(r, t);
	}
	for (bool first = true; t->kind != SQL_TOK_END && t->kind != SQL_TOK_SEMI; first = false) {
		if (!first && is_char(t, ','))
			route_next(r, t);
		if (!route_mode(r, t, &read_only))
			return false;
	}
	return read_only;
}

/* From the ';' or end after BEGIN ... READ ONLY: do the statements that
 * follow stay in that transaction, read-only? */
static bool route_after_begin(struct route *r, struct sql_tok *t)
{
	struct sql_tok t1 = {.kind = SQL_TOK_END};
	size_t pos = 0; /* of t in its statement */
	bool ended = false; /* a statement ended the transaction */

	for (; t->kind != SQL_TOK_END; route_next(r, t)) {
		if (t->kind == SQL_TOK_SEMI) {
			pos = 0;
			t1.kind = SQL_TOK_END;
			continue;
		}
		if (pos == 0 && ended)
			return false;
		if (pos == 0)
			ended = kw(t, "commit") || kw(t, "end") || kw(t, "rollback") ||
			        kw(t, "abort");
		else if (pos == 1 && kw(&t1, "prepare") && kw(t, "transaction"))
			ended = true;
		if ((kw(&t1, "read") && kw(t, "write")) || kw(t, "serializable"))
			return false;
		t1 = *t;
		pos++;
	}
	return true;
}

bool sql_read_only(const char *sql, size_t len, const struct strlist *write_functions)
{
	struct route r = {.funcs = write_functions};
	struct sql_tok t;
	bool ro;

	if (len > SQL_READ_ONLY_MAX)
		return false;
	sql_lexer_init(&r.lx, sql, len);
	route_next(&r, &t);
	if (kw(&t, "begin") || kw(&t, "start"))
		ro = route_begin(&r, &t) && route_after_begin(&r, &t);
	else
		ro = route_query(&r, &t);
	/* both read to the end when they answer true */
	return ro && !r.bad;
}

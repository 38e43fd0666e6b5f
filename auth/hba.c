#include <config.h>

#include "auth/hba.h"

#include "common/cidr.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HBA_MAX_FILE (16u * 1024 * 1024) /* bytes, the hba file or an @file */
#define HBA_MAX_NAMES 100000 /* names in one database or user column */
#define HBA_MAX_DEPTH 8 /* @file inside @file */
#define HBA_MAX_INCLUDES 1000 /* @file reads while parsing one hba file */
#define HBA_MAX_ERRORS 100 /* reported before giving up */
#define HBA_ERR_ECHO 80 /* bytes of a bad token quoted in a message */

#define HBA_STR_(x) #x
#define HBA_STR(x) HBA_STR_(x)

#define RULE_TYPE_LIST(X)                                                                          \
	X(RT_LOCAL, "local")                                                                       \
	X(RT_HOST, "host")                                                                         \
	X(RT_HOSTSSL, "hostssl")                                                                   \
	X(RT_HOSTNOSSL, "hostnossl")

enum rule_type {
#define RULE_TYPE_ENUM(e, name) e,
	RULE_TYPE_LIST(RULE_TYPE_ENUM)
#undef RULE_TYPE_ENUM
};

static const struct {
	enum rule_type type;
	const char *name;
} rule_types[] = {
#define RULE_TYPE_ROW(e, name) {e, name},
        RULE_TYPE_LIST(RULE_TYPE_ROW)
#undef RULE_TYPE_ROW
};

static const struct {
	enum hba_method method;
	const char *name;
} methods[] = {
#define HBA_METHOD_ROW(e, name) {e, name},
        HBA_METHOD_LIST(HBA_METHOD_ROW)
#undef HBA_METHOD_ROW
};

/* PostgreSQL methods pgmoat refuses by name (anything else is "invalid"). */
static const char *const unsupported_methods[] = {
        "peer", "ident", "ldap", "gss", "sspi", "pam", "radius", "bsd", "oauth", "crypt", "krb5",
};

enum item_kind {
	ITEM_NAME,
	ITEM_ALL,
	ITEM_SAMEUSER,
	ITEM_REPLICATION,
};

struct item {
	enum item_kind kind;
	char *name; /* ITEM_NAME only */
};

struct items {
	struct item *v;
	size_t n, cap;
};

enum clientcert {
	CC_NONE,
	CC_VERIFY_CA,
	CC_VERIFY_FULL,
};

struct rule {
	enum rule_type type;
	struct items db, user;
	bool addr_all; /* else `addr`; unused for RT_LOCAL */
	struct cidr addr;
	enum hba_method method;
	enum clientcert clientcert;
	int line;
};

struct hba {
	struct rule *rules;
	size_t n;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Error messages may be cut at the buffer's end: that is fine. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *hba_method_name(enum hba_method m)
{
	switch (m) {
#define HBA_METHOD_NAME(e, name)                                                                   \
	case e:                                                                                    \
		return name;
		HBA_METHOD_LIST(HBA_METHOD_NAME)
#undef HBA_METHOD_NAME
	}
	return "?";
}

/* --- reading ------------------------------------------------------------ */

/* The whole file, NUL-terminated (it may hold other NUL bytes: those lines
 * are errors); false with a message in `err`. */
static bool read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "cannot open: %s", strerror(errno));
		return false;
	}
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > HBA_MAX_FILE) {
				set_err(err, errlen, "file too large (more than %u bytes)",
				        HBA_MAX_FILE);
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > HBA_MAX_FILE) {
		set_err(err, errlen, "file too large (more than %u bytes)", HBA_MAX_FILE);
		goto fail;
	}
	close(fd);
	buf = buf != NULL ? buf : xmalloc(1);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return true;
fail:
	free(buf);
	close(fd);
	return false;
}

/* The directory part of `path` ("." if none). */
static void dir_of(const char *path, char *out, size_t n)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(out, n, ".");
	else if (slash == path)
		snprintf(out, n, "/");
	else
		snprintf(out, n, "%.*s", (int)(slash - path), path);
}

/* Logical lines of a text: a backslash ending a physical line joins it to
 * the next (the backslash and newline vanish, in quotes and comments too). */
struct reader {
	const char *p, *end;
	int line; /* physical lines consumed */
	char *buf; /* HBA_MAX_LINE bytes */
};

static void reader_init(struct reader *r, const char *text, size_t len)
{
	r->p = text;
	r->end = text + len;
	r->line = 0;
	r->buf = xmalloc(HBA_MAX_LINE);
}

static void reader_free(struct reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* The next logical line into r->buf: false at the end of the text.  `first`
 * is the number of its first physical line; `err` is set (and the line
 * consumed whole) for a NUL byte or a line too long. */
static bool reader_next(struct reader *r, size_t *len, int *first, const char **err)
{
	if (r->p >= r->end)
		return false;
	*len = 0;
	*err = NULL;
	*first = r->line + 1;
	for (;;) {
		const char *eol = memchr(r->p, '\n', (size_t)(r->end - r->p));
		size_t n = (size_t)((eol != NULL ? eol : r->end) - r->p);
		bool cont;

		if (r->line < INT_MAX)
			r->line++;
		if (*err == NULL && memchr(r->p, '\0', n) != NULL)
			*err = "NUL byte in line";
		if (n > 0 && r->p[n - 1] == '\r')
			n--;
		cont = n > 0 && r->p[n - 1] == '\\';
		if (cont)
			n--;
		if (*err == NULL && n > HBA_MAX_LINE - *len)
			*err = "line too long (the limit is " HBA_STR(HBA_MAX_LINE) " bytes)";
		if (*err == NULL) {
			memcpy(r->buf + *len, r->p, n);
			*len += n;
		}
		r->p = eol != NULL ? eol + 1 : r->end;
		if (!cont || r->p >= r->end)
			return true;
	}
}

/* --- tokens ------------------------------------------------------------- */

struct tok {
	const char *s;
	bool quoted; /* any part of it was in double quotes */
};

/* One logical line split into fields (separated by blanks) of tokens
 * (separated by commas). */
struct toks {
	char *buf; /* the tokens' text, unquoted, each NUL-terminated */
	size_t bufcap;
	struct tok *t;
	size_t n, cap;
	size_t *field; /* index in `t` of each field's first token */
	size_t nfields, fcap;
};

static void toks_free(struct toks *l)
{
	free(l->buf);
	free(l->t);
	free(l->field);
	memset(l, 0, sizeof(*l));
}

static size_t field_len(const struct toks *l, size_t f)
{
	return (f + 1 < l->nfields ? l->field[f + 1] : l->n) - l->field[f];
}

static const struct tok *field_tok(const struct toks *l, size_t f)
{
	return &l->t[l->field[f]];
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Split [p, p + len) into l.  Within double quotes blanks, commas and '#'
 * are plain characters and "" is one '"'; outside them '#' starts a
 * comment. */
static bool tokenize(const char *p, size_t len, struct toks *l, const char **err)
{
	const char *end = p + len;
	char *w;

	/* A token's text is no longer than its source and is followed by a
	 * separator or the end, so len + 1 bytes hold every token. */
	if (l->bufcap < len + 1) {
		l->bufcap = len + 1;
		free(l->buf);
		l->buf = xmalloc(l->bufcap);
	}
	w = l->buf;
	l->n = 0;
	l->nfields = 0;
	for (;;) {
		while (p < end && is_blank(*p))
			p++;
		if (p == end || *p == '#')
			return true;
		if (*p == ',') {
			*err = "a list cannot start with a comma";
			return false;
		}
		if (l->nfields == l->fcap) {
			l->fcap = l->fcap ? l->fcap * 2 : 16;
			l->field = xrealloc(l->field, l->fcap * sizeof(*l->field));
		}
		l->field[l->nfields++] = l->n;
		for (;;) {
			bool in_quote = false, quoted = false;
			char *start = w;
			const char *q;

			while (p < end) {
				char c = *p;
				if (!in_quote && (is_blank(c) || c == ',' || c == '#'))
					break;
				if (c == '"') {
					if (in_quote && p + 1 < end && p[1] == '"') {
						*w++ = '"';
						p += 2;
						continue;
					}
					in_quote = !in_quote;
					quoted = true;
					p++;
					continue;
				}
				*w++ = c;
				p++;
			}
			if (in_quote) {
				*err = "unterminated quoted string";
				return false;
			}
			*w++ = '\0';
			if (l->n == l->cap) {
				l->cap = l->cap ? l->cap * 2 : 16;
				l->t = xrealloc(l->t, l->cap * sizeof(*l->t));
			}
			l->t[l->n].s = start;
			l->t[l->n].quoted = quoted;
			l->n++;
			/* A comma, maybe with blanks around it, continues the list. */
			for (q = p; q < end && is_blank(*q); q++)
				;
			if (q == end || *q != ',')
				break;
			for (p = q + 1; p < end && is_blank(*p); p++)
				;
			if (p == end || *p == '#') {
				*err = "a list ends with a comma";
				return false;
			}
			if (*p == ',') {
				*err = "empty item in a list";
				return false;
			}
		}
	}
}

/* --- rules -------------------------------------------------------------- */

enum column {
	COL_DB,
	COL_USER,
};

struct ctx {
	const char *name; /* of the hba file, for errors */
	int includes; /* @file reads so far */
};

static void items_free(struct items *it)
{
	for (size_t i = 0; i < it->n; i++)
		free(it->v[i].name);
	free(it->v);
	memset(it, 0, sizeof(*it));
}

static void rule_free(struct rule *r)
{
	items_free(&r->db);
	items_free(&r->user);
}

static bool items_add(struct items *it, enum item_kind kind, const char *name, char *err,
                      size_t errlen)
{
	if (it->n >= HBA_MAX_NAMES) {
		set_err(err, errlen, "too many names in one column (the limit is %d)",
		        HBA_MAX_NAMES);
		return false;
	}
	if (it->n == it->cap) {
		it->cap = it->cap ? it->cap * 2 : 4;
		it->v = xrealloc(it->v, it->cap * sizeof(*it->v));
	}
	it->v[it->n].kind = kind;
	it->v[it->n].name = kind == ITEM_NAME ? xstrdup(name) : NULL;
	it->n++;
	return true;
}

static bool expand(struct ctx *cx, const struct tok *t, size_t n, enum column col, const char *dir,
                   int depth, struct items *out, char *err, size_t errlen);

/* Add the names of @file `file` (relative to `dir`) to `out`: every token of
 * every line, '#' comments and quotes as in the hba file. */
static bool include(struct ctx *cx, const char *file, enum column col, const char *dir, int depth,
                    struct items *out, char *err, size_t errlen)
{
	char path[PATH_MAX], subdir[PATH_MAX], msg[512];
	struct toks l = {0};
	struct reader r;
	const char *lerr;
	size_t len, tlen;
	bool ok = false;
	char *text;
	int line, w;

	if (file[0] == '\0') {
		set_err(err, errlen, "@ must be followed by a file name");
		return false;
	}
	if (depth >= HBA_MAX_DEPTH) {
		set_err(err, errlen,
		        "@%.*s: @file nested more than %d deep (does a file include itself?)",
		        HBA_ERR_ECHO, file, HBA_MAX_DEPTH);
		return false;
	}
	if (++cx->includes > HBA_MAX_INCLUDES) {
		set_err(err, errlen, "too many @file includes (the limit is %d)", HBA_MAX_INCLUDES);
		return false;
	}
	if (file[0] == '/')
		w = snprintf(path, sizeof(path), "%s", file);
	else
		w = snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : ".", file);
	if (w < 0 || (size_t)w >= sizeof(path)) {
		set_err(err, errlen, "@%.*s: path too long", HBA_ERR_ECHO, file);
		return false;
	}
	if (!read_file(path, &text, &tlen, msg, sizeof(msg))) {
		set_err(err, errlen, "@%.*s: %s: %s", HBA_ERR_ECHO, file, path, msg);
		return false;
	}
	dir_of(path, subdir, sizeof(subdir));
	reader_init(&r, text, tlen);
	while (reader_next(&r, &len, &line, &lerr)) {
		if (lerr == NULL && tokenize(r.buf, len, &l, &lerr) &&
		    expand(cx, l.t, l.n, col, subdir, depth + 1, out, msg, sizeof(msg)))
			continue;
		set_err(err, errlen, "%s:%d: %s", path, line, lerr != NULL ? lerr : msg);
		goto out;
	}
	ok = true;
out:
	toks_free(&l);
	reader_free(&r);
	free(text);
	return ok;
}

/* Turn the tokens of a database or user column into items. */
static bool expand(struct ctx *cx, const struct tok *t, size_t n, enum column col, const char *dir,
                   int depth, struct items *out, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const char *s = t[i].s;
		enum item_kind kind = ITEM_NAME;

		if (t[i].quoted) {
			/* A quoted word is a name, whatever it says. */
		} else if (s[0] == '@') {
			if (!include(cx, s + 1, col, dir, depth, out, err, errlen))
				return false;
			continue;
		} else if (strcmp(s, "all") == 0) {
			kind = ITEM_ALL;
		} else if (col == COL_DB && strcmp(s, "sameuser") == 0) {
			kind = ITEM_SAMEUSER;
		} else if (col == COL_DB && strcmp(s, "replication") == 0) {
			kind = ITEM_REPLICATION;
		} else if (strcmp(s, "samerole") == 0 || strcmp(s, "samegroup") == 0 ||
		           (col == COL_USER && s[0] == '+')) {
			set_err(err, errlen,
			        "groups (+name) are not supported by pgmoat: \"%.*s\" (quote it "
			        "if it is a name)",
			        HBA_ERR_ECHO, s);
			return false;
		} else if (s[0] == '/') {
			set_err(err, errlen,
			        "regular expressions are not supported by pgmoat: \"%.*s\" (quote "
			        "it if it is a name)",
			        HBA_ERR_ECHO, s);
			return false;
		}
		if (!items_add(out, kind, s, err, errlen))
			return false;
	}
	return true;
}

/* The address column, and the mask column after it if there is one. */
static bool parse_address(const struct toks *l, size_t *f, struct rule *r, char *err, size_t errlen)
{
	const struct tok *t = field_tok(l, *f);
	const char *s = t->s;
	char cerr[256];

	if (field_len(l, *f) != 1) {
		set_err(err, errlen, "the address column takes one address, not a list");
		return false;
	}
	if (!t->quoted && strcmp(s, "all") == 0) {
		r->addr_all = true;
		(*f)++;
		return true;
	}
	if (!t->quoted && (strcmp(s, "samehost") == 0 || strcmp(s, "samenet") == 0)) {
		set_err(err, errlen,
		        "%s is not supported by pgmoat; write the networks as CIDR "
		        "(e.g. 10.0.0.0/8)",
		        s);
		return false;
	}
	if (strchr(s, '/') != NULL) {
		if (!cidr_parse(s, &r->addr, cerr, sizeof(cerr))) {
			set_err(err, errlen, "invalid address: %s", cerr);
			return false;
		}
		(*f)++;
		return true;
	}
	if (!cidr_parse(s, &r->addr, NULL, 0)) {
		set_err(err, errlen,
		        "host names are not supported by pgmoat: \"%.*s\" (write an IP address "
		        "with a prefix length, e.g. 10.0.0.0/8, or all)",
		        HBA_ERR_ECHO, s);
		return false;
	}
	/* An address without a prefix length: the next column is its mask. */
	if (*f + 1 >= l->nfields || field_len(l, *f + 1) != 1 ||
	    !cidr_parse(field_tok(l, *f + 1)->s, &(struct cidr){0}, NULL, 0)) {
		set_err(err, errlen,
		        "address \"%.*s\" has no prefix length and no netmask column follows "
		        "(write e.g. %.*s/%d)",
		        HBA_ERR_ECHO, s, HBA_ERR_ECHO, s, r->addr.bits);
		return false;
	}
	if (!cidr_parse_mask(s, field_tok(l, *f + 1)->s, &r->addr, cerr, sizeof(cerr))) {
		set_err(err, errlen, "invalid address and netmask: %s", cerr);
		return false;
	}
	*f += 2;
	return true;
}

static bool parse_method(const struct toks *l, size_t f, struct rule *r, char *err, size_t errlen)
{
	const char *s = field_tok(l, f)->s;

	if (field_len(l, f) != 1) {
		set_err(err, errlen, "the method column takes one method, not a list");
		return false;
	}
	for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
		if (strcmp(s, methods[i].name) == 0) {
			r->method = methods[i].method;
			return true;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(unsupported_methods); i++) {
		if (strcmp(s, unsupported_methods[i]) == 0) {
			set_err(err, errlen, "method %s is not supported by pgmoat", s);
			return false;
		}
	}
	set_err(err, errlen,
	        "invalid authentication method \"%.*s\" (expected trust, reject, md5, "
	        "scram-sha-256, password or cert)",
	        HBA_ERR_ECHO, s);
	return false;
}

static bool parse_option(const char *s, struct rule *r, char *err, size_t errlen)
{
	const char *eq = strchr(s, '=');
	const char *v;

	if (eq == NULL || eq == s) {
		set_err(err, errlen, "authentication option \"%.*s\" is not in name=value form",
		        HBA_ERR_ECHO, s);
		return false;
	}
	v = eq + 1;
	if ((size_t)(eq - s) == strlen("clientcert") && strncmp(s, "clientcert", 10) == 0) {
		if (r->type != RT_HOSTSSL) {
			set_err(err, errlen, "clientcert can only be used on hostssl rules");
			return false;
		}
		if (strcmp(v, "verify-full") == 0) {
			r->clientcert = CC_VERIFY_FULL;
		} else if (strcmp(v, "verify-ca") == 0) {
			if (r->method == HBA_CERT) {
				set_err(err, errlen,
				        "clientcert=verify-ca cannot be used with method cert, "
				        "which "
				        "always verifies the full certificate");
				return false;
			}
			r->clientcert = CC_VERIFY_CA;
		} else {
			set_err(err, errlen,
			        "invalid value for clientcert: \"%.*s\" (expected verify-ca or "
			        "verify-full)",
			        HBA_ERR_ECHO, v);
			return false;
		}
		return true;
	}
	set_err(err, errlen, "authentication option %.*s is not supported by pgmoat",
	        (int)MIN((size_t)(eq - s), HBA_ERR_ECHO), s);
	return false;
}

/* One record: false with a message in `err` (and `r` left empty). */
static bool parse_rule(struct ctx *cx, const struct toks *l, const char *dir, struct rule *r,
                       char *err, size_t errlen)
{
	const char *type = field_tok(l, 0)->s;
	size_t f;
	bool known = false;

	memset(r, 0, sizeof(*r));
	if (field_len(l, 0) != 1) {
		set_err(err, errlen, "the connection type column takes one type, not a list");
		return false;
	}
	for (size_t i = 0; i < ARRAY_SIZE(rule_types); i++) {
		if (strcmp(type, rule_types[i].name) == 0) {
			r->type = rule_types[i].type;
			known = true;
		}
	}
	if (!known) {
		if (strcmp(type, "hostgssenc") == 0 || strcmp(type, "hostnogssenc") == 0)
			set_err(err, errlen, "connection type %s is not supported by pgmoat", type);
		else if (strcmp(type, "include") == 0 || strcmp(type, "include_if_exists") == 0 ||
		         strcmp(type, "include_dir") == 0)
			set_err(err, errlen,
			        "%s is not supported by pgmoat (use @file in the database or "
			        "user column)",
			        type);
		else
			set_err(err, errlen,
			        "invalid connection type \"%.*s\" (expected local, host, hostssl "
			        "or hostnossl)",
			        HBA_ERR_ECHO, type);
		return false;
	}
	if (l->nfields < 2) {
		set_err(err, errlen, "end of line before the database column");
		return false;
	}
	if (!expand(cx, field_tok(l, 1), field_len(l, 1), COL_DB, dir, 0, &r->db, err, errlen))
		goto fail;
	if (l->nfields < 3) {
		set_err(err, errlen, "end of line before the user column");
		goto fail;
	}
	if (!expand(cx, field_tok(l, 2), field_len(l, 2), COL_USER, dir, 0, &r->user, err, errlen))
		goto fail;
	f = 3;
	if (r->type != RT_LOCAL) {
		if (f >= l->nfields) {
			set_err(err, errlen, "end of line before the address column");
			goto fail;
		}
		if (!parse_address(l, &f, r, err, errlen))
			goto fail;
	}
	if (f >= l->nfields) {
		set_err(err, errlen, "end of line before the authentication method");
		goto fail;
	}
	if (!parse_method(l, f, r, err, errlen))
		goto fail;
	if (r->method == HBA_CERT) {
		if (r->type != RT_HOSTSSL) {
			set_err(err, errlen, "method cert can only be used on hostssl rules");
			goto fail;
		}
		r->clientcert = CC_VERIFY_FULL;
	}
	for (f++; f < l->nfields; f++) {
		for (size_t i = 0; i < field_len(l, f); i++)
			if (!parse_option(field_tok(l, f)[i].s, r, err, errlen))
				goto fail;
	}
	return true;
fail:
	rule_free(r);
	return false;
}

static struct hba *parse(const char *text, size_t len, const char *name, const char *dir,
                         struct strlist *errors)
{
	struct ctx cx = {.name = name != NULL ? name : "(hba)"};
	struct hba *h = xcalloc(1, sizeof(*h));
	struct toks l = {0};
	struct reader r;
	size_t cap = 0, nerr = 0, linelen;
	const char *lerr;
	char msg[1024];
	bool stop = false;
	int line;

	reader_init(&r, text, len);
	while (!stop && reader_next(&r, &linelen, &line, &lerr)) {
		bool tokens = lerr == NULL && tokenize(r.buf, linelen, &l, &lerr);
		struct rule rule;

		if (!tokens) {
			snprintf(msg, sizeof(msg), "%s", lerr);
		} else if (l.nfields == 0) {
			continue;
		} else if (!parse_rule(&cx, &l, dir, &rule, msg, sizeof(msg))) {
			/* msg is set */
		} else if (h->n >= HBA_MAX_RULES) {
			rule_free(&rule);
			snprintf(msg, sizeof(msg), "too many rules (the limit is %d)",
			         HBA_MAX_RULES);
			stop = true;
		} else {
			if (h->n == cap) {
				cap = cap ? cap * 2 : 16;
				h->rules = xrealloc(h->rules, cap * sizeof(*h->rules));
			}
			rule.line = line;
			h->rules[h->n++] = rule;
			continue;
		}
		nerr++;
		if (errors != NULL)
			strlist_addf(errors, "%s:%d: %s", cx.name, line, msg);
		if (!stop && nerr >= HBA_MAX_ERRORS && r.p < r.end) {
			if (errors != NULL)
				strlist_addf(errors, "%s: too many errors, giving up", cx.name);
			stop = true;
		}
	}
	toks_free(&l);
	reader_free(&r);
	if (nerr > 0) {
		hba_free(h);
		return NULL;
	}
	return h;
}

struct hba *hba_parse(const char *text, const char *name_for_errors, const char *dir_for_includes,
                      struct strlist *errors)
{
	if (text == NULL)
		text = "";
	return parse(text, strlen(text), name_for_errors, dir_for_includes, errors);
}

struct hba *hba_load(const char *path, struct strlist *errors)
{
	char dir[PATH_MAX], msg[512];
	struct hba *h;
	size_t len;
	char *text;

	if (path == NULL || path[0] == '\0') {
		if (errors != NULL)
			strlist_add(errors, "no hba file given");
		return NULL;
	}
	if (!read_file(path, &text, &len, msg, sizeof(msg))) {
		if (errors != NULL)
			strlist_addf(errors, "%s: %s", path, msg);
		return NULL;
	}
	dir_of(path, dir, sizeof(dir));
	h = parse(text, len, path, dir, errors);
	free(text);
	return h;
}

void hba_free(struct hba *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++)
		rule_free(&h->rules[i]);
	free(h->rules);
	free(h);
}

size_t hba_count(const struct hba *h)
{
	return h != NULL ? h->n : 0;
}

/* --- matching ----------------------------------------------------------- */

static bool type_matches(enum rule_type t, enum hba_conn c)
{
	switch (t) {
	case RT_LOCAL:
		return c == HBA_CONN_LOCAL;
	case RT_HOST:
		return c == HBA_CONN_TCP_PLAIN || c == HBA_CONN_TCP_TLS;
	case RT_HOSTSSL:
		return c == HBA_CONN_TCP_TLS;
	case RT_HOSTNOSSL:
		return c == HBA_CONN_TCP_PLAIN;
	}
	return false;
}

static bool addr_matches(const struct rule *r, const struct sockaddr *sa)
{
	return r->type == RT_LOCAL || r->addr_all || cidr_match(&r->addr, sa);
}

static bool db_matches(const struct items *it, const char *db, const char *user)
{
	for (size_t i = 0; i < it->n; i++) {
		switch (it->v[i].kind) {
		case ITEM_ALL:
			return true;
		case ITEM_SAMEUSER:
			if (db != NULL && user != NULL && strcmp(db, user) == 0)
				return true;
			break;
		case ITEM_REPLICATION:
			break; /* pgmoat takes no replication connections */
		case ITEM_NAME:
			if (db != NULL && strcmp(db, it->v[i].name) == 0)
				return true;
			break;
		}
	}
	return false;
}

static bool user_matches(const struct items *it, const char *user)
{
	for (size_t i = 0; i < it->n; i++) {
		if (it->v[i].kind == ITEM_ALL)
			return true;
		if (it->v[i].kind == ITEM_NAME && user != NULL && strcmp(user, it->v[i].name) == 0)
			return true;
	}
	return false;
}

struct hba_match hba_lookup(const struct hba *h, enum hba_conn conn, const struct sockaddr *addr,
                            const char *db, const char *user)
{
	struct hba_match m = {.method = HBA_REJECT};

	if (h == NULL)
		return m;
	for (size_t i = 0; i < h->n; i++) {
		const struct rule *r = &h->rules[i];

		if (!type_matches(r->type, conn) || !addr_matches(r, addr) ||
		    !db_matches(&r->db, db, user) || !user_matches(&r->user, user))
			continue;
		m.method = r->method;
		m.line = r->line;
		m.clientcert = r->clientcert != CC_NONE;
		m.clientcert_full = r->clientcert == CC_VERIFY_FULL;
		m.matched = true;
		return m;
	}
	return m;
}

static bool has_all(const struct items *it)
{
	for (size_t i = 0; i < it->n; i++)
		if (it->v[i].kind == ITEM_ALL)
			return true;
	return false;
}

/* Some database could match (not only `replication`, not an empty @file). */
static bool db_can_match(const struct items *it)
{
	for (size_t i = 0; i < it->n; i++)
		if (it->v[i].kind != ITEM_REPLICATION)
			return true;
	return false;
}

bool hba_may_admit(const struct hba *h, const struct sockaddr *addr)
{
	bool local = addr == NULL || addr->sa_family == AF_UNIX;

	if (h == NULL)
		return false;
	for (size_t i = 0; i < h->n; i++) {
		const struct rule *r = &h->rules[i];

		if (local != (r->type == RT_LOCAL))
			continue;
		if (!local && !addr_matches(r, addr))
			continue;
		if (r->method != HBA_REJECT) {
			if (db_can_match(&r->db) && r->user.n > 0)
				return true;
			continue;
		}
		if ((r->type == RT_LOCAL || r->type == RT_HOST) && has_all(&r->db) &&
		    has_all(&r->user))
			return false;
	}
	return false;
}

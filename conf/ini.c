#include <config.h> /* autoconf; <> so that conf/config.h is not picked up */

#include "conf/ini.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* %include may nest this deep (a file including itself stops here). */
#define INI_MAX_DEPTH 8
/* A config file larger than this is a mistake (or /dev/zero). */
#define INI_MAX_SIZE (16 * 1024 * 1024)

struct ini_state {
	ini_fn fn;
	void *arg;
	struct strlist *errors;
	char *section; /* current section, NULL before the first header */
	bool skip; /* after a broken section header: ignore keys until the next one */
	bool failed;
};

static void ini_error(struct ini_state *st, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void ini_error(struct ini_state *st, const char *file, int line, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		strlist_addf(st->errors, "%s:%d: %s", file, line, msg);
	else
		strlist_addf(st->errors, "%s: %s", file, msg);
	st->failed = true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static char *trim(char *s)
{
	while (is_space(*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		s[--n] = '\0';
	return s;
}

static bool is_comment_or_empty(const char *s)
{
	return *s == '\0' || *s == ';' || *s == '#';
}

/* Unquote a double-quoted string in place: `s` points at the opening quote.
 * Inside, \" and \\ stand for " and \.  Returns a pointer just past the
 * closing quote, or NULL if there is none.  The unquoted text is left at
 * s[0..] NUL-terminated. */
static char *unquote(char *s)
{
	char *in = s + 1, *out = s;
	while (*in && *in != '"') {
		if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
			in++;
		*out++ = *in++;
	}
	if (*in != '"')
		return NULL;
	*out = '\0';
	return in + 1;
}

/* Read a whole file.  Returns false with errno set. */
static bool read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t cap = 4096, n = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap) {
			if (cap >= INI_MAX_SIZE) {
				free(buf);
				fclose(f);
				errno = EFBIG;
				return false;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				int e = errno ? errno : EIO;
				free(buf);
				fclose(f);
				errno = e;
				return false;
			}
			break;
		}
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return true;
}

/* `rel` relative to the directory of `file` (unless it is absolute). */
static char *path_relative_to(const char *file, const char *rel)
{
	const char *slash = strrchr(file, '/');
	if (rel[0] == '/' || !slash)
		return xstrdup(rel);
	size_t dlen = (size_t)(slash - file) + 1;
	size_t rlen = strlen(rel);
	char *p = xmalloc(dlen + rlen + 1);
	memcpy(p, file, dlen);
	memcpy(p + dlen, rel, rlen + 1);
	return p;
}

static void parse_text(struct ini_state *st, const char *name, const char *text, size_t len,
                       int depth);

static void do_include(struct ini_state *st, const char *file, int line, char *arg, int depth)
{
	arg = trim(arg);
	if (*arg == '"') {
		char *rest = unquote(arg);
		if (!rest) {
			ini_error(st, file, line, "unterminated quoted path in %%include");
			return;
		}
		if (!is_comment_or_empty(trim(rest))) {
			ini_error(st, file, line,
			          "unexpected text after the quoted path in %%include");
			return;
		}
	}
	if (*arg == '\0') {
		ini_error(st, file, line, "%%include needs a file name");
		return;
	}
	if (depth + 1 > INI_MAX_DEPTH) {
		ini_error(st, file, line, "%%include nested more than %d levels deep",
		          INI_MAX_DEPTH);
		return;
	}
	char *path = path_relative_to(file, arg);
	char *text;
	size_t tlen;
	if (!read_file(path, &text, &tlen)) {
		ini_error(st, file, line, "%%include '%s': cannot open: %s", path, strerror(errno));
	} else {
		parse_text(st, path, text, tlen, depth + 1);
		secure_zero(text, tlen);
		free(text);
	}
	free(path);
}

static void set_section(struct ini_state *st, const char *name)
{
	free(st->section);
	st->section = name ? xstrdup(name) : NULL;
	st->skip = name == NULL;
}

static void do_section(struct ini_state *st, const char *file, int line, char *s)
{
	char *close = strchr(s, ']');
	if (!close) {
		ini_error(st, file, line, "unterminated section header '%s'", s);
		set_section(st, NULL);
		return;
	}
	*close = '\0';
	char *name = trim(s + 1);
	if (!is_comment_or_empty(trim(close + 1))) {
		ini_error(st, file, line, "unexpected text after section header [%s]", name);
		set_section(st, NULL);
		return;
	}
	if (*name == '\0') {
		ini_error(st, file, line, "empty section name");
		set_section(st, NULL);
		return;
	}
	set_section(st, name);
	/* Announce the header itself (key NULL), so a bad section is reported
	 * at its own line even when it holds no key. */
	st->fn(file, line, st->section, NULL, NULL, st->arg);
}

static void do_key_value(struct ini_state *st, const char *file, int line, char *s)
{
	char *key, *value;
	if (*s == '"') {
		char *rest = unquote(s);
		if (!rest) {
			ini_error(st, file, line, "unterminated quoted key");
			return;
		}
		key = s;
		rest = trim(rest);
		if (*rest != '=') {
			ini_error(st, file, line, "missing '=' after key '%s'", key);
			return;
		}
		value = rest + 1;
	} else {
		char *eq = strchr(s, '=');
		if (!eq) {
			ini_error(st, file, line, "missing '=' after key '%s'", s);
			return;
		}
		*eq = '\0';
		key = trim(s);
		value = eq + 1;
	}
	if (*key == '\0') {
		ini_error(st, file, line, "missing key before '='");
		return;
	}
	value = trim(value);
	if (*value == '"') {
		char *rest = unquote(value);
		if (!rest) {
			ini_error(st, file, line, "%s: unterminated quoted value", key);
			return;
		}
		if (*trim(rest) != '\0') {
			ini_error(st, file, line, "%s: unexpected text after the closing quote",
			          key);
			return;
		}
	}
	if (st->skip)
		return;
	if (!st->section) {
		ini_error(st, file, line, "'%s' is outside of any [section]", key);
		return;
	}
	st->fn(file, line, st->section, key, value, st->arg);
}

static void parse_line(struct ini_state *st, const char *file, int line, char *s, int depth)
{
	s = trim(s);
	if (is_comment_or_empty(s))
		return;
	if (*s == '[') {
		do_section(st, file, line, s);
	} else if (*s == '%') {
		size_t n = 1;
		while (s[n] && !is_space(s[n]))
			n++;
		if (n == strlen("%include") && strncmp(s, "%include", n) == 0)
			do_include(st, file, line, s + n, depth);
		else
			ini_error(st, file, line, "unknown directive '%.*s'", (int)n, s);
	} else {
		do_key_value(st, file, line, s);
	}
}

static void parse_text(struct ini_state *st, const char *name, const char *text, size_t len,
                       int depth)
{
	const char *p = text, *end = text + len;
	int line = 0;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* UTF-8 byte order mark */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		line++;
		if (memchr(p, '\0', (size_t)(eol - p))) {
			ini_error(st, name, line, "line contains a NUL byte");
		} else {
			size_t n = (size_t)(eol - p);
			char *copy = xstrndup(p, n);
			parse_line(st, name, line, copy, depth);
			secure_zero(copy, n); /* [databases] lines hold passwords */
			free(copy);
		}
		p = nl ? nl + 1 : end;
	}
}

bool ini_parse_string(const char *name, const char *text, ini_fn fn, void *arg,
                      struct strlist *errors)
{
	struct ini_state st = {.fn = fn, .arg = arg, .errors = errors};
	parse_text(&st, name, text, strlen(text), 0);
	free(st.section);
	return !st.failed;
}

bool ini_parse_file(const char *path, ini_fn fn, void *arg, struct strlist *errors)
{
	struct ini_state st = {.fn = fn, .arg = arg, .errors = errors};
	char *text;
	size_t len;
	if (!read_file(path, &text, &len)) {
		ini_error(&st, path, 0, "cannot open: %s", strerror(errno));
		return false;
	}
	parse_text(&st, path, text, len, 0);
	secure_zero(text, len);
	free(text);
	free(st.section);
	return !st.failed;
}

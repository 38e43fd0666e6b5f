#include <config.h>

#include "auth/userlist.h"

#include "auth/md5.h"
#include "auth/scram.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERLIST_MAX_FILE (256u * 1024 * 1024)

struct user_entry {
	char *user;
	char *secret;
	size_t line; /* order in the file: a later line wins */
};

struct userlist {
	struct user_entry *entries; /* sorted by user, unique */
	size_t n;
};

enum secret_kind secret_kind_of(const char *secret)
{
	if (md5_is_hash(secret))
		return SECRET_MD5;
	if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0)
		return SECRET_SCRAM;
	return SECRET_PLAIN;
}

const char *secret_kind_name(enum secret_kind k)
{
	switch (k) {
#define SECRET_KIND_NAME(name)                                                                     \
	case name:                                                                                 \
		return #name;
		SECRET_KIND_LIST(SECRET_KIND_NAME)
#undef SECRET_KIND_NAME
	}
	return "SECRET_?";
}

static void entry_free(struct user_entry *e)
{
	free(e->user);
	if (e->secret != NULL) {
		secure_zero(e->secret, strlen(e->secret));
		free(e->secret);
	}
	e->user = NULL;
	e->secret = NULL;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Read a quoted field at *pp (on its opening '"'), where "" stands for one
 * '"', into a malloc'd string.  NULL with *err set if it is unterminated
 * before `end` or longer than `max` bytes. */
static char *read_field(const char **pp, const char *end, size_t max, bool is_user,
                        const char **err)
{
	const char *start = *pp + 1, *p = start;
	size_t n = 0;
	char *out;

	/* Measure first, so the copy is exactly sized (no realloc leaving a
	 * copy of a secret behind). */
	for (;;) {
		if (p == end) {
			*err = is_user ? "unterminated quoted user name"
			               : "unterminated quoted secret";
			return NULL;
		}
		if (*p == '"') {
			if (p + 1 == end || p[1] != '"')
				break;
			p++; /* an escaped quote */
		}
		if (++n > max) {
			*err = is_user ? "user name too long" : "secret too long";
			return NULL;
		}
		p++;
	}
	out = xmalloc(n + 1);
	n = 0;
	for (const char *q = start; q < p; q++) {
		out[n++] = *q;
		if (*q == '"')
			q++;
	}
	out[n] = '\0';
	*pp = p + 1;
	return out;
}

/* Parse one line [p, end).  Returns false with *err set on a malformed line;
 * true with e->user NULL for a blank or comment line. */
static bool parse_line(const char *p, const char *end, struct user_entry *e, const char **err)
{
	e->user = NULL;
	e->secret = NULL;
	if (memchr(p, '\0', (size_t)(end - p)) != NULL) {
		*err = "NUL byte in line";
		return false;
	}
	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p == ';')
		return true;
	if (*p != '"') {
		*err = "expected a quoted user name";
		return false;
	}
	e->user = read_field(&p, end, USERLIST_MAX_USER, true, err);
	if (e->user == NULL)
		return false;
	if (e->user[0] == '\0') {
		*err = "empty user name";
		goto fail;
	}
	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p != '"') {
		*err = "expected a quoted secret after the user name";
		goto fail;
	}
	e->secret = read_field(&p, end, USERLIST_MAX_SECRET, false, err);
	if (e->secret == NULL)
		goto fail;
	/* Anything after the secret is ignored, as pgbouncer does. */
	if (secret_kind_of(e->secret) == SECRET_SCRAM && !scram_is_secret(e->secret)) {
		*err = "malformed SCRAM secret";
		goto fail;
	}
	return true;
fail:
	entry_free(e);
	return false;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct user_entry *x = a, *y = b;
	int c = strcmp(x->user, y->user);
	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

static void list_free_entries(struct user_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++)
		entry_free(&entries[i]);
	free(entries);
}

struct userlist *userlist_parse_text(const char *name, const char *text, size_t len,
                                     struct strlist *errors)
{
	struct user_entry *entries = NULL;
	size_t n = 0, cap = 0, line = 0, nerr = 0, kept = 0;
	const char *p = text, *end = text + len;
	struct userlist *l;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol != NULL ? eol : end;
		struct user_entry e;
		const char *err = NULL;

		line++;
		if (!parse_line(p, line_end, &e, &err)) {
			nerr++;
			if (errors != NULL)
				strlist_addf(errors, "%s:%zu: %s", name, line, err);
		} else if (e.user != NULL) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				entries = xrealloc(entries, cap * sizeof(*entries));
			}
			e.line = line;
			entries[n++] = e;
		}
		p = eol != NULL ? eol + 1 : end;
	}
	if (nerr > 0) {
		list_free_entries(entries, n);
		return NULL;
	}

	/* Sort, then keep the last line of each user. */
	if (n > 1)
		qsort(entries, n, sizeof(*entries), entry_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && strcmp(entries[i].user, entries[i + 1].user) == 0) {
			entry_free(&entries[i]);
			continue;
		}
		entries[kept++] = entries[i];
	}
	l = xcalloc(1, sizeof(*l));
	l->entries = entries;
	l->n = kept;
	return l;
}

struct userlist *userlist_parse_string(const char *name, const char *text, struct strlist *errors)
{
	return userlist_parse_text(name, text, strlen(text), errors);
}

struct userlist *userlist_load(const char *path, struct strlist *errors)
{
	struct userlist *l = NULL;
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int fd;

	if (path == NULL || path[0] == '\0')
		return xcalloc(1, sizeof(struct userlist));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errors != NULL)
			strlist_addf(errors, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= USERLIST_MAX_FILE) {
				if (errors != NULL)
					strlist_addf(errors, "%s: file too large", path);
				goto out;
			}
			/* Grow by hand so no copy of the secrets is left behind. */
			size_t ncap = cap ? cap * 2 : 65536;
			char *nbuf = xmalloc(ncap);
			if (len > 0)
				memcpy(nbuf, buf, len);
			if (buf != NULL) {
				secure_zero(buf, len);
				free(buf);
			}
			buf = nbuf;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errors != NULL)
				strlist_addf(errors, "%s: cannot read: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	l = userlist_parse_text(path, buf != NULL ? buf : "", len, errors);
out:
	if (buf != NULL) {
		secure_zero(buf, len);
		free(buf);
	}
	close(fd);
	return l;
}

static int lookup_cmp(const void *key, const void *elem)
{
	const struct user_entry *e = elem;
	return strcmp(key, e->user);
}

const char *userlist_lookup(const struct userlist *l, const char *user)
{
	const struct user_entry *e;

	if (l == NULL || user == NULL || l->n == 0)
		return NULL;
	e = bsearch(user, l->entries, l->n, sizeof(*l->entries), lookup_cmp);
	return e != NULL ? e->secret : NULL;
}

size_t userlist_count(const struct userlist *l)
{
	return l != NULL ? l->n : 0;
}

void userlist_free(struct userlist *l)
{
	if (l == NULL)
		return;
	list_free_entries(l->entries, l->n);
	free(l);
}

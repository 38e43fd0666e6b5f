#include <config.h>

#include "proxy/admin_cmd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

/* Is the word at *p `w` (case-insensitive, followed by neither a letter,
 * digit nor '_')?  Only then *p moves past it and the blanks after. */
static bool word_is(const char **p, const char *w)
{
	size_t n = strlen(w);
	if (strncasecmp(*p, w, n) != 0 || isalnum((unsigned char)(*p)[n]) || (*p)[n] == '_')
		return false;
	*p += n;
	while (isspace((unsigned char)**p))
		(*p)++;
	return true;
}

/* The word `w` and nothing after it. */
static bool last_word_is(const char *p, const char *w)
{
	return word_is(&p, w) && !*p;
}

static void syntax(struct admin_cmd *out, const char *error)
{
	out->kind = ADMIN_SYNTAX;
	out->error = error;
}

/* SET key = value. */
static void parse_set(const char *args, struct admin_cmd *out)
{
	const char *eq = strchr(args, '=');
	size_t klen = eq ? (size_t)(eq - args) : 0;
	while (klen > 0 && isspace((unsigned char)args[klen - 1]))
		klen--;
	if (klen == 0 || klen >= sizeof(out->key)) {
		syntax(out, "syntax: SET key = value");
		return;
	}
	memcpy(out->key, args, klen);
	out->key[klen] = '\0';
	const char *v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	strlcopy(out->value, v, sizeof(out->value));
	char *value = out->value;
	size_t vl = strlen(value);
	while (vl > 0 && (isspace((unsigned char)value[vl - 1]) || value[vl - 1] == ';'))
		value[--vl] = '\0';
	if (vl >= 2 && (value[0] == '\'' || value[0] == '"') && value[vl - 1] == value[0]) {
		memmove(value, value + 1, vl - 2);
		value[vl - 2] = '\0';
	}
	out->kind = ADMIN_SET;
}

static void parse_kill_client(const char *q, struct admin_cmd *out)
{
	const char *id = q;
	if (strncasecmp(id, "C-", 2) == 0)
		id += 2;
	char *end;
	out->client_id = strtoull(id, &end, 10);
	if (!isdigit((unsigned char)*id) || *end) {
		syntax(out, "syntax: KILL_CLIENT C-<id> (from SHOW CLIENTS)");
		return;
	}
	out->kind = ADMIN_KILL_CLIENT;
}

static void parse_show(const char *q, struct admin_cmd *out)
{
#define ADMIN_SHOW_MATCH(id, kw)                                                                   \
	if (last_word_is(q, kw)) {                                                                 \
		out->kind = id;                                                                    \
		return;                                                                            \
	}
	ADMIN_SHOW_LIST(ADMIN_SHOW_MATCH)
#undef ADMIN_SHOW_MATCH
	out->kind = ADMIN_SHOW_UNKNOWN;
}

void admin_cmd_parse(char *sql, struct admin_cmd *out)
{
	memset(out, 0, sizeof(*out));
	char *p = sql;
	while (isspace((unsigned char)*p))
		p++;
	size_t n = strlen(p);
	while (n > 0 && (isspace((unsigned char)p[n - 1]) || p[n - 1] == ';'))
		p[--n] = '\0';
	out->text = p;
	out->arg = p + n;
	const char *q = p;
	if (!*q) {
		out->kind = ADMIN_EMPTY;
		return;
	}
	if (word_is(&q, "SHOW")) {
		parse_show(q, out);
		return;
	}
	/* Commands taking a database (or, for some, nothing). */
	static const struct {
		const char *word;
		enum admin_cmd_kind kind;
	} db_cmds[] = {
	        {"PAUSE", ADMIN_PAUSE},         {"RESUME", ADMIN_RESUME},
	        {"DISABLE", ADMIN_DISABLE},     {"ENABLE", ADMIN_ENABLE},
	        {"RECONNECT", ADMIN_RECONNECT}, {"WAIT_CLOSE", ADMIN_WAIT_CLOSE},
	        {"KILL", ADMIN_KILL},
	};
	if (word_is(&q, "SET")) {
		parse_set(q, out);
		return;
	}
	if (last_word_is(q, "RELOAD")) {
		out->kind = ADMIN_RELOAD;
		return;
	}
	if (word_is(&q, "KILL_CLIENT")) {
		parse_kill_client(q, out);
		return;
	}
	if (word_is(&q, "SHUTDOWN")) {
		out->shutdown = ADMIN_SHUTDOWN_FAST;
		if (word_is(&q, "WAIT_FOR_CLIENTS"))
			out->shutdown = ADMIN_SHUTDOWN_WAIT_CLIENTS;
		else if (word_is(&q, "WAIT_FOR_SERVERS"))
			out->shutdown = ADMIN_SHUTDOWN_WAIT_SERVERS;
		if (*q)
			syntax(out, "syntax: SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]");
		else
			out->kind = ADMIN_SHUTDOWN;
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(db_cmds); i++) {
		if (word_is(&q, db_cmds[i].word)) {
			out->kind = db_cmds[i].kind;
			out->arg = q;
			return;
		}
	}
	out->kind = ADMIN_UNKNOWN;
}

bool admin_cmd_read_only(enum admin_cmd_kind kind)
{
	return kind == ADMIN_EMPTY || (kind >= ADMIN_SHOW_HELP && kind <= ADMIN_SHOW_UNKNOWN);
}

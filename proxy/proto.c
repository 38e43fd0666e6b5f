#include <config.h>

#include "proxy/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/scram.h"
#include "common/util.h"

void params_init(struct params *p)
{
	p->v = NULL;
	p->n = p->cap = 0;
}

void params_free(struct params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].value);
	}
	free(p->v);
	params_init(p);
}

void params_set(struct params *p, const char *name, const char *value)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcasecmp(p->v[i].name, name) == 0) {
			free(p->v[i].value);
			p->v[i].value = xstrdup(value);
			return;
		}
	}
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
	}
	p->v[p->n].name = xstrdup(name);
	p->v[p->n].value = xstrdup(value);
	p->n++;
}

void params_copy(struct params *dst, const struct params *src)
{
	params_free(dst);
	for (size_t i = 0; i < src->n; i++)
		params_set(dst, src->v[i].name, src->v[i].value);
}

const char *params_get(const struct params *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcasecmp(p->v[i].name, name) == 0)
			return p->v[i].value;
	return NULL;
}

static void startup_fail(struct startup *s, const char *sqlstate, const char *msg)
{
	s->kind = STARTUP_BAD;
	strlcopy(s->sqlstate, sqlstate, sizeof(s->sqlstate));
	strlcopy(s->error, msg, sizeof(s->error));
}

void proto_parse_startup(const uint8_t *body, size_t len, struct startup *s)
{
	memset(s, 0, sizeof(*s));
	params_init(&s->params);
	params_init(&s->pq_options);
	struct msg_reader r;
	reader_init(&r, body, len);
	s->version = reader_u32(&r);
	if (r.bad) {
		startup_fail(s, "08P01", "invalid startup packet layout");
		return;
	}
	switch (s->version) {
	case PROTO_SSL:
	case PROTO_GSSENC:
		if (len != 4) {
			startup_fail(s, "08P01", "invalid length of encryption request");
			return;
		}
		s->kind = s->version == PROTO_SSL ? STARTUP_SSL : STARTUP_GSSENC;
		return;
	case PROTO_CANCEL:
		s->cancel_pid = reader_u32(&r);
		s->cancel_key = reader_u32(&r);
		if (r.bad || reader_left(&r) != 0) {
			startup_fail(s, "08P01", "invalid length of cancel request");
			return;
		}
		s->kind = STARTUP_CANCEL;
		return;
	}
	if (PROTO_MAJOR(s->version) != 3) {
		char msg[128];
		snprintf(msg, sizeof(msg),
		         "unsupported frontend protocol %u.%u: server supports 3.0",
		         PROTO_MAJOR(s->version), PROTO_MINOR(s->version));
		startup_fail(s, "08P01", msg);
		return;
	}
	for (;;) {
		const char *name = reader_str(&r);
		if (!name)
			break;
		if (*name == '\0') {
			if (reader_left(&r) != 0)
				startup_fail(
				        s, "08P01",
				        "invalid startup packet layout: data after terminator");
			break;
		}
		const char *value = reader_str(&r);
		if (!value)
			break;
		if (strcmp(name, "user") == 0) {
			free(s->user);
			s->user = xstrdup(value);
		} else if (strcmp(name, "database") == 0) {
			free(s->database);
			s->database = xstrdup(value);
		} else if (strncmp(name, "_pq_.", 5) == 0) {
			params_set(&s->pq_options, name, value);
		} else {
			params_set(&s->params, name, value);
		}
	}
	if (s->kind == STARTUP_BAD)
		return;
	if (r.bad) {
		startup_fail(s, "08P01",
		             "invalid startup packet layout: expected terminator as last byte");
		return;
	}
	if (!s->user || !*s->user) {
		startup_fail(s, "28000", "no PostgreSQL user name specified in startup packet");
		return;
	}
	if (!s->database || !*s->database) {
		free(s->database);
		s->database = xstrdup(s->user);
	}
	s->kind = STARTUP_NORMAL;
}

void startup_free(struct startup *s)
{
	free(s->user);
	free(s->database);
	params_free(&s->params);
	params_free(&s->pq_options);
	s->user = s->database = NULL;
}

static void copy_field(char *dst, size_t n, const char *src)
{
	strlcopy(dst, src, n);
}

bool proto_parse_error(const uint8_t *body, size_t len, struct pg_error *out)
{
	memset(out, 0, sizeof(*out));
	struct msg_reader r;
	reader_init(&r, body, len);
	for (;;) {
		uint8_t code = reader_u8(&r);
		if (r.bad)
			return false;
		if (code == 0)
			return true;
		const char *v = reader_str(&r);
		if (!v)
			return false;
		switch (code) {
		case 'V':
			copy_field(out->severity, sizeof(out->severity), v);
			break;
		case 'S':
			if (!out->severity[0])
				copy_field(out->severity, sizeof(out->severity), v);
			break;
		case 'C':
			if (strlen(v) == 5)
				copy_field(out->sqlstate, sizeof(out->sqlstate), v);
			break;
		case 'M':
			copy_field(out->message, sizeof(out->message), v);
			break;
		}
	}
}

bool proto_parse_auth_request(const uint8_t *body, size_t len, struct auth_request *out)
{
	memset(out, 0, sizeof(*out));
	struct msg_reader r;
	reader_init(&r, body, len);
	out->code = reader_u32(&r);
	if (r.bad) {
		out->code = UINT32_MAX;
		return false;
	}
	switch (out->code) {
	case AUTH_REQ_MD5:
		out->salt = reader_bytes(&r, 4);
		return out->salt != NULL;
	case AUTH_REQ_SASL:
		for (;;) {
			const char *mech = reader_str(&r);
			if (!mech)
				return false;
			if (!*mech)
				return true;
			if (strcmp(mech, SCRAM_MECHANISM) == 0)
				out->scram = true;
			if (strcmp(mech, SCRAM_MECHANISM_PLUS) == 0)
				out->scram_plus = true;
		}
	case AUTH_REQ_SASL_CONTINUE:
	case AUTH_REQ_SASL_FINAL:
		out->data_len = reader_left(&r);
		out->data = reader_bytes(&r, out->data_len);
		return out->data != NULL;
	default:
		return true;
	}
}

bool proto_parse_param_status(const uint8_t *body, size_t len, const char **name,
                              const char **value)
{
	struct msg_reader r;
	reader_init(&r, body, len);
	*name = reader_str(&r);
	*value = *name ? reader_str(&r) : NULL;
	return *name && *value && **name;
}

bool proto_parse_backend_key(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key)
{
	struct msg_reader r;
	reader_init(&r, body, len);
	*pid = reader_u32(&r);
	*key = reader_u32(&r);
	if (r.bad)
		*pid = *key = 0;
	return !r.bad;
}

bool proto_parse_row2(const uint8_t *body, size_t len, const uint8_t *col[2], uint32_t n[2])
{
	struct msg_reader r;
	reader_init(&r, body, len);
	if (reader_u16(&r) != 2)
		return false;
	for (int i = 0; i < 2; i++) {
		n[i] = reader_u32(&r);
		col[i] = n[i] == UINT32_MAX || r.bad ? NULL : reader_bytes(&r, n[i]);
		if (!col[i] || memchr(col[i], 0, n[i]))
			return false; /* NULL or malformed: not a setting */
	}
	return true;
}

const char *proto_parse_password(const uint8_t *body, size_t len)
{
	const uint8_t *nul = memchr(body, '\0', len);
	return nul && (size_t)(nul - body) + 1 == len ? (const char *)body : NULL;
}

bool proto_parse_sasl_initial(const uint8_t *body, size_t len, const char **mechanism,
                              const uint8_t **data, uint32_t *data_len)
{
	struct msg_reader r;
	reader_init(&r, body, len);
	*mechanism = reader_str(&r);
	*data_len = reader_u32(&r);
	*data = r.bad || *data_len == UINT32_MAX ? NULL : reader_bytes(&r, *data_len);
	return *mechanism && *data && !r.bad && reader_left(&r) == 0;
}

void proto_error(struct pkt *p, const char *severity, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pkt_begin(p, 'E');
	pkt_put_u8(p, 'S');
	pkt_put_str(p, severity);
	pkt_put_u8(p, 'V');
	pkt_put_str(p, severity);
	pkt_put_u8(p, 'C');
	pkt_put_str(p, sqlstate);
	pkt_put_u8(p, 'M');
	pkt_put_str(p, msg);
	pkt_put_u8(p, 0);
	pkt_end(p);
}

void proto_auth(struct pkt *p, uint32_t code, const void *data, size_t len)
{
	pkt_begin(p, 'R');
	pkt_put_u32(p, code);
	pkt_put_bytes(p, data, len);
	pkt_end(p);
}

void proto_auth_sasl(struct pkt *p, const char *const *mechanisms, size_t n)
{
	pkt_begin(p, 'R');
	pkt_put_u32(p, AUTH_REQ_SASL);
	for (size_t i = 0; i < n; i++)
		pkt_put_str(p, mechanisms[i]);
	pkt_put_u8(p, 0);
	pkt_end(p);
}

void proto_param_status(struct pkt *p, const char *name, const char *value)
{
	pkt_begin(p, 'S');
	pkt_put_str(p, name);
	pkt_put_str(p, value);
	pkt_end(p);
}

void proto_backend_key(struct pkt *p, uint32_t pid, uint32_t key)
{
	pkt_begin(p, 'K');
	pkt_put_u32(p, pid);
	pkt_put_u32(p, key);
	pkt_end(p);
}

void proto_ready(struct pkt *p, char status)
{
	pkt_begin(p, 'Z');
	pkt_put_u8(p, (uint8_t)status);
	pkt_end(p);
}

void proto_negotiate_version(struct pkt *p, uint32_t minor, const struct params *unrecognized)
{
	pkt_begin(p, 'v');
	pkt_put_u32(p, minor);
	pkt_put_u32(p, (uint32_t)unrecognized->n);
	for (size_t i = 0; i < unrecognized->n; i++)
		pkt_put_str(p, unrecognized->v[i].name);
	pkt_end(p);
}

void proto_startup(struct pkt *p, const struct params *params)
{
	pkt_begin(p, 0);
	pkt_put_u32(p, PROTO_V3);
	for (size_t i = 0; i < params->n; i++) {
		pkt_put_str(p, params->v[i].name);
		pkt_put_str(p, params->v[i].value);
	}
	pkt_put_u8(p, 0);
	pkt_end(p);
}

void proto_ssl_request(struct pkt *p)
{
	pkt_begin(p, 0);
	pkt_put_u32(p, PROTO_SSL);
	pkt_end(p);
}

void proto_cancel(struct pkt *p, uint32_t pid, uint32_t key)
{
	pkt_begin(p, 0);
	pkt_put_u32(p, PROTO_CANCEL);
	pkt_put_u32(p, pid);
	pkt_put_u32(p, key);
	pkt_end(p);
}

void proto_query(struct pkt *p, const char *sql)
{
	pkt_begin(p, 'Q');
	pkt_put_str(p, sql);
	pkt_end(p);
}

void proto_password(struct pkt *p, const char *data, size_t len)
{
	pkt_begin(p, 'p');
	pkt_put_bytes(p, data, len);
	pkt_end(p);
}

void proto_sasl_initial(struct pkt *p, const char *mechanism, const char *data, size_t len)
{
	pkt_begin(p, 'p');
	pkt_put_str(p, mechanism);
	pkt_put_u32(p, (uint32_t)len);
	pkt_put_bytes(p, data, len);
	pkt_end(p);
}

void proto_terminate(struct pkt *p)
{
	pkt_begin(p, 'X');
	pkt_end(p);
}

void proto_put_literal(struct pkt *p, const char *value)
{
	/* E'' with doubled backslashes reads the same whatever
	 * standard_conforming_strings is. */
	if (strchr(value, '\\'))
		pkt_put_u8(p, 'E');
	pkt_put_u8(p, '\'');
	for (const char *c = value; *c; c++) {
		if (*c == '\'' || *c == '\\')
			pkt_put_u8(p, (uint8_t)*c);
		pkt_put_u8(p, (uint8_t)*c);
	}
	pkt_put_u8(p, '\'');
}

void proto_put_ident(struct pkt *p, const char *name)
{
	pkt_put_u8(p, '"');
	for (const char *c = name; *c; c++) {
		if (*c == '"')
			pkt_put_u8(p, '"');
		pkt_put_u8(p, (uint8_t)*c);
	}
	pkt_put_u8(p, '"');
}

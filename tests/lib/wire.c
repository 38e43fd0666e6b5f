#include <config.h>

#include "tests/lib/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "tests/lib/tap.h"

#define WIRE_MAX_MSG (64u * 1024 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int wire_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		diag("connect to 127.0.0.1:%d: %s", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

int wire_connect_from(const char *src, const char *dst, int port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *from = NULL, *to = NULL;
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	int fd = -1;
	if (getaddrinfo(src, "0", &hints, &from) != 0 ||
	    getaddrinfo(dst, portstr, &hints, &to) != 0) {
		diag("wire_connect_from: bad address %s or %s", src, dst);
		goto out;
	}
	fd = socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, from->ai_addr, from->ai_addrlen) < 0 ||
	    connect(fd, to->ai_addr, to->ai_addrlen) < 0) {
		diag("connect from %s to %s port %d: %s", src, dst, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
		goto out;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
out:
	if (from)
		freeaddrinfo(from);
	if (to)
		freeaddrinfo(to);
	return fd;
}

int wire_connect_unix(const char *dir, int port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s/.s.PGSQL.%d", dir, port);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		diag("connect to %s: %s", a.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

void wire_abort(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(fd);
}

bool wire_send(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void put32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

bool wire_send_startup(int fd, uint32_t version, const char *const params[])
{
	size_t len = 8 + 1;
	for (size_t i = 0; params && params[i]; i++)
		len += strlen(params[i]) + 1;
	char *buf = malloc(len);
	if (!buf)
		return false;
	put32(buf, (uint32_t)len);
	put32(buf + 4, version);
	size_t o = 8;
	for (size_t i = 0; params && params[i]; i++) {
		size_t n = strlen(params[i]) + 1;
		memcpy(buf + o, params[i], n);
		o += n;
	}
	buf[o] = '\0';
	bool ok = wire_send(fd, buf, len);
	free(buf);
	return ok;
}

bool wire_send_request(int fd, uint32_t code)
{
	char buf[8];
	put32(buf, 8);
	put32(buf + 4, code);
	return wire_send(fd, buf, 8);
}

bool wire_send_cancel(int fd, uint32_t pid, uint32_t secret)
{
	char buf[16];
	put32(buf, 16);
	put32(buf + 4, WIRE_CANCEL_REQUEST);
	put32(buf + 8, pid);
	put32(buf + 12, secret);
	return wire_send(fd, buf, 16);
}

bool wire_send_msg(int fd, char type, const void *body, size_t len)
{
	char *buf = malloc(len + 5);
	if (!buf)
		return false;
	buf[0] = type;
	put32(buf + 1, (uint32_t)len + 4);
	if (len)
		memcpy(buf + 5, body, len);
	bool ok = wire_send(fd, buf, len + 5);
	free(buf);
	return ok;
}

bool wire_send_query(int fd, const char *sql)
{
	return wire_send_msg(fd, 'Q', sql, strlen(sql) + 1);
}

bool wire_readable(int fd, double timeout)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	while ((r = poll(&p, 1, (int)(timeout * 1000))) < 0 && errno == EINTR)
		;
	return r > 0;
}

/* 1: got n bytes, 0: EOF, -1: timeout or error. */
static int read_full(int fd, void *buf, size_t n, double end)
{
	char *p = buf;
	while (n > 0) {
		double left = end - now();
		if (left <= 0 || !wire_readable(fd, left))
			return -1;
		ssize_t r = recv(fd, p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return 0;
		if (r < 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 1;
}

int wire_read_byte(int fd, double timeout)
{
	unsigned char c;
	int r = read_full(fd, &c, 1, now() + timeout);
	return r == 1 ? c : r == 0 ? -2 : -1;
}

int wire_read_msg(int fd, struct wire_msg *m, double timeout)
{
	char hdr[5];
	double end = now() + timeout;
	memset(m, 0, sizeof *m);
	int r = read_full(fd, hdr, 5, end);
	if (r != 1)
		return r;
	uint32_t len = get32(hdr + 1);
	if (len < 4 || len > WIRE_MAX_MSG) {
		diag("absurd message length %u (type 0x%02x)", len, (unsigned char)hdr[0]);
		return -1;
	}
	m->type = hdr[0];
	m->len = len - 4;
	m->body = malloc(m->len + 1);
	if (!m->body)
		return -1;
	r = read_full(fd, m->body, m->len, end);
	m->body[m->len] = '\0';
	if (r != 1) {
		wire_msg_free(m);
		return r;
	}
	return 1;
}

void wire_msg_free(struct wire_msg *m)
{
	free(m->body);
	m->body = NULL;
}

void wire_error_field(const struct wire_msg *m, char code, char *out, size_t outlen)
{
	out[0] = '\0';
	size_t i = 0;
	while (i < m->len && m->body[i] != '\0') {
		char c = m->body[i++];
		const char *v = m->body + i;
		size_t n = strnlen(v, m->len - i);
		if (c == code) {
			snprintf(out, outlen, "%.*s", (int)n, v);
			return;
		}
		i += n + 1;
	}
}

bool wire_wait_eof(int fd, double timeout, char *states, size_t stateslen)
{
	double end = now() + timeout;
	for (;;) {
		struct wire_msg m;
		double left = end - now();
		if (left <= 0)
			return false;
		int r = wire_read_msg(fd, &m, left);
		if (r == 0)
			return true;
		if (r < 0)
			return false;
		if (m.type == 'E' && states) {
			char st[8];
			wire_error_field(&m, 'C', st, sizeof st);
			size_t used = strlen(states);
			snprintf(states + used, stateslen - used, "%s%s", used ? "," : "", st);
		}
		wire_msg_free(&m);
	}
}

/* --- authentication */

static void hexdigest(const EVP_MD *md, const void *data, size_t len, char *hex)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(data, len, d, &n, md, NULL);
	for (unsigned int i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static bool send_password(int fd, const char *pw)
{
	return wire_send_msg(fd, 'p', pw, strlen(pw) + 1);
}

static bool send_md5(int fd, const char *user, const char *password, const char *salt)
{
	char inner[33], outer[33], buf[512];
	int n = snprintf(buf, sizeof buf, "%s%s", password, user);
	hexdigest(EVP_md5(), buf, (size_t)n, inner);
	memcpy(buf, inner, 32);
	memcpy(buf + 32, salt, 4);
	hexdigest(EVP_md5(), buf, 36, outer);
	char msg[40];
	snprintf(msg, sizeof msg, "md5%s", outer);
	return send_password(fd, msg);
}

struct scram {
	char client_first_bare[64];
	char nonce_c[40];
	unsigned char salted[32];
	char auth_message[1024];
};

static int b64_encode(const unsigned char *in, size_t n, char *out)
{
	return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64_decode(const char *in, size_t n, unsigned char *out)
{
	int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (r < 0)
		return -1;
	while (n > 0 && in[n - 1] == '=') {
		n--;
		r--;
	}
	return r;
}

static bool hmac256(const unsigned char *key, size_t keylen, const void *data, size_t n,
                    unsigned char out[32])
{
	unsigned int len = 32;
	return HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) != NULL;
}

static bool scram_first(int fd, struct scram *s)
{
	unsigned char raw[18];
	if (RAND_bytes(raw, sizeof raw) != 1)
		return false;
	b64_encode(raw, sizeof raw, s->nonce_c);
	snprintf(s->client_first_bare, sizeof s->client_first_bare, "n=,r=%s", s->nonce_c);
	char data[128];
	int dlen = snprintf(data, sizeof data, "n,,%s", s->client_first_bare);
	const char mech[] = "SCRAM-SHA-256";
	char body[256];
	memcpy(body, mech, sizeof mech);
	put32(body + sizeof mech, (uint32_t)dlen);
	memcpy(body + sizeof mech + 4, data, (size_t)dlen);
	return wire_send_msg(fd, 'p', body, sizeof mech + 4 + (size_t)dlen);
}

/* `server_first` is the text of AuthenticationSASLContinue. */
static bool scram_final(int fd, struct scram *s, const char *password, const char *server_first,
                        size_t sflen)
{
	char sf[512];
	if (sflen >= sizeof sf)
		return false;
	memcpy(sf, server_first, sflen);
	sf[sflen] = '\0';
	const char *r = NULL, *salt = NULL;
	int iter = 0;
	char copy[512];
	memcpy(copy, sf, sflen + 1);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strncmp(t, "r=", 2) == 0)
			r = t + 2;
		else if (strncmp(t, "s=", 2) == 0)
			salt = t + 2;
		else if (strncmp(t, "i=", 2) == 0)
			iter = atoi(t + 2);
	}
	if (!r || !salt || iter <= 0 || strncmp(r, s->nonce_c, strlen(s->nonce_c)) != 0) {
		diag("bad SCRAM server-first-message '%s'", sf);
		return false;
	}
	unsigned char saltbin[128];
	int saltlen = b64_decode(salt, strlen(salt), saltbin);
	if (saltlen <= 0 || (size_t)saltlen > sizeof saltbin - 8)
		return false;
	if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), saltbin, saltlen, iter,
	                       EVP_sha256(), 32, s->salted))
		return false;
	unsigned char client_key[32], stored_key[32], sig[32], proof[32];
	unsigned int n = 32;
	hmac256(s->salted, 32, "Client Key", 10, client_key);
	EVP_Digest(client_key, 32, stored_key, &n, EVP_sha256(), NULL);
	char final_bare[256];
	snprintf(final_bare, sizeof final_bare, "c=biws,r=%s", r);
	snprintf(s->auth_message, sizeof s->auth_message, "%s,%s,%s", s->client_first_bare, sf,
	         final_bare);
	hmac256(stored_key, 32, s->auth_message, strlen(s->auth_message), sig);
	for (int i = 0; i < 32; i++)
		proof[i] = client_key[i] ^ sig[i];
	char proof64[64], msg[400];
	b64_encode(proof, 32, proof64);
	int len = snprintf(msg, sizeof msg, "%s,p=%s", final_bare, proof64);
	return wire_send_msg(fd, 'p', msg, (size_t)len);
}

static bool scram_verify(const struct scram *s, const char *server_final, size_t len)
{
	unsigned char server_key[32], sig[32];
	char sig64[64];
	hmac256(s->salted, 32, "Server Key", 10, server_key);
	hmac256(server_key, 32, s->auth_message, strlen(s->auth_message), sig);
	b64_encode(sig, 32, sig64);
	return len == strlen(sig64) + 2 && strncmp(server_final, "v=", 2) == 0 &&
	        memcmp(server_final + 2, sig64, len - 2) == 0;
}

bool wire_finish_login(int fd, const char *user, const char *password, struct wire_login *out)
{
	struct scram s;
	memset(&s, 0, sizeof s);
	for (;;) {
		struct wire_msg m;
		int r = wire_read_msg(fd, &m, 20);
		if (r != 1) {
			snprintf(out->message, sizeof out->message, "%s",
			         r == 0 ? "connection closed" : "timeout or bad message");
			return false;
		}
		bool sent = true;
		switch (m.type) {
		case 'R': {
			int code = m.len >= 4 ? (int)get32(m.body) : -1;
			if (out->auth_code < 0)
				out->auth_code = code;
			const char *pw = password ? password : "";
			if (code == 3)
				sent = send_password(fd, pw);
			else if (code == 5 && m.len >= 8)
				sent = send_md5(fd, user, pw, m.body + 4);
			else if (code == 10)
				sent = scram_first(fd, &s);
			else if (code == 11)
				sent = scram_final(fd, &s, pw, m.body + 4, m.len - 4);
			else if (code == 12)
				out->server_final_ok = scram_verify(&s, m.body + 4, m.len - 4);
			else if (code != 0)
				sent = false;
			break;
		}
		case 'v':
			if (m.len >= 8) {
				out->negotiated_minor = (int)get32(m.body);
				out->n_unsupported = (int)get32(m.body + 4);
			}
			break;
		case 'K':
			if (m.len >= 8) {
				out->have_key = true;
				out->key_pid = get32(m.body);
				out->key_secret = get32(m.body + 4);
			}
			break;
		case 'S':
			out->n_params++;
			break;
		case 'Z':
			out->ok = true;
			out->txn_status = m.len ? m.body[0] : '?';
			wire_msg_free(&m);
			return true;
		case 'E':
			wire_error_field(&m, 'C', out->sqlstate, sizeof out->sqlstate);
			wire_error_field(&m, 'M', out->message, sizeof out->message);
			wire_msg_free(&m);
			return false;
		case 'N':
			break;
		default:
			snprintf(out->message, sizeof out->message, "unexpected message '%c'",
			         m.type);
			wire_msg_free(&m);
			return false;
		}
		wire_msg_free(&m);
		if (!sent) {
			snprintf(out->message, sizeof out->message,
			         "could not answer the auth request");
			return false;
		}
	}
}

bool wire_login(int fd, uint32_t version, const char *user, const char *db, const char *password,
                struct wire_login *out)
{
	memset(out, 0, sizeof *out);
	out->auth_code = -1;
	out->negotiated_minor = -1;
	const char *params[] = {"user", user, "database", db, NULL};
	if (!wire_send_startup(fd, version ? version : WIRE_PROTO_3_0, params)) {
		snprintf(out->message, sizeof out->message, "could not send the startup packet");
		/* The server may have refused us already: read its error. */
	}
	return wire_finish_login(fd, user, password, out);
}

bool wire_query(int fd, const char *sql, double timeout, struct wire_result *r)
{
	memset(r, 0, sizeof *r);
	double end = now() + timeout;
	if (!wire_send_query(fd, sql)) {
		snprintf(r->message, sizeof r->message, "send failed");
		return false;
	}
	for (;;) {
		struct wire_msg m;
		double left = end - now();
		int rc = left > 0 ? wire_read_msg(fd, &m, left) : -1;
		if (rc != 1) {
			if (!r->message[0])
				snprintf(r->message, sizeof r->message, "%s",
				         rc == 0 ? "connection closed" : "timeout");
			return false;
		}
		if (m.type == 'E' && !r->sqlstate[0]) {
			wire_error_field(&m, 'C', r->sqlstate, sizeof r->sqlstate);
			wire_error_field(&m, 'M', r->message, sizeof r->message);
		} else if (m.type == 'D') {
			if (r->rows == 0 && m.len >= 6 && get32(m.body + 2) != 0xffffffffu) {
				uint32_t n = get32(m.body + 2);
				if (n <= m.len - 6)
					snprintf(r->value, sizeof r->value, "%.*s", (int)n,
					         m.body + 6);
			}
			r->rows++;
		} else if (m.type == 'Z') {
			r->got_ready = true;
			r->txn_status = m.len ? m.body[0] : '?';
			r->ok = !r->sqlstate[0];
			wire_msg_free(&m);
			return r->ok;
		}
		wire_msg_free(&m);
	}
}

/* "<a><sep><b>", malloc'd. */
static char *join2(const char *a, const char *sep, const char *b)
{
	size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
	char *out = malloc(n);
	if (out)
		snprintf(out, n, "%s%s%s", a, sep, b);
	return out;
}

char *wire_whoami(int fd, const char *user, const char *db, const char *password, int *auth_code)
{
	struct wire_login l;
	memset(&l, 0, sizeof l);
	l.auth_code = -1;
	char *out;
	if (fd < 0) {
		out = strdup("no connection");
	} else if (!wire_login(fd, 0, user, db, password, &l)) {
		out = l.sqlstate[0] ? join2(l.sqlstate, " ", l.message)
		                    : join2("failed", ": ", l.message);
	} else {
		struct wire_result r;
		memset(&r, 0, sizeof r);
		wire_query(fd, "select current_user || '@' || current_database()", 10, &r);
		out = r.ok ? join2("ok", " ", r.value) : join2("query", ": ", r.message);
	}
	if (auth_code)
		*auth_code = l.auth_code;
	return out;
}

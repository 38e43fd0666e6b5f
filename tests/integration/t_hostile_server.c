/* A server that speaks the protocol badly must not crash pgmoat or harm
 * other clients.  A small scripted server stands in for a broken or hostile
 * PostgreSQL (each database name picks a script); a real PostgreSQL serves
 * the database "app" beside it, and must keep working throughout. */
#include <config.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static int listen_fd;
static int fake_port;

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static bool read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, 10000) <= 0)
			return false;
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

static void send_all(int fd, const void *buf, size_t n)
{
	if (write(fd, buf, n) < 0) {
		/* the peer went away: the test notices on its side */
	}
}

/* A message: type, length, body. */
static void send_msg(int fd, char type, const void *body, uint32_t len)
{
	uint8_t *m = malloc(5 + (size_t)len);
	m[0] = (uint8_t)type;
	put32(m + 1, len + 4);
	if (len)
		memcpy(m + 5, body, len);
	send_all(fd, m, 5 + (size_t)len);
	free(m);
}

static void send_auth_ok_and_ready(int fd)
{
	uint8_t ok[4] = {0, 0, 0, 0};
	send_msg(fd, 'R', ok, 4);
	uint8_t key[8] = {0, 0, 0, 42, 1, 2, 3, 4};
	send_msg(fd, 'K', key, 8);
	send_msg(fd, 'Z', "I", 1);
}

static void play(int fd, const char *script)
{
	if (strcmp(script, "nosqlstate") == 0) {
		static const char body[] = "SFATAL\0Mno code here\0";
		send_msg(fd, 'E', body, sizeof(body));
	} else if (strcmp(script, "longfield") == 0) {
		size_t n = 200000;
		char *body = malloc(n + 4);
		body[0] = 'M';
		memset(body + 1, 'x', n);
		body[n + 1] = '\0';
		body[n + 2] = '\0';
		send_msg(fd, 'E', body, (uint32_t)(n + 3));
		free(body);
	} else if (strcmp(script, "unterminated") == 0) {
		static const char body[] = {'C', '2', '8', 'P', '0', '1', 'M', 'x', 'y'};
		send_msg(fd, 'E', body, sizeof(body));
	} else if (strcmp(script, "shortauth") == 0) {
		send_msg(fd, 'R', "", 0);
	} else if (strcmp(script, "md5nosalt") == 0) {
		uint8_t code[4] = {0, 0, 0, 5};
		send_msg(fd, 'R', code, 4);
	} else if (strcmp(script, "saslnoend") == 0) {
		uint8_t body[4 + 13] = {0, 0, 0, 10};
		memcpy(body + 4, "SCRAM-SHA-256", 13); /* no terminators */
		send_msg(fd, 'R', body, sizeof(body));
	} else if (strcmp(script, "authcode") == 0) {
		uint8_t code[4] = {0, 0, 0, 99};
		send_msg(fd, 'R', code, 4);
	} else if (strcmp(script, "badlength") == 0) {
		uint8_t m[5] = {'R', 0, 0, 0, 2};
		send_all(fd, m, 5);
	} else if (strcmp(script, "hugelength") == 0) {
		uint8_t m[5] = {'S', 0x7f, 0xff, 0xff, 0xff};
		send_all(fd, m, 5);
	} else if (strcmp(script, "badready") == 0) {
		/* Logs in properly, then answers the first query with a
		 * ReadyForQuery of the wrong length. */
		send_auth_ok_and_ready(fd);
		uint8_t hdr[5];
		if (read_full(fd, hdr, 5)) {
			uint32_t len = ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) |
			        ((uint32_t)hdr[3] << 8) | hdr[4];
			char *body = len >= 4 && len < 100000 ? malloc(len) : NULL;
			if (body && read_full(fd, body, len - 4)) {
				uint8_t z[5] = {'Z', 0, 0, 0, 4};
				send_all(fd, z, 5);
			}
			free(body);
		}
	}
	/* else: "close" — hang up at once */
}

static void *fake_server(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		uint8_t len4[4];
		char script[64] = "";
		bool got = read_full(fd, len4, 4);
		uint8_t code[4];
		/* An SSLRequest (server_tls_sslmode prefer) gets 'N', as from a
		 * PostgreSQL without ssl; then the startup packet comes. */
		if (got && memcmp(len4, "\0\0\0\x08", 4) == 0 && read_full(fd, code, 4) &&
		    memcmp(code, "\x04\xd2\x16\x2f", 4) == 0) {
			send_all(fd, "N", 1);
			got = read_full(fd, len4, 4);
		}
		if (got) {
			uint32_t len = ((uint32_t)len4[0] << 24) | ((uint32_t)len4[1] << 16) |
			        ((uint32_t)len4[2] << 8) | len4[3];
			char *pkt = len >= 8 && len < 10000 ? calloc(1, len) : NULL;
			if (pkt && read_full(fd, pkt, len - 4)) {
				/* version, then name\0value\0 pairs */
				for (size_t off = 4; off < len - 4 && pkt[off];) {
					const char *name = pkt + off;
					off += strlen(name) + 1;
					const char *value = pkt + off;
					off += strlen(value) + 1;
					size_t vlen = strlen(value);
					if (strcmp(name, "database") == 0 && vlen < sizeof(script))
						memcpy(script, value, vlen + 1);
				}
				play(fd, script);
			}
			free(pkt);
		}
		/* Let pgmoat hang up first, then close. */
		struct pollfd pfd = {fd, POLLIN, 0};
		char sink[512];
		while (poll(&pfd, 1, 3000) > 0 && read(fd, sink, sizeof(sink)) > 0)
			;
		close(fd);
	}
}

static const char *const scripts[] = {
        "nosqlstate", "longfield", "unterminated", "shortauth",  "md5nosalt",
        "saslnoend",  "authcode",  "badlength",    "hugelength", "close",
};

/* Logs in through pgmoat to `db`: the SQLSTATE it ends with. */
static struct wire_login login(struct h_moat *m, const char *db)
{
	struct wire_login l;
	memset(&l, 0, sizeof(l));
	int fd = wire_connect(m->port);
	if (fd >= 0) {
		wire_login(fd, 196608, "app", db, "app", &l);
		close(fd);
	}
	return l;
}

static void app_still_works(struct h_moat *m, const char *after)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(c) ? h_value(c, "select 'fine'") : NULL;
	is_str(v, "fine", "a client of the real database is served after %s", after);
	free(v);
	PQfinish(c);
}

int main(void)
{
	h_init("t_hostile_server", 120);
	size_t n = sizeof(scripts) / sizeof(scripts[0]);
	tap_plan((int)(3 * n + 4 + 2));
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");

	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sin);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(listen_fd, 16) < 0 || getsockname(listen_fd, (struct sockaddr *)&sin, &sl) < 0)
		h_bail("cannot listen for the scripted server");
	fake_port = ntohs(sin.sin_port);
	pthread_t th;
	pthread_create(&th, NULL, fake_server, NULL);

	struct h_moat *m = h_moat_new(pg);
	char *ini = h_strdupf("[databases]\n"
	                      "app = host=127.0.0.1 port=@PGPORT@ dbname=app\n"
	                      "* = host=127.0.0.1 port=%d\n"
	                      "[pgmoat]\n"
	                      "listen_addr = 127.0.0.1\nlisten_port = @PORT@\n"
	                      "unix_socket_dir = @SOCKDIR@\nauth_type = trust\n"
	                      "auth_file = @AUTHFILE@\nworkers = 2\n"
	                      "server_connect_timeout = 5\n",
	                      fake_port);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, ini) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	free(ini);

	for (size_t i = 0; i < n; i++) {
		struct wire_login l = login(m, scripts[i]);
		ok(!l.ok && l.sqlstate[0], "%s: the client gets an error (%s: %s)", scripts[i],
		   l.sqlstate, l.message);
		ok(h_moat_alive(m), "%s: pgmoat is still running", scripts[i]);
		app_still_works(m, scripts[i]);
	}
	struct wire_login l = login(m, "nosqlstate");
	ok(strncmp(l.message, "server login failed", 19) == 0,
	   "a server error without SQLSTATE is reported as a failed server login (%s)", l.message);

	/* Broken mid-session: the client is told, the others are not harmed. */
	int fd = wire_connect(m->port);
	struct wire_login lg;
	bool in = fd >= 0 && wire_login(fd, 196608, "app", "badready", "app", &lg) && lg.ok;
	ok(in, "badready: logs in through pgmoat");
	struct wire_result r;
	memset(&r, 0, sizeof(r));
	if (in)
		wire_query(fd, "select 1", 10, &r);
	ok(!r.ok && strcmp(r.sqlstate, "08P01") == 0,
	   "badready: a malformed ReadyForQuery ends the client's query with 08P01 (%s: %s)",
	   r.sqlstate, r.message);
	if (fd >= 0)
		close(fd);
	ok(h_moat_alive(m), "badready: pgmoat is still running");
	app_still_works(m, "a malformed ReadyForQuery");
	return h_done();
}

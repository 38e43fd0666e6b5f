#include <config.h>

#include "proxy/server_login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/md5.h"
#include "auth/userlist.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/server.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

bool server_down_error(const char *sqlstate)
{
	/* Class 08 but a protocol violation: no connection, or it broke;
	 * 57P01-57P03: shutting down or starting up; 53300: too many
	 * connections, for now. */
	return (strncmp(sqlstate, "08", 2) == 0 && strcmp(sqlstate, "08P01") != 0) ||
	        strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P02") == 0 ||
	        strcmp(sqlstate, "57P03") == 0 || strcmp(sqlstate, "53300") == 0;
}

void server_login_failed(struct server *s, const char *sqlstate, const char *msg)
{
	log_server(s, LL_WARNING, "server login failed: %s", msg);
	struct pool *p = s->pool;
	struct worker *w = s->w;
	char text[256];
	snprintf(text, sizeof(text), "server login failed: %s", msg);
	/* The slot is given back by pool_connect_failed, not server_close. */
	s->pool = NULL;
	server_close(s, "login failed");
	/* A database that is unreachable, starting up or shutting down (a
	 * restart) is waited for, tried again every quarter of a second at
	 * most; other failures (a wrong password, no such database) fail the
	 * requests that wait until server_login_retry has passed.  Not for a
	 * host of a database with several: the health checker takes it out of
	 * the routing, and its requests fail at once to be routed again. */
	const struct config *cfg = w->snap->cfg;
	bool down = cfg->server_down_wait > 0 && server_down_error(sqlstate) &&
	        atomic_load(&p->group->n_members) <= 1;
	double retry = cfg->server_login_retry;
	if (down && retry > 0.25)
		retry = 0.25;
	int k = pool_connect_failed(p, sqlstate, text, now_usec(), retry, down);
	if (k >= 0) {
		struct wmsg *m = xcalloc(1, sizeof(*m));
		m->kind = WMSG_KICK;
		m->pool = p;
		worker_post(&w->rt->workers[k], m);
	}
}

/* --- TLS --- */

void server_connected(struct server *s)
{
	const struct tls_ctx *t = s->w->snap->tls;
	bool tcp = s->target.host && s->target.host[0] && s->target.host[0] != '/';
	if (!tcp || !t->connect || t->server_mode == TLS_DISABLE) {
		server_send_startup(s);
		return;
	}
	s->tls_step = SV_TLS_ASKED;
	proto_ssl_request(&s->conn.out);
	if (server_flush_own(s))
		conn_want_read(s->w->loop, &s->conn, true);
}

void server_tls_answer(struct server *s)
{
	struct buf *b = &s->conn.in;
	const struct tls_ctx *t = s->w->snap->tls;
	if (s->tls_step != SV_TLS_ASKED) {
		server_login_failed(s, "08P01", "unexpected data from server before login");
		return;
	}
	if (buf_unparsed(b) < 1)
		return;
	uint8_t answer = b->data[b->parsed];
	if (answer == 'S' && buf_unparsed(b) > 1) {
		/* Bytes before the handshake were not protected: someone on
		 * the path may have put them there (CVE-2021-23222). */
		server_login_failed(s, "08P01",
		                    "received unencrypted data after the server's SSL response");
		return;
	}
	b->parsed++;
	b->sent = b->parsed;
	buf_reset_if_drained(b);
	if (answer == 'N') {
		if (t->server_mode >= TLS_REQUIRE) {
			char msg[128];
			snprintf(msg, sizeof(msg),
			         "the server does not support TLS (server_tls_sslmode is %s)",
			         tls_mode_name((enum tls_mode)t->server_mode));
			server_login_failed(s, "08001", msg);
			return;
		}
		s->tls_step = SV_TLS_NONE;
		server_send_startup(s);
		return;
	}
	if (answer != 'S') {
		server_login_failed(s, "08P01", "invalid answer from server to SSLRequest");
		return;
	}
	if (!tls_start_connect(&s->conn, t, s->target.host, s->w->loop)) {
		server_login_failed(s, "08006", "could not start TLS");
		return;
	}
	s->tls_step = SV_TLS_HANDSHAKE;
	server_tls_step(s);
}

void server_tls_step(struct server *s)
{
	char err[256];
	switch (tls_handshake(&s->conn, err, sizeof(err))) {
	case TLS_STEP_READ:
		conn_want_write(s->w->loop, &s->conn, false);
		conn_want_read(s->w->loop, &s->conn, true);
		return;
	case TLS_STEP_WRITE:
		conn_want_write(s->w->loop, &s->conn, true);
		return;
	case TLS_STEP_FAIL:
		server_login_failed(s, "08006", err);
		return;
	case TLS_STEP_DONE:
		break;
	}
	s->tls_step = SV_TLS_NONE;
	s->w->stats.tls_handshakes++;
	log_server(s, LL_DEBUG, "TLS handshake done: %s, %s", tls_version(&s->conn),
	           tls_cipher(&s->conn));
	conn_want_write(s->w->loop, &s->conn, false);
	server_send_startup(s);
}

void server_send_startup(struct server *s)
{
	struct params sp;
	params_init(&sp);
	params_set(&sp, "user", s->target.user);
	params_set(&sp, "database", s->target.dbname);
	if (s->target.client_encoding)
		params_set(&sp, "client_encoding", s->target.client_encoding);
	if (s->target.datestyle)
		params_set(&sp, "DateStyle", s->target.datestyle);
	if (s->target.timezone)
		params_set(&sp, "TimeZone", s->target.timezone);
	if (s->target.application_name)
		params_set(&sp, "application_name", s->target.application_name);
	proto_startup(&s->conn.out, &sp);
	params_free(&sp);
	server_set_state(s, SV_LOGIN);
	if (server_flush_own(s))
		conn_want_read(s->w->loop, &s->conn, true);
}

/* --- login --- */

/* A stack buffer for a secret, zeroed when it goes out of scope. */
static void wipe(char (*b)[128])
{
	secure_zero(*b, sizeof(*b));
}
#define SECRET_BUF(name) char name[128] __attribute__((cleanup(wipe)))

/* The secret to log in with: the [databases] password, else the auth
 * file's entry for the server user, else an md5 hash auth_query found
 * (copied into `buf`). */
static const char *login_secret(struct server *s, char *buf, size_t n)
{
	if (s->target.password)
		return s->target.password;
	const char *listed = userlist_lookup(s->w->snap->users, s->target.user);
	if (listed)
		return listed;
	return s->pool && pool_copy_secret(s->pool, buf, n) ? buf : NULL;
}

static bool auth_cleartext(struct server *s)
{
	SECRET_BUF(buf);
	const char *secret = login_secret(s, buf, sizeof(buf));
	if (!secret || secret_kind_of(secret) != SECRET_PLAIN) {
		server_login_failed(
		        s, "28P01",
		        "server asks for a password in clear text and pgmoat has no plain "
		        "password for this user");
		return false;
	}
	proto_password(&s->conn.out, secret, strlen(secret) + 1);
	return server_flush_own(s);
}

static bool auth_md5(struct server *s, const uint8_t *salt)
{
	SECRET_BUF(buf);
	const char *secret = login_secret(s, buf, sizeof(buf));
	if (!secret || secret_kind_of(secret) == SECRET_SCRAM) {
		server_login_failed(
		        s, "28P01",
		        "server asks for MD5 and pgmoat has no password or MD5 hash for this user");
		return false;
	}
	char resp[MD5_PASSWD_LEN + 1];
	md5_salted_response(secret, s->target.user, salt, resp);
	proto_password(&s->conn.out, resp, sizeof(resp));
	secure_zero(resp, sizeof(resp));
	return server_flush_own(s);
}

static bool auth_sasl_start(struct server *s, bool offered, bool plus)
{
	if (!offered) {
		server_login_failed(s, "28000", "server offers no SASL mechanism pgmoat supports");
		return false;
	}
	SECRET_BUF(buf);
	const char *secret = login_secret(s, buf, sizeof(buf));
	if (secret && secret_kind_of(secret) == SECRET_PLAIN) {
		scram_client_init_password(&s->scram, secret);
	} else if ((!secret || secret_kind_of(secret) == SECRET_SCRAM) && s->pool &&
	           s->pool->have_scram_keys) {
		/* Keys a client proved: its verifier came from the auth file
		 * or from auth_query. */
		uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
		pthread_mutex_lock(&s->pool->lock);
		memcpy(ck, s->pool->scram_client_key, sizeof(ck));
		memcpy(sk, s->pool->scram_server_key, sizeof(sk));
		pthread_mutex_unlock(&s->pool->lock);
		scram_client_init_keys(&s->scram, ck, sk);
		secure_zero(ck, sizeof(ck));
		secure_zero(sk, sizeof(sk));
	} else {
		server_login_failed(
		        s, "28P01",
		        secret ? "server asks for SCRAM and pgmoat has neither the plain password "
		                 "nor keys proven by a client's SCRAM login"
		               : "server asks for a password and pgmoat has none for this user");
		return false;
	}
	s->scram_started = true;
	/* Over TLS, bind the exchange to the server's certificate when it
	 * offers SCRAM-SHA-256-PLUS; else say pgmoat could have (so a
	 * man in the middle cannot strip the offer unnoticed). */
	if (s->conn.ssl) {
		uint8_t cb[TLS_CB_MAX];
		size_t cb_len = tls_peer_end_point(&s->conn, cb);
		bool set = plus && cb_len > 0
		        ? scram_client_set_channel_binding(&s->scram, cb, cb_len)
		        : scram_client_set_cb_supported(&s->scram);
		if (!set) {
			server_login_failed(s, "08P01", "SCRAM: could not set up channel binding");
			return false;
		}
	}
	char *out = NULL;
	size_t out_len = 0;
	if (!scram_client_first(&s->scram, &out, &out_len)) {
		server_login_failed(s, "08P01", "SCRAM: could not build the first message");
		return false;
	}
	log_server(s, LL_DEBUG, "logging in with %s", scram_client_mechanism(&s->scram));
	proto_sasl_initial(&s->conn.out, scram_client_mechanism(&s->scram), out, out_len);
	free(out);
	return server_flush_own(s);
}

static bool auth_sasl_continue(struct server *s, const uint8_t *in, size_t n)
{
	char *out = NULL;
	size_t out_len = 0;
	if (!s->scram_started || !in ||
	    scram_client_final(&s->scram, in, n, &out, &out_len) != SCRAM_CONTINUE) {
		free(out);
		server_login_failed(s, "08P01", "SCRAM: bad server-first-message");
		return false;
	}
	proto_password(&s->conn.out, out, out_len);
	free(out);
	return server_flush_own(s);
}

static bool auth_sasl_final(struct server *s, const uint8_t *in, size_t n)
{
	if (!s->scram_started || !in || scram_client_verify(&s->scram, in, n) != SCRAM_DONE) {
		server_login_failed(s, "08P01", "SCRAM: the server's signature did not verify");
		return false;
	}
	return true;
}

static bool handle_auth_request(struct server *s, const uint8_t *body, uint32_t len)
{
	struct auth_request req;
	if (!proto_parse_auth_request(body, len, &req)) {
		server_login_failed(s, "08P01",
		                    req.code == AUTH_REQ_MD5 ? "malformed MD5 authentication "
		                                               "request from server"
		                            : req.code == AUTH_REQ_SASL
		                            ? "malformed SASL authentication "
		                              "request from server"
		                            : "malformed authentication "
		                              "request from server");
		return false;
	}
	uint32_t code = req.code;
	switch (code) {
	case AUTH_REQ_OK:
		return true;
	case AUTH_REQ_CLEARTEXT:
		return auth_cleartext(s);
	case AUTH_REQ_MD5:
		return auth_md5(s, req.salt);
	case AUTH_REQ_SASL:
		return auth_sasl_start(s, req.scram, req.scram_plus);
	case AUTH_REQ_SASL_CONTINUE:
		return auth_sasl_continue(s, req.data, req.data_len);
	case AUTH_REQ_SASL_FINAL:
		return auth_sasl_final(s, req.data, req.data_len);
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg),
		         "server asks for authentication method %u, which pgmoat does not support",
		         code);
		server_login_failed(s, "28000", msg);
		return false;
	}
	}
}

static void login_done(struct server *s)
{
	if (s->scram_started) {
		scram_client_clear(&s->scram);
		s->scram_started = false;
	}
	log_server(s, LL_DEBUG, "logged in, backend pid %u", s->backend_pid);
	/* What it reported welcomes later clients of the pool: name\0value\0... */
	struct pkt welcome;
	pkt_init(&welcome);
	for (size_t i = 0; i < s->params.n; i++) {
		pkt_put_str(&welcome, s->params.v[i].name);
		pkt_put_str(&welcome, s->params.v[i].value);
	}
	pool_connected(s->pool, s->target_gen, welcome.data, welcome.failed ? 0 : welcome.len);
	pkt_free(&welcome);
	server_set_state(s, SV_IDLE);
	server_offer(s);
}

/* Handle whole messages in the login phase; false if the server is gone. */
bool server_login_step(struct server *s)
{
	struct buf *b = &s->conn.in;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&s->conn.frame, b, INT32_MAX, &type, &len);
		if (fs == FRAME_BAD) {
			server_login_failed(s, "08P01",
			                    "invalid message length from server during login");
			return false;
		}
		if (fs == FRAME_MORE)
			return true;
		if (!frame_whole(b, len)) {
			if (!frame_fits(b, len)) {
				char msg[96];
				snprintf(msg, sizeof(msg),
				         "login message from server too long (%u bytes, pkt_buf is "
				         "%u)",
				         len + 1, b->cap);
				server_login_failed(s, "08P01", msg);
				return false;
			}
			return true;
		}
		const uint8_t *body = frame_body(b);
		uint32_t blen = len - 4;
		bool ok = true;
		switch (type) {
		case 'R':
			ok = handle_auth_request(s, body, blen);
			break;
		case 'S':
			server_update_param(s, body, blen);
			break;
		case 'K':
			if (!proto_parse_backend_key(body, blen, &s->backend_pid,
			                             &s->backend_key)) {
				server_login_failed(s, "08P01",
				                    "malformed BackendKeyData from server");
				return false;
			}
			break;
		case 'N':
		case 'v':
			break;
		case 'E': {
			struct pg_error e;
			if (!proto_parse_error(body, blen, &e) || !e.sqlstate[0])
				strlcopy(e.sqlstate, "08P01", sizeof(e.sqlstate));
			if (!e.message[0])
				strlcopy(e.message, "(no message)", sizeof(e.message));
			server_login_failed(s, e.sqlstate, e.message);
			return false;
		}
		case 'Z':
			frame_skip(b, len);
			buf_reset_if_drained(b);
			login_done(s);
			return false; /* stop here: the server may have moved on */
		default: {
			char msg[80];
			snprintf(msg, sizeof(msg),
			         "unexpected message '%c' from server during login",
			         type >= 32 && type < 127 ? type : '?');
			server_login_failed(s, "08P01", msg);
			return false;
		}
		}
		if (!ok)
			return false;
		frame_skip(b, len);
	}
}

#include <config.h>

#include "proxy/client_auth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "auth/hba.h"
#include "auth/md5.h"
#include "auth/scram.h"
#include "auth/userlist.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/auth_query.h"
#include "proxy/client.h"
#include "proxy/proto.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

/* The longest password or SASL message a client may send. */
#define AUTH_MSG_MAX 16384

static void auth_failed(struct client *c, const char *detail)
{
	c->w->stats.refused[REFUSED_AUTH]++;
	log_client(c, LL_WARNING, "authentication failed: %s", detail);
	client_login_failed(c);
	client_fatal(c, "28P01", "password authentication failed for user \"%s\"", c->user);
}

/* cert: a verified client certificate whose common name is the user. */
static void check_cert(struct client *c)
{
	char cn[256];
	const char *why = NULL;
	if (!c->conn.ssl)
		why = "not a TLS connection";
	else if (!tls_peer_verified(&c->conn))
		why = "no client certificate, or one that did not verify";
	else if (!tls_peer_cn(&c->conn, cn, sizeof(cn)))
		why = "the client certificate has no usable common name";
	else if (strcmp(cn, c->user) != 0)
		why = "the client certificate's common name is another user's";
	if (why) {
		c->w->stats.refused[REFUSED_AUTH]++;
		log_client(c, LL_WARNING, "authentication failed: %s", why);
		client_login_failed(c);
		client_fatal(c, "28000", "certificate authentication failed for user \"%s\"",
		             c->user);
		return;
	}
	client_auth_clear(c);
	client_login(c, NULL, NULL, NULL);
}

void client_auth_clear(struct client *c)
{
	auth_query_cancel(c);
	c->secret_from_query = false;
	if (c->scram) {
		scram_server_clear(c->scram);
		free(c->scram);
		c->scram = NULL;
	}
	if (c->secret) {
		secure_zero(c->secret, strlen(c->secret));
		free(c->secret);
		c->secret = NULL;
	}
}

/* Seed for the mock SCRAM secret of unknown users: per process, so the
 * answer for one name stays the same across attempts. */
static const uint8_t *mock_seed(void)
{
	static uint8_t seed[32];
	static atomic_bool ready;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	if (!atomic_load(&ready)) {
		pthread_mutex_lock(&lock);
		if (!atomic_load(&ready)) {
			if (!random_bytes(seed, sizeof(seed)))
				memset(seed, 0x5a, sizeof(seed));
			atomic_store(&ready, true);
		}
		pthread_mutex_unlock(&lock);
	}
	return seed;
}

static void begin_scram(struct client *c)
{
	struct scram_secret secret;
	bool have = false;
	if (c->secret) {
		switch (secret_kind_of(c->secret)) {
		case SECRET_SCRAM:
			have = scram_parse_secret(c->secret, &secret);
			break;
		case SECRET_PLAIN: {
			uint8_t salt[16];
			have = random_bytes(salt, sizeof(salt)) &&
			        scram_secret_from_password(c->secret, salt, sizeof(salt),
			                                   SCRAM_DEFAULT_ITERATIONS, &secret);
			break;
		}
		case SECRET_MD5:
			log_client(c, LL_WARNING,
			           "the auth file has an MD5 hash for this user; SCRAM needs a "
			           "plain password or a SCRAM verifier");
			break;
		}
	}
	c->scram = xcalloc(1, sizeof(*c->scram));
	scram_server_init(c->scram, have ? &secret : NULL, c->user, mock_seed(), 32);
	secure_zero(&secret, sizeof(secret));
	/* Over TLS, SCRAM-SHA-256-PLUS binds the exchange to pgmoat's
	 * certificate (tls-server-end-point). */
	const struct tls_ctx *t = c->w->snap->tls;
	if (c->conn.ssl && t->cb_len > 0)
		scram_server_set_channel_binding(c->scram, t->cb, t->cb_len);
	const char *mechs[SCRAM_MAX_MECHANISMS];
	size_t n = scram_server_mechanisms(c->scram, mechs);
	c->auth_step = CA_SCRAM_FIRST;
	proto_auth_sasl(&c->conn.out, mechs, n);
	client_flush(c);
}

static void begin_method(struct client *c)
{
	switch ((enum hba_method)c->auth_method) {
	case HBA_TRUST:
		client_auth_clear(c);
		client_login(c, NULL, NULL, NULL);
		return;
	case HBA_CERT:
		check_cert(c);
		return;
	case HBA_REJECT:
		client_fatal(c, "28000", "authentication refused");
		return;
	case HBA_PASSWORD:
		c->auth_step = CA_CLEARTEXT;
		proto_auth(&c->conn.out, AUTH_REQ_CLEARTEXT, NULL, 0);
		client_flush(c);
		return;
	case HBA_MD5:
		if (c->secret && secret_kind_of(c->secret) == SECRET_SCRAM) {
			begin_scram(c);
			return;
		}
		if (!random_bytes(c->md5_salt, sizeof(c->md5_salt))) {
			client_fatal(c, "58000", "could not generate a random salt");
			return;
		}
		c->auth_step = CA_MD5;
		proto_auth(&c->conn.out, AUTH_REQ_MD5, c->md5_salt, sizeof(c->md5_salt));
		client_flush(c);
		return;
	case HBA_SCRAM:
	default:
		begin_scram(c);
		return;
	}
}

void client_auth_begin(struct client *c)
{
	const struct snapshot *snap = c->w->snap;
	const char *secret = userlist_lookup(snap->users, c->user);
	c->secret = secret ? xstrdup(secret) : NULL;
	enum hba_method m = (enum hba_method)c->auth_method;
	bool password = m == HBA_MD5 || m == HBA_SCRAM || m == HBA_PASSWORD;
	if (!c->secret && password && snap->cfg->auth_user[0]) {
		c->auth_step = CA_LOOKUP;
		auth_query_lookup(c);
		return;
	}
	begin_method(c);
}

void client_auth_looked_up(struct client *c, const char *secret, bool failed)
{
	if (failed) {
		client_fatal(c, "08006",
		             "could not look up the user: auth_query failed (see pgmoat's log)");
		return;
	}
	c->secret = secret ? xstrdup(secret) : NULL;
	c->secret_from_query = secret != NULL;
	log_client(c, LL_DEBUG, "auth_query: %s", secret ? "user found" : "no such user");
	begin_method(c);
}

static bool check_cleartext(struct client *c, const char *pw)
{
	if (!c->secret)
		return false;
	switch (secret_kind_of(c->secret)) {
	case SECRET_PLAIN:
		return strlen(pw) == strlen(c->secret) && ct_equal(pw, c->secret, strlen(pw));
	case SECRET_MD5: {
		char h[MD5_PASSWD_LEN + 1];
		md5_password_hash(pw, c->user, h);
		bool ok = ct_equal(h, c->secret, sizeof(h));
		secure_zero(h, sizeof(h));
		return ok;
	}
	case SECRET_SCRAM: {
		struct scram_secret stored, derived;
		bool ok = scram_parse_secret(c->secret, &stored) &&
		        scram_secret_from_password(pw, stored.salt, stored.salt_len,
		                                   stored.iterations, &derived) &&
		        ct_equal(stored.stored_key, derived.stored_key, SCRAM_KEY_LEN);
		secure_zero(&stored, sizeof(stored));
		secure_zero(&derived, sizeof(derived));
		return ok;
	}
	}
	return false;
}

static void scram_first(struct client *c, const uint8_t *body, uint32_t len)
{
	const char *mech;
	const uint8_t *data;
	uint32_t n;
	if (!proto_parse_sasl_initial(body, len, &mech, &data, &n)) {
		client_fatal(c, "08P01", "malformed SASLInitialResponse message");
		return;
	}
	if (!scram_server_set_mechanism(c->scram, mech)) {
		client_fatal(c, "08P01",
		             "client selected an invalid SASL authentication mechanism");
		return;
	}
	char *out = NULL;
	size_t out_len = 0;
	enum scram_status st = scram_server_first(c->scram, data, n, &out, &out_len);
	if (st != SCRAM_CONTINUE) {
		free(out);
		const char *why = scram_server_error(c->scram);
		client_fatal(c, "08P01", "%s", why ? why : "malformed SCRAM message");
		return;
	}
	c->auth_step = CA_SCRAM_FINAL;
	proto_auth(&c->conn.out, AUTH_REQ_SASL_CONTINUE, out, out_len);
	free(out);
	client_flush(c);
}

static void scram_final(struct client *c, const uint8_t *body, uint32_t len)
{
	char *out = NULL;
	size_t out_len = 0;
	enum scram_status st = scram_server_final(c->scram, body, len, &out, &out_len);
	if (st == SCRAM_PROTO) {
		free(out);
		const char *why = scram_server_error(c->scram);
		client_fatal(c, "08P01", "%s", why ? why : "malformed SCRAM message");
		return;
	}
	if (st != SCRAM_DONE) {
		free(out);
		const char *why = scram_server_error(c->scram);
		auth_failed(c,
		            !c->secret    ? "no such user (SCRAM)"
		                    : why ? why
		                          : "wrong password (SCRAM)");
		return;
	}
	proto_auth(&c->conn.out, AUTH_REQ_SASL_FINAL, out, out_len);
	free(out);
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	bool keys = c->secret && secret_kind_of(c->secret) == SECRET_SCRAM;
	memcpy(ck, c->scram->client_key, SCRAM_KEY_LEN);
	memcpy(sk, c->scram->secret.server_key, SCRAM_KEY_LEN);
	client_auth_clear(c);
	client_login(c, keys ? ck : NULL, keys ? sk : NULL, NULL);
	secure_zero(ck, sizeof(ck));
	secure_zero(sk, sizeof(sk));
}

void client_auth_step(struct client *c)
{
	struct buf *b = &c->conn.in;
	if (c->closing_after_flush || c->state != CL_AUTH)
		return;
	uint8_t type;
	uint32_t len;
	enum frame_status fs = frame_next(&c->conn.frame, b, AUTH_MSG_MAX, &type, &len);
	if (fs == FRAME_MORE)
		return;
	if (fs == FRAME_BAD) {
		client_fatal(c, "08P01", "invalid authentication message length");
		return;
	}
	if (type != 'p') {
		client_fatal(c, "08P01", "expected password response, got message type %d", type);
		return;
	}
	if (!frame_whole(b, len)) {
		if (!frame_fits(b, len) && !buf_grow(b, &c->w->bufs, len + 1))
			client_fatal(c, "53200", "out of memory");
		else if (len + 1 > b->cap - b->parsed)
			buf_compact(b);
		return;
	}
	const uint8_t *body = frame_body(b);
	uint32_t blen = len - 4;
	frame_skip(b, len);
	switch (c->auth_step) {
	case CA_CLEARTEXT:
	case CA_MD5: {
		const char *pw = proto_parse_password(body, blen);
		if (!pw) {
			client_fatal(c, "08P01", "invalid password packet");
			return;
		}
		bool ok = c->auth_step == CA_CLEARTEXT
		        ? check_cleartext(c, pw)
		        : (c->secret && secret_kind_of(c->secret) != SECRET_SCRAM &&
		           md5_check_response(c->secret, c->user, c->md5_salt, pw, blen - 1));
		if (!ok) {
			auth_failed(c, c->secret ? "wrong password" : "no such user");
			return;
		}
		/* An md5 hash found by auth_query is what pgmoat logs in to
		 * PostgreSQL with. */
		char md5[MD5_PASSWD_LEN + 1] = "";
		if (c->secret_from_query && secret_kind_of(c->secret) == SECRET_MD5)
			strlcopy(md5, c->secret, sizeof(md5));
		client_auth_clear(c);
		client_login(c, NULL, NULL, md5[0] ? md5 : NULL);
		secure_zero(md5, sizeof(md5));
		return;
	}
	case CA_SCRAM_FIRST:
		scram_first(c, body, blen);
		return;
	case CA_SCRAM_FINAL:
		scram_final(c, body, blen);
		return;
	default:
		client_fatal(c, "08P01", "unexpected password message");
		return;
	}
}

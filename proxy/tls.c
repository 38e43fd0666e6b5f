#include <config.h>

#include "proxy/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/relay.h"

/* TLS 1.2 and older: forward secrecy and AEAD only (TLS 1.3's suites are
 * all AEAD and left at OpenSSL's defaults). */
#define MODERN_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"
/* Most plaintext bytes encrypted per write call: bounds what waits in the
 * memory BIO when the socket is full. */
#define WRITE_CHUNK (64 * 1024)

static void add_ssl_error(struct strlist *errors, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	strlist_addf(errors, "%s%s%s: %s", what, path ? " " : "", path ? path : "", buf);
}

static const char *cipher_list(const char *setting)
{
	if (!*setting || str_ieq(setting, "default") || str_ieq(setting, "secure"))
		return MODERN_CIPHERS;
	return setting;
}

/* "tlsv1.2,tlsv1.3" (normalised by the config) as OpenSSL's range. */
static void protocol_range(const char *list, int *min, int *max)
{
	static const struct {
		const char *name;
		int v;
	} versions[] = {{"tlsv1.0", TLS1_VERSION},
	                {"tlsv1.1", TLS1_1_VERSION},
	                {"tlsv1.2", TLS1_2_VERSION},
	                {"tlsv1.3", TLS1_3_VERSION}};
	*min = *max = 0;
	for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
		if (!strstr(list, versions[i].name))
			continue;
		if (!*min)
			*min = versions[i].v;
		*max = versions[i].v;
	}
	if (!*min) {
		*min = TLS1_2_VERSION;
		*max = TLS1_3_VERSION;
	}
}

static bool common_setup(SSL_CTX *ctx, const char *protocols, const char *ciphers,
                         const char *prefix, struct strlist *errors)
{
	int min, max;
	protocol_range(protocols, &min, &max);
	if (min < TLS1_2_VERSION)
		SSL_CTX_set_security_level(ctx, 0); /* OpenSSL 3 refuses TLS 1.0/1.1 at level 1 */
	if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max)) {
		char what[64];
		snprintf(what, sizeof(what), "%s_tls_protocols", prefix);
		add_ssl_error(errors, what, NULL);
		return false;
	}
	if (!SSL_CTX_set_cipher_list(ctx, cipher_list(ciphers))) {
		char what[64];
		snprintf(what, sizeof(what), "%s_tls_ciphers '%s'", prefix, ciphers);
		add_ssl_error(errors, what, NULL);
		return false;
	}
	SSL_CTX_set_options(ctx,
	                    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                            SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx,
	                 SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return true;
}

/* tls-server-end-point: the certificate hashed with its signature's digest,
 * SHA-256 where that is MD5 or SHA-1 (RFC 5929 section 4.1). */
static size_t end_point_of(X509 *cert, uint8_t out[TLS_CB_MAX])
{
	int md_nid = NID_undef;
	if (!cert || !X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL))
		return 0;
	if (md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
		md_nid = NID_sha256;
	const EVP_MD *md = EVP_get_digestbynid(md_nid);
	unsigned int len = 0;
	if (!md || (size_t)EVP_MD_get_size(md) > TLS_CB_MAX || !X509_digest(cert, md, out, &len))
		return 0;
	return len;
}

static SSL_CTX *accept_ctx(const struct config *cfg, struct tls_ctx *t, struct strlist *errors)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		add_ssl_error(errors, "client TLS", NULL);
		return NULL;
	}
	if (!common_setup(ctx, cfg->client_tls_protocols, cfg->client_tls_ciphers, "client",
	                  errors))
		goto fail;
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_tls_cert_file) != 1) {
		add_ssl_error(errors, "client_tls_cert_file", cfg->client_tls_cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1) {
		add_ssl_error(errors, "client_tls_key_file", cfg->client_tls_key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		add_ssl_error(errors, "client_tls_key_file does not match client_tls_cert_file:",
		              cfg->client_tls_key_file);
		goto fail;
	}
	/* No session resumption: every connection is checked in full. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_num_tickets(ctx, 0);
	int verify = SSL_VERIFY_NONE;
	if (cfg->client_tls_ca_file[0]) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->client_tls_ca_file, NULL) != 1) {
			add_ssl_error(errors, "client_tls_ca_file", cfg->client_tls_ca_file);
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		/* A certificate is asked for; verify-ca and up require one. */
		verify = SSL_VERIFY_PEER;
		if (cfg->client_tls_sslmode >= TLS_VERIFY_CA)
			verify |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	}
	SSL_CTX_set_verify(ctx, verify, NULL);
	t->cb_len = end_point_of(SSL_CTX_get0_certificate(ctx), t->cb);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *connect_ctx(const struct config *cfg, struct strlist *errors)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		add_ssl_error(errors, "server TLS", NULL);
		return NULL;
	}
	if (!common_setup(ctx, cfg->server_tls_protocols, cfg->server_tls_ciphers, "server",
	                  errors))
		goto fail;
	if (cfg->server_tls_cert_file[0]) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cfg->server_tls_cert_file) != 1) {
			add_ssl_error(errors, "server_tls_cert_file", cfg->server_tls_cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, cfg->server_tls_key_file, SSL_FILETYPE_PEM) !=
		            1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			add_ssl_error(errors, "server_tls_key_file", cfg->server_tls_key_file);
			goto fail;
		}
	}
	if (cfg->server_tls_ca_file[0] &&
	    SSL_CTX_load_verify_locations(ctx, cfg->server_tls_ca_file, NULL) != 1) {
		add_ssl_error(errors, "server_tls_ca_file", cfg->server_tls_ca_file);
		goto fail;
	}
	SSL_CTX_set_verify(
	        ctx, cfg->server_tls_sslmode >= TLS_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
	        NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_ctx *tls_ctx_new(const struct config *cfg, struct strlist *errors)
{
	struct tls_ctx *t = xcalloc(1, sizeof(*t));
	t->client_mode = cfg->client_tls_sslmode;
	t->server_mode = cfg->server_tls_sslmode;
	size_t before = errors->n;
	if (cfg->client_tls_sslmode != TLS_DISABLE)
		t->accept = accept_ctx(cfg, t, errors);
	if (cfg->server_tls_sslmode != TLS_DISABLE)
		t->connect = connect_ctx(cfg, errors);
	if (errors->n != before) {
		tls_ctx_free(t);
		return NULL;
	}
	return t;
}

void tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->accept);
	SSL_CTX_free(t->connect);
	secure_zero(t, sizeof(*t));
	free(t);
}

/* --- connections --- */

static struct ev_loop *loop_of(const struct conn *c)
{
	return SSL_get_app_data(c->ssl);
}

bool tls_flush(struct conn *c)
{
	BIO *w = SSL_get_wbio(c->ssl);
	for (;;) {
		char *p = NULL;
		long n = BIO_get_mem_data(w, &p);
		if (n <= 0)
			return true;
		ssize_t r = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		/* Consume what went out. */
		char scratch[4096];
		size_t left = (size_t)r;
		while (left > 0) {
			int k = BIO_read(w, scratch, (int)MIN(left, sizeof(scratch)));
			if (k <= 0)
				break;
			left -= (size_t)k;
		}
	}
}

static bool would_block(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK;
}

static ssize_t tls_read(struct conn *c, void *buf, size_t n)
{
	ERR_clear_error();
	int r = SSL_read(c->ssl, buf, (int)MIN(n, (size_t)INT_MAX));
	if (r > 0) {
		/* Alerts or key updates OpenSSL wrote while reading. */
		if (!tls_flush(c) && !would_block())
			return -2;
		if (SSL_has_pending(c->ssl) && ev_is_active(&c->rio))
			ev_feed_event(loop_of(c), &c->rio, EV_READ);
		return r;
	}
	int e = SSL_get_error(c->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0;
		return would_block() ? -1 : -2;
	default:
		errno = EPROTO;
		return -2;
	}
}

static ssize_t tls_write(struct conn *c, const void *buf, size_t n)
{
	/* Nothing more is encrypted while earlier bytes wait for the socket. */
	if (!tls_flush(c))
		return would_block() ? -1 : -2;
	ERR_clear_error();
	int r = SSL_write(c->ssl, buf, (int)MIN(n, (size_t)WRITE_CHUNK));
	if (r <= 0) {
		errno = EPROTO;
		return -2;
	}
	if (!tls_flush(c) && !would_block())
		return -2;
	return r;
}

const struct transport transport_tls = {"tls", tls_read, tls_write};

static bool start(struct conn *c, SSL_CTX *ctx, struct ev_loop *loop)
{
	SSL *ssl = SSL_new(ctx);
	BIO *r = BIO_new_socket(c->fd, BIO_NOCLOSE);
	BIO *w = BIO_new(BIO_s_mem());
	if (!ssl || !r || !w) {
		SSL_free(ssl);
		BIO_free(r);
		BIO_free(w);
		ERR_clear_error();
		return false;
	}
	SSL_set_bio(ssl, r, w);
	SSL_set_app_data(ssl, loop);
	c->ssl = ssl;
	c->io = &transport_tls;
	return true;
}

bool tls_start_accept(struct conn *c, const struct tls_ctx *t, struct ev_loop *loop)
{
	if (!t->accept || !start(c, t->accept, loop))
		return false;
	SSL_set_accept_state(c->ssl);
	return true;
}

bool tls_start_connect(struct conn *c, const struct tls_ctx *t, const char *host,
                       struct ev_loop *loop)
{
	if (!t->connect || !start(c, t->connect, loop))
		return false;
	SSL_set_connect_state(c->ssl);
	unsigned char bin[16];
	bool literal =
	        host && (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1);
	bool ok = true;
	if (host && !literal)
		ok = SSL_set_tlsext_host_name(c->ssl, host) == 1;
	if (ok && host && t->server_mode == TLS_VERIFY_FULL) {
		ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) == 1
		             : SSL_set1_host(c->ssl, host) == 1;
	}
	if (!ok) {
		ERR_clear_error();
		tls_close(c);
		return false;
	}
	return true;
}

enum tls_step tls_handshake(struct conn *c, char *err, size_t errlen)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
	unsigned long code = ERR_peek_error();
	int saved = errno;
	bool flushed = tls_flush(c);
	if (!flushed && !would_block()) {
		snprintf(err, errlen, "TLS handshake: write failed: %s", strerror(errno));
		return TLS_STEP_FAIL;
	}
	if (r == 1)
		return flushed ? TLS_STEP_DONE : TLS_STEP_WRITE;
	if (e == SSL_ERROR_WANT_READ)
		return flushed ? TLS_STEP_READ : TLS_STEP_WRITE;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_STEP_WRITE;
	long vr = SSL_get_verify_result(c->ssl);
	if (vr != X509_V_OK) {
		snprintf(err, errlen, "TLS handshake failed: certificate verify failed: %s",
		         X509_verify_cert_error_string(vr));
	} else if (code) {
		char buf[200];
		ERR_error_string_n(code, buf, sizeof(buf));
		snprintf(err, errlen, "TLS handshake failed: %s", buf);
	} else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
		snprintf(err, errlen, "TLS handshake failed: %s",
		         saved ? strerror(saved) : "the peer closed the connection");
	} else {
		snprintf(err, errlen, "TLS handshake failed (OpenSSL error %d)", e);
	}
	ERR_clear_error();
	return TLS_STEP_FAIL;
}

void tls_set_loop(struct conn *c, struct ev_loop *loop)
{
	if (c->ssl)
		SSL_set_app_data(c->ssl, loop);
}

void tls_kick(struct ev_loop *loop, struct conn *c)
{
	if (c->ssl && SSL_is_init_finished(c->ssl) && SSL_has_pending(c->ssl))
		ev_feed_event(loop, &c->rio, EV_READ);
}

void tls_close(struct conn *c)
{
	if (!c->ssl)
		return;
	if (c->fd >= 0 && SSL_is_init_finished(c->ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		(void)tls_flush(c);
	}
	ERR_clear_error();
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->io = &transport_plain;
}

const char *tls_version(const struct conn *c)
{
	return c->ssl ? SSL_get_version(c->ssl) : "none";
}

const char *tls_cipher(const struct conn *c)
{
	return c->ssl ? SSL_get_cipher_name(c->ssl) : "none";
}

bool tls_peer_verified(const struct conn *c)
{
	return c->ssl && SSL_get0_peer_certificate(c->ssl) &&
	        SSL_get_verify_result(c->ssl) == X509_V_OK;
}

bool tls_peer_cn(const struct conn *c, char *out, size_t n)
{
	if (!tls_peer_verified(c) || n == 0)
		return false;
	X509_NAME *name = X509_get_subject_name(SSL_get0_peer_certificate(c->ssl));
	int len = X509_NAME_get_text_by_NID(name, NID_commonName, out, (int)n);
	/* A name with a NUL inside, or cut short, matches nobody. */
	if (len <= 0 || (size_t)len >= n || strlen(out) != (size_t)len) {
		out[0] = '\0';
		return false;
	}
	return true;
}

size_t tls_peer_end_point(const struct conn *c, uint8_t out[TLS_CB_MAX])
{
	if (!c->ssl)
		return 0;
	return end_point_of(SSL_get0_peer_certificate(c->ssl), out);
}

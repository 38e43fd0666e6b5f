#include <config.h>

/* A client's first bytes: the PROXY protocol header from a trusted load
 * balancer, SSLRequest and the TLS handshake, the startup packet, and the
 * checks before authentication (allow, auth_hba_file rules, TLS policy,
 * login throttling).  An address no rule admits is closed at accept,
 * before a byte is read. */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/hba.h"
#include "auth/throttle.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/admin.h"
#include "proxy/cancel.h"
#include "proxy/client.h"
#include "proxy/client_auth.h"
#include "proxy/proxyproto.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

/* Startup parameters a client may set besides track_extra_parameters; they
 * are applied on whichever server it gets (proxy/session.h). */
static const char *const tracked_params[] = {
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "IntervalStyle",
        "standard_conforming_strings",
        "application_name",
        "extra_float_digits",
        "search_path",
};

static const char *tracked_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(tracked_params); i++)
		if (strcasecmp(tracked_params[i], name) == 0)
			return tracked_params[i];
	for (size_t i = 0; i < cfg->track_extra_parameters.n; i++)
		if (strcasecmp(cfg->track_extra_parameters.items[i], name) == 0)
			return cfg->track_extra_parameters.items[i];
	return NULL;
}

/* --- admission --- */

/* Refused before login: logged once (with the address) and counted. */
static void refuse(struct client *c, enum refusal why, const char *detail)
{
	c->w->stats.refused[why]++;
	log_client(c, LL_WARNING, "connection refused (%s): %s", refusal_name(why), detail);
	client_close(c, NULL);
}

bool client_address_admitted(const struct snapshot *snap, const struct sockaddr *sa, bool is_unix,
                             enum refusal *why)
{
	if (!is_unix && snap->allow.n > 0 && !cidr_list_match(&snap->allow, sa)) {
		*why = REFUSED_ALLOW;
		return false;
	}
	if (snap->hba && !hba_may_admit(snap->hba, is_unix ? NULL : sa)) {
		*why = REFUSED_HBA;
		return false;
	}
	return true;
}

static const char *refusal_detail(enum refusal why)
{
	return why == REFUSED_ALLOW ? "the address is not in allow"
	                            : "no auth_hba_file rule admits the address";
}

/* The PROXY header a trusted balancer must send first; its source address
 * becomes the client's. */
static bool proxy_header(struct client *c)
{
	struct buf *b = &c->conn.in;
	struct pp_result r;
	char err[160];
	switch (pp_parse(b->data + b->parsed, buf_unparsed(b), &r, err, sizeof(err))) {
	case PP_BAD:
		refuse(c, REFUSED_PROXY, err);
		return false;
	case PP_MORE:
		if (buf_unparsed(b) >= PP_MAX_HEADER) {
			refuse(c, REFUSED_PROXY, "PROXY header too long");
			return false;
		}
		if (b->cap < PP_MAX_HEADER && !buf_grow(b, &c->w->bufs, PP_MAX_HEADER)) {
			client_close(c, "out of memory");
			return false;
		}
		return false;
	case PP_DONE:
		break;
	}
	b->parsed += (uint32_t)r.consumed;
	b->sent = b->parsed;
	c->proxy_pending = false;
	if (r.family == AF_INET || r.family == AF_INET6) {
		memset(&c->peer, 0, sizeof(c->peer));
		memcpy(&c->peer, &r.src,
		       r.family == AF_INET ? sizeof(struct sockaddr_in)
		                           : sizeof(struct sockaddr_in6));
	}
	log_client(c, LL_DEBUG, "PROXY v%d header: the client's address is this one", r.version);
	enum refusal why;
	if (!client_address_admitted(c->w->snap, &c->peer.sa, false, &why)) {
		refuse(c, why, refusal_detail(why));
		return false;
	}
	return true;
}

/* An address formatted as PostgreSQL does in hba messages. */
static void host_of(const struct client *c, char *out, size_t n)
{
	if (c->is_unix) {
		strlcopy(out, "[local]", n);
		return;
	}
	const void *a = c->peer.sa.sa_family == AF_INET6 ? (const void *)&c->peer.in6.sin6_addr
	                                                 : (const void *)&c->peer.in.sin_addr;
	if (!inet_ntop(c->peer.sa.sa_family, a, out, (socklen_t)n))
		strlcopy(out, "?", n);
}

/* auth_hba_file: the first rule matching decides the method; without one,
 * auth_type does. */
static bool check_rules(struct client *c)
{
	const struct snapshot *snap = c->w->snap;
	if (!snap->hba) {
		static const uint8_t by_type[] = {
		        [AUTH_TRUST] = HBA_TRUST, [AUTH_MD5] = HBA_MD5,
		        [AUTH_SCRAM] = HBA_SCRAM, [AUTH_PLAIN] = HBA_PASSWORD,
		        [AUTH_CERT] = HBA_CERT,   [AUTH_HBA] = HBA_REJECT,
		};
		c->auth_method = by_type[snap->cfg->auth_type];
		return true;
	}
	enum hba_conn conn = c->is_unix ? HBA_CONN_LOCAL
	        : c->conn.ssl           ? HBA_CONN_TCP_TLS
	                                : HBA_CONN_TCP_PLAIN;
	struct hba_match m =
	        hba_lookup(snap->hba, conn, c->is_unix ? NULL : &c->peer.sa, c->dbname, c->user);
	char host[64], msg[512];
	host_of(c, host, sizeof(host));
	const char *enc = c->conn.ssl ? ", SSL encryption" : ", no encryption";
	if (!m.matched || m.method == HBA_REJECT) {
		snprintf(msg, sizeof(msg), "%s for host \"%s\", user \"%s\", database \"%s\"%s",
		         m.matched ? "pg_hba.conf rejects connection" : "no pg_hba.conf entry",
		         host, c->user, c->dbname, enc);
		c->w->stats.refused[REFUSED_HBA]++;
		if (m.matched)
			log_client(c, LL_WARNING,
			           "connection refused (hba): rule at line %d rejects it", m.line);
		else
			log_client(c, LL_WARNING, "connection refused (hba): no rule matches");
		client_fatal(c, "28000", "%s", msg);
		return false;
	}
	/* The cert method checks the certificate itself, with its own message. */
	if ((m.clientcert || m.clientcert_full) && m.method != HBA_CERT) {
		char cn[256];
		bool good = tls_peer_verified(&c->conn) &&
		        (!m.clientcert_full ||
		         (tls_peer_cn(&c->conn, cn, sizeof(cn)) && strcmp(cn, c->user) == 0));
		if (!good) {
			c->w->stats.refused[REFUSED_HBA]++;
			log_client(c, LL_WARNING,
			           "connection refused (hba): rule at line %d needs a valid client "
			           "certificate%s",
			           m.line, m.clientcert_full ? " for this user" : "");
			client_fatal(c, "28000", "connection requires a valid client certificate");
			return false;
		}
	}
	c->auth_method = (uint8_t)m.method;
	log_client(c, LL_DEBUG, "auth_hba_file line %d: %s", m.line, hba_method_name(m.method));
	return true;
}

static struct throttle_cfg throttle_cfg_of(const struct config *cfg)
{
	return (struct throttle_cfg){.limit = cfg->login_failure_limit,
	                             .window = cfg->login_failure_window,
	                             .cooldown = cfg->login_failure_cooldown};
}

/* An address in a cool-down is held for login_failure_delay, then refused
 * (client_sweep sends the error). */
static bool check_throttle(struct client *c)
{
	if (c->is_unix)
		return true;
	struct throttle_cfg tc = throttle_cfg_of(c->w->snap->cfg);
	uint64_t now = now_usec();
	uint64_t left = throttle_blocked(c->w->rt->throttle, &c->peer.sa, now, &tc);
	if (!left)
		return true;
	c->w->stats.refused[REFUSED_THROTTLE]++;
	log_client(c, LL_WARNING,
	           "connection refused (throttle): too many failed logins from this address, "
	           "%.0f s of cool-down left",
	           (double)left / 1e6);
	c->throttle_until_usec = now + (uint64_t)(c->w->snap->cfg->login_failure_delay * 1e6);
	if (!c->throttle_until_usec)
		c->throttle_until_usec = 1;
	conn_want_read(c->w->loop, &c->conn, false);
	return false;
}

void client_throttle_expired(struct client *c)
{
	client_fatal(c, "28000",
	             "too many failed login attempts from this address: try again later");
}

void client_login_failed(struct client *c)
{
	if (c->is_unix)
		return;
	struct throttle_cfg tc = throttle_cfg_of(c->w->snap->cfg);
	if (throttle_failed(c->w->rt->throttle, &c->peer.sa, now_usec(), &tc))
		log_client(c, LL_WARNING,
		           "login throttle: %d failed logins from this address within %g s; it is "
		           "refused for %g s",
		           tc.limit, tc.window, tc.cooldown);
}

void client_login_succeeded(struct client *c)
{
	if (!c->is_unix)
		throttle_succeeded(c->w->rt->throttle, &c->peer.sa, now_usec());
}

/* --- TLS and the startup packet --- */

static bool accept_params(struct client *c, const struct startup *st)
{
	const struct config *cfg = c->w->snap->cfg;
	for (size_t i = 0; i < st->params.n; i++) {
		const char *name = st->params.v[i].name;
		const char *canon = tracked_name(cfg, name);
		if (canon) {
			params_set(&c->params, canon, st->params.v[i].value);
			params_set(&c->startup, canon, st->params.v[i].value);
		} else if (!strlist_contains_ci(&cfg->ignore_startup_parameters, name)) {
			client_fatal(c, "08P01", "unsupported startup parameter: %s", name);
			return false;
		}
	}
	return true;
}

/* --- TLS --- */

void client_tls_step(struct client *c)
{
	char err[256];
	switch (tls_handshake(&c->conn, err, sizeof(err))) {
	case TLS_STEP_READ:
		conn_want_write(c->w->loop, &c->conn, false);
		conn_want_read(c->w->loop, &c->conn, true);
		return;
	case TLS_STEP_WRITE:
		conn_want_write(c->w->loop, &c->conn, true);
		return;
	case TLS_STEP_FAIL:
		c->w->stats.refused[REFUSED_TLS]++;
		log_client(c, LL_WARNING, "%s", err);
		client_close(c, NULL);
		return;
	case TLS_STEP_DONE:
		break;
	}
	c->tls_handshake = false;
	c->w->stats.tls_handshakes++;
	log_client(c, LL_DEBUG, "TLS handshake done: %s, %s", tls_version(&c->conn),
	           tls_cipher(&c->conn));
	conn_want_write(c->w->loop, &c->conn, false);
	conn_want_read(c->w->loop, &c->conn, true);
}

static void client_start_tls(struct client *c)
{
	const struct tls_ctx *t = c->w->snap->tls;
	if (c->conn.ssl) {
		client_fatal(c, "08P01", "SSLRequest over a TLS connection");
		return;
	}
	if (c->is_unix || !t->accept) {
		pkt_put_u8(&c->conn.out, 'N');
		client_flush(c);
		return;
	}
	/* Whatever came after SSLRequest was sent before the handshake, in
	 * clear text, where anyone on the path could have put it: never
	 * process it (CVE-2021-23214). */
	if (buf_unparsed(&c->conn.in) > 0) {
		c->w->stats.refused[REFUSED_TLS]++;
		client_fatal(c, "08P01",
		             "received unencrypted data after SSL request (closing: it could be "
		             "a client bug or an attempted man-in-the-middle attack)");
		return;
	}
	pkt_put_u8(&c->conn.out, 'S');
	if (conn_write_pkt(&c->conn) != IO_DONE) {
		client_close(c, "could not answer SSLRequest");
		return;
	}
	buf_reset_if_drained(&c->conn.in);
	if (!tls_start_accept(&c->conn, t, c->w->loop)) {
		client_close(c, "could not start TLS (out of memory?)");
		return;
	}
	c->tls_handshake = true;
	client_tls_step(c);
}

/* client_tls_sslmode require and up, for TCP clients. */
static bool check_tls_policy(struct client *c)
{
	const struct tls_ctx *t = c->w->snap->tls;
	if (c->is_unix || t->client_mode < TLS_REQUIRE)
		return true;
	if (!c->conn.ssl) {
		c->w->stats.refused[REFUSED_TLS]++;
		client_fatal(c, "28000", "SSL required: this server accepts only TLS connections");
		return false;
	}
	if (t->client_mode == TLS_VERIFY_FULL) {
		char cn[256];
		if (!tls_peer_cn(&c->conn, cn, sizeof(cn)) || strcmp(cn, c->user) != 0) {
			c->w->stats.refused[REFUSED_TLS]++;
			client_fatal(c, "28000",
			             "certificate authentication failed for user \"%s\": the "
			             "client certificate's common name does not match",
			             c->user);
			return false;
		}
	}
	return true;
}

static void handle_startup(struct client *c, const uint8_t *body, uint32_t len)
{
	struct startup st;
	proto_parse_startup(body, len, &st);
	switch (st.kind) {
	case STARTUP_SSL:
		client_start_tls(c);
		break;
	case STARTUP_GSSENC:
		/* No GSSAPI encryption: answer 'N' and read the real startup. */
		if (c->conn.ssl) {
			client_fatal(c, "08P01", "GSSENCRequest over a TLS connection");
			break;
		}
		pkt_put_u8(&c->conn.out, 'N');
		client_flush(c);
		break;
	case STARTUP_CANCEL:
		cancel_request(c->w, st.cancel_pid, st.cancel_key);
		client_close(c, NULL);
		break;
	case STARTUP_BAD:
		client_fatal(c, st.sqlstate, "%s", st.error);
		break;
	case STARTUP_NORMAL: {
		c->user = xstrdup(st.user);
		c->dbname = xstrdup(st.database);
		if (c->over_limit) {
			client_fatal(c, "53300", "no more connections allowed (max_client_conn)");
			break;
		}
		/* Logins already under way finish under WAIT_FOR_CLIENTS. */
		if (atomic_load(&c->w->rt->shutdown) >= SHUTDOWN_GRACEFUL) {
			client_fatal(c, "57P01", "pgmoat is shutting down");
			break;
		}
		if (PROTO_MINOR(st.version) > 0 || st.pq_options.n > 0)
			proto_negotiate_version(&c->conn.out, 0, &st.pq_options);
		if (!accept_params(c, &st))
			break;
		/* A throttled address learns nothing more, not even whether
		 * the database exists. */
		if (!check_throttle(c) || !check_tls_policy(c) || !check_rules(c))
			break;
		/* The console (checked after authentication, so that who is an
		 * admin is not told to anyone who asks). */
		if (strcmp(c->dbname, ADMIN_DBNAME) != 0 &&
		    !config_find_db(c->w->snap->cfg, c->dbname)) {
			client_fatal(c, "3D000", "no such database: %s", c->dbname);
			break;
		}
		if (admin_db_disabled(c->w, c->dbname)) {
			client_fatal(c, "57P03",
			             "database \"%s\" is disabled (ENABLE it from the "
			             "admin console)",
			             c->dbname);
			break;
		}
		client_set_state(c, CL_AUTH);
		client_auth_begin(c);
		break;
	}
	}
	startup_free(&st);
}

void client_startup_step(struct client *c)
{
	struct buf *b = &c->conn.in;
	if (c->proxy_pending && !proxy_header(c))
		return;
	while (c->state == CL_STARTUP && !c->closing_after_flush && !c->throttle_until_usec) {
		if (buf_unparsed(b) < 4)
			return;
		uint32_t len = get_u32(b->data + b->parsed);
		if (len < 8 || len > STARTUP_MAX_LEN) {
			enum pp_status ps = pp_parse(b->data + b->parsed, buf_unparsed(b),
			                             &(struct pp_result){0}, NULL, 0);
			if (ps != PP_BAD && !c->conn.ssl) {
				refuse(c, REFUSED_PROXY,
				       "a PROXY protocol header from an address not in "
				       "proxy_protocol_trusted");
				return;
			}
			client_fatal(c, "08P01", "invalid length of startup packet");
			return;
		}
		if (buf_unparsed(b) < len) {
			/* PostgreSQL takes startup packets up to STARTUP_MAX_LEN,
			 * whatever pkt_buf is. */
			if (len > b->cap && !buf_grow(b, &c->w->bufs, STARTUP_MAX_LEN)) {
				client_fatal(c, "53200", "out of memory");
				return;
			}
			if (len > b->cap - b->parsed)
				buf_compact(b);
			return;
		}
		const uint8_t *body = b->data + b->parsed + 4;
		b->parsed += len;
		b->sent = b->parsed;
		handle_startup(c, body, len - 4);
	}
}

/* Client authentication against auth_file (plain password, md5 hash and
 * SCRAM verifier entries) with auth_type scram-sha-256, md5, trust and plain,
 * and pgmoat's own login to a PostgreSQL that requires scram-sha-256 (md5
 * for one role).  Wrong password and unknown user are indistinguishable
 * (28P01, same message); an unknown database gives 3D000; no secret is
 * ever logged. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* Raw login; `out` gets the details. */
static bool raw_login(struct h_moat *m, const char *user, const char *db, const char *pw,
                      struct wire_login *out)
{
	memset(out, 0, sizeof *out);
	out->auth_code = -1;
	int fd = wire_connect(m->port);
	if (fd < 0)
		return false;
	bool ok = wire_login(fd, 0, user, db, pw, out);
	close(fd);
	return ok;
}

/* `msg` with every occurrence of `user` replaced by USER. */
static void normalize(char *msg, const char *user)
{
	char *p;
	size_t ul = strlen(user);
	while ((p = strstr(msg, user)) != NULL) {
		memcpy(p, "USER", 4);
		memmove(p + 4, p + ul, strlen(p + ul) + 1);
	}
}

static char *current_user(struct h_moat *m, const char *user, const char *pw)
{
	PGconn *c = h_moat_connect(m, user, "app", pw);
	char *v = h_connected(c) ? h_value(c, "select current_user") : NULL;
	PQfinish(c);
	return v;
}

/* Wrong password for `user` and an unknown user look the same. */
static void check_refusals(struct h_moat *m, const char *what, const char *user)
{
	struct wire_login wrong, ghost;
	raw_login(m, user, "app", "nope-wrong", &wrong);
	raw_login(m, "ghost_user", "app", "nope-wrong", &ghost);
	is_str(wrong.sqlstate, "28P01", "%s: wrong password for %s gives 28P01", what, user);
	is_str(ghost.sqlstate, "28P01", "%s: unknown user gives 28P01", what);
	normalize(wrong.message, user);
	normalize(ghost.message, "ghost_user");
	ok(strcmp(wrong.message, ghost.message) == 0 && wrong.auth_code == ghost.auth_code,
	   "%s: same message and same auth exchange for both ('%s', code %d / '%s', code %d)", what,
	   wrong.message, wrong.auth_code, ghost.message, ghost.auth_code);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *auth_type, const char *userlist)
{
	struct h_moat *m = h_moat_new(pg);
	char *settings = h_strdupf("pool_mode = session\nauth_type = %s\n", auth_type);
	if (!h_moat_write_userlist(m, userlist) || !h_moat_write_std_ini(m, NULL, settings) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat (auth_type %s) did not start", auth_type);
	free(settings);
	return m;
}

static void test_scram(struct h_moat *m)
{
	char *u = current_user(m, "app_plain", "pw_plain");
	is_str(u, "app_plain", "scram: plain-password entry logs in (and pgmoat logs in to PG)");
	free(u);
	u = current_user(m, "app_scram", "pw_scram");
	is_str(u, "app_scram", "scram: SCRAM-verifier entry logs in (keys passed through to PG)");
	free(u);
	struct wire_login l;
	bool in = raw_login(m, "app_scram", "app", "pw_scram", &l);
	ok(in && l.auth_code == 10, "scram: the client is asked for SASL (code %d)", l.auth_code);
	ok(in && l.server_final_ok, "scram: pgmoat's server signature verifies");
	check_refusals(m, "scram", "app_plain");
	check_refusals(m, "scram", "app_scram");
	raw_login(m, "app_plain", "nosuchdb", "pw_plain", &l);
	is_str(l.sqlstate, "3D000", "scram: unknown database gives 3D000 ('%s')", l.message);
}

static void test_md5(struct h_moat *m)
{
	char *u = current_user(m, "app_md5", "pw_md5");
	is_str(u, "app_md5", "md5: md5-hash entry logs in (md5 to PG as well)");
	free(u);
	u = current_user(m, "app_plain", "pw_plain");
	is_str(u, "app_plain", "md5: plain-password entry logs in (SCRAM to PG)");
	free(u);
	struct wire_login l;
	raw_login(m, "app_md5", "app", "pw_md5", &l);
	is_int(l.auth_code, 5, "md5: the client is asked for an md5 password");
	check_refusals(m, "md5", "app_md5");
}

static void test_trust(struct h_moat *m)
{
	char *u = current_user(m, "app_plain", NULL);
	is_str(u, "app_plain", "trust: logs in without a password");
	free(u);
	struct wire_login l;
	raw_login(m, "app_plain", "app", NULL, &l);
	is_int(l.auth_code, 0, "trust: AuthenticationOk straight away");
	raw_login(m, "app_plain", "nosuchdb", NULL, &l);
	is_str(l.sqlstate, "3D000", "trust: unknown database gives 3D000");
}

/* auth_type plain: the client sends its password in clear text (code 3),
 * checked against a plain entry or an md5 hash. */
static void test_plain(struct h_moat *m)
{
	struct wire_login l;
	raw_login(m, "app_plain", "app", "pw_plain", &l);
	ok(l.ok && l.auth_code == 3, "plain: cleartext password request (code %d), login works",
	   l.auth_code);
	char *u = current_user(m, "app_plain", "pw_plain");
	is_str(u, "app_plain", "plain: plain-password entry logs in");
	free(u);
	u = current_user(m, "app_md5", "pw_md5");
	is_str(u, "app_md5", "plain: md5-hash entry logs in with its clear password");
	free(u);
	check_refusals(m, "plain", "app_plain");
}

int main(void)
{
	h_init("t_auth", 120);
	struct h_pg_opts o = {.auth = "scram-sha-256",
	                      .hba_lines = "host all app_md5 127.0.0.1/32 md5"};
	struct h_pg *pg = h_pg_start(&o);
	h_pg_create_app(pg, "app_plain", "pw_plain", "app");
	h_pg_create_app(pg, "app_scram", "pw_scram", NULL);
	h_pg_sql(pg, "set password_encryption = 'md5'");
	h_pg_create_app(pg, "app_md5", "pw_md5", NULL);
	h_pg_sql(pg, "reset password_encryption");
	char *verifier =
	        h_pg_value(pg, "select rolpassword from pg_authid where rolname = 'app_scram'");
	char *md5 = h_pg_value(pg, "select rolpassword from pg_authid where rolname = 'app_md5'");
	if (!verifier || strncmp(verifier, "SCRAM-SHA-256$", 14) != 0 || !md5 ||
	    strncmp(md5, "md5", 3) != 0)
		h_bail("unexpected pg_authid contents");
	char *userlist = h_strdupf("; test users\n"
	                           "\"app_plain\" \"pw_plain\"\n"
	                           "\"app_md5\" \"%s\"\n"
	                           "\"app_scram\" \"%s\"\n",
	                           md5, verifier);

	struct h_moat *ms = start_moat(pg, "scram-sha-256", userlist);
	struct h_moat *mm = start_moat(pg, "md5", userlist);
	struct h_moat *mt = start_moat(pg, "trust", userlist);
	struct h_moat *mp = start_moat(pg, "plain", userlist);

	tap_plan(29);
	test_scram(ms);
	test_md5(mm);
	test_trust(mt);
	test_plain(mp);

	/* Secrets never reach the logs. */
	const char *secrets[] = {"pw_plain",   "pw_scram", "pw_md5",
	                         "nope-wrong", md5 + 3,    strrchr(verifier, ':') + 1};
	struct h_moat *all[] = {ms, mm, mt, mp};
	bool clean = true;
	for (int i = 0; i < 4; i++) {
		all[i]->log_mark = 0;
		for (size_t s = 0; s < sizeof secrets / sizeof secrets[0]; s++) {
			if (h_moat_log_has(all[i], secrets[s])) {
				diag("pgmoat%d log contains secret #%zu", i, s);
				clean = false;
			}
		}
	}
	ok(clean, "no password, hash or SCRAM key appears in any pgmoat log");
	ok(h_moat_alive(ms) && h_moat_alive(mm) && h_moat_alive(mt) && h_moat_alive(mp),
	   "all four still running");
	free(userlist);
	free(verifier);
	free(md5);
	return h_done();
}

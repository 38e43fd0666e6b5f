#include <config.h>

#include "tests/lib/certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/harness_int.h"

static struct h_certs certs;

static void run_openssl(const char *const argv[])
{
	char *out = NULL;
	int rc = h_run(argv, NULL, 30, &out);
	if (rc != 0) {
		h_diag_text("openssl: ", out ? out : "");
		free(out);
		h_bail("openssl %s failed (status %d)", argv[1], rc);
	}
	free(out);
}

/* A key and a certificate signed by `ca` (self-signed when `ca` is NULL). */
static void make_cert(const char *name, const char *subject, const char *ext, const char *ca_crt,
                      const char *ca_key, char **crt, char **key)
{
	*crt = h_strdupf("%s/%s.crt", certs.dir, name);
	*key = h_strdupf("%s/%s.key", certs.dir, name);
	char *csr = h_strdupf("%s/%s.csr", certs.dir, name);
	char *extfile = h_strdupf("%s/%s.ext", certs.dir, name);
	if (!h_write_file(extfile, ext))
		h_bail("cannot write %s", extfile);
	const char *genkey[] = {"openssl", "genpkey",  "-algorithm",
	                        "EC",      "-pkeyopt", "ec_paramgen_curve:prime256v1",
	                        "-out",    *key,       NULL};
	run_openssl(genkey);
	chmod(*key, 0600);
	const char *req[] = {"openssl", "req",   "-new", "-key", *key,
	                     "-subj",   subject, "-out", csr,    NULL};
	run_openssl(req);
	if (ca_crt) {
		const char *sign[] = {"openssl", "x509", "-req",    "-in",      csr,
		                      "-CA",     ca_crt, "-CAkey",  ca_key,     "-CAcreateserial",
		                      "-days",   "2",    "-sha256", "-extfile", extfile,
		                      "-out",    *crt,   NULL};
		run_openssl(sign);
	} else {
		const char *self[] = {"openssl",  "x509",  "-req",  "-in", csr,
		                      "-signkey", *key,    "-days", "2",   "-sha256",
		                      "-extfile", extfile, "-out",  *crt,  NULL};
		run_openssl(self);
	}
	free(csr);
	free(extfile);
}

static const char ca_ext[] = "basicConstraints=critical,CA:TRUE\n"
                             "keyUsage=critical,keyCertSign,cRLSign\n";

static const char server_ext[] = "basicConstraints=CA:FALSE\n"
                                 "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                 "extendedKeyUsage=serverAuth\n"
                                 "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n";

const struct h_certs *h_certs(void)
{
	if (certs.dir)
		return &certs;
	certs.dir = h_strdupf("%s/certs", h_tmpdir());
	if (mkdir(certs.dir, 0755) < 0)
		h_bail("mkdir %s failed", certs.dir);
	make_cert("ca", "/CN=pgmoat test CA", ca_ext, NULL, NULL, &certs.ca_crt, &certs.ca_key);
	make_cert("other_ca", "/CN=pgmoat other CA", ca_ext, NULL, NULL, &certs.other_ca_crt,
	          &certs.other_ca_key);
	make_cert("server", "/CN=localhost", server_ext, certs.ca_crt, certs.ca_key,
	          &certs.server_crt, &certs.server_key);
	return &certs;
}

void h_cert_server(const char *name, bool other_ca, char **crt, char **key)
{
	const struct h_certs *c = h_certs();
	make_cert(name, "/CN=localhost", server_ext, other_ca ? c->other_ca_crt : c->ca_crt,
	          other_ca ? c->other_ca_key : c->ca_key, crt, key);
}

void h_cert_client(const char *cn, bool other_ca, char **crt, char **key)
{
	const struct h_certs *c = h_certs();
	char *name = h_strdupf("client_%s%s", cn, other_ca ? "_other" : "");
	char *subject = h_strdupf("/CN=%s", cn);
	make_cert(name, subject,
	          "basicConstraints=CA:FALSE\n"
	          "keyUsage=critical,digitalSignature\n"
	          "extendedKeyUsage=clientAuth\n",
	          other_ca ? c->other_ca_crt : c->ca_crt, other_ca ? c->other_ca_key : c->ca_key,
	          crt, key);
	free(name);
	free(subject);
}

void h_certs_for_pg(char **crt, char **key)
{
	const struct h_certs *c = h_certs();
	*crt = h_strdupf("%s/pg_server.crt", c->dir);
	*key = h_strdupf("%s/pg_server.key", c->dir);
	size_t n = 0;
	char *text = h_read_file(c->server_crt, &n);
	if (!text || !h_write_file(*crt, text))
		h_bail("cannot copy %s", c->server_crt);
	free(text);
	text = h_read_file(c->server_key, &n);
	if (!text || !h_write_file(*key, text))
		h_bail("cannot copy %s", c->server_key);
	free(text);
	chmod(*key, 0600);
	if (h_rt.drop &&
	    (chown(*crt, h_rt.pg_uid, h_rt.pg_gid) < 0 ||
	     chown(*key, h_rt.pg_uid, h_rt.pg_gid) < 0))
		h_bail("cannot chown the PostgreSQL certificate");
}

/* Certificates for the TLS tests, made with the openssl command-line tool
 * into the test's temp dir: a CA, a server certificate for "localhost",
 * 127.0.0.1 and ::1 signed by it, a second CA that signed nothing the
 * servers use (the "wrong CA"), and client certificates on demand.
 * EC P-256 keys keep it to a fraction of a second. */
#ifndef PGMOAT_TESTS_CERTS_H
#define PGMOAT_TESTS_CERTS_H

#include <stdbool.h>

struct h_certs {
	char *dir;
	char *ca_crt, *ca_key; /* the CA everything is signed by */
	char *other_ca_crt, *other_ca_key; /* a CA that signed none of them */
	char *server_crt, *server_key; /* CN=localhost, SAN localhost, 127.0.0.1, ::1 */
};

/* Made on first use (bails out if openssl fails). */
const struct h_certs *h_certs(void);
/* A client certificate with common name `cn`, signed by the CA (or by the
 * other CA); `crt` and `key` get the paths (malloc'd). */
void h_cert_client(const char *cn, bool other_ca, char **crt, char **key);
/* A server certificate named `name` for localhost, 127.0.0.1 and ::1,
 * signed by the CA or the other CA. */
void h_cert_server(const char *name, bool other_ca, char **crt, char **key);
/* Copies of the server certificate and key that the PostgreSQL user can
 * read (key mode 0600, owned by it), for ssl = on. */
void h_certs_for_pg(char **crt, char **key);

#endif

/* libFuzzer target: hba_parse() on the input as a pg_hba.conf text, then
 * hba_lookup() and hba_may_admit() for a few connections when it parses. */
#include <config.h>

#include "auth/hba.h"
#include "tests/fuzz/fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void lookups(const struct hba *h)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	struct sockaddr_in6 mapped = {.sin6_family = AF_INET6};
	static const char *const names[][2] = {
	        {"postgres", "postgres"}, {"app", "alice"}, {"all", "all"}, {"", ""}, {"db", "db"}};

	if (inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr) != 1 ||
	    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr) != 1 ||
	    inet_pton(AF_INET6, "::ffff:10.1.2.3", &mapped.sin6_addr) != 1)
		abort();
	const struct sockaddr *addrs[] = {(const struct sockaddr *)&v4,
	                                  (const struct sockaddr *)&v6,
	                                  (const struct sockaddr *)&mapped, NULL};
	for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++) {
		(void)hba_may_admit(h, addrs[a]);
		for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
			enum hba_conn conns[] = {HBA_CONN_TCP_PLAIN, HBA_CONN_TCP_TLS};
			if (!addrs[a]) {
				struct hba_match m = hba_lookup(h, HBA_CONN_LOCAL, NULL,
				                                names[n][0], names[n][1]);
				if (m.matched)
					(void)hba_method_name(m.method);
				continue;
			}
			for (size_t c = 0; c < 2; c++) {
				struct hba_match m =
				        hba_lookup(h, conns[c], addrs[a], names[n][0], names[n][1]);
				if (m.matched)
					(void)hba_method_name(m.method);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strdup(data, size);
	if (!text)
		return 0;
	if (!fuzz_names_device(text)) {
		struct strlist errors;
		strlist_init(&errors);
		/* @file names are looked up in a directory that does not exist. */
		struct hba *h =
		        hba_parse(text, "fuzz_hba.conf", "/nonexistent-pgmoat-fuzz", &errors);
		if (h) {
			(void)hba_count(h);
			lookups(h);
			hba_free(h);
		}
		strlist_free(&errors);
	}
	free(text);
	return 0;
}

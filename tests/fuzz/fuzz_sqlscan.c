/* libFuzzer target: the SQL lexer, sql_scan() (transaction pooling's guard
 * against session state) and sql_read_only() (read_routing = auto) on the
 * input as SQL, with a small write_functions list. */
#include <config.h>

#include "common/util.h"
#include "proxy/sqlscan.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct strlist write_functions;
	static bool have_list;
	if (!have_list) {
		strlist_init(&write_functions);
		strlist_parse_csv(&write_functions,
		                  "nextval, setval, lo_*, \"MyWrite\", pg_*_lock");
		have_list = true;
	}
	const char *q = (const char *)data;
	const char *end = q + size;

	struct sql_lexer lx;
	struct sql_tok t;
	sql_lexer_init(&lx, q, size);
	while (sql_next(&lx, &t)) {
		if (t.p < q || t.p + t.len > end)
			abort(); /* a token outside the text */
		(void)sql_tok_is(&t, "select");
		(void)sql_tok_kind_name(t.kind);
	}

	struct sql_scan sc;
	sql_scan(q, size, &sc);
	if (strnlen(sc.what, sizeof(sc.what)) == sizeof(sc.what))
		abort();
	(void)sql_read_only(q, size, &write_functions);
	(void)sql_read_only(q, size, NULL);
	return 0;
}

#include <config.h>

#include "proxy/session.h"

#include <string.h>

/* SET ROLE does not show in pg_settings; current_setting('role') has it. */
const char session_capture_sql[] =
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
        "UNION ALL SELECT 'role', pg_catalog.current_setting('role') "
        "WHERE pg_catalog.current_setting('role') <> 'none'";

static void put_str(struct pkt *p, const char *s)
{
	pkt_put_bytes(p, s, strlen(s));
}

bool session_apply_sql(const struct params *want, const struct params *have,
                       const struct params *reported, struct pkt *sql)
{
	bool any = false;
	for (size_t i = 0; i < want->n; i++) {
		const char *name = want->v[i].name, *value = want->v[i].value;
		const char *h = params_get(have, name);
		if (!h)
			h = params_get(reported, name);
		if (h && strcmp(h, value) == 0)
			continue;
		put_str(sql, any ? ", " : "SELECT ");
		put_str(sql, "pg_catalog.set_config(");
		proto_put_literal(sql, name);
		put_str(sql, ", ");
		proto_put_literal(sql, value);
		put_str(sql, ", false)");
		any = true;
	}
	if (any)
		put_str(sql, ";");
	for (size_t i = 0; i < have->n; i++) {
		if (params_get(want, have->v[i].name))
			continue;
		put_str(sql, "RESET ");
		proto_put_ident(sql, have->v[i].name);
		put_str(sql, ";");
		any = true;
	}
	if (any)
		pkt_put_u8(sql, 0);
	return any;
}

bool session_tag_changes(const char *tag, size_t len)
{
	/* "SET" (SET, SET ROLE, SET SESSION AUTHORIZATION), "RESET",
	 * "DISCARD ALL"; not "SET CONSTRAINTS" (transaction-local).  The tag
	 * may or may not include its NUL. */
	while (len > 0 && tag[len - 1] == '\0')
		len--;
	return (len == 3 && memcmp(tag, "SET", 3) == 0) ||
	        (len == 5 && memcmp(tag, "RESET", 5) == 0) ||
	        (len >= 7 && memcmp(tag, "DISCARD", 7) == 0);
}

/* The admin console's command parser (proxy/admin_cmd.c): every command,
 * its arguments, and what is refused as a syntax error or unknown. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/admin_cmd.h"
#include "tests/lib/tap.h"

/* Parse a copy of `text`; the result's strings are copied into the
 * static buffers below so they outlive the copy. */
static char arg[256], text[256];

static struct admin_cmd parse(const char *sql)
{
	char *copy = strdup(sql);
	struct admin_cmd cmd;
	admin_cmd_parse(copy, &cmd);
	snprintf(arg, sizeof(arg), "%s", cmd.arg);
	snprintf(text, sizeof(text), "%s", cmd.text);
	free(copy);
	return cmd;
}

static void test_show(void)
{
	tap_is_int(parse("SHOW HELP").kind, ADMIN_SHOW_HELP, "SHOW HELP");
	tap_is_int(parse("  show pools ; ;").kind, ADMIN_SHOW_POOLS, "lower case, blanks and ';'");
	tap_is_str(text, "show pools", "the text is trimmed");
	tap_is_int(parse("SHOW STATS_TOTALS").kind, ADMIN_SHOW_STATS_TOTALS, "SHOW STATS_TOTALS");
	tap_is_int(parse("SHOW STATS").kind, ADMIN_SHOW_STATS, "SHOW STATS");
	tap_is_int(parse("SHOW CLIENTS").kind, ADMIN_SHOW_CLIENTS, "SHOW CLIENTS");
	tap_is_int(parse("SHOW").kind, ADMIN_SHOW_UNKNOWN, "SHOW alone");
	tap_is_int(parse("SHOW POOLSX").kind, ADMIN_SHOW_UNKNOWN, "a longer word is not POOLS");
	/* A command that takes nothing after its keyword is not another
	 * command when something follows. */
	tap_is_int(parse("SHOW HELP VERSION").kind, ADMIN_SHOW_UNKNOWN,
	           "SHOW HELP VERSION is not SHOW VERSION");
	tap_is_int(parse("SHOW STATS MEM").kind, ADMIN_SHOW_UNKNOWN,
	           "SHOW STATS MEM is not SHOW MEM");
	tap_ok(admin_cmd_read_only(ADMIN_SHOW_UNKNOWN) && admin_cmd_read_only(ADMIN_EMPTY) &&
	               !admin_cmd_read_only(ADMIN_SET) && !admin_cmd_read_only(ADMIN_UNKNOWN),
	       "SHOW and the empty command are read-only, the rest is not");
}

static void test_changes(void)
{
	struct admin_cmd c = parse("SET default_pool_size = 20");
	tap_ok(c.kind == ADMIN_SET && strcmp(c.key, "default_pool_size") == 0 &&
	               strcmp(c.value, "20") == 0,
	       "SET key = value");
	c = parse("set log_level='debug' ;");
	tap_ok(c.kind == ADMIN_SET && strcmp(c.key, "log_level") == 0 &&
	               strcmp(c.value, "debug") == 0,
	       "SET with a quoted value");
	tap_is_int(parse("SET = 1").kind, ADMIN_SYNTAX, "SET without a key");
	tap_is_int(parse("SET key").kind, ADMIN_SYNTAX, "SET without '='");
	tap_is_int(parse("RELOAD").kind, ADMIN_RELOAD, "RELOAD");
	tap_is_int(parse("RELOAD PAUSE").kind, ADMIN_UNKNOWN, "RELOAD PAUSE is not PAUSE");
	c = parse("PAUSE mydb");
	tap_ok(c.kind == ADMIN_PAUSE && strcmp(arg, "mydb") == 0, "PAUSE db");
	c = parse("pause");
	tap_ok(c.kind == ADMIN_PAUSE && arg[0] == '\0', "PAUSE without a database");
	tap_is_int(parse("DISABLE x").kind, ADMIN_DISABLE, "DISABLE");
	tap_is_int(parse("ENABLE x").kind, ADMIN_ENABLE, "ENABLE");
	tap_is_int(parse("RESUME").kind, ADMIN_RESUME, "RESUME");
	tap_is_int(parse("RECONNECT db").kind, ADMIN_RECONNECT, "RECONNECT");
	tap_is_int(parse("WAIT_CLOSE").kind, ADMIN_WAIT_CLOSE, "WAIT_CLOSE");
	c = parse("KILL x");
	tap_ok(c.kind == ADMIN_KILL && strcmp(arg, "x") == 0, "KILL db");
	c = parse("KILL_CLIENT C-42");
	tap_ok(c.kind == ADMIN_KILL_CLIENT && c.client_id == 42, "KILL_CLIENT C-42");
	tap_is_int(parse("KILL_CLIENT 7").client_id, 7, "KILL_CLIENT without C-");
	tap_is_int(parse("KILL_CLIENT -5").kind, ADMIN_SYNTAX, "KILL_CLIENT -5");
	tap_is_int(parse("KILL_CLIENT C-4x").kind, ADMIN_SYNTAX, "KILL_CLIENT C-4x");
	c = parse("SHUTDOWN WAIT_FOR_CLIENTS");
	tap_ok(c.kind == ADMIN_SHUTDOWN && c.shutdown == ADMIN_SHUTDOWN_WAIT_CLIENTS,
	       "SHUTDOWN WAIT_FOR_CLIENTS");
	c = parse("SHUTDOWN");
	tap_ok(c.kind == ADMIN_SHUTDOWN && c.shutdown == ADMIN_SHUTDOWN_FAST, "SHUTDOWN");
	c = parse("SHUTDOWN NOW");
	tap_ok(c.kind == ADMIN_SYNTAX && c.error && strstr(c.error, "SHUTDOWN"),
	       "SHUTDOWN NOW is a syntax error");
	tap_is_int(parse(" ; ").kind, ADMIN_EMPTY, "the empty command");
	tap_is_int(parse("SELECT 1").kind, ADMIN_UNKNOWN, "SELECT 1 is unknown");
	tap_is_int(parse("PAUSED").kind, ADMIN_UNKNOWN, "PAUSED is not PAUSE");
}

int main(void)
{
	test_show();
	test_changes();
	return tap_done();
}

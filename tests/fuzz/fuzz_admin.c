/* libFuzzer target: the admin console's command parser, admin_cmd_parse(),
 * on the input as the text of a simple Query (up to its first NUL, as the
 * console reads it).  Checks that what it returns points into the text,
 * that SET keys are not empty, and that parsing the trimmed command again
 * gives the same result. */
#include <config.h>

#include "proxy/admin_cmd.h"
#include "tests/fuzz/fuzz.h"

static void inside(const char *p, const char *text, size_t size)
{
	if (p < text || p > text + size || p + strlen(p) > text + size)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *sql = fuzz_strdup(data, size);
	if (!sql)
		return 0;
	struct admin_cmd cmd;
	admin_cmd_parse(sql, &cmd);
	if (cmd.kind > ADMIN_UNKNOWN)
		abort();
	inside(cmd.text, sql, size);
	inside(cmd.arg, sql, size);
	if (cmd.kind == ADMIN_SET &&
	    (!cmd.key[0] || strnlen(cmd.key, sizeof(cmd.key)) == sizeof(cmd.key)))
		abort();
	if (cmd.kind == ADMIN_SYNTAX && !cmd.error)
		abort();
	if (cmd.kind == ADMIN_SHUTDOWN && cmd.shutdown > ADMIN_SHUTDOWN_WAIT_SERVERS)
		abort();
	(void)admin_cmd_read_only(cmd.kind);

	char *again = strdup(cmd.text);
	if (again) {
		struct admin_cmd cmd2;
		admin_cmd_parse(again, &cmd2);
		if (cmd2.kind != cmd.kind || strcmp(cmd2.text, cmd.text) != 0 ||
		    strcmp(cmd2.arg, cmd.arg) != 0 || strcmp(cmd2.key, cmd.key) != 0 ||
		    strcmp(cmd2.value, cmd.value) != 0 || cmd2.client_id != cmd.client_id)
			abort(); /* the same command read twice differently */
		free(again);
	}
	free(sql);
	return 0;
}

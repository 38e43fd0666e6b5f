#include <config.h> /* autoconf; <> so that conf/config.h is not picked up */

/* doc/config.md and pgmoat.ini(5), generated from the tables of
 * conf/settings.c (tests/unit/test_config checks both files are what these
 * functions write). */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "conf/config.h"
#include "conf/settings.h"

/* --- documentation ---------------------------------------------------- */

static void doc_type(char *buf, size_t len, const struct setting *s)
{
	char lo[32], hi[32], names[256];
	switch (s->type) {
	case SETTING_INT:
		snprintf(buf, len, "integer, %ld..%ld", s->min, s->max);
		break;
	case SETTING_SIZE:
		settings_format_bytes(lo, sizeof(lo), s->min);
		settings_format_bytes(hi, sizeof(hi), s->max);
		snprintf(buf, len, "size, %s..%s", lo, hi);
		break;
	case SETTING_TIME:
		settings_format_ms(lo, sizeof(lo), s->min);
		settings_format_ms(hi, sizeof(hi), s->max);
		snprintf(buf, len, "duration, %s..%s", lo, hi);
		break;
	case SETTING_ENUM:
		settings_join_names(names, sizeof(names), s->enum_names);
		snprintf(buf, len, "%s", names);
		break;
	case SETTING_BOOL:
		snprintf(buf, len, "boolean");
		break;
	case SETTING_STRING:
		snprintf(buf, len, "string");
		break;
	case SETTING_PATH:
		snprintf(buf, len, "path");
		break;
	case SETTING_LIST:
		snprintf(buf, len, "list");
		break;
	case SETTING_MODE:
		snprintf(buf, len, "octal mode");
		break;
	}
}

/* A [databases]/[users]/[peers] parameter's type, for both documents. */
static void param_type(char *buf, size_t len, const struct param *p)
{
	if (p->kind == PARAM_INT)
		snprintf(buf, len, "integer, %ld..%ld", p->min, p->max);
	else if (p->kind == PARAM_INT_LIST)
		snprintf(buf, len, "integers, %ld..%ld, comma-separated", p->min, p->max);
	else if (p->kind == PARAM_POOL_MODE || p->kind == PARAM_TSA)
		settings_join_names(buf, len,
		                    p->kind == PARAM_TSA ? settings_tsa_names
		                                         : settings_pool_mode_names);
	else
		snprintf(buf, len, "string");
}

static void doc_params(FILE *f, enum settings_params t)
{
	const struct param *params;
	size_t n;
	settings_param_table(t, &params, &n);
	fprintf(f, "| parameter | type | default | description |\n| --- | --- | --- | --- |\n");
	for (size_t i = 0; i < n; i++) {
		char type[200];
		param_type(type, sizeof(type), &params[i]);
		fprintf(f, "| `%s` | %s | %s | %s |\n", params[i].name, type, params[i].def,
		        params[i].doc);
	}
}

void config_write_doc(FILE *f)
{
	fputs("# pgmoat configuration reference\n\n"
	      "<!-- Generated from the tables in conf/settings.c by config_write_doc(); do not "
	      "edit.\n"
	      "     Regenerate with: tests/unit/test_config --write-doc > doc/config.md -->\n\n"
	      "pgmoat reads one INI file (see `etc/pgmoat.ini`). A `pgbouncer.ini` works as is\n"
	      "for the settings the two share: `[pgbouncer]` is read as `[pgmoat]`.\n\n"
	      "## Syntax\n\n"
	      "- Lines starting with `;` or `#` are comments.\n"
	      "- `[section]` starts a section: `[pgmoat]` (or `[pgbouncer]`), `[databases]`,\n"
	      "  `[users]`, `[peers]`. Any other section is an error.\n"
	      "- `key = value`; a value may be double-quoted (`\\\"` and `\\\\` inside stand for\n"
	      "  `\"` and `\\`). Setting names are case-insensitive, database and user names\n"
	      "  are not.\n"
	      "- `%include path` reads another file in place; a relative path is relative\n"
	      "  to the including file.\n"
	      "- Booleans: `1`/`0`, `yes`/`no`, `on`/`off`, `true`/`false`.\n"
	      "- Durations: seconds (`30`, `1.5`) or a number with a unit: `ms`, `s`, `min`, "
	      "`h`.\n"
	      "- Sizes: bytes or a whole number with a unit: `kB`, `MB`, `GB` (powers of "
	      "1024).\n"
	      "- Lists: comma-separated.\n"
	      "- Relative paths are relative to the directory of the file that sets them.\n\n"
	      "Every error is reported as `file:line: message`, all of them at once; a file with\n"
	      "errors is not used (on reload, the running configuration stays). An unknown\n"
	      "setting is a warning, with a suggestion when it looks like a typo.\n\n"
	      "## [pgmoat]\n\n"
	      "*reload*: SIGHUP or `RELOAD` applies a new value; *restart*: a new value is\n"
	      "reported and takes effect at the next start.\n\n"
	      "| setting | type | default | applies | description |\n"
	      "| --- | --- | --- | --- | --- |\n",
	      f);
	size_t n_settings;
	const struct setting *settings = config_settings(&n_settings);
	for (size_t i = 0; i < n_settings; i++) {
		const struct setting *s = &settings[i];
		char type[300];
		doc_type(type, sizeof(type), s);
		fprintf(f, "| `%s` | %s | ", s->name, type);
		if (s->def[0])
			fprintf(f, "`%s`", s->def);
		else
			fputs("empty", f);
		fprintf(f, " | %s | %s |\n", s->reloadable ? "reload" : "restart", s->doc);
	}
	fputs("\n## [databases]\n\n"
	      "`name = host=... port=... dbname=...`: how to reach the database clients ask for\n"
	      "by `name` (case-sensitive, at most 63 bytes). Parameters are written as in a libpq\n"
	      "connection string: `key=value`, separated by spaces, values with spaces in single\n"
	      "quotes (`'a b'`), `\\` escapes the next character. The entry named `*` serves\n"
	      "every name that is not listed (its `dbname` defaults to that name). The name\n"
	      "`pgmoat` is the admin console. Defined again: the last definition wins.\n\n",
	      f);
	doc_params(f, SETTINGS_DB_PARAMS);
	fputs("\n## [users]\n\n`name = pool_mode=... max_user_connections=...`: per-user "
	      "overrides.\n\n",
	      f);
	doc_params(f, SETTINGS_USER_PARAMS);
	fputs("\n## [peers]\n\n"
	      "`id = host=... port=...`: the other pgmoat processes that share `listen_port`\n"
	      "(`so_reuseport`), by their `peer_id` (1..16383), as in PgBouncer. A cancel request\n"
	      "for a client of another peer is forwarded to it, once: a forwarded request is\n"
	      "never forwarded again. An entry with the process's own `peer_id` is allowed and\n"
	      "ignored, so that every process can read the same `[peers]`. Without `peer_id`\n"
	      "the section is ignored (with a warning). Defined again: the last definition\n"
	      "wins. A new `[peers]` applies on reload. See doc/operations.md.\n\n",
	      f);
	doc_params(f, SETTINGS_PEER_PARAMS);
	fputs("\n## pgbouncer settings pgmoat ignores\n\nThese are accepted with a warning:\n", f);
	for (size_t i = 0; settings_unsupported[i]; i++)
		fprintf(f, "%s`%s`", i == 0 ? "\n" : i % 6 ? ", " : ",\n", settings_unsupported[i]);
	fputs(".\n", f);
}

/* --- the man page ----------------------------------------------------- */

/* `s` as roff text: `code` in bold, '-' as \- (so that names and values
 * copy as typed), '\' as \e, and a '.' or '\'' that would start a line made
 * harmless. */
static void man_text(FILE *f, const char *s, bool line_start)
{
	bool bold = false;
	for (; *s; s++) {
		if (line_start && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		line_start = false;
		switch (*s) {
		case '`':
			fputs(bold ? "\\fR" : "\\fB", f);
			bold = !bold;
			break;
		case '-':
			fputs("\\-", f);
			break;
		case '\\':
			fputs("\\e", f);
			break;
		default:
			fputc(*s, f);
			break;
		}
	}
	if (bold)
		fputs("\\fR", f);
}

/* ".TP\n.B name\n<type>; default: <def>[; <applies>].\n.br\n<doc>\n": one
 * setting or parameter.  A `literal` default is a value as written in the
 * file (in bold); otherwise it is prose, `code` marked.  `applies` may be
 * NULL. */
static void man_item(FILE *f, const char *name, const char *type, const char *def, bool literal,
                     const char *applies, const char *doc)
{
	fputs(".TP\n.B ", f);
	man_text(f, name, false);
	fputc('\n', f);
	man_text(f, type, true);
	fputs("; default: ", f);
	if (!def[0]) {
		fputs("empty", f);
	} else if (literal) {
		fputs("\\fB", f);
		man_text(f, def, false);
		fputs("\\fR", f);
	} else {
		man_text(f, def, false);
	}
	if (applies)
		fprintf(f, "; %s", applies);
	fputs(".\n.br\n", f);
	man_text(f, doc, true);
	fputc('\n', f);
}

static void man_params(FILE *f, enum settings_params t)
{
	const struct param *params;
	size_t n;
	settings_param_table(t, &params, &n);
	for (size_t i = 0; i < n; i++) {
		char type[200];
		param_type(type, sizeof(type), &params[i]);
		man_item(f, params[i].name, type, params[i].def, false, NULL, params[i].doc);
	}
}

void config_write_man(FILE *f)
{
	fputs(".\\\" Generated from the tables in conf/settings.c by config_write_man(); do not\n"
	      ".\\\" edit.  Regenerate with: tests/unit/test_config --write-man > "
	      "doc/pgmoat.ini.5\n"
	      ".TH PGMOAT.INI 5 \"\" \"pgmoat\" \"File Formats\"\n"
	      ".nh\n"
	      ".ad l\n"
	      ".SH NAME\n"
	      "pgmoat.ini \\- configuration file of pgmoat\n"
	      ".SH SYNOPSIS\n"
	      ".nf\n"
	      "[databases]\n"
	      "app = host=127.0.0.1 port=5432 dbname=app\n"
	      "app_ro = host=10.0.0.1,10.0.0.2 target_session_attrs=prefer\\-standby\n"
	      "* = host=127.0.0.1\n"
	      "\n"
	      "[users]\n"
	      "batch = pool_mode=session max_user_connections=10\n"
	      "\n"
	      "[pgmoat]\n"
	      "listen_addr = 127.0.0.1\n"
	      "listen_port = 6432\n"
	      "auth_type = scram\\-sha\\-256\n"
	      "auth_file = userlist.txt\n"
	      ".fi\n"
	      ".SH DESCRIPTION\n"
	      ".BR pgmoat (1)\n"
	      "reads one INI file, named on its command line.\n"
	      "It has four sections:\n"
	      ".B [pgmoat]\n"
	      "holds the pooler's settings,\n"
	      ".B [databases]\n"
	      "says how to reach the databases clients ask for,\n"
	      ".B [users]\n"
	      "overrides pool settings per user, and\n"
	      ".B [peers]\n"
	      "names the other pgmoat processes that share its port.\n"
	      "A\n"
	      ".I pgbouncer.ini\n"
	      "works as is for the settings the two share:\n"
	      ".B [pgbouncer]\n"
	      "is read as\n"
	      ".BR [pgmoat] .\n"
	      ".PP\n"
	      "This page is generated from the tables pgmoat itself uses to read the file,\n"
	      "as is\n"
	      ".I doc/config.md\n"
	      "in the source distribution, so neither can disagree with the program.\n"
	      "An annotated example that lists every setting with its default is installed\n"
	      "as\n"
	      ".IR pgmoat.ini.example .\n"
	      ".SH SYNTAX\n"
	      ".IP \\(bu 2\n"
	      "Lines starting with\n"
	      ".B ;\n"
	      "or\n"
	      ".B #\n"
	      "are comments.\n"
	      ".IP \\(bu 2\n"
	      ".BI [ section ]\n"
	      "starts a section:\n"
	      ".B [pgmoat]\n"
	      "(or\n"
	      ".BR [pgbouncer] ),\n"
	      ".BR [databases] ,\n"
	      ".BR [users] ,\n"
	      ".BR [peers] .\n"
	      "Any other section is an error.\n"
	      ".IP \\(bu 2\n"
	      ".IB key \" = \" value\n"
	      "sets a value; a value may be double-quoted\n"
	      "(\\fB\\e\"\\fR and \\fB\\e\\e\\fR inside stand for \\fB\"\\fR and \\fB\\e\\fR).\n"
	      "Setting names are case-insensitive, database and user names are not.\n"
	      ".IP \\(bu 2\n"
	      ".BI %include \" path\"\n"
	      "reads another file in place; a relative path is relative to the\n"
	      "including file.\n"
	      ".IP \\(bu 2\n"
	      "Booleans: 1/0, yes/no, on/off, true/false.\n"
	      ".IP \\(bu 2\n"
	      "Durations: seconds (30, 1.5) or a number with a unit: ms, s, min, h.\n"
	      ".IP \\(bu 2\n"
	      "Sizes: bytes or a whole number with a unit: kB, MB, GB (powers of 1024).\n"
	      ".IP \\(bu 2\n"
	      "Lists: comma-separated.\n"
	      ".IP \\(bu 2\n"
	      "Relative paths are relative to the directory of the file that sets them.\n"
	      ".SH ERRORS\n"
	      "Every problem is reported as\n"
	      ".IR file : line : \" message\" ,\n"
	      "all of them at once.\n"
	      "A file with errors is not used: at start-up pgmoat exits, on reload the\n"
	      "running configuration stays.\n"
	      "An unknown setting is only a warning (with a suggestion when it looks like a\n"
	      "typo); pgbouncer settings pgmoat does not implement are ignored with a\n"
	      "warning (see\n"
	      ".BR \"PGBOUNCER SETTINGS\" ).\n"
	      ".PP\n"
	      ".B pgmoat \\-\\-check\n"
	      ".I file\n"
	      "checks a file, its\n"
	      ".BR auth_file ,\n"
	      "certificates and hba rules without starting.\n"
	      ".SH \"[pgmoat] SETTINGS\"\n"
	      "Each setting is given with its type, its default, and when a new value\n"
	      "applies:\n"
	      ".I reload\n"
	      "\\(em a reload (SIGHUP, or\n"
	      ".B systemctl reload pgmoat\n"
	      "under systemd) applies it;\n"
	      ".I restart\n"
	      "\\(em a reload reports the new value in the log and it takes effect at the\n"
	      "next start.\n",
	      f);
	size_t n_settings;
	const struct setting *settings = config_settings(&n_settings);
	for (size_t i = 0; i < n_settings; i++) {
		const struct setting *s = &settings[i];
		char type[300];
		doc_type(type, sizeof(type), s);
		man_item(f, s->name, type, s->def, true, s->reloadable ? "reload" : "restart",
		         s->doc);
		if (s->alias) {
			fputs(".br\npgbouncer calls it\n.BR ", f);
			man_text(f, s->alias, false);
			fputs(" .\n", f);
		}
	}
	fputs(".SH \"[databases] PARAMETERS\"\n"
	      ".IB name \" = \" \"key\" = \"value ...\"\n"
	      "says how to reach the database clients ask for by\n"
	      ".I name\n"
	      "(case-sensitive, at most 63 bytes).\n"
	      "Parameters are written as in a libpq connection string:\n"
	      ".IB key = value\n"
	      "pairs separated by spaces, values with spaces in single quotes, \\fB\\e\\fR\n"
	      "escaping the next character.\n"
	      "The entry named\n"
	      ".B *\n"
	      "serves every name that is not listed (its\n"
	      ".B dbname\n"
	      "defaults to that name).\n"
	      "The name\n"
	      ".B pgmoat\n"
	      "is the admin console.\n"
	      "Defined again, the last definition wins.\n"
	      "A comma-separated\n"
	      ".B host\n"
	      "names the primary and its replicas; pgmoat finds out which is which.\n",
	      f);
	man_params(f, SETTINGS_DB_PARAMS);
	fputs(".SH \"[users] PARAMETERS\"\n"
	      ".IB name \" = \" \"key\" = \"value ...\"\n"
	      "overrides pool settings for the user\n"
	      ".IR name .\n",
	      f);
	man_params(f, SETTINGS_USER_PARAMS);
	fputs(".SH \"[peers] PARAMETERS\"\n"
	      ".IB id \" = \" \"key\" = \"value ...\"\n"
	      "names another pgmoat process that shares\n"
	      ".B listen_port\n"
	      ".RB ( so_reuseport ),\n"
	      "by its\n"
	      ".B peer_id\n"
	      "(1..16383), as in PgBouncer.\n"
	      "A cancel request for a client of another peer is forwarded to it, once:\n"
	      "a forwarded request is never forwarded again.\n"
	      "An entry with the process's own\n"
	      ".B peer_id\n"
	      "is allowed and ignored, so that every process can read the same section.\n"
	      "Without\n"
	      ".B peer_id\n"
	      "the section is ignored, with a warning.\n"
	      "Defined again, the last definition wins.\n"
	      "A new section applies on reload.\n",
	      f);
	man_params(f, SETTINGS_PEER_PARAMS);
	fputs(".SH \"PGBOUNCER SETTINGS\"\n"
	      "These pgbouncer settings are accepted in the file and ignored, with a\n"
	      "warning:\n",
	      f);
	for (size_t i = 0; settings_unsupported[i]; i++) {
		fputs(i == 0 ? "" : i % 4 ? ", " : ",\n", f);
		fputs("\\fB", f);
		man_text(f, settings_unsupported[i], false);
		fputs("\\fR", f);
	}
	fputs(".\n"
	      ".SH FILES\n"
	      ".TP\n"
	      ".I /etc/pgmoat/pgmoat.ini\n"
	      "The usual place of the configuration\n"
	      "(\\fIPREFIX\\fR\\fB/etc/pgmoat/pgmoat.ini\\fR for a build installed under\n"
	      "another prefix, such as\n"
	      ".IR /usr/local ).\n"
	      ".TP\n"
	      ".I /etc/pgmoat/pgmoat.ini.example\n"
	      "The annotated example, installed by\n"
	      ".BR \"make install\" ;\n"
	      "copy it to\n"
	      ".I pgmoat.ini\n"
	      "and edit.\n"
	      ".TP\n"
	      ".I /etc/pgmoat/userlist.txt\n"
	      "The usual\n"
	      ".BR auth_file :\n"
	      "one line per user,\n"
	      ".B \"\\(dqname\\(dq \\(dqpassword or secret\\(dq\"\n"
	      "(an example is installed as\n"
	      ".IR userlist.txt.example ).\n"
	      ".SH SEE ALSO\n"
	      ".BR pgmoat (1),\n"
	      ".BR systemd.service (5),\n"
	      ".BR logrotate (8)\n",
	      f);
}

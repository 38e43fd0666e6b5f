/* libFuzzer target: the auth file reader, userlist_parse_text(), on the
 * input as a file's bytes (NUL bytes included), then userlist_lookup() of
 * the user named by the first line's first field as the reader would
 * unquote it, and of a few fixed names. */
#include <config.h>

#include "auth/userlist.h"
#include "tests/fuzz/fuzz.h"

/* The first field of the first line, "quoted" with "" for a quote, or bare
 * up to a blank (a rough copy of the format, only to pick a name that may
 * be in the list). */
static void first_user(const uint8_t *data, size_t size, char *out, size_t cap)
{
	size_t i = 0, o = 0;
	while (i < size && (data[i] == ' ' || data[i] == '\t'))
		i++;
	bool quoted = i < size && data[i] == '"';
	if (quoted)
		i++;
	while (i < size && o + 1 < cap && data[i] != '\n') {
		if (quoted && data[i] == '"') {
			if (i + 1 < size && data[i + 1] == '"')
				i++;
			else
				break;
		} else if (!quoted && (data[i] == ' ' || data[i] == '\t')) {
			break;
		}
		out[o++] = (char)data[i++];
	}
	out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strlist errors;
	strlist_init(&errors);
	struct userlist *l = userlist_parse_text("fuzz.txt", (const char *)data, size, &errors);
	if (!l != (errors.n > 0))
		abort(); /* refused without a reason, or a reason without refusing */
	if (l) {
		char user[USERLIST_MAX_USER + 8];
		first_user(data, size, user, sizeof(user));
		const char *names[] = {user, "", "postgres", "a"};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			const char *secret = userlist_lookup(l, names[i]);
			if (secret && strlen(secret) > USERLIST_MAX_SECRET)
				abort();
			if (secret)
				(void)secret_kind_name(secret_kind_of(secret));
		}
		(void)userlist_count(l);
		userlist_free(l);
	}
	strlist_free(&errors);
	return 0;
}

/* Logging.
 *
 * Levels (doc/logging.md says what each means):
 *   LL_FATAL   pgmoat cannot go on and exits
 *   LL_ERROR   something failed that an operator should look at
 *   LL_WARNING something was refused or went wrong for one connection
 *   LL_INFO    life-cycle events: start, reload, login, disconnect
 *   LL_DEBUG   per-connection detail (-v)
 *   LL_TRACE   per-message detail (-vv)
 *
 * Output goes to stderr, to `logfile` and/or syslog.  A line is written with
 * one write(2) so lines of different threads never interleave.
 */
#ifndef PGMOAT_COMMON_LOG_H
#define PGMOAT_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LL_FATAL = 0,
	LL_ERROR,
	LL_WARNING,
	LL_INFO,
	LL_DEBUG,
	LL_TRACE,
};

/* Set up logging.  `logfile` may be NULL (no file); `to_stderr` false once
 * daemonized; `quiet` suppresses stderr output below LL_WARNING. */
bool log_open(const char *logfile, bool to_syslog, const char *syslog_ident, bool to_stderr)
        __attribute__((warn_unused_result));
/* Reopen the log file (SIGHUP, log rotation). */
void log_reopen(void);
void log_close(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_stderr(bool on);

bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *prefix, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

#define log_fatal(...) log_msg(LL_FATAL, __VA_ARGS__)
#define log_error(...) log_msg(LL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LL_DEBUG))                                                         \
			log_msg(LL_DEBUG, __VA_ARGS__);                                            \
	} while (0)
#define log_trace(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LL_TRACE))                                                         \
			log_msg(LL_TRACE, __VA_ARGS__);                                            \
	} while (0)

#endif

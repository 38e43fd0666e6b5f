#include <config.h>

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"FATAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"};
static const int level_syslog[] = {LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG};

static struct {
	atomic_int level;
	atomic_bool to_stderr;
	bool to_syslog;
	atomic_int fd; /* log file, -1 if none */
	char *path;
	pthread_mutex_t reopen_lock;
} L = {.level = LL_INFO, .to_stderr = true, .fd = -1, .reopen_lock = PTHREAD_MUTEX_INITIALIZER};

static int open_logfile(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

bool log_open(const char *logfile, bool to_syslog, const char *syslog_ident, bool to_stderr)
{
	atomic_store(&L.to_stderr, to_stderr);
	if (logfile && *logfile) {
		int fd = open_logfile(logfile);
		if (fd < 0) {
			fprintf(stderr, "pgmoat: cannot open log file %s: %s\n", logfile,
			        strerror(errno));
			return false;
		}
		int old = atomic_exchange(&L.fd, fd);
		if (old >= 0)
			close(old);
		free(L.path);
		L.path = strdup(logfile);
	}
	if (to_syslog && !L.to_syslog)
		openlog(syslog_ident ? syslog_ident : "pgmoat", LOG_PID, LOG_DAEMON);
	L.to_syslog = to_syslog;
	return true;
}

void log_reopen(void)
{
	pthread_mutex_lock(&L.reopen_lock);
	if (L.path) {
		int fd = open_logfile(L.path);
		if (fd >= 0) {
			int old = atomic_exchange(&L.fd, fd);
			if (old >= 0)
				close(old);
		}
	}
	pthread_mutex_unlock(&L.reopen_lock);
}

void log_close(void)
{
	int old = atomic_exchange(&L.fd, -1);
	if (old >= 0)
		close(old);
	free(L.path);
	L.path = NULL;
	if (L.to_syslog)
		closelog();
	L.to_syslog = false;
}

void log_set_level(enum log_level level)
{
	atomic_store(&L.level, (int)level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load(&L.level);
}

void log_set_stderr(bool on)
{
	atomic_store(&L.to_stderr, on);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&L.level);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

void log_vmsg(enum log_level level, const char *prefix, const char *fmt, va_list ap)
{
	if (!log_enabled(level))
		return;
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	int head = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d %s ",
	                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                    tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
	size_t n = (size_t)head;
	if (prefix && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", prefix);
	if (n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	line[n] = '\0';

	int fd = atomic_load(&L.fd);
	if (fd >= 0)
		write_all(fd, line, n);
	if (atomic_load(&L.to_stderr))
		write_all(STDERR_FILENO, line, n);
	if (L.to_syslog)
		syslog(level_syslog[level], "%s", line + head);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, NULL, fmt, ap);
	va_end(ap);
}

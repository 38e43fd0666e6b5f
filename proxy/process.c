#include <config.h>

#include "proxy/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"

static int ready_fd = -1;

bool process_daemonize(void)
{
	int p[2];
	if (pipe(p) < 0) {
		log_error("pipe: %s", strerror(errno));
		return false;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return false;
	}
	if (pid > 0) {
		/* The parent waits for the verdict of the daemon's start-up. */
		close(p[1]);
		char c = 0;
		ssize_t n;
		do {
			n = read(p[0], &c, 1);
		} while (n < 0 && errno == EINTR);
		_exit(n == 1 && c == 'y' ? 0 : 1);
	}
	close(p[0]);
	if (setsid() < 0)
		return false;
	pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	ready_fd = p[1];
	if (chdir("/") < 0)
		return false;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		/* stderr stays until start-up finished, then goes too. */
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return true;
}

void process_ready(bool ok)
{
	if (ready_fd < 0)
		return;
	char c = ok ? 'y' : 'n';
	ssize_t n = write(ready_fd, &c, 1);
	(void)n;
	close(ready_fd);
	ready_fd = -1;
	if (ok) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			if (fd > STDERR_FILENO)
				close(fd);
		}
	}
}

bool process_write_pidfile(const char *path)
{
	if (!path || !*path)
		return true;
	FILE *f = fopen(path, "r");
	if (f) {
		long pid = 0;
		if (fscanf(f, "%ld", &pid) == 1 && pid > 0 && pid != getpid() &&
		    kill((pid_t)pid, 0) == 0) {
			fclose(f);
			log_error("pidfile %s: pgmoat is already running as pid %ld", path, pid);
			return false;
		}
		fclose(f);
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) < 0) {
		log_error("could not write pidfile %s: %s", path, strerror(errno));
		unlink(tmp);
		return false;
	}
	return true;
}

void process_remove_pidfile(const char *path)
{
	if (path && *path)
		unlink(path);
}

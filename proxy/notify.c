#include <config.h>

#include "proxy/notify.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* $NOTIFY_SOCKET as an address: a path, or '@' for the abstract namespace. */
static bool notify_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = strlen(name);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof(sa->sun_path))
		return false;
	memcpy(sa->sun_path, name, n);
	if (name[0] == '@')
		sa->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	return true;
}

/* Sends `msg` (newline-separated VARIABLE=value lines) as one datagram.
 * True if it was sent; false when there is no $NOTIFY_SOCKET or sending
 * failed. */
static bool notify_send(const char *msg)
{
	const char *name = getenv("NOTIFY_SOCKET");
	if (!name || !*name)
		return false;
	struct sockaddr_un sa;
	socklen_t len;
	if (!notify_address(name, &sa, &len)) {
		log_debug("NOTIFY_SOCKET=%s: not a unix socket path or abstract name, ignored",
		          name);
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_debug("notify socket: %s", strerror(errno));
		return false;
	}
	ssize_t n;
	do {
		n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	} while (n < 0 && errno == EINTR);
	bool sent = n == (ssize_t)strlen(msg);
	if (!sent)
		log_debug("could not notify the service manager at %s: %s", name,
		          n < 0 ? strerror(errno) : "short write");
	close(fd);
	return sent;
}

void notify_ready(const char *status)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%ld\nSTATUS=%s\n", (long)getpid(), status);
	notify_send(msg);
}

void notify_reloading(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char msg[128];
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading\n",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	                 (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_send(msg);
}

void notify_stopping(const char *status)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s\n", status);
	notify_send(msg);
}

#include <config.h>

#include "proxy/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/worker.h"

/* Seconds without accepting after EMFILE/ENFILE: the listening sockets
 * stay readable, so accepting again at once would spin. */
#define ACCEPT_PAUSE 0.1

static void watch_listeners(struct worker *w, bool on)
{
	for (int i = 0; i < w->n_listen; i++)
		(on ? ev_io_start : ev_io_stop)(w->loop, &w->listen_io[i]);
	if (w->rt->unix_fd >= 0)
		(on ? ev_io_start : ev_io_stop)(w->loop, &w->unix_io);
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	watch_listeners(t->data, true);
}

/* Out of descriptors: logged once until an accept succeeds again; the
 * queued connections wait in the kernel meanwhile. */
static void pause_accepting(struct worker *w, int err)
{
	if (!w->accept_full)
		log_error("accept: %s (raise the open-file limit); new connections wait until "
		          "descriptors are free",
		          strerror(err));
	w->accept_full = true;
	watch_listeners(w, false);
	ev_timer_set(&w->accept_retry, ACCEPT_PAUSE, 0);
	ev_timer_start(w->loop, &w->accept_retry);
}

/* Accepts at most `max` connections queued on `io`'s socket. */
static void accept_some(struct worker *w, ev_io *io, int max)
{
	bool is_unix = io == &w->unix_io;
	for (int i = 0; i < max; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd =
		        accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				pause_accepting(w, errno);
				return;
			}
			log_error("accept: %s", strerror(errno));
			return;
		}
		if (w->accept_full) {
			w->accept_full = false;
			log_info("accepting connections again");
		}
		client_accept(w, fd, (struct sockaddr *)&ss, len, is_unix);
	}
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	/* Take a bounded batch, then let other events run. */
	accept_some(io->data, io, 64);
}

/* `exclusive`: bind once without SO_REUSEPORT first (see the caller). */
static int open_one(const struct addrinfo *ai, int backlog, bool exclusive, char *name,
                    size_t name_len)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), serv, sizeof(serv),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		strlcopy(host, "?", sizeof(host));
	snprintf(name, name_len, ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (exclusive) {
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
			goto fail;
		close(fd);
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

static bool add_listener(struct worker *w, int fd)
{
	if (w->n_listen >= MAX_LISTENERS) {
		close(fd);
		log_error("too many listening addresses (at most %d)", MAX_LISTENERS);
		return false;
	}
	ev_io *io = &w->listen_io[w->n_listen++];
	ev_io_init(io, accept_cb, fd, EV_READ);
	io->data = w;
	return true;
}

bool listener_open_tcp(struct worker *w, const struct config *cfg)
{
	ev_init(&w->accept_retry, accept_retry_cb);
	w->accept_retry.data = w;
	char port[16];
	snprintf(port, sizeof(port), "%d", cfg->listen_port);
	for (size_t i = 0; i < cfg->listen_addr.n; i++) {
		const char *addr = cfg->listen_addr.items[i];
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
		struct addrinfo *res = NULL;
		bool any = strcmp(addr, "*") == 0;
		int rc = getaddrinfo(any ? NULL : addr, port, &hints, &res);
		if (rc != 0) {
			log_error("listen_addr %s: %s", addr, gai_strerror(rc));
			return false;
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			char name[128];
			/* SO_REUSEPORT would let a second pgmoat share the port
			 * unnoticed: unless so_reuseport asks for just that, the
			 * first worker binds once without it, so a port in use by
			 * anyone fails here. */
			bool exclusive = w->id == 0 && !cfg->so_reuseport;
			int fd = open_one(ai, cfg->listen_backlog, exclusive, name, sizeof(name));
			if (fd < 0) {
				/* "*" on a host without IPv6 still listens on IPv4. */
				if (any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL))
					continue;
				log_error("could not listen on %s: %s", name, strerror(errno));
				freeaddrinfo(res);
				return false;
			}
			if (!add_listener(w, fd)) {
				freeaddrinfo(res);
				return false;
			}
			if (w->id == 0)
				log_info("listening on %s", name);
		}
		freeaddrinfo(res);
	}
	return true;
}

int listener_open_unix(const struct config *cfg, char *path, size_t path_len)
{
	path[0] = '\0';
	if (!cfg->unix_socket_dir || !*cfg->unix_socket_dir)
		return -1;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir,
	                 cfg->listen_port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		log_error("unix_socket_dir %s: path too long", cfg->unix_socket_dir);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("unix socket: %s", strerror(errno));
		return -1;
	}
	/* A socket file left by a dead pgmoat is replaced; a live one is not. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_error("%s: another process is listening there", sun.sun_path);
		close(fd);
		return -1;
	}
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(sun.sun_path, (mode_t)cfg->unix_socket_mode) < 0 ||
	    listen(fd, cfg->listen_backlog) < 0) {
		log_error("could not listen on %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	strlcopy(path, sun.sun_path, path_len);
	log_info("listening on unix:%s", sun.sun_path);
	return fd;
}

void listener_start(struct worker *w)
{
	if (w->rt->unix_fd >= 0) {
		ev_io_init(&w->unix_io, accept_cb, w->rt->unix_fd, EV_READ);
		w->unix_io.data = w;
	}
	watch_listeners(w, true);
}

void listener_stop(struct worker *w)
{
	ev_timer_stop(w->loop, &w->accept_retry);
	watch_listeners(w, false);
}

/* A queue holds at most listen_backlog (<= 65535) + 1 connections. */
#define DRAIN_MAX 65536

void listener_drain(struct worker *w)
{
	for (int i = 0; i < w->n_listen; i++)
		accept_some(w, &w->listen_io[i], DRAIN_MAX);
	if (w->rt->unix_fd >= 0)
		accept_some(w, &w->unix_io, DRAIN_MAX);
}

void listener_close(struct worker *w)
{
	listener_stop(w);
	for (int i = 0; i < w->n_listen; i++)
		close(w->listen_io[i].fd);
	w->n_listen = 0;
}

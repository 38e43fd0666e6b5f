/* Listening sockets: TCP (one set per worker, SO_REUSEPORT) and the Unix
 * socket (one, shared). */
#ifndef PGMOAT_PROXY_LISTENER_H
#define PGMOAT_PROXY_LISTENER_H

#include <stdbool.h>

#include "conf/config.h"

struct worker;

/* Open worker `w`'s TCP listeners; false (logged) on any failure. */
bool listener_open_tcp(struct worker *w, const struct config *cfg)
        __attribute__((warn_unused_result));
/* Open the Unix socket `<dir>/.s.PGSQL.<port>`; -1 (logged) on failure. */
int listener_open_unix(const struct config *cfg, char *path, size_t path_len);
/* Start / stop accepting on worker `w`. */
void listener_start(struct worker *w);
void listener_stop(struct worker *w);
/* Accepts every connection already queued on `w`'s sockets (a graceful
 * stop, before listener_close: else the kernel would reset them). */
void listener_drain(struct worker *w);
void listener_close(struct worker *w);

#endif

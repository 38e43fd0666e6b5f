/* Process-level helpers: daemonizing, the pid file. */
#ifndef PGMOAT_PROXY_PROCESS_H
#define PGMOAT_PROXY_PROCESS_H

#include <stdbool.h>

/* Fork into the background; the parent exits once the child is ready
 * (process_ready) or reports its start-up failure. */
bool process_daemonize(void) __attribute__((warn_unused_result));
/* Tell the waiting parent that start-up succeeded (true) or failed. */
void process_ready(bool ok);
/* Write the pid file; false (logged) if another live pgmoat holds it. */
bool process_write_pidfile(const char *path) __attribute__((warn_unused_result));
void process_remove_pidfile(const char *path);

#endif

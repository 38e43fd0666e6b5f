/* systemd's service notification protocol (sd_notify(3)), spoken over
 * $NOTIFY_SOCKET without libsystemd: a Type=notify unit learns when pgmoat
 * is ready, reloading and stopping.  Without $NOTIFY_SOCKET every call does
 * nothing; a message that cannot be sent is logged at debug level and never
 * stops pgmoat. */
#ifndef PGMOAT_PROXY_NOTIFY_H
#define PGMOAT_PROXY_NOTIFY_H

/* Start-up (or a reload) finished: READY=1, MAINPID and STATUS=`status`. */
void notify_ready(const char *status);
/* A reload begins: RELOADING=1 and MONOTONIC_USEC (CLOCK_MONOTONIC). */
void notify_reloading(void);
/* Shutdown begins: STOPPING=1 and STATUS=`status`. */
void notify_stopping(const char *status);

#endif

/* Cancel keys.  The BackendKeyData a client gets is pgmoat's own: the
 * process id field names the owning worker, so a CancelRequest arriving on
 * any worker is passed to the owner, which forwards it to the backend that
 * runs the client's query. */
#ifndef PGMOAT_PROXY_CANCEL_H
#define PGMOAT_PROXY_CANCEL_H

#include <stdint.h>

struct worker;
struct client;
struct server;

#define CANCEL_WORKER_SHIFT 23

void cancel_table_init(struct worker *w);
void cancel_table_free(struct worker *w);
/* Give `c` a fresh key and register it. */
void cancel_register(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
/* A CancelRequest received on worker `w`. */
void cancel_request(struct worker *w, uint32_t pid, uint32_t key);
/* On the owning worker: the client's running query is cancelled; a client
 * waiting for a server leaves the queue and its request fails with 57014. */
void cancel_local(struct worker *w, uint32_t pid, uint32_t key);
/* Send a CancelRequest to the backend of server `s`, unless one is on its
 * way; until it has been delivered, `s` is not offered to other clients. */
void cancel_server(struct worker *w, struct server *s);
/* `s` is closing: the cancel in flight no longer refers to it. */
void cancel_forget(struct server *s);

#endif

/* Cancel keys.  The BackendKeyData a client gets is pgmoat's own: the
 * process id field names the owning worker, so a CancelRequest arriving on
 * any worker is passed to the owner, which forwards it to the backend that
 * runs the client's query. */
#ifndef PGMOAT_PROXY_CANCEL_H
#define PGMOAT_PROXY_CANCEL_H

#include <stdint.h>

struct worker;
struct client;

#define CANCEL_WORKER_SHIFT 23

void cancel_table_init(struct worker *w);
void cancel_table_free(struct worker *w);
/* Give `c` a fresh key and register it. */
void cancel_register(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
/* A CancelRequest received on worker `w`. */
void cancel_request(struct worker *w, uint32_t pid, uint32_t key);
/* On the owning worker. */
void cancel_local(struct worker *w, uint32_t pid, uint32_t key);

#endif

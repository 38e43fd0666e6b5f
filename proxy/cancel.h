/* Cancel keys.  The BackendKeyData a client gets is pgmoat's own:
 *
 *   process id  bits 31..23  the owning worker (0..255)
 *               bits 22..0   random, unique within the worker
 *   secret key  peer_id = 0: bits 31..0 random
 *               peer_id > 0: bit  31      "forwarded", 0 as handed out
 *                            bits 30..17  peer_id (1..16383)
 *                            bits 16..0   random
 *
 * The process id names the owning worker, so a CancelRequest arriving on
 * any worker is passed to the owner, which forwards it to the backend that
 * runs the client's query.
 *
 * Peers (so_reuseport, peer_id, [peers]): several pgmoat processes share a
 * port, and the kernel hands a CancelRequest to any of them.  With peer_id
 * set, the key names the owning process; a request for another peer is
 * forwarded to that peer's [peers] address as a new CancelRequest, the same
 * 16 bytes with the forwarded bit set.  A request that has the bit is never
 * forwarded again: handled if it names us, else dropped.  So a request
 * makes at most one hop whatever [peers] says, even if an address leads
 * back to us or to a third process.  Unknown peers are ignored.  The secret
 * keeps 17 random bits beside the 23 of the process id. */
#ifndef PGMOAT_PROXY_CANCEL_H
#define PGMOAT_PROXY_CANCEL_H

#include <stdint.h>

struct worker;
struct client;
struct server;

#define CANCEL_WORKER_SHIFT 23
#define CANCEL_PEER_SHIFT 17
#define CANCEL_PEER_MASK 0x3fffu /* after the shift: 14 bits, PEER_ID_MAX */
#define CANCEL_FORWARDED 0x80000000u

void cancel_table_init(struct worker *w);
void cancel_table_free(struct worker *w);
/* Give `c` a fresh key and register it. */
void cancel_register(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
/* A CancelRequest received on worker `w`: passed to the owning worker, or
 * forwarded to the owning peer. */
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

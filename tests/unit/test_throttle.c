/* Failed-login throttling: the limit, the window, the cool-down, address
 * keys, success, eviction at capacity, and use from several threads. */
#include <config.h>

#include "auth/throttle.h"
#include "tests/lib/tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define SEC 1000000ULL
#define T0 (1000 * SEC) /* a monotonic clock is well past 0 */

static const struct throttle_cfg cfg3 = {.limit = 3, .window = 60, .cooldown = 300};

static struct sockaddr *v4(struct sockaddr_storage *ss, const char *addr, int port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin_family = AF_INET;
	s->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &s->sin_addr) != 1)
		tap_bail("bad test address %s", addr);
	return (struct sockaddr *)ss;
}

static struct sockaddr *v6(struct sockaddr_storage *ss, const char *addr, int port)
{
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((uint16_t)port);
	if (inet_pton(AF_INET6, addr, &s->sin6_addr) != 1)
		tap_bail("bad test address %s", addr);
	return (struct sockaddr *)ss;
}

static void test_limit(void)
{
	struct throttle *t = throttle_new(100);
	struct sockaddr_storage a, b;
	uint64_t now = T0;

	v4(&a, "192.0.2.1", 40000);
	ok(!throttle_failed(t, (struct sockaddr *)&a, now, &cfg3), "limit: failure 1");
	ok(!throttle_failed(t, (struct sockaddr *)&a, now + SEC, &cfg3), "limit: failure 2");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now + SEC, &cfg3), 0,
	       "limit: not blocked below the limit");
	ok(throttle_failed(t, v4(&b, "192.0.2.1", 40001), now + 2 * SEC, &cfg3),
	   "limit: failure 3 (another port) starts the cool-down");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now + 2 * SEC, &cfg3),
	       (long)(300 * SEC), "limit: the whole cool-down left");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now + 102 * SEC, &cfg3),
	       (long)(200 * SEC), "limit: 200 s left after 100 s");
	ok(!throttle_failed(t, (struct sockaddr *)&a, now + 103 * SEC, &cfg3),
	   "limit: a failure during the cool-down starts nothing");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now + 102 * SEC, &cfg3),
	       (long)(200 * SEC), "limit: ... and does not extend it");
	is_int((long)throttle_blocked(t, v4(&b, "192.0.2.2", 1), now + 102 * SEC, &cfg3), 0,
	       "limit: another address is not blocked");
	ok(!throttle_failed(t, (struct sockaddr *)&b, now + 102 * SEC, &cfg3),
	   "limit: another address counts on its own");

	/* Cool-down expiry: then the count starts from 0. */
	now += 302 * SEC;
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now - 1, &cfg3), 1,
	       "cool-down: 1 us left just before the end");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&a, now, &cfg3), 0,
	       "cool-down: over at its end");
	ok(!throttle_failed(t, (struct sockaddr *)&a, now, &cfg3), "after cool-down: failure 1");
	ok(!throttle_failed(t, (struct sockaddr *)&a, now, &cfg3), "after cool-down: failure 2");
	ok(throttle_failed(t, (struct sockaddr *)&a, now, &cfg3),
	   "after cool-down: failure 3 starts another");
	throttle_free(t);

	/* Cool-down expiry seen by a failure rather than by throttle_blocked(). */
	t = throttle_new(100);
	struct throttle_cfg one = {.limit = 1, .window = 60, .cooldown = 10};
	ok(throttle_failed(t, (struct sockaddr *)&a, T0, &one), "limit 1: the first failure");
	ok(!throttle_failed(t, (struct sockaddr *)&a, T0 + 5 * SEC, &one),
	   "limit 1: not again during the cool-down");
	ok(throttle_failed(t, (struct sockaddr *)&a, T0 + 10 * SEC, &one),
	   "limit 1: again once it is over");
	throttle_free(t);
}

static void test_window(void)
{
	struct throttle *t = throttle_new(100);
	struct sockaddr_storage ss;
	struct sockaddr *a = v4(&ss, "198.51.100.7", 1);

	ok(!throttle_failed(t, a, T0, &cfg3), "window: failure 1 opens it");
	ok(!throttle_failed(t, a, T0 + 59 * SEC, &cfg3), "window: failure 2 inside");
	ok(!throttle_failed(t, a, T0 + 60 * SEC, &cfg3),
	   "window: failure 3 at 60 s opens a new window");
	ok(!throttle_failed(t, a, T0 + 61 * SEC, &cfg3), "window: failure 2 of the new window");
	ok(throttle_failed(t, a, T0 + 119 * SEC, &cfg3), "window: failure 3 of the new window");
	throttle_free(t);

	t = throttle_new(100);
	ok(!throttle_failed(t, a, T0, &cfg3) && !throttle_failed(t, a, T0 + SEC, &cfg3),
	   "window: two failures");
	is_int((long)throttle_count(t), 1, "window: one entry");
	is_int((long)throttle_blocked(t, a, T0 + 61 * SEC, &cfg3), 0,
	       "window: not blocked once it ran out");
	is_int((long)throttle_count(t), 0, "window: the stale entry is dropped");
	ok(!throttle_failed(t, a, T0 + 62 * SEC, &cfg3), "window: counting again from 1");
	throttle_free(t);
}

static void test_keys(void)
{
	struct throttle *t = throttle_new(100);
	struct sockaddr_storage m, p, x, u6;
	struct sockaddr_un un;

	v6(&m, "::ffff:203.0.113.9", 5);
	v4(&p, "203.0.113.9", 6);
	ok(!throttle_failed(t, (struct sockaddr *)&m, T0, &cfg3), "mapped: failure 1 as IPv6");
	ok(!throttle_failed(t, (struct sockaddr *)&p, T0, &cfg3), "mapped: failure 2 as IPv4");
	is_int((long)throttle_count(t), 1, "mapped: one entry for both forms");
	ok(throttle_failed(t, (struct sockaddr *)&m, T0, &cfg3), "mapped: failure 3 as IPv6");
	ok(throttle_blocked(t, (struct sockaddr *)&p, T0, &cfg3) > 0, "mapped: IPv4 form blocked");
	ok(throttle_blocked(t, (struct sockaddr *)&m, T0, &cfg3) > 0, "mapped: IPv6 form blocked");
	is_int((long)throttle_blocked(t, v6(&x, "::203.0.113.9", 5), T0, &cfg3), 0,
	       "IPv4-compatible (not mapped) is another address");

	v6(&u6, "2001:db8::1", 1);
	for (int i = 0; i < 2; i++)
		(void)throttle_failed(t, (struct sockaddr *)&u6, T0, &cfg3);
	ok(throttle_failed(t, v6(&x, "2001:db8::1", 2), T0, &cfg3), "IPv6: port ignored");
	is_int((long)throttle_blocked(t, v6(&x, "2001:db8::2", 1), T0, &cfg3), 0,
	       "IPv6: the next address is not blocked");

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	strcpy(un.sun_path, "/tmp/.s.PGSQL.6432");
	bool any = false;
	for (int i = 0; i < 10; i++)
		any |= throttle_failed(t, (struct sockaddr *)&un, T0, &cfg3);
	ok(!any, "AF_UNIX: never starts a cool-down");
	is_int((long)throttle_blocked(t, (struct sockaddr *)&un, T0, &cfg3), 0,
	       "AF_UNIX: never blocked");
	is_int((long)throttle_count(t), 2, "AF_UNIX: no entry");
	ok(!throttle_failed(t, NULL, T0, &cfg3) && throttle_blocked(t, NULL, T0, &cfg3) == 0,
	   "NULL address: ignored");
	throttle_free(t);
}

static void test_success(void)
{
	struct throttle *t = throttle_new(100);
	struct sockaddr_storage ss;
	struct sockaddr *a = v4(&ss, "192.0.2.50", 1);

	(void)throttle_failed(t, a, T0, &cfg3);
	(void)throttle_failed(t, a, T0, &cfg3);
	throttle_succeeded(t, a, T0 + SEC);
	is_int((long)throttle_count(t), 0, "success: entry forgotten");
	ok(!throttle_failed(t, a, T0 + 2 * SEC, &cfg3), "success: failure 1 again");
	ok(!throttle_failed(t, a, T0 + 2 * SEC, &cfg3), "success: failure 2 again");
	ok(throttle_failed(t, a, T0 + 2 * SEC, &cfg3), "success: failure 3 starts a cool-down");
	throttle_succeeded(t, a, T0 + 3 * SEC);
	is_int((long)throttle_blocked(t, a, T0 + 3 * SEC, &cfg3), (long)(299 * SEC),
	       "success: an active cool-down stays");
	throttle_succeeded(t, a, T0 + 400 * SEC);
	is_int((long)throttle_count(t), 0, "success after the cool-down: forgotten");
	throttle_free(t);
}

static void test_disabled(void)
{
	struct throttle *t = throttle_new(100);
	struct throttle_cfg off = {.limit = 0, .window = 60, .cooldown = 300};
	struct sockaddr_storage ss;
	struct sockaddr *a = v4(&ss, "192.0.2.77", 1);
	bool any = false;

	for (int i = 0; i < 20; i++)
		any |= throttle_failed(t, a, T0, &off);
	ok(!any, "disabled: no cool-down");
	is_int((long)throttle_count(t), 0, "disabled: nothing counted");
	for (int i = 0; i < 3; i++)
		(void)throttle_failed(t, a, T0, &cfg3);
	ok(throttle_blocked(t, a, T0, &cfg3) > 0, "disabled later: blocked while on");
	is_int((long)throttle_blocked(t, a, T0, &off), 0, "disabled later: not blocked once off");

	struct throttle_cfg nocd = {.limit = 2, .window = 60, .cooldown = 0};
	ok(!throttle_failed(t, v4(&ss, "192.0.2.78", 1), T0, &nocd) &&
	           !throttle_failed(t, a, T0 + 400 * SEC, &nocd) &&
	           !throttle_failed(t, a, T0 + 400 * SEC, &nocd),
	   "cooldown 0: the limit starts nothing");
	is_int((long)throttle_blocked(t, a, T0 + 400 * SEC, &nocd), 0, "cooldown 0: not blocked");
	throttle_free(t);
	throttle_free(NULL);
}

static void test_eviction(void)
{
	struct throttle *t = throttle_new(8);
	struct sockaddr_storage ss, bad;
	char addr[32];
	bool bounded = true;

	/* A cool-down among a spray of addresses. */
	v4(&bad, "10.9.9.9", 1);
	for (int i = 0; i < 3; i++)
		(void)throttle_failed(t, (struct sockaddr *)&bad, T0, &cfg3);
	for (int i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 256, i % 256);
		(void)throttle_failed(t, v4(&ss, addr, 1), T0 + SEC, &cfg3);
		if (throttle_count(t) > 8)
			bounded = false;
	}
	ok(bounded, "eviction: never more than 8 entries");
	is_int((long)throttle_count(t), 8, "eviction: the table is full");
	ok(throttle_blocked(t, (struct sockaddr *)&bad, T0 + SEC, &cfg3) > 0,
	   "eviction: a cool-down survives a spray");

	/* The most recent address kept its count, the oldest was evicted. */
	v4(&ss, "10.0.3.231", 1); /* i = 999 */
	(void)throttle_failed(t, (struct sockaddr *)&ss, T0 + 2 * SEC, &cfg3);
	ok(throttle_failed(t, (struct sockaddr *)&ss, T0 + 2 * SEC, &cfg3),
	   "eviction: the latest address kept its failure");
	v4(&ss, "10.0.0.0", 1); /* i = 0 */
	(void)throttle_failed(t, (struct sockaddr *)&ss, T0 + 2 * SEC, &cfg3);
	ok(!throttle_failed(t, (struct sockaddr *)&ss, T0 + 2 * SEC, &cfg3),
	   "eviction: the oldest address was forgotten");
	throttle_free(t);

	/* Every entry in a cool-down: the oldest goes anyway. */
	struct throttle_cfg one = {.limit = 1, .window = 60, .cooldown = 300};
	t = throttle_new(4);
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof(addr), "10.1.0.%d", i);
		(void)throttle_failed(t, v4(&ss, addr, 1), T0 + (uint64_t)i, &one);
	}
	is_int((long)throttle_count(t), 4, "eviction: full of cool-downs, still 4 entries");
	is_int((long)throttle_blocked(t, v4(&ss, "10.1.0.0", 1), T0 + 5, &one), 0,
	       "eviction: the oldest cool-down went");
	ok(throttle_blocked(t, v4(&ss, "10.1.0.4", 1), T0 + 5, &one) > 0,
	   "eviction: the newest is in its cool-down");
	throttle_free(t);

	t = throttle_new(0);
	(void)throttle_failed(t, v4(&ss, "10.2.0.1", 1), T0, &cfg3);
	(void)throttle_failed(t, v4(&ss, "10.2.0.2", 1), T0, &cfg3);
	is_int((long)throttle_count(t), 1, "max_entries 0 holds one entry");
	throttle_free(t);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 20000

struct worker_arg {
	struct throttle *t;
	int id;
	int started;
};

static void *spray(void *p)
{
	struct worker_arg *w = p;
	struct sockaddr_storage ss;
	char addr[48];

	for (int i = 0; i < ROUNDS; i++) {
		int n = (i * 7 + w->id * 13) % 97;
		uint64_t now = T0 + (uint64_t)i * 10000; /* 10 ms steps: windows run out */
		if (n % 2 == 0)
			snprintf(addr, sizeof(addr), "172.16.%d.%d", n / 256, n % 256);
		else
			snprintf(addr, sizeof(addr), "2001:db8::%x", n);
		struct sockaddr *a = n % 2 == 0 ? v4(&ss, addr, i) : v6(&ss, addr, i);
		switch (i % 5) {
		case 0:
		case 1:
		case 2:
			w->started += throttle_failed(w->t, a, now, &cfg3);
			break;
		case 3:
			(void)throttle_blocked(w->t, a, now, &cfg3);
			break;
		default:
			throttle_succeeded(w->t, a, now);
			break;
		}
	}
	return NULL;
}

static void *hammer(void *p)
{
	struct worker_arg *w = p;
	struct sockaddr_storage ss;
	struct sockaddr *a = v4(&ss, "192.0.2.200", w->id);
	struct throttle_cfg ten = {.limit = 10, .window = 60, .cooldown = 300};

	for (int i = 0; i < 1000; i++)
		w->started += throttle_failed(w->t, a, T0, &ten);
	return NULL;
}

static void run_threads(struct throttle *t, void *(*fn)(void *), int *started)
{
	pthread_t th[THREADS];
	struct worker_arg args[THREADS];

	*started = 0;
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct worker_arg){.t = t, .id = i, .started = 0};
		if (pthread_create(&th[i], NULL, fn, &args[i]) != 0)
			tap_bail("pthread_create failed");
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		*started += args[i].started;
	}
}

static void test_threads(void)
{
	struct throttle *t = throttle_new(64);
	struct sockaddr_storage ss;
	int started;

	run_threads(t, spray, &started);
	ok(throttle_count(t) <= 64, "threads: table bounded (%zu entries)", throttle_count(t));
	ok(started > 0, "threads: some cool-downs started (%d)", started);
	throttle_free(t);

	t = throttle_new(64);
	run_threads(t, hammer, &started);
	is_int(started, 1, "threads: one address, exactly one cool-down started");
	is_int((long)throttle_blocked(t, v4(&ss, "192.0.2.200", 1), T0, &cfg3), (long)(300 * SEC),
	       "threads: and it is in force");
	throttle_free(t);
}

int main(void)
{
	test_limit();
	test_window();
	test_keys();
	test_success();
	test_disabled();
	test_eviction();
	test_threads();
	return tap_done();
}

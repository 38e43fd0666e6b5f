/* The metrics endpoint (proxy/metrics.c), scraped with a raw HTTP client
 * and parsed in full by a small Prometheus text-format parser (names,
 * labels and their escapes, values, HELP/TYPE lines, families kept
 * together, histograms cumulative with +Inf equal to _count).  The
 * counters match the work the test did: 5 clients x 20 transactions in
 * transaction pooling, one wrong password (refusal "auth"), one client
 * that waited for the only server of a pool (waits, wait-time histogram,
 * waiting-client gauges), the clients it holds open by state, hosts up and
 * down from the health checker, reloads ok and failed.  HTTP: 404 for
 * another path, 405 for POST, HEAD, a query string, 400 for garbage, 431
 * for an oversized request; a partial request is closed after the read
 * timeout without holding up other scrapes; beyond 16 connections at once
 * a 503; curl scrapes too.  metrics_listen moves on reload, a bad value
 * fails the reload, and an empty one stops the endpoint. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define N_CLIENTS 5
#define N_XACTS 20
#define READ_TIMEOUT 3.0 /* METRICS_READ_TIMEOUT in proxy/metrics.h */
#define MAX_CONNS 16 /* METRICS_MAX_CONNS */

/* --- a Prometheus text-format (0.0.4) parser -------------------------- */

struct label {
	char *k, *v;
};

struct sample {
	char *name;
	struct label l[8];
	int nl;
	double v;
	int family;
	char *key; /* name and sorted labels: duplicates are errors */
};

struct family {
	char *name;
	char type[16];
	bool help, typed;
	int n; /* samples */
};

struct doc {
	struct sample *s;
	size_t n, cap;
	struct family *f;
	size_t nf, fcap;
	int cur; /* family of the latest sample, -1 */
	char err[400];
};

static void doc_free(struct doc *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->s[i].name);
		free(d->s[i].key);
		for (int k = 0; k < d->s[i].nl; k++) {
			free(d->s[i].l[k].k);
			free(d->s[i].l[k].v);
		}
	}
	for (size_t i = 0; i < d->nf; i++)
		free(d->f[i].name);
	free(d->s);
	free(d->f);
	memset(d, 0, sizeof(*d));
	d->cur = -1;
}

static bool __attribute__((format(printf, 3, 4)))
fail(struct doc *d, int line, const char *fmt, ...)
{
	int n = snprintf(d->err, sizeof(d->err), "line %d: ", line);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->err + n, sizeof(d->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static bool name_char(char c, bool first, bool metric)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	        (metric && c == ':') || (!first && c >= '0' && c <= '9');
}

/* Length of the metric (or label) name at p. */
static size_t name_at(const char *p, const char *end, bool metric)
{
	const char *q = p;
	while (q < end && name_char(*q, q == p, metric))
		q++;
	return (size_t)(q - p);
}

static int family_find(const struct doc *d, const char *name)
{
	for (size_t i = 0; i < d->nf; i++)
		if (strcmp(d->f[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int family_add(struct doc *d, const char *name, size_t len)
{
	char *n = strndup(name, len);
	int i = family_find(d, n);
	if (i >= 0) {
		free(n);
		return i;
	}
	if (d->nf == d->fcap) {
		d->fcap = d->fcap ? 2 * d->fcap : 32;
		d->f = realloc(d->f, d->fcap * sizeof(*d->f));
	}
	d->f[d->nf] = (struct family){.name = n};
	return (int)d->nf++;
}

static bool parse_value(const char *p, size_t len, double *v)
{
	char tok[64];
	if (len == 0 || len >= sizeof(tok))
		return false;
	memcpy(tok, p, len);
	tok[len] = '\0';
	if (strcmp(tok, "+Inf") == 0 || strcmp(tok, "Inf") == 0) {
		*v = HUGE_VAL;
		return true;
	}
	if (strcmp(tok, "-Inf") == 0) {
		*v = -HUGE_VAL;
		return true;
	}
	if (strcmp(tok, "NaN") == 0) {
		*v = NAN;
		return true;
	}
	if (strspn(tok, "0123456789.eE+-") != len)
		return false;
	char *end;
	errno = 0;
	*v = strtod(tok, &end);
	return *end == '\0' && errno == 0;
}

/* Sorted "k=v" pairs, without label `skip` (may be NULL). */
static char *labels_key(const struct sample *s, const char *skip)
{
	int idx[8], n = 0;
	for (int i = 0; i < s->nl; i++)
		if (!skip || strcmp(s->l[i].k, skip) != 0)
			idx[n++] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(s->l[idx[j - 1]].k, s->l[idx[j]].k) > 0; j--) {
			int t = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = t;
		}
	size_t len = 1;
	for (int i = 0; i < n; i++)
		len += strlen(s->l[idx[i]].k) + strlen(s->l[idx[i]].v) + 3;
	char *key = calloc(1, len);
	for (int i = 0; i < n; i++) {
		strcat(key, s->l[idx[i]].k);
		strcat(key, "=");
		strcat(key, s->l[idx[i]].v);
		strcat(key, "\x01");
	}
	return key;
}

static bool parse_comment(struct doc *d, const char *p, const char *end, int line)
{
	bool help = end - p >= 7 && memcmp(p, "# HELP ", 7) == 0;
	bool type = end - p >= 7 && memcmp(p, "# TYPE ", 7) == 0;
	if (!help && !type)
		return true; /* a plain comment */
	p += 7;
	size_t n = name_at(p, end, true);
	if (n == 0 || (p + n < end && p[n] != ' '))
		return fail(d, line, "bad metric name in HELP/TYPE");
	int fi = family_add(d, p, n);
	struct family *f = &d->f[fi];
	p += n;
	if (help) {
		if (f->help)
			return fail(d, line, "a second HELP for %s", f->name);
		f->help = true;
		for (p = p < end ? p + 1 : p; p < end; p++)
			if (*p == '\\' && (p + 1 >= end || (p[1] != '\\' && p[1] != 'n')))
				return fail(d, line, "bad escape in HELP of %s", f->name);
			else if (*p == '\\')
				p++;
		return true;
	}
	if (f->typed)
		return fail(d, line, "a second TYPE for %s", f->name);
	if (f->n > 0)
		return fail(d, line, "TYPE of %s after its samples", f->name);
	if (p >= end || *p != ' ')
		return fail(d, line, "TYPE without a type");
	p++;
	static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((size_t)(end - p) == strlen(types[i]) &&
		    memcmp(p, types[i], strlen(types[i])) == 0) {
			strcpy(f->type, types[i]);
			f->typed = true;
		}
	return f->typed ? true : fail(d, line, "unknown type for %s", f->name);
}

/* The family a sample belongs to: a histogram's or summary's _bucket, _sum
 * and _count belong to it. */
static int family_of(struct doc *d, const char *name)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(name), sl = strlen(suffixes[i]);
		if (n <= sl || strcmp(name + n - sl, suffixes[i]) != 0)
			continue;
		char *base = strndup(name, n - sl);
		int fi = family_find(d, base);
		free(base);
		if (fi >= 0 &&
		    (strcmp(d->f[fi].type, "histogram") == 0 ||
		     (i > 0 && strcmp(d->f[fi].type, "summary") == 0)))
			return fi;
	}
	return family_find(d, name);
}

static bool parse_sample(struct doc *d, const char *p, const char *end, int line)
{
	size_t n = name_at(p, end, true);
	if (n == 0)
		return fail(d, line, "no metric name");
	struct sample s = {.name = strndup(p, n)};
	bool good = false;
	p += n;
	if (p < end && *p == '{') {
		p++;
		for (;;) {
			if (p < end && *p == '}') {
				p++;
				break;
			}
			size_t ln = name_at(p, end, false);
			if (ln == 0 || p + ln >= end || p[ln] != '=') {
				fail(d, line, "bad label name in %s", s.name);
				goto out;
			}
			if (s.nl == 8) {
				fail(d, line, "too many labels");
				goto out;
			}
			struct label *l = &s.l[s.nl++];
			l->k = strndup(p, ln);
			l->v = calloc(1, (size_t)(end - p) + 1);
			if (strncmp(l->k, "__", 2) == 0) {
				fail(d, line, "reserved label name %s", l->k);
				goto out;
			}
			for (int k = 0; k + 1 < s.nl; k++)
				if (strcmp(s.l[k].k, l->k) == 0) {
					fail(d, line, "label %s twice", l->k);
					goto out;
				}
			p += ln + 1;
			if (p >= end || *p != '"') {
				fail(d, line, "label value not quoted");
				goto out;
			}
			size_t vl = 0;
			for (p++; p < end && *p != '"'; p++) {
				if (*p != '\\') {
					l->v[vl++] = *p;
					continue;
				}
				if (++p >= end || (*p != '\\' && *p != '"' && *p != 'n')) {
					fail(d, line, "bad escape in a label value");
					goto out;
				}
				l->v[vl++] = *p == 'n' ? '\n' : *p;
			}
			if (p >= end) {
				fail(d, line, "unterminated label value");
				goto out;
			}
			p++;
			if (p < end && *p == ',') {
				p++;
				continue;
			}
			if (p < end && *p == '}') {
				p++;
				break;
			}
			fail(d, line, "expected , or } after a label");
			goto out;
		}
	}
	if (p >= end || *p != ' ') {
		fail(d, line, "no space before the value of %s", s.name);
		goto out;
	}
	while (p < end && *p == ' ')
		p++;
	const char *q = p;
	while (q < end && *q != ' ')
		q++;
	if (!parse_value(p, (size_t)(q - p), &s.v)) {
		fail(d, line, "bad value of %s: '%.*s'", s.name, (int)(q - p), p);
		goto out;
	}
	for (p = q; p < end && *p == ' '; p++)
		;
	if (p < end) { /* a timestamp: an integer */
		const char *t = p + (*p == '-');
		if (t >= end || strspn(t, "0123456789") < (size_t)(end - t)) {
			fail(d, line, "junk after the value of %s", s.name);
			goto out;
		}
	}
	s.family = family_of(d, s.name);
	if (s.family < 0 || !d->f[s.family].typed) {
		fail(d, line, "no TYPE before %s", s.name);
		goto out;
	}
	struct family *f = &d->f[s.family];
	if (strcmp(f->type, "histogram") == 0 && strcmp(s.name, f->name) == 0) {
		fail(d, line, "histogram %s without a suffix", s.name);
		goto out;
	}
	if (s.family != d->cur && f->n > 0) {
		fail(d, line, "samples of %s are not together", f->name);
		goto out;
	}
	d->cur = s.family;
	f->n++;
	char *lk = labels_key(&s, NULL);
	s.key = h_strdupf("%s{%s}", s.name, lk);
	free(lk);
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->s[i].key, s.key) == 0) {
			fail(d, line, "duplicate sample %s", s.name);
			goto out;
		}
	if (d->n == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 256;
		d->s = realloc(d->s, d->cap * sizeof(*d->s));
	}
	d->s[d->n++] = s;
	return true;
out:
	free(s.name);
	free(s.key);
	for (int k = 0; k < s.nl; k++) {
		free(s.l[k].k);
		free(s.l[k].v);
	}
	return good;
}

static const char *label_of(const struct sample *s, const char *k)
{
	for (int i = 0; i < s->nl; i++)
		if (strcmp(s->l[i].k, k) == 0)
			return s->l[i].v;
	return NULL;
}

/* Every histogram: per label set, buckets by increasing le, cumulative,
 * the last +Inf and equal to _count; a _sum. */
static bool check_histograms(struct doc *d)
{
	for (size_t fi = 0; fi < d->nf; fi++) {
		const struct family *f = &d->f[fi];
		if (strcmp(f->type, "histogram") != 0)
			continue;
		char *bucket = h_strdupf("%s_bucket", f->name);
		for (size_t i = 0; i < d->n; i++) {
			const struct sample *s = &d->s[i];
			if (strcmp(s->name, bucket) != 0)
				continue;
			char *key = labels_key(s, "le");
			bool first = true;
			for (size_t j = 0; j < i && first; j++) {
				char *k2 = strcmp(d->s[j].name, bucket) == 0
				        ? labels_key(&d->s[j], "le")
				        : NULL;
				first = !k2 || strcmp(k2, key) != 0;
				free(k2);
			}
			if (!first) {
				free(key);
				continue;
			}
			/* The label set's buckets, in order. */
			double le_prev = -HUGE_VAL, cnt_prev = 0, last_le = 0, last = 0;
			bool good = true;
			for (size_t j = i; j < d->n && good; j++) {
				if (strcmp(d->s[j].name, bucket) != 0)
					continue;
				char *k2 = labels_key(&d->s[j], "le");
				bool same = strcmp(k2, key) == 0;
				free(k2);
				if (!same)
					continue;
				const char *les = label_of(&d->s[j], "le");
				double le;
				if (!les || !parse_value(les, strlen(les), &le)) {
					free(key);
					free(bucket);
					return fail(d, 0, "%s: a bucket without a valid le",
					            f->name);
				}
				good = le > le_prev && d->s[j].v >= cnt_prev;
				le_prev = last_le = le;
				cnt_prev = last = d->s[j].v;
			}
			bool have_sum = false, count_ok = false;
			for (size_t j = 0; j < d->n; j++) {
				char *k2 = labels_key(&d->s[j], NULL);
				bool same = strcmp(k2, key) == 0;
				free(k2);
				if (!same)
					continue;
				char *sum = h_strdupf("%s_sum", f->name),
				     *cnt = h_strdupf("%s_count", f->name);
				have_sum |= strcmp(d->s[j].name, sum) == 0;
				count_ok |= strcmp(d->s[j].name, cnt) == 0 && d->s[j].v == last;
				free(sum);
				free(cnt);
			}
			free(key);
			if (!good || last_le != HUGE_VAL || !have_sum || !count_ok) {
				free(bucket);
				return fail(
				        d, 0,
				        "histogram %s: buckets not increasing, no +Inf, no _sum or "
				        "+Inf != _count",
				        f->name);
			}
		}
		free(bucket);
	}
	return true;
}

/* Counters end in _total and are finite and >= 0. */
static bool check_counters(struct doc *d)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct sample *s = &d->s[i];
		const struct family *f = &d->f[s->family];
		size_t n = strlen(f->name);
		if (strcmp(f->type, "counter") == 0 &&
		    (n < 6 || strcmp(f->name + n - 6, "_total") != 0 || !(s->v >= 0) ||
		     s->v == HUGE_VAL))
			return fail(d, 0, "counter %s: bad name or value", s->name);
	}
	return true;
}

/* Parses a whole scrape into d (freed first). */
static bool parse_doc(struct doc *d, const char *text, size_t len)
{
	doc_free(d);
	if (len > 0 && text[len - 1] != '\n')
		return fail(d, 0, "the text does not end with a newline");
	int line = 0;
	for (const char *p = text; p < text + len;) {
		const char *end = memchr(p, '\n', (size_t)(text + len - p));
		line++;
		if (memchr(p, '\0', (size_t)(end - p)))
			return fail(d, line, "a NUL byte");
		bool good = end == p ? true
		        : *p == '#'  ? parse_comment(d, p, end, line)
		                     : parse_sample(d, p, end, line);
		if (!good)
			return false;
		p = end + 1;
	}
	for (size_t i = 0; i < d->nf; i++)
		if (!d->f[i].typed || !d->f[i].help)
			return fail(d, 0, "%s has no HELP or no TYPE", d->f[i].name);
	return check_histograms(d) && check_counters(d);
}

/* The sum of the samples named `name` that have every label of `kv`
 * (name, value, ..., NULL); NAN if there is none. */
static double doc_value(const struct doc *d, const char *name, const char *const *kv)
{
	double sum = 0;
	int found = 0;
	for (size_t i = 0; i < d->n; i++) {
		const struct sample *s = &d->s[i];
		if (strcmp(s->name, name) != 0)
			continue;
		bool all = true;
		for (int k = 0; kv[k] && all; k += 2) {
			const char *v = label_of(s, kv[k]);
			all = v && strcmp(v, kv[k + 1]) == 0;
		}
		if (all) {
			sum += s->v;
			found++;
		}
	}
	return found ? sum : NAN;
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOL ((const char *const[]){NULL})

/* --- a raw HTTP client ------------------------------------------------ */

struct http {
	int status; /* 0: no answer */
	char *head; /* status line and headers */
	char *body;
	size_t body_len;
	double took;
};

static void http_free(struct http *h)
{
	free(h->head);
	free(h->body);
	memset(h, 0, sizeof(*h));
}

/* Everything `fd` sends until EOF, within `timeout` (-1 if it did not
 * end).  *out: malloc'd, NUL-terminated. */
static ssize_t read_all(int fd, double timeout, char **out)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	double end = h_now() + timeout;
	for (;;) {
		double left = end - h_now();
		if (left <= 0 || !wire_readable(fd, left)) {
			buf[len] = '\0';
			*out = buf;
			return -1;
		}
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return (ssize_t)len;
}

/* Splits a response read in full into h. */
static void http_parse(struct http *h, char *raw, size_t len)
{
	char *sep = strstr(raw, "\r\n\r\n");
	if (strncmp(raw, "HTTP/1.", 7) != 0 || !sep) {
		free(raw);
		return;
	}
	h->status = atoi(raw + 9);
	h->head = strndup(raw, (size_t)(sep - raw) + 2);
	h->body_len = len - (size_t)(sep + 4 - raw);
	h->body = malloc(h->body_len + 1);
	memcpy(h->body, sep + 4, h->body_len);
	h->body[h->body_len] = '\0';
	free(raw);
}

/* Sends `req` as it is and reads the answer until the server closes. */
static bool http_raw(int port, const char *req, size_t len, struct http *h)
{
	memset(h, 0, sizeof(*h));
	double t0 = h_now();
	int fd = wire_connect(port);
	if (fd < 0)
		return false;
	char *raw = NULL;
	ssize_t n = wire_send(fd, req, len) ? read_all(fd, 10, &raw) : -1;
	close(fd);
	h->took = h_now() - t0;
	if (n < 0) {
		free(raw);
		return false;
	}
	http_parse(h, raw, (size_t)n);
	return h->status > 0;
}

static bool http_get(int port, const char *path, struct http *h)
{
	char *req = h_strdupf("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: t_metrics\r\n"
	                      "Accept: text/plain\r\n\r\n",
	                      path, port);
	bool r = http_raw(port, req, strlen(req), h);
	free(req);
	return r;
}

/* Content-Length matches the body. */
static bool length_ok(const struct http *h)
{
	const char *cl = h->head ? strcasestr(h->head, "\r\nContent-Length: ") : NULL;
	return cl && strtoul(cl + 18, NULL, 10) == h->body_len;
}

/* --- the test --------------------------------------------------------- */

static struct h_moat *moat;
static int mport; /* where metrics are served now */
static struct doc D = {.cur = -1}; /* the latest scrape */
static double accepted0; /* clients accepted before the test's (the harness connected once) */

/* GET /metrics and parse it into D; false with a diagnostic if either
 * failed. */
static bool scrape(void)
{
	struct http h;
	bool good = http_get(mport, "/metrics", &h) && h.status == 200;
	if (!good)
		diag("GET /metrics on port %d: status %d", mport, h.status);
	if (good && !parse_doc(&D, h.body, h.body_len)) {
		diag("/metrics does not parse: %s", D.err);
		good = false;
	}
	http_free(&h);
	return good;
}

static double val(const char *name, const char *const *kv)
{
	return doc_value(&D, name, kv);
}

struct want {
	const char *name;
	const char *const *kv;
	double v;
};

/* Scrapes until every metric of `w` (n of them) has its value, up to
 * `timeout` seconds (0: one scrape, no diagnostics); D keeps the last
 * scrape. */
static bool wait_values(const struct want *w, size_t n, double timeout)
{
	double end = h_now() + timeout;
	for (;;) {
		bool all = scrape();
		for (size_t i = 0; i < n && all; i++)
			all = val(w[i].name, w[i].kv) == w[i].v;
		if (all)
			return true;
		if (h_now() > end) {
			for (size_t i = 0; i < n && timeout > 0; i++)
				if (val(w[i].name, w[i].kv) != w[i].v)
					diag("%s: %g, waited for %g", w[i].name,
					     val(w[i].name, w[i].kv), w[i].v);
			return false;
		}
		h_nap(0.05);
	}
}

static bool wait_value(const char *name, const char *const *kv, double v, double timeout)
{
	struct want w = {name, kv, v};
	return wait_values(&w, 1, timeout);
}

static int dead_port;

static void write_ini(const char *metrics_listen, const char *extra)
{
	char *t = h_strdupf("[databases]\n"
	                    "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=5\n"
	                    "waitdb = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                    "ha = host=127.0.0.1,127.0.0.1 port=@PGPORT@,%d dbname=app\n"
	                    "\n"
	                    "[pgmoat]\n"
	                    "listen_addr = 127.0.0.1\n"
	                    "listen_port = @PORT@\n"
	                    "unix_socket_dir = @SOCKDIR@\n"
	                    "auth_file = @AUTHFILE@\n"
	                    "auth_type = md5\n"
	                    "workers = 2\n"
	                    "pool_mode = transaction\n"
	                    "health_check_period = 200ms\n"
	                    "health_check_failures = 1\n"
	                    "health_check_timeout = 1\n"
	                    "health_check_user = app\n"
	                    "health_check_dbname = app\n"
	                    "metrics_listen = %s\n"
	                    "%s",
	                    dead_port, metrics_listen, extra ? extra : "");
	if (!h_moat_write_ini(moat, t))
		h_bail("cannot write the configuration");
	free(t);
}

static void test_first_scrape(void)
{
	/* The endpoint opens just after the workers listen. */
	for (double end = h_now() + 5; !h_tcp_accepts(mport) && h_now() < end;)
		h_nap(0.02);
	bool parsed = scrape();
	ok(parsed, "GET /metrics: 200, and the whole text parses (%zu samples, %zu families)", D.n,
	   D.nf);
	ok(val("pgmoat_up", NOL) == 1 &&
	           val("pgmoat_build_info", L("version", PACKAGE_VERSION)) == 1,
	   "pgmoat_up 1, pgmoat_build_info{version=\"%s\"} 1", PACKAGE_VERSION);
	double start = val("pgmoat_start_time_seconds", NOL), now = (double)time(NULL);
	ok(start > now - 120 && start <= now + 1,
	   "pgmoat_start_time_seconds is the wall clock (%.0f)", start);
	static const char *const families[] = {
	        "pgmoat_clients",
	        "pgmoat_servers",
	        "pgmoat_clients_accepted_total",
	        "pgmoat_servers_opened_total",
	        "pgmoat_tls_handshakes_total",
	        "pgmoat_client_bytes_received_total",
	        "pgmoat_client_bytes_sent_total",
	        "pgmoat_connections_refused_total",
	        "pgmoat_pool_transactions_total",
	        "pgmoat_pool_queries_total",
	        "pgmoat_pool_received_bytes_total",
	        "pgmoat_pool_sent_bytes_total",
	        "pgmoat_pool_waits_total",
	        "pgmoat_pool_wait_seconds",
	        "pgmoat_pool_transaction_seconds",
	        "pgmoat_pool_query_seconds",
	        "pgmoat_pool_servers",
	        "pgmoat_pool_waiting_clients",
	        "pgmoat_pool_clients",
	        "pgmoat_host_up",
	        "pgmoat_host_primary",
	        "pgmoat_host_replay_lag_bytes",
	        "pgmoat_host_replay_lag_seconds",
	        "pgmoat_host_last_probe_age_seconds",
	        "pgmoat_reloads_total",
	};
	const char *missing = NULL;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]) && !missing; i++)
		if (family_find(&D, families[i]) < 0)
			missing = families[i];
	ok(!missing, "every metric family is described (missing: %s)", missing ? missing : "none");
	h_nap(0.25); /* workers publish their counters every 100 ms */
	accepted0 = scrape() ? val("pgmoat_clients_accepted_total", NOL) : NAN;
}

static PGconn *clients[N_CLIENTS];

static void test_work(int pgport)
{
	int good = 0;
	for (int i = 0; i < N_CLIENTS; i++) {
		clients[i] = h_moat_connect(moat, "app", "app", "app");
		for (int k = 0; k < N_XACTS && h_connected(clients[i]); k++)
			good += h_exec(clients[i], "select 1");
	}
	is_int(good, N_CLIENTS * N_XACTS, "%d clients ran %d transactions each", N_CLIENTS,
	       N_XACTS);
	int fd = wire_connect(moat->port);
	struct wire_login lg = {0};
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "wrong", &lg);
	if (fd >= 0)
		close(fd);
	ok(!in && strcmp(lg.sqlstate, "28P01") == 0, "a wrong password is refused (%s)",
	   lg.sqlstate);

	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", pgport);
	const char *const *app = L("database", "app", "user", "app", "host", host);
	struct want w[] = {
	        {"pgmoat_pool_transactions_total", app, N_CLIENTS * N_XACTS},
	        {"pgmoat_connections_refused_total", L("reason", "auth"), 1},
	        {"pgmoat_clients", L("state", "idle"), N_CLIENTS},
	};
	ok(wait_values(w, 3, 5),
	   "pgmoat_pool_transactions_total{database=\"app\",host=\"%s\"} "
	   "reaches %d",
	   host, N_CLIENTS * N_XACTS);
	is_int((long)val("pgmoat_pool_queries_total", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_queries_total of the pool");
	is_int((long)val("pgmoat_pool_transaction_seconds_count", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_transaction_seconds_count");
	is_int((long)val("pgmoat_pool_query_seconds_count", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_query_seconds_count");
	double xs = val("pgmoat_pool_transaction_seconds_sum", app);
	ok(xs > 0 && xs < 10, "pgmoat_pool_transaction_seconds_sum %.6f s", xs);
	is_int((long)val("pgmoat_connections_refused_total", L("reason", "auth")), 1,
	       "pgmoat_connections_refused_total{reason=\"auth\"} 1");
	double others = 0;
	static const char *const reasons[] = {"allow",          "hba",      "tls",
	                                      "proxy_protocol", "throttle", "login_timeout"};
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		others += val("pgmoat_connections_refused_total", L("reason", reasons[i]));
	is_int((long)others, 0, "no refusals for the other six reasons");
	is_int((long)val("pgmoat_clients", L("state", "idle")), N_CLIENTS,
	       "pgmoat_clients{state=\"idle\"}: the %d clients held open", N_CLIENTS);
	is_int((long)val("pgmoat_pool_clients", L("database", "app", "user", "app")), N_CLIENTS,
	       "pgmoat_pool_clients of app/app");
	is_int((long)(val("pgmoat_clients_accepted_total", NOL) - accepted0), N_CLIENTS + 1,
	       "pgmoat_clients_accepted_total: %d more, the clients and the refused one",
	       N_CLIENTS + 1);
	is_int((long)val("pgmoat_tls_handshakes_total", NOL), 0, "pgmoat_tls_handshakes_total 0");

	double idle = val("pgmoat_pool_servers", L("database", "app", "state", "idle"));
	double busy = val("pgmoat_pool_servers", L("database", "app", "state", "active")) +
	        val("pgmoat_pool_servers", L("database", "app", "state", "connecting"));
	ok(idle >= 1 && idle <= 5 && busy == 0,
	   "pgmoat_pool_servers of app: %g idle (pool_size 5), %g active or connecting", idle,
	   busy);
	ok(wait_value("pgmoat_servers", L("state", "idle"), idle, 3),
	   "pgmoat_servers{state=\"idle\"} equals the pool's idle servers");
	ok(val("pgmoat_servers_opened_total", NOL) >= idle,
	   "pgmoat_servers_opened_total (%g) counts them", val("pgmoat_servers_opened_total", NOL));
	double recv = val("pgmoat_pool_received_bytes_total", app);
	double sent = val("pgmoat_pool_sent_bytes_total", app);
	struct want bytes[] = {
	        {"pgmoat_client_bytes_received_total", NOL, recv},
	        {"pgmoat_client_bytes_sent_total", NOL, sent},
	};
	ok(recv >= N_CLIENTS * N_XACTS * 14 && sent > recv && wait_values(bytes, 2, 3),
	   "bytes: %g in, %g out, pool and process totals agree", recv, sent);
}

/* The waits of waitdb before the test's own: logins may have waited for a
 * new server too. */
struct waits {
	double n, count, sum, fast, all;
};

static struct waits waits_now(void)
{
	const char *const *wdb = L("database", "waitdb");
	return (struct waits){
	        val("pgmoat_pool_waits_total", wdb),
	        val("pgmoat_pool_wait_seconds_count", wdb),
	        val("pgmoat_pool_wait_seconds_sum", wdb),
	        val("pgmoat_pool_wait_seconds_bucket", L("database", "waitdb", "le", "0.1")),
	        val("pgmoat_pool_wait_seconds_bucket", L("database", "waitdb", "le", "+Inf")),
	};
}

static void test_wait(void)
{
	const char *const *wdb = L("database", "waitdb");
	PGconn *a = h_moat_connect(moat, "app", "waitdb", "app");
	bool held = h_exec(a, "begin") && h_exec(a, "select 1");
	held = held &&
	        wait_value("pgmoat_pool_servers", L("database", "waitdb", "state", "active"), 1, 3);
	struct waits w0 = waits_now();
	struct h_async b;
	char *ci = h_moat_conninfo(moat, "app", "waitdb", "app");
	h_async_start(&b, ci, "select 1");
	free(ci);
	struct want w[] = {
	        {"pgmoat_pool_waiting_clients", wdb, 1},
	        {"pgmoat_clients", L("state", "waiting"), 1},
	        {"pgmoat_clients", L("state", "active"), 1},
	        {"pgmoat_pool_servers", L("database", "waitdb", "state", "active"), 1},
	};
	double end = h_now() + 5;
	bool seen = false;
	while (held && !seen && h_now() < end) {
		h_async_wait(&b, 0.05); /* drives B's login */
		seen = wait_values(w, 4, 0);
	}
	ok(seen,
	   "waitdb (pool_size 1): the second client waits: waiting clients 1, a client and "
	   "a server active");
	h_nap(0.3);
	ok(h_exec(a, "commit") && h_async_wait(&b, 5) && h_async_ok(&b),
	   "once the first commits, the waiting client is served");
	h_async_close(&b);
	PQfinish(a);
	struct want done[] = {
	        {"pgmoat_pool_waits_total", wdb, w0.n + 1},
	        {"pgmoat_pool_transactions_total", wdb, 2},
	        {"pgmoat_pool_queries_total", wdb, 4},
	};
	ok(wait_values(done, 3, 5), "waitdb: one more wait (%g before), 2 transactions, 4 queries",
	   w0.n);
	struct waits w1 = waits_now();
	double took = w1.sum - w0.sum;
	ok(w1.count == w1.n && w1.count == w0.count + 1 && took >= 0.25 && took < 10,
	   "pgmoat_pool_wait_seconds: _count is the waits, the wait added %.3f s to _sum", took);
	ok(w1.fast == w0.fast && w1.all == w0.all + 1,
	   "the wait is counted in a bucket above 0.1 s");
	is_int((long)val("pgmoat_pool_waiting_clients", wdb), 0, "nobody waits any more");
}

static void test_hosts(int pgport)
{
	char up[64], down[64];
	snprintf(up, sizeof(up), "127.0.0.1:%d", pgport);
	snprintf(down, sizeof(down), "127.0.0.1:%d", dead_port);
	struct want w[] = {
	        {"pgmoat_host_up", L("host", up), 1},
	        {"pgmoat_host_primary", L("host", up), 1},
	        {"pgmoat_host_up", L("host", down), 0},
	        {"pgmoat_host_primary", L("host", down), 0},
	};
	ok(wait_values(w, 4, 10), "hosts of [databases] ha: %s up and primary, %s down", up, down);
	double age = val("pgmoat_host_last_probe_age_seconds", L("host", up));
	ok(age >= 0 && age < 3 &&
	           isnan(val("pgmoat_host_last_probe_age_seconds", L("host", down))) &&
	           val("pgmoat_host_replay_lag_bytes", L("host", up)) == 0 &&
	           val("pgmoat_host_replay_lag_seconds", L("host", up)) == 0,
	   "probe age %.2f s, no lag; no age for a host that never answered", age);
}

static bool send_str(int fd, const char *s)
{
	return wire_send(fd, s, strlen(s));
}

static void test_http(void)
{
	struct http h;
	ok(http_get(mport, "/nothing", &h) && h.status == 404 && length_ok(&h),
	   "GET /nothing: 404");
	http_free(&h);
	const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
	ok(http_raw(mport, post, strlen(post), &h) && h.status == 405 &&
	           strstr(h.head, "\r\nAllow: GET, HEAD\r\n"),
	   "POST /metrics: 405 with Allow");
	http_free(&h);
	const char *head = "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	ok(http_raw(mport, head, strlen(head), &h) && h.status == 200 && h.body_len == 0 &&
	           strstr(h.head, "Content-Type: text/plain; version=0.0.4"),
	   "HEAD /metrics: 200, the content type, no body");
	http_free(&h);
	const char *q = "GET /metrics?x=1 HTTP/1.0\n\n";
	ok(http_raw(mport, q, strlen(q), &h) && h.status == 200 && length_ok(&h) &&
	           parse_doc(&D, h.body, h.body_len) && strstr(h.head, "Connection: close\r\n"),
	   "HTTP/1.0, bare newlines and a query string: 200, Connection: close, parses");
	http_free(&h);

	const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n";
	ok(http_raw(mport, garbage, sizeof(garbage) - 1, &h) && h.status == 400,
	   "a TLS ClientHello-like request: 400");
	http_free(&h);
	const char *bad_line = "GET metrics\r\n\r\n";
	ok(http_raw(mport, bad_line, strlen(bad_line), &h) && h.status == 400,
	   "a malformed request line: 400");
	http_free(&h);
	size_t big_len = 9000;
	char *big = malloc(big_len + 1);
	memset(big, 'a', big_len);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-Big: ", 30);
	big[big_len] = '\0';
	ok(http_raw(mport, big, big_len, &h) && h.status == 431,
	   "9000 bytes of headers: 431, closed");
	http_free(&h);
	free(big);
	ok(scrape(), "the endpoint still answers after the bad requests");

	/* A partial request waits for its timeout; it holds nobody up. */
	double t0 = h_now();
	int slow = wire_connect(mport);
	bool sent = slow >= 0 && send_str(slow, "GET /metr");
	double t1 = h_now();
	bool quick = scrape() && h_now() - t1 < 1.5;
	ok(sent && quick, "a scrape is served while a partial request is open (%.2f s)",
	   h_now() - t1);
	int held[MAX_CONNS - 1];
	int n_held = 0;
	for (int i = 0; i < MAX_CONNS - 1; i++) {
		held[i] = wire_connect(mport);
		n_held += held[i] >= 0 && send_str(held[i], "GET /");
	}
	h_nap(0.2); /* let the server accept them all */
	int extra = wire_connect(mport);
	char *raw = NULL;
	ssize_t n = extra >= 0 ? read_all(extra, 5, &raw) : -1;
	ok(n_held == MAX_CONNS - 1 && n > 0 && strncmp(raw, "HTTP/1.1 503 ", 13) == 0,
	   "with %d requests open, one more gets a 503", MAX_CONNS);
	free(raw);
	if (extra >= 0)
		close(extra);
	char *rest = NULL;
	n = slow >= 0 ? read_all(slow, READ_TIMEOUT + 3, &rest) : -1;
	double took = h_now() - t0;
	ok(n == 0 && took > READ_TIMEOUT - 0.5 && took < READ_TIMEOUT + 2.5,
	   "the partial request is closed without an answer after %.1f s (read timeout %g s)", took,
	   READ_TIMEOUT);
	free(rest);
	int closed = 0;
	for (int i = 0; i < MAX_CONNS - 1; i++) {
		char *r = NULL;
		closed += held[i] >= 0 && read_all(held[i], 3, &r) == 0;
		free(r);
		if (held[i] >= 0)
			close(held[i]);
	}
	if (slow >= 0)
		close(slow);
	is_int(closed, MAX_CONNS - 1, "the other partial requests are closed too");
	ok(scrape(), "scrapes are served again");
}

static void test_curl(void)
{
	char *url = h_strdupf("http://127.0.0.1:%d/metrics", mport);
	const char *argv[] = {"curl", "-sS", "-f", "--max-time", "10", url, NULL};
	char *out = NULL;
	int rc = h_run(argv, NULL, 20, &out);
	if (rc == 127 || (rc != 0 && out && strstr(out, "No such file"))) {
		ok(true, "# SKIP curl is not installed");
	} else {
		struct doc d = {.cur = -1};
		bool parsed = rc == 0 && out && parse_doc(&d, out, strlen(out));
		ok(parsed && doc_value(&d, "pgmoat_up", NOL) == 1, "curl %s: parses (rc %d%s%s)",
		   url, rc, parsed ? "" : ": ", parsed ? "" : d.err);
		doc_free(&d);
	}
	free(out);
	free(url);
}

static void test_reload(void)
{
	char *where = h_strdupf("127.0.0.1:%d", mport);
	ok(scrape(), "scrape before the reloads");
	double r0 = val("pgmoat_reloads_total", L("result", "ok"));
	double f0 = val("pgmoat_reloads_total", L("result", "failed"));
	ok(r0 == 0 && f0 == 0, "no reloads yet");
	write_ini(where, NULL);
	bool done = h_moat_reload(moat, "configuration reloaded") && scrape();
	double r1 = val("pgmoat_reloads_total", L("result", "ok"));
	ok(done && r1 == r0 + 1, "SIGHUP: pgmoat_reloads_total{result=\"ok\"} is now %g", r1);
	write_ini(where, "default_pool_size = lots\n");
	done = h_moat_reload(moat, "reload failed") && scrape();
	double f1 = val("pgmoat_reloads_total", L("result", "failed"));
	ok(done && f1 == f0 + 1,
	   "a broken file: pgmoat_reloads_total{result=\"failed\"} is now %g, still served", f1);

	int old = mport, moved = h_free_port();
	char *next = h_strdupf("127.0.0.1:%d", moved);
	write_ini(next, NULL);
	ok(h_moat_reload(moat, "configuration reloaded"), "reload with metrics_listen = %s", next);
	mport = moved;
	ok(scrape() && val("pgmoat_reloads_total", L("result", "ok")) == r0 + 2,
	   "metrics moved to the new port");
	ok(!h_tcp_accepts(old), "nothing listens on the old port");

	write_ini("127.0.0.1:99999", NULL);
	ok(h_moat_reload(moat, "reload failed") && h_moat_log_has(moat, "metrics_listen") &&
	           scrape() && val("pgmoat_reloads_total", L("result", "failed")) == f0 + 2,
	   "metrics_listen = 127.0.0.1:99999 fails the reload (logged); still served");
	write_ini("::1:9127", NULL);
	ok(h_moat_reload(moat, "reload failed"), "an IPv6 address without brackets is refused");
	write_ini("", NULL);
	ok(h_moat_reload(moat, "configuration reloaded") && !h_tcp_accepts(mport),
	   "an empty metrics_listen stops the endpoint");
	write_ini(next, NULL);
	ok(h_moat_reload(moat, "configuration reloaded") && scrape(), "set again: served again");
	free(where);
	free(next);
}

int main(void)
{
	h_init("t_metrics", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	moat = h_moat_new(pg);
	dead_port = h_free_port();
	mport = h_free_port();
	if (!h_moat_write_userlist(moat, "\"app\" \"app\"\n"))
		h_bail("cannot write the userlist");
	char *where = h_strdupf("127.0.0.1:%d", mport);
	write_ini(where, NULL);
	free(where);
	if (!h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");

	tap_plan(55);
	test_first_scrape();
	test_work(pg->port);
	test_wait();
	test_hosts(pg->port);
	test_http();
	test_curl();
	test_reload();
	for (int i = 0; i < N_CLIENTS; i++)
		PQfinish(clients[i]);
	doc_free(&D);
	return h_done();
}

#include <config.h>

#include "tests/lib/prom.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

void prom_doc_free(struct prom_doc *d)
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
fail(struct prom_doc *d, int line, const char *fmt, ...)
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

int prom_family_find(const struct prom_doc *d, const char *name)
{
	for (size_t i = 0; i < d->nf; i++)
		if (strcmp(d->f[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int family_add(struct prom_doc *d, const char *name, size_t len)
{
	char *n = strndup(name, len);
	int i = prom_family_find(d, n);
	if (i >= 0) {
		free(n);
		return i;
	}
	if (d->nf == d->fcap) {
		d->fcap = d->fcap ? 2 * d->fcap : 32;
		d->f = realloc(d->f, d->fcap * sizeof(*d->f));
	}
	d->f[d->nf] = (struct prom_family){.name = n};
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
static char *labels_key(const struct prom_sample *s, const char *skip)
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

static bool parse_comment(struct prom_doc *d, const char *p, const char *end, int line)
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
	struct prom_family *f = &d->f[fi];
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
static int family_of(struct prom_doc *d, const char *name)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(name), sl = strlen(suffixes[i]);
		if (n <= sl || strcmp(name + n - sl, suffixes[i]) != 0)
			continue;
		char *base = strndup(name, n - sl);
		int fi = prom_family_find(d, base);
		free(base);
		if (fi >= 0 &&
		    (strcmp(d->f[fi].type, "histogram") == 0 ||
		     (i > 0 && strcmp(d->f[fi].type, "summary") == 0)))
			return fi;
	}
	return prom_family_find(d, name);
}

static bool parse_sample(struct prom_doc *d, const char *p, const char *end, int line)
{
	size_t n = name_at(p, end, true);
	if (n == 0)
		return fail(d, line, "no metric name");
	struct prom_sample s = {.name = strndup(p, n)};
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
			struct prom_label *l = &s.l[s.nl++];
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
	struct prom_family *f = &d->f[s.family];
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

static const char *label_of(const struct prom_sample *s, const char *k)
{
	for (int i = 0; i < s->nl; i++)
		if (strcmp(s->l[i].k, k) == 0)
			return s->l[i].v;
	return NULL;
}

/* Every histogram: per label set, buckets by increasing le, cumulative,
 * the last +Inf and equal to _count; a _sum. */
static bool check_histograms(struct prom_doc *d)
{
	for (size_t fi = 0; fi < d->nf; fi++) {
		const struct prom_family *f = &d->f[fi];
		if (strcmp(f->type, "histogram") != 0)
			continue;
		char *bucket = h_strdupf("%s_bucket", f->name);
		for (size_t i = 0; i < d->n; i++) {
			const struct prom_sample *s = &d->s[i];
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
static bool check_counters(struct prom_doc *d)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct prom_sample *s = &d->s[i];
		const struct prom_family *f = &d->f[s->family];
		size_t n = strlen(f->name);
		if (strcmp(f->type, "counter") == 0 &&
		    (n < 6 || strcmp(f->name + n - 6, "_total") != 0 || !(s->v >= 0) ||
		     s->v == HUGE_VAL))
			return fail(d, 0, "counter %s: bad name or value", s->name);
	}
	return true;
}

/* Parses a whole scrape into d (freed first). */
bool prom_parse(struct prom_doc *d, const char *text, size_t len)
{
	prom_doc_free(d);
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
double prom_value(const struct prom_doc *d, const char *name, const char *const *kv)
{
	double sum = 0;
	int found = 0;
	for (size_t i = 0; i < d->n; i++) {
		const struct prom_sample *s = &d->s[i];
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

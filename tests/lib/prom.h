/* A parser of Prometheus's text exposition format (0.0.4), strict enough
 * to tell a well-formed scrape from a sloppy one: names, labels with
 * escapes, values, HELP/TYPE comments, families kept together, no
 * duplicates, cumulative histogram buckets with +Inf equal to _count,
 * counters ending in _total.  For tests that scrape /metrics. */
#ifndef PGMOAT_TESTS_PROM_H
#define PGMOAT_TESTS_PROM_H

#include <stdbool.h>
#include <stddef.h>

struct prom_label {
	char *k, *v;
};

struct prom_sample {
	char *name;
	struct prom_label l[8];
	int nl;
	double v;
	int family;
	char *key; /* name and sorted labels: duplicates are errors */
};

struct prom_family {
	char *name;
	char type[16];
	bool help, typed;
	int n; /* samples */
};

struct prom_doc {
	struct prom_sample *s;
	size_t n, cap;
	struct prom_family *f;
	size_t nf, fcap;
	int cur; /* family of the latest sample, -1 */
	char err[400];
};

/* Parse `text`; false with d->err set on the first problem. */
bool prom_parse(struct prom_doc *d, const char *text, size_t len);
void prom_doc_free(struct prom_doc *d);
#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
/* No labels, for prom_value(). */
#define NOL ((const char *const[]){NULL})
/* The value of sample `name` with labels `kv` ("k", "v", ..., NULL), or NAN. */
double prom_value(const struct prom_doc *d, const char *name, const char *const *kv);
/* The index of family `name`, or -1. */
int prom_family_find(const struct prom_doc *d, const char *name);

#endif

/* Intrusive doubly-linked lists.
 *
 * A struct that sits on a list embeds a `struct list` node; the list head is
 * a `struct list` too.  container_of() gets back from the node to its owner.
 */
#ifndef PGMOAT_COMMON_LIST_H
#define PGMOAT_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct list {
	struct list *next;
	struct list *prev;
};

#define LIST_INIT(name)                                                                            \
	{                                                                                          \
		&(name), &(name)                                                                   \
	}

static inline void list_init(struct list *l)
{
	l->next = l;
	l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* A node that is on no list points at itself after list_init/list_del. */
static inline bool list_linked(const struct list *node)
{
	return node->next != node && node->next != NULL;
}

static inline void list_insert_between(struct list *node, struct list *prev, struct list *next)
{
	node->prev = prev;
	node->next = next;
	prev->next = node;
	next->prev = node;
}

static inline void list_append(struct list *head, struct list *node)
{
	list_insert_between(node, head->prev, head);
}

static inline void list_prepend(struct list *head, struct list *node)
{
	list_insert_between(node, head, head->next);
}

static inline void list_del(struct list *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	list_init(node);
}

static inline struct list *list_first(const struct list *head)
{
	return list_empty(head) ? NULL : head->next;
}

static inline struct list *list_pop(struct list *head)
{
	struct list *n = list_first(head);
	if (n)
		list_del(n);
	return n;
}

#define list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* Safe against removal of `pos` inside the loop body. */
#define list_for_each_safe(pos, tmp, head)                                                         \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                           \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif

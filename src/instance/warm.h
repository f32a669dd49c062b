/* Warm `run`: booted guests kept as frozen fork templates, keyed by everything that decides the
 * booted state, so that a later `run` of the same key forks instead of booting. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "store/store.h"
#include "util/err.h"

struct inst_manager;
struct inst;
struct inst_record;
struct trace;

#define WARM_KEY_ID_LEN 32 /* hex digits of a key's id */
#define WARM_DISK       "root.img"

/* For the API: every kept template as JSON objects (id, created_ms, hypervisor, memory_mib,
 * vcpus, kernel, root_disk, in_use: instances still mapping its memory). */
int inst_templates_list(struct inst_manager *m, json_t **ret_array, struct tp_err *err);
/* Forget the template whose id starts with ref (-ENOENT; -ENOTUNIQ for an ambiguous prefix): no
 * later run uses it; its files go once no instance maps them. */
int inst_template_remove(struct inst_manager *m, const char *ref, struct tp_err *err);
/* Forget every template; *ret_n gets how many. */
int inst_templates_prune(struct inst_manager *m, size_t *ret_n, struct tp_err *err);

/* For run.c. The key of rec's boot (text, caller frees), or NULL when such a boot is never
 * kept: a command at boot, no agent, a hypervisor that cannot fork a running guest. */
char *warm_key(struct inst_manager *m, const struct inst_record *rec, bool want_net);
/* 1 and the template's id (pinned against the garbage collector until warm_prepare or
 * warm_unpin) when a valid template of key exists; 0 otherwise (a stale or corrupt one is
 * forgotten, logged). */
int warm_lookup(struct inst_manager *m, const char *key, char ret_tid[INST_ID_LEN + 1]);
void warm_unpin(struct inst_manager *m, const char *tid);
/* i's directory exists: its disk from the template, its identity pending, its memory the
 * template's (unpins tid). */
int warm_prepare(struct inst_manager *m, struct inst *i, const char *tid, struct tp_err *err);
/* Start i's VMM on the template and give the guest its own identity. On failure nothing of the
 * warm start is left (no VMM, no template ref): the caller boots instead. */
int warm_start(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err);
/* Undo warm_prepare after a failed warm_start, so that the caller can boot i; forgets the
 * template (it did not start). */
int warm_fallback(struct inst_manager *m, struct inst *i, const char *key, const char *tid,
                  struct tp_err *err);
/* i just booted (agent ready): freeze it into a template of key and restart it on that
 * template. A failure before its VMM stopped leaves it running as it was (0, logged); after,
 * it is restarted on its own memory, and only when that fails is it lost (< 0). */
int warm_capture(struct inst_manager *m, struct inst *i, const char *key, struct trace *t,
                 struct tp_err *err);
/* template.c's collector: whether a kept template names tid. Caller holds template_lock. */
bool warm_template_kept(struct inst_manager *m, const char *tid);

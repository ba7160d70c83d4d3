/* The reward plugin C ABI, version 1. Stable: only plain C types cross it.
 *
 * A plugin is a shared library exporting one function,
 *
 *     const grpo_reward_plugin* grpo_reward_plugin_v1(void);
 *
 * that returns a pointer to a static table. The host (reward/plugin_host.h) loads the library
 * with dlopen inside an isolated worker process, checks abi_version and struct_size, calls
 * create() once with the rule's configuration as a JSON object text, then score() once per
 * item, and destroy() at exit. All strings passed in are UTF-8, NOT NUL-terminated (use size),
 * and valid only during the call. The plugin writes its result into *out (which the host
 * zero-fills first); message must be NUL-terminated within its 512 bytes.
 *
 * Rules for plugin authors (docs/reward_plugins.md has the guide):
 *  - score() must be deterministic; it may be called for many items in sequence (never
 *    concurrently within one process; the host runs several worker processes for parallelism).
 *  - Return 0 and set out->score for a judgment (including "wrong": a low score); return
 *    nonzero (or set out->is_error) when the item cannot be judged (bad gold answer, missing
 *    meta key), with a message.
 *  - A crash, a hang past the deadline or memory above the limit kills only the worker; the
 *    item gets an error and the host starts a fresh worker.
 * Changing this struct in an incompatible way requires a new version number and entry name.
 */
#ifndef GRPO_REWARD_PLUGIN_ABI_H_
#define GRPO_REWARD_PLUGIN_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRPO_REWARD_PLUGIN_ABI_VERSION 1u
#define GRPO_REWARD_PLUGIN_ENTRY "grpo_reward_plugin_v1"
#define GRPO_REWARD_MESSAGE_SIZE 512

typedef struct grpo_str {
  const char* data; /* not NUL-terminated */
  size_t size;
} grpo_str;

typedef struct grpo_reward_item {
  grpo_str completion;
  grpo_str answer;
  grpo_str prompt;
  grpo_str task;
  size_t meta_count;
  const grpo_str* meta_keys;   /* meta_count entries, sorted by key */
  const grpo_str* meta_values; /* non-string JSON values arrive as compact JSON text */
} grpo_reward_item;

typedef struct grpo_reward_output {
  double score;
  int32_t is_error; /* nonzero: the item could not be judged; message says why */
  char message[GRPO_REWARD_MESSAGE_SIZE]; /* detail (or error), NUL-terminated */
} grpo_reward_output;

typedef struct grpo_reward_plugin {
  uint32_t abi_version;     /* GRPO_REWARD_PLUGIN_ABI_VERSION */
  uint32_t struct_size;     /* sizeof(grpo_reward_plugin) */
  const char* name;         /* short name, e.g. "keyword" */
  const char* description;  /* one line: what it checks and how it scores */
  /* Builds the plugin state from the rule's config (a JSON object text, "{}" when empty).
     Returns NULL on failure with a NUL-terminated message in error[0..error_size). */
  void* (*create)(const char* config_json, char* error, size_t error_size);
  void (*destroy)(void* state);
  /* Scores one item; returns 0 on success, nonzero when the item cannot be judged. */
  int (*score)(void* state, const grpo_reward_item* item, grpo_reward_output* out);
} grpo_reward_plugin;

typedef const grpo_reward_plugin* (*grpo_reward_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* GRPO_REWARD_PLUGIN_ABI_H_ */

/* The tool plugin C ABI, version 1: an environment for multi-turn rollouts (rollout/environment.h)
 * in a shared library. Stable: only plain C types cross it.
 *
 * A plugin is a shared library exporting one function,
 *
 *     const grpo_tool_plugin* grpo_tool_plugin_v1(void);
 *
 * that returns a pointer to a static table. The host (rollout/tool_plugin.h) loads the library
 * with dlopen inside a sandboxed worker process, as it does reward plugins
 * (docs/reward_plugins.md), checks abi_version and struct_size, calls create() once with the
 * recipe's tools.plugin_config as a JSON object text, then run() once per tool call, and
 * destroy() at exit.
 *
 * run() gets the call's body (the text between the call markers; UTF-8 as the model wrote it,
 * NOT NUL-terminated, valid only during the call) and the milliseconds it has before the host
 * kills the worker. It writes its answer, the text the model sees, into out->data (at most
 * out->capacity bytes) and sets out->size to the answer's full length: a size above capacity
 * means the answer was longer than the room, and the host marks it cut. Return 0 for an answer,
 * nonzero when the call failed (bad arguments, the tool's own error): the output is then the
 * error message, shown to the model as "error: MESSAGE".
 *
 * Rules for plugin authors (docs/tools.md has the guide):
 *  - run() is never called concurrently within one process; the host runs worker processes.
 *  - A crash, a hang past the deadline or memory above the limit kills only the worker: the
 *    model sees an "error: ..." answer and the next call starts a fresh worker. What the plugin
 *    prints to stdout/stderr goes to /dev/null.
 * Changing this struct in an incompatible way requires a new version number and entry name.
 */
#ifndef GRPO_ROLLOUT_TOOL_PLUGIN_ABI_H_
#define GRPO_ROLLOUT_TOOL_PLUGIN_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRPO_TOOL_PLUGIN_ABI_VERSION 1u
#define GRPO_TOOL_PLUGIN_ENTRY "grpo_tool_plugin_v1"

typedef struct grpo_tool_output {
  char* data;      /* capacity bytes, owned by the host */
  size_t capacity;
  size_t size;     /* set by run(): the answer's full length (above capacity: cut) */
} grpo_tool_output;

typedef struct grpo_tool_plugin {
  uint32_t abi_version;     /* GRPO_TOOL_PLUGIN_ABI_VERSION */
  uint32_t struct_size;     /* sizeof(grpo_tool_plugin) */
  const char* name;         /* the tool's name, e.g. "sort" (OpenAI function.name in exports) */
  const char* description;  /* one line: what the tool does */
  /* Builds the state from the config (a JSON object text, "{}" when empty). Returns NULL on
     failure with a NUL-terminated message in error[0..error_size). */
  void* (*create)(const char* config_json, char* error, size_t error_size);
  void (*destroy)(void* state);
  /* Runs one call; 0: out holds the answer, nonzero: out holds the error message. */
  int (*run)(void* state, const char* input, size_t input_size, int64_t deadline_ms, grpo_tool_output* out);
} grpo_tool_plugin;

typedef const grpo_tool_plugin* (*grpo_tool_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* GRPO_ROLLOUT_TOOL_PLUGIN_ABI_H_ */

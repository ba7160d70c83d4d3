// Standalone plugin worker binary (the `grpo` binary serves the same role through
// `grpo reward plugin-worker`).
#include "reward/plugin_worker.h"

int main(int argc, char** argv) { return grpo::reward::PluginWorkerMain(argc, argv); }

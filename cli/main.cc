// The single `grpo` binary. Subcommands and their contracts: ../shared/ARCHITECTURE.md, "CLI".
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/cluster_commands.h"
#include "cli/data_commands.h"
#include "cli/generate_command.h"
#include "cli/info_command.h"
#include "cli/model_commands.h"
#include "cli/reward_commands.h"
#include "cli/rollout_commands.h"
#include "cli/store_commands.h"
#include "cli/subcommand.h"
#include "cli/tokenizer_commands.h"
#include "cli/train_commands.h"

namespace grpo::cli {
namespace {

void AddAllSubcommands(CLI::App& app) {
  AddInitModelSubcommand(app);
  AddLogprobsSubcommand(app);
  AddGenerateSubcommand(app);
  AddTokenizeCommand(app);
  CLI::App* data = app.add_subcommand("data", "Datasets: synthetic task generation");
  AddDataGenCommand(*data);
  CLI::App* reward = app.add_subcommand("reward", "Rule-based rewards");
  AddRewardCommands(*reward);
  CLI::App* rollout = app.add_subcommand("rollout", "Rollout engine");
  AddRolloutCommands(*rollout);
  AddTrainCommands(app);
  AddExportSubcommand(app);
  AddInspectSubcommand(app);
  AddClusterCommands(app);
  AddInfoSubcommand(app);
  for (CLI::App* group : {data, reward, rollout}) group->require_subcommand(1);
}

int Main(int argc, char** argv) {
  // Under `bazel run //:grpo -- ...` relative paths mean the user's directory, not the runfiles.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd != '\0') {
    if (::chdir(wd) != 0) std::fprintf(stderr, "grpo: cannot change to %s\n", wd);
  }
  CLI::App app("grpo: GRPO reinforcement-learning post-training of language models", "grpo");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("grpo ") + kGrpoVersion);
  AddAllSubcommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CommandExit& e) {
    return e.code;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace
}  // namespace grpo::cli

int main(int argc, char** argv) { return grpo::cli::Main(argc, argv); }

#include "deploy/slurm_job.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/file.h"
#include "learner/recipe.h"

namespace grpo::deploy {
namespace {

std::string Runfile(const std::string& rel) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/" + rel;
}

// The golden scripts are what `grpo submit --dry-run` prints for the example recipes; a change
// to the template or the renderer must update them on purpose.
class GoldenTest : public testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, RenderMatchesGoldenScript) {
  absl::StatusOr<TrainRecipe> r = LoadRecipe(Runfile("deploy/examples/" + GetParam() + ".yaml"), {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  absl::StatusOr<SlurmJobSpec> spec = SlurmJobFromRecipe(*r, "/unused/grpo");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const std::string golden = grpo::ReadFile(Runfile("deploy/testdata/" + GetParam() + ".sbatch")).value_or("");
  ASSERT_FALSE(golden.empty());
  EXPECT_EQ(RenderSbatch(*spec), golden);
}

INSTANTIATE_TEST_SUITE_P(Examples, GoldenTest, testing::Values("dense-7b", "moe-v3"));

absl::StatusOr<SlurmJobSpec> FromYaml(const std::string& yaml, std::vector<std::string> sets = {}) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/recipe.yaml";
  std::ofstream(path) << yaml;
  GRPO_ASSIGN_OR_RETURN(TrainRecipe r, LoadRecipe(path, sets));
  return SlurmJobFromRecipe(r, "/opt/grpo");
}

const char kBase[] = R"(run: {name: t, output_dir: /runs}
tokenizer: {builtin: bytes-r1}
model: {init: {config: {model_type: llama, vocab_size: 261, hidden_size: 8, intermediate_size: 16,
        num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}}}
reward: {rules: [{type: format}]}
)";

TEST(SlurmJob, DefaultsAndLayout) {
  auto s = FromYaml(std::string(kBase) + "cluster: {rollout: {tasks: 3, nodes: 3, gpus_per_task: 2}}\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->job_dir, "/runs/t");
  EXPECT_EQ(s->run_dir, "/runs/t/t");
  EXPECT_EQ(s->grpo_bin, "/opt/grpo");
  EXPECT_EQ(s->learner.tasks, 1);
  EXPECT_EQ(s->reward.tasks, 1);
  EXPECT_EQ(s->TotalNodes(), 5);   // 1 learner + 3 rollout + 1 reward
  EXPECT_EQ(s->GpusPerNode(), 2);  // one 2-GPU rollout task per node
  EXPECT_EQ(s->rollout_model, "/runs/t/cluster/rollout-model");
  EXPECT_EQ(s->rollout_init_config, "/runs/t/cluster/model_config.json");
  EXPECT_EQ(s->rollout_tokenizer, "/runs/t/cluster/tokenizer");
  const std::string script = RenderSbatch(*s);
  EXPECT_NE(script.find("#SBATCH --nodes=5\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --gpus-per-node=2\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --requeue\n"), std::string::npos);
  EXPECT_NE(script.find("ROLLOUT_SRUN=(--nodes=3 --ntasks=3 --cpus-per-task=1 --gpus-per-task=2 --gpu-bind=per_task:2)"),
            std::string::npos);
  EXPECT_EQ(script.find("@SBATCH@"), std::string::npos);
  EXPECT_EQ(script.find("@SETTINGS@"), std::string::npos);
  EXPECT_EQ(script.rfind("#!/bin/bash\n", 0), 0u);
}

// The docs say every key of `cluster:` is optional, the section included: without it the job is
// one node whose learner embeds the rollout and reward roles (issue 18).
TEST(SlurmJob, NoClusterSectionIsOneNodeWithEveryRoleEmbedded) {
  auto s = FromYaml(kBase);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->learner.tasks, 1);
  EXPECT_EQ(s->rollout.tasks, 0);
  EXPECT_EQ(s->reward.tasks, 0);
  EXPECT_EQ(s->TotalNodes(), 1);
  EXPECT_EQ(s->GpusPerNode(), 0);
  EXPECT_EQ(s->job_dir, "/runs/t");
  EXPECT_EQ(s->rollout_init_config, "");  // no rollout server: no model to initialize for one
  const std::string script = RenderSbatch(*s);
  EXPECT_NE(script.find("#SBATCH --nodes=1\n"), std::string::npos);
  EXPECT_NE(script.find("GRPO_ROLLOUT_TASKS=0\nGRPO_REWARD_TASKS=0\n"), std::string::npos);
  EXPECT_NE(script.find("LEARNER_SRUN=(--nodes=1 --ntasks=1 --cpus-per-task=1)"), std::string::npos);

  // An empty section keeps the documented defaults: one rollout and one reward server.
  auto empty = FromYaml(std::string(kBase) + "cluster: {}\n");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->rollout.tasks, 1);
  EXPECT_EQ(empty->reward.tasks, 1);
  EXPECT_EQ(empty->TotalNodes(), 3);
}

TEST(SlurmJob, ColocateSharesNodesAndAddsGpus) {
  auto s = FromYaml(std::string(kBase) +
                    "cluster: {colocate: true, exclusive: false, learner: {gpus_per_task: 1},"
                    " rollout: {tasks: 2, gpus_per_task: 1}, reward: {tasks: 2}}\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->TotalNodes(), 1);
  EXPECT_EQ(s->GpusPerNode(), 3);
  const std::string script = RenderSbatch(*s);
  EXPECT_NE(script.find("--overlap"), std::string::npos);
  EXPECT_EQ(script.find("--exclusive"), std::string::npos);
}

TEST(SlurmJob, SetOverridesAndEnvironment) {
  auto s = FromYaml(std::string(kBase) + "cluster: {nccl: {socket_ifname: eth0, ib_timeout: 22}}\n",
                    {"cluster.reward.tasks=0", "cluster.env.OMP_NUM_THREADS=4", "cluster.rollout.args=--max-batch 8"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->reward.tasks, 0);
  EXPECT_EQ(s->reward.nodes, 0);
  EXPECT_EQ(s->TotalNodes(), 2);
  const std::string script = RenderSbatch(*s);
  EXPECT_NE(script.find("export NCCL_SOCKET_IFNAME=eth0\n"), std::string::npos);
  EXPECT_NE(script.find("export NCCL_IB_TIMEOUT=22\n"), std::string::npos);
  EXPECT_NE(script.find("export OMP_NUM_THREADS=4\n"), std::string::npos);
  EXPECT_NE(script.find("GRPO_ROLLOUT_ARGS='--max-batch 8'\n"), std::string::npos);
  EXPECT_NE(script.find("GRPO_BACKEND=cpu\n"), std::string::npos);  // the recipe's default
  EXPECT_NE(script.find("GRPO_REWARD_TASKS=0\n"), std::string::npos);
}

TEST(SlurmJob, RolloutServersGetTheRecipesToolCallThreads) {
  auto s = FromYaml(std::string(kBase) + "cluster: {rollout: {args: \"--max-batch 8\"}}\n",
                    {"tools.environment=calculator", "tools.call_threads=2"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_NE(RenderSbatch(*s).find("GRPO_ROLLOUT_ARGS='--tools-call-threads 2 --max-batch 8'\n"), std::string::npos);
  auto own = FromYaml(std::string(kBase) + "cluster: {rollout: {args: \"--tools-call-threads 0\"}}\n",
                      {"tools.environment=calculator", "tools.call_threads=2"});
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->rollout.args, "--tools-call-threads 0");  // the role's own flag wins
  auto none = FromYaml(std::string(kBase) + "cluster: {rollout: {tasks: 1}}\n");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->rollout.args, "");  // no tools: no flag
}

TEST(SlurmJob, RolloutServersGetTheRecipesBackend) {
  auto s = FromYaml(std::string(kBase) + "cluster: {nccl: {socket_ifname: eth0}}\n", {"backend=cuda"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->backend, "cuda");
  EXPECT_NE(RenderSbatch(*s).find("GRPO_BACKEND=cuda\n"), std::string::npos);
}

TEST(SlurmJob, ErrorsNameTheKey) {
  auto typo = FromYaml(std::string(kBase) + "cluster: {partitoin: gpu}\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().ToString().find("partitoin"), std::string::npos) << typo.status().ToString();

  auto nodes = FromYaml(std::string(kBase) + "cluster: {rollout: {tasks: 2, nodes: 3}}\n");
  ASSERT_FALSE(nodes.ok());
  EXPECT_NE(nodes.status().ToString().find("cluster.rollout.nodes"), std::string::npos) << nodes.status().ToString();

  // Data-parallel learner ranks: one per task (launch.sh gives each its rank).
  auto learner = FromYaml(std::string(kBase) + "cluster: {learner: {tasks: 2, nodes: 2}}\n");
  ASSERT_TRUE(learner.ok()) << learner.status().ToString();
  EXPECT_EQ(learner->learner.tasks, 2);
  EXPECT_EQ(learner->learner.nodes, 2);

  auto env = FromYaml(std::string(kBase) + "cluster: {env: {\"BAD-NAME\": 1}}\n");
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().ToString().find("environment variable"), std::string::npos) << env.status().ToString();
}

// A value rendered into the script must not be able to start a line of shell (issue: a newline
// in cluster.time ran `echo INJECTED` as part of the job).
TEST(SlurmJob, ControlCharactersInScriptTextAreRefused) {
  auto time = FromYaml(std::string(kBase) + "cluster: {time: \"1:00:00\\necho INJECTED\"}\n");
  ASSERT_FALSE(time.ok());
  EXPECT_NE(time.status().ToString().find("cluster.time contains the control character 0x0a"), std::string::npos)
      << time.status().ToString();

  auto partition = FromYaml(std::string(kBase) + "cluster: {partition: \"gpu\\recho x\"}\n");
  ASSERT_FALSE(partition.ok());
  EXPECT_NE(partition.status().ToString().find("cluster.partition"), std::string::npos);

  // The same class elsewhere: an #SBATCH extra, a role's arguments, an environment value.
  auto extra = FromYaml(std::string(kBase) + "cluster: {sbatch: [\"--reservation=r1\", \"--x\\ny\"]}\n");
  ASSERT_FALSE(extra.ok());
  EXPECT_NE(extra.status().ToString().find("cluster.sbatch[1]"), std::string::npos) << extra.status().ToString();
  auto args = FromYaml(std::string(kBase) + "cluster: {rollout: {args: \"--a\\tb\"}}\n");
  ASSERT_FALSE(args.ok());
  EXPECT_NE(args.status().ToString().find("cluster.rollout.args"), std::string::npos) << args.status().ToString();
  auto env = FromYaml(std::string(kBase) + "cluster: {env: {MY_VAR: \"a\\nb\"}}\n");
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().ToString().find("environment variable MY_VAR"), std::string::npos) << env.status().ToString();

  // Printable text, spaces and non-ASCII UTF-8 stay allowed.
  EXPECT_TRUE(FromYaml(std::string(kBase) + "cluster: {partition: \"gpu\", constraint: \"h100 & ib\", "
                                            "env: {NOTE: \"caf\u00e9\"}}\n").ok());
}

TEST(SlurmJob, ShellQuote) {
  EXPECT_EQ(ShellQuote("/a/b-c_d.e:1,2=3@4%5+6"), "/a/b-c_d.e:1,2=3@4%5+6");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's $HOME"), "'it'\\''s $HOME'");
}

}  // namespace
}  // namespace grpo::deploy

#include "store/trajectory_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "store/test_fixture.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) { return testing::FreshPath("trajectory_store_test_" + name); }

TEST(TrajectoryStoreTest, WriteAndReadBack) {
  const std::string dir = TempDir("rw");
  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE(testing::WriteDemoRun(**store).ok());

  auto runs = (*store)->ListRuns();
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].metadata.run_name(), "demo");
  EXPECT_EQ((*runs)[0].metadata.format_version(), kFormatVersion);
  EXPECT_EQ((*runs)[0].num_steps, 2u);
  EXPECT_EQ((*runs)[0].num_samples, 12u);
  EXPECT_EQ((*runs)[0].last_step, 1u);

  auto t = (*store)->GetSample("demo", 1, 0, 2);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->sample().token_ids_size(), 40);
  EXPECT_EQ(t->run_name(), "demo");
  EXPECT_EQ(t->dataset_row_id(), "row-2");  // copied from the prompt record
  auto p = (*store)->GetPrompt("", 1, 1);     // "" = the only run
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->prompt_text(), "Price of a café?");
  EXPECT_EQ((*store)->GetSample("demo", 5, 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->GetSample("nope", 0, 0, 0).status().code(), absl::StatusCode::kNotFound);

  // The store computed the summaries (no summary was given).
  auto steps = (*store)->ListSteps("demo");
  ASSERT_TRUE(steps.ok());
  ASSERT_EQ(steps->size(), 2u);
  const auto& s0 = (*steps)[0];
  EXPECT_EQ(s0.num_samples(), 6u);
  EXPECT_EQ(s0.num_prompts(), 2u);
  EXPECT_EQ(s0.num_reward_errors(), 1u);
  EXPECT_EQ(s0.num_truncated(), 1u);
  EXPECT_EQ(s0.num_aborted(), 1u);
  EXPECT_DOUBLE_EQ(s0.reward_mean(), (1.5 + 1.5 + 0.5 + 0 + 0) / 5);
  EXPECT_DOUBLE_EQ(s0.accuracy(), 2.0 / 5);
  EXPECT_DOUBLE_EQ(s0.pass_at_g(), 0.5);
}

TEST(TrajectoryStoreTest, StepIsWrittenOnceAndValidated) {
  const std::string dir = TempDir("once");
  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("r")).ok());
  EXPECT_EQ((*store)->CreateRun(testing::DemoRunMetadata("r")).code(), absl::StatusCode::kAlreadyExists);
  testing::SyntheticShape shape;
  StepRecords rec = testing::SyntheticStep(3, shape);
  ASSERT_TRUE((*store)->WriteStep("r", &rec).ok());
  rec = testing::SyntheticStep(3, shape);
  EXPECT_EQ((*store)->WriteStep("r", &rec).code(), absl::StatusCode::kAlreadyExists);

  StepRecords bad = testing::SyntheticStep(4, shape);
  bad.prompts.pop_back();
  EXPECT_EQ((*store)->WriteStep("r", &bad).code(), absl::StatusCode::kInvalidArgument);
  bad = testing::SyntheticStep(4, shape);
  bad.trajectories.push_back(bad.trajectories.front());
  EXPECT_EQ((*store)->WriteStep("r", &bad).code(), absl::StatusCode::kInvalidArgument);
  bad = testing::SyntheticStep(4, shape);
  bad.trajectories[0].set_group_id(999);
  EXPECT_EQ((*store)->WriteStep("r", &bad).code(), absl::StatusCode::kInvalidArgument);
  bad = testing::SyntheticStep(4, shape);
  bad.trajectories[0].set_run_name("other");
  EXPECT_EQ((*store)->WriteStep("r", &bad).code(), absl::StatusCode::kInvalidArgument);
  // Nothing of the rejected step 4 is stored.
  int n = 0;
  ASSERT_TRUE((*store)->ScanSamples("r", {}, [&](const auto&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 16);
}

TEST(TrajectoryStoreTest, DeleteStepsFromRollsARunBackAtomically) {
  const std::string dir = TempDir("rollback");
  testing::SyntheticShape shape;
  shape.tokens = 8;
  {
    auto store = TrajectoryStore::Open(dir);
    ASSERT_TRUE(store.ok());
    for (const char* run : {"r", "other"}) {
      ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata(run)).ok());
      for (uint64_t step = 0; step < 5; ++step) {
        StepRecords rec = testing::SyntheticStep(step, shape);
        ASSERT_TRUE((*store)->WriteStep(run, &rec).ok());
      }
    }
    auto removed = (*store)->DeleteStepsFrom("r", 2);
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(*removed, (std::vector<uint64_t>{2, 3, 4}));
    // Nothing left to remove: an empty list.
    auto again = (*store)->DeleteStepsFrom("r", 2);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->empty());
    EXPECT_EQ((*store)->DeleteStepsFrom("nope", 0).status().code(), absl::StatusCode::kNotFound);
    // The removed steps can be written again.
    StepRecords rec = testing::SyntheticStep(2, shape);
    EXPECT_TRUE((*store)->WriteStep("r", &rec).ok());
  }
  // After reopening (the deletion is durable): steps 0..2 of r, and every record of the other run.
  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok());
  auto r = (*store)->GetRun("r");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->num_steps, 3u);
  EXPECT_EQ(r->last_step, 2u);
  EXPECT_EQ((*store)->GetSample("r", 3, 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->GetPrompt("r", 4, 1).status().code(), absl::StatusCode::kNotFound);
  int64_t samples = 0;
  uint64_t last = 0;
  ASSERT_TRUE((*store)
                  ->ScanSamples("r", {}, [&](const grpo::v1::Trajectory& t) {
                    ++samples;
                    last = t.step();
                    return true;
                  })
                  .ok());
  EXPECT_EQ(samples, 3 * shape.prompts * shape.group_size);
  EXPECT_EQ(last, 2u);
  auto other = (*store)->GetRun("other");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->num_steps, 5u);
  EXPECT_TRUE((*store)->GetSample("other", 4, shape.prompts - 1, shape.group_size - 1).ok());
  store->reset();
  auto reader = TrajectoryStore::OpenReadOnly(dir);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->DeleteStepsFrom("r", 0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*reader)->GetRun("r")->num_steps, 3u);
}

TEST(TrajectoryStoreTest, QueriesByStepGroupRewardRuleAndVersion) {
  const std::string dir = TempDir("query");
  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(testing::WriteDemoRun(**store).ok());
  auto keys = [&](const SampleQuery& q) {
    std::vector<std::string> out;
    absl::Status s = (*store)->ScanSamples("demo", q, [&](const grpo::v1::Trajectory& t) {
      out.push_back(std::to_string(t.step()) + "/" + std::to_string(t.prompt_index()) + "/" +
                    std::to_string(t.sample_index()));
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  };
  using V = std::vector<std::string>;
  SampleQuery step1;
  step1.first_step = step1.last_step = 1;
  EXPECT_EQ(keys(step1).size(), 6u);
  SampleQuery group;
  group.prompt_index = 1;
  EXPECT_EQ(keys(group), (V{"0/1/0", "0/1/1", "0/1/2", "1/1/0", "1/1/1", "1/1/2"}));
  group.first_step = group.last_step = 0;
  EXPECT_EQ(keys(group), (V{"0/1/0", "0/1/1", "0/1/2"}));
  SampleQuery reward;
  reward.min_reward = 1.0;
  reward.max_reward = 1.4;
  EXPECT_EQ(keys(reward), (V{"1/0/1"}));
  SampleQuery rule;
  rule.rule = RuleOutcome{"format", 0.5, 0.5};
  EXPECT_EQ(keys(rule), (V{"1/1/1"}));
  SampleQuery version;
  version.weight_version = 0;
  EXPECT_EQ(keys(version).size(), 6u);
  int seen = 0;
  ASSERT_TRUE((*store)->ScanSamples("demo", {}, [&](const auto&) { return ++seen < 4; }).ok());
  EXPECT_EQ(seen, 4);

  std::vector<size_t> sizes;
  ASSERT_TRUE((*store)
                  ->ScanGroups("demo", {}, [&](const grpo::v1::PromptRecord& p, const auto& g) {
                    sizes.push_back(g.size());
                    EXPECT_EQ(p.prompt_index(), g.front().prompt_index());
                    return true;
                  })
                  .ok());
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 3, 3}));
}

TEST(TrajectoryStoreTest, ReadersFollowALiveWriter) {
  const std::string dir = TempDir("live");
  auto writer = TrajectoryStore::Open(dir);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->CreateRun(testing::DemoRunMetadata("r")).ok());
  testing::SyntheticShape shape;
  StepRecords rec = testing::SyntheticStep(0, shape);
  ASSERT_TRUE((*writer)->WriteStep("r", &rec).ok());

  // A second writer is refused while the first holds the store.
  EXPECT_FALSE(TrajectoryStore::Open(dir).ok());

  auto secondary = TrajectoryStore::OpenSecondary(dir, dir + ".secondary");
  ASSERT_TRUE(secondary.ok()) << secondary.status().ToString();
  auto read_only = TrajectoryStore::OpenReadOnly(dir);
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  EXPECT_EQ((*read_only)->GetRun("r")->num_steps, 1u);
  EXPECT_EQ((*secondary)->GetRun("r")->num_steps, 1u);
  EXPECT_EQ((*read_only)->CreateRun(testing::DemoRunMetadata("x")).code(), absl::StatusCode::kFailedPrecondition);

  rec = testing::SyntheticStep(1, shape);
  ASSERT_TRUE((*writer)->WriteStep("r", &rec).ok());
  ASSERT_TRUE((*secondary)->CatchUp().ok());
  EXPECT_EQ((*secondary)->GetRun("r")->num_steps, 2u);
  auto t = (*secondary)->GetSample("r", 1, 3, 3);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(testing::CheckSyntheticSample(*t, shape).ok());
}

TEST(TrajectoryStoreTest, ForeignAndMissingDatabasesGiveClearErrors) {
  EXPECT_EQ(TrajectoryStore::OpenReadOnly(TempDir("absent")).status().code(), absl::StatusCode::kNotFound);

  const std::string foreign = TempDir("foreign");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, foreign, &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete db;
  }
  for (auto st : {TrajectoryStore::OpenReadOnly(foreign).status(), TrajectoryStore::Open(foreign).status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("is not a grpo trajectory store"), std::string::npos) << st.ToString();
  }

  const std::string junk = TempDir("junk");
  fs::create_directories(junk);
  std::ofstream(junk + "/data.txt") << "hello";
  auto st = TrajectoryStore::Open(junk).status();
  EXPECT_NE(st.message().find("is not a grpo trajectory store"), std::string::npos) << st.ToString();

  // A store whose files are damaged: CURRENT points nowhere.
  const std::string broken = TempDir("broken");
  ASSERT_TRUE(TrajectoryStore::Open(broken).ok());
  std::ofstream(broken + "/CURRENT", std::ios::trunc) << "MANIFEST-999999\n";
  st = TrajectoryStore::OpenReadOnly(broken).status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(broken), std::string::npos) << st.ToString();
}

TEST(TrajectoryStoreTest, DamagedTableFileIsReportedAsCorruption) {
  const std::string dir = TempDir("damaged");
  {
    auto store = TrajectoryStore::Open(dir);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("r")).ok());
    testing::SyntheticShape shape;
    shape.tokens = 4096;
    StepRecords rec = testing::SyntheticStep(0, shape);
    ASSERT_TRUE((*store)->WriteStep("r", &rec).ok());
    ASSERT_TRUE((*store)->Flush().ok());
  }
  std::string biggest;
  uintmax_t size = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".sst" && e.file_size() > size) biggest = e.path(), size = e.file_size();
  }
  ASSERT_GT(size, 100000u);
  {
    std::fstream f(biggest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 3));
    f.write("garbage!garbage!", 16);
  }
  auto store = TrajectoryStore::OpenReadOnly(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  absl::Status s = (*store)->ScanSamples("r", {}, [](const auto&) { return true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find(dir), std::string::npos) << s.ToString();
}

TEST(TrajectoryStoreTest, RecordOfANewerFormatIsRejected) {
  const std::string dir = TempDir("newer");
  {
    auto store = TrajectoryStore::Open(dir);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE(testing::WriteDemoRun(**store).ok());
  }
  {
    // Overwrite one sample with a record claiming format_version 2, behind the store's back.
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : {"default", "runs", "prompts", "samples", "steps"}) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), dir, cfs, &handles, &db).ok());
    grpo::v1::Trajectory t;
    t.set_format_version(2);
    std::string key("\0\0\0\0" "\0\0\0\0\0\0\0\0" "\0\0\0\0" "\0\0\0\0", 20);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[3], key, t.SerializeAsString()).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto store = TrajectoryStore::OpenReadOnly(dir);
  ASSERT_TRUE(store.ok());
  absl::Status s = (*store)->ScanSamples("demo", {}, [](const auto&) { return true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("format_version 2, newer than the newest this build reads (1)"), std::string::npos)
      << s.ToString();
}

}  // namespace
}  // namespace grpo::store

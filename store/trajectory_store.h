// TrajectoryStore: the durable record of a GRPO run's samples, one RocksDB database per store
// directory (normally runs/<name>/store/).
//
// Contract:
//  * A store holds one or more runs (normally one). A run is created once with CreateRun; its
//    records are then written one training step at a time with WriteStep.
//  * WriteStep writes the step's prompts, trajectories and summary as ONE atomic RocksDB write
//    batch with the write-ahead log on. When it returns OK the step is durable as chosen by
//    Options::sync: with sync = false (default) it survives a crash of the process (SIGKILL,
//    abort) but not of the machine (power loss, kernel panic) - the WAL is in the OS page cache;
//    with sync = true the WAL is fsync'ed before returning and the step survives both. Either
//    way a step is never half-written: after any crash it is entirely present or absent. A step
//    is written at most once (AlreadyExists otherwise), unless DeleteStepsFrom removed it.
//  * DeleteStepsFrom(run, first) removes the steps >= first of a run, also as one atomic write:
//    a trainer resuming from the checkpoint of step `first` rolls back what the attempt that
//    did not reach its next checkpoint stored, then writes those steps again.
//  * A store has one writer at a time (RocksDB's LOCK file). Any number of readers may open it
//    while the writer runs: OpenReadOnly sees the state at open time; OpenSecondary follows
//    the writer with CatchUp(). Readers never modify the directory.
//  * Opening anything that is not a trajectory store fails with kInvalidArgument "... is not a
//    grpo trajectory store ..."; a store written by a newer format fails with
//    kFailedPrecondition naming both versions; damaged files give kCorruption.
//  * Scans stream with iterators: memory does not grow with the size of the store.
//  * A TrajectoryStore is safe to use from several threads (RocksDB is); WriteStep calls for one
//    run should come from one thread, in step order.
//  * A full disk, or any other failed write of RocksDB's (in the call or in a background flush
//    or compaction), is an error returned by the writing call, never a crash: the message names
//    the store directory, a full disk is kResourceExhausted ("... the disk is full ..."). RocksDB
//    then refuses every write (each returns the error) until it recovers by itself once space is
//    free again, or the store is reopened. Every step WriteStep acknowledged before stays stored
//    and is there when the store is reopened; the step whose WriteStep failed is entirely present
//    or absent. Opening the store on a full disk fails the same way. RocksDB's own log goes to
//    LOG in the directory (store/info_log.h: written so that a full disk cannot abort).
//
// Key layout and column families: docs/store.md.
#ifndef GRPO_STORE_TRAJECTORY_STORE_H_
#define GRPO_STORE_TRAJECTORY_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "proto/trajectory.pb.h"
#include "store/query.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace grpo::store {

// Newest layout major version this code reads and writes (store identity and every record).
inline constexpr uint32_t kFormatVersion = 1;

struct Options {
  // Create the store (directory, column families, identity record) when absent.
  bool create_if_missing = true;
  // fsync the WAL before WriteStep returns (survives power loss; slower). See the contract.
  bool sync = false;
  // How the writer computes a StepSummary when WriteStep is given none.
  CorrectnessSpec correctness;
  // The RocksDB environment the store's files go through; null: the local filesystem. Tests
  // pass one that simulates faults (store/full_disk_env.h). Must outlive the store.
  rocksdb::Env* env = nullptr;
};

// One training step's records, written atomically by WriteStep.
struct StepRecords {
  uint64_t step = 0;
  std::vector<grpo::v1::PromptRecord> prompts;     // one per group
  std::vector<grpo::v1::Trajectory> trajectories;  // every sample of the step
  // The trainer's summary; when absent the store computes one with SummarizeStep.
  std::optional<grpo::v1::StepSummary> summary;
};

// A run and how much of it is stored.
struct RunInfo {
  grpo::v1::RunMetadata metadata;
  uint64_t num_steps = 0;
  std::optional<uint64_t> last_step;
  uint64_t num_samples = 0;  // sum of the stored step summaries' num_samples
};

class TrajectoryStore {
 public:
  // The writer. Fails if another process holds the store open for writing.
  static absl::StatusOr<std::unique_ptr<TrajectoryStore>> Open(const std::string& dir, const Options& options = {});
  // A reader that sees the store as it was when opened.
  static absl::StatusOr<std::unique_ptr<TrajectoryStore>> OpenReadOnly(const std::string& dir);
  // A reader that can follow a live writer (CatchUp). `secondary_dir` is a scratch directory
  // of its own (RocksDB keeps its info log there); it is created if absent.
  static absl::StatusOr<std::unique_ptr<TrajectoryStore>> OpenSecondary(const std::string& dir,
                                                                const std::string& secondary_dir);

  ~TrajectoryStore();
  TrajectoryStore(const TrajectoryStore&) = delete;
  TrajectoryStore& operator=(const TrajectoryStore&) = delete;

  // --- writing (writer only) ---

  // Records a new run. format_version and created_at are filled when unset. AlreadyExists if a
  // run of that name is stored.
  absl::Status CreateRun(const grpo::v1::RunMetadata& metadata);
  // Writes one step atomically; see the contract. Fills format_version, run_name, step and
  // stored_at of the records where unset, and rejects records that disagree with `run` or
  // records->step, duplicate (prompt, sample) keys, trajectories without a PromptRecord or with
  // another group_id than it.
  absl::Status WriteStep(const std::string& run, StepRecords* records);

  // Writes the memtables out to table files and waits (e.g. at the end of a run). Not needed for
  // durability: the WAL already holds every written step, and the next open replays it.
  absl::Status Flush();

  // Removes every step >= `first_step` of `run` (its prompts, samples and summary) in one atomic
  // write batch with the WAL fsync'ed, so after any crash either all of them or none are gone.
  // Returns the removed steps in order (empty, and nothing written, when there are none). Readers
  // opened before keep seeing them; readers opened after do not.
  absl::StatusOr<std::vector<uint64_t>> DeleteStepsFrom(const std::string& run, uint64_t first_step);

  // --- reading (any instance) ---

  // Secondary instances: apply what the writer has written since. A no-op for the others.
  absl::Status CatchUp();

  absl::StatusOr<std::vector<RunInfo>> ListRuns() const;
  // The run named `run`; an empty name picks the only run (error if there are several).
  absl::StatusOr<RunInfo> GetRun(const std::string& run) const;
  // The stored summaries of a run's steps, in step order, optionally within [first, last].
  absl::StatusOr<std::vector<grpo::v1::StepSummary>> ListSteps(const std::string& run,
                                                       std::optional<uint64_t> first = {},
                                                       std::optional<uint64_t> last = {}) const;
  absl::StatusOr<grpo::v1::PromptRecord> GetPrompt(const std::string& run, uint64_t step, uint32_t prompt) const;
  absl::StatusOr<grpo::v1::Trajectory> GetSample(const std::string& run, uint64_t step, uint32_t prompt,
                                         uint32_t sample) const;

  // Streams a run's samples that match `query` in key order (step, prompt, sample) to `visit`;
  // `visit` returns false to stop early.
  absl::Status ScanSamples(const std::string& run, const SampleQuery& query,
                     const std::function<bool(const grpo::v1::Trajectory&)>& visit) const;
  // Streams whole groups: each call gets a group's PromptRecord and all of its samples (in
  // sample order, unfiltered), for groups with a step within the query's step bounds and
  // prompt_index. Per-sample filters of `query` are not applied (callers filter). The span is
  // valid only during the call (its messages are reused for the next group).
  absl::Status ScanGroups(const std::string& run, const SampleQuery& query,
                    const std::function<bool(const grpo::v1::PromptRecord&,
                                             std::span<const grpo::v1::Trajectory>)>& visit) const;

  const std::string& dir() const;

 private:
  struct Impl;
  explicit TrajectoryStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::store

#endif  // GRPO_STORE_TRAJECTORY_STORE_H_

#include "store/trajectory_store.h"

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "core/file.h"
#include "store/info_log.h"
#include "store/keys.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;
using grpo::v1::PromptRecord;
using grpo::v1::RunMetadata;
using grpo::v1::StepSummary;
using grpo::v1::Trajectory;

// Column families, in handle order. "default" holds only the identity record.
enum Cf { kDefault = 0, kRuns, kPrompts, kSamples, kSteps, kNumCfs };
const char* const kCfNames[kNumCfs] = {"default", "runs", "prompts", "samples", "steps"};

constexpr char kIdentityKey[] = "grpo.trajectory_store";
constexpr char kIdentityPrefix[] = "grpo trajectory store, format_version ";

enum class Mode { kWriter, kReadOnly, kSecondary };

absl::Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = what + ": " + s.ToString();
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsIOError()) return absl::UnknownError(msg);
  if (s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

const char* ReasonName(rocksdb::BackgroundErrorReason reason) {
  switch (reason) {
    case rocksdb::BackgroundErrorReason::kFlush:
    case rocksdb::BackgroundErrorReason::kFlushNoWAL:
      return "a flush to table files";
    case rocksdb::BackgroundErrorReason::kCompaction:
      return "a compaction";
    case rocksdb::BackgroundErrorReason::kWriteCallback:
      return "a write-ahead log write";
    case rocksdb::BackgroundErrorReason::kMemTable:
      return "a memtable insert";
    case rocksdb::BackgroundErrorReason::kManifestWrite:
    case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
      return "a MANIFEST write";
  }
  return "background work";
}

// Records RocksDB's background errors (a failed WAL write, flush or compaction: after one of
// these RocksDB refuses writes), so the store's errors can say what stopped it.
class BackgroundErrors : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* bg_error) override {
    absl::MutexLock lock(&mu_);
    last_ = std::string("RocksDB background error in ") + ReasonName(reason) + ": " + bg_error->ToString();
    no_space_ = no_space_ || bg_error->IsNoSpace();
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (!info.new_bg_error.ok()) return;
    absl::MutexLock lock(&mu_);  // RocksDB recovered (space was freed): writes work again
    last_.clear();
    no_space_ = false;
  }
  // The last unrecovered background error ("" if none) and whether any was a full disk.
  std::pair<std::string, bool> Get() const {
    absl::MutexLock lock(&mu_);
    return {last_, no_space_};
  }

 private:
  mutable absl::Mutex mu_;
  std::string last_ ABSL_GUARDED_BY(mu_);
  bool no_space_ ABSL_GUARDED_BY(mu_) = false;
};

// The error of a failed write to the store at `dir` (`what`: what was being written). A full
// disk is kResourceExhausted and says what to do; a background error that RocksDB reported
// before (`errors`: the open store's record; null while creating or opening) is named.
absl::Status WriteError(const rocksdb::Status& s, const std::string& dir, const std::string& what,
                        const BackgroundErrors* errors) {
  if (s.ok()) return absl::OkStatus();
  auto [background, background_no_space] = errors ? errors->Get() : std::pair<std::string, bool>();
  const std::string head = dir + ": " + what;
  std::string cause = s.ToString();
  if (!background.empty()) {
    cause = background.find(cause) != std::string::npos ? background : cause + "; " + background;
  }
  if (s.IsNoSpace() || background_no_space) {
    return absl::ResourceExhaustedError(
        head + ": the disk is full (" + cause + "). " +
        (errors ? "The store accepts no more writes; every step it stored before is kept. Free space, then "
                  "reopen the store (for a trainer: resume the run)"
                : "Free space, then try again"));
  }
  const absl::Status mapped = FromRocks(s, head);
  return background.empty() ? mapped : absl::Status(mapped.code(), head + ": " + cause);
}

absl::Status NotAStore(const std::string& dir, const std::string& why) {
  return absl::InvalidArgumentError(dir + " is not a grpo trajectory store (" + why + ")");
}

void SetNow(google::protobuf::Timestamp* ts) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  ts->set_seconds(tv.tv_sec);
  ts->set_nanos(static_cast<int32_t>(tv.tv_usec * 1000));
}

// Parses into an existing message, so repeated fields keep their capacity across a scan (a
// 4k-token MoE sample's routing is megabytes; reallocating it per sample costs page faults).
template <typename Msg>
absl::Status ParseInto(Msg* msg, const rocksdb::Slice& value, const char* what, const std::string& where) {
  if (!msg->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(where + ": " + what + " record does not parse");
  }
  if (msg->format_version() == 0) return absl::DataLossError(where + ": " + what + " record has no format_version");
  if (msg->format_version() > kFormatVersion) {
    return absl::FailedPreconditionError(where + ": " + what + " record has format_version " +
                                      std::to_string(msg->format_version()) +
                                      ", newer than the newest this build reads (" + std::to_string(kFormatVersion) +
                                      ")");
  }
  return absl::OkStatus();
}

template <typename Msg>
absl::StatusOr<Msg> ParseRecord(const rocksdb::Slice& value, const char* what, const std::string& where) {
  Msg msg;
  GRPO_RETURN_IF_ERROR(ParseInto(&msg, value, what, where));
  return msg;
}

std::string KeyName(const std::string& run, uint64_t step, int64_t prompt = -1, int64_t sample = -1) {
  std::string s = "run '" + run + "' step " + std::to_string(step);
  if (prompt >= 0) s += " prompt " + std::to_string(prompt);
  if (sample >= 0) s += " sample " + std::to_string(sample);
  return s;
}

rocksdb::ColumnFamilyOptions CfOptions(int cf) {
  rocksdb::ColumnFamilyOptions o;
  o.compression = rocksdb::kLZ4Compression;
  if (cf == kSamples) {
    // Samples are large (a 4k-token sample with logprobs is ~40 KB, with MoE routing MBs):
    // big memtables and files keep flushes and compactions few.
    o.write_buffer_size = 128 << 20;
    o.max_write_buffer_number = 3;
    o.target_file_size_base = 128 << 20;
    o.max_bytes_for_level_base = 1024ull << 20;
  } else {
    o.write_buffer_size = 8 << 20;
  }
  return o;
}

std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors() {
  std::vector<rocksdb::ColumnFamilyDescriptor> d;
  for (int i = 0; i < kNumCfs; ++i) d.emplace_back(kCfNames[i], CfOptions(i));
  return d;
}

}  // namespace

struct TrajectoryStore::Impl {
  std::string dir;
  Mode mode = Mode::kWriter;
  Options options;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  // The writer's record of RocksDB's background errors (null for readers).
  std::shared_ptr<BackgroundErrors> errors;
  // Serializes CreateRun: the name check and the id allocation read the 'runs' column family,
  // then write it.
  absl::Mutex runs_mu;

  // Adds a run under the next free id; AlreadyExists when its name is taken.
  absl::Status AddRun(const RunMetadata& metadata) ABSL_EXCLUSIVE_LOCKS_REQUIRED(runs_mu);

  ~Impl() {
    if (!db) return;
    for (auto* h : cfs) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();
  }

  absl::Status CheckIdentity() {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cfs[kDefault], kIdentityKey, &value);
    if (s.IsNotFound()) return NotAStore(dir, "no identity record");
    GRPO_RETURN_IF_ERROR(FromRocks(s, dir));
    const std::string prefix = kIdentityPrefix;
    if (value.compare(0, prefix.size(), prefix) != 0) return NotAStore(dir, "foreign identity record");
    uint32_t version = static_cast<uint32_t>(std::strtoul(value.c_str() + prefix.size(), nullptr, 10));
    if (version == 0) return NotAStore(dir, "identity record without a version");
    if (version > kFormatVersion) {
      return absl::FailedPreconditionError(dir + ": trajectory store format_version " + std::to_string(version) +
                                        " is newer than the newest this build reads (" +
                                        std::to_string(kFormatVersion) + ")");
    }
    return absl::OkStatus();
  }

  // Looks up a run's id and metadata by name; empty name picks the only run.
  absl::StatusOr<std::pair<uint32_t, RunMetadata>> ResolveRun(const std::string& run) const {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs[kRuns]));
    std::vector<std::pair<uint32_t, RunMetadata>> all;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto id = DecodeRunKey(it->key().ToStringView());
      if (!id) return absl::DataLossError(dir + ": malformed key in column family 'runs'");
      GRPO_ASSIGN_OR_RETURN(RunMetadata m, ParseRecord<RunMetadata>(it->value(), "run", dir));
      if (!run.empty() && m.run_name() == run) return std::make_pair(*id, std::move(m));
      all.emplace_back(*id, std::move(m));
    }
    GRPO_RETURN_IF_ERROR(FromRocks(it->status(), dir));
    if (run.empty() && all.size() == 1) return std::move(all.front());
    std::string names;
    for (const auto& [id, m] : all) names += (names.empty() ? "" : ", ") + m.run_name();
    if (run.empty()) {
      if (all.empty()) return absl::NotFoundError(dir + ": the store holds no runs");
      return absl::InvalidArgumentError(dir + ": the store holds several runs (" + names + "); name one");
    }
    return absl::NotFoundError(dir + ": no run named '" + run + "' (runs: " + (names.empty() ? "none" : names) + ")");
  }

  // Iterates a run's samples within a query's step bounds, skipping other prompts by seeking.
  absl::Status IterateSamples(uint32_t run_id, const std::string& run, const SampleQuery& q,
                        const std::function<absl::Status(const SampleKey&, const rocksdb::Slice&, bool*)>& fn) const;

  absl::Status Get(Cf cf, const std::string& key, std::string* value, const std::string& what) const {
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cfs[cf], key, value);
    if (s.IsNotFound()) return absl::NotFoundError(dir + ": no " + what);
    return FromRocks(s, dir + ": " + what);
  }
};

TrajectoryStore::TrajectoryStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrajectoryStore::~TrajectoryStore() = default;
const std::string& TrajectoryStore::dir() const { return impl_->dir; }

namespace {

// Checks that `dir` holds a RocksDB database with our column families. `exists` tells whether
// there is a database at all (false: absent or empty directory).
absl::Status ProbeDatabase(const std::string& dir, bool* exists) {
  std::error_code ec;
  *exists = false;
  if (!fs::exists(dir, ec)) return absl::OkStatus();
  if (!fs::is_directory(dir, ec)) return NotAStore(dir, "not a directory");
  if (!fs::exists(fs::path(dir) / "CURRENT", ec)) {
    if (fs::is_empty(dir, ec)) return absl::OkStatus();
    return NotAStore(dir, "no RocksDB database in it");
  }
  *exists = true;
  std::vector<std::string> names;
  GRPO_RETURN_IF_ERROR(FromRocks(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names), dir));
  std::set<std::string> have(names.begin(), names.end());
  for (const char* cf : kCfNames) {
    if (!have.count(cf)) {
      return NotAStore(dir, std::string("a RocksDB database without column family '") + cf + "'");
    }
  }
  return absl::OkStatus();
}

// Runs a reader's open, retrying when a file vanished under it: a live writer deletes WAL and
// table files as it flushes and compacts, between the reader's listing and its opening them.
rocksdb::Status OpenReaderWithRetry(const std::function<rocksdb::Status()>& open) {
  rocksdb::Status s;
  for (int attempt = 0; attempt < 10; ++attempt) {
    s = open();
    if (s.ok() || !s.IsIOError()) return s;
    absl::SleepFor(absl::Milliseconds(10 * (attempt + 1)));
  }
  return s;
}

// `log_dir`: where RocksDB's info log goes (LOG, store/info_log.h); empty for none (readers
// that must not write to the store directory). `env` null: the local filesystem.
rocksdb::DBOptions BaseDbOptions(rocksdb::Env* env, const std::string& log_dir) {
  rocksdb::DBOptions o;
  if (env != nullptr) o.env = env;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 3;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Never RocksDB's default info log: a full disk aborts it (store/info_log.h).
  if (!log_dir.empty()) o.info_log = NewInfoLog(o.env, log_dir, o.info_log_level);
  o.max_total_wal_size = 512ull << 20;
  return o;
}

}  // namespace

namespace {

// Creates a store atomically: built complete (column families and identity record) in a
// sibling directory, then renamed into place, so a crash during creation never leaves a
// directory that readers would take for a foreign database.
absl::Status CreateStore(const std::string& dir, rocksdb::Env* env) {
  const fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  const std::string tmp = (target.parent_path() / ("." + target.filename().string() + ".creating-" +
                                                   std::to_string(getpid()))).string();
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);  // for the info log, created before the database
  rocksdb::DBOptions o = BaseDbOptions(env, tmp);
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, tmp, Descriptors(), &handles, &raw);
  if (s.ok()) {
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->Put(wo, handles[kDefault], kIdentityKey, kIdentityPrefix + std::to_string(kFormatVersion));
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    rocksdb::Status closed = db->Close();
    if (s.ok()) s = closed;
  }
  if (!s.ok()) {
    fs::remove_all(tmp, ec);  // a half-built store would only take space (the disk may be full)
    return WriteError(s, dir, "creating the trajectory store (in " + tmp + ")", nullptr);
  }
  // rename(2) replaces an empty directory; a non-empty one was rejected by ProbeDatabase.
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    absl::Status err = grpo::ErrnoError("creating trajectory store " + dir, errno);
    fs::remove_all(tmp, ec);
    return err;
  }
  return SyncDirectory(target.parent_path().string());  // the new entry is durable
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrajectoryStore>> TrajectoryStore::Open(const std::string& dir, const Options& options) {
  bool exists = false;
  GRPO_RETURN_IF_ERROR(ProbeDatabase(dir, &exists));
  if (!exists && !options.create_if_missing) return absl::NotFoundError("no trajectory store at " + dir);
  if (!exists) GRPO_RETURN_IF_ERROR(CreateStore(dir, options.env));
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->mode = Mode::kWriter;
  impl->options = options;
  impl->errors = std::make_shared<BackgroundErrors>();
  rocksdb::DBOptions o = BaseDbOptions(options.env, dir);
  o.listeners.push_back(impl->errors);
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, Descriptors(), &impl->cfs, &db);
  if (!s.ok()) {
    // E.g. a full disk: replaying the write-ahead log writes table files.
    if (s.IsNoSpace()) return WriteError(s, dir, "opening the trajectory store", nullptr);
    return FromRocks(s, "opening trajectory store " + dir);
  }
  impl->db.reset(db);
  GRPO_RETURN_IF_ERROR(impl->CheckIdentity());
  return std::unique_ptr<TrajectoryStore>(new TrajectoryStore(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<TrajectoryStore>> TrajectoryStore::OpenReadOnly(const std::string& dir) {
  bool exists = false;
  GRPO_RETURN_IF_ERROR(ProbeDatabase(dir, &exists));
  if (!exists) return absl::NotFoundError("no trajectory store at " + dir);
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->mode = Mode::kReadOnly;
  rocksdb::DBOptions o = BaseDbOptions(nullptr, "");  // RocksDB logs nothing for read-only opens
  // Open every table file now: a live writer's compactions may delete files later, and open
  // descriptors keep them readable.
  o.max_open_files = -1;
  rocksdb::DB* db = nullptr;
  GRPO_RETURN_IF_ERROR(FromRocks(OpenReaderWithRetry([&] {
                                   impl->cfs.clear();
                                   return rocksdb::DB::OpenForReadOnly(o, dir, Descriptors(), &impl->cfs, &db);
                                 }),
                                 "opening " + dir));
  impl->db.reset(db);
  GRPO_RETURN_IF_ERROR(impl->CheckIdentity());
  return std::unique_ptr<TrajectoryStore>(new TrajectoryStore(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<TrajectoryStore>> TrajectoryStore::OpenSecondary(const std::string& dir,
                                                                        const std::string& secondary_dir) {
  bool exists = false;
  GRPO_RETURN_IF_ERROR(ProbeDatabase(dir, &exists));
  if (!exists) return absl::NotFoundError("no trajectory store at " + dir);
  std::error_code ec;
  fs::create_directories(secondary_dir, ec);
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->mode = Mode::kSecondary;
  rocksdb::DBOptions o = BaseDbOptions(nullptr, secondary_dir);
  o.max_open_files = -1;  // required by secondary instances
  rocksdb::DB* db = nullptr;
  GRPO_RETURN_IF_ERROR(FromRocks(OpenReaderWithRetry([&] {
                                   impl->cfs.clear();
                                   return rocksdb::DB::OpenAsSecondary(o, dir, secondary_dir, Descriptors(),
                                                                       &impl->cfs, &db);
                                 }),
                                 "opening " + dir));
  impl->db.reset(db);
  GRPO_RETURN_IF_ERROR(impl->CheckIdentity());
  return std::unique_ptr<TrajectoryStore>(new TrajectoryStore(std::move(impl)));
}

absl::Status TrajectoryStore::CatchUp() {
  if (impl_->mode != Mode::kSecondary) return absl::OkStatus();
  return FromRocks(impl_->db->TryCatchUpWithPrimary(), impl_->dir + ": catching up with the writer");
}

absl::Status TrajectoryStore::CreateRun(const RunMetadata& metadata) {
  if (impl_->mode != Mode::kWriter) return absl::FailedPreconditionError(impl_->dir + ": opened read-only");
  if (metadata.run_name().empty()) return absl::InvalidArgumentError("CreateRun: empty run_name");
  if (metadata.format_version() > kFormatVersion) {
    return absl::InvalidArgumentError("CreateRun: format_version " + std::to_string(metadata.format_version()) +
                                   " is newer than " + std::to_string(kFormatVersion));
  }
  absl::MutexLock lock(&impl_->runs_mu);
  return impl_->AddRun(metadata);
}

absl::Status TrajectoryStore::Impl::AddRun(const RunMetadata& metadata) {
  uint32_t next_id = 0;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs[kRuns]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto id = DecodeRunKey(it->key().ToStringView());
    if (!id) return absl::DataLossError(dir + ": malformed key in column family 'runs'");
    GRPO_ASSIGN_OR_RETURN(RunMetadata m, ParseRecord<RunMetadata>(it->value(), "run", dir));
    if (m.run_name() == metadata.run_name()) {
      return absl::AlreadyExistsError(dir + ": run '" + m.run_name() + "' already exists");
    }
    next_id = *id + 1;
  }
  GRPO_RETURN_IF_ERROR(FromRocks(it->status(), dir));
  RunMetadata m = metadata;
  m.set_format_version(kFormatVersion);
  if (!m.has_created_at()) SetNow(m.mutable_created_at());
  rocksdb::WriteOptions wo;
  wo.sync = options.sync;
  return WriteError(db->Put(wo, cfs[kRuns], RunKey(next_id), m.SerializeAsString()), dir,
                    "writing run '" + m.run_name() + "'", errors.get());
}

absl::Status TrajectoryStore::WriteStep(const std::string& run, StepRecords* records) {
  Impl& im = *impl_;
  if (im.mode != Mode::kWriter) return absl::FailedPreconditionError(im.dir + ": opened read-only");
  GRPO_ASSIGN_OR_RETURN(auto resolved, im.ResolveRun(run));
  const uint32_t run_id = resolved.first;
  const std::string& name = resolved.second.run_name();
  const uint64_t step = records->step;
  const std::string where = KeyName(name, step);

  std::string existing;
  rocksdb::Status s = im.db->Get(rocksdb::ReadOptions(), im.cfs[kSteps], StepKey(run_id, step), &existing);
  if (s.ok()) return absl::AlreadyExistsError(im.dir + ": " + where + " is already stored");
  if (!s.IsNotFound()) return FromRocks(s, im.dir);

  // Checks a record's identifying fields, filling the unset ones.
  auto fill = [&](auto* rec, const char* what) -> absl::Status {
    if (rec->format_version() == 0) rec->set_format_version(kFormatVersion);
    if (rec->format_version() > kFormatVersion) {
      return absl::InvalidArgumentError(where + ": " + what + " has format_version " +
                                     std::to_string(rec->format_version()));
    }
    if (rec->run_name().empty()) rec->set_run_name(name);
    if (rec->run_name() != name) {
      return absl::InvalidArgumentError(where + ": " + what + " names run '" + rec->run_name() + "'");
    }
    if (rec->step() == 0) rec->set_step(step);
    if (rec->step() != step) {
      return absl::InvalidArgumentError(where + ": " + what + " is for step " + std::to_string(rec->step()));
    }
    return absl::OkStatus();
  };

  // Reserve the batch once: appending megabyte values to a growing one copies them repeatedly.
  size_t reserve = 4096;
  for (const PromptRecord& p : records->prompts) reserve += p.ByteSizeLong() + 64;
  for (const Trajectory& t : records->trajectories) reserve += t.ByteSizeLong() + 64;
  rocksdb::WriteBatch batch(reserve);
  std::map<uint32_t, const PromptRecord*> prompts;
  std::string buf;
  for (PromptRecord& p : records->prompts) {
    GRPO_RETURN_IF_ERROR(fill(&p, "a prompt record"));
    if (!prompts.emplace(p.prompt_index(), &p).second) {
      return absl::InvalidArgumentError(where + ": two prompt records for prompt " + std::to_string(p.prompt_index()));
    }
    buf.clear();
    p.SerializeToString(&buf);
    batch.Put(im.cfs[kPrompts], PromptKey(run_id, step, p.prompt_index()), buf);
  }
  google::protobuf::Timestamp now;
  SetNow(&now);
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (Trajectory& t : records->trajectories) {
    GRPO_RETURN_IF_ERROR(fill(&t, "a trajectory"));
    auto prompt = prompts.find(t.prompt_index());
    if (prompt == prompts.end()) {
      return absl::InvalidArgumentError(where + ": trajectory of prompt " + std::to_string(t.prompt_index()) +
                                     " has no prompt record");
    }
    if (!seen.emplace(t.prompt_index(), t.sample_index()).second) {
      return absl::InvalidArgumentError(KeyName(name, step, t.prompt_index(), t.sample_index()) + " appears twice");
    }
    if (t.group_id() != prompt->second->group_id()) {
      return absl::InvalidArgumentError(KeyName(name, step, t.prompt_index(), t.sample_index()) + " has group_id " +
                                     std::to_string(t.group_id()) + " but its prompt record has " +
                                     std::to_string(prompt->second->group_id()));
    }
    if (t.dataset_row_id().empty()) t.set_dataset_row_id(prompt->second->dataset_row_id());
    if (!t.has_stored_at()) *t.mutable_stored_at() = now;
    buf.resize(t.ByteSizeLong());
    t.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(buf.data()));
    batch.Put(im.cfs[kSamples], SampleKeyString({run_id, step, t.prompt_index(), t.sample_index()}), buf);
  }
  if (!records->summary) {
    records->summary = SummarizeStep(name, step, records->trajectories, im.options.correctness);
  }
  GRPO_RETURN_IF_ERROR(fill(&*records->summary, "the step summary"));
  if (!records->summary->has_finished_at()) *records->summary->mutable_finished_at() = now;
  batch.Put(im.cfs[kSteps], StepKey(run_id, step), records->summary->SerializeAsString());

  rocksdb::WriteOptions wo;
  wo.sync = im.options.sync;
  wo.disableWAL = false;
  return WriteError(im.db->Write(wo, &batch), im.dir, "writing " + where, im.errors.get());
}

absl::Status TrajectoryStore::Flush() {
  if (impl_->mode != Mode::kWriter) return absl::FailedPreconditionError(impl_->dir + ": opened read-only");
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return WriteError(impl_->db->Flush(fo, impl_->cfs), impl_->dir, "flush", impl_->errors.get());
}

absl::StatusOr<std::vector<uint64_t>> TrajectoryStore::DeleteStepsFrom(const std::string& run, uint64_t first_step) {
  Impl& im = *impl_;
  if (im.mode != Mode::kWriter) return absl::FailedPreconditionError(im.dir + ": opened read-only");
  GRPO_ASSIGN_OR_RETURN(auto resolved, im.ResolveRun(run));
  const uint32_t run_id = resolved.first;
  const std::string& name = resolved.second.run_name();
  GRPO_ASSIGN_OR_RETURN(std::vector<StepSummary> steps, ListSteps(name, first_step));
  std::vector<uint64_t> removed;
  for (const StepSummary& s : steps) removed.push_back(s.step());
  if (removed.empty()) return removed;
  // Every key of the run's steps >= first_step, in each column family, is in
  // [StepKey(run, first_step), the successor of the run's prefix): one range deletion each.
  const std::string begin = StepKey(run_id, first_step);
  const std::string end = PrefixSuccessor(RunKey(run_id));
  if (end.empty()) return absl::InternalError(im.dir + ": run id " + std::to_string(run_id) + " has no key range end");
  rocksdb::WriteBatch batch;
  for (Cf cf : {kPrompts, kSamples, kSteps}) {
    GRPO_RETURN_IF_ERROR(FromRocks(batch.DeleteRange(im.cfs[cf], begin, end), im.dir + ": deleting steps"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  GRPO_RETURN_IF_ERROR(WriteError(im.db->Write(wo, &batch), im.dir,
                                  "deleting " + KeyName(name, first_step) + " and after", im.errors.get()));
  return removed;
}

absl::StatusOr<std::vector<RunInfo>> TrajectoryStore::ListRuns() const {
  std::vector<std::string> names;
  {
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cfs[kRuns]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      GRPO_ASSIGN_OR_RETURN(RunMetadata m, ParseRecord<RunMetadata>(it->value(), "run", impl_->dir));
      names.push_back(m.run_name());
    }
    GRPO_RETURN_IF_ERROR(FromRocks(it->status(), impl_->dir));
  }
  std::vector<RunInfo> runs;
  for (const std::string& n : names) {
    GRPO_ASSIGN_OR_RETURN(RunInfo info, GetRun(n));
    runs.push_back(std::move(info));
  }
  return runs;
}

absl::StatusOr<RunInfo> TrajectoryStore::GetRun(const std::string& run) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  RunInfo info;
  info.metadata = std::move(resolved.second);
  GRPO_ASSIGN_OR_RETURN(auto steps, ListSteps(info.metadata.run_name()));
  info.num_steps = steps.size();
  for (const StepSummary& s : steps) info.num_samples += s.num_samples();
  if (!steps.empty()) info.last_step = steps.back().step();
  return info;
}

absl::StatusOr<std::vector<StepSummary>> TrajectoryStore::ListSteps(const std::string& run, std::optional<uint64_t> first,
                                                            std::optional<uint64_t> last) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  const uint32_t id = resolved.first;
  std::string upper = last ? PrefixSuccessor(StepKey(id, *last)) : PrefixSuccessor(RunKey(id));
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->cfs[kSteps]));
  std::vector<StepSummary> steps;
  for (it->Seek(StepKey(id, first.value_or(0))); it->Valid(); it->Next()) {
    auto key = DecodeStepKey(it->key().ToStringView());
    if (!key) return absl::DataLossError(impl_->dir + ": malformed key in column family 'steps'");
    GRPO_ASSIGN_OR_RETURN(StepSummary s, ParseRecord<StepSummary>(it->value(), "step summary",
                                                                  impl_->dir + ": " + KeyName(resolved.second.run_name(), key->second)));
    steps.push_back(std::move(s));
  }
  GRPO_RETURN_IF_ERROR(FromRocks(it->status(), impl_->dir));
  return steps;
}

absl::StatusOr<PromptRecord> TrajectoryStore::GetPrompt(const std::string& run, uint64_t step, uint32_t prompt) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  const std::string where = KeyName(resolved.second.run_name(), step, prompt);
  std::string value;
  GRPO_RETURN_IF_ERROR(impl_->Get(kPrompts, PromptKey(resolved.first, step, prompt), &value, where));
  return ParseRecord<PromptRecord>(value, "prompt", impl_->dir + ": " + where);
}

absl::StatusOr<Trajectory> TrajectoryStore::GetSample(const std::string& run, uint64_t step, uint32_t prompt,
                                              uint32_t sample) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  const std::string where = KeyName(resolved.second.run_name(), step, prompt, sample);
  std::string value;
  GRPO_RETURN_IF_ERROR(impl_->Get(kSamples, SampleKeyString({resolved.first, step, prompt, sample}), &value, where));
  return ParseRecord<Trajectory>(value, "trajectory", impl_->dir + ": " + where);
}

absl::Status TrajectoryStore::Impl::IterateSamples(
    uint32_t run_id, const std::string& run, const SampleQuery& q,
    const std::function<absl::Status(const SampleKey&, const rocksdb::Slice&, bool*)>& fn) const {
  const Impl& im = *this;
  std::string upper = q.last_step ? PrefixSuccessor(StepKey(run_id, *q.last_step)) : PrefixSuccessor(RunKey(run_id));
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.fill_cache = false;
  ro.readahead_size = 4 << 20;
  std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(ro, im.cfs[kSamples]));
  uint64_t first = q.first_step.value_or(0);
  it->Seek(q.prompt_index ? PromptKey(run_id, first, *q.prompt_index) : StepKey(run_id, first));
  while (it->Valid()) {
    auto key = DecodeSampleKey(it->key().ToStringView());
    if (!key) return absl::DataLossError(im.dir + ": malformed key in column family 'samples'");
    if (q.prompt_index && key->prompt_index != *q.prompt_index) {
      if (key->prompt_index < *q.prompt_index) {
        it->Seek(PromptKey(run_id, key->step, *q.prompt_index));
      } else if (key->step == UINT64_MAX) {
        break;
      } else {
        it->Seek(PromptKey(run_id, key->step + 1, *q.prompt_index));
      }
      continue;
    }
    bool keep_going = true;
    GRPO_RETURN_IF_ERROR(fn(*key, it->value(), &keep_going));
    if (!keep_going) return absl::OkStatus();
    it->Next();
  }
  return FromRocks(it->status(), im.dir + ": scanning samples of run '" + run + "'");
}

absl::Status TrajectoryStore::ScanSamples(const std::string& run, const SampleQuery& query,
                                    const std::function<bool(const Trajectory&)>& visit) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  const std::string& name = resolved.second.run_name();
  Trajectory t;
  return impl_->IterateSamples(resolved.first, name, query,
                               [&](const SampleKey& k, const rocksdb::Slice& v, bool* more) -> absl::Status {
                                 GRPO_RETURN_IF_ERROR(ParseInto(
                                     &t, v, "trajectory",
                                     impl_->dir + ": " + KeyName(name, k.step, k.prompt_index, k.sample_index)));
                                 if (Matches(t, query)) *more = visit(t);
                                 return absl::OkStatus();
                               });
}

absl::Status TrajectoryStore::ScanGroups(
    const std::string& run, const SampleQuery& query,
    const std::function<bool(const PromptRecord&, std::span<const Trajectory>)>& visit) const {
  GRPO_ASSIGN_OR_RETURN(auto resolved, impl_->ResolveRun(run));
  const uint32_t id = resolved.first;
  const std::string& name = resolved.second.run_name();
  std::vector<Trajectory> pool;  // reused across groups; the first `size` entries are the group
  size_t size = 0;
  std::optional<SampleKey> group_key;
  bool stopped = false;
  auto flush = [&]() -> absl::Status {
    if (size == 0) return absl::OkStatus();
    std::string value;
    const std::string where = KeyName(name, group_key->step, group_key->prompt_index);
    absl::Status s = impl_->Get(kPrompts, PromptKey(id, group_key->step, group_key->prompt_index), &value, where);
    if (s.code() == absl::StatusCode::kNotFound) {
      return absl::DataLossError(impl_->dir + ": " + where + " has samples but no prompt record");
    }
    GRPO_RETURN_IF_ERROR(s);
    GRPO_ASSIGN_OR_RETURN(PromptRecord p, ParseRecord<PromptRecord>(value, "prompt", impl_->dir + ": " + where));
    stopped = !visit(p, std::span<const Trajectory>(pool.data(), size));
    size = 0;
    return absl::OkStatus();
  };
  GRPO_RETURN_IF_ERROR(impl_->IterateSamples(
      id, name, query, [&](const SampleKey& k, const rocksdb::Slice& v, bool* more) -> absl::Status {
        if (group_key && (group_key->step != k.step || group_key->prompt_index != k.prompt_index)) {
          GRPO_RETURN_IF_ERROR(flush());
          if (stopped) {
            *more = false;
            return absl::OkStatus();
          }
        }
        group_key = k;
        if (size == pool.size()) pool.emplace_back();
        GRPO_RETURN_IF_ERROR(ParseInto(&pool[size], v, "trajectory",
                                       impl_->dir + ": " + KeyName(name, k.step, k.prompt_index, k.sample_index)));
        ++size;
        return absl::OkStatus();
      }));
  if (!stopped) GRPO_RETURN_IF_ERROR(flush());
  return absl::OkStatus();
}

}  // namespace grpo::store

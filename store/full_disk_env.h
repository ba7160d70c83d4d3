// Test-only: a RocksDB Env over the local filesystem whose disk can be made to "fill up", to
// test what the store does on a full disk without root, a loop device or filling a real one.
//
// Contract:
//  * Every file RocksDB (or the store's info log) writes through env() draws on one byte budget,
//    unlimited at first. An append that does not fit writes the bytes that do and fails with
//    IOStatus::NoSpace marked retryable - exactly what RocksDB's POSIX Env returns for ENOSPC -
//    as does every later append while the budget is spent. GetFreeSpace reports 0 bytes then.
//  * Everything else (reads, renames, syncs, deletions) goes to the real filesystem.
//  * Thread-safe. The object must outlive every database opened with env().
#ifndef GRPO_STORE_FULL_DISK_ENV_H_
#define GRPO_STORE_FULL_DISK_ENV_H_

#include <rocksdb/env.h>

#include <cstdint>
#include <memory>

namespace grpo::store::testing {

class FullDiskEnv {
 public:
  FullDiskEnv();
  ~FullDiskEnv();
  FullDiskEnv(const FullDiskEnv&) = delete;
  FullDiskEnv& operator=(const FullDiskEnv&) = delete;

  rocksdb::Env* env() const { return env_.get(); }

  // The disk holds `bytes` more bytes, then is full.
  void SetBudget(uint64_t bytes);
  // The disk is full from now on.
  void Fill() { SetBudget(0); }
  // Space was freed: the budget is unlimited again.
  void Free();
  // Appends that failed (whole or in part) for lack of space so far.
  uint64_t failed_appends() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace grpo::store::testing

#endif  // GRPO_STORE_FULL_DISK_ENV_H_

// RocksDB's info log (the LOG file of a database directory), written so that a failed write -
// a full disk - never stops the process.
//
// Why: the info log RocksDB creates by default (EnvLogger over a WritableFileWriter) ignores a
// failed append, but its next append or flush on the same writer runs into
// WritableFileWriter::AssertFalseAndGetStatusForPrevError(), whose `assert(sync_without_flush_
// called_)` aborts the process in builds with assertions. Debian's librocksdb 7.8.3 is such a
// build, so a full disk aborted the trainer as soon as RocksDB logged its second line after the
// first failed one (typically the SstFileManager's "free space ... is less than required disk
// buffer", repeated every few seconds). RocksDB fixed it upstream in 8.3 (facebook/rocksdb#11314,
// "Disabling some IO error assertion in EnvLogger"); this logger keeps us independent of it.
//
// Contract:
//  * Each line is "YYYY/MM/DD-HH:MM:SS.uuuuuu <thread id> <message>\n", appended with one write
//    to `dir`/LOG through the Env's FileSystem (the store's files and its log go through the
//    same Env, so tests that fill a simulated disk fill it for the log too).
//  * A failed write is ignored and never retried; later lines are written when there is room
//    again. Nothing is buffered, so nothing is lost at a crash except the line being written.
//  * On creation an existing `dir`/LOG is renamed to `dir`/LOG.old (replacing an older one).
//  * When LOG cannot be created (e.g. no inode left), the logger drops every line: the database
//    still opens and works without its log.
//  * Thread-safe (RocksDB logs from its background threads).
#ifndef GRPO_STORE_INFO_LOG_H_
#define GRPO_STORE_INFO_LOG_H_

#include <rocksdb/env.h>

#include <memory>
#include <string>

namespace grpo::store {

// A logger for DBOptions::info_log writing `dir`/LOG through `env`'s FileSystem, at `level`
// and above.
std::shared_ptr<rocksdb::Logger> NewInfoLog(rocksdb::Env* env, const std::string& dir,
                                            rocksdb::InfoLogLevel level);

}  // namespace grpo::store

#endif  // GRPO_STORE_INFO_LOG_H_

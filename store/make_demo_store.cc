// Writes the demo run of test_fixture.h to a new store (for the CLI test), or with --foreign a
// plain RocksDB database that is not a trajectory store. Usage: make_demo_store DIR [--foreign]
#include <rocksdb/db.h>

#include <cstdio>
#include <cstring>

#include "store/test_fixture.h"
#include "store/trajectory_store.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_demo_store DIR [--foreign]\n");
    return 2;
  }
  if (argc > 2 && std::strcmp(argv[2], "--foreign") == 0) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, argv[1], &db);
    if (s.ok()) s = db->Put(rocksdb::WriteOptions(), "some", "thing");
    delete db;
    if (!s.ok()) std::fprintf(stderr, "make_demo_store: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  auto store = grpo::store::TrajectoryStore::Open(argv[1]);
  absl::Status s = store.ok() ? grpo::store::testing::WriteDemoRun(**store) : store.status();
  if (!s.ok()) {
    std::fprintf(stderr, "make_demo_store: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

// cpu_guarded: the CPU backend's kernels over memory the host cannot touch. A test backend: it
// proves that model, engine and learner code reach device memory only through the Backend
// interface, which is what a GPU backend needs.
//
// Its device memory lives in one reserved arena (mmap, PROT_NONE). While one of its op or
// transfer calls runs, the pages of the blocks that call names (its arguments) are readable and
// writable (mprotect on entry; per-page open counts make nested and concurrent calls safe); when
// the call returns they are PROT_NONE again. So any host read or write of device memory outside
// the backend's calls crashes at once (SIGSEGV) instead of silently working as it would on the
// plain CPU backend, and so does an op that reaches memory it was not handed. Not caught: a host
// access by one thread to a block another thread's call has open, and to the neighbours that
// share a 4 KiB page with an open block (blocks are 64-byte aligned, not page aligned).
//
// A device-to-host copy is staged when called and lands in the host bytes only at
// Synchronize(); until then the host bytes read 0xFF (NaN floats, -1 ints), so a caller that
// forgets to synchronize sees garbage in tests, as it would on an asynchronous GPU stream.
// ImportHost copies (never aliases). Results are bit-identical to the CPU backend's.
#ifndef GRPO_MODEL_OPS_CPU_GUARDED_GUARDED_BACKEND_H_
#define GRPO_MODEL_OPS_CPU_GUARDED_GUARDED_BACKEND_H_

#include <cstdint>

#include "model/ops/backend.h"

namespace grpo {

// The process's cpu_guarded backend (its arena reserves 64 GiB of address space, backed only
// where used).
Backend& CpuGuardedBackend();

// Test hook: the n-th allocation of cpu_guarded device memory from now on (n >= 1) throws
// std::bad_alloc, as an exhausted device would; later allocations succeed again. n = 0 disarms.
void FailCpuGuardedAllocation(int64_t n);

// The backend tests run on: CpuGuardedBackend() when the environment variable
// GRPO_TEST_BACKEND is "cpu_guarded", else CpuBackend() (any other value aborts naming it).
Backend& BackendForTests();

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_CPU_GUARDED_GUARDED_BACKEND_H_

// Lifecycle paths that must not allocate, checked with an operator new that fails on demand
// (replaced for this test program only). Each test's name states the promise it checks.

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono
#include <cstdlib>  // for std::malloc, std::free, std::aligned_alloc
#include <new>      // for std::bad_alloc, std::align_val_t
#include <thread>   // for std::this_thread

#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace {
// While set, every allocation in the process fails. Set only around code that must not allocate.
std::atomic<bool> allocations_fail{false};

void* allocate(std::size_t size, std::size_t alignment) {
  if (allocations_fail.load(std::memory_order_relaxed)) throw std::bad_alloc();
  if (size == 0) size = 1;
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return allocate(size, alignof(std::max_align_t)); }
void* operator new(std::size_t size, std::align_val_t alignment) { return allocate(size, static_cast<std::size_t>(alignment)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::testing::with_workers;

// Until every worker of `p` has gone to sleep once (an idle pool's workers park and stay parked).
void wait_until_all_parked(const pool& p, std::uint64_t workers) {
  while (p.metrics().parks < workers) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // past the futex call
}

TEST(LifecycleAlloc, AShrinkWakesEverySleeperWithoutAllocating) {
  auto* p = new pool(with_workers(3));
  wait_until_all_parked(*p, 3);
  allocations_fail.store(true);
  bool threw = false;
  try {
    p->resize(1);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  allocations_fail.store(false);
  EXPECT_FALSE(threw) << "resize allocated while shrinking";
  EXPECT_EQ(p->workers(), 1U);
  auto t = p->submit([] { return 5; });
  const bool ran = t.wait_for(10s);
  EXPECT_TRUE(ran) << "no worker was left awake to run it";
  if (!ran) return;  // the pool lost its workers: leak it rather than hang in its destructor
  EXPECT_EQ(t.get(), 5);
  delete p;
}

TEST(LifecycleAlloc, WorkersThatParkAgainDuringShutdownDoNotAllocate) {
  // Shutdown wakes the sleepers; each looks for work once more and parks again before it sees
  // the shutdown. Parking is noexcept: an allocation failing there would end the process.
  for (int round = 0; round < 5; ++round) {
    auto* p = new pool(with_workers(2));
    wait_until_all_parked(*p, 2);
    allocations_fail.store(true);
    delete p;
    allocations_fail.store(false);
  }
}

}  // namespace

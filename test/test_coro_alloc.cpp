// Coroutine frames do not come from the global heap once warm (detail/coro_frame_allocator.hpp),
// checked with an operator new that counts (replaced for this test program only).

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <cstdio>   // for std::printf
#include <cstdlib>  // for std::malloc, std::free, std::aligned_alloc
#include <new>      // for std::bad_alloc, std::align_val_t
#include <vector>   // for std::vector

#include "pool_options_for_tests.hpp"
#include "tidepool/coro.hpp"
#include "tidepool/detail/sanitizers.hpp"

namespace {
std::atomic<long> allocations{0};

void* counted(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  allocations.fetch_add(1, std::memory_order_relaxed);
  return p;
}
std::size_t at_least_one(std::size_t size) { return size == 0 ? 1 : size; }
}  // namespace

void* operator new(std::size_t size) { return counted(std::malloc(at_least_one(size))); }
void* operator new(std::size_t size, std::align_val_t a) {
  const auto alignment = static_cast<std::size_t>(a);
  return counted(std::aligned_alloc(alignment, (at_least_one(size) + alignment - 1) / alignment * alignment));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using tidepool::co_task;

co_task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await tidepool::when_all(fib(n - 1), fib(n - 2));
  co_return a + b;
}

constexpr long fib25_calls = 242'785;

long allocations_during_fib25(std::size_t workers) {
  tidepool::pool pool(tidepool::testing::with_workers(workers));
  for (int warm = 0; warm < 3; ++warm) EXPECT_EQ(tidepool::sync_wait(pool, fib(25)), 75'025);
  const long before = allocations.load();
  EXPECT_EQ(tidepool::sync_wait(pool, fib(25)), 75'025);
  const long used = allocations.load() - before;
  std::printf("%zu worker(s): %ld global allocations in a warm fib(25), %.6f per call\n", workers, used,
              static_cast<double>(used) / fib25_calls);
  return used;
}

TEST(CoroFrames, FibNeedsNoGlobalAllocationPerCallOnceWarm) {
  if (tidepool::detail::address_sanitizer) GTEST_SKIP() << "under AddressSanitizer every frame is a fresh allocation";
  // A few allocations per run are allowed (the spawned task, a depot's vector growing); one
  // per thousand calls would mean frames or jobs come from the heap.
  EXPECT_LT(allocations_during_fib25(1), fib25_calls / 1000);
  EXPECT_LT(allocations_during_fib25(2), fib25_calls / 1000);
}

TEST(CoroFrames, FramesFreedOnAnotherThreadAreRecycled) {
  if (tidepool::detail::address_sanitizer) GTEST_SKIP() << "under AddressSanitizer every frame is a fresh allocation";
  // Children made on the awaiting worker, finished (and freed) on whichever worker ran them:
  // many rounds of a wide when_all on two workers keep recycling through the depot.
  tidepool::pool pool(tidepool::testing::with_workers(2));
  auto leaf = [](int i) -> co_task<int> { co_return i; };
  auto round = [&]() -> co_task<long> {
    std::vector<co_task<int>> children;
    children.reserve(1000);
    for (int i = 0; i < 1000; ++i) children.push_back(leaf(i));
    long sum = 0;
    for (int v : co_await tidepool::when_all(std::move(children))) sum += v;
    co_return sum;
  };
  for (int warm = 0; warm < 20; ++warm) EXPECT_EQ(tidepool::sync_wait(pool, round()), 499'500);
  const long before = allocations.load();
  constexpr int rounds = 100;
  for (int i = 0; i < rounds; ++i) EXPECT_EQ(tidepool::sync_wait(pool, round()), 499'500);
  const long per_round = (allocations.load() - before) / rounds;
  // Per round: the vectors (children, handles, results, values) and the spawned task, not 1,000 frames.
  EXPECT_LT(per_round, 50);
}

}  // namespace

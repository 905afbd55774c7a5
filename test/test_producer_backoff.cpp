// A thread outside the pool far ahead of the workers yields its CPU now and then
// (pool_core::yield_if_far_ahead, the comment above it in lib/submission.cpp): only past 16,384
// queued tasks, and without losing or reordering anything. Counted through the library's hook
// point (lib/test_hooks.hpp; built only with -Dtest_hooks=true).

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <cstddef>  // for std::size_t
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "counting_hook.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using tidepool::pool;
using tidepool::testing::with_workers;
using counting_yields = tidepool::testing::counting_hook<tidepool::detail::test_hooks::point::before_far_ahead_yield>;
constexpr auto& yields = counting_yields::count;

// Submits `tasks` tasks from a fresh thread while the pool's only worker is held by a task, so
// that all of them queue; then lets the worker go. Returns the order in which they started.
std::vector<std::size_t> submit_behind_a_held_worker(std::size_t tasks) {
  pool p(with_workers(1));
  std::atomic<bool> held{true};
  p.go([&held] {
    while (held.load()) std::this_thread::yield();
  });
  std::vector<std::size_t> started;
  started.reserve(tasks);
  std::thread producer([&] {
    for (std::size_t i = 0; i < tasks; ++i) p.go([&started, i] { started.push_back(i); });  // one worker
  });
  producer.join();
  held.store(false);
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().succeeded, tasks + 1);
  return started;
}

TEST(ProducerBackoff, AProducerFarAheadOfTheWorkersYieldsAndLosesNothing) {
  const counting_yields counting;
  constexpr std::size_t tasks = 100'000;
  const std::vector<std::size_t> started = submit_behind_a_held_worker(tasks);
  ASSERT_EQ(started.size(), tasks);
  for (std::size_t i = 0; i < tasks; ++i) ASSERT_EQ(started[i], i);
  // A look every 256 submissions, a yield at each look past 16,384 queued: about 320 of them.
  EXPECT_GT(yields.load(), 250u);
  EXPECT_LT(yields.load(), tasks / 256 + 1);
}

TEST(ProducerBackoff, AProducerWithinReachOfTheWorkersNeverYields) {
  const counting_yields counting;
  const std::vector<std::size_t> started = submit_behind_a_held_worker(8'000);
  EXPECT_EQ(started.size(), 8'000u);
  EXPECT_EQ(yields.load(), 0u);
}

}  // namespace

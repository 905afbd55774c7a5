// When a worker waits before taking from the global queue (pool_core::pace_global_take, the
// comment above it in lib/worker.cpp): after a short take, in step with a producer outside the
// pool; never on the links of a chain of tasks that submit their successors. Counted through
// the library's hook point (lib/test_hooks.hpp; built only with -Dtest_hooks=true).

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <cstddef>  // for std::size_t
#include <cstdint>  // for SIZE_MAX
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "counting_hook.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using tidepool::pool;
using tidepool::testing::with_workers;
using counting_pauses = tidepool::testing::counting_hook<tidepool::detail::test_hooks::point::before_lockstep_pause>;
constexpr auto& pauses = counting_pauses::count;

// Each link submits the next from its worker; the last one reads the pause count and reports.
struct chain {
  pool& p;
  std::size_t links_left;
  std::atomic<std::size_t> pauses_before_last{SIZE_MAX};
  std::atomic<bool> done{false};

  void run_link() {
    if (--links_left == 0) {
      pauses_before_last.store(pauses.load());
      done.store(true);
      done.notify_one();
      return;
    }
    p.go([this] { run_link(); });
  }
};

class ChainOnWorkers : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChainOnWorkers, TasksThatSubmitTheirSuccessorNeverPause) {
  const counting_pauses counting;
  pool p(with_workers(GetParam()));
  chain c{p, 20'000};
  p.go([&c] { c.run_link(); });
  c.done.wait(false);
  // Every take of a link comes back short (one task), and every link but the last pushes its
  // successor before its worker takes again: a worker that pushed since its short take does not
  // wait. Links are taken one after the other, so no worker pauses between them.
  EXPECT_EQ(c.pauses_before_last.load(), 0u);
  p.stop_and_wait();
}

INSTANTIATE_TEST_SUITE_P(Workers, ChainOnWorkers, ::testing::Values(std::size_t{1}, std::size_t{2}));

TEST(GlobalTakePacing, AWorkerInStepWithAnOutsideProducerWaitsAndLosesNothing) {
  const counting_pauses counting;
  pool p(with_workers(1));
  constexpr std::size_t rounds = 2'000;
  std::vector<std::size_t> started_order;
  started_order.reserve(rounds);
  std::atomic<std::size_t> started{0};
  // One task at a time, the next submitted as soon as the last has started: each take is short
  // and the worker's next look at the global queue follows it within microseconds.
  for (std::size_t i = 0; i < rounds; ++i) {
    p.go([&, i] {
      started_order.push_back(i);  // one worker: tasks never run at once
      started.store(i + 1, std::memory_order_release);
    });
    while (started.load(std::memory_order_acquire) != i + 1) std::this_thread::yield();
  }
  p.stop_and_wait();
  ASSERT_EQ(started_order.size(), rounds);
  for (std::size_t i = 0; i < rounds; ++i) ASSERT_EQ(started_order[i], i);
  const tidepool::pool_metrics m = p.metrics();
  EXPECT_EQ(m.submitted, rounds);
  EXPECT_EQ(m.succeeded, rounds);
  // Timing decides how many of the 2,000 takes follow their predecessor within the window; with
  // the next task submitted at once, some always do (thousands, in an optimised build).
  EXPECT_GT(pauses.load(), 0u);
}

}  // namespace

// tidepool::task_group — pond's groups: wait for all, first failure cancels the rest, stop
// tokens, helping waits inside tasks.

#include "tidepool/task_group.hpp"

#include <gtest/gtest.h>

#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <functional> // for std::function
#include <latch>      // for std::latch
#include <stdexcept>  // for std::runtime_error
#include <thread>     // for std::this_thread
#include <vector>     // for std::vector

#include "deep_recursion.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/detail/pending_count.hpp"
#include "tidepool/pool.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::pool_options;
using tidepool::task_group;

using tidepool::testing::with_workers;

TEST(TaskGroup, EmptyGroupWaitReturnsAtOnce) {
  pool p(with_workers(2));
  task_group g(p);
  g.wait();
  SUCCEED();
}

TEST(TaskGroup, ResultsArriveByHandleInSubmissionOrder) {
  pool p(with_workers(2));
  task_group g(p);
  std::vector<tidepool::task<int>> handles;
  for (int i = 0; i < 100; ++i) handles.push_back(g.submit([i] { return i * i; }));
  g.wait();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(handles[static_cast<std::size_t>(i)].get(), i * i);
}

TEST(TaskGroup, WaitWaitsForRunningTasks) {
  pool p(with_workers(2));
  task_group g(p);
  std::atomic<bool> finished{false};
  g.go([&] {
    std::this_thread::sleep_for(30ms);
    finished.store(true);
  });
  g.wait();
  EXPECT_TRUE(finished.load());
}

TEST(TaskGroup, FirstFailureIsRethrownAndUnstartedTasksAreCancelled) {
  pool p(with_workers(1));  // one worker: tasks queued behind the failing one have not started
  task_group g(p);
  std::latch release(1);
  g.go([&] {
    release.wait();
    throw std::runtime_error("first");
  });
  std::atomic<int> ran{0};
  std::vector<tidepool::task<int>> later;
  for (int i = 0; i < 10; ++i) {
    later.push_back(g.submit([&] {
      ran.fetch_add(1);
      return 1;
    }));
  }
  release.count_down();
  EXPECT_THROW(g.wait(), std::runtime_error);
  EXPECT_EQ(ran.load(), 0);
  for (auto& t : later) EXPECT_THROW(t.get(), tidepool::task_cancelled);
  p.stop_and_wait();
  const auto m = p.metrics();
  EXPECT_EQ(m.failed, 1U);
  EXPECT_EQ(m.cancelled, 10U);
  EXPECT_EQ(m.submitted, m.succeeded + m.failed + m.cancelled);
}

TEST(TaskGroup, FailureOfTheLastTaskIsReported) {
  pool p(with_workers(2));
  task_group g(p);
  for (int i = 0; i < 50; ++i) g.go([] {});
  g.go([] { throw std::logic_error("last"); });
  EXPECT_THROW(g.wait(), std::logic_error);
}

TEST(TaskGroup, TheFirstFailureByTimeWins) {
  pool p(with_workers(2));
  task_group g(p);
  std::latch first_failed(1);
  g.go([&] {
    std::this_thread::sleep_for(1ms);
    first_failed.count_down();
    throw std::runtime_error("early");
  });
  g.go([&] {
    first_failed.wait();
    std::this_thread::sleep_for(5ms);
    throw std::logic_error("late");
  });
  EXPECT_THROW(g.wait(), std::runtime_error);
}

TEST(TaskGroup, RunningTasksSeeTheStopToken) {
  pool p(with_workers(2));
  task_group g(p);
  std::latch started(1);
  std::atomic<bool> saw_stop{false};
  g.go([&](std::stop_token token) {
    started.count_down();
    while (!token.stop_requested()) std::this_thread::sleep_for(100us);
    saw_stop.store(true);
  });
  started.wait();
  g.stop();
  g.wait();
  EXPECT_TRUE(saw_stop.load());
  EXPECT_TRUE(g.get_stop_token().stop_requested());
}

TEST(TaskGroup, FailureRequestsStopOnTheGroupsToken) {
  pool p(with_workers(2));
  task_group g(p);
  std::latch running(1);
  std::atomic<bool> saw_stop{false};
  g.go([&](std::stop_token token) {
    running.count_down();
    while (!token.stop_requested()) std::this_thread::sleep_for(100us);
    saw_stop.store(true);
  });
  running.wait();
  g.go([] { throw std::runtime_error("cancel the others"); });
  EXPECT_THROW(g.wait(), std::runtime_error);
  EXPECT_TRUE(saw_stop.load());
}

TEST(TaskGroup, SubmittingToAStoppedPoolThrowsPoolStopped) {
  pool p(with_workers(1));
  p.stop();
  task_group g(p);
  EXPECT_THROW(g.go([] {}), tidepool::pool_stopped);
  EXPECT_THROW(static_cast<void>(g.submit([] { return 1; })), tidepool::pool_stopped);
  g.wait();  // nothing pending
}

int nested_depth(pool& p, int depth) {
  if (depth == 0) return 0;
  task_group g(p);
  auto inner = g.submit([&p, depth] { return nested_depth(p, depth - 1); });
  g.wait();
  return inner.get() + 1;
}

TEST(TaskGroup, GroupsNestTwentyLevelsDeepOnOneWorker) {
  pool p(with_workers(1));
  EXPECT_EQ(p.submit([&] { return nested_depth(p, 20); }).get(), 20);
}

TEST(TaskGroup, GroupsNestTwentyLevelsDeepOnTwoWorkers) {
  pool p(with_workers(2));
  EXPECT_EQ(p.submit([&] { return nested_depth(p, 20); }).get(), 20);
}

long group_fib(pool& p, int n) {
  if (n < 2) return n;
  task_group g(p);
  long a = 0;
  g.go([&] { a = group_fib(p, n - 1); });
  const long b = group_fib(p, n - 2);
  g.wait();
  return a + b;
}

TEST(TaskGroup, RecursiveFibWithAGroupPerCallOnOneAndTwoWorkers) {
  const int n = tidepool::testing::stress_scale() < 1 ? 18 : 25;
  const long expected = n == 18 ? 2584 : 75025;
  for (std::size_t workers : {1U, 2U}) {
    pool p(with_workers(workers));
    EXPECT_EQ(p.submit([&] { return group_fib(p, n); }).get(), expected) << workers << " workers";
  }
}

TEST(TaskGroup, ManyGroupsFromOutsideThePoolAreExact) {
  pool p(with_workers(2));
  std::atomic<long> total{0};
  const int groups = static_cast<int>(tidepool::testing::stress_count(500, 50));
  for (int i = 0; i < groups; ++i) {
    task_group g(p);
    for (int t = 0; t < 20; ++t) g.go([&] { total.fetch_add(1); });
    g.wait();
    ASSERT_EQ(total.load(), static_cast<long>(i + 1) * 20);
  }
}

// UTS T3's shape: a spine far deeper than the helping cap (256), where every level's group also
// submits more leaves than a deque holds. Waiters past the cap run only their own fork-join
// work, so no child may end up where they do not look (the global queue): it used to hang.
long deep_spine(pool& p, int depth, int max_depth) {
  if (depth == max_depth) return 1;
  std::atomic<long> leaves{0};
  long below = 0;
  task_group g{p};
  for (int i = 0; i < 300; ++i) g.go([&] { leaves.fetch_add(1); });
  g.go([&] { below = deep_spine(p, depth + 1, max_depth); });
  g.wait();
  return leaves.load() + below;
}

constexpr int spine_depth() {
#if defined(TIDEPOOL_SANITIZED)
  return 600;  // sanitizers' frames are several times larger; still past the cap twice
#else
  return 1600;  // UTS T3 is 1,572 levels deep
#endif
}

TEST(TaskGroup, RecursionFarPastTheHelpingCapWithAGroupPerLevelFinishesOnOneWorker) {
  pool p(with_workers(1));
  const long n = tidepool::testing::run_or_fail_on_hang(p, [&] { return deep_spine(p, 0, spine_depth()); });
  EXPECT_EQ(n, 300L * spine_depth() + 1);
}

TEST(TaskGroup, RecursionFarPastTheHelpingCapWithAGroupPerLevelFinishesOnTwoWorkers) {
  pool p(with_workers(2));
  const long n = tidepool::testing::run_or_fail_on_hang(p, [&] { return deep_spine(p, 0, spine_depth()); });
  EXPECT_EQ(n, 300L * spine_depth() + 1);
}

// The count under every task_group and subpool. Reused for many rounds, as a server's group or
// subpool is: each round's waiter must wake (none lost), and once a round's waiter has seen it
// done, nothing is left flagged, so the next rounds' drains make no wake-up call for nobody.
TEST(PendingCount, ReusedAcrossRoundsWakesEveryWaiterAndLeavesNoWaiterFlagged) {
  tidepool::detail::pending_count pending;
  const std::size_t rounds = tidepool::testing::stress_count(2'000, 500);
  for (std::size_t round = 0; round < rounds; ++round) {
    constexpr int pieces = 3;
    for (int i = 0; i < pieces; ++i) pending.add();
    std::vector<std::thread> finishers;
    for (int i = 0; i < pieces; ++i) {
      finishers.emplace_back([&pending] { EXPECT_FALSE(pending.finish()); });
    }
    tidepool::detail::wait_until_done(pending);  // a hang here is a lost wake-up
    EXPECT_TRUE(pending.done());
    for (auto& t : finishers) t.join();
    ASSERT_FALSE(pending.waiter_flagged_for_testing()) << "round " << round;
  }
}

TEST(PendingCount, AWaiterThatBlockedOnceLeavesLaterDrainsWithoutAWakeUpCall) {
  tidepool::detail::pending_count pending;
  pending.add();
  std::thread finisher([&pending] {
    std::this_thread::sleep_for(20ms);  // long enough for the waiter to block and flag itself
    EXPECT_FALSE(pending.finish());
  });
  tidepool::detail::wait_until_done(pending);
  finisher.join();
  EXPECT_FALSE(pending.waiter_flagged_for_testing());
  // A later round nobody waits for: done without a flag, so its finisher made no wake-up call.
  pending.add();
  EXPECT_FALSE(pending.finish());
  EXPECT_TRUE(pending.done());
  EXPECT_FALSE(pending.waiter_flagged_for_testing());
}

TEST(PendingCount, AHelpingWaitOnAWorkerLeavesNoWaiterFlagged) {
  // A wait on a worker helps and blocks in time-limited slices; the last unit may finish between
  // two slices (here: run by the waiting worker itself), with the bit set by the slice before.
  pool p(with_workers(1));
  for (int round = 0; round < 5; ++round) {
    tidepool::detail::pending_count pending;
    pending.add();
    std::thread finisher([&] {
      std::this_thread::sleep_for(5ms);  // the waiter has blocked once: the bit is set
      p.go([&pending] { EXPECT_FALSE(pending.finish()); });
    });
    p.submit([&pending] { tidepool::detail::wait_until_done(pending); }).get();
    finisher.join();
    EXPECT_FALSE(pending.waiter_flagged_for_testing()) << "round " << round;
  }
}

}  // namespace

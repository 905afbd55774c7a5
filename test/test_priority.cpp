// Priorities: what pool.hpp promises about the order of tasks of different levels.
//   * Among waiting tasks, a higher level starts first; within a level, submission order holds.
//   * No level waits forever: a waiting lower level gets one start in every share + 1
//     (level_rule in lib/priority_queues.hpp: 16 for normal, 32 for low) on each worker.
//   * It holds for tasks submitted from outside and from workers, and for thieves.
//   * metrics() counts waiting and started tasks per level.

#include <gtest/gtest.h>

#include <algorithm>  // for std::min
#include <atomic>   // for std::atomic
#include <cstddef>  // for std::size_t
#include <latch>    // for std::latch
#include <mutex>    // for std::mutex, std::lock_guard
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace tidepool {
namespace {

using testing::occupied_workers;
using testing::with_workers;

constexpr std::size_t low_share = 32;     // priority_queues.hpp: level_rule::low_share
constexpr std::size_t normal_share = 16;  // level_rule::normal_share

submit_options at(priority level) {
  submit_options o;
  o.priority = level;
  return o;
}

struct start {
  priority level;
  std::size_t index;  // in its level's submission order
};

// Records the order in which tasks start.
class start_log {
 public:
  void started(priority level, std::size_t index) {
    std::lock_guard lock(mutex_);
    order_.push_back({level, index});
  }
  [[nodiscard]] std::vector<start> order() const {
    std::lock_guard lock(mutex_);
    return order_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<start> order_;
};

std::size_t count_of(const std::vector<start>& order, priority level) {
  std::size_t n = 0;
  for (const start& s : order) n += s.level == level;
  return n;
}

// The case: one worker, a backlog of 100 low, 100 normal and 100 high released at once.
TEST(Priority, AHigherLevelStartsFirstAndEveryLowTaskStillStarts) {
  constexpr std::size_t per_level = 100;
  start_log log;
  {
    pool p(with_workers(1));
    occupied_workers busy(p, 1);
    for (priority level : {priority::low, priority::normal, priority::high}) {
      for (std::size_t i = 0; i < per_level; ++i) p.go([&log, level, i] { log.started(level, i); }, at(level));
    }
    const pool_metrics m = p.metrics();
    EXPECT_EQ(m.at_level(priority::high).waiting, per_level);
    EXPECT_EQ(m.at_level(priority::low).waiting, per_level);
    EXPECT_EQ(m.at_level(priority::normal).waiting, per_level) << "the blocker is running, not waiting";
    busy.release();
    p.stop_and_wait();
    const pool_metrics after = p.metrics();
    for (priority level : {priority::low, priority::normal, priority::high}) {
      EXPECT_EQ(after.at_level(level).waiting, 0U);
    }
    EXPECT_EQ(after.at_level(priority::high).started, per_level);
    EXPECT_EQ(after.at_level(priority::low).started, per_level);
    EXPECT_EQ(after.at_level(priority::normal).started, per_level + 1) << "and the blocker";
  }
  const std::vector<start> order = log.order();
  ASSERT_EQ(order.size(), 3 * per_level);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(order[i].level, priority::high) << "start " << i;
  // Until the high ones run out, a lower level gets only its share.
  std::size_t last_high = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i].level == priority::high) last_high = i;
  }
  const std::vector<start> while_high(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(last_high + 1));
  EXPECT_LE(count_of(while_high, priority::normal), per_level / normal_share + 1);
  EXPECT_LE(count_of(while_high, priority::low), per_level / low_share + 1);
  // Within a level, submission order.
  std::size_t next[priority_levels] = {};
  for (const start& s : order) EXPECT_EQ(s.index, next[static_cast<int>(s.level)]++) << "FIFO within a level";
  EXPECT_EQ(count_of(order, priority::low), per_level);
}

// A saturating stream of high tasks: a low task submitted at its start waits at most low_share
// high starts (plus the one running when it was submitted).
TEST(Priority, ALowTaskStartsWithinItsShareUnderASaturatingHighStream) {
  pool p(with_workers(1));
  std::atomic<std::size_t> high_started{0};
  std::atomic<std::size_t> high_started_before_low{0};
  std::atomic<bool> low_started{false};
  std::atomic<bool> stop_producing{false};
  std::atomic<std::size_t> high_submitted{0};
  // Keeps at least 64 high tasks waiting, so that the worker always has a high one to take.
  std::thread producer([&] {
    while (!stop_producing.load()) {
      if (high_submitted.load() - high_started.load() < 64) {
        p.go([&] { high_started.fetch_add(1); }, at(priority::high));
        high_submitted.fetch_add(1);
      } else {
        std::this_thread::yield();
      }
    }
  });
  while (high_submitted.load() < 64) std::this_thread::yield();
  p.go(
      [&] {
        high_started_before_low.store(high_started.load());
        low_started.store(true);
      },
      at(priority::low));
  // Read once the low task is queued: what started before (however slow the submission) does not
  // count against the bound, so this undercounts by what starts between the enqueue and here.
  const std::size_t high_before = high_started.load();
  while (!low_started.load()) std::this_thread::yield();
  stop_producing.store(true);
  producer.join();
  p.stop_and_wait();
  EXPECT_LE(high_started_before_low.load() - std::min(high_before, high_started_before_low.load()), low_share + 2)
      << "high tasks that started while the low one waited";
}

// Tasks a task submits follow the levels too.
TEST(Priority, TasksSubmittedFromAWorkerStartByLevel) {
  start_log log;
  pool p(with_workers(1));
  p.submit([&] {
     for (std::size_t i = 0; i < 10; ++i) p.go([&log, i] { log.started(priority::low, i); }, at(priority::low));
     for (std::size_t i = 0; i < 10; ++i) p.go([&log, i] { log.started(priority::high, i); }, at(priority::high));
   }).get();
  p.stop_and_wait();
  const std::vector<start> order = log.order();
  ASSERT_EQ(order.size(), 20U);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(order[i].level, priority::high) << "start " << i;
    EXPECT_EQ(order[i].index, i);
  }
}

// A thief prefers the higher level: worker A holds a batch of low tasks in its inbox (and is busy
// with the first of them) when high tasks arrive; worker B, once free, starts every high task
// before it takes any of A's low ones. Without priorities it would steal A's older batch first.
TEST(Priority, AThiefTakesHighTasksBeforeAnotherWorkersBatchOfLowOnes) {
  constexpr std::size_t batch = 16;  // 32 / 2 workers: what A takes from the low queue at once
  start_log log;
  pool p(with_workers(2));
  std::latch a_free{1}, b_free{1}, low0_may_end{1}, low0_running{1}, blockers_running{2};
  p.go([&] {
    blockers_running.count_down();
    a_free.wait();
  });
  p.go([&] {
    blockers_running.count_down();
    b_free.wait();
  });
  blockers_running.wait();
  p.go(
      [&] {
        log.started(priority::low, 0);
        low0_running.count_down();
        low0_may_end.wait();
      },
      at(priority::low));
  for (std::size_t i = 1; i < batch; ++i) p.go([&log, i] { log.started(priority::low, i); }, at(priority::low));
  a_free.count_down();
  low0_running.wait();  // A took the low batch: low 0 runs, lows 1–15 wait in its inbox
  for (std::size_t i = 0; i < batch; ++i) p.go([&log, i] { log.started(priority::high, i); }, at(priority::high));
  b_free.count_down();
  while (log.order().size() < 2 * batch) std::this_thread::yield();  // B runs everything else
  low0_may_end.count_down();
  p.stop_and_wait();
  const std::vector<start> order = log.order();
  ASSERT_EQ(order.size(), 2 * batch);
  for (std::size_t i = 0; i < batch; ++i) {
    EXPECT_EQ(order[1 + i].level, priority::high) << "start " << 1 + i;
    EXPECT_EQ(order[1 + i].index, i);
  }
}

// A subpool's level is the default of its tasks (and a nested one inherits it); submit_options
// still override it. Seen through the root pool's per-level counts.
TEST(Priority, ASubpoolsLevelIsTheDefaultOfItsTasks) {
  pool p(with_workers(2));
  subpool_options background;
  background.priority = priority::low;
  subpool batch_jobs(p, 1, background);
  subpool nested(batch_jobs, 1);
  for (int i = 0; i < 5; ++i) batch_jobs.go([] {});
  for (int i = 0; i < 3; ++i) nested.go([] {});
  batch_jobs.go([] {}, at(priority::high));
  p.stop_and_wait();
  const pool_metrics m = p.metrics();
  EXPECT_EQ(m.at_level(priority::low).started, 8U);
  EXPECT_EQ(m.at_level(priority::high).started, 1U);
  EXPECT_EQ(m.at_level(priority::normal).started, 0U);
  for (priority level : {priority::low, priority::normal, priority::high}) EXPECT_EQ(m.at_level(level).waiting, 0U);
}

TEST(Priority, NormalTasksWithoutOptionsKeepTheirOrderAndAreCountedAsNormal) {
  pool p(with_workers(1));
  std::vector<int> order;
  {
    occupied_workers busy(p, 1);
    for (int i = 0; i < 50; ++i) p.go([&order, i] { order.push_back(i); });
  }
  p.stop_and_wait();
  ASSERT_EQ(order.size(), 50U);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  const pool_metrics m = p.metrics();
  EXPECT_EQ(m.at_level(priority::normal).started, 51U);
  EXPECT_EQ(m.at_level(priority::high).started + m.at_level(priority::low).started, 0U);
}

}  // namespace
}  // namespace tidepool

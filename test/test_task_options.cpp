// Per-task options (submit_options: deadline, stop token) and task<T>::cancel(): what they
// promise about running, skipping, counting and destroying a task (issue 11).

#include <gtest/gtest.h>

#include <atomic>      // for std::atomic
#include <chrono>      // for std::chrono::steady_clock, std::chrono::milliseconds
#include <latch>       // for std::latch
#include <memory>      // for std::make_shared
#include <optional>    // for std::optional
#include <stop_token>  // for std::stop_source, std::stop_token
#include <thread>      // for std::thread, std::this_thread::yield
#include <vector>      // for std::vector

#include "finishes_within.hpp"
#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using tidepool::testing::occupied_workers;
using tidepool::testing::with_workers;

// A capture that records its destruction (only the last copy's, the one the task holds).
struct destruction_flag {
  std::shared_ptr<std::atomic<bool>> destroyed = std::make_shared<std::atomic<bool>>(false);
  struct marker {
    std::shared_ptr<std::atomic<bool>> flag;
    explicit marker(std::shared_ptr<std::atomic<bool>> f) : flag(std::move(f)) {}
    marker(marker&& other) noexcept : flag(std::move(other.flag)) {}
    marker(const marker&) = delete;
    ~marker() {
      if (flag) flag->store(true);
    }
  };
  [[nodiscard]] marker make() const { return marker(destroyed); }
};

void expect_identity(const tidepool::pool_metrics& m) {
  EXPECT_EQ(m.submitted, m.waiting + m.running + m.succeeded + m.failed + m.cancelled + m.expired);
}

// Options with one field set. (Designated initializers would do, but g++ 12's -Wextra warns
// about the fields they leave out.)
tidepool::submit_options deadline_at(clock_type::time_point deadline) {
  tidepool::submit_options options;
  options.deadline = deadline;
  return options;
}
tidepool::submit_options stopped_by(std::stop_token token) {
  tidepool::submit_options options;
  options.stop_token = std::move(token);
  return options;
}

// A time point the clock has certainly passed once this returns.
clock_type::time_point passed_deadline() {
  const auto deadline = clock_type::now() + 1ms;
  while (clock_type::now() <= deadline) std::this_thread::sleep_for(1ms);
  return deadline;
}

TEST(TaskOptions, CancelBeforeStartDestroysTheCallableBeforeReturningAndTheTaskNeverRuns) {
  tidepool::pool pool(with_workers(1));
  occupied_workers busy(pool, 1);
  destruction_flag captured;
  std::atomic<bool> ran{false};
  auto t = pool.submit([m = captured.make(), &ran] {
    ran = true;
    return 1;
  });
  EXPECT_FALSE(captured.destroyed->load());
  EXPECT_TRUE(t.cancel());
  EXPECT_TRUE(captured.destroyed->load());  // before cancel() returned, on this thread
  EXPECT_TRUE(t.ready());
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.cancelled, 1u);
  EXPECT_EQ(m.waiting, 0u);
  expect_identity(m);
  EXPECT_FALSE(t.cancel());  // cancelled already
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
  busy.release();
  pool.stop_and_wait();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(pool.metrics().cancelled, 1u);
  EXPECT_EQ(pool.metrics().succeeded, 1u);  // the blocker
}

TEST(TaskOptions, CancelOfARunningTaskRequestsStopOnItsTokenAndReturnsFalse) {
  tidepool::pool pool(with_workers(1));
  std::latch started(1);
  auto t = pool.submit([&started](std::stop_token stop) {
    started.count_down();
    while (!stop.stop_requested()) std::this_thread::yield();
    return 7;
  });
  started.wait();
  EXPECT_FALSE(t.cancel());
  EXPECT_EQ(t.get(), 7);  // it saw the request and returned
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.succeeded, 1u);
  EXPECT_EQ(m.cancelled, 0u);
}

TEST(TaskOptions, CancelOfAFinishedTaskReturnsFalseAndKeepsItsResult) {
  tidepool::pool pool(with_workers(1));
  auto t = pool.submit([] { return 3; });
  t.wait();
  EXPECT_FALSE(t.cancel());
  EXPECT_EQ(t.get(), 3);
}

TEST(TaskOptions, ATaskCanCancelAnotherTaskOfItsOwnPool) {
  tidepool::pool pool(with_workers(1));
  std::atomic<bool> ran{false};
  // One worker, busy with the outer task: the inner one cannot have started.
  auto outer = pool.submit([&pool, &ran] {
    auto inner = pool.submit([&ran] { ran = true; });
    const bool cancelled = inner.cancel();
    const bool throws = [&inner] {
      try {
        inner.get();
      } catch (const tidepool::task_cancelled&) {
        return true;
      }
      return false;
    }();
    return cancelled && throws;
  });
  EXPECT_TRUE(outer.get());
  pool.stop_and_wait();
  EXPECT_FALSE(ran.load());
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.cancelled, 1u);
  EXPECT_EQ(m.succeeded, 1u);
  expect_identity(m);
}

TEST(TaskOptions, CancelRacingWorkersAndOtherCancelsLetsExactlyOneOfRunOrCancelHappen) {
  tidepool::pool pool(with_workers(2));
  const std::size_t rounds = tidepool::testing::stress_count(20000, 500);
  std::size_t ran_count = 0;
  std::size_t cancelled_count = 0;
  for (std::size_t round = 0; round < rounds; ++round) {
    auto ran = std::make_shared<std::atomic<int>>(0);
    auto t = pool.submit([ran] { return ++*ran; });
    std::atomic<int> cancels_won{0};
    std::thread other([&] { cancels_won += t.cancel() ? 1 : 0; });
    cancels_won += t.cancel() ? 1 : 0;
    other.join();
    ASSERT_LE(cancels_won.load(), 1);
    if (cancels_won.load() == 1) {
      EXPECT_THROW(t.get(), tidepool::task_cancelled);
      EXPECT_EQ(ran->load(), 0);
      ++cancelled_count;
    } else {
      EXPECT_EQ(t.get(), 1);
      EXPECT_EQ(ran->load(), 1);
      ++ran_count;
    }
  }
  pool.stop_and_wait();
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.succeeded, ran_count);
  EXPECT_EQ(m.cancelled, cancelled_count);
  EXPECT_EQ(m.waiting + m.running, 0u);
  expect_identity(m);
}

TEST(TaskOptions, CancelRacingStopAndResizeStillRunsOrCancelsEachTaskOnce) {
  const std::size_t rounds = tidepool::testing::stress_count(300, 50);
  for (std::size_t round = 0; round < rounds; ++round) {
    auto pool = std::make_unique<tidepool::pool>(with_workers(2));
    auto ran = std::make_shared<std::atomic<int>>(0);
    std::vector<tidepool::task<void>> tasks;
    for (int i = 0; i < 16; ++i) tasks.push_back(pool->submit([ran] { ++*ran; }));
    std::atomic<int> cancelled{0};
    std::thread canceller([&] {
      for (auto& t : tasks) cancelled += t.cancel() ? 1 : 0;
    });
    if (round % 2 == 0) pool->resize(1);
    pool->stop_and_wait();
    canceller.join();
    EXPECT_EQ(ran->load() + cancelled.load(), 16);
    int thrown = 0;
    for (auto& t : tasks) {
      try {
        t.get();
      } catch (const tidepool::task_cancelled&) {
        ++thrown;
      }
    }
    EXPECT_EQ(thrown, cancelled.load());
    const tidepool::pool_metrics m = pool->metrics();
    EXPECT_EQ(m.cancelled, static_cast<std::uint64_t>(cancelled.load()));
    EXPECT_EQ(m.waiting + m.running, 0u);
    expect_identity(m);
    pool.reset();  // the destructor returns: no shell left behind blocks it
  }
}

TEST(TaskOptions, CancelReleasesTheTasksSlotInABoundedPool) {
  tidepool::pool_options options = with_workers(1);
  options.queue_capacity = 1;
  options.non_blocking = true;
  tidepool::pool pool(options);
  occupied_workers busy(pool, 1);
  auto queued = pool.submit([] {});
  EXPECT_FALSE(pool.try_submit([] {}).has_value());  // full: 1 running + 1 queued
  EXPECT_TRUE(queued.cancel());
  auto next = pool.try_submit([] { return 5; });
  ASSERT_TRUE(next.has_value());
  busy.release();
  EXPECT_EQ(next->get(), 5);
}

TEST(TaskOptions, StopRequestedBeforeTheStartMeansTheTaskIsCancelled) {
  tidepool::pool pool(with_workers(1));
  std::stop_source already;
  already.request_stop();
  std::atomic<int> ran{0};
  auto a = pool.submit([&ran] { ++ran; }, stopped_by(already.get_token()));
  EXPECT_THROW(a.get(), tidepool::task_cancelled);

  std::stop_source later;
  std::optional<tidepool::task<int>> b;
  std::optional<tidepool::task<int>> c;
  {
    occupied_workers busy(pool, 1);
    b = pool.submit([&ran] { return ++ran; }, stopped_by(later.get_token()));
    c = pool.submit([&ran](std::stop_token) { return ++ran; }, stopped_by(later.get_token()));
    pool.go([&ran] { ++ran; }, stopped_by(later.get_token()));
    later.request_stop();  // while they wait
  }
  EXPECT_THROW(b->get(), tidepool::task_cancelled);
  EXPECT_THROW(c->get(), tidepool::task_cancelled);
  pool.stop_and_wait();
  EXPECT_EQ(ran.load(), 0);
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.cancelled, 4u);
  expect_identity(m);
}

TEST(TaskOptions, TheOptionsStopTokenReachesARunningTaskThroughItsOwnToken) {
  tidepool::pool pool(with_workers(1));
  std::stop_source source;
  std::latch started(1);
  auto t = pool.submit(
      [&started](std::stop_token stop) {
        started.count_down();
        while (!stop.stop_requested()) std::this_thread::yield();
        return true;
      },
      stopped_by(source.get_token()));
  started.wait();
  source.request_stop();
  EXPECT_TRUE(t.get());
}

TEST(TaskOptions, ATaskStillWaitingAtItsDeadlineExpiresUnrun) {
  tidepool::pool pool(with_workers(1));
  destruction_flag captured;
  std::atomic<bool> ran{false};
  std::optional<tidepool::task<int>> t;
  {
    occupied_workers busy(pool, 1);
    t = pool.submit(
        [m = captured.make(), &ran] {
          ran = true;
          return 1;
        },
        deadline_at(clock_type::now() + 1ms));
    passed_deadline();
  }
  EXPECT_THROW(t->get(), tidepool::task_expired);
  EXPECT_TRUE(captured.destroyed->load());
  EXPECT_FALSE(ran.load());
  pool.stop_and_wait();
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.expired, 1u);
  EXPECT_EQ(m.cancelled, 0u);
  EXPECT_EQ(m.succeeded, 1u);  // the blocker
  expect_identity(m);
  EXPECT_NE(tidepool::to_prometheus(m, "tidepool").find("tidepool_tasks_expired_total 1\n"), std::string::npos);
}

TEST(TaskOptions, ADeadlineAlreadyPastIsAcceptedAndExpires) {
  tidepool::pool pool(with_workers(2));
  const auto past = clock_type::now() - 1s;
  std::atomic<int> ran{0};
  auto a = pool.submit([&ran] { return ++ran; }, deadline_at(past));
  auto b = pool.try_submit([&ran] { return ++ran; }, deadline_at(past));
  ASSERT_TRUE(b.has_value());
  pool.go([&ran] { ++ran; }, deadline_at(past));
  auto on_time = pool.submit([] { return 2; }, deadline_at(clock_type::now() + 1h));
  EXPECT_THROW(a.get(), tidepool::task_expired);
  EXPECT_THROW(b->get(), tidepool::task_cancelled);  // task_expired is a task_cancelled
  EXPECT_EQ(on_time.get(), 2);
  pool.stop_and_wait();
  EXPECT_EQ(ran.load(), 0);
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.expired, 3u);
  EXPECT_EQ(m.dropped, 0u);
  expect_identity(m);
}

TEST(TaskOptions, AnExpiredTaskInAGroupIsNotAFailure) {
  tidepool::pool pool(with_workers(2));
  tidepool::task_group group(pool);
  std::atomic<int> ran{0};
  auto late = group.submit([&ran] { return ++ran; }, deadline_at(clock_type::now() - 1s));
  group.go([&ran] { ++ran; }, deadline_at(clock_type::now() - 1s));
  auto fine = group.submit([&ran] { return ++ran; });
  EXPECT_NO_THROW(group.wait());
  EXPECT_FALSE(group.stopped());
  EXPECT_THROW(late.get(), tidepool::task_expired);
  EXPECT_EQ(fine.get(), 1);
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(pool.metrics().expired, 2u);
}

TEST(TaskOptions, CancellingAGroupsQueuedTaskLetsWaitReturnAtOnce) {
  tidepool::pool pool(with_workers(1));
  occupied_workers busy(pool, 1);
  tidepool::task_group group(pool);
  auto t = group.submit([] { return 1; });
  EXPECT_TRUE(t.cancel());
  // The worker is still busy and the node still queued: only the report lets wait() return.
  EXPECT_TRUE(tidepool::testing::finishes_within(10s, [&group] { group.wait(); }));
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
}

TEST(TaskOptions, AGroupTaskTakingATokenIsStoppedByTheGroupAndByCancel) {
  tidepool::pool pool(with_workers(2));
  tidepool::task_group group(pool);
  std::latch started(2);
  auto spin = [&started](std::stop_token stop) {
    started.count_down();
    while (!stop.stop_requested()) std::this_thread::yield();
    return 1;
  };
  auto by_cancel = group.submit(spin, {});
  auto by_group = group.submit(spin, {});
  started.wait();
  EXPECT_FALSE(by_cancel.cancel());
  EXPECT_EQ(by_cancel.get(), 1);
  group.stop();
  EXPECT_EQ(by_group.get(), 1);
  group.wait();
}

TEST(TaskOptions, ACancelledSubpoolTaskGivesItsSlotBackAndTheSubpoolGoesOn) {
  tidepool::pool pool(with_workers(2));
  tidepool::subpool_options options;
  options.queue_capacity = 1;
  options.non_blocking = true;
  tidepool::subpool sub(pool, 1, options);
  std::optional<tidepool::task<int>> after;
  {
    occupied_workers busy(sub, 1);  // its one concurrency slot
    auto queued = sub.submit([] { return 1; });
    EXPECT_FALSE(sub.try_submit([] { return 2; }).has_value());  // full: 1 running + 1 queued
    EXPECT_TRUE(queued.cancel());
    EXPECT_THROW(queued.get(), tidepool::task_cancelled);
    after = sub.try_submit([] { return 3; });
    ASSERT_TRUE(after.has_value());
    const tidepool::pool_metrics m = sub.metrics();
    EXPECT_EQ(m.cancelled, 1u);
    expect_identity(m);
  }
  EXPECT_EQ(after->get(), 3);
  sub.stop_and_wait();
  expect_identity(sub.metrics());
  expect_identity(pool.metrics());
  EXPECT_EQ(pool.metrics().cancelled, 1u);
}

TEST(TaskOptions, ASubpoolCountsItsExpiredTasks) {
  tidepool::pool pool(with_workers(1));
  tidepool::subpool sub(pool, 1);
  auto t = sub.submit([] {}, deadline_at(clock_type::now() - 1s));
  EXPECT_THROW(t.get(), tidepool::task_expired);
  sub.stop_and_wait();
  const tidepool::pool_metrics m = sub.metrics();
  EXPECT_EQ(m.expired, 1u);
  EXPECT_EQ(m.cancelled, 0u);
  expect_identity(m);
  EXPECT_EQ(pool.metrics().expired, 1u);
}

TEST(TaskOptions, TheMetricsIdentityHoldsAfterAMixOfOutcomes) {
  tidepool::pool pool(with_workers(2));
  std::vector<tidepool::task<int>> tasks;
  std::stop_source stopped;
  stopped.request_stop();
  {
    occupied_workers busy(pool, 2);
    for (int i = 0; i < 40; ++i) {
      switch (i % 5) {
        case 0: tasks.push_back(pool.submit([i] { return i; })); break;
        case 1: tasks.push_back(pool.submit([]() -> int { throw 1; })); break;
        case 2: tasks.push_back(pool.submit([i] { return i; }, deadline_at(clock_type::now() - 1s))); break;
        case 3: tasks.push_back(pool.submit([i] { return i; }, stopped_by(stopped.get_token()))); break;
        case 4: tasks.push_back(pool.submit([i] { return i; })); EXPECT_TRUE(tasks.back().cancel()); break;
      }
      expect_identity(pool.metrics());
    }
  }
  pool.stop_and_wait();
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.succeeded, 8u + 2u);  // + the two blockers
  EXPECT_EQ(m.failed, 8u);
  EXPECT_EQ(m.expired, 8u);
  EXPECT_EQ(m.cancelled, 16u);
  EXPECT_EQ(m.waiting + m.running, 0u);
  expect_identity(m);
}

TEST(TaskOptions, ACallableTakingAStopTokenWorksWithoutOptions) {
  tidepool::pool pool(with_workers(1));
  auto t = pool.submit([](std::stop_token stop) { return stop.stop_possible() && !stop.stop_requested(); });
  EXPECT_TRUE(t.get());
  std::atomic<bool> ran{false};
  pool.go([&ran](std::stop_token) { ran = true; });
  pool.stop_and_wait();
  EXPECT_TRUE(ran.load());
}

}  // namespace

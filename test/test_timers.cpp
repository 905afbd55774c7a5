// Delayed and periodic tasks: submit_after / submit_at / go_every on pools and subpools, their
// accounting (`scheduled`), stop, and no retention. Time margins are generous and no test
// asserts how late a timer may be (a noisy 2-core machine): only that it is never early.

#include <gtest/gtest.h>

#include <algorithm>  // for std::is_sorted
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdio>     // for std::printf
#include <latch>      // for std::latch
#include <memory>     // for std::shared_ptr, std::make_shared
#include <mutex>      // for std::mutex, std::lock_guard
#include <stdexcept>  // for std::invalid_argument
#include <thread>     // for std::thread, std::this_thread
#include <vector>     // for std::vector

#include "finishes_within.hpp"
#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/errors.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/subpool.hpp"
#include "tidepool/timer.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using tidepool::pool;
using tidepool::subpool;
using tidepool::testing::finishes_within;
using tidepool::testing::with_workers;

// Polls (generously) until `done()`; false if it never became true.
template <class Done>
bool eventually(Done done) {
  const auto give_up = clock_type::now() + 20s;
  while (!done()) {
    if (clock_type::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Every task of a pool or subpool is in exactly one state, and no gauge has wrapped below zero.
void expect_identity(const tidepool::pool_metrics& m) {
  EXPECT_LE(m.scheduled, m.submitted);
  EXPECT_LE(m.waiting, m.submitted);
  EXPECT_LE(m.running, m.submitted);
  EXPECT_EQ(m.submitted, m.scheduled + m.waiting + m.running + m.succeeded + m.failed + m.cancelled + m.expired);
}

TEST(Timers, DelayedTasksStartNoEarlierThanTheirTimeAndInTimeOrderOnOneWorker) {
  pool p(with_workers(1));
  const std::vector<int> delays_ms = {80, 20, 60, 5, 40, 100, 30};
  std::mutex m;
  std::vector<int> started_order;
  std::vector<tidepool::task<bool>> handles;
  for (int d : delays_ms) {
    const auto due = clock_type::now() + std::chrono::milliseconds(d);
    handles.push_back(p.submit_after(std::chrono::milliseconds(d), [&, d, due] {
      const bool on_time = clock_type::now() >= due;
      std::lock_guard lock(m);
      started_order.push_back(d);
      return on_time;
    }));
  }
  for (auto& h : handles) EXPECT_TRUE(h.get()) << "a delayed task started before its time";
  EXPECT_TRUE(std::is_sorted(started_order.begin(), started_order.end())) << "a later time started first";
  EXPECT_EQ(started_order.size(), delays_ms.size());
}

TEST(Timers, SubmitAtAPointInTimeRunsNoEarlier) {
  pool p(with_workers(2));
  const auto when = clock_type::now() + 30ms;
  auto late_enough = p.submit_at(when, [when] { return clock_type::now() >= when; });
  EXPECT_TRUE(late_enough.get());
}

TEST(Timers, ANegativeDelayOrAPastTimeRunsAsSoonAsPossible) {
  pool p(with_workers(1));
  EXPECT_EQ(p.submit_after(-1s, [] { return 7; }).get(), 7);
  EXPECT_EQ(p.submit_at(clock_type::now() - 1h, [] { return 8; }).get(), 8);
  EXPECT_EQ(p.submit_after(std::chrono::hours::min(), [] { return 9; }).get(), 9);
}

TEST(Timers, CapturesOfADelayedTaskAreGoneWhenItsCompletionIsSeen) {
  pool p(with_workers(2));
  auto token = std::make_shared<int>(1);
  auto h = p.submit_after(5ms, [token] { return *token; });
  EXPECT_EQ(h.get(), 1);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(Timers, GoEveryTicksRepeatedlyAndCancelStopsIt) {
  pool p(with_workers(2));
  std::atomic<int> runs{0};
  tidepool::timer t = p.go_every(2ms, [&] { runs.fetch_add(1); });
  EXPECT_TRUE(t.valid());
  ASSERT_TRUE(eventually([&] { return runs.load() >= 5; }));
  EXPECT_TRUE(t.cancel());
  const int after_cancel = runs.load();
  std::this_thread::sleep_for(60ms);
  // A run that had started before cancel() may still count itself; nothing starts afterwards.
  EXPECT_LE(runs.load(), after_cancel + 1);
  EXPECT_FALSE(t.cancel()) << "the second cancel reports that the timer had already ended";
}

TEST(Timers, ASlowPeriodicCallableSkipsTicksInsteadOfOverlapping) {
  pool p(with_workers(4));
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  std::atomic<int> runs{0};
  tidepool::timer t = p.go_every(1ms, [&] {
    const int n = now.fetch_add(1) + 1;
    if (n > peak.load()) peak.store(n);
    std::this_thread::sleep_for(15ms);
    runs.fetch_add(1);
    now.fetch_sub(1);
  });
  ASSERT_TRUE(eventually([&] { return runs.load() >= 4; }));
  t.cancel();
  p.stop_and_wait();
  EXPECT_EQ(peak.load(), 1) << "two runs of one periodic timer overlapped";
}

TEST(Timers, APeriodicCallableIsDestroyedWhenTheTimerIsCancelled) {
  pool p(with_workers(1));
  auto token = std::make_shared<int>(0);
  tidepool::timer t = p.go_every(1h, [token] {});
  EXPECT_EQ(token.use_count(), 2);
  EXPECT_TRUE(t.cancel());
  EXPECT_EQ(token.use_count(), 1) << "the timer kept its callable after it ended";
}

TEST(Timers, APeriodicTimerOutlivesItsHandleUntilThePoolStops) {
  pool p(with_workers(1));
  std::atomic<int> runs{0};
  auto token = std::make_shared<int>(0);
  { tidepool::timer dropped = p.go_every(2ms, [&runs, token] { runs.fetch_add(1); }); }
  EXPECT_TRUE(eventually([&] { return runs.load() >= 3; })) << "the handle's destructor cancelled the timer";
  p.stop_and_wait();
  EXPECT_EQ(token.use_count(), 1) << "stop() ended the timer and destroyed its callable";
}

TEST(Timers, StopCancelsDelayedTasksNotYetDueAndDestroysTheirCaptures) {
  pool p(with_workers(2));
  auto token = std::make_shared<int>(0);
  auto later = p.submit_after(1h, [token] { return 1; });
  auto at = p.submit_at(clock_type::now() + 1h, [token] { return 2; });
  auto soon = p.submit_after(0ms, [] { return 3; });
  EXPECT_EQ(soon.get(), 3);
  tidepool::timer periodic = p.go_every(1h, [token] {});
  EXPECT_EQ(token.use_count(), 4);
  p.stop();
  EXPECT_EQ(token.use_count(), 1) << "stop() left a delayed task's or a timer's captures alive";
  EXPECT_THROW(later.get(), tidepool::task_cancelled);
  EXPECT_THROW(at.get(), tidepool::task_cancelled);
  EXPECT_FALSE(periodic.cancel()) << "stop() ended the periodic timer";
  p.stop_and_wait();
  const auto m = p.metrics();
  EXPECT_EQ(m.cancelled, 2U);
  EXPECT_EQ(m.succeeded, 1U);
  EXPECT_EQ(m.scheduled, 0U);
  EXPECT_EQ(m.global_pushes, m.global_pops) << "cancelled delayed tasks never entered the global queue";
  expect_identity(m);
}

// cancel() on a delayed task: as for a queued one, and it leaves `scheduled` (task.hpp).
TEST(Timers, CancellingADelayedTaskBeforeItIsDueDestroysItAndCountsItCancelled) {
  pool p(with_workers(2));
  subpool sub(p, 1);
  auto token = std::make_shared<int>(0);
  auto on_pool = p.submit_after(1h, [token] { return 1; });
  auto on_subpool = sub.submit_after(1h, [token] { return 2; });
  EXPECT_TRUE(on_pool.cancel());
  EXPECT_TRUE(on_subpool.cancel());
  EXPECT_FALSE(on_pool.cancel()) << "only once";
  EXPECT_EQ(token.use_count(), 1) << "cancel() returned with the captures alive";
  EXPECT_THROW(on_pool.get(), tidepool::task_cancelled);
  EXPECT_THROW(on_subpool.get(), tidepool::task_cancelled);
  const auto sub_metrics = sub.metrics();
  EXPECT_EQ(sub_metrics.scheduled, 0U);
  EXPECT_EQ(sub_metrics.cancelled, 1U);
  expect_identity(sub_metrics);
  p.stop_and_wait();
  const auto m = p.metrics();
  EXPECT_EQ(m.scheduled, 0U);
  EXPECT_EQ(m.cancelled, 2U);
  EXPECT_EQ(m.global_pushes, m.global_pops);
  expect_identity(m);
}

// Racing the timer thread: each delayed task either runs or is cancelled, never both or neither,
// and the counts add up whichever side won.
TEST(Timers, CancelRacingTheTimerThreadEndsEachDelayedTaskExactlyOnce) {
  pool p(with_workers(2));
  subpool sub(p, 1);
  constexpr int rounds = 2000;
  std::atomic<int> ran{0};
  int cancelled = 0;
  for (int i = 0; i < rounds; ++i) {
    auto delay = std::chrono::microseconds(i % 50);
    auto t = i % 2 == 0 ? p.submit_after(delay, [&ran] { ran.fetch_add(1); }) : sub.submit_after(delay, [&ran] { ran.fetch_add(1); });
    for (int spin = 0; spin < (i * 7) % 300; ++spin) std::this_thread::yield();
    if (t.cancel()) {
      ++cancelled;
      EXPECT_THROW(t.get(), tidepool::task_cancelled);
    } else {
      t.get();
    }
  }
  p.stop_and_wait();
  EXPECT_EQ(ran.load() + cancelled, rounds);
  const auto m = p.metrics();
  EXPECT_EQ(m.cancelled, static_cast<std::uint64_t>(cancelled));
  EXPECT_EQ(m.succeeded, static_cast<std::uint64_t>(ran.load()));
  EXPECT_EQ(m.scheduled, 0U);
  expect_identity(m);
  std::printf("delayed tasks cancelled: %d of %d\n", cancelled, rounds);
}

// submit_options on a delayed task: its level once due, its deadline and stop token before start.
TEST(Timers, ADelayedTaskKeepsItsOptions) {
  pool p(with_workers(1));
  tidepool::submit_options high;
  high.priority = tidepool::priority::high;
  EXPECT_EQ(p.submit_after(1ms, [] { return 7; }, high).get(), 7);
  tidepool::submit_options past_deadline;
  past_deadline.deadline = clock_type::now();
  auto expired = p.submit_at(clock_type::now() + 5ms, [] { return 8; }, past_deadline);
  EXPECT_THROW(expired.get(), tidepool::task_expired);
  std::stop_source source;
  tidepool::submit_options stoppable;
  stoppable.stop_token = source.get_token();
  auto stopped = p.submit_after(5ms, [] { return 9; }, stoppable);
  source.request_stop();
  EXPECT_THROW(stopped.get(), tidepool::task_cancelled);
  p.stop_and_wait();
  const auto m = p.metrics();
  EXPECT_EQ(m.at_level(tidepool::priority::high).started, 1U);
  EXPECT_EQ(m.expired, 1U);
  EXPECT_EQ(m.cancelled, 1U);
  expect_identity(m);
}

TEST(Timers, SubmissionsToAStoppedPoolAreRefused) {
  pool p(with_workers(1));
  p.stop();
  auto token = std::make_shared<int>(0);
  EXPECT_THROW(static_cast<void>(p.submit_after(1ms, [token] {})), tidepool::pool_stopped);
  EXPECT_THROW(static_cast<void>(p.go_every(1ms, [token] {})), tidepool::pool_stopped);
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_EQ(p.metrics().dropped, 1U) << "a refused delayed task counts as dropped";
  EXPECT_EQ(p.metrics().submitted, 0U);
}

TEST(Timers, DestroyingThePoolWithTimersPendingDoesNotHang) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool p(with_workers(2));
    auto a = p.submit_after(1h, [] {});
    auto b = p.submit_at(clock_type::time_point::max(), [] {});
    p.go([] {});
    tidepool::timer t = p.go_every(1h, [] {});
    tidepool::timer fast = p.go_every(1ms, [] {});
    std::this_thread::sleep_for(10ms);
  }));
}

TEST(Timers, MetricsCountScheduledTasksAndKeepTheIdentityWhileTheyBecomeDue) {
  pool p(with_workers(2));
  constexpr int n = 200;
  std::vector<tidepool::task<void>> handles;
  for (int i = 0; i < n; ++i) handles.push_back(p.submit_after(std::chrono::milliseconds(500 + i % 20), [] {}));
  const auto before = p.metrics();
  EXPECT_EQ(before.submitted, static_cast<std::uint64_t>(n)) << "counted submitted when accepted";
  EXPECT_EQ(before.scheduled, static_cast<std::uint64_t>(n)) << "not waiting before they are due";
  expect_identity(before);
  std::atomic<bool> done{false};
  std::thread observer([&] {
    while (!done.load()) expect_identity(p.metrics());
  });
  for (auto& h : handles) h.get();
  done.store(true);
  observer.join();
  p.stop_and_wait();
  const auto after = p.metrics();
  EXPECT_EQ(after.scheduled, 0U);
  EXPECT_EQ(after.succeeded, static_cast<std::uint64_t>(n));
  expect_identity(after);
}

TEST(Timers, DelayedTasksOnASubpoolRespectItsLimitAndCountThere) {
  pool p(with_workers(4));
  subpool sub(p, 1);
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  std::vector<tidepool::task<void>> handles;
  for (int i = 0; i < 20; ++i) {
    handles.push_back(sub.submit_after(20ms, [&] {
      const int n = now.fetch_add(1) + 1;
      if (n > peak.load()) peak.store(n);
      std::this_thread::sleep_for(1ms);
      now.fetch_sub(1);
    }));
  }
  const auto early = sub.metrics();
  expect_identity(early);
  EXPECT_EQ(early.submitted, 20U);
  for (auto& h : handles) h.get();
  EXPECT_LE(peak.load(), 1) << "due tasks bypassed the subpool's limit";
  sub.stop_and_wait();
  const auto m = sub.metrics();
  EXPECT_EQ(m.succeeded, 20U);
  EXPECT_EQ(m.scheduled, 0U);
  expect_identity(m);
  expect_identity(p.metrics());
}

TEST(Timers, APeriodicTimerOnASubpoolRunsWithinItsLimit) {
  pool p(with_workers(3));
  subpool sub(p, 1);
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  std::atomic<int> ticks{0};
  const auto probe = [&] {
    const int n = now.fetch_add(1) + 1;
    if (n > peak.load()) peak.store(n);
    std::this_thread::sleep_for(200us);
    now.fetch_sub(1);
  };
  tidepool::timer t = sub.go_every(1ms, [&] {
    probe();
    ticks.fetch_add(1);
  });
  for (int i = 0; i < 100; ++i) sub.go(probe);  // the subpool's other tasks share its one slot
  ASSERT_TRUE(eventually([&] { return ticks.load() >= 5; }));
  t.cancel();
  sub.stop_and_wait();
  EXPECT_EQ(peak.load(), 1) << "a periodic run bypassed the subpool's limit";
  expect_identity(sub.metrics());
}

TEST(Timers, StoppingASubpoolCancelsItsDelayedTasksAndLeavesThePoolRunning) {
  pool p(with_workers(2));
  auto token = std::make_shared<int>(0);
  tidepool::task<int> pending;
  tidepool::timer periodic;
  {
    subpool sub(p, 1);
    subpool nested(sub, 1);
    pending = nested.submit_after(1h, [token] { return 1; });
    periodic = sub.go_every(1h, [token] {});
    EXPECT_TRUE(finishes_within(20s, [&sub] { sub.stop_and_wait(); }));
    EXPECT_EQ(token.use_count(), 1);
    EXPECT_EQ(nested.metrics().cancelled, 1U);
    expect_identity(nested.metrics());
    expect_identity(sub.metrics());
  }  // the destructors do not wait for the hour
  EXPECT_THROW(pending.get(), tidepool::task_cancelled);
  EXPECT_FALSE(periodic.cancel());
  EXPECT_EQ(p.submit_after(1ms, [] { return 5; }).get(), 5);
  expect_identity(p.metrics());
}

TEST(Timers, ADueTaskWaitsForRoomInAFullBoundedQueueAndIsNeverDropped) {
  tidepool::pool_options o = with_workers(1);
  o.queue_capacity = 0;
  o.non_blocking = true;
  pool p(o);
  tidepool::testing::occupied_workers busy(p, 1);
  auto h = p.submit_after(1ms, [] { return 4; });
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(h.ready());
  EXPECT_EQ(p.metrics().scheduled, 1U) << "a due task that finds no room stays scheduled";
  busy.release();
  EXPECT_EQ(h.get(), 4);
  EXPECT_EQ(p.metrics().dropped, 0U);
}

TEST(Timers, APeriodOfZeroOrLessIsRejected) {
  pool p(with_workers(1));
  auto token = std::make_shared<int>(0);
  EXPECT_THROW(static_cast<void>(p.go_every(0ms, [token] {})), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(p.go_every(-1s, [token] {})), std::invalid_argument);
  subpool sub(p, 1);
  EXPECT_THROW(static_cast<void>(sub.go_every(std::chrono::nanoseconds(0), [token] {})), std::invalid_argument);
  EXPECT_EQ(token.use_count(), 1);
}

}  // namespace

// tidepool::subpool — pond's subpools: a concurrency limit of their own on the parent's workers,
// their own metrics (included in the parent's), independent stop, nesting.

#include "tidepool/subpool.hpp"

#include <gtest/gtest.h>

#include <algorithm>  // for std::max
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdio>     // for std::printf
#include <latch>      // for std::latch
#include <stdexcept>  // for std::invalid_argument
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/task_group.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::pool_options;
using tidepool::subpool;
using tidepool::testing::stress_count;

using tidepool::testing::with_workers;

// Tracks how many tasks of one kind run at once, and the most that ever did.
struct concurrency_probe {
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  void enter() {
    const int n = now.fetch_add(1) + 1;
    int seen = peak.load();
    while (n > seen && !peak.compare_exchange_weak(seen, n)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

TEST(Subpool, ConcurrencyNeverExceedsTheLimitOverManyTasks) {
  pool p(with_workers(4));
  subpool sub(p, 2);
  concurrency_probe probe;
  const std::size_t n = stress_count(100'000, 5'000);
  for (std::size_t i = 0; i < n; ++i) {
    sub.go([&probe, i] {
      probe.enter();
      if (i % 1000 == 0) std::this_thread::sleep_for(50us);  // let others pile up behind
      probe.leave();
    });
  }
  sub.stop_and_wait();
  EXPECT_LE(probe.peak.load(), 2);
  EXPECT_EQ(sub.metrics().succeeded, n);
  std::printf("%zu tasks, peak concurrency %d of 2\n", n, probe.peak.load());
}

TEST(Subpool, ParentOfSevenWithSubpoolsOfOneTwoAndThree) {
  pool p(with_workers(7));
  subpool one(p, 1);
  subpool two(p, 2);
  subpool three(p, 3);
  concurrency_probe probes[3];
  const std::size_t n = stress_count(3'000, 300);
  for (std::size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 3; ++k) {
      subpool& s = k == 0 ? one : k == 1 ? two : three;
      s.go([&probe = probes[k]] {
        probe.enter();
        std::this_thread::sleep_for(std::chrono::microseconds(20));
        probe.leave();
      });
    }
  }
  one.stop_and_wait();
  two.stop_and_wait();
  three.stop_and_wait();
  EXPECT_LE(probes[0].peak.load(), 1);
  EXPECT_LE(probes[1].peak.load(), 2);
  EXPECT_LE(probes[2].peak.load(), 3);
  EXPECT_EQ(p.metrics().succeeded, 3 * n) << "the pool's metrics include its subpools' tasks";
  std::printf("peaks %d/1 %d/2 %d/3\n", probes[0].peak.load(), probes[1].peak.load(), probes[2].peak.load());
}

TEST(Subpool, LimitZeroMeansTheParentsAndMoreIsRejected) {
  pool p(with_workers(3));
  subpool all(p, 0);
  EXPECT_EQ(all.max_concurrency(), 3U);
  EXPECT_THROW(subpool(p, 4), std::invalid_argument);
  subpool two(p, 2);
  EXPECT_THROW(subpool(two, 3), std::invalid_argument);
  subpool nested_all(two, 0);
  EXPECT_EQ(nested_all.max_concurrency(), 2U);
}

TEST(Subpool, NestedSubpoolsRespectEveryAncestorsLimit) {
  pool p(with_workers(4));
  subpool parent(p, 2);
  subpool child(parent, 2);
  concurrency_probe both;  // tasks of the parent and of the child together
  concurrency_probe child_only;
  for (int i = 0; i < 400; ++i) {
    parent.go([&] {
      both.enter();
      std::this_thread::sleep_for(20us);
      both.leave();
    });
    child.go([&] {
      both.enter();
      child_only.enter();
      std::this_thread::sleep_for(20us);
      child_only.leave();
      both.leave();
    });
  }
  child.stop_and_wait();
  parent.stop_and_wait();
  EXPECT_LE(both.peak.load(), 2) << "the child's tasks count against the parent's limit";
  EXPECT_LE(child_only.peak.load(), 2);
  EXPECT_EQ(child.metrics().succeeded, 400U);
  EXPECT_EQ(parent.metrics().succeeded, 800U) << "the parent's metrics include the child's tasks";
  EXPECT_EQ(p.metrics().succeeded, 800U);
}

TEST(Subpool, MetricsCountOwnTasksAndTheParentIncludesThem) {
  pool p(with_workers(2));
  subpool sub(p, 1);
  for (int i = 0; i < 10; ++i) p.go([] {});
  for (int i = 0; i < 20; ++i) {
    sub.go([i] {
      if (i % 4 == 0) throw std::runtime_error("x");
    });
  }
  sub.stop_and_wait();
  p.stop_and_wait();
  const auto s = sub.metrics();
  EXPECT_EQ(s.submitted, 20U);
  EXPECT_EQ(s.failed, 5U);
  EXPECT_EQ(s.succeeded, 15U);
  EXPECT_EQ(s.waiting + s.running, 0U);
  const auto m = p.metrics();
  EXPECT_EQ(m.submitted, 30U);
  EXPECT_EQ(m.failed, 5U);
  EXPECT_EQ(m.succeeded, 25U);
}

TEST(Subpool, StoppingASubpoolLeavesTheParentRunning) {
  pool p(with_workers(2));
  subpool sub(p, 1);
  sub.stop();
  EXPECT_TRUE(sub.stopped());
  EXPECT_THROW(sub.go([] {}), tidepool::pool_stopped);
  EXPECT_EQ(p.submit([] { return 1; }).get(), 1);
  EXPECT_FALSE(p.stopped());
  EXPECT_EQ(sub.metrics().dropped, 1U);
}

TEST(Subpool, StoppingTheParentStopsItsSubpoolsButRunsWhatTheyAccepted) {
  pool p(with_workers(2));
  subpool sub(p, 1);
  std::atomic<int> ran{0};
  std::latch release(1);
  sub.go([&] { release.wait(); });
  for (int i = 0; i < 50; ++i) sub.go([&] { ran.fetch_add(1); });
  p.stop();
  EXPECT_TRUE(sub.stopped());
  EXPECT_THROW(sub.go([] {}), tidepool::pool_stopped);
  release.count_down();
  sub.stop_and_wait();
  EXPECT_EQ(ran.load(), 50);
  p.stop_and_wait();
}

tidepool::subpool_options non_blocking_queue_of(std::size_t capacity) {
  tidepool::subpool_options o;
  o.queue_capacity = capacity;
  o.non_blocking = true;
  return o;
}

TEST(Subpool, NonBlockingSubpoolRefusesWhenFull) {
  pool p(with_workers(2));
  subpool sub(p, 1, non_blocking_queue_of(3));
  tidepool::testing::occupied_workers busy(sub, 1);
  for (int i = 0; i < 3; ++i) sub.go([] {});
  EXPECT_THROW(sub.go([] {}), tidepool::queue_full);
  EXPECT_FALSE(sub.try_submit([] {}).has_value());
  busy.release();
  sub.stop_and_wait();
  EXPECT_EQ(sub.metrics().dropped, 2U);
  EXPECT_EQ(sub.metrics().succeeded, 4U);
}

TEST(Subpool, StoppingAnAncestorRefusesSubmittersBlockedOnAFullSubpool) {
  for (int stop_the_pool = 0; stop_the_pool < 2; ++stop_the_pool) {
    pool p(with_workers(2));
    subpool parent(p, 2);
    tidepool::subpool_options o;
    o.queue_capacity = 0;
    subpool sub(parent, 1, o);
    tidepool::testing::occupied_workers busy(sub, 1);
    std::atomic<bool> refused{false};
    std::thread blocked([&] {
      try {
        sub.go([] {});
      } catch (const tidepool::pool_stopped&) {
        refused.store(true);
      }
    });
    std::this_thread::sleep_for(20ms);
    if (stop_the_pool != 0) {
      p.stop();
    } else {
      parent.stop();
    }
    blocked.join();  // must return while the running task still blocks the only slot
    EXPECT_TRUE(refused.load());
  }
}

TEST(Subpool, BlockingSubpoolCompletesEverythingWithASmallQueue) {
  pool p(with_workers(2));
  tidepool::subpool_options o;
  o.queue_capacity = 2;
  subpool sub(p, 1, o);
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i) sub.go([&] { ran.fetch_add(1); });
  sub.stop_and_wait();
  EXPECT_EQ(ran.load(), 50);
}

TEST(Subpool, TaskGroupsRunOnSubpools) {
  pool p(with_workers(3));
  subpool sub(p, 1);
  concurrency_probe probe;
  tidepool::task_group g(sub);
  for (int i = 0; i < 100; ++i) {
    g.go([&] {
      probe.enter();
      std::this_thread::sleep_for(10us);
      probe.leave();
    });
  }
  g.go([] { throw std::runtime_error("group failure"); });
  EXPECT_THROW(g.wait(), std::runtime_error);
  EXPECT_LE(probe.peak.load(), 1);
}

TEST(Subpool, ASubpoolScopedInsideATaskWaitsForItsTasks) {
  pool p(with_workers(2));
  auto total = p.submit([&] {
    std::atomic<int> sum{0};
    {
      subpool sub(p, 1);
      for (int i = 1; i <= 100; ++i) sub.go([&sum, i] { sum.fetch_add(i); });
    }  // destroyed here: waits (helping) for its 100 tasks
    return sum.load();
  });
  EXPECT_EQ(total.get(), 5050);
}

// Waits (polling, generous) until `done()`; false if it never became true.
template <class Done>
bool eventually(Done done) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(SubpoolResize, GrowingStartsQueuedTasksAtOnce) {
  pool p(with_workers(4));
  subpool sub(p, 1);
  concurrency_probe probe;
  std::latch release(1);
  for (int i = 0; i < 4; ++i) {
    sub.go([&] {
      probe.enter();
      release.wait();
      probe.leave();
    });
  }
  ASSERT_TRUE(eventually([&] { return probe.now.load() == 1; }));
  sub.set_max_concurrency(3);
  EXPECT_EQ(sub.max_concurrency(), 3U);
  // The first task still blocks: only the new slots can start the queued ones.
  EXPECT_TRUE(eventually([&] { return probe.now.load() == 3; })) << "running: " << probe.now.load();
  release.count_down();
  sub.stop_and_wait();
  EXPECT_EQ(probe.peak.load(), 3);
  EXPECT_EQ(sub.metrics().succeeded, 4U);
}

TEST(SubpoolResize, ShrinkingNeverInterruptsRunningTasksAndLaterOnesKeepTheNewLimit) {
  pool p(with_workers(4));
  subpool sub(p, 3);
  concurrency_probe all;             // every task of the subpool
  std::atomic<int> most_seen_later{0};  // the most running (all tasks) that a later task saw
  std::atomic<int> old_finished{0};
  std::latch release(1);
  for (int i = 0; i < 3; ++i) {
    sub.go([&, i] {
      all.enter();
      release.wait();
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * i));  // they end one by one
      all.leave();
      old_finished.fetch_add(1);
    });
  }
  ASSERT_TRUE(eventually([&] { return all.now.load() == 3; }));
  const int later = 200;
  for (int i = 0; i < later; ++i) {
    sub.go([&] {
      all.enter();
      const int n = all.now.load();
      int seen = most_seen_later.load();
      while (n > seen && !most_seen_later.compare_exchange_weak(seen, n)) {
      }
      std::this_thread::sleep_for(20us);
      all.leave();
    });
  }
  sub.set_max_concurrency(1);
  EXPECT_EQ(all.now.load(), 3) << "running tasks are not interrupted";
  release.count_down();
  sub.stop_and_wait();
  EXPECT_EQ(old_finished.load(), 3);
  EXPECT_EQ(sub.metrics().succeeded, static_cast<std::uint64_t>(3 + later));
  EXPECT_EQ(most_seen_later.load(), 1) << "a later task started while others of the subpool ran";
}

TEST(SubpoolResize, BadLimitsThrowAsInTheConstructorAndChangeNothing) {
  pool p(with_workers(3));
  subpool sub(p, 2);
  EXPECT_THROW(sub.set_max_concurrency(4), std::invalid_argument);
  EXPECT_EQ(sub.max_concurrency(), 2U);
  sub.set_max_concurrency(0);
  EXPECT_EQ(sub.max_concurrency(), 3U) << "0 means the parent's limit";
  subpool child(sub, 1);
  EXPECT_THROW(child.set_max_concurrency(4), std::invalid_argument);
  child.set_max_concurrency(0);
  EXPECT_EQ(child.max_concurrency(), 3U);
  sub.set_max_concurrency(1);
  EXPECT_EQ(sub.max_concurrency(), 1U);
  EXPECT_THROW(child.set_max_concurrency(2), std::invalid_argument) << "checked against the parent's limit now";
  EXPECT_EQ(child.submit([] { return 5; }).get(), 5);
}

TEST(SubpoolResize, ABoundedQueueFollowsTheLimit) {
  pool p(with_workers(3));
  subpool sub(p, 1, non_blocking_queue_of(0));
  tidepool::testing::occupied_workers busy(sub, 1);
  EXPECT_THROW(sub.go([] {}), tidepool::queue_full);
  sub.set_max_concurrency(2);
  tidepool::testing::occupied_workers second(sub, 1);  // room for one more running task now
  EXPECT_THROW(sub.go([] {}), tidepool::queue_full);
  busy.release();
  second.release();
  sub.stop_and_wait();
  EXPECT_EQ(sub.metrics().succeeded, 2U);
  EXPECT_EQ(sub.metrics().dropped, 2U);
}

TEST(SubpoolResize, ResizingWhileTasksRunLosesNothingAndKeepsTheLargestLimit) {
  pool p(with_workers(4));
  subpool sub(p, 2);
  concurrency_probe probe;
  std::atomic<bool> done{false};
  std::thread resizer([&] {
    for (std::size_t i = 0; !done.load(); ++i) {
      sub.set_max_concurrency(1 + i % 3);
      std::this_thread::sleep_for(100us);
    }
  });
  const std::size_t n = stress_count(20'000, 2'000);
  std::atomic<std::size_t> ran{0};
  for (std::size_t i = 0; i < n; ++i) {
    sub.go([&] {
      probe.enter();
      ran.fetch_add(1);
      probe.leave();
    });
  }
  sub.stop_and_wait();
  done.store(true);
  resizer.join();
  EXPECT_EQ(ran.load(), n);
  EXPECT_LE(probe.peak.load(), 3);
  const auto m = sub.metrics();
  EXPECT_EQ(m.succeeded, n);
  EXPECT_EQ(m.waiting + m.running, 0U);
}

}  // namespace

// What a worker may run on its own stack while it waits or joins, and that deep nesting of
// waits still finishes: the promises of task.hpp ("Waiting from inside a task") and
// fork_join.hpp ("What else may run on the caller's stack").

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono
#include <cstdio>   // for std::fprintf
#include <cstdlib>  // for std::_Exit
#include <stop_token>  // for std::stop_source
#include <thread>   // for std::thread, std::this_thread
#include <vector>   // for std::vector

#include "deep_recursion.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::pool_metrics;
using tidepool::pool_options;
using tidepool::subpool;
using tidepool::testing::run_or_fail_on_hang;
using tidepool::testing::with_workers;

thread_local int task_nesting = 0;

// A fork-join caller that never waits runs only its own jobs on its stack: queued tasks, however
// many, do not pile up on top of it.
TEST(Helping, AForkJoinCallerThatNeverWaitsRunsNoUnrelatedTaskOnItsStack) {
  pool p(with_workers(1));
  std::atomic<bool> gate{false};
  std::atomic<int> deepest{0};
  std::atomic<long> finished{0};
  const long tasks = 2000;
  p.go([&] {
    while (!gate.load()) std::this_thread::yield();
  });
  for (long i = 0; i < tasks; ++i) {
    p.go([&] {
      ++task_nesting;
      int seen = deepest.load();
      while (task_nesting > seen && !deepest.compare_exchange_weak(seen, task_nesting)) {
      }
      for (int k = 0; k < 200; ++k) tidepool::parallel_invoke(p, [] {}, [] {});
      --task_nesting;
      finished.fetch_add(1);
    });
  }
  gate.store(true);
  p.stop_and_wait();
  EXPECT_EQ(finished.load(), tasks);
  EXPECT_EQ(deepest.load(), 1) << "unrelated tasks nested on one worker's stack";
}

// A continuation submitted after a fork-join task, waiting for it, on one worker: it must not
// end up on the fork-join task's stack, where it would wait for the frame below it.
TEST(Helping, AContinuationWaitingForAForkJoinTaskFinishesOnOneWorker) {
  pool p(with_workers(1));
  auto a = p.submit([&] {
    for (int k = 0; k < 200; ++k) tidepool::parallel_invoke(p, [] {}, [] {});
    return 1;
  });
  auto b = p.submit([&] { return a.get() + 1; });
  if (!b.wait_for(60s)) {
    std::fprintf(stderr, "FAILED: the continuation hung\n");
    std::_Exit(1);
  }
  EXPECT_EQ(b.get(), 2);
}

// Past the helping cap a waiter runs only its own deque: a subpool's runner job submitted from
// that task must be there.
void descend_then_wait_for_subpool(pool& p, subpool& s, int depth, int cap_past, bool use_handle) {
  if (depth < cap_past) {
    tidepool::task_group g(p);  // one helping wait per level
    g.go([&] { descend_then_wait_for_subpool(p, s, depth + 1, cap_past, use_handle); });
    g.wait();
    return;
  }
  if (use_handle) {
    EXPECT_EQ(s.submit([] { return 7; }).get(), 7);
  } else {
    tidepool::task_group sg(s);
    sg.go([] {});
    sg.wait();
  }
}

TEST(Helping, WaitingForASubpoolTaskFarPastTheHelpingCapFinishes) {
  pool p(with_workers(1));
  subpool s(p, 1);
  run_or_fail_on_hang(p, [&] { descend_then_wait_for_subpool(p, s, 0, 300, true); });
}

TEST(Helping, WaitingForASubpoolGroupFarPastTheHelpingCapFinishes) {
  pool p(with_workers(1));
  subpool s(p, 1);
  run_or_fail_on_hang(p, [&] { descend_then_wait_for_subpool(p, s, 0, 300, false); });
}

// A waiter past the cap runs the awaited task itself; the node stays in its queue slot until a
// worker reaches it. Every such node is dropped by the time the pool is gone, and counted once,
// also when the pool's stop token cancels what has not started.
std::vector<int> vector_chain(pool& p, int depth) {
  if (depth == 0) return std::vector<int>(64, 1);
  std::vector<int> below = p.submit([&p, depth] { return vector_chain(p, depth - 1); }).get();
  below.push_back(depth);
  return below;
}

TEST(Helping, TasksRunByTheirWaitersAreCountedOnceAndReleasedWithThePool) {
  for (int round = 0; round < 6; ++round) {
    std::stop_source stop;
    pool_options o = with_workers(1 + round % 2);
    o.stop_token = stop.get_token();
    pool p(o);
    std::atomic<bool> chain_started{false};
    std::thread canceller;
    if (round >= 4) {
      canceller = std::thread([&] {
        while (!chain_started.load()) std::this_thread::yield();
        std::this_thread::sleep_for(1ms);
        stop.request_stop();
      });
    }
    auto top = p.submit([&] {
      chain_started.store(true);
      try {
        return vector_chain(p, 600).size();
      } catch (const tidepool::error&) {  // task_cancelled, or pool_stopped once the token fired
        return std::size_t{0};
      }
    });
    try {
      const std::size_t size = top.get();
      if (round < 4) {
        EXPECT_EQ(size, 664U);
      }
    } catch (const tidepool::error&) {
    }
    if (canceller.joinable()) canceller.join();
    p.stop_and_wait();
    const pool_metrics m = p.metrics();
    EXPECT_EQ(m.submitted, m.succeeded + m.failed + m.cancelled + m.waiting + m.running);
    EXPECT_EQ(m.waiting + m.running, 0U);
  }
}

}  // namespace

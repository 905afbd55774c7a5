// The scheduler's hooks for layers that do not block on a task (task_completion.hpp):
// continuations, internal jobs and deferred completion, on which coroutines and executors sit.

#include <gtest/gtest.h>

#include <atomic>    // for std::atomic
#include <chrono>    // for std::chrono::hours, std::chrono::milliseconds
#include <latch>     // for std::latch
#include <optional>  // for std::optional
#include <stdexcept>  // for std::runtime_error
#include <thread>    // for std::thread, std::this_thread::get_id
#include <vector>    // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::detail::task_node;
using tidepool::testing::occupied_workers;
using tidepool::testing::with_workers;

void expect_identity(const tidepool::pool_metrics& m) {
  EXPECT_EQ(m.submitted, m.waiting + m.running + m.succeeded + m.failed + m.cancelled + m.expired);
}

task_node* node_of(const tidepool::task<int>& t) { return tidepool::detail::task_access<int>::node(t); }

// Whether `calls` becomes nonzero within a generous time (a continuation runs just after the
// wake-up of a waiter, so a waiter may see the outcome a moment before it has run).
bool called_soon(const std::atomic<int>& calls) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (calls.load() == 0) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// A continuation that records when and where it ran, and what the task's outcome was then.
struct recording_continuation : tidepool::detail::task_continuation {
  std::atomic<int> calls{0};
  std::atomic<std::uint32_t> outcome_seen{tidepool::detail::outcome_pending};
  std::atomic<std::thread::id> thread;
  recording_continuation() {
    on_finished = [](tidepool::detail::task_continuation* self) noexcept {
      auto* me = static_cast<recording_continuation*>(self);
      me->outcome_seen.store(me->node->outcome());
      me->thread.store(std::this_thread::get_id());
      me->calls.fetch_add(1);
    };
  }
};

TEST(Continuation, RunsOnceAfterTheOutcomeIsVisibleOnTheFinishingWorker) {
  tidepool::pool pool(with_workers(1));
  std::latch release(1);
  std::atomic<std::thread::id> worker_thread;
  auto t = pool.submit([&] {
    worker_thread = std::this_thread::get_id();
    release.wait();
    return 7;
  });
  recording_continuation c;
  ASSERT_TRUE(tidepool::detail::add_continuation(node_of(t), &c));
  EXPECT_EQ(c.calls.load(), 0);
  release.count_down();
  t.wait();
  ASSERT_TRUE(called_soon(c.calls));
  EXPECT_EQ(c.outcome_seen.load(), tidepool::detail::outcome_succeeded);
  EXPECT_EQ(c.thread.load(), worker_thread.load());
  EXPECT_EQ(t.get(), 7);
  EXPECT_EQ(c.calls.load(), 1);
}

TEST(Continuation, IsRefusedAndNeverCalledForAFinishedTask) {
  tidepool::pool pool(with_workers(1));
  auto t = pool.submit([] { return 1; });
  t.wait();
  recording_continuation c;
  EXPECT_FALSE(tidepool::detail::add_continuation(node_of(t), &c));
  EXPECT_EQ(t.get(), 1);
  EXPECT_EQ(c.calls.load(), 0);
}

TEST(Continuation, SeveralOnOneTaskAllRun) {
  tidepool::pool pool(with_workers(1));
  occupied_workers busy(pool, 1);
  auto t = pool.submit([] { return 3; });
  std::vector<recording_continuation> cs(5);
  for (auto& c : cs) ASSERT_TRUE(tidepool::detail::add_continuation(node_of(t), &c));
  busy.release();
  EXPECT_EQ(t.get(), 3);
  pool.stop_and_wait();
  for (auto& c : cs) {
    ASSERT_TRUE(called_soon(c.calls));
    EXPECT_EQ(c.calls.load(), 1);
  }
}

TEST(Continuation, RunsOnTheThreadThatCancelsTheTask) {
  tidepool::pool pool(with_workers(1));
  occupied_workers busy(pool, 1);
  auto t = pool.submit([] { return 1; });
  recording_continuation c;
  ASSERT_TRUE(tidepool::detail::add_continuation(node_of(t), &c));
  ASSERT_TRUE(t.cancel());
  EXPECT_EQ(c.calls.load(), 1);  // before cancel() returned, on this thread
  EXPECT_EQ(c.thread.load(), std::this_thread::get_id());
  EXPECT_EQ(c.outcome_seen.load(), tidepool::detail::outcome_cancelled);
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
}

TEST(Continuation, RunsForADelayedTaskThatStopCancels) {
  tidepool::pool pool(with_workers(1));
  // With options, so the node has extras: the stop path must keep them to free them (ASan).
  tidepool::submit_options options;
  options.deadline = std::chrono::steady_clock::now() + 2h;
  auto t = pool.submit_after(1h, [] { return 1; }, options);
  recording_continuation c;
  ASSERT_TRUE(tidepool::detail::add_continuation(node_of(t), &c));
  pool.stop();
  EXPECT_EQ(c.calls.load(), 1);
  EXPECT_EQ(c.outcome_seen.load(), tidepool::detail::outcome_cancelled);
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
  expect_identity(pool.metrics());
}

// Registration racing with the finish: every continuation is called exactly once when
// add_continuation said true, and never when it said false.
TEST(Continuation, RacingTheFinishEveryAcceptedOneRunsExactlyOnce) {
  tidepool::pool pool(with_workers(2));
  const std::size_t rounds = tidepool::testing::stress_count(5000);
  std::size_t accepted = 0;
  std::vector<recording_continuation> cs(4);
  for (std::size_t i = 0; i < rounds; ++i) {
    auto t = pool.submit([] { return 1; });
    bool said[4];
    for (std::size_t k = 0; k < cs.size(); ++k) {
      cs[k].calls.store(0);
      said[k] = tidepool::detail::add_continuation(node_of(t), &cs[k]);
    }
    t.wait();
    for (std::size_t k = 0; k < cs.size(); ++k) {
      if (said[k]) {
        ++accepted;
        ASSERT_TRUE(called_soon(cs[k].calls)) << "round " << i << ", continuation " << k;
      }
    }
    EXPECT_EQ(t.get(), 1);  // the handle keeps the node until here: late calls would show below
    for (std::size_t k = 0; k < cs.size(); ++k) {
      ASSERT_EQ(cs[k].calls.load(), said[k] ? 1 : 0) << "round " << i << ", continuation " << k;
    }
  }
  RecordProperty("accepted", static_cast<int>(accepted));
}

TEST(InternalJob, RunsOnAWorkerAndIsNotCounted) {
  tidepool::pool pool(with_workers(1));
  auto& core = tidepool::detail::pool_access::core(pool);
  std::atomic<bool> on_worker{false};
  std::latch ran(1);
  task_node* job = tidepool::detail::make_task_node<std::function<void()>, void>(
      std::function<void()>([&] {
        on_worker = tidepool::detail::on_worker_of(core);
        ran.count_down();
      }),
      tidepool::detail::task_kind::internal_job);
  EXPECT_FALSE(tidepool::detail::on_worker_of(core));
  tidepool::detail::post_internal_job(core, job);
  ran.wait();
  EXPECT_TRUE(on_worker.load());
  pool.stop_and_wait();
  EXPECT_EQ(pool.metrics().submitted, 0u);
}

// An embedded job whose run frees the memory it lives in: the worker must not touch it after.
struct self_freeing_job : task_node {
  std::latch* ran = nullptr;
  static void run(task_node* n, tidepool::detail::task_op) noexcept {
    auto* me = static_cast<self_freeing_job*>(n);
    std::latch* ran = me->ran;
    delete me;  // ASan reports any later touch of the node by the worker
    ran->count_down();
  }
};

void post_self_freeing_jobs(tidepool::detail::pool_core& core, int jobs, std::latch& ran) {
  for (int i = 0; i < jobs; ++i) {
    auto* job = new self_freeing_job;
    job->ops = &self_freeing_job::run;
    job->kind = tidepool::detail::task_kind::embedded_job;
    job->ran = &ran;
    tidepool::detail::post_internal_job(core, job);
  }
}

TEST(InternalJob, AnEmbeddedJobMayEndItsOwnMemory) {
  tidepool::pool pool(with_workers(2));
  auto& core = tidepool::detail::pool_access::core(pool);
  const int jobs = 1000;
  std::latch ran(jobs);
  post_self_freeing_jobs(core, jobs, ran);  // from outside: through the global queue
  ran.wait();
  std::latch ran_from_worker(jobs);
  pool.submit([&] { post_self_freeing_jobs(core, jobs, ran_from_worker); }).get();  // onto a deque
  ran_from_worker.wait();
  pool.stop_and_wait();
  EXPECT_EQ(pool.metrics().submitted, 1u);
}

// A deferred task: its run op hands the node over, and the test finishes it.
struct deferred_start {
  std::atomic<task_node*>* started;
};
void deferred_ops(task_node* n, tidepool::detail::task_op op) noexcept {
  using tidepool::detail::task_op;
  switch (op) {
    case task_op::run: {
      std::atomic<task_node*>* to = tidepool::detail::stored<deferred_start>(n).started;
      tidepool::detail::destroy_stored<deferred_start>(n);
      to->store(n);
      return;
    }
    case task_op::cancel:
      tidepool::detail::destroy_stored<deferred_start>(n);
      return;
    case task_op::destroy_result:
      tidepool::detail::destroy_stored<int>(n);
      return;
  }
}

tidepool::task<int> submit_deferred(tidepool::pool& pool, std::atomic<task_node*>& started, bool may_block = true) {
  task_node* n = tidepool::detail::make_node_with_ops<deferred_start, int>(deferred_start{&started}, &deferred_ops,
                                                                            tidepool::detail::task_kind::with_handle);
  n->flags |= tidepool::detail::flag_completes_later;
  tidepool::detail::throw_if_refused(tidepool::detail::submit_node(pool, n, may_block));
  return tidepool::detail::task_access<int>::make(n);
}

task_node* wait_started(std::atomic<task_node*>& started) {
  while (started.load() == nullptr) std::this_thread::yield();
  return started.load();
}

TEST(DeferredCompletion, StaysRunningAndHoldsItsSlotUntilCompleted) {
  tidepool::pool_options options = with_workers(1);
  options.queue_capacity = 0;
  tidepool::pool pool(options);
  std::atomic<task_node*> started{nullptr};
  auto t = submit_deferred(pool, started);
  task_node* n = wait_started(started);
  // The worker is free again, but the task still runs and holds the pool's only slot.
  auto m = pool.metrics();
  EXPECT_EQ(m.running, 1u);
  EXPECT_EQ(m.succeeded, 0u);
  EXPECT_FALSE(t.ready());
  EXPECT_FALSE(pool.try_submit([] {}).has_value());
  // Finished from a thread that is not a worker.
  std::thread([n] {
    tidepool::detail::construct_stored<int>(n, 42);
    n->flags |= tidepool::detail::flag_has_result;
    tidepool::detail::complete_deferred(n);
  }).join();
  EXPECT_EQ(t.get(), 42);
  m = pool.metrics();
  EXPECT_EQ(m.succeeded, 1u);
  EXPECT_EQ(m.running, 0u);
  expect_identity(m);
  EXPECT_TRUE(pool.try_submit([] {}).has_value());  // the slot is back
}

TEST(DeferredCompletion, AFailureReachesTheHandleAndIsCountedWhenCompletedOnAWorker) {
  tidepool::pool pool(with_workers(1));
  std::atomic<task_node*> started{nullptr};
  auto t = submit_deferred(pool, started);
  task_node* n = wait_started(started);
  pool.go([n] {
    n->store_error(std::make_exception_ptr(std::runtime_error("late")));
    tidepool::detail::complete_deferred(n);
  });
  EXPECT_THROW(t.get(), std::runtime_error);
  pool.stop_and_wait();
  const auto m = pool.metrics();
  EXPECT_EQ(m.failed, 1u);
  EXPECT_EQ(m.succeeded, 1u);  // the go() task
  expect_identity(m);
}

TEST(DeferredCompletion, StopAndWaitWaitsForIt) {
  tidepool::pool pool(with_workers(1));
  std::atomic<task_node*> started{nullptr};
  auto t = submit_deferred(pool, started);
  task_node* n = wait_started(started);
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    pool.stop_and_wait();
    stopped = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(stopped.load());
  tidepool::detail::construct_stored<int>(n, 5);
  n->flags |= tidepool::detail::flag_has_result;
  tidepool::detail::complete_deferred(n);
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_EQ(pool.metrics().succeeded, 1u);
  EXPECT_EQ(t.get(), 5);
}

TEST(DeferredCompletion, CancelledBeforeItStartsGoesThroughCancel) {
  tidepool::pool pool(with_workers(1));
  occupied_workers busy(pool, 1);
  std::atomic<task_node*> started{nullptr};
  auto t = submit_deferred(pool, started);
  ASSERT_TRUE(t.cancel());
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
  busy.release();
  pool.stop_and_wait();
  EXPECT_EQ(started.load(), nullptr);
  expect_identity(pool.metrics());
}

}  // namespace

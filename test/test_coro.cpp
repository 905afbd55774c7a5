// Coroutines on a pool (include/tidepool/coro.hpp): co_task, schedule, spawn, awaiting a task<T>,
// when_all, sync_wait; errors, cancellation, nesting, no retention, metrics.

#include <gtest/gtest.h>

#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono::milliseconds, std::chrono::seconds
#include <coroutine>  // for std::coroutine_handle
#include <memory>     // for std::unique_ptr, std::make_unique
#include <stdexcept>  // for std::runtime_error
#include <string>     // for std::string
#include <thread>     // for std::thread::id, std::this_thread
#include <tuple>      // for std::tuple
#include <type_traits>  // for std::is_same_v
#include <utility>    // for std::move, std::exchange
#include <variant>    // for std::monostate
#include <vector>     // for std::vector

#include "../perf/uts.hpp"  // the UTS trees (perf/ is not on the tests' include path)
#include "finishes_within.hpp"
#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/coro.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/task_group.hpp"

namespace {

using tidepool::co_task;
using tidepool::testing::with_workers;

co_task<int> answer() { co_return 42; }

co_task<void> set_flag(std::atomic<bool>& flag) {
  flag.store(true);
  co_return;
}

co_task<int> throws_runtime_error(std::string what) {
  throw std::runtime_error(what);
  co_return 0;  // a coroutine, not a function
}

co_task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

co_task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await tidepool::when_all(fib(n - 1), fib(n - 2));
  co_return a + b;
}

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

namespace uts = tidepool::perf::uts;

// Every child of a node in one when_all: the root of T3 has 2,000, the nodes below 8 or none.
// With `hop`, each node first moves to one of its workers (co_await schedule): a resumption per node.
co_task<uts::tree_size> uts_count(const uts::binomial_tree& tree, uts::node node, tidepool::pool* hop = nullptr) {
  if (hop != nullptr) co_await tidepool::schedule(*hop);
  const int children = uts::child_count(tree, node);
  uts::tree_size size = uts::tree_size::of_node(node, children);
  if (children == 0) co_return size;
  std::vector<co_task<uts::tree_size>> subtrees;
  subtrees.reserve(static_cast<std::size_t>(children));
  for (int i = 0; i < children; ++i) subtrees.push_back(uts_count(tree, uts::child(node, i), hop));
  for (const uts::tree_size& subtree : co_await tidepool::when_all(std::move(subtrees))) size = size + subtree;
  co_return size;
}

co_task<int> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

// A payload whose live instances are counted: captured by value in a co_task's parameters.
struct payload {
  static inline std::atomic<int> live{0};
  payload() { live.fetch_add(1); }
  payload(const payload&) { live.fetch_add(1); }
  payload(payload&&) noexcept { live.fetch_add(1); }
  ~payload() { live.fetch_sub(1); }
};

co_task<int> holds_payload(payload) { co_return 1; }

// The calling thread's id, through a call the optimiser cannot see into: glibc declares
// pthread_self() const, so clang reuses its value across a co_await, after which the coroutine
// may run on another thread.
std::thread::id (*volatile this_thread_id)() = [] { return std::this_thread::get_id(); };

co_task<std::vector<int>> all_of(std::vector<co_task<int>> children) { co_return co_await tidepool::when_all(std::move(children)); }

// ---- co_task --------------------------------------------------------------------------------

TEST(CoTask, AwaitingReturnsTheValue) {
  tidepool::pool pool(with_workers(2));
  auto outer = []() -> co_task<int> { co_return co_await answer() + 1; };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), 43);
}

TEST(CoTask, DefaultResultTypeIsVoid) {
  static_assert(std::is_same_v<co_task<>, co_task<void>>);
  tidepool::pool pool(with_workers(1));
  std::atomic<bool> flag{false};
  auto body = [](std::atomic<bool>& f) -> co_task<> {
    f.store(true);
    co_return;
  };
  tidepool::sync_wait(pool, body(flag));
  EXPECT_TRUE(flag.load());
}

TEST(CoTask, VoidCoTaskRunsItsBody) {
  tidepool::pool pool(with_workers(2));
  std::atomic<bool> flag{false};
  tidepool::sync_wait(pool, set_flag(flag));
  EXPECT_TRUE(flag.load());
}

TEST(CoTask, MoveOnlyValuesAreMovedOut) {
  tidepool::pool pool(with_workers(2));
  std::unique_ptr<int> v = tidepool::sync_wait(pool, boxed(7));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 7);
}

TEST(CoTask, ExceptionIsRethrownToTheAwaiter) {
  tidepool::pool pool(with_workers(2));
  auto outer = []() -> co_task<std::string> {
    try {
      co_await throws_runtime_error("boom");
    } catch (const std::runtime_error& e) {
      co_return std::string("caught ") + e.what();
    }
    co_return "not thrown";
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), "caught boom");
  EXPECT_THROW(tidepool::sync_wait(pool, throws_runtime_error("to sync_wait")), std::runtime_error);
}

TEST(CoTask, IsLazyAndAnUnstartedOneDestroysItsFrame) {
  payload::live = 0;
  std::atomic<bool> flag{false};
  {
    co_task<void> never = set_flag(flag);
    co_task<int> holding = holds_payload(payload{});
    EXPECT_EQ(payload::live.load(), 1);
  }
  EXPECT_FALSE(flag.load());
  EXPECT_EQ(payload::live.load(), 0);
}

TEST(CoTask, AwaitingAnEmptyCoTaskThrows) {
  tidepool::pool pool(with_workers(1));
  auto outer = []() -> co_task<void> {
    co_task<int> empty;
    co_await empty;
  };
  EXPECT_THROW(tidepool::sync_wait(pool, outer()), tidepool::error);
}

TEST(CoTask, TenThousandNestedAwaitsDoNotOverflowTheStack) {
  tidepool::pool pool(with_workers(1));
  EXPECT_EQ(tidepool::sync_wait(pool, nested(10'000)), 10'000);
}

TEST(CoTask, PayloadIsDestroyedBeforeTheAwaiterResumes) {
  tidepool::pool pool(with_workers(2));
  payload::live = 0;
  auto outer = []() -> co_task<int> {
    const int r = co_await holds_payload(payload{});
    co_return r * 100 + payload::live.load();  // the child's copy must be gone already
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), 100);
}

// ---- when_all --------------------------------------------------------------------------------

TEST(WhenAll, TupleHoldsResultsInArgumentOrderWithVoidAsMonostate) {
  tidepool::pool pool(with_workers(2));
  std::atomic<bool> flag{false};
  auto outer = [&]() -> co_task<std::tuple<int, std::monostate, long>> {
    co_return co_await tidepool::when_all(answer(), set_flag(flag), fib(10));
  };
  auto [a, v, b] = tidepool::sync_wait(pool, outer());
  EXPECT_EQ(a, 42);
  EXPECT_EQ(v, std::monostate{});
  EXPECT_EQ(b, 55);
  EXPECT_TRUE(flag.load());
}

TEST(WhenAll, VectorHoldsResultsInOrder) {
  tidepool::pool pool(with_workers(2));
  auto outer = []() -> co_task<std::vector<long>> {
    std::vector<co_task<long>> children;
    for (int i = 0; i < 20; ++i) children.push_back(fib(i));
    co_return co_await tidepool::when_all(std::move(children));
  };
  const std::vector<long> r = tidepool::sync_wait(pool, outer());
  ASSERT_EQ(r.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(r[static_cast<std::size_t>(i)], fib_serial(i)) << i;
}

TEST(WhenAll, VectorOfVoidAndEmptyVector) {
  tidepool::pool pool(with_workers(2));
  std::atomic<int> ran{0};
  auto outer = [&]() -> co_task<int> {
    std::vector<co_task<void>> children;
    for (int i = 0; i < 1000; ++i) {
      children.push_back([](std::atomic<int>& r) -> co_task<void> {
        r.fetch_add(1);
        co_return;
      }(ran));
    }
    co_await tidepool::when_all(std::move(children));
    std::vector<co_task<int>> none;
    const std::vector<int> empty = co_await tidepool::when_all(std::move(none));
    co_return static_cast<int>(empty.size());
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), 0);
  EXPECT_EQ(ran.load(), 1000);
}

TEST(WhenAll, FirstExceptionInArgumentOrderIsRethrownAfterAllFinished) {
  tidepool::pool pool(with_workers(2));
  std::atomic<int> finished{0};
  auto slow_then_throw = [](std::atomic<int>& done, std::string what) -> co_task<int> {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    done.fetch_add(1);
    throw std::runtime_error(what);
    co_return 0;
  };
  auto fine = [](std::atomic<int>& done) -> co_task<int> {
    done.fetch_add(1);
    co_return 1;
  };
  auto outer = [&]() -> co_task<std::string> {
    try {
      co_await tidepool::when_all(fine(finished), slow_then_throw(finished, "first"), slow_then_throw(finished, "second"));
    } catch (const std::runtime_error& e) {
      co_return std::string(e.what()) + " after " + std::to_string(finished.load());
    }
    co_return "nothing thrown";
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), "first after 3");

  auto vector_outer = [&]() -> co_task<std::string> {
    std::vector<co_task<int>> children;
    children.push_back(fine(finished));
    children.push_back(slow_then_throw(finished, "v1"));
    children.push_back(fine(finished));
    children.push_back(slow_then_throw(finished, "v2"));
    try {
      co_await tidepool::when_all(std::move(children));
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "nothing thrown";
  };
  finished = 0;
  EXPECT_EQ(tidepool::sync_wait(pool, vector_outer()), "v1");
  EXPECT_EQ(finished.load(), 4);
}

TEST(WhenAll, ChildrenRunInParallelOnTwoWorkers) {
  tidepool::pool pool(with_workers(2));
  // Each child waits until both have started: only possible if a second worker stole one.
  std::atomic<int> started{0};
  auto meet = [](std::atomic<int>& s) -> co_task<std::thread::id> {
    s.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (s.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    co_return this_thread_id();
  };
  auto outer = [&]() -> co_task<bool> {
    auto [a, b] = co_await tidepool::when_all(meet(started), meet(started));
    co_return a != b;
  };
  EXPECT_TRUE(tidepool::sync_wait(pool, outer()));
}

TEST(WhenAll, FibOnOneWorkerNeitherDeadlocksNorOverflows) {
  tidepool::pool pool(with_workers(1));
  EXPECT_EQ(tidepool::sync_wait(pool, fib(22)), fib_serial(22));
}

TEST(WhenAll, FibOnTwoWorkers) {
  tidepool::pool pool(with_workers(2));
  EXPECT_EQ(tidepool::sync_wait(pool, fib(25)), fib_serial(25));
}

// Issue 12's deep-recursion cases: fib(35) (30 million coroutines; fib(28) in sanitizer builds,
// which make every symmetric transfer a call and run 10-50x slower) and UTS T3, a binomial tree
// 1,572 levels deep whose root has 2,000 children. Neither may overflow a stack or lose a node.
TEST(WhenAll, FibThirtyFiveOnTwoWorkers) {
#if defined(TIDEPOOL_SANITIZED)
  constexpr int n = 28;
#else
  constexpr int n = 35;
#endif
  tidepool::pool pool(with_workers(2));
  EXPECT_EQ(tidepool::sync_wait(pool, fib(n)), fib_serial(n));
}

// T3 keeps a job waiting per level, more than a worker's deque holds: they must queue elsewhere,
// not run nested in the stack. The workers' stacks are small (256 KiB) so that nesting shows.
TEST(WhenAll, UtsT3BinomialTreeCountsEveryNode) {
  for (const std::size_t workers : {1, 2}) {
    tidepool::pool_options options = with_workers(workers);
    options.stack_size = 256 * 1024;
    tidepool::pool pool(options);
    EXPECT_EQ(tidepool::sync_wait(pool, uts_count(uts::t3, uts::root(uts::t3.root_seed))), uts::t3_size)
        << "on " << workers << " worker(s)";
  }
}

TEST(WhenAll, UtsT3WithAResumptionPerNodeCountsEveryNode) {
  tidepool::pool_options options = with_workers(1);
  options.stack_size = 256 * 1024;
  tidepool::pool pool(options);
  EXPECT_EQ(tidepool::sync_wait(pool, uts_count(uts::t3, uts::root(uts::t3.root_seed), &pool)), uts::t3_size);
}

// Suspends its coroutine and leaves the handle in `*parked`, for whoever resumes it once
// `*parked_yet`: an awaiter the library knows nothing of.
struct park {
  std::coroutine_handle<>* parked;
  std::atomic<bool>* parked_yet;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> suspended) const noexcept {
    *parked = suspended;
    parked_yet->store(true, std::memory_order_release);  // may resume at once: nothing after this
  }
  void await_resume() const noexcept {}
};

TEST(WhenAll, ChildSuspendedOnAnyAwaiterLeavesNoSiblingUnoffered) {
  // The worker's deque holds a task when the when_all starts, so the worker may keep the second
  // child to itself rather than offer it (coro_when_all.hpp). The first child then suspends on
  // an awaiter of its own, which only the second child resumes: the worker must offer the
  // second child once the run returns, or nothing ever runs it.
  for (std::size_t workers : {1, 2}) {
    EXPECT_TRUE(tidepool::testing::finishes_within(std::chrono::seconds(20), [workers] {
      tidepool::pool pool(with_workers(workers));
      std::coroutine_handle<> parked;
      std::atomic<bool> parked_yet{false};
      auto waits = [&]() -> co_task<int> {
        co_await park{&parked, &parked_yet};
        co_return 1;
      };
      auto wakes = [&]() -> co_task<int> {
        while (!parked_yet.load(std::memory_order_acquire)) std::this_thread::yield();  // a thief may start it first
        std::exchange(parked, {}).resume();
        co_return 2;
      };
      auto outer = [&]() -> co_task<int> {
        tidepool::task_group group(pool);
        group.go([] {});  // onto this worker's deque (a group's tasks stay local)
        auto [a, b] = co_await tidepool::when_all(waits(), wakes());
        group.wait();
        co_return a + b;
      };
      EXPECT_EQ(tidepool::sync_wait(pool, outer()), 3);
    }));
  }
}

TEST(WhenAll, EmptyCoTaskIsRefusedAtOnce) {
  co_task<int> empty;
  EXPECT_THROW(static_cast<void>(tidepool::when_all(answer(), std::move(empty))), tidepool::error);
}

TEST(WhenAll, PayloadsAreDestroyedBeforeTheParentResumes) {
  tidepool::pool pool(with_workers(2));
  payload::live = 0;
  auto outer = []() -> co_task<int> {
    std::vector<co_task<int>> children;
    for (int i = 0; i < 100; ++i) children.push_back(holds_payload(payload{}));
    auto [one, all] = co_await tidepool::when_all(holds_payload(payload{}), all_of(std::move(children)));
    co_return payload::live.load() * 1000 + one + static_cast<int>(all.size());
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), 101);
}

TEST(WhenAll, NoPayloadOutlivesItsRoundWithFewerWorkersThanTasks) {
  // pond issue 110 with coroutines: every round's co_tasks hold a payload; once the round's
  // when_all has returned, none may be alive, round after round.
  tidepool::pool pool(with_workers(2));
  payload::live = 0;
  const std::size_t rounds = tidepool::testing::stress_count(200, 20);
  auto round = []() -> co_task<int> {
    std::vector<co_task<int>> children;
    for (int i = 0; i < 64; ++i) children.push_back(holds_payload(payload{}));
    const std::vector<int> done = co_await tidepool::when_all(std::move(children));
    co_return payload::live.load() + 1000 * static_cast<int>(done.size());
  };
  for (std::size_t r = 0; r < rounds; ++r) {
    ASSERT_EQ(tidepool::sync_wait(pool, round()), 64'000) << "round " << r;
    ASSERT_EQ(payload::live.load(), 0) << "round " << r;
  }
}

TEST(WhenAll, TaskGroupAndParallelForInsideACoroutine) {
  tidepool::pool pool(with_workers(2));
  auto body = [&](int n) -> co_task<long> {
    std::vector<long> squares(static_cast<std::size_t>(n));
    tidepool::parallel_for(pool, 0, n, [&](int i) { squares[static_cast<std::size_t>(i)] = static_cast<long>(i) * i; });
    tidepool::task_group g(pool);
    auto half = g.submit([&] {
      long s = 0;
      for (int i = 0; i < n / 2; ++i) s += squares[static_cast<std::size_t>(i)];
      return s;
    });
    long rest = 0;
    for (int i = n / 2; i < n; ++i) rest += squares[static_cast<std::size_t>(i)];
    g.wait();
    co_return half.get() + rest;
  };
  auto outer = [&]() -> co_task<long> {
    auto [a, b] = co_await tidepool::when_all(body(1000), body(2000));
    co_return a + b;
  };
  auto sum_of_squares = [](long n) { return (n - 1) * n * (2 * n - 1) / 6; };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), sum_of_squares(1000) + sum_of_squares(2000));
}

// ---- schedule --------------------------------------------------------------------------------

TEST(Schedule, ResumesOnAWorkerOfThePool) {
  tidepool::pool a(with_workers(1));
  tidepool::pool b(with_workers(1));
  auto outer = [&]() -> co_task<bool> {
    const std::thread::id on_a = this_thread_id();
    co_await tidepool::schedule(b);
    const std::thread::id on_b = this_thread_id();
    co_await tidepool::schedule(a);
    co_return on_a != on_b && this_thread_id() == on_a;
  };
  EXPECT_TRUE(tidepool::sync_wait(a, outer()));
}

// Whether co_await on `scheduled` throws pool_stopped.
template <class Scheduler>
co_task<bool> refused_with_pool_stopped(Scheduler scheduled) {
  try {
    co_await scheduled;
  } catch (const tidepool::pool_stopped&) {
    co_return true;
  }
  co_return false;
}

TEST(Schedule, StoppedPoolThrowsPoolStopped) {
  tidepool::pool a(with_workers(1));
  tidepool::pool b(with_workers(1));
  b.stop();
  EXPECT_TRUE(tidepool::sync_wait(a, refused_with_pool_stopped(tidepool::schedule(b))));
}

TEST(Schedule, SubpoolCountsAgainstItsLimit) {
  tidepool::pool pool(with_workers(2));
  tidepool::subpool one(pool, 1);
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  auto step = [](tidepool::subpool& s, std::atomic<int>& in, std::atomic<int>& peak) -> co_task<void> {
    co_await tidepool::schedule(s);
    const int now = in.fetch_add(1) + 1;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    in.fetch_sub(1);
  };
  auto outer = [&]() -> co_task<void> {
    std::vector<co_task<void>> children;
    for (int i = 0; i < 8; ++i) children.push_back(step(one, inside, most));
    co_await tidepool::when_all(std::move(children));
  };
  tidepool::sync_wait(pool, outer());
  EXPECT_EQ(most.load(), 1);
  one.stop_and_wait();  // the last step's task may still be finishing when the coroutine is done
  EXPECT_EQ(one.metrics().succeeded, 8u);
}

TEST(Schedule, StoppedSubpoolThrowsPoolStopped) {
  tidepool::pool pool(with_workers(1));
  tidepool::subpool s(pool, 1);
  s.stop();
  EXPECT_TRUE(tidepool::sync_wait(pool, refused_with_pool_stopped(tidepool::schedule(s))));
}

TEST(Schedule, SubpoolTaskSkippedByThePoolsStopTokenThrowsPoolStopped) {
  std::stop_source stop;
  tidepool::pool_options o = with_workers(2);
  o.stop_token = stop.get_token();
  tidepool::pool pool(o);
  tidepool::subpool one(pool, 1);
  tidepool::testing::occupied_workers busy(one, 1);  // the subpool's one slot is taken
  tidepool::pool runner(with_workers(1));
  tidepool::task<bool> t = tidepool::spawn(runner, refused_with_pool_stopped(tidepool::schedule(one)));
  while (one.metrics().waiting == 0) std::this_thread::yield();  // its resumption waits in the subpool
  stop.request_stop();  // queued tasks are skipped: the coroutine continues with pool_stopped
  busy.release();
  EXPECT_TRUE(t.get());
}

// ---- spawn -----------------------------------------------------------------------------------

// The identity every snapshot keeps (metrics.hpp).
void expect_identity(const tidepool::pool_metrics& m) {
  EXPECT_EQ(m.submitted, m.scheduled + m.waiting + m.running + m.succeeded + m.failed + m.cancelled + m.expired);
}

TEST(Spawn, TaskHandleGetsValueVoidAndException) {
  tidepool::pool pool(with_workers(2));
  tidepool::task<long> value = tidepool::spawn(pool, fib(20));
  std::atomic<bool> flag{false};
  tidepool::task<void> done = tidepool::spawn(pool, set_flag(flag));
  tidepool::task<int> failed = tidepool::spawn(pool, throws_runtime_error("spawned"));
  tidepool::task<std::unique_ptr<int>> boxed_value = tidepool::spawn(pool, boxed(5));
  EXPECT_EQ(value.get(), fib_serial(20));
  done.get();
  EXPECT_TRUE(flag.load());
  EXPECT_THROW(failed.get(), std::runtime_error);
  EXPECT_EQ(*boxed_value.get(), 5);
  pool.stop_and_wait();
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.submitted, 4u);  // one task per spawn, whatever the coroutine did inside
  EXPECT_EQ(m.succeeded, 3u);
  EXPECT_EQ(m.failed, 1u);
  expect_identity(m);
}

TEST(Spawn, SuspendedCoroutineCountsAsRunningUntilItFinishes) {
  tidepool::pool pool(with_workers(2));
  tidepool::pool other(with_workers(1));
  tidepool::testing::occupied_workers busy(other, 1);
  auto waits_for_other = [&]() -> co_task<int> { co_return co_await other.submit([] { return 3; }); };
  tidepool::task<int> t = tidepool::spawn(pool, waits_for_other());
  // The coroutine is suspended on `other`'s task, which cannot start: no worker of `pool` is busy.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.running, 1u);
  EXPECT_FALSE(t.ready());
  expect_identity(m);
  busy.release();
  EXPECT_EQ(t.get(), 3);
  m = pool.metrics();
  EXPECT_EQ(m.running, 0u);
  EXPECT_EQ(m.succeeded, 1u);
  expect_identity(m);
}

TEST(Spawn, CancelledBeforeItStartsDestroysTheCoroutineAndItsPayload) {
  tidepool::pool pool(with_workers(1));
  tidepool::testing::occupied_workers busy(pool, 1);
  payload::live = 0;
  tidepool::task<int> t = tidepool::spawn(pool, holds_payload(payload{}));
  EXPECT_EQ(payload::live.load(), 1);
  EXPECT_TRUE(t.cancel());
  EXPECT_EQ(payload::live.load(), 0);
  EXPECT_THROW(t.get(), tidepool::task_cancelled);
  busy.release();
  pool.stop_and_wait();
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.cancelled, 1u);
  expect_identity(m);
}

TEST(Spawn, StoppedPoolRefusesAndCountsDropped) {
  tidepool::pool pool(with_workers(1));
  pool.stop();
  payload::live = 0;
  EXPECT_THROW(static_cast<void>(tidepool::spawn(pool, holds_payload(payload{}))), tidepool::pool_stopped);
  EXPECT_EQ(payload::live.load(), 0);
  EXPECT_EQ(pool.metrics().dropped, 1u);
  EXPECT_EQ(pool.metrics().submitted, 0u);
}

// Counts its own live copies in a counter of its own (one per task). The last copy takes a
// millisecond to die: a completion published before it is gone would be seen.
struct counted_payload {
  std::atomic<int>* copies;
  explicit counted_payload(std::atomic<int>& c) : copies(&c) { copies->fetch_add(1); }
  counted_payload(const counted_payload& o) : copies(o.copies) { copies->fetch_add(1); }
  counted_payload(counted_payload&& o) noexcept : copies(o.copies) { copies->fetch_add(1); }
  ~counted_payload() {
    if (copies->load() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    copies->fetch_sub(1);
  }
};

TEST(Spawn, NoPayloadIsAliveOnceItsTaskIsReady) {
  // pond issue 110 with spawned coroutines: fewer workers than tasks, many rounds; the moment a
  // task is seen ready, the payload its coroutine held is gone.
  tidepool::pool pool(with_workers(2));
  const std::size_t rounds = tidepool::testing::stress_count(100, 10);
  auto job = [](counted_payload, int i) -> co_task<int> {
    co_await tidepool::when_all(answer(), answer());
    co_return i;
  };
  constexpr int per_round = 16;
  for (std::size_t r = 0; r < rounds; ++r) {
    std::vector<std::atomic<int>> copies(per_round);
    std::vector<tidepool::task<int>> tasks;
    for (int i = 0; i < per_round; ++i) tasks.push_back(tidepool::spawn(pool, job(counted_payload(copies[static_cast<std::size_t>(i)]), i)));
    for (int i = 0; i < per_round; ++i) {
      tidepool::task<int>& t = tasks[static_cast<std::size_t>(i)];
      while (!t.ready()) std::this_thread::yield();
      ASSERT_EQ(copies[static_cast<std::size_t>(i)].load(), 0) << "round " << r << ", task " << i;
      ASSERT_EQ(t.get(), i);
    }
  }
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.succeeded, per_round * rounds);
  expect_identity(m);
}

TEST(Spawn, MetricsIdentityHoldsWhileSpawnsRun) {
  tidepool::pool pool(with_workers(2));
  std::vector<tidepool::task<long>> tasks;
  for (int i = 0; i < 50; ++i) tasks.push_back(tidepool::spawn(pool, fib(15)));
  for (int i = 0; i < 20; ++i) expect_identity(pool.metrics());
  for (auto& t : tasks) EXPECT_EQ(t.get(), 610);
  const tidepool::pool_metrics m = pool.metrics();
  EXPECT_EQ(m.submitted, 50u);
  EXPECT_EQ(m.succeeded, 50u);
  expect_identity(m);
}

// ---- awaiting a task<T> -----------------------------------------------------------------------

TEST(AwaitTask, ReturnsTheValueOrRethrows) {
  tidepool::pool pool(with_workers(2));
  auto outer = [&]() -> co_task<int> {
    const int v = co_await pool.submit([] { return 20; });
    co_await pool.submit([] {});
    try {
      co_await pool.submit([]() -> int { throw std::runtime_error("task failed"); });
    } catch (const std::runtime_error&) {
      co_return v + 1;
    }
    co_return 0;
  };
  EXPECT_EQ(tidepool::sync_wait(pool, outer()), 21);
}

TEST(AwaitTask, OnOneWorkerTheAwaitedTaskRunsWhileTheCoroutineIsSuspended) {
  tidepool::pool pool(with_workers(1));
  auto outer = [&]() -> co_task<int> {
    int sum = 0;
    for (int i = 0; i < 100; ++i) sum += co_await pool.submit([i] { return i; });
    co_return sum;
  };
  EXPECT_TRUE(tidepool::testing::finishes_within(std::chrono::seconds(30), [&] { EXPECT_EQ(tidepool::sync_wait(pool, outer()), 4950); }));
}

TEST(AwaitTask, ResumesOnAWorkerOfTheTasksPool) {
  tidepool::pool a(with_workers(1));
  tidepool::pool b(with_workers(1));
  const std::thread::id b_worker = b.submit([] { return this_thread_id(); }).get();
  // b's worker is busy until the coroutine has surely suspended on the task (not finished yet).
  tidepool::testing::occupied_workers busy(b, 1);
  auto outer = [&]() -> co_task<bool> {
    const std::thread::id before = this_thread_id();
    co_await b.submit([] {});
    co_return before != b_worker && this_thread_id() == b_worker;
  };
  tidepool::task<bool> t = tidepool::spawn(a, outer());
  while (b.metrics().waiting == 0) std::this_thread::yield();  // submitted: the await comes next
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  busy.release();
  EXPECT_TRUE(t.get());
}

TEST(AwaitTask, TaskCancelledByStopOnThisThreadStillResumesOnTheTasksPool) {
  // stop() cancels a delayed task on the calling thread, which publishes its outcome there: the
  // coroutine must still continue on a worker of the task's pool, not on this thread.
  tidepool::pool a(with_workers(1));
  tidepool::pool b(with_workers(1));
  const std::thread::id b_worker = b.submit([] { return this_thread_id(); }).get();
  std::atomic<bool> suspended{false};
  auto outer = [&]() -> co_task<bool> {
    tidepool::task<int> later = b.submit_after(std::chrono::hours(1), [] { return 1; });
    suspended = true;  // (set just before the await: the task cannot finish for an hour)
    bool cancelled = false;
    try {
      co_await later;
    } catch (const tidepool::task_cancelled&) {
      cancelled = true;
    }
    co_return cancelled && this_thread_id() == b_worker;
  };
  tidepool::task<bool> t = tidepool::spawn(a, outer());
  while (!suspended) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  b.stop();
  EXPECT_TRUE(t.get());
}

// What co_await on the task threw: its what(), or "" if nothing.
template <class T>
co_task<std::string> error_of_awaiting(tidepool::task<T> t) {
  try {
    co_await t;
  } catch (const std::exception& e) {
    co_return e.what();
  }
  co_return "";
}

// What get() throws: its what(), or "".
template <class T>
std::string error_of_get(tidepool::task<T> t) {
  try {
    t.get();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(AwaitTask, CancelledOrExpiredTaskThrowsWhatGetThrows) {
  tidepool::pool runner(with_workers(1));
  tidepool::pool busy_pool(with_workers(1));
  tidepool::testing::occupied_workers busy(busy_pool, 1);
  auto cancelled = busy_pool.submit([] { return 1; });
  auto cancelled_too = busy_pool.submit([] { return 1; });
  EXPECT_TRUE(cancelled.cancel());
  EXPECT_TRUE(cancelled_too.cancel());
  tidepool::submit_options past;
  past.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto expired = busy_pool.submit([] { return 2; }, past);
  auto expired_too = busy_pool.submit([] { return 2; }, past);
  // Awaited while it still waits: the await suspends, and the expiry resumes it.
  auto awaiting_expired = tidepool::spawn(runner, error_of_awaiting(std::move(expired)));
  busy.release();
  EXPECT_EQ(tidepool::sync_wait(runner, error_of_awaiting(std::move(cancelled))), error_of_get(std::move(cancelled_too)));
  EXPECT_EQ(awaiting_expired.get(), error_of_get(std::move(expired_too)));
  EXPECT_EQ(error_of_get(busy_pool.submit([] { return 3; })), "");
}

TEST(AwaitTask, TaskSkippedByThePoolsStopTokenThrowsTaskCancelled) {
  std::stop_source stop;
  tidepool::pool_options o = with_workers(1);
  o.stop_token = stop.get_token();
  tidepool::pool stopping(o);
  tidepool::pool runner(with_workers(1));
  tidepool::testing::occupied_workers busy(stopping, 1);
  auto skipped = stopping.submit([] { return 1; });
  auto awaiting = tidepool::spawn(runner, error_of_awaiting(std::move(skipped)));
  stop.request_stop();
  busy.release();
  EXPECT_EQ(awaiting.get(), tidepool::task_cancelled().what());
}

TEST(AwaitTask, SubmissionRefusedByAFullOrStoppedPoolThrowsAsSubmitDoes) {
  tidepool::pool runner(with_workers(1));
  tidepool::pool_options o = with_workers(1);
  o.queue_capacity = 0;
  o.non_blocking = true;
  tidepool::pool full(o);
  tidepool::testing::occupied_workers busy(full, 1);
  tidepool::pool stopped(with_workers(1));
  stopped.stop();
  auto outer = [&]() -> co_task<int> {
    int refusals = 0;
    try {
      co_await full.submit([] { return 1; });
    } catch (const tidepool::queue_full&) {
      ++refusals;
    }
    try {
      co_await stopped.submit([] { return 1; });
    } catch (const tidepool::pool_stopped&) {
      refusals += 10;
    }
    co_return refusals;
  };
  EXPECT_EQ(tidepool::sync_wait(runner, outer()), 11);
}

TEST(AwaitTask, EmptyHandleThrowsAsGetDoes) {
  tidepool::pool pool(with_workers(1));
  EXPECT_EQ(tidepool::sync_wait(pool, error_of_awaiting(tidepool::task<int>())), error_of_get(tidepool::task<int>()));
}

// ---- sync_wait -------------------------------------------------------------------------------

TEST(SyncWait, OnAWorkerThrows) {
  tidepool::pool pool(with_workers(1));
  auto t = pool.submit([&] { return tidepool::sync_wait(pool, answer()); });
  EXPECT_THROW(t.get(), tidepool::error);
}

TEST(SyncWait, StoppedPoolThrowsPoolStopped) {
  tidepool::pool pool(with_workers(1));
  pool.stop();
  EXPECT_THROW(tidepool::sync_wait(pool, answer()), tidepool::pool_stopped);
}

}  // namespace

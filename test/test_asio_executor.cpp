// Boost.Asio on a pool (tidepool/asio.hpp): pool::executor_type under asio::post, dispatch,
// defer, co_spawn, bind_executor, strands and any_io_executor; tracked work and stop; and
// async_get, which awaits a tidepool::task from Asio code.

#include "tidepool/asio.hpp"  // first: it enables Asio's coroutines for clang

#include <gtest/gtest.h>

#include <boost/asio/any_io_executor.hpp>      // for boost::asio::any_io_executor
#include <boost/asio/bind_executor.hpp>        // for boost::asio::bind_executor
#include <boost/asio/co_spawn.hpp>             // for boost::asio::co_spawn
#include <boost/asio/defer.hpp>                // for boost::asio::defer
#include <boost/asio/detached.hpp>             // for boost::asio::detached
#include <boost/asio/dispatch.hpp>             // for boost::asio::dispatch
#include <boost/asio/executor_work_guard.hpp>  // for boost::asio::make_work_guard
#include <boost/asio/io_context.hpp>           // for boost::asio::io_context
#include <boost/asio/post.hpp>                 // for boost::asio::post
#include <boost/asio/steady_timer.hpp>         // for boost::asio::steady_timer
#include <boost/asio/strand.hpp>               // for boost::asio::make_strand
#include <boost/asio/use_awaitable.hpp>        // for boost::asio::use_awaitable
#include <boost/asio/use_future.hpp>           // for boost::asio::use_future

#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <future>     // for std::future, std::promise
#include <latch>      // for std::latch
#include <memory>     // for std::shared_ptr, std::make_shared, std::make_unique
#include <stdexcept>  // for std::runtime_error
#include <stop_token>  // for std::stop_source
#include <string>     // for std::string
#include <thread>     // for std::thread, std::this_thread
#include <vector>     // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/errors.hpp"
#include "tidepool/pool.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::testing::occupied_workers;
using tidepool::testing::with_workers;

// Long enough for a loaded sanitizer build; a breach shows up as a timeout, not a hang.
constexpr auto patience = 30s;

// Polls until `done()`; false if it never became true.
template <class Done>
bool eventually(Done done) {
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

template <class T>
bool ready_in_time(std::future<T>& f) {
  return f.wait_for(patience) == std::future_status::ready;
}

// An io_context run by a thread of its own until the object is destroyed.
class io_thread {
 public:
  // An exception a handler throws (a refused post, say) is counted, and the thread runs on.
  io_thread()
      : guard_(asio::make_work_guard(io)), thread_([this] {
          for (;;) {
            try {
              io.run();
              return;
            } catch (...) {
              escaped.fetch_add(1);
            }
          }
        }) {}
  ~io_thread() {
    guard_.reset();
    thread_.join();
  }
  [[nodiscard]] bool is_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  asio::io_context io;
  std::atomic<int> escaped{0};

 private:
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

static_assert(asio::execution::is_executor<pool::executor_type>::value, "the standard executor model");
static_assert(asio::is_executor<pool::executor_type>::value, "the Networking TS executor model");
static_assert(asio::execution::can_execute<pool::executor_type, asio::execution::invocable_archetype>::value);

TEST(AsioExecutor, PropertiesCanBeQueriedAndRequired) {
  pool p(with_workers(2));
  pool other(with_workers(1));
  const pool::executor_type ex = p.get_executor();
  EXPECT_EQ(ex, p.get_executor());
  EXPECT_NE(ex, other.get_executor());
  EXPECT_EQ(&asio::query(ex, asio::execution::context), &p.get_executor().context());
  EXPECT_NE(&asio::query(ex, asio::execution::context), &asio::query(other.get_executor(), asio::execution::context));
  EXPECT_EQ(asio::query(ex, asio::execution::blocking), asio::execution::blocking.possibly);
  EXPECT_EQ(asio::query(ex, asio::execution::relationship), asio::execution::relationship.fork);
  EXPECT_EQ(asio::query(ex, asio::execution::outstanding_work), asio::execution::outstanding_work.untracked);
  EXPECT_EQ(asio::query(ex, asio::execution::occupancy), 2u);

  const auto never = asio::require(ex, asio::execution::blocking.never);
  EXPECT_EQ(asio::query(never, asio::execution::blocking), asio::execution::blocking.never);
  EXPECT_NE(never, ex);
  EXPECT_EQ(asio::require(never, asio::execution::blocking.possibly), ex);
  const auto continuation = asio::require(ex, asio::execution::relationship.continuation);
  EXPECT_EQ(asio::query(continuation, asio::execution::relationship), asio::execution::relationship.continuation);
  const auto tracked = asio::prefer(ex, asio::execution::outstanding_work.tracked);
  EXPECT_EQ(asio::query(tracked, asio::execution::outstanding_work), asio::execution::outstanding_work.tracked);
  EXPECT_EQ(asio::require(tracked, asio::execution::outstanding_work.untracked), ex);
}

TEST(AsioExecutor, PostRunsTheHandlerOnAWorkerAsACountedTask) {
  pool p(with_workers(2));
  const auto ex = p.get_executor();
  std::promise<bool> on_worker;
  auto ran = on_worker.get_future();
  asio::post(ex, [&] { on_worker.set_value(ex.running_in_this_thread()); });
  ASSERT_TRUE(ready_in_time(ran));
  EXPECT_TRUE(ran.get());
  EXPECT_FALSE(ex.running_in_this_thread());
  p.stop_and_wait();
  const auto m = p.metrics();
  EXPECT_EQ(m.submitted, 1u);
  EXPECT_EQ(m.succeeded, 1u);
}

TEST(AsioExecutor, DispatchRunsAtOnceOnAWorkerButNotElsewhere) {
  pool p(with_workers(2));
  const auto ex = p.get_executor();
  // Outside the pool: submitted, so it has not run on this thread.
  std::promise<std::thread::id> ran_on;
  auto outside = ran_on.get_future();
  asio::dispatch(ex, [&] { ran_on.set_value(std::this_thread::get_id()); });
  ASSERT_TRUE(ready_in_time(outside));
  EXPECT_NE(outside.get(), std::this_thread::get_id());

  // On a worker: dispatch returns after the handler ran, on that very thread.
  std::promise<std::pair<bool, bool>> result;
  auto inside = result.get_future();
  asio::post(ex, [&] {
    const auto me = std::this_thread::get_id();
    bool same_thread = false;
    bool ran = false;
    asio::dispatch(ex, [&] {
      ran = true;
      same_thread = std::this_thread::get_id() == me;
    });
    result.set_value({ran, same_thread});
  });
  ASSERT_TRUE(ready_in_time(inside));
  const auto [ran_before_return, on_same_thread] = inside.get();
  EXPECT_TRUE(ran_before_return);
  EXPECT_TRUE(on_same_thread);
}

// On a one-worker pool the posting handler occupies the only worker, so a handler that ran
// before post / defer returned can only have run inline.
TEST(AsioExecutor, PostAndDeferFromAWorkerRunAfterTheCurrentHandler) {
  pool p(with_workers(1));
  const auto ex = p.get_executor();
  std::vector<std::string> order;  // only the single worker touches it
  std::promise<void> done;
  auto finished = done.get_future();
  asio::post(ex, [&] {
    asio::post(ex, [&] { order.push_back("posted"); });
    asio::defer(ex, [&] {
      order.push_back("deferred");
      done.set_value();
    });
    order.push_back("poster");
  });
  ASSERT_TRUE(ready_in_time(finished));
  EXPECT_EQ(order, (std::vector<std::string>{"poster", "posted", "deferred"}));
}

asio::awaitable<int> hop_and_add(pool::executor_type ex, int hops) {
  int sum = 0;
  for (int i = 0; i < hops; ++i) {
    co_await asio::post(ex, asio::use_awaitable);
    if (ex.running_in_this_thread()) sum += 1;
  }
  co_return sum;
}

TEST(AsioExecutor, CoSpawnRunsTheCoroutineOnTheWorkersAndDeliversItsValue) {
  pool p(with_workers(2));
  auto result = asio::co_spawn(p.get_executor(), hop_and_add(p.get_executor(), 100), asio::use_future);
  ASSERT_TRUE(ready_in_time(result));
  EXPECT_EQ(result.get(), 100);  // every hop resumed on a worker
}

asio::awaitable<void> fail_after_a_hop(pool::executor_type ex) {
  co_await asio::post(ex, asio::use_awaitable);
  throw std::runtime_error("from the coroutine");
}

TEST(AsioExecutor, CoSpawnDeliversTheCoroutinesException) {
  pool p(with_workers(2));
  auto result = asio::co_spawn(p.get_executor(), fail_after_a_hop(p.get_executor()), asio::use_future);
  ASSERT_TRUE(ready_in_time(result));
  EXPECT_THROW(result.get(), std::runtime_error);
}

// Each coroutine leaves the pool for a timer on an io_context and comes back with post. co_spawn
// tracks work on the pool for its coroutines' lives, so stop_and_wait(), called at once, waits for
// all of them: none is refused on its way back.
asio::awaitable<void> away_and_back(pool::executor_type ex, asio::io_context& io, std::atomic<int>& finished) {
  asio::steady_timer timer(io, 20ms);
  co_await timer.async_wait(asio::use_awaitable);  // resumes on the io_context's thread
  co_await asio::post(ex, asio::use_awaitable);    // back to the pool
  if (ex.running_in_this_thread()) finished.fetch_add(1);
}

TEST(AsioExecutor, StopAndWaitWaitsForDetachedCoroutinesThatHoldTrackedWork) {
  io_thread io;
  std::atomic<int> finished{0};
  constexpr int coroutines = 50;
  {
    pool p(with_workers(2));
    for (int i = 0; i < coroutines; ++i) {
      asio::co_spawn(p.get_executor(), away_and_back(p.get_executor(), io.io, finished), asio::detached);
    }
    p.stop_and_wait();
    EXPECT_EQ(finished.load(), coroutines);
    EXPECT_EQ(p.metrics().dropped, 0u);
  }
  EXPECT_EQ(io.escaped.load(), 0);
}

TEST(AsioExecutor, AWorkGuardKeepsStopAndWaitWaitingAndItsHandlerIsAccepted) {
  pool p(with_workers(2));
  auto guard = asio::make_work_guard(p.get_executor());
  std::atomic<bool> ran{false};
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    try {
      asio::post(p.get_executor(), [&] { ran = true; });
    } catch (const tidepool::pool_stopped&) {
      // the breach this test looks for: reported by `ran`
    }
    guard.reset();
  });
  p.stop_and_wait();
  EXPECT_TRUE(ran.load());
  later.join();
  EXPECT_EQ(p.metrics().dropped, 0u);
}

// Each copy of a tracked executor tracks work of its own, as long as it lives; a moved-from one
// no longer does.
TEST(AsioExecutor, CopiesOfATrackedExecutorEachKeepStopAndWaitWaiting) {
  pool p(with_workers(1));
  auto original = std::make_unique<pool::executor_type>(asio::prefer(p.get_executor(), asio::execution::outstanding_work.tracked));
  auto copy = std::make_unique<pool::executor_type>(*original);
  auto moved = std::make_unique<pool::executor_type>(std::move(*original));
  original.reset();  // moved from: tracks nothing
  moved.reset();
  std::atomic<bool> ran{false};
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    try {
      asio::post(*copy, [&] { ran = true; });
    } catch (const tidepool::pool_stopped&) {
      // the breach this test looks for: reported by `ran`
    }
    copy.reset();
  });
  p.stop_and_wait();
  EXPECT_TRUE(ran.load());
  later.join();
}

TEST(AsioExecutor, BindExecutorRunsAnIoCompletionOnThePool) {
  pool p(with_workers(2));
  io_thread io;
  std::promise<bool> on_worker;
  auto ran = on_worker.get_future();
  asio::steady_timer timer(io.io, 1ms);
  const auto ex = p.get_executor();
  timer.async_wait(asio::bind_executor(ex, [&](boost::system::error_code) { on_worker.set_value(ex.running_in_this_thread()); }));
  ASSERT_TRUE(ready_in_time(ran));
  EXPECT_TRUE(ran.get());
}

TEST(AsioExecutor, AnyIoExecutorHoldsIt) {
  pool p(with_workers(2));
  const asio::any_io_executor any = p.get_executor();
  EXPECT_EQ(any, asio::any_io_executor(p.get_executor()));
  std::promise<bool> on_worker;
  auto ran = on_worker.get_future();
  asio::post(any, [&] { on_worker.set_value(p.get_executor().running_in_this_thread()); });
  ASSERT_TRUE(ready_in_time(ran));
  EXPECT_TRUE(ran.get());
}

// Many threads post to one strand on a four-worker pool: its handlers never overlap, each
// poster's run in its order, and all run.
TEST(AsioExecutor, AStrandOnThePoolRunsHandlersOneAtATimeAndInOrder) {
  pool p(with_workers(4));
  auto strand = asio::make_strand(p.get_executor());
  constexpr int posters = 4;
  const int per_poster = static_cast<int>(tidepool::testing::stress_count(1000, 200));
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> ran{0};
  std::vector<int> last_seen(posters, -1);  // written only by strand handlers
  std::atomic<int> out_of_order{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < posters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_poster; ++i) {
        asio::post(strand, [&, t, i] {
          if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
          if (last_seen[t] != i - 1) out_of_order.fetch_add(1);
          last_seen[t] = i;
          // Long enough that, without the strand, the other workers would be inside too.
          std::this_thread::sleep_for(20us);
          inside.fetch_sub(1);
          ran.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  p.stop_and_wait();
  EXPECT_EQ(ran.load(), posters * per_poster);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
}

TEST(AsioExecutor, AStoppedPoolRefusesAHandlerWithPoolStoppedAndCountsItDropped) {
  pool p(with_workers(1));
  const auto ex = p.get_executor();
  p.stop();
  auto capture = std::make_shared<int>(0);
  EXPECT_THROW(asio::post(ex, [capture] {}), tidepool::pool_stopped);
  EXPECT_THROW(asio::dispatch(ex, [capture] {}), tidepool::pool_stopped);
  EXPECT_EQ(capture.use_count(), 1);  // the refused handlers were destroyed
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().dropped, 2u);
  EXPECT_EQ(p.metrics().submitted, 0u);
}

// A worker cannot wait for room in its own pool, and running the handler at once would break
// blocking.never: it gets queue_full, and the handler never runs.
TEST(AsioExecutor, AWorkerPostingToItsOwnFullPoolGetsQueueFullAndTheHandlerNeverRuns) {
  tidepool::pool_options options = with_workers(1);
  options.queue_capacity = 1;  // one handler running and one waiting fill it
  pool p(options);
  const auto ex = p.get_executor();
  std::atomic<bool> third_ran{false};
  std::promise<bool> refused;
  auto outcome = refused.get_future();
  asio::post(ex, [&] {
    asio::post(ex, [] {});
    try {
      asio::post(ex, [&] { third_ran = true; });
      refused.set_value(false);
    } catch (const tidepool::queue_full&) {
      refused.set_value(true);
    }
  });
  ASSERT_TRUE(ready_in_time(outcome));
  EXPECT_TRUE(outcome.get());
  p.stop_and_wait();
  EXPECT_FALSE(third_ran.load());
  EXPECT_EQ(p.metrics().dropped, 1u);
  EXPECT_EQ(p.metrics().inline_runs, 0u);
}

TEST(AsioExecutor, PostingFromOutsideToAFullNonBlockingPoolThrowsQueueFull) {
  tidepool::pool_options options = with_workers(1);
  options.queue_capacity = 0;
  options.non_blocking = true;
  pool p(options);
  occupied_workers busy(p, 1);
  EXPECT_THROW(asio::post(p.get_executor(), [] {}), tidepool::queue_full);
  busy.release();
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().dropped, 1u);
}

TEST(AsioExecutor, AHandlerThatThrowsCountsFailedAndReachesTheUnhandledExceptionHandler) {
  std::promise<std::exception_ptr> reported;
  auto error = reported.get_future();
  tidepool::pool_options options = with_workers(1);
  options.on_unhandled_exception = [&](std::exception_ptr e) { reported.set_value(e); };
  pool p(options);
  asio::post(p.get_executor(), [] { throw std::runtime_error("handler"); });
  ASSERT_TRUE(ready_in_time(error));
  EXPECT_THROW(std::rethrow_exception(error.get()), std::runtime_error);
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().failed, 1u);
}

// ---- async_get

TEST(AsioAsyncGet, DeliversTheValueToAFuture) {
  pool p(with_workers(2));
  auto value = tidepool::async_get(p.submit([] { return std::string(1000, 'x'); }), asio::use_future);
  ASSERT_TRUE(ready_in_time(value));
  EXPECT_EQ(value.get(), std::string(1000, 'x'));
}

TEST(AsioAsyncGet, ATaskFinishedAlreadyCompletesToo) {
  pool p(with_workers(1));
  auto t = p.submit([] { return 7; });
  t.wait();
  auto value = tidepool::async_get(std::move(t), asio::use_future);
  ASSERT_TRUE(ready_in_time(value));
  EXPECT_EQ(value.get(), 7);
}

TEST(AsioAsyncGet, DeliversTheTasksOwnExceptionObject) {
  pool p(with_workers(1));
  auto thrown = std::make_shared<std::exception_ptr>();
  auto t = p.submit([thrown]() -> int {
    try {
      throw std::runtime_error("task");
    } catch (...) {
      *thrown = std::current_exception();
      throw;
    }
  });
  std::promise<std::exception_ptr> got;
  auto error = got.get_future();
  tidepool::async_get(std::move(t), [&](std::exception_ptr e, int) { got.set_value(e); });
  ASSERT_TRUE(ready_in_time(error));
  const std::exception_ptr e = error.get();
  ASSERT_TRUE(e);
  EXPECT_EQ(e, *thrown);
}

asio::awaitable<std::string> await_task(tidepool::task<std::string> t, const io_thread& io, bool& resumed_on_io) {
  std::string s = co_await tidepool::async_get(std::move(t), asio::use_awaitable);
  resumed_on_io = io.is_this_thread();
  co_return s;
}

TEST(AsioAsyncGet, AnAsioCoroutineAwaitsATaskAndResumesOnItsOwnExecutor) {
  pool p(with_workers(2));
  io_thread io;
  bool resumed_on_io = false;
  auto t = p.submit([] {
    std::this_thread::sleep_for(5ms);
    return std::string("done");
  });
  auto result = asio::co_spawn(io.io, await_task(std::move(t), io, resumed_on_io), asio::use_future);
  ASSERT_TRUE(ready_in_time(result));
  EXPECT_EQ(result.get(), "done");
  EXPECT_TRUE(resumed_on_io);
}

TEST(AsioAsyncGet, ACancelledTaskCompletesWithTaskCancelled) {
  pool p(with_workers(1));
  occupied_workers busy(p, 1);
  std::stop_source cancel;
  tidepool::submit_options options;
  options.stop_token = cancel.get_token();
  std::atomic<bool> ran{false};
  auto value = tidepool::async_get(p.submit([&] { ran = true; }, options), asio::use_future);
  cancel.request_stop();  // while it waits behind the busy worker
  busy.release();
  ASSERT_TRUE(ready_in_time(value));
  EXPECT_THROW(value.get(), tidepool::task_cancelled);
  EXPECT_FALSE(ran.load());
}

TEST(AsioAsyncGet, ATaskCancelledThroughItsHandleCompletesWithTaskCancelled) {
  pool p(with_workers(1));
  occupied_workers busy(p, 1);
  auto t = p.submit([] { return 1; });
  ASSERT_TRUE(t.cancel());
  auto value = tidepool::async_get(std::move(t), asio::use_future);
  busy.release();
  ASSERT_TRUE(ready_in_time(value));
  EXPECT_THROW(value.get(), tidepool::task_cancelled);
}

TEST(AsioAsyncGet, TheQueuedTaskOfAPoolStoppedByItsTokenCompletesWithTaskCancelled) {
  std::stop_source stop;
  tidepool::pool_options options = with_workers(1);
  options.stop_token = stop.get_token();
  pool p(options);
  occupied_workers busy(p, 1);
  auto value = tidepool::async_get(p.submit([] { return 1; }), asio::use_future);
  stop.request_stop();  // skips what has not started: the handler hears of it from the stopping thread
  busy.release();
  ASSERT_TRUE(ready_in_time(value));
  EXPECT_THROW(value.get(), tidepool::task_cancelled);
}

// The handler's executor is a stopped pool: the completion is refused, and the handler destroyed
// uncalled, which a use_future future reports as a broken promise.
TEST(AsioAsyncGet, AHandlerWhosePoolStoppedIsDestroyedUncalled) {
  pool work(with_workers(1));
  pool stopped(with_workers(1));
  stopped.stop();
  occupied_workers busy(work, 1);
  auto t = work.submit([] { return 1; });
  auto capture = std::make_shared<int>(0);
  std::atomic<bool> called{false};
  tidepool::async_get(std::move(t), asio::bind_executor(stopped.get_executor(), [&called, capture](std::exception_ptr, int) {
                        called = true;
                      }));
  std::weak_ptr<int> watch = capture;
  capture.reset();
  EXPECT_FALSE(watch.expired());  // held by the pending operation
  busy.release();
  // The completion is refused on the thread that finished the task, just after it did.
  EXPECT_TRUE(eventually([&] { return watch.expired(); }));  // destroyed, not leaked
  EXPECT_FALSE(called.load());
  EXPECT_EQ(stopped.metrics().dropped, 1u);
}

TEST(AsioAsyncGet, AnEmptyHandleIsRefusedAtOnce) {
  tidepool::task<int> empty;
  EXPECT_THROW(tidepool::async_get(std::move(empty), [](std::exception_ptr, int) {}), tidepool::error);
}

TEST(AsioAsyncGet, ManyAwaitsFromManyThreadsAllComplete) {
  pool p(with_workers(2));
  const int n = static_cast<int>(tidepool::testing::stress_count(20000, 2000));
  std::atomic<long> sum{0};
  std::latch done(n);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < n; i += 2) {
        tidepool::async_get(p.submit([i] { return i; }), asio::bind_executor(p.get_executor(), [&](std::exception_ptr e, int v) {
                              if (!e) sum.fetch_add(v);
                              done.count_down();
                            }));
      }
    });
  }
  for (auto& t : threads) t.join();
  done.wait();
  EXPECT_EQ(sum.load(), static_cast<long>(n) * (n - 1) / 2);
}

}  // namespace

// Allocation failure: for every public operation, the 1st, 2nd, ... Nth allocation fails in turn
// (std::bad_alloc, or null from the nothrow forms) until the operation completes without an
// injected failure. After each attempt:
//   * the operation succeeded or threw a clear exception: std::bad_alloc or a tidepool::error;
//   * the accounting identity holds (submitted == waiting + running + succeeded + failed +
//     cancelled), `submitted` counts exactly the submissions that returned normally, and
//     `dropped` only refusals and submissions taken back;
//   * no capture of any task is still alive once the pool is idle (no leak, no retention);
//     LeakSanitizer checks every other allocation in the ASan build;
//   * nothing hangs: a watchdog aborts the run, naming the step, if one takes too long;
//   * the pool still runs a fresh task.
//
// Two scopes of failure: the calling thread's allocations only (deterministic: the Nth is the
// same allocation in every run), or any thread's, the pool's workers included, while the
// operation runs and until the pool is idle again.
//
// The failure is injected by replacing every form of the global operator new in this test binary.

#include <gtest/gtest.h>

#include <array>               // for std::array
#include <atomic>              // for std::atomic
#include <chrono>              // for std::chrono
#include <condition_variable>  // for std::condition_variable
#include <cstdio>              // for std::fprintf, std::snprintf
#include <cstdlib>             // for std::malloc, std::free, std::abort
#include <memory>              // for std::unique_ptr, std::make_unique
#include <mutex>               // for std::mutex, std::unique_lock
#include <new>                 // for std::bad_alloc, std::align_val_t, std::nothrow_t
#include <optional>            // for std::optional
#include <stdexcept>           // for std::runtime_error
#include <stop_token>          // for std::stop_source
#include <string>              // for std::string
#include <thread>              // for std::thread
#include <vector>              // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/tidepool.hpp"

// ---------------------------------------------------------------------------------------------
// The failing allocator

namespace fault {

enum class scope { calling_thread, any_thread };

// Allocations left before the one that fails; the failure fires once per arming.
std::atomic<long> countdown{0};
std::atomic<bool> fired{false};
std::atomic<bool> armed_for_any_thread{false};
thread_local bool armed_for_this_thread = false;
thread_local bool exempt = false;  // the watchdog's thread: never failed

bool should_fail() noexcept {
  if (exempt || !(armed_for_this_thread || armed_for_any_thread.load(std::memory_order_relaxed))) return false;
  if (countdown.fetch_sub(1, std::memory_order_relaxed) != 1) return false;
  fired.store(true, std::memory_order_relaxed);
  return true;
}

void arm(long nth, scope s) noexcept {
  fired.store(false, std::memory_order_relaxed);
  countdown.store(nth, std::memory_order_relaxed);
  if (s == scope::any_thread) {
    armed_for_any_thread.store(true, std::memory_order_seq_cst);
  } else {
    armed_for_this_thread = true;
  }
}

// Returns whether the failure fired.
// Scaffolding of an operation (blocking helper tasks) that is not what the sweep tests: this
// thread's allocations inside the scope never fail.
class unfailing_scope {
 public:
  unfailing_scope() noexcept : saved_(exempt) { exempt = true; }
  ~unfailing_scope() { exempt = saved_; }
  unfailing_scope(const unfailing_scope&) = delete;
  unfailing_scope& operator=(const unfailing_scope&) = delete;

 private:
  bool saved_;
};

bool disarm() noexcept {
  armed_for_this_thread = false;
  armed_for_any_thread.store(false, std::memory_order_seq_cst);
  return fired.load(std::memory_order_relaxed);
}

void* allocate(std::size_t size) noexcept {
  if (should_fail()) return nullptr;
  return std::malloc(size == 0 ? 1 : size);
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) noexcept {
  if (should_fail()) return nullptr;
  const std::size_t align = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
  void* p = nullptr;
  return posix_memalign(&p, align, size == 0 ? 1 : size) == 0 ? p : nullptr;
}

void* allocate_or_throw(std::size_t size) {
  if (void* p = allocate(size)) return p;
  throw std::bad_alloc();
}

void* allocate_aligned_or_throw(std::size_t size, std::align_val_t alignment) {
  if (void* p = allocate_aligned(size, alignment)) return p;
  throw std::bad_alloc();
}

}  // namespace fault

// Every replaceable allocation function (C++20 [new.delete]), so no allocation path escapes.
void* operator new(std::size_t size) { return fault::allocate_or_throw(size); }
void* operator new[](std::size_t size) { return fault::allocate_or_throw(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return fault::allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return fault::allocate(size); }
void* operator new(std::size_t size, std::align_val_t a) { return fault::allocate_aligned_or_throw(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return fault::allocate_aligned_or_throw(size, a); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return fault::allocate_aligned(size, a);
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return fault::allocate_aligned(size, a);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using tidepool::pool;
using tidepool::pool_metrics;
using tidepool::pool_options;
using tidepool::subpool;
using tidepool::task_group;
using tidepool::testing::stress_count;
using tidepool::testing::with_workers;

// ---------------------------------------------------------------------------------------------
// Watchdog: a hung pool cannot be recovered from inside the test, so a step that takes too long
// ends the binary with a message naming it, and the suite fails.

class watchdog {
 public:
  watchdog() : thread_([this] { watch(); }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  void begin(const char* operation, fault::scope s, long nth) {
    std::lock_guard lock(mutex_);
    std::snprintf(step_, sizeof step_, "%s, %s, allocation %ld failing", operation,
                  s == fault::scope::any_thread ? "any thread" : "calling thread", nth);
    deadline_ = std::chrono::steady_clock::now() + limit;
    active_ = true;
    changed_.notify_one();
  }
  void end() {
    std::lock_guard lock(mutex_);
    active_ = false;
  }

 private:
  // Generous: a step is a few milliseconds, but sanitizer builds on a loaded 2-core machine stall.
  static constexpr std::chrono::seconds limit{60};

  void watch() {
    fault::exempt = true;
    std::unique_lock lock(mutex_);
    while (!quit_) {
      if (!active_) {
        changed_.wait(lock);
        continue;
      }
      if (changed_.wait_until(lock, deadline_) == std::cv_status::timeout && active_ &&
          std::chrono::steady_clock::now() >= deadline_) {
        std::fprintf(stderr, "test_allocation_failure: HANG for %lld s in step: %s\n",
                     static_cast<long long>(limit.count()), step_);
        std::abort();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  char step_[200] = {};
  std::chrono::steady_clock::time_point deadline_;
  bool active_ = false;
  bool quit_ = false;
  std::thread thread_;
};

watchdog& the_watchdog() {
  static watchdog instance;
  return instance;
}

// ---------------------------------------------------------------------------------------------
// What tasks capture, counted: once a pool is idle, none may be alive.

std::atomic<long> live_captures{0};

struct counted {
  counted() noexcept { live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted(const counted&) noexcept { live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted(counted&&) noexcept { live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) = default;
  ~counted() { live_captures.fetch_sub(1, std::memory_order_relaxed); }
};

// Larger than a node's inline storage (80 bytes): stored on the heap, an allocation of its own.
struct large_capture {
  counted token;
  std::array<char, 160> bytes{};
};

// A result too large to be stored inside the node: the worker allocates it after the run.
using large_result = std::array<char, 200>;

struct planned_failure : std::runtime_error {
  planned_failure() : std::runtime_error("planned failure of a test task") {}
};

// ---------------------------------------------------------------------------------------------
// One step: a fresh world, the operation with its Nth allocation failing, then the checks.

struct world {
  std::unique_ptr<pool> p;
  pool_metrics before;
  // Filled by the operation, under injection (plain counters: no allocation).
  std::uint64_t accepted = 0;    // submissions that returned normally: counted submitted
  std::uint64_t refused = 0;     // pool_stopped / queue_full, or try_submit's empty result
  std::uint64_t bad_allocs = 0;  // submissions that threw std::bad_alloc
  const char* unexpected = nullptr;  // what a call threw that it must not
  bool pool_stopped_on_purpose = false;
};

// Runs one submission; counts how it ended; never lets an exception out.
template <class Submit>
void submission(world& w, Submit submit) noexcept {
  try {
    if (submit()) {
      ++w.accepted;
    } else {
      ++w.refused;
    }
  } catch (const std::bad_alloc&) {
    ++w.bad_allocs;
  } catch (const tidepool::pool_stopped&) {
    ++w.refused;
  } catch (const tidepool::queue_full&) {
    ++w.refused;
  } catch (const tidepool::error&) {
    w.unexpected = "a tidepool::error other than a refusal from a submission";
  } catch (...) {
    w.unexpected = "an exception that is neither std::bad_alloc nor a tidepool::error from a submission";
  }
}

// Waits (bounded by the watchdog) until nothing of the pool's is waiting or running.
void wait_until_idle(const pool& p) {
  for (;;) {
    const pool_metrics m = p.metrics();
    if (m.waiting == 0 && m.running == 0) return;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

struct operation {
  const char* name;
  // Builds what the operation needs, without injection. May leave w.p empty (the operation
  // constructs the pool itself).
  void (*setup)(world& w);
  // Runs under injection. Throwing std::bad_alloc or a tidepool::error is allowed.
  void (*run)(world& w);
};

// Returns whether the injected failure fired (false: the operation completed without one).
bool step(const operation& op, fault::scope s, long nth) {
  the_watchdog().begin(op.name, s, nth);
  const std::string where = std::string(op.name) + (s == fault::scope::any_thread ? " [any thread]" : " [calling thread]") +
                            ", allocation " + std::to_string(nth) + " failing";
  bool fired = false;
  {
    world w;
    op.setup(w);
    if (w.p) {
      wait_until_idle(*w.p);
      w.before = w.p->metrics();
    }
    const long captures_before = live_captures.load();

    fault::arm(nth, s);
    try {
      op.run(w);
    } catch (const std::bad_alloc&) {
    } catch (const tidepool::error&) {
    } catch (...) {
      w.unexpected = "an exception that is neither std::bad_alloc nor a tidepool::error";
    }
    // In any-thread mode the workers stay armed until the pool is idle: their allocations after
    // the call returned (results, nested submissions) belong to the operation too.
    if (s == fault::scope::any_thread && w.p) wait_until_idle(*w.p);
    fired = fault::disarm();

    EXPECT_EQ(w.unexpected, nullptr) << where << ": " << (w.unexpected != nullptr ? w.unexpected : "");
    if (w.p) {
      wait_until_idle(*w.p);
      const pool_metrics m = w.p->metrics();
      EXPECT_EQ(m.submitted, m.waiting + m.running + m.succeeded + m.failed + m.cancelled) << where;
      EXPECT_EQ(m.submitted - w.before.submitted, w.accepted)
          << where << ": `submitted` must count exactly the submissions that returned normally";
      const std::uint64_t dropped = m.dropped - w.before.dropped;
      EXPECT_GE(dropped, w.refused) << where << ": every refusal is counted dropped";
      EXPECT_LE(dropped, w.refused + w.bad_allocs) << where << ": only refusals and taken-back submissions are dropped";
      EXPECT_EQ(live_captures.load(), captures_before)
          << where << ": captures alive after every task finished (leaked or retained)";
      if (!w.pool_stopped_on_purpose) {
        EXPECT_EQ(w.p->submit([] { return 7; }).get(), 7) << where << ": the pool no longer runs tasks";
      }
    } else {
      EXPECT_EQ(live_captures.load(), captures_before) << where << ": captures leaked";
    }
  }
  EXPECT_EQ(live_captures.load(), 0) << where << ": captures outlived the pool";
  the_watchdog().end();
  return fired;
}

// Fails the 1st, 2nd, ... allocation until the operation completes without a failure.
void sweep(const operation& op, fault::scope s) {
  constexpr long most_allocations = 20'000;  // far more than any operation here makes
  long nth = 1;
  while (step(op, s, nth)) {
    if (::testing::Test::HasFailure()) return;  // the first failing step says it all
    if (++nth > most_allocations) {
      ADD_FAILURE() << op.name << ": still failing after " << most_allocations << " allocations";
      return;
    }
  }
  std::printf("%-40s %-15s completed at allocation %ld\n", op.name,
              s == fault::scope::any_thread ? "any thread" : "calling thread", nth);
}

void sweep_both_scopes(const operation& op) {
  sweep(op, fault::scope::calling_thread);
  sweep(op, fault::scope::any_thread);
}

// ---------------------------------------------------------------------------------------------
// The worlds

constexpr std::size_t workers = 2;

// A started pool, each of whose workers has run a task. Until issue 13 case 8 is fixed, a
// worker's first use of the queue's hazard domain allocates inside noexcept code, so failing
// that allocation ends the process; a worker that has run a task has made that first use.
// TODO(issue 13 #8): drop the warm-up once a worker's first allocation can fail safely.
void started_pool(world& w, pool_options options) {
  w.p = std::make_unique<pool>(std::move(options));
  tidepool::testing::occupied_workers warm(*w.p, static_cast<int>(w.p->workers()));
}

void plain_pool(world& w) { started_pool(w, with_workers(workers)); }

// Submissions in a burst: enough that, with the queue already near a segment boundary, the
// global queue needs a new segment (256 slots) during the operation.
std::size_t burst() { return stress_count(40, 12); }

// Submissions the operation makes that are not what it tests (blocking helpers, the one task a
// fork-join call from outside submits): accepted, so counted.
void count_helper_tasks(world& w, std::uint64_t n) { w.accepted += n; }

// Keeps `n` workers (or runner slots) of `executor` busy; its allocations are not failed.
template <class Executor>
std::unique_ptr<tidepool::testing::occupied_workers> occupy(world& w, Executor& executor, int n) {
  fault::unfailing_scope scaffolding;
  auto busy = std::make_unique<tidepool::testing::occupied_workers>(executor, n);
  count_helper_tasks(w, static_cast<std::uint64_t>(n));
  return busy;
}

// The value, or the worker's std::bad_alloc when it could not allocate the result (any-thread
// scope). Anything else escapes to the step, which reports it.
template <class T>
void get_allowing_bad_alloc(tidepool::task<T>& t) {
  try {
    t.get();
  } catch (const std::bad_alloc&) {
  }
}

void pool_near_segment_end(world& w) {
  plain_pool(w);
  for (int i = 0; i < 250; ++i) w.p->go([] {});
}

// ---------------------------------------------------------------------------------------------
// The operations

const operation construct_pool{
    "pool construction",
    [](world&) {},
    [](world& w) {
      pool_options o = with_workers(workers);
      o.name = "sweep-pool-with-a-long-name";
      // Too large for std::function's inline buffer: one more allocation.
      o.on_unhandled_exception = [padding = std::array<char, 64>{}](std::exception_ptr) { static_cast<void>(padding); };
      w.p = std::make_unique<pool>(std::move(o));
    },
};

const operation submit_burst{
    "submit",
    pool_near_segment_end,
    [](world& w) {
      std::vector<tidepool::task<std::string>> small;
      std::vector<tidepool::task<large_result>> large;
      small.reserve(burst());
      large.reserve(burst());
      for (std::size_t i = 0; i < burst(); ++i) {
        submission(w, [&] {
          small.push_back(w.p->submit([c = counted(), i] { return std::string(40, static_cast<char>('a' + i % 26)); }));
          return true;
        });
        submission(w, [&] {
          large.push_back(w.p->submit([c = large_capture()] { return large_result{}; }));
          return true;
        });
      }
      // Results: a value, or the worker's failure to store a large one (any-thread scope).
      for (auto& t : small) get_allowing_bad_alloc(t);
      for (auto& t : large) get_allowing_bad_alloc(t);
    },
};

const operation try_submit_bounded{
    "try_submit (bounded, some refused)",
    [](world& w) {
      pool_options o = with_workers(workers);
      o.queue_capacity = 4;
      started_pool(w, o);
    },
    [](world& w) {
      auto busy = occupy(w, *w.p, static_cast<int>(workers));
      std::vector<tidepool::task<int>> handles;
      handles.reserve(8);
      for (int i = 0; i < 8; ++i) {  // 4 fit; the rest are refused
        submission(w, [&] {
          auto t = w.p->try_submit([c = large_capture(), i] { return i; });
          if (!t) return false;
          handles.push_back(std::move(*t));
          return true;
        });
      }
      busy->release();
      for (auto& t : handles) t.get();
    },
};

const operation go_burst{
    "go (some tasks throw)",
    [](world& w) {
      pool_options o = with_workers(workers);
      o.on_unhandled_exception = [](std::exception_ptr e) { std::rethrow_exception(e); };  // discarded
      started_pool(w, o);
      for (int i = 0; i < 250; ++i) w.p->go([] {});
    },
    [](world& w) {
      for (std::size_t i = 0; i < burst(); ++i) {
        submission(w, [&] {
          w.p->go([c = large_capture(), i] {
            if (i % 3 == 0) throw planned_failure();
          });
          return true;
        });
      }
    },
};

const operation refused_submissions{
    "submit / go / try_submit to a full or stopped pool",
    [](world& w) {
      pool_options o = with_workers(1);
      o.queue_capacity = 0;
      o.non_blocking = true;
      started_pool(w, o);
    },
    [](world& w) {
      {
        auto busy = occupy(w, *w.p, 1);
        submission(w, [&] { return w.p->submit([c = counted()] {}).valid(); });
        submission(w, [&] { return w.p->try_submit([c = large_capture()] {}).has_value(); });
        submission(w, [&] {
          w.p->go([c = counted()] {});
          return true;
        });
      }
      w.p->stop();
      w.pool_stopped_on_purpose = true;
      submission(w, [&] { return w.p->submit([c = large_capture()] {}).valid(); });
      submission(w, [&] {
        w.p->go([c = counted()] {});
        return true;
      });
    },
};

// The pool's stop token fires while accepted tasks wait: they are reported cancelled.
std::stop_source cancellation;

const operation cancel_by_stop_token{
    "submit, then cancel through the pool's stop token",
    [](world& w) {
      cancellation = std::stop_source();
      pool_options o = with_workers(workers);
      o.stop_token = cancellation.get_token();
      started_pool(w, o);
    },
    [](world& w) {
      std::vector<tidepool::task<int>> handles;
      handles.reserve(burst());
      {
        auto busy = occupy(w, *w.p, static_cast<int>(workers));  // so the burst waits
        for (std::size_t i = 0; i < burst(); ++i) {
          submission(w, [&] {
            handles.push_back(w.p->submit([c = large_capture(), i] { return static_cast<int>(i); }));
            return true;
          });
        }
        cancellation.request_stop();
        w.pool_stopped_on_purpose = true;
      }
      for (auto& t : handles) {
        try {
          t.get();
        } catch (const tidepool::task_cancelled&) {  // skipped: accepted, then cancelled
        }
      }
    },
};

const operation group_operations{
    "task_group submit / go / wait",
    plain_pool,
    [](world& w) {
      task_group g{*w.p};
      std::vector<tidepool::task<int>> handles;
      handles.reserve(burst());
      for (std::size_t i = 0; i < burst(); ++i) {
        submission(w, [&] {
          handles.push_back(g.submit([c = counted(), i] { return static_cast<int>(i); }));
          return true;
        });
        submission(w, [&] {
          g.go([c = large_capture()](std::stop_token stop) { static_cast<void>(stop.stop_requested()); });
          return true;
        });
      }
      submission(w, [&] {
        g.go([] { throw planned_failure(); });  // cancels what has not started
        return true;
      });
      try {
        g.wait();
      } catch (const planned_failure&) {
      }
      for (auto& t : handles) {
        try {
          t.get();
        } catch (const tidepool::task_cancelled&) {  // skipped: the group had failed
        }
      }
    },
};

// Subpool submissions run with the subpool's only runner slot taken. Otherwise the submission
// would send a runner job, and that allocation happens in noexcept code (send_runner, by design:
// "it ends the process"); also, before issue 13 case 8 is fixed, the runner's first use of the
// subpool's queue on a worker allocates in noexcept code (run_one). Neither can fail safely yet.
// TODO(issue 13 #8): also sweep the runner's path once those allocations can fail safely.
const operation subpool_operations{
    "subpool construction / submit / go",
    plain_pool,
    [](world& w) {
      subpool sub{*w.p, 1};
      subpool nested{sub, 1};
      {
        // The nested subpool's blocker runs in the runner job that holds `sub`'s only slot: both
        // runner slots are taken.
        auto busy = occupy(w, nested, 1);
        std::vector<tidepool::task<int>> handles;
        handles.reserve(2 * burst());
        for (std::size_t i = 0; i < burst(); ++i) {
          submission(w, [&] {
            handles.push_back(sub.submit([c = counted(), i] { return static_cast<int>(i); }));
            return true;
          });
          submission(w, [&] {
            nested.go([c = large_capture()] {});
            return true;
          });
        }
        busy->release();
        for (auto& t : handles) t.get();
      }
      nested.stop_and_wait();
      sub.stop_and_wait();
      const pool_metrics m = sub.metrics();
      if (m.submitted != m.waiting + m.running + m.succeeded + m.failed + m.cancelled) {
        w.unexpected = "the subpool's accounting identity broke";
      }
    },
};

const operation resize_grow{
    "resize (grow, and restart retired workers)",
    [](world& w) {
      started_pool(w, with_workers(3));
      w.p->resize(1);
      wait_until_idle(*w.p);
    },
    [](world& w) {
      // TODO(issue 13 #1): a shrink is not swept: its one allocation (the sleepers list's
      // reserve) failing loses the sleeping workers and hangs the pool.
      // TODO(issue 13 #9): after a failed grow, workers() may not match the threads that run;
      // not checked here.
      w.p->resize(4);
    },
};

const operation fork_join{
    "parallel_invoke / parallel_for / parallel_reduce",
    plain_pool,
    [](world& w) {
      std::atomic<long> sum{0};
      tidepool::parallel_invoke(*w.p, [&, c = counted()] { sum += 1; }, [&, c = counted()] { sum += 2; });
      count_helper_tasks(w, 1);  // from outside a worker, the call is submitted as one task
      tidepool::parallel_for(*w.p, 0, 1000, [&](int i) { sum += i; });
      count_helper_tasks(w, 1);
      const long reduced = tidepool::parallel_reduce(
          *w.p, 0, 1000, 0L, [](int i) { return static_cast<long>(i); }, [](long a, long b) { return a + b; });
      count_helper_tasks(w, 1);
      // Inside a task, the caller takes part: nested fork-join on the workers.
      auto inside = w.p->submit([&] { tidepool::parallel_for(*w.p, 0, 1000, [&](int i) { sum += i; }, 8); });
      count_helper_tasks(w, 1);
      inside.get();
      if (reduced != 999 * 1000 / 2 || sum.load() != 3 + 2 * (999 * 1000 / 2)) w.unexpected = "fork-join computed a wrong result";
    },
};

const operation metrics_and_prometheus{
    "metrics / to_prometheus",
    [](world& w) {
      plain_pool(w);
      for (int i = 0; i < 100; ++i) w.p->submit([] { return 1; }).get();  // histograms have data
    },
    [](world& w) {
      const pool_metrics m = w.p->metrics();
      const std::string text = tidepool::to_prometheus(m, "sweep_pool");
      if (text.find("sweep_pool_tasks_succeeded_total") == std::string::npos) w.unexpected = "to_prometheus lost a metric";
    },
};

// ---------------------------------------------------------------------------------------------
// The sweeps. Each test's name states the promise.

// First in the binary: in release builds its first submission is the process's first use of
// the task-node caches, whose first allocation must fail safely too.
TEST(AllocationFailure, DefaultPoolAndItsFreeFunctionsThrowBadAllocOrWork) {
  // Calling thread only: creating the default pool starts workers (see PoolConstruction).
  // The default pool is never destroyed, so the world does not own it: the checks are here. It
  // is created on first use, which must be under injection: no test before this one uses it,
  // and the checks use it only once a step has created it.
  bool created = false;
  long nth = 1;
  for (;; ++nth) {
    ASSERT_LT(nth, 20'000);
    the_watchdog().begin("default_pool", fault::scope::calling_thread, nth);
    const long captures_before = live_captures.load();
    std::optional<tidepool::task<int>> answer;
    const char* unexpected = nullptr;
    fault::arm(nth, fault::scope::calling_thread);
    try {
      static_cast<void>(tidepool::default_pool());
      created = true;
      answer.emplace(tidepool::submit([c = counted()] { return 42; }));
      tidepool::go([c = large_capture()] {});
    } catch (const std::bad_alloc&) {
    } catch (const tidepool::error&) {
    } catch (...) {
      unexpected = "an exception that is neither std::bad_alloc nor a tidepool::error";
    }
    const bool fired = fault::disarm();
    EXPECT_EQ(unexpected, nullptr) << "default_pool, allocation " << nth << " failing: " << (unexpected ? unexpected : "");
    if (answer) {
      EXPECT_EQ(answer->get(), 42);
    }
    if (created) {
      wait_until_idle(tidepool::default_pool());
      const pool_metrics m = tidepool::default_pool().metrics();
      EXPECT_EQ(m.submitted, m.waiting + m.running + m.succeeded + m.failed + m.cancelled);
      EXPECT_EQ(tidepool::submit([] { return 7; }).get(), 7);
    }
    EXPECT_EQ(live_captures.load(), captures_before) << "default_pool, allocation " << nth << " failing";
    the_watchdog().end();
    if (!fired || ::testing::Test::HasFailure()) break;
  }
  std::printf("%-40s %-15s completed at allocation %ld\n", "default_pool / submit / go", "calling thread", nth);
}

TEST(AllocationFailure, PoolConstructionFailsCleanlyOrBuildsAWorkingPool) {
  // Calling thread only: new workers start by allocating in noexcept code.
  // TODO(issue 13 #8): sweep any thread once a worker's first allocation can fail safely.
  sweep(construct_pool, fault::scope::calling_thread);
}

TEST(AllocationFailure, SubmitThrowsBadAllocOrRunsTheTaskAndKeepsTheAccounts) { sweep_both_scopes(submit_burst); }

TEST(AllocationFailure, TrySubmitRefusesOrThrowsAndKeepsTheAccounts) { sweep_both_scopes(try_submit_bounded); }

TEST(AllocationFailure, GoThrowsBadAllocOrRunsTheTaskAndKeepsTheAccounts) { sweep_both_scopes(go_burst); }

TEST(AllocationFailure, RefusalsAreCountedDroppedWhateverFails) { sweep_both_scopes(refused_submissions); }

TEST(AllocationFailure, CancelledTasksAreReportedAndCountedWhateverFails) { sweep_both_scopes(cancel_by_stop_token); }

TEST(AllocationFailure, TaskGroupsWaitForEveryAcceptedTaskWhateverFails) { sweep_both_scopes(group_operations); }

TEST(AllocationFailure, SubpoolsRunEveryAcceptedTaskWhateverFails) {
  // Calling thread only: see subpool_operations.
  sweep(subpool_operations, fault::scope::calling_thread);
}

TEST(AllocationFailure, ResizeGrowFailsCleanlyAndThePoolKeepsRunning) {
  // Calling thread only: a started worker's first allocations are in noexcept code.
  // TODO(issue 13 #8): sweep any thread once they can fail safely.
  sweep(resize_grow, fault::scope::calling_thread);
}

TEST(AllocationFailure, ForkJoinThrowsBadAllocOrComputesTheRightResult) { sweep_both_scopes(fork_join); }

TEST(AllocationFailure, MetricsAndPrometheusTextThrowBadAllocOrSucceed) { sweep_both_scopes(metrics_and_prometheus); }

}  // namespace
